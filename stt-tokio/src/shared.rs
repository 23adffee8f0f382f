//! State shared between the driver task and the application's handles. Every buffer
//! is bounded; handles wait on wakers and the driver is nudged through its command queue.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::{Bytes, BytesMut};
use stt_proto::{CloseReason, NodeId, PathAddr, SessionId, StreamId};
use tokio::sync::Notify;

/// Locks a mutex, recovering the data if another thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes buffered per stream direction between the application and the driver.
pub(crate) const STREAM_BUFFER: usize = 1 << 20;
/// Datagrams and application frames queued for the application per session.
pub(crate) const MESSAGE_QUEUE: usize = 1024;

/// Why a session (or an operation on it) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The session closed.
    Closed(CloseReason),
    /// The handshake failed.
    Failed(stt_proto::HandshakeFailure),
    /// The node shut down.
    NodeGone,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Closed(r) => write!(f, "session closed: {r}"),
            Ended::Failed(stt_proto::HandshakeFailure::Timeout) => {
                f.write_str("handshake timed out: the peer is unreachable or does not hold this shared seed")
            }
            Ended::Failed(stt_proto::HandshakeFailure::Refused(stt_proto::TransportCode::NotAllowed)) => {
                f.write_str("the peer refused the session: this node is not on its allow-list")
            }
            Ended::Failed(r) => write!(f, "handshake failed: {r}"),
            Ended::NodeGone => f.write_str("node shut down"),
        }
    }
}

/// The sending half's buffer: application → driver.
#[derive(Default)]
pub(crate) struct SendSide {
    pub(crate) queue: VecDeque<Bytes>,
    pub(crate) queued: usize,
    pub(crate) finish: bool,
    pub(crate) finished_in_core: bool,
    /// All data and the end were acknowledged by the peer.
    pub(crate) acked: bool,
    pub(crate) reset: Option<u64>,
    pub(crate) error: Option<String>,
    pub(crate) waker: Option<Waker>,
}

/// The receiving half's buffer: driver → application.
#[derive(Default)]
pub(crate) struct RecvSide {
    pub(crate) buf: BytesMut,
    pub(crate) fin: bool,
    pub(crate) reset: Option<u64>,
    pub(crate) waker: Option<Waker>,
    /// The driver stopped pulling because `buf` was full.
    pub(crate) stalled: bool,
}

/// One stream's shared state.
#[derive(Default)]
pub(crate) struct StreamShared {
    pub(crate) send: Mutex<SendSide>,
    pub(crate) recv: Mutex<RecvSide>,
    pub(crate) finished: Notify,
}

impl StreamShared {
    pub(crate) fn wake_all(&self) {
        if let Some(w) = lock(&self.send).waker.take() {
            w.wake();
        }
        if let Some(w) = lock(&self.recv).waker.take() {
            w.wake();
        }
        self.finished.notify_waiters();
    }
}

/// One session's shared state.
pub(crate) struct SessionShared {
    pub(crate) id: SessionId,
    pub(crate) peer: NodeId,
    pub(crate) remote: Mutex<PathAddr>,
    pub(crate) streams: Mutex<HashMap<StreamId, Arc<StreamShared>>>,
    pub(crate) incoming_bi: Mutex<VecDeque<StreamId>>,
    pub(crate) incoming_uni: Mutex<VecDeque<StreamId>>,
    pub(crate) incoming: Notify,
    pub(crate) datagrams: Mutex<VecDeque<Bytes>>,
    pub(crate) datagram_ready: Notify,
    pub(crate) frames: Mutex<VecDeque<(u8, Bytes)>>,
    pub(crate) frame_ready: Notify,
    pub(crate) ended: Mutex<Option<Ended>>,
    pub(crate) ended_notify: Notify,
}

impl SessionShared {
    pub(crate) fn new(id: SessionId, peer: NodeId, remote: PathAddr) -> Self {
        Self {
            id,
            peer,
            remote: Mutex::new(remote),
            streams: Mutex::new(HashMap::new()),
            incoming_bi: Mutex::new(VecDeque::new()),
            incoming_uni: Mutex::new(VecDeque::new()),
            incoming: Notify::new(),
            datagrams: Mutex::new(VecDeque::new()),
            datagram_ready: Notify::new(),
            frames: Mutex::new(VecDeque::new()),
            frame_ready: Notify::new(),
            ended: Mutex::new(None),
            ended_notify: Notify::new(),
        }
    }

    pub(crate) fn stream(&self, id: StreamId) -> Arc<StreamShared> {
        lock(&self.streams).entry(id).or_default().clone()
    }

    pub(crate) fn ended(&self) -> Option<Ended> {
        *lock(&self.ended)
    }

    /// Marks the session over and wakes every waiter.
    pub(crate) fn end(&self, why: Ended) {
        {
            let mut e = lock(&self.ended);
            if e.is_none() {
                *e = Some(why);
            }
        }
        for s in lock(&self.streams).values() {
            s.wake_all();
        }
        self.incoming.notify_waiters();
        self.datagram_ready.notify_waiters();
        self.frame_ready.notify_waiters();
        self.ended_notify.notify_waiters();
    }
}
