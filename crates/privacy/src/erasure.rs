//! The erasure log: what was erased, when and why — identifiers and
//! categories only, never the erased content. A restore replays it; receipts
//! are built from it.

use std::sync::Arc;

use seldesk_domain::{Actor, Clock};
use seldesk_store::{Db, from_millis, to_millis};
use sqlx::Row;
use time::OffsetDateTime;

use crate::PrivacyError;

/// Why something was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasureReason {
    /// Its retention period ended.
    Retention,
    /// The person asked (erasure request, objection, withdrawal).
    PersonRequest,
    /// The customer removed the database.
    DatabaseRemoved,
    /// A cancelled database's grace period ended.
    GracePeriodEnded,
    /// An upgrade succeeded, so its upload went.
    UpgradeFinished,
}

impl ErasureReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Retention => "retention",
            Self::PersonRequest => "person_request",
            Self::DatabaseRemoved => "database_removed",
            Self::GracePeriodEnded => "grace_period_ended",
            Self::UpgradeFinished => "upgrade_finished",
        }
    }
}

/// One logged erasure.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ErasureRecord {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub category: String,
    pub subject: Option<String>,
    pub record: String,
    pub reason: String,
    pub actor: String,
}

/// The log.
#[derive(Debug, Clone)]
pub struct ErasureLog {
    db: Db,
    clock: Arc<dyn Clock>,
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<ErasureRecord, sqlx::Error> {
    Ok(ErasureRecord {
        id: r.try_get("id")?,
        at: from_millis(r.try_get("at")?),
        category: r.try_get("category")?,
        subject: r.try_get("subject")?,
        record: r.try_get("record")?,
        reason: r.try_get("reason")?,
        actor: r.try_get("actor")?,
    })
}

impl ErasureLog {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// Logs erasures of `records` (opaque references) of one category.
    pub async fn record(
        &self,
        category: &str,
        records: &[(Option<&str>, &str)],
        reason: ErasureReason,
        actor: &Actor,
    ) -> Result<(), PrivacyError> {
        let at = to_millis(self.clock.now());
        let actor = actor.reference();
        let mut tx = self.db.begin_write().await?;
        for (subject, record) in records {
            sqlx::query(
                "INSERT INTO erasure_log (at, category, subject, record, reason, actor) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(at)
            .bind(category)
            .bind(*subject)
            .bind(*record)
            .bind(reason.as_str())
            .bind(&actor)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Erasures since `at` (a restore replays those made after its snapshot).
    pub async fn since(&self, at: OffsetDateTime) -> Result<Vec<ErasureRecord>, PrivacyError> {
        let rows = sqlx::query(
            "SELECT id, at, category, subject, record, reason, actor FROM erasure_log WHERE at >= $1 ORDER BY id",
        )
        .bind(to_millis(at))
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Erasures about one person (for receipts).
    pub async fn for_subject(&self, subject: &str) -> Result<Vec<ErasureRecord>, PrivacyError> {
        let rows = sqlx::query(
            "SELECT id, at, category, subject, record, reason, actor FROM erasure_log WHERE subject = $1 ORDER BY id",
        )
        .bind(subject)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }
}
