//! The site in English and French (BRW-1). The language comes from the
//! visitor's choice (`?lang=fr`, remembered in `seldesk_lang`: for 12 months
//! with preferences consent, otherwise only for the visit) or else from
//! Accept-Language. A middleware sets it for the request; templates ask
//! [`t`] and [`tf`] for their words.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;
use crate::auth::cookie;

/// A language the site speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Fr];

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Fr => "Français",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let primary = s.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        Self::ALL.into_iter().find(|l| l.code() == primary)
    }
}

tokio::task_local! {
    static LANG: Lang;
}

/// The language of the request being served (English outside one).
pub fn current() -> Lang {
    LANG.try_with(|l| *l).unwrap_or(Lang::En)
}

/// The code of the current language, for `<html lang>`.
pub fn lang_code() -> &'static str {
    current().code()
}

/// Every language with its name and whether it is the current one (switcher).
pub fn languages() -> Vec<(&'static str, &'static str, bool)> {
    let now = current();
    Lang::ALL.into_iter().map(|l| (l.code(), l.name(), l == now)).collect()
}

type Catalog = HashMap<String, HashMap<String, String>>;

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    // Checked by a unit test; an unreadable catalog is a build defect.
    toml::from_str(include_str!("../i18n/messages.toml")).unwrap_or_default()
});

/// The words for `key` in the current language (English if missing).
pub fn t(key: &str) -> String {
    let lang = current().code();
    CATALOG.get(key).and_then(|m| m.get(lang).or_else(|| m.get("en"))).cloned().unwrap_or_else(|| key.to_string())
}

/// French for the site's English sentences (i18n/fr.toml: "English" =
/// "French"), for the control panel's pages: a sentence is written once,
/// in English, where it is used, and found here by its text.
static FRENCH: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    // Checked by a unit test; an unreadable catalog is a build defect.
    toml::from_str(include_str!("../i18n/fr.toml")).unwrap_or_default()
});

/// A date in words in the current language: "7 December 2026", "7 décembre 2026".
pub fn long_date(d: time::Date) -> String {
    const FR: [&str; 12] = [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ];
    match current() {
        Lang::En => format!("{} {} {}", d.day(), d.month(), d.year()),
        Lang::Fr => format!("{} {} {}", d.day(), FR[usize::from(u8::from(d.month())) - 1], d.year()),
    }
}

/// A day in words with how far it is from today, in the current language:
/// "22 December 2026, in 15 days", "7 décembre 2026, aujourd'hui".
pub fn day(d: time::Date) -> String {
    let Some(today) = crate::frame::today() else { return long_date(d) };
    let n = (d - today).whole_days();
    let fr = current() == Lang::Fr;
    let relative = match (n, fr) {
        (0, false) => "today".to_string(),
        (0, true) => "aujourd'hui".to_string(),
        (1, false) => "tomorrow".to_string(),
        (1, true) => "demain".to_string(),
        (-1, false) => "yesterday".to_string(),
        (-1, true) => "hier".to_string(),
        (n, false) if n > 0 => format!("in {n} days"),
        (n, true) if n > 0 => format!("dans {n} jours"),
        (n, false) => format!("{} days ago", -n),
        (n, true) => format!("il y a {} jours", -n),
    };
    format!("{}, {relative}", long_date(d))
}

/// `english` in the current language (itself when no translation exists).
pub fn tr(english: &str) -> String {
    match current() {
        Lang::Fr => FRENCH.get(english).cloned().unwrap_or_else(|| english.to_string()),
        Lang::En => english.to_string(),
    }
}

/// [`tr`] with `{0}` filled.
pub fn tr1(english: &str, a: impl std::fmt::Display) -> String {
    tr(english).replace("{0}", &a.to_string())
}

/// [`tr`] with `{0}` and `{1}` filled.
pub fn tr2(english: &str, a: impl std::fmt::Display, b: impl std::fmt::Display) -> String {
    tr(english).replace("{0}", &a.to_string()).replace("{1}", &b.to_string())
}

