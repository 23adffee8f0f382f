//! X25519 (RFC 7748) for the Noise handshake, from one of two vetted implementations:
//! `x25519-dalek` (RustCrypto; portable, `no_std`, the default) or `aws-lc-rs` (feature
//! `aws-lc`, std targets; about twice as fast on x86-64 and aarch64). Both take the private
//! key as 32 bytes the node drew from its injected entropy or derived from its seed, so no
//! backend ever reaches for a global random generator, and both give byte-identical results.

use core::fmt;

/// The shared secret came out all zero: the peer's public key is a low-order point
/// (spec [HS-12]). Nothing was written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NonContributory;

impl fmt::Display for NonContributory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("X25519 shared secret is all zero (low-order public key)")
    }
}

impl core::error::Error for NonContributory {}

/// An X25519 implementation. [`X25519Backend::ACTIVE`] is the one the handshake uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum X25519Backend {
    /// `x25519-dalek` (curve25519-dalek's portable backend): `no_std`, always available.
    Dalek,
    /// `aws-lc-rs` (feature `aws-lc`, std only).
    #[cfg(feature = "aws-lc")]
    AwsLc,
}

impl X25519Backend {
    /// The backend the Noise handshake uses in this build: `AwsLc` with the `aws-lc`
    /// feature, else `Dalek`.
    #[cfg(feature = "aws-lc")]
    pub const ACTIVE: Self = Self::AwsLc;
    /// The backend the Noise handshake uses in this build: `AwsLc` with the `aws-lc`
    /// feature, else `Dalek`.
    #[cfg(not(feature = "aws-lc"))]
    pub const ACTIVE: Self = Self::Dalek;

    /// Every backend compiled into this build.
    pub const ALL: &'static [Self] = &[
        Self::Dalek,
        #[cfg(feature = "aws-lc")]
        Self::AwsLc,
    ];

    /// A short name for logs and benchmarks.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Dalek => "x25519-dalek",
            #[cfg(feature = "aws-lc")]
            Self::AwsLc => "aws-lc-rs",
        }
    }

    /// The public key of `private`: `X25519(private, 9)`, the scalar clamped as RFC 7748 says.
    pub fn public_key(self, private: &[u8; 32]) -> [u8; 32] {
        match self {
            Self::Dalek => dalek::public_key(private),
            #[cfg(feature = "aws-lc")]
            Self::AwsLc => aws_lc::public_key(private).unwrap_or_else(|| dalek::public_key(private)),
        }
    }

    /// `private` prepared for several Diffie-Hellman operations, with its public key (one
    /// base-point multiplication, as [`public_key`](Self::public_key)). aws-lc derives the
    /// public key whenever it imports a private one, so importing once per key instead of
    /// once per operation takes a base-point multiplication off each DH (a third of its cost).
    pub(crate) fn load(self, private: &[u8; 32]) -> (LoadedKey, [u8; 32]) {
        match self {
            Self::Dalek => (LoadedKey::default(), dalek::public_key(private)),
            #[cfg(feature = "aws-lc")]
            Self::AwsLc => match aws_lc::load(private) {
                Some((key, public)) => (LoadedKey { aws_lc: Some(alloc::sync::Arc::new(key)) }, public),
                None => (LoadedKey::default(), dalek::public_key(private)),
            },
        }
    }

    /// As [`diffie_hellman`](Self::diffie_hellman), with the key `load` prepared from the same
    /// `private` when there is one.
    pub(crate) fn diffie_hellman_loaded(
        self,
        loaded: &LoadedKey,
        private: &[u8; 32],
        public: &[u8; 32],
        out: &mut [u8; 32],
    ) -> Result<(), NonContributory> {
        match self {
            #[cfg(feature = "aws-lc")]
            Self::AwsLc => match loaded.aws_lc.as_deref() {
                Some(key) => aws_lc::agree_with(key, public, out),
                None => aws_lc::diffie_hellman(private, public, out),
            },
            _ => {
                let _ = loaded;
                self.diffie_hellman(private, public, out)
            }
        }
    }

    /// Writes `X25519(private, public)` to `out`.
    ///
    /// # Errors
    /// [`NonContributory`] when the result is all zero (a low-order `public`); `out` is then
    /// left untouched.
    pub fn diffie_hellman(
        self,
        private: &[u8; 32],
        public: &[u8; 32],
        out: &mut [u8; 32],
    ) -> Result<(), NonContributory> {
        match self {
            Self::Dalek => dalek::diffie_hellman(private, public, out),
            #[cfg(feature = "aws-lc")]
            Self::AwsLc => aws_lc::diffie_hellman(private, public, out),
        }
    }
}

