//! `snapshot` writes a file holding the relay's private key, at a path a
//! control client names. Whatever waits at that path (a FIFO nobody opens, a
//! symlink to a file the relay may write, a world-readable file planted at
//! the old temporary name, the relay's own identity) the relay neither hangs
//! nor writes through it, and `status` keeps answering meanwhile.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use bsv_p2p_tests::attack::ControlLine;
use bsv_p2p_tests::{Relay, ScratchDir, Signal};
use serde_json::{json, Value};

/// The bound on a `status` answer while a snapshot is under way.
const STATUS_BOUND: Duration = Duration::from_millis(100);

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo");
}

/// Asks for a snapshot on one connection while another asks `status` every
/// few milliseconds; the snapshot's response and the slowest `status`.
fn snapshot_beside_status(relay: &Relay, path: &Path) -> (Value, Duration) {
    let socket = relay.socket();
    let target = path.to_path_buf();
    let snapshot = std::thread::spawn(move || {
        let mut c = ControlLine::connect(&socket, Duration::from_secs(20)).unwrap();
        c.call("snapshot", json!({ "path": target })).unwrap().0
    });
    let mut status = ControlLine::connect(&relay.socket(), Duration::from_secs(5)).unwrap();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let (answer, took) = status.call("status", json!({})).unwrap();
        assert!(answer["result"]["peerId"].is_string(), "{answer}");
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(5));
    }
    (snapshot.join().unwrap(), slowest)
}

fn error_message(response: &Value) -> &str {
    response["error"]["message"].as_str().unwrap_or_else(|| {
        panic!("expected an error, got {response}");
    })
}

#[test]
fn snapshot_never_opens_what_waits_at_its_path_and_never_stalls_the_relay() {
    let mut relay = Relay::start(json!({}));
    let out = ScratchDir::new("snapshot-out");
    let identity = std::fs::read(relay.data_dir().join("identity.key")).unwrap();

    // A FIFO at the name the relay used to write through first.
    mkfifo(&out.join("s.tmp"));
    let (response, slowest) = snapshot_beside_status(&relay, &out.join("s.json"));
    assert!(response["result"]["sha256"].is_string(), "{response}");
    assert!(
        slowest < STATUS_BOUND,
        "status took {slowest:?} during a snapshot"
    );
    let snap: Value = serde_json::from_slice(&std::fs::read(out.join("s.json")).unwrap()).unwrap();
    assert_eq!(snap["peerId"], relay.peer_id().to_string());
    assert!(snap["identityKey"].is_string());
    let mode = std::fs::metadata(out.join("s.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    eprintln!("snapshot beside a FIFO: done, slowest status {slowest:?}");

    // A FIFO at the target itself: refused at once, never opened.
    mkfifo(&out.join("fifo.json"));
    let (response, slowest) = snapshot_beside_status(&relay, &out.join("fifo.json"));
    assert!(
        error_message(&response).contains("not a regular file"),
        "{response}"
    );
    assert!(slowest < STATUS_BOUND, "status took {slowest:?}");

    // A symlink to a file the relay could write.
    let victim = out.join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    std::os::unix::fs::symlink(&victim, out.join("link.json")).unwrap();
    let (response, _) = snapshot_beside_status(&relay, &out.join("link.json"));
    assert!(
        error_message(&response).contains("not a regular file"),
        "{response}"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");

    // A world-readable file planted where a temporary file would go: it
    // never receives the key.
    let planted = out.join("p.tmp");
    std::fs::write(&planted, b"").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (response, _) = snapshot_beside_status(&relay, &out.join("p.json"));
    assert!(response["result"].is_object(), "{response}");
    assert_eq!(std::fs::read(&planted).unwrap(), b"");

    // The relay's own files and data directory.
    for target in [
        relay.data_dir().join("identity.key"),
        relay.data_dir().join("elsewhere.json"),
        relay.data_dir().join("relay.sock"),
    ] {
        let (response, _) = snapshot_beside_status(&relay, &target);
        assert!(error_message(&response).contains("refusing"), "{response}");
    }
    assert_eq!(
        std::fs::read(relay.data_dir().join("identity.key")).unwrap(),
        identity
    );

    // Without the key, for a snapshot that is shared.
    let mut c = ControlLine::connect(&relay.socket(), Duration::from_secs(20)).unwrap();
    let (response, _) = c
        .call(
            "snapshot",
            json!({"path": out.join("public.json"), "includeIdentity": false}),
        )
        .unwrap();
    assert!(response["result"].is_object(), "{response}");
    let public: Value =
        serde_json::from_slice(&std::fs::read(out.join("public.json")).unwrap()).unwrap();
    assert!(public.get("identityKey").is_none(), "{public}");

    let stopped = relay.stop(Signal::Term, Duration::from_secs(10)).unwrap();
    assert_eq!(
        stopped.status.code(),
        Some(0),
        "SIGTERM after the snapshots"
    );
}
