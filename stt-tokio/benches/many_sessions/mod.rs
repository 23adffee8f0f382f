//! Many sessions at once (issue 16, item 1): one bulk flow beside 0, 1 000 and 10 000
//! idle sessions; 1 000 sessions moving data at the same time; server memory per idle
//! session at 10 000. Part of `vs_quinn` (same command, same child-process layout).
//!
//! Roles, each its own child process of the bench binary with a current-thread runtime:
//! - the server (`server <kind> <cert> many`): the bench's server with room for many
//!   sessions (see `stt_server`);
//! - the holder (`client <kind> … hold 0 0`): opens idle sessions on request (`add K` on
//!   stdin, answers `held <total>`) and keeps them. STT allows one session per pair of
//!   node identities (spec HS-21), so each stt session comes from its own
//!   `stt_proto::Node` (a sans-IO core with its own identity and UDP socket, driven by a
//!   small task below), not from a full `stt_tokio::Node` (receive batches and a driver
//!   each); they answer the server's keepalives but send none of their own. Quinn's come
//!   from one client endpoint;
//! - the bulk client: the ordinary `upload` client;
//! - the active client (`client <kind> … active <sessions> <bytes each>`): opens the
//!   sessions (stt: one `stt_tokio::Node` each, the same client code as the single-flow
//!   figure; quinn: one endpoint), then uploads on all of them at once and reports the
//!   aggregate rate and Jain's fairness index of the per-session rates.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use stt_proto::{Event, Input, Output, PathAddr};
use stt_tokio::{Config, Identity, NodeSeed, RandomSeed, SharedSeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use std::io::Write;

use super::{ChildProc, MANY_IDLE_TIMEOUT, SEED_HEX};

/// Handshakes in flight at once while the holder and the active client set up.
const SETUP_CONCURRENCY: usize = 32;

// ----- sans-IO client sessions for the holder -----

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn core_now() -> stt_proto::Instant {
    stt_proto::Instant::from_micros(base().elapsed().as_micros() as u64)
}

fn core_wall() -> stt_proto::UnixTime {
    stt_proto::UnixTime::from_millis(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64))
}

/// One client identity with one session to `addr`, driven until the process ends.
/// Reports once on `ready`: established, or why not.
async fn sans_io_session(
    addr: SocketAddr,
    shared: SharedSeed,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let config = Config::default()
        .max_udp_payload(1452)
        .max_sessions(1)
        .max_half_open(1)
        .ephemeral_cache(16)
        .idle_timeout(MANY_IDLE_TIMEOUT)
        .keepalive_active(None)
        .keepalive_idle(None);
    let identity = Identity::new(NodeSeed::random(), shared);
    let mut node =
        match stt_proto::Node::new(config, identity, ChaCha20Rng::from_os_rng(), core_now(), Some(core_wall())) {
            Ok(n) => n,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
    let socket = match tokio::net::UdpSocket::bind("127.0.0.1:0").await {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    if let Err(e) = node.connect(core_now(), addr.into(), None) {
        let _ = ready.send(Err(format!("{e:?}")));
        return;
    }
    let mut ready = Some(ready);
    let mut buf = vec![0u8; 2048];
    loop {
        loop {
            match node.poll_output(&mut buf) {
                Output::Transmit(t) => {
                    if let PathAddr::Udp(dst) = t.dst {
                        let seg = t.segment_size.map_or(t.len, usize::from).max(1);
                        for part in buf[..t.len].chunks(seg) {
                            let _ = socket.send_to(part, dst).await;
                        }
                    }
                }
                Output::Event(Event::Established { .. }) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                }
                Output::Event(Event::HandshakeFailed { reason, .. }) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(format!("{reason:?}")));
                    }
                    return;
                }
                Output::Event(Event::Closed { reason, .. }) => {
                    eprintln!("held session closed: {reason:?}");
                    return;
                }
                Output::Event(_) => {}
                Output::Wait(_) => break,
            }
        }
        let deadline = node.next_deadline();
        let wake = deadline.map(|d| tokio::time::Instant::from_std(base() + Duration::from_micros(d.as_micros())));
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    let _ = node.handle_input(Input::Datagram { now: core_now(), from: from.into(), data: &mut buf[..n] });
                }
            }
            () = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {
                let _ = node.handle_input(Input::Timeout { now: core_now() });
            }
        }
    }
}

