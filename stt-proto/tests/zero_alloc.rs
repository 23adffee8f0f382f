//! Allocation accounting in its own test binary (a counting global allocator; the tests
//! run one at a time under a lock so their counts do not mix).
//!
//! - Zero allocations per packet in a steady-state stream transfer (DESIGN §2).
//! - Heap bytes held per idle established session (goal ≤ 4 KB, issues #16 and #20), and
//!   back within 10 % of it once a burst was read and the link is idle: printed, and
//!   bounded here so a regression fails.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use stt_proto::{
    Config, Event, Identity, Input, Instant, Node, NodeSeed, Output, PathAddr, SessionId, SharedSeed, UnixTime,
};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(l.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE_BYTES.fetch_sub(l.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Two nodes wired back to back with fixed buffers: no allocation in the harness itself.
struct Wire {
    a: Node<ChaCha20Rng>,
    b: Node<ChaCha20Rng>,
    addr_a: PathAddr,
    addr_b: PathAddr,
    now: Instant,
    out: Vec<u8>,
    inp: Vec<u8>,
    events_a: Vec<Event>,
    events_b: Vec<Event>,
}

impl Wire {
    fn new() -> Self {
        let shared = SharedSeed::from_bytes([3; 32]);
        let wall = Some(UnixTime::from_millis(1_700_000_000_000));
        let mk = |n: u8| {
            let id = Identity::new(NodeSeed::from_bytes([n; 32]), shared.clone());
            Node::new(Config::default(), id, ChaCha20Rng::seed_from_u64(u64::from(n)), Instant::ZERO, wall).unwrap()
        };
        Self {
            a: mk(1),
            b: mk(2),
            addr_a: PathAddr::Udp("192.0.2.1:1".parse().unwrap()),
            addr_b: PathAddr::Udp("192.0.2.2:1".parse().unwrap()),
            now: Instant::ZERO,
            out: vec![0; 2048],
            inp: vec![0; 2048],
            events_a: Vec::with_capacity(1 << 16),
            events_b: Vec::with_capacity(1 << 16),
        }
    }

    /// Moves every pending datagram across (1 ms per hop), fires due timers. Returns packets moved.
    fn pump(&mut self) -> u64 {
        let mut moved = 0;
        self.now = self.now.saturating_add(std::time::Duration::from_micros(500));
        for dir in 0..2 {
            let (from, to, from_addr, events) = if dir == 0 {
                (&mut self.a, &mut self.b, self.addr_a, &mut self.events_a)
            } else {
                (&mut self.b, &mut self.a, self.addr_b, &mut self.events_b)
            };
            if from.next_deadline().is_some_and(|d| d <= self.now) {
                let _ = from.handle_input(Input::Timeout { now: self.now });
            }
            loop {
                match from.poll_output(&mut self.out) {
                    Output::Transmit(t) => {
                        self.inp[..t.len].copy_from_slice(&self.out[..t.len]);
                        let _ = to.handle_input(Input::Datagram {
                            now: self.now,
                            from: from_addr,
                            data: &mut self.inp[..t.len],
                        });
                        moved += 1;
                    }
                    Output::Event(e) => {
                        if events.len() < events.capacity() {
                            events.push(e);
                        }
                    }
                    Output::Wait(_) => break,
                }
            }
        }
        moved
    }

    fn connect(&mut self) -> (SessionId, SessionId) {
        let s = self.a.connect(self.now, self.addr_b, None).unwrap();
        for _ in 0..100 {
            self.pump();
        }
        let sb = self
            .events_b
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Established { session, .. } => Some(*session),
                _ => None,
            })
            .expect("established");
        (s, sb)
    }
}

static DATA: [u8; 1 << 16] = [0xa5; 1 << 16];

#[test]
fn zero_allocations_per_packet_in_steady_state() {
    steady_state_transfer(false);
}

/// The application writes by copying (`SessionRef::write`, what `AsyncWrite` does): the
/// writes too allocate nothing once the transfer runs, because an acknowledged chunk is
/// written into again while the writer waits for room (a fresh buffer per write faulted in
/// new pages on every write: 8–27 % of a sender's CPU in the many-session bench).
#[test]
fn zero_allocations_per_copying_write_in_steady_state() {
    steady_state_transfer(true);
}

