//! `acl.list`, `acl.add`, `acl.remove`: the relay's allow and deny lists of
//! peer ids, changed at run time and persisted by the relay. Types only in
//! this crate; the relay decides what the lists mean (see its `Gate`).

use serde::{Deserialize, Serialize};

use super::{Method, NoParams};
use crate::{Role, Timestamp};

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
        check_peer_id(&params.peer_id)
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
        check_peer_id(&params.peer_id)
    }
}

/// Whether the relay fully validates a peer id is its business (it has
/// libp2p); an empty or blank one is wrong everywhere.
fn check_peer_id(peer_id: &str) -> Result<(), String> {
    if peer_id.trim().is_empty() {
        Err("peerId: expected a peer id like 12D3KooW…, got an empty string".into())
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessList {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclEntry {
    pub peer_id: String,
    pub list: AccessList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub added_at: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclListResult {
    pub entries: Vec<AclEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AclAddParams {
    pub peer_id: String,
    pub list: AccessList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclAddResult {
    /// False when the peer was already on that list (its note is updated).
    pub added: bool,
    pub entry: AclEntry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AclRemoveParams {
    pub peer_id: String,
    pub list: AccessList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AclRemoveResult {
    /// False when the peer was not on that list.
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
            peer_id: "12D3KooWBad".into(),
            list: AccessList::Deny,
            note: Some("spam".into()),
            added_at: Timestamp::from_unix_millis(1_738_324_800_000),
        }
    }

    #[test]
    fn acl_roundtrips() {
        let entry_json = json!({
            "peerId": "12D3KooWBad", "list": "deny", "note": "spam",
            "addedAt": "2025-01-31T12:00:00.000Z"
        });
        roundtrip(
            &AclListResult {
                entries: vec![entry()],
            },
            json!({ "entries": [entry_json.clone()] }),
        );
        roundtrip(
            &AclAddParams {
                peer_id: "12D3KooWBad".into(),
                list: AccessList::Deny,
                note: Some("spam".into()),
            },
            json!({"peerId": "12D3KooWBad", "list": "deny", "note": "spam"}),
        );
        roundtrip(
            &AclAddResult {
                added: true,
                entry: entry(),
            },
            json!({"added": true, "entry": entry_json}),
        );
        roundtrip(
            &AclRemoveParams {
                peer_id: "12D3KooWBad".into(),
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
    fn a_list_other_than_allow_or_deny_is_refused() {
        let e = parse_params::<AclAdd>(Some(json!({"peerId": "p", "list": "block"}))).unwrap_err();
        assert!(e.message.contains("list: unknown variant `block`"), "{e}");
        let e =
            parse_params::<AclRemove>(Some(json!({"peerId": " ", "list": "deny"}))).unwrap_err();
        assert!(e.message.contains("peerId: expected a peer id"), "{e}");
    }
}
