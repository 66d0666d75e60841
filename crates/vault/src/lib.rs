//! The vault (BAK-1…BAK-4): encrypted, deduplicated, write-once backups of
//! customer databases, replicated to every backup region of the policy file.
//!
//! A database file is cut at its page size (attachments at 64 KiB), each
//! block hashed with a keyed BLAKE3, only blocks not yet stored in the
//! current epoch are kept; new blocks are gathered into segments compressed
//! with zstd and sealed with AES-256-GCM under the database's own key (itself
//! wrapped by the master key), segments into packs of ~16 MiB with an index.
//! A snapshot is a manifest of block hashes. Every object but a key is named
//! by the hash of its bytes and written once to every region.
//!
//! Retention never rewrites an object: blocks are shared only within an
//! epoch (a fresh full base every `epoch_days`), so a pack is referenced only
//! by snapshots of its epoch and goes when they do; a database's key goes
//! with its last snapshot, after which nothing of it can be read.

mod engine;
pub mod format;
mod pagemap;
pub mod remote;
pub mod service;
pub mod store;
pub mod stream;

pub use engine::{Changed, CheckProblem, PruneReport, RepairReport, Retention, SnapshotInfo, Vault, VaultSettings};
pub use service::{
    BackupOutcome, Backups, JOB_ANCHOR, JOB_BACKUP, JOB_PRUNE, JOB_RESTORE, PointInTimePlan, Protection,
    RestoreRecords, RestoreStatus,
};
pub use store::RegionStore;
pub use stream::{ShipReport, Shipper};

/// The job that backs up one database, or every one (the nightly run).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupJob {
    /// One database (a new chain of streamed commits); none: all of them.
    #[serde(default)]
    pub database: Option<String>,
}

impl seldesk_jobs::JobPayload for BackupJob {
    const KIND: &'static str = JOB_BACKUP;
}

/// The job that restores a snapshot an owner asked for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RestoreJob {
    /// The restore request's id.
    pub restore: String,
}

impl seldesk_jobs::JobPayload for RestoreJob {
    const KIND: &'static str = JOB_RESTORE;
}

/// Errors of the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{0}")]
    Io(String),
    #[error("object {0} exists already with other content: backup objects are never overwritten")]
    Overwrite(String),
    #[error("object {object} is locked until {}: backup objects cannot be deleted before their date", seldesk_store::from_millis(*until_ms))]
    Locked { object: String, until_ms: i64 },
    #[error("object {0} is missing")]
    Missing(String),
    #[error("damaged: {0}")]
    Corrupt(String),
    #[error("encryption: {0}")]
    Crypto(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Tenant(#[from] seldesk_tenants::TenantError),
    #[error(transparent)]
    Privacy(#[from] seldesk_privacy::PrivacyError),
    #[error("backup store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] seldesk_store::StoreError),
}

impl seldesk_domain::Failure for VaultError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        use seldesk_domain::ErrorKind as K;
        match self {
            Self::Invalid(_) => K::Invalid,
            Self::NotFound(_) => K::NotFound,
            Self::Refused(_) => K::Conflict,
            Self::Forbidden(_) => K::Forbidden,
            Self::Tenant(e) => e.kind(),
            Self::Privacy(e) => e.kind(),
            Self::Io(_)
            | Self::Overwrite(_)
            | Self::Locked { .. }
            | Self::Missing(_)
            | Self::Corrupt(_)
            | Self::Crypto(_)
            | Self::Query(_)
            | Self::Store(_) => K::Internal,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::Tenant(e) => e.field(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Tenant(e) => e.retry_after(),
            _ => None,
        }
    }
}
