//! js-libp2p 3.x bots (`tests/js/bot.mjs`, the real daemon's transports,
//! muxer, gossipsub and connection monitor, and no ping service) against the
//! real relay binary: reservations over TCP and WebSocket, circuits between
//! bots, 32 MiB each way, many messages over one unlimited circuit, Limits a
//! js bot honours, gossip routed by the relay, and a reservation held for
//! two minutes under the daemon's 10 s connection monitor.
//!
//! These tests fail (they are not skipped) when Node 22 or js-libp2p is
//! missing: `tests/js/install.sh` installs them.

use std::time::{Duration, Instant};

use bsv_p2p_tests::relay::field;
use bsv_p2p_tests::{Bot, BotOptions, Relay};
use libp2p::Multiaddr;
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;
/// Reservations, circuits and connections appear within this.
const T: Duration = Duration::from_secs(60);
/// A 32 MiB echo through a circuit on a busy two-core machine.
const ECHO_TIMEOUT: Duration = Duration::from_secs(180);

/// The address that reaches `peer` through the relay at `relay`.
fn via(relay: &Multiaddr, peer: &str) -> String {
    format!("{relay}/p2p-circuit/p2p/{peer}")
}

fn is_peer(peer: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| field(e, "peerId") == peer
}

/// Starts a bot on `addr` and waits for its reservation, which the relay
/// must log and which must carry the relay's address.
fn reserved_bot(relay: &Relay, addr: Multiaddr) -> Bot {
    reserved_bot_with(relay, BotOptions::new(addr))
}

/// A bot started with `options`, reserved on the relay they name.
fn reserved_bot_with(relay: &Relay, options: BotOptions) -> Bot {
    let addr = options.relay.clone();
    let bot = Bot::start(options);
    let addrs = bot.wait_reserved(T);
    let expected = format!("{addr}/p2p-circuit");
    assert!(
        addrs.iter().any(|a| a.starts_with(&expected)),
        "the bot's circuit addresses {addrs:?} do not include {expected}"
    );
    relay
        .wait_for_event("reservation_created", is_peer(bot.peer_id()), T)
        .expect("the relay logs the bot's reservation");
    bot
}

/// Bot `a` reserved on the relay over TCP, bot `b` over WebSocket.
fn two_bots(relay: &Relay) -> (Bot, Bot) {
    let a = reserved_bot(relay, relay.tcp_addr());
    let b = reserved_bot(relay, relay.ws_addr());
    (a, b)
}

/// The `connection_open` that `bot` logs (within 5 s) for its connection
/// with `peer`; `what` names it when it does not come.
fn connection_open(bot: &Bot, peer: &str, what: &str) -> Value {
    bot.wait_for(
        "connection_open",
        |e| field(e, "peer") == peer,
        Duration::from_secs(5),
    )
    .expect(what)
}

fn echo(bot: &mut Bot, addr: &str, bytes: u64, seed: u64) -> Value {
    let r = bot.ok(
        json!({ "cmd": "echo", "addr": addr, "bytes": bytes, "seed": seed }),
        ECHO_TIMEOUT,
    );
    assert_eq!(r["sent"], json!(bytes), "{r}");
    assert_eq!(r["received"], json!(bytes), "{r}");
    r
}

/// The relay's record of the circuit from `src` to `dst` (`bsv-p2p-ctl circuits`).
fn relay_circuit(relay: &Relay, src: &str, dst: &str) -> Option<Value> {
    let circuits = relay.ctl(&["circuits"]);
    circuits["circuits"]
        .as_array()
        .expect("circuits lists circuits")
        .iter()
        .find(|c| field(c, "src") == src && field(c, "dst") == dst)
        .cloned()
}

