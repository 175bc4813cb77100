//! `circuits`: the circuits open now, with bytes each way and their limits,
//! to see who is talking to whom through the relay and how much.

use serde::{Deserialize, Serialize};

use super::{Method, NoParams};
use crate::{Role, Timestamp};

pub struct Circuits;

impl Method for Circuits {
    const NAME: &'static str = "circuits";
    const ROLE: Role = Role::ReadOnly;
    type Params = NoParams;
    type Result = CircuitsResult;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitsResult {
    pub circuits: Vec<Circuit>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Circuit {
    /// The same id as in `circuit_opened` / `circuit_closed` events.
    pub id: u64,
    /// The peer that asked for the circuit.
    pub src: String,
    pub dst: String,
    pub bytes_src_to_dst: u64,
    pub bytes_dst_to_src: u64,
    pub opened_at: Timestamp,
    pub age_secs: u64,
    pub limit: CircuitLimit,
}

/// The limit sent to both ends. Absent means unlimited, as in the spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    /// Per direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn circuits_roundtrip() {
        roundtrip(
            &CircuitsResult {
                circuits: vec![
                    Circuit {
                        id: 7,
                        src: "12D3KooWA".into(),
                        dst: "12D3KooWB".into(),
                        bytes_src_to_dst: 1024,
                        bytes_dst_to_src: 2048,
                        opened_at: Timestamp::from_unix_millis(1_738_324_800_000),
                        age_secs: 30,
                        limit: CircuitLimit {
                            duration_secs: Some(120),
                            data_bytes: Some(131_072),
                        },
                    },
                    Circuit {
                        id: 8,
                        src: "12D3KooWB".into(),
                        dst: "12D3KooWA".into(),
                        bytes_src_to_dst: 0,
                        bytes_dst_to_src: 0,
                        opened_at: Timestamp::from_unix_millis(1_738_324_801_000),
                        age_secs: 29,
                        limit: CircuitLimit::default(),
                    },
                ],
            },
            json!({"circuits": [
                {
                    "id": 7, "src": "12D3KooWA", "dst": "12D3KooWB",
                    "bytesSrcToDst": 1024, "bytesDstToSrc": 2048,
                    "openedAt": "2025-01-31T12:00:00.000Z", "ageSecs": 30,
                    "limit": {"durationSecs": 120, "dataBytes": 131072}
                },
                {
                    "id": 8, "src": "12D3KooWB", "dst": "12D3KooWA",
                    "bytesSrcToDst": 0, "bytesDstToSrc": 0,
                    "openedAt": "2025-01-31T12:00:01.000Z", "ageSecs": 29,
                    "limit": {}
                }
            ]}),
        );
    }
}
