//! End-to-end tests of `bsv-p2p-backup` with real writers and real servers:
//! a better-sqlite3 bot writing its wallet in WAL mode, SeaweedFS as the S3
//! target (signatures checked), rsync over ssh to a local sshd, the real
//! relay for its identity, and a js-libp2p bot reserving on the restored
//! relay.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use bsv_p2p_tests::backup::{files, Site};
use bsv_p2p_tests::health::eventually;
use bsv_p2p_tests::s3::S3Server;
use bsv_p2p_tests::sqlite_writer::{check_consistent_prefix, Writer, WriterOptions};
use bsv_p2p_tests::sshd::Sshd;
use bsv_p2p_tests::{Bot, BotOptions, Relay, RelayOptions, ScratchDir};
use serde_json::Value;

/// A wallet with a live writer; the writer's database is the site's wallet.
fn writer_on(site: &Site, options: WriterOptions) -> Writer {
    Writer::start(&site.wallet(), options)
}

/// Restores `id` to a new file and checks it holds a consistent prefix of
/// the writer's transactions; the prefix length.
fn restored_prefix(site: &Site, id: &str) -> u64 {
    let to = site.root.join(&format!("restored-{id}.db"));
    site.ok(&["restore", id, "--to", to.to_str().unwrap()]);
    check_consistent_prefix(&to).unwrap_or_else(|e| panic!("{id}: {e}"))
}

