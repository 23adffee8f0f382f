//! What application handles share with the node: per-session notifications and the
//! per-stream wakers. Stream data is never buffered here: it stays in the core, under
//! its flow control, until the application reads it.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use stt_proto::{CloseReason, NodeId, PathAddr, SessionId, StreamId};
use tokio::sync::Notify;

/// Locks a mutex, recovering the data if another thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a session (or an operation on it) ended.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
/// # let shared = SharedSeed::random();
/// # let id = |s: &SharedSeed| Identity::new(NodeSeed::random(), s.clone());
/// # let a = Node::bind("127.0.0.1:0".parse()?, Config::default(), id(&shared)).await?;
/// # let b = Node::bind("127.0.0.1:0".parse()?, Config::default().app_frame_types(&[0x90]), id(&shared)).await?;
/// # let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
/// # let (s, r) = (s?, r.expect("b is running"));
/// use stt_tokio::{CloseReason, Ended};
/// r.close(7);
/// let end = s.closed().await;
/// assert_eq!(end, Ended::Closed(CloseReason::Remote(7)));
/// assert_eq!(s.ended(), Some(end));
/// println!("{end}"); // in words, for a log
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The session closed.
    Closed(CloseReason),
    /// The handshake failed.
    Failed(stt_proto::HandshakeFailure),
    /// The node shut down.
    NodeGone,
    /// A host name did not resolve to any address.
    Unresolved,
    /// `connect_via_relay` was given a session that is not registered with a relay.
    NoRelay,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Failed(stt_proto::HandshakeFailure::Timeout) => {
                f.write_str("handshake timed out: the peer is unreachable or does not hold this shared seed")
            }
            // Refused after AUTH_PROOF: before the session was reported (a connect that
            // waited for FINAL), or after it (established on AUTH_PROOF, spec [HS-22]).
            Ended::Failed(stt_proto::HandshakeFailure::Refused(stt_proto::TransportCode::NotAllowed))
            | Ended::Closed(stt_proto::CloseReason::RemoteTransport(stt_proto::TransportCode::NotAllowed)) => {
                f.write_str("the peer refused the session: this node is not on its allow-list")
            }
            Ended::Closed(r) => write!(f, "session closed: {r}"),
            Ended::Failed(r) => write!(f, "handshake failed: {r}"),
            Ended::NodeGone => f.write_str("node shut down"),
            Ended::Unresolved => f.write_str("the host name did not resolve to an address"),
            Ended::NoRelay => f.write_str("not a session registered with a relay (call register_relay first)"),
        }
    }
}

impl std::error::Error for Ended {}

/// One session's notifications, shared by its handles (waited on without the node lock).
/// Held per established session, so kept small: the rarely changing parts share one mutex
/// and the rare notifications one [`Notify`] (waiters check their own condition again).
pub(crate) struct SessionShared {
    pub(crate) id: SessionId,
    pub(crate) peer: NodeId,
    state: Mutex<Changing>,
    /// The peer opened a stream.
    pub(crate) incoming: Notify,
    pub(crate) datagram_ready: Notify,
    pub(crate) frame_ready: Notify,
    /// Room opened in a send buffer (the frame stream's or a stream's).
    pub(crate) writable: Notify,
    /// Something rare changed: the peer raised the stream limit, the path changed, a
    /// relay answered, or the session ended.
    pub(crate) changed: Notify,
    /// Live [`Session`](crate::Session) handles (stream handles hold one each); the last
    /// one to go closes the session.
    pub(crate) handles: AtomicUsize,
}

/// The parts of [`SessionShared`] that change rarely.
struct Changing {
    remote: PathAddr,
    ended: Option<Ended>,
    /// The relay's answer to `register_relay`, if asked.
    relay: Option<stt_proto::RelayStatus>,
    /// The reason phrase the peer closed with, if it gave one.
    peer_close_reason: Option<Box<str>>,
    /// Streams with a handle whose every byte and end the peer had acknowledged when the
    /// session ended (a `finish()` woken by the acknowledgement still succeeds).
    acked_at_end: Vec<StreamId>,
}

