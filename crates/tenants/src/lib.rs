//! Customer databases (DB-1…DB-9, RES-1): one SQLite file per database with
//! a folder for its attachments, at `<data>/tenants/<region>/<id>/`.
//!
//! [`files`] owns the files (create, open, dump, export, import, destroy),
//! [`changes`] records which pages change between backups, [`open`] keeps
//! databases open with one writer each (group commit) and a pool of readers,
//! [`app`] the Seldesk app inside each database (contacts), [`sandbox`] the
//! owner's SQL console, and [`service`] the control-plane records and
//! lifecycle (create, cancel, reactivate, remove, grace-period destruction).

pub mod app;
pub mod changes;
pub mod files;
pub mod moves;
pub mod nodes;
pub mod open;
pub mod sandbox;
pub mod search;
pub mod service;
pub mod stream;
pub mod support;
pub mod transfer;

pub use app::{Contact, ContactInput};
pub use files::TenantFiles;
pub use open::{OpenDatabases, OpenSettings, WriteMode, WriteOptions};
pub use service::{
    CustomerDb, Databases, DbStatus, ExpireJob, ExportProgress, JOB_EXPIRE_TRIALS, JOB_REMIND, JOB_SWEEP_EXPORTS,
    MoveJob, MoveProgress, PreparedExport, Quotas,
};

/// Errors of customer databases.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The database is deactivated (cancelled or trial ended).
    #[error("{0}")]
    Deactivated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    /// The step needs a payment first (a paid plan).
    #[error("{0}")]
    PaymentRequired(String),
    /// The database's region is not one this node serves (RES-1): nothing
    /// of it is read or written here.
    #[error(
        "The database's data center `{region}` is not one this node serves ({serves}); nothing was read or written here."
    )]
    Residency { region: String, serves: String },
    /// No node of the region can take the request now.
    #[error("{0}")]
    Unavailable(String),
    /// The database is held for a moment (the last step of a move, a
    /// removal): a retry a second later finds it where it now lives.
    #[error("{0}")]
    Busy(String),
    #[error("customer database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("control-plane query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error(transparent)]
    Privacy(#[from] seldesk_privacy::PrivacyError),
    #[error("file error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Internal(#[from] seldesk_domain::Fault),
}

/// Whether SQLite gave up waiting for another connection's lock.
fn locked(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

impl seldesk_domain::Failure for TenantError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        use seldesk_domain::ErrorKind as K;
        match self {
            Self::Invalid { .. } => K::Invalid,
            Self::NotFound(_) => K::NotFound,
            Self::Conflict(_) => K::Conflict,
            Self::Deactivated(_) => K::Deactivated,
            Self::Forbidden(_) => K::Forbidden,
            Self::TooLarge(_) => K::TooLarge,
            Self::PaymentRequired(_) => K::PaymentRequired,
            Self::Residency { .. } => K::WrongRegion,
            Self::Unavailable(_) => K::Unavailable,
            Self::Busy(_) => K::Busy,
            Self::Privacy(e) => e.kind(),
            // The file stayed locked past the busy wait (a checkpoint, a
            // pause): a moment later the same request goes through.
            Self::Sqlite(e) if locked(e) => K::Busy,
            Self::Sqlite(_) | Self::Query(_) | Self::Io(_) | Self::Internal(_) => K::Internal,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Busy(_) => Some(1),
            Self::Sqlite(e) if locked(e) => Some(1),
            Self::Unavailable(_) => Some(30),
            _ => None,
        }
    }
}

impl TenantError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

/// Runs blocking SQLite work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TenantError> + Send + 'static,
) -> Result<T, TenantError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TenantError::Internal(seldesk_domain::Fault::new("worker failed", e)))?
}

#[cfg(test)]
mod tests {
    use seldesk_domain::{ErrorKind, Failure};

    use super::TenantError;

    /// A file still locked after the busy wait is a moment's wait for the
    /// caller (503, retry in a second), not a failure on our side.
    #[test]
    fn a_locked_file_is_busy_and_other_sqlite_errors_are_ours() {
        let sqlite = |code| TenantError::Sqlite(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None));
        for code in [rusqlite::ffi::SQLITE_BUSY, rusqlite::ffi::SQLITE_LOCKED] {
            let e = sqlite(code);
            assert_eq!((e.kind(), e.retry_after()), (ErrorKind::Busy, Some(1)), "{e}");
        }
        let corrupt = sqlite(rusqlite::ffi::SQLITE_CORRUPT);
        assert_eq!((corrupt.kind(), corrupt.retry_after()), (ErrorKind::Internal, None));
    }
}
