//! STT over WebSocket (feature `websocket`): every binary message carries exactly one
//! STT datagram, and each connection is a path of its own (`PathAddr::Tunnel`) to the
//! core, so the handshake, sessions and streams are unchanged (spec §11).
//!
//! Each connection runs in its own task: a client that stalls mid-upgrade only holds its
//! own task until the upgrade timeout, and a malformed or oversize message closes only its
//! own connection. Keepalive is the core's; no WebSocket pings are sent.
//!
//! The door cannot be held by non-members: an accepted connection that has not carried an
//! authenticated handshake within [`WsLimits::auth_timeout`] of its acceptance is closed.
//! "Authenticated" is read from the traffic, without asking the driver: a responder answers
//! nothing to a HELLO that no accepted seed opens (spec §6.2, [HS-6]) and sends its second
//! datagram (FINAL) only after AUTH_PROOF verified, so two datagrams in each direction mean
//! the peer proved the seed. Before that, a connection may send at most
//! [`PRE_AUTH_MESSAGES`] messages of at most [`PRE_AUTH_MAX_MESSAGE`] bytes, and its
//! read buffer is [`READ_BUFFER`] bytes: what a connection holds before authentication is
//! small and bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use stt_proto::TunnelId;

use crate::tunnel::{TunnelMsg, Tunnels};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Datagrams queued toward one WebSocket connection before further ones are dropped
/// (loss recovery resends).
const OUT_QUEUE: usize = 512;

/// Largest message a connection may send before it is authenticated: the largest HELLO
/// (spec §6.2, step 1).
pub const PRE_AUTH_MAX_MESSAGE: usize = 2048;
/// Messages a connection may send before it is authenticated (HELLOs, their
/// retransmissions, HELLOs after COOKIEs, AUTH_PROOF); past this it is closed.
pub const PRE_AUTH_MESSAGES: u32 = 32;
/// Bytes of read buffer per connection (tungstenite's default is 128 KiB, allocated up front).
pub const READ_BUFFER: usize = 16 * 1024;
/// Datagrams each way after which a connection counts as authenticated (module docs).
const AUTH_DATAGRAMS: u32 = 2;
/// First and longest pause of the accept loop after an accept error.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(5), Duration::from_secs(1));

/// Limits of the WebSocket listener.
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
/// use stt_tokio::WsLimits;
/// // At most 64 connections, 5 s to authenticate; the rest as by default.
/// let limits = WsLimits { max_connections: 64, auth_timeout: std::time::Duration::from_secs(5), ..WsLimits::default() };
/// let at = b.listen_ws("127.0.0.1:0".parse()?, None, limits).await?;
/// let s = a.connect_ws(&format!("ws://{at}/stt"), Some(b.node_id()), None).await?;
/// assert_eq!(s.peer_node_id(), b.node_id());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct WsLimits {
    /// Largest WebSocket message accepted (an STT datagram is at most 65527 bytes).
    pub max_message: usize,
    /// Time a client has to complete the TLS and HTTP upgrade.
    pub upgrade_timeout: Duration,
    /// Time, from acceptance, a connection has to carry an authenticated STT handshake;
    /// one that has not is closed. Bounds how long anyone without the shared seed can hold
    /// one of the `max_connections` slots.
    pub auth_timeout: Duration,
    /// Connections served at once; more are closed right away.
    pub max_connections: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_message: 65_536,
            upgrade_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

fn ws_config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(max)).max_frame_size(Some(max)).read_buffer_size(READ_BUFFER)
}

/// The accept loop's pause after an error (EMFILE, ENFILE, ENOBUFS, ...): doubling from
/// 5 ms up to 1 s, back to 5 ms after a success. Without it, a full descriptor table makes
/// `accept` fail at once, forever, and the loop spins a core.
#[derive(Debug)]
struct AcceptBackoff {
    next: Duration,
}

impl AcceptBackoff {
    fn new() -> Self {
        Self { next: ACCEPT_BACKOFF.0 }
    }

    /// An accept failed: how long to pause before the next one.
    fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(ACCEPT_BACKOFF.1);
        pause
    }

    /// An accept succeeded.
    fn succeeded(&mut self) {
        self.next = ACCEPT_BACKOFF.0;
    }
}

/// Whether a server-side connection has carried an authenticated handshake yet.
#[derive(Debug, Default)]
struct PreAuth {
    from_peer: u32,
    to_peer: u32,
}

