//! The log shipper end to end: the real relay making real events, the real
//! `bsv-p2p-logship`, and real receivers (an OTLP/HTTP receiver decoding
//! with the OpenTelemetry project's protobuf package, oteltap, the rotel
//! collector, rsyslog). Delivery is checked by comparing the sets of relay
//! sequence numbers end to end, through every fault the design names.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use async_std::task::block_on;
use bsv_p2p_tests::ctl;
use bsv_p2p_tests::health::eventually;
use bsv_p2p_tests::logship::{burst, busy_relay_config, Logship};
use bsv_p2p_tests::otlp::{FaultyOtlp, OtlpReceiver, Rotel};
use bsv_p2p_tests::scenario::circuit;
use bsv_p2p_tests::syslog::{parse_structured_data, Rsyslog};
use bsv_p2p_tests::{Client, ClientOptions, Relay, RelayOptions, Signal};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

/// The relay's journal, every event, as `bsv-p2p-ctl --json events` prints it.
fn journal(relay: &Relay) -> Vec<Value> {
    let done = ctl::run(&relay.socket(), &["--json", "events"], T).expect("ctl events");
    assert_eq!(done.code, Some(0), "ctl events: {}", done.stderr);
    done.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("an event line"))
        .collect()
}

fn last_seq(relay: &Relay) -> u64 {
    journal(relay)
        .last()
        .and_then(|e| e["seq"].as_u64())
        .unwrap_or(0)
}

/// The relay sequence numbers of OTLP log records of relay events (not the
/// shipper's own `logship_dropped`).
fn log_seqs(records: &[Value]) -> BTreeSet<u64> {
    records
        .iter()
        .filter(|r| r["eventName"] != "logship_dropped")
        .filter_map(|r| r["attributes"]["bsv_p2p.seq"].as_u64())
        .collect()
}

fn missing(have: &BTreeSet<u64>, from: u64, to: u64) -> Vec<u64> {
    (from..=to).filter(|s| !have.contains(s)).collect()
}

/// Waits until OTLP log records cover relay events `1..=last`.
/// Every sequence number received is one the relay has journaled: none
/// invented, none out of range. Events after `last` (a connection closing
/// late) may have arrived too, so the bound is read again now.
fn assert_journaled(seqs: &BTreeSet<u64>, relay: &Relay, context: &str) {
    let now = last_seq(relay);
    let stray: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|s| *s == 0 || *s > now)
        .collect();
    assert!(
        stray.is_empty(),
        "sequence numbers outside 1..={now}: {stray:?}\n{context}"
    );
}

fn wait_covered(receiver: &OtlpReceiver, last: u64, limit: Duration) -> BTreeSet<u64> {
    eventually("every relay event as an OTLP log record", limit, || {
        let have = log_seqs(&receiver.logs());
        let gone = missing(&have, 1, last);
        if gone.is_empty() {
            Ok(have)
        } else {
            Err(format!(
                "{} of 1..={last} missing, first {:?}",
                gone.len(),
                &gone[..gone.len().min(10)]
            ))
        }
    })
}

async fn client() -> Client {
    Client::start(ClientOptions::default())
        .await
        .expect("client starts")
}

/// `n`-th metric series of a destination.
fn series(name: &str, destination: &str) -> String {
    format!("{name}{{destination=\"{destination}\"}}")
}

#[test]
fn stdout_lines_follow_the_guide_and_keep_each_events_own_time() {
    let relay = Relay::start(busy_relay_config());
    let logship = Logship::start(&relay.socket(), &["--stdout"]);
    block_on(burst(&relay, 20));
    let last = last_seq(&relay);
    let lines = eventually("every event on stdout", T, || {
        let lines = logship.lines();
        match lines.last().and_then(|l| l["seq"].as_u64()) {
            Some(seq) if seq >= last => Ok(lines),
            other => Err(format!("last seq printed {other:?}, want {last}")),
        }
    });
    let journal: BTreeMap<u64, Value> = journal(&relay)
        .into_iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e))
        .collect();
    let printed: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        printed,
        journal.keys().copied().collect::<Vec<_>>(),
        "stdout prints every journaled event once, in order"
    );
    for line in &lines {
        let event = &journal[&line["seq"].as_u64().unwrap()];
        assert_eq!(
            line["timestamp"], event["ts"],
            "the event's own time: {line}"
        );
        assert_eq!(line["event"], event["kind"]);
        assert!(matches!(
            line["level"].as_str(),
            Some("info" | "warn" | "error")
        ));
        if let Some(peer) = event.get("peerId") {
            assert_eq!(&line["peerId"], peer);
        }
    }
    let created = lines
        .iter()
        .find(|l| l["event"] == "reservation_created")
        .expect("a reservation_created line");
    let ttl = created["ttl"].as_u64().expect("ttl, as in the guide");
    assert!((3590..=3600).contains(&ttl), "{created}");
    let renewed: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "reservation_renewed")
        .collect();
    assert_eq!(renewed.len(), 19);
    assert!(
        renewed.iter().all(|l| l["traceId"] == created["traceId"]),
        "renewals carry the reservation's trace id"
    );
}

