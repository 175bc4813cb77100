//! A real writer of a live SQLite database, the way the bots write their
//! wallet: Node.js with better-sqlite3 (`tests/sqlite/writer.mjs`, installed
//! by `tests/sqlite/install.sh`), in WAL mode by default, committing
//! numbered transactions as fast as it can while the backup sidecar copies
//! the database; plus [`check_consistent_prefix`], which says whether a copy
//! holds exactly the transactions 1..=K the writer committed, none torn.
//!
//! Schema (writer.mjs creates it):
//! - `writes(seq INTEGER PRIMARY KEY, tx INTEGER NOT NULL, payload BLOB NOT NULL)`:
//!   transaction t inserts rows_per_tx rows with `tx = t`;
//! - `progress(id = 1, last_tx, rows)`: moved on in the same transaction;
//! - `fill(id, data)`: the prefill (`--fill-mb`), random 64 KiB blobs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

use crate::child::wait_exit;
use crate::jsonlog::{JsonLines, WaitError};
use crate::relay::workspace_dir;

/// How long the writer gets to open the database and commit once, on top
/// of its prefill (see [`start_timeout`]).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the writer gets to finish its transaction and close after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// `tests/sqlite`, where writer.mjs and its node_modules are.
pub fn sqlite_dir() -> PathBuf {
    workspace_dir().join("tests").join("sqlite")
}

/// The Node 22 that runs writer.mjs (tests/js/install.sh installs it;
/// tests/sqlite/install.sh builds better-sqlite3 against it). Panics (the
/// tests fail, they are not skipped) when it or better-sqlite3 is missing.
pub fn node_bin() -> PathBuf {
    let node = workspace_dir().join("tests/js/node_modules/node/bin/node");
    assert!(
        node.is_file(),
        "{} is missing: run tests/sqlite/install.sh (scripts/test does)",
        node.display()
    );
    let addon = sqlite_dir().join("node_modules/better-sqlite3/build/Release/better_sqlite3.node");
    assert!(
        addon.is_file(),
        "{} is missing: run tests/sqlite/install.sh (scripts/test does)",
        addon.display()
    );
    node
}

/// The database's journal mode while the writer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journal {
    Wal,
    Delete,
}

/// What to start the writer with; each maps to a writer.mjs flag.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub journal: Journal,
    /// Rows each transaction inserts (`--rows-per-tx`, default 10).
    pub rows_per_tx: u32,
    /// Bytes of each row's payload (`--payload-bytes`, default 200).
    pub payload_bytes: u32,
    /// Pause between transactions; zero is as fast as it can (default).
    pub interval: Duration,
    /// Prefill the database to about this many MiB first (0: none).
    pub fill_mb: u32,
    /// SQLite's busy timeout: how long a commit waits for a lock before it
    /// fails with SQLITE_BUSY (default 10 s).
    pub busy_timeout: Duration,
    /// `PRAGMA synchronous` ("full", "normal", "off"); `None` keeps
    /// better-sqlite3's default.
    pub synchronous: Option<String>,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            journal: Journal::Wal,
            rows_per_tx: 10,
            payload_bytes: 200,
            interval: Duration::ZERO,
            fill_mb: 0,
            busy_timeout: Duration::from_secs(10),
            synchronous: None,
        }
    }
}

/// The writer's figures: its final line after [`Writer::stop`], or its
/// latest progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterSummary {
    /// The last committed transaction number (counting from 1 across runs
    /// on the same database).
    pub committed: u64,
    /// Rows in `writes` (= committed × rows_per_tx).
    pub rows: u64,
    /// The longest commit (wall time of one transaction, busy waits included).
    pub max_stall: Duration,
    /// The 99th percentile commit time (upper bound of a 1 % wide bucket).
    pub p99_stall: Duration,
    /// Transactions per second over this run.
    pub tx_per_sec: f64,
    /// Transactions this run committed.
    pub tx_this_run: u64,
}

impl WriterSummary {
    fn from_line(line: &Value) -> Option<WriterSummary> {
        let ms = |key: &str| {
            line[key]
                .as_f64()
                .map(|v| Duration::from_secs_f64(v / 1000.0))
        };
        Some(WriterSummary {
            committed: line["committed"].as_u64()?,
            rows: line["rows"].as_u64()?,
            max_stall: ms("maxStallMs")?,
            p99_stall: ms("p99StallMs")?,
            tx_per_sec: line["txPerSec"].as_f64()?,
            tx_this_run: line["txThisRun"].as_u64().unwrap_or(0),
        })
    }
}

/// What the prefill did (`--fill-mb`).
#[derive(Debug, Clone, PartialEq)]
pub struct FillReport {
    pub rows: u64,
    pub elapsed: Duration,
    /// page_count × page_size after the prefill.
    pub db_bytes: u64,
}

/// How long [`Writer::start`] waits: 30 s, plus 1 s per 4 MiB of prefill.
fn start_timeout(opts: &WriterOptions) -> Duration {
    START_TIMEOUT + Duration::from_millis(u64::from(opts.fill_mb) * 250)
}

