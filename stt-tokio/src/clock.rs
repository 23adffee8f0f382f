//! Maps the OS clock onto the core's `Instant` and `UnixTime`.

use std::time::{SystemTime, UNIX_EPOCH};

use stt_proto::{Instant, UnixTime};

/// One epoch for the node's lifetime.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self { epoch: tokio::time::Instant::now() }
    }

    /// Microseconds since the epoch.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// The tokio instant of a core deadline.
    pub(crate) fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        self.epoch + std::time::Duration::from_micros(at.as_micros().min(u64::MAX / 2))
    }

    /// Wall time now.
    pub(crate) fn unix() -> UnixTime {
        UnixTime::from_millis(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
    }
}
