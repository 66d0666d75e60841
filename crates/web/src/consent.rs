//! The cookie banner and cookie settings (CK-1…CK-6). Nothing but strictly
//! necessary cookies, and no third-party script, until the visitor chooses;
//! the choice is recorded server-side as proof and can be changed or
//! withdrawn from "Cookie settings" in every footer.

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use seldesk_domain::policy::CookieClassId;
use seldesk_privacy::consent::{Choices, Consents};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{CsrfToken, MaybeAccount, cookie, safe_next};
use crate::pages::render;

pub const CONSENT_COOKIE: &str = crate::cookies::CONSENT.name;
const VISIT_COOKIE: &str = crate::cookies::VISIT.name;

/// A browser's consent cookie: `<id>.<policy version>.<choices>`.
struct ConsentCookie {
    id: String,
    version: String,
    choices: Choices,
}

fn read_consent(headers: &HeaderMap) -> Option<ConsentCookie> {
    let raw = cookie(headers, CONSENT_COOKIE)?;
    let mut parts = raw.splitn(3, '.');
    let (id, version, bits) = (parts.next()?, parts.next()?, parts.next()?);
    // The id is ours (random); one that reads as a card number was not.
    if id.len() < 16
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        || seldesk_privacy::card::contains_card_number(id)
    {
        return None;
    }
    Some(ConsentCookie { id: id.to_string(), version: version.to_string(), choices: Choices::decode(bits)? })
}

/// The visit id of a visitor who accepted analytics cookies: the cookie's
/// value, if it is one we could have set.
fn visit_id(headers: &HeaderMap) -> Option<String> {
    cookie(headers, VISIT_COOKIE)
        .filter(|v| v.len() == 16 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// What the statistics may link across pages: a hash of the visit cookie,
/// only while analytics consent (and no GPC signal) stands.
pub(crate) fn consented_visit(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let version = current_version(state);
    let consent = read_consent(headers).filter(|c| c.version == version)?;
    if !consent.choices.honour_gpc(gpc(headers)).analytics {
        return None;
    }
    visit_id(headers).map(|v| seldesk_accounts::secret::token_hash(&v)[..32].to_string())
}

fn gpc(headers: &HeaderMap) -> bool {
    headers.get("sec-gpc").and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() == "1")
}

/// Whether this visitor consented to preference cookies (CK-2) under the
/// policy version in force.
pub(crate) fn preferences_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let version = current_version(state);
    read_consent(headers).filter(|c| c.version == version).is_some_and(|c| c.choices.preferences)
}

/// Product pages the home page can offer again (`seldesk_recent`): the
/// cookie holds one of these keys, never a path the browser sent.
const RECENT_PAGES: &[(&str, &str, &str)] = &[
    ("upgrade", "/upgrade", "Database Upgrade"),
    ("careers", "/careers", "Careers"),
    ("events", "/events", "Events"),
    ("partners", "/partners", "Partners"),
];

/// The product page this visitor saw last, with preference consent only.
pub(crate) fn recent_page(state: &AppState, headers: &HeaderMap) -> Option<(&'static str, &'static str)> {
    if !preferences_allowed(state, headers) {
        return None;
    }
    let key = cookie(headers, crate::cookies::RECENT.name)?;
    RECENT_PAGES.iter().find(|(k, _, _)| *k == key).map(|(_, path, label)| (*path, *label))
}

/// The country this visitor chose before, with preference consent only.
pub(crate) fn remembered_country(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if !preferences_allowed(state, headers) {
        return None;
    }
    cookie(headers, crate::cookies::COUNTRY.name).and_then(|c| seldesk_domain::country::normalise(&c))
}

/// Remembers a country the visitor chose in a form, if preferences allow.
pub(crate) fn remember_country(state: &AppState, headers: &HeaderMap, response: &mut Response, country: &str) {
    if let Some(code) = seldesk_domain::country::normalise(country)
        && preferences_allowed(state, headers)
    {
        response.headers_mut().append(header::SET_COOKIE, crate::cookies::set(state, &crate::cookies::COUNTRY, &code));
    }
}

