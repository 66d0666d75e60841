//! The control-plane side of customer databases: ownership, placement,
//! status, and the lifecycle (create, cancel, reactivate, remove, destroy
//! after the grace period).

use seldesk_domain::Fault;
use std::path::PathBuf;
use std::sync::Arc;

use seldesk_domain::{Actor, Clock, Policy};
use seldesk_privacy::{AuditLog, BoxFuture, Candidate, Census, Eraser, ErasureLog, ErasureReason, PrivacyError};
use seldesk_store::{Db, from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use crate::files::{SCHEMA_VERSION, TenantFiles};
use crate::{TenantError, app, blocking};

/// Receives (done, total) bytes while an export is prepared.
pub type ExportProgress = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;

/// An export archive on disk, kept a while so downloads can resume.
#[derive(Debug, Clone)]
pub struct PreparedExport {
    pub path: PathBuf,
    /// Names this archive; served as its ETag.
    pub tag: String,
}

/// Where a database stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DbStatus {
    Active,
    Deactivated,
    Moving,
}

impl DbStatus {
    /// In words, for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Deactivated => "Deactivated",
            Self::Moving => "Moving to another data center",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "deactivated" => Self::Deactivated,
            "moving" => Self::Moving,
            _ => Self::Active,
        }
    }
}

impl CustomerDb {
    /// The plan in words, for people ("Free trial", "Subscription").
    pub fn plan_label(&self) -> &'static str {
        match self.plan.as_str() {
            "trial" => "Free trial",
            "subscribed" => "Subscription",
            _ => "Other",
        }
    }
}

/// A customer database as the control plane knows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerDb {
    pub id: String,
    #[serde(skip)]
    pub account_id: String,
    pub name: String,
    pub region: String,
    pub plan: String,
    pub status: DbStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub trial_ends: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deactivated_at: Option<OffsetDateTime>,
    /// Until when a deactivated database can be reactivated.
    #[serde(with = "time::serde::rfc3339::option")]
    pub reactivate_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub size_bytes: u64,
    pub schema_version: i64,
    /// For a test upgrade's copy: the database it was made from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_of: Option<String>,
    /// A subscription granted by the finance role runs until then.
    #[serde(with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub granted_until: Option<OffsetDateTime>,
    /// While the database moves: where to, and how far the copy is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moving: Option<MoveProgress>,
}

/// How far a move between data centers is.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct MoveProgress {
    pub from: String,
    pub to: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

impl MoveProgress {
    /// Whole percent of the copy made, 0 to 100.
    pub fn percent(&self) -> u64 {
        (self.done_bytes.saturating_mul(100)).checked_div(self.total_bytes).unwrap_or(0).min(100)
    }
}

/// How large a customer database may grow, by plan (configuration
/// `[databases]`, docs/configuration.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub trial_bytes: u64,
    pub subscribed_bytes: u64,
    /// Free trials an account may start (new or imported databases);
    /// restores and test copies of one's own databases do not count.
    pub trials_per_account: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Self { trial_bytes: 100 * 1_000_000, subscribed_bytes: 10 * 1_000_000_000, trials_per_account: 5 }
    }
}

impl Quotas {
    /// The limit of a plan.
    pub fn of(&self, plan: &str) -> u64 {
        if plan == "subscribed" { self.subscribed_bytes } else { self.trial_bytes }
    }
}

/// Whether a write stopped at the database's page limit (SQLITE_FULL, as
/// the app or the console reports it).
fn is_full(e: &TenantError) -> bool {
    match e {
        TenantError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => f.code == rusqlite::ErrorCode::DiskFull,
        TenantError::Invalid { message, .. } => message.ends_with("database or disk is full"),
        _ => false,
    }
}

/// What a customer reads when their database is full.
fn quota_message(plan: &str, quota: u64) -> String {
    let mb = quota / 1_000_000;
    if plan == "subscribed" {
        format!(
            "This database has reached its size limit of {mb} MB. Delete data you no longer need, or contact us for more room."
        )
    } else {
        format!(
            "This free-trial database has reached its size limit of {mb} MB. Delete data you no longer need, or subscribe for more room."
        )
    }
}

/// The customer databases service.
#[derive(Clone)]
pub struct Databases {
    pub(crate) db: Db,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) files: TenantFiles,
    pub(crate) audit: AuditLog,
    erasure_log: ErasureLog,
    pub(crate) queue: seldesk_jobs::Queue,
    pub(crate) quotas: Quotas,
    /// The databases open in this process, each with its writer.
    pub(crate) open: crate::OpenDatabases,
    /// The cluster's nodes: where a region's databases can live.
    pub(crate) nodes: crate::nodes::Nodes,
    /// This node's name, recorded as the home of the databases it makes.
    pub(crate) node_name: Option<String>,
    /// How moves reach other nodes (set once the cluster is up).
    pub(crate) transport: Arc<std::sync::OnceLock<Arc<dyn crate::transfer::Transport>>>,
    /// Databases this node sent away lately, and when: a request that still
    /// reaches it hears to retry, not that the database is missing.
    pub(crate) moved_away: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
    /// What this node's moves did, for /metrics.
    pub(crate) move_stats: Arc<crate::moves::MoveStats>,
}

/// Job kind: deactivate free trials that ended (DB-9).
pub const JOB_EXPIRE_TRIALS: &str = "databases.expire_trials";
/// Job kind: remind owners a week before a deactivated database is destroyed.
pub const JOB_REMIND: &str = "databases.remind";
/// Job kind: remove export archives kept for resuming once their window ends.
pub const JOB_SWEEP_EXPORTS: &str = "databases.sweep_exports";

/// Job kind: carry out a move to another region.
pub const JOB_MOVE: &str = "databases.move";

/// The job that moves a database to another region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MoveJob {
    pub database: String,
    pub region: String,
}

impl seldesk_jobs::JobPayload for MoveJob {
    const KIND: &'static str = JOB_MOVE;
}

const COLUMNS: &str = "id, account_id, name, region, plan, status, trial_ends_at, deactivated_at, created_at, schema_version, test_of, moving_from, moving_to, move_done, move_total, granted_until";

/// A database name: 3 to 63 lowercase letters, digits and hyphens.
pub fn validate_name(name: &str) -> Result<String, TenantError> {
    let n = name.trim().to_lowercase();
    let ok = (3..=63).contains(&n.len())
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !n.starts_with('-')
        && !n.ends_with('-');
    if ok && seldesk_privacy::card::contains_card_number(&n) {
        Err(TenantError::invalid("name", seldesk_privacy::card::CARD_NUMBER_REFUSED))
    } else if ok {
        Ok(n)
    } else {
        Err(TenantError::invalid(
            "name",
            "Use 3 to 63 lowercase letters, digits and hyphens (not at the start or end), e.g. \"acme-sales\".",
        ))
    }
}

