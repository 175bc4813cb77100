//! The seam between the server's subscriptions and the relay's event
//! journal. The journal itself lives in the relay (in sled, so numbering and
//! recent events survive a restart); the server only needs to append and to
//! read from a sequence number, so it takes any [`Journal`]. That keeps
//! sled out of this crate and lets tests and sidecar mocks use the bounded
//! in-memory [`MemoryJournal`].

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::{Event, EventKind};

/// An append-only, numbered, bounded log of events.
///
/// Sequence numbers start at 1, grow by one per append and never go back
/// (unless the journal is deleted). Old events are pruned to bound it.
pub trait Journal: Send + Sync + 'static {
    /// Stamps `kind` with the next sequence number and the current time,
    /// stores it, and returns the stored event. A storage failure is
    /// returned, never panicked on: the relay keeps relaying.
    fn append(&self, kind: EventKind) -> Result<Event, String>;

    /// Up to `limit` events from `from` on, in order (none when `from` is
    /// not yet written), or the gap when `from` was already pruned.
    fn read_from(&self, from: u64, limit: usize) -> Result<Read, String>;

    /// The sequence number the next append gets.
    fn next_seq(&self) -> u64;
}

/// What a read from a sequence number finds.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    Events(Vec<Event>),
    /// `from..=to` were pruned; the oldest event held is `to + 1`.
    Gap {
        from: u64,
        to: u64,
    },
}

/// A journal in memory keeping the newest `capacity` events: for tests and
/// for programs that simulate a relay. Numbering survives as long as the
/// value does, so a test can restart a server on the same journal.
pub struct MemoryJournal {
    capacity: usize,
    ring: Mutex<Ring>,
}

struct Ring {
    events: VecDeque<Event>,
    next: u64,
}

impl MemoryJournal {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                next: 1,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // Every update leaves the ring consistent, so a poisoned lock is usable.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Journal for MemoryJournal {
    fn append(&self, kind: EventKind) -> Result<Event, String> {
        let mut ring = self.lock();
        let event = Event::new(ring.next, kind);
        ring.next += 1;
        if ring.events.len() == self.capacity {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        Ok(event)
    }

    fn read_from(&self, from: u64, limit: usize) -> Result<Read, String> {
        let ring = self.lock();
        let from = from.max(1);
        let first = ring.next - ring.events.len() as u64;
        if from < first {
            return Ok(Read::Gap {
                from,
                to: first - 1,
            });
        }
        let skip = (from - first) as usize;
        Ok(Read::Events(
            ring.events.iter().skip(skip).take(limit).cloned().collect(),
        ))
    }

    fn next_seq(&self) -> u64 {
        self.lock().next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(n: u64) -> EventKind {
        EventKind::Error {
            error_kind: "test".into(),
            message: n.to_string(),
        }
    }

    fn seqs(read: Read) -> Vec<u64> {
        match read {
            Read::Events(events) => events.iter().map(|e| e.seq).collect(),
            Read::Gap { from, to } => panic!("gap {from}..={to}"),
        }
    }

    #[test]
    fn numbers_from_one_and_reads_in_order() {
        let j = MemoryJournal::new(10);
        assert_eq!(j.next_seq(), 1);
        for n in 0..5 {
            assert_eq!(j.append(error(n)).unwrap().seq, n + 1);
        }
        assert_eq!(seqs(j.read_from(2, 2).unwrap()), [2, 3]);
        assert_eq!(seqs(j.read_from(0, 100).unwrap()), [1, 2, 3, 4, 5]);
        assert_eq!(seqs(j.read_from(6, 100).unwrap()), Vec::<u64>::new());
    }

    #[test]
    fn pruned_sequences_read_as_a_gap() {
        let j = MemoryJournal::new(3);
        for n in 0..10 {
            j.append(error(n)).unwrap();
        }
        assert_eq!(j.read_from(2, 10).unwrap(), Read::Gap { from: 2, to: 7 });
        assert_eq!(seqs(j.read_from(8, 10).unwrap()), [8, 9, 10]);
        assert_eq!(j.next_seq(), 11);
    }
}
