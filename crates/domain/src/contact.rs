//! The shape of an e-mail address and of a phone number, wherever a person
//! types one: sign-up, the helpdesk, careers, and the contacts of a
//! customer's database. One rule, so "nope" is refused everywhere.

/// What to tell a person whose e-mail address has no plausible shape.
pub const EMAIL_HINT: &str = "Enter an e-mail address like name@company.com.";

/// What to tell a person whose phone number has no plausible shape.
pub const PHONE_HINT: &str = "Enter a phone number with digits, spaces and + - ( ) only, at least 5 digits.";

/// Whether `v` (already trimmed) looks like an e-mail address: one `@`, a
/// local part of 1 to 64 characters, a domain with a dot inside it, no
/// spaces or control characters, at most 254 characters (RFC 5321).
pub fn is_email(v: &str) -> bool {
    if v.len() > 254 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = v.rsplit_once('@') else { return false };
    !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// Whether `v` (already trimmed) looks like a phone number: digits, spaces
/// and `+ - ( ) .` only, with at least 5 digits.
pub fn is_phone(v: &str) -> bool {
    v.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c)) && v.chars().filter(char::is_ascii_digit).count() >= 5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_addresses_and_numbers_pass_and_the_rest_do_not() {
        for ok in ["a@b.co", "asha.rao+news@rao-textiles.in", "x@mail.example.org"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in ["nope", "a@b", "@b.com", "a@.com", "a@b.com.", "a b@c.com", "a@b..com", "a@b@c.com"] {
            assert!(!is_email(bad), "{bad}");
        }
        for ok in ["+91 22 5555 0100", "(020) 7946-0018", "65.6123.4567"] {
            assert!(is_phone(ok), "{ok}");
        }
        for bad in ["call me", "123", "+44 20 ext. 5", "555-CALL"] {
            assert!(!is_phone(bad), "{bad}");
        }
    }
}
