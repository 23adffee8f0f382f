//! Issue #14 item 2: a member flooding streams the application never reads must not grow
//! the receiver beyond its flow-control windows. The attacker runs in a child process
//! (this test binary re-run with an environment variable), so the allocation counter of
//! this process sees the receiver alone. Memory is counted, never time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
use tokio::io::AsyncWriteExt;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY-free wrapper: forwards to the system allocator and counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const ATTACK: &str = "STT_FLOOD_ATTACK";
/// Streams the attacker tries to open, 1 MiB each, none finished.
const STREAMS: usize = 384;
const PER_STREAM: usize = 1 << 20;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The attacker (runs only in the child process): opens as many unidirectional streams
/// as it is allowed and writes 1 MiB on each without finishing any.
#[test]
fn flood_attacker_child() {
    let Ok(spec) = std::env::var(ATTACK) else { return };
    let (addr, seed) = spec.split_once(',').expect("ADDR,SEED");
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let shared = SharedSeed::from_hex(seed).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async move {
        let a =
            Node::bind("127.0.0.1:0".parse().unwrap(), Config::default(), Identity::new(NodeSeed::random(), shared))
                .await
                .unwrap();
        let s = a.connect(addr, None).await.unwrap();
        let data = bytes::Bytes::from(vec![0x5a; PER_STREAM]);
        let mut tasks = Vec::new();
        for _ in 0..STREAMS {
            let Ok(Ok(mut w)) = tokio::time::timeout(Duration::from_secs(2), s.open_uni()).await else { break };
            let data = data.clone();
            tasks.push(tokio::spawn(async move {
                let _ = w.write_all(&data).await;
                // Never finished: hold the stream open.
                std::future::pending::<()>().await;
                drop(w);
            }));
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(tasks);
    });
}

/// The receiver holds one accepted stream it never reads and accepts nothing else, while
/// a member opens hundreds of 1 MiB streams: what it holds stays within its session
/// window (24 MiB at most by default) plus a small constant. (Before the redesign the
/// driver copied every stream out of the core: 400 MB for this input.)
#[test]
fn stream_flood_stays_within_flow_control_windows() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let seed = stt_tokio::random_seed_bytes();
        let shared = SharedSeed::from_bytes(seed);
        let b =
            Node::bind("127.0.0.1:0".parse().unwrap(), Config::default(), Identity::new(NodeSeed::random(), shared))
                .await
                .unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "flood_attacker_child", "--nocapture", "--test-threads=1"])
            .env(ATTACK, format!("{},{}", b.local_addr(), hex(&seed)))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let session = tokio::time::timeout(Duration::from_secs(20), b.accept()).await.unwrap().unwrap();
        let _held = tokio::time::timeout(Duration::from_secs(20), session.accept_uni()).await.unwrap().unwrap();
        let base = LIVE.load(Ordering::Relaxed);
        // Wait until the attacker can push nothing more (bytes received stop growing).
        let (mut last, mut still) = (0, 0);
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = b.stats().bytes_in;
            if now == last {
                still += 1;
                if still >= 4 {
                    break;
                }
            } else {
                still = 0;
                last = now;
            }
        }
        let grown = LIVE.load(Ordering::Relaxed).saturating_sub(base);
        let _ = child.kill();
        let _ = child.wait();
        assert!(last > 1 << 20, "the attacker pushed data ({last} bytes received)");
        let bound = (24 << 20) + (4 << 20);
        assert!(grown <= bound, "the receiver grew by {grown} bytes while flooded (bound {bound})");
        eprintln!("flooded receiver grew by {grown} bytes after receiving {last} bytes");
    });
}
