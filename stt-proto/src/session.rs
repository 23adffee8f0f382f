//! One session's state machine: handshake phases, the established record, timers,
//! keepalive, idle timeout and close (spec §6, §8).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::net::SocketAddr;
use core::time::Duration;

use snow::HandshakeState;

use crate::addr::PathAddr;
use crate::config::Config;
use crate::crypto::noise::DhCounter;
use crate::crypto::AeadAlg;
use crate::entropy::{Entropy, EntropyPurpose};
use crate::error::{CloseReason, DatagramError, DropReason, ExportError, HandshakeFailure, TransportCode};
use crate::event::{Event, EventQueue, SessionId};
use crate::gate::{Gated, REHANDSHAKE, RELAY};
use crate::identity::NodeId;
use crate::path::{MoveLimits, Moved, Paths, Validation, MIN_PATH_PACKET, PATH_PROBE_SIZE};
use crate::record::{KeyUpdatePolicy, OpenError, Record, SealError};
use crate::recovery::ack::MAX_ACK_DELAY;
use crate::recovery::rtt::RttEstimator;
use crate::rehandshake::{Rekey, RekeyTimers};
use crate::relay::{Punch, RelayLink, RelayStatus, FALLBACK_PTOS};
use crate::stats::{NodeStats, SessionCounters};
use crate::stream::{AppFrameSet, PeerLimits};
use crate::time::Instant;
use crate::transport::{FrameLog, Transport};
use crate::wire::codec::{Reader, Writer};
use crate::wire::frame::{CloseKind, Frame};
use crate::wire::header::{WireSessionId, RECORD_HEADER_LEN};
use crate::wire::params::TransportParams;

/// Which side started the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    Initiator,
    Responder,
}

/// The state of a session as the application sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SessionState {
    /// The handshake is running.
    Handshaking,
    /// Keys are confirmed both ways; data flows.
    Established,
    /// Closed locally; the close is being repeated to the peer for a while.
    Closing,
    /// The peer closed; waiting out late packets.
    Draining,
}

/// Initiator: HELLO sent, waiting for CHALLENGE or COOKIE.
pub(crate) struct HelloState {
    pub(crate) noise: HandshakeState,
    pub(crate) hello: Vec<u8>,
    pub(crate) first_sent: Option<Instant>,
    pub(crate) retransmitted: bool,
    /// The handshake aborts unless the responder proves this node id.
    pub(crate) expected_peer: Option<NodeId>,
}

/// Initiator: AUTH_PROOF sent, keys ready, waiting for the first protected packet (FINAL).
pub(crate) struct AwaitFinalState {
    pub(crate) auth: Vec<u8>,
    /// The round trip measured from HELLO to CHALLENGE, until the transport takes it over.
    pub(crate) rtt: RttEstimator,
    pub(crate) first_sent: Option<Instant>,
    pub(crate) retransmitted: bool,
}

/// Responder: CHALLENGE sent, waiting for AUTH_PROOF.
pub(crate) struct ChallengedState {
    pub(crate) noise: HandshakeState,
    pub(crate) challenge: Vec<u8>,
    pub(crate) sent_at: Option<Instant>,
    pub(crate) alg: AeadAlg,
}

/// The session's phase: an enum with the data each phase needs.
pub(crate) enum Phase {
    Hello(Box<HelloState>),
    AwaitFinal(Box<AwaitFinalState>),
    Challenged(Box<ChallengedState>),
    Established,
    Closing {
        until: Instant,
        resends: u8,
    },
    Draining,
    /// Finished: the node frees the slot.
    Done,
}

/// Timers, in a fixed table indexed by this enum (spec §8.1).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Timer {
    Retransmit = 0,
    Handshake = 1,
    Idle = 2,
    Keepalive = 3,
    Close = 4,
}
const TIMERS: usize = 5;

/// Smallest anti-amplification budget worth building a packet for.
const REMOTE_MIN_BUDGET: u64 = Record::OVERHEAD as u64 + 64;

/// Every path starts with this datagram size (spec [PM-1]).
pub(crate) const INITIAL_MTU: u64 = 1200;

/// How many times a closing session repeats its SESSION_CLOSE in answer to late packets.
const CLOSE_RESENDS: u8 = 3;

/// Node-wide things a session touches while it runs.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) events: &'a mut EventQueue,
    pub(crate) entropy: &'a mut dyn Entropy,
}

/// Re-handshake messages travel inside the session, so they retransmit on the PTO.
fn rekey_timers(config: &Config, rtt: &RttEstimator) -> RekeyTimers {
    RekeyTimers {
        interval: config.rehandshake_interval,
        retransmit: rtt.pto(),
        timeout: config.handshake_timeout,
        min_interval: config.rehandshake_min_interval,
    }
}

/// One session.
pub(crate) struct Session {
    pub(crate) id: SessionId,
    pub(crate) role: Role,
    pub(crate) local_sid: WireSessionId,
    pub(crate) remote_sid: WireSessionId,
    pub(crate) remote: PathAddr,
    pub(crate) peer: Option<NodeId>,
    pub(crate) phase: Phase,
    pub(crate) record: Option<Record>,
    /// The re-handshake (spec §5.5); always empty without the `rehandshake` feature.
    rekey: Gated<Rekey, REHANDSHAKE>,
    /// The peer's transport parameters, from the handshake until establishment.
    peer_params: Option<Box<TransportParams>>,
    /// What the session keeps of them once established.
    peer_max_udp_payload: u64,
    peer_max_datagram_frame: u64,
    pub(crate) observed: Option<SocketAddr>,
    pub(crate) handshake_hash: [u8; 32],
    /// Secret for exported keys and re-handshake PSKs (spec §5.7).
    pub(crate) exporter: [u8; 32],
    pub(crate) auth_digest: [u8; 16],
    pub(crate) dh: DhCounter,
    pub(crate) started_at: Instant,
    pub(crate) established_at: Option<Instant>,
    /// Set when the session has just become established; the node resolves duplicates and emits the event.
    pub(crate) just_established: bool,
    /// This session is with a relay and stopped carrying (closing, draining or done): the
    /// node has ended the sessions that ran through it (spec [RY-7]).
    pub(crate) relay_down_reported: bool,
    /// Initiator on a direct path: established when it sent AUTH_PROOF (spec [HS-22]), which
    /// it repeats until the first authenticated packet from the responder confirms it.
    pub(crate) unconfirmed: Option<Box<AwaitFinalState>>,
    /// A re-handshake step ran (it may have done X25519 operations the node counts).
    rekey_ran: bool,
    pub(crate) established_emitted: bool,
    timers: [Option<Instant>; TIMERS],
    retransmit_backoff: u32,
    idle_timeout: Duration,
    last_app_activity: Option<Instant>,
    // Pending output.
    pub(crate) send_handshake: bool,
    send_keepalive: bool,
    close_frame: Option<(CloseKind, u64)>,
    last_close: Option<(CloseKind, u64)>,
    /// The close's reason phrase (spec [LC-11]): ours while closing, the peer's once it
    /// closed (`close_text_from_peer`). Usually none.
    close_text: Option<alloc::boxed::Box<[u8]>>,
    close_text_from_peer: bool,
    /// A half-open responder handshake expired (taken into `NodeStats`).
    pub(crate) abandoned: bool,
    pub(crate) transport: Option<Transport>,
    paths: Option<Paths>,
    pub(crate) stats: SessionCounters,
    /// Relay role (member of this node's relay, or this node's relay); boxed, usually none.
    pub(crate) relay: Gated<Box<RelayLink>, RELAY>,
    /// Hole punching, for a session that started on a relayed path.
    pub(crate) punch: Gated<Box<Punch>, RELAY>,
    /// Relay and punching counters the node folds into its stats.
    pub(crate) relay_counters: RelayCounters,
}

