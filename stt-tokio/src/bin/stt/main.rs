//! `stt`: send files between two machines over STT, and manage seeds.
//!
//! ```text
//! stt keygen --out shared.seed                 # a fresh 32-byte seed (mode 0600)
//! stt id --node-seed node.seed                 # print this node's id
//! stt recv --bind 0.0.0.0:7000 --shared-seed shared.seed --out file
//! stt send --to 192.0.2.7:7000 --shared-seed shared.seed --peer NODE_ID file
//! stt listen --bind 0.0.0.0:7000 --shared-seed shared.seed --out dir/
//! stt demo                                     # two nodes in one process, on loopback
//! stt store put --store file:///var/stt --key store.key FILE   # prints the address
//! stt store get --store s3://bucket/prefix --key store.key HASH --out FILE
//! stt serve-store --bind 0.0.0.0:7100 --shared-seed shared.seed --store URL --key store.key
//! stt fetch HASH --from 192.0.2.7:7100 --from 192.0.2.8:7100 --shared-seed shared.seed --out FILE
//! ```
//!
//! Each file travels over one bidirectional stream: a small header (name, size), the bytes,
//! then the receiver's reply once the file is written, synced and renamed into place. The
//! wire format and the application close codes are defined in [`wire`].
//!
//! Exit codes: 0 success; 1 failure (the message says why); 2 bad command line; 3 the other
//! side cancelled or shut down; 130 interrupted here (Ctrl-C).

mod files;
mod pipe;
mod relay;
mod store;
mod wire;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use stt_tokio::{
    CloseReason, Config, Ended, Identity, Node, NodeId, NodeSeed, RandomSeed, RecvStream, SendStream, Session,
    SharedSeed, StreamClosed,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use files::{check_writable_dir, parent_dir, sanitize_name, sync_dir, Partial};
use wire::{Header, Reply};

use pipe::{HashingReader, HashingWriter, CHUNK};
/// Transfers `stt listen` runs at once over all sessions; more are refused with `BUSY`.
const MAX_IN_FLIGHT: usize = 32;
/// Transfers `stt listen` runs at once per session.
const MAX_PER_SESSION: usize = 8;
/// Time a sender has to deliver the header once it opened a stream.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time the sender waits for the receiver's reply after the last byte was acknowledged
/// (the receiver syncs the file meanwhile).
const REPLY_TIMEOUT: Duration = Duration::from_secs(600);
/// Slowest rate (bytes/s) at which a side is assumed to read and hash a file's first bytes
/// when agreeing on a resume point (a slow disk, a debug build): the exchange's timeouts
/// grow with the bytes to hash, so that a big file can still be resumed.
const MIN_HASH_RATE: u64 = 10_000_000;

/// How long the sender waits for the receiver's resume offer: the receiver first hashes
/// what it holds, at most `size` bytes.
fn offer_timeout(size: u64) -> Duration {
    REPLY_TIMEOUT + Duration::from_secs(size / MIN_HASH_RATE)
}

/// How long the receiver waits for the sender's start offset: the sender first hashes its
/// own first `held` bytes.
fn start_timeout(held: u64) -> Duration {
    HEADER_TIMEOUT + Duration::from_secs(held / MIN_HASH_RATE)
}

/// Time given to a close to reach the peer before the process exits.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(name = "stt", version, about = "Encrypted peer-to-peer file transfer over STT")]
struct Cli {
    /// Print the library's tracing output (debug level) on stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
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
    /// Serve until Ctrl-C: store every incoming file (several at once) in --out.
    Listen {
        /// Address to bind (UDP). Optional with --ws-bind (a WebSocket-only listener).
        #[arg(long, required_unless_present = "ws_bind")]
        bind: Option<SocketAddr>,
        /// The group's shared seed file.
        #[arg(long)]
        shared_seed: PathBuf,
        /// This node's seed file (a random identity if absent).
        #[arg(long)]
        node_seed: Option<PathBuf>,
        /// Accept only these node ids (repeatable).
        #[arg(long = "allow", value_parser = node_id_arg)]
        allow: Vec<String>,
        /// Directory for received files; must exist and be writable. Files keep the sender's
        /// (sanitized) name, or get `NAME-N.ext` if it is taken; nothing is overwritten.
        /// Without --out, files are counted and discarded (and senders are told so).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also (or only) serve STT over WebSocket (ws://) on this TCP address, for networks
        /// that block UDP.
        #[arg(long)]
        ws_bind: Option<SocketAddr>,
        /// Register with this relay (HOST:PORT) so that senders reach this node by its id
        /// (`stt send --relay HOST:PORT --peer ID`), even behind a NAT.
        #[arg(long)]
        relay: Option<String>,
    },
    /// Forward between members behind NATs until Ctrl-C: they register, reach each other
    /// by node id through it, and move to a direct path when hole punching works. The relay
    /// sees node ids, sizes and timing, never content.
    Relay {
        /// Address to bind (UDP); members must be able to reach it.
        #[arg(long)]
        bind: SocketAddr,
        /// The group's shared seed file.
        #[arg(long)]
        shared_seed: PathBuf,
        /// This node's seed file (a random identity if absent).
        #[arg(long)]
        node_seed: Option<PathBuf>,
        /// Relay only for these node ids (repeatable); others are refused.
        #[arg(long = "member", value_parser = node_id_arg)]
        members: Vec<String>,
        /// Also serve members over WebSocket (ws://) on this TCP address.
        #[arg(long)]
        ws_bind: Option<SocketAddr>,
    },
    /// Accept one session, write its file, confirm and exit.
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
        /// The file to write; refused if it exists, unless --force.
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists (only once the whole file arrived and was synced).
        #[arg(long)]
        force: bool,
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
    /// Content-addressed, encrypted storage: put, get and list blobs in a store
    /// (file:///DIR or s3://BUCKET/PREFIX).
    Store {
        #[command(subcommand)]
        cmd: store::StoreCommand,
    },
    /// Serve a store's blobs to peers (the blob fetch protocol) until Ctrl-C.
    ServeStore {
        /// Address to bind (UDP).
        #[arg(long)]
        bind: SocketAddr,
        /// The group's shared seed file.
        #[arg(long)]
        shared_seed: PathBuf,
        /// This node's seed file (a random identity if absent).
        #[arg(long)]
        node_seed: Option<PathBuf>,
        #[command(flatten)]
        store: store::StoreArgs,
        /// Serve only these node ids (repeatable); others are refused at the handshake.
        #[arg(long = "member", value_parser = node_id_arg)]
        members: Vec<String>,
        /// Expose only these addresses (repeatable); others are answered "not found".
        #[arg(long = "expose")]
        expose: Vec<String>,
    },
    /// Fetch a blob from one or several peers running `stt serve-store`, in parallel, every
    /// byte checked against the address; a peer serving wrong bytes is named and skipped.
    Fetch {
        /// The address (64 hex digits).
        hash: String,
        /// A peer: HOST:PORT or NODE_ID@HOST:PORT to pin its identity (repeatable).
        #[arg(long = "from", required = true)]
        from: Vec<String>,
        /// The group's shared seed file.
        #[arg(long)]
        shared_seed: PathBuf,
        /// This node's seed file (a random identity if absent).
        #[arg(long)]
        node_seed: Option<PathBuf>,
        /// Write the content to this file (refused if it exists, unless --force).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
        /// Also (or only) store the content in this store (needs --key).
        #[arg(long, requires = "key")]
        store: Option<String>,
        /// The storage key file for --store.
        #[arg(long)]
        key: Option<PathBuf>,
        /// S3-compatible service URL for an s3:// --store.
        #[arg(long)]
        endpoint: Option<String>,
        /// Allow a plain-http --endpoint that is not on this machine.
        #[arg(long)]
        allow_http: bool,
        /// Refuse blobs larger than this many bytes.
        #[arg(long, default_value_t = 1 << 40)]
        max_size: u64,
    },
    /// Send a file (or `-` for stdin); exits 0 once the receiver confirmed that it wrote and
    /// synced it.
    Send {
        /// The receiver: HOST:PORT over UDP (an address or a name, e.g. localhost:7000) or a
        /// WebSocket URL (ws://HOST:PORT/PATH).
        #[arg(long, required_unless_present = "relay")]
        to: Option<String>,
        /// Reach the receiver by its node id (--peer) through this relay (HOST:PORT) instead.
        #[arg(long, conflicts_with = "to", requires = "peer")]
        relay: Option<String>,
        /// The group's shared seed file.
        #[arg(long)]
        shared_seed: PathBuf,
        /// This node's seed file (a random identity if absent).
        #[arg(long)]
        node_seed: Option<PathBuf>,
        /// Pin the receiver: send only if it proves this node id. Without --peer, any holder
        /// of the shared seed answering at --to gets the file (stt prints whose id it was).
        #[arg(long, value_parser = node_id_arg)]
        peer: Option<String>,
        /// Make the transfer resumable, and continue an earlier interrupted one: the receiver
        /// keeps the partial file of a resumable transfer, offers how much it holds, and this
        /// side continues from there if its own first bytes hash the same (else from the
        /// start). Needs a file (not stdin) and --node-seed (partial files are kept per sender).
        #[arg(long)]
        resume: bool,
        /// Skip the end-to-end SHA-256 of the file on both sides (about a third of the CPU
        /// a transfer costs). Every byte is still authenticated by the session; what is
        /// given up is the check of the stored file against this one. Not with --resume.
        #[arg(long, conflicts_with = "resume")]
        no_verify: bool,
        /// The file to send, or `-`.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.verbose {
        trace::install();
    }
    // One thread runs the node and every transfer (the transport is one driver per node,
    // and files are read, written and hashed on threads of their own, see `pipe`): on a
    // multi-thread runtime the same work is handed between workers with every datagram,
    // which measured 30-40 % slower with 0.2 % of the datagrams dropped at the receiver's
    // socket (docs/performance.md, "Seventh round").
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stt: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(cli.cmd));
    // A read of stdin blocks a thread that cannot be cancelled: do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stt: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cmd: Command) -> std::result::Result<(), Failure> {
    match cmd {
        Command::Keygen { out } => keygen(&out).map_err(Failure::from),
        Command::Id { node_seed } => {
            read_node_seed(&node_seed).map(|s| println!("{}", s.node_id())).map_err(Failure::from)
        }
        Command::Listen { bind, shared_seed, node_seed, allow, out, ws_bind, relay } => {
            listen(bind, &shared_seed, node_seed.as_deref(), &allow, out.as_deref(), ws_bind, relay.as_deref()).await
        }
        Command::Relay { bind, shared_seed, node_seed, members, ws_bind } => {
            relay::serve(bind, &shared_seed, node_seed.as_deref(), &members, ws_bind).await
        }
        Command::Recv { bind, shared_seed, node_seed, out, force } => {
            recv(bind, &shared_seed, node_seed.as_deref(), &out, force).await
        }
        Command::Send { to, relay, shared_seed, node_seed, peer, resume, no_verify, path } => {
            let to = match (&to, &relay) {
                (Some(t), _) => Destination::Direct(t),
                (None, Some(r)) => Destination::Relay(r),
                (None, None) => {
                    return Err(Failure::from("pass --to HOST:PORT or --relay HOST:PORT --peer ID".to_string()))
                }
            };
            send(to, &shared_seed, node_seed.as_deref(), peer.as_deref(), &path, resume, !no_verify).await
        }
        Command::Store { cmd } => store::run(cmd).await,
        Command::ServeStore { bind, shared_seed, node_seed, store, members, expose } => {
            store::serve(bind, &shared_seed, node_seed.as_deref(), &store, &members, &expose).await
        }
        Command::Fetch {
            hash,
            from,
            shared_seed,
            node_seed,
            out,
            force,
            store,
            key,
            endpoint,
            allow_http,
            max_size,
        } => {
            let store = match (store, key) {
                (Some(store), Some(key)) => Some(store::StoreArgs { store, key, endpoint, allow_http }),
                _ => None,
            };
            store::fetch(
                &hash,
                &from,
                &shared_seed,
                node_seed.as_deref(),
                out.as_deref(),
                force,
                store.as_ref(),
                max_size,
            )
            .await
        }
        Command::Demo { size, streams } => demo(size, streams).await.map_err(Failure::from),
    }
}

