//! The node's single owner: the sans-IO core and everything that must change with it,
//! behind one mutex. Whoever holds the lock (an application task after a read or a
//! write, or the driver after input or a timer) runs the core and drains its output
//! straight to the socket: there is no second task between the application and the
//! network, and no second state machine. Critical sections are short and never await.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use stt_proto::{Event, Input, Instant, Node as Core, Output, PathAddr, SessionId, StreamId, TunnelId};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};

use crate::clock::Clock;
use crate::shared::{lock, Ended, SessionApp, SessionShared, StreamApp};
use crate::tunnel::TunnelMsg;
use crate::udp::{RecvBufs, SendTrain, UdpIo, INLINE_BATCH};

/// Replies to a pending `connect`.
pub(crate) type ConnectReply = oneshot::Sender<Result<Arc<SessionShared>, Ended>>;

/// Established sessions nobody accepted yet, at most (beyond: closed, see [`State::event`]).
const INCOMING_QUEUE: usize = 1024;

/// Everything guarded by the node lock.
pub(crate) struct State {
    pub(crate) core: Core<ChaCha20Rng>,
    pub(crate) clock: Clock,
    train: SendTrain,
    /// A send train waits for the socket to become writable (the driver flushes it).
    pub(crate) blocked: bool,
    pub(crate) tunnels: HashMap<TunnelId, mpsc::Sender<Bytes>>,
    pub(crate) sessions: HashMap<SessionId, SessionApp>,
    pub(crate) connects: HashMap<SessionId, ConnectReply>,
    pub(crate) incoming: VecDeque<Arc<SessionShared>>,
    pub(crate) events: broadcast::Sender<Event>,
    /// When the driver will look at the core next (it sleeps until then).
    pub(crate) driver_wake: Option<Instant>,
    /// Shutdown was asked for (or every user handle is gone): sessions are closing.
    pub(crate) stopping: bool,
    /// The driver has stopped; nothing runs the core any more.
    pub(crate) stopped: bool,
    /// Scratch space for datagrams and frames copied out of the core (64 KiB, made on first
    /// use by `ensure_scratch`).
    pub(crate) tmp: Vec<u8>,
    /// Tasks waiting in `Session::flush` until their session has nothing unacknowledged
    /// (one entry per waiting call; checked after every drain).
    pub(crate) flush_waiters: Vec<(SessionId, std::task::Waker)>,
}

/// The node lock and what is waited on without it.
pub(crate) struct NodeShared {
    state: Mutex<State>,
    pub(crate) io: UdpIo,
    /// Wakes the driver: an earlier deadline, a blocked socket, shutdown.
    pub(crate) driver: Notify,
    /// A session was established and waits for `accept`, or the node stopped.
    pub(crate) incoming: Notify,
    /// The driver stopped.
    pub(crate) stopped: Notify,
}

