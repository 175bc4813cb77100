//! The durable buffer, in sled: every record taken in, numbered by the
//! sidecar's own index (the relay's sequence numbers start over when its
//! journal is reset; the index never does), and each destination's cursor,
//! the index of the next record it has not accepted.
//!
//! Records are stored in chunks, one sled entry per append (up to 1,024
//! records, keyed by the index of the first): sled copies a tree node on
//! every insert, so one entry per record cost most of the sidecar's time.
//! A chunk goes when every destination is past its last record.
//!
//! The newest [`RECENT`] records are also kept decoded in memory: a
//! destination that keeps up reads them from there, not from disk.
//!
//! The relay's journal is the other half of the guarantee: the store keeps
//! the relay sequence number to resume from, written with the records it
//! follows, so a sidecar killed before a write reached the disk asks the
//! relay again for what it lost. Writes are not fsynced one by one; sled
//! flushes in the background every [`FLUSH_EVERY_MS`] and on a clean stop.
//!
//! Everything here blocks: callers run it on a blocking thread.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::record::Record;
use crate::tracker::{Change, Open};

/// How often sled writes its log to disk. What a SIGKILL loses inside that
/// window is asked of the relay again (records) or delivered again
/// (cursors): at least once.
pub const FLUSH_EVERY_MS: u64 = 200;

const NEXT_SEQ: &[u8] = b"relay-next-seq";
const LAST_SEQ: &[u8] = b"relay-last-seq";
const RELAY_PEER_ID: &[u8] = b"relay-peer-id";
const RELAY_VERSION: &[u8] = b"relay-version";

/// Records kept decoded in memory, newest first to go.
pub const RECENT: usize = 16_384;

pub struct Store {
    db: sled::Db,
    /// The newest records appended: index, record, encoded length.
    recent: Mutex<VecDeque<(u64, Arc<Record>, usize)>>,
    records: sled::Tree,
    cursors: sled::Tree,
    meta: sled::Tree,
    open: sled::Tree,
}

/// What a read returned: records in index order, and records that could
/// not be decoded (counted, skipped; a disk error or a bug, never silent).
pub struct Read {
    pub records: Vec<(u64, Arc<Record>)>,
    pub undecodable: u64,
    /// The index after the last record returned (or read past).
    pub next: u64,
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn from_be(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// The records of a chunk: each a little-endian u32 length, then that many
/// bytes. A chunk cut short (a disk error) ends where it is cut.
struct Entries<'a>(&'a [u8]);

impl<'a> Iterator for Entries<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_le_bytes(self.0.get(..4)?.try_into().ok()?) as usize;
        let record = self.0.get(4..4 + len)?;
        self.0 = &self.0[4 + len..];
        Some(record)
    }
}

