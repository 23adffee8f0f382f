//! The session handle: streams, datagrams, application frames, stats, close.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use stt_proto::{DatagramError, FrameError, Instant, NodeId, PathAddr, SessionId, SessionStats, StreamError, StreamId};

use crate::node::Node;
use crate::shared::{Ended, SessionShared};
use crate::stream::{RecvStream, SendStream};

/// A handshake that did not produce a session.
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
/// use stt_tokio::{ConnectError, Ended};
/// // B is not the node A expects there: the handshake fails and says why.
/// let wrong = NodeSeed::random().node_id();
/// let err = a.connect(b.local_addr(), Some(wrong)).await.err().expect("wrong peer");
/// assert!(matches!(err, ConnectError(Ended::Failed(_))), "{err}");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectError(pub Ended);

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect failed: {}", self.0)
    }
}

impl std::error::Error for ConnectError {}

/// Why [`Session::register_relay`] did not register.
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
/// use stt_tokio::RelayError;
/// // B is no relay (`Config::relay` is off): it refuses.
/// assert_eq!(s.register_relay().await, Err(RelayError::Refused));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayError {
    /// The peer refused: it is not a relay, is full, or this node is not on its member list.
    Refused,
    /// The session itself runs through a relay (no relaying through relays).
    RelayedPath,
    /// The session ended first.
    Ended,
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelayError::Refused => {
                "the relay refused this node (it is not a relay, is full, or this node is not on its member list)"
            }
            RelayError::RelayedPath => "a session through a relay cannot itself be a relay",
            RelayError::Ended => "the session with the relay ended",
        })
    }
}

impl std::error::Error for RelayError {}

/// An authenticated, encrypted session with a peer node. Cheap to clone; when the last
/// clone and the last stream handle of the session are dropped, the session closes
/// (application code 0), as a `quinn::Connection` does.
#[doc(alias = "STTSession")]
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
/// let shared = SharedSeed::random(); // every member holds the same shared seed
/// let node = |s: &SharedSeed| Identity::new(NodeSeed::random(), s.clone());
/// let a = Node::bind("127.0.0.1:0".parse()?, Config::default(), node(&shared)).await?;
/// let b = Node::bind("127.0.0.1:0".parse()?, Config::default(), node(&shared)).await?;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
/// let (s, r) = (s?, r.expect("b is running"));
/// // A bidirectional stream: write, finish, read the answer.
/// let (mut tx, mut rx) = s.open_bi().await?;
/// tx.write_all(b"ping").await?;
/// tx.finish().await?;
/// let (mut peer_tx, mut peer_rx) = r.accept_bi().await.expect("a stream");
/// let mut got = Vec::new();
/// peer_rx.read_to_end(&mut got).await?;
/// peer_tx.write_all(&got).await?;
/// peer_tx.finish().await?;
/// let mut echo = Vec::new();
/// rx.read_to_end(&mut echo).await?;
/// assert_eq!(echo, b"ping");
/// // Unreliable datagrams (each fits one packet).
/// s.send_datagram(bytes::Bytes::from_static(b"tick")).await?;
/// assert_eq!(r.recv_datagram().await.as_deref(), Some(&b"tick"[..]));
/// // Deliver everything accepted, then close with an application code.
/// s.close_gracefully(0).await?;
/// # Ok(())
/// # }
/// ```
pub struct Session {
    node: Node,
    shared: Arc<SessionShared>,
}

impl Clone for Session {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Self { node: self.node.clone(), shared: self.shared.clone() }
    }
}

/// Closes the session when its last handle goes (however the handles were obtained).
impl Drop for Session {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let shared = self.node.shared();
        let mut st = shared.lock();
        if st.sessions.contains_key(&self.shared.id) {
            let now = st.clock.now();
            if let Some(mut s) = st.core.session(self.shared.id) {
                s.close(now, 0);
            }
            shared.flush(&mut st);
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("id", &self.shared.id).field("peer", &self.shared.peer).finish()
    }
}

