//! Bounds-checked byte cursors and QUIC variable-length integers (spec §4.1).

/// Largest value a varint can carry (2^62 - 1).
pub(crate) const VARINT_MAX: u64 = (1 << 62) - 1;

/// A reader over untrusted bytes. Every method checks bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The first `n` bytes of what remains, without consuming them.
    pub(crate) fn clone_prefix(&self, n: usize) -> Option<&'a [u8]> {
        self.buf.get(..n)
    }

    /// What is left, without consuming it.
    pub(crate) fn peek_rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|a| a[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// A QUIC varint (RFC 9000 §16).
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let first = *self.buf.first()?;
        let len = 1usize << (first >> 6);
        let raw = self.bytes(len)?;
        let mut v = u64::from(first & 0x3f);
        for b in &raw[1..] {
            v = v << 8 | u64::from(*b);
        }
        Some(v)
    }

    /// A varint length followed by that many bytes.
    pub(crate) fn var_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.bytes(n)
    }
}

/// A writer into a caller buffer. Methods return `None` when the buffer is full,
/// leaving the already-written prefix in place.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Forgets what was written after `len` (a frame that did not fit whole).
    pub(crate) fn rewind(&mut self, len: usize) {
        self.pos = self.pos.min(len);
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(b.len())?;
        self.buf.get_mut(self.pos..end)?.copy_from_slice(b);
        self.pos = end;
        Some(())
    }

    pub(crate) fn zeros(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        self.buf.get_mut(self.pos..end)?.fill(0);
        self.pos = end;
        Some(())
    }

    pub(crate) fn u8(&mut self, v: u8) -> Option<()> {
        self.bytes(&[v])
    }

    pub(crate) fn u16(&mut self, v: u16) -> Option<()> {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn u32(&mut self, v: u32) -> Option<()> {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> Option<()> {
        self.bytes(&v.to_be_bytes())
    }

    pub(crate) fn varint(&mut self, v: u64) -> Option<()> {
        match v {
            0..=0x3f => self.u8(v as u8),
            0x40..=0x3fff => self.u16(0x4000 | v as u16),
            0x4000..=0x3fff_ffff => self.u32(0x8000_0000 | v as u32),
            0x4000_0000..=VARINT_MAX => self.u64(0xc000_0000_0000_0000 | v),
            _ => None,
        }
    }

    pub(crate) fn var_bytes(&mut self, b: &[u8]) -> Option<()> {
        self.varint(b.len() as u64)?;
        self.bytes(b)
    }
}

/// Encoded size of a varint holding `v` (values above [`VARINT_MAX`] report 8).
pub(crate) const fn varint_len(v: u64) -> usize {
    match v {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        0x4000..=0x3fff_ffff => 4,
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    quickcheck! {
        fn varint_round_trip(v: u64) -> bool {
            let v = v & VARINT_MAX;
            let mut buf = [0u8; 8];
            let mut w = Writer::new(&mut buf);
            w.varint(v).unwrap();
            let n = w.len();
            n == varint_len(v) && Reader::new(&buf[..n]).varint() == Some(v)
        }

        fn reader_never_panics(data: alloc::vec::Vec<u8>) -> bool {
            let mut r = Reader::new(&data);
            while r.varint().is_some() {}
            let mut r = Reader::new(&data);
            let _ = r.var_bytes();
            true
        }
    }

    #[test]
    fn varint_rfc9000_examples() {
        let cases: [(&[u8], u64); 4] = [
            (&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c], 151_288_809_941_952_652),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, v) in cases {
            assert_eq!(Reader::new(bytes).varint(), Some(v));
        }
        assert_eq!(Reader::new(&[0x40]).varint(), None, "truncated varint");
        let mut small = [0u8; 1];
        assert_eq!(Writer::new(&mut small).u16(1), None, "full writer refuses");
        assert_eq!(Writer::new(&mut [0u8; 8]).varint(VARINT_MAX + 1), None);
    }
}