/// Counters a session hands to the node (see [`NodeStats`]).
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct RelayCounters {
    // Taken by the node after every input (a handful at most between two takes).
    pub(crate) probes: u32,
    pub(crate) direct: u32,
    pub(crate) fallbacks: u32,
    pub(crate) dropped: u32,
}

impl Session {
    /// A session in its first phase.
    pub(crate) fn new(
        id: SessionId,
        role: Role,
        local_sid: WireSessionId,
        remote: PathAddr,
        phase: Phase,
        now: Instant,
        config: &Config,
    ) -> Self {
        let mut s = Self {
            id,
            role,
            local_sid,
            remote_sid: WireSessionId::default(),
            remote,
            peer: None,
            phase,
            record: None,
            rekey: Gated::NONE,
            peer_params: None,
            peer_max_udp_payload: INITIAL_MTU,
            peer_max_datagram_frame: 0,
            observed: None,
            handshake_hash: [0; 32],
            exporter: [0; 32],
            auth_digest: [0; 16],
            dh: DhCounter::default(),
            started_at: now,
            established_at: None,
            just_established: false,
            relay_down_reported: false,
            unconfirmed: None,
            rekey_ran: false,
            established_emitted: false,
            timers: [None; TIMERS],
            retransmit_backoff: 0,
            idle_timeout: config.idle_timeout,
            last_app_activity: None,
            send_handshake: true,
            send_keepalive: false,
            close_frame: None,
            last_close: None,
            close_text: None,
            close_text_from_peer: false,
            abandoned: false,
            transport: None,
            paths: None,
            stats: SessionCounters::default(),
            relay: Gated::NONE,
            punch: Gated::NONE,
            relay_counters: RelayCounters::default(),
        };
        s.set_timer(Timer::Handshake, Some(now.saturating_add(config.handshake_timeout)));
        s
    }

    /// Records the peer's transport parameters from its handshake message.
    pub(crate) fn set_peer_params(&mut self, p: TransportParams) {
        self.peer_max_udp_payload = p.max_udp_payload;
        self.peer_max_datagram_frame = p.max_datagram_frame;
        self.peer_params = Some(Box::new(p));
    }

    fn set_timer(&mut self, t: Timer, at: Option<Instant>) {
        self.timers[t as usize] = at;
    }

    /// The public view of the phase.
    pub(crate) fn state(&self) -> SessionState {
        match self.phase {
            Phase::Hello(_) | Phase::AwaitFinal(_) | Phase::Challenged(_) => SessionState::Handshaking,
            Phase::Established => SessionState::Established,
            Phase::Closing { .. } => SessionState::Closing,
            Phase::Draining | Phase::Done => SessionState::Draining,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    pub(crate) fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established)
    }

    /// X25519 operations since the last call. The counter is a separate shared
    /// allocation (the Noise resolver holds a clone), so it is read only while a handshake
    /// or re-handshake can have run: an established session's datagrams never touch it.
    pub(crate) fn take_dh_ops(&mut self) -> u64 {
        let may_have_run = !matches!(self.phase, Phase::Established) || self.just_established || self.rekey_ran;
        self.rekey_ran = false;
        if may_have_run {
            self.dh.take()
        } else {
            0
        }
    }

    /// Re-handshakes completed.
    pub(crate) fn rehandshakes(&self) -> u64 {
        self.rekey.as_ref().map_or(0, |r| r.completed)
    }

    pub(crate) fn rtt(&self) -> &RttEstimator {
        // Before the transport exists only an initiator waiting for FINAL has a sample.
        static INITIAL: RttEstimator = RttEstimator::INITIAL;
        match (&self.transport, &self.phase) {
            (Some(t), _) => t.rtt(),
            (None, Phase::AwaitFinal(st)) => &st.rtt,
            (None, _) => &INITIAL,
        }
    }

    /// The node id of whoever initiated this session.
    pub(crate) fn initiator_id(&self, local: NodeId) -> Option<NodeId> {
        match self.role {
            Role::Initiator => Some(local),
            Role::Responder => self.peer,
        }
    }

