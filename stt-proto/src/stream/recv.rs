//! The receiving half of a stream: reassembly of out-of-order and overlapping data
//! into a buffer bounded by the flow-control window.

use alloc::collections::VecDeque;

use crate::range_set::RangeSet;

/// A peer broke a stream rule; the session closes with this code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum StreamViolation {
    /// Data overlapping earlier data with different bytes.
    ConflictingData,
    /// Data beyond the final size, or a final size that changed.
    FinalSize,
    /// Beyond the flow-control limit (or an oversize application frame).
    FlowControl,
    /// An application frame of a type this side did not declare.
    UndeclaredAppFrame,
    /// More disjoint out-of-order ranges than the stream or session may hold (spec [ST-7]).
    TooManyRanges,
}

/// Reassembly buffer: bytes from `read` on, holes zero-filled, `received` tracking what arrived.
///
/// Memory: `data` spans at most the flow-control window (`read..highest`), and `received`
/// holds at most the caller's range cap (spec [ST-7]). An insert costs O(log n) to find
/// the first held range it overlaps plus O(1) per overlapped range, and one move of the
/// range entries above it (at most the cap).
#[derive(Debug, Default)]
pub(crate) struct RecvBuf {
    data: VecDeque<u8>,
    /// Offset of `data[0]`: everything below was read by the application.
    read: u64,
    received: RangeSet,
    /// Highest offset received + 1 (kept when `received` is cleared by a reset or stop).
    high: u64,
    final_size: Option<u64>,
    /// Work done by `insert` since the last `take_steps`: one per call plus one per held
    /// range it examined (a cost meter for spec [ST-7], not a timing).
    steps: u64,
}

impl RecvBuf {
    /// Highest offset received + 1.
    pub(crate) fn highest(&self) -> u64 {
        self.high.max(self.read)
    }

    pub(crate) fn read_offset(&self) -> u64 {
        self.read
    }

    pub(crate) fn final_size(&self) -> Option<u64> {
        self.final_size
    }

    /// Disjoint ranges of received, unread data held now.
    pub(crate) fn ranges(&self) -> usize {
        self.received.len()
    }

    /// Returns and resets the work meter (see the `steps` field).
    pub(crate) fn take_steps(&mut self) -> u64 {
        core::mem::take(&mut self.steps)
    }

    /// Stores `data` at `offset`. Returns the number of bytes beyond the previous highest
    /// offset (new flow-control credit used). More than `max_ranges` disjoint ranges held
    /// afterwards is a violation (spec [ST-7]).
    pub(crate) fn insert(
        &mut self,
        offset: u64,
        data: &[u8],
        fin: bool,
        limit: u64,
        max_ranges: usize,
    ) -> Result<u64, StreamViolation> {
        let end = offset + data.len() as u64;
        if end > limit {
            return Err(StreamViolation::FlowControl);
        }
        if let Some(f) = self.final_size {
            if end > f || (fin && end != f) {
                return Err(StreamViolation::FinalSize);
            }
        }
        if fin {
            if end < self.highest() {
                return Err(StreamViolation::FinalSize);
            }
            self.final_size = Some(end);
        }
        self.steps += 1;
        let before = self.highest();
        // Bytes below `read` were delivered; only compare what we still hold.
        let start = offset.max(self.read);
        if start >= end {
            return Ok(0);
        }
        if self.received.len() >= max_ranges && !self.received.touches(start..end) {
            // Checked before anything is stored, so a stream never holds more (spec [ST-7]).
            return Err(StreamViolation::TooManyRanges);
        }
        let skip = (start - offset) as usize;
        let needed = (end - self.read) as usize;
        let at = (start - self.read) as usize;
        if at == self.data.len() {
            // In order, past everything held (the common case): append, no hole to fill.
            self.data.extend(&data[skip..]);
            self.received.insert(start..end);
            self.high = self.high.max(end);
            return Ok(self.highest().saturating_sub(before));
        }
        if self.data.len() < needed {
            self.data.resize(needed, 0);
        }
        // Overlaps must carry identical bytes (spec [ST-3]). Only the held ranges that
        // overlap are visited (spec [ST-7]).
        for r in self.received.overlapping(start..end) {
            self.steps += 1;
            let (a, b) = (r.start.max(start), r.end.min(end));
            if a >= b {
                continue;
            }
            let held = self.data.range(((a - self.read) as usize)..((b - self.read) as usize));
            if !held.eq(&data[(a - offset) as usize..(b - offset) as usize]) {
                return Err(StreamViolation::ConflictingData);
            }
        }
        copy_into_deque(&mut self.data, at, &data[skip..]);
        self.received.insert(start..end);
        self.high = self.high.max(end);
        Ok(self.highest().saturating_sub(before))
    }

    /// Contiguous bytes readable now.
    pub(crate) fn readable(&self) -> u64 {
        match self.received.first() {
            Some(r) if r.start <= self.read => r.end.saturating_sub(self.read),
            _ => 0,
        }
    }

    /// Whether the application has read everything up to the final size.
    pub(crate) fn is_finished(&self) -> bool {
        self.final_size == Some(self.read)
    }

    /// Copies readable bytes into `out`; returns how many.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = (self.readable() as usize).min(out.len());
        let (a, b) = self.data.as_slices();
        let from_a = n.min(a.len());
        out[..from_a].copy_from_slice(&a[..from_a]);
        out[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.data.drain(..n);
        self.read += n as u64;
        self.received.remove_below(self.read);
        n
    }

