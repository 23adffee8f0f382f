//! Relay figures on loopback (issue #15): time to first byte through a relay, time until
//! punching moves the session onto the direct path, and bulk throughput relayed (punching
//! off) versus direct, in one run. Loopback has no NAT, so punching always succeeds here;
//! the NAT outcomes are tested in the simulator (`nat_*`) and the kernel harness.
//!
//! `cargo bench -p stt-tokio --bench relay`; `STT_BENCH_BYTES` sets the bulk size
//! (default 64 MiB), `STT_BENCH_ROUNDS` the rounds (default 3; medians are printed).

use std::time::{Duration, Instant};

use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, RelayConfig, Session, SharedSeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn node(shared: &SharedSeed, config: Config) -> Node {
    Node::bind("127.0.0.1:0".parse().unwrap(), config, Identity::new(NodeSeed::random(), shared.clone())).await.unwrap()
}

struct Round {
    first_byte: Duration,
    to_direct: Option<Duration>,
    bulk: f64,
}

/// One session A → B through a relay; `punch` false keeps it relayed.
async fn round(bytes: u64, punch: bool) -> Round {
    let shared = SharedSeed::random();
    let relay =
        node(&shared, Config::default().relay(Some(RelayConfig::default().member_rate(u32::MAX, u32::MAX)))).await;
    let member = Config::default().keep_relay_path(!punch);
    let a = node(&shared, member.clone()).await;
    let b = node(&shared, member).await;
    let keep = tokio::spawn({
        let relay = relay.clone();
        async move {
            let mut v = Vec::new();
            while let Some(s) = relay.accept().await {
                v.push(s);
            }
        }
    });
    let ra = a.connect(relay.local_addr(), None).await.unwrap();
    let rb = b.connect(relay.local_addr(), None).await.unwrap();
    ra.register_relay().await.unwrap();
    rb.register_relay().await.unwrap();

    // Time to first byte: connect through the relay, open a stream, one byte arrives.
    let start = Instant::now();
    let (s, r) = tokio::join!(a.connect_via_relay(&ra, b.node_id()), b.accept());
    let (s, r): (Session, Session) = (s.unwrap(), r.unwrap());
    let mut w = s.open_uni().await.unwrap();
    w.write_all(&[1]).await.unwrap();
    let mut rx = r.accept_uni().await.unwrap();
    let mut one = [0u8; 1];
    rx.read_exact(&mut one).await.unwrap();
    let first_byte = start.elapsed();
    let to_direct = if punch {
        while s.is_relayed() {
            s.path_changed().await.unwrap();
        }
        Some(start.elapsed())
    } else {
        None
    };
    // Bulk on the path the session settled on.
    let chunk = vec![7u8; 1 << 20];
    let t = Instant::now();
    let writer = tokio::spawn(async move {
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            w.write_all(&chunk[..n]).await.unwrap();
            left -= n as u64;
        }
        w.finish().await.unwrap();
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        match rx.read(&mut buf).await.unwrap() {
            0 => break,
            n => got += n as u64,
        }
    }
    writer.await.unwrap();
    assert_eq!(got, bytes);
    let bulk = bytes as f64 / t.elapsed().as_secs_f64() / 1e6;
    let lost = s.stats().await.map_or(0, |st| st.lost);
    let (rs, asx) = (relay.stats(), a.stats());
    eprintln!(
        "  punch={punch}: {bulk:.0} MB/s, inner packets lost {lost}, relay dropped {}, member could not hand over {}",
        rs.relay_dropped, asx.relay_send_dropped
    );
    keep.abort();
    Round { first_byte, to_direct, bulk }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let bytes = env("STT_BENCH_BYTES", 64 << 20);
    let rounds = env("STT_BENCH_ROUNDS", 3).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (mut fb_relayed, mut fb_punch, mut direct_at, mut bulk_relayed, mut bulk_direct) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        // Alternate the order so drift on a shared machine hits both alike.
        let (x, y) = if i % 2 == 0 {
            let x = rt.block_on(round(bytes, false));
            (x, rt.block_on(round(bytes, true)))
        } else {
            let y = rt.block_on(round(bytes, true));
            (rt.block_on(round(bytes, false)), y)
        };
        fb_relayed.push(x.first_byte.as_secs_f64() * 1e3);
        bulk_relayed.push(x.bulk);
        fb_punch.push(y.first_byte.as_secs_f64() * 1e3);
        direct_at.push(y.to_direct.unwrap_or_default().as_secs_f64() * 1e3);
        bulk_direct.push(y.bulk);
        eprintln!("round {} of {rounds} done", i + 1);
    }
    let (br, bd) = (median(bulk_relayed), median(bulk_direct));
    println!("relay on loopback, {bytes} bytes, median of {rounds} rounds");
    println!("ms first_byte_relayed {:.2}", median(fb_relayed));
    println!("ms first_byte_with_punching {:.2}", median(fb_punch));
    println!("ms direct_path_after_connect {:.2}", median(direct_at));
    println!("MB/s bulk_relayed {br:.1}");
    println!("MB/s bulk_direct {bd:.1}");
    println!("ratio relayed_over_direct {:.2}", br / bd);
}