/// A running writer.mjs, killed when dropped.
pub struct Writer {
    child: Child,
    lines: Arc<JsonLines>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    db: PathBuf,
}

impl Writer {
    /// Starts the writer on `db` (created if missing, continued from its
    /// `progress` if not) and waits for its first progress line, after
    /// the prefill if any.
    pub fn start(db: &Path, opts: WriterOptions) -> Writer {
        let node = node_bin();
        let mut command = Command::new(node);
        command
            .arg(sqlite_dir().join("writer.mjs"))
            .arg("--db")
            .arg(db)
            .arg("--journal")
            .arg(match opts.journal {
                Journal::Wal => "wal",
                Journal::Delete => "delete",
            })
            .arg("--rows-per-tx")
            .arg(opts.rows_per_tx.to_string())
            .arg("--payload-bytes")
            .arg(opts.payload_bytes.to_string())
            .arg("--interval-ms")
            .arg(opts.interval.as_millis().to_string())
            .arg("--fill-mb")
            .arg(opts.fill_mb.to_string())
            .arg("--busy-timeout-ms")
            .arg(opts.busy_timeout.as_millis().to_string());
        if let Some(sync) = &opts.synchronous {
            command.arg("--synchronous").arg(sync);
        }
        let mut child = command
            .current_dir(sqlite_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start writer.mjs: {e}"));
        let (lines, out_reader) = JsonLines::spawn(child.stdout.take().expect("piped stdout"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let err_reader = {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = err_pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        let writer = Writer {
            child,
            lines,
            stderr,
            readers: vec![out_reader, err_reader],
            db: db.to_path_buf(),
        };
        let timeout = start_timeout(&opts);
        if let Err(e) = writer.wait_line(|l| l.get("committed").is_some(), timeout) {
            panic!("writer on {}: {e}", db.display());
        }
        writer
    }

    /// Waits for a line satisfying `pred`; an `{"error"}` line, the end of
    /// the output or the timeout is an error.
    fn wait_line(&self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Result<Value, String> {
        let found = self
            .lines
            .wait_after(0, |l| l.get("error").is_some() || pred(l), timeout)
            .map_err(|e| match e {
                WaitError::Closed => format!(
                    "writer exited; lines: {}; stderr: {}",
                    tail(&self.lines.all()),
                    self.stderr()
                ),
                WaitError::Timeout { tail } => format!(
                    "no expected line within {timeout:?}; lines: {tail}; stderr: {}",
                    self.stderr()
                ),
            })?;
        if found.get("error").is_some() {
            return Err(format!("writer failed: {found}; stderr: {}", self.stderr()));
        }
        // The latest matching line, not the first.
        Ok(self
            .lines
            .all()
            .into_iter()
            .rev()
            .find(|l| pred(l))
            .unwrap_or(found))
    }

    /// The latest progress figures.
    pub fn latest(&self) -> WriterSummary {
        self.lines
            .all()
            .iter()
            .rev()
            .find_map(WriterSummary::from_line)
            .expect("the writer reported progress before start returned")
    }

    /// The last committed transaction, as last reported (every 250 ms).
    pub fn committed(&self) -> u64 {
        self.latest().committed
    }

    /// An upper bound on the transactions committed by `t`: the count in
    /// the first progress line the writer wrote at or after `t` (lines
    /// carry the writer's wall clock). [`Writer::committed`] alone is only
    /// a lower bound, since it can be up to 250 ms old.
    pub fn committed_by(&self, t: SystemTime, timeout: Duration) -> u64 {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .expect("a time after the epoch")
            .as_millis() as u64;
        let line = self
            .wait_line(
                |l| l["committed"].is_u64() && l["atMs"].as_u64().is_some_and(|at| at >= ms),
                timeout,
            )
            .unwrap_or_else(|e| panic!("writer: no progress line after {t:?}: {e}"));
        // wait_line gives the latest matching line; the first one after
        // `t` is the tightest bound.
        self.lines
            .all()
            .iter()
            .find(|l| l["committed"].is_u64() && l["atMs"].as_u64().is_some_and(|at| at >= ms))
            .and_then(|l| l["committed"].as_u64())
            .unwrap_or_else(|| line["committed"].as_u64().expect("a progress line"))
    }

    /// The longest commit so far, as last reported.
    pub fn max_stall(&self) -> Duration {
        self.latest().max_stall
    }

    /// Waits until the writer reports at least transaction `tx` committed.
    pub fn wait_committed(&self, tx: u64, timeout: Duration) -> WriterSummary {
        let line = self
            .wait_line(
                |l| l["committed"].as_u64().is_some_and(|c| c >= tx),
                timeout,
            )
            .unwrap_or_else(|e| panic!("writer: tx {tx} not committed: {e}"));
        WriterSummary::from_line(&line).expect("a progress line")
    }

    /// The writer's first line: journal mode, synchronous, versions, the
    /// transaction it started after.
    pub fn started(&self) -> Value {
        self.lines
            .all()
            .into_iter()
            .find(|l| l["started"] == true)
            .unwrap_or(Value::Null)
    }

    /// What the prefill did, if there was one.
    pub fn fill(&self) -> Option<FillReport> {
        let line = self.lines.all().into_iter().find(|l| l["fill"] == true)?;
        Some(FillReport {
            rows: line["fillRows"].as_u64()?,
            elapsed: Duration::from_secs_f64(line["fillMs"].as_f64()? / 1000.0),
            db_bytes: line["dbBytes"].as_u64()?,
        })
    }

    /// The first `{"error"}` line, if the writer failed (for example with
    /// SQLITE_BUSY after its busy timeout).
    pub fn error(&self) -> Option<String> {
        self.lines
            .all()
            .into_iter()
            .find(|l| l.get("error").is_some())
            .map(|l| l.to_string())
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn db(&self) -> &Path {
        &self.db
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM: the writer finishes its transaction, closes the database
    /// and prints its summary (`"done":true`). Panics if it failed.
    pub fn stop(self) -> WriterSummary {
        self.try_stop()
            .unwrap_or_else(|e| panic!("writer stop: {e}"))
    }

    /// [`Writer::stop`], with a failure (an error line, a non-zero exit,
    /// no summary) returned.
    pub fn try_stop(mut self) -> Result<WriterSummary, String> {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a PID fits pid_t");
        // SAFETY: kill on the PID of our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = wait_exit(&mut self.child, STOP_TIMEOUT, Duration::from_millis(20))
            .map_err(|e| format!("waiting for the writer: {e}"))?;
        let Some(status) = status else {
            return Err(format!(
                "writer still running {STOP_TIMEOUT:?} after SIGTERM; stderr: {}",
                self.stderr()
            ));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let lines = self.lines.all();
        if let Some(error) = lines.iter().find(|l| l.get("error").is_some()) {
            return Err(format!(
                "writer failed ({status}): {error}; stderr: {}",
                self.stderr()
            ));
        }
        if !status.success() {
            return Err(format!(
                "writer exited with {status}; lines: {}; stderr: {}",
                tail(&lines),
                self.stderr()
            ));
        }
        lines
            .iter()
            .rev()
            .find(|l| l["done"] == true)
            .and_then(WriterSummary::from_line)
            .ok_or_else(|| format!("no done line; lines: {}", tail(&lines)))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn tail(lines: &[Value]) -> String {
    lines[lines.len().saturating_sub(6)..]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Opens `db` read-only and checks that it holds a consistent prefix of the
/// writer's transactions: `PRAGMA integrity_check` is "ok"; `writes` holds
/// transactions exactly 1..=K, each with the same number N of rows, with
/// seq contiguous from 1 (transaction t has seq (t-1)·N+1 ..= t·N);
/// `progress` says last_tx = K and rows = K·N. Returns K.
pub fn check_consistent_prefix(db: &Path) -> Result<u64, String> {
    let at = db.display();
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("{at}: cannot open: {e}"))?;
    let sql = |e: rusqlite::Error| format!("{at}: {e}");

    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check(10)")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(sql)?;
    if integrity != ["ok"] {
        return Err(format!(
            "{at}: integrity_check (first 10 problems): {}",
            integrity.join("; ")
        ));
    }

    let (last_tx, progress_rows): (i64, i64) = conn
        .query_row("SELECT last_tx, rows FROM progress WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|e| format!("{at}: no progress row: {e}"))?;

    let mut groups = conn
        .prepare("SELECT tx, count(*), min(seq), max(seq) FROM writes GROUP BY tx ORDER BY tx")
        .map_err(sql)?;
    let groups = groups
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(sql)?;
    let mut k: i64 = 0;
    let mut per_tx: Option<i64> = None;
    for group in groups {
        let (tx, count, min_seq, max_seq) = group.map_err(sql)?;
        let expected = k + 1;
        if tx != expected {
            return Err(if tx > expected {
                format!(
                    "{at}: transactions {expected}..={} missing (next is tx {tx})",
                    tx - 1
                )
            } else {
                format!("{at}: unexpected tx {tx} after tx {k}")
            });
        }
        let n = *per_tx.get_or_insert(count);
        if count != n {
            return Err(format!(
                "{at}: tx {tx} has {count} rows, transactions before it have {n}: torn transaction"
            ));
        }
        let (first, last) = ((tx - 1) * n + 1, tx * n);
        if min_seq != first || max_seq != last {
            return Err(format!(
                "{at}: tx {tx} has seq {min_seq}..={max_seq}, expected {first}..={last}"
            ));
        }
        k = tx;
    }
    let n = per_tx.unwrap_or(0);
    if last_tx != k {
        return Err(format!(
            "{at}: progress.last_tx = {last_tx}, but writes holds transactions 1..={k}"
        ));
    }
    if progress_rows != k * n {
        return Err(format!(
            "{at}: progress.rows = {progress_rows}, but writes holds {} rows",
            k * n
        ));
    }
    u64::try_from(k).map_err(|e| format!("{at}: {e}"))
}
