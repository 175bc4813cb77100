//! One host minting peer ids to take every slot: fresh keys cost nothing,
//! so the per-peer caps alone let 16 sources and 16 destinations on one
//! address fill the 1,024 circuit slots with idle circuits for the hour-long
//! default duration, and 250 keys fill every reservation. The caps per
//! address (`relay.circuits.maxPerIp`, `relay.reservations.maxPerIp`) leave
//! room for bots from another address (here IPv6 loopback, `::1`: another
//! address and another network to the relay), and the idle timeout gives an
//! idle squatter's slots back. A `reload` that tightens the caps keeps the
//! circuits of bots that are still allowed. Loopback is exempt from these
//! caps by default (`relay.sources.exempt`), so the tests set it empty.

use std::time::{Duration, Instant};

use async_std::task::block_on;
use bsv_p2p_tests::hop::{status_of, RawOptions, RawPeer, Status};
use bsv_p2p_tests::relay::field;
use bsv_p2p_tests::{Bot, BotOptions, Relay, RelayOptions};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(30);
const MIB: u64 = 1 << 20;

fn config(circuits_per_ip: u64) -> Value {
    json!({
        "mode": "relay",
        // The attack's own request rate is not what is tested here.
        "relay": {
            "requests": { "perSecond": 10000, "burst": 10000 },
            "circuits": { "maxPerIp": circuits_per_ip, "idleTimeout": 4000 },
            // Loopback is exempt by default; here it stands for the internet.
            "sources": { "exempt": [] },
            // The squatter's ~900 refusals would get it banned; what is
            // tested here is the caps alone.
            "autoBan": { "enabled": false }
        }
    })
}

