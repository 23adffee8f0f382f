//! The adapter contract between the runner and an implementation under test (IUT).
//!
//! Every method is one request of the shim line protocol (docs/conformance.md §5), so an
//! implementation in another language can be driven through [`crate::shim::ShimIut`].

use stt_conformance_peer::Item;

/// How to create one IUT node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// The group's shared seed.
    pub shared_seed: [u8; 32],
    /// The node's own seed.
    pub node_seed: [u8; 32],
    /// Seeds all of the node's randomness.
    pub rng: u64,
    /// Wall clock (ms since 1970) at virtual time 0.
    pub unix_ms: u64,
    /// Configuration by the names of docs/conformance.md §4 (`idle_timeout_ms=…`).
    pub config: Vec<(String, String)>,
}

/// Something a node produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// A datagram to `to` (`ip:port`).
    Send {
        /// Destination.
        to: String,
        /// Bytes.
        data: Vec<u8>,
    },
    /// An application event (`Established peer=…`).
    Event(Item),
}

/// An implementation under test. Errors are adapter failures (the case becomes FAIL);
/// refusals by the implementation's API are `Ok(Err(text))` from [`Iut::app`].
pub trait Iut {
    /// Feature names this implementation supports (cases `@requires` them).
    fn features(&mut self) -> Result<Vec<String>, String>;
    /// Creates node `node`; returns its node id.
    fn create(&mut self, node: usize, spec: &NodeSpec) -> Result<[u8; 32], String>;
    /// Delivers a datagram from `from` at `now_us`.
    fn input(&mut self, node: usize, now_us: u64, from: &str, data: &[u8]) -> Result<(), String>;
    /// Fires timers due at `now_us`.
    fn timeout(&mut self, node: usize, now_us: u64) -> Result<(), String>;
    /// The node's next deadline.
    fn deadline(&mut self, node: usize) -> Result<Option<u64>, String>;
    /// Everything the node wants to send or report now.
    fn drain(&mut self, node: usize) -> Result<Vec<Out>, String>;
    /// An application call; the result's fields or the API's refusal.
    fn app(&mut self, node: usize, now_us: u64, call: &Item) -> Result<Result<Item, String>, String>;
    /// A counter or state value; `None` if the implementation does not export it.
    fn state(&mut self, node: usize, name: &str) -> Result<Option<i64>, String>;
}
