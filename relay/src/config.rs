//! The relay's configuration: the JSON file of the operator guide, plus what the
//! product needs beyond it, validated in one place so that every mistake is
//! reported before anything binds a port.
//!
//! Parsing happens in two steps. `file::ConfigFile` mirrors the JSON exactly
//! (camelCase keys, unknown keys refused) and only knows about types; `Config`
//! is what the rest of the relay uses, with units resolved and every value
//! range-checked. Every error names the file, the key path, what was expected
//! and what was found.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;

/// The configuration the relay runs with when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default-config.json");

/// How the embedded default is named in messages and in `Config::source`.
pub const EMBEDDED_SOURCE: &str = "<embedded default config>";

/// Topics the bots really publish on (see the bot daemon), joined by default so
/// that bots which only meet at the relay still receive each other's gossip.
pub const DEFAULT_TOPICS: [&str; 3] = [
    "/openclaw/announce/1.0.0",
    "/openclaw/node-status/1.0.0",
    "/openclaw/services/1.0.0",
];

/// Placeholders of the guide's sample config, with what to put in their place.
const PLACEHOLDERS: [(&str, &str); 3] = [
    ("YOUR_PUBLIC_IP", "this server's public IPv4 address"),
    (
        "relay.yourdomain.com",
        "a DNS name that resolves to this server",
    ),
    ("YOUR_IP", "this server's public IPv4 address"),
];

#[derive(Debug, Clone, PartialEq)]
pub enum LogFormat {
    /// Pretty output on a terminal, JSON lines otherwise.
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CircuitLimits {
    /// `None`: no time cap.
    pub duration: Option<Duration>,
    /// `None`: no byte cap.
    pub data: Option<u64>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config came from, for messages (`<embedded default>` or a path).
    pub source: String,
    /// The command-line overrides it was built with, reapplied on reload.
    pub overrides: Overrides,
    pub listen: Vec<Multiaddr>,
    pub announce: Vec<Multiaddr>,
    pub data_dir: PathBuf,
    pub identity_file: PathBuf,
    pub relay: RelayConfig,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    pub max_pending_incoming: u32,
    pub gossip: Option<GossipConfig>,
    pub autonat: bool,
    pub log_format: LogFormat,
    pub log_level: log::LevelFilter,
    pub shutdown_timeout: Duration,
    pub control_socket: PathBuf,
    pub control_max_clients: usize,
    /// How long a control client that is not subscribed may send nothing.
    pub control_idle_timeout: Duration,
    /// Who is admin on the control socket, when the file says; otherwise
    /// the control server's default (root and the relay's own uid).
    pub control_admin_uids: Option<Vec<u32>>,
    pub control_admin_gids: Option<Vec<u32>>,
    /// Worker threads of the async runtime; 0: one per CPU.
    pub runtime_threads: usize,
    pub journal_max_events: u64,
    pub journal_max_bytes: u64,
    /// Log lines queued for the log reader; past this they are dropped and counted.
    pub log_queue_lines: usize,
    /// Largest WebSocket message accepted, in bytes.
    pub websocket_max_message_size: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// The hop service (serving reservations and circuits) is on.
    pub hop: bool,
    pub max_reservations: usize,
    pub max_reservations_per_peer: usize,
    pub reservation_ttl: Duration,
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    pub circuit_limits: CircuitLimits,
    pub request_rate: RequestRate,
}

/// Hop requests (reserve and connect) one peer may make: a token bucket
/// refilled at `per_second`, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestRate {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    pub topics: Vec<String>,
    pub max_message_size: usize,
}

/// A configuration error: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub source: String,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Overrides given on the command line; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub announce: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
}

/// Reads and validates the config file at `path`, or the embedded default.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let (source, text) = match path {
        Some(path) => {
            let source = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                source: source.clone(),
                path: String::new(),
                message: format!("cannot read the config file: {e}"),
            })?;
            (source, text)
        }
        None => (
            "<embedded default config>".to_string(),
            EMBEDDED_DEFAULT.to_string(),
        ),
    };
    parse(&source, &text, overrides)
}

