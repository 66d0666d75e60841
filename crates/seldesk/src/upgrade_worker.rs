//! The Database Upgrade service's own process (UPG-4): `seldesk
//! upgrade-worker` takes upgrade jobs from the control plane's queue and
//! works only in the service's storage, under resource limits. It opens no
//! production key (vault, blobs, audit) and no customer database. `seldesk
//! serve` starts one as a child process by default and restarts it when it
//! dies; on other machines operators run it themselves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use seldesk_domain::{Clock, Policy, SystemClock};
use seldesk_jobs::{Handler, HandlerFuture, Job, Queue, Runner};
use seldesk_privacy::ErasureLog;
use seldesk_upgrades::{Isolation, UpgradeError, UpgradeFiles, UpgradeWorker};
use tokio::sync::watch;

use crate::config::Config;

/// Exit code of a worker that stopped a runaway upgrade: the process ends
/// so that its work ends too, and the supervisor starts a fresh one.
pub const EXIT_TIMED_OUT: i32 = 75;

/// The limits one worker process runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_mb: u64,
    pub file_mb: u64,
    pub time: Duration,
}

impl Limits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            memory_mb: config.upgrades.memory_limit_mb,
            file_mb: config.upgrades.file_limit_mb,
            time: Duration::from_secs(config.upgrades.time_limit_secs.max(1)),
        }
    }

    /// Applies the memory and file-size limits to this process, through the
    /// kernel: an upload that would need more fails, it does not take the
    /// machine with it (the process of one upgrade, `seldesk upgrade-run`).
    pub fn apply(&self) -> Result<(), std::io::Error> {
        let mb = |n: u64| n.saturating_mul(1024 * 1024);
        rlimit::setrlimit(rlimit::Resource::AS, mb(self.memory_mb), mb(self.memory_mb))?;
        rlimit::setrlimit(rlimit::Resource::FSIZE, mb(self.file_mb), mb(self.file_mb))?;
        Ok(())
    }
}

struct RunUpgrade {
    worker: UpgradeWorker,
}

impl Handler for RunUpgrade {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let id = job.payload_as::<seldesk_upgrades::UpgradeJob>()?.id;
            match self.worker.run(&id).await {
                Ok(summary) => Ok(summary),
                Err(UpgradeError::TimedOut(secs)) => {
                    tracing::error!(request = %id, secs, "an upgrade ran past its time limit: the worker ends");
                    std::process::exit(EXIT_TIMED_OUT);
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// Runs the worker until SIGTERM or Ctrl-C.
pub async fn run(
    config: Config,
    policy: Policy,
    name: String,
    limits: Limits,
    exit_with_parent: bool,
) -> anyhow::Result<()> {
    let storage_root: PathBuf = config.upgrade_storage();
    std::fs::create_dir_all(&storage_root)?;
    let db = crate::app::open_db(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let worker = UpgradeWorker::new(
        db.clone(),
        clock.clone(),
        Arc::new(policy),
        crate::app::upgrade_storage(&config)?,
        ErasureLog::new(db.clone(), clock.clone()),
    )
    .with_time_limit(limits.time)
    .with_isolation(Isolation {
        program: std::env::current_exe()?,
        key_file: config.upgrade_key_file(),
        memory_mb: limits.memory_mb,
        file_mb: limits.file_mb,
    });
    let queue = Queue::new(db.clone(), clock);
    let released = queue.release_node(&name).await?;
    if released > 0 {
        tracing::info!(released, "resumed the upgrades this worker was running when it stopped");
    }
    let runner = Runner::new(queue, format!("{name}/{}", std::process::id()))
        // A dedicated process: a shorter poll starts an upgrade sooner.
        .poll_interval(Duration::from_millis(config.jobs.poll_ms.clamp(1, 200)))
        .handle(seldesk_upgrades::JOB_UPGRADE, RunUpgrade { worker });
    let (stop, rx) = watch::channel(false);
    if exit_with_parent {
        // The parent holds the other end of stdin: EOF means it is gone,
        // however it ended. Work in flight cannot outlive it either.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            tracing::warn!("the server that started this upgrade worker is gone: stopping");
            std::process::exit(0);
        });
    }
    tokio::spawn(async move {
        crate::cli::shutdown_signal().await;
        let _ = stop.send(true);
    });
    tracing::info!(
        storage = %storage_root.display(),
        memory_mb = limits.memory_mb,
        file_mb = limits.file_mb,
        time_limit_s = limits.time.as_secs(),
        "upgrade worker is running"
    );
    runner.run(rx).await;
    db.close().await;
    Ok(())
}

/// One upgrade in a process of its own (`seldesk upgrade-run`, started by
/// the worker): sets its limits first, then works on files only, telling
/// the worker its progress and outcome on standard output.
pub fn run_one(files: &UpgradeFiles, key_file: &std::path::Path, limits: Limits) -> std::process::ExitCode {
    use std::io::Write;
    if let Err(e) = limits.apply() {
        println!("error cannot set the upgrade's resource limits: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let cipher = match seldesk_blob::load_or_create_key(key_file) {
        Ok(c) => c,
        Err(e) => {
            println!("error {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The import and export code of customer databases, on the work folder only.
    let tenants = seldesk_tenants::TenantFiles::new(files.work.parent().unwrap_or(&files.work));
    let progress = |p: i64| {
        println!("progress {p}");
        let _ = std::io::stdout().flush();
    };
    match seldesk_upgrades::upgrade_files(&tenants, files, Some(&cipher), &progress) {
        Ok(report) => {
            println!("report {report}");
            std::process::ExitCode::SUCCESS
        }
        Err(message) => {
            println!("error {}", message.replace('\n', " "));
            std::process::ExitCode::FAILURE
        }
    }
}
