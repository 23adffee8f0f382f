//! Sent-packet tracking, loss detection and probe timeouts (RFC 9002 §6).

use alloc::collections::VecDeque;
use core::time::Duration;

use super::ack::MAX_ACK_DELAY;
use super::rtt::RttEstimator;
use crate::time::Instant;
use crate::wire::frame::AckFrame;

/// Packets acknowledged by a later packet number distance this large are lost (the
/// starting value; spurious losses raise it, spec [LR-2]).
const PACKET_THRESHOLD: u64 = 3;
/// The packet threshold never exceeds this (past a few dozen, the time threshold decides).
const MAX_PACKET_THRESHOLD: u64 = 1024;
/// Declared-lost packets remembered to detect spurious losses (spec [LR-1]).
const RECENTLY_LOST: usize = 128;
/// Loss events without a spurious loss after which the reordering tolerance halves.
const DECAY_EVENTS: u32 = 64;
/// Consecutive PTOs are spaced by at most 2^this.
const MAX_PTO_BACKOFF: u32 = 6;

/// What a sent packet carried that must be retransmitted (or confirmed) later.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SentFrame {
    Stream {
        id: u64,
        offset: u64,
        len: u32,
        fin: bool,
    },
    StreamClose {
        id: u64,
    },
    StopSending {
        id: u64,
    },
    MaxData,
    MaxStreamData {
        id: u64,
    },
    MaxStreams {
        uni: bool,
    },
    Final,
    MtuProbe,
    /// Relay or punching control (RELAY_REGISTER, RELAY_STATUS, CANDIDATES): re-sent as
    /// current state when lost.
    Control,
}

/// Frames recorded per packet; the packet builder stops adding frames past this.
pub(crate) const MAX_SENT_FRAMES: usize = 12;

/// One packet in flight (24 bytes: a session holds one per packet in flight, and an idle
/// one a few). What it carried lives in the detector's frame log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SentPacket {
    pub(crate) time: Instant,
    pub(crate) size: u32,
    /// Log index (wrapping) of its first frame in [`LossDetector::frames`].
    first_frame: u32,
    frame_count: u8,
    pub(crate) ack_eliciting: bool,
    /// A path-MTU probe: its loss says nothing about congestion (RFC 8899 §3).
    pub(crate) mtu_probe: bool,
}

/// The frames one sent packet carried, oldest first.
pub(crate) type Frames<'a> = alloc::collections::vec_deque::Iter<'a, SentFrame>;

