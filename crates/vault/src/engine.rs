//! Backup, restore, check, repair and prune over the region stores.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use time::OffsetDateTime;

use crate::VaultError;
use crate::format::{
    BlockRef, FORMAT, FileEntry, Key, Manifest, PackIndex, Segment, content_hash, decode, encode, file_hash,
    file_hash_of_hex, hex_of_blocks, index_name, key_name, manifest_mac, open, open_in_place, pack_name, seal,
    sign_and_encode, snapshot_name, split,
};
use crate::pagemap::{Fingerprint, Fingerprinter, PageMap};
use crate::store::{ALIGN, RegionStore, aligned_start};

/// How the vault cuts, packs and locks.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// How long a new object cannot be deleted (kept under the shortest
    /// retention window, so locks never delay the deletion deadline).
    pub lock: time::Duration,
    /// Blocks are shared only within an epoch of this many days.
    pub epoch_days: i64,
    pub pack_size: usize,
    pub segment_size: usize,
    /// Block size of attachments (databases use their page size).
    pub file_block: usize,
    /// A restore's workers take a file this many bytes at a time.
    pub restore_part: u64,
}

impl Default for VaultSettings {
    fn default() -> Self {
        Self {
            lock: time::Duration::days(7),
            epoch_days: 28,
            pack_size: 16 << 20,
            segment_size: 512 << 10,
            file_block: 64 << 10,
            restore_part: 32 << 20,
        }
    }
}

/// Snapshot retention, from the policy file.
#[derive(Debug, Clone)]
pub struct Retention {
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    /// No snapshot is older than this (the policy's `max_age`, minus one epoch
    /// so even blocks shared within an epoch go by the deadline).
    pub max_age: time::Duration,
}

/// A snapshot as listed.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    pub id: String,
    pub database: String,
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    pub size: u64,
    pub added: u64,
    /// Regions holding the manifest.
    pub regions: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub retain_until: Option<OffsetDateTime>,
}

/// Something `check` found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckProblem {
    pub region: String,
    pub object: String,
    pub problem: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    pub copied: Vec<String>,
    pub quarantined: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub snapshots_removed: u64,
    pub packs_removed: u64,
    /// Stream segments no point-in-time restore can use any more.
    pub segments_removed: u64,
    pub keys_destroyed: Vec<String>,
    /// Objects past retention still under their lock (removed by a later prune).
    pub waiting_for_lock: u64,
}

/// The vault: the master key and one store per backup region.
pub struct Vault {
    regions: Vec<RegionStore>,
    master: Key,
    pub settings: VaultSettings,
    /// Where this node keeps its change maps (pagemap.rs), if anywhere.
    maps: Option<PathBuf>,
}

/// Blocks of one file of a backup that may have changed since a snapshot
/// ([`Vault::backup_changed`]).
#[derive(Debug, Clone, Copy)]
pub struct Changed<'a> {
    /// Which file of the backup (its position in the list).
    pub file: usize,
    /// The snapshot they may have changed since.
    pub since: &'a str,
    /// Block numbers from 1 (SQLite's page numbers, blocks being pages).
    pub pages: &'a [u32],
}

fn ms(t: OffsetDateTime) -> i64 {
    seldesk_store::to_millis(t)
}

fn day_of(ms: i64) -> i64 {
    ms.div_euclid(86_400_000)
}

/// A raw segment on its way to compression.
struct RawSegment {
    data: Vec<u8>,
    blocks: Vec<BlockRef>,
}

/// Maps and sets keyed by block hash. The hashes are keyed BLAKE3, uniform
/// and not choosable by anyone without the database's key, so their first
/// bytes serve as the table hash; hashing them again (SipHash) cost more
/// than a tenth of building a large snapshot's manifest.
type BlockMap<V> = HashMap<blake3::Hash, V, BuildHasherDefault<BlockHasher>>;
type BlockSet = HashSet<blake3::Hash, BuildHasherDefault<BlockHasher>>;

#[derive(Default)]
struct BlockHasher(u64);

impl Hasher for BlockHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
    }
}

/// Where a snapshot's blocks are ([`Vault::locate`]).
type Located = (Vec<(usize, Segment, usize)>, BlockMap<(usize, u32, u32)>, Vec<String>);

/// Readers of a backup of mostly new blocks (direct I/O). It is bound by
/// the CPU: two streams read a cold file faster than one, and more gain
/// nothing (1.00 s with 2, 1.02 s with 8 for 532 MB; docs/benchmarks.md).
const READERS_DIRECT: usize = 2;
/// Readers of a backup of mostly known blocks (through the page cache). It
/// is bound by the disk, which reads faster with more requests in flight.
/// After a 1% update of 532 MB, medians of alternating runs: 0.42 s with 8
/// against 0.64 s with 2 in one series, 0.49 s against 0.61 s with 4 in
/// another (docs/benchmarks.md).
const READERS_CACHED: usize = 8;
/// Threads that read a database's pack indexes (before a backup, restore or
/// check). Reading them cold waits for the disk more than it works the CPU,
/// and a backup can start reading pages only once they are loaded: after a
/// 1% update of 532 MB, medians of alternating runs 0.234 s with 8 against
/// 0.295 s with one per core (two; docs/benchmarks.md).
const INDEX_READERS: usize = 8;
/// Files of at least twice this many chunks are split between the readers.
const SPLIT: usize = 16;

/// Bytes the backup reader hands to a worker at a time (whole blocks).
const CHUNK: usize = 1 << 20;

/// [`CHUNK`] rounded down to whole blocks of `block` bytes (at least 512).
fn chunk_size(block: usize) -> usize {
    let block = block.max(512);
    (CHUNK / block).max(1) * block
}

/// Consecutive bytes of one file, for a backup worker.
struct Chunk {
    file: usize,
    no: usize,
    /// Which reader read it: a worker keeps one segment of new blocks per
    /// reader (see the workers).
    reader: usize,
    block: usize,
    /// A buffer from the pool; the chunk is `data[at..at + len]` (`at`
    /// aligns it for direct reads).
    data: Vec<u8>,
    at: usize,
    len: usize,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.data[self.at..self.at + self.len]
    }
}

/// What a worker read of a chunk.
struct ChunkRead {
    hashes: Vec<blake3::Hash>,
    /// The blocks' fingerprints, when change maps are kept.
    fps: Vec<Fingerprint>,
    /// The epoch's indexes that hold its known blocks.
    held: Vec<usize>,
    /// Positions of the blocks not yet stored in the epoch.
    fresh: Vec<u32>,
    bytes: u64,
}

/// One file's part of a manifest, put together as the workers hand back its
/// chunks, in any order: each chunk's hashes, their hex (what the file's hash
/// covers) and its change-map entries go where the chunk sits in the file,
/// so little is left to do once the last chunk is read (20–30 ms of a
/// 532 MB database's 130,000 blocks, on the path of every backup). The hex
/// costs 64 bytes of memory per block while the backup runs.
struct Assembly {
    /// Blocks in a whole chunk.
    per: usize,
    size: u64,
    blocks: Vec<blake3::Hash>,
    hex: Vec<u8>,
    map: Vec<(Fingerprint, blake3::Hash)>,
    mapped: usize,
    /// The epoch's indexes that hold its known blocks; its new blocks.
    held: BTreeSet<usize>,
    fresh: Vec<blake3::Hash>,
    /// Chunks seen, the last chunk's number, and a short one's (only the
    /// file's last chunk may be short).
    seen: usize,
    last: Option<usize>,
    short: Option<usize>,
}

impl Assembly {
    fn new(block: usize, expected: u64) -> Self {
        let blocks = usize::try_from(expected.div_ceil(block as u64)).unwrap_or(0);
        Assembly {
            per: chunk_size(block) / block,
            size: 0,
            blocks: Vec::with_capacity(blocks),
            hex: Vec::with_capacity(blocks * 64),
            map: Vec::new(),
            mapped: 0,
            held: BTreeSet::new(),
            fresh: Vec::new(),
            seen: 0,
            last: None,
            short: None,
        }
    }

    fn add(&mut self, no: usize, read: ChunkRead) {
        let (start, n) = (no * self.per, read.hashes.len());
        if self.blocks.len() < start + n {
            self.blocks.resize(start + n, blake3::Hash::from_bytes([0; 32]));
            self.hex.resize((start + n) * 64, 0);
        }
        self.blocks[start..start + n].copy_from_slice(&read.hashes);
        hex_of_blocks(&read.hashes, &mut self.hex[start * 64..]);
        if read.fps.len() == n && n > 0 {
            if self.map.len() < start + n {
                self.map.resize(start + n, (0, blake3::Hash::from_bytes([0; 32])));
            }
            for (slot, (fp, h)) in self.map[start..].iter_mut().zip(read.fps.iter().zip(&read.hashes)) {
                *slot = (*fp, *h);
            }
            self.mapped += n;
        }
        self.fresh.extend(read.fresh.iter().map(|&p| read.hashes[p as usize]));
        self.held.extend(read.held);
        self.size += read.bytes;
        self.seen += 1;
        self.last = self.last.max(Some(no));
        if n < self.per {
            self.short = Some(no);
        }
    }

    /// Every chunk up to the last was handed back, and only the last was short.
    fn whole(&self) -> bool {
        self.seen == self.last.map_or(0, |l| l + 1) && (self.short.is_none() || self.short == self.last)
    }
}

/// What a backup worker hands back: a chunk's block hashes, or a sealed segment.
enum Work {
    Hashes { file: usize, no: usize, read: ChunkRead },
    Sealed(Vec<u8>, Vec<BlockRef>),
}

impl Vault {
    /// Opens the vault; creates the master key at `key_path` on first use
    /// (returns true then: tell the operator to keep a copy).
    pub fn open(
        regions: Vec<RegionStore>,
        key_path: &Path,
        settings: VaultSettings,
    ) -> Result<(Self, bool), VaultError> {
        if regions.is_empty() {
            return Err(VaultError::Invalid("the policy file names no backup region".into()));
        }
        let (master, created) = seldesk_domain::keyfile::load_or_create(key_path).map_err(|e| match e {
            seldesk_domain::keyfile::KeyFileError::Io { .. } => VaultError::Io(e.to_string()),
            other => VaultError::Crypto(other.to_string()),
        })?;
        let master = Key(master);
        for r in &regions {
            r.sweep_tmp();
        }
        Ok((Self { regions, master, settings, maps: None }, created))
    }

    /// Keeps change maps in `dir`: a backup then hashes again only the blocks
    /// whose fingerprint changed since this node's last backup of the file.
    pub fn with_change_maps(mut self, dir: PathBuf) -> Self {
        self.maps = Some(dir);
        self
    }

    pub fn regions(&self) -> &[RegionStore] {
        &self.regions
    }

    /// Writes an object to every region at once (each write ends in a sync).
    pub(crate) fn put_all(&self, name: &str, bytes: &[u8], until: i64) -> Result<(), VaultError> {
        std::thread::scope(|scope| {
            let writes: Vec<_> = self.regions.iter().map(|r| scope.spawn(move || r.put(name, bytes, until))).collect();
            writes
                .into_iter()
                .try_for_each(|w| w.join().map_err(|_| VaultError::Io(format!("writing {name} failed")))?)
        })
    }

    /// Each region's object names under `prefix` (one listing per region).
    fn names_by_region(&self, prefix: &str) -> Result<Vec<BTreeSet<String>>, VaultError> {
        self.regions.iter().map(|r| Ok(r.list(prefix)?.into_iter().collect())).collect()
    }

    /// Makes every region hold each of `names` (in order: a pack before its
    /// index), copying a verified copy from a region that has one.
    fn replicate(&self, names: &[String], until: i64) -> Result<(), VaultError> {
        for name in names {
            let lacking: Vec<&RegionStore> = self.regions.iter().filter(|r| !r.exists(name)).collect();
            if lacking.is_empty() {
                continue;
            }
            let bytes = self.get_verified(name)?;
            for r in lacking {
                r.put(name, &bytes, until)?;
            }
        }
        Ok(())
    }

