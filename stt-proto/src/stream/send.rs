//! The sending half of a stream: bytes the application wrote, kept as reference-counted
//! `Bytes` until acknowledged, so retransmission copies nothing but into the packet.

use alloc::collections::VecDeque;
use bytes::Bytes;

use crate::range_set::RangeSet;
use crate::wire::codec::Writer;

/// Where the sending half stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SendState {
    /// Accepting writes.
    Open,
    /// `finish` was called: no more writes; FIN goes out with the last byte.
    Finishing,
    /// Reset with this code (STREAM_CLOSE); pending data is dropped.
    Reset { code: u64, final_size: u64 },
}

/// Unacknowledged and unsent stream bytes.
#[derive(Debug, Default)]
pub(crate) struct SendBuf {
    /// Chunks holding bytes from `chunks_base` up to `written`, each with its stream
    /// offset (so a packet finds its bytes by binary search, not by walking every chunk
    /// in flight: a bulk sender holds thousands of small ones).
    chunks: VecDeque<(u64, Bytes)>,
    chunks_base: u64,
    /// The chunk the last copy ended in: the next one usually starts there (new bytes go
    /// out in order), so most packets find their chunk without a search.
    hint: usize,
    /// Total bytes written by the application.
    written: u64,
    /// Bytes below this were sent at least once.
    sent: u64,
    /// Ranges to send again (declared lost).
    retransmit: RangeSet,
    /// Ranges acknowledged.
    acked: RangeSet,
}

impl SendBuf {
    /// Bytes written and not yet acknowledged (the buffer's footprint).
    pub(crate) fn unacked(&self) -> u64 {
        self.written - self.acked_prefix()
    }

    fn acked_prefix(&self) -> u64 {
        match self.acked.first() {
            Some(r) if r.start == 0 => r.end,
            _ => 0,
        }
    }

    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    pub(crate) fn push(&mut self, data: Bytes) {
        let start = self.written;
        self.written += data.len() as u64;
        if !data.is_empty() {
            self.chunks.push_back((start, data));
        }
    }

    /// Whether there is anything to (re)send.
    pub(crate) fn has_pending(&self, limit: u64) -> bool {
        !self.retransmit.is_empty() || (self.sent < self.written && self.sent < limit)
    }

    /// The next range to send: retransmissions first, then new bytes up to `limit`
    /// (the flow-control limit for new bytes). At most `max_len` bytes.
    pub(crate) fn next_range(&self, max_len: u64, limit: u64) -> Option<(u64, u64)> {
        if let Some(r) = self.retransmit.first() {
            return Some((r.start, (r.end - r.start).min(max_len)));
        }
        let end = self.written.min(limit);
        (self.sent < end).then(|| (self.sent, (end - self.sent).min(max_len)))
    }

    /// Marks `offset..offset+len` as sent now (removes it from the retransmit set).
    pub(crate) fn mark_sent(&mut self, offset: u64, len: u64) {
        self.retransmit.remove(offset..offset + len);
        self.sent = self.sent.max(offset + len);
    }

    /// Copies `offset..offset+len` into `w`.
    pub(crate) fn copy_into(&mut self, offset: u64, len: u64, w: &mut Writer<'_>) -> Option<()> {
        let mut need = offset..offset.checked_add(len)?;
        let holds = |i: usize| self.chunks.get(i).is_some_and(|(s, c)| *s <= offset && offset < s + c.len() as u64);
        let first = match self.hint {
            h if holds(h) => h,
            h if holds(h + 1) => h + 1,
            _ => self.chunks.partition_point(|(start, c)| start + c.len() as u64 <= offset),
        };
        for (i, (start, c)) in self.chunks.range(first..).enumerate() {
            if need.is_empty() {
                break;
            }
            // Chunks are contiguous; a range below the first one was freed (acknowledged).
            let from = usize::try_from(need.start.checked_sub(*start)?).ok()?;
            let end = start + c.len() as u64;
            let to = usize::try_from(need.end.min(end) - start).ok()?;
            w.bytes(c.get(from..to)?)?;
            need.start = end.min(need.end);
            self.hint = first + i;
        }
        need.is_empty().then_some(())
    }