/// Receives the outcome of acknowledgement processing.
pub(crate) trait RecoverySink {
    /// A packet was acknowledged.
    fn acked(&mut self, now: Instant, p: &SentPacket, frames: Frames<'_>);
    /// A packet was declared lost.
    fn lost(&mut self, p: &SentPacket, frames: Frames<'_>);
    /// A frame of a packet declared lost was acknowledged after all (spec [LR-5]).
    fn acked_late(&mut self, frame: &SentFrame);
    /// A loss event: packets sent up to `sent` were lost. Returns whether the congestion
    /// controller reduced its window for it (false inside an earlier event's recovery period).
    fn congestion(&mut self, now: Instant, sent: Instant, persistent: bool) -> bool;
    /// The last loss event that reduced the window (with the events that joined it in its
    /// recovery period) was spurious: undo its congestion response (spec [LR-3]).
    fn spurious(&mut self);
}

/// The packets one loss event declared lost, with those of later events in its recovery
/// period (they did not reduce the window again; spec [LR-3]).
#[derive(Clone, Copy, Debug)]
struct LossEvent {
    first: u64,
    last: u64,
    lost: u32,
    spurious: u32,
}

/// A packet declared lost, remembered for a while (spec [LR-1]).
#[derive(Clone, Copy, Debug)]
struct LostRecord {
    pn: u64,
    sent: Instant,
    /// The largest acknowledged packet number when it was declared lost.
    largest_acked: u64,
    /// Its first STREAM frame: acknowledged if the packet is (spec [LR-5]), so that data
    /// queued again for retransmission and not yet sent is not sent.
    stream: Option<SentFrame>,
}

/// Entries the sent-packet table and frame log shrink to once the session went idle (96
/// bytes each): room for a keepalive and what trails it, so an idle session's keepalives
/// do not reallocate.
const KEEP_ENTRIES: usize = 4;

/// The peer acknowledged a packet number that was never sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct InvalidAck;

/// Sent packets and the loss / PTO timers.
#[derive(Debug)]
pub(crate) struct LossDetector {
    sent: VecDeque<Option<SentPacket>>,
    base: u64,
    /// What the packets in `sent` carried, in packet-number order; trimmed with `sent`.
    frames: VecDeque<SentFrame>,
    /// Log index of `frames`' first entry.
    frames_base: u32,
    /// The session went idle: shrink `sent` and `frames` once they drained.
    shrink_when_drained: bool,
    largest_acked: Option<u64>,
    in_flight: u64,
    eliciting_in_flight: u64,
    loss_time: Option<Instant>,
    pto_count: u32,
    last_eliciting: Option<Instant>,
    pub(crate) rtt: RttEstimator,
    /// Packets declared lost so far.
    pub(crate) lost_packets: u64,
    /// Declared-lost packets, by packet number (bounded: the oldest is forgotten).
    recently_lost: VecDeque<LostRecord>,
    /// Reordering tolerance learned from spurious losses (spec [LR-2]).
    packet_threshold: u64,
    reorder_delay: Duration,
    /// Loss events since the tolerance last grew.
    events_since_spurious: u32,
    /// The last loss event while its congestion response can be undone: its packet
    /// numbers, how many it declared lost, and how many of those proved spurious.
    last_event: Option<LossEvent>,
    /// When the first RTT sample was taken (persistent congestion counts only later losses).
    first_sample_at: Option<Instant>,
    /// Losses later shown to be spurious (the packet was acknowledged after all).
    pub(crate) spurious_losses: u64,
    /// Packets below this number were sent before the peer was known to hold the keys
    /// (an initiator established on AUTH_PROOF, spec [HS-22]): lost, and below the earliest
    /// acknowledged packet, they may have arrived before the keys and are no congestion
    /// signal (RFC 9002 §7.5). They are still retransmitted.
    pub(crate) keyless_below: u64,
    /// The lowest packet number acknowledged so far.
    earliest_acked: Option<u64>,
    /// Bytes of ack-eliciting packets overdue by the base time threshold but not declared
    /// lost (they wait out a widened one), as of the last ACK or loss timer (spec [LR-6]).
    overdue_bytes: u64,
}

impl LossDetector {
    pub(crate) fn new(rtt: RttEstimator, first_pn: u64) -> Self {
        Self {
            sent: VecDeque::new(),
            base: first_pn,
            frames: VecDeque::new(),
            frames_base: 0,
            shrink_when_drained: false,
            largest_acked: None,
            in_flight: 0,
            eliciting_in_flight: 0,
            loss_time: None,
            pto_count: 0,
            last_eliciting: None,
            first_sample_at: rtt.has_sample().then(|| Instant::from_micros(0)),
            rtt,
            lost_packets: 0,
            recently_lost: VecDeque::new(),
            packet_threshold: PACKET_THRESHOLD,
            reorder_delay: Duration::ZERO,
            events_since_spurious: 0,
            last_event: None,
            spurious_losses: 0,
            keyless_below: 0,
            earliest_acked: None,
            overdue_bytes: 0,
        }
    }

    /// Bytes of ack-eliciting packets in flight.
    pub(crate) fn bytes_in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Records a sealed packet and the frames it carried (at most [`MAX_SENT_FRAMES`]).
    /// Packet numbers are consecutive.
    pub(crate) fn on_sent(
        &mut self,
        pn: u64,
        time: Instant,
        size: u32,
        ack_eliciting: bool,
        mtu_probe: bool,
        frames: &[SentFrame],
    ) {
        while self.base + (self.sent.len() as u64) < pn {
            self.sent.push_back(None);
        }
        let frames = &frames[..frames.len().min(MAX_SENT_FRAMES)];
        let p = SentPacket {
            time,
            size,
            first_frame: self.frames_base.wrapping_add(self.frames.len() as u32),
            frame_count: frames.len() as u8,
            ack_eliciting,
            mtu_probe,
        };
        self.frames.extend(frames);
        if p.ack_eliciting {
            self.in_flight += u64::from(p.size);
            self.eliciting_in_flight += 1;
            self.last_eliciting = Some(p.time);
        }
        self.sent.push_back(Some(p));
    }

    fn take(&mut self, pn: u64) -> Option<SentPacket> {
        let i = usize::try_from(pn.checked_sub(self.base)?).ok()?;
        let p = self.sent.get_mut(i)?.take()?;
        if p.ack_eliciting {
            self.in_flight -= u64::from(p.size);
            self.eliciting_in_flight -= 1;
        }
        Some(p)
    }

    /// The frames `p` (a packet still in `sent`) carried.
    pub(crate) fn frames_of(&self, p: &SentPacket) -> Frames<'_> {
        let start = (p.first_frame.wrapping_sub(self.frames_base) as usize).min(self.frames.len());
        let end = (start + usize::from(p.frame_count)).min(self.frames.len());
        self.frames.range(start..end)
    }

    fn trim(&mut self) {
        while let Some(None) = self.sent.front() {
            self.sent.pop_front();
            self.base += 1;
        }
        // Frames of the packets gone from the front go with them.
        let keep_from = match self.sent.front() {
            Some(Some(p)) => p.first_frame,
            _ => self.frames_base.wrapping_add(self.frames.len() as u32),
        };
        let drop = (keep_from.wrapping_sub(self.frames_base) as usize).min(self.frames.len());
        self.frames.drain(..drop);
        self.frames_base = self.frames_base.wrapping_add(drop as u32);
        if self.shrink_when_drained && self.sent.len() <= KEEP_ENTRIES {
            self.shrink_when_drained = false;
            self.sent.shrink_to(KEEP_ENTRIES);
            self.frames.shrink_to(KEEP_ENTRIES);
        }
    }

    /// Processes an ACK frame.
    ///
    /// # Errors
    /// [`InvalidAck`] if it acknowledges a packet number not yet sent.
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        ack: &AckFrame<'_>,
        sink: &mut impl RecoverySink,
    ) -> Result<(), InvalidAck> {
        let next_pn = self.base + self.sent.len() as u64;
        if ack.largest >= next_pn {
            return Err(InvalidAck);
        }
        let mut newly_acked_largest = None;
        let mut any_eliciting = false;
        if !self.recently_lost.is_empty() {
            self.detect_spurious(now, ack, sink);
        }
        for range in ack.ranges() {
            let start = range.start.max(self.base);
            let end = range.end.min(next_pn);
            for pn in start..end {
                if let Some(p) = self.take(pn) {
                    self.earliest_acked = Some(self.earliest_acked.map_or(pn, |e| e.min(pn)));
                    if newly_acked_largest.is_none() || pn == ack.largest {
                        newly_acked_largest = Some((pn, p.time, p.ack_eliciting));
                    }
                    any_eliciting |= p.ack_eliciting;
                    sink.acked(now, &p, self.frames_of(&p));
                }
            }
        }
        let Some((pn, time, eliciting)) = newly_acked_largest else {
            return Ok(());
        };
        self.largest_acked = Some(self.largest_acked.map_or(ack.largest, |l| l.max(ack.largest)));
        if pn == ack.largest && eliciting {
            let delay = Duration::from_micros(ack.delay_us).min(MAX_ACK_DELAY);
            self.rtt.update_with_ack_delay(now.saturating_duration_since(time), delay);
            self.first_sample_at.get_or_insert(now);
        }
        if any_eliciting {
            self.pto_count = 0;
        }
        self.detect_lost(now, sink);
        self.trim();
        Ok(())
    }

