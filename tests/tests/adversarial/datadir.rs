//! The data directory holds the relay's key and its journal of bot
//! addresses: every way of starting the relay creates it 0750, and one that
//! others may read or write is named in a warning.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use bsv_p2p_tests::relay::run_to_exit;
use bsv_p2p_tests::{Relay, RelayOptions, ScratchDir};
use serde_json::json;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn check_creates_the_data_directory_owner_and_group_only() {
    let dir = ScratchDir::new("datadir-check");
    let data = dir.join("nested").join("data");
    let run = run_to_exit(
        ["--check".as_ref(), "--data-dir".as_ref(), data.as_os_str()],
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(mode(&data), 0o750);
    assert_eq!(mode(&data.join("identity.key")), 0o600);
}

#[test]
fn an_open_data_directory_is_named_in_a_warning() {
    let dir = ScratchDir::new("datadir-open");
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();

    let run = run_to_exit(
        ["--check".as_ref(), "--data-dir".as_ref(), data.as_os_str()],
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("warning: dataDir"), "{}", run.stderr);
    assert!(run.stderr.contains("chmod 750"), "{}", run.stderr);

    let relay = Relay::start_with(RelayOptions::new(json!({})).dir(dir));
    let warning = relay
        .wait_for_event("data_dir_permissions", |_| true, Duration::from_secs(5))
        .expect("the running relay warns too");
    assert_eq!(warning["level"], "warn");
}