/// The words for `key` in the current language, if the catalog has the key.
pub fn t_opt(key: &str) -> Option<String> {
    CATALOG.get(key).map(|_| t(key))
}

/// As [`t`], with `{0}`, `{1}`… filled in order.
pub fn tf(key: &str, args: &[&dyn std::fmt::Display]) -> String {
    let mut s = t(key);
    for (i, a) in args.iter().enumerate() {
        s = s.replace(&format!("{{{i}}}"), &a.to_string());
    }
    s
}

/// [`tf`] with one value (templates cannot build slices of trait objects).
pub fn tf1(key: &str, a: impl std::fmt::Display) -> String {
    tf(key, &[&a])
}

/// [`tf`] with two values.
pub fn tf2(key: &str, a: impl std::fmt::Display, b: impl std::fmt::Display) -> String {
    tf(key, &[&a, &b])
}

/// A period from the policy file ("3 weeks") in the current language.
pub fn period(p: &str) -> String {
    if current() == Lang::En {
        return p.to_string();
    }
    let words = [
        ("years", "ans"),
        ("year", "an"),
        ("months", "mois"),
        ("month", "mois"),
        ("weeks", "semaines"),
        ("week", "semaine"),
        ("days", "jours"),
        ("day", "jour"),
    ];
    let mut out = p.to_string();
    for (en, fr) in words {
        if out.ends_with(en) {
            out = format!("{}{fr}", &out[..out.len() - en.len()]);
            break;
        }
    }
    out
}

/// The first supported language of an Accept-Language header, by weight.
pub fn from_accept_language(header: &str) -> Option<Lang> {
    let mut tags: Vec<(f32, usize, &str)> = header
        .split(',')
        .enumerate()
        .filter_map(|(i, part)| {
            let mut it = part.split(';');
            let tag = it.next()?.trim();
            let q = it.find_map(|p| p.trim().strip_prefix("q=").and_then(|v| v.parse::<f32>().ok())).unwrap_or(1.0);
            Some((q, i, tag))
        })
        .collect();
    tags.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    tags.into_iter().filter(|(q, _, _)| *q > 0.0).find_map(|(_, _, tag)| Lang::parse(tag))
}

/// Name of the preference cookie (declared in the policy's preferences class).
pub const LANG_COOKIE: &str = crate::cookies::LANG.name;

fn chosen(req: &Request) -> Option<Lang> {
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix("lang=")).and_then(Lang::parse)
}

fn pick(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE)
        .and_then(|c| Lang::parse(&c))
        .or_else(|| headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).and_then(from_accept_language))
        .unwrap_or(Lang::En)
}

