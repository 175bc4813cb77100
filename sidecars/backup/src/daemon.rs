//! `run`: the scheduler thread (interval, on-change, local retention, new
//! backups found in the directory), one shipper thread per target, and the
//! figures server. All file and network work runs on these threads; the
//! async runtime serves only HTTP.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bsv_p2p_proto::Backoff;

use crate::config::BackupConfig;
use crate::metrics::Figures;
use crate::queue::Queue;
use crate::target::{ErrorKind, Target};
use crate::{backup, id, repo, ship, sqlite};

/// How often the directory is read for backups `now` wrote.
const RESCAN: Duration = Duration::from_secs(2);
/// How often on-change mode looks at the databases.
const POLL: Duration = Duration::from_millis(500);
/// After a failed backup, the next try waits this long.
const RETRY_FAILED_BACKUP: Duration = Duration::from_secs(60);
/// Local retention also runs this often when no backup is taken.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// A wake-up call with a timeout, and the stop flag.
pub struct Signal {
    woken: Mutex<bool>,
    cond: Condvar,
    pub stop: Arc<AtomicBool>,
}

impl Signal {
    pub fn new(stop: Arc<AtomicBool>) -> Self {
        Signal {
            woken: Mutex::new(false),
            cond: Condvar::new(),
            stop,
        }
    }

    pub fn wake(&self) {
        *self.woken.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cond.notify_all();
    }

    /// Waits until woken, stopped or `timeout`. Returns false once stopped.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.woken.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |w| !*w && !self.stop.load(Ordering::SeqCst))
            .unwrap_or_else(|p| p.into_inner());
        *guard = false;
        !self.stop.load(Ordering::SeqCst)
    }
}

pub struct Daemon {
    pub config: Arc<BackupConfig>,
    pub queue: Arc<Queue>,
    pub figures: Arc<Figures>,
    pub targets: Vec<(String, Arc<dyn Target>, Arc<Signal>)>,
    pub stop: Arc<AtomicBool>,
    pub scheduler: Arc<Signal>,
    /// What is under way, for the log line of a stop that does not wait.
    pub busy: Busy,
}

/// A backup being taken, uploads being sent: work that a stop abandons
/// rather than waits for.
#[derive(Default)]
pub struct Busy {
    backing_up: AtomicBool,
    uploading: AtomicUsize,
}

impl Busy {
    /// "a backup", "2 uploads", ... or None when idle.
    pub fn describe(&self) -> Option<String> {
        let mut what = Vec::new();
        if self.backing_up.load(Ordering::SeqCst) {
            what.push("a backup being taken".to_string());
        }
        match self.uploading.load(Ordering::SeqCst) {
            0 => {}
            1 => what.push("an upload".to_string()),
            n => what.push(format!("{n} uploads")),
        }
        (!what.is_empty()).then(|| what.join(" and "))
    }
}

impl Daemon {
    /// Starts the threads; returns their handles.
    pub fn start(self: Arc<Self>) -> Vec<std::thread::JoinHandle<()>> {
        let mut handles = Vec::new();
        for (name, target, signal) in &self.targets {
            let (d, name, target, signal) =
                (self.clone(), name.clone(), target.clone(), signal.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("ship {name}"))
                    .spawn(move || d.shipper(&name, target.as_ref(), &signal))
                    .expect("a thread"),
            );
        }
        let d = self.clone();
        handles.push(
            std::thread::Builder::new()
                .name("scheduler".into())
                .spawn(move || d.scheduler())
                .expect("a thread"),
        );
        handles
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn save_figures(&self) {
        for (k, v) in self.figures.saved() {
            let _ = self.queue.set_figure(&k, v);
        }
    }

    /// Queues every complete local backup not yet queued or shipped, and
    /// wakes the shippers that got work.
    fn enqueue_local(&self) {
        let Ok(backups) = repo::list(&self.config.dir, &self.config.name) else {
            return;
        };
        for (name, _, signal) in &self.targets {
            let mut added = false;
            for b in backups.iter().filter(|b| b.manifest.is_ok()) {
                match self.queue.enqueue(name, &b.id) {
                    Ok(true) => added = true,
                    Ok(false) => {}
                    Err(e) => log::error!("the upload queue: {e}"),
                }
            }
            if added {
                signal.wake();
            }
        }
        if let Some(oldest) = backups.first() {
            let _ = self.queue.forget_shipped_before(&oldest.id);
        }
    }

