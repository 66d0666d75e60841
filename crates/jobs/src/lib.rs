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

pub use queue::{Job, JobStatus, NewJob, Queue, QueueStats};
pub use runner::{Handler, HandlerFuture, Runner};
pub use schedule::{Schedule, ScheduleError, Scheduler};

/// Errors of the job system.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] seldesk_store::StoreError),
    #[error("job queue query failed: {0}")]
    Query(#[from] sqlx::Error),
}
