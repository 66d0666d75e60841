//! Open customer databases: the hot path of hosting them.
//!
//! Each open database has one writer, a thread that owns its only write
//! connection. Write requests queue to it; it commits everything queued
//! while its previous commit ran in one transaction, each request in a
//! savepoint of its own, so one request's failure rolls back that request
//! only (group commit). A request hears its result only once the group's
//! commit is done. Reads run on a bounded pool of read-only connections
//! whose prepared statements stay cached. Open databases are kept in a
//! cache bounded in number and closed after an idle time, so an idle
//! database costs nothing but its files.
//!
//! The writer records the WAL's committed pages in the change log and
//! checkpoints after it has answered, not on a request's path: when the WAL
//! passes a size, when no write came for a moment, when a request asked for
//! it (a delete, so erased rows leave the WAL soon), and before it closes.
//! Commits are durable against a crash of the process as soon as they are
//! answered (WAL, written before the answer); `synchronous = NORMAL` syncs
//! the WAL at checkpoints, so a power loss can take the writes of the last
//! moment (docs/customer-databases.md). A move or a removal pauses a
//! database: its writer finishes what is queued, checkpoints and closes,
//! and nothing opens it again until it is resumed.

use seldesk_domain::Fault;
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::{TenantError, TenantFiles};

/// How open databases are kept (`[databases]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct OpenSettings {
    /// Most databases open at once; the least recently used closes first.
    pub max_open: usize,
    /// A database not used for this long is closed.
    pub idle: Duration,
    /// Read connections per open database.
    pub readers: usize,
    /// A WAL this large is checkpointed after the next commit.
    pub checkpoint_bytes: u64,
    /// A WAL is checkpointed once no write came for this long.
    pub checkpoint_after: Duration,
    /// Most requests in one group commit.
    pub max_group: usize,
}

impl Default for OpenSettings {
    fn default() -> Self {
        Self {
            // 1,000 busy databases stay open (about 0.4 MB each with the
            // search index, written at random, docs/benchmarks.md); idle ones close.
            max_open: 1024,
            idle: Duration::from_secs(60),
            readers: 4,
            checkpoint_bytes: 4 << 20,
            checkpoint_after: Duration::from_secs(1),
            max_group: 256,
        }
    }
}

/// How a write runs on the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// In a group commit, in a savepoint of its own.
    Grouped,
    /// On its own, outside any transaction: work that touches files beside
    /// the database (attachments) or runs its own transactions (the SQL
    /// console, a schema upgrade), where each statement must be committed
    /// before the next step.
    Alone,
}

/// One write request for a database.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub mode: WriteMode,
    /// The database's size limit in bytes.
    pub quota: u64,
    /// Checkpoint right after this request's commit (a delete: the erased
    /// rows' old pages leave the WAL at once, not at the next checkpoint).
    pub checkpoint: bool,
}

type Key = (String, String);
/// Answers a request once its group's commit is known (None: committed).
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;

/// A request waiting for the writer, whatever its result type.
trait Request: Send {
    /// Runs it: whether it succeeded, and how to answer it after the commit.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Finish);
    /// Answers it with an error without running it.
    fn refuse(self: Box<Self>, e: TenantError);
}

struct Req<T, F> {
    f: F,
    tx: tokio::sync::oneshot::Sender<Result<T, TenantError>>,
}

impl<T, F> Request for Req<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, TenantError> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Finish) {
        let Req { f, tx } = *self;
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| f(conn))) {
            Ok(r) => r,
            Err(_) => Err(TenantError::Internal(Fault::msg("the request failed unexpectedly"))),
        };
        let ok = result.is_ok();
        let finish: Finish = Box::new(move |failed: Option<&str>| {
            let answer = match failed {
                None => result,
                Some(why) => Err(TenantError::Internal(Fault::new("the change could not be saved", why))),
            };
            let _ = tx.send(answer);
        });
        (ok, finish)
    }

    fn refuse(self: Box<Self>, e: TenantError) {
        let _ = self.tx.send(Err(e));
    }
}