/// Opens `k` more idle sessions; returns how many handshakes failed (and were retried).
async fn hold_more(
    kind: &str,
    addr: SocketAddr,
    k: u64,
    endpoint: Option<&quinn::Endpoint>,
    held: &mut Vec<quinn::Connection>,
) -> u64 {
    let shared = SharedSeed::from_hex(SEED_HEX).expect("seed");
    let mut failed = 0u64;
    let mut done = 0u64;
    let mut inflight = tokio::task::JoinSet::new();
    let mut started = 0u64;
    while done < k {
        while started < k && inflight.len() < SETUP_CONCURRENCY {
            started += 1;
            match kind {
                "stt" => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    tokio::spawn(sans_io_session(addr, shared.clone(), tx));
                    inflight.spawn(async move { rx.await.map_err(|e| e.to_string()).and_then(|r| r).map(|()| None) });
                }
                _ => {
                    let e = endpoint.expect("endpoint").clone();
                    inflight.spawn(async move {
                        match e.connect(addr, "localhost") {
                            Ok(c) => c.await.map(Some).map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        }
                    });
                }
            }
        }
        match inflight.join_next().await.expect("a handshake in flight").expect("task") {
            Ok(conn) => {
                done += 1;
                if let Some(c) = conn {
                    held.push(c);
                }
            }
            Err(e) => {
                failed += 1;
                started -= 1;
                assert!(failed <= 100 + k / 10, "too many failed handshakes; last: {e}");
            }
        }
    }
    failed
}

// ----- the client modes -----

pub(crate) async fn client(kind: &str, addr: SocketAddr, cert: &str, mode: &str, n: u64, per: u64) {
    match mode {
        "hold" => {
            // Commands on stdin (read by a thread so the runtime keeps driving sessions).
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
                std::process::exit(0);
            });
            let endpoint = (kind != "stt").then(|| super::quinn_client_idle(cert, MANY_IDLE_TIMEOUT));
            let mut quinn_held = Vec::new();
            let mut total = 0u64;
            while let Some(line) = rx.recv().await {
                if let Some(k) = line.trim().strip_prefix("add ").and_then(|k| k.parse::<u64>().ok()) {
                    let t = Instant::now();
                    let failed = hold_more(kind, addr, k, endpoint.as_ref(), &mut quinn_held).await;
                    total += k;
                    println!("held {total} {:.1} {failed}", k as f64 / t.elapsed().as_secs_f64());
                    let _ = std::io::stdout().flush();
                }
            }
        }
        "active" => active(kind, addr, cert, n, per).await,
        other => panic!("unknown mode {other}"),
    }
}

/// Prints `connected`, then waits for `go` on stdin (so the parent samples the server
/// around the timed part only).
pub(crate) async fn wait_for_go() {
    println!("connected ok");
    let _ = std::io::stdout().flush();
    tokio::task::spawn_blocking(|| {
        let mut l = String::new();
        let _ = std::io::stdin().read_line(&mut l);
    })
    .await
    .expect("stdin");
}

