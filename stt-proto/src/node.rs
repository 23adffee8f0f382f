//! The node: one local transport, many sessions. Routing, the responder's front
//! door (cheapest checks first), and the output drain.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use crate::addr::{PathAddr, RelayAddr};
use crate::config::{Config, ConfigError};
use crate::cookie::{open_cookie, CookieJar, TokenBucket, COOKIE_PACKET_LEN};
use crate::crypto::kdf;
use crate::crypto::noise::{DhCounter, Ephemeral};
use crate::crypto::AeadAlg;
use crate::entropy::{Entropy, EntropyPurpose};
use crate::ephemeral_cache::{EphemeralCache, Seen, SeenHello};
use crate::error::{ConnectError, DatagramError, DropReason, ExportError, HandshakeFailure, TransportCode};
use crate::event::{Event, EventQueue, Input, InputOutcome, Output, SessionId, Transmit};
use crate::handshake::{self, HsReadError, HELLO_LEN, HELLO_MAC_LEN, HELLO_MAX_LEN};
use crate::identity::{GroupKeys, Identity, NodeId, StaticKey};
use crate::key_index::KeyIndex;
use crate::record::Record;
use crate::relay::{Punch, RelayLink, RelayStatus};
use crate::routes::Routes;
use crate::schedule::Schedule;
use crate::session::{ChallengedState, Ctx, HelloState, Phase, Role, Session, SessionState};
use crate::stats::{NodeStats, SessionStats};
use crate::stream::{FrameError, ReadError, StreamError, StreamId, WriteError};
use crate::time::{Instant, UnixTime, WallClock};
use crate::wire::frame::{CloseKind, RELAY_DATA_OVERHEAD};
use crate::wire::handshake::{observed_of, AuthPayload, ChallengePayload, HelloPayload};
use crate::wire::header::{
    Header, WireSessionId, COOKIE_HEADER_LEN, HELLO_HEADER_LEN, RECORD_HEADER_LEN, TYPE_CHALLENGE, VERSION,
};
use crate::wire::params::TransportParams;
use bytes::Bytes;

/// COOKIE replies waiting for `poll_output`; beyond this they are not minted.
const COOKIE_QUEUE: usize = 16;
/// How far the stall guard moves a session that stays due with nothing to do.
const STALL_BACKOFF: Duration = Duration::from_millis(1);
/// COOKIEs accepted per connect attempt (stops a COOKIE ping-pong).
const MAX_COOKIES_PER_CONNECT: u8 = 4;
/// The smallest STT datagram (a protected packet with one frame byte): a relay drops
/// anything shorter (spec [RY-4]).
const MIN_RELAYED_DATAGRAM: usize = Record::OVERHEAD + 1;

struct Slot {
    generation: u32,
    /// Boxed so the slot table stays small and grows without copying sessions.
    session: Option<alloc::boxed::Box<Session>>,
    /// The session is a responder's half-open handshake (counted in `Node::half_open`).
    half_open: bool,
    /// The peer under which the session is indexed in `Node::by_peer`.
    indexed_peer: Option<NodeId>,
    /// When the session last got `Input::Timeout` (see `Node::poll_output`'s stall guard).
    timed_out_at: Option<Instant>,
    /// COOKIEs the slot's connect attempt accepted (at most `MAX_COOKIES_PER_CONNECT`).
    cookies_received: u8,
}

/// A protected packet that arrived before its session's AUTH_PROOF.
struct EarlyPacket {
    sid: WireSessionId,
    from: PathAddr,
    data: Vec<u8>,
}

/// An STT node: the sans-IO state machine for one local transport.
///
/// Drive it with [`handle_input`](Node::handle_input) and app commands, then drain
/// [`poll_output`](Node::poll_output) until it returns [`Output::Wait`].
#[doc(alias = "STTNode")]
pub struct Node<E: Entropy> {
    config: Config,
    entropy: E,
    static_key: StaticKey,
    node_id: NodeId,
    groups: heapless::Vec<GroupKeys, { Identity::MAX_SHARED_SEEDS }>,
    wall: Option<WallClock>,
    now: Instant,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    /// Session ids of live sessions → slots, one bucket per lookup.
    routes: Routes,
    ephemerals: EphemeralCache,
    cookies: CookieJar,
    handshake_bucket: TokenBucket,
    pending_cookies: VecDeque<(PathAddr, [u8; COOKIE_PACKET_LEN])>,
    events: EventQueue,
    stats: NodeStats,
    /// Which sessions have output due and when each needs its next timeout.
    schedule: Schedule,
    /// Scratch list of sessions whose deadline passed (kept to avoid allocating per timeout).
    due: Vec<u32>,
    /// Responder sessions in the half-open (CHALLENGE sent) state.
    half_open: usize,
    /// Protected packets that reached a half-open session before its AUTH_PROOF (an
    /// initiator sends right behind AUTH_PROOF, spec [HS-22], and the path may reorder):
    /// replayed once that AUTH_PROOF is accepted. At most `Config::early_packets` in all;
    /// when full, the oldest is dropped.
    early: VecDeque<EarlyPacket>,
    /// Sessions whose peer is known, by peer (at most two per peer, briefly, during a
    /// simultaneous open): duplicate resolution and `session_with` cost O(log n).
    by_peer: KeyIndex,
    shut_down: bool,
    /// Events queued before the current session call; `Established` goes there so it
    /// precedes events of the same packet.
    event_mark: usize,
    /// The next handshake's ephemeral key pair, computed by [`Node::precompute`].
    spare_ephemeral: Option<Ephemeral>,
    /// This node's own addresses, announced as punching candidates (spec [PU-1]).
    local_addrs: heapless::Vec<SocketAddr, 4>,
    /// Relay: registered members.
    relay_members: usize,
    /// Relay: bytes queued toward members (bounded by `RelayConfig::max_queued_bytes`).
    relay_queued: usize,
    /// A datagram taken out of a relay frame, on its way into `handle_datagram`.
    relay_scratch: Vec<u8>,
}

impl<E: Entropy> Drop for Node<E> {
    fn drop(&mut self) {
        if let Some(e) = self.spare_ephemeral.as_mut() {
            e.zeroize();
        }
    }
}

impl<E: Entropy> Node<E> {
    /// Creates a node. `unix` is the wall time at `now`, or `None` on a device
    /// without a clock (every HELLO it receives then takes the COOKIE path).
    ///
    /// # Errors
    /// [`ConfigError`] if `config` does not validate.
    pub fn new(
        config: Config,
        identity: Identity,
        mut entropy: E,
        now: Instant,
        unix: Option<UnixTime>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let static_key = StaticKey::derive(&identity.node_seed);
        let node_id = static_key.node_id();
        let mut groups = heapless::Vec::new();
        for seed in &identity.shared_seeds {
            let _ = groups.push(seed.derive());
        }
        let retention = (config.timestamp_window * 2).max(config.cookie_lifetime * 2);
        let cookies = CookieJar::new(config.cookie_lifetime, config.cookie_rate, now, &mut entropy);
        // Deriving the static public key is the node's only DH-class operation at rest.
        let stats = NodeStats { x25519_ops: 1, ..NodeStats::default() };
        Ok(Self {
            ephemerals: EphemeralCache::new(config.ephemeral_cache, retention),
            handshake_bucket: TokenBucket::new(config.handshake_rate, config.handshake_burst, now),
            cookies,
            config,
            entropy,
            static_key,
            node_id,
            groups,
            wall: unix.map(|u| WallClock::new(now, u)),
            now,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            routes: Routes::default(),
            pending_cookies: VecDeque::new(),
            events: EventQueue::new(),
            stats,
            schedule: Schedule::default(),
            due: Vec::new(),
            half_open: 0,
            early: VecDeque::new(),
            by_peer: KeyIndex::new(),
            shut_down: false,
            event_mark: 0,
            spare_ephemeral: None,
            local_addrs: heapless::Vec::new(),
            relay_members: 0,
            relay_queued: 0,
            relay_scratch: Vec::new(),
        })
    }

    // ----- getters -----

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Node-wide counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Ids of all sessions that exist now, in any state.
    pub fn session_ids(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.slots.iter().filter_map(|s| s.session.as_ref().map(|s| s.id))
    }

    /// The established session with `peer`, if any.
    pub fn session_with(&self, peer: NodeId) -> Option<SessionId> {
        self.by_peer
            .positions(peer.0)
            .filter_map(|j| self.slots.get(j as usize)?.session.as_ref())
            .find(|s| s.is_established())
            .map(|s| s.id)
    }

