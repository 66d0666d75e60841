//! A region's objects in an S3-compatible bucket or a Google Cloud Storage
//! bucket, through `object_store`. The same write-once rules as the local
//! folders: an object is created only if its name is free (S3 `If-None-Match`,
//! GCS generation preconditions), its retain-until date is recorded first as
//! a `locks/` object, and the vault refuses to delete it before that date. On
//! top of that, a bucket created with S3 Object Lock (default retention in
//! compliance mode) makes the provider itself refuse early deletion.

use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::runtime::Handle;

use crate::VaultError;

/// A bucket, with the runtime its calls run on (the vault's engine is
/// synchronous and runs on blocking threads).
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    handle: Handle,
    url: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("url", &self.url).finish()
    }
}

impl Bucket {
    /// Opens `s3://bucket[/prefix]` or `gs://bucket[/prefix]`. Credentials and
    /// options come from the environment as the providers' tools read them
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT` for other S3-compatible services, `AWS_ALLOW_HTTP`;
    /// `GOOGLE_SERVICE_ACCOUNT`…). Must be called inside a Tokio runtime.
    ///
    /// Settings that are not secrets may also follow the address as a query,
    /// with `object_store`'s key names:
    /// `s3://backups-in?endpoint=https://s3.example.net&region=eu-1&allow_http=false`.
    pub fn open(address: &str) -> Result<Self, VaultError> {
        let handle = Handle::try_current()
            .map_err(|_| VaultError::Invalid("a bucket can only be opened inside the server's runtime".into()))?;
        let (store, url) =
            seldesk_blob::bucket::open(address).map_err(|e| VaultError::Invalid(format!("backup store {e}")))?;
        // Messages name the bucket, never the query (it may carry settings).
        Ok(Self { store, handle, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs one call to completion. The engine calls this from blocking
    /// threads (`spawn_blocking`), never from an async task.
    fn run<T>(&self, f: impl Future<Output = T>) -> T {
        self.handle.block_on(f)
    }

    fn err(&self, what: &str, name: &str, e: object_store::Error) -> VaultError {
        match e {
            object_store::Error::NotFound { .. } => VaultError::Missing(name.to_string()),
            other => VaultError::Io(format!("{}: cannot {what} {name}: {other}", self.url)),
        }
    }

    /// Creates `name` only if it does not exist; false when it did.
    pub fn create(&self, name: &str, data: &[u8]) -> Result<bool, VaultError> {
        let path = ObjectPath::from(name);
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.run(self.store.put_opts(&path, PutPayload::from(data.to_vec()), opts)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err("write", name, e)),
        }
    }

    pub fn get(&self, name: &str) -> Result<Vec<u8>, VaultError> {
        let path = ObjectPath::from(name);
        self.run(async { self.store.get(&path).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| self.err("read", name, e))
    }

    pub fn get_range(&self, name: &str, offset: u64, len: usize) -> Result<Vec<u8>, VaultError> {
        let path = ObjectPath::from(name);
        let end = offset + len as u64;
        let bytes = self.run(self.store.get_range(&path, offset..end)).map_err(|e| self.err("read", name, e))?;
        if bytes.len() != len {
            return Err(VaultError::Io(format!("{}: {name} is shorter than expected", self.url)));
        }
        Ok(bytes.to_vec())
    }

    pub fn size(&self, name: &str) -> Option<u64> {
        self.run(self.store.head(&ObjectPath::from(name))).ok().map(|m| m.size)
    }

    /// Names under `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, VaultError> {
        let p = ObjectPath::from(prefix);
        let metas: Vec<object_store::ObjectMeta> = self
            .run(self.store.list(if prefix.is_empty() { None } else { Some(&p) }).try_collect())
            .map_err(|e| self.err("list", prefix, e))?;
        let mut names: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        names.sort();
        Ok(names)
    }

    pub fn delete(&self, name: &str) -> Result<(), VaultError> {
        match self.run(self.store.delete(&ObjectPath::from(name))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", name, e)),
        }
    }

    pub fn copy(&self, from: &str, to: &str) -> Result<(), VaultError> {
        self.run(self.store.copy(&ObjectPath::from(from), &ObjectPath::from(to))).map_err(|e| self.err("copy", from, e))
    }
}
