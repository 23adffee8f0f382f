//! Packet headers (spec §4.2): the cleartext handshake headers and the record header.

use core::fmt;

use super::codec::{Reader, Writer};

/// The only protocol version this implementation speaks (spec [PK-2]).
pub const VERSION: u8 = 0x01;

/// Type byte of a HELLO.
pub(crate) const TYPE_HELLO: u8 = 0x01;
/// Type byte of a CHALLENGE.
pub(crate) const TYPE_CHALLENGE: u8 = 0x02;
/// Type byte of an AUTH_PROOF.
pub(crate) const TYPE_AUTH_PROOF: u8 = 0x03;
/// Type byte of a COOKIE.
pub(crate) const TYPE_COOKIE: u8 = 0x04;
/// First byte of a protected packet with key phase 0; key phase 1 sets bit 0.
pub(crate) const TYPE_PROTECTED: u8 = 0x40;

/// Length of a HELLO header: type, version, sender session id.
pub(crate) const HELLO_HEADER_LEN: usize = 10;
/// Length of a CHALLENGE / AUTH_PROOF header: type, version, sender and receiver ids.
pub(crate) const HS_HEADER_LEN: usize = 18;
/// Length of a COOKIE header: type, version, receiver id.
pub(crate) const COOKIE_HEADER_LEN: usize = 10;
/// Length of the record header: flags, receiver id, truncated packet number.
pub(crate) const RECORD_HEADER_LEN: usize = 13;

/// A session id chosen by the receiving side (8 random bytes, optional routing prefix).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WireSessionId(pub [u8; 8]);

impl fmt::Debug for WireSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sid:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The header of any STT datagram, decoded from its first bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Header {
    /// HELLO: the initiator's session id.
    Hello { version: u8, sender: WireSessionId },
    /// CHALLENGE or AUTH_PROOF.
    Handshake { ty: u8, version: u8, sender: WireSessionId, receiver: WireSessionId },
    /// COOKIE, routed to the initiator's session.
    Cookie { version: u8, receiver: WireSessionId },
    /// A protected packet.
    Protected { key_phase: bool, receiver: WireSessionId, truncated_pn: u32 },
}

impl Header {
    /// Decodes the header at the front of `datagram`; `None` if it is not STT.
    pub(crate) fn decode(datagram: &[u8]) -> Option<(Header, usize)> {
        let mut r = Reader::new(datagram);
        let first = r.u8()?;
        let header = match first {
            TYPE_HELLO => Header::Hello { version: r.u8()?, sender: WireSessionId(r.array()?) },
            TYPE_CHALLENGE | TYPE_AUTH_PROOF => Header::Handshake {
                ty: first,
                version: r.u8()?,
                sender: WireSessionId(r.array()?),
                receiver: WireSessionId(r.array()?),
            },
            TYPE_COOKIE => Header::Cookie { version: r.u8()?, receiver: WireSessionId(r.array()?) },
            0x40 | 0x41 => Header::Protected {
                key_phase: first & 1 == 1,
                receiver: WireSessionId(r.array()?),
                truncated_pn: r.u32()?,
            },
            _ => return None,
        };
        Some((header, datagram.len() - r.remaining()))
    }

    /// Writes this header; returns its length.
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Option<usize> {
        let start = w.len();
        match *self {
            Header::Hello { version, sender } => {
                w.u8(TYPE_HELLO)?;
                w.u8(version)?;
                w.bytes(&sender.0)?;
            }
            Header::Handshake { ty, version, sender, receiver } => {
                w.u8(ty)?;
                w.u8(version)?;
                w.bytes(&sender.0)?;
                w.bytes(&receiver.0)?;
            }
            Header::Cookie { version, receiver } => {
                w.u8(TYPE_COOKIE)?;
                w.u8(version)?;
                w.bytes(&receiver.0)?;
            }
            Header::Protected { key_phase, receiver, truncated_pn } => {
                w.u8(TYPE_PROTECTED | u8::from(key_phase))?;
                w.bytes(&receiver.0)?;
                w.u32(truncated_pn)?;
            }
        }
        Some(w.len() - start)
    }
}

/// Recovers a full packet number from its low 32 bits (RFC 9000 §A.3).
pub(crate) fn decode_packet_number(largest: Option<u64>, truncated: u32) -> u64 {
    const WIN: u64 = 1 << 32;
    const HWIN: u64 = WIN / 2;
    const MASK: u64 = WIN - 1;
    let expected = largest.map_or(0, |l| l.saturating_add(1));
    let candidate = (expected & !MASK) | u64::from(truncated);
    if candidate.saturating_add(HWIN) <= expected && candidate < (1 << 62) - WIN {
        candidate + WIN
    } else if candidate > expected.saturating_add(HWIN) && candidate >= WIN {
        candidate - WIN
    } else {
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    #[test]
    fn every_header_round_trips() {
        let s = WireSessionId([1, 2, 3, 4, 5, 6, 7, 8]);
        let r = WireSessionId([9; 8]);
        let headers = [
            Header::Hello { version: VERSION, sender: s },
            Header::Handshake { ty: TYPE_CHALLENGE, version: VERSION, sender: s, receiver: r },
            Header::Handshake { ty: TYPE_AUTH_PROOF, version: 7, sender: r, receiver: s },
            Header::Cookie { version: VERSION, receiver: s },
            Header::Protected { key_phase: true, receiver: r, truncated_pn: 0xdead_beef },
            Header::Protected { key_phase: false, receiver: r, truncated_pn: 0 },
        ];
        for h in headers {
            let mut buf = [0u8; 32];
            let mut w = Writer::new(&mut buf);
            let n = h.encode(&mut w).unwrap();
            assert_eq!(Header::decode(&buf[..n]), Some((h, n)));
            assert_eq!(Header::decode(&buf[..n - 1]), None, "truncated {h:?}");
        }
        assert_eq!(Header::decode(&[0x99, 0, 0]), None);
        assert_eq!(Header::decode(&[]), None);
    }

    #[test]
    fn packet_number_decoding_rfc9000_example() {
        // RFC 9000 §A.3 uses 16-bit truncation; the same rule with 32 bits:
        assert_eq!(decode_packet_number(Some(0xa82f_30ea), 0x9b32), (1 << 32) | 0x9b32);
        assert_eq!(decode_packet_number(None, 0), 0);
        assert_eq!(decode_packet_number(Some(5), 7), 7);
        assert_eq!(decode_packet_number(Some((1 << 32) + 10), 3), (1 << 32) + 3);
        assert_eq!(decode_packet_number(Some((1 << 32) + 10), 0xffff_fff0), 0xffff_fff0);
    }

    quickcheck! {
        fn packet_number_recovers_near_largest(largest: u64, delta: i32) -> bool {
            let largest = largest >> 3;
            let pn = largest.wrapping_add_signed(i64::from(delta / 2));
            if pn >= 1 << 60 { return true; }
            decode_packet_number(Some(largest), pn as u32) == pn
        }
    }
}
