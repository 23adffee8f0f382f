//! Heap held per `stt_tokio::Node` (issue #16): a process with many nodes (a test harness,
//! a load generator, a host of several identities) must not pay a receive batch per node.
//! Receive buffers come from a process-wide pool and go back before a driver sleeps; the
//! scratch buffer for datagrams and frames is made on first use. Before, each node held
//! 8 × 64 KiB of driver buffers, 2 × 64 KiB for readers and a 64 KiB scratch buffer from
//! the start (≈ 700 KiB). Memory is counted, never time.

use std::time::Duration;

use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};

mod live_heap;

#[tokio::test]
async fn nodes_share_their_receive_buffers() {
    let shared = SharedSeed::random();
    let bind = || async {
        Node::bind("127.0.0.1:0".parse().unwrap(), Config::default(), Identity::new(NodeSeed::random(), shared.clone()))
            .await
            .expect("bind")
    };
    // A first node and session warm the process-wide parts (the pool, tokio's driver).
    let first = bind().await;
    let peer = bind().await;
    let s = peer.connect(first.local_addr(), None).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = live_heap::live();
    const N: i64 = 32;
    let mut nodes = Vec::new();
    for _ in 0..N {
        let n = bind().await;
        // Every node's driver runs (and receives) at least once: each answers a handshake.
        n.connect(first.local_addr(), None).await.expect("connect");
        nodes.push(n);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let per_node = (live_heap::live() - before) / N;
    println!("heap per node with one session: {per_node} B");
    assert!(per_node < 200 * 1024, "{per_node} B of heap per node (a receive batch alone is 512 KiB)");
    drop((s, nodes));
}
