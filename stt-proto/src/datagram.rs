//! Bounded datagram queues backed by byte rings, so steady-state traffic does not
//! allocate (spec §7.6), and that hold no memory while empty: the ring is allocated on the
//! first push and given back when a burst has drained (or when the session goes idle).

use alloc::boxed::Box;
use alloc::collections::VecDeque;

/// A drained ring larger than this (a burst of more than ~60 datagrams) is freed at once;
/// a smaller one is kept until the session goes idle, so traffic in smaller bursts does not
/// allocate per burst.
const KEEP_BYTES: usize = 64 * 1024;

/// The queued entries: their bytes back to back, and their lengths.
#[derive(Debug, Default)]
struct Ring {
    bytes: VecDeque<u8>,
    lens: VecDeque<u16>,
}

/// A FIFO of byte strings with a bound on count and total bytes.
#[derive(Debug)]
pub(crate) struct DatagramQueue {
    /// `None` while empty and not recently used.
    ring: Option<Box<Ring>>,
    max_count: u32,
    max_bytes: u32,
    /// Datagrams dropped by the overflow rule.
    pub(crate) dropped: u64,
}

impl DatagramQueue {
    pub(crate) fn new(max_count: usize, max_bytes: usize) -> Self {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self { ring: None, max_count: clamp(max_count), max_bytes: clamp(max_bytes), dropped: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes queued.
    pub(crate) fn byte_len(&self) -> usize {
        self.ring.as_ref().map_or(0, |r| r.bytes.len())
    }

    /// Entries queued.
    pub(crate) fn len(&self) -> usize {
        self.ring.as_ref().map_or(0, |r| r.lens.len())
    }

    fn is_full_for(&self, len: usize) -> bool {
        self.len() >= self.max_count as usize || self.byte_len() + len > self.max_bytes as usize
    }

    fn ring(&mut self) -> &mut Ring {
        self.ring.get_or_insert_with(Box::default)
    }

    /// Appends `data` (≤ 65535 bytes). When full: with `drop_oldest`, evicts the oldest
    /// entries until it fits (counted in `dropped`); otherwise refuses (returns false).
    pub(crate) fn push(&mut self, data: &[u8], drop_oldest: bool) -> bool {
        let Ok(len) = u16::try_from(data.len()) else { return false };
        if data.len() > self.max_bytes as usize {
            return false;
        }
        while self.is_full_for(data.len()) {
            if !drop_oldest || !self.pop_discard() {
                return false;
            }
            self.dropped += 1;
        }
        let r = self.ring();
        r.bytes.extend(data);
        r.lens.push_back(len);
        true
    }

    fn pop_discard(&mut self) -> bool {
        let Some(r) = self.ring.as_mut() else { return false };
        let Some(len) = r.lens.pop_front() else { return false };
        r.bytes.drain(..usize::from(len));
        self.drained();
        true
    }

    /// After a removal: a ring that held a burst is freed once it is empty.
    fn drained(&mut self) {
        if self.ring.as_ref().is_some_and(|r| r.lens.is_empty() && r.bytes.capacity() > KEEP_BYTES) {
            self.ring = None;
        }
    }

    /// Frees the ring if nothing is queued (the session is idle).
    pub(crate) fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.ring = None;
        }
    }

    /// Whether an entry of `len` bytes fits without eviction.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        len <= usize::from(u16::MAX) && !self.is_full_for(len)
    }

    /// Appends an entry from two parts (call only after `has_room`).
    pub(crate) fn push_parts(&mut self, head: &[u8], body: impl Iterator<Item = u8>) {
        let r = self.ring();
        let before = r.bytes.len();
        r.bytes.extend(head);
        r.bytes.extend(body);
        let len = (r.bytes.len() - before) as u16;
        r.lens.push_back(len);
    }

    /// Length of the oldest entry.
    pub(crate) fn front_len(&self) -> Option<usize> {
        self.ring.as_ref()?.lens.front().map(|l| usize::from(*l))
    }

    /// Removes the oldest entry, copying it into `out` (truncated to `out.len()`);
    /// returns its full length.
    pub(crate) fn pop_into(&mut self, out: &mut [u8]) -> Option<usize> {
        let r = self.ring.as_mut()?;
        let len = usize::from(r.lens.pop_front()?);
        let n = len.min(out.len());
        for (o, b) in out[..n].iter_mut().zip(r.bytes.drain(..len)) {
            *o = b;
        }
        self.drained();
        Some(len)
    }

    /// Calls `f` with the oldest entry (as up to two slices) and removes it.
    pub(crate) fn pop_with<R>(&mut self, f: impl FnOnce(&[u8], &[u8]) -> R) -> Option<R> {
        let ring = self.ring.as_ref()?;
        let len = usize::from(*ring.lens.front()?);
        let (a, b) = ring.bytes.as_slices();
        let first = len.min(a.len());
        let r = f(&a[..first], &b[..len - first]);
        self.pop_discard();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_with_both_overflow_rules() {
        let mut q = DatagramQueue::new(2, 10);
        assert!(q.push(b"abc", false));
        assert!(q.push(b"defg", false));
        assert!(!q.push(b"h", false), "count bound, reject");
        assert!(q.push(b"hi", true), "drop oldest");
        assert_eq!(q.dropped, 1);
        assert!(!q.push(&[0; 11], true), "larger than the whole queue");
        let mut out = [0u8; 3];
        assert_eq!(q.pop_into(&mut out), Some(4), "full length reported");
        assert_eq!(&out, b"def", "truncated copy");
        assert_eq!(q.pop_with(|a, b| [a, b].concat()), Some(b"hi".to_vec()));
        assert!(q.is_empty());
    }

    /// Memory: none before the first push; a small ring is kept across one-at-a-time use
    /// (no allocation per datagram); a large burst's ring is freed once read; idle frees
    /// the rest.
    #[test]
    fn gives_memory_back() {
        let mut q = DatagramQueue::new(256, 256 * 1500);
        assert!(q.ring.is_none());
        let mut out = [0u8; 1500];
        for _ in 0..3 {
            assert!(q.push(&[7; 1000], false));
            assert_eq!(q.pop_into(&mut out), Some(1000));
        }
        assert!(q.ring.is_some(), "one datagram at a time keeps its small ring");
        for _ in 0..128 {
            assert!(q.push(&[7; 1000], false));
        }
        assert!(q.ring.as_ref().unwrap().bytes.capacity() >= 128_000);
        for _ in 0..127 {
            assert_eq!(q.pop_into(&mut out), Some(1000));
        }
        assert!(q.ring.is_some(), "not yet drained");
        assert_eq!(q.pop_with(|a, b| a.len() + b.len()), Some(1000));
        assert!(q.ring.is_none(), "the burst's ring is freed once drained");
        assert!(q.push(&[7; 10], false));
        q.release_if_empty();
        assert!(q.ring.is_some(), "not while something is queued");
        assert_eq!(q.pop_into(&mut out), Some(10));
        q.release_if_empty();
        assert!(q.ring.is_none());
    }
}