struct Job {
    req: Box<dyn Request>,
    opts: WriteOptions,
}

/// The open customer databases of this process.
#[derive(Clone)]
pub struct OpenDatabases {
    shared: Arc<Shared>,
}

struct Shared {
    files: TenantFiles,
    settings: OpenSettings,
    started: Instant,
    state: Mutex<State>,
    /// Transactions the writers committed, and the requests in them.
    commits: AtomicU64,
    committed: AtomicU64,
    /// Where every commit is streamed (continuous protection), if anywhere.
    stream: std::sync::OnceLock<Arc<dyn crate::stream::CommitSink>>,
}

/// What the writers did since start: how well writes are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub commits: u64,
    pub requests: u64,
}

#[derive(Default)]
struct State {
    open: HashMap<Key, Arc<OpenDb>>,
    paused: HashSet<Key>,
}

struct OpenDb {
    path: PathBuf,
    /// The writer's queue; None once the writer stops taking requests.
    queue: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Readers>,
    reader_free: Condvar,
    /// Milliseconds since [`Shared::started`] of the last use.
    last_used: AtomicU64,
}

#[derive(Default)]
struct Readers {
    idle: Vec<Connection>,
    out: usize,
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OpenDatabases {
    pub fn new(files: TenantFiles, settings: OpenSettings) -> Self {
        let settings = OpenSettings {
            max_open: settings.max_open.max(1),
            readers: settings.readers.max(1),
            max_group: settings.max_group.max(1),
            ..settings
        };
        Self {
            shared: Arc::new(Shared {
                files,
                settings,
                started: Instant::now(),
                state: Mutex::new(State::default()),
                commits: AtomicU64::new(0),
                committed: AtomicU64::new(0),
                stream: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn settings(&self) -> OpenSettings {
        self.shared.settings
    }

    /// Streams every commit of every database opened from now on to
    /// `sink` (stream.rs); set once, at start-up.
    pub fn stream_to(&self, sink: Arc<dyn crate::stream::CommitSink>) {
        let _ = self.shared.stream.set(sink);
    }

    /// Group commits and the requests they held, since start.
    pub fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            requests: self.shared.committed.load(Ordering::Relaxed),
        }
    }

    /// How many databases are open now.
    pub fn open_count(&self) -> usize {
        lock(&self.shared.state).open.len()
    }

    /// Runs `f` on the database's writer (module docs) and returns its
    /// result once it is committed.
    pub async fn write<T: Send + 'static>(
        &self,
        region: &str,
        id: &str,
        opts: WriteOptions,
        f: impl FnOnce(&Connection) -> Result<T, TenantError> + Send + 'static,
    ) -> Result<T, TenantError> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, TenantError>>();
        let mut job = Job { req: Box::new(Req { f, tx }), opts };
        // A writer may stop (idle, evicted) between the lookup and the send:
        // then the next lookup opens the database again.
        for _ in 0..3 {
            let db = self.get(region, id).await?;
            match db.send(job) {
                Ok(()) => {
                    return rx.await.map_err(|_| TenantError::Internal(Fault::msg("the database's writer stopped")))?;
                }
                Err(back) => job = back,
            }
        }
        Err(TenantError::Conflict("The database is busy closing; try again in a moment.".into()))
    }

    /// Runs `f` on one of the database's read connections (read-only).
    pub async fn read<T: Send + 'static>(
        &self,
        region: &str,
        id: &str,
        f: impl FnOnce(&Connection) -> Result<T, TenantError> + Send + 'static,
    ) -> Result<T, TenantError> {
        let db = self.get(region, id).await?;
        let max = self.shared.settings.readers;
        crate::blocking(move || {
            let conn = db.take_reader(max)?;
            let result = f(&conn);
            db.give_back(conn);
            result
        })
        .await
    }

