//! The cookie registry: every cookie the site sets, with its class, lifetime
//! and when it is set. Every `Set-Cookie` is built from an entry here
//! ([`set`], [`clear`]), and start-up checks the registry against the policy
//! file's cookie table, so the page lists exactly what browsers receive
//! (CK-1…CK-6).

use axum::http::HeaderValue;
use cookie::{Cookie, SameSite};
use seldesk_domain::Policy;
use seldesk_domain::policy::CookieClassId;

use crate::AppState;

/// How long a cookie lives in the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Until the browser closes (no `Max-Age`).
    Session,
    /// `Max-Age` in seconds.
    Seconds(i64),
}

/// One registered cookie.
#[derive(Debug)]
pub struct Registered {
    pub name: &'static str,
    /// The consent class it needs (the policy's cookie table groups by it).
    pub class: CookieClassId,
    pub lifetime: Lifetime,
    /// When it is set, for operators and the crawl test.
    pub set_when: &'static str,
    /// Set by a third party's script in the browser, never by our server.
    pub third_party: bool,
}

const DAY: i64 = 24 * 3600;

pub const SESSION: Registered = Registered {
    name: "seldesk_session",
    class: CookieClassId::Necessary,
    lifetime: Lifetime::Session,
    set_when: "on sign-in (customers and staff); removed on sign-out",
    third_party: false,
};
pub const CSRF: Registered = Registered {
    name: "seldesk_csrf",
    class: CookieClassId::Necessary,
    lifetime: Lifetime::Session,
    set_when: "on the first page with a form",
    third_party: false,
};
pub const CONSENT: Registered = Registered {
    name: "seldesk_consent",
    class: CookieClassId::Necessary,
    lifetime: Lifetime::Seconds(395 * DAY),
    set_when: "when the visitor makes a cookie choice",
    third_party: false,
};
/// The language picked with `?lang=`, for this visit only: a user-interface
/// choice the visitor made, which needs no consent while it ends with the
/// browser session.
pub const LANG_FOR_VISIT: Registered = Registered {
    name: "seldesk_lang",
    class: CookieClassId::Necessary,
    lifetime: Lifetime::Session,
    set_when: "when the visitor picks a language, without preference cookies",
    third_party: false,
};
/// The same choice kept for the next visits: a preference.
pub const LANG: Registered = Registered {
    name: "seldesk_lang",
    class: CookieClassId::Preferences,
    lifetime: Lifetime::Seconds(365 * DAY),
    set_when: "when the visitor picks a language, with preference cookies",
    third_party: false,
};
pub const COUNTRY: Registered = Registered {
    name: "seldesk_country",
    class: CookieClassId::Preferences,
    lifetime: Lifetime::Seconds(365 * DAY),
    set_when: "when the visitor chooses a country (sign-up, partners), with preference cookies",
    third_party: false,
};
pub const RECENT: Registered = Registered {
    name: "seldesk_recent",
    class: CookieClassId::Preferences,
    lifetime: Lifetime::Seconds(30 * DAY),
    set_when: "on a product page (upgrade, careers, events, partners), with preference cookies",
    third_party: false,
};
pub const VISIT: Registered = Registered {
    name: "seldesk_visit",
    class: CookieClassId::Analytics,
    lifetime: Lifetime::Seconds(30 * 60),
    set_when: "on a page, with analytics cookies; renewed while the visit goes on",
    third_party: false,
};
pub const GA: Registered = Registered {
    name: "_ga",
    class: CookieClassId::ThirdPartyAnalytics,
    lifetime: Lifetime::Seconds(730 * DAY),
    set_when: "by Google Analytics' script, with third-party analytics cookies",
    third_party: true,
};

/// Every cookie, in the order of the policy's table.
pub const REGISTRY: &[&Registered] =
    &[&SESSION, &CSRF, &CONSENT, &LANG_FOR_VISIT, &LANG, &COUNTRY, &RECENT, &VISIT, &GA];

