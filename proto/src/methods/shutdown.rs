//! `shutdown`: stops the relay from a sidecar or `bsv-p2p-ctl`, the same
//! way SIGTERM does. The relay answers first and then stops, so the caller
//! knows the request was taken; every control client is then disconnected
//! with -32001.

use serde::{Deserialize, Serialize};

use super::Method;
use crate::Role;

pub struct Shutdown;

impl Method for Shutdown {
    const NAME: &'static str = "shutdown";
    /// Admin: stops the relay.
    const ROLE: Role = Role::Admin;
    type Params = ShutdownParams;
    type Result = ShutdownResult;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShutdownParams {
    /// Let open circuits finish (up to the timeout) instead of closing them
    /// now. Default true.
    #[serde(default = "yes")]
    pub drain: bool,
    /// How long draining may take; default: the relay's configured
    /// shutdown timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl Default for ShutdownParams {
    fn default() -> Self {
        Self {
            drain: true,
            timeout_ms: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShutdownResult {
    /// Whether the relay drains, as asked.
    pub draining: bool,
    /// How long the relay will wait for connections to close.
    pub timeout_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::parse_params;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn shutdown_roundtrips() {
        roundtrip(
            &ShutdownParams {
                drain: false,
                timeout_ms: Some(5000),
            },
            json!({"drain": false, "timeoutMs": 5000}),
        );
        roundtrip(
            &ShutdownResult {
                draining: true,
                timeout_ms: 10_000,
            },
            json!({"draining": true, "timeoutMs": 10000}),
        );
    }

    #[test]
    fn drain_is_the_default() {
        assert_eq!(
            parse_params::<Shutdown>(None).unwrap(),
            ShutdownParams::default()
        );
        let e = parse_params::<Shutdown>(Some(json!({"drain": "yes"}))).unwrap_err();
        assert!(e.message.contains("drain: invalid type"), "{e}");
    }
}
