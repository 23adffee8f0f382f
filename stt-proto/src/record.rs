//! The record layer of one session (spec §5): packet numbers, sealing and opening
//! in place, the replay window, key phases and AEAD limits.

use alloc::boxed::Box;
use core::time::Duration;

use crate::crypto::keys::DirectionKeys;
use crate::crypto::{AeadAlg, CryptoProvider, TAG_LEN};
use crate::replay::{ReplayVerdict, ReplayWindow};
use crate::time::Instant;
use crate::wire::codec::Writer;
use crate::wire::header::{decode_packet_number, Header, WireSessionId, RECORD_HEADER_LEN};

/// Why an incoming protected packet was not accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OpenError {
    Malformed,
    Replay,
    Auth,
}

/// Why a packet could not be sealed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SealError {
    /// The key's confidentiality limit is reached and no key update is possible yet.
    AeadLimit,
    /// The buffer is too small or the backend refused.
    Buffer,
}

/// When to start a key update.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyUpdatePolicy {
    pub(crate) packets: u64,
    pub(crate) interval: Duration,
    /// No update may start (a re-handshake is switching keys).
    pub(crate) paused: bool,
}

/// Keys and counters of an established (or confirming) session.
pub(crate) struct Record {
    alg: AeadAlg,
    provider: &'static dyn CryptoProvider,
    next_pn: u64,
    send_phase: bool,
    send: DirectionKeys,
    sealed_in_phase: u64,
    send_phase_started: Instant,
    update_unconfirmed: bool,
    recv_phase: bool,
    recv: DirectionKeys,
    recv_next: DirectionKeys,
    /// The previous phase's receive keys and when to drop them (boxed: held only for
    /// 3 PTO after a key update).
    recv_prev: Option<Box<(DirectionKeys, Instant)>>,
    recv_phase_start_pn: u64,
    /// Send secret installed by a re-handshake, used when following the peer's next update.
    pending_send: Option<Box<DirectionKeys>>,
    replay: ReplayWindow,
    failed_opens: u64,
    integrity_limit: u64,
    key_updates: u64,
    /// Packets sealed and opened since the last [`idle_check`](Self::idle_check)
    /// (saturating). From [`BUILD_AFTER`] on, the keys in use are built and kept.
    protected: u16,
}

/// Packets a session seals and opens in one keepalive interval before it builds and keeps
/// its key objects; below that each packet builds its key on the stack. A handshake with
/// path-MTU discovery takes about 40, an idle session's keepalive round 2 or 3; a bulk
/// flow passes 64 within its first milliseconds and then never builds a key again.
pub(crate) const BUILD_AFTER: u16 = 64;

impl Record {
    /// A record from the Noise split: `send_secret` and `recv_secret` are this side's
    /// directions (initiator: `(split.0, split.1)`; responder: swapped).
    pub(crate) fn new(
        provider: &'static dyn CryptoProvider,
        alg: AeadAlg,
        send_secret: [u8; 32],
        recv_secret: [u8; 32],
        integrity_limit: Option<u64>,
        now: Instant,
    ) -> Self {
        let recv = DirectionKeys::new(alg, recv_secret);
        // The next phase's keys wait unexpanded until a packet of that phase arrives.
        let recv_next = recv.next();
        Self {
            alg,
            provider,
            next_pn: 0,
            send_phase: false,
            send: DirectionKeys::new(alg, send_secret),
            sealed_in_phase: 0,
            send_phase_started: now,
            update_unconfirmed: false,
            recv_phase: false,
            recv,
            recv_next,
            recv_prev: None,
            recv_phase_start_pn: 0,
            pending_send: None,
            replay: ReplayWindow::default(),
            failed_opens: 0,
            integrity_limit: integrity_limit.unwrap_or(alg.integrity_limit()),
            key_updates: 0,
            protected: 0,
        }
    }

    /// Whether the keys in use are built and kept (see [`BUILD_AFTER`]).
    fn keep_keys(&self) -> bool {
        self.protected >= BUILD_AFTER
    }

    /// Called once per keepalive interval in which the session sent nothing ack-eliciting:
    /// unless it protected [`BUILD_AFTER`] packets since the last call (a receiver that
    /// only acknowledges), the current keys drop their key objects and later packets build
    /// theirs on the stack, so an idle session holds none. Starts the next count.
    pub(crate) fn idle_check(&mut self) {
        if !self.keep_keys() {
            self.send.release(self.alg);
            self.recv.release(self.alg);
        }
        self.protected = 0;
    }

    /// Whether the current send and receive keys hold built key objects.
    #[cfg(test)]
    pub(crate) fn keys_built(&self) -> (bool, bool) {
        (self.send.is_built(), self.recv.is_built())
    }