    /// A range was acknowledged; hands fully acknowledged chunks to `freed`.
    pub(crate) fn on_ack(&mut self, offset: u64, len: u64, mut freed: impl FnMut(Bytes)) {
        self.acked.insert(offset..offset + len);
        self.retransmit.remove(offset..offset + len);
        let prefix = self.acked_prefix();
        while let Some((_, c)) = self.chunks.front() {
            if self.chunks_base + c.len() as u64 > prefix {
                break;
            }
            self.chunks_base += c.len() as u64;
            if let Some((_, c)) = self.chunks.pop_front() {
                self.hint = self.hint.saturating_sub(1);
                freed(c);
            }
        }
    }

    /// A range was lost: queue whatever of it is not acknowledged.
    pub(crate) fn on_lost(&mut self, offset: u64, len: u64) {
        let mut start = offset;
        let end = offset + len;
        // Insert only the unacknowledged parts.
        for r in self.acked.iter() {
            if r.end <= start {
                continue;
            }
            if r.start >= end {
                break;
            }
            if r.start > start {
                self.retransmit.insert(start..r.start);
            }
            start = r.end;
        }
        if start < end {
            self.retransmit.insert(start..end);
        }
    }

    /// Whether every written byte was acknowledged.
    pub(crate) fn all_acked(&self) -> bool {
        self.acked_prefix() == self.written
    }

    /// Drops everything (reset).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.hint = 0;
        self.retransmit.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_retransmit_ack_cycle() {
        let mut b = SendBuf::default();
        b.push(Bytes::from_static(b"hello "));
        b.push(Bytes::from_static(b"world"));
        assert_eq!(b.next_range(4, u64::MAX), Some((0, 4)));
        b.mark_sent(0, 4);
        assert_eq!(b.next_range(100, 8), Some((4, 4)), "flow limit");
        b.mark_sent(4, 7);
        assert_eq!(b.next_range(100, u64::MAX), None);
        b.on_ack(4, 7, drop);
        b.on_lost(0, 4);
        assert_eq!(b.next_range(100, u64::MAX), Some((0, 4)), "lost bytes first");
        let mut out = [0u8; 16];
        let mut w = Writer::new(&mut out);
        b.copy_into(2, 7, &mut w).unwrap();
        assert_eq!(&out[..7], b"llo wor");
        b.mark_sent(0, 4);
        b.on_ack(0, 4, drop);
        assert!(b.all_acked());
        assert_eq!(b.unacked(), 0);
        assert!(b.chunks.is_empty(), "acked chunks freed");
    }

    /// Ranges that span chunks, start inside one, or fall below the first kept chunk.
    #[test]
    fn copy_into_finds_bytes_across_many_chunks() {
        let mut b = SendBuf::default();
        let data: alloc::vec::Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(37) {
            b.push(Bytes::copy_from_slice(piece));
        }
        let mut out = [0u8; 1500];
        for (off, len) in [(0u64, 1u64), (36, 2), (37, 37), (1000, 1400), (9_990, 10), (0, 1400), (2400, 50), (74, 1)] {
            let mut w = Writer::new(&mut out);
            b.copy_into(off, len, &mut w).unwrap();
            assert_eq!(&out[..len as usize], &data[off as usize..(off + len) as usize], "{off}+{len}");
        }
        let mut w = Writer::new(&mut out);
        assert!(b.copy_into(9_990, 11, &mut w).is_none(), "past the written end");
        b.mark_sent(0, 10_000);
        b.on_ack(0, 370, drop);
        let mut w = Writer::new(&mut out);
        assert!(b.copy_into(300, 100, &mut w).is_none(), "freed bytes are gone");
        let mut w = Writer::new(&mut out);
        b.copy_into(370, 100, &mut w).unwrap();
        assert_eq!(&out[..100], &data[370..470]);
    }

    #[test]
    fn lost_after_partial_ack_only_requeues_the_gap() {
        let mut b = SendBuf::default();
        b.push(Bytes::from(alloc::vec![7u8; 100]));
        b.mark_sent(0, 100);
        b.on_ack(20, 30, drop);
        b.on_lost(0, 100);
        assert_eq!(b.retransmit.iter().collect::<alloc::vec::Vec<_>>(), [0..20, 50..100]);
    }
}
