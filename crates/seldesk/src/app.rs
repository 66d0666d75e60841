//! Wiring: builds the services from a [`Config`] and a policy, then the web
//! and admin listeners and the job runner; runs them and stops them
//! gracefully. The CLI uses the same [`Services`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use seldesk_accounts::erasers::{AccessExportEraser, TicketEraser};
use seldesk_accounts::{Accounts, AccountsConfig, Mailer};
use seldesk_domain::{Actor, Clock, Policy};
use seldesk_jobs::{Handler, HandlerFuture, Job, JobFailure, Queue, Runner, Schedule, Scheduler};
use seldesk_privacy::audit::AuditEraser;
use seldesk_privacy::{AuditLog, DisclosureGate, Eraser, ErasureLog, RetentionEngine, TableEraser};
use seldesk_store::Db;
use seldesk_web::AppState;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;

/// Personal-data categories this build stores. Each must have an eraser
/// registered in [`Services::open`], or the node refuses to start.
pub const COLLECTED_CATEGORIES: &[&str] = &[
    "audit_event",
    "disclosure_record",
    "erasure_record",
    "account_contact",
    "helpdesk_ticket",
    "access_export",
    "customer_database",
    "invoice",
    "consent_record",
    "job_application",
    "job_application_objected",
    "browser_event",
    "employee_record",
    "upgrade_upload",
    "upgrade_failed_upload",
    "marketing_contact",
    "payment_order",
    "outgoing_mail",
    "idle_account",
];

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] seldesk_store::StoreError),
    #[error(transparent)]
    Privacy(#[from] seldesk_privacy::PrivacyError),
    #[error("cannot create the data folder {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(
        "cannot listen on {addr}: {source} (is another program using the port? choose another with --listen / --admin-listen)"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("invalid schedule: {0}")]
    Schedule(#[from] seldesk_jobs::ScheduleError),
    #[error("mail: {0}")]
    Mail(String),
    #[error("blob store: {0}")]
    Blobs(String),
    #[error("{0}")]
    Geo(String),
    #[error("backups: {0}")]
    Vault(String),
    #[error("billing: {0}")]
    Billing(String),
    #[error("{0}")]
    Io(String),
    #[error("jobs: {0}")]
    Jobs(#[from] seldesk_jobs::JobError),
    #[error("customer databases: {0}")]
    Tenants(#[from] seldesk_tenants::TenantError),
    #[error("cookies: {0}")]
    Cookies(#[from] seldesk_web::cookies::RegistryMismatch),
}

/// A store of objects at `location`: a folder (or `file://` URL) or a
/// bucket (`s3://…`, `gs://…`).
fn object_store_at(location: &str) -> Result<seldesk_blob::BlobStore, String> {
    if location.starts_with("s3://") || location.starts_with("gs://") {
        seldesk_blob::BlobStore::bucket(location).map_err(|e| e.to_string())
    } else if location.contains("://") && !location.starts_with("file://") {
        Err(format!(
            "`{}`: give a folder, a file:// URL, s3://bucket or gs://bucket",
            seldesk_store::redact_url(location)
        ))
    } else {
        Ok(seldesk_blob::BlobStore::local(location.strip_prefix("file://").unwrap_or(location)))
    }
}

/// The encrypted blob store for CVs and uploads: a folder (default
/// `<data>/blobs`) or a bucket (`s3://…`, `gs://…`, every node reaching the
/// same one), with its key in `<data>/keys/blobs.key`, apart from the blobs.
fn open_blobs(config: &Config) -> Result<seldesk_blob::SealedBlobs, StartError> {
    let store = object_store_at(&config.blobs()).map_err(StartError::Blobs)?;
    seldesk_blob::SealedBlobs::open(store, &config.data.join("keys").join("blobs.key"))
        .map_err(|e| StartError::Blobs(e.to_string()))
}

/// The upgrade service's storage: work folders under `upgrades.storage`,
/// uploads and results where `upgrades.objects` says, sealed with the
/// service's own key.
pub fn upgrade_storage(config: &Config) -> Result<seldesk_upgrades::UpgradeStorage, StartError> {
    let mut storage = seldesk_upgrades::UpgradeStorage::at(config.upgrade_storage());
    if let Some(location) = config.upgrade_objects() {
        let objects = object_store_at(&location).map_err(|e| StartError::Io(format!("upgrades.objects: {e}")))?;
        storage = storage.with_objects(objects);
    }
    storage.sealed_with(&config.upgrade_key_file()).map_err(|e| StartError::Io(format!("upgrade service: {e}")))
}

/// Opens the control plane and applies migrations.
pub async fn open_db(config: &Config) -> Result<Db, StartError> {
    std::fs::create_dir_all(&config.data)
        .map_err(|source| StartError::DataDir { path: config.data.display().to_string(), source })?;
    let db = Db::connect(&config.database_url()).await?;
    db.migrate().await?;
    Ok(db)
}

/// Everything the web layer, the jobs and the CLI work with.
#[derive(Clone)]
pub struct Services {
    pub policy: Arc<Policy>,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub queue: Queue,
    pub audit: AuditLog,
    pub erasure_log: ErasureLog,
    pub disclosures: DisclosureGate,
    pub retention: RetentionEngine,
    pub accounts: Accounts,
    pub databases: seldesk_tenants::Databases,
    pub careers: seldesk_careers::Careers,
    pub visit_aggregates: seldesk_visits::aggregate::Aggregates,
    pub upgrades: seldesk_upgrades::Upgrades,
    pub marketing: seldesk_marketing::Marketing,
    pub backups: seldesk_vault::Backups,
    pub billing: seldesk_billing::Billing,
}

/// The services that erase and report on personal data, without the vault
/// or the payment processor: what `seldesk retention` opens (it reads no
/// vault key and makes none).
pub struct Core {
    pub policy: Arc<Policy>,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub queue: Queue,
    pub audit: AuditLog,
    pub erasure_log: ErasureLog,
    pub disclosures: DisclosureGate,
    pub retention: RetentionEngine,
    pub accounts: Accounts,
    pub marketing: seldesk_marketing::Marketing,
    pub careers: seldesk_careers::Careers,
    pub upgrades: seldesk_upgrades::Upgrades,
    tenant_files: seldesk_tenants::TenantFiles,
    open_databases: seldesk_tenants::OpenDatabases,
    mailer: Mailer,
    node_name: String,
    public_url: String,
}

impl Core {
    /// Opens the control plane and builds the services that hold personal
    /// data; refuses to start when a stored personal category has no eraser.
    pub async fn open(
        config: &Config,
        policy: Policy,
        clock: Arc<dyn Clock>,
        public_url: String,
    ) -> Result<Self, StartError> {
        let db = open_db(config).await?;
        let policy = Arc::new(policy);
        let regions = config.node.regions(&policy).map_err(|e| StartError::Io(e.to_string()))?;
        let tenant_files = seldesk_tenants::TenantFiles::new(&config.data).serving(regions);
        let open_databases =
            seldesk_tenants::OpenDatabases::new(tenant_files.clone(), config.databases.open_settings());
        let blobs = open_blobs(config)?;
        let exports_dir = config.data.join("exports");
        let upgrade_storage = upgrade_storage(config)?;
        let erasers: Vec<Arc<dyn Eraser>> = vec![
            Arc::new(AuditEraser { db: db.clone() }),
            Arc::new(TableEraser::new(db.clone(), "disclosure_record", "disclosures", true)),
            Arc::new(TableEraser::new(db.clone(), "erasure_record", "erasure_log", false)),
            Arc::new(TableEraser::new(db.clone(), "consent_record", "consents", true)),
            Arc::new(seldesk_careers::ApplicationEraser::new(db.clone(), blobs.clone(), false)),
            Arc::new(seldesk_careers::ApplicationEraser::new(db.clone(), blobs.clone(), true)),
            Arc::new(seldesk_careers::EmployeeEraser::new(db.clone(), blobs.clone())),
            Arc::new(seldesk_upgrades::UpgradeEraser::new(db.clone(), upgrade_storage.clone(), false)),
            Arc::new(seldesk_upgrades::UpgradeEraser::new(db.clone(), upgrade_storage.clone(), true)),
            Arc::new(seldesk_visits::VisitEraser::new(
                seldesk_visits::VisitStore::for_node(&config.data, &db),
                db.clone(),
                clock.clone(),
            )),
            Arc::new(TicketEraser { db: db.clone() }),
            Arc::new(AccessExportEraser { db: db.clone(), archives: blobs.clone(), exports_dir: exports_dir.clone() }),
            Arc::new(seldesk_accounts::finance::InvoiceEraser { db: db.clone() }),
            Arc::new(seldesk_billing::PaymentEraser { db: db.clone() }),
            Arc::new(seldesk_tenants::service::DatabaseEraser {
                db: db.clone(),
                files: tenant_files.clone(),
                open: open_databases.clone(),
                queue: Queue::new(db.clone(), clock.clone()),
            }),
        ];
        let (audit_key, _) =
            seldesk_privacy::audit::AuditKey::load_or_create(&config.data.join("keys").join("audit.key"))?;
        let audit = AuditLog::new(db.clone(), clock.clone(), audit_key);
        // This node by name: the home of the databases it makes, and the
        // node its per-node jobs are for.
        let node_name = config.node.name(&node_id(&config.data)?);
        let queue = Queue::new(db.clone(), clock.clone()).for_node(&node_name);
        let erasure_log = ErasureLog::new(db.clone(), clock.clone());
        let disclosures = DisclosureGate::new(policy.clone(), db.clone(), clock.clone(), audit.clone());
        let mailer = match &config.mail.smtp_url {
            Some(url) => Mailer::smtp(url, config.mail.from.clone())
                .map_err(|e| StartError::Mail(e.to_string()))?
                .with_relay_gate(disclosures.clone()),
            None => Mailer::outbox(config.data.join("mail").join("outbox"), config.mail.from.clone()),
        };
        let marketing = seldesk_marketing::Marketing::new(
            db.clone(),
            clock.clone(),
            policy.clone(),
            audit.clone(),
            disclosures.clone(),
            mailer.clone(),
            queue.clone(),
            seldesk_marketing::MarketingConfig {
                base_url: public_url.clone(),
                transfers_dir: config.data.join("transfers"),
                batch_size: config.marketing.batch_size.max(1),
                batch_pause: Duration::from_millis(config.marketing.batch_pause_ms),
            },
        );
        let mut erasers = erasers;
        erasers.push(Arc::new(seldesk_marketing::MarketingEraser::new(marketing.clone())));
        let careers = seldesk_careers::Careers::new(
            db.clone(),
            clock.clone(),
            policy.clone(),
            audit.clone(),
            erasure_log.clone(),
            blobs.clone(),
            mailer.clone(),
            public_url.clone(),
        );
        let upgrades = seldesk_upgrades::Upgrades::new(
            db.clone(),
            clock.clone(),
            policy.clone(),
            upgrade_storage,
            tenant_files.clone(),
            audit.clone(),
            erasure_log.clone(),
            queue.clone(),
        )
        .with_allowance(seldesk_upgrades::Allowance {
            uploads_per_day: config.upgrades.uploads_per_day,
            bytes_per_day: config.upgrades.upload_mb_per_day.saturating_mul(1_000_000),
        });
        let customer_databases = seldesk_tenants::service::CustomerDatabases {
            db: db.clone(),
            files: tenant_files.clone(),
            open: open_databases.clone(),
            policy: policy.clone(),
            erasure_log: erasure_log.clone(),
        };
        let accounts = Accounts::new(
            db.clone(),
            clock.clone(),
            policy.clone(),
            audit.clone(),
            erasure_log.clone(),
            disclosures.clone(),
            mailer.clone(),
            queue.clone(),
            AccountsConfig {
                base_url: public_url.clone(),
                archives: blobs.clone(),
                exports_dir,
                idle: time::Duration::hours(2),
                absolute: time::Duration::hours(12),
                api_ttl: time::Duration::hours(24),
            },
        )
        .with_store(Arc::new(seldesk_visits::PersonVisits::new(seldesk_visits::VisitStore::for_node(
            &config.data,
            &db,
        ))))
        .with_store(Arc::new(seldesk_marketing::MarketingRecords::new(marketing.clone())))
        .with_store(Arc::new(seldesk_billing::BillingRecords { db: db.clone(), policy: policy.clone() }))
        .with_store(Arc::new(seldesk_privacy::consent::ConsentRecords { db: db.clone() }))
        .with_store(Arc::new(seldesk_vault::RestoreRecords { db: db.clone() }))
        .with_store(Arc::new(customer_databases.clone()))
        .with_store(Arc::new(seldesk_upgrades::UpgradeRecords { upgrades: upgrades.clone() }))
        .with_store(Arc::new(seldesk_careers::ApplicationRecords { careers: careers.clone() }))
        .with_activity(Arc::new(customer_databases))
        .with_activity(Arc::new(seldesk_billing::BillingRecords { db: db.clone(), policy: policy.clone() }));
        // Every table with personal data is erased by exactly one store.
        accounts.check_owners()?;
        erasers.push(Arc::new(seldesk_accounts::lifecycle::AccountEraser { accounts: accounts.clone() }));
        erasers.push(Arc::new(seldesk_accounts::lifecycle::IdleAccountEraser { accounts: accounts.clone() }));
        // First in a run: mail past its period goes before an erasure in the
        // same run writes its receipt.
        erasers.insert(
            0,
            Arc::new(seldesk_accounts::mail::OutboxEraser {
                dir: accounts.mailer().outbox_dir().map(std::path::Path::to_path_buf),
            }),
        );
        let retention = RetentionEngine::new(
            policy.clone(),
            db.clone(),
            clock.clone(),
            audit.clone(),
            erasers,
            COLLECTED_CATEGORIES,
        )?;
        Ok(Self {
            policy,
            db,
            clock,
            queue,
            audit,
            erasure_log,
            disclosures,
            retention,
            accounts,
            marketing,
            careers,
            upgrades,
            tenant_files,
            open_databases,
            mailer,
            node_name,
            public_url,
        })
    }
}

impl Services {
    /// Opens the control plane and builds the services; refuses to start when
    /// a stored personal category has no eraser.
    pub async fn open(
        config: &Config,
        policy: Policy,
        clock: Arc<dyn Clock>,
        public_url: String,
    ) -> Result<Self, StartError> {
        let Core {
            policy,
            db,
            clock,
            queue,
            audit,
            erasure_log,
            disclosures,
            retention,
            accounts,
            marketing,
            careers,
            upgrades,
            tenant_files,
            open_databases,
            mailer,
            node_name,
            public_url,
        } = Core::open(config, policy, clock, public_url).await?;
        let databases = seldesk_tenants::Databases::new(
            db.clone(),
            clock.clone(),
            policy.clone(),
            tenant_files,
            audit.clone(),
            erasure_log.clone(),
            queue.clone(),
        )
        .with_open(open_databases.clone())
        .with_node_name(node_name.clone())
        .with_quotas(seldesk_tenants::Quotas {
            trial_bytes: config.databases.trial_quota_mb.saturating_mul(1_000_000),
            subscribed_bytes: config.databases.subscription_quota_mb.saturating_mul(1_000_000),
            trials_per_account: config.databases.trials_per_account,
        });
        let visit_aggregates = seldesk_visits::aggregate::Aggregates::new(
            db.clone(),
            seldesk_visits::VisitStore::for_node(&config.data, &db),
            u32::try_from(policy.research.min_group_size).unwrap_or(u32::MAX),
        );
        let control_plane = seldesk_vault::service::ControlPlane::from_url(&config.database_url())
            .ok_or_else(|| StartError::Vault("the control plane's URL is neither sqlite:// nor postgres://".into()))?;
        let (backups, key_created) = seldesk_vault::Backups::open(
            &config.data,
            db.clone(),
            clock.clone(),
            policy.clone(),
            audit.clone(),
            databases.clone(),
            control_plane,
            &config.backup_stores,
        )
        .map_err(|e| StartError::Vault(e.to_string()))?;
        let backups = backups.with_queue(queue.clone());
        if key_created {
            tracing::warn!(
                path = %config.data.join("keys").join("vault.key").display(),
                "created the vault's master key: keep a copy somewhere safe and apart from the backups; without it no backup can ever be read"
            );
        }
        let billing = seldesk_billing::Billing::new(
            seldesk_billing::BillingDeps {
                db: db.clone(),
                clock: clock.clone(),
                policy: policy.clone(),
                audit: audit.clone(),
                gate: disclosures.clone(),
                mailer,
                accounts: accounts.clone(),
                databases: databases.clone(),
                base_url: public_url,
            },
            config.billing.clone(),
        )
        .map_err(|e| StartError::Billing(e.to_string()))?;
        Ok(Self {
            billing,
            backups,
            marketing,
            databases,
            careers,
            visit_aggregates,
            upgrades,
            queue,
            erasure_log,
            disclosures,
            accounts,
            audit,
            retention,
            policy,
            db,
            clock,
        })
    }

    /// Records in the audit trail that a changed policy took effect on this
    /// control plane (once per change, whichever node sees it first).
    pub async fn audit_policy(&self) -> Result<(), StartError> {
        let last = self.audit.last_of("policy.loaded").await?;
        let seen = last.as_ref().and_then(|e| e.details.get("fingerprint")).and_then(|v| v.as_str());
        if seen != Some(self.policy.fingerprint.as_str()) {
            self.audit
                .record(
                    &Actor::System,
                    "policy.loaded",
                    None,
                    Some(&self.policy.source_name),
                    serde_json::json!({
                        "fingerprint": self.policy.fingerprint,
                        "version": self.policy.newest_version().effective.to_string(),
                    }),
                )
                .await?;
        }
        // POL-2: account holders hear of each version once, cluster-wide.
        let version = self.policy.newest_version().effective;
        self.queue
            .enqueue(
                seldesk_jobs::NewJob::new(seldesk_accounts::JOB_POLICY_NOTIFY)
                    .dedupe(format!("policy.notify:{version}")),
            )
            .await
            .map_err(|e| StartError::Mail(format!("cannot schedule the policy notice: {e}")))?;
        Ok(())
    }
}

/// Deletes finished jobs older than the configured age.
struct PurgeJobs {
    queue: Queue,
    keep: time::Duration,
}

impl Handler for PurgeJobs {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let n = self.queue.purge_finished(self.keep).await?;
            Ok(format!("purged {n} finished jobs"))
        })
    }
}

