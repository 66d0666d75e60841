use std::sync::Arc;

use seldesk_domain::Clock;
use seldesk_store::{Backend, Db, from_millis, to_millis};
use sqlx::Row;
use time::{Duration, OffsetDateTime};

use crate::JobError;

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub payload: serde_json::Value,
    /// Jobs with the same key are enqueued once, ever (until purged).
    pub dedupe_key: Option<String>,
    pub run_at: Option<OffsetDateTime>,
    pub priority: i64,
    pub max_attempts: i64,
    /// The node that runs it (by its name); None: any node.
    pub node: Option<String>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            payload: serde_json::Value::Object(Default::default()),
            dedupe_key: None,
            run_at: None,
            priority: 0,
            max_attempts: 5,
            node: None,
        }
    }

    /// Only node `name` runs this job (a job about its databases).
    pub fn on_node(mut self, name: impl Into<String>) -> Self {
        self.node = Some(name.into());
        self
    }

    /// Any payload: for the scheduler, whose jobs carry their schedule's
    /// name and fire time whatever their kind.
    pub(crate) fn payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }

    /// A job of `P`'s kind carrying `payload`: the kind and the payload's
    /// shape are declared once, by the crate that handles the job.
    pub fn of<P: JobPayload>(payload: &P) -> Self {
        let mut job = Self::new(P::KIND);
        // A payload is a plain struct of ids: it always serializes.
        job.payload = serde_json::to_value(payload).unwrap_or_default();
        job
    }

    pub fn dedupe(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    pub fn run_at(mut self, at: OffsetDateTime) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn max_attempts(mut self, n: i64) -> Self {
        self.max_attempts = n.max(1);
        self
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
}

impl JobStatus {
    fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => Self::Queued,
        }
    }
}

/// A claimed or inspected job.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub payload: serde_json::Value,
    pub dedupe_key: Option<String>,
    pub status: JobStatus,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: OffsetDateTime,
    pub last_error: Option<String>,
}

impl Job {
    /// The payload as the type its kind declares.
    pub fn payload_as<P: JobPayload>(&self) -> Result<P, crate::JobFailure> {
        if self.kind != P::KIND {
            return Err(crate::JobFailure::Payload {
                kind: self.kind.clone(),
                why: format!("a {} job was read as a {} job", self.kind, P::KIND),
            });
        }
        serde_json::from_value(self.payload.clone())
            .map_err(|e| crate::JobFailure::Payload { kind: self.kind.clone(), why: e.to_string() })
    }
}

/// The payload of one kind of job, declared by the crate that handles it.
pub trait JobPayload: serde::Serialize + serde::de::DeserializeOwned {
    /// The job kind, e.g. `account.erase`.
    const KIND: &'static str;
}

/// Counts of jobs by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

/// The durable queue.
#[derive(Debug, Clone)]
pub struct Queue {
    db: Db,
    clock: Arc<dyn Clock>,
    /// This node's name: its workers also take the jobs named for it.
    node: Option<Arc<str>>,
}

const COLUMNS: &str = "id, kind, payload, dedupe_key, status, attempts, max_attempts, run_at, last_error";

fn job_from_row(row: &sqlx::any::AnyRow) -> Result<Job, sqlx::Error> {
    let payload: String = row.try_get("payload")?;
    let status: String = row.try_get("status")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        dedupe_key: row.try_get("dedupe_key")?,
        status: JobStatus::parse(&status),
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        run_at: from_millis(row.try_get("run_at")?),
        last_error: row.try_get("last_error")?,
    })
}

/// Delay before retry `attempt` (1-based): 10 s, 20 s, 40 s … capped at 1 hour.
pub fn backoff(attempt: i64) -> Duration {
    let exp = u32::try_from(attempt.clamp(1, 20) - 1).unwrap_or(0);
    Duration::seconds((10i64 << exp).min(3600))
}

