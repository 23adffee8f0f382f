//! stt and quinn on bad paths, side by side (issue #19): a bulk upload through one
//! userspace impairment relay on loopback (seeded loss, duplication, corruption, fixed
//! delay, jitter that reorders, optional rate limit), interleaved rounds, medians.
//!
//! `cargo bench -p stt-tokio --bench lossy`. Knobs: `STT_BENCH_BYTES` (default 4 MiB),
//! `STT_BENCH_ROUNDS` (default 3), `STT_BENCH_PROFILES` (comma-separated names).
//! Prints, per profile, `ratio lossy_<profile>_stt_over_quinn X` (goodput) and
//! `ratio datagrams_per_payload_<profile>_stt_over_quinn X` (datagrams the sender put on
//! the wire per payload byte), then the same datagram ratio over all profiles, and
//! `ratio datagrams_over_minimum_<profile>_<stack> X`: the sender's datagrams over the
//! fewest that could carry the payload (full-size datagrams less [`OVERHEAD`] bytes each,
//! plus one per datagram the relay dropped or corrupted: retransmissions aside).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;

/// One impairment profile, applied to both directions independently.
#[derive(Clone, Copy, Debug)]
struct Profile {
    name: &'static str,
    loss: f64,
    dup: f64,
    corrupt: f64,
    delay: Duration,
    jitter: Duration,
    /// Bits per second (0: no limit); a 50 ms drop-tail queue in front.
    rate_bps: u64,
}

const PROFILES: [Profile; 4] = [
    Profile {
        name: "loss1_delay10",
        loss: 0.01,
        dup: 0.0,
        corrupt: 0.0,
        delay: Duration::from_millis(10),
        jitter: Duration::ZERO,
        rate_bps: 0,
    },
    Profile {
        name: "loss3_delay20",
        loss: 0.03,
        dup: 0.0,
        corrupt: 0.0,
        delay: Duration::from_millis(20),
        jitter: Duration::ZERO,
        rate_bps: 0,
    },
    Profile {
        name: "loss8_dup3_corrupt1_jitter15",
        loss: 0.08,
        dup: 0.03,
        corrupt: 0.01,
        delay: Duration::ZERO,
        jitter: Duration::from_millis(15),
        rate_bps: 0,
    },
    Profile {
        name: "loss2_jitter20",
        loss: 0.02,
        dup: 0.0,
        corrupt: 0.0,
        delay: Duration::ZERO,
        jitter: Duration::from_millis(20),
        rate_bps: 0,
    },
];

/// What crossed the relay from the client toward the server.
#[derive(Default)]
struct Counts {
    datagrams: AtomicU64,
    bytes: AtomicU64,
    /// Datagrams the relay dropped, or whose every copy it corrupted: each needs a retransmission.
    unusable: AtomicU64,
    /// The largest datagram seen.
    max_len: AtomicU64,
}

/// Bytes per datagram assumed to be header, AEAD tag and stream-frame header, for either
/// stack, when counting the fewest datagrams a payload needs (stt: 13-byte header, 16-byte
/// tag, ≤ 11-byte STREAM header; QUIC short header with an 8-byte connection id similar).
const OVERHEAD: u64 = 40;

impl Counts {
    fn snapshot(&self) -> (u64, u64) {
        (self.datagrams.load(Ordering::Relaxed), self.unusable.load(Ordering::Relaxed))
    }

    /// The outcome of moving `bytes` in `secs`, counting from `before` (a [`Self::snapshot`]).
    fn outcome(&self, bytes: u64, secs: f64, before: (u64, u64)) -> Outcome {
        let (datagrams, unusable) = self.snapshot();
        let (datagrams, unusable) = (datagrams - before.0, unusable - before.1);
        let capacity = self.max_len.load(Ordering::Relaxed).saturating_sub(OVERHEAD).max(1);
        let minimum = bytes.div_ceil(capacity) + unusable;
        Outcome {
            mbps: bytes as f64 * 8.0 / secs / 1e6,
            datagrams_per_byte: datagrams as f64 / bytes as f64,
            over_minimum: datagrams as f64 / minimum as f64,
        }
    }
}

/// The impairment relay: the client sends to its address; it forwards to `server` and
/// back to whichever client address spoke last. Returns its address.
async fn relay(server: SocketAddr, p: Profile, seed: u64, counts: Arc<Counts>) -> SocketAddr {
    let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    let upstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    upstream.connect(server).await.unwrap();
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    // Client → server.
    {
        let (sock, upstream, client, counts) = (sock.clone(), upstream.clone(), client.clone(), counts.clone());
        tokio::spawn(async move {
            let mut imp = Impairment::new(p, seed);
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                counts.datagrams.fetch_add(1, Ordering::Relaxed);
                counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
                counts.max_len.fetch_max(n as u64, Ordering::Relaxed);
                let copies = imp.apply(&buf[..n]);
                if copies.iter().all(|(_, d)| d[..] != buf[..n]) {
                    counts.unusable.fetch_add(1, Ordering::Relaxed);
                }
                for (at, data) in copies {
                    let up = upstream.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        let _ = up.send(&data).await;
                    });
                }
            }
        });
    }
    // Server → client.
    tokio::spawn(async move {
        let mut imp = Impairment::new(p, seed ^ 0x5eed);
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = upstream.recv(&mut buf).await {
            let Some(to) = *client.lock().unwrap() else { continue };
            for (at, data) in imp.apply(&buf[..n]) {
                let s = sock.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let _ = s.send_to(&data, to).await;
                });
            }
        }
    });
    addr
}

