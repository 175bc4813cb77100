//! The control socket over a real Unix socket: greeting and versions, every
//! method end to end, every kind of bad input, the client cap, idle clients,
//! a stuck relay, shutdown, and how the socket path is claimed.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use async_std::os::unix::net::UnixListener;
use async_std::prelude::*;
use bsv_p2p_proto::jsonrpc::code;
use bsv_p2p_proto::server::BindError;
use bsv_p2p_proto::testing::*;
use bsv_p2p_proto::*;
use serde_json::json;

#[async_std::test]
async fn the_server_greets_first_with_its_protocol_and_version() {
    let dir = TempDir::new("greet");
    let relay = Relay::start(config(&dir.join("relay.sock")), feed(10)).await;
    let (_raw, greeting) = Raw::connect(&relay.path).await;
    assert_eq!(
        greeting,
        json!({"jsonrpc": "2.0", "method": "hello", "params": {
            "protocol": "bsv-p2p-control", "version": "1.5", "server": "test-relay/1.0.0",
            "role": "admin"
        }})
    );
    relay.stop().await;
}

#[async_std::test]
async fn a_client_refuses_a_relay_of_another_major_version() {
    let dir = TempDir::new("newer");
    let path = dir.join("relay.sock");
    let listener = UnixListener::bind(&path).await.unwrap();
    async_std::task::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let greeting = r#"{"jsonrpc":"2.0","method":"hello","params":{"protocol":"bsv-p2p-control","version":"2.0","server":"future-relay/9"}}"#;
        stream
            .write_all(format!("{greeting}\n").as_bytes())
            .await
            .unwrap();
        async_std::task::sleep(Duration::from_secs(5)).await;
    });
    let err = Client::connect(&path).await.err().expect("refused");
    assert!(matches!(err, Error::VersionMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "relay speaks control protocol 2.0, this client supports 1.x; upgrade this program to a release that speaks it"
    );
}

#[async_std::test]
async fn the_server_refuses_a_client_of_another_major_version() {
    let dir = TempDir::new("older");
    let relay = Relay::start(config(&dir.join("relay.sock")), feed(10)).await;
    let (mut raw, _) = Raw::connect(&relay.path).await;
    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"version":"2.0","client":"ctl/9"}}"#)
        .await;
    assert_eq!(reply["id"], 1);
    assert_eq!(reply["error"]["code"], code::UNSUPPORTED_VERSION);
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("speaks control protocol 1.5") && message.contains("2.0"),
        "{message}"
    );
    let ok = raw
        .call(r#"{"jsonrpc":"2.0","id":2,"method":"hello","params":{"version":"1.4"}}"#)
        .await;
    assert_eq!(ok["result"]["version"], "1.5");
    relay.stop().await;
}

#[async_std::test]
async fn every_method_answers_with_its_typed_result() {
    let dir = TempDir::new("methods");
    let relay = Relay::start(config(&dir.join("relay.sock")), feed(10)).await;
    let client = Client::connect(&relay.path).await.unwrap();
    assert_eq!(client.greeting().server, "test-relay/1.0.0");
    assert_eq!(client.status().await.unwrap(), samples::status());
    assert_eq!(client.stats().await.unwrap(), samples::stats());
    assert_eq!(client.peers().await.unwrap(), samples::peers());
    assert_eq!(
        client.reservations().await.unwrap(),
        samples::reservations()
    );
    assert_eq!(client.circuits().await.unwrap(), samples::circuits());
    let snap = client.snapshot("/backups/state.json").await.unwrap();
    assert_eq!(snap, samples::snapshot("/backups/state.json".as_ref()));
    assert_eq!(client.reload().await.unwrap(), samples::reload());
    assert_eq!(client.acl_list().await.unwrap(), samples::acl_list());
    let added = client
        .acl_add(AclAddParams {
            peer_id: Some("12D3KooWNew".into()),
            cidr: None,
            list: AccessList::Allow,
            note: Some("lab bot".into()),
            for_ms: None,
        })
        .await
        .unwrap();
    assert_eq!(
        (added.added, added.entry.note.as_deref()),
        (true, Some("lab bot"))
    );
    let removed = client
        .acl_remove(AclRemoveParams {
            peer_id: Some("12D3KooWNew".into()),
            cidr: None,
            list: AccessList::Allow,
        })
        .await
        .unwrap();
    assert!(removed.removed);
    let stopping = client
        .shutdown(ShutdownParams {
            drain: false,
            timeout_ms: Some(250),
        })
        .await
        .unwrap();
    assert_eq!(
        stopping,
        ShutdownResult {
            draining: false,
            timeout_ms: 250
        }
    );
    let raw = client.call("status", json!({})).await.unwrap();
    assert_eq!(raw["peerId"], "12D3KooWRelay");
    relay.stop().await;
}

