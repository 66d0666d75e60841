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
use crate::auth::{CSRF_COOKIE, CsrfToken, MaybeAccount, cookie, safe_next, set_cookie, verify_csrf};
use crate::pages::render;

pub const CONSENT_COOKIE: &str = "seldesk_consent";
const VISIT_COOKIE: &str = "seldesk_visit";

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

fn gpc(headers: &HeaderMap) -> bool {
    headers.get("sec-gpc").and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() == "1")
}

/// Whether this visitor consented to preference cookies (CK-2) under the
/// policy version in force.
pub(crate) fn preferences_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let version = current_version(state);
    read_consent(headers).filter(|c| c.version == version).is_some_and(|c| c.choices.preferences)
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
    if !is_html || path.starts_with("/staff") {
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
            if choices.analytics && cookie(&headers, VISIT_COOKIE).is_none() {
                let visit = seldesk_accounts::secret::token().unwrap_or_default();
                parts.headers.append(header::SET_COOKIE, set_cookie(&state, VISIT_COOKIE, &visit[..16], Some(30 * 60)));
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
    csrf: String,
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
    if let Err(e) = verify_csrf(&headers, &f.csrf) {
        return e.into_response();
    }
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
    r.headers_mut().append(header::SET_COOKIE, set_cookie(&state, CONSENT_COOKIE, &value, Some(395 * 24 * 3600)));
    // Refusing or withdrawing a class deletes the cookies it covered.
    for class in &state.policy.cookies {
        let allowed = match class.class {
            CookieClassId::Necessary => true,
            CookieClassId::Preferences => choices.preferences,
            CookieClassId::Analytics => choices.analytics,
            CookieClassId::ThirdPartyAnalytics => choices.third_party,
        };
        if !allowed {
            for c in &class.cookies {
                r.headers_mut().append(header::SET_COOKIE, set_cookie(&state, &c.name, "", Some(0)));
            }
        }
    }
    let _ = CSRF_COOKIE;
    r
}
