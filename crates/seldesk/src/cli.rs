//! The command line: one binary, one subcommand per operation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::ExposeSecret;
use seldesk_domain::{Policy, SystemClock};
use time::Date;
use time::macros::format_description;

use crate::app::{self, Application};
use crate::config::{Config, LogFormat, Overrides};

/// Seldesk hosts one business database per customer, with the website,
/// accounts and helpdesk around it, and enforces its privacy policy in code.
#[derive(Debug, Parser)]
#[command(name = "seldesk", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Configuration file (TOML). Without one, defaults apply.
    #[arg(long, global = true, env = "SELDESK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Policy file replacing the built-in policy/seldesk.toml.
    #[arg(long, global = true, env = "SELDESK_POLICY", value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform: public site, control panel, API, staff console and
    /// job workers, plus the admin listener with /metrics. Stops gracefully on
    /// Ctrl-C or SIGTERM, finishing requests and jobs in flight.
    Serve(ServeArgs),
    /// Apply pending control-plane database migrations, then exit.
    Migrate(DbArgs),
    /// Run the Database Upgrade service's worker: takes upgrade jobs from the
    /// control plane's queue, works only in the upgrade storage, under
    /// memory, file-size and time limits, with no production key. `serve`
    /// starts one itself unless `upgrades.worker` says otherwise.
    UpgradeWorker(WorkerArgs),
    /// One upgrade in a process of its own, under limits (started by the
    /// upgrade worker; not for operators).
    #[command(hide = true)]
    UpgradeRun(RunOneArgs),
    /// Ask a running server's /healthz; exit 0 when healthy (for containers and monitors).
    Healthcheck(HealthArgs),
    /// Validate, render and publish the privacy policy file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inspect the durable job queue.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Apply retention rules, report on them, and manage legal holds.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Verify and read the hash-chained audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage staff accounts (one role model for all staff).
    #[command(subcommand)]
    Staff(StaffCommand),
    /// Customer databases, for operators: list and export (audited).
    #[command(subcommand)]
    Db(crate::db_cli::DbCommand),
    /// The cluster's nodes: which data centers each serves, and whether it is alive.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Backups: run, list, check, repair, prune, restore.
    #[command(subcommand)]
    Backup(crate::backup_cli::BackupCommand),
}

