//! The `stt` binary's `listen` as a member would drive it through the library: several
//! transfers at once on one session, one of them unfinished (issue 14, item 2, CLI part).
//! The file-transfer header is written here from its definition in the README and
//! `src/bin/stt/wire.rs`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn header(size: u64, name: &str) -> Vec<u8> {
    let mut v = b"STTF\x02".to_vec();
    v.extend_from_slice(&size.to_be_bytes());
    v.extend_from_slice(&(name.len() as u16).to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v
}

struct Listener {
    child: Child,
    dir: PathBuf,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `stt listen --out DIR` on loopback; returns it and its UDP address.
fn start_listen(shared: &SharedSeed, hex: &str) -> (Listener, std::net::SocketAddr) {
    let dir = std::env::temp_dir().join(format!("stt-cli-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let seed = dir.join("shared.seed");
    std::fs::write(&seed, hex).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&seed, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let _ = shared;
    let mut child = Command::new(env!("CARGO_BIN_EXE_stt"))
        .args(["listen", "--bind", "127.0.0.1:0", "--shared-seed"])
        .arg(&seed)
        .arg("--out")
        .arg(dir.join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("listen exited").unwrap();
        if let Some(rest) = line.strip_prefix("listening on ") {
            break rest.split(' ').next().unwrap().parse().unwrap();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Listener { child, dir }, addr)
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_serves_streams_concurrently_and_refuses_unidirectional_ones() {
    let bytes = stt_tokio::random_seed_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let shared = SharedSeed::from_hex(&hex).unwrap();
    let (listener, addr) = start_listen(&shared, &hex);
    let out = listener.dir.join("out");
    let node = Node::bind("127.0.0.1:0".parse().unwrap(), Config::default(), Identity::new(NodeSeed::random(), shared))
        .await
        .unwrap();
    let session = within("connect", node.connect(addr, None)).await.unwrap();

    // A: announces 1 MB, sends 1000 bytes and stalls.
    let (mut slow_tx, _slow_rx) = session.open_bi().await.unwrap();
    slow_tx.write_all(&header(1_000_000, "slow.bin")).await.unwrap();
    slow_tx.write_all(&[7u8; 1000]).await.unwrap();
    // B, opened after A on the same session, completes while A is unfinished.
    let (mut tx, mut rx) = session.open_bi().await.unwrap();
    tx.write_all(&header(5, "../fast.txt")).await.unwrap();
    tx.write_all(b"hello").await.unwrap();
    within("finish B", tx.finish()).await.unwrap();
    let mut reply = Vec::new();
    within("B's reply", rx.read_to_end(&mut reply)).await.unwrap();
    assert_eq!(reply.first(), Some(&0), "stored and synced: {:?}", String::from_utf8_lossy(&reply));
    assert_eq!(std::fs::read(out.join("fast.txt")).unwrap(), b"hello", "sanitized name, exact bytes");
    let now = files(&out);
    assert!(now.iter().any(|f| f.starts_with("slow.bin.") && f.ends_with(".stt-partial")), "A still partial: {now:?}");

    // A unidirectional stream is refused with STOP_SENDING: its writes fail eventually.
    let mut uni = session.open_uni().await.unwrap();
    let refused = within("uni refused", async {
        for _ in 0..1000 {
            if uni.write_all(&[0u8; 65536]).await.is_err() {
                return true;
            }
        }
        false
    })
    .await;
    assert!(refused, "a unidirectional stream was accepted");

    // A cancelled by the sender: its partial file is removed, nothing else appears.
    slow_tx.reset(2);
    within("partial removed", async {
        while files(&out).iter().any(|f| f.ends_with(".stt-partial")) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(files(&out), vec!["fast.txt".to_string()]);
    session.close(0);
    node.shutdown().await;
    drop(listener);
}
