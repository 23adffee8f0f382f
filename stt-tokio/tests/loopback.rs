//! The tokio driver over real loopback UDP sockets.

use std::time::Duration;

use bytes::Bytes;
use stt_tokio::{Config, Ended, Event, FrameDispatcher, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn node(shared: &SharedSeed, config: Config) -> Node {
    let identity = Identity::new(NodeSeed::random(), shared.clone());
    Node::bind("127.0.0.1:0".parse().unwrap(), config, identity).await.unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8).collect()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.expect("timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_transfer_and_echo() {
    let shared = SharedSeed::random();
    let a = node(&shared, Config::default()).await;
    let b = node(&shared, Config::default()).await;
    let b_id = b.node_id();
    let b_addr = b.local_addr();
    let server = tokio::spawn(async move {
        let s = b.accept().await.unwrap();
        // One uni stream in, echoed back on a bi stream the client opens next.
        let mut uni = s.accept_uni().await.unwrap();
        let mut got = Vec::new();
        uni.read_to_end(&mut got).await.unwrap();
        let (mut tx, mut rx) = s.accept_bi().await.unwrap();
        let mut echo = Vec::new();
        rx.read_to_end(&mut echo).await.unwrap();
        tx.write_all(&echo).await.unwrap();
        tx.finish().await.unwrap();
        (got, s.peer_node_id(), b)
    });
    let s = within(a.connect(b_addr, Some(b_id))).await.unwrap();
    assert_eq!(s.peer_node_id(), b_id);
    let data = pattern(4 << 20);
    let mut w = s.open_uni().await.unwrap();
    w.write_all(&data).await.unwrap();
    within(w.finish()).await.unwrap();
    let (mut tx, mut rx) = s.open_bi().await.unwrap();
    tx.write_all(b"ping over a bidirectional stream").await.unwrap();
    tx.finish().await.unwrap();
    let mut echo = Vec::new();
    within(rx.read_to_end(&mut echo)).await.unwrap();
    assert_eq!(echo, b"ping over a bidirectional stream");
    let (got, peer, _b) = within(server).await.unwrap();
    assert!(got == data, "4 MiB intact");
    assert_eq!(peer, a.node_id());
    let stats = s.stats().await.unwrap();
    assert!(stats.bytes_out > 4 << 20);
}

#[tokio::test]
async fn datagrams_frames_events_and_broadcast() {
    let shared = SharedSeed::random();
    let a = node(&shared, Config::default()).await;
    let b = node(&shared, Config::default().app_frame_types(&[0x80, 0x81])).await;
    let mut established = b.events().filter(|e| matches!(e, Event::Established { .. }));
    let s = within(a.connect(b.local_addr(), Some(b.node_id()))).await.unwrap();
    let r = within(b.accept()).await.unwrap();
    assert!(matches!(within(established.recv()).await, Some(Event::Established { .. })));
    s.send_datagram(Bytes::from_static(b"unreliable")).await.unwrap();
    assert_eq!(within(r.recv_datagram()).await.unwrap(), Bytes::from_static(b"unreliable"));
    // Frames of declared types go through; others are refused locally.
    s.send_frame(0x80, Bytes::from_static(b"one")).await.unwrap();
    assert!(s.send_frame(0x90, Bytes::from_static(b"x")).await.is_err());
    let results = a.send_to_all(0x81, Bytes::from_static(b"all")).await;
    assert_eq!(results.len(), 1);
    assert!(results[0].1.is_ok());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let mut d = FrameDispatcher::new()
        .on(0x80, move |_, b| s1.lock().unwrap().push((0x80, b)))
        .on(0x81, move |_, b| s2.lock().unwrap().push((0x81, b)));
    for _ in 0..2 {
        let (ty, body) = within(r.recv_frame()).await.unwrap();
        assert!(d.dispatch(&r, ty, body));
    }
    assert_eq!(*seen.lock().unwrap(), vec![(0x80, Bytes::from_static(b"one")), (0x81, Bytes::from_static(b"all"))]);
    // Close with a code: the peer sees it.
    s.close(7);
    assert_eq!(within(r.closed()).await, Ended::Closed(stt_tokio::CloseReason::Remote(7)));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn wrong_expected_peer_fails_and_wrong_seed_times_out() {
    let shared = SharedSeed::random();
    let a = node(&shared, Config::default()).await;
    let b = node(&shared, Config::default()).await;
    let wrong = NodeSeed::random().node_id();
    let e = within(a.connect(b.local_addr(), Some(wrong))).await.unwrap_err();
    assert_eq!(e.0, Ended::Failed(stt_tokio::HandshakeFailure::PeerMismatch));
    let stranger = node(
        &SharedSeed::random(),
        Config::default().handshake_timeout(Duration::from_secs(1)).handshake_retransmit(Duration::from_millis(100)),
    )
    .await;
    let e = within(stranger.connect(b.local_addr(), None)).await.unwrap_err();
    assert_eq!(e.0, Ended::Failed(stt_tokio::HandshakeFailure::Timeout));
}