#[derive(Debug, Subcommand)]
enum StaffCommand {
    /// Create a staff account; prints a one-time password and the TOTP secret
    /// (otpauth:// URL) for an authenticator app. Staff sign in at /staff.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// Staff member's e-mail address.
        #[arg(long)]
        email: String,
        /// Role: admin, support, hr, security, finance or dpo (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// List staff accounts and their roles.
    List(DbArgs),
    /// Disable a staff member: every session ends at once, sign-in refused.
    Disable {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled staff member again.
    Enable {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        email: String,
    },
    /// Replace a staff member's roles (their sessions end).
    SetRoles {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        email: String,
        /// Role: admin, support, hr, security, finance or dpo (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// Give a staff member a new TOTP secret (old codes stop working).
    ResetTotp {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Erase every record past its category's retention period (what the
    /// daily job does), except what a legal hold covers.
    Run {
        #[command(flatten)]
        db: DbArgs,
        /// Say what would be erased, per category, and erase nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// For each category: rule, live records, oldest, overdue, held, last run.
    /// Exits 1 when any record is overdue, so monitoring can alert.
    Report {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Legal holds keep named records past their period, with a reason and an end date.
    #[command(subcommand)]
    Hold(HoldCommand),
}

#[derive(Debug, Subcommand)]
enum HoldCommand {
    /// Place a hold (as the operator; in the staff console the security or dpo role).
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// Data category to hold, e.g. browser_event.
        #[arg(long)]
        category: String,
        /// Only records about this person or account (opaque reference).
        #[arg(long)]
        subject: Option<String>,
        /// Only records from this date (YYYY-MM-DD).
        #[arg(long)]
        from: Option<String>,
        /// Only records up to this date (YYYY-MM-DD).
        #[arg(long)]
        to: Option<String>,
        /// Why: the case or legal request.
        #[arg(long)]
        reason: String,
        /// The hold ends at the start of this date (YYYY-MM-DD).
        #[arg(long)]
        until: String,
    },
    /// List holds.
    List(DbArgs),
    /// End a hold early.
    Release {
        #[command(flatten)]
        db: DbArgs,
        /// The hold's number (from `list`).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain; exit 1 naming every edited, removed or reordered entry.
    Verify(DbArgs),
    /// Print entries, newest first.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Only entries about this person or database (opaque reference).
        #[arg(long)]
        subject: Option<String>,
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DbArgs {
    /// Data folder [default: ./seldesk-data].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Control-plane database: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://<data>/control.db].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// A data center this node serves (repeat for several) [default: node.regions, else every hosting region
    /// of the policy]. The node touches no customer database of another region.
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// This node's name in the cluster [default: node.name, else the host name and the data folder's id].
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address of the public web listener [default: 127.0.0.1:8069].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Address of the admin listener serving /metrics [default: 127.0.0.1:9069]; port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Address of the listener other nodes forward requests to [default: node.internal_listen; none: this node
    /// forwards nothing]. Needs --cluster-secret-file; keep it on a private network.
    #[arg(long, value_name = "ADDR")]
    internal_listen: Option<String>,
    /// How other nodes reach the internal listener, e.g. http://10.0.1.5:8070 [default: node.advertise, else
    /// http://<internal listener>].
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// File holding the secret every node of the cluster shares [default: node.cluster_secret_file].
    #[arg(long, value_name = "FILE")]
    cluster_secret_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct WorkerArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The upgrade service's storage [default: upgrades.storage, else <data>/upgrade].
    #[arg(long, value_name = "DIR")]
    storage: Option<PathBuf>,
    /// Where uploads and results are kept: a folder, s3://bucket[/prefix] or gs://bucket[/prefix], as the site's nodes have it [default: upgrades.objects].
    #[arg(long, value_name = "LOCATION")]
    objects: Option<String>,
    /// The upgrade service's key [default: upgrades.key_file, else <data>/keys/upgrade.key].
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Name of this worker in the job queue [default: upgrade-worker@<host>].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Address space the worker may use, in MB [default: upgrades.memory_limit_mb].
    #[arg(long, value_name = "MB")]
    memory_limit_mb: Option<u64>,
    /// Largest file the worker may write, in MB [default: upgrades.file_limit_mb].
    #[arg(long, value_name = "MB")]
    file_limit_mb: Option<u64>,
    /// Longest one upgrade may take, in seconds [default: upgrades.time_limit_secs].
    #[arg(long, value_name = "SECONDS")]
    time_limit_secs: Option<u64>,
    /// Stop when standard input closes (how `serve` ties its child worker to itself).
    #[arg(long)]
    exit_with_parent: bool,
}

#[derive(Debug, Args)]
struct RunOneArgs {
    #[arg(long)]
    kind: String,
    #[arg(long)]
    upload: PathBuf,
    #[arg(long)]
    work: PathBuf,
    #[arg(long)]
    result: PathBuf,
    #[arg(long)]
    name: String,
    #[arg(long)]
    now: String,
    #[arg(long)]
    key_file: PathBuf,
    #[arg(long)]
    memory_limit_mb: u64,
    #[arg(long)]
    file_limit_mb: u64,
}

#[derive(Debug, Args)]
struct HealthArgs {
    /// URL to check [default: http://<listen>/healthz from the configuration].
    #[arg(long, value_name = "URL")]
    url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a policy file; exit 2 naming the key and line of the first problem.
    Check,
    /// Print the public privacy policy text, as /privacy shows it.
    Render(RenderArgs),
    /// List the policy's versions and which is in force.
    Versions,
    /// Print the promise IDs the text's sentences cite, one per line; exit 1
    /// naming any sentence that carries no promise marker (docs/policy.md).
    Promises,
    /// Print the records of processing activities (categories, purposes,
    /// legal bases, recipients, locations, retention, security measures).
    Ropa {
        /// Output format.
        #[arg(long, value_enum, default_value = "md")]
        format: RopaFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RopaFormat {
    Md,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RenderFormat {
    /// Markdown (default).
    Md,
    /// HTML fragment.
    Html,
}

#[derive(Debug, Args)]
struct RenderArgs {
    /// Effective date of the version to print (YYYY-MM-DD) [default: the version in force].
    #[arg(long = "effective", value_name = "DATE")]
    effective: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    format: RenderFormat,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Every node: name, data centers, address, last seen, databases, disk use.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A node was lost for good (its disk with it): restore each of its
    /// databases of this node's data centers here from its latest snapshot,
    /// tell each owner the time of that snapshot, and retire the lost node
    /// once every one of its databases lives elsewhere. Run it on a node of
    /// the lost node's data center (with --region). Refused for a live node.
    Recover {
        #[command(flatten)]
        db: DbArgs,
        /// The lost node's name (see `seldesk node list`).
        name: String,
    },
    /// Planned maintenance: move every active database of a live node to
    /// other nodes of its data center, with no lost write (each keeps
    /// working while it is copied), and keep new databases off it. Waits
    /// and shows progress unless --no-wait.
    Drain {
        #[command(flatten)]
        db: DbArgs,
        /// The node to empty (see `seldesk node list`).
        name: String,
        /// Start the moves and return.
        #[arg(long)]
        no_wait: bool,
        /// Take new databases again (the node is back from maintenance).
        #[arg(long, conflicts_with = "no_wait")]
        cancel: bool,
    },
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// Count jobs by status and show when each schedule fires next.
    Status(DbArgs),
}

/// An error and the exit code it deserves.
pub(crate) struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self { code: 1, error: e.into() }
    }
}

pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 2, error: error.into() }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn overrides(cli: &Cli, db: Option<&DbArgs>) -> Overrides {
    Overrides {
        data: db.and_then(|d| d.data.clone()),
        database_url: db.and_then(|d| d.database_url.clone()),
        policy: cli.policy.clone(),
        log_format: cli.log_format,
        node: db
            .filter(|d| !d.regions.is_empty() || d.node_name.is_some())
            .map(|d| crate::config::NodeOverrides { regions: d.regions.clone(), name: d.node_name.clone() }),
        ..Overrides::default()
    }
}

fn load_config(cli: &Cli, o: &Overrides) -> Result<Config, Failure> {
    Config::load(cli.config.as_deref(), o).map_err(usage)
}

/// The policy named in the configuration, or the built-in one.
/// Its cookie table must be exactly the cookies the site sets.
pub fn load_policy(path: Option<&std::path::Path>) -> Result<Policy, seldesk_domain::PolicyError> {
    let policy = match path {
        Some(p) => Policy::load(p)?,
        None => Policy::builtin()?,
    };
    seldesk_web::cookies::check(&policy).map_err(|e| seldesk_domain::PolicyError {
        source_name: path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| seldesk_domain::policy::BUILTIN_NAME.into()),
        key: "cookies".into(),
        line: None,
        message: e.to_string(),
    })?;
    Ok(policy)
}

fn init_logs(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Serve(args) => {
            let mut o = overrides(&cli, Some(&args.db));
            o.listen = args.listen.clone();
            o.admin_listen = args.admin_listen.clone();
            let mut config = load_config(&cli, &o)?;
            if let Some(a) = &args.internal_listen {
                config.node.internal_listen = Some(a.parse().map_err(|_| {
                    usage(anyhow::anyhow!("--internal-listen `{a}` is not an address such as 10.0.1.5:8070"))
                })?);
            }
            if let Some(u) = &args.advertise {
                config.node.advertise = Some(u.clone());
            }
            if let Some(f) = &args.cluster_secret_file {
                config.node.cluster_secret_file = Some(f.clone());
            }
            init_logs(&config);
            let policy = load_policy(config.policy.as_deref()).map_err(usage)?;
            runtime()?.block_on(serve(config, policy))
        }
        Command::UpgradeWorker(args) => {
            let mut config = load_config(&cli, &overrides(&cli, Some(&args.db)))?;
            if let Some(s) = &args.storage {
                config.upgrades.storage = Some(s.clone());
            }
            if let Some(o) = &args.objects {
                config.upgrades.objects = Some(o.clone());
            }
            if let Some(k) = &args.key_file {
                config.upgrades.key_file = Some(k.clone());
            }
            for (value, field) in [
                (args.memory_limit_mb, &mut config.upgrades.memory_limit_mb),
                (args.file_limit_mb, &mut config.upgrades.file_limit_mb),
                (args.time_limit_secs, &mut config.upgrades.time_limit_secs),
            ] {
                if let Some(v) = value {
                    *field = v;
                }
            }
            init_logs(&config);
            let policy = load_policy(config.policy.as_deref()).map_err(usage)?;
            let name = args.name.clone().unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                format!("upgrade-worker@{}", host.trim())
            });
            let limits = crate::upgrade_worker::Limits::from_config(&config);
            let exit_with_parent = args.exit_with_parent;
            runtime()?
                .block_on(crate::upgrade_worker::run(config, policy, name, limits, exit_with_parent))
                .map_err(Failure::from)
        }
        Command::UpgradeRun(a) => {
            let files = seldesk_upgrades::UpgradeFiles {
                kind: a.kind.clone(),
                upload: a.upload.clone(),
                work: a.work.clone(),
                result: a.result.clone(),
                name: a.name.clone(),
                now: a.now.clone(),
            };
            let limits = crate::upgrade_worker::Limits {
                memory_mb: a.memory_limit_mb,
                file_mb: a.file_limit_mb,
                time: std::time::Duration::MAX,
            };
            match crate::upgrade_worker::run_one(&files, &a.key_file, limits) {
                code if code == ExitCode::SUCCESS => Ok(()),
                _ => Err(Failure { code: 1, error: anyhow::anyhow!("the upgrade failed") }),
            }
        }
        Command::Migrate(args) => {
            let config = load_config(&cli, &overrides(&cli, Some(args)))?;
            init_logs(&config);
            runtime()?.block_on(async {
                let db = app::open_db(&config).await?;
                db.close().await;
                println!(
                    "control-plane database is up to date ({})",
                    seldesk_store::redact_url(&config.database_url())
                );
                Ok(())
            })
        }
        Command::Healthcheck(args) => {
            let config = load_config(&cli, &overrides(&cli, None))?;
            let url = match &args.url {
                Some(u) => u.clone(),
                None => {
                    let mut addr = config.listen;
                    if addr.ip().is_unspecified() {
                        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    format!("http://{addr}/healthz")
                }
            };
            runtime()?.block_on(healthcheck(&url))
        }
        Command::Policy(cmd) => {
            let config = load_config(&cli, &overrides(&cli, None))?;
            let policy = load_policy(config.policy.as_deref()).map_err(usage)?;
            policy_command(cmd, &policy)
        }
        Command::Retention(cmd) => {
            let db = match cmd {
                RetentionCommand::Run { db, .. } | RetentionCommand::Report { db, .. } => db,
                RetentionCommand::Hold(HoldCommand::Add { db, .. } | HoldCommand::Release { db, .. }) => db,
                RetentionCommand::Hold(HoldCommand::List(db)) => db,
            };
            let (config, policy) = config_and_policy(&cli, db)?;
            runtime()?.block_on(retention_command(cmd, &config, policy))
        }
        Command::Audit(cmd) => {
            let db = match cmd {
                AuditCommand::Verify(db) | AuditCommand::List { db, .. } => db,
            };
            let (config, policy) = config_and_policy(&cli, db)?;
            runtime()?.block_on(audit_command(cmd, &config, policy))
        }
        Command::Staff(cmd) => {
            let db = match cmd {
                StaffCommand::Add { db, .. }
                | StaffCommand::List(db)
                | StaffCommand::Disable { db, .. }
                | StaffCommand::Enable { db, .. }
                | StaffCommand::SetRoles { db, .. }
                | StaffCommand::ResetTotp { db, .. } => db,
            };
            let (config, policy) = config_and_policy(&cli, db)?;
            runtime()?.block_on(staff_command(cmd, &config, policy))
        }
        Command::Db(cmd) => {
            let (config, policy) = config_and_policy(&cli, cmd.db_args())?;
            runtime()?.block_on(crate::db_cli::db_command(cmd, &config, policy))
        }
        Command::Backup(cmd) => {
            let (config, policy) = config_and_policy(&cli, cmd.db_args())?;
            runtime()?.block_on(crate::backup_cli::backup_command(cmd, &config, policy))
        }
        Command::Jobs(JobsCommand::Status(args)) => {
            let config = load_config(&cli, &overrides(&cli, Some(args)))?;
            runtime()?.block_on(jobs_status(&config))
        }
        Command::Node(NodeCommand::List { db, json }) => {
            let config = load_config(&cli, &overrides(&cli, Some(db)))?;
            runtime()?.block_on(node_list(&config, *json))
        }
        Command::Node(NodeCommand::Recover { db, name }) => {
            let (config, policy) = config_and_policy(&cli, db)?;
            runtime()?.block_on(node_recover(&config, policy, name))
        }
        Command::Node(NodeCommand::Drain { db, name, no_wait, cancel }) => {
            let (config, policy) = config_and_policy(&cli, db)?;
            runtime()?.block_on(node_drain(&config, policy, name, !*no_wait, *cancel))
        }
    }
}

fn config_and_policy(cli: &Cli, db: &DbArgs) -> Result<(Config, Policy), Failure> {
    let config = load_config(cli, &overrides(cli, Some(db)))?;
    init_logs_quiet(&config);
    let policy = load_policy(config.policy.as_deref()).map_err(usage)?;
    Ok((config, policy))
}

/// Operator commands print their own output; logs only for warnings.
fn init_logs_quiet(config: &Config) {
    let quiet = Config { log_level: "warn".into(), ..config.clone() };
    init_logs(&quiet);
}

fn parse_date(flag: &str, s: &str) -> Result<time::OffsetDateTime, Failure> {
    Date::parse(s, format_description!("[year]-[month]-[day]"))
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| usage(anyhow::anyhow!("--{flag} `{s}` is not a date; write YYYY-MM-DD")))
}

async fn retention_command(cmd: &RetentionCommand, config: &Config, policy: Policy) -> Result<(), Failure> {
    let s = app::Core::open(config, policy, Arc::new(SystemClock), config.public_url(config.listen)).await?;
    let result = match cmd {
        RetentionCommand::Run { dry_run, .. } => {
            // A store that failed does not hide what the others erased.
            let report = match s.retention.run(&seldesk_domain::Actor::Operator, *dry_run).await {
                Ok(report) => report,
                Err(seldesk_privacy::PrivacyError::Incomplete(report)) => *report,
                Err(e) => return Err(e.into()),
            };
            let verb = if *dry_run { "would erase" } else { "erased" };
            for c in &report.categories {
                println!(
                    "{:<20} {verb} {:>6}   held {:>6}",
                    c.category,
                    if *dry_run { c.due } else { c.erased },
                    c.held
                );
            }
            println!(
                "{} {} records in all{}",
                verb,
                if *dry_run { report.categories.iter().map(|c| c.due).sum::<u64>() } else { report.erased() },
                if *dry_run { " (dry run: nothing was erased)" } else { "" }
            );
            if !report.failures.is_empty() {
                return Err(anyhow::anyhow!(
                    "{} of the categories could not be erased (the others were): {}",
                    report.failures.len(),
                    report.failures.join("; ")
                )
                .into());
            }
            Ok(())
        }
        RetentionCommand::Report { json, .. } => {
            let report = s.retention.report().await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{:<20} {:<45} {:>9} {:>8} {:>8} {:>6}",
                    "category", "rule", "live", "oldest", "overdue", "held"
                );
                for r in &report.rows {
                    let oldest = r.oldest_age_days.map(|d| format!("{d} d")).unwrap_or_else(|| "-".into());
                    let live = if r.collected { r.live.to_string() } else { "not kept".into() };
                    println!(
                        "{:<20} {:<45} {:>9} {:>8} {:>8} {:>6}",
                        r.category, r.rule, live, oldest, r.overdue, r.held
                    );
                }
                match report.last_run {
                    Some(t) => println!("retention engine last ran {t}"),
                    None => println!("retention engine has never run on this control plane"),
                }
            }
            let late = s.accounts.overdue_requests().await?;
            if !*json {
                for t in &late {
                    println!("OVERDUE request: ticket {} ({}) was due {}", t.id, t.kind.label(), t.due_at.date());
                }
            }
            let overdue = report.overdue();
            if overdue > 0 {
                Err(anyhow::anyhow!(
                    "{overdue} records are past their retention period: is the retention job running? (`seldesk retention run` erases them now)"
                )
                .into())
            } else if !late.is_empty() {
                Err(anyhow::anyhow!(
                    "{} personal-data requests are past their answer date: answer them in the Helpdesk (/staff/tickets)",
                    late.len()
                )
                .into())
            } else {
                Ok(())
            }
        }
        RetentionCommand::Hold(HoldCommand::Add { category, subject, from, to, reason, until, .. }) => {
            let hold = seldesk_privacy::NewHold {
                category: category.clone(),
                subject: subject.clone(),
                from: from.as_deref().map(|d| parse_date("from", d)).transpose()?,
                to: to.as_deref().map(|d| parse_date("to", d)).transpose()?,
                reason: reason.clone(),
                until: parse_date("until", until)?,
            };
            let id = s.retention.place_hold(&seldesk_domain::Actor::Operator, hold).await.map_err(usage)?;
            println!("legal hold {id} placed on {category}");
            Ok(())
        }
        RetentionCommand::Hold(HoldCommand::List(_)) => {
            let now = s.clock.now();
            for h in s.retention.holds().await? {
                let state = if h.released_at.is_some() {
                    "released"
                } else if h.until <= now {
                    "ended"
                } else {
                    "active"
                };
                println!(
                    "{:>4}  {:<8} {:<18} subject {:<20} until {}  by {}  — {}",
                    h.id,
                    state,
                    h.category,
                    h.subject.as_deref().unwrap_or("(all)"),
                    h.until.date(),
                    h.created_by,
                    h.reason
                );
            }
            Ok(())
        }
        RetentionCommand::Hold(HoldCommand::Release { id, .. }) => {
            s.retention.release_hold(&seldesk_domain::Actor::Operator, *id).await.map_err(usage)?;
            println!("legal hold {id} released");
            Ok(())
        }
    };
    s.db.close().await;
    result
}

async fn audit_command(cmd: &AuditCommand, config: &Config, policy: Policy) -> Result<(), Failure> {
    let s = app::Services::open(config, policy, Arc::new(SystemClock), config.public_url(config.listen)).await?;
    let result = match cmd {
        AuditCommand::Verify(_) => {
            // The chain under the key in the keys folder, and every anchor of
            // its head that the write-once vault holds.
            let anchors = s.backups.audit_anchors().await.map_err(|e| anyhow::anyhow!("reading the anchors: {e}"))?;
            let report = s.audit.verify_with_anchors(&anchors).await?;
            if report.is_intact() {
                match (report.first_seq, report.last_seq) {
                    (Some(a), Some(b)) => {
                        println!(
                            "audit trail intact: {} entries, {a} to {b}; {} anchors in the backup vault agree",
                            report.checked,
                            anchors.len()
                        )
                    }
                    _ => println!("audit trail intact: no entries yet"),
                }
                Ok(())
            } else {
                for p in &report.problems {
                    println!("TAMPERED: {p}");
                }
                Err(anyhow::anyhow!(
                    "the audit trail has been tampered with: {} problems in {} entries",
                    report.problems.len(),
                    report.checked
                )
                .into())
            }
        }
        AuditCommand::List { subject, limit, .. } => {
            let entries = match subject {
                Some(sub) => {
                    s.audit.about(sub).await?.into_iter().rev().take(usize::try_from(*limit).unwrap_or(50)).collect()
                }
                None => s.audit.recent(*limit).await?,
            };
            for e in entries {
                println!(
                    "{:>6}  {}  {:<16} {:<24} subject {:<20} target {:<16} {}",
                    e.seq,
                    e.at,
                    e.actor,
                    e.action,
                    e.subject.as_deref().unwrap_or("-"),
                    e.target.as_deref().unwrap_or("-"),
                    e.details
                );
            }
            Ok(())
        }
    };
    s.db.close().await;
    result
}

fn parse_roles(roles: &[String]) -> Result<Vec<seldesk_domain::Role>, Failure> {
    roles
        .iter()
        .map(|r| {
            seldesk_domain::Role::parse(r).ok_or_else(|| {
                usage(anyhow::anyhow!("--role `{r}` is not a role; use admin, support, hr, security, finance or dpo"))
            })
        })
        .collect()
}

async fn staff_command(cmd: &StaffCommand, config: &Config, policy: Policy) -> Result<(), Failure> {
    let s = app::Services::open(config, policy, Arc::new(SystemClock), config.public_url(config.listen)).await?;
    let result = match cmd {
        StaffCommand::Add { email, roles, .. } => {
            let parsed = parse_roles(roles)?;
            let creds = s
                .accounts
                .add_staff(
                    &seldesk_domain::Actor::Operator,
                    seldesk_accounts::NewStaff { email: email.clone(), roles: parsed },
                )
                .await
                .map_err(usage)?;
            println!("staff account created: {} ({})", creds.staff.email, roles.join(", "));
            println!("one-time password: {}", creds.password.expose_secret());
            println!("TOTP secret:       {}", creds.totp_secret.expose_secret());
            println!("authenticator URL: {}", creds.totp_url.expose_secret());
            println!("Hand these over in person; they are not shown again.");
            Ok(())
        }
        StaffCommand::Disable { email, .. } | StaffCommand::Enable { email, .. } => {
            let disable = matches!(cmd, StaffCommand::Disable { .. });
            let m =
                s.accounts.set_staff_disabled(&seldesk_domain::Actor::Operator, email, disable).await.map_err(usage)?;
            println!("{} is {}", m.email, if m.disabled { "disabled: every session ended" } else { "enabled" });
            Ok(())
        }
        StaffCommand::SetRoles { email, roles, .. } => {
            let parsed = parse_roles(roles)?;
            let m =
                s.accounts.set_staff_roles(&seldesk_domain::Actor::Operator, email, &parsed).await.map_err(usage)?;
            let names: Vec<&str> = m.roles.iter().map(|r| r.as_str()).collect();
            println!("{} now has the roles {}; their sessions ended", m.email, names.join(", "));
            Ok(())
        }
        StaffCommand::ResetTotp { email, .. } => {
            let (secret, url) =
                s.accounts.reset_staff_totp(&seldesk_domain::Actor::Operator, email).await.map_err(usage)?;
            println!("new TOTP secret:   {secret}");
            println!("authenticator URL: {url}");
            println!("The old codes no longer work; hand this over in person.");
            Ok(())
        }
        StaffCommand::List(_) => {
            for m in s.accounts.list_staff().await? {
                let roles: Vec<&str> = m.roles.iter().map(|r| r.as_str()).collect();
                println!("{:<32} {:<30} {}", m.email, roles.join(","), if m.disabled { "disabled" } else { "active" });
            }
            Ok(())
        }
    };
    s.db.close().await;
    result
}

async fn serve(config: Config, policy: Policy) -> Result<(), Failure> {
    let app = Application::build(config, policy, Arc::new(SystemClock)).await?;
    let stop = app.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests and jobs in flight");
        let _ = stop.send(true);
    });
    app.wait().await;
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn healthcheck(url: &str) -> Result<(), Failure> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build()?;
    let response = client.get(url).send().await.with_context(|| format!("no answer from {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("healthy: {body}");
        Ok(())
    } else {
        Err(anyhow::anyhow!("unhealthy: {url} answered {status}: {body}").into())
    }
}

