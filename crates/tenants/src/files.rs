//! The files of customer databases. Everything of a database lives under its
//! region's folder, exports in flight included (RES-1).

use seldesk_domain::Fault;
use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::path::{Component, Path, PathBuf};

use rusqlite::{Connection, OpenFlags, types::ValueRef};
use serde::{Deserialize, Serialize};

use crate::TenantError;
use crate::changes::{Consistent, TenantConn, configure_wal};

/// The schema version new databases start at: the newest.
pub const SCHEMA_VERSION: i64 = 3;

/// Version 2: people's names split into given and family name; sales
/// opportunities with stages and amounts.
const SCHEMA_V2: &str = "
ALTER TABLE contacts ADD COLUMN given_name TEXT;
ALTER TABLE contacts ADD COLUMN family_name TEXT;
UPDATE contacts SET
    given_name = CASE WHEN instr(trim(name), ' ') > 0 THEN substr(trim(name), 1, instr(trim(name), ' ') - 1) ELSE trim(name) END,
    family_name = CASE WHEN instr(trim(name), ' ') > 0 THEN trim(substr(trim(name), instr(trim(name), ' ') + 1)) END
WHERE is_company = 0;
CREATE TABLE opportunities (
    id           INTEGER PRIMARY KEY,
    contact_id   INTEGER REFERENCES contacts (id) ON DELETE SET NULL,
    title        TEXT    NOT NULL,
    stage        TEXT    NOT NULL DEFAULT 'new' CHECK (stage IN ('new', 'qualified', 'proposal', 'won', 'lost')),
    amount_cents INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
CREATE INDEX opportunities_contact ON opportunities (contact_id);
";

/// Version 3: amounts in several currencies; an activity history.
const SCHEMA_V3: &str = "
ALTER TABLE opportunities ADD COLUMN currency TEXT NOT NULL DEFAULT 'USD';
CREATE TABLE activities (
    id             INTEGER PRIMARY KEY,
    contact_id     INTEGER REFERENCES contacts (id) ON DELETE CASCADE,
    opportunity_id INTEGER REFERENCES opportunities (id) ON DELETE CASCADE,
    kind           TEXT    NOT NULL CHECK (kind IN ('call', 'email', 'meeting', 'note')),
    summary        TEXT    NOT NULL,
    at             TEXT    NOT NULL
);
CREATE INDEX activities_contact ON activities (contact_id);
";

/// Each step takes a database from the version before to this one.
const MIGRATIONS: &[(i64, &str)] = &[(2, SCHEMA_V2), (3, SCHEMA_V3)];

/// Creates an empty customer database at an older schema `version` (for
/// upgrade tests and the upgrade service's checks).
pub fn create_at_version(path: &Path, version: i64) -> Result<Connection, TenantError> {
    if !(1..=SCHEMA_VERSION).contains(&version) {
        return Err(TenantError::Internal(Fault::msg(format!("no schema version {version}"))));
    }
    let conn = Connection::open(path)?;
    conn.execute_batch(&format!(
        "BEGIN; {SCHEMA_V1} INSERT INTO seldesk_meta (key, value) VALUES ('schema_version', '1'); COMMIT;"
    ))?;
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= version) {
        conn.execute_batch(&format!(
            "BEGIN; {sql} UPDATE seldesk_meta SET value = '{v}' WHERE key = 'schema_version'; COMMIT;"
        ))?;
    }
    Ok(conn)
}

/// The schema version recorded in a customer database.
pub fn schema_version(conn: &Connection) -> Result<i64, TenantError> {
    let v: String = conn.query_row("SELECT value FROM seldesk_meta WHERE key = 'schema_version'", [], |r| r.get(0))?;
    v.parse().map_err(|_| TenantError::Internal(Fault::msg(format!("schema version `{v}` is not a number"))))
}

