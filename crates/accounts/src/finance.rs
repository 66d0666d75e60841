//! The restricted finance archive (ACC-4): invoices of erased people, kept
//! for the legal period of their country, readable only by the finance role.

use seldesk_domain::Role;
use seldesk_privacy::{BoxFuture, Candidate, Census, Eraser, PrivacyError};
use seldesk_store::{Db, from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::staff::StaffMember;
use crate::{AccountError, Accounts};

/// Moves one record into the archive, in the caller's transaction: `kind`
/// is `invoice` or `payment`, `record` its reference, `start` when its
/// legal period began.
pub async fn archive(
    conn: &mut sqlx::AnyConnection,
    kind: &str,
    record: &str,
    data: &serde_json::Value,
    country: Option<&str>,
    start: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO finance_archive (kind, record, data, country, start_at, archived_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(kind)
    .bind(record)
    .bind(data.to_string())
    .bind(country)
    .bind(to_millis(start))
    .bind(to_millis(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// One archived record.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivedRecord {
    pub id: i64,
    pub kind: String,
    pub record: String,
    pub data: serde_json::Value,
    pub country: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub archived_at: OffsetDateTime,
}

impl Accounts {
    /// The archive, for the finance role only; each read is audited.
    pub async fn finance_archive(&self, staff: &StaffMember) -> Result<Vec<ArchivedRecord>, AccountError> {
        if !staff.has(Role::Finance) {
            return Err(AccountError::Forbidden("The finance archive is for the finance role.".into()));
        }
        let rows = sqlx::query(
            "SELECT id, kind, record, data, country, archived_at FROM finance_archive ORDER BY id DESC LIMIT 1000",
        )
        .fetch_all(self.db.pool())
        .await?;
        self.audit
            .record(&staff.actor(), "finance_archive.read", None, None, serde_json::json!({ "records": rows.len() }))
            .await?;
        rows.iter()
            .map(|r| {
                let data: String = r.try_get("data")?;
                Ok(ArchivedRecord {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    record: r.try_get("record")?,
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                    country: r.try_get("country")?,
                    archived_at: from_millis(r.try_get("archived_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

/// The finance archive's share of an eraser of `kind` (`invoice`, `payment`):
/// records kept past an account's erasure for tax law, detached from it,
/// erased when their country's period ends.
pub async fn archived_candidates(db: &Db, kind: &str, cutoff: OffsetDateTime) -> Result<Vec<Candidate>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, country, start_at FROM finance_archive WHERE kind = $1 AND start_at <= $2")
        .bind(kind)
        .bind(to_millis(cutoff))
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Candidate {
                record: format!("archive:{}", r.try_get::<i64, _>("id")?),
                subject: None,
                start: from_millis(r.try_get("start_at")?),
                country: r.try_get("country")?,
            })
        })
        .collect()
}

/// Erases an archived record named by [`archived_candidates`]; `None` when
/// `record` is not an archive record.
pub async fn erase_archived(db: &Db, kind: &str, record: &str) -> Result<Option<u64>, sqlx::Error> {
    let Some(id) = record.strip_prefix("archive:").and_then(|s| s.parse::<i64>().ok()) else { return Ok(None) };
    let done = sqlx::query("DELETE FROM finance_archive WHERE id = $1 AND kind = $2")
        .bind(id)
        .bind(kind)
        .execute(db.pool())
        .await?;
    Ok(Some(done.rows_affected()))
}

/// The census of live records (`live`: a query of `n` and `oldest`) and
/// archived ones of `kind`, together.
pub async fn census_with_archive(db: &Db, live: &'static str, kind: &str) -> Result<Census, sqlx::Error> {
    let a = sqlx::query(live).fetch_one(db.pool()).await?;
    let b = sqlx::query("SELECT COUNT(*) AS n, MIN(start_at) AS oldest FROM finance_archive WHERE kind = $1")
        .bind(kind)
        .fetch_one(db.pool())
        .await?;
    let (na, nb): (i64, i64) = (a.try_get("n")?, b.try_get("n")?);
    let oldest =
        [a.try_get::<Option<i64>, _>("oldest")?, b.try_get::<Option<i64>, _>("oldest")?].into_iter().flatten().min();
    Ok(Census { live: u64::try_from(na + nb).unwrap_or(0), oldest: oldest.map(from_millis) })
}

/// Invoices, live and archived, erased when their country's legal period ends.
pub struct InvoiceEraser {
    pub db: Db,
}

impl Eraser for InvoiceEraser {
    fn category(&self) -> &'static str {
        "invoice"
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let live = sqlx::query("SELECT id, account_id, country, issued_at FROM invoices WHERE issued_at <= $1")
                .bind(to_millis(cutoff))
                .fetch_all(self.db.pool())
                .await?;
            for r in &live {
                out.push(Candidate {
                    record: format!("invoice:{}", r.try_get::<String, _>("id")?),
                    subject: r.try_get::<Option<String>, _>("account_id")?.map(|a| crate::service::subject_of(&a)),
                    start: from_millis(r.try_get("issued_at")?),
                    country: r.try_get("country")?,
                });
            }
            out.extend(archived_candidates(&self.db, "invoice", cutoff).await?);
            Ok(out)
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(async move {
            let mut n = 0;
            for c in records {
                if let Some(id) = c.record.strip_prefix("invoice:") {
                    n += sqlx::query("DELETE FROM invoices WHERE id = $1")
                        .bind(id)
                        .execute(self.db.pool())
                        .await?
                        .rows_affected();
                } else if let Some(done) = erase_archived(&self.db, "invoice", &c.record).await? {
                    n += done;
                }
            }
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(async move {
            let live = "SELECT COUNT(*) AS n, MIN(issued_at) AS oldest FROM invoices";
            Ok(census_with_archive(&self.db, live, "invoice").await?)
        })
    }
}
