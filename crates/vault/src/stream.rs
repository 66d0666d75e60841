//! Continuous protection: the commits a node's writers capture
//! (`seldesk_tenants::stream`) are gathered for a moment and shipped as
//! segments to every backup region — compressed with zstd, sealed with
//! AES-256-GCM under the database's own key (so they become unreadable with
//! it), named by the hash of their bytes (`stream/<database>/<hash>`) and
//! written once under the vault's lock. A segment counts as shipped when
//! every region holds it; then the control plane lists it
//! (`stream_segments`), and a point-in-time restore can use it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seldesk_domain::Clock;
use seldesk_store::{Db, to_millis};
use seldesk_tenants::stream::{Captured, Commit, CommitSink};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::VaultError;
use crate::engine::Vault;
use crate::format::{content_hash, open, seal};

/// The format of a segment's plain header.
const FORMAT: u32 = 1;
/// A segment holds at most about this much (plain): a long burst of
/// writes ships as several.
const SEGMENT_BYTES: usize = 16 << 20;

pub(crate) fn stream_aad(db: &str) -> String {
    format!("seldesk-vault-stream:{db}")
}

/// The object name of a segment.
pub fn segment_name(db: &str, hash: &str) -> String {
    format!("stream/{db}/{hash}")
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    database: String,
    chain: String,
    chain_started_ms: i64,
    page_size: u32,
    commits: Vec<CommitHead>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CommitHead {
    seq: u64,
    at_ms: i64,
    db_pages: u32,
    pages: Vec<u32>,
}

/// A segment read back: its chain and its commits.
#[derive(Debug, Clone)]
pub struct Segment {
    pub database: String,
    pub chain: String,
    pub chain_started_ms: i64,
    pub page_size: u32,
    pub commits: Vec<Commit>,
}

impl Vault {
    /// Seals `batch` as one segment and writes it to every region; returns
    /// its object name and size.
    pub fn put_segment(&self, batch: &Captured, now_ms: i64) -> Result<(String, u64), VaultError> {
        let db = &batch.database;
        let header = Header {
            format: FORMAT,
            database: db.clone(),
            chain: batch.chain.clone(),
            chain_started_ms: batch.chain_started_ms,
            page_size: batch.page_size,
            commits: batch
                .commits
                .iter()
                .map(|c| CommitHead {
                    seq: c.seq,
                    at_ms: c.at_ms,
                    db_pages: c.db_pages,
                    pages: c.pages.iter().map(|(no, _)| *no).collect(),
                })
                .collect(),
        };
        let head = serde_json::to_vec(&header).map_err(|e| VaultError::Invalid(e.to_string()))?;
        let body: usize = batch.commits.iter().flat_map(|c| &c.pages).map(|(_, b)| b.len()).sum();
        let mut plain = Vec::with_capacity(4 + head.len() + body);
        plain.extend_from_slice(&(head.len() as u32).to_le_bytes());
        plain.extend_from_slice(&head);
        for c in &batch.commits {
            for (_, bytes) in &c.pages {
                plain.extend_from_slice(bytes);
            }
        }
        // Level 1: the shipper shares the cores with the requests it protects.
        let packed = zstd::bulk::compress(&plain, 1).map_err(|e| VaultError::Io(format!("cannot compress: {e}")))?;
        let key = self.db_key(db, true)?;
        let sealed = seal(&key, &packed, stream_aad(db).as_bytes())?;
        let name = segment_name(db, &content_hash(&sealed));
        self.put_all(&name, &sealed, now_ms + self.settings.lock.whole_milliseconds() as i64)?;
        Ok((name, sealed.len() as u64))
    }

    /// Deletes a segment from every region; `false` while its lock lasts.
    pub fn delete_segment(&self, name: &str, now_ms: i64) -> Result<bool, VaultError> {
        match self.delete_all(name, now_ms) {
            Ok(()) => Ok(true),
            Err(VaultError::Locked { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads a segment back from the first region with an intact copy.
    pub fn get_segment(&self, name: &str) -> Result<Segment, VaultError> {
        let db = name.split('/').nth(1).ok_or_else(|| VaultError::Invalid(format!("not a segment: {name}")))?;
        let sealed = self.get_verified(name)?;
        let key = self.db_key(db, false)?;
        let packed = open(&key, &sealed, stream_aad(db).as_bytes())?;
        let damaged = |what: &str| VaultError::Corrupt(format!("{name}: {what}"));
        // Bounded: a segment holds at most a few times SEGMENT_BYTES.
        let plain = zstd::bulk::decompress(&packed, SEGMENT_BYTES * 8).map_err(|_| damaged("does not decompress"))?;
        let len = plain.get(..4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        let head = len.and_then(|l| plain.get(4..4 + l)).ok_or_else(|| damaged("no header"))?;
        let header: Header = serde_json::from_slice(head).map_err(|_| damaged("unreadable header"))?;
        if header.format != FORMAT || header.database != db {
            return Err(damaged("of another format or database"));
        }
        let page = header.page_size as usize;
        let mut at = 4 + head.len();
        let mut commits = Vec::with_capacity(header.commits.len());
        for c in header.commits {
            let mut pages = Vec::with_capacity(c.pages.len());
            for no in c.pages {
                let bytes = plain.get(at..at + page).ok_or_else(|| damaged("shorter than its header says"))?;
                pages.push((no, bytes.to_vec()));
                at += page;
            }
            commits.push(Commit { seq: c.seq, at_ms: c.at_ms, db_pages: c.db_pages, pages });
        }
        Ok(Segment {
            database: header.database,
            chain: header.chain,
            chain_started_ms: header.chain_started_ms,
            page_size: header.page_size,
            commits,
        })
    }
}

/// Commits captured and not yet shipped, by database, in order.
#[derive(Default)]
struct Pending {
    by_db: BTreeMap<String, Vec<Captured>>,
    bytes: usize,
}

fn size_of(batch: &Captured) -> usize {
    batch.commits.iter().map(size_of_commit).sum()
}

fn size_of_commit(c: &Commit) -> usize {
    64 + c.pages.iter().map(|(_, b)| b.len() + 4).sum::<usize>()
}

/// Takes the commits of this node's writers and ships them (module docs).
#[derive(Clone)]
pub struct Shipper {
    inner: Arc<Inner>,
}

struct Inner {
    vault: Arc<Vault>,
    db: Db,
    clock: Arc<dyn Clock>,
    pending: Mutex<Pending>,
    /// Most bytes waiting: past it a chain ends rather than the node
    /// running out of memory while a backup region is unreachable.
    max_bytes: usize,
    /// Serialises shipping runs (a tick and a shutdown's last run).
    shipping: tokio::sync::Mutex<()>,
    /// The databases shipped for since start (what [`Shipper::compact`] joins).
    shipped: Mutex<std::collections::BTreeSet<String>>,
    /// Where a snapshot of a database whose chain just began is asked for,
    /// and this node's name (the backup reads the database's files here).
    snapshots: Option<(seldesk_jobs::Queue, String)>,
}

/// What one shipping run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShipReport {
    pub segments: u64,
    pub commits: u64,
    /// Bytes written to each region.
    pub bytes: u64,
    /// Bytes of the pages those commits wrote, before compression.
    pub page_bytes: u64,
}

impl Shipper {
    pub fn new(vault: Arc<Vault>, db: Db, clock: Arc<dyn Clock>, max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                vault,
                db,
                clock,
                pending: Mutex::new(Pending::default()),
                max_bytes,
                shipping: tokio::sync::Mutex::new(()),
                shipped: Mutex::new(Default::default()),
                snapshots: None,
            }),
        }
    }

    /// Asks for a snapshot of each database whose chain of commits begins
    /// (a job on this node): a point-in-time restore replays a chain onto
    /// a snapshot taken during it, so a new chain is restorable from then.
    pub fn snapshot_new_chains(mut self, queue: seldesk_jobs::Queue, node: String) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.snapshots = Some((queue, node)),
            None => tracing::warn!("the shipper is already shared: new chains get no snapshot of their own"),
        }
        self
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ships everything captured so far; what a region refused stays
    /// pending, in order, for the next run.
    pub async fn ship(&self) -> Result<ShipReport, VaultError> {
        let _one = self.inner.shipping.lock().await;
        let taken = std::mem::take(&mut *self.pending());
        let mut report = ShipReport::default();
        // How long the oldest commit shipped in this run had waited.
        let now = to_millis(self.inner.clock.now());
        let mut delay_ms = 0i64;
        let mut left: BTreeMap<String, Vec<Captured>> = BTreeMap::new();
        let mut failure = None;
        for (db, batches) in taken.by_db {
            // A database removed meanwhile: its commits are not kept anywhere.
            let found: Result<i64, _> = sqlx::query_scalar("SELECT COUNT(*) FROM databases WHERE id = $1")
                .bind(&db)
                .fetch_one(self.inner.db.pool())
                .await;
            if matches!(found, Ok(0)) {
                continue;
            }
            let mut queue = merge(batches).into_iter();
            while let Some(batch) = queue.next() {
                match self.ship_one(&batch).await {
                    Ok(bytes) => {
                        if let Ok(mut shipped) = self.inner.shipped.lock() {
                            shipped.insert(db.clone());
                        }
                        if let Some(first) = batch.commits.first() {
                            delay_ms = delay_ms.max(now - first.at_ms);
                        }
                        report.page_bytes += size_of(&batch) as u64;
                        if batch.commits.first().is_some_and(|c| c.seq == 0) {
                            self.snapshot_chain(&batch).await;
                        }
                        report.segments += 1;
                        report.commits += batch.commits.len() as u64;
                        report.bytes += bytes;
                    }
                    Err(e) => {
                        failure = Some(e);
                        let rest = left.entry(db.clone()).or_default();
                        rest.push(batch);
                        rest.extend(queue.by_ref());
                    }
                }
            }
        }
        if !left.is_empty() {
            let mut p = self.pending();
            for (db, mut batches) in left {
                p.bytes += batches.iter().map(size_of).sum::<usize>();
                let newer = p.by_db.remove(&db).unwrap_or_default();
                batches.extend(newer);
                p.by_db.insert(db, batches);
            }
        }
        metrics::counter!("seldesk_stream_segments_total").increment(report.segments);
        metrics::counter!("seldesk_stream_commits_total").increment(report.commits);
        metrics::counter!("seldesk_stream_bytes_total").increment(report.bytes);
        metrics::counter!("seldesk_stream_page_bytes_total").increment(report.page_bytes);
        if report.segments > 0 {
            metrics::gauge!("seldesk_stream_last_delay_seconds").set(delay_ms.max(0) as f64 / 1000.0);
        }
        let lag = self.lag_ms();
        metrics::gauge!("seldesk_stream_waiting_commits").set(self.waiting() as f64);
        metrics::gauge!("seldesk_stream_lag_seconds").set(lag as f64 / 1000.0);
        match failure {
            Some(e) => {
                metrics::counter!("seldesk_stream_failures_total").increment(1);
                Err(e)
            }
            None => Ok(report),
        }
    }

    /// How long the oldest commit not yet shipped has waited, in
    /// milliseconds (0 when everything is shipped).
    pub fn lag_ms(&self) -> i64 {
        let oldest = self.pending().by_db.values().filter_map(|b| b.first()?.commits.first().map(|c| c.at_ms)).min();
        oldest.map_or(0, |t| (to_millis(self.inner.clock.now()) - t).max(0))
    }

    async fn snapshot_chain(&self, batch: &Captured) {
        let Some((queue, node)) = &self.inner.snapshots else { return };
        let job = seldesk_jobs::NewJob::of(&crate::BackupJob { database: Some(batch.database.clone()) })
            .dedupe(format!("chain-backup:{}:{}", batch.database, batch.chain))
            .on_node(node.clone());
        if let Err(e) = queue.enqueue(job).await {
            tracing::warn!(database = %batch.database, "could not ask for a snapshot of a new chain: {e}");
        }
    }

    async fn ship_one(&self, batch: &Captured) -> Result<u64, VaultError> {
        let now = to_millis(self.inner.clock.now());
        let (vault, b) = (self.inner.vault.clone(), batch.clone());
        let (name, bytes) = tokio::task::spawn_blocking(move || vault.put_segment(&b, now))
            .await
            .map_err(|e| VaultError::Io(format!("shipping failed: {e}")))??;
        let (first, last) = match (batch.commits.first(), batch.commits.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Ok(0),
        };
        sqlx::query(
            "INSERT INTO stream_segments (object, database_id, chain, chain_started_at, first_seq, last_seq, first_at, last_at, bytes, shipped_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (object) DO NOTHING",
        )
        .bind(&name)
        .bind(&batch.database)
        .bind(&batch.chain)
        .bind(batch.chain_started_ms)
        .bind(first.seq as i64)
        .bind(last.seq as i64)
        .bind(first.at_ms)
        .bind(last.at_ms)
        .bind(bytes as i64)
        .bind(now)
        .execute(self.inner.db.pool())
        .await?;
        Ok(bytes)
    }

    /// Ships every `interval` until `stop`, then once more.
    pub async fn run(self, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut last_compaction = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => break,
            }
            if let Err(e) = self.ship().await {
                tracing::warn!("backup stream: {e}; will try again");
            }
            if last_compaction.elapsed() >= Duration::from_secs(60) {
                last_compaction = std::time::Instant::now();
                match self.compact().await {
                    Ok(n) if n > 0 => tracing::debug!(segments = n, "joined small stream segments"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("joining stream segments: {e}"),
                }
            }
        }
        if let Err(e) = self.ship().await {
            tracing::warn!("backup stream at shutdown: {e}");
        }
    }

    /// Commits captured and not yet shipped.
    pub fn waiting(&self) -> usize {
        self.pending().by_db.values().flatten().map(|b| b.commits.len()).sum()
    }
}

