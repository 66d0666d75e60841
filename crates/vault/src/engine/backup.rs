//! One backup run: what its epoch stores already, the pipeline that reads
//! and stores the files (pipeline.rs), then the manifest, which goes to
//! every region last.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use time::OffsetDateTime;

use super::io::{chunk_size, file_len, read_ahead, read_pages_ahead};
use super::pipeline::ChunkRead;
use super::{BlockMap, Changed, SnapshotInfo, Vault, day_of, ms};
use crate::VaultError;
use crate::format::{
    FORMAT, FileEntry, Key, Manifest, PackIndex, content_hash, decode, file_hash_of_hex, hex_of_blocks, pack_name,
    sign_and_encode, snapshot_name,
};
use crate::pagemap::{Fingerprint, Fingerprinter, PageMap};

/// The files of a backup: (snapshot path, file on disk, block size).
pub(super) type Files = [(String, PathBuf, usize)];

impl Vault {
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
        let run = BackupRun::new(self, db, files, changed, now)?;
        let known = run.known();
        let made = run.store(&known, progress)?;
        run.commit(made, &known.pack_of)
    }
}

/// One backup run: its database, files, key and times.
pub(super) struct BackupRun<'a> {
    pub(super) vault: &'a Vault,
    pub(super) db: &'a str,
    pub(super) files: &'a Files,
    changed: Option<Changed<'a>>,
    pub(super) key: Key,
    pub(super) hash_key: [u8; 32],
    now: OffsetDateTime,
    now_ms: i64,
    /// Until when the run's objects are locked.
    pub(super) until: i64,
    pub(super) epoch: i64,
    /// Each file's length as the run starts.
    pub(super) lens: Vec<u64>,
    /// When change maps are kept.
    pub(super) fingerprint: Option<Fingerprinter>,
}

/// What a run knows before it reads a block.
pub(super) struct Known {
    /// Blocks already stored in this epoch, and which index locates each.
    pub(super) index_names: Vec<String>,
    pub(super) blocks: BlockMap<usize>,
    /// The pack of each of those indexes.
    pack_of: HashMap<String, String>,
    /// What this node's last backup of each file read, if made in this
    /// epoch (none where its loader failed: then every block is hashed).
    pub(super) maps: Vec<Option<PageMap>>,
    /// The blocks of the file with a list of changes that are not read
    /// (see [`BackupRun::skips`]).
    pub(super) skips: Vec<Option<Vec<bool>>>,
}

/// A manifest ready to go to the regions, and what comes with it.
pub(super) struct Made<'a> {
    bytes: Vec<u8>,
    id: String,
    /// The change maps of the files whose every block was hashed or mapped.
    maps: Vec<(&'a String, PageMap)>,
    size: u64,
    added: u64,
}

impl<'a> BackupRun<'a> {
    fn new(
        vault: &'a Vault,
        db: &'a str,
        files: &'a Files,
        changed: Option<Changed<'a>>,
        now: OffsetDateTime,
    ) -> Result<Self, VaultError> {
        let key = vault.db_key(db, true)?;
        let hash_key = key.hash_key();
        let now_ms = ms(now);
        let until = ms(now + vault.settings.lock);
        let epoch = day_of(now_ms) / vault.settings.epoch_days.max(1);
        let lens: Vec<u64> = files.iter().map(|(_, p, _)| file_len(p)).collect();
        let fingerprint = vault.maps.as_ref().map(|_| Fingerprinter::new(&key));
        Ok(Self { vault, db, files, changed, key, hash_key, now, now_ms, until, epoch, lens, fingerprint })
    }

    /// What the epoch stores already (its indexes, in every region), the
    /// change maps, and the blocks the maps spare reading.
    fn known(&self) -> Known {
        let db = self.db;
        // What each region holds: an index (and its pack) reused from an
        // interrupted run may be in one region only, and a snapshot that
        // names it must not be written until every region has it.
        // A region that cannot even be listed holds nothing reusable; its
        // writer then reports what is wrong with it.
        let listed = |prefix: String| -> Vec<BTreeSet<String>> {
            let regions = &self.vault.regions;
            regions.iter().map(|r| r.list(&prefix).map(|v| v.into_iter().collect()).unwrap_or_default()).collect()
        };
        let (held_indexes, held_packs) = (listed(format!("indexes/{db}")), listed(format!("packs/{db}")));
        let names: Vec<String> = held_indexes.iter().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
        self.replicate_partial_manifests(&listed(format!("snapshots/{db}")));
        let (read, maps) = std::thread::scope(|scope| {
            let maps = scope.spawn(|| self.load_maps());
            let read = self.vault.read_indexes(&names);
            (read, maps.join().unwrap_or_default())
        });
        let mut known = Known {
            index_names: Vec::new(),
            blocks: BlockMap::default(),
            pack_of: HashMap::new(),
            maps,
            skips: Vec::new(),
        };
        self.take_indexes(&mut known, names.into_iter().zip(read).collect(), (&held_indexes, &held_packs));
        known.skips = self.skips(&known);
        known
    }