fn policy_command(cmd: &PolicyCommand, policy: &Policy) -> Result<(), Failure> {
    let today = time::OffsetDateTime::now_utc().date();
    match cmd {
        PolicyCommand::Check => {
            let current = policy.current_version(today);
            println!(
                "policy OK: {} — {} categories, {} providers, hosting regions {}, backup regions {}, version in force {}",
                policy.source_name,
                policy.categories.len(),
                policy.providers.len(),
                policy.hosting_regions().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", "),
                policy.backup_regions().map(|r| r.id.as_str()).collect::<Vec<_>>().join(", "),
                current.effective,
            );
        }
        PolicyCommand::Render(args) => {
            let version = match &args.effective {
                None => policy.current_version(today),
                Some(s) => {
                    let date = Date::parse(s, format_description!("[year]-[month]-[day]"))
                        .map_err(|_| usage(anyhow::anyhow!("--effective `{s}` is not a date; write YYYY-MM-DD")))?;
                    policy.version(date).ok_or_else(|| {
                        let known: Vec<String> = policy.versions().iter().map(|v| v.effective.to_string()).collect();
                        usage(anyhow::anyhow!(
                            "no policy version took effect on {date}; versions: {}",
                            known.join(", ")
                        ))
                    })?
                }
            };
            let md = policy.text_of(version);
            match args.format {
                RenderFormat::Md => print!("{md}"),
                RenderFormat::Html => print!("{}", seldesk_web::markdown_to_html(&md)),
            }
        }
        PolicyCommand::Ropa { format } => {
            let ropa = seldesk_domain::policy::Ropa::from_policy(policy);
            match format {
                RopaFormat::Md => print!("{}", ropa.to_markdown()),
                RopaFormat::Json => println!("{}", serde_json::to_string_pretty(&ropa)?),
            }
        }
        PolicyCommand::Promises => {
            let text = seldesk_domain::policy::render_with_markers(policy, policy.newest_version());
            let report = seldesk_domain::policy::markers::check(&text);
            for id in &report.ids {
                println!("{id}");
            }
            if !report.unmarked.is_empty() {
                for s in &report.unmarked {
                    eprintln!("no promise marker: {s}");
                }
                return Err(anyhow::anyhow!(
                    "{} sentence(s) of the policy text carry no promise marker: add [[ID]] or [[-]] after each (docs/policy.md)",
                    report.unmarked.len()
                )
                .into());
            }
        }
        PolicyCommand::Versions => {
            let current = policy.current_version(today).effective;
            for v in policy.versions() {
                let status = if v.effective == current {
                    "in force"
                } else if v.effective > today {
                    "upcoming"
                } else {
                    "superseded"
                };
                println!("{}  {:<10}  {}", v.effective, status, v.summary);
            }
        }
    }
    Ok(())
}

