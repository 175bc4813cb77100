//! The relays this relay peers with (`federation.peers`), as `status` and
//! `stats` list them (since 1.5). A federated relay is one the operator
//! listed; the relay keeps a connection to each and carries the bots'
//! gossip across with gossipsub's explicit peering.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Where the relay stands with one federated relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FederationState {
    /// At least one connection is open.
    Connected,
    /// A dial is under way.
    Dialing,
    /// Not connected; the next dial is at `nextDialAt`.
    Waiting,
}

impl FederationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Dialing => "dialing",
            Self::Waiting => "waiting",
        }
    }
}

/// One federated relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationPeer {
    pub peer_id: String,
    /// The configured addresses, with `/p2p/<peerId>`.
    pub addrs: Vec<String>,
    pub state: FederationState,
    /// Since when the state holds.
    pub since: Timestamp,
    /// The remote address of the open connection, when connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    /// The last time the relay heard from it (a connection opened or a
    /// ping answered); absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// The last ping's round trip, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_micros: Option<u64>,
    /// When the next dial is due, while waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_dial_at: Option<Timestamp>,
    /// How many times it came up (a first connection after none).
    #[serde(default)]
    pub ups: u64,
    /// Dials that failed since start.
    #[serde(default)]
    pub dial_failures: u64,
    /// Why the last dial or connection failed, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Gossip messages first received from it (new to this relay).
    #[serde(default)]
    pub messages_in: u64,
    /// Gossip messages this relay forwarded to it: each new message, on a
    /// topic it subscribes to, that neither came from it nor was written by
    /// it, while connected.
    #[serde(default)]
    pub messages_out: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn a_federation_peer_roundtrips() {
        roundtrip(
            &FederationPeer {
                peer_id: "12D3KooWEu".into(),
                addrs: vec!["/ip4/198.51.100.9/tcp/4001/p2p/12D3KooWEu".into()],
                state: FederationState::Connected,
                since: Timestamp::from_unix_millis(1_738_324_800_000),
                remote_addr: Some("/ip4/198.51.100.9/tcp/4001".into()),
                last_seen: Some(Timestamp::from_unix_millis(1_738_324_805_000)),
                rtt_micros: Some(81_000),
                next_dial_at: None,
                ups: 1,
                dial_failures: 0,
                last_error: None,
                messages_in: 40,
                messages_out: 38,
            },
            json!({
                "peerId": "12D3KooWEu",
                "addrs": ["/ip4/198.51.100.9/tcp/4001/p2p/12D3KooWEu"],
                "state": "connected",
                "since": "2025-01-31T12:00:00.000Z",
                "remoteAddr": "/ip4/198.51.100.9/tcp/4001",
                "lastSeen": "2025-01-31T12:00:05.000Z",
                "rttMicros": 81000,
                "ups": 1,
                "dialFailures": 0,
                "messagesIn": 40,
                "messagesOut": 38
            }),
        );
    }
}
