//! Retention of applications and employee records: the retention engine asks
//! these stores for due records and erases them, CV files included.

use seldesk_blob::SealedBlobs;
use seldesk_privacy::{BoxFuture, Candidate, Census, Eraser, PrivacyError};
use seldesk_store::{Db, from_millis, to_millis};
use sqlx::Row;

/// Applications whose process ended without a hire: `job_application`
/// (kept for future openings) or, when the applicant objected,
/// `job_application_objected` (erased shortly after the process ends).
pub struct ApplicationEraser {
    db: Db,
    blobs: SealedBlobs,
    objected: bool,
}

impl ApplicationEraser {
    pub fn new(db: Db, blobs: SealedBlobs, objected: bool) -> Self {
        Self { db, blobs, objected }
    }
}

fn blob_err(e: seldesk_blob::BlobError) -> PrivacyError {
    PrivacyError::Misconfigured(format!("cannot erase a CV file: {e}"))
}

impl Eraser for ApplicationEraser {
    fn category(&self) -> &'static str {
        if self.objected { "job_application_objected" } else { "job_application" }
    }

    fn candidates<'a>(&'a self, cutoff: time::OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, closed_at FROM job_applications
                 WHERE closed_at IS NOT NULL AND closed_at <= $1 AND objected = $2 AND stage IN ('rejected', 'withdrawn')
                 ORDER BY closed_at",
            )
            .bind(to_millis(cutoff))
            .bind(i64::from(self.objected))
            .fetch_all(self.db.pool())
            .await?;
            rows.iter()
                .map(|r| {
                    let id: String = r.try_get("id")?;
                    Ok(Candidate {
                        subject: Some(seldesk_domain::Subject::applicant(&id).into_string()),
                        record: format!("application:{id}"),
                        start: from_millis(r.try_get("closed_at")?),
                        country: None,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(async move {
            let mut n = 0;
            for c in records {
                let Some(id) = c.record.strip_prefix("application:") else { continue };
                n += crate::service::erase_application_rows(&self.db, &self.blobs, id).await.map_err(|e| match e {
                    crate::CareerError::Query(q) => PrivacyError::from(q),
                    crate::CareerError::Blob(b) => blob_err(b),
                    other => PrivacyError::Misconfigured(other.to_string()),
                })?;
            }
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(async move {
            let r = sqlx::query(
                "SELECT COUNT(*) AS n, MIN(closed_at) AS oldest FROM job_applications
                 WHERE objected = $1 AND stage IN ('rejected', 'withdrawn')",
            )
            .bind(i64::from(self.objected))
            .fetch_one(self.db.pool())
            .await?;
            Ok(Census {
                live: r.try_get::<i64, _>("n")?.max(0) as u64,
                oldest: r.try_get::<Option<i64>, _>("oldest")?.map(from_millis),
            })
        })
    }
}

/// Employee records: erased the country's legal period after the contract ends.
pub struct EmployeeEraser {
    db: Db,
    blobs: SealedBlobs,
}

impl EmployeeEraser {
    pub fn new(db: Db, blobs: SealedBlobs) -> Self {
        Self { db, blobs }
    }
}

impl Eraser for EmployeeEraser {
    fn category(&self) -> &'static str {
        "employee_record"
    }

    fn candidates<'a>(&'a self, cutoff: time::OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, country, contract_end FROM employees
                 WHERE contract_end IS NOT NULL AND contract_end <= $1 ORDER BY contract_end",
            )
            .bind(to_millis(cutoff))
            .fetch_all(self.db.pool())
            .await?;
            rows.iter()
                .map(|r| {
                    let id: String = r.try_get("id")?;
                    Ok(Candidate {
                        subject: Some(format!("employee:{id}")),
                        record: format!("employee:{id}"),
                        start: from_millis(r.try_get("contract_end")?),
                        country: Some(r.try_get("country")?),
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(async move {
            let mut n = 0;
            for c in records {
                let Some(id) = c.record.strip_prefix("employee:") else { continue };
                let cv: Option<Option<String>> = sqlx::query_scalar("SELECT cv_key FROM employees WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.db.pool())
                    .await?;
                if let Some(Some(key)) = cv {
                    self.blobs.delete(&key).await.map_err(blob_err)?;
                }
                n += sqlx::query("DELETE FROM employees WHERE id = $1")
                    .bind(id)
                    .execute(self.db.pool())
                    .await?
                    .rows_affected();
            }
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(async move {
            let r = sqlx::query("SELECT COUNT(*) AS n, MIN(contract_end) AS oldest FROM employees")
                .fetch_one(self.db.pool())
                .await?;
            Ok(Census {
                live: r.try_get::<i64, _>("n")?.max(0) as u64,
                oldest: r.try_get::<Option<i64>, _>("oldest")?.map(from_millis),
            })
        })
    }
}
