//! The node's single owner: the sans-IO core and everything that must change with it,
//! behind one mutex. Whoever holds the lock (an application task after a read or a
//! write, or the driver after input or a timer) runs the core and drains its output
//! straight to the socket: there is no second task between the application and the
//! network, and no second state machine. Critical sections are short and never await.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

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
    /// Stream tasks to wake once the lock is released (see [`StateGuard`]).
    wakes: Wakes,
}

/// Wakers collected while the lock is held, woken after it is released: a task woken on
/// another worker thread of a multi-thread runtime would otherwise run at once, find the
/// lock taken and sleep on it again.
#[derive(Default)]
pub(crate) struct Wakes {
    slots: [Option<Waker>; WAKES],
    len: usize,
}

/// Wakers deferred per critical section; beyond, they are woken at once (under the lock).
const WAKES: usize = 8;

impl Wakes {
    /// Defers `w` (or wakes it now when the batch is full).
    pub(crate) fn push(&mut self, w: Waker) {
        match self.slots.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(w);
                self.len += 1;
            }
            None => w.wake(),
        }
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        for w in self.slots[..self.len].iter_mut().filter_map(Option::take) {
            w.wake();
        }
    }
}

/// The node lock held: derefs to the [`State`]; on drop it releases the lock first and
/// then wakes the tasks its critical section made ready (fields drop in order: `guard`,
/// then `wakes`).
pub(crate) struct StateGuard<'a> {
    guard: MutexGuard<'a, State>,
    wakes: Wakes,
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        // Most critical sections wake nobody: nothing to move out then.
        if self.guard.wakes.len > 0 {
            self.wakes = std::mem::take(&mut self.guard.wakes);
        }
    }
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
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
    /// Readers take datagrams from the socket themselves (and wait on it) when the driver
    /// is blocked: only on a current-thread runtime, where the reader and the driver share
    /// the thread and the reader saves a task switch on every round trip. On a multi-thread
    /// runtime the two would run on two workers and race for the socket and the lock with
    /// every datagram (a bulk receiver measured 30–40 % slower): there the driver alone
    /// reads the socket.
    pub(crate) readers_take_input: bool,
}

impl NodeShared {
    pub(crate) fn new(state: State, io: UdpIo) -> Self {
        let readers_take_input = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        Self {
            state: Mutex::new(state),
            io,
            driver: Notify::new(),
            incoming: Notify::new(),
            stopped: Notify::new(),
            readers_take_input,
        }
    }

    /// Takes the node lock; tasks made ready meanwhile are woken when it is released.
    pub(crate) fn lock(&self) -> StateGuard<'_> {
        StateGuard { guard: lock(&self.state), wakes: Wakes::default() }
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
            wakes: Wakes::default(),
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
                    self.wakes.push(w);
                }
            }
            Event::StreamReset { session, stream, code } => {
                if let Some(s) = self.stream_app(session, stream) {
                    s.reset = Some(code);
                    if let Some(w) = s.read.take() {
                        self.wakes.push(w);
                    }
                }
            }
            Event::StreamWritable { session, stream } => {
                if let Some(w) = self.stream_app(session, stream).and_then(|s| s.write.take()) {
                    self.wakes.push(w);
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
                        self.wakes.push(w);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake};

    use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

    use crate::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};

    /// A waker that, when woken, tries the node lock: a wake from inside a critical
    /// section finds it taken.
    struct Probe {
        node: Node,
        free: AtomicUsize,
        held: AtomicUsize,
    }

    impl Wake for Probe {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            let counter = if self.node.shared().state.try_lock().is_ok() { &self.free } else { &self.held };
            counter.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Stream tasks are woken after the node lock is released (a task woken on another
    /// worker would otherwise find the lock taken and sleep again): the reader's waker,
    /// woken by the driver when data arrives, finds the lock free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_are_woken_after_the_lock_is_released() {
        let shared = SharedSeed::random();
        let bind = || {
            Node::bind(
                "127.0.0.1:0".parse().unwrap(),
                Config::default(),
                Identity::new(NodeSeed::random(), shared.clone()),
            )
        };
        let (a, b) = (bind().await.unwrap(), bind().await.unwrap());
        let (s, r) = tokio::join!(a.connect(b.local_addr(), Some(b.node_id())), b.accept());
        let (s, r) = (s.unwrap(), r.unwrap());
        let mut tx = s.open_uni().await.unwrap();
        tx.write_all(b"hello").await.unwrap();
        let mut rx = r.accept_uni().await.unwrap();
        let mut buf = [0u8; 64];
        // Read what is there; then wait for more with the probe as the waker.
        let probe =
            std::sync::Arc::new(Probe { node: b.clone(), free: AtomicUsize::new(0), held: AtomicUsize::new(0) });
        let waker = std::task::Waker::from(probe.clone());
        let mut cx = Context::from_waker(&waker);
        let mut got = 0;
        for round in 0..20 {
            loop {
                let mut rb = ReadBuf::new(&mut buf);
                match std::pin::Pin::new(&mut rx).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(res) => {
                        res.unwrap();
                        got += rb.filled().len();
                    }
                    Poll::Pending => break,
                }
            }
            tx.write_all(&[round as u8; 7]).await.unwrap();
            tokio::time::timeout(std::time::Duration::from_secs(10), async {
                while probe.free.load(Ordering::SeqCst) + probe.held.load(Ordering::SeqCst) <= round {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            })
            .await
            .expect("the reader was never woken");
        }
        assert!(got >= 5, "read {got} bytes");
        assert_eq!(probe.held.load(Ordering::SeqCst), 0, "a reader was woken while the node lock was held");
        assert!(probe.free.load(Ordering::SeqCst) >= 20);
    }
}
