//! The Database Upgrade service (UPG-1…UPG-4). A signed-in person uploads an
//! export archive or a SQLite file of an older Seldesk database; a job checks
//! it as untrusted input, upgrades it to the newest schema version in the
//! upgrade storage location (`<data>/upgrade/`, never the tenants' folders)
//! and leaves an export archive of the result with a report. The upload is
//! erased as soon as the upgrade succeeds; the result at the person's request
//! or by the retention engine at the policy's period after the last
//! successful upgrade; a failed upload after its own short period.

use seldesk_domain::Fault;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use seldesk_domain::{Actor, Clock};
use seldesk_privacy::{AuditLog, BoxFuture, Candidate, Census, Eraser, ErasureLog, ErasureReason, PrivacyError};
use seldesk_store::{Db, from_millis, to_millis};
use seldesk_tenants::TenantFiles;
use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

/// Job kind: carry out an upgrade request.
pub const JOB_UPGRADE: &str = "upgrade.run";

/// The job that carries out one upgrade request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UpgradeJob {
    /// The request's id.
    pub id: String,
}

impl seldesk_jobs::JobPayload for UpgradeJob {
    const KIND: &'static str = JOB_UPGRADE;
}

/// Errors of the upgrade service.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Today's upload allowance of the account is used up.
    #[error("{0}")]
    Allowance(String),
    #[error("upgrade store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    #[error("upgrade storage: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Internal(#[from] seldesk_domain::Fault),
    /// An upgrade ran past the worker's time limit; the request is failed,
    /// and the worker process should end (its work cannot be cancelled).
    #[error("the upgrade took longer than {0} s")]
    TimedOut(u64),
}

impl seldesk_domain::Failure for UpgradeError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        use seldesk_domain::ErrorKind as K;
        match self {
            Self::Invalid(_) => K::Invalid,
            Self::NotFound(_) => K::NotFound,
            Self::Conflict(_) => K::Conflict,
            Self::Allowance(_) => K::RateLimited,
            Self::Privacy(e) => e.kind(),
            Self::Query(_) | Self::Io(_) | Self::Internal(_) | Self::TimedOut(_) => K::Internal,
        }
    }
}

/// How much one account may upload to the upgrade service in 24 hours
/// (configuration `[upgrades]`, docs/upgrade-service.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub uploads_per_day: u32,
    pub bytes_per_day: u64,
}

impl Default for Allowance {
    fn default() -> Self {
        Self { uploads_per_day: 10, bytes_per_day: 5 * 1_000_000_000 }
    }
}

/// One uploaded database and what became of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UpgradeRequest {
    pub id: String,
    #[serde(skip)]
    pub account_id: String,
    pub file_name: String,
    pub kind: String,
    pub status: String,
    pub progress: i64,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub report: Option<serde_json::Value>,
    pub error: Option<String>,
    pub source_present: bool,
    pub result_present: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// When the result is erased at the latest (policy period after the last success).
    #[serde(with = "time::serde::rfc3339::option")]
    pub erase_by: Option<OffsetDateTime>,
}

/// The upgrade storage: uploads and results as objects (in the storage
/// folder by default, or in a bucket every node and worker reaches, so an
/// upload taken by one node is upgraded by any worker and downloaded
/// through any node), and work folders on the local disk. With a key,
/// uploads and results are sealed at rest (XChaCha20-Poly1305 stream);
/// plain copies exist only in a work folder while an upgrade runs.
#[derive(Clone)]
pub struct UpgradeStorage {
    root: PathBuf,
    objects: seldesk_blob::BlobStore,
    cipher: Option<seldesk_blob::XChaCha20Poly1305>,
}

impl std::fmt::Debug for UpgradeStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeStorage")
            .field("root", &self.root)
            .field("objects", &self.objects)
            .field("sealed", &self.cipher.is_some())
            .finish()
    }
}

/// Opens a sealed result on its first read: a bucket's object is fetched
/// as it is read, which must happen on a blocking thread, not where the
/// reader is made.
struct OpenOnRead {
    cipher: seldesk_blob::XChaCha20Poly1305,
    sealed: Option<Box<dyn std::io::Read + Send>>,
    plain: Option<seldesk_blob::sealed_file::OpeningReader<Box<dyn std::io::Read + Send>>>,
}

impl std::io::Read for OpenOnRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(sealed) = self.sealed.take() {
            self.plain = Some(seldesk_blob::sealed_file::OpeningReader::new(&self.cipher, sealed)?);
        }
        match &mut self.plain {
            Some(plain) => plain.read(buf),
            None => Ok(0),
        }
    }
}

