//! The real `bsv-p2p-relay` binary as a test fixture: started on loopback with
//! a config file and a fresh data directory, its JSON log captured line by line
//! so tests can wait for the events the relay promises, stopped with a signal
//! (and timed), and killed by PID if a test ends without stopping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde_json::Value;

use crate::child::{self, ChildOutput, Wording};
use crate::scratch::ScratchDir;

/// How long the relay gets to log its first listening addresses.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Loopback listeners on free ports: TCP and WebSocket.
pub const LOOPBACK_LISTEN: [&str; 2] = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"];

/// Path of `name` in the workspace's release build (`$CARGO_TARGET_DIR`
/// honoured), whether or not it is built.
pub fn release_bin(name: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
        .join("release")
        .join(name)
}

/// Path of the relay binary: `$BSV_P2P_RELAY_BIN`, else the workspace's
/// release build. Panics with the build command when it is missing.
pub fn relay_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("BSV_P2P_RELAY_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "BSV_P2P_RELAY_BIN={} is not a file",
            bin.display()
        );
        return bin;
    }
    let bin = release_bin("bsv-p2p-relay");
    assert!(
        bin.is_file(),
        "the relay binary {} is missing: run `cargo build --release -p bsv-p2p-relay` first \
         (or point BSV_P2P_RELAY_BIN at a relay binary)",
        bin.display()
    );
    static WARN_STALE: std::sync::Once = std::sync::Once::new();
    WARN_STALE.call_once(|| warn_if_stale(&bin, &workspace_dir().join("relay")));
    bin
}

/// `cargo test -p bsv-p2p-tests` does not rebuild the relay: say so when its
/// sources changed after the binary was built, since tests would run old code.
fn warn_if_stale(bin: &Path, sources: &Path) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(bin) else { return };
    let mut dirs = vec![sources.to_path_buf()];
    // The relay crate is a few dozen files; the bound guards against a link loop.
    for _ in 0..256 {
        let Some(dir) = dirs.pop() else { return };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if modified(&path).is_some_and(|m| m > built) {
                eprintln!(
                    "warning: {} is newer than {}: run `cargo build --release -p bsv-p2p-relay` \
                     to test the current relay",
                    path.display(),
                    bin.display()
                );
                return;
            }
        }
    }
}

/// The cargo workspace this crate belongs to.
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace")
        .to_path_buf()
}

/// Signals that stop the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
    Kill,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
            Signal::Kill => libc::SIGKILL,
        }
    }
}

/// How the relay ended after [`Relay::stop`].
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    pub status: ExitStatus,
    /// From sending the signal to the process being reaped.
    pub elapsed: Duration,
}

/// What to start the relay with.
pub struct RelayOptions {
    /// Written to `config.json` and passed with `--config`.
    pub config: Value,
    /// Passed as `--listen`, one flag each (they replace the config's `listen`).
    pub listen: Vec<String>,
    /// Reuse a directory from an earlier relay (restart); a new one otherwise.
    pub dir: Option<ScratchDir>,
    /// Run inside this network namespace (`ip netns exec`); `None`: the
    /// test's own.
    pub netns: Option<String>,
}

impl RelayOptions {
    pub fn new(config: Value) -> RelayOptions {
        RelayOptions {
            config,
            listen: LOOPBACK_LISTEN.iter().map(|s| s.to_string()).collect(),
            dir: None,
            netns: None,
        }
    }

    pub fn dir(mut self, dir: ScratchDir) -> RelayOptions {
        self.dir = Some(dir);
        self
    }
}

/// A running relay process.
pub struct Relay {
    child: Child,
    pid: u32,
    peer_id: PeerId,
    tcp_addr: Multiaddr,
    ws_addr: Option<Multiaddr>,
    output: ChildOutput,
    dir: Option<ScratchDir>,
    exit: Option<ExitStatus>,
}

impl Relay {
    /// Starts the relay with `config` on loopback TCP and WebSocket ports.
    pub fn start(config: Value) -> Relay {
        Relay::start_with(RelayOptions::new(config))
    }

