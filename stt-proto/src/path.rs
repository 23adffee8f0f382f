//! Session continuity across address changes (spec §8.4, RFC 9000 §9): only the highest
//! packet number can move the path; the new address is validated with padded
//! PATH_CHALLENGE / PATH_RESPONSE under a 3× anti-amplification limit, the old path is
//! probed and restored if it answers, and moves are rate-limited.

use alloc::boxed::Box;
use core::time::Duration;

use crate::addr::PathAddr;
use crate::time::Instant;

/// Padded size of packets carrying path validation frames.
pub(crate) const PATH_PROBE_SIZE: usize = 1200;
/// Smallest packet carrying path frames (header, two frames, tag).
pub(crate) const MIN_PATH_PACKET: usize = 13 + 18 + 16;
/// Challenges sent per path before giving up on it.
const MAX_CHALLENGES: u8 = 3;
/// Addresses other than the current and the old path tracked for anti-amplification
/// credit; the oldest is forgotten (its credit lost) when a new one arrives.
const CREDITED_ADDRESSES: usize = 4;

/// Bytes received from and sent to an address that is not the current path (spec [MG-3]).
#[derive(Clone, Copy, Debug)]
struct Credit {
    addr: PathAddr,
    bytes_in: u64,
    bytes_out: u64,
}

/// One outstanding PATH_CHALLENGE.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Challenge {
    pub(crate) addr: PathAddr,
    pub(crate) data: [u8; 8],
    pub(crate) send: bool,
    sent_at: Option<Instant>,
    tries: u8,
}

impl Challenge {
    fn new(addr: PathAddr, data: [u8; 8]) -> Self {
        Self { addr, data, send: true, sent_at: None, tries: 0 }
    }
}

/// Validation and anti-amplification state that exists only while paths are probed or
/// other addresses were heard from (boxed: most sessions never need it).
#[derive(Debug, Default)]
pub(crate) struct Probing {
    /// Validating the current remote after a move.
    pub(crate) current: Option<Challenge>,
    /// Probing the previous remote (restored if it answers).
    pub(crate) old: Option<(Challenge, bool)>,
    /// PATH_RESPONSEs owed: (address, data). One slot per path is enough.
    pub(crate) responses: heapless::Deque<(PathAddr, [u8; 8]), 4>,
    /// Anti-amplification credit of other unvalidated addresses, oldest first.
    others: heapless::Vec<Credit, CREDITED_ADDRESSES>,
}

/// The session's view of where its peer is.
#[derive(Debug)]
pub(crate) struct Paths {
    pub(crate) remote: PathAddr,
    validated: bool,
    /// The last validated address: a validated move back to it is a restore, not a change
    /// (a spoofed copy moved the session away and the peer's next packets brought it back).
    anchor: PathAddr,
    /// Bytes received from / sent to `remote` since it became current (anti-amplification).
    bytes_in: u64,
    bytes_out: u64,
    /// Challenges, owed responses and other addresses' credit; `None` when there are none.
    pub(crate) probing: Option<Box<Probing>>,
    last_move: Option<Instant>,
    /// When `remote` last sent something that could move a session (the highest packet
    /// number, not path frames alone), or answered a challenge that restored it (spec [PU-8]).
    heard_at: Option<Instant>,
    /// Moves ignored by the rate limit, or held back on the direct path (spec [PU-8]).
    pub(crate) moves_ignored: u64,
    /// The relayed path a direct path replaced (spec [PU-5], [PU-6]): never probed as an
    /// "old path" (it always answers), but returned to when the direct path fails.
    pub(crate) fallback: Option<PathAddr>,
}

/// What a PATH_RESPONSE did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Validation {
    /// Not a response to an outstanding challenge.
    Unknown,
    /// The new path is validated.
    NewPath(PathAddr),
    /// The old path answered: it is current again.
    Restored(PathAddr),
}