#[test]
fn otlp_logs_and_spans_reach_a_real_receiver_linked_by_their_ids() {
    let relay = Relay::start(json!({ "mode": "relay" }));
    let receiver = OtlpReceiver::start();
    let logship = Logship::start(
        &relay.socket(),
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--environment",
            "staging",
        ],
    );
    let (a, b) = block_on(async {
        let a = client().await;
        let b = client().await;
        circuit(&relay, &relay.tcp_addr(), &a, &b).await;
        (a, b)
    });
    // End the circuit and the reservation: b leaves, then a.
    b.disconnect(relay.peer_id());
    relay
        .wait_for_event("circuit_closed", |_| true, T)
        .expect("the circuit closes");
    a.disconnect(relay.peer_id());
    relay
        .wait_for_event("reservation_closed", |_| true, T)
        .expect("the reservation closes");
    let last = last_seq(&relay);
    let logs = wait_covered(&receiver, last, T);
    assert_journaled(&logs, &relay, "");
    let spans = eventually("the circuit and reservation spans", T, || {
        let spans = receiver.spans();
        let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
        if names.contains(&"circuit") && names.contains(&"reservation") {
            Ok(spans)
        } else {
            Err(format!("{names:?}"))
        }
    });

    let logs = receiver.logs();
    let journal = journal(&relay);
    let log_of = |kind: &str| {
        logs.iter()
            .find(|l| l["eventName"] == kind)
            .unwrap_or_else(|| panic!("no {kind} log record in {logs:#?}"))
    };
    let event_of = |kind: &str| {
        journal
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in the journal"))
    };
    let unix_nanos = |ts: &Value| -> u64 {
        let t = humantime::parse_rfc3339(ts.as_str().unwrap()).unwrap();
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    };

    // Records keep the event's own time, and the resource names the relay.
    for log in &logs {
        let seq = log["attributes"]["bsv_p2p.seq"].as_u64().unwrap();
        let event = journal.iter().find(|e| e["seq"] == seq).unwrap();
        assert_eq!(log["timeUnixNano"].as_u64(), Some(unix_nanos(&event["ts"])));
        assert_eq!(log["resource"]["service.name"], "bsv-p2p-relay");
        assert_eq!(
            log["resource"]["service.instance.id"],
            relay.peer_id().to_string()
        );
        assert_eq!(
            log["resource"]["service.version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(log["resource"]["deployment.environment.name"], "staging");
        assert_eq!(log["contentType"], "application/x-protobuf");
    }

    // The circuit: one span, its two log records carry its ids.
    let span = spans.iter().find(|s| s["name"] == "circuit").unwrap();
    let (opened, closed) = (log_of("circuit_opened"), log_of("circuit_closed"));
    for log in [opened, closed] {
        assert_eq!(log["traceId"], span["traceId"], "{log}");
        assert_eq!(log["spanId"], span["spanId"], "{log}");
    }
    let closed_event = event_of("circuit_closed");
    let attrs = &span["attributes"];
    assert_eq!(attrs["bsv_p2p.src"], json!(b.peer_id().to_string()));
    assert_eq!(attrs["bsv_p2p.dst"], json!(a.peer_id().to_string()));
    assert_eq!(
        attrs["bsv_p2p.bytes_src_to_dst"],
        closed_event["bytesSrcToDst"]
    );
    assert_eq!(
        attrs["bsv_p2p.bytes_dst_to_src"],
        closed_event["bytesDstToSrc"]
    );
    assert_eq!(attrs["bsv_p2p.duration_ms"], closed_event["durationMs"]);
    assert_eq!(attrs["bsv_p2p.end_reason"], closed_event["reason"]);
    // The relay's default limits: an hour, 1 GiB each way.
    assert_eq!(closed_event["limitDurationMs"], json!(3_600_000));
    assert_eq!(
        attrs["bsv_p2p.limit_duration_ms"],
        closed_event["limitDurationMs"]
    );
    assert_eq!(attrs["bsv_p2p.limit_bytes"], json!(1u64 << 30));
    let end = span["endTimeUnixNano"].as_u64().unwrap();
    assert_eq!(end, unix_nanos(&closed_event["ts"]));
    assert_eq!(
        end - span["startTimeUnixNano"].as_u64().unwrap(),
        closed_event["durationMs"].as_u64().unwrap() * 1_000_000
    );

    // The reservation: created to closed, same ids on its records.
    let span = spans.iter().find(|s| s["name"] == "reservation").unwrap();
    let created = log_of("reservation_created");
    assert_eq!(created["spanId"], span["spanId"]);
    assert_eq!(log_of("reservation_closed")["spanId"], span["spanId"]);
    assert_eq!(
        span["startTimeUnixNano"].as_u64(),
        Some(unix_nanos(&event_of("reservation_created")["ts"]))
    );
    assert_eq!(
        span["attributes"]["bsv_p2p.peer_id"],
        json!(a.peer_id().to_string())
    );
    // Connection records belong to no span.
    assert_eq!(log_of("connection_opened")["traceId"], "");
    drop(logship);
}

#[test]
fn through_the_rotel_collector_into_oteltap() {
    let relay = Relay::start(busy_relay_config());
    // oteltap takes plain protobuf only; rotel gzips, so it goes in front
    // of the receiver that decodes everything, and oteltap is fed directly.
    let receiver = OtlpReceiver::start();
    let rotel = Rotel::start(&receiver.endpoint());
    let tap = OtlpReceiver::start_oteltap();
    let logship = Logship::start(
        &relay.socket(),
        &[
            "--otlp-endpoint",
            &rotel.endpoint(),
            "--otlp-compression",
            "gzip",
        ],
    );
    let direct = Logship::start(
        &relay.socket(),
        &[
            "--otlp-logs-endpoint",
            &format!("{}/v1/logs", tap.endpoint()),
            "--otlp-signals",
            "logs",
        ],
    );
    block_on(burst(&relay, 50));
    let last = last_seq(&relay);
    let through_rotel = wait_covered(&receiver, last, T);
    assert_journaled(&through_rotel, &relay, &rotel.log());
    // oteltap prints bare records in protobuf's JSON mapping.
    eventually("oteltap decoded every record", T, || {
        let logs = tap.logs();
        let seqs: BTreeSet<u64> = logs
            .iter()
            .filter_map(|l| {
                l["attributes"].as_array()?.iter().find_map(|a| {
                    (a["key"] == "bsv_p2p.seq").then(|| {
                        a["value"]["intValue"]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .or_else(|| a["value"]["intValue"].as_u64())
                    })?
                })
            })
            .collect();
        let gone = missing(&seqs, 1, last);
        if gone.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} missing: {:?}",
                gone.len(),
                &gone[..gone.len().min(5)]
            ))
        }
    });
    let renewed = tap
        .logs()
        .into_iter()
        .find(|l| l["eventName"] == "reservation_renewed")
        .expect("a renewal in oteltap");
    assert_eq!(
        renewed["traceId"].as_str().map(str::len),
        Some(32),
        "{renewed}"
    );
    drop((logship, direct));
}