impl PreAuth {
    fn authenticated(&self) -> bool {
        self.from_peer >= AUTH_DATAGRAMS && self.to_peer >= AUTH_DATAGRAMS
    }

    /// A message arrived from the peer; `false` if it breaks the pre-authentication bounds.
    fn inbound(&mut self, len: usize) -> bool {
        let was = self.authenticated();
        self.from_peer = self.from_peer.saturating_add(1);
        was || (len <= PRE_AUTH_MAX_MESSAGE && self.from_peer <= PRE_AUTH_MESSAGES)
    }

    fn outbound(&mut self) {
        self.to_peer = self.to_peer.saturating_add(1);
    }
}

/// Registers a new connection with the driver; returns its id and outgoing queue.
async fn register(tunnels: &Tunnels) -> Option<(TunnelId, mpsc::Receiver<Bytes>)> {
    let id = tunnels.allocate();
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(OUT_QUEUE);
    tunnels.to_driver.send(TunnelMsg::Opened(id, out_tx)).await.ok()?;
    Some((id, out_rx))
}

/// Pumps one upgraded connection until it closes. With `auth_deadline` (server side), the
/// connection is closed at that instant unless it carried an authenticated handshake, and
/// it must respect the pre-authentication bounds until then.
async fn run_connection<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    id: TunnelId,
    mut out_rx: mpsc::Receiver<Bytes>,
    tunnels: Tunnels,
    auth_deadline: Option<tokio::time::Instant>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut pre = PreAuth::default();
    let checked = auth_deadline.is_some();
    let deadline = tokio::time::sleep_until(auth_deadline.unwrap_or_else(tokio::time::Instant::now));
    tokio::pin!(deadline);
    loop {
        let waiting = checked && !pre.authenticated();
        tokio::select! {
            () = &mut deadline, if waiting => {
                tracing::debug!(tunnel = id.0, "WebSocket connection closed: no authenticated handshake in time");
                break;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    if checked && !pre.inbound(data.len()) {
                        tracing::debug!(tunnel = id.0, "WebSocket connection closed: over the pre-authentication bounds");
                        break;
                    }
                    if tunnels.to_driver.send(TunnelMsg::Data(id, data)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // Text, close, protocol errors, oversize messages: this connection ends.
                _ => break,
            },
            out = out_rx.recv() => match out {
                Some(data) => {
                    pre.outbound();
                    if ws.send(Message::Binary(data)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    let _ = ws.close(None).await;
    let _ = tunnels.to_driver.send(TunnelMsg::Closed(id)).await;
}

/// Accepts WebSocket (or, with `tls`, secure WebSocket) connections on `listener`.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: WsLimits,
    tunnels: Tunnels,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut backoff = AcceptBackoff::new();
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _peer)) => {
                backoff.succeeded();
                tcp
            }
            Err(e) => {
                if tunnels.to_driver.is_closed() {
                    return;
                }
                let pause = backoff.failed();
                tracing::warn!(error = %e, pause_ms = pause.as_millis() as u64, "WebSocket accept failed; pausing");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        if tunnels.to_driver.is_closed() {
            return;
        }
        if active.load(Ordering::Relaxed) >= limits.max_connections {
            drop(tcp);
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (tunnels, tls, active) = (tunnels.clone(), tls.clone(), active.clone());
        let auth_deadline = Some(tokio::time::Instant::now() + limits.auth_timeout);
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let config = ws_config(limits.max_message);
            match tls {
                Some(acceptor) => {
                    let up = tokio::time::timeout(limits.upgrade_timeout, async {
                        let tls = acceptor.accept(tcp).await.ok()?;
                        tokio_tungstenite::accept_async_with_config(tls, Some(config)).await.ok()
                    })
                    .await;
                    if let Ok(Some(ws)) = up {
                        if let Some((id, rx)) = register(&tunnels).await {
                            run_connection(ws, id, rx, tunnels, auth_deadline).await;
                        }
                    }
                }
                None => {
                    let up = tokio::time::timeout(
                        limits.upgrade_timeout,
                        tokio_tungstenite::accept_async_with_config(tcp, Some(config)),
                    )
                    .await;
                    if let Ok(Ok(ws)) = up {
                        if let Some((id, rx)) = register(&tunnels).await {
                            run_connection(ws, id, rx, tunnels, auth_deadline).await;
                        }
                    }
                }
            }
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Why a WebSocket connection could not be made.
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
/// use stt_tokio::{WsConnectError, WsError};
/// let err = a.connect_ws("http://example.com/stt", None, None).await.err().expect("not ws://");
/// assert!(matches!(err, WsConnectError::Ws(WsError::BadUrl(_))), "{err}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum WsError {
    /// The URL is not `ws://host:port/path` or `wss://host:port/path`.
    BadUrl(String),
    /// TCP, TLS or the upgrade failed.
    Connect(String),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::BadUrl(u) => write!(f, "not a ws:// or wss:// URL: {u}"),
            WsError::Connect(e) => write!(f, "WebSocket connection failed: {e}"),
        }
    }
}

impl std::error::Error for WsError {}

/// Opens a client connection to `url`; returns its tunnel id once the upgrade completed.
pub(crate) async fn connect(
    url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    tunnels: Tunnels,
) -> Result<TunnelId, WsError> {
    let (secure, rest) = if let Some(r) = url.strip_prefix("ws://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (true, r)
    } else {
        return Err(WsError::BadUrl(url.into()));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = tokio::net::lookup_host(authority).await.map_err(|e| WsError::Connect(e.to_string()))?.next();
    let addr: SocketAddr = addr.ok_or_else(|| WsError::BadUrl(url.into()))?;
    let tcp = TcpStream::connect(addr).await.map_err(|e| WsError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let config = Some(ws_config(65_536));
    if secure {
        let tls = tls.ok_or_else(|| WsError::Connect("wss:// needs a TLS client config".into()))?;
        let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| WsError::Connect(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| WsError::Connect(e.to_string()))?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, config)
            .await
            .map_err(|e| WsError::Connect(e.to_string()))?;
        let (id, rx) = register(&tunnels).await.ok_or_else(|| WsError::Connect("node stopped".into()))?;
        tokio::spawn(run_connection(ws, id, rx, tunnels, None));
        Ok(id)
    } else {
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, config)
            .await
            .map_err(|e| WsError::Connect(e.to_string()))?;
        let (id, rx) = register(&tunnels).await.ok_or_else(|| WsError::Connect("node stopped".into()))?;
        tokio::spawn(run_connection(ws, id, rx, tunnels, None));
        Ok(id)
    }
}

/// Why `Node::connect_ws` failed.
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
/// use stt_tokio::{WsConnectError, WsError};
/// // Nothing listens on this port.
/// let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// let err = a.connect_ws(&format!("ws://127.0.0.1:{port}/stt"), None, None).await.err().expect("refused");
/// assert!(matches!(err, WsConnectError::Ws(WsError::Connect(_))), "{err}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum WsConnectError {
    /// The WebSocket connection failed.
    Ws(WsError),
    /// The STT handshake over it failed.
    Session(crate::ConnectError),
}

impl std::fmt::Display for WsConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsConnectError::Ws(e) => write!(f, "{e}"),
            WsConnectError::Session(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WsConnectError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_cap_and_resets() {
        let mut b = AcceptBackoff::new();
        let pauses: Vec<Duration> = (0..12).map(|_| b.failed()).collect();
        assert_eq!(pauses[0], ACCEPT_BACKOFF.0);
        assert!(pauses.windows(2).all(|w| w[1] == (w[0] * 2).min(ACCEPT_BACKOFF.1)));
        assert_eq!(*pauses.last().unwrap(), ACCEPT_BACKOFF.1);
        // 100 consecutive failures cost at most 100 wake-ups over more than a minute.
        let total: Duration = (0..100).map(|_| b.failed()).sum();
        assert!(total >= Duration::from_secs(60));
        b.succeeded();
        assert_eq!(b.failed(), ACCEPT_BACKOFF.0);
    }

    #[test]
    fn pre_auth_bounds() {
        // A non-member: never answered, so never authenticated, and cut off past the bounds.
        let mut p = PreAuth::default();
        assert!(!p.inbound(PRE_AUTH_MAX_MESSAGE + 1), "an oversize message before authentication");
        let mut p = PreAuth::default();
        assert!((0..PRE_AUTH_MESSAGES).all(|_| p.inbound(1200)));
        assert!(!p.inbound(1200), "one message too many");
        assert!(!p.authenticated());
        // A member: HELLO, CHALLENGE, AUTH_PROOF, FINAL; then any size.
        let mut p = PreAuth::default();
        assert!(p.inbound(1200));
        p.outbound();
        assert!(p.inbound(300));
        assert!(!p.authenticated());
        p.outbound();
        assert!(p.authenticated());
        assert!(p.inbound(65_000));
    }
}
