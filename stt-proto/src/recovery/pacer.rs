//! Pacing: spread a window's worth of packets over the RTT (RFC 9002 §7.7).

use core::time::Duration;

use crate::time::{duration_micros, Instant};

/// A token bucket refilled at 1.25 × cwnd / srtt, holding a burst of the larger of 10
/// datagrams and 2 ms at that rate, at most 64 datagrams (spec [CC-2]). On short paths the
/// larger burst lets a driver hand whole GSO trains to the kernel per wake-up.
#[derive(Debug)]
pub(crate) struct Pacer {
    tokens: u64,
    last: Instant,
}

impl Pacer {
    pub(crate) fn new(now: Instant) -> Self {
        Self { tokens: u64::MAX, last: now }
    }

    fn capacity(mtu: u64, window: u64, srtt_us: u64) -> u64 {
        let two_ms = u128::from(window) * 5 / 4 * 2000 / u128::from(srtt_us.max(1));
        u64::try_from(two_ms).unwrap_or(u64::MAX).clamp(10 * mtu, 64 * mtu)
    }

    /// When a datagram of `bytes` may leave: `None` for now, else the time to wait for.
    #[inline]
    pub(crate) fn delay(&mut self, now: Instant, bytes: u64, window: u64, srtt: Duration, mtu: u64) -> Option<Instant> {
        let srtt_us = duration_micros(srtt).max(1);
        let cap = Self::capacity(mtu, window, srtt_us).max(bytes);
        // Rate in bytes per µs, scaled: window · 5/4 / srtt.
        let elapsed = duration_micros(now.saturating_duration_since(self.last));
        let refill = u128::from(elapsed) * u128::from(window) * 5 / 4 / u128::from(srtt_us);
        self.tokens = u64::try_from(u128::from(self.tokens.min(cap)) + refill).unwrap_or(u64::MAX).min(cap);
        self.last = self.last.max(now);
        if self.tokens >= bytes {
            return None;
        }
        let missing = u128::from(bytes - self.tokens);
        let rate_num = u128::from(window.max(1)) * 5;
        let wait_us = (missing * u128::from(srtt_us) * 4).div_ceil(rate_num);
        Some(now.saturating_add(Duration::from_micros(u64::try_from(wait_us).unwrap_or(u64::MAX))))
    }

    /// A datagram of `bytes` left.
    pub(crate) fn on_sent(&mut self, bytes: u64) {
        self.tokens = self.tokens.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_after_the_burst() {
        let mut p = Pacer::new(Instant::ZERO);
        let srtt = Duration::from_millis(100);
        let (window, mtu) = (100_000u64, 1000u64);
        let mut sent = 0;
        while p.delay(Instant::ZERO, mtu, window, srtt, mtu).is_none() {
            p.on_sent(mtu);
            sent += 1;
        }
        assert_eq!(sent, 10, "burst of ten");
        // 1.25 × 100 kB / 100 ms = 1.25 bytes/µs: 1000 bytes need 800 µs.
        let at = p.delay(Instant::ZERO, mtu, window, srtt, mtu).unwrap();
        assert_eq!(at.as_micros(), 800);
        assert!(p.delay(at, mtu, window, srtt, mtu).is_none());
    }

    #[test]
    fn short_paths_get_bigger_bursts() {
        let mut p = Pacer::new(Instant::ZERO);
        // 1 MB window over 100 µs: 2 ms at the pacing rate is far above the cap.
        let (srtt, window, mtu) = (Duration::from_micros(100), 1_000_000u64, 1452u64);
        let mut sent = 0;
        while p.delay(Instant::ZERO, mtu, window, srtt, mtu).is_none() {
            p.on_sent(mtu);
            sent += 1;
        }
        assert_eq!(sent, 64, "capped at 64 datagrams");
        // 50 ms path, 1 MB window: 2 ms ≈ 50 kB ≈ 34 datagrams.
        let mut p = Pacer::new(Instant::ZERO);
        let mut sent = 0;
        while p.delay(Instant::ZERO, mtu, window, Duration::from_millis(50), mtu).is_none() {
            p.on_sent(mtu);
            sent += 1;
        }
        assert_eq!(sent, 34);
    }
}
