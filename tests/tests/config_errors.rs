//! What the operator sees for a bad configuration: the real binary, run with
//! `--check` (and once without), must name the file, the key and what is
//! wrong on stderr and exit 2, before it binds anything; a config that is
//! fine but cannot be served (port taken) exits 1 and names the address.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bsv_p2p_tests::relay::{run_to_exit, Finished};
use bsv_p2p_tests::ScratchDir;

const EXIT_RUNTIME: i32 = 1;
const EXIT_USAGE: i32 = 2;
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// The sample config of the operator guide, section "Configuration", verbatim.
const GUIDE_SAMPLE: &str = r#"{
  "mode": "relay",
  "listen": [
    "/ip4/0.0.0.0/tcp/4001",
    "/ip4/0.0.0.0/tcp/4002/ws"
  ],
  "announce": [
    "/ip4/YOUR_PUBLIC_IP/tcp/4001",
    "/dns4/relay.yourdomain.com/tcp/4001"
  ],
  "relay": {
    "enabled": true,
    "hop": {
      "enabled": true,
      "active": true
    },
    "advertise": {
      "enabled": true,
      "ttl": 30000
    },
    "reservations": {
      "max": 1000,
      "ttl": 3600000
    }
  },
  "connectionManager": {
    "maxConnections": 500,
    "minConnections": 10
  },
  "gossipSub": {
    "enabled": true,
    "topics": ["/openclaw/v1/announce"]
  }
}"#;

/// Where the config of a row comes from.
enum Source {
    Text(&'static str),
    /// A path where no file exists.
    Missing,
    /// A path that is a directory, so it cannot be read as a file.
    Directory,
}

struct BadConfig {
    name: &'static str,
    source: Source,
    /// Extra command-line arguments.
    args: &'static [&'static str],
    /// The key path the message must name ("" for whole-file errors).
    key: &'static str,
    /// Must appear in stderr after `error: <file>: <key>: `.
    message: &'static str,
}

