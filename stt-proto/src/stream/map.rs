//! A session's streams by id: a `Vec` sorted by id, searched by bisection.
//!
//! A session holds few streams and opens them in increasing index order, so an insert is
//! nearly always an append; a sorted `Vec` does the work of a `BTreeMap` here with a
//! fraction of its code (issue #20: ≈ 3.4 KiB of flash on a Cortex-M4 for the B-tree
//! instantiation it replaces).
//!
//! Cost, including against a hostile peer: a lookup is O(log n) and allocates nothing. An
//! insert or a removal moves the entries after its slot: at most n entries of 16 bytes (a
//! `u64` and a pointer), where n, the live streams, is at most the peer streams this side
//! allows open at once (`max_streams_bidi` + `max_streams_uni`, set by this side's `Config`,
//! 100 + 100 by default) plus the streams the local application opened plus the two
//! application-frame streams. A peer stream is opened after every lower index of its kind,
//! so it moves only streams of the other kinds with a higher index; a frame that opens k
//! streams at once (k at most the limit of its kind) moves at most k × n entries.

use alloc::vec::Vec;

/// Streams (or anything) keyed by stream id, sorted by id.
pub(super) struct StreamMap<V> {
    entries: Vec<(u64, V)>,
}

impl<V> StreamMap<V> {
    pub(super) const fn new() -> Self {
        Self { entries: Vec::new() }
    }

    fn find(&self, id: u64) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(&id))
    }

    pub(super) fn contains_key(&self, id: u64) -> bool {
        self.find(id).is_ok()
    }

    pub(super) fn get(&self, id: u64) -> Option<&V> {
        self.find(id).ok().map(|i| &self.entries[i].1)
    }

    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        match self.find(id) {
            Ok(i) => Some(&mut self.entries[i].1),
            Err(_) => None,
        }
    }

    /// Inserts `value` under `id`, replacing (and dropping) any value already there.
    pub(super) fn insert(&mut self, id: u64, value: V) {
        match self.find(id) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (id, value)),
        }
    }

    pub(super) fn remove(&mut self, id: u64) -> Option<V> {
        self.find(id).ok().map(|i| self.entries.remove(i).1)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The lowest id in `from..to`, if any.
    pub(super) fn first_in(&self, from: u64, to: u64) -> Option<u64> {
        let i = self.find(from).unwrap_or_else(|i| i);
        self.entries.get(i).map(|(k, _)| *k).filter(|k| *k < to)
    }

    /// Gives back memory sized for more streams than are live: all of it once none is left,
    /// else the excess once fewer than half the slots are used. Called while the session is
    /// idle, never per packet.
    pub(super) fn shrink(&mut self) {
        if self.entries.is_empty() {
            self.entries = Vec::new();
        } else if self.entries.len() * 2 < self.entries.capacity() {
            self.entries.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_inserts_lookups_removals_and_ranges() {
        let mut m = StreamMap::new();
        for id in [8, 0, 13, 4, 1, 12] {
            m.insert(id, id * 10);
        }
        m.insert(4, 41);
        assert_eq!(m.len(), 6);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [0, 10, 41, 80, 120, 130]);
        assert_eq!(m.get(13), Some(&130));
        assert_eq!(m.get(5), None);
        *m.get_mut(0).unwrap() += 1;
        assert_eq!(m.get(0), Some(&1));
        assert!(m.get_mut(99).is_none());
        assert_eq!(m.first_in(2, u64::MAX), Some(4));
        assert_eq!(m.first_in(4, 5), Some(4));
        assert_eq!(m.first_in(5, 8), None);
        assert_eq!(m.first_in(14, u64::MAX), None);
        assert_eq!(m.first_in(0, 0), None);
        assert_eq!(m.remove(8), Some(80));
        assert_eq!(m.remove(8), None);
        assert!(!m.contains_key(8));
        assert!(m.contains_key(12));
        assert_eq!(m.first_in(5, u64::MAX), Some(12));
    }

    #[test]
    fn shrink_releases_unused_slots() {
        let mut m = StreamMap::new();
        for id in 0..64u64 {
            m.insert(id, id);
        }
        for id in 1..64u64 {
            m.remove(id);
        }
        m.shrink();
        assert!(m.entries.capacity() < 64);
        assert_eq!(m.get(0), Some(&0));
        m.remove(0);
        m.shrink();
        assert_eq!(m.entries.capacity(), 0);
    }
}
