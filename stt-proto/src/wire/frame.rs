//! Frames inside protected packets (spec §7).

use super::codec::{varint_len, Reader, Writer, VARINT_MAX};

/// PADDING: a run of zero bytes up to the end of the packet.
pub(crate) const FRAME_PADDING: u8 = 0x00;
/// DATA: stream bytes.
pub(crate) const FRAME_DATA: u8 = 0x10;
/// ACK: received packet-number ranges.
pub(crate) const FRAME_ACK: u8 = 0x11;
/// MAX_DATA: session flow-control limit.
pub(crate) const FRAME_MAX_DATA: u8 = 0x16;
/// MAX_STREAM_DATA: stream flow-control limit.
pub(crate) const FRAME_MAX_STREAM_DATA: u8 = 0x17;
/// MAX_STREAMS: stream-count limit (bidi or uni).
pub(crate) const FRAME_MAX_STREAMS: u8 = 0x18;
/// DATA_BLOCKED: the sender is blocked by the session limit.
pub(crate) const FRAME_DATA_BLOCKED: u8 = 0x19;
/// STREAM_DATA_BLOCKED: the sender is blocked by a stream limit.
pub(crate) const FRAME_STREAM_DATA_BLOCKED: u8 = 0x1a;
/// STREAMS_BLOCKED: the sender wants more streams.
pub(crate) const FRAME_STREAMS_BLOCKED: u8 = 0x1b;
/// STREAM_CLOSE: reset a stream's sending side with a code.
pub(crate) const FRAME_STREAM_CLOSE: u8 = 0x21;
/// STREAM_FIN: stream bytes that end the stream.
pub(crate) const FRAME_STREAM_FIN: u8 = 0x22;
/// STOP_SENDING: ask the peer to stop sending on a stream.
pub(crate) const FRAME_STOP_SENDING: u8 = 0x23;
/// PATH_CHALLENGE: path validation probe.
pub(crate) const FRAME_PATH_CHALLENGE: u8 = 0x31;
/// PATH_RESPONSE: path validation answer.
pub(crate) const FRAME_PATH_RESPONSE: u8 = 0x32;

/// Largest number of additional ACK ranges accepted or sent.
pub(crate) const MAX_ACK_RANGES: u64 = 64;
/// FINAL: the responder's handshake confirmation (first protected packet).
pub(crate) const FRAME_FINAL: u8 = 0x12;
/// KEEP_ALIVE: elicits nothing, refreshes idle timers and NAT bindings.
pub(crate) const FRAME_KEEP_ALIVE: u8 = 0x13;
/// DATAGRAM: one unreliable message.
pub(crate) const FRAME_DATAGRAM: u8 = 0x14;
/// REHANDSHAKE: one message of the in-session re-handshake.
pub(crate) const FRAME_REHANDSHAKE: u8 = 0x15;
/// SESSION_CLOSE: the sender is closing the session.
pub(crate) const FRAME_SESSION_CLOSE: u8 = 0x30;
/// SESSION_CLOSE with a reason phrase (spec [LC-11]).
pub(crate) const FRAME_SESSION_CLOSE_REASON: u8 = 0x33;
/// Longest reason phrase in a SESSION_CLOSE, in bytes.
pub(crate) const MAX_CLOSE_REASON: usize = 255;
/// RELAY_REGISTER: a member asks the relay to forward to it (spec §12).
pub(crate) const FRAME_RELAY_REGISTER: u8 = 0x38;
/// RELAY_STATUS: the relay's answer and the member's address as the relay sees it.
pub(crate) const FRAME_RELAY_STATUS: u8 = 0x39;
/// RELAY_DATA: one end-to-end STT datagram to (member → relay) or from (relay → member) a peer.
pub(crate) const FRAME_RELAY_DATA: u8 = 0x3a;
/// CANDIDATES: the sender's direct addresses, for hole punching (end to end).
pub(crate) const FRAME_CANDIDATES: u8 = 0x3b;
/// Addresses one CANDIDATES frame may carry.
pub(crate) const MAX_CANDIDATES: usize = 8;
/// RELAY_DATA bytes besides the datagram: type, node id, a 2-byte length.
pub(crate) const RELAY_DATA_OVERHEAD: usize = 1 + 32 + 2;

/// Who a close code belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloseKind {
    /// A code from the spec's transport close-code table (§8.3).
    Transport,
    /// A code chosen by the application.
    Application,
}

