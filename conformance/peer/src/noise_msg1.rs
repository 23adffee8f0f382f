//! A second, minimal implementation of the first message of `Noise_XXpsk0_25519_ChaChaPoly_SHA256`
//! (Noise spec §5, §9), for HELLOs snow will not build: an ephemeral *public* key chosen
//! by the trace (all zeros, or another low-order point) to check that the responder refuses
//! it ([HS-12]). Message 1 needs no DH, so any 32 bytes can stand as `e`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const NAME: &[u8] = b"Noise_XXpsk0_25519_ChaChaPoly_SHA256";

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Noise's HKDF with two or three outputs.
fn hkdf3(ck: &[u8; 32], ikm: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let t = hmac(ck, &[ikm]);
    let o1 = hmac(&t, &[&[1]]);
    let o2 = hmac(&t, &[&o1, &[2]]);
    let o3 = hmac(&t, &[&o2, &[3]]);
    (o1, o2, o3)
}

fn mix_hash(h: &mut [u8; 32], data: &[u8]) {
    *h = Sha256::new().chain_update(*h).chain_update(data).finalize().into();
}

/// Message 1 (`psk, e`, payload) with `e_public` as the ephemeral public key.
pub fn message1(psk: &[u8; 32], prologue: &[u8], e_public: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    // InitializeSymmetric: the name is longer than 32 bytes, so h = HASH(name).
    let mut h: [u8; 32] = Sha256::digest(NAME).into();
    let ck = h;
    mix_hash(&mut h, prologue);
    // psk: MixKeyAndHash.
    let (ck, temp_h, _k) = hkdf3(&ck, psk);
    mix_hash(&mut h, &temp_h);
    // e: MixHash(e.public), and in a PSK handshake MixKey(e.public).
    mix_hash(&mut h, e_public);
    let (_ck, k, _) = hkdf3(&ck, e_public);
    // EncryptAndHash(payload) with n = 0 (nonce: 4 zero bytes ‖ u64 little-endian).
    let c = ChaCha20Poly1305::new((&k).into())
        .encrypt((&[0u8; 12]).into(), Payload { msg: payload, aad: &h })
        .expect("small payload");
    let mut out = e_public.to_vec();
    out.extend_from_slice(&c);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a real ephemeral, this hand-written message 1 equals snow's byte for byte.
    #[test]
    fn agrees_with_snow() {
        let psk = [7u8; 32];
        let e_private = [9u8; 32];
        let e_public = crate::keys::x25519_public(&e_private);
        let static_private = [3u8; 32];
        let prologue = b"STT/1 test prologue";
        let payload = [0xabu8; 40];
        let mut hs = snow::Builder::new("Noise_XXpsk0_25519_ChaChaPoly_SHA256".parse().unwrap())
            .local_private_key(&static_private)
            .unwrap()
            .psk(0, &psk)
            .unwrap()
            .prologue(prologue)
            .unwrap()
            .fixed_ephemeral_key_for_testing_only(&e_private)
            .build_initiator()
            .unwrap();
        let mut buf = vec![0u8; 200];
        let n = hs.write_message(&payload, &mut buf).unwrap();
        assert_eq!(message1(&psk, prologue, &e_public, &payload), buf[..n].to_vec());
    }
}
