//! Durable jobs and once-per-cluster schedules on the control-plane database.
//!
//! - [`Queue`]: enqueue with an optional dedupe key, claim atomically with a
//!   lease (a crashed worker's job is claimed again when its lease ends),
//!   retry with exponential backoff, give up after `max_attempts`.
//! - [`Scheduler`]: cron schedules from configuration. Every node enqueues
//!   `name@fire-time` with the dedupe key, so each fire runs once per cluster.
//! - [`Runner`]: workers that execute jobs by kind and stop gracefully.

mod queue;
mod runner;
mod schedule;

pub use queue::{Job, JobPayload, JobStatus, NewJob, Queue, QueueStats};
pub use runner::{Handler, HandlerFuture, Runner};
pub use schedule::{Schedule, ScheduleError, Scheduler};

/// Job kind: delete finished jobs past `jobs.keep_finished_days`.
pub const JOB_PURGE: &str = "jobs.purge";

/// Errors of the job system.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] seldesk_store::StoreError),
    #[error("job queue query failed: {0}")]
    Query(#[from] sqlx::Error),
}

impl seldesk_domain::Failure for JobError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        seldesk_domain::ErrorKind::Internal
    }
}

/// Why a job handler did not finish; recorded on the job (identifiers
/// only, never personal data) and the job retried until its attempts end.
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    /// The payload is not what the job's kind declares.
    #[error("the {kind} job's payload is not valid: {why}")]
    Payload { kind: String, why: String },
    /// No handler of the kind runs on this node.
    #[error("no handler for job kind `{0}` on this node")]
    NoHandler(String),
    /// The work itself failed; its error is kept as the source.
    #[error(transparent)]
    Work(Box<dyn std::error::Error + Send + Sync>),
}

impl JobFailure {
    /// A failure of the work from any error (a task that panicked, say).
    pub fn work(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Work(e.into())
    }
}

impl<E: seldesk_domain::Failure> From<E> for JobFailure {
    fn from(e: E) -> Self {
        Self::Work(Box::new(e))
    }
}
