//! `stt relay`, and the relay side of `stt listen --relay` / `stt send --relay`: register
//! with a relay, open a session by node id through it, and say whether a session's path is
//! direct or relayed (and when it switches).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use stt_tokio::{Config, Node, NodeId, PathAddr, RelayConfig, Session};

use crate::{identity, parse_id, short, Failure, Result, CLOSE_GRACE};

/// "direct (udp:1.2.3.4:5)" or "relayed".
pub fn path_word(p: PathAddr) -> String {
    if p.is_relayed() {
        "relayed".into()
    } else {
        format!("direct ({p})")
    }
}

/// Prints `<who>path: ...` on stderr whenever the session's path changes, until it ends.
pub fn watch_path(session: &Session, who: String) {
    // The watcher holds a handle: callers close their sessions explicitly when done.
    let session = session.clone();
    tokio::spawn(async move {
        while let Some(p) = session.path_changed().await {
            eprintln!("{who}path: {}", path_word(p));
        }
    });
}

/// Connects to the relay at `relay` (HOST:PORT) and registers; returns the session, which
/// must stay open while the node is reachable through the relay.
pub async fn register(node: &Node, relay: &str) -> Result<Session> {
    let session = tokio::time::timeout(Duration::from_secs(20), node.connect_host(relay, None))
        .await
        .map_err(|_| format!("--relay {relay}: no answer within 20 s"))?
        .map_err(|e| format!("--relay {relay}: {e}"))?;
    let observed = tokio::time::timeout(Duration::from_secs(20), session.register_relay())
        .await
        .map_err(|_| format!("--relay {relay}: no answer to the registration within 20 s"))?
        .map_err(|e| format!("--relay {relay}: {e}"))?;
    match observed {
        Some(a) => eprintln!("registered with relay {relay} (it sees this node at {a})"),
        None => eprintln!("registered with relay {relay}"),
    }
    Ok(session)
}

/// Holds the relay session; when it ends (the relay restarted, the path died), registers
/// again with a growing pause (5 s to 60 s), forever.
pub async fn keep_registered(node: Node, relay: String, mut session: Session) {
    let mut pause = Duration::from_secs(5);
    loop {
        let end = session.closed().await;
        eprintln!("the session with relay {relay} ended ({end}); registering again");
        loop {
            tokio::time::sleep(pause).await;
            match register(&node, &relay).await {
                Ok(s) => {
                    session = s;
                    pause = Duration::from_secs(5);
                    break;
                }
                Err(e) => {
                    pause = (pause * 2).min(Duration::from_secs(60));
                    eprintln!("{e}; next try in {} s", pause.as_secs());
                }
            }
        }
    }
}

/// `stt relay`: forwards between registered members until Ctrl-C.
pub async fn serve(
    bind: SocketAddr,
    shared: &Path,
    node_seed: Option<&Path>,
    members: &[String],
    ws_bind: Option<SocketAddr>,
) -> std::result::Result<(), Failure> {
    let members: Vec<NodeId> = members.iter().map(|s| parse_id(s)).collect::<Result<_>>()?;
    let relay = RelayConfig::default().members((!members.is_empty()).then_some(members));
    let node = Node::bind(bind, Config::default().relay(Some(relay)), identity(shared, node_seed)?)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("relay listening on {} as {} (Ctrl-C to stop)", node.local_addr(), node.node_id());
    if let Some(ws) = ws_bind {
        let at = node
            .listen_ws(ws, None, stt_tokio::WsLimits::default())
            .await
            .map_err(|e| format!("cannot bind --ws-bind {ws}: {e}"))?;
        eprintln!("serving WebSocket at ws://{at}/");
    }
    // Members' sessions are held until they end (a dropped handle closes its session).
    let mut members = tokio::task::JoinSet::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    let mut last = 0;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            s = node.accept() => {
                let Some(session) = s else { break };
                let peer = short(session.peer_node_id());
                eprintln!("{peer}: session ({})", session.remote());
                members.spawn(async move {
                    let end = session.closed().await;
                    eprintln!("{peer}: gone ({end})");
                });
            }
            Some(_) = members.join_next(), if !members.is_empty() => {}
            _ = tick.tick() => {
                let st = node.stats();
                if st.relay_forwarded != last {
                    last = st.relay_forwarded;
                    eprintln!(
                        "forwarded {} datagrams ({} bytes), dropped {}",
                        st.relay_forwarded, st.relay_forwarded_bytes, st.relay_dropped
                    );
                }
            }
        }
    }
    let st = node.stats();
    eprintln!(
        "relay stopping: forwarded {} datagrams ({} bytes), dropped {}, refused {} registration(s)",
        st.relay_forwarded, st.relay_forwarded_bytes, st.relay_dropped, st.relay_refused
    );
    members.shutdown().await;
    let _ = tokio::time::timeout(CLOSE_GRACE, node.shutdown()).await;
    Ok(())
}
