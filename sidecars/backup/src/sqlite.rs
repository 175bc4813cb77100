//! Copies of live SQLite databases with SQLite's online backup API, never a
//! file copy: the bot writes its wallet while it is copied.
//!
//! The copy runs in one step, inside one read transaction, so it is one
//! consistent state of the database: every transaction committed before it
//! began and none after. In WAL mode (how better-sqlite3 bots write) a
//! reader never blocks a writer, so the bot does not wait while its wallet
//! is copied. In rollback-journal mode a writer waits for the copy to finish
//! (the writer's busy timeout must cover it); a step-by-step copy would not
//! help, because SQLite restarts it from the first page whenever another
//! process writes.
//!
//! A copy counts only after `PRAGMA integrity_check` of the copy says "ok".

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::archive::SqliteInfo;

/// How long a copy waits for a lock held by a writer (rollback mode).
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Copies the database at `src` into a new file at `dest` and checks the copy.
pub fn copy(src: &Path, dest: &Path) -> Result<SqliteInfo, String> {
    let meta = std::fs::metadata(src).map_err(|e| format!("{}: {e}", src.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", src.display()));
    }
    let from = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("{}: cannot open the database: {e}", src.display()))?;
    from.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| format!("{}: {e}", src.display()))?;
    let journal_mode: String = from
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| {
            format!(
                "{}: not a SQLite database, or unreadable: {e}",
                src.display()
            )
        })?;
    let mut to = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("{}: {e}", dest.display()))?;
    {
        let backup = Backup::new(&from, &mut to)
            .map_err(|e| format!("{}: cannot start the backup: {e}", src.display()))?;
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match backup.step(-1) {
                Ok(StepResult::Done) => break,
                Ok(StepResult::More) => continue,
                Ok(StepResult::Busy | StepResult::Locked) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(other) => {
                    return Err(format!(
                        "{}: the database stayed locked for {} ({other:?})",
                        src.display(),
                        humantime::format_duration(BUSY_TIMEOUT)
                    ))
                }
                Err(e) => return Err(format!("{}: the copy failed: {e}", src.display())),
                #[allow(unreachable_patterns)]
                _ => return Err(format!("{}: the copy failed", src.display())),
            }
        }
    }
    drop(from);
    let info = describe(&to, journal_mode.to_ascii_lowercase())
        .map_err(|e| format!("{} (the copy of {}): {e}", dest.display(), src.display()))?;
    if info.integrity != "ok" {
        return Err(format!(
            "{}: PRAGMA integrity_check of the copy failed: {}",
            src.display(),
            info.integrity
        ));
    }
    // Not synced: the copy is scratch, read once into the archive, which is
    // synced; a 200 MB flush here would hold up the bot's own fsync.
    to.close()
        .map_err(|(_, e)| format!("{}: {e}", dest.display()))?;
    Ok(info)
}

fn describe(conn: &Connection, journal_mode: String) -> rusqlite::Result<SqliteInfo> {
    let integrity = integrity_check(conn)?;
    let page_count: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(SqliteInfo {
        page_count: page_count as u64,
        page_size: page_size as u64,
        journal_mode,
        integrity,
    })
}

/// "ok", or the problems SQLite found, one per line (at most 100).
fn integrity_check(conn: &Connection) -> rusqlite::Result<String> {
    let mut stmt = conn.prepare("PRAGMA integrity_check(100)")?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    Ok(rows.join("\n"))
}

/// Checks a database file taken out of an archive: it opens, passes
/// `integrity_check`, and has the page size and count the manifest says.
pub fn check_copy(path: &Path, expect: &SqliteInfo) -> Result<(), String> {
    // Immutable: a copy being checked has no writer, and this keeps SQLite
    // from creating -wal or -shm files beside it.
    let uri = format!("file:{}?immutable=1", uri_path(path));
    let conn = Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open the database: {e}"))?;
    let got = describe(&conn, expect.journal_mode.clone())
        .map_err(|e| format!("not a readable SQLite database: {e}"))?;
    if got.integrity != "ok" {
        return Err(format!("PRAGMA integrity_check failed: {}", got.integrity));
    }
    if (got.page_count, got.page_size) != (expect.page_count, expect.page_size) {
        return Err(format!(
            "{} pages of {} bytes, the manifest says {} of {}",
            got.page_count, got.page_size, expect.page_count, expect.page_size
        ));
    }
    Ok(())
}

/// A path as a file: URI path, with the characters URIs reserve escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'%' | b'?' | b'#' => out.push_str(&format!("%{b:02X}")),
            _ => out.push(*b as char),
        }
    }
    out
}

/// What changes when a database is written: the size, change time and
/// inode of the database and its WAL. In WAL mode a commit appends to the
/// WAL; in rollback mode it rewrites the database.
pub fn fingerprint(db: &Path) -> Vec<(u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let wal = {
        let mut p = db.as_os_str().to_os_string();
        p.push("-wal");
        std::path::PathBuf::from(p)
    };
    [db.to_path_buf(), wal]
        .iter()
        .map(|p| match std::fs::metadata(p) {
            Ok(m) => (m.len(), m.mtime(), m.mtime_nsec(), m.ino()),
            Err(_) => (0, 0, 0, 0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(label: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "bsv-p2p-backup-sqlite-{label}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_wal_database_is_copied_with_its_uncheckpointed_commits() {
        let d = scratch("wal");
        let src = d.join("wallet.db");
        let w = Connection::open(&src).unwrap();
        w.pragma_update(None, "journal_mode", "wal").unwrap();
        w.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        w.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);")
            .unwrap();
        // An open read transaction elsewhere and a pending write do not stop the copy.
        let copy = d.join("copy.db");
        let info = copy_and_keep_writing(&src, &copy, &w);
        assert_eq!(
            (info.integrity.as_str(), info.journal_mode.as_str()),
            ("ok", "wal")
        );
        check_copy(&copy, &info).unwrap();
        let c = Connection::open(&copy).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
        let wrong = SqliteInfo {
            page_count: info.page_count + 1,
            ..info
        };
        assert!(check_copy(&copy, &wrong).unwrap_err().contains("pages"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn copy_and_keep_writing(src: &Path, dest: &Path, w: &Connection) -> SqliteInfo {
        let info = copy(src, dest).unwrap();
        w.execute("INSERT INTO t VALUES (4)", []).unwrap();
        info
    }

    #[test]
    fn a_missing_or_foreign_file_is_refused_and_nothing_is_created() {
        let d = scratch("bad");
        let e = copy(&d.join("absent.db"), &d.join("c1.db")).unwrap_err();
        assert!(e.contains("absent.db"), "{e}");
        assert!(!d.join("absent.db").exists());
        std::fs::write(d.join("text.db"), "not a database at all, just text").unwrap();
        let e = copy(&d.join("text.db"), &d.join("c2.db")).unwrap_err();
        assert!(e.contains("text.db"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn fingerprints_change_on_commit() {
        let d = scratch("fp");
        let src = d.join("w.db");
        let w = Connection::open(&src).unwrap();
        w.pragma_update(None, "journal_mode", "wal").unwrap();
        w.execute_batch("CREATE TABLE t(x)").unwrap();
        let a = fingerprint(&src);
        w.execute("INSERT INTO t VALUES (1)", []).unwrap();
        assert_ne!(a, fingerprint(&src));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
