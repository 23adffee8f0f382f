//! Known-answer vectors for the key schedule (spec §5.5), generated independently by
//! `stt-proto/tests/vectors/gen_key_schedule.py` (Python hmac/hashlib + `cryptography`).

use core::time::Duration;

use crate::crypto::keys::{derive_key_iv, DirectionKeys};
use crate::crypto::{kdf, AeadAlg, RustCrypto};
use crate::identity::{NodeSeed, SharedSeed, StaticKey};
use crate::record::{KeyUpdatePolicy, Record};
use crate::time::Instant;
use crate::wire::header::WireSessionId;

fn hex(s: &str) -> alloc::vec::Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn seq(start: u8) -> [u8; 32] {
    core::array::from_fn(|i| start + i as u8)
}

#[test]
fn seed_derivations() {
    let g = SharedSeed::from_bytes(seq(0x00)).derive();
    assert_eq!(g.psk.to_vec(), hex("118224fe89d102ae23c8a47c1aa8f61f78a9bf9d07529144ddb60eca344982e2"));
    assert_eq!(g.cookie_key.to_vec(), hex("5cf94d8f526565cb7f0303c2809733f865b08d091bea858c004286e85472d9dc"));
    let node = NodeSeed::from_bytes(seq(0x20));
    let k = StaticKey::derive(&node);
    assert_eq!(k.private.to_vec(), hex("5be2b2e0b8ad4f1688a4eb2c6c1bf80effb0a4496f3f85f59c56a3cb0861da99"));
    assert_eq!(k.public.to_vec(), hex("b966356551bb1e658081bdedb27b0a33c9e512bbd3a53f4d8bb99621ac641e46"));
    assert_eq!(node.node_id().0.to_vec(), hex("24a9e35ad06c571a333553d196114ab1d5c7eb0f166db74465cd830ce1ddab06"));
}

#[test]
fn record_keys_and_first_packets() {
    let secret = seq(0x40);
    let (k1, iv1) = derive_key_iv(AeadAlg::ChaCha20Poly1305, &secret);
    assert_eq!(k1.to_vec(), hex("857ab42b6343543f1a0af1a565ae4cde8b81fe75a9869b881d7e049559acea26"));
    assert_eq!(iv1.to_vec(), hex("9597cf63c5db8337297c5b6f"));
    let (k2, iv2) = derive_key_iv(AeadAlg::Aes256Gcm, &secret);
    assert_eq!(k2.to_vec(), hex("8fd533b99edc33d5aaa4679286dd6b1d4a8f28f8f12223397daf1249c7adbf04"));
    assert_eq!(iv2.to_vec(), hex("85825f153f228f84a0451cd6"));
    let mut next = [0u8; 32];
    kdf::expand(&secret, b"stt/1 ku", &[], &mut next);
    assert_eq!(next.to_vec(), hex("82facca79ec0e2f99bb4a89c727f4139a89f1c170fa22de3114b2687d7028af3"));
    let _ = DirectionKeys::new(AeadAlg::Aes256Gcm, secret);

    let policy = KeyUpdatePolicy { packets: 1 << 40, interval: Duration::from_secs(1 << 30), paused: false };
    for (alg, expect) in [
        (AeadAlg::ChaCha20Poly1305, "40010203040506070800000005eec818d3fa61dda18d78e7c44f1ea8575b"),
        (AeadAlg::Aes256Gcm, "400102030405060708000000057c48672260c12b52fc71ddc09a28d34db3"),
    ] {
        let mut r = Record::new(&RustCrypto, alg, secret, [0; 32], None, Instant::ZERO);
        let mut buf = [0u8; 64];
        let mut n = 0;
        for _ in 0..6 {
            buf[13] = 0x13;
            n = r.seal(Instant::ZERO, policy, WireSessionId([1, 2, 3, 4, 5, 6, 7, 8]), &mut buf, 1).unwrap();
        }
        assert_eq!(buf[..n].to_vec(), hex(expect), "{alg:?} packet number 5");
    }
}
