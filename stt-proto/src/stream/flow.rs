//! Receive-side flow-control windows with auto-tuning toward the bandwidth-delay
//! product (spec [ST-5]).

use core::time::Duration;

use crate::time::Instant;

/// One receive window (a stream's or the session's).
#[derive(Debug)]
pub(crate) struct RecvWindow {
    window: u64,
    max_window: u64,
    limit: u64,
    last_update: Instant,
    pending: bool,
}

impl RecvWindow {
    pub(crate) fn new(window: u64, max_window: u64, now: Instant) -> Self {
        Self { window, max_window: max_window.max(window), limit: window, last_update: now, pending: false }
    }

    /// The limit advertised to the peer.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn is_pending(&self) -> bool {
        self.pending
    }

    pub(crate) fn mark_pending(&mut self) {
        self.pending = true;
    }

    pub(crate) fn sent(&mut self) {
        self.pending = false;
    }

    /// The application consumed up to `consumed`. When more than half the window is
    /// used, the limit moves to `consumed + window`; if that happens within two RTTs of
    /// the previous move, the window doubles (up to its maximum). Returns whether an
    /// update is now pending.
    pub(crate) fn on_consumed(&mut self, now: Instant, srtt: Duration, consumed: u64) -> bool {
        if self.limit.saturating_sub(consumed) >= self.window / 2 {
            return self.pending;
        }
        if now.saturating_duration_since(self.last_update) < srtt * 2 {
            self.window = (self.window * 2).min(self.max_window);
        }
        self.last_update = now;
        self.limit = consumed + self.window;
        self.pending = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_when_updates_come_fast() {
        let rtt = Duration::from_millis(100);
        let mut w = RecvWindow::new(1000, 8000, Instant::ZERO);
        assert!(!w.on_consumed(Instant::ZERO, rtt, 400), "less than half used");
        assert!(w.on_consumed(Instant::from_micros(10_000), rtt, 600));
        assert_eq!(w.limit(), 600 + 2000, "doubled: updates within 2 RTT");
        w.sent();
        assert!(w.on_consumed(Instant::from_micros(5_000_000), rtt, 1700));
        assert_eq!(w.limit(), 1700 + 2000, "slow consumer: no growth");
    }
}
