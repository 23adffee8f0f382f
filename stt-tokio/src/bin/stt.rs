//! `stt`: send files between two machines over STT, and manage seeds.
//!
//! ```text
//! stt keygen --out shared.seed                 # a fresh 32-byte seed (mode 0600)
//! stt id --node-seed node.seed                 # print this node's id
//! stt recv --bind 0.0.0.0:7000 --shared-seed shared.seed --out file
//! stt send --to 192.0.2.7:7000 --shared-seed shared.seed file
//! stt listen --bind 0.0.0.0:7000 --shared-seed shared.seed --out dir/
//! stt demo                                     # two nodes in one process, on loopback
//! ```
//!
//! Exit codes: 0 success; 1 failure (the message says why); 2 bad command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sha3::{Digest, Sha3_256};
use stt_tokio::{Config, Ended, Identity, Node, NodeId, NodeSeed, RandomSeed, SharedSeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Application close code: the receiver wrote and synced the data.
const CONFIRMED: u64 = 0;
/// Application close code: the receiver failed to store the data.
const STORE_FAILED: u64 = 1;

#[derive(Parser)]
#[command(name = "stt", version, about = "Encrypted peer-to-peer file transfer over STT")]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a fresh random 32-byte seed as hex (mode 0600; never overwrites).
    Keygen {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the node id of a node seed.
    Id {
        /// The node seed file.
        #[arg(long)]
        node_seed: PathBuf,
    },
    /// Serve until Ctrl-C: store (or count) every incoming stream.
    Listen {
        /// Address to bind (UDP).
        #[arg(long)]
        bind: SocketAddr,
        /// The group's shared seed file.
        #[arg(long)]
        shared_seed: PathBuf,
        /// This node's seed file (a random identity if absent).
        #[arg(long)]
        node_seed: Option<PathBuf>,
        /// Accept only these node ids (repeatable).
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// Directory for received streams (discarded and counted if absent).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also serve STT over WebSocket (ws://) on this TCP address, for networks that block UDP.
        #[arg(long)]
        ws_bind: Option<SocketAddr>,
    },
    /// Accept one session, write its first stream to a file, confirm and exit.
    Recv {
        /// Address to bind (UDP).
        #[arg(long)]
        bind: SocketAddr,
        /// The group's shared seed file.
        #[arg(long)]
        shared_seed: PathBuf,
        /// This node's seed file (a random identity if absent).
        #[arg(long)]
        node_seed: Option<PathBuf>,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Two nodes in one process on loopback: handshake, a transfer over several streams,
    /// datagrams and an application frame, with throughput and round-trip time.
    Demo {
        /// MiB to transfer.
        #[arg(long, default_value_t = 64)]
        size: u64,
        /// Concurrent streams.
        #[arg(long, default_value_t = 4)]
        streams: u64,
    },
    /// Send a file (or `-` for stdin) as one stream; exits 0 once the receiver confirmed.
    Send {
        /// The receiver: a UDP address (HOST:PORT) or a WebSocket URL (ws://HOST:PORT/PATH).
        #[arg(long)]
        to: String,
        /// The group's shared seed file.
        #[arg(long)]
        shared_seed: PathBuf,
        /// This node's seed file (a random identity if absent).
        #[arg(long)]
        node_seed: Option<PathBuf>,
        /// Require the receiver to have this node id.
        #[arg(long)]
        peer: Option<String>,
        /// The file to send, or `-`.
        path: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Command::Keygen { out } => keygen(&out),
        Command::Id { node_seed } => read_node_seed(&node_seed).map(|s| println!("{}", s.node_id())),
        Command::Listen { bind, shared_seed, node_seed, allow, out, ws_bind } => {
            listen(bind, &shared_seed, node_seed.as_deref(), &allow, out.as_deref(), ws_bind).await
        }
        Command::Recv { bind, shared_seed, node_seed, out } => {
            recv(bind, &shared_seed, node_seed.as_deref(), &out).await
        }
        Command::Send { to, shared_seed, node_seed, peer, path } => {
            send(&to, &shared_seed, node_seed.as_deref(), peer.as_deref(), &path).await
        }
        Command::Demo { size, streams } => demo(size, streams).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stt: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn keygen(out: &Path) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(out).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => format!("{} exists; refusing to overwrite a seed", out.display()),
        _ => format!("cannot create {}: {e}", out.display()),
    })?;
    let hex: String = stt_tokio::random_seed_bytes().iter().map(|b| format!("{b:02x}")).collect();
    writeln!(f, "{hex}").and_then(|()| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("wrote a new seed to {}", out.display());
    Ok(())
}

/// Reads a seed file, refusing files that others can read.
fn read_seed_text(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is readable by other users (mode {:o}); fix it with: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            ));
        }
    }
    let _ = meta;
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_node_seed(path: &Path) -> Result<NodeSeed> {
    NodeSeed::from_hex(&read_seed_text(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

fn identity(shared: &Path, node: Option<&Path>) -> Result<Identity> {
    let shared = SharedSeed::from_hex(&read_seed_text(shared)?).map_err(|e| format!("{}: {e}", shared.display()))?;
    let node = match node {
        Some(p) => read_node_seed(p)?,
        None => {
            let seed = NodeSeed::random();
            eprintln!("no --node-seed: using an ephemeral identity {}", seed.node_id());
            seed
        }
    };
    Ok(Identity::new(node, shared))
}

fn parse_id(s: &str) -> Result<NodeId> {
    NodeId::from_hex(s).map_err(|e| format!("node id {s}: {e}"))
}

fn bar(len: Option<u64>) -> ProgressBar {
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

async fn send(to: &str, shared: &Path, node_seed: Option<&Path>, peer: Option<&str>, path: &Path) -> Result<()> {
    let identity = identity(shared, node_seed)?;
    let expect = peer.map(parse_id).transpose()?;
    let ws = to.starts_with("ws://") || to.starts_with("wss://");
    let udp_to: Option<SocketAddr> = if ws {
        None
    } else {
        Some(to.parse().map_err(|_| format!("--to {to}: expected HOST:PORT or ws://HOST:PORT/PATH"))?)
    };
    let bind: SocketAddr = if udp_to.is_none_or(|a| a.is_ipv4()) { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|_| "bad bind address")?;
    let node = Node::bind(bind, Config::default(), identity).await.map_err(|e| e.to_string())?;
    let session = match udp_to {
        Some(addr) => node.connect(addr, expect).await.map_err(|e| e.to_string())?,
        None => node.connect_ws(to, expect, None).await.map_err(|e| e.to_string())?,
    };
    let mut stream = session.open_uni().await.map_err(|e| e.to_string())?;
    let (mut input, len): (Box<dyn tokio::io::AsyncRead + Unpin + Send>, Option<u64>) = if path == Path::new("-") {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let f = tokio::fs::File::open(path).await.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let len = f.metadata().await.ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let pb = bar(len);
    let mut buf = vec![0u8; 256 * 1024];
    let mut hasher = Sha3_256::new();
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).await.map_err(|e| format!("read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        stream.write_all(&buf[..n]).await.map_err(|e| format!("send: {e}"))?;
        total += n as u64;
        pb.set_position(total);
    }
    stream.finish().await.map_err(|e| format!("send: {e}"))?;
    pb.finish_and_clear();
    // The receiver closes with code 0 after writing and syncing.
    let ended = tokio::time::timeout(Duration::from_secs(60), session.closed())
        .await
        .map_err(|_| "no confirmation from the receiver")?;
    node.shutdown().await;
    match ended {
        Ended::Closed(stt_tokio::CloseReason::Remote(CONFIRMED)) => {
            println!("sent {total} bytes, sha3-256 {}", hex(&hasher.finalize()));
            Ok(())
        }
        other => Err(format!("the receiver did not confirm: {other}")),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads a whole stream into `sink` (if any); returns (bytes, sha3-256).
async fn drain(
    mut stream: stt_tokio::RecvStream,
    mut sink: Option<&mut tokio::fs::File>,
    pb: &ProgressBar,
) -> Result<(u64, String)> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut hasher = Sha3_256::new();
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(f) = sink.as_deref_mut() {
            f.write_all(&buf[..n]).await.map_err(|e| format!("write: {e}"))?;
        }
        total += n as u64;
        pb.set_position(total);
    }
    if let Some(f) = sink {
        f.sync_all().await.map_err(|e| format!("sync: {e}"))?;
    }
    Ok((total, hex(&hasher.finalize())))
}

async fn recv(bind: SocketAddr, shared: &Path, node_seed: Option<&Path>, out: &Path) -> Result<()> {
    let node = Node::bind(bind, Config::default(), identity(shared, node_seed)?).await.map_err(|e| e.to_string())?;
    eprintln!("listening on {} as {}", node.local_addr(), node.node_id());
    let session = node.accept().await.ok_or("node stopped")?;
    let stream = session.accept_uni().await.ok_or("session ended before a stream arrived")?;
    let mut file = tokio::fs::File::create(out).await.map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let pb = bar(None);
    match drain(stream, Some(&mut file), &pb).await {
        Ok((n, digest)) => {
            pb.finish_and_clear();
            session.close(CONFIRMED);
            node.shutdown().await;
            println!("received {n} bytes into {}, sha3-256 {digest}", out.display());
            Ok(())
        }
        Err(e) => {
            session.close(STORE_FAILED);
            node.shutdown().await;
            Err(e)
        }
    }
}

async fn listen(
    bind: SocketAddr,
    shared: &Path,
    node_seed: Option<&Path>,
    allow: &[String],
    out: Option<&Path>,
    ws_bind: Option<SocketAddr>,
) -> Result<()> {
    let allow: Vec<NodeId> = allow.iter().map(|s| parse_id(s)).collect::<Result<_>>()?;
    let config = Config::default().allow_list((!allow.is_empty()).then_some(allow));
    let node = Node::bind(bind, config, identity(shared, node_seed)?).await.map_err(|e| e.to_string())?;
    eprintln!("listening on {} as {} (Ctrl-C to stop)", node.local_addr(), node.node_id());
    if let Some(ws) = ws_bind {
        let at = node
            .listen_ws(ws, None, stt_tokio::WsLimits::default())
            .await
            .map_err(|e| format!("cannot bind --ws-bind {ws}: {e}"))?;
        eprintln!("also serving WebSocket at ws://{at}/");
    }
    let out = out.map(Path::to_path_buf);
    let mut count = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            s = node.accept() => {
                let Some(session) = s else { break };
                let out = out.clone();
                count += 1;
                let n = count;
                tokio::spawn(async move {
                    let peer = session.peer_node_id();
                    let mut k = 0;
                    while let Some(stream) = session.accept_uni().await {
                        k += 1;
                        let path = out.as_ref().map(|d| d.join(format!("{}-{n}-{k}", &peer.to_string()[..12])));
                        let mut file = match &path {
                            Some(p) => tokio::fs::File::create(p).await.ok(),
                            None => None,
                        };
                        let pb = ProgressBar::hidden();
                        match drain(stream, file.as_mut(), &pb).await {
                            Ok((bytes, digest)) => {
                                let to = path.as_ref().map_or("discarded".to_string(), |p| p.display().to_string());
                                println!("{} stream {k}: {bytes} bytes, sha3-256 {digest}, {to}", &peer.to_string()[..12]);
                                session.close(CONFIRMED);
                            }
                            Err(e) => {
                                eprintln!("{} stream {k}: {e}", &peer.to_string()[..12]);
                                session.close(STORE_FAILED);
                            }
                        }
                    }
                });
            }
        }
    }
    node.shutdown().await;
    Ok(())
}

async fn demo(size_mib: u64, streams: u64) -> Result<()> {
    use bytes::Bytes;
    use std::time::Instant;
    let shared = SharedSeed::random();
    let ephemeral = || Identity::new(NodeSeed::random(), shared.clone());
    let lo: SocketAddr = "127.0.0.1:0".parse().map_err(|_| "bad address")?;
    let a = Node::bind(lo, Config::default(), ephemeral()).await.map_err(|e| e.to_string())?;
    let b = Node::bind(lo, Config::default().app_frame_types(&[0x80]), ephemeral()).await.map_err(|e| e.to_string())?;
    println!("node a {} on {}", a.node_id(), a.local_addr());
    println!("node b {} on {}", b.node_id(), b.local_addr());

    let t = Instant::now();
    let (sa, sb) = tokio::join!(a.connect(b.local_addr(), Some(b.node_id())), b.accept());
    let sa = sa.map_err(|e| e.to_string())?;
    let sb = sb.ok_or("b stopped")?;
    println!("handshake: {:.2} ms (Noise XXpsk0, both node ids authenticated)", t.elapsed().as_secs_f64() * 1e3);

    // Round trips over datagrams: b echoes.
    let echo = sb.clone();
    let echo_task = tokio::spawn(async move {
        while let Some(d) = echo.recv_datagram().await {
            if echo.send_datagram(d).await.is_err() {
                break;
            }
        }
    });
    let mut rtts = Vec::new();
    for i in 0..50u32 {
        let t = Instant::now();
        sa.send_datagram(Bytes::copy_from_slice(&i.to_be_bytes())).await.map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(2), sa.recv_datagram()).await.map_err(|_| "datagram echo lost")?;
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    rtts.sort_by(f64::total_cmp);
    println!(
        "datagram round trip: p50 {:.0} µs, p99 {:.0} µs ({} samples)",
        rtts[rtts.len() / 2],
        rtts[rtts.len() * 99 / 100],
        rtts.len()
    );

    // An application frame, dispatched by type on b.
    sa.send_frame(0x80, Bytes::from_static(b"hello from a")).await.map_err(|e| e.to_string())?;
    let (ty, body) = tokio::time::timeout(Duration::from_secs(5), sb.recv_frame())
        .await
        .map_err(|_| "frame lost")?
        .ok_or("session ended")?;
    let mut dispatcher = stt_tokio::FrameDispatcher::new()
        .on(0x80, |_, body| println!("app frame 0x80: {:?}", String::from_utf8_lossy(&body)));
    dispatcher.dispatch(&sb, ty, body);

    // Bulk transfer over several streams. Hashing (SHA3-256) happens outside the timed
    // part: it is slower than the transport.
    let per_stream = (size_mib * (1 << 20) / streams.max(1)) as usize;
    let payloads: Vec<Bytes> = (0..streams)
        .map(|k| {
            Bytes::from(
                (0..per_stream as u32).map(|i| (i ^ k as u32).wrapping_mul(2_654_435_761) as u8).collect::<Vec<u8>>(),
            )
        })
        .collect();
    let mut sent_digests: Vec<String> = payloads.iter().map(|p| hex(&Sha3_256::digest(p))).collect();
    let receiver = {
        let sb = sb.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..streams {
                let Some(mut s) = sb.accept_uni().await else { break };
                tasks.push(tokio::spawn(async move {
                    let mut v = Vec::with_capacity(per_stream);
                    s.read_to_end(&mut v).await.map(|_| v).map_err(|e| e.to_string())
                }));
            }
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.map_err(|e| e.to_string())??);
            }
            Ok::<_, String>(out)
        })
    };
    let pb = bar(Some(per_stream as u64 * streams));
    let t = Instant::now();
    let mut senders = Vec::new();
    for payload in payloads {
        let sa = sa.clone();
        let pb = pb.clone();
        senders.push(tokio::spawn(async move {
            let mut s = sa.open_uni().await.map_err(|e| e.to_string())?;
            for chunk in payload.chunks(256 * 1024) {
                s.write_all(chunk).await.map_err(|e| e.to_string())?;
                pb.inc(chunk.len() as u64);
            }
            s.finish().await.map_err(|e| e.to_string())
        }));
    }
    for s in senders {
        s.await.map_err(|e| e.to_string())??;
    }
    let received = receiver.await.map_err(|e| e.to_string())??;
    let secs = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let mut got_digests: Vec<String> = received.iter().map(|v| hex(&Sha3_256::digest(v))).collect();
    sent_digests.sort();
    got_digests.sort();
    if sent_digests != got_digests {
        return Err("transfer corrupted: digests differ".into());
    }
    let bytes: usize = received.iter().map(Vec::len).sum();
    println!(
        "transfer: {:.1} MiB over {streams} streams in {secs:.2} s = {:.1} MB/s; every stream's SHA3-256 verified afterwards",
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / secs / 1e6
    );
    if let Some(st) = sa.stats().await {
        println!("session: rtt {:?}, cwnd {} B, lost {} packets, mtu {} B", st.rtt, st.cwnd, st.lost, st.mtu);
    }
    sa.close(0);
    let _ = tokio::time::timeout(Duration::from_secs(2), sb.closed()).await;
    echo_task.abort();
    a.shutdown().await;
    b.shutdown().await;
    println!("demo complete");
    Ok(())
}