/// A private key as the active backend holds it between operations (see
/// [`X25519Backend::load`]); empty for x25519-dalek, which works from the 32 bytes. Shared by
/// reference count: the node's static key is loaded once and used by every handshake.
#[derive(Clone, Default)]
pub(crate) struct LoadedKey {
    /// aws-lc's key object; aws-lc cleanses it when the last reference is freed.
    #[cfg(feature = "aws-lc")]
    aws_lc: Option<alloc::sync::Arc<aws_lc_rs::agreement::PrivateKey>>,
}

mod dalek {
    use super::NonContributory;

    pub(super) fn public_key(private: &[u8; 32]) -> [u8; 32] {
        // `StaticSecret` zeroizes itself on drop (x25519-dalek's `zeroize` feature).
        let secret = x25519_dalek::StaticSecret::from(*private);
        x25519_dalek::PublicKey::from(&secret).to_bytes()
    }

    pub(super) fn diffie_hellman(
        private: &[u8; 32],
        public: &[u8; 32],
        out: &mut [u8; 32],
    ) -> Result<(), NonContributory> {
        let secret = x25519_dalek::StaticSecret::from(*private);
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
        // `was_contributory` is a constant-time all-zero check. `shared` zeroizes on drop.
        if !shared.was_contributory() {
            return Err(NonContributory);
        }
        out.copy_from_slice(shared.as_bytes());
        Ok(())
    }
}

#[cfg(feature = "aws-lc")]
mod aws_lc {
    use aws_lc_rs::agreement::{agree, PrivateKey, UnparsedPublicKey, X25519};

    use super::NonContributory;

    /// `None` only if aws-lc refuses a 32-byte key, which it does not do for X25519; the
    /// caller then falls back to x25519-dalek, which gives the same bytes.
    pub(super) fn public_key(private: &[u8; 32]) -> Option<[u8; 32]> {
        // aws-lc keeps the key in an EVP_PKEY, which it cleanses when freeing it.
        let key = PrivateKey::from_private_key(&X25519, private).ok()?;
        let public = key.compute_public_key().ok()?;
        public.as_ref().try_into().ok()
    }

    /// The imported key and its public half (computed by the import).
    pub(super) fn load(private: &[u8; 32]) -> Option<(PrivateKey, [u8; 32])> {
        let key = PrivateKey::from_private_key(&X25519, private).ok()?;
        let public = key.compute_public_key().ok()?.as_ref().try_into().ok()?;
        Some((key, public))
    }

    pub(super) fn diffie_hellman(
        private: &[u8; 32],
        public: &[u8; 32],
        out: &mut [u8; 32],
    ) -> Result<(), NonContributory> {
        let key = PrivateKey::from_private_key(&X25519, private).map_err(|_| NonContributory)?;
        agree_with(&key, public, out)
    }