/// Applies every retention rule.
struct RunRetention {
    engine: RetentionEngine,
}

impl Handler for RunRetention {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let report = self.engine.run(&Actor::System, false).await?;
            Ok(format!("erased {} records, {} held", report.erased(), report.held()))
        })
    }
}

/// Deactivates ended trials; the grace period then runs as for a cancellation.
struct ExpireTrials {
    databases: seldesk_tenants::Databases,
}

impl Handler for ExpireTrials {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let n = self.databases.expire_trials().await?;
            Ok(format!("{n} unpaid databases deactivated"))
        })
    }
}

/// Tells the dpo role about personal-data requests past their answer date.
struct OverdueRequests {
    accounts: Accounts,
}

impl Handler for OverdueRequests {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let n = self.accounts.alert_overdue_requests().await?;
            Ok(format!("{n} overdue personal-data requests reported"))
        })
    }
}

/// Warns owners of idle accounts before the retention engine erases them.
struct IdleWarnings {
    accounts: Accounts,
}

impl Handler for IdleWarnings {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let n = self.accounts.warn_idle_accounts().await?;
            Ok(format!("{n} owners of idle accounts warned"))
        })
    }
}

/// Removes export archives whose resume window has passed: they are copies
/// of customer data and must not outstay the download.
struct SweepExports {
    databases: seldesk_tenants::Databases,
}