/// Parses config text; `source` names it in error messages.
pub fn parse(source: &str, text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
    let err = |path: &str, message: String| ConfigError {
        source: source.to_string(),
        path: path.to_string(),
        message,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let mut raw: file::ConfigFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            err(
                "",
                format!(
                    "invalid JSON at line {} column {}: {}",
                    inner.line(),
                    inner.column(),
                    strip_position(&inner.to_string())
                ),
            )
        } else {
            let path = if path == "." { String::new() } else { path };
            err(
                &path,
                explain_serde_error(&strip_position(&inner.to_string())),
            )
        }
    })?;
    de.end().map_err(|e| {
        err(
            "",
            format!("unexpected text after the JSON object at line {}", e.line()),
        )
    })?;

    if !overrides.listen.is_empty() {
        raw.listen = Some(overrides.listen.clone());
    }
    if !overrides.announce.is_empty() {
        raw.announce = Some(overrides.announce.clone());
    }
    if let Some(dir) = &overrides.data_dir {
        raw.data_dir = Some(dir.display().to_string());
    }
    if overrides.log_format.is_some() || overrides.log_level.is_some() {
        let log = raw.log.get_or_insert_with(Default::default);
        if let Some(f) = &overrides.log_format {
            log.format = Some(f.clone());
        }
        if let Some(l) = &overrides.log_level {
            log.level = Some(l.clone());
        }
    }
    let mut config = validate(raw).map_err(|(path, message)| err(&path, message))?;
    config.source = source.to_string();
    config.overrides = overrides.clone();
    Ok(config)
}

/// The top-level keys whose values differ between two configs.
pub fn differences(a: &Config, b: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |key, differs: bool| {
        if differs {
            out.push(key);
        }
    };
    check("listen", a.listen != b.listen);
    check("announce", a.announce != b.announce);
    check("dataDir", a.data_dir != b.data_dir);
    check("identityFile", a.identity_file != b.identity_file);
    check("relay", a.relay != b.relay);
    check(
        "connectionManager",
        (
            a.max_connections,
            a.max_connections_per_peer,
            a.max_pending_incoming,
        ) != (
            b.max_connections,
            b.max_connections_per_peer,
            b.max_pending_incoming,
        ),
    );
    check("gossipSub", a.gossip != b.gossip);
    check("autonat", a.autonat != b.autonat);
    check("log.format", a.log_format != b.log_format);
    check("log.queueLines", a.log_queue_lines != b.log_queue_lines);
    check(
        "websocket.maxMessageSize",
        a.websocket_max_message_size != b.websocket_max_message_size,
    );
    check("log.level", a.log_level != b.log_level);
    check("shutdown.timeout", a.shutdown_timeout != b.shutdown_timeout);
    check(
        "control",
        (&a.control_socket, a.control_max_clients) != (&b.control_socket, b.control_max_clients)
            || a.control_idle_timeout != b.control_idle_timeout
            || (&a.control_admin_uids, &a.control_admin_gids)
                != (&b.control_admin_uids, &b.control_admin_gids),
    );
    check("runtime.threads", a.runtime_threads != b.runtime_threads);
    check(
        "journal",
        (a.journal_max_events, a.journal_max_bytes) != (b.journal_max_events, b.journal_max_bytes),
    );
    out
}

type Invalid = (String, String);

fn invalid(path: impl Into<String>, message: impl Into<String>) -> Invalid {
    (path.into(), message.into())
}

