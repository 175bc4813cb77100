//! Relays that peer with each other (`federation.peers`), each its own
//! process and data directory on loopback, with js-libp2p 3.x bots reserved
//! on different relays: gossip published by a bot on one relay reaches the
//! bots on every other relay exactly once; a relay that is killed is
//! reported down by the others (which keep exchanging gossip) and re-meshed
//! without any operator action when it returns; a relay that stops
//! answering is found by its pings.
//!
//! These tests fail (they are not skipped) when Node 22 or js-libp2p is
//! missing: `tests/js/install.sh` installs them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bsv_p2p_tests::fleet::Fleet;
use bsv_p2p_tests::health::{eventually, get, Health};
use bsv_p2p_tests::relay::field;
use bsv_p2p_tests::{Bot, BotOptions};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);
const ANNOUNCE: &str = "/openclaw/announce/1.0.0";
const STATUS: &str = "/openclaw/node-status/1.0.0";
/// How long a duplicate gets to show up after the last message arrived.
const SETTLE: Duration = Duration::from_secs(3);

/// A js bot reserved on relay `i` of the fleet.
fn bot_on(fleet: &Fleet, i: usize) -> Bot {
    let bot = Bot::start(BotOptions::new(fleet.relay(i).tcp_addr()));
    bot.wait_reserved(T);
    bot
}

/// Publishes from `from` until every bot of `to` has heard one message
/// (the relays' meshes form on their heartbeats); `label` marks the
/// messages so they are told apart from the measured ones.
fn until_heard(from: &mut Bot, to: &[&Bot], topic: &str, label: &str) {
    let deadline = Instant::now() + T;
    let mut n = 0;
    let mut heard = vec![false; to.len()];
    let marks: Vec<usize> = to.iter().map(|b| b.mark()).collect();
    while heard.iter().any(|h| !h) {
        n += 1;
        let text = format!("{label} {n}");
        from.ok(json!({ "cmd": "publish", "topic": topic, "data": text }), T);
        std::thread::sleep(Duration::from_millis(500));
        for (k, bot) in to.iter().enumerate() {
            heard[k] = heard[k]
                || bot.events()[marks[k]..]
                    .iter()
                    .any(|e| e["event"] == "gossip" && field(e, "data").starts_with(label));
        }
        assert!(
            Instant::now() < deadline,
            "{label}: not every bot heard {}: {heard:?}",
            from.peer_id()
        );
    }
}

/// Gossip events at `bot` after `mark`, counted by data.
fn heard_counts(bot: &Bot, mark: usize, prefix: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for e in &bot.events()[mark..] {
        if e["event"] == "gossip" && field(e, "data").starts_with(prefix) {
            *counts.entry(field(e, "data").to_string()).or_default() += 1;
        }
    }
    counts
}

