//! Billing (PAY-1…PAY-4, DB-7, DB-9, ACC-4): plans and prices from the
//! configuration, subscriptions per database, checkout on the processor's
//! own page (PayPal Orders v2 or an Ingenico hosted checkout), renewals
//! charged to the processor-held token, webhooks verified and applied once,
//! gap-free invoices with a PDF, and the finance console's refunds.
//!
//! Card data never reaches us: the card form lives on the processor's page,
//! no table has a column for it, and every call to a processor passes the
//! disclosure gate with exactly the six registered fields.

pub mod config;
mod flow;
pub mod ingenico;
mod invoices;
pub mod paypal;
pub mod pdf;
pub mod processor;
mod records;
mod webhooks;

use seldesk_domain::Fault;
use std::collections::BTreeMap;
use std::sync::Arc;

use seldesk_accounts::{Account, AccountError, Accounts, Mailer};
use seldesk_domain::{Actor, Clock, Policy};
use seldesk_privacy::{AuditLog, Disclosure, DisclosureGate, PrivacyError};
use seldesk_store::Db;
use seldesk_tenants::{Databases, TenantError};
use serde::Serialize;
use time::OffsetDateTime;

pub use config::{BillingSettings, Per, Plan, Price, Seller, Tax};
pub use flow::{Interval, Quote, QuoteLine};
pub use invoices::{InvoiceData, InvoiceSummary};
pub use processor::{Call, Outcome, Processor, ProcessorError, TestProcessor, WebhookError, WebhookEvent};
pub use records::{BillingRecords, Payment, PaymentEraser, Subscription};
pub use webhooks::WebhookResult;

/// Job kind: charge subscriptions whose period ended, and retry failed ones.
pub const JOB_RENEW: &str = "billing.renew";

/// Errors of the billing service; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    /// Payment is needed first (HTTP 402).
    #[error("{0}")]
    PaymentRequired(String),
    /// A webhook whose signature does not verify (HTTP 401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The processor failed or answered something we refuse (HTTP 502).
    #[error("{0}")]
    Processor(String),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    #[error("billing store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] seldesk_store::StoreError),
    #[error(transparent)]
    Internal(#[from] seldesk_domain::Fault),
}

impl seldesk_domain::Failure for BillingError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        use seldesk_domain::ErrorKind as K;
        match self {
            Self::Invalid { .. } => K::Invalid,
            Self::NotFound(_) => K::NotFound,
            Self::Conflict(_) => K::Conflict,
            Self::Forbidden(_) => K::Forbidden,
            Self::PaymentRequired(_) => K::PaymentRequired,
            Self::Unauthenticated(_) => K::Unauthenticated,
            Self::Processor(_) => K::Upstream,
            Self::Tenant(e) => e.kind(),
            Self::Account(e) => e.kind(),
            Self::Privacy(e) => e.kind(),
            Self::Query(_) | Self::Store(_) | Self::Internal(_) => K::Internal,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Tenant(e) => e.field(),
            Self::Account(e) => e.field(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Tenant(e) => e.retry_after(),
            Self::Account(e) => e.retry_after(),
            _ => None,
        }
    }
}

impl BillingError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

/// The billing service.
#[derive(Clone)]
pub struct Billing {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    clock: Arc<dyn Clock>,
    policy: Arc<Policy>,
    audit: AuditLog,
    gate: DisclosureGate,
    mailer: Mailer,
    accounts: Accounts,
    databases: Databases,
    settings: BillingSettings,
    base_url: String,
    processors: Vec<Arc<dyn Processor>>,
    test: Option<Arc<TestProcessor>>,
}

impl std::fmt::Debug for Billing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.inner.processors.iter().map(|p| p.id()).collect();
        f.debug_struct("Billing").field("processors", &ids).finish()
    }
}

/// What [`Billing::new`] needs.
pub struct BillingDeps {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub policy: Arc<Policy>,
    pub audit: AuditLog,
    pub gate: DisclosureGate,
    pub mailer: Mailer,
    pub accounts: Accounts,
    pub databases: Databases,
    /// Public address of the site (return addresses, links in mail).
    pub base_url: String,
}

