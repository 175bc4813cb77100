//! Who may use the relay: deny lists and bans (from the config file and
//! from `bsv-p2p-ctl`), a private relay's allowlist, the relay's own
//! temporary bans of an address that keeps hitting the limits, and a
//! circuit's pace. Every check goes through the real relay, the real
//! `bsv-p2p-ctl`, and peers that speak circuit relay v2 (IPv4 loopback and
//! IPv6 loopback standing for two hosts).

use std::time::{Duration, Instant};

use async_std::task::block_on;
use bsv_p2p_tests::hop::{status_of, RawOptions, RawPeer, Status};
use bsv_p2p_tests::relay::field;
use bsv_p2p_tests::{Bot, BotOptions, Relay, RelayOptions};
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);

/// Starts a relay on 127.0.0.1 and ::1; returns it with both addresses.
fn two_hosts(config: Value) -> (Relay, Multiaddr, Multiaddr) {
    two_hosts_with(RelayOptions::new(config))
}

fn two_hosts_with(mut options: RelayOptions) -> (Relay, Multiaddr, Multiaddr) {
    options.listen = vec!["/ip4/127.0.0.1/tcp/0".into(), "/ip6/::1/tcp/0".into()];
    let relay = Relay::start_with(options);
    let v6 = relay.listen_addr("/ip6/::1/");
    let v4 = relay.tcp_addr();
    (relay, v4, v6)
}

/// What a fresh peer from `addr` gets when it asks for a reservation:
/// `None` when it cannot even connect and ask.
async fn reserve_from(key: Option<Keypair>, addr: &Multiaddr, relay: PeerId) -> Option<Status> {
    let options = RawOptions { accept_stop: false };
    let peer = match key {
        Some(k) => RawPeer::with_key(k, options),
        None => RawPeer::start(options),
    }
    .unwrap();
    peer.connect(addr).await.ok()?;
    status_of(&peer.reserve(relay).await.ok()?)
}

