//! Restoring a snapshot: its files created at their size, cut into parts
//! that workers write in parallel, each decoding the segments its part needs.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::io::{AlignedStage, PartWriter, Target, open_direct};
use super::{BlockMap, Located, Vault, workers};
use crate::VaultError;
use crate::format::{Key, Manifest, Segment, file_hash, manifest_mac, open_in_place};
use crate::store::ALIGN;

/// A part of a file to restore: the file, where the part starts in it, and
/// its blocks (positions in the file's block list).
type Part = (usize, u64, Range<usize>);

/// The files of a restore, created at their size, and cut into parts.
struct Layout {
    targets: Vec<Target>,
    parts: Vec<Part>,
    /// Where each block of each file is: (segment number, start, length).
    places: Vec<Vec<(usize, u32, u32)>>,
}

/// What the threads of one restore share.
struct Restore<'a> {
    vault: &'a Vault,
    m: &'a Manifest,
    key: &'a Key,
    hash_key: [u8; 32],
    /// Format 3: the manifest's MAC, its indexes and its segments' seals and
    /// nonces vouch for every block.
    authentic: bool,
    aad: String,
    segments: &'a [(usize, Segment, usize)],
    packs: &'a [String],
    layout: &'a Layout,
    progress: &'a (dyn Fn(u64, u64) + Sync),
    /// The next part a worker takes.
    next: AtomicUsize,
    done: AtomicU64,
    failure: Mutex<Option<VaultError>>,
    stop: AtomicBool,
}

