//! A deterministic network simulator (feature `test-util`): N nodes, a virtual
//! clock, a seeded RNG and configurable links. A failing run prints its seed;
//! `STT_SIM_SEED=<seed>` reproduces it.
//!
//! ```
//! use stt_proto::sim::World;
//! let mut w = World::new(World::seed_from_env(1));
//! let a = w.add_node(stt_proto::Config::default());
//! let b = w.add_node(stt_proto::Config::default());
//! let s = w.connect(a, b);
//! w.drive_until(|w| w.is_established(a, s), 1_000).unwrap();
//! ```
//!
//! Nodes can sit behind simulated NATs (RFC 4787 mapping and filtering behaviours):
//! see [`World::add_nat`] and [`World::add_node_behind`].

mod link;
mod nat;

use alloc::collections::{BTreeMap, BinaryHeap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use core::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

pub use link::{Bottleneck, BurstLoss, LinkConfig};
use link::{Link, Queue};
use nat::{Nat, Target};
pub use nat::{NatBehavior, NatConfig, NatId, NatStats, PortAssignment};

use crate::{
    Config, Event, Identity, Input, InputOutcome, Instant, Node, NodeId, NodeSeed, Output, PathAddr, SessionId,
    SessionState, SharedSeed, UnixTime,
};

/// Wall time at the simulator's epoch.
pub const SIM_UNIX_EPOCH: UnixTime = UnixTime::from_millis(1_700_000_000_000);

/// One simulated node and everything it reported.
pub struct SimNode {
    /// The node under test.
    pub node: Node<ChaCha20Rng>,
    /// Its current address as peers see it (changes on rebinding); for a node behind a
    /// NAT, its private address, which only nodes behind the same NAT can reach.
    pub addr: SocketAddr,
    /// Every event it emitted, in order.
    pub events: Vec<Event>,
    /// The same events with the virtual time at which `poll_output` returned them.
    pub timed_events: Vec<(Instant, Event)>,
    /// Every input outcome other than `Consumed`.
    pub drops: Vec<InputOutcome>,
    /// Bytes this node sent.
    pub bytes_sent: u64,
    identity: Identity,
    config: Config,
    unix_offset: Option<i64>,
    nat: Option<NatId>,
}

/// A datagram in flight.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    from_node: usize,
    /// Inside which NAT it travels (`None`: the public side).
    realm: Option<NatId>,
    data: Vec<u8>,
}