/// Segments this much older than now are joined with their neighbours.
const COMPACT_AFTER_MS: i64 = 60_000;
/// A segment smaller than this (sealed) is worth joining.
const SMALL_SEGMENT: i64 = 1 << 20;

impl Shipper {
    /// Joins each database's runs of small consecutive segments of a chain,
    /// older than a minute, into one segment holding the same commits in
    /// order: a restore reads a few objects, not one per second of the
    /// day. The joined segment is written to every region before the list
    /// names it instead of the small ones, in one transaction; the small
    /// objects stay until their lock ends and prune deletes them. Only the
    /// databases this node ships for. Returns how many segments went into
    /// joined ones.
    pub async fn compact(&self) -> Result<u64, VaultError> {
        let databases: Vec<String> = self.shipped().into_iter().collect();
        let cutoff = to_millis(self.inner.clock.now()) - COMPACT_AFTER_MS;
        let mut joined = 0;
        for database in databases {
            let rows = segments_of(&self.inner.db, &database).await?;
            let mut runs: Vec<Vec<SegmentRow>> = Vec::new();
            for row in rows.into_iter().filter(|r| r.last_ms < cutoff && r.bytes < SMALL_SEGMENT) {
                match runs.last_mut() {
                    Some(run)
                        if run.last().is_some_and(|l| l.chain == row.chain && l.last_seq + 1 == row.first_seq)
                            && run.iter().map(|r| r.bytes).sum::<i64>() + row.bytes <= SMALL_SEGMENT * 8 =>
                    {
                        run.push(row)
                    }
                    _ => runs.push(vec![row]),
                }
            }
            for run in runs.into_iter().filter(|r| r.len() > 1) {
                joined += run.len() as u64;
                self.join(&run).await?;
            }
        }
        Ok(joined)
    }

