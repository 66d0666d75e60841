//! Wiring: builds the control plane, the web and admin listeners and the job
//! runner from a [`Config`], runs them, and stops them gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use seldesk_domain::{Clock, Policy};
use seldesk_jobs::{Job, Queue, Runner, Schedule, Scheduler};
use seldesk_store::Db;
use seldesk_web::AppState;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;

/// Job kind: delete finished jobs past `jobs.keep_finished_days`.
pub const JOB_PURGE: &str = "jobs.purge";

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] seldesk_store::StoreError),
    #[error("cannot create the data folder {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr}: {source} (is another program using the port? choose another with --listen / --admin-listen)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid schedule: {0}")]
    Schedule(#[from] seldesk_jobs::ScheduleError),
}

/// A running Seldesk node.
pub struct Application {
    web_addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    db: Db,
    queue: Queue,
}

/// Opens the control plane and applies migrations.
pub async fn open_db(config: &Config) -> Result<Db, StartError> {
    std::fs::create_dir_all(&config.data).map_err(|source| StartError::DataDir {
        path: config.data.display().to_string(),
        source,
    })?;
    let db = Db::connect(&config.database_url()).await?;
    db.migrate().await?;
    Ok(db)
}

fn runner(
    config: &Config,
    queue: &Queue,
    db: &Db,
    worker: String,
    schedules_here: bool,
) -> Result<Runner, StartError> {
    let schedules = config
        .schedules
        .iter()
        .map(|(name, s)| Schedule::parse(name, &s.job, &s.cron))
        .collect::<Result<Vec<_>, _>>()?;
    let purge = PurgeJobs {
        queue: queue.clone(),
        keep: time::Duration::days(i64::from(config.jobs.keep_finished_days)),
    };
    let mut r = Runner::new(queue.clone(), worker)
        .poll_interval(Duration::from_millis(config.jobs.poll_ms))
        .handle(JOB_PURGE, purge);
    if schedules_here {
        r = r.with_scheduler(Scheduler::new(queue.clone(), db.clone(), schedules));
    }
    Ok(r)
}

/// Deletes finished jobs older than the configured age.
struct PurgeJobs {
    queue: Queue,
    keep: time::Duration,
}

impl seldesk_jobs::Handler for PurgeJobs {
    fn run<'a>(&'a self, _job: &'a Job) -> seldesk_jobs::HandlerFuture<'a> {
        Box::pin(async move {
            let n = self
                .queue
                .purge_finished(self.keep)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("purged {n} finished jobs"))
        })
    }
}

impl Application {
    /// Opens everything and binds the listeners (port 0 picks a free port).
    pub async fn build(
        config: Config,
        policy: Policy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let db = open_db(&config).await?;
        let state = AppState {
            policy: Arc::new(policy),
            db: db.clone(),
            clock: clock.clone(),
        };
        let web = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.admin_listen,
                source,
            })?;
        let web_addr = web.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let admin_addr = admin.local_addr().map_err(|source| StartError::Bind {
            addr: config.admin_listen,
            source,
        })?;
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let stop = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let site =
            seldesk_web::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let rx_web = rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(web, site)
                .with_graceful_shutdown(stop(rx_web))
                .await
            {
                tracing::error!(error = %e, "web listener failed");
            }
        }));
        let admin_app = seldesk_web::admin_router(state.clone());
        let rx_admin = rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(admin, admin_app)
                .with_graceful_shutdown(stop(rx_admin))
                .await
            {
                tracing::error!(error = %e, "admin listener failed");
            }
        }));

        let queue = Queue::new(db.clone(), clock);
        let node = format!("{}-{}", web_addr, std::process::id());
        for i in 0..config.jobs.workers {
            // One scheduler per node is enough; dedupe keys make each fire once per cluster.
            let r = runner(&config, &queue, &db, format!("{node}-w{i}"), i == 0)?;
            tasks.push(tokio::spawn(r.run(rx.clone())));
        }
        tracing::info!(%web_addr, %admin_addr, data = %config.data.display(), "seldesk is serving");
        Ok(Self {
            web_addr,
            admin_addr,
            shutdown,
            tasks,
            db,
            queue,
        })
    }

    pub fn web_addr(&self) -> SocketAddr {
        self.web_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// A handle that asks this node to stop.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Waits until every listener and worker has stopped: in-flight requests
    /// and jobs finish first.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.db.close().await;
        tracing::info!("seldesk stopped");
    }

    /// Stops gracefully and waits.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }
}
