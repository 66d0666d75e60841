//! Configuration: defaults, then a TOML file, then `SELDESK_*` environment
//! variables, then command-line flags (each overrides the one before).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A cron schedule that enqueues a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Five-field cron expression, in UTC ("30 2 * * *").
    pub cron: String,
    /// Job kind to enqueue at each fire.
    pub job: String,
    /// Fire on every node, for its own databases (backups, export
    /// sweeps), instead of once per cluster.
    #[serde(default)]
    pub per_node: bool,
}

/// Job workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Concurrent workers on this node (0 disables job execution here).
    pub workers: u32,
    /// How often an idle worker looks for due jobs, in milliseconds.
    pub poll_ms: u64,
    /// Finished jobs are purged after this many days.
    pub keep_finished_days: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self { workers: 2, poll_ms: 500, keep_finished_days: 30 }
    }
}

/// Outgoing mail.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// `smtp://host:25`, `smtp://user:pass@host:587?tls=required` or `smtps://…`.
    /// Without it, mail is written as .eml files under `<data>/mail/outbox`.
    pub smtp_url: Option<String>,
    /// The sender of every message.
    pub from: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self { smtp_url: None, from: "Seldesk <no-reply@seldesk.com>".into() }
    }
}

impl fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailConfig")
            .field("smtp_url", &self.smtp_url.as_deref().map(seldesk_store::redact_url))
            .field("from", &self.from)
            .finish()
    }
}

/// Marketing mail (issue 10): how fast campaigns go out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketingSettings {
    /// Messages handed to the mail server per batch.
    pub batch_size: u32,
    /// Pause between batches, in milliseconds (batch_size / pause is the rate).
    pub batch_pause_ms: u64,
}

impl Default for MarketingSettings {
    fn default() -> Self {
        // 50 messages every 5 s: 600 a minute, gentle on any mail server.
        Self { batch_size: 50, batch_pause_ms: 5_000 }
    }
}

/// Customer databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabasesConfig {
    /// How large a free-trial database may grow, in MB.
    pub trial_quota_mb: u64,
    /// How large a subscribed database may grow, in MB.
    pub subscription_quota_mb: u64,
    /// Free trials (new or imported databases) one account may start.
    pub trials_per_account: u32,
    /// Most customer databases kept open at once (each with its writer
    /// thread); the least recently used closes first.
    pub open_max: usize,
    /// Seconds after which an unused database is closed.
    pub open_idle_secs: u64,
    /// Read connections per open database.
    pub readers: usize,
    /// A database's WAL is checkpointed once it reaches this many MB...
    pub checkpoint_mb: u64,
    /// ...or once no write came for this many milliseconds.
    pub checkpoint_after_ms: u64,
}

impl DatabasesConfig {
    /// How open databases are kept.
    pub fn open_settings(&self) -> seldesk_tenants::OpenSettings {
        seldesk_tenants::OpenSettings {
            max_open: self.open_max.max(1),
            idle: Duration::from_secs(self.open_idle_secs.max(1)),
            readers: self.readers.max(1),
            checkpoint_bytes: self.checkpoint_mb.max(1) << 20,
            checkpoint_after: Duration::from_millis(self.checkpoint_after_ms.max(10)),
            ..seldesk_tenants::OpenSettings::default()
        }
    }
}

impl Default for DatabasesConfig {
    fn default() -> Self {
        let q = seldesk_tenants::Quotas::default();
        let o = seldesk_tenants::OpenSettings::default();
        Self {
            trial_quota_mb: q.trial_bytes / 1_000_000,
            subscription_quota_mb: q.subscribed_bytes / 1_000_000,
            trials_per_account: q.trials_per_account,
            open_max: o.max_open,
            open_idle_secs: o.idle.as_secs(),
            readers: o.readers,
            checkpoint_mb: o.checkpoint_bytes >> 20,
            checkpoint_after_ms: o.checkpoint_after.as_millis() as u64,
        }
    }
}

/// This node: its name in the cluster and the data centers it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Its name in `seldesk node list` [default: the host name and the
    /// start of the data folder's id].
    pub name: Option<String>,
    /// Hosting regions (policy ids) whose customer databases live on this
    /// node; empty: every hosting region of the policy (one node for all,
    /// the embedded default). A node touches no database of another region.
    pub regions: Vec<String>,
    /// The listener other nodes forward requests to; none: this node
    /// neither forwards nor takes forwarded requests (a single node).
    pub internal_listen: Option<SocketAddr>,
    /// How other nodes reach `internal_listen` [default: http://<it>].
    pub advertise: Option<String>,
    /// The secret every node of the cluster shares (one line in a file);
    /// required with `internal_listen`.
    pub cluster_secret_file: Option<PathBuf>,
}

