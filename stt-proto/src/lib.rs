//! # stt-proto: the STT protocol core
//!
//! `no_std` + `alloc`, sans-IO. Datagrams and timestamps go in; datagrams,
//! deadlines and events come out. No sockets, clocks, threads or global RNG:
//! time is passed as [`Instant`] and randomness through [`Entropy`].
//!
//! ## The run-loop contract
//! 1. Feed every received datagram with [`Node::handle_input`]`(Input::Datagram { .. })`
//!    and every expired deadline with `Input::Timeout`.
//! 2. After each input or app command, call [`Node::poll_output`] until it returns
//!    [`Output::Wait`]; send each [`Transmit`] (`buf[..len]` to `dst`) and hand each
//!    [`Event`] to the application.
//! 3. Sleep until the deadline in `Wait` (or the next datagram).
//!
//! Methods come in classes: getters; `handle_input`; commands taking `now`
//! ([`Node::connect`], [`SessionRef::send_datagram`], [`SessionRef::close`]); and
//! `poll_output`. Peer input never returns an error: it is consumed or dropped
//! with a [`DropReason`] counted in [`NodeStats`].
//!
//! ```
//! use stt_proto::{Config, Identity, Input, Instant, Node, NodeSeed, Output, SharedSeed, UnixTime};
//! use rand_chacha::rand_core::SeedableRng;
//!
//! let shared = SharedSeed::from_bytes([7; 32]);
//! let id = |b| Identity::new(NodeSeed::from_bytes([b; 32]), shared.clone());
//! let t0 = Instant::ZERO;
//! let wall = Some(UnixTime::from_millis(1_700_000_000_000));
//! let rng = |s| rand_chacha::ChaCha20Rng::seed_from_u64(s);
//! let mut a = Node::new(Config::default(), id(1), rng(1), t0, wall).unwrap();
//! let mut b = Node::new(Config::default(), id(2), rng(2), t0, wall).unwrap();
//! let addr_a: core::net::SocketAddr = "192.0.2.1:4000".parse().unwrap();
//! let addr_b: core::net::SocketAddr = "192.0.2.2:4000".parse().unwrap();
//!
//! // Move everything `from` wants to send into `to`; count Established events.
//! fn pump<E: stt_proto::Entropy, F: stt_proto::Entropy>(
//!     from: &mut Node<E>, from_addr: core::net::SocketAddr, to: &mut Node<F>, buf: &mut [u8],
//! ) -> usize {
//!     let mut established = 0;
//!     loop {
//!         match from.poll_output(buf) {
//!             Output::Transmit(t) => {
//!                 let mut d = buf[..t.len].to_vec();
//!                 let now = Instant::ZERO;
//!                 let _ = to.handle_input(Input::Datagram { now, from: from_addr.into(), data: &mut d });
//!             }
//!             Output::Event(stt_proto::Event::Established { .. }) => established += 1,
//!             Output::Event(_) => {}
//!             Output::Wait(_) => return established,
//!         }
//!     }
//! }
//!
//! a.connect(t0, addr_b.into(), Some(b.node_id())).unwrap();
//! let mut buf = vec![0u8; 1500];
//! let mut established = 0;
//! for _ in 0..4 {
//!     established += pump(&mut a, addr_a, &mut b, &mut buf);
//!     established += pump(&mut b, addr_b, &mut a, &mut buf);
//! }
//! assert_eq!(established, 2);
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod addr;
mod config;
mod cookie;
pub mod crypto;
mod datagram;
mod entropy;
mod ephemeral_cache;
mod error;
mod event;
mod gate;
mod handshake;
mod identity;
mod key_index;
mod node;
mod path;
mod pmtud;
mod range_set;
mod record;
pub mod recovery;
mod rehandshake;
mod relay;
mod replay;
mod routes;
mod schedule;
pub mod segment;
mod session;
mod stats;
pub mod storage;
pub mod stream;
mod time;
mod transport;
mod wire;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;
#[cfg(all(test, feature = "fuzzing"))]
mod hostile;
#[cfg(feature = "test-util")]
pub mod sim;

pub use addr::{PathAddr, RelayAddr, TunnelId};
pub use config::{Config, ConfigError};
pub use entropy::{Entropy, EntropyPurpose};
pub use error::{CloseReason, ConnectError, DatagramError, DropReason, ExportError, HandshakeFailure, TransportCode};
pub use event::{Event, Input, InputOutcome, Output, SessionId, Transmit};
pub use identity::{Identity, NodeId, NodeSeed, SeedParseError, SharedSeed, TooManySeeds};
pub use node::{Node, SessionRef};
pub use range_set::RangeSet;
pub use recovery::CongestionAlgorithm;
pub use relay::{RelayConfig, RelayStatus};
pub use replay::{ReplayVerdict, ReplayWindow, REPLAY_WINDOW};
pub use session::SessionState;
pub use stats::{NodeStats, SessionStats};
pub use stream::{FrameError, ReadError, StreamError, StreamId, WriteError};
pub use time::{Duration, Instant, UnixTime};
pub use wire::frame::CloseKind;
pub use wire::header::{WireSessionId, VERSION};
pub use wire::params::TransportParams;
