//! The stream of committed changes (continuous protection): every
//! transaction a database's writer commits is read back from the WAL as it
//! commits (the pages it wrote, the database's size after it, when) and
//! handed to a [`CommitSink`], which ships it, sealed, to every backup
//! region. A point-in-time restore starts from a snapshot and replays the
//! commits after it up to the instant asked for.
//!
//! Commits form chains: an unbroken sequence numbered from 0, begun when a
//! writer opened a file whose history it could not vouch for. A chain goes
//! on across closes and opens of the database as long as the file is as the
//! last writer (or a Seldesk checkpoint since) left it: its state file,
//! `db.sqlite-stream`, holds the chain, the next sequence number, when the
//! chain began, whether its writer closed cleanly, and the file's state
//! (identity, size, times) after the last Seldesk checkpoint. A crash, a
//! file replaced or copied (a move, an import, a restore), a write by
//! another program, or a sink that could not keep up begins a new chain.

use seldesk_domain::Fault;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::TenantError;
use crate::changes::{WalPos, file_state, scan_frames, wal_path};

/// One committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Its place in its chain, from 0.
    pub seq: u64,
    /// When it committed (milliseconds since the epoch, never earlier than
    /// the chain's previous commit).
    pub at_ms: i64,
    /// The database's size in pages after it.
    pub db_pages: u32,
    /// The pages it wrote (page number from 1, the page's bytes), ascending.
    pub pages: Vec<(u32, Vec<u8>)>,
}

/// Commits of one database, in order, as they are captured.
#[derive(Debug, Clone)]
pub struct Captured {
    pub region: String,
    pub database: String,
    pub chain: String,
    /// When the chain began: the file then held every earlier commit.
    pub chain_started_ms: i64,
    pub page_size: u32,
    pub commits: Vec<Commit>,
}

/// Where captured commits go (the vault's shipper).
pub trait CommitSink: Send + Sync {
    /// Takes captured commits; `false` when it cannot (it is full): the
    /// chain ends there and the next commit begins a new one.
    fn captured(&self, batch: Captured) -> bool;
    /// The time commits are stamped with, in milliseconds since the epoch.
    fn now_ms(&self) -> i64;
}

/// The capture of the database whose writer runs on this thread.
struct Capture {
    sink: Arc<dyn CommitSink>,
    path: PathBuf,
    region: String,
    database: String,
    chain: String,
    started_ms: i64,
    next_seq: u64,
    last_ms: i64,
    pos: Option<WalPos>,
}

thread_local! {
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
    /// Set when a connection on this thread committed with no capture
    /// running (a command-line tool, streaming off): the next checkpoint on
    /// this thread ends the file's chain instead of vouching for it.
    static UNCAPTURED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A database's chain state file (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChainFile {
    chain: String,
    next_seq: u64,
    started_ms: i64,
    closed: bool,
    state: Option<String>,
}

fn chain_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-stream");
    PathBuf::from(p)
}

impl ChainFile {
    fn read(db: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(chain_path(db)).ok()?;
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next()?.split(' ').collect();
        let ["chain", chain, seq, started, open] = head.as_slice() else { return None };
        let state = lines.next().and_then(|l| l.strip_prefix("state ")).map(str::to_string);
        Some(Self {
            chain: (*chain).to_string(),
            next_seq: seq.parse().ok()?,
            started_ms: started.parse().ok()?,
            closed: *open == "closed",
            state,
        })
    }

