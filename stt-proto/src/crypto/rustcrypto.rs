//! The default, no_std crypto provider: RustCrypto AEADs.

use alloc::boxed::Box;

#[cfg(feature = "aes-gcm")]
use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::generic_array::typenum::{U12, U16};
use chacha20poly1305::aead::{AeadCore, AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;

use super::{AeadAlg, CryptoError, CryptoProvider, PacketKey, TAG_LEN};

/// RustCrypto's ChaCha20-Poly1305 and (with the `aes-gcm` feature, on by default)
/// AES-256-GCM: the default provider, no_std.
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCrypto;

impl CryptoProvider for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn packet_key(&self, alg: AeadAlg, key: &[u8; 32]) -> Box<dyn PacketKey> {
        match alg {
            AeadAlg::ChaCha20Poly1305 => Box::new(Key(ChaCha20Poly1305::new(key.into()))),
            #[cfg(feature = "aes-gcm")]
            AeadAlg::Aes256Gcm => Box::new(Key(Aes256Gcm::new(key.into()))),
            // Unreachable with a validated Config (it offers and accepts only what
            // `supports` says); fails closed rather than panic.
            #[cfg(not(feature = "aes-gcm"))]
            AeadAlg::Aes256Gcm => Box::new(Unsupported),
        }
    }

    fn seal_once(
        &self,
        alg: AeadAlg,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        match alg {
            AeadAlg::ChaCha20Poly1305 => Key(ChaCha20Poly1305::new(key.into())).seal_in_place(nonce, aad, payload),
            #[cfg(feature = "aes-gcm")]
            AeadAlg::Aes256Gcm => Key(Aes256Gcm::new(key.into())).seal_in_place(nonce, aad, payload),
            #[cfg(not(feature = "aes-gcm"))]
            AeadAlg::Aes256Gcm => Err(CryptoError),
        }
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
        match alg {
            AeadAlg::ChaCha20Poly1305 => Key(ChaCha20Poly1305::new(key.into())).open_in_place(nonce, aad, payload, tag),
            #[cfg(feature = "aes-gcm")]
            AeadAlg::Aes256Gcm => Key(Aes256Gcm::new(key.into())).open_in_place(nonce, aad, payload, tag),
            #[cfg(not(feature = "aes-gcm"))]
            AeadAlg::Aes256Gcm => Err(CryptoError),
        }
    }

    fn supports(&self, alg: AeadAlg) -> bool {
        match alg {
            AeadAlg::ChaCha20Poly1305 => true,
            AeadAlg::Aes256Gcm => cfg!(feature = "aes-gcm"),
        }
    }
}

/// A key for an AEAD this build left out: every seal and open fails.
#[cfg(not(feature = "aes-gcm"))]
struct Unsupported;

#[cfg(not(feature = "aes-gcm"))]
impl PacketKey for Unsupported {
    fn seal_in_place(&self, _: &[u8; 12], _: &[u8], _: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
        Err(CryptoError)
    }

    fn open_in_place(&self, _: &[u8; 12], _: &[u8], _: &mut [u8], _: &[u8; TAG_LEN]) -> Result<(), CryptoError> {
        Err(CryptoError)
    }
}

struct Key<A>(A);

impl<A> PacketKey for Key<A>
where
    A: AeadInPlace + AeadCore<NonceSize = U12, TagSize = U16> + Send + Sync,
{
    fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], payload: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError> {
        let tag = self.0.encrypt_in_place_detached(nonce.into(), aad, payload).map_err(|_| CryptoError)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&tag);
        Ok(out)
    }

    fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        self.0.decrypt_in_place_detached(nonce.into(), aad, payload, tag.into()).map_err(|_| CryptoError)
    }
}
