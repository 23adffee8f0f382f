//! The receiving side of acknowledgements: which packet numbers arrived, and when
//! an ACK is due (RFC 9000 §13.2).

use core::time::Duration;

use crate::range_set::RangeSet;
use crate::time::Instant;
use crate::wire::frame::MAX_ACK_RANGES;

/// The largest delay before acknowledging an ack-eliciting packet (sent in transport
/// parameters as a constant of v1).
pub(crate) const MAX_ACK_DELAY: Duration = Duration::from_millis(25);
/// Ack-eliciting packets received before an ACK is sent at once.
const ACK_ELICITING_THRESHOLD: u32 = 2;
/// Until this many packet numbers in a row arrived (at the session's start, and again after
/// every gap: a loss or a reordering), a packet is acknowledged at the next chance even
/// alone: the sender's window grows, or recovers, on these ACKs. After that, an ACK that
/// is not yet due only rides in a packet sent anyway.
const EAGER_ACKS: u64 = 32;

/// Received packet numbers and the ACK timer.
#[derive(Debug, Default)]
pub(crate) struct AckTracker {
    received: RangeSet,
    largest_at: Option<Instant>,
    unacked_eliciting: u32,
    deadline: Option<Instant>,
}

impl AckTracker {
    /// Records an authenticated packet.
    pub(crate) fn on_packet(&mut self, now: Instant, pn: u64, ack_eliciting: bool) {
        let in_order = self.received.max().is_none_or(|m| pn == m + 1);
        if self.received.max().is_none_or(|m| pn > m) {
            self.largest_at = Some(now);
        }
        self.received.insert(pn..pn + 1);
        self.received.truncate_low(MAX_ACK_RANGES as usize + 1);
        if !ack_eliciting {
            return;
        }
        self.unacked_eliciting += 1;
        if !in_order || self.unacked_eliciting >= ACK_ELICITING_THRESHOLD {
            self.deadline = Some(now);
        } else if self.deadline.is_none() {
            self.deadline = Some(now.saturating_add(MAX_ACK_DELAY));
        }
    }

    /// When an ACK must go out (now, or after the delay).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether an ACK should ride in the next packet anyway (something to acknowledge).
    pub(crate) fn has_unacked(&self) -> bool {
        self.unacked_eliciting > 0
    }

    /// Whether an ACK that is not yet due still earns a packet of its own: fewer than
    /// [`EAGER_ACKS`] packet numbers in a row up to the largest received.
    pub(crate) fn eager(&self) -> bool {
        self.received.last().is_none_or(|r| r.end - r.start < EAGER_ACKS)
    }

    /// The ranges to put in an ACK, and the delay since the largest arrived.
    pub(crate) fn ack(&self, now: Instant) -> Option<(&RangeSet, u64)> {
        let at = self.largest_at?;
        let delay = u64::try_from(now.saturating_duration_since(at).as_micros()).unwrap_or(u64::MAX);
        Some((&self.received, delay))
    }

    /// An ACK was sent.
    pub(crate) fn on_ack_sent(&mut self) {
        self.unacked_eliciting = 0;
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_timing() {
        let mut t = AckTracker::default();
        let t0 = Instant::ZERO;
        t.on_packet(t0, 0, true);
        assert_eq!(t.deadline(), Some(t0.saturating_add(MAX_ACK_DELAY)), "one packet: delayed");
        t.on_packet(t0, 1, true);
        assert_eq!(t.deadline(), Some(t0), "two: at once");
        t.on_ack_sent();
        t.on_packet(t0, 5, true);
        assert_eq!(t.deadline(), Some(t0), "a gap: at once");
        t.on_ack_sent();
        t.on_packet(t0, 6, false);
        assert_eq!(t.deadline(), None, "non-eliciting: none");
        assert_eq!(t.ack(t0).unwrap().0.iter().collect::<alloc::vec::Vec<_>>(), [0..2, 5..7]);
    }
}
