//! [`Storage`]: BinaryStorage with an async API, streaming in and out, and backends
//! beyond one machine's disk.
//!
//! Every backend keeps the guarantees of [`BinaryStorage`](crate::BinaryStorage) and its
//! stored format (spec §10.4), so a blob written by one reads with the other:
//! content-addressed keys (`PREFIX/<64 hex digits>`), encrypted at rest under a local
//! storage key, every read authenticated segment by segment and checked against its
//! address, equal content stored once. Blobs stream in from an [`AsyncRead`] and out to an
//! [`AsyncWrite`] without being held whole in memory.
//!
//! Backends: the crash-safe file-system store ([`FsStore`], always), and with the
//! `object-store` feature any [`object_store::ObjectStore`]: S3 and S3-compatible
//! services (MinIO, Ceph, Garage, R2) through [`S3Config`], or the crate's in-memory store.
//!
//! On an object store, a blob larger than one part (8 MiB by default) is uploaded in
//! parts, with at most `concurrency` parts in flight. Its address is known only once its
//! last byte was read, so a streamed upload goes to `PREFIX/tmp/<random>` and is copied to
//! its address when complete (a multipart upload is invisible until completed, so a
//! failed or interrupted one leaves no blob); [`Storage::put`] and [`Storage::put_file`]
//! hash first and upload straight to the address, and skip the upload when it is already
//! stored. An upload whose future is dropped can leave a `tmp/` object or an unfinished
//! multipart upload behind; neither is ever listed or read as a blob (an S3 lifecycle rule
//! removes them).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use stt_proto::storage::{Address, Addressing, BlobOpener, BlobSealer, BlobStore, RangeOpener, HEADER_LEN, SEGMENT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroize;

use crate::{FsStore, OsEntropy};

/// Bytes read from a source per step.
const CHUNK: usize = 1 << 20;

/// A storage failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The stored blob failed its integrity check: a segment did not authenticate under
    /// the storage key, it was truncated, or its content does not match its address (a
    /// blob replaced or moved behind the store's back, or a different storage key).
    Integrity(Address),
    /// The object store refused the credentials (or they lack permission).
    Credentials(String),
    /// The bucket (named here) does not exist.
    NoBucket(String),
    /// The reader gave another number of bytes than declared.
    Length {
        /// The declared length.
        expected: u64,
        /// What the reader gave (at least; reading stops one byte past the declared length).
        actual: u64,
    },
    /// The file changed while it was being stored.
    Changed(PathBuf),
    /// A bad store URL or option.
    Config(String),
    /// Local I/O: the file store, or the caller's reader or writer.
    Io(io::Error),
    /// Another failure of the backend.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Integrity(a) => write!(
                f,
                "stored blob {a} failed its integrity check (altered, truncated or replaced, or stored under another key)"
            ),
            StoreError::Credentials(m) => write!(f, "the object store refused the credentials: {m}"),
            StoreError::NoBucket(b) => {
                write!(f, "the bucket {b} does not exist (create it, or check its name and the endpoint)")
            }
            StoreError::Length { expected, actual } => {
                write!(f, "declared {expected} bytes but the reader gave {actual}")
            }
            StoreError::Changed(p) => write!(f, "{} changed while it was being stored", p.display()),
            StoreError::Config(m) => write!(f, "{m}"),
            StoreError::Io(e) => write!(f, "{e}"),
            StoreError::Backend(m) => write!(f, "storage backend: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

/// Content-addressed, encrypted, deduplicating storage with an async, streaming API.
/// Cheap to clone (clones share the backend).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use stt_tokio::{Addressing, Storage};
/// let dir = std::env::temp_dir().join(format!("stt-storage-doc-{}", std::process::id()));
/// let store = Storage::fs(&dir, None, stt_tokio::random_seed_bytes(), Addressing::Plain)?;
/// let addr = store.put(b"sensor-1 21.5C").await?;
/// // Stream it out (any AsyncWrite), and list what is stored.
/// let mut out = Vec::new();
/// assert_eq!(store.get_to(&addr, &mut out).await?, Some(14));
/// assert_eq!(out, b"sensor-1 21.5C");
/// assert_eq!(store.list().await?, vec![addr]);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Storage(Arc<Inner>);

struct Inner {
    backend: Backend,
    key: [u8; 32],
    addressing: Addressing,
    part_size: usize,
    concurrency: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.key.zeroize();
        if let Addressing::Keyed(k) = &mut self.addressing {
            k.zeroize();
        }
    }
}

