//! Transport parameters exchanged in CHALLENGE and AUTH_PROOF (spec §6.4).

use super::codec::{Reader, Writer};

const P_IDLE_TIMEOUT: u64 = 0x01;
const P_MAX_UDP_PAYLOAD: u64 = 0x02;
const P_MAX_DATAGRAM_FRAME: u64 = 0x03;
const P_APP_FRAME_TYPES: u64 = 0x04;
const P_MAX_APP_FRAME: u64 = 0x05;
const P_INITIAL_MAX_DATA: u64 = 0x06;
const P_INITIAL_MAX_STREAM_DATA: u64 = 0x07;
const P_INITIAL_MAX_STREAMS_BIDI: u64 = 0x08;
const P_INITIAL_MAX_STREAMS_UNI: u64 = 0x09;

/// Limits one side announces to its peer. Unknown parameter ids are ignored
/// ([HS-15]); a repeated id or a malformed value aborts the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TransportParams {
    /// Idle timeout in milliseconds (0 = none); the session uses the smaller non-zero value.
    pub idle_timeout_ms: u64,
    /// Largest UDP payload the sender of these params accepts.
    pub max_udp_payload: u64,
    /// Largest DATAGRAM frame payload accepted (0 = datagrams refused).
    pub max_datagram_frame: u64,
    /// Accepted application frame types 0x80–0xFF, one bit each (bit i = type 0x80 + i).
    pub app_frame_types: [u8; 16],
    /// Largest application frame body accepted.
    pub max_app_frame: u64,
    /// Session flow-control limit at the start.
    pub initial_max_data: u64,
    /// Per-stream flow-control limit at the start.
    pub initial_max_stream_data: u64,
    /// Bidirectional streams the peer may open at the start.
    pub initial_max_streams_bidi: u64,
    /// Unidirectional streams the peer may open at the start.
    pub initial_max_streams_uni: u64,
}

impl Default for TransportParams {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 30_000,
            max_udp_payload: 1200,
            max_datagram_frame: 0,
            app_frame_types: [0; 16],
            max_app_frame: 0,
            initial_max_data: 0,
            initial_max_stream_data: 0,
            initial_max_streams_bidi: 0,
            initial_max_streams_uni: 0,
        }
    }
}

impl TransportParams {
    /// Encodes as a sequence of `(id varint, length varint, value)`.
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Option<()> {
        for (id, v) in [
            (P_IDLE_TIMEOUT, self.idle_timeout_ms),
            (P_MAX_UDP_PAYLOAD, self.max_udp_payload),
            (P_MAX_DATAGRAM_FRAME, self.max_datagram_frame),
            (P_MAX_APP_FRAME, self.max_app_frame),
            (P_INITIAL_MAX_DATA, self.initial_max_data),
            (P_INITIAL_MAX_STREAM_DATA, self.initial_max_stream_data),
            (P_INITIAL_MAX_STREAMS_BIDI, self.initial_max_streams_bidi),
            (P_INITIAL_MAX_STREAMS_UNI, self.initial_max_streams_uni),
        ] {
            w.varint(id)?;
            w.varint(super::codec::varint_len(v) as u64)?;
            w.varint(v)?;
        }
        w.varint(P_APP_FRAME_TYPES)?;
        w.var_bytes(&self.app_frame_types)
    }