struct Impairment {
    p: Profile,
    rng: ChaCha8Rng,
    /// When the rate limiter's link is free again.
    busy_until: tokio::time::Instant,
}

impl Impairment {
    fn new(p: Profile, seed: u64) -> Self {
        Self { p, rng: ChaCha8Rng::seed_from_u64(seed), busy_until: tokio::time::Instant::now() }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    /// The copies of one datagram to deliver, with their delivery times.
    fn apply(&mut self, data: &[u8]) -> Vec<(tokio::time::Instant, Vec<u8>)> {
        let now = tokio::time::Instant::now();
        let mut start = now;
        if let Some(ns) = (data.len() as u64 * 8 * 1_000_000_000).checked_div(self.p.rate_bps) {
            let free = self.busy_until.max(now);
            if free.saturating_duration_since(now) > Duration::from_millis(50) {
                return Vec::new(); // drop-tail
            }
            self.busy_until = free + Duration::from_nanos(ns);
            start = self.busy_until;
        }
        if self.chance(self.p.loss) {
            return Vec::new();
        }
        let copies = if self.chance(self.p.dup) { 2 } else { 1 };
        (0..copies)
            .map(|_| {
                let mut d = data.to_vec();
                if self.chance(self.p.corrupt) && !d.is_empty() {
                    let bit = (self.rng.next_u64() % (d.len() as u64 * 8)) as usize;
                    d[bit / 8] ^= 1 << (bit % 8);
                }
                let jitter = if self.p.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_nanos(self.rng.next_u64() % self.p.jitter.as_nanos() as u64)
                };
                (start + self.p.delay + jitter, d)
            })
            .collect()
    }
}

/// One upload's outcome: goodput and datagrams per payload byte.
struct Outcome {
    mbps: f64,
    datagrams_per_byte: f64,
    /// Datagrams sent over the fewest that could carry the payload (see [`Counts::outcome`]).
    over_minimum: f64,
}

async fn stt_upload(p: Profile, seed: u64, bytes: u64) -> Outcome {
    let shared = SharedSeed::random();
    let config = Config::default().max_udp_payload(1452);
    let server =
        Node::bind("127.0.0.1:0".parse().unwrap(), config.clone(), Identity::new(NodeSeed::random(), shared.clone()))
            .await
            .unwrap();
    let client =
        Node::bind("127.0.0.1:0".parse().unwrap(), config, Identity::new(NodeSeed::random(), shared)).await.unwrap();
    let counts = Arc::new(Counts::default());
    let via = relay(server.local_addr(), p, seed, counts.clone()).await;
    let reader = tokio::spawn({
        let server = server.clone();
        async move {
            let s = server.accept().await.unwrap();
            let mut r = s.accept_uni().await.unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0u64;
            loop {
                match r.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => got += n as u64,
                }
            }
            (got, Instant::now(), s)
        }
    });
    let s = client.connect(via, Some(server.node_id())).await.unwrap();
    let before = counts.snapshot();
    let start = Instant::now();
    let mut w = s.open_uni().await.unwrap();
    write_payload(&mut w, bytes).await;
    w.finish().await.unwrap();
    let (got, end, keep) = reader.await.unwrap();
    assert_eq!(got, bytes);
    let outcome = counts.outcome(bytes, end.duration_since(start).as_secs_f64(), before);
    if let Some(st) = keep.stats().await {
        eprintln!("  stt receiver: {} packets ({} not ack-eliciting)", st.packets_out, st.non_eliciting_packets);
    }
    if let Some(st) = s.stats().await {
        eprintln!(
            "  stt sender: {} packets ({} not ack-eliciting), {} declared lost, {} of them spurious; \
             at the end: window {} B, rtt {:?}, datagram {} B",
            st.packets_out, st.non_eliciting_packets, st.lost, st.spurious_losses, st.cwnd, st.rtt, st.mtu
        );
    }
    outcome
}

fn quinn_endpoints() -> (quinn::Endpoint, quinn::Endpoint) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = quinn::rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let sc = quinn::ServerConfig::with_single_cert(vec![cert.cert.der().clone()], key).unwrap();
    let server = quinn::Endpoint::server(sc, "127.0.0.1:0".parse().unwrap()).unwrap();
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let cc = quinn::ClientConfig::with_root_certificates(Arc::new(roots)).unwrap();
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(cc);
    (server, client)
}