impl UpgradeStorage {
    pub fn new(data: &Path) -> Self {
        Self::at(data.join("upgrade"))
    }
    /// A storage at its own location (`upgrades.storage`), objects included.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self { objects: seldesk_blob::BlobStore::local(&root), root, cipher: None }
    }
    /// Keeps uploads and results in `objects` (`upgrades.objects`: a bucket
    /// when several nodes take uploads); work folders stay under the root.
    pub fn with_objects(mut self, objects: seldesk_blob::BlobStore) -> Self {
        self.objects = objects;
        self
    }
    /// Seals uploads and results with the upgrade service's own key (made on
    /// first use; not a production key).
    pub fn sealed_with(mut self, key_file: &Path) -> Result<Self, UpgradeError> {
        let cipher = seldesk_blob::load_or_create_key(key_file)
            .map_err(|e| UpgradeError::Internal(Fault::new("cannot load the upgrade storage key", e)))?;
        self.cipher = Some(cipher);
        Ok(self)
    }
    pub fn cipher(&self) -> Option<&seldesk_blob::XChaCha20Poly1305> {
        self.cipher.as_ref()
    }
    pub fn objects(&self) -> &seldesk_blob::BlobStore {
        &self.objects
    }
    /// A result, readable (on a blocking thread), and its plain length:
    /// opened from its seal when the storage seals.
    pub async fn open_result(&self, id: &str) -> Result<(Box<dyn std::io::Read + Send>, u64), UpgradeError> {
        let gone = || UpgradeError::NotFound("There is no upgraded database to download (any more).".into());
        let (reader, len) = self.objects.reader(&Self::result_key(id)?).await.map_err(blob_err)?.ok_or_else(gone)?;
        Ok(match &self.cipher {
            Some(c) => (
                Box::new(OpenOnRead { cipher: c.clone(), sealed: Some(reader), plain: None }),
                seldesk_blob::sealed_file::plain_len(len),
            ),
            None => (reader, len),
        })
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    fn checked(id: &str) -> Result<&str, UpgradeError> {
        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(id)
        } else {
            Err(UpgradeError::NotFound("No such upgrade.".into()))
        }
    }
    fn upload_key(id: &str) -> Result<String, UpgradeError> {
        Ok(format!("uploads/{}", Self::checked(id)?))
    }
    fn result_key(id: &str) -> Result<String, UpgradeError> {
        Ok(format!("results/{}.zip", Self::checked(id)?))
    }
    pub fn work(&self, id: &str) -> Result<PathBuf, UpgradeError> {
        Ok(self.root.join("work").join(Self::checked(id)?))
    }
    /// Whether the result of a request is stored.
    pub async fn has_result(&self, id: &str) -> Result<bool, UpgradeError> {
        Ok(self.objects.size(&Self::result_key(id)?).await.map_err(blob_err)?.is_some())
    }
    /// Stores a spooled upload (sealing it first when the storage seals);
    /// the spooled file is gone afterwards, stored or not.
    async fn store_upload(&self, id: &str, spooled: &Path) -> Result<(), UpgradeError> {
        let key = Self::upload_key(id)?;
        let Some(cipher) = self.cipher.clone() else {
            let stored = self.objects.put_file(&key, spooled).await;
            let _ = tokio::fs::remove_file(spooled).await;
            return stored.map(|_| ()).map_err(blob_err);
        };
        let sealed = self.work(id)?.with_extension("sealed");
        let (from, to) = (spooled.to_path_buf(), sealed.clone());
        let done = tokio::task::spawn_blocking(move || {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            // Sealed at rest from here on; the plain spool goes at once.
            let done = seldesk_blob::sealed_file::seal_file(&cipher, &from, &to);
            let _ = std::fs::remove_file(&from);
            done
        })
        .await
        .map_err(|e| UpgradeError::Internal(Fault::new("storing the upload stopped", e)))?;
        let stored = match done {
            Ok(()) => self.objects.put_file(&key, &sealed).await.map(|_| ()).map_err(blob_err),
            Err(e) => Err(e.into()),
        };
        let _ = tokio::fs::remove_file(&sealed).await;
        stored
    }
    /// The upload as a file on this machine: the object's own file in a
    /// folder store, else a copy fetched beside the work folder; `None`
    /// when it is gone.
    async fn upload_file(&self, id: &str) -> Result<Option<PathBuf>, UpgradeError> {
        let key = Self::upload_key(id)?;
        if let Some(path) = self.objects.local_path(&key).map_err(blob_err)? {
            return Ok(tokio::fs::try_exists(&path).await?.then_some(path));
        }
        let copy = self.work(id)?.with_extension("upload");
        if let Some(parent) = copy.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        Ok(self.objects.get_to_file(&key, &copy).await.map_err(blob_err)?.then_some(copy))
    }
    /// Where an upgrade writes its result: the object's own file in a
    /// folder store, else beside the work folder until [`Self::store_result`].
    fn result_file(&self, id: &str) -> Result<PathBuf, UpgradeError> {
        match self.objects.local_path(&Self::result_key(id)?).map_err(blob_err)? {
            Some(path) => Ok(path),
            None => Ok(self.work(id)?.with_extension("result")),
        }
    }
    /// Stores a result written at [`Self::result_file`].
    async fn store_result(&self, id: &str, file: &Path) -> Result<(), UpgradeError> {
        let key = Self::result_key(id)?;
        if self.objects.local_path(&key).map_err(blob_err)?.is_some() {
            return Ok(());
        }
        self.objects.put_file(&key, file).await.map_err(blob_err)?;
        Ok(())
    }
    /// Removes the upload and any copy of it fetched for the work.
    async fn drop_upload(&self, id: &str) -> Result<(), UpgradeError> {
        self.objects.delete(&Self::upload_key(id)?).await.map_err(blob_err)?;
        match tokio::fs::remove_file(self.work(id)?.with_extension("upload")).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
    /// Removes every file and object of a request; returns whether anything was there.
    async fn erase_files(&self, id: &str) -> Result<bool, UpgradeError> {
        let mut any = false;
        for key in [Self::upload_key(id)?, Self::result_key(id)?] {
            any |= self.objects.delete(&key).await.map_err(blob_err)?;
        }
        let results = self.root.join("results");
        let work = self.work(id)?;
        let local = [
            results.join(format!("{id}.partial")),
            results.join(format!("{id}.sealing")),
            work.with_extension("plain"),
            work.with_extension("result"),
            work.with_extension("partial"),
            work.with_extension("upload"),
            work.with_extension("sealed"),
        ];
        for p in local {
            match tokio::fs::remove_file(&p).await {
                Ok(()) => any = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        if tokio::fs::try_exists(&work).await? {
            tokio::fs::remove_dir_all(&work).await?;
            any = true;
        }
        Ok(any)
    }
}

fn blob_err(e: seldesk_blob::BlobError) -> UpgradeError {
    match e {
        seldesk_blob::BlobError::Io(e) => UpgradeError::Io(e),
        other => UpgradeError::Internal(Fault::new("upgrade storage", other)),
    }
}

/// The upgrade service.
#[derive(Clone)]
pub struct Upgrades {
    db: Db,
    clock: Arc<dyn Clock>,
    policy: Arc<seldesk_domain::Policy>,
    storage: UpgradeStorage,
    tenants: TenantFiles,
    audit: AuditLog,
    erasure_log: ErasureLog,
    queue: seldesk_jobs::Queue,
    allowance: Allowance,
}

const COLUMNS: &str = "id, account_id, file_name, kind, status, progress, from_version, to_version, report, error, \
     source_present, result_present, created_at, finished_at, last_success_at";

fn request_from_row(policy: &seldesk_domain::Policy, r: &sqlx::any::AnyRow) -> Result<UpgradeRequest, UpgradeError> {
    let last_success = r.try_get::<Option<i64>, _>("last_success_at")?.map(from_millis);
    Ok(UpgradeRequest {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        file_name: r.try_get("file_name")?,
        kind: r.try_get("kind")?,
        status: r.try_get("status")?,
        progress: r.try_get("progress")?,
        from_version: r.try_get("from_version")?,
        to_version: r.try_get("to_version")?,
        report: r.try_get::<Option<String>, _>("report")?.and_then(|s| serde_json::from_str(&s).ok()),
        error: r.try_get("error")?,
        source_present: r.try_get::<i64, _>("source_present")? != 0,
        result_present: r.try_get::<i64, _>("result_present")? != 0,
        created_at: from_millis(r.try_get("created_at")?),
        finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(from_millis),
        erase_by: last_success.and_then(|t| policy.retention("upgrade_upload").map(|rule| rule.keep.after(t))),
    })
}

fn subject(account_id: &str) -> String {
    seldesk_domain::Subject::person(account_id).into_string()
}

impl Upgrades {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        policy: Arc<seldesk_domain::Policy>,
        storage: UpgradeStorage,
        tenants: TenantFiles,
        audit: AuditLog,
        erasure_log: ErasureLog,
        queue: seldesk_jobs::Queue,
    ) -> Self {
        Self { db, clock, policy, storage, tenants, audit, erasure_log, queue, allowance: Allowance::default() }
    }

    /// How much one account may upload in a day.
    pub fn with_allowance(mut self, allowance: Allowance) -> Self {
        self.allowance = allowance;
        self
    }

    /// The bytes this account may still upload in the next 24 hours, or
    /// why it may upload nothing more today (counted over every upload of
    /// the last 24 hours, kept, failed or erased since).
    pub async fn allowance_left(&self, account_id: &str) -> Result<u64, UpgradeError> {
        let since = self.clock.now() - time::Duration::days(1);
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes, MIN(created_at) AS first FROM upgrade_requests
             WHERE account_id = $1 AND created_at > $2",
        )
        .bind(account_id)
        .bind(to_millis(since))
        .fetch_one(self.db.pool())
        .await?;
        let n: i64 = row.try_get("n")?;
        let bytes: i64 = row.try_get("bytes")?;
        let first: Option<i64> = row.try_get("first")?;
        let again = first.map(|f| from_millis(f) + time::Duration::days(1)).and_then(|t| {
            t.format(time::macros::format_description!("[hour]:[minute] UTC on [day] [month repr:short]")).ok()
        });
        let left = self.allowance.bytes_per_day.saturating_sub(u64::try_from(bytes).unwrap_or(0));
        if n >= i64::from(self.allowance.uploads_per_day) || left == 0 {
            return Err(UpgradeError::Allowance(format!(
                "You have used today's upload allowance ({} uploads or {} GB a day). You can upload again from {}.",
                self.allowance.uploads_per_day,
                self.allowance.bytes_per_day / 1_000_000_000,
                again.unwrap_or_else(|| "tomorrow".into())
            )));
        }
        Ok(left)
    }

    pub fn storage(&self) -> &UpgradeStorage {
        &self.storage
    }

    fn row(&self, r: &sqlx::any::AnyRow) -> Result<UpgradeRequest, UpgradeError> {
        request_from_row(&self.policy, r)
    }

    /// A request of this account; another account's is "not found".
    pub async fn get(&self, account_id: &str, id: &str) -> Result<UpgradeRequest, UpgradeError> {
        let sql = format!("SELECT {COLUMNS} FROM upgrade_requests WHERE id = $1 AND account_id = $2");
        let r = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(account_id).fetch_optional(self.db.pool()).await?;
        r.as_ref().map(|r| self.row(r)).transpose()?.ok_or_else(|| UpgradeError::NotFound("No such upgrade.".into()))
    }

    pub async fn list(&self, account_id: &str) -> Result<Vec<UpgradeRequest>, UpgradeError> {
        let sql = format!("SELECT {COLUMNS} FROM upgrade_requests WHERE account_id = $1 ORDER BY created_at DESC");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).fetch_all(self.db.pool()).await?;
        rows.iter().map(|r| self.row(r)).collect()
    }

    /// Takes an upload already spooled into the upgrade storage (`spooled`)
    /// and queues its upgrade. The kind comes from the content, not the name.
    pub async fn submit(
        &self,
        account_id: &str,
        file_name: &str,
        spooled: &Path,
    ) -> Result<UpgradeRequest, UpgradeError> {
        let mut magic = [0u8; 16];
        let n = {
            use std::io::Read;
            let mut f = std::fs::File::open(spooled)?;
            f.read(&mut magic)?
        };
        let kind = if n >= 4 && magic.starts_with(b"PK\x03\x04") {
            "archive"
        } else if n == 16 && &magic == b"SQLite format 3\0" {
            "sqlite"
        } else {
            let _ = std::fs::remove_file(spooled);
            return Err(UpgradeError::Invalid(
                "Upload a Seldesk export archive (.zip) or a Seldesk SQLite database file; this file is neither."
                    .into(),
            ));
        };
        let name: String = file_name
            .chars()
            .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
            .take(200)
            .collect::<String>()
            .trim()
            .to_string();
        let name = if name.is_empty() { "upload".to_string() } else { name };
        if seldesk_privacy::card::contains_card_number(&name) {
            std::fs::remove_file(spooled)?;
            return Err(UpgradeError::Invalid(seldesk_privacy::card::CARD_NUMBER_REFUSED.into()));
        }
        let size = std::fs::metadata(spooled)?.len();
        let id = uuid::Uuid::now_v7().simple().to_string();
        self.storage.store_upload(&id, spooled).await?;
        sqlx::query(
            "INSERT INTO upgrade_requests (id, account_id, file_name, kind, status, created_at, size) VALUES ($1, $2, $3, $4, 'queued', $5, $6)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(&name)
        .bind(kind)
        .bind(to_millis(self.clock.now()))
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .execute(self.db.pool())
        .await?;
        self.audit
            .record(
                &Actor::Person { id: account_id.into() },
                "upgrade.uploaded",
                Some(&subject(account_id)),
                Some(&format!("upgrade:{id}")),
                serde_json::json!({ "kind": kind }),
            )
            .await?;
        self.queue
            .enqueue(seldesk_jobs::NewJob::of(&UpgradeJob { id: id.clone() }).dedupe(format!("upgrade:{id}")))
            .await
            .map_err(|e| UpgradeError::Internal(Fault::new("cannot schedule the upgrade", e)))?;
        self.get(account_id, &id).await
    }

    /// Carries out a request in this process (tests, and `upgrades.worker =
    /// "inline"`); the upgrade service's own process runs [`UpgradeWorker`].
    pub async fn run(&self, id: &str) -> Result<String, UpgradeError> {
        self.worker().run(id).await
    }

    /// The part of the service that carries out upgrades: no audit key, no
    /// customer-database storage, only the upgrade storage.
    pub fn worker(&self) -> UpgradeWorker {
        UpgradeWorker {
            db: self.db.clone(),
            clock: self.clock.clone(),
            policy: self.policy.clone(),
            storage: self.storage.clone(),
            tenants: self.tenants.clone(),
            erasure_log: self.erasure_log.clone(),
            time_limit: None,
            isolation: None,
        }
    }

    /// The finished upgrade whose result can be downloaded.
    pub async fn finished(&self, account_id: &str, id: &str) -> Result<UpgradeRequest, UpgradeError> {
        let req = self.get(account_id, id).await?;
        if req.status != "done" || !req.result_present || !self.storage.has_result(id).await? {
            return Err(UpgradeError::NotFound("There is no upgraded database to download (any more).".into()));
        }
        Ok(req)
    }

    /// Erases everything of a request at the person's request (UPG-2).
    pub async fn erase(&self, account_id: &str, id: &str) -> Result<(), UpgradeError> {
        let req = self.get(account_id, id).await?;
        if req.status == "running" {
            return Err(UpgradeError::Conflict("The upgrade is running; delete it when it has finished.".into()));
        }
        self.storage.erase_files(id).await?;
        sqlx::query("DELETE FROM upgrade_requests WHERE id = $1").bind(id).execute(self.db.pool()).await?;
        let category = if req.status == "failed" { "upgrade_failed_upload" } else { "upgrade_upload" };
        self.erasure_log
            .record(
                category,
                &[(Some(subject(account_id).as_str()), format!("upgrade:{id}").as_str())],
                ErasureReason::PersonRequest,
                &Actor::Person { id: account_id.into() },
            )
            .await?;
        Ok(())
    }
}

