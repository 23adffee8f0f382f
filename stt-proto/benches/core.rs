//! Core benchmarks (criterion): packet protection per provider and AEAD, the handshake,
//! the frame codec, and a bulk transfer between two nodes in memory.
//!
//! ```sh
//! cargo bench -p stt-proto --features ring --bench core
//! cargo bench -p stt-proto --features ring,aws-lc --bench core   # X25519 from aws-lc-rs
//! ```

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use stt_proto::crypto::{AeadAlg, CryptoProvider, RustCrypto, X25519Backend};
use stt_proto::{Config, Event, Identity, Input, Instant, Node, NodeSeed, Output, PathAddr, SharedSeed, UnixTime};

fn providers() -> Vec<(&'static str, &'static dyn CryptoProvider)> {
    #[allow(unused_mut)]
    let mut v: Vec<(&'static str, &'static dyn CryptoProvider)> = vec![("rustcrypto", &RustCrypto)];
    #[cfg(feature = "ring")]
    v.push(("ring", &stt_proto::crypto::Ring));
    #[cfg(feature = "aws-lc")]
    v.push(("aws-lc", &stt_proto::crypto::AwsLc));
    v
}

fn seal_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal+open 1200 B");
    g.throughput(Throughput::Bytes(1200));
    for (name, p) in providers() {
        for alg in [AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm] {
            let key = p.packet_key(alg, &[7; 32]);
            let mut buf = vec![0u8; 1200];
            g.bench_function(format!("{name} {alg:?}"), |b| {
                b.iter(|| {
                    let tag = key.seal_in_place(&[1; 12], b"header", &mut buf).unwrap();
                    key.open_in_place(&[1; 12], b"header", &mut buf, &tag).unwrap();
                    black_box(&buf);
                })
            });
        }
    }
    g.finish();
}

fn node(seed: u8, shared: &SharedSeed, provider: &'static dyn CryptoProvider) -> Node<ChaCha20Rng> {
    let id = Identity::new(NodeSeed::from_bytes([seed; 32]), shared.clone());
    Node::new(
        Config::default().crypto_provider(provider),
        id,
        ChaCha20Rng::seed_from_u64(u64::from(seed)),
        Instant::ZERO,
        Some(UnixTime::from_millis(1_700_000_000_000)),
    )
    .unwrap()
}

/// Moves all pending output of `from` into `to`; returns datagrams moved.
fn pump(
    from: &mut Node<ChaCha20Rng>,
    from_addr: PathAddr,
    to: &mut Node<ChaCha20Rng>,
    now: Instant,
    out: &mut [u8],
    events: &mut Vec<Event>,
) -> usize {
    let mut n = 0;
    loop {
        match from.poll_output(out) {
            Output::Transmit(t) => {
                let mut d = out[..t.len].to_vec();
                let _ = to.handle_input(Input::Datagram { now, from: from_addr, data: &mut d });
                n += 1;
            }
            Output::Event(e) => events.push(e),
            Output::Wait(_) => return n,
        }
    }
}

/// One full handshake, both sides, with the build's X25519 backend (the nodes are built
/// outside the timing). Run once without and once with `--features aws-lc` to compare.
fn handshake(c: &mut Criterion) {
    let shared = SharedSeed::from_bytes([1; 32]);
    let (aa, ab) = (PathAddr::Udp("192.0.2.1:1".parse().unwrap()), PathAddr::Udp("192.0.2.2:1".parse().unwrap()));
    let backend = X25519Backend::ACTIVE.name();
    c.bench_function(&format!("handshake (both sides, 8 X25519, {backend})"), |b| {
        b.iter_batched(
            || (node(1, &shared, &RustCrypto), node(2, &shared, &RustCrypto)),
            |(mut a, mut bn)| {
                let mut out = vec![0u8; 2048];
                let mut ev = Vec::new();
                a.connect(Instant::ZERO, ab, None).unwrap();
                for _ in 0..3 {
                    pump(&mut a, aa, &mut bn, Instant::ZERO, &mut out, &mut ev);
                    pump(&mut bn, ab, &mut a, Instant::ZERO, &mut out, &mut ev);
                }
                assert!(ev.iter().filter(|e| matches!(e, Event::Established { .. })).count() == 2);
                assert_eq!(a.stats().x25519_ops + bn.stats().x25519_ops, 2 + 8, "2 static keys at Node::new + 8");
                (a, bn)
            },
            BatchSize::SmallInput,
        )
    });
}

/// X25519 key generation (base-point multiplication) and DH with every backend compiled in.
fn x25519(c: &mut Criterion) {
    let mut g = c.benchmark_group("x25519");
    let private = [0x5au8; 32];
    let peer = X25519Backend::Dalek.public_key(&[0xa5; 32]);
    for &backend in X25519Backend::ALL {
        let name = backend.name();
        g.bench_function(format!("keygen {name}"), |b| b.iter(|| backend.public_key(black_box(&private))));
        g.bench_function(format!("dh {name}"), |b| {
            let mut out = [0u8; 32];
            b.iter(|| {
                backend.diffie_hellman(black_box(&private), black_box(&peer), &mut out).unwrap();
                out
            })
        });
    }
    g.finish();
}

fn transfer(c: &mut Criterion) {
    let mut g = c.benchmark_group("in-memory transfer");
    g.measurement_time(Duration::from_secs(5));
    static DATA: [u8; 1 << 16] = [0x5a; 1 << 16];
    for (name, p) in providers() {
        let shared = SharedSeed::from_bytes([1; 32]);
        let (aa, ab) = (PathAddr::Udp("192.0.2.1:1".parse().unwrap()), PathAddr::Udp("192.0.2.2:1".parse().unwrap()));
        let mut a = node(1, &shared, p);
        let mut bn = node(2, &shared, p);
        let mut out = vec![0u8; 2048];
        let mut ev = Vec::new();
        let mut now = Instant::ZERO;
        let sa = a.connect(now, ab, None).unwrap();
        for _ in 0..3 {
            pump(&mut a, aa, &mut bn, now, &mut out, &mut ev);
            pump(&mut bn, ab, &mut a, now, &mut out, &mut ev);
        }
        let id = a.session(sa).unwrap().open_uni(now).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        g.throughput(Throughput::Bytes(1 << 20));
        g.bench_function(format!("1 MiB, {name}"), |b| {
            b.iter(|| {
                let mut moved = 0u64;
                while moved < 1 << 20 {
                    now = now.saturating_add(Duration::from_micros(50));
                    let _ = a.session(sa).unwrap().write_bytes(now, id, Bytes::from_static(&DATA));
                    let _ = a.handle_input(Input::Timeout { now });
                    let _ = bn.handle_input(Input::Timeout { now });
                    pump(&mut a, aa, &mut bn, now, &mut out, &mut ev);
                    pump(&mut bn, ab, &mut a, now, &mut out, &mut ev);
                    let sid = bn.session_ids().next().unwrap();
                    let mut s = bn.session(sid).unwrap();
                    while let Some(peer) = s.accept_stream() {
                        let _ = peer;
                    }
                    let peer = stt_proto::StreamId(id.0);
                    while let Ok((n, _)) = s.read(now, peer, &mut buf) {
                        if n == 0 {
                            break;
                        }
                        moved += n as u64;
                    }
                    ev.clear();
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, seal_open, handshake, x25519, transfer);
criterion_main!(benches);
