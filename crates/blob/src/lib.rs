//! Blob storage for files people send us (CVs, uploads). Objects live under
//! a root folder by key; [`SealedBlobs`] encrypts each one with
//! XChaCha20-Poly1305 under a key kept outside the blob folder, with the
//! object's key as associated data (a blob copied under another name does
//! not open). Erasing a blob removes its file.

use std::path::{Path, PathBuf};

use object_store::ObjectStoreExt;

pub use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};

pub mod bucket;
pub mod sealed_file;

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob key `{0}` is not valid: use letters, digits, `-`, `_` and `/` between segments")]
    BadKey(String),
    #[error("blob `{0}` already exists")]
    Exists(String),
    #[error("blob `{0}` does not open: it was altered, or sealed under another key")]
    Corrupt(String),
    #[error("blob store key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob store {0}")]
    Bucket(String),
}

/// Objects written once, in a folder (write to a temporary name, then
/// link) or in a bucket (a create-only put).
#[derive(Clone)]
pub struct BlobStore {
    root: PathBuf,
    bucket: Option<(std::sync::Arc<dyn object_store::ObjectStore>, String)>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.bucket {
            Some((_, url)) => f.debug_struct("BlobStore").field("bucket", url).finish(),
            None => f.debug_struct("BlobStore").field("root", &self.root).finish(),
        }
    }
}

fn check_key(key: &str) -> Result<(), BlobError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        });
    if ok { Ok(()) } else { Err(BlobError::BadKey(key.to_string())) }
}

impl BlobStore {
    /// A store in a local folder (created on first write).
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), bucket: None }
    }

    /// A store in a bucket: `s3://bucket[/prefix]` or `gs://bucket[/prefix]`
    /// ([`bucket::open`]).
    pub fn bucket(address: &str) -> Result<Self, BlobError> {
        let (store, url) = bucket::open(address).map_err(BlobError::Bucket)?;
        Ok(Self { root: PathBuf::new(), bucket: Some((store, url)) })
    }

    fn bucket_err(url: &str, key: &str, e: object_store::Error) -> BlobError {
        BlobError::Bucket(format!("{url}: {key}: {e}"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an object lives on disk.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Stores an object; refuses to replace one.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BlobError> {
        if let Some((store, url)) = &self.bucket {
            check_key(key)?;
            let opts = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
            let put = store.put_opts(&object_store::path::Path::from(key), bytes.into(), opts).await;
            return match put {
                Ok(_) => Ok(()),
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    Err(BlobError::Exists(key.to_string()))
                }
                Err(e) => Err(Self::bucket_err(url, key, e)),
            };
        }
        let path = self.path_of(key)?;
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            if path.exists() {
                return Err(BlobError::Exists(key));
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7().simple()));
            std::fs::write(&tmp, &bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            // hard_link fails if the target exists: no object is ever replaced.
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(BlobError::Exists(key)),
                Err(e) => Err(e.into()),
            }
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
    }

    /// An object's bytes, or `None` when there is none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        if let Some((store, url)) = &self.bucket {
            check_key(key)?;
            let path = object_store::path::Path::from(key);
            let got = async { store.get(&path).await?.bytes().await };
            return match got.await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(Self::bucket_err(url, key, e)),
            };
        }
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes an object; `false` when there was none.
    pub async fn delete(&self, key: &str) -> Result<bool, BlobError> {
        if let Some((store, url)) = &self.bucket {
            check_key(key)?;
            let path = object_store::path::Path::from(key);
            // A bucket's delete says nothing of what was there: asked first.
            match store.head(&path).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => return Ok(false),
                Err(e) => return Err(Self::bucket_err(url, key, e)),
            }
            return match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
                Err(e) => Err(Self::bucket_err(url, key, e)),
            };
        }
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Objects larger than this go to a bucket in parts of this size, so a
/// file of gigabytes never sits in memory.
const PART: usize = 8 * 1024 * 1024;

impl BlobStore {
    /// Where an object lives on this machine's disk, for a store in a
    /// folder; `None` for a bucket.
    pub fn local_path(&self, key: &str) -> Result<Option<PathBuf>, BlobError> {
        match &self.bucket {
            Some(_) => {
                check_key(key)?;
                Ok(None)
            }
            None => self.path_of(key).map(Some),
        }
    }

