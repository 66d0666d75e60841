//! PAY-1: no route of ours accepts card details. Cards are typed on the
//! processor's page only; a form or JSON body that carries a card field
//! (card number, security code, expiry) is refused whole with 422 before
//! any handler sees it, so it is never stored or logged. Values that merely
//! look like card numbers in ordinary fields are caught by the input rules
//! (PAY-2).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Bodies larger than this are uploads, handled by their own limits.
const INSPECT_LIMIT: usize = 1024 * 1024;

const MESSAGE: &str = "We never take card details. Remove the card fields: you pay on PayPal's or Ingenico's own page, which keeps the card.";

/// Whether a field name is one a card form uses.
pub(crate) fn is_card_field(name: &str) -> bool {
    let key: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    const EXACT: &[&str] = &[
        "pan",
        "csc",
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "expiry",
        "expirydate",
        "expdate",
        "expmonth",
        "expyear",
        "exp",
        "ccexp",
        "cardexp",
        "ccnum",
        "ccno",
    ];
    const PARTS: &[&str] = &[
        "cardnumber",
        "cardnum",
        "cardno",
        "ccnumber",
        "creditcard",
        "debitcard",
        "securitycode",
        "cardexpir",
        "cardcvv",
        "cardcvc",
        "cardverification",
    ];
    EXACT.contains(&key.as_str()) || PARTS.iter().any(|p| key.contains(p))
}

fn json_has_card_field(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| is_card_field(k) || json_has_card_field(v)),
        serde_json::Value::Array(items) => items.iter().any(json_has_card_field),
        _ => false,
    }
}

/// Whether a form or JSON body names a card field.
pub(crate) fn body_has_card_field(content_type: &str, body: &[u8]) -> bool {
    if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(|pairs| pairs.iter().any(|(k, _)| is_card_field(k)))
            .unwrap_or(false)
    } else {
        serde_json::from_slice::<serde_json::Value>(body).map(|v| json_has_card_field(&v)).unwrap_or(false)
    }
}

pub(crate) async fn middleware(req: Request, next: Next) -> Response {
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
    let inspect =
        content_type.starts_with("application/x-www-form-urlencoded") || content_type.starts_with("application/json");
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    // Processors' signed webhooks describe payments (masked card, expiry):
    // they are verified and read for ids and amounts only, never stored.
    let webhook = req.uri().path().starts_with("/api/v1/billing/webhooks/");
    if !inspect || webhook || declared.is_some_and(|n| n > INSPECT_LIMIT) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, INSPECT_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large for this address.").into_response();
        }
    };
    if body_has_card_field(&content_type, &bytes) {
        let api = parts.uri.path().starts_with("/api/");
        return if api {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(serde_json::json!({ "error": "card_data_refused", "message": MESSAGE })),
            )
                .into_response()
        } else {
            crate::pages::message_page(StatusCode::UNPROCESSABLE_ENTITY, "Card details refused", MESSAGE)
        };
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    // promise: PAY-1
    #[test]
    fn card_fields_are_recognised_in_forms_and_json() {
        let form = "application/x-www-form-urlencoded";
        assert!(body_has_card_field(form, b"name=Ada&card_number=4111111111111111"));
        assert!(body_has_card_field(form, b"cc-number=1&cvv=123"));
        assert!(body_has_card_field(form, b"exp-month=12"));
        assert!(!body_has_card_field(form, b"name=Ada&company=Pan+Am&expires=never&panel=1"));
        let json = "application/json";
        assert!(body_has_card_field(json, br#"{"payment":{"cardNumber":"4111"}}"#));
        assert!(body_has_card_field(json, br#"[{"securityCode":"123"}]"#));
        assert!(!body_has_card_field(json, br#"{"name":"Ada","description":"card games shop"}"#));
    }
}