#[test]
fn tcp_and_ws_bots_reserve_ping_and_echo_32_mib_each_way() {
    // The embedded defaults: what an operator gets without a config file.
    let relay = Relay::start(json!({ "mode": "relay" }));
    // The bots' connection monitor pings every connection, the relayed one
    // included, with a timeout adapted to earlier round trips; a ping queued
    // behind 32 MiB on that connection can miss it, and the bot then aborts
    // its own connection mid-echo (seen here at 10 s: the circuit "reset" at
    // 63 MiB of 64, with the relay and both bots healthy). This test is about
    // the relay's data path: the monitor waits out the echoes.
    let slow_monitor = |addr: Multiaddr| {
        let mut options = BotOptions::new(addr);
        options.monitor_interval = Duration::from_secs(60);
        options
    };
    let mut a = reserved_bot_with(&relay, slow_monitor(relay.tcp_addr()));
    let mut b = reserved_bot_with(&relay, slow_monitor(relay.ws_addr()));

    let reservations = relay.ctl(&["reservations"]);
    for bot in [&a, &b] {
        assert!(
            reservations["reservations"]
                .as_array()
                .expect("reservations lists reservations")
                .iter()
                .any(|r| field(r, "peerId") == bot.peer_id()),
            "bsv-p2p-ctl reservations lacks {}: {reservations}",
            bot.peer_id()
        );
    }

    // Each bot pings the relay on its own connection, a new stream each
    // time as the daemon's connection monitor does: more pings than the
    // relay keeps ping streams open per connection.
    let relay_id = relay.peer_id().to_string();
    for bot in [&mut a, &mut b] {
        for _ in 0..8 {
            let p = bot.ok(json!({ "cmd": "ping", "addr": relay_id }), T);
            assert!(p["rtt_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{p}");
        }
    }

    // A (TCP) reaches B through the relay's TCP address; B (WebSocket) answers
    // on the circuit that arrives over its WebSocket connection.
    let b_addr = via(&relay.tcp_addr(), b.peer_id());
    let ab = echo(&mut a, &b_addr, 32 * MIB, 1);
    // The relay's defaults send a Limit (1 GiB / 1 h): the bot sees it.
    assert_eq!(ab["limited"], json!(true), "{ab}");
    relay
        .wait_for_event(
            "circuit_opened",
            |e| field(e, "src") == a.peer_id() && field(e, "dst") == b.peer_id(),
            T,
        )
        .expect("the relay logs the circuit");

    // B streams 32 MiB to A the other way, through the relay's WebSocket side.
    let a_addr = via(&relay.ws_addr(), a.peer_id());
    echo(&mut b, &a_addr, 32 * MIB, 2);

    // The relay counted at least both echoes in each direction.
    let circuit = relay_circuit(&relay, a.peer_id(), b.peer_id())
        .unwrap_or_else(|| panic!("no A->B circuit in {}", relay.ctl(&["circuits"])));
    for dir in ["bytesSrcToDst", "bytesDstToSrc"] {
        let n = circuit[dir].as_u64().unwrap_or(0);
        assert!(n >= 64 * MIB, "{dir} = {n}: {circuit}");
    }

    // Both bots still hold their reservations and their relay connections.
    for bot in [&mut a, &mut b] {
        let r = bot.ok(json!({ "cmd": "reservation" }), T);
        assert_eq!(r["reserved"], json!(true), "{r}");
        assert!(bot.events_of("reservation_lost").is_empty());
    }
    for bot in [a, b] {
        let status = bot.stop(Duration::from_secs(20)).expect("the bot stops");
        assert!(status.success(), "bot exit: {status}");
    }
}

#[test]
fn unlimited_circuits_reach_js_bots_unlimited_and_carry_many_messages_on_one_connection() {
    let relay =
        Relay::start(json!({ "mode": "relay", "relay": { "circuits": { "unlimited": true } } }));
    let (mut a, b) = two_bots(&relay);
    let b_addr = via(&relay.tcp_addr(), b.peer_id());

    let r = echo(&mut a, &b_addr, 8 * MIB, 3);
    assert_eq!(
        r["limited"],
        json!(false),
        "no Limit is sent, so the bot's connection is not limited: {r}"
    );
    let inbound = connection_open(&b, a.peer_id(), "B sees the relayed connection from A");
    assert_eq!(inbound["limited"], json!(false), "{inbound}");
    assert_eq!(inbound["limits"], Value::Null, "{inbound}");

    // The daemon's pattern: every message on a stream of its own, all on one circuit.
    let m = a.ok(
        json!({ "cmd": "messages", "addr": b_addr, "count": 20, "size": MIB, "seed": 10 }),
        ECHO_TIMEOUT,
    );
    assert_eq!(m["count"], json!(20), "{m}");
    assert_eq!(m["bytes"], json!(20 * MIB), "{m}");
    assert_eq!(m["sameConnection"], json!(true), "{m}");
    assert_eq!(
        m["connections"].as_array().map(Vec::len),
        Some(1),
        "one connection for every message: {m}"
    );
    assert_eq!(
        m["connections"][0], r["connection"],
        "the messages reused the echo's connection: {m} vs {r}"
    );
    let circuits = relay.events_of("circuit_opened", |e| {
        field(e, "src") == a.peer_id() && field(e, "dst") == b.peer_id()
    });
    assert_eq!(
        circuits.len(),
        1,
        "one circuit carried every message: {circuits:?}"
    );
    let circuit = relay_circuit(&relay, a.peer_id(), b.peer_id()).expect("the circuit is open");
    assert!(
        circuit["bytesSrcToDst"].as_u64().unwrap_or(0) >= 28 * MIB,
        "{circuit}"
    );
}

#[test]
fn a_data_limit_marks_js_connections_limited_and_traffic_under_it_flows() {
    let relay = Relay::start(json!({
        "mode": "relay",
        "relay": { "circuits": { "data": 64 * MIB, "duration": 600_000 } }
    }));
    let (mut a, b) = two_bots(&relay);
    let b_addr = via(&relay.tcp_addr(), b.peer_id());

    let r = echo(&mut a, &b_addr, 4 * MIB, 4);
    assert_eq!(r["limited"], json!(true), "{r}");
    let inbound = connection_open(&b, a.peer_id(), "B sees the relayed connection from A");
    assert_eq!(inbound["limited"], json!(true), "{inbound}");
    // The Limit the relay sent, as the bot reads it: bytes per direction and seconds.
    let bytes: u64 = inbound["limits"]["bytes"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no byte limit: {inbound}"));
    assert!(
        bytes > 0 && bytes <= 64 * MIB,
        "byte limit {bytes}: {inbound}"
    );
    let seconds = inbound["limits"]["seconds"].as_u64().unwrap_or(0);
    assert!(
        seconds > 0 && seconds <= 600,
        "seconds {seconds}: {inbound}"
    );

    // More than the limit in one direction does not get through.
    let over = a
        .command(
            json!({ "cmd": "echo", "addr": b_addr, "bytes": 80 * MIB, "seed": 5 }),
            ECHO_TIMEOUT,
        )
        .expect("the bot answers");
    assert_eq!(
        over["ok"],
        json!(false),
        "80 MiB passed a 64 MiB limit: {over}"
    );
}

#[test]
fn gossip_from_one_bot_reaches_the_other_through_the_relay() {
    let relay = Relay::start(json!({ "mode": "relay" }));
    let (mut a, mut b) = two_bots(&relay);
    let topic = "/openclaw/announce/1.0.0";
    let relay_id = relay.peer_id().to_string();

    // Both bots learn that the relay is subscribed to the topic.
    for bot in [&mut a, &mut b] {
        let deadline = Instant::now() + T;
        loop {
            let p = bot.ok(json!({ "cmd": "peers" }), T);
            if p["topicPeers"][topic]
                .as_array()
                .is_some_and(|peers| peers.iter().any(|p| *p == json!(relay_id)))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "bot {} never saw the relay on {topic}: {p}",
                bot.peer_id()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    // Publish until B hears it: the relay's mesh forms on its heartbeat.
    let deadline = Instant::now() + T;
    let mut n = 0;
    let heard = loop {
        n += 1;
        let text = format!("announce {n} from A");
        let mark = b.mark();
        let p = a.ok(json!({ "cmd": "publish", "topic": topic, "data": text }), T);
        assert!(
            p["recipientPeers"]
                .as_array()
                .is_some_and(|r| r.iter().any(|p| *p == json!(relay_id))),
            "A published to {p}, not to the relay"
        );
        match b.wait_for_after(
            mark,
            "gossip",
            |e| field(e, "data") == text,
            Duration::from_secs(2),
        ) {
            Ok(e) => break e,
            Err(e) => assert!(Instant::now() < deadline, "B never heard A: {e}"),
        }
    };
    assert_eq!(field(&heard, "topic"), topic, "{heard}");
    assert_eq!(field(&heard, "from"), a.peer_id(), "{heard}");

    // B has no connection of its own to A: the message came through the relay.
    let peers = b.ok(json!({ "cmd": "peers" }), T);
    let conns = peers["connections"].as_array().expect("connections");
    assert!(
        conns.iter().all(|c| field(c, "peer") != a.peer_id()),
        "B is connected to A directly: {peers}"
    );
}

#[test]
fn a_bot_without_ping_service_holds_its_reservation_for_two_minutes() {
    let relay = Relay::start(json!({ "mode": "relay" }));
    // The daemon's monitor: a ping on every connection each 10 s, and the
    // connection dropped when one goes unanswered.
    let mut options = BotOptions::new(relay.tcp_addr());
    options.monitor_interval = Duration::from_secs(10);
    let mut bot = Bot::start(options);
    bot.wait_reserved(T);
    let relay_id = relay.peer_id().to_string();
    let first = connection_open(&bot, &relay_id, "the bot logs its relay connection");
    relay
        .wait_for_event("reservation_created", is_peer(bot.peer_id()), T)
        .expect("the relay logs the reservation");

    let held = Duration::from_secs(125);
    let start = Instant::now();
    while start.elapsed() < held {
        std::thread::sleep(Duration::from_secs(5));
        assert!(
            bot.events_of("reservation_lost").is_empty(),
            "the bot lost its reservation after {:?}: {:?}",
            start.elapsed(),
            bot.events()
        );
        assert!(
            bot.events_of("connection_close").is_empty(),
            "a connection closed after {:?}: {:?}",
            start.elapsed(),
            bot.events_of("connection_close")
        );
    }

    // The same connection is still open, the reservation still held on both sides.
    let peers = bot.ok(json!({ "cmd": "peers" }), T);
    let conns: Vec<&Value> = peers["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .filter(|c| field(c, "peer") == relay_id)
        .collect();
    assert_eq!(conns.len(), 1, "{peers}");
    assert_eq!(conns[0]["id"], first["id"], "{peers}");
    let r = bot.ok(json!({ "cmd": "reservation" }), T);
    assert_eq!(r["reserved"], json!(true), "{r}");
    let reservations = relay.ctl(&["reservations"]);
    assert!(
        reservations["reservations"]
            .as_array()
            .expect("reservations")
            .iter()
            .any(|r| field(r, "peerId") == bot.peer_id()),
        "{reservations}"
    );
    assert!(
        relay
            .events_of("connection_closed", is_peer(bot.peer_id()))
            .is_empty(),
        "the relay closed the bot's connection"
    );
}