fn current_version(state: &AppState) -> String {
    state.policy.current_version(state.clock.now().date()).effective.to_string()
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/cookies", get(settings).post(choose)).route("/static/ga.js", get(ga_js))
}

const GA_JS: &str = "(function(){var s=document.currentScript;var id=s&&s.dataset.gaId;if(!id)return;window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}gtag('js',new Date());gtag('config',id);})();\n";

async fn ga_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], GA_JS).into_response()
}

/// Google Analytics receives browser data straight from the visitor: its
/// script loads only while the provider registry allows that transfer.
fn ga_registered(state: &AppState) -> bool {
    match seldesk_privacy::disclosure::browser_transfer_allowed(&state.policy, "google_analytics", "statistics") {
        Ok(()) => true,
        Err(refusal) => {
            tracing::warn!(%refusal, "Google Analytics is configured but the policy does not allow it; not loaded");
            false
        }
    }
}

/// Adds the banner while no valid choice exists, the third-party script only
/// after its consent, and the own-analytics cookie only after analytics consent.
pub(crate) async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    // The cookie settings page is the banner's longer form: no banner over it.
    if !is_html || path.starts_with("/staff") || path == "/cookies" {
        return response;
    }
    let version = current_version(&state);
    let consent = read_consent(&headers).filter(|c| c.version == version);
    let gpc = gpc(&headers);
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 4 * 1024 * 1024).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be prepared.").into_response();
    };
    let mut html = String::from_utf8_lossy(&bytes).into_owned();
    match &consent {
        None => {
            let csrf = CsrfToken::for_request(&state, &headers);
            if let Some(v) = &csrf.set {
                parts.headers.append(header::SET_COOKIE, v.clone());
            }
            let banner = Banner { csrf: &csrf.token, back: &path, gpc }.render().unwrap_or_default();
            html = html.replacen("</body>", &format!("{banner}</body>"), 1);
        }
        Some(c) => {
            let choices = c.choices.honour_gpc(gpc);
            if choices.third_party
                && let Some(id) = state.web.google_analytics_id.as_deref()
                && ga_registered(&state)
            {
                let tags = format!(
                    "<script async src=\"https://www.googletagmanager.com/gtag/js?id={id}\"></script><script src=\"/static/ga.js\" data-ga-id=\"{id}\"></script>"
                );
                html = html.replacen("</head>", &format!("{tags}</head>"), 1);
                parts.headers.insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'self'; img-src 'self' data: https://*.google-analytics.com https://*.googletagmanager.com; style-src 'self'; script-src 'self' https://www.googletagmanager.com; connect-src 'self' https://*.google-analytics.com https://*.analytics.google.com; frame-ancestors 'none'; form-action 'self'; base-uri 'self'",
                    ),
                );
            }
            if choices.preferences
                && let Some((key, _, _)) = RECENT_PAGES.iter().find(|(_, p, _)| *p == path)
            {
                parts.headers.append(header::SET_COOKIE, crate::cookies::set(&state, &crate::cookies::RECENT, key));
            }
            if choices.analytics {
                // The same visit while pages follow within 30 minutes.
                let visit = visit_id(&headers).unwrap_or_else(|| {
                    seldesk_accounts::secret::token().unwrap_or_default().chars().take(16).collect()
                });
                parts.headers.append(header::SET_COOKIE, crate::cookies::set(&state, &crate::cookies::VISIT, &visit));
            }
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(html))
}

#[derive(Template)]
#[template(path = "cookie_banner.html")]
struct Banner<'a> {
    csrf: &'a str,
    back: &'a str,
    gpc: bool,
}

struct ClassView {
    id: &'static str,
    name: String,
    description: String,
    cookies: String,
    checked: bool,
    locked: bool,
}

#[derive(Template)]
#[template(path = "cookies.html")]
struct SettingsPage {
    title: &'static str,
    csrf: String,
    classes: Vec<ClassView>,
    chosen: bool,
    gpc: bool,
    saved: bool,
}

#[derive(Deserialize)]
struct SettingsQuery {
    saved: Option<String>,
}

