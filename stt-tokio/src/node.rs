//! The node handle: bind, connect, accept, events, broadcast, shutdown.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use stt_proto::{Config, ConfigError, FrameError, Identity, NodeId, PathAddr, SessionId};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::clock::Clock;
use crate::dispatch::EventEmitter;
use crate::session::{ConnectError, Session};
use crate::shared::Ended;
use crate::state::{NodeShared, State};
use crate::udp::{SocketOptions, UdpIo};

/// Why `Node::bind` failed.
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
/// use stt_tokio::BindError;
/// // The address is taken.
/// let err = Node::bind(a.local_addr(), Config::default(), id(&shared)).await.err().expect("in use");
/// assert!(matches!(err, BindError::Io(ref e) if e.kind() == std::io::ErrorKind::AddrInUse), "{err}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum BindError {
    /// The socket could not be bound.
    Io(std::io::Error),
    /// The configuration is invalid.
    Config(ConfigError),
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Io(e) => write!(f, "cannot bind the UDP socket: {e}"),
            BindError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BindError {}

struct NodeInner {
    shared: Arc<NodeShared>,
    local_addr: SocketAddr,
    node_id: NodeId,
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    tunnels: crate::tunnel::Tunnels,
    events: broadcast::Sender<stt_proto::Event>,
}

impl Drop for NodeInner {
    /// The last handle is gone (sessions and streams hold one): close every session and
    /// let the driver stop once they have ended.
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if !st.stopping {
            st.stopping = true;
            let now = st.clock.now();
            st.core.close(now);
            self.shared.flush(&mut st);
        }
        drop(st);
        self.shared.driver.notify_one();
    }
}

