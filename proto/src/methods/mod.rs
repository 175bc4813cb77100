//! Every method of the control protocol, one file each, like mini-redis's
//! `cmd/`: the method's name, its params and its result, in one place. The
//! server parses params with [`parse_params`] (so every method rejects bad
//! params the same way), the relay answers with the result type, and the
//! client decodes the same type: a result can only be what the type allows.
//!
//! Params reject unknown fields: a typo in a sidecar is a loud -32602, not
//! a silently ignored option. Results and events accept unknown fields: a
//! minor version adds fields, and an older sidecar must keep working. Fields
//! added in a minor version are therefore always optional.

mod acl;
mod circuits;
mod federation;
mod hello;
mod peers;
mod reload;
mod reservations;
mod shutdown;
mod snapshot;
mod stats;
mod status;
mod subscribe;

pub use acl::{
    AccessList, AclAdd, AclAddParams, AclAddResult, AclEntry, AclList, AclListResult, AclOrigin,
    AclRemove, AclRemoveParams, AclRemoveResult, MAX_NOTE,
};
pub use circuits::{Circuit, CircuitLimit, Circuits, CircuitsResult};
pub use federation::{FederationPeer, FederationState};
pub use hello::{major_of, supports, Greeting, Hello, HelloParams};
pub use peers::{Peer, PeerConnection, Peers, PeersResult};
pub use reload::{Reload, ReloadResult};
pub use reservations::{Reservation, Reservations, ReservationsResult};
pub use shutdown::{Shutdown, ShutdownParams, ShutdownResult};
pub use snapshot::{Snapshot, SnapshotParams, SnapshotResult};
pub use stats::{
    BytesRelayed, CircuitStats, ConnectionStats, EventStats, LogStats, ProcessStats,
    ReservationStats, Stats, StatsResult,
};
pub use status::{Counts, Status, StatusResult};
pub use subscribe::{Subscribe, SubscribeParams, SubscribeResult};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::jsonrpc::{code, params_object, RpcError};
use crate::Role;

/// The notification that carries one event to a subscriber.
pub const EVENT: &str = "event";

/// A method: its wire name and the types of its params and result. The
/// unit structs that implement it (`methods::Status`, …) exist only to name
/// a method in [`Client::request`](crate::Client::request).
pub trait Method {
    const NAME: &'static str;
    /// The role a client needs to call it. No default: every method, and
    /// every method added later, decides whether a read-only sidecar such
    /// as the health server may call it.
    const ROLE: Role;
    type Params: Serialize + DeserializeOwned + Send + 'static;
    type Result: Serialize + DeserializeOwned + Send + 'static;

    /// Checks beyond what the types say; the message names the field.
    fn check(_params: &Self::Params) -> Result<(), String> {
        Ok(())
    }
}

/// The params of a method that takes none: `{}`, null or absent; any field
/// is an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Every method a client may call, for "method not found" messages.
pub const NAMES: &[&str] = &[
    Hello::NAME,
    Status::NAME,
    Stats::NAME,
    Peers::NAME,
    Reservations::NAME,
    Circuits::NAME,
    Subscribe::NAME,
    Snapshot::NAME,
    Reload::NAME,
    Shutdown::NAME,
    AclList::NAME,
    AclAdd::NAME,
    AclRemove::NAME,
];

/// Decodes a method's params, answering -32602 with the field at fault.
pub fn parse_params<M: Method>(params: Option<Value>) -> Result<M::Params, RpcError> {
    let invalid = |detail: String| {
        RpcError::new(
            code::INVALID_PARAMS,
            format!("invalid params for {}: {detail}", M::NAME),
        )
    };
    let object = params_object(params).map_err(invalid)?;
    let params: M::Params =
        serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                invalid(inner.to_string())
            } else {
                invalid(format!("{path}: {inner}")).with_data(json!({ "field": path }))
            }
        })?;
    M::check(&params).map_err(invalid)?;
    Ok(params)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Serializes, deserializes and compares: what every method's types
    /// must survive.
    pub(crate) fn roundtrip<T>(value: &T, expected: Value)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_value(value).unwrap();
        assert_eq!(json, expected);
        let back: T = serde_json::from_value(json).unwrap();
        assert_eq!(&back, value);
    }

    #[test]
    fn no_params_accepts_nothing_but_nothing() {
        assert!(parse_params::<Status>(None).is_ok());
        assert!(parse_params::<Status>(Some(Value::Null)).is_ok());
        assert!(parse_params::<Status>(Some(json!({}))).is_ok());
        let e = parse_params::<Status>(Some(json!({"verbose": true}))).unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMS);
        assert!(
            e.message.contains("status") && e.message.contains("verbose"),
            "{e}"
        );
    }

    #[test]
    fn bad_params_name_the_field_and_the_expectation() {
        let e = parse_params::<Snapshot>(Some(json!({"path": 5}))).unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMS);
        assert!(
            e.message
                .starts_with("invalid params for snapshot: path: invalid type"),
            "{e}"
        );
        assert!(e.message.contains("expected"), "{e}");
        assert_eq!(e.data.as_deref(), Some(&json!({"field": "path"})));
        let e = parse_params::<Snapshot>(Some(json!({}))).unwrap_err();
        assert!(e.message.contains("missing field `path`"), "{e}");
        let e = parse_params::<Snapshot>(Some(json!([]))).unwrap_err();
        assert!(e.message.contains("must be an object"), "{e}");
    }

    #[test]
    fn every_name_is_distinct() {
        let mut names = NAMES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), NAMES.len());
    }
}