/// How often a session may move (spec [MG-1], [PU-8]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MoveLimits {
    /// At most one move per this interval (the smoothed RTT).
    pub(crate) interval: Duration,
    /// A direct path silent for this long (a PTO with the maximum acknowledgement delay)
    /// lets a packet through the relayed fallback move the session back.
    pub(crate) quiet: Duration,
}

/// What a received packet did to the path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Moved {
    No,
    /// The peer moved; validation started (the caller draws the challenge data).
    Started,
}

impl Paths {
    pub(crate) fn new(remote: PathAddr) -> Self {
        Self {
            remote,
            validated: true,
            anchor: remote,
            bytes_in: 0,
            bytes_out: 0,
            probing: None,
            last_move: None,
            heard_at: None,
            moves_ignored: 0,
            fallback: None,
        }
    }

    /// The probing state, created when first needed.
    pub(crate) fn probing(&mut self) -> &mut Probing {
        self.probing.get_or_insert_with(Box::default)
    }

    /// Frees the probing state when nothing is being validated or owed (the session is
    /// idle): forgotten credit of other addresses only lowers what may be sent to them.
    pub(crate) fn release_if_idle(&mut self) {
        if self.probing.as_ref().is_some_and(|p| p.current.is_none() && p.old.is_none() && p.responses.is_empty()) {
            self.probing = None;
        }
    }

    /// A PATH_CHALLENGE arrived from `from`: its response is owed (the oldest owed is
    /// forgotten when four are).
    pub(crate) fn owe_response(&mut self, from: PathAddr, data: [u8; 8]) {
        let r = &mut self.probing().responses;
        if r.is_full() {
            r.pop_front();
        }
        let _ = r.push_back((from, data));
    }

    /// An authenticated packet of `len` bytes arrived from `from`; `highest` says whether
    /// it carried the highest packet number so far (spec [MG-1]), within `limits`.
    pub(crate) fn on_packet(
        &mut self,
        now: Instant,
        from: PathAddr,
        len: usize,
        highest: bool,
        limits: MoveLimits,
        challenge: impl FnOnce() -> ([u8; 8], [u8; 8]),
    ) -> Moved {
        if from == self.remote {
            self.bytes_in += len as u64;
            // Only what could move a session shows the path alive: a packet held back
            // and released later, or path frames alone, do not (spec [PU-8]).
            if highest {
                self.heard_at = Some(now);
            }
            return Moved::No;
        }
        if self.late_through_fallback(now, from, limits.quiet) {
            // Sent through the relay before the peer saw the direct path (or queued at the
            // relay): the direct path is alive, so no move back (spec [PU-8]).
            self.moves_ignored += 1;
            return Moved::No;
        }
        self.credit(from, len);
        if !highest {
            return Moved::No;
        }
        if self.last_move.is_some_and(|t| now.saturating_duration_since(t) < limits.interval) {
            self.moves_ignored += 1;
            return Moved::No;
        }
        let (new_data, old_data) = challenge();
        let previous = self.remote;
        let validated = self.validated;
        let relay_to_direct = previous.relayed() && !from.relayed();
        if relay_to_direct {
            // The peer found a direct path (spec [PU-5]): the relay stays as the fallback.
            self.fallback = Some(previous);
        }
        let p = self.probing();
        // Probe the old path only if it was a validated one.
        p.old = (!relay_to_direct && validated).then(|| (Challenge::new(previous, old_data), true));
        p.current = Some(Challenge::new(from, new_data));
        p.others.retain(|c| c.addr != from);
        self.remote = from;
        self.validated = false;
        self.bytes_in = len as u64;
        self.bytes_out = 0;
        self.last_move = Some(now);
        self.heard_at = Some(now);
        Moved::Started
    }

    /// Whether a packet from `from` is one through the relayed fallback while the current
    /// direct path was heard from within `quiet` (spec [PU-8]): such packets do not move
    /// the session. Once the direct path has been silent that long, the peer is taken to
    /// have gone back to the relay, and its next packet there moves the session by §8.4.
    fn late_through_fallback(&self, now: Instant, from: PathAddr, quiet: Duration) -> bool {
        from.relayed()
            && !self.remote.relayed()
            && self.fallback == Some(from)
            && self.heard_at.is_some_and(|t| now.saturating_duration_since(t) < quiet)
    }

