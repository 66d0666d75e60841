//! Which pages of a customer database changed since its last backup, so
//! that the next backup reads those pages instead of the whole file.
//!
//! Every change reaches a customer database through its write-ahead log,
//! page by page, and reaches the file only when the WAL is checkpointed.
//! Seldesk's connections never checkpoint on their own (no automatic
//! checkpoint, none on close): the connection that committed checkpoints
//! when it is dropped ([`TenantConn`]), and first, under the database's
//! write lock, appends the page numbers of the WAL's committed frames to the
//! database's change log (`db.sqlite-changes`) and syncs it; the checkpoint
//! then empties the WAL. So every page written into the file since the
//! log's base snapshot is in the log before it is written. A commit by
//! another connection between the record and the checkpoint shows in
//! `PRAGMA data_version`; a checkpoint that no Seldesk connection made (a
//! tool that opened the file, a file replaced by an import) shows in the
//! file's identity, size and times, recorded after each of ours and
//! compared before the next. Either way the log says "broken" and the next
//! backup reads the whole file, as it does when there is no log, when the
//! log's base is not the snapshot the vault's change map was made from, or
//! when the log grew past [`MAX_LOG`]. A backup, when it is done, starts the
//! log afresh from its own snapshot ([`StableFile::backed_up`]).
//!
//! Log lines: `base <snapshot> <file state>`, `wal <salt-1> <salt-2>
//! <frames> <checksum-1> <checksum-2> <page>…` (the committed frames of one
//! WAL generation read so far, and the pages they hold), `state <file
//! state>` (after a checkpoint), `broken <why>`.

use seldesk_domain::Fault;
use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::TenantError;

/// A log longer than this says "broken" instead: a database changed so much
/// between two backups is read whole anyway.
pub const MAX_LOG: u64 = 32 << 20;

const WAL_MAGIC: u32 = 0x377f_0682;
const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

thread_local! {
    /// Set when a connection on this thread committed to a WAL.
    static COMMITTED: Cell<bool> = const { Cell::new(false) };
}

fn on_commit(_: &rusqlite::hooks::Wal, _: std::ffi::c_int) -> rusqlite::Result<()> {
    COMMITTED.set(true);
    // The writer's thread streams each commit as it happens (stream.rs).
    crate::stream::after_commit();
    Ok(())
}

/// Settings of every connection to a customer database that concern its
/// WAL: SQLite never checkpoints by itself (the hook replaces the automatic
/// checkpoint, and closing does not checkpoint), and the WAL file is cut
/// back to what it holds when it restarts, so no old page versions linger in
/// it (an erased contact's included).
pub(crate) fn configure_wal(conn: &Connection) -> Result<(), TenantError> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.execute_batch("PRAGMA journal_size_limit = 0")?;
    conn.wal_hook(Some(on_commit));
    Ok(())
}

/// A connection to a customer database that, when dropped after a commit,
/// records and checkpoints the WAL (module docs).
pub struct TenantConn {
    conn: Connection,
    path: PathBuf,
}

impl TenantConn {
    pub(crate) fn new(conn: Connection, path: PathBuf) -> Self {
        Self { conn, path }
    }
}

impl std::ops::Deref for TenantConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for TenantConn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for TenantConn {
    fn drop(&mut self) {
        if COMMITTED.replace(false)
            && let Err(e) = settle(&self.path, &self.conn, false)
        {
            // The WAL keeps the commits; the next settle records them.
            tracing::warn!("checkpoint of {}: {e}", self.path.display());
        }
    }
}

/// What a database's writer does after its commits, off the requests'
/// path: records the WAL's committed pages and checkpoints it, as a
/// [`TenantConn`] does when dropped. The connection keeps its busy wait.
pub(crate) fn settle_writes(path: &Path, conn: &Connection) -> Result<(), TenantError> {
    COMMITTED.set(false);
    let settled = settle(path, conn, false);
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    settled.map(|_| ())
}

/// Pages of a database file changed since a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPages {
    /// The snapshot the pages changed since.
    pub since: String,
    /// Page numbers (the first page is 1), ascending, each once.
    pub pages: Vec<u32>,
}

