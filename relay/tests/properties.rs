//! Property tests of the config file, which an operator writes by hand:
//! generated documents reach the corners that hand-picked examples miss (deep
//! keys holding the wrong type, numbers just outside their range, text
//! damaged by an edit). The hop/stop message properties live with the wire
//! format, in `wire/tests/properties.rs`.
//!
//! Each property runs a few hundred cases by default so that `cargo test`
//! stays quick; `PROPTEST_CASES=1000000` runs any number of them (README.md,
//! "Tests").

use bsv_p2p_relay::config::{self, ConfigError, Overrides, RelayConfig};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Map, Value};

/// `cases` unless PROPTEST_CASES asks for another number, so that a long
/// run needs no code change. Failures are not written to files: a failure
/// found worth keeping becomes a named test.
fn cases(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

// --- Config -----------------------------------------------------------------

/// Every numeric key: its path, the accepted range, and where its value
/// lands in `Config` (in the file's unit), if it lands anywhere.
type Extract = fn(&RelayConfig) -> Option<u64>;

const NUMERIC: &[(&str, u64, u64, Option<Extract>)] = &[
    ("relay.advertise.ttl", 1_000, 86_400_000, None),
    (
        "relay.reservations.max",
        1,
        1_000_000,
        Some(|c| Some(c.relay.max_reservations as u64)),
    ),
    (
        "relay.reservations.maxPerPeer",
        1,
        64,
        Some(|c| Some(c.relay.max_reservations_per_peer as u64)),
    ),
    (
        "relay.reservations.ttl",
        1_000,
        604_800_000,
        Some(|c| Some(c.relay.reservation_ttl.as_millis() as u64)),
    ),
    (
        "relay.circuits.max",
        1,
        1_000_000,
        Some(|c| Some(c.relay.max_circuits as u64)),
    ),
    (
        "relay.circuits.maxPerPeer",
        1,
        65_536,
        Some(|c| Some(c.relay.max_circuits_per_peer as u64)),
    ),
    (
        "relay.circuits.duration",
        0,
        u32::MAX as u64 * 1000,
        Some(|c| {
            Some(
                c.relay
                    .circuit_limits
                    .duration
                    .map_or(0, |d| d.as_millis() as u64),
            )
        }),
    ),
    (
        "relay.circuits.data",
        0,
        u64::MAX,
        Some(|c| Some(c.relay.circuit_limits.data.unwrap_or(0))),
    ),
    (
        "connectionManager.maxConnections",
        1,
        1_000_000,
        Some(|c| Some(u64::from(c.max_connections))),
    ),
    ("connectionManager.minConnections", 0, 1_000_000, None),
    (
        "connectionManager.maxConnectionsPerPeer",
        1,
        1024,
        Some(|c| Some(u64::from(c.max_connections_per_peer))),
    ),
    (
        "connectionManager.maxPendingIncoming",
        1,
        100_000,
        Some(|c| Some(u64::from(c.max_pending_incoming))),
    ),
    (
        "gossipSub.maxMessageSize",
        1024,
        16 << 20,
        Some(|c| c.gossip.as_ref().map(|g| g.max_message_size as u64)),
    ),
    (
        "shutdown.timeout",
        0,
        600_000,
        Some(|c| Some(c.shutdown_timeout.as_millis() as u64)),
    ),
    (
        "control.maxClients",
        1,
        1024,
        Some(|c| Some(c.control_max_clients as u64)),
    ),
    (
        "runtime.threads",
        0,
        1024,
        Some(|c| Some(c.runtime_threads as u64)),
    ),
    (
        "journal.maxEvents",
        100,
        100_000_000,
        Some(|c| Some(c.journal_max_events)),
    ),
    (
        "journal.maxBytes",
        1 << 20,
        64 << 30,
        Some(|c| Some(c.journal_max_bytes)),
    ),
];

const BOOLEAN: &[&str] = &[
    "relay.enabled",
    "relay.hop.enabled",
    "relay.hop.active",
    "relay.advertise.enabled",
    "relay.circuits.unlimited",
    "gossipSub.enabled",
    "autonat.enabled",
];

const STRING: &[(&str, &[&str])] = &[
    ("mode", &["relay", "client"]),
    ("dataDir", &["/var/lib/bsv-p2p", "~/relay", "~", ""]),
    (
        "identityFile",
        &["/var/lib/bsv-p2p/id.key", "~/id.key", " "],
    ),
    ("log.format", &["auto", "json", "pretty", "JSON"]),
    (
        "log.level",
        &[
            "off", "error", "warn", "info", "debug", "trace", "INFO", "verbose",
        ],
    ),
    (
        "control.socket",
        &["/run/bsv-p2p/relay.sock", "~/r.sock", ""],
    ),
];

const LISTS: &[&str] = &["listen", "announce", "gossipSub.topics"];

/// Values of every JSON type, including the nearly right ones.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Numbers around and inside `min..=max`, or not numbers at all.
fn numeric_value(min: u64, max: u64) -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => (min..=max).prop_map(|n| json!(n)),
        2 => prop::sample::select(vec![min.wrapping_sub(1), min, max, max.wrapping_add(1), 0, u64::MAX])
            .prop_map(|n| json!(n)),
        1 => (-1000i64..0).prop_map(|n| json!(n)),
        1 => Just(json!(1.5)),
        1 => Just(json!("1h")),
        1 => any_json(),
    ]
}

