//! How a failure becomes a response: one map from [`ErrorKind`] to an HTTP
//! status and a code, used by every page and every API route. Services say
//! what kind of failure they met (`seldesk_domain::Failure`); nothing here
//! matches on a service's own variants.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use seldesk_domain::{ErrorKind, Failure};

/// What a person sees when the failure is ours; the cause goes to the log.
const OUR_SIDE: &str = "Something went wrong on our side. Please try again in a moment.";

/// The HTTP status of each kind of failure.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid | ErrorKind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::Deactivated => StatusCode::CONFLICT,
        ErrorKind::Gone => StatusCode::GONE,
        ErrorKind::PaymentRequired => StatusCode::PAYMENT_REQUIRED,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::WrongRegion => StatusCode::MISDIRECTED_REQUEST,
        ErrorKind::Unavailable | ErrorKind::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The API's `error` code of each kind: stable, for programs to branch on.
pub fn code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid => "invalid",
        ErrorKind::Refused => "refused",
        ErrorKind::Unauthenticated => "unauthorized",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Deactivated => "deactivated",
        ErrorKind::Gone => "expired",
        ErrorKind::PaymentRequired => "payment_required",
        ErrorKind::TooLarge => "too_large",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::WrongRegion => "wrong_region",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Busy => "busy",
        ErrorKind::Upstream => "upstream",
        ErrorKind::Internal => "internal",
    }
}

/// The RFC 9457 `title` of each API code: a short summary of the problem
/// type, the same for every occurrence (the `detail` says this one).
pub fn title(code: &str) -> &'static str {
    match code {
        "invalid" => "Invalid input",
        "refused" => "Disclosure refused by the policy",
        "unauthorized" => "Not signed in",
        "forbidden" => "Not allowed",
        "not_found" => "Not found",
        "conflict" => "Conflict with the current state",
        "deactivated" => "Database deactivated",
        "expired" => "Link expired",
        "payment_required" => "Payment required",
        "too_large" => "Too large",
        "rate_limited" => "Too many requests",
        "wrong_region" => "Served by another data center",
        "unavailable" => "Temporarily unavailable",
        "busy" => "Busy for a moment",
        "upstream" => "A provider failed",
        "internal" => "Internal error",
        "bad_request" => "Malformed request",
        "insufficient_scope" => "The token lacks a scope",
        "method_not_allowed" => "Method not allowed here",
        "unsupported_media_type" => "Unsupported body type",
        "idempotency_key_reused" => "Idempotency-Key used for another request",
        _ => "Request not completed",
    }
}

/// Every API error code, for the problem-type pages and the API docs.
pub const CODES: &[&str] = &[
    "invalid",
    "bad_request",
    "insufficient_scope",
    "idempotency_key_reused",
    "method_not_allowed",
    "unsupported_media_type",
    "refused",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "deactivated",
    "expired",
    "payment_required",
    "too_large",
    "rate_limited",
    "wrong_region",
    "unavailable",
    "busy",
    "upstream",
    "internal",
];

/// `GET /api/problems/{code}`: what an API error's `type` names.
pub async fn problem_type(axum::extract::Path(code): axum::extract::Path<String>) -> Response {
    let Some(code) = CODES.iter().find(|c| **c == code) else {
        return crate::pages::not_found().await;
    };
    crate::pages::message_page(
        StatusCode::OK,
        title(code),
        &format!(
            "An API response with \"type\": \"/api/problems/{code}\" (and \"error\": \"{code}\") means: {}. Its \"detail\" says what happened in this case and what to change; \"field\" names the field at fault when there is one; \"Retry-After\", when present, says how many seconds to wait before trying again.",
            title(code).to_lowercase()
        ),
    )
}

/// The status of a service's failure.
pub fn status_of(e: &dyn Failure) -> StatusCode {
    status(e.kind())
}

/// The message a person sees: the service's own for what they can act on, a
/// generic one for ours (whose cause, with its chain of sources, is logged).
pub fn message_of(e: &dyn Failure) -> String {
    if e.kind() == ErrorKind::Internal {
        tracing::error!(error = %Chain(e), "request failed");
        OUR_SIDE.into()
    } else {
        e.to_string()
    }
}

/// A page saying the request was not completed, and why.
pub fn error_page(e: &dyn Failure) -> Response {
    crate::pages::message_page(status_of(e), "Request not completed", &message_of(e))
}

/// An error and each of its sources, for the log.
struct Chain<'a>(&'a dyn Failure);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = self.0.to_string();
        f.write_str(&said)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            // Most messages already carry their cause's text: add only what
            // was not said.
            let text = s.to_string();
            if !said.contains(&text) {
                write!(f, ": {text}")?;
            }
            said = text;
            source = s.source();
        }
        Ok(())
    }
}

/// Errors of page handlers: an expired form, or a service's failure.
#[derive(Debug)]
pub enum WebError {
    Csrf,
    Failed(Box<dyn Failure>),
}

impl<E: Failure> From<E> for WebError {
    fn from(e: E) -> Self {
        Self::Failed(Box::new(e))
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::Csrf => crate::pages::message_page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form has expired or did not come from our site. Go back, reload the page and submit it again.",
            ),
            WebError::Failed(e) => {
                let mut r = error_page(e.as_ref());
                let status = r.status();
                announce_wait(&mut r, status, e.retry_after());
                r
            }
        }
    }
}

