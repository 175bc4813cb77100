//! The events a subscriber receives: everything that happened to
//! connections, reservations and circuits, with the reason for every
//! refusal. Each event is numbered by the relay's journal (`seq`, from 1,
//! never reused) and stamped (`ts`), so the log shipper can resume exactly
//! where it stopped and the backup tool can say which events a snapshot
//! includes.
//!
//! On the wire an event is one flat object: `seq`, `ts`, `kind` and the
//! kind's fields. A kind this version does not know decodes as
//! [`EventKind::Unknown`] with its fields kept, so an older sidecar survives
//! a newer relay and can still forward what it cannot interpret.

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{CircuitEnd, DenialReason, Direction, Timestamp, Transport};

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub ts: Timestamp,
    pub kind: EventKind,
}

impl Event {
    /// An event stamped now.
    pub fn new(seq: u64, kind: EventKind) -> Self {
        Self {
            seq,
            ts: Timestamp::now(),
            kind,
        }
    }

    /// The event that stands for `from..=to`, pruned from the journal before
    /// this subscriber read them. It carries `seq = to`, so a subscriber that
    /// records the last seq it saw resumes after the gap.
    pub fn gap(from: u64, to: u64) -> Self {
        Self::new(
            to,
            EventKind::Gap {
                from,
                to,
                lost: to + 1 - from,
            },
        )
    }
}

