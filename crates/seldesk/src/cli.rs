//! The command line: one binary, one subcommand per operation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use seldesk_domain::{Policy, SystemClock};
use time::Date;
use time::macros::format_description;

use crate::app::{self, Application};
use crate::config::{Config, LogFormat, Overrides};

/// Seldesk hosts one business database per customer, with the website,
/// accounts and helpdesk around it, and enforces its privacy policy in code.
#[derive(Debug, Parser)]
#[command(
    name = "seldesk",
    version,
    propagate_version = true,
    max_term_width = 100
)]
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
    /// Ask a running server's /healthz; exit 0 when healthy (for containers and monitors).
    Healthcheck(HealthArgs),
    /// Validate, render and publish the privacy policy file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Inspect the durable job queue.
    #[command(subcommand)]
    Jobs(JobsCommand),
}

#[derive(Debug, Args)]
struct DbArgs {
    /// Data folder [default: ./seldesk-data].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Control-plane database: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://<data>/control.db].
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
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
enum JobsCommand {
    /// Count jobs by status and show when each schedule fires next.
    Status(DbArgs),
}

/// An error and the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self {
            code: 1,
            error: e.into(),
        }
    }
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
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
        ..Overrides::default()
    }
}

fn load_config(cli: &Cli, o: &Overrides) -> Result<Config, Failure> {
    Config::load(cli.config.as_deref(), o).map_err(usage)
}

/// The policy named in the configuration, or the built-in one.
pub fn load_policy(path: Option<&std::path::Path>) -> Result<Policy, seldesk_domain::PolicyError> {
    match path {
        Some(p) => Policy::load(p),
        None => Policy::builtin(),
    }
}

fn init_logs(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Serve(args) => {
            let mut o = overrides(&cli, Some(&args.db));
            o.listen = args.listen.clone();
            o.admin_listen = args.admin_listen.clone();
            let config = load_config(&cli, &o)?;
            init_logs(&config);
            let policy = load_policy(config.policy.as_deref()).map_err(usage)?;
            runtime()?.block_on(serve(config, policy))
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
        Command::Jobs(JobsCommand::Status(args)) => {
            let config = load_config(&cli, &overrides(&cli, Some(args)))?;
            runtime()?.block_on(jobs_status(&config))
        }
    }
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

async fn shutdown_signal() {
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
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
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
                policy
                    .hosting_regions()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                policy
                    .backup_regions()
                    .map(|r| r.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                current.effective,
            );
        }
        PolicyCommand::Render(args) => {
            let version = match &args.effective {
                None => policy.current_version(today),
                Some(s) => {
                    let date = Date::parse(s, format_description!("[year]-[month]-[day]"))
                        .map_err(|_| {
                            usage(anyhow::anyhow!(
                                "--effective `{s}` is not a date; write YYYY-MM-DD"
                            ))
                        })?;
                    policy.version(date).ok_or_else(|| {
                        let known: Vec<String> = policy
                            .versions()
                            .iter()
                            .map(|v| v.effective.to_string())
                            .collect();
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

async fn jobs_status(config: &Config) -> Result<(), Failure> {
    let db = app::open_db(config).await?;
    let queue = seldesk_jobs::Queue::new(db.clone(), Arc::new(SystemClock));
    let stats = queue.stats().await?;
    println!(
        "queued {}  running {}  done {}  failed {}",
        stats.queued, stats.running, stats.done, stats.failed
    );
    let now = time::OffsetDateTime::now_utc();
    for (name, s) in &config.schedules {
        let schedule = seldesk_jobs::Schedule::parse(name, &s.job, &s.cron).map_err(usage)?;
        let next = schedule
            .next_fire(now)
            .map(|t| t.to_string())
            .unwrap_or_else(|| "never".into());
        println!(
            "schedule {name}: `{}` runs {} next at {next}",
            s.cron, s.job
        );
    }
    db.close().await;
    Ok(())
}