/// A customer database's file held unchanged while a backup reads it: a
/// read transaction that began when the WAL was all in the file, so it
/// reads the file alone, and SQLite writes nothing into the file while it
/// lasts (writers only append to the WAL).
pub struct StableFile {
    reader: Connection,
    /// The database file.
    pub path: PathBuf,
    /// What changed since the log's base snapshot, if known for sure.
    pub changed: Option<ChangedPages>,
    state: String,
    /// How far the WAL's frames are all in the file as held.
    wal: Option<WalPos>,
    log_len: u64,
}

/// How a backup gets a consistent view of a customer database.
pub enum Consistent {
    /// The file itself.
    Stable(StableFile),
    /// A reader held the WAL: take a copy through this connection.
    Busy(Connection),
}

impl StableFile {
    /// Makes `snapshot` (a backup of this file as held) the log's base,
    /// keeping what was logged while the backup ran.
    pub fn backed_up(self, snapshot: &str) -> Result<(), TenantError> {
        let Self { reader, path, state, wal, log_len, .. } = self;
        if snapshot.is_empty() || snapshot.contains(char::is_whitespace) {
            return Err(TenantError::Internal(Fault::msg(format!("not a snapshot id: {snapshot:?}"))));
        }
        reader.execute_batch("COMMIT; BEGIN IMMEDIATE")?;
        let result = (|| {
            let log = log_path(&path);
            let mut tail = Vec::new();
            if let Ok(mut f) = File::open(&log) {
                f.seek(SeekFrom::Start(log_len))?;
                f.read_to_end(&mut tail)?;
            }
            let mut fresh = format!("base {snapshot} {state}\n").into_bytes();
            // Frames already in the file as held are not listed again.
            if let Some(w) = wal {
                fresh.extend_from_slice(w.line(&[]).as_bytes());
            }
            fresh.extend_from_slice(&tail);
            let tmp = path.with_extension("sqlite-changes.tmp");
            // Synced before it replaces the log: its tail may list pages
            // that reach the file once the backup's read ends.
            let mut f = File::create(&tmp)?;
            f.write_all(&fresh)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &log)?;
            Ok(())
        })();
        let _ = reader.execute_batch("ROLLBACK");
        result
    }
}

/// A consistent view of the database at `path` for a backup (`hold`: a
/// connection with the settings of [`configure_wal`], outside a
/// transaction).
pub(crate) fn consistent(path: &Path, hold: Connection) -> Result<Consistent, TenantError> {
    let (true, wal) = settle(path, &hold, true)? else { return Ok(Consistent::Busy(hold)) };
    let reader = hold;
    // Taken again now the file is held: another request's checkpoint may
    // have got in since `settle` took it; the log read here holds its lines.
    let state = file_state(path)?;
    let log = Log::read(&log_path(path))?;
    let changed = match (&log.base, log.broken) {
        (Some(base), false) => {
            let mut pages = log.pages;
            pages.sort_unstable();
            pages.dedup();
            Some(ChangedPages { since: base.clone(), pages })
        }
        _ => None,
    };
    Ok(Consistent::Stable(StableFile { reader, path: path.to_path_buf(), changed, state, wal, log_len: log.len }))
}

/// Where a database's change log stood: every page written into the file
/// after this point is listed after it ([`pages_since`]). A move copies the
/// file held after taking a mark, and catches the copy up with the pages
/// listed since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogMark {
    base: String,
    len: u64,
}

/// The log's mark now; None when the database has no sound log (none yet,
/// or broken): then nothing can be caught up from it.
pub(crate) fn log_mark(db: &Path) -> Result<Option<LogMark>, TenantError> {
    let log = Log::read(&log_path(db))?;
    Ok(match (log.base, log.broken) {
        (Some(base), false) => Some(LogMark { base, len: log.complete }),
        _ => None,
    })
}