#[test]
fn syslog_over_udp_and_tcp_reaches_rsyslog_with_structured_data_intact() {
    let relay = Relay::start(busy_relay_config());
    let rsyslog = Rsyslog::start();
    let udp = format!("udp://{}", rsyslog.udp_addr());
    let tcp = format!("tcp://{}", rsyslog.tcp_addr());
    let logship = Logship::start(
        &relay.socket(),
        &[
            "--syslog",
            &udp,
            "--syslog",
            &tcp,
            "--syslog-facility",
            "local3",
            "--syslog-hostname",
            "relay-eu-1",
        ],
    );
    block_on(burst(&relay, 30));
    let last = last_seq(&relay);
    let messages = rsyslog.wait_messages(2 * last as usize, T);
    let journal = journal(&relay);
    for input in ["imudp", "imtcp"] {
        let mut seqs = BTreeSet::new();
        for m in messages.iter().filter(|m| m["input"] == input) {
            assert_eq!(m["protocolVersion"], "1", "{m}");
            assert_eq!(m["facility"], "19", "local3 is facility 19: {m}");
            assert_eq!(m["hostname"], "relay-eu-1");
            assert_eq!(m["appName"], "bsv-p2p-relay");
            let sd = parse_structured_data(m["structuredData"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{e}: {m}"));
            assert_eq!(sd.len(), 1);
            assert_eq!(sd[0].id, "bsvp2p@32473");
            let param = |k: &str| {
                sd[0]
                    .params
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            let seq: u64 = param("seq").unwrap().parse().unwrap();
            let event = journal.iter().find(|e| e["seq"] == seq).unwrap();
            assert_eq!(m["msgId"], event["kind"]);
            // The event's own time, to the millisecond.
            let sent = humantime::parse_rfc3339(event["ts"].as_str().unwrap()).unwrap();
            let reported = m["timestamp"].as_str().unwrap().replace("+00:00", "Z");
            let got = humantime::parse_rfc3339(&reported).unwrap();
            assert_eq!(sent, got, "{m}");
            if let Some(peer) = event["peerId"].as_str() {
                assert_eq!(param("peerId").as_deref(), Some(peer));
            }
            if event["kind"] == "reservation_renewed" {
                assert_eq!(
                    param("expiresAt"),
                    Some(event["expiresAt"].to_string()),
                    "{m}"
                );
                assert_eq!(param("traceId").map(|t| t.len()), Some(32));
            }
            seqs.insert(seq);
        }
        assert_eq!(missing(&seqs, 1, last), Vec::<u64>::new(), "{input}");
    }
    drop(logship);
}

#[test]
fn an_otlp_outage_of_30_s_during_a_burst_of_10000_loses_nothing() {
    let relay = Relay::start(busy_relay_config());
    let mut receiver = OtlpReceiver::start();
    let logship = Logship::start(
        &relay.socket(),
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--otlp-signals",
            "logs",
        ],
    );
    block_on(burst(&relay, 2000));
    receiver.stop();
    let down = Instant::now();
    block_on(burst(&relay, 10_000));
    let sleep = Duration::from_secs(30).saturating_sub(down.elapsed());
    std::thread::sleep(sleep);
    let waiting = logship.metric(&series("bsv_p2p_logship_buffered_records", "otlp-logs"));
    assert!(waiting.unwrap_or(0.0) > 0.0, "records wait in the buffer");
    assert_eq!(
        logship.metric(&series("bsv_p2p_logship_destination_up", "otlp-logs")),
        Some(0.0)
    );
    receiver.start_again();
    let last = last_seq(&relay);
    let have = wait_covered(&receiver, last, Duration::from_secs(60));
    assert_eq!(*have.last().unwrap(), last);
    let retried = logship
        .metric(&series("bsv_p2p_logship_retried_total", "otlp-logs"))
        .unwrap();
    assert!(retried >= 1.0);
    assert_eq!(
        logship.metric(&series("bsv_p2p_logship_dropped_total", "otlp-logs")),
        Some(0.0)
    );
}

#[test]
fn logship_killed_mid_burst_and_restarted_loses_nothing() {
    let relay = Relay::start(busy_relay_config());
    let receiver = OtlpReceiver::start();
    let args = [
        "--otlp-endpoint",
        &receiver.endpoint(),
        "--otlp-signals",
        "logs",
    ];
    let logship = Logship::start(&relay.socket(), &args);
    let state = std::thread::scope(|s| {
        let making = s.spawn(|| block_on(burst(&relay, 6000)));
        // Killed while the burst is going through.
        eventually("some records delivered", T, || {
            let n = receiver.logs().len();
            if n > 500 {
                Ok(())
            } else {
                Err(format!("{n}"))
            }
        });
        let state = logship.kill();
        making.join().unwrap();
        state
    });
    let logship = Logship::start_in(state, &relay.socket(), &args);
    let last = last_seq(&relay);
    wait_covered(&receiver, last, T);
    drop(logship);
}

#[test]
fn a_relay_restart_and_a_socket_absent_at_start_lose_nothing() {
    let dir = bsv_p2p_tests::ScratchDir::new("relay");
    let socket = dir.join("data").join("relay.sock");
    let receiver = OtlpReceiver::start();
    // The relay is not there yet.
    let logship = Logship::start(
        &socket,
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--otlp-signals",
            "logs",
        ],
    );
    let mut relay = Relay::start_with(RelayOptions::new(busy_relay_config()).dir(dir));
    block_on(burst(&relay, 300));
    let before = last_seq(&relay);
    // The shipper reads this relay before it goes: otherwise it may first
    // connect to the second one and read both lives from the journal, never
    // seeing the restart this test is about.
    wait_covered(&receiver, before, T);
    relay
        .stop(Signal::Term, Duration::from_secs(20))
        .expect("the relay stops");
    let relay = Relay::start_with(RelayOptions::new(busy_relay_config()).dir(relay.into_dir()));
    block_on(burst(&relay, 300));
    let last = last_seq(&relay);
    assert!(last > before + 300, "the journal went on numbering");
    wait_covered(&receiver, last, T);
    assert!(
        logship.stderr().contains("resuming when it is back"),
        "{}",
        logship.stderr()
    );
}

#[test]
fn a_400_is_rejected_once_and_other_destinations_go_on() {
    let relay = Relay::start(busy_relay_config());
    let receiver = OtlpReceiver::start();
    let faulty = FaultyOtlp::start(&receiver.endpoint());
    faulty.set_mode(json!({ "status": 400 }));
    let logship = Logship::start(
        &relay.socket(),
        &[
            "--stdout",
            "--otlp-endpoint",
            &faulty.endpoint(),
            "--otlp-signals",
            "logs",
        ],
    );
    block_on(burst(&relay, 500));
    let last = last_seq(&relay);
    let rejected = series("bsv_p2p_logship_rejected_total", "otlp-logs");
    logship.wait_metric(&rejected, T, |v| v >= last as f64);
    // Stdout had everything meanwhile.
    eventually("stdout has every event", T, || {
        let n = logship.lines().len() as u64;
        if n >= last {
            Ok(())
        } else {
            Err(format!("{n} of {last}"))
        }
    });
    let requests = faulty.requests().len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        faulty.requests().len(),
        requests,
        "a rejected batch is not sent again"
    );
    assert_eq!(
        logship.metric(&series("bsv_p2p_logship_retried_total", "otlp-logs")),
        Some(0.0)
    );
    assert!(logship.stderr().contains("rejected and not sent again"));
}

