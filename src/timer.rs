//! The hashed timer wheel: periodic scrape ticks and deadlines.
//!
//! The wheel owns no clock: every call that needs the time is handed `now` by
//! the event loop, so tests drive it with made-up instants.
//!
//! Layout: timers live in a slab (`entries`, a `Vec` with a free list); a
//! [`TimerId`] is a slab index plus the entry's generation, so a stale id (of
//! a timer that fired or was cancelled, its slot since reused) is simply not
//! found. Time is cut into ticks of `resolution`; tick `t` hashes to slot
//! `t % slots`, each slot an intrusive doubly linked list through the slab.
//! A timer further away than one turn of the wheel shares its slot with nearer
//! ones and stays there until its own tick comes (each entry stores its
//! absolute tick, which is the "rounds" count of a classic hashed wheel).
//!
//! Invariants:
//! - every pending entry's tick is >= `current_tick` (a timer inserted in the
//!   past is filed under `current_tick` and fires on the next `expire`);
//! - `slot_earliest[s]` is the exact earliest `at` among the entries of slot
//!   `s`, and `earliest` the exact earliest over all slots, so
//!   [`TimerWheel::next_deadline`] is O(1) and neither early nor late;
//! - a timer never fires before its `at` (the test is `at <= now`, not the
//!   tick), so the resolution only decides how entries are spread.

use std::time::{Duration, Instant};

/// No entry: the end of a slot list or of the free list.
const NIL: u32 = u32::MAX;

/// A handle to one inserted timer, valid until it fires or is cancelled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

struct Entry<K> {
    /// `Some` while pending; `None` while on the free list.
    key: Option<K>,
    at: Instant,
    tick: u64,
    /// Insertion order, to fire timers with equal `at` first-in first-out.
    sequence: u64,
    /// Bumped whenever the entry is freed, so old ids stop matching.
    generation: u32,
    /// Slot list links while pending; `next` links the free list while free.
    prev: u32,
    next: u32,
}

/// A hashed timer wheel of keys `K` (for example an enum naming a
/// container's scrape tick or a connection's deadline).
pub struct TimerWheel<K> {
    start: Instant,
    resolution_nanos: u128,
    /// The tick of the last `expire` (entries of earlier ticks all fired).
    current_tick: u64,
    slot_heads: Vec<u32>,
    slot_earliest: Vec<Option<Instant>>,
    earliest: Option<Instant>,
    entries: Vec<Entry<K>>,
    free_head: u32,
    len: usize,
    next_sequence: u64,
    /// Reused by `expire` to put the fired keys in time order.
    fired_scratch: Vec<(Instant, u64, K)>,
}

