//! The relay's configuration: the JSON file of the operator guide, plus what the
//! product needs beyond it, validated in one place so that every mistake is
//! reported before anything binds a port.
//!
//! Parsing happens in two steps. `file` mirrors the JSON exactly (camelCase
//! keys, unknown keys refused) and only knows about types; `validate` turns it
//! into the `RelayConfig` the rest of the relay uses, with units resolved and
//! every value range-checked against `defaults`, the one place each default
//! and range is written. `suggest` words serde's errors for operators;
//! `reload` says which keys changed. Every error names the file, the key path,
//! what was expected and what was found.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;

pub mod defaults;
mod file;
mod reload;
mod suggest;
mod validate;

pub use reload::differences;

/// The configuration the relay runs with when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("default-config.json");

/// How the embedded default is named in messages and in `RelayConfig::source`.
pub const EMBEDDED_SOURCE: &str = "<embedded default config>";

/// A key path and what is wrong there, before the source is known.
type Invalid = (String, String);

#[derive(Debug, Clone, PartialEq)]
pub enum LogFormat {
    /// Pretty output on a terminal, JSON lines otherwise.
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CircuitLimits {
    /// `None`: no time cap.
    pub duration: Option<Duration>,
    /// `None`: no byte cap.
    pub data: Option<u64>,
    /// `None`: no pace; otherwise bytes per second, each way.
    pub bytes_per_second: Option<u64>,
}

/// The validated configuration of the relay process.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    /// Where the config came from, for messages (`<embedded default>` or a path).
    pub source: String,
    /// The command-line overrides it was built with, reapplied on reload.
    pub overrides: Overrides,
    pub listen: Vec<Multiaddr>,
    pub announce: Vec<Multiaddr>,
    pub data_dir: PathBuf,
    pub identity_file: PathBuf,
    /// The `relay` section: the hop service.
    pub relay: HopConfig,
    /// The allow and deny lists and automatic bans (`relay.allowlist`,
    /// `relay.blocklist`, `relay.autoBan`).
    pub access: crate::access::AccessConfig,
    /// What the file says that works but should change (a deprecated key),
    /// logged at start and on reload.
    pub warnings: Vec<String>,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    pub max_pending_incoming: u32,
    /// Connections open, and handshakes in progress, per remote address,
    /// and new connections per minute per address (0: no rate limit).
    pub max_connections_per_ip: usize,
    pub max_pending_incoming_per_ip: usize,
    pub connections_per_minute: u32,
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
    /// Worker threads of the async runtime; 0: one per CPU less one, at least one.
    pub runtime_threads: usize,
    pub journal_max_events: u64,
    pub journal_max_bytes: u64,
    /// Log lines queued for the log reader; past this they are dropped and counted.
    pub log_queue_lines: usize,
    /// Largest WebSocket message accepted, in bytes.
    pub websocket_max_message_size: usize,
    /// The other relays of the fleet (`federation`).
    pub federation: FederationConfig,
}

impl RelayConfig {
    /// The runtime's worker threads: the configured count, or for 0 one per
    /// CPU this process may use (affinity and cgroup quota count) less one, at
    /// least one. The swarm task runs on the main thread (`main`'s
    /// `block_on`), not on a worker: with one worker per CPU besides it, a 2-CPU host ran
    /// three busy threads on two cores, and each chunk relayed woke a task on
    /// the other worker (15-20% more relay CPU per GiB than one worker, README
    /// "Capacity planning").
    pub fn runtime_workers(&self) -> usize {
        if self.runtime_threads > 0 {
            return self.runtime_threads;
        }
        std::thread::available_parallelism()
            .map(|n| n.get().saturating_sub(1).max(1))
            .unwrap_or(1)
    }
}

/// The relays this one keeps connected and gossips with, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct FederationConfig {
    /// One entry per peer id, its addresses without `/p2p`.
    pub peers: Vec<FederatedRelay>,
    pub redial_min: Duration,
    pub redial_max: Duration,
    pub ping_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FederatedRelay {
    pub peer_id: libp2p::PeerId,
    pub addrs: Vec<Multiaddr>,
}

/// The hop service's switch and limits (the file's `relay` section).
#[derive(Debug, Clone, PartialEq)]
pub struct HopConfig {
    /// The hop service (serving reservations and circuits) is on.
    pub enabled: bool,
    pub max_reservations: usize,
    pub max_reservations_per_peer: usize,
    pub reservation_ttl: Duration,
    pub max_circuits: usize,
    pub max_circuits_per_peer: usize,
    pub circuit_limits: CircuitLimits,
    pub request_rate: RequestRate,
    /// Caps by remote address and network.
    pub sources: SourceLimits,
    /// A circuit that moves no byte for this long is closed; `None`: never.
    pub circuit_idle_timeout: Option<Duration>,
    /// New reservations (not renewals) per hour, per peer id and per
    /// remote address; 0: no limit.
    pub reservations_per_hour: u32,
}