    /// The packet number the next sealed packet gets.
    pub(crate) fn next_pn(&self) -> u64 {
        self.next_pn
    }

    /// The negotiated AEAD.
    pub(crate) fn alg(&self) -> AeadAlg {
        self.alg
    }

    /// Key updates completed so far.
    pub(crate) fn key_updates(&self) -> u64 {
        self.key_updates
    }

    /// The largest packet number received.
    pub(crate) fn largest_received(&self) -> Option<u64> {
        self.replay.largest()
    }

    /// Whether failed openings reached the integrity limit (spec [RL-8]).
    pub(crate) fn integrity_exceeded(&self) -> bool {
        self.failed_opens >= self.integrity_limit
    }

    /// When the previous receive keys are due to be discarded.
    pub(crate) fn discard_deadline(&self) -> Option<Instant> {
        self.recv_prev.as_ref().map(|p| p.1)
    }

    /// Drops the previous receive keys once their time is up.
    pub(crate) fn discard_old_keys(&mut self, now: Instant) {
        if self.recv_prev.as_ref().is_some_and(|p| p.1 <= now) {
            self.recv_prev = None;
        }
    }

    /// Space needed around a payload: header before, tag after.
    pub(crate) const OVERHEAD: usize = RECORD_HEADER_LEN + TAG_LEN;

