//! A js-libp2p 3.x bot (`tests/js/bot.mjs`) as a test fixture: started with
//! the Node 22 that `tests/js/install.sh` installs, driven by JSON commands on
//! its stdin, watched through the JSON events on its stdout. See
//! `tests/js/README.md` for the bot's commands and events.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use serde_json::{json, Value};

use crate::child::{self, ChildOutput, Wording};
use crate::relay::workspace_dir;

/// How long a bot gets to start and dial its relay.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The Node 22 binary `tests/js/install.sh` puts under `tests/js/node_modules`.
/// Panics (the tests fail, they are not skipped) when it is missing.
pub fn node_bin() -> PathBuf {
    let js = js_dir();
    let node = js.join("node_modules/node/bin/node");
    assert!(
        node.is_file(),
        "{} is missing: run tests/js/install.sh (scripts/test does) to install Node 22 and js-libp2p",
        node.display()
    );
    assert!(
        js.join("node_modules/libp2p/package.json").is_file(),
        "js-libp2p is not installed under {}: run tests/js/install.sh",
        js.display()
    );
    node
}

fn js_dir() -> PathBuf {
    workspace_dir().join("tests").join("js")
}

/// What to start a bot with; each maps to a `bot.mjs` flag.
#[derive(Debug, Clone)]
pub struct BotOptions {
    /// The relay's multiaddr, ending with `/p2p/<relay peer id>`.
    pub relay: Multiaddr,
    /// More relays the bot dials at start besides `relay` (each a further
    /// `--relay`), as the daemon lists several: see [`BotOptions::relays`].
    pub more_relays: Vec<Multiaddr>,
    /// `--reservations`: how many relays to hold a reservation on at once
    /// (one `/p2p-circuit` listen address each); 1, the library's and the
    /// daemon's, by default.
    pub reservations: u32,
    /// `tcp`, `ws` or `any`.
    pub transport: &'static str,
    /// The connection monitor's ping interval (the daemon's is 10 s).
    pub monitor_interval: Duration,
    /// Take no reservation.
    pub no_reserve: bool,
    /// Comma-separated gossip topics; `None` for the bot's defaults.
    pub topics: Option<String>,
    /// A fixed identity (`--key-seed`): its peer id is known before the bot
    /// starts ([`peer_id_of_seed`]); `None` for a new one each start.
    pub key_seed: Option<String>,
    /// Run inside this network namespace (`ip netns exec`); `None`: the
    /// test's own.
    pub netns: Option<String>,
    /// `--listen`: TCP addresses of its own (bots behind NAT have none).
    pub listen: Vec<String>,
    /// `--dcutr`: upgrade relayed connections by hole punching.
    pub dcutr: bool,
}

fn is_ws(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::Ws(_)))
}

impl BotOptions {
    /// A bot that dials `relay` over the transport its address names.
    pub fn new(relay: Multiaddr) -> BotOptions {
        let ws = is_ws(&relay);
        BotOptions {
            relay,
            more_relays: Vec::new(),
            reservations: 1,
            transport: if ws { "ws" } else { "tcp" },
            monitor_interval: Duration::from_secs(10),
            no_reserve: false,
            topics: None,
            key_seed: None,
            netns: None,
            listen: Vec::new(),
            dcutr: false,
        }
    }

    /// A bot that dials every relay in `relays` at start (the first is
    /// [`BotOptions::relay`]) and reserves on one of them, over the
    /// transports their addresses name (`any` when they mix TCP and
    /// WebSocket). Panics on an empty list.
    pub fn relays(relays: Vec<Multiaddr>) -> BotOptions {
        let mut relays = relays.into_iter();
        let first = relays.next().expect("at least one relay");
        let mut options = BotOptions::new(first);
        options.more_relays = relays.collect();
        let first_ws = options.transport == "ws";
        if options.more_relays.iter().any(|r| is_ws(r) != first_ws) {
            options.transport = "any";
        }
        options
    }

    /// Every relay the bot dials at start, `relay` first.
    pub fn all_relays(&self) -> impl Iterator<Item = &Multiaddr> {
        std::iter::once(&self.relay).chain(&self.more_relays)
    }
}

