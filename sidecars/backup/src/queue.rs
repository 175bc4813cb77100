//! The upload queue, on disk (sled) so that an upload that failed during an
//! outage goes out when the target returns, also after the sidecar was
//! restarted. One entry per backup and target: pending until the target
//! holds both files, then recorded as shipped (so a backup is never shipped
//! twice, and one retention deleted at a target is not shipped again).
//!
//! Only one process opens the queue: the daemon. `now` run beside a daemon
//! leaves the shipping to it; the daemon finds new backups in the
//! directory within seconds.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub struct Queue {
    db: sled::Db,
    pending: sled::Tree,
    shipped: sled::Tree,
    figures: sled::Tree,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub enqueued_ms: u64,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shipped {
    pub at_ms: u64,
    pub bytes: u64,
}

/// Why the queue cannot be opened.
pub enum OpenError {
    /// Another process (the daemon) has it.
    Busy,
    Other(String),
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn key(target: &str, id: &str) -> Vec<u8> {
    let mut k = target.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

impl Queue {
    pub fn open(state_dir: &Path) -> Result<Queue, OpenError> {
        let path = state_dir.join("queue");
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(8 << 20)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|e| match &e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    OpenError::Busy
                }
                _ => OpenError::Other(format!("{}: {e}", path.display())),
            })?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| OpenError::Other(format!("{}: {e}", path.display())))
        };
        Ok(Queue {
            pending: tree("pending")?,
            shipped: tree("shipped")?,
            figures: tree("figures")?,
            db,
        })
    }

    /// Queues `id` for `target` unless it is queued or shipped already.
    /// Returns whether it was added.
    pub fn enqueue(&self, target: &str, id: &str) -> sled::Result<bool> {
        let k = key(target, id);
        if self.shipped.contains_key(&k)? || self.pending.contains_key(&k)? {
            return Ok(false);
        }
        let p = Pending {
            enqueued_ms: now_ms(),
            ..Pending::default()
        };
        self.pending
            .insert(k, serde_json::to_vec(&p).expect("serializes"))?;
        self.db.flush()?;
        Ok(true)
    }

    /// What waits for `target`, oldest ID first.
    pub fn pending(&self, target: &str) -> sled::Result<Vec<(String, Pending)>> {
        let mut prefix = target.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.pending.scan_prefix(&prefix) {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((id, serde_json::from_slice(&v).unwrap_or_default()));
        }
        Ok(out)
    }

    pub fn is_pending(&self, target: &str, id: &str) -> sled::Result<bool> {
        self.pending.contains_key(key(target, id))
    }

    pub fn failed(&self, target: &str, id: &str, error: &str) -> sled::Result<()> {
        let k = key(target, id);
        if let Some(v) = self.pending.get(&k)? {
            let mut p: Pending = serde_json::from_slice(&v).unwrap_or_default();
            p.attempts = p.attempts.saturating_add(1);
            p.last_error = Some(error.chars().take(500).collect());
            self.pending
                .insert(k, serde_json::to_vec(&p).expect("serializes"))?;
        }
        self.db.flush()?;
        Ok(())
    }

    pub fn shipped(&self, target: &str, id: &str, bytes: u64) -> sled::Result<()> {
        let k = key(target, id);
        let s = Shipped {
            at_ms: now_ms(),
            bytes,
        };
        self.shipped
            .insert(k.clone(), serde_json::to_vec(&s).expect("serializes"))?;
        self.pending.remove(k)?;
        self.db.flush()?;
        Ok(())
    }

    /// Forgets a pending upload whose backup is gone.
    pub fn drop_pending(&self, target: &str, id: &str) -> sled::Result<()> {
        self.pending.remove(key(target, id))?;
        self.db.flush()?;
        Ok(())
    }

    /// Shipped records older than the oldest backup that still exists
    /// anywhere are of no use; keep the table bounded.
    pub fn forget_shipped_before(&self, oldest_id: &str) -> sled::Result<usize> {
        let mut n = 0;
        for item in self.shipped.iter() {
            let (k, _) = item?;
            let id = k.split(|b| *b == 0).nth(1).unwrap_or_default();
            if id < oldest_id.as_bytes() {
                self.shipped.remove(&k)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// A figure that survives restarts (last success times).
    pub fn set_figure(&self, name: &str, value: u64) -> sled::Result<()> {
        self.figures.insert(name.as_bytes(), &value.to_be_bytes())?;
        Ok(())
    }

    pub fn figures(&self) -> sled::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for item in self.figures.iter() {
            let (k, v) = item?;
            if let Ok(bytes) = <[u8; 8]>::try_from(v.as_ref()) {
                out.push((
                    String::from_utf8_lossy(&k).into_owned(),
                    u64::from_be_bytes(bytes),
                ));
            }
        }
        Ok(out)
    }
}
