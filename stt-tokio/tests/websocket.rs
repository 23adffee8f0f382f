//! STT over WebSocket (ws:// and wss://) on loopback, next to UDP, under abuse.

use std::sync::Arc;
use std::time::Duration;

use stt_tokio::{rustls, Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed, WsLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn node(shared: &SharedSeed) -> Node {
    Node::bind("127.0.0.1:0".parse().unwrap(), Config::default(), Identity::new(NodeSeed::random(), shared.clone()))
        .await
        .unwrap()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.expect("timed out")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8).collect()
}

/// Sends `data` from `from` over a fresh stream of `session` and checks `server` got it.
/// Returns the server's session handle (dropping the last one closes the session).
async fn transfer(session: &stt_tokio::Session, server: &Node, data: &[u8]) -> stt_tokio::Session {
    let server = server.clone();
    let expect = data.len();
    let rx = tokio::spawn(async move {
        let s = server.accept().await.unwrap();
        let mut r = s.accept_uni().await.unwrap();
        let mut v = Vec::with_capacity(expect);
        r.read_to_end(&mut v).await.unwrap();
        // Dropping the last handle would close the session: keep it until the end.
        (v, s)
    });
    let mut w = session.open_uni().await.unwrap();
    w.write_all(data).await.unwrap();
    within(w.finish()).await.unwrap();
    let (got, server_session) = within(rx).await.unwrap();
    assert!(got == data, "byte-exact");
    server_session
}

/// [WS-1]: handshake and 16 MiB over ws://.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_over_ws() {
    let shared = SharedSeed::random();
    let (a, b) = (node(&shared).await, node(&shared).await);
    let port = b.listen_ws("127.0.0.1:0".parse().unwrap(), None, WsLimits::default()).await.unwrap();
    let s = within(a.connect_ws(&format!("ws://{port}/stt"), Some(b.node_id()), None)).await.unwrap();
    assert_eq!(s.peer_node_id(), b.node_id());
    let _server_session = transfer(&s, &b, &pattern(16 << 20)).await;
}

fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// [WS-1]: handshake and 16 MiB over wss:// with a certificate made in the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_over_wss() {
    let (server_tls, client_tls) = tls_pair();
    let shared = SharedSeed::random();
    let (a, b) = (node(&shared).await, node(&shared).await);
    let addr = b.listen_ws("127.0.0.1:0".parse().unwrap(), Some(server_tls), WsLimits::default()).await.unwrap();
    let url = format!("wss://localhost:{}/stt", addr.port());
    let s = within(a.connect_ws(&url, Some(b.node_id()), Some(client_tls))).await.unwrap();
    let _server_session = transfer(&s, &b, &pattern(16 << 20)).await;
}

/// [WS-2]: a UDP peer and a WebSocket peer talk to the same node at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_websocket_peers_at_once() {
    let shared = SharedSeed::random();
    let (hub, u, w) = (node(&shared).await, node(&shared).await, node(&shared).await);
    let port = hub.listen_ws("127.0.0.1:0".parse().unwrap(), None, WsLimits::default()).await.unwrap();
    let hub2 = hub.clone();
    let server = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..2 {
            let s = hub2.accept().await.unwrap();
            let d = s.recv_datagram().await.unwrap();
            got.push((s.remote(), d));
        }
        got
    });
    let su = within(u.connect(hub.local_addr(), None)).await.unwrap();
    let sw = within(w.connect_ws(&format!("ws://{port}/"), None, None)).await.unwrap();
    su.send_datagram(bytes::Bytes::from_static(b"via udp")).await.unwrap();
    sw.send_datagram(bytes::Bytes::from_static(b"via websocket")).await.unwrap();
    let got = within(server).await.unwrap();
    let kinds: Vec<bool> = got.iter().map(|(r, _)| matches!(r, stt_tokio::PathAddr::Tunnel(_))).collect();
    assert!(kinds.contains(&true) && kinds.contains(&false), "one UDP and one tunnel path: {got:?}");
}

/// [WS-3]: a client that sends half an upgrade and stops does not delay another client;
/// a 10 MiB message closes only its own connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_and_oversize_clients_do_not_hurt_others() {
    use futures_util::SinkExt;
    let shared = SharedSeed::random();
    let (a, b) = (node(&shared).await, node(&shared).await);
    let port = b.listen_ws("127.0.0.1:0".parse().unwrap(), None, WsLimits::default()).await.unwrap();
    // Half an HTTP upgrade, then silence.
    let mut stalled = tokio::net::TcpStream::connect(port).await.unwrap();
    stalled.write_all(b"GET /stt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n").await.unwrap();
    // A 10 MiB message from a raw WebSocket client.
    let (mut big, _) = tokio_tungstenite::connect_async(format!("ws://{port}/")).await.unwrap();
    let sent = big.send(tokio_tungstenite::tungstenite::Message::Binary(vec![0u8; 10 << 20].into())).await;
    let _ = sent;
    // Meanwhile a well-behaved client connects promptly.
    let t = std::time::Instant::now();
    let s =
        tokio::time::timeout(Duration::from_secs(5), a.connect_ws(&format!("ws://{port}/"), Some(b.node_id()), None))
            .await
            .expect("not delayed by the stalled or oversize clients")
            .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    let _server_session = transfer(&s, &b, &pattern(1 << 20)).await;
    // The oversize client's connection was closed by the server.
    use futures_util::StreamExt;
    let next = tokio::time::timeout(Duration::from_secs(5), big.next()).await.expect("server reacted");
    assert!(
        !matches!(next, Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(_)))),
        "closed, not served: {next:?}"
    );
}