/// A decoded frame; byte payloads borrow from the decrypted packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Frame<'a> {
    Padding,
    Final,
    KeepAlive,
    Datagram(&'a [u8]),
    /// 0x30, or 0x33 with a non-empty `reason` (UTF-8, at most [`MAX_CLOSE_REASON`] bytes).
    SessionClose {
        kind: CloseKind,
        code: u64,
        reason: &'a [u8],
    },
    /// `message` is 1 (from the session initiator) or 2 (the answer).
    Rehandshake {
        seq: u64,
        message: u8,
        noise: &'a [u8],
    },
    Ack(AckFrame<'a>),
    Stream {
        id: u64,
        offset: u64,
        data: &'a [u8],
        fin: bool,
    },
    StreamClose {
        id: u64,
        code: u64,
        final_size: u64,
    },
    StopSending {
        id: u64,
        code: u64,
    },
    MaxData(u64),
    MaxStreamData {
        id: u64,
        max: u64,
    },
    MaxStreams {
        uni: bool,
        count: u64,
    },
    DataBlocked(u64),
    StreamDataBlocked {
        id: u64,
        limit: u64,
    },
    StreamsBlocked {
        uni: bool,
        limit: u64,
    },
    PathChallenge([u8; 8]),
    PathResponse([u8; 8]),
    RelayRegister,
    /// `status`: 0 registered, 1 refused.
    RelayStatus {
        status: u8,
        observed: Option<core::net::SocketAddr>,
    },
    RelayData {
        peer: [u8; 32],
        data: &'a [u8],
    },
    /// `addrs` holds `count` encoded addresses, validated by `decode`.
    Candidates {
        round: u64,
        addrs: &'a [u8],
    },
}

/// Iterates the addresses of a decoded CANDIDATES frame.
pub(crate) fn candidate_addrs(addrs: &[u8]) -> impl Iterator<Item = core::net::SocketAddr> + '_ {
    let mut r = Reader::new(addrs);
    core::iter::from_fn(move || super::handshake::decode_addr(&mut r).flatten())
}

/// A decoded ACK frame; its ranges were validated when decoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct AckFrame<'a> {
    pub(crate) largest: u64,
    /// Acknowledgement delay in microseconds.
    pub(crate) delay_us: u64,
    first_range: u64,
    count: u64,
    rest: &'a [u8],
}

impl<'a> AckFrame<'a> {
    fn decode(r: &mut Reader<'a>) -> Option<Self> {
        let largest = r.varint()?;
        let delay_us = r.varint()?.checked_mul(8)?;
        let count = r.varint()?;
        if count > MAX_ACK_RANGES {
            return None;
        }
        let first_range = r.varint()?;
        let mut smallest = largest.checked_sub(first_range)?;
        let before = *r;
        for _ in 0..count {
            let gap = r.varint()?;
            let len = r.varint()?;
            let next_largest = smallest.checked_sub(gap)?.checked_sub(2)?;
            smallest = next_largest.checked_sub(len)?;
        }
        let used = before.remaining() - r.remaining();
        let rest = before.clone_prefix(used)?;
        Some(Self { largest, delay_us, first_range, count, rest })
    }

    /// The acknowledged ranges, highest first.
    pub(crate) fn ranges(&self) -> impl Iterator<Item = core::ops::Range<u64>> + 'a {
        let first = (self.largest - self.first_range)..self.largest + 1;
        let mut r = Reader::new(self.rest);
        let mut smallest = first.start;
        core::iter::once(first).chain((0..self.count).map_while(move |_| {
            let gap = r.varint()?;
            let len = r.varint()?;
            let largest = smallest.checked_sub(gap)?.checked_sub(2)?;
            smallest = largest.checked_sub(len)?;
            Some(smallest..largest + 1)
        }))
    }

    /// Encodes an ACK for `ranges` (at most [`MAX_ACK_RANGES`] + 1, the highest kept).
    pub(crate) fn encode(ranges: &crate::range_set::RangeSet, delay_us: u64, w: &mut Writer<'_>) -> Option<()> {
        let mut it = ranges.iter().rev().take(MAX_ACK_RANGES as usize + 1);
        let first = it.next()?;
        let count = ranges.len().min(MAX_ACK_RANGES as usize + 1) - 1;
        w.u8(FRAME_ACK)?;
        w.varint(first.end - 1)?;
        w.varint(delay_us / 8)?;
        w.varint(count as u64)?;
        w.varint(first.end - 1 - first.start)?;
        let mut smallest = first.start;
        for r in it {
            w.varint(smallest - r.end - 1)?;
            w.varint(r.end - 1 - r.start)?;
            smallest = r.start;
        }
        Some(())
    }
}