    /// The earliest timer, or "now" if output is pending.
    pub(crate) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.has_pending_output(now) {
            return Some(now);
        }
        let key_discard = self.record.as_ref().and_then(Record::discard_deadline);
        let (rekey, transport, paths) = if self.is_established() {
            let pto = self.rtt().pto();
            (
                self.rekey.as_ref().and_then(Rekey::deadline),
                self.transport.as_ref().and_then(|t| t.deadline(self.may_send_to_remote(), self.path_validated())),
                self.paths.as_ref().and_then(|p| p.deadline(pto)),
            )
        } else {
            (None, None, None)
        };
        let punch = if self.is_established() { self.punch.as_ref().and_then(|p| p.deadline()) } else { None };
        self.timers
            .iter()
            .flatten()
            .copied()
            .chain(key_discard)
            .chain(rekey)
            .chain(transport)
            .chain(paths)
            .chain(punch)
            .min()
    }

    fn has_pending_output(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Hello(_) | Phase::AwaitFinal(_) | Phase::Challenged(_) => self.send_handshake,
            Phase::Established => {
                let auth = self.send_handshake && self.unconfirmed.is_some();
                let paths = self.paths.as_ref().is_some_and(Paths::has_pending);
                let probes = self.punch.as_ref().is_some_and(|p| p.pending != 0 && p.may_probe());
                auth || paths
                    || probes
                    || (self.may_send_to_remote()
                        && (self.send_keepalive
                            || self.control_due()
                            || self.close_frame.is_some()
                            || self.rekey.as_ref().is_some_and(|r| r.send)
                            || self.transport.as_ref().is_some_and(|t| t.wants_to_send(now, self.path_validated()))))
            }
            // A close toward an unvalidated path waits for budget like anything else.
            Phase::Closing { .. } => self.close_frame.is_some() && self.may_send_to_remote(),
            Phase::Draining | Phase::Done => false,
        }
    }

    /// After a move between a relayed and a direct path (spec [PU-7]).
    fn path_kind_changed(&mut self, now: Instant, config: &Config) {
        let ceiling = (!self.remote.relayed()).then(|| self.max_datagram_len(config) as u64);
        if let Some(t) = self.transport.as_mut() {
            t.on_path_kind_change(now, ceiling, config.congestion.build(INITIAL_MTU));
        }
    }

    /// Whether the session runs, or started, on a relayed path (its relayed fallback is kept).
    pub(crate) fn ever_relayed(&self) -> bool {
        self.remote.relayed() || self.paths.as_ref().is_some_and(|p| p.fallback.is_some())
    }

    /// Relay or punching control is owed.
    fn control_due(&self) -> bool {
        self.relay.as_ref().is_some_and(|r| r.control_due())
            || self.punch.as_ref().is_some_and(|p| p.send_candidates)
            || self.transport.as_ref().is_some_and(|t| t.control_lost)
    }

    /// Whether the current path is validated: only then do MTU probes (padded, and outside
    /// the anti-amplification budget) go out (spec [PM-2], [MG-3]).
    fn path_validated(&self) -> bool {
        self.unconfirmed.is_none() && self.paths.as_ref().is_none_or(|p| p.budget() == u64::MAX)
    }

    /// Whether the anti-amplification budget of an unvalidated path allows a packet (spec [MG-3]).
    fn may_send_to_remote(&self) -> bool {
        self.paths.as_ref().is_none_or(|p| p.budget() >= REMOTE_MIN_BUDGET)
    }

    /// The retransmission delay: the configured delay, then twice it for every later attempt
    /// (a short cap keeps handshakes alive under heavy loss, spec [HS-14]).
    fn retransmit_delay(&self, config: &Config) -> Duration {
        config.handshake_retransmit * (1u32 << self.retransmit_backoff.min(1))
    }

    // ----- handshake transitions (called by the node) -----

    /// Initiator: CHALLENGE read, AUTH_PROOF written. With `early` the session is
    /// established at once and AUTH_PROOF repeats until the responder confirms it (spec
    /// [HS-22]); otherwise it waits in AwaitFinal for the first protected packet.
    pub(crate) fn challenge_accepted(
        &mut self,
        now: Instant,
        config: &Config,
        early: bool,
        auth: Vec<u8>,
        record: Record,
        hello_rtt: Option<Duration>,
    ) {
        let mut rtt = RttEstimator::default();
        if let Some(sample) = hello_rtt {
            rtt.update(sample);
        }
        self.record = Some(record);
        let state = Box::new(AwaitFinalState { auth, rtt, first_sent: None, retransmitted: false });
        if !early {
            self.phase = Phase::AwaitFinal(state);
        } else {
            let handshake_deadline = self.timers[Timer::Handshake as usize];
            self.become_established(now, config, rtt);
            if let Some(t) = self.transport.as_mut() {
                t.loss.keyless_below = u64::MAX;
            }
            self.unconfirmed = Some(state);
            // Unconfirmed, the handshake timeout still applies (spec [HS-14]).
            self.set_timer(Timer::Handshake, handshake_deadline);
        }
        self.send_handshake = true;
        self.retransmit_backoff = 0;
        self.set_timer(Timer::Retransmit, None);
    }

    /// Initiator: an authenticated packet from the responder confirms the handshake.
    fn confirm(&mut self) {
        if self.unconfirmed.take().is_some() {
            // Packets sent from now on reach a responder that holds the keys.
            if let (Some(t), Some(r)) = (self.transport.as_mut(), self.record.as_ref()) {
                t.loss.keyless_below = r.next_pn();
            }
            self.send_handshake = false;
            self.set_timer(Timer::Retransmit, None);
            self.set_timer(Timer::Handshake, None);
        }
    }

    /// Responder: AUTH_PROOF read and accepted; the session is established.
    pub(crate) fn auth_accepted(&mut self, now: Instant, record: Record, config: &Config) {
        let mut rtt = RttEstimator::default();
        if let Phase::Challenged(c) = &self.phase {
            if let Some(sent) = c.sent_at {
                rtt.update(now.saturating_duration_since(sent));
            }
        }
        self.record = Some(record);
        self.become_established(now, config, rtt);
        if let Some(t) = self.transport.as_mut() {
            t.send_final = true;
        }
    }

    /// `rtt`: what the handshake measured, handed to the transport.
    fn become_established(&mut self, now: Instant, config: &Config, rtt: RttEstimator) {
        self.phase = Phase::Established;
        self.established_at = Some(now);
        self.just_established = true;
        self.send_handshake = false;
        self.set_timer(Timer::Handshake, None);
        self.set_timer(Timer::Retransmit, None);
        let peer = self.peer_params.take().map_or_else(TransportParams::default, |p| *p);
        let peer_idle = peer.idle_timeout_ms;
        let local = config.idle_timeout;
        self.idle_timeout = if peer_idle == 0 { local } else { local.min(Duration::from_millis(peer_idle)) };
        self.set_timer(Timer::Idle, Some(now.saturating_add(self.idle_timeout)));
        self.arm_keepalive(now, config);
        self.rekey.set(Rekey::new(&self.exporter, self.role == Role::Initiator, now, rekey_timers(config, &rtt)));
        let peer_limits = PeerLimits {
            max_data: peer.initial_max_data,
            max_stream_data: peer.initial_max_stream_data,
            max_streams_bidi: peer.initial_max_streams_bidi,
            max_streams_uni: peer.initial_max_streams_uni,
            app_frames: AppFrameSet { types: peer.app_frame_types, max: peer.max_app_frame },
        };
        let first_pn = self.record.as_ref().map_or(0, Record::next_pn);
        self.paths = Some(Paths::new(self.remote));
        self.transport = Some(Transport::new(
            self.id,
            rtt,
            first_pn,
            config.congestion.build(INITIAL_MTU),
            self.role == Role::Responder,
            peer_limits,
            config.datagram_queue,
            INITIAL_MTU,
            // No discovery through a relay: its framing caps what fits (spec [PU-7]).
            if self.remote.relayed() { INITIAL_MTU } else { self.max_datagram_len(config) as u64 },
            now,
        ));
    }

    fn arm_keepalive(&mut self, now: Instant, config: &Config) {
        let recently_active = self
            .last_app_activity
            .is_some_and(|t| config.keepalive_idle.is_some_and(|idle| now.saturating_duration_since(t) < idle));
        let interval =
            if recently_active { config.keepalive_active.or(config.keepalive_idle) } else { config.keepalive_idle };
        self.set_timer(Timer::Keepalive, interval.map(|i| now.saturating_add(i)));
    }

    /// Ends a handshake this node initiated.
    pub(crate) fn fail_handshake(&mut self, ctx: &mut Ctx<'_>, reason: HandshakeFailure) {
        if self.role == Role::Initiator && !self.established_emitted {
            ctx.events.push_back(Event::HandshakeFailed { session: self.id, reason });
        }
        self.phase = Phase::Done;
    }

    /// Sets the reason phrase the next [`close`](Self::close) sends (at most
    /// `MAX_CLOSE_REASON` bytes, cut at a character boundary); ignored once closing.
    pub(crate) fn set_close_text(&mut self, text: &str) {
        if matches!(self.phase, Phase::Closing { .. } | Phase::Draining | Phase::Done) || text.is_empty() {
            return;
        }
        let mut end = text.len().min(crate::wire::frame::MAX_CLOSE_REASON);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.close_text = Some(text.as_bytes()[..end].into());
        self.close_text_from_peer = false;
    }

    /// The reason phrase the peer closed with, if any.
    pub(crate) fn peer_close_text(&self) -> Option<&str> {
        self.close_text.as_deref().filter(|_| self.close_text_from_peer).and_then(|t| core::str::from_utf8(t).ok())
    }

    /// Starts closing with a SESSION_CLOSE; emits `Closed` (or `HandshakeFailed`) once.
    pub(crate) fn close(&mut self, now: Instant, ctx: &mut Ctx<'_>, kind: CloseKind, code: u64) {
        match self.phase {
            Phase::Hello(_) | Phase::AwaitFinal(_) | Phase::Challenged(_) => {
                let reason = if kind == CloseKind::Transport && code == TransportCode::Superseded.to_u64() {
                    HandshakeFailure::Superseded
                } else {
                    HandshakeFailure::NodeClosed
                };
                // A session without a confirmed peer key cannot send a protected close.
                if self.record.is_none() || matches!(self.phase, Phase::Hello(_)) {
                    self.fail_handshake(ctx, reason);
                    return;
                }
                if self.role == Role::Initiator {
                    ctx.events.push_back(Event::HandshakeFailed { session: self.id, reason });
                }
            }
            Phase::Established => {
                if self.established_emitted {
                    let reason = match kind {
                        CloseKind::Application => CloseReason::Local(code),
                        CloseKind::Transport if code == u64::MAX => CloseReason::NodeClosed,
                        CloseKind::Transport => CloseReason::LocalTransport(TransportCode::from_u64(code)),
                    };
                    ctx.events.push_back(Event::Closed { session: self.id, reason });
                } else if self.role == Role::Initiator {
                    // Closed before `Established` was reported (one session per peer pair,
                    // spec [HS-21]): the connect ends as a failed handshake.
                    let reason = if kind == CloseKind::Transport && code == TransportCode::Superseded.to_u64() {
                        HandshakeFailure::Superseded
                    } else {
                        HandshakeFailure::NodeClosed
                    };
                    ctx.events.push_back(Event::HandshakeFailed { session: self.id, reason });
                }
            }
            Phase::Closing { .. } | Phase::Draining | Phase::Done => return,
        }
        let code = if code == u64::MAX { TransportCode::NoError.to_u64() } else { code };
        self.close_frame = Some((kind, code));
        let drain = self.rtt().pto() * 3;
        self.phase = Phase::Closing { until: now.saturating_add(drain), resends: CLOSE_RESENDS };
        self.set_timer(Timer::Close, Some(now.saturating_add(drain)));
        for t in [Timer::Retransmit, Timer::Handshake, Timer::Idle, Timer::Keepalive] {
            self.set_timer(t, None);
        }
    }

    // ----- timers -----

    /// Fires every due timer.
    pub(crate) fn handle_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if let Some(r) = self.record.as_mut() {
            r.discard_old_keys(now);
        }
        let due = |t: Timer, s: &Self| s.timers[t as usize].is_some_and(|at| at <= now);
        if due(Timer::Handshake, self) {
            self.set_timer(Timer::Handshake, None);
            match self.phase {
                Phase::Hello(_) | Phase::AwaitFinal(_) => self.fail_handshake(ctx, HandshakeFailure::Timeout),
                // Established on AUTH_PROOF but never confirmed (spec [HS-22]).
                Phase::Established if self.unconfirmed.is_some() => {
                    if self.established_emitted {
                        ctx.events.push_back(Event::Closed { session: self.id, reason: CloseReason::IdleTimeout });
                    }
                    self.phase = Phase::Done;
                }
                // A half-open responder state just expires (spec [HS-17]); counted.
                Phase::Challenged(_) => {
                    self.phase = Phase::Done;
                    self.abandoned = true;
                }
                _ => {}
            }
        }
        if due(Timer::Retransmit, self) {
            self.set_timer(Timer::Retransmit, None);
            if matches!(self.phase, Phase::Hello(_) | Phase::AwaitFinal(_)) || self.unconfirmed.is_some() {
                self.send_handshake = true;
                self.retransmit_backoff += 1;
            }
        }
        if due(Timer::Idle, self) {
            self.set_timer(Timer::Idle, None);
            if self.is_established() {
                if self.established_emitted {
                    ctx.events.push_back(Event::Closed { session: self.id, reason: CloseReason::IdleTimeout });
                }
                // Idle timeout closes silently (spec [LC-4]).
                self.phase = Phase::Done;
            }
        }
        if due(Timer::Keepalive, self) {
            self.set_timer(Timer::Keepalive, None);
            let in_flight = self.transport.as_ref().is_some_and(|t| t.loss.bytes_in_flight() > 0);
            if self.is_established() && in_flight {
                // Ack-eliciting packets are in flight: the PTO timer probes the path (spec
                // [LC-2]). A KEEP_ALIVE now would restart that timer, postponing the probe
                // that recovers from an outage by up to the whole backed-off period.
                self.arm_keepalive(now, ctx.config);
            } else if self.is_established() {
                self.send_keepalive = true;
                // Nothing was sent for a keepalive interval: give back what bursts grew.
                if let Some(t) = self.transport.as_mut() {
                    t.shrink_if_idle();
                }
                if let Some(p) = self.paths.as_mut() {
                    p.release_if_idle();
                }
                if let Some(r) = self.record.as_mut() {
                    r.idle_check();
                }
            }
        }
        if self.is_established() {
            let rtt = *self.rtt();
            if let (Some(rekey), Some(record)) = (self.rekey.as_mut(), self.record.as_mut()) {
                if rekey.deadline().is_some_and(|d| d <= now) {
                    rekey.handle_timeout(now, record, ctx.entropy, &self.dh, rekey_timers(ctx.config, &rtt));
                    self.rekey_ran = true;
                }
            }
            if let Some(t) = self.transport.as_mut() {
                let ptos = t.loss.pto_count();
                t.on_timeout(now, ctx.events);
                // Unconfirmed, a responder that lost AUTH_PROOF cannot open the probes:
                // AUTH_PROOF goes out again with each of them (spec [HS-22]).
                if self.unconfirmed.is_some() && t.loss.pto_count() > ptos {
                    self.send_handshake = true;
                }
            }
            let pto = self.rtt().pto();
            // A direct path the peer moved to (or a punched one) that never answered its
            // challenges: back to the relay (spec [PU-6]).
            if let Some(relay) = self.paths.as_mut().and_then(|p| p.on_timeout(now, pto)) {
                self.fell_back(now, ctx, relay);
            }
            let initiator = self.role == Role::Initiator;
            if let Some(p) = self.punch.as_mut() {
                p.on_timeout(now, initiator);
            }
            // A direct path that stopped answering: back to the relay (spec [PU-6]).
            let ptos = self.transport.as_ref().map_or(0, |t| t.loss.pto_count());
            if ptos >= FALLBACK_PTOS && !self.remote.relayed() {
                if let Some(relay) = self.paths.as_mut().and_then(Paths::fall_back) {
                    self.fell_back(now, ctx, relay);
                }
            }
        }
        if due(Timer::Close, self) {
            self.set_timer(Timer::Close, None);
            if matches!(self.phase, Phase::Closing { .. }) && self.close_frame.is_some() && self.may_send_to_remote() {
                // The closing period ran out before the driver polled for output: the
                // SESSION_CLOSE was never sent. Send it first; end one PTO later (spec [LC-5]).
                let until = now.saturating_add(self.rtt().pto());
                self.phase = Phase::Closing { until, resends: 0 };
                self.set_timer(Timer::Close, Some(until));
            } else if matches!(self.phase, Phase::Closing { .. } | Phase::Draining) {
                self.phase = Phase::Done;
            }
        }
    }

    // ----- input -----

    /// A protected packet for this session. `header` is the record header, `body` the rest.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_protected(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        from: PathAddr,
        key_phase: bool,
        truncated_pn: u32,
        header: &[u8],
        body: &mut [u8],
    ) -> Result<(), DropReason> {
        if matches!(self.phase, Phase::Draining | Phase::Done) {
            return Err(DropReason::UnexpectedState);
        }
        // A session that was never relayed (a relay session among them) never moves onto a
        // relayed path: no relaying through relays, no loops (spec [RY-1]).
        if from.relayed() && !self.ever_relayed() {
            return Err(DropReason::UnexpectedState);
        }
        let pto = self.rtt().pto();
        let Some(record) = self.record.as_mut() else {
            return Err(DropReason::UnexpectedState);
        };
        let (pn, len) = match record.open(now, pto, key_phase, truncated_pn, header, body) {
            Ok(v) => v,
            Err(OpenError::Malformed) => return Err(DropReason::Malformed),
            Err(OpenError::Replay) => {
                self.stats.replays += 1;
                return Err(DropReason::Replay);
            }
            Err(OpenError::Auth) => {
                self.stats.auth_failures += 1;
                if record.integrity_exceeded() {
                    self.close(now, ctx, CloseKind::Transport, TransportCode::AeadLimit.to_u64());
                }
                return Err(DropReason::AuthFailed);
            }
        };
        self.stats.packets_in += 1;
        self.stats.bytes_in += (header.len() + body.len()) as u64;
        if let Some(p) = self.punch.as_deref_mut().filter(|_| from.relayed()) {
            // Punching probes are paid for by what the peer sent through the relay (what
            // came straight from an address is credit for that address only, spec [PU-3]).
            p.bytes_in += (header.len() + body.len()) as u64;
        }
        let plain = &body[..len];

        // Pass 1: validate every frame so a packet is applied all or nothing.
        let mut r = Reader::new(plain);
        let mut remote_close = None;
        let mut eliciting = false;
        let mut probing_only = true;
        while !r.is_empty() {
            let frame = Frame::decode(&mut r);
            eliciting |= !matches!(frame, Some(Frame::Ack(_) | Frame::Padding | Frame::SessionClose { .. }));
            probing_only &= matches!(frame, Some(Frame::PathChallenge(_) | Frame::PathResponse(_) | Frame::Padding));
            match frame {
                Some(Frame::SessionClose { kind, code, reason }) => remote_close = Some((kind, code, reason)),
                Some(Frame::Datagram(d)) if d.len() > ctx.config.max_datagram_frame => {
                    self.close(now, ctx, CloseKind::Transport, TransportCode::ProtocolViolation.to_u64());
                    return Ok(());
                }
                // Relay frames on a session that has no relay role, or over a relayed
                // path (no relaying through relays), are violations (spec [RY-6]).
                Some(Frame::RelayData { .. } | Frame::RelayStatus { .. })
                    if self.relay.is_none() || self.remote.relayed() =>
                {
                    self.close(now, ctx, CloseKind::Transport, TransportCode::ProtocolViolation.to_u64());
                    return Ok(());
                }
                Some(_) => {}
                None => {
                    self.close(now, ctx, CloseKind::Transport, TransportCode::FrameEncoding.to_u64());
                    return Ok(());
                }
            }
        }

        if let Some((_, _, reason)) = remote_close.filter(|(_, _, r)| !r.is_empty()) {
            if !self.close_text_from_peer {
                self.close_text = Some(reason.into());
                self.close_text_from_peer = true;
            }
        }
        match &self.phase {
            Phase::Closing { until, resends } => {
                let (until, resends) = (*until, *resends);
                if remote_close.is_some() {
                    self.phase = Phase::Draining;
                    self.close_frame = None;
                } else if resends > 0 {
                    // Repeat the close for a peer that missed it (spec [LC-6]).
                    self.phase = Phase::Closing { until, resends: resends - 1 };
                    if self.close_frame.is_none() {
                        self.close_frame = self.last_close;
                    }
                }
                return Ok(());
            }
            Phase::AwaitFinal(st) => {
                if let Some((_, code, _)) = remote_close {
                    self.fail_handshake(ctx, HandshakeFailure::Refused(TransportCode::from_u64(code)));
                    return Ok(());
                }
                let mut rtt = st.rtt;
                if let (Some(sent), false) = (st.first_sent, st.retransmitted) {
                    rtt.update(now.saturating_duration_since(sent));
                }
                self.become_established(now, ctx.config, rtt);
            }
            Phase::Established => self.confirm(),
            _ => return Err(DropReason::UnexpectedState),
        }

        // Any authenticated packet proves the peer alive.
        self.set_timer(Timer::Idle, Some(now.saturating_add(self.idle_timeout)));

        if let Some((kind, code, _)) = remote_close {
            // The closing packet's acknowledgements still count: data the peer received
            // before it closed is reported delivered before the close (spec [LC-12]).
            if let Some(t) = self.transport.as_mut() {
                let mut r = Reader::new(plain);
                while let Some(frame) = Frame::decode(&mut r) {
                    if matches!(frame, Frame::Ack(_)) {
                        let _ = t.handle_frame(now, &frame, ctx.config, ctx.events);
                    }
                }
            }
            if self.established_emitted {
                let reason = match kind {
                    CloseKind::Application => CloseReason::Remote(code),
                    CloseKind::Transport => CloseReason::RemoteTransport(TransportCode::from_u64(code)),
                };
                ctx.events.push_back(Event::Closed { session: self.id, reason });
            }
            let until = now.saturating_add(self.rtt().pto() * 3);
            self.phase = Phase::Draining;
            for t in [Timer::Retransmit, Timer::Handshake, Timer::Idle, Timer::Keepalive] {
                self.set_timer(t, None);
            }
            self.set_timer(Timer::Close, Some(until));
            return Ok(());
        }

        // Pass 2: apply.
        if let Some(t) = self.transport.as_mut() {
            t.on_packet_received(now, pn, eliciting);
        }
        let highest = self.record.as_ref().and_then(Record::largest_received) == Some(pn) && !probing_only;
        let mut mtu_reset = false;
        // A packet through the relayed fallback moves the session off a direct path only
        // once that path has been silent for a whole probe timeout, acknowledgement delay
        // included (spec [PU-8]).
        let limits = MoveLimits { interval: self.rtt().smoothed(), quiet: self.rtt().pto() + MAX_ACK_DELAY };
        if let Some(p) = self.paths.as_mut() {
            let entropy = &mut *ctx.entropy;
            let moved = p.on_packet(now, from, header.len() + body.len(), highest, limits, || {
                let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
                entropy.fill(EntropyPurpose::PathChallenge, &mut a);
                entropy.fill(EntropyPurpose::PathChallenge, &mut b);
                (a, b)
            });
            if moved == Moved::Started {
                mtu_reset |= self.remote.relayed() != p.remote.relayed();
                self.remote = p.remote;
            }
        }
        let initiator = self.role == Role::Initiator;
        let rtt = *self.rtt();
        let mut r = Reader::new(plain);
        while let Some(frame) = Frame::decode(&mut r) {
            match frame {
                Frame::Rehandshake { seq, message, noise } => {
                    if let (Some(rekey), Some(record)) = (self.rekey.as_mut(), self.record.as_mut()) {
                        let timers = rekey_timers(ctx.config, &rtt);
                        self.rekey_ran = true;
                        // A prompt packet in the new phase lets the peer follow (and confirms the update).
                        self.send_keepalive |= rekey.handle_frame(
                            now,
                            initiator,
                            seq,
                            message,
                            noise,
                            record,
                            ctx.entropy,
                            &self.dh,
                            timers,
                        );
                    }
                }
                Frame::Final | Frame::KeepAlive | Frame::Padding | Frame::SessionClose { .. } => {}
                Frame::PathChallenge(data) => {
                    if let Some(p) = self.paths.as_mut() {
                        p.owe_response(from, data);
                    }
                }
                Frame::PathResponse(data) if self.punch.as_ref().is_some_and(|p| p.answers(&data).is_some()) => {
                    if let Some(target) = self.punch.as_ref().and_then(|p| p.answers(&data)) {
                        self.on_punched(now, ctx, from, target, header.len() + body.len());
                    }
                }
                Frame::RelayRegister => self.on_relay_register(now, ctx),
                Frame::RelayStatus { status, observed } => {
                    if let Some(RelayLink::Relay { status: st, register_due }) = self.relay.as_deref_mut() {
                        *register_due = false;
                        let new = if status == 0 { RelayStatus::Registered { observed } } else { RelayStatus::Refused };
                        if *st != new {
                            *st = new;
                            ctx.events.push_back(Event::RelayStatus { session: self.id, status: new });
                        }
                    }
                }
                Frame::RelayData { peer, data } => {
                    let forwards = match self.relay.as_deref() {
                        Some(RelayLink::Member { registered, .. }) => *registered,
                        Some(RelayLink::Relay { status, .. }) => matches!(status, RelayStatus::Registered { .. }),
                        None => false,
                    };
                    let queued = forwards
                        && self.transport.as_mut().is_some_and(|t| {
                            t.relay_in.has_room(32 + data.len()) && {
                                t.relay_in.push_parts(&peer, data.iter().copied());
                                true
                            }
                        });
                    if !queued {
                        self.relay_counters.dropped += 1;
                    }
                }
                Frame::Candidates { round, addrs } => {
                    self.on_candidates(now, ctx, round, addrs, header.len() + body.len());
                }
                Frame::PathResponse(data) => {
                    if let Some(p) = self.paths.as_mut() {
                        match p.on_response(now, data) {
                            Validation::NewPath(addr) => {
                                let kind_changed = self.remote.relayed() != addr.relayed();
                                self.remote = addr;
                                if kind_changed {
                                    mtu_reset = true;
                                }
                                // A member's address changed: report it (spec [RY-2]).
                                if let Some(RelayLink::Member { status_due, .. }) = self.relay.as_deref_mut() {
                                    *status_due = true;
                                }
                                ctx.events.push_back(Event::PathChanged { session: self.id, remote: addr });
                            }
                            Validation::Restored(addr) => {
                                // Back from a relayed to a direct path (or the reverse):
                                // the datagram size and congestion state restart (spec [PU-7]).
                                mtu_reset |= self.remote.relayed() != addr.relayed();
                                self.remote = addr;
                            }
                            Validation::Unknown => {}
                        }
                    }
                }
                ref f => {
                    if matches!(f, Frame::Datagram(_) | Frame::Stream { .. }) {
                        self.last_app_activity = Some(now);
                    }
                    let Some(t) = self.transport.as_mut() else { continue };
                    if let Err(code) = t.handle_frame(now, f, ctx.config, ctx.events) {
                        self.close(now, ctx, CloseKind::Transport, code.to_u64());
                        return Ok(());
                    }
                }
            }
        }
        if let (Some(rekey), Some(record)) = (self.rekey.as_mut(), self.record.as_ref()) {
            self.send_keepalive |= rekey.check_switched(record);
        }
        if mtu_reset {
            self.path_kind_changed(now, ctx.config);
        }
        Ok(())
    }

    /// Initiator in AwaitFinal / responder established: a re-sent AUTH_PROOF gets one FINAL.
    pub(crate) fn handle_repeated_auth_proof(
        &mut self,
        digest: &[u8; 16],
        stats: &mut NodeStats,
    ) -> Result<(), DropReason> {
        if self.role == Role::Responder && self.is_established() && *digest == self.auth_digest {
            if let Some(t) = self.transport.as_mut() {
                t.send_final = true;
            }
            stats.finals_resent += 1;
            Ok(())
        } else {
            Err(DropReason::Replay)
        }
    }

    // ----- output -----

    /// Writes the next datagram this session wants to send into `buf`.
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        buf: &mut [u8],
    ) -> Option<(PathAddr, usize)> {
        let retransmit = self.retransmit_delay(ctx.config);
        let bytes: Option<&[u8]> = match &mut self.phase {
            Phase::Hello(h) if self.send_handshake => {
                if h.first_sent.is_some() {
                    h.retransmitted = true;
                } else {
                    h.first_sent = Some(now);
                }
                Some(&h.hello)
            }
            Phase::AwaitFinal(a) if self.send_handshake => {
                if a.first_sent.is_some() {
                    a.retransmitted = true;
                } else {
                    a.first_sent = Some(now);
                }
                Some(&a.auth)
            }
            Phase::Challenged(c) if self.send_handshake => {
                c.sent_at.get_or_insert(now);
                Some(&c.challenge)
            }
            Phase::Established if self.send_handshake => self.unconfirmed.as_mut().map(|a| {
                if a.first_sent.is_some() {
                    a.retransmitted = true;
                } else {
                    a.first_sent = Some(now);
                }
                &a.auth[..]
            }),
            Phase::Established | Phase::Closing { .. } => None,
            _ => return None,
        };
        if let Some(bytes) = bytes {
            let n = bytes.len();
            let dst = buf.get_mut(..n)?;
            dst.copy_from_slice(bytes);
            self.send_handshake = false;
            if self.role == Role::Initiator {
                self.set_timer(Timer::Retransmit, Some(now.saturating_add(retransmit)));
            }
            self.stats.packets_out += 1;
            self.stats.bytes_out += n as u64;
            return Some((self.remote, n));
        }
        self.build_protected(now, ctx, buf)
    }

    fn max_datagram_len(&self, config: &Config) -> usize {
        let peer = usize::try_from(self.peer_max_udp_payload).unwrap_or(usize::MAX);
        config.max_udp_payload.min(peer)
    }

    fn build_protected(&mut self, now: Instant, ctx: &mut Ctx<'_>, buf: &mut [u8]) -> Option<(PathAddr, usize)> {
        if self.is_established() && self.punch.as_ref().is_some_and(|p| p.pending != 0 && p.may_probe()) {
            if let Some(sent) = self.build_punch_probe(now, ctx, buf) {
                return Some(sent);
            }
        }
        if self.is_established() && self.paths.as_ref().is_some_and(Paths::has_pending) {
            if let Some(sent) = self.build_path_packet(now, ctx, buf) {
                return Some(sent);
            }
        }
        let budget = self.paths.as_ref().map_or(u64::MAX, Paths::budget);
        if budget < REMOTE_MIN_BUDGET {
            // Unvalidated path: the 3× limit is spent until the peer answers (spec [MG-3]).
            return None;
        }
        if self.is_established() && self.close_frame.is_none() && self.path_validated() {
            if let Some(size) = self.transport.as_ref().and_then(|t| t.mtu_probe_due(now)) {
                if let Some(sent) = self.build_mtu_probe(now, ctx, buf, size) {
                    return Some(sent);
                }
            }
        }
        let mut mtu = self.transport.as_ref().map_or(INITIAL_MTU as usize, |t| t.mtu as usize);
        // A forwarded datagram may need more than the path's probed size: a relayed HELLO
        // is 1200 bytes plus framing (spec [RY-3]).
        if let Some(front) = self.transport.as_ref().and_then(|t| t.relay_out.front_len()) {
            mtu = mtu.max(front + crate::wire::frame::RELAY_DATA_OVERHEAD + Record::OVERHEAD);
        }
        let limit = self
            .max_datagram_len(ctx.config)
            .min(buf.len())
            .min(mtu)
            .min(usize::try_from(budget).unwrap_or(usize::MAX));
        let room = limit.checked_sub(Record::OVERHEAD)?;
        let mut w = Writer::new(&mut buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + room]);
        let mut eliciting = false;
        let mut log = FrameLog::new();
        let closing = matches!(self.phase, Phase::Closing { .. });
        if let Some((kind, code)) = self.close_frame.take() {
            let reason = self.close_text.as_deref().filter(|_| !self.close_text_from_peer).unwrap_or(&[]);
            Frame::SessionClose { kind, code, reason }.encode(&mut w)?;
            self.last_close = Some((kind, code));
            if let Some(t) = self.transport.as_mut() {
                t.write_close_ack(now, &mut w);
            }
        }
        if !closing {
            let rtt = *self.rtt();
            if let Some(rekey) = self.rekey.as_mut().filter(|r| r.send) {
                if let Some((seq, message, noise)) = rekey.outgoing() {
                    Frame::Rehandshake { seq, message, noise }.encode(&mut w)?;
                    eliciting = true;
                }
                rekey.sent(now, rekey_timers(ctx.config, &rtt));
            }
            let (control, candidates) = self.write_control(&mut w, &mut log);
            eliciting |= control;
            if let Some(t) = self.transport.as_mut() {
                eliciting |= t.write_frames(now, &mut w, &mut log, self.send_keepalive, ctx.events);
            }
            self.send_keepalive = false;
            if let Some(p) = self.punch.as_deref().filter(|_| candidates) {
                // CANDIDATES travel in a padded packet so that the peer's probes are paid for
                // (spec [PU-3]).
                let pad = p.pad_to.saturating_sub(Record::OVERHEAD).saturating_sub(w.len()).min(w.remaining());
                w.zeros(pad)?;
            }
        }
        if w.len() == 0 {
            return None;
        }
        let payload_len = w.len();
        match self.seal_next(now, ctx.config, buf, payload_len) {
            Ok((pn, n)) => {
                if !eliciting {
                    self.stats.non_eliciting_packets += 1;
                }
                if let Some(t) = self.transport.as_mut() {
                    t.on_sent(now, pn, n, eliciting, false, log);
                }
                if let Some(p) = self.paths.as_mut() {
                    p.on_sent(self.remote, n);
                }
                if eliciting && self.is_established() {
                    self.arm_keepalive(now, ctx.config);
                }
                Some((self.remote, n))
            }
            Err(SealError::AeadLimit) => {
                // Cannot protect anything more: end the session without a packet.
                if self.established_emitted {
                    ctx.events.push_back(Event::Closed {
                        session: self.id,
                        reason: CloseReason::LocalTransport(TransportCode::AeadLimit),
                    });
                }
                self.phase = Phase::Done;
                None
            }
            Err(SealError::Buffer) => None,
        }
    }

    /// Seals `buf[header..header + payload_len]` as the next protected packet and counts
    /// it; returns its packet number and datagram length.
    fn seal_next(
        &mut self,
        now: Instant,
        config: &Config,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<(u64, usize), SealError> {
        let policy = KeyUpdatePolicy {
            packets: config.key_update_packets,
            interval: config.key_update_interval,
            paused: self.rekey.as_ref().is_some_and(Rekey::pauses_updates),
        };
        let record = self.record.as_mut().ok_or(SealError::Buffer)?;
        let pn = record.next_pn();
        let n = record.seal(now, policy, self.remote_sid, buf, payload_len)?;
        self.stats.packets_out += 1;
        self.stats.bytes_out += n as u64;
        Ok((pn, n))
    }

    /// A packet of path-validation frames for one address, padded to 1200 bytes (or to
    /// what the anti-amplification budget allows for the current, unvalidated path).
    fn build_path_packet(&mut self, now: Instant, ctx: &mut Ctx<'_>, buf: &mut [u8]) -> Option<(PathAddr, usize)> {
        let paths = self.paths.as_mut()?;
        let probing = paths.probing.as_deref()?;
        // Pick a destination: a response owed elsewhere, the old path, then the current one.
        let dst = if let Some((addr, _)) =
            probing.responses.iter().find(|(a, _)| *a != paths.remote && paths.budget_to(*a) >= MIN_PATH_PACKET as u64)
        {
            *addr
        } else if let Some((c, _)) = probing.old.as_ref().filter(|(c, _)| c.send) {
            c.addr
        } else {
            paths.remote
        };
        // Every unvalidated address gets 3× what it sent, probe-only packets included (spec [MG-3]).
        let budget = paths.budget_to(dst);
        // Toward a relayed path, no padding: the relay session's size is what counts there,
        // and padding would only make the relay carry 1200 bytes per 47-byte challenge.
        let target = if dst.relayed() {
            let frames = probing.responses.iter().filter(|(a, _)| *a == dst).count()
                + usize::from(probing.old.is_some_and(|(c, _)| c.send && c.addr == dst))
                + usize::from(probing.current.is_some_and(|c| c.send && c.addr == dst));
            MIN_PATH_PACKET.max(Record::OVERHEAD + 9 * frames)
        } else {
            PATH_PROBE_SIZE
        };
        let size = target.min(buf.len()).min(usize::try_from(budget).unwrap_or(usize::MAX));
        if size < MIN_PATH_PACKET {
            return None;
        }
        let payload_len = size - Record::OVERHEAD;
        let mut w = Writer::new(&mut buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload_len]);
        let probing = paths.probing();
        for (addr, data) in probing.responses.iter() {
            if *addr == dst && w.remaining() >= 9 {
                Frame::PathResponse(*data).encode(&mut w)?;
            }
        }
        // Drop the responses just written.
        for _ in 0..probing.responses.len() {
            if let Some(r) = probing.responses.pop_front() {
                if r.0 != dst {
                    let _ = probing.responses.push_back(r);
                }
            }
        }
        if let Some((c, _)) = probing.old.as_mut().filter(|(c, _)| c.send && c.addr == dst) {
            Frame::PathChallenge(c.data).encode(&mut w)?;
            Paths::challenge_sent(c, now);
        }
        if let Some(c) = probing.current.as_mut().filter(|c| c.send && c.addr == dst) {
            Frame::PathChallenge(c.data).encode(&mut w)?;
            Paths::challenge_sent(c, now);
        }
        let used = w.len();
        w.zeros(payload_len - used)?;
        let (pn, n) = self.seal_next(now, ctx.config, buf, payload_len).ok()?;
        if let Some(p) = self.paths.as_mut() {
            p.on_sent(dst, n);
        }
        if let Some(t) = self.transport.as_mut() {
            // Path frames retransmit on their own timer: not in flight, no congestion signal.
            t.on_sent(now, pn, n, false, false, FrameLog::new());
        }
        Some((dst, n))
    }

    /// A path-MTU probe: KEEP_ALIVE and padding, exactly `size` bytes (spec [PM-2]).
    fn build_mtu_probe(
        &mut self,
        now: Instant,
        ctx: &mut Ctx<'_>,
        buf: &mut [u8],
        size: u64,
    ) -> Option<(PathAddr, usize)> {
        let size = usize::try_from(size).ok()?.min(buf.len());
        let payload_len = size.checked_sub(Record::OVERHEAD)?;
        let log = self.transport.as_mut()?.write_mtu_probe(
            &mut Writer::new(&mut buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload_len]),
            payload_len,
            size as u64,
        )?;
        let (pn, n) = self.seal_next(now, ctx.config, buf, payload_len).ok()?;
        self.transport.as_mut()?.on_sent(now, pn, n, true, true, log);
        Some((self.remote, n))
    }

    // ----- relays and hole punching (spec §12) -----

    /// Largest datagram of a relayed path this (relay) session can carry in one packet.
    pub(crate) fn relay_capacity(&self, config: &Config) -> usize {
        self.max_datagram_len(config).saturating_sub(Record::OVERHEAD + crate::wire::frame::RELAY_DATA_OVERHEAD)
    }

    /// Writes owed relay and punching control frames (logged, so a loss re-sends them).
    /// Returns whether it wrote any, and whether CANDIDATES among them.
    fn write_control(&mut self, w: &mut Writer<'_>, log: &mut FrameLog) -> (bool, bool) {
        if let Some(t) = self.transport.as_mut().filter(|t| t.control_lost) {
            t.control_lost = false;
            if let Some(r) = self.relay.as_deref_mut() {
                r.control_lost();
            }
            if let Some(p) = self.punch.as_deref_mut() {
                p.send_candidates = p.round > 0;
            }
        }
        if log.is_full() {
            return (false, false);
        }
        let mut wrote = false;
        let mut candidates = false;
        let observed = crate::wire::handshake::observed_of(self.remote);
        match self.relay.as_deref_mut() {
            Some(RelayLink::Relay { register_due, .. })
                if *register_due && Frame::RelayRegister.encode(w).is_some() =>
            {
                *register_due = false;
                wrote = true;
            }
            Some(RelayLink::Member { status_due, registered, .. }) if *status_due => {
                let f = Frame::RelayStatus { status: u8::from(!*registered), observed };
                if w.remaining() >= f.encoded_len() && f.encode(w).is_some() {
                    *status_due = false;
                    wrote = true;
                }
            }
            _ => {}
        }
        if let Some(p) = self.punch.as_deref_mut().filter(|p| p.send_candidates) {
            let mut addrs = [0u8; crate::wire::frame::MAX_CANDIDATES * 19];
            let n = p.encode_local(&mut addrs);
            let f = Frame::Candidates { round: p.round, addrs: &addrs[..n] };
            if w.remaining() >= f.encoded_len() && f.encode(w).is_some() {
                p.send_candidates = false;
                wrote = true;
                candidates = true;
            }
        }
        if wrote {
            let _ = log.push(crate::recovery::loss::SentFrame::Control);
        }
        (wrote, candidates)
    }

    /// RELAY_REGISTER from the peer: the node decides (member list, capacity) and this
    /// session answers with RELAY_STATUS. A member refused before asks afresh: a relay that
    /// was full may have room now (spec [RY-1] [RY-5]).
    fn on_relay_register(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        match self.relay.as_deref_mut() {
            Some(RelayLink::Member { registered: true, status_due, .. }) => *status_due = true,
            Some(RelayLink::Relay { .. }) => {}
            None | Some(RelayLink::Member { registered: false, .. }) => {
                let link = match ctx.config.relay.as_ref() {
                    // Undecided until the node looks at it (`asked`).
                    Some(rc) if !self.ever_relayed() => RelayLink::new_member(rc, now),
                    _ => RelayLink::Member {
                        registered: false,
                        asked: false,
                        status_due: true,
                        bucket: crate::cookie::TokenBucket::new(1, 1, now),
                    },
                };
                self.relay.set(Box::new(link));
            }
        }
    }

    /// CANDIDATES from the peer, in a packet of `len` bytes: probe them (spec [PU-2],
    /// [PU-3]); the responder echoes its own in a packet no larger than the peer's.
    fn on_candidates(&mut self, now: Instant, ctx: &mut Ctx<'_>, round: u64, addrs: &[u8], len: usize) {
        if ctx.config.keep_relay_path {
            return;
        }
        let initiator = self.role == Role::Initiator;
        let Some(p) = self.punch.as_deref_mut() else { return };
        if round <= p.round_seen || p.direct {
            return;
        }
        let entropy = &mut *ctx.entropy;
        let started = p.start_round(now, crate::wire::frame::candidate_addrs(addrs), || {
            let mut d = [0u8; 8];
            entropy.fill(EntropyPurpose::PathChallenge, &mut d);
            d
        });
        if !started {
            return;
        }
        p.round_seen = round;
        if !initiator && round > p.round {
            p.round = round;
            p.send_candidates = true;
            p.pad_to = len.min(INITIAL_MTU as usize);
        }
    }

    /// The probe to `target` was answered by a packet of `len` bytes from `from`: move onto
    /// the direct path (spec [PU-5]). Only an answer from the probed address itself proves
    /// that address reachable; one from elsewhere (a peer-reflexive address, or a source
    /// spoofed by the peer) makes an unvalidated path, challenged and held to 3× what came
    /// from it (spec [MG-3]), and `PathChanged` waits for its validation.
    fn on_punched(&mut self, now: Instant, ctx: &mut Ctx<'_>, from: PathAddr, target: SocketAddr, len: usize) {
        let Some(p) = self.punch.as_deref_mut() else { return };
        if from.relayed() || p.direct {
            return;
        }
        p.direct = true;
        p.pending = 0;
        p.next_burst = None;
        p.retry_at = None;
        let relay = p.relay_path;
        let validated = from == PathAddr::Udp(target);
        let challenge = (!validated).then(|| {
            let mut d = [0u8; 8];
            ctx.entropy.fill(EntropyPurpose::PathChallenge, &mut d);
            d
        });
        if let Some(paths) = self.paths.as_mut() {
            paths.punched(now, from, relay, len, challenge);
        }
        self.remote = from;
        self.path_kind_changed(now, ctx.config);
        self.relay_counters.direct += 1;
        if validated {
            ctx.events.push_back(Event::PathChanged { session: self.id, remote: from });
        }
    }

    /// This node's session `via` with a relay stopped carrying (spec [RY-7]). A session whose path
    /// runs through it ends now (`RelayLost`; during the handshake `HandshakeFailure::
    /// RelayLost`), silently: nothing could carry a SESSION_CLOSE. A direct session only
    /// loses it as its fallback. Returns whether anything changed.
    pub(crate) fn relay_link_ended(&mut self, via: SessionId, ctx: &mut Ctx<'_>) -> bool {
        if self.id == via {
            return false;
        }
        let through = |a: PathAddr| matches!(a, PathAddr::Relay(r) if r.via == via);
        let mut changed = false;
        if let Some(p) = self.paths.as_mut().filter(|p| p.fallback.is_some_and(through)) {
            p.fallback = None;
            changed = true;
        }
        if !through(self.remote) || matches!(self.phase, Phase::Done) {
            return changed;
        }
        if !self.established_emitted {
            // Still in its handshake (an initiator is told why).
            self.fail_handshake(ctx, HandshakeFailure::RelayLost);
        } else if matches!(self.phase, Phase::Established) {
            ctx.events.push_back(Event::Closed { session: self.id, reason: CloseReason::RelayLost });
        }
        // Closing or draining: its close could not get out anyway.
        self.phase = Phase::Done;
        true
    }

    /// The session returned to its relayed fallback path (spec [PU-6]): punching may run
    /// again (the initiator retries later).
    fn fell_back(&mut self, now: Instant, ctx: &mut Ctx<'_>, relay: PathAddr) {
        self.remote = relay;
        self.path_kind_changed(now, ctx.config);
        self.relay_counters.fallbacks += 1;
        let initiator = self.role == Role::Initiator;
        if let Some(p) = self.punch.as_mut() {
            p.direct = false;
            if initiator {
                p.retry_at = Some(now.saturating_add(crate::relay::PUNCH_RETRY));
            }
        }
        ctx.events.push_back(Event::PathChanged { session: self.id, remote: relay });
    }

    /// One punching probe: a PATH_CHALLENGE, unpadded, to the next target (spec [PU-3]).
    fn build_punch_probe(&mut self, now: Instant, ctx: &mut Ctx<'_>, buf: &mut [u8]) -> Option<(PathAddr, usize)> {
        let (i, addr, data) = self.punch.as_ref()?.next_probe()?;
        if let Some(p) = self.punch.as_deref_mut() {
            p.pending &= !(1u8 << i);
        }
        let payload_len = MIN_PATH_PACKET - Record::OVERHEAD;
        let end = RECORD_HEADER_LEN + payload_len;
        let mut w = Writer::new(buf.get_mut(RECORD_HEADER_LEN..end)?);
        Frame::PathChallenge(data).encode(&mut w)?;
        let used = w.len();
        w.zeros(payload_len - used)?;
        let (pn, n) = self.seal_next(now, ctx.config, buf, payload_len).ok()?;
        if let Some(t) = self.transport.as_mut() {
            t.on_sent(now, pn, n, false, false, FrameLog::new());
        }
        if let Some(p) = self.punch.as_deref_mut() {
            p.probe_bytes += n as u64;
        }
        self.relay_counters.probes += 1;
        Some((PathAddr::Udp(addr), n))
    }

    // ----- application commands -----

    /// Largest datagram payload that can be sent now.
    pub(crate) fn max_datagram(&self, config: &Config) -> usize {
        let peer_max = usize::try_from(self.peer_max_datagram_frame).unwrap_or(usize::MAX);
        // One packet: overhead, frame type and a 2-byte length.
        let mtu = self.transport.as_ref().map_or(INITIAL_MTU as usize, |t| t.mtu as usize);
        let fits = self.max_datagram_len(config).min(mtu).saturating_sub(Record::OVERHEAD + 3);
        peer_max.min(fits)
    }

    pub(crate) fn send_datagram(
        &mut self,
        now: Instant,
        config: &Config,
        data: &[u8],
        drop_oldest: bool,
    ) -> Result<(), DatagramError> {
        if !self.is_established() {
            return Err(DatagramError::NotEstablished);
        }
        if self.peer_max_datagram_frame == 0 {
            return Err(DatagramError::Disabled);
        }
        let max = self.max_datagram(config);
        if data.len() > max {
            return Err(DatagramError::TooLarge { max });
        }
        let t = self.transport.as_mut().ok_or(DatagramError::NotEstablished)?;
        if !t.dgram_send.push(data, drop_oldest) {
            return Err(DatagramError::Blocked);
        }
        self.last_app_activity = Some(now);
        Ok(())
    }

    pub(crate) fn note_app_activity(&mut self, now: Instant) {
        self.last_app_activity = Some(now);
    }

    pub(crate) fn export_keying_material(
        &self,
        label: &[u8],
        context: &[u8],
        out: &mut [u8],
    ) -> Result<(), ExportError> {
        if self.record.is_none() || !matches!(self.phase, Phase::Established | Phase::AwaitFinal(_)) {
            return Err(ExportError::NotEstablished);
        }
        if out.len() > 255 * 32 || label.len() > 255 {
            return Err(ExportError::TooLong);
        }
        let mut info = heapless::Vec::<u8, 300>::new();
        let _ = info.extend_from_slice(b"stt/1 export ");
        let _ = info.push(label.len() as u8);
        let _ = info.extend_from_slice(label);
        crate::crypto::kdf::expand_long(&self.exporter, &info, context, out);
        Ok(())
    }

    pub(crate) fn recv_datagram(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.transport.as_mut()?.dgram_recv.pop_into(buf)
    }
}
