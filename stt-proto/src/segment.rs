//! The segment codec (the original STT's BinaryStreamEncoder / BinaryStreamDecoder),
//! built as the STREAM construction used by age and Tink (spec §10):
//!
//! - a random 32-byte salt and the caller's 32-byte key give the segment key:
//!   `HKDF-SHA256(salt, key, "stt/1 segment" ‖ mode, 32)`;
//! - segment *i* is sealed with ChaCha20-Poly1305 under the nonce
//!   `i (11 bytes, big-endian) ‖ last (1 byte: 1 for the final segment, else 0)`;
//! - the header (`version ‖ mode ‖ segment size ‖ [total length] ‖ salt`) is the
//!   associated data of every segment.
//!
//! Modes: **live** (unknown length; the writer marks the last segment), **bounded** (the
//! header carries the total length), and **independent** (every segment stands alone, for
//! lossy datagram use: a lost segment is a gap, not an error). Keys come from
//! `export_keying_material` or a local key; never from `shared_seed`.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroize;

use crate::replay::{ReplayVerdict, ReplayWindow};

/// Codec version in the header.
const VERSION: u8 = 1;
/// Tag bytes added to each segment.
pub const SEGMENT_OVERHEAD: usize = 16;
/// Out-of-order segments a decoder buffers ahead of the next one it can release.
pub const REORDER_WINDOW: u64 = 64;

/// How segments relate to the stream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SegmentMode {
    /// Unknown length: the encoder marks the final segment.
    Live,
    /// Known length, written in the header.
    Bounded(u64),
    /// Each segment decrypts alone; lost segments are gaps.
    Independent,
}

impl SegmentMode {
    fn id(self) -> u8 {
        match self {
            SegmentMode::Live => 1,
            SegmentMode::Bounded(_) => 2,
            SegmentMode::Independent => 3,
        }
    }
}

/// A segment codec error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum SegmentError {
    /// The header is malformed or of another version.
    BadHeader,
    /// A segment failed authentication (tampered, wrong key, or wrong last flag).
    Tampered(u64),
    /// A segment index arrived twice.
    Duplicate(u64),
    /// A segment arrived after the final one, or past the declared length.
    BeyondEnd(u64),
    /// A segment is too far ahead of the ones released (the reorder window is full).
    TooFarAhead(u64),
    /// The stream ended before its final segment.
    Truncated,
    /// A plaintext segment has the wrong size for its position.
    BadLength,
    /// The output buffer is too small.
    BufferTooSmall,
    /// Writing after the final segment.
    Finished,
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::BadHeader => f.write_str("malformed segment header"),
            SegmentError::Tampered(i) => write!(f, "segment {i} failed authentication"),
            SegmentError::Duplicate(i) => write!(f, "segment {i} arrived twice"),
            SegmentError::BeyondEnd(i) => write!(f, "segment {i} lies beyond the end of the stream"),
            SegmentError::TooFarAhead(i) => write!(f, "segment {i} is beyond the reorder window"),
            SegmentError::Truncated => f.write_str("stream truncated: the final segment is missing"),
            SegmentError::BadLength => f.write_str("segment has the wrong length for its position"),
            SegmentError::BufferTooSmall => f.write_str("output buffer too small"),
            SegmentError::Finished => f.write_str("the stream already ended"),
        }
    }
}

impl core::error::Error for SegmentError {}

/// The header: `version ‖ mode ‖ segment_size (u32) ‖ [total (u64), bounded only] ‖ salt (32)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SegmentHeader {
    /// The mode.
    pub mode: SegmentMode,
    /// Plaintext bytes per segment (the last may be shorter).
    pub segment_size: u32,
    /// The random salt.
    pub salt: [u8; 32],
}

impl SegmentHeader {
    /// Largest encoded header.
    pub const MAX_LEN: usize = 1 + 1 + 4 + 8 + 32;

