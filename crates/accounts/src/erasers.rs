//! Retention erasers of the categories this crate stores.

use seldesk_privacy::{BoxFuture, Candidate, Census, Eraser, PrivacyError};
use seldesk_store::{Db, from_millis, to_millis};
use sqlx::Row;
use time::OffsetDateTime;

fn rows_to_candidates(
    rows: &[sqlx::any::AnyRow],
    id: &str,
    subject: &str,
    at: &str,
) -> Result<Vec<Candidate>, PrivacyError> {
    rows.iter()
        .map(|r| {
            let subject: Option<String> = r.try_get(subject)?;
            Ok(Candidate {
                record: r.try_get::<String, _>(id).or_else(|_| r.try_get::<i64, _>(id).map(|n| n.to_string()))?,
                subject: subject.map(|s| crate::service::subject_of(&s)),
                start: from_millis(r.try_get(at)?),
                country: None,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

pub(crate) async fn count(db: &Db, sql: &'static str) -> Result<Census, PrivacyError> {
    let row = sqlx::query(sql).fetch_one(db.pool()).await?;
    let n: i64 = row.try_get("n")?;
    let oldest: Option<i64> = row.try_get("oldest")?;
    Ok(Census { live: u64::try_from(n).unwrap_or(0), oldest: oldest.map(from_millis) })
}

/// Helpdesk tickets and their messages.
pub struct TicketEraser {
    pub db: Db,
}

impl Eraser for TicketEraser {
    fn category(&self) -> &'static str {
        "helpdesk_ticket"
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT id, account_id, created_at FROM tickets WHERE created_at <= $1 ORDER BY id")
                .bind(to_millis(cutoff))
                .fetch_all(self.db.pool())
                .await?;
            rows_to_candidates(&rows, "id", "account_id", "created_at")
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(async move {
            let mut n = 0;
            for c in records {
                let Ok(id) = c.record.parse::<i64>() else { continue };
                let mut tx = self.db.begin_write().await.map_err(PrivacyError::from)?;
                sqlx::query("DELETE FROM ticket_messages WHERE ticket_id = $1").bind(id).execute(&mut *tx).await?;
                n += sqlx::query("DELETE FROM tickets WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
            }
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(count(&self.db, "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM tickets"))
    }
}

/// Personal data archives: the sealed object and its row.
pub struct AccessExportEraser {
    pub db: Db,
    /// Where the archives are (`AccountsConfig::archives`).
    pub archives: seldesk_blob::SealedBlobs,
    /// Where older versions wrote them (`AccountsConfig::exports_dir`).
    pub exports_dir: std::path::PathBuf,
}

impl Eraser for AccessExportEraser {
    fn category(&self) -> &'static str {
        "access_export"
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT id, account_id, created_at FROM access_exports WHERE created_at <= $1")
                .bind(to_millis(cutoff))
                .fetch_all(self.db.pool())
                .await?;
            rows_to_candidates(&rows, "id", "account_id", "created_at")
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(async move {
            let mut n = 0;
            for c in records {
                crate::helpdesk::remove_archive(&self.archives, &self.exports_dir, &c.record)
                    .await
                    .map_err(|e| PrivacyError::Invalid(e.to_string()))?;
                n += sqlx::query("DELETE FROM access_exports WHERE id = $1")
                    .bind(&c.record)
                    .execute(self.db.pool())
                    .await?
                    .rows_affected();
            }
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(count(&self.db, "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM access_exports"))
    }
}