    /// RFC 9002's time threshold: 9/8 × max(srtt, latest_rtt), at least 1 ms.
    fn base_loss_delay(&self) -> Duration {
        (self.rtt.latest().max(self.rtt.smoothed()) * 9 / 8).max(Duration::from_millis(1))
    }

    /// The time threshold, widened by the reordering seen (spec [LR-2]).
    fn loss_delay(&self) -> Duration {
        self.base_loss_delay().max(self.reorder_delay)
    }

    /// Bytes in flight that count against the congestion window: packets overdue by the
    /// base time threshold, waiting out a widened one, are left out, up to half of
    /// `window` (spec [LR-6]).
    pub(crate) fn bytes_against_window(&self, window: u64) -> u64 {
        self.in_flight.saturating_sub(self.overdue_bytes.min(window / 2))
    }

    /// An ACK covers packets declared lost: the losses were spurious (reordering). Widen the
    /// reordering tolerance so the same delay is not taken for loss again, and undo the
    /// congestion response of the last loss event if they belonged to it (spec [LR-1..3]).
    fn detect_spurious(&mut self, now: Instant, ack: &AckFrame<'_>, sink: &mut impl RecoverySink) {
        // What one sample may add; a tolerance already learned is not lowered by it
        // (reordering biases RTT samples low: they come from the packets that overtook).
        let cap = (self.rtt.latest().max(self.rtt.smoothed()) * 2).max(self.rtt.pto());
        let mut undo = false;
        for range in ack.ranges() {
            loop {
                let i = self.recently_lost.partition_point(|r| r.pn < range.start);
                let Some(r) = self.recently_lost.get(i).copied().filter(|r| r.pn < range.end) else { break };
                self.recently_lost.remove(i);
                self.spurious_losses += 1;
                if let Some(f) = r.stream.as_ref() {
                    sink.acked_late(f);
                }
                let distance = r.largest_acked.saturating_sub(r.pn) + 1;
                self.packet_threshold = self.packet_threshold.max(distance + 1).min(MAX_PACKET_THRESHOLD);
                let waited = now.saturating_duration_since(r.sent) * 5 / 4;
                self.reorder_delay = self.reorder_delay.max(waited.min(cap));
                self.events_since_spurious = 0;
                if let Some(e) = self.last_event.as_mut().filter(|e| (e.first..=e.last).contains(&r.pn)) {
                    e.spurious += 1;
                    // Undone only when every packet the event declared lost arrived after all.
                    undo |= e.spurious >= e.lost;
                }
            }
        }
        if undo {
            self.last_event = None;
            sink.spurious();
        }
    }