    fn write(&self, db: &Path) -> Result<(), TenantError> {
        let mut text = format!(
            "chain {} {} {} {}\n",
            self.chain,
            self.next_seq,
            self.started_ms,
            if self.closed { "closed" } else { "open" }
        );
        if let Some(s) = &self.state {
            text.push_str(&format!("state {s}\n"));
        }
        // A name of its own: a writer and a backup's checkpoint may write at once.
        let tmp = chain_path(db).with_extension(format!("stream-{}", uuid::Uuid::now_v7().simple()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, chain_path(db))?;
        Ok(())
    }
}

fn new_chain() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Starts capturing the commits of the database at `path` on this thread
/// (its writer's), going on with its chain if the file is as the chain left it.
pub(crate) fn begin(path: &Path, region: &str, database: &str, sink: Arc<dyn CommitSink>) {
    let now = sink.now_ms();
    let state = file_state(path).ok();
    let (chain, next_seq, started_ms) = match ChainFile::read(path) {
        Some(c) if c.closed && state.is_some() && c.state == state => (c.chain, c.next_seq, c.started_ms),
        _ => (new_chain(), 0, now),
    };
    // Frames already in the WAL were committed before this chain's view
    // began (a crash, another program): they are part of its starting state.
    let pos = match scan_frames(&wal_path(path), None, false) {
        Ok(scan) => scan.map(|s| s.pos),
        Err(e) => {
            tracing::warn!("stream of {}: {e}", path.display());
            None
        }
    };
    let (chain, next_seq, started_ms) = match pos {
        // Commits the chain never saw: it cannot go on.
        Some(p) if p.frames > 0 => (new_chain(), 0, now),
        _ => (chain, next_seq, started_ms),
    };
    let file = ChainFile { chain: chain.clone(), next_seq, started_ms, closed: false, state };
    if let Err(e) = file.write(path) {
        tracing::warn!("stream of {}: cannot write its chain state: {e}", path.display());
    }
    let capture = Capture {
        sink,
        path: path.to_path_buf(),
        region: region.to_string(),
        database: database.to_string(),
        chain,
        started_ms,
        next_seq,
        last_ms: started_ms,
        pos,
    };
    CAPTURE.with(|c| *c.borrow_mut() = Some(capture));
}

/// Called after every commit on this thread (the WAL hook): hands the new
/// commits to the sink.
pub(crate) fn after_commit() {
    let captured = CAPTURE.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => match c.as_mut() {
            Some(capture) => {
                capture.capture();
                true
            }
            None => false,
        },
        Err(_) => false,
    });
    if !captured {
        UNCAPTURED.set(true);
    }
}

impl Capture {
    fn restart(&mut self, why: &str) {
        tracing::warn!("stream of {}: {why}; a new chain begins", self.path.display());
        self.chain = new_chain();
        self.next_seq = 0;
        self.started_ms = self.sink.now_ms();
        self.last_ms = self.started_ms;
        let file = ChainFile {
            chain: self.chain.clone(),
            next_seq: 0,
            started_ms: self.started_ms,
            closed: false,
            state: None,
        };
        let _ = file.write(&self.path);
    }

    fn capture(&mut self) {
        let scan = match scan_frames(&wal_path(&self.path), self.pos, true) {
            Ok(Some(scan)) => scan,
            Ok(None) => return,
            Err(e) => {
                // Commits this capture could not read are not in the chain:
                // a new one begins after them.
                self.pos = scan_frames(&wal_path(&self.path), None, false).ok().flatten().map(|s| s.pos);
                self.restart(&format!("the WAL could not be read ({e})"));
                return;
            }
        };
        self.pos = Some(scan.pos);
        if scan.commits.is_empty() {
            return;
        }
        let now = self.sink.now_ms().max(self.last_ms);
        self.last_ms = now;
        let commits: Vec<Commit> = scan
            .commits
            .into_iter()
            .map(|c| {
                let seq = self.next_seq;
                self.next_seq += 1;
                Commit { seq, at_ms: now, db_pages: c.db_pages, pages: c.pages }
            })
            .collect();
        let batch = Captured {
            region: self.region.clone(),
            database: self.database.clone(),
            chain: self.chain.clone(),
            chain_started_ms: self.started_ms,
            page_size: scan.page_size,
            commits,
        };
        if !self.sink.captured(batch) {
            self.restart("the backup stream is full (the backup regions are not keeping up)");
        }
    }
}

