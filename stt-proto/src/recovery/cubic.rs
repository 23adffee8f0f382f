//! CUBIC congestion control (RFC 9438), in bytes.

use core::time::Duration;

use super::cc::{initial_window, minimum_window, CongestionControl};
use super::rtt::RttEstimator;
use crate::time::Instant;

/// CUBIC's scaling constant C (segments / s³).
const C: f64 = 0.4;
/// Multiplicative decrease factor β.
const BETA: f64 = 0.7;
/// Additive increase of the Reno-friendly estimate: 3(1 − β)/(1 + β).
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// Cube root by Newton's method (`core` has no `cbrt`).
pub(crate) fn cbrt(x: f64) -> f64 {
    if x == 0.0 {
        return 0.0;
    }
    let (sign, a) = if x < 0.0 { (-1.0, -x) } else { (1.0, x) };
    let mut y = if a > 1.0 { a / 3.0 } else { 1.0 };
    for _ in 0..100 {
        let next = (2.0 * y + a / (y * y)) / 3.0;
        if (next - y).abs() <= 1e-12 * next {
            y = next;
            break;
        }
        y = next;
    }
    sign * y
}

/// `W_cubic(t) = C·(t − K)³ + W_max` in segments (RFC 9438 eq. 1).
pub(crate) fn w_cubic(t: f64, k: f64, w_max: f64) -> f64 {
    let d = t - k;
    C * d * d * d + w_max
}

/// `K = ∛((W_max − cwnd_epoch) / C)` in seconds (RFC 9438 eq. 2).
pub(crate) fn k_of(w_max: f64, cwnd_epoch: f64) -> f64 {
    cbrt(((w_max - cwnd_epoch) / C).max(0.0))
}

/// CUBIC state. (`Debug` by hand, integers only: a derived one would format `f64`s, which
/// links float formatting, ~13 KiB of flash on a Cortex-M, through the `dyn
/// CongestionControl` vtable even if nothing prints it.)
pub(crate) struct Cubic {
    mtu: u64,
    window: u64,
    ssthresh: u64,
    recovery_start: Option<Instant>,
    epoch_start: Option<Instant>,
    /// Window before the last reduction, in segments.
    w_max: f64,
    k: f64,
    /// Reno-friendly estimate, in segments.
    w_est: f64,
    /// Fractional window growth carried between ACKs, in bytes.
    carry: f64,
    /// The state before the last loss event, for undoing a spurious one.
    undo: Option<Snapshot>,
}

impl core::fmt::Debug for Cubic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cubic")
            .field("mtu", &self.mtu)
            .field("window", &self.window)
            .field("ssthresh", &self.ssthresh)
            .field("in_recovery", &self.recovery_start.is_some())
            .field("can_undo", &self.undo.is_some())
            .finish_non_exhaustive()
    }
}

/// What a loss event changed.
#[derive(Clone, Copy)]
struct Snapshot {
    window: u64,
    ssthresh: u64,
    recovery_start: Option<Instant>,
    epoch_start: Option<Instant>,
    w_max: f64,
    k: f64,
    w_est: f64,
}

impl Cubic {
    pub(crate) fn new(mtu: u64) -> Self {
        Self {
            mtu,
            window: initial_window(mtu),
            ssthresh: u64::MAX,
            recovery_start: None,
            epoch_start: None,
            w_max: 0.0,
            k: 0.0,
            w_est: 0.0,
            carry: 0.0,
            undo: None,
        }
    }

    fn segments(&self) -> f64 {
        self.window as f64 / self.mtu as f64
    }
}

impl CongestionControl for Cubic {
    fn window(&self) -> u64 {
        self.window
    }

    fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64, rtt: &RttEstimator, app_limited: bool) {
        if app_limited || self.recovery_start.is_some_and(|r| sent <= r) {
            return;
        }
        if self.window < self.ssthresh {
            self.window += bytes;
            return;
        }
        let cwnd = self.segments();
        let epoch = *self.epoch_start.get_or_insert_with(|| {
            self.k = if self.w_max > cwnd { k_of(self.w_max, cwnd) } else { 0.0 };
            self.w_est = cwnd;
            now
        });
        if self.w_max < cwnd && self.k == 0.0 {
            self.w_max = cwnd;
        }
        let t = now.saturating_duration_since(epoch).as_secs_f64();
        let srtt = rtt.smoothed().max(Duration::from_millis(1)).as_secs_f64();
        let acked = bytes as f64 / self.mtu as f64;
        // Reno-friendly region (RFC 9438 §4.3).
        let alpha = if self.w_est >= self.w_max { 1.0 } else { ALPHA };
        self.w_est += alpha * acked / cwnd;
        let cubic_now = w_cubic(t, self.k, self.w_max);
        let grow_to = if cubic_now < self.w_est {
            self.w_est
        } else {
            // Concave / convex region (RFC 9438 §4.4, §4.5).
            // max/min, not `f64::clamp`: clamp asserts (a panic path whose message formats
            // floats, ~13 KiB of flash on a Cortex-M).
            w_cubic(t + srtt, self.k, self.w_max).max(cwnd).min(1.5 * cwnd)
        };
        let increase = ((grow_to - cwnd) * acked / cwnd).max(0.0) * self.mtu as f64 + self.carry;
        let whole = (increase as u64) as f64;
        self.carry = increase - whole;
        self.window += whole as u64;
    }

    fn on_congestion_event(&mut self, now: Instant, sent: Instant, persistent: bool) -> bool {
        if self.recovery_start.is_some_and(|r| sent <= r) && !persistent {
            return false;
        }
        self.undo = (!persistent).then_some(Snapshot {
            window: self.window,
            ssthresh: self.ssthresh,
            recovery_start: self.recovery_start,
            epoch_start: self.epoch_start,
            w_max: self.w_max,
            k: self.k,
            w_est: self.w_est,
        });
        self.recovery_start = Some(now);
        self.epoch_start = None;
        let cwnd = self.segments();
        // Fast convergence (RFC 9438 §4.7).
        self.w_max = if cwnd < self.w_max { cwnd * (1.0 + BETA) / 2.0 } else { cwnd };
        self.ssthresh = ((self.window as f64 * BETA) as u64).max(minimum_window(self.mtu));
        self.window = if persistent { minimum_window(self.mtu) } else { self.ssthresh };
        self.carry = 0.0;
        true
    }

    fn on_spurious_congestion(&mut self) {
        if let Some(u) = self.undo.take() {
            self.window = self.window.max(u.window);
            self.ssthresh = u.ssthresh;
            self.recovery_start = u.recovery_start;
            self.epoch_start = u.epoch_start;
            self.w_max = u.w_max;
            self.k = u.k;
            self.w_est = u.w_est;
        }
    }

    fn on_mtu_change(&mut self, mtu: u64) {
        // Keep the window in segments.
        let segments = self.segments();
        self.mtu = mtu;
        self.window = ((segments * mtu as f64) as u64).max(minimum_window(mtu));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cube_root() {
        for x in [0.0, 1.0, 8.0, 27.0, 1e9, 0.001, -64.0] {
            let y = cbrt(x);
            assert!((y * y * y - x).abs() <= 1e-9 * x.abs().max(1.0), "cbrt({x}) = {y}");
        }
    }

    /// After a loss at W_max, the window follows RFC 9438's W_cubic(t + RTT).
    #[test]
    fn window_follows_w_cubic() {
        let mtu = 1000u64;
        let mut c = Cubic::new(mtu);
        let mut rtt = RttEstimator::default();
        rtt.update(Duration::from_millis(100));
        // Grow to 100 segments in slow start, then lose.
        c.window = 100 * mtu;
        c.ssthresh = 100 * mtu;
        let t0 = Instant::from_micros(1_000_000);
        c.on_congestion_event(t0, t0, false);
        assert_eq!(c.window, 70 * mtu, "β = 0.7");
        assert!((c.w_max - 100.0).abs() < 1e-9);
        let k = k_of(100.0, 70.0);
        assert!((k - 4.2171633265).abs() < 1e-6, "K = {k}");
        // ACK a window's worth of data every RTT, in 10 pieces.
        let start = t0.saturating_add(Duration::from_millis(1));
        let mut now = start;
        let mut first = None;
        for step in 0..800u32 {
            now = start.saturating_add(Duration::from_millis(10) * step);
            let bytes = c.window / 10;
            c.on_ack(now, now, bytes, &rtt, false);
            let epoch = *c.epoch_start.get_or_insert(now);
            first.get_or_insert(epoch);
            let t = now.saturating_duration_since(epoch).as_secs_f64();
            if step % 50 == 49 {
                let expect = w_cubic(t + 0.1, k, 100.0);
                let got = c.window as f64 / mtu as f64;
                assert!((got - expect).abs() / expect < 0.03, "t={t:.2}s: window {got:.1} vs W_cubic {expect:.1}");
            }
        }
        assert!(c.window > 100 * mtu, "grew past W_max into the convex region");
        let _ = now;
    }
}