async fn node_list(config: &Config, json: bool) -> Result<(), Failure> {
    let db = app::open_db(config).await?;
    let nodes = seldesk_tenants::nodes::Nodes::new(db.clone(), Arc::new(SystemClock)).list().await;
    db.close().await;
    let nodes = nodes?;
    if json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(());
    }
    if nodes.is_empty() {
        println!("No node has registered yet: `seldesk serve` registers itself when it starts.");
        return Ok(());
    }
    let now = time::OffsetDateTime::now_utc();
    println!(
        "{:<28} {:<12} {:<30} {:<16} {:>9} {:>12}",
        "name", "regions", "address", "last seen", "databases", "disk MB"
    );
    for n in &nodes {
        let ago = (now - n.last_seen).whole_seconds().max(0);
        let seen = match (n.live, n.retired, n.draining) {
            (_, true, _) => format!("{ago} s ago (retired)"),
            (true, _, true) => format!("{ago} s ago (draining)"),
            (true, _, false) => format!("{ago} s ago"),
            (false, _, _) => format!("{ago} s ago (down)"),
        };
        println!(
            "{:<28} {:<12} {:<30} {:<16} {:>9} {:>12.1}",
            n.name,
            n.regions.join(","),
            n.address,
            seen,
            n.databases,
            n.disk_bytes as f64 / 1e6
        );
    }
    Ok(())
}