impl NodeShared {
    pub(crate) fn new(state: State, io: UdpIo) -> Self {
        Self { state: Mutex::new(state), io, driver: Notify::new(), incoming: Notify::new(), stopped: Notify::new() }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// After an application command: sends what the core produced, in the caller's task,
    /// and wakes the driver only if its timer must move or the socket is blocked.
    pub(crate) fn flush(&self, st: &mut State) {
        st.drain(&self.io, &self.incoming);
        let deadline = st.core.next_deadline();
        let earlier = match (deadline, st.driver_wake) {
            (Some(d), Some(w)) => d < w,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if st.blocked || earlier {
            st.driver_wake = deadline;
            self.driver.notify_one();
        }
    }
}

impl State {
    pub(crate) fn new(core: Core<ChaCha20Rng>, clock: Clock, io: &UdpIo, events: broadcast::Sender<Event>) -> Self {
        let max_payload = core.config().udp_payload_limit();
        Self {
            core,
            clock,
            train: SendTrain::new(io, max_payload),
            blocked: false,
            tunnels: HashMap::new(),
            sessions: HashMap::new(),
            connects: HashMap::new(),
            incoming: VecDeque::new(),
            events,
            driver_wake: None,
            stopping: false,
            stopped: false,
            tmp: Vec::new(),
            flush_waiters: Vec::new(),
        }
    }

    /// Drains the core's output: datagrams go to the socket (or a tunnel), events wake
    /// whoever waits. Stops early while the socket would block.
    pub(crate) fn drain(&mut self, io: &UdpIo, incoming: &Notify) {
        if self.blocked {
            if !self.train.flush(io) {
                return;
            }
            self.blocked = false;
        }
        loop {
            // The core writes each datagram straight into the UDP send train.
            match self.core.poll_output(self.train.tail()) {
                Output::Transmit(t) => match t.dst {
                    PathAddr::Udp(dst) => {
                        if !self.train.commit(io, dst, t.len) {
                            self.blocked = true;
                            return;
                        }
                    }
                    PathAddr::Tunnel(id) => {
                        // A full connection queue drops the datagram; loss recovery resends.
                        if let Some(tx) = self.tunnels.get(&id) {
                            let _ = tx.try_send(Bytes::copy_from_slice(&self.train.tail()[..t.len]));
                        }
                    }
                    // The core wraps relayed datagrams into the relay session itself.
                    PathAddr::Relay(_) => {}
                },
                Output::Event(e) => self.event(e, incoming),
                Output::Wait(_) => {
                    self.blocked = !self.train.flush(io);
                    self.wake_flushed();
                    return;
                }
            }
        }
    }

    /// Wakes `Session::flush` callers whose session has nothing unacknowledged, or ended.
    fn wake_flushed(&mut self) {
        if self.flush_waiters.is_empty() {
            return;
        }
        let mut i = 0;
        while i < self.flush_waiters.len() {
            let id = self.flush_waiters[i].0;
            let done = self.core.session(id).is_none_or(|s| s.all_acknowledged()) || !self.sessions.contains_key(&id);
            if done {
                self.flush_waiters.swap_remove(i).1.wake();
            } else {
                i += 1;
            }
        }
    }

    /// Whether a datagram waits for the socket.
    pub(crate) fn send_pending(&self) -> bool {
        self.blocked || self.train.is_pending()
    }

    /// Receives what the socket holds now (without blocking) and feeds it to the core, in
    /// the calling task. Returns whether anything arrived.
    pub(crate) fn recv_inline(&mut self, io: &UdpIo) -> bool {
        // Buffers from the process-wide pool, as the driver's; at most two datagram trains
        // per call, so a reader does not take on the driver's whole batch.
        let mut bufs = RecvBufs::take();
        if !matches!(io.try_recv(&mut bufs, INLINE_BATCH), Ok(n) if n > 0) {
            bufs.give_back();
            return false;
        }
        let now = self.clock.now();
        let core = &mut self.core;
        bufs.deliver(|from, data| {
            let _ = core.handle_input(Input::Datagram { now, from: from.into(), data });
        });
        bufs.give_back();
        true
    }

    /// Feeds an expired timer.
    pub(crate) fn on_timer(&mut self) {
        let now = self.clock.now();
        if self.core.next_deadline().is_some_and(|d| d <= now) {
            let _ = self.core.handle_input(Input::Timeout { now });
        }
    }

    /// Makes the scratch buffer (`tmp`) on first use: a node whose application only uses
    /// streams holds none.
    pub(crate) fn ensure_scratch(&mut self) {
        if self.tmp.is_empty() {
            self.tmp = vec![0; 65_536];
        }
    }

    pub(crate) fn tunnel(&mut self, m: TunnelMsg) {
        match m {
            TunnelMsg::Opened(id, tx) => {
                self.tunnels.insert(id, tx);
            }
            TunnelMsg::Data(id, data) => {
                // Decrypted in place in the scratch buffer: no allocation per datagram.
                self.ensure_scratch();
                let n = data.len().min(self.tmp.len());
                self.tmp[..n].copy_from_slice(&data[..n]);
                let now = self.clock.now();
                let _ = self.core.handle_input(Input::Datagram {
                    now,
                    from: PathAddr::Tunnel(id),
                    data: &mut self.tmp[..n],
                });
            }
            TunnelMsg::Closed(id) => {
                self.tunnels.remove(&id);
            }
        }
    }

    /// The wakers of a stream that has a handle.
    pub(crate) fn stream_app(&mut self, session: SessionId, stream: StreamId) -> Option<&mut StreamApp> {
        self.sessions.get_mut(&session)?.streams.get_mut(&stream)
    }

    /// Registers a new handle on a stream.
    pub(crate) fn add_stream_handle(&mut self, session: SessionId, stream: StreamId) {
        if let Some(app) = self.sessions.get_mut(&session) {
            app.streams.entry(stream).or_default().handles += 1;
        }
    }

    /// Drops a handle; the stream's entry goes with its last handle.
    pub(crate) fn remove_stream_handle(&mut self, session: SessionId, stream: StreamId) {
        let Some(app) = self.sessions.get_mut(&session) else { return };
        if let Some(s) = app.streams.get_mut(&stream) {
            s.handles = s.handles.saturating_sub(1);
            if s.handles == 0 {
                app.streams.remove(&stream);
            }
        }
    }

    /// Closes a session nobody will use (its `connect` was abandoned, or nobody accepts).
    fn abandon(&mut self, session: SessionId) {
        let now = self.clock.now();
        if let Some(mut s) = self.core.session(session) {
            s.close(now, 0);
        }
    }

    fn event(&mut self, e: Event, incoming: &Notify) {
        let _ = self.events.send(e);
        match e {
            Event::Established { session, peer } => {
                let Some(remote) = self.core.session(session).map(|s| s.remote()) else { return };
                let shared = Arc::new(SessionShared::new(session, peer, remote));
                self.sessions.insert(session, SessionApp { shared: shared.clone(), streams: BTreeMap::new() });
                tracing::info!(peer = %short(&peer), "session established");
                match self.connects.remove(&session) {
                    Some(reply) => {
                        if reply.send(Ok(shared)).is_err() {
                            // The `connect` future was dropped while the handshake ran.
                            self.abandon(session);
                        }
                    }
                    None if self.incoming.len() >= INCOMING_QUEUE => {
                        tracing::debug!("incoming session queue full; closing the new session");
                        self.abandon(session);
                    }
                    None => {
                        self.incoming.push_back(shared);
                        incoming.notify_waiters();
                    }
                }
            }
            Event::HandshakeFailed { session, reason } => {
                tracing::info!(%reason, "handshake failed");
                if let Some(reply) = self.connects.remove(&session) {
                    let _ = reply.send(Err(Ended::Failed(reason)));
                }
            }
            Event::Closed { session, reason } => {
                let text: Option<Box<str>> =
                    self.core.session(session).and_then(|s| s.peer_close_reason().map(Box::from));
                tracing::info!(%reason, peer_reason = text.as_deref().unwrap_or(""), "session closed");
                if let Some(mut app) = self.sessions.remove(&session) {
                    app.end(Ended::Closed(reason), text);
                }
                self.incoming.retain(|s| s.id != session);
            }
            Event::StreamOpened { session, .. } => {
                if let Some(app) = self.sessions.get(&session) {
                    app.shared.incoming.notify_waiters();
                }
            }
            Event::StreamReadable { session, stream } => {
                if let Some(w) = self.stream_app(session, stream).and_then(|s| s.read.take()) {
                    w.wake();
                }
            }
            Event::StreamReset { session, stream, code } => {
                if let Some(s) = self.stream_app(session, stream) {
                    s.reset = Some(code);
                    if let Some(w) = s.read.take() {
                        w.wake();
                    }
                }
            }
            Event::StreamWritable { session, stream } => {
                if let Some(w) = self.stream_app(session, stream).and_then(|s| s.write.take()) {
                    w.wake();
                }
                // The frame stream has no handle: frame senders wait on the session.
                if let Some(app) = self.sessions.get(&session) {
                    app.shared.writable.notify_waiters();
                }
            }
            Event::StreamFinished { session, stream } => {
                if let Some(s) = self.stream_app(session, stream) {
                    s.acked = true;
                    if let Some(w) = s.finish.take() {
                        w.wake();
                    }
                }
            }
            Event::StreamStopped { session, stream, code } => {
                if let Some(s) = self.stream_app(session, stream) {
                    s.stopped = Some(code);
                    s.wake_all();
                }
            }
            Event::StreamsUnblocked { session } => {
                if let Some(app) = self.sessions.get(&session) {
                    app.shared.changed.notify_waiters();
                }
            }
            Event::DatagramReadable { session } => {
                if let Some(app) = self.sessions.get(&session) {
                    app.shared.datagram_ready.notify_waiters();
                }
            }
            Event::AppFrameReadable { session } => {
                if let Some(app) = self.sessions.get(&session) {
                    app.shared.frame_ready.notify_waiters();
                }
            }
            Event::PathChanged { session, remote } => {
                if let Some(app) = self.sessions.get(&session) {
                    tracing::info!(
                        path = if remote.is_relayed() { "relayed" } else { "direct" },
                        "session path changed"
                    );
                    app.shared.set_remote(remote);
                }
            }
            Event::RelayStatus { session, status } => {
                if let Some(app) = self.sessions.get(&session) {
                    tracing::info!(?status, "relay answered");
                    app.shared.set_relay(status);
                }
            }
            _ => {}
        }
    }

    /// The driver stopped: every handle learns it.
    pub(crate) fn end_all(&mut self) {
        self.stopped = true;
        for (_, mut app) in self.sessions.drain() {
            app.end(Ended::NodeGone, None);
        }
        for (_, reply) in self.connects.drain() {
            let _ = reply.send(Err(Ended::NodeGone));
        }
    }
}

/// A node id shortened for logs (addresses are never logged at info level).
pub(crate) fn short(id: &stt_proto::NodeId) -> String {
    let s = id.to_string();
    s[..12.min(s.len())].to_string()
}
