#!/usr/bin/env python3
"""Independent generator for the segment codec vectors (docs/protocol.md §11.3)."""
import hashlib, hmac
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

def hkdf(salt, ikm, info, n):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest(); out += t; i += 1
    return out[:n]

key = bytes([0x42]) * 32
salt = bytes([0x17]) * 32
size = 16
data = bytes(range(40))
header = bytes([1, 1]) + size.to_bytes(4, "big") + salt          # live mode
k = hkdf(salt, key, b"stt/1 segment " + bytes([1]), 32)
print("header", header.hex())
print("segment_key", k.hex())
chunks = [data[i:i + size] for i in range(0, len(data), size)]
for i, c in enumerate(chunks):
    last = i == len(chunks) - 1
    nonce = (0).to_bytes(3, "big") + i.to_bytes(8, "big") + bytes([1 if last else 0])
    print(f"segment_{i}", ChaCha20Poly1305(k).encrypt(nonce, c, header).hex())
