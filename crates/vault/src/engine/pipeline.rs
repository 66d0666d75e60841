//! The pipeline of one backup run (backup.rs): readers read the files in
//! chunks; workers (one per core) hash every block, keep those not yet
//! stored in the epoch, and compress and seal them in segments; the run's
//! thread gathers segments into packs and hands each pack and its index to
//! one writer per region, so the regions are written while the work goes on.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::backup::{Assembly, BackupRun, Known, Made};
use super::io::{READERS_CACHED, READERS_DIRECT, SourceFile, chunk_size, ranges_of};
use super::{BlockMap, BlockSet, workers};
use crate::VaultError;
use crate::format::{BlockRef, PackIndex, Segment, content_hash, encode, index_name, pack_name, seal};
use crate::pagemap::Fingerprint;
use crate::store::aligned_start;

/// A raw segment on its way to compression.
struct RawSegment {
    data: Vec<u8>,
    blocks: Vec<BlockRef>,
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
pub(super) struct ChunkRead {
    pub(super) hashes: Vec<blake3::Hash>,
    /// The blocks' fingerprints, when change maps are kept.
    pub(super) fps: Vec<Fingerprint>,
    /// The epoch's indexes that hold its known blocks.
    pub(super) held: Vec<usize>,
    /// Positions of the blocks not yet stored in the epoch.
    pub(super) fresh: Vec<u32>,
    pub(super) bytes: u64,
}

/// What a backup worker hands back: a chunk's block hashes, or a sealed segment.
enum Work {
    Hashes { file: usize, no: usize, read: ChunkRead },
    Sealed(Vec<u8>, Vec<BlockRef>),
}

/// Where the workers send what they did.
type Out = SyncSender<Result<Work, VaultError>>;

/// A pack and its index, on their way to one region's writer.
type ToWriter = SyncSender<(String, Arc<Vec<u8>>)>;

/// What the threads of one run's pipeline share.
struct Pipeline<'a> {
    run: &'a BackupRun<'a>,
    known: &'a Known,
    progress: &'a (dyn Fn(u64, u64) + Sync),
    /// Whether the files are read with direct I/O (see [`Pipeline::new`]).
    direct: bool,
    readers: usize,
    /// What the readers read: file, first chunk, end chunk.
    ranges: Vec<(usize, usize, Option<usize>)>,
    next_range: AtomicUsize,
    pack_target: usize,
    aad: String,
    total: u64,
    done: AtomicU64,
    /// New blocks a worker has taken to store.
    seen: Mutex<BlockSet>,
    /// Read buffers go back to the reader instead of being freed.
    pool_rx: Mutex<Receiver<Vec<u8>>>,
}

impl<'a> BackupRun<'a> {
    /// Reads and stores the files: every new block in packs in every
    /// region, and the manifest that names them, not yet written.
    pub(super) fn store(
        &'a self,
        known: &'a Known,
        progress: &'a (dyn Fn(u64, u64) + Sync),
    ) -> Result<Made<'a>, VaultError> {
        let (pool_tx, pool_rx) = sync_channel::<Vec<u8>>(8);
        Pipeline::new(self, known, progress, pool_rx).run(pool_tx)
    }
}

impl<'a> Pipeline<'a> {
    fn new(
        run: &'a BackupRun<'a>,
        known: &'a Known,
        progress: &'a (dyn Fn(u64, u64) + Sync),
        pool_rx: Receiver<Vec<u8>>,
    ) -> Self {
        let (files, lens, settings) = (run.files, &run.lens, &run.vault.settings);
        // Mostly new blocks make a backup CPU-bound (every block is
        // compressed and sealed): then the files are read with direct I/O,
        // which spares the kernel's copy through the page cache, a seventh of
        // the CPU of a first backup (0.25–0.3 s less of 1.1–1.4 s for a 532 MB
        // database). Mostly known blocks make it bound by the disk: then the
        // kernel's read-ahead, with more readers, reads faster (0.42–0.47 s
        // against 0.50–0.66 s with direct reads). docs/benchmarks.md has the runs.
        let blocks: u64 = files.iter().zip(lens).map(|((_, _, b), len)| len.div_ceil((*b).max(512) as u64)).sum();
        let direct = (known.blocks.len() as u64) * 2 < blocks && known.skips.iter().all(Option::is_none);
        let readers = if direct { READERS_DIRECT } else { READERS_CACHED };
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
        Pipeline {
            run,
            known,
            progress,
            direct,
            readers,
            ranges,
            next_range: AtomicUsize::new(0),
            pack_target,
            aad: format!("seldesk-vault-segment:{}", run.db),
            total: lens.iter().sum(),
            done: AtomicU64::new(0),
            seen: Mutex::new(BlockSet::default()),
            pool_rx: Mutex::new(pool_rx),
        }
    }

