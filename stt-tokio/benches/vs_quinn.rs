//! stt against quinn (and plain TCP) over loopback, side by side in one run.
//!
//! ```sh
//! cargo bench -p stt-tokio --bench vs_quinn
//! STT_BENCH_ROUNDS=3 STT_BENCH_BYTES=1073741824 cargo bench -p stt-tokio --bench vs_quinn
//! ```
//!
//! Every measurement runs a server and a client, each in its own child process of this
//! binary with a current-thread tokio runtime (one core each), so memory figures are the
//! process's own; one bulk figure runs both processes on tokio's default multi-thread
//! runtime instead (a worker per core, as `#[tokio::main]` gives). stt and quinn alternate (A B A B …) within each figure; both use
//! AES-256-GCM through ring and at most 1452-byte datagrams. Reported: medians over the
//! rounds, then one machine-readable line per figure (`ratio …`, `bytes …`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod many_sessions;

const CHUNK: usize = 1 << 20;
const SEED_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

// ----- process plumbing -----

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Set on a child process: it runs a multi-thread tokio runtime (a worker per core, as
/// `#[tokio::main]` gives) instead of a current-thread one.
const MT_ENV: &str = "STT_BENCH_CHILD_MT";

impl ChildProc {
    fn spawn(args: &[&str]) -> Self {
        Self::spawn_with(args, false)
    }

    fn spawn_with(args: &[&str], multi_thread: bool) -> Self {
        let exe = std::env::current_exe().expect("own path");
        let mut cmd = Command::new(exe);
        if multi_thread {
            cmd.env(MT_ENV, "1");
        } else {
            cmd.env_remove(MT_ENV);
        }
        let mut child = cmd
            .arg("--child")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, stdin, stdout }
    }

    /// The next line starting with `key `, without the key.
    fn read(&mut self, key: &str) -> String {
        loop {
            let mut l = String::new();
            if self.stdout.read_line(&mut l).expect("child stdout") == 0 {
                panic!("child exited before printing `{key}`");
            }
            if let Some(v) = l.trim_end().strip_prefix(&format!("{key} ")) {
                return v.to_string();
            }
        }
    }

    fn ask(&mut self, line: &str, key: &str) -> String {
        writeln!(self.stdin, "{line}").expect("child stdin");
        self.stdin.flush().expect("flush");
        self.read(key)
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stt server's node, for its counters.
static STT_NODE: std::sync::OnceLock<Node> = std::sync::OnceLock::new();

/// Sessions the server holds now (accepted and not yet ended).
static LIVE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// CPU time of a process's main thread (where a current-thread runtime runs
/// everything), in nanoseconds: the first field of `/proc/<pid>/schedstat`.
fn cpu_ns(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Server commands on stdin: `rss` prints
/// `rss <VmRSS KiB> <VmHWM KiB> <sessions held> <CPU ns of the runtime thread>
/// <stt: sessions visited> <stt: datagrams in> <stt: datagrams out>`.
fn serve_commands() {
    std::thread::spawn(|| {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line.trim() == "rss" {
                let st = STT_NODE.get().map(|n| n.stats()).unwrap_or_default();
                println!(
                    "rss {} {} {} {} {} {} {}",
                    rss_kib("VmRSS:"),
                    rss_kib("VmHWM:"),
                    LIVE.load(std::sync::atomic::Ordering::Relaxed),
                    cpu_ns("self"),
                    st.sessions_visited,
                    st.datagrams_in,
                    st.datagrams_out
                );
                let _ = std::io::stdout().flush();
            }
        }
        std::process::exit(0);
    });
}

// ----- the application protocol (identical for all three transports) -----
// The client opens a bidirectional stream and writes one command byte:
// 'U' then bytes until end of stream: the server answers the byte count (u64) and finishes;
// 'E' then 1-byte messages: each is echoed.

async fn serve_stream<R, W>(mut rx: R, mut tx: W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut cmd = [0u8; 1];
    if rx.read_exact(&mut cmd).await.is_err() {
        return;
    }
    match cmd[0] {
        b'U' => {
            let mut buf = vec![0u8; 256 * 1024];
            let mut n = 0u64;
            loop {
                match rx.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k as u64,
                }
            }
            let _ = tx.write_all(&n.to_be_bytes()).await;
            let _ = tx.shutdown().await;
        }
        b'E' => {
            let mut b = [0u8; 1];
            while rx.read_exact(&mut b).await.is_ok() {
                if tx.write_all(&b).await.is_err() || tx.flush().await.is_err() {
                    break;
                }
            }
        }
        _ => {}
    }
}

// ----- servers -----

/// Idle timeout of both sides in the many-session figures (default 30 s for stt, 60 s
/// in this bench for quinn): setting up 10 000 sessions and timing bulk runs beside them
/// takes longer than that.
const MANY_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// With `STT_BENCH_RCVBUF=<bytes>`, the many-session servers (stt and quinn alike) get
/// a socket with that receive buffer (the kernel caps it at `net.core.rmem_max`);
/// otherwise (the default) each library binds its own socket.
fn server_socket(many: bool) -> Option<std::net::UdpSocket> {
    let size: usize = std::env::var("STT_BENCH_RCVBUF").ok()?.parse().ok()?;
    if !many {
        return None;
    }
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .expect("socket");
    s.set_recv_buffer_size(size).expect("SO_RCVBUF");
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).expect("bind");
    s.set_nonblocking(true).expect("nonblocking");
    eprintln!("server receive buffer: {} bytes", s.recv_buffer_size().unwrap_or(0));
    Some(s.into())
}

