//! Attacks on the control bounds: clients that connect and say nothing, to
//! hold every slot of `control.maxClients` and lock the health sidecar and
//! the operator out (bound: `control.idleTimeout`), and a read-only client
//! that tries to stop, reload or snapshot the relay (bound: the admin uids
//! and gids).

use std::path::Path;
use std::time::{Duration, Instant};

use bsv_p2p_tests::attack::ControlLine;
use bsv_p2p_tests::health::{http, Health};
use bsv_p2p_tests::{ctl, Relay};
use serde_json::{json, Value};

/// `control.maxClients`' default: what an attacker must fill.
const MAX_CLIENTS: usize = 32;
/// The idle timeout the test relay runs with.
const IDLE: Duration = Duration::from_millis(2000);
/// The health sidecar's reconnect backoff cap (`BACKOFF_MAX` there).
const HEALTH_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Bound on one line from the relay, and on the ctl runs.
const T: Duration = Duration::from_secs(30);

/// Connects and reads the first line (the greeting, or a refusal).
fn open(socket: &Path) -> (ControlLine, Value) {
    ControlLine::open(socket, T).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn idle_clients_holding_every_slot_are_closed_and_the_health_sidecar_gets_in() {
    let relay = Relay::start(json!({
        "mode": "relay",
        "control": { "idleTimeout": IDLE.as_millis() as u64 }
    }));
    let socket = relay.socket();
    let peer_id = relay.peer_id().to_string();

    let locked = Instant::now();
    let mut idle: Vec<ControlLine> = (0..MAX_CLIENTS)
        .map(|i| {
            let (raw, greeting) = open(&socket);
            assert_eq!(greeting["method"], "hello", "idle client {i}: {greeting}");
            raw
        })
        .collect();
    // Every slot is taken: one more is turned away.
    let (_, refusal) = open(&socket);
    assert_eq!(refusal["error"]["code"], -32002, "{refusal}");

    let health = Health::start(&socket);
    // The idle clients go after IDLE; the sidecar, refused until then,
    // retries within its backoff cap; two seconds of slack for two cores.
    let bound = IDLE + HEALTH_BACKOFF_MAX + Duration::from_secs(2);
    let mut last: String;
    let served = loop {
        match http(health.port, "GET", "/status", &[]) {
            Ok(answer) if answer.code == 200 => {
                assert_eq!(answer.json()["peerId"], peer_id.as_str(), "{}", answer.body);
                break locked.elapsed();
            }
            Ok(answer) => last = format!("{} {}", answer.code, answer.body),
            Err(e) => last = e,
        }
        assert!(
            locked.elapsed() < bound,
            "the health sidecar did not read the relay within {bound:?} of the lock-out; last /status: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        served >= IDLE,
        "the sidecar got in after {served:?}, before any idle client could have been closed"
    );
    eprintln!(
        "{MAX_CLIENTS} idle control clients; idle timeout {IDLE:?}: /status 200 after {served:?}"
    );

    // Each idle client was told why before being closed.
    for (i, raw) in idle.iter_mut().enumerate() {
        let bye = raw
            .read()
            .unwrap_or_else(|e| panic!("a goodbye before the close: {e}"));
        assert_eq!(bye["id"], Value::Null, "idle client {i}: {bye}");
        assert_eq!(bye["error"]["code"], -32007, "idle client {i}: {bye}");
        assert_eq!(bye["error"]["data"]["idleTimeoutMs"], 2000, "{bye}");
        assert_eq!(raw.next_line(), Ok(None), "idle client {i} is closed");
    }
    let status = relay.ctl(&["status"]);
    assert_eq!(status["peerId"], peer_id.as_str());
}

/// A uid that is not this process's: the admin list that makes us read-only.
fn not_our_uid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    let ours = unsafe { libc::geteuid() };
    if ours == 4242 {
        4243
    } else {
        4242
    }
}

#[test]
fn a_read_only_client_cannot_stop_reload_or_snapshot_the_relay() {
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let relay = Relay::start(json!({
        "mode": "relay",
        "control": { "adminUids": [not_our_uid()], "adminGids": [] }
    }));
    let socket = relay.socket();
    let snapshot = relay.data_dir().join("stolen-state.json");
    let snapshot_arg = snapshot.display().to_string();
    for args in [
        vec!["shutdown"],
        vec!["shutdown", "--no-drain"],
        vec!["reload"],
        vec!["snapshot", snapshot_arg.as_str()],
    ] {
        let done = ctl::run(&socket, &args, T).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            done.code,
            Some(1),
            "bsv-p2p-ctl {args:?} must fail: {}{}",
            done.stdout,
            done.stderr
        );
        let method = args[0];
        assert!(
            done.stderr.contains(&format!(
                "permission denied: {method} needs the admin role and this connection is read-only (uid {uid}, gid {gid})"
            )),
            "bsv-p2p-ctl {args:?}: {}",
            done.stderr
        );
    }
    assert!(!snapshot.exists(), "the refused snapshot wrote nothing");

    // The same on the wire, with the role in the greeting.
    let (mut raw, greeting) = open(&socket);
    assert_eq!(greeting["params"]["role"], "read-only", "{greeting}");
    let reply = raw
        .send(r#"{"jsonrpc":"2.0","id":1,"method":"shutdown","params":{"drain":false}}"#)
        .unwrap();
    assert_eq!(reply["error"]["code"], -32006, "{reply}");
    assert_eq!(
        reply["error"]["data"],
        json!({"method": "shutdown", "role": "read-only", "needs": "admin"})
    );

    // Each refusal is logged with who asked.
    let refused = relay
        .wait_for_event(
            "control_call_refused",
            |e| e["method"] == "snapshot",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused["uid"], uid, "{refused}");
    assert_eq!(refused["gid"], gid, "{refused}");
    assert!(refused["pid"].as_u64().is_some_and(|p| p > 0), "{refused}");
    // Two shutdowns, a reload, a snapshot, the raw shutdown.
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.events_of("control_call_refused", |_| true).len() < 5 {
        assert!(
            Instant::now() < deadline,
            "not every refusal was logged: {:?}",
            relay.events_of("control_call_refused", |_| true)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The relay is still running and answers, on the raw connection too.
    let status = relay.ctl(&["status"]);
    assert_eq!(status["peerId"], relay.peer_id().to_string());
    let reply = raw
        .send(r#"{"jsonrpc":"2.0","id":2,"method":"status"}"#)
        .unwrap();
    assert_eq!(reply["result"]["peerId"], relay.peer_id().to_string());
}

#[test]
fn with_the_default_admins_our_own_uid_may_shut_the_relay_down() {
    let mut relay = Relay::start(json!({ "mode": "relay" }));
    let (_, greeting) = open(&relay.socket());
    assert_eq!(greeting["params"]["role"], "admin", "{greeting}");
    let done = ctl::run(&relay.socket(), &["shutdown"], T).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done.code, Some(0), "{}{}", done.stdout, done.stderr);
    let status = relay
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), Some(0));
}
