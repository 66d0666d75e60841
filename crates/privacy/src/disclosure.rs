//! The disclosure gate: the one path by which personal data leaves Seldesk
//! for a provider, partner, event organiser or sponsor. It refuses a
//! recipient outside the provider registry, a purpose not registered for it,
//! a field the registry does not allow and any value that looks like a card
//! number — before anything reaches the network — and records every
//! disclosure in a ledger that the person's access export includes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use seldesk_domain::{Actor, Clock, Policy};
use seldesk_store::{Db, from_millis, to_millis};
use sqlx::Row;
use time::OffsetDateTime;

use crate::card::contains_card_number;
use crate::{AuditLog, BoxFuture, PrivacyError};

/// Personal data about one person, for one recipient and purpose.
#[derive(Debug, Clone)]
pub struct Disclosure {
    /// Provider id from the registry (`paypal`, `event_organiser`, …).
    pub recipient: String,
    /// The named organisation for recipient classes ("Acme Events Ltd").
    pub recipient_name: Option<String>,
    /// Purpose id from the registry.
    pub purpose: String,
    /// Opaque reference of the person.
    pub subject: String,
    /// Field id → value.
    pub fields: BTreeMap<String, String>,
}

/// Why the gate refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("`{0}` is not a registered recipient")]
    UnknownRecipient(String),
    #[error("`{recipient}` is not registered for purpose `{purpose}`")]
    PurposeNotRegistered { recipient: String, purpose: String },
    #[error("`{recipient}` may not receive field `{field}`")]
    FieldNotAllowed { recipient: String, field: String },
    #[error("field `{field}` looks like a payment card number, which never leaves Seldesk")]
    CardNumber { field: String },
    #[error("nothing to disclose")]
    NoFields,
}

/// Whether a provider may receive data straight from the visitor's browser
/// (a script it serves) for `purpose`: registered for that purpose, and every
/// field it receives declared as browser data. The site asks this before it
/// loads such a script, so a provider removed from the registry stops
/// receiving anything, as a server-side transfer would.
pub fn browser_transfer_allowed(policy: &Policy, recipient: &str, purpose: &str) -> Result<(), Refusal> {
    let provider = policy.provider(recipient).ok_or_else(|| Refusal::UnknownRecipient(recipient.to_string()))?;
    if !provider.purposes.iter().any(|p| p == purpose) {
        return Err(Refusal::PurposeNotRegistered { recipient: recipient.to_string(), purpose: purpose.to_string() });
    }
    if provider.fields.is_empty() {
        return Err(Refusal::NoFields);
    }
    match provider.fields.iter().find(|f| policy.field(f).is_none_or(|f| f.category != "browser_event")) {
        Some(field) => Err(Refusal::FieldNotAllowed { recipient: recipient.to_string(), field: field.clone() }),
        None => Ok(()),
    }
}

/// Delivers an approved disclosure (HTTP webhook, processor API, export file).
pub trait Transport: Send + Sync {
    fn deliver<'a>(&'a self, disclosure: &'a Disclosure) -> BoxFuture<'a, Result<(), String>>;
}

/// Posts the fields as JSON to a URL.
#[derive(Debug, Clone)]
pub struct WebhookTransport {
    url: String,
    client: reqwest::Client,
}

impl WebhookTransport {
    pub fn new(url: impl Into<String>) -> Result<Self, PrivacyError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| PrivacyError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { url: url.into(), client })
    }
}

impl Transport for WebhookTransport {
    fn deliver<'a>(&'a self, d: &'a Disclosure) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let body = serde_json::json!({ "purpose": d.purpose, "fields": d.fields });
            let response = self.client.post(&self.url).json(&body).send().await.map_err(|e| e.to_string())?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("the recipient answered {}", response.status()))
            }
        })
    }
}

/// A ledger line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DisclosureRecord {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub recipient: String,
    pub recipient_name: String,
    pub purpose: String,
    pub subject: String,
    /// Field names only; the values are not kept here.
    pub fields: Vec<String>,
    pub status: String,
    pub error: Option<String>,
}

/// The gate and its ledger.
#[derive(Debug, Clone)]
pub struct DisclosureGate {
    policy: Arc<Policy>,
    db: Db,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

impl DisclosureGate {
    pub fn new(policy: Arc<Policy>, db: Db, clock: Arc<dyn Clock>, audit: AuditLog) -> Self {
        Self { policy, db, clock, audit }
    }

