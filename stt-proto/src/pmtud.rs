//! Path MTU discovery (RFC 8899, DPLPMTUD): start at 1200 bytes, binary-search upward
//! with padded probe packets; a size is confirmed when a probe is acknowledged and
//! ruled out after three lost probes. The search runs once per session.

use crate::time::Instant;

/// Lost probes of one size before the size is ruled out.
const MAX_PROBES: u8 = 3;

/// The search state.
#[derive(Clone, Debug)]
pub(crate) struct Pmtud {
    /// Largest confirmed size.
    confirmed: u64,
    /// Smallest size known (or assumed) not to pass.
    too_big: u64,
    in_flight: Option<u64>,
    fails: u8,
    next_probe: Option<Instant>,
}

impl Pmtud {
    /// A search from `base` up to `ceiling` (inclusive).
    pub(crate) fn new(base: u64, ceiling: u64, now: Instant) -> Self {
        Self { confirmed: base, too_big: ceiling.max(base) + 1, in_flight: None, fails: 0, next_probe: Some(now) }
    }

    #[cfg(test)]
    pub(crate) fn mtu(&self) -> u64 {
        self.confirmed
    }

    /// The size to probe now, if a probe is due.
    pub(crate) fn probe_due(&self, now: Instant) -> Option<u64> {
        if self.in_flight.is_some() || self.too_big - self.confirmed <= 1 {
            return None;
        }
        self.next_probe.filter(|t| *t <= now)?;
        Some(self.confirmed + (self.too_big - self.confirmed) / 2)
    }

    /// When the next probe may go (for deadlines).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.in_flight.is_some() || self.too_big - self.confirmed <= 1 {
            return None;
        }
        self.next_probe
    }

    pub(crate) fn on_probe_sent(&mut self, size: u64) {
        self.in_flight = Some(size);
    }

    /// A probe was acknowledged: returns the new MTU if it grew.
    pub(crate) fn on_probe_acked(&mut self, size: u64, now: Instant) -> Option<u64> {
        self.in_flight = None;
        self.fails = 0;
        self.next_probe = Some(now);
        (size > self.confirmed).then(|| {
            self.confirmed = size;
            size
        })
    }

    /// A probe was lost.
    pub(crate) fn on_probe_lost(&mut self, size: u64, now: Instant) {
        self.in_flight = None;
        self.fails += 1;
        self.next_probe = Some(now);
        if self.fails >= MAX_PROBES {
            self.fails = 0;
            self.too_big = self.too_big.min(size).max(self.confirmed + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a path that passes ≤ 1452 bytes, the search ends at exactly 1452.
    #[test]
    fn finds_exact_path_mtu() {
        let mut p = Pmtud::new(1200, 1500, Instant::ZERO);
        let mut steps = 0;
        while let Some(size) = p.probe_due(Instant::ZERO) {
            p.on_probe_sent(size);
            if size <= 1452 {
                p.on_probe_acked(size, Instant::ZERO);
            } else {
                p.on_probe_lost(size, Instant::ZERO);
            }
            steps += 1;
            assert!(steps < 100);
        }
        assert_eq!(p.mtu(), 1452);
        assert!(p.deadline().is_none());
    }
}
