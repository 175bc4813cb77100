//! The log shipper's test receivers against the real programs: the OTLP
//! receiver (receiver.py and oteltap), the rotel collector as a hop,
//! faulty.py's failure modes, and rsyslog with RFC 5424 structured data over
//! UDP and octet-counted TCP. Each test fails when a field does not come
//! back exactly as sent. Needs tests/otlp/install.sh and the Debian package
//! rsyslog (scripts/test installs both).

use std::time::Duration;

use bsv_p2p_tests::otlp::{post_protobuf, FaultyOtlp, HttpAnswer, OtlpReceiver, Rotel};
use bsv_p2p_tests::syslog::{
    parse_structured_data, send_tcp_octet_counted, send_udp, Rsyslog, SdElement,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// A protobuf message written field by field (the OTLP messages here are
/// small enough to spell out by their field numbers).
#[derive(Default, Clone)]
struct Pb(Vec<u8>);

impl Pb {
    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(mut self, field: u32, wire_type: u64) -> Pb {
        self.put_varint((u64::from(field) << 3) | wire_type);
        self
    }

    fn varint(self, field: u32, v: u64) -> Pb {
        let mut pb = self.key(field, 0);
        pb.put_varint(v);
        pb
    }

    fn fixed64(self, field: u32, v: u64) -> Pb {
        let mut pb = self.key(field, 1);
        pb.0.extend_from_slice(&v.to_le_bytes());
        pb
    }

    fn fixed32(self, field: u32, v: u32) -> Pb {
        let mut pb = self.key(field, 5);
        pb.0.extend_from_slice(&v.to_le_bytes());
        pb
    }

    fn bytes(self, field: u32, b: &[u8]) -> Pb {
        let mut pb = self.key(field, 2);
        pb.put_varint(b.len() as u64);
        pb.0.extend_from_slice(b);
        pb
    }

    fn string(self, field: u32, s: &str) -> Pb {
        self.bytes(field, s.as_bytes())
    }

    fn msg(self, field: u32, m: Pb) -> Pb {
        self.bytes(field, &m.0)
    }
}

// AnyValue: string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7.
fn string(s: &str) -> Pb {
    Pb::default().string(1, s)
}
fn boolean(b: bool) -> Pb {
    Pb::default().varint(2, u64::from(b))
}
fn int(i: i64) -> Pb {
    Pb::default().varint(3, i as u64)
}
fn double(d: f64) -> Pb {
    Pb::default().fixed64(4, d.to_bits())
}
fn array(values: Vec<Pb>) -> Pb {
    let list = values.into_iter().fold(Pb::default(), |l, v| l.msg(1, v));
    Pb::default().msg(5, list)
}
fn kvlist(kvs: Vec<Pb>) -> Pb {
    let list = kvs.into_iter().fold(Pb::default(), |l, kv| l.msg(1, kv));
    Pb::default().msg(6, list)
}
fn bytes_value(b: &[u8]) -> Pb {
    Pb::default().bytes(7, b)
}
/// KeyValue: key 1, value 2.
fn kv(key: &str, value: Pb) -> Pb {
    Pb::default().string(1, key).msg(2, value)
}
/// Resource: attributes 1; InstrumentationScope: name 1, version 2, attributes 3.
fn resource(attrs: Vec<Pb>) -> Pb {
    attrs.into_iter().fold(Pb::default(), |r, a| r.msg(1, a))
}
fn scope(name: &str, version: &str, attrs: Vec<Pb>) -> Pb {
    attrs
        .into_iter()
        .fold(Pb::default().string(1, name).string(2, version), |s, a| {
            s.msg(3, a)
        })
}

const TRACE_ID: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const SPAN_ID: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
const PARENT_ID: [u8; 8] = [0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8];
const LINKED_TRACE: [u8; 16] = [0xee; 16];
const T0: u64 = 1_795_991_666_491_796_713;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An ExportLogsServiceRequest: two records under resource A (one with
/// every field and attribute type) and one under resource B.
fn logs_request() -> Vec<u8> {
    // LogRecord: time 1 (fixed64), severity_number 2, severity_text 3,
    // body 5, attributes 6, dropped_attributes_count 7, flags 8 (fixed32),
    // trace_id 9, span_id 10, observed_time 11 (fixed64), event_name 12.
    let full = Pb::default()
        .fixed64(1, T0)
        .varint(2, 17)
        .string(3, "ERROR")
        .msg(5, string("circuit \"closed\"\n\\ üñí 😀"))
        .msg(6, kv("peer", string("12D3KooWxyz")))
        .msg(6, kv("bytes", int(-5_000_000_000)))
        .msg(6, kv("ratio", double(0.25)))
        .msg(6, kv("limited", boolean(true)))
        .msg(6, kv("raw", bytes_value(&[0, 1, 0xfe])))
        .msg(
            6,
            kv("addrs", array(vec![string("/ip4/127.0.0.1"), int(7)])),
        )
        .msg(6, kv("nested", kvlist(vec![kv("k", string("v"))])))
        .varint(7, 2)
        .fixed32(8, 1)
        .bytes(9, &TRACE_ID)
        .bytes(10, &SPAN_ID)
        .fixed64(11, T0 + 1)
        .string(12, "relay.circuit.closed");
    let plain = Pb::default()
        .fixed64(1, T0 + 2)
        .varint(2, 9)
        .msg(5, string("second"));
    let other = Pb::default()
        .fixed64(1, T0 + 3)
        .msg(5, kvlist(vec![kv("event", string("x"))]));
    // ExportLogsServiceRequest: resource_logs 1; ResourceLogs: resource 1,
    // scope_logs 2, schema_url 3; ScopeLogs: scope 1, log_records 2, schema_url 3.
    let resource_a = Pb::default()
        .msg(
            1,
            resource(vec![
                kv("service.name", string("bsv-p2p-relay")),
                kv("service.instance.id", string("relay-1")),
                kv("host.pid", int(4242)),
            ]),
        )
        .msg(
            2,
            Pb::default()
                .msg(
                    1,
                    scope("bsv-p2p-logship", "0.1.0", vec![kv("lib", string("x"))]),
                )
                .msg(2, full)
                .msg(2, plain)
                .string(3, "https://opentelemetry.io/schemas/1.26.0"),
        )
        .string(3, "https://opentelemetry.io/schemas/1.25.0");
    let resource_b = Pb::default()
        .msg(1, resource(vec![kv("service.name", string("other"))]))
        .msg(2, Pb::default().msg(2, other));
    Pb::default().msg(1, resource_a).msg(1, resource_b).0
}

/// An ExportTraceServiceRequest with one span carrying events, a link and
/// an error status.
fn traces_request() -> Vec<u8> {
    // Span: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5,
    // kind 6, start 7 (fixed64), end 8 (fixed64), attributes 9,
    // dropped_attributes_count 10, events 11, dropped_events_count 12,
    // links 13, dropped_links_count 14, status 15, flags 16 (fixed32).
    // Event: time 1 (fixed64), name 2, attributes 3. Link: trace_id 1,
    // span_id 2, trace_state 3, attributes 4. Status: message 2, code 3.
    let span = Pb::default()
        .bytes(1, &TRACE_ID)
        .bytes(2, &SPAN_ID)
        .string(3, "k=v")
        .bytes(4, &PARENT_ID)
        .string(5, "circuit")
        .varint(6, 2)
        .fixed64(7, T0)
        .fixed64(8, T0 + 5_000)
        .msg(9, kv("bytes.relayed", int(123_456)))
        .msg(
            11,
            Pb::default()
                .fixed64(1, T0 + 10)
                .string(2, "reservation.accepted")
                .msg(3, kv("peer", string("12D3KooWabc"))),
        )
        .msg(11, Pb::default().fixed64(1, T0 + 20).string(2, "closed"))
        .varint(12, 1)
        .msg(
            13,
            Pb::default()
                .bytes(1, &LINKED_TRACE)
                .bytes(2, &PARENT_ID)
                .msg(4, kv("why", string("hop"))),
        )
        .msg(
            15,
            Pb::default().string(2, "limit \"reached\"").varint(3, 2),
        )
        .fixed32(16, 0x301);
    let resource_spans = Pb::default()
        .msg(
            1,
            resource(vec![kv("service.name", string("bsv-p2p-relay"))]),
        )
        .msg(
            2,
            Pb::default()
                .msg(1, scope("bsv-p2p-logship", "0.1.0", vec![]))
                .msg(2, span),
        );
    Pb::default().msg(1, resource_spans).0
}

fn assert_ok(answer: &HttpAnswer) {
    assert_eq!(
        answer.code,
        200,
        "{answer:?} {}",
        String::from_utf8_lossy(&answer.body)
    );
}

/// Checks the three log records of [`logs_request`] as receiver.py prints
/// them, field by field.
fn assert_full_logs(logs: &[Value]) {
    assert_eq!(logs.len(), 3, "{logs:#?}");
    let resource_a = json!({
        "service.name": "bsv-p2p-relay",
        "service.instance.id": "relay-1",
        "host.pid": 4242,
    });
    let scope_a = json!({
        "name": "bsv-p2p-logship",
        "version": "0.1.0",
        "attributes": {"lib": "x"},
        "droppedAttributesCount": 0,
    });
    let full = &logs[0];
    assert_eq!(full["resource"], resource_a, "{full:#}");
    assert_eq!(
        full["resourceSchemaUrl"],
        "https://opentelemetry.io/schemas/1.25.0"
    );
    assert_eq!(full["scope"], scope_a, "{full:#}");
    assert_eq!(
        full["scopeSchemaUrl"],
        "https://opentelemetry.io/schemas/1.26.0"
    );
    assert_eq!(full["timeUnixNano"], T0, "{full:#}");
    assert_eq!(full["observedTimeUnixNano"], T0 + 1);
    assert_eq!(full["severityNumber"], 17);
    assert_eq!(full["severityText"], "ERROR");
    assert_eq!(full["body"], "circuit \"closed\"\n\\ üñí 😀");
    assert_eq!(
        full["attributes"],
        json!({
            "peer": "12D3KooWxyz",
            "bytes": -5_000_000_000i64,
            "ratio": 0.25,
            "limited": true,
            "raw": {"bytes": "0001fe"},
            "addrs": ["/ip4/127.0.0.1", 7],
            "nested": {"k": "v"},
        }),
        "{full:#}"
    );
    assert!(
        full["attributes"]["ratio"].is_f64(),
        "a double stays a float"
    );
    assert_eq!(full["droppedAttributesCount"], 2);
    assert_eq!(full["flags"], 1);
    assert_eq!(full["traceId"], hex(&TRACE_ID));
    assert_eq!(full["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(full["spanId"], "00f067aa0ba902b7");
    assert_eq!(full["eventName"], "relay.circuit.closed");
    assert_eq!(full["contentType"], "application/x-protobuf");

    let plain = &logs[1];
    assert_eq!(plain["resource"], resource_a);
    assert_eq!(plain["scope"], scope_a);
    assert_eq!(plain["body"], "second");
    assert_eq!(plain["severityNumber"], 9);
    assert_eq!(plain["traceId"], "", "an unset trace id is empty");
    assert_eq!(plain["attributes"], json!({}));
    assert_eq!(plain["request"], full["request"], "one request");

    let other = &logs[2];
    assert_eq!(other["resource"], json!({"service.name": "other"}));
    assert_eq!(other["scope"]["name"], "");
    assert_eq!(other["body"], json!({"event": "x"}));
    assert_eq!(other["timeUnixNano"], T0 + 3);
}

#[test]
fn otlp_receiver_returns_every_field_with_its_resource() {
    let mut receiver = OtlpReceiver::start();
    let port = receiver.port();
    assert_eq!(receiver.endpoint(), format!("http://127.0.0.1:{port}"));

    let answer = post_protobuf(port, "/v1/logs", &logs_request());
    assert_ok(&answer);
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-protobuf")
    );
    assert!(answer.body.is_empty(), "an empty ExportLogsServiceResponse");
    assert_full_logs(&receiver.wait_logs(3, WAIT));

    assert_ok(&post_protobuf(port, "/v1/traces", &traces_request()));
    let spans = receiver.wait_spans(1, WAIT);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    assert_eq!(span["resource"], json!({"service.name": "bsv-p2p-relay"}));
    assert_eq!(span["scope"]["name"], "bsv-p2p-logship");
    assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["spanId"], "00f067aa0ba902b7");
    assert_eq!(span["parentSpanId"], hex(&PARENT_ID));
    assert_eq!(span["traceState"], "k=v");
    assert_eq!(span["flags"], 0x301);
    assert_eq!(span["name"], "circuit");
    assert_eq!(span["kind"], 2);
    assert_eq!(span["startTimeUnixNano"], T0);
    assert_eq!(span["endTimeUnixNano"], T0 + 5_000);
    assert_eq!(span["attributes"], json!({"bytes.relayed": 123_456}));
    assert_eq!(
        span["events"],
        json!([
            {"timeUnixNano": T0 + 10, "name": "reservation.accepted",
             "attributes": {"peer": "12D3KooWabc"}, "droppedAttributesCount": 0},
            {"timeUnixNano": T0 + 20, "name": "closed",
             "attributes": {}, "droppedAttributesCount": 0},
        ]),
        "{span:#}"
    );
    assert_eq!(span["droppedEventsCount"], 1);
    assert_eq!(
        span["links"],
        json!([{"traceId": hex(&LINKED_TRACE), "spanId": hex(&PARENT_ID), "traceState": "",
                "attributes": {"why": "hop"}, "droppedAttributesCount": 0, "flags": 0}])
    );
    assert_eq!(
        span["status"],
        json!({"code": 2, "message": "limit \"reached\""})
    );
    assert_eq!(receiver.logs().len(), 3, "spans are not logs");

    // A body that is not an ExportLogsServiceRequest is refused and shown.
    let bad = post_protobuf(port, "/v1/logs", b"\xff\xff\xff\xff");
    assert_eq!(bad.code, 400, "{bad:?}");
    // Its record comes through the receiver's standard output, read on a
    // thread of ours: wait for it rather than race the reader.
    let errors = receiver.wait_records("error", 1, Duration::from_secs(5));
    assert_eq!(errors.len(), 1, "{errors:?}");

    // Stopped, it refuses connections; started again on the same port, it
    // receives again and keeps what it had.
    assert!(receiver.stop().success(), "{}", receiver.stderr());
    assert!(bsv_p2p_tests::otlp::http_request(port, "POST", "/v1/logs", &[], b"").is_err());
    receiver.start_again();
    assert_eq!(receiver.port(), port);
    assert_ok(&post_protobuf(port, "/v1/logs", &logs_request()));
    let logs = receiver.wait_logs(6, WAIT);
    assert_full_logs(&logs[3..]);
    assert_eq!(logs[3]["request"], 1, "a new run counts requests from 1");
}

#[test]
fn oteltap_decodes_the_same_records_without_resources() {
    let receiver = OtlpReceiver::start_oteltap();
    assert_ok(&post_protobuf(receiver.port(), "/v1/logs", &logs_request()));
    assert_ok(&post_protobuf(
        receiver.port(),
        "/v1/traces",
        &traces_request(),
    ));
    let logs = receiver.wait_logs(3, WAIT);
    let spans = receiver.wait_spans(1, WAIT);
    let full = &logs[0];
    assert_eq!(
        full["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{full:#}"
    );
    assert_eq!(full["spanId"], "00f067aa0ba902b7");
    assert_eq!(full["timeUnixNano"], T0.to_string());
    assert_eq!(full["severityNumber"], 17);
    assert_eq!(
        full["body"],
        json!({"stringValue": "circuit \"closed\"\n\\ üñí 😀"})
    );
    assert_eq!(
        full["attributes"][0],
        json!({"key": "peer", "value": {"stringValue": "12D3KooWxyz"}})
    );
    assert_eq!(full["eventName"], "relay.circuit.closed");
    assert!(full.get("resource").is_none(), "oteltap prints no resource");
    assert_eq!(logs[1]["body"], json!({"stringValue": "second"}));
    let span = &spans[0];
    assert_eq!(span["name"], "circuit");
    assert_eq!(span["parentSpanId"], hex(&PARENT_ID));
    assert_eq!(span["events"][0]["name"], "reservation.accepted");
    assert_eq!(
        span["status"],
        json!({"message": "limit \"reached\"", "code": 2})
    );
}

#[test]
fn rotel_forwards_gzipped_to_the_receiver() {
    let receiver = OtlpReceiver::start();
    let rotel = Rotel::start(&receiver.endpoint());
    assert_ok(&post_protobuf(rotel.port(), "/v1/logs", &logs_request()));
    let logs = receiver.wait_logs(3, WAIT);
    // rotel batches per resource, in its own order.
    let mut sorted = logs.clone();
    sorted.sort_by_key(|l| l["timeUnixNano"].as_u64());
    assert_full_logs(&sorted);
    assert!(
        logs.iter().all(|l| l["contentEncoding"] == "gzip"),
        "{logs:#?}\n{}",
        rotel.log()
    );
}

/// (rejected count, error message) of an Export*ServiceResponse's
/// partial_success (field 1: field 1 varint, field 2 string).
fn partial_success(body: &[u8]) -> (u64, String) {
    fn varint(b: &[u8], at: &mut usize) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = b[*at];
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        v
    }
    fn fields(b: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
        let (mut at, mut out) = (0, Vec::new());
        while at < b.len() {
            let key = varint(b, &mut at);
            match key & 7 {
                0 => out.push((key >> 3, varint(b, &mut at), Vec::new())),
                2 => {
                    let len = varint(b, &mut at) as usize;
                    out.push((key >> 3, 0, b[at..at + len].to_vec()));
                    at += len;
                }
                other => panic!("unexpected wire type {other} in {b:?}"),
            }
        }
        out
    }
    let outer = fields(body);
    let inner = &outer.iter().find(|f| f.0 == 1).expect("partial_success").2;
    let inner = fields(inner);
    let rejected = inner.iter().find(|f| f.0 == 1).map_or(0, |f| f.1);
    let message = inner
        .iter()
        .find(|f| f.0 == 2)
        .map(|f| String::from_utf8(f.2.clone()).expect("UTF-8"))
        .unwrap_or_default();
    (rejected, message)
}

#[test]
fn faulty_forwards_and_fails_on_demand() {
    let receiver = OtlpReceiver::start();
    let faulty = FaultyOtlp::start(&receiver.endpoint());
    let port = faulty.port();

    // Forwarding: the real receiver gets and answers it.
    assert_ok(&post_protobuf(port, "/v1/logs", &logs_request()));
    assert_full_logs(&receiver.wait_logs(3, WAIT));
    let forwarded = &receiver.logs()[0];
    assert_eq!(
        forwarded["headers"]["content-type"],
        "application/x-protobuf"
    );

    faulty.set_mode(json!({"status": 429, "retryAfter": "2"}));
    let answer = post_protobuf(port, "/v1/logs", &logs_request());
    assert_eq!(answer.code, 429, "{answer:?}");
    assert_eq!(answer.header("retry-after"), Some("2"));

    faulty.set_mode(json!({"status": 400}));
    let answer = post_protobuf(port, "/v1/traces", &traces_request());
    assert_eq!(answer.code, 400, "{answer:?}");
    assert_eq!(answer.header("retry-after"), None);

    faulty.set_mode(json!({"status": "partial", "rejected": 3, "message": "too old"}));
    let answer = post_protobuf(port, "/v1/logs", &logs_request());
    assert_ok(&answer);
    assert_eq!(
        answer.header("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(partial_success(&answer.body), (3, "too old".to_string()));
    let answer = post_protobuf(port, "/v1/traces", &traces_request());
    assert_eq!(partial_success(&answer.body), (3, "too old".to_string()));

    // "times": the next request only, then forwarding again.
    faulty.set_mode(json!({"status": 503, "times": 1, "delay": 0.3}));
    let started = std::time::Instant::now();
    assert_eq!(post_protobuf(port, "/v1/logs", &logs_request()).code, 503);
    assert!(started.elapsed() >= Duration::from_millis(300), "delayed");
    assert_ok(&post_protobuf(port, "/v1/logs", &logs_request()));

    faulty.set_mode(json!({"status": "drop"}));
    assert!(bsv_p2p_tests::otlp::http_request(
        port,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf")],
        &logs_request(),
    )
    .is_err());

    // Only the forwarded requests reached the receiver: 2 requests of 3 records.
    assert_eq!(receiver.wait_logs(6, WAIT).len(), 6);
    assert!(receiver.spans().is_empty(), "no span was forwarded");

    let requests = faulty.requests();
    let seen: Vec<(&str, u64, &str)> = requests
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
                r["mode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("/v1/logs", 200, "forward"),
            ("/v1/logs", 429, "status"),
            ("/v1/traces", 400, "status"),
            ("/v1/logs", 200, "partial"),
            ("/v1/traces", 200, "partial"),
            ("/v1/logs", 503, "status"),
            ("/v1/logs", 200, "forward"),
            ("/v1/logs", 0, "drop"),
        ],
        "{requests:#?}"
    );
    assert_eq!(requests[1]["retryAfter"], "2");
    assert_eq!(requests[0]["bytes"], logs_request().len());
    let times: Vec<f64> = requests.iter().map(|r| r["t"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(
        faulty.log().is_empty(),
        "faulty.py stderr: {}",
        faulty.log()
    );

    faulty.reset();
    assert!(faulty.requests().is_empty());
}

#[test]
fn rsyslog_keeps_rfc5424_structured_data_over_udp_and_tcp() {
    let rsyslog = Rsyslog::start();
    let sd = r#"[ex@32473 quote="q\"uote" back="back\\slash" bracket="brack\]et" utf="ü€😀"][meta@1 x="1"]"#;
    let udp = format!(
        "<165>1 2026-11-29T22:00:00.123456Z relay-host bsv-relay 4242 UDP1 {sd} \u{feff}udp héllo"
    );
    let tcp_sd = format!(
        "<14>1 2026-11-29T22:00:01.5+01:00 relay-host bsv-relay - TCP1 {sd} line one\nline two"
    );
    let tcp_nil = "<134>1 2026-11-29T22:00:02Z relay-host logship 77 TCP2 - no structured data";
    // Bigger than rsyslog's default 8 KiB limit; the fixture allows 64 KiB.
    let big = format!(
        "<14>1 2026-11-29T22:00:03Z relay-host logship - TCP3 [big@1 v=\"{}\"] end",
        "x".repeat(20_000)
    );
    send_udp(rsyslog.udp_addr(), udp.as_bytes()).expect("send over UDP");
    send_tcp_octet_counted(
        rsyslog.tcp_addr(),
        &[tcp_sd.as_bytes(), tcp_nil.as_bytes(), big.as_bytes()],
    )
    .expect("send over TCP");

    let messages = rsyslog.wait_messages(4, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rsyslog.messages().len(),
        4,
        "no message split or repeated: {messages:#?}"
    );
    let by_id = |id: &str| {
        messages
            .iter()
            .find(|m| m["msgId"] == id)
            .unwrap_or_else(|| panic!("no message {id}: {messages:#?}"))
            .clone()
    };
    let expected_sd = vec![
        SdElement {
            id: "ex@32473".into(),
            params: vec![
                ("quote".into(), "q\"uote".into()),
                ("back".into(), "back\\slash".into()),
                ("bracket".into(), "brack]et".into()),
                ("utf".into(), "ü€😀".into()),
            ],
        },
        SdElement {
            id: "meta@1".into(),
            params: vec![("x".into(), "1".into())],
        },
    ];

    let m = by_id("UDP1");
    assert_eq!(m["raw"], udp.as_str(), "{m:#}");
    assert_eq!(m["input"], "imudp");
    assert_eq!(m["protocolVersion"], "1");
    assert_eq!(m["facility"], "20");
    assert_eq!(m["severity"], "5");
    assert_eq!(m["timestamp"], "2026-11-29T22:00:00.123456Z");
    assert_eq!(m["hostname"], "relay-host");
    assert_eq!(m["appName"], "bsv-relay");
    assert_eq!(m["procId"], "4242");
    assert_eq!(m["structuredData"], sd);
    assert_eq!(
        parse_structured_data(m["structuredData"].as_str().unwrap()),
        Ok(expected_sd.clone())
    );
    assert_eq!(m["msg"], "\u{feff}udp héllo", "the BOM is kept");

    let m = by_id("TCP1");
    assert_eq!(m["raw"], tcp_sd.as_str(), "{m:#}");
    assert_eq!(m["input"], "imtcp");
    assert_eq!(m["timestamp"], "2026-11-29T22:00:01.5+01:00");
    assert_eq!(m["procId"], "-");
    assert_eq!(m["structuredData"], sd);
    assert_eq!(
        parse_structured_data(m["structuredData"].as_str().unwrap()),
        Ok(expected_sd)
    );
    assert_eq!(m["msg"], "line one\nline two", "LF kept inside a frame");

    let m = by_id("TCP2");
    assert_eq!(m["raw"], tcp_nil, "{m:#}");
    assert_eq!(
        (&m["facility"], &m["severity"]),
        (&json!("16"), &json!("6"))
    );
    assert_eq!(m["structuredData"], "-");
    assert_eq!(parse_structured_data("-"), Ok(vec![]));
    assert_eq!(m["msg"], "no structured data");

    let m = by_id("TCP3");
    assert_eq!(m["raw"].as_str().map(str::len), Some(big.len()));
    assert_eq!(m["raw"], big.as_str());
    let parsed = parse_structured_data(m["structuredData"].as_str().unwrap()).unwrap();
    assert_eq!(parsed[0].params[0].1.len(), 20_000);
    assert_eq!(m["msg"], "end");
}

#[test]
fn structured_data_parser_is_strict() {
    assert_eq!(
        parse_structured_data(r#"[a b="\x" c=""]"#),
        Ok(vec![SdElement {
            id: "a".into(),
            params: vec![("b".into(), "\\x".into()), ("c".into(), String::new())],
        }])
    );
    assert_eq!(
        parse_structured_data("[id]"),
        Ok(vec![SdElement {
            id: "id".into(),
            params: vec![],
        }])
    );
    for bad in [
        "",
        "[]",
        "[a b=\"unterminated]",
        "[a b=\"x]y\"]",
        "[a b=\"x\"] [c]",
        "[a b=x]",
        "[a  b=\"x\"]",
        "[a b=\"x\"",
        &format!("[{}]", "n".repeat(33)),
        "x[a]",
    ] {
        assert!(
            parse_structured_data(bad).is_err(),
            "{bad:?} must be refused: {:?}",
            parse_structured_data(bad)
        );
    }
}
