//! Marketing (MKT-1…MKT-4, PRC-2, PRC-3): a person's marketing choice with
//! a one-click opt-out in every message, campaigns sent in batches that
//! honour every opt-out and never send anyone a message twice, event
//! registrations and partner referrals handed over through the disclosure
//! gate, and trend reports built from counts alone.
//!
//! The legal basis for marketing mail comes from the policy file (the
//! `marketing_contact` category): with consent nobody gets marketing until
//! they opt in; with legitimate interest customers get it until they opt out.

mod campaigns;
mod events;
mod prefs;
mod store;
mod trends;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use seldesk_accounts::{AccountError, Mailer};
use seldesk_domain::{Actor, Clock, Policy, Role};
use seldesk_privacy::{AuditLog, DisclosureGate};
use seldesk_store::Db;

pub use campaigns::{Audience, Campaign, CampaignMail, CampaignStats, CampaignStatus, PLANS, Segment, SendRun};
pub use events::{Event, EventInput, Partner, PartnerInput, Referral, Registration, RegistrationInput, Sponsor};
pub use prefs::{Basis, Preference};
pub use store::{MarketingEraser, MarketingRecords};
pub use trends::{Dimension, TrendRow};

/// Job kind: send a campaign's pending messages.
pub const JOB_SEND: &str = "marketing.send";
/// Job kind: hand a registration or referral to its recipients.
pub const JOB_TRANSFER: &str = "marketing.transfer";
/// The job that sends a campaign's pending messages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendJob {
    pub campaign: String,
}

impl seldesk_jobs::JobPayload for SendJob {
    const KIND: &'static str = JOB_SEND;
}

/// The job that hands one registration or referral to its recipients.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferJob {
    /// `registration` or `referral`.
    pub kind: String,
    pub id: String,
}

impl seldesk_jobs::JobPayload for TransferJob {
    const KIND: &'static str = JOB_TRANSFER;
}

/// Job kind: add new sign-ups, trials and conversions to the trend counts.
pub const JOB_TRENDS: &str = "marketing.trends";

/// Errors of the marketing service.
#[derive(Debug, thiserror::Error)]
pub enum MarketingError {
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Privacy(#[from] seldesk_privacy::PrivacyError),
    #[error("marketing store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] seldesk_store::StoreError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Internal(#[from] seldesk_domain::Fault),
}

impl seldesk_domain::Failure for MarketingError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        use seldesk_domain::ErrorKind as K;
        match self {
            Self::Invalid { .. } => K::Invalid,
            Self::NotFound(_) => K::NotFound,
            Self::Conflict(_) => K::Conflict,
            Self::Forbidden(_) => K::Forbidden,
            Self::Account(e) => e.kind(),
            Self::Privacy(e) => e.kind(),
            _ => K::Internal,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Account(e) => e.field(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Account(e) => e.retry_after(),
            _ => None,
        }
    }
}

impl MarketingError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

/// Settings from the configuration.
#[derive(Debug, Clone)]
pub struct MarketingConfig {
    /// Public address of the site, for links in messages (no trailing slash).
    pub base_url: String,
    /// Where transfers without a webhook are written for staff to hand over.
    pub transfers_dir: PathBuf,
    /// Messages per batch.
    pub batch_size: u32,
    /// Pause between batches (the send rate).
    pub batch_pause: Duration,
}

/// The marketing service.
#[derive(Clone)]
pub struct Marketing {
    pub(crate) db: Db,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) audit: AuditLog,
    pub(crate) disclosures: DisclosureGate,
    pub(crate) mailer: Mailer,
    pub(crate) queue: seldesk_jobs::Queue,
    pub(crate) config: MarketingConfig,
}

impl Marketing {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        policy: Arc<Policy>,
        audit: AuditLog,
        disclosures: DisclosureGate,
        mailer: Mailer,
        queue: seldesk_jobs::Queue,
        config: MarketingConfig,
    ) -> Self {
        Self { db, clock, policy, audit, disclosures, mailer, queue, config }
    }

    pub(crate) fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// The mailer campaigns go through.
    pub fn mailer(&self) -> &Mailer {
        &self.mailer
    }
}

/// Only the marketing role (and the operator) works with campaigns, events,
/// partners and trend reports.
pub(crate) fn marketing_only(actor: &Actor) -> Result<(), MarketingError> {
    if actor.has_any_role(&[Role::Marketing]) {
        Ok(())
    } else {
        Err(MarketingError::Forbidden(
            "Only the marketing role works with campaigns, events, partners and trends.".into(),
        ))
    }
}

/// The hash an opt-out is kept under: the address itself never is.
pub fn email_hash(email: &str) -> String {
    let normalised = email.trim().to_lowercase();
    format!("b3:{}", blake3::hash(normalised.as_bytes()).to_hex())
}

/// Maps a failed validation of the accounts' input rules.
pub(crate) fn checked<T>(r: Result<T, AccountError>) -> Result<T, MarketingError> {
    r.map_err(MarketingError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_case_and_spaces_and_hides_the_address() {
        let h = email_hash(" Asha@Example.com ");
        assert_eq!(h, email_hash("asha@example.com"));
        assert!(!h.contains("asha"));
        assert_ne!(h, email_hash("asha@example.org"));
    }
}