    async fn join(&self, run: &[SegmentRow]) -> Result<(), VaultError> {
        let (vault, objects, now) =
            (self.inner.vault.clone(), run.iter().map(|r| r.object.clone()).collect::<Vec<_>>(), self.now_ms());
        // Joined up to the segment size: several joined segments if the run
        // holds more than one may (memory stays at about two segments).
        let joined = tokio::task::spawn_blocking(move || {
            let mut out: Vec<(String, u64, Captured)> = Vec::new();
            let mut current: Option<Captured> = None;
            let mut flush = |batch: Captured| -> Result<(), VaultError> {
                let (name, bytes) = vault.put_segment(&batch, now)?;
                // What the list needs of it: its chain and its first and last commits.
                let bare = |c: &Commit| Commit { seq: c.seq, at_ms: c.at_ms, db_pages: c.db_pages, pages: Vec::new() };
                let ends = [batch.commits.first(), batch.commits.last()].into_iter().flatten().map(bare).collect();
                out.push((name, bytes, Captured { commits: ends, ..batch }));
                Ok(())
            };
            for object in &objects {
                let s = vault.get_segment(object)?;
                for c in s.commits {
                    let full = current.as_ref().is_some_and(|b| size_of(b) + size_of_commit(&c) > SEGMENT_BYTES);
                    if full && let Some(b) = current.take() {
                        flush(b)?;
                    }
                    match &mut current {
                        Some(b) => b.commits.push(c),
                        None => {
                            current = Some(Captured {
                                region: String::new(),
                                database: s.database.clone(),
                                chain: s.chain.clone(),
                                chain_started_ms: s.chain_started_ms,
                                page_size: s.page_size,
                                commits: vec![c],
                            })
                        }
                    }
                }
            }
            if let Some(b) = current.take() {
                flush(b)?;
            }
            Ok::<_, VaultError>(out)
        })
        .await
        .map_err(|e| VaultError::Io(format!("joining segments failed: {e}")))??;
        let mut tx = self.inner.db.pool().begin().await?;
        for (name, bytes, b) in &joined {
            let (Some(first), Some(last)) = (b.commits.first(), b.commits.last()) else { continue };
            sqlx::query(
                "INSERT INTO stream_segments (object, database_id, chain, chain_started_at, first_seq, last_seq, first_at, last_at, bytes, shipped_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (object) DO NOTHING",
            )
            .bind(name)
            .bind(&b.database)
            .bind(&b.chain)
            .bind(b.chain_started_ms)
            .bind(first.seq as i64)
            .bind(last.seq as i64)
            .bind(first.at_ms)
            .bind(last.at_ms)
            .bind(*bytes as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for r in run {
            sqlx::query("DELETE FROM stream_segments WHERE object = $1").bind(&r.object).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The databases this shipper has shipped commits of since it started.
    fn shipped(&self) -> std::collections::BTreeSet<String> {
        self.inner.shipped.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Joins consecutive batches of one chain, up to the segment size.
fn merge(batches: Vec<Captured>) -> Vec<Captured> {
    let mut out: Vec<Captured> = Vec::new();
    for b in batches {
        match out.last_mut() {
            Some(last)
                if last.chain == b.chain
                    && last.page_size == b.page_size
                    && size_of(last) + size_of(&b) <= SEGMENT_BYTES =>
            {
                last.commits.extend(b.commits);
            }
            _ => out.push(b),
        }
    }
    out
}

impl CommitSink for Shipper {
    fn captured(&self, batch: Captured) -> bool {
        let size = size_of(&batch);
        let mut p = self.pending();
        if p.bytes + size > self.inner.max_bytes {
            return false;
        }
        p.bytes += size;
        p.by_db.entry(batch.database.clone()).or_default().push(batch);
        true
    }

    fn now_ms(&self) -> i64 {
        to_millis(self.inner.clock.now())
    }
}

/// One listed segment of a database.
#[derive(Debug, Clone)]
pub struct SegmentRow {
    pub object: String,
    /// Its size as stored.
    pub bytes: i64,
    pub chain: String,
    pub chain_started_ms: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// The shipped segments of a database, by chain and order.
pub async fn segments_of(db: &Db, database: &str) -> Result<Vec<SegmentRow>, VaultError> {
    let rows = sqlx::query(
        "SELECT object, chain, chain_started_at, first_seq, last_seq, first_at, last_at, bytes FROM stream_segments
         WHERE database_id = $1 ORDER BY chain_started_at, chain, first_seq",
    )
    .bind(database)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SegmentRow {
                object: r.try_get("object")?,
                bytes: r.try_get("bytes")?,
                chain: r.try_get("chain")?,
                chain_started_ms: r.try_get("chain_started_at")?,
                first_seq: r.try_get::<i64, _>("first_seq")? as u64,
                last_seq: r.try_get::<i64, _>("last_seq")? as u64,
                first_ms: r.try_get("first_at")?,
                last_ms: r.try_get("last_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// Removes the segments no point-in-time restore can use any more: those
/// of a database ending before its oldest snapshot (a restore needs a
/// snapshot to replay onto), all of a database whose key was destroyed, and
/// any past the policy's backup age. Returns how many went; a segment still
/// under its lock waits for a later run (`waiting`).
pub(crate) async fn prune_segments(
    vault: &Arc<Vault>,
    db: &Db,
    now_ms: i64,
    max_age_ms: i64,
    keys_destroyed: &[String],
) -> Result<(u64, u64), VaultError> {
    let snapshots = {
        let vault = vault.clone();
        tokio::task::spawn_blocking(move || vault.list(None))
            .await
            .map_err(|e| VaultError::Io(format!("listing snapshots failed: {e}")))??
    };
    let mut oldest: BTreeMap<String, i64> = BTreeMap::new();
    for s in &snapshots {
        let t = to_millis(s.taken_at);
        oldest.entry(s.database.clone()).and_modify(|o| *o = (*o).min(t)).or_insert(t);
    }
    let rows = sqlx::query("SELECT object, database_id, last_at FROM stream_segments").fetch_all(db.pool()).await?;
    let (mut removed, mut waiting) = (0, 0);
    let mut keyless: BTreeMap<String, bool> = BTreeMap::new();
    for r in rows {
        let (object, database, last): (String, String, i64) =
            (r.try_get("object")?, r.try_get("database_id")?, r.try_get("last_at")?);
        if !keyless.contains_key(&database) {
            let (v, d) = (vault.clone(), database.clone());
            let gone = tokio::task::spawn_blocking(move || {
                !v.regions().iter().any(|r| r.exists(&crate::format::key_name(&d)))
            })
            .await
            .map_err(|e| VaultError::Io(format!("pruning failed: {e}")))?;
            keyless.insert(database.clone(), gone);
        }
        let useless = last < now_ms - max_age_ms
            || keys_destroyed.contains(&database)
            // Unreadable without its key: nothing is lost by removing it.
            || keyless.get(&database).copied().unwrap_or(false)
            // A minute's margin: a restore replays from a minute before its snapshot.
            || oldest.get(&database).is_some_and(|t| last < t - 60_000);
        if !useless {
            continue;
        }
        let gone = {
            let (vault, object) = (vault.clone(), object.clone());
            tokio::task::spawn_blocking(move || vault.delete_segment(&object, now_ms))
                .await
                .map_err(|e| VaultError::Io(format!("pruning failed: {e}")))??
        };
        if gone {
            sqlx::query("DELETE FROM stream_segments WHERE object = $1").bind(&object).execute(db.pool()).await?;
            removed += 1;
        } else {
            waiting += 1;
        }
    }
    // Objects the list no longer names (joined into bigger segments, or
    // written by a run that stopped before listing them): deleted once
    // their lock ends.
    let listed: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT object FROM stream_segments").fetch_all(db.pool()).await?.into_iter().collect();
    let stored = {
        let vault = vault.clone();
        tokio::task::spawn_blocking(move || vault.names("stream"))
            .await
            .map_err(|e| VaultError::Io(format!("listing segments failed: {e}")))??
    };
    for object in stored.into_iter().filter(|o| !listed.contains(o)) {
        let gone = {
            let vault = vault.clone();
            tokio::task::spawn_blocking(move || vault.delete_segment(&object, now_ms))
                .await
                .map_err(|e| VaultError::Io(format!("pruning failed: {e}")))??
        };
        if gone {
            removed += 1;
        } else {
            waiting += 1;
        }
    }
    Ok((removed, waiting))
}
