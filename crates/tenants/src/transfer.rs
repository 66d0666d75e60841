//! A database moving between nodes (DB-8; issue 30, item 5) while it keeps
//! taking writes.
//!
//! The node that holds the database (the source) sends it to a node of the
//! destination (or to its own folder of another region) in rounds, each
//! from the file held unchanged by a read transaction ([`crate::changes`]):
//! first the whole file and the attachments, then, round after round, only
//! the pages the change log lists since the previous round's mark, while
//! requests keep writing. Once a round is small, the source pauses the
//! database's writer (it drains and checkpoints), sends the last pages and
//! any attachment that changed, and asks the destination to commit: the
//! destination checks the copy against the source's hashes, puts it in
//! place with a marker, and switches the database's home in the control
//! plane in one conditional update. Only after the switch does the source
//! erase its copy; a copy that never got its switch is removed by the
//! destination (when told, and at its next start for a marked folder whose
//! database lives elsewhere). Writes pause only for the last round.
//!
//! Data crosses as batches of [`Patch`]es: a file name (`db.sqlite` or
//! `files/<name>`), the file's length, an offset and bytes. The destination
//! treats every batch as hostile: names are checked, sizes bounded.

use seldesk_domain::Fault;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::TenantError;
use crate::changes::{Consistent, LogMark};

/// The database file's name in its folder.
pub const DB_FILE: &str = "db.sqlite";

/// Largest batch of patches sent in one request.
pub const MAX_BATCH: usize = 8 << 20;

/// Largest piece of one file in a batch.
const CHUNK: usize = 4 << 20;

/// A round listing at most this many pages is the last before the pause.
const SMALL_ROUND: usize = 512;

/// Rounds before the pause, whatever their size: a database written faster
/// than it can be sent still moves, with a longer pause.
const MAX_ROUNDS: usize = 8;

/// Marks a database folder put in place by a move that has not switched
/// its home yet.
const MOVING_IN: &str = ".moving-in";

/// Which database moves where.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Transfer {
    pub database: String,
    pub from_region: String,
    pub to_region: String,
    /// The node sending, and the node receiving (None: a node without a name).
    pub source: Option<String>,
    pub target: Option<String>,
}

/// A file of the copy, as the source had it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSum {
    pub name: String,
    pub len: u64,
    /// blake3, hex.
    pub hash: String,
}

/// What the finished copy must hold, exactly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub files: Vec<FileSum>,
}

/// What a finished transfer did, for the audit trail and the drill.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sent {
    pub rounds: usize,
    pub bytes: u64,
    /// How long writes were paused, in milliseconds.
    pub paused_ms: u64,
}

/// A boxed future of the transfer's steps.
pub type Step<'a, T> = Pin<Box<dyn Future<Output = Result<T, TenantError>> + Send + 'a>>;

/// The node receiving a database: this one ([`crate::Databases`] itself)
/// or another, reached over the cluster's internal listener.
pub trait Destination: Send + Sync {
    /// Starts an empty copy (an earlier attempt's is dropped).
    fn begin<'a>(&'a self, t: &'a Transfer) -> Step<'a, ()>;
    /// Applies one batch of patches.
    fn send<'a>(&'a self, t: &'a Transfer, batch: Vec<u8>) -> Step<'a, ()>;
    /// Checks the copy, puts it in place and switches the home.
    fn commit<'a>(&'a self, t: &'a Transfer, m: &'a Manifest) -> Step<'a, ()>;
    /// Drops whatever the transfer left (best effort after a failure).
    fn abort<'a>(&'a self, t: &'a Transfer) -> Step<'a, ()>;
}

/// Opens a [`Destination`] on another node of the cluster.
pub trait Transport: Send + Sync {
    fn to(&self, node: &crate::nodes::NodeInfo) -> Arc<dyn Destination>;
}

/// One piece of a file in a batch. `len == u64::MAX`: remove the file.
#[derive(Debug, PartialEq, Eq)]
pub struct Patch<'a> {
    pub name: &'a str,
    pub len: u64,
    pub offset: u64,
    pub data: &'a [u8],
}

