//! Backups of the platform: which databases, consistent snapshots while they
//! stay in use, restores that replay the erasure log, staff restores with a
//! reason (BAK-3), retention from the policy file (BAK-2).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use seldesk_domain::{Actor, Clock, Policy};
use seldesk_privacy::AuditLog;
use seldesk_store::{Db, to_millis};
use seldesk_tenants::changes::Consistent;
use seldesk_tenants::{CustomerDb, Databases, DbStatus, TenantError, TenantFiles};
use serde::Serialize;
use sqlx::Row;

use crate::engine::{Changed, Retention, SnapshotInfo, Vault, VaultSettings};
use crate::store::RegionStore;
use crate::{CheckProblem, PruneReport, RepairReport, VaultError};

/// Job kind: back up every database.
pub const JOB_BACKUP: &str = "backup.run";
/// Job kind: apply snapshot retention.
pub const JOB_PRUNE: &str = "backup.prune";
/// Job kind: anchor the audit trail's head in every backup region.
pub const JOB_ANCHOR: &str = "backup.anchor_audit";
/// Where the audit trail's anchors live in the vault: `anchors/audit/…`.
const AUDIT_ANCHORS: &str = "audit";

/// The control-plane database's name in the vault.
pub const CONTROL_PLANE: &str = "control-plane";

/// What one database's backup did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupOutcome {
    pub database: String,
    pub name: String,
    pub snapshot: Option<SnapshotInfo>,
    pub error: Option<String>,
}

/// The backup service.
#[derive(Clone)]
pub struct Backups {
    db: Db,
    clock: Arc<dyn Clock>,
    policy: Arc<Policy>,
    audit: AuditLog,
    databases: Databases,
    files: TenantFiles,
    work: PathBuf,
    control_plane: ControlPlane,
    vault: Arc<Vault>,
    queue: Option<seldesk_jobs::Queue>,
}

/// Job kind: restore a snapshot into a new database for its owner.
pub const JOB_RESTORE: &str = "backup.restore";

/// An owner's restore as the control panel shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreStatus {
    pub id: String,
    pub database_id: String,
    pub snapshot: String,
    pub name: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    pub done_bytes: i64,
    pub total_bytes: i64,
    pub new_database_id: Option<String>,
    pub error: Option<String>,
}

impl RestoreStatus {
    /// Percent done, for a progress bar.
    pub fn percent(&self) -> i64 {
        if self.status == "done" {
            100
        } else if self.total_bytes > 0 {
            (self.done_bytes * 100 / self.total_bytes).clamp(0, 99)
        } else {
            0
        }
    }

    pub fn finished(&self) -> bool {
        self.status == "done" || self.status == "failed"
    }
}

/// The control-plane database, as the backup sees it.
#[derive(Debug, Clone)]
pub enum ControlPlane {
    /// The embedded SQLite file: copied with the online backup API.
    Sqlite(PathBuf),
    /// PostgreSQL: dumped with `pg_dump --format=custom` (the same major
    /// version as the server must be installed on the node).
    Postgres(String),
}

impl ControlPlane {
    /// From the control plane's URL.
    pub fn from_url(url: &str) -> Option<Self> {
        if let Some(p) = url.strip_prefix("sqlite://") {
            return Some(Self::Sqlite(PathBuf::from(p.split('?').next().unwrap_or(p))));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Some(Self::Postgres(url.to_string()));
        }
        None
    }
}

/// How well one database is protected.
#[derive(Debug, Clone)]
pub struct Protection {
    pub database: CustomerDb,
    /// Its newest commit every backup region holds.
    pub streamed_to: Option<time::OffsetDateTime>,
    /// Its newest snapshot.
    pub snapshot: Option<time::OffsetDateTime>,
}

/// The reason a restore is recorded with: staff and operators give one
/// (BAK-3); the owner's own request is its reason.
fn restore_reason<'a>(owner: Option<&str>, reason: &'a str) -> Result<&'a str, VaultError> {
    let reason = reason.trim();
    match (owner, reason.len()) {
        (Some(_), 0) => Ok("requested by the owner"),
        (None, n) if n < 5 => Err(VaultError::Invalid(
            "A restore by staff needs a reason (a ticket, a legal request): backups of deleted data are used only to keep backups whole unless the customer or the law requires it.".into(),
        )),
        _ => Ok(reason),
    }
}

/// How an owner restore to a moment names what it restores from.
const AT_PREFIX: &str = "at:";

/// What a point-in-time restore starts from and replays.
#[derive(Debug, Clone)]
pub struct PointInTimePlan {
    pub snapshot: SnapshotInfo,
    pub segments: Vec<crate::stream::SegmentRow>,
    /// The restore holds every change shipped up to this moment.
    pub shipped_to: time::OffsetDateTime,
}

/// The file name of a PostgreSQL control-plane dump inside a snapshot.
pub const PG_DUMP_FILE: &str = "control.pgdump";

/// Progress callback: bytes done, bytes in all.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