#[test]
fn one_host_with_fresh_keys_leaves_room_for_bots_from_another_address_and_reload_tightens_without_dropping(
) {
    let mut options = RelayOptions::new(config(128));
    options.listen = vec!["/ip4/127.0.0.1/tcp/0".into(), "/ip6/::1/tcp/0".into()];
    let relay = Relay::start_with(options);
    let relay_id = relay.peer_id();
    let v6 = relay.listen_addr("/ip6/::1/");
    let v4 = relay.tcp_addr();

    block_on(async {
        // 16 destinations and 16 more reserving peers, all from 127.0.0.1:
        // 32 reservations per address, the rest refused.
        let mut dsts = Vec::new();
        let mut refused = 0;
        for i in 0..40 {
            let peer = RawPeer::start(RawOptions { accept_stop: true }).unwrap();
            peer.connect(&v4).await.unwrap();
            let reply = peer.reserve(relay_id).await.unwrap();
            match status_of(&reply) {
                Some(Status::Ok) if i < 32 => dsts.push(peer),
                Some(Status::ReservationRefused) if i >= 32 => refused += 1,
                other => panic!("reservation {i} from one address: {other:?}"),
            }
        }
        assert_eq!(refused, 8);
        dsts.truncate(16);
        let dst_ids: Vec<libp2p::PeerId> = dsts.iter().map(RawPeer::peer_id).collect();

        // The destinations accept every stop stream and hold it open.
        let mut holders = Vec::new();
        for d in dsts {
            holders.push(async_std::task::spawn(async move {
                let mut held = Vec::new();
                while let Ok((_, stream)) = d.answer_stop(Status::Ok).await {
                    held.push(stream);
                }
                (d, held)
            }));
        }
        // 16 sources x 64 circuits: the address's 128, the rest refused.
        let (mut open, mut limited, mut srcs) = (Vec::new(), 0, Vec::new());
        for s in 0..16 {
            let src = RawPeer::start(RawOptions { accept_stop: false }).unwrap();
            src.connect(&v4).await.unwrap();
            for c in 0..64 {
                let dst = dst_ids[(s * 64 + c) % dst_ids.len()];
                let (reply, stream) = src.connect_via(relay_id, dst).await.unwrap();
                match status_of(&reply) {
                    Some(Status::Ok) => open.push(stream),
                    Some(Status::ResourceLimitExceeded) => limited += 1,
                    other => panic!("circuit {s}/{c}: {other:?}"),
                }
            }
            srcs.push(src);
        }
        let established = open.len();
        assert_eq!(established, 128, "circuits from one address");
        assert_eq!(limited, 16 * 64 - 128);
        let stats = relay.ctl(&["stats"]);
        assert_eq!(
            stats["circuits"]["denied"]["source_circuits_full"],
            json!(limited),
            "{stats}"
        );
        assert_eq!(
            stats["reservations"]["denied"]["source_reservations_full"],
            json!(8),
            "{stats}"
        );

        // Two bots from another address reserve and talk through a circuit
        // while the squatter holds its share.
        // Their connection monitor pings every second, inside the 4 s idle timeout.
        let bot = || {
            let mut o = BotOptions::new(v6.clone());
            o.monitor_interval = Duration::from_secs(1);
            Bot::start(o)
        };
        let a = bot();
        a.wait_reserved(T);
        let mut b = bot();
        b.wait_reserved(T);
        let circuit = format!("{v6}/p2p-circuit/p2p/{}", a.peer_id());
        let r = b.ok(
            json!({ "cmd": "echo", "addr": circuit, "bytes": MIB, "seed": 1 }),
            T,
        );
        assert_eq!(r["received"], json!(MIB), "{r}");

        // The squatter's circuits move nothing: the idle timeout (4 s here)
        // closes them; the bots' circuit keeps its pings and stays.
        let started = Instant::now();
        loop {
            let idle = relay
                .events_of("circuit_closed", |e| field(e, "reason") == "idle")
                .len();
            if idle >= 128 {
                break;
            }
            assert!(
                started.elapsed() < T,
                "{idle} idle circuits closed after {:?}",
                started.elapsed()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(open);
        drop(srcs);

        // A reload that tightens the per-address cap below what the bots
        // use applies at once and drops no one: the bots' circuit goes on,
        // a new circuit from the squatter's address is refused.
        let path = relay.data_dir().parent().unwrap().join("config.json");
        std::fs::write(&path, serde_json::to_vec(&config(2)).unwrap()).unwrap();
        let reload = relay.ctl(&["reload"]);
        assert!(
            reload["applied"]
                .as_array()
                .unwrap()
                .contains(&json!("relay")),
            "{reload}"
        );
        assert_eq!(reload["restartRequired"], json!([]), "{reload}");
        let r = b.ok(
            json!({ "cmd": "echo", "addr": circuit, "bytes": MIB, "seed": 2 }),
            T,
        );
        assert_eq!(r["received"], json!(MIB), "{r}");
        let src = RawPeer::start(RawOptions { accept_stop: false }).unwrap();
        src.connect(&v4).await.unwrap();
        let dst = dst_ids[0];
        let (first, _s1) = src.connect_via(relay_id, dst).await.unwrap();
        assert_eq!(status_of(&first), Some(Status::Ok));
        let (second, _s2) = src.connect_via(relay_id, dst).await.unwrap();
        assert_eq!(status_of(&second), Some(Status::Ok));
        let (third, _s3) = src.connect_via(relay_id, dst).await.unwrap();
        assert_eq!(status_of(&third), Some(Status::ResourceLimitExceeded));
        for h in holders {
            drop(h);
        }
    });
}

/// A storm of connection attempts and silent sockets from one address is
/// cut by the per-address rate and caps before any handshake work, while
/// a bot from another address reserves and echoes; a peer reconnecting to
/// make a new reservation each time is cut at `reservationsPerHour` with
/// RESOURCE_LIMIT_EXCEEDED.
#[test]
fn a_connection_storm_from_one_address_is_cut_and_reservations_per_hour_hold() {
    let mut options = RelayOptions::new(json!({
        "mode": "relay",
        "connectionManager": { "maxConnectionsPerIp": 8, "maxPendingIncomingPerIp": 4 },
        "relay": {
            "rateLimit": { "connectionsPerMinute": 30, "reservationsPerHour": 10 },
            "sources": { "exempt": [] },
            "autoBan": { "enabled": false }
        }
    }));
    options.listen = vec!["/ip4/127.0.0.1/tcp/0".into(), "/ip6/::1/tcp/0".into()];
    let relay = Relay::start_with(options);
    let v6 = relay.listen_addr("/ip6/::1/");
    let port = relay
        .tcp_addr()
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();

    // 300 connection attempts from 127.0.0.1 that never handshake, held open.
    let mut silent = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            silent.push(s);
        }
    }
    // A bot from ::1 is served meanwhile.
    let mut bot_options = BotOptions::new(v6.clone());
    bot_options.monitor_interval = Duration::from_secs(1);
    let a = Bot::start(bot_options.clone());
    a.wait_reserved(T);
    let mut b = Bot::start(bot_options);
    b.wait_reserved(T);
    let circuit = format!("{v6}/p2p-circuit/p2p/{}", a.peer_id());
    let r = b.ok(
        json!({ "cmd": "echo", "addr": circuit, "bytes": MIB, "seed": 3 }),
        T,
    );
    assert_eq!(r["received"], json!(MIB), "{r}");
    let stats = relay.ctl(&["stats"]);
    let denied = &stats["connections"]["denied"];
    let (pending, rate) = (
        denied["source_pending_full"].as_u64().unwrap_or(0),
        denied["connection_rate"].as_u64().unwrap_or(0),
    );
    assert!(pending + rate >= 300 - 30, "{stats}");
    assert!(pending > 0, "{stats}");
    assert_eq!(
        stats["denials"]["source_pending_full"],
        json!(pending),
        "{stats}"
    );
    drop(silent);

    // Reservations per hour, per peer id: a peer that reconnects for each
    // new reservation, 1,000 times, gets the default 120, then
    // RESOURCE_LIMIT_EXCEEDED for every other attempt.
    let relay2 = Relay::start(json!({
        "mode": "relay",
        "relay": {
            "rateLimit": { "connectionsPerMinute": 0 },
            "requests": { "perSecond": 10000, "burst": 10000 },
            "sources": { "exempt": [] },
            "autoBan": { "enabled": false }
        }
    }));
    let id2 = relay2.peer_id();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let mut statuses = Vec::new();
    block_on(async {
        for _ in 0..1000 {
            let peer = RawPeer::with_key(key.clone(), RawOptions { accept_stop: false }).unwrap();
            peer.connect(&relay2.tcp_addr()).await.unwrap();
            statuses.push(status_of(&peer.reserve(id2).await.unwrap()));
            peer.disconnect(id2).await.unwrap();
        }
    });
    let ok = statuses.iter().filter(|s| **s == Some(Status::Ok)).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == Some(Status::ResourceLimitExceeded))
        .count();
    assert_eq!((ok, limited), (120, 880));
    assert!(statuses[..120].iter().all(|s| *s == Some(Status::Ok)));
    let stats = relay2.ctl(&["stats"]);
    assert_eq!(
        stats["reservations"]["denied"]["reservation_rate"],
        json!(880),
        "{stats}"
    );
}
