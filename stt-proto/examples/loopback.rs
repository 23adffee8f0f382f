//! Two stt-proto nodes talking over real UDP sockets on loopback, driven by a
//! minimal single-threaded loop: the handshake, datagrams both ways, a graceful close.
//!
//! ```sh
//! cargo run -p stt-proto --example loopback
//! ```
//! This is the loop every driver wraps: feed datagrams and timeouts, drain `poll_output`.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use stt_proto::{Config, Event, Identity, Input, Instant, Node, NodeSeed, Output, PathAddr, SharedSeed, UnixTime};

struct Peer {
    node: Node<ChaCha20Rng>,
    socket: UdpSocket,
    events: Vec<Event>,
}

impl Peer {
    fn new(shared: &SharedSeed, clock: &Clock) -> std::io::Result<Self> {
        let mut rng = ChaCha20Rng::from_os_rng();
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let identity = Identity::new(NodeSeed::from_bytes(seed), shared.clone());
        let node = Node::new(Config::default(), identity, rng, clock.now(), Some(clock.wall()))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_nonblocking(true)?;
        Ok(Self { node, socket, events: Vec::new() })
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("bound socket")
    }

    /// One turn: read every waiting datagram, fire due timers, drain the output.
    fn turn(&mut self, clock: &Clock) -> std::io::Result<()> {
        let mut buf = [0u8; 2048];
        loop {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let _ = self.node.handle_input(Input::Datagram {
                        now: clock.now(),
                        from: from.into(),
                        data: &mut buf[..n],
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.node.next_deadline().is_some_and(|d| d <= clock.now()) {
            let _ = self.node.handle_input(Input::Timeout { now: clock.now() });
        }
        loop {
            match self.node.poll_output(&mut buf) {
                Output::Transmit(t) => {
                    if let PathAddr::Udp(dst) = t.dst {
                        self.socket.send_to(&buf[..t.len], dst)?;
                    }
                }
                Output::Event(e) => self.events.push(e),
                Output::Wait(_) => return Ok(()),
            }
        }
    }
}

struct Clock(std::time::Instant);

impl Clock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.0.elapsed().as_micros() as u64)
    }

    fn wall(&self) -> UnixTime {
        UnixTime::from_millis(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
    }
}

fn run_until(
    a: &mut Peer,
    b: &mut Peer,
    clock: &Clock,
    mut done: impl FnMut(&Peer, &Peer) -> bool,
) -> std::io::Result<()> {
    let give_up = clock.now().saturating_add(Duration::from_secs(10));
    while !done(a, b) {
        if clock.now() > give_up {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "loopback exchange timed out"));
        }
        a.turn(clock)?;
        b.turn(clock)?;
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let clock = Clock(std::time::Instant::now());
    let mut seed = [0u8; 32];
    ChaCha20Rng::from_os_rng().fill_bytes(&mut seed);
    let shared = SharedSeed::from_bytes(seed);
    let mut a = Peer::new(&shared, &clock)?;
    let mut b = Peer::new(&shared, &clock)?;
    println!("a = {} at {}", a.node.node_id(), a.addr());
    println!("b = {} at {}", b.node.node_id(), b.addr());

    let expected = Some(b.node.node_id());
    let session = a.node.connect(clock.now(), b.addr().into(), expected).map_err(std::io::Error::other)?;
    let established = |p: &Peer| p.events.iter().any(|e| matches!(e, Event::Established { .. }));
    run_until(&mut a, &mut b, &clock, |a, b| established(a) && established(b))?;
    let Some(Event::Established { session: sb, .. }) =
        b.events.iter().find(|e| matches!(e, Event::Established { .. })).copied()
    else {
        unreachable!("checked above")
    };
    println!("established in {:?}", clock.now().saturating_duration_since(Instant::ZERO));

    for i in 0..100u32 {
        let msg = format!("datagram {i}");
        let mut s = a.node.session(session).expect("session");
        s.send_datagram(clock.now(), msg.as_bytes(), false).map_err(std::io::Error::other)?;
    }
    let mut received = 0;
    run_until(&mut a, &mut b, &clock, |_, b| b.events.iter().any(|e| matches!(e, Event::DatagramReadable { .. })))?;
    let mut buf = [0u8; 1500];
    let deadline = clock.now().saturating_add(Duration::from_secs(2));
    while received < 100 && clock.now() < deadline {
        while let Some(n) = b.node.session(sb).and_then(|mut s| s.recv_datagram(&mut buf)) {
            assert!(buf[..n].starts_with(b"datagram "));
            received += 1;
        }
        a.turn(&clock)?;
        b.turn(&clock)?;
    }
    println!("b received {received} of 100 datagrams");

    a.node.session(session).expect("session").close(clock.now(), 0);
    run_until(&mut a, &mut b, &clock, |_, b| b.events.iter().any(|e| matches!(e, Event::Closed { .. })))?;
    let stats = a.node.stats();
    println!(
        "closed; a sent {} datagrams ({} bytes), x25519 ops {}",
        stats.datagrams_out, stats.bytes_out, stats.x25519_ops
    );
    if received == 100 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("only {received} of 100 datagrams arrived on loopback")))
    }
}
