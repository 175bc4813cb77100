//! The file's shape, key for key, as serde reads it: camelCase keys, unknown
//! keys refused (with a did-you-mean from `suggest`), every field optional.
//! Absent keys take the defaults in `defaults`; this module knows types only,
//! ranges are checked in `validate`.

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
    pub federation: Option<Federation>,
}

/// Other relays of the fleet this relay keeps connected and gossips with.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Federation {
    pub peers: Option<Vec<String>>,
    #[serde(default, deserialize_with = "millis")]
    pub redial_min: Option<u64>,
    #[serde(default, deserialize_with = "millis")]
    pub redial_max: Option<u64>,
    #[serde(default, deserialize_with = "millis")]
    pub ping_interval: Option<u64>,
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
    pub sources: Option<Sources>,
    pub rate_limit: Option<RateLimit>,
    /// Peer ids and networks that may reserve and open circuits; any entry
    /// makes the relay private.
    pub allowlist: Option<Vec<String>>,
    /// Peer ids and networks refused everything.
    pub blocklist: Option<Vec<String>>,
    /// The guide's name of `blocklist`, still read, with a warning.
    pub block_trustedlist: Option<Vec<String>>,
    pub auto_ban: Option<AutoBan>,
}

/// Temporary bans of addresses that keep going over the limits.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AutoBan {
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "count")]
    pub refusals: Option<u64>,
    #[serde(default, deserialize_with = "millis")]
    pub window: Option<u64>,
    #[serde(default, deserialize_with = "millis")]
    pub duration: Option<u64>,
}

/// The guide's `relay.rateLimit`, per source address (and per peer id for
/// reservations).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimit {
    #[serde(default, deserialize_with = "count")]
    pub connections_per_minute: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    pub reservations_per_hour: Option<u64>,
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
    #[serde(default, deserialize_with = "count")]
    pub max_per_ip: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    pub max_per_prefix: Option<u64>,
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
    #[serde(default, deserialize_with = "count")]
    pub max_per_ip: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    pub max_per_prefix: Option<u64>,
    #[serde(default, deserialize_with = "millis")]
    pub idle_timeout: Option<u64>,
    #[serde(default, deserialize_with = "bytes")]
    pub max_bytes_per_second: Option<u64>,
}

/// How addresses are grouped into networks for the per-prefix caps.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Sources {
    pub exempt: Option<Vec<String>>,
    #[serde(default, deserialize_with = "count")]
    pub ipv4_prefix: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    pub ipv6_prefix: Option<u64>,
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
    #[serde(default, deserialize_with = "count")]
    pub max_connections_per_ip: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    pub max_pending_incoming_per_ip: Option<u64>,
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

fn unsigned<'de, D: Deserializer<'de>>(d: D, what: &'static str) -> Result<Option<u64>, D::Error> {
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