async fn stt_server(many: bool) {
    let shared = SharedSeed::from_hex(SEED_HEX).expect("seed");
    // The handshake rate limit (default 1000/s, then COOKIEs) is a DoS knob quinn has no
    // counterpart of (it sends no Retry by default); lift it so both measure handshake cost.
    let mut config = Config::default()
        .max_udp_payload(1452)
        .max_sessions(4096)
        .max_half_open(4096)
        .handshake_rate(1_000_000)
        .handshake_burst(100_000);
    if many {
        // Room for the many-session figures: more sessions, a replay cache that holds
        // every handshake of the run (default 8192 ephemerals; when full, new handshakes
        // are refused), and an idle timeout longer than the run. Keepalives stay at their
        // defaults (every 10 s on an idle session), so held sessions are not silent.
        config = config.max_sessions(32_768).ephemeral_cache(65_536).idle_timeout(MANY_IDLE_TIMEOUT);
    }
    let identity = Identity::new(NodeSeed::random(), shared);
    let node = match server_socket(many) {
        Some(socket) => {
            Node::with_socket(tokio::net::UdpSocket::from_std(socket).expect("tokio socket"), config, identity)
                .expect("node")
        }
        None => Node::bind("127.0.0.1:0".parse().unwrap(), config, identity).await.expect("bind"),
    };
    println!("addr {}", node.local_addr());
    let _ = std::io::stdout().flush();
    let _ = STT_NODE.set(node.clone());
    while let Some(session) = node.accept().await {
        LIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            while let Some((tx, rx)) = session.accept_bi().await {
                tokio::spawn(serve_stream(rx, tx));
            }
            LIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

fn quinn_server_config(cert_path: &str, idle: Duration) -> quinn::ServerConfig {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    std::fs::write(cert_path, cert.cert.der()).expect("write cert");
    let key = quinn::rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).expect("key");
    let mut c = quinn::ServerConfig::with_single_cert(vec![cert.cert.der().clone()], key).expect("server config");
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(idle.try_into().expect("idle")));
    c.transport_config(Arc::new(t));
    c
}

async fn quinn_server(cert_path: &str, many: bool) {
    let idle = if many { MANY_IDLE_TIMEOUT } else { Duration::from_secs(60) };
    let endpoint = match server_socket(many) {
        Some(socket) => quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(quinn_server_config(cert_path, idle)),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .expect("endpoint"),
        None => quinn::Endpoint::server(quinn_server_config(cert_path, idle), "127.0.0.1:0".parse().unwrap())
            .expect("endpoint"),
    };
    println!("addr {}", endpoint.local_addr().expect("addr"));
    let _ = std::io::stdout().flush();
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            LIVE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            while let Ok((tx, rx)) = conn.accept_bi().await {
                tokio::spawn(serve_stream(rx, tx));
            }
            LIVE.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

async fn tcp_server() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!("addr {}", l.local_addr().expect("addr"));
    let _ = std::io::stdout().flush();
    while let Ok((s, _)) = l.accept().await {
        let _ = s.set_nodelay(true);
        let (rx, tx) = s.into_split();
        tokio::spawn(serve_stream(rx, tx));
    }
}

