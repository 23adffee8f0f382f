//! Allocation accounting in its own test binary (a counting global allocator; the tests
//! run one at a time under a lock so their counts do not mix).
//!
//! - Zero allocations per packet in a steady-state stream transfer (DESIGN §2).
//! - Heap bytes held per idle established session (goal ≤ 4 KB, tracked by the
//!   benchmark issue): printed, and bounded here so a regression fails.

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
        while s.write_bytes(now, id, Bytes::from_static(&DATA)).is_ok_and(|n| n > 0) {}
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
    println!("steady state: {packets} packets, {moved} bytes, {allocs} allocations");
    assert!(packets > 10_000 && moved > 10 << 20, "the transfer ran: {packets} packets, {moved} bytes");
    assert_eq!(allocs, 0, "allocations in steady state over {packets} packets");
}

#[test]
fn heap_per_idle_session() {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // One node with sessions to many peers (one session per peer pair).
    let n = 100usize;
    let shared = SharedSeed::from_bytes([4; 32]);
    let wall = Some(UnixTime::from_millis(1_700_000_000_000));
    let mk = |k: u64| {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&k.to_be_bytes());
        let id = Identity::new(NodeSeed::from_bytes(seed), shared.clone());
        Node::new(Config::default(), id, ChaCha20Rng::seed_from_u64(k), Instant::ZERO, wall).unwrap()
    };
    let mut hub = mk(0);
    let mut peers: Vec<Node<ChaCha20Rng>> = (1..=n as u64).map(mk).collect();
    let addr = |k: usize| PathAddr::Udp(std::net::SocketAddr::from(([192, 0, 2, 1], 1000 + k as u16)));
    let mut out = vec![0u8; 2048];
    let mut inp = vec![0u8; 2048];
    let mut now = Instant::ZERO;
    let hub_addr = PathAddr::Udp(std::net::SocketAddr::from(([192, 0, 2, 100], 1)));
    let mut run =
        |hub: &mut Node<ChaCha20Rng>, peers: &mut Vec<Node<ChaCha20Rng>>, now: &mut Instant, ms: u32| -> usize {
            let mut established = 0;
            for _ in 0..ms / 10 {
                *now = now.saturating_add(std::time::Duration::from_millis(10));
                let now = *now;
                if hub.next_deadline().is_some_and(|d| d <= now) {
                    let _ = hub.handle_input(Input::Timeout { now });
                }
                loop {
                    match hub.poll_output(&mut out) {
                        Output::Transmit(t) => {
                            let PathAddr::Udp(dst) = t.dst else { continue };
                            let k = usize::from(dst.port() - 1000);
                            inp[..t.len].copy_from_slice(&out[..t.len]);
                            let _ =
                                peers[k].handle_input(Input::Datagram { now, from: hub_addr, data: &mut inp[..t.len] });
                        }
                        Output::Event(Event::Established { .. }) => established += 1,
                        Output::Event(_) => {}
                        Output::Wait(_) => break,
                    }
                }
                for (k, p) in peers.iter_mut().enumerate() {
                    if p.next_deadline().is_some_and(|d| d <= now) {
                        let _ = p.handle_input(Input::Timeout { now });
                    }
                    loop {
                        match p.poll_output(&mut out) {
                            Output::Transmit(t) => {
                                inp[..t.len].copy_from_slice(&out[..t.len]);
                                let _ =
                                    hub.handle_input(Input::Datagram { now, from: addr(k), data: &mut inp[..t.len] });
                            }
                            Output::Event(_) => {}
                            Output::Wait(_) => break,
                        }
                    }
                }
            }
            established
        };
    // Round 1 warms every node's one-time structures (queues, tables); its sessions close.
    let first: Vec<_> = (0..n).map(|k| hub.connect(now, addr(k), None).unwrap()).collect();
    assert_eq!(run(&mut hub, &mut peers, &mut now, 1000), n);
    for s in first {
        hub.session(s).unwrap().close(now, 0);
    }
    run(&mut hub, &mut peers, &mut now, 3000);
    assert_eq!(hub.session_ids().count(), 0);
    // Round 2, measured: n sessions, then 12 s of idleness (keepalives only).
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for k in 0..n {
        let _ = hub.connect(now, addr(k), None).unwrap();
    }
    let established = run(&mut hub, &mut peers, &mut now, 12_000);
    assert_eq!(established, n, "every session established");
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    // Both sides of each session are counted: halve for one session's state.
    let per_session = (after - before) / (2 * n as i64);
    println!("heap per idle established session: {per_session} bytes (goal ≤ 4096)");
    assert!(per_session > 0 && per_session < 8 * 1024, "{per_session} bytes per idle session");
}
