//! The card-number guard (PAY-2): card numbers are never accepted, stored or
//! logged. Anything that looks like one — 13 to 19 digits passing the Luhn
//! check — is found however it is spelled: text is normalised (NFKC, so
//! full-width, circled or superscript digits and non-breaking spaces become
//! plain ones; invisible characters dropped) and digit groups may be joined
//! by up to three separators (spaces, dashes, dots, slashes, underscores).
//! One function decides; fields refuse what it finds, headers and paths are
//! stored with it redacted.

use std::borrow::Cow;
use std::ops::Range;

use unicode_normalization::UnicodeNormalization;

/// What a redacted card number is replaced with.
pub const REDACTED: &str = "[card number removed]";

/// Whether `text` contains something that looks like a payment card number.
pub fn contains_card_number(text: &str) -> bool {
    !card_spans(text, true).is_empty()
}

/// As [`contains_card_number`], for a URL, a path or a query string:
/// percent-encoding is undone first (`%20` would otherwise put the digits
/// "20" between the groups).
pub fn contains_card_number_in_url(text: &str) -> bool {
    contains_card_number(&percent_encoding::percent_decode_str(text).decode_utf8_lossy())
}

/// `text` with every card number replaced by [`REDACTED`] (for headers,
/// paths and log details, which are recorded rather than refused). A URL is
/// decoded first, so what is stored is the readable, redacted form.
pub fn redact_card_numbers(text: &str) -> Cow<'_, str> {
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    let source: &str = if decoded != text && !card_spans(&decoded, true).is_empty() { &decoded } else { text };
    let spans = card_spans(source, false);
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(source.len());
    let mut at = 0;
    for s in spans {
        out.push_str(&source[at..s.start]);
        out.push_str(REDACTED);
        at = s.end;
    }
    out.push_str(&source[at..]);
    Cow::Owned(out)
}

/// A character as the guard reads it: its NFKC form's digit, a separator
/// that may join digit groups, or anything else (which ends a run).
#[derive(Clone, Copy, PartialEq)]
enum Class {
    Digit(u8),
    Separator,
    Invisible,
    Other,
}

fn classify(c: char) -> Vec<Class> {
    if matches!(c, '\u{ad}' | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}') {
        return vec![Class::Invisible];
    }
    // Decimal digits of scripts NFKC leaves as they are.
    for zero in ['\u{660}', '\u{6f0}', '\u{966}', '\u{9e6}'] {
        let (z, c) = (zero as u32, c as u32);
        if (z..z + 10).contains(&c) {
            return vec![Class::Digit((c - z) as u8)];
        }
    }
    c.nfkc()
        .map(|n| match n {
            '0'..='9' => Class::Digit(n as u8 - b'0'),
            '-' | '.' | '/' | '_' | '*' | '·' | '\u{2010}'..='\u{2015}' | '\u{2212}' => Class::Separator,
            n if n.is_whitespace() => Class::Separator,
            _ => Class::Other,
        })
        .collect()
}

/// Byte ranges of `text` that hold a card number (the first only, when
/// `first` is set).
fn card_spans(text: &str, first: bool) -> Vec<Range<usize>> {
    // Each class with the byte range of the character it came from.
    let chars: Vec<(Class, Range<usize>)> = text
        .char_indices()
        .flat_map(|(i, c)| classify(c).into_iter().map(move |k| (k, i..i + c.len_utf8())))
        .filter(|(k, _)| *k != Class::Invisible)
        .collect();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !matches!(chars[i].0, Class::Digit(_)) {
            i += 1;
            continue;
        }
        // A run of digits whose groups are joined by at most three
        // separators; `digits` keeps where each digit came from.
        let mut digits: Vec<(u8, Range<usize>)> = Vec::new();
        let mut bounds = vec![0];
        let mut j = i;
        while j < chars.len() {
            match chars[j].0 {
                Class::Digit(d) => {
                    digits.push((d, chars[j].1.clone()));
                    j += 1;
                }
                Class::Separator => {
                    let gap = chars[j..].iter().take_while(|(k, _)| *k == Class::Separator).count();
                    if gap <= 3 && matches!(chars.get(j + gap).map(|c| c.0), Some(Class::Digit(_))) {
                        bounds.push(digits.len());
                        j += gap;
                    } else {
                        break;
                    }
                }
                _ => break,
            }
        }
        bounds.push(digits.len());
        let values: Vec<u8> = digits.iter().map(|(d, _)| *d).collect();
        if let Some((from, to)) = card_in(&values, &bounds) {
            spans.push(digits[from].1.start..digits[to - 1].1.end);
            if first {
                return spans;
            }
        }
        i = j.max(i + 1);
    }
    spans
}

