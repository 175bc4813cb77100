//! Token buckets keyed by a source (an IP address, a peer id): `capacity`
//! tokens, refilled at `capacity` per `period`. A bucket that has refilled
//! completely is the same as no bucket, so [`Buckets::sweep`] drops those:
//! the map holds only sources that used some of their allowance within the
//! last period, and never more than `max_keys` (a source beyond that is let
//! through untracked rather than refused: the caps per address and the
//! connection limits still hold).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

pub struct Buckets<K> {
    capacity: f64,
    per_sec: f64,
    max_keys: usize,
    map: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(capacity: u32, period: Duration, max_keys: usize) -> Self {
        Buckets {
            capacity: f64::from(capacity),
            per_sec: f64::from(capacity) / period.as_secs_f64().max(1e-3),
            max_keys,
            map: HashMap::new(),
        }
    }

    /// Takes one token for `key`; false when its bucket is empty.
    pub fn take(&mut self, key: &K, now: Instant) -> bool {
        if self.capacity <= 0.0 {
            return true;
        }
        let (capacity, per_sec) = (self.capacity, self.per_sec);
        if !self.map.contains_key(key) && self.map.len() >= self.max_keys {
            return true;
        }
        let (tokens, at) = self.map.entry(key.clone()).or_insert((capacity, now));
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
        self.map.retain(|_, (tokens, at)| {
            *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec < capacity
        });
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

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
    fn the_map_is_bounded() {
        let t0 = Instant::now();
        let mut b = Buckets::new(1, Duration::from_secs(60), 2);
        assert!(b.take(&1, t0) && b.take(&2, t0));
        assert!(
            b.take(&3, t0) && b.take(&3, t0),
            "untracked beyond the bound"
        );
        assert_eq!(b.len(), 2);
        let mut off = Buckets::new(0, Duration::from_secs(60), 2);
        assert!((0..100).all(|_| off.take(&1, t0)), "capacity 0: no limit");
        assert!(off.is_empty());
    }
}
