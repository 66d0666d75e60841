//! Backup, restore, check, repair and prune over the region stores.
//!
//! Split by concern around the shared format (format.rs):
//! - this module: the vault itself (opening it, its settings and reports),
//!   what every operation shares (keys, replication between regions,
//!   reading indexes and locating a snapshot's blocks) and the listings;
//! - [`backup`]: one backup run, from planning what is known to writing
//!   the manifest; [`pipeline`]: its readers, workers and packer;
//! - [`restore`]: restoring a snapshot's files;
//! - [`check`]: check and repair; [`prune`]: retention and prune;
//! - [`io`]: reading source files (direct or through the page cache, with
//!   read-ahead) and writing restored ones.

mod backup;
mod check;
mod io;
mod pipeline;
mod prune;
mod restore;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use crate::VaultError;
use crate::format::{Key, Manifest, PackIndex, Segment, content_hash, decode, key_name, open, pack_name, seal};
use crate::store::RegionStore;

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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

/// Threads that read a database's pack indexes (before a backup, restore or
/// check). Reading them cold waits for the disk more than it works the CPU,
/// and a backup can start reading pages only once they are loaded: after a
/// 1% update of 532 MB, medians of alternating runs 0.234 s with 8 against
/// 0.295 s with one per core (two; docs/benchmarks.md).
const INDEX_READERS: usize = 8;

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
        let master = Key::new(master);
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
        Ok(Key::new(k))
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
        let sealed = seal(&self.master, k.bytes(), format!("seldesk-vault-key:{db}").as_bytes())?;
        // Keys carry no lock: prune destroys one only when no snapshot needs it.
        self.put_all(&name, &sealed, 0)?;
        Ok(k)
    }

    pub(crate) fn names(&self, prefix: &str) -> Result<BTreeSet<String>, VaultError> {
        let mut all = BTreeSet::new();
        for r in &self.regions {
            all.extend(r.list(prefix)?);
        }
        Ok(all)
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
}

/// Threads for CPU-bound work: one per core, at most four.
fn workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 4)
}
