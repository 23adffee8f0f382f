//! Content fetched from peers: the blob fetch protocol (spec §10.6) on STT streams.
//!
//! A node serves its [`Storage`] to members with a [`BlobServer`] under a [`ServePolicy`]
//! (who may fetch, which blobs are exposed); a node fetches with a [`Fetcher`] from one or
//! several connected sessions. An address is the hash of the whole content, so a range
//! cannot be checked alone: the fetcher takes ranges from every peer in parallel, checks
//! the whole content against the address, and on a mismatch rebuilds the content as one
//! peer's version at a time (re-fetching only the ranges that peer did not serve), keeping
//! the first version that matches. A peer whose complete version does not match, or whose
//! range differs from the verified content, is reported as having served wrong bytes and
//! is not asked again; the fetch continues from the others.
//!
//! ```text
//! request  = "STTB" | version (1) | op (1: STAT, 2: READ) | address (32) | offset (u64) | length (u64)
//! response = status (u8) | size (u64) | length (u64) | `length` content bytes
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stt_proto::storage::{Address, Addressing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::{NodeId, RecvStream, SendStream, Session, Storage, StoreError};

/// The request's first bytes.
pub const MAGIC: &[u8; 4] = b"STTB";
/// The protocol version.
pub const VERSION: u8 = 1;
/// Longest READ a server answers (16 MiB); longer ones are refused with `BAD_REQUEST`.
pub const MAX_RANGE: u64 = 16 << 20;
const REQUEST_LEN: usize = 4 + 1 + 1 + 32 + 8 + 8;
const RESPONSE_LEN: usize = 1 + 8 + 8;
const OP_STAT: u8 = 1;
const OP_READ: u8 = 2;

/// A response status (spec §10.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// The content follows.
    Ok,
    /// Not stored, or not exposed to this peer.
    NotFound,
    /// This peer may not fetch from this server.
    Refused,
    /// Malformed request, unknown version or op, or a range past the end or over [`MAX_RANGE`].
    BadRequest,
    /// Too many requests at once; try again.
    Busy,
    /// The server could not read the blob (its stored copy failed its integrity check, or
    /// the backend failed).
    Failed,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::NotFound => 1,
            Status::Refused => 2,
            Status::BadRequest => 3,
            Status::Busy => 4,
            Status::Failed => 5,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::Refused,
            3 => Status::BadRequest,
            4 => Status::Busy,
            5 => Status::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::NotFound => "not found",
            Status::Refused => "refused (not a member this server serves)",
            Status::BadRequest => "bad request",
            Status::Busy => "busy",
            Status::Failed => "the server could not read the blob",
        })
    }
}

/// Which blobs a [`BlobServer`] exposes, and to whom.
#[derive(Clone, Debug, Default)]
pub struct ServePolicy {
    /// Node ids that may fetch (`None`: every peer holding the shared seed). Others get `REFUSED`.
    pub members: Option<HashSet<NodeId>>,
    /// Addresses exposed (`None`: every stored blob). Others are answered `NOT_FOUND`, as
    /// if not stored, so the policy does not reveal what else the node holds.
    pub expose: Option<HashSet<Address>>,
}

/// A [`BlobServer`]'s limits.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Requests served at once per session; more are answered `BUSY`.
    pub per_session: usize,
    /// Requests served at once over all sessions; more are answered `BUSY`.
    pub total: usize,
    /// Time a peer has to send its whole request once it opened the stream.
    pub request_timeout: Duration,
    /// Time a peer has to take the whole response (at most 16 MiB); a peer that does not
    /// read it in time has the stream reset and its slots freed, so members that stop
    /// reading cannot hold every slot.
    pub response_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            per_session: 8,
            total: 64,
            request_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(120),
        }
    }
}

/// Serves a [`Storage`] to peers over the blob fetch protocol.
///
/// ```no_run
/// # async fn demo(node: stt_tokio::Node, storage: stt_tokio::Storage) {
/// use stt_tokio::{BlobServer, ServeLimits, ServePolicy};
/// let server = BlobServer::new(storage, ServePolicy::default(), ServeLimits::default());
/// while let Some(session) = node.accept().await {
///     tokio::spawn(server.clone().serve_session(session));
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct BlobServer(Arc<ServerInner>);

struct ServerInner {
    storage: Storage,
    policy: ServePolicy,
    limits: ServeLimits,
    total: Arc<Semaphore>,
}