impl Queue {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock, node: None }
    }

    /// The queue as node `name` sees it: its workers take jobs for any
    /// node and jobs named for it; without a name, only jobs for any node.
    pub fn for_node(mut self, name: &str) -> Self {
        self.node = Some(Arc::from(name));
        self
    }

    /// This node's name, if the queue has one.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Enqueues a job. Returns its id, or `None` when a job with the same
    /// dedupe key exists already.
    pub async fn enqueue(&self, job: NewJob) -> Result<Option<i64>, JobError> {
        let now = self.clock.now();
        let row = sqlx::query(
            "INSERT INTO jobs (kind, payload, dedupe_key, priority, max_attempts, run_at, created_at, node)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (dedupe_key) DO NOTHING
             RETURNING id",
        )
        .bind(&job.kind)
        .bind(job.payload.to_string())
        .bind(&job.dedupe_key)
        .bind(job.priority)
        .bind(job.max_attempts)
        .bind(to_millis(job.run_at.unwrap_or(now)))
        .bind(to_millis(now))
        .bind(job.node.clone())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("id")?),
            None => None,
        })
    }

    /// Claims the next due job for `worker`, holding it for `lease`. A job
    /// whose previous holder's lease ran out (a crashed node) is due again.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Job>, JobError> {
        self.claim_kinds(worker, lease, None).await
    }

    /// As [`Queue::claim`], only among jobs of the given kinds (a worker
    /// that runs some kinds only, such as the upgrade service's).
    pub async fn claim_kinds(
        &self,
        worker: &str,
        lease: Duration,
        kinds: Option<&[String]>,
    ) -> Result<Option<Job>, JobError> {
        let now = self.clock.now();
        let mut only = match kinds {
            Some([]) => return Ok(None),
            // Placeholders only; the kinds are bound.
            Some(k) => {
                format!(" AND kind IN ({})", (4..4 + k.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", "))
            }
            None => String::new(),
        };
        let node_at = 4 + kinds.map_or(0, <[String]>::len);
        match self.node {
            Some(_) => only.push_str(&format!(" AND (node IS NULL OR node = ${node_at})")),
            None => only.push_str(" AND node IS NULL"),
        }
        let lock = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, locked_until = $2
             WHERE id = (SELECT id FROM jobs
                         WHERE ((status = 'queued' AND run_at <= $3) OR (status = 'running' AND locked_until < $3)){only}
                         ORDER BY priority DESC, run_at, id LIMIT 1{lock})
             RETURNING {COLUMNS}"
        );
        let mut q =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(worker).bind(to_millis(now + lease)).bind(to_millis(now));
        for k in kinds.unwrap_or_default() {
            q = q.bind(k.clone());
        }
        if let Some(node) = &self.node {
            q = q.bind(node.to_string());
        }
        let row = q.fetch_optional(self.db.pool()).await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    /// Marks a claimed job done.
    pub async fn complete(&self, job: &Job, worker: &str) -> Result<(), JobError> {
        sqlx::query(
            "UPDATE jobs SET status = 'done', finished_at = $1, locked_by = NULL, locked_until = NULL, last_error = NULL
             WHERE id = $2 AND locked_by = $3",
        )
        .bind(to_millis(self.clock.now()))
        .bind(job.id)
        .bind(worker)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Records a failure: retried after a backoff, or failed for good after
    /// `max_attempts`. Returns the new status.
    pub async fn fail(&self, job: &Job, worker: &str, error: &str) -> Result<JobStatus, JobError> {
        let now = self.clock.now();
        let (status, run_at) = if job.attempts >= job.max_attempts {
            ("failed", job.run_at)
        } else {
            ("queued", now + backoff(job.attempts))
        };
        sqlx::query(
            "UPDATE jobs SET status = $1, run_at = $2, last_error = $3, locked_by = NULL, locked_until = NULL,
                 finished_at = CASE WHEN $1 = 'failed' THEN $4 ELSE NULL END
             WHERE id = $5 AND locked_by = $6",
        )
        .bind(status)
        .bind(to_millis(run_at))
        .bind(error)
        .bind(to_millis(now))
        .bind(job.id)
        .bind(worker)
        .execute(self.db.pool())
        .await?;
        Ok(JobStatus::parse(status))
    }

    /// A job by id.
    pub async fn get(&self, id: i64) -> Result<Option<Job>, JobError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db.pool()).await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    /// Counts by status.
    pub async fn stats(&self) -> Result<QueueStats, JobError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetch_all(self.db.pool()).await?;
        let mut stats = QueueStats::default();
        for row in rows {
            let status: String = row.try_get("status")?;
            let n: i64 = row.try_get("n")?;
            match JobStatus::parse(&status) {
                JobStatus::Queued => stats.queued = n,
                JobStatus::Running => stats.running = n,
                JobStatus::Done => stats.done = n,
                JobStatus::Failed => stats.failed = n,
            }
        }
        Ok(stats)
    }

    /// Puts back in the queue every job a worker of `node` was running: at
    /// start-up a node's own jobs were interrupted by its stop, and waiting
    /// for their leases to run out would hold them (a moving database
    /// refuses every request meanwhile). Returns how many.
    pub async fn release_node(&self, node: &str) -> Result<u64, JobError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', run_at = $1, locked_by = NULL, locked_until = NULL,
                 last_error = 'interrupted: its node stopped'
             WHERE status = 'running' AND substr(locked_by, 1, length($2)) = $2",
        )
        .bind(to_millis(self.clock.now()))
        .bind(format!("{node}/"))
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Gives the jobs about database `database` that were named for node
    /// `from` (lost) to node `to`, which took the database over: they run
    /// there instead of waiting for a node that will not come back. A job is
    /// about a database when its payload's `database` is its id. Returns how
    /// many.
    pub async fn hand_over(&self, from: &str, to: &str, database: &str) -> Result<u64, JobError> {
        if database.is_empty() || !database.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(0);
        }
        let done = sqlx::query(
            "UPDATE jobs SET node = $1, status = 'queued', locked_by = NULL, locked_until = NULL
             WHERE node = $2 AND status IN ('queued', 'running') AND payload LIKE $3",
        )
        .bind(to)
        .bind(from)
        .bind(format!("%\"database\":\"{database}\"%"))
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes finished jobs older than `older_than`; returns how many.
    pub async fn purge_finished(&self, older_than: Duration) -> Result<u64, JobError> {
        let cutoff = to_millis(self.clock.now() - older_than);
        let done = sqlx::query("DELETE FROM jobs WHERE status IN ('done', 'failed') AND finished_at < $1")
            .bind(cutoff)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::seconds(10));
        assert_eq!(backoff(2), Duration::seconds(20));
        assert_eq!(backoff(4), Duration::seconds(80));
        assert_eq!(backoff(30), Duration::seconds(3600));
    }
}
