//! The event journal: every event the relay emits, numbered, kept on disk
//! (sled) in a bounded window so that a sidecar that was down, or a relay that
//! restarted, loses nothing a subscriber has not yet read — as long as it
//! comes back before the window moves past it. A reader that asks for a
//! sequence already pruned is told exactly how many events it lost.
//!
//! A sequence number is never handed out twice, also across `kill -9`:
//! events reach live subscribers before sled writes them to disk, so the
//! numbers in use are reserved ahead in blocks, in a small file of their own
//! (`journal.seq` beside the journal) written and synced by a thread of its
//! own before a block is entered. After a crash numbering resumes past the
//! reserved block, and the numbers between the last event on disk and there
//! read as a gap. A journal sled cannot open (corruption after a crash, a
//! full disk) is moved aside, logged as an error, and replaced by an empty
//! one that numbers on from the reserved mark.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::worker::{Refused, Worker};

/// Sequence numbers reserved at a time. A crash can skip at most this many;
/// the next block is reserved when half of this one is used, so the swarm
/// task only waits for the disk if more than half a block of events comes
/// while one small file is synced.
const BLOCK: u64 = 4096;

/// How long a write waits to reach the disk: the journal's flush task flushes
/// this long after the first write since its last flush, so a burst of
/// events costs one flush, and an idle relay none (sled's own flusher would
/// wake every interval, written to or not).
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// One event as stored: its sequence number and its JSON encoding.
pub type Entry = (u64, Vec<u8>);

/// What a read from a sequence number finds.
#[derive(Debug, PartialEq)]
pub enum Read {
    /// Events `from..to` (inclusive) were pruned, or lost in a crash, before
    /// being read.
    Gap {
        from: u64,
        to: u64,
    },
    Events(Vec<Entry>),
}

pub struct Journal {
    db: Arc<sled::Db>,
    events: sled::Tree,
    /// Ranges of numbers handed out but never stored (a crash), by first
    /// number; the value is the last.
    holes: sled::Tree,
    max_events: u64,
    max_bytes: u64,
    state: Mutex<Window>,
    mark: Mark,
    flusher: Flusher,
}

/// Writes what was appended to disk [`FLUSH_AFTER`] after the first append
/// since the last flush: a task on the async runtime that sleeps on a timer
/// and hands the flush to sled's own I/O workers, so it adds no thread.
struct Flusher {
    signal: Arc<FlushSignal>,
}

#[derive(Default)]
struct FlushSignal {
    dirty: std::sync::atomic::AtomicBool,
    closed: std::sync::atomic::AtomicBool,
    waker: futures::task::AtomicWaker,
}

impl Flusher {
    /// Holds the journal weakly, so that a dropped journal closes its files
    /// at once (and can be opened again) even while a flush is due.
    fn start(db: std::sync::Weak<sled::Db>) -> Self {
        let signal = Arc::new(FlushSignal::default());
        async_std::task::spawn(flush_when_written(signal.clone(), db));
        Self { signal }
    }

