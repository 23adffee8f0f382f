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
fn start_listen(shared: &SharedSeed, hex: &str, tag: &str) -> (Listener, std::net::SocketAddr) {
    let dir = std::env::temp_dir().join(format!("stt-cli-test-{tag}-{}", std::process::id()));
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
    let (listener, addr) = start_listen(&shared, &hex, "concurrent");
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

/// A version-3 header with the RESUMABLE flag.
fn resumable_header(size: u64, name: &str) -> Vec<u8> {
    let mut v = b"STTF\x03\x01".to_vec();
    v.extend_from_slice(&size.to_be_bytes());
    v.extend_from_slice(&(name.len() as u16).to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v
}

/// The tag in a resumable partial file's name, as `wire.rs` defines it.
fn resume_tag(sender: stt_tokio::NodeId, name: &str, size: u64) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"stt resumable partial\0");
    h.update(sender.0);
    h.update(size.to_be_bytes());
    h.update(name.as_bytes());
    h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an offer (`Ok((offset, digest))`) or, if the receiver refused, its reply's status.
async fn read_answer(rx: &mut stt_tokio::RecvStream) -> Result<(u64, [u8; 32]), u8> {
    let first = within("answer", rx.read_u8()).await.unwrap();
    if first != b'S' {
        return Err(first);
    }
    let mut rest = [0u8; 43];
    within("offer", rx.read_exact(&mut rest)).await.unwrap();
    assert_eq!(&rest[..3], b"TTR");
    Ok((u64::from_be_bytes(rest[3..11].try_into().unwrap()), rest[11..].try_into().unwrap()))
}

/// The rest of a reply: its status and message.
async fn reply(rx: &mut stt_tokio::RecvStream) -> (u8, String) {
    let mut v = Vec::new();
    within("reply", rx.read_to_end(&mut v)).await.unwrap();
    (v[0], String::from_utf8_lossy(&v[35..]).into_owned())
}

/// `stt listen` against a member that crafts the resume exchange: a second try of the same
/// file while one is in progress is refused BUSY; a start that is neither 0 nor what is held
/// is refused and leaves the kept bytes alone; a symlink planted at the partial file's name
/// is never followed; a well-behaved continuation gets the exact file.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_resists_crafted_resume_exchanges() {
    use sha2::Digest;
    let bytes = stt_tokio::random_seed_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let shared = SharedSeed::from_hex(&hex).unwrap();
    let (listener, addr) = start_listen(&shared, &hex, "resume");
    let out = listener.dir.join("out");
    let seed = NodeSeed::random();
    let me = seed.node_id();
    let node =
        Node::bind("127.0.0.1:0".parse().unwrap(), Config::default(), Identity::new(seed, shared)).await.unwrap();
    let session = within("connect", node.connect(addr, None)).await.unwrap();
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
    let partial = out.join(format!("r.bin.{}.stt-partial", resume_tag(me, "r.bin", 1000)));

    // First try: 400 bytes, then cancelled. The receiver keeps them.
    let (mut tx, mut rx) = session.open_bi().await.unwrap();
    tx.write_all(&resumable_header(1000, "r.bin")).await.unwrap();
    assert_eq!(read_answer(&mut rx).await, Ok((0, sha2::Sha256::digest(b"").into())));
    tx.write_all(&0u64.to_be_bytes()).await.unwrap();
    tx.write_all(&data[..400]).await.unwrap();
    within("400 bytes on disk", async {
        while std::fs::metadata(&partial).map_or(0, |m| m.len()) < 400 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tx.reset(2);
    drop((tx, rx));

    // Second try, held open mid-exchange; a concurrent third try of the same file is BUSY.
    let held = within("second try offered 400", async {
        loop {
            let (mut tx, mut rx) = session.open_bi().await.unwrap();
            tx.write_all(&resumable_header(1000, "r.bin")).await.unwrap();
            match read_answer(&mut rx).await {
                Ok(offer) => break (tx, rx, offer),
                // The first try's task may not have let go of the file yet: try again.
                Err(5) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(s) => panic!("refused with {s}"),
            }
        }
    })
    .await;
    let (mut tx, mut rx, offer) = held;
    assert_eq!(offer, (400, sha2::Sha256::digest(&data[..400]).into()));
    let (mut tx3, mut rx3) = session.open_bi().await.unwrap();
    tx3.write_all(&resumable_header(1000, "r.bin")).await.unwrap();
    assert_eq!(read_answer(&mut rx3).await, Err(5), "a concurrent try of the same file must be BUSY");
    drop((tx3, rx3));
    // A crafted start (neither 0 nor 400) is refused; the kept bytes stay as they were.
    tx.write_all(&999u64.to_be_bytes()).await.unwrap();
    let (status, message) = reply(&mut rx).await;
    assert_eq!(status, 4, "{message}");
    assert_eq!(std::fs::read(&partial).unwrap(), &data[..400]);
    drop((tx, rx));

    // A symlink planted at a partial file's name is not followed.
    let victim = listener.dir.join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    let planted = out.join(format!("s.bin.{}.stt-partial", resume_tag(me, "s.bin", 10)));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let (mut tx, mut rx) = session.open_bi().await.unwrap();
    tx.write_all(&resumable_header(10, "s.bin")).await.unwrap();
    let refused = read_answer(&mut rx).await;
    assert_eq!(refused, Err(1), "a planted symlink must fail the transfer");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    std::fs::remove_file(&planted).unwrap();
    drop((tx, rx));

    // A well-behaved continuation from 400: the whole file, its digest, no partial left.
    let (mut tx, mut rx, offer) = within("continuation", async {
        loop {
            let (mut tx, mut rx) = session.open_bi().await.unwrap();
            tx.write_all(&resumable_header(1000, "r.bin")).await.unwrap();
            match read_answer(&mut rx).await {
                Ok(offer) => break (tx, rx, offer),
                Err(5) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(s) => panic!("refused with {s}"),
            }
        }
    })
    .await;
    assert_eq!(offer.0, 400);
    tx.write_all(&400u64.to_be_bytes()).await.unwrap();
    tx.write_all(&data[400..]).await.unwrap();
    within("finish", tx.finish()).await.unwrap();
    let mut v = Vec::new();
    within("reply", rx.read_to_end(&mut v)).await.unwrap();
    assert_eq!(v[0], 0, "{}", String::from_utf8_lossy(&v[35..]));
    assert_eq!(&v[1..33], &sha2::Sha256::digest(&data)[..], "the reply's digest covers the whole file");
    assert_eq!(std::fs::read(out.join("r.bin")).unwrap(), data);
    assert_eq!(files(&out), vec!["r.bin".to_string()]);
    session.close(0);
    node.shutdown().await;
    drop(listener);
}