    /// Encodes into `out`; returns the length.
    pub fn encode(&self, out: &mut [u8; Self::MAX_LEN]) -> usize {
        out[0] = VERSION;
        out[1] = self.mode.id();
        out[2..6].copy_from_slice(&self.segment_size.to_be_bytes());
        let mut n = 6;
        if let SegmentMode::Bounded(total) = self.mode {
            out[6..14].copy_from_slice(&total.to_be_bytes());
            n = 14;
        }
        out[n..n + 32].copy_from_slice(&self.salt);
        n + 32
    }

    /// Decodes a header; returns it and its length.
    ///
    /// # Errors
    /// [`SegmentError::BadHeader`].
    pub fn decode(data: &[u8]) -> Result<(Self, usize), SegmentError> {
        let bad = SegmentError::BadHeader;
        if data.len() < 6 || data[0] != VERSION {
            return Err(bad);
        }
        let segment_size = u32::from_be_bytes(data[2..6].try_into().map_err(|_| bad)?);
        if segment_size == 0 || segment_size > 1 << 24 {
            return Err(bad);
        }
        let (mode, n) = match data[1] {
            1 => (SegmentMode::Live, 6),
            2 => {
                (SegmentMode::Bounded(u64::from_be_bytes(data.get(6..14).ok_or(bad)?.try_into().map_err(|_| bad)?)), 14)
            }
            3 => (SegmentMode::Independent, 6),
            _ => return Err(bad),
        };
        let salt = data.get(n..n + 32).ok_or(bad)?.try_into().map_err(|_| bad)?;
        Ok((Self { mode, segment_size, salt }, n + 32))
    }

    fn segments(&self) -> Option<u64> {
        match self.mode {
            // A zero-length stream still has one (empty, final) segment.
            SegmentMode::Bounded(total) => Some(total.div_ceil(u64::from(self.segment_size)).max(1)),
            _ => None,
        }
    }
}

/// The keyed state both directions share.
struct Keyed {
    aead: ChaCha20Poly1305,
    header: [u8; SegmentHeader::MAX_LEN],
    header_len: usize,
    info: SegmentHeader,
}

impl Keyed {
    fn new(key: &[u8; 32], info: SegmentHeader) -> Self {
        let mut k = [0u8; 32];
        let label =
            [b's', b't', b't', b'/', b'1', b' ', b's', b'e', b'g', b'm', b'e', b'n', b't', b' ', info.mode.id()];
        let _ = Hkdf::<Sha256>::new(Some(&info.salt), key).expand(&label, &mut k);
        let aead = ChaCha20Poly1305::new((&k).into());
        k.zeroize();
        let mut header = [0u8; SegmentHeader::MAX_LEN];
        let header_len = info.encode(&mut header);
        Self { aead, header, header_len, info }
    }

    fn nonce(index: u64, last: bool) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&index.to_be_bytes());
        n[11] = u8::from(last);
        n
    }

    fn seal(&self, index: u64, last: bool, plain: &[u8], out: &mut [u8]) -> Result<usize, SegmentError> {
        let total = plain.len() + SEGMENT_OVERHEAD;
        let out = out.get_mut(..total).ok_or(SegmentError::BufferTooSmall)?;
        out[..plain.len()].copy_from_slice(plain);
        let (body, tag_out) = out.split_at_mut(plain.len());
        let tag = self
            .aead
            .encrypt_in_place_detached((&Self::nonce(index, last)).into(), &self.header[..self.header_len], body)
            .map_err(|_| SegmentError::BufferTooSmall)?;
        tag_out.copy_from_slice(&tag);
        Ok(total)
    }

    fn open(&self, index: u64, last: bool, data: &mut [u8]) -> Result<usize, SegmentError> {
        let n = data.len().checked_sub(SEGMENT_OVERHEAD).ok_or(SegmentError::Tampered(index))?;
        let (body, tag) = data.split_at_mut(n);
        let tag: [u8; 16] = (&*tag).try_into().map_err(|_| SegmentError::Tampered(index))?;
        self.aead
            .decrypt_in_place_detached(
                (&Self::nonce(index, last)).into(),
                &self.header[..self.header_len],
                body,
                (&tag).into(),
            )
            .map_err(|_| SegmentError::Tampered(index))?;
        Ok(n)
    }
}

