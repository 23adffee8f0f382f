//! Peer-to-peer messaging: three nodes, each with an "inbox" endpoint; every node
//! connects to the others and greets them; one broadcast reaches everyone.
//!
//! ```sh
//! cargo run -p stt-tokio --example p2p_messaging
//! ```

use std::time::Duration;

use stt_tokio::{Config, Endpoints, FrameDispatcher, Identity, Node, NodeSeed, RandomSeed, SharedSeed};

const ENDPOINTS: u8 = 0xf0;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = SharedSeed::random();
    let config = Config::default().app_frame_types(&[ENDPOINTS]);
    let mut nodes = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..3 {
        let node =
            Node::bind("127.0.0.1:0".parse()?, config.clone(), Identity::new(NodeSeed::random(), shared.clone()))
                .await?;
        let eps = Endpoints::new(ENDPOINTS);
        inboxes.push(eps.register("inbox", 32));
        let (n, e) = (node.clone(), eps.clone());
        tokio::spawn(async move {
            while let Some(s) = n.accept().await {
                let e = e.clone();
                tokio::spawn(async move { e.serve(s, FrameDispatcher::new()).await });
            }
        });
        nodes.push((node, eps));
    }
    // Node 0 greets 1 and 2 directly, then broadcasts to everyone it is connected to.
    // A session lives as long as a handle on it: keep them (dropping the last closes it).
    let (n0, e0) = &nodes[0];
    let mut sessions = Vec::new();
    for (peer, _) in &nodes[1..] {
        let s = n0.connect(peer.local_addr(), Some(peer.node_id())).await?;
        e0.send(&s, "inbox", format!("hello {}", &peer.node_id().to_string()[..8]).as_bytes()).await?;
        sessions.push(s);
    }
    let sent = e0.send_to_all(n0, "inbox", b"broadcast: meeting at noon").await?;
    println!("broadcast went out on {} sessions", sent.len());
    for (i, inbox) in inboxes.iter().enumerate().skip(1) {
        for _ in 0..2 {
            let m = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await?.ok_or("inbox closed")?;
            println!("node {i} got {:?} from {}", String::from_utf8_lossy(&m.body), &m.from.to_string()[..8]);
        }
    }
    for (n, _) in &nodes {
        n.shutdown().await;
    }
    Ok(())
}
