//! Cookies, CSRF protection, who is signed in, and how errors become
//! responses. Browser sessions ride in the `seldesk_session` cookie
//! (HttpOnly, SameSite=Lax, Secure when configured); the API takes
//! `Authorization: Bearer <token>`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::Cookie;
use seldesk_accounts::{Account, AccountStatus, Principal, Scope, Session, SessionKind, StaffMember, TokenGrant};

use crate::AppState;

pub const SESSION_COOKIE: &str = crate::cookies::SESSION.name;
pub const CSRF_COOKIE: &str = crate::cookies::CSRF.name;

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// The peer address (for rate limits).
pub fn client_ip(parts_or_connect: Option<&ConnectInfo<SocketAddr>>) -> String {
    parts_or_connect.map(|c| c.0.ip().to_string()).unwrap_or_else(|| "unknown".into())
}

/// The CSRF token of this browser: the cookie's, or a new one to set.
pub struct CsrfToken {
    pub token: String,
    pub set: Option<HeaderValue>,
}

impl CsrfToken {
    pub fn for_request(state: &AppState, headers: &HeaderMap) -> Self {
        match cookie(headers, CSRF_COOKIE).filter(|t| t.len() >= 32) {
            Some(token) => Self { token, set: None },
            None => {
                let token = seldesk_accounts::secret::token().unwrap_or_default();
                let set = Some(crate::cookies::set(state, &crate::cookies::CSRF, &token));
                Self { token, set }
            }
        }
    }

    /// Adds the cookie to a response when it is new.
    pub fn attach(&self, mut response: Response) -> Response {
        if let Some(v) = &self.set {
            response.headers_mut().append(header::SET_COOKIE, v.clone());
        }
        response
    }
}

/// Gives every request one CSRF token: a browser without the cookie gets
/// one made here, placed in the request as if it had sent it, so the page
/// and the cookie banner (and any other part of the response) use the same
/// token, and set once on the response. Pages of signed-in people are not
/// kept by the browser or a proxy (`Cache-Control: no-store`).
pub async fn session_cookies(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let for_pages = !path.starts_with("/api/") && !path.starts_with("/static/") && path != "/healthz";
    let signed_in =
        cookie(req.headers(), SESSION_COOKIE).is_some() || req.headers().contains_key(header::AUTHORIZATION);
    let mut set = None;
    if for_pages && cookie(req.headers(), CSRF_COOKIE).filter(|t| t.len() >= 32).is_none() {
        let token = seldesk_accounts::secret::token().unwrap_or_default();
        let mut cookies = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>();
        // First, so it wins over a malformed one the browser still sends.
        cookies.insert(0, format!("{CSRF_COOKIE}={token}"));
        if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
            req.headers_mut().insert(header::COOKIE, v);
            set = Some(crate::cookies::set(&state, &crate::cookies::CSRF, &token));
        }
    }
    let mut response = next.run(req).await;
    if let Some(v) = set {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    if signed_in || path.starts_with("/account") || path.starts_with("/staff") || path.starts_with("/databases") {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Paths whose state-changing requests carry no browser cookie to forge
/// with, so no CSRF token: the API (a bearer token in a header, never a
/// cookie), one-click unsubscribe (RFC 8058: the mail client posts; the
/// link's token is the credential) and the transfers between nodes (the
/// cluster's secret, on the internal listener only). Everything else that
/// is not GET, HEAD or OPTIONS passes [`csrf_layer`].
pub const CSRF_EXEMPT: &[&str] = &["/api/", "/marketing/unsubscribe/", "/internal/"];

/// Largest form body read to find its token (forms are small; files come as
/// multipart, whose token rides in the query or a header).
const FORM_LIMIT: usize = 1024 * 1024;

/// CSRF protection as one layer over the whole site: a state-changing
/// request outside [`CSRF_EXEMPT`] needs the browser's token, from the
/// `X-CSRF-Token` header, the `csrf` query parameter (multipart forms put
/// it in their action) or the `csrf` field of a URL-encoded form (the body
/// is read, up to [`FORM_LIMIT`], and handed on unchanged).
pub async fn csrf_layer(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) || csrf_exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let given = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| form_field(parts.uri.query().unwrap_or_default().as_bytes(), "csrf"));
    let is_form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let (token, body) = match given {
        Some(token) => (token, body),
        None if is_form => match axum::body::to_bytes(body, FORM_LIMIT).await {
            Ok(bytes) => (form_field(&bytes, "csrf").unwrap_or_default(), axum::body::Body::from(bytes)),
            Err(_) => {
                return (StatusCode::PAYLOAD_TOO_LARGE, "The form is larger than 1 MiB or broke off.").into_response();
            }
        },
        None => (String::new(), body),
    };
    if let Err(e) = verify_csrf(&parts.headers, &token) {
        return e.into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, body)).await
}

