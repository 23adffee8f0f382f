//! The responder's load defences: COOKIE minting and checking, and token buckets
//! (spec §6.6). The cookie is sealed with XChaCha20-Poly1305 from RustCrypto.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::XChaCha20Poly1305;
use core::time::Duration;
use zeroize::Zeroize;

use crate::addr::PathAddr;
use crate::crypto::kdf;
use crate::entropy::{Entropy, EntropyPurpose};
use crate::time::{duration_micros, Instant};
use crate::wire::codec::Writer;
use crate::wire::header::{Header, WireSessionId, COOKIE_HEADER_LEN, VERSION};

/// Length of a COOKIE datagram: header, 24-byte nonce, 16-byte sealed cookie, tag.
pub(crate) const COOKIE_PACKET_LEN: usize = COOKIE_HEADER_LEN + 24 + 16 + 16;

/// A token bucket in micro-tokens.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    rate_per_sec: u64,
    capacity: u64,
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    const SCALE: u64 = 1_000_000;

    pub(crate) fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        let capacity = u64::from(burst.max(1)) * Self::SCALE;
        Self { rate_per_sec: u64::from(rate_per_sec.max(1)), capacity, tokens: capacity, last: now }
    }

    /// Takes one token if available.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_n(now, 1)
    }

    /// Takes `n` tokens if that many are available (a byte budget: one token per byte).
    pub(crate) fn try_take_n(&mut self, now: Instant, n: u64) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let refill = duration_micros(elapsed).saturating_mul(self.rate_per_sec);
        self.tokens = self.tokens.saturating_add(refill).min(self.capacity);
        let need = n.saturating_mul(Self::SCALE);
        if self.tokens >= need {
            self.tokens -= need;
            true
        } else {
            false
        }
    }
}

/// Minimum spacing of COOKIEs to one destination slot.
const PER_DEST_INTERVAL: Duration = Duration::from_millis(50);
const DEST_SLOTS: usize = 64;

/// The responder's rotating cookie secrets and COOKIE rate limits.
pub(crate) struct CookieJar {
    current: [u8; 32],
    previous: [u8; 32],
    rotated_at: Instant,
    lifetime: Duration,
    bucket: TokenBucket,
    dest_last: [Option<Instant>; DEST_SLOTS],
}

impl Drop for CookieJar {
    fn drop(&mut self) {
        self.current.zeroize();
        self.previous.zeroize();
    }
}

impl CookieJar {
    pub(crate) fn new(lifetime: Duration, rate: u32, now: Instant, entropy: &mut dyn Entropy) -> Self {
        let mut current = [0u8; 32];
        entropy.fill(EntropyPurpose::CookieSecret, &mut current);
        Self {
            current,
            // The previous secret starts random too, so it accepts nothing anyone has.
            previous: {
                let mut p = [0u8; 32];
                entropy.fill(EntropyPurpose::CookieSecret, &mut p);
                p
            },
            rotated_at: now,
            lifetime,
            bucket: TokenBucket::new(rate, rate, now),
            dest_last: [None; DEST_SLOTS],
        }
    }

    fn rotate(&mut self, now: Instant, entropy: &mut dyn Entropy) {
        if now.saturating_duration_since(self.rotated_at) >= self.lifetime {
            self.previous = self.current;
            entropy.fill(EntropyPurpose::CookieSecret, &mut self.current);
            self.rotated_at = now;
        }
    }

    /// The cookie for `addr` under `secret`: `HMAC-SHA256(secret, addr)[..16]`.
    fn cookie(secret: &[u8; 32], addr: PathAddr) -> [u8; 16] {
        let mut enc = [0u8; 19];
        let n = encode_addr(addr, &mut enc);
        kdf::mac16(secret, &[&enc[..n]])
    }

    /// Whether `mac` is `HMAC(cookie(addr), hello_without_mac)` for the current or previous secret.
    pub(crate) fn verify(
        &mut self,
        now: Instant,
        entropy: &mut dyn Entropy,
        addr: PathAddr,
        hello_without_mac: &[u8],
        mac: &[u8; 16],
    ) -> bool {
        self.rotate(now, entropy);
        [self.current, self.previous].iter().any(|s| {
            let c = Self::cookie(s, addr);
            kdf::mac_eq(&kdf::mac16(&c, &[hello_without_mac]), mac)
        })
    }

    /// Writes a COOKIE for the initiator at `addr` into `out` (exactly
    /// [`COOKIE_PACKET_LEN`] bytes), unless a rate limit says no.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn mint(
        &mut self,
        now: Instant,
        entropy: &mut dyn Entropy,
        addr: PathAddr,
        receiver: WireSessionId,
        cookie_key: &[u8; 32],
        hello_tag: &[u8; 16],
        out: &mut [u8; COOKIE_PACKET_LEN],
    ) -> bool {
        self.rotate(now, entropy);
        let slot = usize::from(Self::cookie(&self.current, addr)[0]) % DEST_SLOTS;
        if let Some(last) = self.dest_last[slot] {
            if now.saturating_duration_since(last) < PER_DEST_INTERVAL {
                return false;
            }
        }
        if !self.bucket.try_take(now) {
            return false;
        }
        self.dest_last[slot] = Some(now);
        let mut nonce = [0u8; 24];
        entropy.fill(EntropyPurpose::CookieNonce, &mut nonce);
        let mut sealed = Self::cookie(&self.current, addr);
        let Ok(tag) = XChaCha20Poly1305::new(cookie_key.into()).encrypt_in_place_detached(
            (&nonce).into(),
            hello_tag,
            &mut sealed,
        ) else {
            return false;
        };
        let mut w = Writer::new(out);
        let ok = Header::Cookie { version: VERSION, receiver }.encode(&mut w).is_some()
            && w.bytes(&nonce).is_some()
            && w.bytes(&sealed).is_some()
            && w.bytes(&tag).is_some();
        ok && w.len() == COOKIE_PACKET_LEN
    }
}