impl BlobServer {
    /// A server of `storage` under `policy` and `limits`.
    pub fn new(storage: Storage, policy: ServePolicy, limits: ServeLimits) -> Self {
        let total = Arc::new(Semaphore::new(limits.total));
        Self(Arc::new(ServerInner { storage, policy, limits, total }))
    }

    /// Answers every bidirectional stream the peer opens on `session` as a blob fetch
    /// request, until the session ends.
    pub async fn serve_session(self, session: Session) {
        let per_session = Arc::new(Semaphore::new(self.0.limits.per_session));
        let peer = session.peer_node_id();
        while let Some((send, recv)) = session.accept_bi().await {
            let (server, per_session) = (self.clone(), per_session.clone());
            tokio::spawn(async move {
                let permits = (per_session.try_acquire_owned(), server.0.total.clone().try_acquire_owned());
                server.serve_stream(peer, send, recv, permits).await;
            });
        }
    }

    /// Answers one request. `permits` are its slots (per session, total); either missing
    /// means BUSY. They are released once the response is written, before the stream's
    /// end is sent, so a peer that waits for the end finds them free.
    async fn serve_stream<P>(
        &self,
        peer: NodeId,
        mut send: SendStream,
        mut recv: RecvStream,
        permits: (Result<P, tokio::sync::TryAcquireError>, Result<P, tokio::sync::TryAcquireError>),
    ) {
        let busy = !matches!(permits, (Ok(_), Ok(_)));
        let mut req = [0u8; REQUEST_LEN];
        match tokio::time::timeout(self.0.limits.request_timeout, recv.read_exact(&mut req)).await {
            Ok(Ok(_)) => {}
            _ => {
                send.reset(Status::BadRequest.code().into());
                return;
            }
        }
        if &req[..4] != MAGIC {
            send.reset(Status::BadRequest.code().into());
            return;
        }
        let addr = Address(req[6..38].try_into().expect("32 bytes"));
        let offset = u64::from_be_bytes(req[38..46].try_into().expect("8 bytes"));
        let len = u64::from_be_bytes(req[46..54].try_into().expect("8 bytes"));
        let (status, size, ranges) = self.answer(peer, busy, req[4], req[5], &addr, offset, len).await;
        let mut head = [0u8; RESPONSE_LEN];
        head[0] = status.code();
        head[1..9].copy_from_slice(&size.to_be_bytes());
        let body = if status == Status::Ok && req[5] == OP_READ { len } else { 0 };
        head[9..17].copy_from_slice(&body.to_be_bytes());
        let respond = async {
            send.write_all(&head).await.map_err(|_| None)?;
            if let Some(r) = ranges.filter(|_| body > 0) {
                r.read_to(offset, len, &mut send).await.map_err(Some)?;
            }
            Ok::<(), Option<crate::StoreError>>(())
        };
        match tokio::time::timeout(self.0.limits.response_timeout, respond).await {
            Ok(Ok(())) => {}
            Ok(Err(None)) => return,
            Ok(Err(Some(e))) => {
                tracing::warn!(%addr, "blob fetch: serving a range failed: {e}");
                send.reset(Status::Failed.code().into());
                return;
            }
            Err(_) => {
                tracing::debug!(%addr, "blob fetch: the peer did not take the response in time");
                send.reset(Status::Busy.code().into());
                return;
            }
        }
        drop(permits);
        let _ = send.finish().await;
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        peer: NodeId,
        busy: bool,
        version: u8,
        op: u8,
        addr: &Address,
        offset: u64,
        len: u64,
    ) -> (Status, u64, Option<crate::Ranges>) {
        if version != VERSION || (op != OP_STAT && op != OP_READ) {
            return (Status::BadRequest, 0, None);
        }
        if self.0.policy.members.as_ref().is_some_and(|m| !m.contains(&peer)) {
            return (Status::Refused, 0, None);
        }
        if busy {
            return (Status::Busy, 0, None);
        }
        if self.0.policy.expose.as_ref().is_some_and(|e| !e.contains(addr)) {
            return (Status::NotFound, 0, None);
        }
        let ranges = match self.0.storage.ranges(addr).await {
            Ok(Some(r)) => r,
            Ok(None) => return (Status::NotFound, 0, None),
            Err(e) => {
                tracing::warn!(%addr, "blob fetch: cannot read a stored blob: {e}");
                return (Status::Failed, 0, None);
            }
        };
        let size = ranges.len();
        if op == OP_READ && (len > MAX_RANGE || offset.checked_add(len).is_none_or(|end| end > size)) {
            return (Status::BadRequest, size, None);
        }
        (Status::Ok, size, Some(ranges))
    }
}