impl Handler for SweepExports {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let files = self.databases.files().clone();
            let n = tokio::task::spawn_blocking(move || {
                files.sweep_all_exports(seldesk_tenants::files::EXPORT_RESUME_WINDOW)
            })
            .await
            .map_err(JobFailure::work)??;
            Ok(format!("{n} export archives removed"))
        })
    }
}

/// Aggregates each finished day of browser data before its raw visits expire.
struct AggregateVisits {
    aggregates: seldesk_visits::aggregate::Aggregates,
    clock: Arc<dyn Clock>,
}

impl Handler for AggregateVisits {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let n = self.aggregates.aggregate_pending(self.clock.now().date()).await?;
            Ok(format!("{n} days of browser data aggregated"))
        })
    }
}

/// E-mails owners whose deactivated database is destroyed within a week (DB-7).
struct RemindDestruction {
    databases: seldesk_tenants::Databases,
    accounts: Accounts,
}

impl Handler for RemindDestruction {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let due = self.databases.due_reminders(time::Duration::days(7)).await?;
            for d in &due {
                let until = d.reactivate_until.map(|u| u.date().to_string()).unwrap_or_default();
                self.accounts
                    .mail_account(
                        &d.account_id,
                        &format!("Your database {} will be destroyed on {until}", d.name),
                        format!(
                            "Your database \"{}\" is deactivated. It will be destroyed on {until}, with its files. Reactivate it before then from your control panel if you want to keep it, or export a full backup first.",
                            d.name
                        ),
                    )
                    .await
                    ?;
                self.databases.mark_reminded(&d.id).await?;
            }
            Ok(format!("{} reminders sent", due.len()))
        })
    }
}

