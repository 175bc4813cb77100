//! `bsv-p2p-backup`: the bot's wallet database, its config files and the
//! relay's identity, backed up while they are in use, checked, kept by
//! retention rules, shipped to a directory, S3 or rsync over ssh, and
//! restored only after a restore copy passed every check.
//!
//! Layers: [`sqlite`] copies a live database; [`backup`] takes one backup
//! of every source into [`archive`]s (tar.gz, optionally age-encrypted,
//! with a sha256 manifest); [`repo`] is the local directory; [`ship`] and
//! [`target`] put backups elsewhere, through the persistent [`queue`];
//! [`retention`] decides what to keep; [`daemon`] runs it all on a
//! schedule; [`commands`] are the one-shot commands.
//!
//! Its own messages go to standard error; command results to standard
//! output. Exit codes: 0 success (or stopped by SIGINT/SIGTERM); 1 the
//! command failed (a backup could not be written, a source was left out,
//! an upload failed, a check found a problem); 2 bad command line,
//! environment or config file.

mod archive;
mod backup;
mod commands;
mod config;
mod daemon;
mod id;
mod metrics;
mod queue;
mod repo;
mod retention;
mod ship;
mod sqlite;
mod target;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bsv_p2p_proto::cli::EXIT_USAGE;

use config::{Args, BackupConfig, Command};

/// How long `run` waits, once asked to stop, for a backup or upload under
/// way before it exits without it (well inside Docker's 10 s stop timeout).
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What wakes `run`'s main thread.
enum Wake {
    /// SIGINT or SIGTERM.
    Stop,
    /// Every daemon thread has ended.
    Done,
}

const EXIT_FAILED: u8 = 1;

/// The sidecar's own log lines, on standard error.
static LOG: bsv_p2p_proto::cli::StderrLog = bsv_p2p_proto::cli::StderrLog {
    target: "bsv_p2p_backup",
};

fn main() -> ExitCode {
    let args: Args = match bsv_p2p_proto::cli::parse_args("bsv-p2p-backup") {
        Ok(args) => args,
        Err(code) => return code,
    };
    if args.version {
        println!("bsv-p2p-backup {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let Some(command) = &args.command else {
        eprintln!("bsv-p2p-backup: a command is needed: run, now, list, verify, restore, restore-relay or keygen\nRun bsv-p2p-backup --help for usage.");
        return ExitCode::from(EXIT_USAGE);
    };
    if let Command::Keygen(k) = command {
        return finish(commands::keygen(&k.out));
    }
    let env = |k: &str| std::env::var(k).ok();
    let config = match BackupConfig::resolve(&args, &env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bsv-p2p-backup: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    bsv_p2p_proto::cli::log_to_stderr(&LOG, config.log_level);
    finish(match command {
        Command::Run(_) => run(config, &env),
        Command::Now(a) => commands::now(&config, a, &env),
        Command::List(a) => commands::list(&config, a, &env),
        Command::Verify(a) => commands::verify(&config, a, &env),
        Command::Restore(a) => commands::restore(&config, a, &env),
        Command::RestoreRelay(a) => commands::restore_relay(&config, a, &env),
        Command::Keygen(_) => unreachable!("handled above"),
    })
}

fn finish(result: Result<bool, String>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILED),
        Err(e) => {
            eprintln!("bsv-p2p-backup: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn run(config: BackupConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<bool, String> {
    repo::ensure_dir(&config.dir)?;
    repo::ensure_dir(&config.state_dir)?;
    let queue = match queue::Queue::open(&config.state_dir) {
        Ok(q) => Arc::new(q),
        Err(queue::OpenError::Busy) => {
            return Err(format!(
                "{}: another bsv-p2p-backup daemon runs on this state directory",
                config.state_dir.display()
            ))
        }
        Err(queue::OpenError::Other(e)) => return Err(e),
    };
    let figures = Arc::new(metrics::Figures::new(config.interval));
    if let Ok(saved) = queue.figures() {
        figures.restore(&saved);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut targets = Vec::new();
    for spec in &config.targets {
        let target: Arc<dyn target::Target> = Arc::from(spec.build(env)?);
        let signal = Arc::new(daemon::Signal::new(stop.clone()));
        figures.target(&spec.name, |_| {});
        targets.push((spec.name.clone(), target, signal));
    }
    let listener = match config.metrics_bind {
        Some(addr) => Some(
            async_std::task::block_on(async_std::net::TcpListener::bind(addr))
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?,
        ),
        None => None,
    };
    let scheduler = Arc::new(daemon::Signal::new(stop.clone()));
    let d = Arc::new(daemon::Daemon {
        config: Arc::new(config),
        queue,
        figures: figures.clone(),
        targets,
        stop: stop.clone(),
        scheduler,
        busy: daemon::Busy::default(),
    });
    // The main thread hears of a stop (SIGINT/SIGTERM) and of the daemon's
    // threads ending here.
    let (wake_tx, wake_rx) = std::sync::mpsc::channel::<Wake>();
    let wake_all = {
        let d = d.clone();
        let wake_tx = wake_tx.clone();
        move || {
            let _ = wake_tx.send(Wake::Stop);
            d.stop.store(true, Ordering::SeqCst);
            d.scheduler.wake();
            for (_, _, s) in &d.targets {
                s.wake();
            }
        }
    };
    ctrlc::set_handler(wake_all).map_err(|e| format!("cannot handle SIGINT/SIGTERM: {e}"))?;
    log::info!(
        "running: {} database(s), {} file(s){}, schedule {}{}, retention {}, {} target(s)",
        d.config.databases.len(),
        d.config.files.len(),
        if d.config.relay_socket.is_some() {
            ", the relay"
        } else {
            ""
        },
        d.config.interval.map_or("off".to_string(), |i| format!(
            "every {}",
            humantime::format_duration(i)
        )),
        if d.config.on_change {
            " and on change"
        } else {
            ""
        },
        d.config.retention.describe(),
        d.targets.len()
    );
    let handles = d.clone().start();
    if let Some(listener) = listener {
        let figures = figures.clone();
        async_std::task::spawn(async move {
            let e = metrics::serve(listener, figures).await;
            log::error!("{e}");
        });
    }
    std::thread::Builder::new()
        .name("join".into())
        .spawn(move || {
            for h in handles {
                let _ = h.join();
            }
            let _ = wake_tx.send(Wake::Done);
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    // Threads end only once stopped. A backup or an upload under way is
    // given STOP_GRACE and then abandoned: neither counts before its last
    // step (a backup's manifest, an upload's queue entry), so what is left
    // is cleaned up or sent again at the next start, as after a SIGKILL.
    if let Ok(Wake::Stop) = wake_rx.recv() {
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match wake_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Wake::Stop) => {}
                Ok(Wake::Done) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    log::warn!(
                        "stopped without waiting for {}: a backup is written again and an upload sent again at the next start",
                        d.busy.describe().unwrap_or_else(|| "the work under way".into())
                    );
                    return Ok(true);
                }
            }
        }
    }
    log::info!("stopped");
    Ok(true)
}
