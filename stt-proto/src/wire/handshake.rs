//! Handshake payloads carried inside the Noise messages (spec §6.3).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::codec::{Reader, Writer};
use super::header::WireSessionId;
use super::params::TransportParams;
use crate::addr::PathAddr;
use crate::crypto::AeadAlg;

/// HELLO payload: the initiator's wall clock and AEAD offer; the rest is zero padding.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct HelloPayload {
    pub(crate) timestamp_ms: u64,
    /// Offered AEADs in preference order (1 or 2 entries).
    pub(crate) offer: [Option<AeadAlg>; 2],
}

impl HelloPayload {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Option<()> {
        w.u64(self.timestamp_ms)?;
        let n = self.offer.iter().flatten().count();
        w.u8(n as u8)?;
        for a in self.offer.iter().flatten() {
            w.u8(a.id())?;
        }
        Some(())
    }

    /// Decodes; unknown AEAD ids in the offer are skipped, padding must be zero.
    pub(crate) fn decode(buf: &[u8]) -> Option<Self> {
        let mut r = Reader::new(buf);
        let timestamp_ms = r.u64()?;
        let n = r.u8()?;
        let mut offer = [None; 2];
        let mut k = 0;
        for id in r.bytes(usize::from(n))? {
            if let Some(a) = AeadAlg::from_id(*id) {
                if k < 2 && !offer.contains(&Some(a)) {
                    offer[k] = Some(a);
                    k += 1;
                }
            }
        }
        if r.rest().iter().any(|b| *b != 0) {
            return None;
        }
        Some(Self { timestamp_ms, offer })
    }
}

/// CHALLENGE payload: the responder's id echo, AEAD choice, the initiator's observed
/// address and the responder's transport parameters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct ChallengePayload {
    pub(crate) responder_sid: WireSessionId,
    pub(crate) choice: u8,
    pub(crate) observed: Option<SocketAddr>,
    pub(crate) params: TransportParams,
}

impl ChallengePayload {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Option<()> {
        w.bytes(&self.responder_sid.0)?;
        w.u8(self.choice)?;
        encode_addr(w, self.observed)?;
        self.params.encode(w)
    }

    pub(crate) fn decode(buf: &[u8]) -> Option<Self> {
        let mut r = Reader::new(buf);
        let responder_sid = WireSessionId(r.array()?);
        let choice = r.u8()?;
        let observed = decode_addr(&mut r)?;
        let params = TransportParams::decode(&mut r)?;
        Some(Self { responder_sid, choice, observed, params })
    }
}

/// AUTH_PROOF payload: the initiator's transport parameters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct AuthPayload {
    pub(crate) params: TransportParams,
}

impl AuthPayload {
    pub(crate) fn encode(&self, w: &mut Writer<'_>) -> Option<()> {
        self.params.encode(w)
    }

    pub(crate) fn decode(buf: &[u8]) -> Option<Self> {
        Some(Self { params: TransportParams::decode(&mut Reader::new(buf))? })
    }
}

/// The observed address as the responder saw it: UDP addresses only.
pub(crate) fn observed_of(addr: PathAddr) -> Option<SocketAddr> {
    match addr {
        PathAddr::Udp(a) => Some(a),
        PathAddr::Tunnel(_) | PathAddr::Relay(_) => None,
    }
}

pub(crate) fn encode_addr(w: &mut Writer<'_>, a: Option<SocketAddr>) -> Option<()> {
    match a {
        None => w.u8(0),
        Some(SocketAddr::V4(v4)) => {
            w.u8(4)?;
            w.bytes(&v4.ip().octets())?;
            w.u16(v4.port())
        }
        Some(SocketAddr::V6(v6)) => {
            w.u8(6)?;
            w.bytes(&v6.ip().octets())?;
            w.u16(v6.port())
        }
    }
}

pub(crate) fn decode_addr(r: &mut Reader<'_>) -> Option<Option<SocketAddr>> {
    let ip = match r.u8()? {
        0 => return Some(None),
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
        _ => return None,
    };
    Some(Some(SocketAddr::new(ip, r.u16()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    quickcheck::quickcheck! {
        fn hello_and_challenge_round_trip(ts: u64, offer: (bool, bool), sid: u64, choice: u8, port: u16, ip: u32) -> bool {
            let algs = [AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm];
            let h = HelloPayload { timestamp_ms: ts, offer: [offer.0.then_some(algs[0]), offer.1.then_some(algs[1])] };
            // Decoding compacts the offer to the front.
            let mut compact = [None; 2];
            for (slot, a) in compact.iter_mut().zip(h.offer.iter().flatten()) {
                *slot = Some(*a);
            }
            let mut buf = [0u8; 64];
            h.encode(&mut Writer::new(&mut buf)).unwrap();
            let hello_ok = HelloPayload::decode(&buf) == Some(HelloPayload { timestamp_ms: ts, offer: compact });
            let c = ChallengePayload {
                responder_sid: WireSessionId(sid.to_be_bytes()),
                choice,
                observed: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
                params: TransportParams::default(),
            };
            let mut buf = [0u8; 256];
            let mut w = Writer::new(&mut buf);
            c.encode(&mut w).unwrap();
            let n = w.len();
            hello_ok && ChallengePayload::decode(&buf[..n]) == Some(c)
        }
    }

    #[test]
    fn payloads_round_trip() {
        let h = HelloPayload {
            timestamp_ms: 1_700_000_000_000,
            offer: [Some(AeadAlg::Aes256Gcm), Some(AeadAlg::ChaCha20Poly1305)],
        };
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        h.encode(&mut w).unwrap();
        assert_eq!(HelloPayload::decode(&buf), Some(h), "zero padding accepted");
        buf[60] = 1;
        assert_eq!(HelloPayload::decode(&buf), None, "non-zero padding refused");

        for observed in [None, Some("192.0.2.1:9".parse().unwrap()), Some("[2001:db8::1]:443".parse().unwrap())] {
            let c = ChallengePayload {
                responder_sid: WireSessionId([3; 8]),
                choice: 2,
                observed,
                params: TransportParams::default(),
            };
            let mut buf = [0u8; 128];
            let mut w = Writer::new(&mut buf);
            c.encode(&mut w).unwrap();
            let n = w.len();
            assert_eq!(ChallengePayload::decode(&buf[..n]), Some(c));
            assert_eq!(ChallengePayload::decode(&buf[..9]), None);
        }
    }
}
