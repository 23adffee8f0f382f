//! Relays and hole punching (spec §12).
//!
//! A *relay* is a node with [`Config::relay`](crate::Config::relay) set. Members keep an
//! ordinary session with it and send RELAY_REGISTER; the relay answers with RELAY_STATUS
//! (registered or refused, and the member's address as the relay sees it) and from then on
//! forwards RELAY_DATA frames between registered members by node id. What it forwards is
//! an end-to-end STT datagram of the members' own session: the relay sees node ids, sizes
//! and timing, never content, and cannot forge it.
//!
//! A session whose path is [`PathAddr::Relay`](crate::PathAddr::Relay) exchanges CANDIDATES
//! (its direct addresses) with its peer and both sides probe every candidate with small
//! PATH_CHALLENGE packets at once; the first answered probe moves the session onto the
//! direct path, and the relayed path stays as the fallback.

use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use crate::cookie::TokenBucket;
use crate::identity::NodeId;
use crate::time::Instant;
use crate::wire::frame::MAX_CANDIDATES;

/// What a relay node accepts and how much it forwards (spec [RY-5]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Registered members at most; later registrations are refused.
    pub max_members: usize,
    /// Only these node ids may register (`None`: any holder of the shared seed).
    pub members: Option<Vec<NodeId>>,
    /// Bytes per second one member may have forwarded (sustained).
    pub member_rate: u32,
    /// Burst allowance of that rate, in bytes.
    pub member_burst: u32,
    /// Forwarded datagrams waiting toward one member; beyond it new ones are dropped
    /// (default 256: one receive batch from a fast sender must fit).
    pub member_queue: usize,
    /// Bytes waiting toward all members together; beyond it new datagrams are dropped
    /// (default 64 MiB: the relay's memory bound for forwarding, whatever the member count).
    pub max_queued_bytes: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            max_members: 4096,
            members: None,
            member_rate: 4 * 1024 * 1024,
            member_burst: 1024 * 1024,
            member_queue: 256,
            max_queued_bytes: 64 << 20,
        }
    }
}

impl RelayConfig {
    /// Accept only these members (builder style).
    #[must_use]
    pub fn members(mut self, ids: Option<Vec<NodeId>>) -> Self {
        self.members = ids;
        self
    }

    /// Per-member forwarding rate and burst, in bytes (builder style).
    #[must_use]
    pub fn member_rate(mut self, bytes_per_sec: u32, burst: u32) -> Self {
        self.member_rate = bytes_per_sec;
        self.member_burst = burst;
        self
    }
}

/// Where a member stands with a relay it asked to register with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RelayStatus {
    /// RELAY_REGISTER sent; no answer yet.
    Registering,
    /// The relay forwards to this node; `observed` is this node's address as the relay sees it.
    Registered {
        /// The reflexive address (`None` over a tunnel).
        observed: Option<SocketAddr>,
    },
    /// The relay refused (not a relay, full, or not on its member list).
    Refused,
}

/// A session's role in relaying, kept only by sessions that have one (boxed: idle
/// sessions without a relay pay one pointer).
#[derive(Debug)]
pub(crate) enum RelayLink {
    /// This node is the relay and the peer asked to be a member.
    Member {
        registered: bool,
        /// RELAY_REGISTER arrived and the node has not decided yet.
        asked: bool,
        /// RELAY_STATUS is owed (first answer, lost, or the member's address changed).
        status_due: bool,
        bucket: TokenBucket,
    },
    /// The peer is a relay this node registered with.
    Relay {
        status: RelayStatus,
        /// RELAY_REGISTER is owed.
        register_due: bool,
    },
}

impl RelayLink {
    pub(crate) fn new_member(config: &RelayConfig, now: Instant) -> Self {
        RelayLink::Member {
            registered: false,
            asked: true,
            status_due: false,
            bucket: TokenBucket::new(config.member_rate, config.member_burst, now),
        }
    }

    pub(crate) fn new_relay() -> Self {
        RelayLink::Relay { status: RelayStatus::Registering, register_due: true }
    }

    /// A control frame is owed.
    pub(crate) fn control_due(&self) -> bool {
        match self {
            RelayLink::Member { status_due, .. } => *status_due,
            RelayLink::Relay { register_due, .. } => *register_due,
        }
    }

    /// The packet that carried the control frame was lost: owe it again.
    pub(crate) fn control_lost(&mut self) {
        match self {
            RelayLink::Member { status_due, .. } => *status_due = true,
            RelayLink::Relay { status, register_due } => *register_due = *status == RelayStatus::Registering,
        }
    }
}

/// Probe bursts per punching round.
pub(crate) const PUNCH_BURSTS: u8 = 20;
/// Spacing of the bursts: a round lasts one second.
pub(crate) const PUNCH_INTERVAL: Duration = Duration::from_millis(50);
/// A new round (from either side) is started at most this often (spec [PU-4]).
pub(crate) const PUNCH_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The initiator retries punching this long after a round that found no direct path.
pub(crate) const PUNCH_RETRY: Duration = Duration::from_secs(30);
/// PTOs in a row on a direct path before the session falls back to its relay (spec [PU-6]).
pub(crate) const FALLBACK_PTOS: u32 = 3;