enum Backend {
    Fs(Arc<Mutex<FsStore>>),
    #[cfg(feature = "object-store")]
    Object(obj::Object),
}

/// A temporary file of the fs store, removed when dropped (an upload that failed or whose
/// future was dropped); after a commit its path no longer exists and removing it is a no-op.
struct TmpFile(PathBuf);

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where a sealed blob goes while it is written.
enum Sink {
    Fs {
        file: tokio::fs::File,
        tmp: TmpFile,
        store: Arc<Mutex<FsStore>>,
    },
    #[cfg(feature = "object-store")]
    Object(obj::Upload),
}

/// Where sealed bytes come from.
enum Source {
    File(tokio::io::Take<tokio::fs::File>),
    #[cfg(feature = "object-store")]
    Object(futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>),
}

impl Source {
    /// The next piece, appended to `buf` (cleared first); false at the end.
    async fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool, StoreError> {
        buf.clear();
        match self {
            Source::File(f) => {
                buf.resize(CHUNK, 0);
                let n = f.read(buf).await?;
                buf.truncate(n);
                Ok(n > 0)
            }
            #[cfg(feature = "object-store")]
            Source::Object(s) => {
                use futures_util::StreamExt;
                match s.next().await {
                    Some(b) => {
                        buf.extend_from_slice(&b.map_err(|e| obj::error(e, "read"))?);
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
        }
    }
}

/// Reads until `buf` is full or the reader ends; returns how many bytes were read.
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = r.read(&mut buf[n..]).await?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(io::Error::other)?
}

/// Options for [`Storage::open`].
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// `s3://`: the service's URL for S3-compatible services (else `AWS_ENDPOINT_URL`, else AWS).
    pub endpoint: Option<String>,
    /// `s3://`: allow a plain-http endpoint that is not on this machine.
    pub allow_http: bool,
    /// `file://`: keep the store at or below this many bytes (least recently used evicted).
    pub limit: Option<u64>,
}

impl Storage {
    fn with_backend(backend: Backend, key: [u8; 32], addressing: Addressing) -> Self {
        Storage(Arc::new(Inner { backend, key, addressing, part_size: 8 << 20, concurrency: 4 }))
    }

    /// Storage in a directory (the crash-safe [`FsStore`]; with `limit`, least recently
    /// used blobs are evicted to stay under it). `key` is the local storage key: generate
    /// it; never derive it from a shared seed.
    ///
    /// # Errors
    /// I/O errors opening the directory.
    pub fn fs(
        dir: impl AsRef<Path>,
        limit: Option<u64>,
        key: [u8; 32],
        addressing: Addressing,
    ) -> Result<Self, StoreError> {
        let store = FsStore::open(dir, limit)?;
        Ok(Self::with_backend(Backend::Fs(Arc::new(Mutex::new(store))), key, addressing))
    }