impl NodeConfig {
    /// The node's name: configured, else the host name and the start of
    /// the data folder's id (`node_id`), so that several nodes on one
    /// machine differ and a restart keeps its name.
    pub fn name(&self, node_id: &str) -> String {
        if let Some(name) = self.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            return name.to_string();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "seldesk".into());
        format!("{host}-{}", node_id.chars().take(8).collect::<String>())
    }

    /// The regions this node serves, checked against the policy: every
    /// hosting region when none is configured.
    pub fn regions(&self, policy: &seldesk_domain::Policy) -> Result<Vec<String>, ConfigError> {
        let hosting: Vec<String> = policy.regions.iter().filter(|r| r.hosting).map(|r| r.id.clone()).collect();
        if self.regions.is_empty() {
            return Ok(hosting);
        }
        let mut out: Vec<String> = Vec::new();
        for r in &self.regions {
            if !hosting.contains(r) {
                return Err(ConfigError(format!(
                    "key `node.regions` (--region): `{r}` is not a hosting region of the policy; it lists {}",
                    hosting.join(", ")
                )));
            }
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        Ok(out)
    }
}

/// Where upgrades run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeWorkerMode {
    /// `seldesk serve` starts `seldesk upgrade-worker` as a child process
    /// (the single-node default) and restarts it if it dies.
    Child,
    /// Workers run elsewhere (`seldesk upgrade-worker` on other machines);
    /// this node only takes uploads and serves results.
    External,
    /// In the server's own process: for tests that run jobs by hand.
    Inline,
}

/// The Database Upgrade service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpgradesConfig {
    /// Uploads one account may make in 24 hours.
    pub uploads_per_day: u32,
    /// Megabytes one account may upload in 24 hours.
    pub upload_mb_per_day: u64,
    /// Where upgrades run.
    pub worker: UpgradeWorkerMode,
    /// The service's own storage (uploads, work, results), apart from
    /// production data [default: <data>/upgrade].
    pub storage: Option<PathBuf>,
    /// Where uploads and results are kept: a folder, `s3://bucket[/prefix]`
    /// or `gs://bucket[/prefix]`, the same for every node and worker (an
    /// upload taken by one node is upgraded by any worker and downloaded
    /// through any node) [default: the storage folder; with `blobs` in a
    /// bucket, that bucket under `upgrade/`].
    pub objects: Option<String>,
    /// The upgrade service's own key, sealing uploads and results at rest
    /// [default: <data>/keys/upgrade.key; made on first use].
    pub key_file: Option<PathBuf>,
    /// Address space one worker process may use, in MB.
    pub memory_limit_mb: u64,
    /// Largest file a worker may write, in MB.
    pub file_limit_mb: u64,
    /// Longest one upgrade may take, in seconds.
    pub time_limit_secs: u64,
}

impl Default for UpgradesConfig {
    fn default() -> Self {
        let a = seldesk_upgrades::Allowance::default();
        Self {
            uploads_per_day: a.uploads_per_day,
            upload_mb_per_day: a.bytes_per_day / 1_000_000,
            worker: UpgradeWorkerMode::Child,
            storage: None,
            objects: None,
            key_file: None,
            memory_limit_mb: 4096,
            file_limit_mb: 6144,
            time_limit_secs: 3600,
        }
    }
}