    /// A run killed while its manifest went to the regions left it in some
    /// of them: its objects were verified in every region before, so the
    /// manifest is copied to the others now. `manifests`: each region's.
    fn replicate_partial_manifests(&self, manifests: &[BTreeSet<String>]) {
        let partial: Vec<String> = manifests
            .iter()
            .flatten()
            .filter(|m| manifests.iter().any(|held| !held.contains(*m)))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if let Err(e) = self.vault.replicate(&partial, self.until) {
            let db = self.db;
            tracing::warn!("a snapshot of {db} is not in every backup region and cannot be copied there: {e}");
        }
    }

    /// What this node's last backup of each file read, if made in this
    /// epoch: loaded while the indexes are. A file with a map likely
    /// changed little, so it will be read through the page cache: the
    /// kernel is asked to start reading it as soon as its map is loaded
    /// (sooner, its reads delayed the indexes' more than they gained:
    /// 0.55–0.58 s against 0.48–0.52 s, docs/benchmarks.md).
    fn load_maps(&self) -> Vec<Option<PageMap>> {
        let changed = self.changed.as_ref();
        self.files
            .iter()
            .zip(&self.lens)
            .enumerate()
            .map(|(i, ((path, source, block), len))| {
                let map = PageMap::load(self.vault.maps.as_ref()?, &self.key, self.db, path)
                    .filter(|m| m.epoch == self.epoch && m.block as usize == (*block).max(512))?;
                match changed.filter(|c| c.file == i && c.since == map.snapshot) {
                    Some(c) => read_pages_ahead(source, *len, *block, c.pages),
                    None => read_ahead(source, *len, *block),
                }
                Some(map)
            })
            .collect()
    }

    /// Takes the blocks of the epoch's indexes among `read` (by name, each
    /// one's result) as known, each index (and its pack) copied first to
    /// any region that lacks it. `held`: each region's indexes and packs.
    fn take_indexes(
        &self,
        known: &mut Known,
        read: Vec<(String, Result<PackIndex, VaultError>)>,
        held: (&[BTreeSet<String>], &[BTreeSet<String>]),
    ) {
        let (held_indexes, held_packs) = held;
        // Sized at once: growing to 130,000 blocks rehashes it many times.
        let count = read
            .iter()
            .filter_map(|(_, i)| i.as_ref().ok())
            .filter(|i| i.epoch == self.epoch)
            .map(|i| i.segments.iter().map(|s| s.blocks.len()).sum::<usize>())
            .sum();
        known.blocks.reserve(count);
        for (name, idx) in read {
            let Ok(idx) = idx else { continue };
            if idx.epoch != self.epoch {
                continue;
            }
            let pack = pack_name(self.db, &idx.pack);
            let everywhere = held_indexes.iter().zip(held_packs).all(|(i, p)| i.contains(&name) && p.contains(&pack));
            if !everywhere && let Err(e) = self.vault.replicate(&[pack.clone(), name.clone()], self.until) {
                // Its blocks are stored again by this run instead.
                tracing::warn!(
                    "{name} is not in every backup region and cannot be copied there ({e}); its blocks are stored anew"
                );
                continue;
            }
            known.pack_of.insert(name.clone(), pack);
            let i = known.index_names.len();
            known.index_names.push(name);
            for b in idx.segments.iter().flat_map(|s| &s.blocks) {
                known.blocks.entry(b.hash).or_insert(i);
            }
        }
    }