/// The peer id of a bot started with `--key-seed seed`, as `bot.mjs`
/// derives it: the Ed25519 key whose 32-byte seed is sha256 of the text
/// (hashed by coreutils' `sha256sum`, so the tests need no hash crate). Lets
/// a test put a bot on an access list before it connects.
pub fn peer_id_of_seed(seed: &str) -> PeerId {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run sha256sum: {e}"));
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(seed.as_bytes())
        .expect("write the seed to sha256sum");
    let out = child.wait_with_output().expect("sha256sum runs");
    let hex = String::from_utf8_lossy(&out.stdout);
    let digest: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("?"), 16))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|_| panic!("sha256sum printed {hex:?}"));
    let key = libp2p::identity::Keypair::ed25519_from_bytes(digest)
        .expect("32 bytes are an Ed25519 seed");
    key.public().to_peer_id()
}

/// When a bot event happened: its `at` field (the bot's wall clock, ms
/// since the epoch), on the same clock as [`std::time::SystemTime`].
pub fn event_time(event: &Value) -> Option<std::time::SystemTime> {
    let ms = event["at"].as_u64()?;
    Some(std::time::UNIX_EPOCH + Duration::from_millis(ms))
}

/// A running bot process.
pub struct Bot {
    child: Child,
    stdin: Option<ChildStdin>,
    output: ChildOutput,
    peer_id: String,
    next_id: u64,
    exit: Option<ExitStatus>,
}