/// Encrypts a byte stream segment by segment.
#[doc(alias = "BinaryStreamEncoder")]
pub struct SegmentEncoder {
    keyed: Keyed,
    next: u64,
    written: u64,
    done: bool,
}

impl SegmentEncoder {
    /// An encoder for `mode` with `segment_size` plaintext bytes per segment. `salt` must
    /// be fresh random bytes (from the node's entropy or the OS).
    ///
    /// # Errors
    /// [`SegmentError::BadHeader`] for a zero or over-16-MiB segment size.
    pub fn new(key: &[u8; 32], salt: [u8; 32], mode: SegmentMode, segment_size: u32) -> Result<Self, SegmentError> {
        if segment_size == 0 || segment_size > 1 << 24 {
            return Err(SegmentError::BadHeader);
        }
        Ok(Self {
            keyed: Keyed::new(key, SegmentHeader { mode, segment_size, salt }),
            next: 0,
            written: 0,
            done: false,
        })
    }

    /// The header to send (or store) before the segments.
    pub fn header(&self) -> &[u8] {
        &self.keyed.header[..self.keyed.header_len]
    }

    /// Encrypts the next segment into `out` (which needs `plain.len() + 16` bytes); returns
    /// `(index, length)`. Every segment but the last must be exactly `segment_size` long.
    /// In live mode, `last` marks the final segment; in bounded mode it is implied by the
    /// length; in independent mode it is ignored.
    ///
    /// # Errors
    /// [`SegmentError`] for a wrong size, writing past the end, or a small buffer.
    pub fn seal(&mut self, plain: &[u8], last: bool, out: &mut [u8]) -> Result<(u64, usize), SegmentError> {
        if self.done {
            return Err(SegmentError::Finished);
        }
        let size = self.keyed.info.segment_size as usize;
        let last = match self.keyed.info.mode {
            SegmentMode::Live => last,
            SegmentMode::Bounded(total) => {
                let end = self.written + plain.len() as u64;
                if end > total {
                    return Err(SegmentError::BadLength);
                }
                end == total
            }
            SegmentMode::Independent => false,
        };
        if plain.len() > size || (!last && plain.len() != size && self.keyed.info.mode != SegmentMode::Independent) {
            return Err(SegmentError::BadLength);
        }
        let index = self.next;
        let n = self.keyed.seal(index, last, plain, out)?;
        self.next += 1;
        self.written += plain.len() as u64;
        self.done = last;
        Ok((index, n))
    }
}

/// Decrypts segments, in any order within the reorder window, into in-order bytes.
#[doc(alias = "BinaryStreamDecoder")]
pub struct SegmentDecoder {
    keyed: Keyed,
    /// Next index to release.
    next: u64,
    /// Decrypted segments waiting for their turn (bounded by the window).
    pending: BTreeMap<u64, Vec<u8>>,
    /// Bytes released and not yet read, and where reading stands in them.
    ready: Vec<u8>,
    ready_pos: usize,
    last_index: Option<u64>,
    seen: ReplayWindow,
}

impl SegmentDecoder {
    /// A decoder for the stream whose header is at the start of `header`; returns it and
    /// the header length.
    ///
    /// # Errors
    /// [`SegmentError::BadHeader`].
    pub fn new(key: &[u8; 32], header: &[u8]) -> Result<(Self, usize), SegmentError> {
        let (info, n) = SegmentHeader::decode(header)?;
        let last_index = info.segments().map(|s| s - 1);
        Ok((
            Self {
                keyed: Keyed::new(key, info),
                next: 0,
                pending: BTreeMap::new(),
                ready: Vec::new(),
                ready_pos: 0,
                last_index,
                seen: ReplayWindow::default(),
            },
            n,
        ))
    }

    /// The stream's mode.
    pub fn mode(&self) -> SegmentMode {
        self.keyed.info.mode
    }

