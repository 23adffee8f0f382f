//! Simulated links: delay, jitter, random and bursty loss, duplication,
//! reordering, corruption, MTU cap, blackholes and a bottleneck queue.

use alloc::vec::Vec;
use core::time::Duration;

use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha20Rng;

use crate::time::{duration_micros, Instant};

/// Gilbert–Elliott two-state loss: bursts of consecutive drops.
#[derive(Clone, Copy, Debug)]
pub struct BurstLoss {
    /// Probability of moving from the good to the bad state per packet.
    pub enter_bad: f64,
    /// Probability of leaving the bad state per packet (mean burst = 1 / this).
    pub leave_bad: f64,
}

impl BurstLoss {
    /// Bursty loss averaging `rate` with bursts of `mean_burst` packets.
    pub fn with_rate(rate: f64, mean_burst: f64) -> Self {
        let leave_bad = 1.0 / mean_burst.max(1.0);
        let enter_bad = rate * leave_bad / (1.0 - rate).max(1e-9);
        Self { enter_bad, leave_bad }
    }
}

/// A rate limit with a drop-tail queue.
#[derive(Clone, Copy, Debug)]
pub struct Bottleneck {
    /// Bits per second.
    pub rate_bps: u64,
    /// Queue capacity in bytes.
    pub queue_bytes: usize,
}

/// One direction of a link.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way delay.
    pub delay: Duration,
    /// Extra uniform random delay in `[0, jitter)`.
    pub jitter: Duration,
    /// Independent random loss probability.
    pub loss: f64,
    /// Bursty loss on top of `loss`.
    pub burst: Option<BurstLoss>,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability a datagram is held back by one extra `delay` (reordering).
    pub reorder: f64,
    /// Probability one bit of a datagram is flipped.
    pub corrupt: f64,
    /// Datagrams longer than this are dropped.
    pub mtu: Option<usize>,
    /// Windows `[start, end)` during which everything is dropped.
    pub blackholes: Vec<(Instant, Instant)>,
    /// Rate limit and queue.
    pub bottleneck: Option<Bottleneck>,
    /// Use the world's shared bottleneck with this index (several links, one queue)
    /// instead of `bottleneck`.
    pub shared_bottleneck: Option<usize>,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            burst: None,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            mtu: None,
            blackholes: Vec::new(),
            bottleneck: None,
            shared_bottleneck: None,
        }
    }
}

/// What the link did with one datagram.
#[derive(Clone, Debug, Default)]
pub(crate) struct Fate {
    /// Delivery times (empty: lost; two: duplicated).
    pub(crate) deliveries: heapless::Vec<Instant, 2>,
    /// Bit to flip, if corrupted.
    pub(crate) flip_bit: Option<usize>,
}

/// A bottleneck's running state: when its transmitter is free again.
#[derive(Clone, Debug)]
pub(crate) struct Queue {
    pub(crate) config: Bottleneck,
    busy_until: Instant,
}

impl Queue {
    pub(crate) fn new(config: Bottleneck) -> Self {
        Self { config, busy_until: Instant::ZERO }
    }

    /// When a datagram of `len` bytes offered at `now` has left the queue, or `None` if it is dropped (tail).
    fn admit(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let rate = self.config.rate_bps.max(1);
        let queued_us = duration_micros(self.busy_until.saturating_duration_since(now));
        let queued_bytes = (u128::from(queued_us) * u128::from(rate) / 8_000_000) as usize;
        if queued_bytes + len > self.config.queue_bytes {
            return None;
        }
        let start = self.busy_until.max(now);
        let tx_us = (len as u64 * 8 * 1_000_000).div_ceil(rate);
        self.busy_until = start.saturating_add(Duration::from_micros(tx_us));
        Some(self.busy_until)
    }
}

/// A link's running state.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    pub(crate) config: LinkConfig,
    bad_state: bool,
    queue: Option<Queue>,
    /// Largest datagram offered to this link (even if dropped).
    pub(crate) largest_offered: usize,
    /// Datagrams offered / delivered.
    pub(crate) offered: u64,
    pub(crate) delivered_bytes: u64,
}