type Result<T> = std::result::Result<T, String>;

/// Why a command failed; each kind has its own exit code.
#[derive(Debug)]
enum Failure {
    /// A failure here, or the peer refused or could not store the file (exit 1).
    Error(String),
    /// The other side cancelled or shut down (exit 3).
    PeerEnded(String),
    /// Interrupted here by Ctrl-C (exit 130).
    Interrupted(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Error(_) => 1,
            Failure::PeerEnded(_) => 3,
            Failure::Interrupted(_) => 130,
        }
    }
}

impl Failure {
    /// For a resumable transfer cut here or by the other side (whose receiver keeps what it
    /// got), says how to continue.
    fn resume_hint(self, resume: bool) -> Failure {
        const HINT: &str = "; run the same command again to continue where it stopped";
        match self {
            Failure::Interrupted(m) if resume => Failure::Interrupted(m + HINT),
            Failure::PeerEnded(m) if resume => Failure::PeerEnded(m + HINT),
            other => other,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error(m) | Failure::PeerEnded(m) | Failure::Interrupted(m) => f.write_str(m),
        }
    }
}

impl From<String> for Failure {
    fn from(m: String) -> Self {
        Failure::Error(m)
    }
}

impl From<&str> for Failure {
    fn from(m: &str) -> Self {
        Failure::Error(m.into())
    }
}

/// A failure for an application code the peer sent (close, reset, stop or reply status).
fn code_failure(code: u64, detail: &str) -> Failure {
    let words = wire::words(code);
    let msg = if detail.is_empty() { words } else { format!("{words}: {detail}") };
    match code {
        wire::SENDER_CANCELLED | wire::RECEIVER_SHUTDOWN | wire::RELAY_SHUTDOWN => Failure::PeerEnded(msg),
        _ => Failure::Error(msg),
    }
}

/// A session's end in words, with the reason phrase the peer gave, if any.
fn session_failure(session: &Session, end: Ended) -> Failure {
    let f = end_failure(end);
    match session.peer_close_reason() {
        Some(reason) => match f {
            Failure::Error(m) => Failure::Error(format!("{m} ({reason})")),
            Failure::PeerEnded(m) => Failure::PeerEnded(format!("{m} ({reason})")),
            Failure::Interrupted(m) => Failure::Interrupted(m),
        },
        None => f,
    }
}

