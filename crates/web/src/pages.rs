//! Server-rendered public pages.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use seldesk_domain::policy::Version;
use time::Date;
use time::macros::format_description;

use crate::{AppState, markdown_to_html};

const STYLESHEET: &str = include_str!("../static/site.css");

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/privacy", get(privacy))
        .route("/privacy.md", get(privacy_markdown))
        .route("/privacy/versions", get(privacy_versions))
        .route("/privacy/versions/{date}", get(privacy_version))
        .route("/static/site.css", get(stylesheet))
        .route("/static/{file}", get(hashed_stylesheet))
        .route("/favicon.ico", get(|| async { Redirect::permanent(FAVICON_PATH) }))
        .route(FAVICON_PATH, get(favicon))
        .route("/robots.txt", get(robots))
        .route("/sitemap.xml", get(sitemap))
}

/// The site's icon: the logo's "S", drawn, so no image file is needed.
const FAVICON: &str = concat!(
    r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">"##,
    r##"<rect width="64" height="64" rx="14" fill="#1f4f8f"/>"##,
    r##"<text x="32" y="45" font-family="Helvetica,Arial,sans-serif" font-size="40" font-weight="700" "##,
    r##"text-anchor="middle" fill="#fff">S</text></svg>"##
);
const FAVICON_PATH: &str = "/static/favicon.svg";

/// The stylesheet's fingerprint: its URL changes when it does, so it can
/// be cached for a year (`/static/site.<hash>.css`).
fn stylesheet_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| blake3::hash(STYLESHEET.as_bytes()).to_hex()[..16].to_string())
}

/// The stylesheet's URL for templates.
pub(crate) fn stylesheet_url() -> String {
    format!("/static/site.{}.css", stylesheet_hash())
}

/// A static text with an ETag: a 304 when the browser has it already.
fn cached(
    headers: &HeaderMap,
    content_type: &'static str,
    cache: &'static str,
    etag: &str,
    body: &'static str,
) -> Response {
    let tag = format!("\"{etag}\"");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let status = if fresh { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
    let mut r = (status, [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, cache)]).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&tag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    if !fresh {
        *r.body_mut() = axum::body::Body::from(body);
    }
    r
}

/// `/static/site.<hash>.css`: the current stylesheet, cached for a year;
/// any other name under `/static/` is not found.
async fn hashed_stylesheet(headers: HeaderMap, Path(file): Path<String>) -> Response {
    if file != format!("site.{}.css", stylesheet_hash()) {
        return not_found().await;
    }
    let cache = "public, max-age=31536000, immutable";
    cached(&headers, "text/css; charset=utf-8", cache, stylesheet_hash(), STYLESHEET)
}

async fn favicon(headers: HeaderMap) -> Response {
    cached(&headers, "image/svg+xml", "public, max-age=86400", "favicon-1", FAVICON)
}

/// Search engines may read the public pages; nothing behind a sign-in, a
/// private link or the API is theirs to crawl.
async fn robots(State(state): State<AppState>) -> Response {
    let body = format!(
        "User-agent: *\nDisallow: /account\nDisallow: /databases\nDisallow: /staff\nDisallow: /api/\nDisallow: /helpdesk/\nDisallow: /careers/applications/\nDisallow: /marketing/\nAllow: /\nSitemap: {}/sitemap.xml\n",
        state.web.public_url
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=86400")], body)
        .into_response()
}

/// The public pages, each once, with the open job postings and events, at
/// the configured public address (never one a request's Host names).
async fn sitemap(State(state): State<AppState>) -> Response {
    let mut paths: Vec<String> = [
        "/",
        "/pricing",
        "/privacy",
        "/privacy/versions",
        "/careers",
        "/events",
        "/partners",
        "/helpdesk",
        "/contact",
        "/signup",
        "/api/docs",
    ]
    .map(String::from)
    .into();
    if let Ok(postings) = state.careers.open_postings().await {
        paths.extend(postings.into_iter().map(|p| format!("/careers/{}", p.slug)));
    }
    if let Ok(events) = state.marketing.open_events().await {
        paths.extend(events.into_iter().map(|e| format!("/events/{}", e.slug)));
    }
    let mut body = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    for path in paths {
        let url = format!("{}{path}", state.web.public_url);
        // Slugs are checked when made; escape anyway, as XML requires.
        let url = url.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        body.push_str(&format!("  <url><loc>{url}</loc></url>\n"));
    }
    body.push_str("</urlset>\n");
    ([(header::CONTENT_TYPE, "application/xml; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], body)
        .into_response()
}

/// Renders a template, or a plain 500 when rendering itself fails.
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "The page could not be rendered.").into_response()
        }
    }
}

fn long_date(d: Date) -> String {
    crate::i18n::long_date(d)
}

/// A region, as the home page shows it.
struct RegionView {
    name: String,
    city: String,
    hosting: bool,
    backup: bool,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    title: &'static str,
    org: String,
    regions: Vec<RegionView>,
    backup_regions: String,
    browser_keep: String,
    grace: String,
    backup_keep: String,
    last_updated: String,
    /// The product page seen last (preference cookie), offered again.
    recent: Option<(&'static str, &'static str)>,
}

