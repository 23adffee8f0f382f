//! The API the way a careless user drives it (issue #18, items 6–10): dropped handles,
//! early close, errors, a second connect. Real loopback sockets; no timing asserts
//! (`within` only bounds a hang).

use std::time::Duration;

use bytes::Bytes;
use stt_tokio::{CloseReason, Config, Ended, Identity, Node, NodeSeed, RandomSeed, SharedSeed, StreamClosed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn node(shared: &SharedSeed, config: Config) -> Node {
    Node::bind("127.0.0.1:0".parse().unwrap(), config, Identity::new(NodeSeed::random(), shared.clone())).await.unwrap()
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("hung")
}

async fn pair(config: Config) -> (Node, Node, stt_tokio::Session, stt_tokio::Session) {
    let shared = SharedSeed::random();
    let a = node(&shared, config.clone()).await;
    let b = node(&shared, config).await;
    let (s, r) = tokio::join!(a.connect(b.local_addr(), Some(b.node_id())), b.accept());
    (a, b, s.unwrap(), r.unwrap())
}

/// A `SendStream` dropped without `finish` resets the stream: the reader gets an error,
/// never a stream that looks complete (before: the reader hung).
#[tokio::test]
async fn dropped_send_stream_resets() {
    let (_a, _b, s, r) = pair(Config::default()).await;
    let mut w = s.open_uni().await.unwrap();
    w.write_all(b"written, then dropped").await.unwrap();
    // (A stream reset before the application accepted it is never offered at all.)
    let mut rx = within(r.accept_uni()).await.unwrap();
    drop(w);
    let mut got = Vec::new();
    let e = within(rx.read_to_end(&mut got)).await.unwrap_err();
    assert_eq!(StreamClosed::of(&e), Some(StreamClosed::Reset(stt_tokio::SendStream::DROPPED)), "{e}");
    // Finished explicitly, the same bytes arrive with the end.
    let mut w = s.open_uni().await.unwrap();
    w.write_all(b"written, then finished").await.unwrap();
    within(w.finish()).await.unwrap();
    let mut rx = within(r.accept_uni()).await.unwrap();
    let mut got = Vec::new();
    within(rx.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"written, then finished");
}

/// 150 streams opened and dropped against a limit of 100 do not block `open_uni` (before:
/// the 101st open waited forever).
#[tokio::test]
async fn dropped_streams_release_the_stream_limit() {
    let (_a, _b, s, r) = pair(Config::default()).await;
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < 150 {
            let Some(mut rx) = r.accept_uni().await else { break };
            let mut v = Vec::new();
            rx.read_to_end(&mut v).await.unwrap();
            assert_eq!(v, b"x");
            n += 1;
        }
        (n, r)
    });
    for _ in 0..150 {
        let mut w = within(s.open_uni()).await.unwrap();
        w.write_all(b"x").await.unwrap();
        // Ended without waiting for the acknowledgement, then dropped.
        tokio::io::AsyncWriteExt::shutdown(&mut w).await.unwrap();
    }
    let (n, _r) = within(reader).await.unwrap();
    assert_eq!(n, 150);
}

/// A dropped `RecvStream` asks the peer to stop: the writer's `finish` fails with
/// `Stopped(0)`; an explicit reset reaches the reader as `Reset(code)`.
#[tokio::test]
async fn dropped_recv_stream_stops_and_reset_is_typed() {
    let (_a, _b, s, r) = pair(Config::default()).await;
    let mut w = s.open_uni().await.unwrap();
    w.write_all(b"nobody reads this").await.unwrap();
    let rx = within(r.accept_uni()).await.unwrap();
    drop(rx);
    assert_eq!(within(w.finish()).await, Err(StreamClosed::Stopped(0)));

    let mut w = s.open_uni().await.unwrap();
    w.write_all(b"abandoned").await.unwrap();
    let mut rx = within(r.accept_uni()).await.unwrap();
    w.reset(7);
    let mut buf = Vec::new();
    let e = within(rx.read_to_end(&mut buf)).await.unwrap_err();
    assert_eq!(StreamClosed::of(&e), Some(StreamClosed::Reset(7)), "{e}");
}

