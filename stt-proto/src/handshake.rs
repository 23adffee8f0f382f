//! Building and reading the four handshake messages on top of `snow` (spec §6).
//!
//! Each function takes the Noise state and returns the exact datagram bytes, so the
//! session can store them and re-send them verbatim (retransmission is not replay).

use alloc::vec;
use alloc::vec::Vec;

use snow::HandshakeState;

use crate::crypto::noise::{self, DhCounter, NoiseRole, MSG1_OVERHEAD, MSG2_OVERHEAD, MSG3_OVERHEAD};
use crate::identity::{GroupKeys, StaticKey};
use crate::wire::codec::Writer;
use crate::wire::handshake::{AuthPayload, ChallengePayload, HelloPayload};
use crate::wire::header::{
    Header, WireSessionId, HELLO_HEADER_LEN, HS_HEADER_LEN, TYPE_AUTH_PROOF, TYPE_CHALLENGE, VERSION,
};

/// Exact length of a HELLO this implementation sends (spec [HS-4]).
pub(crate) const HELLO_LEN: usize = 1200;
/// Largest HELLO a responder reads.
pub(crate) const HELLO_MAX_LEN: usize = 2048;
/// Length of the cookie MAC closing every HELLO.
pub(crate) const HELLO_MAC_LEN: usize = 16;
/// Largest CHALLENGE / AUTH_PROOF payload read.
const MAX_PAYLOAD: usize = 1024;

/// The prologue: `"STT/1" ‖ HELLO header` (spec [HS-2]).
fn prologue(hello_header: &[u8]) -> [u8; 5 + HELLO_HEADER_LEN] {
    let mut p = [0u8; 5 + HELLO_HEADER_LEN];
    p[..5].copy_from_slice(b"STT/1");
    p[5..].copy_from_slice(&hello_header[..HELLO_HEADER_LEN]);
    p
}

/// The initiator's Noise state after writing a HELLO, and the HELLO bytes.
pub(crate) fn write_hello(
    static_key: &StaticKey,
    group: &GroupKeys,
    ephemeral: impl Into<noise::Ephemeral>,
    sender: WireSessionId,
    payload: &HelloPayload,
    cookie: Option<&[u8; 16]>,
    counter: &DhCounter,
) -> Option<(HandshakeState, Vec<u8>)> {
    let mut out = vec![0u8; HELLO_LEN];
    Header::Hello { version: VERSION, sender }.encode(&mut Writer::new(&mut out))?;
    let mut noise =
        noise::build(NoiseRole::Initiator, static_key, &group.psk, ephemeral.into(), &prologue(&out), counter)?;
    let mut plain = [0u8; HELLO_LEN - HELLO_HEADER_LEN - MSG1_OVERHEAD - HELLO_MAC_LEN];
    payload.encode(&mut Writer::new(&mut plain))?;
    let mac_at = HELLO_LEN - HELLO_MAC_LEN;
    let n = noise.write_message(&plain, &mut out[HELLO_HEADER_LEN..mac_at]).ok()?;
    debug_assert_eq!(HELLO_HEADER_LEN + n, mac_at);
    if let Some(c) = cookie {
        let mac = crate::cookie::hello_mac(c, &out[..mac_at]);
        out[mac_at..].copy_from_slice(&mac);
    }
    Some((noise, out))
}

/// The AEAD tag of the HELLO's Noise payload (COOKIE associated data).
pub(crate) fn hello_tag(hello: &[u8]) -> Option<[u8; 16]> {
    let end = hello.len().checked_sub(HELLO_MAC_LEN)?;
    hello.get(end.checked_sub(16)?..end)?.try_into().ok()
}

/// The responder's attempt to read a HELLO with one group's PSK. Costs hashes and
/// one AEAD, never a DH (the static key's public half is cached).
pub(crate) fn read_hello(
    static_key: &StaticKey,
    group: &GroupKeys,
    ephemeral: impl Into<noise::Ephemeral>,
    hello: &[u8],
    counter: &DhCounter,
) -> Option<(HandshakeState, HelloPayload)> {
    if !(HELLO_LEN..=HELLO_MAX_LEN).contains(&hello.len()) {
        return None;
    }
    let mut noise =
        noise::build(NoiseRole::Responder, static_key, &group.psk, ephemeral.into(), &prologue(hello), counter)?;
    let msg = &hello[HELLO_HEADER_LEN..hello.len() - HELLO_MAC_LEN];
    let mut plain = [0u8; HELLO_MAX_LEN];
    let n = noise.read_message(msg, &mut plain).ok()?;
    let payload = HelloPayload::decode(plain.get(..n)?)?;
    Some((noise, payload))
}

/// The responder writes CHALLENGE (Noise message 2).
pub(crate) fn write_challenge(
    noise: &mut HandshakeState,
    sender: WireSessionId,
    receiver: WireSessionId,
    payload: &ChallengePayload,
) -> Option<Vec<u8>> {
    let mut plain = [0u8; MAX_PAYLOAD];
    let mut w = Writer::new(&mut plain);
    payload.encode(&mut w)?;
    let plain_len = w.len();
    let mut out = vec![0u8; HS_HEADER_LEN + MSG2_OVERHEAD + plain_len];
    Header::Handshake { ty: TYPE_CHALLENGE, version: VERSION, sender, receiver }.encode(&mut Writer::new(&mut out))?;
    let n = noise.write_message(&plain[..plain_len], &mut out[HS_HEADER_LEN..]).ok()?;
    out.truncate(HS_HEADER_LEN + n);
    Some(out)
}