/// Everything an operator can set.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data folder: control database, customer databases, blobs, mail.
    pub data: PathBuf,
    /// Public web listener.
    pub listen: SocketAddr,
    /// Admin listener (metrics, health); keep it off the public network.
    pub admin_listen: SocketAddr,
    /// Control-plane database; default `sqlite://<data>/control.db`.
    pub database_url: Option<String>,
    /// Blob store; default a folder `<data>/blobs`.
    pub blobs: Option<String>,
    /// Policy file replacing the built-in one.
    pub policy: Option<PathBuf>,
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `seldesk=debug,info`.
    pub log_level: String,
    pub jobs: JobsConfig,
    /// Size limits of customer databases.
    pub databases: DatabasesConfig,
    /// Daily upload allowance of the upgrade service.
    pub upgrades: UpgradesConfig,
    /// This node's name and the data centers it serves.
    pub node: NodeConfig,
    /// Public address of the site, used in links in e-mails; default `http://<listen>`.
    pub public_url: Option<String>,
    /// Mark cookies `Secure`; turn on whenever the site is served over HTTPS.
    pub secure_cookies: bool,
    /// Load balancers and proxies (addresses or CIDR ranges) whose
    /// `Forwarded` / `X-Forwarded-For` headers name the client.
    pub trusted_proxies: Vec<String>,
    /// Google Analytics measurement id (e.g. G-XXXX); its script loads only
    /// after a visitor accepts third-party analytics cookies.
    pub google_analytics_id: Option<String>,
    /// MaxMind-format country database (GeoLite2-Country or DB-IP) for the
    /// visitor's country; without one, the browser's language decides.
    pub geoip: Option<PathBuf>,
    /// Record browser data of page requests (BRW-2); off only to measure its cost.
    pub record_visits: bool,
    pub mail: MailConfig,
    pub marketing: MarketingSettings,
    /// Where each backup region keeps its objects: region id → folder,
    /// `s3://bucket[/prefix]` or `gs://bucket[/prefix]`; default
    /// `<data>/backups/<region>`. Bucket credentials come from the
    /// environment (`AWS_*`, `GOOGLE_*`).
    pub backup_stores: BTreeMap<String, String>,
    /// How often each node ships the commits of its customer databases to
    /// every backup region (continuous protection, docs/backups.md), in
    /// milliseconds; 0 turns streaming off (nightly snapshots only).
    pub backup_stream_ms: u64,
    /// Plans, prices, taxes, the seller and the payment processors (issue 9).
    pub billing: seldesk_billing::BillingSettings,
    /// Cron schedules by name.
    pub schedules: BTreeMap<String, ScheduleConfig>,
}

impl Default for Config {
    fn default() -> Self {
        let mut schedules = BTreeMap::new();
        schedules.insert(
            "reminders".to_string(),
            ScheduleConfig { cron: "0 8 * * *".into(), job: seldesk_tenants::JOB_REMIND.into(), per_node: false },
        );
        schedules.insert(
            "trials".to_string(),
            ScheduleConfig {
                cron: "5 * * * *".into(),
                job: seldesk_tenants::JOB_EXPIRE_TRIALS.into(),
                per_node: false,
            },
        );
        schedules.insert(
            "visits".to_string(),
            ScheduleConfig {
                cron: "20 0 * * *".into(),
                job: seldesk_visits::JOB_VISITS_AGGREGATE.into(),
                per_node: false,
            },
        );
        schedules.insert(
            "exports".to_string(),
            ScheduleConfig {
                cron: "*/10 * * * *".into(),
                job: seldesk_tenants::JOB_SWEEP_EXPORTS.into(),
                per_node: true,
            },
        );
        schedules.insert(
            "retention".to_string(),
            ScheduleConfig { cron: "30 2 * * *".into(), job: seldesk_privacy::JOB_RETENTION.into(), per_node: false },
        );
        schedules.insert(
            "trends".to_string(),
            ScheduleConfig { cron: "40 0 * * *".into(), job: seldesk_marketing::JOB_TRENDS.into(), per_node: false },
        );
        schedules.insert(
            "backup".to_string(),
            ScheduleConfig { cron: "0 1 * * *".into(), job: seldesk_vault::JOB_BACKUP.into(), per_node: true },
        );
        schedules.insert(
            "overdue-requests".to_string(),
            ScheduleConfig {
                cron: "0 9 * * *".into(),
                job: seldesk_accounts::JOB_OVERDUE_REQUESTS.into(),
                per_node: false,
            },
        );
        schedules.insert(
            "idle-accounts".to_string(),
            ScheduleConfig {
                cron: "20 9 * * *".into(),
                job: seldesk_accounts::lifecycle::JOB_IDLE_WARNINGS.into(),
                per_node: false,
            },
        );
        schedules.insert(
            "audit-anchor".to_string(),
            ScheduleConfig { cron: "50 0 * * *".into(), job: seldesk_vault::JOB_ANCHOR.into(), per_node: false },
        );
        schedules.insert(
            "backup-prune".to_string(),
            ScheduleConfig { cron: "0 4 * * *".into(), job: seldesk_vault::JOB_PRUNE.into(), per_node: false },
        );
        schedules.insert(
            "billing".to_string(),
            ScheduleConfig { cron: "10 * * * *".into(), job: seldesk_billing::JOB_RENEW.into(), per_node: false },
        );
        schedules.insert(
            "jobs-purge".to_string(),
            ScheduleConfig { cron: "15 3 * * *".into(), job: seldesk_jobs::JOB_PURGE.into(), per_node: false },
        );
        Self {
            data: PathBuf::from("./seldesk-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8069)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9069)),
            database_url: None,
            blobs: None,
            policy: None,
            log_format: LogFormat::Human,
            log_level: "info".into(),
            jobs: JobsConfig::default(),
            databases: DatabasesConfig::default(),
            upgrades: UpgradesConfig::default(),
            node: NodeConfig::default(),
            public_url: None,
            secure_cookies: false,
            trusted_proxies: Vec::new(),
            google_analytics_id: None,
            geoip: None,
            record_visits: true,
            mail: MailConfig::default(),
            marketing: MarketingSettings::default(),
            backup_stores: BTreeMap::new(),
            backup_stream_ms: 500,
            billing: seldesk_billing::BillingSettings::default(),
            schedules,
        }
    }
}

// Debug must never print secrets: the database URL may hold a password.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data", &self.data)
            .field("listen", &self.listen)
            .field("admin_listen", &self.admin_listen)
            .field("database_url", &self.database_url.as_deref().map(seldesk_store::redact_url))
            .field("blobs", &self.blobs.as_deref().map(seldesk_store::redact_url))
            .field("policy", &self.policy)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("jobs", &self.jobs)
            .field("databases", &self.databases)
            .field("upgrades", &self.upgrades)
            .field("node", &self.node)
            .field("public_url", &self.public_url)
            .field("secure_cookies", &self.secure_cookies)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("google_analytics_id", &self.google_analytics_id)
            .field("geoip", &self.geoip)
            .field("record_visits", &self.record_visits)
            .field("mail", &self.mail)
            .field("marketing", &self.marketing)
            // A store's query may carry settings, credentials even: print the address only.
            .field(
                "backup_stores",
                &self
                    .backup_stores
                    .iter()
                    .map(|(k, v)| format!("{k}={}", seldesk_store::redact_url(v.split('?').next().unwrap_or(v))))
                    .collect::<Vec<_>>(),
            )
            .field("backup_stream_ms", &self.backup_stream_ms)
            .field("billing", &self.billing)
            .field("schedules", &self.schedules)
            .finish()
    }
}

