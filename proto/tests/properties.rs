//! Property tests of the control socket's input side: `Request::parse` on
//! any line a local client may send, `parse_params` of every method on any
//! JSON value, and the server reading whole streams of good and bad lines
//! in arbitrary pieces. (The line framing itself is tested beside its code,
//! in `framing.rs`, as it is private to the crate.)
//!
//! Each property runs a few hundred cases by default so that `cargo test`
//! stays quick; `PROPTEST_CASES=1000000` runs any number of them (README.md,
//! "Tests").

use async_std::prelude::*;
use bsv_p2p_proto::jsonrpc::{self, code, Request};
use bsv_p2p_proto::testing::*;
use bsv_p2p_proto::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
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

/// serde_json's nesting limit, which stops a line of 10,000 `[` from
/// overflowing the stack of the client's task.
const JSON_DEPTH: usize = 128;

// --- Generators -------------------------------------------------------------

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        // Eighths print in few digits: serde_json, built without its
        // float_roundtrip feature, may read other floats one ULP off.
        (-8_000_000i64..8_000_000).prop_map(|n| json!(n as f64 / 8.0)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((".{0,6}", inner), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn method_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(NAMES).prop_map(str::to_string),
        1 => ".{0,16}",
    ]
}

fn id() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        ".{0,16}".prop_map(Value::String),
        Just(Value::Null),
    ]
}

/// Members of a request, each right most of the time, sometimes absent,
/// sometimes of the wrong type, sometimes joined by an unknown member.
fn request_members() -> impl Strategy<Value = Vec<(String, Value)>> {
    let member = |key: &'static str, right: BoxedStrategy<Value>| {
        proptest::option::weighted(
            0.85,
            prop_oneof![6 => right, 1 => any_json()].prop_map(move |v| (key.to_string(), v)),
        )
    };
    (
        member(
            "jsonrpc",
            prop_oneof![4 => Just(json!("2.0")), 1 => Just(json!("1.0"))].boxed(),
        ),
        member("id", id().boxed()),
        member("method", method_name().prop_map(Value::String).boxed()),
        member("params", any_json().boxed()),
        proptest::option::weighted(0.1, ("[a-z]{1,8}", any_json())),
    )
        .prop_map(|(a, b, c, d, e)| [a, b, c, d, e].into_iter().flatten().collect())
}

/// Renders members as an object, keeping duplicate keys as written.
fn object_text(members: &[(String, Value)]) -> String {
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// What `Request::parse` must make of a JSON value: the spec's rules, one
/// per line, so the parser is held to them and not to itself.
fn expected(value: &Value) -> Result<Request, (Value, i32)> {
    let Value::Object(object) = value else {
        return Err((Value::Null, code::INVALID_REQUEST));
    };
    let id = object.get("id");
    let echo = match id {
        None => Value::Null,
        Some(id @ (Value::Number(_) | Value::String(_) | Value::Null)) => id.clone(),
        Some(_) => return Err((Value::Null, code::INVALID_REQUEST)),
    };
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return Err((echo, code::INVALID_REQUEST));
    }
    let Some(Value::String(method)) = object.get("method") else {
        return Err((echo, code::INVALID_REQUEST));
    };
    let known = ["jsonrpc", "id", "method", "params"];
    if object.keys().any(|k| !known.contains(&k.as_str())) {
        return Err((echo, code::INVALID_REQUEST));
    }
    Ok(Request {
        jsonrpc: "2.0".into(),
        id: id.cloned(),
        method: method.clone(),
        params: object.get("params").cloned(),
    })
}

fn check_parse(line: &[u8]) -> Result<(), TestCaseError> {
    let got = Request::parse(line).map_err(|(id, e)| {
        assert!(!e.message.is_empty());
        (id, e.code)
    });
    match serde_json::from_slice::<Value>(line) {
        Err(_) => prop_assert_eq!(got, Err((Value::Null, code::PARSE_ERROR))),
        Ok(value) => prop_assert_eq!(got, expected(&value)),
    }
    Ok(())
}