// ----- clients -----

/// One connected client of any transport, able to open bidirectional streams.
/// The node or endpoint is held so it outlives its connection.
enum Conn {
    Stt(stt_tokio::Session, #[allow(dead_code)] Node),
    Quinn(quinn::Connection, #[allow(dead_code)] quinn::Endpoint),
    Tcp(SocketAddr),
}

type BoxRead = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type BoxWrite = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

async fn stt_node() -> Node {
    let shared = SharedSeed::from_hex(SEED_HEX).expect("seed");
    let config = Config::default().max_udp_payload(1452).max_sessions(4096);
    Node::bind("127.0.0.1:0".parse().unwrap(), config, Identity::new(NodeSeed::random(), shared)).await.expect("bind")
}

fn quinn_client(cert_path: &str) -> quinn::Endpoint {
    quinn_client_idle(cert_path, Duration::from_secs(60))
}

fn quinn_client_idle(cert_path: &str, idle: Duration) -> quinn::Endpoint {
    let der = std::fs::read(cert_path).expect("cert");
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(quinn::rustls::pki_types::CertificateDer::from(der)).expect("root");
    let mut c = quinn::ClientConfig::with_root_certificates(Arc::new(roots)).expect("client config");
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(idle.try_into().expect("idle")));
    c.transport_config(Arc::new(t));
    let mut e = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("endpoint");
    e.set_default_client_config(c);
    e
}

impl Conn {
    async fn open(kind: &str, addr: SocketAddr, cert: &str) -> Conn {
        match kind {
            "stt" => {
                let node = stt_node().await;
                let s = node.connect(addr, None).await.expect("stt connect");
                Conn::Stt(s, node)
            }
            "quinn" => {
                let e = quinn_client(cert);
                let c = e.connect(addr, "localhost").expect("connect").await.expect("quinn connect");
                Conn::Quinn(c, e)
            }
            _ => Conn::Tcp(addr),
        }
    }

    async fn stream(&self) -> (BoxWrite, BoxRead) {
        match self {
            Conn::Stt(s, _) => {
                let (tx, rx) = s.open_bi().await.expect("open");
                (Box::new(tx), Box::new(rx))
            }
            Conn::Quinn(c, _) => {
                let (tx, rx) = c.open_bi().await.expect("open");
                (Box::new(tx), Box::new(rx))
            }
            Conn::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await.expect("tcp connect");
                s.set_nodelay(true).expect("nodelay");
                let (rx, tx) = s.into_split();
                (Box::new(tx), Box::new(rx))
            }
        }
    }
}