/// Ends the capture on this thread once the writer has checkpointed for
/// the last time: the chain goes on at the next open if the file stays as
/// it is now.
pub(crate) fn end(path: &Path) {
    let Some(capture) = CAPTURE.with(|c| c.borrow_mut().take()) else { return };
    let file = ChainFile {
        chain: capture.chain,
        next_seq: capture.next_seq,
        started_ms: capture.started_ms,
        closed: true,
        state: file_state(path).ok(),
    };
    if let Err(e) = file.write(path) {
        tracing::warn!("stream of {}: cannot write its chain state: {e}", path.display());
    }
}

/// After a Seldesk checkpoint of the file: the file's new state goes on its
/// chain, unless this thread committed without a capture.
pub(crate) fn checkpointed(path: &Path, state: &str) {
    if UNCAPTURED.replace(false) {
        // What this thread committed unseen reaches the file now.
        let _ = std::fs::remove_file(chain_path(path));
        return;
    }
    if let Some(mut file) = ChainFile::read(path) {
        file.state = Some(state.to_string());
        let _ = file.write(path);
    }
}

/// Writes the pages of `commits` into the database file at `path` (a
/// restored snapshot), in order, and gives the file the size the last one
/// left it. A point-in-time restore (one batch: [`Replay`]).
pub fn apply(path: &Path, page_size: u32, commits: &[Commit]) -> Result<(), TenantError> {
    let mut replay = Replay::new(path, page_size)?;
    replay.push(commits.iter().cloned())?;
    replay.finish()
}

/// Replays streamed commits onto a restored snapshot. A page written by
/// many commits is written to the file once, in its last version: pages
/// are gathered (up to [`Replay::HELD`] bytes) and written in page order,
/// and the file is synced once at the end.
pub struct Replay {
    file: std::fs::File,
    page_size: u32,
    held: std::collections::BTreeMap<u32, Vec<u8>>,
    held_bytes: usize,
    db_pages: Option<u32>,
}

impl Replay {
    /// Most page bytes held before they are written out.
    pub const HELD: usize = 64 << 20;

