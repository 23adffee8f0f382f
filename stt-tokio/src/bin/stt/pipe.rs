//! File reading and writing with SHA-256 on a thread of their own, beside the transport
//! (issue #18 item 5).
//!
//! Hashing a file costs about as much CPU as moving it over the transport, and the file
//! system calls of `tokio::fs` each hop through the blocking pool and copy through its own
//! buffer. Here one plain thread per transfer reads (or writes) the file with `std::fs`
//! and hashes the same chunks, while the async task only moves chunks between that thread
//! and the stream. A fixed set of [`DEPTH`] + 1 chunk buffers circulates between the two
//! sides, so the steady state allocates nothing, and the queue between them is bounded.

use std::io::{self, Read, Write};
use std::sync::mpsc as std_mpsc;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// Bytes per chunk.
pub const CHUNK: usize = 256 * 1024;
/// Chunks queued between the file thread and the transfer.
const DEPTH: usize = 4;

/// A chunk buffer ([`CHUNK`] bytes long, never shortened, so that reusing it writes nothing)
/// and how many of its bytes are data; it derefs to the data.
pub struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Reads a file (or stdin) on a thread of its own and hashes what it reads.
pub struct HashingReader {
    chunks: mpsc::Receiver<io::Result<Chunk>>,
    free: std_mpsc::SyncSender<Vec<u8>>,
    done: oneshot::Receiver<Option<Sha256>>,
}

impl HashingReader {
    /// Starts reading `input` from its current position, at most `limit` bytes, feeding
    /// them to `hasher` (which may already hold a resumed prefix; `None`: no digest).
    pub fn spawn(mut input: Box<dyn Read + Send>, limit: u64, mut hasher: Option<Sha256>) -> io::Result<Self> {
        let (chunk_tx, chunks) = mpsc::channel(DEPTH);
        let (free, free_rx) = std_mpsc::sync_channel::<Vec<u8>>(DEPTH + 1);
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new().name("stt-read".into()).spawn(move || {
            let mut left = limit;
            while left > 0 {
                let mut buf = free_rx.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
                let want = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
                let n = match input.read(&mut buf[..want]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = chunk_tx.blocking_send(Err(e));
                        return;
                    }
                };
                if let Some(h) = hasher.as_mut() {
                    h.update(&buf[..n]);
                }
                left -= n as u64;
                if chunk_tx.blocking_send(Ok(Chunk { buf, len: n })).is_err() {
                    return; // the transfer stopped
                }
            }
            let _ = done_tx.send(hasher);
        })?;
        Ok(Self { chunks, free, done })
    }

    /// The next chunk; `None` at the end of the input.
    pub async fn next(&mut self) -> Option<io::Result<Chunk>> {
        self.chunks.recv().await
    }

    /// Gives a chunk's buffer back for the next read.
    pub fn recycle(&self, chunk: Chunk) {
        let _ = self.free.try_send(chunk.buf);
    }

    /// The hash of everything read (if hashing), once [`HashingReader::next`] returned `None`.
    pub async fn finish(self) -> io::Result<Option<Sha256>> {
        self.done.await.map_err(|_| io::Error::other("the file reader stopped"))
    }
}

/// Writes a file on a thread of its own (or only counts) and hashes what it writes; the
/// file is synced before [`HashingWriter::finish`] returns.
pub struct HashingWriter {
    chunks: mpsc::Sender<Chunk>,
    free: mpsc::Receiver<Vec<u8>>,
    done: oneshot::Receiver<(Option<Sha256>, io::Result<()>)>,
}

impl HashingWriter {
    /// Starts writing to `file` at its current position (`None`: hash and discard), feeding
    /// the bytes to `hasher` (which may already hold a resumed prefix; `None`: no digest).
    pub fn spawn(mut file: Option<std::fs::File>, mut hasher: Option<Sha256>) -> io::Result<Self> {
        let (chunks, mut chunk_rx) = mpsc::channel::<Chunk>(DEPTH);
        let (free_tx, free) = mpsc::channel(DEPTH + 1);
        for _ in 0..=DEPTH {
            let _ = free_tx.try_send(vec![0u8; CHUNK]);
        }
        let (done_tx, done) = oneshot::channel();
        std::thread::Builder::new().name("stt-write".into()).spawn(move || {
            let mut result = Ok(());
            while let Some(chunk) = chunk_rx.blocking_recv() {
                if let Some(h) = hasher.as_mut() {
                    h.update(&*chunk);
                }
                if let Some(f) = file.as_mut() {
                    if let Err(e) = f.write_all(&chunk) {
                        result = Err(e);
                        break;
                    }
                }
                let _ = free_tx.try_send(chunk.buf);
            }
            if result.is_ok() {
                if let Some(f) = file.as_mut() {
                    result = f.sync_all();
                }
            }
            // Dropping `free_tx` (on an error) wakes a transfer waiting for a buffer.
            let _ = done_tx.send((hasher, result));
        })?;
        Ok(Self { chunks, free, done })
    }

