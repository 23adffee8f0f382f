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