fn validate(raw: file::ConfigFile) -> Result<Config, Invalid> {
    if let Some(mode) = &raw.mode {
        if mode != "relay" {
            return Err(invalid(
                "mode",
                format!("expected \"relay\" (this program only runs a relay), got {mode:?}"),
            ));
        }
    }

    let listen = match raw.listen {
        Some(list) => multiaddrs("listen", &list)?,
        None => vec![
            "/ip4/0.0.0.0/tcp/4001".parse().expect("valid default"),
            "/ip4/0.0.0.0/tcp/4002/ws".parse().expect("valid default"),
        ],
    };
    if listen.is_empty() {
        return Err(invalid(
            "listen",
            "expected at least one address to listen on, got an empty list",
        ));
    }
    for (i, addr) in listen.iter().enumerate() {
        check_listen_addr(&format!("listen[{i}]"), addr)?;
    }
    let announce = multiaddrs("announce", &raw.announce.unwrap_or_default())?;
    for (i, addr) in announce.iter().enumerate() {
        check_announce_addr(&format!("announce[{i}]"), addr)?;
    }

    let data_dir = match raw.data_dir {
        Some(dir) if dir.trim().is_empty() => {
            return Err(invalid("dataDir", "expected a directory path, got an empty string"))
        }
        Some(dir) => expand_home(&dir).ok_or_else(|| {
            invalid("dataDir", format!("{dir:?} starts with ~ but $HOME is not set"))
        })?,
        None => default_data_dir().ok_or_else(|| {
            invalid(
                "dataDir",
                "not set and $HOME is not set: give a data directory with \"dataDir\" or --data-dir",
            )
        })?,
    };
    let identity_file = match raw.identity_file {
        Some(f) if f.trim().is_empty() => {
            return Err(invalid(
                "identityFile",
                "expected a file path, got an empty string",
            ))
        }
        Some(f) => expand_home(&f)
            .ok_or_else(|| invalid("identityFile", "starts with ~ but $HOME is not set"))?,
        None => data_dir.join("identity.key"),
    };

    let relay = relay_config(raw.relay.unwrap_or_default())?;

    let cm = raw.connection_manager.unwrap_or_default();
    let max_connections = range(
        "connectionManager.maxConnections",
        cm.max_connections,
        500,
        1,
        1_000_000,
    )?;
    let min_connections = range(
        "connectionManager.minConnections",
        cm.min_connections,
        0,
        0,
        1_000_000,
    )?;
    if min_connections > max_connections {
        return Err(invalid(
            "connectionManager.minConnections",
            format!("must not exceed maxConnections ({max_connections}), got {min_connections}"),
        ));
    }
    let max_connections_per_peer = range(
        "connectionManager.maxConnectionsPerPeer",
        cm.max_connections_per_peer,
        8,
        1,
        1024,
    )?;
    let max_pending_incoming = range(
        "connectionManager.maxPendingIncoming",
        cm.max_pending_incoming,
        128,
        1,
        100_000,
    )?;

    let gs = raw.gossip_sub.unwrap_or_default();
    let gossip = if gs.enabled.unwrap_or(true) {
        let topics = match gs.topics {
            Some(t) => t,
            None => DEFAULT_TOPICS.iter().map(|t| t.to_string()).collect(),
        };
        if topics.len() > 256 {
            return Err(invalid(
                "gossipSub.topics",
                format!("at most 256 topics are allowed, got {}", topics.len()),
            ));
        }
        for (i, topic) in topics.iter().enumerate() {
            if topic.trim().is_empty() || topic.len() > 512 {
                return Err(invalid(
                    format!("gossipSub.topics[{i}]"),
                    format!("expected a topic name of 1 to 512 characters, got {topic:?}"),
                ));
            }
            if topics[..i].contains(topic) {
                return Err(invalid(
                    format!("gossipSub.topics[{i}]"),
                    format!("topic {topic:?} is listed twice"),
                ));
            }
        }
        let max_message_size = range(
            "gossipSub.maxMessageSize",
            gs.max_message_size,
            1 << 20,
            1024,
            16 << 20,
        )?;
        Some(GossipConfig {
            topics,
            max_message_size: max_message_size as usize,
        })
    } else {
        None
    };

    let autonat = raw.autonat.unwrap_or_default().enabled.unwrap_or(true);

    let log = raw.log.unwrap_or_default();
    let log_format = match log.format.as_deref() {
        None | Some("auto") => LogFormat::Auto,
        Some("json") => LogFormat::Json,
        Some("pretty") => LogFormat::Pretty,
        Some(other) => {
            return Err(invalid(
                "log.format",
                format!("expected one of \"auto\", \"json\", \"pretty\", got {other:?}"),
            ))
        }
    };
    let log_level = match log.level.as_deref() {
        None => log::LevelFilter::Info,
        Some(l) => l.parse().map_err(|_| {
            invalid(
                "log.level",
                format!(
                    "expected one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\", got {l:?}"
                ),
            )
        })?,
    };

    // 8192 lines of about 300 bytes: 2.4 MiB at most while the reader is stuck.
    let log_queue_lines = range("log.queueLines", log.queue_lines, 8192, 64, 1 << 20)? as usize;

    // js-libp2p sends one WebSocket message per noise message (at most 65535
    // bytes, its 2-byte length prefix in a message of its own); rust-libp2p
    // at most 65537. A frame header is a claim the WebSocket codec allocates
    // for before any key is checked: twice the largest noise message keeps a
    // pending connection under 128 KiB (16 MiB at the default
    // maxPendingIncoming of 128) instead of 256 MiB each.
    let websocket_max_message_size = range(
        "websocket.maxMessageSize",
        raw.websocket.unwrap_or_default().max_message_size,
        128 << 10,
        65_537,
        16 << 20,
    )? as usize;

    let shutdown = raw.shutdown.unwrap_or_default();
    let shutdown_timeout = Duration::from_millis(range(
        "shutdown.timeout",
        shutdown.timeout,
        5_000,
        0,
        600_000,
    )?);

    let control = raw.control.unwrap_or_default();
    let socket_given = control.socket.is_some();
    let control_socket = match control.socket {
        Some(p) if p.trim().is_empty() => {
            return Err(invalid(
                "control.socket",
                "expected a socket path, got an empty string",
            ))
        }
        Some(p) => expand_home(&p)
            .ok_or_else(|| invalid("control.socket", "starts with ~ but $HOME is not set"))?,
        None => data_dir.join(bsv_p2p_proto::SOCKET_FILE),
    };
    if control_socket.as_os_str().len() > 100 {
        // Without control.socket the path comes from dataDir: blame that key.
        let (path, remedy) = if socket_given {
            ("control.socket", "choose a shorter path")
        } else {
            ("dataDir", "choose a shorter dataDir or set control.socket")
        };
        return Err(invalid(
            path,
            format!(
                "{} is longer than a Unix socket path may be (about 100 bytes): {remedy}",
                control_socket.display()
            ),
        ));
    }
    let control_max_clients = range("control.maxClients", control.max_clients, 32, 1, 1024)?;
    // At least a second, so a client has time to send its hello; at most an
    // hour, so that a forgotten client gives its slot back the same day.
    let control_idle_timeout = Duration::from_millis(range(
        "control.idleTimeout",
        control.idle_timeout,
        60_000,
        1_000,
        3_600_000,
    )?);
    let control_admin_uids = ids("control.adminUids", control.admin_uids)?;
    let control_admin_gids = ids("control.adminGids", control.admin_gids)?;
    let runtime_threads = range(
        "runtime.threads",
        raw.runtime.unwrap_or_default().threads,
        0,
        0,
        1024,
    )? as usize;
    let journal = raw.journal.unwrap_or_default();
    let journal_max_events = range(
        "journal.maxEvents",
        journal.max_events,
        100_000,
        100,
        100_000_000,
    )?;
    let journal_max_bytes = range(
        "journal.maxBytes",
        journal.max_bytes,
        64 << 20,
        1 << 20,
        64 << 30,
    )?;

    Ok(Config {
        overrides: Overrides::default(),
        control_socket,
        control_max_clients: control_max_clients as usize,
        control_idle_timeout,
        control_admin_uids,
        control_admin_gids,
        runtime_threads,
        journal_max_events,
        journal_max_bytes,
        log_queue_lines,
        websocket_max_message_size,
        source: String::new(),
        listen,
        announce,
        data_dir,
        identity_file,
        relay,
        max_connections: max_connections as u32,
        max_connections_per_peer: max_connections_per_peer as u32,
        max_pending_incoming: max_pending_incoming as u32,
        gossip,
        autonat,
        log_format,
        log_level,
        shutdown_timeout,
    })
}