/// An STT node on a UDP socket: accepts and opens sessions. Cheap to clone; when the
/// last clone (and every session and stream handle) is dropped, its sessions close and
/// the driver task stops.
#[doc(alias = "STTNode")]
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
/// // Pin the peer by its node id; `accept` yields the session on the other side.
/// let (s, r) = tokio::join!(a.connect(b.local_addr(), Some(b.node_id())), b.accept());
/// let (s, r) = (s?, r.expect("b is running"));
/// assert_eq!(r.peer_node_id(), a.node_id());
/// s.close(0);
/// a.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl Node {
    /// Binds a UDP socket at `addr` and starts the driver task on the current runtime, with
    /// the default [`SocketOptions`] (4 MiB socket buffers asked for).
    ///
    /// # Errors
    /// [`BindError`] if the socket cannot be bound or the config is invalid.
    pub async fn bind(addr: SocketAddr, config: Config, identity: Identity) -> Result<Node, BindError> {
        Self::bind_with(addr, config, identity, SocketOptions::default()).await
    }

    /// As [`bind`](Self::bind), with the socket's kernel buffer sizes chosen by `socket`.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub async fn bind_with(
        addr: SocketAddr,
        config: Config,
        identity: Identity,
        socket: SocketOptions,
    ) -> Result<Node, BindError> {
        let udp = UdpSocket::bind(addr).await.map_err(BindError::Io)?;
        Self::with_socket_options(udp, config, identity, socket)
    }

    /// Runs a node on an already bound socket; its buffers are enlarged (never shrunk) to
    /// the default [`SocketOptions`].
    ///
    /// # Errors
    /// [`BindError`] if the config is invalid or the socket has no local address.
    pub fn with_socket(socket: UdpSocket, config: Config, identity: Identity) -> Result<Node, BindError> {
        Self::with_socket_options(socket, config, identity, SocketOptions::default())
    }

    /// As [`with_socket`](Self::with_socket), with the buffer sizes to ask for chosen by
    /// `options`.
    ///
    /// # Errors
    /// As [`with_socket`](Self::with_socket).
    pub fn with_socket_options(
        socket: UdpSocket,
        config: Config,
        identity: Identity,
        options: SocketOptions,
    ) -> Result<Node, BindError> {
        let clock = Clock::new();
        let rng = ChaCha20Rng::from_os_rng();
        let core =
            stt_proto::Node::new(config, identity, rng, clock.now(), Some(Clock::unix())).map_err(BindError::Config)?;
        let local_addr = socket.local_addr().map_err(BindError::Io)?;
        let node_id = core.node_id();
        let (ev_tx, _) = broadcast::channel(1024);
        let (tunnel_tx, tunnel_rx) = mpsc::channel(4096);
        let io = UdpIo::new(socket, options).map_err(BindError::Io)?;
        let state = State::new(core, clock, &io, ev_tx.clone());
        let shared = Arc::new(NodeShared::new(state, io));
        tokio::spawn(crate::driver::run(shared.clone(), tunnel_rx));
        tracing::info!(node = %crate::state::short(&node_id), "node started");
        Ok(Node {
            inner: Arc::new(NodeInner {
                shared,
                local_addr,
                node_id,
                tunnels: crate::tunnel::Tunnels::new(tunnel_tx),
                events: ev_tx,
            }),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Node-wide counters of the core: datagrams, drops by reason, handshakes, X25519
    /// operations.
    pub fn stats(&self) -> stt_proto::NodeStats {
        self.inner.shared.lock().core.stats().clone()
    }

    /// The UDP socket's receive and send buffer sizes in bytes, as the kernel reports them
    /// (Linux reports twice the size granted: its bookkeeping overhead is included).
    pub fn socket_buffers(&self) -> (usize, usize) {
        self.inner.shared.io.buffer_sizes()
    }

    pub(crate) fn shared(&self) -> &NodeShared {
        &self.inner.shared
    }

    /// Opens a session to `addr`. With `expected_peer`, the handshake fails unless the
    /// responder proves that node id. Dropping the returned future abandons the handshake.
    ///
    /// On a direct path the session is returned one round trip after the first packet,
    /// when this node sends its AUTH_PROOF (spec [HS-22]), as a QUIC or TLS 1.3 client's
    /// connect: what is written at once goes out right behind it. A responder whose
    /// allow-list refuses this node then closes the session
    /// ([`Ended::Closed`](crate::Ended)`(RemoteTransport(NotAllowed))`, shown as "not on its
    /// allow-list"); through a relay, the refusal is a [`ConnectError`] instead.
    ///
    /// # Errors
    /// [`ConnectError`] when the handshake fails or the node is shut down.
    pub async fn connect(&self, addr: SocketAddr, expected_peer: Option<NodeId>) -> Result<Session, ConnectError> {
        self.connect_path(addr.into(), expected_peer).await
    }

    /// Resolves `host:port` (a name or an address) and connects to the first address of
    /// this node's socket family (a socket bound to `0.0.0.0` cannot reach `::1`, which
    /// `localhost` often resolves to first), or else the first address.
    ///
    /// # Errors
    /// [`ConnectError`] with [`Ended::Unresolved`] if the name does not resolve, or as
    /// [`connect`](Self::connect).
    pub async fn connect_host(&self, host: &str, expected_peer: Option<NodeId>) -> Result<Session, ConnectError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(host).await.map(Iterator::collect).unwrap_or_default();
        let v4 = self.local_addr().is_ipv4();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4() == v4)
            .or(addrs.first())
            .copied()
            .ok_or(ConnectError(Ended::Unresolved))?;
        self.connect(addr, expected_peer).await
    }

    /// A handle on an established session by id (for example from an [`Event`](stt_proto::Event)).
    pub fn session(&self, id: SessionId) -> Option<Session> {
        let shared = self.shared().lock().sessions.get(&id).map(|a| a.shared.clone())?;
        Some(Session::new(self.clone(), shared))
    }

    /// Opens a session with `peer` through `relay`, a session on which
    /// [`Session::register_relay`] succeeded (spec §12). It is usable at once over the
    /// relayed path; both sides then punch a direct path and move onto it when one works
    /// (watch [`Session::path_changed`]), falling back to the relay if it dies.
    ///
    /// # Errors
    /// [`ConnectError`] with [`Ended::NoRelay`] if `relay` is not registered, or as
    /// [`connect`](Self::connect).
    pub async fn connect_via_relay(&self, relay: &Session, peer: NodeId) -> Result<Session, ConnectError> {
        let to = PathAddr::Relay(stt_proto::RelayAddr { via: relay.id(), peer });
        self.connect_path(to, Some(peer)).await
    }

    async fn connect_path(&self, to: PathAddr, expected_peer: Option<NodeId>) -> Result<Session, ConnectError> {
        let (reply, rx) = oneshot::channel();
        let id = {
            let shared = self.shared();
            let mut st = shared.lock();
            if st.stopping || st.stopped {
                return Err(ConnectError(Ended::NodeGone));
            }
            // One session per peer pair: a session that exists already is returned, not
            // superseded by a second handshake.
            let existing = st.sessions.values().map(|a| &a.shared).find(|s| match expected_peer {
                Some(p) => s.peer == p,
                None => s.remote() == to,
            });
            if let Some(s) = existing {
                let s = s.clone();
                drop(st);
                return Ok(Session::new(self.clone(), s));
            }
            let now = st.clock.now();
            let id = match to {
                PathAddr::Relay(r) => st.core.connect_via_relay(now, r.via, r.peer),
                _ => st.core.connect(now, to, expected_peer),
            }
            .map_err(|e| match e {
                stt_proto::ConnectError::NoRelay => ConnectError(Ended::NoRelay),
                _ => ConnectError(Ended::NodeGone),
            })?;
            st.connects.insert(id, reply);
            shared.flush(&mut st);
            id
        };
        let mut pending = PendingConnect { node: self, id, done: false };
        let r = rx.await;
        pending.done = true;
        match r {
            Ok(Ok(shared)) => Ok(Session::new(self.clone(), shared)),
            Ok(Err(e)) => Err(ConnectError(e)),
            Err(_) => Err(ConnectError(Ended::NodeGone)),
        }
    }

    /// Waits for the next session a peer opened. `None` once the node is shut down.
    pub async fn accept(&self) -> Option<Session> {
        let shared = self.shared();
        loop {
            let notified = shared.incoming.notified();
            {
                let mut st = shared.lock();
                if let Some(s) = st.incoming.pop_front() {
                    return Some(Session::new(self.clone(), s));
                }
                if st.stopped || st.stopping {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Subscribes to every core event (typed; filter with [`EventEmitter::filter`]).
    pub fn events(&self) -> EventEmitter {
        EventEmitter::new(self.inner.events.subscribe())
    }

    /// Sends an application frame on every established session; returns per-session results.
    pub async fn send_to_all(&self, ty: u8, body: Bytes) -> Vec<(SessionId, Result<(), FrameError>)> {
        self.broadcast(None, ty, &body)
    }

    /// Sends an application frame on the given sessions.
    pub async fn send_to_sessions(
        &self,
        sessions: &[SessionId],
        ty: u8,
        body: Bytes,
    ) -> Vec<(SessionId, Result<(), FrameError>)> {
        self.broadcast(Some(sessions), ty, &body)
    }

    fn broadcast(
        &self,
        sessions: Option<&[SessionId]>,
        ty: u8,
        data: &[u8],
    ) -> Vec<(SessionId, Result<(), FrameError>)> {
        let shared = self.shared();
        let mut st = shared.lock();
        let targets: Vec<SessionId> = match sessions {
            Some(s) => s.to_vec(),
            None => st.sessions.keys().copied().collect(),
        };
        let now = st.clock.now();
        let results = targets
            .into_iter()
            .map(|id| {
                // Only sessions the application side knows (established, not closed).
                let known = st.sessions.contains_key(&id);
                let r = match st.core.session(id) {
                    Some(mut s) if known => s.send_app_frame(now, ty, data),
                    _ => Err(FrameError::NotEstablished),
                };
                (id, r)
            })
            .collect();
        shared.flush(&mut st);
        results
    }

    /// Serves STT over WebSocket on `addr` (with `tls`, over `wss://`), next to UDP.
    /// Returns the bound address.
    ///
    /// # Errors
    /// If the TCP listener cannot be bound.
    #[cfg(feature = "websocket")]
    pub async fn listen_ws(
        &self,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: crate::ws::WsLimits,
    ) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(crate::ws::serve(listener, acceptor, limits, self.inner.tunnels.clone()));
        Ok(bound)
    }

    /// Opens a session over WebSocket to `url` (`ws://host:port/path`, or `wss://` with a
    /// TLS client config).
    ///
    /// # Errors
    /// [`ConnectError`] if the connection or the handshake fails.
    #[cfg(feature = "websocket")]
    pub async fn connect_ws(
        &self,
        url: &str,
        expected_peer: Option<NodeId>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Session, crate::ws::WsConnectError> {
        let id =
            crate::ws::connect(url, tls, self.inner.tunnels.clone()).await.map_err(crate::ws::WsConnectError::Ws)?;
        self.connect_path(stt_proto::PathAddr::Tunnel(id), expected_peer)
            .await
            .map_err(crate::ws::WsConnectError::Session)
    }

    /// Closes every session gracefully and waits until the driver stopped.
    pub async fn shutdown(&self) {
        let shared = self.shared();
        {
            let mut st = shared.lock();
            if !st.stopping {
                st.stopping = true;
                let now = st.clock.now();
                st.core.close(now);
                shared.flush(&mut st);
            }
        }
        shared.driver.notify_one();
        loop {
            let notified = shared.stopped.notified();
            if shared.lock().stopped {
                return;
            }
            notified.await;
        }
    }
}

/// Abandons a handshake whose `connect` future was dropped before it finished.
struct PendingConnect<'a> {
    node: &'a Node,
    id: SessionId,
    done: bool,
}

impl Drop for PendingConnect<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let shared = self.node.shared();
        let mut st = shared.lock();
        st.connects.remove(&self.id);
        let now = st.clock.now();
        if let Some(mut s) = st.core.session(self.id) {
            s.close(now, 0);
        }
        shared.flush(&mut st);
    }
}