    fn detect_lost(&mut self, now: Instant, sink: &mut impl RecoverySink) {
        self.loss_time = None;
        self.overdue_bytes = 0;
        let Some(largest) = self.largest_acked else { return };
        let delay = self.loss_delay();
        let base_delay = self.base_loss_delay();
        let threshold = self.packet_threshold;
        let mut first_lost: Option<(u64, Instant)> = None;
        let mut last_lost: Option<(u64, Instant)> = None;
        let mut count = 0u32;
        // Persistent congestion (RFC 9002 §7.6): the longest run of lost packets with
        // nothing acknowledged in between, counting only packets sent after the first RTT
        // sample (spec [LR-4]).
        let mut run: Option<(Instant, Instant)> = None;
        let mut longest = Duration::ZERO;
        let end = (largest + 1).min(self.base + self.sent.len() as u64);
        for pn in self.base..end {
            let Some(Some(p)) = self.sent.get((pn - self.base) as usize) else {
                // Acknowledged (or lost earlier): only an earlier loss continues a run.
                let i = self.recently_lost.partition_point(|r| r.pn < pn);
                if self.recently_lost.get(i).is_none_or(|r| r.pn != pn) {
                    run = None;
                }
                continue;
            };
            let late = p.time.saturating_add(delay) <= now;
            if late || largest >= pn + threshold {
                if let Some(p) = self.take(pn) {
                    let keyless = pn < self.keyless_below && self.earliest_acked.is_none_or(|e| pn < e);
                    if keyless {
                        self.lost_packets += 1;
                    } else if p.ack_eliciting && !p.mtu_probe {
                        self.lost_packets += 1;
                        count += 1;
                        first_lost.get_or_insert((pn, p.time));
                        last_lost = Some((pn, p.time));
                        if self.recently_lost.len() == RECENTLY_LOST {
                            self.recently_lost.pop_front();
                        }
                        let stream = self.frames_of(&p).find(|f| matches!(f, SentFrame::Stream { .. })).copied();
                        self.recently_lost.push_back(LostRecord { pn, sent: p.time, largest_acked: largest, stream });
                        if self.first_sample_at.is_some_and(|t| p.time >= t) {
                            let (start, _) = *run.get_or_insert((p.time, p.time));
                            run = Some((start, p.time));
                            longest = longest.max(p.time.saturating_duration_since(start));
                        }
                    }
                    sink.lost(&p, self.frames_of(&p));
                }
            } else {
                run = None;
                if p.ack_eliciting && p.time.saturating_add(base_delay) <= now {
                    self.overdue_bytes += u64::from(p.size);
                }
                let t = p.time.saturating_add(delay);
                self.loss_time = Some(self.loss_time.map_or(t, |l| l.min(t)));
            }
        }
        if let (Some((first_pn, _)), Some((last_pn, last))) = (first_lost, last_lost) {
            let period = (self.rtt.pto() + MAX_ACK_DELAY) * 3;
            let persistent = self.rtt.has_sample() && longest > period;
            let reduced = sink.congestion(now, last, persistent);
            self.last_event = if persistent {
                None
            } else if reduced {
                Some(LossEvent { first: first_pn, last: last_pn, lost: count, spurious: 0 })
            } else {
                // Inside the recovery period of the last event: the window was not reduced
                // again, so this event joins that one and is undone with it, only when all
                // of their losses prove spurious (spec [LR-3]).
                self.last_event.map(|e| LossEvent { last: last_pn, lost: e.lost + count, ..e })
            };
            self.events_since_spurious += 1;
            if self.events_since_spurious >= DECAY_EVENTS {
                // No reordering seen for a while: tolerate less again.
                self.events_since_spurious = 0;
                self.packet_threshold = (self.packet_threshold / 2).max(PACKET_THRESHOLD);
                self.reorder_delay /= 2;
            }
        }
        self.trim();
    }

    /// The probe timeout with backoff.
    fn pto_deadline(&self) -> Option<Instant> {
        if self.eliciting_in_flight == 0 {
            return None;
        }
        let backoff = 1u32 << self.pto_count.min(MAX_PTO_BACKOFF);
        Some(self.last_eliciting?.saturating_add((self.rtt.pto() + MAX_ACK_DELAY) * backoff))
    }

