//! The data directory holds the relay's private key, its control socket and
//! its journal (bot addresses and peer ids): every way of starting the relay,
//! `--check` included, creates it owner and group only, and an existing one
//! that others may read or write is named in a warning.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of a data directory the relay creates: the relay's group (its
/// sidecars) may enter it to reach the control socket; nobody else may.
pub const MODE: u32 = 0o750;

/// Creates `dir` (and missing parents) with [`MODE`], or checks the one that
/// exists. Returns a warning for a directory others may write to or read.
pub fn prepare(dir: &Path) -> Result<Option<String>, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(MODE)
        .create(dir)
        .map_err(|e| {
            format!(
                "dataDir {}: cannot create the data directory: {e}",
                dir.display()
            )
        })?;
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("dataDir {}: cannot inspect: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("dataDir {}: not a directory", dir.display()));
    }
    Ok(warning(dir, meta.permissions().mode()))
}

fn warning(dir: &Path, mode: u32) -> Option<String> {
    let loose = mode & 0o027;
    (loose != 0).then(|| {
        let who = match (mode & 0o020 != 0, mode & 0o007 != 0) {
            (true, true) => "writable by its group and open to every local user",
            (true, false) => "writable by its group",
            _ => "open to every local user",
        };
        format!(
            "dataDir {} has mode {:o}: {who}; it holds the relay's key and journal, restrict it with `chmod {:o} {}`",
            dir.display(),
            mode & 0o7777,
            MODE,
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_and_group_read_pass_quietly() {
        let d = Path::new("/srv/relay");
        assert!(warning(d, 0o700).is_none());
        assert!(warning(d, 0o750).is_none());
        assert!(warning(d, 0o770).unwrap().contains("writable by its group"));
        assert!(warning(d, 0o755).unwrap().contains("every local user"));
        assert!(warning(d, 0o777).unwrap().contains("group and open"));
    }

    #[test]
    fn creates_missing_directories_owner_and_group_only() {
        let base = std::env::temp_dir().join(format!("bsv-data-dir-{}", std::process::id()));
        let dir = base.join("a/b");
        assert_eq!(prepare(&dir).unwrap(), None);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, MODE);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