    /// Runs the readers, the workers and the writers, packs on this thread,
    /// and builds the manifest once everything read is handed back.
    fn run(&self, pool_tx: SyncSender<Vec<u8>>) -> Result<Made<'a>, VaultError> {
        let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(4);
        // Shared by the workers, and dropped with the last of them: a reader
        // blocked on a full channel then sees the pipeline has stopped.
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        let (out_tx, out_rx) = sync_channel::<Result<Work, VaultError>>(8);
        std::thread::scope(|scope| {
            let reading: Vec<_> = (0..self.readers)
                .map(|reader| {
                    let chunk_tx = chunk_tx.clone();
                    scope.spawn(move || self.read(reader, &chunk_tx))
                })
                .collect();
            drop(chunk_tx);
            for _ in 0..workers() {
                let (chunk_rx, pool_tx, out_tx) = (chunk_rx.clone(), pool_tx.clone(), out_tx.clone());
                scope.spawn(move || self.work(&chunk_rx, &pool_tx, &out_tx));
            }
            drop((out_tx, pool_tx, chunk_rx));
            // One writer per region: a pack is written to every region at once.
            let (to_writers, writing): (Vec<ToWriter>, Vec<_>) = self
                .run
                .vault
                .regions
                .iter()
                .map(|r| {
                    let (tx, rx) = sync_channel::<(String, Arc<Vec<u8>>)>(2);
                    let until = self.run.until;
                    let handle = scope.spawn(move || -> Result<(), VaultError> {
                        for (name, bytes) in rx {
                            r.put(&name, &bytes, until)?;
                        }
                        Ok(())
                    });
                    (tx, handle)
                })
                .unzip();
            // This thread: pack, index, hand to the writers.
            let mut packer = Packer::new(self, to_writers);
            let mut assemblies: Vec<Assembly> = self
                .run
                .files
                .iter()
                .zip(&self.run.lens)
                .map(|((_, _, b), len)| Assembly::new((*b).max(512), *len))
                .collect();
            let failure = packer.gather(out_rx, &mut assemblies).err();
            let made = match failure {
                None => Some(self.run.manifest(
                    assemblies,
                    &self.known.index_names,
                    &packer.new_indexes,
                    packer.added,
                    &packer.locate,
                )),
                Some(_) => None,
            };
            drop(packer);
            let stopped: Vec<_> = writing
                .into_iter()
                .map(|w| w.join().map_err(|_| VaultError::Io("a backup writer failed".into())))
                .collect();
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
        })
    }

    /// A reader: reads ranges until none is left.
    fn read(&self, reader: usize, chunk_tx: &SyncSender<Chunk>) -> Result<(), VaultError> {
        while let Some(r) = self.ranges.get(self.next_range.fetch_add(1, Ordering::Relaxed)) {
            self.read_range(r, reader, chunk_tx)?;
        }
        Ok(())
    }

    /// Reads chunks `first..end` of file `i` (to its end if `end` is none).
    fn read_range(
        &self,
        &(i, first, end): &(usize, usize, Option<usize>),
        reader: usize,
        chunk_tx: &SyncSender<Chunk>,
    ) -> Result<(), VaultError> {
        let (_, source, block) = &self.run.files[i];
        let block = (*block).max(512);
        if let Some(skip) = &self.known.skips[i] {
            return self.read_runs(i, (first, end), block, skip, reader, chunk_tx);
        }
        let size = chunk_size(block);
        let cannot = |e: std::io::Error| cannot_read(source, e);
        let mut f = SourceFile::open(source, (first * size) as u64, self.direct).map_err(cannot)?;
        for no in first.. {
            if end.is_some_and(|end| no >= end) {
                break;
            }
            let (mut data, at) = self.buffer(size);
            let n = f.read_chunk(&mut data[at..at + size]).map_err(cannot)?;
            if n < size && end.is_some() {
                // A file under a read transaction (or a copy) cannot shrink.
                return Err(VaultError::Io(format!("{} shrank while it was read", source.display())));
            }
            if n == 0 {
                break;
            }
            send(chunk_tx, Chunk { file: i, no, reader, block, data, at, len: n })?;
            if n < size {
                break;
            }
        }
        Ok(())
    }

    /// [`Self::read_range`] of a file with blocks to skip: only the blocks
    /// not skipped, in runs; the rest of each chunk's buffer is never looked at.
    fn read_runs(
        &self,
        i: usize,
        (first, end): (usize, Option<usize>),
        block: usize,
        skip: &[bool],
        reader: usize,
        chunk_tx: &SyncSender<Chunk>,
    ) -> Result<(), VaultError> {
        let (source, len) = (&self.run.files[i].1, self.run.lens[i]);
        let size = chunk_size(block);
        let cannot = |e: std::io::Error| cannot_read(source, e);
        let f = std::fs::File::open(source).map_err(cannot)?;
        // A read that misses would have the kernel read ahead 128 KiB
        // around it: for scattered pages, mostly pages not needed.
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::Random);
        for no in first.. {
            let start = (no * size) as u64;
            if end.is_some_and(|end| no >= end) || start >= len {
                break;
            }
            let n = usize::try_from(len - start).unwrap_or(usize::MAX).min(size);
            let (mut data, at) = self.buffer(size);
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
                std::os::unix::fs::FileExt::read_exact_at(&f, &mut data[at + from..at + to], start + from as u64)
                    .map_err(cannot)?;
            }
            send(chunk_tx, Chunk { file: i, no, reader, block, data, at, len: n })?;
        }
        Ok(())
    }

    /// A read buffer from the pool (or a new one), and where in it `size`
    /// aligned bytes start.
    fn buffer(&self, size: usize) -> (Vec<u8>, usize) {
        let mut data = self.pool_rx.lock().ok().and_then(|p| p.try_recv().ok()).unwrap_or_default();
        let at = aligned_start(&mut data, size);
        (data, at)
    }

    /// A worker: hashes chunks, and seals their new blocks, until the
    /// readers are done or the pipeline stops.
    fn work(&self, chunk_rx: &Mutex<Receiver<Chunk>>, pool_tx: &SyncSender<Vec<u8>>, out_tx: &Out) {
        // One compression context per worker, not one per segment.
        let zc = match compressor() {
            Ok(zc) => zc,
            Err(e) => {
                let _ = out_tx.send(Err(e));
                return;
            }
        };
        let mut w = Worker {
            sealer: Sealer { zc, key: &self.run.key, aad: &self.aad },
            segs: (0..self.readers).map(|_| RawSegment { data: Vec::new(), blocks: Vec::new() }).collect(),
            new: Vec::new(),
            segment_size: self.run.vault.settings.segment_size,
        };
        loop {
            let next = chunk_rx.lock().map(|rx| rx.recv());
            let Ok(Ok(chunk)) = next else { break };
            let read = match self.hash(&chunk, &mut w.new) {
                Ok(read) => read,
                Err(e) => {
                    let _ = out_tx.send(Err(e));
                    return;
                }
            };
            // The blocks this run stores: not in the epoch, and not yet
            // taken by another worker (one lock per chunk, not per block).
            if !read.fresh.is_empty() {
                let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for (h, n) in read.hashes.iter().zip(w.new.iter_mut()) {
                    *n = *n && seen.insert(*h);
                }
            }
            if !w.store_new(&chunk, &read.hashes, out_tx) {
                return;
            }
            let n = chunk.len as u64;
            (self.progress)(self.done.fetch_add(n, Ordering::Relaxed) + n, self.total);
            let _ = pool_tx.try_send(chunk.data);
            let work = Work::Hashes { file: chunk.file, no: chunk.no, read };
            if out_tx.send(Ok(work)).is_err() {
                return;
            }
        }
        w.finish(out_tx);
    }

    /// Each block of `chunk` hashed (or its hash taken from the change map),
    /// and looked up once: the index that holds it goes into `held`, or its
    /// position into `fresh`. `new` is set to whether each is new to the epoch.
    fn hash(&self, chunk: &Chunk, new: &mut Vec<bool>) -> Result<ChunkRead, VaultError> {
        let (bytes, block, known) = (chunk.bytes(), chunk.block, &self.known.blocks);
        // A block whose fingerprint is as the map recorded takes
        // the recorded hash, if that block is stored in the epoch.
        let first = chunk.no * chunk_size(block) / block;
        // None if its loader failed: then every block is hashed.
        let map = self.known.maps.get(chunk.file).and_then(Option::as_ref);
        let skip = self.known.skips.get(chunk.file).and_then(Option::as_ref);
        let count = bytes.len().div_ceil(block);
        let (mut hashes, mut fps) = (Vec::with_capacity(count), Vec::new());
        let (mut held, mut fresh) = (Vec::<usize>::new(), Vec::<u32>::new());
        new.clear();
        for (i, b) in bytes.chunks(block).enumerate() {
            // Not read: as the map recorded, and stored (see `skips`).
            if skip.is_some_and(|s| s.get(first + i) == Some(&true)) {
                let recorded =
                    map.and_then(|m| m.entries.get(first + i)).and_then(|(fp, h)| Some((*fp, *h, *known.get(h)?)));
                let Some((fp, h, at)) = recorded else {
                    // Never so (`skips` checked both): its bytes were not read.
                    return Err(VaultError::Corrupt(format!(
                        "block {} of file {} was not read and its hash is unknown",
                        first + i,
                        chunk.file
                    )));
                };
                if held.last() != Some(&at) {
                    held.push(at);
                }
                new.push(false);
                hashes.push(h);
                fps.push(fp);
                continue;
            }
            let fp = self.run.fingerprint.as_ref().map(|f| f.of(b));
            let mapped = map.zip(fp).and_then(|(m, fp)| m.hash_of(first + i, fp));
            let found = mapped.and_then(|h| known.get(&h).map(|at| (h, *at)));
            let (h, at) = match found {
                Some((h, at)) => (h, Some(at)),
                None => {
                    let h = blake3::keyed_hash(&self.run.hash_key, b);
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
        Ok(ChunkRead { hashes, fps, held, fresh, bytes: chunk.len as u64 })
    }
}

/// A worker's own state.
struct Worker<'a> {
    sealer: Sealer<'a>,
    /// New blocks gather in one segment per reader. Each reader reads
    /// its own stretch of the file, and their chunks interleave: one
    /// segment for all would hold blocks from every stretch, and a
    /// restore, which writes the file stretch by stretch, would
    /// decompress it once for each (after a 1% update, 1,535
    /// segments decompressed instead of 1,227: docs/benchmarks.md).
    segs: Vec<RawSegment>,
    /// Whether each block of the chunk at hand is stored by this worker.
    new: Vec<bool>,
    segment_size: usize,
}

impl Worker<'_> {
    /// Gathers the chunk's new blocks into its reader's segment, and hands
    /// every segment that is full to the packer, sealed. False if the
    /// pipeline stopped.
    fn store_new(&mut self, chunk: &Chunk, hashes: &[blake3::Hash], out_tx: &Out) -> bool {
        let (bytes, block) = (chunk.bytes(), chunk.block);
        let seg = &mut self.segs[chunk.reader];
        if seg.data.is_empty() && self.new.iter().all(|n| *n) {
            // All new (all of a first backup): compressed where they
            // were read, not copied into a segment first.
            let piece = (self.segment_size / block).max(1);
            return bytes.chunks(piece * block).zip(hashes.chunks(piece)).all(|(data, hs)| {
                let blocks = data
                    .chunks(block)
                    .zip(hs)
                    .enumerate()
                    .map(|(i, (b, h))| BlockRef { hash: *h, start: (i * block) as u32, len: b.len() as u32 })
                    .collect();
                out_tx.send(self.sealer.seal(data, blocks)).is_ok()
            });
        }
        for ((b, h), _) in bytes.chunks(block).zip(hashes).zip(&self.new).filter(|(_, n)| **n) {
            seg.blocks.push(BlockRef { hash: *h, start: seg.data.len() as u32, len: b.len() as u32 });
            seg.data.extend_from_slice(b);
            if seg.data.len() >= self.segment_size {
                let work = self.sealer.seal(&seg.data, std::mem::take(&mut seg.blocks));
                seg.data.clear();
                if out_tx.send(work).is_err() {
                    return false;
                }
            }
        }
        true
    }

    /// Seals what is left in the segments.
    fn finish(&mut self, out_tx: &Out) {
        for seg in self.segs.iter_mut().filter(|s| !s.blocks.is_empty()) {
            if out_tx.send(self.sealer.seal(&seg.data, std::mem::take(&mut seg.blocks))).is_err() {
                return;
            }
        }
    }
}