    pub fn start_with(options: RelayOptions) -> Relay {
        let dir = options.dir.unwrap_or_else(|| ScratchDir::new("relay"));
        let config_path = dir.join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&options.config).expect("config serialises"),
        )
        .expect("write the relay config");
        let data_dir = dir.join("data");

        // `ip netns exec` execs the relay in place: the pid stays the relay's.
        let mut cmd = match &options.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(relay_bin());
                c
            }
            None => Command::new(relay_bin()),
        };
        cmd.arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--log-format", "json"]);
        for addr in &options.listen {
            cmd.args(["--listen", addr]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", relay_bin().display()));
        let pid = child.id();
        let output = ChildOutput::capture(&mut child);

        let mut relay = Relay {
            child,
            pid,
            peer_id: PeerId::random(),
            tcp_addr: Multiaddr::empty(),
            ws_addr: None,
            output,
            dir: Some(dir),
            exit: None,
        };
        relay.await_listening(&options.listen);
        relay
    }

    /// Waits for `relay_started` and one `listening` event per listen address.
    fn await_listening(&mut self, listen: &[String]) {
        let started = self
            .wait_for_event("relay_started", |_| true, START_TIMEOUT)
            .unwrap_or_else(|e| panic!("relay did not start: {e}"));
        let peer = started["peerId"].as_str().unwrap_or_default();
        self.peer_id = peer
            .parse()
            .unwrap_or_else(|e| panic!("relay_started has a bad peerId {peer:?}: {e}"));
        let wants_ws = listen.iter().any(|l| l.ends_with("/ws"));
        let wants_tcp = listen.iter().any(|l| !l.ends_with("/ws"));
        let deadline = Instant::now() + START_TIMEOUT;
        for ws in [false, true] {
            if (ws && !wants_ws) || (!ws && !wants_tcp) {
                continue;
            }
            let event = self
                .wait_for_event(
                    "listening",
                    |e| listening_addr(e).is_some_and(|a| is_ws(&a) == ws),
                    deadline.saturating_duration_since(Instant::now()),
                )
                .unwrap_or_else(|e| panic!("relay is not listening (ws: {ws}): {e}"));
            let addr = listening_addr(&event).expect("matched above");
            assert_eq!(
                addr.iter().last(),
                Some(Protocol::P2p(self.peer_id)),
                "listening address {addr} must end with the relay's /p2p/<peer id>"
            );
            if ws {
                self.ws_addr = Some(addr);
            } else {
                self.tcp_addr = addr;
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The TCP listening address, ending with `/p2p/<relay peer id>`.
    pub fn tcp_addr(&self) -> Multiaddr {
        self.tcp_addr.clone()
    }

    /// The WebSocket listening address, ending with `/p2p/<relay peer id>`.
    pub fn ws_addr(&self) -> Multiaddr {
        self.ws_addr
            .clone()
            .expect("the relay was started without a WebSocket listener")
    }

    /// The data directory given with `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.as_ref().expect("directory kept").join("data")
    }

    /// The full address (with `/p2p/<id>`) the relay logged listening on
    /// that starts with `prefix` (such as `/ip6/::1/`), waiting for it.
    pub fn listen_addr(&self, prefix: &str) -> Multiaddr {
        self.wait_for_event(
            "listening",
            |e| field(e, "address").starts_with(prefix),
            Duration::from_secs(30),
        )
        .map(|e| field(&e, "address").parse().expect("a multiaddr"))
        .unwrap_or_else(|e| panic!("the relay does not listen on {prefix}: {e}"))
    }

    /// The control socket in the data directory.
    pub fn socket(&self) -> PathBuf {
        self.data_dir().join("relay.sock")
    }

    /// Runs `bsv-p2p-ctl --json ARGS...` against this relay; the JSON it printed.
    pub fn ctl(&self, args: &[&str]) -> Value {
        crate::ctl::json(&self.socket(), args)
    }

    /// Every log line so far, parsed (lines that are not JSON appear as
    /// `{"event":"unparsed","line":...}`).
    pub fn events(&self) -> Vec<Value> {
        self.output.events()
    }

    /// Index of the next log line, to wait only for what comes after it.
    pub fn mark(&self) -> usize {
        self.output.mark()
    }

    /// Events of `kind` so far that satisfy `pred`.
    pub fn events_of(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.output.events_of(kind, pred)
    }

    pub fn stderr(&self) -> String {
        self.output.stderr()
    }

    /// Waits for an event of `kind` satisfying `pred`, seen at any time since start.
    pub fn wait_for_event(
        &self,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, String> {
        self.wait_for_event_after(0, kind, pred, timeout)
    }

    /// Waits for an event of `kind` satisfying `pred` at index `mark` or later.
    pub fn wait_for_event_after(
        &self,
        mark: usize,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, String> {
        let wording = Wording {
            ended: "the relay closed its log",
            prefix: "",
        };
        self.output
            .wait_for_event(mark, kind, pred, timeout, wording)
    }

    /// Sends `signal` and waits up to `timeout` for the process to exit.
    pub fn stop(&mut self, signal: Signal, timeout: Duration) -> Result<Stopped, String> {
        if let Some(status) = self.exit {
            return Err(format!("the relay had already exited: {status}"));
        }
        let started = Instant::now();
        self.signal(signal);
        match self.reap(timeout)? {
            Some((status, seen)) => Ok(Stopped {
                status,
                elapsed: seen - started,
            }),
            None => Err(format!(
                "the relay did not exit within {timeout:?} of {signal:?}; killed it"
            )),
        }
    }

    /// Waits up to `timeout` for the relay to exit by itself (after a
    /// `shutdown` request, say); kills it and fails after that.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        self.reap(timeout)?
            .map(|(status, _)| status)
            .ok_or_else(|| format!("the relay did not exit within {timeout:?}; killed it"))
    }

    /// Waits up to `timeout` for the process to exit and reaps it: its
    /// status and when the exit was seen; `None` when it was still running
    /// and is killed now.
    fn reap(&mut self, timeout: Duration) -> Result<Option<(ExitStatus, Instant)>, String> {
        match child::wait_exit(&mut self.child, timeout, Duration::from_millis(10)) {
            Ok(Some(status)) => {
                let seen = Instant::now();
                self.exit = Some(status);
                self.join_readers();
                Ok(Some((status, seen)))
            }
            Ok(None) => {
                self.kill();
                Ok(None)
            }
            Err(e) => Err(format!("cannot wait for the relay: {e}")),
        }
    }

    /// Stops the relay (if running) and hands its directory over for a restart.
    pub fn into_dir(mut self) -> ScratchDir {
        if self.exit.is_none() {
            self.kill();
        }
        self.dir.take().expect("directory kept")
    }

    /// Resource use of the relay process right now.
    pub fn usage(&self) -> Option<crate::procfs::Usage> {
        crate::procfs::usage(self.pid)
    }

    /// Sends `signal` and returns at once (see [`Relay::stop`] to wait).
    pub fn signal(&self, signal: Signal) {
        // The pid is our own child's, not yet reaped, so it cannot have been reused.
        let pid = libc::pid_t::try_from(self.pid).expect("pid fits pid_t");
        // SAFETY: kill(2) with a valid signal number has no memory effects.
        unsafe {
            libc::kill(pid, signal.number());
        }
    }

    fn kill(&mut self) {
        if self.exit.is_some() {
            return;
        }
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
        self.join_readers();
    }

    fn join_readers(&mut self) {
        self.output.join();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

fn listening_addr(event: &Value) -> Option<Multiaddr> {
    event["address"].as_str()?.parse().ok()
}

fn is_ws(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Ws(_)))
}

/// A field of an event as a string ("" when absent).
pub fn field<'a>(event: &'a Value, key: &str) -> &'a str {
    event[key].as_str().unwrap_or_default()
}

pub use crate::child::Finished;

/// Runs the relay binary with `args` until it exits; kills it and fails
/// after `timeout` (a relay that keeps running was expected to stop).
pub fn run_to_exit<I, S>(args: I, timeout: Duration) -> Result<Finished, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = Command::new(relay_bin());
    command.args(args);
    child::run_to_exit(command, timeout)
}