/// Brings a database to [`SCHEMA_VERSION`], all steps in one transaction:
/// a failure leaves it exactly as it was. Returns (from, to).
pub fn migrate(conn: &Connection) -> Result<(i64, i64), TenantError> {
    let from = schema_version(conn)?;
    if from > SCHEMA_VERSION {
        return Err(TenantError::Conflict(format!(
            "This database has schema version {from}, newer than this Seldesk ({SCHEMA_VERSION})."
        )));
    }
    if from == SCHEMA_VERSION {
        return Ok((from, from));
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let steps = (|| -> Result<(), TenantError> {
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
            conn.execute_batch(sql)?;
            conn.execute("UPDATE seldesk_meta SET value = ?1 WHERE key = 'schema_version'", [version.to_string()])?;
        }
        let fk: i64 = conn.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0))?;
        if fk != 0 {
            return Err(TenantError::Internal(Fault::msg(format!("{fk} broken references after the upgrade"))));
        }
        Ok(())
    })();
    match steps {
        Ok(()) => {
            conn.execute_batch("COMMIT")?;
            Ok((from, SCHEMA_VERSION))
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

const SCHEMA_V1: &str = "
CREATE TABLE seldesk_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE contacts (
    id         INTEGER PRIMARY KEY,
    is_company INTEGER NOT NULL DEFAULT 0,
    name       TEXT    NOT NULL,
    email      TEXT,
    phone      TEXT,
    address    TEXT,
    notes      TEXT,
    company_id INTEGER REFERENCES contacts (id) ON DELETE SET NULL,
    tags       TEXT    NOT NULL DEFAULT '',
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);
CREATE INDEX contacts_name ON contacts (name);
CREATE TABLE attachments (
    id          INTEGER PRIMARY KEY,
    contact_id  INTEGER NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    file_name   TEXT    NOT NULL,
    stored_name TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    created_at  TEXT    NOT NULL
);
";

/// Where customer databases live, and which regions' databases this node
/// may touch at all (RES-1): every path to a database's files is made by
/// [`TenantFiles::dir`], which refuses a region the node does not serve.
#[derive(Debug, Clone)]
pub struct TenantFiles {
    root: PathBuf,
    /// None: every region (the single-node default).
    serves: Option<std::sync::Arc<Vec<String>>>,
}

/// `manifest.json` of an export archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub seldesk_version: String,
    pub schema_version: i64,
    pub database_name: String,
    pub created: String,
    /// BLAKE3 of each file in the archive, by path.
    pub checksums: std::collections::BTreeMap<String, String>,
}

/// How long an export archive is kept after its last download request, so
/// that an interrupted download can resume (`Range`/`If-Range`) from the very
/// same bytes. Short on purpose: the archive is a copy of personal data.
pub const EXPORT_RESUME_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// An entry larger than this that unpacks more than [`MAX_COMPRESSION_RATIO`]
/// times its packed size is refused as a zip bomb (SQL dumps pack about 5–8×).
const MAX_RATIO_CHECK_BYTES: u64 = 32 * 1024 * 1024;
const MAX_COMPRESSION_RATIO: u64 = 200;

/// Longest statement (or line) of an imported dump.sql, and so the largest
/// single value it can hold; a longer one is refused, not buffered.
const MAX_STATEMENT_BYTES: usize = 64 * 1024 * 1024;

/// Largest archive we import, and largest file inside it.
pub const MAX_IMPORT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

fn valid_segment(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl TenantFiles {
    pub fn new(data: &Path) -> Self {
        Self { root: data.join("tenants"), serves: None }
    }

    /// Only databases of `regions` may be opened, created, copied, restored
    /// or imported through these files (a node bound to its data centers).
    pub fn serving(mut self, regions: Vec<String>) -> Self {
        self.serves = Some(std::sync::Arc::new(regions));
        self
    }

    /// The regions this node serves; None when it serves every region.
    pub fn served(&self) -> Option<&[String]> {
        self.serves.as_deref().map(Vec::as_slice)
    }

    /// Whether this node may touch databases of `region`.
    pub fn serves(&self, region: &str) -> bool {
        self.serves.as_ref().is_none_or(|s| s.iter().any(|r| r == region))
    }

    /// Refuses a region this node does not serve, naming both.
    pub fn check_region(&self, region: &str) -> Result<(), TenantError> {
        match self.serves(region) {
            true => Ok(()),
            false => Err(TenantError::Residency {
                region: region.to_string(),
                serves: self.served().map(|s| s.join(", ")).unwrap_or_default(),
            }),
        }
    }

    /// `<data>/tenants/<region>/<id>`; ids and regions are ours, checked
    /// anyway; a region this node does not serve is refused.
    pub fn dir(&self, region: &str, id: &str) -> Result<PathBuf, TenantError> {
        if !valid_segment(region) || !valid_segment(id) {
            return Err(TenantError::Internal(Fault::msg(format!("refusing path segment {region}/{id}"))));
        }
        self.check_region(region)?;
        Ok(self.root.join(region).join(id))
    }

    pub fn db_path(&self, region: &str, id: &str) -> Result<PathBuf, TenantError> {
        Ok(self.dir(region, id)?.join("db.sqlite"))
    }

    /// Opens a database with the settings every connection needs; what it
    /// commits is checkpointed when it is dropped ([`crate::changes`]).
    pub fn open(&self, region: &str, id: &str) -> Result<TenantConn, TenantError> {
        let path = self.db_path(region, id)?;
        Ok(TenantConn::new(self.open_raw(&path)?, path))
    }

    fn open_raw(&self, path: &Path) -> Result<Connection, TenantError> {
        open_configured(path)
    }

    /// A consistent view of a database for a backup, with the pages changed
    /// since its last backup when they are known ([`crate::changes`]).
    pub fn consistent(&self, region: &str, id: &str) -> Result<Consistent, TenantError> {
        let path = self.db_path(region, id)?;
        crate::changes::consistent(&path, self.open_raw(&path)?)
    }

    /// Creates a new, empty database at the newest schema version.
    pub fn create(&self, region: &str, id: &str) -> Result<(), TenantError> {
        let dir = self.dir(region, id)?;
        std::fs::create_dir_all(dir.join("files"))?;
        // Copying a prepared empty database is much cheaper than running the
        // schema for every new database (no DDL, no journal-mode switch).
        let template = self.template()?;
        let target = dir.join("db.sqlite");
        let tmp = dir.join(".db.sqlite.new");
        std::fs::copy(&template, &tmp)?;
        std::fs::rename(&tmp, &target)?;
        Ok(())
    }

    /// The empty database at the newest schema version with its search
    /// index, made once per data folder.
    fn template(&self) -> Result<PathBuf, TenantError> {
        let path = self.root.join(format!(".template-v{SCHEMA_VERSION}-indexed.sqlite"));
        if path.is_file() {
            return Ok(path);
        }
        std::fs::create_dir_all(&self.root)?;
        let tmp = self.root.join(format!(".template-v{SCHEMA_VERSION}.{}.tmp", uuid::Uuid::now_v7().simple()));
        {
            let conn = Connection::open(&tmp)?;
            // Version 1 plus every migration: one definition of each version.
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = DELETE; BEGIN; {SCHEMA_V1} INSERT INTO seldesk_meta (key, value) VALUES ('schema_version', '1'); COMMIT;"
            ))?;
            migrate(&conn)?;
            crate::search::ensure_index(&conn)?;
        }
        // Another thread may have won the race: either file is the same.
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Erases a database and its attachments at once (DB-6, DB-7).
    pub fn destroy(&self, region: &str, id: &str) -> Result<(), TenantError> {
        let dir = self.dir(region, id)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Where a copy of database `id` is put together in `region` before it
    /// takes the database's name.
    fn staging_dir(&self, region: &str, id: &str) -> Result<PathBuf, TenantError> {
        let dir = self.dir(region, id)?;
        Ok(dir.with_file_name(format!(".incoming-{id}")))
    }

    /// Removes what an interrupted move left of `id` in `region`: its
    /// staging folder, and the folder itself when `whole` (the control
    /// plane says the database lives elsewhere).
    pub fn remove_stale_copy(&self, region: &str, id: &str, whole: bool) -> Result<(), TenantError> {
        let staging = self.staging_dir(region, id)?;
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        if whole {
            self.destroy(region, id)?;
        }
        Ok(())
    }

    /// What moves left in the regions this node serves: (region, id,
    /// placed) for each staging folder (`placed` false) and each database
    /// folder put in place by a move not yet known to have switched.
    pub fn received_copies(&self) -> Result<Vec<(String, String, bool)>, TenantError> {
        let mut out = Vec::new();
        let regions = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for region in regions.filter_map(Result::ok) {
            let Ok(r) = region.file_name().into_string() else { continue };
            if !valid_segment(&r) || !self.serves(&r) || !region.path().is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(region.path())?.filter_map(Result::ok) {
                let Ok(name) = entry.file_name().into_string() else { continue };
                if let Some(id) = name.strip_prefix(".incoming-") {
                    if valid_segment(id) {
                        out.push((r.clone(), id.to_string(), false));
                    }
                } else if valid_segment(&name) && crate::transfer::unsettled(&entry.path()) {
                    out.push((r.clone(), name, true));
                }
            }
        }
        Ok(out)
    }

    /// Copies database `from` to a new database `to` in the same region (a
    /// consistent snapshot with the backup API, plus attachments): the copy a
    /// test upgrade runs on.
    pub fn duplicate(&self, region: &str, from: &str, to: &str) -> Result<(), TenantError> {
        let source = self.open(region, from)?;
        let target_dir = self.dir(region, to)?;
        std::fs::create_dir_all(target_dir.join("files"))?;
        let result = (|| {
            {
                let mut target = Connection::open(target_dir.join("db.sqlite"))?;
                rusqlite::backup::Backup::new(&source, &mut target)?.run_to_completion(
                    256,
                    std::time::Duration::from_millis(1),
                    None,
                )?;
            }
            if let Ok(rd) = std::fs::read_dir(self.dir(region, from)?.join("files")) {
                for e in rd.filter_map(Result::ok) {
                    if e.path().is_file() {
                        std::fs::copy(e.path(), target_dir.join("files").join(e.file_name()))?;
                    }
                }
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&target_dir);
        }
        result
    }

    /// Size of the database file and attachments, in bytes.
    pub fn size(&self, region: &str, id: &str) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| {
                            let p = e.path();
                            if p.is_dir() { walk(&p) } else { e.metadata().map(|m| m.len()).unwrap_or(0) }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        self.dir(region, id).map(|d| walk(&d)).unwrap_or(0)
    }

    /// Writes the export archive (manifest.json, dump.sql, files/) into the
    /// database's own folder and returns its path and tag. The archive stays
    /// there for [`EXPORT_RESUME_WINDOW`] after its last use so an interrupted
    /// download can resume from the same bytes; it goes with the database.
    /// Memory stays flat: rows go straight to the zip stream. `progress` gets
    /// (done, total) in bytes of the database and its files.
    pub fn export(
        &self,
        region: &str,
        id: &str,
        name: &str,
        now: &str,
        progress: &dyn Fn(u64, u64),
    ) -> Result<(PathBuf, String), TenantError> {
        let dir = self.dir(region, id)?;
        self.sweep_exports(region, id, EXPORT_RESUME_WINDOW)?;
        let tag = uuid::Uuid::now_v7().simple().to_string();
        let out_path = dir.join(format!(".export-{tag}.zip"));
        let tmp_path = dir.join(format!(".export-{tag}.partial"));
        match self.export_dir(&dir, &tmp_path, name, now, progress) {
            Ok(()) => {
                std::fs::rename(&tmp_path, &out_path)?;
                Ok((out_path, tag))
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp_path);
                Err(e)
            }
        }
    }

    /// Writes the export archive of the database in folder `dir`
    /// (`db.sqlite` and `files/`) to `out_path`; the caller places `out_path`
    /// (tenant exports beside the database, upgrade results in the upgrade
    /// storage).
    pub fn export_dir(
        &self,
        dir: &Path,
        out_path: &Path,
        name: &str,
        now: &str,
        progress: &dyn Fn(u64, u64),
    ) -> Result<(), TenantError> {
        let file = File::create(out_path)?;
        let zip = zip::ZipWriter::new(std::io::BufWriter::with_capacity(256 * 1024, file));
        let out = self.export_dir_with(dir, zip, name, now, progress)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(())
    }

    /// Like [`Self::export_dir`], written as a stream into `out` (which
    /// need not seek: the upgrade service seals its results as they are
    /// written). Returns `out` with the whole archive written to it.
    pub fn export_dir_into<W: Write + Send>(
        &self,
        dir: &Path,
        out: W,
        name: &str,
        now: &str,
        progress: &dyn Fn(u64, u64),
    ) -> Result<W, TenantError> {
        let mut out = self.export_dir_with(dir, zip::ZipWriter::new_stream(out), name, now, progress)?.into_inner();
        out.flush()?;
        Ok(out)
    }

    fn export_dir_with<W: Write + std::io::Seek + Send>(
        &self,
        dir: &Path,
        zip: zip::ZipWriter<W>,
        name: &str,
        now: &str,
        progress: &dyn Fn(u64, u64),
    ) -> Result<W, TenantError> {
        let conn = self.open_raw(&dir.join("db.sqlite"))?;
        // One read transaction: every table and the schema version come from
        // the same snapshot while writers carry on (WAL).
        conn.execute_batch("BEGIN")?;
        let db_bytes: u64 = conn
            .query_row("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|v| v.max(0) as u64)
            .unwrap_or(0);
        let files = dir.join("files");
        let mut file_list: Vec<(String, PathBuf, u64)> = std::fs::read_dir(&files)
            .map(|rd| {
                // Regular files with the names Seldesk gives, never a link.
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter(|e| e.file_name().to_str().is_some_and(crate::app::is_stored_name))
                    .map(|e| {
                        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                        (e.file_name().to_string_lossy().into_owned(), e.path(), len)
                    })
                    .collect()
            })
            .unwrap_or_default();
        file_list.sort();
        let total = db_bytes + file_list.iter().map(|f| f.2).sum::<u64>();
        let result = self.write_archive(&conn, zip, name, now, db_bytes, total, &file_list, progress);
        let _ = conn.execute_batch("COMMIT");
        if result.is_ok() {
            progress(total, total);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn write_archive<W: Write + std::io::Seek + Send>(
        &self,
        conn: &Connection,
        mut zip: zip::ZipWriter<W>,
        name: &str,
        now: &str,
        db_bytes: u64,
        total: u64,
        file_list: &[(String, PathBuf, u64)],
        progress: &dyn Fn(u64, u64),
    ) -> Result<W, TenantError> {
        let schema: i64 = conn
            .query_row("SELECT value FROM seldesk_meta WHERE key = 'schema_version'", [], |r| r.get::<_, String>(0))?
            .parse()
            .unwrap_or(SCHEMA_VERSION);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            // Level 1: SQL text still shrinks about 6x, and the export keeps
            // up with the disk instead of the compressor (docs/benchmarks.md).
            .compression_level(Some(1))
            .large_file(true);
        let mut checksums = std::collections::BTreeMap::new();

        zip.start_file("dump.sql", options).map_err(zip_err)?;
        let rows_total: u64 = table_rows(conn)?.max(1);
        let mut rows_done = 0u64;
        // Two stages on two threads: this one reads rows and writes SQL text,
        // the other hashes and compresses it. A bounded channel of 1 MiB
        // chunks keeps memory flat (at most a few MiB in flight).
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (mut zip, dump_hash) = std::thread::scope(|scope| -> Result<_, TenantError> {
            let compressor = scope.spawn(move || -> Result<_, TenantError> {
                for chunk in rx {
                    zip.write_all(&chunk)?;
                }
                Ok(zip)
            });
            let mut writer = ChunkSender { buf: Vec::with_capacity(CHUNK), tx, hasher: blake3::Hasher::new() };
            let dumped = dump(conn, &mut writer, &mut || {
                rows_done += 1;
                if rows_done.is_multiple_of(4096) {
                    progress((db_bytes as u128 * rows_done.min(rows_total) as u128 / rows_total as u128) as u64, total);
                }
            })
            .and_then(|()| writer.flush().map_err(TenantError::from));
            let hash = writer.hasher.finalize().to_hex().to_string();
            // Dropping the sender ends the compressor's loop either way.
            drop(writer);
            let compressed =
                compressor.join().map_err(|_| TenantError::Internal(Fault::msg("the compressor panicked")))?;
            // A failed write in the compressor is the cause; report it first.
            let compressed = compressed?;
            dumped?;
            Ok((compressed, hash))
        })?;
        checksums.insert("dump.sql".to_string(), dump_hash);
        let mut done = db_bytes;
        progress(done, total);
        for (file_name, path, len) in file_list {
            let rel = format!("files/{file_name}");
            zip.start_file(&rel, options).map_err(zip_err)?;
            let mut hashing = HashingWriter { inner: &mut zip, hasher: blake3::Hasher::new() };
            std::io::copy(&mut File::open(path)?, &mut hashing)?;
            checksums.insert(rel, hashing.hasher.finalize().to_hex().to_string());
            done += len;
            progress(done, total);
        }
        let manifest = Manifest {
            format: "seldesk-export/1".into(),
            seldesk_version: env!("CARGO_PKG_VERSION").into(),
            schema_version: schema,
            database_name: name.to_string(),
            created: now.to_string(),
            checksums,
        };
        zip.start_file("manifest.json", options).map_err(zip_err)?;
        zip.write_all(
            &serde_json::to_vec_pretty(&manifest)
                .map_err(|e| TenantError::Internal(Fault::new("encoding the export manifest", e)))?,
        )?;
        let mut out = zip.finish().map_err(zip_err)?;
        out.flush()?;
        Ok(out)
    }

    /// A prepared export archive by its tag, if it is still kept; using it
    /// keeps it for another [`EXPORT_RESUME_WINDOW`].
    pub fn prepared_export(&self, region: &str, id: &str, tag: &str) -> Result<Option<PathBuf>, TenantError> {
        if tag.len() != 32 || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let path = self.dir(region, id)?.join(format!(".export-{tag}.zip"));
        self.sweep_exports(region, id, EXPORT_RESUME_WINDOW)?;
        if !path.is_file() {
            return Ok(None);
        }
        let _ = File::options().append(true).open(&path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Ok(Some(path))
    }

    /// The most recently used prepared export of a database, for clients that
    /// resume with a plain `Range` (no `If-Range`).
    pub fn latest_export(&self, region: &str, id: &str) -> Result<Option<String>, TenantError> {
        self.sweep_exports(region, id, EXPORT_RESUME_WINDOW)?;
        let dir = self.dir(region, id)?;
        let newest = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let tag = name.strip_prefix(".export-")?.strip_suffix(".zip")?.to_string();
                        Some((e.metadata().and_then(|m| m.modified()).ok()?, tag))
                    })
                    .max()
            })
            .unwrap_or(None);
        Ok(newest.map(|(_, tag)| tag))
    }

    /// Removes a database's export archives unused for longer than `max_age`
    /// (and partial ones left by a crash). Returns how many went.
    pub fn sweep_exports(&self, region: &str, id: &str, max_age: std::time::Duration) -> Result<usize, TenantError> {
        let dir = self.dir(region, id)?;
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(0) };
        for e in rd.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(".export-") {
                continue;
            }
            let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|m| now.duration_since(m).ok());
            // A partial archive older than an hour belongs to no running export.
            let limit =
                if name.ends_with(".partial") { max_age.max(std::time::Duration::from_secs(3600)) } else { max_age };
            if age.is_some_and(|a| a > limit) && std::fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Bytes of the customer databases of this node's regions (their files,
    /// attachments, WAL and exports).
    pub fn disk_use(&self) -> u64 {
        let Ok(regions) = std::fs::read_dir(&self.root) else { return 0 };
        regions
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir() && self.serves(&e.file_name().to_string_lossy()))
            .map(|region| {
                std::fs::read_dir(region.path())
                    .map(|dbs| {
                        dbs.filter_map(Result::ok)
                            .filter(|e| e.file_name().to_str().is_some_and(valid_segment))
                            .map(|db| {
                                self.size(&region.file_name().to_string_lossy(), &db.file_name().to_string_lossy())
                            })
                            .sum::<u64>()
                    })
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Sweeps the export archives of every database on this node.
    pub fn sweep_all_exports(&self, max_age: std::time::Duration) -> Result<usize, TenantError> {
        let mut removed = 0;
        let Ok(regions) = std::fs::read_dir(&self.root) else { return Ok(0) };
        for region in regions.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
            let region_name = region.file_name().to_string_lossy().into_owned();
            if !self.serves(&region_name) {
                continue;
            }
            for db in std::fs::read_dir(region.path())?.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
                let id = db.file_name().to_string_lossy().into_owned();
                if valid_segment(&region_name) && valid_segment(&id) {
                    removed += self.sweep_exports(&region_name, &id, max_age)?;
                }
            }
        }
        Ok(removed)
    }

    /// Creates database `id` in `region` from an untrusted export archive:
    /// size limits, no path escapes, checksums verified, SQL run under an
    /// authorizer that allows only tables, indexes and inserts.
    pub fn import(&self, region: &str, id: &str, archive: &Path) -> Result<Manifest, TenantError> {
        self.import_into(&self.dir(region, id)?, archive)
    }

    /// As [`TenantFiles::import`], into any folder (the upgrade service
    /// works in its own storage, never under `tenants/`). On failure the
    /// folder is removed.
    pub fn import_into(&self, dir: &Path, archive: &Path) -> Result<Manifest, TenantError> {
        self.import_archive(dir, archive, true)
    }

    /// As [`TenantFiles::import_into`] but leaves the database at the
    /// archive's schema version (the upgrade service migrates and reports).
    pub fn import_into_as_is(&self, dir: &Path, archive: &Path) -> Result<i64, TenantError> {
        self.import_archive(dir, archive, false).map(|m| m.schema_version)
    }

    fn import_archive(&self, dir: &Path, archive: &Path, upgrade: bool) -> Result<Manifest, TenantError> {
        let bad = |m: &str| TenantError::invalid("archive", m.to_string());
        let size = std::fs::metadata(archive)?.len();
        if size > MAX_IMPORT_BYTES {
            return Err(TenantError::TooLarge("The archive is larger than 2 GiB.".into()));
        }
        let mut zip = zip::ZipArchive::new(File::open(archive)?)
            .map_err(|_| bad("This is not a Seldesk export archive (not a zip file)."))?;
        let manifest: Manifest = {
            let mut f = zip.by_name("manifest.json").map_err(|_| bad("The archive has no manifest.json."))?;
            let mut s = String::new();
            f.by_ref().take(1024 * 1024).read_to_string(&mut s).map_err(|_| bad("manifest.json is not text."))?;
            serde_json::from_str(&s).map_err(|e| bad(&format!("manifest.json is not valid: {e}")))?
        };
        if !manifest.format.starts_with("seldesk-export/") {
            return Err(bad("The manifest is not from a Seldesk export."));
        }
        if manifest.schema_version > SCHEMA_VERSION || manifest.schema_version < 1 {
            return Err(bad(&format!(
                "The archive has schema version {}, which this Seldesk cannot import.",
                manifest.schema_version
            )));
        }
        // Before anything is written: what the entries say they unpack to.
        // A zip bomb is refused here; one whose headers lie is still stopped
        // by the bounded copy below.
        let mut declared: u64 = 0;
        for i in 0..zip.len() {
            let entry = zip.by_index_raw(i).map_err(|_| bad("The archive is damaged."))?;
            declared = declared.saturating_add(entry.size());
            let ratio = entry.size() / entry.compressed_size().max(1);
            if entry.size() > MAX_RATIO_CHECK_BYTES && ratio > MAX_COMPRESSION_RATIO {
                return Err(bad(&format!(
                    "`{}` would unpack {ratio} times its size: this looks like a zip bomb, so nothing was unpacked.",
                    entry.name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
                )));
            }
        }
        if declared > MAX_IMPORT_BYTES {
            return Err(TenantError::TooLarge("The archive unpacks to more than 2 GiB.".into()));
        }
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(dir.join("files"))?;
        let result = (|| -> Result<(), TenantError> {
            let mut total: u64 = 0;
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).map_err(|_| bad("The archive is damaged."))?;
                let name = entry.name().map(|n| n.to_string()).map_err(|_| bad("An entry name is not valid UTF-8."))?;
                if entry.is_dir() || name == "manifest.json" {
                    continue;
                }
                let path = Path::new(&name);
                if path.components().any(|c| !matches!(c, Component::Normal(_))) {
                    return Err(bad(&format!("The entry `{name}` tries to leave the archive's folder.")));
                }
                let expected = manifest
                    .checksums
                    .get(&name)
                    .ok_or_else(|| bad(&format!("`{name}` is not listed in the manifest.")))?;
                let target = if name == "dump.sql" {
                    dir.join(".import-dump.sql")
                } else if let Some(file) = name.strip_prefix("files/").filter(|f| !f.contains('/')) {
                    if !crate::app::is_stored_name(file) {
                        return Err(bad(&format!("`{name}` is not a file name Seldesk gives attachments.")));
                    }
                    dir.join("files").join(file)
                } else {
                    return Err(bad(&format!("Unexpected entry `{name}`.")));
                };
                let mut out = File::create(&target)?;
                let mut hashing = HashingWriter { inner: &mut out, hasher: blake3::Hasher::new() };
                // Bounded copy: a zip bomb stops at the limit. What the
                // archive cannot deliver (a size or checksum its headers lie
                // about) is the archive's fault, named; what cannot be
                // written is ours.
                let mut limited = entry.by_ref().take(MAX_IMPORT_BYTES - total + 1);
                let mut buf = vec![0u8; 256 * 1024];
                let mut copied = 0u64;
                loop {
                    let n = match limited.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(bad(&format!("`{name}` cannot be unpacked: {e}. The archive is damaged.")));
                        }
                    };
                    hashing.write_all(&buf[..n])?;
                    copied += n as u64;
                }
                total += copied;
                if total > MAX_IMPORT_BYTES {
                    return Err(TenantError::TooLarge("The archive unpacks to more than 2 GiB.".into()));
                }
                if &hashing.hasher.finalize().to_hex().to_string() != expected {
                    return Err(bad(&format!(
                        "`{name}` does not match its checksum: the archive was altered or damaged."
                    )));
                }
            }
            let dump_path = dir.join(".import-dump.sql");
            if !dump_path.is_file() {
                return Err(bad("The archive has no dump.sql."));
            }
            let sql = std::io::BufReader::with_capacity(1024 * 1024, File::open(&dump_path)?);
            let loaded = load_untrusted_sql(&dir, sql, manifest.schema_version, upgrade);
            let _ = std::fs::remove_file(&dump_path);
            loaded
        })();
        if let Err(e) = result {
            // Nothing half-imported stays behind.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(manifest)
    }
}

