//! Live media-like streaming: frames sent as unreliable datagrams, each encrypted on its
//! own with the independent-segment codec (a lost frame is a gap, not an error), under a
//! key both sides export from their session.
//!
//! ```sh
//! cargo run -p stt-tokio --example live_media
//! ```

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use stt_proto::segment::{SegmentDecoder, SegmentEncoder, SegmentMode};
use stt_tokio::{Config, Identity, Node, NodeSeed, RandomSeed, SharedSeed};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = SharedSeed::random();
    let lo = "127.0.0.1:0".parse()?;
    let camera = Node::bind(lo, Config::default(), Identity::new(NodeSeed::random(), shared.clone())).await?;
    let viewer = Node::bind(lo, Config::default(), Identity::new(NodeSeed::random(), shared)).await?;
    let (tx, rx) = tokio::join!(camera.connect(viewer.local_addr(), None), viewer.accept());
    let (tx, rx) = (tx?, rx.ok_or("viewer stopped")?);

    // Both sides derive the media key from the session; it never crosses the wire.
    let mut key_tx = [0u8; 32];
    let mut key_rx = [0u8; 32];
    tx.export_keying_material(b"live media", b"v1", &mut key_tx).await?;
    rx.export_keying_material(b"live media", b"v1", &mut key_rx).await?;

    let mut enc = SegmentEncoder::new(&key_tx, stt_tokio::random_seed_bytes(), SegmentMode::Independent, 1000)?;
    let header = Bytes::copy_from_slice(enc.header());
    // The header travels once, reliably (a stream), before the frames.
    let mut hs = tx.open_uni().await?;
    tokio::io::AsyncWriteExt::write_all(&mut hs, &header).await?;
    hs.finish().await?;
    let mut hr = rx.accept_uni().await.ok_or("no header stream")?;
    let mut got_header = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut hr, &mut got_header).await?;
    let (mut dec, _) = SegmentDecoder::new(&key_rx, &got_header)?;

    let frames = 300u64;
    let sender = tokio::spawn(async move {
        for f in 0..frames {
            let pixels = vec![(f % 251) as u8; 900];
            let mut seg = vec![0u8; 900 + 16];
            let (index, n) = enc.seal(&pixels, false, &mut seg).expect("seal");
            let mut d = BytesMut::with_capacity(8 + n);
            d.put_u64(index);
            d.extend_from_slice(&seg[..n]);
            let _ = tx.send_datagram(d.freeze()).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tx
    });
    let mut shown = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while shown < frames {
        let Ok(Some(d)) = tokio::time::timeout_at(deadline, rx.recv_datagram()).await else { break };
        let index = u64::from_be_bytes(d[..8].try_into()?);
        let mut seg = d[8..].to_vec();
        let n = dec.open_independent(index, &mut seg)?;
        assert!(seg[..n].iter().all(|p| *p == (index % 251) as u8), "frame {index} intact");
        shown += 1;
    }
    let tx = sender.await?;
    println!("viewer displayed {shown} of {frames} frames (datagrams may be lost; each frame decrypts alone)");
    tx.close(0);
    camera.shutdown().await;
    viewer.shutdown().await;
    if shown == 0 {
        return Err("no frame arrived".into());
    }
    Ok(())
}