    /// Opens the store a URL names: `file:///DIR` (the file-system store) or, with the
    /// `object-store` feature, `s3://BUCKET/PREFIX` (credentials and region from the usual
    /// AWS environment variables).
    ///
    /// # Errors
    /// [`StoreError::Config`] for an unknown scheme; the backend's.
    pub async fn open(
        url: &str,
        options: &OpenOptions,
        key: [u8; 32],
        addressing: Addressing,
    ) -> Result<Self, StoreError> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(StoreError::Config(format!("{url}: a file URL needs an absolute path (file:///DIR)")));
            }
            return Self::fs(path, options.limit, key, addressing);
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Config(format!("{url}: no bucket (s3://BUCKET/PREFIX)")));
            }
            #[cfg(feature = "object-store")]
            {
                let mut c = S3Config::new(bucket, prefix);
                c.endpoint = options.endpoint.clone();
                c.allow_http = options.allow_http;
                return Self::s3(c, key, addressing).await;
            }
            #[cfg(not(feature = "object-store"))]
            return Err(StoreError::Config(format!(
                "{url}: S3 stores need stt-tokio's `object-store` feature ({bucket}/{prefix})"
            )));
        }
        Err(StoreError::Config(format!("{url}: unknown store URL (use file:///DIR or s3://BUCKET/PREFIX)")))
    }

    /// Sets the multipart part size (at least 5 MiB, as S3 requires) and how many parts
    /// may be in flight at once; defaults 8 MiB and 4. Call before cloning.
    ///
    /// # Panics
    /// If the storage was already cloned.
    #[must_use]
    pub fn with_parts(mut self, part_size: usize, concurrency: usize) -> Self {
        let inner = Arc::get_mut(&mut self.0).expect("set parts before cloning the storage");
        inner.part_size = part_size.max(5 << 20);
        inner.concurrency = concurrency.max(1);
        self
    }

    /// The address `data` has in this storage.
    pub fn address_of(&self, data: &[u8]) -> Address {
        self.0.addressing.address(data)
    }

    /// Whether a blob is stored under `addr`.
    ///
    /// # Errors
    /// The backend's.
    pub async fn contains(&self, addr: &Address) -> Result<bool, StoreError> {
        match &self.0.backend {
            Backend::Fs(s) => Ok(s.lock().expect("fs store lock").contains(addr)),
            #[cfg(feature = "object-store")]
            Backend::Object(o) => o.exists(addr).await,
        }
    }

    /// The addresses of every stored blob, in no particular order.
    ///
    /// # Errors
    /// The backend's.
    pub async fn list(&self) -> Result<Vec<Address>, StoreError> {
        match &self.0.backend {
            Backend::Fs(s) => Ok(s.lock().expect("fs store lock").list()),
            #[cfg(feature = "object-store")]
            Backend::Object(o) => o.list().await,
        }
    }

    /// Removes the blob under `addr`; whether it existed.
    ///
    /// # Errors
    /// The backend's.
    pub async fn delete(&self, addr: &Address) -> Result<bool, StoreError> {
        match &self.0.backend {
            Backend::Fs(s) => {
                let (s, a) = (s.clone(), *addr);
                Ok(blocking(move || s.lock().expect("fs store lock").delete_raw(&a)).await?)
            }
            #[cfg(feature = "object-store")]
            Backend::Object(o) => o.delete(addr).await,
        }
    }

    /// Stores `data` (once: equal content is deduplicated, and nothing is uploaded when it
    /// is already stored) and returns its address.
    ///
    /// # Errors
    /// The backend's.
    pub async fn put(&self, data: &[u8]) -> Result<Address, StoreError> {
        let addr = self.address_of(data);
        if self.contains(&addr).await? {
            return Ok(addr);
        }
        self.upload(data, data.len() as u64, Some(addr)).await
    }

    /// Stores exactly `len` bytes read from `reader`, sealing and uploading them as they
    /// come (memory stays bounded by the part size and concurrency), and returns their
    /// address.
    ///
    /// # Errors
    /// [`StoreError::Length`] if the reader gives fewer or more bytes; the backend's; the
    /// reader's. Nothing is stored then.
    pub async fn put_reader<R: AsyncRead + Unpin>(&self, reader: R, len: u64) -> Result<Address, StoreError> {
        self.upload(reader, len, None).await
    }

    /// Stores a file: hashes it first (nothing is uploaded when it is already stored),
    /// then streams it to its address.
    ///
    /// # Errors
    /// [`StoreError::Changed`] if the file changed meanwhile; the backend's; I/O errors.
    pub async fn put_file(&self, path: &Path) -> Result<Address, StoreError> {
        let mut f = tokio::fs::File::open(path).await?;
        let len = f.metadata().await?.len();
        let mut hasher = self.0.addressing.hasher();
        let mut buf = vec![0u8; CHUNK];
        let mut seen = 0u64;
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            seen += n as u64;
        }
        if seen != len {
            return Err(StoreError::Changed(path.to_path_buf()));
        }
        let addr = hasher.finalize();
        if self.contains(&addr).await? {
            return Ok(addr);
        }
        f.seek(io::SeekFrom::Start(0)).await?;
        match self.upload(f, len, Some(addr)).await {
            Err(StoreError::Integrity(_) | StoreError::Length { .. }) => Err(StoreError::Changed(path.to_path_buf())),
            r => r,
        }
    }

    /// Seals `len` bytes from `reader` into a new blob. With `known`, the content must have
    /// that address (else [`StoreError::Integrity`]) and goes straight to it.
    async fn upload<R: AsyncRead + Unpin>(
        &self,
        mut reader: R,
        len: u64,
        known: Option<Address>,
    ) -> Result<Address, StoreError> {
        let mut sealer = BlobSealer::new(&self.0.key, &self.0.addressing, len, &mut OsEntropy);
        let mut sink = self.sink(len, known).await?;
        let mut out = sealer.header().to_vec();
        let mut buf = vec![0u8; CHUNK.min(len as usize + 1)];
        let mut read = 0u64;
        let result = async {
            loop {
                let want = (len - read).min(buf.len() as u64) as usize;
                // Past the declared length, probe for one more byte.
                let n = if want == 0 {
                    read_full(&mut reader, &mut buf[..1]).await?
                } else {
                    read_full(&mut reader, &mut buf[..want]).await?
                };
                if want == 0 || n < want {
                    if n > 0 || read + (n as u64) < len {
                        return Err(StoreError::Length { expected: len, actual: read + n as u64 });
                    }
                    break;
                }
                read += n as u64;
                sealer.update(&buf[..n], &mut out).expect("reads stop at the declared length");
                sink.write(&mut out, self).await?;
            }
            let addr = sealer.finish(&mut out).expect("every declared byte was fed");
            if known.is_some_and(|k| k != addr) {
                return Err(StoreError::Integrity(addr));
            }
            sink.write(&mut out, self).await?;
            Ok(addr)
        }
        .await;
        match result {
            Ok(addr) => {
                sink.commit(&addr, self).await?;
                Ok(addr)
            }
            Err(e) => {
                sink.abort().await;
                Err(e)
            }
        }
    }

    async fn sink(&self, len: u64, known: Option<Address>) -> Result<Sink, StoreError> {
        let _ = (len, known);
        match &self.0.backend {
            Backend::Fs(s) => {
                let tmp = TmpFile(s.lock().expect("fs store lock").temp_path());
                let file = tokio::fs::File::create(&tmp.0).await?;
                Ok(Sink::Fs { file, tmp, store: s.clone() })
            }
            #[cfg(feature = "object-store")]
            Backend::Object(o) => Ok(Sink::Object(o.upload(stt_proto::storage::sealed_len(len), known))),
        }
    }

    /// The content under `addr`, checked in full before it is returned; `None` if nothing
    /// is stored there. Holds the blob in memory: use [`Storage::get_to`] for large ones.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] if the stored bytes are not the addressed content; the backend's.
    pub async fn get(&self, addr: &Address) -> Result<Option<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        Ok(self.get_to(addr, &mut out).await?.map(|_| out))
    }

    /// Streams the content under `addr` into `writer`; returns its length, or `None` if
    /// nothing is stored there. Every segment is authenticated before its bytes are
    /// written, and the whole content is checked against the address at the end: on
    /// [`StoreError::Integrity`] the bytes already written must be discarded (write to a
    /// temporary file and rename it on success, as `stt store get` does).
    ///
    /// # Errors
    /// [`StoreError::Integrity`]; the backend's; the writer's.
    pub async fn get_to<W: AsyncWrite + Unpin>(
        &self,
        addr: &Address,
        mut writer: W,
    ) -> Result<Option<u64>, StoreError> {
        let Some(mut source) = self.source(addr, None).await? else { return Ok(None) };
        let mut opener = BlobOpener::new(&self.0.key, &self.0.addressing, *addr);
        let mut chunk = Vec::new();
        let mut out = Vec::new();
        let corrupt = |_| StoreError::Integrity(*addr);
        while source.next(&mut chunk).await? {
            opener.update(&chunk, &mut out).map_err(corrupt)?;
            writer.write_all(&out).await?;
            out.clear();
        }
        let n = opener.finish(&mut out).map_err(corrupt)?;
        writer.write_all(&out).await?;
        writer.flush().await?;
        Ok(Some(n))
    }

    /// Random access to the content under `addr` (for serving byte ranges), or `None`.
    ///
    /// # Errors
    /// [`StoreError::Integrity`] for a malformed header; the backend's.
    pub async fn ranges(&self, addr: &Address) -> Result<Option<Ranges>, StoreError> {
        let Some(mut source) = self.source(addr, Some((0, HEADER_LEN as u64))).await? else { return Ok(None) };
        let mut header = Vec::new();
        let mut chunk = Vec::new();
        while header.len() < HEADER_LEN && source.next(&mut chunk).await? {
            header.extend_from_slice(&chunk);
        }
        let opener = RangeOpener::new(&self.0.key, &header).map_err(|_| StoreError::Integrity(*addr))?;
        Ok(Some(Ranges { storage: self.clone(), addr: *addr, opener }))
    }

    /// The sealed bytes under `addr` (`range`: from, to), or `None` if not stored.
    async fn source(&self, addr: &Address, range: Option<(u64, u64)>) -> Result<Option<Source>, StoreError> {
        match &self.0.backend {
            Backend::Fs(s) => {
                let Some(path) = s.lock().expect("fs store lock").blob_path(addr) else { return Ok(None) };
                let mut f = match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                let (from, to) = range.unwrap_or((0, u64::MAX));
                f.seek(io::SeekFrom::Start(from)).await?;
                Ok(Some(Source::File(f.take(to - from))))
            }
            #[cfg(feature = "object-store")]
            Backend::Object(o) => Ok(o.get(addr, range).await?.map(Source::Object)),
        }
    }
}

