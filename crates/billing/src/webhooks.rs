//! Processor webhooks: the signature is verified first (a forgery is
//! refused with 401 and audited), each event is applied once (a replay is
//! refused with 409 and audited), and events arriving out of order never
//! move a payment backwards (a capture after a refund changes nothing).

use seldesk_domain::Actor;
use seldesk_store::to_millis;

use crate::processor::{EventKind, WebhookError};
use crate::{Billing, BillingError};

/// What a webhook did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookResult {
    pub event: String,
    pub applied: &'static str,
}

impl Billing {
    /// Verifies and applies one webhook of `processor`.
    pub async fn webhook(
        &self,
        processor: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<WebhookResult, BillingError> {
        let p = match self.inner.processors.iter().find(|p| p.id() == processor && p.id() != "test") {
            Some(p) => p.clone(),
            None => return Err(BillingError::NotFound(format!("No webhook for `{processor}` is configured here."))),
        };
        let event = match p.verify_webhook(headers, body).await {
            Ok(e) => e,
            Err(WebhookError::Unavailable(why)) => {
                return Err(BillingError::Processor(format!("cannot verify the webhook now ({why}); retry later")));
            }
            Err(e) => {
                self.audit(
                    &Actor::System,
                    "billing.webhook_refused",
                    None,
                    Some(&format!("processor:{processor}")),
                    serde_json::json!({ "reason": e.to_string(), "bytes": body.len() }),
                )
                .await?;
                return Err(match e {
                    WebhookError::Malformed(m) => BillingError::invalid("body", m),
                    other => BillingError::Unauthenticated(other.to_string()),
                });
            }
        };
        let kind = match &event.kind {
            EventKind::Captured => "captured",
            EventKind::Declined => "declined",
            EventKind::Refunded => "refunded",
            EventKind::Other(k) => k.as_str(),
        };
        let fresh = sqlx::query(
            "INSERT INTO processor_events (processor, event_id, kind, received_at) VALUES ($1, $2, $3, $4) ON CONFLICT (processor, event_id) DO NOTHING",
        )
        .bind(processor)
        .bind(&event.id)
        .bind(kind)
        .bind(to_millis(self.now()))
        .execute(self.inner.db.pool())
        .await?
        .rows_affected();
        if fresh == 0 {
            self.audit(
                &Actor::System,
                "billing.webhook_replayed",
                None,
                Some(&format!("processor:{processor}")),
                serde_json::json!({ "event": event.id }),
            )
            .await?;
            return Err(BillingError::Conflict(format!("Event {} was already processed.", event.id)));
        }
        let payment = self
            .payment_by_processor(
                processor,
                event.order.as_deref(),
                event.payment.as_deref(),
                event.reference.as_deref(),
            )
            .await?;
        let Some(payment) = payment else {
            return Ok(WebhookResult { event: event.id, applied: "unknown payment, ignored" });
        };
        let applied = match (&event.kind, payment.status.as_str()) {
            (EventKind::Captured, "created") => {
                let amount = event.amount_cents.unwrap_or(-1);
                let currency = event.currency.clone().unwrap_or_default();
                let processor_payment = event.payment.clone().unwrap_or_default();
                // The token arrives with the buyer's return (capture / lookup); a
                // webhook settles the money and the subscription starts without
                // one only if the buyer never comes back.
                self.settle(&payment, &processor_payment, amount, &currency, None).await?;
                "captured"
            }
            (EventKind::Declined, "created") => {
                self.fail_payment(&payment.id, "declined (webhook)").await?;
                "failed"
            }
            (EventKind::Refunded, "captured") => {
                let amount = event.amount_cents.unwrap_or(payment.amount_cents - payment.refunded_cents);
                self.apply_refund(&payment.id, amount).await?;
                "refunded"
            }
            (EventKind::Refunded, "created") => {
                // Out of order: the refund overtook the capture. Keep the
                // event; the capture that follows settles, and the finance
                // console shows both.
                "refund before capture, kept"
            }
            _ => "no change",
        };
        self.audit(
            &Actor::System,
            "billing.webhook_applied",
            payment.account_id.as_deref().map(crate::records::subject).as_deref(),
            Some(&format!("payment:{}", payment.id)),
            serde_json::json!({ "event": event.id, "kind": kind, "applied": applied }),
        )
        .await?;
        Ok(WebhookResult { event: event.id, applied })
    }
}
