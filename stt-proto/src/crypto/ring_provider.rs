//! The `ring` crypto provider (std targets; several times faster here).

use alloc::boxed::Box;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};

use super::{hardware_aes, AeadAlg, CryptoError, CryptoProvider, PacketKey, TAG_LEN};

/// `ring`'s ChaCha20-Poly1305 and AES-256-GCM.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ring;

impl CryptoProvider for Ring {
    fn name(&self) -> &'static str {
        "ring"
    }

    /// AES-256-GCM first where the CPU has AES and carry-less multiply instructions (ring
    /// then runs it about twice as fast as ChaCha20-Poly1305), else ChaCha20-Poly1305.
    fn preferred_aeads(&self) -> [AeadAlg; 2] {
        if hardware_aes() {
            [AeadAlg::Aes256Gcm, AeadAlg::ChaCha20Poly1305]
        } else {
            [AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm]
        }
    }

    fn packet_key(&self, alg: AeadAlg, key: &[u8; 32]) -> Box<dyn PacketKey> {
        Box::new(RingKey::new(alg, key))
    }

    fn seal_once(
        &self,
        alg: AeadAlg,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        RingKey::new(alg, key).seal_in_place(nonce, aad, payload)
    }

    fn open_once(
        &self,
        alg: AeadAlg,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        RingKey::new(alg, key).open_in_place(nonce, aad, payload, tag)
    }
}

struct RingKey(Option<LessSafeKey>);

impl RingKey {
    fn new(alg: AeadAlg, key: &[u8; 32]) -> Self {
        let algorithm = match alg {
            AeadAlg::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            AeadAlg::Aes256Gcm => &AES_256_GCM,
        };
        // Both algorithms take 32-byte keys, so construction cannot fail.
        Self(UnboundKey::new(algorithm, key).ok().map(LessSafeKey::new))
    }
}

impl PacketKey for RingKey {
    fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], payload: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
        let key = self.0.as_ref().ok_or(CryptoError)?;
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), payload)
            .map_err(|_| CryptoError)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        let key = self.0.as_ref().ok_or(CryptoError)?;
        let tag = Tag::try_from(&tag[..]).map_err(|_| CryptoError)?;
        key.open_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), tag, payload, 0..)
            .map(|_| ())
            .map_err(|_| CryptoError)
    }
}