/// Serves the request in the visitor's language; a `?lang=` choice is
/// remembered: 12 months with preferences consent (CK-2), else for the visit.
pub(crate) async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let choice = chosen(&req);
    let lang = choice.unwrap_or_else(|| pick(req.headers()));
    let consent = crate::consent::preferences_allowed(&state, req.headers());
    let mut response = LANG.scope(lang, next.run(req)).await;
    if let Some(l) = choice {
        let registered = if consent { &crate::cookies::LANG } else { &crate::cookies::LANG_FOR_VISIT };
        let value = crate::cookies::set(&state, registered, l.code());
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    if !response.headers().contains_key(header::CONTENT_LANGUAGE)
        && let Ok(v) = HeaderValue::from_str(lang.code())
    {
        response.headers_mut().insert(header::CONTENT_LANGUAGE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_a_template_uses_exists_in_every_language() {
        let raw: toml::Table = toml::from_str(include_str!("../i18n/messages.toml")).expect("catalog parses");
        assert!(!CATALOG.is_empty());
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut used = 0;
        for entry in std::fs::read_dir(dir).expect("templates") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
            for part in text.split("i18n::t").skip(1) {
                // Literal keys only: t("…"), tf1("…"), tf2("…"); t(title) looks up a title by its text.
                let rest = part.trim_start_matches(['f', '1', '2']);
                let Some(rest) = rest.strip_prefix("(\"") else { continue };
                let Some(key) = rest.split('"').next() else { continue };
                used += 1;
                let langs = raw.get(key).and_then(|v| v.as_table()).unwrap_or_else(|| panic!("key {key} missing"));
                for l in Lang::ALL {
                    assert!(langs.contains_key(l.code()), "{key} has no {}", l.code());
                }
            }
        }
        assert!(used > 20, "templates use the catalog");
    }

    /// Every sentence a template passes to `tr`, `tr1` or `tr2` has its
    /// French, with the same placeholders.
    #[test]
    fn every_sentence_a_template_translates_has_its_french() {
        let raw: HashMap<String, String> = toml::from_str(include_str!("../i18n/fr.toml")).expect("fr.toml parses");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut missing = Vec::new();
        let mut used = 0;
        let files = ["templates", "src"].iter().flat_map(|d| std::fs::read_dir(root.join(d)).expect("dir"));
        for entry in files {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
            // `tr("…")`, `tr1("…")`, `tr2("…")` as a call of their own (not `str("`).
            for (i, _) in text.match_indices("tr") {
                let before = text[..i].chars().next_back().unwrap_or(' ');
                if before.is_alphanumeric() || before == '_' {
                    continue;
                }
                let rest = text[i + 2..].trim_start_matches(['1', '2']);
                let Some(rest) = rest.strip_prefix("(\"") else { continue };
                let Some(english) = rest.split("\"").next() else { continue };
                if english.is_empty() || english == "…" || english.contains('\\') {
                    continue;
                }
                used += 1;
                match raw.get(english) {
                    None => missing.push(english.to_string()),
                    Some(french) => {
                        for p in ["{0}", "{1}"] {
                            assert_eq!(english.contains(p), french.contains(p), "{english} / {french}: {p}");
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "no French for:\n{}", missing.join("\n"));
        assert!(used > 100, "templates translate their sentences ({used})");
    }

    #[test]
    fn accept_language_weights_decide() {
        assert_eq!(from_accept_language("fr-CH, fr;q=0.9, en;q=0.8"), Some(Lang::Fr));
        assert_eq!(from_accept_language("de, en;q=0.5, fr;q=0.7"), Some(Lang::Fr));
        assert_eq!(from_accept_language("de"), None);
        assert_eq!(from_accept_language("fr;q=0, en"), Some(Lang::En));
    }

    #[tokio::test]
    async fn words_and_periods_follow_the_language() {
        LANG.scope(Lang::Fr, async {
            assert_eq!(t("nav.privacy"), "Confidentialité");
            assert_eq!(
                tf("home.updated", &[&"1 juin 2025"]),
                "Politique de confidentialité mise à jour le 1 juin 2025."
            );
            assert_eq!(period("3 weeks"), "3 semaines");
            assert_eq!(period("12 months"), "12 mois");
            let d = time::macros::date!(2026 - 08 - 07);
            assert_eq!(long_date(d), "7 août 2026");
            assert_eq!(tr("Add contact"), "Ajouter le contact");
            assert_eq!(tr1("Delete {0}", "Asha"), "Supprimer Asha");
            let untranslated = "A sentence nobody translated";
            assert_eq!(tr(untranslated), untranslated);
        })
        .await;
        assert_eq!(t("nav.privacy"), "Privacy");
        assert_eq!(long_date(time::macros::date!(2026 - 08 - 07)), "7 August 2026");
        let today = time::macros::date!(2026 - 12 - 07);
        crate::frame::with_today(today, async {
            assert_eq!(day(time::macros::date!(2026 - 12 - 22)), "22 December 2026, in 15 days");
            assert_eq!(day(today), "7 December 2026, today");
            assert_eq!(day(time::macros::date!(2026 - 12 - 04)), "4 December 2026, 3 days ago");
            LANG.scope(Lang::Fr, async {
                assert_eq!(day(time::macros::date!(2026 - 12 - 08)), "8 décembre 2026, demain");
            })
            .await;
        })
        .await;
        assert_eq!(tr("Add contact"), "Add contact");
    }
}