/// Moves a database to another region.
/// Sends campaigns, hands over registrations and referrals, counts trends.
struct MarketingJob {
    marketing: seldesk_marketing::Marketing,
}

impl Handler for MarketingJob {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let m = &self.marketing;
            Ok(match job.kind.as_str() {
                seldesk_marketing::JOB_SEND => {
                    let run = m.run_send_job(&job.payload_as::<seldesk_marketing::SendJob>()?.campaign).await?;
                    format!("{run:?}")
                }
                seldesk_marketing::JOB_TRANSFER => {
                    let t: seldesk_marketing::TransferJob = job.payload_as()?;
                    m.run_transfer(&t.kind, &t.id).await?;
                    "handed over".to_string()
                }
                _ => format!("{} records counted", m.aggregate_trends().await?),
            })
        })
    }
}

/// Charges subscriptions whose period ended; retries failed renewals.
struct RenewJob {
    billing: seldesk_billing::Billing,
}

impl Handler for RenewJob {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let (renewed, failed, lapsed) = self.billing.renew_due().await?;
            Ok(format!("{renewed} renewed, {failed} failed (will retry), {lapsed} lapsed"))
        })
    }
}

/// This node's lasting name (`<data>/node-id`, made on first start): its
/// workers' leases carry it, so a restart knows which jobs were its own.
/// Beats every few seconds until the stop signal; counts the disk used by
/// its databases every minute (a walk of their folders, off the runtime).
async fn heartbeat(
    databases: seldesk_tenants::Databases,
    shipper: Option<seldesk_vault::Shipper>,
    name: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(seldesk_tenants::nodes::HEARTBEAT);
    let mut beats = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let disk = if beats.is_multiple_of(12) {
            let files = databases.files().clone();
            tokio::task::spawn_blocking(move || files.disk_use()).await.ok()
        } else {
            None
        };
        beats += 1;
        match databases.nodes().beat(&name, disk).await {
            Ok(count) => {
                metrics::gauge!("seldesk_node_databases").set(count as f64);
                metrics::gauge!("seldesk_node_heartbeat_timestamp_seconds")
                    .set(time::OffsetDateTime::now_utc().unix_timestamp() as f64);
            }
            Err(e) => tracing::warn!(error = %e, "node heartbeat failed"),
        }
        if let Some(bytes) = disk {
            metrics::gauge!("seldesk_node_disk_bytes").set(bytes as f64);
        }
        // How far behind shipping commits to the backup regions is.
        if let Some(shipper) = &shipper {
            let lag = shipper.lag_ms();
            metrics::gauge!("seldesk_stream_lag_seconds").set(lag as f64 / 1000.0);
            if let Err(e) = databases.nodes().set_stream_lag(&name, lag).await {
                tracing::warn!(error = %e, "could not record the stream's lag");
            }
        }
        // The open databases and how well their writes are grouped.
        let open = databases.open_databases();
        let stats = open.stats();
        metrics::gauge!("seldesk_open_databases").set(open.open_count() as f64);
        metrics::counter!("seldesk_group_commits_total").absolute(stats.commits);
        metrics::counter!("seldesk_group_commit_requests_total").absolute(stats.requests);
        // The moves this node sends.
        let moves = databases.move_stats();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!("seldesk_moves_in_progress").set(get(&moves.in_progress) as f64);
        metrics::counter!("seldesk_move_sent_bytes_total").absolute(get(&moves.sent_bytes));
        metrics::counter!("seldesk_moves_total", "outcome" => "moved").absolute(get(&moves.finished));
        metrics::counter!("seldesk_moves_total", "outcome" => "failed").absolute(get(&moves.failed));
        metrics::gauge!("seldesk_move_last_pause_milliseconds").set(get(&moves.last_pause_ms) as f64);
    }
}

