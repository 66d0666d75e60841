//! Seldesk's privacy core.
//!
//! - [`retention`]: one engine applies every category's rule from the policy
//!   file through erasers that stores register; legal holds suspend it.
//! - [`erasure`]: the log of every erasure (identifiers, never content),
//!   replayed after a restore and used for receipts.
//! - [`audit`]: an append-only trail in which each entry carries the hash of
//!   the one before; `verify` finds edits, removals and reordering.
//! - [`disclosure`]: the one path by which personal data leaves Seldesk,
//!   refusing anything the provider registry does not allow, and its ledger.
//! - [`card`]: the card-number guard (PAY-2).
//! - [`research`]: aggregates with small groups suppressed (PRC-3).

pub mod audit;
pub mod card;
pub mod consent;
pub mod disclosure;
pub mod erasure;
pub mod research;
pub mod retention;

use std::future::Future;
use std::pin::Pin;

pub use audit::{AuditEntry, AuditLog, VerifyReport};
pub use disclosure::{Disclosure, DisclosureGate, DisclosureRecord, Refusal, Transport, WebhookTransport};
pub use erasure::{ErasureLog, ErasureReason, ErasureRecord};
pub use retention::{Candidate, Census, Eraser, LegalHold, NewHold, RetentionEngine, RetentionReport, TableEraser};

/// A boxed future, so store traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The person an erasure is about, by every reference a store may hold.
#[derive(Debug, Clone)]
pub struct Person {
    /// `person:<account id>`: the audit trail's and ledgers' reference.
    pub subject: String,
    pub account_id: String,
    /// Lower-cased: records made before the person signed in (a contact
    /// form, an event registration, a job application) carry only this.
    pub email: String,
    /// When the erasure runs (the start of every "kept until" in the receipt).
    pub at: time::OffsetDateTime,
}

/// What one store did in an erasure, in words for the person's receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erased {
    /// How many records went.
    pub records: u64,
    /// What was erased ("2 event registrations").
    pub erased: Vec<String>,
    /// What is kept, why and until when ("invoice 2026-0001 … until 2034-12-06").
    pub kept: Vec<String>,
}

impl Erased {
    /// Adds another store's outcome.
    pub fn absorb(&mut self, other: Erased) {
        self.records += other.records;
        self.erased.extend(other.erased);
        self.kept.extend(other.kept);
    }
}

/// A crate's store of data about account holders: it contributes to their
/// access export and erases (or archives under a legal period) its own
/// tables and files when they are erased. Each control-plane table holding
/// personal data has exactly one owner, checked at start-up.
pub trait PersonalDataStore: Send + Sync {
    /// The section's name in the access export.
    fn section(&self) -> &'static str;
    /// The policy category of what it holds (for the erasure log).
    fn category(&self) -> &'static str;
    /// The control-plane tables with personal data that only this store erases.
    fn tables(&self) -> &'static [&'static str];
    /// Everything it holds about `subject` (`person:…`).
    fn export<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<serde_json::Value, PrivacyError>>;
    /// Erases everything about the person; says what went and what stays.
    /// Must be safe to run again (an erasure that failed half-way is retried).
    fn erase<'a>(&'a self, person: &'a Person) -> BoxFuture<'a, Result<Erased, PrivacyError>>;
}

/// How a store keeps an account in use (ACC-6: idle accounts are erased).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Nothing here for the account.
    None,
    /// Something live (a database, a running subscription): in use.
    Live,
    /// The last record's time (an invoice).
    Last(time::OffsetDateTime),
}

/// A store whose records keep an account in use (databases, invoices).
pub trait AccountActivity: Send + Sync {
    fn activity<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<Activity, PrivacyError>>;
}

/// Control-plane tables that hold personal data, each with the store that
/// owns it. Start-up refuses to run when one has no owner (or two), so a new
/// table cannot be forgotten by erasure.
pub const PERSONAL_TABLES: &[&str] = &[
    // accounts
    "accounts",
    "signins",
    "auth_tokens",
    "sessions",
    "policy_notices",
    "access_exports",
    "tickets",
    "ticket_messages",
    "rate_limits",
    "api_tokens",
    "idempotency_keys",
    // billing
    "subscriptions",
    "payments",
    "invoices",
    // privacy
    "consents",
    // vault
    "backup_restores",
    // tenants
    "databases",
    "trial_starts",
    // upgrades
    "upgrade_requests",
    // careers
    "job_applications",
    "job_application_notes",
    "job_offer_data",
    // marketing
    "event_registrations",
    "partner_referrals",
    "marketing_preferences",
    "campaign_recipients",
    "marketing_links",
    "marketing_transfers",
    // visits (PostgreSQL; day files on SQLite)
    "visits",
    "visits_held",
];

