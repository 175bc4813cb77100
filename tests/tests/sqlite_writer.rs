//! The live SQLite writer the backup sidecar's tests copy from
//! (tests/sqlite/writer.mjs, better-sqlite3 like the bots' wallet): it
//! commits in WAL mode, stops cleanly with a summary, leaves a database
//! that check_consistent_prefix accepts, continues numbering on restart;
//! check_consistent_prefix rejects a damaged copy; the prefill is fast.

use std::time::{Duration, Instant};

use bsv_p2p_tests::sqlite_writer::{check_consistent_prefix, Journal, Writer, WriterOptions};
use bsv_p2p_tests::ScratchDir;

const T: Duration = Duration::from_secs(30);

#[test]
fn commits_in_wal_mode_and_stops_with_a_summary() {
    let dir = ScratchDir::new("sqlite-writer");
    let db = dir.join("wallet.db");
    let writer = Writer::start(&db, WriterOptions::default());
    assert_eq!(
        writer.started()["journalMode"],
        "wal",
        "{}",
        writer.started()
    );
    let wal = dir.join("wallet.db-wal");
    assert!(wal.is_file(), "no {} while the writer runs", wal.display());
    writer.wait_committed(200, T);
    std::thread::sleep(Duration::from_secs(2));
    let running = writer.committed();
    assert!(running >= 200);
    assert!(writer.max_stall() > Duration::ZERO);
    let started = writer.started();
    let summary = writer.stop();
    eprintln!("writer {started}\nsummary {summary:?}");
    assert!(summary.committed >= running, "{summary:?}");
    assert_eq!(summary.rows, summary.committed * 10, "{summary:?}");
    assert_eq!(summary.tx_this_run, summary.committed, "{summary:?}");
    assert!(summary.tx_per_sec > 50.0, "{summary:?}");
    assert!(summary.p99_stall <= summary.max_stall, "{summary:?}");
    assert_eq!(check_consistent_prefix(&db), Ok(summary.committed));

    // A second run continues the numbering.
    let writer = Writer::start(&db, WriterOptions::default());
    assert_eq!(writer.started()["startTx"], summary.committed);
    writer.wait_committed(summary.committed + 50, T);
    let second = writer.stop();
    assert!(second.committed >= summary.committed + 50, "{second:?}");
    assert_eq!(check_consistent_prefix(&db), Ok(second.committed));
}

#[test]
fn rollback_journal_mode_and_options() {
    let dir = ScratchDir::new("sqlite-writer");
    let db = dir.join("wallet.db");
    let writer = Writer::start(
        &db,
        WriterOptions {
            journal: Journal::Delete,
            rows_per_tx: 3,
            payload_bytes: 1000,
            interval: Duration::from_millis(5),
            ..WriterOptions::default()
        },
    );
    assert_eq!(writer.started()["journalMode"], "delete");
    writer.wait_committed(20, T);
    assert!(!dir.join("wallet.db-wal").exists());
    let summary = writer.stop();
    assert_eq!(summary.rows, summary.committed * 3);
    // At most one transaction per 5 ms.
    assert!(summary.tx_per_sec < 220.0, "{summary:?}");
    assert_eq!(check_consistent_prefix(&db), Ok(summary.committed));
}

/// Runs SQL on a copy of the database in read-write mode.
fn damage(db: &std::path::Path, sql: &str) {
    let conn = rusqlite::Connection::open(db).expect("open the copy");
    conn.execute_batch(sql).expect("damage the copy");
}

#[test]
fn check_consistent_prefix_rejects_damaged_copies() {
    let dir = ScratchDir::new("sqlite-writer");
    let db = dir.join("wallet.db");
    let writer = Writer::start(&db, WriterOptions::default());
    writer.wait_committed(100, T);
    let summary = writer.stop();
    let k = check_consistent_prefix(&db).expect("the writer's own database");
    assert_eq!(k, summary.committed);

    let copy = |name: &str| {
        let path = dir.join(name);
        std::fs::copy(&db, &path).expect("copy the database");
        path
    };

    // One row of tx 37 gone: a torn transaction.
    let torn = copy("torn.db");
    damage(
        &torn,
        "DELETE FROM writes WHERE seq = (SELECT max(seq) FROM writes WHERE tx = 37)",
    );
    let err = check_consistent_prefix(&torn).expect_err("a torn transaction");
    eprintln!("torn: {err}");
    assert!(
        err.contains("tx 37 has 9 rows, transactions before it have 10"),
        "{err}"
    );

    // A whole transaction gone from the middle.
    let gap = copy("gap.db");
    damage(&gap, "DELETE FROM writes WHERE tx = 50");
    let err = check_consistent_prefix(&gap).expect_err("a missing transaction");
    eprintln!("gap: {err}");
    assert!(err.contains("transactions 50..=50 missing"), "{err}");

    // The last transaction's rows without its progress update.
    let behind = copy("behind.db");
    damage(
        &behind,
        &format!(
            "UPDATE progress SET last_tx = {}, rows = rows - 10",
            k.saturating_sub(1)
        ),
    );
    let err = check_consistent_prefix(&behind).expect_err("progress behind");
    eprintln!("behind: {err}");
    assert!(err.contains("progress.last_tx"), "{err}");

    // The header of the `writes` table's root page overwritten: integrity_check
    // (or reading) fails.
    let corrupt = copy("corrupt.db");
    let (root, page_size): (u64, u64) = {
        let conn = rusqlite::Connection::open(&corrupt).expect("open the copy");
        let root = conn
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'writes'",
                [],
                |r| r.get(0),
            )
            .expect("rootpage");
        let page_size = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("page_size");
        (root, page_size)
    };
    let mut bytes = std::fs::read(&corrupt).expect("read");
    let at = usize::try_from((root - 1) * page_size).expect("offset");
    bytes[at..at + 12].fill(0xff);
    std::fs::write(&corrupt, bytes).expect("write");
    let err = check_consistent_prefix(&corrupt).expect_err("a corrupted page");
    eprintln!("corrupt: {err}");
    assert!(err.contains("corrupt.db"), "{err}");

    // Not a database at all.
    let junk = dir.join("junk.db");
    std::fs::write(&junk, vec![7u8; 8192]).expect("write");
    let err = check_consistent_prefix(&junk).expect_err("not a database");
    eprintln!("junk: {err}");
}

#[test]
fn prefill_makes_a_20_mb_database_quickly() {
    let dir = ScratchDir::new("sqlite-writer");
    let db = dir.join("wallet.db");
    let t0 = Instant::now();
    let writer = Writer::start(
        &db,
        WriterOptions {
            fill_mb: 20,
            ..WriterOptions::default()
        },
    );
    let started_in = t0.elapsed();
    let fill = writer.fill().expect("a fill line");
    eprintln!("fill {fill:?}, writer started in {started_in:?}");
    let mib = 1024 * 1024;
    assert!((20 * mib..22 * mib).contains(&fill.db_bytes), "{fill:?}");
    assert!(fill.elapsed < Duration::from_secs(10), "{fill:?}");
    writer.wait_committed(50, T);
    let summary = writer.stop();
    let size = std::fs::metadata(&db).expect("db").len();
    assert!(size >= 20 * mib, "db is {size} bytes");
    assert_eq!(check_consistent_prefix(&db), Ok(summary.committed));
}