    /// Seals the packet whose plaintext payload is `buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload_len]`,
    /// writing the header in front and the tag behind. Returns the datagram length.
    pub(crate) fn seal(
        &mut self,
        now: Instant,
        policy: KeyUpdatePolicy,
        receiver: WireSessionId,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, SealError> {
        self.maybe_start_update(now, policy);
        if self.sealed_in_phase >= self.alg.confidentiality_limit() {
            return Err(SealError::AeadLimit);
        }
        let total = RECORD_HEADER_LEN + payload_len + TAG_LEN;
        if buf.len() < total {
            return Err(SealError::Buffer);
        }
        let pn = self.next_pn;
        let header = Header::Protected { key_phase: self.send_phase, receiver, truncated_pn: pn as u32 };
        header.encode(&mut Writer::new(&mut buf[..RECORD_HEADER_LEN])).ok_or(SealError::Buffer)?;
        let (head, rest) = buf.split_at_mut(RECORD_HEADER_LEN);
        let (payload, tail) = rest.split_at_mut(payload_len);
        let keep = self.keep_keys();
        let tag = self.send.seal(self.provider, self.alg, keep, pn, head, payload).map_err(|_| SealError::Buffer)?;
        tail[..TAG_LEN].copy_from_slice(&tag);
        // A packet number is never sealed twice (spec [RL-2]).
        self.next_pn += 1;
        self.sealed_in_phase += 1;
        self.protected = self.protected.saturating_add(1);
        Ok(total)
    }

    /// Whether a key update this side started is still waiting for the peer.
    pub(crate) fn update_unconfirmed(&self) -> bool {
        self.update_unconfirmed
    }

    /// Re-handshake, responding side (spec [RL-10]): the peer's next key phase uses
    /// these fresh secrets instead of the `ku` derivation, and so does our reply.
    pub(crate) fn install_rekey(&mut self, send_secret: [u8; 32], recv_secret: [u8; 32]) {
        self.recv_next = DirectionKeys::unexpanded(recv_secret);
        self.pending_send = Some(Box::new(DirectionKeys::unexpanded(send_secret)));
    }

    /// Whether secrets installed by [`install_rekey`](Self::install_rekey) still wait for the peer's switch.
    pub(crate) fn rekey_pending(&self) -> bool {
        self.pending_send.is_some()
    }

    /// Undoes [`install_rekey`](Self::install_rekey) when the peer never switched.
    pub(crate) fn abandon_rekey(&mut self) {
        if self.pending_send.take().is_some() {
            self.recv_next = self.recv.next();
        }
    }

    /// Re-handshake, starting side: switch to the fresh secrets now, as a key update.
    pub(crate) fn switch_to_rekey(&mut self, now: Instant, send_secret: [u8; 32], recv_secret: [u8; 32]) {
        self.send = DirectionKeys::new(self.alg, send_secret);
        self.recv_next = DirectionKeys::unexpanded(recv_secret);
        self.send_phase = !self.send_phase;
        self.sealed_in_phase = 0;
        self.send_phase_started = now;
        self.update_unconfirmed = true;
    }

    fn maybe_start_update(&mut self, now: Instant, policy: KeyUpdatePolicy) {
        if self.update_unconfirmed || policy.paused {
            return;
        }
        let due = self.sealed_in_phase >= policy.packets.min(self.alg.confidentiality_limit() / 2)
            || now.saturating_duration_since(self.send_phase_started) >= policy.interval;
        if due {
            self.send = self.send.next();
            self.send_phase = !self.send_phase;
            self.sealed_in_phase = 0;
            self.send_phase_started = now;
            self.update_unconfirmed = true;
        }
    }

    /// Authenticates and decrypts a protected packet in place. `header` is the
    /// 13-byte record header (associated data), `body` the ciphertext and tag.
    /// Nothing changes unless authentication succeeds. Returns `(pn, plaintext_len)`.
    pub(crate) fn open(
        &mut self,
        now: Instant,
        pto: Duration,
        key_phase: bool,
        truncated_pn: u32,
        header: &[u8],
        body: &mut [u8],
    ) -> Result<(u64, usize), OpenError> {
        let Some(ct_len) = body.len().checked_sub(TAG_LEN) else {
            return Err(OpenError::Malformed);
        };
        let pn = decode_packet_number(self.replay.largest(), truncated_pn);
        if self.replay.check(pn) != ReplayVerdict::Fresh {
            return Err(OpenError::Replay);
        }
        let (ct, tag) = body.split_at_mut(ct_len);
        let tag: &[u8; TAG_LEN] = (&*tag).try_into().map_err(|_| OpenError::Malformed)?;
        enum Which {
            Current,
            Previous,
            Next,
        }
        let which = if key_phase == self.recv_phase {
            Which::Current
        } else if self.recv_prev.is_some() && pn < self.recv_phase_start_pn {
            Which::Previous
        } else {
            Which::Next
        };
        let keys = match which {
            Which::Current => &mut self.recv,
            Which::Previous => match self.recv_prev.as_deref_mut() {
                Some((k, _)) => k,
                None => &mut self.recv,
            },
            Which::Next => &mut self.recv_next,
        };
        let keep = self.protected >= BUILD_AFTER;
        if keys.open(self.provider, self.alg, keep, pn, header, ct, tag).is_err() {
            self.failed_opens += 1;
            return Err(OpenError::Auth);
        }
        self.replay.mark(pn);
        self.protected = self.protected.saturating_add(1);
        if let Which::Next = which {
            self.rotate_recv(now, pto, key_phase, pn);
        }
        Ok((pn, ct_len))
    }

    fn rotate_recv(&mut self, now: Instant, pto: Duration, phase: bool, pn: u64) {
        let next_next = self.recv_next.next();
        let old = core::mem::replace(&mut self.recv, core::mem::replace(&mut self.recv_next, next_next));
        // Old keys stay for three PTOs to open reordered packets (spec [RL-7]).
        self.recv_prev = Some(Box::new((old, now.saturating_add(pto * 3))));
        self.recv_phase = phase;
        self.recv_phase_start_pn = pn;
        self.key_updates += 1;
        let rekeyed = self.pending_send.take();
        if self.send_phase != phase {
            // The peer started the update: follow it (with the re-handshake's secret if one is pending).
            self.send = match rekeyed {
                Some(k) => *k,
                None => self.send.next(),
            };
            self.send_phase = phase;
            self.sealed_in_phase = 0;
            self.send_phase_started = now;
        }
        self.update_unconfirmed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::RustCrypto;

    const POLICY: KeyUpdatePolicy = KeyUpdatePolicy { packets: 5, interval: Duration::from_secs(3600), paused: false };
    const SID: WireSessionId = WireSessionId([4; 8]);

    fn pair(alg: AeadAlg) -> (Record, Record) {
        let a = Record::new(&RustCrypto, alg, [1; 32], [2; 32], None, Instant::ZERO);
        let b = Record::new(&RustCrypto, alg, [2; 32], [1; 32], None, Instant::ZERO);
        (a, b)
    }

    fn send(r: &mut Record, msg: &[u8]) -> alloc::vec::Vec<u8> {
        let mut buf = alloc::vec![0u8; 200];
        buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + msg.len()].copy_from_slice(msg);
        let n = r.seal(Instant::ZERO, POLICY, SID, &mut buf, msg.len()).unwrap();
        buf.truncate(n);
        buf
    }

    fn recv(r: &mut Record, pkt: &[u8]) -> Result<alloc::vec::Vec<u8>, OpenError> {
        let mut pkt = pkt.to_vec();
        let Some((Header::Protected { key_phase, truncated_pn, .. }, _)) = Header::decode(&pkt) else { panic!() };
        let (h, body) = pkt.split_at_mut(RECORD_HEADER_LEN);
        let (_, n) = r.open(Instant::ZERO, Duration::from_millis(100), key_phase, truncated_pn, h, body)?;
        Ok(body[..n].to_vec())
    }

    #[test]
    fn seal_open_replay_and_tamper() {
        for alg in [AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm] {
            let (mut a, mut b) = pair(alg);
            let p0 = send(&mut a, b"zero");
            let p1 = send(&mut a, b"one");
            assert_eq!(recv(&mut b, &p1).unwrap(), b"one", "reordered");
            assert_eq!(recv(&mut b, &p0).unwrap(), b"zero");
            assert_eq!(recv(&mut b, &p0), Err(OpenError::Replay));
            let mut bad = send(&mut a, b"two");
            bad[RECORD_HEADER_LEN] ^= 1;
            assert_eq!(recv(&mut b, &bad), Err(OpenError::Auth));
            let mut bad_hdr = send(&mut a, b"three");
            bad_hdr[1] ^= 1;
            assert_eq!(recv(&mut b, &bad_hdr), Err(OpenError::Auth), "header is associated data");
            assert_eq!(b.failed_opens, 2);
            assert_eq!(recv(&mut b, &[0x40; 20]), Err(OpenError::Malformed));
        }
    }

    #[test]
    fn failed_authentication_changes_nothing() {
        let (mut a, mut b) = pair(AeadAlg::ChaCha20Poly1305);
        let good = send(&mut a, b"x");
        let mut forged = good.clone();
        forged[RECORD_HEADER_LEN + 1] ^= 0x80;
        assert_eq!(recv(&mut b, &forged), Err(OpenError::Auth));
        assert_eq!(b.largest_received(), None);
        assert_eq!(recv(&mut b, &good).unwrap(), b"x", "the genuine packet with that number still opens");
    }

    #[test]
    fn key_updates_both_ways_lose_nothing() {
        let (mut a, mut b) = pair(AeadAlg::Aes256Gcm);
        let mut held_back = None;
        for i in 0..60u32 {
            let msg = i.to_be_bytes();
            let pa = send(&mut a, &msg);
            if i == 7 {
                // Deliver one packet of the old phase late, after the update.
                held_back = Some(pa);
            } else {
                assert_eq!(recv(&mut b, &pa).unwrap(), msg, "a→b {i}");
            }
            if i == 12 {
                assert_eq!(recv(&mut b, held_back.as_ref().unwrap()).unwrap(), 7u32.to_be_bytes());
            }
            let pb = send(&mut b, &msg);
            assert_eq!(recv(&mut a, &pb).unwrap(), msg, "b→a {i}");
        }
        assert!(a.key_updates() >= 5, "updates happened: {}", a.key_updates());
        assert_eq!(a.key_updates(), b.key_updates());
    }

    /// A session with little traffic builds its key objects per packet and keeps none; one
    /// that protects [`BUILD_AFTER`] packets in a keepalive interval keeps them, and gives
    /// them back after an interval with less. Packets interoperate across the two ways.
    #[test]
    fn key_objects_are_kept_only_while_busy() {
        for alg in [AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm] {
            let (mut a, mut b) = pair(alg);
            let round = |a: &mut Record, b: &mut Record, i: u32| {
                let p = send(a, &i.to_be_bytes());
                assert_eq!(recv(b, &p).unwrap(), i.to_be_bytes());
            };
            // A handshake's worth of packets, then an idle interval: nothing built.
            for i in 0..20 {
                round(&mut a, &mut b, i);
            }
            assert_eq!((a.keys_built(), b.keys_built()), ((false, false), (false, false)));
            a.idle_check();
            b.idle_check();
            // A burst: after BUILD_AFTER packets each side keeps the keys it uses.
            for i in 0..u32::from(BUILD_AFTER) + 1 {
                round(&mut a, &mut b, i);
            }
            assert_eq!((a.keys_built().0, b.keys_built().1), (true, true), "{alg:?}");
            // Still busy at the next check (a receiver that only acknowledges): kept.
            b.idle_check();
            assert!(b.keys_built().1);
            for i in 0..3 {
                round(&mut a, &mut b, i);
            }
            // An interval with three packets: given back; packets still open both ways.
            b.idle_check();
            assert!(!b.keys_built().1);
            round(&mut a, &mut b, 7);
            let p = send(&mut b, b"back");
            assert_eq!(recv(&mut a, &p).unwrap(), b"back");
        }
    }

    #[test]
    fn aes_gcm_confidentiality_limit_is_enforced() {
        let (mut a, _) = pair(AeadAlg::Aes256Gcm);
        a.sealed_in_phase = AeadAlg::Aes256Gcm.confidentiality_limit();
        a.update_unconfirmed = true;
        let mut buf = [0u8; 64];
        assert_eq!(a.seal(Instant::ZERO, POLICY, SID, &mut buf, 4), Err(SealError::AeadLimit));
    }
}