impl Databases {
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        policy: Arc<Policy>,
        files: TenantFiles,
        audit: AuditLog,
        erasure_log: ErasureLog,
        queue: seldesk_jobs::Queue,
    ) -> Self {
        let open = crate::OpenDatabases::new(files.clone(), crate::OpenSettings::default());
        let nodes = crate::nodes::Nodes::new(db.clone(), clock.clone());
        Self {
            db,
            clock,
            policy,
            files,
            audit,
            erasure_log,
            queue,
            quotas: Quotas::default(),
            open,
            nodes,
            node_name: None,
            transport: Arc::default(),
            moved_away: Arc::default(),
            move_stats: Arc::default(),
        }
    }

    /// The cache of open databases to use (shared with the erasers, so a
    /// removal closes what requests opened).
    pub fn with_open(mut self, open: crate::OpenDatabases) -> Self {
        self.open = open;
        self
    }

    /// The databases open in this process.
    pub fn open_databases(&self) -> &crate::OpenDatabases {
        &self.open
    }

    /// Size limits per plan.
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// Records an action of a database's owner in the audit trail.
    async fn audit_owner(
        &self,
        account_id: &str,
        id: &str,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), TenantError> {
        self.audit
            .record(
                &Actor::Person { id: account_id.into() },
                action,
                Some(seldesk_domain::Subject::person(account_id).as_str()),
                Some(&format!("db:{id}")),
                details,
            )
            .await?;
        Ok(())
    }

    /// This node's name: the home recorded for the databases it makes.
    pub fn with_node_name(mut self, name: String) -> Self {
        self.node_name = Some(name);
        self
    }

    /// This node's name, when it has one.
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    /// Where a database lives: its region and home node (None for a
    /// database made before nodes were named). None: no such database.
    pub async fn home(&self, id: &str) -> Result<Option<(String, Option<String>)>, TenantError> {
        let row = sqlx::query("SELECT region, home_node FROM databases WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match row {
            Some(r) => Some((r.try_get("region")?, r.try_get("home_node")?)),
            None => None,
        })
    }

    /// The cluster's nodes.
    pub fn nodes(&self) -> &crate::nodes::Nodes {
        &self.nodes
    }

    /// Refuses a database of a region this node does not serve (RES-1),
    /// and records the refusal in the audit trail.
    pub async fn resident(&self, region: &str, actor: &Actor, target: Option<&str>) -> Result<(), TenantError> {
        let Err(refused) = self.files.check_region(region) else { return Ok(()) };
        let serves = self.files.served().map(|s| s.join(",")).unwrap_or_default();
        self.audit
            .record(actor, "residency.refused", None, target, serde_json::json!({ "region": region, "serves": serves }))
            .await?;
        Err(refused)
    }

    /// Where a new database of `region` can be made: here, or, when no
    /// node serves the region now, a clear "unavailable" (nothing made).
    async fn placed(&self, region: &str, account_id: &str) -> Result<(), TenantError> {
        if self.files.serves(region) {
            return Ok(());
        }
        let live = self.nodes.live_in(region).await?;
        let refused = self.resident(region, &Actor::Person { id: account_id.into() }, None).await;
        if live.is_empty() {
            let name = self.policy.region(region).map(|r| r.name.clone()).unwrap_or_else(|| region.to_string());
            return Err(TenantError::Unavailable(format!(
                "No data center in {name} is available right now; nothing was created. Please try again later."
            )));
        }
        refused
    }

    /// The folder an import into `region` is spooled to before it is
    /// checked: on this node only if it serves the region (else refused,
    /// audited, nothing written).
    pub async fn import_spool(&self, account_id: &str, region: &str) -> Result<std::path::PathBuf, TenantError> {
        self.placed(region, account_id).await?;
        self.files.dir(region, "incoming")
    }

    pub fn files(&self) -> &TenantFiles {
        &self.files
    }

    fn grace(&self) -> Option<seldesk_domain::policy::Period> {
        self.policy.retention("customer_database").map(|r| r.keep)
    }

    fn record(&self, r: &sqlx::any::AnyRow) -> Result<CustomerDb, TenantError> {
        let region: String = r.try_get("region")?;
        let id: String = r.try_get("id")?;
        let deactivated_at = r.try_get::<Option<i64>, _>("deactivated_at")?.map(from_millis);
        Ok(CustomerDb {
            size_bytes: self.files.size(&region, &id),
            reactivate_until: deactivated_at.and_then(|d| self.grace().map(|g| g.after(d))),
            id,
            account_id: r.try_get("account_id")?,
            name: r.try_get("name")?,
            region,
            plan: r.try_get("plan")?,
            status: DbStatus::parse(&r.try_get::<String, _>("status")?),
            trial_ends: r.try_get::<Option<i64>, _>("trial_ends_at")?.map(from_millis),
            deactivated_at,
            created_at: from_millis(r.try_get("created_at")?),
            schema_version: r.try_get("schema_version")?,
            test_of: r.try_get("test_of")?,
            granted_until: r.try_get::<Option<i64>, _>("granted_until")?.map(from_millis),
            moving: match (r.try_get::<Option<String>, _>("moving_from")?, r.try_get::<Option<String>, _>("moving_to")?)
            {
                (Some(from), Some(to)) => Some(MoveProgress {
                    from,
                    to,
                    done_bytes: u64::try_from(r.try_get::<i64, _>("move_done")?).unwrap_or(0),
                    total_bytes: u64::try_from(r.try_get::<i64, _>("move_total")?).unwrap_or(0),
                }),
                _ => None,
            },
        })
    }

    /// Creates a database for an account (DB-1) in the chosen region, or the
    /// one nearest the customer's country (DB-8).
    pub async fn create(
        &self,
        account_id: &str,
        name: &str,
        region: Option<&str>,
        plan: Option<&str>,
        country: Option<&str>,
    ) -> Result<CustomerDb, TenantError> {
        let name = validate_name(name)?;
        let region = match region.filter(|r| !r.is_empty()) {
            Some(r) => match self.policy.region(r) {
                Some(reg) if reg.hosting => reg.id.clone(),
                _ => {
                    let ids: Vec<&str> = self.policy.hosting_regions().map(|r| r.id.as_str()).collect();
                    return Err(TenantError::invalid(
                        "region",
                        format!("`{r}` is not a hosting region; choose one of {}.", ids.join(", ")),
                    ));
                }
            },
            None => self.policy.nearest_region(country).id.clone(),
        };
        // A database is subscribed only once a payment is confirmed (PAY,
        // DB-9): every new one starts as a trial.
        let plan = match plan.unwrap_or("trial") {
            "" | "trial" => "trial".to_string(),
            "subscribed" => {
                return Err(TenantError::PaymentRequired(
                    "A new database starts as a free trial: create it without a plan, then subscribe from its page (/databases/ID/subscribe)."
                        .into(),
                ));
            }
            other => {
                return Err(TenantError::invalid(
                    "plan",
                    format!("`{other}` is not a plan; new databases start as trials."),
                ));
            }
        };
        self.ensure_name_free(account_id, &name).await?;
        self.ensure_trial_left(account_id).await?;
        self.placed(&region, account_id).await?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        let now = self.clock.now();
        let trial_ends = (plan == "trial").then(|| self.policy.trial.length.after(now));
        {
            let (files, region, id) = (self.files.clone(), region.clone(), id.clone());
            blocking(move || files.create(&region, &id)).await?;
        }
        self.record_trial(account_id, &id).await?;
        let inserted = sqlx::query(
            "INSERT INTO databases (id, account_id, name, region, plan, status, trial_ends_at, created_at, schema_version, home_node) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(&name)
        .bind(&region)
        .bind(&plan)
        .bind(trial_ends.map(to_millis))
        .bind(to_millis(now))
        .bind(SCHEMA_VERSION)
        .bind(self.node_name.clone());
        // The record and its audit entry commit together: one commit, and
        // never a database without its audit entry.
        let committed = async {
            let mut tx = self
                .db
                .begin_write()
                .await
                .map_err(|e| TenantError::Internal(Fault::new("cannot start the transaction", e)))?;
            inserted.execute(&mut *tx).await?;
            self.audit
                .record_in(
                    &mut tx,
                    &Actor::Person { id: account_id.into() },
                    "database.created",
                    Some(seldesk_domain::Subject::person(account_id).as_str()),
                    Some(&format!("db:{id}")),
                    serde_json::json!({ "region": region }),
                )
                .await?;
            tx.commit().await?;
            Ok::<_, TenantError>(())
        }
        .await;
        if let Err(e) = committed {
            let _ = self.files.destroy(&region, &id);
            if let TenantError::Query(q) = &e
                && q.as_database_error().is_some_and(|d| d.is_unique_violation())
            {
                return Err(TenantError::Conflict(format!("You already have a database named \"{name}\".")));
            }
            return Err(e);
        }
        Ok(CustomerDb {
            size_bytes: self.files.size(&region, &id),
            id,
            account_id: account_id.to_string(),
            name,
            region,
            plan,
            status: DbStatus::Active,
            trial_ends,
            deactivated_at: None,
            reactivate_until: None,
            created_at: seldesk_store::from_millis(to_millis(now)),
            schema_version: SCHEMA_VERSION,
            test_of: None,
            granted_until: None,
            moving: None,
        })
    }

    /// The account's databases.
    pub async fn list(&self, account_id: &str) -> Result<Vec<CustomerDb>, TenantError> {
        let sql = format!("SELECT {COLUMNS} FROM databases WHERE account_id = $1 ORDER BY created_at");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).fetch_all(self.db.pool()).await?;
        rows.iter().map(|r| self.record(r)).collect()
    }

    /// Every database on the platform, for operators (`seldesk db list`).
    pub async fn list_all(&self) -> Result<Vec<CustomerDb>, TenantError> {
        let sql = format!("SELECT {COLUMNS} FROM databases ORDER BY created_at");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db.pool()).await?;
        rows.iter().map(|r| self.record(r)).collect()
    }

    /// Any database by id, for operators; their use of it is audited by the caller.
    pub async fn find(&self, id: &str) -> Result<CustomerDb, TenantError> {
        let sql = format!("SELECT {COLUMNS} FROM databases WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db.pool()).await?;
        match row {
            Some(r) => self.record(&r),
            None => Err(TenantError::NotFound(format!("No database has the id `{id}`."))),
        }
    }

    /// A database of this account; another account's is "not found" (no hint it exists).
    pub async fn get(&self, account_id: &str, id: &str) -> Result<CustomerDb, TenantError> {
        let sql = format!("SELECT {COLUMNS} FROM databases WHERE id = $1 AND account_id = $2");
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(account_id).fetch_optional(self.db.pool()).await?;
        match row {
            Some(r) => self.record(&r),
            None => Err(TenantError::NotFound("No such database.".into())),
        }
    }

    /// An active database of this account, ready for a request.
    async fn usable(&self, account_id: &str, id: &str) -> Result<CustomerDb, TenantError> {
        let d = self.get(account_id, id).await?;
        if !self.files.serves(&d.region) && self.moved_away_recently(&d.id) {
            // This node just sent it away; a retry reaches its new home.
            return Err(TenantError::Busy(
                "This database has just moved to another data center; please try again in a second.".into(),
            ));
        }
        self.resident(&d.region, &Actor::Person { id: account_id.into() }, Some(&format!("db:{}", d.id))).await?;
        match d.status {
            // A moving database keeps working while it is copied; its
            // writer holds requests only for the switch (crate::moves).
            DbStatus::Active | DbStatus::Moving => Ok(d),
            DbStatus::Deactivated => {
                let until = d.reactivate_until.map(|u| u.date().to_string()).unwrap_or_default();
                Err(TenantError::Deactivated(format!(
                    "This database is deactivated. Reactivate it before {until} to use it again; after that it is destroyed."
                )))
            }
        }
    }

    fn now_text(&self) -> String {
        self.clock.now().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    }

    /// Runs `f` on a read connection of an active database of this account
    /// (read-only: a write through it fails).
    pub async fn read_db<T: Send + 'static>(
        &self,
        account_id: &str,
        id: &str,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, TenantError> + Send + 'static,
    ) -> Result<T, TenantError> {
        let d = self.usable(account_id, id).await?;
        self.open.read(&d.region, &d.id, f).await
    }

    /// Like [`Self::read_db`], with the database's `files/` folder too.
    pub async fn read_db_files<T: Send + 'static>(
        &self,
        account_id: &str,
        id: &str,
        f: impl FnOnce(&rusqlite::Connection, &std::path::Path) -> Result<T, TenantError> + Send + 'static,
    ) -> Result<T, TenantError> {
        let d = self.usable(account_id, id).await?;
        let dir = self.files.dir(&d.region, &d.id)?.join("files");
        self.open.read(&d.region, &d.id, move |conn| f(conn, &dir)).await
    }

    /// Runs `f` on the writer of an active database of this account, in a
    /// group commit (crate::open), within the plan's size limit; `f` gets
    /// the time of the request. `checkpoint`: the WAL is checkpointed right
    /// after (a delete).
    pub async fn write_db<T: Send + 'static>(
        &self,
        account_id: &str,
        id: &str,
        checkpoint: bool,
        f: impl FnOnce(&rusqlite::Connection, &str) -> Result<T, TenantError> + Send + 'static,
    ) -> Result<T, TenantError> {
        let opts = crate::WriteOptions { mode: crate::WriteMode::Grouped, quota: 0, checkpoint };
        self.write_with(account_id, id, opts, move |conn, _, now| f(conn, now)).await
    }

    /// Runs `f` alone on the writer (not in a group: each statement is
    /// committed as it runs), with the database's `files/` folder: work on
    /// attachments, whose files must follow committed rows.
    pub async fn write_db_files<T: Send + 'static>(
        &self,
        account_id: &str,
        id: &str,
        f: impl FnOnce(&rusqlite::Connection, &std::path::Path, &str) -> Result<T, TenantError> + Send + 'static,
    ) -> Result<T, TenantError> {
        let opts = crate::WriteOptions { mode: crate::WriteMode::Alone, quota: 0, checkpoint: true };
        self.write_with(account_id, id, opts, f).await
    }

    /// The owner's SQL console: runs alone on the writer, as its statements
    /// may read, write or both.
    pub async fn console(
        &self,
        account_id: &str,
        id: &str,
        sql: String,
        params: Vec<serde_json::Value>,
    ) -> Result<crate::sandbox::QueryResult, TenantError> {
        let opts = crate::WriteOptions { mode: crate::WriteMode::Alone, quota: 0, checkpoint: true };
        self.write_with(account_id, id, opts, move |conn, _, _| {
            crate::sandbox::run_console(conn, &sql, &params, std::time::Duration::from_secs(5))
        })
        .await
    }

    async fn write_with<T: Send + 'static>(
        &self,
        account_id: &str,
        id: &str,
        mut opts: crate::WriteOptions,
        f: impl FnOnce(&rusqlite::Connection, &std::path::Path, &str) -> Result<T, TenantError> + Send + 'static,
    ) -> Result<T, TenantError> {
        let d = self.usable(account_id, id).await?;
        let dir = self.files.dir(&d.region, &d.id)?.join("files");
        let now = self.now_text();
        opts.quota = self.quotas.of(&d.plan);
        let result = self.open.write(&d.region, &d.id, opts, move |conn| f(conn, &dir, &now)).await;
        match result {
            Err(e) if is_full(&e) => Err(TenantError::TooLarge(quota_message(&d.plan, opts.quota))),
            other => other,
        }
    }

    pub async fn contacts(
        &self,
        account_id: &str,
        id: &str,
        q: Option<String>,
        limit: i64,
    ) -> Result<Vec<app::Contact>, TenantError> {
        self.read_db(account_id, id, move |c| app::list(c, q.as_deref(), limit)).await
    }

    /// A page of the contacts of a database of this account, after `after`.
    pub async fn contacts_page(
        &self,
        account_id: &str,
        id: &str,
        q: Option<String>,
        limit: i64,
        after: Option<app::Cursor>,
    ) -> Result<app::ContactPage, TenantError> {
        self.read_db(account_id, id, move |c| app::page(c, q.as_deref(), limit, after.as_ref())).await
    }

    /// Writes an export archive (DB-5) and returns its path (in the database's folder).
    /// Prepares an export archive of a database of this account (DB-5).
    pub async fn export(&self, account_id: &str, id: &str) -> Result<(CustomerDb, PreparedExport), TenantError> {
        self.export_as(account_id, id, &Actor::Person { id: account_id.into() }, std::sync::Arc::new(|_, _| {})).await
    }

    /// The archive `tag` of an earlier export of this database, while it is
    /// kept for resuming; `None` (no tag) means the latest one.
    pub async fn resume_export(
        &self,
        account_id: &str,
        id: &str,
        tag: Option<&str>,
    ) -> Result<Option<(CustomerDb, PreparedExport)>, TenantError> {
        let d = self.get(account_id, id).await?;
        let tag = match tag {
            Some(t) => t.to_string(),
            None => match self.files.latest_export(&d.region, &d.id)? {
                Some(t) => t,
                None => return Ok(None),
            },
        };
        Ok(self.files.prepared_export(&d.region, &d.id, &tag)?.map(|path| (d, PreparedExport { path, tag })))
    }

    /// Prepares an export for `actor`, reporting progress (done, total bytes).
    /// Operators go through here too: the audit trail names who exported.
    pub async fn export_as(
        &self,
        account_id: &str,
        id: &str,
        actor: &Actor,
        progress: ExportProgress,
    ) -> Result<(CustomerDb, PreparedExport), TenantError> {
        self.export_with_reason(account_id, id, actor, None, progress).await
    }

    /// An export by staff or an operator must state why; the reason is in the
    /// audit record (SEC-1).
    pub async fn export_with_reason(
        &self,
        account_id: &str,
        id: &str,
        actor: &Actor,
        reason: Option<&str>,
        progress: ExportProgress,
    ) -> Result<(CustomerDb, PreparedExport), TenantError> {
        let d = self.get(account_id, id).await?;
        self.resident(&d.region, actor, Some(&format!("db:{}", d.id))).await?;
        let (files, region, dbid, name) = (self.files.clone(), d.region.clone(), d.id.clone(), d.name.clone());
        let now = self.clock.now().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let (path, tag) = blocking(move || files.export(&region, &dbid, &name, &now, &*progress)).await?;
        self.audit
            .record(
                actor,
                "database.exported",
                Some(seldesk_domain::Subject::person(account_id).as_str()),
                Some(&format!("db:{id}")),
                match reason {
                    Some(r) => serde_json::json!({ "reason": r }),
                    None => serde_json::json!({}),
                },
            )
            .await?;
        Ok((d, PreparedExport { path, tag }))
    }

    /// Upgrades a database of this account to the newest schema version in
    /// place: a copy is taken first (SQLite's backup API), every step runs in
    /// one transaction, the result is checked; on any failure the copy is put
    /// back, so the database is exactly as before. Returns (from, to).
    pub async fn upgrade(&self, account_id: &str, id: &str) -> Result<(i64, i64), TenantError> {
        let d = self.get(account_id, id).await?;
        self.resident(&d.region, &Actor::Person { id: account_id.into() }, Some(&format!("db:{}", d.id))).await?;
        if d.status != DbStatus::Active {
            return Err(TenantError::Conflict("Only an active database can be upgraded.".into()));
        }
        if d.schema_version >= SCHEMA_VERSION {
            return Err(TenantError::Conflict(format!(
                "The database is already at the newest version ({SCHEMA_VERSION})."
            )));
        }
        let dir = self.files.dir(&d.region, &d.id)?;
        // Alone on the database's writer: nothing commits between the copy
        // and the migration, so the way back loses no write.
        let opts = crate::WriteOptions { mode: crate::WriteMode::Alone, quota: u64::MAX, checkpoint: true };
        let (from, to) = self
            .open
            .write(&d.region, &d.id, opts, move |conn| {
                let copy = dir.join(".before-upgrade.sqlite");
                {
                    let mut target = rusqlite::Connection::open(&copy)?;
                    rusqlite::backup::Backup::new(conn, &mut target)?.run_to_completion(
                        256,
                        std::time::Duration::from_millis(1),
                        None,
                    )?;
                }
                let result = crate::files::migrate(conn).and_then(|v| {
                    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
                    if check == "ok" { Ok(v) } else { Err(TenantError::Internal(Fault::new("integrity check", check))) }
                });
                match result {
                    Ok(v) => {
                        let _ = std::fs::remove_file(&copy);
                        Ok(v)
                    }
                    Err(e) => {
                        // The way back: the copy taken before the first step.
                        let restored = rusqlite::Connection::open(&copy).and_then(|src| {
                            let mut live = rusqlite::Connection::open(dir.join("db.sqlite"))?;
                            rusqlite::backup::Backup::new(&src, &mut live)?.run_to_completion(
                                256,
                                std::time::Duration::from_millis(1),
                                None,
                            )
                        });
                        let _ = std::fs::remove_file(&copy);
                        restored?;
                        Err(TenantError::Conflict(format!(
                            "The upgrade could not be completed ({e}); the database is exactly as it was before."
                        )))
                    }
                }
            })
            .await?;
        sqlx::query("UPDATE databases SET schema_version = $1 WHERE id = $2")
            .bind(to)
            .bind(id)
            .execute(self.db.pool())
            .await?;
        self.audit_owner(account_id, id, "database.upgraded", serde_json::json!({ "from": from, "to": to })).await?;
        Ok((from, to))
    }

    /// A test upgrade (issue 11): a copy of the database, upgraded to the
    /// newest version, as a new database of the account named
    /// `<name>-upgrade-test` that the customer can open and check before the
    /// production upgrade. The copy is neutral: the Seldesk app in it sends
    /// no mail and runs no scheduled work, and it is marked as a test.
    pub async fn test_upgrade(&self, account_id: &str, id: &str) -> Result<CustomerDb, TenantError> {
        let d = self.get(account_id, id).await?;
        self.resident(&d.region, &Actor::Person { id: account_id.into() }, Some(&format!("db:{}", d.id))).await?;
        if d.schema_version >= SCHEMA_VERSION {
            return Err(TenantError::Conflict(format!(
                "The database is already at the newest version ({SCHEMA_VERSION})."
            )));
        }
        let mut name = format!("{}-upgrade-test", d.name.chars().take(45).collect::<String>());
        let taken: Vec<String> = sqlx::query_scalar("SELECT name FROM databases WHERE account_id = $1")
            .bind(account_id)
            .fetch_all(self.db.pool())
            .await?;
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{}-upgrade-test-{n}", d.name.chars().take(40).collect::<String>());
            n += 1;
        }
        let copy_id = uuid::Uuid::now_v7().simple().to_string();
        let (files, region, from, to) = (self.files.clone(), d.region.clone(), d.id.clone(), copy_id.clone());
        blocking(move || {
            files.duplicate(&region, &from, &to)?;
            let conn = files.open(&region, &to)?;
            let upgraded = crate::files::migrate(&conn);
            drop(conn);
            if let Err(e) = upgraded {
                let _ = files.destroy(&region, &to);
                return Err(TenantError::Conflict(format!(
                    "The test upgrade could not be completed ({e}); your database is unchanged."
                )));
            }
            Ok(())
        })
        .await?;
        // The copy is a trial whatever the original's plan: it costs nothing
        // and ends like any trial.
        let now = self.clock.now();
        let ends = d.trial_ends.filter(|_| d.plan == "trial").unwrap_or_else(|| self.policy.trial.length.after(now));
        sqlx::query(
            "INSERT INTO databases (id, account_id, name, region, plan, status, trial_ends_at, created_at, schema_version, test_of, home_node)
             VALUES ($1, $2, $3, $4, 'trial', 'active', $5, $6, $7, $8, $9)",
        )
        .bind(&copy_id)
        .bind(account_id)
        .bind(&name)
        .bind(&d.region)
        .bind(to_millis(ends))
        .bind(to_millis(now))
        .bind(SCHEMA_VERSION)
        .bind(id)
        .bind(self.node_name.clone())
        .execute(self.db.pool())
        .await?;
        self.audit_owner(
            account_id,
            id,
            "database.test_upgraded",
            serde_json::json!({ "copy": copy_id, "to": SCHEMA_VERSION }),
        )
        .await?;
        self.get(account_id, &copy_id).await
    }

    /// Refuses a name the account already uses.
    pub async fn ensure_name_free(&self, account_id: &str, name: &str) -> Result<(), TenantError> {
        let taken = sqlx::query("SELECT id FROM databases WHERE account_id = $1 AND name = $2")
            .bind(account_id)
            .bind(name)
            .fetch_optional(self.db.pool())
            .await?;
        if taken.is_some() {
            return Err(TenantError::Conflict(format!("You already have a database named \"{name}\".")));
        }
        Ok(())
    }

    /// Refuses a new trial when the account has started all it may
    /// (counted over every trial it started, removed ones included).
    async fn ensure_trial_left(&self, account_id: &str) -> Result<(), TenantError> {
        let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trial_starts WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(self.db.pool())
            .await?;
        if used >= i64::from(self.quotas.trials_per_account) {
            return Err(TenantError::PaymentRequired(format!(
                "You have used your {} free trials. Subscribe to one of your databases, or reactivate a cancelled one, to keep going.",
                self.quotas.trials_per_account
            )));
        }
        Ok(())
    }

    async fn record_trial(&self, account_id: &str, database_id: &str) -> Result<(), TenantError> {
        sqlx::query("INSERT INTO trial_starts (account_id, database_id, started_at) VALUES ($1, $2, $3)")
            .bind(account_id)
            .bind(database_id)
            .bind(to_millis(self.clock.now()))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Creates a new database from an export archive.
    pub async fn import(
        &self,
        account_id: &str,
        name: &str,
        region: Option<&str>,
        archive: PathBuf,
    ) -> Result<CustomerDb, TenantError> {
        let name = validate_name(name)?;
        let region = match region {
            Some(r) => self
                .policy
                .region(r)
                .filter(|x| x.hosting)
                .map(|x| x.id.clone())
                .ok_or_else(|| TenantError::invalid("region", format!("`{r}` is not a hosting region.")))?,
            None => self.policy.nearest_region(None).id.clone(),
        };
        self.ensure_name_free(account_id, &name).await?;
        self.ensure_trial_left(account_id).await?;
        self.placed(&region, account_id).await?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        {
            let (files, region, id) = (self.files.clone(), region.clone(), id.clone());
            blocking(move || files.import(&region, &id, &archive).map(|_| ())).await?;
        }
        self.record_trial(account_id, &id).await?;
        // An imported or restored database is a new database: a trial until paid for.
        let now = self.clock.now();
        sqlx::query("INSERT INTO databases (id, account_id, name, region, plan, status, trial_ends_at, created_at, schema_version, home_node) VALUES ($1, $2, $3, $4, 'trial', 'active', $5, $6, $7, $8)")
            .bind(&id)
            .bind(account_id)
            .bind(&name)
            .bind(&region)
            .bind(to_millis(self.policy.trial.length.after(now)))
            .bind(to_millis(now))
            .bind(SCHEMA_VERSION)
            .bind(self.node_name.clone())
            .execute(self.db.pool())
            .await?;
        self.audit_owner(account_id, &id, "database.imported", serde_json::json!({})).await?;
        self.get(account_id, &id).await
    }

    /// The databases whose home is node `node`.
    pub async fn homed_on(&self, node: &str) -> Result<Vec<CustomerDb>, TenantError> {
        let sql = format!("SELECT {COLUMNS} FROM databases WHERE home_node = $1 ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(node).fetch_all(self.db.pool()).await?;
        rows.iter().map(|r| self.record(r)).collect()
    }

    /// Takes database `d` over on this node from a folder holding its
    /// restored `db.sqlite` and `files/` (its home node was lost): checked,
    /// brought to the newest schema, moved into place under its own id, and
    /// this node becomes its home. Refused when a copy is already here.
    pub async fn take_over(&self, d: &CustomerDb, source: PathBuf, actor: &Actor) -> Result<(), TenantError> {
        self.resident(&d.region, actor, Some(&format!("db:{}", d.id))).await?;
        let (files, region, id) = (self.files.clone(), d.region.clone(), d.id.clone());
        blocking(move || {
            let target = files.dir(&region, &id)?;
            if target.exists() {
                return Err(TenantError::Conflict(format!("database {id} already has a copy on this node")));
            }
            {
                let conn = rusqlite::Connection::open(source.join("db.sqlite"))?;
                let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
                if check != "ok" {
                    return Err(TenantError::Internal(Fault::new("the restored copy fails its check", check)));
                }
                crate::files::migrate(&conn)?;
            }
            std::fs::create_dir_all(source.join("files"))?;
            std::fs::rename(&source, &target)?;
            Ok(())
        })
        .await?;
        let lost: Option<String> = sqlx::query_scalar("SELECT home_node FROM databases WHERE id = $1")
            .bind(&d.id)
            .fetch_optional(self.db.pool())
            .await?
            .flatten();
        // A move the lost node was sending is over: the copy it was making
        // is dropped by its receiver when it next starts.
        sqlx::query(
            "UPDATE databases SET home_node = $1, schema_version = $2,
                 status = CASE WHEN status = 'moving' THEN 'active' ELSE status END,
                 moving_from = NULL, moving_to = NULL, moving_source = NULL, moving_target = NULL,
                 move_done = 0, move_total = 0
             WHERE id = $3",
        )
        .bind(self.node_name.clone())
        .bind(SCHEMA_VERSION)
        .bind(&d.id)
        .execute(self.db.pool())
        .await?;
        // Its jobs (a backup, a removal) run here now.
        if let (Some(lost), Some(me)) = (lost, self.node_name.as_deref()) {
            self.queue
                .hand_over(&lost, me, &d.id)
                .await
                .map_err(|e| TenantError::Internal(Fault::new("cannot hand its jobs over", e)))?;
        }
        Ok(())
    }

    /// Creates a new database of `account_id` from a folder holding
    /// `db.sqlite` and `files/` (a restored backup, made under the region's
    /// folder): checked, brought to the newest schema, then moved into place.
    pub async fn adopt(
        &self,
        account_id: &str,
        name: &str,
        region: &str,
        source: PathBuf,
    ) -> Result<CustomerDb, TenantError> {
        let name = validate_name(name)?;
        self.ensure_name_free(account_id, &name).await?;
        self.placed(region, account_id).await?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        {
            let (files, region, id) = (self.files.clone(), region.to_string(), id.clone());
            blocking(move || {
                {
                    // The caller verified every byte against a consistent snapshot's
                    // hashes; reading the schema proves SQLite opens it.
                    let conn = rusqlite::Connection::open(source.join("db.sqlite"))?;
                    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))?;
                    crate::files::migrate(&conn)?;
                }
                std::fs::create_dir_all(source.join("files"))?;
                let target = files.dir(&region, &id)?;
                std::fs::rename(&source, &target)?;
                Ok(())
            })
            .await?;
        }
        // An imported or restored database is a new database: a trial until paid for.
        let now = self.clock.now();
        sqlx::query("INSERT INTO databases (id, account_id, name, region, plan, status, trial_ends_at, created_at, schema_version, home_node) VALUES ($1, $2, $3, $4, 'trial', 'active', $5, $6, $7, $8)")
            .bind(&id)
            .bind(account_id)
            .bind(&name)
            .bind(region)
            .bind(to_millis(self.policy.trial.length.after(now)))
            .bind(to_millis(now))
            .bind(SCHEMA_VERSION)
            .bind(self.node_name.clone())
            .execute(self.db.pool())
            .await?;
        self.audit_owner(account_id, &id, "database.restored", serde_json::json!({})).await?;
        self.get(account_id, &id).await
    }

    /// Cancels: the database is deactivated and destroyed after the grace period (DB-7).
    pub async fn cancel(&self, account_id: &str, id: &str) -> Result<CustomerDb, TenantError> {
        let d = self.get(account_id, id).await?;
        if d.status != DbStatus::Active {
            return Err(TenantError::Conflict("Only an active database can be cancelled.".into()));
        }
        self.deactivate(&d, "cancelled").await?;
        self.get(account_id, id).await
    }

    async fn deactivate(&self, d: &CustomerDb, why: &str) -> Result<(), TenantError> {
        sqlx::query(
            "UPDATE databases SET status = 'deactivated', deactivated_at = $1 WHERE id = $2 AND status = 'active'",
        )
        .bind(to_millis(self.clock.now()))
        .bind(&d.id)
        .execute(self.db.pool())
        .await?;
        self.audit
            .record(
                &Actor::Person { id: d.account_id.clone() },
                "database.deactivated",
                Some(seldesk_domain::Subject::person(&d.account_id).as_str()),
                Some(&format!("db:{}", d.id)),
                serde_json::json!({ "why": why }),
            )
            .await?;
        Ok(())
    }

    /// Deactivates a database for a reason other than its owner's choice
    /// (a subscription that lapsed after failed renewals, DB-7); the grace
    /// period starts now.
    pub async fn suspend(&self, id: &str, why: &str) -> Result<CustomerDb, TenantError> {
        let d = self.find(id).await?;
        if d.status == DbStatus::Active {
            self.deactivate(&d, why).await?;
        }
        self.find(id).await
    }

    /// A paid subscription took effect: the database becomes a subscribed
    /// one (a trial converts) and, if it was deactivated within its grace
    /// period, active again.
    pub async fn activate_paid(&self, id: &str) -> Result<CustomerDb, TenantError> {
        let d = self.find(id).await?;
        let now = to_millis(self.clock.now());
        sqlx::query("UPDATE databases SET plan = 'subscribed', converted_at = CASE WHEN plan = 'trial' THEN $1 ELSE converted_at END, trial_ends_at = NULL, status = CASE WHEN status = 'deactivated' THEN 'active' ELSE status END, deactivated_at = CASE WHEN status = 'deactivated' THEN NULL ELSE deactivated_at END, reminded_at = NULL WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.db.pool())
            .await?;
        self.audit_owner(&d.account_id, id, "database.subscribed", serde_json::json!({ "was": d.plan })).await?;
        self.find(id).await
    }

    /// Reactivates within the grace period.
    pub async fn reactivate(&self, account_id: &str, id: &str) -> Result<CustomerDb, TenantError> {
        let d = self.get(account_id, id).await?;
        if d.status != DbStatus::Deactivated {
            return Err(TenantError::Conflict("Only a deactivated database can be reactivated.".into()));
        }
        if d.reactivate_until.is_some_and(|u| u <= self.clock.now()) {
            return Err(TenantError::Conflict("The grace period is over: this database is being destroyed.".into()));
        }
        // The plan never changes here: only a confirmed payment makes a
        // database subscribed (billing decides whether one is due first).
        sqlx::query("UPDATE databases SET status = 'active', deactivated_at = NULL, reminded_at = NULL WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        self.audit_owner(account_id, id, "database.reactivated", serde_json::json!({})).await?;
        self.get(account_id, id).await
    }

    /// Removes database `id` if its grace period after deactivation is over
    /// (the [`JOB_EXPIRE`] job, on its home node), as a retention run does:
    /// erased with its files, in the erasure log and the audit trail.
    /// Returns whether it was removed (false: reactivated, gone, or not due).
    pub async fn expire(&self, id: &str) -> Result<bool, TenantError> {
        let row = sqlx::query("SELECT account_id, region, status, deactivated_at FROM databases WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(r) = row else { return Ok(false) };
        let (account_id, region, status): (String, String, String) =
            (r.try_get("account_id")?, r.try_get("region")?, r.try_get("status")?);
        let deactivated: Option<i64> = r.try_get("deactivated_at")?;
        let due = match (deactivated, self.grace()) {
            (Some(at), Some(grace)) => grace.after(from_millis(at)) <= self.clock.now(),
            _ => false,
        };
        if status != "deactivated" || !due {
            return Ok(false);
        }
        destroy(&self.db, &self.files, &self.open, &region, id).await?;
        let subject = seldesk_domain::Subject::person(&account_id).into_string();
        self.erasure_log
            // As a retention run records the databases it removes itself.
            .record("customer_database", &[(Some(&subject), id)], ErasureReason::Retention, &Actor::System)
            .await?;
        self.audit
            .record(
                &Actor::System,
                "database.destroyed",
                Some(&subject),
                Some(&format!("db:{id}")),
                serde_json::json!({ "why": "grace period over", "region": region }),
            )
            .await?;
        Ok(true)
    }

    /// Removes a database at once (DB-6); the name must be typed to confirm.
    /// Returns the date by which backups no longer hold it.
    pub async fn remove(&self, account_id: &str, id: &str, confirm: &str) -> Result<OffsetDateTime, TenantError> {
        let d = self.get(account_id, id).await?;
        if confirm.trim() != d.name {
            return Err(TenantError::invalid(
                "confirm",
                format!("Type the database's name, \"{}\", to confirm its removal.", d.name),
            ));
        }
        destroy(&self.db, &self.files, &self.open, &d.region, &d.id).await?;
        let subject = seldesk_domain::Subject::person(account_id).into_string();
        self.erasure_log
            .record(
                "customer_database",
                &[(Some(&subject), &format!("db:{id}"))],
                ErasureReason::DatabaseRemoved,
                &Actor::Person { id: account_id.into() },
            )
            .await?;
        self.audit
            .record(
                &Actor::Person { id: account_id.into() },
                "database.removed",
                Some(&subject),
                Some(&format!("db:{id}")),
                serde_json::json!({}),
            )
            .await?;
        Ok(self.policy.backups.max_age.after(self.clock.now()))
    }

    /// Deactivated databases whose destruction is `within` away and whose
    /// owner has not been reminded yet.
    pub async fn due_reminders(&self, within: time::Duration) -> Result<Vec<CustomerDb>, TenantError> {
        let Some(grace) = self.grace() else { return Ok(Vec::new()) };
        let sql = format!("SELECT {COLUMNS} FROM databases WHERE status = 'deactivated' AND reminded_at IS NULL");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db.pool()).await?;
        let now = self.clock.now();
        let mut out = Vec::new();
        for r in &rows {
            let d = self.record(r)?;
            if d.deactivated_at.is_some_and(|at| grace.after(at) - within <= now) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Records that the owner was reminded.
    pub async fn mark_reminded(&self, id: &str) -> Result<(), TenantError> {
        sqlx::query("UPDATE databases SET reminded_at = $1 WHERE id = $2")
            .bind(to_millis(self.clock.now()))
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// A staff member of the finance role makes a database subscribed
    /// without a payment until `until` (a goodwill gesture, a contract paid
    /// by bank transfer): the one way besides a confirmed payment, stated
    /// with a reason and audited. Returns the database.
    pub async fn grant_paid(
        &self,
        staff: &Actor,
        database_id: &str,
        until: OffsetDateTime,
        reason: &str,
    ) -> Result<CustomerDb, TenantError> {
        if !matches!(staff, Actor::Staff { .. }) || !staff.has_any_role(&[seldesk_domain::Role::Finance]) {
            return Err(TenantError::Forbidden("Only the finance role grants a subscription.".into()));
        }
        if reason.trim().chars().count() < 10 {
            return Err(TenantError::invalid(
                "reason",
                "Say why the subscription is granted (at least 10 characters).",
            ));
        }
        if seldesk_privacy::card::contains_card_number(reason) {
            return Err(TenantError::invalid("reason", seldesk_privacy::card::CARD_NUMBER_REFUSED));
        }
        let now = self.clock.now();
        if until <= now {
            return Err(TenantError::invalid("until", "Grant a subscription until a date in the future."));
        }
        let d = self.find(database_id).await?;
        sqlx::query(
            "UPDATE databases SET plan = 'subscribed', trial_ends_at = NULL, granted_until = $1,
                 converted_at = CASE WHEN plan = 'trial' THEN $2 ELSE converted_at END,
                 status = CASE WHEN status = 'deactivated' THEN 'active' ELSE status END,
                 deactivated_at = CASE WHEN status = 'deactivated' THEN NULL ELSE deactivated_at END
             WHERE id = $3",
        )
        .bind(to_millis(until))
        .bind(to_millis(now))
        .bind(database_id)
        .execute(self.db.pool())
        .await?;
        self.audit
            .record(
                staff,
                "database.subscription_granted",
                Some(seldesk_domain::Subject::person(&d.account_id).as_str()),
                Some(&format!("db:{database_id}")),
                serde_json::json!({ "until": until.date().to_string(), "reason": reason.trim() }),
            )
            .await?;
        self.find(database_id).await
    }

    /// Deactivates every unpaid database (DB-9): trials whose end has
    /// passed (or that have none), and subscribed databases with no
    /// subscription in force (active or past due, or cancelled within its
    /// paid period). Returns how many.
    pub async fn expire_trials(&self) -> Result<u64, TenantError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM databases d WHERE d.status = 'active' AND (
                 (d.plan = 'trial' AND (d.trial_ends_at IS NULL OR d.trial_ends_at <= $1))
                 OR (d.plan <> 'trial' AND COALESCE(d.granted_until, 0) <= $1 AND NOT EXISTS (
                     SELECT 1 FROM subscriptions s WHERE s.database_id = d.id
                       AND (s.status IN ('active', 'past_due') OR (s.status = 'cancelled' AND s.period_end > $1)))))"
        );
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to_millis(self.clock.now())).fetch_all(self.db.pool()).await?;
        let mut n = 0;
        for r in &rows {
            let d = self.record(r)?;
            let why = if d.plan == "trial" { "trial ended" } else { "not paid" };
            self.deactivate(&d, why).await?;
            n += 1;
        }
        Ok(n)
    }
}

/// Removes a database for good: its writer drains and closes first, and
/// nothing opens it again.
async fn destroy(
    db: &Db,
    files: &TenantFiles,
    open: &crate::OpenDatabases,
    region: &str,
    id: &str,
) -> Result<(), TenantError> {
    open.pause(region, id).await?;
    {
        let (files, region, id) = (files.clone(), region.to_string(), id.to_string());
        blocking(move || files.destroy(&region, &id)).await?;
    }
    sqlx::query("DELETE FROM databases WHERE id = $1").bind(id).execute(db.pool()).await?;
    Ok(())
}

/// Destroys databases whose grace period after cancellation is over (DB-7, DB-9).
/// A database of a region this node does not serve is removed by its home
/// node: the run queues a [`JOB_EXPIRE`] job there (once per database).
pub struct DatabaseEraser {
    pub db: Db,
    pub files: TenantFiles,
    pub open: crate::OpenDatabases,
    pub queue: seldesk_jobs::Queue,
}

/// Job kind: remove one database whose grace period is over, on its home
/// node (queued by a retention run on a node that does not serve its region).
pub const JOB_EXPIRE: &str = "databases.expire";

/// The job that removes one database past its grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ExpireJob {
    pub database: String,
}

