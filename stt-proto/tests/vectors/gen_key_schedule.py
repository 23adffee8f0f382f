#!/usr/bin/env python3
"""Independent generator for the key-schedule known-answer vectors (docs/protocol.md §5.5).

Uses Python's hmac/hashlib for HKDF-SHA256 and the `cryptography` package for X25519 and
the AEADs, so the vectors do not come from the Rust code they check. Run it to re-derive
the values pinned in stt-proto/src/crypto/vectors.rs.
"""
import hashlib, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305, AESGCM
from cryptography.hazmat.primitives import serialization

def extract(salt, ikm): return hmac.new(salt, ikm, hashlib.sha256).digest()
def expand(prk, info, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest(); out += t; i += 1
    return out[:n]
def derive32(ikm, label): return expand(extract(b"", ikm), label, 32)

shared_seed = bytes(range(0x00, 0x20))
node_seed = bytes(range(0x20, 0x40))
secret = bytes(range(0x40, 0x60))
print("psk", derive32(shared_seed, b"stt/1 psk").hex())
print("cookie_key", derive32(shared_seed, b"stt/1 cookie").hex())
static = derive32(node_seed, b"stt/1 static")
print("static_private", static.hex())
pub = X25519PrivateKey.from_private_bytes(static).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
print("static_public", pub.hex())
print("node_id", hashlib.sha3_256(pub).hexdigest())
for alg_id, cls in ((1, ChaCha20Poly1305), (2, AESGCM)):
    key = expand(secret, b"stt/1 key" + bytes([alg_id]), 32)
    iv = expand(secret, b"stt/1 iv" + bytes([alg_id]), 12)
    print(f"key_{alg_id}", key.hex()); print(f"iv_{alg_id}", iv.hex())
    pn = 5
    nonce = bytes(a ^ b for a, b in zip(iv, (0).to_bytes(4, "big") + pn.to_bytes(8, "big")))
    header = bytes([0x40]) + bytes(range(1, 9)) + pn.to_bytes(4, "big")
    packet = header + cls(key).encrypt(nonce, bytes([0x13]), header)
    print(f"packet_{alg_id}", packet.hex())
print("next_secret", expand(secret, b"stt/1 ku", 32).hex())
