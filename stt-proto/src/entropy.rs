//! Injected randomness: the core has no global RNG.

/// What a draw of randomness is for. Named in the spec (§9) so that another
/// implementation can replay a trace with the same pinned values.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum EntropyPurpose {
    /// A Noise ephemeral private key (32 bytes).
    EphemeralKey,
    /// A locally chosen session id (8 bytes, minus any routing prefix).
    SessionId,
    /// A nonce for a sealed COOKIE (24 bytes).
    CookieNonce,
    /// The responder's rotating cookie secret (32 bytes).
    CookieSecret,
    /// PATH_CHALLENGE data (8 bytes).
    PathChallenge,
    /// The salt of a blob sealed by `BinaryStorage` (32 bytes).
    StorageSalt,
}

/// A source of cryptographically secure random bytes.
///
/// Implemented for every `rand_core::CryptoRng`; the purpose is then ignored.
/// Conformance runners implement it directly to pin values per purpose.
pub trait Entropy {
    /// Fills `out` with random bytes for `purpose`.
    fn fill(&mut self, purpose: EntropyPurpose, out: &mut [u8]);
}

impl<R: rand_core::CryptoRng> Entropy for R {
    fn fill(&mut self, _purpose: EntropyPurpose, out: &mut [u8]) {
        self.fill_bytes(out);
    }
}
