//! Sensor readings sent to a named endpoint and kept in BinaryStorage: content-addressed,
//! deduplicated, encrypted at rest under a local key, in a directory that survives restarts.
//!
//! ```sh
//! cargo run -p stt-tokio --example sensor_storage
//! ```

use rand_chacha::rand_core::SeedableRng;
use stt_tokio::{
    Addressing, BinaryStorage, Config, Endpoints, FrameDispatcher, FsStore, Identity, Node, NodeSeed, RandomSeed,
    SharedSeed,
};

const ENDPOINTS: u8 = 0xf0;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let shared = SharedSeed::random();
    let config = Config::default().app_frame_types(&[ENDPOINTS]);
    let lo = "127.0.0.1:0".parse()?;
    let sensor = Node::bind(lo, config.clone(), Identity::new(NodeSeed::random(), shared.clone())).await?;
    let collector = Node::bind(lo, config, Identity::new(NodeSeed::random(), shared)).await?;

    let eps = Endpoints::new(ENDPOINTS);
    let readings = eps.register("readings", 16);
    let serve = eps.clone();
    let c2 = collector.clone();
    tokio::spawn(async move {
        while let Some(s) = c2.accept().await {
            let serve = serve.clone();
            tokio::spawn(async move { serve.serve(s, FrameDispatcher::new()).await });
        }
    });

    let dir = std::env::temp_dir().join(format!("stt-sensor-example-{}", std::process::id()));
    let storage_key = stt_tokio::random_seed_bytes(); // a local key, never the shared seed
    let mut store = BinaryStorage::new(FsStore::open(&dir, Some(64 << 20))?, storage_key, Addressing::Plain);
    let mut rng = rand_chacha::ChaCha20Rng::from_os_rng();

    let session = sensor.connect(collector.local_addr(), Some(collector.node_id())).await?;
    let sender = Endpoints::new(ENDPOINTS);
    for i in 0..50u32 {
        // Every fifth reading repeats: storage deduplicates it.
        let celsius = 20.0 + f64::from(i % 5) * 0.5;
        sender.send(&session, "readings", format!("sensor-1 {celsius:.1}C").as_bytes()).await?;
    }
    let mut addresses = Vec::new();
    for _ in 0..50 {
        let m = readings.recv().await.ok_or("collector stopped")?;
        addresses.push(store.put(&m.body, &mut rng)?);
    }
    let distinct = store.backend().len();
    for a in &addresses {
        let reading = store.get(a)?.ok_or("missing reading")?;
        assert!(reading.starts_with(b"sensor-1 "));
    }
    println!("stored 50 readings as {distinct} distinct encrypted blobs in {}", dir.display());
    assert_eq!(distinct, 5, "repeated readings deduplicated");
    let _ = std::fs::remove_dir_all(&dir);
    session.close(0);
    sensor.shutdown().await;
    collector.shutdown().await;
    Ok(())
}
