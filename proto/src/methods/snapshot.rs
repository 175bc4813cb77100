//! `snapshot`: a consistent export of the relay's own state (identity, ACLs,
//! journal position, …) written by the relay to a file the backup tool
//! names. The relay writes it because only the relay can make it
//! consistent; the result says how big it is, its sha256 and the event
//! sequence number it is consistent with, so the backup manifest can
//! record them without reading the file twice.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Method;
use crate::{Role, Timestamp};

pub struct Snapshot;

impl Method for Snapshot {
    const NAME: &'static str = "snapshot";
    /// Admin: makes the relay write a file wherever the caller says.
    const ROLE: Role = Role::Admin;
    type Params = SnapshotParams;
    type Result = SnapshotResult;

    fn check(params: &SnapshotParams) -> Result<(), String> {
        if params.path.is_absolute() {
            Ok(())
        } else {
            Err(format!(
                "path: must be absolute (the relay's working directory is not the caller's), got {:?}",
                params.path
            ))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotParams {
    /// Where the relay writes the snapshot: an absolute path on the relay's
    /// host, in a directory the relay may write, outside its data directory.
    pub path: PathBuf,
    /// Whether the relay's private key is in the snapshot (absent: yes). A
    /// restored relay needs it to keep its peer ID, which bots have
    /// compiled in; leave it out of a snapshot that is shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_identity: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotResult {
    pub path: PathBuf,
    pub bytes: u64,
    /// Lower-case hex.
    pub sha256: String,
    /// The last event sequence number the snapshot includes.
    pub seq: u64,
    pub taken_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::parse_params;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn snapshot_roundtrips() {
        roundtrip(
            &SnapshotParams {
                path: "/var/backups/relay/state.json".into(),
                include_identity: None,
            },
            json!({"path": "/var/backups/relay/state.json"}),
        );
        roundtrip(
            &SnapshotParams {
                path: "/var/backups/relay/public.json".into(),
                include_identity: Some(false),
            },
            json!({"path": "/var/backups/relay/public.json", "includeIdentity": false}),
        );
        roundtrip(
            &SnapshotResult {
                path: "/var/backups/relay/state.json".into(),
                bytes: 4096,
                sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                seq: 1234,
                taken_at: Timestamp::from_unix_millis(1_738_324_800_000),
            },
            json!({
                "path": "/var/backups/relay/state.json", "bytes": 4096,
                "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "seq": 1234, "takenAt": "2025-01-31T12:00:00.000Z"
            }),
        );
    }

    #[test]
    fn a_relative_path_is_refused() {
        let e = parse_params::<Snapshot>(Some(json!({"path": "state.json"}))).unwrap_err();
        assert!(e.message.contains("path: must be absolute"), "{e}");
    }
}