pub(crate) fn chance(rng: &mut ChaCha20Rng, p: f64) -> bool {
    p > 0.0 && (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
}

impl Link {
    pub(crate) fn new(config: LinkConfig) -> Self {
        let queue = config.bottleneck.map(Queue::new);
        Self { config, bad_state: false, queue, largest_offered: 0, offered: 0, delivered_bytes: 0 }
    }

    /// Decides the fate of a datagram of `len` bytes sent at `now`.
    pub(crate) fn offer(&mut self, now: Instant, len: usize, rng: &mut ChaCha20Rng, shared: &mut [Queue]) -> Fate {
        let c = &self.config;
        self.offered += 1;
        self.largest_offered = self.largest_offered.max(len);
        let mut fate = Fate::default();
        if c.mtu.is_some_and(|m| len > m) {
            return fate;
        }
        if c.blackholes.iter().any(|(s, e)| *s <= now && now < *e) {
            return fate;
        }
        if let Some(b) = c.burst {
            self.bad_state = if self.bad_state { !chance(rng, b.leave_bad) } else { chance(rng, b.enter_bad) };
            if self.bad_state {
                return fate;
            }
        }
        if chance(rng, c.loss) {
            return fate;
        }
        let mut depart = now;
        let queue = match c.shared_bottleneck {
            Some(i) => shared.get_mut(i),
            None => self.queue.as_mut(),
        };
        if let Some(q) = queue {
            match q.admit(now, len) {
                Some(t) => depart = t,
                None => return fate,
            }
        }
        let mut at = depart.saturating_add(c.delay);
        if !c.jitter.is_zero() {
            let j = rng.next_u64() % duration_micros(c.jitter).max(1);
            at = at.saturating_add(Duration::from_micros(j));
        }
        if chance(rng, c.reorder) {
            at = at.saturating_add(c.delay.max(Duration::from_millis(1)));
        }
        if chance(rng, c.corrupt) && len > 0 {
            fate.flip_bit = Some((rng.next_u64() % (len as u64 * 8)) as usize);
        }
        let _ = fate.deliveries.push(at);
        if chance(rng, c.duplicate) {
            let _ = fate.deliveries.push(at.saturating_add(Duration::from_micros(1 + rng.next_u64() % 5_000)));
        }
        self.delivered_bytes += len as u64;
        fate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn run(config: LinkConfig, n: usize, len: usize, spacing: Duration) -> (Link, Vec<Fate>) {
        let mut link = Link::new(config);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let fates = (0..n)
            .map(|i| link.offer(Instant::ZERO.saturating_add(spacing * i as u32), len, &mut rng, &mut []))
            .collect();
        (link, fates)
    }

    #[test]
    fn burst_loss_matches_rate_and_burst_length() {
        let (_, fates) = run(
            LinkConfig { burst: Some(BurstLoss::with_rate(0.02, 3.0)), ..Default::default() },
            200_000,
            100,
            Duration::from_micros(10),
        );
        let lost: Vec<bool> = fates.iter().map(|f| f.deliveries.is_empty()).collect();
        let rate = lost.iter().filter(|l| **l).count() as f64 / lost.len() as f64;
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count();
        let mean_burst = lost.iter().filter(|l| **l).count() as f64 / bursts as f64;
        assert!((0.015..0.025).contains(&rate), "loss rate {rate}");
        assert!((2.5..3.5).contains(&mean_burst), "mean burst {mean_burst}");
    }

    #[test]
    fn bottleneck_paces_and_drops_tail() {
        // 8 Mbit/s = 1 byte/µs: 1000-byte packets leave 1 ms apart; the queue holds 10.
        let b = Bottleneck { rate_bps: 8_000_000, queue_bytes: 10_000 };
        let (_, fates) = run(
            LinkConfig { bottleneck: Some(b), delay: Duration::ZERO, ..Default::default() },
            50,
            1000,
            Duration::ZERO,
        );
        let delivered: Vec<Instant> = fates.iter().filter_map(|f| f.deliveries.first().copied()).collect();
        assert_eq!(delivered.len(), 10, "drop-tail beyond the queue");
        for (i, t) in delivered.iter().enumerate() {
            assert_eq!(t.as_micros(), 1000 * (i as u64 + 1));
        }
    }

    #[test]
    fn mtu_blackhole_duplicate_corrupt() {
        let (link, fates) = run(LinkConfig { mtu: Some(1200), ..Default::default() }, 3, 1300, Duration::ZERO);
        assert!(fates.iter().all(|f| f.deliveries.is_empty()));
        assert_eq!(link.largest_offered, 1300);
        let hole = alloc::vec![(Instant::ZERO, Instant::from_micros(50))];
        let (_, fates) = run(LinkConfig { blackholes: hole, ..Default::default() }, 10, 10, Duration::from_micros(10));
        assert_eq!(fates.iter().filter(|f| f.deliveries.is_empty()).count(), 5);
        let (_, fates) = run(LinkConfig { duplicate: 1.0, corrupt: 1.0, ..Default::default() }, 10, 10, Duration::ZERO);
        assert!(fates.iter().all(|f| f.deliveries.len() == 2 && f.flip_bit.is_some_and(|b| b < 80)));
    }
}
