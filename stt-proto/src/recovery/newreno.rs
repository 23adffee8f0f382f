//! NewReno (RFC 9002 §7).

use super::cc::{initial_window, minimum_window, CongestionControl};
use super::rtt::RttEstimator;
use crate::time::Instant;

/// NewReno congestion control.
#[derive(Debug)]
pub(crate) struct NewReno {
    mtu: u64,
    window: u64,
    ssthresh: u64,
    recovery_start: Option<Instant>,
    acked_in_ca: u64,
    /// Window, ssthresh and recovery start before the last loss event (for undo).
    undo: Option<(u64, u64, Option<Instant>)>,
}

impl NewReno {
    pub(crate) fn new(mtu: u64) -> Self {
        Self { mtu, window: initial_window(mtu), ssthresh: u64::MAX, recovery_start: None, acked_in_ca: 0, undo: None }
    }
}

impl CongestionControl for NewReno {
    fn window(&self) -> u64 {
        self.window
    }

    fn on_ack(&mut self, _now: Instant, sent: Instant, bytes: u64, _rtt: &RttEstimator, app_limited: bool) {
        if app_limited || self.recovery_start.is_some_and(|r| sent <= r) {
            return;
        }
        if self.window < self.ssthresh {
            self.window += bytes;
        } else {
            self.acked_in_ca += bytes;
            if self.acked_in_ca >= self.window {
                self.acked_in_ca -= self.window;
                self.window += self.mtu;
            }
        }
    }

    fn on_congestion_event(&mut self, now: Instant, sent: Instant, persistent: bool) -> bool {
        if persistent {
            self.window = minimum_window(self.mtu);
            self.recovery_start = Some(now);
            // Persistent congestion cannot be undone (spec [LR-4]).
            self.undo = None;
            return true;
        }
        if self.recovery_start.is_some_and(|r| sent <= r) {
            return false;
        }
        self.undo = Some((self.window, self.ssthresh, self.recovery_start));
        self.recovery_start = Some(now);
        self.ssthresh = (self.window / 2).max(minimum_window(self.mtu));
        self.window = self.ssthresh;
        self.acked_in_ca = 0;
        true
    }

    fn on_spurious_congestion(&mut self) {
        if let Some((window, ssthresh, recovery_start)) = self.undo.take() {
            self.window = self.window.max(window);
            self.ssthresh = ssthresh;
            self.recovery_start = recovery_start;
        }
    }

    fn on_mtu_change(&mut self, mtu: u64) {
        self.mtu = mtu;
        self.window = self.window.max(minimum_window(mtu));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn slow_start_halving_and_avoidance() {
        let mut c = NewReno::new(1200);
        let rtt = RttEstimator::default();
        let t = |ms: u64| Instant::from_micros(ms * 1000);
        assert_eq!(c.window(), 12_000);
        c.on_ack(t(10), t(0), 12_000, &rtt, false);
        assert_eq!(c.window(), 24_000, "slow start doubles per window");
        assert!(c.on_congestion_event(t(20), t(15), false));
        assert_eq!(c.window(), 12_000);
        assert!(!c.on_congestion_event(t(21), t(16), false), "no reduction of its own");
        assert_eq!(c.window(), 12_000, "one reduction per recovery period");
        c.on_ack(t(30), t(25), 12_000, &rtt, false);
        assert_eq!(c.window(), 13_200, "one MTU per window in avoidance");
        c.on_congestion_event(t(40), t(35), true);
        assert_eq!(c.window(), 2400);
        c.on_spurious_congestion();
        assert_eq!(c.window(), 2400, "persistent congestion is not undone");
        let _ = Duration::ZERO;
    }
}