/// Multiaddrs as operators write them, right and wrong.
fn multiaddr_text() -> impl Strategy<Value = String> {
    let host = prop::sample::select(vec![
        "/ip4/0.0.0.0",
        "/ip4/203.0.113.7",
        "/ip6/::",
        "/dns/relay.example.org",
        "/dns4/a.b",
        "/dns6/x",
        "/ip4/YOUR_PUBLIC_IP",
        "/dns/relay.yourdomain.com",
        "/ip4/999.1.1.1",
        "/unix/tmp",
        "",
    ]);
    let port = prop_oneof![
        Just("/tcp/4001".to_string()),
        (0u32..70_000).prop_map(|p| format!("/tcp/{p}")),
        Just("/udp/4001".into())
    ];
    let tail = prop::sample::select(vec![
        "",
        "/ws",
        "/wss",
        "/tls/ws",
        "/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
        "/p2p-circuit",
        "/quic-v1",
        "/ws/ws",
        "/certhash/uEiA",
        "/ip6zone/x",
    ]);
    prop_oneof![
        8 => (host, port, tail).prop_map(|(h, p, t)| format!("{h}{p}{t}")),
        1 => "(/[a-z0-9-]{0,8}){0,6}",
        1 => ".{0,24}",
    ]
}

fn list_value(key: &'static str) -> BoxedStrategy<Value> {
    let item: BoxedStrategy<Value> = if key == "gossipSub.topics" {
        prop_oneof![
            4 => "/openclaw/[a-z]{1,8}/1\\.0\\.0".prop_map(Value::String),
            1 => Just(json!("/openclaw/announce/1.0.0")),
            1 => Just(json!(" ")),
            1 => Just(Value::String("t".repeat(513))),
            1 => any_json(),
        ]
        .boxed()
    } else {
        prop_oneof![5 => multiaddr_text().prop_map(Value::String), 1 => any_json()].boxed()
    };
    prop_oneof![
        6 => proptest::collection::vec(item, 0..4).prop_map(Value::Array),
        1 => any_json(),
    ]
    .boxed()
}

fn string_value(samples: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(samples).prop_map(|s| json!(s)),
        1 => "/[a-z/]{0,120}".prop_map(Value::String),
        1 => any_json(),
    ]
}