impl seldesk_jobs::JobPayload for ExpireJob {
    const KIND: &'static str = JOB_EXPIRE;
}

impl Eraser for DatabaseEraser {
    fn category(&self) -> &'static str {
        "customer_database"
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT id, account_id, region, home_node, deactivated_at FROM databases WHERE status = 'deactivated' AND deactivated_at <= $1")
                .bind(to_millis(cutoff))
                .fetch_all(self.db.pool())
                .await?;
            // A database of another node's region is that node's to remove:
            // a job there does it (the census counts it until it is gone).
            for r in rows.iter().filter(|r| r.try_get::<String, _>("region").is_ok_and(|g| !self.files.serves(&g))) {
                let (id, home): (String, Option<String>) = (r.try_get("id")?, r.try_get("home_node")?);
                let Some(home) = home else { continue };
                let job = seldesk_jobs::NewJob::of(&ExpireJob { database: id.clone() })
                    .dedupe(format!("expire:{id}"))
                    .on_node(home);
                self.queue
                    .enqueue(job)
                    .await
                    .map_err(|e| PrivacyError::Invalid(format!("cannot queue a removal: {e}")))?;
            }
            rows.iter()
                .filter(|r| r.try_get::<String, _>("region").is_ok_and(|region| self.files.serves(&region)))
                .map(|r| {
                    Ok(Candidate {
                        record: r.try_get::<String, _>("id")?,
                        subject: Some(
                            seldesk_domain::Subject::person(&r.try_get::<String, _>("account_id")?).into_string(),
                        ),
                        start: from_millis(r.try_get("deactivated_at")?),
                        country: None,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(Into::into)
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(async move {
            let mut n = 0;
            for c in records {
                let row = sqlx::query("SELECT region FROM databases WHERE id = $1")
                    .bind(&c.record)
                    .fetch_optional(self.db.pool())
                    .await?;
                let Some(row) = row else { continue };
                let region: String = row.try_get("region")?;
                destroy(&self.db, &self.files, &self.open, &region, &c.record)
                    .await
                    .map_err(|e| PrivacyError::Invalid(e.to_string()))?;
                n += 1;
            }
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n, MIN(deactivated_at) AS oldest FROM databases WHERE status = 'deactivated'",
            )
            .fetch_one(self.db.pool())
            .await?;
            let n: i64 = row.try_get("n")?;
            let oldest: Option<i64> = row.try_get("oldest")?;
            Ok(Census { live: u64::try_from(n).unwrap_or(0), oldest: oldest.map(from_millis) })
        })
    }
}

/// The customer databases of an account holder: on erasure each is removed
/// as the owner's "Remove" removes it (DB-6), its export archives with it,
/// and the receipt names it with the day its backups are gone.
#[derive(Clone)]
pub struct CustomerDatabases {
    pub db: Db,
    pub files: TenantFiles,
    pub open: crate::OpenDatabases,
    pub policy: Arc<Policy>,
    pub erasure_log: seldesk_privacy::ErasureLog,
}

impl seldesk_privacy::PersonalDataStore for CustomerDatabases {
    fn section(&self) -> &'static str {
        "customer_databases"
    }

    fn category(&self) -> &'static str {
        "customer_database"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["databases", "trial_starts"]
    }