fn chunk_len(chunk: &[u8]) -> u64 {
    Entries(chunk).count() as u64
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
        let db = sled::Config::new()
            .path(dir.join("buffer"))
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .cache_capacity(16 << 20)
            .open()
            .map_err(|e| {
                format!(
                    "cannot open the buffer in {} ({e}); is another bsv-p2p-logship using this state directory?",
                    dir.display()
                )
            })?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| format!("cannot open {name} in {}: {e}", dir.display()))
        };
        Ok(Store {
            records: tree("records")?,
            cursors: tree("cursors")?,
            meta: tree("meta")?,
            open: tree("open")?,
            db,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        })
    }

    /// The first index still held, or `next_index` when empty.
    pub fn first_index(&self) -> sled::Result<u64> {
        Ok(match self.records.first()? {
            Some((k, _)) => from_be(&k).unwrap_or(0),
            None => self.next_index()?,
        })
    }

    /// The index the next record gets.
    pub fn next_index(&self) -> sled::Result<u64> {
        Ok(match self.records.last()? {
            Some((k, v)) => from_be(&k).map_or(0, |k| k + chunk_len(&v)),
            None => self
                .meta
                .get(b"next-index")?
                .and_then(|v| from_be(&v))
                .unwrap_or(0),
        })
    }

    /// The relay sequence number to subscribe from, if any was stored.
    pub fn relay_next_seq(&self) -> sled::Result<Option<u64>> {
        Ok(self.meta.get(NEXT_SEQ)?.and_then(|v| from_be(&v)))
    }

    pub fn relay_last_seq(&self) -> sled::Result<u64> {
        Ok(self
            .meta
            .get(LAST_SEQ)?
            .and_then(|v| from_be(&v))
            .unwrap_or(0))
    }

    /// The relay's peer id and version, as last read from it.
    pub fn relay_identity(&self) -> sled::Result<Option<(String, String)>> {
        let text = |v: Option<sled::IVec>| v.map(|v| String::from_utf8_lossy(&v).into_owned());
        Ok(
            match (
                text(self.meta.get(RELAY_PEER_ID)?),
                text(self.meta.get(RELAY_VERSION)?),
            ) {
                (Some(peer), Some(version)) => Some((peer, version)),
                _ => None,
            },
        )
    }

    pub fn set_relay_identity(&self, peer_id: &str, version: &str) -> sled::Result<()> {
        self.meta.insert(RELAY_PEER_ID, peer_id.as_bytes())?;
        self.meta.insert(RELAY_VERSION, version.as_bytes())?;
        Ok(())
    }

    /// What the tracker had open.
    pub fn open_spans(&self) -> sled::Result<Vec<(String, Open)>> {
        let mut out = Vec::new();
        for entry in self.open.iter() {
            let (k, v) = entry?;
            if let Ok(open) = serde_json::from_slice(&v) {
                out.push((String::from_utf8_lossy(&k).into_owned(), open));
            }
        }
        Ok(out)
    }

    /// Appends encoded records from `first` on, the tracker's changes, and
    /// the relay sequence numbers they bring the store to. The records go in
    /// one batch, so a crash keeps all or none of them.
    pub fn append(
        &self,
        first: u64,
        encoded: &[Vec<u8>],
        changes: &[Change],
        last_seq: u64,
    ) -> sled::Result<()> {
        for change in changes {
            match change {
                Change::Put(key, open) => {
                    let value = serde_json::to_vec(open).expect("an open span serializes");
                    self.open.insert(key.as_bytes(), value)?;
                }
                Change::Remove(key) => {
                    self.open.remove(key.as_bytes())?;
                }
            }
        }
        let mut chunk = Vec::with_capacity(encoded.iter().map(|e| e.len() + 4).sum());
        for bytes in encoded {
            chunk.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            chunk.extend_from_slice(bytes);
        }
        self.records.insert(be(first), chunk)?;
        let next = first + encoded.len() as u64;
        let mut meta = sled::Batch::default();
        meta.insert(b"next-index", &be(next));
        meta.insert(NEXT_SEQ, &be(last_seq + 1));
        meta.insert(LAST_SEQ, &be(last_seq));
        self.meta.apply_batch(meta)
    }

    /// Up to `max` records from index `from`, stopping before `max_bytes`
    /// of encoded records (always at least one).
    pub fn read(&self, from: u64, max: usize, max_bytes: usize) -> sled::Result<Read> {
        let mut out = Read {
            records: Vec::new(),
            undecodable: 0,
            next: from,
        };
        {
            let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.front().is_some_and(|(first, _, _)| *first <= from) {
                let mut bytes = 0;
                for (index, record, len) in recent.iter().filter(|(i, _, _)| *i >= from) {
                    if !out.records.is_empty()
                        && (out.records.len() >= max || bytes + len > max_bytes)
                    {
                        break;
                    }
                    bytes += len;
                    out.next = index + 1;
                    out.records.push((*index, record.clone()));
                }
                return Ok(out);
            }
        }
        // The chunk holding `from`, then those after it.
        let start = match self.records.range(..=be(from)).next_back() {
            Some(entry) => entry?.0.to_vec(),
            None => be(from).to_vec(),
        };
        let mut bytes = 0;
        'chunks: for entry in self.records.range(start..) {
            let (k, v) = entry?;
            let Some(first) = from_be(&k) else { continue };
            for (i, record) in Entries(&v).enumerate() {
                let index = first + i as u64;
                if index < from {
                    continue;
                }
                if !out.records.is_empty()
                    && (out.records.len() >= max || bytes + record.len() > max_bytes)
                {
                    break 'chunks;
                }
                bytes += record.len();
                out.next = index + 1;
                match serde_json::from_slice::<Record>(record) {
                    Ok(record) => out.records.push((index, Arc::new(record))),
                    Err(e) => {
                        log::error!("buffer: record {index} cannot be read and is skipped: {e}");
                        out.undecodable += 1;
                    }
                }
            }
        }
        Ok(out)
    }

    /// A destination's cursor and the relay sequence number of the last
    /// record it accepted.
    pub fn cursor(&self, name: &str) -> sled::Result<Option<(u64, u64)>> {
        Ok(self.cursors.get(name.as_bytes())?.and_then(|v| {
            let next = from_be(v.get(..8)?)?;
            let seq = v.get(8..16).and_then(from_be).unwrap_or(0);
            Some((next, seq))
        }))
    }

    pub fn set_cursor(&self, name: &str, next: u64, last_seq: u64) -> sled::Result<()> {
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&be(next));
        value[8..].copy_from_slice(&be(last_seq));
        self.cursors.insert(name.as_bytes(), &value)?;
        Ok(())
    }

    /// Keeps `records`, appended from index `first`, decoded in memory.
    pub fn remember(&self, first: u64, records: &[(Arc<Record>, usize)]) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // Only a run that follows on; after a gap in indexes start over.
        if recent.back().is_some_and(|(last, _, _)| last + 1 != first) {
            recent.clear();
        }
        for (i, (record, len)) in records.iter().enumerate() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back((first + i as u64, record.clone(), *len));
        }
    }

    /// Deletes the chunks whose records are all below `index`; returns the
    /// first index still held.
    pub fn trim_below(&self, index: u64) -> sled::Result<u64> {
        let mut batch = sled::Batch::default();
        let mut removed = false;
        for entry in self.records.range(..be(index)) {
            let (k, v) = entry?;
            let Some(first) = from_be(&k) else { continue };
            if first + chunk_len(&v) > index {
                break;
            }
            batch.remove(k);
            removed = true;
        }
        if removed {
            self.records.apply_batch(batch)?;
        }
        self.first_index()
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    pub fn flush(&self) -> sled::Result<usize> {
        self.db.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bsv_p2p_proto::{Event, EventKind};

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "bsv-p2p-logship-store-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn encoded(seq: u64) -> Vec<u8> {
        let record = Record {
            event: Event::new(
                seq,
                EventKind::RateLimited {
                    peer_id: "p".into(),
                    what: "circuit".into(),
                },
            ),
            ctx: None,
        };
        serde_json::to_vec(&record).unwrap()
    }

    #[test]
    fn appends_reads_and_trims_across_a_reopen() {
        let dir = scratch("reopen");
        {
            let store = Store::open(&dir).unwrap();
            assert_eq!(store.next_index().unwrap(), 0);
            assert_eq!(store.relay_next_seq().unwrap(), None);
            let batch: Vec<_> = (1..=10).map(encoded).collect();
            store.append(0, &batch, &[], 10).unwrap();
            store
                .append(10, &(11..=12).map(encoded).collect::<Vec<_>>(), &[], 12)
                .unwrap();
            store.set_cursor("a", 4, 4).unwrap();
            // The first chunk still holds records from 4 on.
            assert_eq!(store.trim_below(4).unwrap(), 0);
            store.flush().unwrap();
        }
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.first_index().unwrap(), 0);
        assert_eq!(store.next_index().unwrap(), 12);
        assert_eq!(store.relay_next_seq().unwrap(), Some(13));
        assert_eq!(store.cursor("a").unwrap(), Some((4, 4)));
        let read = store.read(4, 3, usize::MAX).unwrap();
        let seqs: Vec<u64> = read.records.iter().map(|(_, r)| r.event.seq).collect();
        assert_eq!(seqs, [5, 6, 7]);
        assert_eq!(read.next, 7);
        // A byte budget smaller than one record still returns one.
        assert_eq!(store.read(4, 100, 1).unwrap().records.len(), 1);
        // Reads cross chunks.
        let read = store.read(8, 100, usize::MAX).unwrap();
        let seqs: Vec<u64> = read.records.iter().map(|(_, r)| r.event.seq).collect();
        assert_eq!(seqs, [9, 10, 11, 12]);
        assert_eq!(read.next, 12);
        // A chunk goes once every record in it is behind.
        assert_eq!(store.trim_below(10).unwrap(), 10);
        assert_eq!(store.read(0, 100, usize::MAX).unwrap().records.len(), 2);
        // Trimmed all the way, the index keeps counting.
        assert_eq!(store.trim_below(12).unwrap(), 12);
        assert_eq!(store.next_index().unwrap(), 12);
        assert_eq!(store.first_index().unwrap(), 12);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_kept_in_memory_are_read_without_the_disk() {
        let dir = scratch("recent");
        let store = Store::open(&dir).unwrap();
        let decode = |b: &Vec<u8>| Arc::new(serde_json::from_slice::<Record>(b).unwrap());
        let batch: Vec<_> = (1..=4).map(encoded).collect();
        store.append(0, &batch, &[], 4).unwrap();
        let kept: Vec<_> = batch.iter().map(|b| (decode(b), b.len())).collect();
        store.remember(0, &kept);
        let read = store.read(1, 2, usize::MAX).unwrap();
        assert!(
            Arc::ptr_eq(&read.records[0].1, &kept[1].0),
            "served from memory"
        );
        assert_eq!(read.next, 3);
        // A run that does not follow on replaces what was kept; reads
        // before it go to disk.
        let later: Vec<_> = (5..=6).map(encoded).collect();
        store.append(10, &later, &[], 6).unwrap();
        store.remember(
            10,
            &later
                .iter()
                .map(|b| (decode(b), b.len()))
                .collect::<Vec<_>>(),
        );
        let read = store.read(2, 10, usize::MAX).unwrap();
        let seqs: Vec<u64> = read.records.iter().map(|(_, r)| r.event.seq).collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_undecodable_record_is_skipped_and_counted() {
        let dir = scratch("undecodable");
        let store = Store::open(&dir).unwrap();
        store
            .append(0, &[encoded(1), b"{not json".to_vec(), encoded(3)], &[], 3)
            .unwrap();
        let read = store.read(0, 10, usize::MAX).unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.undecodable, 1);
        assert_eq!(read.next, 3);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