impl Billing {
    /// Builds the service and its processors from the settings.
    pub fn new(deps: BillingDeps, settings: BillingSettings) -> Result<Self, BillingError> {
        settings.validate().map_err(|e| BillingError::invalid("billing", e))?;
        let mut processors: Vec<Arc<dyn Processor>> = Vec::new();
        if let Some(p) = &settings.paypal {
            processors.push(Arc::new(paypal::Paypal::new(p.clone()).map_err(Fault::by("cannot set up PayPal"))?));
        }
        if let Some(i) = &settings.ingenico {
            processors.push(Arc::new(ingenico::Ingenico::new(i.clone()).map_err(Fault::by("cannot set up Ingenico"))?));
        }
        let test = settings.offers_test_processor().then(|| Arc::new(TestProcessor::new(deps.base_url.clone())));
        if let Some(t) = &test {
            processors.push(t.clone());
        }
        for p in &processors {
            if p.id() != "test" && deps.policy.provider(p.id()).is_none() {
                return Err(BillingError::invalid(
                    "billing",
                    format!("processor `{}` is not a provider in the policy file; add it there first", p.id()),
                ));
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                db: deps.db,
                clock: deps.clock,
                policy: deps.policy,
                audit: deps.audit,
                gate: deps.gate,
                mailer: deps.mailer,
                accounts: deps.accounts,
                databases: deps.databases,
                settings,
                base_url: deps.base_url.trim_end_matches('/').to_string(),
                processors,
                test,
            }),
        })
    }

    pub fn settings(&self) -> &BillingSettings {
        &self.inner.settings
    }

    /// Processors a buyer may choose: (id, label).
    pub fn processors(&self) -> Vec<(&'static str, &'static str)> {
        self.inner.processors.iter().map(|p| (p.id(), p.label())).collect()
    }

    /// The built-in test processor, when offered (its page is served by the web layer).
    pub fn test_processor(&self) -> Option<&TestProcessor> {
        self.inner.test.as_deref()
    }

    /// Whether any way to pay is configured: without one, paid plans are
    /// unavailable (and never faked).
    pub fn payments_available(&self) -> bool {
        !self.inner.processors.is_empty()
    }

    fn processor(&self, id: &str) -> Result<&Arc<dyn Processor>, BillingError> {
        if self.inner.processors.is_empty() {
            return Err(BillingError::Conflict(
                "Paid plans are unavailable on this Seldesk: no payment processor is configured.".into(),
            ));
        }
        self.inner.processors.iter().find(|p| p.id() == id).ok_or_else(|| {
            let ids: Vec<&str> = self.inner.processors.iter().map(|p| p.id()).collect();
            BillingError::invalid("processor", format!("`{id}` is not offered; choose one of {}.", ids.join(", ")))
        })
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Sends one call to a processor through the disclosure gate (PAY-4):
    /// the gate refuses any field outside the registry before the network
    /// and records the call in the ledger, so it is in the person's access
    /// export. The test processor is in-process: the gate still checks the
    /// fields (against the rules of the real processors) but nothing leaves.
    async fn through_gate(
        &self,
        actor: &Actor,
        processor: &dyn Processor,
        subject: &str,
        fields: BTreeMap<String, String>,
        call: &Call,
    ) -> Result<Outcome, BillingError> {
        let recipient = if processor.id() == "test" {
            self.inner
                .policy
                .providers
                .iter()
                .find(|p| matches!(p.kind, seldesk_domain::policy::ProviderKind::Payment))
                .map(|p| p.id.clone())
                .ok_or_else(|| BillingError::Internal(Fault::msg("the policy lists no payment processor")))?
        } else {
            processor.id().to_string()
        };
        let disclosure = Disclosure {
            recipient,
            recipient_name: None,
            purpose: "payment_processing".into(),
            subject: subject.to_string(),
            fields,
        };
        if processor.id() == "test" {
            self.inner.gate.check(&disclosure).map_err(|r| BillingError::Privacy(r.into()))?;
            return processor.call(&disclosure.fields, call).await.map_err(|e| BillingError::Processor(e.0));
        }
        let transport = processor::GateCall::new(processor, call);
        let sent = self.inner.gate.send(actor, &disclosure, &transport).await;
        match (transport.take(), sent) {
            (Some(Ok(outcome)), Ok(_)) => Ok(outcome),
            (Some(Err(e)), _) => Err(BillingError::Processor(format!("{}: {}", processor.label(), e.0))),
            (_, Err(e)) => Err(e.into()),
            (None, Ok(_)) => Err(BillingError::Internal(Fault::msg("the processor call left no answer"))),
        }
    }

    async fn account(&self, id: &str) -> Result<Account, BillingError> {
        Ok(self.inner.accounts.account(id).await?)
    }

    async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        subject: Option<&str>,
        object: Option<&str>,
        details: serde_json::Value,
    ) -> Result<(), BillingError> {
        self.inner.audit.record(actor, action, subject, object, details).await?;
        Ok(())
    }
}

/// Amounts for display: "29.00 EUR".
pub fn money(cents: i64, currency: &str) -> String {
    pdf::money(cents, currency)
}

/// A row of the finance console's lists.
#[derive(Debug, Clone, Serialize)]
pub struct FailedRenewal {
    pub subscription: String,
    pub account_id: String,
    pub database_id: String,
    pub status: String,
    pub failed_attempts: i64,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_retry_at: Option<OffsetDateTime>,
}