impl<'a> Frame<'a> {
    /// Decodes the next frame; `None` if malformed or of an unknown type.
    pub(crate) fn decode(r: &mut Reader<'a>) -> Option<Self> {
        let ty = r.u8()?;
        Some(match ty {
            FRAME_PADDING => {
                // Padding runs to the end of the packet; it must be all zeros.
                if r.rest().iter().any(|b| *b != 0) {
                    return None;
                }
                Frame::Padding
            }
            FRAME_FINAL => Frame::Final,
            FRAME_KEEP_ALIVE => Frame::KeepAlive,
            FRAME_DATAGRAM => Frame::Datagram(r.var_bytes()?),
            FRAME_REHANDSHAKE => {
                let seq = r.varint()?;
                let message = r.u8()?;
                if !(1..=2).contains(&message) {
                    return None;
                }
                Frame::Rehandshake { seq, message, noise: r.var_bytes()? }
            }
            FRAME_ACK => Frame::Ack(AckFrame::decode(r)?),
            FRAME_DATA | FRAME_STREAM_FIN => {
                let id = r.varint()?;
                let offset = r.varint()?;
                let data = r.var_bytes()?;
                offset.checked_add(data.len() as u64).filter(|end| *end <= VARINT_MAX)?;
                Frame::Stream { id, offset, data, fin: ty == FRAME_STREAM_FIN }
            }
            FRAME_STREAM_CLOSE => Frame::StreamClose { id: r.varint()?, code: r.varint()?, final_size: r.varint()? },
            FRAME_STOP_SENDING => Frame::StopSending { id: r.varint()?, code: r.varint()? },
            FRAME_MAX_DATA => Frame::MaxData(r.varint()?),
            FRAME_MAX_STREAM_DATA => Frame::MaxStreamData { id: r.varint()?, max: r.varint()? },
            FRAME_MAX_STREAMS => Frame::MaxStreams { uni: decode_dir(r)?, count: r.varint()? },
            FRAME_DATA_BLOCKED => Frame::DataBlocked(r.varint()?),
            FRAME_STREAM_DATA_BLOCKED => Frame::StreamDataBlocked { id: r.varint()?, limit: r.varint()? },
            FRAME_STREAMS_BLOCKED => Frame::StreamsBlocked { uni: decode_dir(r)?, limit: r.varint()? },
            FRAME_PATH_CHALLENGE => Frame::PathChallenge(r.array()?),
            FRAME_PATH_RESPONSE => Frame::PathResponse(r.array()?),
            // Unknown frames in a build without the `relay` feature (spec §12, [FR-1]).
            FRAME_RELAY_REGISTER..=FRAME_CANDIDATES if !cfg!(feature = "relay") => return None,
            FRAME_RELAY_REGISTER => Frame::RelayRegister,
            FRAME_RELAY_STATUS => {
                let status = r.u8()?;
                if status > 1 {
                    return None;
                }
                Frame::RelayStatus { status, observed: super::handshake::decode_addr(r)? }
            }
            FRAME_RELAY_DATA => Frame::RelayData { peer: r.array()?, data: r.var_bytes()? },
            FRAME_CANDIDATES => {
                let round = r.varint()?;
                let count = usize::from(r.u8()?);
                if count > MAX_CANDIDATES {
                    return None;
                }
                let start = r.peek_rest();
                for _ in 0..count {
                    // Every entry is a real address (no "none").
                    super::handshake::decode_addr(r)??;
                }
                let used = start.len() - r.peek_rest().len();
                Frame::Candidates { round, addrs: start.get(..used)? }
            }
            FRAME_SESSION_CLOSE | FRAME_SESSION_CLOSE_REASON => {
                let kind = match r.u8()? {
                    0 => CloseKind::Transport,
                    1 => CloseKind::Application,
                    _ => return None,
                };
                let code = r.varint()?;
                let reason = if ty == FRAME_SESSION_CLOSE_REASON {
                    let reason = r.var_bytes()?;
                    if reason.is_empty() || reason.len() > MAX_CLOSE_REASON || core::str::from_utf8(reason).is_err() {
                        return None;
                    }
                    reason
                } else {
                    &[]
                };
                Frame::SessionClose { kind, code, reason }
            }
            _ => return None,
        })
    }

