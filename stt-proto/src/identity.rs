//! Seeds, derived keys and node identity (spec §3).

use core::fmt;

use sha3::{Digest, Sha3_256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::kdf;

/// Label for the Noise pre-shared key derived from a shared seed.
pub(crate) const LABEL_PSK: &[u8] = b"stt/1 psk";
/// Label for the cookie sealing key derived from a shared seed.
pub(crate) const LABEL_COOKIE: &[u8] = b"stt/1 cookie";
/// Label for the node's static X25519 private key derived from the node seed.
pub(crate) const LABEL_STATIC: &[u8] = b"stt/1 static";

/// The group secret: 32 random bytes. Only holders can open sessions with each other.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SharedSeed([u8; 32]);

impl SharedSeed {
    /// Wraps 32 secret bytes (generate them with a CSPRNG, e.g. `stt keygen`).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`SeedParseError`] when the text is not exactly 32 hex-encoded bytes.
    pub fn from_hex(text: &str) -> Result<Self, SeedParseError> {
        parse_hex32(text).map(Self)
    }

    pub(crate) fn derive(&self) -> GroupKeys {
        GroupKeys { psk: kdf::derive32(&self.0, LABEL_PSK), cookie_key: kdf::derive32(&self.0, LABEL_COOKIE) }
    }
}

impl fmt::Debug for SharedSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSeed(..)")
    }
}

/// A node's identity secret: 32 random bytes from which its static key is derived.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct NodeSeed([u8; 32]);

impl NodeSeed {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`SeedParseError`] when the text is not exactly 32 hex-encoded bytes.
    pub fn from_hex(text: &str) -> Result<Self, SeedParseError> {
        parse_hex32(text).map(Self)
    }

    /// The node id this seed yields.
    pub fn node_id(&self) -> NodeId {
        StaticKey::derive(self).node_id()
    }
}

impl fmt::Debug for NodeSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeSeed(..)")
    }
}

/// Keys derived from one shared seed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct GroupKeys {
    pub(crate) psk: [u8; 32],
    pub(crate) cookie_key: [u8; 32],
}

/// The node's static X25519 key pair, derived once at `Node::new`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct StaticKey {
    pub(crate) private: [u8; 32],
    pub(crate) public: [u8; 32],
    /// The private key loaded into the X25519 backend once, for every handshake.
    #[zeroize(skip)]
    pub(crate) loaded: crate::crypto::LoadedKey,
}

impl StaticKey {
    pub(crate) fn derive(seed: &NodeSeed) -> Self {
        let private = kdf::derive32(&seed.0, LABEL_STATIC);
        let (loaded, public) = crate::crypto::X25519Backend::ACTIVE.load(&private);
        Self { private, public, loaded }
    }

    pub(crate) fn node_id(&self) -> NodeId {
        NodeId::from_static_public(&self.public)
    }
}

/// A node's identity: SHA3-256 of its static X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The id of the node whose static public key is `public`.
    pub fn from_static_public(public: &[u8; 32]) -> Self {
        Self(Sha3_256::digest(public).into())
    }

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// [`SeedParseError`] when the text is not exactly 32 hex-encoded bytes.
    pub fn from_hex(text: &str) -> Result<Self, SeedParseError> {
        parse_hex32(text).map(Self)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

/// A seed or node id that is not 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SeedParseError {
    /// The text (trimmed) is not 64 characters long.
    Length(usize),
    /// A character is not a hex digit.
    NotHex,
}

impl fmt::Display for SeedParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeedParseError::Length(n) => write!(f, "expected 64 hex digits (32 bytes), found {n} characters"),
            SeedParseError::NotHex => f.write_str("expected 64 hex digits (32 bytes), found a non-hex character"),
        }
    }
}

impl core::error::Error for SeedParseError {}

fn parse_hex32(text: &str) -> Result<[u8; 32], SeedParseError> {
    let t = text.trim().as_bytes();
    if t.len() != 64 {
        return Err(SeedParseError::Length(t.len()));
    }
    let mut out = [0u8; 32];
    for (i, pair) in t.chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or(SeedParseError::NotHex)?;
        let lo = hex_val(pair[1]).ok_or(SeedParseError::NotHex)?;
        out[i] = hi << 4 | lo;
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The secrets a node is built from: its node seed and the shared seeds it accepts.
#[derive(Clone, Debug)]
pub struct Identity {
    pub(crate) node_seed: NodeSeed,
    pub(crate) shared_seeds: heapless::Vec<SharedSeed, { Identity::MAX_SHARED_SEEDS }>,
}

impl Identity {
    /// How many shared seeds a node accepts at once (rotation).
    pub const MAX_SHARED_SEEDS: usize = 4;

    /// An identity with one shared seed.
    pub fn new(node_seed: NodeSeed, shared_seed: SharedSeed) -> Self {
        let mut shared_seeds = heapless::Vec::new();
        // Capacity is at least one.
        let _ = shared_seeds.push(shared_seed);
        Self { node_seed, shared_seeds }
    }

    /// Adds another accepted shared seed (rotation). The first seed is the one used
    /// to initiate; the responder tries each in order.
    ///
    /// # Errors
    /// [`TooManySeeds`] when [`Identity::MAX_SHARED_SEEDS`] are already held.
    pub fn with_shared_seed(mut self, seed: SharedSeed) -> Result<Self, TooManySeeds> {
        self.shared_seeds.push(seed).map_err(|_| TooManySeeds)?;
        Ok(self)
    }

    /// This identity's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_seed.node_id()
    }
}

/// More than [`Identity::MAX_SHARED_SEEDS`] shared seeds were added.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TooManySeeds;

impl fmt::Display for TooManySeeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at most {} shared seeds can be held at once", Identity::MAX_SHARED_SEEDS)
    }
}

impl core::error::Error for TooManySeeds {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let id = NodeId([0xab; 32]);
        let text = alloc::format!("{id}");
        assert_eq!(NodeId::from_hex(&text), Ok(id));
        assert_eq!(NodeId::from_hex("abc"), Err(SeedParseError::Length(3)));
        let bad = "zz".repeat(32);
        assert_eq!(NodeId::from_hex(&bad), Err(SeedParseError::NotHex));
    }

    #[test]
    fn node_id_is_sha3_of_static_public() {
        let seed = NodeSeed::from_bytes([7; 32]);
        let k = StaticKey::derive(&seed);
        let expect: [u8; 32] = Sha3_256::digest(k.public).into();
        assert_eq!(seed.node_id().0, expect);
        // Different seeds give different ids.
        assert_ne!(NodeSeed::from_bytes([8; 32]).node_id(), seed.node_id());
    }
}