/// `n` sessions upload `per` bytes each, all at once. Prints `result <aggregate MB/s>
/// <Jain index> <slowest session MB/s> <fastest session MB/s> <seconds>`.
async fn active(kind: &str, addr: SocketAddr, cert: &str, n: u64, per: u64) {
    type Stream = (Writer, super::BoxRead);
    // Set up every session (and its stream) first; hold the nodes / endpoint.
    let mut streams: Vec<Stream> = Vec::new();
    let mut stt_nodes = Vec::new();
    let mut stt_sessions = Vec::new();
    let quinn_ep = (kind != "stt").then(|| super::quinn_client(cert));
    let mut quinn_conns = Vec::new();
    let mut i = 0;
    while i < n {
        let batch = (SETUP_CONCURRENCY as u64).min(n - i);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            match &quinn_ep {
                None => {
                    set.spawn(async move {
                        let node = super::stt_node().await;
                        let s = node.connect(addr, None).await.expect("stt connect");
                        (Some((node, s)), None)
                    });
                }
                Some(e) => {
                    let e = e.clone();
                    set.spawn(async move {
                        let c = e.connect(addr, "localhost").expect("connect").await.expect("quinn connect");
                        (None, Some(c))
                    });
                }
            }
        }
        while let Some(r) = set.join_next().await {
            match r.expect("task") {
                (Some((node, s)), _) => {
                    stt_nodes.push(node);
                    stt_sessions.push(s);
                }
                (_, Some(c)) => quinn_conns.push(c),
                _ => unreachable!(),
            }
        }
        i += batch;
    }
    for s in &stt_sessions {
        let (tx, rx) = s.open_bi().await.expect("open");
        streams.push((Writer::Stt(tx), Box::new(rx)));
    }
    for c in &quinn_conns {
        let (tx, rx) = c.open_bi().await.expect("open");
        streams.push((Writer::Quinn(tx), Box::new(rx)));
    }
    // Each session sends shared `Bytes` (`write_chunk`, both stacks): what is measured is
    // the transport, not the first touch of a fresh copy of all the data in a fresh
    // process. STT_BENCH_ACTIVE_COPY=1 writes through `AsyncWrite` (a copy) instead.
    let copy = std::env::var("STT_BENCH_ACTIVE_COPY").is_ok_and(|v| v == "1");
    wait_for_go().await;
    let chunk = Bytes::from(vec![0xa5u8; super::CHUNK]);
    let start = Arc::new(tokio::sync::Barrier::new(streams.len() + 1));
    let mut set = tokio::task::JoinSet::new();
    for (mut tx, mut rx) in streams {
        let chunk = chunk.clone();
        let start = start.clone();
        set.spawn(async move {
            start.wait().await;
            let t = Instant::now();
            tx.write_all(b"U").await.expect("cmd");
            let mut left = per;
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                if copy {
                    tx.write_all(&chunk[..k]).await.expect("write");
                } else {
                    tx.write_chunk(chunk.slice(..k)).await;
                }
                left -= k as u64;
            }
            tx.shutdown().await.expect("finish");
            let mut count = [0u8; 8];
            rx.read_exact(&mut count).await.expect("count");
            assert_eq!(u64::from_be_bytes(count), per, "server counted every byte");
            t.elapsed().as_secs_f64()
        });
    }
    let t = Instant::now();
    start.wait().await;
    let mut secs = Vec::new();
    while let Some(r) = set.join_next().await {
        secs.push(r.expect("upload"));
    }
    let wall = t.elapsed().as_secs_f64();
    let rates: Vec<f64> = secs.iter().map(|s| per as f64 / s / 1e6).collect();
    let sum: f64 = rates.iter().sum();
    let sq: f64 = rates.iter().map(|r| r * r).sum();
    let jain = sum * sum / (rates.len() as f64 * sq);
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    println!("result {} {jain} {min} {max} {wall}", (n * per) as f64 / wall / 1e6);
    drop((stt_sessions, stt_nodes, quinn_conns, quinn_ep));
}

// ----- the parent -----

/// UDP datagrams the kernel dropped for want of receive-buffer room (this network
/// namespace, all sockets): `RcvbufErrors` of `/proc/net/snmp`.
fn udp_rcvbuf_drops() -> f64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return 0.0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

struct Server {
    proc: ChildProc,
    addr: String,
}

/// What the server reports: RSS KiB, sessions held, CPU seconds.
struct ServerState {
    rss_kib: f64,
    live: i64,
    cpu_s: f64,
    /// stt only: `NodeStats::sessions_visited` and datagrams in + out so far.
    visited: f64,
    datagrams: f64,
}

impl Server {
    fn start(kind: &str, cert: &str) -> Self {
        let mut proc = ChildProc::spawn(&["server", kind, cert, "many"]);
        let addr = proc.read("addr");
        Self { proc, addr }
    }

    fn state(&mut self) -> ServerState {
        let r = self.proc.ask("rss", "rss");
        let f: Vec<f64> = r.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
        ServerState { rss_kib: f[0], live: f[2] as i64, cpu_s: f[3] / 1e9, visited: f[4], datagrams: f[5] + f[6] }
    }