/// `write_chunk` hands `Bytes` to the stream without copying: a chunk far larger than the
/// stream's unsent allowance (256 KiB at most) goes in pieces, waiting for room, and
/// arrives intact and in order; on a stream the reader stopped it fails with
/// `Stopped`, and after `finish` with `Finished`.
#[tokio::test]
async fn write_chunk_sends_shared_bytes_whole_and_reports_a_stop() {
    let (_a, _b, s, r) = pair(Config::default()).await;
    let data: Bytes = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut w = s.open_uni().await.unwrap();
    let reader = tokio::spawn(async move {
        let mut rx = within(r.accept_uni()).await.unwrap();
        let mut got = Vec::new();
        within(rx.read_to_end(&mut got)).await.unwrap();
        (got, r)
    });
    within(w.write_chunk(data.slice(..1_000_000))).await.unwrap();
    within(w.write_chunk(data.slice(1_000_000..))).await.unwrap();
    within(w.finish()).await.unwrap();
    assert_eq!(w.write_chunk(Bytes::from_static(b"late")).await, Err(StreamClosed::Finished));
    let (got, r) = within(reader).await.unwrap();
    assert!(got == data, "3 MB intact and in order ({} bytes arrived)", got.len());

    // A stopped stream: the writer learns it from a later chunk (once the stop arrived).
    let mut w = s.open_uni().await.unwrap();
    w.write_chunk(Bytes::from_static(b"first")).await.unwrap();
    let rx = within(r.accept_uni()).await.unwrap();
    drop(rx);
    let chunk = Bytes::from(vec![1u8; 64 << 10]);
    let err = within(async {
        loop {
            if let Err(e) = w.write_chunk(chunk.clone()).await {
                break e;
            }
        }
    })
    .await;
    assert_eq!(err, StreamClosed::Stopped(0));
    // Once the reset that answered the stop is acknowledged, the core frees the stream: a
    // later write still says "stopped" (it said "node shut down").
    within(s.flush()).await.unwrap();
    assert_eq!(w.write_chunk(chunk.clone()).await, Err(StreamClosed::Stopped(0)));
    let copy = vec![0u8; 10];
    let e = w.write(&copy).await.unwrap_err();
    assert_eq!(StreamClosed::of(&e), Some(StreamClosed::Stopped(0)), "{e}");
    // After `finish`, even an empty chunk is refused, as an empty `write` is.
    let mut w = s.open_uni().await.unwrap();
    within(w.finish()).await.unwrap_or(());
    assert_eq!(w.write_chunk(Bytes::new()).await, Err(StreamClosed::Finished));
}

/// A read into a buffer with no room returns at once with nothing (before: the core said
/// "blocked", which cleared its readable flag; on a multi-thread runtime, where readers wait
/// only for the driver's events, a reader then waited forever for data that was there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_into_a_full_buffer_returns_and_the_data_stays_readable() {
    let (_a, _b, s, r) = pair(Config::default()).await;
    let mut w = s.open_uni().await.unwrap();
    w.write_all(b"0123456789").await.unwrap();
    let mut rx = within(r.accept_uni()).await.unwrap();
    let mut first = [0u8; 1];
    within(rx.read_exact(&mut first)).await.unwrap();
    within(s.flush()).await.unwrap(); // everything has arrived
    let mut none: [u8; 0] = [];
    assert_eq!(within(rx.read(&mut none)).await.unwrap(), 0);
    let mut rest = [0u8; 9];
    within(rx.read_exact(&mut rest)).await.unwrap();
    assert_eq!(&rest, b"123456789");
}