    /// Encodes this frame (PADDING writes one zero byte).
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Option<()> {
        match *self {
            Frame::Padding => w.u8(FRAME_PADDING),
            Frame::Final => w.u8(FRAME_FINAL),
            Frame::KeepAlive => w.u8(FRAME_KEEP_ALIVE),
            Frame::Datagram(d) => {
                w.u8(FRAME_DATAGRAM)?;
                w.var_bytes(d)
            }
            Frame::SessionClose { kind, code, reason } => {
                w.u8(if reason.is_empty() { FRAME_SESSION_CLOSE } else { FRAME_SESSION_CLOSE_REASON })?;
                w.u8(match kind {
                    CloseKind::Transport => 0,
                    CloseKind::Application => 1,
                })?;
                w.varint(code)?;
                if reason.is_empty() {
                    Some(())
                } else {
                    w.var_bytes(reason)
                }
            }
            Frame::Rehandshake { seq, message, noise } => {
                w.u8(FRAME_REHANDSHAKE)?;
                w.varint(seq)?;
                w.u8(message)?;
                w.var_bytes(noise)
            }
            Frame::Ack(a) => {
                w.u8(FRAME_ACK)?;
                w.varint(a.largest)?;
                w.varint(a.delay_us / 8)?;
                w.varint(a.count)?;
                w.varint(a.first_range)?;
                w.bytes(a.rest)
            }
            Frame::Stream { id, offset, data, fin } => {
                w.u8(if fin { FRAME_STREAM_FIN } else { FRAME_DATA })?;
                w.varint(id)?;
                w.varint(offset)?;
                w.var_bytes(data)
            }
            Frame::StreamClose { id, code, final_size } => {
                w.u8(FRAME_STREAM_CLOSE)?;
                w.varint(id)?;
                w.varint(code)?;
                w.varint(final_size)
            }
            Frame::StopSending { id, code } => {
                w.u8(FRAME_STOP_SENDING)?;
                w.varint(id)?;
                w.varint(code)
            }
            Frame::MaxData(v) => {
                w.u8(FRAME_MAX_DATA)?;
                w.varint(v)
            }
            Frame::MaxStreamData { id, max } => {
                w.u8(FRAME_MAX_STREAM_DATA)?;
                w.varint(id)?;
                w.varint(max)
            }
            Frame::MaxStreams { uni, count } => {
                w.u8(FRAME_MAX_STREAMS)?;
                w.u8(u8::from(uni))?;
                w.varint(count)
            }
            Frame::DataBlocked(v) => {
                w.u8(FRAME_DATA_BLOCKED)?;
                w.varint(v)
            }
            Frame::StreamDataBlocked { id, limit } => {
                w.u8(FRAME_STREAM_DATA_BLOCKED)?;
                w.varint(id)?;
                w.varint(limit)
            }
            Frame::StreamsBlocked { uni, limit } => {
                w.u8(FRAME_STREAMS_BLOCKED)?;
                w.u8(u8::from(uni))?;
                w.varint(limit)
            }
            Frame::PathChallenge(d) => {
                w.u8(FRAME_PATH_CHALLENGE)?;
                w.bytes(&d)
            }
            Frame::PathResponse(d) => {
                w.u8(FRAME_PATH_RESPONSE)?;
                w.bytes(&d)
            }
            Frame::RelayRegister => w.u8(FRAME_RELAY_REGISTER),
            Frame::RelayStatus { status, observed } => {
                w.u8(FRAME_RELAY_STATUS)?;
                w.u8(status)?;
                super::handshake::encode_addr(w, observed)
            }
            Frame::RelayData { peer, data } => {
                w.u8(FRAME_RELAY_DATA)?;
                w.bytes(&peer)?;
                w.var_bytes(data)
            }
            Frame::Candidates { round, addrs } => {
                w.u8(FRAME_CANDIDATES)?;
                w.varint(round)?;
                w.u8(u8::try_from(candidate_addrs(addrs).count()).ok()?)?;
                w.bytes(addrs)
            }
        }
    }