    /// A borrowed handle on one session.
    pub fn session(&mut self, id: SessionId) -> Option<SessionRef<'_>> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let session = slot.session.as_mut()?;
        Some(SessionRef {
            session,
            config: &self.config,
            events: &mut self.events,
            entropy: &mut self.entropy,
            now: &mut self.now,
            schedule: &mut self.schedule,
        })
    }

    /// Earliest time the node needs [`Input::Timeout`]; "now" when output is pending.
    /// Side-effect free, and O(1) in the number of sessions (spec [ND-1]).
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.events.is_empty() || !self.pending_cookies.is_empty() || !self.schedule.ready.is_empty() {
            return Some(self.now);
        }
        self.schedule.timers.earliest().map(|at| at.max(self.now))
    }

    // ----- commands -----

    /// Does work that would otherwise delay the next handshake: computes the ephemeral key
    /// pair the next HELLO or CHALLENGE will use (one X25519 operation, drawn from the
    /// injected entropy as `EphemeralKey`). Call it when idle, after the output was sent;
    /// returns whether it did anything. Optional: without it, handshakes compute their
    /// ephemeral on the critical path.
    pub fn precompute(&mut self) -> bool {
        if self.spare_ephemeral.is_some() || self.shut_down {
            return false;
        }
        let private = self.draw32(EntropyPurpose::EphemeralKey);
        self.spare_ephemeral = Some(Ephemeral::precomputed(private));
        self.stats.x25519_ops += 1;
        true
    }

    /// Resynchronizes wall time (after suspend, or once an RTC or NTP answers).
    pub fn sync_unix_time(&mut self, now: Instant, unix: UnixTime) {
        self.advance(now);
        self.wall = Some(WallClock::new(self.now, unix));
    }

    /// Starts a handshake with the node at `to`. With `expected_peer`, the handshake
    /// aborts unless the responder proves that node id.
    ///
    /// # Errors
    /// [`ConnectError`] when the session limit is reached or the node is shut down;
    /// [`ConnectError::NoRelay`] for a relayed `to` in a build without the `relay` feature.
    pub fn connect(
        &mut self,
        now: Instant,
        to: PathAddr,
        expected_peer: Option<NodeId>,
    ) -> Result<SessionId, ConnectError> {
        self.advance(now);
        if self.shut_down {
            return Err(ConnectError::NodeClosed);
        }
        if to.is_relayed() && !to.relayed() {
            return Err(ConnectError::NoRelay);
        }
        let (id, local_sid) = self.reserve().ok_or(ConnectError::TooManySessions)?;
        let counter = DhCounter::default();
        let (noise, hello) = self.build_hello(local_sid, None, &counter).ok_or(ConnectError::TooManySessions)?;
        let phase = Phase::Hello(alloc::boxed::Box::new(HelloState {
            noise,
            hello,
            first_sent: None,
            retransmitted: false,
            expected_peer,
        }));
        let mut session = Session::new(id, Role::Initiator, local_sid, to, phase, self.now, &self.config);
        session.dh = counter;
        self.install(session);
        Ok(id)
    }

    /// Opens a session with `peer` through the relay this node registered with on session
    /// `relay` (spec §12). The session works at once over the relayed path; both sides then
    /// try to punch a direct path and move onto it (unless
    /// [`Config::keep_relay_path`](crate::Config::keep_relay_path)).
    ///
    /// # Errors
    /// [`ConnectError::NoRelay`] unless `relay` is a session whose relay answered
    /// [`RelayStatus::Registered`] (always, in a build without the `relay` feature);
    /// otherwise as [`connect`](Self::connect).
    pub fn connect_via_relay(
        &mut self,
        now: Instant,
        relay: SessionId,
        peer: NodeId,
    ) -> Result<SessionId, ConnectError> {
        if !self.relay_session(relay).is_some_and(|s| s.is_established()) {
            return Err(ConnectError::NoRelay);
        }
        self.connect(now, PathAddr::Relay(RelayAddr { via: relay, peer }), Some(peer))
    }

    /// Tells the node its own UDP addresses (the bound port on each local interface
    /// address): they are announced, with the address a relay reports, as hole-punching
    /// candidates (spec [PU-1]). Unspecified, broadcast and multicast addresses and port 0
    /// are ignored; at most four. Unused in a build without the `relay` feature.
    pub fn set_local_addresses(&mut self, addrs: &[SocketAddr]) {
        self.local_addrs.clear();
        for a in addrs {
            if crate::relay::probe_target(a) && !self.local_addrs.contains(a) {
                let _ = self.local_addrs.push(*a);
            }
        }
    }

    /// The session `id` if it is a registered relay session of this node.
    fn relay_session(&self, id: SessionId) -> Option<&Session> {
        let slot = self.slots.get(id.index as usize).filter(|s| s.generation == id.generation)?;
        let s = slot.session.as_deref()?;
        matches!(s.relay.as_deref(), Some(RelayLink::Relay { status: RelayStatus::Registered { .. }, .. })).then_some(s)
    }

    /// Hands a datagram of a relayed path to the relay session it rides on (spec [RY-3]).
    fn wrap_for_relay(&mut self, r: RelayAddr, data_len: usize, buf: &[u8]) {
        if !cfg!(feature = "relay") {
            // Unreachable: no relayed path exists in such a build.
            self.stats.relay_send_dropped += 1;
            return;
        }
        let idx = r.via.index as usize;
        let max = self.relay_session(r.via).map(|s| s.relay_capacity(&self.config));
        let ok = match (max, self.slots.get_mut(idx).and_then(|s| s.session.as_mut())) {
            (Some(max), Some(s)) if data_len <= max => s.transport.as_mut().is_some_and(|t| {
                t.relay_out.has_room(32 + data_len) && {
                    t.relay_out.push_parts(&r.peer.0, buf[..data_len].iter().copied());
                    true
                }
            }),
            _ => false,
        };
        if ok {
            self.settle(idx, true, true);
        } else {
            self.stats.relay_send_dropped += 1;
        }
    }

    /// After a protected packet: decide a pending relay registration, then forward (as a
    /// relay) or unwrap (as a member) the RELAY_DATA it carried (spec §12).
    fn drain_relay(&mut self, idx: usize) {
        let Some(s) = self.slots.get_mut(idx).and_then(|s| s.session.as_mut()) else { return };
        let Some(link) = s.relay.as_deref_mut() else { return };
        if let RelayLink::Member { registered, asked: asked @ true, status_due, .. } = link {
            *asked = false;
            *status_due = true;
            let listed = match (self.config.relay.as_ref(), s.peer) {
                (Some(rc), Some(peer)) => {
                    rc.members.as_ref().is_none_or(|m| m.contains(&peer)) && self.relay_members < rc.max_members
                }
                _ => false,
            };
            *registered = listed;
            if listed {
                self.relay_members += 1;
            } else {
                self.stats.relay_refused += 1;
            }
        }
        let am_relay = matches!(s.relay.as_deref(), Some(RelayLink::Member { .. }));
        let via = s.id;
        if self.relay_scratch.len() < 2048 {
            self.relay_scratch.resize(2048, 0);
        }
        let mut scratch = core::mem::take(&mut self.relay_scratch);
        while let Some(len) = self
            .slots
            .get_mut(idx)
            .and_then(|s| s.session.as_mut())
            .and_then(|s| s.transport.as_mut())
            .and_then(|t| t.relay_in.pop_into(&mut scratch))
        {
            let len = len.min(scratch.len());
            let Some(peer) = scratch.get(..32).and_then(|p| <[u8; 32]>::try_from(p).ok()).map(NodeId) else {
                continue;
            };
            if len < 32 {
                continue;
            }
            if am_relay {
                self.forward(idx, peer, &scratch[32..len]);
            } else {
                let from = PathAddr::Relay(RelayAddr { via, peer });
                self.stats.datagrams_in += 1;
                self.stats.bytes_in += (len - 32) as u64;
                if let InputOutcome::Dropped(reason) = self.handle_datagram(from, &mut scratch[32..len]) {
                    self.stats.dropped[reason.index()] += 1;
                }
            }
        }
        self.relay_scratch = scratch;
    }

    /// Relay: forwards a member's datagram to the registered member `dst` (spec [RY-4], [RY-5]).
    fn forward(&mut self, src_idx: usize, dst: NodeId, data: &[u8]) {
        let now = self.now;
        let member_queue = self.config.relay.as_ref().map_or(0, |rc| rc.member_queue);
        let room = self.config.relay.as_ref().map_or(0, |rc| rc.max_queued_bytes).saturating_sub(self.relay_queued);
        let src = self.slots.get_mut(src_idx).and_then(|s| s.session.as_mut());
        let src_id = match src {
            // Shorter than any STT datagram: junk. The rate counts the frame too, so tiny
            // datagrams cannot slip under it (spec [RY-5]).
            Some(_) if data.len() < MIN_RELAYED_DATAGRAM => None,
            Some(s) => match (s.relay.as_deref_mut(), s.peer) {
                (Some(RelayLink::Member { registered: true, bucket, .. }), Some(p)) => {
                    bucket.try_take_n(now, (data.len() + RELAY_DATA_OVERHEAD) as u64).then_some(p)
                }
                _ => None,
            },
            None => None,
        };
        let dst_idx = self.by_peer.positions(dst.0).map(|j| j as usize).find(|&j| {
            self.slots.get(j).and_then(|s| s.session.as_deref()).is_some_and(|s| {
                s.is_established()
                    && matches!(s.relay.as_deref(), Some(RelayLink::Member { registered: true, .. }))
                    // What the destination's packets cannot carry would block its queue.
                    && data.len() <= s.relay_capacity(&self.config)
            })
        });
        let queued = match (src_id, dst_idx) {
            (Some(src_id), Some(j)) if j != src_idx => self
                .slots
                .get_mut(j)
                .and_then(|s| s.session.as_mut())
                .and_then(|s| s.transport.as_mut())
                .is_some_and(|t| {
                    t.relay_out.len() < member_queue
                        && 32 + data.len() <= room
                        && t.relay_out.has_room(32 + data.len())
                        && {
                            t.relay_out.push_parts(&src_id.0, data.iter().copied());
                            true
                        }
                })
                .then_some(j),
            _ => None,
        };
        match queued {
            Some(j) => {
                self.relay_queued += 32 + data.len();
                self.stats.relay_forwarded += 1;
                self.stats.relay_forwarded_bytes += data.len() as u64;
                self.settle(j, true, true);
            }
            None => self.stats.relay_dropped += 1,
        }
    }

    /// Closes every session (code "no error") and refuses new ones. Drain
    /// `poll_output` afterwards so the SESSION_CLOSE packets go out.
    pub fn close(&mut self, now: Instant) {
        self.advance(now);
        self.shut_down = true;
        for i in 0..self.slots.len() {
            if let Some(s) = self.slots[i].session.as_mut() {
                let mut ctx = Ctx { config: &self.config, events: &mut self.events, entropy: &mut self.entropy };
                s.close(self.now, &mut ctx, CloseKind::Transport, u64::MAX);
            }
            self.after_session(i);
        }
    }

    // ----- input -----

    /// Feeds one input. Peer input never yields an error: it is consumed or
    /// dropped with a reason (also counted in [`NodeStats::dropped`]).
    pub fn handle_input(&mut self, input: Input<'_>) -> InputOutcome {
        match input {
            Input::Timeout { now } => {
                self.advance(now);
                self.event_mark = self.events.len();
                // Only sessions whose deadline passed are visited (spec [ND-1]).
                let mut due = core::mem::take(&mut self.due);
                due.clear();
                while let Some(slot) = self.schedule.timers.pop_due(self.now) {
                    due.push(slot);
                }
                for &slot in &due {
                    let i = slot as usize;
                    if let Some(sl) = self.slots.get_mut(i) {
                        sl.timed_out_at = Some(self.now);
                    }
                    if let Some(s) = self.slots.get_mut(i).and_then(|s| s.session.as_mut()) {
                        self.stats.sessions_visited += 1;
                        let mut ctx =
                            Ctx { config: &self.config, events: &mut self.events, entropy: &mut self.entropy };
                        s.handle_timeout(self.now, &mut ctx);
                    }
                    self.after_session(i);
                }
                self.due = due;
                InputOutcome::Consumed
            }
            Input::Datagram { now, from, data } => {
                self.advance(now);
                self.stats.datagrams_in += 1;
                self.stats.bytes_in += data.len() as u64;
                let outcome = self.handle_datagram(from, data);
                if let InputOutcome::Dropped(reason) = outcome {
                    self.stats.dropped[reason.index()] += 1;
                }
                outcome
            }
        }
    }

    fn advance(&mut self, now: Instant) {
        if now < self.now {
            self.stats.time_went_backwards += 1;
        } else {
            self.now = now;
        }
    }

    fn handle_datagram(&mut self, from: PathAddr, data: &mut [u8]) -> InputOutcome {
        use InputOutcome::{Consumed, Dropped};
        if from.is_relayed() && !from.relayed() {
            // A build without the `relay` feature has no relayed paths.
            return Dropped(DropReason::UnexpectedState);
        }
        let Some((header, _)) = Header::decode(data) else {
            return InputOutcome::NotStt;
        };
        // Event-queue admission, per session for protected packets (spec [LC-10]).
        let slot = match header {
            Header::Protected { receiver, .. } => self.routes.get(&receiver),
            _ => None,
        };
        if !self.events.admits(slot, self.config.max_events, self.config.max_session_events) {
            return Dropped(DropReason::EventQueueFull);
        }
        self.event_mark = self.events.len();
        let result = match header {
            Header::Hello { version, sender } => self.handle_hello(from, version, sender, data),
            Header::Handshake { ty, version, sender, receiver } => {
                if version != VERSION {
                    return Dropped(DropReason::BadVersion);
                }
                let Some(idx) = self.routes.get(&receiver) else {
                    return Dropped(DropReason::UnknownSession);
                };
                let r = if ty == TYPE_CHALLENGE {
                    self.handle_challenge(idx, from, sender, data)
                } else {
                    let r = self.handle_auth_proof(idx, sender, data);
                    if r.is_ok() {
                        self.replay_early(idx);
                    }
                    r
                };
                self.after_input(idx as usize);
                r
            }
            Header::Cookie { version, receiver } => {
                if version != VERSION {
                    return Dropped(DropReason::BadVersion);
                }
                let Some(idx) = self.routes.get(&receiver) else {
                    return Dropped(DropReason::UnknownSession);
                };
                let r = self.handle_cookie(idx, from, data);
                self.after_input(idx as usize);
                r
            }
            Header::Protected { key_phase, truncated_pn, .. } => {
                // Looked up once, above (the event-queue admission needed it).
                let Some(idx) = slot else {
                    // Packets for unknown sessions are answered with nothing (spec [LC-8]).
                    return Dropped(DropReason::UnknownSession);
                };
                let Some(session) = self.slots.get_mut(idx as usize).and_then(|s| s.session.as_mut()) else {
                    return Dropped(DropReason::UnknownSession);
                };
                if matches!(session.phase, Phase::Challenged(_)) {
                    // Ahead of its AUTH_PROOF: kept (a bounded few) for when it arrives.
                    let limit = self.config.early_packets;
                    if from != session.remote || data.len() > self.config.max_udp_payload || limit == 0 {
                        return Dropped(DropReason::UnexpectedState);
                    }
                    let sid = session.local_sid;
                    while self.early.len() >= limit {
                        self.early.pop_front();
                    }
                    self.early.push_back(EarlyPacket { sid, from, data: data.to_vec() });
                    return Consumed;
                }
                let Some((head, body)) = data.split_at_mut_checked(RECORD_HEADER_LEN) else {
                    return Dropped(DropReason::Malformed);
                };
                let mut ctx = Ctx { config: &self.config, events: &mut self.events, entropy: &mut self.entropy };
                let r = session.handle_protected(self.now, &mut ctx, from, key_phase, truncated_pn, head, body);
                self.drain_relay(idx as usize);
                self.after_input(idx as usize);
                r
            }
        };
        match result {
            Ok(()) => Consumed,
            Err(reason) => Dropped(reason),
        }
    }

    /// Hands the packets held for session `idx` while it was half open to it, now that its
    /// AUTH_PROOF was accepted (spec [HS-22]).
    fn replay_early(&mut self, idx: u32) {
        let Some(sid) = self.slots.get(idx as usize).and_then(|s| s.session.as_ref()).map(|s| s.local_sid) else {
            return;
        };
        let mut i = 0;
        while i < self.early.len() {
            if self.early.get(i).is_none_or(|p| p.sid != sid) {
                i += 1;
                continue;
            }
            let Some(mut p) = self.early.remove(i) else { break };
            let Some((Header::Protected { key_phase, truncated_pn, .. }, _)) = Header::decode(&p.data) else {
                continue;
            };
            let Some(session) = self.slots.get_mut(idx as usize).and_then(|s| s.session.as_mut()) else { return };
            let Some((head, body)) = p.data.split_at_mut_checked(RECORD_HEADER_LEN) else { continue };
            let mut ctx = Ctx { config: &self.config, events: &mut self.events, entropy: &mut self.entropy };
            let _ = session.handle_protected(self.now, &mut ctx, p.from, key_phase, truncated_pn, head, body);
            self.drain_relay(idx as usize);
        }
    }

    /// The responder's front door, cheapest check first (spec [HS-6]):
    /// size → version → Noise read → cookie MAC → timestamp window → ephemeral
    /// cache → rate limit → state.
    fn handle_hello(
        &mut self,
        from: PathAddr,
        version: u8,
        sender: WireSessionId,
        data: &[u8],
    ) -> Result<(), DropReason> {
        if !(HELLO_LEN..=HELLO_MAX_LEN).contains(&data.len()) {
            return Err(DropReason::Malformed);
        }
        if version != VERSION {
            return Err(DropReason::BadVersion);
        }
        if !self.config.accept_incoming || self.shut_down {
            return Err(DropReason::NotAccepting);
        }
        // Which shared seed, if any? Hashes and one AEAD per seed; no DH, no entropy drawn.
        let probe = DhCounter::default();
        let found = self.groups.iter().enumerate().find_map(|(gi, g)| {
            handshake::read_hello(&self.static_key, g, [0; 32], data, &probe).map(|(_, p)| (gi, p))
        });
        self.stats.x25519_ops += probe.take();
        let Some((group, payload)) = found else {
            return Err(DropReason::AuthFailed);
        };

        let mac_at = data.len() - HELLO_MAC_LEN;
        let mac: [u8; 16] = data[mac_at..].try_into().map_err(|_| DropReason::Malformed)?;
        let has_mac = mac != [0; 16];
        let cookie_ok = has_mac && self.cookies.verify(self.now, &mut self.entropy, from, &data[..mac_at], &mac);
        if has_mac && !cookie_ok {
            return Err(DropReason::BadCookie);
        }
        let in_window = self.wall.is_some_and(|w| {
            let local = w.unix_at(self.now).as_millis();
            local.abs_diff(payload.timestamp_ms)
                <= u64::try_from(self.config.timestamp_window.as_millis()).unwrap_or(u64::MAX)
        });
        if !in_window && !cookie_ok {
            return self.send_cookie(from, sender, group, data);
        }

        let e: [u8; 32] =
            data[HELLO_HEADER_LEN..HELLO_HEADER_LEN + 32].try_into().map_err(|_| DropReason::Malformed)?;
        let digest = kdf::mac16(b"stt/1 hello digest", &[data]);
        match self.ephemerals.lookup(self.now, &e, from, &digest) {
            Seen::New => {}
            Seen::Retransmit(id) => {
                // Retransmission is not replay: re-send the stored CHALLENGE, no DH (spec [HS-8]).
                let s = self
                    .slots
                    .get_mut(id.index as usize)
                    .filter(|s| s.generation == id.generation)
                    .and_then(|s| s.session.as_mut());
                return match s {
                    Some(s) if matches!(s.phase, Phase::Challenged(_)) => {
                        s.send_handshake = true;
                        self.stats.challenges_resent += 1;
                        self.after_session(id.index as usize);
                        Ok(())
                    }
                    _ => Err(DropReason::Replay),
                };
            }
            Seen::Replay => return Err(DropReason::Replay),
        }
        if self.ephemerals.is_full(self.now) {
            return Err(DropReason::NotAccepting);
        }
        if !cookie_ok && !self.handshake_bucket.try_take(self.now) {
            return self.send_cookie(from, sender, group, data);
        }
        if self.half_open >= self.config.max_half_open {
            return Err(DropReason::NotAccepting);
        }
        // The responder chooses among the offer, in its own preference order (spec [RL-1]).
        let Some(alg) = self.config.aeads.iter().copied().find(|a| payload.offer.contains(&Some(*a))) else {
            return Err(DropReason::NoCommonAead);
        };
        let (id, local_sid) = self.reserve().ok_or(DropReason::NotAccepting)?;
        let ephemeral = self.take_ephemeral();
        let counter = DhCounter::default();
        let Some((mut noise, _)) =
            handshake::read_hello(&self.static_key, &self.groups[group], ephemeral, data, &counter)
        else {
            self.free.push(id.index);
            return Err(DropReason::AuthFailed);
        };
        let challenge = ChallengePayload {
            responder_sid: local_sid,
            choice: alg.id(),
            observed: observed_of(from),
            params: self.local_params(),
        };
        let written = handshake::write_challenge(&mut noise, local_sid, sender, &challenge);
        // Count the DH work even when it failed (a low-order ephemeral, spec [HS-12]).
        self.stats.x25519_ops += counter.take();
        let Some(bytes) = written else {
            // The reserved slot goes back; nothing else was kept.
            self.free.push(id.index);
            return Err(DropReason::Malformed);
        };
        if bytes.len() > data.len() {
            // Never larger than the HELLO (spec [HS-5]); cannot happen with v1 payloads.
            self.free.push(id.index);
            return Err(DropReason::Malformed);
        }
        let phase =
            Phase::Challenged(alloc::boxed::Box::new(ChallengedState { noise, challenge: bytes, sent_at: None, alg }));
        let mut session = Session::new(id, Role::Responder, local_sid, from, phase, self.now, &self.config);
        session.remote_sid = sender;
        session.dh = counter;
        self.ephemerals.insert(self.now, e, SeenHello { from, digest, session: id });
        self.stats.handshakes_started += 1;
        self.install(session);
        Ok(())
    }

    fn send_cookie(
        &mut self,
        from: PathAddr,
        sender: WireSessionId,
        group: usize,
        hello: &[u8],
    ) -> Result<(), DropReason> {
        if self.pending_cookies.len() >= COOKIE_QUEUE {
            return Err(DropReason::RateLimited);
        }
        let tag = handshake::hello_tag(hello).ok_or(DropReason::Malformed)?;
        let mut pkt = [0u8; COOKIE_PACKET_LEN];
        let key = self.groups[group].cookie_key;
        if !self.cookies.mint(self.now, &mut self.entropy, from, sender, &key, &tag, &mut pkt) {
            return Err(DropReason::RateLimited);
        }
        self.pending_cookies.push_back((from, pkt));
        self.stats.cookies_sent += 1;
        Err(DropReason::CookieSent)
    }

    fn handle_cookie(&mut self, idx: u32, from: PathAddr, data: &[u8]) -> Result<(), DropReason> {
        let count = self.slots.get(idx as usize).map_or(0, |s| s.cookies_received);
        let Some(session) = self.slots.get_mut(idx as usize).and_then(|s| s.session.as_mut()) else {
            return Err(DropReason::UnknownSession);
        };
        let Phase::Hello(h) = &session.phase else {
            return Err(DropReason::UnexpectedState);
        };
        if from != session.remote || count >= MAX_COOKIES_PER_CONNECT {
            return Err(DropReason::UnexpectedState);
        }
        let tag = handshake::hello_tag(&h.hello).ok_or(DropReason::Malformed)?;
        let cookie =
            open_cookie(&self.groups[0].cookie_key, &tag, data.get(COOKIE_HEADER_LEN..).ok_or(DropReason::Malformed)?)
                .ok_or(DropReason::AuthFailed)?;
        let local_sid = session.local_sid;
        let counter = session.dh.clone();
        // A fresh HELLO with a new ephemeral, carrying the cookie MAC (spec [HS-9]).
        let (noise, hello) = self.build_hello(local_sid, Some(&cookie), &counter).ok_or(DropReason::Malformed)?;
        self.slots[idx as usize].cookies_received = count + 1;
        let session = self.slots[idx as usize].session.as_mut().ok_or(DropReason::UnknownSession)?;
        if let Phase::Hello(h) = &mut session.phase {
            **h = HelloState { noise, hello, first_sent: None, retransmitted: false, expected_peer: h.expected_peer };
        }
        session.send_handshake = true;
        Ok(())
    }

    fn handle_challenge(
        &mut self,
        idx: u32,
        from: PathAddr,
        sender: WireSessionId,
        data: &[u8],
    ) -> Result<(), DropReason> {
        let local_params = self.local_params();
        let provider = self.config.provider;
        let integrity = self.config.integrity_limit;
        let offered = self.config.aeads.clone();
        let now = self.now;
        let (node_id, half_open) = (self.node_id, self.half_open);
        let Some(session) = self.slots.get_mut(idx as usize).and_then(|s| s.session.as_mut()) else {
            return Err(DropReason::UnknownSession);
        };
        let Phase::Hello(h) = &mut session.phase else {
            // A second CHALLENGE (answer to a retransmitted HELLO) changes nothing.
            return Err(DropReason::UnexpectedState);
        };
        if from != session.remote {
            return Err(DropReason::UnexpectedState);
        }
        let payload = match handshake::read_challenge(&mut h.noise, data) {
            Ok(p) => p,
            Err(HsReadError::Auth) => return Err(DropReason::AuthFailed),
            Err(HsReadError::Malformed) => {
                let mut ctx = Ctx { config: &self.config, events: &mut self.events, entropy: &mut self.entropy };
                session.fail_handshake(&mut ctx, HandshakeFailure::Malformed);
                return Ok(());
            }
        };
        let mut ctx = Ctx { config: &self.config, events: &mut self.events, entropy: &mut self.entropy };
        if payload.responder_sid != sender {
            session.fail_handshake(&mut ctx, HandshakeFailure::Malformed);
            return Ok(());
        }
        // The choice must be one we offered: anything else is a downgrade (spec [RL-1]).
        let Some(alg) = AeadAlg::from_id(payload.choice).filter(|a| offered.contains(a)) else {
            session.fail_handshake(&mut ctx, HandshakeFailure::AeadNotOffered);
            return Ok(());
        };
        let Some(remote_static) = handshake::remote_static(&h.noise) else {
            session.fail_handshake(&mut ctx, HandshakeFailure::Malformed);
            return Ok(());
        };
        let peer = NodeId::from_static_public(&remote_static);
        if h.expected_peer.is_some_and(|e| e != peer) {
            session.fail_handshake(&mut ctx, HandshakeFailure::PeerMismatch);
            return Ok(());
        }
        let Some(auth) =
            handshake::write_auth_proof(&mut h.noise, session.local_sid, sender, &AuthPayload { params: local_params })
        else {
            session.fail_handshake(&mut ctx, HandshakeFailure::Malformed);
            return Ok(());
        };
        let (i2r, r2i, hash) = handshake::split(&mut h.noise);
        let rtt = match (h.first_sent, h.retransmitted) {
            (Some(sent), false) => Some(now.saturating_duration_since(sent)),
            _ => None,
        };
        let record = Record::new(provider, alg, i2r, r2i, integrity, now);
        session.peer = Some(peer);
        session.remote_sid = sender;
        session.set_peer_params(payload.params);
        session.observed = payload.observed;
        session.handshake_hash = hash;
        session.exporter = handshake::exporter_secret(&i2r, &r2i, &hash);
        // Established at once (spec [HS-22]) on a direct path, unless a simultaneous open
        // this session would lose may be under way: the responder's id is the lower one
        // (its session wins, [HS-21]) and a responder-side handshake, whose peer is not
        // known before its AUTH_PROOF, is half open here.
        let may_lose_simultaneous_open = peer < node_id && half_open > 0;
        let early = !(from.relayed() || may_lose_simultaneous_open);
        session.challenge_accepted(now, &self.config, early, auth, record, rtt);
        Ok(())
    }

    fn handle_auth_proof(&mut self, idx: u32, sender: WireSessionId, data: &[u8]) -> Result<(), DropReason> {
        let provider = self.config.provider;
        let integrity = self.config.integrity_limit;
        let now = self.now;
        let Some(session) = self.slots.get_mut(idx as usize).and_then(|s| s.session.as_mut()) else {
            return Err(DropReason::UnknownSession);
        };
        let digest = kdf::mac16(b"stt/1 auth digest", &[data]);
        let Phase::Challenged(c) = &mut session.phase else {
            return session.handle_repeated_auth_proof(&digest, &mut self.stats);
        };
        if sender != session.remote_sid {
            return Err(DropReason::Malformed);
        }
        let payload = match handshake::read_auth_proof(&mut c.noise, data) {
            Ok(p) => p,
            Err(HsReadError::Auth) => return Err(DropReason::AuthFailed),
            Err(HsReadError::Malformed) => {
                session.phase = Phase::Done;
                return Err(DropReason::Malformed);
            }
        };
        let Some(remote_static) = handshake::remote_static(&c.noise) else {
            session.phase = Phase::Done;
            return Err(DropReason::Malformed);
        };
        let peer = NodeId::from_static_public(&remote_static);
        let (i2r, r2i, hash) = handshake::split(&mut c.noise);
        let record = Record::new(provider, c.alg, r2i, i2r, integrity, now);
        session.peer = Some(peer);
        session.set_peer_params(payload.params);
        session.handshake_hash = hash;
        session.exporter = handshake::exporter_secret(&i2r, &r2i, &hash);
        session.auth_digest = digest;
        let allowed = self.config.allow_list.as_ref().is_none_or(|l| l.contains(&peer));
        session.auth_accepted(now, record, &self.config);
        if !allowed {
            // Refused after AUTH_PROOF with a distinct code (spec [HS-20]); no session event,
            // but counted (and reported to the driver) as a refusal.
            session.just_established = false;
            let mut ctx = Ctx { config: &self.config, events: &mut self.events, entropy: &mut self.entropy };
            session.close(now, &mut ctx, CloseKind::Transport, TransportCode::NotAllowed.to_u64());
            return Err(DropReason::NotAllowed);
        }
        Ok(())
    }

    // ----- session bookkeeping -----

    fn local_params(&self) -> TransportParams {
        TransportParams {
            idle_timeout_ms: u64::try_from(self.config.idle_timeout.as_millis()).unwrap_or(u64::MAX),
            max_udp_payload: self.config.max_udp_payload as u64,
            max_datagram_frame: self.config.max_datagram_frame as u64,
            app_frame_types: self.config.app_frame_types,
            max_app_frame: self.config.max_app_frame,
            initial_max_data: self.config.session_window,
            initial_max_stream_data: self.config.stream_window,
            initial_max_streams_bidi: self.config.max_streams_bidi,
            initial_max_streams_uni: self.config.max_streams_uni,
        }
    }

    /// The precomputed ephemeral if there is one, else fresh bytes (the public half is then
    /// computed during the handshake).
    fn take_ephemeral(&mut self) -> Ephemeral {
        match self.spare_ephemeral.take() {
            Some(e) => e,
            None => Ephemeral::from(self.draw32(EntropyPurpose::EphemeralKey)),
        }
    }

    fn draw32(&mut self, purpose: EntropyPurpose) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.entropy.fill(purpose, &mut b);
        b
    }

    fn build_hello(
        &mut self,
        sid: WireSessionId,
        cookie: Option<&[u8; 16]>,
        counter: &DhCounter,
    ) -> Option<(snow::HandshakeState, Vec<u8>)> {
        let ephemeral = self.take_ephemeral();
        let timestamp_ms = self.wall.map_or(0, |w| w.unix_at(self.now).as_millis());
        let mut offer = [None; 2];
        for (o, a) in offer.iter_mut().zip(&self.config.aeads) {
            *o = Some(*a);
        }
        let payload = HelloPayload { timestamp_ms, offer };
        let r = handshake::write_hello(&self.static_key, &self.groups[0], ephemeral, sid, &payload, cookie, counter);
        self.stats.x25519_ops += counter.take();
        r
    }

    /// Picks a free slot and a fresh random session id.
    fn reserve(&mut self) -> Option<(SessionId, WireSessionId)> {
        if self.live >= self.config.max_sessions {
            return None;
        }
        let prefix = self.config.session_id_prefix.len();
        let mut sid = WireSessionId::default();
        let mut unique = false;
        // Drawn again while the id's route bucket is taken (the table is at most half
        // full, so 32 draws all fail with probability below 2^-32).
        for _ in 0..32 {
            sid.0[..prefix].copy_from_slice(&self.config.session_id_prefix);
            self.entropy.fill(EntropyPurpose::SessionId, &mut sid.0[prefix..]);
            if self.routes.fits(&sid) {
                unique = true;
                break;
            }
        }
        if !unique {
            return None;
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    session: None,
                    half_open: false,
                    indexed_peer: None,
                    timed_out_at: None,
                    cookies_received: 0,
                });
                u32::try_from(self.slots.len() - 1).ok()?
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.cookies_received = 0;
        Some((SessionId { index, generation: slot.generation }, sid))
    }

    fn install(&mut self, session: Session) {
        self.stats.x25519_ops += session.dh.take();
        let index = session.id.index;
        let routed = self.routes.insert(session.local_sid, index);
        debug_assert!(routed, "reserve checked the id's bucket");
        self.slots[index as usize].session = Some(alloc::boxed::Box::new(session));
        self.live += 1;
        self.after_session(index as usize);
    }

    /// After any call into a session: fold counters, emit `Established` once
    /// (resolving duplicate sessions with the same peer), free finished sessions.
    fn after_session(&mut self, idx: usize) {
        self.settle(idx, true, false);
    }

    /// As [`after_session`](Self::after_session) for a session that just took a datagram:
    /// it is polled even if nothing is due, so acknowledgements go out at once ([RC-1]
    /// allows up to the ACK delay; sending sooner keeps the peer's RTT samples tight).
    fn after_input(&mut self, idx: usize) {
        self.settle(idx, true, true);
    }

    /// As [`after_session`](Self::after_session); `may_poll` false keeps the session out of
    /// the ready queue (it was just polled and had nothing to send: its timer covers it),
    /// `force` queues it regardless.
    fn settle(&mut self, idx: usize, may_poll: bool, force: bool) {
        let Some(slot) = self.slots.get_mut(idx) else { return };
        let Some(s) = slot.session.as_mut() else { return };
        if slot.indexed_peer != s.peer {
            if let Some(old) = slot.indexed_peer.take() {
                self.by_peer.remove(old.0, idx as u32);
            }
            if let Some(p) = s.peer {
                self.by_peer.insert(p.0, idx as u32);
                slot.indexed_peer = Some(p);
            }
        }
        self.stats.x25519_ops += s.take_dh_ops();
        self.stats.handshakes_abandoned += u64::from(core::mem::take(&mut s.abandoned));
        let c = core::mem::take(&mut s.relay_counters);
        self.stats.punch_probes += u64::from(c.probes);
        self.stats.punch_direct += u64::from(c.direct);
        self.stats.relay_fallbacks += u64::from(c.fallbacks);
        self.stats.relay_dropped += u64::from(c.dropped);
        if s.just_established && s.punch.is_none() && !self.config.keep_relay_path {
            if let PathAddr::Relay(r) = s.remote {
                self.start_punching(idx, r);
            }
        }
        let Some(s) = self.slots.get_mut(idx).and_then(|s| s.session.as_mut()) else { return };
        if s.just_established {
            s.just_established = false;
            self.stats.handshakes_completed += 1;
            self.resolve_duplicates(idx);
        }
        let Some(slot) = self.slots.get_mut(idx) else { return };
        let Some(s) = slot.session.as_ref() else { return };
        let half_open = matches!(s.phase, Phase::Challenged(_));
        if half_open != slot.half_open {
            slot.half_open = half_open;
            if half_open {
                self.half_open += 1;
            } else {
                self.half_open -= 1;
            }
        }
        // A session with a relay that stopped carrying (closing, draining or done): the
        // sessions through it end now (spec [RY-7]), once.
        let relay_down = (cfg!(feature = "relay")
            && !s.relay_down_reported
            && matches!(s.relay.as_deref(), Some(RelayLink::Relay { .. }))
            && matches!(s.phase, Phase::Closing { .. } | Phase::Draining | Phase::Done))
        .then_some(s.id);
        if relay_down.is_some() {
            if let Some(m) = slot.session.as_mut() {
                m.relay_down_reported = true;
            }
        }
        let Some(s) = slot.session.as_ref() else { return };
        if s.is_done() {
            if slot.half_open {
                slot.half_open = false;
                self.half_open -= 1;
            }
            if let Some(p) = slot.indexed_peer.take() {
                self.by_peer.remove(p.0, idx as u32);
            }
            if s.relay.as_deref().is_some_and(|l| matches!(l, RelayLink::Member { registered: true, .. })) {
                self.relay_members = self.relay_members.saturating_sub(1);
                let left = s.transport.as_ref().map_or(0, |t| t.relay_out.byte_len());
                self.relay_queued = self.relay_queued.saturating_sub(left);
            }
            if let Some(s) = slot.session.take() {
                self.routes.remove(&s.local_sid, idx as u32);
                self.free.push(idx as u32);
                self.live -= 1;
            }
            self.schedule.forget(idx as u32);
        } else {
            self.schedule.update(idx as u32, s.next_deadline(self.now), self.now, may_poll, force);
        }
        if let Some(via) = relay_down {
            self.relay_link_ended(via);
        }
    }

    /// This node's session `via` with a relay stopped carrying (spec [RY-7]): sessions on a relayed
    /// path through it end at once (their peer is unreachable: nothing could carry even a
    /// SESSION_CLOSE), and direct sessions lose it as their fallback. One pass over the
    /// slots, on the rare event of a relay session ending (a member holds few of them).
    fn relay_link_ended(&mut self, via: SessionId) {
        for i in 0..self.slots.len() {
            let Some(s) = self.slots.get_mut(i).and_then(|s| s.session.as_mut()) else { continue };
            let mut ctx = Ctx { config: &self.config, events: &mut self.events, entropy: &mut self.entropy };
            if s.relay_link_ended(via, &mut ctx) {
                self.after_session(i);
            }
        }
    }

    /// A session just established over relay `r`: announce candidates (this node's own
    /// addresses and the one the relay reports) and wait for the peer's (spec [PU-1], [PU-2]).
    fn start_punching(&mut self, idx: usize, r: RelayAddr) {
        if !cfg!(feature = "relay") {
            return;
        }
        let mut cands: heapless::Vec<SocketAddr, 8> = heapless::Vec::new();
        if let Some(relay) = self.relay_session(r.via) {
            let reported = match relay.relay.as_deref() {
                Some(RelayLink::Relay { status: RelayStatus::Registered { observed }, .. }) => *observed,
                _ => None,
            };
            if let Some(a) = reported.or(relay.observed) {
                let _ = cands.push(a);
            }
        }
        for a in &self.local_addrs {
            if !cands.contains(a) {
                let _ = cands.push(*a);
            }
        }
        let Some(s) = self.slots.get_mut(idx).and_then(|s| s.session.as_mut()) else { return };
        let mut p = Punch::new(PathAddr::Relay(r), &cands);
        if s.role == crate::session::Role::Initiator {
            p.round = 1;
            p.send_candidates = true;
            p.pad_to = crate::session::INITIAL_MTU as usize;
        }
        s.punch.set(alloc::boxed::Box::new(p));
    }

    /// Stall guard: a session that got its timeout at this instant, then had nothing to
    /// send, yet is still due now would make the driver spin (a deadline no input can
    /// move). Its next visit moves [`STALL_BACKOFF`] ahead and the event is counted in
    /// [`NodeStats::stalled_deadlines`] (a bug to fix when non-zero; spec [ND-1]).
    fn guard_stall(&mut self, idx: usize) {
        let Some(slot) = self.slots.get(idx) else { return };
        if slot.timed_out_at != Some(self.now) {
            return;
        }
        let Some(s) = slot.session.as_ref() else { return };
        if s.next_deadline(self.now).is_some_and(|d| d <= self.now) {
            self.stats.stalled_deadlines += 1;
            self.schedule.timers.set(idx as u32, self.now.saturating_add(STALL_BACKOFF));
        }
    }

    /// One session per peer pair (spec [HS-21]): a simultaneous open keeps the session
    /// initiated by the lower node id; otherwise the newer session replaces the older.
    fn resolve_duplicates(&mut self, idx: usize) {
        let (peer, mine, started) = match self.slots[idx].session.as_ref() {
            Some(s) => match (s.peer, s.initiator_id(self.node_id)) {
                (Some(p), Some(i)) => (p, i, s.started_at),
                _ => return,
            },
            None => return,
        };
        let now = self.now;
        // Only sessions with the same peer (the index holds one or two).
        let same_peer: heapless::Vec<u32, 4> =
            self.by_peer.positions(peer.0).filter(|&j| j as usize != idx).take(4).collect();
        for j in same_peer {
            let j = j as usize;
            let Some(other) = self.slots.get_mut(j).and_then(|s| s.session.as_mut()) else { continue };
            if other.peer != Some(peer)
                || !matches!(other.state(), SessionState::Handshaking | SessionState::Established)
            {
                continue;
            }
            let Some(theirs) = other.initiator_id(self.node_id) else { continue };
            let overlapping = other.established_at.is_none_or(|t| t > started);
            let keep_other = overlapping && theirs < mine;
            let mut ctx = Ctx { config: &self.config, events: &mut self.events, entropy: &mut self.entropy };
            if keep_other {
                if let Some(me) = self.slots[idx].session.as_mut() {
                    me.close(now, &mut ctx, CloseKind::Transport, TransportCode::Superseded.to_u64());
                }
                return;
            }
            other.close(now, &mut ctx, CloseKind::Transport, TransportCode::Superseded.to_u64());
            self.after_session(j);
        }
        if let Some(me) = self.slots[idx].session.as_mut() {
            me.established_emitted = true;
            let at = self.event_mark.min(self.events.len());
            self.events.insert(at, Event::Established { session: me.id, peer });
        }
    }

    // ----- output -----

    /// Returns the next thing to do: a datagram to send (written into `buf`), an
    /// event, or `Wait(deadline)`. Call until it returns `Wait`.
    ///
    /// # Panics
    /// If `buf` is shorter than the configured `max_udp_payload` (API misuse).
    pub fn poll_output(&mut self, buf: &mut [u8]) -> Output {
        assert!(buf.len() >= self.config.max_udp_payload, "poll_output buffer must hold max_udp_payload bytes");
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        while let Some((dst, pkt)) = self.pending_cookies.pop_front() {
            buf[..pkt.len()].copy_from_slice(&pkt);
            match dst {
                PathAddr::Relay(r) => self.wrap_for_relay(r, pkt.len(), buf),
                _ => return self.transmit(dst, pkt.len()),
            }
        }
        // Only sessions with something due are polled, in turn (spec [ND-1]): one that
        // sent a packet and has more goes to the back of the queue.
        while let Some(slot) = self.schedule.ready.pop() {
            let idx = slot as usize;
            let Some(s) = self.slots.get_mut(idx).and_then(|s| s.session.as_mut()) else { continue };
            self.stats.sessions_visited += 1;
            let mut ctx = Ctx { config: &self.config, events: &mut self.events, entropy: &mut self.entropy };
            let queued_before = s.transport.as_ref().map_or(0, |t| t.relay_out.byte_len());
            let sent = s.poll_transmit(self.now, &mut ctx, buf);
            if self.config.relay.is_some() {
                let after = s.transport.as_ref().map_or(0, |t| t.relay_out.byte_len());
                self.relay_queued = self.relay_queued.saturating_sub(queued_before.saturating_sub(after));
            }
            self.settle(idx, sent.is_some(), false);
            if sent.is_none() {
                self.guard_stall(idx);
            }
            match sent {
                // A relayed path: wrapped into the relay session, which is polled in turn.
                Some((PathAddr::Relay(r), len)) => self.wrap_for_relay(r, len, buf),
                Some((dst, len)) => return self.transmit(dst, len),
                None => {}
            }
        }
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        Output::Wait(self.next_deadline())
    }

    fn transmit(&mut self, dst: PathAddr, len: usize) -> Output {
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += len as u64;
        Output::Transmit(Transmit { dst, len, segment_size: None })
    }
}

