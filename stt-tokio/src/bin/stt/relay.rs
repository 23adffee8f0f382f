//! `stt relay`, and the relay side of `stt listen --relay` / `stt send --relay`: register
//! with a relay, open a session by node id through it, and say whether a session's path is
//! direct or relayed (and when it switches).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use stt_tokio::{CloseReason, Config, Ended, Node, NodeId, PathAddr, RelayConfig, Session};

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
    let port = relay.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
    if port.is_none_or(|p| p.parse::<u16>().is_err()) {
        return Err(format!("--relay {relay}: expected HOST:PORT (the port is missing or not a number)"));
    }
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
/// again with a growing pause (5 s to 60 s), forever; but not when another process with the
/// same node seed took the registration over (the two would take turns for ever).
pub async fn keep_registered(node: Node, relay: String, mut session: Session) {
    let mut pause = Duration::from_secs(5);
    loop {
        let end = session.closed().await;
        if crate::superseded(end) {
            // Registering again would only displace the other process in turn, every few
            // seconds, for ever: leave the registration to it.
            eprintln!(
                "the session with relay {relay} was replaced by a newer one between the same two node ids: \
                 another process is using this node seed (each running node needs its own); not registering \
                 again (this node stays reachable directly; restart it with its own --node-seed)"
            );
            return;
        } else if let Ended::Closed(CloseReason::Remote(code)) = end {
            eprintln!("the session with relay {relay} ended ({}); registering again", crate::wire::words(code));
        } else {
            eprintln!("the session with relay {relay} ended ({end}); registering again");
        }
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
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let terminate = crate::terminated();
    tokio::pin!(terminate);
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    let mut last = 0;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = &mut terminate => break,
            s = node.accept() => {
                let Some(session) = s else { break };
                let peer = short(session.peer_node_id());
                eprintln!("{peer}: session ({})", session.remote());
                members.spawn(member(session, peer, stopping.clone()));
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
    // Every member is told why (not "closed with code 0"), and its close gets out.
    let _ = stop.send(true);
    let _ = tokio::time::timeout(CLOSE_GRACE * 2, async { while members.join_next().await.is_some() {} }).await;
    members.shutdown().await;
    let _ = tokio::time::timeout(CLOSE_GRACE, node.shutdown()).await;
    Ok(())
}

/// Holds a member's session until it ends. A relay receives no files: a session that opens
/// a stream to it is closed with a code that says so, instead of waiting forever for an
/// answer. When the relay stops, the member is told "the relay shut down".
async fn member(session: Session, peer: String, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let refuse = |s: &Session| {
        eprintln!("{peer}: opened a stream to the relay (a file sent to the relay itself?): closing its session");
        s.close_with_reason(crate::wire::NOT_A_RECEIVER, "a file sent to the relay itself");
    };
    loop {
        tokio::select! {
            biased;
            end = session.closed() => {
                eprintln!("{peer}: gone ({end})");
                return;
            }
            _ = stopping.changed() => {
                session.close_with_reason(crate::wire::RELAY_SHUTDOWN, "the relay shut down");
                let _ = tokio::time::timeout(CLOSE_GRACE, session.closed()).await;
                return;
            }
            s = session.accept_bi() => if s.is_some() { refuse(&session) },
            s = session.accept_uni() => if s.is_some() { refuse(&session) },
        }
    }
}