impl Session {
    pub(crate) fn new(node: Node, shared: Arc<SessionShared>) -> Self {
        shared.handles.fetch_add(1, Ordering::Relaxed);
        Self { node, shared }
    }

    /// Runs `f` on the core's session under the node lock, then sends what it produced
    /// from this task. `None` when the session is gone from the core.
    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut stt_proto::SessionRef<'_>, Instant) -> R) -> Option<R> {
        let shared = self.node.shared();
        let mut st = shared.lock();
        let now = st.clock.now();
        let r = st.core.session(self.shared.id).map(|mut s| f(&mut s, now));
        shared.flush(&mut st);
        r
    }

    /// The node this session belongs to.
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// The session's id within its node.
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// The peer's authenticated node id.
    pub fn peer_node_id(&self) -> NodeId {
        self.shared.peer
    }

    /// The peer's current address.
    pub fn remote(&self) -> PathAddr {
        self.shared.remote()
    }

    /// Whether the session currently runs through a relay.
    pub fn is_relayed(&self) -> bool {
        self.remote().is_relayed()
    }

    /// Waits until the session's path changes (a punched direct path, a fallback to the
    /// relay, a peer's new address) and returns the new one; `None` once the session ended.
    pub async fn path_changed(&self) -> Option<PathAddr> {
        let before = self.remote();
        loop {
            let notified = self.shared.changed.notified();
            if self.shared.ended().is_some() {
                return None;
            }
            let now = self.remote();
            if now != before {
                return Some(now);
            }
            notified.await;
        }
    }

    /// Asks the peer to be this node's relay (spec §12) and waits for its answer. On
    /// success returns this node's address as the relay sees it (its reflexive address), and
    /// tells the node its local addresses, so sessions opened through the relay can punch
    /// a direct path. Keep this session open: it is the relay path.
    ///
    /// # Errors
    /// [`RelayError`] if the peer refused (it is no relay, or this node is not on its member
    /// list), the path is itself relayed, or the session ended.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, RelayConfig, SharedSeed};
    /// let shared = SharedSeed::random();
    /// let id = || Identity::new(NodeSeed::random(), shared.clone());
    /// let any = "127.0.0.1:0".parse()?;
    /// let relay = Node::bind(any, Config::default().relay(Some(RelayConfig::default())), id()).await?;
    /// let (a, b) = (Node::bind(any, Config::default(), id()).await?, Node::bind(any, Config::default(), id()).await?);
    /// // The relay must hold its members' sessions (a dropped handle closes one).
    /// let held = tokio::spawn({
    ///     let relay = relay.clone();
    ///     async move { let mut v = Vec::new(); while let Some(s) = relay.accept().await { v.push(s) } }
    /// });
    /// let (ra, rb) = (a.connect(relay.local_addr(), None).await?, b.connect(relay.local_addr(), None).await?);
    /// ra.register_relay().await?;
    /// rb.register_relay().await?;
    /// // A reaches B by node id alone; punching then looks for a direct path.
    /// let (s, r) = tokio::join!(a.connect_via_relay(&ra, b.node_id()), b.accept());
    /// assert_eq!(r.expect("b is running").peer_node_id(), a.node_id());
    /// s?.close(0);
    /// held.abort();
    /// # Ok(())
    /// # }
    /// ```
    pub async fn register_relay(&self) -> Result<Option<std::net::SocketAddr>, RelayError> {
        {
            let shared = self.node.shared();
            let mut st = shared.lock();
            let Some(mut s) = st.core.session(self.id()) else { return Err(RelayError::Ended) };
            if !s.register_relay() {
                return Err(RelayError::RelayedPath);
            }
            self.shared.set_relay(stt_proto::RelayStatus::Registering);
            // Local candidates: the bound port on the interface address that routes to
            // the relay (a wildcard bind has no address of its own).
            if let PathAddr::Udp(relay_addr) = self.remote() {
                let port = self.node.local_addr().port();
                let ip = if self.node.local_addr().ip().is_unspecified() {
                    std::net::UdpSocket::bind((self.node.local_addr().ip(), 0))
                        .and_then(|s| s.connect(relay_addr).and_then(|()| s.local_addr()))
                        .map(|a| a.ip())
                        .ok()
                } else {
                    Some(self.node.local_addr().ip())
                };
                if let Some(ip) = ip {
                    st.core.set_local_addresses(&[std::net::SocketAddr::new(ip, port)]);
                }
            }
            shared.flush(&mut st);
        }
        loop {
            let notified = self.shared.changed.notified();
            if self.shared.ended().is_some() {
                return Err(RelayError::Ended);
            }
            match self.shared.relay() {
                Some(stt_proto::RelayStatus::Registered { observed }) => return Ok(observed),
                Some(stt_proto::RelayStatus::Refused) => return Err(RelayError::Refused),
                _ => {}
            }
            notified.await;
        }
    }

    pub(crate) fn shared(&self) -> &SessionShared {
        &self.shared
    }

    /// Why the session ended, once it has.
    pub fn ended(&self) -> Option<Ended> {
        self.shared.ended()
    }

    /// Waits until the session ends.
    pub async fn closed(&self) -> Ended {
        loop {
            let notified = self.shared.changed.notified();
            if let Some(e) = self.shared.ended() {
                return e;
            }
            notified.await;
        }
    }

    /// Current counters (RTT, congestion window, losses, ...); `None` once the session is gone.
    pub async fn stats(&self) -> Option<SessionStats> {
        let shared = self.node.shared();
        let mut st = shared.lock();
        let stats = st.core.session(self.shared.id).map(|s| s.stats());
        stats
    }

    /// Derives keying material bound to this session (both sides get the same bytes for
    /// the same label and context; see the spec's exporter).
    ///
    /// # Errors
    /// [`stt_proto::ExportError`] if the session is gone or `out` is over 8160 bytes.
    pub async fn export_keying_material(
        &self,
        label: &[u8],
        context: &[u8],
        out: &mut [u8],
    ) -> Result<(), stt_proto::ExportError> {
        let shared = self.node.shared();
        let mut st = shared.lock();
        match st.core.session(self.shared.id) {
            Some(s) => s.export_keying_material(label, context, out),
            None => Err(stt_proto::ExportError::NotEstablished),
        }
    }

    async fn open(&self, uni: bool) -> Result<StreamId, StreamError> {
        loop {
            let notified = self.shared.changed.notified();
            if self.shared.ended().is_some() {
                return Err(StreamError::NotEstablished);
            }
            let r = self.with_core(|s, now| s.open_stream(now, uni)).unwrap_or(Err(StreamError::NotEstablished));
            match r {
                Ok(id) => return Ok(id),
                // At the peer's stream limit: wait until it raises it.
                Err(StreamError::Blocked) => notified.await,
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens a bidirectional stream (waits while the peer's stream limit is reached).
    ///
    /// # Errors
    /// [`StreamError`] if the session is gone.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), StreamError> {
        let id = self.open(false).await?;
        Ok((SendStream::new(self.clone(), id), RecvStream::new(self.clone(), id)))
    }

    /// Opens a unidirectional stream.
    ///
    /// # Errors
    /// [`StreamError`] if the session is gone.
    pub async fn open_uni(&self) -> Result<SendStream, StreamError> {
        let id = self.open(true).await?;
        Ok(SendStream::new(self.clone(), id))
    }

    async fn accept(&self, uni: bool) -> Option<StreamId> {
        loop {
            let notified = self.shared.incoming.notified();
            if let Some(id) = self.with_core(|s, _| if uni { s.accept_uni() } else { s.accept_bi() }).flatten() {
                return Some(id);
            }
            if self.shared.ended().is_some() {
                return None;
            }
            notified.await;
        }
    }

    /// Waits for the next bidirectional stream the peer opened. Streams nobody accepts
    /// stay in the core under flow control: the peer cannot open more than the stream
    /// limit, nor send more than the windows allow.
    pub async fn accept_bi(&self) -> Option<(SendStream, RecvStream)> {
        let id = self.accept(false).await?;
        Some((SendStream::new(self.clone(), id), RecvStream::new(self.clone(), id)))
    }

    /// Waits for the next unidirectional stream the peer opened.
    pub async fn accept_uni(&self) -> Option<RecvStream> {
        let id = self.accept(true).await?;
        Some(RecvStream::new(self.clone(), id))
    }

    /// The largest datagram payload [`send_datagram`](Self::send_datagram) accepts now
    /// (it follows the path MTU); 0 once the session is gone.
    pub fn max_datagram_size(&self) -> usize {
        let shared = self.node.shared();
        let mut st = shared.lock();
        st.core.session(self.shared.id).map_or(0, |s| s.max_datagram())
    }

    /// Sends an unreliable datagram; when the queue is full the oldest queued one is dropped
    /// (for live data, where the newest matters). See also
    /// [`send_datagram_wait`](Self::send_datagram_wait).
    ///
    /// # Errors
    /// [`DatagramError`] (too large, disabled, not established).
    pub async fn send_datagram(&self, data: Bytes) -> Result<(), DatagramError> {
        if self.shared.ended().is_some() {
            return Err(DatagramError::NotEstablished);
        }
        self.with_core(|s, now| s.send_datagram(now, &data, true)).unwrap_or(Err(DatagramError::NotEstablished))
    }

    /// Sends an unreliable datagram, waiting while the send queue is full instead of
    /// dropping anything queued (the datagram may still be lost on the path).
    ///
    /// # Errors
    /// [`DatagramError`] (too large, disabled, not established).
    pub async fn send_datagram_wait(&self, data: Bytes) -> Result<(), DatagramError> {
        loop {
            if self.shared.ended().is_some() {
                return Err(DatagramError::NotEstablished);
            }
            match self.with_core(|s, now| s.send_datagram(now, &data, false)) {
                None => return Err(DatagramError::NotEstablished),
                Some(Err(DatagramError::Blocked)) => {
                    // The queue drains as packets leave: look again shortly.
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                Some(r) => return r,
            }
        }
    }

    /// Receives the next datagram; `None` once the session ended.
    pub async fn recv_datagram(&self) -> Option<Bytes> {
        loop {
            let notified = self.shared.datagram_ready.notified();
            {
                let shared = self.node.shared();
                let mut st = shared.lock();
                let st = &mut *st;
                st.ensure_scratch();
                if let Some(n) = st.core.session(self.shared.id).and_then(|mut s| s.recv_datagram(&mut st.tmp)) {
                    return Some(Bytes::copy_from_slice(&st.tmp[..n.min(st.tmp.len())]));
                }
            }
            if self.shared.ended().is_some() {
                return None;
            }
            notified.await;
        }
    }

    /// Sends an application frame (type 0x80–0xFF, declared by the peer), waiting while
    /// the frame send buffer is full (the peer reads slower than this side writes).
    ///
    /// # Errors
    /// [`FrameError`] (undeclared type, too large, not established).
    pub async fn send_frame(&self, ty: u8, body: Bytes) -> Result<(), FrameError> {
        loop {
            let notified = self.shared.writable.notified();
            match self.try_send_frame(ty, &body) {
                Err(FrameError::Blocked) => notified.await,
                r => return r,
            }
        }
    }

    /// Sends an application frame now, or fails with [`FrameError::Blocked`] when the
    /// frame send buffer is full.
    ///
    /// # Errors
    /// [`FrameError`] (undeclared type, too large, buffer full, not established).
    pub fn try_send_frame(&self, ty: u8, body: &[u8]) -> Result<(), FrameError> {
        if self.shared.ended().is_some() {
            return Err(FrameError::NotEstablished);
        }
        self.with_core(|s, now| s.send_app_frame(now, ty, body)).unwrap_or(Err(FrameError::NotEstablished))
    }

    /// Receives the next application frame `(type, body)`; `None` once the session ended.
    pub async fn recv_frame(&self) -> Option<(u8, Bytes)> {
        loop {
            let notified = self.shared.frame_ready.notified();
            {
                let shared = self.node.shared();
                let mut st = shared.lock();
                let st = &mut *st;
                let now = st.clock.now();
                st.ensure_scratch();
                let got = st.core.session(self.shared.id).and_then(|mut s| s.recv_app_frame(now, &mut st.tmp));
                if let Some((ty, n)) = got {
                    let body = Bytes::copy_from_slice(&st.tmp[..n.min(st.tmp.len())]);
                    // Reading may have opened the frame stream's window: send that now.
                    shared.flush(st);
                    return Some((ty, body));
                }
            }
            if self.shared.ended().is_some() {
                return None;
            }
            notified.await;
        }
    }

    /// Waits until everything handed to the session so far (stream data and ends, frames,
    /// datagrams) was sent and acknowledged by the peer.
    ///
    /// # Errors
    /// [`Ended`] if the session ended first.
    pub async fn flush(&self) -> Result<(), Ended> {
        let id = self.shared.id;
        std::future::poll_fn(|cx| {
            let shared = self.node.shared();
            let mut st = shared.lock();
            if let Some(e) = self.shared.ended() {
                return std::task::Poll::Ready(Err(e));
            }
            match st.core.session(id).map(|s| s.all_acknowledged()) {
                Some(true) => std::task::Poll::Ready(Ok(())),
                None => std::task::Poll::Ready(Err(Ended::NodeGone)),
                Some(false) => {
                    st.flush_waiters.push((id, cx.waker().clone()));
                    std::task::Poll::Pending
                }
            }
        })
        .await
    }

    /// Closes the session with an application code, at once: what is still queued or in
    /// flight is dropped (the peer sees the close). To deliver first, use
    /// [`close_gracefully`](Self::close_gracefully).
    pub fn close(&self, code: u64) {
        self.with_core(|s, now| s.close(now, code));
    }

    /// Closes at once like [`close`](Self::close), with a reason phrase for humans that the
    /// peer reads with [`peer_close_reason`](Self::peer_close_reason) (UTF-8, cut to 255
    /// bytes).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use stt_tokio::{Config, Ended, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
    /// let shared = SharedSeed::random();
    /// let a = Node::bind("127.0.0.1:0".parse().unwrap(), Config::default(), Identity::new(NodeSeed::random(), shared.clone())).await.unwrap();
    /// let b = Node::bind("127.0.0.1:0".parse().unwrap(), Config::default(), Identity::new(NodeSeed::random(), shared)).await.unwrap();
    /// let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
    /// let (s, r) = (s.unwrap(), r.unwrap());
    /// s.close_with_reason(3, "disk full");
    /// r.closed().await;
    /// assert_eq!(r.peer_close_reason().as_deref(), Some("disk full"));
    /// # }
    /// ```
    pub fn close_with_reason(&self, code: u64, reason: &str) {
        self.with_core(|s, now| s.close_with_reason(now, code, reason));
    }

    /// The reason phrase the peer closed the session with, once it did and if it gave one.
    pub fn peer_close_reason(&self) -> Option<String> {
        self.shared.peer_close_reason()
    }

    /// Delivers everything handed over so far ([`flush`](Self::flush)), then closes with
    /// `code`.
    ///
    /// # Errors
    /// [`Ended`] if the session ended before everything was acknowledged.
    pub async fn close_gracefully(&self, code: u64) -> Result<(), Ended> {
        self.flush().await?;
        self.close(code);
        Ok(())
    }
}
