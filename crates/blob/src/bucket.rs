//! Object storage (S3-compatible or Google Cloud Storage) by address, for
//! the blob store and the backup vault alike.

use std::sync::Arc;

use object_store::ObjectStore;

/// Opens `s3://bucket[/prefix]` or `gs://bucket[/prefix]`; returns the
/// store and the address without its query (for messages: the query may
/// carry settings). Credentials and options come from the environment as
/// the providers' tools read them (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for other
/// S3-compatible services, `AWS_ALLOW_HTTP`; `GOOGLE_SERVICE_ACCOUNT`…);
/// settings that are not secrets may also follow the address as a query,
/// with `object_store`'s key names:
/// `s3://backups-in?endpoint=https://s3.example.net&region=eu-1`.
/// Writes can be made create-only (`PutMode::Create`): S3 by `If-None-Match`,
/// GCS by generation preconditions.
pub fn open(address: &str) -> Result<(Arc<dyn ObjectStore>, String), String> {
    let (url, query) = address.split_once('?').unwrap_or((address, ""));
    let options: Vec<(&str, &str)> =
        query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "true"))).collect();
    let bad = |e: object_store::Error| format!("`{url}`: {e}");
    let store: Arc<dyn ObjectStore> = if url.starts_with("s3://") {
        // Object Lock buckets want writes to name their checksum algorithm
        // (object_store sends the SHA-256 itself).
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-amz-sdk-checksum-algorithm", reqwest::header::HeaderValue::from_static("SHA256"));
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_client_options(object_store::ClientOptions::new().with_default_headers(headers))
            .with_url(url)
            .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
            .with_checksum_algorithm(object_store::aws::Checksum::SHA256);
        for (k, v) in &options {
            let key = k.parse::<object_store::aws::AmazonS3ConfigKey>().map_err(bad)?;
            b = b.with_config(key, *v);
        }
        Arc::new(b.build().map_err(bad)?)
    } else if url.starts_with("gs://") {
        let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
        for (k, v) in &options {
            let key = k.parse::<object_store::gcp::GoogleConfigKey>().map_err(bad)?;
            b = b.with_config(key, *v);
        }
        Arc::new(b.build().map_err(bad)?)
    } else {
        return Err(format!("`{url}`: use a folder, s3://bucket or gs://bucket"));
    };
    let prefix = url.splitn(4, '/').nth(3).unwrap_or("").trim_matches('/').to_string();
    let store: Arc<dyn ObjectStore> =
        if prefix.is_empty() { store } else { Arc::new(object_store::prefix::PrefixStore::new(store, prefix)) };
    Ok((store, url.to_string()))
}
