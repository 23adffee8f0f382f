//! Path addresses: where datagrams come from and go to.

use core::fmt;
use core::net::SocketAddr;

use crate::event::SessionId;
use crate::identity::NodeId;

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
    /// Through a relay (spec §12): datagrams to and from `peer` travel as RELAY_DATA
    /// frames inside this node's session `via` with the relay. The node wraps and
    /// unwraps them itself; drivers never see this variant in a `Transmit`.
    Relay(RelayAddr),
}

/// A relayed path: the relay session it rides on and the peer at the other end.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct RelayAddr {
    /// This node's session with the relay.
    pub via: SessionId,
    /// The peer the relay forwards to and from.
    pub peer: NodeId,
}

impl PathAddr {
    /// Whether this path goes through a relay.
    pub fn is_relayed(&self) -> bool {
        matches!(self, PathAddr::Relay(_))
    }

    /// [`is_relayed`](Self::is_relayed) for the core's own decisions: always false without
    /// the `relay` feature, where no session has a relayed path (`Node::connect` refuses
    /// one and `handle_input` drops datagrams from one), so the relay code compiles away.
    pub(crate) fn relayed(&self) -> bool {
        cfg!(feature = "relay") && self.is_relayed()
    }
}

impl fmt::Display for PathAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathAddr::Udp(a) => write!(f, "udp:{a}"),
            PathAddr::Tunnel(t) => write!(f, "tunnel:{}", t.0),
            PathAddr::Relay(r) => write!(f, "relay:{}/{}", r.via, r.peer),
        }
    }
}

impl From<SocketAddr> for PathAddr {
    fn from(a: SocketAddr) -> Self {
        PathAddr::Udp(a)
    }
}