/// A JSON API error, as RFC 9457 `application/problem+json`: `type` (a
/// relative URI naming the problem, `/api/problems/{error}`), `title`,
/// `status`, `detail`; the extensions `error` (the stable code) and
/// `message` (the detail again) that clients of the first API read, and
/// `field` when one field is at fault. `Retry-After` and `RateLimit` say
/// when waiting helps.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self { status, error, message: message.into(), field: None, retry_after: None }
    }

    /// The same error, naming the field at fault.
    pub fn at(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }
}

impl<E: Failure> From<E> for ApiError {
    fn from(e: E) -> Self {
        let kind = e.kind();
        Self {
            status: status(kind),
            error: code(kind),
            message: message_of(&e),
            field: e.field(),
            retry_after: e.retry_after(),
        }
    }
}

/// The media type of an API error.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "type": format!("/api/problems/{}", self.error),
            "title": title(self.error),
            "status": self.status.as_u16(),
            "detail": self.message,
            "error": self.error,
            "message": self.message,
        });
        if let Some(field) = self.field {
            body["field"] = field.into();
        }
        let mut r = (self.status, Json(body)).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        announce_wait(&mut r, self.status, self.retry_after);
        r
    }
}

/// `Retry-After`, and on 429 the `RateLimit` field of the IETF draft (no
/// requests left in the current window, which resets in that many
/// seconds), so a client can wait instead of guessing.
fn announce_wait(r: &mut Response, status: StatusCode, retry_after: Option<u64>) {
    let Some(secs) = retry_after else { return };
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if status == StatusCode::TOO_MANY_REQUESTS
        && let Ok(v) = HeaderValue::from_str(&format!("\"default\";r=0;t={secs}"))
    {
        r.headers_mut().insert(header::HeaderName::from_static("ratelimit"), v);
    }
}

/// A create's answer: the status (201, or 202 for work that continues), the
/// new thing's address in `Location` (what an idempotent retry reads back)
/// and the thing itself.
pub fn created(status: StatusCode, location: String, body: impl serde::Serialize) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The API's code for a status that no service chose: what axum itself
/// answers when a path parameter, a query or a body cannot be read, or a
/// method is not routed.
fn code_of_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        413 => "too_large",
        415 => "unsupported_media_type",
        422 => "invalid",
        429 => "rate_limited",
        503 => "unavailable",
        500..=599 => "internal",
        _ => "bad_request",
    }
}

/// Makes every error under `/api/` a problem document, also those axum
/// answers before a handler runs (a contact id that is not a number, a
/// query that does not parse, a method the route lacks), so clients parse
/// one format.
pub async fn api_problems(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let response = next.run(req).await;
    let status = response.status();
    let problem =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    // axum's own messages are a line; a larger body is not one of them.
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = code_of_status(status);
    let detail = match (status.as_u16(), text.is_empty()) {
        (405, _) => {
            let allow = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or_default();
            format!("This address does not take this method; it takes {allow}.")
        }
        (500..=599, _) => OUR_SIDE.to_string(),
        (_, false) => text,
        (_, true) => title(code).to_string(),
    };
    let mut e = ApiError::new(status, code, detail);
    e.retry_after = parts.headers.get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let mut r = e.into_response();
    // The rest of what was said stays: Allow on a 405, Content-Range on a 416.
    for (name, value) in &parts.headers {
        if ![header::CONTENT_TYPE, header::CONTENT_LENGTH, header::CONTENT_ENCODING].contains(name) {
            r.headers_mut().append(name.clone(), value.clone());
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use seldesk_domain::Fault;

    #[derive(Debug, thiserror::Error)]
    #[error("{0:?}")]
    struct Kinded(ErrorKind);

    impl Failure for Kinded {
        fn kind(&self) -> ErrorKind {
            self.0
        }
    }

    #[test]
    fn every_kind_has_its_own_code_a_title_and_a_client_or_server_status() {
        use ErrorKind::*;
        let all = ErrorKind::ALL;
        let codes: std::collections::BTreeSet<_> = all.iter().map(|k| code(*k)).collect();
        assert_eq!(codes.len(), all.len(), "one code per kind");
        for k in all {
            let s = status(k);
            assert!(s.is_client_error() || s.is_server_error(), "{k:?} → {s}");
            assert_eq!(s.is_server_error(), matches!(k, Unavailable | Busy | Upstream | Internal), "{k:?}");
            assert!(CODES.contains(&code(k)), "{k:?} has a problem-type page");
            assert_ne!(title(code(k)), title("no such code"), "{k:?} has its own title");
        }
    }

    #[test]
    fn our_failures_show_a_generic_message_and_theirs_their_own() {
        let ours = ApiError::from(Fault::new("cannot write to the outbox", std::io::Error::other("disk full")));
        assert_eq!(ours.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(ours.message, OUR_SIDE);
        assert!(!ours.message.contains("disk"));
        let theirs = ApiError::from(Kinded(ErrorKind::Conflict));
        assert_eq!((theirs.status, theirs.error), (StatusCode::CONFLICT, "conflict"));
        assert_eq!(theirs.message, "Conflict");
    }
}
