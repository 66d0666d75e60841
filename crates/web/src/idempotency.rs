//! `Idempotency-Key` on the API's creates: a client that lost the answer to
//! a create retries with the same key and gets the first result, never a
//! second database, contact or request.
//!
//! Keys are kept per account for a day by [`seldesk_accounts::idempotency`],
//! with where the created thing lives but never what it holds; a retry is
//! answered with the first status and the thing read again through the
//! site (a contact stays in its database, in its region).

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use seldesk_accounts::idempotency::Claim;
use tower::ServiceExt;

use crate::AppState;
use crate::auth::{ApiAccount, ApiError};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on an answer that repeats an earlier one.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The creates that honour a key, by route template: each answers 201 (or
/// 202) with a `Location` that a GET reads back. Other routes ignore the
/// header. A new personal token is not here: its secret is shown once, so a
/// retry could not give it back.
pub const ROUTES: &[&str] = &[
    "/api/v1/databases",
    "/api/v1/databases/import",
    "/api/v1/databases/{id}/backups/{snapshot}/restore",
    "/api/v1/databases/{id}/restore-at",
    "/api/v1/databases/{id}/contacts",
    "/api/v1/databases/{id}/contacts/{cid}/attachments",
    "/api/v1/me/requests",
    "/api/v1/upgrades",
];

/// Bodies up to this size are compared byte for byte on a retry; larger ones
/// (imports, attachments) by their length.
const HASHED_BODY: u64 = 1024 * 1024;

/// The middleware, on the API's routes (after routing, so the route
/// template is known).
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let Some(key) = req.headers().get(&IDEMPOTENCY_KEY) else { return next.run(req).await };
    if req.method() != Method::POST || !route.as_deref().is_some_and(|r| ROUTES.contains(&r)) {
        return next.run(req).await;
    }
    let key = match key.to_str().map(str::to_string) {
        Ok(k) => k,
        Err(_) => return bad_key().into_response(),
    };
    if let Err(e) = seldesk_accounts::idempotency::check_key(&key) {
        return ApiError::from(e).into_response();
    }
    let (mut parts, body) = req.into_parts();
    // Who asks: keys are the account's own. A refusal here is the same the
    // route would give.
    let account = match ApiAccount::resolve(&parts, &state).await {
        Ok((a, c)) => {
            parts.extensions.insert(crate::auth::Resolved(a.clone(), c));
            a
        }
        Err(e) => return e.into_response(),
    };
    let (fingerprint, body) = match fingerprint(&parts, body).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let claim = match state.accounts.idempotency_claim(&account.id, &key, &fingerprint).await {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match claim {
        Claim::Fresh => {
            let response = next.run(Request::from_parts(parts, body)).await;
            let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
            let done = match location {
                Some(loc) if response.status().is_success() => {
                    state.accounts.idempotency_done(&account.id, &key, response.status().as_u16(), &loc).await
                }
                _ => state.accounts.idempotency_release(&account.id, &key).await,
            };
            if let Err(e) = done {
                tracing::error!(error = %e, "could not record an idempotency key");
            }
            response
        }
        Claim::Replay { status, location } => replay(&state, &parts, status, &location).await,
        Claim::InProgress => {
            let mut e = ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "The first request with this Idempotency-Key is still running; retry in a moment for its result.",
            );
            e.retry_after = Some(1);
            e.into_response()
        }
        Claim::Mismatch => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "This Idempotency-Key was used for a different request (another address or body) in the last 24 hours; use a new key for a new request.",
        )
        .at("Idempotency-Key")
        .into_response(),
    }
}

fn bad_key() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid",
        "An Idempotency-Key is 1 to 255 visible ASCII characters, such as a UUID.",
    )
    .at("Idempotency-Key")
}

/// What makes two requests the same: method, address and body (or, for a
/// large body, its length: it is not read twice).
async fn fingerprint(parts: &axum::http::request::Parts, body: Body) -> Result<(String, Body), ApiError> {
    let mut h = blake3::Hasher::new();
    h.update(parts.method.as_str().as_bytes());
    h.update(b" ");
    h.update(parts.uri.path_and_query().map_or("", |p| p.as_str()).as_bytes());
    h.update(b"\n");
    let length =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(n) if n <= HASHED_BODY => {
            let bytes = axum::body::to_bytes(body, HASHED_BODY as usize)
                .await
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "The request body broke off."))?;
            h.update(&bytes);
            Ok((h.finalize().to_hex().to_string(), Body::from(bytes)))
        }
        other => {
            h.update(format!("length {other:?}").as_bytes());
            Ok((h.finalize().to_hex().to_string(), body))
        }
    }
}

/// The first answer again: its status, and the created thing as a GET of
/// its `Location` with the caller's own credentials reads it now.
async fn replay(state: &AppState, parts: &axum::http::request::Parts, status: u16, location: &str) -> Response {
    let Some(site) = state.site.get().cloned() else {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Retry in a moment.").into_response();
    };
    // Only a path of this site: the stored location came from our own
    // handler, but a path is all a replay may follow.
    if !location.starts_with("/api/v1/") || location.contains("//") {
        return ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "This Idempotency-Key's first result cannot be shown again; use a new key.",
        )
        .into_response();
    }
    let mut get = Request::builder().method(Method::GET).uri(location);
    for name in [header::AUTHORIZATION, header::ACCEPT, header::ACCEPT_LANGUAGE, header::HOST] {
        if let Some(v) = parts.headers.get(&name) {
            get = get.header(name, v.clone());
        }
    }
    let mut get = match get.body(Body::empty()) {
        Ok(r) => r,
        Err(_) => return bad_key().into_response(),
    };
    // The address the first request came from (rate limits, forwarding).
    if let Some(ci) = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
        get.extensions_mut().insert(*ci);
    }
    let mut response = match site.oneshot(get).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if response.status().is_success() {
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::CREATED);
        if let Ok(v) = HeaderValue::from_str(location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
    }
    response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
    response
}
