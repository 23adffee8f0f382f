//! Storage throughput, for docs/performance.md:
//! put/get of one blob into the file-system store and into an S3 server (s3s-fs on
//! loopback, found like the S3 tests: `STT_S3S_FS`, `PATH`, `~/.cargo/bin`), and a fetch from
//! one peer versus two peers in parallel over loopback STT sessions.
//!
//! ```text
//! cargo run --release -p stt-tokio --features object-store --example storage_bench
//! STT_BENCH_MIB=64 STT_BENCH_ROUNDS=1 cargo run …   # smaller and quicker
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stt_tokio::{
    Addressing, BlobServer, Config, Fetcher, Identity, Node, NodeSeed, RandomSeed, S3Config, ServeLimits, ServePolicy,
    SharedSeed, Storage,
};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn s3s_fs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STT_S3S_FS") {
        return Some(p.into());
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(Path::new(&h).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("s3s-fs")).find(|p| p.is_file())
}

/// Put the file and get it back to /dev/null `rounds` times (a fresh blob each round: the
/// first byte differs, so nothing is deduplicated); MB/s medians.
async fn put_get(s: &Storage, file: &Path, data: &mut [u8], rounds: usize) -> (f64, f64) {
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        data[0] = r as u8;
        std::fs::write(file, &*data).unwrap();
        let t = Instant::now();
        let a = s.put_file(file).await.unwrap();
        puts.push(data.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
        let t = Instant::now();
        let n = s.get_to(&a, tokio::io::sink()).await.unwrap().unwrap();
        gets.push(n as f64 / t.elapsed().as_secs_f64() / 1e6);
        s.delete(&a).await.unwrap();
    }
    (median(puts), median(gets))
}

#[tokio::main]
async fn main() {
    let mib = env("STT_BENCH_MIB", 256);
    let rounds = env("STT_BENCH_ROUNDS", 3);
    let dir = std::env::temp_dir().join(format!("stt-storage-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut data: Vec<u8> = (0..(mib << 20) as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    let file = dir.join("input.bin");
    println!("blob {mib} MiB, {rounds} rounds, medians");

    let only_fetch = std::env::var_os("STT_BENCH_ONLY_FETCH").is_some();
    let fs = Storage::fs(dir.join("fs"), None, [1; 32], Addressing::Plain).unwrap();
    if !only_fetch {
        let (p, g) = put_get(&fs, &file, &mut data, rounds).await;
        println!("fs store          put {p:7.0} MB/s   get {g:7.0} MB/s");

        match s3s_fs() {
            None => println!("s3s-fs            (not found: skipped)"),
            Some(bin) => {
                let root = dir.join("s3");
                std::fs::create_dir_all(root.join("bench")).unwrap();
                let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
                let mut child = Command::new(bin)
                    .args([
                        "--host",
                        "127.0.0.1",
                        "--port",
                        &port.to_string(),
                        "--access-key",
                        "AK",
                        "--secret-key",
                        "SKSKSKSK",
                    ])
                    .arg(&root)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let mut c = S3Config::new("bench", "blobs");
                c.endpoint = Some(format!("http://127.0.0.1:{port}"));
                c.access_key_id = Some("AK".into());
                c.secret_access_key = Some("SKSKSKSK".into());
                let s3 = Storage::s3(c, [1; 32], Addressing::Plain).await.unwrap();
                let (p, g) = put_get(&s3, &file, &mut data, rounds).await;
                println!("S3 (s3s-fs)       put {p:7.0} MB/s   get {g:7.0} MB/s   (8 MiB parts, 4 in flight)");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    // Fetch: two serving nodes over loopback, each with its own store holding the blob.
    let shared = SharedSeed::random();
    let addr = Addressing::Plain.address(&data);
    let mut peers = Vec::new();
    let client = Node::bind(
        "127.0.0.1:0".parse().unwrap(),
        Config::default(),
        Identity::new(NodeSeed::random(), shared.clone()),
    )
    .await
    .unwrap();
    for k in 0..2u8 {
        let s = Storage::fs(dir.join(format!("peer{k}")), None, [k + 10; 32], Addressing::Plain).unwrap();
        s.put(&data).await.unwrap();
        let n = Node::bind(
            "127.0.0.1:0".parse().unwrap(),
            Config::default(),
            Identity::new(NodeSeed::random(), shared.clone()),
        )
        .await
        .unwrap();
        let server = BlobServer::new(s, ServePolicy::default(), ServeLimits::default());
        let accept = n.clone();
        tokio::spawn(async move {
            while let Some(s) = accept.accept().await {
                tokio::spawn(server.clone().serve_session(s));
            }
        });
        peers.push(client.connect(n.local_addr(), None).await.unwrap());
        std::mem::forget(n);
    }
    let fetcher = Fetcher { parallel_per_peer: env("STT_BENCH_PARALLEL", 4), ..Fetcher::default() };
    for (name, set) in [("one peer ", &peers[..1]), ("two peers", &peers[..])] {
        let mut rates = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let (got, _) = fetcher.fetch(set, &addr).await.unwrap();
            rates.push(got.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
            assert!(got == data);
        }
        println!(
            "fetch, {name}   {:7.0} MB/s   (4 MiB ranges, 4 in flight per peer, whole blob verified)",
            median(rates)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
