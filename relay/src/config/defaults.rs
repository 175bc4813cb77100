//! Every default of the config file, and the range each number may take,
//! written once. `validate` reads them from here; `default-config.json` and
//! the configuration table of README.md are copies that the tests below hold
//! to these values.

use std::path::PathBuf;

use super::Invalid;
use super::LogFormat;

/// A number in the file: where it is, what it is when absent, what it may be.
#[derive(Debug, Clone, Copy)]
pub struct Bounded {
    pub key: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
}

impl Bounded {
    const fn new(key: &'static str, default: u64, min: u64, max: u64) -> Self {
        Self {
            key,
            default,
            min,
            max,
        }
    }

    /// The value given, or the default, once it is within range.
    pub(super) fn check(&self, value: Option<u64>) -> Result<u64, Invalid> {
        self.check_at(self.key, value.unwrap_or(self.default))
    }

    /// The range check alone, blaming `path` (an element of a list key).
    pub(super) fn check_at(&self, path: &str, value: u64) -> Result<u64, Invalid> {
        if value < self.min || value > self.max {
            return Err((
                path.to_string(),
                format!(
                    "expected a value from {} to {}, got {value}",
                    self.min, self.max
                ),
            ));
        }
        Ok(value)
    }
}

/// Addresses listened on when the file names none: TCP on 4001, WebSocket
/// on 4002, as in the guide.
pub const LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/tcp/4002/ws"];

/// Topics the bots really publish on (see the bot daemon), joined by default so
/// that bots which only meet at the relay still receive each other's gossip.
pub const TOPICS: [&str; 3] = [
    "/openclaw/announce/1.0.0",
    "/openclaw/node-status/1.0.0",
    "/openclaw/services/1.0.0",
];

/// At most this many topics, each of 1 to `TOPIC_MAX_LEN` characters.
pub const TOPICS_MAX: usize = 256;
pub const TOPIC_MAX_LEN: usize = 512;

pub const RELAY_ENABLED: bool = true;
pub const HOP_ENABLED: bool = true;
pub const CIRCUITS_UNLIMITED: bool = false;
pub const GOSSIP_ENABLED: bool = true;
pub const AUTONAT_ENABLED: bool = true;
pub const LOG_FORMAT: LogFormat = LogFormat::Auto;
pub const LOG_LEVEL: log::LevelFilter = log::LevelFilter::Info;

/// `~/.bsv-p2p/relay`, beside the bot's own `~/.bsv-p2p` files, where ctl
/// and the sidecars look for the socket by default; `None` without `$HOME`.
pub fn data_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(bsv_p2p_proto::DATA_DIR_IN_HOME))
}

/// The identity key and the control socket live in the data directory
/// unless the file puts them elsewhere.
pub const IDENTITY_FILE_NAME: &str = "identity.key";
pub const CONTROL_SOCKET_NAME: &str = bsv_p2p_proto::SOCKET_FILE;

pub const ADVERTISE_TTL: Bounded = Bounded::new("relay.advertise.ttl", 30_000, 1_000, 86_400_000);

pub const MAX_RESERVATIONS: Bounded = Bounded::new("relay.reservations.max", 1000, 1, 1_000_000);
pub const MAX_RESERVATIONS_PER_PEER: Bounded =
    Bounded::new("relay.reservations.maxPerPeer", 4, 1, 64);
/// One bot holds one reservation (up to maxPerPeer on several
/// connections); a site with many bots behind one NAT address needs room,
/// a stranger minting keys on one host must not get every slot.
pub const MAX_RESERVATIONS_PER_IP: Bounded =
    Bounded::new("relay.reservations.maxPerIp", 32, 1, 1_000_000);
pub const MAX_RESERVATIONS_PER_PREFIX: Bounded =
    Bounded::new("relay.reservations.maxPerPrefix", 128, 1, 1_000_000);
/// The spec carries the expiry in whole seconds: sub-second TTLs cannot be
/// expressed. At most a week.
pub const RESERVATION_TTL: Bounded =
    Bounded::new("relay.reservations.ttl", 3_600_000, 1_000, 7 * 86_400_000);

