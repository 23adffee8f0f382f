//! A file-system [`BlobStore`] for `BinaryStorage`: one file per blob under a directory,
//! written atomically (temporary file, fsync, rename, directory fsync) so a crash
//! mid-write leaves either the old state or the whole blob; an index rebuilt by scanning
//! at open; an optional size limit enforced by evicting the least recently used blobs.
//! Paths are built only from an address's hex digits, so no input can steer a write or
//! read outside the directory.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use stt_proto::storage::{Address, BlobStore};

/// A directory of sealed blobs.
/// # Example
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use stt_tokio::{Addressing, BinaryStorage, FsStore, OsEntropy};
/// let dir = std::env::temp_dir().join(format!("stt-fsstore-doc-{}", std::process::id()));
/// // A local storage key (never the shared seed); at most 64 MiB on disk, least recently used evicted.
/// let key = stt_tokio::random_seed_bytes();
/// let mut store = BinaryStorage::new(FsStore::open(&dir, Some(64 << 20))?, key, Addressing::Plain);
/// let addr = store.put(b"sensor-1 21.5C", &mut OsEntropy)?;
/// assert_eq!(store.get(&addr)?.as_deref(), Some(&b"sensor-1 21.5C"[..]));
/// // The same bytes get the same address and are stored once.
/// assert_eq!(store.put(b"sensor-1 21.5C", &mut OsEntropy)?, addr);
/// assert_eq!(store.backend().len(), 1);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub struct FsStore {
    dir: PathBuf,
    index: HashMap<Address, (u64, u64)>,
    total: u64,
    limit: Option<u64>,
    clock: u64,
}

impl FsStore {
    /// Opens (creating if needed) a store in `dir`, rebuilding the index from the files
    /// there and removing temporary files a crash left behind. With `limit`, the total
    /// size of stored blobs is kept at or below it.
    ///
    /// # Errors
    /// I/O errors of the directory.
    pub fn open(dir: impl AsRef<Path>, limit: Option<u64>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(dir.join("tmp"))?;
        // Temporary files of writers that died mid-write (their process is gone, or the
        // file is over an hour old); live writers' files are left alone.
        for e in fs::read_dir(dir.join("tmp"))? {
            let e = e?;
            let name = e.file_name();
            let pid = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<u32>().ok());
            let old =
                e.metadata()?.modified().ok().and_then(|m| m.elapsed().ok()).is_some_and(|age| age.as_secs() > 3600);
            if old || pid.is_none_or(|p| !process_alive(p)) {
                let _ = fs::remove_file(e.path());
            }
        }
        let mut index = HashMap::new();
        let mut total = 0;
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(addr) = name.to_str().and_then(Address::from_hex) else { continue };
            let len = e.metadata()?.len();
            total += len;
            index.insert(addr, (len, 0));
        }
        Ok(Self { dir, index, total, limit, clock: 0 })
    }

    fn path(&self, addr: &Address) -> PathBuf {
        self.dir.join(addr.to_string())
    }

    /// The file holding the sealed blob under `addr`, if it is stored (for streaming
    /// reads; counts as a use for eviction).
    pub fn blob_path(&mut self, addr: &Address) -> Option<PathBuf> {
        if !self.index.contains_key(addr) {
            return None;
        }
        self.touch(addr);
        Some(self.path(addr))
    }

    /// A fresh temporary file name in the store's `tmp/` directory, for a writer that
    /// streams a sealed blob and hands it over with [`FsStore::commit_file`]. A crash
    /// leaves it to the next [`FsStore::open`], which removes it.
    pub fn temp_path(&self) -> PathBuf {
        static TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir.join("tmp").join(format!("{}-{n}.tmp", std::process::id()))
    }

    /// Moves a complete, synced sealed blob from `tmp` (a [`FsStore::temp_path`]) into the
    /// store under `addr` (rename and directory sync: all or nothing). If `addr` is
    /// already stored, `tmp` is removed instead (deduplication).
    ///
    /// # Errors
    /// I/O errors; [`io::ErrorKind::StorageFull`] for a blob over the size limit.
    pub fn commit_file(&mut self, addr: &Address, tmp: &Path) -> io::Result<()> {
        if self.index.contains_key(addr) {
            self.touch(addr);
            return fs::remove_file(tmp);
        }
        let len = fs::metadata(tmp)?.len();
        if self.limit.is_some_and(|l| len > l) {
            let _ = fs::remove_file(tmp);
            return Err(io::Error::new(io::ErrorKind::StorageFull, "blob larger than the store's size limit"));
        }
        self.evict_for(len)?;
        fs::rename(tmp, self.path(addr))?;
        sync_dir(&self.dir)?;
        self.index.insert(*addr, (len, 0));
        self.total += len;
        self.touch(addr);
        Ok(())
    }

    /// Total bytes stored.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn touch(&mut self, addr: &Address) {
        self.clock += 1;
        if let Some(e) = self.index.get_mut(addr) {
            e.1 = self.clock;
        }
    }

    fn evict_for(&mut self, incoming: u64) -> io::Result<()> {
        let Some(limit) = self.limit else { return Ok(()) };
        while self.total + incoming > limit {
            let Some((victim, _)) = self.index.iter().min_by_key(|(_, (_, used))| *used).map(|(a, v)| (*a, *v)) else {
                break;
            };
            self.delete_raw(&victim)?;
        }
        Ok(())
    }
}

/// Whether a process with this id is running (Linux: `/proc`; elsewhere only our own).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    cfg!(target_os = "linux") && Path::new("/proc").join(pid.to_string()).exists()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

impl BlobStore for FsStore {
    type Error = io::Error;

    fn put_raw(&mut self, addr: &Address, sealed: &[u8]) -> io::Result<()> {
        let len = sealed.len() as u64;
        if self.limit.is_some_and(|l| len > l) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "blob larger than the store's size limit"));
        }
        let tmp = self.temp_path();
        let written = File::create(&tmp).and_then(|mut f| f.write_all(sealed).and_then(|()| f.sync_all()));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        if let Some((old, _)) = self.index.remove(addr) {
            self.total -= old;
        }
        self.commit_file(addr, &tmp)
    }

    fn get_raw(&mut self, addr: &Address) -> io::Result<Option<Vec<u8>>> {
        if !self.index.contains_key(addr) {
            return Ok(None);
        }
        self.touch(addr);
        match fs::read(self.path(addr)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn delete_raw(&mut self, addr: &Address) -> io::Result<bool> {
        let Some((len, _)) = self.index.remove(addr) else { return Ok(false) };
        self.total -= len;
        match fs::remove_file(self.path(addr)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn contains(&self, addr: &Address) -> bool {
        self.index.contains_key(addr)
    }

    fn list(&self) -> Vec<Address> {
        self.index.keys().copied().collect()
    }
}