impl<K: Copy> TimerWheel<K> {
    /// A wheel whose tick 0 starts at `start`. A zero `resolution` is taken
    /// as 1 ns and zero `slots` as 1 (both only cost speed, never
    /// correctness). One turn of the wheel is `resolution * slots`; timers
    /// further away cost one extra look each turn.
    pub fn new(start: Instant, resolution: Duration, slots: usize) -> Self {
        let slots = slots.max(1);
        TimerWheel {
            start,
            resolution_nanos: resolution.as_nanos().max(1),
            current_tick: 0,
            slot_heads: vec![NIL; slots],
            slot_earliest: vec![None; slots],
            earliest: None,
            entries: Vec::new(),
            free_head: NIL,
            len: 0,
            next_sequence: 0,
            fired_scratch: Vec::new(),
        }
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `key` to fire at `at` (O(1)). An `at` already in the past
    /// fires on the next [`TimerWheel::expire`].
    pub fn insert(&mut self, at: Instant, key: K) -> TimerId {
        let tick = self.tick_of(at).max(self.current_tick);
        let slot = self.slot_of(tick);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let head = self.slot_heads[slot];
        let entry = Entry {
            key: Some(key),
            at,
            tick,
            sequence,
            generation: 0,
            prev: NIL,
            next: head,
        };
        let index = if self.free_head == NIL {
            // More than u32::MAX - 1 pending timers cannot happen with one
            // tick and one deadline per container.
            let index = self.entries.len() as u32;
            self.entries.push(entry);
            index
        } else {
            let index = self.free_head;
            let slot_entry = &mut self.entries[index as usize];
            self.free_head = slot_entry.next;
            let generation = slot_entry.generation;
            *slot_entry = Entry {
                generation,
                ..entry
            };
            index
        };
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        self.slot_heads[slot] = index;
        self.slot_earliest[slot] = earlier(self.slot_earliest[slot], at);
        self.earliest = earlier(self.earliest, at);
        self.len += 1;
        TimerId {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Cancels a pending timer; returns whether it was pending. A stale id
    /// (fired, cancelled, or its entry reused since) returns false.
    ///
    /// O(1), except when the cancelled timer is its slot's earliest: then
    /// that slot's list and, if it was the overall earliest, the slot minima
    /// are scanned again so that `next_deadline` never wakes the loop early.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        let Some(entry) = self.entries.get(id.index as usize) else {
            return false;
        };
        if entry.generation != id.generation || entry.key.is_none() {
            return false;
        }
        let at = entry.at;
        let slot = self.slot_of(entry.tick);
        self.unlink(id.index, slot);
        self.free(id.index);
        if self.slot_earliest[slot] == Some(at) {
            self.slot_earliest[slot] = self.scan_slot_earliest(slot);
            if self.earliest == Some(at) {
                self.earliest = self.scan_earliest();
            }
        }
        true
    }

    /// The `at` of the earliest pending timer, or `None` if none is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.earliest
    }

    /// Appends to `fired` the key of every timer with `at <= now`, in order
    /// of `at` (equal `at`: insertion order), and removes those timers.
    pub fn expire(&mut self, now: Instant, fired: &mut Vec<K>) {
        if self.earliest.map_or(true, |earliest| earliest > now) {
            // Nothing is due; still advance the wheel so that later inserts
            // "in the past" land on the current tick.
            self.current_tick = self.current_tick.max(self.tick_of(now));
            return;
        }
        let now_tick = self.tick_of(now).max(self.current_tick);
        let slots = self.slot_heads.len() as u64;
        // Visit the slots of ticks current..=now; after a long pause that
        // covers every slot once.
        let visits = (now_tick - self.current_tick).saturating_add(1).min(slots);
        let mut scratch = std::mem::take(&mut self.fired_scratch);
        for offset in 0..visits {
            let slot = self.slot_of(self.current_tick + offset);
            self.expire_slot(slot, now, &mut scratch);
        }
        self.current_tick = now_tick;
        self.earliest = self.scan_earliest();
        scratch.sort_unstable_by_key(|&(at, sequence, _)| (at, sequence));
        fired.extend(scratch.iter().map(|&(_, _, key)| key));
        scratch.clear();
        self.fired_scratch = scratch;
    }

    /// Moves the due entries of one slot to `scratch` and recomputes the
    /// slot's earliest `at` from the entries that stay.
    fn expire_slot(&mut self, slot: usize, now: Instant, scratch: &mut Vec<(Instant, u64, K)>) {
        let mut earliest = None;
        let mut index = self.slot_heads[slot];
        while index != NIL {
            let entry = &self.entries[index as usize];
            let next = entry.next;
            match entry.key {
                Some(key) if entry.at <= now => {
                    scratch.push((entry.at, entry.sequence, key));
                    self.unlink(index, slot);
                    self.free(index);
                }
                _ => earliest = earlier(earliest, entry.at),
            }
            index = next;
        }
        self.slot_earliest[slot] = earliest;
    }

