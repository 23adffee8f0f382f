//! BinaryStorage (spec §10.4): content-addressed, deduplicating byte storage, encrypted
//! at rest with the segment codec under a local storage key (never a shared seed).
//!
//! Addresses are SHA3-256 of the plaintext, so equal content is stored once, and anyone
//! who can list addresses learns when two stores hold equal content (and can confirm a
//! guessed content). [`Addressing::Keyed`] hides that: addresses become
//! HMAC-SHA3-256 under a separate address key. Backends implement [`BlobStore`]; this
//! crate ships [`MemoryStore`], `stt-tokio` a crash-safe file-system store.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use hmac::{Hmac, Mac};
use sha3::{Digest, Sha3_256};
use zeroize::Zeroize;

use crate::entropy::{Entropy, EntropyPurpose};
use crate::segment::{SegmentDecoder, SegmentEncoder, SegmentError, SegmentHeader, SegmentMode, SEGMENT_OVERHEAD};

/// Plaintext bytes per stored segment (§10.4).
pub const SEGMENT: u32 = 64 * 1024;
/// Length of a stored blob's header (a bounded-mode segment header, §10.1).
pub const HEADER_LEN: usize = SegmentHeader::MAX_LEN;
/// Sealed bytes per full stored segment.
const SEALED_SEGMENT: u64 = SEGMENT as u64 + SEGMENT_OVERHEAD as u64;

/// Number of segments a blob of `len` plaintext bytes is stored in.
fn segments(len: u64) -> u64 {
    len.div_ceil(u64::from(SEGMENT)).max(1)
}

/// The stored (sealed) size of a blob of `len` plaintext bytes.
pub fn sealed_len(len: u64) -> u64 {
    HEADER_LEN as u64 + len + segments(len) * SEGMENT_OVERHEAD as u64
}

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

impl fmt::Debug for Addressing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addressing::Plain => f.write_str("Plain"),
            Addressing::Keyed(_) => f.write_str("Keyed(<address key>)"),
        }
    }
}

impl Addressing {
    /// The address of `data`.
    pub fn address(&self, data: &[u8]) -> Address {
        let mut h = self.hasher();
        h.update(data);
        h.finalize()
    }

    /// An incremental hasher: the address of content fed in pieces.
    pub fn hasher(&self) -> AddressHasher {
        AddressHasher(match self {
            Addressing::Plain => Hasher::Plain(Sha3_256::new()),
            Addressing::Keyed(k) => {
                Hasher::Keyed(<Hmac<Sha3_256> as Mac>::new_from_slice(k).expect("HMAC takes any key length"))
            }
        })
    }
}

/// Computes an [`Address`] over content fed in pieces (see [`Addressing::hasher`]).
#[derive(Clone)]
pub struct AddressHasher(Hasher);

// One lives per blob operation, on the stack; boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Hasher {
    Plain(Sha3_256),
    Keyed(Hmac<Sha3_256>),
}

impl AddressHasher {
    /// Feeds the next piece of content.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Hasher::Plain(h) => Digest::update(h, data),
            Hasher::Keyed(m) => m.update(data),
        }
    }

    /// The address of everything fed.
    pub fn finalize(self) -> Address {
        match self.0 {
            Hasher::Plain(h) => Address(h.finalize().into()),
            Hasher::Keyed(m) => Address(m.finalize().into_bytes().into()),
        }
    }
}

/// Seals a blob of known length piece by piece into the stored format (§10.4), so a
/// backend can store it without holding it whole in memory. The address is known once
/// every byte was fed.
pub struct BlobSealer {
    enc: SegmentEncoder,
    hasher: AddressHasher,
    len: u64,
    fed: u64,
    /// Plaintext of the segment being filled.
    partial: Vec<u8>,
}

impl BlobSealer {
    /// A sealer for `len` bytes of content under `storage_key`, with a fresh salt from `entropy`.
    pub fn new(storage_key: &[u8; 32], addressing: &Addressing, len: u64, entropy: &mut dyn Entropy) -> Self {
        let mut salt = [0u8; 32];
        entropy.fill(EntropyPurpose::StorageSalt, &mut salt);
        let enc = SegmentEncoder::new(storage_key, salt, SegmentMode::Bounded(len), SEGMENT)
            .expect("the stored segment size is valid");
        Self { enc, hasher: addressing.hasher(), len, fed: 0, partial: Vec::new() }
    }