/// Why a fetch failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// No peer has the blob (or exposes it to us).
    NotFound,
    /// The blob is larger than the fetcher's limit.
    TooLarge {
        /// Its size as the peers announced it.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// No peer's content matched the address; these peers served wrong bytes, and the
    /// others failed as listed.
    NoValidCopy {
        /// Peers proven to have served bytes that do not match the address.
        bad: Vec<NodeId>,
        /// Other failures, per peer.
        errors: Vec<(NodeId, String)>,
    },
    /// Writing the fetched content failed locally.
    Local(StoreError),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NotFound => f.write_str("no peer has the blob"),
            FetchError::TooLarge { size, max } => write!(f, "the blob is {size} bytes, over the limit of {max}"),
            FetchError::NoValidCopy { bad, errors } => {
                f.write_str("no peer served content matching the address")?;
                for b in bad {
                    write!(f, "; peer {b} served wrong bytes")?;
                }
                for (p, e) in errors {
                    write!(f, "; peer {p}: {e}")?;
                }
                Ok(())
            }
            FetchError::Local(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FetchError {}

impl From<StoreError> for FetchError {
    fn from(e: StoreError) -> Self {
        FetchError::Local(e)
    }
}

impl From<std::io::Error> for FetchError {
    fn from(e: std::io::Error) -> Self {
        FetchError::Local(StoreError::Io(e))
    }
}

/// What a successful fetch did.
#[derive(Clone, Debug, Default)]
pub struct FetchReport {
    /// The content's length.
    pub size: u64,
    /// Content bytes each peer delivered (including re-fetches).
    pub bytes_from: HashMap<NodeId, u64>,
    /// Peers proven to have served wrong bytes (they were not asked again).
    pub bad_peers: Vec<NodeId>,
}

/// Fetches blobs from peers over the blob fetch protocol and verifies them.
#[derive(Clone, Debug)]
pub struct Fetcher {
    /// How addresses are computed (peers and fetcher must agree).
    pub addressing: Addressing,
    /// Bytes per READ request (at most [`MAX_RANGE`]).
    pub range_size: u64,
    /// READ requests in flight per peer.
    pub parallel_per_peer: usize,
    /// Largest blob fetched.
    pub max_size: u64,
    /// Time one request may take before the peer counts as failed.
    pub request_timeout: Duration,
}

impl Default for Fetcher {
    fn default() -> Self {
        Self {
            addressing: Addressing::Plain,
            range_size: 4 << 20,
            parallel_per_peer: 4,
            max_size: 1 << 40,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A failure of one request to one peer.
#[derive(Debug)]
enum PeerError {
    Status(Status),
    Protocol(String),
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Status(s) => write!(f, "{s}"),
            PeerError::Protocol(m) => f.write_str(m),
        }
    }
}

/// One request on a fresh stream; returns (size, content bytes).
async fn request(
    session: &Session,
    op: u8,
    addr: &Address,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> Result<(u64, Vec<u8>), PeerError> {
    let run = async {
        let (mut send, mut recv) = session.open_bi().await.map_err(|e| PeerError::Protocol(e.to_string()))?;
        let mut req = Vec::with_capacity(REQUEST_LEN);
        req.extend_from_slice(MAGIC);
        req.extend_from_slice(&[VERSION, op]);
        req.extend_from_slice(&addr.0);
        req.extend_from_slice(&offset.to_be_bytes());
        req.extend_from_slice(&len.to_be_bytes());
        let io = |e: std::io::Error| PeerError::Protocol(e.to_string());
        send.write_all(&req).await.map_err(io)?;
        // The end of our half is acknowledged while the response comes; the server may stop
        // our half once it read the request, so how `finish` ends does not matter.
        let (_, response) = tokio::join!(send.finish(), async {
            let mut head = [0u8; RESPONSE_LEN];
            recv.read_exact(&mut head).await.map_err(io)?;
            let status =
                Status::from_code(head[0]).ok_or_else(|| PeerError::Protocol(format!("status {}", head[0])))?;
            if status != Status::Ok {
                return Err(PeerError::Status(status));
            }
            let size = u64::from_be_bytes(head[1..9].try_into().expect("8 bytes"));
            let body = u64::from_be_bytes(head[9..17].try_into().expect("8 bytes"));
            let want = if op == OP_READ { len } else { 0 };
            if body != want {
                return Err(PeerError::Protocol(format!("announced {body} bytes for a request of {want}")));
            }
            let mut data = vec![0u8; body as usize];
            recv.read_exact(&mut data).await.map_err(io)?;
            // Nothing may follow.
            let mut extra = [0u8; 1];
            if recv.read(&mut extra).await.map_err(io)? != 0 {
                return Err(PeerError::Protocol("bytes past the announced length".into()));
            }
            Ok((size, data))
        });
        let (size, data) = response?;
        Ok((size, data))
    };
    tokio::time::timeout(timeout, run).await.unwrap_or_else(|_| Err(PeerError::Protocol("timed out".into())))
}

/// Where fetched ranges go.
#[derive(Clone)]
enum Dest {
    Memory(Arc<Mutex<Vec<u8>>>),
    File(Arc<Mutex<std::fs::File>>),
}

/// Positioned I/O on a shared file (seek, then read or write, under its lock).
fn file_at(
    f: &Mutex<std::fs::File>,
    offset: u64,
    io: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Seek;
    let mut f = f.lock().expect("fetch file");
    f.seek(std::io::SeekFrom::Start(offset))?;
    io(&mut f)
}

impl Dest {
    async fn write_at(&self, offset: u64, data: Vec<u8>) -> std::io::Result<()> {
        match self {
            Dest::Memory(m) => {
                m.lock().expect("fetch buffer")[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
                Ok(())
            }
            Dest::File(f) => {
                let f = f.clone();
                tokio::task::spawn_blocking(move || file_at(&f, offset, |f| std::io::Write::write_all(f, &data)))
                    .await
                    .map_err(std::io::Error::other)?
            }
        }
    }

    async fn read(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        match self {
            Dest::Memory(m) => Ok(m.lock().expect("fetch buffer")[offset as usize..(offset + len) as usize].to_vec()),
            Dest::File(f) => {
                let f = f.clone();
                tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; len as usize];
                    file_at(&f, offset, |f| std::io::Read::read_exact(f, &mut buf)).map(|()| buf)
                })
                .await
                .map_err(std::io::Error::other)?
            }
        }
    }

    async fn address(&self, addressing: &Addressing) -> std::io::Result<Address> {
        match self {
            Dest::Memory(m) => Ok(addressing.address(&m.lock().expect("fetch buffer"))),
            Dest::File(f) => {
                let (f, mut h) = (f.clone(), addressing.hasher());
                tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; 1 << 20];
                    file_at(&f, 0, |f| loop {
                        let n = std::io::Read::read(f, &mut buf)?;
                        if n == 0 {
                            return Ok(());
                        }
                        h.update(&buf[..n]);
                    })?;
                    Ok(h.finalize())
                })
                .await
                .map_err(std::io::Error::other)?
            }
        }
    }
}

