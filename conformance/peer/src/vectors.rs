//! Handshake known-answer vectors, produced by this independent peer and checked against
//! stt-proto by `conformance/tests/vectors.rs`. The committed file
//! `conformance/vectors/hello.hex` is this module's output.

use crate::keys::NodeKeys;
use crate::peer::{build_hello, HelloInput};

/// The fixed inputs of the HELLO vector.
pub struct HelloVector {
    /// Shared seed: `00 01 … 1f`.
    pub shared_seed: [u8; 32],
    /// Initiator node seed: `20 21 … 3f`.
    pub node_seed: [u8; 32],
    /// Ephemeral private key: `70 71 … 8f`.
    pub ephemeral: [u8; 32],
    /// Initiator sid: `01 02 … 08`.
    pub sid: [u8; 8],
    /// Wall clock: 1 800 000 000 000 ms.
    pub timestamp_ms: u64,
}

impl Default for HelloVector {
    fn default() -> Self {
        Self {
            shared_seed: core::array::from_fn(|i| i as u8),
            node_seed: core::array::from_fn(|i| 0x20 + i as u8),
            ephemeral: core::array::from_fn(|i| 0x70 + i as u8),
            sid: [1, 2, 3, 4, 5, 6, 7, 8],
            timestamp_ms: 1_800_000_000_000,
        }
    }
}

impl HelloVector {
    /// The 1200-byte HELLO (AEADs offered 0x01, 0x02; zero MAC).
    pub fn hello(&self) -> Vec<u8> {
        let keys = NodeKeys::derive(&self.shared_seed, &self.node_seed);
        let input = HelloInput {
            version: 1,
            sid: self.sid,
            timestamp_ms: self.timestamp_ms,
            offered: vec![0x01, 0x02],
            len: 1200,
            pad_nonzero: false,
            ephemeral_public: None,
        };
        build_hello(&keys, &self.ephemeral, &input).expect("fixed inputs build").1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::hex;

    /// The committed vector file is exactly what this peer produces.
    #[test]
    fn committed_hello_vector_is_this_peers_output() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../vectors/hello.hex");
        let want = hex(&HelloVector::default().hello());
        if std::env::var_os("STT_WRITE_VECTORS").is_some() {
            std::fs::write(path, format!("{want}\n")).expect("write vector");
        }
        let committed = std::fs::read_to_string(path).expect("vector file");
        assert_eq!(committed.trim(), want);
    }
}
