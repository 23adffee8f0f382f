//! stt-mio on real loopback sockets, sharing one `Poll` with a foreign socket.

use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use stt_mio::Driver;
use stt_proto::{CloseReason, Config, Event, Identity, NodeSeed, SessionId, SharedSeed};

const A: Token = Token(0);
const B: Token = Token(1);
const FOREIGN: Token = Token(7);

struct Loop {
    poll: Poll,
    a: Driver,
    b: Driver,
    foreign: mio::net::UdpSocket,
    foreign_seen: usize,
    events_a: Vec<(Instant, Event)>,
    events_b: Vec<(Instant, Event)>,
}

impl Loop {
    fn new(config: Config) -> Self {
        let poll = Poll::new().unwrap();
        let shared = SharedSeed::from_bytes([5; 32]);
        let mk = |t, s| {
            let sock = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let mut d =
                Driver::new(sock, t, config.clone(), Identity::new(NodeSeed::from_bytes([s; 32]), shared.clone()))
                    .unwrap();
            d.register(poll.registry()).unwrap();
            d
        };
        let (a, b) = (mk(A, 1), mk(B, 2));
        let mut foreign = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        poll.registry().register(&mut foreign, FOREIGN, Interest::READABLE).unwrap();
        Self { poll, a, b, foreign, foreign_seen: 0, events_a: vec![], events_b: vec![] }
    }

    /// One loop turn: poll (bounded by both drivers' timeouts), dispatch, timers, flush.
    fn turn(&mut self) {
        let now = Instant::now();
        let timeout =
            [self.a.timeout(now), self.b.timeout(now), Some(Duration::from_millis(200))].into_iter().flatten().min();
        let mut events = Events::with_capacity(64);
        self.poll.poll(&mut events, timeout).unwrap();
        let now = Instant::now();
        for e in events.iter() {
            match e.token() {
                A => self.a.handle_event(e, now, self.poll.registry()).unwrap(),
                B => self.b.handle_event(e, now, self.poll.registry()).unwrap(),
                FOREIGN => {
                    let mut buf = [0u8; 64];
                    while self.foreign.recv_from(&mut buf).is_ok() {
                        self.foreign_seen += 1;
                    }
                }
                _ => unreachable!(),
            }
        }
        self.a.handle_timeout(now, self.poll.registry()).unwrap();
        self.b.handle_timeout(now, self.poll.registry()).unwrap();
        self.events_a.extend(self.a.take_events().into_iter().map(|e| (now, e)));
        self.events_b.extend(self.b.take_events().into_iter().map(|e| (now, e)));
    }

    fn until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(start.elapsed() < limit, "condition not reached within {limit:?}");
            self.turn();
        }
    }

    fn connect(&mut self) -> (SessionId, SessionId) {
        let to = self.b.local_addr().unwrap().into();
        let t = self.a.instant(Instant::now());
        let sa = self.a.node().connect(t, to, None).unwrap();
        self.a.flush(Instant::now(), self.poll.registry()).unwrap();
        self.until(Duration::from_secs(10), |l| {
            l.events_b.iter().any(|(_, e)| matches!(e, Event::Established { .. }))
                && l.events_a.iter().any(|(_, e)| matches!(e, Event::Established { .. }))
        });
        let sb = self.events_b.iter().find_map(|(_, e)| match e {
            Event::Established { session, .. } => Some(*session),
            _ => None,
        });
        (sa, sb.unwrap())
    }
}

#[test]
fn handshake_datagrams_and_a_foreign_socket_in_one_poll() {
    let mut l = Loop::new(Config::default());
    let (sa, sb) = l.connect();
    let t = l.a.instant(Instant::now());
    for i in 0..20u8 {
        l.a.node().session(sa).unwrap().send_datagram(t, &[i; 100], false).unwrap();
    }
    l.a.flush(Instant::now(), l.poll.registry()).unwrap();
    // The foreign socket gets traffic through the same Poll.
    let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    plain.send_to(b"not stt", l.foreign.local_addr().unwrap()).unwrap();
    let mut got = 0;
    l.until(Duration::from_secs(10), |l| {
        let mut buf = [0u8; 200];
        while let Some(Some(_)) = l.b.node().session(sb).map(|mut s| s.recv_datagram(&mut buf)) {
            got += 1;
        }
        got == 20 && l.foreign_seen == 1
    });
    assert!(!l.a.is_send_parked());
}

