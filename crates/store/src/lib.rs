//! Control-plane persistence for Seldesk.
//!
//! One [`Db`] over SQLite (the embedded default) or PostgreSQL (several
//! nodes). Queries are written once with `$1` placeholders, which both
//! engines accept, and run through sqlx's `Any` driver; the few statements
//! that must differ branch on [`Backend`]. Schema migrations are kept per
//! dialect and compiled into the binary.

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor, SqlSafeStr};
use time::OffsetDateTime;

pub use sqlx;

/// Which SQL engine holds the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Errors of the control-plane store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
    #[error("cannot create the folder for the SQLite database {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("cannot connect to the control-plane database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("control-plane migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("control-plane query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// The control-plane database.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../migrations/sqlite/0001_foundation.sql")),
    (2, "privacy", include_str!("../migrations/sqlite/0002_privacy.sql")),
    (3, "accounts", include_str!("../migrations/sqlite/0003_accounts.sql")),
    (4, "policy_acceptance", include_str!("../migrations/sqlite/0004_policy_acceptance.sql")),
    (5, "databases", include_str!("../migrations/sqlite/0005_databases.sql")),
    (6, "support_access", include_str!("../migrations/sqlite/0006_support_access.sql")),
    (7, "finance_archive", include_str!("../migrations/sqlite/0007_finance_archive.sql")),
    (8, "consents", include_str!("../migrations/sqlite/0008_consents.sql")),
    (9, "reminders", include_str!("../migrations/sqlite/0009_reminders.sql")),
    (10, "careers", include_str!("../migrations/sqlite/0010_careers.sql")),
    (11, "visit_aggregates", include_str!("../migrations/sqlite/0011_visit_aggregates.sql")),
    (12, "visits", include_str!("../migrations/sqlite/0012_visits.sql")),
    (13, "database_schema_version", include_str!("../migrations/sqlite/0013_database_schema_version.sql")),
    (14, "upgrades", include_str!("../migrations/sqlite/0014_upgrades.sql")),
    (15, "test_upgrades", include_str!("../migrations/sqlite/0015_test_upgrades.sql")),
    (16, "marketing", include_str!("../migrations/sqlite/0016_marketing.sql")),
    (17, "billing", include_str!("../migrations/sqlite/0017_billing.sql")),
    (18, "restores", include_str!("../migrations/sqlite/0018_restores.sql")),
    (19, "hardening", include_str!("../migrations/sqlite/0019_hardening.sql")),
    (20, "closure", include_str!("../migrations/sqlite/0020_closure.sql")),
    (21, "trial_starts", include_str!("../migrations/sqlite/0021_trial_starts.sql")),
    (22, "nodes", include_str!("../migrations/sqlite/0022_nodes.sql")),
    (23, "home_node", include_str!("../migrations/sqlite/0023_home_node.sql")),
    (24, "job_node", include_str!("../migrations/sqlite/0024_job_node.sql")),
    (25, "move_nodes", include_str!("../migrations/sqlite/0025_move_nodes.sql")),
    (26, "stream_segments", include_str!("../migrations/sqlite/0026_stream_segments.sql")),
    (27, "api_tokens", include_str!("../migrations/sqlite/0027_api_tokens.sql")),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "foundation", include_str!("../migrations/postgres/0001_foundation.sql")),
    (2, "privacy", include_str!("../migrations/postgres/0002_privacy.sql")),
    (3, "accounts", include_str!("../migrations/postgres/0003_accounts.sql")),
    (4, "policy_acceptance", include_str!("../migrations/postgres/0004_policy_acceptance.sql")),
    (5, "databases", include_str!("../migrations/postgres/0005_databases.sql")),
    (6, "support_access", include_str!("../migrations/postgres/0006_support_access.sql")),
    (7, "finance_archive", include_str!("../migrations/postgres/0007_finance_archive.sql")),
    (8, "consents", include_str!("../migrations/postgres/0008_consents.sql")),
    (9, "reminders", include_str!("../migrations/postgres/0009_reminders.sql")),
    (10, "careers", include_str!("../migrations/postgres/0010_careers.sql")),
    (11, "visit_aggregates", include_str!("../migrations/postgres/0011_visit_aggregates.sql")),
    (12, "visits", include_str!("../migrations/postgres/0012_visits.sql")),
    (13, "database_schema_version", include_str!("../migrations/postgres/0013_database_schema_version.sql")),
    (14, "upgrades", include_str!("../migrations/postgres/0014_upgrades.sql")),
    (15, "test_upgrades", include_str!("../migrations/postgres/0015_test_upgrades.sql")),
    (16, "marketing", include_str!("../migrations/postgres/0016_marketing.sql")),
    (17, "billing", include_str!("../migrations/postgres/0017_billing.sql")),
    (18, "restores", include_str!("../migrations/postgres/0018_restores.sql")),
    (19, "hardening", include_str!("../migrations/postgres/0019_hardening.sql")),
    (20, "closure", include_str!("../migrations/postgres/0020_closure.sql")),
    (21, "trial_starts", include_str!("../migrations/postgres/0021_trial_starts.sql")),
    (22, "nodes", include_str!("../migrations/postgres/0022_nodes.sql")),
    (23, "home_node", include_str!("../migrations/postgres/0023_home_node.sql")),
    (24, "job_node", include_str!("../migrations/postgres/0024_job_node.sql")),
    (25, "move_nodes", include_str!("../migrations/postgres/0025_move_nodes.sql")),
    (26, "stream_segments", include_str!("../migrations/postgres/0026_stream_segments.sql")),
    (27, "api_tokens", include_str!("../migrations/postgres/0027_api_tokens.sql")),
];