/// Whether a session was replaced by a newer one between the same two node ids (another
/// process with the same node seed, or a restart).
pub(crate) fn superseded(end: Ended) -> bool {
    matches!(
        end,
        Ended::Closed(
            CloseReason::RemoteTransport(stt_proto::TransportCode::Superseded)
                | CloseReason::LocalTransport(stt_proto::TransportCode::Superseded)
        )
    )
}

/// A session's end in words; never "NoError" for a cut transfer.
fn end_failure(end: Ended) -> Failure {
    match end {
        Ended::Closed(CloseReason::Remote(code)) => code_failure(code, ""),
        Ended::Closed(CloseReason::RemoteTransport(stt_proto::TransportCode::NoError)) => {
            Failure::PeerEnded("the peer closed the session before the transfer finished".into())
        }
        end if superseded(end) => Failure::PeerEnded(
            "the session was replaced by a newer one between the same two node ids: another process \
             is using the same node seed (each running node needs its own), or the peer restarted"
                .into(),
        ),
        Ended::Closed(CloseReason::RelayLost) => Failure::PeerEnded(
            "the relay went away and there was no direct path to the peer (no hole could be punched)".into(),
        ),
        Ended::Closed(CloseReason::IdleTimeout) => {
            Failure::PeerEnded("the peer stopped answering (idle timeout): it went away or the network failed".into())
        }
        // Refused by the peer's allow-list right after the handshake (spec [HS-20], [HS-22]).
        Ended::Closed(CloseReason::RemoteTransport(stt_proto::TransportCode::NotAllowed)) => {
            Failure::Error(end.to_string())
        }
        Ended::Closed(CloseReason::RemoteTransport(c)) => {
            Failure::PeerEnded(format!("the peer closed the session: {c:?}"))
        }
        other => Failure::Error(other.to_string()),
    }
}

/// The application code the peer reset or stopped the stream with, if that is the error.
fn peer_code(closed: Option<StreamClosed>) -> Option<u64> {
    match closed? {
        StreamClosed::Reset(c) | StreamClosed::Stopped(c) => Some(c),
        _ => None,
    }
}

/// Why a stream operation failed, in words. A reset with code 0 means the peer dropped its
/// stream handle without a reason (an interrupted sender does so just before it closes the
/// session with one): the session's close, if it follows within [`CLOSE_GRACE`], says why.
async fn stream_failure(
    session: &Session,
    closed: Option<StreamClosed>,
    e: &(dyn std::fmt::Display + Sync),
    what: &str,
) -> Failure {
    if closed == Some(StreamClosed::Reset(SendStream::DROPPED)) && session.ended().is_none() {
        let _ = tokio::time::timeout(CLOSE_GRACE, session.closed()).await;
    }
    if let Some(end) = session.ended() {
        return session_failure(session, end);
    }
    match peer_code(closed) {
        Some(SendStream::DROPPED) if matches!(closed, Some(StreamClosed::Reset(_))) => {
            Failure::PeerEnded("the peer abandoned the stream before it finished".into())
        }
        Some(code) => code_failure(code, ""),
        None => Failure::Error(format!("{what}: {e}")),
    }
}