/// What happened. Peer ids and addresses are strings (this crate has no
/// libp2p); durations are milliseconds; `expiresAt` is unix seconds, as in
/// the reservation voucher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum EventKind {
    ConnectionOpened {
        peer_id: String,
        direction: Direction,
        transport: Transport,
        remote_addr: String,
    },
    ConnectionClosed {
        peer_id: String,
        transport: Transport,
        /// Why, when it was not a clean close.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cause: Option<String>,
        duration_ms: u64,
    },
    ReservationCreated {
        peer_id: String,
        expires_at: u64,
        addrs: Vec<String>,
    },
    ReservationRenewed {
        peer_id: String,
        expires_at: u64,
        addrs: Vec<String>,
    },
    ReservationExpired {
        peer_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Ended other than by expiry: the peer disconnected, was banned, …
    ReservationClosed {
        peer_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    ReservationDenied {
        peer_id: String,
        reason: DenialReason,
    },
    CircuitOpened {
        circuit_id: u64,
        src: String,
        dst: String,
        /// The circuit's time limit, when it has one (since 1.2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit_duration_ms: Option<u64>,
        /// The circuit's byte limit per direction, when it has one (since 1.2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit_bytes: Option<u64>,
    },
    CircuitClosed {
        circuit_id: u64,
        src: String,
        dst: String,
        bytes_src_to_dst: u64,
        bytes_dst_to_src: u64,
        duration_ms: u64,
        reason: CircuitEnd,
        /// As in `circuit_opened` (since 1.2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit_duration_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit_bytes: Option<u64>,
    },
    CircuitDenied {
        src: String,
        /// Absent when the request named no valid destination.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dst: Option<String>,
        reason: DenialReason,
    },
    /// A hop request refused before it was known to be a reserve or a
    /// connect (malformed, unexpected, or over a relayed connection).
    RequestDenied {
        peer_id: String,
        reason: DenialReason,
    },
    /// A peer was put on the deny list (its connections are closed).
    PeerBanned {
        peer_id: String,
        reason: String,
        /// When the ban ends (since 1.4); absent: until removed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<Timestamp>,
    },
    /// A network was put on the deny list, or an address banned for a
    /// while by the relay itself (since 1.4).
    AddressBanned {
        cidr: String,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<Timestamp>,
    },
    /// A peer went over a rate limit: at most one event per peer and
    /// `what` a minute.
    RateLimited {
        peer_id: String,
        /// What was limited: `reservation`, `request`, …
        what: String,
    },
    /// An address went over a rate limit before any peer id was known
    /// (since 1.4): at most one event per address and `what` a minute.
    AddressRateLimited {
        address: String,
        /// What was limited: `connection`.
        what: String,
    },
    /// A relay of `federation.peers` is connected again, or for the first
    /// time (since 1.5).
    FederationPeerUp {
        peer_id: String,
        remote_addr: String,
        /// How long it was down, in milliseconds; absent the first time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        down_ms: Option<u64>,
    },
    /// A federated relay's last connection closed, or it stopped answering
    /// pings (since 1.5). The relay redials it with a backoff.
    FederationPeerDown {
        peer_id: String,
        /// Why: the connection's error, `unresponsive`, or `closed`.
        cause: String,
        /// How long it was up, in milliseconds.
        up_ms: u64,
    },
    ConfigReloaded {
        applied: Vec<String>,
        restart_required: Vec<String>,
    },
    /// A failure that is not a refusal. `errorKind` is the same key as in
    /// `stats.errors` (the field cannot be `kind`: that names the event).
    Error { error_kind: String, message: String },
    /// Sequence numbers `from..=to` (`lost` events) were pruned from the
    /// journal before this subscriber read them. Never stored; sent only to
    /// the subscriber that asked for them, with `seq = to`.
    Gap { from: u64, to: u64, lost: u64 },
    /// A kind this version does not know: its name and every other field
    /// as sent (`seq` and `ts` are on the [`Event`]).
    #[serde(skip)]
    Unknown {
        kind: String,
        fields: Map<String, Value>,
    },
}

/// Every kind this version knows, as on the wire.
pub const KINDS: &[&str] = &[
    "connection_opened",
    "connection_closed",
    "reservation_created",
    "reservation_renewed",
    "reservation_expired",
    "reservation_closed",
    "reservation_denied",
    "circuit_opened",
    "circuit_closed",
    "circuit_denied",
    "request_denied",
    "peer_banned",
    "address_banned",
    "rate_limited",
    "address_rate_limited",
    "federation_peer_up",
    "federation_peer_down",
    "config_reloaded",
    "error",
    "gap",
];

impl EventKind {
    /// The `kind` on the wire.
    pub fn name(&self) -> &str {
        match self {
            Self::ConnectionOpened { .. } => "connection_opened",
            Self::ConnectionClosed { .. } => "connection_closed",
            Self::ReservationCreated { .. } => "reservation_created",
            Self::ReservationRenewed { .. } => "reservation_renewed",
            Self::ReservationExpired { .. } => "reservation_expired",
            Self::ReservationClosed { .. } => "reservation_closed",
            Self::ReservationDenied { .. } => "reservation_denied",
            Self::CircuitOpened { .. } => "circuit_opened",
            Self::CircuitClosed { .. } => "circuit_closed",
            Self::CircuitDenied { .. } => "circuit_denied",
            Self::RequestDenied { .. } => "request_denied",
            Self::PeerBanned { .. } => "peer_banned",
            Self::AddressBanned { .. } => "address_banned",
            Self::RateLimited { .. } => "rate_limited",
            Self::AddressRateLimited { .. } => "address_rate_limited",
            Self::FederationPeerUp { .. } => "federation_peer_up",
            Self::FederationPeerDown { .. } => "federation_peer_down",
            Self::ConfigReloaded { .. } => "config_reloaded",
            Self::Error { .. } => "error",
            Self::Gap { .. } => "gap",
            Self::Unknown { kind, .. } => kind,
        }
    }
}

/// A known event on the wire: `seq`, `ts`, then the kind's tag and fields,
/// written straight through (no intermediate JSON value): the relay writes
/// every event to its journal and to each subscriber, the log shipper reads
/// thousands a second.
#[derive(Serialize)]
struct Flat<'a> {
    seq: u64,
    ts: &'a Timestamp,
    #[serde(flatten)]
    kind: &'a EventKind,
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let body = match &self.kind {
            EventKind::Unknown { kind, fields } => {
                let mut body = Map::with_capacity(fields.len() + 1);
                body.insert("kind".into(), Value::String(kind.clone()));
                body.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                body
            }
            known => {
                return Flat {
                    seq: self.seq,
                    ts: &self.ts,
                    kind: known,
                }
                .serialize(s)
            }
        };
        let mut map = s.serialize_map(Some(body.len() + 2))?;
        map.serialize_entry("seq", &self.seq)?;
        map.serialize_entry("ts", &self.ts)?;
        for (k, v) in &body {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut object = Map::<String, Value>::deserialize(d)?;
        let mut take = |field: &str| {
            object
                .remove(field)
                .ok_or_else(|| D::Error::custom(format!("event: missing field `{field}`")))
        };
        let seq = u64::deserialize(take("seq")?)
            .map_err(|e| D::Error::custom(format!("event: seq: {e}")))?;
        let ts = Timestamp::deserialize(take("ts")?)
            .map_err(|e| D::Error::custom(format!("event {seq}: ts: {e}")))?;
        let kind = match object.get("kind") {
            Some(Value::String(kind)) => kind.clone(),
            _ => {
                return Err(D::Error::custom(format!(
                    "event {seq}: `kind` missing or not a string"
                )))
            }
        };
        let kind = if KINDS.contains(&kind.as_str()) {
            EventKind::deserialize(Value::Object(object))
                .map_err(|e| D::Error::custom(format!("event {seq} ({kind}): {e}")))?
        } else {
            object.remove("kind");
            EventKind::Unknown {
                kind,
                fields: object,
            }
        };
        Ok(Self { seq, ts, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// One event of every kind, with the JSON it must be.
    fn samples() -> Vec<(EventKind, Value)> {
        vec![
            (
                EventKind::ConnectionOpened {
                    peer_id: "12D3KooWA".into(),
                    direction: Direction::Inbound,
                    transport: Transport::Tcp,
                    remote_addr: "/ip4/198.51.100.4/tcp/50000".into(),
                },
                json!({"kind": "connection_opened", "peerId": "12D3KooWA", "direction": "inbound",
                       "transport": "tcp", "remoteAddr": "/ip4/198.51.100.4/tcp/50000"}),
            ),
            (
                EventKind::ConnectionClosed {
                    peer_id: "12D3KooWA".into(),
                    transport: Transport::Tcp,
                    cause: Some("keep-alive timeout".into()),
                    duration_ms: 61_000,
                },
                json!({"kind": "connection_closed", "peerId": "12D3KooWA", "transport": "tcp",
                       "cause": "keep-alive timeout", "durationMs": 61000}),
            ),
            (
                EventKind::ReservationCreated {
                    peer_id: "12D3KooWA".into(),
                    expires_at: 1_738_328_400,
                    addrs: vec!["/ip4/203.0.113.7/tcp/4001".into()],
                },
                json!({"kind": "reservation_created", "peerId": "12D3KooWA",
                       "expiresAt": 1738328400, "addrs": ["/ip4/203.0.113.7/tcp/4001"]}),
            ),
            (
                EventKind::ReservationRenewed {
                    peer_id: "12D3KooWA".into(),
                    expires_at: 1_738_332_000,
                    addrs: vec![],
                },
                json!({"kind": "reservation_renewed", "peerId": "12D3KooWA",
                       "expiresAt": 1738332000, "addrs": []}),
            ),
            (
                EventKind::ReservationExpired {
                    peer_id: "12D3KooWA".into(),
                    reason: None,
                },
                json!({"kind": "reservation_expired", "peerId": "12D3KooWA"}),
            ),
            (
                EventKind::ReservationClosed {
                    peer_id: "12D3KooWA".into(),
                    reason: Some("disconnected".into()),
                },
                json!({"kind": "reservation_closed", "peerId": "12D3KooWA", "reason": "disconnected"}),
            ),
            (
                EventKind::ReservationDenied {
                    peer_id: "12D3KooWA".into(),
                    reason: DenialReason::ReservationsFull,
                },
                json!({"kind": "reservation_denied", "peerId": "12D3KooWA", "reason": "reservations_full"}),
            ),
            (
                EventKind::CircuitOpened {
                    circuit_id: 7,
                    src: "12D3KooWA".into(),
                    dst: "12D3KooWB".into(),
                    limit_duration_ms: Some(120_000),
                    limit_bytes: None,
                },
                json!({"kind": "circuit_opened", "circuitId": 7, "src": "12D3KooWA", "dst": "12D3KooWB",
                       "limitDurationMs": 120000}),
            ),
            (
                EventKind::CircuitClosed {
                    circuit_id: 7,
                    src: "12D3KooWA".into(),
                    dst: "12D3KooWB".into(),
                    bytes_src_to_dst: 1024,
                    bytes_dst_to_src: 4096,
                    duration_ms: 1500,
                    reason: CircuitEnd::Done,
                    limit_duration_ms: None,
                    limit_bytes: Some(1 << 20),
                },
                json!({"kind": "circuit_closed", "circuitId": 7, "src": "12D3KooWA", "dst": "12D3KooWB",
                       "bytesSrcToDst": 1024, "bytesDstToSrc": 4096, "durationMs": 1500, "reason": "done",
                       "limitBytes": 1048576}),
            ),
            (
                EventKind::CircuitDenied {
                    src: "12D3KooWA".into(),
                    dst: Some("12D3KooWC".into()),
                    reason: DenialReason::NoReservation,
                },
                json!({"kind": "circuit_denied", "src": "12D3KooWA", "dst": "12D3KooWC",
                       "reason": "no_reservation"}),
            ),
            (
                EventKind::RequestDenied {
                    peer_id: "12D3KooWA".into(),
                    reason: DenialReason::RelayedConnection,
                },
                json!({"kind": "request_denied", "peerId": "12D3KooWA", "reason": "relayed_connection"}),
            ),
            (
                EventKind::PeerBanned {
                    peer_id: "12D3KooWA".into(),
                    reason: "acl deny".into(),
                    until: None,
                },
                json!({"kind": "peer_banned", "peerId": "12D3KooWA", "reason": "acl deny"}),
            ),
            (
                EventKind::AddressBanned {
                    cidr: "203.0.113.7/32".into(),
                    reason: "auto: 600 refusals in 60 s".into(),
                    until: Some(Timestamp::from_unix_millis(1_738_325_400_000)),
                },
                json!({"kind": "address_banned", "cidr": "203.0.113.7/32",
                       "reason": "auto: 600 refusals in 60 s", "until": "2025-01-31T12:10:00.000Z"}),
            ),
            (
                EventKind::AddressRateLimited {
                    address: "203.0.113.7".into(),
                    what: "connection".into(),
                },
                json!({"kind": "address_rate_limited", "address": "203.0.113.7", "what": "connection"}),
            ),
            (
                EventKind::RateLimited {
                    peer_id: "12D3KooWA".into(),
                    what: "reservation".into(),
                },
                json!({"kind": "rate_limited", "peerId": "12D3KooWA", "what": "reservation"}),
            ),
            (
                EventKind::FederationPeerUp {
                    peer_id: "12D3KooWEu".into(),
                    remote_addr: "/ip4/198.51.100.9/tcp/4001".into(),
                    down_ms: Some(4200),
                },
                json!({"kind": "federation_peer_up", "peerId": "12D3KooWEu",
                       "remoteAddr": "/ip4/198.51.100.9/tcp/4001", "downMs": 4200}),
            ),
            (
                EventKind::FederationPeerDown {
                    peer_id: "12D3KooWEu".into(),
                    cause: "unresponsive".into(),
                    up_ms: 60000,
                },
                json!({"kind": "federation_peer_down", "peerId": "12D3KooWEu",
                       "cause": "unresponsive", "upMs": 60000}),
            ),
            (
                EventKind::ConfigReloaded {
                    applied: vec!["relay.reservations.max".into()],
                    restart_required: vec![],
                },
                json!({"kind": "config_reloaded", "applied": ["relay.reservations.max"],
                       "restartRequired": []}),
            ),
            (
                EventKind::Error {
                    error_kind: "listener".into(),
                    message: "address in use".into(),
                },
                json!({"kind": "error", "errorKind": "listener", "message": "address in use"}),
            ),
            (
                EventKind::Gap {
                    from: 3,
                    to: 9,
                    lost: 7,
                },
                json!({"kind": "gap", "from": 3, "to": 9, "lost": 7}),
            ),
        ]
    }

    #[test]
    fn every_kind_roundtrips_flat_with_seq_and_ts() {
        let samples = samples();
        assert_eq!(samples.len(), KINDS.len(), "a sample for every kind");
        for (seq, (kind, body)) in (1..).zip(samples) {
            assert_eq!(kind.name(), body["kind"], "name() of {kind:?}");
            assert!(KINDS.contains(&kind.name()));
            let event = Event {
                seq,
                ts: Timestamp::from_unix_millis(1_738_324_800_000),
                kind,
            };
            let json = serde_json::to_value(&event).unwrap();
            let mut expected = json!({"seq": seq, "ts": "2025-01-31T12:00:00.000Z"});
            expected
                .as_object_mut()
                .unwrap()
                .extend(body.as_object().unwrap().clone());
            assert_eq!(json, expected);
            assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
        }
    }

    #[test]
    fn the_wire_order_is_seq_ts_kind() {
        let e = Event {
            seq: 1,
            ts: Timestamp::from_unix_millis(0),
            kind: EventKind::Gap {
                from: 1,
                to: 1,
                lost: 1,
            },
        };
        assert!(serde_json::to_string(&e)
            .unwrap()
            .starts_with(r#"{"seq":1,"ts":"1970-01-01T00:00:00.000Z","kind":"gap""#));
    }

    #[test]
    fn an_unknown_kind_is_kept_and_forwarded_unchanged() {
        let json = json!({"seq": 5, "ts": "2025-01-31T12:00:00.000Z", "kind": "gossip_relayed",
                          "topic": "/openclaw/announce/1.0.0", "bytes": 512});
        let event: Event = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(event.kind.name(), "gossip_relayed");
        let EventKind::Unknown { fields, .. } = &event.kind else {
            panic!("{event:?}")
        };
        assert_eq!(fields["bytes"], 512);
        assert_eq!(serde_json::to_value(&event).unwrap(), json);
    }

    #[test]
    fn known_kinds_tolerate_new_fields_but_not_missing_ones() {
        let e: Event = serde_json::from_value(json!({"seq": 1, "ts": "2025-01-31T12:00:00.000Z",
            "kind": "peer_banned", "peerId": "p", "reason": "r", "banCount": 99}))
        .unwrap();
        assert!(matches!(e.kind, EventKind::PeerBanned { .. }));
        let err =
            serde_json::from_value::<Event>(json!({"seq": 2, "ts": "2025-01-31T12:00:00.000Z",
            "kind": "peer_banned"}))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("event 2 (peer_banned): missing field `peerId`"),
            "{err}"
        );
    }

    #[test]
    fn a_gap_event_carries_the_last_lost_seq() {
        let gap = Event::gap(4, 10);
        assert_eq!(gap.seq, 10);
        assert_eq!(
            gap.kind,
            EventKind::Gap {
                from: 4,
                to: 10,
                lost: 7
            }
        );
    }
}
