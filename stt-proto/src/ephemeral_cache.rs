//! The responder's cache of initiator ephemerals seen recently (spec [HS-7]):
//! replay protection for HELLO and the key to answering retransmissions.

use alloc::collections::{BTreeMap, VecDeque};
use core::time::Duration;

use crate::addr::PathAddr;
use crate::event::SessionId;
use crate::time::Instant;

/// What the responder remembers about one HELLO.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeenHello {
    pub(crate) from: PathAddr,
    pub(crate) digest: [u8; 16],
    pub(crate) session: SessionId,
}

/// Outcome of looking up a HELLO's ephemeral.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Seen {
    New,
    /// The same HELLO from the same address: a retransmission.
    Retransmit(SessionId),
    /// The ephemeral was seen with another address or other bytes.
    Replay,
}

/// Bounded map from ephemeral public key to the HELLO that carried it.
/// Entries live for `retention`; when the cache is full, new HELLOs are refused
/// (entries still inside the window are never evicted).
pub(crate) struct EphemeralCache {
    map: BTreeMap<[u8; 32], SeenHello>,
    order: VecDeque<(Instant, [u8; 32])>,
    capacity: usize,
    retention: Duration,
}

impl EphemeralCache {
    pub(crate) fn new(capacity: usize, retention: Duration) -> Self {
        Self { map: BTreeMap::new(), order: VecDeque::new(), capacity, retention }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, e)) = self.order.front().copied() {
            if now.saturating_duration_since(at) < self.retention {
                break;
            }
            self.order.pop_front();
            self.map.remove(&e);
        }
    }

    pub(crate) fn lookup(&mut self, now: Instant, e: &[u8; 32], from: PathAddr, digest: &[u8; 16]) -> Seen {
        self.expire(now);
        match self.map.get(e) {
            None => Seen::New,
            Some(s) if s.from == from && s.digest == *digest => Seen::Retransmit(s.session),
            Some(_) => Seen::Replay,
        }
    }

    pub(crate) fn is_full(&mut self, now: Instant) -> bool {
        self.expire(now);
        self.map.len() >= self.capacity
    }

    pub(crate) fn insert(&mut self, now: Instant, e: [u8; 32], seen: SeenHello) {
        if self.map.insert(e, seen).is_none() {
            self.order.push_back((now, e));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmit_replay_expiry_and_capacity() {
        let a = PathAddr::Udp("192.0.2.1:1".parse().unwrap());
        let b = PathAddr::Udp("192.0.2.2:1".parse().unwrap());
        let s = SessionId { index: 1, generation: 1 };
        let mut c = EphemeralCache::new(2, Duration::from_secs(10));
        let t0 = Instant::ZERO;
        assert!(matches!(c.lookup(t0, &[1; 32], a, &[0; 16]), Seen::New));
        c.insert(t0, [1; 32], SeenHello { from: a, digest: [0; 16], session: s });
        assert!(matches!(c.lookup(t0, &[1; 32], a, &[0; 16]), Seen::Retransmit(x) if x == s));
        assert!(matches!(c.lookup(t0, &[1; 32], b, &[0; 16]), Seen::Replay));
        assert!(matches!(c.lookup(t0, &[1; 32], a, &[1; 16]), Seen::Replay));
        c.insert(t0, [2; 32], SeenHello { from: a, digest: [0; 16], session: s });
        assert!(c.is_full(t0));
        let later = Instant::from_micros(10_000_000);
        assert!(!c.is_full(later));
        assert_eq!(c.len(), 0);
        assert!(matches!(c.lookup(later, &[1; 32], b, &[0; 16]), Seen::New));
    }
}
