//! `status`: who the relay is and how busy it is, in one cheap call. What
//! the health sidecar's `/status` and `/health` and `bsv-p2p-ctl status`
//! show; `stats` has the full counters.

use serde::{Deserialize, Serialize};

use super::{FederationPeer, Method, NoParams};
use crate::{Role, Timestamp};

pub struct Status;

impl Method for Status {
    const NAME: &'static str = "status";
    const ROLE: Role = Role::ReadOnly;
    type Params = NoParams;
    type Result = StatusResult;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusResult {
    pub peer_id: String,
    /// The relay's own version, e.g. `0.1.0`.
    pub version: String,
    pub uptime_secs: u64,
    pub started_at: Timestamp,
    /// Addresses the relay listens on, as bound.
    pub listen_addrs: Vec<String>,
    /// Addresses configured or confirmed as reachable from outside: what
    /// reservations carry.
    pub announce_addrs: Vec<String>,
    /// The addresses bots dial, with `/p2p/<peerId>`.
    pub relay_addrs: Vec<String>,
    pub counts: Counts,
    /// The relays in `federation.peers` and where the relay stands with
    /// each (since 1.5); absent when none are configured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federation: Vec<FederationPeer>,
}

/// What is open right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Counts {
    pub connections: u64,
    /// Distinct connected peers.
    pub peers: u64,
    pub reservations: u64,
    pub circuits: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn status_roundtrips() {
        roundtrip(
            &StatusResult {
                peer_id: "12D3KooWRelay".into(),
                version: "0.1.0".into(),
                uptime_secs: 3600,
                started_at: Timestamp::from_unix_millis(1_738_324_800_000),
                listen_addrs: vec!["/ip4/0.0.0.0/tcp/4001".into()],
                announce_addrs: vec!["/ip4/203.0.113.7/tcp/4001".into()],
                relay_addrs: vec!["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWRelay".into()],
                counts: Counts {
                    connections: 12,
                    peers: 10,
                    reservations: 9,
                    circuits: 2,
                },
                federation: Vec::new(),
            },
            json!({
                "peerId": "12D3KooWRelay",
                "version": "0.1.0",
                "uptimeSecs": 3600,
                "startedAt": "2025-01-31T12:00:00.000Z",
                "listenAddrs": ["/ip4/0.0.0.0/tcp/4001"],
                "announceAddrs": ["/ip4/203.0.113.7/tcp/4001"],
                "relayAddrs": ["/ip4/203.0.113.7/tcp/4001/p2p/12D3KooWRelay"],
                "counts": {"connections": 12, "peers": 10, "reservations": 9, "circuits": 2}
            }),
        );
    }

    #[test]
    fn a_newer_relay_may_add_fields() {
        let json = json!({
            "peerId": "p", "version": "0.2.0", "uptimeSecs": 1,
            "startedAt": "2025-01-31T12:00:00.000Z", "listenAddrs": [], "announceAddrs": [],
            "relayAddrs": [], "counts": {"connections": 1, "gossipTopics": 3}, "region": "eu"
        });
        let s: StatusResult = serde_json::from_value(json).unwrap();
        assert_eq!(s.counts.connections, 1);
    }
}