    fn written(&self) {
        if !self.signal.dirty.swap(true, Ordering::AcqRel) {
            self.signal.waker.wake();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.signal.closed.store(true, Ordering::Release);
        self.signal.waker.wake();
    }
}

async fn flush_when_written(signal: Arc<FlushSignal>, db: std::sync::Weak<sled::Db>) {
    loop {
        futures::future::poll_fn(|cx| {
            signal.waker.register(cx.waker());
            if signal.dirty.load(Ordering::Acquire) || signal.closed.load(Ordering::Acquire) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        if signal.closed.load(Ordering::Acquire) {
            return;
        }
        async_std::task::sleep(FLUSH_AFTER).await;
        // Appends from here on are not covered by this flush: they set it again.
        signal.dirty.store(false, Ordering::Release);
        let Some(db) = db.upgrade() else { return };
        if let Err(e) = db.flush_async().await {
            let e = e.to_string();
            log::error!(event = "error", kind = "journal_flush", error = e.as_str(); "");
        }
    }
}

/// The contiguous range of sequence numbers held, and their size.
struct Window {
    first: u64,
    next: u64,
    bytes: u64,
}

/// The reservation file and the worker that extends it.
struct Mark {
    path: PathBuf,
    /// Numbers below this are reserved on disk.
    durable: Arc<AtomicU64>,
    /// The highest reservation asked of the worker.
    asked: AtomicU64,
    /// Writes the file off the swarm task; its thread runs only while a
    /// write is due (once per half block of events).
    worker: Worker,
    /// One writer of the file at a time: the worker, or the swarm task when
    /// it cannot wait.
    writing: Arc<Mutex<()>>,
}

impl Mark {
    fn start(path: PathBuf, durable: u64) -> Self {
        Self {
            path,
            asked: AtomicU64::new(durable),
            durable: Arc::new(AtomicU64::new(durable)),
            worker: Worker::new("journal-mark", 4),
            writing: Arc::new(Mutex::new(())),
        }
    }

    /// Asks the worker to reserve up to `upto`; false if it cannot take it
    /// now (the swarm task then writes itself when it must).
    fn extend(&self, upto: u64) -> bool {
        let (path, durable, writing) = (
            self.path.clone(),
            self.durable.clone(),
            self.writing.clone(),
        );
        let job = Box::new(move || {
            let _one = writing.lock().unwrap_or_else(|p| p.into_inner());
            if durable.load(Ordering::Acquire) >= upto {
                return;
            }
            match write_mark(&path, upto) {
                Ok(()) => {
                    durable.fetch_max(upto, Ordering::AcqRel);
                }
                Err(e) => {
                    log::error!(event = "error", kind = "journal_mark", error = e.as_str(); "");
                }
            }
        });
        match self.worker.run(job) {
            Ok(()) => true,
            Err(Refused::Full) => false,
            Err(Refused::NoThread(e)) => {
                log::error!(event = "error", kind = "journal_mark", error = e.as_str(); "");
                false
            }
        }
    }

    fn write(&self, upto: u64) -> Result<(), String> {
        let _one = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        write_mark(&self.path, upto)
    }

    /// Makes sure `seq` is reserved on disk before it is handed out.
    fn cover(&self, seq: u64) -> Result<(), String> {
        let durable = self.durable.load(Ordering::Acquire);
        if seq + BLOCK / 2 >= durable && self.asked.load(Ordering::Relaxed) < durable + BLOCK {
            let upto = durable + BLOCK;
            if self.extend(upto) {
                self.asked.store(upto, Ordering::Relaxed);
            }
        }
        if seq < durable {
            return Ok(());
        }
        // The background write has not caught up: write here rather than
        // hand out a number a crash could repeat.
        let upto = seq + BLOCK;
        self.write(upto)?;
        self.durable.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, keeping at most `max_events`
    /// events and `max_bytes` of encoded events. A journal that cannot be
    /// read is moved aside and a new one started.
    pub fn open(dir: &Path, max_events: u64, max_bytes: u64) -> Result<Self, String> {
        let mark_path = dir.with_extension("seq");
        let reserved = read_mark(&mark_path);
        let (db, events, holes, lost) = match open_trees(dir) {
            Ok(trees) => {
                let (db, events, holes) = trees;
                (db, events, holes, false)
            }
            Err(e) => {
                let aside = move_aside(dir)?;
                log::error!(event = "journal_moved_aside", path = dir.display().to_string().as_str(), movedTo = aside.display().to_string().as_str(), error = e.as_str(); "the event journal could not be opened; it was moved aside and a new one started (subscribers see a gap)");
                let (db, events, holes) = open_trees(dir)?;
                (db, events, holes, true)
            }
        };
        let unreadable =
            |e: sled::Error| format!("{}: event journal unreadable: {e}", dir.display());
        let stored_first = events.first().map_err(unreadable)?.map(|(k, _)| seq_of(&k));
        let stored_next = match events.last().map_err(unreadable)? {
            Some((k, _)) => seq_of(&k) + 1,
            None => stored_next(&db).unwrap_or(1),
        };
        // Without a mark, a journal lost to corruption may have used any
        // number: go on from the clock, which no earlier number reached.
        let fallback = if lost && reserved.is_none() {
            unix_micros()
        } else {
            1
        };
        let next = stored_next.max(reserved.unwrap_or(1)).max(fallback);
        if next > stored_next && stored_first.is_some() {
            holes
                .insert(stored_next.to_be_bytes(), &(next - 1).to_be_bytes())
                .map_err(|e| format!("{}: cannot record lost events: {e}", dir.display()))?;
        }
        let first = stored_first.unwrap_or(next).min(next);
        let bytes = events
            .iter()
            .values()
            .flatten()
            .map(|v| v.len() as u64)
            .sum();
        // Reserve the first block now, before any number is handed out.
        write_mark(&mark_path, next + BLOCK)?;
        let db = Arc::new(db);
        let journal = Self {
            flusher: Flusher::start(Arc::downgrade(&db)),
            db,
            events,
            holes,
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            state: Mutex::new(Window { first, next, bytes }),
            mark: Mark::start(mark_path, next + BLOCK),
        };
        journal.forget_holes_before(first);
        journal.flusher.written();
        Ok(journal)
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

    /// Stores an event built for its sequence number and returns that number.
    /// A storage failure is returned, never panicked on: the relay keeps
    /// relaying with an incomplete journal rather than stopping.
    pub fn append(&self, encode: impl FnOnce(u64) -> Vec<u8>) -> Result<(u64, Vec<u8>), String> {
        let mut w = self.lock();
        let seq = w.next;
        self.mark.cover(seq)?;
        let value = encode(seq);
        self.events
            .insert(seq.to_be_bytes(), value.as_slice())
            .map_err(|e| format!("event journal write failed: {e}"))?;
        self.flusher.written();
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
            if w.first % BLOCK == 0 {
                self.forget_holes_before(w.first);
            }
        }
        Ok((seq, value))
    }

    /// Up to `limit` events from `from` on, or the gap at `from`: numbers
    /// pruned, or lost in a crash.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Read, String> {
        let first = self.lock().first;
        let from = from.max(1);
        if from < first {
            return Ok(Read::Gap {
                from,
                to: first - 1,
            });
        }
        let failed = |e: sled::Error| format!("event journal read failed: {e}");
        if let Some((start, end)) = self
            .holes
            .range(..=from.to_be_bytes())
            .next_back()
            .transpose()
            .map_err(failed)?
        {
            let end = seq_of(&end);
            if seq_of(&start) <= from && from <= end {
                return Ok(Read::Gap { from, to: end });
            }
        }
        // Stop before the next hole, so the reader is told of it next.
        let stop = match self
            .holes
            .range(from.to_be_bytes()..)
            .next()
            .transpose()
            .map_err(failed)?
        {
            Some((start, _)) => seq_of(&start),
            None => u64::MAX,
        };
        let mut out = Vec::new();
        for item in self
            .events
            .range(from.to_be_bytes()..stop.to_be_bytes())
            .take(limit)
        {
            let (k, v) = item.map_err(failed)?;
            out.push((seq_of(&k), v.to_vec()));
        }
        Ok(Read::Events(out))
    }

    /// Drops the record of holes the window has moved past.
    fn forget_holes_before(&self, first: u64) {
        let ended: Vec<_> = self
            .holes
            .iter()
            .flatten()
            .filter(|(_, end)| seq_of(end) < first)
            .map(|(start, _)| start)
            .collect();
        for start in ended {
            let _ = self.holes.remove(start);
        }
    }

    /// Writes everything to disk; called when the relay stops.
    pub fn flush(&self) -> Result<(), String> {
        let next = self.lock().next;
        let _ = self.db.insert("next", &next.to_be_bytes());
        self.db
            .flush()
            .map_err(|e| format!("event journal flush failed: {e}"))?;
        // Everything is on disk: the next start numbers on without a gap.
        self.mark.write(next)
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

fn open_trees(dir: &Path) -> Result<(sled::Db, sled::Tree, sled::Tree), String> {
    // sled asserts on some kinds of damage instead of returning an error; a
    // damaged journal must be moved aside like any other unreadable one.
    std::panic::catch_unwind(|| open_trees_unguarded(dir)).unwrap_or_else(|_| {
        Err(format!(
            "{}: the event journal is damaged (its storage engine gave up reading it)",
            dir.display()
        ))
    })
}

fn open_trees_unguarded(dir: &Path) -> Result<(sled::Db, sled::Tree, sled::Tree), String> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(8 << 20)
        // Flushed by the journal's flush task, only after a write.
        .flush_every_ms(None)
        .open()
        .map_err(|e| format!("{}: cannot open the event journal: {e}", dir.display()))?;
    let events = db
        .open_tree("events")
        .map_err(|e| format!("{}: cannot open the event journal: {e}", dir.display()))?;
    let holes = db
        .open_tree("holes")
        .map_err(|e| format!("{}: cannot open the event journal: {e}", dir.display()))?;
    // sled opens some damage lazily: read both ends now, not mid-relay.
    events
        .first()
        .and_then(|_| events.last())
        .map_err(|e| format!("{}: event journal unreadable: {e}", dir.display()))?;
    Ok((db, events, holes))
}

/// Renames a journal that cannot be opened to `<dir>.corrupt-<unix time>`.
fn move_aside(dir: &Path) -> Result<PathBuf, String> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = dir.with_extension(format!("corrupt-{secs}"));
    let mut n = 0;
    while aside.exists() && n < 100 {
        n += 1;
        aside = dir.with_extension(format!("corrupt-{secs}-{n}"));
    }
    std::fs::rename(dir, &aside).map_err(|e| {
        format!(
            "{}: the event journal cannot be opened and cannot be moved aside to {}: {e}",
            dir.display(),
            aside.display()
        )
    })?;
    Ok(aside)
}

/// The reserved mark, if its file holds one.
fn read_mark(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Writes the mark through a temporary file, synced, then renamed and the
/// directory synced: a crash leaves the old mark or the new one.
fn write_mark(path: &Path, upto: u64) -> Result<(), String> {
    let tmp = path.with_extension("seq.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{upto}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| format!("{}: cannot reserve event numbers: {e}", path.display()))
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
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
    fn a_write_reaches_the_disk_by_itself_soon_after() {
        let dir = temp("flusher");
        let j = Journal::open(&dir, 100, 1 << 20).unwrap();
        let event = |seq: u64| format!("{{\"seq\":{seq}}}").into_bytes();
        // Just written: still in memory, a flush now has bytes to write.
        j.append(event).unwrap();
        assert!(j.db.flush().unwrap() > 0, "the append was in memory");
        // Left alone: the journal's flush task writes it out by itself.
        j.append(event).unwrap();
        std::thread::sleep(FLUSH_AFTER * 4);
        assert_eq!(j.db.flush().unwrap(), 0, "already on disk");
        // A dropped journal closes its files at once, flush due or not.
        j.append(event).unwrap();
        drop(j);
        let j = Journal::open(&dir, 100, 1 << 20).unwrap();
        let Read::Events(ev) = j.read_from(1, 10).unwrap() else {
            panic!("gap")
        };
        assert_eq!(ev.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3]);
        drop(j);
        std::fs::remove_dir_all(&dir).unwrap();
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
