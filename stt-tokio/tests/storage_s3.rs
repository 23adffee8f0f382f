//! [`Storage`] against a real S3 protocol server: `s3s-fs` (found through `STT_S3S_FS`, the
//! `PATH` or `~/.cargo/bin`), started by each test on a free loopback port over a temporary
//! directory, with signed (SigV4) requests. Without the binary these tests fail when `CI` is
//! set and are skipped with a notice otherwise. `.ci/run` installs it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use stt_tokio::{Address, Addressing, S3Config, Storage, StoreError};
use tokio::io::{AsyncRead, ReadBuf};

const AK: &str = "stt-test-access";
const SK: &str = "stt-test-secret-key-0123456789";
const KEY: [u8; 32] = [0x5a; 32];

fn find_s3s_fs() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STT_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("s3s-fs")).find(|p| p.is_file())
}

/// The server binary, or `None` (after a notice) when it is absent outside CI.
fn s3s_fs() -> Option<PathBuf> {
    match find_s3s_fs() {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("s3s-fs not found (set STT_S3S_FS or put it on PATH); CI requires these tests to run")
        }
        None => {
            eprintln!(
                "SKIPPED: s3s-fs not found; install it with \
                 `cargo install s3s-fs --version 0.14.1 --features binary --locked` to run the S3 tests"
            );
            None
        }
    }
}