    /// Consumes `n` readable bytes (n ≤ `readable()`), handing them to `sink`.
    pub(crate) fn read_with(&mut self, n: usize, sink: impl FnOnce(alloc::collections::vec_deque::Drain<'_, u8>)) {
        let n = n.min(self.readable() as usize);
        sink(self.data.drain(..n));
        self.read += n as u64;
        self.received.remove_below(self.read);
    }

    /// Copies up to `out.len()` readable bytes without consuming them.
    pub(crate) fn peek(&self, out: &mut [u8]) -> usize {
        let n = (self.readable() as usize).min(out.len());
        for (o, b) in out[..n].iter_mut().zip(self.data.iter()) {
            *o = *b;
        }
        n
    }

    /// Discards everything held (reset or stop); the highest offset is remembered.
    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.received.clear();
    }
}

/// Copies `src` into `dst[at..at + src.len()]` (which exists) with at most two memcpys.
fn copy_into_deque(dst: &mut VecDeque<u8>, at: usize, src: &[u8]) {
    let (a, b) = dst.as_mut_slices();
    let end = at + src.len();
    if at < a.len() {
        let in_a = end.min(a.len()) - at;
        a[at..at + in_a].copy_from_slice(&src[..in_a]);
        if in_a < src.len() {
            b[..src.len() - in_a].copy_from_slice(&src[in_a..]);
        }
    } else {
        let off = at - a.len();
        b[off..off + src.len()].copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use quickcheck::quickcheck;

    #[test]
    fn reorder_overlap_conflict_final_size() {
        let mut b = RecvBuf::default();
        assert_eq!(b.insert(5, b"world", false, 100, usize::MAX), Ok(10));
        assert_eq!(b.readable(), 0);
        assert_eq!(b.insert(0, b"hello", false, 100, usize::MAX), Ok(0));
        assert_eq!(b.insert(3, b"lowo", false, 100, usize::MAX), Ok(0), "identical overlap accepted once");
        assert_eq!(b.insert(3, b"LOWO", false, 100, usize::MAX), Err(StreamViolation::ConflictingData));
        assert_eq!(b.insert(90, b"x", false, 90, usize::MAX), Err(StreamViolation::FlowControl));
        let mut out = [0u8; 7];
        assert_eq!(b.read(&mut out), 7);
        assert_eq!(&out, b"hellowo");
        assert_eq!(b.insert(10, b"!", true, 100, usize::MAX), Ok(1));
        assert_eq!(b.insert(12, b"?", false, 100, usize::MAX), Err(StreamViolation::FinalSize));
        assert_eq!(b.insert(0, b"hel", true, 100, usize::MAX), Err(StreamViolation::FinalSize));
        let mut out = [0u8; 10];
        assert_eq!(b.read(&mut out), 4);
        assert_eq!(&out[..4], b"rld!");
        assert!(b.is_finished());
    }

    /// [ST-7]: a gap-only pattern costs one step per insert in any order, the range cap
    /// is enforced, and a gap-filling insert costs the ranges it merges.
    #[test]
    fn range_cap_and_linear_work() {
        let mut b = RecvBuf::default();
        for k in 0..8u64 {
            assert!(b.insert(2 * k + 1, b"x", false, 100, 8).is_ok());
        }
        assert_eq!(b.ranges(), 8);
        assert_eq!(b.insert(19, b"x", false, 100, 8), Err(StreamViolation::TooManyRanges));
        let mut b = RecvBuf::default();
        for k in (0..1000u64).rev() {
            assert!(b.insert(2 * k + 1, b"x", false, 1 << 20, usize::MAX).is_ok());
        }
        assert_eq!(b.take_steps(), 1000, "descending gappy inserts: one step each");
        assert_eq!(b.ranges(), 1000);
        let all = alloc::vec![b'x'; 2000];
        assert_eq!(b.insert(0, &all, false, 1 << 20, usize::MAX), Ok(0));
        assert_eq!(b.take_steps(), 1001, "one insert plus the 1000 ranges it overlaps");
        assert_eq!((b.ranges(), b.readable()), (1, 2000));
    }

    quickcheck! {
        /// Any split and arrival order with duplicates delivers the bytes once, in order (a naive model).
        fn reassembly_equals_model(data: Vec<u8>, cuts: Vec<(u8, u8)>) -> bool {
            let mut b = RecvBuf::default();
            let n = data.len();
            let mut pieces: Vec<(usize, usize)> = cuts.iter().map(|(s, l)| {
                let s = if n == 0 { 0 } else { usize::from(*s) % n };
                (s, (s + usize::from(*l) % 16).min(n))
            }).collect();
            // Make sure everything is covered at least once.
            pieces.extend((0..n).step_by(7).map(|s| (s, (s + 7).min(n))));
            let mut out = Vec::new();
            let mut buf = [0u8; 5];
            for (s, e) in pieces {
                if b.insert(s as u64, &data[s..e], e == n, 1 << 20, usize::MAX).is_err() { return false; }
                loop {
                    let k = b.read(&mut buf);
                    if k == 0 { break; }
                    out.extend_from_slice(&buf[..k]);
                }
            }
            out == data && (n == 0 || b.is_finished())
        }
    }
}
