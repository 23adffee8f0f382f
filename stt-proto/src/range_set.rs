//! A set of `u64` values stored as sorted, disjoint, non-adjacent half-open ranges.
//! Used for received packet numbers (ACKs) and stream byte ranges.

use alloc::vec::Vec;
use core::ops::Range;

/// Sorted disjoint ranges. Capacity is reused, so steady-state updates do not allocate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range<u64>>,
}

impl RangeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self { ranges: Vec::new() }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of disjoint ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The ranges, ascending.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Range<u64>> + '_ {
        self.ranges.iter().cloned()
    }

    /// The lowest range.
    pub fn first(&self) -> Option<Range<u64>> {
        self.ranges.first().cloned()
    }

    /// The highest range.
    pub fn last(&self) -> Option<Range<u64>> {
        self.ranges.last().cloned()
    }

    /// The smallest value.
    pub fn min(&self) -> Option<u64> {
        self.ranges.first().map(|r| r.start)
    }

    /// The largest value.
    pub fn max(&self) -> Option<u64> {
        self.ranges.last().map(|r| r.end - 1)
    }

    /// Whether `v` is in the set.
    pub fn contains(&self, v: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.end <= v);
        self.ranges.get(i).is_some_and(|r| r.start <= v)
    }

    /// Whether every value of `range` is in the set.
    pub fn contains_range(&self, range: Range<u64>) -> bool {
        if range.is_empty() {
            return true;
        }
        let i = self.ranges.partition_point(|r| r.end <= range.start);
        self.ranges.get(i).is_some_and(|r| r.start <= range.start && range.end <= r.end)
    }

    /// The ranges that overlap `range` (share at least one value with it), ascending.
    /// Finding the first costs O(log n); each one yielded costs O(1).
    pub fn overlapping(&self, range: Range<u64>) -> impl Iterator<Item = Range<u64>> + '_ {
        let i = self.ranges.partition_point(|r| r.end <= range.start);
        self.ranges[i..].iter().take_while(move |r| r.start < range.end).cloned()
    }

    /// Whether `range` overlaps or touches a held range (so inserting it adds no range).
    pub fn touches(&self, range: Range<u64>) -> bool {
        let i = self.ranges.partition_point(|r| r.end < range.start);
        self.ranges.get(i).is_some_and(|r| r.start <= range.end)
    }

    /// Adds `range`. Returns the number of values that were not already present.
    /// Costs O(log n) comparisons plus the ranges it merges, and one move of the
    /// entries above the insertion point.
    pub fn insert(&mut self, range: Range<u64>) -> u64 {
        if range.is_empty() {
            return 0;
        }
        // First range that ends at or after range.start (touching counts: merge).
        let i = self.ranges.partition_point(|r| r.end < range.start);
        // Ranges i..j overlap or touch `range`.
        let j = self.ranges[i..].partition_point(|r| r.start <= range.end) + i;
        if i == j {
            self.ranges.insert(i, range.clone());
            return range.end - range.start;
        }
        let covered: u64 =
            self.ranges[i..j].iter().map(|r| r.end.min(range.end).saturating_sub(r.start.max(range.start))).sum();
        let start = self.ranges[i].start.min(range.start);
        let end = self.ranges[j - 1].end.max(range.end);
        self.ranges[i] = start..end;
        self.ranges.drain(i + 1..j);
        (range.end - range.start) - covered
    }

    /// Removes `range`.
    pub fn remove(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let i = self.ranges.partition_point(|r| r.end <= range.start);
        let mut k = i;
        while k < self.ranges.len() && self.ranges[k].start < range.end {
            let r = self.ranges[k].clone();
            if r.start < range.start && r.end > range.end {
                // Split.
                self.ranges[k] = r.start..range.start;
                self.ranges.insert(k + 1, range.end..r.end);
                return;
            } else if r.start < range.start {
                self.ranges[k].end = range.start;
                k += 1;
            } else if r.end > range.end {
                self.ranges[k].start = range.end;
                return;
            } else {
                self.ranges.remove(k);
            }
        }
    }

    /// Removes and returns the lowest range, cut to at most `max_len` values.
    pub fn pop_first(&mut self, max_len: u64) -> Option<Range<u64>> {
        let first = self.ranges.first_mut()?;
        let end = first.start.saturating_add(max_len).min(first.end);
        let out = first.start..end;
        if end == first.end {
            self.ranges.remove(0);
        } else {
            first.start = end;
        }
        Some(out)
    }

    /// Drops the lowest ranges until at most `max` remain.
    pub fn truncate_low(&mut self, max: usize) {
        if self.ranges.len() > max {
            let excess = self.ranges.len() - max;
            self.ranges.drain(..excess);
        }
    }

    /// Removes everything below `v`.
    pub fn remove_below(&mut self, v: u64) {
        if v > 0 {
            self.remove(0..v);
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;
    use quickcheck::quickcheck;

    #[test]
    fn insert_merges_and_counts_new_values() {
        let mut s = RangeSet::new();
        assert_eq!(s.insert(5..10), 5);
        assert_eq!(s.insert(12..15), 3);
        assert_eq!(s.insert(8..13), 2);
        assert_eq!(s.iter().collect::<Vec<_>>(), alloc::vec![5..15]);
        assert_eq!(s.insert(15..16), 1, "adjacent merges");
        assert_eq!(s.len(), 1);
        s.remove(7..9);
        assert_eq!(s.iter().collect::<Vec<_>>(), [5..7, 9..16]);
        assert_eq!(s.pop_first(1), Some(5..6));
        assert!(s.contains(6) && !s.contains(7) && s.contains_range(9..16) && !s.contains_range(6..10));
    }

    quickcheck! {
        /// The set behaves as a set of integers.
        fn behaves_as_a_set(ops: Vec<(bool, u8, u8)>) -> bool {
            let mut s = RangeSet::new();
            let mut model = BTreeSet::new();
            for (add, a, len) in ops {
                let (a, b) = (u64::from(a), u64::from(a) + u64::from(len % 16));
                if add {
                    let fresh = (a..b).filter(|v| !model.contains(v)).count() as u64;
                    if s.insert(a..b) != fresh { return false; }
                    model.extend(a..b);
                } else {
                    s.remove(a..b);
                    for v in a..b { model.remove(&v); }
                }
                // Invariant: sorted, disjoint, non-adjacent, non-empty.
                if s.ranges.windows(2).any(|w| w[0].end >= w[1].start) || s.ranges.iter().any(|r| r.is_empty()) {
                    return false;
                }
            }
            (0..300u64).all(|v| s.contains(v) == model.contains(&v))
        }
    }
}