impl Vault {
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
        let (segments, locate, packs) = self.verify_and_locate(id, m, &hash_key)?;
        let aad = format!("seldesk-vault-segment:{}", m.database);
        std::fs::create_dir_all(out).map_err(|e| VaultError::Io(format!("cannot create {}: {e}", out.display())))?;
        let layout = Layout::create(m, out, &locate, self.settings.restore_part.max(1))?;
        let restore = Restore {
            vault: self,
            m,
            key: &key,
            hash_key,
            authentic: m.format >= 3,
            aad,
            segments: &segments,
            packs: &packs,
            layout: &layout,
            progress,
            next: AtomicUsize::new(0),
            done: AtomicU64::new(0),
            failure: Mutex::new(None),
            stop: AtomicBool::new(false),
        };
        restore.run();
        if let Some(e) = restore.failure.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
            return Err(e);
        }
        layout.finish(m, &hash_key)
    }

    /// Where the snapshot's blocks are ([`Self::locate`]), once its manifest
    /// proved authentic and its files' block lists match their hashes.
    fn verify_and_locate(&self, id: &str, m: &Manifest, hash_key: &[u8; 32]) -> Result<Located, VaultError> {
        let authentic = m.format >= 3;
        // The manifest's MAC and its files' hashes are checked on a thread of
        // their own while the indexes are read and their blocks located
        // (14 and 8 ms of a 532 MB database's restore, on the path of every
        // restore), and before any block is written.
        std::thread::scope(|scope| {
            let check = scope.spawn(|| -> Result<(), VaultError> {
                if authentic && manifest_mac(hash_key, m)? != m.mac {
                    return Err(VaultError::Corrupt(format!(
                        "snapshot {id}: its manifest is not authentic (changed, or not made with this database's key)"
                    )));
                }
                if m.format >= 2 {
                    for f in &m.files {
                        if file_hash(hash_key, f.size, &f.blocks) != f.hash {
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
}

impl Layout {
    /// Every file created at its size (under `out`), and cut into parts of
    /// about `part_size` bytes.
    fn create(
        m: &Manifest,
        out: &Path,
        locate: &BlockMap<(usize, u32, u32)>,
        part_size: u64,
    ) -> Result<Self, VaultError> {
        let mut layout = Layout { targets: Vec::new(), parts: Vec::new(), places: Vec::with_capacity(m.files.len()) };
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
            layout.targets.push(Target { path: target, file, direct: None });
            let (mut offset, mut start, mut bytes) = (0u64, 0usize, 0u64);
            let mut here = Vec::with_capacity(f.blocks.len());
            for (j, h) in f.blocks.iter().enumerate() {
                let &(n, from, len) = locate
                    .get(h)
                    .ok_or_else(|| VaultError::Corrupt(format!("block {h} is in no index of the snapshot")))?;
                here.push((n, from, len));
                bytes += u64::from(len);
                if bytes >= part_size || j + 1 == f.blocks.len() {
                    layout.parts.push((i, offset, start..j + 1));
                    (offset, start, bytes) = (offset + bytes, j + 1, 0);
                }
            }
            if offset != f.size {
                return Err(VaultError::Corrupt(format!("{}: its blocks do not add up to its size", f.path)));
            }
            layout.places.push(here);
        }
        for (i, t) in layout.targets.iter_mut().enumerate() {
            // Direct writes need every part to start on an aligned offset
            // (a database's pages do; an attachment's blocks may not).
            if layout.parts.iter().filter(|p| p.0 == i).all(|p| p.1 % ALIGN as u64 == 0) {
                t.direct = open_direct(&t.file, &t.path, m.files[i].size);
            }
        }
        Ok(layout)
    }

    /// The packs in the order the parts first need them, with that part,
    /// and the bytes of each that this snapshot uses (a pack from early in
    /// the epoch may hold many segments that later changes replaced).
    fn pack_uses(&self, segments: &[(usize, Segment, usize)], packs: usize) -> PackUses {
        let mut first_use: Vec<(usize, usize)> = Vec::new();
        let mut used: Vec<Vec<(u64, u64)>> = vec![Vec::new(); packs];
        let mut seen = vec![false; segments.len()];
        for (k, (file, _, range)) in self.parts.iter().enumerate() {
            for &(n, _, _) in &self.places[*file][range.clone()] {
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
        PackUses { first_use, used }
    }

    /// Once every part is written: each file cut to its size, synced, and
    /// (format 1) checked against the snapshot's hash of its bytes.
    fn finish(&self, m: &Manifest, hash_key: &[u8; 32]) -> Result<(), VaultError> {
        for (f, Target { path: target, file: handle, direct }) in m.files.iter().zip(&self.targets) {
            let cannot = |e: std::io::Error| VaultError::Io(format!("cannot write {}: {e}", target.display()));
            // The last block went out padded to whole sectors.
            if direct.is_some() {
                handle.set_len(f.size).map_err(cannot)?;
            }
            handle.sync_all().map_err(cannot)?;
            // Format 1 hashed the whole file's bytes: read them back once more.
            if m.format < 2 {
                let mut whole = blake3::Hasher::new_keyed(hash_key);
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
}

/// Which packs a restore reads, in the order it first needs them
/// ([`Layout::pack_uses`]).
struct PackUses {
    /// (pack, the first part that needs it).
    first_use: Vec<(usize, usize)>,
    /// Each pack's byte ranges this snapshot uses, sorted and merged.
    used: Vec<Vec<(u64, u64)>>,
}

impl Restore<'_> {
    /// Writes every part: the workers, the read-ahead of packs and the early
    /// syncs of written parts. A failure is left in `failure`.
    fn run(&self) {
        let workers = workers();
        // Written parts go to disk while the work goes on, so the final sync
        // has little left to do.
        let (sync_tx, sync_rx) = sync_channel::<usize>(64);
        let uses = self.layout.pack_uses(self.segments, self.packs.len());
        std::thread::scope(|scope| {
            scope.spawn(move || self.warm(uses));
            scope.spawn(move || self.sync_written(sync_rx));
            for _ in 0..workers {
                let sync_tx = sync_tx.clone();
                scope.spawn(move || self.work(&sync_tx));
            }
            drop(sync_tx);
        });
    }

    /// Stops the restore with its first failure.
    fn fail(&self, e: VaultError) {
        self.stop.store(true, Ordering::Relaxed);
        self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(e);
    }

    /// What a restore needs of local packs is read through ahead of the
    /// workers, in large sequential reads: a worker then finds its segments
    /// in the page cache instead of waiting on one small read after another
    /// (docs/benchmarks.md). No further ahead than a few parts, so that a
    /// large restore does not push what it read out of the cache before it
    /// is used.
    fn warm(&self, uses: PackUses) {
        const AHEAD: usize = 4;
        let mut buf = vec![0u8; 2 << 20];
        for (p, part) in uses.first_use {
            while part > self.next.load(Ordering::Relaxed) + AHEAD {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let _ = self.vault.regions.iter().any(|r| r.warm(&self.packs[p], &uses.used[p], &mut buf));
        }
    }

    /// Syncs the files whose parts were written, as they come.
    fn sync_written(&self, sync_rx: Receiver<usize>) {
        while let Ok(first) = sync_rx.recv() {
            let mut files = BTreeSet::from([first]);
            files.extend(sync_rx.try_iter());
            for f in files {
                // Only early: the final sync reports any failure.
                let _ = self.layout.targets[f].file.sync_data();
            }
        }
    }

    /// A worker: takes parts until none is left or the restore stops.
    fn work(&self, sync_tx: &SyncSender<usize>) {
        // Blocks changed since the base interleave a newer segment
        // with the base's: keep the last few segments, newest first.
        let mut cache: Vec<(usize, Vec<u8>)> = Vec::with_capacity(8);
        let mut stage = Vec::new();
        let mut aligned = AlignedStage::default();
        let mut zd = match zstd::bulk::Decompressor::new() {
            Ok(zd) => zd,
            Err(e) => {
                self.fail(VaultError::Io(format!("cannot start decompressing: {e}")));
                return;
            }
        };
        while !self.stop.load(Ordering::Relaxed) {
            let Some((file, offset, range)) = self.layout.parts.get(self.next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            let target = &self.layout.targets[*file];
            let mut out = PartWriter {
                file: &target.file,
                direct: target.direct.as_ref(),
                path: &target.path,
                at: *offset,
                stage: std::mem::take(&mut stage),
                stage_at: *offset,
                aligned: std::mem::take(&mut aligned),
            };
            let mut written = self.write_part(*file, range.clone(), &mut cache, &mut zd, &mut out);
            written = written.and_then(|()| out.drain());
            (stage, aligned) = (out.stage, out.aligned);
            // Direct writes are on the disk already.
            if written.is_ok() && target.direct.is_none() {
                let _ = sync_tx.try_send(*file);
            }
            if let Err(e) = written {
                self.fail(e);
            }
        }
    }

    /// Writes the blocks `range` of file `file` to `out`, each proven.
    fn write_part(
        &self,
        file: usize,
        range: Range<usize>,
        cache: &mut Vec<(usize, Vec<u8>)>,
        zd: &mut zstd::bulk::Decompressor<'_>,
        out: &mut PartWriter<'_>,
    ) -> Result<(), VaultError> {
        // Consecutive blocks lying side by side in the newest cached
        // segment go to the writer as one run.
        let mut run: Option<(usize, usize)> = None;
        let blocks = &self.m.files[file].blocks[range.clone()];
        for (h, &(n, start, len)) in blocks.iter().zip(&self.layout.places[file][range]) {
            let (start, end) = (start as usize, start as usize + len as usize);
            let same = cache.first().is_some_and(|(c, _)| *c == n);
            if !same || run.is_some_and(|(_, to)| to != start) {
                self.flush_run(cache, &mut run, out)?;
            }
            self.bring_to_front(n, cache, zd)?;
            let bytes = cache[0]
                .1
                .get(start..end)
                .ok_or_else(|| VaultError::Corrupt(format!("block {h} lies outside its segment")))?;
            // A block of an index from before format 3 has no nonce to vouch for it.
            let vouched = self.authentic && self.segments[n].1.nonce.is_some();
            if !vouched && blake3::keyed_hash(&self.hash_key, bytes) != *h {
                return Err(VaultError::Corrupt(format!("block {h} does not match its hash")));
            }
            run = Some((run.map_or(start, |(from, _)| from), end));
        }
        self.flush_run(cache, &mut run, out)
    }

    /// Hands the run gathered from the newest cached segment to the writer.
    fn flush_run(
        &self,
        cache: &[(usize, Vec<u8>)],
        run: &mut Option<(usize, usize)>,
        out: &mut PartWriter<'_>,
    ) -> Result<(), VaultError> {
        let Some((from, to)) = run.take() else { return Ok(()) };
        out.put(&cache[0].1[from..to])?;
        let n = (to - from) as u64;
        (self.progress)(self.done.fetch_add(n, Ordering::Relaxed) + n, self.m.size);
        Ok(())
    }

    /// Puts segment `n` first in the cache, read and decoded if it is not there.
    fn bring_to_front(
        &self,
        n: usize,
        cache: &mut Vec<(usize, Vec<u8>)>,
        zd: &mut zstd::bulk::Decompressor<'_>,
    ) -> Result<(), VaultError> {
        match cache.iter().position(|(c, _)| *c == n) {
            Some(0) => {}
            Some(i) => {
                let hit = cache.remove(i);
                cache.insert(0, hit);
            }
            None => {
                let (pack, seg, plain) = &self.segments[n];
                let plain =
                    self.vault.read_segment(&self.packs[*pack], seg, *plain, self.key, self.aad.as_bytes(), zd)?;
                cache.insert(0, (n, plain));
                cache.truncate(8);
            }
        }
        Ok(())
    }
}