    /// Counts `len` bytes received from `addr`, which is not the current path.
    fn credit(&mut self, addr: PathAddr, len: usize) {
        let others = &mut self.probing().others;
        if let Some(c) = others.iter_mut().find(|c| c.addr == addr) {
            c.bytes_in += len as u64;
            return;
        }
        if others.is_full() {
            others.remove(0);
        }
        let _ = others.push(Credit { addr, bytes_in: len as u64, bytes_out: 0 });
    }

    /// Bytes that may still be sent to `addr` (spec [MG-3]): unlimited for a validated
    /// path (the current one once validated, the old one being probed), else 3× what
    /// arrived from it minus what was sent; nothing to an address never heard from.
    pub(crate) fn budget_to(&self, addr: PathAddr) -> u64 {
        if addr == self.remote {
            return self.budget();
        }
        if self.fallback == Some(addr) {
            // The relayed path, validated when the session ran on it: what it owes (a
            // PATH_RESPONSE to a challenge that came through it) goes out (spec [PU-8]).
            return u64::MAX;
        }
        let Some(p) = self.probing.as_ref() else { return 0 };
        if p.old.is_some_and(|(c, _)| c.addr == addr) {
            return u64::MAX;
        }
        p.others.iter().find(|c| c.addr == addr).map_or(0, |c| (3 * c.bytes_in).saturating_sub(c.bytes_out))
    }

    /// A punching probe was answered from `addr`: it is the current path, the relayed path
    /// `relay` the fallback. With `challenge` (the answer came from another address than
    /// the probe went to: a peer-reflexive address, or a spoofed source) the path is not
    /// validated yet: it gets 3× the `len` bytes that came from it until the challenge is
    /// answered (spec [PU-5], [MG-3]).
    pub(crate) fn punched(
        &mut self,
        now: Instant,
        addr: PathAddr,
        relay: PathAddr,
        len: usize,
        challenge: Option<[u8; 8]>,
    ) {
        self.remote = addr;
        self.validated = challenge.is_none();
        if self.validated {
            self.anchor = addr;
        }
        self.bytes_in = if self.validated { 0 } else { len as u64 };
        self.bytes_out = 0;
        if challenge.is_some() || self.probing.is_some() {
            let p = self.probing();
            p.current = challenge.map(|d| Challenge::new(addr, d));
            p.old = None;
            p.others.retain(|c| c.addr != addr);
        }
        self.fallback = Some(relay);
        self.last_move = Some(now);
        self.heard_at = Some(now);
    }

    /// Returns to the relayed fallback path, if there is one and it is not current.
    pub(crate) fn fall_back(&mut self) -> Option<PathAddr> {
        let relay = self.fallback.filter(|f| cfg!(feature = "relay") && *f != self.remote)?;
        self.remote = relay;
        self.validated = true;
        self.anchor = relay;
        if let Some(p) = self.probing.as_mut() {
            p.current = None;
            p.old = None;
        }
        Some(relay)
    }

    /// A PATH_RESPONSE arrived at `now`.
    pub(crate) fn on_response(&mut self, now: Instant, data: [u8; 8]) -> Validation {
        let Some(p) = self.probing.as_mut() else { return Validation::Unknown };
        if p.current.is_some_and(|c| c.data == data) {
            p.current = None;
            self.validated = true;
            if self.remote == self.anchor {
                self.heard_at = Some(now);
                return Validation::Restored(self.remote);
            }
            self.anchor = self.remote;
            return Validation::NewPath(self.remote);
        }
        if let Some((c, _)) = p.old.filter(|(c, _)| c.data == data) {
            // The old path still works: the move was spurious (or spoofed). Go back.
            p.old = None;
            p.current = None;
            self.remote = c.addr;
            self.validated = true;
            self.anchor = c.addr;
            self.heard_at = Some(now);
            return Validation::Restored(c.addr);
        }
        Validation::Unknown
    }

