//! `stats`: every counter and gauge an exporter needs, in one call, so the
//! health sidecar's `/metrics` is a pure translation and never asks twice.
//! Totals count since the relay started; gauges are "now". Every counter
//! struct defaults missing fields to zero, so a newer sidecar reading an
//! older relay sees 0 for a counter that relay did not have yet.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{FederationPeer, Method, NoParams};
use crate::{CircuitEnd, DenialReason, Direction, Role, Transport};

pub struct Stats;

impl Method for Stats {
    const NAME: &'static str = "stats";
    const ROLE: Role = Role::ReadOnly;
    type Params = NoParams;
    type Result = StatsResult;
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatsResult {
    pub uptime_secs: u64,
    pub connections: ConnectionStats,
    pub reservations: ReservationStats,
    pub circuits: CircuitStats,
    pub bytes_relayed: BytesRelayed,
    /// Every refusal, reservations and circuits together, by reason.
    pub denials: BTreeMap<DenialReason, u64>,
    /// Failures that are not refusals (listener errors, failed handshakes,
    /// journal writes, …), by kind.
    pub errors: BTreeMap<String, u64>,
    pub process: ProcessStats,
    pub events: EventStats,
    pub log: LogStats,
    /// The relays in `federation.peers`, as in `status` (since 1.5).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub federation: Vec<FederationPeer>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConnectionStats {
    /// Open now.
    pub active: u64,
    /// Open now, by who dialled.
    pub by_direction: BTreeMap<Direction, u64>,
    /// Open now, by transport.
    pub by_transport: BTreeMap<Transport, u64>,
    pub opened_total: u64,
    pub closed_total: u64,
    /// Incoming connections not taken, by reason (caps and rate per
    /// address); also in `denials`. Since 1.3.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub denied: BTreeMap<DenialReason, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReservationStats {
    pub active: u64,
    /// The configured cap on `active`.
    pub max: u64,
    pub created: u64,
    pub renewed: u64,
    pub denied: BTreeMap<DenialReason, u64>,
    pub expired: u64,
    /// Ended other than by expiry (the peer disconnected, was banned, …).
    pub closed: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CircuitStats {
    pub active: u64,
    /// The configured cap on `active`.
    pub max: u64,
    pub opened: u64,
    pub closed: u64,
    pub closed_by_reason: BTreeMap<CircuitEnd, u64>,
    pub denied: BTreeMap<DenialReason, u64>,
}

/// Bytes relayed through circuits, both directions of every circuit summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BytesRelayed {
    pub src_to_dst: u64,
    pub dst_to_src: u64,
}

/// The relay process, for the standard `process_*` metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub threads: u64,
    /// Unix seconds.
    pub start_time_secs: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventStats {
    /// The newest event's sequence number; 0 before the first.
    pub last_seq: u64,
    /// Events the journal holds for resuming subscribers.
    pub journal_len: u64,
}

/// The relay's own log output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogStats {
    /// Lines dropped because the log reader (a pipe, journald, a container
    /// log driver) did not keep up; the relay never waits for it.
    pub lines_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn stats_roundtrip() {
        let stats = StatsResult {
            uptime_secs: 60,
            connections: ConnectionStats {
                active: 3,
                by_direction: [(Direction::Inbound, 2), (Direction::Outbound, 1)].into(),
                by_transport: [(Transport::Tcp, 2), (Transport::Websocket, 1)].into(),
                opened_total: 10,
                closed_total: 7,

                denied: Default::default(),
            },
            reservations: ReservationStats {
                active: 2,
                max: 128,
                created: 5,
                renewed: 4,
                denied: [(DenialReason::ReservationsFull, 1)].into(),
                expired: 1,
                closed: 2,
            },
            circuits: CircuitStats {
                active: 1,
                max: 16,
                opened: 6,
                closed: 5,
                closed_by_reason: [(CircuitEnd::Done, 4), (CircuitEnd::Reset, 1)].into(),
                denied: [(DenialReason::NoReservation, 2)].into(),
            },
            bytes_relayed: BytesRelayed {
                src_to_dst: 1000,
                dst_to_src: 2000,
            },
            denials: [
                (DenialReason::ReservationsFull, 1),
                (DenialReason::NoReservation, 2),
            ]
            .into(),
            errors: [("listener".to_string(), 1)].into(),
            process: ProcessStats {
                rss_bytes: 20 << 20,
                cpu_seconds: 1.5,
                open_fds: 40,
                threads: 6,
                start_time_secs: 1_738_324_800,
            },
            events: EventStats {
                last_seq: 42,
                journal_len: 42,
            },
            log: LogStats { lines_dropped: 3 },
            federation: Vec::new(),
        };
        roundtrip(
            &stats,
            json!({
                "uptimeSecs": 60,
                "connections": {
                    "active": 3,
                    "byDirection": {"inbound": 2, "outbound": 1},
                    "byTransport": {"tcp": 2, "websocket": 1},
                    "openedTotal": 10, "closedTotal": 7
                },
                "reservations": {
                    "active": 2, "max": 128, "created": 5, "renewed": 4,
                    "denied": {"reservations_full": 1}, "expired": 1, "closed": 2
                },
                "circuits": {
                    "active": 1, "max": 16, "opened": 6, "closed": 5,
                    "closedByReason": {"done": 4, "reset": 1},
                    "denied": {"no_reservation": 2}
                },
                "bytesRelayed": {"srcToDst": 1000, "dstToSrc": 2000},
                "denials": {"no_reservation": 2, "reservations_full": 1},
                "errors": {"listener": 1},
                "process": {
                    "rssBytes": 20971520, "cpuSeconds": 1.5, "openFds": 40, "threads": 6,
                    "startTimeSecs": 1738324800
                },
                "events": {"lastSeq": 42, "journalLen": 42},
                "log": {"linesDropped": 3}
            }),
        );
    }

    #[test]
    fn counters_an_older_relay_lacks_read_as_zero() {
        let s: StatsResult = serde_json::from_value(json!({"uptimeSecs": 5})).unwrap();
        assert_eq!(s.uptime_secs, 5);
        assert_eq!(s.circuits.max, 0);
    }
}