    /// One bulk upload from a fresh client process: (MB/s, server CPU share during it,
    /// UDP receive-buffer drops during it, server CPU ns per byte, stt: sessions the
    /// server's core visited per datagram in or out).
    fn upload(&mut self, kind: &str, cert: &str, bytes: u64) -> (f64, f64, f64, f64, f64) {
        let n = bytes.to_string();
        let mut c = ChildProc::spawn(&["client", kind, cert, &self.addr, "upload_go", &n]);
        c.read("connected");
        let before = self.state();
        let drops = udp_rcvbuf_drops();
        writeln!(c.stdin, "go").expect("client stdin");
        c.stdin.flush().expect("flush");
        let r: Vec<f64> = c.read("result").split_whitespace().map(|v| v.parse().expect("figure")).collect();
        let after = self.state();
        let cpu = after.cpu_s - before.cpu_s;
        let visited = (after.visited - before.visited) / (after.datagrams - before.datagrams).max(1.0);
        (r[0], cpu / r[1], udp_rcvbuf_drops() - drops, cpu * 1e9 / bytes as f64, visited)
    }
}

/// The figures of one transport.
#[derive(Default)]
pub(crate) struct Figures {
    /// Bulk MB/s alone, beside `mid` and beside `many` idle sessions (medians), with the
    /// server's CPU share during those runs.
    pub bulk: [f64; 3],
    pub bulk_cpu: [f64; 3],
    pub bulk_drops: [f64; 3],
    pub bulk_cpu_ns_per_byte: [f64; 3],
    pub bulk_visited: [f64; 3],
    /// Server RSS growth per idle session at `mid` and at `many`, bytes.
    pub idle_bytes: [f64; 2],
    /// Sessions the server reported holding at `many`.
    pub held: i64,
    /// Idle sessions set up per second (holder).
    pub setup_rate: f64,
    /// Aggregate MB/s of `active` sessions, and of one session moving the same total.
    pub aggregate: f64,
    pub single: f64,
    pub jain: f64,
    pub slowest: f64,
    pub fastest: f64,
    /// Server CPU share and UDP receive-buffer drops during the active run (medians).
    pub active_cpu: f64,
    pub active_drops: f64,
    pub single_cpu: f64,
    pub single_drops: f64,
    pub active_client_cpu: f64,
    pub single_client_cpu: f64,
}

