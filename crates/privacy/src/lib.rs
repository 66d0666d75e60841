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

/// A store outside the accounts' tables that holds data about account
/// holders (browser data, …): it contributes to their access export and is
/// erased with their account.
pub trait PersonalDataStore: Send + Sync {
    /// The section's name in the access export.
    fn section(&self) -> &'static str;
    /// The policy category of what it holds (for the erasure log).
    fn category(&self) -> &'static str;
    /// Everything it holds about `subject` (`person:…`).
    fn export<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<serde_json::Value, PrivacyError>>;
    /// Erases everything about `subject`; returns how many records went.
    fn erase<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<u64, PrivacyError>>;
}

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