/// The digits `from..to` that are a card: the whole run when it is 13–19
/// digits passing Luhn, or, in a longer run, whole groups of it that do
/// ("4111 1111 1111 1111 12 25").
fn card_in(digits: &[u8], bounds: &[usize]) -> Option<(usize, usize)> {
    let ok = |d: &[u8]| (13..=19).contains(&d.len()) && luhn(d);
    if digits.len() <= 19 {
        return ok(digits).then_some((0, digits.len()));
    }
    bounds
        .iter()
        .enumerate()
        .find_map(|(k, &from)| bounds[k + 1..].iter().find(|&&to| ok(&digits[from..to])).map(|&to| (from, to)))
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// The message shown when a card number is refused.
pub const CARD_NUMBER_REFUSED: &str = "This looks like a payment card number. Please never send card numbers to us: \
     remove it and try again. Card payments are made only on our payment processors' own pages.";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling the outside probe tried, of three test cards.
    pub fn spellings() -> Vec<String> {
        let mut out = Vec::new();
        for card in ["4111111111111111", "5500000000000004", "378282246310005"] {
            let groups: Vec<&str> = if card.len() == 15 {
                vec![&card[..4], &card[4..10], &card[10..]]
            } else {
                card.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect()
            };
            for sep in [" ", "-", ".", "  ", "\u{a0}", "/", "_", " - ", "\u{2009}", "\u{3000}", "\u{200b}"] {
                out.push(groups.join(sep));
            }
            out.push(card.to_string());
            out.push(card.chars().map(|c| char::from_u32(c as u32 - '0' as u32 + 0xff10).unwrap_or(c)).collect());
            out.push(format!("{card}@example.org"));
            out.push(format!("card:{}.", groups.join(" ")));
        }
        out
    }

    // promise: PAY-2
    #[test]
    fn finds_card_numbers_in_any_common_spelling() {
        for text in [
            "4111111111111111",
            "my card is 4111 1111 1111 1111 thanks",
            "5500-0000-0000-0004",
            "amex 378282246310005",
            "ref:6011000990139424.",
            "4111 1111 1111 1111 12 25",
        ]
        .into_iter()
        .map(str::to_string)
        .chain(spellings())
        {
            assert!(contains_card_number(&text), "{text:?}");
            let redacted = redact_card_numbers(&text);
            assert!(!contains_card_number(&redacted) && redacted.contains(REDACTED), "{text:?} -> {redacted:?}");
        }
        assert!(contains_card_number_in_url("/search/4111%201111%201111%201111"));
        assert_eq!(redact_card_numbers("/p/4111%201111%201111%201111/x"), "/p/[card number removed]/x");
    }

    #[test]
    fn leaves_ordinary_numbers_alone() {
        for text in [
            "order 12345",
            "call +44 20 7946 0958",
            "4111111111111112",
            "invoice 2026-000123",
            "1234 5678 9012",
            "",
            "2026-12-06 10:15:30",
            "+91 98765 43210, +65 6123 4567",
        ] {
            assert!(!contains_card_number(text), "{text}");
            assert_eq!(redact_card_numbers(text), text);
        }
    }
}
