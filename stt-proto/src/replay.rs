//! Anti-replay sliding window over packet numbers (spec [RL-5], RFC 6479 style).

/// Width of the window in packets.
pub const REPLAY_WINDOW: u64 = 2048;
const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Tracks which packet numbers near the largest one were already accepted.
///
/// `check` runs before decryption and `mark` only after the packet authenticated,
/// so a forged packet changes nothing.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    largest: Option<u64>,
    bits: [u64; WORDS],
}

/// Why `check` refused a packet number.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReplayVerdict {
    /// Not seen and inside (or ahead of) the window.
    Fresh,
    /// Already accepted once.
    Duplicate,
    /// Older than the window: cannot tell, so refused.
    TooOld,
}

impl ReplayWindow {
    /// The largest packet number accepted so far.
    pub fn largest(&self) -> Option<u64> {
        self.largest
    }

    /// Whether `pn` may be accepted. Changes nothing.
    pub fn check(&self, pn: u64) -> ReplayVerdict {
        let Some(largest) = self.largest else {
            return ReplayVerdict::Fresh;
        };
        if pn > largest {
            return ReplayVerdict::Fresh;
        }
        if largest - pn >= REPLAY_WINDOW {
            return ReplayVerdict::TooOld;
        }
        let (w, b) = slot(pn);
        if self.bits[w] & (1 << b) != 0 {
            ReplayVerdict::Duplicate
        } else {
            ReplayVerdict::Fresh
        }
    }

    /// Records `pn` as accepted; call only after authentication succeeded.
    pub fn mark(&mut self, pn: u64) {
        match self.largest {
            Some(largest) if pn <= largest => {
                if largest - pn >= REPLAY_WINDOW {
                    return;
                }
            }
            Some(largest) => {
                // Slide: clear the bits of every number skipped over.
                let advance = pn - largest;
                if advance >= REPLAY_WINDOW {
                    self.bits = [0; WORDS];
                } else {
                    let mut n = largest + 1;
                    while n < pn {
                        let (w, b) = slot(n);
                        if b == 0 && pn - n >= 64 {
                            self.bits[w] = 0;
                            n += 64;
                            continue;
                        }
                        self.bits[w] &= !(1 << b);
                        n += 1;
                    }
                }
                self.largest = Some(pn);
            }
            None => self.largest = Some(pn),
        }
        let (w, b) = slot(pn);
        self.bits[w] |= 1 << b;
    }
}

fn slot(pn: u64) -> (usize, u32) {
    (((pn / 64) % WORDS as u64) as usize, (pn % 64) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;
    use quickcheck::quickcheck;

    #[test]
    fn duplicates_and_old_packets_refused() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(5), ReplayVerdict::Fresh);
        w.mark(5);
        assert_eq!(w.check(5), ReplayVerdict::Duplicate);
        assert_eq!(w.check(3), ReplayVerdict::Fresh, "reordered, inside window");
        w.mark(3);
        assert_eq!(w.check(3), ReplayVerdict::Duplicate);
        w.mark(5 + REPLAY_WINDOW);
        assert_eq!(w.check(5), ReplayVerdict::TooOld);
        assert_eq!(w.check(6), ReplayVerdict::Fresh);
        w.mark(10 * REPLAY_WINDOW);
        assert_eq!(w.check(5 + REPLAY_WINDOW), ReplayVerdict::TooOld);
    }

    quickcheck! {
        /// Against a model: a set of accepted numbers; anything older than the
        /// window below the largest is refused.
        fn matches_model(ops: alloc::vec::Vec<u16>) -> bool {
            let mut w = ReplayWindow::default();
            let mut seen = BTreeSet::new();
            let mut largest: Option<u64> = None;
            for op in ops {
                let pn = u64::from(op) * 3 % 9000;
                let expect = match largest {
                    Some(l) if pn <= l && l - pn >= REPLAY_WINDOW => ReplayVerdict::TooOld,
                    _ if seen.contains(&pn) => ReplayVerdict::Duplicate,
                    _ => ReplayVerdict::Fresh,
                };
                if w.check(pn) != expect { return false; }
                if expect == ReplayVerdict::Fresh {
                    w.mark(pn);
                    seen.insert(pn);
                    largest = Some(largest.map_or(pn, |l| l.max(pn)));
                }
                if w.largest() != largest { return false; }
            }
            true
        }
    }
}