/// Lines as clients send them: requests, requests with a byte changed, cut
/// or with bytes of other encodings, and noise.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let request = request_members()
        .prop_map(|m| object_text(&m).into_bytes())
        .boxed();
    prop_oneof![
        4 => request.clone(),
        2 => (request.clone(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(mut l, i, b)| {
            let at = i.index(l.len());
            l[at] = b;
            l
        }),
        1 => (request, any::<prop::sample::Index>()).prop_map(|(l, i)| l[..i.index(l.len())].to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => "[ -~]{0,64}".prop_map(String::into_bytes),
    ]
}

// --- Request::parse ---------------------------------------------------------

proptest! {
    #![proptest_config(cases(2000))]

    /// Not JSON: -32700 with a null id; JSON but not a request: -32600
    /// echoing the id when it could be read; a request: what was sent.
    #[test]
    fn any_line_gets_the_code_the_spec_gives_it(line in line()) {
        check_parse(&line)?;
    }

    /// The same rules with keys repeated: the last one counts, as in
    /// JavaScript's JSON.parse, so a client and the relay agree on what
    /// was asked.
    #[test]
    fn duplicate_members_count_once_the_last_one(
        members in request_members(), again in request_members()
    ) {
        let all: Vec<(String, Value)> = members.into_iter().chain(again).collect();
        let line = object_text(&all);
        let last_wins: Map<String, Value> = all.into_iter().collect();
        let got = Request::parse(line.as_bytes()).map_err(|(id, e)| (id, e.code));
        prop_assert_eq!(got, expected(&Value::Object(last_wins)));
    }

    /// Bytes that are not UTF-8 anywhere in a line make it unparseable,
    /// inside a string or out.
    #[test]
    fn invalid_utf8_is_a_parse_error(
        members in request_members(),
        at in any::<prop::sample::Index>(),
        bad in prop::sample::select(vec![
            vec![0xff], vec![0xc0, 0x80], vec![0xed, 0xa0, 0x80], vec![0xe2, 0x82], vec![0x80],
        ]),
    ) {
        let mut line = object_text(&members).into_bytes();
        let i = at.index(line.len() + 1);
        line.splice(i..i, bad);
        prop_assert!(std::str::from_utf8(&line).is_err());
        let got = Request::parse(&line).map_err(|(id, e)| (id, e.code));
        prop_assert_eq!(got, Err((Value::Null, code::PARSE_ERROR)));
    }

    /// Nesting past serde_json's limit is refused as unparseable at any
    /// depth, without exhausting the stack; within it, it is a request.
    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow(
        depth in prop_oneof![1usize..JSON_DEPTH + 8, JSON_DEPTH..100_000],
        objects in any::<bool>(),
    ) {
        let (open, close) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"status","params":{}null{}}}"#,
            open.repeat(depth),
            close.repeat(depth)
        );
        let got = Request::parse(line.as_bytes());
        // The request object itself is one level, and the limit's own
        // level is refused.
        if depth + 1 < JSON_DEPTH {
            let request = got.unwrap();
            let e = methods::parse_params::<Status>(request.params).unwrap_err();
            prop_assert_eq!(e.code, code::INVALID_PARAMS);
        } else {
            prop_assert_eq!(got.unwrap_err().1.code, code::PARSE_ERROR);
        }
    }

    /// Numbers of any size and precision are either read (as a number,
    /// echoed as one) or refused as unparseable, in the id and in params.
    #[test]
    fn huge_numbers_parse_or_are_refused(
        sign in prop::sample::select(vec!["", "-"]),
        digits in "[1-9][0-9]{0,400}",
        fraction in proptest::option::of("[0-9]{1,40}"),
        exponent in proptest::option::of(-100_000i64..100_000),
    ) {
        let mut number = format!("{sign}{digits}");
        if let Some(f) = fraction {
            number = format!("{number}.{f}");
        }
        if let Some(e) = exponent {
            number = format!("{number}e{e}");
        }
        let line = format!(r#"{{"jsonrpc":"2.0","id":{number},"method":"subscribe","params":{{"fromSeq":{number}}}}}"#);
        match Request::parse(line.as_bytes()) {
            Ok(request) => {
                prop_assert!(matches!(request.id, Some(Value::Number(_))));
                let params = methods::parse_params::<Subscribe>(request.params);
                if let Err(e) = params {
                    prop_assert_eq!(e.code, code::INVALID_PARAMS);
                }
            }
            Err((id, e)) => prop_assert_eq!((id, e.code), (Value::Null, code::PARSE_ERROR)),
        }
    }

    /// A request the client library writes is one line (no newline inside,
    /// whatever its strings hold) that reads back as the same request.
    #[test]
    fn requests_round_trip_through_one_line(
        id in proptest::option::of(id()), method in ".{0,24}", params in proptest::option::of(any_json())
    ) {
        let request = Request::new(id, &method, params);
        let line = jsonrpc::line(&request);
        prop_assert_eq!(line.iter().position(|&b| b == b'\n'), Some(line.len() - 1));
        prop_assert_eq!(Request::parse(&line[..line.len() - 1]), Ok(request));
    }
}