fn node_id(data: &std::path::Path) -> Result<String, StartError> {
    let path = data.join("node-id");
    let io = |e: std::io::Error| StartError::Io(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() && s.trim().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            Ok(s.trim().to_string())
        }
        Ok(_) => Err(StartError::Io(format!("{} does not hold a node name", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::now_v7().simple().to_string();
            std::fs::create_dir_all(data).map_err(io)?;
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, &id).and_then(|()| std::fs::rename(&tmp, &path)).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

/// Backs up every database, or applies snapshot retention.
struct BackupJob {
    backups: seldesk_vault::Backups,
}

impl Handler for BackupJob {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            if job.kind == seldesk_vault::JOB_RESTORE {
                let id = job.payload_as::<seldesk_vault::RestoreJob>()?.restore;
                self.backups.run_owner_restore(&id).await?;
                return Ok(format!("restore {id} done"));
            }
            if job.kind == seldesk_vault::JOB_ANCHOR {
                let a = self.backups.anchor_audit().await?;
                return Ok(format!("audit trail anchored at entry {} in every backup region", a.seq));
            }
            if job.kind == seldesk_vault::JOB_PRUNE {
                let r = self.backups.prune().await?;
                return Ok(format!("{} snapshot(s) and {} pack(s) removed", r.snapshots_removed, r.packs_removed));
            }
            // One database (a new chain of streamed commits), or all of them.
            let only = job.payload_as::<seldesk_vault::BackupJob>()?.database;
            let out = self.backups.run(only.as_deref(), Arc::new(|_, _| {})).await?;
            let failed: Vec<String> =
                out.iter().filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.database))).collect();
            if failed.is_empty() {
                Ok(format!("{} snapshot(s) in every backup region", out.len()))
            } else {
                Err(JobFailure::work(format!(
                    "{} of {} backups failed: {}",
                    failed.len(),
                    out.len(),
                    failed.join("; ")
                )))
            }
        })
    }
}

/// Carries out an upload to the Database Upgrade service.
struct RunUpgrade {
    upgrades: seldesk_upgrades::Upgrades,
}

impl Handler for RunUpgrade {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let id = job.payload_as::<seldesk_upgrades::UpgradeJob>()?.id;
            Ok(self.upgrades.run(&id).await?)
        })
    }
}

struct MoveDatabase {
    databases: seldesk_tenants::Databases,
}

impl Handler for MoveDatabase {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let seldesk_tenants::MoveJob { database: id, region } = job.payload_as()?;
            self.databases.run_move(&id, &region).await?;
            // What is true now, whether this run moved it or found it moved.
            let now = self.databases.find(&id).await.map(|d| d.region).unwrap_or_default();
            Ok(format!("database {id} is in {now}"))
        })
    }
}