const BAD_CONFIGS: &[BadConfig] = &[
    BadConfig {
        name: "worker threads out of range",
        source: Source::Text(r#"{ "runtime": { "threads": 5000 } }"#),
        args: &[],
        key: "runtime.threads",
        message: "expected a value from 0 to 1024, got 5000",
    },
    BadConfig {
        name: "invalid JSON (trailing comma)",
        source: Source::Text("{\n  \"mode\": \"relay\",\n}\n"),
        args: &[],
        key: "",
        message: "invalid JSON at line 3 column 1",
    },
    BadConfig {
        name: "unknown key with a near miss",
        source: Source::Text(r#"{"connectionManager": {"maxConnection": 5}}"#),
        args: &[],
        key: "connectionManager.maxConnection",
        message: r#"unknown key "maxConnection" (did you mean "maxConnections"?)"#,
    },
    BadConfig {
        name: "unknown top-level key",
        source: Source::Text(r#"{"mode": "relay", "listne": ["/ip4/0.0.0.0/tcp/4001"]}"#),
        args: &[],
        key: "listne",
        message: r#"(did you mean "listen"?)"#,
    },
    BadConfig {
        name: "duration given as a string",
        source: Source::Text(r#"{"relay": {"reservations": {"ttl": "1h"}}}"#),
        args: &[],
        key: "relay.reservations.ttl",
        message: r#"expected milliseconds as a non-negative integer, got string "1h""#,
    },
    BadConfig {
        name: "listen address that is no multiaddr",
        source: Source::Text(r#"{"listen": ["/ip4/127.0.0.1/tcp/notaport"]}"#),
        args: &[],
        key: "listen[0]",
        message: r#"expected a multiaddr such as "/ip4/203.0.113.7/tcp/4001", got "/ip4/127.0.0.1/tcp/notaport""#,
    },
    BadConfig {
        name: "the guide's sample with YOUR_PUBLIC_IP left in",
        source: Source::Text(GUIDE_SAMPLE),
        args: &[],
        key: "announce[0]",
        message: "still holds the placeholder YOUR_PUBLIC_IP: replace it with this server's public IPv4 address",
    },
    BadConfig {
        name: "relay.yourdomain.com left in announce",
        source: Source::Text(
            r#"{"announce": ["/ip4/203.0.113.7/tcp/4001", "/dns4/relay.yourdomain.com/tcp/4001"]}"#,
        ),
        args: &[],
        key: "announce[1]",
        message: "still holds the placeholder relay.yourdomain.com: replace it with a DNS name",
    },
    BadConfig {
        name: "zero reservations",
        source: Source::Text(r#"{"relay": {"reservations": {"max": 0}}}"#),
        args: &[],
        key: "relay.reservations.max",
        message: "expected a value from 1 to 1000000, got 0",
    },
    BadConfig {
        name: "negative count",
        source: Source::Text(r#"{"connectionManager": {"maxConnections": -1}}"#),
        args: &[],
        key: "connectionManager.maxConnections",
        message: "expected a non-negative integer, got integer `-1`",
    },
    BadConfig {
        name: "mode other than relay",
        source: Source::Text(r#"{"mode": "client"}"#),
        args: &[],
        key: "mode",
        message: r#"expected "relay" (this program only runs a relay), got "client""#,
    },
    BadConfig {
        name: "missing file",
        source: Source::Missing,
        args: &[],
        key: "",
        message: "cannot read the config file: No such file or directory",
    },
    BadConfig {
        name: "unreadable file (a directory)",
        source: Source::Directory,
        args: &[],
        key: "",
        message: "cannot read the config file: Is a directory",
    },
    BadConfig {
        name: "empty listen list",
        source: Source::Text(r#"{"listen": []}"#),
        args: &[],
        key: "listen",
        message: "expected at least one address to listen on, got an empty list",
    },
    BadConfig {
        name: "unknown log level",
        source: Source::Text(r#"{"log": {"level": "verbose"}}"#),
        args: &[],
        key: "log.level",
        message: r#"expected one of "off", "error", "warn", "info", "debug", "trace", got "verbose""#,
    },
    BadConfig {
        name: "unknown log level on the command line",
        source: Source::Text(r#"{"mode": "relay"}"#),
        args: &["--log-level", "loud"],
        key: "log.level",
        message: r#"got "loud""#,
    },
    BadConfig {
        name: "data limit under one bot message",
        source: Source::Text(r#"{"relay": {"circuits": {"data": 131072}}}"#),
        args: &[],
        key: "relay.circuits.data",
        message: "at least 1048576 bytes",
    },
];

/// Writes the row's config into `dir` and returns the path given to `--config`.
fn config_path(dir: &ScratchDir, source: &Source) -> PathBuf {
    match source {
        Source::Text(text) => {
            let path = dir.join("config.json");
            std::fs::write(&path, text).unwrap();
            path
        }
        Source::Missing => dir.join("no-such-config.json"),
        Source::Directory => {
            let path = dir.join("config-dir.json");
            std::fs::create_dir(&path).unwrap();
            path
        }
    }
}

fn check(config: &Path, data_dir: &Path, extra: &[&str]) -> Finished {
    let mut args = vec![
        "--check".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run_to_exit(&args, RUN_TIMEOUT).expect("--check exits by itself")
}

#[test]
fn bad_configs_are_refused_naming_file_and_key_with_exit_2() {
    let mut failures = Vec::new();
    for row in BAD_CONFIGS {
        let dir = ScratchDir::new("config");
        let config = config_path(&dir, &row.source);
        let data_dir = dir.join("data");
        let out = check(&config, &data_dir, row.args);
        let prefix = if row.key.is_empty() {
            format!("error: {}: ", config.display())
        } else {
            format!("error: {}: {}: ", config.display(), row.key)
        };
        let mut problems = Vec::new();
        if out.code != Some(EXIT_USAGE) {
            problems.push(format!("exit code {:?}, expected {EXIT_USAGE}", out.code));
        }
        if !out.stderr.starts_with(&prefix) {
            problems.push(format!("stderr does not start with {prefix:?}"));
        }
        if !out.stderr.contains(row.message) {
            problems.push(format!("stderr lacks {:?}", row.message));
        }
        if out.stderr.lines().count() != 1 {
            problems.push("stderr is not exactly one line".into());
        }
        if !out.stdout.is_empty() {
            problems.push(format!("stdout is not empty: {:?}", out.stdout));
        }
        if data_dir.exists() {
            problems.push("the data directory was created".into());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {}",
                row.name,
                problems.join("; "),
                out.stderr.trim_end()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad configs were not reported as expected:\n{}",
        failures.len(),
        BAD_CONFIGS.len(),
        failures.join("\n")
    );
}

#[test]
fn operator_guide_sample_config_with_placeholders_filled_is_accepted() {
    let dir = ScratchDir::new("config");
    let config = dir.join("relay-config.json");
    let filled = GUIDE_SAMPLE
        .replace("YOUR_PUBLIC_IP", "203.0.113.7")
        .replace("relay.yourdomain.com", "relay.example.net");
    std::fs::write(&config, filled).unwrap();
    let data_dir = dir.join("data");

    let first = check(&config, &data_dir, &[]);
    assert_eq!(first.code, Some(0), "stderr: {}", first.stderr);
    let expected = format!(
        "{}: configuration is valid; peer ID 12D3KooW",
        config.display()
    );
    assert!(
        first.stdout.starts_with(&expected),
        "stdout: {}",
        first.stdout
    );
    assert!(first.stderr.is_empty(), "stderr: {}", first.stderr);

    // --check creates the identity once; a second check reports the same peer ID.
    assert!(data_dir.join("identity.key").is_file());
    let second = check(&config, &data_dir, &[]);
    assert_eq!(second.code, Some(0), "stderr: {}", second.stderr);
    assert_eq!(first.stdout, second.stdout);
}

/// A loopback port this test holds for its whole run.
fn hold_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn config_error_is_reported_before_binding_anything() {
    // The bad config listens on a port we hold: were the relay to bind before
    // validating, it would fail with exit 1 (address in use) instead.
    let (_held, port) = hold_port();
    let dir = ScratchDir::new("config");
    let config = dir.join("config.json");
    let text = format!(
        r#"{{"listen": ["/ip4/127.0.0.1/tcp/{port}"], "relay": {{"reservations": {{"max": 0}}}}}}"#
    );
    std::fs::write(&config, text).unwrap();
    let data_dir = dir.join("data");
    let out = run_to_exit(
        [
            "--config",
            &config.display().to_string(),
            "--data-dir",
            &data_dir.display().to_string(),
            "--log-format",
            "json",
        ],
        RUN_TIMEOUT,
    )
    .expect("the relay exits on a config error");
    assert_eq!(out.code, Some(EXIT_USAGE), "stderr: {}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "error: {}: relay.reservations.max: ",
            config.display()
        )),
        "stderr: {}",
        out.stderr
    );
    assert!(!out.stdout.contains("listening"), "stdout: {}", out.stdout);
    assert!(!data_dir.exists(), "the data directory was created");
}

#[test]
fn listening_on_a_port_in_use_exits_1_naming_the_address() {
    let (_held, port) = hold_port();
    let dir = ScratchDir::new("config");
    let config = dir.join("config.json");
    let addr = format!("/ip4/127.0.0.1/tcp/{port}");
    std::fs::write(
        &config,
        format!(r#"{{"mode": "relay", "listen": ["{addr}"]}}"#),
    )
    .unwrap();
    let out = run_to_exit(
        [
            "--config",
            &config.display().to_string(),
            "--data-dir",
            &dir.join("data").display().to_string(),
            "--log-format",
            "json",
        ],
        RUN_TIMEOUT,
    )
    .expect("the relay exits when it cannot listen");
    assert_eq!(out.code, Some(EXIT_RUNTIME), "stderr: {}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("listen[0] {addr}: cannot listen")),
        "stderr: {}",
        out.stderr
    );
}