/// The files of one upgrade: where the upload is, where to work, where the
/// result goes, and what to call it.
#[derive(Debug, Clone)]
pub struct UpgradeFiles {
    /// `archive` or `sqlite`.
    pub kind: String,
    pub upload: PathBuf,
    pub work: PathBuf,
    pub result: PathBuf,
    /// The uploaded file's name (for the result's manifest).
    pub name: String,
    /// When (RFC 3339), for the result's manifest.
    pub now: String,
}

fn too_long(limit: std::time::Duration) -> String {
    format!(
        "The upgrade took longer than the service allows ({} minutes); the file was not kept. Try a smaller database, or ask the Helpdesk.",
        limit.as_secs().div_ceil(60)
    )
}

/// The upgrade itself, on files only (no control plane, no key): check and
/// load the upload, migrate it, write the result archive. Returns the report.
pub fn upgrade_files(
    tenants: &TenantFiles,
    files: &UpgradeFiles,
    cipher: Option<&seldesk_blob::XChaCha20Poly1305>,
    progress: &dyn Fn(i64),
) -> Result<serde_json::Value, String> {
    // The plain upload lives beside the work folder only while this runs.
    let plain_upload = files.work.with_extension("plain");
    let done = (|| {
        let started = std::time::Instant::now();
        let upload = match cipher {
            Some(c) => {
                if let Some(parent) = plain_upload.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                seldesk_blob::sealed_file::open_file(c, &files.upload, &plain_upload).map_err(|e| {
                    format!("The upload could not be read back from storage ({e}); please upload it again.")
                })?;
                plain_upload.clone()
            }
            None => files.upload.clone(),
        };
        let open_ms = started.elapsed().as_millis() as u64;
        let mut report = upgrade_plain(tenants, &upload, files, cipher, progress)?;
        report["took_ms"]["open_upload"] = open_ms.into();
        Ok(report)
    })();
    let _ = std::fs::remove_file(&plain_upload);
    done
}