/// Reservations and circuits one remote address, and one network prefix
/// of addresses, may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLimits {
    /// Networks the caps and rates per address do not apply to (loopback by
    /// default: local processes).
    pub exempt: Vec<crate::hop::sources::Cidr>,
    pub reservations_per_ip: usize,
    pub reservations_per_prefix: usize,
    pub circuits_per_ip: usize,
    pub circuits_per_prefix: usize,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
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
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub announce: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
}

/// Reads and validates the config file at `path`, or the embedded default.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<RelayConfig, ConfigError> {
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
        None => (EMBEDDED_SOURCE.to_string(), EMBEDDED_DEFAULT.to_string()),
    };
    parse(&source, &text, overrides)
}

/// Parses config text; `source` names it in error messages.
pub fn parse(source: &str, text: &str, overrides: &Overrides) -> Result<RelayConfig, ConfigError> {
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
                    suggest::strip_position(&inner.to_string())
                ),
            )
        } else {
            let path = if path == "." { String::new() } else { path };
            err(
                &path,
                suggest::explain_serde_error(&suggest::strip_position(&inner.to_string())),
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
    let mut config = validate::validate(raw).map_err(|(path, message)| err(&path, message))?;
    config.source = source.to_string();
    config.overrides = overrides.clone();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<RelayConfig, ConfigError> {
        parse("test.json", text, &Overrides::default())
    }

    #[test]
    fn an_empty_file_is_exactly_the_embedded_default() {
        let empty = parse(EMBEDDED_SOURCE, "{}", &Overrides::default()).unwrap();
        let embedded = load(None, &Overrides::default()).unwrap();
        assert_eq!(empty, embedded);
        assert_eq!(embedded.source, EMBEDDED_SOURCE);
    }

    #[test]
    fn a_minimum_left_at_its_default_never_blocks_a_small_maximum() {
        let c = parse_str(r#"{"connectionManager":{"maxConnections":5}}"#).unwrap();
        assert_eq!(c.max_connections, 5);
        let e = parse_str(r#"{"connectionManager":{"maxConnections":5,"minConnections":6}}"#)
            .unwrap_err();
        assert_eq!(e.path, "connectionManager.minConnections");
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
        assert_eq!(c.gossip.unwrap().topics, defaults::TOPICS);
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
                data: None,
                bytes_per_second: None,
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
    fn federation_peers_are_full_relay_addresses_merged_by_peer_id() {
        let id = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let c = parse_str(&format!(
            r#"{{"federation":{{"peers":["/ip4/198.51.100.9/tcp/4001/p2p/{id}",
                "/dns4/eu.example.com/tcp/4002/ws/p2p/{id}",
                "/ip4/198.51.100.9/tcp/4001/p2p/{id}"]}}}}"#
        ))
        .unwrap();
        assert_eq!(c.federation.peers.len(), 1);
        assert_eq!(c.federation.peers[0].peer_id.to_string(), id);
        let addrs: Vec<String> = c.federation.peers[0]
            .addrs
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            addrs,
            [
                "/ip4/198.51.100.9/tcp/4001",
                "/dns4/eu.example.com/tcp/4002/ws"
            ]
        );
        assert_eq!(c.federation.redial_min, Duration::from_secs(1));
        assert_eq!(c.federation.ping_interval, Duration::from_secs(5));

        let e =
            parse_str(r#"{"federation":{"peers":["/ip4/198.51.100.9/tcp/4001"]}}"#).unwrap_err();
        assert_eq!(e.path, "federation.peers[0]");
        assert!(e.message.contains("ending in /p2p/"), "{}", e.message);
        let e = parse_str(&format!(
            r#"{{"federation":{{"peers":["/ip4/198.51.100.9/udp/4001/p2p/{id}"]}}}}"#
        ))
        .unwrap_err();
        assert!(e.message.contains("/tcp/<port>"), "{}", e.message);
        let e = parse_str(&format!(
            r#"{{"federation":{{"peers":["/dns4/eu.example.com/tcp/443/wss/p2p/{id}"]}}}}"#
        ))
        .unwrap_err();
        assert!(e.message.contains("no TLS"), "{}", e.message);
        let e = parse_str(r#"{"federation":{"redialMin":5000,"redialMax":2000}}"#).unwrap_err();
        assert_eq!(e.path, "federation.redialMax");
    }

    #[test]
    fn at_most_64_relays_are_federated() {
        let peers: Vec<String> = (0..65)
            .map(|i| {
                let peer = libp2p::PeerId::random();
                format!("\"/ip4/198.51.100.{i}/tcp/4001/p2p/{peer}\"")
            })
            .collect();
        let e = parse_str(&format!(
            r#"{{"federation":{{"peers":[{}]}}}}"#,
            peers.join(",")
        ))
        .unwrap_err();
        assert_eq!(e.path, "federation.peers[64]");
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