impl Sink {
    /// Hands `out` to the backend and clears it.
    async fn write(&mut self, out: &mut Vec<u8>, storage: &Storage) -> Result<(), StoreError> {
        let _ = storage;
        match self {
            Sink::Fs { file, .. } => file.write_all(out).await?,
            #[cfg(feature = "object-store")]
            Sink::Object(u) => u.write(out, storage.0.part_size, storage.0.concurrency).await?,
        }
        out.clear();
        Ok(())
    }

    async fn commit(self, addr: &Address, storage: &Storage) -> Result<(), StoreError> {
        let _ = storage;
        match self {
            Sink::Fs { file, tmp, store } => {
                file.sync_all().await?;
                drop(file);
                let a = *addr;
                Ok(blocking(move || store.lock().expect("fs store lock").commit_file(&a, &tmp.0)).await?)
            }
            #[cfg(feature = "object-store")]
            Sink::Object(u) => u.commit(addr).await,
        }
    }

    async fn abort(self) {
        match self {
            Sink::Fs { .. } => {} // the temporary file goes with the sink
            #[cfg(feature = "object-store")]
            Sink::Object(u) => u.abort().await,
        }
    }
}

/// Random access to one stored blob's content, by byte range (see [`Storage::ranges`]).
/// Each segment read is authenticated under the storage key; the address can only be
/// checked over the whole content, so ranges are for readers that verify the whole (the
/// peer fetch protocol's clients do).
pub struct Ranges {
    storage: Storage,
    addr: Address,
    opener: RangeOpener,
}