    /// Encoded length of this frame.
    pub(crate) fn encoded_len(&self) -> usize {
        match *self {
            Frame::Padding | Frame::Final | Frame::KeepAlive => 1,
            Frame::Datagram(d) => 1 + varint_len(d.len() as u64) + d.len(),
            Frame::SessionClose { code, reason: [], .. } => 2 + varint_len(code),
            Frame::SessionClose { code, reason, .. } => {
                2 + varint_len(code) + varint_len(reason.len() as u64) + reason.len()
            }
            Frame::Rehandshake { seq, noise, .. } => 2 + varint_len(seq) + varint_len(noise.len() as u64) + noise.len(),
            Frame::Ack(a) => {
                1 + varint_len(a.largest)
                    + varint_len(a.delay_us / 8)
                    + varint_len(a.count)
                    + varint_len(a.first_range)
                    + a.rest.len()
            }
            Frame::Stream { id, offset, data, .. } => stream_frame_len(id, offset, data.len()),
            Frame::StreamClose { id, code, final_size } => {
                1 + varint_len(id) + varint_len(code) + varint_len(final_size)
            }
            Frame::StopSending { id, code } => 1 + varint_len(id) + varint_len(code),
            Frame::MaxData(v) | Frame::DataBlocked(v) => 1 + varint_len(v),
            Frame::MaxStreamData { id, max: v } | Frame::StreamDataBlocked { id, limit: v } => {
                1 + varint_len(id) + varint_len(v)
            }
            Frame::MaxStreams { count: v, .. } | Frame::StreamsBlocked { limit: v, .. } => 2 + varint_len(v),
            Frame::PathChallenge(_) | Frame::PathResponse(_) => 9,
            Frame::RelayRegister => 1,
            Frame::RelayStatus { observed, .. } => {
                2 + match observed {
                    None => 1,
                    Some(core::net::SocketAddr::V4(_)) => 7,
                    Some(core::net::SocketAddr::V6(_)) => 19,
                }
            }
            Frame::RelayData { data, .. } => 33 + varint_len(data.len() as u64) + data.len(),
            Frame::Candidates { round, addrs } => 2 + varint_len(round) + addrs.len(),
        }
    }
}

/// Encoded length of a DATA / STREAM_FIN frame carrying `len` bytes.
pub(crate) const fn stream_frame_len(id: u64, offset: u64, len: usize) -> usize {
    1 + varint_len(id) + varint_len(offset) + varint_len(len as u64) + len
}