    /// Independent mode: decrypts one segment in place; returns its plaintext length.
    /// Lost segments are simply never seen; a repeated index is refused.
    ///
    /// # Errors
    /// [`SegmentError::Tampered`] or [`SegmentError::Duplicate`].
    pub fn open_independent(&mut self, index: u64, data: &mut [u8]) -> Result<usize, SegmentError> {
        if self.keyed.info.mode != SegmentMode::Independent {
            return Err(SegmentError::BadHeader);
        }
        if self.seen.check(index) != ReplayVerdict::Fresh {
            return Err(SegmentError::Duplicate(index));
        }
        let n = self.keyed.open(index, false, data)?;
        self.seen.mark(index);
        Ok(n)
    }

    /// Bounded mode: decrypts segment `index` alone, in place, without touching the
    /// decoder's order state (random access, e.g. to serve a byte range of a stored
    /// blob); returns its plaintext length. Authentication, the segment's position
    /// (including the final flag) and its length are checked as in [`Self::push`].
    ///
    /// # Errors
    /// [`SegmentError`] naming what was wrong.
    pub fn open_at(&self, index: u64, data: &mut [u8]) -> Result<usize, SegmentError> {
        let SegmentMode::Bounded(total) = self.keyed.info.mode else {
            return Err(SegmentError::BadHeader);
        };
        let last_index = self.last_index.unwrap_or(0);
        if index > last_index {
            return Err(SegmentError::BeyondEnd(index));
        }
        let last = index == last_index;
        let n = self.keyed.open(index, last, data)?;
        let size = u64::from(self.keyed.info.segment_size);
        let expect = if last { total - index * size } else { size };
        if n as u64 != expect {
            return Err(SegmentError::BadLength);
        }
        Ok(n)
    }

    /// Live / bounded mode: accepts segment `index` (ciphertext), in any order within the
    /// reorder window. Authentication, duplicates and segments past the end are checked
    /// here.
    ///
    /// # Errors
    /// [`SegmentError`] naming what was wrong; the decoder's state is unchanged then.
    pub fn push(&mut self, index: u64, data: &[u8]) -> Result<(), SegmentError> {
        if self.keyed.info.mode == SegmentMode::Independent {
            return Err(SegmentError::BadHeader);
        }
        if index < self.next || self.pending.contains_key(&index) {
            return Err(SegmentError::Duplicate(index));
        }
        if self.last_index.is_some_and(|l| index > l) {
            return Err(SegmentError::BeyondEnd(index));
        }
        if index >= self.next + REORDER_WINDOW {
            return Err(SegmentError::TooFarAhead(index));
        }
        let size = self.keyed.info.segment_size as usize;
        let mut buf = data.to_vec();
        // Live mode learns the end from the flag: try "not last" first, then "last".
        let (n, last) = match self.keyed.info.mode {
            SegmentMode::Bounded(_) => {
                let last = Some(index) == self.last_index;
                (self.keyed.open(index, last, &mut buf)?, last)
            }
            _ => match self.keyed.open(index, false, &mut buf) {
                Ok(n) => (n, false),
                Err(_) => {
                    let mut again = data.to_vec();
                    let n = self.keyed.open(index, true, &mut again)?;
                    buf = again;
                    (n, true)
                }
            },
        };
        if (!last && n != size) || n > size {
            return Err(SegmentError::BadLength);
        }
        if let SegmentMode::Bounded(total) = self.keyed.info.mode {
            let expect = if last { total - index * size as u64 } else { size as u64 };
            if n as u64 != expect {
                return Err(SegmentError::BadLength);
            }
        }
        if last {
            if self.pending.keys().any(|k| *k > index) {
                return Err(SegmentError::BeyondEnd(index));
            }
            self.last_index = Some(index);
        }
        buf.truncate(n);
        self.pending.insert(index, buf);
        while let Some(seg) = self.pending.remove(&self.next) {
            if self.ready_pos == self.ready.len() {
                self.ready.clear();
                self.ready_pos = 0;
            }
            self.ready.extend_from_slice(&seg);
            self.next += 1;
        }
        Ok(())
    }