pub const MAX_CIRCUITS: Bounded = Bounded::new("relay.circuits.max", 1024, 1, 1_000_000);
pub const MAX_CIRCUITS_PER_PEER: Bounded = Bounded::new("relay.circuits.maxPerPeer", 64, 1, 65_536);
/// A circuit counts against the address of each of its ends.
pub const MAX_CIRCUITS_PER_IP: Bounded = Bounded::new("relay.circuits.maxPerIp", 128, 1, 1_000_000);
pub const MAX_CIRCUITS_PER_PREFIX: Bounded =
    Bounded::new("relay.circuits.maxPerPrefix", 256, 1, 1_000_000);
/// Bots' connections over a circuit ping every 10 s (the daemon's
/// connection monitor), so a live circuit is never quiet for 5 minutes; a
/// squatter's idle circuits give their slots back. 0 turns it off.
pub const CIRCUIT_IDLE_TIMEOUT: Bounded =
    Bounded::new("relay.circuits.idleTimeout", 300_000, 0, 86_400_000);
/// The shortest idle timeout other than none.
pub const CIRCUIT_IDLE_TIMEOUT_MIN_NONZERO: u64 = 1000;
/// Networks the per-prefix caps group addresses by: a /24 is one site or
/// one small hosting subnet, a /48 one IPv6 site.
/// Networks the per-address caps and rates leave alone: loopback, where
/// only local processes (the operator's tools, a bot on the relay's host)
/// connect from.
pub const SOURCE_EXEMPT: [&str; 2] = ["127.0.0.0/8", "::1/128"];
pub const SOURCE_IPV4_PREFIX: Bounded = Bounded::new("relay.sources.ipv4Prefix", 24, 0, 32);
pub const SOURCE_IPV6_PREFIX: Bounded = Bounded::new("relay.sources.ipv6Prefix", 48, 0, 128);
/// A circuit's pace in bytes per second, each way; 0 is no cap. Below 1
/// KiB/s a bot's 1 MiB message would take over 17 minutes.
pub const CIRCUIT_BYTES_PER_SECOND: Bounded =
    Bounded::new("relay.circuits.maxBytesPerSecond", 0, 0, 1 << 40);
pub const CIRCUIT_BYTES_PER_SECOND_MIN_NONZERO: u64 = 1024;
/// Automatic bans are on: a bot refused 300 times in a minute by the
/// limits (5 a second, every second) is broken or hostile either way, and
/// refusing it before any handshake is the cheapest answer. Loopback and
/// `relay.sources.exempt` are never banned, and a ban ends by itself.
pub const AUTO_BAN_ENABLED: bool = true;
pub const AUTO_BAN_REFUSALS: Bounded = Bounded::new("relay.autoBan.refusals", 300, 1, 1_000_000);
pub const AUTO_BAN_WINDOW: Bounded = Bounded::new("relay.autoBan.window", 60_000, 1000, 86_400_000);
pub const AUTO_BAN_DURATION: Bounded =
    Bounded::new("relay.autoBan.duration", 600_000, 1000, 30 * 86_400_000);
/// Entries of `relay.allowlist` and of `relay.blocklist`, each.
pub const MAX_LIST_ENTRIES: usize = 10_000;
/// `Limit.duration` travels in whole seconds as a u32; 0 is no time limit.
pub const CIRCUIT_DURATION: Bounded = Bounded::new(
    "relay.circuits.duration",
    3_600_000,
    0,
    u32::MAX as u64 * 1000,
);
/// The shortest time cap other than none.
pub const CIRCUIT_DURATION_MIN_NONZERO: u64 = 1000;
/// 0 is no data limit.
pub const CIRCUIT_DATA: Bounded = Bounded::new("relay.circuits.data", 1 << 30, 0, u64::MAX);
/// Bots send messages of up to 1 MiB over one circuit: a smaller cap breaks
/// messaging.
pub const CIRCUIT_DATA_MIN_NONZERO: u64 = 1 << 20;

/// A bot reserves once per connection and renews well before its TTL, and
/// reuses one circuit per peer; each request costs the relay a signature or
/// a stream, so a peer asking faster than this is refused.
pub const REQUESTS_PER_SECOND: Bounded = Bounded::new("relay.requests.perSecond", 10, 1, 100_000);
pub const REQUEST_BURST: Bounded = Bounded::new("relay.requests.burst", 50, 1, 1_000_000);

pub const MAX_CONNECTIONS: Bounded =
    Bounded::new("connectionManager.maxConnections", 500, 1, 1_000_000);
/// Accepted for the guide's format; a relay never dials out to keep a minimum.
pub const MIN_CONNECTIONS: Bounded =
    Bounded::new("connectionManager.minConnections", 10, 0, 1_000_000);