fn s3_site(label: &str, s3: &S3Server, bucket: &str, secret: &str) -> Site {
    Site::new(label)
        .option(
            "--target",
            format!(
                "s3://{bucket}/bsv-p2p-backups?endpoint={}&region={}",
                s3.endpoint(),
                s3.region()
            ),
        )
        .env("AWS_ACCESS_KEY_ID", s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", secret)
}

fn s3_ids(s3: &S3Server, bucket: &str) -> Vec<String> {
    let mut ids: Vec<String> = s3
        .list(bucket, "bsv-p2p-backups/")
        .into_iter()
        .filter_map(|(k, _)| {
            k.strip_prefix("bsv-p2p-backups/")?
                .strip_suffix(".manifest.json")
                .map(str::to_string)
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn backups_under_a_live_wal_writer_restore_to_consistent_prefixes() {
    let site = Site::new("backup-live");
    let writer = writer_on(&site, WriterOptions::default());
    writer.wait_committed(200, Duration::from_secs(30));
    std::fs::write(site.home.join("config.json"), r#"{"port":4001}"#).unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let before = writer.committed();
        let out = site.ok(&["now"]);
        let after = writer.committed_by(SystemTime::now(), Duration::from_secs(10));
        assert!(out.contains("2 parts"), "{out}");
        let id = site.ids().last().cloned().expect("a backup");
        seen.push((id, before, after));
        writer.wait_committed(after + 50, Duration::from_secs(30));
    }
    let summary = writer.stop();
    assert!(
        summary.committed > seen.last().unwrap().2,
        "the writer went on committing after the last backup: {summary:?}"
    );
    let mut last = 0;
    for (id, before, after) in &seen {
        let k = restored_prefix(&site, id);
        // The copy holds every transaction committed before `now` started
        // and none that had not been committed when it ended.
        assert!(
            k >= *before && k <= *after,
            "{id}: {k} transactions, committed {before}..{after}"
        );
        assert!(k > last, "backups in order");
        last = k;
    }
    // The manifest says what is in it.
    let m: Value = serde_json::from_slice(
        &std::fs::read(site.dir.join(format!("{}.manifest.json", seen[0].0))).unwrap(),
    )
    .unwrap();
    let db = m["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "sqlite")
        .unwrap();
    assert_eq!(db["source"], site.wallet().display().to_string());
    assert_eq!(db["sqlite"]["journalMode"], "wal");
    assert_eq!(db["sqlite"]["integrity"], "ok");
    assert!(db["sqlite"]["pageCount"].as_u64().unwrap() > 1);
    assert_eq!(db["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(m["encrypted"], false);
}

#[test]
fn restore_refuses_a_database_in_use_or_present_and_keeps_what_it_replaces() {
    let site = Site::new("backup-restore");
    let writer = writer_on(&site, WriterOptions::default());
    writer.wait_committed(20, Duration::from_secs(30));
    site.ok(&["now"]);
    let id = site.ids().pop().unwrap();
    // The live wallet: in use by the writer, refused even with --force.
    let f = site.run(&[
        "restore",
        &id,
        "--to",
        site.wallet().to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(f.code, Some(1), "{f:?}");
    assert!(
        f.stderr.contains("in use by") && f.stderr.contains(&writer.pid().to_string()),
        "{}",
        f.stderr
    );
    let committed = writer.stop().committed;
    // Stopped: refused without --force, done with it.
    let f = site.run(&["restore", &id, "--to", site.wallet().to_str().unwrap()]);
    assert_eq!(f.code, Some(1));
    assert!(f.stderr.contains("--force"), "{}", f.stderr);
    let out = site.ok(&[
        "restore",
        &id,
        "--to",
        site.wallet().to_str().unwrap(),
        "--force",
    ]);
    assert!(out.contains("kept as"), "{out}");
    let k = check_consistent_prefix(&site.wallet()).unwrap();
    assert!(k <= committed);
    let kept: Vec<String> = files(&site.home)
        .into_iter()
        .filter(|f| f.contains("before-restore"))
        .collect();
    assert!(
        kept.iter()
            .any(|f| f.starts_with("wallet.db.before-restore-")),
        "{kept:?}"
    );
    assert_eq!(
        check_consistent_prefix(
            &site.home.join(
                kept.iter()
                    .find(|f| f.starts_with("wallet.db.before"))
                    .unwrap()
            )
        )
        .ok()
        .map(|_| ()),
        Some(()),
        "the replaced wallet is kept whole (with its WAL beside it)"
    );
}

#[test]
fn tampered_archives_and_manifests_are_refused() {
    let site = Site::new("backup-tamper");
    let writer = writer_on(&site, WriterOptions::default());
    writer.wait_committed(20, Duration::from_secs(30));
    site.ok(&["now"]);
    site.ok(&["now"]);
    site.ok(&["now"]);
    writer.stop();
    let ids = site.ids();
    let to = site.root.join("r.db");
    let refuses = |id: &str, needle: &str| {
        let f = site.run(&["verify", id]);
        assert_eq!(f.code, Some(1), "verify {id}: {f:?}");
        assert!(
            f.stdout.contains("FAILED") && f.stdout.contains(needle),
            "verify {id}: {}",
            f.stdout
        );
        let f = site.run(&["restore", id, "--to", to.to_str().unwrap()]);
        assert_eq!(f.code, Some(1), "restore {id}: {f:?}");
        assert!(!to.exists(), "nothing restored from {id}");
    };
    // A changed byte in the archive.
    let archive = site.dir.join(format!("{}.tar.gz", ids[0]));
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&archive, &bytes).unwrap();
    refuses(&ids[0], "tampered");
    // The manifest's record of a part changed, and the archive's sha256
    // made to match the changed archive: the manifest inside differs.
    let manifest = site.dir.join(format!("{}.manifest.json", ids[1]));
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["parts"][0]["sha256"] = "0".repeat(64).into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    refuses(&ids[1], "differs");
    // A manifest that is not JSON.
    std::fs::write(
        site.dir.join(format!("{}.manifest.json", ids[2])),
        b"{\"format\":",
    )
    .unwrap();
    refuses(&ids[2], "not a backup manifest");
    // `list` shows them as what they are.
    let listed = site.list(false);
    assert!(
        listed
            .iter()
            .any(|b| b["local"].as_str().unwrap().contains("FAILED")),
        "{listed:?}"
    );
}

#[test]
fn an_encrypted_archive_cannot_be_read_without_the_key() {
    let site = Site::new("backup-age");
    let key = site.root.join("backup.key");
    let public = site
        .ok(&["keygen", "--out", key.to_str().unwrap()])
        .trim()
        .to_string();
    assert!(public.starts_with("age1"), "{public}");
    let writer = writer_on(&site, WriterOptions::default());
    writer.wait_committed(20, Duration::from_secs(30));
    let site = site.option("--recipient", &public);
    site.ok(&["now"]);
    writer.stop();
    let id = site.ids().pop().unwrap();
    let archive = site.dir.join(format!("{id}.tar.gz.age"));
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!bytes.windows(15).any(|w| w == b"SQLite format 3"));
    assert!(std::process::Command::new("gzip")
        .args(["-t"])
        .arg(&archive)
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true));
    let m: Value = serde_json::from_slice(
        &std::fs::read(site.dir.join(format!("{id}.manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(m["encrypted"], true);
    // Without the key: the archive's sha256 is checked, the contents are not
    // read, and nothing is restored.
    let out = site.ok(&["verify", &id]);
    assert!(out.contains("not read"), "{out}");
    let to = site.root.join("r.db");
    let f = site.run(&["restore", &id, "--to", to.to_str().unwrap()]);
    assert_eq!(f.code, Some(1));
    assert!(
        f.stderr.contains("--identity") && !to.exists(),
        "{}",
        f.stderr
    );
    // A wrong key is refused.
    let other = site.root.join("other.key");
    site.ok(&["keygen", "--out", other.to_str().unwrap()]);
    let f = site.run_with(
        &["--identity", other.to_str().unwrap()],
        &["restore", &id, "--to", to.to_str().unwrap()],
    );
    assert_eq!(f.code, Some(1));
    assert!(!to.exists());
    // The key reads it, here and with the age tool itself.
    site.run_with(
        &["--identity", key.to_str().unwrap()],
        &["restore", &id, "--to", to.to_str().unwrap()],
    );
    check_consistent_prefix(&to).unwrap();
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "age -d -i {} {} | tar tz",
            key.display(),
            archive.display()
        ))
        .output()
        .expect("age and tar run");
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(
        names.contains("MANIFEST.json") && names.contains("wallet.db"),
        "{names} {:?}",
        listing
    );
}

#[test]
fn sigkill_during_backups_never_leaves_a_partial_backup_listed_shipped_or_restored() {
    let site = Site::new("backup-kill");
    let remote = site.root.join("remote");
    std::fs::create_dir(&remote).unwrap();
    let site = site
        .option("--target", &remote)
        .option("--compression", "9");
    let writer = writer_on(
        &site,
        WriterOptions {
            fill_mb: 16,
            ..WriterOptions::default()
        },
    );
    let mut rng_state = 0x2545_f491_4f6c_dd1du64;
    let mut killed = 0;
    for _ in 0..12 {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        let delay = Duration::from_millis(rng_state % 1500);
        let mut child = site.spawn(&["now"]);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        // Whatever is listed is whole: every listed backup verifies.
        for id in site.ids() {
            let out = site.ok(&["verify", &id]);
            assert!(out.contains(": ok:"), "{out}");
        }
        // At the target, a manifest is there only with its whole archive.
        for f in files(&remote) {
            if let Some(id) = f.strip_suffix(".manifest.json") {
                let m: Value =
                    serde_json::from_slice(&std::fs::read(remote.join(&f)).unwrap()).unwrap();
                let size = std::fs::metadata(remote.join(format!("{id}.tar.gz")))
                    .map(|m| m.len())
                    .unwrap_or(0);
                assert_eq!(
                    size,
                    m["archive"]["bytes"].as_u64().unwrap(),
                    "{id} at the target"
                );
            }
        }
    }
    assert!(
        killed >= 3,
        "only {killed} runs were killed mid-way; the test proves nothing"
    );
    writer.stop();
    // A run after the kills cleans what they left and ships the rest.
    site.ok(&["now"]);
    let leftovers: Vec<String> = std::fs::read_dir(&site.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.contains(".tmp-")
                || (n.ends_with(".tar.gz")
                    && !site
                        .dir
                        .join(n.replace(".tar.gz", ".manifest.json"))
                        .exists())
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for id in site.ids() {
        assert!(
            remote.join(format!("{id}.manifest.json")).exists(),
            "{id} shipped"
        );
        restored_prefix(&site, &id);
    }
}

#[test]
fn sigterm_during_a_backup_stops_at_once_and_the_next_run_finishes_the_work() {
    // The relay's control socket accepts and never says a word, as a frozen
    // relay would: the backup waits there for the client's 5 s connect
    // timeout, so it is surely under way when SIGTERM comes.
    let site = Site::new("backup-term");
    let remote = site.root.join("remote");
    std::fs::create_dir(&remote).unwrap();
    let socket = site.root.join("relay.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    let site = site
        .option("--target", &remote)
        .option("--relay-socket", &socket);
    let writer = writer_on(&site, WriterOptions::default());
    let daemon = site.start();
    let _held = eventually(
        "the backup at the relay's socket",
        Duration::from_secs(30),
        || match listener.accept() {
            Ok((stream, _)) => Ok(stream),
            Err(e) => Err(format!("{e}; stderr: {}", daemon.stderr())),
        },
    );
    let stopped = daemon.stop_within(Duration::from_secs(10));
    assert_eq!(stopped.code, Some(0), "{stopped:?}");
    assert!(
        stopped.took < Duration::from_millis(4500),
        "SIGTERM took {:?}, longer than the backup's own wait: {}",
        stopped.took,
        stopped.stderr
    );
    assert!(
        stopped
            .stderr
            .contains("stopped without waiting for a backup being taken"),
        "{}",
        stopped.stderr
    );
    // Nothing of the abandoned backup is listed or shipped.
    assert!(site.ids().is_empty(), "{:?}", site.ids());
    assert!(files(&remote).is_empty(), "{:?}", files(&remote));
    // The next run writes and ships a whole backup (the relay left out,
    // since nobody answers there) and clears what the stop left behind.
    drop(listener);
    writer.stop();
    let f = site.run(&["now"]);
    assert_eq!(f.code, Some(1), "the relay is left out: {}", f.stderr);
    assert!(f.stderr.contains("cannot reach the relay"), "{}", f.stderr);
    let ids = site.ids();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let leftovers: Vec<String> = files(&site.dir)
        .into_iter()
        .filter(|n| n.contains(".tmp-") || !n.starts_with(&ids[0]) && !n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(remote.join(format!("{}.manifest.json", ids[0])).exists());
    restored_prefix(&site, &ids[0]);
}

#[test]
fn retention_keeps_exactly_what_the_rules_say_over_a_simulated_calendar() {
    let site = Site::new("backup-retention");
    let remote = site.root.join("remote");
    std::fs::create_dir(&remote).unwrap();
    std::fs::write(site.home.join("config.json"), "{}").unwrap();
    let home = site.home.clone();
    let site = site
        .option("--db", home.join("absent.db"))
        .option("--file", home.join("config.json"));
    // Nothing to copy from the database: it is missing, and the config file goes alone.
    let f = site.run(&["now", "--no-ship"]);
    assert_eq!(
        f.code,
        Some(1),
        "a missing database is a failed source: {f:?}"
    );
    let template = site.ids().pop().expect("the config file was backed up");
    // 60 days of backups every 6 hours, ending now, made by renaming the
    // template (retention reads names and manifests, not contents).
    let now = std::time::SystemTime::now();
    let mut made = Vec::new();
    for i in 1..240u64 {
        let t = now - Duration::from_secs(i * 6 * 3600);
        let id = format!("wallet-{}", utc_stamp(t));
        std::fs::copy(
            site.dir.join(format!("{template}.tar.gz")),
            site.dir.join(format!("{id}.tar.gz")),
        )
        .unwrap();
        let text =
            std::fs::read_to_string(site.dir.join(format!("{template}.manifest.json"))).unwrap();
        std::fs::write(
            site.dir.join(format!("{id}.manifest.json")),
            text.replace(&template, &id),
        )
        .unwrap();
        made.push((id, t));
    }
    assert_eq!(site.ids().len(), 240);
    // keep-last 3, keep-daily 7, keep-weekly 4: computed here from the calendar.
    // The target holds the same calendar.
    for f in files(&site.dir) {
        std::fs::copy(site.dir.join(&f), remote.join(&f)).unwrap();
    }
    // keep-last 3, keep-daily 7, keep-weekly 4: what must stay is computed
    // here from the calendar, independently of the sidecar.
    let site = site
        .option("--keep-last", "3")
        .option("--keep-daily", "7")
        .option("--keep-weekly", "4");
    let _ = site.run(&["now", "--no-ship"]);
    let expected = |ids: &[String]| -> BTreeSet<String> {
        let mut all: Vec<(String, u64)> =
            ids.iter().map(|id| (id.clone(), stamp_secs(id))).collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.1));
        let mut keep: BTreeSet<String> = all.iter().take(3).map(|(id, _)| id.clone()).collect();
        let day = |t: u64| t / 86400;
        let week = |t: u64| (t / 86400 + 3) / 7;
        for (period, n) in [(&day as &dyn Fn(u64) -> u64, 7usize), (&week, 4)] {
            let mut seen = BTreeSet::new();
            for (id, t) in &all {
                if seen.len() == n && !seen.contains(&period(*t)) {
                    break;
                }
                if seen.insert(period(*t)) {
                    keep.insert(id.clone());
                }
            }
        }
        keep
    };
    let mut before: Vec<String> = made.iter().map(|(id, _)| id.clone()).collect();
    before.push(template.clone());
    let newer: Vec<String> = site
        .ids()
        .into_iter()
        .filter(|i| !before.contains(i))
        .collect();
    before.extend(newer);
    let kept: BTreeSet<String> = site.ids().into_iter().collect();
    assert_eq!(kept, expected(&before));
    assert!(kept.len() < 20, "{kept:?}");
    // At the target: the same rules after the next shipment.
    let at = |dir: &Path| -> Vec<String> {
        files(dir)
            .into_iter()
            .filter_map(|f| f.strip_suffix(".manifest.json").map(str::to_string))
            .collect()
    };
    let site = site.option("--target", &remote);
    let remote_had = at(&remote);
    let _ = site.run(&["now"]);
    let mut remote_before = remote_had;
    remote_before.extend(site.ids());
    remote_before.sort();
    remote_before.dedup();
    let at_target: BTreeSet<String> = at(&remote).into_iter().collect();
    assert_eq!(at_target, expected(&remote_before));
    assert_eq!(at_target, site.ids().into_iter().collect::<BTreeSet<_>>());
}

/// The time an ID names, computed independently of the sidecar.
fn stamp_secs(id: &str) -> u64 {
    let stamp = id.trim_start_matches("wallet-");
    let out = std::process::Command::new("date")
        .args(["-u", "-d"])
        .arg(format!(
            "{} {}:{}:{}",
            &stamp[..8],
            &stamp[9..11],
            &stamp[11..13],
            &stamp[13..15]
        ))
        .arg("+%s")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `YYYYMMDD-HHMMSS` in UTC, computed independently of the sidecar.
fn utc_stamp(t: std::time::SystemTime) -> String {
    let out = std::process::Command::new("date")
        .arg("-u")
        .arg("-d")
        .arg(format!(
            "@{}",
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        ))
        .arg("+%Y%m%d-%H%M%S")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn s3_wrong_secret_and_missing_bucket_are_clear_errors_not_retries() {
    let s3 = S3Server::start();
    s3.create_bucket("wallets");
    let site = s3_site("backup-s3-secret", &s3, "wallets", "not-the-secret");
    std::fs::write(site.home.join("config.json"), "{}").unwrap();
    let home = site.home.clone();
    let site = site
        .option("--db", home.join("config.json").with_extension("none"))
        .option("--file", home.join("config.json"));
    let f = site.run(&["now"]);
    assert_eq!(f.code, Some(1), "{f:?}");
    assert!(
        f.stdout.contains("SignatureDoesNotMatch") && f.stdout.contains("secret key is wrong"),
        "{}",
        f.stdout
    );
    // The daemon stops trying that target and says so in /metrics and /health.
    let daemon = site.start();
    let name = "s3:wallets/bsv-p2p-backups";
    daemon.wait_metric(
        &format!("bsv_p2p_backup_target_refused{{target=\"{name}\"}}"),
        Duration::from_secs(20),
        |v| v == 1.0,
    );
    daemon.wait_log("stopped until this is fixed", Duration::from_secs(5));
    let failures = daemon
        .metric(&format!(
            "bsv_p2p_backup_target_failures_total{{target=\"{name}\"}}"
        ))
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        daemon.metric(&format!(
            "bsv_p2p_backup_target_failures_total{{target=\"{name}\"}}"
        )),
        Some(failures),
        "no retries after a refusal"
    );
    let health = bsv_p2p_tests::health::http(daemon.metrics_port, "GET", "/health", &[]).unwrap();
    assert_eq!(health.code, 503);
    assert!(
        health.body.contains("SignatureDoesNotMatch"),
        "{}",
        health.body
    );
    daemon.stop();
    // A bucket that does not exist.
    let site = s3_site("backup-s3-bucket", &s3, "no-such-bucket", s3.secret_key());
    std::fs::write(site.home.join("config.json"), "{}").unwrap();
    let home = site.home.clone();
    let site = site
        .option("--db", home.join("none.db"))
        .option("--file", home.join("config.json"));
    let f = site.run(&["now"]);
    assert_eq!(f.code, Some(1));
    assert!(f.stdout.contains("NoSuchBucket"), "{}", f.stdout);
}

#[test]
fn s3_outage_the_backup_ships_when_it_returns_also_across_a_restart() {
    let mut s3 = S3Server::start();
    s3.create_bucket("wallets");
    let site =
        s3_site("backup-s3-outage", &s3, "wallets", s3.secret_key()).option("--interval", "1h");
    let writer = writer_on(&site, WriterOptions::default());
    writer.wait_committed(20, Duration::from_secs(30));
    // The first backup ships.
    let daemon = site.start();
    eventually("the first backup in S3", Duration::from_secs(60), || {
        let ids = s3_ids(&s3, "wallets");
        if ids.len() == 1 {
            Ok(())
        } else {
            Err(format!("{ids:?}; {}", daemon.stderr()))
        }
    });
    daemon.stop();
    // S3 goes down; a backup taken meanwhile waits in the queue, through a
    // restart of the sidecar.
    s3.stop();
    let out = site.run(&["now"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.contains("stays queued"), "{}", out.stdout);
    let queued = site.ids().pop().unwrap();
    let daemon = site.start();
    let name = "s3:wallets/bsv-p2p-backups";
    daemon.wait_metric(
        &format!("bsv_p2p_backup_target_queue_length{{target=\"{name}\"}}"),
        Duration::from_secs(20),
        |v| v >= 1.0,
    );
    daemon.wait_metric(
        &format!("bsv_p2p_backup_target_up{{target=\"{name}\"}}"),
        Duration::from_secs(20),
        |v| v == 0.0,
    );
    daemon.stop();
    let daemon = site.start();
    s3.start_again();
    eventually(
        "the queued backup in S3 after the outage",
        Duration::from_secs(120),
        || {
            let ids = s3_ids(&s3, "wallets");
            if ids.contains(&queued) {
                Ok(())
            } else {
                Err(format!("{ids:?}; {}", daemon.stderr()))
            }
        },
    );
    daemon.wait_metric(
        &format!("bsv_p2p_backup_target_queue_length{{target=\"{name}\"}}"),
        Duration::from_secs(20),
        |v| v == 0.0,
    );
    writer.stop();
    // What is in S3 verifies and restores.
    let out = site.ok(&["verify", &queued, "--from", name]);
    assert!(out.contains(": ok:"), "{out}");
    let to = site.root.join("from-s3.db");
    site.ok(&[
        "restore",
        &queued,
        "--from",
        name,
        "--to",
        to.to_str().unwrap(),
    ]);
    check_consistent_prefix(&to).unwrap();
    let listed = site.list(true);
    let row = listed.iter().find(|b| b["id"] == queued.as_str()).unwrap();
    assert!(
        row["targets"][name]
            .as_str()
            .unwrap()
            .starts_with("verified"),
        "{row}"
    );
    daemon.stop();
}

#[test]
fn on_change_ships_a_committed_write_to_s3_within_the_rpo() {
    let s3 = S3Server::start();
    s3.create_bucket("wallets");
    let site = s3_site("backup-rpo", &s3, "wallets", s3.secret_key())
        .switch("--on-change")
        .option("--change-delay", "2s");
    let writer = writer_on(
        &site,
        WriterOptions {
            interval: Duration::from_millis(50),
            ..WriterOptions::default()
        },
    );
    writer.wait_committed(5, Duration::from_secs(30));
    let daemon = site.start();
    eventually("a first backup in S3", Duration::from_secs(60), || {
        if s3_ids(&s3, "wallets").is_empty() {
            Err(daemon.stderr())
        } else {
            Ok(())
        }
    });
    // A write committed now is in S3 within 60 s, in a backup that holds it.
    let target = writer.committed() + 1;
    writer.wait_committed(target, Duration::from_secs(10));
    let committed_at = Instant::now();
    let before = s3_ids(&s3, "wallets");
    let id = eventually(
        "a backup holding the write in S3",
        Duration::from_secs(60),
        || {
            let new: Vec<String> = s3_ids(&s3, "wallets")
                .into_iter()
                .filter(|i| !before.contains(i))
                .collect();
            match new.last() {
                Some(id) => Ok(id.clone()),
                None => Err(daemon.stderr()),
            }
        },
    );
    let rpo = committed_at.elapsed();
    assert!(rpo < Duration::from_secs(60), "{rpo:?}");
    writer.stop();
    daemon.stop();
    let k = restored_prefix(&site, &id);
    assert!(
        k >= target,
        "{id} holds {k} transactions, the write was {target}"
    );
    eprintln!(
        "on-change: committed write in S3 after {:.1} s",
        rpo.as_secs_f64()
    );
}

#[test]
fn rsync_over_ssh_ships_lists_verifies_and_restores() {
    let mut sshd = Sshd::start();
    let dest = format!(
        "rsync:{}:{}?ssh={}",
        sshd.user_at_host(),
        sshd.remote_dir().display(),
        sshd.ssh_command().replace(' ', "+")
    );
    let site = Site::new("backup-rsync").option("--target", &dest);
    let writer = writer_on(&site, WriterOptions::default());
    writer.wait_committed(20, Duration::from_secs(30));
    let out = site.ok(&["now"]);
    let id = site.ids().pop().unwrap();
    assert!(out.contains(&format!("shipped {id}")), "{out}");
    assert!(sshd
        .remote_dir()
        .join(format!("{id}.manifest.json"))
        .exists());
    let name = format!(
        "rsync:{}:{}",
        sshd.user_at_host(),
        sshd.remote_dir().display()
    );
    let out = site.ok(&["verify", &id, "--from", &name]);
    assert!(out.contains(": ok:"), "{out}");
    // The backup server goes away: the upload is queued, a `run` ships it
    // when the server is back.
    sshd.stop();
    let f = site.run(&["now"]);
    assert_eq!(f.code, Some(1), "{f:?}");
    let queued = site.ids().pop().unwrap();
    sshd.start_again();
    let site = site.option("--interval", "1h");
    let daemon = site.start();
    eventually(
        "the queued backup at the rsync target",
        Duration::from_secs(60),
        || {
            if sshd
                .remote_dir()
                .join(format!("{queued}.manifest.json"))
                .exists()
            {
                Ok(())
            } else {
                Err(daemon.stderr())
            }
        },
    );
    daemon.stop();
    writer.stop();
    let to = site.root.join("from-rsync.db");
    site.ok(&[
        "restore",
        &queued,
        "--from",
        &name,
        "--to",
        to.to_str().unwrap(),
    ]);
    check_consistent_prefix(&to).unwrap();
    // A key the server does not know is a clear refusal.
    let stranger = site.root.join("stranger_key");
    bsv_p2p_tests::sshd::keygen(&stranger, "stranger");
    let bad = format!(
        "rsync:{}:{}?ssh={}",
        sshd.user_at_host(),
        sshd.remote_dir().display(),
        sshd.ssh_command_with_key(&stranger).replace(' ', "+")
    );
    let site = Site::new("backup-rsync-key").option("--target", &bad);
    std::fs::write(site.home.join("config.json"), "{}").unwrap();
    let home = site.home.clone();
    let site = site
        .option("--file", home.join("config.json"))
        .option("--db", home.join("none.db"));
    let f = site.run(&["now"]);
    assert_eq!(f.code, Some(1));
    assert!(f.stdout.contains("Permission denied"), "{}", f.stdout);
}

#[test]
fn a_relay_restored_on_a_fresh_data_directory_keeps_its_peer_id_and_serves_bots() {
    let relay = Relay::start(serde_json::json!({ "mode": "relay" }));
    let peer_id = relay.peer_id().to_string();
    let config_path = relay.data_dir().parent().unwrap().join("config.json");
    let config_text = std::fs::read_to_string(&config_path).unwrap();
    let site = Site::new("backup-relay")
        .option("--relay-socket", relay.socket())
        .option("--db", "/nonexistent/none.db");
    let f = site.run(&["now"]);
    assert_eq!(f.code, Some(1), "the missing database is reported: {f:?}");
    let id = site.ids().pop().unwrap();
    let m: Value = serde_json::from_slice(
        &std::fs::read(site.dir.join(format!("{id}.manifest.json"))).unwrap(),
    )
    .unwrap();
    let parts = m["parts"].as_array().unwrap();
    let snap = parts
        .iter()
        .find(|p| p["kind"] == "relay-snapshot")
        .expect("the relay's snapshot");
    assert_eq!(snap["relay"]["peerId"], peer_id.as_str());
    assert!(
        parts.iter().any(
            |p| p["kind"] == "relay-config" && p["source"] == config_path.display().to_string()
        ),
        "{parts:?}"
    );
    drop(relay);
    // A new machine: an empty directory.
    let fresh = ScratchDir::new("relay-restored");
    let data = fresh.join("data");
    let new_config = fresh.join("config.json");
    let out = site.ok(&[
        "restore-relay",
        &id,
        "--data-dir",
        data.to_str().unwrap(),
        "--config-to",
        new_config.to_str().unwrap(),
    ]);
    assert!(out.contains(&peer_id), "{out}");
    assert_eq!(std::fs::read_to_string(&new_config).unwrap(), config_text);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(data.join("identity.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // Restoring again over a different identity needs --force.
    let config: Value = serde_json::from_str(&config_text).unwrap();
    let restored = Relay::start_with(RelayOptions::new(config).dir(fresh));
    assert_eq!(restored.peer_id().to_string(), peer_id);
    let f = site.run(&[
        "restore-relay",
        &id,
        "--data-dir",
        restored.data_dir().to_str().unwrap(),
    ]);
    assert_eq!(f.code, Some(1));
    assert!(f.stderr.contains("is running"), "{}", f.stderr);
    let bot = Bot::start(BotOptions::new(restored.tcp_addr()));
    let addrs = bot.wait_reserved(Duration::from_secs(30));
    assert!(addrs.iter().any(|a| a.contains(&peer_id)), "{addrs:?}");
}

#[test]
fn the_daemon_reports_its_figures_and_bad_input_is_refused_with_the_source_named() {
    let site = Site::new("backup-figures");
    std::fs::write(site.home.join("config.json"), "{}").unwrap();
    let writer = writer_on(&site, WriterOptions::default());
    writer.wait_committed(5, Duration::from_secs(30));
    let remote = site.root.join("remote");
    std::fs::create_dir(&remote).unwrap();
    let site = site.option("--target", &remote).option("--interval", "1h");
    let daemon = site.start();
    let target = format!("dir:{}", remote.display());
    daemon.wait_metric(
        &format!("bsv_p2p_backup_target_shipped_total{{target=\"{target}\"}}"),
        Duration::from_secs(60),
        |v| v >= 1.0,
    );
    let page = daemon.metrics_page();
    for family in [
        "bsv_p2p_backup_backups_total 1",
        "bsv_p2p_backup_last_backup_timestamp_seconds",
        &format!(
            "bsv_p2p_backup_source_last_success_timestamp_seconds{{source=\"{}\"}}",
            site.wallet().display()
        ),
        &format!("bsv_p2p_backup_target_last_success_timestamp_seconds{{target=\"{target}\"}}"),
        &format!("bsv_p2p_backup_target_queue_length{{target=\"{target}\"}} 0"),
        &format!("bsv_p2p_backup_target_shipped_bytes_total{{target=\"{target}\"}}"),
        "bsv_p2p_backup_source_failures_total",
    ] {
        assert!(page.contains(family), "{family} missing from\n{page}");
    }
    let promtool = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -s http://127.0.0.1:{}/metrics | promtool check metrics",
            daemon.metrics_port
        ))
        .output()
        .unwrap();
    assert!(
        promtool.status.success(),
        "{}",
        String::from_utf8_lossy(&promtool.stderr)
    );
    assert_eq!(
        bsv_p2p_tests::health::http(daemon.metrics_port, "GET", "/health", &[])
            .unwrap()
            .code,
        200
    );
    // A second daemon on the same state is refused, the first goes on.
    let f = site.run_with(&["--metrics-bind", "off"], &["run"]);
    assert_eq!(f.code, Some(1));
    assert!(
        f.stderr.contains("another bsv-p2p-backup daemon"),
        "{}",
        f.stderr
    );
    // `now` beside the daemon leaves the shipping to it.
    let out = site.ok(&["now"]);
    assert!(out.contains("the running daemon ships it"), "{out}");
    let id = site.ids().pop().unwrap();
    eventually(
        "the daemon ships what `now` wrote",
        Duration::from_secs(30),
        || {
            if remote.join(format!("{id}.manifest.json")).exists() {
                Ok(())
            } else {
                Err(daemon.stderr())
            }
        },
    );
    assert_eq!(daemon.stop(), Some(0));
    writer.stop();
    // Bad input names its source and exits 2.
    for (extra, needle) in [
        (vec!["--interval", "soon"], "--interval"),
        (vec!["--target", "ftp://x"], "--target"),
        (vec!["--keep-last", "-3"], "--keep-last"),
        (vec!["--recipient", "age1bad"], "age1bad"),
    ] {
        let f = site.run_with(&extra, &["now"]);
        assert_eq!(f.code, Some(2), "{extra:?}: {f:?}");
        assert!(f.stderr.contains(needle), "{extra:?}: {}", f.stderr);
    }
    let config = site.root.join("backup.json");
    std::fs::write(&config, r#"{"targets":[{"type":"s3","bucket":"b","endpoint":"http://127.0.0.1:1","secretKey":"x"}]}"#).unwrap();
    let f = site.run_with(&["--config", config.to_str().unwrap()], &["list"]);
    assert_eq!(f.code, Some(2));
    assert!(
        f.stderr.contains("targets[0]") && f.stderr.contains("secretKey"),
        "{}",
        f.stderr
    );
}

#[test]
fn the_monitoring_kit_alerts_on_backups_and_its_rules_pass_promtool() {
    let kit = bsv_p2p_tests::relay::workspace_dir().join("deploy/monitoring");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(&kit)
            .output()
            .expect("promtool (Debian package prometheus) runs");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rules = std::fs::read_to_string(kit.join("alerts.yml")).unwrap();
    for name in [
        "BsvP2pBackupStale",
        "BsvP2pBackupTargetRefused",
        "BsvP2pBackupTargetFailing",
    ] {
        assert!(rules.contains(name), "{name}");
    }
}
