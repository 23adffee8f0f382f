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
        (got, s.peer_node_id(), b, s)
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
    let (got, peer, _b, _s) = within(server).await.unwrap();
    assert!(got == data, "4 MiB intact");
    assert_eq!(peer, a.node_id());
    let stats = s.stats().await.unwrap();
    assert!(stats.bytes_out > 4 << 20);
}

/// On a multi-thread runtime only the driver takes datagrams from the socket, and readers
/// rely on its wake-ups alone (readers take input themselves only on a current-thread
/// runtime): many streams read at once, each in a task of its own on either worker, all
/// complete and intact (a lost wake-up hangs a reader; `within` bounds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_on_a_multi_thread_runtime_get_every_byte() {
    const STREAMS: usize = 16;
    const LEN: usize = 256 << 10;
    let shared = SharedSeed::random();
    let a = node(&shared, Config::default()).await;
    let b = node(&shared, Config::default()).await;
    let (s, r) = tokio::join!(a.connect(b.local_addr(), Some(b.node_id())), b.accept());
    let (s, r) = (s.unwrap(), r.unwrap());
    let readers = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..STREAMS {
            let mut rx = within(r.accept_uni()).await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                within(rx.read_to_end(&mut got)).await.unwrap();
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        (all, r)
    });
    let mut writers = Vec::new();
    for i in 0..STREAMS {
        let mut tx = s.open_uni().await.unwrap();
        writers.push(tokio::spawn(async move {
            let mut data = pattern(LEN);
            data[0] = i as u8;
            tx.write_all(&data).await.unwrap();
            within(tx.finish()).await.unwrap();
        }));
    }
    for w in writers {
        within(w).await.unwrap();
    }
    let (all, _r) = within(readers).await.unwrap();
    let mut firsts: Vec<u8> = all.iter().map(|g| g[0]).collect();
    firsts.sort_unstable();
    assert_eq!(firsts, (0..STREAMS as u8).collect::<Vec<_>>(), "one stream from each writer");
    for got in &all {
        assert_eq!(got.len(), LEN);
        assert!(got[1..] == pattern(LEN)[1..], "stream intact");
    }
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
    let mut b_events = b.events();
    let stranger = node(
        &SharedSeed::random(),
        Config::default().handshake_timeout(Duration::from_secs(1)).handshake_retransmit(Duration::from_millis(100)),
    )
    .await;
    let e = within(stranger.connect(b.local_addr(), None)).await.unwrap_err();
    assert_eq!(e.0, Ended::Failed(stt_tokio::HandshakeFailure::Timeout));
    assert!(e.to_string().contains("does not hold this shared seed"), "plain words: {e}");
    // And nothing on the responder: no event at all.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), b_events.recv()).await.is_err(),
        "the responder saw nothing"
    );
}

fn sha3(data: &[u8]) -> [u8; 32] {
    use sha3::Digest;
    sha3::Sha3_256::digest(data).into()
}

/// 16 MiB over one stream and 100 concurrent streams, verified by hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_and_a_hundred_concurrent_streams() {
    let shared = SharedSeed::random();
    let a = node(&shared, Config::default()).await;
    let b = node(&shared, Config::default()).await;
    let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
    let (s, r) = (s.unwrap(), r.unwrap());
    let receiver = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..101 {
            let mut rx = r.accept_uni().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut v = Vec::new();
                rx.read_to_end(&mut v).await.unwrap();
                sha3(&v)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out.sort();
        // The session goes back with the hashes, so it stays open until the senders'
        // `finish` saw their last bytes acknowledged: dropping the last handle closes the
        // session at once, and its SESSION_CLOSE does not acknowledge the packets that came
        // just before it, so a sender still waiting in `finish` would get `SessionClosed`.
        (out, r)
    });
    let big = pattern(16 << 20);
    let mut expect = vec![sha3(&big)];
    let mut tasks = Vec::new();
    let s2 = s.clone();
    tasks.push(tokio::spawn(async move {
        let mut w = s2.open_uni().await.unwrap();
        w.write_all(&big).await.unwrap();
        w.finish().await.unwrap();
    }));
    for k in 0..100u32 {
        let data: Vec<u8> = pattern(10_000 + k as usize * 997).iter().map(|b| b ^ k as u8).collect();
        expect.push(sha3(&data));
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut w = s.open_uni().await.unwrap();
            w.write_all(&data).await.unwrap();
            w.finish().await.unwrap();
        }));
    }
    for t in tasks {
        within(t).await.unwrap();
    }
    expect.sort();
    assert_eq!(within(receiver).await.unwrap().0, expect);
}