/// Whether a candidate may be probed: a unicast address with a port. Unspecified,
/// broadcast and multicast addresses and port 0 are skipped (spec [PU-3]): a peer must not
/// make this node send to a whole network.
pub(crate) fn probe_target(a: &SocketAddr) -> bool {
    let ip = a.ip();
    let broadcast = match ip {
        core::net::IpAddr::V4(v4) => v4.is_broadcast(),
        core::net::IpAddr::V6(_) => false,
    };
    a.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

/// Hole punching state of a session that started on a relayed path.
#[derive(Debug)]
pub(crate) struct Punch {
    /// The relayed path: where the session returns when the direct one dies.
    pub(crate) relay_path: crate::addr::PathAddr,
    /// This side's candidates, as announced.
    pub(crate) local: heapless::Vec<SocketAddr, MAX_CANDIDATES>,
    /// The round this side last announced, and whether a CANDIDATES frame is owed.
    pub(crate) round: u64,
    pub(crate) send_candidates: bool,
    /// The highest round received from the peer.
    pub(crate) round_seen: u64,
    /// When the last round started (rate limit).
    pub(crate) round_started: Option<Instant>,
    /// Probe targets of the current round with their challenge data.
    pub(crate) targets: heapless::Vec<(SocketAddr, [u8; 8]), MAX_CANDIDATES>,
    /// Targets still to probe in the current burst (bit i = targets\[i\]).
    pub(crate) pending: u8,
    pub(crate) bursts_left: u8,
    pub(crate) next_burst: Option<Instant>,
    /// Initiator: when to start another round.
    pub(crate) retry_at: Option<Instant>,
    /// Set when the session moved onto a direct path found by punching.
    pub(crate) direct: bool,
    /// Bytes of authenticated packets received through the relay since punching started,
    /// and bytes of probes sent: probes stay within 3× what came in (spec [PU-3], as [MG-3]).
    pub(crate) bytes_in: u64,
    pub(crate) probe_bytes: u64,
    /// Size the packets carrying this side's CANDIDATES are padded to: 1200 bytes for the
    /// initiator, the size of the packet that brought the round for the responder (so an
    /// answer never outweighs its question).
    pub(crate) pad_to: usize,
}

impl Punch {
    pub(crate) fn new(relay_path: crate::addr::PathAddr, local: &[SocketAddr]) -> Self {
        let mut l = heapless::Vec::new();
        for a in local.iter().take(MAX_CANDIDATES) {
            if !l.contains(a) {
                let _ = l.push(*a);
            }
        }
        Self {
            relay_path,
            local: l,
            round: 0,
            send_candidates: false,
            round_seen: 0,
            round_started: None,
            targets: heapless::Vec::new(),
            pending: 0,
            bursts_left: 0,
            next_burst: None,
            retry_at: None,
            direct: false,
            bytes_in: 0,
            probe_bytes: 0,
            pad_to: 0,
        }
    }

    /// Whether the anti-amplification credit allows another probe.
    pub(crate) fn may_probe(&self) -> bool {
        self.probe_bytes + crate::path::MIN_PATH_PACKET as u64 <= 3 * self.bytes_in
    }

    /// The encoded candidate list (for a CANDIDATES frame).
    pub(crate) fn encode_local(&self, out: &mut [u8; MAX_CANDIDATES * 19]) -> usize {
        let mut w = crate::wire::codec::Writer::new(out);
        for a in &self.local {
            if crate::wire::handshake::encode_addr(&mut w, Some(*a)).is_none() {
                break;
            }
        }
        w.len()
    }

    /// Starts a round toward `addrs`, drawing challenge data with `draw`. Returns false if
    /// the rate limit refuses it.
    pub(crate) fn start_round(
        &mut self,
        now: Instant,
        addrs: impl Iterator<Item = SocketAddr>,
        mut draw: impl FnMut() -> [u8; 8],
    ) -> bool {
        if self.round_started.is_some_and(|t| now.saturating_duration_since(t) < PUNCH_MIN_INTERVAL) {
            return false;
        }
        self.targets.clear();
        for a in addrs {
            if !probe_target(&a) || self.targets.iter().any(|(t, _)| *t == a) {
                continue;
            }
            if self.targets.push((a, draw())).is_err() {
                break;
            }
        }
        self.round_started = Some(now);
        self.bursts_left = PUNCH_BURSTS;
        self.next_burst = Some(now);
        self.pending = 0;
        true
    }

    /// Fires the burst timer: every target is due again, until the round ends.
    pub(crate) fn on_timeout(&mut self, now: Instant, initiator: bool) {
        if self.next_burst.is_some_and(|t| t <= now) {
            if self.bursts_left == 0 || self.direct {
                self.next_burst = None;
                self.pending = 0;
                if initiator && !self.direct {
                    self.retry_at = Some(now.saturating_add(PUNCH_RETRY));
                }
            } else {
                self.bursts_left -= 1;
                self.pending = (1u16 << self.targets.len()).wrapping_sub(1) as u8;
                self.next_burst = Some(now.saturating_add(PUNCH_INTERVAL));
            }
        }
        if initiator && !self.direct && self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.round += 1;
            self.send_candidates = true;
        }
    }

    /// The next punching timer.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        [self.next_burst, self.retry_at].into_iter().flatten().min()
    }

    /// The next probe to send: target address and challenge data.
    pub(crate) fn next_probe(&self) -> Option<(usize, SocketAddr, [u8; 8])> {
        if self.pending == 0 {
            return None;
        }
        let i = self.pending.trailing_zeros() as usize;
        self.targets.get(i).map(|(a, d)| (i, *a, *d))
    }

    /// The target whose probe `data` answers, if any.
    pub(crate) fn answers(&self, data: &[u8; 8]) -> Option<SocketAddr> {
        self.targets.iter().find(|(_, d)| d == data).map(|(a, _)| *a)
    }
}