/// Loads untrusted SQL text into `dir/db.sqlite` under an authorizer that
/// allows only tables, indexes and inserts; checks integrity and that it is
/// a Seldesk database of `version`, then upgrades it to the newest version.
fn load_untrusted_sql(dir: &Path, sql: impl std::io::BufRead, version: i64, upgrade: bool) -> Result<(), TenantError> {
    let bad = |m: &str| TenantError::invalid("archive", m.to_string());
    let conn = Connection::open(dir.join("db.sqlite"))?;
    configure(&conn)?;
    crate::sandbox::restrict_to_load(&conn)?;
    execute_streaming(&conn, sql).map_err(|e| bad(&format!("dump.sql could not be loaded: {e}")))?;
    conn.authorizer(None::<fn(rusqlite::hooks::AuthContext<'_>) -> rusqlite::hooks::Authorization>)?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(bad("The imported database fails its integrity check."));
    }
    check_loaded(&conn, version, upgrade, bad)
}

/// What every imported database must pass, however it was loaded.
fn check_loaded(
    conn: &Connection,
    version: i64,
    upgrade: bool,
    bad: impl Fn(&str) -> TenantError,
) -> Result<(), TenantError> {
    // An attachment row decides which file is served and deleted: a name
    // Seldesk did not generate is refused here, not trusted later.
    {
        let mut stmt = conn.prepare("SELECT id, stored_name FROM attachments")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let stored = row.get_ref(1)?.as_str().unwrap_or_default();
            if !crate::app::is_stored_name(stored) {
                let id: i64 = row.get(0).unwrap_or_default();
                return Err(bad(&format!(
                    "Attachment {id} names a file that Seldesk did not create; the archive was altered."
                )));
            }
        }
    }
    let found: Option<String> =
        conn.query_row("SELECT value FROM seldesk_meta WHERE key = 'schema_version'", [], |r| r.get(0)).ok();
    if found.as_deref() != Some(&version.to_string()) {
        return Err(bad("dump.sql does not hold a Seldesk database of the manifest's schema version."));
    }
    if upgrade {
        // An archive of an older version arrives upgraded to the newest.
        migrate(conn).map_err(|e| bad(&format!("The archive could not be upgraded to the current version: {e}")))?;
    }
    Ok(())
}

