//! BinaryStorage on the file-system store: dedup, corruption on disk, crash mid-write,
//! index rebuild, LRU eviction.

use std::path::Path;

use rand_chacha::rand_core::SeedableRng;
use stt_tokio::{Address, Addressing, BinaryStorage, FsStore, StorageError};

fn store(dir: &Path, limit: Option<u64>) -> BinaryStorage<FsStore> {
    BinaryStorage::new(FsStore::open(dir, limit).unwrap(), [7; 32], Addressing::Plain)
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("stt-storage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// [SG-5] [SG-6]
#[test]
fn put_get_dedup_delete_and_corruption_on_disk() {
    let dir = tempdir("basic");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let mut s = store(&dir, None);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let a = s.put(&data, &mut rng).unwrap();
    assert_eq!(s.put(&data, &mut rng).unwrap(), a);
    assert_eq!(s.backend().len(), 1, "deduplicated");
    assert_eq!(s.get(&a).unwrap().unwrap(), data);
    // Reopen: the index is rebuilt by scanning.
    drop(s);
    let mut s = store(&dir, None);
    assert_eq!(s.get(&a).unwrap().unwrap(), data);
    // Flip one byte in the file on disk.
    let path = dir.join(a.to_string());
    let mut raw = std::fs::read(&path).unwrap();
    raw[150_000] ^= 0x10;
    std::fs::write(&path, &raw).unwrap();
    assert!(matches!(s.get(&a), Err(StorageError::Corrupt(x)) if x == a));
    assert!(s.delete(&a).unwrap());
    assert!(!path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lru_eviction_keeps_the_size_limit() {
    let dir = tempdir("lru");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
    let mut s = store(&dir, Some(3 * 11_000));
    let blobs: Vec<Vec<u8>> = (0..5u8).map(|k| vec![k; 10_000]).collect();
    let addrs: Vec<Address> = blobs[..3].iter().map(|b| s.put(b, &mut rng).unwrap()).collect();
    // Touch the first so the second is least recently used.
    assert!(s.get(&addrs[0]).unwrap().is_some());
    let a3 = s.put(&blobs[3], &mut rng).unwrap();
    assert!(s.backend().total_bytes() <= 3 * 11_000);
    assert!(s.get(&addrs[1]).unwrap().is_none(), "least recently used evicted");
    assert!(s.get(&addrs[0]).unwrap().is_some());
    assert!(s.get(&a3).unwrap().is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process writing blobs is killed mid-write: the reopened store holds only
/// whole, verifiable blobs and no temporary files.
#[test]
fn crash_mid_write_leaves_only_whole_blobs() {
    if let Ok(dir) = std::env::var("STT_STORAGE_CHILD") {
        // Child: write big blobs until killed.
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let mut s = store(Path::new(&dir), None);
        for k in 0u32.. {
            let data: Vec<u8> = (0..4_000_000u32).map(|i| (i ^ k) as u8).collect();
            s.put(&data, &mut rng).unwrap();
        }
        return;
    }
    let dir = tempdir("crash");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["crash_mid_write_leaves_only_whole_blobs", "--exact", "--nocapture"])
        .env("STT_STORAGE_CHILD", &dir)
        .spawn()
        .unwrap();
    // Let it write a few blobs, then kill it while it is most likely mid-write.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    let _ = child.wait();
    let mut s = store(&dir, None);
    assert!(std::fs::read_dir(dir.join("tmp")).unwrap().next().is_none(), "temporary files removed at open");
    let n = s.backend().len();
    let files: Vec<Address> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str().and_then(Address::from_hex))
        .collect();
    assert_eq!(files.len(), n);
    for a in files {
        let got = s.get(&a).unwrap().expect("indexed");
        assert_eq!(s.address_of(&got), a, "every stored blob is whole and verifies");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two writers (separate store handles, as two processes would have) on one directory:
/// every blob either writer stored is whole and readable afterwards.
#[test]
fn concurrent_writers_on_one_directory() {
    let dir = tempdir("concurrent");
    let handles: Vec<_> = (0..2u8)
        .map(|w| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(w));
                let mut s = store(&dir, None);
                (0..20u8)
                    .map(|k| {
                        // Half the blobs are shared by both writers (the same content).
                        let tag = if k % 2 == 0 { 100 } else { w };
                        s.put(&vec![k ^ tag; 50_000], &mut rng).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let addrs: Vec<Address> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let mut s = store(&dir, None);
    for a in &addrs {
        let data = s.get(a).unwrap().expect("stored");
        assert_eq!(s.address_of(&data), *a);
    }
    assert_eq!(s.backend().len(), 30, "20 + 20 with 10 shared");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Paths come only from addresses: nothing outside the directory is read or indexed.
#[test]
fn no_path_can_steer_outside_the_directory() {
    let dir = tempdir("traversal");
    std::fs::write(dir.join("not-a-blob"), b"junk").unwrap();
    std::fs::write(dir.join("0".repeat(63)), b"junk").unwrap();
    let outside = dir.parent().unwrap().join(format!("stt-outside-{}", std::process::id()));
    std::fs::write(&outside, b"secret").unwrap();
    let mut s = store(&dir, None);
    assert_eq!(s.backend().len(), 0, "only 64-hex-digit names are blobs");
    assert_eq!(Address::from_hex("../../etc/passwd"), None);
    assert_eq!(Address::from_hex(&format!("../{}", "a".repeat(61))), None);
    assert_eq!(s.get(&Address([0xaa; 32])).unwrap(), None);
    let _ = std::fs::remove_file(outside);
    let _ = std::fs::remove_dir_all(&dir);
}

/// #18 item 11: storage and the segment codec need no RNG crate of the application's own.
#[test]
fn os_entropy_serves_storage_without_an_rng_dependency() {
    let mut s = BinaryStorage::new(stt_tokio::MemoryStore::new(), [9; 32], Addressing::Plain);
    let a = s.put(b"content", &mut stt_tokio::OsEntropy).unwrap();
    let b = s.put(b"content", &mut stt_tokio::OsEntropy).unwrap();
    assert_eq!(a, b, "content addressing is independent of the entropy drawn");
    assert_eq!(s.get(&a).unwrap().as_deref(), Some(&b"content"[..]));
}

/// [SG-7] [SG-8] #18 item 11: the async `Storage` over the fs store streams blobs in and out without
/// holding them whole, lists addresses, serves ranges, and reads what `BinaryStorage` wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_on_the_fs_store_streams_lists_and_checks() {
    use stt_tokio::{Storage, StoreError};
    let dir = tempdir("async");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 + (i >> 11)) as u8).collect();
    // Written by the sync BinaryStorage, read by the async Storage (one format).
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
    let a = store(&dir, None).put(b"written by BinaryStorage", &mut rng).unwrap();
    let s = Storage::fs(&dir, None, [7; 32], Addressing::Plain).unwrap();
    assert_eq!(s.get(&a).await.unwrap().unwrap(), b"written by BinaryStorage");
    let b = s.put_reader(&data[..], data.len() as u64).await.unwrap();
    assert_eq!(b, Addressing::Plain.address(&data));
    assert_eq!(s.put_reader(&data[..], data.len() as u64).await.unwrap(), b, "deduplicated");
    let mut list = s.list().await.unwrap();
    list.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(list, want);
    assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0, "no temporary file left");
    let mut out = Vec::new();
    assert_eq!(s.get_to(&b, &mut out).await.unwrap(), Some(data.len() as u64));
    assert!(out == data);
    let r = s.ranges(&b).await.unwrap().unwrap();
    for (off, len) in [(0u64, 1u64), (65_535, 2), (1_000_000, 1_500_000), (2_999_999, 1), (5, 0)] {
        let mut part = Vec::new();
        r.read_to(off, len, &mut part).await.unwrap();
        assert!(part == data[off as usize..(off + len) as usize], "range {off}+{len}");
    }
    assert!(r.read_to(2_999_999, 2, Vec::new()).await.is_err(), "past the end");
    // A short reader stores nothing.
    assert!(matches!(s.put_reader(&data[..100], 101).await, Err(StoreError::Length { .. })));
    assert_eq!(s.list().await.unwrap().len(), 2);
    assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
    // Tampering on disk is an integrity error, streamed or not.
    let path = dir.join(b.to_string());
    let mut raw = std::fs::read(&path).unwrap();
    raw[2_000_000] ^= 4;
    std::fs::write(&path, &raw).unwrap();
    assert!(matches!(s.get(&b).await, Err(StoreError::Integrity(x)) if x == b));
    assert!(matches!(s.get_to(&b, Vec::new()).await, Err(StoreError::Integrity(_))));
    assert!(s.delete(&b).await.unwrap());
    assert_eq!(s.list().await.unwrap(), vec![a]);
    // A put whose future is dropped mid-way (its reader stalls) leaves no temporary file.
    struct Stall;
    impl tokio::io::AsyncRead for Stall {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
    }
    let stalled = tokio::io::AsyncReadExt::chain(&data[..2_000_000], Stall);
    let cut = tokio::time::timeout(std::time::Duration::from_millis(200), s.put_reader(stalled, 3_000_000)).await;
    assert!(cut.is_err(), "the put was still waiting for its reader");
    assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0, "the cancelled put's file is gone");
    assert_eq!(s.list().await.unwrap(), vec![a]);
    let _ = std::fs::remove_dir_all(&dir);
}
