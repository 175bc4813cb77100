//! `acl.list`, `acl.add`, `acl.remove`: who may use the relay, changed at run
//! time and persisted by the relay. An entry names a peer id or a network
//! (CIDR); a deny entry may expire (a ban for a while). Types only in this
//! crate; the relay decides what the lists mean and validates peer ids and
//! networks (it has libp2p).
//!
//! Before 1.4 the relay answered every `acl.*` call with an error, so the
//! shapes here (the `cidr`, `forMs`, `expiresAt` and `origin` fields, a
//! `peerId` that is absent on an entry for a network) broke no reader.

use serde::{Deserialize, Serialize};

use super::{Method, NoParams};
use crate::{Role, Timestamp};

/// The longest note kept with an entry, in bytes.
pub const MAX_NOTE: usize = 256;

pub struct AclList;

impl Method for AclList {
    const NAME: &'static str = "acl.list";
    const ROLE: Role = Role::ReadOnly;
    type Params = NoParams;
    type Result = AclListResult;
}

pub struct AclAdd;

impl Method for AclAdd {
    const NAME: &'static str = "acl.add";
    /// Admin: changes who may use the relay, and the relay persists it.
    const ROLE: Role = Role::Admin;
    type Params = AclAddParams;
    type Result = AclAddResult;

    fn check(params: &AclAddParams) -> Result<(), String> {
        check_subject(params.peer_id.as_deref(), params.cidr.as_deref())?;
        if let Some(note) = &params.note {
            if note.len() > MAX_NOTE {
                return Err(format!(
                    "note: at most {MAX_NOTE} bytes, got {}",
                    note.len()
                ));
            }
        }
        match (params.for_ms, params.list) {
            (Some(0), _) => Err("forMs: expected at least 1 millisecond, got 0".into()),
            (Some(_), AccessList::Allow) => {
                Err("forMs: only a deny entry (a ban) can expire; leave it out for allow".into())
            }
            _ => Ok(()),
        }
    }
}

pub struct AclRemove;

impl Method for AclRemove {
    const NAME: &'static str = "acl.remove";
    /// Admin: changes who may use the relay, and the relay persists it.
    const ROLE: Role = Role::Admin;
    type Params = AclRemoveParams;
    type Result = AclRemoveResult;

    fn check(params: &AclRemoveParams) -> Result<(), String> {
        check_subject(params.peer_id.as_deref(), params.cidr.as_deref())
    }
}