    pub(super) fn agree_with(key: &PrivateKey, public: &[u8; 32], out: &mut [u8; 32]) -> Result<(), NonContributory> {
        // aws-lc's X25519 refuses an all-zero result (constant-time check) and the derive
        // fails; the secret reaches us in a buffer aws-lc-rs zeroizes after the closure.
        agree(key, UnparsedPublicKey::new(&X25519, public), NonContributory, |shared| {
            if shared.len() != out.len() {
                return Err(NonContributory);
            }
            out.copy_from_slice(shared);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// Low-order points on Curve25519 and its twist, and non-canonical encodings of them
    /// (the u-coordinate list from RFC 7748's reference discussion / libsodium's blocklist).
    const LOW_ORDER: [&str; 7] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];

    /// RFC 7748 §5.2 (scalar, u, output) and §6.1 (Alice and Bob), for every backend.
    #[test]
    fn rfc7748_vectors() {
        let dh_vectors = [
            (
                "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
                "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
                "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
            ),
            (
                "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
                "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
                "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
            ),
        ];
        let alice = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let alice_pub = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let bob = hex32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let bob_pub = hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let shared = hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        for &b in X25519Backend::ALL {
            for (k, u, want) in dh_vectors {
                let mut out = [0u8; 32];
                b.diffie_hellman(&hex32(k), &hex32(u), &mut out).unwrap();
                assert_eq!(out, hex32(want), "{}", b.name());
            }
            assert_eq!(b.public_key(&alice), alice_pub, "{}", b.name());
            assert_eq!(b.public_key(&bob), bob_pub, "{}", b.name());
            let (mut ab, mut ba) = ([0u8; 32], [0u8; 32]);
            b.diffie_hellman(&alice, &bob_pub, &mut ab).unwrap();
            b.diffie_hellman(&bob, &alice_pub, &mut ba).unwrap();
            assert_eq!((ab, ba), (shared, shared), "{}", b.name());
        }
    }

    /// RFC 7748 §5.2's iterated test (1 and 1 000 iterations).
    #[test]
    fn rfc7748_iterated() {
        for &b in X25519Backend::ALL {
            let mut k = hex32("0900000000000000000000000000000000000000000000000000000000000000");
            let mut u = k;
            for i in 1..=1000 {
                let mut out = [0u8; 32];
                b.diffie_hellman(&k, &u, &mut out).unwrap();
                u = k;
                k = out;
                if i == 1 {
                    assert_eq!(k, hex32("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"));
                }
            }
            assert_eq!(k, hex32("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"), "{}", b.name());
        }
    }

    /// Every low-order public key is refused by every backend, whatever the private key,
    /// with the high bit of the encoding set or not, and nothing is written.
    #[test]
    fn low_order_points_refused() {
        for &b in X25519Backend::ALL {
            for point in LOW_ORDER {
                for high_bit in [0u8, 0x80] {
                    let mut p = hex32(point);
                    p[31] |= high_bit;
                    for private in [[1u8; 32], [0xa5; 32], [0xff; 32]] {
                        let mut out = [0x55u8; 32];
                        assert_eq!(b.diffie_hellman(&private, &p, &mut out), Err(NonContributory), "{}", b.name());
                        assert_eq!(out, [0x55; 32]);
                    }
                }
            }
        }
    }

    /// A key loaded once (`load`, what the node's static key and a precomputed ephemeral
    /// use) gives the public key and secrets the 32 raw bytes give, refuses low-order points
    /// the same way, and an empty `LoadedKey` falls back to the raw bytes.
    #[test]
    fn loaded_key_agrees_with_raw_bytes() {
        for &b in X25519Backend::ALL {
            for private in [[1u8; 32], [0xa5; 32], [0xff; 32]] {
                let (loaded, public) = b.load(&private);
                assert_eq!(public, b.public_key(&private), "{}", b.name());
                let peer = b.public_key(&[0x42; 32]);
                let (mut x, mut y, mut z) = ([0u8; 32], [0u8; 32], [0u8; 32]);
                b.diffie_hellman(&private, &peer, &mut x).unwrap();
                b.diffie_hellman_loaded(&loaded, &private, &peer, &mut y).unwrap();
                b.diffie_hellman_loaded(&LoadedKey::default(), &private, &peer, &mut z).unwrap();
                assert_eq!((x, x), (y, z), "{}", b.name());
                let mut out = [0x55u8; 32];
                let low = hex32(LOW_ORDER[0]);
                assert_eq!(b.diffie_hellman_loaded(&loaded, &private, &low, &mut out), Err(NonContributory));
                assert_eq!(out, [0x55; 32], "{}", b.name());
            }
        }
    }

    /// With the `aws-lc` feature: aws-lc-rs and x25519-dalek agree byte for byte on random
    /// keys, on public keys with the high bit set and on non-canonical encodings (u ≥ p).
    #[cfg(feature = "aws-lc")]
    #[test]
    fn aws_lc_matches_dalek() {
        use rand_chacha::rand_core::{RngCore, SeedableRng};

        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(25519);
        let (a, d) = (X25519Backend::AwsLc, X25519Backend::Dalek);
        let mut peers: alloc::vec::Vec<[u8; 32]> = alloc::vec::Vec::new();
        for i in 0..2000 {
            let mut private = [0u8; 32];
            rng.fill_bytes(&mut private);
            let public = d.public_key(&private);
            assert_eq!(a.public_key(&private), public, "public key {i}");
            peers.push(public);
            let mut raw = [0u8; 32];
            rng.fill_bytes(&mut raw);
            peers.push(raw); // arbitrary u, high bit set half the time
        }
        // u = p + k for small k: non-canonical encodings of 0..18.
        for k in 0..18u8 {
            let mut u = hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
            u[0] = u[0].wrapping_add(k);
            peers.push(u);
        }
        for (i, peer) in peers.iter().enumerate() {
            let mut private = [0u8; 32];
            rng.fill_bytes(&mut private);
            let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
            let (rx, ry) = (a.diffie_hellman(&private, peer, &mut x), d.diffie_hellman(&private, peer, &mut y));
            assert_eq!(rx, ry, "result {i}");
            assert_eq!(x, y, "shared secret {i}");
        }
    }
}
