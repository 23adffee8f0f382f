//! `stt store put|get|ls`, `stt serve-store` and `stt fetch`: BinaryStorage from the command line.
//!
//! The storage key comes from a key file (`--key FILE`, 32 random bytes as hex, made with
//! `stt keygen`, mode 0600): `storage_key = HKDF-SHA256(ikm = file's 32 bytes, info =
//! "stt/1 storage key")`. It is never derived from the shared seed, and the label keeps it
//! apart from any other use of the same bytes. Whoever has the key file can read the store;
//! losing it loses the content.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use stt_tokio::{
    Address, Addressing, BlobServer, Config, Fetcher, Node, NodeId, OpenOptions, ServeLimits, ServePolicy, Storage,
};

use crate::files::{parent_dir, sync_dir, Partial};
use crate::{amount, identity, parse_id, read_seed_text, Failure, Result};

/// Where the store is and how to open it.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// The store: `file:///DIR` or `s3://BUCKET/PREFIX` (S3 credentials and region from the
    /// usual AWS environment variables: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).
    #[arg(long)]
    pub store: String,
    /// The storage key file (`stt keygen --out store.key`; keep it: without it the store cannot be read).
    #[arg(long)]
    pub key: PathBuf,
    /// S3-compatible service URL (MinIO, Ceph, Garage, R2, s3s-fs), e.g. http://127.0.0.1:9000.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Allow a plain-http endpoint that is not on this machine (loopback is always allowed).
    #[arg(long)]
    pub allow_http: bool,
}