    fn export<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<serde_json::Value, PrivacyError>> {
        Box::pin(async move {
            let Some(account) = subject.strip_prefix("person:") else { return Ok(serde_json::Value::Null) };
            let rows = sqlx::query("SELECT id, name, region, plan, status, created_at FROM databases WHERE account_id = $1 ORDER BY created_at")
                .bind(account)
                .fetch_all(self.db.pool())
                .await?;
            let list = rows
                .iter()
                .map(|r| {
                    Ok(serde_json::json!({
                        "id": r.try_get::<String, _>("id")?,
                        "name": r.try_get::<String, _>("name")?,
                        "region": r.try_get::<String, _>("region")?,
                        "plan": r.try_get::<String, _>("plan")?,
                        "status": r.try_get::<String, _>("status")?,
                        "created_at": from_millis(r.try_get("created_at")?).to_string(),
                        "note": "The content of the database is yours: export it from its page in the control panel.",
                    }))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok(serde_json::Value::Array(list))
        })
    }

    fn erase<'a>(
        &'a self,
        person: &'a seldesk_privacy::Person,
    ) -> BoxFuture<'a, Result<seldesk_privacy::Erased, PrivacyError>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT id, name, region FROM databases WHERE account_id = $1 ORDER BY created_at")
                .bind(&person.account_id)
                .fetch_all(self.db.pool())
                .await?;
            let backups_gone = self.policy.backups.max_age.after(person.at).date();
            let mut out = seldesk_privacy::Erased::default();
            sqlx::query("DELETE FROM trial_starts WHERE account_id = $1")
                .bind(&person.account_id)
                .execute(self.db.pool())
                .await?;
            for r in &rows {
                let (id, name, region): (String, String, String) =
                    (r.try_get("id")?, r.try_get("name")?, r.try_get("region")?);
                destroy(&self.db, &self.files, &self.open, &region, &id)
                    .await
                    .map_err(|e| PrivacyError::Invalid(e.to_string()))?;
                self.erasure_log
                    .record(
                        "customer_database",
                        &[(Some(person.subject.as_str()), format!("db:{id}").as_str())],
                        ErasureReason::PersonRequest,
                        &Actor::System,
                    )
                    .await?;
                out.records += 1;
                out.erased.push(format!(
                    "your database \u{201c}{name}\u{201d}, with its files and exports (its copies in our encrypted backups are destroyed by {backups_gone})"
                ));
            }
            Ok(out)
        })
    }
}

impl seldesk_privacy::AccountActivity for CustomerDatabases {
    fn activity<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<seldesk_privacy::Activity, PrivacyError>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM databases WHERE account_id = $1")
                .bind(account_id)
                .fetch_one(self.db.pool())
                .await?;
            // Any database, even one deactivated in its grace period, is use.
            Ok(if n > 0 { seldesk_privacy::Activity::Live } else { seldesk_privacy::Activity::None })
        })
    }
}
