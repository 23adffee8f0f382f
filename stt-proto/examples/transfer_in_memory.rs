//! Two nodes in one thread, no sockets: a bulk transfer through the whole core (seal, open,
//! frames, streams, recovery), for profiling the stack without the driver.
//!
//! ```sh
//! cargo run --release -p stt-proto --features ring --example transfer_in_memory -- 256
//! valgrind --tool=callgrind target/release/examples/transfer_in_memory 32
//! ```
//! The argument is the number of MiB to move (default 64).

use std::time::{Duration, Instant as WallInstant};

use bytes::Bytes;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use stt_proto::{Config, Identity, Input, Instant, Node, NodeSeed, Output, PathAddr, SharedSeed, StreamId, UnixTime};

fn node(seed: u8, shared: &SharedSeed) -> Node<ChaCha20Rng> {
    let id = Identity::new(NodeSeed::from_bytes([seed; 32]), shared.clone());
    Node::new(
        Config::default(),
        id,
        ChaCha20Rng::seed_from_u64(u64::from(seed)),
        Instant::ZERO,
        Some(UnixTime::from_millis(1_700_000_000_000)),
    )
    .expect("default config is valid")
}

/// Moves everything `from` wants to send into `to`.
fn pump(from: &mut Node<ChaCha20Rng>, from_addr: PathAddr, to: &mut Node<ChaCha20Rng>, now: Instant, out: &mut [u8]) {
    loop {
        match from.poll_output(out) {
            Output::Transmit(t) => {
                let _ = to.handle_input(Input::Datagram { now, from: from_addr, data: &mut out[..t.len] });
            }
            Output::Event(_) => {}
            Output::Wait(_) => return,
        }
    }
}

fn main() {
    let mib: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    static DATA: [u8; 1 << 16] = [0x5a; 1 << 16];
    let shared = SharedSeed::from_bytes([1; 32]);
    let (aa, ab) = (PathAddr::Udp("192.0.2.1:1".parse().unwrap()), PathAddr::Udp("192.0.2.2:1".parse().unwrap()));
    let (mut a, mut b) = (node(1, &shared), node(2, &shared));
    let mut out = vec![0u8; 2048];
    let mut now = Instant::ZERO;
    let sa = a.connect(now, ab, None).expect("connect");
    for _ in 0..3 {
        pump(&mut a, aa, &mut b, now, &mut out);
        pump(&mut b, ab, &mut a, now, &mut out);
    }
    let id = a.session(sa).expect("session").open_uni(now).expect("stream");
    let sb = b.session_ids().next().expect("peer session");
    let mut buf = vec![0u8; 1 << 16];
    let (mut moved, total) = (0u64, mib << 20);
    let t = WallInstant::now();
    while moved < total {
        now = now.saturating_add(Duration::from_micros(50));
        let _ = a.session(sa).expect("session").write_bytes(now, id, Bytes::from_static(&DATA));
        let _ = a.handle_input(Input::Timeout { now });
        let _ = b.handle_input(Input::Timeout { now });
        pump(&mut a, aa, &mut b, now, &mut out);
        pump(&mut b, ab, &mut a, now, &mut out);
        let mut s = b.session(sb).expect("peer session");
        while s.accept_stream().is_some() {}
        while let Ok((n, _)) = s.read(now, StreamId(id.0), &mut buf) {
            if n == 0 {
                break;
            }
            moved += n as u64;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!("{mib} MiB in {secs:.3} s: {:.0} MB/s through both nodes on one core", total as f64 / secs / 1e6);
}