    pub fn new(path: &Path, page_size: u32) -> Result<Self, TenantError> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        Ok(Self { file, page_size, held: Default::default(), held_bytes: 0, db_pages: None })
    }

    /// Takes the next commits, in order.
    pub fn push(&mut self, commits: impl IntoIterator<Item = Commit>) -> Result<(), TenantError> {
        for c in commits {
            for (no, bytes) in c.pages {
                if no == 0 || bytes.len() != self.page_size as usize {
                    return Err(TenantError::Internal(Fault::msg(format!(
                        "a streamed page {no} does not fit the database"
                    ))));
                }
                match self.held.insert(no, bytes) {
                    Some(_) => {}
                    None => self.held_bytes += self.page_size as usize,
                }
            }
            self.db_pages = Some(c.db_pages);
            if self.held_bytes >= Self::HELD {
                self.write_out()?;
            }
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), TenantError> {
        use std::os::unix::fs::FileExt;
        for (no, bytes) in std::mem::take(&mut self.held) {
            self.file.write_all_at(&bytes, u64::from(no - 1) * u64::from(self.page_size))?;
        }
        self.held_bytes = 0;
        Ok(())
    }

    /// Writes what is held, gives the file the size the last commit left
    /// it, and syncs it.
    pub fn finish(mut self) -> Result<(), TenantError> {
        self.write_out()?;
        if let Some(pages) = self.db_pages {
            self.file.set_len(u64::from(pages) * u64::from(self.page_size))?;
        }
        self.file.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect {
        got: Mutex<Vec<Captured>>,
        refuse: std::sync::atomic::AtomicBool,
    }

    impl CommitSink for Collect {
        fn captured(&self, batch: Captured) -> bool {
            if self.refuse.load(std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            self.got.lock().expect("lock").push(batch);
            true
        }
        fn now_ms(&self) -> i64 {
            1_000
        }
    }

    fn open(path: &Path) -> rusqlite::Connection {
        if !path.exists() {
            rusqlite::Connection::open(path).expect("create");
        }
        let conn = crate::files::open_configured(path).expect("open");
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)").expect("table");
        conn
    }

    fn rows(path: &Path) -> Vec<(i64, String)> {
        let conn = rusqlite::Connection::open(path).expect("open");
        let mut stmt = conn.prepare("SELECT id, v FROM t ORDER BY id").expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").collect::<Result<_, _>>().expect("rows")
    }

    #[test]
    fn every_commit_is_captured_and_replayed_over_a_copy_reproduces_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("db.sqlite");
        let conn = open(&path);
        crate::changes::settle_writes(&path, &conn).expect("settle");
        let base = dir.path().join("base.sqlite");
        std::fs::copy(&path, &base).expect("copy");
        let sink = Arc::new(Collect::default());
        begin(&path, "in", "db1", sink.clone());
        for i in 0..50 {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [format!("row {i} {}", "x".repeat(i * 40))]).expect("insert");
        }
        conn.execute("DELETE FROM t WHERE id % 3 = 0", []).expect("delete");
        crate::changes::settle_writes(&path, &conn).expect("settle");
        conn.execute("UPDATE t SET v = 'after the checkpoint' WHERE id = 2", []).expect("update");
        end(&path);
        let got = sink.got.lock().expect("lock").clone();
        let commits: Vec<Commit> = got.iter().flat_map(|b| b.commits.clone()).collect();
        assert_eq!(commits.len(), 52, "each transaction once");
        assert!(commits.iter().enumerate().all(|(i, c)| c.seq == i as u64), "numbered without a gap");
        assert!(got.iter().all(|b| b.chain == got[0].chain));
        apply(&base, got[0].page_size, &commits).expect("apply");
        crate::changes::settle_writes(&path, &conn).expect("settle");
        drop(conn);
        assert_eq!(rows(&base), rows(&path));
        assert_eq!(rows(&base).len(), 34);

        // The chain goes on at the next open of the unchanged file …
        let chain = got[0].chain.clone();
        let again = open(&path);
        begin(&path, "in", "db1", sink.clone());
        again.execute("INSERT INTO t (v) VALUES ('next')", []).expect("insert");
        end(&path);
        let last = sink.got.lock().expect("lock").last().cloned().expect("batch");
        assert_eq!((last.chain.as_str(), last.commits[0].seq), (chain.as_str(), 52));
        // … nor after a commit no capture saw (a command-line tool) …
        drop(again);
        let tool = open(&path);
        tool.execute("INSERT INTO t (v) VALUES ('from a tool')", []).expect("insert");
        crate::changes::settle_writes(&path, &tool).expect("settle");
        drop(tool);
        assert!(!chain_path(&path).exists(), "the chain ended");
        let again = open(&path);
        begin(&path, "in", "db1", sink.clone());
        again.execute("INSERT INTO t (v) VALUES ('next again')", []).expect("insert");
        end(&path);
        let after_tool = sink.got.lock().expect("lock").last().cloned().expect("batch");
        assert_ne!(after_tool.chain, chain);
        let chain = after_tool.chain.clone();
        // … and not once another program wrote to it.
        drop(again);
        let other = rusqlite::Connection::open(&path).expect("open");
        other.execute("INSERT INTO t (v) VALUES ('from outside')", []).expect("insert");
        drop(other);
        let conn = open(&path);
        begin(&path, "in", "db1", sink.clone());
        conn.execute("INSERT INTO t (v) VALUES ('after')", []).expect("insert");
        let last = sink.got.lock().expect("lock").last().cloned().expect("batch");
        assert_ne!(last.chain, chain);
        assert_eq!(last.commits[0].seq, 0);
        // A sink that cannot keep up ends the chain.
        sink.refuse.store(true, std::sync::atomic::Ordering::Relaxed);
        conn.execute("INSERT INTO t (v) VALUES ('lost')", []).expect("insert");
        sink.refuse.store(false, std::sync::atomic::Ordering::Relaxed);
        conn.execute("INSERT INTO t (v) VALUES ('new chain')", []).expect("insert");
        let newest = sink.got.lock().expect("lock").last().cloned().expect("batch");
        assert_ne!(newest.chain, last.chain);
        assert_eq!(newest.commits[0].seq, 0);
        end(&path);
    }
}
