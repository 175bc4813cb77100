//! `reservations`: the reservations the relay holds, so an operator can see
//! which bots are reachable through it and until when.

use serde::{Deserialize, Serialize};

use super::{Method, NoParams};
use crate::{Role, Timestamp};

pub struct Reservations;

impl Method for Reservations {
    const NAME: &'static str = "reservations";
    const ROLE: Role = Role::ReadOnly;
    type Params = NoParams;
    type Result = ReservationsResult;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationsResult {
    pub reservations: Vec<Reservation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    pub peer_id: String,
    /// The relay addresses the reservation carries.
    pub addrs: Vec<String>,
    /// Unix seconds, as in the voucher the peer holds.
    pub expires_at: u64,
    pub created_at: Timestamp,
    pub renewals: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn reservations_roundtrip() {
        roundtrip(
            &ReservationsResult {
                reservations: vec![Reservation {
                    peer_id: "12D3KooWBot".into(),
                    addrs: vec!["/ip4/203.0.113.7/tcp/4001".into()],
                    expires_at: 1_738_328_400,
                    created_at: Timestamp::from_unix_millis(1_738_324_800_000),
                    renewals: 3,
                }],
            },
            json!({"reservations": [{
                "peerId": "12D3KooWBot",
                "addrs": ["/ip4/203.0.113.7/tcp/4001"],
                "expiresAt": 1738328400,
                "createdAt": "2025-01-31T12:00:00.000Z",
                "renewals": 3
            }]}),
        );
    }
}