/// Exactly one of a peer id and a network, neither blank.
fn check_subject(peer_id: Option<&str>, cidr: Option<&str>) -> Result<(), String> {
    match (peer_id, cidr) {
        (Some(_), Some(_)) => {
            Err("peerId, cidr: give one of them, not both (one entry names one subject)".into())
        }
        (None, None) => Err(
            "peerId, cidr: give one of them: a peer id like 12D3KooW… or a network like 203.0.113.0/24"
                .into(),
        ),
        (Some(p), None) if p.trim().is_empty() => {
            Err("peerId: expected a peer id like 12D3KooW…, got an empty string".into())
        }
        (None, Some(c)) if c.trim().is_empty() => {
            Err("cidr: expected an address or a network like 203.0.113.0/24, got an empty string".into())
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessList {
    Allow,
    Deny,
}

impl AccessList {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// Where an entry comes from: `acl.add` (persisted by the relay), the
/// config file (`relay.allowlist`, `relay.blocklist`; changed by editing
/// the file and reloading), or the relay's automatic temporary bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclOrigin {
    Control,
    Config,
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclEntry {
    /// The peer the entry names; absent for a network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// The network the entry names (`203.0.113.0/24`, `2001:db8::/48`; a
    /// single address has /32 or /128); absent for a peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    pub list: AccessList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub added_at: Timestamp,
    /// When a ban ends; absent: until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default = "control_origin")]
    pub origin: AclOrigin,
}

fn control_origin() -> AclOrigin {
    AclOrigin::Control
}

impl AclEntry {
    /// The peer id or network, as written.
    pub fn subject(&self) -> &str {
        self.peer_id
            .as_deref()
            .or(self.cidr.as_deref())
            .unwrap_or("")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclListResult {
    /// Every entry in force: from the config file, from `acl.add`, and the
    /// automatic bans; expired bans are gone.
    pub entries: Vec<AclEntry>,
    /// True when any allow entry exists: reservations and circuits are then
    /// refused to everyone not on the allowlist.
    #[serde(default)]
    pub private: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AclAddParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    pub list: AccessList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Deny only: the ban ends after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclAddResult {
    /// False when the subject was already on that list (its note and expiry
    /// are updated).
    pub added: bool,
    pub entry: AclEntry,
    /// Connections the relay closed because of this entry (a deny closes
    /// the subject's connections, with their reservations and circuits).
    #[serde(default)]
    pub disconnected: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AclRemoveParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    pub list: AccessList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclRemoveResult {
    /// False when the subject was not on that list (entries from the config
    /// file are removed by editing it).
    pub removed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::parse_params;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    fn entry() -> AclEntry {
        AclEntry {
            peer_id: Some("12D3KooWBad".into()),
            cidr: None,
            list: AccessList::Deny,
            note: Some("spam".into()),
            added_at: Timestamp::from_unix_millis(1_738_324_800_000),
            expires_at: Some(Timestamp::from_unix_millis(1_738_328_400_000)),
            origin: AclOrigin::Control,
        }
    }

    #[test]
    fn acl_roundtrips() {
        let entry_json = json!({
            "peerId": "12D3KooWBad", "list": "deny", "note": "spam",
            "addedAt": "2025-01-31T12:00:00.000Z", "expiresAt": "2025-01-31T13:00:00.000Z",
            "origin": "control"
        });
        roundtrip(
            &AclListResult {
                entries: vec![entry()],
                private: false,
            },
            json!({ "entries": [entry_json.clone()], "private": false }),
        );
        roundtrip(
            &AclAddParams {
                peer_id: None,
                cidr: Some("203.0.113.0/24".into()),
                list: AccessList::Deny,
                note: Some("spam".into()),
                for_ms: Some(600_000),
            },
            json!({"cidr": "203.0.113.0/24", "list": "deny", "note": "spam", "forMs": 600000}),
        );
        roundtrip(
            &AclAddResult {
                added: true,
                entry: entry(),
                disconnected: 2,
            },
            json!({"added": true, "entry": entry_json, "disconnected": 2}),
        );
        roundtrip(
            &AclRemoveParams {
                peer_id: Some("12D3KooWBad".into()),
                cidr: None,
                list: AccessList::Allow,
            },
            json!({"peerId": "12D3KooWBad", "list": "allow"}),
        );
        roundtrip(
            &AclRemoveResult { removed: false },
            json!({"removed": false}),
        );
    }

    #[test]
    fn bad_params_are_refused_with_the_field_named() {
        let e = parse_params::<AclAdd>(Some(json!({"peerId": "p", "list": "block"}))).unwrap_err();
        assert!(e.message.contains("list: unknown variant `block`"), "{e}");
        let e =
            parse_params::<AclRemove>(Some(json!({"peerId": " ", "list": "deny"}))).unwrap_err();
        assert!(e.message.contains("peerId: expected a peer id"), "{e}");
        let e = parse_params::<AclAdd>(Some(json!({"list": "deny"}))).unwrap_err();
        assert!(e.message.contains("give one of them"), "{e}");
        let e = parse_params::<AclAdd>(Some(
            json!({"peerId": "p", "cidr": "10.0.0.0/8", "list": "deny"}),
        ))
        .unwrap_err();
        assert!(e.message.contains("not both"), "{e}");
        let e = parse_params::<AclAdd>(Some(
            json!({"cidr": "10.0.0.0/8", "list": "allow", "forMs": 5}),
        ))
        .unwrap_err();
        assert!(e.message.contains("forMs: only a deny entry"), "{e}");
        let e = parse_params::<AclAdd>(Some(
            json!({"cidr": "10.0.0.0/8", "list": "deny", "forMs": 0}),
        ))
        .unwrap_err();
        assert!(e.message.contains("forMs: expected at least 1"), "{e}");
        let e = parse_params::<AclAdd>(Some(
            json!({"cidr": "10.0.0.0/8", "list": "deny", "note": "x".repeat(MAX_NOTE + 1)}),
        ))
        .unwrap_err();
        assert!(e.message.contains("note: at most 256 bytes"), "{e}");
        // An entry from a 1.3-shaped writer (no origin) reads as from the socket.
        let old: AclEntry = serde_json::from_value(json!({
            "peerId": "12D3KooWBad", "list": "deny", "addedAt": "2025-01-31T12:00:00.000Z"
        }))
        .unwrap();
        assert_eq!(old.origin, AclOrigin::Control);
        assert_eq!(old.subject(), "12D3KooWBad");
    }
}
