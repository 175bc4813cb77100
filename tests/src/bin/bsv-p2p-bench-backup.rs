//! `bsv-p2p-bench-backup`: what the backup sidecar costs and how fast it
//! is, on a wallet.db prefilled to `--db-mb` MiB that a real better-sqlite3
//! writer (WAL mode) keeps writing at a steady rate, shipping to a real S3
//! server (SeaweedFS on 127.0.0.1).
//!
//! For each gzip level (6, the default, and 1), `--runs` times:
//! - a fresh writer commits one transaction every `--writer-interval-ms`;
//!   after a 1 s pre-roll, `bsv-p2p-backup now` runs; the writer stops
//!   right after, so its longest commit is the longest stall of a window
//!   that is the backup plus the pre-roll (exact when it grew during the
//!   backup, an upper bound otherwise);
//! - the command's wall time, the `took` it prints for writing the archive,
//!   and, from a watcher polling the state and backup directories every
//!   5 ms, when the staged copy appeared, when the archive's temporary file
//!   appeared (copy, integrity_check and sha256 done), when the manifest
//!   appeared (archive written) and when the command exited (shipped);
//! - archive bytes, bytes shipped (its output) and bytes in S3 (listing);
//! - upload MB/s = bytes shipped / (exit − manifest seen);
//! - CPU seconds of the command from getrusage(RUSAGE_CHILDREN) deltas,
//!   and of the S3 server from /proc;
//! - `restore ID --to` from the local directory and `--from` S3, timed,
//!   and the restored database checked to be a consistent prefix of the
//!   writer's transactions that holds every one committed before the
//!   backup began.
//!
//! One `now --no-ship` per level; the writer alone for the same windows
//! (the stall noise floor); outside timings of the phases on the same
//! file (integrity_check, sha256 by OpenSSL and by coreutils, GNU gzip, a
//! curl PUT); and the on-change mode's RPO: `run --on-change` with the
//! writer running, a transaction committed at time T, the seconds until a
//! manifest is in S3 whose backup holds it (verified by restoring it),
//! sampled right after a backup started (the worst phase) and right after
//! one was shipped.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argh::FromArgs;
use bsv_p2p_tests::backup::{Daemon, Site};
use bsv_p2p_tests::procfs;
use bsv_p2p_tests::report::{print, round};
use bsv_p2p_tests::s3::S3Server;
use bsv_p2p_tests::sqlite_writer::{check_consistent_prefix, Writer, WriterOptions};
use serde_json::{json, Map, Value};

const BUCKET: &str = "bench";
const PREFIX: &str = "bsv-p2p-backups";
/// The S3 target's name as `list` shows it (for `restore --from`).
const TARGET_NAME: &str = "s3:bench/bsv-p2p-backups";
const STALL_TARGET_MS: f64 = 50.0;
const RESTORE_TARGET_S: f64 = 10.0;
const RPO_TARGET_S: f64 = 60.0;
const PRE_ROLL: Duration = Duration::from_secs(1);
const MB: f64 = 1e6;

/// Backup sidecar benchmark: backup and restore times, writer stalls, upload MB/s, CPU, on-change RPO.
#[derive(FromArgs)]
struct Args {
    /// prefill wallet.db to about this many MiB (default 200)
    #[argh(option, default = "200")]
    db_mb: u32,
    /// backups per gzip level (default 3)
    #[argh(option, default = "3")]
    runs: usize,
    /// the writer's pause between transactions, in ms (default 10)
    #[argh(option, default = "10")]
    writer_interval_ms: u64,
    /// on-change RPO samples, alternating "backup running" and "just shipped" (default 4)
    #[argh(option, default = "4")]
    rpo_samples: usize,
    /// print only the final JSON object
    #[argh(switch)]
    json_only: bool,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1000.0, 1)
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

/// A JSON number, or null for NaN (no value).
fn num(x: f64, places: i32) -> Value {
    if x.is_finite() {
        json!(round(x, places))
    } else {
        Value::Null
    }
}

/// A byte count as a JSON integer, or null.
fn int(x: f64) -> Value {
    if x.is_finite() {
        json!(x.round() as u64)
    } else {
        Value::Null
    }
}

