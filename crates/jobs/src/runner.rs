use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use time::Duration;
use tokio::sync::watch;

use crate::{Job, JobFailure, JobStatus, Queue, Scheduler};

/// The future a handler returns: a summary for the log, or why it failed.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<String, JobFailure>> + Send + 'a>>;

/// Executes jobs of one kind.
pub trait Handler: Send + Sync {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a>;
}

impl<F> Handler for F
where
    F: for<'a> Fn(&'a Job) -> HandlerFuture<'a> + Send + Sync,
{
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        self(job)
    }
}

/// Runs jobs and schedules until told to stop.
#[derive(Clone)]
pub struct Runner {
    queue: Queue,
    scheduler: Option<Scheduler>,
    handlers: HashMap<String, Arc<dyn Handler>>,
    worker: String,
    lease: Duration,
    poll: StdDuration,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("worker", &self.worker).field("kinds", &self.handlers.keys()).finish()
    }
}

impl Runner {
    pub fn new(queue: Queue, worker: impl Into<String>) -> Self {
        Self {
            queue,
            scheduler: None,
            handlers: HashMap::new(),
            worker: worker.into(),
            lease: Duration::minutes(30),
            poll: StdDuration::from_millis(500),
        }
    }

    pub fn with_scheduler(mut self, scheduler: Scheduler) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    pub fn poll_interval(mut self, poll: StdDuration) -> Self {
        self.poll = poll;
        self
    }

    /// Registers the handler of a job kind.
    pub fn handle(mut self, kind: &str, handler: impl Handler + 'static) -> Self {
        self.handlers.insert(kind.to_string(), Arc::new(handler));
        self
    }

    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// Claims and runs one due job. Returns false when none was due.
    pub async fn run_once(&self) -> Result<bool, crate::JobError> {
        let kinds: Vec<String> = self.handlers.keys().cloned().collect();
        // A job of a kind no handler here runs waits for a node that does
        // (the upgrade service runs apart from the site).
        let Some(job) = self.queue.claim_kinds(&self.worker, self.lease, Some(&kinds)).await? else {
            return Ok(false);
        };
        let outcome = match self.handlers.get(&job.kind) {
            Some(handler) => handler.run(&job).await,
            None => Err(JobFailure::NoHandler(job.kind.clone())),
        };
        match outcome {
            Ok(summary) => {
                tracing::info!(job = job.id, kind = %job.kind, %summary, "job done");
                metrics::counter!("seldesk_jobs_total", "kind" => job.kind.clone(), "outcome" => "done").increment(1);
                self.queue.complete(&job, &self.worker).await?;
            }
            Err(error) => {
                let status = self.queue.fail(&job, &self.worker, &error.to_string()).await?;
                let outcome = if status == JobStatus::Failed { "failed" } else { "retry" };
                tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempts, %error, outcome, "job failed");
                metrics::counter!("seldesk_jobs_total", "kind" => job.kind.clone(), "outcome" => outcome).increment(1);
            }
        }
        Ok(true)
    }

    /// Runs until `shutdown` turns true. A job in flight when the signal comes
    /// is finished before this returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut last_tick = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Some(scheduler) = &self.scheduler {
                // Schedules fire at minute granularity: one tick per minute suffices.
                let minute = self.queue.clock().now().unix_timestamp() / 60;
                if last_tick != Some(minute) {
                    match scheduler.tick().await {
                        Ok(_) => last_tick = Some(minute),
                        Err(e) => tracing::warn!(error = %e, "schedule tick failed"),
                    }
                }
            }
            let worked = match self.run_once().await {
                Ok(worked) => worked,
                Err(e) => {
                    tracing::warn!(error = %e, "job queue unavailable");
                    false
                }
            };
            if !worked {
                tokio::select! {
                    _ = tokio::time::sleep(self.poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        tracing::info!(worker = %self.worker, "job runner stopped");
    }
}