/// Top-level keys, as environment variables may set them.
const CONFIG_KEYS: &[&str] = &[
    "data",
    "listen",
    "admin_listen",
    "database_url",
    "blobs",
    "policy",
    "log_format",
    "log_level",
    "jobs",
    "databases",
    "upgrades",
    "node",
    "schedules",
    "public_url",
    "secure_cookies",
    "trusted_proxies",
    "mail",
    "google_analytics_id",
    "geoip",
    "record_visits",
    "marketing",
    "billing",
    "backup_stores",
    "backup_stream_ms",
];

/// A configuration that cannot be used; names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Values given on the command line (highest priority).
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeOverrides>,
}

/// `--region` and `--node-name`.
#[derive(Debug, Default, Serialize)]
pub struct NodeOverrides {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Config {
    /// Layers defaults, `file`, the environment and `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment
            .merge(
                // Only our keys: other SELDESK_* variables (test switches, SELDESK_CONFIG) are not config.
                Env::prefixed("SELDESK_")
                    .filter(|k| {
                        let top = k.as_str().split("__").next().unwrap_or_default().to_ascii_lowercase();
                        CONFIG_KEYS.contains(&top.as_str())
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            let mut msg = e.to_string();
            if !key.is_empty() && !msg.contains(&key) {
                msg = format!("key `{key}`: {msg}");
            }
            ConfigError(msg)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// `trusted_proxies` as networks (a bare address is one host).
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>().or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)).map_err(
                    |_| {
                        ConfigError(format!(
                            "key `trusted_proxies`: `{p}` is not an address or a range like 10.0.0.0/8"
                        ))
                    },
                )
            })
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.data.as_os_str().is_empty() {
            return Err(ConfigError("key `data`: the data folder must not be empty".into()));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("sqlite://") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError(format!(
                "key `database_url`: `{}` is not supported; use sqlite://PATH or postgres://USER@HOST/DB",
                seldesk_store::redact_url(url)
            )));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError(format!("key `public_url`: `{url}` must start with http:// or https://")));
        }
        if let Some(url) = &self.mail.smtp_url
            && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
        {
            return Err(ConfigError("key `mail.smtp_url`: must start with smtp:// or smtps://".into()));
        }
        if let Some(id) = &self.google_analytics_id
            && !(id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(ConfigError(format!(
                "key `google_analytics_id`: `{id}` is not a measurement id like G-ABC123"
            )));
        }
        self.trusted_proxies()?;
        if self.jobs.poll_ms == 0 {
            return Err(ConfigError("key `jobs.poll_ms`: must be at least 1".into()));
        }
        for (name, s) in &self.schedules {
            seldesk_jobs::Schedule::parse(name, &s.job, &s.cron)
                .map_err(|e| ConfigError(format!("key `schedules.{name}.cron`: {e}")))?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| ConfigError(format!("key `log_level`: `{}` is not a log filter: {e}", self.log_level)))?;
        Ok(())
    }

    /// The control-plane database URL.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", self.data.join("control.db").display()))
    }

    /// The site's public address (for links in e-mails).
    pub fn public_url(&self, bound: SocketAddr) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{bound}")).trim_end_matches('/').to_string()
    }

    /// The upgrade service's storage.
    pub fn upgrade_storage(&self) -> PathBuf {
        self.upgrades.storage.clone().unwrap_or_else(|| self.data.join("upgrade"))
    }

    /// Where the upgrade service keeps uploads and results: `None` for its
    /// storage folder, else a folder or a bucket address.
    pub fn upgrade_objects(&self) -> Option<String> {
        let is_bucket = |l: &str| l.starts_with("s3://") || l.starts_with("gs://");
        match &self.upgrades.objects {
            Some(l) => Some(l.clone()),
            None => {
                let blobs = self.blobs();
                is_bucket(&blobs).then(|| {
                    let (address, query) = blobs.split_once('?').map_or((blobs.as_str(), None), |(a, q)| (a, Some(q)));
                    let address = format!("{}/upgrade", address.trim_end_matches('/'));
                    query.map_or(address.clone(), |q| format!("{address}?{q}"))
                })
            }
        }
    }

    /// The upgrade service's key.
    pub fn upgrade_key_file(&self) -> PathBuf {
        self.upgrades.key_file.clone().unwrap_or_else(|| self.data.join("keys").join("upgrade.key"))
    }

    /// The blob store location.
    pub fn blobs(&self) -> String {
        self.blobs.clone().unwrap_or_else(|| self.data.join("blobs").display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, &Overrides::default()).expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8069");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9069");
        assert_eq!(c.database_url(), "sqlite://./seldesk-data/control.db");
        assert_eq!(c.blobs(), "./seldesk-data/blobs");
    }

    #[test]
    fn upgrade_objects_follow_a_blob_bucket_unless_set() {
        let mut c = Config::default();
        assert_eq!(c.upgrade_objects(), None, "the storage folder");
        c.blobs = Some("s3://files/site?endpoint=http://127.0.0.1:9000&region=eu-1".into());
        assert_eq!(
            c.upgrade_objects().as_deref(),
            Some("s3://files/site/upgrade?endpoint=http://127.0.0.1:9000&region=eu-1")
        );
        c.blobs = Some("gs://files/".into());
        assert_eq!(c.upgrade_objects().as_deref(), Some("gs://files/upgrade"));
        c.upgrades.objects = Some("/mnt/shared/upgrade".into());
        assert_eq!(c.upgrade_objects().as_deref(), Some("/mnt/shared/upgrade"));
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("seldesk.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1000\"\ndata = \"/srv/a\"\n").expect("write");
        let o = Overrides { listen: Some("127.0.0.1:2000".into()), ..Default::default() };
        let c = Config::load(Some(&file), &o).expect("valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:2000");
        assert_eq!(c.data, PathBuf::from("/srv/a"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("seldesk.toml");
        std::fs::write(&file, "admin_listen = \"not an address\"\n").expect("write");
        let err = Config::load(Some(&file), &Overrides::default()).expect_err("refused");
        assert!(err.to_string().contains("admin_listen"), "{err}");
        std::fs::write(&file, "[schedules.backup]\ncron = \"daily\"\njob = \"backup.run\"\n").expect("write");
        let err = Config::load(Some(&file), &Overrides::default()).expect_err("refused");
        assert!(err.to_string().contains("schedules.backup.cron"), "{err}");
        std::fs::write(&file, "listne = \"127.0.0.1:1\"\n").expect("write");
        let err = Config::load(Some(&file), &Overrides::default()).expect_err("refused");
        assert!(err.to_string().contains("listne"), "{err}");
    }

    #[test]
    fn every_key_can_come_from_the_environment() {
        let v = serde_json::to_value(Config::default()).expect("json");
        for key in v.as_object().expect("object").keys() {
            assert!(CONFIG_KEYS.contains(&key.as_str()), "{key} is missing from CONFIG_KEYS");
        }
    }

    #[test]
    fn debug_hides_database_password() {
        let c = Config { database_url: Some("postgres://app:hunter2@db/seldesk".into()), ..Config::default() };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