    /// The header, which goes first in the stored blob.
    pub fn header(&self) -> &[u8] {
        self.enc.header()
    }

    fn seal_into(enc: &mut SegmentEncoder, plain: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + plain.len() + SEGMENT_OVERHEAD, 0);
        let (_, n) = enc.seal(plain, false, &mut out[start..]).expect("segment sizes are kept by the sealer");
        out.truncate(start + n);
    }

    /// Feeds the next piece of content; appends the sealed segments it completes to `out`.
    ///
    /// # Errors
    /// [`SegmentError::BadLength`] if the content grows past the declared length.
    pub fn update(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), SegmentError> {
        if self.fed + data.len() as u64 > self.len {
            return Err(SegmentError::BadLength);
        }
        self.fed += data.len() as u64;
        self.hasher.update(data);
        let size = SEGMENT as usize;
        while !data.is_empty() {
            if self.partial.is_empty() && data.len() >= size {
                Self::seal_into(&mut self.enc, &data[..size], out);
                data = &data[size..];
                continue;
            }
            let take = (size - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() == size {
                Self::seal_into(&mut self.enc, &self.partial, out);
                self.partial.clear();
            }
        }
        Ok(())
    }

    /// Ends the content: appends the final segment (if not yet sealed) to `out` and
    /// returns the content's address.
    ///
    /// # Errors
    /// [`SegmentError::BadLength`] if less than the declared length was fed.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<Address, SegmentError> {
        if self.fed != self.len {
            return Err(SegmentError::BadLength);
        }
        if self.len == 0 || !self.partial.is_empty() {
            Self::seal_into(&mut self.enc, &self.partial, out);
        }
        Ok(self.hasher.finalize())
    }
}

/// The stored bytes are not a valid blob for this address (altered, truncated, sealed
/// under another key, or another blob moved here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt;

/// Opens a stored blob piece by piece: every segment is authenticated before its bytes
/// are released, and [`BlobOpener::finish`] checks the whole content against the
/// address. Bytes released before `finish` are authentic under the storage key but
/// belong to the addressed content only once `finish` succeeded: a caller that streams
/// them out must discard them on error.
pub struct BlobOpener {
    key: [u8; 32],
    addr: Address,
    hasher: AddressHasher,
    /// The header while it is incomplete.
    header: Vec<u8>,
    dec: Option<SegmentDecoder>,
    /// Sealed bytes of the segment being filled.
    pending: Vec<u8>,
    index: u64,
    released: u64,
}

impl Drop for BlobOpener {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl BlobOpener {
    /// An opener for the blob stored under `addr`.
    pub fn new(storage_key: &[u8; 32], addressing: &Addressing, addr: Address) -> Self {
        Self {
            key: *storage_key,
            addr,
            hasher: addressing.hasher(),
            header: Vec::new(),
            dec: None,
            pending: Vec::new(),
            index: 0,
            released: 0,
        }
    }

    /// The content's length, once the header was read.
    pub fn content_len(&self) -> Option<u64> {
        match self.dec.as_ref()?.mode() {
            SegmentMode::Bounded(n) => Some(n),
            _ => None,
        }
    }

    fn push_pending(&mut self, out: &mut Vec<u8>) -> Result<(), Corrupt> {
        let dec = self.dec.as_mut().ok_or(Corrupt)?;
        dec.push(self.index, &self.pending).map_err(|_| Corrupt)?;
        self.pending.clear();
        self.index += 1;
        loop {
            let start = out.len();
            out.resize(start + SEGMENT as usize, 0);
            let n = dec.read(&mut out[start..]);
            out.truncate(start + n);
            if n == 0 {
                return Ok(());
            }
            self.hasher.update(&out[start..]);
            self.released += n as u64;
        }
    }