/// The state of one fetch shared by its workers.
struct Job {
    addr: Address,
    size: u64,
    range_size: u64,
    dest: Dest,
    queue: Mutex<VecDeque<u64>>,
    /// Ranges not yet written.
    remaining: Mutex<u64>,
    /// Per range: who served the bytes written (an index into the peers).
    served: Mutex<Vec<Option<usize>>>,
    /// Peers whose range was replaced by different bytes (phase 2, per candidate).
    differs: Mutex<HashSet<usize>>,
    bytes_from: Mutex<HashMap<usize, u64>>,
    /// Phase 1 hashes ranges in order as they arrive (overlapping the transfer): ranges
    /// written, and the next range to hash with the hash so far (`None` once phase 2 began).
    written: Mutex<Vec<bool>>,
    hashing: Mutex<(u64, Option<stt_proto::storage::AddressHasher>)>,
}

impl Job {
    /// Hashes the ranges written in order from the hash cursor on; gives up at once if
    /// another worker is doing it (`wait`: waits for it instead). A range is at most
    /// [`MAX_RANGE`], so a call runs for milliseconds per range it hashes.
    fn advance_hash(&self, wait: bool) -> std::io::Result<()> {
        let mut guard = match self.hashing.try_lock() {
            Ok(g) => g,
            Err(_) if wait => self.hashing.lock().expect("job"),
            Err(_) => return Ok(()),
        };
        let (next, hasher) = &mut *guard;
        let Some(h) = hasher.as_mut() else { return Ok(()) };
        while self.written.lock().expect("job").get(*next as usize).copied().unwrap_or(false) {
            let (off, len) = self.range(*next);
            // Reading back holds only this lock; writers of other ranges go on meanwhile.
            let data = match &self.dest {
                Dest::Memory(m) => m.lock().expect("fetch buffer")[off as usize..(off + len) as usize].to_vec(),
                Dest::File(f) => {
                    let mut buf = vec![0u8; len as usize];
                    file_at(f, off, |f| std::io::Read::read_exact(f, &mut buf))?;
                    buf
                }
            };
            h.update(&data);
            *next += 1;
        }
        Ok(())
    }