    fn local_retention(&self) {
        let _lock = match repo::lock(&self.config.dir, Duration::from_secs(600)) {
            Ok(l) => l,
            Err(e) => return log::warn!("retention skipped: {e}"),
        };
        let marks = repo::read_marks(&self.config.state_dir, "local");
        let names: Vec<String> = self.targets.iter().map(|(n, _, _)| n.clone()).collect();
        let keep = |id: &str| {
            names
                .iter()
                .any(|n| self.queue.is_pending(n, id).unwrap_or(true))
        };
        match repo::apply_retention(
            &self.config.dir,
            &self.config.name,
            &self.config.retention,
            &marks,
            &keep,
        ) {
            Ok(deleted) => {
                for id in &deleted {
                    log::info!(
                        "retention ({}): deleted {id}",
                        self.config.retention.describe()
                    );
                }
                let n =
                    repo::list(&self.config.dir, &self.config.name).map_or(0, |l| l.len() as u64);
                self.figures.set_local(n, deleted.len() as u64);
            }
            Err(e) => log::error!("retention: {e}"),
        }
    }

    fn scheduler(&self) {
        let c = &self.config;
        let newest = repo::list(&c.dir, &c.name)
            .ok()
            .and_then(|l| l.last().map(|b| b.taken));
        let mut last_backup = newest;
        let changed_since = |t: Option<SystemTime>| {
            c.databases.iter().any(|db| {
                [db.clone(), wal_of(db)].iter().any(|p| {
                    std::fs::metadata(p)
                        .and_then(|m| m.modified())
                        .is_ok_and(|m| t.is_none_or(|t| m > t))
                })
            })
        };
        let fingerprint = || {
            c.databases
                .iter()
                .map(|db| sqlite::fingerprint(db))
                .collect::<Vec<_>>()
        };
        let mut seen = fingerprint();
        // A write since the newest backup counts as a change now.
        let mut first_change = (c.on_change && changed_since(newest)).then(Instant::now);
        let mut last_change = first_change.unwrap_or_else(Instant::now);
        let mut retry_at: Option<Instant> = None;
        let mut last_rescan = Instant::now() - RESCAN;
        let mut last_retention = Instant::now();
        self.local_retention();
        loop {
            if self.stopped() {
                break;
            }
            let now = Instant::now();
            if now.duration_since(last_rescan) >= RESCAN {
                self.enqueue_local();
                last_rescan = now;
            }
            if c.on_change {
                let fp = fingerprint();
                if fp != seen {
                    seen = fp;
                    last_change = now;
                    first_change.get_or_insert(now);
                }
            }
            let interval_due = c.interval.is_some_and(|iv| {
                last_backup
                    .is_none_or(|t| SystemTime::now().duration_since(t).unwrap_or_default() >= iv)
            });
            let change_due = first_change.is_some_and(|first| {
                now.duration_since(last_change) >= c.change_delay
                    || now.duration_since(first) >= c.change_max_delay
            });
            let may = retry_at.is_none_or(|r| now >= r);
            if may && (interval_due || change_due) {
                // Writes from here on are a change after this backup; one
                // committed while it runs counts from its start, so the next
                // backup follows at once when the maximum delay has passed.
                seen = fingerprint();
                first_change = None;
                let began = Instant::now();
                let why = if change_due {
                    "a database changed"
                } else {
                    "the schedule"
                };
                log::info!("backing up ({why})");
                self.busy.backing_up.store(true, Ordering::SeqCst);
                let taken = backup::take(c, &self.figures);
                self.busy.backing_up.store(false, Ordering::SeqCst);
                match taken {
                    Ok(outcome) => {
                        log::info!(
                            "{} written: {} parts, {} bytes, in {:.1} s",
                            outcome.manifest.id,
                            outcome.manifest.parts.len(),
                            outcome.manifest.archive.bytes,
                            outcome.took.as_secs_f64()
                        );
                        last_backup =
                            id::parse(&c.name, &outcome.manifest.id).or(Some(SystemTime::now()));
                        retry_at = None;
                        self.enqueue_local();
                        self.local_retention();
                        last_retention = Instant::now();
                    }
                    Err(e) => {
                        log::error!("backup failed: {e}");
                        self.figures.backup_failed(&e);
                        retry_at = Some(Instant::now() + RETRY_FAILED_BACKUP);
                    }
                }
                self.save_figures();
                if c.on_change {
                    let fp = fingerprint();
                    if fp != seen {
                        seen = fp;
                        first_change = Some(began);
                        last_change = Instant::now();
                    }
                }
            }
            if now.duration_since(last_retention) >= RETENTION_EVERY {
                self.local_retention();
                last_retention = now;
            }
            let nap = if c.on_change { POLL } else { RESCAN };
            if !self.scheduler.wait(nap) {
                break;
            }
        }
    }

