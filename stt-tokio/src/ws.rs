//! STT over WebSocket (feature `websocket`): every binary message carries exactly one
//! STT datagram, and each connection is a path of its own (`PathAddr::Tunnel`) to the
//! core, so the handshake, sessions and streams are unchanged (spec §11).
//!
//! Each connection runs in its own task: a client that stalls mid-upgrade only holds its
//! own task until the upgrade timeout, and a malformed or oversize message closes only its
//! own connection. Keepalive is the core's; no WebSocket pings are sent.

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

/// Limits of the WebSocket listener.
#[derive(Clone, Copy, Debug)]
pub struct WsLimits {
    /// Largest WebSocket message accepted (an STT datagram is at most 65527 bytes).
    pub max_message: usize,
    /// Time a client has to complete the TLS and HTTP upgrade.
    pub upgrade_timeout: Duration,
    /// Connections served at once; more are closed right away.
    pub max_connections: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self { max_message: 65_536, upgrade_timeout: Duration::from_secs(10), max_connections: 1024 }
    }
}

fn ws_config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(max)).max_frame_size(Some(max))
}

/// Registers a new connection with the driver; returns its id and outgoing queue.
async fn register(tunnels: &Tunnels) -> Option<(TunnelId, mpsc::Receiver<Bytes>)> {
    let id = tunnels.allocate();
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(OUT_QUEUE);
    tunnels.to_driver.send(TunnelMsg::Opened(id, out_tx)).await.ok()?;
    Some((id, out_rx))
}

/// Pumps one upgraded connection until it closes.
async fn run_connection<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    id: TunnelId,
    mut out_rx: mpsc::Receiver<Bytes>,
    tunnels: Tunnels,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(data))) => {
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
                    if sink.send(Message::Binary(data)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    let _ = sink.close().await;
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
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else { continue };
        if tunnels.to_driver.is_closed() {
            return;
        }
        if active.load(Ordering::Relaxed) >= limits.max_connections {
            drop(tcp);
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (tunnels, tls, active) = (tunnels.clone(), tls.clone(), active.clone());
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
                            run_connection(ws, id, rx, tunnels).await;
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
                            run_connection(ws, id, rx, tunnels).await;
                        }
                    }
                }
            }
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Why a WebSocket connection could not be made.
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
        tokio::spawn(run_connection(ws, id, rx, tunnels));
        Ok(id)
    } else {
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, config)
            .await
            .map_err(|e| WsError::Connect(e.to_string()))?;
        let (id, rx) = register(&tunnels).await.ok_or_else(|| WsError::Connect("node stopped".into()))?;
        tokio::spawn(run_connection(ws, id, rx, tunnels));
        Ok(id)
    }
}

/// Why `Node::connect_ws` failed.
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
