//! A storm of connection attempts from one address, 5,000 a minute, against
//! a private relay whose bots are on its allowlist: the per-address rate
//! (`relay.rateLimit.connectionsPerMinute`, default 120) refuses the storm
//! before any handshake, `relay.autoBan` (default: 300 refusals within 60 s
//! ban the address for 10 min) then refuses it outright, and the bots, on
//! another address, keep their reservation, their circuit and their round
//! trip. Loopback is exempt from the per-address limits by default
//! (`relay.sources.exempt`), so the test sets it empty: 127.0.0.1 stands for
//! the attacker's host on the internet, ::1 for the bots' site.
//!
//! The bots are allowlisted by peer id over the control socket (`bsv-p2p-ctl
//! acl allow`), before they connect: that is how an operator names bots whose
//! addresses change, and it leaves the bots' own address held to the caps, so
//! the test also shows the storm's refusals and ban stay on the storm's
//! address. (Allowlisting `::1/128` instead would exempt the bots' address
//! from every per-address limit and prove less.)
//!
//! Bounded: 3,000 attempts, ending by themselves within 38 s; about 170
//! samples, each bounded by `T`; the whole test takes about 50 s.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use async_std::task::block_on;
use bsv_p2p_tests::attack::{rss, MIB};
use bsv_p2p_tests::bot::peer_id_of_seed;
use bsv_p2p_tests::hop::{status_of, RawOptions, RawPeer, Status};
use bsv_p2p_tests::relay::field;
use bsv_p2p_tests::{Bot, BotOptions, Relay, RelayOptions};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

/// The storm: 5,000 attempts a minute (one each 12 ms) for 36 s, 3,000 in
/// all, each a TCP connect, a few bytes that are not multistream-select,
/// and a close.
const STORM_PER_MINUTE: u32 = 5_000;
const STORM_FOR: Duration = Duration::from_secs(36);
const GARBAGE: &[u8] = b"\x00storm\r\n";

/// The relay's default `relay.rateLimit.connectionsPerMinute`: a bucket of
/// 120 that refills at 2 a second.
const RATE_PER_MINUTE: u64 = 120;

/// Samples: 64 bytes echoed through the circuit and a ping of the relay,
/// one each 250 ms, 30 before the storm and as many as fit while it lasts.
const PROBE_BYTES: u64 = 64;
const PROBE_EVERY: Duration = Duration::from_millis(250);
const QUIET_PROBES: usize = 30;

/// One sample: the echo's round trip as the test saw it (command to
/// result, in fractional ms) and as the bot timed it (whole ms, mostly the
/// bot's own stream set-up), and a ping of the relay itself (the relay's own
/// share of the round trip).
struct Probe {
    at: SystemTime,
    seen_ms: f64,
    bot_ms: f64,
    ping_ms: f64,
}

fn probe(b: &mut Bot, circuit: &str, relay: &Multiaddr, seed: u64) -> Probe {
    let at = SystemTime::now();
    let started = Instant::now();
    let r = b.ok(
        json!({ "cmd": "echo", "addr": circuit, "bytes": PROBE_BYTES, "seed": seed }),
        T,
    );
    let seen_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(r["received"], json!(PROBE_BYTES), "{r}");
    let ping = b.ok(json!({ "cmd": "ping", "addr": relay.to_string() }), T);
    Probe {
        at,
        seen_ms,
        bot_ms: r["ms"].as_f64().unwrap_or(f64::NAN),
        ping_ms: ping["rtt_ms"].as_f64().unwrap_or(f64::NAN),
    }
}

/// The `q`-quantile (0..=1) of `values`, nearest rank.
fn quantile(mut values: Vec<f64>, q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// The median echo round trip of `probes`.
fn p50(probes: &[&Probe]) -> f64 {
    quantile(probes.iter().map(|p| p.seen_ms).collect(), 0.5)
}

fn describe(what: &str, probes: &[&Probe]) -> String {
    let of = |f: fn(&Probe) -> f64, q| quantile(probes.iter().map(|p| f(p)).collect(), q);
    format!(
        "{what}: echo of {PROBE_BYTES} B over the circuit p50 {:.2} ms, p90 {:.2} ms \
         (bot's own p50 {:.0} ms); ping of the relay p50 {:.2} ms, p90 {:.2} ms; {} samples",
        of(|p| p.seen_ms, 0.5),
        of(|p| p.seen_ms, 0.9),
        of(|p| p.bot_ms, 0.5),
        of(|p| p.ping_ms, 0.5),
        of(|p| p.ping_ms, 0.9),
        probes.len()
    )
}

#[derive(Debug, Default)]
struct StormCount {
    attempts: u64,
    connected: u64,
    connect_failed: u64,
    elapsed: Duration,
}

/// Runs the storm against `target` on a thread of its own, paced to
/// `STORM_PER_MINUTE`, ending by itself after `STORM_FOR` (2 s later at the
/// latest if connects are slow to fail).
fn storm(target: SocketAddr) -> std::thread::JoinHandle<StormCount> {
    std::thread::spawn(move || {
        let every = Duration::from_secs(60) / STORM_PER_MINUTE;
        let total = (STORM_FOR.as_micros() / every.as_micros()) as u32;
        let started = Instant::now();
        let deadline = started + STORM_FOR + Duration::from_secs(2);
        let mut count = StormCount::default();
        for i in 0..total {
            if Instant::now() >= deadline {
                break;
            }
            let at = started + every * i;
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            count.attempts += 1;
            match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                Ok(mut s) => {
                    count.connected += 1;
                    // A refused connection is closed under our feet; what
                    // the write meets does not matter.
                    let _ = s.write_all(GARBAGE);
                }
                Err(_) => count.connect_failed += 1,
            }
        }
        count.elapsed = started.elapsed();
        count
    })
}