/// Checks that every table of [`PERSONAL_TABLES`] has exactly one owner
/// among the stores (and `core`, the tables the account erasure itself owns).
pub fn check_owners(core: &[&str], stores: &[std::sync::Arc<dyn PersonalDataStore>]) -> Result<(), PrivacyError> {
    for table in PERSONAL_TABLES {
        let owners: Vec<&str> = std::iter::once(("accounts", core))
            .chain(stores.iter().map(|s| (s.section(), s.tables())))
            .filter(|(_, tables)| tables.contains(table))
            .map(|(name, _)| name)
            .collect();
        match owners.as_slice() {
            [_] => {}
            [] => {
                return Err(PrivacyError::Misconfigured(format!(
                    "table `{table}` holds personal data but no store erases it"
                )));
            }
            many => {
                return Err(PrivacyError::Misconfigured(format!(
                    "table `{table}` is erased by several stores: {}",
                    many.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// Job kind: apply every retention rule.
pub const JOB_RETENTION: &str = "retention.run";

/// Errors of the privacy core.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("privacy store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] seldesk_store::StoreError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error("disclosure refused: {0}")]
    Refused(#[from] Refusal),
    #[error("retention is misconfigured: {0}")]
    Misconfigured(String),
    /// A retention run that erased what it could; each failure is named.
    #[error("the retention run could not erase everything due: {}", .0.failures.join("; "))]
    Incomplete(Box<crate::retention::RunReport>),
}

impl seldesk_domain::Failure for PrivacyError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        use seldesk_domain::ErrorKind as K;
        match self {
            Self::Forbidden(_) => K::Forbidden,
            Self::Invalid(_) => K::Invalid,
            Self::Refused(_) => K::Refused,
            Self::Query(_) | Self::Store(_) | Self::Misconfigured(_) | Self::Incomplete(_) => K::Internal,
        }
    }
}

/// `($1, $2, …)` for `n` values starting at `$first`: placeholders only,
/// the values are always bound.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use seldesk_domain::TestClock;
    use seldesk_store::Db;
    use time::macros::datetime;

    pub async fn db() -> (Db, TestClock, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tmp");
        let db = Db::connect(&format!("sqlite://{}/c.db", dir.path().display())).await.expect("db");
        db.migrate().await.expect("migrate");
        (db, TestClock::new(datetime!(2026-01-10 09:00 UTC)), dir)
    }

    pub fn clock(c: &TestClock) -> Arc<dyn seldesk_domain::Clock> {
        Arc::new(c.clone())
    }

    pub fn audit(db: &Db, c: &TestClock) -> crate::AuditLog {
        crate::AuditLog::new(db.clone(), clock(c), crate::audit::AuditKey::new([7; 32]))
    }
}

#[cfg(test)]
mod owner_tests {
    use std::sync::Arc;

    use super::*;

    struct Owns(&'static [&'static str]);

    impl PersonalDataStore for Owns {
        fn section(&self) -> &'static str {
            "test"
        }
        fn category(&self) -> &'static str {
            "account_contact"
        }
        fn tables(&self) -> &'static [&'static str] {
            self.0
        }
        fn export<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<serde_json::Value, PrivacyError>> {
            Box::pin(async { Ok(serde_json::Value::Null) })
        }
        fn erase<'a>(&'a self, _: &'a Person) -> BoxFuture<'a, Result<Erased, PrivacyError>> {
            Box::pin(async { Ok(Erased::default()) })
        }
    }

    // promise: ACC-4
    #[test]
    fn every_personal_table_needs_exactly_one_owner() {
        let (core, rest) = PERSONAL_TABLES.split_at(3);
        let all: Vec<Arc<dyn PersonalDataStore>> = vec![Arc::new(Owns(rest))];
        assert!(check_owners(core, &all).is_ok());
        let missing: Vec<Arc<dyn PersonalDataStore>> = vec![Arc::new(Owns(&rest[1..]))];
        let err = check_owners(core, &missing).expect_err("refused");
        assert!(err.to_string().contains(rest[0]), "{err}");
        let twice: Vec<Arc<dyn PersonalDataStore>> = vec![Arc::new(Owns(rest)), Arc::new(Owns(&rest[..1]))];
        assert!(check_owners(core, &twice).expect_err("refused").to_string().contains("several"));
    }
}
