//! Relays over real loopback sockets (spec §12): registration with the reflexive address,
//! a session opened by node id through the relay, a transfer, and the move onto the direct
//! path that punching finds on loopback. No timing asserts (`within` only bounds a hang).

use std::time::Duration;

use stt_tokio::{Config, Ended, Identity, Node, NodeSeed, PathAddr, RandomSeed, RelayConfig, RelayError, SharedSeed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn node(shared: &SharedSeed, config: Config) -> Node {
    Node::bind("127.0.0.1:0".parse().unwrap(), config, Identity::new(NodeSeed::random(), shared.clone())).await.unwrap()
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("hung")
}

#[tokio::test]
async fn session_by_node_id_through_a_relay_then_direct() {
    let shared = SharedSeed::random();
    let relay = node(&shared, Config::default().relay(Some(RelayConfig::default()))).await;
    let a = node(&shared, Config::default()).await;
    let b = node(&shared, Config::default()).await;
    // The relay keeps every member's session (dropping a handle closes it).
    let held = tokio::spawn({
        let relay = relay.clone();
        async move {
            let mut v = Vec::new();
            while let Some(s) = relay.accept().await {
                v.push(s);
            }
        }
    });
    let ra = within(a.connect(relay.local_addr(), Some(relay.node_id()))).await.unwrap();
    let rb = within(b.connect(relay.local_addr(), Some(relay.node_id()))).await.unwrap();
    assert_eq!(within(ra.register_relay()).await, Ok(Some(a.local_addr())));
    assert_eq!(within(rb.register_relay()).await, Ok(Some(b.local_addr())));

    let (s, r) = tokio::join!(within(a.connect_via_relay(&ra, b.node_id())), within(b.accept()));
    let (s, r) = (s.unwrap(), r.unwrap());
    assert_eq!(r.peer_node_id(), a.node_id());
    // Loopback has no NAT: punching finds the direct path.
    let direct = within(async {
        loop {
            if !s.is_relayed() {
                break s.remote();
            }
            s.path_changed().await.unwrap();
        }
    })
    .await;
    assert_eq!(direct, PathAddr::Udp(b.local_addr()));
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7) as u8).collect();
    let mut w = s.open_uni().await.unwrap();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.finish().await.unwrap();
        data
    });
    let mut rx = within(r.accept_uni()).await.unwrap();
    let mut got = Vec::new();
    within(rx.read_to_end(&mut got)).await.unwrap();
    assert!(got == writer.await.unwrap());
    assert!(relay.stats().relay_forwarded >= 4, "the handshake went through the relay");
    held.abort();
}

#[tokio::test]
async fn a_plain_node_refuses_to_relay() {
    let shared = SharedSeed::random();
    let plain = node(&shared, Config::default()).await;
    let a = node(&shared, Config::default()).await;
    let (s, _keep) = tokio::join!(a.connect(plain.local_addr(), None), plain.accept());
    let s = s.unwrap();
    assert_eq!(within(s.register_relay()).await, Err(RelayError::Refused));
    let e = a.connect_via_relay(&s, stt_tokio::NodeId([9; 32])).await.unwrap_err();
    assert_eq!(e.0, Ended::NoRelay);
}