/// Removes one database past its grace period, on its home node.
struct ExpireDatabase {
    databases: seldesk_tenants::Databases,
}

impl Handler for ExpireDatabase {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let id = job.payload_as::<seldesk_tenants::ExpireJob>()?.database;
            match self.databases.expire(&id).await? {
                true => Ok(format!("database {id} removed: its grace period was over")),
                false => Ok(format!("database {id} not removed: gone, reactivated or not due")),
            }
        })
    }
}

/// E-mails account holders about the newest policy version.
struct NotifyPolicy {
    accounts: Accounts,
}

impl Handler for NotifyPolicy {
    fn run<'a>(&'a self, _job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let n = self.accounts.notify_policy_version().await?;
            Ok(format!("{n} account holders told about the new policy version"))
        })
    }
}

/// Builds an access archive or erases an account, from a ticket id in the payload.
struct TicketJob {
    accounts: Accounts,
    erase: bool,
}

impl Handler for TicketJob {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            if self.erase {
                let ticket = job.payload_as::<seldesk_accounts::EraseJob>()?.ticket;
                Ok(self.accounts.erase_account(ticket).await?)
            } else {
                let ticket = job.payload_as::<seldesk_accounts::AccessExportJob>()?.ticket;
                self.accounts.build_access_export(ticket).await?;
                Ok(format!("archive built for ticket {ticket}"))
            }
        })
    }
}

fn runner(config: &Config, s: &Services, worker: String, schedules_here: bool) -> Result<Runner, StartError> {
    let schedules = config
        .schedules
        .iter()
        .map(|(name, sc)| Schedule::parse(name, &sc.job, &sc.cron).map(|s| s.per_node(sc.per_node)))
        .collect::<Result<Vec<_>, _>>()?;
    let purge =
        PurgeJobs { queue: s.queue.clone(), keep: time::Duration::days(i64::from(config.jobs.keep_finished_days)) };
    let mut r = Runner::new(s.queue.clone(), worker)
        .poll_interval(Duration::from_millis(config.jobs.poll_ms))
        .handle(seldesk_jobs::JOB_PURGE, purge)
        .handle(seldesk_privacy::JOB_RETENTION, RunRetention { engine: s.retention.clone() })
        .handle(seldesk_accounts::JOB_ACCESS_EXPORT, TicketJob { accounts: s.accounts.clone(), erase: false })
        .handle(seldesk_accounts::JOB_ERASE, TicketJob { accounts: s.accounts.clone(), erase: true })
        .handle(seldesk_accounts::JOB_POLICY_NOTIFY, NotifyPolicy { accounts: s.accounts.clone() })
        .handle(seldesk_tenants::JOB_EXPIRE_TRIALS, ExpireTrials { databases: s.databases.clone() })
        .handle(seldesk_accounts::JOB_OVERDUE_REQUESTS, OverdueRequests { accounts: s.accounts.clone() })
        .handle(seldesk_accounts::lifecycle::JOB_IDLE_WARNINGS, IdleWarnings { accounts: s.accounts.clone() })
        .handle(seldesk_tenants::JOB_SWEEP_EXPORTS, SweepExports { databases: s.databases.clone() })
        .handle(
            seldesk_visits::JOB_VISITS_AGGREGATE,
            AggregateVisits { aggregates: s.visit_aggregates.clone(), clock: s.clock.clone() },
        )
        .handle(seldesk_tenants::service::JOB_MOVE, MoveDatabase { databases: s.databases.clone() })
        .handle(seldesk_tenants::service::JOB_EXPIRE, ExpireDatabase { databases: s.databases.clone() })
        .handle(
            seldesk_tenants::JOB_REMIND,
            RemindDestruction { databases: s.databases.clone(), accounts: s.accounts.clone() },
        )
        .handle(seldesk_marketing::JOB_SEND, MarketingJob { marketing: s.marketing.clone() })
        .handle(seldesk_marketing::JOB_TRANSFER, MarketingJob { marketing: s.marketing.clone() })
        .handle(seldesk_marketing::JOB_TRENDS, MarketingJob { marketing: s.marketing.clone() })
        .handle(seldesk_vault::JOB_BACKUP, BackupJob { backups: s.backups.clone() })
        .handle(seldesk_vault::JOB_PRUNE, BackupJob { backups: s.backups.clone() })
        .handle(seldesk_vault::JOB_ANCHOR, BackupJob { backups: s.backups.clone() })
        .handle(seldesk_vault::JOB_RESTORE, BackupJob { backups: s.backups.clone() })
        .handle(seldesk_billing::JOB_RENEW, RenewJob { billing: s.billing.clone() });
    // Upgrades run apart (UPG-4): only in a test's own process here.
    if config.upgrades.worker == crate::config::UpgradeWorkerMode::Inline {
        r = r.handle(seldesk_upgrades::JOB_UPGRADE, RunUpgrade { upgrades: s.upgrades.clone() });
    }
    if schedules_here {
        r = r.with_scheduler(Scheduler::new(s.queue.clone(), s.db.clone(), schedules));
    }
    Ok(r)
}