/// Every page listed in the log after `mark`, ascending, each once; None
/// when the log no longer continues from it (a backup started it afresh,
/// it broke or grew too long): the caller copies the whole file instead.
pub(crate) fn pages_since(db: &Path, mark: &LogMark) -> Result<Option<Vec<u32>>, TenantError> {
    let bytes = match std::fs::read(log_path(db)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let base_line = String::from_utf8_lossy(first);
    let mut words = base_line.split(' ');
    let at = usize::try_from(mark.len).unwrap_or(usize::MAX);
    if words.next() != Some("base") || words.next() != Some(mark.base.as_str()) || at > bytes.len() {
        return Ok(None);
    }
    let tail = &bytes[at..];
    // A line still being written is left for the next call: its pages
    // reach the file only after it is complete and synced.
    let complete = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut pages = Vec::new();
    for line in String::from_utf8_lossy(&tail[..complete]).lines() {
        let mut words = line.split(' ');
        match words.next() {
            Some("wal") => {
                let nums: Result<Vec<u32>, _> = words.map(str::parse).collect();
                match nums.as_deref() {
                    Ok([_, _, _, _, _, listed @ ..]) => pages.extend_from_slice(listed),
                    _ => return Ok(None),
                }
            }
            Some("state") | Some("") | None => {}
            _ => return Ok(None),
        }
    }
    pages.sort_unstable();
    pages.dedup();
    Ok(Some(pages))
}

/// Starts the log of a database that has no sound one, with `base` as its
/// snapshot (not the vault's: its next backup reads the whole file, as it
/// would have anyway). Returns false when a reader held the WAL.
pub(crate) fn start_log(db: &Path, hold: Connection, base: &str) -> Result<bool, TenantError> {
    match consistent(db, hold)? {
        Consistent::Stable(held) if held.changed.is_none() => held.backed_up(base).map(|()| true),
        Consistent::Stable(_) => Ok(true),
        Consistent::Busy(_) => Ok(false),
    }
}

fn log_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-changes");
    PathBuf::from(p)
}

pub(crate) fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// Gives the file a modification time that no write gives it: the clock's
/// own nanoseconds, where a file system stamps a write with its clock's
/// last tick (every few milliseconds). So a write in the same tick as a
/// checkpoint still changes the file's state.
fn mark(path: &Path) -> Result<(), TenantError> {
    OpenOptions::new().write(true).open(path)?.set_modified(std::time::SystemTime::now())?;
    Ok(())
}

/// The file's identity, size and times: any write changes them.
pub(crate) fn file_state(path: &Path) -> Result<String, TenantError> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(format!("{}:{}:{}.{}:{}.{}", m.ino(), m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

/// Records the WAL's committed pages (when the database has a log) under
/// the write lock, then checkpoints the whole WAL and truncates it. Should
/// another connection commit between the two (its frames would reach the
/// file unrecorded), `PRAGMA data_version` tells, and the log says
/// "broken". The WAL is left empty: a process that opens the database next
/// has nothing to recover, and no old page versions stay in it. With
/// `hold_read`, `hold` is left in a read transaction on the file alone if
/// the WAL is still empty once it began (true). Also returns where the WAL's
/// committed frames ended.
fn settle(path: &Path, hold: &Connection, hold_read: bool) -> Result<(bool, Option<WalPos>), TenantError> {
    let log = log_path(path);
    hold.execute_batch("BEGIN IMMEDIATE")?;
    let recorded = (|| {
        let tracked = log.is_file();
        let wal = match tracked {
            true => record(path, &log)?,
            false => None,
        };
        let version: i64 = hold.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        Ok::<_, TenantError>((tracked, wal, version))
    })();
    let _ = hold.execute_batch("ROLLBACK");
    let (tracked, wal, before) = recorded?;
    // After a request, no waiting for a reader (a backup's, say) to finish:
    // what it keeps from the file is checkpointed by the next settle.
    if !hold_read {
        hold.busy_timeout(std::time::Duration::ZERO)?;
    }
    let (busy, _, _): (i64, i64, i64) =
        hold.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    if tracked || hold_read {
        mark(path)?;
    }
    let state = file_state(path)?;
    crate::stream::checkpointed(path, &state);
    // Read after the state: a commit by another connection since the
    // record shows here, and one after this shows in the file's state once
    // it is checkpointed.
    let after: i64 = hold.query_row("PRAGMA data_version", [], |r| r.get(0))?;
    if tracked {
        let mut text = String::new();
        if after != before {
            text.push_str("broken another connection committed while the WAL was checkpointed\n");
        }
        // Not synced: if lost, the next record finds the file changed since
        // the last state and says "broken".
        text.push_str(&format!("state {state}\n"));
        append(&log, &text, false)?;
    }
    if !hold_read || busy != 0 {
        return Ok((false, wal));
    }
    hold.execute_batch("BEGIN")?;
    hold.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get::<_, i64>(0))?;
    // A read transaction that began with the WAL empty reads the file alone,
    // and no checkpoint writes into the file while it lasts.
    if std::fs::metadata(wal_path(path)).map(|m| m.len()).unwrap_or(0) == 0 {
        return Ok((true, wal));
    }
    hold.execute_batch("ROLLBACK")?;
    Ok((false, wal))
}

/// Appends the pages of the WAL's frames committed since the log last read
/// it; or "broken" if the file changed since the log's last state. Returns
/// where the WAL's committed frames end, if the log is not broken.
fn record(path: &Path, log_file: &Path) -> Result<Option<WalPos>, TenantError> {
    let log = Log::read(log_file)?;
    if log.broken {
        return Ok(None);
    }
    if log.len > MAX_LOG {
        let mut f = File::create(log_file)?;
        f.write_all(b"broken the log grew too long\n")?;
        f.sync_all()?;
        return Ok(None);
    }
    let mut at = None;
    let mut out = String::new();
    if !log.clean_end {
        out.push('\n');
    }
    if log.base.is_none() || log.state.as_deref() != Some(file_state(path)?.as_str()) {
        out.push_str("broken the file changed outside Seldesk\n");
    } else if let Some((pos, pages)) = scan_wal(&wal_path(path), log.wal)? {
        at = Some(pos);
        if Some(pos) != log.wal {
            out.push_str(&pos.line(&pages));
        }
    }
    if !out.trim().is_empty() {
        // Synced before the checkpoint writes those pages into the file.
        append(log_file, &out, true)?;
    }
    Ok(at)
}

fn append(log: &Path, text: &str, sync: bool) -> Result<(), TenantError> {
    let mut f = OpenOptions::new().append(true).open(log)?;
    f.write_all(text.as_bytes())?;
    if sync {
        f.sync_data()?;
    }
    Ok(())
}

/// Where reading a WAL generation got to: its salts, the committed frames
/// read and the running checksum after the last of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalPos {
    salt: (u32, u32),
    pub(crate) frames: u32,
    sum: (u32, u32),
}