/// Appends a patch to a batch.
pub fn encode(batch: &mut Vec<u8>, p: &Patch<'_>) {
    let name = p.name.as_bytes();
    batch.extend_from_slice(&(name.len() as u16).to_le_bytes());
    batch.extend_from_slice(name);
    batch.extend_from_slice(&p.len.to_le_bytes());
    batch.extend_from_slice(&p.offset.to_le_bytes());
    batch.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
    batch.extend_from_slice(p.data);
}

fn bad(why: &str) -> TenantError {
    TenantError::invalid("transfer", format!("refused a transfer batch: {why}"))
}

/// Reads a batch back, refusing anything malformed or out of bounds.
pub fn decode(mut buf: &[u8]) -> Result<Vec<Patch<'_>>, TenantError> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], TenantError> {
        if buf.len() < n {
            return Err(bad("it ends inside a patch"));
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }
    fn num<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], TenantError> {
        take(buf, N)?.try_into().map_err(|_| bad("a short number"))
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let name_len = u16::from_le_bytes(num(&mut buf)?) as usize;
        let name = std::str::from_utf8(take(&mut buf, name_len)?).map_err(|_| bad("a file name is not UTF-8"))?;
        if !valid_name(name) {
            return Err(bad("a file name is not one of a database's"));
        }
        let len = u64::from_le_bytes(num(&mut buf)?);
        let offset = u64::from_le_bytes(num(&mut buf)?);
        let data_len = u32::from_le_bytes(num(&mut buf)?) as usize;
        if data_len > MAX_BATCH {
            return Err(bad("a piece is too large"));
        }
        let data = take(&mut buf, data_len)?;
        let end = offset.checked_add(data_len as u64).ok_or_else(|| bad("an offset overflows"))?;
        if len != u64::MAX && end > len {
            return Err(bad("a piece ends past its file's length"));
        }
        if len != u64::MAX && len > crate::files::MAX_IMPORT_BYTES * 8 {
            return Err(bad("a file is too large"));
        }
        out.push(Patch { name, len, offset, data });
    }
    Ok(out)
}

/// `db.sqlite`, or `files/<name>` with a name as Seldesk stores attachments.
fn valid_name(name: &str) -> bool {
    if name == DB_FILE {
        return true;
    }
    name.strip_prefix("files/").is_some_and(|n| {
        !n.is_empty()
            && n.len() <= 128
            && !n.starts_with('.')
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    })
}

/// The attachments of a database folder: name → (length, modified ns).
fn attachments(dir: &Path) -> Result<HashMap<String, (u64, i128)>, TenantError> {
    let mut out = HashMap::new();
    let rd = match std::fs::read_dir(dir.join("files")) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in rd {
        let e = e?;
        let Ok(name) = e.file_name().into_string() else { continue };
        let name = format!("files/{name}");
        let meta = e.metadata()?;
        if !meta.is_file() || !valid_name(&name) {
            continue;
        }
        let modified = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        out.insert(name, (meta.len(), modified));
    }
    Ok(out)
}

fn hash_file(path: &Path) -> Result<(u64, String), TenantError> {
    let mut hasher = blake3::Hasher::new();
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hasher.finalize().to_hex().to_string()))
}

/// The sending side: what has been sent so far, and where the log stood.
pub(crate) struct Sender {
    dir: PathBuf,
    /// Where the change log stood before the last round's hold.
    mark: Option<LogMark>,
    /// Attachments as last sent.
    sent_files: HashMap<String, (u64, i128)>,
    /// The batch being filled, and where full ones go (the async side
    /// sends them on while the next fills: memory stays at two batches).
    pending: Vec<u8>,
    out: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    pub(crate) rounds: usize,
    pub(crate) bytes: u64,
}

/// A held file: unchanged while this lives.
struct Held {
    _hold: crate::changes::StableFile,
    file: File,
    len: u64,
    page_size: u64,
}

