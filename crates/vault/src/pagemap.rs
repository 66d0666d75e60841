//! The change map: what the last backup on this node read of each file, so
//! that the next one need not hash again the blocks that did not change.
//!
//! Hashing every 4 KiB page with keyed BLAKE3 was the largest cost of a
//! backup after a small update (a quarter of its CPU, docs/benchmarks.md).
//! The map keeps, per block position, a 128-bit fingerprint of the block
//! (XXH3-128 under a 192-byte secret derived from the database's key, four
//! times as fast on pages) beside the block's BLAKE3 hash. A block whose
//! fingerprint matches the one recorded at its position takes the recorded
//! hash, provided that block is still stored in the current epoch.
//!
//! XXH3 is not a MAC, so the map is held to what makes a wrong match out of
//! reach: the secret never leaves this node's memory and the map file is
//! sealed with AES-256-GCM under the database's key (so it cannot be read
//! for fingerprints, nor altered or damaged without being ignored as a
//! whole); a map serves only the epoch it was made in, so every block is
//! hashed in full at least once per epoch; and a change must also keep the
//! block's length. The map is a cache: losing it costs one full hash.

use std::path::{Path, PathBuf};

use crate::format::{Key, open_in_place, seal};

/// A block's fingerprint.
pub(crate) type Fingerprint = u128;

const MAGIC: &[u8; 8] = b"sdpgmap2";
const ENTRY: usize = 16 + 32;

/// Fingerprints blocks with the database's own secret.
pub(crate) struct Fingerprinter {
    secret: [u8; 192],
}

impl Fingerprinter {
    pub(crate) fn new(key: &Key) -> Self {
        let mut secret = [0u8; 192];
        let mut h = blake3::Hasher::new_derive_key("seldesk vault page fingerprint v1");
        h.update(key.bytes());
        h.finalize_xof().fill(&mut secret);
        Self { secret }
    }

    pub(crate) fn of(&self, block: &[u8]) -> Fingerprint {
        xxhash_rust::xxh3::xxh3_128_with_secret(block, &self.secret)
    }
}

/// One file's map: the epoch and block size it was made with, the snapshot
/// whose backup made it, then each block's fingerprint and hash in file order.
pub(crate) struct PageMap {
    pub epoch: i64,
    pub block: u32,
    pub snapshot: String,
    pub entries: Vec<(Fingerprint, blake3::Hash)>,
}

impl PageMap {
    /// The hash recorded for block `i` if its fingerprint is `fp`.
    pub(crate) fn hash_of(&self, i: usize, fp: Fingerprint) -> Option<blake3::Hash> {
        self.entries.get(i).filter(|(f, _)| *f == fp).map(|(_, h)| *h)
    }

    /// The folder of database `db`'s maps (none for a name that is not a
    /// plain identifier): prune removes it with the database's key.
    pub(crate) fn folder(dir: &Path, db: &str) -> Option<PathBuf> {
        let plain = !db.is_empty() && db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        plain.then(|| dir.join(db))
    }

    /// The map file of `path` in database `db`: named by a hash of the path,
    /// so no file name from a snapshot reaches the file system.
    fn file(dir: &Path, db: &str, path: &str) -> Option<PathBuf> {
        let name = blake3::hash(path.as_bytes()).to_hex();
        Some(Self::folder(dir, db)?.join(format!("{}.map", &name[..32])))
    }

    fn aad(db: &str, path: &str) -> Vec<u8> {
        format!("seldesk-vault-map:{db}:{path}").into_bytes()
    }

    /// The map of `path`, or none if there is none or it cannot be trusted.
    pub(crate) fn load(dir: &Path, key: &Key, db: &str, path: &str) -> Option<Self> {
        // Decrypted where it was read: a copy of 6 MB (130,000 pages) less,
        // on the way of every backup that has a map.
        let mut sealed = std::fs::read(Self::file(dir, db, path)?).ok()?;
        let plain = open_in_place(key, &mut sealed, &Self::aad(db, path)).ok()?;
        let (head, rest) = plain.split_at_checked(22)?;
        let named = usize::from(u16::from_le_bytes(head[20..22].try_into().ok()?));
        let (snapshot, body) = rest.split_at_checked(named)?;
        if &head[..8] != MAGIC || body.len() % ENTRY != 0 {
            return None;
        }
        let epoch = i64::from_le_bytes(head[8..16].try_into().ok()?);
        let block = u32::from_le_bytes(head[16..20].try_into().ok()?);
        let snapshot = String::from_utf8(snapshot.to_vec()).ok()?;
        let entries = body
            .chunks_exact(ENTRY)
            .map(|e| {
                let fp = u128::from_le_bytes(e[..16].try_into().unwrap_or_default());
                let hash = blake3::Hash::from_bytes(e[16..].try_into().unwrap_or_default());
                (fp, hash)
            })
            .collect();
        Some(Self { epoch, block, snapshot, entries })
    }

    /// Replaces the map of `path`. Not synced: a map a crash tore fails its
    /// seal and is ignored, and the rename never leaves half a map in place.
    pub(crate) fn store(&self, dir: &Path, key: &Key, db: &str, path: &str) -> Result<(), String> {
        let snapshot = self.snapshot.as_bytes();
        let named = u16::try_from(snapshot.len()).map_err(|_| "snapshot id too long".to_string())?;
        let mut plain = Vec::with_capacity(22 + snapshot.len() + self.entries.len() * ENTRY);
        plain.extend_from_slice(MAGIC);
        plain.extend_from_slice(&self.epoch.to_le_bytes());
        plain.extend_from_slice(&self.block.to_le_bytes());
        plain.extend_from_slice(&named.to_le_bytes());
        plain.extend_from_slice(snapshot);
        for (fp, hash) in &self.entries {
            plain.extend_from_slice(&fp.to_le_bytes());
            plain.extend_from_slice(hash.as_bytes());
        }
        let Some(target) = Self::file(dir, db, path) else { return Ok(()) };
        let sealed = seal(key, &plain, &Self::aad(db, path)).map_err(|e| e.to_string())?;
        if let Some(folder) = target.parent() {
            std::fs::create_dir_all(folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
        }
        let tmp = target.with_extension("new");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut open = std::fs::OpenOptions::new();
            open.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
            open.open(&tmp)?.write_all(&sealed)?;
            std::fs::rename(&tmp, &target)
        };
        write().map_err(|e| format!("cannot write {}: {e}", target.display()))
    }
}