/// A `Set-Cookie` value for a registered cookie. Only the server's own
/// cookies: a third party's are set by its script.
pub fn set(state: &AppState, cookie: &Registered, value: &str) -> HeaderValue {
    debug_assert!(!cookie.third_party, "{} is set by a third party", cookie.name);
    build(state, cookie, value, cookie.lifetime)
}

/// A `Set-Cookie` value that deletes a registered cookie.
pub fn clear(state: &AppState, cookie: &Registered) -> HeaderValue {
    build(state, cookie, "", Lifetime::Seconds(0))
}

fn build(state: &AppState, registered: &Registered, value: &str, lifetime: Lifetime) -> HeaderValue {
    let mut c = Cookie::build((registered.name, value.to_string()))
        .path("/")
        .http_only(true)
        .same_site(if registered.name == CSRF.name { SameSite::Strict } else { SameSite::Lax })
        .secure(state.web.secure_cookies);
    if let Lifetime::Seconds(secs) = lifetime {
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    HeaderValue::from_str(&c.build().to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Why the registry and the policy file's cookie table disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryMismatch {
    #[error("cookie `{name}` is set by the site as {class:?} but the policy file does not list it in that class")]
    NotInPolicy { name: String, class: CookieClassId },
    #[error("the policy file lists cookie `{name}` as {class:?}, but the site never sets it in that class")]
    NotInRegistry { name: String, class: CookieClassId },
}

/// Start-up check: the policy's cookie table is exactly the registry.
pub fn check(policy: &Policy) -> Result<(), RegistryMismatch> {
    let listed = |name: &str, class: CookieClassId| {
        policy.cookies.iter().any(|c| c.class == class && c.cookies.iter().any(|k| k.name == name))
    };
    for r in REGISTRY {
        if !listed(r.name, r.class) {
            return Err(RegistryMismatch::NotInPolicy { name: r.name.into(), class: r.class });
        }
    }
    for class in &policy.cookies {
        for k in &class.cookies {
            if !REGISTRY.iter().any(|r| r.name == k.name && r.class == class.class) {
                return Err(RegistryMismatch::NotInRegistry { name: k.name.clone(), class: class.class });
            }
        }
    }
    Ok(())
}

/// The registry entry a `Set-Cookie` header belongs to: by name, and for a
/// name in two classes by its lifetime (session or kept).
pub fn registered_for(name: &str, persistent: bool) -> Option<&'static Registered> {
    let mut candidates = REGISTRY.iter().copied().filter(|r| r.name == name);
    let first = candidates.next()?;
    match candidates.next() {
        None => Some(first),
        Some(second) => [first, second].into_iter().find(|r| (r.lifetime != Lifetime::Session) == persistent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // promise: CK-1
    #[test]
    fn the_builtin_policy_lists_exactly_the_registry() {
        let policy = Policy::builtin().expect("policy");
        assert_eq!(check(&policy), Ok(()));
    }

    #[test]
    fn a_cookie_missing_from_the_policy_is_refused() {
        let source = seldesk_domain::policy::BUILTIN_SOURCE.replacen(
            "  { name = \"seldesk_recent\"",
            "  # { name = \"seldesk_recent\"",
            1,
        );
        assert_ne!(source, seldesk_domain::policy::BUILTIN_SOURCE);
        let policy = Policy::parse(&source, "edited.toml", |_| Ok(String::new())).expect("valid");
        assert!(matches!(check(&policy), Err(RegistryMismatch::NotInPolicy { .. })));
    }

    #[test]
    fn a_name_in_two_classes_is_told_apart_by_its_lifetime() {
        assert_eq!(registered_for("seldesk_lang", false).map(|r| r.class), Some(CookieClassId::Necessary));
        assert_eq!(registered_for("seldesk_lang", true).map(|r| r.class), Some(CookieClassId::Preferences));
        assert!(registered_for("tracker", true).is_none());
    }
}