/// Whether a path is exempt from [`csrf_layer`].
pub fn csrf_exempt(path: &str) -> bool {
    CSRF_EXEMPT.iter().any(|p| path.starts_with(p))
}

/// A field of a URL-encoded form or query.
fn form_field(encoded: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(encoded)
        .ok()?
        .into_iter()
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// Checks a submitted form token against the browser's cookie (double
/// submit) and that the request comes from our own pages.
fn verify_csrf(headers: &HeaderMap, submitted: &str) -> Result<(), WebError> {
    let cookie = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    if cookie.len() < 32 || !seldesk_accounts::secret::same(&cookie, submitted) {
        return Err(WebError::Csrf);
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site == "cross-site"
    {
        return Err(WebError::Csrf);
    }
    Ok(())
}

/// The signed-in account holder (browser session), if any.
pub struct MaybeAccount(pub Option<(Account, Session, String)>);

impl FromRequestParts<AppState> for MaybeAccount {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Ok(Self(None));
        };
        let Some(session) = state.accounts.session(&token).await? else {
            return Ok(Self(None));
        };
        match (&session.kind, &session.principal) {
            (SessionKind::Web, Principal::Account(id)) => match state.accounts.account(id).await {
                Ok(a) if a.status == AccountStatus::Active => Ok(Self(Some((a, session, token)))),
                _ => Ok(Self(None)),
            },
            _ => Ok(Self(None)),
        }
    }
}

