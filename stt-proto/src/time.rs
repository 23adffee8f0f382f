//! Owned time types: the core never reads a clock.

use core::fmt;
use core::num::NonZeroU64;
pub use core::time::Duration;

/// A monotonic instant in microseconds since an epoch chosen by the driver.
///
/// Tests start at [`Instant::ZERO`]. The core clamps inputs that go backwards
/// (`now = max(now, last_now)`) and counts the clamp in
/// [`NodeStats::time_went_backwards`](crate::NodeStats::time_went_backwards).
///
/// Stored as microseconds + 1 in a `NonZeroU64`, so an `Option<Instant>` (every timer of
/// every session) takes 8 bytes, not 16. The latest instant is `u64::MAX - 1` µs after the
/// epoch (about 584 000 years).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(NonZeroU64);

impl Default for Instant {
    fn default() -> Self {
        Self::ZERO
    }
}

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Self = Self(NonZeroU64::MIN);
    /// The latest representable instant, used as "never".
    pub const MAX: Self = Self(NonZeroU64::MAX);

    /// Builds an instant from microseconds since the epoch (saturating at [`Instant::MAX`]).
    pub const fn from_micros(us: u64) -> Self {
        match NonZeroU64::new(us.saturating_add(1)) {
            Some(v) => Self(v),
            None => Self::MAX,
        }
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0.get() - 1
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(duration_micros(d)))
    }

    /// `self + d`, or `None` on overflow (past [`Instant::MAX`]).
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        self.0.checked_add(duration_micros(d)).map(Self)
    }

    /// The time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.get().saturating_sub(earlier.0.get()))
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.as_micros();
        write!(f, "{}.{:06}s", us / 1_000_000, us % 1_000_000)
    }
}

/// Whole microseconds of `d`, saturating.
pub(crate) fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Wall-clock time in milliseconds since 1970-01-01 UTC.
///
/// Used only where the wire needs wall time: the HELLO timestamp window.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct UnixTime(u64);

impl UnixTime {
    /// Builds a wall time from milliseconds since the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }
}

/// The node's mapping from monotonic to wall time, set by `sync_unix_time`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClock {
    at: Instant,
    unix: UnixTime,
}

impl WallClock {
    pub(crate) fn new(at: Instant, unix: UnixTime) -> Self {
        Self { at, unix }
    }

    /// Wall time at `now`, extrapolated from the last sync.
    pub(crate) fn unix_at(&self, now: Instant) -> UnixTime {
        let elapsed_ms = now.saturating_duration_since(self.at).as_millis();
        let elapsed_ms = u64::try_from(elapsed_ms).unwrap_or(u64::MAX);
        UnixTime(self.unix.0.saturating_add(elapsed_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_arithmetic_never_panics() {
        assert_eq!(Instant::MAX.saturating_add(Duration::from_secs(1)), Instant::MAX);
        assert_eq!(Instant::MAX.checked_add(Duration::from_micros(1)), None);
        assert_eq!(Instant::ZERO.saturating_duration_since(Instant::from_micros(5)), Duration::ZERO);
        assert_eq!(Instant::from_micros(1_500_000).saturating_add(Duration::MAX), Instant::MAX);
        assert_eq!(Instant::from_micros(u64::MAX), Instant::MAX);
        assert_eq!(Instant::from_micros(7).as_micros(), 7);
        assert_eq!(Instant::default(), Instant::ZERO);
        assert_eq!(Instant::ZERO.as_micros(), 0);
        assert!(Instant::from_micros(3) < Instant::from_micros(4));
        assert_eq!(core::mem::size_of::<Option<Instant>>(), 8);
    }

    #[test]
    fn wall_clock_extrapolates_from_sync() {
        let w = WallClock::new(Instant::from_micros(2_000_000), UnixTime::from_millis(1_000));
        assert_eq!(w.unix_at(Instant::from_micros(3_500_000)).as_millis(), 2_500);
        // Before the sync point, wall time stays at the sync value.
        assert_eq!(w.unix_at(Instant::ZERO).as_millis(), 1_000);
    }
}