impl WalPos {
    /// The log line: this position, and the pages of the frames up to it.
    fn line(&self, pages: &[u32]) -> String {
        use std::fmt::Write as _;
        let mut out = format!("wal {} {} {} {} {}", self.salt.0, self.salt.1, self.frames, self.sum.0, self.sum.1);
        for p in pages {
            let _ = write!(out, " {p}");
        }
        out.push('\n');
        out
    }
}

/// What the change log says.
#[derive(Default)]
struct Log {
    base: Option<String>,
    state: Option<String>,
    wal: Option<WalPos>,
    pages: Vec<u32>,
    broken: bool,
    len: u64,
    /// Up to the end of its last complete line.
    complete: u64,
    clean_end: bool,
}

impl Log {
    fn read(path: &Path) -> Result<Self, TenantError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self { clean_end: true, ..Self::default() });
            }
            Err(e) => return Err(e.into()),
        };
        let mut log = Self {
            len: text.len() as u64,
            complete: text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i as u64 + 1),
            clean_end: text.last().is_none_or(|b| *b == b'\n'),
            ..Self::default()
        };
        let text = String::from_utf8_lossy(&text);
        let mut lines: Vec<&str> = text.split('\n').collect();
        // A line cut short by a crash was never synced, nor was anything
        // checkpointed after it: it is left out.
        lines.pop();
        for line in lines {
            let mut words = line.split(' ');
            match (words.next(), log.base.is_some()) {
                (Some("base"), false) => match (words.next(), words.next()) {
                    (Some(snapshot), Some(state)) => {
                        log.base = Some(snapshot.to_string());
                        log.state = Some(state.to_string());
                    }
                    _ => log.broken = true,
                },
                (Some("state"), true) => log.state = words.next().map(str::to_string),
                (Some("wal"), true) => {
                    let nums: Result<Vec<u32>, _> = words.map(str::parse).collect();
                    match nums.as_deref() {
                        Ok([s1, s2, frames, c1, c2, pages @ ..]) => {
                            log.wal = Some(WalPos { salt: (*s1, *s2), frames: *frames, sum: (*c1, *c2) });
                            log.pages.extend_from_slice(pages);
                        }
                        _ => log.broken = true,
                    }
                }
                (Some(""), _) => {}
                _ => log.broken = true,
            }
        }
        Ok(log)
    }
}

