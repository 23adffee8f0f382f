//! The node handle: bind, connect, accept, events, broadcast, shutdown.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use stt_proto::{Config, ConfigError, FrameError, Identity, NodeId, SessionId};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot, Mutex as AsyncMutex};

use crate::clock::Clock;
use crate::dispatch::EventEmitter;
use crate::driver::{Cmd, Driver};
use crate::session::{ConnectError, Session};
use crate::shared::SessionShared;

/// Why `Node::bind` failed.
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
    cmds: mpsc::UnboundedSender<Cmd>,
    incoming: AsyncMutex<mpsc::UnboundedReceiver<Arc<SessionShared>>>,
    events: broadcast::Sender<stt_proto::Event>,
    local_addr: SocketAddr,
    node_id: NodeId,
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    tunnels: crate::tunnel::Tunnels,
}

/// An STT node on a UDP socket: accepts and opens sessions. Cheap to clone.
#[doc(alias = "STTNode")]
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl Node {
    /// Binds a UDP socket at `addr` and starts the driver task on the current runtime.
    ///
    /// # Errors
    /// [`BindError`] if the socket cannot be bound or the config is invalid.
    pub async fn bind(addr: SocketAddr, config: Config, identity: Identity) -> Result<Node, BindError> {
        let socket = UdpSocket::bind(addr).await.map_err(BindError::Io)?;
        Self::with_socket(socket, config, identity)
    }

    /// Runs a node on an already bound socket.
    ///
    /// # Errors
    /// [`BindError`] if the config is invalid or the socket has no local address.
    pub fn with_socket(socket: UdpSocket, config: Config, identity: Identity) -> Result<Node, BindError> {
        let clock = Clock::new();
        let rng = ChaCha20Rng::from_os_rng();
        let max_payload = config.udp_payload_limit();
        let core =
            stt_proto::Node::new(config, identity, rng, clock.now(), Some(Clock::unix())).map_err(BindError::Config)?;
        let local_addr = socket.local_addr().map_err(BindError::Io)?;
        let node_id = core.node_id();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let (ev_tx, _) = broadcast::channel(1024);
        let (tunnel_tx, tunnel_rx) = mpsc::channel(4096);
        let driver = Driver {
            core,
            udp: crate::udp::Udp::new(socket, max_payload).map_err(BindError::Io)?,
            clock,
            cmds: cmd_rx,
            tunnel_rx,
            tunnels: Default::default(),
            incoming: in_tx,
            events: ev_tx.clone(),
            sessions: Default::default(),
            connects: Default::default(),
            dirty: Default::default(),
            shutdown: None,
            tmp: vec![0; 65_536],
        };
        tokio::spawn(driver.run());
        tracing::info!(node = %crate::driver::short(&node_id), "node started");
        Ok(Node {
            inner: Arc::new(NodeInner {
                cmds: cmd_tx,
                incoming: AsyncMutex::new(in_rx),
                events: ev_tx,
                local_addr,
                node_id,
                tunnels: crate::tunnel::Tunnels::new(tunnel_tx),
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

    pub(crate) fn send(&self, cmd: Cmd) -> bool {
        self.inner.cmds.send(cmd).is_ok()
    }

    /// Opens a session to `addr`. With `expected_peer`, the handshake fails unless the
    /// responder proves that node id.
    ///
    /// # Errors
    /// [`ConnectError`] when the handshake fails or the node is shut down.
    pub async fn connect(&self, addr: SocketAddr, expected_peer: Option<NodeId>) -> Result<Session, ConnectError> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Cmd::Connect { to: addr.into(), expect: expected_peer, reply }) {
            return Err(ConnectError(crate::Ended::NodeGone));
        }
        match rx.await {
            Ok(Ok(shared)) => Ok(Session::new(self.clone(), shared)),
            Ok(Err(e)) => Err(ConnectError(e)),
            Err(_) => Err(ConnectError(crate::Ended::NodeGone)),
        }
    }

    /// Waits for the next session a peer opened. `None` once the node is shut down.
    pub async fn accept(&self) -> Option<Session> {
        let shared = self.inner.incoming.lock().await.recv().await?;
        Some(Session::new(self.clone(), shared))
    }

    /// Subscribes to every core event (typed; filter with [`EventEmitter::filter`]).
    pub fn events(&self) -> EventEmitter {
        EventEmitter::new(self.inner.events.subscribe())
    }

    /// Sends an application frame on every established session; returns per-session results.
    pub async fn send_to_all(&self, ty: u8, body: Bytes) -> Vec<(SessionId, Result<(), FrameError>)> {
        self.broadcast(None, ty, body).await
    }

    /// Sends an application frame on the given sessions.
    pub async fn send_to_sessions(
        &self,
        sessions: &[SessionId],
        ty: u8,
        body: Bytes,
    ) -> Vec<(SessionId, Result<(), FrameError>)> {
        self.broadcast(Some(sessions.to_vec()), ty, body).await
    }

    async fn broadcast(
        &self,
        sessions: Option<Vec<SessionId>>,
        ty: u8,
        data: Bytes,
    ) -> Vec<(SessionId, Result<(), FrameError>)> {
        let (reply, rx) = oneshot::channel();
        if !self.send(Cmd::Frame { sessions, ty, data, reply }) {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
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
        let (reply, rx) = oneshot::channel();
        if !self.send(Cmd::Connect { to: stt_proto::PathAddr::Tunnel(id), expect: expected_peer, reply }) {
            return Err(crate::ws::WsConnectError::Session(ConnectError(crate::Ended::NodeGone)));
        }
        match rx.await {
            Ok(Ok(shared)) => Ok(Session::new(self.clone(), shared)),
            Ok(Err(e)) => Err(crate::ws::WsConnectError::Session(ConnectError(e))),
            Err(_) => Err(crate::ws::WsConnectError::Session(ConnectError(crate::Ended::NodeGone))),
        }
    }

    /// Closes every session gracefully and stops the driver.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.send(Cmd::Shutdown { reply }) {
            let _ = rx.await;
        }
    }
}