pub(crate) struct Plan {
    pub rounds: u64,
    pub bulk_bytes: u64,
    pub mid: u64,
    pub many: u64,
    pub active: u64,
    pub active_bytes: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn measure(kind: &str, cert: &str, plan: &Plan) -> Figures {
    let mut f = Figures::default();
    // No bulk bytes: the idle-session figures alone (memory per idle session, set-up rate).
    let bulk = plan.bulk_bytes > 0;
    if plan.many > 0 && bulk {
        // Bulk alone, on a server that never held idle sessions.
        let mut alone = Server::start(kind, cert);
        let runs: Vec<_> = (0..plan.rounds).map(|_| alone.upload(kind, cert, plan.bulk_bytes)).collect();
        f.bulk[0] = median(runs.iter().map(|r| r.0).collect());
        f.bulk_cpu[0] = median(runs.iter().map(|r| r.1).collect());
        f.bulk_drops[0] = median(runs.iter().map(|r| r.2).collect());
        f.bulk_cpu_ns_per_byte[0] = median(runs.iter().map(|r| r.3).collect());
        f.bulk_visited[0] = median(runs.iter().map(|r| r.4).collect());
        drop(alone);
    }
    if plan.many > 0 {
        // A fresh server: memory before any session, then `mid`, bulk, then `many`, bulk.
        let mut server = Server::start(kind, cert);
        std::thread::sleep(Duration::from_millis(300));
        let rss0 = server.state().rss_kib;
        let mut holder = ChildProc::spawn(&["client", kind, cert, &server.addr, "hold", "0", "0"]);
        let mut rate = Vec::new();
        for (slot, target, prev) in [(1usize, plan.mid, 0u64), (2, plan.many, plan.mid)] {
            let r = holder.ask(&format!("add {}", target - prev), "held");
            let r: Vec<f64> = r.split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
            rate.push(r[1]);
            if r[2] > 0.0 {
                eprintln!("{kind}: {} idle handshakes failed and were retried", r[2]);
            }
            std::thread::sleep(Duration::from_secs(1));
            let st = server.state();
            f.idle_bytes[slot - 1] = (st.rss_kib - rss0) * 1024.0 / target as f64;
            f.held = st.live;
            eprintln!("{kind}: server holds {} sessions, RSS {:.0} KiB (was {rss0:.0})", st.live, st.rss_kib);
            if !bulk {
                continue;
            }
            let runs: Vec<_> = (0..plan.rounds).map(|_| server.upload(kind, cert, plan.bulk_bytes)).collect();
            f.bulk[slot] = median(runs.iter().map(|r| r.0).collect());
            f.bulk_cpu[slot] = median(runs.iter().map(|r| r.1).collect());
            f.bulk_drops[slot] = median(runs.iter().map(|r| r.2).collect());
            f.bulk_cpu_ns_per_byte[slot] = median(runs.iter().map(|r| r.3).collect());
            f.bulk_visited[slot] = median(runs.iter().map(|r| r.4).collect());
        }
        f.setup_rate = median(rate);
        drop(holder);
        drop(server);
    }
    if plan.active > 0 {
        // Returns the client's figures, then the server's CPU share and the drops.
        let run = |n: u64, per: u64| -> Vec<f64> {
            let mut server = Server::start(kind, cert);
            let (n, per) = (n.to_string(), per.to_string());
            let mut c = ChildProc::spawn(&["client", kind, cert, &server.addr, "active", &n, &per]);
            c.read("connected");
            let pid = c.child.id().to_string();
            let before = server.state().cpu_s;
            let client_before = super::cpu_ns(&pid);
            let drops = udp_rcvbuf_drops();
            writeln!(c.stdin, "go").expect("client stdin");
            c.stdin.flush().expect("flush");
            let mut r: Vec<f64> = c.read("result").split_whitespace().map(|v| v.parse().expect("figure")).collect();
            let client_cpu = (super::cpu_ns(&pid) - client_before) as f64 / 1e9;
            let cpu = server.state().cpu_s - before;
            let wall = r[4];
            r.push(cpu / wall);
            r.push(udp_rcvbuf_drops() - drops);
            r.push(client_cpu / wall);
            r
        };
        let mut agg = Vec::new();
        let mut single = Vec::new();
        let mut jain = Vec::new();
        let mut slow = Vec::new();
        let mut fast = Vec::new();
        let (mut cpu, mut drops, mut single_cpu, mut single_drops) = (vec![], vec![], vec![], vec![]);
        let (mut client, mut single_client) = (vec![], vec![]);
        for _ in 0..plan.rounds {
            let r = run(1, plan.active * plan.active_bytes);
            single.push(r[0]);
            single_cpu.push(r[5]);
            single_drops.push(r[6]);
            single_client.push(r[7]);
            let r = run(plan.active, plan.active_bytes);
            agg.push(r[0]);
            jain.push(r[1]);
            slow.push(r[2]);
            fast.push(r[3]);
            cpu.push(r[5]);
            drops.push(r[6]);
            client.push(r[7]);
        }
        f.active_client_cpu = median(client);
        f.single_client_cpu = median(single_client);
        f.active_cpu = median(cpu);
        f.active_drops = median(drops);
        f.single_cpu = median(single_cpu);
        f.single_drops = median(single_drops);
        f.aggregate = median(agg);
        f.single = median(single);
        f.jain = median(jain);
        f.slowest = median(slow);
        f.fastest = median(fast);
    }
    f
}

pub(crate) fn report(plan: &Plan, stt: &Figures, quinn: &Figures) {
    let (mid, many, act) = (plan.mid, plan.many, plan.active);
    println!();
    println!("many sessions (bulk {} MiB; {act} active x {} KiB)", plan.bulk_bytes >> 20, plan.active_bytes >> 10);
    println!("{:<44} {:>12} {:>12}", "figure", "stt", "quinn");
    let row = |name: String, s: f64, q: f64| println!("{name:<44} {s:>12.3} {q:>12.3}");
    let bulk = many > 0 && plan.bulk_bytes > 0;
    if bulk {
        row("bulk MB/s alone".into(), stt.bulk[0], quinn.bulk[0]);
        row(format!("bulk MB/s beside {mid} idle"), stt.bulk[1], quinn.bulk[1]);
        row(format!("bulk MB/s beside {many} idle"), stt.bulk[2], quinn.bulk[2]);
        for (i, label) in ["alone", &format!("{mid} idle"), &format!("{many} idle")].iter().enumerate() {
            row(format!("  server CPU share during bulk, {label}"), stt.bulk_cpu[i], quinn.bulk_cpu[i]);
            row(format!("  UDP rcvbuf drops during bulk, {label}"), stt.bulk_drops[i], quinn.bulk_drops[i]);
            row(
                format!("  server CPU ns per byte, {label}"),
                stt.bulk_cpu_ns_per_byte[i],
                quinn.bulk_cpu_ns_per_byte[i],
            );
            row(format!("  server sessions visited per datagram, {label}"), stt.bulk_visited[i], f64::NAN);
        }
    }
    if many > 0 {
        row(format!("server RSS bytes per idle session at {mid}"), stt.idle_bytes[0], quinn.idle_bytes[0]);
        row(format!("server RSS bytes per idle session at {many}"), stt.idle_bytes[1], quinn.idle_bytes[1]);
        row(format!("sessions the server held at {many}"), stt.held as f64, quinn.held as f64);
        row("idle sessions set up per second".into(), stt.setup_rate, quinn.setup_rate);
    }
    if act > 0 {
        row("single session MB/s (same total)".into(), stt.single, quinn.single);
        row(format!("aggregate MB/s, {act} active"), stt.aggregate, quinn.aggregate);
        row(format!("slowest / fastest session MB/s, {act} active"), stt.slowest, quinn.slowest);
        row(String::new(), stt.fastest, quinn.fastest);
        row(format!("Jain fairness, {act} active"), stt.jain, quinn.jain);
        row("  server CPU share, single".into(), stt.single_cpu, quinn.single_cpu);
        row(format!("  server CPU share, {act} active"), stt.active_cpu, quinn.active_cpu);
        row("  client CPU share, single".into(), stt.single_client_cpu, quinn.single_client_cpu);
        row(format!("  client CPU share, {act} active"), stt.active_client_cpu, quinn.active_client_cpu);
        row("  UDP rcvbuf drops, single".into(), stt.single_drops, quinn.single_drops);
        row(format!("  UDP rcvbuf drops, {act} active"), stt.active_drops, quinn.active_drops);
    }
    println!();
    if bulk {
        for (n, i) in [(mid, 1), (many, 2)] {
            println!("ratio bulk_with_{n}_idle_over_alone {:.3}", stt.bulk[i] / stt.bulk[0]);
            println!("ratio bulk_with_{n}_idle_over_alone_quinn {:.3}", quinn.bulk[i] / quinn.bulk[0]);
            let c = |f: &Figures| f.bulk_cpu_ns_per_byte[i] / f.bulk_cpu_ns_per_byte[0];
            println!("ratio server_cpu_per_byte_with_{n}_idle_over_alone {:.3}", c(stt));
            println!("ratio server_cpu_per_byte_with_{n}_idle_over_alone_quinn {:.3}", c(quinn));
        }
    }
    if act > 0 {
        println!("ratio aggregate_{act}_active_over_single {:.3}", stt.aggregate / stt.single);
        println!("ratio aggregate_{act}_active_over_single_quinn {:.3}", quinn.aggregate / quinn.single);
        println!("ratio fairness_{act}_active {:.3}", stt.jain);
        println!("ratio fairness_{act}_active_quinn {:.3}", quinn.jain);
    }
    if many > 0 {
        println!("bytes idle_session_stt_at_{many} {}", stt.idle_bytes[1].round() as i64);
        println!("bytes idle_session_quinn_at_{many} {}", quinn.idle_bytes[1].round() as i64);
    }
}

/// The sending half of an active session's stream, either stack.
enum Writer {
    Stt(stt_tokio::SendStream),
    Quinn(quinn::SendStream),
}

impl Writer {
    /// Sends `data` without copying it (both stacks take `Bytes` by reference).
    async fn write_chunk(&mut self, data: Bytes) {
        match self {
            Writer::Stt(w) => w.write_chunk(data).await.expect("write"),
            Writer::Quinn(w) => w.write_chunk(data).await.expect("write"),
        }
    }
}

impl tokio::io::AsyncWrite for Writer {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Writer::Stt(w) => std::pin::Pin::new(w).poll_write(cx, buf),
            Writer::Quinn(w) => std::pin::Pin::new(w).poll_write(cx, buf).map_err(std::io::Error::from),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Writer::Stt(w) => std::pin::Pin::new(w).poll_flush(cx),
            Writer::Quinn(w) => std::pin::Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Writer::Stt(w) => std::pin::Pin::new(w).poll_shutdown(cx),
            Writer::Quinn(w) => std::pin::Pin::new(w).poll_shutdown(cx),
        }
    }
}