impl Backups {
    /// Opens the vault in `<data>/backups/<region>/` for each backup region
    /// of the policy, with the master key in `<data>/keys/vault.key`.
    /// Returns true as well when the master key was just made.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        data: &Path,
        db: Db,
        clock: Arc<dyn Clock>,
        policy: Arc<Policy>,
        audit: AuditLog,
        databases: Databases,
        control_plane: ControlPlane,
        stores: &std::collections::BTreeMap<String, String>,
    ) -> Result<(Self, bool), VaultError> {
        if let Some(unknown) = stores.keys().find(|k| !policy.regions.iter().any(|r| r.backup && &r.id == *k)) {
            return Err(VaultError::Invalid(format!(
                "backup_stores.{unknown}: `{unknown}` is not a backup region of the policy file"
            )));
        }
        let regions: Vec<RegionStore> = policy
            .regions
            .iter()
            .filter(|r| r.backup)
            .map(|r| match stores.get(&r.id) {
                // A bucket per region in production; a folder by default.
                Some(url) if url.contains("://") && !url.starts_with("file://") => {
                    RegionStore::remote(r.id.clone(), url)
                }
                Some(dir) => Ok(RegionStore::new(r.id.clone(), dir.trim_start_matches("file://"))),
                None => Ok(RegionStore::new(r.id.clone(), data.join("backups").join(&r.id))),
            })
            .collect::<Result<_, _>>()?;
        let (vault, created) = Vault::open(regions, &data.join("keys").join("vault.key"), VaultSettings::default())?;
        let vault = vault.with_change_maps(data.join("backups").join(".maps"));
        // The same files as the databases': the same regions, nothing else (RES-1).
        let files = databases.files().clone();
        Ok((
            Self {
                db,
                clock,
                policy,
                audit,
                databases,
                files,
                work: data.join("backups").join(".work"),
                control_plane,
                vault: Arc::new(vault),
                queue: None,
            },
            created,
        ))
    }

    /// The job queue owner restores go through.
    pub fn with_queue(mut self, queue: seldesk_jobs::Queue) -> Self {
        self.queue = Some(queue);
        self
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The newest commit of `database` every backup region holds, if any
    /// was streamed: what a restore to now would hold.
    pub async fn protected_up_to(&self, database: &str) -> Result<Option<time::OffsetDateTime>, VaultError> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(last_at) FROM stream_segments WHERE database_id = $1")
            .bind(database)
            .fetch_one(self.db.pool())
            .await?;
        Ok(last.map(seldesk_store::from_millis))
    }

    /// How far back the owner of `database` may go: its plan's window in
    /// the policy file (`backups.point_in_time`).
    fn plan_window(&self, plan: &str) -> seldesk_domain::policy::Period {
        self.policy.backups.point_in_time.of(plan)
    }

    /// Refuses a moment further back than the database's plan allows its owner.
    async fn within_plan_window(&self, database: &str, at: time::OffsetDateTime) -> Result<(), VaultError> {
        let d = self.databases.find(database).await?;
        let window = self.plan_window(&d.plan);
        let now = self.clock.now();
        if window.after(at) < now {
            return Err(VaultError::Refused(format!(
                "Your plan lets you restore this database to a moment of the last {window}: choose one after {}.",
                window.before(now)
            )));
        }
        Ok(())
    }

    /// The moments the owner of `database` can restore it to now: from a
    /// second after the oldest snapshot taken during its current chain of
    /// streamed commits (and no further back than its plan allows) to its
    /// newest commit every region holds.
    pub async fn restore_window(
        &self,
        database: &str,
    ) -> Result<Option<(time::OffsetDateTime, time::OffsetDateTime)>, VaultError> {
        let floor = match self.databases.find(database).await {
            Ok(d) => to_millis(self.plan_window(&d.plan).before(self.clock.now())),
            Err(TenantError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let segments = crate::stream::segments_of(&self.db, database).await?;
        let Some(started) = segments.iter().map(|s| s.chain_started_ms).max() else { return Ok(None) };
        let to = segments.iter().filter(|s| s.chain_started_ms == started).map(|s| s.last_ms).max().unwrap_or(started);
        let first =
            self.list(Some(database)).await?.into_iter().map(|s| to_millis(s.taken_at)).filter(|t| *t >= started).min();
        // Nothing the plan still reaches: no window.
        if to < floor {
            return Ok(None);
        }
        Ok(first.map(|f| {
            let from = (f + 1000).max(floor);
            (seldesk_store::from_millis(from), seldesk_store::from_millis(to.max(from)))
        }))
    }

    /// Queues a restore of the owner's database as it was at `at` into a new
    /// database (a point-in-time restore); returns its id, for the progress
    /// page. Checked now: the database is theirs, the moment can be
    /// restored, the name is valid and free.
    pub async fn start_owner_restore_at(
        &self,
        account_id: &str,
        database_id: &str,
        at: time::OffsetDateTime,
        name: &str,
    ) -> Result<String, VaultError> {
        self.databases.get(account_id, database_id).await?;
        self.point_in_time_plan(database_id, to_millis(at)).await?;
        self.start_owner_restore_of(account_id, database_id, &format!("{AT_PREFIX}{}", to_millis(at)), name).await
    }

    /// Each database with its newest streamed commit and newest snapshot.
    pub async fn protection(&self) -> Result<Vec<Protection>, VaultError> {
        let shipped: std::collections::HashMap<String, i64> =
            sqlx::query("SELECT database_id, MAX(last_at) AS last FROM stream_segments GROUP BY database_id")
                .fetch_all(self.db.pool())
                .await?
                .iter()
                .map(|r| Ok((r.try_get("database_id")?, r.try_get("last")?)))
                .collect::<Result<_, sqlx::Error>>()?;
        let mut snapshots: std::collections::HashMap<String, time::OffsetDateTime> = Default::default();
        for s in self.list(None).await? {
            let e = snapshots.entry(s.database.clone()).or_insert(s.taken_at);
            *e = (*e).max(s.taken_at);
        }
        Ok(self
            .databases
            .list_all()
            .await?
            .into_iter()
            .map(|d| Protection {
                streamed_to: shipped.get(&d.id).copied().map(seldesk_store::from_millis),
                snapshot: snapshots.get(&d.id).copied(),
                database: d,
            })
            .collect())
    }

    /// A shipper of this node's commits to the vault's regions, holding at
    /// most `max_bytes` of them while a region is slow.
    pub fn shipper(&self, max_bytes: usize) -> crate::stream::Shipper {
        crate::stream::Shipper::new(self.vault.clone(), self.db.clone(), self.clock.clone(), max_bytes)
    }

    /// Backs up every active or deactivated database and the control plane,
    /// or just `only`. A failure of one database does not stop the others.
    pub async fn run(&self, only: Option<&str>, progress: Progress) -> Result<Vec<BackupOutcome>, VaultError> {
        let targets: Vec<CustomerDb> = match only {
            // One row, not every database's (each listed with its folder's size).
            Some(id) => match self.databases.find(id).await {
                Ok(d) => vec![d],
                Err(TenantError::NotFound(_)) => {
                    return Err(VaultError::NotFound(format!("no database {id} (see `seldesk db list`)")));
                }
                Err(e) => return Err(e.into()),
            },
            // The databases of this node's regions: another node backs up its own.
            None => {
                let all = self.databases.list_all().await?;
                all.into_iter()
                    .filter(|d| matches!(d.status, DbStatus::Active | DbStatus::Deactivated))
                    .filter(|d| self.files.serves(&d.region))
                    .collect()
            }
        };
        let mut out = Vec::new();
        for d in &targets {
            let r = self.backup_one(d, progress.clone()).await;
            out.push(BackupOutcome {
                database: d.id.clone(),
                name: d.name.clone(),
                error: r.as_ref().err().map(ToString::to_string),
                snapshot: r.ok(),
            });
        }
        if only.is_none() {
            let r = self.backup_control_plane(self.control_plane.clone(), progress.clone()).await;
            out.push(BackupOutcome {
                database: CONTROL_PLANE.into(),
                name: "control plane".into(),
                error: r.as_ref().err().map(ToString::to_string),
                snapshot: r.ok(),
            });
        }
        let failed = out.iter().filter(|o| o.error.is_some()).count();
        self.audit
            .record(
                &Actor::System,
                "backup.run",
                None,
                None,
                serde_json::json!({ "databases": out.len(), "failed": failed }),
            )
            .await?;
        self.anchor_audit().await?;
        Ok(out)
    }

    /// Anchors the audit trail's head in every backup region (SEC-1): once
    /// there, removing the newest entries is caught by `audit verify`.
    pub async fn anchor_audit(&self) -> Result<seldesk_privacy::audit::Anchor, VaultError> {
        let anchor = self.audit.anchor().await?;
        let bytes = serde_json::to_vec(&anchor).map_err(|e| VaultError::Invalid(e.to_string()))?;
        let (vault, now) = (self.vault.clone(), self.clock.now());
        blocking(move || vault.put_anchor(AUDIT_ANCHORS, &bytes, now)).await?;
        Ok(anchor)
    }

    /// Every anchor of the audit trail in the vault; one that cannot be
    /// read as an anchor is returned as a problem.
    pub async fn audit_anchors(&self) -> Result<Vec<seldesk_privacy::audit::Anchor>, VaultError> {
        let vault = self.vault.clone();
        let raw = blocking(move || vault.anchors(AUDIT_ANCHORS)).await?;
        raw.iter()
            .map(|b| {
                serde_json::from_slice(b)
                    .map_err(|e| VaultError::Corrupt(format!("an audit anchor is unreadable: {e}")))
            })
            .collect()
    }

    async fn backup_one(&self, d: &CustomerDb, progress: Progress) -> Result<SnapshotInfo, VaultError> {
        let (files, vault, work, clock) =
            (self.files.clone(), self.vault.clone(), self.work.clone(), self.clock.clone());
        let (region, id) = (d.region.clone(), d.id.clone());
        blocking(move || {
            // The id is the control plane's; checked as every tenant path is.
            files.dir(&region, &id)?;
            let dir = work.join(&id);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| VaultError::Io(format!("cannot create {}: {e}", dir.display())))?;
            let result = (|| {
                // A consistent view while the database stays in use: its file
                // under a read transaction when the WAL is all in it, else a copy.
                let (file, stable) = match files.consistent(&region, &id)? {
                    Consistent::Stable(s) => (s.path.clone(), Some(s)),
                    Consistent::Busy(source) => {
                        let copy = dir.join("db.sqlite");
                        snapshot_copy(&source, &copy)?;
                        (copy, None)
                    }
                };
                // Taken once the view is fixed: the snapshot holds no commit
                // made after this time (what a point-in-time restore relies on).
                let now = clock.now();
                let changed = stable.as_ref().and_then(|s| s.changed.as_ref()).map(|c| Changed {
                    file: 0,
                    since: &c.since,
                    pages: &c.pages,
                });
                let mut list = vec![("db.sqlite".to_string(), file.clone(), page_size(&file))];
                let attachments = files.dir(&region, &id)?.join("files");
                if let Ok(rd) = std::fs::read_dir(&attachments) {
                    let mut names: Vec<PathBuf> =
                        rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
                    names.sort();
                    for p in names {
                        let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                        list.push((format!("files/{name}"), p, vault.settings.file_block));
                    }
                }
                let snapshot = vault.backup_changed(&id, &list, changed, now, &*progress)?;
                // Ends the read transaction only after the file was read: the
                // database's change log now starts from this snapshot.
                if let Some(s) = stable
                    && let Err(e) = s.backed_up(&snapshot.id)
                {
                    tracing::warn!("change log of {id}: {e}; its next backup reads it whole");
                }
                Ok(snapshot)
            })();
            let _ = std::fs::remove_dir_all(&dir);
            result
        })
        .await
    }

    async fn backup_control_plane(&self, cp: ControlPlane, progress: Progress) -> Result<SnapshotInfo, VaultError> {
        let (vault, work, now) = (self.vault.clone(), self.work.clone(), self.clock.now());
        blocking(move || {
            let dir = work.join(CONTROL_PLANE);
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| VaultError::Io(format!("cannot create {}: {e}", dir.display())))?;
            let result = (|| match &cp {
                ControlPlane::Sqlite(path) => {
                    let copy = dir.join("db.sqlite");
                    let source =
                        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                            .map_err(|e| VaultError::Io(format!("cannot open the control plane: {e}")))?;
                    snapshot_copy(&source, &copy)?;
                    vault.backup(
                        CONTROL_PLANE,
                        &[("db.sqlite".into(), copy.clone(), page_size(&copy))],
                        now,
                        &*progress,
                    )
                }
                ControlPlane::Postgres(url) => {
                    let dump = dir.join(PG_DUMP_FILE);
                    pg_dump(url, &dump)?;
                    let block = vault.settings.file_block;
                    vault.backup(CONTROL_PLANE, &[(PG_DUMP_FILE.into(), dump.clone(), block)], now, &*progress)
                }
            })();
            let _ = std::fs::remove_dir_all(&dir);
            result
        })
        .await
    }

    /// Snapshots, newest first.
    pub async fn list(&self, only: Option<&str>) -> Result<Vec<SnapshotInfo>, VaultError> {
        let (vault, only) = (self.vault.clone(), only.map(str::to_string));
        blocking(move || vault.list(only.as_deref())).await
    }

    /// The owner's snapshots of one of their databases.
    pub async fn list_for_owner(&self, account_id: &str, id: &str) -> Result<Vec<SnapshotInfo>, VaultError> {
        self.databases.get(account_id, id).await?;
        self.list(Some(id)).await
    }

    /// Restores a snapshot into a new database of the same owner, in the
    /// same region. Staff and operators give a reason (BAK-3); the owner's
    /// own request is its reason. Refused when the erasure log says the
    /// database was removed or its owner's account erased after the snapshot.
    pub async fn restore(
        &self,
        actor: &Actor,
        snapshot: &str,
        new_name: &str,
        reason: &str,
        owner: Option<&str>,
    ) -> Result<CustomerDb, VaultError> {
        self.restore_with_progress(actor, snapshot, new_name, reason, owner, Arc::new(|_, _| {})).await
    }

    /// [`Self::restore`], reporting (bytes written, bytes in the snapshot).
    pub async fn restore_with_progress(
        &self,
        actor: &Actor,
        snapshot: &str,
        new_name: &str,
        reason: &str,
        owner: Option<&str>,
        progress: Progress,
    ) -> Result<CustomerDb, VaultError> {
        let reason = restore_reason(owner, reason)?;
        let (id, m) = {
            let (vault, s) = (self.vault.clone(), snapshot.to_string());
            blocking(move || vault.manifest(&s)).await?
        };
        if m.database == CONTROL_PLANE {
            return Err(VaultError::Refused(
                "The control plane is restored by an operator with the server stopped (docs/backups.md), not into a customer database.".into(),
            ));
        }
        let (account_id, region) = self.restorable(&m.database, m.taken_at, owner).await?;
        // The name is checked before the work, not after a restore of minutes.
        let new_name = seldesk_tenants::service::validate_name(new_name)?;
        self.databases.ensure_name_free(&account_id, &new_name).await?;
        let dir = self.files.dir(&region, &format!("restore-{}", uuid::Uuid::now_v7().simple()))?;
        {
            let (vault, into, id, m) = (self.vault.clone(), dir.clone(), id.clone(), m.clone());
            let done = blocking(move || vault.restore_manifest(&id, &m, &into, &|d, t| progress(d, t))).await;
            if let Err(e) = done {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        }
        let details = serde_json::json!({
            "snapshot": id, "from_database": m.database, "taken_at": seldesk_store::from_millis(m.taken_at).to_string(),
            "reason": reason,
        });
        self.adopt_restored(actor, &account_id, &new_name, &region, dir, details).await
    }

    /// What a point-in-time restore of `database` to `at_ms` starts from
    /// and replays: the newest snapshot taken during the chain of commits
    /// that was running then (at least a second before `at_ms`), and that
    /// chain's segments from shortly before the snapshot up to `at_ms`.
    pub async fn point_in_time_plan(&self, database: &str, at_ms: i64) -> Result<PointInTimePlan, VaultError> {
        self.plan_with_margin(database, at_ms, 1000).await
    }

    /// [`Self::point_in_time_plan`] with the snapshot at least `margin_ms`
    /// before `at_ms` (a commit is stamped a moment after it is visible, so
    /// a snapshot taken just before `at_ms` might hold one stamped after it;
    /// no margin is needed to take everything, as a recovery does).
    async fn plan_with_margin(
        &self,
        database: &str,
        at_ms: i64,
        margin_ms: i64,
    ) -> Result<PointInTimePlan, VaultError> {
        let when = |ms: i64| seldesk_store::from_millis(ms).to_string();
        if at_ms > self.now_ms() {
            return Err(VaultError::Invalid(format!("{} has not come yet.", when(at_ms))));
        }
        let all = crate::stream::segments_of(&self.db, database).await?;
        let Some(chain) =
            all.iter().filter(|s| s.chain_started_ms <= at_ms).map(|s| (s.chain_started_ms, &s.chain)).max()
        else {
            return Err(VaultError::NotFound(format!(
                "No change of database {database} was streamed to the backup regions before {}; restore one of its snapshots instead (`seldesk backup list`).",
                when(at_ms)
            )));
        };
        let (started, chain) = (chain.0, chain.1.clone());
        let segments: Vec<&crate::stream::SegmentRow> = all.iter().filter(|s| s.chain == chain).collect();
        let shipped_to = segments.iter().map(|s| s.last_ms).max().unwrap_or(started);
        // A later chain began after `at_ms`: commits between the end of this
        // one and it may not have been shipped, so the state then is unknown.
        if let Some(next) = all.iter().filter(|s| s.chain_started_ms > started).map(|s| s.chain_started_ms).min()
            && at_ms > shipped_to
        {
            return Err(VaultError::Refused(format!(
                "The changes made between {} and {} did not all reach the backup regions: choose a moment outside that interval.",
                when(shipped_to),
                when(next)
            )));
        }
        let snapshot = self
            .list(Some(database))
            .await?
            .into_iter()
            .filter(|s| {
                let t = to_millis(s.taken_at);
                t >= started && t + margin_ms <= at_ms
            })
            .max_by_key(|s| s.taken_at)
            .ok_or_else(|| {
                VaultError::NotFound(format!(
                    "No snapshot of database {database} was taken between {} and {}, so there is nothing to replay its changes onto; back it up, then restore to a moment after that.",
                    when(started),
                    when(at_ms)
                ))
            })?;
        // Commits from a minute before the snapshot: replaying a commit the
        // snapshot already holds rewrites the same pages, so a margin costs
        // nothing but time, and no commit between the two is missed.
        let from = to_millis(snapshot.taken_at) - 60_000;
        let mut used: Vec<crate::stream::SegmentRow> =
            segments.into_iter().filter(|s| s.last_ms >= from && s.first_ms <= at_ms).cloned().collect();
        used.sort_by_key(|s| s.first_seq);
        if let Some(w) = used.windows(2).find(|w| w[1].first_seq != w[0].last_seq + 1) {
            return Err(VaultError::Missing(format!(
                "the change stream of database {database} lacks commits {} to {} (between {} and {}); `seldesk backup check` names what is missing",
                w[0].last_seq + 1,
                w[1].first_seq - 1,
                when(w[0].last_ms),
                when(w[1].first_ms)
            )));
        }
        Ok(PointInTimePlan { snapshot, segments: used, shipped_to: seldesk_store::from_millis(shipped_to.min(at_ms)) })
    }

    /// Writes the database as it was at `at_ms` into `dir`: the plan's
    /// snapshot, then its segments' commits up to then.
    async fn build_point_in_time(
        &self,
        dir: &Path,
        plan: &PointInTimePlan,
        at_ms: i64,
        progress: Progress,
    ) -> Result<(), VaultError> {
        let (vault, into, snap, segments) =
            (self.vault.clone(), dir.to_path_buf(), plan.snapshot.id.clone(), plan.segments.clone());
        blocking(move || {
            let (id, m) = vault.manifest(&snap)?;
            vault.restore_manifest(&id, &m, &into, &|d, t| progress(d, t))?;
            // Segments are read one at a time and their pages held up to a
            // bound: memory stays at about one segment and the bound.
            let mut replay: Option<seldesk_tenants::stream::Replay> = None;
            for row in &segments {
                let segment = vault.get_segment(&row.object)?;
                let r = match &mut replay {
                    Some(r) => r,
                    None => {
                        replay.insert(seldesk_tenants::stream::Replay::new(&into.join("db.sqlite"), segment.page_size)?)
                    }
                };
                r.push(segment.commits.into_iter().filter(|c| c.at_ms <= at_ms))?;
            }
            if let Some(r) = replay {
                r.finish()?;
            }
            Ok(())
        })
        .await
    }

    /// Restores database `database` as it was committed at `at` into a new
    /// database of the same owner (staff and operators give a reason,
    /// BAK-3): its newest snapshot before then, with every streamed commit
    /// up to `at` replayed onto it. Refused as [`Self::restore`] is when the
    /// database or its owner's data was erased after `at`.
    #[allow(clippy::too_many_arguments)]
    pub async fn restore_at(
        &self,
        actor: &Actor,
        database: &str,
        at: time::OffsetDateTime,
        new_name: &str,
        reason: &str,
        owner: Option<&str>,
        progress: Progress,
    ) -> Result<(CustomerDb, PointInTimePlan), VaultError> {
        let reason = restore_reason(owner, reason)?;
        let at_ms = to_millis(at);
        let (account_id, region) = self.restorable(database, at_ms, owner).await?;
        if owner.is_some() {
            self.within_plan_window(database, at).await?;
        }
        let plan = self.point_in_time_plan(database, at_ms).await?;
        let new_name = seldesk_tenants::service::validate_name(new_name)?;
        self.databases.ensure_name_free(&account_id, &new_name).await?;
        let dir = self.files.dir(&region, &format!("restore-{}", uuid::Uuid::now_v7().simple()))?;
        if let Err(e) = self.build_point_in_time(&dir, &plan, at_ms, progress).await {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let details = serde_json::json!({
            "from_database": database, "at": at.to_string(), "snapshot": plan.snapshot.id,
            "segments": plan.segments.len(), "reason": reason,
        });
        let restored = self.adopt_restored(actor, &account_id, &new_name, &region, dir, details).await?;
        Ok((restored, plan))
    }

    /// Makes the restored folder `dir` a new database of the owner, and
    /// audits it with `details` (the folder goes if it cannot be adopted).
    async fn adopt_restored(
        &self,
        actor: &Actor,
        account_id: &str,
        new_name: &str,
        region: &str,
        dir: PathBuf,
        details: serde_json::Value,
    ) -> Result<CustomerDb, VaultError> {
        let restored = self.databases.adopt(account_id, new_name, region, dir.clone()).await;
        if restored.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let restored = restored?;
        self.audit
            .record(
                actor,
                "backup.restored",
                Some(seldesk_domain::Subject::person(account_id).as_str()),
                Some(&format!("db:{}", restored.id)),
                details,
            )
            .await?;
        Ok(restored)
    }

    /// Recovers database `d`, whose home node was lost, on this node from
    /// its latest snapshot and every commit the lost node streamed after it
    /// (only the snapshot when its chain cannot be followed), under its own
    /// id; returns the moment the recovered database is as of (what the
    /// owner is told). Refused when the database was
    /// removed or its owner's account erased after the snapshot: erased
    /// data does not come back from a backup.
    pub async fn recover(&self, d: &CustomerDb, actor: &Actor) -> Result<time::OffsetDateTime, VaultError> {
        let now = self.now_ms();
        // Every commit the lost node shipped, on its latest snapshot of the
        // same chain; else that snapshot alone.
        let plan = match self.plan_with_margin(&d.id, now, 0).await {
            Ok(plan) => Some(plan),
            Err(e) => {
                tracing::warn!(database = %d.id, "recovery from the latest snapshot only: {e}");
                None
            }
        };
        let snap = match &plan {
            Some(p) => p.snapshot.clone(),
            None => match self.list(Some(&d.id)).await?.into_iter().max_by_key(|s| s.taken_at) {
                Some(s) => s,
                None => {
                    return Err(VaultError::NotFound(format!(
                        "database {} ({}) has no snapshot to recover from",
                        d.name, d.id
                    )));
                }
            },
        };
        let (id, m) = {
            let (vault, s) = (self.vault.clone(), snap.id.clone());
            blocking(move || vault.manifest(&s)).await?
        };
        let taken = match &plan {
            Some(p) => p.shipped_to.max(seldesk_store::from_millis(m.taken_at)),
            None => seldesk_store::from_millis(m.taken_at),
        };
        for record in [format!("db:{}", d.id), seldesk_domain::Subject::person(&d.account_id).into_string()] {
            if let Some(at) = self.erased_after(&record, m.taken_at).await? {
                return Err(VaultError::Refused(format!(
                    "{record} was erased on {} after its last snapshot: not brought back",
                    at.date()
                )));
            }
        }
        let dir = self.files.dir(&d.region, &format!("recover-{}", uuid::Uuid::now_v7().simple()))?;
        let built = match &plan {
            Some(p) => self.build_point_in_time(&dir, p, now, Arc::new(|_, _| {})).await,
            None => {
                let (vault, into, id, m) = (self.vault.clone(), dir.clone(), id.clone(), m.clone());
                blocking(move || vault.restore_manifest(&id, &m, &into, &|_, _| {})).await.map(|_| ())
            }
        };
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        if let Err(e) = self.databases.take_over(d, dir.clone(), actor).await {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        self.audit
            .record(
                actor,
                "node.database_recovered",
                Some(seldesk_domain::Subject::person(&d.account_id).as_str()),
                Some(&format!("db:{}", d.id)),
                serde_json::json!({
                    "snapshot": id, "taken_at": seldesk_store::from_millis(m.taken_at).to_string(),
                    "segments": plan.as_ref().map_or(0, |p| p.segments.len()), "as_of": taken.to_string(),
                }),
            )
            .await?;
        Ok(taken)
    }

    /// Queues a restore of one of the owner's snapshots into a new database;
    /// returns its id, for the progress page. Checked now: the snapshot is
    /// theirs and the name is valid and free.
    pub async fn start_owner_restore(
        &self,
        account_id: &str,
        database_id: &str,
        snapshot: &str,
        name: &str,
    ) -> Result<String, VaultError> {
        let owned = self.list_for_owner(account_id, database_id).await?;
        if !owned.iter().any(|s| s.id == snapshot) {
            return Err(VaultError::NotFound("No such backup of this database.".into()));
        }
        self.start_owner_restore_of(account_id, database_id, snapshot, name).await
    }

    /// Records and queues an owner restore of `snapshot` (a snapshot id, or
    /// `at:<milliseconds>` for a moment).
    async fn start_owner_restore_of(
        &self,
        account_id: &str,
        database_id: &str,
        snapshot: &str,
        name: &str,
    ) -> Result<String, VaultError> {
        let name = seldesk_tenants::service::validate_name(name)?;
        self.databases.ensure_name_free(account_id, &name).await?;
        let queue = self.queue.as_ref().ok_or_else(|| VaultError::Io("restores need the job queue".into()))?;
        let id = uuid::Uuid::now_v7().simple().to_string();
        sqlx::query(
            "INSERT INTO backup_restores (id, account_id, database_id, snapshot, name, status, created_at) VALUES ($1, $2, $3, $4, $5, 'queued', $6)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(database_id)
        .bind(snapshot)
        .bind(&name)
        .bind(to_millis(self.clock.now()))
        .execute(self.db.pool())
        .await?;
        queue
            .enqueue(seldesk_jobs::NewJob::of(&crate::RestoreJob { restore: id.clone() }))
            .await
            .map_err(|e| VaultError::Io(format!("cannot queue the restore: {e}")))?;
        Ok(id)
    }

    /// Runs a queued owner restore (the job), recording its progress about
    /// twice a second for the page.
    pub async fn run_owner_restore(&self, id: &str) -> Result<(), VaultError> {
        let row = sqlx::query("SELECT account_id, snapshot, name, status FROM backup_restores WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| VaultError::NotFound(format!("no restore {id}")))?;
        let status: String = row.try_get("status")?;
        if status == "done" || status == "failed" {
            return Ok(());
        }
        let (account, snapshot, name): (String, String, String) =
            (row.try_get("account_id")?, row.try_get("snapshot")?, row.try_get("name")?);
        sqlx::query("UPDATE backup_restores SET status = 'running' WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        let seen = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
        let ticker = {
            let (seen, db, id) = (seen.clone(), self.db.clone(), id.to_string());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    let (done, total) = seen.lock().map(|g| *g).unwrap_or((0, 0));
                    let _ = sqlx::query("UPDATE backup_restores SET done_bytes = $1, total_bytes = $2 WHERE id = $3")
                        .bind(i64::try_from(done).unwrap_or(i64::MAX))
                        .bind(i64::try_from(total).unwrap_or(i64::MAX))
                        .bind(&id)
                        .execute(db.pool())
                        .await;
                }
            })
        };
        let progress: Progress = {
            let seen = seen.clone();
            Arc::new(move |done, total| {
                if let Ok(mut g) = seen.lock() {
                    *g = (done, total);
                }
            })
        };
        let owner = Actor::Person { id: account.clone() };
        let result = match snapshot.strip_prefix(AT_PREFIX).and_then(|ms| ms.parse::<i64>().ok()) {
            Some(at) => {
                let database: String = sqlx::query_scalar("SELECT database_id FROM backup_restores WHERE id = $1")
                    .bind(id)
                    .fetch_one(self.db.pool())
                    .await?;
                let at = seldesk_store::from_millis(at);
                self.restore_at(&owner, &database, at, &name, "", Some(&account), progress).await.map(|(d, _)| d)
            }
            None => {
                self.restore_with_progress(&owner, &snapshot, &name, "requested by the owner", Some(&account), progress)
                    .await
            }
        };
        ticker.abort();
        let (done, total) = seen.lock().map(|g| *g).unwrap_or((0, 0));
        let now = to_millis(self.clock.now());
        match &result {
            Ok(d) => {
                sqlx::query("UPDATE backup_restores SET status = 'done', new_database_id = $1, done_bytes = $2, total_bytes = $2, finished_at = $3 WHERE id = $4")
                    .bind(&d.id)
                    .bind(i64::try_from(total.max(done)).unwrap_or(i64::MAX))
                    .bind(now)
                    .bind(id)
                    .execute(self.db.pool())
                    .await?;
            }
            Err(e) => {
                sqlx::query("UPDATE backup_restores SET status = 'failed', error = $1, finished_at = $2 WHERE id = $3")
                    .bind(e.to_string())
                    .bind(now)
                    .bind(id)
                    .execute(self.db.pool())
                    .await?;
            }
        }
        result.map(|_| ())
    }

    /// The owner's restores from this database: running ones, and finished
    /// ones of the last week (older rows are removed here).
    pub async fn owner_restores(&self, account_id: &str, database_id: &str) -> Result<Vec<RestoreStatus>, VaultError> {
        let week_ago = to_millis(self.clock.now() - time::Duration::days(7));
        sqlx::query("DELETE FROM backup_restores WHERE finished_at IS NOT NULL AND finished_at < $1")
            .bind(week_ago)
            .execute(self.db.pool())
            .await?;
        let rows = sqlx::query(
            "SELECT id, database_id, snapshot, name, status, done_bytes, total_bytes, new_database_id, error FROM backup_restores WHERE account_id = $1 AND database_id = $2 ORDER BY created_at DESC",
        )
        .bind(account_id)
        .bind(database_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RestoreStatus {
                    id: r.try_get("id")?,
                    database_id: r.try_get("database_id")?,
                    snapshot: r.try_get("snapshot")?,
                    name: r.try_get("name")?,
                    status: r.try_get("status")?,
                    done_bytes: r.try_get("done_bytes")?,
                    total_bytes: r.try_get("total_bytes")?,
                    new_database_id: r.try_get("new_database_id")?,
                    error: r.try_get("error")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Writes a snapshot's files into a new folder, for an operator (the
    /// control plane's recovery, an investigation); needs a reason and is
    /// audited (BAK-3).
    pub async fn extract(
        &self,
        actor: &Actor,
        snapshot: &str,
        to: &Path,
        reason: &str,
        progress: Progress,
    ) -> Result<PathBuf, VaultError> {
        if reason.trim().len() < 5 {
            return Err(VaultError::Invalid(
                "An extraction needs a reason (a ticket, a legal request, a recovery): it is audited.".into(),
            ));
        }
        if to.exists() {
            return Err(VaultError::Invalid(format!("{} exists already; name a new folder", to.display())));
        }
        let (id, m) = {
            let (vault, s) = (self.vault.clone(), snapshot.to_string());
            blocking(move || vault.manifest(&s)).await?
        };
        if m.database != CONTROL_PLANE && self.erased_after(&format!("db:{}", m.database), m.taken_at).await?.is_some()
        {
            return Err(VaultError::Refused(format!(
                "Database {} was removed after this snapshot: it is never restored (BAK-3).",
                m.database
            )));
        }
        {
            let (vault, into, id, m) = (self.vault.clone(), to.to_path_buf(), id.clone(), m.clone());
            let done = blocking(move || vault.restore_manifest(&id, &m, &into, &|d, t| progress(d, t))).await;
            // The folder did not exist before: a failed extraction leaves none behind.
            if let Err(e) = done {
                let _ = std::fs::remove_dir_all(to);
                return Err(e);
            }
        }
        self.audit
            .record(
                actor,
                "backup.extracted",
                None,
                Some(&format!("db:{}", m.database)),
                serde_json::json!({ "snapshot": id, "reason": reason.trim() }),
            )
            .await?;
        Ok(to.to_path_buf())
    }

    /// The owner and region of a database whose state at `at_ms` may be
    /// restored: refused when the erasure log says the database was removed
    /// or its owner's account erased after that (BAK-3); another owner's
    /// database is "not found".
    async fn restorable(
        &self,
        database: &str,
        at_ms: i64,
        owner: Option<&str>,
    ) -> Result<(String, String), VaultError> {
        let row = sqlx::query("SELECT account_id, region FROM databases WHERE id = $1")
            .bind(database)
            .fetch_optional(self.db.pool())
            .await?;
        let erased_db = self.erased_after(&format!("db:{}", database), at_ms).await?;
        let Some(row) = row.filter(|_| erased_db.is_none()) else {
            return Err(VaultError::Refused(format!(
                "Database {} was removed{}: its backups only keep the vault whole until they expire, and are never restored (BAK-3).",
                database,
                erased_db.map(|d| format!(" on {}", d.date())).unwrap_or_default()
            )));
        };
        let account_id: String = row.try_get("account_id")?;
        let region: String = row.try_get("region")?;
        if let Some(o) = owner
            && o != account_id
        {
            return Err(VaultError::NotFound("No such snapshot.".into()));
        }
        if let Some(at) = self.erased_after(seldesk_domain::Subject::person(&account_id).as_str(), at_ms).await? {
            return Err(VaultError::Refused(format!(
                "The owner's account was erased on {}: its data is not restored from backups.",
                at.date()
            )));
        }
        Ok((account_id, region))
    }

    /// When the erasure log recorded erasing `record` or anything about the
    /// person `record` after `after_ms`, if it did.
    async fn erased_after(&self, record: &str, after_ms: i64) -> Result<Option<time::OffsetDateTime>, VaultError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(at) FROM erasure_log WHERE (record = $1 OR (subject = $1 AND category = 'account_contact')) AND at > $2",
        )
        .bind(record)
        .bind(after_ms)
        .fetch_one(self.db.pool())
        .await?;
        Ok(at.map(seldesk_store::from_millis))
    }

    /// Applies snapshot retention from the policy file: no snapshot outlives
    /// the policy's backup cap, so deleted data leaves the backups with it
    /// (BAK-2).
    pub async fn prune(&self) -> Result<PruneReport, VaultError> {
        let mut live: BTreeSet<String> = self.databases.list_all().await?.into_iter().map(|d| d.id).collect();
        live.insert(CONTROL_PLANE.into());
        let b = &self.policy.backups;
        let epoch = time::Duration::days(self.vault.settings.epoch_days);
        let max_age = time::Duration::days(i64::try_from(b.max_age.max_days()).unwrap_or(365)) - epoch;
        let rules =
            Retention { keep_daily: b.keep_daily, keep_weekly: b.keep_weekly, keep_monthly: b.keep_monthly, max_age };
        let (vault, now) = (self.vault.clone(), self.clock.now());
        let max_age_ms = rules.max_age.whole_milliseconds() as i64;
        let mut report = blocking(move || vault.prune(now, &rules, &live)).await?;
        let (removed, waiting) =
            crate::stream::prune_segments(&self.vault, &self.db, to_millis(now), max_age_ms, &report.keys_destroyed)
                .await?;
        report.segments_removed = removed;
        report.waiting_for_lock += waiting;
        self.audit
            .record(&Actor::System, "backup.pruned", None, None, serde_json::to_value(&report).unwrap_or_default())
            .await?;
        Ok(report)
    }

    pub async fn check(&self, read_data: bool, progress: Progress) -> Result<Vec<CheckProblem>, VaultError> {
        let vault = self.vault.clone();
        blocking(move || vault.check(read_data, &*progress)).await
    }

    pub async fn repair(&self, actor: &Actor) -> Result<RepairReport, VaultError> {
        let vault = self.vault.clone();
        let report = blocking(move || vault.repair()).await?;
        self.audit
            .record(
                actor,
                "backup.repaired",
                None,
                None,
                serde_json::json!({ "copied": report.copied.len(), "quarantined": report.quarantined }),
            )
            .await?;
        Ok(report)
    }

    /// When a backup made now is gone at the latest.
    pub fn deadline(&self) -> time::OffsetDateTime {
        self.policy.backups.max_age.after(self.clock.now())
    }

    pub fn now_ms(&self) -> i64 {
        to_millis(self.clock.now())
    }
}

/// Dumps a PostgreSQL control plane (one consistent transaction) with
/// `pg_dump`; a password in the URL goes through the environment, never the
/// command line.
fn pg_dump(url: &str, out: &Path) -> Result<(), VaultError> {
    let (url, password) = split_password(url);
    let mut cmd = std::process::Command::new("pg_dump");
    cmd.args(["--format=custom", "--no-owner", "--file"]).arg(out).arg("--dbname").arg(&url);
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let output = cmd.output().map_err(|e| {
        VaultError::Io(format!(
            "cannot run pg_dump ({e}): install the PostgreSQL client of the server's version to back up the control plane"
        ))
    })?;
    if !output.status.success() {
        return Err(VaultError::Io(format!("pg_dump failed: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(())
}

/// `postgres://user:pw@host/db` → (`postgres://user@host/db`, Some(pw)).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_string(), None) };
    let Some((creds, host)) = rest.split_once('@') else { return (url.to_string(), None) };
    match creds.split_once(':') {
        Some((user, pw)) => (format!("{scheme}://{user}@{host}"), Some(pw.to_string())),
        None => (url.to_string(), None),
    }
}

/// A consistent copy of a live database with SQLite's online backup API, in
/// one step; the copy is scratch (read once, then deleted), so it is written
/// without a journal or syncs.
fn snapshot_copy(source: &rusqlite::Connection, copy: &Path) -> Result<(), VaultError> {
    let io = |e: rusqlite::Error| VaultError::Io(format!("cannot take a consistent copy: {e}"));
    let mut dst = rusqlite::Connection::open(copy).map_err(io)?;
    dst.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;").map_err(io)?;
    let backup = rusqlite::backup::Backup::new(source, &mut dst).map_err(io)?;
    loop {
        match backup.step(-1).map_err(io)? {
            rusqlite::backup::StepResult::Done => return Ok(()),
            // Busy or locked by a writer for a moment: try again shortly.
            _ => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// The page size from a SQLite header (bytes 16–17; 1 means 65536).
fn page_size(path: &Path) -> usize {
    let mut header = [0u8; 18];
    let ok = std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
    match ok.map(|()| u16::from_be_bytes([header[16], header[17]])) {
        Ok(1) => 65_536,
        Ok(n) if n >= 512 => usize::from(n),
        _ => 4096,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VaultError> + Send + 'static,
) -> Result<T, VaultError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| VaultError::Io(format!("backup task failed: {e}")))?
}

/// The owner's restore requests (names they chose for the copies): erased
/// with the account; the restored databases themselves belong to the
/// customer-database store.
pub struct RestoreRecords {
    pub db: Db,
}

impl seldesk_privacy::PersonalDataStore for RestoreRecords {
    fn section(&self) -> &'static str {
        "backup_restores"
    }

    fn category(&self) -> &'static str {
        "customer_database"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["backup_restores"]
    }

    fn export<'a>(
        &'a self,
        subject: &'a str,
    ) -> seldesk_privacy::BoxFuture<'a, Result<serde_json::Value, seldesk_privacy::PrivacyError>> {
        Box::pin(async move {
            let Some(account) = subject.strip_prefix("person:") else { return Ok(serde_json::Value::Null) };
            let rows = sqlx::query(
                "SELECT database_id, snapshot, name, status, created_at FROM backup_restores WHERE account_id = $1 ORDER BY created_at",
            )
            .bind(account)
            .fetch_all(self.db.pool())
            .await?;
            let list = rows
                .iter()
                .map(|r| {
                    Ok(serde_json::json!({
                        "database": r.try_get::<String, _>("database_id")?,
                        "snapshot": r.try_get::<String, _>("snapshot")?,
                        "name": r.try_get::<String, _>("name")?,
                        "status": r.try_get::<String, _>("status")?,
                        "requested_at": seldesk_store::from_millis(r.try_get("created_at")?).to_string(),
                    }))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok(serde_json::Value::Array(list))
        })
    }

    fn erase<'a>(
        &'a self,
        person: &'a seldesk_privacy::Person,
    ) -> seldesk_privacy::BoxFuture<'a, Result<seldesk_privacy::Erased, seldesk_privacy::PrivacyError>> {
        Box::pin(async move {
            let n = sqlx::query("DELETE FROM backup_restores WHERE account_id = $1")
                .bind(&person.account_id)
                .execute(self.db.pool())
                .await?
                .rows_affected();
            let mut out = seldesk_privacy::Erased { records: n, ..Default::default() };
            if n > 0 {
                out.erased.push(format!("{n} request(s) to restore a database from a backup"));
            }
            Ok(out)
        })
    }
}