/// SQLite's WAL checksum over `data`, continuing from `sum`.
fn checksum(data: &[u8], sum: (u32, u32), big_endian: bool) -> (u32, u32) {
    let (mut s1, mut s2) = sum;
    for w in data.chunks_exact(8) {
        let word = |b: &[u8]| {
            let b = [b[0], b[1], b[2], b[3]];
            if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
        };
        s1 = s1.wrapping_add(word(&w[..4])).wrapping_add(s2);
        s2 = s2.wrapping_add(word(&w[4..])).wrapping_add(s1);
    }
    (s1, s2)
}

fn be(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads the WAL's committed frames after `from` (from the start if `from`
/// is of another generation): where that ends, and the pages those frames
/// hold. None if there is no WAL or it holds no valid header.
fn scan_wal(wal: &Path, from: Option<WalPos>) -> Result<Option<(WalPos, Vec<u32>)>, TenantError> {
    Ok(scan_frames(wal, from, false)?.map(|scan| (scan.pos, scan.pages)))
}

/// Most WAL bytes one capture of committed frames reads into memory.
const TAIL_KEPT: u64 = 256 << 20;

/// One transaction read back from a WAL: the database's size in pages
/// after it, and each page it wrote (the last version of each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalCommit {
    pub db_pages: u32,
    pub pages: Vec<(u32, Vec<u8>)>,
}

/// What a scan of a WAL found after a position.
pub(crate) struct WalScan {
    pub pos: WalPos,
    pub page_size: u32,
    /// Page numbers of every committed frame read.
    pub pages: Vec<u32>,
    /// The committed transactions with their pages (only when asked for).
    pub commits: Vec<WalCommit>,
}

