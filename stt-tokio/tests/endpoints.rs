//! Named endpoints over real loopback sessions.

use std::time::Duration;

use stt_tokio::{Config, Endpoints, FrameDispatcher, Identity, Node, NodeSeed, RandomSeed, SharedSeed};

const EP: u8 = 0xf0;

async fn node(shared: &SharedSeed) -> Node {
    let config = Config::default().app_frame_types(&[EP, 0x80]);
    Node::bind("127.0.0.1:0".parse().unwrap(), config, Identity::new(NodeSeed::random(), shared.clone())).await.unwrap()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f).await.expect("timed out")
}

/// [EP-1] [EP-2]
#[tokio::test]
async fn messages_reach_named_endpoints_in_order() {
    let shared = SharedSeed::random();
    let (a, b, c) = (node(&shared).await, node(&shared).await, node(&shared).await);
    // Each receiving node has its own manager.
    let (eps, eps_c) = (Endpoints::new(EP), Endpoints::new(EP));
    let chat = eps.register("chat", 4);
    let sensor = eps.register("sensor", 4);
    let sensor_c = eps_c.register("sensor", 4);
    for (peer, eps) in [(&b, &eps), (&c, &eps_c)] {
        let peer = peer.clone();
        let eps = eps.clone();
        tokio::spawn(async move {
            while let Some(s) = peer.accept().await {
                let eps = eps.clone();
                tokio::spawn(async move { eps.serve(s, FrameDispatcher::new()).await });
            }
        });
    }
    let sb = within(a.connect(b.local_addr(), Some(b.node_id()))).await.unwrap();
    let _sc = within(a.connect(c.local_addr(), Some(c.node_id()))).await.unwrap();
    let sender = Endpoints::new(EP);
    for i in 0..20u8 {
        sender.send(&sb, "chat", &[i; 10]).await.unwrap();
    }
    sender.send(&sb, "nobody", b"lost").await.unwrap();
    for i in 0..20u8 {
        let m = within(chat.recv()).await.unwrap();
        assert_eq!((m.from, &m.body[..]), (a.node_id(), &[i; 10][..]), "message {i} in order, from a");
    }
    // To all sessions: b's and c's sensor endpoints each get one.
    let results = sender.send_to_all(&a, "sensor", b"21.5C").await.unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, r)| r.is_ok()));
    let m1 = within(sensor.recv()).await.unwrap();
    let m2 = within(sensor_c.recv()).await.unwrap();
    assert_eq!((&m1.body[..], &m2.body[..]), (&b"21.5C"[..], &b"21.5C"[..]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(eps.unknown_dropped(), 1);
    assert!(sender.send(&sb, "", b"x").await.is_err(), "empty names are refused");
}

/// [EP-2] A full endpoint queue holds the sender back; nothing is lost or reordered.
#[tokio::test]
async fn a_full_queue_applies_backpressure() {
    let shared = SharedSeed::random();
    let (a, b) = (node(&shared).await, node(&shared).await);
    let eps = Endpoints::new(EP);
    let slow = eps.register("slow", 1);
    let (bb, e) = (b.clone(), eps.clone());
    tokio::spawn(async move {
        while let Some(s) = bb.accept().await {
            let e = e.clone();
            tokio::spawn(async move { e.serve(s, FrameDispatcher::new()).await });
        }
    });
    let s = within(a.connect(b.local_addr(), None)).await.unwrap();
    let sender = Endpoints::new(EP);
    for i in 0..200u32 {
        sender.send(&s, "slow", &i.to_be_bytes()).await.unwrap();
    }
    // Nobody reads for a while: the queue holds one, the rest wait in the session.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..200u32 {
        let m = within(slow.recv()).await.unwrap();
        assert_eq!(&m.body[..], &i.to_be_bytes(), "in order after the stall");
    }
}