/// When the last handle of a session (sessions and streams) is dropped, the session
/// closes and the peer learns it (before: it stayed open until the idle timeout).
#[tokio::test]
async fn dropping_the_last_session_handle_closes_it() {
    let (_a, _b, s, r) = pair(Config::default()).await;
    let w = s.open_uni().await.unwrap();
    let s2 = s.clone();
    drop(s);
    drop(s2);
    // A stream handle still holds the session open.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(r.ended(), None, "a stream handle keeps the session");
    drop(w);
    assert_eq!(within(r.closed()).await, Ended::Closed(CloseReason::Remote(0)));
}

/// `close_gracefully` delivers every frame accepted before it (before: `close` right
/// after ten `send_frame` calls delivered none); `flush` waits for acknowledgement.
#[tokio::test]
async fn graceful_close_delivers_what_was_accepted() {
    let (_a, _b, s, r) = pair(Config::default().app_frame_types(&[0x80])).await;
    for i in 0..10u8 {
        s.send_frame(0x80, Bytes::from(vec![i; 1000])).await.unwrap();
    }
    within(s.close_gracefully(42)).await.unwrap();
    let mut got = 0;
    while let Some((ty, body)) = within(r.recv_frame()).await {
        assert_eq!((ty, body.len(), body[0]), (0x80, 1000, got));
        got += 1;
        if got == 10 {
            break;
        }
    }
    assert_eq!(got, 10);
    assert_eq!(within(r.closed()).await, Ended::Closed(CloseReason::Remote(42)));
}

/// A reader that got every byte and the end and closes at once does not turn the writer's
/// `finish()` into an error: the close acknowledges what arrived (spec [LC-12]) and an
/// acknowledgement seen just before the close still counts (before: `finish()` often
/// returned `SessionClosed(Closed(Remote(0)))` with everything delivered).
#[tokio::test]
async fn finish_succeeds_when_the_reader_closes_right_after_the_end() {
    for round in 0..20 {
        let (_a, _b, s, r) = pair(Config::default()).await;
        let reader = tokio::spawn(async move {
            let mut rx = r.accept_uni().await.expect("a stream");
            let mut got = Vec::new();
            rx.read_to_end(&mut got).await.unwrap();
            // Everything arrived: the reader closes without waiting for anything.
            r.close(0);
            got.len()
        });
        let mut w = s.open_uni().await.unwrap();
        w.write_all(&vec![round as u8; 200_000]).await.unwrap();
        let finished = within(w.finish()).await;
        assert_eq!(within(reader).await.unwrap(), 200_000);
        assert_eq!(finished, Ok(()), "round {round}: every byte was delivered");
    }
}

/// A second `connect` to a peer that already has a session returns that session; an
/// event's session id gives a handle; names resolve; `SessionId` prints.
#[tokio::test]
async fn second_connect_returns_the_existing_session() {
    let (a, b, s, _r) = pair(Config::default()).await;
    let again = within(a.connect(b.local_addr(), Some(b.node_id()))).await.unwrap();
    assert_eq!(again.id(), s.id());
    let by_addr = within(a.connect(b.local_addr(), None)).await.unwrap();
    assert_eq!(by_addr.id(), s.id());
    assert_eq!(a.session(s.id()).map(|h| h.peer_node_id()), Some(b.node_id()));
    assert!(!s.id().to_string().is_empty());
    let named = within(a.connect_host(&format!("localhost:{}", b.local_addr().port()), Some(b.node_id()))).await;
    assert_eq!(named.unwrap().id(), s.id(), "localhost resolves to the same peer");
    assert!(matches!(
        a.connect_host("no-such-host.invalid:1", None).await,
        Err(stt_tokio::ConnectError(Ended::Unresolved))
    ));
    let stats = a.stats();
    assert!(stats.handshakes_completed >= 1);
}

/// `connect_host` reaches a peer by name when no session exists yet (the test above only
/// shows the existing session coming back).
#[tokio::test]
async fn connect_host_reaches_a_new_peer_by_name() {
    let shared = SharedSeed::random();
    let a = node(&shared, Config::default()).await;
    let b = node(&shared, Config::default()).await;
    let host = format!("localhost:{}", b.local_addr().port());
    let (s, r) = tokio::join!(within(a.connect_host(&host, Some(b.node_id()))), within(b.accept()));
    assert_eq!(s.unwrap().peer_node_id(), b.node_id());
    assert_eq!(r.unwrap().peer_node_id(), a.node_id());
}

