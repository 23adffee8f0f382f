//! The object-store backend of [`Storage`](super::Storage).

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use stt_proto::storage::{Address, Addressing};
use stt_proto::{Entropy, EntropyPurpose};

use super::{Backend, StoreError};
use crate::OsEntropy;

/// An S3 (or S3-compatible) bucket. Fields left `None` come from the usual AWS
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`).
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The bucket (it must exist).
    pub bucket: String,
    /// Key prefix of this store inside the bucket (`""` for the bucket's root).
    pub prefix: String,
    /// The service's URL for S3-compatible services (MinIO, Ceph, Garage, R2), e.g.
    /// `http://127.0.0.1:9000`; path-style requests are used then.
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// Allow plain `http://` endpoints (always allowed for loopback addresses).
    pub allow_http: bool,
    /// Retries of a failed request (server errors, timeouts, connection failures).
    pub max_retries: usize,
    /// Give up retrying a request after this long.
    pub retry_timeout: Duration,
}

impl S3Config {
    /// A bucket and prefix, everything else from the environment; 3 retries within 30 s.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        }
    }
}

/// Whether `url`'s host is a loopback address (`localhost`, `127.x`, `[::1]`).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(h) => h.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl super::Storage {
    /// Storage in an S3 bucket. Checks at once that the bucket exists and the
    /// credentials work ([`StoreError::NoBucket`], [`StoreError::Credentials`]).
    ///
    /// # Errors
    /// Those, [`StoreError::Config`] for a bad option, or the backend's.
    pub async fn s3(config: S3Config, key: [u8; 32], addressing: Addressing) -> Result<Self, StoreError> {
        use object_store::aws::AmazonS3Builder;
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&config.bucket);
        let endpoint = config.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        if let Some(e) = &endpoint {
            if e.starts_with("http://") && !config.allow_http && !is_loopback(e) {
                return Err(StoreError::Config(format!(
                    "{e} is plain http: credentials and (encrypted) blobs would cross the network unprotected; \
                     allow it explicitly (--allow-http) or use https"
                )));
            }
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &config.region {
            b = b.with_region(r);
        } else if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            b = b.with_region("us-east-1");
        }
        if let Some(k) = &config.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &config.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        let retry = object_store::RetryConfig {
            max_retries: config.max_retries,
            retry_timeout: config.retry_timeout,
            ..Default::default()
        };
        let store = b.with_retry(retry).build().map_err(|e| StoreError::Config(format!("S3 configuration: {e}")))?;
        let storage = Self::object_store(Arc::new(store), &config.prefix, key, addressing)?;
        storage.check_bucket(&config.bucket).await?;
        Ok(storage)
    }

    /// Storage in any [`ObjectStore`] (for example `object_store::memory::InMemory` in
    /// tests), under `prefix`.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a prefix that is not a valid object path.
    pub fn object_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        key: [u8; 32],
        addressing: Addressing,
    ) -> Result<Self, StoreError> {
        let prefix = ObjPath::parse(prefix.trim_matches('/'))
            .map_err(|e| StoreError::Config(format!("prefix {prefix}: {e}")))?;
        Ok(Self::with_backend(Backend::Object(Object { store, prefix }), key, addressing))
    }

    async fn check_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let Backend::Object(o) = &self.0.backend else { return Ok(()) };
        match o.store.list_with_delimiter(Some(&o.prefix)).await {
            Ok(_) => Ok(()),
            Err(e) => match error(e, "list") {
                StoreError::NoBucket(_) => Err(StoreError::NoBucket(bucket.to_string())),
                StoreError::Backend(m) if m.contains("404 Not Found") => Err(StoreError::NoBucket(bucket.to_string())),
                other => Err(other),
            },
        }
    }
}

/// A failure of the object store, in the words a user needs.
pub(super) fn error(e: object_store::Error, what: &str) -> StoreError {
    use object_store::Error as E;
    // Some requests (list) report the HTTP status only in the message.
    let text = e.to_string();
    let refused = ["SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "ExpiredToken", "InvalidToken"];
    match &e {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => StoreError::Credentials(format!("{what}: {e}")),
        _ if refused.iter().any(|c| text.contains(c))
            || text.contains("403 Forbidden")
            || text.contains("401 Unauthorized") =>
        {
            StoreError::Credentials(format!("{what}: {e}"))
        }
        _ if text.contains("NoSuchBucket") => {
            StoreError::NoBucket(format!("of this store (the service answered NoSuchBucket to {what})"))
        }
        _ => StoreError::Backend(format!("{what}: {e}")),
    }
}

async fn exists(store: &dyn ObjectStore, key: &ObjPath) -> Result<bool, StoreError> {
    match store.head(key).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(error(e, "head")),
    }
}