fn keygen(out: &Path) -> Result<()> {
    use std::io::Write;
    let mut f = files::create_new(out).map_err(|e| match e.kind() {
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

/// Resolves when the process gets SIGTERM (what `timeout`, `kill` and service managers
/// send): the commands stop on it as on Ctrl-C. Never resolves where there is no SIGTERM.
pub(crate) async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await
}

/// A node id on the command line (checked by clap, so a malformed one is a usage error,
/// exit 2); kept as text for [`parse_id`].
fn node_id_arg(s: &str) -> std::result::Result<String, String> {
    NodeId::from_hex(s).map(|_| s.to_string()).map_err(|e| format!("not a node id (64 hex digits): {e}"))
}

fn parse_id(s: &str) -> Result<NodeId> {
    NodeId::from_hex(s).map_err(|e| format!("node id {s}: {e}"))
}

fn short(id: NodeId) -> String {
    id.to_string()[..12].to_string()
}

/// A progress bar on stderr when it is a terminal (percentage, rate, ETA); hidden otherwise.
fn bar(len: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (pb, template) = match len {
        Some(n) => {
            (ProgressBar::new(n), "{bar:30} {percent:>3}% {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} ")
        }
        None => (ProgressBar::new_spinner(), "{spinner} {bytes} {binary_bytes_per_sec} {elapsed} "),
    };
    pb.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    pb
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// "3000000 bytes in 0.52 s (5.77 MB/s)".
fn amount(bytes: u64, secs: f64) -> String {
    format!("{bytes} bytes in {secs:.2} s ({:.2} MB/s)", bytes as f64 / secs.max(1e-6) / 1e6)
}

/// ", N packets lost (retransmitted)" when the session's stats are available.
async fn losses(session: &Session) -> String {
    match session.stats().await {
        Some(st) => format!(", {} packets lost and retransmitted, rtt {:.1} ms", st.lost, st.rtt.as_secs_f64() * 1e3),
        None => String::new(),
    }
}

/// What the sender learned from a successful transfer.
struct Sent {
    /// Bytes sent by this run (after `resumed_at`).
    bytes: u64,
    /// Where this run started (0 unless resumed).
    resumed_at: u64,
    /// The file's SHA-256 in hex, or `None` for `--no-verify`.
    digest: Option<String>,
    reply: Reply,
}

/// Where `stt send` finds the receiver.
#[derive(Clone, Copy)]
enum Destination<'a> {
    /// `--to`: a UDP address or WebSocket URL.
    Direct(&'a str),
    /// `--relay`: by node id through this relay.
    Relay(&'a str),
}

async fn send(
    to: Destination<'_>,
    shared: &Path,
    node_seed: Option<&Path>,
    peer: Option<&str>,
    path: &Path,
    resume: bool,
    verify: bool,
) -> std::result::Result<(), Failure> {
    if resume && path == Path::new("-") {
        return Err("--resume needs a file, not stdin".into());
    }
    if resume && node_seed.is_none() {
        return Err("--resume needs --node-seed: the receiver keeps partial files per sender identity, and \
                    without a node seed every run is a new identity"
            .into());
    }
    let identity = identity(shared, node_seed)?;
    let expect = peer.map(parse_id).transpose()?;
    let (to, via_relay) = match to {
        Destination::Direct(t) => (t, false),
        Destination::Relay(r) => (r, true),
    };
    let ws = !via_relay && (to.starts_with("ws://") || to.starts_with("wss://"));
    let udp_to: Option<SocketAddr> = if ws || via_relay { None } else { Some(resolve(to).await?) };
    // Open the input first: a missing file fails before any network traffic.
    let (input, size, name): (Input, Option<u64>, String) = if path == Path::new("-") {
        (Input::Stdin, None, String::new())
    } else {
        let f = tokio::fs::File::open(path).await.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let meta = f.metadata().await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if meta.is_dir() {
            return Err(format!("{} is a directory; stt sends one file", path.display()).into());
        }
        let name = path.file_name().and_then(|n| sanitize_name(&n.to_string_lossy())).unwrap_or_default();
        let size = meta.is_file().then_some(meta.len());
        if resume && size.is_none() {
            return Err(format!("--resume needs a regular file; {} is not one", path.display()).into());
        }
        (Input::File(f), size, name)
    };
    let bind: SocketAddr = if udp_to.is_none_or(|a| a.is_ipv4()) { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|_| "bad bind address")?;
    let node = Node::bind(bind, Config::default(), identity).await.map_err(|e| e.to_string())?;
    if expect == Some(node.node_id()) {
        return Err(Failure::Error(
            "--peer is this node's own id: the receiver and the sender use the same --node-seed \
             (each running node needs its own)"
                .into(),
        ));
    }
    // Through a relay, its session must outlive the transfer: it is the relayed path.
    let mut relay_session = None;
    let connect = async {
        match (udp_to, expect) {
            (Some(addr), _) => node.connect(addr, expect).await.map_err(|e| e.to_string()),
            (None, Some(peer)) if via_relay => {
                let r = relay::register(&node, to).await?;
                let s = node.connect_via_relay(&r, peer).await.map_err(|e| {
                    format!("{e} (through the relay: is a node with id {peer} registered there? `stt listen --relay` prints the id it registers)")
                });
                relay_session = Some(r);
                s
            }
            _ => node.connect_ws(to, expect, None).await.map_err(|e| e.to_string()),
        }
    };
    let session = tokio::select! {
        s = connect => s?,
        _ = tokio::signal::ctrl_c() => {
            node.shutdown().await;
            return Err(Failure::Interrupted("interrupted before the receiver answered".into()));
        }
    };
    let id = session.peer_node_id();
    eprintln!("path: {}", relay::path_word(session.remote()));
    relay::watch_path(&session, String::new());
    if expect.is_some() {
        eprintln!("connected to receiver {id}");
    } else {
        eprintln!("connected to receiver {id} (not pinned: pass --peer {id} to accept only this receiver)");
    }
    let start = Instant::now();
    let result = tokio::select! {
        biased;
        r = transfer(&session, input, size, &name, resume, verify) => r,
        // The receiver went away while the input was idle (stdin).
        end = session.closed() => Err(session_failure(&session, end)),
        _ = tokio::signal::ctrl_c() => {
            session.close_with_reason(wire::SENDER_CANCELLED, "interrupted by Ctrl-C");
            let _ = tokio::time::timeout(CLOSE_GRACE, session.closed()).await;
            node.shutdown().await;
            let msg = "interrupted: told the receiver the transfer is cancelled";
            return Err(Failure::Interrupted(msg.into()).resume_hint(resume));
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let lost = losses(&session).await;
    match result {
        Ok(sent) => {
            session.close(wire::DONE);
            let _ = tokio::time::timeout(CLOSE_GRACE, session.closed()).await;
            // Only now the relay: on a relayed path the close above travels through it.
            if let Some(r) = relay_session.as_ref() {
                r.close(0);
            }
            node.shutdown().await;
            let what = if sent.reply.status == wire::DISCARDED {
                "the receiver counted and DISCARDED it (it runs without --out)".to_string()
            } else {
                format!("receiver confirmed: {}", sent.reply.message)
            };
            let resumed = resumed_note(sent.resumed_at);
            let digest = sent.digest.map_or("not verified (--no-verify)".into(), |d| format!("sha-256 {d}"));
            println!("sent {}{resumed}{lost}, {digest}; {what}", amount(sent.bytes, secs));
            Ok(())
        }
        Err(e) => {
            if session.ended().is_none() {
                session.close(wire::FAILED);
                let _ = tokio::time::timeout(CLOSE_GRACE, session.closed()).await;
            }
            node.shutdown().await;
            Err(e.resume_hint(resume))
        }
    }
}

/// `--to HOST:PORT`: an address, or a host name resolved, preferring IPv4 (a receiver bound
/// to `0.0.0.0` does not answer on `::1`, which `localhost` may resolve to first).
async fn resolve(to: &str) -> Result<SocketAddr> {
    if let Ok(addr) = to.parse() {
        return Ok(addr);
    }
    let bad = |why: String| format!("--to {to}: {why} (expected HOST:PORT or ws://HOST:PORT/PATH)");
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(to).await.map_err(|e| bad(e.to_string()))?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| bad("the name resolved to no address".into()))
}

/// What `stt send` reads.
enum Input {
    /// `-`.
    Stdin,
    /// A file (seekable: a resumed transfer starts mid-way).
    File(tokio::fs::File),
}

/// Sends the header and the input over a new bidirectional stream, then waits for the
/// receiver's reply and checks its digest. A resumable transfer first agrees on where to
/// start (see [`wire`]).
async fn transfer(
    session: &Session,
    input: Input,
    size: Option<u64>,
    name: &str,
    resume: bool,
    verify: bool,
) -> std::result::Result<Sent, Failure> {
    // A session established on AUTH_PROOF (spec [HS-22]) can be closed by the receiver
    // (its allow-list, say) before the stream opens: say why it ended, not only that it did.
    let (mut tx, mut rx) = match session.open_bi().await {
        Ok(pair) => pair,
        Err(e) => {
            // The end may still be on its way from the driver: wait a moment for it.
            let end = tokio::time::timeout(Duration::from_secs(1), session.closed()).await;
            return Err(end.map_or_else(|_| format!("cannot open a stream: {e}").into(), end_failure));
        }
    };
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let header = wire::encode_header(&Header { size, name: name.to_string(), resumable: resume, verified: verify });
    // The first send error, with the peer's code when it is a typed stream error.
    let mut send_err: Option<(String, Option<StreamClosed>)> =
        tx.write_all(&header).await.err().map(|e| (e.to_string(), StreamClosed::of(&e)));
    let mut start = 0u64;
    let input: Box<dyn std::io::Read + Send> = match input {
        Input::File(mut f) if resume && send_err.is_none() => {
            let wait = offer_timeout(size.unwrap_or(0));
            let answer = match tokio::time::timeout(wait, wire::read_answer(&mut rx)).await {
                Ok(Ok(a)) => a,
                Ok(Err(wire::WireError::Io(e))) => {
                    return Err(stream_failure(session, StreamClosed::of(&e), &e, "send").await)
                }
                Ok(Err(e)) => return Err(format!("bad answer from the receiver: {e}").into()),
                Err(_) => return Err(format!("no answer from the receiver within {} s", wait.as_secs()).into()),
            };
            let (offset, digest) = match answer {
                wire::Answer::Offer { offset, digest } => (offset, digest),
                wire::Answer::Reply(r) => return Err(code_failure(r.status, &r.message)),
            };
            let total = size.unwrap_or(0);
            start = resume_point(&mut f, offset, &digest, total, &mut hasher, &mut buf)
                .await
                .map_err(|e| format!("cannot read the input: {e}"))?;
            if start > 0 {
                eprintln!("resuming: the receiver already holds {start} of {total} bytes (same SHA-256)");
            } else if offset > 0 {
                eprintln!("the receiver's partial file ({offset} bytes) differs from this file: sending it all again");
            }
            send_err = tx.write_all(&start.to_be_bytes()).await.err().map(|e| (e.to_string(), StreamClosed::of(&e)));
            Box::new(f.into_std().await)
        }
        Input::File(f) => Box::new(f.into_std().await),
        Input::Stdin => Box::new(std::io::stdin()),
    };
    let pb = bar(size);
    pb.set_position(start);
    // Read and hashed on a thread of their own (see `pipe`); never more than announced,
    // even if the file grows meanwhile.
    let limit = size.map_or(u64::MAX, |n| n.saturating_sub(start));
    let mut reader = HashingReader::spawn(input, limit, verify.then_some(hasher))
        .map_err(|e| format!("cannot start reading the input: {e}"))?;
    let mut total = start;
    while send_err.is_none() {
        let chunk = match reader.next().await {
            None => break,
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                tx.reset(wire::SENDER_CANCELLED);
                return Err(format!("cannot read the input: {e}").into());
            }
        };
        if let Err(e) = tx.write_all(&chunk).await {
            send_err = Some((e.to_string(), StreamClosed::of(&e)));
            break;
        }
        total += chunk.len() as u64;
        reader.recycle(chunk);
        pb.set_position(total);
    }
    // `Some(None)`: read to the end without a digest (`--no-verify`).
    let mut digest = None;
    if send_err.is_none() {
        let hasher = reader.finish().await.map_err(|e| format!("cannot read the input: {e}"))?;
        digest = Some(hasher.map(|h| hex(&h.finalize())));
        if let Some(n) = size.filter(|&n| n != total) {
            tx.reset(wire::SENDER_CANCELLED);
            return Err(format!("the file shrank while being sent ({total} of {n} bytes)").into());
        }
        send_err = tx.finish().await.err().map(|e| (e.to_string(), Some(e)));
    }
    pb.finish_and_clear();
    // Whether or not sending failed, the receiver's reply says why.
    let reply = match tokio::time::timeout(REPLY_TIMEOUT, wire::read_reply(&mut rx)).await {
        Ok(Ok(r)) => r,
        Ok(Err(wire::WireError::Io(e))) => {
            return Err(match &send_err {
                Some((text, closed)) => stream_failure(session, *closed, text, "send").await,
                None => stream_failure(session, StreamClosed::of(&e), &e, "send").await,
            });
        }
        Ok(Err(e)) => return Err(format!("bad reply from the receiver: {e}").into()),
        Err(_) => return Err(format!("no reply from the receiver within {} s", REPLY_TIMEOUT.as_secs()).into()),
    };
    // Read on to the reply's end (it comes with the reply) so that dropping `rx` stops
    // nothing: a STOP_SENDING that overtakes the acknowledgement (through a relay, say)
    // would tell the receiver its confirmation may not have arrived.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut rest = [0u8; 64];
        while let Ok(n) = rx.read(&mut rest).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    match (reply.status, digest) {
        (wire::DONE | wire::DISCARDED, None) => {
            Err(format!("send: {}", send_err.map(|e| e.0).unwrap_or_default()).into())
        }
        (wire::DONE, Some(Some(digest))) if hex(&reply.digest) != digest => {
            Err(format!("the receiver stored different bytes (sha-256 {}, sent {digest})", hex(&reply.digest)).into())
        }
        (wire::DONE | wire::DISCARDED, Some(digest)) if send_err.is_none() => {
            Ok(Sent { bytes: total - start, resumed_at: start, digest, reply })
        }
        (wire::DONE | wire::DISCARDED, Some(_)) => {
            Err(format!("send: {}", send_err.map(|e| e.0).unwrap_or_default()).into())
        }
        (code, _) => Err(code_failure(code, &reply.message)),
    }
}

/// Where a resumed transfer starts: `offset` if the input's first `offset` bytes hash to
/// `digest` (they are then in `hasher`, and the input is positioned after them), else 0 (the
/// input is back at its start and `hasher` empty).
async fn resume_point(
    f: &mut tokio::fs::File,
    offset: u64,
    digest: &[u8; 32],
    size: u64,
    hasher: &mut Sha256,
    buf: &mut [u8],
) -> std::io::Result<u64> {
    if offset == 0 || offset > size {
        return Ok(0);
    }
    if hash_prefix(f, offset, hasher, buf).await? == offset && hasher.clone().finalize()[..] == digest[..] {
        return Ok(offset);
    }
    f.seek(std::io::SeekFrom::Start(0)).await?;
    *hasher = Sha256::new();
    Ok(0)
}

/// Feeds up to `n` bytes of `f`, from its current position, into `hasher`; returns how many
/// there were (fewer at the end of the file).
async fn hash_prefix(f: &mut tokio::fs::File, n: u64, hasher: &mut Sha256, buf: &mut [u8]) -> std::io::Result<u64> {
    let mut read = 0u64;
    while read < n {
        let want = buf.len().min(usize::try_from(n - read).unwrap_or(usize::MAX));
        let got = f.read(&mut buf[..want]).await?;
        if got == 0 {
            break;
        }
        hasher.update(&buf[..got]);
        read += got as u64;
    }
    Ok(read)
}

/// ` (resumed at byte N)`, or nothing.
fn resumed_note(at: u64) -> String {
    if at > 0 {
        format!(" (resumed at byte {at})")
    } else {
        String::new()
    }
}

/// Where a receiver puts files.
enum Target {
    /// `stt listen --out DIR`: under the sender's name, never replacing a file.
    Dir(PathBuf),
    /// `stt recv --out FILE`.
    File { path: PathBuf, force: bool },
    /// `stt listen` without `--out`: count and discard.
    Discard,
}

/// One received file.
struct Received {
    /// Bytes received by this run (after `resumed_at`).
    bytes: u64,
    /// Where this run started (0 unless resumed).
    resumed_at: u64,
    secs: f64,
    /// "sha-256 HEX", or that the sender asked for no digest.
    digest: String,
    saved: Option<PathBuf>,
}

/// Refuses a stream: stops the sender and tells it why (best effort, bounded in time).
async fn refuse(tx: &mut SendStream, rx: &mut RecvStream, code: u64, message: &str) {
    rx.stop(code);
    let reply = wire::encode_reply(&Reply { status: code, digest: [0; 32], message: message.into() });
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if tx.write_all(&reply).await.is_ok() {
            let _ = tx.finish().await;
        }
    })
    .await;
}

/// Receives one file from a stream: header, bytes into a partial file, sync, publish, reply.
/// Every failure after the header is reported to the sender in the reply.
async fn receive(
    session: &Session,
    mut tx: SendStream,
    mut rx: RecvStream,
    target: &Target,
    progress: bool,
) -> std::result::Result<Received, Failure> {
    let start = Instant::now();
    let header = match tokio::time::timeout(HEADER_TIMEOUT, wire::read_header(&mut rx)).await {
        Ok(Ok(h)) => h,
        Ok(Err(wire::WireError::Io(e))) => {
            return Err(stream_failure(session, StreamClosed::of(&e), &e, "receive").await)
        }
        Ok(Err(e)) => {
            refuse(&mut tx, &mut rx, wire::REFUSED, &e.to_string()).await;
            return Err(format!("refused a stream: {e}").into());
        }
        Err(_) => {
            refuse(&mut tx, &mut rx, wire::REFUSED, "no header in time").await;
            return Err(format!("refused a stream: no header within {} s", HEADER_TIMEOUT.as_secs()).into());
        }
    };
    let name = sanitize_name(&header.name).unwrap_or_else(|| format!("from-{}", short(session.peer_node_id())));
    if header.resumable && header.size.is_none() {
        refuse(&mut tx, &mut rx, wire::REFUSED, "a resumable transfer needs a known size").await;
        return Err(format!("refused {name}: resumable without a size").into());
    }
    // A resumable transfer's partial file is named after the sender, the name and the size,
    // so that the sender's next try finds it (and nobody else's does).
    let tag = header.resumable.then(|| resume_tag(session.peer_node_id(), &header.name, header.size.unwrap_or(0)));
    let place = match target {
        Target::Dir(dir) => Some((dir.clone(), name.clone())),
        Target::File { path, .. } => {
            Some((parent_dir(path), path.file_name().map_or("received".into(), |n| n.to_string_lossy().into_owned())))
        }
        Target::Discard => None,
    };
    // File system calls run on the blocking pool: the CLI's one runtime thread also runs
    // the node, and a slow disk must not stall every session.
    let mut partial = match place {
        Some((dir, base)) => tokio::task::spawn_blocking(move || {
            let opened = match &tag {
                Some(tag) => Partial::open_resumable(&dir, &base, tag),
                None => Partial::create(&dir, &base).map(|(p, f)| (p, f, 0)),
            };
            opened.map(|(p, f, held)| Some((p, f, held, dir)))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e))),
        None => Ok(None),
    };
    let (mut file, held) = match &mut partial {
        Ok(Some((_, f, held, _))) => {
            (Some(tokio::fs::File::from_std(f.try_clone().map_err(|e| e.to_string())?)), *held)
        }
        Ok(None) => (None, 0),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let msg = format!("{name}: {e}");
            refuse(&mut tx, &mut rx, wire::BUSY, &msg).await;
            return Err(msg.into());
        }
        Err(e) => {
            let msg = format!("cannot create a file for {name}: {e}");
            refuse(&mut tx, &mut rx, wire::FAILED, &msg).await;
            return Err(msg.into());
        }
    };
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    if header.resumable {
        match resume_offer(&mut tx, &mut rx, file.as_mut(), held, header.size.unwrap_or(0), &mut buf).await {
            Ok((start, h)) => {
                total = start;
                hasher = h;
            }
            Err(ResumeError::Io(e)) => {
                let msg = format!("cannot resume {name}: {e}");
                refuse(&mut tx, &mut rx, wire::FAILED, &msg).await;
                return Err(msg.into());
            }
            Err(ResumeError::Start(start, held)) => {
                let msg = format!("{name}: the sender asked to start at {start}, but {held} bytes are held");
                refuse(&mut tx, &mut rx, wire::REFUSED, &msg).await;
                return Err(msg.into());
            }
            Err(ResumeError::Stream(e)) => {
                return Err(stream_failure(session, StreamClosed::of(&e), &e, "receive").await)
            }
        }
    }
    let resumed_at = total;
    let pb = if progress { bar(header.size) } else { ProgressBar::hidden() };
    pb.set_position(total);
    // Written, hashed and synced on a thread of their own (see `pipe`).
    let has_file = file.is_some();
    let file = match file {
        Some(f) => Some(f.into_std().await),
        None => None,
    };
    let mut writer = HashingWriter::spawn(file, header.verified.then_some(hasher))
        .map_err(|e| format!("cannot start writing {name}: {e}"))?;
    // A buffer that is `None` means the writer stopped on an error: `finish` says which.
    while let Some(mut chunk) = writer.buffer().await {
        let n = match rx.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) => return Err(stream_failure(session, StreamClosed::of(&e), &e, "receive").await),
        };
        if n == 0 {
            break;
        }
        total += n as u64;
        if header.size.is_some_and(|s| total > s) {
            refuse(&mut tx, &mut rx, wire::REFUSED, "more bytes than the announced size").await;
            return Err(format!("{name}: the sender sent more bytes than it announced").into());
        }
        if !writer.write(chunk, n).await {
            break;
        }
        pb.set_position(total);
    }
    pb.finish_and_clear();
    let (hasher, written) = writer.finish().await;
    if let Err(e) = written {
        let msg = format!("cannot write {name}: {e}");
        refuse(&mut tx, &mut rx, wire::FAILED, &msg).await;
        return Err(msg.into());
    }
    if let Some(s) = header.size.filter(|&s| s != total) {
        let msg = format!("{name}: the stream ended after {total} of {s} announced bytes");
        refuse(&mut tx, &mut rx, wire::REFUSED, &msg).await;
        return Err(msg.into());
    }
    let digest: [u8; 32] = hasher.map_or([0; 32], |h| h.finalize().into());
    // Written and synced (above), then published under the final name, and the directory synced.
    let stored = match (has_file, std::mem::replace(&mut partial, Ok(None))) {
        (true, Ok(Some((mut p, f, _, dir)))) => {
            let (file_target, unique_name) = match target {
                Target::File { path, force } => (Some((path.clone(), *force)), String::new()),
                _ => (None, name.clone()),
            };
            // On the blocking pool, as the open above (a directory sync can take long).
            let done = tokio::task::spawn_blocking(move || {
                let to = match file_target {
                    Some((path, force)) => p.publish(&path, force).map(|()| path.clone()).map_err(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            std::io::Error::new(
                                e.kind(),
                                format!("{} exists (use --force to replace it)", path.display()),
                            )
                        } else {
                            e
                        }
                    })?,
                    None => p.publish_unique(&dir, &unique_name)?,
                };
                sync_dir(&dir)?;
                drop(f);
                Ok::<_, std::io::Error>(to)
            });
            match done.await.unwrap_or_else(|e| Err(std::io::Error::other(e))) {
                Ok(to) => Some(to),
                Err(e) => {
                    let msg = format!("cannot store {name}: {e}");
                    refuse(&mut tx, &mut rx, wire::FAILED, &msg).await;
                    return Err(msg.into());
                }
            }
        }
        _ => None,
    };
    let (status, message) = match &stored {
        Some(to) => {
            (wire::DONE, format!("stored as {} and synced", to.file_name().unwrap_or_default().to_string_lossy()))
        }
        None => (wire::DISCARDED, "counted and discarded".to_string()),
    };
    let reply = wire::encode_reply(&Reply { status, digest, message });
    let delivered = async {
        tx.write_all(&reply).await?;
        tx.finish().await.map_err(std::io::Error::other)
    };
    let delivered = tokio::time::timeout(REPLY_TIMEOUT, delivered).await;
    // The sender closes with DONE once it read the reply, possibly before our end saw the
    // acknowledgement: that close is the confirmation that the reply arrived.
    let confirmed = matches!(session.ended(), Some(Ended::Closed(CloseReason::Remote(wire::DONE))));
    match delivered {
        Ok(Err(e)) if !confirmed => {
            eprintln!("stt: {name} is stored, but the confirmation may not have reached the sender: {e}")
        }
        Err(_) => eprintln!("stt: {name} is stored, but the sender did not acknowledge the confirmation"),
        _ => {}
    }
    Ok(Received {
        bytes: total - resumed_at,
        resumed_at,
        secs: start.elapsed().as_secs_f64(),
        digest: if header.verified {
            format!("sha-256 {}", hex(&digest))
        } else {
            "not verified (sender's --no-verify)".into()
        },
        saved: stored,
    })
}