#[async_std::test]
async fn bad_input_gets_the_right_error_and_the_connection_keeps_working() {
    let dir = TempDir::new("bad");
    let relay = Relay::start(config(&dir.join("relay.sock")), feed(10)).await;
    let (mut raw, _) = Raw::connect(&relay.path).await;

    let reply = raw.call(r#"{"jsonrpc":"2.0","id":1,"method":"#).await;
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!(null), json!(-32700))
    );

    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":2,"method":"staus"}"#)
        .await;
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!(2), json!(-32601))
    );

    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":3,"method":"snapshot","params":{"path":5}}"#)
        .await;
    assert_eq!(reply["error"]["code"], -32602);
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("invalid params for snapshot: path: invalid type: integer `5`, expected"),
        "{message}"
    );

    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":4,"method":"status","params":{"verbose":true}}"#)
        .await;
    assert_eq!(reply["error"]["code"], -32602);
    assert!(reply["error"]["message"]
        .as_str()
        .unwrap()
        .contains("verbose"));

    let reply = raw.call(r#"{"id":5,"method":"status"}"#).await;
    assert_eq!(
        (reply["id"].clone(), reply["error"]["code"].clone()),
        (json!(5), json!(-32600))
    );

    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":6,"method":"status","params":{{"pad":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let reply = raw.call(&huge).await;
    assert_eq!(reply["error"]["code"], -32600);
    assert_eq!(reply["error"]["message"], "line exceeds 1048576 bytes");

    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":7,"method":"status"}"#)
        .await;
    assert_eq!(reply["id"], 7);
    assert_eq!(reply["result"]["peerId"], "12D3KooWRelay");
    relay.stop().await;
}

#[async_std::test]
async fn clients_over_the_cap_are_told_why_and_closed() {
    let dir = TempDir::new("cap");
    let mut config = config(&dir.join("relay.sock"));
    config.max_clients = 2;
    let relay = Relay::start(config, feed(10)).await;
    let first = Client::connect(&relay.path).await.unwrap();
    let _second = Client::connect(&relay.path).await.unwrap();

    let (mut raw, refusal) = Raw::connect(&relay.path).await;
    assert_eq!(refusal["error"]["code"], code::TOO_MANY_CLIENTS);
    assert!(refusal["error"]["message"]
        .as_str()
        .unwrap()
        .contains("at most 2"));
    assert_eq!(raw.recv().await, None, "closed after the refusal");
    let err = Client::connect(&relay.path).await.err().unwrap();
    assert_eq!(err.code(), Some(code::TOO_MANY_CLIENTS), "{err}");

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    let third = loop {
        match Client::connect(&relay.path).await {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), Some(code::TOO_MANY_CLIENTS));
                async_std::task::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("a slot never freed: {e}"),
        }
    };
    assert!(third.status().await.is_ok());
    relay.stop().await;
}

/// A config whose clients are closed after `idle` without a request.
fn idle_config(path: &std::path::Path, idle: Duration) -> ServerConfig {
    let mut config = config(path);
    config.idle_timeout = idle;
    config
}