async fn client(kind: &str, addr: SocketAddr, cert: &str, mode: &str, n: u64) {
    match mode {
        "upload" | "upload_go" => {
            let conn = Conn::open(kind, addr, cert).await;
            let (mut tx, mut rx) = conn.stream().await;
            if mode == "upload_go" {
                many_sessions::wait_for_go().await;
            }
            let chunk = Bytes::from(vec![0xa5u8; CHUNK]);
            let t = Instant::now();
            tx.write_all(b"U").await.expect("cmd");
            let mut left = n;
            while left > 0 {
                let k = left.min(CHUNK as u64) as usize;
                tx.write_all(&chunk[..k]).await.expect("write");
                left -= k as u64;
            }
            tx.shutdown().await.expect("finish");
            let mut count = [0u8; 8];
            rx.read_exact(&mut count).await.expect("count");
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(u64::from_be_bytes(count), n, "server counted every byte");
            println!("result {} {secs}", n as f64 / secs / 1e6);
        }
        "rr" => {
            let conn = Conn::open(kind, addr, cert).await;
            let (mut tx, mut rx) = conn.stream().await;
            tx.write_all(b"E").await.expect("cmd");
            let mut samples = Vec::with_capacity(n as usize);
            let mut b = [0u8; 1];
            for i in 0..n + 200 {
                let t = Instant::now();
                tx.write_all(&[i as u8]).await.expect("write");
                tx.flush().await.expect("flush");
                rx.read_exact(&mut b).await.expect("echo");
                if i >= 200 {
                    samples.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            samples.sort_by(f64::total_cmp);
            println!("result {} {}", samples[samples.len() / 2], samples[samples.len() * 99 / 100]);
        }
        "hs" | "hsc" => {
            // Sequential ("hs") or 32 at a time ("hsc").
            let conc = if mode == "hs" { 1 } else { 32 };
            let t = Instant::now();
            match kind {
                "stt" => {
                    // STT keeps one session per pair of nodes (spec §6.7), so concurrent
                    // handshakes come from `conc` client nodes, each with its own identity.
                    let mut nodes = Vec::new();
                    for _ in 0..conc {
                        nodes.push(Arc::new(stt_node().await));
                    }
                    let mut done = 0;
                    while done < n {
                        let batch = conc.min(n - done);
                        let mut tasks = Vec::new();
                        for node in nodes.iter().take(batch as usize) {
                            let node = node.clone();
                            tasks.push(tokio::spawn(async move {
                                let s = node.connect(addr, None).await.expect("connect");
                                s.close(0);
                            }));
                        }
                        for t in tasks {
                            t.await.expect("task");
                        }
                        done += batch;
                    }
                }
                _ => {
                    let e = quinn_client(cert);
                    let mut done = 0;
                    while done < n {
                        let batch = conc.min(n - done);
                        let mut tasks = Vec::new();
                        for _ in 0..batch {
                            let e = e.clone();
                            tasks.push(tokio::spawn(async move {
                                let c = e.connect(addr, "localhost").expect("connect").await.expect("handshake");
                                c.close(0u32.into(), b"");
                            }));
                        }
                        for t in tasks {
                            t.await.expect("task");
                        }
                        done += batch;
                    }
                }
            }
            println!("result {}", n as f64 / t.elapsed().as_secs_f64());
        }
        other => panic!("unknown mode {other}"),
    }
}

fn child(args: &[String]) {
    // Current-thread (one core per process) unless the parent asks for tokio's default
    // multi-thread runtime (`MT_ENV`).
    let rt = if std::env::var_os(MT_ENV).is_some() {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    }
    .expect("runtime");
    match args {
        [role, kind, cert, flags @ ..] if role == "server" => {
            serve_commands();
            let many = flags.iter().any(|f| f == "many");
            rt.block_on(async {
                match kind.as_str() {
                    "stt" => stt_server(many).await,
                    "quinn" => quinn_server(cert, many).await,
                    _ => tcp_server().await,
                }
            });
        }
        [role, kind, cert, addr, mode, n] if role == "client" => {
            let addr: SocketAddr = addr.parse().expect("addr");
            let n: u64 = n.parse().expect("n");
            rt.block_on(client(kind, addr, cert, mode, n));
        }
        [role, kind, cert, addr, mode, n, per] if role == "client" => {
            let addr: SocketAddr = addr.parse().expect("addr");
            let n: u64 = n.parse().expect("n");
            let per: u64 = per.parse().expect("bytes per session");
            rt.block_on(many_sessions::client(kind, addr, cert, mode, n, per));
        }
        _ => panic!("bad child arguments {args:?}"),
    }
}

// ----- the parent: interleaved rounds and the report -----

fn run(kind: &str, mode: &str, n: u64, cert: &str) -> (String, u64) {
    run_with(kind, mode, n, cert, false)
}

/// As [`run`], both processes on a multi-thread runtime when `multi_thread`.
fn run_with(kind: &str, mode: &str, n: u64, cert: &str, multi_thread: bool) -> (String, u64) {
    let mut server = ChildProc::spawn_with(&["server", kind, cert], multi_thread);
    let addr = server.read("addr");
    let n_s = n.to_string();
    let mut c = ChildProc::spawn_with(&["client", kind, cert, &addr, mode, &n_s], multi_thread);
    let r = c.read("result");
    let hwm = server.ask("rss", "rss");
    let hwm: u64 = hwm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    (r, hwm)
}

/// Server RSS growth per idle session, in bytes. The sessions come from the
/// many-session holder: for stt one client identity per session (the spec allows one
/// session per pair of nodes, so repeated connects from one node give one session).
fn idle(kind: &str, n: u64, cert: &str) -> f64 {
    let mut server = ChildProc::spawn(&["server", kind, cert]);
    let addr = server.read("addr");
    std::thread::sleep(Duration::from_millis(200));
    let before: f64 = server.ask("rss", "rss").split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let mut c = ChildProc::spawn(&["client", kind, cert, &addr, "hold", "0", "0"]);
    c.ask(&format!("add {n}"), "held");
    std::thread::sleep(Duration::from_secs(2));
    let state = server.ask("rss", "rss");
    let after: f64 = state.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let live = state.split_whitespace().nth(2).unwrap_or("?");
    eprintln!("{kind}: {n} idle sessions opened; the server holds {live}");
    (after - before) * 1024.0 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(p) = args.iter().position(|a| a == "--child") {
        child(&args[p + 1..]);
        return;
    }
    let rounds = env_u64("STT_BENCH_ROUNDS", 3).max(1);
    let bytes = env_u64("STT_BENCH_BYTES", 1 << 30);
    let handshakes = env_u64("STT_BENCH_HANDSHAKES", 1000);
    let rr = env_u64("STT_BENCH_RR", 5000);
    let idle_n = env_u64("STT_BENCH_IDLE", 1000);
    let cert = std::env::temp_dir().join(format!("stt-vs-quinn-{}.der", std::process::id()));
    let cert = cert.to_str().expect("utf-8 temp path").to_string();
    println!("stt vs quinn over loopback: {rounds} interleaved rounds, medians; one core per process");
    let mut tput_mt = [vec![], vec![]];
    let (mut tput, mut hs, mut hsc, mut p50, mut p99, mut peak) = (
        [vec![], vec![]],
        [vec![], vec![]],
        [vec![], vec![]],
        [vec![], vec![], vec![]],
        [vec![], vec![], vec![]],
        [vec![], vec![]],
    );
    let kinds = ["stt", "quinn", "tcp"];
    // STT_BENCH_ONLY_MANY=1 runs the many-session figures alone (for profiling them).
    let only_many = env_u64("STT_BENCH_ONLY_MANY", 0) == 1;
    for round in 0..if only_many { 0 } else { rounds } {
        for (k, kind) in kinds[..2].iter().enumerate() {
            let (r, hwm) = run(kind, "upload", bytes, &cert);
            tput[k].push(r.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).expect("MB/s"));
            peak[k].push(hwm as f64);
            let mt = run_with(kind, "upload", bytes, &cert, true).0;
            tput_mt[k].push(mt.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).expect("MB/s"));
            hs[k].push(run(kind, "hs", handshakes, &cert).0.parse::<f64>().expect("hs/s"));
            hsc[k].push(run(kind, "hsc", handshakes, &cert).0.parse::<f64>().expect("hs/s"));
        }
        for (k, kind) in kinds.iter().enumerate() {
            let r = run(kind, "rr", rr, &cert).0;
            let mut it = r.split_whitespace().map(|v| v.parse::<f64>().expect("µs"));
            p50[k].push(it.next().expect("p50"));
            p99[k].push(it.next().expect("p99"));
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let (idle_stt, idle_quinn) =
        if only_many { (0.0, 0.0) } else { (idle("stt", idle_n, &cert), idle("quinn", idle_n, &cert)) };
    // Many sessions at once (issue 16): STT_BENCH_MANY idle sessions (0 skips; the middle
    // step is STT_BENCH_MANY_MID, default a tenth, at most 1000) beside a bulk upload of
    // STT_BENCH_MANY_BYTES (0: no bulk runs, the idle-session memory alone);
    // STT_BENCH_ACTIVE sessions uploading STT_BENCH_ACTIVE_BYTES each (0 skips).
    let many = env_u64("STT_BENCH_MANY", 10_000);
    let plan = many_sessions::Plan {
        rounds,
        bulk_bytes: env_u64("STT_BENCH_MANY_BYTES", bytes.min(256 << 20)),
        mid: env_u64("STT_BENCH_MANY_MID", (many / 10).min(1000)).min(many),
        many,
        active: env_u64("STT_BENCH_ACTIVE", 1000),
        active_bytes: env_u64("STT_BENCH_ACTIVE_BYTES", 256 << 10),
    };
    let many_stt = many_sessions::measure("stt", &cert, &plan);
    eprintln!("many sessions: stt done");
    let many_quinn = many_sessions::measure("quinn", &cert, &plan);
    let _ = std::fs::remove_file(&cert);
    if !only_many {
        let m = |v: &Vec<f64>| median(v.clone());
        println!();
        println!("{:<34} {:>12} {:>12} {:>12} {:>8}", "figure", "stt", "quinn", "tcp", "ratio");
        let row = |name: &str, s: f64, q: f64, t: Option<f64>, ratio: f64| {
            println!("{name:<34} {s:>12.1} {q:>12.1} {:>12} {ratio:>8.2}", t.map_or("-".into(), |t| format!("{t:.1}")));
        };
        row(
            &format!("throughput MB/s ({} MiB, 1 stream)", bytes >> 20),
            m(&tput[0]),
            m(&tput[1]),
            None,
            m(&tput[0]) / m(&tput[1]),
        );
        row("throughput MB/s (multi-thread rt)", m(&tput_mt[0]), m(&tput_mt[1]), None, m(&tput_mt[0]) / m(&tput_mt[1]));
        row(&format!("handshakes/s sequential ({handshakes})"), m(&hs[0]), m(&hs[1]), None, m(&hs[0]) / m(&hs[1]));
        row(
            &format!("handshakes/s 32 concurrent ({handshakes})"),
            m(&hsc[0]),
            m(&hsc[1]),
            None,
            m(&hsc[0]) / m(&hsc[1]),
        );
        row("1-byte round trip p50 µs (vs tcp)", m(&p50[0]), m(&p50[1]), Some(m(&p50[2])), m(&p50[0]) / m(&p50[2]));
        row("1-byte round trip p99 µs (vs tcp)", m(&p99[0]), m(&p99[1]), Some(m(&p99[2])), m(&p99[0]) / m(&p99[2]));
        row(&format!("server bytes per idle session ({idle_n})"), idle_stt, idle_quinn, None, idle_stt / idle_quinn);
        row("server peak RSS KiB (bulk upload)", m(&peak[0]), m(&peak[1]), None, m(&peak[0]) / m(&peak[1]));
        println!();
        println!("ratio throughput_stt_over_quinn {:.3}", m(&tput[0]) / m(&tput[1]));
        println!("ratio throughput_multi_thread_stt_over_quinn {:.3}", m(&tput_mt[0]) / m(&tput_mt[1]));
        println!("ratio handshakes_stt_over_quinn {:.3}", m(&hs[0]) / m(&hs[1]));
        println!("ratio handshakes_concurrent_stt_over_quinn {:.3}", m(&hsc[0]) / m(&hsc[1]));
        println!("ratio rtt_p50_stt_over_tcp {:.3}", m(&p50[0]) / m(&p50[2]));
        println!("ratio rtt_p99_stt_over_tcp {:.3}", m(&p99[0]) / m(&p99[2]));
        println!("ratio rtt_p50_quinn_over_tcp {:.3}", m(&p50[1]) / m(&p50[2]));
        println!("bytes idle_session_stt {}", idle_stt.round() as i64);
        println!("bytes idle_session_quinn {}", idle_quinn.round() as i64);
        println!("bytes peak_rss_stt {}", (m(&peak[0]) * 1024.0) as i64);
        println!("bytes peak_rss_quinn {}", (m(&peak[1]) * 1024.0) as i64);
    }
    many_sessions::report(&plan, &many_stt, &many_quinn);
}