// --- parse_params -------------------------------------------------------------

/// Every param name any method knows, so that objects reach every field.
const PARAM_NAMES: &[&str] = &[
    "version",
    "client",
    "fromSeq",
    "kinds",
    "path",
    "drain",
    "timeoutMs",
    "peerId",
    "list",
    "note",
];

fn params_value() -> impl Strategy<Value = Option<Value>> {
    let right = prop_oneof![
        Just(json!("1.0")),
        Just(json!("2.3")),
        Just(json!("/var/backups/relay.json")),
        Just(json!("relative.json")),
        Just(json!("12D3KooWRelay")),
        Just(json!(" ")),
        Just(json!("allow")),
        Just(json!("deny")),
        Just(json!(["circuit_closed", "gap"])),
        Just(json!(["circut_closed"])),
        Just(json!([])),
        any::<u64>().prop_map(|n| json!(n)),
        any::<bool>().prop_map(Value::Bool),
    ];
    let value = prop_oneof![3 => right, 1 => any_json()];
    let key = prop_oneof![
        6 => prop::sample::select(PARAM_NAMES).prop_map(str::to_string),
        1 => "[a-zA-Z]{1,10}",
    ];
    let object = proptest::collection::vec((key, value), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()));
    proptest::option::of(prop_oneof![4 => object, 1 => any_json()])
}

/// Refused params get -32602 and a message naming the method; any field
/// named in `data` is a string; accepted params survive the round trip a
/// client makes with them.
fn check_params<M: Method>(params: Option<Value>) -> Result<(), TestCaseError>
where
    M::Params: PartialEq + std::fmt::Debug,
{
    match methods::parse_params::<M>(params) {
        Ok(p) => {
            let again = serde_json::to_value(&p).unwrap();
            prop_assert_eq!(methods::parse_params::<M>(Some(again)).ok(), Some(p));
        }
        Err(e) => {
            prop_assert_eq!(e.code, code::INVALID_PARAMS);
            let prefix = format!("invalid params for {}: ", M::NAME);
            prop_assert!(e.message.starts_with(&prefix), "{}", e.message);
            if let Some(data) = e.data {
                prop_assert!(data["field"].is_string(), "{}", data);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn every_method_refuses_bad_params_with_invalid_params(params in params_value()) {
        check_params::<Hello>(params.clone())?;
        check_params::<Status>(params.clone())?;
        check_params::<Stats>(params.clone())?;
        check_params::<Peers>(params.clone())?;
        check_params::<Reservations>(params.clone())?;
        check_params::<Circuits>(params.clone())?;
        check_params::<methods::Subscribe>(params.clone())?;
        check_params::<Snapshot>(params.clone())?;
        check_params::<Reload>(params.clone())?;
        check_params::<methods::Shutdown>(params.clone())?;
        check_params::<AclList>(params.clone())?;
        check_params::<AclAdd>(params.clone())?;
        check_params::<AclRemove>(params)?;
    }
}

// --- The server, reading a stream ---------------------------------------------

/// One line of a client's stream and the reply it must get, if any.
#[derive(Debug, Clone)]
enum Said {
    /// A request to a method the stand-in relay answers: its result.
    Call(u64, &'static str),
    /// The same without an id: no reply at all.
    Notification(&'static str),
    UnknownMethod(u64),
    BadParams(u64),
    /// Not JSON (bytes of any kind, no newline): -32700.
    Noise(Vec<u8>),
    /// JSON that is no request: -32600, id echoed.
    NotARequest(u64),
    /// Over MAX_LINE: -32600 with a null id, and the line after it is read.
    TooLong(usize),
    /// Spaces, tabs or nothing: skipped.
    Blank(String),
}

impl Said {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Call(id, m) => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{m}"}}"#).into(),
            Self::Notification(m) => format!(r#"{{"jsonrpc":"2.0","method":"{m}"}}"#).into(),
            Self::UnknownMethod(id) => {
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"staus"}}"#).into()
            }
            Self::BadParams(id) => format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"snapshot","params":{{"path":5}}}}"#
            )
            .into(),
            Self::Noise(bytes) => [b"#".as_slice(), bytes].concat(),
            Self::NotARequest(id) => {
                format!(r#"{{"jsonrpc":"1.0","id":{id},"method":"status"}}"#).into()
            }
            Self::TooLong(len) => vec![b'x'; *len],
            Self::Blank(s) => s.clone().into(),
        }
    }

    /// The reply's (id, error code); None for a result.
    fn reply(&self) -> Option<(Value, Option<i64>)> {
        match self {
            Self::Call(id, _) => Some((json!(id), None)),
            Self::Notification(_) | Self::Blank(_) => None,
            Self::UnknownMethod(id) => Some((json!(id), Some(code::METHOD_NOT_FOUND.into()))),
            Self::BadParams(id) => Some((json!(id), Some(code::INVALID_PARAMS.into()))),
            Self::Noise(_) => Some((Value::Null, Some(code::PARSE_ERROR.into()))),
            Self::NotARequest(id) => Some((json!(id), Some(code::INVALID_REQUEST.into()))),
            Self::TooLong(_) => Some((Value::Null, Some(code::INVALID_REQUEST.into()))),
        }
    }
}