fn upgrade_plain(
    tenants: &TenantFiles,
    upload: &Path,
    files: &UpgradeFiles,
    cipher: Option<&seldesk_blob::XChaCha20Poly1305>,
    progress: &dyn Fn(i64),
) -> Result<serde_json::Value, String> {
    // An upload opened from its seal is a private plain copy.
    let private_upload = cipher.is_some();
    let result = &files.result;
    let (work, kind, name, now) = (&files.work, &files.kind, &files.name, &files.now);

    if work.exists() {
        std::fs::remove_dir_all(work).map_err(|e| e.to_string())?;
    }
    // How long each step took, in the report: where an upgrade's time goes.
    let mut clock = std::time::Instant::now();
    let mut lap = || {
        let ms = clock.elapsed().as_millis() as u64;
        clock = std::time::Instant::now();
        ms
    };
    let from = if kind == "archive" {
        tenants.import_into_as_is(work, upload).map_err(|e| e.to_string())?
    } else {
        // A private plain copy (opened from its seal) is moved, not copied again.
        let imported = if private_upload {
            tenants.import_sqlite_file_as_is(work, upload)
        } else {
            tenants.import_sqlite_into_as_is(work, upload)
        };
        imported.map_err(|e| e.to_string())?
    };
    let check_ms = lap();
    progress(30);
    let db_path = work.join("db.sqlite");
    let conn = rusqlite::Connection::open(&db_path).map_err(|e| e.to_string())?;
    // A private copy that is thrown away if anything fails: no journal and
    // no sync (half the writes of a migration that rewrites every row),
    // and a 64 MiB page cache, well inside the process's memory limit.
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -65536")
        .map_err(|e| e.to_string())?;
    let before = table_counts(&conn).map_err(|e| e.to_string())?;
    let (from_v, to_v) = seldesk_tenants::files::migrate(&conn).map_err(|e| e.to_string())?;
    let after = table_counts(&conn).map_err(|e| e.to_string())?;
    drop(conn);
    let migrate_ms = lap();
    progress(60);
    if let Some(parent) = result.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let partial = result.with_extension("partial");
    match cipher {
        // Sealed as it is written: no plain archive, no second pass.
        Some(c) => (|| -> Result<(), Box<dyn std::error::Error>> {
            let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&partial)?);
            let sealing = seldesk_blob::sealed_file::SealingWriter::new(c, file)?;
            let sealing = tenants.export_dir_into(work, sealing, name, now, &|_, _| {})?;
            sealing.finish()?.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            Ok(())
        })()
        .map_err(|e| e.to_string())?,
        None => tenants.export_dir(work, &partial, name, now, &|_, _| {}).map_err(|e| e.to_string())?,
    }
    std::fs::rename(&partial, result).map_err(|e| e.to_string())?;
    std::fs::remove_dir_all(work).map_err(|e| e.to_string())?;
    let export_ms = lap();
    let added: Vec<&String> = after.keys().filter(|t| !before.contains_key(*t)).collect();
    Ok(serde_json::json!({
        "from_version": from_v.min(from), "to_version": to_v,
        "tables_added": added,
        "rows_before": before, "rows_after": after,
        "took_ms": { "check_and_load": check_ms, "migrate": migrate_ms, "result_archive": export_ms },
    }))
}

