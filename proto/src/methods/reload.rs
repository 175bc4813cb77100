//! `reload`: re-reads the relay's config file and applies what can change
//! while running. The result says, key by key, what took effect, what needs
//! a restart, and what was wrong — the same answer `SIGHUP` would log, but
//! to the operator who asked.

use serde::{Deserialize, Serialize};

use super::{Method, NoParams};
use crate::Role;

pub struct Reload;

impl Method for Reload {
    const NAME: &'static str = "reload";
    /// Admin: applies whatever the config file now says.
    const ROLE: Role = Role::Admin;
    type Params = NoParams;
    type Result = ReloadResult;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadResult {
    /// Config keys (dotted paths) whose new values are in effect.
    pub applied: Vec<String>,
    /// Keys that changed but take effect only after a restart.
    pub restart_required: Vec<String>,
    /// What was wrong, each naming the file and key. When not empty,
    /// nothing was applied.
    pub errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::tests::roundtrip;
    use serde_json::json;

    #[test]
    fn reload_roundtrips() {
        roundtrip(
            &ReloadResult {
                applied: vec!["relay.reservations.max".into()],
                restart_required: vec!["listen".into()],
                errors: vec![],
            },
            json!({"applied": ["relay.reservations.max"], "restartRequired": ["listen"], "errors": []}),
        );
    }
}