    /// Stores the file at `from` as an object and removes the file: moved
    /// into a folder store, streamed to a bucket in parts. Refuses to
    /// replace an object. Returns the object's size.
    pub async fn put_file(&self, key: &str, from: &Path) -> Result<u64, BlobError> {
        let len = tokio::fs::metadata(from).await?.len();
        let Some((store, url)) = &self.bucket else {
            let path = self.path_of(key)?;
            let (from, key) = (from.to_path_buf(), key.to_string());
            return tokio::task::spawn_blocking(move || {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                // hard_link fails if the target exists: no object is replaced.
                match std::fs::hard_link(&from, &path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(BlobError::Exists(key)),
                    // Another file system: copied beside the target, then linked.
                    Err(_) => {
                        let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7().simple()));
                        std::fs::copy(&from, &tmp)?;
                        std::fs::File::open(&tmp)?.sync_all()?;
                        let linked = std::fs::hard_link(&tmp, &path);
                        let _ = std::fs::remove_file(&tmp);
                        match linked {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                                return Err(BlobError::Exists(key));
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                std::fs::remove_file(&from)?;
                Ok(len)
            })
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?;
        };
        check_key(key)?;
        let path = object_store::path::Path::from(key);
        if len as usize <= PART {
            let bytes = tokio::fs::read(from).await?;
            let opts = object_store::PutOptions { mode: object_store::PutMode::Create, ..Default::default() };
            match store.put_opts(&path, bytes.into(), opts).await {
                Ok(_) => {}
                Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                    return Err(BlobError::Exists(key.to_string()));
                }
                Err(e) => return Err(Self::bucket_err(url, key, e)),
            }
        } else {
            // Multipart uploads cannot be made create-only: the key is asked first.
            match store.head(&path).await {
                Ok(_) => return Err(BlobError::Exists(key.to_string())),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Self::bucket_err(url, key, e)),
            }
            let upload = store.put_multipart(&path).await.map_err(|e| Self::bucket_err(url, key, e))?;
            let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART);
            let mut file = tokio::fs::File::open(from).await?;
            let mut buf = vec![0u8; PART];
            let sent: Result<(), BlobError> = async {
                use tokio::io::AsyncReadExt;
                loop {
                    let n = file.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    // At most two parts in flight: memory stays bounded.
                    writer.wait_for_capacity(2).await.map_err(|e| Self::bucket_err(url, key, e))?;
                    writer.write(&buf[..n]);
                }
            }
            .await;
            match sent {
                Ok(()) => {
                    writer.finish().await.map_err(|e| Self::bucket_err(url, key, e))?;
                }
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            }
        }
        tokio::fs::remove_file(from).await?;
        Ok(len)
    }

    /// Copies an object into the file `to` (replacing it), streaming;
    /// `false` when there is no such object.
    pub async fn get_to_file(&self, key: &str, to: &Path) -> Result<bool, BlobError> {
        let Some((store, url)) = &self.bucket else {
            let path = self.path_of(key)?;
            return match tokio::fs::copy(&path, to).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        check_key(key)?;
        let got = match store.get(&object_store::path::Path::from(key)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(Self::bucket_err(url, key, e)),
        };
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let mut out = tokio::fs::File::create(to).await?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.map_err(|e| Self::bucket_err(url, key, e))?).await?;
        }
        out.flush().await?;
        out.sync_all().await?;
        Ok(true)
    }

    /// An object's size, or `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let Some((store, url)) = &self.bucket else {
            return match tokio::fs::metadata(self.path_of(key)?).await {
                Ok(m) => Ok(Some(m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            };
        };
        check_key(key)?;
        match store.head(&object_store::path::Path::from(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::bucket_err(url, key, e)),
        }
    }

    /// An object to read from blocking code (read it on a blocking thread:
    /// a bucket's object is fetched as it is read), with its size; `None`
    /// when there is none.
    pub async fn reader(&self, key: &str) -> Result<Option<(Box<dyn std::io::Read + Send>, u64)>, BlobError> {
        let Some((store, url)) = &self.bucket else {
            let file = match std::fs::File::open(self.path_of(key)?) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let len = file.metadata()?.len();
            return Ok(Some((Box::new(std::io::BufReader::with_capacity(256 * 1024, file)), len)));
        };
        check_key(key)?;
        let got = match store.get(&object_store::path::Path::from(key)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Self::bucket_err(url, key, e)),
        };
        let len = got.meta.size;
        use futures_util::TryStreamExt;
        let stream = got.into_stream().map_err(std::io::Error::other);
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
        Ok(Some((Box::new(std::io::BufReader::with_capacity(256 * 1024, reader)), len)))
    }
}