/// An s3s-fs process serving a temporary directory.
struct Server {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start(name: &str) -> Option<Self> {
        let bin = s3s_fs()?;
        let dir = std::env::temp_dir().join(format!("stt-s3-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bucket")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut s = Self { bin, child: None, port, dir };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--access-key", AK, "--secret-key", SK])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "s3s-fs did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn config(&self, bucket: &str, secret: &str) -> S3Config {
        let mut c = S3Config::new(bucket, "stt/blobs");
        c.endpoint = Some(format!("http://127.0.0.1:{}", self.port));
        c.region = Some("us-east-1".into());
        c.access_key_id = Some(AK.into());
        c.secret_access_key = Some(secret.into());
        c.max_retries = 1;
        c.retry_timeout = Duration::from_secs(3);
        c
    }

    async fn storage(&self) -> Storage {
        Storage::s3(self.config("bucket", SK), KEY, Addressing::Plain).await.unwrap().with_parts(5 << 20, 4)
    }

    /// The file s3s-fs keeps the object under `addr` in.
    fn object_file(&self, addr: &Address) -> PathBuf {
        self.dir.join("bucket/stt/blobs").join(addr.to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) ^ seed).rotate_left(7) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_dedup_multipart_and_ranges() {
    let Some(server) = Server::start("roundtrip") else { return };
    let s = server.storage().await;
    let small = b"a small blob".to_vec();
    let a = s.put(&small).await.unwrap();
    assert_eq!(s.put(&small).await.unwrap(), a);
    assert_eq!(s.get(&a).await.unwrap().unwrap(), small);
    // 21 MiB streamed from a reader (five parts through a temporary object) and from a
    // file (hashed first, then straight to its address).
    let big = data(21 << 20, 1);
    let b = s.put_reader(&big[..], big.len() as u64).await.unwrap();
    assert_eq!(b, Addressing::Plain.address(&big));
    let path = server.dir.join("input.bin");
    let big2 = data(12 << 20, 2);
    std::fs::write(&path, &big2).unwrap();
    let c = s.put_file(&path).await.unwrap();
    assert_eq!(c, Addressing::Plain.address(&big2));
    assert_eq!(s.put_file(&path).await.unwrap(), c, "deduplicated without an upload");
    let mut list = s.list().await.unwrap();
    list.sort();
    let mut want = vec![a, b, c];
    want.sort();
    assert_eq!(list, want);
    // Encrypted at rest: the stored object does not contain the content.
    let raw = std::fs::read(server.object_file(&b)).unwrap();
    assert!(!raw.windows(64).any(|w| w == &big[1 << 20..(1 << 20) + 64]));
    let mut out = Vec::new();
    assert_eq!(s.get_to(&b, &mut out).await.unwrap(), Some(big.len() as u64));
    assert!(out == big);
    assert!(s.get(&c).await.unwrap().unwrap() == big2);
    let r = s.ranges(&b).await.unwrap().unwrap();
    assert_eq!(r.len(), big.len() as u64);
    let mut part = Vec::new();
    r.read_to((5 << 20) + 3, 1 << 20, &mut part).await.unwrap();
    assert!(part == big[(5 << 20) + 3..(6 << 20) + 3]);
    assert_eq!(s.get(&Address([1; 32])).await.unwrap(), None);
    assert!(s.delete(&a).await.unwrap());
    assert_eq!(s.list().await.unwrap().len(), 2);
}

#[tokio::test]
async fn wrong_credentials_and_missing_bucket_are_clear_errors() {
    let Some(server) = Server::start("errors") else { return };
    let e = Storage::s3(server.config("bucket", "not-the-secret"), KEY, Addressing::Plain).await.err().unwrap();
    assert!(matches!(e, StoreError::Credentials(_)), "{e:?}");
    assert!(e.to_string().contains("refused the credentials"), "{e}");
    let e = Storage::s3(server.config("no-such-bucket", SK), KEY, Addressing::Plain).await.err().unwrap();
    assert!(matches!(e, StoreError::NoBucket(_)), "{e:?}");
    assert!(e.to_string().contains("bucket no-such-bucket does not exist"), "{e}");
}

#[tokio::test]
async fn a_blob_replaced_behind_the_stores_back_is_an_integrity_error() {
    let Some(server) = Server::start("replaced") else { return };
    let s = server.storage().await;
    let x = data(300_000, 3);
    let y = data(1000, 4);
    let a = s.put(&x).await.unwrap();
    let b = s.put(&y).await.unwrap();
    let file = server.object_file(&a);
    let original = std::fs::read(&file).unwrap();
    // A flipped byte.
    let mut bad = original.clone();
    bad[200_000] ^= 0x40;
    std::fs::write(&file, &bad).unwrap();
    assert!(matches!(s.get(&a).await, Err(StoreError::Integrity(z)) if z == a));
    let mut sink = Vec::new();
    assert!(matches!(s.get_to(&a, &mut sink).await, Err(StoreError::Integrity(_))));
    // Another valid blob of this store moved under a's address.
    std::fs::copy(server.object_file(&b), &file).unwrap();
    let e = s.get(&a).await.unwrap_err();
    assert!(matches!(e, StoreError::Integrity(_)), "{e:?}");
    assert!(e.to_string().contains("integrity"), "{e}");
    // Truncated.
    std::fs::write(&file, &original[..original.len() - 10]).unwrap();
    assert!(matches!(s.get(&a).await, Err(StoreError::Integrity(_))));
    std::fs::write(&file, &original).unwrap();
    assert!(s.get(&a).await.unwrap().unwrap() == x);
}

/// A reader that stops after `pause_at` bytes until `resume` is set, telling the test it
/// got there.
struct Pausing<'a> {
    data: &'a [u8],
    pos: usize,
    pause_at: usize,
    reached: Arc<AtomicBool>,
    resume: Arc<AtomicBool>,
}

impl AsyncRead for Pausing<'_> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.pos >= self.pause_at && !self.resume.load(Ordering::SeqCst) {
            self.reached.store(true, Ordering::SeqCst);
            let w = cx.waker().clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                w.wake();
            });
            return Poll::Pending;
        }
        let end = if self.pos < self.pause_at { self.pause_at } else { self.data.len() };
        let n = (end - self.pos).min(buf.remaining());
        let pos = self.pos;
        buf.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// [SG-7]: a blob is visible under its address only whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_upload_leaves_no_partial_blob_and_a_retry_works() {
    let Some(mut server) = Server::start("killed") else { return };
    let s = server.storage().await;
    let big = data(24 << 20, 5);
    let addr = Addressing::Plain.address(&big);
    let reached = Arc::new(AtomicBool::new(false));
    let resume = Arc::new(AtomicBool::new(false));
    let upload = {
        let (s, big, reached, resume) = (s.clone(), big.clone(), reached.clone(), resume.clone());
        tokio::spawn(async move {
            let r = Pausing { data: &big, pos: 0, pause_at: 13 << 20, reached, resume };
            s.put_reader(r, big.len() as u64).await
        })
    };
    let t = Instant::now();
    while !reached.load(Ordering::SeqCst) {
        assert!(t.elapsed() < Duration::from_secs(60), "upload never reached the pause");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Two parts are on their way or stored: kill the server in the middle of the upload.
    server.kill();
    resume.store(true, Ordering::SeqCst);
    let e = upload.await.unwrap().unwrap_err();
    assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
    server.spawn();
    assert!(!s.list().await.unwrap().contains(&addr), "no partial blob is listed");
    assert!(!s.contains(&addr).await.unwrap());
    assert!(!server.object_file(&addr).exists());
    assert_eq!(s.get(&addr).await.unwrap(), None);
    // The retry stores it whole.
    assert_eq!(s.put_reader(&big[..], big.len() as u64).await.unwrap(), addr);
    assert!(s.get(&addr).await.unwrap().unwrap() == big);
    assert_eq!(s.list().await.unwrap(), vec![addr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_small_blobs_put_listed_and_read() {
    let Some(server) = Server::start("thousand") else { return };
    let s = server.storage().await;
    let blobs: Vec<Vec<u8>> =
        (0..1000u32).map(|i| format!("blob number {i} {}", "x".repeat(i as usize % 97)).into_bytes()).collect();
    let t = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for b in blobs.clone() {
        let (s, limit) = (s.clone(), limit.clone());
        tasks.spawn(async move {
            let _p = limit.acquire_owned().await.unwrap();
            s.put(&b).await.unwrap()
        });
    }
    let mut addrs = Vec::new();
    while let Some(a) = tasks.join_next().await {
        addrs.push(a.unwrap());
    }
    let put = t.elapsed();
    let mut listed = s.list().await.unwrap();
    listed.sort();
    addrs.sort();
    assert_eq!(listed.len(), 1000);
    assert_eq!(listed, addrs);
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for b in blobs {
        let (s, limit) = (s.clone(), limit.clone());
        tasks.spawn(async move {
            let _p = limit.acquire_owned().await.unwrap();
            let a = s.address_of(&b);
            assert_eq!(s.get(&a).await.unwrap().unwrap(), b);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    eprintln!("1000 small blobs: put {put:?}, get {:?}", t.elapsed());
}
