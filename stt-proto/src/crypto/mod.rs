//! Cryptography: a provider trait for packet protection (rustls style), the key
//! schedule, and the glue that lets `snow` run on injected randomness.
//!
//! Nothing here implements a primitive: AEADs come from RustCrypto or `ring`,
//! HKDF/HMAC from RustCrypto, X25519 from `x25519-dalek` or (feature `aws-lc`) `aws-lc-rs`
//! ([`X25519Backend`]), Noise from `snow`.

use alloc::boxed::Box;
use core::fmt;

#[cfg(feature = "aws-lc")]
mod aws_lc_provider;
pub(crate) mod kdf;
pub(crate) mod keys;
pub(crate) mod noise;
#[cfg(feature = "fuzzing")]
mod null;
#[cfg(feature = "ring")]
mod ring_provider;
mod rustcrypto;
mod x25519;

#[cfg(feature = "aws-lc")]
pub use aws_lc_provider::AwsLc;
#[cfg(feature = "fuzzing")]
pub use null::NullAead;
#[cfg(feature = "ring")]
pub use ring_provider::Ring;
pub use rustcrypto::RustCrypto;
pub(crate) use x25519::LoadedKey;
pub use x25519::{NonContributory, X25519Backend};

/// Whether the CPU accelerates AES-GCM (AES and carry-less multiply instructions).
#[cfg(feature = "std")]
#[allow(dead_code)] // used by the `ring` and `aws-lc` providers only
pub(crate) fn hardware_aes() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Length of every AEAD tag used by STT.
pub const TAG_LEN: usize = 16;

/// A record-layer AEAD algorithm, with its wire id (spec §5.2).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum AeadAlg {
    /// ChaCha20-Poly1305 (RFC 8439), wire id 0x01.
    ChaCha20Poly1305,
    /// AES-256-GCM, wire id 0x02.
    Aes256Gcm,
}

impl AeadAlg {
    /// The algorithm's wire id.
    pub const fn id(self) -> u8 {
        match self {
            AeadAlg::ChaCha20Poly1305 => 0x01,
            AeadAlg::Aes256Gcm => 0x02,
        }
    }

    /// The algorithm with wire id `id`, if known.
    pub const fn from_id(id: u8) -> Option<Self> {
        match id {
            0x01 => Some(AeadAlg::ChaCha20Poly1305),
            0x02 => Some(AeadAlg::Aes256Gcm),
            _ => None,
        }
    }

    /// Packets one key may seal before a key update is mandatory (confidentiality limit, spec [RL-9]).
    pub const fn confidentiality_limit(self) -> u64 {
        match self {
            AeadAlg::ChaCha20Poly1305 => 1 << 62,
            AeadAlg::Aes256Gcm => 1 << 23,
        }
    }

    /// Failed openings tolerated over the session before it is closed (integrity limit, spec [RL-8]).
    pub const fn integrity_limit(self) -> u64 {
        match self {
            AeadAlg::ChaCha20Poly1305 => 1 << 36,
            AeadAlg::Aes256Gcm => 1 << 52,
        }
    }
}

/// An AEAD operation failed: authentication failure or an unusable length.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CryptoError;

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AEAD operation failed")
    }
}

impl core::error::Error for CryptoError {}

/// One direction's packet protection key, bound to its algorithm.
pub trait PacketKey: Send + Sync {
    /// Encrypts `payload` in place and returns the tag.
    ///
    /// # Errors
    /// [`CryptoError`] if the backend refuses (e.g. a length limit).
    fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], payload: &mut [u8]) -> Result<[u8; TAG_LEN], CryptoError>;

    /// Decrypts `payload` in place after checking `tag`.
    ///
    /// # Errors
    /// [`CryptoError`] when authentication fails. `payload` content is unspecified then.
    fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError>;
}