fn relay_config(raw: file::Relay) -> Result<RelayConfig, Invalid> {
    let enabled = raw.enabled.unwrap_or(true);
    let hop = raw.hop.unwrap_or_default();
    let hop_enabled = hop.enabled.unwrap_or(true);
    if let Some(adv) = raw.advertise {
        range("relay.advertise.ttl", adv.ttl, 30_000, 1_000, 86_400_000)?;
    }

    let res = raw.reservations.unwrap_or_default();
    let max_reservations = range("relay.reservations.max", res.max, 1000, 1, 1_000_000)?;
    let max_reservations_per_peer =
        range("relay.reservations.maxPerPeer", res.max_per_peer, 4, 1, 64)?;
    // The spec carries the expiry in whole seconds: sub-second TTLs cannot be expressed.
    let ttl_ms = range(
        "relay.reservations.ttl",
        res.ttl,
        3_600_000,
        1_000,
        7 * 86_400_000,
    )?;

    let circ = raw.circuits.unwrap_or_default();
    let max_circuits = range("relay.circuits.max", circ.max, 1024, 1, 1_000_000)?;
    let max_circuits_per_peer = range(
        "relay.circuits.maxPerPeer",
        circ.max_per_peer,
        64,
        1,
        65_536,
    )?;
    if max_circuits_per_peer > max_circuits {
        // Blame the key in the file: left at its default, maxPerPeer is not
        // what the operator wrote, a small circuits.max is.
        return Err(match circ.max_per_peer {
            Some(_) => invalid(
                "relay.circuits.maxPerPeer",
                format!(
                    "must not exceed relay.circuits.max ({max_circuits}), got {max_circuits_per_peer}"
                ),
            ),
            None => invalid(
                "relay.circuits.max",
                format!(
                    "must be at least relay.circuits.maxPerPeer ({max_circuits_per_peer} by default), got {max_circuits}: raise it or set maxPerPeer too"
                ),
            ),
        });
    }
    let circuit_limits = if circ.unlimited.unwrap_or(false) {
        for (key, set) in [
            ("duration", circ.duration.is_some()),
            ("data", circ.data.is_some()),
        ] {
            if set {
                return Err(invalid(
                    format!("relay.circuits.{key}"),
                    "cannot be set while relay.circuits.unlimited is true: remove one of them",
                ));
            }
        }
        CircuitLimits {
            duration: None,
            data: None,
        }
    } else {
        // Limit.duration travels in whole seconds as a u32.
        let duration_ms = range(
            "relay.circuits.duration",
            circ.duration,
            3_600_000,
            0,
            u64::from(u32::MAX) * 1000,
        )?;
        if duration_ms != 0 && duration_ms < 1000 {
            return Err(invalid(
                "relay.circuits.duration",
                format!(
                    "expected 0 (no time limit) or at least 1000 milliseconds, got {duration_ms}"
                ),
            ));
        }
        // Bots send messages of up to 1 MiB over one circuit: a smaller cap breaks messaging.
        let data = range("relay.circuits.data", circ.data, 1 << 30, 0, u64::MAX)?;
        if data != 0 && data < 1 << 20 {
            return Err(invalid(
                "relay.circuits.data",
                format!(
                    "expected 0 (no data limit) or at least 1048576 bytes (bots send messages of up to 1 MiB), got {data}"
                ),
            ));
        }
        CircuitLimits {
            duration: (duration_ms != 0).then(|| Duration::from_millis(duration_ms)),
            data: (data != 0).then_some(data),
        }
    };

    // A bot reserves once per connection and renews well before its TTL, and
    // reuses one circuit per peer; each request costs the relay a signature
    // or a stream, so a peer asking faster than this is refused.
    let requests = raw.requests.unwrap_or_default();
    let per_second = range(
        "relay.requests.perSecond",
        requests.per_second,
        10,
        1,
        100_000,
    )?;
    let burst = range("relay.requests.burst", requests.burst, 50, 1, 1_000_000)?;

    Ok(RelayConfig {
        request_rate: RequestRate {
            per_second: per_second as u32,
            burst: burst as u32,
        },
        hop: enabled && hop_enabled,
        max_reservations: max_reservations as usize,
        max_reservations_per_peer: max_reservations_per_peer as usize,
        reservation_ttl: Duration::from_millis(ttl_ms),
        max_circuits: max_circuits as usize,
        max_circuits_per_peer: max_circuits_per_peer as usize,
        circuit_limits,
    })
}

