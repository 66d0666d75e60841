//! Countries (ISO 3166-1 alpha-2), for sign-up, segments, partners and trend
//! reports. Codes are stored uppercase; names come from the `celes` table.

use celes::Country;

/// The code, uppercase, when `code` names a country (`in`, `IN`).
pub fn normalise(code: &str) -> Option<String> {
    let code = code.trim();
    if code.len() != 2 {
        return None;
    }
    Country::from_alpha2(code).ok().map(|c| c.alpha2.to_string())
}

/// The English name of a country code (`GB` → "United Kingdom Of Great Britain And Northern Ireland").
pub fn name(code: &str) -> Option<&'static str> {
    let c = Country::from_alpha2(code.trim()).ok()?;
    Some(short(c.long_name))
}

fn short(long_name: &'static str) -> &'static str {
    long_name.strip_prefix("The ").unwrap_or(long_name)
}

/// Every country as (code, name), sorted by name, for select lists.
pub fn all() -> Vec<(&'static str, &'static str)> {
    let mut list: Vec<(&'static str, &'static str)> =
        Country::get_countries().iter().map(|c| (c.alpha2, short(c.long_name))).collect();
    list.sort_by(|a, b| a.1.cmp(b.1));
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_and_named() {
        assert_eq!(normalise(" in ").as_deref(), Some("IN"));
        assert_eq!(normalise("XX"), None);
        assert_eq!(normalise("IND"), None);
        assert_eq!(name("SG"), Some("Singapore"));
        assert!(name("GB").is_some_and(|n| n.starts_with("United Kingdom")));
        let all = all();
        assert!(all.len() > 240);
        assert!(all.windows(2).all(|w| w[0].1 <= w[1].1));
    }
}
