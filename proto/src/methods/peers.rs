//! `peers`: every connected peer with its connections, for operators asking
//! "is bot X connected, how, since when, and does it hold a reservation".

use serde::{Deserialize, Serialize};

use super::{Method, NoParams};
use crate::{Direction, Role, Timestamp, Transport};

pub struct Peers;

impl Method for Peers {
    const NAME: &'static str = "peers";
    const ROLE: Role = Role::ReadOnly;
    type Params = NoParams;
    type Result = PeersResult;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeersResult {
    pub peers: Vec<Peer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub peer_id: String,
    pub connections: Vec<PeerConnection>,
    /// Holds a reservation on this relay.
    pub reserved: bool,
    /// From identify, once the peer has sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerConnection {
    pub direction: Direction,
    pub transport: Transport,
    pub remote_addr: String,
    pub opened_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn peers_roundtrip() {
        roundtrip(
            &PeersResult {
                peers: vec![
                    Peer {
                        peer_id: "12D3KooWBot".into(),
                        connections: vec![PeerConnection {
                            direction: Direction::Inbound,
                            transport: Transport::Websocket,
                            remote_addr: "/ip4/198.51.100.4/tcp/51234/ws".into(),
                            opened_at: Timestamp::from_unix_millis(1_738_324_800_500),
                        }],
                        reserved: true,
                        agent_version: Some("bsv-p2p/1.2.0".into()),
                    },
                    Peer {
                        peer_id: "12D3KooWOther".into(),
                        connections: vec![],
                        reserved: false,
                        agent_version: None,
                    },
                ],
            },
            json!({"peers": [
                {
                    "peerId": "12D3KooWBot",
                    "connections": [{
                        "direction": "inbound", "transport": "websocket",
                        "remoteAddr": "/ip4/198.51.100.4/tcp/51234/ws",
                        "openedAt": "2025-01-31T12:00:00.500Z"
                    }],
                    "reserved": true,
                    "agentVersion": "bsv-p2p/1.2.0"
                },
                {"peerId": "12D3KooWOther", "connections": [], "reserved": false}
            ]}),
        );
    }
}
