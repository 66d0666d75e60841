//! PayPal's REST API: Orders v2 (create, approve by redirect, capture), a
//! vaulted payment token for renewals, refunds of captures, and webhook
//! verification through PayPal's own verify-webhook-signature call.

use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use seldesk_privacy::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::config::PaypalSettings;
use crate::processor::{
    Call, EventKind, Outcome, Processor, ProcessorError, WebhookError, WebhookEvent, amount_cents, decimal, field, get,
    header, parse_decimal, split_name,
};

/// A PayPal REST client.
pub struct Paypal {
    settings: PaypalSettings,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl Paypal {
    pub fn new(settings: PaypalSettings) -> Result<Self, ProcessorError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ProcessorError(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { settings, http, token: Mutex::new(None) })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url.trim_end_matches('/'))
    }

    /// An OAuth access token, cached until shortly before it expires.
    async fn access_token(&self) -> Result<String, ProcessorError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && *until > Instant::now()
        {
            return Ok(token.clone());
        }
        let response = self
            .http
            .post(self.url("/v1/oauth2/token"))
            .basic_auth(&self.settings.client_id, Some(self.settings.client_secret.expose()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| ProcessorError(format!("PayPal is unreachable: {e}")))?;
        if !response.status().is_success() {
            return Err(ProcessorError(format!(
                "PayPal refused our credentials ({}); check billing.paypal.client_id and client_secret",
                response.status()
            )));
        }
        let body: Value = response.json().await.map_err(|e| ProcessorError(format!("PayPal token answer: {e}")))?;
        let token = body["access_token"].as_str().ok_or_else(|| ProcessorError("PayPal sent no token".into()))?;
        let ttl = body["expires_in"].as_u64().unwrap_or(300).saturating_sub(60);
        *cached = Some((token.to_string(), Instant::now() + Duration::from_secs(ttl)));
        Ok(token.to_string())
    }

    /// POSTs JSON with a bearer token and an idempotency key; returns status and body.
    async fn post(&self, path: &str, request_id: &str, body: &Value) -> Result<(u16, Value), ProcessorError> {
        let token = self.access_token().await?;
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("PayPal-Request-Id", request_id)
            .header("Prefer", "return=representation")
            .json(body)
            .send()
            .await
            .map_err(|e| ProcessorError(format!("PayPal is unreachable: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| ProcessorError(format!("PayPal's answer: {e}")))?;
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
        Ok((status, value))
    }

    fn issue(body: &Value) -> String {
        body["details"][0]["issue"]
            .as_str()
            .or_else(|| body["name"].as_str())
            .or_else(|| body["message"].as_str())
            .unwrap_or("unknown error")
            .to_string()
    }

    /// Reads a completed order into `Paid`.
    fn paid(body: &Value) -> Result<Outcome, ProcessorError> {
        let capture = &body["purchase_units"][0]["payments"]["captures"][0];
        let payment = capture["id"].as_str().ok_or_else(|| ProcessorError("PayPal sent no capture id".into()))?;
        let amount = capture["amount"]["value"]
            .as_str()
            .and_then(parse_decimal)
            .ok_or_else(|| ProcessorError("PayPal sent no captured amount".into()))?;
        let currency = capture["amount"]["currency_code"].as_str().unwrap_or_default().to_string();
        let token = body["payment_source"]["paypal"]["attributes"]["vault"]["id"].as_str().map(str::to_string);
        Ok(Outcome::Paid { payment: payment.to_string(), amount_cents: amount, currency, token: token.map(Into::into) })
    }

    fn unit(fields: &BTreeMap<String, String>) -> Result<Value, ProcessorError> {
        let reference = get(fields, field::REFERENCE)?;
        Ok(json!({
            "reference_id": reference,
            "custom_id": reference,
            "description": get(fields, field::DESCRIPTION)?,
            "amount": { "currency_code": get(fields, field::CURRENCY)?, "value": decimal(amount_cents(fields)?) },
        }))
    }
}

impl Processor for Paypal {
    fn id(&self) -> &'static str {
        "paypal"
    }

    fn label(&self) -> &'static str {
        "PayPal"
    }

    fn call<'a>(
        &'a self,
        fields: &'a BTreeMap<String, String>,
        call: &'a Call,
    ) -> BoxFuture<'a, Result<Outcome, ProcessorError>> {
        Box::pin(async move {
            let reference = get(fields, field::REFERENCE)?;
            match call {
                Call::Checkout { return_url, cancel_url } => {
                    let (given, surname) = split_name(get(fields, field::NAME)?);
                    let body = json!({
                        "intent": "CAPTURE",
                        "purchase_units": [Self::unit(fields)?],
                        "payment_source": { "paypal": {
                            "name": { "given_name": given, "surname": surname },
                            "email_address": get(fields, field::EMAIL)?,
                            "attributes": { "vault": { "store_in_vault": "ON_SUCCESS", "usage_type": "MERCHANT" } },
                            "experience_context": {
                                "return_url": return_url, "cancel_url": cancel_url,
                                "user_action": "PAY_NOW", "shipping_preference": "NO_SHIPPING",
                            },
                        }},
                    });
                    let (status, answer) =
                        self.post("/v2/checkout/orders", &format!("{reference}-order"), &body).await?;
                    if !(200..300).contains(&status) {
                        return Err(ProcessorError(format!("PayPal refused the order: {}", Self::issue(&answer))));
                    }
                    let order =
                        answer["id"].as_str().ok_or_else(|| ProcessorError("PayPal sent no order id".into()))?;
                    let url = answer["links"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|l| matches!(l["rel"].as_str(), Some("payer-action" | "approve")))
                        .and_then(|l| l["href"].as_str())
                        .ok_or_else(|| ProcessorError("PayPal sent no approval link".into()))?;
                    Ok(Outcome::Redirect { order: order.to_string(), url: url.to_string(), return_mac: None })
                }
                Call::Complete { order, query, .. } => {
                    // PayPal appends `token` = the order id; a mismatch is someone else's return.
                    if query.get("token").is_some_and(|t| t != order) {
                        return Err(ProcessorError("the return does not belong to this order".into()));
                    }
                    let path = format!("/v2/checkout/orders/{order}/capture");
                    let (status, answer) = self.post(&path, &format!("{reference}-capture"), &json!({})).await?;
                    match status {
                        200..=299 => Self::paid(&answer),
                        422 if Self::issue(&answer) == "ORDER_NOT_APPROVED" => {
                            Ok(Outcome::NotPaid("The payment was not approved on PayPal.".into()))
                        }
                        422 => Ok(Outcome::Declined(Self::issue(&answer))),
                        _ => Err(ProcessorError(format!("PayPal capture failed: {}", Self::issue(&answer)))),
                    }
                }
                Call::Charge { token } => {
                    let body = json!({
                        "intent": "CAPTURE",
                        "purchase_units": [Self::unit(fields)?],
                        "payment_source": { "paypal": { "vault_id": token.expose_secret() } },
                    });
                    let (status, answer) =
                        self.post("/v2/checkout/orders", &format!("{reference}-charge"), &body).await?;
                    match status {
                        200..=299 if answer["status"] == "COMPLETED" => Self::paid(&answer),
                        200..=299 => Ok(Outcome::Declined(format!("order {}", answer["status"]))),
                        400..=499 => Ok(Outcome::Declined(Self::issue(&answer))),
                        _ => Err(ProcessorError(format!("PayPal charge failed: {}", Self::issue(&answer)))),
                    }
                }
                Call::Refund { payment } => {
                    let body = json!({ "amount": {
                        "value": decimal(amount_cents(fields)?), "currency_code": get(fields, field::CURRENCY)?,
                    }});
                    let path = format!("/v2/payments/captures/{payment}/refund");
                    let (status, answer) = self.post(&path, &format!("{reference}-refund"), &body).await?;
                    if !(200..300).contains(&status) {
                        return Err(ProcessorError(format!("PayPal refused the refund: {}", Self::issue(&answer))));
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
            let event: Value =
                serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(format!("not JSON: {e}")))?;
            let h = |name: &str| {
                header(headers, name).map(str::to_string).ok_or_else(|| WebhookError::Signature(format!("no {name}")))
            };
            let request = json!({
                "auth_algo": h("PAYPAL-AUTH-ALGO")?,
                "cert_url": h("PAYPAL-CERT-URL")?,
                "transmission_id": h("PAYPAL-TRANSMISSION-ID")?,
                "transmission_sig": h("PAYPAL-TRANSMISSION-SIG")?,
                "transmission_time": h("PAYPAL-TRANSMISSION-TIME")?,
                "webhook_id": self.settings.webhook_id,
                "webhook_event": event,
            });
            let id = event["id"].as_str().unwrap_or_default().to_string();
            let (status, answer) = self
                .post("/v1/notifications/verify-webhook-signature", &format!("verify-{id}"), &request)
                .await
                .map_err(|e| WebhookError::Unavailable(e.0))?;
            if status != 200 {
                return Err(WebhookError::Unavailable(format!("PayPal's verification answered {status}")));
            }
            if answer["verification_status"] != "SUCCESS" {
                return Err(WebhookError::Signature("PayPal says the signature is not theirs".into()));
            }
            if id.is_empty() {
                return Err(WebhookError::Malformed("no event id".into()));
            }
            let resource = &event["resource"];
            let kind = match event["event_type"].as_str().unwrap_or_default() {
                "PAYMENT.CAPTURE.COMPLETED" => EventKind::Captured,
                "PAYMENT.CAPTURE.DENIED" | "PAYMENT.CAPTURE.DECLINED" => EventKind::Declined,
                "PAYMENT.CAPTURE.REFUNDED" => EventKind::Refunded,
                other => EventKind::Other(other.to_string()),
            };
            Ok(WebhookEvent {
                id,
                order: resource["supplementary_data"]["related_ids"]["order_id"].as_str().map(str::to_string),
                payment: resource["id"].as_str().map(str::to_string),
                reference: resource["custom_id"].as_str().map(str::to_string),
                amount_cents: resource["amount"]["value"].as_str().and_then(parse_decimal),
                currency: resource["amount"]["currency_code"].as_str().map(str::to_string),
                kind,
            })
        })
    }
}
