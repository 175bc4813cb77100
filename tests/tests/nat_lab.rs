//! The NAT lab: the relay on a public segment and two bots, each behind its own
//! NAT router (network namespaces with nftables masquerade, made and removed
//! here; see `bsv_p2p_tests::natlab`).
//!
//! - js-libp2p bots (the real client) cannot dial each other directly, but
//!   reach each other through the relay's circuit.
//! - With DCUtR, relayed connections upgrade to direct ones by hole punching,
//!   and messages flow over the direct connection: 20 attempts with fresh
//!   rust-libp2p peers, the share that upgraded is printed. The js bots run
//!   DCUtR too, and what they get is printed: js-libp2p 3 ignores TCP
//!   observed addresses and dials from ephemeral ports, so it has no NAT
//!   mapping to offer (`tests/js/README.md`).
//!
//! Needs root (namespaces) and `nft`; skipped with a printed reason without them.

use std::path::Path;
use std::time::{Duration, Instant};

use bsv_p2p_tests::natlab::{self, NatLab, NatPeer, RELAY_IP};
use bsv_p2p_tests::relay::field;
use bsv_p2p_tests::{Bot, BotOptions, Relay, RelayOptions};
use serde_json::{json, Value};

const RELAY_PORT: u16 = 4001;
const ATTEMPTS: u16 = 20;
const T: Duration = Duration::from_secs(30);
const ECHO_BYTES: u64 = 64 * 1024;

fn relay_in(lab: &NatLab) -> Relay {
    let announce = NatLab::relay_addr(RELAY_PORT);
    let mut options = RelayOptions::new(json!({
        "mode": "relay",
        "announce": [announce],
        "relay": { "circuits": { "unlimited": true } },
    }));
    options.listen = vec![announce];
    options.netns = Some(lab.public.clone());
    Relay::start_with(options)
}

fn js_bot(relay: &Relay, ns: &str, listen: &str) -> Bot {
    let mut options = BotOptions::new(relay.tcp_addr());
    options.netns = Some(ns.to_string());
    options.listen = vec![listen.to_string()];
    options.dcutr = true;
    let bot = Bot::start(options);
    bot.wait_reserved(T);
    bot
}

/// A direct connection between the two bots, from `bot`'s events.
fn direct_connection(bot: &Bot, peer: &str) -> Option<Value> {
    bot.events_of("connection_open").into_iter().find(|e| {
        field(e, "peer") == peer
            && !field(e, "addr").contains("/p2p-circuit")
            && e["limited"] == json!(false)
    })
}