/// A signed-in account holder, or a redirect to the sign-in page.
pub struct SignedIn(pub Account, pub Session, pub String);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match MaybeAccount::from_request_parts(parts, state).await {
            Ok(MaybeAccount(Some((a, s, t)))) => Ok(Self(a, s, t)),
            Ok(MaybeAccount(None)) => {
                let back = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/account");
                Err(Redirect::to(&format!("/signin?next={}", urlencode(back))).into_response())
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

/// The API caller (bearer token): a sign-in token from
/// `POST /api/v1/auth/token`, which carries every scope of its account, or a
/// personal access token, which reaches only the routes its scopes cover
/// (see [`required_scope`]).
pub struct ApiAccount(pub Account);

/// How a caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCredential {
    /// A sign-in token: everything the account may do.
    SignIn,
    /// A personal access token and its scopes.
    Personal(TokenGrant),
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The scope a personal token needs for a route, by the route's template
/// and method: reads (GET, HEAD) need the read scope of the route's family,
/// everything else its write scope. `None`: no personal token may use the
/// route (managing tokens needs a sign-in token, as a stolen token must not
/// make itself others). The one place that says which scope covers what.
pub fn required_scope(method: &Method, route: &str) -> Option<Scope> {
    // Most specific first.
    const FAMILIES: &[(&str, Option<(Scope, Scope)>)] = &[
        ("/api/v1/me/tokens", None),
        ("/api/v1/me", Some((Scope::AccountRead, Scope::AccountWrite))),
        ("/api/v1/databases/{id}/subscription", Some((Scope::BillingRead, Scope::BillingWrite))),
        ("/api/v1/billing", Some((Scope::BillingRead, Scope::BillingWrite))),
        ("/api/v1/databases", Some((Scope::DatabasesRead, Scope::DatabasesWrite))),
        ("/api/v1/upgrades", Some((Scope::DatabasesRead, Scope::DatabasesWrite))),
    ];
    let read = matches!(*method, Method::GET | Method::HEAD);
    FAMILIES
        .iter()
        .find(|(prefix, _)| route == *prefix || route.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')))
        .and_then(|(_, scopes)| *scopes)
        .map(|(r, w)| if read { r } else { w })
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

impl ApiAccount {
    /// Who the request's bearer token belongs to, and how it proves it,
    /// refusing a personal token without the route's scope.
    pub async fn resolve(parts: &Parts, state: &AppState) -> Result<(Account, ApiCredential), ApiError> {
        // Already resolved for this request (by the idempotency layer): a
        // personal token's use is counted once.
        if let Some(Resolved(a, c)) = parts.extensions.get::<Resolved>() {
            return Ok((a.clone(), c.clone()));
        }
        let token = bearer(&parts.headers).ok_or_else(|| {
            unauthorized("Send `Authorization: Bearer <token>`; get a token from POST /api/v1/auth/token or make a personal access token on your account page.")
        })?;
        let route = parts.extensions.get::<MatchedPath>().map_or_else(|| parts.uri.path(), MatchedPath::as_str);
        let (account_id, credential) = if token.starts_with(seldesk_accounts::tokens::TOKEN_PREFIX) {
            let grant = state
                .accounts
                .use_api_token(token, &format!("{} {route}", parts.method))
                .await
                .map_err(ApiError::from)?
                .ok_or_else(|| unauthorized("This personal access token is unknown, revoked or expired; make a new one on your account page."))?;
            let Some(needed) = required_scope(&parts.method, route) else {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    format!(
                        "A personal access token cannot use {} {route}; use a sign-in token from POST /api/v1/auth/token.",
                        parts.method
                    ),
                ));
            };
            if !grant.scopes.contains(&needed) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "insufficient_scope",
                    format!(
                        "This token lacks the {} scope that {} {route} needs; make a token with it on your account page.",
                        needed.as_str(),
                        parts.method
                    ),
                ));
            }
            (grant.account_id.clone(), ApiCredential::Personal(grant))
        } else {
            match state.accounts.session(token).await.map_err(ApiError::from)? {
                Some(Session { kind: SessionKind::Api, principal: Principal::Account(id), .. }) => {
                    (id, ApiCredential::SignIn)
                }
                _ => {
                    return Err(unauthorized(
                        "The token is invalid or expired; get a new one from POST /api/v1/auth/token.",
                    ));
                }
            }
        };
        let a = state
            .accounts
            .account(&account_id)
            .await
            .map_err(|_| unauthorized("This token's account no longer exists."))?;
        if a.status != AccountStatus::Active {
            return Err(unauthorized("This account is closed or being erased."));
        }
        Ok((a, credential))
    }
}

/// The caller as [`ApiAccount::resolve`] found it, kept in the request.
#[derive(Clone)]
pub struct Resolved(pub Account, pub ApiCredential);

impl FromRequestParts<AppState> for ApiAccount {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Self::resolve(parts, state).await.map(|(a, _)| Self(a))
    }
}

/// The API caller with how it signed in: for the routes that treat a
/// personal token differently from a sign-in token.
pub struct ApiCaller(pub Account, pub ApiCredential);

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        ApiAccount::resolve(parts, state).await.map(|(a, c)| Self(a, c))
    }
}

/// A signed-in staff member, or a redirect to the staff sign-in.
pub struct StaffUser(pub StaffMember, pub String);

impl FromRequestParts<AppState> for StaffUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_signin = || Redirect::to("/staff").into_response();
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_signin());
        };
        let session = state.accounts.session(&token).await.map_err(|e| WebError::from(e).into_response())?;
        match session {
            Some(Session { kind: SessionKind::Staff, principal: Principal::Staff(id), .. }) => {
                match state.accounts.staff(&id).await {
                    Ok(s) if !s.disabled => Ok(Self(s, token)),
                    _ => Err(to_signin()),
                }
            }
            _ => Err(to_signin()),
        }
    }
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Only local paths are followed after sign-in (no open redirects).
pub fn safe_next(next: Option<&str>, default: &str) -> String {
    match next {
        Some(n) if is_local_path(n) => n.to_string(),
        _ => default.to_string(),
    }
}

