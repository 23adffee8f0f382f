//! Frames inside protected packets (spec §7).

use super::codec::{varint_len, Reader, Writer};

/// PADDING: a run of zero bytes up to the end of the packet.
pub(crate) const FRAME_PADDING: u8 = 0x00;
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
    SessionClose {
        kind: CloseKind,
        code: u64,
    },
    /// `message` is 1 (from the session initiator) or 2 (the answer).
    Rehandshake {
        seq: u64,
        message: u8,
        noise: &'a [u8],
    },
}

impl<'a> Frame<'a> {
    /// Decodes the next frame; `None` if malformed or of an unknown type.
    pub(crate) fn decode(r: &mut Reader<'a>) -> Option<Self> {
        Some(match r.u8()? {
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
            FRAME_SESSION_CLOSE => {
                let kind = match r.u8()? {
                    0 => CloseKind::Transport,
                    1 => CloseKind::Application,
                    _ => return None,
                };
                Frame::SessionClose { kind, code: r.varint()? }
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
            Frame::SessionClose { kind, code } => {
                w.u8(FRAME_SESSION_CLOSE)?;
                w.u8(match kind {
                    CloseKind::Transport => 0,
                    CloseKind::Application => 1,
                })?;
                w.varint(code)
            }
            Frame::Rehandshake { seq, message, noise } => {
                w.u8(FRAME_REHANDSHAKE)?;
                w.varint(seq)?;
                w.u8(message)?;
                w.var_bytes(noise)
            }
        }
    }

    /// Encoded length of this frame.
    pub(crate) fn encoded_len(&self) -> usize {
        match *self {
            Frame::Padding | Frame::Final | Frame::KeepAlive => 1,
            Frame::Datagram(d) => 1 + varint_len(d.len() as u64) + d.len(),
            Frame::SessionClose { code, .. } => 2 + varint_len(code),
            Frame::Rehandshake { seq, noise, .. } => 2 + varint_len(seq) + varint_len(noise.len() as u64) + noise.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Final,
            Frame::KeepAlive,
            Frame::Datagram(b"hello"),
            Frame::Datagram(&[]),
            Frame::SessionClose { kind: CloseKind::Application, code: 42 },
            Frame::SessionClose { kind: CloseKind::Transport, code: 0x3fff_ffff },
            Frame::Rehandshake { seq: 300, message: 2, noise: &[9; 48] },
        ];
        let mut buf = [0u8; 128];
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

    quickcheck! {
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
