//! Application frames 0x80–0xFF (spec §7.7): typed messages carried on a reserved
//! unidirectional stream per side, so they are reliable, once and in order among
//! themselves, and flow-controlled like any stream.

use core::fmt;

use crate::datagram::DatagramQueue;

/// Index of the reserved application-frame stream of each side.
pub(crate) const APP_INDEX: u64 = (1 << 60) - 1;

/// An application frame type and its limits, as declared in the handshake.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AppFrameSet {
    pub(crate) types: [u8; 16],
    pub(crate) max: u64,
}

impl AppFrameSet {
    /// Whether `ty` (0x80–0xFF) is in the set.
    pub(crate) fn contains(&self, ty: u8) -> bool {
        ty >= 0x80 && self.types[usize::from((ty - 0x80) / 8)] & (1 << ((ty - 0x80) % 8)) != 0
    }
}

/// The bitmap for a list of types (values below 0x80 are ignored).
pub(crate) fn bitmap(types: &[u8]) -> [u8; 16] {
    let mut m = [0u8; 16];
    for ty in types.iter().filter(|t| **t >= 0x80) {
        m[usize::from((ty - 0x80) / 8)] |= 1 << ((ty - 0x80) % 8);
    }
    m
}

/// Why an application frame could not be sent.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// Application frame types are 0x80–0xFF.
    NotAppType(u8),
    /// The peer did not declare this type in its handshake parameters.
    Undeclared(u8),
    /// Larger than the peer accepts, or than this side's stream send buffer holds at once.
    TooLarge {
        /// The largest body that can be sent: the peer's maximum, or less with a send
        /// buffer (`Config::stream_send_buffer`) smaller than that.
        max: u64,
    },
    /// The send buffer is full; retry after `Event::StreamWritable` on the frame stream.
    Blocked,
    /// The session is not established.
    NotEstablished,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NotAppType(t) => write!(f, "frame type {t:#04x} is not an application type (0x80-0xff)"),
            FrameError::Undeclared(t) => write!(f, "the peer does not accept application frame type {t:#04x}"),
            FrameError::TooLarge { max } => write!(f, "application frame too large: at most {max} bytes can be sent"),
            FrameError::Blocked => f.write_str("application frame send buffer full"),
            FrameError::NotEstablished => f.write_str("session is not established"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Received application frames waiting for the application (entry = type ‖ body).
#[derive(Debug)]
pub(crate) struct AppFrameQueue {
    pub(crate) queue: DatagramQueue,
    pub(crate) local: AppFrameSet,
    pub(crate) peer: AppFrameSet,
}