/// A dropped `connect` future abandons its handshake: no HELLO retransmissions follow
/// (before: the node kept retransmitting for the whole handshake timeout, 15 s).
#[tokio::test]
async fn cancelled_connect_abandons_the_handshake() {
    let shared = SharedSeed::random();
    let a = node(&shared, Config::default()).await;
    // A peer that never answers: count what reaches it.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let fut = a.connect(silent.local_addr().unwrap(), None);
    assert!(tokio::time::timeout(Duration::from_millis(100), fut).await.is_err(), "nobody answered");
    let mut buf = [0u8; 2048];
    // Whatever left before the cancellation arrives at once.
    while tokio::time::timeout(Duration::from_millis(50), silent.recv_from(&mut buf)).await.is_ok() {}
    // Retransmissions would come every 300 ms or so; wait for several.
    let later = tokio::time::timeout(Duration::from_millis(1500), silent.recv_from(&mut buf)).await;
    assert!(later.is_err(), "a HELLO was retransmitted after the connect was dropped");
}

/// `send_frame` waits for room instead of failing when the peer reads slowly: 8 MB of
/// frames (twice the send buffer) all arrive, in order; `try_send_frame` fails fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_frame_waits_for_room() {
    let (_a, _b, s, r) = pair(Config::default().app_frame_types(&[0x80])).await;
    let sender = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..8000u32 {
                let mut body = vec![0u8; 1000];
                body[..4].copy_from_slice(&i.to_be_bytes());
                s.send_frame(0x80, Bytes::from(body)).await.unwrap();
            }
        })
    };
    // Let the sender fill its buffer before anyone reads.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut blocked = false;
    for _ in 0..100 {
        if matches!(s.try_send_frame(0x81, b"x"), Err(stt_tokio::FrameError::Undeclared(0x81))) {
            blocked = true;
            break;
        }
    }
    assert!(blocked, "an undeclared type fails at once");
    for i in 0..8000u32 {
        let (ty, body) = within(r.recv_frame()).await.unwrap();
        assert_eq!((ty, &body[..4]), (0x80, &i.to_be_bytes()[..]));
    }
    within(sender).await.unwrap();
    assert!(s.max_datagram_size() > 1000);
}