    /// [`Job::advance_hash`] on the blocking pool: reading a range back and hashing it takes
    /// milliseconds (a range is up to 16 MiB), and waiting for another worker's hashing
    /// blocks; neither may stall the runtime thread, and the node's driver with it.
    async fn advance_hash_blocking(self: &Arc<Self>, wait: bool) -> std::io::Result<()> {
        let job = self.clone();
        tokio::task::spawn_blocking(move || job.advance_hash(wait)).await.map_err(std::io::Error::other)?
    }

    fn range(&self, i: u64) -> (u64, u64) {
        let off = i * self.range_size;
        (off, self.range_size.min(self.size - off))
    }
}

impl Fetcher {
    /// Fetches the blob at `addr` into memory from `peers`, verified.
    ///
    /// # Errors
    /// [`FetchError`].
    pub async fn fetch(&self, peers: &[Session], addr: &Address) -> Result<(Vec<u8>, FetchReport), FetchError> {
        let mut out = None;
        let report = self
            .fetch_with(peers, addr, |size| {
                let m = Arc::new(Mutex::new(vec![0u8; size as usize]));
                out = Some(m.clone());
                Ok(Dest::Memory(m))
            })
            .await?;
        let m = out.expect("a destination was made");
        let data = std::mem::take(&mut *m.lock().expect("fetch buffer"));
        Ok((data, report))
    }

    /// Fetches the blob at `addr` into the file `path` (created or truncated; the caller
    /// renames it into place once this returned `Ok`), verified; memory stays bounded by
    /// the ranges in flight.
    ///
    /// # Errors
    /// [`FetchError`].
    pub async fn fetch_to_file(
        &self,
        peers: &[Session],
        addr: &Address,
        path: &Path,
    ) -> Result<FetchReport, FetchError> {
        let path = path.to_path_buf();
        self.fetch_with(peers, addr, move |size| {
            let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
            f.set_len(size)?;
            Ok(Dest::File(Arc::new(Mutex::new(f))))
        })
        .await
    }

    /// Fetches from peers into `storage` (through a temporary file in `tmp_dir`) and
    /// returns the address it is stored under.
    ///
    /// # Errors
    /// [`FetchError`].
    pub async fn fetch_into(
        &self,
        peers: &[Session],
        addr: &Address,
        storage: &Storage,
        tmp_dir: &Path,
    ) -> Result<FetchReport, FetchError> {
        if storage.contains(addr).await? {
            return Ok(FetchReport::default());
        }
        let tmp = tmp_dir.join(format!(".stt-fetch-{}-{addr}", std::process::id()));
        let r = async {
            let report = self.fetch_to_file(peers, addr, &tmp).await?;
            let stored = storage.put_file(&tmp).await?;
            if stored != *addr {
                return Err(FetchError::Local(StoreError::Config(
                    "the storage uses another addressing than the fetcher".into(),
                )));
            }
            Ok(report)
        }
        .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        r
    }