#[test]
fn a_429_with_retry_after_2_waits_two_seconds_and_partial_success_is_counted() {
    let relay = Relay::start(busy_relay_config());
    let receiver = OtlpReceiver::start();
    let faulty = FaultyOtlp::start(&receiver.endpoint());
    faulty.set_mode(json!({ "status": 429, "retryAfter": "2", "times": 2 }));
    let logship = Logship::start(
        &relay.socket(),
        &[
            "--otlp-endpoint",
            &faulty.endpoint(),
            "--otlp-signals",
            "logs",
        ],
    );
    block_on(burst(&relay, 10));
    let requests = faulty.wait_requests(3, T);
    assert_eq!(requests[0]["status"], 429);
    assert_eq!(requests[1]["status"], 429);
    for pair in requests.windows(2).take(2) {
        let gap = pair[1]["t"].as_f64().unwrap() - pair[0]["t"].as_f64().unwrap();
        assert!(
            gap >= 2.0,
            "the next attempt came {gap:.3} s after a Retry-After: 2"
        );
    }
    let last = last_seq(&relay);
    wait_covered(&receiver, last, T);

    // One answer says 3 of its records were refused: they are counted and
    // not sent again (the receiver never gets them; faulty.py does not
    // forward a partial success).
    faulty.set_mode(json!({ "status": "partial", "rejected": 3, "times": 1 }));
    block_on(burst(&relay, 10));
    let last = last_seq(&relay);
    let delivered = series("bsv_p2p_logship_delivered_total", "otlp-logs");
    logship.wait_metric(&delivered, T, |v| v >= last as f64);
    let lost = missing(&log_seqs(&receiver.logs()), 1, last);
    assert!(
        !lost.is_empty(),
        "the partial answer's request carried records"
    );
    let rejected = series("bsv_p2p_logship_rejected_total", "otlp-logs");
    assert_eq!(
        logship.metric(&rejected),
        Some(lost.len().min(3) as f64),
        "refusals counted, at most the request's records: {lost:?}"
    );
    assert!(
        logship.stderr().contains("the destination refused"),
        "{}",
        logship.stderr()
    );
}

