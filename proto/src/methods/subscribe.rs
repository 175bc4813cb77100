//! `subscribe`: turns the connection into an event stream. After the result,
//! the server sends `event` notifications on the same connection until it
//! closes. Events are numbered by the relay's journal, so a subscriber that
//! was away asks for `fromSeq` = last seen + 1 and gets what it missed (or a
//! `gap` event saying exactly what the journal no longer holds).

use serde::{Deserialize, Serialize};

use super::Method;
use crate::event::KINDS;
use crate::Role;

pub struct Subscribe;

impl Method for Subscribe {
    const NAME: &'static str = "subscribe";
    const ROLE: Role = Role::ReadOnly;
    type Params = SubscribeParams;
    type Result = SubscribeResult;

    fn check(params: &SubscribeParams) -> Result<(), String> {
        let Some(kinds) = &params.kinds else {
            return Ok(());
        };
        if kinds.is_empty() {
            return Err("kinds: an empty list selects nothing; omit it for every kind".into());
        }
        match kinds.iter().position(|k| !KINDS.contains(&k.as_str())) {
            Some(i) => Err(format!(
                "kinds[{i}]: unknown event kind {:?}; known: {}",
                kinds[i],
                KINDS.join(", ")
            )),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscribeParams {
    /// The first sequence number wanted. Absent: only events from now on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_seq: Option<u64>,
    /// Only these kinds (`gap` is always sent). Absent: every kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeResult {
    /// The sequence number the stream starts at. Lower than the `fromSeq`
    /// asked for only when the relay's journal was reset (numbering started
    /// over): the subscriber must then forget the sequence numbers it saw.
    pub next_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::parse_params;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn subscribe_roundtrips() {
        roundtrip(
            &SubscribeParams {
                from_seq: Some(42),
                kinds: Some(vec!["circuit_closed".into()]),
            },
            json!({"fromSeq": 42, "kinds": ["circuit_closed"]}),
        );
        roundtrip(&SubscribeParams::default(), json!({}));
        roundtrip(&SubscribeResult { next_seq: 42 }, json!({"nextSeq": 42}));
    }

    #[test]
    fn unknown_kinds_are_refused_by_position() {
        let e = parse_params::<Subscribe>(Some(json!({"kinds": ["gap", "circut_closed"]})))
            .unwrap_err();
        assert!(
            e.message
                .contains("kinds[1]: unknown event kind \"circut_closed\""),
            "{e}"
        );
        let e = parse_params::<Subscribe>(Some(json!({"kinds": []}))).unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
        let e = parse_params::<Subscribe>(Some(json!({"from": 1}))).unwrap_err();
        assert!(e.message.contains("unknown field `from`"), "{e}");
    }
}
