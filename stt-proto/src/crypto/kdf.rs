//! HKDF-SHA256 and HMAC-SHA256 helpers with STT's labels (spec §3.2).

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// `HKDF-SHA256(salt = "", ikm, info = label, L = 32)`.
pub(crate) fn derive32(ikm: &[u8], label: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = Hkdf::<Sha256>::new(None, ikm).expand(label, &mut out);
    out
}

/// `HKDF-SHA256(salt, ikm = a ‖ b, info = label, L = 32)`.
pub(crate) fn extract_expand(salt: &[u8], a: &[u8; 32], b: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut ikm = [0u8; 64];
    ikm[..32].copy_from_slice(a);
    ikm[32..].copy_from_slice(b);
    let mut out = [0u8; 32];
    let _ = Hkdf::<Sha256>::new(Some(salt), &ikm).expand(label, &mut out);
    zeroize::Zeroize::zeroize(&mut ikm);
    out
}

/// `HKDF-Expand-SHA256(prk, info = label ‖ context, L = out.len())`.
///
/// `out.len()` is at most 255·32 at every call site.
pub(crate) fn expand(prk: &[u8; 32], label: &[u8], context: &[u8], out: &mut [u8]) {
    // A 32-byte PRK is always accepted; output lengths used by STT are ≤ 32.
    if let Ok(h) = Hkdf::<Sha256>::from_prk(prk) {
        let _ = h.expand_multi_info(&[label, context], out);
    }
}

/// `HKDF-Expand-SHA256(prk, info = label ‖ context, L = out.len())` for outputs up to 255·32 bytes.
pub(crate) fn expand_long(prk: &[u8; 32], label: &[u8], context: &[u8], out: &mut [u8]) {
    expand(prk, label, context, out);
}

/// `HMAC-SHA256(key, parts...)` truncated to 16 bytes.
pub(crate) fn mac16(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut out = [0u8; 16];
    // HMAC accepts keys of any length.
    if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) {
        for p in parts {
            m.update(p);
        }
        out.copy_from_slice(&m.finalize().into_bytes()[..16]);
    }
    out
}

/// Constant-time equality of two 16-byte MACs.
pub(crate) fn mac_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