/// The cipher of the 32-byte key in `key_file`, creating a new random key
/// (readable by the owner only) on first use. Losing the key loses the data.
pub fn load_or_create_key(key_file: &Path) -> Result<XChaCha20Poly1305, BlobError> {
    let key_err = |message: String| BlobError::KeyFile { path: key_file.to_path_buf(), message };
    let key = match std::fs::read(key_file) {
        Ok(k) if k.len() == 32 => k,
        Ok(k) => return Err(key_err(format!("holds {} bytes, expected 32", k.len()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut k = vec![0u8; 32];
            getrandom::fill(&mut k).map_err(|e| key_err(format!("no randomness: {e}")))?;
            if let Some(parent) = key_file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            write_private(key_file, &k)?;
            k
        }
        Err(e) => return Err(key_err(e.to_string())),
    };
    XChaCha20Poly1305::new_from_slice(&key).map_err(|e| key_err(e.to_string()))
}

/// A blob store whose objects are encrypted at rest.
#[derive(Clone)]
pub struct SealedBlobs {
    store: BlobStore,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SealedBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBlobs").field("store", &self.store).finish_non_exhaustive()
    }
}

const NONCE_LEN: usize = 24;

impl SealedBlobs {
    /// Opens the store with the key in `key_file`, creating a new random key
    /// (readable by the owner only) on first use. Losing the key loses the blobs.
    pub fn open(store: BlobStore, key_file: &Path) -> Result<Self, BlobError> {
        Ok(Self { store, cipher: load_or_create_key(key_file)? })
    }

    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// Encrypts and stores `bytes` under `key`.
    pub async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        check_key(key)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))?;
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: bytes, aad: key.as_bytes() })
            .map_err(|_| BlobError::Corrupt(key.to_string()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        self.store.put(key, out).await
    }

    /// Reads and decrypts `key`; an altered object is an error, never garbage.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let Some(raw) = self.store.get(key).await? else { return Ok(None) };
        if raw.len() < NONCE_LEN {
            return Err(BlobError::Corrupt(key.to_string()));
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| BlobError::Corrupt(key.to_string()))?;
        self.cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad: key.as_bytes() })
            .map(Some)
            .map_err(|_| BlobError::Corrupt(key.to_string()))
    }

    pub async fn delete(&self, key: &str) -> Result<bool, BlobError> {
        self.store.delete(key).await
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    std::fs::write(path, bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_move_into_a_folder_store_once_and_read_back_streaming() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = BlobStore::local(dir.path().join("objects"));
        let file = dir.path().join("spooled");
        let bytes: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        std::fs::write(&file, &bytes).expect("write");
        assert_eq!(store.put_file("uploads/a1", &file).await.expect("put"), bytes.len() as u64);
        assert!(!file.exists(), "the file became the object");
        assert_eq!(store.local_path("uploads/a1").expect("path"), Some(dir.path().join("objects/uploads/a1")));
        assert_eq!(store.size("uploads/a1").await.expect("size"), Some(bytes.len() as u64));
        std::fs::write(&file, b"other").expect("write");
        assert!(matches!(store.put_file("uploads/a1", &file).await, Err(BlobError::Exists(_))));
        assert!(file.exists(), "a refused file is left to its owner");
        let copy = dir.path().join("copy");
        assert!(store.get_to_file("uploads/a1", &copy).await.expect("get"));
        assert_eq!(std::fs::read(&copy).expect("copy"), bytes);
        let (mut reader, len) = store.reader("uploads/a1").await.expect("reader").expect("there");
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut read).expect("read");
        assert_eq!((read, len), (bytes.clone(), bytes.len() as u64));
        assert!(store.delete("uploads/a1").await.expect("delete"));
        assert_eq!(store.size("uploads/a1").await.expect("size"), None);
        assert!(!store.get_to_file("uploads/a1", &copy).await.expect("get"));
        assert!(store.reader("uploads/a1").await.expect("reader").is_none());
        assert!(matches!(store.put_file("../a1", &file).await, Err(BlobError::BadKey(_))));
    }

    #[tokio::test]
    async fn sealed_blobs_are_encrypted_write_once_and_tamper_evident() {
        let dir = tempfile::tempdir().expect("tmp");
        let key_file = dir.path().join("keys/blobs.key");
        let blobs = SealedBlobs::open(BlobStore::local(dir.path().join("blobs")), &key_file).expect("open");
        let secret = b"Curriculum vitae of Ada Lovelace";
        blobs.put("cv/a1", secret).await.expect("put");
        let raw = std::fs::read(dir.path().join("blobs/cv/a1")).expect("raw");
        assert!(!raw.windows(secret.len()).any(|w| w == secret), "stored encrypted");
        assert_eq!(blobs.get("cv/a1").await.expect("get").as_deref(), Some(&secret[..]));
        assert!(matches!(blobs.put("cv/a1", b"other").await, Err(BlobError::Exists(_))));
        // The same key file opens the same blobs; a copy under another name does not open.
        let again = SealedBlobs::open(BlobStore::local(dir.path().join("blobs")), &key_file).expect("reopen");
        assert!(again.get("cv/a1").await.expect("get").is_some());
        std::fs::write(dir.path().join("blobs/cv/b2"), &raw).expect("copy");
        assert!(matches!(again.get("cv/b2").await, Err(BlobError::Corrupt(_))));
        let mut flipped = raw.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(dir.path().join("blobs/cv/a1"), &flipped).expect("tamper");
        assert!(matches!(again.get("cv/a1").await, Err(BlobError::Corrupt(_))));
        assert!(again.delete("cv/a1").await.expect("delete"));
        assert_eq!(again.get("cv/a1").await.expect("get"), None);
        for bad in ["../x", "a//b", "", "a/../b", "/abs"] {
            assert!(matches!(again.put(bad, b"x").await, Err(BlobError::BadKey(_))), "{bad}");
        }
    }
}
