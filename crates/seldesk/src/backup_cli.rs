//! `seldesk backup`: run, list, check, repair, prune and restore the vault's
//! snapshots (BAK-1…BAK-4). Restores by operators need a reason and are
//! audited (BAK-3).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use seldesk_domain::{Actor, Policy, SystemClock};

use crate::app;
use crate::cli::{DbArgs, Failure, usage};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub(crate) enum BackupCommand {
    /// Back up every active or deactivated database and the control plane
    /// (or one database) to every backup region.
    Run {
        #[command(flatten)]
        db: DbArgs,
        /// Only this database (see `seldesk db list`).
        #[arg(long, conflicts_with = "all")]
        database: Option<String>,
        /// Every database (the default).
        #[arg(long)]
        all: bool,
    },
    /// List snapshots, newest first.
    List {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        database: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Verify every region: manifests, indexes and keys; with --read-data
    /// every pack's bytes too. Exit 1 naming each object changed, missing or
    /// unreadable.
    Check {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        read_data: bool,
    },
    /// How well each database is protected: its newest snapshot, its newest
    /// commit in every backup region, each node's shipping lag. Exit 1
    /// when a live node's lag passes --max-lag-secs.
    Status {
        #[command(flatten)]
        db: DbArgs,
        /// The longest a node may hold commits not yet shipped.
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        max_lag_secs: u64,
    },
    /// Copy objects a region lost (or holds damaged) from another region.
    Repair {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove snapshots past the policy's retention and what only they needed.
    Prune {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Restore a snapshot into a new database of the same owner, or write
    /// its files into a new folder (the control plane's recovery); with
    /// --at, restore a database as it was at a moment (point in time).
    Restore {
        #[command(flatten)]
        db: DbArgs,
        /// Snapshot id (or its first 8+ characters; see `seldesk backup list`);
        /// with --at, the database's id (see `seldesk db list`).
        snapshot: String,
        /// The moment to restore the database to, RFC 3339 (2026-12-06T10:15:30Z):
        /// its last snapshot before then with every change streamed up to then.
        #[arg(long, value_name = "TIME", conflicts_with = "to_folder")]
        at: Option<String>,
        /// Name of the new database.
        #[arg(long, value_name = "NAME", required_unless_present = "to_folder", conflicts_with = "to_folder")]
        to_new_database: Option<String>,
        /// A new folder to write the snapshot's files to.
        #[arg(long, value_name = "DIR")]
        to_folder: Option<std::path::PathBuf>,
        /// Why (ticket, the customer's request, a legal order): audited.
        #[arg(long)]
        reason: String,
    },
}

impl BackupCommand {
    pub(crate) fn db_args(&self) -> &DbArgs {
        match self {
            BackupCommand::Run { db, .. }
            | BackupCommand::List { db, .. }
            | BackupCommand::Check { db, .. }
            | BackupCommand::Status { db, .. }
            | BackupCommand::Repair { db }
            | BackupCommand::Prune { db }
            | BackupCommand::Restore { db, .. } => db,
        }
    }
}

fn bar(msg: &str) -> ProgressBar {
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(msg.to_string());
    bar
}

fn progress(bar: &ProgressBar) -> seldesk_vault::service::Progress {
    let b = bar.clone();
    Arc::new(move |done, total| {
        b.set_length(total.max(1));
        b.set_position(done);
    })
}

pub(crate) async fn backup_command(cmd: &BackupCommand, config: &Config, policy: Policy) -> Result<(), Failure> {
    let s = app::Services::open(config, policy, Arc::new(SystemClock), config.public_url(config.listen)).await?;
    let result = run(cmd, &s).await;
    s.db.close().await;
    result
}

async fn run(cmd: &BackupCommand, s: &app::Services) -> Result<(), Failure> {
    let b = &s.backups;
    match cmd {
        BackupCommand::Run { database, .. } => {
            let pb = bar("backing up");
            let started = Instant::now();
            let out = b.run(database.as_deref(), progress(&pb)).await.map_err(usage)?;
            pb.finish_and_clear();
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let mut failed = 0;
            let mut bytes = 0;
            for o in &out {
                match (&o.snapshot, &o.error) {
                    (Some(snap), _) => {
                        bytes += snap.size;
                        println!(
                            "{} ({}): snapshot {} — {} bytes, {} new, in {}",
                            o.name,
                            o.database,
                            &snap.id[..16],
                            snap.size,
                            snap.added,
                            snap.regions.join(" and ")
                        );
                    }
                    (None, Some(e)) => {
                        failed += 1;
                        eprintln!("{} ({}): FAILED: {e}", o.name, o.database);
                    }
                    _ => {}
                }
            }
            println!(
                "{} snapshot(s), {failed} failed, {:.1} s ({:.0} MB/s)",
                out.len() - failed,
                secs,
                bytes as f64 / secs / 1e6
            );
            if failed > 0 {
                return Err(anyhow::anyhow!("{failed} backup(s) failed").into());
            }
        }
        BackupCommand::List { database, json, .. } => {
            let list = b.list(database.as_deref()).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<16} {:<34} {:<20} {:>12} {:>12}  regions  retain-until",
                    "snapshot", "database", "taken", "bytes", "new"
                );
                for i in &list {
                    println!(
                        "{:<16} {:<34} {:<20} {:>12} {:>12}  {:<7}  {}",
                        &i.id[..16],
                        i.database,
                        taken(i.taken_at),
                        i.size,
                        i.added,
                        i.regions.join(","),
                        i.retain_until.map(|t| t.date().to_string()).unwrap_or_default()
                    );
                }
                println!("{} snapshot(s)", list.len());
            }
        }
        BackupCommand::Check { read_data, .. } => {
            let pb = ProgressBar::new(1);
            pb.set_message("checking");
            let p = pb.clone();
            let problems = b
                .check(
                    *read_data,
                    Arc::new(move |d, t| {
                        p.set_length(t.max(1));
                        p.set_position(d);
                    }),
                )
                .await?;
            pb.finish_and_clear();
            if problems.is_empty() {
                println!(
                    "vault OK: every object in every region{}",
                    if *read_data { ", data read and verified" } else { "" }
                );
            } else {
                for p in &problems {
                    println!("{}: {}: {}", p.region, p.object, p.problem);
                }
                return Err(anyhow::anyhow!(
                    "{} problem(s) found; `seldesk backup repair` copies good objects from another region",
                    problems.len()
                )
                .into());
            }
        }
        BackupCommand::Repair { .. } => {
            let r = b.repair(&Actor::Operator).await?;
            for c in &r.copied {
                println!("copied {c}");
            }
            for q in &r.quarantined {
                println!("moved damaged {q} to quarantine/");
            }
            println!("{} object(s) copied, {} damaged moved aside", r.copied.len(), r.quarantined.len());
        }
        BackupCommand::Prune { .. } => {
            let r = b.prune().await?;
            println!(
                "{} snapshot(s) and {} pack(s) removed; keys destroyed: {}; {} object(s) wait for their lock",
                r.snapshots_removed,
                r.packs_removed,
                if r.keys_destroyed.is_empty() { "none".into() } else { r.keys_destroyed.join(", ") },
                r.waiting_for_lock
            );
        }
        BackupCommand::Status { max_lag_secs, .. } => {
            let nodes = s.databases.nodes().list().await.map_err(usage)?;
            let mut behind = Vec::new();
            for n in nodes.iter().filter(|n| n.live) {
                let lag = n.stream_lag_ms as f64 / 1000.0;
                println!("node {} ({}): shipping lag {lag:.1} s", n.name, n.regions.join(","));
                if n.stream_lag_ms > i64::try_from(max_lag_secs.saturating_mul(1000)).unwrap_or(i64::MAX) {
                    behind.push(format!("{} ({lag:.1} s)", n.name));
                }
            }
            let now = time::OffsetDateTime::now_utc();
            for p in b.protection().await.map_err(usage)? {
                let d = &p.database;
                let streamed = match p.streamed_to {
                    Some(t) => format!("changes up to {t} ({} s ago)", (now - t).whole_seconds().max(0)),
                    None => "no change streamed yet".into(),
                };
                let snapshot = p.snapshot.map_or("no snapshot".to_string(), |t| format!("snapshot of {t}"));
                println!("{} ({}, {}): {snapshot}; {streamed}", d.name, d.id, d.region);
            }
            if !behind.is_empty() {
                return Err(anyhow::anyhow!(
                    "ALERT: commits wait longer than {max_lag_secs} s to reach the backup regions on {}",
                    behind.join(", ")
                )
                .into());
            }
        }
        BackupCommand::Restore { snapshot, at, to_new_database, to_folder, reason, .. } => {
            let pb = bar("restoring");
            let started = Instant::now();
            let written = Arc::new(AtomicU64::new(0));
            let shown = progress(&pb);
            let count = written.clone();
            // Parts are written in parallel: their reports may arrive out of order.
            let report: seldesk_vault::service::Progress = Arc::new(move |done, total| {
                let most = count.fetch_max(done, Ordering::Relaxed).max(done);
                shown(most, total);
            });
            let done = if let Some(at) = at {
                let when = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| usage(anyhow::anyhow!("--at {at}: not a time like 2026-12-06T10:15:30Z ({e})")))?;
                let name = to_new_database.as_deref().unwrap_or_default();
                let out = b.restore_at(&Actor::Operator, snapshot, when, name, reason, None, report).await;
                pb.finish_and_clear();
                let (d, plan) = out.map_err(usage)?;
                format!(
                    "restored database {snapshot} as it was at {when} into new database {} ({}) in {}: snapshot {} of {} and {} segment(s) of changes, every change shipped up to {}",
                    d.name,
                    d.id,
                    d.region,
                    &plan.snapshot.id[..16],
                    plan.snapshot.taken_at,
                    plan.segments.len(),
                    plan.shipped_to
                )
            } else if let Some(dir) = to_folder {
                let out = b.extract(&Actor::Operator, snapshot, dir, reason, report).await;
                pb.finish_and_clear();
                format!("wrote snapshot {snapshot} to {}", out.map_err(usage)?.display())
            } else {
                let name = to_new_database.as_deref().unwrap_or_default();
                let d = b.restore_with_progress(&Actor::Operator, snapshot, name, reason, None, report).await;
                pb.finish_and_clear();
                let d = d.map_err(usage)?;
                format!("restored snapshot {snapshot} into new database {} ({}) in {}", d.name, d.id, d.region)
            };
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let bytes = written.load(Ordering::Relaxed);
            println!("{done}: {bytes} bytes in {secs:.1} s ({:.0} MB/s)", bytes as f64 / secs / 1e6);
        }
    }
    Ok(())
}

/// A snapshot's time as the list shows it: UTC, to the second, every field
/// of fixed width (so the columns line up and the text sorts).
fn taken(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{} {:02}:{:02}:{:02}", t.date(), t.hour(), t.minute(), t.second())
}