/// A borrowed handle on one session, from [`Node::session`].
#[doc(alias = "STTSession")]
pub struct SessionRef<'a> {
    session: &'a mut Session,
    config: &'a Config,
    events: &'a mut EventQueue,
    entropy: &'a mut dyn Entropy,
    /// The node's clock: commands move it forward, so what they queue is stamped with
    /// the time of the command, not of the last input.
    now: &'a mut Instant,
    /// Commands change what the session wants to send and when: each reschedules it.
    schedule: &'a mut Schedule,
}

impl SessionRef<'_> {
    /// Reschedules the session after a command and passes `r` through (spec [ND-1]).
    fn touched<T>(&mut self, r: T) -> T {
        let s = &*self.session;
        let poll = s.is_done() || s.just_established;
        self.schedule.update(s.id.index, s.next_deadline(*self.now), *self.now, true, poll);
        r
    }

    /// Moves the node's clock to `now` (never backwards) and returns the current time.
    fn clock(&mut self, now: Instant) -> Instant {
        if now > *self.now {
            *self.now = now;
        }
        *self.now
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.session.id
    }

    /// The peer's authenticated node id (known once the handshake revealed it).
    pub fn peer(&self) -> Option<NodeId> {
        self.session.peer
    }

    /// The session's state.
    pub fn state(&self) -> SessionState {
        self.session.state()
    }

    /// The peer's current path address.
    pub fn remote(&self) -> PathAddr {
        self.session.remote
    }

    /// Asks the peer to act as this node's relay (spec [RY-1]): RELAY_REGISTER goes out once
    /// the session is established, and [`Event::RelayStatus`] reports the answer. Returns
    /// false over a relayed path, or a direct path punched from one (no relaying through
    /// relays: the session would fall back onto its relayed path).
    ///
    /// Always false in a build without the `relay` feature.
    pub fn register_relay(&mut self) -> bool {
        if !cfg!(feature = "relay") || self.session.ever_relayed() {
            return false;
        }
        if !matches!(
            self.session.relay.as_deref(),
            Some(RelayLink::Relay { status: RelayStatus::Registered { .. }, .. })
        ) {
            self.session.relay.set(alloc::boxed::Box::new(RelayLink::new_relay()));
        }
        self.touched(true)
    }

    /// Where this node stands with the relay on this session, if it asked to register.
    pub fn relay_status(&self) -> Option<RelayStatus> {
        match self.session.relay.as_deref() {
            Some(RelayLink::Relay { status, .. }) => Some(*status),
            _ => None,
        }
    }

    /// This node's address as the responder saw it (initiator side; NAT reflexive address).
    pub fn observed_address(&self) -> Option<SocketAddr> {
        self.session.observed
    }

    /// The negotiated AEAD, once keys exist.
    pub fn aead(&self) -> Option<AeadAlg> {
        self.session.record.as_ref().map(Record::alg)
    }

    /// The Noise handshake hash (channel binding), once the handshake finished.
    pub fn handshake_hash(&self) -> Option<[u8; 32]> {
        self.session.record.as_ref().map(|_| self.session.handshake_hash)
    }

    /// Counters, with RTT, congestion and key-update figures filled in.
    pub fn stats(&self) -> SessionStats {
        let mut s = self.session.stats.to_stats();
        if let Some(t) = self.session.transport.as_ref() {
            let (in_flight, cwnd) = t.window();
            s.bytes_in_flight = in_flight;
            s.cwnd = cwnd;
            s.lost = t.lost();
            s.spurious_losses = t.loss.spurious_losses;
            s.mtu = t.mtu;
            if let Some(st) = t.streams() {
                s.streams = st.len() as u64;
                s.recv_ranges = st.recv_ranges() as u64;
                s.reassembly_steps = st.reassembly_steps();
            }
            s.datagrams_dropped = t.dgram_send.dropped + t.dgram_recv.dropped;
        }
        s.rtt = self.session.rtt().smoothed();
        s.key_updates = self.session.record.as_ref().map_or(0, Record::key_updates);
        s.rehandshakes = self.session.rehandshakes();
        s
    }

    /// Whether everything written on streams, every application frame and every queued
    /// datagram was sent, and every packet carrying them was acknowledged (what a graceful
    /// close waits for). False before the handshake finished.
    pub fn all_acknowledged(&self) -> bool {
        self.session.transport.as_ref().is_some_and(crate::transport::Transport::all_acknowledged)
    }

    /// The probe timeout currently in force.
    pub fn pto(&self) -> Duration {
        self.session.rtt().pto()
    }

    /// Largest datagram payload that can be sent now.
    pub fn max_datagram(&self) -> usize {
        self.session.max_datagram(self.config)
    }

    /// Queues an unreliable datagram. When the queue is full, `drop_oldest` chooses
    /// between evicting the oldest queued datagram and refusing this one.
    ///
    /// # Errors
    /// [`DatagramError`] naming the limit that refused it.
    pub fn send_datagram(&mut self, now: Instant, data: &[u8], drop_oldest: bool) -> Result<(), DatagramError> {
        let now = self.clock(now);
        let r = self.session.send_datagram(now, self.config, data, drop_oldest);
        self.touched(r)
    }

    // ----- streams -----

    /// The session's streams, created now if none was used yet (`None` before the
    /// handshake finished).
    fn streams(&mut self, now: Instant) -> Option<&mut crate::stream::Streams> {
        let config = self.config;
        self.session.transport.as_mut().map(|t| t.streams_or_new(config, now))
    }

    /// The session's streams if any was used yet: for what an unused set answers with
    /// nothing (accepting, counting readable bytes, taking a frame).
    fn streams_if_used(&mut self) -> Option<&mut crate::stream::Streams> {
        self.session.transport.as_mut().and_then(crate::transport::Transport::streams_mut)
    }

    /// The session's streams for an operation on an existing stream: `not_established`
    /// before the handshake finished, `unknown` (what an unused set answers for every
    /// stream) while no stream was used yet.
    fn used_streams<E>(&mut self, not_established: E, unknown: E) -> Result<&mut crate::stream::Streams, E> {
        let t = self.session.transport.as_mut().ok_or(not_established)?;
        t.streams_mut().ok_or(unknown)
    }

    /// As [`used_streams`](Self::used_streams), for a write: the unsent allowance follows
    /// the congestion window.
    fn streams_for_write<E>(&mut self, not_established: E, unknown: E) -> Result<&mut crate::stream::Streams, E> {
        let t = self.session.transport.as_mut().ok_or(not_established)?;
        t.streams_for_write().ok_or(unknown)
    }

    /// Opens a stream (unidirectional if `uni`). Data is sent once written.
    ///
    /// # Errors
    /// [`StreamError::Blocked`] at the peer's stream limit (wait for
    /// `Event::StreamsUnblocked`), or `NotEstablished`.
    pub fn open_stream(&mut self, now: Instant, uni: bool) -> Result<StreamId, StreamError> {
        let now = self.clock(now);
        let r = self.streams(now).ok_or(StreamError::NotEstablished)?.open(now, uni);
        self.touched(r)
    }

    /// Opens a bidirectional stream.
    ///
    /// # Errors
    /// As [`open_stream`](Self::open_stream).
    pub fn open_bi(&mut self, now: Instant) -> Result<StreamId, StreamError> {
        self.open_stream(now, false)
    }

    /// Opens a unidirectional stream.
    ///
    /// # Errors
    /// As [`open_stream`](Self::open_stream).
    pub fn open_uni(&mut self, now: Instant) -> Result<StreamId, StreamError> {
        self.open_stream(now, true)
    }

    /// Takes the next stream the peer opened (see `Event::StreamOpened`).
    pub fn accept_stream(&mut self) -> Option<StreamId> {
        let r = self.streams_if_used()?.accept();
        self.touched(r)
    }

    /// Takes the next unidirectional stream the peer opened (others stay queued).
    pub fn accept_uni(&mut self) -> Option<StreamId> {
        let r = self.streams_if_used()?.accept_kind(true);
        self.touched(r)
    }

    /// Takes the next bidirectional stream the peer opened (others stay queued).
    pub fn accept_bi(&mut self) -> Option<StreamId> {
        let r = self.streams_if_used()?.accept_kind(false);
        self.touched(r)
    }

    /// Writes as much of `data` as the send buffer accepts; returns how much.
    ///
    /// # Errors
    /// [`WriteError`]; `Blocked` when nothing fits (wait for `Event::StreamWritable`).
    pub fn write(&mut self, now: Instant, stream: StreamId, data: &[u8]) -> Result<usize, WriteError> {
        let streams = self.streams_for_write(WriteError::NotEstablished, WriteError::UnknownStream)?;
        let written = streams.write_copy(stream, data)?;
        let now = self.clock(now);
        self.session.note_app_activity(now);
        self.touched(Ok(written))
    }

    /// Writes reference-counted bytes without copying; returns how much was taken.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn write_bytes(&mut self, now: Instant, stream: StreamId, data: Bytes) -> Result<usize, WriteError> {
        let written =
            self.streams_for_write(WriteError::NotEstablished, WriteError::UnknownStream)?.write(stream, data)?;
        let now = self.clock(now);
        self.session.note_app_activity(now);
        self.touched(Ok(written))
    }

    /// Ends the stream after the data written so far.
    ///
    /// # Errors
    /// [`WriteError`] if the stream is unknown, already finished or stopped.
    pub fn finish(&mut self, now: Instant, stream: StreamId) -> Result<(), WriteError> {
        let _ = self.clock(now);
        let r = self.used_streams(WriteError::NotEstablished, WriteError::UnknownStream)?.finish(stream);
        self.touched(r)
    }

    /// Abandons the sending half with `code` (STREAM_CLOSE).
    ///
    /// # Errors
    /// [`WriteError`] if the stream is unknown or already finished and acknowledged.
    pub fn reset_stream(&mut self, now: Instant, stream: StreamId, code: u64) -> Result<(), WriteError> {
        let _ = self.clock(now);
        let r = self
            .used_streams(WriteError::NotEstablished, WriteError::UnknownStream)?
            .reset(stream, code.min(crate::wire::codec::VARINT_MAX));
        self.touched(r)
    }

    /// Asks the peer to stop sending on `stream` (STOP_SENDING); unread data is discarded.
    ///
    /// # Errors
    /// [`ReadError::UnknownStream`] without a receiving half.
    pub fn stop_sending(&mut self, now: Instant, stream: StreamId, code: u64) -> Result<(), ReadError> {
        let _ = self.clock(now);
        let r = self
            .used_streams(ReadError::UnknownStream, ReadError::UnknownStream)?
            .stop_sending(stream, code.min(crate::wire::codec::VARINT_MAX));
        self.touched(r)
    }

    /// How many bytes [`read`](Self::read) would return now on `stream` (0 when none, or
    /// for an unknown stream), so a driver can size its buffer.
    pub fn readable(&mut self, stream: StreamId) -> usize {
        self.streams_if_used().map_or(0, |s| usize::try_from(s.readable(stream)).unwrap_or(usize::MAX))
    }

    /// Reads stream data into `buf`: `(bytes, fin)`; `fin` once the whole stream was read.
    ///
    /// # Errors
    /// [`ReadError::Blocked`] when nothing is available yet; `Reset(code)` after a peer reset.
    pub fn read(&mut self, now: Instant, stream: StreamId, buf: &mut [u8]) -> Result<(usize, bool), ReadError> {
        let now = self.clock(now);
        let srtt = self.session.rtt().smoothed();
        let r = self.used_streams(ReadError::UnknownStream, ReadError::UnknownStream)?.read(now, srtt, stream, buf);
        if matches!(r, Ok((n, _)) if n > 0) {
            self.session.note_app_activity(now);
        }
        self.touched(r)
    }

    /// Sends an application frame (type 0x80–0xFF) reliably, in order among frames.
    ///
    /// # Errors
    /// [`FrameError`]: a type the peer did not declare, an oversize body, a full buffer.
    pub fn send_app_frame(&mut self, now: Instant, ty: u8, body: &[u8]) -> Result<(), FrameError> {
        self.streams(now).ok_or(FrameError::NotEstablished)?.send_app_frame(now, ty, body)?;
        let now = self.clock(now);
        self.session.note_app_activity(now);
        self.touched(Ok(()))
    }

    /// Takes the oldest received application frame: `(type, body length)`, the body
    /// copied into `buf` (truncated to `buf.len()`).
    pub fn recv_app_frame(&mut self, now: Instant, buf: &mut [u8]) -> Option<(u8, usize)> {
        let now = self.clock(now);
        let srtt = self.session.rtt().smoothed();
        let events = &mut *self.events;
        let r = self.session.transport.as_mut()?.streams_mut()?.recv_app_frame(now, srtt, buf, events);
        self.touched(r)
    }

    /// Derives keying material bound to this session (RFC 5705 style, spec [EX-1]):
    /// `HKDF-Expand(exporter_secret, "stt/1 export " ‖ len(label) ‖ label ‖ context, out.len())`.
    ///
    /// # Errors
    /// [`ExportError`] before the handshake finished or for outputs over 255·32 bytes.
    pub fn export_keying_material(&self, label: &[u8], context: &[u8], out: &mut [u8]) -> Result<(), ExportError> {
        self.session.export_keying_material(label, context, out)
    }

    /// Reads the oldest received datagram into `buf` (truncating to `buf.len()`).
    pub fn recv_datagram(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.session.recv_datagram(buf)
    }

    /// Closes the session with an application code and a reason phrase for humans (UTF-8,
    /// cut to 255 bytes; spec [LC-11]). Emits `Closed` once. The peer reads the phrase with
    /// [`peer_close_reason`](Self::peer_close_reason).
    pub fn close_with_reason(&mut self, now: Instant, code: u64, reason: &str) {
        self.session.set_close_text(reason);
        self.close(now, code);
    }

    /// The reason phrase the peer closed this session with, if it gave one (readable while
    /// the session drains, until it is freed).
    pub fn peer_close_reason(&self) -> Option<&str> {
        self.session.peer_close_text()
    }

    /// Closes the session with an application code. Emits `Closed` once.
    pub fn close(&mut self, now: Instant, code: u64) {
        let now = self.clock(now);
        let mut ctx = Ctx { config: self.config, events: &mut *self.events, entropy: &mut *self.entropy };
        self.session.close(now, &mut ctx, CloseKind::Application, code.min(crate::wire::codec::VARINT_MAX));
        self.touched(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{NodeSeed, SharedSeed};
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// A seed holder acting as a malicious responder answers a HELLO with `choice`.
    fn forged_challenge(choice: AeadAlg, echo_sid: Option<WireSessionId>) -> (Event, Option<SessionState>) {
        let shared = SharedSeed::from_bytes([1; 32]);
        let id = Identity::new(NodeSeed::from_bytes([2; 32]), shared.clone());
        let config = Config::default().aeads(&[AeadAlg::ChaCha20Poly1305]);
        let wall = Some(UnixTime::from_millis(1_000_000));
        let mut a = Node::new(config, id, ChaCha20Rng::seed_from_u64(1), Instant::ZERO, wall).unwrap();
        let to = PathAddr::Udp("192.0.2.2:1".parse().unwrap());
        let s = a.connect(Instant::ZERO, to, None).unwrap();
        let mut buf = [0u8; 1500];
        let Output::Transmit(t) = a.poll_output(&mut buf) else { panic!("HELLO expected") };
        let hello = buf[..t.len].to_vec();
        let responder = StaticKey::derive(&NodeSeed::from_bytes([3; 32]));
        let c = DhCounter::default();
        let (mut noise, offer) = handshake::read_hello(&responder, &shared.derive(), [4; 32], &hello, &c).unwrap();
        assert_eq!(offer.offer, [Some(AeadAlg::ChaCha20Poly1305), None]);
        let rsid = WireSessionId([9; 8]);
        let isid = WireSessionId(hello[2..10].try_into().unwrap());
        let payload = ChallengePayload {
            responder_sid: echo_sid.unwrap_or(rsid),
            choice: choice.id(),
            observed: None,
            params: TransportParams::default(),
        };
        let mut challenge = handshake::write_challenge(&mut noise, rsid, isid, &payload).unwrap();
        let out = a.handle_input(Input::Datagram { now: Instant::ZERO, from: to, data: &mut challenge });
        assert_eq!(out, InputOutcome::Consumed);
        let Output::Event(e) = a.poll_output(&mut buf) else { panic!("event expected") };
        let state = a.session(s).map(|s| s.state());
        (e, state)
    }

    /// [RL-1]: a CHALLENGE choosing an AEAD that was not offered aborts the handshake.
    #[test]
    fn downgraded_choice_aborts() {
        let (e, state) = forged_challenge(AeadAlg::Aes256Gcm, None);
        assert!(matches!(e, Event::HandshakeFailed { reason: HandshakeFailure::AeadNotOffered, .. }), "{e:?}");
        assert_eq!(state, None, "session removed");
    }

    /// [HS-10]: the responder sid inside CHALLENGE must match its header.
    #[test]
    fn mismatched_responder_sid_aborts() {
        let (e, _) = forged_challenge(AeadAlg::ChaCha20Poly1305, Some(WireSessionId([8; 8])));
        assert!(matches!(e, Event::HandshakeFailed { reason: HandshakeFailure::Malformed, .. }), "{e:?}");
    }
}