/// Idle timeout through the driver's timers, asserted as an interval; graceful close.
#[tokio::test]
async fn idle_timeout_interval_and_node_shutdown_with_open_sessions() {
    let shared = SharedSeed::random();
    let quiet = Config::default().keepalive_active(None).keepalive_idle(None).idle_timeout(Duration::from_millis(300));
    let a = node(&shared, quiet.clone()).await;
    let b = node(&shared, quiet).await;
    let (s, r) = tokio::join!(a.connect(b.local_addr(), None), b.accept());
    let (s, _r) = (s.unwrap(), r.unwrap());
    let t = tokio::time::Instant::now();
    assert_eq!(within(s.closed()).await, Ended::Closed(stt_tokio::CloseReason::IdleTimeout));
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited <= Duration::from_secs(3), "idle timeout after {waited:?}");

    // Shutdown with sessions open: completes, and the peer learns of it.
    let c = node(&shared, Config::default()).await;
    let d = node(&shared, Config::default()).await;
    let (s1, r1) = tokio::join!(c.connect(d.local_addr(), None), d.accept());
    let (_s1, r1) = (s1.unwrap(), r1.unwrap());
    within(c.shutdown()).await;
    assert!(matches!(within(r1.closed()).await, Ended::Closed(stt_tokio::CloseReason::RemoteTransport(_))));
    assert!(c.connect(d.local_addr(), None).await.is_err(), "a shut-down node connects to nothing");
}

/// A UDP proxy between two sockets that drops 5 %, duplicates 5 % and delays (reorders).
async fn fault_proxy(server: std::net::SocketAddr, seed: u64) -> std::net::SocketAddr {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let sock = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let mut client = None;
        let mut buf = vec![0u8; 65_536];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            let Ok(Ok((n, from))) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await else {
                break;
            };
            let to = if from == server {
                match client {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                client = Some(from);
                server
            };
            let roll = rng.next_u32() % 100;
            if roll < 5 {
                continue;
            }
            let copies = if roll >= 95 { 2 } else { 1 };
            for _ in 0..copies {
                let delay = Duration::from_micros(u64::from(rng.next_u32() % 3000));
                let data = buf[..n].to_vec();
                let sock = sock.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = sock.send_to(&data, to).await;
                });
            }
        }
    });
    addr
}

/// The same transfer through a fault-injecting proxy arrives byte-exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_through_fault_proxy() {
    let shared = SharedSeed::random();
    let a = node(&shared, Config::default()).await;
    let b = node(&shared, Config::default()).await;
    let proxy = fault_proxy(b.local_addr(), 7).await;
    let server = tokio::spawn(async move {
        let r = b.accept().await.unwrap();
        let mut rx = r.accept_uni().await.unwrap();
        let mut v = Vec::new();
        rx.read_to_end(&mut v).await.unwrap();
        // Dropping the last handle would close the session: keep it for the stats below.
        (v, b, r)
    });
    let s = within(a.connect(proxy, None)).await.unwrap();
    let data = pattern(8 << 20);
    let mut w = s.open_uni().await.unwrap();
    w.write_all(&data).await.unwrap();
    within(w.finish()).await.unwrap();
    let (got, _b, _r) = within(server).await.unwrap();
    assert!(got == data, "byte-exact through loss, duplication and reordering");
    let stats = s.stats().await.unwrap();
    assert!(stats.lost > 0, "the proxy did drop packets");
}
