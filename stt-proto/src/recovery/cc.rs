//! The congestion-control interface and the choice of algorithm.

use alloc::boxed::Box;

use super::rtt::RttEstimator;
use crate::time::Instant;

/// Which congestion controller sessions use.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum CongestionAlgorithm {
    /// CUBIC (RFC 9438), the default. Needs the `cubic` feature (on by default): without
    /// it [`Config::validate`](crate::Config::validate) refuses it.
    #[cfg_attr(feature = "cubic", default)]
    Cubic,
    /// NewReno (RFC 9002 §7); the default in a build without the `cubic` feature.
    #[cfg_attr(not(feature = "cubic"), default)]
    NewReno,
}

/// A congestion controller: how many bytes may be in flight.
pub trait CongestionControl: Send {
    /// Current congestion window in bytes.
    fn window(&self) -> u64;
    /// Bytes were acknowledged for a packet sent at `sent`. `app_limited`: the sender
    /// did not fill the window, so the window should not grow.
    fn on_ack(&mut self, now: Instant, sent: Instant, bytes: u64, rtt: &RttEstimator, app_limited: bool);
    /// Packets sent at or before `sent` were lost (one call per loss event). Returns
    /// whether the window was reduced for it (a new recovery period, or persistent
    /// congestion); false when the event fell in the current recovery period and changed
    /// nothing, so there is nothing of its own to undo (spec [LR-3]).
    fn on_congestion_event(&mut self, now: Instant, sent: Instant, persistent: bool) -> bool;
    /// The path's maximum datagram size changed.
    fn on_mtu_change(&mut self, mtu: u64);
    /// The last loss event that reduced the window was spurious (the "lost" packets were
    /// acknowledged late, having been reordered), with any events in its recovery period:
    /// restore the state from before it (spec [LR-3]). Default: keep it.
    fn on_spurious_congestion(&mut self) {}
}

/// The initial window: `min(10·mtu, max(14720, 2·mtu))` (RFC 9002 §7.2).
pub(crate) fn initial_window(mtu: u64) -> u64 {
    (10 * mtu).min(14_720.max(2 * mtu))
}

/// The minimum window: two datagrams.
pub(crate) fn minimum_window(mtu: u64) -> u64 {
    2 * mtu
}

impl CongestionAlgorithm {
    /// A new controller for a path with this datagram size.
    pub(crate) fn build(self, mtu: u64) -> Box<dyn CongestionControl> {
        match self {
            #[cfg(feature = "cubic")]
            CongestionAlgorithm::Cubic => Box::new(super::cubic::Cubic::new(mtu)),
            // Without the `cubic` feature `Config::validate` refuses CUBIC.
            #[cfg(not(feature = "cubic"))]
            CongestionAlgorithm::Cubic => Box::new(super::newreno::NewReno::new(mtu)),
            CongestionAlgorithm::NewReno => Box::new(super::newreno::NewReno::new(mtu)),
        }
    }
}