impl TenantFiles {
    /// Makes database folder `dir` from an untrusted SQLite file of a Seldesk
    /// database (the upgrade service's other input). The file is never used
    /// as it is: a copy is opened read-only in defensive mode with
    /// `trusted_schema` off, checked, dumped to SQL, and the SQL loaded into a
    /// new file under the import authorizer, so no trigger, view or virtual
    /// table of the upload can run. Returns the upload's schema version.
    pub fn import_sqlite_into(&self, dir: &Path, upload: &Path) -> Result<i64, TenantError> {
        self.import_sqlite(dir, upload, true, false)
    }

    /// As [`TenantFiles::import_sqlite_into`], left at the upload's version.
    pub fn import_sqlite_into_as_is(&self, dir: &Path, upload: &Path) -> Result<i64, TenantError> {
        self.import_sqlite(dir, upload, false, false)
    }

    /// As [`TenantFiles::import_sqlite_into_as_is`], taking the file itself
    /// (a private copy the caller made, moved instead of copied again).
    pub fn import_sqlite_file_as_is(&self, dir: &Path, upload: &Path) -> Result<i64, TenantError> {
        self.import_sqlite(dir, upload, false, true)
    }

    fn import_sqlite(&self, dir: &Path, upload: &Path, upgrade: bool, consume: bool) -> Result<i64, TenantError> {
        let bad = |m: &str| TenantError::invalid("upload", m.to_string());
        if std::fs::metadata(upload)?.len() > MAX_IMPORT_BYTES {
            return Err(TenantError::TooLarge("The file is larger than 2 GiB.".into()));
        }
        let mut header = [0u8; 16];
        File::open(upload)?.read_exact(&mut header).map_err(|_| bad("The file is too short to be a database."))?;
        if &header != b"SQLite format 3\0" {
            return Err(bad("This is neither a Seldesk export archive (.zip) nor a SQLite database."));
        }
        std::fs::create_dir_all(dir.join("files"))?;
        let result = (|| -> Result<i64, TenantError> {
            let scratch = dir.join(".untrusted.sqlite");
            if consume {
                std::fs::rename(upload, &scratch)?;
            } else {
                std::fs::copy(upload, &scratch)?;
            }
            let (sql, version) = {
                let conn = Connection::open_with_flags(
                    &scratch,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
                // SQLite's advice for files from elsewhere: no schema code,
                // cells checked as they are read, no memory mapping.
                conn.execute_batch("PRAGMA trusted_schema = OFF; PRAGMA cell_size_check = ON; PRAGMA mmap_size = 0")?;
                let check: String = conn
                    .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                    .map_err(|_| bad("The database file is damaged."))?;
                if check != "ok" {
                    return Err(bad("The database file fails its integrity check."));
                }
                let version =
                    schema_version(&conn).map_err(|_| bad("This is not a Seldesk database (no schema version)."))?;
                if !(1..=SCHEMA_VERSION).contains(&version) {
                    return Err(bad(&format!(
                        "The database has schema version {version}, which this Seldesk cannot upgrade."
                    )));
                }
                // Validated once, the copy is the database: when its schema is
                // exactly Seldesk's for its version (no trigger, view, virtual
                // table or extra object can exist then) and it passed the
                // integrity check, its pages are used as they are instead of
                // re-inserting every row (the upgrade service's speed).
                if same_schema_as(&conn, version, dir)? {
                    drop(conn);
                    let db = dir.join("db.sqlite");
                    std::fs::rename(&scratch, &db)?;
                    let conn = Connection::open(&db)?;
                    configure(&conn)?;
                    check_loaded(&conn, version, upgrade, bad)?;
                    return Ok(version);
                }
                // Through a file, not memory: the database may be large.
                let mut out =
                    std::io::BufWriter::with_capacity(1024 * 1024, File::create(dir.join(".untrusted-dump.sql"))?);
                dump(&conn, &mut out, &mut || {}).map_err(|e| bad(&format!("The database cannot be read: {e}")))?;
                out.flush()?;
                (dir.join(".untrusted-dump.sql"), version)
            };
            let _ = std::fs::remove_file(&scratch);
            let reader = std::io::BufReader::with_capacity(1024 * 1024, File::open(&sql)?);
            let loaded = load_untrusted_sql(dir, reader, version, upgrade);
            let _ = std::fs::remove_file(&sql);
            loaded?;
            Ok(version)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }
}

/// Whether an untrusted database's schema is exactly the one Seldesk
/// creates at `version` (same objects, same SQL, UTF-8), compared with a
/// reference made in `dir`.
fn same_schema_as(conn: &Connection, version: i64, dir: &Path) -> Result<bool, TenantError> {
    // The SQL compared token by token: a file made by other tools keeps our
    // statements' meaning but not always their line breaks and indentation.
    let normal = |sql: String| {
        sql.split_whitespace().collect::<Vec<_>>().join(" ").replace("( ", "(").replace(" )", ")").replace(" ,", ",")
    };
    let list = |c: &Connection| -> rusqlite::Result<Vec<(String, String, String, String)>> {
        let mut stmt =
            c.prepare("SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_schema ORDER BY type, name")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, normal(r.get(3)?))))?;
        rows.collect()
    };
    let encoding: String = conn.query_row("PRAGMA encoding", [], |r| r.get(0))?;
    if encoding != "UTF-8" {
        return Ok(false);
    }
    let reference_path = dir.join(".reference.sqlite");
    let _ = std::fs::remove_file(&reference_path);
    let reference = create_at_version(&reference_path, version)?;
    let same = list(&reference)? == list(conn)?;
    drop(reference);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", reference_path.display()));
    }
    Ok(same)
}

