//! The backup sidecar as the tests drive it: a [`Site`] is one bot host's
//! worth of paths (a home with `.bsv-p2p`, the backup directory, the state
//! directory) and the options every command of that site gets; one-shot
//! commands run to their exit ([`Site::run`]), the daemon runs as a
//! [`Daemon`] with its `/metrics` on a free port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::child::{ChildOutput, Finished};
use crate::health::{eventually, http, samples};
use crate::relay::release_bin;
use crate::scratch::ScratchDir;

pub fn backup_bin() -> PathBuf {
    release_bin("bsv-p2p-backup")
}

/// One host's backup setup.
pub struct Site {
    pub root: ScratchDir,
    /// `$HOME/.bsv-p2p`, where the wallet and config files live.
    pub home: PathBuf,
    pub dir: PathBuf,
    pub state: PathBuf,
    /// Options before the command, beside --dir and --state-dir.
    pub options: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Site {
    /// A new site whose wallet is `$HOME/.bsv-p2p/wallet.db`.
    pub fn new(label: &str) -> Site {
        let root = ScratchDir::new(label);
        let home = root.join("home/.bsv-p2p");
        std::fs::create_dir_all(&home).expect("the home directory");
        Site {
            dir: root.join("home/.bsv-p2p/backups"),
            state: root.join("home/.bsv-p2p/backup-state"),
            home,
            root,
            options: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn wallet(&self) -> PathBuf {
        self.home.join("wallet.db")
    }

    pub fn option(mut self, option: &str, value: impl AsRef<std::ffi::OsStr>) -> Site {
        self.options.push(option.to_string());
        self.options
            .push(value.as_ref().to_string_lossy().into_owned());
        self
    }

    pub fn switch(mut self, option: &str) -> Site {
        self.options.push(option.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Site {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    fn command(&self, extra: &[&str], args: &[&str]) -> Command {
        let mut c = Command::new(backup_bin());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root.join("home"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--dir")
            .arg(&self.dir)
            .arg("--state-dir")
            .arg(&self.state)
            .args(&self.options)
            .args(extra)
            .args(args);
        c
    }

    /// Runs a one-shot command (`now`, `list`, …) to its exit.
    pub fn run(&self, args: &[&str]) -> Finished {
        self.run_with(&[], args)
    }

    /// Runs a command with more options before it.
    pub fn run_with(&self, extra: &[&str], args: &[&str]) -> Finished {
        crate::child::run_to_exit(self.command(extra, args), Duration::from_secs(600))
            .unwrap_or_else(|e| panic!("bsv-p2p-backup {args:?}: {e}"))
    }

    /// Runs a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let f = self.run(args);
        assert_eq!(
            f.code,
            Some(0),
            "bsv-p2p-backup {args:?} failed\nstdout: {}\nstderr: {}",
            f.stdout,
            f.stderr
        );
        f.stdout
    }

    /// Starts a command without waiting (to kill it mid-way).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(&[], args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bsv-p2p-backup starts")
    }

    /// `list --json` (local only unless `remote`).
    pub fn list(&self, remote: bool) -> Vec<Value> {
        let args: &[&str] = if remote {
            &["list", "--json"]
        } else {
            &["list", "--local", "--json"]
        };
        let f = self.run(args);
        serde_json::from_str(&f.stdout).unwrap_or_else(|e| {
            panic!(
                "list --json: {e}\nstdout: {}\nstderr: {}",
                f.stdout, f.stderr
            )
        })
    }

    /// The IDs of the complete local backups, oldest first.
    pub fn ids(&self) -> Vec<String> {
        self.list(false)
            .iter()
            .map(|b| b["id"].as_str().expect("an id").to_string())
            .collect()
    }

    /// Starts `run` with `/metrics` on a free port.
    pub fn start(&self) -> Daemon {
        let port = crate::prometheus::free_port().expect("a free port");
        let bind = format!("127.0.0.1:{port}");
        let mut child = self
            .command(&["--metrics-bind", &bind], &["run"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bsv-p2p-backup run starts");
        let output = ChildOutput::capture(&mut child);
        let daemon = Daemon {
            child,
            output,
            metrics_port: port,
        };
        eventually(
            "the backup daemon's /metrics",
            Duration::from_secs(20),
            || {
                http(port, "GET", "/metrics", &[])
                    .map(|_| ())
                    .map_err(|e| format!("{e}; stderr: {}", daemon.stderr()))
            },
        );
        daemon
    }
}

/// How `bsv-p2p-backup run` ended after SIGTERM.
#[derive(Debug)]
pub struct Stopped {
    pub code: Option<i32>,
    /// From SIGTERM to the exit.
    pub took: Duration,
    pub stderr: String,
}

/// A running `bsv-p2p-backup run`.
pub struct Daemon {
    child: Child,
    output: ChildOutput,
    pub metrics_port: u16,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.output.stderr()
    }

    pub fn metrics_page(&self) -> String {
        let answer = http(self.metrics_port, "GET", "/metrics", &[])
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        assert_eq!(answer.code, 200, "{answer:?}");
        answer.body
    }

    pub fn metric(&self, series: &str) -> Option<f64> {
        samples(&self.metrics_page())
            .into_iter()
            .find(|(n, _)| n == series)
            .map(|(_, v)| v)
    }

    /// Waits until `series` satisfies `pred`; its last value.
    pub fn wait_metric(&self, series: &str, timeout: Duration, pred: impl Fn(f64) -> bool) -> f64 {
        eventually(&format!("{series} as expected"), timeout, || {
            match self.metric(series) {
                Some(v) if pred(v) => Ok(v),
                other => Err(format!("{series} = {other:?}; stderr: {}", self.stderr())),
            }
        })
    }

    /// Waits until the daemon's log has `text`.
    pub fn wait_log(&self, text: &str, timeout: Duration) {
        eventually(&format!("{text:?} in the daemon's log"), timeout, || {
            let log = self.stderr();
            if log.contains(text) {
                Ok(())
            } else {
                Err(log)
            }
        })
    }

    /// SIGTERM and at most Docker's stop timeout (10 s); the exit code.
    pub fn stop(self) -> Option<i32> {
        self.stop_within(Duration::from_secs(10)).code
    }

    /// SIGTERM; panics when the daemon is still running after `limit`.
    pub fn stop_within(mut self, limit: Duration) -> Stopped {
        let sent = Instant::now();
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let took = sent.elapsed();
                // The log's last line ("stopped ...") once the pipe is read.
                let log_end = Instant::now() + Duration::from_secs(2);
                while !self.stderr().contains("stopped") && Instant::now() < log_end {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Stopped {
                    code: status.code(),
                    took,
                    stderr: self.stderr(),
                };
            }
            if sent.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "bsv-p2p-backup run did not stop within {limit:?} of SIGTERM: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file in `dir` whose name does not start with '.', sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