/// A datagram seen on the wire (when capture is on): addresses as they are on the
/// sender's outgoing segment, i.e. after a NAT rewrote the source of a datagram leaving it.
#[derive(Clone, Debug)]
pub struct Captured {
    /// When it was sent.
    pub at: Instant,
    /// Sender's node index.
    pub from_node: usize,
    /// Source address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A datagram handed to a node (when capture is on).
#[derive(Clone, Debug)]
pub struct Delivered {
    /// When it arrived.
    pub at: Instant,
    /// Sender's node index.
    pub from_node: usize,
    /// Receiver's node index.
    pub to_node: usize,
    /// The source address the receiver saw (a NAT's public address for a datagram that
    /// left through one; NATs never rewrite the source of inbound datagrams).
    pub from: SocketAddr,
    /// The receiver's own address (its private address if it is behind a NAT).
    pub to: SocketAddr,
    /// Length in bytes (as delivered, after any corruption).
    pub len: usize,
}

/// A run that did not reach its goal; `Display` names the seed and the last steps.
#[derive(Debug)]
pub struct SimError {
    /// The world's seed.
    pub seed: u64,
    /// Why it stopped.
    pub reason: String,
    /// The last trace lines.
    pub trace: Vec<String>,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation failed: {} (reproduce with STT_SIM_SEED={})", self.reason, self.seed)?;
        for l in &self.trace {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

impl core::error::Error for SimError {}

const TRACE_LINES: usize = 50;

/// The simulated world.
pub struct World {
    /// Virtual time.
    pub now: Instant,
    /// The nodes, by index.
    pub nodes: Vec<SimNode>,
    links: BTreeMap<(usize, usize), Link>,
    shared: Vec<Queue>,
    default_link: LinkConfig,
    queue: BinaryHeap<Reverse<InFlight>>,
    rng: ChaCha20Rng,
    seed: u64,
    seq: u64,
    shared_seed: SharedSeed,
    trace: VecDeque<String>,
    /// Datagrams sent, when `capture` is on.
    pub captured: Vec<Captured>,
    /// Datagrams handed to nodes, when `capture` is on.
    pub delivered: Vec<Delivered>,
    /// Record every datagram in `captured` and every delivery in `delivered`.
    pub capture: bool,
    buf: Vec<u8>,
    nats: Vec<Nat>,
}

impl World {
    /// `STT_SIM_SEED` from the environment if set, else `default`.
    pub fn seed_from_env(default: u64) -> u64 {
        std::env::var("STT_SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
    }

    /// An empty world; every node added shares one random shared seed.
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        Self {
            now: Instant::ZERO,
            nodes: Vec::new(),
            links: BTreeMap::new(),
            shared: Vec::new(),
            default_link: LinkConfig::default(),
            queue: BinaryHeap::new(),
            rng,
            seed,
            seq: 0,
            shared_seed: SharedSeed::from_bytes(s),
            trace: VecDeque::new(),
            captured: Vec::new(),
            delivered: Vec::new(),
            capture: false,
            buf: vec![0u8; 65_536],
            nats: Vec::new(),
        }
    }

    /// The seed this world was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The shared seed nodes get by default.
    pub fn shared_seed(&self) -> SharedSeed {
        self.shared_seed.clone()
    }

    /// A fresh random node seed from the world's RNG.
    pub fn random_node_seed(&mut self) -> NodeSeed {
        let mut s = [0u8; 32];
        self.rng.fill_bytes(&mut s);
        NodeSeed::from_bytes(s)
    }

    /// Link config used for pairs without their own.
    pub fn set_default_link(&mut self, config: LinkConfig) {
        self.default_link = config;
    }

    /// Sets the link `from → to`.
    pub fn set_link(&mut self, from: usize, to: usize, config: LinkConfig) {
        self.links.insert((from, to), Link::new(config));
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_links(&mut self, a: usize, b: usize, config: LinkConfig) {
        self.set_link(a, b, config.clone());
        self.set_link(b, a, config);
    }

    /// Adds a bottleneck that several links can share (`LinkConfig::shared_bottleneck`);
    /// returns its index.
    pub fn add_shared_bottleneck(&mut self, b: Bottleneck) -> usize {
        self.shared.push(Queue::new(b));
        self.shared.len() - 1
    }

    /// Bytes delivered over the link `from → to` so far (after loss and queue drops).
    pub fn delivered_bytes(&self, from: usize, to: usize) -> u64 {
        self.links.get(&(from, to)).map_or(0, |l| l.delivered_bytes)
    }

    /// The largest datagram offered to the link `from → to` so far.
    pub fn largest_datagram(&self, from: usize, to: usize) -> usize {
        self.links.get(&(from, to)).map_or(0, |l| l.largest_offered)
    }

    /// Adds a node with a random node seed, the world's shared seed and a correct clock.
    pub fn add_node(&mut self, config: Config) -> usize {
        let seed = self.random_node_seed();
        let identity = Identity::new(seed, self.shared_seed());
        self.add_node_with(config, identity, Some(SIM_UNIX_EPOCH))
    }

    /// Adds a node with a given identity and wall clock (`None`: no RTC).
    pub fn add_node_with(&mut self, config: Config, identity: Identity, unix: Option<UnixTime>) -> usize {
        let idx = self.nodes.len();
        // 192.0.2.1.. for the first 254 nodes, then the benchmarking range 198.18.0.0/15.
        let ip = match u8::try_from(idx + 1) {
            Ok(last) if last < 255 => Ipv4Addr::new(192, 0, 2, last),
            _ => Ipv4Addr::from(0xC612_0000u32.wrapping_add(idx as u32)),
        };
        let addr = SocketAddr::new(IpAddr::V4(ip), 4000);
        let entropy = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        let unix_offset = unix.map(|u| u.as_millis() as i64 - SIM_UNIX_EPOCH.as_millis() as i64);
        let node = self.build_node(idx, config.clone(), identity.clone(), entropy, unix_offset);
        self.nodes.push(SimNode {
            node,
            addr,
            events: Vec::new(),
            timed_events: Vec::new(),
            drops: Vec::new(),
            bytes_sent: 0,
            identity,
            config,
            unix_offset,
            nat: None,
        });
        idx
    }

    fn build_node(
        &self,
        idx: usize,
        config: Config,
        identity: Identity,
        entropy: ChaCha20Rng,
        unix_offset: Option<i64>,
    ) -> Node<ChaCha20Rng> {
        let unix = unix_offset.map(|o| {
            UnixTime::from_millis((SIM_UNIX_EPOCH.as_millis() as i64 + o) as u64 + self.now.as_micros() / 1000)
        });
        match Node::new(config, identity, entropy, self.now, unix) {
            Ok(n) => n,
            Err(e) => panic!("invalid config for sim node {idx}: {e}"),
        }
    }

    /// Replaces node `i` with a fresh node of the same identity, config and address
    /// (a crash and restart: all session state is lost).
    pub fn restart(&mut self, i: usize) {
        let entropy = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        let n = &self.nodes[i];
        let node = self.build_node(i, n.config.clone(), n.identity.clone(), entropy, n.unix_offset);
        self.log(format!("restart node {i}"));
        self.nodes[i].node = node;
    }

    /// The node at `i`.
    pub fn node(&mut self, i: usize) -> &mut Node<ChaCha20Rng> {
        &mut self.nodes[i].node
    }

    /// Node `i`'s id.
    pub fn node_id(&self, i: usize) -> NodeId {
        self.nodes[i].node.node_id()
    }

    /// Node `i`'s address as a `PathAddr`.
    pub fn addr(&self, i: usize) -> PathAddr {
        PathAddr::Udp(self.nodes[i].addr)
    }

    /// `a` connects to `b`, expecting `b`'s node id.
    pub fn connect(&mut self, a: usize, b: usize) -> SessionId {
        let to = self.addr(b);
        let expect = Some(self.node_id(b));
        let now = self.now;
        match self.nodes[a].node.connect(now, to, expect) {
            Ok(s) => s,
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    /// Whether node `i`'s session `s` is established.
    pub fn is_established(&mut self, i: usize, s: SessionId) -> bool {
        self.nodes[i].node.session(s).is_some_and(|s| s.state() == SessionState::Established)
    }

    /// Node `i`'s `Established` events, as `(session, peer)`.
    pub fn established(&self, i: usize) -> Vec<(SessionId, NodeId)> {
        self.nodes[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Established { session, peer } => Some((*session, *peer)),
                _ => None,
            })
            .collect()
    }

    /// NAT rebinding: node `i`'s packets now come from `new_addr`; packets to the old address are lost.
    pub fn rebind(&mut self, i: usize, new_addr: SocketAddr) {
        self.log(format!("rebind node {i} {} -> {new_addr}", self.nodes[i].addr));
        self.nodes[i].addr = new_addr;
    }

    /// Delivers `data` to node `to` as if sent from `from` now (for replay and spoofing tests).
    pub fn inject(&mut self, to: usize, from: SocketAddr, data: &[u8]) -> InputOutcome {
        let mut d = data.to_vec();
        let now = self.now;
        let out = self.nodes[to].node.handle_input(Input::Datagram { now, from: PathAddr::Udp(from), data: &mut d });
        if out != InputOutcome::Consumed {
            self.nodes[to].drops.push(out);
        }
        out
    }

    fn log(&mut self, line: String) {
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:?} {line}", self.now));
    }

    /// Drains every node's output into the links.
    pub fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            loop {
                let out = self.nodes[i].node.poll_output(&mut self.buf);
                match out {
                    Output::Transmit(t) => {
                        let data = self.buf[..t.len].to_vec();
                        self.send(i, t.dst, data);
                    }
                    Output::Event(e) => {
                        self.log(format!("node {i} event {e:?}"));
                        self.nodes[i].events.push(e);
                        let now = self.now;
                        self.nodes[i].timed_events.push((now, e));
                    }
                    Output::Wait(_) => break,
                }
            }
        }
    }

    /// Sends `data` from node `from_node` to `to` now, exactly as if the node had
    /// transmitted it (NAT translation, links, capture); the receiving node, if any, gets it
    /// through `handle_input` like any datagram (bytes that are not STT are dropped there).
    pub fn send_raw(&mut self, from_node: usize, to: SocketAddr, data: Vec<u8>) {
        self.send(from_node, PathAddr::Udp(to), data);
    }

    fn send(&mut self, from_node: usize, dst: PathAddr, data: Vec<u8>) {
        self.nodes[from_node].bytes_sent += data.len() as u64;
        let PathAddr::Udp(to) = dst else { return };
        let hop = self.route_out(from_node, to);
        let from = hop.from;
        if self.capture {
            self.captured.push(Captured { at: self.now, from_node, from, to, data: data.clone() });
        }
        let fate = match hop.target {
            Target::Node(to_node) => {
                let default = self.default_link.clone();
                let link = self.links.entry((from_node, to_node)).or_insert_with(|| Link::new(default));
                link.offer(self.now, data.len(), &mut self.rng, &mut self.shared)
            }
            // A NAT's public address with no mapping behind it yet: the default link, no state kept.
            Target::Nat => {
                Link::new(self.default_link.clone()).offer(self.now, data.len(), &mut self.rng, &mut self.shared)
            }
            Target::Lost(why) => {
                self.log(format!("node {from_node} -> {to}: {why}, {} bytes lost", data.len()));
                return;
            }
        };
        self.log(format!(
            "node {from_node} -> {}: {} bytes type {:#04x} {}",
            match hop.target {
                Target::Node(to_node) => format!("node {to_node}"),
                _ => format!("{to}"),
            },
            data.len(),
            data.first().copied().unwrap_or(0),
            if fate.deliveries.is_empty() { "LOST" } else { "" }
        ));
        for at in fate.deliveries {
            let mut d = data.clone();
            if let Some(bit) = fate.flip_bit {
                d[bit / 8] ^= 1 << (bit % 8);
            }
            self.seq += 1;
            self.queue.push(Reverse(InFlight { at, seq: self.seq, from, to, from_node, realm: hop.realm, data: d }));
        }
    }

    /// The next time anything happens.
    pub fn next_event_time(&self) -> Option<Instant> {
        let delivery = self.queue.peek().map(|Reverse(f)| f.at);
        let deadline = self.nodes.iter().filter_map(|n| n.node.next_deadline()).min();
        match (delivery, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances to the next event and processes everything due. Returns false when idle.
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(t) = self.next_event_time() else {
            return false;
        };
        self.now = self.now.max(t);
        while self.queue.peek().is_some_and(|Reverse(f)| f.at <= self.now) {
            let Some(Reverse(f)) = self.queue.pop() else { break };
            // Deliver to whichever node has that address now (through its NAT, if any).
            let Some(i) = self.route_in(f.realm, f.from, f.to) else { continue };
            let mut data = f.data;
            let now = self.now;
            if self.capture {
                let (from_node, from, to, len) = (f.from_node, f.from, self.nodes[i].addr, data.len());
                self.delivered.push(Delivered { at: now, from_node, to_node: i, from, to, len });
            }
            let out =
                self.nodes[i].node.handle_input(Input::Datagram { now, from: PathAddr::Udp(f.from), data: &mut data });
            if out != InputOutcome::Consumed {
                self.log(format!("node {i} dropped datagram from {}: {out:?}", f.from));
                self.nodes[i].drops.push(out);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].node.next_deadline().is_some_and(|d| d <= self.now) {
                let now = self.now;
                let _ = self.nodes[i].node.handle_input(Input::Timeout { now });
            }
        }
        self.flush();
        true
    }

    /// Steps until `pred` holds, at most `max_steps` times.
    ///
    /// # Errors
    /// [`SimError`] (with the seed and the last steps) if the world went idle or
    /// the step budget ran out first.
    pub fn drive_until(
        &mut self,
        mut pred: impl FnMut(&mut World) -> bool,
        max_steps: usize,
    ) -> Result<usize, SimError> {
        for n in 0..max_steps {
            if pred(self) {
                return Ok(n);
            }
            if !self.step() {
                return if pred(self) { Ok(n) } else { Err(self.error("world went idle")) };
            }
        }
        if pred(self) {
            Ok(max_steps)
        } else {
            Err(self.error(&format!("predicate still false after {max_steps} steps")))
        }
    }

    /// Runs until virtual time reaches `until` (or the world goes idle).
    pub fn run_until(&mut self, until: Instant) {
        loop {
            self.flush();
            match self.next_event_time() {
                Some(t) if t <= until => {
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now.saturating_add(d);
        self.run_until(until);
    }

    /// A [`SimError`] carrying the seed and recent trace.
    pub fn error(&self, reason: &str) -> SimError {
        SimError { seed: self.seed, reason: reason.into(), trace: self.trace.iter().cloned().collect() }
    }
}
