//! The record-layer key schedule (spec §5.3): per-direction keys from the Noise
//! split, and QUIC-style key updates.

use alloc::boxed::Box;

use zeroize::Zeroize;

use super::{kdf, AeadAlg, CryptoError, CryptoProvider, PacketKey, TAG_LEN};

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
///
/// Once expanded, the key is either *built* (the provider's key object, kept: a session
/// that carries traffic) or held as its 32 key bytes and built for each packet on the
/// stack ([`CryptoProvider::seal_once`]): a session with little traffic then holds no key
/// object at all. The [`Record`](crate::record::Record) decides which, per packet.
pub(crate) struct DirectionKeys {
    secret: [u8; 32],
    key: Key,
}

/// What a [`DirectionKeys`] holds of its AEAD key (with the IV once expanded).
enum Key {
    /// Nothing yet: only the secret.
    Unexpanded,
    /// The key bytes: a key object is built for each packet.
    Bytes { key: [u8; 32], iv: [u8; 12] },
    /// The provider's key object, kept.
    Built { key: Box<dyn PacketKey>, iv: [u8; 12] },
}

impl Drop for DirectionKeys {
    fn drop(&mut self) {
        self.secret.zeroize();
        match &mut self.key {
            Key::Bytes { key, iv } => {
                key.zeroize();
                iv.zeroize();
            }
            Key::Built { iv, .. } => iv.zeroize(),
            Key::Unexpanded => {}
        }
    }
}

impl DirectionKeys {
    /// Keys for the direction whose traffic secret is `secret`, expanded now (key bytes
    /// and IV; the key object is built when [`seal`](Self::seal) or [`open`](Self::open)
    /// are asked to keep one).
    pub(crate) fn new(alg: AeadAlg, secret: [u8; 32]) -> Self {
        let mut k = Self::unexpanded(secret);
        k.expand(alg);
        k
    }

    /// Keys for `secret`, expanded when first needed.
    pub(crate) fn unexpanded(secret: [u8; 32]) -> Self {
        Self { secret, key: Key::Unexpanded }
    }

    /// Derives the AEAD key bytes and IV from the secret unless that was done already.
    fn expand(&mut self, alg: AeadAlg) {
        if let Key::Unexpanded = self.key {
            let (key, iv) = derive_key_iv(alg, &self.secret);
            self.key = Key::Bytes { key, iv };
        }
    }

    /// Expands, and builds the key object if `keep` (allocates once; later calls reuse it).
    #[cold]
    fn ready(&mut self, provider: &dyn CryptoProvider, alg: AeadAlg, keep: bool) {
        self.expand(alg);
        if let (true, Key::Bytes { key, iv }) = (keep, &mut self.key) {
            let built = provider.packet_key(alg, key);
            let iv = *iv;
            key.zeroize();
            self.key = Key::Built { key: built, iv };
        }
    }

    /// Whether the provider's key object is built and kept.
    pub(crate) fn is_built(&self) -> bool {
        matches!(self.key, Key::Built { .. })
    }

    /// Drops a built key object, keeping the key bytes (derived again from the secret):
    /// later packets build their key on the stack until [`ready`](Self::ready) keeps one again.
    pub(crate) fn release(&mut self, alg: AeadAlg) {
        if self.is_built() {
            self.key = Key::Unexpanded;
            self.expand(alg);
        }
    }

    /// Seals packet `pn` in place with these keys; `keep` builds and keeps the key object
    /// (else a built one is used if present, or one is built on the stack for this packet).
    #[inline]
    pub(crate) fn seal(
        &mut self,
        provider: &dyn CryptoProvider,
        alg: AeadAlg,
        keep: bool,
        pn: u64,
        aad: &[u8],
        payload: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        // A busy session: its key object is built (the per-packet path).
        if let Key::Built { key, iv } = &self.key {
            return key.seal_in_place(&nonce(iv, pn), aad, payload);
        }
        self.ready(provider, alg, keep);
        match &self.key {
            Key::Built { key, iv } => key.seal_in_place(&nonce(iv, pn), aad, payload),
            Key::Bytes { key, iv } => provider.seal_once(alg, key, &nonce(iv, pn), aad, payload),
            Key::Unexpanded => Err(CryptoError),
        }
    }

    /// Opens packet `pn` in place (see [`seal`](Self::seal) for `keep`).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn open(
        &mut self,
        provider: &dyn CryptoProvider,
        alg: AeadAlg,
        keep: bool,
        pn: u64,
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        if let Key::Built { key, iv } = &self.key {
            return key.open_in_place(&nonce(iv, pn), aad, payload, tag);
        }
        self.ready(provider, alg, keep);
        match &self.key {
            Key::Built { key, iv } => key.open_in_place(&nonce(iv, pn), aad, payload, tag),
            Key::Bytes { key, iv } => provider.open_once(alg, key, &nonce(iv, pn), aad, payload, tag),
            Key::Unexpanded => Err(CryptoError),
        }
    }

    /// The keys of the next key phase, unexpanded: `secret' = HKDF-Expand(secret, "stt/1 ku", 32)`.
    pub(crate) fn next(&self) -> Self {
        let mut secret = [0u8; 32];
        kdf::expand(&self.secret, LABEL_KU, &[], &mut secret);
        Self::unexpanded(secret)
    }
}

/// `nonce = iv XOR (0^32 ‖ pn as big-endian u64)` (spec [RL-3]).
fn nonce(iv: &[u8; 12], pn: u64) -> [u8; 12] {
    let mut n = *iv;
    for (b, p) in n[4..].iter_mut().zip(pn.to_be_bytes()) {
        *b ^= p;
    }
    n
}

/// `key = Expand(secret, "stt/1 key" ‖ id, 32)`, `iv = Expand(secret, "stt/1 iv" ‖ id, 12)`.
pub(crate) fn derive_key_iv(alg: AeadAlg, secret: &[u8; 32]) -> ([u8; 32], [u8; 12]) {
    let mut key = [0u8; 32];
    let mut iv = [0u8; 12];
    kdf::expand(secret, LABEL_KEY, &[alg.id()], &mut key);
    kdf::expand(secret, LABEL_IV, &[alg.id()], &mut iv);
    (key, iv)
}
