//! Routing a received packet to its session by the receiver's session id in O(1).
//!
//! The node chooses its own session ids, so it chooses them to fit this table: a
//! direct-mapped table (one entry per bucket, no probing) indexed by a hash of the id, kept
//! at most half full. A new id is drawn again while its bucket is taken (spec §9: "retried
//! on collision"), so every lookup examines exactly one entry and compares the whole id —
//! a foreign or stale id finds an empty bucket or another session's id and is dropped.
//! Ids stay fully random (spec [PK-4]); the table never depends on peer input, so a peer
//! cannot make lookups slower.

use alloc::vec;
use alloc::vec::Vec;

use crate::wire::header::WireSessionId;

/// Marks an empty bucket.
const EMPTY: u32 = u32::MAX;
/// Buckets of the smallest table.
const MIN_BUCKETS: usize = 16;

/// Session ids of live sessions, each with its slot in the node's session table.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// `(id, slot)` per bucket; `slot == EMPTY` when the bucket is free.
    table: Vec<(WireSessionId, u32)>,
    len: usize,
}

impl Routes {
    /// The bucket of `sid` in a table of `buckets` (a power of two): the top bits of a
    /// 64-bit mix (splitmix64's finalizer) of all eight bytes, so ids pinned by a test or
    /// conformance runner (random in no byte, say a counter) spread like random ones.
    fn bucket(sid: &WireSessionId, buckets: usize) -> usize {
        let mut h = u64::from_le_bytes(sid.0);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        (h >> (64 - buckets.trailing_zeros())) as usize
    }

    /// The slot of the live session whose id is `sid`: one bucket examined.
    pub(crate) fn get(&self, sid: &WireSessionId) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        let (id, slot) = self.table[Self::bucket(sid, self.table.len())];
        (slot != EMPTY && id == *sid).then_some(slot)
    }

    /// Makes room for one more id (the table stays at most half full), then says whether
    /// `sid` could be inserted: its bucket is free.
    pub(crate) fn fits(&mut self, sid: &WireSessionId) -> bool {
        if 2 * (self.len + 1) > self.table.len() {
            self.resize((2 * (self.len + 1)).next_power_of_two().max(MIN_BUCKETS));
        }
        self.table[Self::bucket(sid, self.table.len())].1 == EMPTY
    }

    /// Inserts `sid` for `slot`; call after [`fits`](Self::fits) said yes. Returns false
    /// (and inserts nothing) if the bucket is taken.
    pub(crate) fn insert(&mut self, sid: WireSessionId, slot: u32) -> bool {
        if !self.fits(&sid) {
            return false;
        }
        let b = Self::bucket(&sid, self.table.len());
        self.table[b] = (sid, slot);
        self.len += 1;
        true
    }

    /// Removes `sid` if it routes to `slot`.
    pub(crate) fn remove(&mut self, sid: &WireSessionId, slot: u32) {
        if self.get(sid) != Some(slot) {
            return;
        }
        let b = Self::bucket(sid, self.table.len());
        self.table[b].1 = EMPTY;
        self.len -= 1;
    }

    /// Rehashes into `buckets` buckets, a power-of-two multiple of the current count: the
    /// bucket is the hash's top bits, so ids in different buckets stay in different buckets.
    /// (The table never shrinks: a smaller one could not hold every live id in its own
    /// bucket. It keeps 24–48 bytes per session of the peak, like the node's slot table.)
    fn resize(&mut self, buckets: usize) {
        let mut table = vec![(WireSessionId::default(), EMPTY); buckets];
        for &(sid, slot) in self.table.iter().filter(|e| e.1 != EMPTY) {
            table[Self::bucket(&sid, buckets)] = (sid, slot);
        }
        self.table = table;
    }

    /// Buckets in the table.
    #[cfg(test)]
    pub(crate) fn buckets(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    fn random_sid(rng: &mut rand_chacha::ChaCha8Rng) -> WireSessionId {
        let mut sid = WireSessionId::default();
        rng.fill_bytes(&mut sid.0);
        sid
    }

    /// 10 000 ids as the node draws them: each found in its one bucket, foreign ids never,
    /// at most half the buckets used; removal frees the bucket.
    #[test]
    fn ten_thousand_ids_one_bucket_each() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut routes = Routes::default();
        let mut ids = Vec::new();
        let mut redraws = 0;
        for slot in 0..10_000u32 {
            let sid = loop {
                let sid = random_sid(&mut rng);
                if routes.fits(&sid) {
                    break sid;
                }
                redraws += 1;
            };
            assert!(routes.insert(sid, slot));
            ids.push(sid);
        }
        assert!(routes.buckets() >= 2 * ids.len() && routes.buckets() <= 4 * ids.len(), "{}", routes.buckets());
        assert!(redraws < 10_000, "about one redraw in four at most half full: {redraws}");
        for (slot, sid) in ids.iter().enumerate() {
            assert_eq!(routes.get(sid), Some(slot as u32));
        }
        for _ in 0..10_000 {
            assert_eq!(routes.get(&random_sid(&mut rng)), None, "a foreign id routes nowhere");
        }
        // A stale id whose bucket now holds another session does not route to it.
        let stale = ids[7];
        routes.remove(&stale, 7);
        assert_eq!(routes.get(&stale), None);
        routes.remove(&stale, 7);
        assert_eq!(routes.len, ids.len() - 1, "a second removal changes nothing");
        let buckets = routes.buckets();
        let same_bucket = loop {
            let sid = random_sid(&mut rng);
            if Routes::bucket(&sid, buckets) == Routes::bucket(&stale, buckets) {
                break sid;
            }
        };
        assert!(routes.fits(&same_bucket) && routes.insert(same_bucket, 7));
        assert_eq!(routes.get(&stale), None, "the old id does not reach the slot's new session");
        assert_eq!(routes.get(&same_bucket), Some(7));
        assert!(!routes.insert(random_sid_in(&mut rng, &routes, &same_bucket), 99), "a taken bucket refuses");
    }

    fn random_sid_in(rng: &mut rand_chacha::ChaCha8Rng, routes: &Routes, like: &WireSessionId) -> WireSessionId {
        let n = routes.buckets();
        loop {
            let sid = random_sid(rng);
            if sid != *like && Routes::bucket(&sid, n) == Routes::bucket(like, n) {
                return sid;
            }
        }
    }

    /// Ids from a counter (a pinned entropy source) spread like random ones: redrawing the
    /// next counter value places every session within a few draws.
    #[test]
    fn counter_ids_spread() {
        let mut routes = Routes::default();
        let mut next = 0u32;
        for slot in 0..1000u32 {
            let mut tries = 0;
            let sid = loop {
                let mut sid = WireSessionId::default();
                sid.0[..4].copy_from_slice(&next.to_be_bytes());
                next += 1;
                tries += 1;
                if routes.fits(&sid) {
                    break sid;
                }
            };
            assert!(tries <= 32, "session {slot} took {tries} draws");
            assert!(routes.insert(sid, slot));
        }
        assert!(next < 2000, "{next} draws for 1000 sessions");
    }
}
