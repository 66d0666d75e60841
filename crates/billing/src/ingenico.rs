//! Ingenico / Worldline Direct: hosted checkout sessions (redirect and
//! return), a card token kept by the processor for renewals, refunds, and
//! webhooks signed with HMAC-SHA256. Requests are signed with the
//! `GCS v1HMAC` scheme.

use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::time::Duration;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use seldesk_privacy::BoxFuture;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::IngenicoSettings;
use crate::processor::{
    Call, EventKind, Outcome, Processor, ProcessorError, WebhookError, WebhookEvent, amount_cents, field, get, header,
    split_name,
};

type HmacSha256 = Hmac<Sha256>;

/// A Worldline Direct client.
pub struct Ingenico {
    settings: IngenicoSettings,
    http: reqwest::Client,
}

fn hmac_b64(secret: &str, data: &[u8]) -> Result<String, ProcessorError> {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).map_err(|e| ProcessorError(format!("HMAC key: {e}")))?;
    mac.update(data);
    Ok(BASE64.encode(&mac.finalize().into_bytes()))
}

impl Ingenico {
    pub fn new(settings: IngenicoSettings) -> Result<Self, ProcessorError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ProcessorError(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { settings, http })
    }

    /// Sends a signed request; `body` None is a GET.
    async fn request(&self, path: &str, body: Option<&Value>) -> Result<(u16, Value), ProcessorError> {
        let path = format!("/v2/{}{path}", self.settings.merchant_id);
        let url = format!("{}{path}", self.settings.base_url.trim_end_matches('/'));
        let date = httpdate(time::OffsetDateTime::now_utc());
        let (method, content_type) = if body.is_some() { ("POST", "application/json") } else { ("GET", "") };
        let signed = format!("{method}\n{content_type}\n{date}\n{path}\n");
        let auth = format!(
            "GCS v1HMAC:{}:{}",
            self.settings.api_key_id,
            hmac_b64(self.settings.api_secret.expose(), signed.as_bytes())?
        );
        let request = match body {
            Some(b) => self.http.post(&url).header("Content-Type", content_type).body(b.to_string()),
            None => self.http.get(&url),
        };
        let response = request
            .header("Date", date)
            .header("Authorization", auth)
            .send()
            .await
            .map_err(|e| ProcessorError(format!("Ingenico is unreachable: {e}")))?;
        let status = response.status().as_u16();
        if status == 401 {
            return Err(ProcessorError(
                "Ingenico refused our signature; check billing.ingenico.api_key_id and api_secret".into(),
            ));
        }
        let text = response.text().await.map_err(|e| ProcessorError(format!("Ingenico's answer: {e}")))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    fn error(body: &Value) -> String {
        body["errors"][0]["message"].as_str().or_else(|| body["errors"][0]["code"].as_str()).unwrap_or("error").into()
    }

    fn order(fields: &BTreeMap<String, String>) -> Result<Value, ProcessorError> {
        Ok(json!({
            "amountOfMoney": { "amount": amount_cents(fields)?, "currencyCode": get(fields, field::CURRENCY)? },
            "references": {
                "merchantReference": get(fields, field::REFERENCE)?,
                "descriptor": get(fields, field::DESCRIPTION)?,
            },
        }))
    }

    fn paid(payment: &Value, token: Option<String>) -> Result<Outcome, ProcessorError> {
        let id = payment["id"].as_str().ok_or_else(|| ProcessorError("Ingenico sent no payment id".into()))?;
        let money = &payment["paymentOutput"]["amountOfMoney"];
        Ok(Outcome::Paid {
            payment: id.to_string(),
            amount_cents: money["amount"].as_i64().ok_or_else(|| ProcessorError("Ingenico sent no amount".into()))?,
            currency: money["currencyCode"].as_str().unwrap_or_default().to_string(),
            token: token.map(Into::into),
        })
    }
}