/// Carries out upgrades (the job `upgrade.run`), in the server's process or
/// in the upgrade service's own (`seldesk upgrade-worker`). It holds no
/// production key: only the control plane's job queue and request records,
/// the erasure log, and its own storage.
#[derive(Clone)]
pub struct UpgradeWorker {
    db: Db,
    clock: Arc<dyn Clock>,
    policy: Arc<seldesk_domain::Policy>,
    storage: UpgradeStorage,
    /// The import and export code of customer databases, used on the
    /// worker's own work folder only.
    tenants: TenantFiles,
    erasure_log: ErasureLog,
    time_limit: Option<std::time::Duration>,
    isolation: Option<Isolation>,
}

/// How the worker runs each upgrade in a process of its own: the program
/// (`seldesk upgrade-run`) and the limits that process sets on itself.
#[derive(Debug, Clone)]
pub struct Isolation {
    pub program: PathBuf,
    /// The service's key, for the child to open the upload and seal the result.
    pub key_file: PathBuf,
    pub memory_mb: u64,
    pub file_mb: u64,
}

/// What an isolated upgrade came to.
enum Isolated {
    Done(Result<serde_json::Value, String>),
    TimedOut(String),
}

impl UpgradeWorker {
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        policy: Arc<seldesk_domain::Policy>,
        storage: UpgradeStorage,
        erasure_log: ErasureLog,
    ) -> Self {
        let tenants = TenantFiles::new(&storage.root().join("code"));
        Self { db, clock, policy, storage, tenants, erasure_log, time_limit: None, isolation: None }
    }

    /// Runs each upgrade in its own process under memory and file-size
    /// limits, killed past the time limit: an upload that would need more
    /// fails alone, and nothing of it outlives the attempt.
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = Some(isolation);
        self
    }

    async fn run_isolated(&self, id: &str, iso: &Isolation, files: &UpgradeFiles) -> Result<Isolated, UpgradeError> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(&iso.program)
            .arg("upgrade-run")
            .arg("--kind")
            .arg(&files.kind)
            .arg("--upload")
            .arg(&files.upload)
            .arg("--work")
            .arg(&files.work)
            .arg("--result")
            .arg(&files.result)
            // `--name=…` keeps a file name that starts with `-` a value.
            .arg(format!("--name={}", files.name))
            .arg(format!("--now={}", files.now))
            .arg("--key-file")
            .arg(&iso.key_file)
            .arg("--memory-limit-mb")
            .arg(iso.memory_mb.to_string())
            .arg("--file-limit-mb")
            .arg(iso.file_mb.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| UpgradeError::Internal(Fault::new("cannot start the upgrade process", e)))?;
        let stdout = child.stdout.take().ok_or_else(|| UpgradeError::Internal(Fault::msg("no output pipe")))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let (mut report, mut error) = (None, None);
        let reading = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(p) = line.strip_prefix("progress ").and_then(|p| p.trim().parse::<i64>().ok()) {
                    self.set_progress(id, p.clamp(0, 99)).await?;
                } else if let Some(json) = line.strip_prefix("report ") {
                    report = serde_json::from_str::<serde_json::Value>(json).ok();
                } else if let Some(message) = line.strip_prefix("error ") {
                    error = Some(message.chars().take(1000).collect::<String>());
                }
            }
            child.wait().await.map_err(UpgradeError::Io)
        };
        let status = match self.time_limit {
            None => reading.await?,
            Some(limit) => match tokio::time::timeout(limit, reading).await {
                Ok(status) => status?,
                Err(_) => return Ok(Isolated::TimedOut(too_long(limit))),
            },
        };
        use std::os::unix::process::ExitStatusExt;
        Ok(Isolated::Done(match (status.success(), report, error, status.signal()) {
            (true, Some(report), _, _) => Ok(report),
            (_, _, Some(message), _) => Err(message),
            // SIGXFSZ: a file would have grown past the limit.
            (_, _, _, Some(25)) => Err(format!(
                "The upgrade needed a file larger than the service allows ({} MB); nothing was kept. Ask the Helpdesk about larger databases.",
                iso.file_mb
            )),
            // An allocation the memory limit refused aborts the process.
            (_, _, _, Some(6)) => Err(format!(
                "The upgrade needed more memory than the service allows ({} MB); nothing was kept. Ask the Helpdesk about larger databases.",
                iso.memory_mb
            )),
            _ => Err(format!("The upgrade stopped unexpectedly ({status}); nothing was kept. Please try again.")),
        }))
    }

    /// The longest one upgrade may take; past it the request fails.
    pub fn with_time_limit(mut self, limit: std::time::Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }

    async fn set_progress(&self, id: &str, progress: i64) -> Result<(), UpgradeError> {
        sqlx::query("UPDATE upgrade_requests SET progress = $1 WHERE id = $2")
            .bind(progress)
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Carries out a request (the job). Failures are recorded on the request
    /// with a message for the person; they are not job failures to retry.
    pub async fn run(&self, id: &str) -> Result<String, UpgradeError> {
        let sql = format!("SELECT {COLUMNS} FROM upgrade_requests WHERE id = $1");
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db.pool()).await? else {
            return Ok("request no longer exists".into());
        };
        let req = request_from_row(&self.policy, &r)?;
        if req.status == "done" || req.status == "failed" {
            return Ok(format!("already {}", req.status));
        }
        sqlx::query("UPDATE upgrade_requests SET status = 'running', progress = 5 WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        let Some(upload) = self.storage.upload_file(id).await? else {
            let message = "The upload could not be read back from storage; please upload it again.";
            self.fail(id, message).await?;
            return Ok(format!("upgrade {id} refused: {message}"));
        };
        let files = UpgradeFiles {
            kind: req.kind.clone(),
            upload,
            work: self.storage.work(id)?,
            result: self.storage.result_file(id)?,
            name: req.file_name.clone(),
            now: self.clock.now().format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        };
        let files_result = files.result.clone();
        let outcome = match &self.isolation {
            Some(isolation) => match self.run_isolated(id, isolation, &files).await? {
                Isolated::Done(outcome) => outcome,
                Isolated::TimedOut(message) => {
                    self.fail(id, &message).await?;
                    return Ok(format!("upgrade {id} stopped: {message}"));
                }
            },
            None => {
                let this = self.clone();
                let rid = id.to_string();
                let tenants = self.tenants.clone();
                let handle = tokio::runtime::Handle::current();
                let progress = move |p: i64| {
                    let _ = handle.block_on(this.set_progress(&rid, p));
                };
                let cipher = self.storage.cipher().cloned();
                let work =
                    tokio::task::spawn_blocking(move || upgrade_files(&tenants, &files, cipher.as_ref(), &progress));
                let joined = match self.time_limit {
                    None => work.await,
                    Some(limit) => match tokio::time::timeout(limit, work).await {
                        Ok(joined) => joined,
                        Err(_) => {
                            let message = too_long(limit);
                            self.fail(id, &message).await?;
                            return Err(UpgradeError::TimedOut(limit.as_secs()));
                        }
                    },
                };
                joined.map_err(|e| UpgradeError::Internal(Fault::new("upgrade worker failed", e)))?
            }
        };
        let finished = to_millis(self.clock.now());
        match outcome {
            Ok(report) => {
                // Stored where every node reaches it, then (UPG-2) the
                // upload goes as soon as the upgrade succeeded. A result
                // that cannot be stored fails the job, which is retried.
                self.storage.store_result(id, &files_result).await?;
                self.storage.drop_upload(id).await?;
                sqlx::query(
                    "UPDATE upgrade_requests SET status = 'done', progress = 100, from_version = $1, to_version = $2,
                         report = $3, source_present = 0, result_present = 1, finished_at = $4, last_success_at = $4
                     WHERE id = $5",
                )
                .bind(report["from_version"].as_i64())
                .bind(report["to_version"].as_i64())
                .bind(report.to_string())
                .bind(finished)
                .bind(id)
                .execute(self.db.pool())
                .await?;
                self.erasure_log
                    .record(
                        "upgrade_upload",
                        &[(Some(subject(&req.account_id).as_str()), format!("upload:{id}").as_str())],
                        ErasureReason::UpgradeFinished,
                        &Actor::System,
                    )
                    .await?;
                Ok(format!("upgraded {id}"))
            }
            Err(message) => {
                self.fail(id, &message).await?;
                Ok(format!("upgrade {id} refused: {message}"))
            }
        }
    }

    /// Nothing in the upload is needed to say why it failed: it goes at
    /// once; the record (name and reason) stays for the policy's short period.
    async fn fail(&self, id: &str, message: &str) -> Result<(), UpgradeError> {
        self.storage.erase_files(id).await?;
        sqlx::query(
            "UPDATE upgrade_requests SET status = 'failed', error = $1, finished_at = $2, source_present = 0 WHERE id = $3",
        )
        .bind(message)
        .bind(to_millis(self.clock.now()))
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

/// Rows per table, for the report.
fn table_counts(conn: &rusqlite::Connection) -> rusqlite::Result<std::collections::BTreeMap<String, i64>> {
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let names: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut out = std::collections::BTreeMap::new();
    for n in names.into_iter().filter(|n| !seldesk_tenants::search::is_index_object(n)) {
        let c: i64 =
            conn.query_row(&format!("SELECT COUNT(*) FROM \"{}\"", n.replace('"', "\"\"")), [], |r| r.get(0))?;
        out.insert(n, c);
    }
    Ok(out)
}

/// Retention of upgrade requests: results (and anything left) at the
/// policy's period after the last successful upgrade (`upgrade_upload`,
/// UPG-3), failed uploads after theirs (`upgrade_failed_upload`).
pub struct UpgradeEraser {
    db: Db,
    storage: UpgradeStorage,
    failed: bool,
}

impl UpgradeEraser {
    pub fn new(db: Db, storage: UpgradeStorage, failed: bool) -> Self {
        Self { db, storage, failed }
    }
}

fn store_err(e: UpgradeError) -> PrivacyError {
    match e {
        UpgradeError::Query(q) => PrivacyError::from(q),
        other => PrivacyError::Misconfigured(other.to_string()),
    }
}

impl Eraser for UpgradeEraser {
    fn category(&self) -> &'static str {
        if self.failed { "upgrade_failed_upload" } else { "upgrade_upload" }
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let sql = if self.failed {
                "SELECT id, account_id, created_at AS start FROM upgrade_requests WHERE status = 'failed' AND created_at <= $1"
            } else {
                "SELECT id, account_id, last_success_at AS start FROM upgrade_requests WHERE status = 'done' AND last_success_at <= $1"
            };
            let rows = sqlx::query(sql).bind(to_millis(cutoff)).fetch_all(self.db.pool()).await?;
            rows.iter()
                .map(|r| {
                    Ok(Candidate {
                        record: format!("upgrade:{}", r.try_get::<String, _>("id")?),
                        subject: Some(subject(&r.try_get::<String, _>("account_id")?)),
                        start: from_millis(r.try_get("start")?),
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
                let Some(id) = c.record.strip_prefix("upgrade:") else { continue };
                self.storage.erase_files(id).await.map_err(store_err)?;
                n += sqlx::query("DELETE FROM upgrade_requests WHERE id = $1")
                    .bind(id)
                    .execute(self.db.pool())
                    .await?
                    .rows_affected();
            }
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(async move {
            let sql = if self.failed {
                "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM upgrade_requests WHERE status = 'failed'"
            } else {
                "SELECT COUNT(*) AS n, MIN(last_success_at) AS oldest FROM upgrade_requests WHERE status <> 'failed'"
            };
            let r = sqlx::query(sql).fetch_one(self.db.pool()).await?;
            Ok(Census {
                live: r.try_get::<i64, _>("n")?.max(0) as u64,
                oldest: r.try_get::<Option<i64>, _>("oldest")?.map(from_millis),
            })
        })
    }
}

/// A person's upgrade requests, uploads and results: erased with their
/// account (a running upgrade makes the erasure wait and retry).
pub struct UpgradeRecords {
    pub upgrades: Upgrades,
}

impl seldesk_privacy::PersonalDataStore for UpgradeRecords {
    fn section(&self) -> &'static str {
        "database_upgrades"
    }

    fn category(&self) -> &'static str {
        "upgrade_upload"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["upgrade_requests"]
    }

    fn export<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<serde_json::Value, PrivacyError>> {
        Box::pin(async move {
            let Some(account) = subject.strip_prefix("person:") else { return Ok(serde_json::Value::Null) };
            let list = self.upgrades.list(account).await.map_err(|e| PrivacyError::Invalid(e.to_string()))?;
            serde_json::to_value(list).map_err(|e| PrivacyError::Invalid(e.to_string()))
        })
    }

    fn erase<'a>(
        &'a self,
        person: &'a seldesk_privacy::Person,
    ) -> BoxFuture<'a, Result<seldesk_privacy::Erased, PrivacyError>> {
        Box::pin(async move {
            let err = |e: UpgradeError| PrivacyError::Invalid(e.to_string());
            let list = self.upgrades.list(&person.account_id).await.map_err(err)?;
            let mut out = seldesk_privacy::Erased::default();
            for req in &list {
                self.upgrades.erase(&person.account_id, &req.id).await.map_err(err)?;
                out.records += 1;
            }
            if out.records > 0 {
                out.erased.push(format!(
                    "{} database upgrade request(s), with the databases you uploaded and their upgraded copies",
                    out.records
                ));
            }
            Ok(out)
        })
    }
}