fn range(path: &str, value: Option<u64>, default: u64, min: u64, max: u64) -> Result<u64, Invalid> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(invalid(
            path,
            format!("expected a value from {min} to {max}, got {v}"),
        ));
    }
    Ok(v)
}

/// Uids or gids; (uid_t)-1 is "nobody at all" to the kernel, never a caller.
fn ids(key: &str, list: Option<Vec<file::Id>>) -> Result<Option<Vec<u32>>, Invalid> {
    let Some(list) = list else { return Ok(None) };
    list.iter()
        .enumerate()
        .map(|(i, id)| {
            let id = range(
                &format!("{key}[{i}]"),
                Some(id.0),
                0,
                0,
                u64::from(u32::MAX) - 1,
            )?;
            Ok(id as u32)
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn multiaddrs(key: &str, list: &[String]) -> Result<Vec<Multiaddr>, Invalid> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let path = format!("{key}[{i}]");
            for (placeholder, what) in PLACEHOLDERS {
                if s.contains(placeholder) {
                    return Err(invalid(
                        path,
                        format!(
                            "{s:?} still holds the placeholder {placeholder}: replace it with {what}"
                        ),
                    ));
                }
            }
            s.parse::<Multiaddr>().map_err(|e| {
                invalid(
                    path,
                    format!("expected a multiaddr such as \"/ip4/203.0.113.7/tcp/4001\", got {s:?} ({e})"),
                )
            })
        })
        .collect()
}

