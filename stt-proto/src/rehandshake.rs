//! The periodic re-handshake inside a session (spec §5.6, [RL-10]): a Noise
//! `NNpsk0` exchange carried in REHANDSHAKE frames, whose fresh ephemeral DH gives
//! post-compromise security. Its split secrets replace the `ku` derivation for the
//! next key phase.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use snow::HandshakeState;

use crate::crypto::kdf;
use crate::crypto::noise::{self, DhCounter, NoiseRole};
use crate::entropy::{Entropy, EntropyPurpose};
use crate::record::Record;
use crate::time::Instant;

/// Label deriving each re-handshake's PSK from the session's exporter secret.
const LABEL_PSK: &[u8] = b"stt/1 rekey psk";
/// Noise message length of both re-handshake messages: `e` and an empty payload's tag.
const MSG_LEN: usize = 32 + 16;

/// Where the re-handshake stands.
enum Phase {
    Idle,
    /// Session initiator: message 1 sent, waiting for message 2.
    Offered {
        seq: u64,
        noise: Box<HandshakeState>,
        msg1: Vec<u8>,
        started: Instant,
    },
    /// Session responder: message 2 sent, the fresh keys installed, waiting for the peer's switch.
    Answered {
        seq: u64,
        msg1: Vec<u8>,
        msg2: Vec<u8>,
        expires: Instant,
    },
}

/// One session's re-handshake state.
pub(crate) struct Rekey {
    phase: Phase,
    /// Base of every re-handshake PSK (the session's exporter secret).
    base: [u8; 32],
    /// Session initiator: next sequence number to offer. Responder: last one answered + 1.
    next_seq: u64,
    /// Session initiator: when to start the next one.
    next_start: Option<Instant>,
    resend_at: Option<Instant>,
    backoff: u32,
    /// A REHANDSHAKE frame is waiting to be sent.
    pub(crate) send: bool,
    /// Re-handshakes completed.
    pub(crate) completed: u64,
    /// Session responder: when it last answered a message 1 with fresh DH (spec [RL-11]).
    last_answered: Option<Instant>,
}

impl Drop for Rekey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.base);
    }
}

/// Knobs from the config.
#[derive(Clone, Copy)]
pub(crate) struct RekeyTimers {
    pub(crate) interval: Option<Duration>,
    pub(crate) retransmit: Duration,
    pub(crate) timeout: Duration,
    /// Session responder: shortest time between two answered re-handshakes (spec [RL-11]).
    pub(crate) min_interval: Duration,
}

impl Rekey {
    /// State for a newly established session. Only the session initiator schedules.
    pub(crate) fn new(exporter: &[u8; 32], initiator: bool, now: Instant, timers: RekeyTimers) -> Self {
        let mut base = [0u8; 32];
        kdf::expand(exporter, b"stt/1 rekey", &[], &mut base);
        Self {
            phase: Phase::Idle,
            base,
            next_seq: 0,
            next_start: if initiator { timers.interval.map(|i| now.saturating_add(i)) } else { None },
            resend_at: None,
            backoff: 0,
            send: false,
            completed: 0,
            last_answered: None,
        }
    }

