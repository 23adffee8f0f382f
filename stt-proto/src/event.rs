//! What the node tells its driver: transmits, events, and input outcomes.

use crate::addr::PathAddr;
use crate::error::{CloseReason, DropReason, HandshakeFailure};
use crate::identity::NodeId;
use crate::stream::StreamId;
use crate::time::Instant;

/// A local handle for a session: a slot index and a generation, never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SessionId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl SessionId {
    /// A compact numeric form for logs.
    pub fn as_u64(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.index)
    }
}

/// Something the application should know. Events carry no payload bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed; `peer` is authenticated. Emitted once per session.
    Established {
        /// The session.
        session: SessionId,
        /// The peer's authenticated node id.
        peer: NodeId,
    },
    /// A handshake this node initiated failed; the session is gone.
    HandshakeFailed {
        /// The session `connect` returned.
        session: SessionId,
        /// Why.
        reason: HandshakeFailure,
    },
    /// An established session ended.
    Closed {
        /// The session.
        session: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// One or more datagrams can be read with `recv_datagram` (edge-triggered: read
    /// until it returns `None`).
    DatagramReadable {
        /// The session.
        session: SessionId,
    },
    /// The peer opened a stream; take it with `accept_stream`.
    StreamOpened {
        /// The session.
        session: SessionId,
        /// The new stream.
        stream: StreamId,
    },
    /// Data (or the end of the stream) can be read (edge-triggered: read until `Blocked`).
    StreamReadable {
        /// The session.
        session: SessionId,
        /// The stream.
        stream: StreamId,
    },
    /// A write that was refused (or cut short) for lack of buffer space can be retried.
    StreamWritable {
        /// The session.
        session: SessionId,
        /// The stream.
        stream: StreamId,
    },
    /// Everything written on the stream, and its end, was acknowledged by the peer.
    StreamFinished {
        /// The session.
        session: SessionId,
        /// The stream.
        stream: StreamId,
    },
    /// The peer reset its sending half with a code.
    StreamReset {
        /// The session.
        session: SessionId,
        /// The stream.
        stream: StreamId,
        /// The peer's code.
        code: u64,
    },
    /// The peer asked us to stop sending (STOP_SENDING); our half was reset.
    StreamStopped {
        /// The session.
        session: SessionId,
        /// The stream.
        stream: StreamId,
        /// The peer's code.
        code: u64,
    },
    /// The peer raised its stream limit after `open_stream` returned `Blocked`.
    StreamsUnblocked {
        /// The session.
        session: SessionId,
    },
    /// Application frames can be read with `recv_app_frame`.
    AppFrameReadable {
        /// The session.
        session: SessionId,
    },
    /// The peer's address changed (migration or NAT rebinding), after validation.
    PathChanged {
        /// The session.
        session: SessionId,
        /// The new address.
        remote: crate::addr::PathAddr,
    },
}

/// A datagram for the driver to send: `buf[..len]` of the buffer given to `poll_output`.
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Transmit {
    /// Destination.
    pub dst: PathAddr,
    /// Bytes written into the caller's buffer.
    pub len: usize,
    /// With segmentation offload: the size of each segment (all but the last equal).
    pub segment_size: Option<u16>,
}

/// One step of the output drain.
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Output {
    /// Send this datagram.
    Transmit(Transmit),
    /// Hand this event to the application.
    Event(Event),
    /// Nothing more now: call again after the next input, command, or at this deadline.
    Wait(Option<Instant>),
}

/// What became of one input datagram. Peer input never yields an error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum InputOutcome {
    /// Processed.
    Consumed,
    /// Not an STT datagram (for drivers that share a socket).
    NotStt,
    /// Dropped; the reason is also counted in `NodeStats`.
    Dropped(DropReason),
}

/// An input to the node.
#[derive(Debug)]
pub enum Input<'a> {
    /// A datagram arrived. It is decrypted in place.
    Datagram {
        /// Arrival time.
        now: Instant,
        /// Source address.
        from: PathAddr,
        /// The bytes; modified in place.
        data: &'a mut [u8],
    },
    /// A deadline returned by `poll_output` / `next_deadline` has passed.
    Timeout {
        /// Current time.
        now: Instant,
    },
}