    /// Decodes a parameter list; starts from defaults for absent ids.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Option<Self> {
        let mut p = TransportParams::default();
        let mut seen = 0u64;
        while !r.is_empty() {
            let id = r.varint()?;
            let value = r.var_bytes()?;
            if id < 64 {
                if seen & (1 << id) != 0 {
                    return None;
                }
                seen |= 1 << id;
            }
            let mut vr = Reader::new(value);
            match id {
                P_IDLE_TIMEOUT => p.idle_timeout_ms = exact_varint(&mut vr)?,
                P_MAX_UDP_PAYLOAD => p.max_udp_payload = exact_varint(&mut vr)?,
                P_MAX_DATAGRAM_FRAME => p.max_datagram_frame = exact_varint(&mut vr)?,
                P_MAX_APP_FRAME => p.max_app_frame = exact_varint(&mut vr)?,
                P_APP_FRAME_TYPES => p.app_frame_types = value.try_into().ok()?,
                P_INITIAL_MAX_DATA => p.initial_max_data = exact_varint(&mut vr)?,
                P_INITIAL_MAX_STREAM_DATA => p.initial_max_stream_data = exact_varint(&mut vr)?,
                P_INITIAL_MAX_STREAMS_BIDI => p.initial_max_streams_bidi = exact_varint(&mut vr)?,
                P_INITIAL_MAX_STREAMS_UNI => p.initial_max_streams_uni = exact_varint(&mut vr)?,
                _ => {}
            }
        }
        if p.max_udp_payload < 1200 {
            return None;
        }
        Some(p)
    }

    /// Whether application frame type `ty` (0x80–0xFF) is accepted.
    pub fn accepts_app_frame(&self, ty: u8) -> bool {
        ty >= 0x80 && self.app_frame_types[usize::from((ty - 0x80) / 8)] & (1 << ((ty - 0x80) % 8)) != 0
    }
}

fn exact_varint(r: &mut Reader<'_>) -> Option<u64> {
    let v = r.varint()?;
    r.is_empty().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    quickcheck::quickcheck! {
        fn decode_of_encode_is_identity(vals: (u32, u16, u16, u32, u64, u64, u16, u16), types: alloc::vec::Vec<u8>) -> bool {
            let p = TransportParams {
                idle_timeout_ms: u64::from(vals.0),
                max_udp_payload: 1200 + u64::from(vals.1),
                max_datagram_frame: u64::from(vals.2),
                app_frame_types: crate::stream::bitmap(&types),
                max_app_frame: u64::from(vals.3),
                initial_max_data: vals.4 & ((1 << 62) - 1),
                initial_max_stream_data: vals.5 & ((1 << 62) - 1),
                initial_max_streams_bidi: u64::from(vals.6),
                initial_max_streams_uni: u64::from(vals.7),
            };
            let mut buf = [0u8; 256];
            let mut w = Writer::new(&mut buf);
            p.encode(&mut w).unwrap();
            let n = w.len();
            TransportParams::decode(&mut Reader::new(&buf[..n])) == Some(p)
        }
    }

    #[test]
    fn round_trip_and_rejections() {
        let mut p = TransportParams {
            idle_timeout_ms: 12_345,
            max_udp_payload: 1452,
            max_datagram_frame: 1100,
            max_app_frame: 65_536,
            ..Default::default()
        };
        p.app_frame_types[0] = 0b101;
        p.app_frame_types[15] = 0x80;
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        p.encode(&mut w).unwrap();
        let n = w.len();
        assert_eq!(TransportParams::decode(&mut Reader::new(&buf[..n])), Some(p));
        assert!(p.accepts_app_frame(0x80) && p.accepts_app_frame(0x82) && p.accepts_app_frame(0xff));
        assert!(!p.accepts_app_frame(0x81) && !p.accepts_app_frame(0x10));

        // Unknown ids are skipped; duplicates and short values rejected.
        let unknown = [0x3f, 0x01, 0x00];
        assert_eq!(TransportParams::decode(&mut Reader::new(&unknown)), Some(TransportParams::default()));
        let dup = [0x01, 0x01, 0x05, 0x01, 0x01, 0x06];
        assert_eq!(TransportParams::decode(&mut Reader::new(&dup)), None);
        let small_mtu = [0x02, 0x01, 0x05];
        assert_eq!(TransportParams::decode(&mut Reader::new(&small_mtu)), None);
        assert_eq!(TransportParams::decode(&mut Reader::new(&buf[..n - 1])), None);
    }
}