    /// Whether key updates must wait (keys are being switched).
    pub(crate) fn pauses_updates(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    /// The earliest re-handshake timer.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Answered { expires, .. } => Some(expires),
            _ => None,
        };
        [self.next_start, self.resend_at, phase].into_iter().flatten().min()
    }

    /// Session responder: whether a new message 1 may be answered now (spec [RL-11]):
    /// at most one fresh DH exchange per `min_interval`. Refused requests cost no DH; the
    /// initiator's retransmissions reach it once the interval has passed.
    fn may_answer(&self, now: Instant, min_interval: Duration) -> bool {
        self.last_answered.is_none_or(|t| now.saturating_duration_since(t) >= min_interval)
    }

    fn psk(&self, seq: u64) -> [u8; 32] {
        let mut psk = [0u8; 32];
        kdf::expand(&self.base, LABEL_PSK, &seq.to_be_bytes(), &mut psk);
        psk
    }

    fn prologue(seq: u64) -> [u8; 19] {
        let mut p = [0u8; 19];
        p[..11].copy_from_slice(b"STT/1 rekey");
        p[11..].copy_from_slice(&seq.to_be_bytes());
        p
    }

    /// Fires due timers: start, retransmit, give up, expire.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        record: &mut Record,
        entropy: &mut dyn Entropy,
        counter: &DhCounter,
        timers: RekeyTimers,
    ) {
        if let Phase::Answered { expires, .. } = self.phase {
            if expires <= now {
                // The peer never switched: keep the current keys.
                record.abandon_rekey();
                self.phase = Phase::Idle;
            }
        }
        if self.resend_at.is_some_and(|t| t <= now) {
            self.resend_at = None;
            if let Phase::Offered { started, .. } = self.phase {
                if now.saturating_duration_since(started) >= timers.timeout {
                    self.phase = Phase::Idle;
                    self.next_start = timers.interval.map(|i| now.saturating_add(i));
                } else {
                    self.send = true;
                    self.backoff += 1;
                }
            }
        }
        if self.next_start.is_some_and(|t| t <= now) {
            if record.update_unconfirmed() {
                // Let the key update settle first.
                self.next_start = Some(now.saturating_add(timers.retransmit));
                return;
            }
            self.next_start = None;
            let seq = self.next_seq;
            self.next_seq += 1;
            let mut e = [0u8; 32];
            entropy.fill(EntropyPurpose::EphemeralKey, &mut e);
            let Some(mut hs) =
                noise::build_rekey(NoiseRole::Initiator, &self.psk(seq), e, &Self::prologue(seq), counter)
            else {
                return;
            };
            let mut msg1 = vec![0u8; MSG_LEN];
            if hs.write_message(&[], &mut msg1).ok() != Some(MSG_LEN) {
                return;
            }
            self.phase = Phase::Offered { seq, noise: Box::new(hs), msg1, started: now };
            self.backoff = 0;
            self.send = true;
        }
    }

    /// The frame body to send: `(seq, message number, noise bytes)`.
    pub(crate) fn outgoing(&self) -> Option<(u64, u8, &[u8])> {
        match &self.phase {
            Phase::Offered { seq, msg1, .. } => Some((*seq, 1, msg1)),
            Phase::Answered { seq, msg2, .. } => Some((*seq, 2, msg2)),
            Phase::Idle => None,
        }
    }

    /// Called when the frame went out: arm the retransmission (session initiator only).
    pub(crate) fn sent(&mut self, now: Instant, timers: RekeyTimers) {
        self.send = false;
        if matches!(self.phase, Phase::Offered { .. }) {
            self.resend_at = Some(now.saturating_add(timers.retransmit * (1 << self.backoff.min(3))));
        }
    }

    /// A REHANDSHAKE frame arrived. `initiator` says which side of the session we are.
    /// Returns true when this side just switched to fresh keys (it should send promptly
    /// so the peer follows).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle_frame(
        &mut self,
        now: Instant,
        initiator: bool,
        seq: u64,
        message: u8,
        body: &[u8],
        record: &mut Record,
        entropy: &mut dyn Entropy,
        counter: &DhCounter,
        timers: RekeyTimers,
    ) -> bool {
        let may_answer = self.may_answer(now, timers.min_interval);
        match (initiator, message, &mut self.phase) {
            // Responder: a retransmitted message 1 gets the stored message 2, no new DH.
            (false, 1, Phase::Answered { seq: s, msg1, .. }) if *s == seq && msg1.as_slice() == body => {
                self.send = true;
                false
            }
            (false, 1, Phase::Idle) if seq >= self.next_seq && !record.update_unconfirmed() && may_answer => {
                self.last_answered = Some(now);
                let mut e = [0u8; 32];
                entropy.fill(EntropyPurpose::EphemeralKey, &mut e);
                let Some(mut hs) =
                    noise::build_rekey(NoiseRole::Responder, &self.psk(seq), e, &Self::prologue(seq), counter)
                else {
                    return false;
                };
                if hs.read_message(body, &mut []).is_err() {
                    return false;
                }
                let mut msg2 = vec![0u8; MSG_LEN];
                if hs.write_message(&[], &mut msg2).ok() != Some(MSG_LEN) {
                    return false;
                }
                let (i2r, r2i) = hs.dangerously_get_raw_split();
                record.install_rekey(r2i, i2r);
                self.next_seq = seq + 1;
                let expires = now.saturating_add(timers.timeout * 2);
                self.phase = Phase::Answered { seq, msg1: body.to_vec(), msg2, expires };
                self.send = true;
                false
            }
            // Initiator: message 2 completes it; switch keys now.
            (true, 2, Phase::Offered { seq: s, noise, .. }) if *s == seq => {
                if noise.read_message(body, &mut []).is_err() {
                    return false;
                }
                let (i2r, r2i) = noise.dangerously_get_raw_split();
                record.switch_to_rekey(now, i2r, r2i);
                self.phase = Phase::Idle;
                self.resend_at = None;
                self.next_start = timers.interval.map(|i| now.saturating_add(i));
                self.completed += 1;
                true
            }
            _ => false,
        }
    }

    /// Responder: once the peer switched to the fresh keys, the re-handshake is complete.
    /// Returns true at that moment (this side now sends with the fresh keys).
    pub(crate) fn check_switched(&mut self, record: &Record) -> bool {
        if matches!(self.phase, Phase::Answered { .. }) && !record.rekey_pending() {
            self.phase = Phase::Idle;
            self.completed += 1;
            return true;
        }
        false
    }
}