/// Sets `path` (dotted) in `doc`, making the objects on the way; a path
/// through a non-object is left out, as it cannot be written.
fn set(doc: &mut Map<String, Value>, path: &str, value: Value) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    match rest {
        None => {
            doc.insert(head.to_string(), value);
        }
        Some(rest) => {
            let child = doc
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(child) = child {
                set(child, rest, value);
            }
        }
    }
}

/// Config documents built from the real key names, each key present or not,
/// with values of the right type most of the time, plus the odd misspelt or
/// unknown key, so that generation reaches every check in the parser.
fn config_doc() -> impl Strategy<Value = Value> {
    let mut entries: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for &(path, min, max, _) in NUMERIC {
        entries.push(
            proptest::option::weighted(
                0.25,
                numeric_value(min, max).prop_map(move |v| (path.to_string(), v)),
            )
            .boxed(),
        );
    }
    for &path in BOOLEAN {
        let value = prop_oneof![4 => any::<bool>().prop_map(Value::Bool), 1 => any_json()];
        entries.push(
            proptest::option::weighted(0.3, value.prop_map(move |v| (path.to_string(), v))).boxed(),
        );
    }
    for &(path, samples) in STRING {
        entries.push(
            proptest::option::weighted(
                0.3,
                string_value(samples).prop_map(move |v| (path.to_string(), v)),
            )
            .boxed(),
        );
    }
    for &path in LISTS {
        entries.push(
            proptest::option::weighted(
                0.4,
                list_value(path).prop_map(move |v| (path.to_string(), v)),
            )
            .boxed(),
        );
    }
    let section = prop::sample::select(vec![
        "",
        "relay.",
        "relay.circuits.",
        "relay.reservations.",
        "connectionManager.",
        "gossipSub.",
        "log.",
    ]);
    let stray =
        (section, "[a-zA-Z]{1,16}", any_json()).prop_map(|(s, k, v)| (format!("{s}{k}"), v));
    entries.push(proptest::option::weighted(0.1, stray).boxed());
    entries.prop_map(|entries| {
        let mut doc = Map::new();
        for (path, value) in entries.into_iter().flatten() {
            set(&mut doc, &path, value);
        }
        Value::Object(doc)
    })
}

/// The value at an error's path (`a.b[2].c`), if the document has one there.
fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut here = doc;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        here = here.get(key)?;
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            here = here.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(here)
}

fn parse(text: &str) -> Result<RelayConfig, ConfigError> {
    config::parse("relay-config.json", text, &Overrides::default())
}

/// What every config the parser accepts must satisfy, whatever it was given.
fn check_invariants(c: &RelayConfig) -> Result<(), TestCaseError> {
    prop_assert!(!c.listen.is_empty());
    prop_assert!(c.max_connections >= 1);
    prop_assert!(c.relay.max_circuits_per_peer <= c.relay.max_circuits);
    let limits = &c.relay.circuit_limits;
    if let Some(d) = limits.duration {
        prop_assert!(d.as_millis() >= 1000 && d.as_secs() <= u64::from(u32::MAX));
    }
    if let Some(data) = limits.data {
        prop_assert!(data >= 1 << 20);
    }
    if let Some(g) = &c.gossip {
        prop_assert!(g.topics.len() <= 256);
        for (i, t) in g.topics.iter().enumerate() {
            prop_assert!(!t.trim().is_empty() && t.len() <= 512);
            prop_assert!(!g.topics[..i].contains(t));
        }
    }
    prop_assert!(c.control_socket.as_os_str().len() <= 100);
    prop_assert!(!c.data_dir.as_os_str().is_empty());
    Ok(())
}