    fn shipper(&self, name: &str, target: &dyn Target, signal: &Signal) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let marks_place = name.to_string();
        loop {
            if self.stopped() {
                return;
            }
            let pending = match self.queue.pending(name) {
                Ok(p) => p,
                Err(e) => {
                    log::error!("{name}: the upload queue: {e}");
                    if !signal.wait(Duration::from_secs(10)) {
                        return;
                    }
                    continue;
                }
            };
            self.figures
                .target(name, |t| t.queued = pending.len() as u64);
            let Some((id, _)) = pending.first().cloned() else {
                if !signal.wait(Duration::from_secs(30)) {
                    return;
                }
                continue;
            };
            let path = self.config.dir.join(id::manifest_file(&id));
            let manifest = match crate::archive::read_manifest(&path) {
                Ok(m) => m,
                Err(e) => {
                    log::warn!(
                        "{name}: {id} is no longer in the backup directory, not shipped: {e}"
                    );
                    let _ = self.queue.drop_pending(name, &id);
                    continue;
                }
            };
            let started = Instant::now();
            self.busy.uploading.fetch_add(1, Ordering::SeqCst);
            let shipped = ship::ship(target, &self.config.dir, &manifest);
            self.busy.uploading.fetch_sub(1, Ordering::SeqCst);
            match shipped {
                Ok(bytes) => {
                    let _ = self.queue.shipped(name, &id, bytes);
                    log::info!(
                        "{name}: shipped {id} ({bytes} bytes in {:.1} s)",
                        started.elapsed().as_secs_f64()
                    );
                    self.figures.target(name, |t| {
                        t.shipped += 1;
                        t.shipped_bytes += bytes;
                        t.last_success_ms = crate::queue::now_ms();
                        t.failing = None;
                        t.queued = t.queued.saturating_sub(1);
                    });
                    backoff.reset();
                    let marks = repo::read_marks(&self.config.state_dir, &marks_place);
                    match ship::retention_at(
                        target,
                        &self.config.name,
                        &self.config.retention,
                        &marks,
                    ) {
                        Ok(deleted) => {
                            for d in &deleted {
                                log::info!("{name}: retention deleted {d}");
                            }
                            self.figures
                                .target(name, |t| t.deleted += deleted.len() as u64);
                        }
                        Err(e) => {
                            log::warn!("{name}: retention: {e}");
                            self.figures.target(name, |t| t.failures += 1);
                        }
                    }
                    self.save_figures();
                }
                Err(e) if e.kind == ErrorKind::Refused => {
                    log::error!(
                        "{name}: {e}; uploads to {name} are stopped until this is fixed and the sidecar restarted ({} waiting)",
                        pending.len()
                    );
                    let _ = self.queue.failed(name, &id, &e.message);
                    self.figures.target(name, |t| {
                        t.failures += 1;
                        t.refused = Some(e.message.clone());
                    });
                    while signal.wait(Duration::from_secs(3600)) {}
                    return;
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    log::warn!(
                        "{name}: {e}; trying {id} again in {:.1} s",
                        wait.as_secs_f64()
                    );
                    let _ = self.queue.failed(name, &id, &e.message);
                    self.figures.target(name, |t| {
                        t.failures += 1;
                        t.failing = Some(e.message.clone());
                    });
                    let until = Instant::now() + wait;
                    while Instant::now() < until {
                        if !signal.wait(until.saturating_duration_since(Instant::now())) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

pub fn wal_of(db: &std::path::Path) -> std::path::PathBuf {
    let mut p = db.as_os_str().to_os_string();
    p.push("-wal");
    p.into()
}