    /// Closes the database (its writer finishes what is queued, records and
    /// checkpoints the WAL, and stops) and keeps it closed until
    /// [`Self::resume`]: a move or a removal has the files to itself.
    pub async fn pause(&self, region: &str, id: &str) -> Result<(), TenantError> {
        let key = (region.to_string(), id.to_string());
        let db = {
            let mut state = lock(&self.shared.state);
            state.paused.insert(key.clone());
            state.open.remove(&key)
        };
        if let Some(db) = db {
            crate::blocking(move || {
                db.close();
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Lets a paused database open again.
    pub fn resume(&self, region: &str, id: &str) {
        lock(&self.shared.state).paused.remove(&(region.to_string(), id.to_string()));
    }

    /// Closes every open database (at shutdown): each writer drains its
    /// queue and leaves the WAL checkpointed.
    pub fn close_all(&self) {
        let all: Vec<Arc<OpenDb>> = lock(&self.shared.state).open.drain().map(|(_, db)| db).collect();
        for db in all {
            db.close();
        }
    }

    async fn get(&self, region: &str, id: &str) -> Result<Arc<OpenDb>, TenantError> {
        let key = (region.to_string(), id.to_string());
        if let Some(db) = self.shared.lookup(&key)? {
            return Ok(db);
        }
        let shared = self.shared.clone();
        crate::blocking(move || shared.open(key)).await
    }
}

/// What a request for a paused database hears.
fn paused() -> TenantError {
    TenantError::Busy("This database is held for a moment while it moves; please try again in a second.".into())
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn lookup(&self, key: &Key) -> Result<Option<Arc<OpenDb>>, TenantError> {
        let state = lock(&self.state);
        if state.paused.contains(key) {
            return Err(paused());
        }
        Ok(state.open.get(key).map(|db| {
            db.last_used.store(self.now_ms(), Ordering::Relaxed);
            db.clone()
        }))
    }

    /// Opens the database and starts its writer (blocking).
    fn open(self: Arc<Self>, key: Key) -> Result<Arc<OpenDb>, TenantError> {
        let path = self.files.db_path(&key.0, &key.1)?;
        // Opened outside the lock: one slow disk does not hold up the others.
        let conn = crate::files::open_configured(&path)?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let db = Arc::new(OpenDb {
            path,
            queue: Mutex::new(Some(tx)),
            thread: Mutex::new(None),
            readers: Mutex::new(Readers::default()),
            reader_free: Condvar::new(),
            last_used: AtomicU64::new(self.now_ms()),
        });
        let evicted = {
            let mut state = lock(&self.state);
            if state.paused.contains(&key) {
                return Err(paused());
            }
            if let Some(other) = state.open.get(&key) {
                // Another request opened it meanwhile: use theirs.
                return Ok(other.clone());
            }
            let evicted = if state.open.len() >= self.settings.max_open {
                let oldest =
                    state.open.iter().min_by_key(|(_, d)| d.last_used.load(Ordering::Relaxed)).map(|(k, _)| k.clone());
                oldest.and_then(|k| state.open.remove(&k))
            } else {
                None
            };
            let writer = Writer {
                conn,
                path: db.path.clone(),
                key: key.clone(),
                db: Arc::downgrade(&db),
                shared: Arc::downgrade(&self),
                settings: self.settings,
                pending: None,
                dirty: false,
                last_settle: Instant::now(),
            };
            let handle = std::thread::Builder::new()
                .name("db-writer".into())
                .spawn(move || writer.run(rx))
                .map_err(|e| TenantError::Internal(Fault::new("no writer thread", e)))?;
            *lock(&db.thread) = Some(handle);
            state.open.insert(key, db.clone());
            evicted
        };
        if let Some(old) = evicted {
            old.stop_taking();
        }
        Ok(db)
    }
}

impl OpenDb {
    fn send(&self, job: Job) -> Result<(), Job> {
        match lock(&self.queue).as_ref() {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Takes no more requests; the writer finishes the queued ones and stops on its own.
    fn stop_taking(&self) {
        lock(&self.queue).take();
        let mut readers = lock(&self.readers);
        readers.closed = true;
        readers.idle.clear();
    }

    /// Stops taking requests and waits for the writer to finish.
    fn close(&self) {
        self.stop_taking();
        if let Some(handle) = lock(&self.thread).take() {
            let _ = handle.join();
        }
    }

    fn take_reader(&self, max: usize) -> Result<Connection, TenantError> {
        let mut readers = lock(&self.readers);
        loop {
            if let Some(conn) = readers.idle.pop() {
                readers.out += 1;
                return Ok(conn);
            }
            if readers.out < max || readers.closed {
                readers.out += 1;
                drop(readers);
                let opened = open_reader(&self.path);
                if opened.is_err() {
                    lock(&self.readers).out -= 1;
                    self.reader_free.notify_one();
                }
                return opened;
            }
            readers = self.reader_free.wait(readers).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut readers = lock(&self.readers);
        readers.out -= 1;
        if !readers.closed && conn.is_autocommit() {
            readers.idle.push(conn);
        }
        drop(readers);
        self.reader_free.notify_one();
    }
}

fn open_reader(path: &Path) -> Result<Connection, TenantError> {
    let conn = crate::files::open_configured(path)?;
    // Nothing written through a reader, whatever the code that runs on it.
    conn.execute_batch("PRAGMA query_only = ON")?;
    Ok(conn)
}

/// The writer thread of one open database.
struct Writer {
    conn: Connection,
    path: PathBuf,
    key: Key,
    db: Weak<OpenDb>,
    shared: Weak<Shared>,
    settings: OpenSettings,
    /// A request taken from the queue that runs after the current group.
    pending: Option<Job>,
    /// Commits since the last checkpoint.
    dirty: bool,
    last_settle: Instant,
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        if let Some(sink) = self.shared.upgrade().and_then(|s| s.stream.get().cloned()) {
            crate::stream::begin(&self.path, &self.key.0, &self.key.1, sink);
        }
        // A database made before the search index, or imported, gets it
        // here, once, as a commit like any other (streamed and logged).
        match crate::search::ensure_index(&self.conn) {
            Ok(made) => self.dirty |= made,
            Err(e) => tracing::warn!("search index of {}: {e}; its searches scan", self.path.display()),
        }
        self.serve(rx);
        crate::stream::end(&self.path);
    }

    fn serve(&mut self, rx: Receiver<Job>) {
        loop {
            let job = match self.pending.take() {
                Some(job) => job,
                None => {
                    let wait = match self.dirty {
                        true => self.settings.checkpoint_after,
                        false => self.settings.idle.min(Duration::from_secs(5)),
                    };
                    match rx.recv_timeout(wait) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => {
                            if self.dirty {
                                self.settle();
                            } else {
                                self.retire_if_idle();
                            }
                            continue;
                        }
                        // Closed, and everything sent before is done.
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let checkpoint = self.run_group(job, &rx);
            self.dirty = true;
            let wal = std::fs::metadata(wal_path(&self.path)).map(|m| m.len()).unwrap_or(0);
            if checkpoint
                || wal >= self.settings.checkpoint_bytes
                || self.last_settle.elapsed() >= self.settings.checkpoint_after * 10
            {
                self.settle();
            }
        }
        if self.dirty {
            self.settle();
        }
    }

    /// Leaves the cache once unused for the idle time; the requests already
    /// queued still run (the queue disconnects after them).
    fn retire_if_idle(&self) {
        let (Some(shared), Some(db)) = (self.shared.upgrade(), self.db.upgrade()) else { return };
        let idle = shared.settings.idle.as_millis() as u64;
        let mut state = lock(&shared.state);
        if shared.now_ms().saturating_sub(db.last_used.load(Ordering::Relaxed)) < idle {
            return;
        }
        if state.open.get(&self.key).is_some_and(|d| Arc::ptr_eq(d, &db)) {
            state.open.remove(&self.key);
        }
        drop(state);
        db.stop_taking();
    }

    /// Records the WAL in the change log and checkpoints it (off every
    /// request's path: the requests were answered).
    fn settle(&mut self) {
        if let Err(e) = crate::changes::settle_writes(&self.path, &self.conn) {
            // The WAL keeps the commits; the next settle records them.
            tracing::warn!("checkpoint of {}: {e}", self.path.display());
        }
        self.dirty = false;
        self.last_settle = Instant::now();
    }

    /// Runs `first` and, unless it runs alone, every grouped request queued
    /// behind it, in one transaction. Returns whether a checkpoint is due.
    fn run_group(&mut self, first: Job, rx: &Receiver<Job>) -> bool {
        if first.opts.mode == WriteMode::Alone {
            if let Err(e) = set_quota(&self.conn, first.opts.quota) {
                first.req.refuse(e);
                return false;
            }
            let (ok, finish) = first.req.run(&self.conn);
            if !self.conn.is_autocommit() {
                // A transaction the request began (a console `BEGIN`) ends
                // with it, as it did when each request had its connection.
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            if !ok || first.opts.checkpoint {
                // Work that runs alone is not the hot path: its checkpoint
                // comes before its answer, so when the console or an
                // attachment's removal answers, the change is in the change
                // log and the file, and deleted rows are out of the WAL. A
                // refused statement (past the size limit, say) may have
                // spilled pages into the WAL: the space is given back too.
                self.settle();
            }
            finish(None);
            return false;
        }
        let mut jobs = vec![first];
        while jobs.len() < self.settings.max_group {
            match rx.try_recv() {
                Ok(job) if job.opts.mode == WriteMode::Grouped => jobs.push(job),
                Ok(job) => {
                    self.pending = Some(job);
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let mut checkpoint = false;
        let mut done: Vec<Finish> = Vec::with_capacity(jobs.len());
        let mut quota = None;
        let mut succeeded = 0u64;
        for job in jobs {
            checkpoint |= job.opts.checkpoint;
            if self.conn.is_autocommit()
                && let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE")
            {
                job.req.refuse(e.into());
                continue;
            }
            if quota != Some(job.opts.quota) {
                if let Err(e) = set_quota(&self.conn, job.opts.quota) {
                    job.req.refuse(e);
                    continue;
                }
                quota = Some(job.opts.quota);
            }
            if let Err(e) = self.conn.execute_batch("SAVEPOINT request") {
                job.req.refuse(e.into());
                continue;
            }
            let (ok, finish) = job.req.run(&self.conn);
            if self.conn.is_autocommit() {
                // The error rolled back the whole transaction (SQLite may on
                // a full disk): the requests before it in the group are lost
                // and say so; the rest start a new transaction.
                checkpoint = true;
                for earlier in done.drain(..) {
                    earlier(Some("another change at the same moment failed; please try again"));
                }
                succeeded = 0;
                finish(None);
                continue;
            }
            let closed = match ok {
                true => self.conn.execute_batch("RELEASE request"),
                false => {
                    checkpoint = true;
                    self.conn.execute_batch("ROLLBACK TO request; RELEASE request")
                }
            };
            match closed {
                Ok(()) => {
                    succeeded += u64::from(ok);
                    done.push(finish);
                }
                Err(e) => {
                    let why = e.to_string();
                    let _ = self.conn.execute_batch("ROLLBACK");
                    for earlier in done.drain(..) {
                        earlier(Some(&why));
                    }
                    succeeded = 0;
                    finish(Some(&why));
                }
            }
        }
        if self.conn.is_autocommit() {
            // Nothing left to commit (every request failed or was answered).
            for finish in done {
                finish(Some("the transaction was lost"));
            }
            return true;
        }
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                if let Some(shared) = self.shared.upgrade() {
                    shared.commits.fetch_add(1, Ordering::Relaxed);
                    shared.committed.fetch_add(succeeded, Ordering::Relaxed);
                }
                for finish in done {
                    finish(None);
                }
            }
            Err(e) => {
                let why = e.to_string();
                let _ = self.conn.execute_batch("ROLLBACK");
                for finish in done {
                    finish(Some(&why));
                }
                checkpoint = true;
            }
        }
        checkpoint
    }
}

/// Caps how far the database may grow, in pages (SQLITE_FULL past it).
pub(crate) fn set_quota(conn: &Connection, quota: u64) -> Result<i64, TenantError> {
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages = i64::try_from(quota).unwrap_or(i64::MAX) / page.max(512);
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    Ok(pages)
}

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::Consistent;

    fn settings() -> OpenSettings {
        OpenSettings {
            idle: Duration::from_millis(300),
            checkpoint_after: Duration::from_millis(50),
            ..Default::default()
        }
    }

    fn setup(settings: OpenSettings) -> (tempfile::TempDir, TenantFiles, OpenDatabases) {
        let dir = tempfile::tempdir().expect("dir");
        let files = TenantFiles::new(dir.path());
        let open = OpenDatabases::new(files.clone(), settings);
        (dir, files, open)
    }

    const GROUPED: WriteOptions = WriteOptions { mode: WriteMode::Grouped, quota: 1 << 30, checkpoint: false };

    fn insert(name: &'static str) -> impl FnOnce(&Connection) -> Result<i64, TenantError> + Send + 'static {
        move |conn| {
            // An empty name breaks the NOT NULL rule through the app's own check.
            let input = crate::ContactInput { name: Some(name.to_string()), ..Default::default() };
            crate::app::create(conn, &input, "2026-12-07T00:00:00Z").map(|c| c.id)
        }
    }

    fn count(files: &TenantFiles, id: &str) -> i64 {
        let conn = Connection::open(files.db_path("uk", id).expect("path")).expect("open");
        conn.query_row("SELECT count(*) FROM contacts", [], |r| r.get(0)).expect("count")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_commit_keeps_each_requests_outcome_its_own() {
        let (_dir, files, open) = setup(settings());
        files.create("uk", "a").expect("create");
        // The first request holds the writer until the others are queued.
        let (gate, wait) = std::sync::mpsc::channel::<()>();
        let first = {
            let open = open.clone();
            tokio::spawn(async move {
                open.write("uk", "a", GROUPED, move |c| {
                    let _ = wait.recv();
                    insert("First")(c)
                })
                .await
            })
        };
        while open.open_count() == 0 {
            tokio::task::yield_now().await;
        }
        let mut tasks = Vec::new();
        for i in 0..200 {
            let open = open.clone();
            tasks.push(tokio::spawn(async move {
                // Every tenth request fails (no name): only it is rolled back.
                let name = if i % 10 == 0 { "" } else { "Ada Lovelace" };
                open.write("uk", "a", GROUPED, insert(name)).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        gate.send(()).expect("release");
        first.await.expect("task").expect("first");
        let mut ok = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => ok += 1,
                Err(TenantError::Invalid { field, .. }) => assert_eq!(field, "name"),
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        assert_eq!(ok, 180);
        let stats = open.stats();
        assert_eq!(stats.requests, 181);
        assert!(stats.commits <= 3, "queued requests share commits: {stats:?}");
        open.close_all();
        assert_eq!(count(&files, "a"), 181, "every answered write is committed, no failed one");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_cannot_write_and_see_committed_writes() {
        let (_dir, files, open) = setup(settings());
        files.create("uk", "a").expect("create");
        let id = open.write("uk", "a", GROUPED, insert("Grace Hopper")).await.expect("write");
        let name = open
            .read("uk", "a", move |c| {
                Ok(c.query_row("SELECT name FROM contacts WHERE id = ?1", [id], |r| r.get::<_, String>(0))?)
            })
            .await
            .expect("read");
        assert_eq!(name, "Grace Hopper");
        let refused = open.read("uk", "a", |c| Ok(c.execute("DELETE FROM contacts", [])?)).await;
        assert!(refused.is_err(), "a reader is read-only");
        open.close_all();
        assert_eq!(count(&files, "a"), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_databases_close_and_leave_the_wal_checkpointed() {
        let (_dir, files, open) = setup(settings());
        files.create("uk", "a").expect("create");
        open.write("uk", "a", GROUPED, insert("Ada")).await.expect("write");
        assert_eq!(open.open_count(), 1);
        let wal = wal_path(&files.db_path("uk", "a").expect("path"));
        for _ in 0..100 {
            if open.open_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(open.open_count(), 0, "closed after the idle time");
        assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0, "the WAL is in the file");
        // And it opens again on the next request.
        open.write("uk", "a", GROUPED, insert("Grace")).await.expect("write again");
        open.close_all();
        assert_eq!(count(&files, "a"), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_cache_keeps_at_most_its_bound_open() {
        let (_dir, files, open) = setup(OpenSettings { max_open: 3, ..settings() });
        for i in 0..10 {
            let id = format!("db{i}");
            files.create("uk", &id).expect("create");
            open.write("uk", &id, GROUPED, insert("Ada")).await.expect("write");
            assert!(open.open_count() <= 3);
        }
        open.close_all();
        for i in 0..10 {
            assert_eq!(count(&files, &format!("db{i}")), 1, "an evicted database kept its write");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paused_database_finishes_its_queue_and_takes_no_more() {
        let (_dir, files, open) = setup(settings());
        files.create("uk", "a").expect("create");
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let open = open.clone();
            tasks.push(tokio::spawn(async move { open.write("uk", "a", GROUPED, insert("Ada")).await }));
        }
        tokio::task::yield_now().await;
        open.pause("uk", "a").await.expect("pause");
        let path = files.db_path("uk", "a").expect("path");
        assert_eq!(
            std::fs::metadata(wal_path(&path)).map(|m| m.len()).unwrap_or(0),
            0,
            "closed with the WAL in the file"
        );
        let held = count(&files, "a");
        let refused = open.write("uk", "a", GROUPED, insert("Late")).await;
        assert!(matches!(refused, Err(TenantError::Busy(_))), "{refused:?}");
        let mut acknowledged = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => acknowledged += 1,
                // Refused by the pause, or met the file locked by the
                // closing writer's checkpoint: either way told to retry.
                Err(e) if seldesk_domain::Failure::kind(&e) == seldesk_domain::ErrorKind::Busy => {}
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        assert_eq!(held, acknowledged, "what was acknowledged is in the file, and nothing after the pause");
        open.resume("uk", "a");
        open.write("uk", "a", GROUPED, insert("Back")).await.expect("resumed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_change_log_lists_what_the_writer_committed() {
        let (_dir, files, open) = setup(settings());
        files.create("uk", "a").expect("create");
        for _ in 0..300 {
            open.write("uk", "a", GROUPED, insert("Ada Lovelace")).await.expect("write");
        }
        open.close_all();
        let take = || match files.consistent("uk", "a").expect("consistent") {
            Consistent::Stable(s) => s,
            Consistent::Busy(_) => panic!("nothing holds the file"),
        };
        take().backed_up("snap1").expect("backed up");
        let before = std::fs::read(files.db_path("uk", "a").expect("path")).expect("file");
        let opts = WriteOptions { checkpoint: true, ..GROUPED };
        open.write("uk", "a", opts, |c| Ok(c.execute("UPDATE contacts SET notes = 'changed' WHERE id = 150", [])?))
            .await
            .expect("update");
        // Checkpointed by the writer (asked to), with the database still open.
        // The writer checkpoints after it answers: a backup's view taken in
        // the same instant would see that checkpoint as another connection's
        // write and start the log afresh (a whole-file backup, not a wrong
        // one), so the test waits for the WAL to be emptied first.
        let wal = wal_path(&files.db_path("uk", "a").expect("path"));
        for _ in 0..500 {
            if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let s = take();
        let changed = s.changed.clone().expect("known");
        assert_eq!(changed.since, "snap1");
        let after = std::fs::read(files.db_path("uk", "a").expect("path")).expect("file");
        let differing: Vec<u32> = before
            .chunks(4096)
            .zip(after.chunks(4096))
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i as u32 + 1)
            .collect();
        assert!(!differing.is_empty());
        for p in &differing {
            assert!(changed.pages.contains(p), "page {p} changed but is not in the log {:?}", changed.pages);
        }
        drop(s);
        open.close_all();
    }
}
