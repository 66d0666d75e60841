//! A region's write-once object store (BAK-1): an object is written once and
//! never changed; it cannot be deleted before its retain-until date. Locally
//! each region is a folder (`<data>/backups/<region>/`); a write lands under
//! a temporary name and is linked into place only when complete, so a crash
//! never leaves half an object under its real name.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::VaultError;
use crate::remote::Bucket;

/// One backup region's objects: a local folder, or a bucket.
#[derive(Debug, Clone)]
pub struct RegionStore {
    pub region: String,
    root: PathBuf,
    bucket: Option<Bucket>,
}

/// Objects at least this large (packs) are written with direct I/O where the
/// file system allows it ([`write_direct`]).
const DIRECT_MIN: usize = 1 << 20;

/// Alignment of buffers, offsets and lengths for direct I/O.
pub(crate) const ALIGN: usize = 4096;

/// Grows `buf` to hold `len` bytes from an [`ALIGN`]ed address and returns
/// where they start: a buffer for direct I/O without unsafe code.
pub(crate) fn aligned_start(buf: &mut Vec<u8>, len: usize) -> usize {
    if buf.len() < len + ALIGN {
        buf.resize(len + ALIGN, 0);
    }
    buf.as_ptr().align_offset(ALIGN).min(ALIGN)
}