pub const MAX_CONNECTIONS_PER_PEER: Bounded =
    Bounded::new("connectionManager.maxConnectionsPerPeer", 8, 1, 1024);
pub const MAX_PENDING_INCOMING: Bounded =
    Bounded::new("connectionManager.maxPendingIncoming", 128, 1, 100_000);

/// Bots behind one NAT address share these: room for a site of them, not
/// for a host minting keys to fill `maxConnections`.
pub const MAX_CONNECTIONS_PER_IP: Bounded =
    Bounded::new("connectionManager.maxConnectionsPerIp", 64, 1, 1_000_000);
/// A handshake takes one round trip or two; silent sockets from one address
/// must not hold the pending-handshake cap for everyone.
pub const MAX_PENDING_INCOMING_PER_IP: Bounded =
    Bounded::new("connectionManager.maxPendingIncomingPerIp", 16, 1, 100_000);
/// The guide's `relay.rateLimit`, per remote address (a bot connects once
/// and stays connected); 0 is no limit.
pub const CONNECTIONS_PER_MINUTE: Bounded =
    Bounded::new("relay.rateLimit.connectionsPerMinute", 120, 0, 1_000_000);
/// New reservations per hour per peer id and per address (renewals are not
/// counted); 0 is no limit.
pub const RESERVATIONS_PER_HOUR: Bounded =
    Bounded::new("relay.rateLimit.reservationsPerHour", 120, 0, 1_000_000);

pub const GOSSIP_MAX_MESSAGE_SIZE: Bounded =
    Bounded::new("gossipSub.maxMessageSize", 1 << 20, 1024, 16 << 20);

/// 8192 lines of about 300 bytes: 2.4 MiB at most while the reader is stuck.
pub const LOG_QUEUE_LINES: Bounded = Bounded::new("log.queueLines", 8192, 64, 1 << 20);

/// js-libp2p sends one WebSocket message per noise message (at most 65535
/// bytes, its 2-byte length prefix in a message of its own); rust-libp2p at
/// most 65537. A frame header is a claim the WebSocket codec allocates for
/// before any key is checked: twice the largest noise message keeps a pending
/// connection under 128 KiB (16 MiB at the default maxPendingIncoming of 128)
/// instead of 256 MiB each.
pub const WEBSOCKET_MAX_MESSAGE_SIZE: Bounded =
    Bounded::new("websocket.maxMessageSize", 128 << 10, 65_537, 16 << 20);

pub const SHUTDOWN_TIMEOUT: Bounded = Bounded::new("shutdown.timeout", 5_000, 0, 600_000);

pub const CONTROL_MAX_CLIENTS: Bounded = Bounded::new("control.maxClients", 32, 1, 1024);
/// At least a second, so a client has time to send its hello; at most an
/// hour, so that a forgotten client gives its slot back the same day.
pub const CONTROL_IDLE_TIMEOUT: Bounded =
    Bounded::new("control.idleTimeout", 60_000, 1_000, 3_600_000);
/// A uid or gid in `control.adminUids`/`adminGids`; (uid_t)-1 is "nobody at
/// all" to the kernel, never a caller. Lists have no default element.
pub const ADMIN_ID: Bounded = Bounded::new("control.adminUids[]", 0, 0, u32::MAX as u64 - 1);

/// 0: one worker thread per CPU less one (the main thread runs the swarm), at
/// least one.
pub const RUNTIME_THREADS: Bounded = Bounded::new("runtime.threads", 0, 0, 1024);

pub const JOURNAL_MAX_EVENTS: Bounded =
    Bounded::new("journal.maxEvents", 100_000, 100, 100_000_000);
pub const JOURNAL_MAX_BYTES: Bounded =
    Bounded::new("journal.maxBytes", 64 << 20, 1 << 20, 64 << 30);

/// Federated relays: at most this many (a full mesh of 65 relays; larger
/// fleets peer through hubs, see README), redialled from `redialMin`
/// doubling to `redialMax` after a drop, and pinged every `pingInterval`
/// (two pings unanswered within an interval each close the connection).
pub const FEDERATION_PEERS_MAX: usize = 64;
pub const FEDERATION_REDIAL_MIN: Bounded =
    Bounded::new("federation.redialMin", 1_000, 100, 600_000);
pub const FEDERATION_REDIAL_MAX: Bounded =
    Bounded::new("federation.redialMax", 60_000, 1_000, 3_600_000);