/// Hides the password of a database URL, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => url.to_string(),
    }
}

impl Db {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`). A SQLite file
    /// and its folder are created when missing, and put in WAL mode.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let (backend, connect_url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            if file.is_empty() {
                return Err(StoreError::UnsupportedUrl(url.to_string()));
            }
            if let Some(dir) = Path::new(file).parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|source| StoreError::CreateDir { path: dir.display().to_string(), source })?;
            }
            let with_mode = if path.contains('?') { url.to_string() } else { format!("{url}?mode=rwc") };
            (Backend::Sqlite, with_mode)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let sqlite = backend == Backend::Sqlite;
        let options = AnyPoolOptions::new()
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Erasure is physical: deleted content is overwritten, not left in free pages.
                        conn.execute("PRAGMA secure_delete = ON").await?;
                        // WAL + NORMAL: no corruption and no loss on a process crash;
                        // a power loss may drop the last commits. One sync per
                        // checkpoint instead of one per commit.
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10));
        let pool = options
            .connect(&connect_url)
            .await
            .map_err(|source| StoreError::Connect { url: redact_url(url), source })?;
        if backend == Backend::Sqlite {
            // WAL lets readers work while a writer commits; the mode is kept in the file.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        Ok(Self { pool, backend })
    }

    /// Applies pending migrations of this backend's dialect.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let list = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let migrations = list
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, sql.into_sql_str(), false)
            })
            .collect();
        Migrator::with_migrations(migrations).run(&self.pool).await?;
        Ok(())
    }

    /// Succeeds when the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock at once (`BEGIN IMMEDIATE`), so a transaction that reads before it
    /// writes waits for other writers instead of failing with "database is
    /// locked" when one committed in between.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Stores times as Unix milliseconds: one representation on both engines.
pub fn to_millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The inverse of [`to_millis`].
pub fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn millis_round_trip() {
        let t = time::macros::datetime!(2026-11-25 12:00:00.123 UTC);
        assert_eq!(from_millis(to_millis(t)), t);
    }

    #[tokio::test]
    async fn sqlite_connects_migrates_twice_and_uses_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/sub/control.db", dir.path().display());
        let db = Db::connect(&url).await.expect("connect");
        db.migrate().await.expect("migrate");
        db.migrate().await.expect("migrations are idempotent");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(db.pool()).await.expect("pragma");
        assert_eq!(mode, "wal");
        db.ping().await.expect("ping");
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused() {
        let err = Db::connect("mysql://x@y/z").await.expect_err("refused");
        assert!(err.to_string().contains("sqlite://"), "{err}");
    }
}