/// Runs SQL text from `reader` statement by statement (in batches of about
/// 1 MiB of complete statements), so memory stays flat whatever the size.
/// Statements end at a `;` outside quotes; a split in the wrong place only
/// makes SQLite refuse the text, which the authorizer guards anyway.
fn execute_streaming(conn: &Connection, mut reader: impl std::io::BufRead) -> Result<(), rusqlite::Error> {
    let mut batch = String::new();
    let mut in_single = false;
    let mut in_double = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        // A line is read only up to the longest statement we accept, so one
        // giant line cannot take the memory it claims.
        let n = reader
            .by_ref()
            .take(MAX_STATEMENT_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if line.len() + batch.len() > MAX_STATEMENT_BYTES && batch.len() > 1024 * 1024 {
            conn.execute_batch(&batch)?;
            batch.clear();
        }
        if line.len() > MAX_STATEMENT_BYTES || batch.len() + line.len() > MAX_STATEMENT_BYTES {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_TOOBIG),
                Some(format!("a statement is longer than {} MiB", MAX_STATEMENT_BYTES >> 20)),
            ));
        }
        let line = std::str::from_utf8(&line).map_err(|e| rusqlite::Error::Utf8Error(0, e))?;
        batch.push_str(line);
        batch.push('\n');
        for ch in line.chars() {
            match ch {
                '\'' if !in_double => in_single = !in_single,
                '"' if !in_single => in_double = !in_double,
                _ => {}
            }
        }
        if !in_single && !in_double && line.trim_end().ends_with(';') && batch.len() >= 1024 * 1024 {
            conn.execute_batch(&batch)?;
            batch.clear();
        }
    }
    if !batch.trim().is_empty() {
        conn.execute_batch(&batch)?;
    }
    Ok(())
}