async fn node_recover(config: &Config, policy: Policy, name: &str) -> Result<(), Failure> {
    let s = app::Services::open(config, policy, Arc::new(SystemClock), config.public_url(config.listen)).await?;
    let result = recover_node(&s, name).await;
    s.db.close().await;
    result
}

async fn recover_node(s: &app::Services, name: &str) -> Result<(), Failure> {
    let nodes = s.databases.nodes().list().await?;
    let Some(lost) = nodes.iter().find(|n| n.name == name) else {
        return Err(usage(anyhow::anyhow!("no node is named `{name}` (see `seldesk node list`)")));
    };
    if lost.live {
        let ago = (time::OffsetDateTime::now_utc() - lost.last_seen).whole_seconds().max(0);
        return Err(usage(anyhow::anyhow!(
            "node `{name}` was heard from {ago} s ago: it is not lost. Recovery restores from backups and loses the \
             writes since; stop the node for good first (or move its databases away while it runs)"
        )));
    }
    if s.databases.node_name() == Some(name) {
        return Err(usage(anyhow::anyhow!("`{name}` is this node")));
    }
    let all = s.databases.homed_on(name).await?;
    let (here, elsewhere): (Vec<_>, Vec<_>) = all.into_iter().partition(|d| s.databases.files().serves(&d.region));
    let mut failed = 0;
    for d in &here {
        match s.backups.recover(d, &seldesk_domain::Actor::Operator).await {
            Ok(taken) => {
                println!("{} ({}, {}): restored here as it was at {taken}", d.name, d.id, d.region);
                let owner = s.accounts.account(&d.account_id).await;
                if let Ok(owner) = owner {
                    let mail = seldesk_accounts::mail::OutgoingMail {
                        to: owner.email.clone(),
                        subject: format!("Your database {} was restored after a server failure", d.name),
                        text: format!(
                            "Hello {},\n\nThe server that held your database \"{}\" failed and cannot come back. \
                             We restored the database on another server of the same data center from its backups, \
                             as it was at {taken} (UTC). Changes made after that moment are not in it; please check \
                             your latest work.\n\nWe are sorry for the trouble.\n",
                            owner.name, d.name
                        ),
                    };
                    if let Err(e) = s.accounts.mailer().send(&mail).await {
                        eprintln!("{}: the owner could not be told by e-mail: {e}", d.name);
                    }
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("{} ({}): not recovered: {e}", d.name, d.id);
            }
        }
    }
    if failed > 0 {
        return Err(anyhow::anyhow!(
            "{failed} of {} databases could not be recovered; `{name}` is not retired",
            here.len()
        )
        .into());
    }
    if !elsewhere.is_empty() {
        let mut regions: Vec<&str> = elsewhere.iter().map(|d| d.region.as_str()).collect();
        regions.sort_unstable();
        regions.dedup();
        println!(
            "{} of its databases are in data centers this node does not serve ({}): run `seldesk node recover {name}` \
             on a node of each; `{name}` is retired once none is left",
            elsewhere.len(),
            regions.join(", ")
        );
        return Ok(());
    }
    s.databases.nodes().retire(name).await?;
    println!("{} databases recovered; node `{name}` is retired", here.len());
    Ok(())
}

async fn node_drain(config: &Config, policy: Policy, name: &str, wait: bool, cancel: bool) -> Result<(), Failure> {
    let s = app::Services::open(config, policy, Arc::new(SystemClock), config.public_url(config.listen)).await?;
    let result = drain_node(&s, name, wait, cancel).await;
    s.db.close().await;
    result
}

async fn drain_node(s: &app::Services, name: &str, wait: bool, cancel: bool) -> Result<(), Failure> {
    let nodes = s.databases.nodes().list().await?;
    let Some(node) = nodes.iter().find(|n| n.name == name) else {
        return Err(usage(anyhow::anyhow!("no node is named `{name}` (see `seldesk node list`)")));
    };
    if cancel {
        s.databases.nodes().set_draining(name, false).await?;
        println!("node `{name}` takes new databases again");
        return Ok(());
    }
    if !node.live {
        return Err(usage(anyhow::anyhow!(
            "node `{name}` is not live: a drain needs it to send its databases; for a lost node run `seldesk node recover {name}`"
        )));
    }
    s.databases.nodes().set_draining(name, true).await?;
    let actor = seldesk_domain::Actor::Operator;
    let all = s.databases.homed_on(name).await?;
    let mut started = Vec::new();
    let mut stuck = 0usize;
    for d in &all {
        if d.status != seldesk_tenants::DbStatus::Active {
            // Deactivated ones wait out their grace period where they are.
            println!("{} ({}, {}): {:?}, stays until it is removed", d.name, d.id, d.region, d.status);
            continue;
        }
        let target = s.databases.nodes().place(&d.region, Some(name)).await?;
        let Some(target) = target else {
            stuck += 1;
            eprintln!("{} ({}): no other live node serves {}; it stays", d.name, d.id, d.region);
            continue;
        };
        match s.databases.move_to_node(&d.id, &target.name, &actor).await {
            Ok(()) => {
                println!("{} ({}, {}): moving to {}", d.name, d.id, d.region, target.name);
                started.push(d.id.clone());
            }
            Err(e) => {
                stuck += 1;
                eprintln!("{} ({}): not moved: {e}", d.name, d.id);
            }
        }
    }
    if !wait {
        println!("{} moves started; `seldesk node list` shows when `{name}` holds none", started.len());
        return if stuck == 0 { Ok(()) } else { Err(anyhow::anyhow!("{stuck} databases cannot move").into()) };
    }
    let total = started.len();
    let mut left = started;
    let mut failed = 0usize;
    let mut shown = usize::MAX;
    while !left.is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let mut still = Vec::new();
        for id in left {
            match s.databases.find(&id).await {
                Ok(d) if d.moving.is_some() => still.push(id),
                Ok(d) => match s.databases.home(&id).await?.and_then(|h| h.1) {
                    Some(home) if home == name => {
                        failed += 1;
                        eprintln!("{} ({id}): the move failed; it stays on `{name}` (see the audit trail)", d.name);
                    }
                    home => println!("{} ({id}): now on {}", d.name, home.unwrap_or_default()),
                },
                // Removed meanwhile: nothing left to move.
                Err(_) => {}
            }
        }
        left = still;
        if left.len() != shown {
            shown = left.len();
            eprintln!("drain of `{name}`: {} of {total} moved", total - shown);
        }
    }
    if failed + stuck > 0 {
        return Err(anyhow::anyhow!("{} databases are still on `{name}`", failed + stuck).into());
    }
    println!("node `{name}` holds no active database now; it takes no new ones (`--cancel` to undo)");
    Ok(())
}

async fn jobs_status(config: &Config) -> Result<(), Failure> {
    let db = app::open_db(config).await?;
    let queue = seldesk_jobs::Queue::new(db.clone(), Arc::new(SystemClock));
    let stats = queue.stats().await?;
    println!("queued {}  running {}  done {}  failed {}", stats.queued, stats.running, stats.done, stats.failed);
    let now = time::OffsetDateTime::now_utc();
    for (name, s) in &config.schedules {
        let schedule = seldesk_jobs::Schedule::parse(name, &s.job, &s.cron).map_err(usage)?;
        let next = schedule.next_fire(now).map(|t| t.to_string()).unwrap_or_else(|| "never".into());
        println!("schedule {name}: `{}` runs {} next at {next}", s.cron, s.job);
    }
    db.close().await;
    Ok(())
}