    /// Bytes that may still be sent to the current remote before validation (3× rule).
    pub(crate) fn budget(&self) -> u64 {
        if self.validated {
            u64::MAX
        } else {
            (3 * self.bytes_in).saturating_sub(self.bytes_out)
        }
    }

    pub(crate) fn on_sent(&mut self, to: PathAddr, len: usize) {
        if to == self.remote {
            self.bytes_out += len as u64;
        } else if let Some(c) = self.probing.as_mut().and_then(|p| p.others.iter_mut().find(|c| c.addr == to)) {
            c.bytes_out += len as u64;
        }
    }

    /// A challenge went out.
    pub(crate) fn challenge_sent(c: &mut Challenge, now: Instant) {
        c.send = false;
        c.sent_at = Some(now);
        c.tries += 1;
    }

    /// Retransmits unanswered challenges every `pto`; gives up after three tries. Returns
    /// the relayed fallback path if an unanswered new direct path sent the session back to it.
    pub(crate) fn on_timeout(&mut self, now: Instant, pto: Duration) -> Option<PathAddr> {
        let p = self.probing.as_mut()?;
        for c in [p.current.as_mut(), p.old.as_mut().map(|(c, _)| c)].into_iter().flatten() {
            // The same arithmetic as `deadline` (whole microseconds), so a timer that fired
            // is always acted on.
            if c.sent_at.is_some_and(|t| t.saturating_add(pto) <= now) && !c.send {
                if c.tries >= MAX_CHALLENGES {
                    c.sent_at = None;
                } else {
                    c.send = true;
                }
            }
        }
        if p.old.is_some_and(|(c, _)| c.tries >= MAX_CHALLENGES && c.sent_at.is_none()) {
            p.old = None;
        }
        let mut reverted = None;
        if p.current.is_some_and(|c| c.tries >= MAX_CHALLENGES && c.sent_at.is_none()) {
            // The new path never answered: back to the relay if there is one, else keep it
            // anyway if the old one is gone too.
            p.current = None;
            if !self.validated {
                reverted = self.fall_back();
            }
        }
        reverted
    }

    /// The next challenge retransmission time.
    pub(crate) fn deadline(&self, pto: Duration) -> Option<Instant> {
        let p = self.probing.as_ref()?;
        [p.current.as_ref(), p.old.as_ref().map(|(c, _)| c)]
            .into_iter()
            .flatten()
            .filter(|c| !c.send)
            .filter_map(|c| c.sent_at.map(|t| t.saturating_add(pto)))
            .min()
    }