async fn quinn_upload(p: Profile, seed: u64, bytes: u64) -> Outcome {
    let (server, client) = quinn_endpoints();
    let counts = Arc::new(Counts::default());
    let via = relay(server.local_addr().unwrap(), p, seed, counts.clone()).await;
    let reader = tokio::spawn({
        let server = server.clone();
        async move {
            let c = server.accept().await.unwrap().await.unwrap();
            let mut r = c.accept_uni().await.unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let mut got = 0u64;
            while let Some(n) = r.read(&mut buf).await.unwrap() {
                got += n as u64;
            }
            (got, Instant::now(), c)
        }
    });
    let c = client.connect(via, "localhost").unwrap().await.unwrap();
    let before = counts.snapshot();
    let start = Instant::now();
    let mut w = c.open_uni().await.unwrap();
    write_payload(&mut w, bytes).await;
    w.finish().unwrap();
    let (got, end, _keep) = reader.await.unwrap();
    assert_eq!(got, bytes);
    let outcome = counts.outcome(bytes, end.duration_since(start).as_secs_f64(), before);
    let st = c.stats();
    eprintln!(
        "  quinn sender: {} packets, {} lost, {} congestion events",
        st.path.sent_packets, st.path.lost_packets, st.path.congestion_events
    );
    outcome
}

/// Writes `bytes` bytes of a fixed pattern.
async fn write_payload(w: &mut (impl tokio::io::AsyncWrite + Unpin), bytes: u64) {
    let copied = tokio::io::copy(&mut tokio::io::repeat(0x5a).take(bytes), w).await.unwrap();
    assert_eq!(copied, bytes);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let bytes = env("STT_BENCH_BYTES", 4 << 20);
    let rounds = env("STT_BENCH_ROUNDS", 3).max(1);
    let only = std::env::var("STT_BENCH_PROFILES").ok();
    // The impairment's seeds are STT_BENCH_SEED + round (default 1000): the loss pattern is
    // fixed per datagram position, so an A/B of two builds needs several seeds.
    let first_seed = env("STT_BENCH_SEED", 1000);
    let profiles: Vec<Profile> = PROFILES
        .iter()
        .copied()
        .filter(|p| only.as_deref().is_none_or(|o| o.split(',').any(|n| n == p.name)))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut results: HashMap<(&str, &str), Vec<Outcome>> = HashMap::new();
    for round in 0..rounds {
        for p in &profiles {
            let seed = first_seed + round;
            // Alternate which goes first.
            let order = if round % 2 == 0 { ["stt", "quinn"] } else { ["quinn", "stt"] };
            for kind in order {
                let o = rt.block_on(async {
                    let run = async {
                        if kind == "stt" {
                            stt_upload(*p, seed, bytes).await
                        } else {
                            quinn_upload(*p, seed, bytes).await
                        }
                    };
                    tokio::time::timeout(Duration::from_secs(300), run).await.expect("upload hung")
                });
                eprintln!(
                    "round {} {} {kind}: {:.2} Mbit/s, {:.5} datagrams/byte, {:.3} of the minimum",
                    round + 1,
                    p.name,
                    o.mbps,
                    o.datagrams_per_byte,
                    o.over_minimum
                );
                results.entry((p.name, kind)).or_default().push(o);
            }
        }
    }
    println!("lossy paths: {bytes}-byte upload through an impairment relay, median of {rounds} interleaved rounds");
    let (mut all_stt, mut all_quinn) = (Vec::new(), Vec::new());
    for p in &profiles {
        let get = |k| &results[&(p.name, k)];
        let s_rate = median(get("stt").iter().map(|o| o.mbps).collect());
        let q_rate = median(get("quinn").iter().map(|o| o.mbps).collect());
        let s_dg = median(get("stt").iter().map(|o| o.datagrams_per_byte).collect());
        let q_dg = median(get("quinn").iter().map(|o| o.datagrams_per_byte).collect());
        all_stt.push(s_dg);
        all_quinn.push(q_dg);
        println!("Mbit/s {}: stt {s_rate:.2} quinn {q_rate:.2}", p.name);
        println!("ratio lossy_{}_stt_over_quinn {:.2}", p.name, s_rate / q_rate);
        println!("ratio datagrams_per_payload_{}_stt_over_quinn {:.3}", p.name, s_dg / q_dg);
        for kind in ["stt", "quinn"] {
            let m = median(get(kind).iter().map(|o| o.over_minimum).collect());
            println!("ratio datagrams_over_minimum_{}_{kind} {m:.3}", p.name);
        }
    }
    let s: f64 = all_stt.iter().sum();
    let q: f64 = all_quinn.iter().sum();
    println!("ratio datagrams_per_payload_stt_over_quinn {:.3}", s / q);
}
