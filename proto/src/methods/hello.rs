//! `hello`: the version handshake. The server greets first with a `hello`
//! notification carrying [`Greeting`], so a client learns the protocol
//! version before it sends anything and can refuse a major it does not
//! speak with a message that says which side to upgrade. A client may then
//! send its own `hello`; the server answers -32000 to an unknown major, so
//! the refusal is visible in the relay's log too.

use serde::{Deserialize, Serialize};

use super::Method;
use crate::{Role, PROTOCOL, PROTOCOL_VERSION};

pub struct Hello;

impl Method for Hello {
    const NAME: &'static str = "hello";
    const ROLE: Role = Role::ReadOnly;
    type Params = HelloParams;
    type Result = Greeting;

    fn check(params: &HelloParams) -> Result<(), String> {
        match major_of(&params.version) {
            Some(_) => Ok(()),
            None => Err(format!(
                "version: expected \"major.minor\" like \"{PROTOCOL_VERSION}\", got {:?}",
                params.version
            )),
        }
    }
}

/// The server's first line (as a notification) and its answer to `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Greeting {
    /// Always [`PROTOCOL`].
    pub protocol: String,
    /// The server's `major.minor`.
    pub version: String,
    /// `name/version` of the relay.
    pub server: String,
    /// What this connection may do, from the client process's uid and gid
    /// (since 1.1; absent from an older relay, which lets everyone do
    /// everything).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

impl Greeting {
    pub fn new(server: impl Into<String>, role: Role) -> Self {
        Self {
            protocol: PROTOCOL.into(),
            version: PROTOCOL_VERSION.into(),
            server: server.into(),
            role: Some(role),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelloParams {
    /// The client's `major.minor`.
    pub version: String,
    /// `name/version` of the client, for the relay's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// The major number of a `major.minor` version.
pub fn major_of(version: &str) -> Option<u32> {
    let (major, minor) = version.split_once('.')?;
    minor.parse::<u32>().ok()?;
    major.parse().ok()
}

/// Whether this crate speaks `version`: same major, any minor.
pub fn supports(version: &str) -> bool {
    major_of(version).is_some() && major_of(version) == major_of(PROTOCOL_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn greeting_roundtrips() {
        roundtrip(
            &Greeting::new("bsv-p2p-relay/0.1.0", Role::ReadOnly),
            json!({"protocol":"bsv-p2p-control","version":crate::PROTOCOL_VERSION,"server":"bsv-p2p-relay/0.1.0","role":"read-only"}),
        );
        roundtrip(
            &HelloParams {
                version: "1.0".into(),
                client: Some("bsv-p2p-ctl/0.1.0".into()),
            },
            json!({"version":"1.0","client":"bsv-p2p-ctl/0.1.0"}),
        );
    }

    #[test]
    fn a_greeting_from_a_relay_before_roles_has_none() {
        let g: Greeting = serde_json::from_value(
            json!({"protocol":"bsv-p2p-control","version":"1.0","server":"bsv-p2p-relay/0.1.0"}),
        )
        .unwrap();
        assert_eq!(g.role, None);
    }

    #[test]
    fn any_minor_of_the_same_major_is_supported() {
        assert!(supports("1.0") && supports("1.7"));
        assert!(!supports("2.0") && !supports("0.9") && !supports("1") && !supports("one.0"));
        assert_eq!(major_of("12.3"), Some(12));
    }
}
