//! Round-trip time estimation (RFC 9002 §5; handshake samples until loss recovery adds ACKs).

use core::time::Duration;

/// Initial RTT before any sample (RFC 9002 §6.2.2).
pub(crate) const INITIAL_RTT: Duration = Duration::from_millis(333);
/// Timer granularity.
const GRANULARITY: Duration = Duration::from_millis(1);

/// Smoothed RTT and variance (RFC 9002 §5).
#[derive(Clone, Copy, Debug)]
pub struct RttEstimator {
    smoothed: Duration,
    var: Duration,
    min: Duration,
    latest: Duration,
    has_sample: bool,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self::INITIAL
    }
}

impl RttEstimator {
    /// The estimate before any sample (RFC 9002 §6.2.2).
    pub(crate) const INITIAL: Self = Self {
        smoothed: INITIAL_RTT,
        var: Duration::from_micros(INITIAL_RTT.as_micros() as u64 / 2),
        min: Duration::MAX,
        latest: INITIAL_RTT,
        has_sample: false,
    };

    /// Adds one sample from an ACK: `ack_delay` (capped by the caller at the peer's
    /// maximum) is subtracted when that leaves at least `min_rtt` (RFC 9002 §5.3).
    pub(crate) fn update_with_ack_delay(&mut self, latest: Duration, ack_delay: Duration) {
        self.latest = latest;
        self.min = self.min.min(latest);
        let adjusted = if latest >= self.min + ack_delay { latest - ack_delay } else { latest };
        self.smooth(adjusted);
    }

    /// Adds one sample with no acknowledgement delay (handshake round trips).
    pub(crate) fn update(&mut self, sample: Duration) {
        self.latest = sample;
        self.min = self.min.min(sample);
        self.smooth(sample);
    }

    fn smooth(&mut self, sample: Duration) {
        if !self.has_sample {
            self.smoothed = sample;
            self.var = sample / 2;
            self.has_sample = true;
            return;
        }
        let diff = self.smoothed.abs_diff(sample);
        self.var = (self.var * 3 + diff) / 4;
        self.smoothed = (self.smoothed * 7 + sample) / 8;
    }

    /// The most recent sample.
    pub fn latest(&self) -> Duration {
        self.latest
    }

    /// Whether any sample was taken.
    pub(crate) fn has_sample(&self) -> bool {
        self.has_sample
    }

    /// Smoothed RTT.
    pub fn smoothed(&self) -> Duration {
        self.smoothed
    }

    /// Probe timeout: `srtt + max(4·rttvar, granularity)`.
    pub fn pto(&self) -> Duration {
        self.smoothed + (self.var * 4).max(GRANULARITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_then_smoothing() {
        let mut r = RttEstimator::default();
        assert_eq!(r.smoothed(), INITIAL_RTT);
        r.update(Duration::from_millis(100));
        assert_eq!(r.smoothed(), Duration::from_millis(100));
        assert_eq!(r.pto(), Duration::from_millis(300));
        r.update(Duration::from_millis(180));
        assert_eq!(r.smoothed(), Duration::from_millis(110));
        assert_eq!(r.var, Duration::from_millis(57) + Duration::from_micros(500));
    }
}
