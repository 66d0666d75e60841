//! Browser data (BRW-2, BRW-5): every page request is recorded — date and
//! time, IP address, browser name and version, platform, referring page,
//! path, language and country — without slowing the request: the request
//! only offers the visit to a bounded queue; a writer task stores batches.
//! When the queue is full the visit is counted as dropped
//! (`seldesk_browser_events_dropped_total`), never waited for.
//!
//! Visits are stored one SQLite file per day (`<data>/visits/YYYY-MM-DD.sqlite`),
//! so expiry at the policy's period drops a whole file. Before a day goes,
//! visits covered by an active legal hold (by IP, `ip:…`, or account,
//! `person:…`) are copied to `held.sqlite`, where they stay until the hold ends.

pub mod aggregate;
mod store;
pub use store::{PgVisits, VisitStore};
pub mod geo;
pub mod security;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use seldesk_domain::Clock;
use seldesk_privacy::{BoxFuture, Candidate, Census, Eraser, PrivacyError};
use seldesk_store::{Db, from_millis, to_millis};
use sqlx::Row;
use time::{Date, OffsetDateTime};
use tokio::sync::{mpsc, oneshot};

/// Errors of the visit store.
#[derive(Debug, thiserror::Error)]
pub enum VisitError {
    #[error("visit store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("visit store: {0}")]
    Io(#[from] std::io::Error),
    #[error("visit store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("visit store: {0}")]
    Store(#[from] seldesk_store::StoreError),
    #[error("visit store task: {0}")]
    Task(String),
}

impl seldesk_domain::Failure for VisitError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        seldesk_domain::ErrorKind::Internal
    }
}

/// One page request.
#[derive(Debug, Clone, PartialEq)]
pub struct Visit {
    pub at: OffsetDateTime,
    pub ip: String,
    pub browser: String,
    pub browser_version: String,
    pub platform: String,
    pub referrer: Option<String>,
    pub path: String,
    pub language: Option<String>,
    pub country: Option<String>,
    /// The signed-in person's opaque reference, when known.
    pub person: Option<String>,
    /// Hash of the session cookie, resolved to `person` by the writer (off
    /// the request path); never stored.
    pub session: Option<String>,
    /// The raw User-Agent, parsed into browser, version and platform by the
    /// writer (off the request path, with a cache); never stored.
    pub user_agent: Option<String>,
    /// Hash of the analytics cookie's random value: set only for visitors
    /// who accepted analytics cookies (CK-2), so that pages can be counted
    /// per visit ("site interaction"). Lives 30 minutes in the browser and
    /// is linked to nothing else.
    pub visit: Option<String>,
}

impl Visit {
    /// Removes card numbers from what a visitor's browser sent (path,
    /// referrer, language, browser version) before it is stored (PAY-2):
    /// headers are recorded, not refused, so they are redacted instead.
    pub fn redact(&mut self) {
        use seldesk_privacy::card::redact_card_numbers;
        let clean = |s: &mut String| {
            if let std::borrow::Cow::Owned(r) = redact_card_numbers(s) {
                *s = r;
            }
        };
        clean(&mut self.path);
        clean(&mut self.browser_version);
        clean(&mut self.browser);
        clean(&mut self.platform);
        if let Some(r) = self.referrer.as_mut() {
            clean(r);
        }
        if self.language.as_deref().is_some_and(seldesk_privacy::card::contains_card_number) {
            self.language = None;
        }
    }
}

/// Browser name, version and platform from a User-Agent header.
pub fn parse_user_agent(ua: &str) -> (String, String, String) {
    match woothee::parser::Parser::new().parse(ua) {
        Some(r) => {
            let version = if r.version == "UNKNOWN" { String::new() } else { r.version.to_string() };
            (r.name.to_string(), version, r.os.to_string())
        }
        None => ("UNKNOWN".into(), String::new(), "UNKNOWN".into()),
    }
}

