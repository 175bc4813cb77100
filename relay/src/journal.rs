//! The event journal: every event the relay emits, numbered, kept on disk
//! (sled) in a bounded window so that a sidecar that was down, or a relay that
//! restarted, loses nothing a subscriber has not yet read — as long as it
//! comes back before the window moves past it. A reader that asks for a
//! sequence already pruned is told exactly how many events it lost.

use std::path::Path;
use std::sync::Mutex;

/// One event as stored: its sequence number and its JSON encoding.
pub type Entry = (u64, Vec<u8>);

/// What a read from a sequence number finds.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// Events `from..to` (inclusive) were pruned before being read.
    Gap {
        from: u64,
        to: u64,
    },
    Events(Vec<Entry>),
}

pub struct Journal {
    db: sled::Db,
    events: sled::Tree,
    max_events: u64,
    max_bytes: u64,
    state: Mutex<Window>,
}

/// The contiguous range of sequence numbers held, and their size.
struct Window {
    first: u64,
    next: u64,
    bytes: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, keeping at most `max_events`
    /// events and `max_bytes` of encoded events.
    pub fn open(dir: &Path, max_events: u64, max_bytes: u64) -> Result<Self, String> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(8 << 20)
            .flush_every_ms(Some(200))
            .open()
            .map_err(|e| format!("{}: cannot open the event journal: {e}", dir.display()))?;
        let events = db
            .open_tree("events")
            .map_err(|e| format!("{}: cannot open the event journal: {e}", dir.display()))?;
        let first = match events.first() {
            Ok(Some((k, _))) => seq_of(&k),
            Ok(None) => 1,
            Err(e) => return Err(format!("{}: event journal unreadable: {e}", dir.display())),
        };
        let next = match events.last() {
            Ok(Some((k, _))) => seq_of(&k) + 1,
            Ok(None) => stored_next(&db).unwrap_or(1),
            Err(e) => return Err(format!("{}: event journal unreadable: {e}", dir.display())),
        };
        let bytes = events
            .iter()
            .values()
            .flatten()
            .map(|v| v.len() as u64)
            .sum();
        Ok(Self {
            db,
            events,
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            state: Mutex::new(Window {
                first: first.min(next),
                next,
                bytes,
            }),
        })
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.lock().next
    }

    /// The oldest sequence number still held.
    pub fn first_seq(&self) -> u64 {
        self.lock().first
    }

    pub fn len(&self) -> u64 {
        let w = self.lock();
        w.next - w.first
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores an event built for its sequence number and returns that number.
    /// A storage failure is returned, never panicked on: the relay keeps
    /// relaying with an incomplete journal rather than stopping.
    pub fn append(&self, encode: impl FnOnce(u64) -> Vec<u8>) -> Result<(u64, Vec<u8>), String> {
        let mut w = self.lock();
        let seq = w.next;
        let value = encode(seq);
        self.events
            .insert(seq.to_be_bytes(), value.as_slice())
            .map_err(|e| format!("event journal write failed: {e}"))?;
        w.next += 1;
        w.bytes += value.len() as u64;
        if w.next % 1024 == 0 {
            let _ = self.db.insert("next", &w.next.to_be_bytes());
        }
        while w.next - w.first > self.max_events
            || (w.bytes > self.max_bytes && w.next - w.first > 1)
        {
            match self.events.remove(w.first.to_be_bytes()) {
                Ok(Some(old)) => w.bytes = w.bytes.saturating_sub(old.len() as u64),
                Ok(None) => {}
                Err(e) => return Err(format!("event journal prune failed: {e}")),
            }
            w.first += 1;
        }
        Ok((seq, value))
    }

    /// Up to `limit` events from `from` on, or the gap before what is held.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Read, String> {
        let first = self.lock().first;
        let from = from.max(1);
        if from < first {
            return Ok(Read::Gap {
                from,
                to: first - 1,
            });
        }
        let mut out = Vec::new();
        for item in self.events.range(from.to_be_bytes()..).take(limit) {
            let (k, v) = item.map_err(|e| format!("event journal read failed: {e}"))?;
            out.push((seq_of(&k), v.to_vec()));
        }
        Ok(Read::Events(out))
    }

    /// Writes everything to disk; called when the relay stops.
    pub fn flush(&self) -> Result<(), String> {
        let next = self.lock().next;
        let _ = self.db.insert("next", &next.to_be_bytes());
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| format!("event journal flush failed: {e}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // A panic while holding the lock leaves the window consistent (every
        // update is a plain assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn seq_of(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(b)
}

/// The next sequence number recorded when every event had been pruned, so
/// numbering never goes backwards.
fn stored_next(db: &sled::Db) -> Option<u64> {
    db.get("next").ok().flatten().map(|v| seq_of(&v))
}

/// The control socket's view of the journal: typed events in, typed events out.
impl bsv_p2p_proto::Journal for Journal {
    fn append(&self, kind: bsv_p2p_proto::EventKind) -> Result<bsv_p2p_proto::Event, String> {
        let mut event = None;
        Journal::append(self, |seq| {
            let e = bsv_p2p_proto::Event::new(seq, kind);
            let bytes = serde_json::to_vec(&e).unwrap_or_default();
            event = Some(e);
            bytes
        })?;
        event.ok_or_else(|| "event journal: nothing appended".to_string())
    }

    fn read_from(&self, from: u64, limit: usize) -> Result<bsv_p2p_proto::Read, String> {
        Ok(match Journal::read_from(self, from, limit)? {
            Read::Gap { from, to } => bsv_p2p_proto::Read::Gap { from, to },
            Read::Events(entries) => bsv_p2p_proto::Read::Events(
                entries
                    .into_iter()
                    .filter_map(|(seq, bytes)| match serde_json::from_slice(&bytes) {
                        Ok(e) => Some(e),
                        Err(err) => {
                            log::warn!(event = "error", kind = "journal_decode", seq = seq, error = err.to_string().as_str(); "skipping an unreadable journal entry");
                            None
                        }
                    })
                    .collect(),
            ),
        })
    }

    fn next_seq(&self) -> u64 {
        Journal::next_seq(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("bsv-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn numbering_survives_a_reopen() {
        let dir = temp("reopen");
        {
            let j = Journal::open(&dir, 100, 1 << 20).unwrap();
            for _ in 0..5 {
                j.append(|seq| format!("{{\"seq\":{seq}}}").into_bytes())
                    .unwrap();
            }
            j.flush().unwrap();
        }
        let j = Journal::open(&dir, 100, 1 << 20).unwrap();
        assert_eq!(j.next_seq(), 6);
        let Read::Events(ev) = j.read_from(4, 10).unwrap() else {
            panic!("gap")
        };
        assert_eq!(ev.iter().map(|e| e.0).collect::<Vec<_>>(), [4, 5]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pruned_sequences_read_as_a_gap() {
        let dir = temp("gap");
        let j = Journal::open(&dir, 3, 1 << 20).unwrap();
        for _ in 0..10 {
            j.append(|_| b"{}".to_vec()).unwrap();
        }
        assert_eq!(j.len(), 3);
        assert_eq!(j.read_from(2, 10).unwrap(), Read::Gap { from: 2, to: 7 });
        let Read::Events(ev) = j.read_from(8, 10).unwrap() else {
            panic!("gap")
        };
        assert_eq!(ev.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn byte_budget_prunes_oldest_first() {
        let dir = temp("bytes");
        let j = Journal::open(&dir, 1000, 100).unwrap();
        for _ in 0..10 {
            j.append(|_| vec![b'x'; 30]).unwrap();
        }
        assert!(j.len() <= 3, "{}", j.len());
        assert_eq!(j.first_seq(), 11 - j.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