    /// Whether path frames wait to be sent and can be (the current, unvalidated path
    /// needs anti-amplification budget for a minimal packet).
    pub(crate) fn has_pending(&self) -> bool {
        let Some(p) = self.probing.as_ref() else { return false };
        let elsewhere =
            p.responses.iter().any(|(a, _)| *a != self.remote && self.budget_to(*a) >= MIN_PATH_PACKET as u64)
                || p.old.is_some_and(|(c, _)| c.send);
        let here = p.responses.iter().any(|(a, _)| *a == self.remote) || p.current.is_some_and(|c| c.send);
        elsewhere || (here && self.budget() >= MIN_PATH_PACKET as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_LIMITS: MoveLimits = MoveLimits { interval: Duration::ZERO, quiet: Duration::ZERO };

    fn addr(s: &str) -> PathAddr {
        PathAddr::Udp(s.parse().unwrap())
    }

    #[test]
    fn move_validate_and_restore() {
        let (a, b, c) = (addr("192.0.2.1:1"), addr("192.0.2.1:2"), addr("198.51.100.1:3"));
        let mut p = Paths::new(a);
        let t = Instant::ZERO;
        assert_eq!(p.on_packet(t, b, 100, false, NO_LIMITS, || ([1; 8], [2; 8])), Moved::No, "not the highest");
        assert_eq!(p.on_packet(t, b, 100, true, NO_LIMITS, || ([1; 8], [2; 8])), Moved::Started);
        assert_eq!(p.remote, b);
        assert_eq!(p.budget(), 300, "3× what arrived");
        p.on_sent(b, 250);
        assert_eq!(p.budget(), 50);
        assert_eq!(p.on_response(t, [9; 8]), Validation::Unknown);
        assert_eq!(p.on_response(t, [1; 8]), Validation::NewPath(b), "validated");
        assert_eq!(p.budget(), u64::MAX);
        // A spoofed move to c is undone when the old path (b) answers.
        assert_eq!(p.on_packet(t, c, 100, true, NO_LIMITS, || ([3; 8], [4; 8])), Moved::Started);
        assert_eq!(p.on_response(t, [4; 8]), Validation::Restored(b));
        assert_eq!(p.remote, b);
        // Rate limit.
        assert_eq!(
            p.on_packet(
                t,
                c,
                100,
                true,
                MoveLimits { interval: Duration::from_secs(1), quiet: Duration::ZERO },
                || ([5; 8], [6; 8])
            ),
            Moved::No
        );
        assert_eq!(p.moves_ignored, 1);
    }

    /// [PU-8]: after a punch, packets the peer sent through the relay before it saw the
    /// direct path (or that queued at the relay) arrive with the highest packet numbers;
    /// they do not move the session back while the direct path is heard from, and they do
    /// once it has been silent for `quiet` (the peer went back to the relay).
    #[test]
    fn late_relayed_packets_do_not_undo_a_punch() {
        use crate::addr::RelayAddr;
        use crate::event::SessionId;
        use crate::identity::NodeId;
        let relay = PathAddr::Relay(RelayAddr { via: SessionId { index: 1, generation: 0 }, peer: NodeId([7; 32]) });
        let direct = addr("198.51.100.7:9000");
        let mut p = Paths::new(relay);
        let t0 = Instant::ZERO;
        p.punched(t0, direct, relay, 47, None);
        assert_eq!(p.remote, direct);
        let quiet = Duration::from_millis(26);
        let limits = MoveLimits { interval: Duration::from_micros(300), quiet };
        // 5 ms after the punch, well past one smoothed RTT: late, the direct path alive.
        let t1 = t0.saturating_add(Duration::from_millis(5));
        assert_eq!(p.on_packet(t1, relay, 60, true, limits, || ([1; 8], [2; 8])), Moved::No);
        assert_eq!(p.remote, direct);
        assert_eq!(p.moves_ignored, 1);
        // The direct path keeps answering; a later relayed packet is still no reason.
        let t2 = t1.saturating_add(Duration::from_millis(20));
        assert_eq!(p.on_packet(t2, direct, 60, true, limits, || ([1; 8], [2; 8])), Moved::No);
        let t3 = t2.saturating_add(Duration::from_millis(20));
        assert_eq!(p.on_packet(t3, relay, 60, true, limits, || ([1; 8], [2; 8])), Moved::No);
        assert_eq!(p.remote, direct);
        // What the relay path owes (a PATH_RESPONSE) may go out: it was validated.
        assert_eq!(p.budget_to(relay), u64::MAX);
        // A direct packet held back by someone on the path and released later (not the
        // highest), or one with path frames alone, does not show the path alive.
        let held = t2.saturating_add(quiet / 2);
        assert_eq!(p.on_packet(held, direct, 60, false, limits, || ([1; 8], [2; 8])), Moved::No);
        // Silent for longer than `quiet`: the peer went back to the relay; follow it.
        let t4 = t2.saturating_add(quiet);
        assert_eq!(p.on_packet(t4, relay, 60, true, limits, || ([1; 8], [2; 8])), Moved::Started);
        assert_eq!(p.remote, relay);
    }
}