fn said() -> impl Strategy<Value = Said> {
    let answered = prop::sample::select(vec![
        "status",
        "stats",
        "peers",
        "reservations",
        "circuits",
        "reload",
        "acl.list",
    ]);
    prop_oneof![
        6 => (any::<u64>(), answered.clone()).prop_map(|(id, m)| Said::Call(id, m)),
        1 => answered.prop_map(Said::Notification),
        1 => any::<u64>().prop_map(Said::UnknownMethod),
        1 => any::<u64>().prop_map(Said::BadParams),
        2 => proptest::collection::vec(any::<u8>().prop_filter("no newline", |&b| b != b'\n'), 0..48)
            .prop_map(Said::Noise),
        1 => any::<u64>().prop_map(Said::NotARequest),
        1 => "[ \t]{0,3}".prop_map(Said::Blank),
    ]
}

/// A session: lines, each ended by `\n` or `\r\n`, the last perhaps by
/// nothing, maybe one line over the cap, sent in pieces of any size.
fn session() -> impl Strategy<Value = (Vec<(Said, bool)>, bool, Vec<usize>)> {
    let lines = proptest::collection::vec((said(), any::<bool>()), 1..24);
    let too_long = proptest::option::weighted(
        0.1,
        (any::<prop::sample::Index>(), MAX_LINE + 1..MAX_LINE + 64),
    );
    (
        lines,
        too_long,
        any::<bool>(),
        proptest::collection::vec(1usize..512, 1..6),
    )
        .prop_map(|(mut lines, too_long, last_ended, pieces)| {
            if let Some((at, len)) = too_long {
                lines.insert(at.index(lines.len() + 1), (Said::TooLong(len), false));
            }
            (lines, last_ended, pieces)
        })
}

/// Each non-blank line gets exactly its reply, in order, however the
/// stream was cut into pieces, and the connection survives every error.
#[test]
fn the_server_answers_every_line_of_any_stream_in_order() {
    use async_std::task::block_on;
    let dir = TempDir::new("properties");
    // The server runs on async-std's own threads between the cases.
    let relay = block_on(Relay::start(config(&dir.join("relay.sock")), feed(10)));
    let mut runner = TestRunner::new(cases(48));
    let outcome = runner.run(&session(), |(lines, last_ended, pieces)| {
        block_on(exchange(&relay, &lines, last_ended, &pieces))
    });
    block_on(relay.stop());
    if let Err(e) = outcome {
        panic!("{e}");
    }
}

async fn exchange(
    relay: &Relay,
    lines: &[(Said, bool)],
    last_ended: bool,
    pieces: &[usize],
) -> Result<(), TestCaseError> {
    let mut wire = Vec::new();
    for (i, (said, crlf)) in lines.iter().enumerate() {
        wire.extend(said.bytes());
        if i + 1 < lines.len() || last_ended {
            wire.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
        }
    }
    let (mut raw, _greeting) = Raw::connect(&relay.path).await;
    let mut rest = &wire[..];
    for &size in pieces.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, after) = rest.split_at(size.min(rest.len()));
        raw.stream.write_all(piece).await.unwrap();
        rest = after;
    }
    // The last line may have no newline: closing our side ends it.
    raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    for (said, _) in lines {
        let Some((id, code)) = said.reply() else {
            continue;
        };
        let reply = raw.recv().await;
        prop_assert!(reply.is_some(), "no reply to {:?}", said);
        let reply = reply.unwrap();
        prop_assert_eq!(&reply["id"], &id, "{:?}: {}", said, reply);
        match code {
            None => prop_assert!(reply.get("result").is_some(), "{:?}: {}", said, reply),
            Some(code) => prop_assert_eq!(
                &reply["error"]["code"],
                &json!(code),
                "{:?}: {}",
                said,
                reply
            ),
        }
    }
    let extra = raw.recv().await;
    prop_assert!(extra.is_none(), "a reply too many: {:?}", extra);
    Ok(())
}