#[test]
fn bots_behind_two_nats_meet_through_the_relay_and_hole_punch_to_a_direct_connection() {
    if let Some(why) = natlab::unavailable() {
        eprintln!("skipped: the NAT lab needs network namespaces and nftables: {why}");
        return;
    }
    let started = Instant::now();
    let lab = NatLab::new().unwrap_or_else(|e| panic!("cannot build the NAT lab: {e}"));
    let relay = relay_in(&lab);
    let relay_addr = relay.tcp_addr();
    assert!(
        relay_addr
            .to_string()
            .starts_with(&format!("/ip4/{RELAY_IP}/")),
        "{relay_addr}"
    );

    // --- js bots: no direct path, the relay's circuit works.
    let (a_port, b_port) = (4011, 4012);
    let mut a = js_bot(
        &relay,
        &lab.a.host,
        &format!("/ip4/{}/tcp/{a_port}", lab.a.private_ip),
    );
    let mut b = js_bot(
        &relay,
        &lab.b.host,
        &format!("/ip4/{}/tcp/{b_port}", lab.b.private_ip),
    );
    for (ns, ip, port) in [
        (&lab.b.host, lab.a.public_ip, a_port),
        (&lab.b.host, lab.a.private_ip, a_port),
        (&lab.a.host, lab.b.public_ip, b_port),
        (&lab.a.host, lab.b.private_ip, b_port),
    ] {
        assert!(
            !NatLab::tcp_connects(ns, ip, port, 3),
            "a TCP connection from {ns} to {ip}:{port} opened: the NAT lets unsolicited connections in"
        );
    }
    let direct = b
        .command(
            json!({ "cmd": "echo", "addr": format!("/ip4/{}/tcp/{a_port}/p2p/{}", lab.a.public_ip, a.peer_id()), "bytes": 1024 }),
            Duration::from_secs(10),
        )
        .expect("the bot answers");
    assert_eq!(
        direct["ok"],
        json!(false),
        "B dialled A's NAT directly: {direct}"
    );

    let circuit = format!("{relay_addr}/p2p-circuit/p2p/{}", a.peer_id());
    let relayed = b.ok(
        json!({ "cmd": "echo", "addr": circuit, "bytes": ECHO_BYTES }),
        T,
    );
    assert_eq!(relayed["received"], json!(ECHO_BYTES), "{relayed}");
    let back = format!("{relay_addr}/p2p-circuit/p2p/{}", b.peer_id());
    a.ok(
        json!({ "cmd": "echo", "addr": back, "bytes": ECHO_BYTES }),
        T,
    );

    // js DCUtR runs on the relayed connection; give it its retries (3 × 5 s).
    std::thread::sleep(Duration::from_secs(16));
    let js_upgraded =
        direct_connection(&b, a.peer_id()).or_else(|| direct_connection(&a, b.peer_id()));
    println!(
        "nat_lab: js-libp2p bots (DCUtR on): {}",
        match &js_upgraded {
            Some(c) => format!("upgraded to a direct connection {c}"),
            None => "stayed relayed (js identify drops TCP observed addresses and js TCP \
                     dials from ephemeral ports: see tests/js/README.md)"
                .to_string(),
        }
    );
    drop((a, b));

    // --- rust-libp2p peers with DCUtR: 20 fresh pairs.
    let bin = Path::new(env!("CARGO_BIN_EXE_bsv-p2p-nat-peer"));
    let mut relayed_ok = 0;
    let mut upgraded = 0;
    let mut failures = Vec::new();
    for i in 0..ATTEMPTS {
        // Fresh ports each time: the routers' mappings of the last attempt
        // are still in conntrack, and masquerade keeps a port only when free.
        let (a_port, b_port) = (4100 + i, 4200 + i);
        let peer_args = |ip: &str, port: u16| {
            vec![
                "--relay".to_string(),
                relay_addr.to_string(),
                "--listen".to_string(),
                format!("/ip4/{ip}/tcp/{port}"),
                "--bytes".to_string(),
                ECHO_BYTES.to_string(),
            ]
        };
        let a = NatPeer::start(bin, &lab.a.host, &peer_args(lab.a.private_ip, a_port))
            .unwrap_or_else(|e| panic!("attempt {i}: {e}"));
        a.wait_for("reserved", T)
            .unwrap_or_else(|e| panic!("attempt {i}: A did not reserve: {e}"));
        let mut args = peer_args(lab.b.private_ip, b_port);
        args.extend(["--dial".to_string(), a.peer_id().to_string()]);
        let b =
            NatPeer::start(bin, &lab.b.host, &args).unwrap_or_else(|e| panic!("attempt {i}: {e}"));
        let done = b
            .wait_for("done", Duration::from_secs(90))
            .unwrap_or_else(|e| panic!("attempt {i}: {e}"));
        if done["relayed_echo"] == json!(true) {
            relayed_ok += 1;
        }
        let direct_to_a = b.events().into_iter().find(|e| {
            e["event"] == "connection_open"
                && field(e, "peer") == a.peer_id()
                && e["relayed"] == json!(false)
        });
        let expected = format!("/ip4/{}/tcp/{a_port}", lab.a.public_ip);
        let punched = done["upgraded"] == json!(true)
            && done["direct_echo"] == json!(true)
            && direct_to_a
                .as_ref()
                .is_some_and(|c| field(c, "addr").starts_with(&expected));
        if punched {
            upgraded += 1;
        } else {
            failures.push(format!(
                "attempt {i}: {done}; direct connection: {direct_to_a:?}"
            ));
        }
    }
    let share = f64::from(upgraded) / f64::from(ATTEMPTS);
    println!(
        "nat_lab: relayed echo {relayed_ok}/{ATTEMPTS}; upgraded by hole punching with messages \
         after the upgrade {upgraded}/{ATTEMPTS} ({:.0} %); {:.0} s in all",
        share * 100.0,
        started.elapsed().as_secs_f64()
    );
    for f in &failures {
        println!("nat_lab: not upgraded: {f}");
    }
    assert_eq!(
        relayed_ok, ATTEMPTS,
        "the relayed path failed: {failures:#?}"
    );
    assert!(
        upgraded > 0,
        "no attempt upgraded to a direct connection: {failures:#?}"
    );
}
