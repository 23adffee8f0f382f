//! BinaryStorage (spec §10.4): content-addressed, deduplicating byte storage, encrypted
//! at rest with the segment codec under a local storage key (never a shared seed).
//!
//! Addresses are SHA3-256 of the plaintext, so equal content is stored once, and anyone
//! who can list addresses learns when two stores hold equal content (and can confirm a
//! guessed content). [`Addressing::Keyed`] hides that: addresses become
//! HMAC-SHA3-256 under a separate address key. Backends implement [`BlobStore`]; this
//! crate ships [`MemoryStore`], `stt-tokio` a crash-safe file-system store.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use hmac::{Hmac, Mac};
use sha3::{Digest, Sha3_256};
use zeroize::Zeroize;

use crate::entropy::{Entropy, EntropyPurpose};
use crate::segment::{SegmentDecoder, SegmentEncoder, SegmentError, SegmentMode, SEGMENT_OVERHEAD};

/// Plaintext bytes per stored segment.
const SEGMENT: u32 = 64 * 1024;

/// A blob's address: 32 bytes, shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address(pub [u8; 32]);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl Address {
    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let s = core::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(Self(out))
    }
}

/// How addresses are computed.
#[derive(Clone)]
pub enum Addressing {
    /// SHA3-256 of the content (reveals equal content; see the module docs).
    Plain,
    /// HMAC-SHA3-256 of the content under this key.
    Keyed([u8; 32]),
}

impl Addressing {
    /// The address of `data`.
    pub fn address(&self, data: &[u8]) -> Address {
        match self {
            Addressing::Plain => Address(Sha3_256::digest(data).into()),
            Addressing::Keyed(k) => {
                let mut m = <Hmac<Sha3_256> as Mac>::new_from_slice(k).expect("HMAC takes any key length");
                m.update(data);
                Address(m.finalize().into_bytes().into())
            }
        }
    }
}

/// Where sealed blobs live.
pub trait BlobStore {
    /// The backend's error.
    type Error: fmt::Debug + fmt::Display;
    /// Stores a sealed blob under `addr` (atomically: all or nothing).
    ///
    /// # Errors
    /// The backend's.
    fn put_raw(&mut self, addr: &Address, sealed: &[u8]) -> Result<(), Self::Error>;
    /// The sealed blob under `addr`.
    ///
    /// # Errors
    /// The backend's.
    fn get_raw(&mut self, addr: &Address) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Removes the blob; whether it existed.
    ///
    /// # Errors
    /// The backend's.
    fn delete_raw(&mut self, addr: &Address) -> Result<bool, Self::Error>;
    /// Whether a blob is stored under `addr`.
    fn contains(&self, addr: &Address) -> bool;
}

/// A storage failure.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError<E> {
    /// The backend failed.
    Backend(E),
    /// The stored bytes do not decrypt, or do not match their address.
    Corrupt(Address),
}

