//! An independent scripted STT peer for the conformance suite.
//!
//! Written from `docs/protocol.md` alone: it must not depend on `stt-proto` (CI checks this
//! with `cargo tree`), so that the suite cross-checks the implementation instead of testing
//! it against itself. Noise comes from `snow`; the packet formats, key schedule, record
//! layer and frame codec are this crate's own.
//!
//! Packets and frames are exchanged as [`Item`]s, the textual form of the trace format
//! (`NAME key=value …`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod item;
pub mod keys;
pub mod noise_msg1;
pub mod peer;
pub mod vectors;
pub mod wire;

pub use item::Item;
pub use peer::{Decoded, Peer, PeerSetup};