#[test]
fn a_syslog_receiver_that_stops_reading_does_not_slow_otlp() {
    let relay = Relay::start(busy_relay_config());
    let receiver = OtlpReceiver::start();
    // Accepts connections and never reads: the kernel buffers fill.
    let stuck = TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let mut held = Vec::new();
        stuck.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(90);
        while Instant::now() < end && held.len() < 16 {
            match stuck.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
            if held.len() >= 3 {
                break;
            }
        }
        held
    });
    let logship = Logship::start(
        &relay.socket(),
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--otlp-signals",
            "logs",
            "--syslog",
            &format!("tcp://{stuck_addr}"),
        ],
    );
    let started = Instant::now();
    block_on(burst(&relay, 10_000));
    let made = started.elapsed();
    let last = last_seq(&relay);
    wait_covered(&receiver, last, T);
    let lag = started.elapsed() - made;
    let syslog = format!("syslog tcp://{stuck_addr}");
    let waiting = logship
        .metric(&series("bsv_p2p_logship_buffered_records", &syslog))
        .unwrap();
    assert!(
        waiting > 1000.0,
        "the stuck receiver holds records back: {waiting}"
    );
    assert!(
        lag < Duration::from_secs(3),
        "OTLP had everything {lag:?} after the burst ended, with syslog stuck"
    );
    drop(logship);
    let mut held = held.join().unwrap();
    // The stuck receiver really got bytes it never read.
    let mut buf = [0u8; 16];
    let n = held.first_mut().map_or(0, |s| {
        s.set_nonblocking(true).unwrap();
        s.read(&mut buf).unwrap_or(0)
    });
    assert!(n > 0, "the syslog destination wrote to the stuck receiver");
}

