//! What the node tells its driver: transmits, events, and input outcomes.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

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

impl core::fmt::Display for SessionId {
    /// `slot.generation`, e.g. `3.1`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.index, self.generation)
    }
}

/// Something the application should know. Events carry no payload bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed; `peer` is authenticated. Emitted once per session. An
    /// initiator on a direct path gets it when it sends AUTH_PROOF (spec [HS-22]): the
    /// session may send at once; the responder confirms it with its first packet.
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
    /// A relay answered this node's registration (see `SessionRef::register_relay`).
    RelayStatus {
        /// The session with the relay.
        session: SessionId,
        /// Registered (with this node's address as the relay sees it) or refused.
        status: crate::relay::RelayStatus,
    },
}

impl Event {
    /// The session the event is about.
    pub fn session(&self) -> SessionId {
        match *self {
            Event::Established { session, .. }
            | Event::HandshakeFailed { session, .. }
            | Event::Closed { session, .. }
            | Event::DatagramReadable { session }
            | Event::StreamOpened { session, .. }
            | Event::StreamReadable { session, .. }
            | Event::StreamWritable { session, .. }
            | Event::StreamFinished { session, .. }
            | Event::StreamReset { session, .. }
            | Event::StreamStopped { session, .. }
            | Event::StreamsUnblocked { session }
            | Event::AppFrameReadable { session }
            | Event::PathChanged { session, .. }
            | Event::RelayStatus { session, .. } => session,
        }
    }
}

/// The node's event queue, counting what each session has waiting (spec [LC-10]), so
/// that one session that floods it is held back alone.
///
/// Bounds: the node admits a datagram only through [`EventQueue::admits`]; a session
/// with `max_session_events` waiting gets no packet in, and once the whole queue holds
/// `max_events` only sessions with nothing waiting get one more packet in. One packet adds
/// at most one event per frame plus one per stream it opens.
#[derive(Debug, Default)]
pub(crate) struct EventQueue {
    queue: VecDeque<Event>,
    /// Events waiting, by session slot index (grows to the highest slot index once).
    waiting: Vec<u32>,
}

impl EventQueue {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn count(&mut self, e: &Event) -> &mut u32 {
        let i = e.session().index as usize;
        if self.waiting.len() <= i {
            self.waiting.resize(i + 1, 0);
        }
        &mut self.waiting[i]
    }

    pub(crate) fn push_back(&mut self, e: Event) {
        *self.count(&e) += 1;
        self.queue.push_back(e);
    }

    /// Inserts at `at` (clamped to the length).
    pub(crate) fn insert(&mut self, at: usize, e: Event) {
        *self.count(&e) += 1;
        self.queue.insert(at.min(self.queue.len()), e);
    }

    pub(crate) fn pop_front(&mut self) -> Option<Event> {
        let e = self.queue.pop_front()?;
        let c = self.count(&e);
        *c = c.saturating_sub(1);
        Some(e)
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Events waiting for the session in slot `index`.
    pub(crate) fn waiting(&self, index: u32) -> usize {
        self.waiting.get(index as usize).map_or(0, |c| *c as usize)
    }

    /// Whether a datagram may be processed now (spec [LC-10]): `session` is the slot of the
    /// session a protected packet is for, `None` for handshake packets (which need room in
    /// the whole queue).
    pub(crate) fn admits(&self, session: Option<u32>, max_events: usize, max_session_events: usize) -> bool {
        let full = self.queue.len() >= max_events;
        match session {
            None => !full,
            Some(i) => {
                let mine = self.waiting(i);
                mine < max_session_events && (!full || mine == 0)
            }
        }
    }

    /// The events waiting, oldest first.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Event> {
        self.queue.iter()
    }
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
