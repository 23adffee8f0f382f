//! `snow` glue: a resolver whose X25519 counts its operations, reuses the node's
//! cached static public key (so a junk HELLO costs no DH), and draws the
//! ephemeral key from bytes the node took from its injected [`Entropy`](crate::Entropy).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::{AtomicU32, Ordering};

use sha2::{Digest, Sha256};
use snow::params::{
    BaseChoice, CipherChoice, DHChoice, HandshakeChoice, HandshakeModifier, HandshakeModifierList, HandshakePattern,
    HashChoice, NoiseParams,
};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::HandshakeState;
use zeroize::Zeroize;

use super::x25519::{LoadedKey, X25519Backend};
use crate::identity::StaticKey;

/// The Noise protocol name STT/1 uses (spec [HS-1]).
pub(crate) const NOISE_PARAMS: &str = "Noise_XXpsk0_25519_ChaChaPoly_SHA256";

/// Noise overhead of each message: HELLO (`e` + payload tag).
pub(crate) const MSG1_OVERHEAD: usize = 32 + 16;
/// CHALLENGE (`e`, encrypted `s`, payload tag).
pub(crate) const MSG2_OVERHEAD: usize = 32 + 48 + 16;
/// AUTH_PROOF (encrypted `s`, payload tag).
pub(crate) const MSG3_OVERHEAD: usize = 48 + 16;

/// Counts X25519 operations performed by one handshake; the node folds it into its stats.
#[derive(Clone, Default)]
pub(crate) struct DhCounter(Arc<AtomicU32>);

impl DhCounter {
    /// Returns the operations counted since the last call and resets the count.
    pub(crate) fn take(&self) -> u64 {
        u64::from(self.0.swap(0, Ordering::Relaxed))
    }

    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// An ephemeral private key from the node's entropy, with its public half when it was
/// precomputed off the handshake's critical path ([`Node::precompute`](crate::Node::precompute)).
#[derive(Clone)]
pub(crate) struct Ephemeral {
    pub(crate) private: [u8; 32],
    /// The public half and the key loaded into the backend, when precomputed.
    pub(crate) public: Option<([u8; 32], LoadedKey)>,
}

impl From<[u8; 32]> for Ephemeral {
    fn from(private: [u8; 32]) -> Self {
        Self { private, public: None }
    }
}

impl Ephemeral {
    /// Draws and computes a key pair now (one X25519 base-point multiplication), loaded
    /// into the backend for the handshake's two DH operations with it.
    pub(crate) fn precomputed(private: [u8; 32]) -> Self {
        let (loaded, public) = X25519Backend::ACTIVE.load(&private);
        Self { private, public: Some((public, loaded)) }
    }

    pub(crate) fn zeroize(&mut self) {
        self.private.zeroize();
    }
}

/// `name`'s parameters (psk0, 25519, ChaChaPoly, SHA256) built directly: parsing the name
/// with snow's `FromStr` links its string parser (about 3 KiB of flash on a Cortex-M).
/// The name itself is hashed into the handshake; a test checks both equal the parsed ones.
fn params(name: &str, pattern: HandshakePattern) -> NoiseParams {
    NoiseParams::new(
        String::from(name),
        BaseChoice::Noise,
        HandshakeChoice { pattern, modifiers: HandshakeModifierList { list: vec![HandshakeModifier::Psk(0)] } },
        DHChoice::Curve25519,
        CipherChoice::ChaChaPoly,
        HashChoice::SHA256,
    )
}

/// Which side of the Noise handshake to build.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum NoiseRole {
    Initiator,
    Responder,
}

/// Builds a handshake state. `ephemeral` is the private ephemeral key drawn from
/// the node's entropy (purpose `EphemeralKey`); `prologue` binds the cleartext header.
pub(crate) fn build(
    role: NoiseRole,
    static_key: &StaticKey,
    psk: &[u8; 32],
    ephemeral: Ephemeral,
    prologue: &[u8],
    counter: &DhCounter,
) -> Option<HandshakeState> {
    let params = params(NOISE_PARAMS, HandshakePattern::XX);
    let resolver = Resolver {
        statics: (static_key.private, static_key.public, static_key.loaded.clone()),
        ephemeral: Some(ephemeral),
        counter: counter.clone(),
    };
    let builder = snow::Builder::with_resolver(params, Box::new(resolver))
        .local_private_key(&static_key.private)
        .ok()?
        .psk(0, psk)
        .ok()?
        .prologue(prologue)
        .ok()?;
    match role {
        NoiseRole::Initiator => builder.build_initiator().ok(),
        NoiseRole::Responder => builder.build_responder().ok(),
    }
}

/// Noise protocol of the in-session re-handshake (spec [RL-10]).
pub(crate) const REKEY_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";

/// Builds a re-handshake state: no static keys, the session-bound `psk`.
pub(crate) fn build_rekey(
    role: NoiseRole,
    psk: &[u8; 32],
    ephemeral: [u8; 32],
    prologue: &[u8],
    counter: &DhCounter,
) -> Option<HandshakeState> {
    let params = params(REKEY_PARAMS, HandshakePattern::NN);
    let resolver = Resolver {
        statics: ([0; 32], [0; 32], LoadedKey::default()),
        ephemeral: Some(Ephemeral::from(ephemeral)),
        counter: counter.clone(),
    };
    let builder = snow::Builder::with_resolver(params, Box::new(resolver)).psk(0, psk).ok()?.prologue(prologue).ok()?;
    match role {
        NoiseRole::Initiator => builder.build_initiator().ok(),
        NoiseRole::Responder => builder.build_responder().ok(),
    }
}