/// Listen addresses must be something this relay can bind: TCP, optionally
/// with `/ws`, on an IP address.
fn check_listen_addr(path: &str, addr: &Multiaddr) -> Result<(), Invalid> {
    use libp2p::multiaddr::Protocol;
    let parts: Vec<Protocol> = addr.iter().collect();
    let ok = matches!(
        parts.as_slice(),
        [Protocol::Ip4(_) | Protocol::Ip6(_), Protocol::Tcp(_)]
            | [
                Protocol::Ip4(_) | Protocol::Ip6(_),
                Protocol::Tcp(_),
                Protocol::Ws(_)
            ]
    );
    if ok {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("expected /ip4|ip6/<address>/tcp/<port> or .../tcp/<port>/ws, got \"{addr}\""),
        ))
    }
}

/// Announce addresses are handed to bots inside reservations: they must name a
/// transport bots can dial and must not carry a peer ID of their own.
fn check_announce_addr(path: &str, addr: &Multiaddr) -> Result<(), Invalid> {
    use libp2p::multiaddr::Protocol;
    let mut iter = addr.iter();
    let host_ok = matches!(
        iter.next(),
        Some(
            Protocol::Ip4(_)
                | Protocol::Ip6(_)
                | Protocol::Dns(_)
                | Protocol::Dns4(_)
                | Protocol::Dns6(_)
        )
    );
    let tcp_ok = matches!(iter.next(), Some(Protocol::Tcp(_)));
    let rest: Vec<Protocol> = iter.collect();
    let rest_ok = matches!(
        rest.as_slice(),
        [] | [Protocol::Ws(_)] | [Protocol::Wss(_)] | [Protocol::Tls, Protocol::Ws(_)]
    );
    if host_ok && tcp_ok && rest_ok {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!(
                "expected /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port> optionally followed by /ws or /wss, without /p2p, got \"{addr}\""
            ),
        ))
    }
}

fn expand_home(path: &str) -> Option<PathBuf> {
    if path == "~" || path.starts_with("~/") {
        let home = std::env::var_os("HOME")?;
        Some(PathBuf::from(home).join(path.trim_start_matches('~').trim_start_matches('/')))
    } else {
        Some(PathBuf::from(path))
    }
}

/// `~/.bsv-p2p/relay`, beside the bot's own `~/.bsv-p2p` files.
fn default_data_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".bsv-p2p").join("relay"))
}

/// serde_json appends " at line L column C" to its messages; the key path is a
/// better locator for type errors, and syntax errors get it reworded.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Rewords serde's messages for operators and adds a did-you-mean to unknown keys.
fn explain_serde_error(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let mut out = format!("unknown key {name:?}");
        if let Some(best) = closest(name, &candidates) {
            out.push_str(&format!(" (did you mean {best:?}?)"));
        }
        if !candidates.is_empty() {
            out.push_str(&format!("; known keys here: {}", candidates.join(", ")));
        }
        return out;
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!("expected {expected}, got {found}");
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!("expected {expected}, got {found}");
        }
    }
    msg.to_string()
}

