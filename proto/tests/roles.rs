//! Roles over a real Unix socket: the server reads who connected from the
//! kernel, tells the client its role in the greeting, runs every reading
//! method for a read-only client and refuses every changing one with
//! -32006 before the relay ever sees it, and gives admin by uid or by gid.

use std::sync::{Arc, Mutex};

use bsv_p2p_proto::jsonrpc::code;
use bsv_p2p_proto::server::Admins;
use bsv_p2p_proto::testing::*;
use bsv_p2p_proto::*;
use serde_json::json;

/// Nobody is admin: this test process, whoever runs it, is read-only.
fn read_only_config(path: &std::path::Path) -> ServerConfig {
    let mut config = config(path);
    config.admins = Admins {
        uids: vec![],
        gids: vec![],
    };
    config
}

/// A relay that answers like [`answer`] and records the methods it got.
async fn recording_relay(config: ServerConfig) -> (Relay, Arc<Mutex<Vec<&'static str>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let relay = Relay::start_with(config, feed(10), |commands| {
        let seen = seen.clone();
        let (tx, rx) = async_std::channel::bounded(16);
        async_std::task::spawn(async move {
            while let Ok(command) = commands.recv().await {
                seen.lock().unwrap().push(command.method());
                if tx.send(command).await.is_err() {
                    return;
                }
            }
        });
        async_std::task::spawn(answer(rx));
    })
    .await;
    (relay, seen)
}

#[async_std::test]
async fn the_greeting_and_hello_tell_the_client_its_role() {
    let dir = TempDir::new("role-greet");
    // The default: root and the server's own uid, and the test is one of them.
    let relay = Relay::start(config(&dir.join("admin.sock")), feed(10)).await;
    let (mut raw, greeting) = Raw::connect(&relay.path).await;
    assert_eq!(greeting["params"]["role"], "admin");
    let hello = raw
        .call(r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"version":"1.1"}}"#)
        .await;
    assert_eq!(hello["result"]["role"], "admin");
    relay.stop().await;

    let relay = Relay::start(read_only_config(&dir.join("ro.sock")), feed(10)).await;
    let client = Client::connect(&relay.path).await.unwrap();
    assert_eq!(client.greeting().role, Some(Role::ReadOnly));
    relay.stop().await;
}

#[async_std::test]
async fn a_read_only_client_reads_and_subscribes_but_cannot_change_the_relay() {
    let dir = TempDir::new("role-ro");
    let (relay, seen) = recording_relay(read_only_config(&dir.join("relay.sock"))).await;
    let client = Client::connect(&relay.path).await.unwrap();
    assert_eq!(client.status().await.unwrap(), samples::status());
    assert_eq!(client.stats().await.unwrap(), samples::stats());
    assert_eq!(client.peers().await.unwrap(), samples::peers());
    assert_eq!(
        client.reservations().await.unwrap(),
        samples::reservations()
    );
    assert_eq!(client.circuits().await.unwrap(), samples::circuits());
    assert_eq!(client.acl_list().await.unwrap(), samples::acl_list());
    assert!(client.subscribe(None, None).await.is_ok());

    let refused = [
        client
            .shutdown(ShutdownParams {
                drain: true,
                timeout_ms: None,
            })
            .await
            .map(drop),
        client.reload().await.map(drop),
        client.snapshot("/tmp/state.json").await.map(drop),
        client
            .acl_add(AclAddParams {
                peer_id: Some("12D3KooWBad".into()),
                cidr: None,
                list: AccessList::Deny,
                note: None,
                for_ms: None,
            })
            .await
            .map(drop),
        client
            .acl_remove(AclRemoveParams {
                peer_id: Some("12D3KooWBad".into()),
                cidr: None,
                list: AccessList::Deny,
            })
            .await
            .map(drop),
    ];
    for (method, outcome) in ["shutdown", "reload", "snapshot", "acl.add", "acl.remove"]
        .iter()
        .zip(refused)
    {
        let err = outcome.expect_err(method);
        assert_eq!(err.code(), Some(code::PERMISSION_DENIED), "{err}");
        assert!(err.is_fatal(), "retrying cannot help: {err}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("{method} needs the admin role"))
                && message.contains("this connection is read-only"),
            "{message}"
        );
    }
    // Refusals never reach the relay, and the connection still works.
    assert_eq!(client.status().await.unwrap(), samples::status());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "status",
            "stats",
            "peers",
            "reservations",
            "circuits",
            "acl.list",
            "status"
        ]
    );
    relay.stop().await;
}

#[async_std::test]
async fn a_refusal_on_the_wire_echoes_the_id_and_says_what_was_needed() {
    let dir = TempDir::new("role-wire");
    let relay = Relay::start(read_only_config(&dir.join("relay.sock")), feed(10)).await;
    let (mut raw, _) = Raw::connect(&relay.path).await;
    // A refused notification gets no reply, like any notification.
    raw.send(r#"{"jsonrpc":"2.0","method":"shutdown"}"#).await;
    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":"stop","method":"shutdown","params":{"drain":false}}"#)
        .await;
    assert_eq!(reply["id"], "stop");
    assert_eq!(reply["error"]["code"], code::PERMISSION_DENIED);
    assert_eq!(
        reply["error"]["data"],
        json!({"method": "shutdown", "role": "read-only", "needs": "admin"})
    );
    // Refused before its params are looked at: bad params change nothing.
    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":2,"method":"snapshot","params":{"path":5}}"#)
        .await;
    assert_eq!(reply["error"]["code"], code::PERMISSION_DENIED);
    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":3,"method":"status"}"#)
        .await;
    assert_eq!(reply["result"]["peerId"], "12D3KooWRelay");
    relay.stop().await;
}

#[async_std::test]
async fn an_admin_uid_or_gid_may_change_the_relay() {
    let dir = TempDir::new("role-admin");
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    for (name, admins) in [
        (
            "uid",
            Admins {
                uids: vec![uid],
                gids: vec![],
            },
        ),
        (
            "gid",
            Admins {
                uids: vec![],
                gids: vec![gid],
            },
        ),
    ] {
        let mut config = config(&dir.join(&format!("{name}.sock")));
        config.admins = admins;
        let relay = Relay::start(config, feed(10)).await;
        let client = Client::connect(&relay.path).await.unwrap();
        assert_eq!(client.greeting().role, Some(Role::Admin), "by {name}");
        assert_eq!(client.reload().await.unwrap(), samples::reload());
        let done = client
            .shutdown(ShutdownParams {
                drain: false,
                timeout_ms: Some(5),
            })
            .await
            .unwrap();
        assert!(!done.draining);
        relay.stop().await;
    }
}