/// The first language of an Accept-Language header (`fr-CH, fr;q=0.9` → `fr-CH`).
pub fn first_language(header: &str) -> Option<String> {
    let tag = header.split(',').next()?.split(';').next()?.trim();
    let ok = !tag.is_empty() && tag.len() <= 35 && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (ok && tag != "*").then(|| tag.to_string())
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS visits (
    id INTEGER PRIMARY KEY, at INTEGER NOT NULL, ip TEXT NOT NULL, browser TEXT NOT NULL,
    browser_version TEXT NOT NULL, platform TEXT NOT NULL, referrer TEXT, path TEXT NOT NULL,
    language TEXT, country TEXT, person TEXT, hold_id INTEGER, visit TEXT)";

/// Daily partitions in a folder: one SQLite file per day.
#[derive(Debug, Clone)]
pub struct FileVisits {
    root: PathBuf,
}

pub(crate) fn day_name(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

pub(crate) fn parse_day(name: &str) -> Option<Date> {
    let stem = name.strip_suffix(".sqlite")?;
    Date::parse(stem, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

impl FileVisits {
    pub fn new(data: &Path) -> Self {
        Self { root: data.join("visits") }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn open(&self, file: &str) -> Result<Connection, VisitError> {
        std::fs::create_dir_all(&self.root)?;
        let conn = Connection::open(self.root.join(file))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA secure_delete = ON;")?;
        conn.execute_batch(SCHEMA)?;
        // Day files written before visits were counted per visit lack the column.
        if conn.prepare("SELECT visit FROM visits LIMIT 0").is_err() {
            conn.execute_batch("ALTER TABLE visits ADD COLUMN visit TEXT")?;
        }
        Ok(conn)
    }

    /// Stores a batch, one transaction per day it touches.
    pub fn write(&self, visits: &[Visit]) -> Result<(), VisitError> {
        let mut by_day: std::collections::BTreeMap<Date, Vec<&Visit>> = Default::default();
        for v in visits {
            by_day.entry(v.at.date()).or_default().push(v);
        }
        for (day, list) in by_day {
            let mut conn = self.open(&format!("{}.sqlite", day_name(day)))?;
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare(
                    "INSERT INTO visits (at, ip, browser, browser_version, platform, referrer, path, language, country, person, visit)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                for v in list {
                    stmt.execute(params![
                        to_millis(v.at),
                        v.ip,
                        v.browser,
                        v.browser_version,
                        v.platform,
                        v.referrer,
                        v.path,
                        v.language,
                        v.country,
                        v.person,
                        v.visit
                    ])?;
                }
            }
            tx.commit()?;
        }
        Ok(())
    }

    /// The days that have a partition, oldest first.
    pub fn days(&self) -> Vec<Date> {
        let mut days: Vec<Date> = std::fs::read_dir(&self.root)
            .map(|rd| rd.filter_map(Result::ok).filter_map(|e| parse_day(&e.file_name().to_string_lossy())).collect())
            .unwrap_or_default();
        days.sort();
        days
    }

    /// Visits of one day (for tests, the dashboard's aggregation and the security role).
    pub fn day(&self, day: Date) -> Result<Vec<Visit>, VisitError> {
        let path = self.root.join(format!("{}.sqlite", day_name(day)));
        if !path.exists() {
            return Ok(Vec::new());
        }
        read_visits(&self.open(&format!("{}.sqlite", day_name(day)))?, "SELECT * FROM visits ORDER BY id")
    }

    /// Visits kept past expiry by a legal hold.
    pub fn held(&self) -> Result<Vec<Visit>, VisitError> {
        if !self.root.join("held.sqlite").exists() {
            return Ok(Vec::new());
        }
        read_visits(&self.open("held.sqlite")?, "SELECT * FROM visits ORDER BY id")
    }

    /// Every retained visit from an IP address or of a person (`person:…`),
    /// newest first: for the security role only (the caller checks and audits).
    pub fn search(&self, who: &Who) -> Result<Vec<Visit>, VisitError> {
        let (sql, arg) = match who {
            Who::Ip(ip) => ("SELECT * FROM visits WHERE ip = ?1 ORDER BY id", ip.as_str()),
            Who::Person(p) => ("SELECT * FROM visits WHERE person = ?1 ORDER BY id", p.as_str()),
        };
        let mut files: Vec<String> = self.days().into_iter().map(|d| format!("{}.sqlite", day_name(d))).collect();
        if self.root.join("held.sqlite").exists() {
            files.push("held.sqlite".into());
        }
        let mut out = Vec::new();
        for f in files {
            let conn = self.open(&f)?;
            let mut stmt = conn.prepare(sql)?;
            out.extend(stmt.query_map([arg], visit_from)?.collect::<Result<Vec<_>, _>>()?);
        }
        out.sort_by_key(|v| std::cmp::Reverse(v.at));
        Ok(out)
    }

    /// Drops a day: first copies what active holds cover into `held.sqlite`.
    pub(crate) fn drop_day(&self, day: Date, holds: &[Hold]) -> Result<u64, VisitError> {
        let name = format!("{}.sqlite", day_name(day));
        let path = self.root.join(&name);
        if !path.exists() {
            return Ok(0);
        }
        if !holds.is_empty() {
            let source = self.open(&name)?;
            let mut kept = Vec::new();
            for v in read_visits_with_rowid(&source)? {
                if let Some(h) = holds.iter().find(|h| h.covers(&v.1)) {
                    kept.push((h.id, v.1));
                }
            }
            drop(source);
            if !kept.is_empty() {
                let mut held = self.open("held.sqlite")?;
                let tx = held.transaction()?;
                for (hold, v) in &kept {
                    tx.execute(
                        "INSERT INTO visits (at, ip, browser, browser_version, platform, referrer, path, language, country, person, hold_id, visit)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                        params![
                            to_millis(v.at),
                            v.ip,
                            v.browser,
                            v.browser_version,
                            v.platform,
                            v.referrer,
                            v.path,
                            v.language,
                            v.country,
                            v.person,
                            hold,
                            v.visit
                        ],
                    )?;
                }
                tx.commit()?;
            }
        }
        for suffix in ["", "-wal", "-shm"] {
            match std::fs::remove_file(self.root.join(format!("{name}{suffix}"))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(1)
    }
}

pub(crate) fn visit_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Visit> {
    Ok(Visit {
        at: from_millis(r.get("at")?),
        ip: r.get("ip")?,
        browser: r.get("browser")?,
        browser_version: r.get("browser_version")?,
        platform: r.get("platform")?,
        referrer: r.get("referrer")?,
        path: r.get("path")?,
        language: r.get("language")?,
        country: r.get("country")?,
        person: r.get("person")?,
        session: None,
        user_agent: None,
        visit: r.get("visit")?,
    })
}

fn read_visits(conn: &Connection, sql: &str) -> Result<Vec<Visit>, VisitError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], visit_from)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn read_visits_with_rowid(conn: &Connection) -> Result<Vec<(i64, Visit)>, VisitError> {
    let mut stmt = conn.prepare("SELECT * FROM visits ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get("id")?, visit_from(r)?)))?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Whose visits the security role looks for.
#[derive(Debug, Clone)]
pub enum Who {
    Ip(String),
    Person(String),
}

/// An active legal hold on browser data.
#[derive(Debug, Clone)]
pub(crate) struct Hold {
    id: i64,
    subject: Option<String>,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
}

impl Hold {
    pub(crate) fn covers(&self, v: &Visit) -> bool {
        let who = match &self.subject {
            None => true,
            Some(s) => match s.strip_prefix("ip:") {
                Some(ip) => v.ip == ip,
                None => v.person.as_deref() == Some(s.as_str()),
            },
        };
        who && self.from.is_none_or(|f| v.at >= f) && self.to.is_none_or(|t| v.at <= t)
    }
}

/// Everything of browser data a node serves: the recorder, the partitions
/// and the anonymous aggregates.
#[derive(Clone)]
pub struct Visits {
    pub recorder: Recorder,
    pub store: VisitStore,
    pub aggregates: aggregate::Aggregates,
    pub geo: geo::Geo,
}

// ----- recording -----

enum Msg {
    Visit(Box<Visit>),
    Flush(oneshot::Sender<()>),
}

/// Offers visits to the writer without ever waiting.
#[derive(Clone)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Msg>>,
}

/// Job kind: compute the anonymous daily statistics of browser data (BRW-3).
pub const JOB_VISITS_AGGREGATE: &str = "visits.aggregate";

/// Visits waiting to be written at most; beyond, they are dropped and counted.
pub const QUEUE_CAPACITY: usize = 10_000;
const BATCH: usize = 500;

impl Recorder {
    /// Starts the writer task; it stops when every recorder is dropped.
    /// With the control plane, sessions are resolved to the person signed in.
    /// With a geolocation database, the writer sets each visit's country.
    pub fn start(store: VisitStore, db: Option<Db>, geo: geo::Geo) -> (Self, tokio::task::JoinHandle<()>) {
        Self::with_capacity(store, db, geo, QUEUE_CAPACITY)
    }

    pub fn with_capacity(
        store: VisitStore,
        db: Option<Db>,
        geo: geo::Geo,
        capacity: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx: Some(tx) }, tokio::spawn(writer(store, db, geo, rx)))
    }

    /// A recorder that records nothing (recording switched off).
    pub fn disabled() -> (Self, tokio::task::JoinHandle<()>) {
        (Self { tx: None }, tokio::spawn(async {}))
    }

    /// Queues a visit; a full queue drops it and counts the drop.
    pub fn record(&self, v: Visit) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Visit(Box::new(v))) {
            Ok(()) => {}
            Err(_) => metrics::counter!("seldesk_browser_events_dropped_total").increment(1),
        }
    }

    /// Waits until everything queued so far is stored (tests, shutdown).
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// `person:<id>` for the sessions of account holders in a batch.
async fn resolve_people(db: &Db, batch: &mut [Visit]) {
    let mut known: std::collections::HashMap<String, Option<String>> = Default::default();
    for v in batch.iter_mut() {
        let Some(hash) = v.session.take() else { continue };
        if !known.contains_key(&hash) {
            let principal: Option<String> = sqlx::query_scalar("SELECT principal FROM sessions WHERE token_hash = $1")
                .bind(&hash)
                .fetch_optional(db.pool())
                .await
                .unwrap_or(None);
            let person = principal
                .and_then(|p| p.strip_prefix("account:").map(|id| seldesk_domain::Subject::person(id).into_string()));
            known.insert(hash.clone(), person);
        }
        v.person = known.get(&hash).cloned().flatten();
    }
}

/// Parsed user agents: a site sees few distinct ones, and parsing is the
/// costly part of a visit. Bounded: cleared when full.
#[derive(Default)]
struct UaCache(std::collections::HashMap<String, (String, String, String)>);

impl UaCache {
    fn parse(&mut self, ua: String) -> (String, String, String) {
        if let Some(hit) = self.0.get(&ua) {
            return hit.clone();
        }
        if self.0.len() >= 4096 {
            self.0.clear();
        }
        let parsed = parse_user_agent(&ua);
        self.0.insert(ua, parsed.clone());
        parsed
    }
}

async fn writer(store: VisitStore, db: Option<Db>, geo: geo::Geo, mut rx: mpsc::Receiver<Msg>) {
    let mut ua_cache = UaCache::default();
    let mut batch: Vec<Visit> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Take what is already queued, up to a batch, then write it at once.
        while let Some(msg) = next.take() {
            match msg {
                Msg::Visit(v) => batch.push(*v),
                Msg::Flush(done) => waiting.push(done),
            }
            if batch.len() >= BATCH {
                break;
            }
            next = rx.try_recv().ok();
        }
        if !batch.is_empty() {
            let mut list = std::mem::take(&mut batch);
            if let Some(db) = &db {
                resolve_people(db, &mut list).await;
            }
            for v in &mut list {
                if let Some(ua) = v.user_agent.take() {
                    (v.browser, v.browser_version, v.platform) = ua_cache.parse(ua);
                }
                v.redact();
            }
            if geo.is_configured() {
                for v in &mut list {
                    if let Some(c) = geo.country_of(&v.ip) {
                        v.country = Some(c);
                    }
                }
            }
            let n = list.len() as u64;
            match store.write(list).await {
                Ok(()) => metrics::counter!("seldesk_browser_events_recorded_total").increment(n),
                Err(e) => {
                    tracing::error!(error = %e, lost = n, "browser events not stored");
                    metrics::counter!("seldesk_browser_events_dropped_total").increment(n);
                }
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

// ----- retention -----

/// The `browser_event` eraser: whole days once due, and held visits once
/// their hold has ended.
pub struct VisitEraser {
    store: VisitStore,
    db: Db,
    clock: Arc<dyn Clock>,
}

impl VisitEraser {
    pub fn new(store: VisitStore, db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { store, db, clock }
    }

    async fn active_holds(&self) -> Result<Vec<Hold>, PrivacyError> {
        let rows = sqlx::query(
            "SELECT id, subject, from_at, to_at FROM legal_holds
             WHERE category = 'browser_event' AND released_at IS NULL AND until_at > $1",
        )
        .bind(to_millis(self.clock.now()))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Hold {
                    id: r.try_get("id")?,
                    subject: r.try_get("subject")?,
                    from: r.try_get::<Option<i64>, _>("from_at")?.map(from_millis),
                    to: r.try_get::<Option<i64>, _>("to_at")?.map(from_millis),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

fn store_err(e: VisitError) -> PrivacyError {
    PrivacyError::Misconfigured(e.to_string())
}

impl Eraser for VisitEraser {
    fn category(&self) -> &'static str {
        "browser_event"
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            // A day's clock starts at its end, so no visit goes early.
            for day in self.store.days().await.map_err(store_err)? {
                let end = day.next_day().unwrap_or(day).midnight().assume_utc();
                if end <= cutoff {
                    out.push(Candidate {
                        record: format!("day:{}", day_name(day)),
                        subject: None,
                        start: end,
                        country: None,
                    });
                }
            }
            for (id, v) in self.store.held_with_ids().await.map_err(store_err)? {
                if v.at <= cutoff {
                    out.push(Candidate {
                        record: format!("held:{id}"),
                        // Holds name an IP or a person: the engine keeps what an active one covers.
                        subject: Some(v.person.clone().unwrap_or_else(|| format!("ip:{}", v.ip))),
                        start: v.at,
                        country: None,
                    });
                }
            }
            Ok(out)
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(async move {
            let holds = self.active_holds().await?;
            let mut n = 0;
            let mut held_ids = Vec::new();
            for c in records {
                if let Some(day) = c.record.strip_prefix("day:").and_then(|d| parse_day(&format!("{d}.sqlite"))) {
                    n += self.store.drop_day(day, holds.clone()).await.map_err(store_err)?;
                } else if let Some(id) = c.record.strip_prefix("held:").and_then(|s| s.parse::<i64>().ok()) {
                    held_ids.push(id);
                }
            }
            n += self.store.delete_held(held_ids).await.map_err(store_err)?;
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(async move {
            let (live, oldest) = self.store.census().await.map_err(store_err)?;
            Ok(Census { live, oldest })
        })
    }
}

// ----- access and erasure (issue 6 §9) -----

/// Browser data linked to an account: in its access export, erased with it.
pub struct PersonVisits {
    store: VisitStore,
}

impl PersonVisits {
    pub fn new(store: VisitStore) -> Self {
        Self { store }
    }
}

impl FileVisits {
    /// Held visits with their ids (for the eraser).
    pub fn held_with_ids(&self) -> Result<Vec<(i64, Visit)>, VisitError> {
        if !self.root.join("held.sqlite").exists() {
            return Ok(Vec::new());
        }
        read_visits_with_rowid(&self.open("held.sqlite")?)
    }

    /// Erases held visits by id.
    pub fn delete_held(&self, ids: &[i64]) -> Result<u64, VisitError> {
        if ids.is_empty() || !self.root.join("held.sqlite").exists() {
            return Ok(0);
        }
        let conn = self.open("held.sqlite")?;
        let mut n = 0;
        for id in ids {
            n += conn.execute("DELETE FROM visits WHERE id = ?1", [id])? as u64;
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(n)
    }

    /// Visits kept and the oldest clock start.
    pub fn census(&self) -> Result<(u64, Option<OffsetDateTime>), VisitError> {
        let days = self.days();
        let mut live = 0u64;
        for d in &days {
            let conn = self.open(&format!("{}.sqlite", day_name(*d)))?;
            live += conn.query_row("SELECT COUNT(*) FROM visits", [], |r| r.get::<_, i64>(0))? as u64;
        }
        let held: Option<i64> = if self.root.join("held.sqlite").exists() {
            self.open("held.sqlite")?.query_row("SELECT MIN(at) FROM visits", [], |r| r.get(0)).optional()?.flatten()
        } else {
            None
        };
        let oldest_day = days.first().map(|d| d.midnight().assume_utc());
        let oldest = match (oldest_day, held.map(from_millis)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok((live, oldest))
    }

    /// Erases every visit linked to `person` from every day and the held store.
    pub fn erase_person(&self, person: &str) -> Result<u64, VisitError> {
        let mut files: Vec<String> = self.days().into_iter().map(|d| format!("{}.sqlite", day_name(d))).collect();
        if self.root.join("held.sqlite").exists() {
            files.push("held.sqlite".into());
        }
        let mut n = 0;
        for f in files {
            let conn = self.open(&f)?;
            let deleted = conn.execute("DELETE FROM visits WHERE person = ?1", [person])? as u64;
            if deleted > 0 {
                // secure_delete is on; the checkpoint leaves nothing in the WAL.
                conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
            }
            n += deleted;
        }
        Ok(n)
    }
}

impl seldesk_privacy::PersonalDataStore for PersonVisits {
    fn section(&self) -> &'static str {
        "browser_visits"
    }

    fn category(&self) -> &'static str {
        "browser_event"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["visits", "visits_held"]
    }

    fn export<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<serde_json::Value, PrivacyError>> {
        Box::pin(async move {
            let visits = self.store.search(Who::Person(subject.to_string())).await.map_err(store_err)?;
            Ok(serde_json::Value::Array(
                visits
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "at": v.at.to_string(), "ip": v.ip, "browser": v.browser, "browser_version": v.browser_version,
                            "platform": v.platform, "referrer": v.referrer, "path": v.path, "language": v.language,
                            "country": v.country,
                        })
                    })
                    .collect(),
            ))
        })
    }

    fn erase<'a>(
        &'a self,
        person: &'a seldesk_privacy::Person,
    ) -> BoxFuture<'a, Result<seldesk_privacy::Erased, PrivacyError>> {
        Box::pin(async move {
            let n = self.store.erase_person(person.subject.clone()).await.map_err(store_err)?;
            let mut out = seldesk_privacy::Erased { records: n, ..Default::default() };
            if n > 0 {
                out.erased.push(format!("{n} record(s) of your visits to our website linked to your account"));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_and_languages_are_parsed() {
        let (b, v, p) = parse_user_agent(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        );
        assert_eq!((b.as_str(), p.as_str()), ("Chrome", "Windows 10"));
        assert!(v.starts_with("120"));
        assert_eq!(parse_user_agent("").0, "UNKNOWN");
        assert_eq!(first_language("fr-CH, fr;q=0.9, en;q=0.8").as_deref(), Some("fr-CH"));
        assert_eq!(first_language("*"), None);
        assert_eq!(first_language("<script>"), None);
    }

    #[tokio::test]
    async fn a_full_queue_drops_visits_instead_of_waiting() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = VisitStore::Files(FileVisits::new(dir.path()));
        let (recorder, _task) = Recorder::with_capacity(store.clone(), None, geo::Geo::default(), 2);
        let v = Visit {
            at: time::macros::datetime!(2026-11-25 10:00 UTC),
            ip: "203.0.113.7".into(),
            browser: "Firefox".into(),
            browser_version: "120".into(),
            platform: "Linux".into(),
            referrer: None,
            path: "/".into(),
            language: Some("en".into()),
            country: None,
            person: None,
            session: None,
            user_agent: None,
            visit: None,
        };
        // Offered far faster than written: record never blocks, some are dropped.
        let started = std::time::Instant::now();
        for _ in 0..10_000 {
            recorder.record(v.clone());
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        recorder.flush().await;
        let stored = store.day(v.at.date()).await.expect("day").len();
        assert!((1..10_000).contains(&stored), "stored {stored}");
    }
}