fn zip_err(e: zip::result::ZipError) -> TenantError {
    TenantError::Internal(Fault::new("archive error", e))
}

/// Opens an existing customer database with the settings every connection
/// needs (the file must exist: opening never creates one).
pub(crate) fn open_configured(path: &Path) -> Result<Connection, TenantError> {
    if !path.is_file() {
        return Err(TenantError::NotFound("The database file is missing.".into()));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    configure(&conn)?;
    configure_wal(&conn)?;
    Ok(conn)
}

/// Per-connection settings: real deletes, foreign keys, a busy wait.
fn configure(conn: &Connection) -> Result<(), TenantError> {
    // The busy wait first, so that a setting that may need the file's lock
    // (`journal_mode`) waits for another connection instead of failing.
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        // WAL with synchronous=NORMAL: a crash of the process loses nothing;
        // only a power loss can drop the last commits, never corrupt the file.
        "PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA trusted_schema = OFF;",
    )?;
    // Shadow tables (the search index's) read-only to every statement; no
    // writable schema, whatever SQL runs on the connection.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    Ok(())
}

struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A SQL text dump the sqlite3 tool can load.
fn dump(conn: &Connection, out: &mut impl Write, on_row: &mut dyn FnMut()) -> Result<(), TenantError> {
    writeln!(out, "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;")?;
    let mut stmt = conn.prepare("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, rowid")?;
    let objects: Vec<(String, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    // The search index is Seldesk's, rebuilt wherever the dump is loaded.
    for (kind, name, sql) in objects.iter().filter(|(_, name, _)| !crate::search::is_index_object(name)) {
        writeln!(out, "{sql};")?;
        if kind != "table" {
            continue;
        }
        let mut rows = conn.prepare(&format!("SELECT * FROM {}", quote_ident(name)))?;
        let n = rows.column_count();
        let mut q = rows.query([])?;
        let prefix = format!("INSERT INTO {} VALUES(", quote_ident(name));
        // One reusable line buffer: no allocation per value.
        let mut line: Vec<u8> = Vec::with_capacity(4096);
        while let Some(row) = q.next()? {
            line.clear();
            line.extend_from_slice(prefix.as_bytes());
            for i in 0..n {
                if i > 0 {
                    line.push(b',');
                }
                match row.get_ref(i)? {
                    ValueRef::Null => line.extend_from_slice(b"NULL"),
                    ValueRef::Integer(v) => write!(line, "{v}")?,
                    ValueRef::Real(v) => write!(line, "{v:?}")?,
                    ValueRef::Text(t) => {
                        line.push(b'\'');
                        // The stored bytes as they are (as `sqlite3 .dump` does), quotes doubled.
                        for (j, part) in t.split(|b| *b == b'\'').enumerate() {
                            if j > 0 {
                                line.extend_from_slice(b"''");
                            }
                            line.extend_from_slice(part);
                        }
                        line.push(b'\'');
                    }
                    ValueRef::Blob(b) => {
                        line.extend_from_slice(b"X'");
                        for x in b {
                            write!(line, "{x:02X}")?;
                        }
                        line.push(b'\'');
                    }
                }
            }
            line.extend_from_slice(b");\n");
            out.write_all(&line)?;
            on_row();
        }
    }
    writeln!(out, "COMMIT;")?;
    Ok(())
}

const CHUNK: usize = 1024 * 1024;

/// Hashes what is written and sends it in 1 MiB chunks to the compressing
/// thread (hashing here balances the two threads: deflate is the heavier).
struct ChunkSender {
    buf: Vec<u8>,
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    hasher: blake3::Hasher,
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.hasher.update(&self.buf);
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
            self.tx.send(full).map_err(|_| std::io::Error::other("the compressor stopped"))?;
        }
        Ok(())
    }
}

