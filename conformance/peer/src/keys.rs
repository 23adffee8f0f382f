//! Key derivations of docs/protocol.md §3 and §5, written from the text.

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sha3::{Digest, Sha3_256};
use snow::resolvers::{CryptoResolver, DefaultResolver};

/// AEAD id of ChaCha20-Poly1305 (§4.2).
pub const AEAD_CHACHA: u8 = 0x01;
/// AEAD id of AES-256-GCM (§4.2).
pub const AEAD_AES: u8 = 0x02;

/// `HKDF(ikm, label)`: Extract with an empty salt, Expand with `info = label`, 32 bytes.
pub fn hkdf_label(ikm: &[u8], label: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(None, ikm).expand(label, &mut out).expect("32 bytes is a valid HKDF length");
    out
}

/// `Expand(prk, info, L)` with a 32-byte PRK used directly.
pub fn expand(prk: &[u8; 32], info: &[u8], out: &mut [u8]) {
    Hkdf::<Sha256>::from_prk(prk).expect("32-byte PRK").expand(info, out).expect("valid HKDF length");
}

/// `HMAC16(key, m)`: the first 16 bytes of HMAC-SHA256.
pub fn hmac16(key: &[u8], msg: &[u8]) -> [u8; 16] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// The keys one node derives from its seeds.
#[derive(Clone)]
pub struct NodeKeys {
    /// Noise pre-shared key.
    pub psk: [u8; 32],
    /// Seals COOKIE replies.
    pub cookie_key: [u8; 32],
    /// X25519 private key.
    pub static_private: [u8; 32],
    /// X25519 public key.
    pub static_public: [u8; 32],
    /// `SHA3-256(static public key)`.
    pub node_id: [u8; 32],
}

impl NodeKeys {
    /// Derives every key from a shared seed and a node seed (§3).
    pub fn derive(shared_seed: &[u8; 32], node_seed: &[u8; 32]) -> Self {
        let static_private = hkdf_label(node_seed, b"stt/1 static");
        let static_public = x25519_public(&static_private);
        Self {
            psk: hkdf_label(shared_seed, b"stt/1 psk"),
            cookie_key: hkdf_label(shared_seed, b"stt/1 cookie"),
            static_private,
            static_public,
            node_id: node_id(&static_public),
        }
    }
}

/// The node id of a static public key.
pub fn node_id(static_public: &[u8]) -> [u8; 32] {
    Sha3_256::digest(static_public).into()
}

/// The X25519 public key of a private key (through snow's resolver, not our own curve code).
pub fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    let mut dh = DefaultResolver.resolve_dh(&snow::params::DHChoice::Curve25519).expect("snow has X25519");
    dh.set(private);
    let mut out = [0u8; 32];
    out.copy_from_slice(dh.pubkey());
    out
}

/// One direction's record keys (§5.2).
#[derive(Clone)]
pub struct DirectionKeys {
    /// The traffic secret the keys come from.
    pub secret: [u8; 32],
    /// AEAD id.
    pub aead: u8,
    key: [u8; 32],
    iv: [u8; 12],
}

impl DirectionKeys {
    /// Keys for secret `s` and AEAD `aead`.
    pub fn new(secret: [u8; 32], aead: u8) -> Self {
        let mut key = [0u8; 32];
        let mut iv = [0u8; 12];
        expand(&secret, &[b"stt/1 key".as_slice(), &[aead]].concat(), &mut key);
        expand(&secret, &[b"stt/1 iv".as_slice(), &[aead]].concat(), &mut iv);
        Self { secret, aead, key, iv }
    }

    /// The next phase's keys: `s' = Expand(s, "stt/1 ku", 32)` (§5.4).
    pub fn next(&self) -> Self {
        let mut s = [0u8; 32];
        expand(&self.secret, b"stt/1 ku", &mut s);
        Self::new(s, self.aead)
    }

    fn nonce(&self, pn: u64) -> [u8; 12] {
        let mut n = self.iv;
        for (i, b) in pn.to_be_bytes().iter().enumerate() {
            n[4 + i] ^= b;
        }
        n
    }

    /// Seals `plain` with `ad` as associated data; returns ciphertext ‖ tag.
    pub fn seal(&self, pn: u64, ad: &[u8], plain: &[u8]) -> Vec<u8> {
        let nonce = self.nonce(pn);
        let payload = Payload { msg: plain, aad: ad };
        match self.aead {
            AEAD_AES => Aes256Gcm::new((&self.key).into()).encrypt((&nonce).into(), payload),
            _ => ChaCha20Poly1305::new((&self.key).into()).encrypt((&nonce).into(), payload),
        }
        .expect("sealing cannot fail for small inputs")
    }

    /// Opens ciphertext ‖ tag; `None` if it does not authenticate.
    pub fn open(&self, pn: u64, ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let nonce = self.nonce(pn);
        let payload = Payload { msg: sealed, aad: ad };
        match self.aead {
            AEAD_AES => Aes256Gcm::new((&self.key).into()).decrypt((&nonce).into(), payload).ok(),
            _ => ChaCha20Poly1305::new((&self.key).into()).decrypt((&nonce).into(), payload).ok(),
        }
    }
}

/// Opens a COOKIE's sealed cookie (§6.6): XChaCha20-Poly1305 under `cookie_key`, ad = HELLO tag.
pub fn open_cookie(cookie_key: &[u8; 32], nonce: &[u8; 24], sealed: &[u8], hello_tag: &[u8]) -> Option<[u8; 16]> {
    use chacha20poly1305::XChaCha20Poly1305;
    let plain = XChaCha20Poly1305::new(cookie_key.into())
        .decrypt(nonce.into(), Payload { msg: sealed, aad: hello_tag })
        .ok()?;
    plain.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The §5.7 vectors of docs/protocol.md, recomputed by this independent code.
    #[test]
    fn spec_vectors() {
        let shared: [u8; 32] = core::array::from_fn(|i| i as u8);
        let node: [u8; 32] = core::array::from_fn(|i| 0x20 + i as u8);
        let k = NodeKeys::derive(&shared, &node);
        assert_eq!(hex(&k.psk), "118224fe89d102ae23c8a47c1aa8f61f78a9bf9d07529144ddb60eca344982e2");
        assert_eq!(hex(&k.cookie_key), "5cf94d8f526565cb7f0303c2809733f865b08d091bea858c004286e85472d9dc");
        assert_eq!(hex(&k.static_public), "b966356551bb1e658081bdedb27b0a33c9e512bbd3a53f4d8bb99621ac641e46");
        assert_eq!(hex(&k.node_id), "24a9e35ad06c571a333553d196114ab1d5c7eb0f166db74465cd830ce1ddab06");
        let s: [u8; 32] = core::array::from_fn(|i| 0x40 + i as u8);
        let header = [0x40, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 5];
        let chacha = DirectionKeys::new(s, AEAD_CHACHA);
        let sealed = chacha.seal(5, &header, &[0x13]);
        assert_eq!(
            hex(&[header.as_slice(), &sealed].concat()),
            "40010203040506070800000005eec818d3fa61dda18d78e7c44f1ea8575b"
        );
        let aes = DirectionKeys::new(s, AEAD_AES);
        let sealed = aes.seal(5, &header, &[0x13]);
        assert_eq!(
            hex(&[header.as_slice(), &sealed].concat()),
            "400102030405060708000000057c48672260c12b52fc71ddc09a28d34db3"
        );
        assert_eq!(hex(&chacha.next().secret), "82facca79ec0e2f99bb4a89c727f4139a89f1c170fa22de3114b2687d7028af3");
    }
}