/// The tag in a resumable partial file's name: from the sender's node id, the name as sent
/// and the size (16 hex digits of their SHA-256).
fn resume_tag(sender: NodeId, name: &str, size: u64) -> String {
    let mut h = Sha256::new();
    h.update(b"stt resumable partial\0");
    h.update(sender.0);
    h.update(size.to_be_bytes());
    h.update(name.as_bytes());
    hex(&h.finalize()[..8])
}

/// Why the resume exchange failed at the receiver.
enum ResumeError {
    /// Reading or truncating the partial file.
    Io(std::io::Error),
    /// The sender's start is neither 0 nor what is held.
    Start(u64, u64),
    /// The stream failed.
    Stream(std::io::Error),
}

/// The receiver's half of the resume exchange: hashes the `held` bytes of the partial file
/// (none if it is longer than `size`: it is not this file), offers them, reads where the
/// sender starts, and cuts the file there. Returns the start and the hash of the bytes before it.
async fn resume_offer(
    tx: &mut SendStream,
    rx: &mut RecvStream,
    mut file: Option<&mut tokio::fs::File>,
    held: u64,
    size: u64,
    buf: &mut [u8],
) -> std::result::Result<(u64, Sha256), ResumeError> {
    let mut hasher = Sha256::new();
    let mut held = if held > size { 0 } else { held };
    if let Some(f) = file.as_deref_mut() {
        // Hash what is really there (a crash may have left less than the length says).
        f.seek(std::io::SeekFrom::Start(0)).await.map_err(ResumeError::Io)?;
        held = hash_prefix(f, held, &mut hasher, buf).await.map_err(ResumeError::Io)?;
    } else {
        held = 0;
    }
    let offer = wire::encode_offer(held, &hasher.clone().finalize().into());
    tx.write_all(&offer).await.map_err(ResumeError::Stream)?;
    let start = match tokio::time::timeout(start_timeout(held), wire::read_start(rx)).await {
        Ok(Ok(s)) => s,
        Ok(Err(wire::WireError::Io(e))) => return Err(ResumeError::Stream(e)),
        Ok(Err(e)) => return Err(ResumeError::Stream(std::io::Error::other(e.to_string()))),
        Err(_) => return Err(ResumeError::Stream(std::io::Error::other("no start offset in time"))),
    };
    if start != 0 && start != held {
        return Err(ResumeError::Start(start, held));
    }
    if start == 0 {
        hasher = Sha256::new();
    }
    if let Some(f) = file {
        f.set_len(start).await.map_err(ResumeError::Io)?;
        f.seek(std::io::SeekFrom::Start(start)).await.map_err(ResumeError::Io)?;
    }
    Ok((start, hasher))
}