/// Whether `n` can only mean a path on this site. Browsers drop tabs and
/// newlines from URLs and read `\` as `/`, so `/\t/evil.example` and
/// `/\\evil.example` would lead to `//evil.example`: any control character,
/// white space or backslash disqualifies, as does a second leading slash.
fn is_local_path(n: &str) -> bool {
    n.starts_with('/')
        && !n.starts_with("//")
        && n.len() <= 2000
        && !n.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\')
        && !n.contains("/./")
        && !n.contains("/../")
}

pub use crate::errors::{ApiError, WebError, message_of, status_of};

#[cfg(test)]
mod tests {
    use super::{Method, Scope, required_scope, safe_next};

    /// Routes a personal token never uses: no sign-in (sign-up, careers,
    /// events, partners, the processors' webhooks, the plan list) or, for
    /// tokens, only with a sign-in token.
    const OUTSIDE_SCOPES: &[&str] = &[
        "/api/v1/accounts",
        "/api/v1/auth/token",
        "/api/v1/openapi.json",
        "/api/v1/me/tokens",
        "/api/v1/me/tokens/{id}",
        "/api/v1/careers/",
        "/api/v1/events",
        "/api/v1/partners",
    ];

    // promise: SEC-1
    #[test]
    fn every_api_route_is_covered_by_a_scope_or_listed_as_outside_them() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut routes = Vec::new();
        for entry in std::fs::read_dir(dir).expect("sources") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
            for part in text.split(".route(\"/api/v1").skip(1) {
                routes.push(format!("/api/v1{}", part.split('"').next().expect("path")));
            }
        }
        assert!(routes.len() > 40, "{routes:?}");
        for r in &routes {
            let outside = OUTSIDE_SCOPES
                .iter()
                .any(|o| r == o || (o.ends_with('/') && r.starts_with(o)) || r.starts_with(&format!("{o}/")));
            assert!(
                outside || required_scope(&Method::GET, r).is_some(),
                "{r} needs a scope family in required_scope, or a place in OUTSIDE_SCOPES"
            );
        }
        assert_eq!(required_scope(&Method::GET, "/api/v1/me/tokens"), None);
        assert_eq!(required_scope(&Method::POST, "/api/v1/databases/{id}/contacts"), Some(Scope::DatabasesWrite));
        assert_eq!(required_scope(&Method::GET, "/api/v1/databases/{id}/subscription"), Some(Scope::BillingRead));
        assert_eq!(required_scope(&Method::DELETE, "/api/v1/upgrades/{id}"), Some(Scope::DatabasesWrite));
        assert_eq!(required_scope(&Method::GET, "/api/v1/meeting"), None, "a prefix is a whole segment");
    }

    /// Where a browser goes for a `Location` of `n`, as the URL standard
    /// reads it: tabs and newlines dropped, `\` taken as `/`.
    fn browser_reading(n: &str) -> String {
        n.chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).map(|c| if c == '\\' { '/' } else { c }).collect()
    }

    #[test]
    fn next_is_only_ever_a_path_on_this_site() {
        for bad in [
            "/\t/evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "/\n/evil",
            "https://evil.example",
            "/a\nb",
            "/ /x",
            "/\u{0}x",
            "/\u{a0}/evil",
            "evil",
        ] {
            assert_eq!(safe_next(Some(bad), "/account"), "/account", "{bad:?}");
        }
        for good in ["/account", "/databases/abc?tab=contacts", "/careers/42#apply"] {
            assert_eq!(safe_next(Some(good), "/account"), good);
        }
        // A small fuzz over the characters that matter: whatever is
        // accepted stays on this site however a browser reads it.
        let alphabet = ['/', '\\', '\t', '\n', '\r', ' ', 'e', '.', ':', '%', '@', '?', '#', '\u{b}', '\u{3000}'];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bits = state;
            for _ in 0..(bits % 8 + 1) {
                bits /= 8;
                s.push(alphabet[(bits % alphabet.len() as u64) as usize]);
            }
            let next = safe_next(Some(&s), "/account");
            let read = browser_reading(&next);
            assert!(read.starts_with('/') && !read.starts_with("//"), "{s:?} -> {next:?}");
            assert!(axum::http::HeaderValue::from_str(&next).is_ok(), "{s:?} makes a valid header");
        }
    }
}