/// Compresses and seals segments under the database's key.
struct Sealer<'a> {
    zc: zstd::bulk::Compressor<'static>,
    key: &'a crate::format::Key,
    aad: &'a str,
}

impl Sealer<'_> {
    fn seal(&mut self, data: &[u8], blocks: Vec<BlockRef>) -> Result<Work, VaultError> {
        let sealed = self
            .zc
            .compress(data)
            .map_err(|e| VaultError::Io(format!("compression failed: {e}")))
            .and_then(|c| seal(self.key, &c, self.aad.as_bytes()))?;
        Ok(Work::Sealed(sealed, blocks))
    }
}

/// The run's own thread: gathers sealed segments into packs, indexes each,
/// and hands both to the writers.
struct Packer<'a> {
    db: &'a str,
    epoch: i64,
    pack_target: usize,
    to_writers: Vec<ToWriter>,
    /// The number of the first index the run writes (after the known ones).
    first_new: usize,
    pack: Vec<u8>,
    segments: Vec<Segment>,
    added: u64,
    new_indexes: Vec<String>,
    /// Which index locates each new block: filled as packs are sealed,
    /// while the workers go on, not after them.
    locate: BlockMap<usize>,
}

impl<'a> Packer<'a> {
    fn new(p: &Pipeline<'a>, to_writers: Vec<ToWriter>) -> Self {
        Packer {
            db: p.run.db,
            epoch: p.run.epoch,
            pack_target: p.pack_target,
            to_writers,
            first_new: p.known.index_names.len(),
            pack: Vec::new(),
            segments: Vec::new(),
            added: 0,
            new_indexes: Vec::new(),
            locate: BlockMap::default(),
        }
    }