/// Issue 14, item 4: upgraded connections that never carry an authenticated handshake
/// (here: silent, as from anyone without the seed) fill the listener's slots only until
/// `auth_timeout`; then they are closed and a legitimate `ws://` client connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_are_closed_after_the_auth_timeout() {
    use futures_util::StreamExt;
    let t = Duration::from_secs(1);
    let shared = SharedSeed::random();
    let (a, b) = (node(&shared).await, node(&shared).await);
    let limits = WsLimits { max_connections: 8, auth_timeout: t, upgrade_timeout: t, ..WsLimits::default() };
    let port = b.listen_ws("127.0.0.1:0".parse().unwrap(), None, limits).await.unwrap();
    let url = format!("ws://{port}/stt");
    let mut held = Vec::new();
    for _ in 0..8 {
        let (ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        held.push(ws);
    }
    let start = std::time::Instant::now();
    // While the slots are held, a legitimate client is turned away.
    let refused = tokio::time::timeout(t / 4, a.connect_ws(&url, Some(b.node_id()), None)).await;
    assert!(!matches!(refused, Ok(Ok(_))), "the door was full, yet a client got in");
    // The held connections are closed by the server, between T and 10 T after they were opened.
    for ws in &mut held {
        let next = tokio::time::timeout(10 * t, ws.next()).await.expect("held connection closed by the server");
        assert!(!matches!(next, Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(_)))), "{next:?}");
    }
    let closed_after = start.elapsed();
    assert!(closed_after >= t / 2, "closed before the timeout: {closed_after:?}");
    // Then a legitimate client connects and transfers (retrying while the slots drain).
    let session = loop {
        match tokio::time::timeout(10 * t, a.connect_ws(&url, Some(b.node_id()), None)).await {
            Ok(Ok(s)) => break s,
            _ if start.elapsed() < 10 * t => tokio::time::sleep(t / 10).await,
            other => panic!("a legitimate client could not connect after the timeout: {:?}", other.map(|r| r.err())),
        }
    };
    let _server_session = transfer(&session, &b, &pattern(1 << 20)).await;
    // An authenticated connection outlives the timeout: the peer still acknowledges data.
    tokio::time::sleep(2 * t).await;
    assert!(session.ended().is_none(), "{:?}", session.ended());
    let mut w = session.open_uni().await.unwrap();
    w.write_all(&pattern(1 << 16)).await.unwrap();
    within(w.finish()).await.unwrap();
}

/// [RY-1] [RY-3] (spec §12, §11): a member behind a network that blocks UDP registers with
/// the relay over ws://, and a UDP member reaches it by node id through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_member_over_websocket() {
    let shared = SharedSeed::random();
    let relay = Node::bind(
        "127.0.0.1:0".parse().unwrap(),
        Config::default().relay(Some(stt_tokio::RelayConfig::default())),
        Identity::new(NodeSeed::random(), shared.clone()),
    )
    .await
    .unwrap();
    let keep = tokio::spawn({
        let relay = relay.clone();
        async move {
            let mut v = Vec::new();
            while let Some(s) = relay.accept().await {
                v.push(s);
            }
        }
    });
    let port = relay.listen_ws("127.0.0.1:0".parse().unwrap(), None, WsLimits::default()).await.unwrap();
    let (a, b) = (node(&shared).await, node(&shared).await);
    // B only speaks WebSocket to the relay; A uses UDP.
    let rb = within(b.connect_ws(&format!("ws://{port}/stt"), Some(relay.node_id()), None)).await.unwrap();
    assert_eq!(within(rb.register_relay()).await, Ok(None), "no reflexive address over a tunnel");
    let ra = within(a.connect(relay.local_addr(), Some(relay.node_id()))).await.unwrap();
    within(ra.register_relay()).await.unwrap();
    let s = within(a.connect_via_relay(&ra, b.node_id())).await.unwrap();
    let data = pattern(3 << 20);
    let _server_side = transfer(&s, &b, &data).await;
    assert!(relay.stats().relay_forwarded > 0);
    keep.abort();
}