    /// The blocks of the file with a list of changes that are not read:
    /// not listed, recorded in the map (its last block aside, which may
    /// have been short), and stored in the epoch.
    fn skips(&self, known: &Known) -> Vec<Option<Vec<bool>>> {
        let changed = self.changed.as_ref();
        (0..self.files.len())
            .map(|i| {
                let c = changed.filter(|c| c.file == i)?;
                let map = known.maps.get(i)?.as_ref().filter(|m| m.snapshot == c.since)?;
                let block = self.files[i].2.max(512) as u64;
                let count = usize::try_from(self.lens[i].div_ceil(block)).ok()?;
                let mut skip: Vec<bool> = (0..count)
                    .map(|b| b + 1 < map.entries.len() && known.blocks.contains_key(&map.entries[b].1))
                    .collect();
                for p in c.pages.iter().filter_map(|p| usize::try_from(*p).ok()) {
                    if let Some(s) = p.checked_sub(1).and_then(|b| skip.get_mut(b)) {
                        *s = false;
                    }
                }
                // Most of the file to read: faster in one stream than in runs.
                (skip.iter().filter(|s| !**s).count() * 2 <= count).then_some(skip)
            })
            .collect()
    }

    /// The manifest of what was read: built while the writers finish the
    /// last pack, so that it is ready to go once they have. Index `i` is
    /// `index_names[i]` (known before the run), else `new_indexes[i - its
    /// length]` (written by the run); `locate` names the index of each new
    /// block.
    pub(super) fn manifest(
        &self,
        assemblies: Vec<Assembly>,
        index_names: &[String],
        new_indexes: &[String],
        added: u64,
        locate: &BlockMap<usize>,
    ) -> Result<Made<'a>, VaultError> {
        let (files, first_new) = (self.files, index_names.len());
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
            let hash = file_hash_of_hex(&self.hash_key, a.size, &a.hex);
            if a.mapped == a.blocks.len() {
                let block = (*block).max(512) as u32;
                new_maps.push((path, PageMap { epoch: self.epoch, block, snapshot: String::new(), entries: a.map }));
            }
            entries.push(FileEntry { path: path.clone(), size: a.size, hash, blocks: a.blocks });
        }
        let mut manifest = Manifest {
            format: FORMAT,
            database: self.db.to_string(),
            taken_at: self.now_ms,
            epoch: self.epoch,
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
        let bytes = sign_and_encode(&self.hash_key, &mut manifest)?;
        let id = content_hash(&bytes);
        Ok(Made { bytes, id, maps: new_maps, size: manifest.size, added })
    }

    /// Writes the manifest to every region, once every region holds every
    /// object it needs (`pack_of`: the pack of each index reused from an
    /// earlier run), and the change maps.
    fn commit(&self, made: Made<'_>, pack_of: &HashMap<String, String>) -> Result<SnapshotInfo, VaultError> {
        let Made { bytes, id, maps: mut new_maps, size, added } = made;
        let (db, until) = (self.db, self.until);
        for (_, map) in &mut new_maps {
            map.snapshot = id.clone();
        }

        // The manifest goes last, to every region: only then does the snapshot
        // exist. The change maps are written meanwhile: they say only what
        // was read, and a hash from them serves only if its block is stored.
        // One that cannot be written costs the next backup a full hash, not
        // this backup its success.
        std::thread::scope(|scope| {
            if let Some(dir) = &self.vault.maps {
                scope.spawn(|| {
                    for (path, map) in new_maps {
                        if let Err(e) = map.store(dir, &self.key, db, path) {
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
            self.vault.ensure_everywhere(db, &needed, until)?;
            self.vault.put_all(&snapshot_name(db, &id), &bytes, until)
        })?;
        Ok(SnapshotInfo {
            id,
            database: db.to_string(),
            taken_at: self.now,
            size,
            added,
            regions: self.vault.regions.iter().map(|r| r.region.clone()).collect(),
            retain_until: Some(seldesk_store::from_millis(until)),
        })
    }
}

/// One file's part of a manifest, put together as the workers hand back its
/// chunks, in any order: each chunk's hashes, their hex (what the file's hash
/// covers) and its change-map entries go where the chunk sits in the file,
/// so little is left to do once the last chunk is read (20–30 ms of a
/// 532 MB database's 130,000 blocks, on the path of every backup). The hex
/// costs 64 bytes of memory per block while the backup runs.
pub(super) struct Assembly {
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
    pub(super) fn new(block: usize, expected: u64) -> Self {
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

    pub(super) fn add(&mut self, no: usize, read: ChunkRead) {
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