/// RFC 1123 date for the `Date` header.
fn httpdate(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

impl Processor for Ingenico {
    fn id(&self) -> &'static str {
        "ingenico"
    }

    fn label(&self) -> &'static str {
        "Ingenico"
    }

    fn call<'a>(
        &'a self,
        fields: &'a BTreeMap<String, String>,
        call: &'a Call,
    ) -> BoxFuture<'a, Result<Outcome, ProcessorError>> {
        Box::pin(async move {
            match call {
                Call::Checkout { return_url, .. } => {
                    let (first, surname) = split_name(get(fields, field::NAME)?);
                    let mut order = Self::order(fields)?;
                    order["customer"] = json!({
                        "personalInformation": { "name": { "firstName": first, "surname": surname } },
                        "contactDetails": { "emailAddress": get(fields, field::EMAIL)? },
                    });
                    let body = json!({
                        "order": order,
                        "hostedCheckoutSpecificInput": { "returnUrl": return_url, "tokenize": true },
                    });
                    let (status, answer) = self.request("/hostedcheckouts", Some(&body)).await?;
                    if !(200..300).contains(&status) {
                        return Err(ProcessorError(format!("Ingenico refused the checkout: {}", Self::error(&answer))));
                    }
                    let order = answer["hostedCheckoutId"]
                        .as_str()
                        .ok_or_else(|| ProcessorError("Ingenico sent no hostedCheckoutId".into()))?;
                    let url = answer["redirectUrl"]
                        .as_str()
                        .ok_or_else(|| ProcessorError("Ingenico sent no redirectUrl".into()))?;
                    Ok(Outcome::Redirect {
                        order: order.to_string(),
                        url: url.to_string(),
                        return_mac: answer["RETURNMAC"].as_str().map(str::to_string),
                    })
                }
                Call::Complete { order, return_mac, query } => {
                    // The RETURNMAC proves the return belongs to the session we opened.
                    if let (Some(expected), Some(got)) = (return_mac, query.get("RETURNMAC"))
                        && expected != got
                    {
                        return Err(ProcessorError("the return's RETURNMAC does not match the checkout".into()));
                    }
                    let (status, answer) = self.request(&format!("/hostedcheckouts/{order}"), None).await?;
                    if status != 200 {
                        return Err(ProcessorError(format!("Ingenico lookup failed: {}", Self::error(&answer))));
                    }
                    let payment = &answer["createdPaymentOutput"]["payment"];
                    match (answer["status"].as_str(), payment["status"].as_str()) {
                        (Some("PAYMENT_CREATED"), Some("CAPTURED" | "PENDING_CAPTURE" | "CAPTURE_REQUESTED")) => {
                            let token = payment["paymentOutput"]["cardPaymentMethodSpecificOutput"]["token"]
                                .as_str()
                                .map(str::to_string);
                            Self::paid(payment, token)
                        }
                        (Some("PAYMENT_CREATED"), s) => Ok(Outcome::Declined(format!("payment {}", s.unwrap_or("?")))),
                        (Some(s), _) => Ok(Outcome::NotPaid(format!("The checkout is {s}."))),
                        (None, _) => Err(ProcessorError("Ingenico sent no status".into())),
                    }
                }
                Call::Charge { token } => {
                    let body = json!({
                        "cardPaymentMethodSpecificInput": {
                            "token": token.expose_secret(),
                            "unscheduledCardOnFileRequestor": "merchantInitiated",
                            "unscheduledCardOnFileSequenceIndicator": "subsequent",
                            "authorizationMode": "SALE",
                        },
                        "order": Self::order(fields)?,
                    });
                    let (status, answer) = self.request("/payments", Some(&body)).await?;
                    match status {
                        200..=299 if answer["payment"]["status"] == "CAPTURED" => Self::paid(&answer["payment"], None),
                        200..=299 => Ok(Outcome::Declined(format!("payment {}", answer["payment"]["status"]))),
                        400..=499 => Ok(Outcome::Declined(Self::error(&answer))),
                        _ => Err(ProcessorError(format!("Ingenico charge failed: {}", Self::error(&answer)))),
                    }
                }
                Call::Refund { payment } => {
                    let body = json!({
                        "amountOfMoney": { "amount": amount_cents(fields)?, "currencyCode": get(fields, field::CURRENCY)? },
                        "references": { "merchantReference": get(fields, field::REFERENCE)? },
                    });
                    let (status, answer) = self.request(&format!("/payments/{payment}/refund"), Some(&body)).await?;
                    if !(200..300).contains(&status) {
                        return Err(ProcessorError(format!("Ingenico refused the refund: {}", Self::error(&answer))));
                    }
                    Ok(Outcome::Refunded { refund: answer["id"].as_str().unwrap_or_default().to_string() })
                }
            }
        })
    }

    fn verify_webhook<'a>(
        &'a self,
        headers: &'a [(String, String)],
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<WebhookEvent, WebhookError>> {
        Box::pin(async move {
            let key_id =
                header(headers, "X-GCS-KeyId").ok_or_else(|| WebhookError::Signature("no X-GCS-KeyId".into()))?;
            if key_id != self.settings.webhook_key_id {
                return Err(WebhookError::Signature(format!("unknown key id `{key_id}`")));
            }
            let signature = header(headers, "X-GCS-Signature")
                .and_then(|s| BASE64.decode(s.trim().as_bytes()).ok())
                .ok_or_else(|| WebhookError::Signature("no readable X-GCS-Signature".into()))?;
            let mut mac = HmacSha256::new_from_slice(self.settings.webhook_secret.expose().as_bytes())
                .map_err(|e| WebhookError::Unavailable(format!("HMAC key: {e}")))?;
            mac.update(body);
            // Constant-time comparison.
            mac.verify_slice(&signature).map_err(|_| WebhookError::Signature("HMAC mismatch".into()))?;
            let event: Value =
                serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(format!("not JSON: {e}")))?;
            let id = event["id"]
                .as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| WebhookError::Malformed("no id".into()))?;
            let payment = &event["payment"];
            let output = &payment["paymentOutput"];
            let kind = match event["type"].as_str().unwrap_or_default() {
                "payment.captured" => EventKind::Captured,
                "payment.rejected" | "payment.rejected_capture" => EventKind::Declined,
                "payment.refunded" => EventKind::Refunded,
                other => EventKind::Other(other.to_string()),
            };
            Ok(WebhookEvent {
                id: id.to_string(),
                kind,
                order: event["hostedCheckoutId"].as_str().map(str::to_string),
                payment: payment["id"].as_str().map(str::to_string),
                reference: output["references"]["merchantReference"].as_str().map(str::to_string),
                amount_cents: output["amountOfMoney"]["amount"].as_i64(),
                currency: output["amountOfMoney"]["currencyCode"].as_str().map(str::to_string),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc_1123() {
        let t = time::macros::datetime!(2026-11-30 07:05:09 UTC);
        assert_eq!(httpdate(t), "Mon, 30 Nov 2026 07:05:09 GMT");
    }

    #[test]
    fn signatures_are_base64_hmac_sha256() {
        // RFC 4231 test case 2.
        let sig = hmac_b64("Jefe", b"what do ya want for nothing?").expect("mac");
        assert_eq!(sig, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
    }
}