    /// Feeds the next stored bytes; appends the content they complete to `out`.
    ///
    /// # Errors
    /// [`Corrupt`] as soon as a segment fails authentication or lies past the end.
    pub fn update(&mut self, mut sealed: &[u8], out: &mut Vec<u8>) -> Result<(), Corrupt> {
        if self.dec.is_none() {
            let take = (HEADER_LEN - self.header.len()).min(sealed.len());
            self.header.extend_from_slice(&sealed[..take]);
            sealed = &sealed[take..];
            if self.header.len() < HEADER_LEN {
                return Ok(());
            }
            let (dec, _) = SegmentDecoder::new(&self.key, &self.header).map_err(|_| Corrupt)?;
            if !matches!(dec.mode(), SegmentMode::Bounded(_)) {
                return Err(Corrupt);
            }
            self.dec = Some(dec);
        }
        let full = SEALED_SEGMENT as usize;
        while !sealed.is_empty() {
            let take = (full - self.pending.len()).min(sealed.len());
            self.pending.extend_from_slice(&sealed[..take]);
            sealed = &sealed[take..];
            if self.pending.len() == full {
                self.push_pending(out)?;
            }
        }
        Ok(())
    }

    /// Ends the stored bytes: checks that the blob is complete and that its content has
    /// the address; appends the last released bytes to `out`; returns the content length.
    ///
    /// # Errors
    /// [`Corrupt`] for a truncated blob or a content that does not match the address.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<u64, Corrupt> {
        if !self.pending.is_empty() || self.index == 0 {
            self.push_pending(out)?;
        }
        self.dec.as_ref().ok_or(Corrupt)?.finish().map_err(|_| Corrupt)?;
        if self.hasher.clone().finalize() != self.addr {
            return Err(Corrupt);
        }
        Ok(self.released)
    }
}

/// Random access to a stored blob's content by segment, for serving byte ranges. It
/// authenticates each segment under the storage key; it cannot check the address (that
/// needs the whole content), so its output is for a reader who verifies the whole.
pub struct RangeOpener {
    dec: SegmentDecoder,
    len: u64,
}

impl RangeOpener {
    /// An opener for the blob whose first [`HEADER_LEN`] stored bytes are `header`.
    ///
    /// # Errors
    /// [`Corrupt`] for a header that is not a stored blob's.
    pub fn new(storage_key: &[u8; 32], header: &[u8]) -> Result<Self, Corrupt> {
        let (dec, n) = SegmentDecoder::new(storage_key, header).map_err(|_| Corrupt)?;
        match dec.mode() {
            SegmentMode::Bounded(len) if n == HEADER_LEN => Ok(Self { dec, len }),
            _ => Err(Corrupt),
        }
    }

    /// The content's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segment holding content byte `offset`, and where that segment starts in the
    /// stored blob.
    pub fn segment_of(&self, offset: u64) -> (u64, u64) {
        let index = offset / u64::from(SEGMENT);
        (index, HEADER_LEN as u64 + index * SEALED_SEGMENT)
    }

    /// The stored size of segment `index`.
    pub fn sealed_segment_len(&self, index: u64) -> u64 {
        let last = segments(self.len) - 1;
        if index < last {
            SEALED_SEGMENT
        } else {
            self.len - last * u64::from(SEGMENT) + SEGMENT_OVERHEAD as u64
        }
    }

    /// Decrypts stored segment `index` in place; returns its content length.
    ///
    /// # Errors
    /// [`Corrupt`] if it fails authentication or has the wrong length for its position.
    pub fn open(&self, index: u64, sealed: &mut [u8]) -> Result<usize, Corrupt> {
        self.dec.open_at(index, sealed).map_err(|_| Corrupt)
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
    /// The addresses of every stored blob (in no particular order).
    fn list(&self) -> Vec<Address>;
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
        let mut sealer = BlobSealer::new(&self.key, &self.addressing, data.len() as u64, entropy);
        let mut sealed = Vec::with_capacity(sealed_len(data.len() as u64) as usize);
        sealed.extend_from_slice(sealer.header());
        sealer.update(data, &mut sealed).map_err(|_| StorageError::Corrupt(addr))?;
        sealer.finish(&mut sealed).map_err(|_| StorageError::Corrupt(addr))?;
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
        let mut opener = BlobOpener::new(&self.key, &self.addressing, *addr);
        let mut out = Vec::with_capacity(sealed.len());
        let corrupt = |_: Corrupt| StorageError::Corrupt(*addr);
        opener.update(&sealed, &mut out).map_err(corrupt)?;
        opener.finish(&mut out).map_err(corrupt)?;
        Ok(Some(out))
    }

