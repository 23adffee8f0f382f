//! The record-layer key schedule (spec §5.3): per-direction keys from the Noise
//! split, and QUIC-style key updates.

use alloc::boxed::Box;

use zeroize::Zeroize;

use super::{kdf, AeadAlg, CryptoProvider, PacketKey};

/// Label for a direction's AEAD key (followed by the AEAD wire id).
pub(crate) const LABEL_KEY: &[u8] = b"stt/1 key";
/// Label for a direction's IV (followed by the AEAD wire id).
pub(crate) const LABEL_IV: &[u8] = b"stt/1 iv";
/// Label for the next key-phase secret.
pub(crate) const LABEL_KU: &[u8] = b"stt/1 ku";

/// One direction's packet protection at one key phase.
pub(crate) struct DirectionKeys {
    secret: [u8; 32],
    pub(crate) key: Box<dyn PacketKey>,
    iv: [u8; 12],
}

impl Drop for DirectionKeys {
    fn drop(&mut self) {
        self.secret.zeroize();
        self.iv.zeroize();
    }
}

impl DirectionKeys {
    /// Keys for the direction whose traffic secret is `secret`.
    pub(crate) fn new(provider: &dyn CryptoProvider, alg: AeadAlg, secret: [u8; 32]) -> Self {
        let (key_bytes, iv) = derive_key_iv(alg, &secret);
        let mut key_bytes = key_bytes;
        let key = provider.packet_key(alg, &key_bytes);
        key_bytes.zeroize();
        Self { secret, key, iv }
    }

    /// The keys of the next key phase: `secret' = HKDF-Expand(secret, "stt/1 ku", 32)`.
    pub(crate) fn next(&self, provider: &dyn CryptoProvider, alg: AeadAlg) -> Self {
        let mut secret = [0u8; 32];
        kdf::expand(&self.secret, LABEL_KU, &[], &mut secret);
        Self::new(provider, alg, secret)
    }

    /// `nonce = iv XOR (0^32 ‖ pn as big-endian u64)` (spec [RL-3]).
    pub(crate) fn nonce(&self, pn: u64) -> [u8; 12] {
        let mut n = self.iv;
        for (b, p) in n[4..].iter_mut().zip(pn.to_be_bytes()) {
            *b ^= p;
        }
        n
    }
}

/// `key = Expand(secret, "stt/1 key" ‖ id, 32)`, `iv = Expand(secret, "stt/1 iv" ‖ id, 12)`.
pub(crate) fn derive_key_iv(alg: AeadAlg, secret: &[u8; 32]) -> ([u8; 32], [u8; 12]) {
    let mut key = [0u8; 32];
    let mut iv = [0u8; 12];
    kdf::expand(secret, LABEL_KEY, &[alg.id()], &mut key);
    kdf::expand(secret, LABEL_IV, &[alg.id()], &mut iv);
    (key, iv)
}
