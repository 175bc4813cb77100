//! The log shipper as a fixture: the real `bsv-p2p-logship` binary pointed
//! at a relay's control socket, its standard output read as JSON lines (the
//! `--stdout` destination), its standard error kept, its `/metrics` read.
//! Killed when dropped; [`Logship::kill`] hands back its state directory so
//! a test can start it again where it stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::child::ChildOutput;
use crate::health::{eventually, http, samples};
use crate::prometheus::free_port;
use crate::relay::release_bin;
use crate::ScratchDir;

pub const START_TIMEOUT: Duration = Duration::from_secs(20);

pub fn logship_bin() -> PathBuf {
    release_bin("bsv-p2p-logship")
}

/// A running `bsv-p2p-logship`.
pub struct Logship {
    child: Child,
    output: ChildOutput,
    state: Option<ScratchDir>,
    pub metrics_port: u16,
}

impl Logship {
    /// Started for the relay at `socket` with `args` (its destinations and
    /// options), a new state directory and `/metrics` on a free port.
    pub fn start(socket: &Path, args: &[&str]) -> Logship {
        Logship::start_in(ScratchDir::new("logship"), socket, args)
    }

    /// Started with the state directory of an earlier run.
    pub fn start_in(state: ScratchDir, socket: &Path, args: &[&str]) -> Logship {
        let metrics_port = free_port().expect("a free port");
        let mut child = Command::new(logship_bin())
            .arg("--socket")
            .arg(socket)
            .arg("--state-dir")
            .arg(state.path())
            .args(["--metrics-bind", &format!("127.0.0.1:{metrics_port}")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", logship_bin().display()));
        let output = ChildOutput::capture(&mut child);
        let mut logship = Logship {
            child,
            output,
            state: Some(state),
            metrics_port,
        };
        eventually("the log shipper serves /health", START_TIMEOUT, || {
            if let Some(status) = logship.child.try_wait().map_err(|e| e.to_string())? {
                panic!("bsv-p2p-logship exited with {status}: {}", logship.stderr());
            }
            match http(metrics_port, "GET", "/health", &[]) {
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        });
        logship
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed on standard output so far, parsed.
    pub fn lines(&self) -> Vec<Value> {
        self.output.events()
    }

    pub fn stderr(&self) -> String {
        self.output.stderr()
    }

    /// SIGKILL, then the state directory for a restart.
    pub fn kill(mut self) -> ScratchDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.state.take().expect("the state directory")
    }

    /// SIGTERM, waits for the exit (bounded), then the state directory.
    pub fn stop(mut self) -> (std::process::ExitStatus, ScratchDir) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "bsv-p2p-logship did not stop within 10 s of SIGTERM: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.state.take().expect("the state directory"))
    }

    /// `/metrics` as `name{labels}` -> value.
    pub fn metrics(&self) -> Vec<(String, f64)> {
        let answer = http(self.metrics_port, "GET", "/metrics", &[])
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        assert_eq!(answer.code, 200, "{answer:?}");
        samples(&answer.body)
    }

    /// One series' value, e.g.
    /// `bsv_p2p_logship_rejected_total{destination="otlp-logs"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
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
}

impl Drop for Logship {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay config whose request rate lets one peer make thousands of
/// events a second (the default allows 10 requests a second per peer).
pub fn busy_relay_config() -> Value {
    serde_json::json!({
        "mode": "relay",
        "relay": { "requests": { "perSecond": 100000, "burst": 1000000 } }
    })
}

/// Makes the relay journal `n` events quickly: one peer reserves, then
/// renews `n - 1` times, 16 requests at a time (one `reservation_created`,
/// then `reservation_renewed` each). The relay must run with
/// [`busy_relay_config`]'s request rate.
pub async fn burst(relay: &crate::Relay, n: usize) {
    use futures::stream::{self, StreamExt};
    let peer = crate::hop::RawPeer::start(crate::hop::RawOptions { accept_stop: false })
        .expect("a raw peer");
    peer.connect(&relay.tcp_addr())
        .await
        .expect("the raw peer connects");
    let relay_id = relay.peer_id();
    let peer = &peer;
    let failures: Vec<String> = stream::iter(0..n)
        .map(|_| async move { peer.reserve_ok(relay_id).await.err() })
        .buffer_unordered(16)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {n} reservations failed, first: {}",
        failures.len(),
        failures[0]
    );
}