/// A source of packet-protection keys.
pub trait CryptoProvider: Send + Sync + fmt::Debug {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Builds a key for `alg`.
    fn packet_key(&self, alg: AeadAlg, key: &[u8; 32]) -> Box<dyn PacketKey>;
    /// Seals one packet with a key built for this call only. A session with little
    /// traffic protects its packets this way instead of keeping a key object (for `ring`'s
    /// AES-256-GCM, 544 bytes per direction). Default: [`packet_key`](Self::packet_key),
    /// which allocates; providers override it to build the key on the stack.
    ///
    /// # Errors
    /// As [`PacketKey::seal_in_place`].
    fn seal_once(
        &self,
        alg: AeadAlg,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        self.packet_key(alg, key).seal_in_place(nonce, aad, payload)
    }
    /// Opens one packet with a key built for this call only (see [`seal_once`](Self::seal_once)).
    ///
    /// # Errors
    /// As [`PacketKey::open_in_place`].
    fn open_once(
        &self,
        alg: AeadAlg,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        payload: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        self.packet_key(alg, key).open_in_place(nonce, aad, payload, tag)
    }
    /// The AEADs in the order this provider runs them fastest (the default preference of a
    /// [`Config`](crate::Config) using it). Default: ChaCha20-Poly1305 first, constant-time
    /// in software everywhere.
    fn preferred_aeads(&self) -> [AeadAlg; 2] {
        [AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm]
    }
    /// Whether [`packet_key`](Self::packet_key) can build `alg` (a build may leave an AEAD
    /// out; a [`Config`](crate::Config) naming one is refused by `validate`). Default: all.
    fn supports(&self, alg: AeadAlg) -> bool {
        let _ = alg;
        true
    }
}
#[cfg(test)]
mod vectors;

#[cfg(all(test, feature = "aws-lc"))]
mod aws_lc_interop {
    use super::*;

    /// aws-lc and RustCrypto produce the same ciphertext and open each other's packets;
    /// a wrong AAD or tag fails, through both the key object and the one-shot calls.
    #[test]
    fn aws_lc_and_rustcrypto_interoperate() {
        for alg in [AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm] {
            let key = [7u8; 32];
            let nonce = [3u8; 12];
            let (r, c) = (AwsLc.packet_key(alg, &key), RustCrypto.packet_key(alg, &key));
            let mut a = [0x5au8; 1400];
            let mut b = a;
            let ta = r.seal_in_place(&nonce, b"hdr", &mut a).unwrap();
            let tb = c.seal_in_place(&nonce, b"hdr", &mut b).unwrap();
            assert_eq!((a, ta), (b, tb), "{alg:?}");
            let mut once = [0x5au8; 1400];
            assert_eq!(AwsLc.seal_once(alg, &key, &nonce, b"hdr", &mut once).unwrap(), ta);
            assert_eq!(once, a);
            AwsLc.open_once(alg, &key, &nonce, b"hdr", &mut once, &ta).unwrap();
            assert_eq!(once, [0x5au8; 1400]);
            c.open_in_place(&nonce, b"hdr", &mut a, &ta).unwrap();
            assert_eq!(a, [0x5au8; 1400]);
            assert!(r.open_in_place(&nonce, b"hdX", &mut b.clone(), &tb).is_err());
            let mut bad = tb;
            bad[0] ^= 1;
            assert!(r.open_in_place(&nonce, b"hdr", &mut b, &bad).is_err());
        }
    }
}

#[cfg(all(test, feature = "ring"))]
mod ring_interop {
    use super::*;

    /// Both providers produce the same ciphertext and open each other's packets.
    #[test]
    fn ring_and_rustcrypto_interoperate() {
        for alg in [AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm] {
            let key = [7u8; 32];
            let nonce = [3u8; 12];
            let (r, c) = (Ring.packet_key(alg, &key), RustCrypto.packet_key(alg, &key));
            let mut a = *b"sixteen byte msg";
            let mut b = a;
            let ta = r.seal_in_place(&nonce, b"hdr", &mut a).unwrap();
            let tb = c.seal_in_place(&nonce, b"hdr", &mut b).unwrap();
            assert_eq!((a, ta), (b, tb), "{alg:?}");
            c.open_in_place(&nonce, b"hdr", &mut a, &ta).unwrap();
            assert_eq!(&a, b"sixteen byte msg");
            assert!(r.open_in_place(&nonce, b"hdX", &mut b, &tb).is_err());
        }
    }
}