async fn home(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let p = &state.policy;
    let keep = |id: &str| p.retention(id).map(|r| r.keep.to_string()).unwrap_or_default();
    let current = p.current_version(state.clock.now().date());
    let page = HomePage {
        title: "Your business database, hosted with its privacy promises kept",
        org: p.organisation.name.clone(),
        regions: p
            .regions
            .iter()
            .map(|r| RegionView { name: r.name.clone(), city: r.city.clone(), hosting: r.hosting, backup: r.backup })
            .collect(),
        backup_regions: p.backup_regions().map(|r| r.name.clone()).collect::<Vec<_>>().join(" and "),
        browser_keep: keep("browser_event"),
        grace: keep("customer_database"),
        backup_keep: keep("backup"),
        last_updated: long_date(current.effective),
        recent: crate::consent::recent_page(&state, &headers),
    };
    render(StatusCode::OK, &page)
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage {
    title: String,
    body: String,
    effective: String,
    is_current: bool,
    current_link: String,
    upcoming: Option<(String, String)>,
}

fn privacy_page(state: &AppState, version: &Version) -> PrivacyPage {
    let p = &state.policy;
    let today = state.clock.now().date();
    let current = p.current_version(today);
    let newest = p.newest_version();
    let upcoming = (newest.effective > today).then(|| (newest.effective.to_string(), long_date(newest.effective)));
    PrivacyPage {
        title: format!("{} Privacy Policy", p.organisation.name),
        body: markdown_to_html(&p.text_of(version)),
        effective: version.effective.to_string(),
        is_current: version.effective == current.effective,
        current_link: "/privacy".into(),
        upcoming,
    }
}

async fn privacy(State(state): State<AppState>) -> Response {
    let version = state.policy.current_version(state.clock.now().date());
    render(StatusCode::OK, &privacy_page(&state, version))
}

async fn privacy_markdown(State(state): State<AppState>) -> Response {
    let version = state.policy.current_version(state.clock.now().date());
    ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], state.policy.text_of(version)).into_response()
}

struct VersionRow {
    date: String,
    label: String,
    summary: String,
    status: &'static str,
}

#[derive(Template)]
#[template(path = "versions.html")]
struct VersionsPage {
    title: &'static str,
    rows: Vec<VersionRow>,
}

async fn privacy_versions(State(state): State<AppState>) -> Response {
    let today = state.clock.now().date();
    let current = state.policy.current_version(today).effective;
    let rows = state
        .policy
        .versions()
        .iter()
        .map(|v| VersionRow {
            date: v.effective.to_string(),
            label: long_date(v.effective),
            summary: v.summary.clone(),
            status: if v.effective == current {
                "in force"
            } else if v.effective > today {
                "upcoming"
            } else {
                "superseded"
            },
        })
        .collect();
    render(StatusCode::OK, &VersionsPage { title: "Privacy policy versions", rows })
}

async fn privacy_version(State(state): State<AppState>, Path(date): Path<String>) -> Response {
    let parsed = Date::parse(&date, format_description!("[year]-[month]-[day]"));
    let Ok(date) = parsed else {
        return render(
            StatusCode::NOT_FOUND,
            &NotFoundPage {
                title: "No such policy version",
                message: format!(
                    "\u{201c}{date}\u{201d} is not a date. Versions are named by their effective date, like /privacy/versions/2026-11-25."
                ),
            },
        );
    };
    match state.policy.version(date) {
        Some(version) => render(StatusCode::OK, &privacy_page(&state, version)),
        None => render(
            StatusCode::NOT_FOUND,
            &NotFoundPage {
                title: "No such policy version",
                message: format!(
                    "No version of the privacy policy took effect on {date}. The list of versions shows every date."
                ),
            },
        ),
    }
}

/// The stylesheet at its old address, for pages cached before it had a
/// fingerprint: revalidated with its ETag.
async fn stylesheet(headers: HeaderMap) -> Response {
    cached(&headers, "text/css; charset=utf-8", "public, max-age=3600", stylesheet_hash(), STYLESHEET)
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    title: &'static str,
    message: String,
}

pub(crate) async fn not_found() -> Response {
    render(
        StatusCode::NOT_FOUND,
        &NotFoundPage {
            title: "Page not found",
            message: "There is no page at this address. It may have moved, or the link may be mistyped.".into(),
        },
    )
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// A plain page with a title and a message, in the site's layout.
pub(crate) fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &MessagePage { title, message })
}

/// Who did something, as the account holder reads it (never an internal id).
pub(crate) fn audit_who(actor: &str, me: &str) -> String {
    let key = match actor {
        a if a == me => "audit.who.you",
        "system" => "audit.who.system",
        "operator" => "audit.who.operator",
        a if a.starts_with("staff:") => "audit.who.staff",
        _ => "audit.who.other",
    };
    crate::i18n::t(key)
}

/// What was done, in words: the catalog's sentence, or the recorded action
/// spelled out ("billing.amount_mismatch" → "Billing: amount mismatch").
pub(crate) fn audit_what(action: &str) -> String {
    crate::i18n::t_opt(&format!("audit.{action}")).unwrap_or_else(|| {
        let (area, act) = action.split_once('.').unwrap_or(("", action));
        let mut area = area.replace('_', " ");
        if let Some(first) = area.get(..1) {
            area = first.to_uppercase() + &area[1..];
        }
        let act = act.replace(['_', '.'], " ");
        if area.is_empty() { act } else { format!("{area}: {act}") }
    })
}

#[cfg(test)]
mod audit_words {
    use super::*;

    #[test]
    fn actions_read_as_words_and_people_by_their_part() {
        assert_eq!(audit_what("account.created"), "Account created");
        assert_eq!(audit_what("billing.amount_mismatch"), "Billing: amount mismatch");
        assert_eq!(audit_who("person:abc", "person:abc"), "You");
        assert_eq!(audit_who("staff:x", "person:abc"), "Seldesk staff");
        assert_eq!(audit_who("person:other", "person:abc"), "Someone else");
        assert_eq!(audit_who("system", "person:abc"), "Seldesk, automatically");
    }
}