/// The initiator's side: opens a COOKIE body (`nonce ‖ sealed ‖ tag`) with its cookie key.
pub(crate) fn open_cookie(cookie_key: &[u8; 32], hello_tag: &[u8; 16], body: &[u8]) -> Option<[u8; 16]> {
    if body.len() != 24 + 16 + 16 {
        return None;
    }
    let nonce: [u8; 24] = body[..24].try_into().ok()?;
    let mut cookie: [u8; 16] = body[24..40].try_into().ok()?;
    let tag: [u8; 16] = body[40..].try_into().ok()?;
    XChaCha20Poly1305::new(cookie_key.into())
        .decrypt_in_place_detached((&nonce).into(), hello_tag, &mut cookie, (&tag).into())
        .ok()?;
    Some(cookie)
}

/// The cookie MAC an initiator appends to a HELLO (spec [HS-9]).
pub(crate) fn hello_mac(cookie: &[u8; 16], hello_without_mac: &[u8]) -> [u8; 16] {
    kdf::mac16(cookie, &[hello_without_mac])
}

fn encode_addr(addr: PathAddr, out: &mut [u8; 19]) -> usize {
    match addr {
        PathAddr::Udp(core::net::SocketAddr::V4(a)) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&a.ip().octets());
            out[5..7].copy_from_slice(&a.port().to_be_bytes());
            7
        }
        PathAddr::Udp(core::net::SocketAddr::V6(a)) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&a.ip().octets());
            out[17..19].copy_from_slice(&a.port().to_be_bytes());
            19
        }
        PathAddr::Tunnel(t) => {
            out[0] = 0x54;
            out[1..5].copy_from_slice(&t.0.to_be_bytes());
            5
        }
        PathAddr::Relay(r) => {
            // Bound to the relayed peer's id (its first 18 bytes).
            out[0] = 0x52;
            out[1..19].copy_from_slice(&r.peer.0[..18]);
            19
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn addr(s: &str) -> PathAddr {
        PathAddr::Udp(s.parse().unwrap())
    }

    #[test]
    fn bucket_refills_at_rate() {
        let mut b = TokenBucket::new(10, 2, Instant::ZERO);
        assert!(b.try_take(Instant::ZERO) && b.try_take(Instant::ZERO));
        assert!(!b.try_take(Instant::ZERO));
        assert!(!b.try_take(Instant::from_micros(50_000)));
        assert!(b.try_take(Instant::from_micros(100_000)));
        // Going back in time refills nothing and does not panic.
        assert!(!b.try_take(Instant::ZERO));
    }

    #[test]
    fn cookie_round_trip_binds_address_and_hello() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut jar = CookieJar::new(Duration::from_secs(120), 100, Instant::ZERO, &mut rng);
        let key = [9u8; 32];
        let tag = [5u8; 16];
        let mut pkt = [0u8; COOKIE_PACKET_LEN];
        let a = addr("192.0.2.1:1000");
        assert!(jar.mint(Instant::ZERO, &mut rng, a, WireSessionId([1; 8]), &key, &tag, &mut pkt));
        let cookie = open_cookie(&key, &tag, &pkt[COOKIE_HEADER_LEN..]).expect("opens");
        assert!(open_cookie(&key, &[6; 16], &pkt[COOKIE_HEADER_LEN..]).is_none(), "bound to the HELLO tag");
        assert!(open_cookie(&[8; 32], &tag, &pkt[COOKIE_HEADER_LEN..]).is_none(), "needs the seed's cookie key");
        let hello = [7u8; 100];
        let mac = hello_mac(&cookie, &hello);
        assert!(jar.verify(Instant::ZERO, &mut rng, a, &hello, &mac));
        assert!(!jar.verify(Instant::ZERO, &mut rng, addr("192.0.2.2:1000"), &hello, &mac), "bound to the address");
        assert!(!jar.verify(Instant::ZERO, &mut rng, a, &hello[..99], &mac), "bound to the HELLO bytes");
        // Rate limited per destination.
        assert!(!jar.mint(Instant::from_micros(1000), &mut rng, a, WireSessionId([1; 8]), &key, &tag, &mut pkt));
        // Still valid after one rotation, not after two.
        let t1 = Instant::from_micros(121_000_000);
        assert!(jar.verify(t1, &mut rng, a, &hello, &mac));
        let t2 = Instant::from_micros(242_000_000);
        assert!(!jar.verify(t2, &mut rng, a, &hello, &mac));
    }
}