/// Publishes `per_topic` messages on each topic from `from` and asserts
/// that every bot of `to` receives each exactly once. Returns the messages.
fn each_exactly_once(from: &mut Bot, to: &[&Bot], prefix: &str, per_topic: usize) -> Vec<String> {
    let marks: Vec<usize> = to.iter().map(|b| b.mark()).collect();
    let mut sent = Vec::new();
    for topic in [ANNOUNCE, STATUS] {
        for k in 0..per_topic {
            let text = format!("{prefix} {topic} {k}");
            from.ok(json!({ "cmd": "publish", "topic": topic, "data": text }), T);
            sent.push(text);
        }
    }
    let deadline = Instant::now() + T;
    loop {
        let done = to
            .iter()
            .zip(&marks)
            .all(|(b, m)| heard_counts(b, *m, prefix).len() == sent.len());
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{prefix}: not every message arrived: {:?}",
            to.iter()
                .zip(&marks)
                .map(|(b, m)| heard_counts(b, *m, prefix).len())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(SETTLE);
    for (bot, mark) in to.iter().zip(&marks) {
        let counts = heard_counts(bot, *mark, prefix);
        for text in &sent {
            assert_eq!(
                counts.get(text).copied(),
                Some(1),
                "{} heard {text:?} {:?} times",
                bot.peer_id(),
                counts.get(text)
            );
        }
        let from_id = from.peer_id().to_string();
        for e in &bot.events()[*mark..] {
            if e["event"] == "gossip" && field(e, "data").starts_with(prefix) {
                assert_eq!(field(e, "from"), from_id, "{e}");
            }
        }
    }
    sent
}

fn number(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn three_relays_carry_every_bots_gossip_to_the_other_relays_exactly_once() {
    let fleet = Fleet::start(3, json!({}));
    for i in 0..3 {
        fleet.wait_meshed(i, T);
    }
    let mut a = bot_on(&fleet, 0);
    let a2 = bot_on(&fleet, 0);
    let b = bot_on(&fleet, 1);
    let c = bot_on(&fleet, 2);

    until_heard(&mut a, &[&a2, &b, &c], ANNOUNCE, "warm-up");
    each_exactly_once(&mut a, &[&a2, &b, &c], "from relay 1", 10);
    // And the other way: a bot on relay 3 to the bots on relays 1 and 2.
    let mut c = c;
    until_heard(&mut c, &[&a, &b], ANNOUNCE, "warm-up back");
    each_exactly_once(&mut c, &[&a, &b], "from relay 3", 10);

    // Every relay lists the others as connected, with a round trip, and
    // the counts agree: what relay 1 sent relay 2 arrived there (from relay
    // 1, or first from relay 3 when that copy won the race).
    for i in 0..3 {
        for j in (0..3).filter(|j| *j != i) {
            let v = fleet.view(i, j);
            assert_eq!(v["state"], "connected", "relay {i} on relay {j}: {v}");
            assert!(v["rttMicros"].as_u64().is_some(), "no round trip: {v}");
            assert_eq!(number(&v, "ups"), 1, "{v}");
        }
    }
    let out_1_to_2 = number(&fleet.view(0, 1), "messagesOut");
    let in_2 = number(&fleet.view(1, 0), "messagesIn") + number(&fleet.view(1, 2), "messagesIn");
    assert!(
        out_1_to_2 >= 20,
        "relay 1 forwarded {out_1_to_2} to relay 2"
    );
    assert!(in_2 >= 40, "relay 2 received {in_2} from the other relays");
    eprintln!(
        "federation: relay 1 -> relay 2 {out_1_to_2} messages; relay 2 received {in_2} from relays 1 and 3"
    );
    for bot in [a, a2, b, c] {
        let _ = bot.stop(Duration::from_secs(10));
    }
}

#[test]
fn a_killed_relay_is_reported_down_and_re_meshed_when_it_returns() {
    let mut fleet = Fleet::start(3, json!({}));
    for i in 0..3 {
        fleet.wait_meshed(i, T);
    }
    let mut a = bot_on(&fleet, 0);
    let c = bot_on(&fleet, 2);
    until_heard(&mut a, &[&c], ANNOUNCE, "warm-up");

    // Relay 1's health sidecar, asked to be ready only with both of the
    // other relays connected.
    let health = Health::start_with_args(&fleet.relay(0).socket(), &["--federation-quorum", "2"]);
    let gone = fleet.peer_id(1).to_string();
    let kept = fleet.peer_id(2).to_string();
    let metric = |name: &str, peer: &str| -> Option<f64> {
        let key = format!("{name}{{peer_id=\"{peer}\"}}");
        health
            .metrics()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    };
    assert_eq!(get(health.port, "/readyz").code, 200);
    assert_eq!(metric("bsv_p2p_federation_peer_up", &gone), Some(1.0));
    assert!(metric("bsv_p2p_federation_peer_rtt_seconds", &kept).is_some_and(|s| s > 0.0));

    let marks = [fleet.relay(0).mark(), fleet.relay(2).mark()];
    let killed = Instant::now();
    fleet.kill(1);
    for (i, mark) in [(0, marks[0]), (2, marks[1])] {
        let down = fleet
            .relay(i)
            .wait_for_event_after(
                mark,
                "federation_peer_down",
                |e| field(e, "peerId") == gone,
                Duration::from_secs(30),
            )
            .unwrap_or_else(|e| panic!("relay {i} did not report relay 2 down in 30 s: {e}"));
        eprintln!(
            "federation: relay {} reported relay 2 down after {:?} ({})",
            i + 1,
            killed.elapsed(),
            field(&down, "cause")
        );
        let v = fleet.view(i, 1);
        assert_ne!(v["state"], "connected", "{v}");
    }

    // Relay 1 is no longer ready (quorum 2), but healthy.
    let not_ready = eventually("/readyz says the quorum is lost", T, || {
        let a = get(health.port, "/readyz");
        (a.code == 503)
            .then_some(a)
            .ok_or_else(|| "still 200".to_string())
    });
    assert_eq!(
        not_ready.json()["reason"],
        "federation: 1 of 2 federated relays connected, below the quorum of 2",
        "{not_ready:?}"
    );
    assert_eq!(get(health.port, "/health").code, 200);
    assert_eq!(metric("bsv_p2p_federation_peer_up", &gone), Some(0.0));

    // Relays 1 and 3 still carry the bots' gossip.
    each_exactly_once(&mut a, &[&c], "while relay 2 is down", 5);

    // Relay 2 returns on the same identity and port: the others redial it
    // by themselves, and a bot on it hears relay 1's bot again.
    let marks = [fleet.relay(0).mark(), fleet.relay(2).mark()];
    let restarted = Instant::now();
    fleet.restart(1);
    fleet.wait_up(0, 1, marks[0], T);
    fleet.wait_up(2, 1, marks[1], T);
    fleet.wait_meshed(1, T);
    eprintln!(
        "federation: relay 2 re-meshed {:?} after it restarted",
        restarted.elapsed()
    );
    for i in [0, 2] {
        let v = fleet.view(i, 1);
        assert_eq!(v["state"], "connected", "{v}");
        assert_eq!(number(&v, "ups"), 2, "{v}");
    }
    eventually("/readyz is ready again", T, || {
        let a = get(health.port, "/readyz");
        (a.code == 200).then_some(()).ok_or(format!("{a:?}"))
    });
    assert_eq!(
        metric("bsv_p2p_federation_peer_connects_total", &gone),
        Some(2.0)
    );
    let b = bot_on(&fleet, 1);
    until_heard(&mut a, &[&b, &c], ANNOUNCE, "after the return");
    each_exactly_once(&mut a, &[&b, &c], "after relay 2 returned", 5);
    for bot in [a, b, c] {
        let _ = bot.stop(Duration::from_secs(10));
    }
}

#[test]
fn a_relay_that_stops_answering_is_found_by_its_pings_and_redialled() {
    // Named by DNS: `localhost` from the hosts file, through the resolver
    // the relay reads from the system's configuration.
    let fleet = Fleet::start_at("/dns4/localhost", 2, json!({ "pingInterval": 1000 }));
    fleet.wait_meshed(0, T);
    let frozen = fleet.relay(1).pid() as i32;
    let peer = fleet.peer_id(1).to_string();
    let mark = fleet.relay(0).mark();
    // SIGSTOP: the process holds its sockets open but answers nothing, as
    // a relay behind a broken link would look.
    assert_eq!(unsafe { libc::kill(frozen, libc::SIGSTOP) }, 0);
    let stopped = Instant::now();
    let down = fleet.relay(0).wait_for_event_after(
        mark,
        "federation_peer_down",
        |e| field(e, "peerId") == peer,
        Duration::from_secs(15),
    );
    let elapsed = stopped.elapsed();
    assert_eq!(unsafe { libc::kill(frozen, libc::SIGCONT) }, 0);
    let down = down.unwrap_or_else(|e| panic!("a silent relay was not reported down: {e}"));
    assert_eq!(field(&down, "cause"), "unresponsive", "{down}");
    eprintln!("federation: a silent relay reported down after {elapsed:?} (pings every 1 s)");
    fleet.wait_up(0, 1, mark, T);
    assert_eq!(number(&fleet.view(0, 1), "ups"), 2);
}