fn steady_state_transfer(copy: bool) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut w = Wire::new();
    let (sa, sb) = w.connect();
    let id = w.a.session(sa).unwrap().open_uni(w.now).unwrap();
    let mut peer = None;
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    let mut step = |w: &mut Wire, received: &mut u64, peer: &mut Option<stt_proto::StreamId>| -> u64 {
        let now = w.now;
        let mut s = w.a.session(sa).unwrap();
        if copy {
            while s.write(now, id, &DATA).is_ok_and(|n| n > 0) {}
        } else {
            while s.write_bytes(now, id, Bytes::from_static(&DATA)).is_ok_and(|n| n > 0) {}
        }
        let mut r = w.b.session(sb).unwrap();
        if peer.is_none() {
            *peer = r.accept_stream();
        }
        if let Some(p) = *peer {
            while let Ok((n, _)) = r.read(now, p, &mut buf) {
                if n == 0 {
                    break;
                }
                *received += n as u64;
            }
        }
        w.pump()
    };
    // Warm-up: windows, buffers and queues reach their steady sizes.
    for _ in 0..4000 {
        step(&mut w, &mut received, &mut peer);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    let bytes_before = received;
    let mut packets = 0;
    for _ in 0..2000 {
        packets += step(&mut w, &mut received, &mut peer);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    let moved = received - bytes_before;
    println!("steady state (copying writes: {copy}): {packets} packets, {moved} bytes, {allocs} allocations");
    assert!(packets > 10_000 && moved > 10 << 20, "the transfer ran: {packets} packets, {moved} bytes");
    assert_eq!(allocs, 0, "allocations in steady state over {packets} packets");
}

/// One node (the hub) with a session to each of `n` peer nodes, driven in 10 ms steps;
/// the peers read whatever arrives (datagrams and streams) at once.
struct Hub {
    hub: Node<ChaCha20Rng>,
    peers: Vec<Node<ChaCha20Rng>>,
    now: Instant,
    out: Vec<u8>,
    inp: Vec<u8>,
    read: Vec<u8>,
    /// Bytes the peers read: stream data and datagrams.
    received: u64,
    established: usize,
}

impl Hub {
    const HUB_ADDR: std::net::SocketAddr =
        std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 100)), 1);

    fn new(n: usize, config: Config) -> Self {
        let shared = SharedSeed::from_bytes([4; 32]);
        let wall = Some(UnixTime::from_millis(1_700_000_000_000));
        let mk = |k: u64| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&k.to_be_bytes());
            let id = Identity::new(NodeSeed::from_bytes(seed), shared.clone());
            Node::new(config.clone(), id, ChaCha20Rng::seed_from_u64(k), Instant::ZERO, wall).unwrap()
        };
        Self {
            hub: mk(0),
            peers: (1..=n as u64).map(mk).collect(),
            now: Instant::ZERO,
            out: vec![0; 2048],
            inp: vec![0; 2048],
            read: vec![0; 1 << 16],
            received: 0,
            established: 0,
        }
    }

    fn addr(k: usize) -> PathAddr {
        PathAddr::Udp(std::net::SocketAddr::from(([192, 0, 2, 1], 1000 + k as u16)))
    }

    /// Delivers everything the nodes have to send at the current instant, repeatedly.
    fn flush(&mut self) {
        let now = self.now;
        let hub_addr = PathAddr::Udp(Self::HUB_ADDR);
        loop {
            let mut moved = false;
            loop {
                match self.hub.poll_output(&mut self.out) {
                    Output::Transmit(t) => {
                        let PathAddr::Udp(dst) = t.dst else { continue };
                        let k = usize::from(dst.port() - 1000);
                        self.inp[..t.len].copy_from_slice(&self.out[..t.len]);
                        let data = &mut self.inp[..t.len];
                        let _ = self.peers[k].handle_input(Input::Datagram { now, from: hub_addr, data });
                        moved = true;
                    }
                    Output::Event(Event::Established { .. }) => self.established += 1,
                    Output::Event(_) => {}
                    Output::Wait(_) => break,
                }
            }
            for (k, p) in self.peers.iter_mut().enumerate() {
                loop {
                    match p.poll_output(&mut self.out) {
                        Output::Transmit(t) => {
                            self.inp[..t.len].copy_from_slice(&self.out[..t.len]);
                            let data = &mut self.inp[..t.len];
                            let _ = self.hub.handle_input(Input::Datagram { now, from: Self::addr(k), data });
                            moved = true;
                        }
                        Output::Event(_) => {}
                        Output::Wait(_) => break,
                    }
                }
                // The application reads everything that arrived.
                let ids: Vec<SessionId> = p.session_ids().collect();
                for id in ids {
                    let Some(mut s) = p.session(id) else { continue };
                    while let Some(n) = s.recv_datagram(&mut self.read) {
                        self.received += n as u64;
                    }
                    while let Some(st) = s.accept_stream() {
                        while let Ok((n, _)) = s.read(now, st, &mut self.read) {
                            self.received += n as u64;
                            if n == 0 {
                                break;
                            }
                        }
                    }
                    for st in (0..4u64).map(|i| stt_proto::StreamId(i << 2 | 0b10)) {
                        while let Ok((n, fin)) = s.read(now, st, &mut self.read) {
                            self.received += n as u64;
                            if n == 0 || fin {
                                break;
                            }
                        }
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs for `ms` milliseconds of virtual time.
    fn run(&mut self, ms: u32) {
        self.flush();
        for _ in 0..ms / 10 {
            self.now = self.now.saturating_add(std::time::Duration::from_millis(10));
            let now = self.now;
            for n in std::iter::once(&mut self.hub).chain(self.peers.iter_mut()) {
                if n.next_deadline().is_some_and(|d| d <= now) {
                    let _ = n.handle_input(Input::Timeout { now });
                }
            }
            self.flush();
        }
    }

    /// Opens a session from the hub to every peer and waits until all are established.
    fn connect_all(&mut self) -> Vec<SessionId> {
        let before = self.established;
        let ids = (0..self.peers.len()).map(|k| self.hub.connect(self.now, Self::addr(k), None).unwrap()).collect();
        self.run(1000);
        assert_eq!(self.established - before, self.peers.len(), "every session established");
        ids
    }

    /// On every session: `datagrams` datagrams of 1000 bytes and a `stream`-byte stream from
    /// the hub, everything read by the peer.
    fn burst(&mut self, ids: &[SessionId], datagrams: usize, stream: usize) {
        let start = self.received;
        let data = vec![0xa5; stream];
        let mut open = Vec::new();
        for &id in ids {
            let now = self.now;
            let mut s = self.hub.session(id).unwrap();
            for _ in 0..datagrams {
                s.send_datagram(now, &[0x5a; 1000], false).unwrap();
            }
            open.push((id, s.open_uni(now).unwrap(), 0));
        }
        // Writes take what the unsent allowance holds (two congestion windows): top every
        // stream up as it drains, then finish it.
        while !open.is_empty() {
            let now = self.now;
            open.retain_mut(|(id, st, sent)| {
                let mut s = self.hub.session(*id).unwrap();
                if let Ok(n) = s.write(now, *st, &data[*sent..]) {
                    *sent += n;
                }
                let done = *sent == data.len();
                if done {
                    s.finish(now, *st).unwrap();
                }
                !done
            });
            self.run(10);
        }
        self.run(3000);
        let want = (ids.len() * (datagrams * 1000 + stream)) as u64;
        assert_eq!(self.received - start, want, "everything arrived and was read");
    }

    /// Closes every session and waits until both sides forgot them.
    fn close_all(&mut self, ids: &[SessionId]) {
        for &id in ids {
            self.hub.session(id).unwrap().close(self.now, 0);
        }
        self.run(3000);
        assert_eq!(self.hub.session_ids().count(), 0);
        assert_eq!(self.peers.iter().map(|p| p.session_ids().count()).sum::<usize>(), 0);
    }
}

/// Heap held per established idle session, both sides counted (goal ≤ 4 KB, issues #16
/// and #20), and given back after a burst: 128 datagrams of 1000 bytes and a 128 KiB stream
/// each way read, the heap returns to within 10 % of the idle figure once the link is idle.
/// A session keeps its streams' flow-control state once it used a stream (one that never
/// did holds none), so the figure the burst is compared with is taken idle after a one-byte
/// stream, and both stay within the 4 KB goal. Node-wide structures (slot
/// table, event queue, timers) reach their size in a first round, whose sessions carry the
/// same bursts and then close. An idle session holds no AEAD key object (they are built per
/// packet until a session is busy): `ring`'s AES-256-GCM keys (544 bytes each) cost it no
/// more than RustCrypto's ChaCha20-Poly1305 ones.
#[test]
fn heap_per_idle_session_and_after_a_burst() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let providers: Vec<(&str, Config)> = vec![
        ("rustcrypto", Config::default().crypto_provider(&stt_proto::crypto::RustCrypto)),
        #[cfg(feature = "ring")]
        ("ring", Config::default().crypto_provider(&stt_proto::crypto::Ring)),
        #[cfg(feature = "aws-lc")]
        ("aws-lc", Config::default().crypto_provider(&stt_proto::crypto::AwsLc)),
    ];
    let mut idle_by_provider = Vec::new();
    for (name, config) in providers {
        let n = 32;
        let mut h = Hub::new(n, config);
        let warm = h.connect_all();
        h.burst(&warm, 128, 128 << 10);
        h.close_all(&warm);
        let base = LIVE_BYTES.load(Ordering::Relaxed);
        let ids = h.connect_all();
        // Past the idle keepalive (10 s): what the handshake grew is given back.
        h.run(12_000);
        let per = |live: i64| (live - base) as f64 / (2 * n) as f64;
        let idle = per(LIVE_BYTES.load(Ordering::Relaxed));
        h.burst(&ids, 0, 1);
        h.run(12_000);
        let used = per(LIVE_BYTES.load(Ordering::Relaxed));
        h.burst(&ids, 128, 128 << 10);
        let during = per(LIVE_BYTES.load(Ordering::Relaxed));
        h.run(12_000);
        let after = per(LIVE_BYTES.load(Ordering::Relaxed));
        let alg = h.hub.session(ids[0]).unwrap().aead().unwrap();
        println!(
            "{name} ({alg:?}): heap per idle session {idle:.0} B, 3 s after the burst was sent {during:.0} B, \
             idle again {after:.0} B (goal ≤ 4096; within 10 % of {used:.0} B, idle once a stream was used)"
        );
        assert_eq!(h.hub.session_ids().count(), n, "the sessions stayed up");
        assert!(idle > 0.0 && idle <= 4096.0, "{name}: {idle:.0} bytes per idle session");
        assert!(used <= 4096.0, "{name}: {used:.0} bytes per idle session once it used a stream");
        assert!(after <= used * 1.10, "{name}: {after:.0} bytes per session after the burst, {used:.0} before");
        idle_by_provider.push((name, idle, after));
    }
    if let [(_, chacha, chacha_after), (_, aes, aes_after)] = idle_by_provider[..] {
        assert!(aes - chacha < 64.0, "ring AES-GCM sessions hold key objects while idle: {aes:.0} vs {chacha:.0} B");
        assert!(aes_after - chacha_after < 64.0, "and after a burst: {aes_after:.0} vs {chacha_after:.0} B");
    }
}

/// Heap held (both nodes) once idle after a bulk copying transfer on one stream that
/// either ends normally (`stop` false: the writer finishes, the reader reads to the end) or
/// is stopped by the reader mid-transfer (`stop` true: STOP_SENDING, what dropping a
/// `RecvStream` does). Counted from before the nodes were made, with the nodes alive.
fn heap_idle_after_transfer(stop: bool) -> i64 {
    let start = LIVE_BYTES.load(Ordering::Relaxed);
    let mut w = Wire::new();
    let (sa, sb) = w.connect();
    let id = w.a.session(sa).unwrap().open_uni(w.now).unwrap();
    let mut peer = None;
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..600 {
        let now = w.now;
        let mut s = w.a.session(sa).unwrap();
        while s.write(now, id, &DATA).is_ok_and(|n| n > 0) {}
        let mut r = w.b.session(sb).unwrap();
        if peer.is_none() {
            peer = r.accept_stream();
        }
        if let Some(p) = peer {
            while r.read(now, p, &mut buf).is_ok_and(|(n, _)| n > 0) {}
        }
        w.pump();
    }
    let p = peer.expect("the stream arrived");
    let now = w.now;
    if stop {
        w.b.session(sb).unwrap().stop_sending(now, p, 7).unwrap();
    } else {
        w.a.session(sa).unwrap().finish(now, id).unwrap();
    }
    // Past the idle keepalive (10 s), the reader reading whatever still comes.
    for _ in 0..60_000 {
        if !stop {
            let mut r = w.b.session(sb).unwrap();
            while r.read(w.now, p, &mut buf).is_ok_and(|(n, _)| n > 0) {}
        }
        w.pump();
    }
    assert!(w.a.session(sa).is_some() && w.b.session(sb).is_some(), "the session stayed up");
    let held = LIVE_BYTES.load(Ordering::Relaxed) - start;
    drop(w);
    held
}

/// A reader that stops a stream while the writer streams (peer input) must not leave the
/// writer's idle session holding the acknowledged chunks kept for reuse by copying writes
/// (`Streams::spares`): idle, both nodes hold within 4 KB of what they hold after a
/// transfer that ended normally (idle sessions hold ~2.5 KB in all).
#[test]
fn heap_back_to_idle_after_the_peer_stops_a_copying_writer() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let normal = heap_idle_after_transfer(false);
    let stopped = heap_idle_after_transfer(true);
    println!("idle heap after a transfer: ended normally {normal} B, stopped by the reader {stopped} B");
    assert!(stopped <= normal + 4096, "stopped stream: {stopped} B held idle, {normal} B after a normal end");
}