impl<E: fmt::Display> fmt::Display for StorageError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Backend(e) => write!(f, "storage backend: {e}"),
            StorageError::Corrupt(a) => write!(f, "stored blob {a} is corrupt (failed decryption or address check)"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for StorageError<E> {}

/// Content-addressed, encrypted, deduplicating storage over a [`BlobStore`].
pub struct BinaryStorage<B: BlobStore> {
    backend: B,
    key: [u8; 32],
    addressing: Addressing,
}

impl<B: BlobStore> Drop for BinaryStorage<B> {
    fn drop(&mut self) {
        self.key.zeroize();
        if let Addressing::Keyed(k) = &mut self.addressing {
            k.zeroize();
        }
    }
}

impl<B: BlobStore> BinaryStorage<B> {
    /// Storage under a local 32-byte storage key (generate it; never derive it from a shared seed).
    pub fn new(backend: B, storage_key: [u8; 32], addressing: Addressing) -> Self {
        Self { backend, key: storage_key, addressing }
    }

    /// The backend.
    pub fn backend(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The address `data` would have.
    pub fn address_of(&self, data: &[u8]) -> Address {
        self.addressing.address(data)
    }

    /// Stores `data` (once: equal content is deduplicated) and returns its address.
    ///
    /// # Errors
    /// [`StorageError::Backend`].
    pub fn put(&mut self, data: &[u8], entropy: &mut dyn Entropy) -> Result<Address, StorageError<B::Error>> {
        let addr = self.addressing.address(data);
        if self.backend.contains(&addr) {
            return Ok(addr);
        }
        let mut salt = [0u8; 32];
        entropy.fill(EntropyPurpose::StorageSalt, &mut salt);
        let mut enc = SegmentEncoder::new(&self.key, salt, SegmentMode::Bounded(data.len() as u64), SEGMENT)
            .map_err(|_| StorageError::Corrupt(addr))?;
        let segments = data.len().div_ceil(SEGMENT as usize).max(1);
        let mut sealed = Vec::with_capacity(enc.header().len() + data.len() + segments * SEGMENT_OVERHEAD);
        sealed.extend_from_slice(enc.header());
        let mut seg = vec![0u8; SEGMENT as usize + SEGMENT_OVERHEAD];
        let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(SEGMENT as usize).collect() };
        let n = chunks.len();
        for (i, c) in chunks.into_iter().enumerate() {
            let (_, len) = enc.seal(c, i + 1 == n, &mut seg).map_err(|_| StorageError::Corrupt(addr))?;
            sealed.extend_from_slice(&seg[..len]);
        }
        self.backend.put_raw(&addr, &sealed).map_err(StorageError::Backend)?;
        Ok(addr)
    }

    /// The content at `addr`, decrypted and checked against the address.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] if the stored bytes were altered; `Backend` otherwise.
    pub fn get(&mut self, addr: &Address) -> Result<Option<Vec<u8>>, StorageError<B::Error>> {
        let Some(sealed) = self.backend.get_raw(addr).map_err(StorageError::Backend)? else {
            return Ok(None);
        };
        let corrupt = |_: SegmentError| StorageError::Corrupt(*addr);
        let (mut dec, hlen) = SegmentDecoder::new(&self.key, &sealed).map_err(corrupt)?;
        let mut out = Vec::new();
        let mut rest = &sealed[hlen..];
        let mut index = 0;
        let mut buf = vec![0u8; SEGMENT as usize];
        while !rest.is_empty() {
            let take = rest.len().min(SEGMENT as usize + SEGMENT_OVERHEAD);
            dec.push(index, &rest[..take]).map_err(corrupt)?;
            loop {
                let n = dec.read(&mut buf);
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            rest = &rest[take..];
            index += 1;
        }
        dec.finish().map_err(corrupt)?;
        if self.addressing.address(&out) != *addr {
            return Err(StorageError::Corrupt(*addr));
        }
        Ok(Some(out))
    }

    /// Removes the content at `addr`; whether it existed.
    ///
    /// # Errors
    /// [`StorageError::Backend`].
    pub fn delete(&mut self, addr: &Address) -> Result<bool, StorageError<B::Error>> {
        self.backend.delete_raw(addr).map_err(StorageError::Backend)
    }
}

/// An in-memory [`BlobStore`].
#[derive(Default, Debug)]
pub struct MemoryStore {
    blobs: BTreeMap<Address, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Mutable access to a stored sealed blob (for tests that simulate corruption).
    pub fn raw_mut(&mut self, addr: &Address) -> Option<&mut Vec<u8>> {
        self.blobs.get_mut(addr)
    }
}

impl BlobStore for MemoryStore {
    type Error = core::convert::Infallible;

    fn put_raw(&mut self, addr: &Address, sealed: &[u8]) -> Result<(), core::convert::Infallible> {
        self.blobs.insert(*addr, sealed.to_vec());
        Ok(())
    }

    fn get_raw(&mut self, addr: &Address) -> Result<Option<Vec<u8>>, core::convert::Infallible> {
        Ok(self.blobs.get(addr).cloned())
    }

    fn delete_raw(&mut self, addr: &Address) -> Result<bool, core::convert::Infallible> {
        Ok(self.blobs.remove(addr).is_some())
    }

    fn contains(&self, addr: &Address) -> bool {
        self.blobs.contains_key(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn put_get_dedup_delete_and_tamper() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut s = BinaryStorage::new(MemoryStore::new(), [3; 32], Addressing::Plain);
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let a = s.put(&big, &mut rng).unwrap();
        assert_eq!(a, Address(Sha3_256::digest(&big).into()), "plain addressing is SHA3-256");
        assert_eq!(s.put(&big, &mut rng).unwrap(), a);
        assert_eq!(s.backend().len(), 1, "deduplicated");
        assert_eq!(s.get(&a).unwrap().unwrap(), big);
        let empty = s.put(&[], &mut rng).unwrap();
        assert_eq!(s.get(&empty).unwrap().unwrap(), Vec::<u8>::new());
        // Stored bytes are not the plaintext.
        let raw = s.backend().raw_mut(&a).unwrap().clone();
        assert!(!raw.windows(64).any(|w| w == &big[1000..1064]), "encrypted at rest");
        // A flipped byte is detected.
        s.backend().raw_mut(&a).unwrap()[70_000] ^= 1;
        assert!(matches!(s.get(&a), Err(StorageError::Corrupt(x)) if x == a));
        // Truncation is detected.
        let raw_len = s.backend().raw_mut(&a).unwrap().len();
        s.backend().raw_mut(&a).unwrap().truncate(raw_len - 100);
        assert!(matches!(s.get(&a), Err(StorageError::Corrupt(_))));
        assert!(s.delete(&a).unwrap());
        assert_eq!(s.get(&a).unwrap(), None);
        assert!(!s.delete(&a).unwrap());
    }

    #[test]
    fn keyed_addressing_hides_equal_content() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let mut a = BinaryStorage::new(MemoryStore::new(), [3; 32], Addressing::Keyed([1; 32]));
        let mut b = BinaryStorage::new(MemoryStore::new(), [3; 32], Addressing::Keyed([2; 32]));
        let x = a.put(b"same content", &mut rng).unwrap();
        let y = b.put(b"same content", &mut rng).unwrap();
        assert_ne!(x, y);
        assert_ne!(x, Addressing::Plain.address(b"same content"));
        assert_eq!(a.get(&x).unwrap().unwrap(), b"same content");
        // A blob moved to another address fails the address check.
        let raw = a.backend().get_raw(&x).unwrap().unwrap();
        let fake = Address([9; 32]);
        a.backend().put_raw(&fake, &raw).unwrap();
        assert!(matches!(a.get(&fake), Err(StorageError::Corrupt(_))));
        assert_eq!(Address::from_hex(&alloc::format!("{x}")), Some(x));
    }
}