/// The relay's journal, read through `bsv-p2p-ctl --json events`.
fn journal(relay: &Relay) -> Vec<Value> {
    let done = bsv_p2p_tests::ctl::run(&relay.socket(), &["--json", "events"], T).unwrap();
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    done.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn denied(stats: &Value, section: &str, reason: &str) -> u64 {
    stats[section]["denied"][reason].as_u64().unwrap_or(0)
}

/// Waits until `f` holds, for at most `within`; how long it took.
fn until(what: &str, within: Duration, f: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// The relay logged `peer`'s connection closed (after `mark`) within a
/// second of `asked`, when the ban was asked for.
fn closed_within_a_second(relay: &Relay, mark: usize, peer: &str, asked: Instant) {
    relay
        .wait_for_event_after(
            mark,
            "connection_closed",
            |e| field(e, "peerId") == peer,
            Duration::from_secs(1),
        )
        .unwrap_or_else(|e| panic!("{peer}'s connection not closed: {e}"));
    let took = asked.elapsed();
    println!("ban to connection closed: {took:?}");
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
}

#[test]
fn deny_lists_and_bans_refuse_peers_and_networks_close_them_at_once_and_outlive_a_restart() {
    let banned_key = Keypair::generate_ed25519();
    let banned_id = banned_key.public().to_peer_id();
    // The guide's spelling of the deny list still works, with a warning.
    let (relay, v4, v6) = two_hosts(json!({
        "mode": "relay",
        "relay": { "blockTrustedlist": [banned_id.to_string(), "::1/128"] }
    }));
    let id = relay.peer_id();
    assert!(
        !relay
            .events_of("config_warning", |e| e
                .to_string()
                .contains("blockTrustedlist"))
            .is_empty(),
        "{}",
        relay.stderr()
    );
    block_on(async {
        // A denied peer id: refused once its handshake names it. A denied
        // network: refused before any handshake.
        assert_eq!(reserve_from(Some(banned_key.clone()), &v4, id).await, None);
        assert_eq!(reserve_from(None, &v6, id).await, None);
        assert_eq!(reserve_from(None, &v4, id).await, Some(Status::Ok));
    });
    let stats = relay.ctl(&["stats"]);
    assert!(
        denied(&stats, "connections", "access_denied") >= 2,
        "{stats}"
    );

    // A bot reserved from 127.0.0.1, banned at run time: its connection
    // is closed at once.
    let bot = Bot::start(BotOptions::new(v4.clone()));
    bot.wait_reserved(T);
    let bot_id = bot.peer_id().to_string();
    let mark = relay.mark();
    let asked = Instant::now();
    let ban = relay.ctl(&["ban", &bot_id, "--for", "3s", "--note", "test"]);
    assert_eq!(ban["added"], json!(true), "{ban}");
    assert!(ban["disconnected"].as_u64().unwrap() >= 1, "{ban}");
    assert!(ban["entry"]["expiresAt"].is_string(), "{ban}");
    closed_within_a_second(&relay, mark, &bot_id, asked);
    let listed = relay.ctl(&["acl", "list"]);
    let entries = listed["entries"].as_array().unwrap();
    let origin_of = |subject: &str| {
        entries
            .iter()
            .find(|e| e["peerId"] == subject || e["cidr"] == subject)
            .map(|e| e["origin"].clone())
    };
    assert_eq!(origin_of(&bot_id), Some(json!("control")), "{listed}");
    assert_eq!(origin_of("::1/128"), Some(json!("config")), "{listed}");
    assert_eq!(
        origin_of(&banned_id.to_string()),
        Some(json!("config")),
        "{listed}"
    );
    assert_eq!(listed["private"], json!(false));
    // A peer banned for 2 s is refused while the ban lasts and welcome
    // again after.
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id().to_string();
    let ban = relay.ctl(&["ban", &peer, "--for", "2s"]);
    assert_eq!(ban["disconnected"], json!(0), "{ban}");
    block_on(async {
        assert_eq!(reserve_from(Some(key.clone()), &v4, id).await, None);
    });
    std::thread::sleep(Duration::from_millis(2200));
    block_on(async {
        assert_eq!(
            reserve_from(Some(key.clone()), &v4, id).await,
            Some(Status::Ok)
        );
    });
    let events = journal(&relay);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "peer_banned" && e["peerId"] == bot_id.as_str()),
        "no peer_banned in the journal"
    );

    // A network banned with no end: everyone from 127.0.0.1 goes at once.
    block_on(async {
        let held = RawPeer::start(RawOptions { accept_stop: false }).unwrap();
        held.connect(&v4).await.unwrap();
        assert_eq!(
            status_of(&held.reserve(id).await.unwrap()),
            Some(Status::Ok)
        );
        let held_id = held.peer_id().to_string();
        let mark = relay.mark();
        let asked = Instant::now();
        let ban = relay.ctl(&["ban", "127.0.0.1"]);
        assert_eq!(ban["entry"]["cidr"], json!("127.0.0.1/32"), "{ban}");
        assert_eq!(ban["disconnected"], json!(1), "{ban}");
        closed_within_a_second(&relay, mark, &held_id, asked);
        assert_eq!(reserve_from(None, &v4, id).await, None);
    });
    assert!(journal(&relay)
        .iter()
        .any(|e| e["kind"] == "address_banned" && e["cidr"] == "127.0.0.1/32"));
    drop(bot);

    // The ban outlives a restart; lifting it lets 127.0.0.1 back in.
    let mut relay = relay;
    relay
        .stop(bsv_p2p_tests::relay::Signal::Term, T)
        .expect("the relay stops");
    let options = RelayOptions::new(json!({
        "mode": "relay",
        "relay": { "blocklist": ["::1/128"] }
    }))
    .dir(relay.into_dir());
    let (relay, v4, _) = two_hosts_with(options);
    let listed = relay.ctl(&["acl", "list"]);
    assert!(
        listed["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["cidr"] == "127.0.0.1/32" && e["origin"] == "control"),
        "{listed}"
    );
    let id = relay.peer_id();
    block_on(async {
        assert_eq!(reserve_from(None, &v4, id).await, None);
    });
    let lifted = relay.ctl(&["unban", "127.0.0.1"]);
    assert_eq!(lifted["removed"], json!(true), "{lifted}");
    block_on(async {
        assert_eq!(reserve_from(None, &v4, id).await, Some(Status::Ok));
    });
    // Removing what is not there says so.
    let again = bsv_p2p_tests::ctl::run(&relay.socket(), &["unban", "127.0.0.1"], T).unwrap();
    assert_eq!(again.code, Some(1), "{again:?}");
}

#[test]
fn an_allowlist_makes_the_relay_private_and_sighup_applies_a_new_one_without_dropping_who_stays() {
    let a_key = Keypair::generate_ed25519();
    let a_id = a_key.public().to_peer_id();
    let config = |allow: Vec<String>| {
        json!({
            "mode": "relay",
            "relay": { "allowlist": allow }
        })
    };
    let (relay, v4, _) = two_hosts(config(vec![a_id.to_string()]));
    let id = relay.peer_id();
    block_on(async {
        let a = RawPeer::with_key(a_key.clone(), RawOptions { accept_stop: true }).unwrap();
        a.connect(&v4).await.unwrap();
        assert_eq!(status_of(&a.reserve(id).await.unwrap()), Some(Status::Ok));
        // Not on the list: connected, but no reservation and no circuit.
        let b = RawPeer::start(RawOptions { accept_stop: true }).unwrap();
        b.connect(&v4).await.unwrap();
        assert_eq!(
            status_of(&b.reserve(id).await.unwrap()),
            Some(Status::PermissionDenied)
        );
        let (reply, _) = b.connect_via(id, a_id).await.unwrap();
        assert_eq!(status_of(&reply), Some(Status::PermissionDenied));
        let stats = relay.ctl(&["stats"]);
        assert_eq!(
            denied(&stats, "reservations", "not_allowlisted"),
            1,
            "{stats}"
        );
        assert_eq!(denied(&stats, "circuits", "not_allowlisted"), 1, "{stats}");

        // Allowed at run time: b reserves, a reaches it.
        let allowed = relay.ctl(&["acl", "allow", &b.peer_id().to_string()]);
        assert_eq!(allowed["added"], json!(true), "{allowed}");
        assert_eq!(status_of(&b.reserve(id).await.unwrap()), Some(Status::Ok));
        let listed = relay.ctl(&["acl", "list"]);
        assert_eq!(listed["private"], json!(true), "{listed}");

        // The file now allows only b; SIGHUP reloads it: a's reservation
        // goes (its connection is closed), b's stays.
        let path = relay.data_dir().parent().unwrap().join("config.json");
        std::fs::write(
            &path,
            serde_json::to_vec(&config(vec![b.peer_id().to_string()])).unwrap(),
        )
        .unwrap();
        let mark = relay.mark();
        // SAFETY: kill(2) on the relay this test started, still running.
        assert_eq!(
            unsafe { libc::kill(relay.pid() as libc::pid_t, libc::SIGHUP) },
            0
        );
        let reloaded = relay
            .wait_for_event_after(mark, "config_reloaded", |_| true, T)
            .expect("SIGHUP reloads");
        assert!(
            field(&reloaded, "applied").contains("relay.allowlist"),
            "{reloaded}"
        );
        relay
            .wait_for_event_after(
                mark,
                "connection_closed",
                |e| field(e, "peerId") == a_id.to_string(),
                Duration::from_secs(2),
            )
            .expect("a, no longer allowed, is dropped");
        let held: Vec<String> = relay.ctl(&["reservations"])["reservations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["peerId"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(held, vec![b.peer_id().to_string()]);
        // Only b's run-time entry and the file's entry for b remain.
        let listed = relay.ctl(&["acl", "list"]);
        assert!(
            listed["entries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["peerId"] == b.peer_id().to_string().as_str()),
            "{listed}"
        );
    });
}

#[test]
fn an_address_that_keeps_hitting_the_limits_is_banned_for_a_while_and_reported_once() {
    let (relay, v4, v6) = two_hosts(json!({
        "mode": "relay",
        "relay": {
            "rateLimit": { "connectionsPerMinute": 10 },
            "sources": { "exempt": [] },
            "autoBan": { "refusals": 20, "window": 60000, "duration": 4000 }
        }
    }));
    let id = relay.peer_id();
    let port = |a: &Multiaddr| {
        a.iter()
            .find_map(|p| match p {
                libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                _ => None,
            })
            .unwrap()
    };
    // 60 bare connections from ::1: 10 taken, 20 refused by the rate,
    // then banned; the rest refused as banned.
    let p6 = port(&v6);
    for _ in 0..60 {
        if let Ok(s) = std::net::TcpStream::connect(("::1", p6)) {
            drop(s);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let banned = relay
        .wait_for_event("address_banned", |e| field(e, "address") == "::1/128", T)
        .expect("::1 banned");
    println!("{banned}");
    until("the refusals after the ban counted", T, || {
        let stats = relay.ctl(&["stats"]);
        denied(&stats, "connections", "banned") > 0
    });
    let stats = relay.ctl(&["stats"]);
    assert!(
        denied(&stats, "connections", "connection_rate") >= 20,
        "{stats}"
    );
    let events = journal(&relay);
    let limited: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "address_rate_limited")
        .collect();
    assert_eq!(
        limited.len(),
        1,
        "one rate-limit event a minute: {limited:?}"
    );
    assert_eq!(limited[0]["address"], "::1", "{limited:?}");
    let bans: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "address_banned")
        .collect();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert!(bans[0]["until"].is_string(), "{bans:?}");
    let listed = relay.ctl(&["acl", "list"]);
    assert!(
        listed["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["cidr"] == "::1/128" && e["origin"] == "auto"),
        "{listed}"
    );
    block_on(async {
        // Another host is unaffected.
        assert_eq!(reserve_from(None, &v4, id).await, Some(Status::Ok));
    });
    // The ban ends by itself after 4 s.
    until("the ban ends", Duration::from_secs(15), || {
        !relay.ctl(&["acl", "list"])["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["cidr"] == "::1/128")
    });
}

#[test]
fn a_paced_circuit_moves_at_its_pace() {
    // 256 KiB/s each way: 1 MiB takes the first second's 256 KiB at once
    // and about 3 s for the rest.
    let relay = Relay::start(json!({
        "mode": "relay",
        "relay": { "circuits": { "maxBytesPerSecond": 262144 } }
    }));
    let addr = relay.tcp_addr();
    let a = Bot::start(BotOptions::new(addr.clone()));
    a.wait_reserved(T);
    let mut b = Bot::start(BotOptions::new(addr.clone()));
    b.wait_reserved(T);
    let circuit = format!("{addr}/p2p-circuit/p2p/{}", a.peer_id());
    let r = b.ok(
        json!({ "cmd": "echo", "addr": circuit, "bytes": 1 << 20, "seed": 4 }),
        T,
    );
    assert_eq!(r["received"], json!(1 << 20), "{r}");
    let ms = r["ms"].as_f64().unwrap();
    println!("1 MiB echoed through a 256 KiB/s circuit in {ms} ms");
    assert!((2500.0..15_000.0).contains(&ms), "{r}");
}