/// `stt store …`.
#[derive(Subcommand)]
pub enum StoreCommand {
    /// Store a file; prints its address (64 hex digits). Stored once however often it is put.
    Put {
        #[command(flatten)]
        store: StoreArgs,
        /// The file.
        file: PathBuf,
    },
    /// Write the content at an address to a file (checked in full before it gets its name).
    Get {
        #[command(flatten)]
        store: StoreArgs,
        /// The address (64 hex digits).
        hash: String,
        /// The file to write; refused if it exists, unless --force.
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// List the stored addresses, one per line.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The storage key from a key file.
fn storage_key(path: &Path) -> Result<[u8; 32]> {
    // 64 hex digits, as `stt keygen` writes them (the same parser as addresses).
    let mut ikm = Address::from_hex(read_seed_text(path)?.trim())
        .ok_or_else(|| format!("{}: not a key file (64 hex digits, from `stt keygen`)", path.display()))?
        .0;
    let mut key = [0u8; 32];
    let r = hkdf::Hkdf::<sha2::Sha256>::new(None, &ikm).expand(b"stt/1 storage key", &mut key);
    ikm.fill(0);
    r.map_err(|e| format!("key derivation: {e}"))?;
    Ok(key)
}

async fn open(a: &StoreArgs) -> Result<Storage> {
    let key = storage_key(&a.key)?;
    let options = OpenOptions { endpoint: a.endpoint.clone(), allow_http: a.allow_http, limit: None };
    Storage::open(&a.store, &options, key, Addressing::Plain).await.map_err(|e| format!("{}: {e}", a.store))
}

fn parse_hash(s: &str) -> Result<Address> {
    Address::from_hex(s.trim()).ok_or_else(|| format!("{s}: not an address (64 hex digits)"))
}

pub async fn run(cmd: StoreCommand) -> std::result::Result<(), Failure> {
    match cmd {
        StoreCommand::Put { store, file } => {
            let s = open(&store).await?;
            let t = Instant::now();
            let addr = s.put_file(&file).await.map_err(|e| format!("{}: {e}", file.display()))?;
            let len = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            eprintln!("stored {}", amount(len, t.elapsed().as_secs_f64()));
            println!("{addr}");
            Ok(())
        }
        StoreCommand::Get { store, hash, out, force } => {
            let addr = parse_hash(&hash)?;
            refuse_existing(&out, force)?;
            let s = open(&store).await?;
            let t = Instant::now();
            let (mut partial, file) = partial_for(&out)?;
            let mut file = tokio::fs::File::from_std(file);
            let n = match s.get_to(&addr, &mut file).await {
                Ok(Some(n)) => n,
                Ok(None) => return Err(format!("{addr}: not in {}", store.store).into()),
                Err(e) => return Err(format!("{addr}: {e}").into()),
            };
            publish(&mut partial, file, &out, force).await?;
            eprintln!("wrote {} to {}", amount(n, t.elapsed().as_secs_f64()), out.display());
            Ok(())
        }
        StoreCommand::Ls { store } => {
            let s = open(&store).await?;
            let mut list = s.list().await.map_err(|e| format!("{}: {e}", store.store))?;
            list.sort();
            use std::io::Write;
            let mut o = std::io::stdout().lock();
            for a in list {
                writeln!(o, "{a}").map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

fn refuse_existing(out: &Path, force: bool) -> Result<()> {
    if !force && std::fs::symlink_metadata(out).is_ok() {
        return Err(format!("{} exists; pass --force to replace it", out.display()));
    }
    Ok(())
}

fn partial_for(out: &Path) -> Result<(Partial, std::fs::File)> {
    let base = out.file_name().and_then(|n| n.to_str()).ok_or_else(|| format!("{}: not a file name", out.display()))?;
    Partial::create(&parent_dir(out), base).map_err(|e| format!("cannot create a file next to {}: {e}", out.display()))
}

async fn publish(partial: &mut Partial, file: tokio::fs::File, out: &Path, force: bool) -> Result<()> {
    file.sync_all().await.map_err(|e| format!("{}: {e}", out.display()))?;
    drop(file);
    partial.publish(out, force).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            format!("{} appeared meanwhile; pass --force to replace it", out.display())
        }
        _ => format!("{}: {e}", out.display()),
    })?;
    sync_dir(&parent_dir(out)).map_err(|e| format!("{}: {e}", out.display()))
}

/// `stt serve-store`: serve a store's blobs to peers until Ctrl-C.
pub async fn serve(
    bind: SocketAddr,
    shared: &Path,
    node_seed: Option<&Path>,
    store: &StoreArgs,
    members: &[String],
    expose: &[String],
) -> std::result::Result<(), Failure> {
    let storage = open(store).await?;
    let members: Vec<NodeId> = members.iter().map(|s| parse_id(s)).collect::<Result<_>>()?;
    let expose: Vec<Address> = expose.iter().map(|s| parse_hash(s)).collect::<Result<_>>()?;
    let policy = ServePolicy {
        members: (!members.is_empty()).then(|| members.iter().copied().collect()),
        expose: (!expose.is_empty()).then(|| expose.into_iter().collect()),
    };
    // Non-members are refused at the handshake already; the policy refuses them again per request.
    let config = Config::default().allow_list((!members.is_empty()).then_some(members));
    let node = Node::bind(bind, config, identity(shared, node_seed)?).await.map_err(|e| e.to_string())?;
    eprintln!("serving {} on {} as {} (Ctrl-C to stop)", store.store, node.local_addr(), node.node_id());
    let server = BlobServer::new(storage, policy, ServeLimits::default());
    let mut sessions = tokio::task::JoinSet::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            s = node.accept() => {
                let Some(session) = s else { break };
                eprintln!("peer {} connected", session.peer_node_id());
                sessions.spawn(server.clone().serve_session(session));
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    sessions.shutdown().await;
    node.shutdown().await;
    Ok(())
}

/// `stt fetch`: fetch a blob from peers, verified, into a file or a store.
#[allow(clippy::too_many_arguments)]
pub async fn fetch(
    hash: &str,
    from: &[String],
    shared: &Path,
    node_seed: Option<&Path>,
    out: Option<&Path>,
    force: bool,
    store: Option<&StoreArgs>,
    max_size: u64,
) -> std::result::Result<(), Failure> {
    let addr = parse_hash(hash)?;
    if let Some(o) = out {
        refuse_existing(o, force)?;
    }
    let storage = match store {
        Some(s) => Some(open(s).await?),
        None => None,
    };
    let node = Node::bind(SocketAddr::from(([0, 0, 0, 0], 0)), Config::default(), identity(shared, node_seed)?)
        .await
        .map_err(|e| e.to_string())?;
    let mut peers = Vec::new();
    for f in from {
        let (at, expect) = match f.split_once('@') {
            Some((id, at)) => (at, Some(parse_id(id)?)),
            None => (f.as_str(), None),
        };
        match node.connect_host(at, expect).await {
            Ok(s) => peers.push(s),
            Err(e) => eprintln!("cannot reach {f}: {e}"),
        }
    }
    if peers.is_empty() {
        return Err("no peer reachable".into());
    }
    let fetcher = Fetcher { max_size, ..Fetcher::default() };
    let t = Instant::now();
    let report = match (out, &storage) {
        (Some(o), _) => {
            let (mut partial, file) = partial_for(o)?;
            let tmp = partial_path(&partial);
            drop(file);
            let r = fetcher.fetch_to_file(&peers, &addr, &tmp).await.map_err(|e| format!("{addr}: {e}"))?;
            let file = tokio::fs::File::open(&tmp).await.map_err(|e| e.to_string())?;
            publish(&mut partial, file, o, force).await?;
            if let Some(s) = &storage {
                s.put_file(o).await.map_err(|e| format!("storing {addr}: {e}"))?;
            }
            r
        }
        (None, Some(s)) => {
            let dir = std::env::temp_dir();
            fetcher.fetch_into(&peers, &addr, s, &dir).await.map_err(|e| format!("{addr}: {e}"))?
        }
        (None, None) => return Err("pass --out FILE or --store URL (or both)".into()),
    };
    for p in &report.bad_peers {
        eprintln!("peer {p} served bytes that do not match the address; fetched from the others");
    }
    let mut from: Vec<_> = report.bytes_from.iter().collect();
    from.sort();
    for (p, n) in from {
        eprintln!("  {n} bytes from {p}");
    }
    eprintln!("fetched {addr}: {}", amount(report.size, t.elapsed().as_secs_f64()));
    for p in &peers {
        p.close(0);
    }
    node.shutdown().await;
    Ok(())
}

fn partial_path(p: &Partial) -> PathBuf {
    p.path().to_path_buf()
}

/// For tests of the key derivation.
#[cfg(test)]
mod tests {
    #[test]
    fn storage_key_is_separated_from_the_seed() {
        let dir = std::env::temp_dir().join(format!("stt-storekey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k");
        crate::keygen(&p).unwrap();
        let k = super::storage_key(&p).unwrap();
        let seed = std::fs::read_to_string(&p).unwrap();
        let seed_hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(seed.trim(), seed_hex, "the key is derived, not the file's bytes");
        assert_eq!(super::storage_key(&p).unwrap(), k, "deterministic");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