async fn recv(
    bind: SocketAddr,
    shared: &Path,
    node_seed: Option<&Path>,
    out: &Path,
    force: bool,
) -> std::result::Result<(), Failure> {
    // Refuse to start rather than fail after the transfer.
    match std::fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => return Err(format!("--out {} is a directory; give a file name", out.display()).into()),
        Ok(_) if !force => {
            return Err(
                format!("--out {} exists; refusing to overwrite it (use --force to replace it)", out.display()).into()
            )
        }
        _ => {}
    }
    check_writable_dir(&parent_dir(out))?;
    let node = Node::bind(bind, Config::default(), identity(shared, node_seed)?).await.map_err(|e| e.to_string())?;
    eprintln!("listening on {} as {}", node.local_addr(), node.node_id());
    let session = tokio::select! {
        s = node.accept() => s.ok_or("node stopped")?,
        _ = tokio::signal::ctrl_c() => {
            node.shutdown().await;
            return Err(Failure::Interrupted("interrupted before any sender connected".into()));
        }
    };
    eprintln!("session from {}", session.peer_node_id());
    let target = Target::File { path: out.to_path_buf(), force };
    let work = async {
        loop {
            tokio::select! {
                bi = session.accept_bi() => {
                    let (tx, rx) = bi.ok_or_else(|| session_failure(&session, session.ended().unwrap_or(Ended::NodeGone)))?;
                    return receive(&session, tx, rx, &target, true).await;
                }
                uni = session.accept_uni() => {
                    let mut rx = uni.ok_or_else(|| session_failure(&session, session.ended().unwrap_or(Ended::NodeGone)))?;
                    rx.stop(wire::REFUSED);
                    eprintln!("refused a unidirectional stream (stt sends files over bidirectional streams)");
                }
            }
        }
    };
    let result = tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => {
            session.close_with_reason(wire::RECEIVER_SHUTDOWN, "interrupted by Ctrl-C");
            let _ = tokio::time::timeout(CLOSE_GRACE, session.closed()).await;
            node.shutdown().await;
            return Err(Failure::Interrupted(
                "interrupted: told the sender the receiver shut down; nothing was kept (but the partial file of a \
                 resumable transfer, for `stt send --resume`)"
                    .into(),
            ));
        }
    };
    let lost = losses(&session).await;
    if result.is_ok() {
        // The sender closes once it read the confirmation.
        let _ = tokio::time::timeout(CLOSE_GRACE, session.closed()).await;
    } else if session.ended().is_none() {
        session.close(wire::FAILED);
        let _ = tokio::time::timeout(CLOSE_GRACE, session.closed()).await;
    }
    node.shutdown().await;
    let r = result?;
    println!(
        "received {}{lost} into {}, {}",
        amount(r.bytes, r.secs) + &resumed_note(r.resumed_at),
        r.saved.as_deref().unwrap_or(out).display(),
        r.digest
    );
    Ok(())
}