    async fn fetch_with(
        &self,
        peers: &[Session],
        addr: &Address,
        make: impl FnOnce(u64) -> std::io::Result<Dest>,
    ) -> Result<FetchReport, FetchError> {
        let range_size = self.range_size.clamp(1, MAX_RANGE);
        // Ask every peer for the size; group the peers by the size they announce.
        let mut asks = tokio::task::JoinSet::new();
        for (i, s) in peers.iter().enumerate() {
            let (s, a, t) = (s.clone(), *addr, self.request_timeout);
            asks.spawn(async move { (i, request(&s, OP_STAT, &a, 0, 0, t).await) });
        }
        let mut stats: Vec<_> = asks.join_all().await;
        stats.sort_by_key(|(i, _)| *i);
        let stats = stats.into_iter().map(|(_, r)| r);
        let mut errors = Vec::new();
        let mut by_size: Vec<(u64, Vec<usize>)> = Vec::new();
        for (i, r) in stats.into_iter().enumerate() {
            match r {
                Ok((size, _)) => match by_size.iter_mut().find(|(s, _)| *s == size) {
                    Some((_, v)) => v.push(i),
                    None => by_size.push((size, vec![i])),
                },
                Err(PeerError::Status(Status::NotFound)) => {}
                Err(e) => errors.push((peers[i].peer_node_id(), e.to_string())),
            }
        }
        if by_size.is_empty() && errors.is_empty() {
            return Err(FetchError::NotFound);
        }
        by_size.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let mut bad = Vec::new();
        let mut make = Some(make);
        let mut dest: Option<Dest> = None;
        // Sizes over the limit are tried last (never: a peer announcing a huge size must not
        // keep the others from serving), and reported only if nothing else was available.
        by_size.sort_by_key(|(size, _)| *size > self.max_size);
        let mut too_large = None;
        for (size, group) in by_size {
            if size > self.max_size {
                if bad.is_empty() && errors.is_empty() {
                    too_large = Some(size);
                }
                errors.extend(group.iter().map(|&i| (peers[i].peer_node_id(), format!("announced {size} bytes"))));
                continue;
            }
            // One destination for the whole fetch (sized for the first group tried).
            let d = match (&dest, make.take()) {
                (Some(d), _) => d.clone(),
                (None, Some(m)) => {
                    let d = m(size)?;
                    dest = Some(d.clone());
                    d
                }
                (None, None) => unreachable!("make is taken only once"),
            };
            match &d {
                Dest::Memory(m) => m.lock().expect("fetch buffer").resize(size as usize, 0),
                Dest::File(f) => f.lock().expect("fetch file").set_len(size)?,
            }
            let ranges = size.div_ceil(range_size);
            let job = Arc::new(Job {
                addr: *addr,
                size,
                range_size,
                dest: d,
                queue: Mutex::new((0..ranges).collect()),
                remaining: Mutex::new(ranges),
                served: Mutex::new(vec![None; ranges as usize]),
                differs: Mutex::new(HashSet::new()),
                bytes_from: Mutex::new(HashMap::new()),
                written: Mutex::new(vec![false; ranges as usize]),
                hashing: Mutex::new((0, Some(self.addressing.hasher()))),
            });
            // Phase 1: every range from any peer of the group, in parallel.
            let mut alive: Vec<usize> = group.clone();
            let failed = self.run(&job, peers, &alive).await;
            for (i, e) in failed {
                alive.retain(|p| *p != i);
                errors.push((peers[i].peer_node_id(), e));
            }
            if *job.remaining.lock().expect("job") == 0 {
                job.advance_hash_blocking(true).await?;
                let h = job.hashing.lock().expect("job").1.take();
                let got = match h {
                    Some(h) => h.finalize(),
                    None => job.dest.address(&self.addressing).await?,
                };
                if got == *addr {
                    return Ok(self.report(&job, peers, size, bad));
                }
            }
            job.hashing.lock().expect("job").1 = None;
            // Phase 2: one peer's version at a time.
            let mut order = alive.clone();
            {
                let served = job.served.lock().expect("job");
                order.sort_by_key(|p| std::cmp::Reverse(served.iter().filter(|s| **s == Some(*p)).count()));
            }
            for p in order {
                let todo: VecDeque<u64> = {
                    let served = job.served.lock().expect("job");
                    (0..ranges).filter(|&i| served[i as usize] != Some(p)).collect()
                };
                job.differs.lock().expect("job").clear();
                *job.remaining.lock().expect("job") = todo.len() as u64;
                *job.queue.lock().expect("job") = todo;
                let failed = self.run(&job, peers, &[p]).await;
                if let Some((_, e)) = failed.into_iter().next() {
                    errors.push((peers[p].peer_node_id(), e));
                    continue;
                }
                if job.dest.address(&self.addressing).await? == *addr {
                    // p's version is the content: whoever served a range that differs from it lied.
                    for o in job.differs.lock().expect("job").iter() {
                        if !bad.contains(&peers[*o].peer_node_id()) {
                            bad.push(peers[*o].peer_node_id());
                        }
                    }
                    return Ok(self.report(&job, peers, size, bad));
                }
                // p's complete version does not match the address.
                bad.push(peers[p].peer_node_id());
                tracing::warn!(peer = %peers[p].peer_node_id(), %addr, "blob fetch: peer served wrong bytes");
            }
            errors.retain(|(id, _)| !bad.contains(id));
        }
        if let Some(size) = too_large {
            return Err(FetchError::TooLarge { size, max: self.max_size });
        }
        if bad.is_empty() && errors.is_empty() {
            return Err(FetchError::NotFound);
        }
        Err(FetchError::NoValidCopy { bad, errors })
    }