/// Resolves when the node is asked to stop (holds no guard across awaits).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Keeps one `seldesk upgrade-worker` child running (the single-node
/// default of the upgrade service, UPG-4): started with the upgrade storage,
/// the control plane and the limits, restarted when it ends, killed when the
/// node stops (a job it was running is released at the next start).
async fn supervise_upgrade_worker(config: Config, name: String, mut stop: watch::Receiver<bool>) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            tracing::error!(error = %e, "cannot find this program to start the upgrade worker: upgrades will wait");
            return;
        }
    };
    let mut pause = Duration::from_secs(1);
    loop {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("upgrade-worker")
            .arg("--data")
            .arg(&config.data)
            .arg("--database-url")
            .arg(config.database_url())
            .arg("--storage")
            .arg(config.upgrade_storage())
            .arg("--key-file")
            .arg(config.upgrade_key_file())
            .arg("--name")
            .arg(&name)
            .arg("--memory-limit-mb")
            .arg(config.upgrades.memory_limit_mb.to_string())
            .arg("--file-limit-mb")
            .arg(config.upgrades.file_limit_mb.to_string())
            .arg("--time-limit-secs")
            .arg(config.upgrades.time_limit_secs.to_string())
            .arg("--exit-with-parent")
            // The pipe closes when this process ends, however it ends: the
            // worker then stops too, never left running alone.
            .stdin(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(policy) = &config.policy {
            cmd.env("SELDESK_POLICY", policy);
        }
        // The child reads no configuration file: everything it needs is above.
        cmd.env_remove("SELDESK_CONFIG");
        let started = std::time::Instant::now();
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the upgrade worker; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stopped(&mut stop) => return,
                }
                pause = (pause * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        tracing::info!(pid = child.id(), "upgrade worker started");
        // Held here, not by `child`: waiting on a child closes its stdin.
        let _lifeline = child.stdin.take();
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(?status, "the upgrade worker ended; starting another");
            }
            _ = stopped(&mut stop) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return;
            }
        }
        // A worker that keeps dying right away is restarted less often.
        pause = if started.elapsed() > Duration::from_secs(60) {
            Duration::from_secs(1)
        } else {
            (pause * 2).min(Duration::from_secs(60))
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

/// Most commits a node holds while its backup regions are slow (beyond, a
/// database's chain of commits ends and begins again: docs/backups.md).
const STREAM_BUFFER: usize = 256 << 20;

/// A running Seldesk node.
pub struct Application {
    web_addr: SocketAddr,
    admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    services: Services,
    visits: seldesk_visits::Recorder,
    config_data: std::path::PathBuf,
    /// Ships the commits of this node's customer databases (continuous protection).
    shipper: Option<seldesk_vault::Shipper>,
}

impl Application {
    /// Opens everything and binds the listeners (port 0 picks a free port).
    pub async fn build(config: Config, policy: Policy, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        seldesk_web::cookies::check(&policy)?;
        let web = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .map_err(|source| StartError::Bind { addr: config.admin_listen, source })?;
        let web_addr = web.local_addr().map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let admin_addr = admin.local_addr().map_err(|source| StartError::Bind { addr: config.admin_listen, source })?;
        // The listener other nodes forward to, with the cluster's secret.
        let internal = match config.node.internal_listen {
            Some(addr) => {
                let Some(file) = &config.node.cluster_secret_file else {
                    return Err(StartError::Io(
                        "node.internal_listen (--internal-listen) needs node.cluster_secret_file (--cluster-secret-file)"
                            .into(),
                    ));
                };
                let secret = std::fs::read_to_string(file)
                    .map_err(|e| StartError::Io(format!("cluster secret {}: {e}", file.display())))?;
                let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
                let bound = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
                let address = config.node.advertise.clone().unwrap_or_else(|| format!("http://{bound}"));
                Some((listener, secret, address))
            }
            None => None,
        };
        let public_url = config.public_url(web_addr);
        // Cookies are Secure whenever the site is public over HTTPS, whatever
        // the setting says; over plain HTTP a session could be read on the way.
        let secure_cookies = config.secure_cookies || public_url.starts_with("https://");
        if !secure_cookies {
            tracing::warn!(
                public_url = %public_url,
                "cookies are not marked Secure: the public URL is not https://; serve the site over HTTPS in production"
            );
        }
        let site_url = public_url.trim_end_matches('/').to_string();
        let services = Services::open(&config, policy, clock, public_url).await?;
        services.audit_policy().await?;
        let geo =
            seldesk_visits::geo::Geo::open(config.geoip.as_deref()).map_err(|e| StartError::Geo(e.to_string()))?;
        if !geo.is_configured() {
            tracing::warn!("no geolocation database (geoip): countries come from browsers' language settings");
        }
        if let Some(dir) = services.accounts.mailer().outbox_dir() {
            tracing::warn!(
                outbox = %dir.display(),
                "no SMTP server configured (mail.smtp_url): e-mails are not sent, they are written to the outbox folder"
            );
        }
        let (visits, _writer) = if config.record_visits {
            seldesk_visits::Recorder::start(
                seldesk_visits::VisitStore::for_node(&config.data, &services.db),
                Some(services.db.clone()),
                geo.clone(),
            )
        } else {
            tracing::warn!("record_visits is off: no browser data is recorded");
            seldesk_visits::Recorder::disabled()
        };
        let node = node_id(&config.data)?;
        let node_name = config.node.name(&node);
        let cluster = match &internal {
            Some((_, secret, _)) => Some(
                seldesk_web::cluster::Cluster::new(node_name.clone(), secret)
                    .map_err(|e| StartError::Io(format!("cluster: {e}")))?,
            ),
            None => None,
        };
        if let Some(c) = &cluster {
            // Moves and drains send databases to other nodes over this link.
            services.databases.set_transport(std::sync::Arc::new(seldesk_web::cluster::PeerLink::new(c.clone())));
        }
        let state: AppState = seldesk_web::AppParts {
            site: Default::default(),
            audit: services.audit.clone(),
            cluster,
            visits: seldesk_visits::Visits {
                recorder: visits.clone(),
                store: seldesk_visits::VisitStore::for_node(&config.data, &services.db),
                aggregates: services.visit_aggregates.clone(),
                geo,
            },
            policy: services.policy.clone(),
            db: services.db.clone(),
            clock: services.clock.clone(),
            accounts: services.accounts.clone(),
            retention: services.retention.clone(),
            databases: services.databases.clone(),
            careers: services.careers.clone(),
            upgrades: services.upgrades.clone(),
            marketing: services.marketing.clone(),
            backups: services.backups.clone(),
            billing: services.billing.clone(),
            web: seldesk_web::WebSettings {
                node_name: node_name.clone(),
                public_url: site_url,
                secure_cookies,
                google_analytics_id: config.google_analytics_id.clone(),
                // Checked when the configuration was read.
                trusted_proxies: config.trusted_proxies().unwrap_or_default(),
            },
        }
        .into();
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        // Every commit streamed from the first request on: a database opened
        // before would begin its chain only at its next open.
        let shipper = (config.backup_stream_ms > 0).then(|| {
            let shipper =
                services.backups.shipper(STREAM_BUFFER).snapshot_new_chains(services.queue.clone(), node_name.clone());
            services.databases.open_databases().stream_to(Arc::new(shipper.clone()));
            let every = std::time::Duration::from_millis(config.backup_stream_ms);
            tasks.push(tokio::spawn(shipper.clone().run(every, rx.clone())));
            shipper
        });

        let stop = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let site = seldesk_web::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let rx_web = rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(web, site).with_graceful_shutdown(stop(rx_web)).await {
                tracing::error!(error = %e, "web listener failed");
            }
        }));
        let address = match internal {
            Some((listener, _, address)) => {
                let app =
                    seldesk_web::internal_router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
                let rx_internal = rx.clone();
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop(rx_internal)).await {
                        tracing::error!(error = %e, "internal listener failed");
                    }
                }));
                address
            }
            // A node without an internal listener takes no forwarded request.
            None => String::new(),
        };
        let admin_app = seldesk_web::admin_router(state);
        let rx_admin = rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(admin, admin_app).with_graceful_shutdown(stop(rx_admin)).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        }));

        // This node's jobs that a stop interrupted run again now, and moves
        // left without a job are settled, before any worker starts.
        // This node in the cluster's registry, with the data centers it serves.
        let regions: Vec<String> = services.databases.files().served().map(<[String]>::to_vec).unwrap_or_default();
        services.databases.nodes().register(&node_name, &node, &regions, &address).await?;
        if regions.len() > 1 {
            tracing::warn!(
                node = %node_name,
                regions = %regions.join(","),
                "this node serves several data centers: they are folders on one machine, not physically separate places; \
                 run one node per data center with --region to separate them (docs/scaling-out.md)"
            );
        }
        tasks.push(tokio::spawn(heartbeat(services.databases.clone(), shipper.clone(), node_name, rx.clone())));
        let released = services.queue.release_node(&node).await?;
        let settled = services.databases.recover_moves().await?;
        if released + settled as u64 > 0 {
            tracing::info!(released, settled, "resumed the jobs this node was running when it stopped");
        }
        for i in 0..config.jobs.workers {
            // One scheduler per node is enough; dedupe keys make each fire once per cluster.
            let r = runner(&config, &services, format!("{node}/{}-w{i}", std::process::id()), i == 0)?;
            tasks.push(tokio::spawn(r.run(rx.clone())));
        }
        if config.upgrades.worker == crate::config::UpgradeWorkerMode::Child {
            tasks.push(tokio::spawn(supervise_upgrade_worker(config.clone(), format!("{node}/upgrade"), rx.clone())));
        }
        tracing::info!(%web_addr, %admin_addr, data = %config.data.display(), "seldesk is serving");
        Ok(Self { web_addr, admin_addr, shutdown, tasks, services, visits, config_data: config.data.clone(), shipper })
    }

    /// The shipper of this node's commits, when streaming is on.
    pub fn shipper(&self) -> Option<&seldesk_vault::Shipper> {
        self.shipper.as_ref()
    }

    pub fn web_addr(&self) -> SocketAddr {
        self.web_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    pub fn db(&self) -> &Db {
        &self.services.db
    }

    /// Where this node's browser data lives (files or PostgreSQL partitions).
    pub fn visit_store(&self) -> seldesk_visits::VisitStore {
        seldesk_visits::VisitStore::for_node(&self.config_data, &self.services.db)
    }

    /// The browser-data recorder (tests flush it to read what was recorded).
    pub fn visits(&self) -> &seldesk_visits::Recorder {
        &self.visits
    }

    /// Runs every job that is due now, on this task, and returns how many ran
    /// (operators' `jobs run`, and tests that move the clock).
    pub async fn run_pending_jobs(&self, config: &Config) -> Result<usize, StartError> {
        let r = runner(config, &self.services, format!("{}-manual", self.web_addr), false)?;
        let mut n = 0;
        while r.run_once().await.unwrap_or(false) {
            n += 1;
        }
        Ok(n)
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
        // Visits queued by the last requests are stored before the end.
        self.visits.flush().await;
        // Every open customer database's writer drains and checkpoints.
        let open = self.services.databases.open_databases().clone();
        let _ = tokio::task::spawn_blocking(move || open.close_all()).await;
        // What the last requests committed reaches the backup regions.
        if let Some(shipper) = &self.shipper
            && let Err(e) = shipper.ship().await
        {
            tracing::warn!("backup stream at shutdown: {e}");
        }
        self.services.db.close().await;
        tracing::info!("seldesk stopped");
    }

    /// Stops gracefully and waits.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }
}