    /// The loss-detection timer: the time threshold, else the PTO.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.loss_time.or_else(|| self.pto_deadline())
    }

    /// Fires the timer. Returns true when probes must be sent (a PTO expired).
    pub(crate) fn on_timeout(&mut self, now: Instant, sink: &mut impl RecoverySink) -> bool {
        if self.loss_time.is_some_and(|t| t <= now) {
            self.detect_lost(now, sink);
            return false;
        }
        if self.pto_deadline().is_some_and(|t| t <= now) {
            self.pto_count += 1;
            return true;
        }
        false
    }

    /// The oldest ack-eliciting packet still in flight that carries something to re-send
    /// (its frames are re-sent as a PTO probe). A path-MTU probe or a bare KEEP_ALIVE carries
    /// nothing: the probe re-sends the oldest outstanding data behind it (spec [RC-3]).
    pub(crate) fn oldest_unacked(&self) -> Option<(&SentPacket, Frames<'_>)> {
        self.sent
            .iter()
            .flatten()
            .find(|p| p.ack_eliciting && self.frames_of(p).any(|f| *f != SentFrame::MtuProbe))
            .map(|p| (p, self.frames_of(p)))
    }

    /// The session is idle (it sent nothing for a keepalive interval): the sent-packet
    /// table and frame log shrink back to [`KEEP_ENTRIES`] once they hold no more than that
    /// (now, or when the ACK-only packets still waiting for an acknowledgement are covered),
    /// and with nothing in flight the record of recent losses goes. Only an idle period
    /// shrinks them, so a busy session never reallocates (spec §2's zero allocations).
    pub(crate) fn shrink_if_idle(&mut self) {
        self.shrink_when_drained = self.sent.capacity() > KEEP_ENTRIES || self.frames.capacity() > KEEP_ENTRIES;
        self.trim();
        if self.eliciting_in_flight == 0 {
            self.recently_lost.clear();
            self.recently_lost.shrink_to_fit();
        }
    }

    /// Current PTO backoff exponent.
    pub(crate) fn pto_count(&self) -> u32 {
        self.pto_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range_set::RangeSet;
    use crate::wire::codec::{Reader, Writer};
    use crate::wire::frame::Frame;
    use alloc::vec::Vec;

    #[derive(Default)]
    struct Log {
        acked: Vec<Instant>,
        lost: Vec<Instant>,
        events: Vec<(Instant, bool)>,
        undone: u32,
        /// Frames of the packets acknowledged or lost, as reported.
        frames: Vec<SentFrame>,
        /// As a congestion controller: one reduction per recovery period.
        recovery_start: Option<Instant>,
        /// Frames of lost packets acknowledged after all.
        late: Vec<SentFrame>,
    }

    impl RecoverySink for Log {
        fn acked(&mut self, _now: Instant, p: &SentPacket, frames: Frames<'_>) {
            self.acked.push(p.time);
            self.frames.extend(frames);
        }
        fn lost(&mut self, p: &SentPacket, frames: Frames<'_>) {
            self.frames.extend(frames);
            self.lost.push(p.time);
        }
        fn congestion(&mut self, now: Instant, sent: Instant, persistent: bool) -> bool {
            self.events.push((sent, persistent));
            let reduced = persistent || self.recovery_start.is_none_or(|r| sent > r);
            if reduced {
                self.recovery_start = Some(now);
            }
            reduced
        }
        fn spurious(&mut self) {
            self.undone += 1;
        }
        fn acked_late(&mut self, frame: &SentFrame) {
            self.late.push(*frame);
        }
    }

    fn ms(v: u64) -> Instant {
        Instant::from_micros(v * 1000)
    }

    fn sent(d: &mut LossDetector, pn: u64, t: Instant) {
        d.on_sent(pn, t, 1000, true, false, &[]);
    }

    fn ack(ranges: &[core::ops::Range<u64>], buf: &mut [u8]) -> usize {
        let mut set = RangeSet::new();
        for r in ranges {
            set.insert(r.clone());
        }
        let mut w = Writer::new(buf);
        AckFrame::encode(&set, 0, &mut w).unwrap();
        w.len()
    }

    fn with_ack<R>(ranges: &[core::ops::Range<u64>], f: impl FnOnce(&AckFrame<'_>) -> R) -> R {
        let mut buf = [0u8; 256];
        let n = ack(ranges, &mut buf);
        let Some(Frame::Ack(a)) = Frame::decode(&mut Reader::new(&buf[..n])) else { panic!() };
        f(&a)
    }

    /// A PTO probe re-sends the oldest outstanding data, not the nothing that an older
    /// path-MTU probe or bare KEEP_ALIVE carried (spec [RC-3]).
    #[test]
    fn oldest_unacked_skips_packets_with_nothing_to_resend() {
        let mut d = LossDetector::new(RttEstimator::default(), 0);
        d.on_sent(0, ms(0), 1000, true, true, &[SentFrame::MtuProbe]);
        sent(&mut d, 1, ms(1));
        let data = SentFrame::Stream { id: 0, offset: 0, len: 6, fin: false };
        d.on_sent(2, ms(2), 1000, true, false, &[data, SentFrame::MaxData]);
        let (p, frames) = d.oldest_unacked().unwrap();
        assert_eq!(p.time, ms(2));
        assert!(frames.copied().eq([data, SentFrame::MaxData]));
    }

    /// The frame log follows the packets: each packet acknowledged or lost reports its own
    /// frames, whatever was acknowledged or lost around it, and nothing is left once every
    /// packet is gone.
    #[test]
    fn frame_log_follows_the_packets() {
        let mut d = LossDetector::new(RttEstimator::default(), 0);
        let f = |id| SentFrame::MaxStreamData { id };
        for pn in 0..40u64 {
            let frames: heapless::Vec<SentFrame, 3> = (0..pn % 3).map(|k| f(pn * 10 + k)).collect();
            d.on_sent(pn, ms(pn), 1000, true, false, &frames);
        }
        let mut log = Log::default();
        // Acknowledge every other packet, then check what the rest still carry.
        let odd: Vec<core::ops::Range<u64>> = (0..20).map(|i| 2 * i + 1..2 * i + 2).collect();
        with_ack(&odd, |a| d.on_ack(ms(41), a, &mut log)).unwrap();
        for p in d.sent.iter().flatten() {
            let pn = p.time.as_micros() / 1000;
            assert!(d.frames_of(p).copied().eq((0..pn % 3).map(|k| f(pn * 10 + k))), "packet {pn}");
        }
        with_ack(&[0..40, 0..40], |a| d.on_ack(ms(42), a, &mut log)).unwrap();
        assert!(d.sent.is_empty() && d.frames.is_empty());
        let id = |f: &SentFrame| match f {
            SentFrame::MaxStreamData { id } => *id,
            _ => u64::MAX,
        };
        log.frames.sort_by_key(id);
        let all: Vec<u64> = (0..40u64).flat_map(|pn| (0..pn % 3).map(move |k| pn * 10 + k)).collect();
        assert_eq!(log.frames.iter().map(id).collect::<Vec<_>>(), all, "every frame reported once");
        d.on_sent(40, ms(43), 1000, true, false, &[f(7)]);
        let (_, frames) = d.oldest_unacked().unwrap();
        assert!(frames.copied().eq([f(7)]));
    }

    #[test]
    fn packet_threshold_time_threshold_and_pto() {
        let mut d = LossDetector::new(RttEstimator::default(), 0);
        for pn in 0..10 {
            sent(&mut d, pn, ms(pn));
        }
        assert_eq!(d.bytes_in_flight(), 10_000);
        let mut log = Log::default();
        // Ack only 5 at 100 ms: 0, 1 and 2 are lost by packet threshold (5 ≥ pn + 3), 3 and 4 wait.
        with_ack(&[5..6, 5..6], |a| d.on_ack(ms(100), a, &mut log)).unwrap();
        assert_eq!(log.acked.len(), 1);
        assert_eq!(log.lost, [ms(0), ms(1), ms(2)]);
        assert_eq!(log.events.len(), 1);
        assert_eq!(d.bytes_in_flight(), 6000);
        // 3 and 4 are lost by time once 9/8 RTT has passed since they were sent.
        let t = d.deadline().unwrap();
        assert!(t > ms(100));
        assert!(!d.on_timeout(t, &mut log));
        assert_eq!(log.lost.len(), 4, "3 is late");
        let t = d.deadline().unwrap();
        assert!(!d.on_timeout(t, &mut log));
        assert_eq!(log.lost.len(), 5, "then 4");
        with_ack(&[6..10, 6..10], |a| d.on_ack(ms(120), a, &mut log)).unwrap();
        assert_eq!(d.bytes_in_flight(), 0);
        assert_eq!(d.deadline(), None, "nothing in flight: no timer");
        // PTO with backoff.
        sent(&mut d, 10, ms(200));
        let p1 = d.deadline().unwrap();
        assert!(d.on_timeout(p1, &mut log));
        let p2 = d.deadline().unwrap();
        assert_eq!(p2.saturating_duration_since(ms(200)), p1.saturating_duration_since(ms(200)) * 2);
        // Acknowledging something that was never sent is an error.
        assert_eq!(with_ack(&[0..100, 0..100], |a| d.on_ack(ms(300), a, &mut log)), Err(InvalidAck));
    }

    #[test]
    fn rtt_from_acks_subtracts_ack_delay() {
        let mut d = LossDetector::new(RttEstimator::default(), 0);
        sent(&mut d, 0, ms(0));
        let mut log = Log::default();
        with_ack(&[0..1, 0..1], |a| d.on_ack(ms(50), a, &mut log)).unwrap();
        assert_eq!(d.rtt.smoothed(), Duration::from_millis(50));
        assert_eq!(d.bytes_in_flight(), 0);
    }

    /// [LR-1] [LR-2] [LR-3]: packets declared lost by the packet threshold are acknowledged
    /// later: the loss is counted as spurious, the threshold widens past the observed
    /// reordering distance, and the loss event's congestion response is undone.
    #[test]
    fn spurious_loss_widens_tolerance_and_undoes_the_event() {
        let mut d = LossDetector::new(RttEstimator::default(), 0);
        for pn in 0..10 {
            sent(&mut d, pn, ms(pn));
        }
        let mut log = Log::default();
        with_ack(&[5..6, 5..6], |a| d.on_ack(ms(100), a, &mut log)).unwrap();
        assert_eq!(log.lost.len(), 3, "0, 1, 2 by the packet threshold");
        assert_eq!(log.events.len(), 1);
        // They were only reordered: their acknowledgement arrives.
        with_ack(&[0..6, 0..6], |a| d.on_ack(ms(101), a, &mut log)).unwrap();
        assert_eq!(d.spurious_losses, 3);
        assert_eq!(log.undone, 1, "the whole event was spurious: undone once");
        assert!(d.packet_threshold >= 7, "threshold {}", d.packet_threshold);
        // The same reordering distance again is no longer taken for loss.
        with_ack(&[0..6, 9..10], |a| d.on_ack(ms(102), a, &mut log)).unwrap();
        assert_eq!(log.lost.len(), 3, "6, 7, 8 wait");
    }

    /// [LR-5]: the late acknowledgement of a packet declared lost acknowledges its STREAM
    /// frame (the data queued again for retransmission need not be sent); a packet without
    /// stream data reports nothing, and a real loss is never reported as acknowledged.
    #[test]
    fn late_ack_of_a_lost_packet_acknowledges_its_stream_data() {
        let mut d = LossDetector::new(RttEstimator::default(), 0);
        let data = |pn: u64| SentFrame::Stream { id: 4, offset: pn * 1000, len: 1000, fin: false };
        for pn in 0..10 {
            if pn == 1 {
                d.on_sent(pn, ms(pn), 1000, true, false, &[SentFrame::MaxData]);
            } else {
                d.on_sent(pn, ms(pn), 1000, true, false, &[SentFrame::MaxData, data(pn)]);
            }
        }
        let mut log = Log::default();
        with_ack(&[5..6, 5..6], |a| d.on_ack(ms(100), a, &mut log)).unwrap();
        assert_eq!(log.lost.len(), 3, "0, 1, 2 by the packet threshold");
        assert!(log.late.is_empty());
        // 0 and 1 were only reordered; 2 was really lost.
        with_ack(&[0..2, 5..6], |a| d.on_ack(ms(101), a, &mut log)).unwrap();
        assert_eq!(d.spurious_losses, 2);
        assert_eq!(log.late, [data(0)], "0's stream data acknowledged late; 1 carried none; 2 not acknowledged");
    }

    /// A loss event with one real loss among reordered packets is not undone.
    #[test]
    fn partly_spurious_event_is_not_undone() {
        let mut d = LossDetector::new(RttEstimator::default(), 0);
        for pn in 0..10 {
            sent(&mut d, pn, ms(pn));
        }
        let mut log = Log::default();
        with_ack(&[5..6, 5..6], |a| d.on_ack(ms(100), a, &mut log)).unwrap();
        // 0 and 1 arrive late; 2 was really lost.
        with_ack(&[0..2, 5..6], |a| d.on_ack(ms(101), a, &mut log)).unwrap();
        assert_eq!(d.spurious_losses, 2);
        assert_eq!(log.undone, 0);
    }

    /// [LR-3]: a loss event inside the recovery period of an earlier one did not reduce the
    /// window; when it alone proves spurious, the earlier event (a real loss) is not undone.
    /// The two are undone together once all of their losses prove spurious.
    #[test]
    fn spurious_event_in_recovery_does_not_undo_the_earlier_one() {
        let mut d = LossDetector::new(RttEstimator::default(), 0);
        for pn in 0..10 {
            sent(&mut d, pn, ms(pn));
        }
        let mut log = Log::default();
        // 3-4 acknowledged: 0 and 1 lost (event A, a reduction); 2 not yet (4 < 2 + 3).
        with_ack(&[3..5, 3..5], |a| d.on_ack(ms(100), a, &mut log)).unwrap();
        assert_eq!(log.lost.len(), 2);
        // 5-9: 2 lost (event B, sent before A's recovery started: no reduction of its own).
        with_ack(&[3..10, 3..10], |a| d.on_ack(ms(101), a, &mut log)).unwrap();
        assert_eq!((log.lost.len(), log.events.len()), (3, 2));
        // 2 arrives late: B was spurious, A was not.
        with_ack(&[2..10, 2..10], |a| d.on_ack(ms(102), a, &mut log)).unwrap();
        assert_eq!(d.spurious_losses, 1);
        assert_eq!(log.undone, 0, "A's reduction stays");
        // 0 and 1 arrive too: every loss of the recovery period was spurious.
        with_ack(&[0..10, 0..10], |a| d.on_ack(ms(103), a, &mut log)).unwrap();
        assert_eq!(d.spurious_losses, 3);
        assert_eq!(log.undone, 1);
    }

    /// A spurious loss of packets 0, 1, 2 acknowledged 41 ms after they were sent (RTT
    /// samples ~35 ms): the time threshold becomes 5/4 × 41 ms and the packet threshold 7.
    fn after_a_spurious_loss() -> (LossDetector, Log) {
        let mut d = LossDetector::new(RttEstimator::default(), 0);
        for pn in 0..10 {
            sent(&mut d, pn, ms(pn));
        }
        let mut log = Log::default();
        with_ack(&[5..6, 5..6], |a| d.on_ack(ms(40), a, &mut log)).unwrap();
        assert_eq!(log.lost.len(), 3);
        with_ack(&[0..10, 0..10], |a| d.on_ack(ms(41), a, &mut log)).unwrap();
        assert_eq!(d.spurious_losses, 3);
        assert_eq!(d.reorder_delay, Duration::from_micros(51_250));
        assert_eq!(d.packet_threshold, 7);
        (d, log)
    }

    /// [LR-2]: the cap on one sample does not lower a tolerance already learned, although
    /// the RTT samples (taken from the packets that overtook) have become small.
    #[test]
    fn low_rtt_samples_do_not_lower_the_learned_tolerance() {
        let (mut d, mut log) = after_a_spurious_loss();
        // Fast samples: srtt falls to a few ms.
        for pn in 10..40 {
            sent(&mut d, pn, ms(50 + pn));
            with_ack(&[pn..pn + 1, pn..pn + 1], |a| d.on_ack(ms(51 + pn), a, &mut log)).unwrap();
        }
        assert!(d.rtt.smoothed() < Duration::from_millis(5), "srtt {:?}", d.rtt.smoothed());
        // Another spurious loss, reordered by 8 packets and acknowledged 12 ms late.
        for pn in 40..60 {
            sent(&mut d, pn, ms(100 + pn));
        }
        with_ack(&[50..60, 50..60], |a| d.on_ack(ms(160), a, &mut log)).unwrap();
        let lost = log.lost.len();
        assert!(lost > 3, "40.. lost by the packet threshold");
        with_ack(&[40..60, 40..60], |a| d.on_ack(ms(161), a, &mut log)).unwrap();
        assert!(d.spurious_losses > 3);
        assert_eq!(d.reorder_delay, Duration::from_micros(51_250), "not lowered to the small cap");
        assert!(d.packet_threshold > 7);
    }

    /// [LR-2]: the packet threshold follows reordering distances past 64 (up to 1024).
    #[test]
    fn packet_threshold_follows_long_reordering() {
        let mut d = LossDetector::new(RttEstimator::default(), 0);
        for pn in 0..200 {
            sent(&mut d, pn, ms(pn / 10));
        }
        let mut log = Log::default();
        with_ack(&[150..151, 150..151], |a| d.on_ack(ms(30), a, &mut log)).unwrap();
        assert_eq!(log.lost.len(), 148, "0..=147 by the packet threshold 3");
        with_ack(&[0..151, 0..151], |a| d.on_ack(ms(31), a, &mut log)).unwrap();
        // The oldest 128 declared losses are remembered: 20..=147, the farthest 131 back.
        assert_eq!(d.spurious_losses, 128);
        assert_eq!(d.packet_threshold, 132);
    }

    /// [LR-6]: packets overdue by the base time threshold (9/8 RTT) but within the widened
    /// one are not counted against the window (up to half of it), and are still declared
    /// lost when the widened threshold passes.
    #[test]
    fn overdue_packets_do_not_hold_the_window() {
        let (mut d, mut log) = after_a_spurious_loss();
        for pn in 10..13 {
            sent(&mut d, pn, ms(87 + pn));
        }
        sent(&mut d, 13, ms(110));
        // 13 acknowledged 30 ms after it was sent: 10-12 (41-43 ms old) are past 9/8 × RTT
        // (about 38 ms) but not past the widened 51.25 ms, nor 7 packets behind.
        with_ack(&[13..14, 13..14], |a| d.on_ack(ms(140), a, &mut log)).unwrap();
        assert!(d.base_loss_delay() < Duration::from_millis(41), "base {:?}", d.base_loss_delay());
        assert_eq!(log.lost.len(), 3, "nothing new declared lost");
        assert_eq!(d.bytes_in_flight(), 3000);
        assert_eq!(d.bytes_against_window(100_000), 0);
        assert_eq!(d.bytes_against_window(4000), 1000, "at most half the window is left out");
        // The widened threshold passes: they are lost after all, nothing is overdue.
        let t = d.deadline().unwrap();
        assert_eq!(t, ms(97).saturating_add(Duration::from_micros(51_250)));
        assert!(!d.on_timeout(t, &mut log));
        assert_eq!(log.lost.len(), 4, "10");
        assert_eq!((d.bytes_in_flight(), d.bytes_against_window(100_000)), (2000, 0), "11, 12 still overdue");
        for _ in 0..2 {
            let t = d.deadline().unwrap();
            assert!(!d.on_timeout(t, &mut log));
        }
        assert_eq!(log.lost.len(), 6, "then 11 and 12");
        assert_eq!((d.bytes_in_flight(), d.bytes_against_window(100_000)), (0, 0));
    }
}