#[test]
fn idle_timeout_through_timeout_and_keepalives_prevent_it() {
    let quiet = Config::default().keepalive_active(None).keepalive_idle(None).idle_timeout(Duration::from_millis(400));
    let mut l = Loop::new(quiet);
    let (sa, _) = l.connect();
    let start = Instant::now();
    l.until(Duration::from_secs(5), |l| l.events_a.iter().any(|(_, e)| matches!(e, Event::Closed { .. })));
    let (at, e) = l.events_a.iter().find(|(_, e)| matches!(e, Event::Closed { .. })).unwrap();
    assert_eq!(*e, Event::Closed { session: sa, reason: CloseReason::IdleTimeout });
    let waited = at.duration_since(start);
    assert!(waited >= Duration::from_millis(300) && waited <= Duration::from_secs(4), "idle timeout after {waited:?}");

    let lively = Config::default()
        .keepalive_idle(Some(Duration::from_millis(100)))
        .keepalive_active(Some(Duration::from_millis(100)))
        .idle_timeout(Duration::from_millis(400));
    let mut l = Loop::new(lively);
    let (sa, _) = l.connect();
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        l.turn();
    }
    assert!(!l.events_a.iter().any(|(_, e)| matches!(e, Event::Closed { .. })), "keepalives kept it open");
    assert!(l.a.node().session(sa).is_some());
}

/// A socket that refuses every seventh send with `WouldBlock`, as a full send buffer would.
struct Choky {
    inner: mio::net::UdpSocket,
    sends: u32,
    refused: u32,
}

impl mio::event::Source for Choky {
    fn register(&mut self, r: &mio::Registry, t: Token, i: Interest) -> std::io::Result<()> {
        self.inner.register(r, t, i)
    }
    fn reregister(&mut self, r: &mio::Registry, t: Token, i: Interest) -> std::io::Result<()> {
        self.inner.reregister(r, t, i)
    }
    fn deregister(&mut self, r: &mio::Registry) -> std::io::Result<()> {
        self.inner.deregister(r)
    }
}

impl stt_mio::DatagramSocket for Choky {
    fn send_to(&mut self, buf: &[u8], dst: std::net::SocketAddr) -> std::io::Result<usize> {
        self.sends += 1;
        if self.sends % 7 == 0 {
            self.refused += 1;
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        self.inner.send_to(buf, dst)
    }
    fn recv_from(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, std::net::SocketAddr)> {
        self.inner.recv_from(buf)
    }
    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// A send that would block is parked, WRITABLE is requested, and output resumes on it:
/// a 1 MiB stream arrives intact through a socket that refuses every seventh send.
#[test]
fn blocked_sends_park_and_resume() {
    let mut poll = Poll::new().unwrap();
    let shared = SharedSeed::from_bytes([6; 32]);
    let choky =
        Choky { inner: mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap(), sends: 0, refused: 0 };
    let mut a =
        Driver::new(choky, A, Config::default(), Identity::new(NodeSeed::from_bytes([1; 32]), shared.clone())).unwrap();
    let sock = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut b = Driver::new(sock, B, Config::default(), Identity::new(NodeSeed::from_bytes([2; 32]), shared)).unwrap();
    a.register(poll.registry()).unwrap();
    b.register(poll.registry()).unwrap();
    let t = a.instant(Instant::now());
    let to = b.local_addr().unwrap().into();
    let sa = a.node().connect(t, to, None).unwrap();
    a.flush(Instant::now(), poll.registry()).unwrap();
    let data: Vec<u8> = (0..1u32 << 20).map(|i| i.wrapping_mul(2_654_435_761) as u8).collect();
    let (mut sent, mut got, mut stream, mut peer) = (0usize, Vec::new(), None, None);
    let mut saw_parked = false;
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; 1 << 16];
    let start = Instant::now();
    while got.len() < data.len() {
        assert!(start.elapsed() < Duration::from_secs(30), "stalled at {} of {} bytes", got.len(), data.len());
        let now = Instant::now();
        let timeout = [a.timeout(now), b.timeout(now), Some(Duration::from_millis(50))].into_iter().flatten().min();
        poll.poll(&mut events, timeout).unwrap();
        let now = Instant::now();
        for e in events.iter() {
            match e.token() {
                A => a.handle_event(e, now, poll.registry()).unwrap(),
                B => b.handle_event(e, now, poll.registry()).unwrap(),
                _ => {}
            }
        }
        a.handle_timeout(now, poll.registry()).unwrap();
        b.handle_timeout(now, poll.registry()).unwrap();
        let (ta, tb) = (a.instant(now), b.instant(now));
        if stream.is_none() && a.take_events().iter().any(|e| matches!(e, Event::Established { .. })) {
            stream = a.node().session(sa).and_then(|mut s| s.open_uni(ta).ok());
        }
        if let (Some(id), Some(mut s)) = (stream, a.node().session(sa)) {
            while sent < data.len() {
                match s.write(ta, id, &data[sent..(sent + 65_536).min(data.len())]) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            if sent == data.len() {
                let _ = s.finish(ta, id);
            }
        }
        for e in b.take_events() {
            if let Event::StreamOpened { session, stream } = e {
                peer = Some((session, stream));
            }
        }
        if let Some((sb, id)) = peer {
            if let Some(mut s) = b.node().session(sb) {
                while let Ok((n, _)) = s.read(tb, id, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            }
        }
        a.flush(now, poll.registry()).unwrap();
        b.flush(now, poll.registry()).unwrap();
        saw_parked |= a.is_send_parked();
    }
    assert!(got == data, "intact");
    assert!(saw_parked, "a send was parked at some point");
}