#[async_std::test]
async fn an_idle_client_is_told_why_and_closed_after_the_idle_timeout() {
    let dir = TempDir::new("idle");
    let idle = Duration::from_millis(300);
    let relay = Relay::start(idle_config(&dir.join("relay.sock"), idle), feed(10)).await;
    let started = Instant::now();
    let (mut raw, _) = Raw::connect(&relay.path).await;
    let bye = raw.recv().await.expect("a goodbye");
    let waited = started.elapsed();
    assert!(
        waited >= idle && waited < idle * 5,
        "closed after {waited:?}"
    );
    assert_eq!(
        bye,
        json!({"jsonrpc": "2.0", "id": null, "error": {
            "code": code::IDLE_TIMEOUT,
            "message": "closing this control connection: no request within the idle timeout of 300 ms; reconnect to send one",
            "data": {"idleTimeoutMs": 300}
        }})
    );
    assert_eq!(raw.recv().await, None, "closed after the goodbye");
    relay.stop().await;
}

#[async_std::test]
async fn requests_keep_a_client_alive_and_blank_lines_do_not() {
    let dir = TempDir::new("idle-alive");
    let idle = Duration::from_millis(400);
    let relay = Relay::start(idle_config(&dir.join("relay.sock"), idle), feed(10)).await;
    let (mut raw, _) = Raw::connect(&relay.path).await;
    // Three idle timeouts' worth of requests, each well inside one.
    for id in 0..12 {
        async_std::task::sleep(Duration::from_millis(100)).await;
        let reply = raw
            .call(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"status"}}"#
            ))
            .await;
        assert_eq!(reply["id"], id, "{reply}");
    }
    let last_request = Instant::now();
    let blanks = async_std::task::spawn({
        let mut stream = raw.stream.clone();
        async move {
            for _ in 0..20 {
                async_std::task::sleep(Duration::from_millis(50)).await;
                if stream.write_all(b"\n").await.is_err() {
                    return;
                }
            }
        }
    });
    let bye = raw.recv().await.expect("a goodbye");
    assert_eq!(bye["error"]["code"], code::IDLE_TIMEOUT);
    let waited = last_request.elapsed();
    assert!(waited < idle * 2, "blank lines kept it open {waited:?}");
    blanks.await;
    relay.stop().await;
}

#[async_std::test]
async fn a_request_dribbled_without_its_newline_does_not_keep_a_client_alive() {
    let dir = TempDir::new("idle-dribble");
    let idle = Duration::from_millis(300);
    let relay = Relay::start(idle_config(&dir.join("relay.sock"), idle), feed(10)).await;
    let (mut raw, _) = Raw::connect(&relay.path).await;
    let started = Instant::now();
    let dribble = async_std::task::spawn({
        let mut stream = raw.stream.clone();
        async move {
            for byte in br#"{"jsonrpc":"2.0","id":1,"method":"status"}"#.iter().cycle().take(40) {
                async_std::task::sleep(Duration::from_millis(50)).await;
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
            }
        }
    });
    let bye = raw.recv().await.expect("a goodbye");
    assert_eq!(bye["error"]["code"], code::IDLE_TIMEOUT);
    assert!(started.elapsed() < idle * 3, "{:?}", started.elapsed());
    dribble.await;
    relay.stop().await;
}