#[test]
fn a_full_buffer_drops_the_oldest_and_says_so() {
    let relay = Relay::start(busy_relay_config());
    let mut receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    receiver.stop();
    let logship = Logship::start(
        &relay.socket(),
        &[
            "--stdout",
            "--otlp-endpoint",
            &endpoint,
            "--otlp-signals",
            "logs",
            "--buffer-records",
            "1000",
        ],
    );
    block_on(burst(&relay, 3000));
    let last = last_seq(&relay);
    let dropped = series("bsv_p2p_logship_dropped_total", "otlp-logs");
    logship.wait_metric(&dropped, T, |v| v >= (last - 1000) as f64 - 1.0);
    assert_eq!(
        logship.metric(&series("bsv_p2p_logship_dropped_total", "stdout")),
        Some(0.0),
        "stdout kept up and lost nothing"
    );
    assert!(logship.metric("bsv_p2p_logship_buffer_records").unwrap() <= 1000.0 + 1024.0);
    receiver.start_again();
    let note = eventually("the dropped record", T, || {
        receiver
            .logs()
            .into_iter()
            .find(|l| l["eventName"] == "logship_dropped")
            .ok_or_else(|| "not yet".to_string())
    });
    let lost = note["attributes"]["bsv_p2p.lost"].as_u64().unwrap();
    assert!(lost >= last - 1000 - 1024, "{note}");
    let have = eventually("the newest records", T, || {
        let have = log_seqs(&receiver.logs());
        if have.contains(&last) {
            Ok(have)
        } else {
            Err(format!("{} records", have.len()))
        }
    });
    assert_eq!(
        have.len() as u64 + lost,
        last,
        "what arrived and what was dropped add up"
    );
}

#[test]
fn a_gap_in_the_relays_journal_is_forwarded() {
    let relay = Relay::start(json!({
        "mode": "relay",
        "relay": { "requests": { "perSecond": 100000, "burst": 1000000 } },
        "journal": { "maxEvents": 100 }
    }));
    block_on(burst(&relay, 400));
    let logship = Logship::start(&relay.socket(), &["--stdout"]);
    let gap = eventually("a gap line", T, || {
        logship
            .lines()
            .into_iter()
            .find(|l| l["event"] == "gap")
            .ok_or_else(|| format!("{:?}", logship.lines().first()))
    });
    assert_eq!(gap["level"], "warn");
    assert_eq!(gap["from"], 1);
    assert!(gap["lost"].as_u64().unwrap() >= 200, "{gap}");
    assert_eq!(
        logship.metric("bsv_p2p_logship_relay_events_lost_total"),
        gap["lost"].as_f64()
    );
}

