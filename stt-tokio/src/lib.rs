//! # stt-tokio: the async driver and application API for STT
//!
//! The sans-IO [`stt_proto::Node`] sits behind one lock. Application reads and writes run
//! it in the caller's task and hand datagrams to the socket directly; a driver task
//! receives datagrams and fires timers. Stream data stays in the core, under its flow
//! control, until the application reads it. The driver stays thin: every protocol
//! decision is made in `stt-proto`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let shared = SharedSeed::from_hex(&std::fs::read_to_string("shared.seed")?)?;
//! let node = Node::bind("0.0.0.0:0".parse()?, Config::default(), Identity::new(NodeSeed::random(), shared)).await?;
//! let session = node.connect("203.0.113.5:7000".parse()?, None).await?;
//! let mut stream = session.open_uni().await?;
//! stream.write_all(b"hello").await?;
//! stream.finish().await?;
//! # Ok(()) }
//! ```
//!
//! ## Runtimes
//!
//! Both tokio runtimes work. One node runs one driver task, so a node's packet work uses
//! one core whatever the runtime. On a current-thread runtime a reader whose stream is
//! empty also takes waiting datagrams from the socket itself (one task switch fewer per
//! round trip); on a multi-thread runtime the driver alone reads the socket, and tasks
//! are woken only after the node lock is released, so that workers do not hand each
//! datagram back and forth. Measured on a two-core machine (docs/performance.md, "Seventh
//! round"): bulk 1 GiB at about 2.1 GB/s with both ends on current-thread runtimes, about
//! 1.6 GB/s on multi-thread ones (quinn: 1.0 and 0.8 GB/s). An application that mostly
//! moves data through one node does best on a current-thread runtime (as the `stt` CLI
//! does), with blocking work (hashing, files) on threads of its own.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
mod dispatch;
mod driver;
mod endpoint;
mod fetch;
mod node;
mod session;
mod shared;
mod state;
mod storage_fs;
mod store;
mod stream;
mod tunnel;
mod udp;
#[cfg(feature = "websocket")]
mod ws;

pub use dispatch::{EventEmitter, FrameDispatcher};
pub use endpoint::{Endpoint, EndpointError, EndpointMessage, Endpoints};
pub use fetch::{BlobServer, FetchError, FetchReport, Fetcher, ServeLimits, ServePolicy, Status as FetchStatus};
pub use node::{BindError, Node};
#[cfg(feature = "object-store")]
pub use object_store;
pub use session::{ConnectError, RelayError, Session};
pub use shared::Ended;
pub use storage_fs::FsStore;
#[cfg(feature = "object-store")]
pub use store::S3Config;
pub use store::{OpenOptions, Ranges, Storage, StoreError};
pub use stream::{RecvStream, SendStream, StreamClosed};
pub use stt_proto::storage::{Address, Addressing, BinaryStorage, BlobStore, MemoryStore, StorageError};
pub use stt_proto::{
    CloseReason, Config, DatagramError, Event, FrameError, HandshakeFailure, Identity, NodeId, NodeSeed, PathAddr,
    RelayAddr, RelayConfig, RelayStatus, SessionId, SessionStats, SharedSeed, StreamError, StreamId,
};
pub use udp::SocketOptions;
#[cfg(feature = "websocket")]
pub use ws::{WsConnectError, WsError, WsLimits};
#[cfg(feature = "websocket")]
pub use {rustls, tokio_rustls};

/// The segment codec (`BinaryStreamEncoder`/`Decoder`), re-exported so applications need
/// no direct dependency on `stt-proto`.
pub use stt_proto::segment;
pub use stt_proto::{Entropy, EntropyPurpose, NodeStats};

/// Entropy from the operating system's CSPRNG, for [`BinaryStorage::put`] and the segment
/// codec (no extra RNG crate needed).
///
/// # Example
///
/// ```
/// use stt_tokio::{Entropy, EntropyPurpose, OsEntropy};
/// let mut salt = [0u8; 32];
/// OsEntropy.fill(EntropyPurpose::StorageSalt, &mut salt);
/// assert_ne!(salt, [0u8; 32]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, _purpose: EntropyPurpose, out: &mut [u8]) {
        use rand_chacha::rand_core::{OsRng, TryRngCore};
        OsRng.try_fill_bytes(out).expect("the operating system's random number generator failed");
    }
}

/// Extension: random seeds from the operating system's CSPRNG.
///
/// # Example
///
/// ```
/// use stt_tokio::{NodeSeed, RandomSeed, SharedSeed};
/// let shared = SharedSeed::random(); // once per group; give it to every member
/// let node = NodeSeed::random(); // one per node: its identity
/// assert_ne!(node.node_id(), NodeSeed::random().node_id());
/// # let _ = shared;
/// ```
pub trait RandomSeed: Sized {
    /// A fresh random value.
    fn random() -> Self;
}

fn os_random32() -> [u8; 32] {
    use rand_chacha::rand_core::{OsRng, TryRngCore};
    let mut b = [0u8; 32];
    OsRng.try_fill_bytes(&mut b).expect("the operating system's random number generator failed");
    b
}

impl RandomSeed for NodeSeed {
    fn random() -> Self {
        NodeSeed::from_bytes(os_random32())
    }
}

impl RandomSeed for SharedSeed {
    fn random() -> Self {
        SharedSeed::from_bytes(os_random32())
    }
}

/// 32 random bytes from the operating system, for seeds.
pub fn random_seed_bytes() -> [u8; 32] {
    os_random32()
}

/// The README's Rust samples, compiled as doc tests (`cargo test --doc -p stt-tokio`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