/// User and system CPU seconds of the children this process has reaped.
fn children_cpu() -> (f64, f64) {
    // SAFETY: getrusage writes into the struct we pass; zeroed is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage for the call's duration.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    if rc != 0 {
        return (f64::NAN, f64::NAN);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

fn process_cpu(pid: u32) -> f64 {
    procfs::usage(pid).map_or(f64::NAN, |u| u.cpu_seconds)
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_mib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024);
    json!({
        "cores": cores,
        "cpu_model": model,
        "mem_mib": mem_mib,
        "loadavg_start": loadavg(),
    })
}

/// `NAME-YYYYMMDD-HHMMSS` (UTC) of `t`, as the sidecar names backups.
fn id_at(name: &str, t: SystemTime) -> String {
    let s = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((s / 86400) as i64);
    let s = s % 86400;
    format!(
        "{name}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// What `now` printed.
#[derive(Debug, Default)]
struct NowOutput {
    id: String,
    archive_bytes: u64,
    took_s: f64,
    shipped_bytes: Option<u64>,
}

/// Parses "backup ID written to PATH: N parts, B bytes, in X.X s" and
/// "TARGET: shipped ID (N bytes)".
fn parse_now(stdout: &str) -> Result<NowOutput, String> {
    let mut out = NowOutput::default();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("backup ") {
            let id = rest.split_whitespace().next().unwrap_or_default();
            out.id = id.to_string();
            let (_, tail) = rest
                .rsplit_once(": ")
                .ok_or_else(|| format!("unexpected line {line:?}"))?;
            for field in tail.split(", ") {
                if let Some(b) = field.strip_suffix(" bytes") {
                    out.archive_bytes = b.trim().parse().map_err(|e| format!("{line:?}: {e}"))?;
                } else if let Some(t) = field.strip_prefix("in ") {
                    out.took_s = t
                        .trim_end_matches(" s")
                        .trim()
                        .parse()
                        .map_err(|e| format!("{line:?}: {e}"))?;
                }
            }
        } else if let Some((_, rest)) = line.split_once(": shipped ") {
            let bytes = rest
                .split_once(" (")
                .and_then(|(_, b)| b.strip_suffix(" bytes)"))
                .and_then(|b| b.parse::<u64>().ok())
                .ok_or_else(|| format!("unexpected line {line:?}"))?;
            if rest.starts_with(&out.id) {
                out.shipped_bytes = Some(bytes);
            }
        }
    }
    if out.id.is_empty() {
        return Err(format!("no \"backup ... written\" line in {stdout:?}"));
    }
    Ok(out)
}

/// When the watcher first saw each step of a `now`, from its start.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// staging/ID/wallet.db: the copy began.
    copy: Option<Duration>,
    /// `.ID.tar.gz.tmp-PID`: copy, integrity_check and sha256 done.
    archive_tmp: Option<Duration>,
    /// `ID.tar.gz`: gzip, sha256 and fsync done.
    archive: Option<Duration>,
    /// `ID.manifest.json`: the backup is complete.
    manifest: Option<Duration>,
    /// When the writer's longest commit grew, and to what (its progress
    /// lines come every 250 ms: a stall is seen up to 250 ms late).
    rises: Vec<(Duration, Duration)>,
}

fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the backup and staging directories, and the writer's longest
/// commit so far, every 5 ms until `stop` (files in `before` were there
/// already).
fn watch(
    site: &Site,
    before: &BTreeSet<String>,
    started: Instant,
    stop: &AtomicBool,
    writer: &Writer,
) -> Seen {
    let dir = &site.dir;
    let staging = site.state.join("staging");
    let mut seen = Seen::default();
    let mut stall = writer.max_stall();
    loop {
        let last = stop.load(Ordering::Relaxed);
        let at = started.elapsed();
        if seen.copy.is_none()
            && names(&staging)
                .iter()
                .any(|id| !names(&staging.join(id)).is_empty())
        {
            seen.copy = Some(at);
        }
        for name in names(dir).into_iter().filter(|n| !before.contains(n)) {
            let slot = if name.starts_with('.') {
                if name.contains(".tar.gz.tmp-") {
                    &mut seen.archive_tmp
                } else {
                    continue;
                }
            } else if name.ends_with(".tar.gz") {
                &mut seen.archive
            } else if name.ends_with(".manifest.json") {
                &mut seen.manifest
            } else {
                continue;
            };
            slot.get_or_insert(at);
        }
        let now = writer.max_stall();
        if now > stall {
            stall = now;
            seen.rises.push((at, now));
        }
        if last {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Seen {
    /// Which step the command was in at `at` (as the watcher saw it).
    fn phase(&self, at: Duration, wall: Duration) -> &'static str {
        let after = |t: Option<Duration>| t.is_some_and(|t| at >= t);
        if at >= wall {
            "after exit"
        } else if after(self.manifest) {
            "ship"
        } else if after(self.archive) {
            "manifest"
        } else if after(self.archive_tmp) {
            "archive"
        } else if after(self.copy) {
            "copy_check_sha"
        } else {
            "startup"
        }
    }
}

struct Bench {
    args: Args,
    s3: S3Server,
    site: Site,
    interval: Duration,
}

impl Bench {
    fn writer_options(&self, fill_mb: u32) -> WriterOptions {
        WriterOptions {
            interval: self.interval,
            fill_mb,
            ..WriterOptions::default()
        }
    }

    fn say(&self, name: &str, fields: Value) {
        if !self.args.json_only {
            if let Value::Object(map) = fields {
                print(name, map, false);
            }
        }
    }

    /// The IDs of complete backups in S3 (manifests), sorted.
    fn s3_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .s3
            .list(BUCKET, &format!("{PREFIX}/"))
            .into_iter()
            .filter_map(|(k, _)| {
                k.strip_prefix(&format!("{PREFIX}/"))?
                    .strip_suffix(".manifest.json")
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        ids
    }

    /// Bytes in S3 of one backup's archive and manifest.
    fn s3_bytes(&self, id: &str) -> (Option<u64>, Option<u64>) {
        let listing = self.s3.list(BUCKET, &format!("{PREFIX}/{id}."));
        let size = |suffix: &str| {
            listing
                .iter()
                .find(|(k, _)| k == &format!("{PREFIX}/{id}{suffix}"))
                .map(|(_, s)| *s)
        };
        (size(".tar.gz"), size(".manifest.json"))
    }

    /// Restores `id` to a new file, timed; checks the copy is a consistent
    /// prefix; removes it. (seconds, cpu seconds, transactions held).
    fn restore(&self, id: &str, from_s3: bool) -> Result<(f64, f64, u64), String> {
        let to = self.site.root.join(&format!(
            "restored-{id}-{}.db",
            if from_s3 { "s3" } else { "local" }
        ));
        let to_text = to.to_string_lossy().into_owned();
        let mut args = vec!["restore", id, "--to", to_text.as_str()];
        if from_s3 {
            args.extend(["--from", TARGET_NAME]);
        }
        let (u0, s0) = children_cpu();
        let t = Instant::now();
        let f = self.site.run(&args);
        let took = secs(t.elapsed());
        let (u1, s1) = children_cpu();
        if f.code != Some(0) {
            return Err(format!(
                "restore {id} (from {}): exit {:?}\nstdout: {}\nstderr: {}",
                if from_s3 { TARGET_NAME } else { "local" },
                f.code,
                f.stdout,
                f.stderr
            ));
        }
        let k = check_consistent_prefix(&to);
        for suffix in ["", "-wal", "-shm"] {
            let mut p = to.clone().into_os_string();
            p.push(suffix);
            let _ = fs::remove_file(PathBuf::from(p));
        }
        Ok((took, (u1 - u0) + (s1 - s0), k?))
    }

    /// One `now` (or `now --no-ship`) with a fresh writer around it.
    fn backup_run(&self, level: u32, ship: bool) -> Result<Map<String, Value>, String> {
        let writer = Writer::start(&self.site.wallet(), self.writer_options(0));
        std::thread::sleep(PRE_ROLL);
        let pre = writer.latest();
        let level_text = level.to_string();
        let command: &[&str] = if ship {
            &["now"]
        } else {
            &["now", "--no-ship"]
        };
        let weed0 = process_cpu(self.s3.pid());
        let (u0, s0) = children_cpu();
        let started = Instant::now();
        let before: BTreeSet<String> = names(&self.site.dir).into_iter().collect();
        let stop = AtomicBool::new(false);
        let (f, wall, seen) = std::thread::scope(|scope| {
            let watcher = scope.spawn(|| watch(&self.site, &before, started, &stop, &writer));
            let f = self.site.run_with(&["--compression", &level_text], command);
            let wall = started.elapsed();
            stop.store(true, Ordering::Relaxed);
            (f, wall, watcher.join().unwrap_or_default())
        });
        let (u1, s1) = children_cpu();
        let weed_cpu = process_cpu(self.s3.pid()) - weed0;
        let summary = writer
            .try_stop()
            .map_err(|e| format!("the writer during the backup: {e}"))?;
        if f.code != Some(0) {
            return Err(format!(
                "bsv-p2p-backup {command:?}: exit {:?}\nstdout: {}\nstderr: {}",
                f.code, f.stdout, f.stderr
            ));
        }
        let out = parse_now(&f.stdout)?;
        let cpu = (u1 - u0) + (s1 - s0);
        let phase = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) if b >= a => secs(b - a),
            _ => f64::NAN,
        };
        let copy_check_s = phase(seen.copy, seen.archive_tmp);
        let archive_s = phase(seen.archive_tmp, seen.manifest);
        let ship_s = phase(seen.manifest, Some(wall));
        let mut fields = Map::new();
        fields.insert("compression".into(), level.into());
        fields.insert("ship".into(), ship.into());
        fields.insert("id".into(), out.id.clone().into());
        fields.insert("wall_s".into(), num(secs(wall), 3));
        fields.insert("took_s".into(), num(out.took_s, 1));
        fields.insert("startup_s".into(), num(seen.copy.map_or(f64::NAN, secs), 3));
        fields.insert("copy_check_sha_s".into(), num(copy_check_s, 3));
        fields.insert("archive_s".into(), num(archive_s, 3));
        fields.insert("archive_bytes".into(), out.archive_bytes.into());
        fields.insert(
            "ratio".into(),
            num(out.archive_bytes as f64 / db_bytes(&self.site.wallet()), 4),
        );
        fields.insert("cpu_s".into(), num(cpu, 2));
        fields.insert("cpu_user_s".into(), num(u1 - u0, 2));
        fields.insert("cpu_sys_s".into(), num(s1 - s0, 2));
        if ship {
            let shipped = out
                .shipped_bytes
                .ok_or_else(|| format!("no \"shipped {}\" line in {:?}", out.id, f.stdout))?;
            let (s3_archive, s3_manifest) = self.s3_bytes(&out.id);
            fields.insert("ship_s".into(), num(ship_s, 3));
            fields.insert("wall_minus_took_s".into(), num(secs(wall) - out.took_s, 2));
            fields.insert("shipped_bytes".into(), shipped.into());
            fields.insert(
                "s3_bytes".into(),
                match (s3_archive, s3_manifest) {
                    (Some(a), Some(m)) => (a + m).into(),
                    _ => Value::Null,
                },
            );
            fields.insert(
                "upload_mb_per_s".into(),
                num(shipped as f64 / MB / ship_s, 1),
            );
            fields.insert("s3_server_cpu_s".into(), num(weed_cpu, 2));
        }
        fields.insert("stall_max_ms".into(), ms(summary.max_stall).into());
        fields.insert(
            "stall_exact".into(),
            (summary.max_stall > pre.max_stall).into(),
        );
        fields.insert("preroll_max_ms".into(), ms(pre.max_stall).into());
        // Stalls over 20 ms: when seen, how long, in which step.
        let rises: Vec<String> = seen
            .rises
            .iter()
            .filter(|(_, d)| *d > Duration::from_millis(20))
            .map(|(at, d)| format!("{:.2}s:{}ms:{}", secs(*at), ms(*d), seen.phase(*at, wall)))
            .collect();
        fields.insert("stall_rises".into(), rises.join(",").into());
        fields.insert("stall_p99_ms".into(), ms(summary.p99_stall).into());
        fields.insert("writer_tx_per_s".into(), num(summary.tx_per_sec, 1));
        fields.insert("writer_committed_before".into(), pre.committed.into());
        fields.insert("writer_committed_after".into(), summary.committed.into());
        if ship {
            for (key, from_s3) in [("restore_local", false), ("restore_s3", true)] {
                let (t, cpu, k) = self.restore(&out.id, from_s3)?;
                if k < pre.committed || k > summary.committed {
                    return Err(format!(
                        "{}: restored {k} transactions, expected {}..={}",
                        out.id, pre.committed, summary.committed
                    ));
                }
                fields.insert(format!("{key}_s"), num(t, 3));
                fields.insert(format!("{key}_cpu_s"), num(cpu, 2));
            }
        } else {
            // Not shipped: out of the way of the next `now` and of `run`.
            for f in [
                format!("{}.tar.gz", out.id),
                format!("{}.manifest.json", out.id),
            ] {
                let _ = fs::remove_file(self.site.dir.join(f));
            }
        }
        Ok(fields)
    }

    /// The writer alone for `window`: the stall noise floor.
    fn baseline(&self, window: Duration) -> Result<Map<String, Value>, String> {
        let writer = Writer::start(&self.site.wallet(), self.writer_options(0));
        std::thread::sleep(PRE_ROLL);
        let pre = writer.latest();
        std::thread::sleep(window);
        let s = writer.try_stop()?;
        let mut fields = Map::new();
        fields.insert("window_s".into(), num(secs(window), 1));
        fields.insert("stall_max_ms".into(), ms(s.max_stall).into());
        fields.insert("preroll_max_ms".into(), ms(pre.max_stall).into());
        fields.insert("stall_p99_ms".into(), ms(s.p99_stall).into());
        fields.insert("writer_tx_per_s".into(), num(s.tx_per_sec, 1));
        Ok(fields)
    }

    /// The phases timed from outside on the wallet itself (writer stopped,
    /// page cache warm): what each step costs alone.
    fn outside_phases(&self, archive: Option<PathBuf>) -> Result<Map<String, Value>, String> {
        let wallet = self.site.wallet();
        let bytes = db_bytes(&wallet);
        let mut fields = Map::new();
        let rate = |s: f64| num(bytes / MB / s, 1);

        let t = Instant::now();
        {
            use std::io::Read;
            let mut f = fs::File::open(&wallet).map_err(|e| format!("{e}"))?;
            let mut buf = vec![0u8; 1 << 20];
            while f.read(&mut buf).map_err(|e| format!("{e}"))? > 0 {}
        }
        let s = secs(t.elapsed());
        fields.insert("read_s".into(), num(s, 3));
        fields.insert("read_mb_per_s".into(), rate(s));

        let t = Instant::now();
        let conn = rusqlite::Connection::open_with_flags(
            &wallet,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("{}: {e}", wallet.display()))?;
        let integrity: String = conn
            .query_row("PRAGMA integrity_check(100)", [], |r| r.get(0))
            .map_err(|e| format!("integrity_check: {e}"))?;
        drop(conn);
        let s = secs(t.elapsed());
        if integrity != "ok" {
            return Err(format!("integrity_check of the wallet: {integrity}"));
        }
        fields.insert("integrity_check_s".into(), num(s, 3));
        fields.insert("integrity_check_mb_per_s".into(), rate(s));

        let timed = |program: &str, args: &[&str]| -> Result<f64, String> {
            let t = Instant::now();
            let status = Command::new(program)
                .args(args)
                .arg(&wallet)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .status()
                .map_err(|e| format!("{program}: {e}"))?;
            if !status.success() {
                return Err(format!("{program} {args:?}: {status}"));
            }
            Ok(secs(t.elapsed()))
        };
        // OpenSSL uses the SHA extensions as the sidecar's sha2 does;
        // coreutils' sha256sum does not.
        let s = timed("openssl", &["dgst", "-sha256"])?;
        fields.insert("openssl_sha256_s".into(), num(s, 3));
        fields.insert("openssl_sha256_mb_per_s".into(), rate(s));
        let s = timed("sha256sum", &[])?;
        fields.insert("coreutils_sha256sum_s".into(), num(s, 3));
        for level in ["6", "1"] {
            let s = timed("gzip", &["-c", &format!("-{level}")])?;
            fields.insert(format!("gnu_gzip{level}_s"), num(s, 3));
            fields.insert(format!("gnu_gzip{level}_mb_per_s"), rate(s));
        }
        if let Some(archive) = archive {
            // The same archive PUT by curl: what the S3 server takes.
            let data = fs::read(&archive).map_err(|e| format!("{}: {e}", archive.display()))?;
            let key = format!(
                "reference/{}",
                fs::metadata(&archive).map_or(0, |m| m.len())
            );
            let t = Instant::now();
            self.s3.put(BUCKET, &key, &data);
            let s = secs(t.elapsed());
            self.s3.delete(BUCKET, &key);
            fields.insert("curl_put_bytes".into(), data.len().into());
            fields.insert("curl_put_s".into(), num(s, 3));
            fields.insert(
                "curl_put_mb_per_s".into(),
                num(data.len() as f64 / MB / s, 1),
            );
        }
        Ok(fields)
    }

    /// The on-change mode's RPO with the writer running throughout.
    fn rpo(self) -> Result<Map<String, Value>, String> {
        let writer = Writer::start(&self.site.wallet(), self.writer_options(0));
        let site = self.site.switch("--on-change");
        let daemon = site.start();
        let started = |d: &Daemon| d.stderr().matches("backing up (").count();
        let bench = Bench {
            args: self.args,
            s3: self.s3,
            site,
            interval: self.interval,
        };
        let mut known: BTreeSet<String> = bench.s3_ids().into_iter().collect();
        struct Sample {
            phase: &'static str,
            tx: u64,
            arrivals: Vec<(String, Duration)>,
        }
        let mut samples: Vec<Sample> = Vec::new();
        let mut failure: Option<String> = None;
        'samples: for i in 0..bench.args.rpo_samples {
            let phase = if i % 2 == 0 {
                "backup_running"
            } else {
                "just_shipped"
            };
            if phase == "backup_running" {
                // T just after the daemon's snapshot began: the backup
                // running now cannot hold it, the next one must.
                let n = started(&daemon);
                let deadline = Instant::now() + Duration::from_secs(180);
                while started(&daemon) <= n {
                    if Instant::now() > deadline {
                        failure = Some(format!(
                            "no backup started within 180 s: {}",
                            daemon.stderr()
                        ));
                        break 'samples;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            // The writer reports every 250 ms: tx was committed at most
            // that long before T.
            let tx = writer.committed();
            let t = Instant::now();
            let stamp = id_at("wallet", SystemTime::now());
            let mut arrivals: Vec<(String, Duration)> = Vec::new();
            loop {
                for id in bench.s3_ids() {
                    if known.insert(id.clone()) {
                        arrivals.push((id, t.elapsed()));
                    }
                }
                // A backup whose ID (its start, to the second) is after T
                // copied the database after T: it holds tx.
                if arrivals.iter().any(|(id, _)| id.as_str() > stamp.as_str()) {
                    break;
                }
                if t.elapsed() > Duration::from_secs(240) {
                    failure = Some(format!(
                        "no backup started after T in S3 within 240 s: {}",
                        daemon.stderr()
                    ));
                    break 'samples;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            bench.say(
                "rpo_sample",
                json!({"phase": phase, "tx": tx,
                       "arrivals": arrivals.iter().map(|(id, at)| format!("{id}@{:.1}s", secs(*at))).collect::<Vec<_>>().join(",")}),
            );
            samples.push(Sample {
                phase,
                tx,
                arrivals,
            });
        }
        let stderr = daemon.stderr();
        let summary = writer.try_stop();
        let code = daemon.stop();
        if let Some(f) = failure {
            return Err(f);
        }
        let summary = summary.map_err(|e| format!("the writer during run --on-change: {e}"))?;
        // Which backup first held each sample's transaction, by restoring.
        let mut out = Vec::new();
        let mut rpos = Vec::new();
        for s in &samples {
            let mut found = None;
            for (id, at) in &s.arrivals {
                let (_, _, k) = bench.restore(id, false)?;
                if k >= s.tx {
                    found = Some((id.clone(), *at, k));
                    break;
                }
            }
            let (id, at, k) = found.ok_or_else(|| {
                format!(
                    "no backup of {:?} holds tx {}",
                    s.arrivals.iter().map(|a| &a.0).collect::<Vec<_>>(),
                    s.tx
                )
            })?;
            rpos.push(secs(at));
            out.push(json!({
                "phase": s.phase,
                "tx": s.tx,
                "backup": id,
                "holds": k,
                "rpo_s": num(secs(at), 1),
            }));
        }
        // The daemon's own "ID written: N parts, B bytes, in X s" lines.
        let took: Vec<f64> = stderr
            .lines()
            .filter(|l| l.contains(" written: "))
            .filter_map(|l| l.rsplit_once(" in ")?.1.strip_suffix(" s")?.parse().ok())
            .collect();
        let by_phase = |p: &str| -> Vec<f64> {
            out.iter()
                .zip(&rpos)
                .filter(|(o, _)| o["phase"] == p)
                .map(|(_, r)| *r)
                .collect()
        };
        let mut fields = Map::new();
        fields.insert(
            "mode".into(),
            "run --on-change, change delay 5s and max delay 20s (defaults)".into(),
        );
        fields.insert("samples".into(), Value::Array(out.clone()));
        fields.insert("rpo_max_s".into(), num(max(&rpos), 1));
        fields.insert("rpo_median_s".into(), num(median(&rpos), 1));
        fields.insert(
            "rpo_backup_running_max_s".into(),
            num(max(&by_phase("backup_running")), 1),
        );
        fields.insert(
            "rpo_just_shipped_max_s".into(),
            num(max(&by_phase("just_shipped")), 1),
        );
        fields.insert(
            "daemon_backups_took_s".into(),
            took.iter().map(|t| json!(t)).collect::<Vec<_>>().into(),
        );
        fields.insert("daemon_exit".into(), json!(code));
        fields.insert("writer_stall_max_ms".into(), ms(summary.max_stall).into());
        fields.insert("writer_stall_p99_ms".into(), ms(summary.p99_stall).into());
        fields.insert("writer_tx_per_s".into(), num(summary.tx_per_sec, 1));
        Ok(fields)
    }
}

/// The database's size in bytes.
fn db_bytes(path: &Path) -> f64 {
    fs::metadata(path).map_or(f64::NAN, |m| m.len() as f64)
}

fn field(runs: &[Map<String, Value>], key: &str) -> Vec<f64> {
    runs.iter().filter_map(|r| r.get(key)?.as_f64()).collect()
}

/// Medians of the per-run figures, and the maxima that targets judge.
fn level_summary(level: u32, runs: &[Map<String, Value>], no_ship: Map<String, Value>) -> Value {
    let m = |key: &str, places: i32| num(median(&field(runs, key)), places);
    json!({
        "compression": level,
        "median": {
            "wall_s": m("wall_s", 2),
            "took_s": m("took_s", 1),
            "startup_s": m("startup_s", 3),
            "copy_check_sha_s": m("copy_check_sha_s", 2),
            "archive_s": m("archive_s", 2),
            "ship_s": m("ship_s", 2),
            "archive_bytes": int(median(&field(runs, "archive_bytes"))),
            "shipped_bytes": int(median(&field(runs, "shipped_bytes"))),
            "s3_bytes": int(median(&field(runs, "s3_bytes"))),
            "upload_mb_per_s": m("upload_mb_per_s", 1),
            "cpu_s": m("cpu_s", 2),
            "s3_server_cpu_s": m("s3_server_cpu_s", 2),
            "stall_max_ms": m("stall_max_ms", 1),
            "restore_local_s": m("restore_local_s", 2),
            "restore_s3_s": m("restore_s3_s", 2),
            "restore_local_cpu_s": m("restore_local_cpu_s", 2),
            "restore_s3_cpu_s": m("restore_s3_cpu_s", 2),
        },
        "max": {
            "stall_max_ms": num(max(&field(runs, "stall_max_ms")), 1),
            "restore_local_s": num(max(&field(runs, "restore_local_s")), 2),
            "restore_s3_s": num(max(&field(runs, "restore_s3_s")), 2),
        },
        "runs": runs,
        "no_ship": no_ship,
    })
}

fn run(args: Args) -> Result<Value, String> {
    let mut machine = machine();
    let interval = Duration::from_millis(args.writer_interval_ms);
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET);
    let site = Site::new("bench-backup")
        .option(
            "--target",
            format!(
                "s3://{BUCKET}/{PREFIX}?endpoint={}&region={}",
                s3.endpoint(),
                s3.region()
            ),
        )
        .env("AWS_ACCESS_KEY_ID", s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", s3.secret_key());
    let bench = Bench {
        args,
        s3,
        site,
        interval,
    };

    // The prefill, by the writer itself.
    let t = Instant::now();
    let writer = Writer::start(&bench.site.wallet(), bench.writer_options(bench.args.db_mb));
    let fill = writer.fill();
    let started = writer.started();
    writer.try_stop()?;
    let db = json!({
        "fill_mb": bench.args.db_mb,
        "fill_s": num(secs(t.elapsed()), 1),
        "db_bytes": fill.as_ref().map(|f| f.db_bytes),
        "file_bytes": int(db_bytes(&bench.site.wallet())),
        "fill_rows_64kib": fill.as_ref().map(|f| f.rows),
        "content": "random 64 KiB blobs (incompressible) plus the writer's rows",
    });
    bench.say("db", db.clone());
    let writer_facts = json!({
        "interval_ms": bench.args.writer_interval_ms,
        "rows_per_tx": WriterOptions::default().rows_per_tx,
        "payload_bytes": WriterOptions::default().payload_bytes,
        "journal_mode": started["journalMode"],
        "synchronous": started["synchronous"],
        "sqlite": started["sqlite"],
        "better_sqlite3": started["betterSqlite3"],
        "node": started["node"],
    });

    let mut levels = Vec::new();
    let mut all_runs: Vec<Map<String, Value>> = Vec::new();
    let mut baselines: Vec<Map<String, Value>> = Vec::new();
    for level in [6u32, 1] {
        let mut runs = Vec::new();
        for i in 0..bench.args.runs.max(1) {
            let fields = bench.backup_run(level, true)?;
            let mut line = fields.clone();
            line.insert("run".into(), (i + 1).into());
            bench.say("backup", Value::Object(line));
            // The writer alone, as long as the backup took: the noise floor.
            if level == 6 {
                let window = Duration::from_secs_f64(
                    fields["wall_s"].as_f64().unwrap_or(10.0).clamp(1.0, 120.0),
                );
                let b = bench.baseline(window)?;
                bench.say("baseline", Value::Object(b.clone()));
                baselines.push(b);
            }
            runs.push(fields);
        }
        let no_ship = bench.backup_run(level, false)?;
        bench.say("no_ship", Value::Object(no_ship.clone()));
        all_runs.extend(runs.iter().cloned());
        levels.push(level_summary(level, &runs, no_ship));
    }

    let newest = bench
        .site
        .ids()
        .pop()
        .map(|id| bench.site.dir.join(format!("{id}.tar.gz")));
    let outside = bench.outside_phases(newest)?;
    bench.say("outside_phases", Value::Object(outside.clone()));

    let json_only = bench.args.json_only;
    let rpo = bench.rpo()?;
    if !json_only {
        print("rpo", rpo.clone(), false);
    }

    let stall = max(&field(&all_runs, "stall_max_ms"));
    let restore = max(&[
        max(&field(&all_runs, "restore_local_s")),
        max(&field(&all_runs, "restore_s3_s")),
    ]);
    let rpo_max = rpo["rpo_max_s"].as_f64().unwrap_or(f64::NAN);
    let targets = json!({
        "stall_max_ms": num(stall, 1),
        "stall_target_ms": STALL_TARGET_MS,
        "stall_pass": stall < STALL_TARGET_MS,
        "restore_max_s": num(restore, 2),
        "restore_target_s": RESTORE_TARGET_S,
        "restore_pass": restore < RESTORE_TARGET_S,
        "rpo_max_s": num(rpo_max, 1),
        "rpo_target_s": RPO_TARGET_S,
        "rpo_pass": rpo_max < RPO_TARGET_S,
    });
    machine["loadavg_end"] = loadavg().into();
    let baseline_stalls = field(&baselines, "stall_max_ms");
    Ok(json!({
        "bench": "backup",
        "machine": machine,
        "db": db,
        "writer": writer_facts,
        "s3": "SeaweedFS on 127.0.0.1 (tests/s3), SigV4 checked",
        "methods": {
            "stall": "a fresh writer per backup, 1 s pre-roll, stopped right after the command: stall_max_ms is its longest commit (exact when it exceeds preroll_max_ms, an upper bound otherwise)",
            "phases": "a watcher polls the backup and state dirs every 5 ms: startup = spawn to staged copy; copy_check_sha = staged copy to the archive's .tmp file (online backup API copy, fsync, integrity_check, sha256); archive = .tmp to manifest (tar, gzip, sha256, fsync); ship = manifest to exit (PUT archive and manifest, retention listing)",
            "upload": "upload_mb_per_s = shipped bytes (the command's \"shipped\" line) / ship_s",
            "cpu": "getrusage(RUSAGE_CHILDREN) user+sys deltas around each command",
            "rpo": "T = a committed transaction (as reported, at most 250 ms old); the time until a manifest is in S3 whose backup holds it, verified by restoring it and check_consistent_prefix",
        },
        "baseline_stall": {
            "windows": baselines,
            "stall_max_ms": num(max(&baseline_stalls), 1),
            "stall_median_ms": num(median(&baseline_stalls), 1),
        },
        "levels": levels,
        "outside_phases": outside,
        "rpo": rpo,
        "targets": targets,
        "pass": stall < STALL_TARGET_MS && restore < RESTORE_TARGET_S && rpo_max < RPO_TARGET_S,
    }))
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let json_only = args.json_only;
    match run(args) {
        Ok(result) => {
            if !json_only {
                if let Some(t) = result["targets"].as_object() {
                    print("targets", t.clone(), false);
                }
            }
            println!("{result}");
            if result["pass"] == true {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