/// [`scan_wal`], keeping each transaction's pages when `keep` (the stream
/// of committed changes, stream.rs).
pub(crate) fn scan_frames(wal: &Path, from: Option<WalPos>, keep: bool) -> Result<Option<WalScan>, TenantError> {
    let file = match File::open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut header = [0u8; WAL_HEADER];
    {
        use std::os::unix::fs::FileExt;
        if file.read_exact_at(&mut header, 0).is_err() || be(&header, 0) & !1 != WAL_MAGIC {
            return Ok(None);
        }
    }
    let big = be(&header, 0) & 1 == 1;
    let page = be(&header, 8) as usize;
    let salt = (be(&header, 16), be(&header, 20));
    if !(512..=65_536).contains(&page) || checksum(&header[..24], (0, 0), big) != (be(&header, 24), be(&header, 28)) {
        return Ok(None);
    }
    let mut pos = match from {
        Some(p) if p.salt == salt => p,
        _ => WalPos { salt, frames: 0, sum: (be(&header, 24), be(&header, 28)) },
    };
    let start = (WAL_HEADER + pos.frames as usize * (FRAME_HEADER + page)) as u64;
    let mut f: Box<dyn Read> = if keep {
        // After each commit: only that commit's frames are new, read in
        // one call (no large buffer made and dropped per commit). A tail
        // past the stream's whole queue is not kept.
        let tail = file.metadata()?.len().saturating_sub(start);
        if tail > TAIL_KEPT {
            return Err(TenantError::TooLarge(format!("{tail} bytes of WAL frames in one capture")));
        }
        let mut bytes = Vec::with_capacity(tail as usize);
        let mut file = file;
        file.seek(SeekFrom::Start(start))?;
        // No more than was measured, whatever another process appends.
        file.take(tail).read_to_end(&mut bytes)?;
        Box::new(std::io::Cursor::new(bytes))
    } else {
        let mut f = BufReader::with_capacity(1 << 20, file);
        f.seek(SeekFrom::Start(start))?;
        Box::new(f)
    };
    let (mut sum, mut frames) = (pos.sum, pos.frames);
    let (mut pages, mut pending) = (Vec::new(), Vec::new());
    let (mut commits, mut data): (Vec<WalCommit>, Vec<(u32, Vec<u8>)>) = (Vec::new(), Vec::new());
    let mut frame = vec![0u8; FRAME_HEADER + page];
    while f.read_exact(&mut frame).is_ok() {
        if (be(&frame, 8), be(&frame, 12)) != salt {
            break;
        }
        sum = checksum(&frame[FRAME_HEADER..], checksum(&frame[..8], sum, big), big);
        if sum != (be(&frame, 16), be(&frame, 20)) {
            break;
        }
        frames += 1;
        pending.push(be(&frame, 0));
        if keep {
            data.push((be(&frame, 0), frame[FRAME_HEADER..].to_vec()));
        }
        // A frame that ends a transaction gives the database's size in pages.
        if be(&frame, 4) != 0 {
            pages.append(&mut pending);
            pos = WalPos { salt, frames, sum };
            if keep {
                // A page written twice in one transaction: its last version.
                let mut seen = std::collections::HashSet::with_capacity(data.len());
                let mut last: Vec<(u32, Vec<u8>)> = Vec::with_capacity(data.len());
                for (no, bytes) in data.drain(..).rev() {
                    if seen.insert(no) {
                        last.push((no, bytes));
                    }
                }
                last.sort_unstable_by_key(|(no, _)| *no);
                commits.push(WalCommit { db_pages: be(&frame, 4), pages: last });
            }
        }
    }
    Ok(Some(WalScan { pos, page_size: page as u32, pages, commits }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> Connection {
        let conn = Connection::open(path).expect("open");
        conn.execute_batch("PRAGMA journal_mode = WAL").expect("wal");
        configure_wal(&conn).expect("configure");
        conn
    }

    fn start(dir: &Path) -> PathBuf {
        let db = dir.join("db.sqlite");
        let conn = open(&db);
        // Rows of 3000 bytes: one to a page.
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB);").expect("t");
        let mut stmt = conn.prepare("INSERT INTO t (v) VALUES (zeroblob(3000))").expect("stmt");
        for _ in 0..800 {
            stmt.execute([]).expect("row");
        }
        drop(stmt);
        drop(TenantConn::new(conn, db.clone()));
        db
    }

    /// A database of one small row, its WAL not checkpointed.
    fn one_row(dir: &Path) -> (PathBuf, Connection) {
        let db = dir.join("db.sqlite");
        let conn = open(&db);
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); INSERT INTO t (v) VALUES (zeroblob(100));",
        )
        .expect("t");
        (db, conn)
    }

    fn take(db: &Path) -> StableFile {
        match consistent(db, open(db)).expect("consistent") {
            Consistent::Stable(s) => s,
            Consistent::Busy(_) => panic!("no reader was open"),
        }
    }

    #[test]
    fn the_wal_scan_finds_every_committed_frame_and_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().expect("dir");
        let (db, conn) = one_row(dir.path());
        let (first, pages) = scan_wal(&wal_path(&db), None).expect("scan").expect("a wal");
        assert!(pages.contains(&1) && pages.contains(&2), "{pages:?}");
        // Nothing new: nothing more. Then only the new commit's pages.
        assert_eq!(scan_wal(&wal_path(&db), Some(first)).expect("scan"), Some((first, Vec::new())));
        conn.execute("UPDATE t SET v = zeroblob(200) WHERE id = 1", []).expect("update");
        let (next, pages) = scan_wal(&wal_path(&db), Some(first)).expect("scan").expect("a wal");
        assert!(next.frames > first.frames);
        assert_eq!(pages, vec![2]);
        let (_, frames, _): (i64, i64, i64) = open(&db)
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("frames");
        assert_eq!(i64::from(next.frames), frames, "as many frames as SQLite counts");
    }

    #[test]
    fn a_torn_frame_ends_the_scan_at_the_last_commit() {
        let dir = tempfile::tempdir().expect("dir");
        let (db, conn) = one_row(dir.path());
        let (first, _) = scan_wal(&wal_path(&db), None).expect("scan").expect("a wal");
        conn.execute("UPDATE t SET v = zeroblob(300) WHERE id = 1", []).expect("update");
        // Damage one byte of the second transaction's last frame.
        let wal = wal_path(&db);
        let mut bytes = std::fs::read(&wal).expect("wal");
        let last = bytes.len() - 10;
        bytes[last] ^= 0xff;
        std::fs::write(&wal, &bytes).expect("write");
        let (pos, _) = scan_wal(&wal, None).expect("scan").expect("a wal");
        assert_eq!(pos, first, "the damaged transaction does not count");
    }

    #[test]
    fn the_log_lists_the_pages_written_since_the_last_backup_and_starts_afresh_after_it() {
        let dir = tempfile::tempdir().expect("dir");
        let db = start(dir.path());
        // No log yet: nothing is known.
        let s = take(&db);
        assert_eq!(s.changed, None);
        s.backed_up("snap1").expect("backed up");

        let conn = TenantConn::new(open(&db), db.clone());
        conn.execute("UPDATE t SET v = randomblob(3000) WHERE id IN (10, 300)", []).expect("update");
        drop(conn);
        // The drop recorded and checkpointed: the file has the change.
        let s = take(&db);
        let changed = s.changed.clone().expect("known");
        assert_eq!(changed.since, "snap1");
        // The two rows' pages (one row to a page), perhaps their parents; not the rest.
        assert!((2..=6).contains(&changed.pages.len()), "{:?}", changed.pages);
        let pages: i64 = open(&db).query_row("PRAGMA page_count", [], |r| r.get(0)).expect("count");
        assert!(pages > 800);
        s.backed_up("snap2").expect("backed up");
        let s = take(&db);
        assert_eq!(s.changed, Some(ChangedPages { since: "snap2".into(), pages: Vec::new() }));
    }

    #[test]
    fn a_write_that_bypassed_seldesk_makes_the_log_unknown_until_the_next_backup() {
        let dir = tempfile::tempdir().expect("dir");
        let db = start(dir.path());
        take(&db).backed_up("snap1").expect("backed up");
        // A tool that opens the file and checkpoints as it closes.
        let other = Connection::open(&db).expect("open");
        other.execute("UPDATE t SET v = randomblob(3000) WHERE id = 5", []).expect("update");
        drop(other);
        let conn = TenantConn::new(open(&db), db.clone());
        conn.execute("UPDATE t SET v = randomblob(3000) WHERE id = 6", []).expect("update");
        drop(conn);
        let s = take(&db);
        assert_eq!(s.changed, None, "the tool's change is not in the log");
        s.backed_up("snap2").expect("backed up");
        assert!(take(&db).changed.is_some());
    }

    #[test]
    fn a_write_from_outside_right_after_a_checkpoint_is_still_seen() {
        let dir = tempfile::tempdir().expect("dir");
        let db = start(dir.path());
        take(&db).backed_up("snap1").expect("backed up");
        for id in 1..=20 {
            let conn = TenantConn::new(open(&db), db.clone());
            conn.execute("UPDATE t SET v = randomblob(3000) WHERE id = ?1", [id]).expect("update");
            drop(conn);
            // At once, well within a file-system clock tick: a tool's write,
            // checkpointed as it closes, that the log never saw.
            let other = Connection::open(&db).expect("open");
            other.execute("UPDATE t SET v = randomblob(3000) WHERE id = ?1", [id + 400]).expect("update");
            drop(other);
            let s = take(&db);
            assert_eq!(s.changed, None, "round {id}: the tool's write went unseen");
            s.backed_up(&format!("snap{}", id + 1)).expect("backed up");
        }
    }

    #[test]
    fn what_is_written_while_a_backup_reads_stays_in_the_log_for_the_next() {
        let dir = tempfile::tempdir().expect("dir");
        let db = start(dir.path());
        take(&db).backed_up("snap1").expect("backed up");
        let s = take(&db);
        let held: Vec<u8> = std::fs::read(&db).expect("file");
        let conn = TenantConn::new(open(&db), db.clone());
        conn.execute("UPDATE t SET v = randomblob(3000) WHERE id = 700", []).expect("update");
        drop(conn);
        assert_eq!(std::fs::read(&db).expect("file"), held, "nothing reaches the file while it is held");
        s.backed_up("snap2").expect("backed up");
        let s = take(&db);
        let changed = s.changed.clone().expect("known");
        assert_eq!(changed.since, "snap2");
        assert!(!changed.pages.is_empty() && changed.pages.len() <= 3, "{:?}", changed.pages);
        assert_ne!(std::fs::read(&db).expect("file"), held, "checkpointed once the backup ended");
    }

    #[test]
    fn an_unreadable_or_overlong_log_means_unknown() {
        let dir = tempfile::tempdir().expect("dir");
        let db = start(dir.path());
        take(&db).backed_up("snap1").expect("backed up");
        append(&log_path(&db), "wal 1 2 x\n", false).expect("append");
        assert_eq!(take(&db).changed, None);
        take(&db).backed_up("snap2").expect("backed up");
        let f = OpenOptions::new().append(true).open(log_path(&db)).expect("log");
        f.set_len(MAX_LOG + 1).expect("grow");
        let conn = TenantConn::new(open(&db), db.clone());
        conn.execute("UPDATE t SET v = randomblob(3000) WHERE id = 2", []).expect("update");
        drop(conn);
        assert_eq!(take(&db).changed, None);
    }
}
