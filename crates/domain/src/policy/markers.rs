//! Promise markers in the policy template: each sentence that states a
//! behaviour ends with the IDs of the promises that prove it (`…destroyed.[[DB-6]]`),
//! every other sentence with `[[-]]`. The published text has them stripped;
//! [`check`] finds sentences without one, and `scripts/promises.sh --check`
//! requires a tagged test for every ID used, so a new sentence cannot be
//! published without saying what proves it.

use std::collections::BTreeSet;

/// Removes every marker (and nothing else).
pub fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[[") {
        match rest[start..].find("]]") {
            Some(len) if is_marker(&rest[start + 2..start + len]) => {
                out.push_str(&rest[..start]);
                rest = &rest[start + len + 2..];
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_marker(inner: &str) -> bool {
    inner == "-" || (!inner.is_empty() && inner.split(',').all(|id| is_promise_id(id.trim())))
}

fn is_promise_id(id: &str) -> bool {
    let Some((prefix, number)) = id.split_once('-') else { return false };
    (2..=3).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_uppercase())
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// What the check found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Promise IDs the text cites.
    pub ids: BTreeSet<String>,
    /// Sentences that end without a marker.
    pub unmarked: Vec<String>,
    /// Sentences marked as stating no behaviour.
    pub no_promise: usize,
}

/// Abbreviations whose period does not end a sentence.
const ABBREVIATIONS: &[&str] = &["e.g.", "i.e.", "etc.", "Inc.", "Ltd.", "vs.", "No."];

/// Checks a rendered text that still has its markers. Headings and table
/// rows are data, not sentences; list items and paragraphs are read as
/// sentences ending in `.`, `!` or `?`.
pub fn check(text: &str) -> Report {
    let mut report = Report::default();
    for block in blocks(text) {
        let mut sentence = String::new();
        let chars: Vec<char> = block.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            sentence.push(c);
            i += 1;
            if !matches!(c, '.' | '!' | '?') {
                continue;
            }
            let next = chars.get(i).copied();
            // A period inside a word, number or address ("seldesk.com", "1.5") ends nothing.
            // Nor does a bold lead-in ("**Backups.** We keep…").
            if next.is_some_and(|n| !n.is_whitespace() && n != '[' && n != ')' && n != '"') {
                continue;
            }
            if ABBREVIATIONS.iter().any(|a| sentence.ends_with(a)) {
                continue;
            }
            let rest: String = chars[i..].iter().collect();
            if let Some(inner) = rest.strip_prefix("[[").and_then(|r| r.split_once("]]")).map(|(m, _)| m.to_string())
                && is_marker(&inner)
            {
                if inner == "-" {
                    report.no_promise += 1;
                } else {
                    report.ids.extend(inner.split(',').map(|id| id.trim().to_string()));
                }
                i += inner.chars().count() + 4;
            } else if !rest.trim_start().starts_with(|c: char| c.is_lowercase()) {
                report.unmarked.push(sentence.trim().to_string());
            } else {
                // "… i.e. something": a lowercase continuation is the same sentence.
                continue;
            }
            sentence.clear();
        }
    }
    report
}

/// Paragraphs and list items, without headings, tables and blank lines.
fn blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        let structural = t.is_empty() || t.starts_with('#') || t.starts_with('|');
        if structural || t.starts_with("- ") {
            if !current.trim().is_empty() {
                out.push(std::mem::take(&mut current));
            }
            current.clear();
            if structural {
                continue;
            }
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(t.trim_start_matches("- "));
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_stripped_and_nothing_else() {
        assert_eq!(strip("Kept 3 weeks.[[DB-6]] Then gone.[[-]] A [[link]]."), "Kept 3 weeks. Then gone. A [[link]].");
        assert_eq!(strip("Two.[[DB-6, BAK-2]]"), "Two.");
    }

    #[test]
    fn a_sentence_without_a_marker_is_found() {
        let r = check(
            "# Title\n\nWe keep it.[[DB-6]] We sell nothing. Visit seldesk.com, e.g. today.[[-]]\n\n| a | b. |\n",
        );
        assert_eq!(r.unmarked, ["We sell nothing."]);
        assert_eq!(r.ids.iter().collect::<Vec<_>>(), ["DB-6"]);
        assert_eq!(r.no_promise, 1);
    }

    #[test]
    fn list_items_are_sentences_when_they_end_like_one() {
        let r = check("You get:\n\n- a receipt;\n- a copy.[[ACC-3]]\n- Chrome: https://example.com/x\n- the rest.\n");
        assert_eq!(r.unmarked, ["the rest."]);
    }

    // promise: POL-1
    #[test]
    fn every_sentence_of_the_published_policy_says_what_proves_it() {
        let policy = crate::Policy::builtin().expect("policy");
        let text = super::super::render_with_markers(&policy, policy.newest_version());
        let r = check(&text);
        assert!(r.unmarked.is_empty(), "sentences without a promise marker:\n{}", r.unmarked.join("\n"));
        assert!(r.ids.len() >= 40, "the text cites the promises: {:?}", r.ids);
        let published = crate::policy::render_markdown(&policy, policy.newest_version());
        assert!(!published.contains("[["), "markers never reach the page");
    }
}