pub const FEDERATION_PING_INTERVAL: Bounded =
    Bounded::new("federation.pingInterval", 5_000, 1_000, 60_000);

/// Every number of the file with a default, for the tests that hold the
/// copies (the embedded file, README) to it.
pub const ALL: [Bounded; 41] = [
    FEDERATION_REDIAL_MIN,
    FEDERATION_REDIAL_MAX,
    FEDERATION_PING_INTERVAL,
    CIRCUIT_BYTES_PER_SECOND,
    AUTO_BAN_REFUSALS,
    AUTO_BAN_WINDOW,
    AUTO_BAN_DURATION,
    MAX_CONNECTIONS_PER_IP,
    MAX_PENDING_INCOMING_PER_IP,
    CONNECTIONS_PER_MINUTE,
    RESERVATIONS_PER_HOUR,
    ADVERTISE_TTL,
    MAX_RESERVATIONS,
    MAX_RESERVATIONS_PER_PEER,
    MAX_RESERVATIONS_PER_IP,
    MAX_RESERVATIONS_PER_PREFIX,
    RESERVATION_TTL,
    MAX_CIRCUITS,
    MAX_CIRCUITS_PER_PEER,
    MAX_CIRCUITS_PER_IP,
    MAX_CIRCUITS_PER_PREFIX,
    CIRCUIT_IDLE_TIMEOUT,
    SOURCE_IPV4_PREFIX,
    SOURCE_IPV6_PREFIX,
    CIRCUIT_DURATION,
    CIRCUIT_DATA,
    REQUESTS_PER_SECOND,
    REQUEST_BURST,
    MAX_CONNECTIONS,
    MIN_CONNECTIONS,
    MAX_CONNECTIONS_PER_PEER,
    MAX_PENDING_INCOMING,
    GOSSIP_MAX_MESSAGE_SIZE,
    LOG_QUEUE_LINES,
    WEBSOCKET_MAX_MESSAGE_SIZE,
    SHUTDOWN_TIMEOUT,
    CONTROL_MAX_CLIENTS,
    CONTROL_IDLE_TIMEOUT,
    RUNTIME_THREADS,
    JOURNAL_MAX_EVENTS,
    JOURNAL_MAX_BYTES,
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The value at a dotted key of a JSON document.
    fn at<'a>(doc: &'a Value, key: &str) -> Option<&'a Value> {
        key.split('.').try_fold(doc, |v, k| v.get(k))
    }

    #[test]
    fn the_embedded_file_spells_every_default() {
        let doc: Value = serde_json::from_str(super::super::EMBEDDED_DEFAULT).unwrap();
        for b in ALL.iter() {
            assert_eq!(
                at(&doc, b.key).and_then(Value::as_u64),
                Some(b.default),
                "default-config.json: {}",
                b.key
            );
            assert!(b.min <= b.default && b.default <= b.max, "{}", b.key);
        }
        assert_eq!(at(&doc, "listen").unwrap(), &serde_json::json!(LISTEN));
        assert_eq!(
            at(&doc, "gossipSub.topics").unwrap(),
            &serde_json::json!(TOPICS)
        );
    }

    /// README's configuration table: the row of each key (or of a row such as
    /// "`relay.requests.perSecond`, `.burst`" that lists it) shows its default
    /// first in the default column.
    #[test]
    fn readme_states_every_default() {
        let readme = include_str!("../../../README.md");
        let rows: Vec<Vec<&str>> = readme
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| l.split(" | ").collect())
            .collect();
        for b in ALL.iter() {
            let (parent, last) = b.key.rsplit_once('.').unwrap();
            let found = rows.iter().find_map(|row| {
                let names: Vec<&str> = row[0]
                    .trim_start_matches("| ")
                    .split(", ")
                    .map(|n| n.split(' ').next().unwrap_or(n))
                    .collect();
                let first = names[0].trim_matches('`');
                let index = names.iter().position(|n| {
                    let n = n.trim_matches('`');
                    n == b.key
                        || (first.starts_with(&format!("{parent}.")) && n == format!(".{last}"))
                })?;
                row[1].split(", ").nth(index)
            });
            let cell = found.unwrap_or_else(|| panic!("README has no row for {}", b.key));
            let value = cell.split('`').nth(1).unwrap_or("");
            assert_eq!(value, b.default.to_string(), "README default of {}", b.key);
        }
    }
}