impl Ranges {
    /// The content's length.
    pub fn len(&self) -> u64 {
        self.opener.len()
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.opener.is_empty()
    }

    /// Writes content bytes `offset .. offset + len` to `writer`.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a range past the end; [`StoreError::Integrity`] if a
    /// stored segment fails authentication; the backend's; the writer's.
    pub async fn read_to<W: AsyncWrite + Unpin>(&self, offset: u64, len: u64, mut writer: W) -> Result<(), StoreError> {
        let end = offset.checked_add(len).filter(|e| *e <= self.len()).ok_or_else(|| {
            StoreError::Config(format!("range {offset}+{len} lies past the end ({} bytes)", self.len()))
        })?;
        if len == 0 {
            return Ok(());
        }
        let (mut index, from) = self.opener.segment_of(offset);
        let (last, last_start) = self.opener.segment_of(end - 1);
        let to = last_start + self.opener.sealed_segment_len(last);
        let Some(mut source) = self.storage.source(&self.addr, Some((from, to))).await? else {
            return Err(StoreError::Integrity(self.addr));
        };
        // Content offset of segment `index`; stored bytes not yet opened are `buf[start..]`.
        let mut pos = index * u64::from(SEGMENT);
        let (mut buf, mut start, mut chunk) = (Vec::new(), 0, Vec::new());
        while index <= last {
            let want = self.opener.sealed_segment_len(index) as usize;
            while buf.len() - start < want {
                buf.drain(..start);
                start = 0;
                if !source.next(&mut chunk).await? {
                    return Err(StoreError::Integrity(self.addr));
                }
                buf.extend_from_slice(&chunk);
            }
            let seg = &mut buf[start..start + want];
            let n = self.opener.open(index, seg).map_err(|_| StoreError::Integrity(self.addr))?;
            let lo = offset.saturating_sub(pos) as usize;
            let hi = ((end - pos) as usize).min(n);
            writer.write_all(&seg[lo..hi]).await?;
            pos += n as u64;
            start += want;
            index += 1;
        }
        writer.flush().await?;
        Ok(())
    }
}

#[cfg(feature = "object-store")]
mod obj;
#[cfg(feature = "object-store")]
pub use obj::S3Config;