async fn settings(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<SettingsQuery>,
) -> Response {
    let csrf = CsrfToken::for_request(&state, &headers);
    let version = current_version(&state);
    let current = read_consent(&headers).filter(|c| c.version == version);
    let gpc = gpc(&headers);
    let choices = current.as_ref().map(|c| c.choices.honour_gpc(gpc)).unwrap_or(Choices::NONE);
    let classes = state
        .policy
        .cookies
        .iter()
        .map(|c| {
            let (id, checked) = match c.class {
                CookieClassId::Necessary => ("necessary", true),
                CookieClassId::Preferences => ("preferences", choices.preferences),
                CookieClassId::Analytics => ("analytics", choices.analytics),
                CookieClassId::ThirdPartyAnalytics => ("third_party", choices.third_party),
            };
            ClassView {
                id,
                name: c.name.clone(),
                description: c.description.clone(),
                cookies: c.cookies.iter().map(|k| k.name.clone()).collect::<Vec<_>>().join(", "),
                checked,
                locked: c.class == CookieClassId::Necessary
                    || gpc && matches!(c.class, CookieClassId::Analytics | CookieClassId::ThirdPartyAnalytics),
            }
        })
        .collect();
    let page = SettingsPage {
        title: "Cookie settings",
        csrf: csrf.token.clone(),
        classes,
        chosen: current.is_some(),
        gpc,
        saved: q.saved.is_some(),
    };
    csrf.attach(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
struct ChoiceForm {
    #[serde(default)]
    choice: String,
    #[serde(default)]
    back: String,
    preferences: Option<String>,
    analytics: Option<String>,
    third_party: Option<String>,
}

async fn choose(
    State(state): State<AppState>,
    MaybeAccount(who): MaybeAccount,
    headers: HeaderMap,
    Form(f): Form<ChoiceForm>,
) -> Response {
    let gpc = gpc(&headers);
    let (choices, withdrawn) = match f.choice.as_str() {
        "accept_all" => (Choices::ALL, false),
        "reject_all" => (Choices::NONE, false),
        "withdraw" => (Choices::NONE, true),
        _ => (
            Choices {
                preferences: f.preferences.is_some(),
                analytics: f.analytics.is_some(),
                third_party: f.third_party.is_some(),
            },
            false,
        ),
    };
    let choices = choices.honour_gpc(gpc);
    let id = read_consent(&headers)
        .map(|c| c.id)
        .unwrap_or_else(|| seldesk_accounts::secret::token().unwrap_or_default()[..22].to_string());
    let version = current_version(&state);
    let subject = who.as_ref().map(|(a, _, _)| a.subject());
    let consents = Consents::new(state.db.clone(), state.clock.clone());
    if let Err(e) = consents.record(&id, subject.as_deref(), choices, &version, gpc, withdrawn).await {
        tracing::error!(error = %e, "consent not recorded");
        return crate::pages::message_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Choice not saved",
            "Your choice could not be saved. Please try again.",
        );
    }
    let back =
        if f.back.is_empty() { "/cookies?saved=1".to_string() } else { safe_next(Some(&f.back), "/cookies?saved=1") };
    let mut r = Redirect::to(&back).into_response();
    let value = format!("{id}.{version}.{}", choices.encode());
    r.headers_mut().append(header::SET_COOKIE, crate::cookies::set(&state, &crate::cookies::CONSENT, &value));
    // Refusing or withdrawing a class deletes the cookies it covered.
    for c in crate::cookies::REGISTRY {
        let allowed = match c.class {
            CookieClassId::Necessary => true,
            CookieClassId::Preferences => choices.preferences,
            CookieClassId::Analytics => choices.analytics,
            CookieClassId::ThirdPartyAnalytics => choices.third_party,
        };
        // A name also registered as necessary (the language for this visit)
        // stays: only its kept form needed the refused consent.
        let also_necessary =
            crate::cookies::REGISTRY.iter().any(|n| n.name == c.name && n.class == CookieClassId::Necessary);
        if !allowed && !also_necessary {
            r.headers_mut().append(header::SET_COOKIE, crate::cookies::clear(&state, c));
        }
    }
    r
}
