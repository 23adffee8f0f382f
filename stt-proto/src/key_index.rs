//! An ordered index from 32-byte keys to `u32` positions, several positions per key allowed.
//!
//! The node's peer index (node id → session slot) and the responder's cache of HELLO
//! ephemerals (ephemeral → entry) both use this one type, so the firmware links one B-tree
//! instantiation for the two instead of two (issue #20: ≈ 3.4 KiB of flash on a Cortex-M4).
//! Both face peers on a server with thousands of sessions: lookups, inserts and removals
//! stay O(log n), and nothing a peer sends can make one of them linear.

use alloc::collections::BTreeSet;

/// Pairs of a 32-byte key and a position, ordered by key then position.
pub(crate) struct KeyIndex {
    set: BTreeSet<([u8; 32], u32)>,
}

impl KeyIndex {
    pub(crate) const fn new() -> Self {
        Self { set: BTreeSet::new() }
    }

    /// Adds `(key, at)`; returns whether it was not there yet.
    pub(crate) fn insert(&mut self, key: [u8; 32], at: u32) -> bool {
        self.set.insert((key, at))
    }

    /// Removes `(key, at)`; returns whether it was there.
    pub(crate) fn remove(&mut self, key: [u8; 32], at: u32) -> bool {
        self.set.remove(&(key, at))
    }

    /// The positions held under `key`, lowest first.
    pub(crate) fn positions(&self, key: [u8; 32]) -> impl Iterator<Item = u32> + '_ {
        self.set.range((key, 0)..=(key, u32::MAX)).map(|&(_, at)| at)
    }

    /// Number of pairs held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn positions_per_key_in_order() {
        let mut ix = KeyIndex::new();
        assert!(ix.insert([2; 32], 7));
        assert!(ix.insert([2; 32], 3));
        assert!(ix.insert([1; 32], u32::MAX));
        assert!(ix.insert([3; 32], 0));
        assert!(!ix.insert([2; 32], 3));
        assert_eq!(ix.positions([2; 32]).collect::<Vec<_>>(), [3, 7]);
        assert_eq!(ix.positions([1; 32]).collect::<Vec<_>>(), [u32::MAX]);
        assert_eq!(ix.positions([4; 32]).count(), 0);
        assert!(ix.remove([2; 32], 3));
        assert!(!ix.remove([2; 32], 3));
        assert_eq!(ix.positions([2; 32]).collect::<Vec<_>>(), [7]);
        assert_eq!(ix.len(), 3);
    }
}