impl Bot {
    /// Starts a bot and waits until it is connected to its relay (to one of
    /// them when it has several; not yet reserved: see
    /// [`Bot::wait_reserved`] and [`Bot::wait_relay_reserved`]).
    pub fn start(options: BotOptions) -> Bot {
        // `ip netns exec` execs node in place: the pid stays the bot's.
        let mut cmd = match &options.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(node_bin());
                c
            }
            None => Command::new(node_bin()),
        };
        cmd.current_dir(js_dir()).arg("bot.mjs");
        for relay in options.all_relays() {
            cmd.arg("--relay").arg(relay.to_string());
        }
        if options.reservations != 1 {
            cmd.arg("--reservations")
                .arg(options.reservations.to_string());
        }
        cmd.args(["--transport", options.transport])
            .arg("--monitor-interval-ms")
            .arg(options.monitor_interval.as_millis().to_string());
        if options.no_reserve {
            cmd.arg("--no-reserve");
        }
        if let Some(topics) = &options.topics {
            cmd.args(["--topics", topics]);
        }
        if let Some(seed) = &options.key_seed {
            cmd.args(["--key-seed", seed]);
        }
        for addr in &options.listen {
            cmd.args(["--listen", addr]);
        }
        if options.dcutr {
            cmd.arg("--dcutr");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the js bot: {e}"));
        let stdin = child.stdin.take();
        let output = ChildOutput::capture(&mut child);
        let mut bot = Bot {
            child,
            stdin,
            output,
            peer_id: String::new(),
            next_id: 1,
            exit: None,
        };
        let started = bot
            .wait_for("started", |_| true, START_TIMEOUT)
            .unwrap_or_else(|e| panic!("the bot did not start: {e}"));
        bot.peer_id = started["peerId"].as_str().unwrap_or_default().to_string();
        let connected = bot
            .wait_for(
                "relay_connected",
                |_| true,
                START_TIMEOUT.saturating_sub(Duration::from_secs(1)),
            )
            .map_err(|e| match bot.events_of("error").first() {
                Some(err) => format!("{err}"),
                None => e,
            });
        if let Err(e) = connected {
            panic!("the bot could not reach its relay: {e}");
        }
        bot
    }

    /// The bot's peer id.
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Value> {
        self.output.events()
    }

    /// Events of `kind` so far.
    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.output.events_of(kind, |_| true)
    }

    /// Index of the next event, to wait only for later ones.
    pub fn mark(&self) -> usize {
        self.output.mark()
    }

    pub fn stderr(&self) -> String {
        self.output.stderr()
    }

    /// Waits for an event of `kind` satisfying `pred`, seen at any time.
    pub fn wait_for(
        &self,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, String> {
        self.wait_for_after(0, kind, pred, timeout)
    }

    /// Waits for an event of `kind` satisfying `pred` at index `mark` or later.
    pub fn wait_for_after(
        &self,
        mark: usize,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, String> {
        let wording = Wording {
            ended: &format!("bot {} exited", self.peer_id),
            prefix: &format!("bot {}: ", self.peer_id),
        };
        self.output
            .wait_for_event(mark, kind, pred, timeout, wording)
    }

    /// Waits until the bot holds a reservation; returns its circuit addresses.
    pub fn wait_reserved(&self, timeout: Duration) -> Vec<String> {
        let reserved = self
            .wait_for("reserved", |_| true, timeout)
            .unwrap_or_else(|e| panic!("no reservation: {e}"));
        reserved["addrs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits for a reservation on the relay `relay` (its peer id) reported
    /// at event index `mark` or later: the `relay_reserved` event, whose
    /// `at` is the bot's wall clock in ms since the epoch ([`event_time`]).
    pub fn wait_relay_reserved(
        &self,
        mark: usize,
        relay: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        self.wait_for_after(
            mark,
            "relay_reserved",
            |e| e["relay"].as_str() == Some(relay),
            timeout,
        )
    }

    /// The relays the bot holds a reservation on now, as its events tell
    /// (`relay_reserved` minus later `relay_reservation_lost`), in the order
    /// it took them.
    pub fn reserved_relays(&self) -> Vec<String> {
        let mut held: Vec<String> = Vec::new();
        for e in self.events() {
            let relay = e["relay"].as_str().unwrap_or_default().to_string();
            match e["event"].as_str() {
                Some("relay_reserved") if !held.contains(&relay) => held.push(relay),
                Some("relay_reservation_lost") => held.retain(|r| *r != relay),
                _ => {}
            }
        }
        held
    }

    /// Sends `cmd` (an object with a `cmd` field; an `id` and a `timeout_ms`
    /// of `timeout` are added) and waits for its result. The result's `ok`
    /// is not checked: see [`Bot::ok`].
    pub fn command(&mut self, mut cmd: Value, timeout: Duration) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        cmd["id"] = json!(id);
        if cmd.get("timeout_ms").is_none() {
            cmd["timeout_ms"] = json!(timeout.as_millis() as u64);
        }
        let mark = self.mark();
        let stdin = self.stdin.as_mut().ok_or("the bot's stdin is closed")?;
        writeln!(stdin, "{cmd}")
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("cannot send {cmd} to the bot: {e}"))?;
        // The bot answers within timeout_ms by itself; the margin covers a
        // bot that is stuck entirely.
        self.wait_for_after(
            mark,
            "result",
            |r| r["id"] == json!(id),
            timeout + Duration::from_secs(10),
        )
    }

    /// Runs `cmd` and panics unless the bot answers `ok: true`.
    pub fn ok(&mut self, cmd: Value, timeout: Duration) -> Value {
        let shown = cmd.to_string();
        let result = self
            .command(cmd, timeout)
            .unwrap_or_else(|e| panic!("{shown}: {e}"));
        assert_eq!(
            result["ok"],
            json!(true),
            "{shown} failed: {result}; bot stderr: {}",
            self.stderr()
        );
        result
    }

    /// Closes stdin (the bot stops after its commands) and waits for it to exit.
    pub fn stop(mut self, timeout: Duration) -> Result<ExitStatus, String> {
        self.stdin.take();
        match child::wait_exit(&mut self.child, timeout, Duration::from_millis(20)) {
            Ok(Some(status)) => {
                self.exit = Some(status);
                Ok(status)
            }
            Ok(None) => {
                self.kill();
                Err(format!(
                    "bot {} did not exit within {timeout:?}; killed it",
                    self.peer_id
                ))
            }
            Err(e) => Err(format!("cannot wait for the bot: {e}")),
        }
    }

    fn kill(&mut self) {
        if self.exit.is_some() {
            return;
        }
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.stdin.take();
        self.kill();
        self.output.join();
    }
}
