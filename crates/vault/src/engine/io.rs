//! The vault's file I/O: how a backup reads a source file (direct or
//! through the page cache, with read-ahead, in chunks of whole blocks split
//! between readers) and how a restore writes its files (direct where the
//! file system takes it, else gathered runs through the page cache).

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use crate::VaultError;
use crate::store::{ALIGN, aligned_start};

/// Readers of a backup of mostly new blocks (direct I/O). It is bound by
/// the CPU: two streams read a cold file faster than one, and more gain
/// nothing (1.00 s with 2, 1.02 s with 8 for 532 MB; docs/benchmarks.md).
pub(super) const READERS_DIRECT: usize = 2;
/// Readers of a backup of mostly known blocks (through the page cache). It
/// is bound by the disk, which reads faster with more requests in flight.
/// After a 1% update of 532 MB, medians of alternating runs: 0.42 s with 8
/// against 0.64 s with 2 in one series, 0.49 s against 0.61 s with 4 in
/// another (docs/benchmarks.md).
pub(super) const READERS_CACHED: usize = 8;
/// Files of at least twice this many chunks are split between the readers.
pub(super) const SPLIT: usize = 16;

/// Bytes the backup reader hands to a worker at a time (whole blocks).
pub(super) const CHUNK: usize = 1 << 20;

/// [`CHUNK`] rounded down to whole blocks of `block` bytes (at least 512).
pub(super) fn chunk_size(block: usize) -> usize {
    let block = block.max(512);
    (CHUNK / block).max(1) * block
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
pub(super) struct Target {
    pub(super) path: PathBuf,
    pub(super) file: std::fs::File,
    /// The same file opened for direct writes, where the file system takes them.
    pub(super) direct: Option<std::fs::File>,
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
pub(super) fn open_direct(file: &std::fs::File, path: &Path, size: u64) -> Option<std::fs::File> {
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
pub(super) fn open_direct(_file: &std::fs::File, _path: &Path, _size: u64) -> Option<std::fs::File> {
    None
}

/// A buffer aligned for direct writes, reused from part to part (allocated
/// on first use).
#[derive(Default)]
pub(super) struct AlignedStage {
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
pub(super) struct PartWriter<'a> {
    pub(super) file: &'a std::fs::File,
    pub(super) direct: Option<&'a std::fs::File>,
    pub(super) path: &'a Path,
    /// Where the next run goes.
    pub(super) at: u64,
    pub(super) stage: Vec<u8>,
    /// Where `stage` (or `aligned`) goes.
    pub(super) stage_at: u64,
    pub(super) aligned: AlignedStage,
}

impl PartWriter<'_> {
    /// Runs at least this long are written where they lie.
    const DIRECT: usize = 128 << 10;
    /// Gathered runs are written once they add up to this.
    const STAGE: usize = 512 << 10;

    pub(super) fn put(&mut self, bytes: &[u8]) -> Result<(), VaultError> {
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
    pub(super) fn drain(&mut self) -> Result<(), VaultError> {
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

/// The chunk ranges (first, end; none for the file's end) the readers read
/// of a file of `len` bytes: a large file in one range per reader, so that
/// several streams keep the disk busy.
pub(super) fn ranges_of(len: u64, block: usize, readers: usize) -> Vec<(usize, Option<usize>)> {
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
pub(super) fn read_ahead(path: &Path, len: u64, block: usize) {
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
pub(super) fn read_pages_ahead(path: &Path, len: u64, block: usize, pages: &[u32]) {
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

pub(super) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A file a backup reads, with direct I/O (Linux, where the file system
/// allows it) when asked: see `Vault::backup` for when.
pub(super) struct SourceFile {
    file: std::fs::File,
    direct: bool,
    path: PathBuf,
    offset: u64,
}

impl SourceFile {
    pub(super) fn open(path: &Path, offset: u64, direct: bool) -> std::io::Result<Self> {
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
    pub(super) fn read_chunk(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
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