impl Sender {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir, mark: None, sent_files: HashMap::new(), pending: Vec::new(), out: None, rounds: 0, bytes: 0 }
    }

    fn db(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    /// Holds the database file unchanged; retries while readers keep the
    /// WAL from being checkpointed (up to `patience`).
    fn hold(&self, patience: std::time::Duration) -> Result<Held, TenantError> {
        let started = std::time::Instant::now();
        loop {
            let conn = crate::files::open_configured(&self.db())?;
            match crate::changes::consistent(&self.db(), conn)? {
                Consistent::Stable(stable) => {
                    let file = File::open(&stable.path)?;
                    let len = file.metadata()?.len();
                    let mut header = [0u8; 18];
                    file.read_exact_at(&mut header, 0)?;
                    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
                        1 => 65536,
                        n => u64::from(n),
                    };
                    if page_size < 512 {
                        return Err(TenantError::Internal(Fault::msg("the database file has no valid page size")));
                    }
                    return Ok(Held { _hold: stable, file, len, page_size });
                }
                Consistent::Busy(_) if started.elapsed() < patience => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Consistent::Busy(_) => {
                    return Err(TenantError::Unavailable(
                        "the database stayed busy with readers; the move will be tried again".into(),
                    ));
                }
            }
        }
    }

    /// Makes sure the database has a sound change log, then takes its mark.
    fn take_mark(&mut self) -> Result<Option<LogMark>, TenantError> {
        let db = self.db();
        if crate::changes::log_mark(&db)?.is_none() {
            let base = format!("move-{}", uuid::Uuid::now_v7().simple());
            let conn = crate::files::open_configured(&db)?;
            crate::changes::start_log(&db, conn, &base)?;
        }
        crate::changes::log_mark(&db)
    }

    fn push(&mut self, name: &str, len: u64, offset: u64, data: &[u8]) -> Result<(), TenantError> {
        if !self.pending.is_empty() && self.pending.len() + data.len() + name.len() + 32 > MAX_BATCH {
            self.flush()?;
        }
        encode(&mut self.pending, &Patch { name, len, offset, data });
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Hands the batch being filled to the async side.
    fn flush(&mut self) -> Result<(), TenantError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let out =
            self.out.as_ref().ok_or_else(|| TenantError::Internal(Fault::msg("a round ran without a channel")))?;
        out.blocking_send(batch)
            .map_err(|_| TenantError::Internal(Fault::msg("the transfer stopped while a batch was sent")))
    }

    /// Starts a round whose batches go to `out`.
    pub(crate) fn sending_to(&mut self, out: tokio::sync::mpsc::Sender<Vec<u8>>) {
        self.out = Some(out);
    }

    /// Queues the whole held database file.
    fn whole(&mut self, held: &Held) -> Result<(), TenantError> {
        let mut buf = vec![0u8; CHUNK];
        let mut at = 0u64;
        if held.len == 0 {
            self.push(DB_FILE, 0, 0, &[])?;
        }
        while at < held.len {
            let n = usize::try_from((held.len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            held.file.read_exact_at(&mut buf[..n], at)?;
            self.push(DB_FILE, held.len, at, &buf[..n])?;
            at += n as u64;
        }
        Ok(())
    }

    /// Queues `pages` of the held file, runs of neighbours as one piece.
    fn pages(&mut self, held: &Held, pages: &[u32]) -> Result<(), TenantError> {
        let ps = held.page_size;
        let mut buf = Vec::new();
        let mut i = 0;
        // The length travels even when no page changed: the file may have shrunk.
        self.push(DB_FILE, held.len, 0, &[])?;
        while i < pages.len() {
            let mut j = i + 1;
            while j < pages.len() && pages[j] == pages[j - 1] + 1 && ((j - i + 1) as u64) * ps <= CHUNK as u64 {
                j += 1;
            }
            let start = (u64::from(pages[i]).max(1) - 1) * ps;
            let end = (u64::from(pages[j - 1]) * ps).min(held.len);
            if start < end {
                buf.resize(usize::try_from(end - start).unwrap_or(CHUNK), 0);
                held.file.read_exact_at(&mut buf, start)?;
                self.push(DB_FILE, held.len, start, &buf)?;
            }
            i = j;
        }
        Ok(())
    }

    /// Queues every attachment that is new or changed since last sent, and
    /// the removal of those gone.
    fn attachments(&mut self) -> Result<(), TenantError> {
        let now = attachments(&self.dir)?;
        let gone: Vec<String> = self.sent_files.keys().filter(|k| !now.contains_key(*k)).cloned().collect();
        for name in gone {
            self.push(&name, u64::MAX, 0, &[])?;
            self.sent_files.remove(&name);
        }
        let mut buf = vec![0u8; CHUNK];
        for (name, meta) in now {
            if self.sent_files.get(&name) == Some(&meta) {
                continue;
            }
            let f = File::open(self.dir.join(&name))?;
            let len = f.metadata()?.len();
            let mut at = 0u64;
            if len == 0 {
                self.push(&name, 0, 0, &[])?;
            }
            while at < len {
                let n = usize::try_from((len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
                f.read_exact_at(&mut buf[..n], at)?;
                self.push(&name, len, at, &buf[..n])?;
                at += n as u64;
            }
            self.sent_files.insert(name, (len, meta.1));
        }
        Ok(())
    }

    /// First round (blocking): the whole file as held, and the attachments.
    pub(crate) fn first(&mut self) -> Result<(), TenantError> {
        self.mark = self.take_mark()?;
        let held = self.hold(std::time::Duration::from_secs(10))?;
        self.whole(&held)?;
        drop(held);
        self.attachments()?;
        self.end_round()?;
        self.rounds = 1;
        Ok(())
    }

    /// A catch-up round (blocking): the pages changed since the last round.
    /// Returns how many pages it listed (`usize::MAX`: the whole file).
    pub(crate) fn catch_up(&mut self, patience: std::time::Duration) -> Result<usize, TenantError> {
        self.round(patience, false).map(|(n, _)| n)
    }

    /// The last round (blocking; the writer is paused): the last pages, and
    /// what the copy must hold, hashed from the file as held.
    pub(crate) fn last_round(&mut self, patience: std::time::Duration) -> Result<Manifest, TenantError> {
        let (_, m) = self.round(patience, true)?;
        m.ok_or_else(|| TenantError::Internal(Fault::msg("the last round made no manifest")))
    }

    fn round(&mut self, patience: std::time::Duration, last: bool) -> Result<(usize, Option<Manifest>), TenantError> {
        let before = self.mark.take();
        // Taken before the hold (a log broken meanwhile is started again
        // first): whatever reaches the file after the hold is listed after it.
        let next = self.take_mark()?;
        let held = self.hold(patience)?;
        let listed = match &before {
            Some(m) => crate::changes::pages_since(&self.db(), m)?,
            None => None,
        };
        let n = match listed {
            Some(pages) => {
                self.pages(&held, &pages)?;
                pages.len()
            }
            None => {
                self.whole(&held)?;
                usize::MAX
            }
        };
        self.attachments()?;
        let manifest = if last { Some(self.manifest()?) } else { None };
        drop(held);
        self.end_round()?;
        self.mark = next;
        self.rounds += 1;
        Ok((n, manifest))
    }

    /// Whether another round is worth it before the pause.
    pub(crate) fn more_rounds(&self, last: usize) -> bool {
        last > SMALL_ROUND && self.rounds < MAX_ROUNDS
    }

    /// Closes the round's channel (after a failure too, so the sending
    /// side ends).
    pub(crate) fn stop_sending(&mut self) {
        self.out = None;
    }

    /// Sends the last batch of a round and closes its channel.
    fn end_round(&mut self) -> Result<(), TenantError> {
        let flushed = self.flush();
        self.out = None;
        flushed
    }

    /// What the copy must hold.
    fn manifest(&self) -> Result<Manifest, TenantError> {
        let mut files = Vec::new();
        let (len, hash) = hash_file(&self.db())?;
        files.push(FileSum { name: DB_FILE.into(), len, hash });
        let mut names: Vec<String> = self.sent_files.keys().cloned().collect();
        names.sort();
        for name in names {
            let (len, hash) = hash_file(&self.dir.join(&name))?;
            files.push(FileSum { name, len, hash });
        }
        Ok(Manifest { files })
    }
}

/// The receiving side's folders: `<region>/.incoming-<id>` while the copy
/// is put together, then `<region>/<id>` with a marker until the switch.
pub(crate) fn staging(dir: &Path) -> PathBuf {
    let id = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    dir.with_file_name(format!(".incoming-{id}"))
}

/// Starts an empty copy for the database whose folder will be `dir`.
pub(crate) fn begin(dir: &Path) -> Result<(), TenantError> {
    let staging = staging(dir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(staging.join("files"))?;
    Ok(())
}

/// Applies a batch to the copy of the database whose folder will be `dir`.
pub(crate) fn apply(dir: &Path, batch: &[u8]) -> Result<(), TenantError> {
    let staging = staging(dir);
    if !staging.is_dir() {
        return Err(TenantError::Conflict("no transfer of this database is under way here".into()));
    }
    let mut open: HashMap<&str, File> = HashMap::new();
    for p in decode(batch)? {
        let path = staging.join(p.name);
        if p.len == u64::MAX {
            open.remove(p.name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        if !open.contains_key(p.name) {
            let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            open.insert(p.name, f);
        }
        let Some(f) = open.get(p.name) else { continue };
        if f.metadata()?.len() != p.len {
            f.set_len(p.len)?;
        }
        f.write_all_at(p.data, p.offset)?;
    }
    Ok(())
}

/// Checks the copy against `m` (every file, nothing more), syncs it and
/// puts it in place as `dir`, marked as not switched yet.
pub(crate) fn place(dir: &Path, m: &Manifest) -> Result<(), TenantError> {
    let staging = staging(dir);
    let mut expected: HashMap<&str, &FileSum> = m.files.iter().map(|f| (f.name.as_str(), f)).collect();
    if !expected.contains_key(DB_FILE) || m.files.iter().any(|f| !valid_name(&f.name)) {
        return Err(bad("the manifest does not list a database's files"));
    }
    let mut present: Vec<String> = vec![DB_FILE.to_string()];
    present.extend(attachments(&staging)?.into_keys());
    for name in &present {
        let Some(want) = expected.remove(name.as_str()) else {
            return Err(TenantError::Internal(Fault::msg(format!("the copy holds {name}, which the source does not"))));
        };
        let path = staging.join(name);
        let (len, hash) = hash_file(&path)?;
        if len != want.len || hash != want.hash {
            return Err(TenantError::Internal(Fault::msg(format!("the copy of {name} differs from the source's"))));
        }
        File::open(&path)?.sync_all()?;
    }
    if let Some(missing) = expected.keys().next() {
        return Err(TenantError::Internal(Fault::msg(format!("the copy lacks {missing}"))));
    }
    File::create(staging.join(MOVING_IN))?.write_all(b"put in place by a move; the home has not switched yet\n")?;
    File::open(staging.join("files"))?.sync_all()?;
    File::open(&staging)?.sync_all()?;
    // Whatever an earlier, interrupted attempt left under the name was never
    // the database here (the caller checked the control plane).
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::rename(&staging, dir)?;
    if let Some(parent) = dir.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// The switch happened: the folder is the database's now.
pub(crate) fn settled(dir: &Path) -> Result<(), TenantError> {
    match std::fs::remove_file(dir.join(MOVING_IN)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether `dir` was put in place by a move that has not switched yet.
pub(crate) fn unsettled(dir: &Path) -> bool {
    dir.join(MOVING_IN).is_file()
}

/// Drops what a transfer left for `dir`: the staging folder, and the folder
/// itself if it is an unswitched copy.
pub(crate) fn discard(dir: &Path) -> Result<(), TenantError> {
    let staging = staging(dir);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    if unsettled(dir) {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_round_trips_and_hostile_ones_are_refused() {
        let mut b = Vec::new();
        encode(&mut b, &Patch { name: DB_FILE, len: 10, offset: 2, data: b"abc" });
        encode(&mut b, &Patch { name: "files/0a1b", len: u64::MAX, offset: 0, data: b"" });
        let got = decode(&b).expect("decodes");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Patch { name: DB_FILE, len: 10, offset: 2, data: b"abc" });
        assert_eq!(got[1].len, u64::MAX);
        for name in ["../etc/passwd", "files/../x", "files/.hidden", "db.sqlite-wal", "files/", "/abs"] {
            let mut b = Vec::new();
            encode(&mut b, &Patch { name, len: 1, offset: 0, data: b"x" });
            assert!(decode(&b).is_err(), "{name} is refused");
        }
        let mut past = Vec::new();
        encode(&mut past, &Patch { name: DB_FILE, len: 2, offset: 1, data: b"xy" });
        assert!(decode(&past).is_err(), "a piece past the file's length is refused");
        assert!(decode(&b[..b.len() - 1]).is_err(), "a cut batch is refused");
        let mut huge = Vec::new();
        huge.extend_from_slice(&(DB_FILE.len() as u16).to_le_bytes());
        huge.extend_from_slice(DB_FILE.as_bytes());
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err(), "a huge piece is refused before it is read");
    }
}
