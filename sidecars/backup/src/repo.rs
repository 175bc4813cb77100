//! The local backup directory: the backups in it, the lock that keeps two
//! backups from running at once, the verification marks, retention, and
//! the clean-up of what a crash left behind.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::archive::{self, Manifest};
use crate::id::{self, FileKind};
use crate::retention::{Entry, Rules};

/// Creates a directory (and its parents) private to the user.
pub fn ensure_dir(dir: &Path) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: cannot create the directory: {e}", dir.display()))
}

/// An exclusive lock on the backup directory, held while a backup is taken
/// or backups are deleted: one process, one backup at a time, whatever runs
/// (`run`, `now`, a second daemon by mistake).
pub struct Lock {
    _file: File,
}

pub fn lock(dir: &Path, wait: Duration) -> Result<Lock, String> {
    let path = dir.join(".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Lock { _file: file });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(format!("{}: cannot lock: {e}", path.display()));
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "{}: another backup has been running for {} (a daemon or `now`); try again later",
                dir.display(),
                humantime::format_duration(wait)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A backup in the local directory.
#[derive(Debug, Clone)]
pub struct Local {
    pub id: String,
    pub taken: SystemTime,
    /// The manifest, or why it cannot be read.
    pub manifest: Result<Manifest, String>,
}

/// The complete backups (manifest present) of `name` in `dir`, oldest first.
pub fn list(dir: &Path, name: &str) -> Result<Vec<Local>, String> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        if let Some((id, FileKind::Manifest)) = id::of_file(name, &file) {
            let taken = id::parse(name, id).expect("of_file checked it");
            let manifest = archive::read_manifest(&entry.path()).and_then(|m| {
                if m.id != id {
                    return Err(format!("{file}: the manifest names backup {}", m.id));
                }
                match fs::metadata(dir.join(&m.archive.file)) {
                    Ok(meta) if meta.len() == m.archive.bytes => Ok(m),
                    Ok(meta) => Err(format!(
                        "{}: {} bytes, the manifest says {}",
                        m.archive.file,
                        meta.len(),
                        m.archive.bytes
                    )),
                    Err(e) => Err(format!("{}: {e}", m.archive.file)),
                }
            });
            out.push(Local {
                id: id.to_string(),
                taken,
                manifest,
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Removes what an interrupted backup left in `dir`: temporary files of
/// processes that are gone, and archives whose manifest was never written.
/// Call with the lock held.
pub fn clean(dir: &Path, name: &str) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    let mut archives = Vec::new();
    let mut manifests = std::collections::BTreeSet::new();
    for entry in entries.flatten() {
        let Ok(file) = entry.file_name().into_string() else {
            continue;
        };
        if file.starts_with('.') {
            if let Some(pid) = file
                .rsplit_once(".tmp-")
                .and_then(|(_, p)| p.parse::<i32>().ok())
            {
                if !alive(pid) && fs::remove_file(entry.path()).is_ok() {
                    removed.push(file);
                }
            }
            continue;
        }
        match id::of_file(name, &file) {
            Some((id, FileKind::Manifest)) => {
                manifests.insert(id.to_string());
            }
            Some((id, FileKind::Archive)) => archives.push((id.to_string(), file.clone())),
            None => {}
        }
    }
    for (id, file) in archives {
        if !manifests.contains(&id) && fs::remove_file(dir.join(&file)).is_ok() {
            removed.push(file);
        }
    }
    if !removed.is_empty() {
        let _ = archive::sync_dir(dir);
    }
    removed
}

fn alive(pid: i32) -> bool {
    pid == std::process::id() as i32 || Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes one backup: the manifest first (from then on it is not listed),
/// then the archive.
pub fn delete(dir: &Path, local: &Local) -> Result<(), String> {
    let manifest = dir.join(id::manifest_file(&local.id));
    fs::remove_file(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    for encrypted in [false, true] {
        let _ = fs::remove_file(dir.join(id::archive_file(&local.id, encrypted)));
    }
    archive::sync_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Applies the rules to `dir`, sparing `keep` (backups still waiting to be
/// shipped somewhere). Returns the IDs deleted.
pub fn apply_retention(
    dir: &Path,
    name: &str,
    rules: &Rules,
    marks: &Marks,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, String> {
    let backups = list(dir, name)?;
    let entries: Vec<Entry> = backups
        .iter()
        .map(|b| Entry {
            id: b.id.clone(),
            taken: b.taken,
            verified: b.manifest.is_ok() && marks.get(&b.id).is_none_or(|m| m.ok),
        })
        .collect();
    let mut deleted = Vec::new();
    for id in rules.to_delete(&entries, SystemTime::now()) {
        if keep(&id) {
            continue;
        }
        let b = backups.iter().find(|b| b.id == id).expect("listed");
        delete(dir, b)?;
        deleted.push(id);
    }
    Ok(deleted)
}

/// The outcome of the last `verify` of a backup at one place.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mark {
    pub ok: bool,
    pub at: String,
    /// Whether the parts were read (an encrypted archive without the key
    /// is checked against its sha256 only).
    pub contents_checked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub type Marks = BTreeMap<String, Mark>;

/// Verification marks live in the state directory, one small JSON file per
/// place (`local` or a target's name), written atomically.
fn marks_path(state_dir: &Path, place: &str) -> PathBuf {
    let safe: String = place
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_dir.join("verified").join(format!("{safe}.json"))
}

pub fn read_marks(state_dir: &Path, place: &str) -> Marks {
    fs::read(marks_path(state_dir, place))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn write_mark(state_dir: &Path, place: &str, id: &str, mark: Mark) -> Result<(), String> {
    let path = marks_path(state_dir, place);
    let dir = path.parent().expect("has a parent");
    ensure_dir(dir)?;
    let mut marks = read_marks(state_dir, place);
    marks.insert(id.to_string(), mark);
    // Marks of backups long gone are dropped beyond a bound.
    while marks.len() > 10_000 {
        let first = marks.keys().next().cloned().expect("not empty");
        marks.remove(&first);
    }
    let text = serde_json::to_vec_pretty(&marks).map_err(|e| e.to_string())?;
    let file = path
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .into_owned();
    archive::write_atomic(dir, &file, &text).map_err(|e| format!("{}: {e}", path.display()))
}