/// Datagrams and frames under backpressure: `send_datagram_wait` drops nothing from the
/// local queue where `send_datagram` drops the oldest, and `try_send_frame` reports a full
/// frame buffer as `Blocked` instead of waiting. (Single-threaded runtime: no
/// acknowledgement is processed while a loop runs without awaiting.)
#[tokio::test]
async fn waiting_datagram_send_drops_nothing_and_try_send_frame_fails_fast() {
    let (_a, _b, s, _r) = pair(Config::default().app_frame_types(&[0x80])).await;
    let body = Bytes::from(vec![7u8; s.max_datagram_size().min(1000)]);
    for _ in 0..2000 {
        within(s.send_datagram_wait(body.clone())).await.unwrap();
    }
    assert_eq!(s.stats().await.unwrap().datagrams_dropped, 0, "a waiting send never drops");
    for _ in 0..2000 {
        s.send_datagram(body.clone()).await.unwrap();
    }
    assert!(s.stats().await.unwrap().datagrams_dropped > 0, "drop-oldest is the other send's rule");
    let mut accepted = 0u32;
    let blocked = loop {
        match s.try_send_frame(0x80, &[0u8; 1000]) {
            Ok(()) if accepted < 100_000 => accepted += 1,
            Ok(()) => break false,
            Err(stt_tokio::FrameError::Blocked) => break true,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(blocked, "try_send_frame accepted {accepted} frames without ever reporting a full buffer");
}

/// A stream of a session the peer closed fails with `SessionClosed`, the peer's code inside
/// (issue 18 item 9: typed, not a string in an `io::Error`).
#[tokio::test]
async fn stream_of_a_closed_session_says_why() {
    let (_a, _b, s, r) = pair(Config::default()).await;
    let mut w = s.open_uni().await.unwrap();
    w.write_all(b"x").await.unwrap();
    r.close(5);
    let why = Ended::Closed(CloseReason::Remote(5));
    assert_eq!(within(s.closed()).await, why);
    let e = w.write_all(b"more").await.unwrap_err();
    assert_eq!(StreamClosed::of(&e), Some(StreamClosed::SessionClosed(why)), "{e}");
    assert_eq!(within(w.finish()).await, Err(StreamClosed::SessionClosed(why)));
    assert!(s.open_uni().await.is_err(), "no new stream on a closed session");
}

/// The socket buffers asked for at bind are applied (up to the kernel's cap, which Linux
/// reads from `net.core.{r,w}mem_max` and reports doubled), `None` keeps the system default,
/// and the node still works on the sockets it made.
#[tokio::test]
async fn socket_buffers_follow_the_bind_options() {
    use stt_tokio::SocketOptions;
    let cap = |name: &str| std::fs::read_to_string(name).ok().and_then(|s| s.trim().parse::<usize>().ok());
    let shared = SharedSeed::random();
    let bind = |o: SocketOptions| {
        Node::bind_with(
            "127.0.0.1:0".parse().unwrap(),
            Config::default(),
            Identity::new(NodeSeed::random(), shared.clone()),
            o,
        )
    };
    let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let default = socket2::SockRef::from(&plain);
    let (rd, sd) = (default.recv_buffer_size().unwrap(), default.send_buffer_size().unwrap());

    let want = 1 << 20;
    let a = bind(SocketOptions::default().recv_buffer(Some(want)).send_buffer(Some(want))).await.unwrap();
    let (r, s) = a.socket_buffers();
    let r_cap = cap("/proc/sys/net/core/rmem_max").unwrap_or(want).min(want);
    let s_cap = cap("/proc/sys/net/core/wmem_max").unwrap_or(want).min(want);
    assert!(r >= r_cap.max(rd) && s >= s_cap.max(sd), "asked {want}, got recv {r} send {s} (defaults {rd}/{sd})");

    let b = bind(SocketOptions::default().recv_buffer(None).send_buffer(None)).await.unwrap();
    assert_eq!(b.socket_buffers(), (rd, sd), "None keeps the system default");
    let (s, r) = tokio::join!(a.connect(b.local_addr(), Some(b.node_id())), b.accept());
    let (s, r) = (s.unwrap(), r.unwrap());
    let mut w = s.open_uni().await.unwrap();
    w.write_all(b"through both").await.unwrap();
    within(w.finish()).await.unwrap();
    let mut rx = within(r.accept_uni()).await.unwrap();
    let mut got = Vec::new();
    within(rx.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"through both");
}

/// A connect returns when AUTH_PROOF leaves (spec [HS-22]), so a responder whose allow-list
/// refuses this node ends the returned session, and the end says why in words; a write made
/// at once never reaches the refusing node's application.
#[tokio::test]
async fn allow_list_refusal_after_an_early_connect_says_why() {
    let shared = SharedSeed::random();
    let a = node(&shared, Config::default()).await;
    let b = node(&shared, Config::default().allow_list(Some(vec![]))).await;
    let s = within(a.connect(b.local_addr(), Some(b.node_id()))).await.expect("established on AUTH_PROOF");
    if let Ok(mut w) = s.open_uni().await {
        let _ = w.write_all(b"sent before the refusal").await;
    }
    let end = within(s.closed()).await;
    assert_eq!(end, Ended::Closed(CloseReason::RemoteTransport(stt_proto::TransportCode::NotAllowed)));
    assert!(end.to_string().contains("allow-list"), "{end}");
    assert_eq!(b.stats().dropped(stt_proto::DropReason::NotAllowed), 1);
    // The refusing node never reported a session.
    assert!(tokio::time::timeout(Duration::from_millis(200), b.accept()).await.is_err());
}