#[async_std::test]
async fn a_subscriber_is_never_closed_for_idleness() {
    let dir = TempDir::new("idle-sub");
    let idle = Duration::from_millis(200);
    let relay = Relay::start(idle_config(&dir.join("relay.sock"), idle), feed(10)).await;
    let (mut raw, _) = Raw::connect(&relay.path).await;
    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#)
        .await;
    assert_eq!(reply["result"]["nextSeq"], 1);
    async_std::task::sleep(idle * 5).await;
    relay.feed.publish(numbered(1)).unwrap();
    let event = raw.recv().await.expect("still subscribed");
    assert_eq!(event["params"]["seq"], 1, "{event}");
    // And it still answers requests.
    let reply = raw
        .call(r#"{"jsonrpc":"2.0","id":2,"method":"status"}"#)
        .await;
    assert_eq!(reply["id"], 2);
    relay.stop().await;
}

#[async_std::test]
async fn idle_clients_give_their_slots_back() {
    let dir = TempDir::new("idle-cap");
    let idle = Duration::from_millis(500);
    let mut config = idle_config(&dir.join("relay.sock"), idle);
    config.max_clients = 2;
    let relay = Relay::start(config, feed(10)).await;
    let started = Instant::now();
    let _idle = [
        Raw::connect(&relay.path).await,
        Raw::connect(&relay.path).await,
    ];
    let (_, refusal) = Raw::connect(&relay.path).await;
    assert_eq!(refusal["error"]["code"], code::TOO_MANY_CLIENTS);
    let client = loop {
        match Client::connect(&relay.path).await {
            Ok(client) => break client,
            Err(e) if started.elapsed() < idle * 4 => {
                assert_eq!(e.code(), Some(code::TOO_MANY_CLIENTS), "{e}");
                async_std::task::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("no slot freed within {:?}: {e}", idle * 4),
        }
    };
    assert!(started.elapsed() >= idle, "{:?}", started.elapsed());
    assert!(client.status().await.is_ok());
    relay.stop().await;
}

#[async_std::test]
async fn a_client_closed_for_idleness_sends_any_call_again_on_a_new_connection() {
    let dir = TempDir::new("idle-retry");
    let idle = Duration::from_millis(200);
    let reloads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let relay = Relay::start_with(
        idle_config(&dir.join("relay.sock"), idle),
        feed(10),
        |commands| {
            let reloads = reloads.clone();
            async_std::task::spawn(async move {
                while let Ok(command) = commands.recv().await {
                    match command {
                        Command::Reload(r) => {
                            reloads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            r.ok(samples::reload());
                        }
                        other => drop(other),
                    }
                }
            });
        },
    )
    .await;
    let client = Client::connect(&relay.path).await.unwrap();
    async_std::task::sleep(idle * 3).await;
    // reload is not safe to repeat blindly; it is sent again only because
    // the server closed the connection before it could have read it.
    assert_eq!(client.reload().await.unwrap(), samples::reload());
    assert_eq!(reloads.load(std::sync::atomic::Ordering::SeqCst), 1);
    relay.stop().await;
}

#[async_std::test]
async fn a_client_that_never_reads_its_replies_stalls_nobody_else() {
    let dir = TempDir::new("deaf");
    let mut config = config(&dir.join("relay.sock"));
    config.write_timeout = Duration::from_millis(500);
    let relay = Relay::start(config, feed(10)).await;
    let (deaf, _) = Raw::connect(&relay.path).await;
    let flood = async_std::task::spawn({
        let mut stream = deaf.stream.clone();
        async move {
            let request = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stats\"}\n".repeat(1000);
            for _ in 0..100 {
                if stream.write_all(&request).await.is_err() {
                    return true;
                }
            }
            false
        }
    });
    let client = Client::connect(&relay.path).await.unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        client.status().await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let cut_off = async_std::future::timeout(Duration::from_secs(10), flood)
        .await
        .expect("the deaf client is dropped within the write timeout");
    assert!(cut_off, "the server closed the deaf client");
    relay.stop().await;
}

#[async_std::test]
async fn a_relay_that_does_not_answer_costs_a_timeout_error_not_a_hang() {
    let dir = TempDir::new("stuck");
    let mut config = config(&dir.join("relay.sock"));
    config.request_timeout = Duration::from_millis(200);
    // The relay takes commands and never answers them.
    let relay = Relay::start_with(config, feed(10), |commands| {
        async_std::task::spawn(async move {
            let mut held = Vec::new();
            while let Ok(command) = commands.recv().await {
                held.push(command);
            }
        });
    })
    .await;
    let client = Client::connect(&relay.path).await.unwrap();
    let started = Instant::now();
    let err = client.status().await.unwrap_err();
    assert_eq!(err.code(), Some(code::RELAY_BUSY), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        err.to_string()
            .contains("did not answer status within 200 ms"),
        "{err}"
    );
    relay.stop().await;
}

#[async_std::test]
async fn a_dropped_command_is_an_internal_error() {
    let dir = TempDir::new("dropped");
    let relay = Relay::start_with(config(&dir.join("relay.sock")), feed(10), |commands| {
        async_std::task::spawn(async move { while commands.recv().await.is_ok() {} });
    })
    .await;
    let client = Client::connect(&relay.path).await.unwrap();
    let err = client.reload().await.unwrap_err();
    assert_eq!(err.code(), Some(code::INTERNAL_ERROR), "{err}");
    relay.stop().await;
}

#[async_std::test]
async fn stopping_tells_clients_closes_them_and_removes_the_socket() {
    let dir = TempDir::new("stop");
    let relay = Relay::start(config(&dir.join("relay.sock")), feed(10)).await;
    let path = relay.path.clone();
    let (mut raw, _) = Raw::connect(&path).await;
    relay.stop().await;
    let bye = raw.recv().await.expect("a goodbye");
    assert_eq!(
        (bye["id"].clone(), bye["error"]["code"].clone()),
        (json!(null), json!(code::SHUTTING_DOWN))
    );
    assert_eq!(raw.recv().await, None);
    assert!(!path.exists());
    let err = Client::connect(&path).await.err().unwrap();
    assert!(matches!(err, Error::NoSocket(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "no relay control socket at {} (is the relay running? see dataDir)",
            path.display()
        )
    );
}

#[async_std::test]
async fn a_client_outlives_relay_restarts() {
    let dir = TempDir::new("restart-call");
    let path = dir.join("relay.sock");
    let relay = Relay::start(config(&path), feed(10)).await;
    let client = Client::connect(&path).await.unwrap();
    relay.stop().await;
    let relay = Relay::start(config(&path), feed(10)).await;
    // The old connection is dead; a read-only call is retried on a new one.
    assert_eq!(client.status().await.unwrap(), samples::status());
    relay.stop().await;
    let err = client.status().await.unwrap_err();
    assert!(matches!(err, Error::NoSocket(_)), "{err:?}");
    let relay = Relay::start(config(&path), feed(10)).await;
    assert_eq!(client.stats().await.unwrap(), samples::stats());
    relay.stop().await;
}

#[async_std::test]
async fn the_socket_directory_and_file_get_their_modes() {
    let dir = TempDir::new("modes");
    let path = dir.join("data/sub/relay.sock");
    let relay = Relay::start(config(&path), feed(10)).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o660);
    assert_eq!(mode(path.parent().unwrap()), 0o750);
    relay.stop().await;
}

#[async_std::test]
async fn a_stale_socket_left_by_a_crash_is_replaced() {
    let dir = TempDir::new("stale");
    let path = dir.join("relay.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "the crashed relay's socket is still there");
    let err = Client::connect(&path).await.err().unwrap();
    assert!(matches!(err, Error::NotRunning(_)), "{err:?}");
    let relay = Relay::start(config(&path), feed(10)).await;
    assert!(Client::connect(&path).await.unwrap().status().await.is_ok());
    relay.stop().await;
}

#[async_std::test]
async fn a_live_relay_keeps_its_socket() {
    let dir = TempDir::new("live");
    let path = dir.join("relay.sock");
    let relay = Relay::start(config(&path), feed(10)).await;
    let err = Listener::bind(config(&path), feed(10)).await.err().unwrap();
    assert!(matches!(err, BindError::InUse(_)), "{err}");
    assert!(
        err.to_string()
            .contains("another relay is already listening here"),
        "{err}"
    );
    assert!(Client::connect(&path).await.unwrap().status().await.is_ok());
    relay.stop().await;
}

#[async_std::test]
async fn a_path_that_is_not_a_socket_is_refused_and_left_alone() {
    let dir = TempDir::new("notsock");
    let path = dir.join("relay.sock");
    std::fs::write(&path, "precious").unwrap();
    let err = Listener::bind(config(&path), feed(10)).await.err().unwrap();
    assert!(matches!(err, BindError::NotASocket(_)), "{err}");
    assert!(
        err.to_string()
            .contains("exists and is not a socket; refusing to replace it"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}
