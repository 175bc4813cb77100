//! Scratch directories: one fresh directory per relay (config file plus data
//! directory), removed when the test is done unless a test keeps it to start
//! the relay again on the same data.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a new empty directory whose name starts with `label`.
    pub fn new(label: &str) -> ScratchDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // A few attempts: a leftover directory of a crashed run may hold the name.
        for attempt in 0..16u32 {
            let path = std::env::temp_dir().join(format!(
                "bsv-p2p-{label}-{}-{}-{nanos:x}-{attempt}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            if std::fs::create_dir(&path).is_ok() {
                return ScratchDir { path };
            }
        }
        panic!(
            "cannot create a scratch directory under {}",
            std::env::temp_dir().display()
        );
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
