//! `seldesk db`: operators' view of customer databases. Reading a customer's
//! data from here is staff access like any other: it needs a reason and is
//! recorded in the audit trail (SEC-1).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use seldesk_domain::{Actor, Policy, SystemClock};

use crate::app;
use crate::cli::{DbArgs, Failure, usage};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// List every customer database: id, name, region, status, plan, size.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a database's export archive (manifest.json, dump.sql, files/)
    /// to a file, with a progress bar. Audited with the reason given.
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// The database id (see `seldesk db list`).
        id: String,
        /// Where to write the archive (.zip); refuses to overwrite a file.
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
        /// Why an operator reads this customer's data (ticket, legal request...).
        #[arg(long)]
        reason: String,
    },
}

impl DbCommand {
    pub(crate) fn db_args(&self) -> &DbArgs {
        match self {
            DbCommand::List { db, .. } | DbCommand::Export { db, .. } => db,
        }
    }
}

pub(crate) async fn db_command(cmd: &DbCommand, config: &Config, policy: Policy) -> Result<(), Failure> {
    let s = app::Services::open(config, policy, Arc::new(SystemClock), config.public_url(config.listen)).await?;
    let result = match cmd {
        DbCommand::List { json, .. } => list(&s, *json).await,
        DbCommand::Export { id, output, reason, .. } => export(&s, id, output, reason).await,
    };
    s.db.close().await;
    result
}

async fn list(s: &app::Services, json: bool) -> Result<(), Failure> {
    let all = s.databases.list_all().await?;
    if json {
        let rows: Vec<_> = all
            .iter()
            .map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                v["account_id"] = d.account_id.clone().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("{:<34} {:<24} {:<6} {:<12} {:<10} {:>12}  created", "id", "name", "region", "status", "plan", "bytes");
    for d in &all {
        println!(
            "{:<34} {:<24} {:<6} {:<12} {:<10} {:>12}  {}",
            d.id,
            d.name,
            d.region,
            serde_json::to_value(d.status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            d.plan,
            d.size_bytes,
            d.created_at.date()
        );
    }
    println!("{} database(s)", all.len());
    Ok(())
}

async fn export(s: &app::Services, id: &str, output: &std::path::Path, reason: &str) -> Result<(), Failure> {
    if reason.trim().len() < 5 {
        return Err(usage(anyhow::anyhow!(
            "--reason must say why you read this customer's data (e.g. a ticket number); it is audited"
        )));
    }
    if output.exists() {
        return Err(usage(anyhow::anyhow!("{} already exists; choose another --output", output.display())));
    }
    let d = s.databases.find(id).await.map_err(usage)?;
    let bar = ProgressBar::new(d.size_bytes.max(1));
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("exporting {}", d.name));
    let started = Instant::now();
    let progress_bar = bar.clone();
    let (_, prepared) = s
        .databases
        .export_with_reason(
            &d.account_id,
            &d.id,
            &Actor::Operator,
            Some(reason.trim()),
            Arc::new(move |done, total| {
                progress_bar.set_length(total.max(1));
                progress_bar.set_position(done);
            }),
        )
        .await?;
    bar.finish_and_clear();
    // The archive leaves the region's folder only for the file the operator named.
    if std::fs::rename(&prepared.path, output).is_err() {
        std::fs::copy(&prepared.path, output).with_context(|| format!("cannot write {}", output.display()))?;
        std::fs::remove_file(&prepared.path)?;
    }
    let bytes = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    let secs = started.elapsed().as_secs_f64().max(0.001);
    println!(
        "exported {} ({}) to {}: {} bytes in {:.1} s ({:.0} MB/s of database)",
        d.name,
        d.id,
        output.display(),
        bytes,
        secs,
        d.size_bytes as f64 / secs / 1e6
    );
    Ok(())
}