    /// A chunk buffer ([`CHUNK`] bytes long, holding old data) to receive into; `None` when the writer
    /// stopped on an error (see [`HashingWriter::finish`]).
    pub async fn buffer(&mut self) -> Option<Vec<u8>> {
        self.free.recv().await
    }

    /// Queues the first `n` bytes of `buf` for writing; false when the writer stopped on an
    /// error (see [`HashingWriter::finish`]).
    pub async fn write(&mut self, buf: Vec<u8>, n: usize) -> bool {
        let len = n.min(buf.len());
        self.chunks.send(Chunk { buf, len }).await.is_ok()
    }

    /// Waits until everything queued is written and synced; the hash of all bytes written
    /// (if hashing) and the first error.
    pub async fn finish(self) -> (Option<Sha256>, io::Result<()>) {
        drop(self.chunks);
        self.done.await.unwrap_or_else(|_| (None, Err(io::Error::other("the file writer stopped"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn reader_hashes_what_it_hands_out_up_to_the_limit() {
        let bytes = data(3 * CHUNK + 1234);
        let limit = 2 * CHUNK as u64 + 7;
        let mut r = HashingReader::spawn(Box::new(io::Cursor::new(bytes.clone())), limit, Some(Sha256::new())).unwrap();
        let mut got = Vec::new();
        while let Some(c) = r.next().await {
            let c = c.unwrap();
            got.extend_from_slice(&c);
            r.recycle(c);
        }
        assert_eq!(got, bytes[..limit as usize]);
        assert_eq!(r.finish().await.unwrap().unwrap().finalize(), Sha256::digest(&got));
        // Without a hasher (`--no-verify`) the same bytes come out and no digest.
        let mut r = HashingReader::spawn(Box::new(io::Cursor::new(bytes.clone())), limit, None).unwrap();
        let mut again = Vec::new();
        while let Some(c) = r.next().await {
            again.extend_from_slice(&c.unwrap());
        }
        assert_eq!(again, got);
        assert!(r.finish().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn reader_reports_a_read_error() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                self.0 -= 1;
                buf[0] = 1;
                Ok(1)
            }
        }
        let mut r = HashingReader::spawn(Box::new(Failing(3)), u64::MAX, Some(Sha256::new())).unwrap();
        let mut n = 0;
        let err = loop {
            match r.next().await.expect("an error before the end") {
                Ok(c) => n += c.len(),
                Err(e) => break e,
            }
        };
        assert_eq!(n, 3);
        assert!(err.to_string().contains("disk on fire"));
        assert!(r.finish().await.is_err(), "no hash after an error");
    }

    #[tokio::test]
    async fn writer_writes_hashes_and_syncs() {
        let dir = std::env::temp_dir().join(format!("stt-pipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out");
        let f = std::fs::File::create(&path).unwrap();
        let mut w = HashingWriter::spawn(Some(f), Some(Sha256::new())).unwrap();
        let bytes = data(5 * CHUNK + 99);
        for part in bytes.chunks(CHUNK / 2 + 3) {
            let mut buf = w.buffer().await.unwrap();
            assert_eq!(buf.len(), CHUNK);
            buf[..part.len()].copy_from_slice(part);
            assert!(w.write(buf, part.len()).await);
        }
        let (h, r) = w.finish().await;
        r.unwrap();
        assert_eq!(h.unwrap().finalize(), Sha256::digest(&bytes));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A write error stops the writer: the transfer sees it at the next buffer or write
    /// instead of writing on into nothing, and `finish` returns the error.
    #[tokio::test]
    async fn writer_stops_on_a_write_error() {
        // A file opened read-only: every write fails.
        let path = std::env::temp_dir().join(format!("stt-pipe-ro-{}", std::process::id()));
        std::fs::write(&path, b"x").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let mut w = HashingWriter::spawn(Some(f), Some(Sha256::new())).unwrap();
        let mut stopped = false;
        for _ in 0..100 {
            let Some(buf) = w.buffer().await else {
                stopped = true;
                break;
            };
            if !w.write(buf, 10).await {
                stopped = true;
                break;
            }
        }
        assert!(stopped, "the writer kept accepting chunks after a write error");
        assert!(w.finish().await.1.is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