    fn report(&self, job: &Job, peers: &[Session], size: u64, bad_peers: Vec<NodeId>) -> FetchReport {
        let bytes_from =
            job.bytes_from.lock().expect("job").iter().map(|(p, n)| (peers[*p].peer_node_id(), *n)).collect();
        FetchReport { size, bytes_from, bad_peers }
    }

    /// Runs workers on `who` until every queued range is written; returns the peers that
    /// failed (their ranges went back to the queue for the others).
    async fn run(&self, job: &Arc<Job>, peers: &[Session], who: &[usize]) -> Vec<(usize, String)> {
        let failed: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        for &p in who {
            for _ in 0..self.parallel_per_peer.max(1) {
                let (job, session, failed, timeout) =
                    (job.clone(), peers[p].clone(), failed.clone(), self.request_timeout);
                let all = who.len();
                tasks.spawn(async move {
                    let mut busy = 0u32;
                    loop {
                        if failed.lock().expect("job").iter().any(|(f, _)| *f == p) {
                            return;
                        }
                        if failed.lock().expect("job").iter().map(|(f, _)| *f).collect::<HashSet<_>>().len() == all {
                            return;
                        }
                        let next = job.queue.lock().expect("job").pop_front();
                        let Some(i) = next else {
                            if *job.remaining.lock().expect("job") == 0 {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        };
                        let (off, len) = job.range(i);
                        match request(&session, OP_READ, &job.addr, off, len, timeout).await {
                            Ok((size, data)) if size == job.size => {
                                let n = data.len() as u64;
                                // Phase 2 replaces another peer's range: note whether it differs.
                                let previous = job.served.lock().expect("job")[i as usize];
                                if let Some(o) = previous.filter(|o| *o != p) {
                                    match job.dest.read(off, n).await {
                                        Ok(old) if old != data => {
                                            job.differs.lock().expect("job").insert(o);
                                        }
                                        Ok(_) => {}
                                        Err(e) => {
                                            job.queue.lock().expect("job").push_back(i);
                                            failed.lock().expect("job").push((p, format!("local read: {e}")));
                                            return;
                                        }
                                    }
                                }
                                if let Err(e) = job.dest.write_at(off, data).await {
                                    job.queue.lock().expect("job").push_back(i);
                                    failed.lock().expect("job").push((p, format!("local write: {e}")));
                                    return;
                                }
                                job.served.lock().expect("job")[i as usize] = Some(p);
                                *job.bytes_from.lock().expect("job").entry(p).or_default() += n;
                                *job.remaining.lock().expect("job") -= 1;
                                job.written.lock().expect("job")[i as usize] = true;
                                if let Err(e) = job.advance_hash_blocking(false).await {
                                    failed.lock().expect("job").push((p, format!("local read: {e}")));
                                    return;
                                }
                            }
                            Err(PeerError::Status(Status::Busy)) if busy < 200 => {
                                busy += 1;
                                job.queue.lock().expect("job").push_back(i);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            other => {
                                job.queue.lock().expect("job").push_back(i);
                                let e = match other {
                                    Ok((size, _)) => format!("announced size {size}, then {}", job.size),
                                    Err(e) => e.to_string(),
                                };
                                failed.lock().expect("job").push((p, e));
                                return;
                            }
                        }
                    }
                });
            }
        }
        while tasks.join_next().await.is_some() {}
        let f = std::mem::take(&mut *failed.lock().expect("job"));
        let mut seen = HashSet::new();
        f.into_iter().filter(|(p, _)| seen.insert(*p)).collect()
    }
}
