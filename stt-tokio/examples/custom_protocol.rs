//! A custom binary protocol on application frames: a tiny key-value service where 0x80 is
//! PUT (key length ‖ key ‖ value), 0x81 is GET (key) and 0x82 is the reply. Frames are
//! reliable and ordered among themselves; types the peer did not declare are refused.
//!
//! ```sh
//! cargo run -p stt-tokio --example custom_protocol
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use stt_tokio::{Config, FrameDispatcher, FrameError, Identity, Node, NodeSeed, RandomSeed, SharedSeed};

const PUT: u8 = 0x80;
const GET: u8 = 0x81;
const REPLY: u8 = 0x82;

fn put(key: &str, value: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(key.len() as u8);
    b.put_slice(key.as_bytes());
    b.put_slice(value.as_bytes());
    b.freeze()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = SharedSeed::random();
    let lo = "127.0.0.1:0".parse()?;
    let server = Node::bind(
        lo,
        Config::default().app_frame_types(&[PUT, GET]),
        Identity::new(NodeSeed::random(), shared.clone()),
    )
    .await?;
    let client =
        Node::bind(lo, Config::default().app_frame_types(&[REPLY]), Identity::new(NodeSeed::random(), shared)).await?;

    let srv = server.clone();
    tokio::spawn(async move {
        while let Some(session) = srv.accept().await {
            let table: Arc<Mutex<HashMap<Vec<u8>, Bytes>>> = Arc::default();
            let (t1, t2) = (table.clone(), table.clone());
            let replies = session.clone();
            let (reply_tx, mut reply_rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
            tokio::spawn(async move {
                while let Some(r) = reply_rx.recv().await {
                    let _ = replies.send_frame(REPLY, r).await;
                }
            });
            let dispatcher = FrameDispatcher::new()
                .on(PUT, move |_, body| {
                    let n = usize::from(body[0]);
                    t1.lock().unwrap().insert(body[1..1 + n].to_vec(), body.slice(1 + n..));
                })
                .on(GET, move |_, key| {
                    let value = t2.lock().unwrap().get(key.as_ref()).cloned().unwrap_or_default();
                    let _ = reply_tx.send(value);
                });
            tokio::spawn(dispatcher.run(session));
        }
    });

    let s = client.connect(server.local_addr(), Some(server.node_id())).await?;
    s.send_frame(PUT, put("colour", "teal")).await?;
    s.send_frame(PUT, put("shape", "hexagon")).await?;
    s.send_frame(GET, Bytes::from_static(b"shape")).await?;
    let (ty, value) = tokio::time::timeout(Duration::from_secs(5), s.recv_frame()).await?.ok_or("no reply")?;
    assert_eq!((ty, &value[..]), (REPLY, &b"hexagon"[..]));
    println!("GET shape -> {:?}", String::from_utf8_lossy(&value));
    // The server never declared REPLY, so the client cannot send it one.
    assert_eq!(s.send_frame(REPLY, Bytes::new()).await, Err(FrameError::Undeclared(REPLY)));
    println!("undeclared frame types are refused locally: {}", FrameError::Undeclared(REPLY));
    s.close(0);
    client.shutdown().await;
    server.shutdown().await;
    Ok(())
}