#[test]
fn bad_flags_and_environment_exit_2_naming_the_source() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = std::process::Command::new(bsv_p2p_tests::logship::logship_bin())
            .args(args)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(env.iter().copied())
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no destination"), "{err}");
    let (code, err) = run(&["--syslog", "syslog://x"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--syslog: expected udp://"), "{err}");
    let (code, err) = run(
        &["--stdout"],
        &[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"),
        ],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_PROTOCOL: grpc is not supported"),
        "{err}"
    );
    let (code, _) = run(&["--no-such-flag"], &[]);
    assert_eq!(code, Some(2));
}

#[test]
fn otlp_json_is_an_option() {
    let relay = Relay::start(busy_relay_config());
    let receiver = OtlpReceiver::start();
    let logship = Logship::start(
        &relay.socket(),
        &[
            "--otlp-endpoint",
            &receiver.endpoint(),
            "--otlp-protocol",
            "http/json",
        ],
    );
    block_on(burst(&relay, 5));
    let last = last_seq(&relay);
    wait_covered(&receiver, last, T);
    let logs = receiver.logs();
    assert!(logs.iter().all(|l| l["contentType"] == "application/json"));
    let renewed = logs
        .iter()
        .find(|l| l["eventName"] == "reservation_renewed")
        .expect("a renewal");
    assert_eq!(
        renewed["traceId"].as_str().map(str::len),
        Some(32),
        "{renewed}"
    );
    assert_eq!(
        renewed["resource"]["service.instance.id"],
        relay.peer_id().to_string()
    );
    drop(logship);
}

#[test]
fn syslog_to_a_unix_datagram_socket() {
    use std::os::unix::net::UnixDatagram;
    let dir = bsv_p2p_tests::ScratchDir::new("syslog-unix");
    let path = dir.join("log.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let relay = Relay::start(busy_relay_config());
    let logship = Logship::start(
        &relay.socket(),
        &["--syslog", &format!("unix://{}", path.display())],
    );
    block_on(burst(&relay, 3));
    let last = last_seq(&relay);
    let mut seqs = BTreeSet::new();
    let mut buf = vec![0u8; 65536];
    while seqs.len() < last as usize {
        let n = socket.recv(&mut buf).expect("a datagram within 10 s");
        let message = String::from_utf8(buf[..n].to_vec()).unwrap();
        // <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG, unframed.
        let fields: Vec<&str> = message.splitn(7, ' ').collect();
        assert!(fields[0].starts_with("<30>1"), "daemon.info: {message}");
        assert_eq!(fields[3], "bsv-p2p-relay");
        let sd_and_msg = fields[6];
        let end = sd_and_msg.find("] ").expect("structured data") + 1;
        let sd = parse_structured_data(&sd_and_msg[..end]).unwrap();
        let seq = sd[0].params.iter().find(|(k, _)| k == "seq").unwrap();
        seqs.insert(seq.1.parse::<u64>().unwrap());
    }
    assert_eq!(missing(&seqs, 1, last), Vec::<u64>::new());
    drop(logship);
}

#[test]
fn the_metrics_port_holds_at_most_32_connections_and_recovers() {
    use std::io::Write;
    use std::net::TcpStream;
    let relay = Relay::start(busy_relay_config());
    let logship = Logship::start(&relay.socket(), &["--stdout"]);
    let port = logship.metrics_port;
    // 64 clients that connect and never send a request.
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Those beyond the cap were closed at once: a read ends with EOF.
    let closed = idle
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut buf = [0u8; 1];
            matches!((&**s).read(&mut buf), Ok(0))
        })
        .count();
    assert!(
        closed >= 32,
        "only {closed} of 64 idle connections were refused"
    );
    let fds = bsv_p2p_tests::procfs::usage(logship.pid())
        .unwrap()
        .open_fds;
    assert!(fds < 200, "the shipper holds {fds} descriptors");
    // Each held one is closed after its 30 s deadline; the port answers again.
    eventually(
        "/metrics answers after the idle ones time out",
        Duration::from_secs(45),
        || match bsv_p2p_tests::health::http(port, "GET", "/metrics", &[]) {
            Ok(a) if a.code == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    drop(idle);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
