//! Special categories of personal data (GDPR art. 9) that Seldesk never
//! collects (JOB-3): racial or ethnic origin, political opinions, religious or
//! philosophical beliefs, trade union membership, sex life or orientation
//! (and, while we are at it, health, genetic and biometric data). One list,
//! used by the careers API to refuse submissions, by the policy validator to
//! refuse such offer fields, and by the test that inspects every table.

/// Words that name a special category, matched against normalised field
/// names (lowercase, `-`/space/camelCase folded to `_`).
pub const SPECIAL_CATEGORY_TERMS: &[(&str, &str)] = &[
    ("race", "racial or ethnic origin"),
    ("racial", "racial or ethnic origin"),
    ("ethnic", "racial or ethnic origin"),
    ("ethnicity", "racial or ethnic origin"),
    ("political", "political opinions"),
    ("politics", "political opinions"),
    ("party_affiliation", "political opinions"),
    ("religion", "religious beliefs"),
    ("religious", "religious beliefs"),
    ("faith", "religious beliefs"),
    ("belief", "religious or philosophical beliefs"),
    ("beliefs", "religious or philosophical beliefs"),
    ("trade_union", "trade union membership"),
    ("union_membership", "trade union membership"),
    ("union_member", "trade union membership"),
    ("sexual", "sex life or sexual orientation"),
    ("sexuality", "sex life or sexual orientation"),
    ("sex_life", "sex life or sexual orientation"),
    ("orientation", "sex life or sexual orientation"),
    ("health", "health data"),
    ("disability", "health data"),
    ("genetic", "genetic data"),
    ("biometric", "biometric data"),
];

/// Lowercase with `_` between words: `tradeUnion`, `trade-union` and
/// `Trade Union` all become `trade_union`.
pub fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for ch in name.chars() {
        if ch.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// The special category a field name refers to, if any: any of its words
/// (or adjacent word pairs) is a listed term.
pub fn special_category(name: &str) -> Option<&'static str> {
    let n = normalise(name);
    let words: Vec<&str> = n.split('_').filter(|w| !w.is_empty()).collect();
    let pairs = words.windows(2).map(|w| format!("{}_{}", w[0], w[1]));
    let candidates: Vec<String> = words.iter().map(|w| w.to_string()).chain(pairs).collect();
    SPECIAL_CATEGORY_TERMS.iter().find(|(term, _)| candidates.iter().any(|c| c == term)).map(|(_, what)| *what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_special_categories_are_recognised_in_any_spelling() {
        for name in [
            "race",
            "ethnicOrigin",
            "Political-Opinions",
            "religion",
            "tradeUnion",
            "trade union member",
            "sexual_orientation",
            "sexLife",
        ] {
            assert!(special_category(name).is_some(), "{name}");
        }
        for name in [
            "name",
            "email",
            "phone",
            "letter",
            "cv",
            "shared",
            "postal_address",
            "date_of_birth",
            "bank_account",
            "unionised_pay_scale_code",
        ] {
            assert_eq!(special_category(name), None, "{name}");
        }
    }
}
