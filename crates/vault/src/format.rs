//! What the vault stores: keys, sealed segments, pack indexes and snapshot
//! manifests. Every object but a key is named by the BLAKE3 hash of its
//! bytes, so any change to a stored object is detectable.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

use crate::VaultError;

/// A 256-bit key (the master key, or a database's key).
#[derive(Clone)]
pub struct Key(pub(crate) [u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(***)")
    }
}

impl Key {
    pub fn random() -> Result<Self, VaultError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|e| VaultError::Crypto(format!("no randomness: {e}")))?;
        Ok(Self(k))
    }

    /// The key for block hashes: keyed, so stored hashes say nothing about
    /// content to anyone without the database's key.
    pub fn hash_key(&self) -> [u8; 32] {
        blake3::derive_key("seldesk vault block hash v1", &self.0)
    }
}

/// Encrypts with AES-256-GCM: 12-byte random nonce, then ciphertext and tag.
pub fn seal(key: &Key, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    let cipher = Aes256Gcm::new_from_slice(&key.0).map_err(|e| VaultError::Crypto(e.to_string()))?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| VaultError::Crypto(format!("no randomness: {e}")))?;
    let ct = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| VaultError::Crypto("encryption failed".into()))?;
    let mut out = Vec::with_capacity(12 + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts what [`seal`] made; any change to the bytes or the context fails.
pub fn open(key: &Key, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, VaultError> {
    if sealed.len() < 12 + 16 {
        return Err(VaultError::Corrupt("sealed data too short".into()));
    }
    let cipher = Aes256Gcm::new_from_slice(&key.0).map_err(|e| VaultError::Crypto(e.to_string()))?;
    let nonce: [u8; 12] = sealed[..12].try_into().map_err(|_| VaultError::Corrupt("bad nonce".into()))?;
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: &sealed[12..], aad })
        .map_err(|_| VaultError::Corrupt("authentication failed (changed bytes or wrong key)".into()))
}

pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// The hash of a whole file (format 2): keyed BLAKE3 over its size and the
/// hashes of its blocks in order. Each block is checked against its own hash
/// when restored, so this proves the whole without hashing every byte twice.
pub fn file_hash(hash_key: &[u8; 32], size: u64, blocks: &[String]) -> String {
    let mut h = blake3::Hasher::new_keyed(hash_key);
    h.update(b"seldesk vault file v2");
    h.update(&size.to_le_bytes());
    for b in blocks {
        h.update(b.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Where a block lives: pack, the segment in it, and the block in the segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlockRef {
    pub hash: String,
    /// Offset of the block in the segment's plaintext.
    pub start: u32,
    pub len: u32,
}

/// A compressed and encrypted run of blocks inside a pack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segment {
    pub offset: u64,
    pub len: u32,
    pub blocks: Vec<BlockRef>,
}

/// The index of one pack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackIndex {
    pub database: String,
    pub pack: String,
    /// Dedup epoch: later snapshots reuse this pack's blocks only within it.
    pub epoch: i64,
    pub segments: Vec<Segment>,
}

/// A file of the snapshot as a list of block hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// `db.sqlite` or `files/<name>`.
    pub path: String,
    pub size: u64,
    /// Format 1: keyed BLAKE3 of the whole file's bytes; format 2: [`file_hash`].
    pub hash: String,
    pub blocks: Vec<String>,
}

/// A snapshot: everything needed to restore one database as it was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub database: String,
    /// Unix ms.
    pub taken_at: i64,
    pub epoch: i64,
    pub block_size: u32,
    pub files: Vec<FileEntry>,
    /// Index objects (by name) that locate every block.
    pub indexes: Vec<String>,
    /// Bytes of the files, and bytes newly stored for this snapshot.
    pub size: u64,
    pub added: u64,
}

pub fn key_name(db: &str) -> String {
    format!("keys/{db}")
}
pub fn pack_name(db: &str, id: &str) -> String {
    format!("packs/{db}/{id}")
}
pub fn index_name(db: &str, id: &str) -> String {
    format!("indexes/{db}/{id}")
}
pub fn snapshot_name(db: &str, id: &str) -> String {
    format!("snapshots/{db}/{id}")
}

/// The database and id of an object name (`packs/<db>/<id>`).
pub fn split(name: &str) -> Option<(&str, &str, &str)> {
    let mut it = name.splitn(3, '/');
    Some((it.next()?, it.next()?, it.next().unwrap_or("")))
}