/// The initiator reads CHALLENGE; on failure the Noise state is unchanged.
pub(crate) fn read_challenge(noise: &mut HandshakeState, datagram: &[u8]) -> Result<ChallengePayload, HsReadError> {
    let msg = datagram.get(HS_HEADER_LEN..).ok_or(HsReadError::Auth)?;
    let mut plain = [0u8; HELLO_MAX_LEN];
    let n = noise.read_message(msg, &mut plain).map_err(|_| HsReadError::Auth)?;
    ChallengePayload::decode(&plain[..n]).ok_or(HsReadError::Malformed)
}

/// The initiator writes AUTH_PROOF (Noise message 3).
pub(crate) fn write_auth_proof(
    noise: &mut HandshakeState,
    sender: WireSessionId,
    receiver: WireSessionId,
    payload: &AuthPayload,
) -> Option<Vec<u8>> {
    let mut plain = [0u8; MAX_PAYLOAD];
    let mut w = Writer::new(&mut plain);
    payload.encode(&mut w)?;
    let plain_len = w.len();
    let mut out = vec![0u8; HS_HEADER_LEN + MSG3_OVERHEAD + plain_len];
    Header::Handshake { ty: TYPE_AUTH_PROOF, version: VERSION, sender, receiver }.encode(&mut Writer::new(&mut out))?;
    let n = noise.write_message(&plain[..plain_len], &mut out[HS_HEADER_LEN..]).ok()?;
    out.truncate(HS_HEADER_LEN + n);
    Some(out)
}

/// The responder reads AUTH_PROOF; on failure the Noise state is unchanged.
pub(crate) fn read_auth_proof(noise: &mut HandshakeState, datagram: &[u8]) -> Result<AuthPayload, HsReadError> {
    let msg = datagram.get(HS_HEADER_LEN..).ok_or(HsReadError::Auth)?;
    let mut plain = [0u8; HELLO_MAX_LEN];
    let n = noise.read_message(msg, &mut plain).map_err(|_| HsReadError::Auth)?;
    AuthPayload::decode(&plain[..n]).ok_or(HsReadError::Malformed)
}

/// Why a handshake message was not accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum HsReadError {
    /// Noise authentication failed; nothing changed.
    Auth,
    /// Authenticated, but the payload does not decode.
    Malformed,
}

/// The transport secrets after the last message: `(initiator→responder, responder→initiator)`,
/// and the handshake hash.
pub(crate) fn split(noise: &mut HandshakeState) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let (a, b) = noise.dangerously_get_raw_split();
    let mut h = [0u8; 32];
    let hh = noise.get_handshake_hash();
    let n = hh.len().min(32);
    h[..n].copy_from_slice(&hh[..n]);
    (a, b, h)
}

/// The session's exporter secret: `HKDF(salt = handshake hash, ikm = c1 ‖ c2, "stt/1 exporter")`.
pub(crate) fn exporter_secret(c1: &[u8; 32], c2: &[u8; 32], hash: &[u8; 32]) -> [u8; 32] {
    crate::crypto::kdf::extract_expand(hash, c1, c2, b"stt/1 exporter")
}

/// The peer's static public key once Noise revealed it.
pub(crate) fn remote_static(noise: &HandshakeState) -> Option<[u8; 32]> {
    noise.get_remote_static()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{NodeSeed, SharedSeed};
    use crate::wire::params::TransportParams;

    #[test]
    fn four_messages_agree() {
        let group = SharedSeed::from_bytes([1; 32]).derive();
        let ki = StaticKey::derive(&NodeSeed::from_bytes([2; 32]));
        let kr = StaticKey::derive(&NodeSeed::from_bytes([3; 32]));
        let c = DhCounter::default();
        let payload = HelloPayload { timestamp_ms: 5, offer: [Some(crate::crypto::AeadAlg::Aes256Gcm), None] };
        let (mut ni, hello) =
            write_hello(&ki, &group, [4; 32], WireSessionId([5; 8]), &payload, None, &c).expect("hello");
        let (mut nr, p) = read_hello(&kr, &group, [6; 32], &hello, &c).expect("read hello");
        assert_eq!(p, payload);
        let cp = ChallengePayload {
            responder_sid: WireSessionId([7; 8]),
            choice: 2,
            observed: None,
            params: TransportParams::default(),
        };
        let ch = write_challenge(&mut nr, WireSessionId([7; 8]), WireSessionId([5; 8]), &cp).expect("challenge");
        assert_eq!(read_challenge(&mut ni, &ch), Ok(cp));
        let ap = AuthPayload { params: TransportParams::default() };
        let auth = write_auth_proof(&mut ni, WireSessionId([5; 8]), WireSessionId([7; 8]), &ap).expect("auth");
        assert_eq!(read_auth_proof(&mut nr, &auth), Ok(ap));
        let (a1, b1, h1) = split(&mut ni);
        let (a2, b2, h2) = split(&mut nr);
        assert_eq!((a1, b1, h1), (a2, b2, h2));
        assert_eq!(c.take(), 8);
    }
}