/// Rows in all tables, for progress.
fn table_rows(conn: &Connection) -> Result<u64, TenantError> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?;
    let names: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut total = 0u64;
    for name in names.into_iter().filter(|n| !crate::search::is_index_object(n)) {
        let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", quote_ident(&name)), [], |r| r.get(0))?;
        total += n.max(0) as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).expect("count")
    }

    #[test]
    fn every_older_version_migrates_to_the_newest_with_its_data() {
        let dir = tempfile::tempdir().expect("tmp");
        // Version 1 with 30,000 contacts: people with one or several names, and companies.
        let v1 = create_at_version(&dir.path().join("v1.sqlite"), 1).expect("v1");
        v1.execute_batch("BEGIN").expect("begin");
        for i in 0..30_000 {
            let (name, company) = match i % 3 {
                0 => (format!("Asha Rao {i}"), 0),
                1 => (format!("Mononym{i}"), 0),
                _ => (format!("Acme Traders {i}"), 1),
            };
            v1.execute(
                "INSERT INTO contacts (is_company, name, created_at, updated_at) VALUES (?1, ?2, 'now', 'now')",
                rusqlite::params![company, name],
            )
            .expect("insert");
        }
        v1.execute_batch("COMMIT").expect("commit");
        assert_eq!(migrate(&v1).expect("migrate"), (1, SCHEMA_VERSION));
        assert_eq!(schema_version(&v1).expect("version"), SCHEMA_VERSION);
        assert_eq!(count(&v1, "SELECT COUNT(*) FROM contacts"), 30_000);
        let (given, family): (String, String) = v1
            .query_row("SELECT given_name, family_name FROM contacts WHERE name = 'Asha Rao 0'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("split");
        assert_eq!((given.as_str(), family.as_str()), ("Asha", "Rao 0"));
        assert_eq!(
            count(
                &v1,
                "SELECT COUNT(*) FROM contacts WHERE name = 'Mononym1' AND given_name = 'Mononym1' AND family_name IS NULL"
            ),
            1
        );
        assert_eq!(count(&v1, "SELECT COUNT(*) FROM contacts WHERE is_company = 1 AND given_name IS NOT NULL"), 0);
        assert_eq!(count(&v1, "SELECT COUNT(*) FROM activities"), 0);
        let check: String = v1.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
        assert_eq!(check, "ok");
        // Version 2 with 20,000 opportunities: amounts keep, currency defaults.
        let v2 = create_at_version(&dir.path().join("v2.sqlite"), 2).expect("v2");
        v2.execute_batch(
            "BEGIN; INSERT INTO contacts (name, created_at, updated_at) VALUES ('Lee Wong', 'now', 'now');",
        )
        .expect("c");
        for i in 0..20_000 {
            v2.execute(
                "INSERT INTO opportunities (contact_id, title, stage, amount_cents, created_at, updated_at) VALUES (1, ?1, 'proposal', ?2, 'now', 'now')",
                rusqlite::params![format!("Deal {i}"), i * 100],
            )
            .expect("opportunity");
        }
        v2.execute_batch("COMMIT").expect("commit");
        assert_eq!(migrate(&v2).expect("migrate"), (2, SCHEMA_VERSION));
        assert_eq!(count(&v2, "SELECT COUNT(*) FROM opportunities WHERE currency = 'USD'"), 20_000);
        assert_eq!(
            count(&v2, "SELECT SUM(amount_cents) FROM opportunities"),
            (0..20_000i64).map(|i| i * 100).sum::<i64>()
        );
        // Already the newest: nothing to do.
        assert_eq!(migrate(&v2).expect("again"), (SCHEMA_VERSION, SCHEMA_VERSION));
    }

    #[test]
    fn sql_is_run_in_streaming_batches_without_splitting_quoted_text() {
        let conn = Connection::open_in_memory().expect("db");
        let mut sql = String::from("BEGIN;\nCREATE TABLE t (v TEXT);\n");
        for i in 0..3000 {
            // Quoted text with a newline after a semicolon, and a doubled quote.
            sql.push_str(&format!("INSERT INTO t VALUES('row {i};\nit''s {}');\n", "x".repeat(500)));
        }
        sql.push_str("COMMIT;\n");
        execute_streaming(&conn, std::io::Cursor::new(sql.into_bytes())).expect("load");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM t"), 3000);
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM t WHERE v LIKE 'row 7;' || char(10) || 'it''s %'"), 1);
    }

    #[test]
    fn a_failing_step_leaves_the_database_as_it_was() {
        let dir = tempfile::tempdir().expect("tmp");
        let conn = create_at_version(&dir.path().join("v1.sqlite"), 1).expect("v1");
        // The owner made a table of the name version 2 needs.
        conn.execute_batch("CREATE TABLE opportunities (x TEXT); INSERT INTO contacts (name, created_at, updated_at) VALUES ('Kept Person', 'now', 'now');").expect("setup");
        assert!(migrate(&conn).is_err());
        assert_eq!(schema_version(&conn).expect("version"), 1);
        let cols: i64 = count(&conn, "SELECT COUNT(*) FROM pragma_table_info('contacts') WHERE name = 'given_name'");
        assert_eq!(cols, 0, "no half-applied step");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM contacts"), 1);
    }

    #[test]
    fn export_reports_progress_and_old_archives_are_swept() {
        let data = tempfile::tempdir().expect("tmp");
        let files = TenantFiles::new(data.path());
        files.create("in", "db1").expect("create");
        let conn = files.open("in", "db1").expect("open");
        for i in 0..5000 {
            conn.execute(
                "INSERT INTO contacts (name, created_at, updated_at) VALUES (?1, 'now', 'now')",
                [format!("Person {i}")],
            )
            .expect("insert");
        }
        std::fs::write(files.dir("in", "db1").expect("dir").join("files/a.txt"), b"attachment").expect("file");
        let seen = Mutex::new(Vec::new());
        let (path, tag) = files
            .export("in", "db1", "db one", "2026-01-01T00:00:00Z", &|done, total| {
                seen.lock().expect("lock").push((done, total))
            })
            .expect("export");
        let seen = seen.into_inner().expect("lock");
        assert!(seen.len() >= 2, "progress reported while exporting: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "progress only grows");
        let (done, total) = *seen.last().expect("last");
        assert_eq!(done, total);
        assert!(total > 10);
        assert_eq!(files.latest_export("in", "db1").expect("latest"), Some(tag.clone()));
        assert_eq!(files.prepared_export("in", "db1", &tag).expect("prepared"), Some(path.clone()));
        assert_eq!(files.prepared_export("in", "db1", "../../etc").expect("bad tag"), None);
        // Kept for the resume window, then swept.
        assert_eq!(files.sweep_all_exports(EXPORT_RESUME_WINDOW).expect("sweep"), 0);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(files.sweep_all_exports(std::time::Duration::from_millis(1)).expect("sweep"), 1);
        assert!(!path.exists());
        assert_eq!(files.latest_export("in", "db1").expect("latest"), None);
    }

    // promise: DB-5
    #[test]
    fn a_multi_chunk_dump_unpacks_to_the_exact_sql_and_imports() {
        let data = tempfile::tempdir().expect("tmp");
        let files = TenantFiles::new(data.path());
        files.create("in", "db1").expect("create");
        let conn = files.open("in", "db1").expect("open");
        conn.execute_batch("BEGIN").expect("begin");
        // About 6 MiB of SQL: several chunks through the compressing thread.
        for i in 0..40_000u32 {
            conn.execute(
                "INSERT INTO contacts (name, notes, created_at, updated_at) VALUES (?1, ?2, 'now', 'now')",
                rusqlite::params![format!("Person {i}"), blake3::hash(&i.to_le_bytes()).to_hex().to_string()],
            )
            .expect("insert");
        }
        conn.execute_batch("COMMIT").expect("commit");
        let mut expected = Vec::new();
        dump(&conn, &mut expected, &mut || {}).expect("dump");
        assert!(expected.len() > 4 * CHUNK, "{} bytes", expected.len());
        // New databases come with the search index; exports never carry it.
        assert!(crate::search::has_index(&conn).expect("index"));
        assert!(!String::from_utf8_lossy(&expected).contains("seldesk_search"), "the dump holds no index");
        let (path, _) = files.export("in", "db1", "db one", "2026-01-01T00:00:00Z", &|_, _| {}).expect("export");
        // The zip reader checks the CRC and sizes as it inflates.
        let mut archive = zip::ZipArchive::new(File::open(&path).expect("open")).expect("zip");
        let mut sql = Vec::new();
        archive.by_name("dump.sql").expect("dump.sql").read_to_end(&mut sql).expect("inflate");
        assert!(sql == expected, "the SQL comes back byte for byte");
        let mut manifest = String::new();
        archive.by_name("manifest.json").expect("manifest").read_to_string(&mut manifest).expect("read");
        assert!(manifest.contains(&blake3::hash(&expected).to_hex().to_string()), "{manifest}");
        let copy = data.path().join("copy");
        std::fs::create_dir_all(&copy).expect("dir");
        files.import_into(&copy, &path).expect("import");
        let back = Connection::open(copy.join("db.sqlite")).expect("open");
        assert_eq!(count(&back, "SELECT count(*) FROM contacts"), 40_000);
        // The copy gets its own index where it is opened for writing.
        assert!(!crate::search::has_index(&back).expect("index"));
        assert!(crate::search::ensure_index(&back).expect("made"));
        let found = crate::app::list(&back, Some("Person 3999"), 20).expect("search");
        assert_eq!(
            found.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            [
                "Person 3999",
                "Person 39990",
                "Person 39991",
                "Person 39992",
                "Person 39993",
                "Person 39994",
                "Person 39995",
                "Person 39996",
                "Person 39997",
                "Person 39998",
                "Person 39999"
            ]
        );
    }

    // promise: RES-1
    #[test]
    fn a_node_touches_no_database_of_a_region_it_does_not_serve() {
        let dir = tempfile::tempdir().expect("dir");
        let all = TenantFiles::new(dir.path());
        all.create("in", "there").expect("an in database, made by the in node");
        let export = dir.path().join("x.zip");
        all.export_dir(&all.dir("in", "there").expect("dir"), &export, "there", "now", &|_, _| {}).expect("export");
        let before = std::fs::read_dir(dir.path().join("tenants/in")).expect("in").count();

        let uk = TenantFiles::new(dir.path()).serving(vec!["uk".into()]);
        let refused = |r: Result<(), TenantError>, what: &str| match r {
            Err(TenantError::Residency { region, serves }) => {
                assert_eq!((region.as_str(), serves.as_str()), ("in", "uk"), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        };
        refused(uk.create("in", "new").map(|_| ()), "create");
        refused(uk.open("in", "there").map(|_| ()), "open");
        refused(uk.consistent("in", "there").map(|_| ()), "backup read");
        refused(uk.import("in", "imported", &export).map(|_| ()), "import");
        refused(uk.duplicate("in", "there", "copy"), "copy");
        // A move's receiving and sending ends both go through `dir` (crate::moves).
        refused(uk.dir("in", "moved").map(|_| ()), "receive a move");
        refused(uk.dir("in", "incoming").map(|_| ()), "spool an upload");
        refused(uk.destroy("in", "there"), "destroy");
        assert_eq!(std::fs::read_dir(dir.path().join("tenants/in")).expect("in").count(), before, "nothing written");
        assert!(all.db_path("in", "there").expect("path").is_file(), "nothing removed");
        assert!(!dir.path().join("tenants/uk/there").exists(), "nothing copied out");
        // Its own region works.
        uk.create("uk", "mine").expect("create in uk");
    }
}
