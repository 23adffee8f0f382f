//! Which sessions the node visits: a queue of sessions with output due now, and a timer
//! heap keyed by each session's next deadline. Sending one packet or firing one timer costs
//! O(log n) in the number of sessions and touches no idle session (spec [ND-1]).
//!
//! Both structures are indexed by session slot and sized by the slot table, so they grow
//! only when the slot table grows (bounded by `Config::max_sessions`) and never allocate in
//! steady state.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crate::time::Instant;

/// Marks a slot that has no entry in the heap.
const ABSENT: u32 = u32::MAX;

/// An indexed binary min-heap of `(deadline, slot)`: one entry per slot at most, so a
/// session's deadline is moved in place (O(log n)) rather than pushed again.
#[derive(Debug, Default)]
pub(crate) struct TimerHeap {
    heap: Vec<(Instant, u32)>,
    /// `pos[slot]`: where the slot's entry sits in `heap`, or [`ABSENT`].
    pos: Vec<u32>,
}

impl TimerHeap {
    /// Sets (or moves) `slot`'s deadline.
    pub(crate) fn set(&mut self, slot: u32, at: Instant) {
        let s = slot as usize;
        if self.pos.len() <= s {
            self.pos.resize(s + 1, ABSENT);
        }
        match self.pos[s] {
            ABSENT => {
                let i = self.heap.len();
                self.heap.push((at, slot));
                self.pos[s] = i as u32;
                self.sift_up(i);
            }
            p => {
                let i = p as usize;
                let Some(old) = self.heap.get(i).map(|e| e.0) else { return };
                self.heap[i].0 = at;
                if at < old {
                    self.sift_up(i);
                } else {
                    self.sift_down(i);
                }
            }
        }
    }

    /// Removes `slot`'s deadline, if any.
    pub(crate) fn remove(&mut self, slot: u32) {
        let Some(&p) = self.pos.get(slot as usize) else { return };
        if p == ABSENT {
            return;
        }
        let i = p as usize;
        let last = self.heap.len() - 1;
        self.swap(i, last);
        self.heap.pop();
        self.pos[slot as usize] = ABSENT;
        if i < self.heap.len() {
            self.sift_down(i);
            self.sift_up(i);
        }
    }

    /// The earliest deadline.
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.heap.first().map(|e| e.0)
    }

    /// Removes and returns the slot with the earliest deadline if it is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<u32> {
        let &(at, slot) = self.heap.first()?;
        if at > now {
            return None;
        }
        self.remove(slot);
        Some(slot)
    }

    /// Entries in the heap.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i].0 >= self.heap[parent].0 {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < self.heap.len() && self.heap[l].0 < self.heap[least].0 {
                least = l;
            }
            if r < self.heap.len() && self.heap[r].0 < self.heap[least].0 {
                least = r;
            }
            if least == i {
                break;
            }
            self.swap(i, least);
            i = least;
        }
    }
}

/// Sessions with output (or a state change) to look at now, in FIFO order: a session
/// that sent a packet and has more goes to the back, so active sessions take turns.
/// Each slot is queued at most once.
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    queue: VecDeque<u32>,
    queued: Vec<bool>,
}

impl ReadyQueue {
    /// Queues `slot` unless it is queued already.
    pub(crate) fn push(&mut self, slot: u32) {
        let s = slot as usize;
        if self.queued.len() <= s {
            self.queued.resize(s + 1, false);
        }
        if !self.queued[s] {
            self.queued[s] = true;
            self.queue.push_back(slot);
        }
    }

    /// Takes the next queued slot.
    pub(crate) fn pop(&mut self) -> Option<u32> {
        let slot = self.queue.pop_front()?;
        if let Some(q) = self.queued.get_mut(slot as usize) {
            *q = false;
        }
        Some(slot)
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The node's view of which sessions need a visit.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    /// Every session with a deadline.
    pub(crate) timers: TimerHeap,
    /// Sessions to poll for output now.
    pub(crate) ready: ReadyQueue,
}

impl Schedule {
    /// Records a session's state after a call into it: `deadline` is its next deadline
    /// (`now` while it has output pending). A session due now is queued for `poll_output`
    /// if `may_poll` (false right after a poll that sent nothing, so the queue drains);
    /// `force` queues it regardless (it finished, or just became established).
    pub(crate) fn update(&mut self, slot: u32, deadline: Option<Instant>, now: Instant, may_poll: bool, force: bool) {
        match deadline {
            Some(at) => self.timers.set(slot, at),
            None => self.timers.remove(slot),
        }
        if force || (may_poll && deadline.is_some_and(|at| at <= now)) {
            self.ready.push(slot);
        }
    }

    /// Forgets a slot whose session is gone.
    pub(crate) fn forget(&mut self, slot: u32) {
        self.timers.remove(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    /// The heap always yields the minimum of a model map, under random set/remove/pop.
    #[test]
    fn heap_matches_model() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut heap = TimerHeap::default();
        let mut model: alloc::collections::BTreeMap<u32, u64> = Default::default();
        for _ in 0..20_000 {
            let slot = rng.next_u32() % 64;
            match rng.next_u32() % 4 {
                0 | 1 => {
                    let at = u64::from(rng.next_u32() % 1000);
                    heap.set(slot, Instant::from_micros(at));
                    model.insert(slot, at);
                }
                2 => {
                    heap.remove(slot);
                    model.remove(&slot);
                }
                _ => {
                    let now = u64::from(rng.next_u32() % 1000);
                    let min = model.iter().map(|(s, t)| (*t, *s)).min();
                    match heap.pop_due(Instant::from_micros(now)) {
                        Some(s) => {
                            let (t, _) = min.expect("model has an entry");
                            assert!(t <= now);
                            assert_eq!(model.get(&s), Some(&t), "popped the earliest");
                            model.remove(&s);
                        }
                        None => assert!(min.is_none_or(|(t, _)| t > now)),
                    }
                }
            }
            assert_eq!(heap.len(), model.len());
            assert_eq!(heap.earliest().map(|i| i.as_micros()), model.values().min().copied());
        }
    }

    #[test]
    fn ready_queue_holds_each_slot_once_in_fifo_order() {
        let mut q = ReadyQueue::default();
        for s in [3, 1, 3, 2, 1] {
            q.push(s);
        }
        assert_eq!([q.pop(), q.pop(), q.pop(), q.pop()], [Some(3), Some(1), Some(2), None]);
        q.push(3);
        assert!(!q.is_empty());
        assert_eq!(q.pop(), Some(3));
        assert!(q.is_empty());
    }
}
