//! The responder's cache of initiator ephemerals seen recently (spec [HS-7]):
//! replay protection for HELLO and the key to answering retransmissions.

use alloc::collections::VecDeque;
use core::time::Duration;

use crate::addr::PathAddr;
use crate::event::SessionId;
use crate::key_index::KeyIndex;
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
///
/// The entries sit in `order`, oldest first, each with a sequence number (`front` for the
/// oldest, counting up, wrapping); `index` maps an ephemeral to its entry's number. The index
/// is the node's peer-index type, so both share one B-tree instantiation (issue #20).
pub(crate) struct EphemeralCache {
    index: KeyIndex,
    order: VecDeque<Entry>,
    /// Sequence number of `order[0]`.
    front: u32,
    capacity: usize,
    retention: Duration,
}

struct Entry {
    at: Instant,
    e: [u8; 32],
    seen: SeenHello,
}

impl EphemeralCache {
    pub(crate) fn new(capacity: usize, retention: Duration) -> Self {
        // Sequence numbers stay distinct while fewer than 2^32 entries are held.
        let capacity = capacity.min(u32::MAX as usize);
        Self { index: KeyIndex::new(), order: VecDeque::new(), front: 0, capacity, retention }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(oldest) = self.order.front() {
            if now.saturating_duration_since(oldest.at) < self.retention {
                break;
            }
            self.index.remove(oldest.e, self.front);
            self.order.pop_front();
            self.front = self.front.wrapping_add(1);
        }
    }

    /// The entry held for `e`, if any.
    fn entry(&mut self, e: &[u8; 32]) -> Option<&mut Entry> {
        let seq = self.index.positions(*e).next()?;
        self.order.get_mut(seq.wrapping_sub(self.front) as usize)
    }

    pub(crate) fn lookup(&mut self, now: Instant, e: &[u8; 32], from: PathAddr, digest: &[u8; 16]) -> Seen {
        self.expire(now);
        match self.entry(e).map(|x| x.seen) {
            None => Seen::New,
            Some(s) if s.from == from && s.digest == *digest => Seen::Retransmit(s.session),
            Some(_) => Seen::Replay,
        }
    }

    pub(crate) fn is_full(&mut self, now: Instant) -> bool {
        self.expire(now);
        self.order.len() >= self.capacity
    }

    pub(crate) fn insert(&mut self, now: Instant, e: [u8; 32], seen: SeenHello) {
        if let Some(x) = self.entry(&e) {
            x.seen = seen;
            return;
        }
        let seq = self.front.wrapping_add(self.order.len() as u32);
        self.order.push_back(Entry { at: now, e, seen });
        self.index.insert(e, seq);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.index.len(), self.order.len());
        self.order.len()
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

    #[test]
    fn sequence_numbers_wrap_and_entries_stay_found() {
        let a = PathAddr::Udp("192.0.2.1:1".parse().unwrap());
        let s = |index| SessionId { index, generation: 1 };
        let mut c = EphemeralCache::new(4, Duration::from_secs(10));
        c.front = u32::MAX - 2;
        for round in 0..4u32 {
            let now = Instant::from_micros(u64::from(round) * 10_000_000);
            for k in 0..4u8 {
                let e = [k + 4 * round as u8; 32];
                assert!(matches!(c.lookup(now, &e, a, &[0; 16]), Seen::New));
                c.insert(now, e, SeenHello { from: a, digest: [0; 16], session: s(u32::from(k)) });
            }
            assert!(c.is_full(now));
            for k in 0..4u8 {
                let e = [k + 4 * round as u8; 32];
                assert!(matches!(c.lookup(now, &e, a, &[0; 16]), Seen::Retransmit(x) if x == s(u32::from(k))));
            }
            // Replacing an entry's HELLO keeps one entry for the ephemeral.
            let e = [4 * round as u8; 32];
            c.insert(now, e, SeenHello { from: a, digest: [9; 16], session: s(9) });
            assert!(matches!(c.lookup(now, &e, a, &[9; 16]), Seen::Retransmit(x) if x == s(9)));
            assert_eq!(c.len(), 4);
        }
        assert!(!c.is_full(Instant::from_micros(40_000_000)));
        assert_eq!(c.len(), 0);
    }
}
