//! The scripted peer's handshake known-answer vector, checked byte for byte against stt-proto.

use stt_conformance_peer::item::hex;
use stt_conformance_peer::vectors::HelloVector;
use stt_proto::crypto::AeadAlg;
use stt_proto::{
    Config, Entropy, EntropyPurpose, Identity, Instant, Node, NodeSeed, Output, PathAddr, SharedSeed, UnixTime,
};

/// Entropy that hands out the vector's fixed values by purpose.
struct Fixed(HelloVector);

impl Entropy for Fixed {
    fn fill(&mut self, purpose: EntropyPurpose, out: &mut [u8]) {
        match purpose {
            EntropyPurpose::EphemeralKey => out.copy_from_slice(&self.0.ephemeral[..out.len()]),
            EntropyPurpose::SessionId => out.copy_from_slice(&self.0.sid[..out.len()]),
            _ => out.fill(0x11),
        }
    }
}

#[test]
fn stt_proto_hello_equals_the_independent_vector() {
    let v = HelloVector::default();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/hello.hex")).unwrap();
    assert_eq!(committed.trim(), hex(&v.hello()), "the committed vector is the peer's output");
    let identity = Identity::new(NodeSeed::from_bytes(v.node_seed), SharedSeed::from_bytes(v.shared_seed));
    let mut node = Node::new(
        Config::default().aeads(&[AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm]),
        identity,
        Fixed(HelloVector::default()),
        Instant::from_micros(0),
        Some(UnixTime::from_millis(v.timestamp_ms)),
    )
    .unwrap();
    node.connect(Instant::from_micros(0), PathAddr::Udp("192.0.2.10:40000".parse().unwrap()), None).unwrap();
    let mut buf = vec![0u8; 2048];
    let Output::Transmit(t) = node.poll_output(&mut buf) else { panic!("expected the HELLO") };
    assert_eq!(hex(&buf[..t.len]), committed.trim());
}