/// Writes `data` to a new file at `path`, on disk when it returns.
fn write_synced(path: &Path, data: &[u8]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    if data.len() >= DIRECT_MIN && write_direct(path, data)? {
        return Ok(());
    }
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Writes a pack with direct I/O, through a small aligned buffer this thread
/// reuses; false if the file system refuses direct I/O (then nothing is
/// written). Through the page cache, a first backup's packs cost a tenth of
/// its CPU in the kernel's copy into newly allocated cache pages, then the
/// write-back (docs/benchmarks.md), and they pushed out of the cache what
/// the server had in use, for objects read again only by a restore.
#[cfg(target_os = "linux")]
fn write_direct(path: &Path, data: &[u8]) -> std::io::Result<bool> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const PIECE: usize = 1 << 20;
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let opened = fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path);
    let Ok(f) = opened else { return Ok(false) };
    BUF.with_borrow_mut(|buf| {
        let at = aligned_start(buf, PIECE);
        let piece = &mut buf[at..at + PIECE];
        for (k, part) in data.chunks(PIECE).enumerate() {
            // The last piece goes out padded to whole blocks; the file is cut
            // to the object's size after.
            let padded = part.len().next_multiple_of(ALIGN);
            piece[..part.len()].copy_from_slice(part);
            piece[part.len()..padded].fill(0);
            match f.write_all_at(&piece[..padded], (k * PIECE) as u64) {
                Ok(()) => {}
                // Some file systems refuse direct I/O only when it is used.
                Err(e) if k == 0 && e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        f.set_len(data.len() as u64)?;
        f.sync_all()?;
        Ok(true)
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 300
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
}

impl RegionStore {
    pub fn new(region: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        Self { region: region.into(), root: root.into(), bucket: None }
    }

    /// A region kept in a bucket (`s3://…`, `gs://…`); see [`Bucket::open`].
    pub fn remote(region: impl Into<String>, url: &str) -> Result<Self, VaultError> {
        Ok(Self { region: region.into(), root: PathBuf::from(url), bucket: Some(Bucket::open(url)?) })
    }

    /// Where the region's objects are, for messages.
    pub fn location(&self) -> String {
        match &self.bucket {
            Some(b) => b.url().to_string(),
            None => self.root.display().to_string(),
        }
    }

    fn key(prefix: &str, name: &str) -> Result<String, VaultError> {
        if !valid_name(name) {
            return Err(VaultError::Invalid(format!("`{name}` is not a valid object name")));
        }
        Ok(format!("{prefix}/{name}"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> Result<PathBuf, VaultError> {
        if !valid_name(name) {
            return Err(VaultError::Invalid(format!("`{name}` is not a valid object name")));
        }
        Ok(self.root.join("objects").join(name))
    }

    fn lock_path(&self, name: &str) -> Result<PathBuf, VaultError> {
        if !valid_name(name) {
            return Err(VaultError::Invalid(format!("`{name}` is not a valid object name")));
        }
        Ok(self.root.join("locks").join(name))
    }

    /// A bucket's "missing" names the region, as the folder's does.
    fn named(&self, e: VaultError, name: &str) -> VaultError {
        match e {
            VaultError::Missing(_) => VaultError::Missing(format!("{}: {name}", self.region)),
            other => other,
        }
    }

    fn io(&self, what: &str, name: &str, e: std::io::Error) -> VaultError {
        VaultError::Io(format!("region {}: cannot {what} {name}: {e}", self.region))
    }

    /// Writes `name` once. Writing the same bytes again is a no-op (a retried
    /// run); different bytes under an existing name are refused.
    pub fn put(&self, name: &str, data: &[u8], retain_until_ms: i64) -> Result<(), VaultError> {
        if let Some(b) = &self.bucket {
            let key = Self::key("objects", name)?;
            let same = |b: &crate::remote::Bucket| -> Result<(), VaultError> {
                if b.get(&key)? == data {
                    Ok(())
                } else {
                    Err(VaultError::Overwrite(format!("{}: {name}", self.region)))
                }
            };
            if b.size(&key).is_some() {
                return same(b);
            }
            // The lock first: an object never exists without its retain-until date.
            b.create(&Self::key("locks", name)?, retain_until_ms.to_string().as_bytes())?;
            if b.create(&key, data)? {
                return Ok(());
            }
            return same(b);
        }
        let path = self.path(name)?;
        if path.exists() {
            return if self.get(name)? == data {
                Ok(())
            } else {
                Err(VaultError::Overwrite(format!("{}: {name}", self.region)))
            };
        }
        // The lock first: an object never exists without its retain-until date.
        let lock = self.lock_path(name)?;
        if !lock.exists() {
            self.write_new(&lock, retain_until_ms.to_string().as_bytes(), name)?;
        }
        self.write_new(&path, data, name)
    }

    fn write_new(&self, path: &Path, data: &[u8], name: &str) -> Result<(), VaultError> {
        let tmp_dir = self.root.join(".tmp");
        fs::create_dir_all(&tmp_dir).map_err(|e| self.io("create", ".tmp", e))?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| self.io("create the folder of", name, e))?;
        }
        let tmp = tmp_dir.join(uuid::Uuid::now_v7().simple().to_string());
        write_synced(&tmp, data).map_err(|e| self.io("write", name, e))?;
        // A hard link fails if the name exists: create-once, atomically.
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if fs::read(path).map_err(|e| self.io("read", name, e))? == data {
                    Ok(())
                } else {
                    Err(VaultError::Overwrite(format!("{}: {name}", self.region)))
                }
            }
            Err(e) => Err(self.io("store", name, e)),
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        if self.bucket.is_some() {
            return self.size(name).is_some();
        }
        self.path(name).map(|p| p.is_file()).unwrap_or(false)
    }

    pub fn get(&self, name: &str) -> Result<Vec<u8>, VaultError> {
        if let Some(b) = &self.bucket {
            return b.get(&Self::key("objects", name)?).map_err(|e| self.named(e, name));
        }
        let path = self.path(name)?;
        fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                VaultError::Missing(format!("{}: {name}", self.region))
            } else {
                self.io("read", name, e)
            }
        })
    }

    /// Reads byte ranges (`start..end`, in order) of a local object through
    /// once, so that the page cache holds them for the reads that follow;
    /// false when there is nothing to read here (a bucket, or no such object).
    pub fn warm(&self, name: &str, ranges: &[(u64, u64)], buf: &mut [u8]) -> bool {
        if self.bucket.is_some() || buf.is_empty() {
            return false;
        }
        let Ok(mut f) = self.path(name).and_then(|p| File::open(p).map_err(|e| self.io("open", name, e))) else {
            return false;
        };
        for &(start, end) in ranges {
            if f.seek(SeekFrom::Start(start)).is_err() {
                return false;
            }
            let mut left = end.saturating_sub(start);
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                match f.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => left -= n as u64,
                }
            }
        }
        true
    }

    /// `len` bytes at `offset` of an object.
    pub fn get_range(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, VaultError> {
        if let Some(b) = &self.bucket {
            return b.get_range(&Self::key("objects", name)?, offset, len).map_err(|e| self.named(e, name));
        }
        let path = self.path(name)?;
        let mut f = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                VaultError::Missing(format!("{}: {name}", self.region))
            } else {
                self.io("open", name, e)
            }
        })?;
        f.seek(SeekFrom::Start(offset)).map_err(|e| self.io("seek in", name, e))?;
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).map_err(|e| self.io("read", name, e))?;
        Ok(buf)
    }

    pub fn size(&self, name: &str) -> Option<u64> {
        if let Some(b) = &self.bucket {
            return b.size(&Self::key("objects", name).ok()?);
        }
        self.path(name).ok().and_then(|p| fs::metadata(p).ok()).map(|m| m.len())
    }

    /// The retain-until date (Unix ms) of an object.
    pub fn retain_until(&self, name: &str) -> Option<i64> {
        if let Some(b) = &self.bucket {
            let bytes = b.get(&Self::key("locks", name).ok()?).ok()?;
            return String::from_utf8_lossy(&bytes).trim().parse().ok();
        }
        let lock = self.lock_path(name).ok()?;
        fs::read_to_string(lock).ok()?.trim().parse().ok()
    }

    /// Every object name under `prefix` (`packs/db1`), sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        if let Some(b) = &self.bucket {
            let under = if prefix.is_empty() { "objects".to_string() } else { Self::key("objects", prefix)? };
            return Ok(b
                .list(&under)?
                .into_iter()
                .filter_map(|n| n.strip_prefix("objects/").map(str::to_string))
                .collect());
        }
        let base = self.root.join("objects");
        // A prefix is a name too: never one that leaves the region's folder.
        if !prefix.is_empty() && !valid_name(prefix) {
            return Err(VaultError::Invalid(format!("`{prefix}` is not an object name")));
        }
        let start = if prefix.is_empty() { base.clone() } else { base.join(prefix) };
        let mut out = Vec::new();
        if start.is_file() {
            return Ok(vec![prefix.to_string()]);
        }
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io("list", prefix, e)),
            };
            for entry in rd.filter_map(Result::ok) {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&base) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes an object whose retain-until date has passed.
    pub fn delete(&self, name: &str, now_ms: i64) -> Result<(), VaultError> {
        let locked = |until: i64| VaultError::Locked { object: format!("{}: {name}", self.region), until_ms: until };
        if let Some(b) = &self.bucket {
            // A lock that cannot be read is not "no lock": refuse rather than guess.
            match b.get(&Self::key("locks", name)?) {
                Ok(bytes) => match String::from_utf8_lossy(&bytes).trim().parse::<i64>() {
                    Ok(until) if now_ms < until => return Err(locked(until)),
                    Ok(_) => {}
                    Err(_) => {
                        return Err(VaultError::Corrupt(format!("{}: the lock of {name} is unreadable", self.region)));
                    }
                },
                Err(VaultError::Missing(_)) => {}
                Err(e) => return Err(e),
            }
            b.delete(&Self::key("objects", name)?)?;
            return b.delete(&Self::key("locks", name)?);
        }
        if let Some(until) = self.retain_until(name)
            && now_ms < until
        {
            return Err(locked(until));
        }
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io("delete", name, e)),
        }
        let _ = fs::remove_file(self.lock_path(name)?);
        Ok(())
    }

    /// Moves a damaged object aside (an operator's repair), so a good copy
    /// can take its name; the damaged bytes are kept for inspection.
    pub fn quarantine(&self, name: &str) -> Result<PathBuf, VaultError> {
        if let Some(b) = &self.bucket {
            let to = format!("quarantine/{}.{}", name.replace('/', "_"), uuid::Uuid::now_v7().simple());
            let from = Self::key("objects", name)?;
            b.copy(&from, &to)?;
            b.delete(&from)?;
            return Ok(PathBuf::from(format!("{}/{to}", b.url())));
        }
        let from = self.path(name)?;
        let to =
            self.root.join("quarantine").join(format!("{}.{}", name.replace('/', "_"), uuid::Uuid::now_v7().simple()));
        fs::create_dir_all(to.parent().unwrap_or(&self.root)).map_err(|e| self.io("create", "quarantine", e))?;
        fs::rename(&from, &to).map_err(|e| self.io("quarantine", name, e))?;
        Ok(to)
    }

    /// Removes what crashed writes left behind.
    pub fn sweep_tmp(&self) {
        // A bucket's writes are atomic: nothing half-written to sweep.
        if self.bucket.is_some() {
            return;
        }
        if let Ok(rd) = fs::read_dir(self.root.join(".tmp")) {
            for e in rd.filter_map(Result::ok) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_written_once_and_kept_until_their_date() {
        let dir = tempfile::tempdir().expect("dir");
        let s = RegionStore::new("in", dir.path());
        s.put("packs/db1/abc", b"hello", 1_000).expect("put");
        s.put("packs/db1/abc", b"hello", 1_000).expect("same bytes again");
        assert!(matches!(s.put("packs/db1/abc", b"other", 1_000), Err(VaultError::Overwrite(_))));
        assert!(matches!(s.delete("packs/db1/abc", 999), Err(VaultError::Locked { .. })));
        assert_eq!(s.get("packs/db1/abc").expect("get"), b"hello");
        assert_eq!(s.list("packs").expect("list"), vec!["packs/db1/abc".to_string()]);
        s.delete("packs/db1/abc", 1_000).expect("delete after the date");
        assert!(!s.exists("packs/db1/abc"));
        assert!(matches!(s.put("../etc/passwd", b"x", 0), Err(VaultError::Invalid(_))));
    }

    #[test]
    fn large_objects_written_with_direct_io_read_back_exactly_at_any_size() {
        let dir = tempfile::tempdir().expect("dir");
        let s = RegionStore::new("in", dir.path());
        // Whole pieces, a short last piece, a last block cut short, and one
        // byte past a block: each is the object's bytes, no padding.
        for (k, len) in [2 << 20, (3 << 20) + 4096, DIRECT_MIN + 3, (5 << 20) + 4097].into_iter().enumerate() {
            let bytes: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
            let name = format!("packs/db1/p{k}");
            s.put(&name, &bytes, 0).expect("put");
            assert_eq!(s.size(&name), Some(len as u64));
            assert!(s.get(&name).expect("get") == bytes, "{len} bytes read back");
            s.put(&name, &bytes, 0).expect("the same bytes again");
        }
        // On tmpfs, which refuses direct I/O before Linux 6.6, the bytes
        // arrive the same either way.
        #[cfg(target_os = "linux")]
        if std::path::Path::new("/dev/shm").is_dir() {
            let shm = tempfile::tempdir_in("/dev/shm").expect("dir");
            let path = shm.path().join("object");
            let bytes = vec![7u8; DIRECT_MIN + 5];
            write_synced(&path, &bytes).expect("write");
            assert!(std::fs::read(&path).expect("read") == bytes);
        }
    }

    #[test]
    fn warming_reads_the_ranges_asked_for_and_says_when_it_cannot() {
        let dir = tempfile::tempdir().expect("dir");
        let s = RegionStore::new("in", dir.path());
        let bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        s.put("packs/db1/p", &bytes, 0).expect("put");
        // A buffer smaller than a range reads it in pieces.
        let mut buf = [0u8; 1000];
        assert!(s.warm("packs/db1/p", &[(0, 2500), (4000, 10_000)], &mut buf));
        assert!(s.warm("packs/db1/p", &[], &mut buf));
        // Past the end, a missing object or no buffer: nothing to warm.
        assert!(!s.warm("packs/db1/p", &[(9000, 12_000)], &mut buf));
        assert!(!s.warm("packs/db1/missing", &[(0, 10)], &mut buf));
        assert!(!s.warm("packs/db1/p", &[(0, 10)], &mut []));
    }
}
