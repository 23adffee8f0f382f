//! Bounded datagram queues backed by byte rings, so steady-state traffic does not
//! allocate (spec §7.6).

use alloc::collections::VecDeque;

/// A FIFO of byte strings with a bound on count and total bytes.
#[derive(Debug)]
pub(crate) struct DatagramQueue {
    bytes: VecDeque<u8>,
    lens: VecDeque<u16>,
    max_count: usize,
    max_bytes: usize,
    /// Datagrams dropped by the overflow rule.
    pub(crate) dropped: u64,
}

impl DatagramQueue {
    pub(crate) fn new(max_count: usize, max_bytes: usize) -> Self {
        Self { bytes: VecDeque::new(), lens: VecDeque::new(), max_count, max_bytes, dropped: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Bytes queued.
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Entries queued.
    pub(crate) fn len(&self) -> usize {
        self.lens.len()
    }

    fn is_full_for(&self, len: usize) -> bool {
        self.lens.len() >= self.max_count || self.bytes.len() + len > self.max_bytes
    }

    /// Appends `data` (≤ 65535 bytes). When full: with `drop_oldest`, evicts the oldest
    /// entries until it fits (counted in `dropped`); otherwise refuses (returns false).
    pub(crate) fn push(&mut self, data: &[u8], drop_oldest: bool) -> bool {
        let Ok(len) = u16::try_from(data.len()) else { return false };
        if data.len() > self.max_bytes {
            return false;
        }
        while self.is_full_for(data.len()) {
            if !drop_oldest || !self.pop_discard() {
                return false;
            }
            self.dropped += 1;
        }
        self.bytes.extend(data);
        self.lens.push_back(len);
        true
    }

    fn pop_discard(&mut self) -> bool {
        let Some(len) = self.lens.pop_front() else { return false };
        self.bytes.drain(..usize::from(len));
        true
    }

    /// Whether an entry of `len` bytes fits without eviction.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        len <= usize::from(u16::MAX) && !self.is_full_for(len)
    }

    /// Appends an entry from two parts (call only after `has_room`).
    pub(crate) fn push_parts(&mut self, head: &[u8], body: impl Iterator<Item = u8>) {
        let before = self.bytes.len();
        self.bytes.extend(head);
        self.bytes.extend(body);
        self.lens.push_back((self.bytes.len() - before) as u16);
    }

    /// Length of the oldest entry.
    pub(crate) fn front_len(&self) -> Option<usize> {
        self.lens.front().map(|l| usize::from(*l))
    }

    /// Removes the oldest entry, copying it into `out` (truncated to `out.len()`);
    /// returns its full length.
    pub(crate) fn pop_into(&mut self, out: &mut [u8]) -> Option<usize> {
        let len = usize::from(self.lens.pop_front()?);
        let n = len.min(out.len());
        for (o, b) in out[..n].iter_mut().zip(self.bytes.drain(..len)) {
            *o = b;
        }
        Some(len)
    }

    /// Calls `f` with the oldest entry (as up to two slices) and removes it.
    pub(crate) fn pop_with<R>(&mut self, f: impl FnOnce(&[u8], &[u8]) -> R) -> Option<R> {
        let len = usize::from(*self.lens.front()?);
        let (a, b) = self.bytes.as_slices();
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
}