    /// Copies released bytes (in order) into `out`; returns how many.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = (self.ready.len() - self.ready_pos).min(out.len());
        out[..n].copy_from_slice(&self.ready[self.ready_pos..self.ready_pos + n]);
        self.ready_pos += n;
        n
    }

    /// Whether every segment up to the final one was released.
    pub fn is_complete(&self) -> bool {
        self.last_index.is_some_and(|l| self.next == l + 1)
    }

    /// Call when the input ended: an error unless the final segment and everything before it arrived.
    ///
    /// # Errors
    /// [`SegmentError::Truncated`].
    pub fn finish(&self) -> Result<(), SegmentError> {
        if self.is_complete() {
            Ok(())
        } else {
            Err(SegmentError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use quickcheck::quickcheck;

    const KEY: [u8; 32] = [0x42; 32];
    const SALT: [u8; 32] = [0x17; 32];

    fn encode(data: &[u8], mode: SegmentMode, size: u32) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut e = SegmentEncoder::new(&KEY, SALT, mode, size).unwrap();
        let mut segs = Vec::new();
        let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(size as usize).collect() };
        let count = chunks.len();
        for (i, c) in chunks.into_iter().enumerate() {
            let mut out = vec![0u8; c.len() + SEGMENT_OVERHEAD];
            let (idx, n) = e.seal(c, i + 1 == count, &mut out).unwrap();
            assert_eq!((idx, n), (i as u64, c.len() + SEGMENT_OVERHEAD));
            segs.push(out);
        }
        (e.header().to_vec(), segs)
    }

    fn decode_in(header: &[u8], segs: &[(u64, Vec<u8>)]) -> Result<Vec<u8>, SegmentError> {
        let (mut d, _) = SegmentDecoder::new(&KEY, header)?;
        let mut out = Vec::new();
        let mut buf = [0u8; 33];
        for (i, s) in segs {
            d.push(*i, s)?;
            loop {
                let n = d.read(&mut buf);
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
        }
        d.finish()?;
        Ok(out)
    }

    quickcheck! {
        /// [SG-3]: any split into segments and any arrival order within the window gives the same bytes.
        fn any_order_same_bytes(data: Vec<u8>, size: u8, order: Vec<u8>, bounded: bool) -> bool {
            let size = u32::from(size % 40) + 1;
            let mode = if bounded { SegmentMode::Bounded(data.len() as u64) } else { SegmentMode::Live };
            let (h, segs) = encode(&data, mode, size);
            let mut idx: Vec<(u64, Vec<u8>)> = segs.into_iter().enumerate().map(|(i, s)| (i as u64, s)).collect();
            // Shuffle within windows of the reorder bound.
            for (k, o) in order.iter().enumerate() {
                let n = idx.len();
                if n > 1 {
                    let a = k % n;
                    let b = (a + usize::from(*o) % 8).min(n - 1);
                    idx.swap(a, b);
                }
            }
            decode_in(&h, &idx) == Ok(data)
        }
    }

    #[test]
    /// [SG-4]: truncation, reordering across the end, duplication and tampering are detected.
    fn truncation_reordering_past_end_duplication_tampering() {
        let data: Vec<u8> = (0..100u8).collect();
        for mode in [SegmentMode::Live, SegmentMode::Bounded(100)] {
            let (h, segs) = encode(&data, mode, 16);
            let all: Vec<(u64, Vec<u8>)> = segs.iter().cloned().enumerate().map(|(i, s)| (i as u64, s)).collect();
            assert_eq!(decode_in(&h, &all), Ok(data.clone()));
            // Truncation: the final segment missing.
            assert_eq!(decode_in(&h, &all[..all.len() - 1]), Err(SegmentError::Truncated), "{mode:?}");
            // Truncation at a segment boundary cannot pass as the end (the last flag is authenticated).
            let (mut d, _) = SegmentDecoder::new(&KEY, &h).unwrap();
            for (i, s) in &all[..3] {
                d.push(*i, s).unwrap();
            }
            assert_eq!(d.finish(), Err(SegmentError::Truncated));
            // Duplication.
            let mut dup = all.clone();
            dup.insert(2, all[1].clone());
            assert_eq!(decode_in(&h, &dup), Err(SegmentError::Duplicate(1)));
            // Tampering: a flipped bit, a swapped position, the header.
            let mut bad = all.clone();
            bad[3].1[5] ^= 1;
            assert_eq!(decode_in(&h, &bad), Err(SegmentError::Tampered(3)));
            let mut swapped = all.clone();
            swapped[2].0 = 3;
            swapped[3].0 = 2;
            assert!(matches!(decode_in(&h, &swapped), Err(SegmentError::Tampered(_))));
            let mut h2 = h.clone();
            let last = h2.len() - 1;
            h2[last] ^= 1;
            assert!(matches!(decode_in(&h2, &all), Err(SegmentError::Tampered(_))));
        }
        // Live: a segment after the final one (reordering across the end).
        let (h, segs) = encode(&data, SegmentMode::Live, 16);
        let (mut d, _) = SegmentDecoder::new(&KEY, &h).unwrap();
        let last = segs.len() as u64 - 1;
        d.push(last, &segs[last as usize]).unwrap();
        // A forged "segment after the end" cannot authenticate, and indexes beyond are refused.
        assert_eq!(d.push(last + 1, &segs[0]), Err(SegmentError::BeyondEnd(last + 1)));
        // Far ahead of the window.
        let (mut d, _) = SegmentDecoder::new(&KEY, &h).unwrap();
        assert_eq!(d.push(REORDER_WINDOW, &segs[0]), Err(SegmentError::TooFarAhead(REORDER_WINDOW)));
        // Wrong key.
        let (mut d, _) = SegmentDecoder::new(&[1; 32], &h).unwrap();
        assert_eq!(d.push(0, &segs[0]), Err(SegmentError::Tampered(0)));
    }

    #[test]
    fn independent_segments_survive_loss() {
        let mut e = SegmentEncoder::new(&KEY, SALT, SegmentMode::Independent, 100).unwrap();
        let h = e.header().to_vec();
        let (mut d, _) = SegmentDecoder::new(&KEY, &h).unwrap();
        let mut got = Vec::new();
        for i in 0..50u8 {
            let msg = [i; 60];
            let mut out = [0u8; 76];
            let (idx, n) = e.seal(&msg, false, &mut out).unwrap();
            if i % 3 == 0 {
                continue; // lost
            }
            let mut seg = out[..n].to_vec();
            let m = d.open_independent(idx, &mut seg).unwrap();
            assert_eq!(&seg[..m], &msg);
            got.push(i);
            assert_eq!(d.open_independent(idx, &mut out[..n].to_vec()), Err(SegmentError::Duplicate(idx)));
        }
        assert_eq!(got.len(), 33, "every segment that arrived decrypted; gaps are not errors");
    }

    /// [SG-1]: vectors from `tests/vectors/gen_segment.py` (Python `cryptography`, independent).
    #[test]
    fn known_answer_vectors() {
        let hex = |s: &str| {
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect::<Vec<u8>>()
        };
        let data: Vec<u8> = (0..40).collect();
        let (h, segs) = encode(&data, SegmentMode::Live, 16);
        assert_eq!(h, hex("0101000000101717171717171717171717171717171717171717171717171717171717171717"));
        assert_eq!(segs[0], hex("06755b01d0cd52947327da6a58e1f299909b7ec7003f00583c726fa317500295"));
        assert_eq!(segs[1], hex("cdbb9638038b121af25bb1fcad89d660d0641ef05e30e2ff9cca2e239cb253f7"));
        assert_eq!(segs[2], hex("d83b13853aff8ebccd0a1dd1736ec9968e2d810f9ff5f92a"));
    }

    #[test]
    fn header_round_trip_and_rejects() {
        for mode in [SegmentMode::Live, SegmentMode::Bounded(12345), SegmentMode::Independent] {
            let h = SegmentHeader { mode, segment_size: 4096, salt: SALT };
            let mut buf = [0u8; SegmentHeader::MAX_LEN];
            let n = h.encode(&mut buf);
            assert_eq!(SegmentHeader::decode(&buf[..n]), Ok((h, n)));
            assert_eq!(SegmentHeader::decode(&buf[..n - 1]), Err(SegmentError::BadHeader));
        }
        assert_eq!(SegmentHeader::decode(&[9, 1, 0, 0, 0, 1]), Err(SegmentError::BadHeader));
    }
}
