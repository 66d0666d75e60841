//! The files of customer databases. Everything of a database lives under its
//! region's folder, exports in flight included (RES-1).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use rusqlite::{Connection, OpenFlags, types::ValueRef};
use serde::{Deserialize, Serialize};

use crate::TenantError;

/// The schema version new databases start at.
pub const SCHEMA_VERSION: i64 = 1;

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

/// Where customer databases live.
#[derive(Debug, Clone)]
pub struct TenantFiles {
    root: PathBuf,
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

/// Largest archive we import, and largest file inside it.
pub const MAX_IMPORT_BYTES: u64 = 2 * 1024 * 1024 * 1024;

fn valid_segment(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl TenantFiles {
    pub fn new(data: &Path) -> Self {
        Self { root: data.join("tenants") }
    }

    /// `<data>/tenants/<region>/<id>`; ids and regions are ours, checked anyway.
    pub fn dir(&self, region: &str, id: &str) -> Result<PathBuf, TenantError> {
        if !valid_segment(region) || !valid_segment(id) {
            return Err(TenantError::Internal(format!("refusing path segment {region}/{id}")));
        }
        Ok(self.root.join(region).join(id))
    }

    pub fn db_path(&self, region: &str, id: &str) -> Result<PathBuf, TenantError> {
        Ok(self.dir(region, id)?.join("db.sqlite"))
    }

    /// Opens a database with the settings every connection needs.
    pub fn open(&self, region: &str, id: &str) -> Result<Connection, TenantError> {
        let path = self.db_path(region, id)?;
        if !path.is_file() {
            return Err(TenantError::NotFound("The database file is missing.".into()));
        }
        let conn =
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        configure(&conn)?;
        Ok(conn)
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

    /// The empty database at the newest schema version, made once per data folder.
    fn template(&self) -> Result<PathBuf, TenantError> {
        let path = self.root.join(format!(".template-v{SCHEMA_VERSION}.sqlite"));
        if path.is_file() {
            return Ok(path);
        }
        std::fs::create_dir_all(&self.root)?;
        let tmp = self.root.join(format!(".template-v{SCHEMA_VERSION}.{}.tmp", uuid::Uuid::now_v7().simple()));
        {
            let conn = Connection::open(&tmp)?;
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = DELETE; BEGIN; {SCHEMA_V1} INSERT INTO seldesk_meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
            ))?;
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

    /// Copies a database to another region (DB-8): a consistent snapshot with
    /// SQLite's online backup API plus the attachments, then verifies the copy
    /// (integrity check and identical content hash). The source stays as it is.
    pub fn copy_to(&self, from_region: &str, to_region: &str, id: &str) -> Result<(), TenantError> {
        let source = self.open(from_region, id)?;
        let target_dir = self.dir(to_region, id)?;
        if target_dir.exists() {
            std::fs::remove_dir_all(&target_dir)?;
        }
        std::fs::create_dir_all(target_dir.join("files"))?;
        let result = (|| {
            {
                let mut target = Connection::open(target_dir.join("db.sqlite"))?;
                let backup = rusqlite::backup::Backup::new(&source, &mut target)?;
                backup.run_to_completion(256, std::time::Duration::from_millis(5), None)?;
            }
            let from_files = self.dir(from_region, id)?.join("files");
            if let Ok(rd) = std::fs::read_dir(&from_files) {
                for e in rd.filter_map(Result::ok) {
                    if e.path().is_file() {
                        std::fs::copy(e.path(), target_dir.join("files").join(e.file_name()))?;
                    }
                }
            }
            let target = self.open(to_region, id)?;
            let check: String = target.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if check != "ok" {
                return Err(TenantError::Internal("the copy fails its integrity check".into()));
            }
            if content_hash(&source)? != content_hash(&target)? {
                return Err(TenantError::Internal("the copy differs from the source".into()));
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
    /// database's own folder and returns its path; the caller streams it and
    /// removes it. Memory stays flat: rows go straight to the zip stream.
    pub fn export(&self, region: &str, id: &str, name: &str, now: &str) -> Result<PathBuf, TenantError> {
        let dir = self.dir(region, id)?;
        let out_path = dir.join(format!(".export-{}.zip", uuid::Uuid::now_v7().simple()));
        let conn = self.open(region, id)?;
        let schema: i64 = conn
            .query_row("SELECT value FROM seldesk_meta WHERE key = 'schema_version'", [], |r| r.get::<_, String>(0))?
            .parse()
            .unwrap_or(SCHEMA_VERSION);
        let file = File::create(&out_path)?;
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        let mut checksums = std::collections::BTreeMap::new();

        zip.start_file("dump.sql", options).map_err(zip_err)?;
        let mut hashing = HashingWriter { inner: &mut zip, hasher: blake3::Hasher::new() };
        dump(&conn, &mut hashing)?;
        checksums.insert("dump.sql".to_string(), hashing.hasher.finalize().to_hex().to_string());

        let files = dir.join("files");
        if let Ok(rd) = std::fs::read_dir(&files) {
            for entry in rd.filter_map(Result::ok) {
                let p = entry.path();
                if !p.is_file() {
                    continue;
                }
                let rel = format!("files/{}", entry.file_name().to_string_lossy());
                zip.start_file(&rel, options).map_err(zip_err)?;
                let mut hashing = HashingWriter { inner: &mut zip, hasher: blake3::Hasher::new() };
                std::io::copy(&mut File::open(&p)?, &mut hashing)?;
                checksums.insert(rel, hashing.hasher.finalize().to_hex().to_string());
            }
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
        zip.write_all(&serde_json::to_vec_pretty(&manifest).map_err(|e| TenantError::Internal(e.to_string()))?)?;
        zip.finish().map_err(zip_err)?;
        Ok(out_path)
    }

    /// Creates database `id` in `region` from an untrusted export archive:
    /// size limits, no path escapes, checksums verified, SQL run under an
    /// authorizer that allows only tables, indexes and inserts.
    pub fn import(&self, region: &str, id: &str, archive: &Path) -> Result<Manifest, TenantError> {
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
        let dir = self.dir(region, id)?;
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
                    dir.join("files").join(file)
                } else {
                    return Err(bad(&format!("Unexpected entry `{name}`.")));
                };
                let mut out = File::create(&target)?;
                let mut hashing = HashingWriter { inner: &mut out, hasher: blake3::Hasher::new() };
                // Bounded copy: a zip bomb stops at the limit.
                let copied = std::io::copy(&mut entry.by_ref().take(MAX_IMPORT_BYTES - total + 1), &mut hashing)?;
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
            let sql = std::fs::read_to_string(&dump_path).map_err(|_| bad("dump.sql is not text."))?;
            let _ = std::fs::remove_file(&dump_path);
            let conn = Connection::open(dir.join("db.sqlite"))?;
            configure(&conn)?;
            crate::sandbox::restrict_to_load(&conn)?;
            conn.execute_batch(&sql).map_err(|e| bad(&format!("dump.sql could not be loaded: {e}")))?;
            conn.authorizer(None::<fn(rusqlite::hooks::AuthContext<'_>) -> rusqlite::hooks::Authorization>)?;
            let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if check != "ok" {
                return Err(bad("The imported database fails its integrity check."));
            }
            let version: Option<String> =
                conn.query_row("SELECT value FROM seldesk_meta WHERE key = 'schema_version'", [], |r| r.get(0)).ok();
            if version.as_deref() != Some(&manifest.schema_version.to_string()) {
                return Err(bad("dump.sql does not hold a Seldesk database of the manifest's schema version."));
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Nothing half-imported stays behind.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(manifest)
    }
}

fn zip_err(e: zip::result::ZipError) -> TenantError {
    TenantError::Internal(format!("archive error: {e}"))
}

/// Per-connection settings: real deletes, foreign keys, a busy wait.
fn configure(conn: &Connection) -> Result<(), TenantError> {
    conn.execute_batch(
        // WAL with synchronous=NORMAL: a crash of the process loses nothing;
        // only a power loss can drop the last commits, never corrupt the file.
        "PRAGMA secure_delete = ON; PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA trusted_schema = OFF;",
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
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
fn dump(conn: &Connection, out: &mut impl Write) -> Result<(), TenantError> {
    writeln!(out, "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;")?;
    let mut stmt = conn.prepare("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, rowid")?;
    let objects: Vec<(String, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    for (kind, name, sql) in &objects {
        writeln!(out, "{sql};")?;
        if kind != "table" {
            continue;
        }
        let mut rows = conn.prepare(&format!("SELECT * FROM {}", quote_ident(name)))?;
        let n = rows.column_count();
        let mut q = rows.query([])?;
        while let Some(row) = q.next()? {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => "NULL".to_string(),
                    ValueRef::Integer(v) => v.to_string(),
                    ValueRef::Real(v) => format!("{v:?}"),
                    ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t).replace('\'', "''")),
                    ValueRef::Blob(b) => format!("X'{}'", b.iter().map(|x| format!("{x:02X}")).collect::<String>()),
                });
            }
            writeln!(out, "INSERT INTO {} VALUES({});", quote_ident(name), values.join(","))?;
        }
    }
    writeln!(out, "COMMIT;")?;
    Ok(())
}

/// BLAKE3 of a database's logical content (its dump).
fn content_hash(conn: &Connection) -> Result<String, TenantError> {
    struct Sink(blake3::Hasher);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sink = Sink(blake3::Hasher::new());
    dump(conn, &mut sink)?;
    Ok(sink.0.finalize().to_hex().to_string())
}