    /// The addresses of every stored blob.
    pub fn list(&self) -> Vec<Address> {
        self.backend.list()
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

    fn list(&self) -> Vec<Address> {
        self.blobs.keys().copied().collect()
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

    /// Streaming in any piece sizes gives the stored format `put` writes, `get` reads it,
    /// and the range opener serves any byte of it.
    #[test]
    fn streaming_sealer_opener_and_ranges() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let key = [5; 32];
        for len in [0usize, 1, SEGMENT as usize - 1, SEGMENT as usize, SEGMENT as usize + 1, 3 * SEGMENT as usize + 17]
        {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let addr = Addressing::Plain.address(&data);
            let mut sealer = BlobSealer::new(&key, &Addressing::Plain, len as u64, &mut rng);
            let mut sealed = sealer.header().to_vec();
            for piece in data.chunks(1000) {
                sealer.update(piece, &mut sealed).unwrap();
            }
            assert_eq!(sealer.finish(&mut sealed).unwrap(), addr);
            assert_eq!(sealed.len() as u64, sealed_len(len as u64));
            // BinaryStorage reads what the streaming sealer wrote.
            let mut s = BinaryStorage::new(MemoryStore::new(), key, Addressing::Plain);
            s.backend().put_raw(&addr, &sealed).unwrap();
            assert_eq!(s.get(&addr).unwrap().unwrap(), data);
            assert_eq!(s.list(), alloc::vec![addr]);
            // The opener, fed in odd pieces.
            let mut op = BlobOpener::new(&key, &Addressing::Plain, addr);
            let mut out = Vec::new();
            for piece in sealed.chunks(777) {
                op.update(piece, &mut out).unwrap();
            }
            assert_eq!(op.content_len(), Some(len as u64));
            assert_eq!(op.finish(&mut out).unwrap(), len as u64);
            assert_eq!(out, data);
            // Any segment by random access.
            let r = RangeOpener::new(&key, &sealed[..HEADER_LEN]).unwrap();
            assert_eq!(r.len(), len as u64);
            let mut back = Vec::new();
            let mut off = 0u64;
            loop {
                let (index, start) = r.segment_of(off);
                let end = start + r.sealed_segment_len(index);
                let mut seg = sealed[start as usize..end as usize].to_vec();
                let n = r.open(index, &mut seg).unwrap();
                back.extend_from_slice(&seg[..n]);
                off += n as u64;
                if off >= len as u64 {
                    break;
                }
            }
            assert_eq!(back, data);
            // Wrong length declared, wrong address, truncation, a flipped byte.
            let mut short = BlobSealer::new(&key, &Addressing::Plain, len as u64 + 1, &mut rng);
            short.update(&data, &mut Vec::new()).unwrap();
            assert!(short.finish(&mut Vec::new()).is_err());
            let mut long = BlobSealer::new(&key, &Addressing::Plain, len as u64, &mut rng);
            long.update(&data, &mut Vec::new()).unwrap();
            assert_eq!(long.update(&[0], &mut Vec::new()), Err(SegmentError::BadLength), "past the declared length");
            let mut op = BlobOpener::new(&key, &Addressing::Plain, Address([0; 32]));
            op.update(&sealed, &mut Vec::new()).unwrap();
            assert_eq!(op.finish(&mut Vec::new()), Err(Corrupt), "content under another address");
            let mut op = BlobOpener::new(&key, &Addressing::Plain, addr);
            op.update(&sealed[..sealed.len() - 1], &mut Vec::new()).unwrap();
            assert_eq!(op.finish(&mut Vec::new()), Err(Corrupt), "truncated");
            let mut bad = sealed.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            let mut op = BlobOpener::new(&key, &Addressing::Plain, addr);
            let r = op.update(&bad, &mut Vec::new()).and_then(|()| op.finish(&mut Vec::new()).map(|_| ()));
            assert_eq!(r, Err(Corrupt), "tampered");
        }
    }
}