    /// Fails, naming the region and the first missing object, unless every
    /// region holds every one of `names` (after copying what another region
    /// can supply).
    fn ensure_everywhere(&self, db: &str, names: &[String], until: i64) -> Result<(), VaultError> {
        let missing = |held: &[BTreeSet<String>]| -> Vec<(usize, String)> {
            names
                .iter()
                .flat_map(|n| {
                    held.iter().enumerate().filter(move |(_, h)| !h.contains(n)).map(move |(r, _)| (r, n.clone()))
                })
                .collect()
        };
        let held = |prefix: &str| self.names_by_region(prefix);
        let union = |a: Vec<BTreeSet<String>>, b: Vec<BTreeSet<String>>| -> Vec<BTreeSet<String>> {
            a.into_iter()
                .zip(b)
                .map(|(mut x, y)| {
                    x.extend(y);
                    x
                })
                .collect()
        };
        let now = union(held(&format!("indexes/{db}"))?, held(&format!("packs/{db}"))?);
        let gaps = missing(&now);
        if gaps.is_empty() {
            return Ok(());
        }
        let lacking: Vec<String> = gaps.iter().map(|(_, n)| n.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        // Packs first, so no region holds an index before its pack.
        let (packs, indexes): (Vec<String>, Vec<String>) = lacking.into_iter().partition(|n| n.starts_with("packs/"));
        let copied = self.replicate(&packs, until).and_then(|()| self.replicate(&indexes, until));
        let after = union(held(&format!("indexes/{db}"))?, held(&format!("packs/{db}"))?);
        match missing(&after).first() {
            None => Ok(()),
            Some((r, name)) => Err(VaultError::Missing(format!(
                "region {}: the snapshot was not written, because this region lacks {} object(s) it needs and no region could supply them (first: {name}{}); run `seldesk backup repair`, then back up again",
                self.regions[*r].region,
                missing(&after).len(),
                copied.err().map(|e| format!("; {e}")).unwrap_or_default()
            ))),
        }
    }

    /// Reads a content-addressed object from the first region with an intact copy.
    pub(crate) fn get_verified(&self, name: &str) -> Result<Vec<u8>, VaultError> {
        let id = name.rsplit('/').next().unwrap_or_default();
        let mut last = VaultError::Missing(name.to_string());
        for r in &self.regions {
            match r.get(name) {
                Ok(b) if content_hash(&b) == id => return Ok(b),
                Ok(_) => last = VaultError::Corrupt(format!("{}: {name} does not match its hash", r.region)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn unwrap_key(&self, db: &str, sealed: &[u8]) -> Result<Key, VaultError> {
        let plain = open(&self.master, sealed, format!("seldesk-vault-key:{db}").as_bytes())?;
        let k: [u8; 32] =
            plain.try_into().map_err(|_| VaultError::Corrupt(format!("key of {db} has a wrong length")))?;
        Ok(Key(k))
    }

    /// A database's key: from any region that holds a readable copy; made
    /// and stored in every region when `create` and none exists.
    pub(crate) fn db_key(&self, db: &str, create: bool) -> Result<Key, VaultError> {
        let name = key_name(db);
        for r in &self.regions {
            if let Ok(sealed) = r.get(&name)
                && let Ok(k) = self.unwrap_key(db, &sealed)
            {
                // A region that lost the key gets it back at once.
                for other in &self.regions {
                    if !other.exists(&name) {
                        other.put(&name, &sealed, 0)?;
                    }
                }
                return Ok(k);
            }
        }
        if !create {
            return Err(VaultError::NotFound(format!(
                "the key of database {db} is gone: its backups can no longer be read (destroyed with its last snapshot)"
            )));
        }
        let k = Key::random()?;
        let sealed = seal(&self.master, &k.0, format!("seldesk-vault-key:{db}").as_bytes())?;
        // Keys carry no lock: prune destroys one only when no snapshot needs it.
        self.put_all(&name, &sealed, 0)?;
        Ok(k)
    }

    /// Objects some snapshot needs: every manifest found in any region, its
    /// indexes, their packs and its database's key. Objects outside this set
    /// were left by a run that was interrupted before its manifest.
    fn needed(&self, all: &BTreeSet<String>) -> BTreeSet<String> {
        let read = |name: &str| self.regions.iter().find_map(|r| r.get(name).ok());
        // Every shipped stream segment: a point-in-time restore may need it.
        let mut needed: BTreeSet<String> = all.iter().filter(|n| n.starts_with("stream/")).cloned().collect();
        for name in all.iter().filter(|n| n.starts_with("snapshots/")) {
            needed.insert(name.clone());
            let Some((_, db, _)) = split(name) else { continue };
            needed.insert(key_name(db));
            let Some(manifest) = read(name).and_then(|b| decode::<Manifest>(&b).ok()) else { continue };
            for index in &manifest.indexes {
                needed.insert(index.clone());
                if let Some(idx) = read(index).and_then(|b| decode::<PackIndex>(&b).ok()) {
                    needed.insert(pack_name(db, &idx.pack));
                }
            }
        }
        needed
    }

    pub(crate) fn names(&self, prefix: &str) -> Result<BTreeSet<String>, VaultError> {
        let mut all = BTreeSet::new();
        for r in &self.regions {
            all.extend(r.list(prefix)?);
        }
        Ok(all)
    }

    /// Backs up `files` (snapshot path, file on disk, block size) of database `db`.
    ///
    /// A pipeline: one thread reads the files in chunks; workers (one per
    /// core) hash every block, keep those not yet stored in this epoch, and
    /// compress and seal them in segments; this thread gathers segments into
    /// packs and hands each pack and its index to one writer per region, so
    /// the regions are written while the work goes on. The manifest goes
    /// last, once every region holds every object it needs.
    pub fn backup(
        &self,
        db: &str,
        files: &[(String, PathBuf, usize)],
        now: OffsetDateTime,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<SnapshotInfo, VaultError> {
        self.backup_changed(db, files, None, now, progress)
    }

    /// [`Self::backup`], told which blocks of one file may have changed
    /// since a snapshot: when this node's change map of that file was made by
    /// that very snapshot's backup, only those blocks are read, and every
    /// other takes the hash the map recorded for its position, provided that
    /// block is stored in the epoch. The caller vouches for the list (a
    /// customer database's change log, `seldesk_tenants::changes`); with any
    /// other map, or none, the file is read whole.
    pub fn backup_changed(
        &self,
        db: &str,
        files: &[(String, PathBuf, usize)],
        changed: Option<Changed<'_>>,
        now: OffsetDateTime,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<SnapshotInfo, VaultError> {
        let key = self.db_key(db, true)?;
        let hash_key = key.hash_key();
        let now_ms = ms(now);
        let until = ms(now + self.settings.lock);
        let epoch = day_of(now_ms) / self.settings.epoch_days.max(1);

        // What this node's last backup of each file read, if made in this
        // epoch: loaded while the indexes are. A file with a map likely
        // changed little, so it will be read through the page cache: the
        // kernel is asked to start reading it as soon as its map is loaded
        // (sooner, its reads delayed the indexes' more than they gained:
        // 0.55–0.58 s against 0.48–0.52 s, docs/benchmarks.md).
        let lens: Vec<u64> = files.iter().map(|(_, p, _)| file_len(p)).collect();
        let fingerprint = self.maps.as_ref().map(|_| Fingerprinter::new(&key));
        let changed = changed.as_ref();
        let load_maps = || -> Vec<Option<PageMap>> {
            files
                .iter()
                .zip(&lens)
                .enumerate()
                .map(|(i, ((path, source, block), len))| {
                    let map = PageMap::load(self.maps.as_ref()?, &key, db, path)
                        .filter(|m| m.epoch == epoch && m.block as usize == (*block).max(512))?;
                    match changed.filter(|c| c.file == i && c.since == map.snapshot) {
                        Some(c) => read_pages_ahead(source, *len, *block, c.pages),
                        None => read_ahead(source, *len, *block),
                    }
                    Some(map)
                })
                .collect()
        };
        // Blocks already stored in this epoch, and which index locates each.
        let mut index_names: Vec<String> = Vec::new();
        let mut known: BlockMap<usize> = BlockMap::default();
        // What each region holds: an index (and its pack) reused from an
        // interrupted run may be in one region only, and a snapshot that
        // names it must not be written until every region has it.
        // A region that cannot even be listed holds nothing reusable; its
        // writer then reports what is wrong with it.
        let listed = |prefix: String| -> Vec<BTreeSet<String>> {
            self.regions.iter().map(|r| r.list(&prefix).map(|v| v.into_iter().collect()).unwrap_or_default()).collect()
        };
        let (held_indexes, held_packs) = (listed(format!("indexes/{db}")), listed(format!("packs/{db}")));
        let names: Vec<String> = held_indexes.iter().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        // A run killed while its manifest went to the regions left it in some
        // of them: its objects were verified in every region before, so the
        // manifest is copied to the others now.
        let manifests = listed(format!("snapshots/{db}"));
        let partial: Vec<String> = manifests
            .iter()
            .flatten()
            .filter(|m| manifests.iter().any(|held| !held.contains(*m)))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if let Err(e) = self.replicate(&partial, until) {
            tracing::warn!("a snapshot of {db} is not in every backup region and cannot be copied there: {e}");
        }
        let mut pack_of: HashMap<String, String> = HashMap::new();
        let (read, maps) = std::thread::scope(|scope| {
            let maps = scope.spawn(load_maps);
            let read = self.read_indexes(&names);
            (read, maps.join().unwrap_or_default())
        });
        // Sized at once: growing to 130,000 blocks rehashes it many times.
        let count = read
            .iter()
            .flatten()
            .filter(|i| i.epoch == epoch)
            .map(|i| i.segments.iter().map(|s| s.blocks.len()).sum::<usize>())
            .sum();
        known.reserve(count);
        for (name, idx) in names.into_iter().zip(read) {
            let Ok(idx) = idx else { continue };
            if idx.epoch != epoch {
                continue;
            }
            let pack = pack_name(db, &idx.pack);
            let everywhere = held_indexes.iter().zip(&held_packs).all(|(i, p)| i.contains(&name) && p.contains(&pack));
            if !everywhere && let Err(e) = self.replicate(&[pack.clone(), name.clone()], until) {
                // Its blocks are stored again by this run instead.
                tracing::warn!(
                    "{name} is not in every backup region and cannot be copied there ({e}); its blocks are stored anew"
                );
                continue;
            }
            pack_of.insert(name.clone(), pack);
            let i = index_names.len();
            index_names.push(name);
            for b in idx.segments.iter().flat_map(|s| &s.blocks) {
                known.entry(b.hash).or_insert(i);
            }
        }
        // The blocks of the file with a list of changes that are not read:
        // not listed, recorded in the map (its last block aside, which may
        // have been short), and stored in the epoch.
        let skips: Vec<Option<Vec<bool>>> = (0..files.len())
            .map(|i| {
                let c = changed.filter(|c| c.file == i)?;
                let map = maps.get(i)?.as_ref().filter(|m| m.snapshot == c.since)?;
                let block = files[i].2.max(512) as u64;
                let count = usize::try_from(lens[i].div_ceil(block)).ok()?;
                let mut skip: Vec<bool> =
                    (0..count).map(|b| b + 1 < map.entries.len() && known.contains_key(&map.entries[b].1)).collect();
                for p in c.pages.iter().filter_map(|p| usize::try_from(*p).ok()) {
                    if let Some(s) = p.checked_sub(1).and_then(|b| skip.get_mut(b)) {
                        *s = false;
                    }
                }
                // Most of the file to read: faster in one stream than in runs.
                (skip.iter().filter(|s| !**s).count() * 2 <= count).then_some(skip)
            })
            .collect();
        let total: u64 = lens.iter().sum();
        let done = AtomicU64::new(0);
        let (fingerprint, maps, skips) = (&fingerprint, &maps, &skips);
        let seen: Mutex<BlockSet> = Mutex::new(BlockSet::default());
        let (settings, known, aad) = (&self.settings, &known, format!("seldesk-vault-segment:{db}"));

        let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(4);
        // Shared by the workers, and dropped with the last of them: a reader
        // blocked on a full channel then sees the pipeline has stopped.
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        // Read buffers go back to the reader instead of being freed.
        let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(8);
        let pool_rx = Mutex::new(pool_rx);
        let (out_tx, out_rx) = sync_channel::<Result<Work, VaultError>>(8);
        // Mostly new blocks make a backup CPU-bound (every block is
        // compressed and sealed): then the files are read with direct I/O,
        // which spares the kernel's copy through the page cache, a seventh of
        // the CPU of a first backup (0.25–0.3 s less of 1.1–1.4 s for a 532 MB
        // database). Mostly known blocks make it bound by the disk: then the
        // kernel's read-ahead, with more readers, reads faster (0.42–0.47 s
        // against 0.50–0.66 s with direct reads). docs/benchmarks.md has the runs.
        let blocks: u64 = files.iter().zip(&lens).map(|((_, _, b), len)| len.div_ceil((*b).max(512) as u64)).sum();
        let direct = (known.len() as u64) * 2 < blocks && skips.iter().all(Option::is_none);
        let readers = if direct { READERS_DIRECT } else { READERS_CACHED };
        // What the readers read: file, first chunk, end chunk.
        let ranges: Vec<(usize, usize, Option<usize>)> = files
            .iter()
            .enumerate()
            .flat_map(|(i, (_, _, block))| ranges_of(lens[i], *block, readers).into_iter().map(move |(a, b)| (i, a, b)))
            .collect();
        // A backup of mostly known blocks stores little: in packs of a quarter
        // size, so most are written while the files are still being read,
        // not all at the end (40 ms of 0.6 s after a 1% update).
        let pack_target =
            if direct { settings.pack_size } else { (settings.pack_size / 4).clamp(1 << 20, settings.pack_size) };
        let next_range = std::sync::atomic::AtomicUsize::new(0);
        let read_range = |&(i, first, end): &(usize, usize, Option<usize>),
                          reader: usize,
                          chunk_tx: &std::sync::mpsc::SyncSender<Chunk>|
         -> Result<(), VaultError> {
            let (_, source, block) = &files[i];
            let block = (*block).max(512);
            let size = chunk_size(block);
            let cannot = |e: std::io::Error| VaultError::Io(format!("cannot read {}: {e}", source.display()));
            if let Some(skip) = &skips[i] {
                // Only the blocks not skipped, in runs; the rest of each
                // chunk's buffer is never looked at.
                let f = std::fs::File::open(source).map_err(cannot)?;
                // A read that misses would have the kernel read ahead 128 KiB
                // around it: for scattered pages, mostly pages not needed.
                let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::Random);
                for no in first.. {
                    let start = (no * size) as u64;
                    if end.is_some_and(|end| no >= end) || start >= lens[i] {
                        break;
                    }
                    let n = usize::try_from(lens[i] - start).unwrap_or(usize::MAX).min(size);
                    let mut data = pool_rx.lock().ok().and_then(|p| p.try_recv().ok()).unwrap_or_default();
                    let at = aligned_start(&mut data, size);
                    let (b0, count) = (no * size / block, n.div_ceil(block));
                    let mut j = 0;
                    while j < count {
                        if skip.get(b0 + j) == Some(&true) {
                            j += 1;
                            continue;
                        }
                        let run = j;
                        while j < count && skip.get(b0 + j) != Some(&true) {
                            j += 1;
                        }
                        let (from, to) = (run * block, (j * block).min(n));
                        std::os::unix::fs::FileExt::read_exact_at(
                            &f,
                            &mut data[at + from..at + to],
                            start + from as u64,
                        )
                        .map_err(cannot)?;
                    }
                    if chunk_tx.send(Chunk { file: i, no, reader, block, data, at, len: n }).is_err() {
                        return Err(VaultError::Io("the backup pipeline stopped".into()));
                    }
                }
                return Ok(());
            }
            let mut f = SourceFile::open(source, (first * size) as u64, direct).map_err(cannot)?;
            for no in first.. {
                if end.is_some_and(|end| no >= end) {
                    break;
                }
                let next = pool_rx.lock().ok().and_then(|p| p.try_recv().ok());
                let mut data = next.unwrap_or_default();
                let at = aligned_start(&mut data, size);
                let n = f.read_chunk(&mut data[at..at + size]).map_err(cannot)?;
                if n < size && end.is_some() {
                    // A file under a read transaction (or a copy) cannot shrink.
                    return Err(VaultError::Io(format!("{} shrank while it was read", source.display())));
                }
                if n == 0 {
                    break;
                }
                if chunk_tx.send(Chunk { file: i, no, reader, block, data, at, len: n }).is_err() {
                    return Err(VaultError::Io("the backup pipeline stopped".into()));
                }
                if n < size {
                    break;
                }
            }
            Ok(())
        };
        // Which index locates each new block: filled as packs are sealed,
        // while the workers go on, not after them.
        let first_new = index_names.len();
        let mut locate: BlockMap<usize> = BlockMap::default();
        // The manifest of what was read: built while the writers finish the
        // last pack, so that it is ready to go once they have.
        let index_names = &index_names;
        let manifest_of = |assemblies: Vec<Assembly>, new_indexes: &[String], added: u64, locate: &BlockMap<usize>| {
            // The indexes that locate every block of this snapshot.
            let mut indexes: BTreeSet<usize> = BTreeSet::new();
            let mut entries = Vec::with_capacity(files.len());
            let mut new_maps = Vec::with_capacity(files.len());
            for ((path, _, block), a) in files.iter().zip(assemblies) {
                if !a.whole() {
                    return Err(VaultError::Io(format!("{path}: a part of the file was not read")));
                }
                indexes.extend(a.held);
                for h in &a.fresh {
                    let i = locate.get(h).ok_or_else(|| VaultError::Corrupt(format!("block {h} was not stored")))?;
                    indexes.insert(*i);
                }
                let hash = file_hash_of_hex(&hash_key, a.size, &a.hex);
                if a.mapped == a.blocks.len() {
                    let block = (*block).max(512) as u32;
                    new_maps.push((path, PageMap { epoch, block, snapshot: String::new(), entries: a.map }));
                }
                entries.push(FileEntry { path: path.clone(), size: a.size, hash, blocks: a.blocks });
            }
            let mut manifest = Manifest {
                format: FORMAT,
                database: db.to_string(),
                taken_at: now_ms,
                epoch,
                block_size: files.first().map(|f| f.2 as u32).unwrap_or(4096),
                size: entries.iter().map(|e| e.size).sum(),
                files: entries,
                indexes: indexes
                    .into_iter()
                    .map(|i| index_names.get(i).unwrap_or_else(|| &new_indexes[i - first_new]).clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                added,
                mac: String::new(),
            };
            let bytes = sign_and_encode(&hash_key, &mut manifest)?;
            let id = content_hash(&bytes);
            Ok::<_, VaultError>((bytes, id, new_maps, manifest.size, added))
        };
        let result = std::thread::scope(|scope| {
            let reading: Vec<_> = (0..readers)
                .map(|reader| {
                    let (ranges, next_range, read_range, chunk_tx) =
                        (&ranges, &next_range, &read_range, chunk_tx.clone());
                    scope.spawn(move || -> Result<(), VaultError> {
                        while let Some(r) = ranges.get(next_range.fetch_add(1, Ordering::Relaxed)) {
                            read_range(r, reader, &chunk_tx)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            drop(chunk_tx);
            let workers = workers();
            for _ in 0..workers {
                let (chunk_rx, pool_tx, out_tx, seen, done, key, aad) =
                    (chunk_rx.clone(), pool_tx.clone(), out_tx.clone(), &seen, &done, &key, &aad);
                scope.spawn(move || {
                    // One compression context per worker, not one per segment.
                    let mut zc = match compressor() {
                        Ok(zc) => zc,
                        Err(e) => {
                            let _ = out_tx.send(Err(e));
                            return;
                        }
                    };
                    let mut seal_one = |data: &[u8], blocks: Vec<BlockRef>| -> Result<Work, VaultError> {
                        let sealed = zc
                            .compress(data)
                            .map_err(|e| VaultError::Io(format!("compression failed: {e}")))
                            .and_then(|c| seal(key, &c, aad.as_bytes()))?;
                        Ok(Work::Sealed(sealed, blocks))
                    };
                    // New blocks gather in one segment per reader. Each reader reads
                    // its own stretch of the file, and their chunks interleave: one
                    // segment for all would hold blocks from every stretch, and a
                    // restore, which writes the file stretch by stretch, would
                    // decompress it once for each (after a 1% update, 1,535
                    // segments decompressed instead of 1,227: docs/benchmarks.md).
                    let mut segs: Vec<RawSegment> =
                        (0..readers).map(|_| RawSegment { data: Vec::new(), blocks: Vec::new() }).collect();
                    let mut new: Vec<bool> = Vec::new();
                    loop {
                        let next = chunk_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok(chunk)) = next else { break };
                        let (bytes, block) = (chunk.bytes(), chunk.block);
                        // A block whose fingerprint is as the map recorded takes
                        // the recorded hash, if that block is stored in the epoch.
                        let first = chunk.no * chunk_size(block) / block;
                        // None if its loader failed: then every block is hashed.
                        let map = maps.get(chunk.file).and_then(Option::as_ref);
                        let skip = skips.get(chunk.file).and_then(Option::as_ref);
                        let count = bytes.len().div_ceil(block);
                        let (mut hashes, mut fps) = (Vec::with_capacity(count), Vec::new());
                        // Each block is looked up once: the index that holds it
                        // goes into `held`, or its position into `fresh`.
                        let (mut held, mut fresh) = (Vec::<usize>::new(), Vec::<u32>::new());
                        new.clear();
                        for (i, b) in bytes.chunks(block).enumerate() {
                            // Not read: as the map recorded, and stored (see `skips`).
                            if skip.is_some_and(|s| s.get(first + i) == Some(&true)) {
                                let recorded = map
                                    .and_then(|m| m.entries.get(first + i))
                                    .and_then(|(fp, h)| Some((*fp, *h, *known.get(h)?)));
                                let Some((fp, h, at)) = recorded else {
                                    // Never so (`skips` checked both): its bytes were not read.
                                    let _ = out_tx.send(Err(VaultError::Corrupt(format!(
                                        "block {} of file {} was not read and its hash is unknown",
                                        first + i,
                                        chunk.file
                                    ))));
                                    return;
                                };
                                if held.last() != Some(&at) {
                                    held.push(at);
                                }
                                new.push(false);
                                hashes.push(h);
                                fps.push(fp);
                                continue;
                            }
                            let fp = fingerprint.as_ref().map(|f| f.of(b));
                            let mapped = map.zip(fp).and_then(|(m, fp)| m.hash_of(first + i, fp));
                            let found = mapped.and_then(|h| known.get(&h).map(|at| (h, *at)));
                            let (h, at) = match found {
                                Some((h, at)) => (h, Some(at)),
                                None => {
                                    let h = blake3::keyed_hash(&hash_key, b);
                                    (h, known.get(&h).copied())
                                }
                            };
                            match at {
                                Some(at) if held.last() != Some(&at) => held.push(at),
                                Some(_) => {}
                                None => fresh.push(i as u32),
                            }
                            new.push(at.is_none());
                            hashes.push(h);
                            fps.extend(fp);
                        }
                        held.sort_unstable();
                        held.dedup();
                        // The blocks this run stores: not in the epoch, and not yet
                        // taken by another worker (one lock per chunk, not per block).
                        if !fresh.is_empty() {
                            let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            for (h, n) in hashes.iter().zip(new.iter_mut()) {
                                *n = *n && seen.insert(*h);
                            }
                        }
                        let seg = &mut segs[chunk.reader];
                        let sent = if seg.data.is_empty() && new.iter().all(|n| *n) {
                            // All new (all of a first backup): compressed where they
                            // were read, not copied into a segment first.
                            let piece = (settings.segment_size / block).max(1);
                            bytes.chunks(piece * block).zip(hashes.chunks(piece)).all(|(data, hs)| {
                                let blocks = data
                                    .chunks(block)
                                    .zip(hs)
                                    .enumerate()
                                    .map(|(i, (b, h))| BlockRef {
                                        hash: *h,
                                        start: (i * block) as u32,
                                        len: b.len() as u32,
                                    })
                                    .collect();
                                out_tx.send(seal_one(data, blocks)).is_ok()
                            })
                        } else {
                            let mut sent = true;
                            for ((b, h), _) in bytes.chunks(block).zip(&hashes).zip(&new).filter(|(_, n)| **n) {
                                seg.blocks.push(BlockRef {
                                    hash: *h,
                                    start: seg.data.len() as u32,
                                    len: b.len() as u32,
                                });
                                seg.data.extend_from_slice(b);
                                if seg.data.len() >= settings.segment_size {
                                    let work = seal_one(&seg.data, std::mem::take(&mut seg.blocks));
                                    seg.data.clear();
                                    if out_tx.send(work).is_err() {
                                        sent = false;
                                        break;
                                    }
                                }
                            }
                            sent
                        };
                        if !sent {
                            return;
                        }
                        let n = chunk.len as u64;
                        progress(done.fetch_add(n, Ordering::Relaxed) + n, total);
                        let _ = pool_tx.try_send(chunk.data);
                        let read = ChunkRead { hashes, fps, held, fresh, bytes: n };
                        let work = Work::Hashes { file: chunk.file, no: chunk.no, read };
                        if out_tx.send(Ok(work)).is_err() {
                            return;
                        }
                    }
                    for seg in segs.iter_mut().filter(|s| !s.blocks.is_empty()) {
                        if out_tx.send(seal_one(&seg.data, std::mem::take(&mut seg.blocks))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop((out_tx, pool_tx, chunk_rx));
            // One writer per region: a pack is written to every region at once.
            let writers: Vec<_> = self
                .regions
                .iter()
                .map(|r| {
                    let (tx, rx) = sync_channel::<(String, Arc<Vec<u8>>)>(2);
                    let handle = scope.spawn(move || -> Result<(), VaultError> {
                        for (name, bytes) in rx {
                            r.put(&name, &bytes, until)?;
                        }
                        Ok(())
                    });
                    (tx, handle)
                })
                .collect();
            let put_all = |name: String, bytes: Vec<u8>| -> bool {
                let bytes = Arc::new(bytes);
                writers.iter().all(|(tx, _)| tx.send((name.clone(), bytes.clone())).is_ok())
            };
            // This thread: pack, index, hand to the writers.
            let mut assemblies: Vec<Assembly> =
                files.iter().zip(&lens).map(|((_, _, b), len)| Assembly::new((*b).max(512), *len)).collect();
            let mut new_indexes: Vec<String> = Vec::new();
            let (mut pack, mut segments, mut added) = (Vec::<u8>::new(), Vec::<Segment>::new(), 0u64);
            let mut flush = |pack: &mut Vec<u8>, segments: &mut Vec<Segment>| -> Result<(), VaultError> {
                if segments.is_empty() {
                    return Ok(());
                }
                let id = content_hash(pack);
                added += pack.len() as u64;
                let idx =
                    PackIndex { database: db.to_string(), pack: id.clone(), epoch, segments: std::mem::take(segments) };
                let bytes = encode(&idx)?;
                let iname = index_name(db, &content_hash(&bytes));
                // In each region the pack lands before its index (writers keep the order).
                if !put_all(pack_name(db, &id), std::mem::take(pack)) || !put_all(iname.clone(), bytes) {
                    return Err(VaultError::Io("the backup writers stopped".into()));
                }
                for b in idx.segments.iter().flat_map(|s| &s.blocks) {
                    locate.insert(b.hash, first_new + new_indexes.len());
                }
                new_indexes.push(iname);
                Ok(())
            };
            let mut failure = None;
            for item in out_rx {
                let step = item.and_then(|work| match work {
                    Work::Hashes { file, no, read } => {
                        assemblies[file].add(no, read);
                        Ok(())
                    }
                    Work::Sealed(sealed, blocks) => {
                        let nonce = sealed.get(..12).and_then(|n| <[u8; 12]>::try_from(n).ok());
                        segments.push(Segment { offset: pack.len() as u64, len: sealed.len() as u32, blocks, nonce });
                        pack.extend_from_slice(&sealed);
                        if pack.len() >= pack_target { flush(&mut pack, &mut segments) } else { Ok(()) }
                    }
                });
                if let Err(e) = step {
                    failure = Some(e);
                    break;
                }
            }
            if failure.is_none()
                && let Err(e) = flush(&mut pack, &mut segments)
            {
                failure = Some(e);
            }
            let made = match failure {
                None => Some(manifest_of(assemblies, &new_indexes, added, &locate)),
                Some(_) => None,
            };
            let mut stopped = Vec::new();
            for (tx, handle) in writers {
                drop(tx);
                stopped.push(handle.join().map_err(|_| VaultError::Io("a backup writer failed".into())));
            }
            let read: Result<Result<(), VaultError>, VaultError> = reading
                .into_iter()
                .map(|r| r.join().map_err(|_| VaultError::Io("the backup reader failed".into())))
                .collect::<Result<Vec<_>, _>>()
                .map(|all| all.into_iter().collect());
            // The first cause, not the "stopped" it led to elsewhere: a writer's
            // error, then a worker's or this thread's, then the reader's.
            for r in stopped {
                r??;
            }
            if let Some(e) = failure {
                return Err(e);
            }
            read??;
            made.unwrap_or_else(|| Err(VaultError::Io("the backup stopped".into())))
        });
        let (bytes, id, mut new_maps, size, added) = result?;
        for (_, map) in &mut new_maps {
            map.snapshot = id.clone();
        }

        // The manifest goes last, to every region: only then does the snapshot
        // exist. The change maps are written meanwhile: they say only what
        // was read, and a hash from them serves only if its block is stored.
        // One that cannot be written costs the next backup a full hash, not
        // this backup its success.
        std::thread::scope(|scope| {
            if let Some(dir) = &self.maps {
                scope.spawn(|| {
                    for (path, map) in new_maps {
                        if let Err(e) = map.store(dir, &key, db, path) {
                            tracing::warn!("change map of {db} {path}: {e}");
                        }
                    }
                });
            }
            // Every index the manifest names, and the pack of each one
            // reused from an earlier run, in every region before any region
            // gets the manifest (new packs were written before their index
            // by the same region's writer).
            let m = decode::<Manifest>(&bytes).map_err(|e| VaultError::Corrupt(format!("the new manifest: {e}")))?;
            let mut needed: Vec<String> = m.indexes.clone();
            needed.extend(m.indexes.iter().filter_map(|i| pack_of.get(i).cloned()));
            self.ensure_everywhere(db, &needed, until)?;
            self.put_all(&snapshot_name(db, &id), &bytes, until)
        })?;
        Ok(SnapshotInfo {
            id,
            database: db.to_string(),
            taken_at: now,
            size,
            added,
            regions: self.regions.iter().map(|r| r.region.clone()).collect(),
            retain_until: Some(seldesk_store::from_millis(until)),
        })
    }

    /// Every snapshot (of one database, or all), newest first.
    pub fn list(&self, db: Option<&str>) -> Result<Vec<SnapshotInfo>, VaultError> {
        let prefix = match db {
            Some(d) => format!("snapshots/{d}"),
            None => "snapshots".into(),
        };
        let mut out = Vec::new();
        for name in self.names(&prefix)? {
            let Ok(bytes) = self.get_verified(&name) else { continue };
            let Ok(m) = decode::<Manifest>(&bytes) else { continue };
            let regions = self.regions.iter().filter(|r| r.exists(&name)).map(|r| r.region.clone()).collect();
            let until = self.regions.iter().find_map(|r| r.retain_until(&name));
            out.push(SnapshotInfo {
                id: name.rsplit('/').next().unwrap_or_default().to_string(),
                database: m.database,
                taken_at: seldesk_store::from_millis(m.taken_at),
                size: m.size,
                added: m.added,
                regions,
                retain_until: until.map(seldesk_store::from_millis),
            });
        }
        out.sort_by_key(|i| std::cmp::Reverse(i.taken_at));
        Ok(out)
    }

    /// Writes a small record that must outlive any tampering with the
    /// control plane (an anchor of the audit trail's head) to every region,
    /// write-once under its content hash: `anchors/<kind>/<hash>`. Fails
    /// unless every region holds it.
    pub fn put_anchor(&self, kind: &str, bytes: &[u8], now: OffsetDateTime) -> Result<String, VaultError> {
        let name = format!("anchors/{kind}/{}", content_hash(bytes));
        let until = ms(now + self.settings.lock);
        for r in &self.regions {
            r.put(&name, bytes, until)?;
        }
        Ok(name)
    }

    /// Every anchor of `kind` any region holds whose bytes match its name.
    pub fn anchors(&self, kind: &str) -> Result<Vec<Vec<u8>>, VaultError> {
        let mut out = Vec::new();
        for name in self.names(&format!("anchors/{kind}"))? {
            match self.get_verified(&name) {
                Ok(b) => out.push(b),
                Err(VaultError::Corrupt(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The manifest of a snapshot, by id or unique prefix (at least 8 characters).
    pub fn manifest(&self, id: &str) -> Result<(String, Manifest), VaultError> {
        if id.len() < 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(VaultError::Invalid(format!(
                "`{id}` is not a snapshot id (at least 8 hex characters; see `seldesk backup list`)"
            )));
        }
        let matches: Vec<String> = self
            .names("snapshots")?
            .into_iter()
            .filter(|n| n.rsplit('/').next().is_some_and(|s| s.starts_with(id)))
            .collect();
        match matches.as_slice() {
            [] => Err(VaultError::NotFound(format!("no snapshot {id}"))),
            [one] => {
                let bytes = self.get_verified(one)?;
                let m = decode(&bytes).map_err(|e| VaultError::Corrupt(format!("{one}: {e}")))?;
                Ok((one.rsplit('/').next().unwrap_or_default().to_string(), m))
            }
            _ => Err(VaultError::Invalid(format!("`{id}` matches {} snapshots: give more of the id", matches.len()))),
        }
    }

    /// Restores a snapshot's files into `out` (which must not exist yet).
    /// Files are cut into parts written in parallel (each worker decodes the
    /// segments its part needs). Every block is proven: by the manifest's
    /// MAC, its index and its segment's seal and nonce (format 3), else by
    /// hashing it again.
    pub fn restore(&self, id: &str, out: &Path, progress: &(dyn Fn(u64, u64) + Sync)) -> Result<Manifest, VaultError> {
        let (id, m) = self.manifest(id)?;
        self.restore_manifest(&id, &m, out, progress)?;
        Ok(m)
    }

    /// [`Self::restore`] of a snapshot whose manifest the caller has read.
    pub fn restore_manifest(
        &self,
        id: &str,
        m: &Manifest,
        out: &Path,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<(), VaultError> {
        let key = self.db_key(&m.database, false)?;
        let hash_key = key.hash_key();
        let authentic = m.format >= 3;
        // The manifest's MAC and its files' hashes are checked on a thread of
        // their own while the indexes are read and their blocks located
        // (14 and 8 ms of a 532 MB database's restore, on the path of every
        // restore), and before any block is written.
        let located = std::thread::scope(|scope| {
            let check = scope.spawn(|| -> Result<(), VaultError> {
                if authentic && manifest_mac(&hash_key, m)? != m.mac {
                    return Err(VaultError::Corrupt(format!(
                        "snapshot {id}: its manifest is not authentic (changed, or not made with this database's key)"
                    )));
                }
                if m.format >= 2 {
                    for f in &m.files {
                        if file_hash(&hash_key, f.size, &f.blocks) != f.hash {
                            return Err(VaultError::Corrupt(format!(
                                "{}: its block list does not match its hash",
                                f.path
                            )));
                        }
                    }
                }
                Ok(())
            });
            let located = self.locate(m);
            check.join().map_err(|_| VaultError::Io("the restore's check failed".into()))??;
            located
        });
        let (segments, locate, packs) = located?;
        let aad = format!("seldesk-vault-segment:{}", m.database);
        std::fs::create_dir_all(out).map_err(|e| VaultError::Io(format!("cannot create {}: {e}", out.display())))?;
        // Every file created at its size, and cut into parts of about this many bytes.
        let part_size = self.settings.restore_part.max(1);
        let mut targets = Vec::new();
        let mut parts: Vec<(usize, u64, std::ops::Range<usize>)> = Vec::new();
        // Where each block of each file is: (segment number, start, length).
        let mut places: Vec<Vec<(usize, u32, u32)>> = Vec::with_capacity(m.files.len());
        for (i, f) in m.files.iter().enumerate() {
            let known = f.path == "db.sqlite" || f.path == crate::service::PG_DUMP_FILE || f.path.starts_with("files/");
            if f.path.contains("..") || f.path.starts_with('/') || !known {
                return Err(VaultError::Corrupt(format!(
                    "a snapshot names a file outside the database folder: {}",
                    f.path
                )));
            }
            let target = out.join(&f.path);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| VaultError::Io(format!("cannot create {}: {e}", dir.display())))?;
            }
            let file = std::fs::File::create(&target)
                .and_then(|h| h.set_len(f.size).map(|()| h))
                .map_err(|e| VaultError::Io(format!("cannot write {}: {e}", target.display())))?;
            targets.push(Target { path: target, file, direct: None });
            let (mut offset, mut start, mut bytes) = (0u64, 0usize, 0u64);
            let mut here = Vec::with_capacity(f.blocks.len());
            for (j, h) in f.blocks.iter().enumerate() {
                let &(n, from, len) = locate
                    .get(h)
                    .ok_or_else(|| VaultError::Corrupt(format!("block {h} is in no index of the snapshot")))?;
                here.push((n, from, len));
                bytes += u64::from(len);
                if bytes >= part_size || j + 1 == f.blocks.len() {
                    parts.push((i, offset, start..j + 1));
                    (offset, start, bytes) = (offset + bytes, j + 1, 0);
                }
            }
            if offset != f.size {
                return Err(VaultError::Corrupt(format!("{}: its blocks do not add up to its size", f.path)));
            }
            places.push(here);
        }
        for (i, t) in targets.iter_mut().enumerate() {
            // Direct writes need every part to start on an aligned offset
            // (a database's pages do; an attachment's blocks may not).
            if parts.iter().filter(|p| p.0 == i).all(|p| p.1 % ALIGN as u64 == 0) {
                t.direct = open_direct(&t.file, &t.path, m.files[i].size);
            }
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done = AtomicU64::new(0);
        let failure: std::sync::Mutex<Option<VaultError>> = std::sync::Mutex::new(None);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let workers = workers();
        // Written parts go to disk while the work goes on, so the final sync
        // has little left to do.
        let (sync_tx, sync_rx) = sync_channel::<usize>(64);
        // The packs in the order the parts first need them, with that part,
        // and the bytes of each that this snapshot uses (a pack from early in
        // the epoch may hold many segments that later changes replaced).
        let mut first_use: Vec<(usize, usize)> = Vec::new();
        let mut used: Vec<Vec<(u64, u64)>> = vec![Vec::new(); packs.len()];
        let mut seen = vec![false; segments.len()];
        for (k, (file, _, range)) in parts.iter().enumerate() {
            for &(n, _, _) in &places[*file][range.clone()] {
                if std::mem::replace(&mut seen[n], true) {
                    continue;
                }
                let (pack, seg, _) = &segments[n];
                if used[*pack].is_empty() {
                    first_use.push((*pack, k));
                }
                used[*pack].push((seg.offset, seg.offset + u64::from(seg.len)));
            }
        }
        for ranges in &mut used {
            ranges.sort_unstable();
            ranges.dedup_by(|next, prev| {
                let touching = next.0 <= prev.1;
                if touching {
                    prev.1 = prev.1.max(next.1);
                }
                touching
            });
        }
        std::thread::scope(|scope| {
            let targets = &targets;
            // What a restore needs of local packs is read through ahead of the
            // workers, in large sequential reads: a worker then finds its
            // segments in the page cache instead of waiting on one small read
            // after another (docs/benchmarks.md). No further ahead than a few
            // parts, so that a large restore does not push what it read out
            // of the cache before it is used.
            const AHEAD: usize = 4;
            let (stop_ref, packs_ref, next_ref, used) = (&stop, &packs, &next, &used);
            scope.spawn(move || {
                let mut buf = vec![0u8; 2 << 20];
                for (p, part) in first_use {
                    while part > next_ref.load(Ordering::Relaxed) + AHEAD {
                        if stop_ref.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    if stop_ref.load(Ordering::Relaxed) {
                        return;
                    }
                    let _ = self.regions.iter().any(|r| r.warm(&packs_ref[p], &used[p], &mut buf));
                }
            });
            scope.spawn(move || {
                while let Ok(first) = sync_rx.recv() {
                    let mut files = BTreeSet::from([first]);
                    files.extend(sync_rx.try_iter());
                    for f in files {
                        // Only early: the final sync reports any failure.
                        let _ = targets[f].file.sync_data();
                    }
                }
            });
            let (stop, parts, next, done, failure) = (&stop, &parts, &next, &done, &failure);
            let (places, segments, key, aad) = (&places, &segments, &key, &aad);
            let packs = &packs;
            for _ in 0..workers {
                let sync_tx = sync_tx.clone();
                scope.spawn(move || {
                    // Blocks changed since the base interleave a newer segment
                    // with the base's: keep the last few segments, newest first.
                    let mut cache: Vec<(usize, Vec<u8>)> = Vec::with_capacity(8);
                    let mut stage = Vec::new();
                    let mut aligned = AlignedStage::default();
                    let mut zd = match zstd::bulk::Decompressor::new() {
                        Ok(zd) => zd,
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            let e = VaultError::Io(format!("cannot start decompressing: {e}"));
                            failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(e);
                            return;
                        }
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let Some((file, offset, range)) = parts.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        let target = &targets[*file];
                        let mut out = PartWriter {
                            file: &target.file,
                            direct: target.direct.as_ref(),
                            path: &target.path,
                            at: *offset,
                            stage: std::mem::take(&mut stage),
                            stage_at: *offset,
                            aligned: std::mem::take(&mut aligned),
                        };
                        let mut written = (|| -> Result<(), VaultError> {
                            // Consecutive blocks lying side by side in the newest cached
                            // segment go to the writer as one run.
                            let mut run: Option<(usize, usize)> = None;
                            let flush = |cache: &[(usize, Vec<u8>)],
                                         run: &mut Option<(usize, usize)>,
                                         out: &mut PartWriter<'_>| {
                                let Some((from, to)) = run.take() else { return Ok(()) };
                                out.put(&cache[0].1[from..to])?;
                                let n = (to - from) as u64;
                                progress(done.fetch_add(n, Ordering::Relaxed) + n, m.size);
                                Ok::<_, VaultError>(())
                            };
                            let blocks = &m.files[*file].blocks[range.clone()];
                            for (h, &(n, start, len)) in blocks.iter().zip(&places[*file][range.clone()]) {
                                let (start, end) = (start as usize, start as usize + len as usize);
                                let same = cache.first().is_some_and(|(c, _)| *c == n);
                                if !same || run.is_some_and(|(_, to)| to != start) {
                                    flush(&cache, &mut run, &mut out)?;
                                }
                                match cache.iter().position(|(c, _)| *c == n) {
                                    Some(0) => {}
                                    Some(i) => {
                                        let hit = cache.remove(i);
                                        cache.insert(0, hit);
                                    }
                                    None => {
                                        let (pack, seg, plain) = &segments[n];
                                        let plain = self.read_segment(
                                            &packs[*pack],
                                            seg,
                                            *plain,
                                            key,
                                            aad.as_bytes(),
                                            &mut zd,
                                        )?;
                                        cache.insert(0, (n, plain));
                                        cache.truncate(8);
                                    }
                                }
                                let bytes = cache[0].1.get(start..end).ok_or_else(|| {
                                    VaultError::Corrupt(format!("block {h} lies outside its segment"))
                                })?;
                                // A block of an index from before format 3 has no nonce to vouch for it.
                                let vouched = authentic && segments[n].1.nonce.is_some();
                                if !vouched && blake3::keyed_hash(&hash_key, bytes) != *h {
                                    return Err(VaultError::Corrupt(format!("block {h} does not match its hash")));
                                }
                                run = Some((run.map_or(start, |(from, _)| from), end));
                            }
                            flush(&cache, &mut run, &mut out)?;
                            Ok(())
                        })();
                        written = written.and_then(|()| out.drain());
                        (stage, aligned) = (out.stage, out.aligned);
                        // Direct writes are on the disk already.
                        if written.is_ok() && target.direct.is_none() {
                            let _ = sync_tx.try_send(*file);
                        }
                        if let Err(e) = written {
                            stop.store(true, Ordering::Relaxed);
                            failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(e);
                        }
                    }
                });
            }
            drop(sync_tx);
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            return Err(e);
        }
        for (f, Target { path: target, file: handle, direct }) in m.files.iter().zip(&targets) {
            let cannot = |e: std::io::Error| VaultError::Io(format!("cannot write {}: {e}", target.display()));
            // The last block went out padded to whole sectors.
            if direct.is_some() {
                handle.set_len(f.size).map_err(cannot)?;
            }
            handle.sync_all().map_err(cannot)?;
            // Format 1 hashed the whole file's bytes: read them back once more.
            if m.format < 2 {
                let mut whole = blake3::Hasher::new_keyed(&hash_key);
                let mut r = std::fs::File::open(target)
                    .map_err(|e| VaultError::Io(format!("cannot read {}: {e}", target.display())))?;
                std::io::copy(&mut r, &mut whole)
                    .map_err(|e| VaultError::Io(format!("cannot read {}: {e}", target.display())))?;
                if whole.finalize().to_hex().as_str() != f.hash {
                    return Err(VaultError::Corrupt(format!("{} does not match the snapshot's hash", f.path)));
                }
            }
        }
        Ok(())
    }

    /// Where a snapshot's blocks are: its segments as (pack, segment,
    /// plaintext length), each block's (segment number, start, length), and
    /// the packs' object names.
    fn locate(&self, m: &Manifest) -> Result<Located, VaultError> {
        let indexes = self.indexes(&m.indexes)?;
        // Sized once: grown block by block, the map took 26 ms of a 532 MB
        // database's restore.
        let blocks = indexes.iter().flat_map(|i| &i.segments).map(|s| s.blocks.len()).sum();
        let mut segments = Vec::new();
        let mut locate: BlockMap<(usize, u32, u32)> = BlockMap::with_capacity_and_hasher(blocks, Default::default());
        let mut packs = Vec::with_capacity(indexes.len());
        for idx in indexes {
            let pack = packs.len();
            packs.push(pack_name(&m.database, &idx.pack));
            for mut seg in idx.segments {
                let n = segments.len();
                let mut plain = 0;
                for b in std::mem::take(&mut seg.blocks) {
                    plain = plain.max(b.start as usize + b.len as usize);
                    locate.insert(b.hash, (n, b.start, b.len));
                }
                segments.push((pack, seg, plain));
            }
        }
        Ok((segments, locate, packs))
    }

    /// Reads and parses indexes on every core (a large snapshot has hundreds).
    fn indexes(&self, names: &[String]) -> Result<Vec<PackIndex>, VaultError> {
        self.read_indexes(names).into_iter().collect()
    }

    /// Each index's own result, in order (a backup skips unreadable ones).
    fn read_indexes(&self, names: &[String]) -> Vec<Result<PackIndex, VaultError>> {
        let per = names.len().div_ceil(INDEX_READERS).max(1);
        std::thread::scope(|scope| {
            let parts: Vec<_> = names
                .chunks(per)
                .map(|some| {
                    scope.spawn(move || {
                        some.iter()
                            .map(|iname| {
                                let bytes = self.get_verified(iname)?;
                                decode::<PackIndex>(&bytes).map_err(|e| VaultError::Corrupt(format!("{iname}: {e}")))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut all = Vec::with_capacity(names.len());
            for p in parts {
                match p.join() {
                    Ok(some) => all.extend(some),
                    Err(_) => return vec![Err(VaultError::Io("reading the indexes failed".into()))],
                }
            }
            all
        })
    }

    /// A segment's plaintext, from the first region with an intact copy.
    fn read_segment(
        &self,
        pack: &str,
        seg: &Segment,
        plain_len: usize,
        key: &Key,
        aad: &[u8],
        zd: &mut zstd::bulk::Decompressor<'_>,
    ) -> Result<Vec<u8>, VaultError> {
        let mut last = VaultError::Missing(pack.to_string());
        for r in &self.regions {
            let mut sealed = match r.get_range(pack, seg.offset, seg.len as usize) {
                Ok(s) => s,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            if !seg.holds(&sealed) {
                let at = seg.offset;
                last = VaultError::Corrupt(format!(
                    "{}: {pack}: the segment at {at} is not the one its index names",
                    r.region
                ));
                continue;
            }
            // Decompressed into a buffer of the known size at once (no regrowing).
            match open_in_place(key, &mut sealed, aad)
                .and_then(|c| zd.decompress(c, plain_len).map_err(|e| VaultError::Corrupt(format!("{pack}: {e}"))))
            {
                Ok(plain) => return Ok(plain),
                Err(e) => last = VaultError::Corrupt(format!("{}: {pack}: {e}", r.region)),
            }
        }
        Err(last)
    }

    /// Verifies every region: manifests, indexes and packs present and named
    /// by their hash, keys readable; with `read_data`, every pack's bytes and
    /// every segment's seal. Returns what is wrong (empty: all good).
    pub fn check(
        &self,
        read_data: bool,
        progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<Vec<CheckProblem>, VaultError> {
        let mut problems = Vec::new();
        let all = self.names("")?;
        let needed = self.needed(&all);
        let total = all.len() as u64 * self.regions.len() as u64;
        let mut n = 0;
        for r in &self.regions {
            let here: BTreeSet<String> = r.list("")?.into_iter().collect();
            // Each database's key, unwrapped once per region, not per object.
            let mut keys: HashMap<String, Option<Key>> = HashMap::new();
            let mut key_of = |db: &str| {
                keys.entry(db.to_string())
                    .or_insert_with(|| r.get(&key_name(db)).and_then(|b| self.unwrap_key(db, &b)).ok())
                    .clone()
            };
            let mut p = |object: &str, what: String| {
                problems.push(CheckProblem { region: r.region.clone(), object: object.to_string(), problem: what })
            };
            for name in &all {
                n += 1;
                progress(n, total);
                if !here.contains(name) {
                    // What an interrupted run left in some regions belongs to no
                    // snapshot: not a problem (the next run reuses or prune removes it).
                    if needed.contains(name) {
                        p(name, "missing (another region has it; `seldesk backup repair` copies it back)".into());
                    }
                    continue;
                }
                let Some((kind, db, id)) = split(name) else { continue };
                if kind == "keys" {
                    match r.get(name).and_then(|b| self.unwrap_key(db, &b)) {
                        Ok(_) => {}
                        Err(e) => p(name, format!("unreadable key: {e}")),
                    }
                    continue;
                }
                let check_bytes = !matches!(kind, "packs" | "stream") || read_data;
                if !check_bytes {
                    continue;
                }
                let bytes = match r.get(name) {
                    Ok(b) => b,
                    Err(e) => {
                        p(name, e.to_string());
                        continue;
                    }
                };
                if content_hash(&bytes) != id {
                    p(name, "changed: its bytes no longer match its hash".into());
                    continue;
                }
                match kind {
                    "snapshots" => match decode::<Manifest>(&bytes) {
                        Ok(m) => {
                            for i in &m.indexes {
                                if !here.contains(i) {
                                    p(name, format!("needs {i}, which is missing"));
                                }
                            }
                            if !here.contains(&key_name(db)) {
                                p(name, "its database key is missing".into());
                            } else if m.format >= 3
                                && let Some(key) = key_of(db)
                                && manifest_mac(&key.hash_key(), &m).ok().as_ref() != Some(&m.mac)
                            {
                                p(name, "not authentic: its MAC does not match under its database's key".into());
                            }
                        }
                        Err(e) => p(name, format!("unreadable manifest: {e}")),
                    },
                    "indexes" => match decode::<PackIndex>(&bytes) {
                        Ok(idx) => {
                            let pack = pack_name(db, &idx.pack);
                            let end = idx.segments.iter().map(|s| s.offset + u64::from(s.len)).max().unwrap_or(0);
                            match r.size(&pack) {
                                None => p(name, format!("its pack {pack} is missing")),
                                Some(sz) if sz < end => p(&pack, "shorter than its index says".into()),
                                _ => {}
                            }
                            if read_data && let Some(key) = key_of(db) {
                                let aad = format!("seldesk-vault-segment:{db}");
                                for s in &idx.segments {
                                    let ok = r.get_range(&pack, s.offset, s.len as usize).and_then(|sealed| {
                                        if !s.holds(&sealed) {
                                            return Err(VaultError::Corrupt("not the segment its index names".into()));
                                        }
                                        open(&key, &sealed, aad.as_bytes())
                                    });
                                    if let Err(e) = ok {
                                        p(&pack, format!("segment at {} unreadable: {e}", s.offset));
                                        break;
                                    }
                                }
                            }
                        }
                        Err(e) => p(name, format!("unreadable index: {e}")),
                    },
                    "stream" if read_data => match key_of(db) {
                        Some(key) => {
                            if let Err(e) = open(&key, &bytes, crate::stream::stream_aad(db).as_bytes()) {
                                p(name, format!("stream segment unreadable: {e}"));
                            }
                        }
                        None => p(name, "stream segment of a database whose key is missing".into()),
                    },
                    _ => {}
                }
            }
        }
        Ok(problems)
    }

    /// Copies objects a region lacks (or holds damaged) from a region with a
    /// good copy; damaged copies are moved aside first.
    pub fn repair(&self) -> Result<RepairReport, VaultError> {
        let mut report = RepairReport::default();
        for name in self.names("")? {
            let Some((kind, db, id)) = split(&name) else { continue };
            let good = |r: &RegionStore| -> Option<Vec<u8>> {
                let b = r.get(&name).ok()?;
                let ok = if kind == "keys" { self.unwrap_key(db, &b).is_ok() } else { content_hash(&b) == id };
                ok.then_some(b)
            };
            let Some((source, bytes)) = self.regions.iter().find_map(|r| good(r).map(|b| (r, b))) else {
                continue; // no good copy anywhere: check reports it
            };
            let until = source.retain_until(&name).unwrap_or(0);
            for r in &self.regions {
                if r.exists(&name) {
                    if good(r).is_some() {
                        continue;
                    }
                    r.quarantine(&name)?;
                    report.quarantined.push(format!("{}: {name}", r.region));
                }
                r.put(&name, &bytes, until)?;
                report.copied.push(format!("{}: {name}", r.region));
            }
        }
        Ok(report)
    }

    /// Removes snapshots past retention, then the packs, indexes and keys no
    /// remaining snapshot needs (each once its lock has ended). `live` are
    /// the databases that still exist.
    pub fn prune(
        &self,
        now: OffsetDateTime,
        rules: &Retention,
        live: &BTreeSet<String>,
    ) -> Result<PruneReport, VaultError> {
        let now_ms = ms(now);
        let mut report = PruneReport::default();
        let mut dbs: BTreeSet<String> = BTreeSet::new();
        for name in self.names("")? {
            if let Some((_, db, _)) = split(&name) {
                dbs.insert(db.to_string());
            }
        }
        for db in dbs {
            let mut snaps: Vec<(String, Manifest)> = Vec::new();
            for name in self.names(&format!("snapshots/{db}"))? {
                if let Ok(b) = self.get_verified(&name)
                    && let Ok(m) = decode::<Manifest>(&b)
                {
                    snaps.push((name, m));
                }
            }
            let keep = select(&snaps, now, rules, live.contains(&db));
            let mut remaining = Vec::new();
            for (name, m) in snaps {
                if keep.contains(&name) {
                    remaining.push(m);
                    continue;
                }
                match self.delete_all(&name, now_ms) {
                    Ok(()) => report.snapshots_removed += 1,
                    Err(VaultError::Locked { .. }) => {
                        report.waiting_for_lock += 1;
                        remaining.push(m);
                    }
                    Err(e) => return Err(e),
                }
            }
            let needed_indexes: BTreeSet<&String> = remaining.iter().flat_map(|m| m.indexes.iter()).collect();
            let mut needed_packs = BTreeSet::new();
            for i in &needed_indexes {
                if let Ok(b) = self.get_verified(i)
                    && let Ok(idx) = decode::<PackIndex>(&b)
                {
                    needed_packs.insert(pack_name(&db, &idx.pack));
                }
            }
            for name in self.names(&format!("indexes/{db}"))? {
                if !needed_indexes.contains(&name) {
                    match self.delete_all(&name, now_ms) {
                        Ok(()) | Err(VaultError::Locked { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            for name in self.names(&format!("packs/{db}"))? {
                if !needed_packs.contains(&name) {
                    match self.delete_all(&name, now_ms) {
                        Ok(()) => report.packs_removed += 1,
                        Err(VaultError::Locked { .. }) => report.waiting_for_lock += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
            let leftovers = self.names(&format!("packs/{db}"))?.len() + self.names(&format!("indexes/{db}"))?.len();
            if remaining.is_empty()
                && leftovers == 0
                && !live.contains(&db)
                && self.regions.iter().any(|r| r.exists(&key_name(&db)))
            {
                self.delete_all(&key_name(&db), now_ms)?;
                // The change maps hold fingerprints of its pages: they go too.
                if let Some(folder) = self.maps.as_ref().and_then(|dir| PageMap::folder(dir, &db)) {
                    let _ = std::fs::remove_dir_all(folder);
                }
                report.keys_destroyed.push(db.clone());
            }
        }
        Ok(report)
    }

    pub(crate) fn delete_all(&self, name: &str, now_ms: i64) -> Result<(), VaultError> {
        for r in &self.regions {
            if let Some(until) = r.retain_until(name)
                && now_ms < until
            {
                return Err(VaultError::Locked { object: format!("{}: {name}", r.region), until_ms: until });
            }
        }
        for r in &self.regions {
            r.delete(name, now_ms)?;
        }
        Ok(())
    }
}

/// A calendar bucket (day, ISO week or month) of a time.
type Bucket = dyn Fn(OffsetDateTime) -> (i32, u32);

/// Which snapshots retention keeps: the newest of each day within
/// `keep_daily` days, of each ISO week within `keep_weekly` weeks, of each
/// month within `keep_monthly` months, nothing older than `max_age`; and the
/// newest of a live database within `max_age`, however old. This is what
/// keeps BAK-2: nothing older than the policy's cap is ever kept.
fn select(snaps: &[(String, Manifest)], now: OffsetDateTime, rules: &Retention, live: bool) -> BTreeSet<String> {
    let now_ms = ms(now);
    let max_ms = rules.max_age.whole_milliseconds() as i64;
    let mut sorted: Vec<&(String, Manifest)> = snaps.iter().filter(|(_, m)| now_ms - m.taken_at <= max_ms).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.1.taken_at));
    let mut keep = BTreeSet::new();
    if live && let Some((n, _)) = sorted.first() {
        keep.insert(n.clone());
    }
    let day = |t: OffsetDateTime| (t.year(), u32::from(t.ordinal()));
    let week = |t: OffsetDateTime| {
        let (y, w, _) = t.to_iso_week_date();
        (y, u32::from(w))
    };
    let month = |t: OffsetDateTime| (t.year(), u32::from(u8::from(t.month())));
    let windows: [(i64, &Bucket); 3] = [
        (i64::from(rules.keep_daily) * 86_400_000, &day),
        (i64::from(rules.keep_weekly) * 7 * 86_400_000, &week),
        (i64::from(rules.keep_monthly) * 31 * 86_400_000, &month),
    ];
    for (window, bucket) in windows {
        let mut seen = BTreeSet::new();
        for (name, m) in &sorted {
            if now_ms - m.taken_at > window {
                continue;
            }
            // Newest first: the first snapshot of each bucket is kept.
            if seen.insert(bucket(seldesk_store::from_millis(m.taken_at))) {
                keep.insert(name.clone());
            }
        }
    }
    keep
}

/// Segments are compressed with zstd's fastest regular level, with a match
/// table of 4,096 entries (`hashLog` 12) instead of the level's 8,192: the
/// smaller table stays in the core's cache, and a customer database
/// compressed 8–10% faster at the same ratio (docs/benchmarks.md).
///
/// And with `targetLength` 4: the match finder steps over more of the input
/// where it finds no match. Compression is about two thirds of a first
/// backup's CPU, and a page of rows is many short matches; on the
/// benchmark's database a core compresses 15% faster (450 against 392 MB/s)
/// and decompresses 20% faster (1,304 against 1,090 MB/s), to 28% of the
/// size instead of 22%, still well under what restic stores of the same
/// file. Readers need no setting: both only change which matches are found.
fn compressor() -> Result<zstd::bulk::Compressor<'static>, VaultError> {
    let cannot = |e: std::io::Error| VaultError::Io(format!("cannot start compressing: {e}"));
    let mut zc = zstd::bulk::Compressor::new(1).map_err(cannot)?;
    zc.set_parameter(zstd::zstd_safe::CParameter::HashLog(12)).map_err(cannot)?;
    zc.set_parameter(zstd::zstd_safe::CParameter::TargetLength(4)).map_err(cannot)?;
    Ok(zc)
}

/// Writes all of `buf` at `offset` (parts of a file are written by several threads).
#[cfg(unix)]
fn write_at(file: &std::fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn write_at(file: &std::fs::File, mut buf: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// A file a restore writes.
struct Target {
    path: PathBuf,
    file: std::fs::File,
    /// The same file opened for direct writes, where the file system takes them.
    direct: Option<std::fs::File>,
}

/// Opens `file` (at its full `size`) for direct writes, its blocks
/// allocated first so that the workers' writes to different parts need not
/// wait for each other (a write into a hole takes the file's lock alone).
/// Through the page cache, the kernel's copy into newly allocated pages and
/// their write-back took more than half of a restore's time on a machine
/// whose disk wrote 2.6 GB/s direct but 330 MB/s through the cache
/// (docs/benchmarks.md). None where direct I/O is refused: a probe write of
/// the first block (written again by its part) finds out before any worker.
#[cfg(target_os = "linux")]
fn open_direct(file: &std::fs::File, path: &Path, size: u64) -> Option<std::fs::File> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    if size < AlignedStage::SIZE as u64 {
        return None;
    }
    let direct = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path).ok()?;
    let _ = rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size);
    let mut probe = Vec::new();
    let at = aligned_start(&mut probe, ALIGN);
    direct.write_all_at(&probe[at..at + ALIGN], 0).ok()?;
    Some(direct)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_file: &std::fs::File, _path: &Path, _size: u64) -> Option<std::fs::File> {
    None
}

/// A buffer aligned for direct writes, reused from part to part (allocated
/// on first use).
#[derive(Default)]
struct AlignedStage {
    buf: Vec<u8>,
    /// Bytes gathered at the start of the window.
    len: usize,
}

impl AlignedStage {
    /// Written a MiB at a time: 2.6 GB/s from two writers, 1.5 at 256 KiB.
    const SIZE: usize = 1 << 20;

    fn window(&mut self) -> &mut [u8] {
        let at = aligned_start(&mut self.buf, Self::SIZE);
        &mut self.buf[at..at + Self::SIZE]
    }
}

/// Writes the runs of a restored part. Through the page cache: long runs
/// straight from their segment, short ones gathered and written 512 KiB at
/// a time. After scattered changes a snapshot alternates between segments
/// every few blocks, and a write per run (25,520 for the benchmark's
/// database, with the workers contending for the file's lock) cost more
/// than copying them together (docs/benchmarks.md). Direct: every run is
/// gathered in an aligned buffer, written a MiB at a time.
struct PartWriter<'a> {
    file: &'a std::fs::File,
    direct: Option<&'a std::fs::File>,
    path: &'a Path,
    /// Where the next run goes.
    at: u64,
    stage: Vec<u8>,
    /// Where `stage` (or `aligned`) goes.
    stage_at: u64,
    aligned: AlignedStage,
}

impl PartWriter<'_> {
    /// Runs at least this long are written where they lie.
    const DIRECT: usize = 128 << 10;
    /// Gathered runs are written once they add up to this.
    const STAGE: usize = 512 << 10;

    fn put(&mut self, bytes: &[u8]) -> Result<(), VaultError> {
        if let Some(direct) = self.direct {
            let mut rest = bytes;
            while !rest.is_empty() {
                let len = self.aligned.len;
                let take = rest.len().min(AlignedStage::SIZE - len);
                self.aligned.window()[len..len + take].copy_from_slice(&rest[..take]);
                self.aligned.len += take;
                rest = &rest[take..];
                if self.aligned.len == AlignedStage::SIZE {
                    write_at(direct, self.aligned.window(), self.stage_at).map_err(|e| self.cannot(e))?;
                    self.stage_at += AlignedStage::SIZE as u64;
                    self.aligned.len = 0;
                }
            }
        } else if bytes.len() >= Self::DIRECT {
            self.drain()?;
            write_at(self.file, bytes, self.at).map_err(|e| self.cannot(e))?;
        } else {
            if self.stage.is_empty() {
                self.stage_at = self.at;
            }
            self.stage.extend_from_slice(bytes);
            if self.stage.len() >= Self::STAGE {
                self.drain()?;
            }
        }
        self.at += bytes.len() as u64;
        Ok(())
    }

    /// Writes what is gathered.
    fn drain(&mut self) -> Result<(), VaultError> {
        if let Some(direct) = self.direct {
            let len = std::mem::take(&mut self.aligned.len);
            if len > 0 {
                // Only a file's last part can end off a block: padded here,
                // cut to the file's size once all parts are written.
                let padded = len.next_multiple_of(ALIGN);
                let window = self.aligned.window();
                window[len..padded].fill(0);
                write_at(direct, &window[..padded], self.stage_at).map_err(|e| self.cannot(e))?;
                self.stage_at += len as u64;
            }
        } else if !self.stage.is_empty() {
            write_at(self.file, &self.stage, self.stage_at).map_err(|e| self.cannot(e))?;
            self.stage.clear();
        }
        Ok(())
    }

    fn cannot(&self, e: std::io::Error) -> VaultError {
        VaultError::Io(format!("cannot write {}: {e}", self.path.display()))
    }
}

/// Threads for CPU-bound work: one per core, at most four.
fn workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 4)
}

/// The chunk ranges (first, end; none for the file's end) the readers read
/// of a file of `len` bytes: a large file in one range per reader, so that
/// several streams keep the disk busy.
fn ranges_of(len: u64, block: usize, readers: usize) -> Vec<(usize, Option<usize>)> {
    let chunks = (len as usize).div_ceil(chunk_size(block));
    if chunks >= 2 * SPLIT && readers > 1 {
        (0..readers).map(|k| (chunks * k / readers, (k + 1 < readers).then(|| chunks * (k + 1) / readers))).collect()
    } else {
        vec![(0, None)]
    }
}

/// Asks the kernel to start reading where the readers of `path` will start
/// (a backup of mostly known blocks: [`READERS_CACHED`]), while the backup
/// loads what it needs first: up to 128 MiB from each start, so a large
/// file does not push out all that is cached (more was no faster). A thread
/// of its own, as the advice can wait for the disk's queue.
fn read_ahead(path: &Path, len: u64, block: usize) {
    const HEAD: u64 = 128 << 20;
    let Ok(file) = std::fs::File::open(path) else { return };
    let starts: Vec<u64> = ranges_of(len, block, READERS_CACHED)
        .into_iter()
        .map(|(first, _)| (first * chunk_size(block)) as u64)
        .collect();
    std::thread::spawn(move || {
        for start in starts {
            let _ = rustix::fs::fadvise(&file, start, std::num::NonZeroU64::new(HEAD), rustix::fs::Advice::WillNeed);
        }
    });
}

/// Asks the kernel to start reading the blocks of `path` that hold `pages`
/// (numbered from 1) all at once, so that the disk gets them as one deep
/// queue of small reads while the readers wait for each in turn; a thread
/// of its own, as the advice can wait for the disk's queue.
fn read_pages_ahead(path: &Path, len: u64, block: usize, pages: &[u32]) {
    let Ok(file) = std::fs::File::open(path) else { return };
    let block = block.max(512) as u64;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for p in pages.iter().map(|p| u64::from(*p)).filter(|p| *p >= 1 && (p - 1) * block < len) {
        match runs.last_mut() {
            Some((start, n)) if *start + *n * block == (p - 1) * block => *n += 1,
            _ => runs.push(((p - 1) * block, 1)),
        }
    }
    std::thread::spawn(move || {
        for (start, n) in runs {
            let _ =
                rustix::fs::fadvise(&file, start, std::num::NonZeroU64::new(n * block), rustix::fs::Advice::WillNeed);
        }
    });
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A file a backup reads, with direct I/O (Linux, where the file system
/// allows it) when asked: see `Vault::backup` for when.
struct SourceFile {
    file: std::fs::File,
    direct: bool,
    path: PathBuf,
    offset: u64,
}

impl SourceFile {
    fn open(path: &Path, offset: u64, direct: bool) -> std::io::Result<Self> {
        #[cfg(target_os = "linux")]
        if direct {
            use std::os::unix::fs::OpenOptionsExt;
            if let Ok(mut file) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path) {
                file.seek(std::io::SeekFrom::Start(offset))?;
                return Ok(Self { file, direct: true, path: path.to_path_buf(), offset });
            }
        }
        let _ = direct;
        Self::buffered(path, offset)
    }

    /// Fills `buf` (aligned, a multiple of [`ALIGN`]) unless the file ends first.
    fn read_chunk(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = if self.direct {
            let mut n = 0;
            while n < buf.len() {
                match self.file.read(&mut buf[n..]) {
                    Ok(0) => break,
                    // Short only at the end of the file: the rest would be unaligned.
                    Ok(k) if k % ALIGN != 0 => {
                        n += k;
                        break;
                    }
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // Some file systems refuse direct reads only when one is made.
                    Err(e) if n == 0 && e.raw_os_error() == Some(libc::EINVAL) => {
                        *self = Self::buffered(&self.path, self.offset)?;
                        return self.read_chunk(buf);
                    }
                    Err(e) => return Err(e),
                }
            }
            n
        } else {
            read_full(&mut self.file, buf)?
        };
        self.offset += n as u64;
        Ok(n)
    }

    fn buffered(path: &Path, offset: u64) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        Ok(Self { file, direct: false, path: path.to_path_buf(), offset })
    }
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(dir: &Path) -> Vault {
        let regions = vec![RegionStore::new("in", dir.join("in")), RegionStore::new("sg", dir.join("sg"))];
        let settings = VaultSettings { segment_size: 64 << 10, pack_size: 1 << 20, ..VaultSettings::default() };
        Vault::open(regions, &dir.join("vault.key"), settings).expect("open").0
    }

    #[test]
    fn a_second_backup_stores_only_the_changed_pages_and_both_restore_exactly() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let file = dir.path().join("db.sqlite");
        // 1,000 pages of varied, compressible data.
        let mut data: Vec<u8> = (0..4096 * 1000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 61).collect();
        std::fs::write(&file, &data).expect("write");
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let files = vec![("db.sqlite".to_string(), file.clone(), 4096)];
        let first = v.backup("db1", &files, t0, &|_, _| {}).expect("first");
        assert!(first.added > 0);
        // Change 1% of the pages.
        for p in (0..1000).step_by(100) {
            data[p * 4096 + 7] ^= 0xff;
        }
        std::fs::write(&file, &data).expect("write");
        let second = v.backup("db1", &files, t0 + time::Duration::hours(24), &|_, _| {}).expect("second");
        assert!(second.added * 20 < first.added, "incremental stored {} vs {}", second.added, first.added);
        for (snap, expected_changed) in [(&first, false), (&second, true)] {
            let out = dir.path().join(format!("restore-{}", &snap.id[..8]));
            v.restore(&snap.id, &out, &|_, _| {}).expect("restore");
            let got = std::fs::read(out.join("db.sqlite")).expect("read");
            assert_eq!(got == data, expected_changed);
            assert_eq!(got.len(), data.len());
        }
        assert!(v.check(true, &|_, _| {}).expect("check").is_empty());
        // Another master key cannot read anything.
        std::fs::write(dir.path().join("other.key"), data_encoding::HEXLOWER.encode(&[7u8; 32])).expect("key");
        let regions = vec![RegionStore::new("in", dir.path().join("in"))];
        let stranger = Vault::open(regions, &dir.path().join("other.key"), VaultSettings::default()).expect("open").0;
        assert!(stranger.restore(&first.id, &dir.path().join("x"), &|_, _| {}).is_err());
    }

    #[test]
    fn change_maps_spare_hashing_unchanged_blocks_but_a_damaged_or_old_map_is_ignored() {
        let dir = tempfile::tempdir().expect("dir");
        let maps = dir.path().join("maps");
        let v = vault(dir.path()).with_change_maps(maps.clone());
        let file = dir.path().join("db.sqlite");
        let mut data: Vec<u8> = (0..4096 * 300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        std::fs::write(&file, &data).expect("write");
        let files = vec![("db.sqlite".to_string(), file.clone(), 4096)];
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let blocks_of = |id: &str| v.manifest(id).expect("manifest").1.files[0].blocks.clone();
        let key = || v.db_key("db1", false).expect("key");
        let expected = |data: &[u8]| -> Vec<blake3::Hash> {
            data.chunks(4096).map(|b| blake3::keyed_hash(&key().hash_key(), b)).collect()
        };
        let first = v.backup("db1", &files, t0, &|_, _| {}).expect("first");
        assert_eq!(blocks_of(&first.id), expected(&data));
        // Changed pages are hashed again; the rest come from the map.
        for p in [0usize, 7, 299] {
            data[p * 4096 + 100] ^= 0x5a;
        }
        std::fs::write(&file, &data).expect("write");
        let second = v.backup("db1", &files, t0 + time::Duration::hours(1), &|_, _| {}).expect("second");
        assert_eq!(blocks_of(&second.id), expected(&data));
        let out = dir.path().join("restored");
        v.restore(&second.id, &out, &|_, _| {}).expect("restore");
        assert_eq!(std::fs::read(out.join("db.sqlite")).expect("read"), data);

        // The map is trusted for a block whose fingerprint it records: one
        // that says page 1 holds page 2 is believed (why it is sealed).
        let mut map = PageMap::load(&maps, &key(), "db1", "db.sqlite").expect("a map");
        assert_eq!(map.entries.len(), 300);
        map.entries[1].1 = map.entries[2].1;
        map.store(&maps, &key(), "db1", "db.sqlite").expect("store");
        let believed = v.backup("db1", &files, t0 + time::Duration::hours(2), &|_, _| {}).expect("third");
        assert_eq!(blocks_of(&believed.id)[1], expected(&data)[2], "the map was used");
        // A damaged map is ignored as a whole: every block is hashed again.
        let mut map = PageMap::load(&maps, &key(), "db1", "db.sqlite").expect("a map");
        map.entries[1].1 = map.entries[2].1;
        map.store(&maps, &key(), "db1", "db.sqlite").expect("store");
        let path = std::fs::read_dir(maps.join("db1")).expect("dir").next().expect("file").expect("entry").path();
        let mut sealed = std::fs::read(&path).expect("read");
        let at = sealed.len() / 2;
        sealed[at] ^= 1;
        std::fs::write(&path, &sealed).expect("write");
        let fourth = v.backup("db1", &files, t0 + time::Duration::hours(3), &|_, _| {}).expect("fourth");
        assert_eq!(blocks_of(&fourth.id), expected(&data));
        // So is a map of another epoch, even an intact one.
        let mut map = PageMap::load(&maps, &key(), "db1", "db.sqlite").expect("a map");
        map.entries[1].1 = map.entries[2].1;
        map.store(&maps, &key(), "db1", "db.sqlite").expect("store");
        let later = t0 + time::Duration::days(v.settings.epoch_days);
        let fifth = v.backup("db1", &files, later, &|_, _| {}).expect("fifth");
        assert_eq!(blocks_of(&fifth.id), expected(&data));
        assert!(v.check(true, &|_, _| {}).expect("check").is_empty());
    }

    #[test]
    fn a_backup_told_which_pages_changed_reads_only_those_and_only_against_its_own_map() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path()).with_change_maps(dir.path().join("maps"));
        let file = dir.path().join("db.sqlite");
        // 3,000 pages: several chunks, read by several readers.
        let mut data: Vec<u8> = (0..4096 * 3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        std::fs::write(&file, &data).expect("write");
        let files = vec![("db.sqlite".to_string(), file.clone(), 4096)];
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let first = v.backup("db1", &files, t0, &|_, _| {}).expect("first");
        let restored = |id: &str| {
            let out = dir.path().join(format!("restore-{}", &id[..12]));
            v.restore(id, &out, &|_, _| {}).expect("restore");
            std::fs::read(out.join("db.sqlite")).expect("read")
        };
        // Pages 6, 7 (a run), 2,000 and a new last page are listed; page 21
        // changes too but is not listed, which only a backup that did not
        // read it misses.
        let before = data.clone();
        for p in [5usize, 6, 1999, 20] {
            data[p * 4096 + 9] ^= 0x77;
        }
        data.extend(std::iter::repeat_n(3u8, 4096));
        std::fs::write(&file, &data).expect("write");
        let listed = [6u32, 7, 2000, 3001, 9999];
        let changed = Changed { file: 0, since: &first.id, pages: &listed };
        let second =
            v.backup_changed("db1", &files, Some(changed), t0 + time::Duration::hours(1), &|_, _| {}).expect("second");
        let got = restored(&second.id);
        let mut expected = data.clone();
        expected[20 * 4096 + 9] = before[20 * 4096 + 9];
        assert!(got == expected, "listed pages read, the unlisted one taken from the map");
        // The manifest is the one a full read of that content makes.
        assert_eq!(v.manifest(&second.id).expect("manifest").1.files[0].size, data.len() as u64);
        assert!(v.check(true, &|_, _| {}).expect("check").is_empty());

        // A list against another snapshot than the map's is not used.
        let stale = Changed { file: 0, since: &first.id, pages: &listed };
        let third =
            v.backup_changed("db1", &files, Some(stale), t0 + time::Duration::hours(2), &|_, _| {}).expect("third");
        assert!(restored(&third.id) == data, "read whole");
        // Nor when most of the file is listed: then it is read in one stream.
        data[20 * 4096 + 10] ^= 0x11;
        std::fs::write(&file, &data).expect("write");
        let most: Vec<u32> = (1..=2000).collect();
        let wide = Changed { file: 0, since: &third.id, pages: &most };
        let fourth =
            v.backup_changed("db1", &files, Some(wide), t0 + time::Duration::hours(3), &|_, _| {}).expect("fourth");
        assert!(restored(&fourth.id) == data);
    }

    #[test]
    fn the_pipeline_stores_a_repeated_block_once_and_restores_odd_sized_and_empty_files_exactly() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        // 3 MiB + 100 bytes: several chunks for the workers, a short last block,
        // and one page repeated all through it.
        let mut data: Vec<u8> = (0..(3u32 << 20) + 100).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
        for page in (0..data.len() / 4096).step_by(3) {
            data[page * 4096..(page + 1) * 4096].fill(0xab);
        }
        let (db, empty, attachment) =
            (dir.path().join("db.sqlite"), dir.path().join("empty"), dir.path().join("notes.txt"));
        std::fs::write(&db, &data).expect("write");
        std::fs::write(&empty, b"").expect("write");
        std::fs::write(&attachment, b"a short attachment").expect("write");
        let files = vec![
            ("db.sqlite".to_string(), db, 4096),
            ("files/empty".to_string(), empty, 64 << 10),
            ("files/notes.txt".to_string(), attachment, 64 << 10),
        ];
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let snap = v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
        let (_, m) = v.manifest(&snap.id).expect("manifest");
        let stored: usize =
            v.indexes(&m.indexes).expect("indexes").iter().flat_map(|i| &i.segments).map(|s| s.blocks.len()).sum();
        let distinct: HashSet<&blake3::Hash> = m.files.iter().flat_map(|f| &f.blocks).collect();
        assert_eq!(stored, distinct.len(), "every distinct block is stored exactly once");
        assert!(distinct.len() < m.files[0].blocks.len() * 7 / 10);
        let out = dir.path().join("restored");
        v.restore(&snap.id, &out, &|_, _| {}).expect("restore");
        assert_eq!(std::fs::read(out.join("db.sqlite")).expect("read"), data);
        assert_eq!(std::fs::read(out.join("files/empty")).expect("read"), b"");
        assert_eq!(std::fs::read(out.join("files/notes.txt")).expect("read"), b"a short attachment");
    }

    #[test]
    fn a_source_file_reads_the_same_bytes_direct_or_through_the_page_cache() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(3 * CHUNK + 5000) as u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        for direct in [true, false] {
            // From the second chunk on, as a second reader does.
            let mut f = SourceFile::open(&path, CHUNK as u64, direct).expect("open");
            let (mut buf, mut got) = (Vec::new(), Vec::new());
            let at = aligned_start(&mut buf, CHUNK);
            loop {
                let n = f.read_chunk(&mut buf[at..at + CHUNK]).expect("read");
                got.extend_from_slice(&buf[at..at + n]);
                if n < CHUNK {
                    break;
                }
            }
            assert!(got == data[CHUNK..], "direct: {direct}, {} bytes", got.len());
        }
    }

    #[test]
    fn direct_and_buffered_restores_write_the_same_bytes_whatever_the_blocks() {
        let dir = tempfile::tempdir().expect("dir");
        // Parts of 100 KiB: a database's 4 KiB pages start every part on an
        // aligned offset (written direct, the short last block padded then
        // cut); 1000-byte blocks do not (written through the page cache).
        let regions = vec![RegionStore::new("in", dir.path().join("in"))];
        let settings = VaultSettings { restore_part: 100 << 10, ..VaultSettings::default() };
        let v = Vault::open(regions, &dir.path().join("vault.key"), settings).expect("open").0;
        let data: Vec<u8> = (0..(3u32 << 20) + 100).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 % 53).collect();
        let (db, attachment) = (dir.path().join("db.sqlite"), dir.path().join("scan.pdf"));
        std::fs::write(&db, &data).expect("write");
        std::fs::write(&attachment, &data[77..]).expect("write");
        let files = vec![("db.sqlite".to_string(), db, 4096), ("files/scan.pdf".to_string(), attachment, 1000)];
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let snap = v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
        let out = dir.path().join("restored");
        v.restore(&snap.id, &out, &|_, _| {}).expect("restore");
        assert!(std::fs::read(out.join("db.sqlite")).expect("read") == data, "byte for byte");
        assert!(std::fs::read(out.join("files/scan.pdf")).expect("read") == data[77..], "byte for byte");
    }

    #[test]
    fn a_file_read_by_several_readers_at_once_restores_exactly() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let file = dir.path().join("db.sqlite");
        // Enough chunks to be split between the readers, and a short last one.
        let len = 2 * SPLIT * CHUNK + 3 * 4096 + 123;
        let data: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 % 61).collect();
        std::fs::write(&file, &data).expect("write");
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let snap = v.backup("db1", &[("db.sqlite".into(), file.clone(), 4096)], t0, &|_, _| {}).expect("backup");
        assert_eq!(snap.size, len as u64);
        let out = dir.path().join("restored");
        v.restore(&snap.id, &out, &|_, _| {}).expect("restore");
        assert!(std::fs::read(out.join("db.sqlite")).expect("read") == data, "byte for byte");

        // Then a few scattered pages change: mostly known blocks, read by
        // more readers through the page cache, their chunks handed back in
        // any order. The manifest still lists every page in order.
        let mut data = data;
        for page in (0..len / 4096).step_by(97) {
            data[page * 4096 + 17] ^= 0x55;
        }
        std::fs::write(&file, &data).expect("write");
        let later = t0 + time::Duration::hours(1);
        let second = v.backup("db1", &[("db.sqlite".into(), file.clone(), 4096)], later, &|_, _| {}).expect("backup");
        assert!(second.added < snap.added / 2, "only the changed pages are stored: {} of {}", second.added, snap.added);
        let (_, m) = v.manifest(&second.id).expect("manifest");
        let hash_key = v.db_key("db1", false).expect("key").hash_key();
        let expected: Vec<blake3::Hash> = data.chunks(4096).map(|b| blake3::keyed_hash(&hash_key, b)).collect();
        assert!(m.files[0].blocks == expected, "every block's hash, in order");
        // Each new segment holds pages of one reader's stretch, in file order,
        // not pages from every stretch by turns: a restore, which writes the
        // file stretch by stretch, then decompresses it once, not once a stretch.
        let (_, first) = v.manifest(&snap.id).expect("manifest");
        let page_of: HashMap<blake3::Hash, usize> = expected.iter().enumerate().map(|(i, h)| (*h, i)).collect();
        let new: Vec<String> = m.indexes.iter().filter(|i| !first.indexes.contains(i)).cloned().collect();
        let segments: Vec<Segment> = v.indexes(&new).expect("indexes").into_iter().flat_map(|i| i.segments).collect();
        assert!(!segments.is_empty());
        for seg in &segments {
            let pages: Vec<usize> = seg.blocks.iter().map(|b| page_of[&b.hash]).collect();
            assert!(pages.windows(2).all(|w| w[0] < w[1]), "a new segment's pages in file order: {pages:?}");
        }
        let out = dir.path().join("restored-second");
        v.restore(&second.id, &out, &|_, _| {}).expect("restore");
        assert!(std::fs::read(out.join("db.sqlite")).expect("read") == data, "byte for byte");
    }

    #[test]
    fn a_region_that_cannot_be_written_fails_the_backup_with_its_own_error_and_leaves_no_snapshot() {
        let dir = tempfile::tempdir().expect("dir");
        // Singapore takes the database's key, but no pack: its pack folder is a file.
        std::fs::create_dir_all(dir.path().join("sg/objects")).expect("dir");
        std::fs::write(dir.path().join("sg/objects/packs"), b"not a folder").expect("write");
        let v = vault(dir.path());
        let file = dir.path().join("db.sqlite");
        // Enough data that every channel of the pipeline fills up behind the failed writer.
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
        std::fs::write(&file, &data).expect("write");
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let err = v.backup("db1", &[("db.sqlite".into(), file, 4096)], t0, &|_, _| {}).expect_err("sg fails");
        assert!(err.to_string().contains("region sg: cannot create the folder of packs/db1/"), "the cause: {err}");
        assert!(v.list(None).expect("list").is_empty(), "no snapshot without every region");
    }

    #[test]
    fn earlier_formats_still_restore_and_a_reordered_block_list_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let file = dir.path().join("db.sqlite");
        let data: Vec<u8> = (0..4096 * 300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 % 37).collect();
        std::fs::write(&file, &data).expect("write");
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let snap = v.backup("db1", &[("db.sqlite".into(), file, 4096)], t0, &|_, _| {}).expect("backup");
        let (_, mut m) = v.manifest(&snap.id).expect("manifest");
        assert_eq!(m.format, FORMAT);
        let current = m.clone();
        let key = v.db_key("db1", false).expect("key");
        // Formats 1 and 2 wrote manifests and indexes as JSON, hashes in hex.
        let put = |m: &Manifest| {
            let bytes = serde_json::to_vec(m).expect("json");
            assert!(String::from_utf8_lossy(&bytes).contains(&m.files[0].blocks[0].to_hex().to_string()));
            let id = content_hash(&bytes);
            v.put_all(&snapshot_name("db1", &id), &bytes, 0).expect("put");
            id
        };
        let indexes = v.indexes(&m.indexes).expect("indexes");
        m.indexes = indexes
            .iter()
            .map(|idx| {
                let bytes = serde_json::to_vec(idx).expect("json");
                let name = index_name("db1", &content_hash(&bytes));
                v.put_all(&name, &bytes, 0).expect("put");
                name
            })
            .collect();
        let mut second = m.clone();
        second.format = 2;
        let out = dir.path().join("second");
        v.restore(&put(&second), &out, &|_, _| {}).expect("restore format 2");
        assert_eq!(std::fs::read(out.join("db.sqlite")).expect("read"), data);
        // The manifest as format 1 wrote it: the keyed hash of the file's bytes.
        let mut old = m.clone();
        old.format = 1;
        old.files[0].hash = blake3::keyed_hash(&key.hash_key(), &data).to_hex().to_string();
        let out = dir.path().join("old");
        v.restore(&put(&old), &out, &|_, _| {}).expect("restore format 1");
        assert_eq!(std::fs::read(out.join("db.sqlite")).expect("read"), data);
        old.files[0].hash = "00".repeat(32);
        let err = v.restore(&put(&old), &dir.path().join("old-bad"), &|_, _| {}).expect_err("wrong hash");
        assert!(err.to_string().contains("does not match the snapshot's hash"), "{err}");
        // Format 2: two blocks swapped in the list no longer match the file's hash.
        let mut swapped = second.clone();
        swapped.files[0].blocks.swap(3, 200);
        let err = v.restore(&put(&swapped), &dir.path().join("swapped"), &|_, _| {}).expect_err("swapped");
        assert!(err.to_string().contains("block list does not match"), "{err}");
        // Format 3: the same change breaks the manifest's MAC.
        let mut swapped = current;
        swapped.files[0].blocks.swap(3, 200);
        let err = v.restore(&put(&swapped), &dir.path().join("swapped3"), &|_, _| {}).expect_err("swapped");
        assert!(err.to_string().contains("not authentic"), "{err}");
    }

    #[test]
    fn a_restore_refuses_a_manifest_not_made_with_the_key_and_a_segment_its_index_does_not_name() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let file = dir.path().join("db.sqlite");
        let data: Vec<u8> = (0..4096 * 100u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
        std::fs::write(&file, &data).expect("write");
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let snap = v.backup("db1", &[("db.sqlite".into(), file, 4096)], t0, &|_, _| {}).expect("backup");
        let (_, m) = v.manifest(&snap.id).expect("manifest");
        let put = |m: &Manifest| {
            let bytes = encode(m).expect("encode");
            let id = content_hash(&bytes);
            v.put_all(&snapshot_name("db1", &id), &bytes, 0).expect("put");
            id
        };
        // Anyone can write a manifest, but not its MAC.
        let forged = put(&Manifest { taken_at: m.taken_at + 1, ..m.clone() });
        let err = v.restore(&forged, &dir.path().join("forged"), &|_, _| {}).expect_err("forged");
        assert!(err.to_string().contains("not authentic"), "{err}");
        let problems = v.check(false, &|_, _| {}).expect("check");
        assert!(
            problems.iter().any(|p| p.object.ends_with(&forged) && p.problem.contains("not authentic")),
            "{problems:?}"
        );

        // An index (here under a valid MAC, as a bug could make it) that puts
        // one sealed segment where another is: it decrypts, but is refused.
        let mut idx = v.indexes(&m.indexes).expect("indexes").remove(0);
        assert!(idx.segments.len() >= 2 && idx.segments.iter().all(|s| s.nonce.is_some()));
        let (a, b) = (idx.segments[0].clone(), idx.segments[1].clone());
        (idx.segments[0].offset, idx.segments[0].len) = (b.offset, b.len);
        (idx.segments[1].offset, idx.segments[1].len) = (a.offset, a.len);
        let bytes = encode(&idx).expect("encode");
        let iname = index_name("db1", &content_hash(&bytes));
        v.put_all(&iname, &bytes, 0).expect("put");
        let mut moved = m.clone();
        moved.indexes[0] = iname;
        moved.mac = manifest_mac(&v.db_key("db1", false).expect("key").hash_key(), &moved).expect("mac");
        let err = v.restore(&put(&moved), &dir.path().join("moved"), &|_, _| {}).expect_err("moved");
        assert!(err.to_string().contains("is not the one its index names"), "{err}");
        let problems = v.check(true, &|_, _| {}).expect("check");
        assert!(problems.iter().any(|p| p.problem.contains("not the segment its index names")), "{problems:?}");
        // The genuine snapshot is untouched by all this.
        v.restore(&snap.id, &dir.path().join("genuine"), &|_, _| {}).expect("restore");
        assert!(std::fs::read(dir.path().join("genuine/db.sqlite")).expect("read") == data);
    }

    // promise: BAK-1
    #[test]
    fn what_an_interrupted_run_left_in_one_region_is_no_problem_but_a_lost_snapshot_object_is() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let file = dir.path().join("db.sqlite");
        std::fs::write(&file, vec![5u8; 4096 * 50]).expect("write");
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let files = [("db.sqlite".to_string(), file, 4096)];
        let snap = v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
        // A run for db2 killed before its manifest: its key, packs and
        // indexes reached India, some of them Singapore.
        let other = v.backup("db2", &files, t0, &|_, _| {}).expect("backup");
        for region in ["in", "sg"] {
            std::fs::remove_file(dir.path().join(region).join("objects").join(snapshot_name("db2", &other.id)))
                .expect("no manifest");
        }
        std::fs::remove_file(dir.path().join("sg").join("objects").join(key_name("db2"))).expect("no key in sg");
        assert!(
            v.check(false, &|_, _| {}).expect("check").is_empty(),
            "leftovers of an interrupted run are no problem"
        );
        // A snapshot's own object lost in one region is.
        let manifest = snapshot_name("db1", &snap.id);
        std::fs::remove_file(dir.path().join("sg").join("objects").join(&manifest)).expect("remove");
        let problems = v.check(false, &|_, _| {}).expect("check");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!((problems[0].region.as_str(), problems[0].object.as_str()), ("sg", manifest.as_str()));
    }

    // promise: BAK-4
    #[test]
    fn a_run_after_one_that_left_objects_in_one_region_writes_a_snapshot_each_region_restores_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let file = dir.path().join("db.sqlite");
        let data: Vec<u8> = (0..4096 * 700u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        std::fs::write(&file, &data).expect("write");
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let files = [("db.sqlite".to_string(), file, 4096)];
        // A run killed after India had its packs and indexes, before
        // Singapore had any, and before the manifest.
        let killed = v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
        for region in ["in", "sg"] {
            std::fs::remove_file(dir.path().join(region).join("objects").join(snapshot_name("db1", &killed.id)))
                .expect("no manifest");
        }
        for kind in ["indexes", "packs"] {
            std::fs::remove_dir_all(dir.path().join("sg").join("objects").join(kind).join("db1")).expect("not in sg");
        }
        let next = v.backup("db1", &files, t0 + time::Duration::seconds(1), &|_, _| {}).expect("next run");
        assert!(v.check(false, &|_, _| {}).expect("check").is_empty(), "every region holds what the snapshot needs");
        for region in ["in", "sg"] {
            let settings = VaultSettings { segment_size: 64 << 10, pack_size: 1 << 20, ..VaultSettings::default() };
            let alone = Vault::open(
                vec![RegionStore::new(region, dir.path().join(region))],
                &dir.path().join("vault.key"),
                settings,
            )
            .expect("open")
            .0;
            let out = dir.path().join(format!("restored-{region}"));
            alone.restore(&next.id, &out, &|_, _| {}).unwrap_or_else(|e| panic!("{region} alone: {e}"));
            assert!(
                std::fs::read(out.join("db.sqlite")).expect("restored") == data,
                "{region} alone restores it exactly"
            );
        }
    }

    #[test]
    fn a_snapshot_is_not_written_when_a_region_lacks_what_it_needs_and_none_can_supply_it() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let file = dir.path().join("db.sqlite");
        let data: Vec<u8> = (0..4096 * 300u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        std::fs::write(&file, &data).expect("write");
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let files = [("db.sqlite".to_string(), file, 4096)];
        v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
        // A pack lost everywhere after its index was read: the check before
        // the manifest finds it, and no region gets the new snapshot.
        let pack = v.names("packs/db1").expect("packs").into_iter().next().expect("a pack");
        v.ensure_everywhere("db1", std::slice::from_ref(&pack), ms(t0)).expect("present everywhere");
        for region in ["in", "sg"] {
            std::fs::remove_file(dir.path().join(region).join("objects").join(&pack)).expect("lose it");
        }
        let err = v.ensure_everywhere("db1", std::slice::from_ref(&pack), ms(t0)).expect_err("refused");
        assert!(err.to_string().contains("was not written") && err.to_string().contains(&pack), "{err}");
    }

    // promise: BAK-4
    #[test]
    fn a_manifest_a_killed_run_wrote_to_one_region_reaches_the_other_with_the_next_run() {
        let dir = tempfile::tempdir().expect("dir");
        let v = vault(dir.path());
        let file = dir.path().join("db.sqlite");
        std::fs::write(&file, vec![3u8; 4096 * 40]).expect("write");
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("t");
        let files = [("db.sqlite".to_string(), file, 4096)];
        let first = v.backup("db1", &files, t0, &|_, _| {}).expect("backup");
        let manifest = snapshot_name("db1", &first.id);
        std::fs::remove_file(dir.path().join("sg").join("objects").join(&manifest)).expect("killed before sg had it");
        assert_eq!(v.check(false, &|_, _| {}).expect("check").len(), 1);
        v.backup("db1", &files, t0 + time::Duration::seconds(1), &|_, _| {}).expect("next run");
        assert!(dir.path().join("sg").join("objects").join(&manifest).is_file(), "copied to sg");
        assert!(v.check(false, &|_, _| {}).expect("check").is_empty());
    }
}