    /// Checks a disclosure against the registry without sending anything.
    pub fn check(&self, d: &Disclosure) -> Result<(), Refusal> {
        let provider =
            self.policy.provider(&d.recipient).ok_or_else(|| Refusal::UnknownRecipient(d.recipient.clone()))?;
        if !provider.purposes.contains(&d.purpose) {
            return Err(Refusal::PurposeNotRegistered { recipient: d.recipient.clone(), purpose: d.purpose.clone() });
        }
        if d.fields.is_empty() {
            return Err(Refusal::NoFields);
        }
        for (field, value) in &d.fields {
            if !provider.fields.contains(field) {
                return Err(Refusal::FieldNotAllowed { recipient: d.recipient.clone(), field: field.clone() });
            }
            if contains_card_number(value) {
                return Err(Refusal::CardNumber { field: field.clone() });
            }
        }
        Ok(())
    }

    /// Checks, delivers through `transport`, and records the disclosure.
    /// A refused disclosure is audited (field names only) and never delivered.
    pub async fn send(&self, actor: &Actor, d: &Disclosure, transport: &dyn Transport) -> Result<i64, PrivacyError> {
        let names: Vec<String> = d.fields.keys().cloned().collect();
        if let Err(refusal) = self.check(d) {
            self.audit
                .record(
                    actor,
                    "disclosure.refused",
                    Some(&d.subject),
                    Some(&d.recipient),
                    serde_json::json!({ "purpose": d.purpose, "fields": names, "reason": refusal.to_string() }),
                )
                .await?;
            return Err(refusal.into());
        }
        let outcome = transport.deliver(d).await;
        let recipient_name = d
            .recipient_name
            .clone()
            .or_else(|| self.policy.provider(&d.recipient).map(|p| p.name.clone()))
            .unwrap_or_default();
        let (status, error) = match &outcome {
            Ok(()) => ("sent", None),
            Err(e) => ("failed", Some(e.clone())),
        };
        let row = sqlx::query(
            "INSERT INTO disclosures (at, recipient, recipient_name, purpose, subject, fields, status, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(to_millis(self.clock.now()))
        .bind(&d.recipient)
        .bind(&recipient_name)
        .bind(&d.purpose)
        .bind(&d.subject)
        .bind(names.join(","))
        .bind(status)
        .bind(&error)
        .fetch_one(self.db.pool())
        .await?;
        let id: i64 = row.try_get("id")?;
        self.audit
            .record(
                actor,
                &format!("disclosure.{status}"),
                Some(&d.subject),
                Some(&d.recipient),
                serde_json::json!({ "ledger": id, "purpose": d.purpose, "fields": names }),
            )
            .await?;
        match outcome {
            Ok(()) => Ok(id),
            Err(e) => Err(PrivacyError::Invalid(format!("delivery to {recipient_name} failed: {e}"))),
        }
    }

    /// Every disclosure about a person (for their access export).
    pub async fn for_subject(&self, subject: &str) -> Result<Vec<DisclosureRecord>, PrivacyError> {
        let rows = sqlx::query(
            "SELECT id, at, recipient, recipient_name, purpose, subject, fields, status, error
             FROM disclosures WHERE subject = $1 ORDER BY id",
        )
        .bind(subject)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let fields: String = r.try_get("fields")?;
                Ok(DisclosureRecord {
                    id: r.try_get("id")?,
                    at: from_millis(r.try_get("at")?),
                    recipient: r.try_get("recipient")?,
                    recipient_name: r.try_get("recipient_name")?,
                    purpose: r.try_get("purpose")?,
                    subject: r.try_get("subject")?,
                    fields: fields.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                    status: r.try_get("status")?,
                    error: r.try_get("error")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(edit: impl Fn(String) -> String) -> Policy {
        let source = edit(seldesk_domain::policy::BUILTIN_SOURCE.to_string());
        Policy::parse(&source, "edited.toml", |_| Ok(String::new())).expect("valid")
    }

    // promise: CK-4
    #[test]
    fn a_browser_side_provider_needs_its_registration() {
        let p = policy(|s| s);
        assert_eq!(browser_transfer_allowed(&p, "google_analytics", "statistics"), Ok(()));
        assert!(matches!(
            browser_transfer_allowed(&p, "google_analytics", "marketing"),
            Err(Refusal::PurposeNotRegistered { .. })
        ));
        // A provider that would receive account data from the server is not a browser-side one.
        assert!(matches!(
            browser_transfer_allowed(&p, "paypal", "payment_processing"),
            Err(Refusal::FieldNotAllowed { .. })
        ));
        assert!(matches!(browser_transfer_allowed(&p, "nobody", "statistics"), Err(Refusal::UnknownRecipient(_))));
    }
}