async fn listen(
    bind: Option<SocketAddr>,
    shared: &Path,
    node_seed: Option<&Path>,
    allow: &[String],
    out: Option<&Path>,
    ws_bind: Option<SocketAddr>,
    relay_addr: Option<&str>,
) -> std::result::Result<(), Failure> {
    let allow: Vec<NodeId> = allow.iter().map(|s| parse_id(s)).collect::<Result<_>>()?;
    let target = match out {
        Some(dir) => {
            check_writable_dir(dir).map_err(|e| format!("--out: {e}"))?;
            Target::Dir(dir.to_path_buf())
        }
        None => {
            eprintln!("no --out: incoming files are counted and discarded (senders are told so)");
            Target::Discard
        }
    };
    let config = Config::default().allow_list((!allow.is_empty()).then_some(allow));
    // WebSocket only: the node still needs a UDP socket; a loopback one serves no one else.
    let udp = bind.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let node = Node::bind(udp, config, identity(shared, node_seed)?).await.map_err(|e| e.to_string())?;
    if bind.is_some() {
        eprintln!("listening on {} as {} (Ctrl-C to stop)", node.local_addr(), node.node_id());
    } else {
        eprintln!("listening on WebSocket only as {} (Ctrl-C to stop)", node.node_id());
    }
    if let Some(ws) = ws_bind {
        let at = node
            .listen_ws(ws, None, stt_tokio::WsLimits::default())
            .await
            .map_err(|e| format!("cannot bind --ws-bind {ws}: {e}"))?;
        eprintln!("serving WebSocket at ws://{at}/");
    }
    // Held for the node's lifetime (senders reach this node through it), and registered
    // again whenever it ends.
    let relay_keeper = match relay_addr {
        Some(r) => {
            let s = relay::register(&node, r).await?;
            eprintln!("reachable as {} through relay {r}", node.node_id());
            Some(tokio::spawn(relay::keep_registered(node.clone(), r.to_string(), s)))
        }
        None => None,
    };
    let target = Arc::new(target);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut sessions = tokio::task::JoinSet::new();
    let mut live = std::collections::HashMap::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let terminate = terminated();
    tokio::pin!(terminate);
    let mut why = "stopped by Ctrl-C";
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = &mut terminate => {
                why = "stopped by SIGTERM";
                break;
            }
            s = node.accept() => {
                let Some(session) = s else { break };
                live.insert(session.id(), session.clone());
                sessions.spawn(serve_session(session, target.clone(), slots.clone()));
            }
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                if let Ok(id) = done {
                    live.remove(&id);
                }
            }
        }
    }
    eprintln!("shutting down: telling {} peer(s) the receiver shut down", live.len());
    for s in live.values() {
        s.close_with_reason(wire::RECEIVER_SHUTDOWN, why);
    }
    // Transfers in flight are abandoned; their partial files are removed (those of resumable
    // transfers are kept for the sender's next try).
    sessions.shutdown().await;
    for s in live.values() {
        let _ = tokio::time::timeout(CLOSE_GRACE, s.closed()).await;
    }
    // The relay last: the closes above may need it (a peer on a relayed path).
    if let Some(k) = relay_keeper {
        // Dropping the held session closes it.
        k.abort();
    }
    node.shutdown().await;
    Ok(())
}