pub(super) struct Object {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
}

impl Object {
    fn key(&self, addr: &Address) -> ObjPath {
        self.prefix.clone().join(addr.to_string())
    }

    pub(super) async fn exists(&self, addr: &Address) -> Result<bool, StoreError> {
        exists(&*self.store, &self.key(addr)).await
    }

    pub(super) async fn list(&self) -> Result<Vec<Address>, StoreError> {
        let r = self.store.list_with_delimiter(Some(&self.prefix)).await.map_err(|e| error(e, "list"))?;
        Ok(r.objects.iter().filter_map(|m| m.location.filename().and_then(Address::from_hex)).collect())
    }

    pub(super) async fn delete(&self, addr: &Address) -> Result<bool, StoreError> {
        if !self.exists(addr).await? {
            return Ok(false);
        }
        self.store.delete(&self.key(addr)).await.map_err(|e| error(e, "delete"))?;
        Ok(true)
    }

    pub(super) async fn get(
        &self,
        addr: &Address,
        range: Option<(u64, u64)>,
    ) -> Result<Option<BoxStream<'static, object_store::Result<bytes::Bytes>>>, StoreError> {
        let opts = GetOptions { range: range.map(|(a, b)| GetRange::Bounded(a..b)), ..Default::default() };
        match self.store.get_opts(&self.key(addr), opts).await {
            Ok(r) => Ok(Some(r.into_stream())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(error(e, "get")),
        }
    }

    pub(super) fn upload(&self, sealed_len: u64, known: Option<Address>) -> Upload {
        Upload {
            store: self.store.clone(),
            prefix: self.prefix.clone(),
            known,
            state: State::Buffer(Vec::with_capacity(sealed_len.min(8 << 20) as usize)),
            tmp: None,
        }
    }
}

/// A blob being uploaded: buffered while it fits one part, then a multipart upload (to
/// its address when known, else to `PREFIX/tmp/<random>`).
pub(super) struct Upload {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    known: Option<Address>,
    state: State,
    tmp: Option<ObjPath>,
}

enum State {
    Buffer(Vec<u8>),
    Multipart(WriteMultipart),
}

impl Upload {
    pub(super) async fn write(&mut self, out: &[u8], part_size: usize, concurrency: usize) -> Result<(), StoreError> {
        match &mut self.state {
            State::Buffer(b) => {
                b.extend_from_slice(out);
                if b.len() > part_size {
                    let key = match self.known {
                        Some(a) => self.prefix.clone().join(a.to_string()),
                        None => {
                            let mut r = [0u8; 16];
                            OsEntropy.fill(EntropyPurpose::StorageSalt, &mut r);
                            let name: String = r.iter().map(|x| format!("{x:02x}")).collect();
                            let tmp = self.prefix.clone().join("tmp").join(name);
                            self.tmp = Some(tmp.clone());
                            tmp
                        }
                    };
                    let up = self.store.put_multipart(&key).await.map_err(|e| error(e, "start multipart upload"))?;
                    let mut w = WriteMultipart::new_with_chunk_size(up, part_size);
                    w.write(b);
                    self.state = State::Multipart(w);
                }
            }
            State::Multipart(w) => {
                w.wait_for_capacity(concurrency).await.map_err(|e| error(e, "upload part"))?;
                w.write(out);
            }
        }
        Ok(())
    }

    pub(super) async fn commit(self, addr: &Address) -> Result<(), StoreError> {
        let key = self.prefix.clone().join(addr.to_string());
        let store = &*self.store;
        match self.state {
            State::Buffer(b) => {
                if self.known.is_none() && exists(store, &key).await? {
                    return Ok(());
                }
                self.store.put(&key, b.into()).await.map_err(|e| error(e, "put"))?;
                Ok(())
            }
            State::Multipart(w) => {
                w.finish().await.map_err(|e| error(e, "complete multipart upload"))?;
                let Some(tmp) = &self.tmp else { return Ok(()) };
                let moved = async {
                    if !exists(store, &key).await? {
                        self.store.copy(tmp, &key).await.map_err(|e| error(e, "copy"))?;
                    }
                    Ok(())
                }
                .await;
                let _ = self.store.delete(tmp).await;
                moved
            }
        }
    }