    /// Takes what the workers hand back until they are done: hashes into
    /// their file's assembly, sealed segments into packs. Stops at the first
    /// failure (the workers then see the pipeline has stopped).
    fn gather(
        &mut self,
        out_rx: Receiver<Result<Work, VaultError>>,
        assemblies: &mut [Assembly],
    ) -> Result<(), VaultError> {
        for item in out_rx {
            match item? {
                Work::Hashes { file, no, read } => assemblies[file].add(no, read),
                Work::Sealed(sealed, blocks) => {
                    let nonce = sealed.get(..12).and_then(|n| <[u8; 12]>::try_from(n).ok());
                    let (offset, len) = (self.pack.len() as u64, sealed.len() as u32);
                    self.segments.push(Segment { offset, len, blocks, nonce });
                    self.pack.extend_from_slice(&sealed);
                    if self.pack.len() >= self.pack_target {
                        self.flush()?;
                    }
                }
            }
        }
        self.flush()
    }

    /// Hands the pack and its index to the writers.
    fn flush(&mut self) -> Result<(), VaultError> {
        if self.segments.is_empty() {
            return Ok(());
        }
        let (db, pack) = (self.db, std::mem::take(&mut self.pack));
        let id = content_hash(&pack);
        self.added += pack.len() as u64;
        let segments = std::mem::take(&mut self.segments);
        let idx = PackIndex { database: db.to_string(), pack: id.clone(), epoch: self.epoch, segments };
        let bytes = encode(&idx)?;
        let iname = index_name(db, &content_hash(&bytes));
        // In each region the pack lands before its index (writers keep the order).
        if !self.put_all(pack_name(db, &id), pack) || !self.put_all(iname.clone(), bytes) {
            return Err(VaultError::Io("the backup writers stopped".into()));
        }
        for b in idx.segments.iter().flat_map(|s| &s.blocks) {
            self.locate.insert(b.hash, self.first_new + self.new_indexes.len());
        }
        self.new_indexes.push(iname);
        Ok(())
    }

    fn put_all(&self, name: String, bytes: Vec<u8>) -> bool {
        let bytes = Arc::new(bytes);
        self.to_writers.iter().all(|tx| tx.send((name.clone(), bytes.clone())).is_ok())
    }
}

fn send(chunk_tx: &SyncSender<Chunk>, chunk: Chunk) -> Result<(), VaultError> {
    chunk_tx.send(chunk).map_err(|_| VaultError::Io("the backup pipeline stopped".into()))
}

fn cannot_read(source: &Path, e: std::io::Error) -> VaultError {
    VaultError::Io(format!("cannot read {}: {e}", source.display()))
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