/// Serves one session of `stt listen`: each bidirectional stream is a file, handled
/// concurrently (at most [`MAX_PER_SESSION`] here and [`MAX_IN_FLIGHT`] overall; more are
/// refused with `BUSY`), so one unfinished stream never blocks the next.
/// Unidirectional streams are refused with STOP_SENDING(`REFUSED`).
async fn serve_session(
    session: Session,
    target: Arc<Target>,
    slots: Arc<tokio::sync::Semaphore>,
) -> stt_tokio::SessionId {
    let peer = short(session.peer_node_id());
    eprintln!("{peer}: session established (path: {})", relay::path_word(session.remote()));
    relay::watch_path(&session, format!("{peer}: "));
    let mut streams = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            bi = session.accept_bi() => {
                let Some((mut tx, mut rx)) = bi else { break };
                let slot = if streams.len() < MAX_PER_SESSION { slots.clone().try_acquire_owned().ok() } else { None };
                match slot {
                    Some(slot) => {
                        let (session, target, peer) = (session.clone(), target.clone(), peer.clone());
                        streams.spawn(async move {
                            let _slot = slot;
                            match receive(&session, tx, rx, &target, false).await {
                                Ok(r) => {
                                    let to = r.saved.map_or("discarded".into(), |p| format!("saved as {}", p.display()));
                                    println!("{peer}: {}, {}, {to}", amount(r.bytes, r.secs) + &resumed_note(r.resumed_at), r.digest);
                                }
                                Err(e) => eprintln!("{peer}: transfer failed: {e}"),
                            }
                        });
                    }
                    None => {
                        tx.reset(wire::BUSY);
                        rx.stop(wire::BUSY);
                        eprintln!("{peer}: refused a stream: too many transfers at once");
                    }
                }
            }
            uni = session.accept_uni() => {
                let Some(mut rx) = uni else { break };
                rx.stop(wire::REFUSED);
                eprintln!("{peer}: refused a unidirectional stream (stt sends files over bidirectional streams)");
            }
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
    while streams.join_next().await.is_some() {}
    match session.ended() {
        Some(Ended::Closed(CloseReason::Remote(wire::DONE))) | None => {}
        Some(end) => eprintln!("{peer}: session ended: {}", session_failure(&session, end)),
    }
    session.id()
}

/// `-v`: the library's `tracing` events (debug level and above, from the `stt*` crates) on
/// stderr, one line each, without a subscriber dependency.
mod trace {
    use std::fmt::Write;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    struct Stderr {
        next_span: AtomicU64,
    }

    /// One event rendered as `LEVEL target: message key=value ...`.
    struct Line(String);

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                let _ = write!(self.0, " {value:?}");
            } else {
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
    }

    impl Subscriber for Stderr {
        fn enabled(&self, meta: &Metadata<'_>) -> bool {
            *meta.level() <= Level::DEBUG && meta.target().starts_with("stt")
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed).max(1))
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let meta = event.metadata();
            let mut line = Line(format!("{} {}:", meta.level(), meta.target()));
            event.record(&mut line);
            eprintln!("{}", line.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Installs the stderr subscriber for the whole process.
    pub fn install() {
        let _ = tracing::subscriber::set_global_default(Stderr { next_span: AtomicU64::new(1) });
    }
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

    // Bulk transfer over several streams. Hashing (SHA-256) happens outside the timed
    // part: it is slower than the transport.
    let per_stream = (size_mib * (1 << 20) / streams.max(1)) as usize;
    let payloads: Vec<Bytes> = (0..streams)
        .map(|k| {
            Bytes::from(
                (0..per_stream as u32).map(|i| (i ^ k as u32).wrapping_mul(2_654_435_761) as u8).collect::<Vec<u8>>(),
            )
        })
        .collect();
    let mut sent_digests: Vec<String> = payloads.iter().map(|p| hex(&Sha256::digest(p))).collect();
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
    let mut got_digests: Vec<String> = received.iter().map(|v| hex(&Sha256::digest(v))).collect();
    sent_digests.sort();
    got_digests.sort();
    if sent_digests != got_digests {
        return Err("transfer corrupted: digests differ".into());
    }
    let bytes: usize = received.iter().map(Vec::len).sum();
    println!(
        "transfer: {:.1} MiB over {streams} streams in {secs:.2} s = {:.1} MB/s; every stream's SHA-256 verified afterwards",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Resuming a big file: each side hashes the held prefix before the other's timeout
    /// ends (before: the receiver gave the sender 30 s to hash it, so a 20 GiB prefix on a
    /// 200 MB/s disk could never be resumed).
    #[test]
    fn resume_exchange_timeouts_allow_hashing_a_big_prefix() {
        let held = 20u64 << 30;
        let at_200_mb_s = Duration::from_secs(held / 200_000_000);
        assert!(start_timeout(held) > at_200_mb_s, "{:?}", start_timeout(held));
        assert!(offer_timeout(held) > at_200_mb_s, "{:?}", offer_timeout(held));
        // A small file keeps the short bounds.
        assert_eq!(start_timeout(1000), HEADER_TIMEOUT);
        assert_eq!(offer_timeout(1000), REPLY_TIMEOUT);
    }

    /// A cut resumable transfer tells the user how to continue; a refusal or a plain
    /// transfer does not pretend anything was kept.
    #[test]
    fn cut_resumable_transfers_say_how_to_continue() {
        let cut = Failure::Interrupted("interrupted".into()).resume_hint(true);
        assert!(cut.to_string().contains("run the same command again"), "{cut}");
        assert_eq!(cut.exit_code(), 130);
        let gone = Failure::PeerEnded("receiver shut down".into()).resume_hint(true);
        assert!(gone.to_string().contains("run the same command again"), "{gone}");
        assert!(!Failure::Error("refused".into()).resume_hint(true).to_string().contains("again"));
        assert!(!Failure::PeerEnded("x".into()).resume_hint(false).to_string().contains("again"));
    }
}