    pub(super) async fn abort(self) {
        if let State::Multipart(w) = self.state {
            let _ = w.abort().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Storage;

    #[test]
    fn loopback_endpoints() {
        for u in ["http://127.0.0.1:9000", "http://localhost:9000/", "http://[::1]:9000", "http://127.1.2.3"] {
            assert!(is_loopback(u), "{u}");
        }
        for u in ["http://10.0.0.1:9000", "http://example.com", "http://127.0.0.1.example.com:80"] {
            assert!(!is_loopback(u), "{u}");
        }
    }

    fn memory() -> (Arc<object_store::memory::InMemory>, Storage) {
        let mem = Arc::new(object_store::memory::InMemory::new());
        let s = Storage::object_store(mem.clone(), "blobs/x", [9; 32], Addressing::Plain).unwrap();
        (mem, s)
    }

    /// Round trip, dedup, list, streaming, multipart with a streamed (unknown-address)
    /// upload, tampering, and the format shared with `BinaryStorage`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_object_store() {
        let (mem, s) = memory();
        let s = s.with_parts(5 << 20, 3);
        let small = b"hello object store".to_vec();
        let a = s.put(&small).await.unwrap();
        assert_eq!(a, Addressing::Plain.address(&small));
        assert_eq!(s.put(&small).await.unwrap(), a, "deduplicated");
        assert_eq!(s.get(&a).await.unwrap().unwrap(), small);
        // 13 MiB streamed: three parts through a temporary object, then copied.
        let big: Vec<u8> = (0..13 << 20).map(|i: u32| (i ^ (i >> 9)) as u8).collect();
        let b = s.put_reader(&big[..], big.len() as u64).await.unwrap();
        assert_eq!(b, Addressing::Plain.address(&big));
        let mut list = s.list().await.unwrap();
        list.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(list, want, "only blobs are listed; the temporary object is gone");
        let all = mem.list_with_delimiter(Some(&ObjPath::from("blobs/x/tmp"))).await.unwrap();
        assert!(all.objects.is_empty(), "temporary object removed");
        let mut out = Vec::new();
        assert_eq!(s.get_to(&b, &mut out).await.unwrap(), Some(big.len() as u64));
        assert!(out == big);
        // A range.
        let r = s.ranges(&b).await.unwrap().unwrap();
        let mut part = Vec::new();
        r.read_to(100_000, 300_000, &mut part).await.unwrap();
        assert!(part == big[100_000..400_000]);
        // Wrong length from the reader: nothing stored.
        assert!(matches!(s.put_reader(&big[..10], 11).await, Err(StoreError::Length { expected: 11, actual: 10 })));
        assert!(matches!(s.put_reader(&big[..12], 11).await, Err(StoreError::Length { expected: 11, .. })));
        assert_eq!(s.list().await.unwrap().len(), 2);
        // The same sealed bytes read as BinaryStorage's format.
        let raw = mem.get(&ObjPath::from(format!("blobs/x/{a}"))).await.unwrap().bytes().await.unwrap();
        let mut bs = crate::BinaryStorage::new(crate::MemoryStore::new(), [9; 32], Addressing::Plain);
        crate::BlobStore::put_raw(bs.backend(), &a, &raw).unwrap();
        assert_eq!(bs.get(&a).unwrap().unwrap(), small);
        // Tampered, and replaced by another (valid) blob: integrity errors, never content.
        let mut bad = raw.to_vec();
        bad[60] ^= 1;
        mem.put(&ObjPath::from(format!("blobs/x/{a}")), bad.into()).await.unwrap();
        assert!(matches!(s.get(&a).await, Err(StoreError::Integrity(x)) if x == a));
        let other = mem.get(&ObjPath::from(format!("blobs/x/{b}"))).await.unwrap().bytes().await.unwrap();
        mem.put(&ObjPath::from(format!("blobs/x/{a}")), other.into()).await.unwrap();
        assert!(matches!(s.get(&a).await, Err(StoreError::Integrity(_))));
        assert!(s.delete(&a).await.unwrap());
        assert!(!s.delete(&a).await.unwrap());
        assert_eq!(s.get(&a).await.unwrap(), None);
    }
}
