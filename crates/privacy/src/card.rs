//! The card-number guard (PAY-2): card numbers are never accepted, stored or
//! logged. Anything that looks like one — 13 to 19 digits, optionally split
//! by spaces or dashes, passing the Luhn check — is refused.

/// Whether `text` contains something that looks like a payment card number.
pub fn contains_card_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // Collect a run of digits joined by single spaces or dashes, noting
        // where each group starts.
        let mut digits: Vec<u8> = Vec::new();
        let mut bounds: Vec<usize> = vec![0];
        let mut j = i;
        while j < bytes.len() {
            let b = bytes[j];
            if b.is_ascii_digit() {
                digits.push(b - b'0');
                j += 1;
            } else if (b == b' ' || b == b'-')
                && j + 1 < bytes.len()
                && bytes[j + 1].is_ascii_digit()
                && !digits.is_empty()
            {
                bounds.push(digits.len());
                j += 1;
            } else {
                break;
            }
        }
        bounds.push(digits.len());
        if is_card(&digits, &bounds) {
            return true;
        }
        i = j.max(i + 1);
    }
    false
}

/// A run is a card when the whole run is 13–19 digits and passes Luhn, or,
/// in a longer run, when whole groups of it do ("4111 1111 1111 1111 12 25").
fn is_card(digits: &[u8], bounds: &[usize]) -> bool {
    let ok = |d: &[u8]| (13..=19).contains(&d.len()) && luhn(d);
    if digits.len() <= 19 {
        return ok(digits);
    }
    bounds.iter().enumerate().any(|(k, &from)| bounds[k + 1..].iter().any(|&to| ok(&digits[from..to])))
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
        ] {
            assert!(contains_card_number(text), "{text}");
        }
    }

    #[test]
    fn leaves_ordinary_numbers_alone() {
        for text in
            ["order 12345", "call +44 20 7946 0958", "4111111111111112", "invoice 2026-000123", "1234 5678 9012", ""]
        {
            assert!(!contains_card_number(text), "{text}");
        }
    }
}