fn listening_on(relay: &Relay, prefix: &str) -> Multiaddr {
    relay
        .wait_for_event("listening", |e| field(e, "address").starts_with(prefix), T)
        .map(|e| field(&e, "address").parse().unwrap())
        .unwrap_or_else(|e| panic!("the relay listens on {prefix}: {e}"))
}

fn denied(stats: &Value, reason: &str) -> u64 {
    stats["connections"]["denied"][reason].as_u64().unwrap_or(0)
}

/// Events of the bot that would show it lost the relay: its reservation, or
/// its connection to the relay.
fn lost_relay(bot: &Bot, relay: &Relay) -> Vec<Value> {
    let relay_id = relay.peer_id().to_string();
    bot.events()
        .into_iter()
        .filter(|e| {
            e["event"] == "reservation_lost"
                || (e["event"] == "connection_close" && field(e, "peer") == relay_id)
        })
        .collect()
}

#[test]
fn a_storm_of_connections_from_one_address_is_throttled_while_allowlisted_bots_keep_their_circuit_and_round_trip(
) {
    let test_started = Instant::now();
    let mut options = RelayOptions::new(json!({
        "mode": "relay",
        // The rate limits and autoBan are the defaults.
        "relay": { "sources": { "exempt": [] } }
    }));
    options.listen = vec!["/ip4/127.0.0.1/tcp/0".into(), "/ip6/::1/tcp/0".into()];
    let relay = Relay::start_with(options);
    let v4 = listening_on(&relay, "/ip4/127.0.0.1/");
    let v6 = listening_on(&relay, "/ip6/::1/");
    let port = v4
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();

    // Both bots on the allowlist by peer id before they connect: the first
    // entry makes the relay private.
    let seeds = ["storm-bot-a", "storm-bot-b"];
    for seed in seeds {
        let id = peer_id_of_seed(seed).to_string();
        let added = relay.ctl(&["acl", "allow", &id, "--note", "storm test bot"]);
        assert_eq!(added["added"], json!(true), "{added}");
    }
    let acl = relay.ctl(&["acl", "list"]);
    assert_eq!(acl["private"], json!(true), "{acl}");

    // Not on the list: connects, but may not reserve.
    block_on(async {
        let stranger = RawPeer::start(RawOptions { accept_stop: false }).unwrap();
        stranger.connect(&v4).await.unwrap();
        let reply = stranger.reserve(relay.peer_id()).await.unwrap();
        assert_eq!(status_of(&reply), Some(Status::PermissionDenied));
        stranger.disconnect(relay.peer_id()).await.unwrap();
    });

    // The connection monitor pings the relay every second: a relay that
    // stalls under the storm costs a bot its connection, and shows.
    let bot = |seed: &str| {
        let mut o = BotOptions::new(v6.clone());
        o.monitor_interval = Duration::from_secs(1);
        o.key_seed = Some(seed.to_string());
        let bot = Bot::start(o);
        assert_eq!(bot.peer_id(), peer_id_of_seed(seed).to_string());
        bot
    };
    let mut a = bot(seeds[0]);
    let reserved = a.wait_reserved(T);
    let mut b = bot(seeds[1]);
    b.wait_reserved(T);
    // Through ::1: a dial to the relay's 127.0.0.1 address would be the
    // storm's address.
    let circuit = reserved
        .iter()
        .find(|addr| addr.starts_with("/ip6/::1/") && addr.contains("/p2p-circuit"))
        .unwrap_or_else(|| panic!("no circuit address over ::1 in {reserved:?}"))
        .clone();
    let stats = relay.ctl(&["stats"]);
    assert_eq!(
        stats["reservations"]["denied"]["not_allowlisted"],
        json!(1),
        "{stats}"
    );

    // Quiet: the circuit is opened and warmed, then sampled.
    let r = b.ok(
        json!({ "cmd": "echo", "addr": circuit, "bytes": MIB, "seed": 1 }),
        T,
    );
    assert_eq!(r["received"], json!(MIB), "{r}");
    for seed in 0..5 {
        probe(&mut b, &circuit, &v6, 100 + seed);
    }
    let mut quiet = Vec::new();
    for seed in 0..QUIET_PROBES as u64 {
        quiet.push(probe(&mut b, &circuit, &v6, 1_000 + seed));
        std::thread::sleep(PROBE_EVERY);
    }
    let rss_before = rss(relay.pid());

    // The storm, and the same samples while it lasts.
    let storm = storm(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut stormy = Vec::new();
    let mut seed = 10_000;
    while !storm.is_finished() {
        stormy.push(probe(&mut b, &circuit, &v6, seed));
        seed += 1;
        std::thread::sleep(PROBE_EVERY);
    }
    let count = storm.join().expect("the storm thread");

    // The bots never noticed.
    for bot in [&a, &b] {
        let lost = lost_relay(bot, &relay);
        assert!(lost.is_empty(), "bot {}: {lost:?}", bot.peer_id());
    }
    let held = a.ok(json!({ "cmd": "reservation" }), T);
    assert_eq!(held["reserved"], json!(true), "{held}");
    let reservations = relay.ctl(&["reservations"]);
    assert!(
        reservations["reservations"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| field(r, "peerId") == a.peer_id())),
        "{reservations}"
    );
    let r = b.ok(
        json!({ "cmd": "echo", "addr": circuit, "bytes": MIB, "seed": 2 }),
        T,
    );
    assert_eq!(r["received"], json!(MIB), "{r}");

    // The storm was refused: at least 90% of what the rate cannot let
    // through (beyond its bucket, and 2 a second after that).
    let stats = relay.ctl(&["stats"]);
    let reasons = [
        "connection_rate",
        "source_pending_full",
        "source_connections_full",
        "banned",
        "access_denied",
    ];
    let refused: u64 = reasons.iter().map(|r| denied(&stats, r)).sum();
    let let_through = RATE_PER_MINUTE + RATE_PER_MINUTE * count.elapsed.as_secs() / 60;
    let beyond = count.attempts.saturating_sub(let_through);
    let banned = relay.events_of("address_banned", |e| field(e, "address") == "127.0.0.1/32");
    let bots_banned = relay.events_of("address_banned", |e| field(e, "address").starts_with("::1"));

    // What a late allocation would show: give the relay a few seconds.
    std::thread::sleep(Duration::from_secs(3));
    let rss_after = rss(relay.pid());

    // The storm in two parts: refused by the rate until the ban, then by
    // the ban.
    let banned_at = banned
        .first()
        .and_then(|e| humantime::parse_rfc3339(field(e, "timestamp")).ok());
    let quiet: Vec<&Probe> = quiet.iter().collect();
    let (limited, after_ban): (Vec<&Probe>, Vec<&Probe>) = stormy
        .iter()
        .partition(|p| banned_at.is_none_or(|t| p.at < t));
    let stormy: Vec<&Probe> = stormy.iter().collect();
    println!(
        "storm: {} attempts from 127.0.0.1 in {:.1} s ({} connected, {} connects failed)",
        count.attempts,
        count.elapsed.as_secs_f64(),
        count.connected,
        count.connect_failed
    );
    println!(
        "refused {refused} of them (the rate lets through at most {let_through}): {}",
        reasons
            .iter()
            .map(|r| format!("{r} {}", denied(&stats, r)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "address_banned: {}",
        banned
            .first()
            .map(Value::to_string)
            .unwrap_or("none".into())
    );
    println!("{}", describe("quiet", &quiet));
    println!("{}", describe("storm", &stormy));
    println!("{}", describe("  storm until the ban", &limited));
    println!("{}", describe("  storm after the ban", &after_ban));
    println!(
        "relay RSS {:.2} MiB before the storm, {:.2} MiB after; test took {:.1} s",
        rss_before as f64 / MIB as f64,
        rss_after as f64 / MIB as f64,
        test_started.elapsed().as_secs_f64()
    );

    assert!(
        count.attempts >= 2_900,
        "the storm made {} attempts",
        count.attempts
    );
    assert!(
        refused * 10 >= beyond * 9,
        "{refused} refused of {} attempts: {stats}",
        count.attempts
    );
    assert!(denied(&stats, "connection_rate") > 0, "{stats}");
    assert!(
        !banned.is_empty(),
        "no address_banned for 127.0.0.1: {stats}"
    );
    assert!(denied(&stats, "banned") > 0, "{stats}");
    assert!(bots_banned.is_empty(), "{bots_banned:?}");
    // No absolute floor is needed: the echo's 10-20 ms are mostly the bots'
    // own stream set-up (the relay's ping is under 1 ms), so loopback noise
    // is small beside them.
    assert!(
        p50(&stormy) <= 2.0 * p50(&quiet),
        "the round trip went from {:.2} ms quiet to {:.2} ms in the storm (medians)",
        p50(&quiet),
        p50(&stormy)
    );
    assert!(
        rss_after <= rss_before + rss_before / 10,
        "relay RSS grew from {rss_before} to {rss_after} bytes and stayed"
    );
}
