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

/// One direction's packet protection at one key phase. The AEAD key and IV may wait
/// unexpanded (only the 32-byte secret held) until first used: a session keeps its next
/// receive phase that way, which saves an expanded key per session (544 bytes for `ring`'s
/// AES-256-GCM) while costing nothing an observer could time that the cleartext key-phase
/// bit does not already show (spec [RL-7]).
pub(crate) struct DirectionKeys {
    secret: [u8; 32],
    key: Option<Box<dyn PacketKey>>,
    iv: [u8; 12],
}

impl Drop for DirectionKeys {
    fn drop(&mut self) {
        self.secret.zeroize();
        self.iv.zeroize();
    }
}

impl DirectionKeys {
    /// Keys for the direction whose traffic secret is `secret`, expanded now.
    pub(crate) fn new(provider: &dyn CryptoProvider, alg: AeadAlg, secret: [u8; 32]) -> Self {
        let mut k = Self::unexpanded(secret);
        k.expand(provider, alg);
        k
    }

    /// Keys for `secret`, expanded by [`expand`](Self::expand) when first needed.
    pub(crate) fn unexpanded(secret: [u8; 32]) -> Self {
        Self { secret, key: None, iv: [0; 12] }
    }

    /// Derives the AEAD key and IV from the secret unless that was done already.
    pub(crate) fn expand(&mut self, provider: &dyn CryptoProvider, alg: AeadAlg) {
        if self.key.is_none() {
            let (mut key_bytes, iv) = derive_key_iv(alg, &self.secret);
            self.key = Some(provider.packet_key(alg, &key_bytes));
            key_bytes.zeroize();
            self.iv = iv;
        }
    }

    /// The AEAD key, once [`expand`](Self::expand)ed.
    pub(crate) fn key(&self) -> Option<&dyn PacketKey> {
        self.key.as_deref()
    }

    /// The keys of the next key phase, unexpanded: `secret' = HKDF-Expand(secret, "stt/1 ku", 32)`.
    pub(crate) fn next(&self) -> Self {
        let mut secret = [0u8; 32];
        kdf::expand(&self.secret, LABEL_KU, &[], &mut secret);
        Self::unexpanded(secret)
    }

    /// `nonce = iv XOR (0^32 ‖ pn as big-endian u64)` (spec [RL-3]); meaningful once expanded.
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