/// A small `relay.circuits.max` with `maxPerPeer` left at its default (64)
/// used to be blamed on `relay.circuits.maxPerPeer`, a key not in the file.
#[test]
fn a_small_circuit_cap_is_blamed_on_the_key_in_the_file() {
    let e = parse(r#"{"relay":{"circuits":{"max":10}}}"#).unwrap_err();
    assert_eq!(e.path, "relay.circuits.max");
    assert!(e.message.contains("maxPerPeer (64 by default)"), "{e}");
    let e = parse(r#"{"relay":{"circuits":{"max":10,"maxPerPeer":20}}}"#).unwrap_err();
    assert_eq!(e.path, "relay.circuits.maxPerPeer");
}

/// A long `dataDir` makes the default control socket path too long; that
/// used to be blamed on `control.socket`, a key not in the file.
#[test]
fn a_long_data_dir_is_blamed_for_its_socket_path() {
    let dir = format!("/{}", "d".repeat(100));
    let e = parse(&json!({ "dataDir": dir }).to_string()).unwrap_err();
    assert_eq!(e.path, "dataDir");
    assert!(e.message.contains("set control.socket"), "{e}");
    let doc = json!({ "dataDir": dir, "control": { "socket": format!("{dir}/r.sock") } });
    assert_eq!(parse(&doc.to_string()).unwrap_err().path, "control.socket");
}

/// A key written twice is refused at that key, not as a whole document.
#[test]
fn a_duplicate_key_is_refused_at_its_path() {
    let e = parse(r#"{"relay":{"enabled":true,"enabled":false}}"#).unwrap_err();
    assert!(e.path.starts_with("relay"), "{e}");
    assert!(e.message.contains("enabled"), "{e}");
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Any document built from the real keys: accepted configs hold every
    /// invariant and carry the numbers as written; refused ones name a path
    /// that exists in the document.
    #[test]
    fn config_documents_are_refused_at_a_path_or_accepted_as_written(doc in config_doc()) {
        let text = serde_json::to_string_pretty(&doc).unwrap();
        match parse(&text) {
            Ok(c) => {
                check_invariants(&c)?;
                for &(path, min, max, extract) in NUMERIC {
                    let Some(v) = lookup(&doc, path) else { continue };
                    // A key of a switched-off section (gossip) is not read.
                    let got = match extract {
                        Some(extract) => match extract(&c) {
                            Some(got) => Some(got),
                            None => continue,
                        },
                        None => None,
                    };
                    let v = v.as_u64();
                    prop_assert!(v.is_some_and(|v| (min..=max).contains(&v)), "{path} = {v:?} accepted");
                    if got.is_some() {
                        prop_assert_eq!(got, v, "{}", path);
                    }
                }
                if let Some(Value::Array(listen)) = lookup(&doc, "listen") {
                    prop_assert_eq!(c.listen.len(), listen.len());
                }
            }
            Err(e) => {
                prop_assert_eq!(&e.source, "relay-config.json");
                prop_assert!(!e.message.is_empty());
                prop_assert!(!e.path.is_empty(), "no path: {}", e);
                prop_assert!(lookup(&doc, &e.path).is_some(), "{} is not in the document", e);
            }
        }
    }

    /// Text that is not a config at all, or a config damaged by an edit, is
    /// refused with a message, never a panic; only a document that is not a
    /// JSON object is refused without a key path.
    #[test]
    fn config_text_of_any_shape_is_refused_cleanly(
        doc in config_doc(),
        noise in ".{0,64}",
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..4, "[{}\\[\\]\",:0-9a-z \n]{0,3}"), 0..4),
        pick in 0..3u8,
    ) {
        let mut text = serde_json::to_string_pretty(&doc).unwrap();
        for (at, delete, insert) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let mut end = (i + delete).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(i..end, &insert);
        }
        let text = match pick {
            0 => text,
            1 => noise,
            _ => format!("{text}{noise}"),
        };
        if let Err(e) = parse(&text) {
            prop_assert!(!e.message.is_empty());
            if e.path.is_empty() {
                let object = serde_json::from_str::<Value>(&text).map(|v| v.is_object()).unwrap_or(false);
                prop_assert!(!object, "a JSON object refused without a path: {}", e);
            }
        }
    }
}