impl SessionShared {
    pub(crate) fn new(id: SessionId, peer: NodeId, remote: PathAddr) -> Self {
        Self {
            id,
            peer,
            state: Mutex::new(Changing {
                remote,
                ended: None,
                relay: None,
                peer_close_reason: None,
                acked_at_end: Vec::new(),
            }),
            incoming: Notify::new(),
            datagram_ready: Notify::new(),
            frame_ready: Notify::new(),
            writable: Notify::new(),
            changed: Notify::new(),
            handles: AtomicUsize::new(0),
        }
    }

    pub(crate) fn ended(&self) -> Option<Ended> {
        lock(&self.state).ended
    }

    pub(crate) fn remote(&self) -> PathAddr {
        lock(&self.state).remote
    }

    /// The path changed: records it and wakes whoever waits for that.
    pub(crate) fn set_remote(&self, remote: PathAddr) {
        lock(&self.state).remote = remote;
        self.changed.notify_waiters();
    }

    pub(crate) fn relay(&self) -> Option<stt_proto::RelayStatus> {
        lock(&self.state).relay
    }

    /// Records the relay's status (and wakes `register_relay` when it is an answer).
    pub(crate) fn set_relay(&self, status: stt_proto::RelayStatus) {
        lock(&self.state).relay = Some(status);
        self.changed.notify_waiters();
    }

    /// Whether the peer had acknowledged all of stream `id` (with a handle) when the
    /// session ended.
    pub(crate) fn acked_at_end(&self, id: StreamId) -> bool {
        lock(&self.state).acked_at_end.contains(&id)
    }

    pub(crate) fn peer_close_reason(&self) -> Option<String> {
        lock(&self.state).peer_close_reason.as_deref().map(str::to_owned)
    }

    /// Marks the session over and wakes every session-level waiter (stream wakers are
    /// woken by the owner of [`SessionApp`]). `reason`: the peer's close phrase, if any.
    pub(crate) fn end(&self, why: Ended, reason: Option<Box<str>>, acked: Vec<StreamId>) {
        {
            let mut st = lock(&self.state);
            if st.ended.is_none() {
                st.ended = Some(why);
                st.acked_at_end = acked;
            }
            if reason.is_some() {
                st.peer_close_reason = reason;
            }
        }
        self.incoming.notify_waiters();
        self.datagram_ready.notify_waiters();
        self.frame_ready.notify_waiters();
        self.writable.notify_waiters();
        self.changed.notify_waiters();
    }
}

/// Wakers and outcomes of one stream that has a handle. Entries exist only while a
/// `SendStream` or `RecvStream` for the stream is alive.
#[derive(Default)]
pub(crate) struct StreamApp {
    pub(crate) read: Option<Waker>,
    pub(crate) write: Option<Waker>,
    pub(crate) finish: Option<Waker>,
    /// Every byte and the end were acknowledged by the peer.
    pub(crate) acked: bool,
    /// The peer asked us to stop sending.
    pub(crate) stopped: Option<u64>,
    /// The peer reset the stream (the core may have freed it already).
    pub(crate) reset: Option<u64>,
    /// Live handles (a send half and a receive half count one each).
    pub(crate) handles: u8,
}

impl StreamApp {
    pub(crate) fn wake_all(&mut self) {
        for w in [self.read.take(), self.write.take(), self.finish.take()].into_iter().flatten() {
            w.wake();
        }
    }
}

/// The node's view of one established session's application side.
pub(crate) struct SessionApp {
    pub(crate) shared: std::sync::Arc<SessionShared>,
    /// Streams with a handle (usually none or a few; no allocation while empty).
    pub(crate) streams: BTreeMap<StreamId, StreamApp>,
}

impl SessionApp {
    /// Ends the session for its handles and wakes everything waiting on it.
    pub(crate) fn end(&mut self, why: Ended, reason: Option<Box<str>>) {
        let acked = self.streams.iter().filter(|(_, s)| s.acked).map(|(id, _)| *id).collect();
        self.shared.end(why, reason, acked);
        for s in self.streams.values_mut() {
            s.wake_all();
        }
    }
}
