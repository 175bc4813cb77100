//! Token buckets keyed by a source (an IP address, a peer id): `capacity`
//! tokens, refilled at `capacity` per `period`. A bucket that has refilled
//! completely is the same as no bucket, so [`Buckets::sweep`] drops those:
//! the map holds only sources that used some of their allowance within the
//! last period, and never more than `max_keys` (a source beyond that is let
//! through untracked rather than refused: the caps per address and the
//! connection limits still hold).
//!
//! A sweep looks only at the buckets due to be full by then: each bucket has
//! one entry in a queue ordered by when it was last seen to be full again, so
//! a relay holding 10,000 sources that are refilling does not walk them all
//! on every sweep. Sources are kept as a keyed 64-bit hash of the key (two
//! sources sharing one would share an allowance; with a random key per
//! process that takes about 2^32 sources at once), which keeps an entry at 56
//! bytes whatever the key.

use std::cmp::{Ordering, Reverse};
use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

pub struct Buckets<K> {
    capacity: f64,
    per_sec: f64,
    max_keys: usize,
    hasher: RandomState,
    /// By the key's hash: tokens left, and when they were counted.
    map: HashMap<u64, (f64, Instant)>,
    /// One entry per bucket in `map`: a time by which it cannot be full
    /// again, earliest first.
    due: BinaryHeap<Reverse<Due>>,
    key: PhantomData<fn(&K)>,
}

/// A bucket's hash and a time it cannot be full before; ordered by time.
struct Due(Instant, u64);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl<K: Hash> Buckets<K> {
    pub fn new(capacity: u32, period: Duration, max_keys: usize) -> Self {
        Buckets {
            capacity: f64::from(capacity),
            per_sec: f64::from(capacity) / period.as_secs_f64().max(1e-3),
            max_keys,
            hasher: RandomState::new(),
            map: HashMap::new(),
            due: BinaryHeap::new(),
            key: PhantomData,
        }
    }

    /// Takes one token for `key`; false when its bucket is empty.
    pub fn take(&mut self, key: &K, now: Instant) -> bool {
        if self.capacity <= 0.0 {
            return true;
        }
        let (capacity, per_sec) = (self.capacity, self.per_sec);
        let hash = self.hasher.hash_one(key);
        let full = self.map.len() >= self.max_keys;
        let (tokens, at) = match self.map.entry(hash) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if full => return true,
            Entry::Vacant(e) => {
                // Full now; one token less is full again a token's time on.
                self.due.push(Reverse(Due(
                    now + Duration::from_secs_f64(1.0 / per_sec),
                    hash,
                )));
                e.insert((capacity, now))
            }
        };
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops the buckets that are full again by `now`.
    pub fn sweep(&mut self, now: Instant) {
        let (capacity, per_sec) = (self.capacity, self.per_sec);
        while let Some(Reverse(Due(when, hash))) = self.due.peek() {
            if *when > now {
                break;
            }
            let hash = *hash;
            self.due.pop();
            let Some((tokens, at)) = self.map.get(&hash) else {
                continue;
            };
            let missing =
                capacity - (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec);
            if missing <= 0.0 {
                self.map.remove(&hash);
            } else {
                // Taken from since: due again once what is missing is back.
                // At least a millisecond on, so that this sweep ends.
                let refill =
                    Duration::from_secs_f64(missing / per_sec).max(Duration::from_millis(1));
                self.due.push(Reverse(Due(now + refill, hash)));
            }
        }
    }

    /// When the next bucket may be full again, if there are any.
    pub fn next_full(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse(Due(when, _))| *when)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_over_its_period_and_full_ones_are_forgotten() {
        let t0 = Instant::now();
        let mut b = Buckets::new(3, Duration::from_secs(60), 10);
        assert!((0..3).all(|_| b.take(&"a", t0)));
        assert!(!b.take(&"a", t0));
        assert!(b.take(&"b", t0), "another source has its own");
        assert!(
            b.take(&"a", t0 + Duration::from_secs(20)),
            "one token back after a third of the period"
        );
        assert!(!b.take(&"a", t0 + Duration::from_secs(21)));
        b.sweep(t0 + Duration::from_secs(10));
        assert_eq!(b.len(), 2);
        b.sweep(t0 + Duration::from_secs(30));
        assert_eq!(b.len(), 1, "b has refilled, a has not");
        b.sweep(t0 + Duration::from_secs(200));
        assert!(b.is_empty(), "refilled buckets are dropped");
    }

    #[test]
    fn a_sweep_drops_exactly_the_buckets_that_are_full_again() {
        let t0 = Instant::now();
        let secs = |s: u64| t0 + Duration::from_secs(s);
        // One token back every 10 s.
        let mut b = Buckets::new(6, Duration::from_secs(60), 1000);
        for key in 0..100u32 {
            assert!(b.take(&key, t0));
        }
        assert_eq!(b.next_full(), Some(secs(10)));
        // Key 7 takes three more at 5 s: 2.5 tokens left.
        assert!((0..3).all(|_| b.take(&7, secs(5))));
        b.sweep(secs(9));
        assert_eq!(b.len(), 100, "nothing is full before 10 s");
        b.sweep(secs(10));
        assert_eq!(b.len(), 1, "all but key 7 are full at 10 s");
        assert_eq!(b.due.len(), 1, "one queue entry per bucket");
        assert_eq!(b.next_full(), Some(secs(40)), "7 is 3 tokens short");
        // Taken from again after it was queued: at 40 s it is 1 short.
        assert!(b.take(&7, secs(20)));
        b.sweep(secs(40));
        assert_eq!(b.len(), 1);
        assert_eq!(b.next_full(), Some(secs(50)));
        b.sweep(secs(50));
        assert!(b.is_empty(), "full at 50 s");
        assert!((0..6).all(|_| b.take(&7, secs(50))));
        assert!(!b.take(&7, secs(50)));
        b.sweep(secs(200));
        assert!(b.is_empty() && b.due.is_empty() && b.next_full().is_none());
    }

    #[test]
    fn the_map_is_bounded() {
        let t0 = Instant::now();
        let mut b = Buckets::new(1, Duration::from_secs(60), 2);
        assert!(b.take(&1, t0) && b.take(&2, t0));
        assert!(
            b.take(&3, t0) && b.take(&3, t0),
            "untracked beyond the bound"
        );
        assert_eq!(b.len(), 2);
        assert_eq!(b.due.len(), 2, "the due queue is bounded with the map");
        let mut off = Buckets::new(0, Duration::from_secs(60), 2);
        assert!((0..100).all(|_| off.take(&1, t0)), "capacity 0: no limit");
        assert!(off.is_empty());
    }
}
