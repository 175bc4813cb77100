//! The entries added over the control socket, kept across restarts in a
//! sled database (`<dataDir>/acl`). Reading happens once at start, before
//! the swarm runs; every write goes to a worker thread (one that runs only
//! while writes are queued, in order) and is flushed before the caller
//! hears back, so the swarm task never waits on the disk.
//!
//! Key: `allow:<subject>` or `deny:<subject>`; value: the entry as
//! `acl.list` shows it (JSON). An entry that cannot be read is left in
//! place and named in a warning, never deleted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bsv_p2p_proto as proto;

use super::{Entry, Subject};
use crate::worker::{Refused, Worker};

/// Writes queued at most; more are refused (the caller hears why). Each is
/// an operator's `acl.*` call, so this is far beyond any honest backlog.
const MAX_QUEUED: usize = 1024;

type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

pub struct Store {
    db: Arc<sled::Db>,
    writer: Worker,
    path: PathBuf,
}

/// Stopping waits for the writes already asked for.
impl Drop for Store {
    fn drop(&mut self) {
        self.writer.wait_idle();
    }
}

fn key(list: proto::AccessList, subject: &Subject) -> Vec<u8> {
    format!("{}:{subject}", list.as_str()).into_bytes()
}

impl Store {
    /// Opens (or creates) the store and reads what it holds: the entries,
    /// and a warning for each one that could not be read.
    pub fn open(dir: &Path) -> Result<(Store, Vec<Entry>, Vec<String>), String> {
        let db = std::panic::catch_unwind(|| {
            // Every write is flushed by the writer: no timer wakes an idle relay.
            sled::Config::new()
                .path(dir)
                .cache_capacity(1 << 20)
                .flush_every_ms(None)
                .open()
        })
        .map_err(|_| {
            format!(
                "{}: the access list store is damaged (its storage engine gave up reading it)",
                dir.display()
            )
        })?
        .map_err(|e| format!("{}: cannot open the access list store: {e}", dir.display()))?;
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        for item in db.iter() {
            let (k, v) =
                item.map_err(|e| format!("{}: access list store unreadable: {e}", dir.display()))?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let parsed = serde_json::from_slice::<proto::AclEntry>(&v)
                .map_err(|e| e.to_string())
                .and_then(|e| Entry::from_proto(&e));
            match parsed {
                Ok(e) if key(e.list, &e.subject) == k.as_ref() => entries.push(e),
                Ok(_) => warnings.push(format!(
                    "{}: entry {name:?} does not match its key; left in place, not applied",
                    dir.display()
                )),
                Err(e) => warnings.push(format!(
                    "{}: entry {name:?} cannot be read ({e}); left in place, not applied",
                    dir.display()
                )),
            }
        }
        Ok((
            Store {
                db: Arc::new(db),
                writer: Worker::new("acl-store", MAX_QUEUED),
                path: dir.to_path_buf(),
            },
            entries,
            warnings,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes an entry (replacing one with the same list and subject).
    pub fn put(&self, entry: Entry, done: impl FnOnce(Result<(), String>) + Send + 'static) {
        let db = self.db.clone();
        self.write(
            move || {
                let value = serde_json::to_vec(&entry.to_proto()).expect("an entry always encodes");
                db.insert(key(entry.list, &entry.subject), value)?;
                db.flush().map(drop)
            },
            Box::new(done),
        );
    }

    pub fn remove(
        &self,
        list: proto::AccessList,
        subject: Subject,
        done: impl FnOnce(Result<(), String>) + Send + 'static,
    ) {
        let db = self.db.clone();
        self.write(
            move || {
                db.remove(key(list, &subject))?;
                db.flush().map(drop)
            },
            Box::new(done),
        );
    }

    /// Queues `op`; `done` hears its result, or why it was not queued.
    fn write(&self, op: impl FnOnce() -> sled::Result<()> + Send + 'static, done: Done) {
        let done = Arc::new(Mutex::new(Some(done)));
        let take = |d: &Mutex<Option<Done>>| d.lock().unwrap_or_else(|p| p.into_inner()).take();
        let job_done = done.clone();
        let job = Box::new(move || {
            let result =
                op().map_err(|e| format!("the access list store could not be written: {e}"));
            if let Some(d) = take(&job_done) {
                d(result);
            }
        });
        if let Err(refused) = self.writer.run(job) {
            let why = match refused {
                Refused::Full => format!(
                    "the access list writer is busy ({MAX_QUEUED} writes queued); try again"
                ),
                Refused::NoThread(e) => e,
            };
            if let Some(d) = take(&done) {
                d(Err(why));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{AccessList, AclOrigin};
    use std::sync::mpsc;
    use std::time::{Duration, SystemTime};

    fn wait(f: impl FnOnce(Box<dyn FnOnce(Result<(), String>) + Send>)) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        f(Box::new(move |r| tx.send(r).unwrap()));
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    #[test]
    fn entries_survive_a_reopen_and_a_bad_one_is_named_not_lost() {
        let dir = std::env::temp_dir().join(format!("acl-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let entry = Entry {
            subject: Subject::parse("203.0.113.0/24").unwrap(),
            list: AccessList::Deny,
            note: Some("scanner".into()),
            added_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_738_324_800_000),
            expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_738_328_400_000)),
            origin: AclOrigin::Control,
        };
        {
            let (store, found, warnings) = Store::open(&dir).unwrap();
            assert!(found.is_empty() && warnings.is_empty());
            wait(|d| store.put(entry.clone(), d)).unwrap();
            let gone = Entry {
                subject: Subject::parse("198.51.100.1").unwrap(),
                ..entry.clone()
            };
            wait(|d| store.put(gone.clone(), d)).unwrap();
            wait(|d| store.remove(AccessList::Deny, gone.subject, d)).unwrap();
        }
        // Written by hand: damage that must be reported, and kept.
        {
            let db = sled::open(&dir).unwrap();
            db.insert("deny:nonsense", "{not json").unwrap();
            db.flush().unwrap();
        }
        let (_store, found, warnings) = Store::open(&dir).unwrap();
        assert_eq!(found, vec![entry]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("\"deny:nonsense\"") && warnings[0].contains("left in place"),
            "{warnings:?}"
        );
        drop(_store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