fn decode_dir(r: &mut Reader<'_>) -> Option<bool> {
    match r.u8()? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    /// [LC-11]: a reason travels in frame 0x33 (0x30 stays the form without one); an empty,
    /// oversized or non-UTF-8 reason does not decode.
    #[test]
    fn close_reason_limits() {
        let mut buf = [0u8; 600];
        let enc = |f: Frame<'_>, buf: &mut [u8]| {
            let mut w = Writer::new(buf);
            f.encode(&mut w).unwrap();
            w.len()
        };
        let n = enc(Frame::SessionClose { kind: CloseKind::Application, code: 2, reason: &[] }, &mut buf);
        assert_eq!(buf[0], FRAME_SESSION_CLOSE);
        assert_eq!(n, 3);
        let long = [b'x'; MAX_CLOSE_REASON];
        let n = enc(Frame::SessionClose { kind: CloseKind::Application, code: 2, reason: &long }, &mut buf);
        assert_eq!(buf[0], FRAME_SESSION_CLOSE_REASON);
        let got = Frame::decode(&mut Reader::new(&buf[..n])).unwrap();
        assert_eq!(got, Frame::SessionClose { kind: CloseKind::Application, code: 2, reason: &long });
        for bad in [&[][..], &[b'x'; MAX_CLOSE_REASON + 1][..], &[0xff, 0xfe][..]] {
            let mut w = Writer::new(&mut buf);
            w.u8(FRAME_SESSION_CLOSE_REASON).unwrap();
            w.u8(1).unwrap();
            w.varint(2).unwrap();
            w.var_bytes(bad).unwrap();
            let n = w.len();
            assert_eq!(Frame::decode(&mut Reader::new(&buf[..n])), None, "{bad:?}");
        }
    }

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Final,
            Frame::KeepAlive,
            Frame::Datagram(b"hello"),
            Frame::Datagram(&[]),
            Frame::SessionClose { kind: CloseKind::Application, code: 42, reason: &[] },
            Frame::SessionClose { kind: CloseKind::Transport, code: 0x3fff_ffff, reason: &[] },
            Frame::SessionClose { kind: CloseKind::Application, code: 3, reason: "receiver shut down".as_bytes() },
            Frame::Rehandshake { seq: 300, message: 2, noise: &[9; 48] },
            Frame::Stream { id: 4, offset: 1 << 20, data: b"abc", fin: true },
            Frame::Stream { id: 1, offset: 0, data: b"", fin: false },
            Frame::StreamClose { id: 8, code: 3, final_size: 99 },
            Frame::StopSending { id: 9, code: 1 },
            Frame::MaxData(1 << 30),
            Frame::MaxStreamData { id: 2, max: 5000 },
            Frame::MaxStreams { uni: true, count: 100 },
            Frame::DataBlocked(7),
            Frame::StreamDataBlocked { id: 3, limit: 8 },
            Frame::StreamsBlocked { uni: false, limit: 10 },
            Frame::PathChallenge([1; 8]),
            Frame::PathResponse([2; 8]),
        ];
        let mut buf = [0u8; 512];
        let mut w = Writer::new(&mut buf);
        for f in &frames {
            let before = w.len();
            f.encode(&mut w).unwrap();
            assert_eq!(w.len() - before, f.encoded_len(), "{f:?}");
        }
        Frame::Padding.encode(&mut w).unwrap();
        let n = w.len();
        let mut r = Reader::new(&buf[..n]);
        for f in &frames {
            assert_eq!(Frame::decode(&mut r).as_ref(), Some(f));
        }
        assert_eq!(Frame::decode(&mut r), Some(Frame::Padding));
        assert!(r.is_empty());
        assert_eq!(Frame::decode(&mut Reader::new(&[0x77])), None, "unknown type");
        assert_eq!(Frame::decode(&mut Reader::new(&[0x00, 0x01])), None, "non-zero padding");
        assert_eq!(Frame::decode(&mut Reader::new(&[0x30, 0x02, 0x00])), None, "bad close kind");
    }

    #[test]
    fn ack_ranges_round_trip() {
        let mut set = crate::range_set::RangeSet::new();
        for r in [0..3u64, 5..6, 10..20, 21..22] {
            set.insert(r);
        }
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        AckFrame::encode(&set, 800, &mut w).unwrap();
        let n = w.len();
        let Some(Frame::Ack(a)) = Frame::decode(&mut Reader::new(&buf[..n])) else { panic!() };
        assert_eq!((a.largest, a.delay_us), (21, 800));
        assert_eq!(a.ranges().collect::<alloc::vec::Vec<_>>(), [21..22, 10..20, 5..6, 0..3]);
        assert_eq!(Frame::Ack(a).encoded_len(), n);
        // A gap below zero is malformed.
        assert_eq!(Frame::decode(&mut Reader::new(&[0x11, 2, 0, 1, 0, 5, 0])), None);
    }

    quickcheck! {
        fn ack_encode_decode_is_the_set(values: alloc::vec::Vec<u16>) -> bool {
            let mut set = crate::range_set::RangeSet::new();
            for v in &values { set.insert(u64::from(*v)..u64::from(*v) + 1); }
            if set.is_empty() { return true; }
            let mut buf = alloc::vec![0u8; 4096];
            let mut w = Writer::new(&mut buf);
            AckFrame::encode(&set, 0, &mut w).unwrap();
            let n = w.len();
            let Some(Frame::Ack(a)) = Frame::decode(&mut Reader::new(&buf[..n])) else { return false };
            let mut got = crate::range_set::RangeSet::new();
            for r in a.ranges() { got.insert(r); }
            let mut expect = set.clone();
            expect.truncate_low(MAX_ACK_RANGES as usize + 1);
            got == expect
        }

        fn decode_never_panics(data: alloc::vec::Vec<u8>) -> bool {
            let mut r = Reader::new(&data);
            while let Some(f) = Frame::decode(&mut r) {
                let mut out = [0u8; 2048];
                let mut w = Writer::new(&mut out);
                if f.encode(&mut w).is_some() && f != Frame::Padding {
                    let n = w.len();
                    if Frame::decode(&mut Reader::new(&out[..n])) != Some(f) { return false; }
                }
            }
            true
        }
    }
}