    fn unlink(&mut self, index: u32, slot: usize) {
        let (prev, next) = {
            let entry = &self.entries[index as usize];
            (entry.prev, entry.next)
        };
        if prev == NIL {
            self.slot_heads[slot] = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    fn free(&mut self, index: u32) {
        let entry = &mut self.entries[index as usize];
        entry.key = None;
        entry.generation = entry.generation.wrapping_add(1);
        entry.prev = NIL;
        entry.next = self.free_head;
        self.free_head = index;
        self.len -= 1;
    }

    fn scan_slot_earliest(&self, slot: usize) -> Option<Instant> {
        let mut earliest = None;
        let mut index = self.slot_heads[slot];
        while index != NIL {
            let entry = &self.entries[index as usize];
            earliest = earlier(earliest, entry.at);
            index = entry.next;
        }
        earliest
    }

    fn scan_earliest(&self) -> Option<Instant> {
        self.slot_earliest.iter().flatten().min().copied()
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.start).as_nanos();
        u64::try_from(nanos / self.resolution_nanos).unwrap_or(u64::MAX)
    }

    fn slot_of(&self, tick: u64) -> usize {
        (tick % self.slot_heads.len() as u64) as usize
    }
}

fn earlier(current: Option<Instant>, candidate: Instant) -> Option<Instant> {
    Some(current.map_or(candidate, |current| current.min(candidate)))
}

/// Fixed cadence: the first tick strictly after `now` on the grid
/// `previous + k * interval` (k >= 1). Missed ticks are skipped, never
/// burst. A zero `interval` is taken as 1 ns.
pub fn next_tick(previous: Instant, interval: Duration, now: Instant) -> Instant {
    let interval_nanos = interval.as_nanos().max(1);
    let elapsed = now.saturating_duration_since(previous).as_nanos();
    let k = elapsed / interval_nanos + 1;
    let offset = k * interval_nanos;
    let offset = Duration::new(
        u64::try_from(offset / 1_000_000_000).unwrap_or(u64::MAX),
        (offset % 1_000_000_000) as u32,
    );
    previous + offset
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    const MS: Duration = Duration::from_millis(1);

    fn wheel(start: Instant) -> TimerWheel<u32> {
        // 10 ms ticks, 8 slots: one turn is 80 ms, so tests wrap easily.
        TimerWheel::new(start, 10 * MS, 8)
    }

    fn expire(wheel: &mut TimerWheel<u32>, now: Instant) -> Vec<u32> {
        let mut fired = Vec::new();
        wheel.expire(now, &mut fired);
        fired
    }

    #[test]
    fn fires_in_time_order_and_never_early() {
        let t0 = Instant::now();
        let mut wheel = wheel(t0);
        for (ms, key) in [(35u64, 3), (5, 0), (15, 1), (25, 2), (15, 11)] {
            wheel.insert(t0 + Duration::from_millis(ms), key);
        }
        let table: [(u64, &[u32]); 6] = [
            (4, &[]),
            (5, &[0]),
            (14, &[]),
            (20, &[1, 11]),
            (34, &[2]),
            (35, &[3]),
        ];
        for (ms, expected) in table {
            assert_eq!(
                expire(&mut wheel, t0 + Duration::from_millis(ms)),
                expected,
                "at {ms} ms"
            );
        }
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn many_timers_in_one_slot() {
        let t0 = Instant::now();
        let mut wheel = wheel(t0);
        // All in tick 2, some one and two turns later in the same slot.
        for key in 0..100u32 {
            let turn = (key % 3) as u64 * 80;
            wheel.insert(
                t0 + Duration::from_millis(20 + turn) + Duration::from_micros(key as u64),
                key,
            );
        }
        let first: Vec<u32> = (0..100).filter(|k| k % 3 == 0).collect();
        assert_eq!(expire(&mut wheel, t0 + 30 * MS), first);
        assert_eq!(wheel.len(), 66);
        assert_eq!(
            wheel.next_deadline(),
            Some(t0 + 100 * MS + Duration::from_micros(1))
        );
        let second: Vec<u32> = (0..100).filter(|k| k % 3 == 1).collect();
        assert_eq!(expire(&mut wheel, t0 + 110 * MS), second);
        let third: Vec<u32> = (0..100).filter(|k| k % 3 == 2).collect();
        assert_eq!(expire(&mut wheel, t0 + 190 * MS), third);
        assert!(wheel.is_empty());
    }

    #[test]
    fn far_timers_wrap_around_the_wheel_several_times() {
        let t0 = Instant::now();
        let mut wheel = wheel(t0);
        wheel.insert(t0 + 1000 * MS, 1); // 12.5 turns away
        wheel.insert(t0 + 245 * MS, 2);
        for step in 0..100u64 {
            let now = t0 + Duration::from_millis(step * 9);
            let fired = expire(&mut wheel, now);
            match step * 9 {
                252 => assert_eq!(fired, [2]),
                ms => assert!(fired.is_empty(), "{fired:?} at {ms} ms"),
            }
        }
        assert_eq!(wheel.next_deadline(), Some(t0 + 1000 * MS));
        assert_eq!(expire(&mut wheel, t0 + 1000 * MS), [1]);
    }

    #[test]
    fn long_pause_fires_everything_due_once() {
        let t0 = Instant::now();
        let mut wheel = wheel(t0);
        for key in 0..20u32 {
            wheel.insert(t0 + Duration::from_millis(key as u64 * 37), key);
        }
        let fired = expire(&mut wheel, t0 + 10_000 * MS);
        assert_eq!(fired, (0..20).collect::<Vec<_>>());
        assert!(wheel.is_empty());
    }

    #[test]
    fn past_timers_fire_on_next_expire() {
        let t0 = Instant::now();
        let mut wheel = wheel(t0);
        assert!(expire(&mut wheel, t0 + 500 * MS).is_empty());
        wheel.insert(t0 + 100 * MS, 1);
        wheel.insert(t0, 2);
        assert_eq!(wheel.next_deadline(), Some(t0));
        assert_eq!(expire(&mut wheel, t0 + 501 * MS), [2, 1]);
    }

    #[test]
    fn cancel_and_stale_ids() {
        let t0 = Instant::now();
        let mut wheel = wheel(t0);
        let a = wheel.insert(t0 + 10 * MS, 1);
        let b = wheel.insert(t0 + 20 * MS, 2);
        assert!(wheel.cancel(a));
        assert!(!wheel.cancel(a), "second cancel of the same id");
        assert_eq!(wheel.next_deadline(), Some(t0 + 20 * MS));
        // The freed entry is reused; the old id must not cancel the new timer.
        let c = wheel.insert(t0 + 30 * MS, 3);
        assert_ne!(a, c);
        assert!(!wheel.cancel(a));
        assert_eq!(wheel.len(), 2);
        assert_eq!(expire(&mut wheel, t0 + 25 * MS), [2]);
        assert!(!wheel.cancel(b), "fired id");
        assert!(
            !wheel.cancel(TimerId {
                index: 99,
                generation: 0
            }),
            "unknown id"
        );
        assert!(wheel.cancel(c));
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
        assert!(expire(&mut wheel, t0 + 100 * MS).is_empty());
    }

    #[test]
    fn next_deadline_follows_inserts_cancels_and_expires() {
        let t0 = Instant::now();
        let mut wheel = wheel(t0);
        assert_eq!(wheel.next_deadline(), None);
        let late = wheel.insert(t0 + 500 * MS, 1);
        assert_eq!(wheel.next_deadline(), Some(t0 + 500 * MS));
        let early = wheel.insert(t0 + 13 * MS, 2);
        assert_eq!(wheel.next_deadline(), Some(t0 + 13 * MS));
        wheel.insert(t0 + 17 * MS, 3); // same slot as `early`
        assert!(wheel.cancel(early));
        assert_eq!(wheel.next_deadline(), Some(t0 + 17 * MS));
        assert_eq!(expire(&mut wheel, t0 + 17 * MS), [3]);
        assert_eq!(wheel.next_deadline(), Some(t0 + 500 * MS));
        assert!(wheel.cancel(late));
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn next_tick_keeps_the_grid_and_skips_missed_ticks() {
        let t0 = Instant::now();
        let interval = 200 * MS;
        let table: [(u64, u64); 6] = [
            // (now - previous in ms, expected next - previous in ms)
            (0, 200),
            (1, 200),
            (199, 200),
            (200, 400), // strictly after now
            (201, 400),
            (1_050, 1_200), // four missed ticks skipped, not burst
        ];
        for (elapsed, expected) in table {
            let next = next_tick(t0, interval, t0 + Duration::from_millis(elapsed));
            assert_eq!(
                next,
                t0 + Duration::from_millis(expected),
                "now = previous + {elapsed} ms"
            );
        }
        // A `now` before `previous` (clock handed in late) still moves forward.
        let later = t0 + 1000 * MS;
        assert_eq!(next_tick(later, interval, t0), later + interval);
        assert_eq!(
            next_tick(t0, Duration::ZERO, t0),
            t0 + Duration::from_nanos(1)
        );
    }

    /// The obviously correct reference: a Vec scanned on every call.
    #[derive(Default)]
    struct NaiveTimers {
        pending: Vec<(Instant, u64, u32)>,
        sequence: u64,
    }

    impl NaiveTimers {
        fn insert(&mut self, at: Instant, key: u32) {
            self.pending.push((at, self.sequence, key));
            self.sequence += 1;
        }

        fn cancel(&mut self, key: u32) -> bool {
            let before = self.pending.len();
            self.pending.retain(|&(_, _, pending)| pending != key);
            before != self.pending.len()
        }

        fn next_deadline(&self) -> Option<Instant> {
            self.pending.iter().map(|&(at, _, _)| at).min()
        }

        fn expire(&mut self, now: Instant) -> Vec<u32> {
            let mut due: Vec<_> = self
                .pending
                .iter()
                .copied()
                .filter(|&(at, _, _)| at <= now)
                .collect();
            self.pending.retain(|&(at, _, _)| at > now);
            due.sort_unstable_by_key(|&(at, sequence, _)| (at, sequence));
            due.into_iter().map(|(_, _, key)| key).collect()
        }
    }

    #[test]
    fn matches_naive_reference_on_random_operations() {
        for seed in 1..=20u64 {
            let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let t0 = Instant::now();
            let resolution = Duration::from_micros(1 + rng.next_u64() % 5_000);
            let slots = 1 + rng.below(64);
            let mut wheel = TimerWheel::new(t0, resolution, slots);
            let mut naive = NaiveTimers::default();
            let mut ids: Vec<(u32, TimerId)> = Vec::new();
            let mut now = t0;
            let mut next_key = 0u32;
            for step in 0..3_000 {
                match rng.below(10) {
                    0..=4 => {
                        // Up to ~20 turns of the wheel ahead, sometimes in the past.
                        let span = resolution.as_micros() as u64 * slots as u64 * 20;
                        let offset = Duration::from_micros(rng.next_u64() % span.max(1));
                        let at = if rng.below(10) == 0 {
                            now.checked_sub(offset).unwrap_or(t0)
                        } else {
                            now + offset
                        };
                        let id = wheel.insert(at, next_key);
                        naive.insert(at, next_key);
                        ids.push((next_key, id));
                        next_key += 1;
                    }
                    5 | 6 if !ids.is_empty() => {
                        let (key, id) = ids.swap_remove(rng.below(ids.len()));
                        assert_eq!(
                            wheel.cancel(id),
                            naive.cancel(key),
                            "seed {seed} step {step} cancel {key}"
                        );
                    }
                    _ => {
                        now += Duration::from_micros(
                            rng.next_u64() % (resolution.as_micros() as u64 * slots as u64 * 3),
                        );
                        let mut fired = Vec::new();
                        wheel.expire(now, &mut fired);
                        assert_eq!(fired, naive.expire(now), "seed {seed} step {step}");
                    }
                }
                assert_eq!(wheel.len(), naive.pending.len(), "seed {seed} step {step}");
                assert_eq!(
                    wheel.next_deadline(),
                    naive.next_deadline(),
                    "seed {seed} step {step}"
                );
            }
        }
    }
}
