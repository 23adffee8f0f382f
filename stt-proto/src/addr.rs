//! Path addresses: where datagrams come from and go to.

use core::fmt;
use core::net::SocketAddr;

/// A tunnel (stream transport such as WebSocket) chosen by the driver.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TunnelId(pub u32);

/// The remote end of a datagram path.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum PathAddr {
    /// A UDP socket address.
    Udp(SocketAddr),
    /// A driver-managed tunnel carrying one STT datagram per message.
    Tunnel(TunnelId),
}

impl fmt::Display for PathAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathAddr::Udp(a) => write!(f, "udp:{a}"),
            PathAddr::Tunnel(t) => write!(f, "tunnel:{}", t.0),
        }
    }
}

impl From<SocketAddr> for PathAddr {
    fn from(a: SocketAddr) -> Self {
        PathAddr::Udp(a)
    }
}