struct Resolver {
    statics: ([u8; 32], [u8; 32], LoadedKey),
    ephemeral: Option<Ephemeral>,
    counter: DhCounter,
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.statics.0.zeroize();
        if let Some(e) = self.ephemeral.as_mut() {
            e.zeroize();
        }
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(PinnedBytes { bytes: self.ephemeral.as_ref().map_or([0; 32], |e| e.private), used: false }))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(CountingX25519 {
                statics: self.statics.clone(),
                precomputed: self.ephemeral.as_ref().and_then(|e| e.public.clone().map(|(p, l)| (e.private, p, l))),
                private: [0; 32],
                public: [0; 32],
                loaded: LoadedKey::default(),
                counter: self.counter.clone(),
            })),
            _ => None,
        }
    }

    /// SHA-256 only: the only hash STT names. (Deferring to snow's default resolver would
    /// link SHA-512 and BLAKE2 into every build, ~10 KiB of flash on a Cortex-M.)
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        match choice {
            HashChoice::SHA256 => Some(Box::new(NoiseSha256(Sha256::new()))),
            _ => None,
        }
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// RustCrypto's SHA-256 as snow's [`Hash`] (Noise's HMAC and HKDF are snow's, over it).
struct NoiseSha256(Sha256);

impl Hash for NoiseSha256 {
    fn name(&self) -> &'static str {
        "SHA256"
    }

    fn block_len(&self) -> usize {
        64
    }

    fn hash_len(&self) -> usize {
        32
    }

    fn reset(&mut self) {
        self.0 = Sha256::new();
    }

    fn input(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn result(&mut self, out: &mut [u8]) {
        let digest = self.0.finalize_reset();
        // snow passes a MAXHASHLEN buffer; fill what fits.
        let n = out.len().min(digest.len());
        out[..n].copy_from_slice(&digest[..n]);
    }
}

/// Hands snow the 32 ephemeral-key bytes the node drew, once. Not a generator:
/// a second request fails, so snow can never run on anything but injected entropy.
struct PinnedBytes {
    bytes: [u8; 32],
    used: bool,
}

impl Drop for PinnedBytes {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl Random for PinnedBytes {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        if self.used || dest.len() != 32 {
            return Err(snow::Error::Rng);
        }
        dest.copy_from_slice(&self.bytes);
        self.used = true;
        Ok(())
    }
}

/// X25519 from the build's [`X25519Backend::ACTIVE`], counting every scalar multiplication.
struct CountingX25519 {
    statics: ([u8; 32], [u8; 32], LoadedKey),
    /// A precomputed ephemeral key pair: `generate` with its private half costs no DH.
    precomputed: Option<([u8; 32], [u8; 32], LoadedKey)>,
    private: [u8; 32],
    public: [u8; 32],
    /// `private` as the backend holds it, when it was loaded ahead (static or precomputed).
    loaded: LoadedKey,
    counter: DhCounter,
}

impl Drop for CountingX25519 {
    fn drop(&mut self) {
        self.statics.0.zeroize();
        self.private.zeroize();
        if let Some((p, _, _)) = self.precomputed.as_mut() {
            p.zeroize();
        }
    }
}

impl CountingX25519 {
    fn derive_public(&mut self) {
        self.public = X25519Backend::ACTIVE.public_key(&self.private);
        self.loaded = LoadedKey::default();
        self.counter.bump();
    }
}

impl Dh for CountingX25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        let Some(k) = privkey.get(..32).and_then(|k| <[u8; 32]>::try_from(k).ok()) else {
            return;
        };
        self.private = k;
        let same = k.iter().zip(&self.statics.0).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same {
            // The node's static key: its public half was computed (and the key loaded)
            // once at Node::new.
            self.public = self.statics.1;
            self.loaded = self.statics.2.clone();
        } else {
            self.derive_public();
        }
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut k = [0u8; 32];
        rng.try_fill_bytes(&mut k)?;
        self.private = k;
        k.zeroize();
        match self.precomputed.take() {
            Some((p, public, loaded)) if p == self.private => {
                self.public = public;
                self.loaded = loaded;
            }
            _ => self.derive_public(),
        }
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        &self.private
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // snow passes its whole key buffer; the key is the first 32 bytes.
        let theirs: [u8; 32] = pubkey.get(..32).and_then(|k| k.try_into().ok()).ok_or(snow::Error::Dh)?;
        let out: &mut [u8; 32] = out.get_mut(..32).and_then(|o| o.try_into().ok()).ok_or(snow::Error::Dh)?;
        self.counter.bump();
        // A low-order point gives an all-zero secret: refuse it (spec [HS-12]).
        X25519Backend::ACTIVE
            .diffie_hellman_loaded(&self.loaded, &self.private, &theirs, out)
            .map_err(|_| snow::Error::Dh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_params_equal_the_parsed_names() {
        let parsed: NoiseParams = NOISE_PARAMS.parse().unwrap();
        assert_eq!(params(NOISE_PARAMS, HandshakePattern::XX), parsed);
        let parsed: NoiseParams = REKEY_PARAMS.parse().unwrap();
        assert_eq!(params(REKEY_PARAMS, HandshakePattern::NN), parsed);
    }
}