/// The candidate nearest to `name` by edit distance, if near enough to be a typo.
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The file's shape, key for key. Every field is optional: absent keys take
/// the defaults documented in README.md.
mod file {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct ConfigFile {
        pub mode: Option<String>,
        pub listen: Option<Vec<String>>,
        pub announce: Option<Vec<String>>,
        pub data_dir: Option<String>,
        pub identity_file: Option<String>,
        pub relay: Option<Relay>,
        pub connection_manager: Option<ConnectionManager>,
        pub gossip_sub: Option<GossipSub>,
        pub autonat: Option<Autonat>,
        pub log: Option<Log>,
        pub shutdown: Option<Shutdown>,
        pub control: Option<Control>,
        pub journal: Option<Journal>,
        pub runtime: Option<Runtime>,
        pub websocket: Option<Websocket>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Websocket {
        #[serde(default, deserialize_with = "bytes")]
        pub max_message_size: Option<u64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Requests {
        #[serde(default, deserialize_with = "count")]
        pub per_second: Option<u64>,
        #[serde(default, deserialize_with = "count")]
        pub burst: Option<u64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Runtime {
        #[serde(default, deserialize_with = "count")]
        pub threads: Option<u64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Control {
        pub socket: Option<String>,
        #[serde(default, deserialize_with = "count")]
        pub max_clients: Option<u64>,
        #[serde(default, deserialize_with = "millis")]
        pub idle_timeout: Option<u64>,
        pub admin_uids: Option<Vec<Id>>,
        pub admin_gids: Option<Vec<Id>>,
    }

    /// A uid or gid; its range is checked with the other values.
    pub struct Id(pub u64);

    impl<'de> Deserialize<'de> for Id {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Unsigned("a numeric uid or gid")).map(Id)
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Journal {
        #[serde(default, deserialize_with = "count")]
        pub max_events: Option<u64>,
        #[serde(default, deserialize_with = "bytes")]
        pub max_bytes: Option<u64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Relay {
        pub enabled: Option<bool>,
        pub hop: Option<Hop>,
        pub advertise: Option<Advertise>,
        pub reservations: Option<Reservations>,
        pub circuits: Option<Circuits>,
        pub requests: Option<Requests>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Hop {
        pub enabled: Option<bool>,
        /// Circuit v1's "active relay" switch: kept so the guide's file parses;
        /// circuit v2 never dials a destination on demand, so it has no effect.
        #[allow(dead_code)]
        pub active: Option<bool>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Advertise {
        /// Kept so the guide's file parses: js-libp2p advertises relays through
        /// content routing, which this relay does not run, so it has no effect.
        #[allow(dead_code)]
        pub enabled: Option<bool>,
        #[serde(default, deserialize_with = "millis")]
        pub ttl: Option<u64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Reservations {
        #[serde(default, deserialize_with = "count")]
        pub max: Option<u64>,
        #[serde(default, deserialize_with = "millis")]
        pub ttl: Option<u64>,
        #[serde(default, deserialize_with = "count")]
        pub max_per_peer: Option<u64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Circuits {
        #[serde(default, deserialize_with = "count")]
        pub max: Option<u64>,
        #[serde(default, deserialize_with = "count")]
        pub max_per_peer: Option<u64>,
        #[serde(default, deserialize_with = "millis")]
        pub duration: Option<u64>,
        #[serde(default, deserialize_with = "bytes")]
        pub data: Option<u64>,
        pub unlimited: Option<bool>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct ConnectionManager {
        #[serde(default, deserialize_with = "count")]
        pub max_connections: Option<u64>,
        #[serde(default, deserialize_with = "count")]
        pub min_connections: Option<u64>,
        #[serde(default, deserialize_with = "count")]
        pub max_connections_per_peer: Option<u64>,
        #[serde(default, deserialize_with = "count")]
        pub max_pending_incoming: Option<u64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct GossipSub {
        pub enabled: Option<bool>,
        pub topics: Option<Vec<String>>,
        #[serde(default, deserialize_with = "bytes")]
        pub max_message_size: Option<u64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Autonat {
        pub enabled: Option<bool>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Log {
        pub format: Option<String>,
        pub level: Option<String>,
        #[serde(default, deserialize_with = "count")]
        pub queue_lines: Option<u64>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Shutdown {
        #[serde(default, deserialize_with = "millis")]
        pub timeout: Option<u64>,
    }

    /// A non-negative integer whose unit the error message names.
    struct Unsigned(&'static str);

    impl Visitor<'_> for Unsigned {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.0)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            Err(E::invalid_type(de::Unexpected::Float(v), &self))
        }
    }

    fn unsigned<'de, D: Deserializer<'de>>(
        d: D,
        what: &'static str,
    ) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(Unsigned(what)).map(Some)
    }

    fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        unsigned(d, "milliseconds as a non-negative integer")
    }

    fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        unsigned(d, "a number of bytes as a non-negative integer")
    }

    fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        unsigned(d, "a non-negative integer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse("test.json", text, &Overrides::default())
    }

    #[test]
    fn embedded_default_is_valid_and_listens_on_4001_and_4002() {
        let c = parse_str(EMBEDDED_DEFAULT).unwrap();
        let listen: Vec<String> = c.listen.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            listen,
            ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/tcp/4002/ws"]
        );
        assert_eq!(c.relay.max_reservations, 1000);
        assert_eq!(c.relay.reservation_ttl, Duration::from_secs(3600));
        assert_eq!(c.gossip.unwrap().topics, DEFAULT_TOPICS);
    }

    #[test]
    fn millisecond_keys_name_their_unit_when_given_a_string() {
        let e = parse_str(r#"{"relay":{"reservations":{"ttl":"1h"}}}"#).unwrap_err();
        assert_eq!(e.path, "relay.reservations.ttl");
        assert_eq!(
            e.message,
            "expected milliseconds as a non-negative integer, got string \"1h\""
        );
    }

    #[test]
    fn unknown_key_suggests_the_near_miss() {
        let e = parse_str(r#"{"connectionManager":{"maxConnection":5}}"#).unwrap_err();
        assert_eq!(e.path, "connectionManager.maxConnection");
        assert!(
            e.message.contains("did you mean \"maxConnections\"?"),
            "{}",
            e.message
        );
    }

    #[test]
    fn placeholder_names_the_value_to_replace() {
        let e = parse_str(r#"{"announce":["/ip4/YOUR_PUBLIC_IP/tcp/4001"]}"#).unwrap_err();
        assert_eq!(e.path, "announce[0]");
        assert!(e.message.contains("YOUR_PUBLIC_IP"), "{}", e.message);
    }

    #[test]
    fn unlimited_circuits_drop_both_caps() {
        let c = parse_str(r#"{"relay":{"circuits":{"unlimited":true}}}"#).unwrap();
        assert_eq!(
            c.relay.circuit_limits,
            CircuitLimits {
                duration: None,
                data: None
            }
        );
        let e = parse_str(r#"{"relay":{"circuits":{"unlimited":true,"data":5}}}"#).unwrap_err();
        assert_eq!(e.path, "relay.circuits.data");
    }

    #[test]
    fn data_limit_under_a_bot_message_is_refused() {
        let e = parse_str(r#"{"relay":{"circuits":{"data":131072}}}"#).unwrap_err();
        assert!(e.message.contains("1 MiB"), "{}", e.message);
    }

    #[test]
    fn cli_overrides_win_over_the_file() {
        let o = Overrides {
            listen: vec!["/ip4/127.0.0.1/tcp/9000".into()],
            log_level: Some("debug".into()),
            ..Default::default()
        };
        let c = parse("t", r#"{"listen":["/ip4/0.0.0.0/tcp/1"]}"#, &o).unwrap();
        assert_eq!(c.listen[0].to_string(), "/ip4/127.0.0.1/tcp/9000");
        assert_eq!(c.log_level, log::LevelFilter::Debug);
    }

    #[test]
    fn control_idle_timeout_is_milliseconds_within_its_range() {
        let c = parse_str(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(c.control_idle_timeout, Duration::from_secs(60));
        let c = parse_str(r#"{"control":{"idleTimeout":2000}}"#).unwrap();
        assert_eq!(c.control_idle_timeout, Duration::from_secs(2));
        let e = parse_str(r#"{"control":{"idleTimeout":500}}"#).unwrap_err();
        assert_eq!(e.path, "control.idleTimeout");
        assert_eq!(e.message, "expected a value from 1000 to 3600000, got 500");
        let e = parse_str(r#"{"control":{"idleTimeout":"60s"}}"#).unwrap_err();
        assert_eq!(
            e.message,
            "expected milliseconds as a non-negative integer, got string \"60s\""
        );
    }

    #[test]
    fn control_admin_lists_replace_the_default_only_when_present() {
        let c = parse_str("{}").unwrap();
        assert_eq!((c.control_admin_uids, c.control_admin_gids), (None, None));
        let c = parse_str(r#"{"control":{"adminUids":[0,991],"adminGids":[]}}"#).unwrap();
        assert_eq!(c.control_admin_uids, Some(vec![0, 991]));
        assert_eq!(c.control_admin_gids, Some(vec![]));
        let e = parse_str(r#"{"control":{"adminUids":[0,"backup"]}}"#).unwrap_err();
        assert_eq!(e.path, "control.adminUids[1]");
        assert_eq!(
            e.message,
            "expected a numeric uid or gid, got string \"backup\""
        );
        let e = parse_str(r#"{"control":{"adminGids":[4294967295]}}"#).unwrap_err();
        assert_eq!(e.path, "control.adminGids[0]");
        assert_eq!(
            e.message,
            "expected a value from 0 to 4294967294, got 4294967295"
        );
        let e = parse_str(r#"{"control":{"adminGids":[-1]}}"#).unwrap_err();
        assert_eq!(e.path, "control.adminGids[0]");
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let e = parse_str("{\n  \"mode\": \"relay\",\n}").unwrap_err();
        assert!(
            e.message.starts_with("invalid JSON at line 3 column 1"),
            "{}",
            e.message
        );
    }
}
