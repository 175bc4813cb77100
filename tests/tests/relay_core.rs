//! The relay's core promises, proved against the real binary with rust-libp2p
//! clients on loopback: reservations, circuits that carry data intact, renewal,
//! limits, a stable identity, graceful shutdown, and pings answered for peers
//! that run no ping service of their own.

use std::time::{Duration, Instant};

use async_std::task::block_on;
use bsv_p2p_tests::client::{CircuitLimit, ClientEvent};
use bsv_p2p_tests::relay::field;
use bsv_p2p_tests::scenario::{circuit, is_circuit, is_peer};
use bsv_p2p_tests::{Client, ClientOptions, Relay, RelayOptions, Signal};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde_json::{json, Value};

const MIB: u64 = 1 << 20;
/// Bound on the relay logging what a test just caused.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

async fn client() -> Client {
    Client::start(ClientOptions::default())
        .await
        .expect("client starts")
}

/// A relay (`mode: relay`) with `relay` as its `relay` settings.
fn relay_with(relay: Value) -> Relay {
    Relay::start(json!({ "mode": "relay", "relay": relay }))
}

/// `b` connects to the relay over TCP, dials `dst` through it and echoes
/// 64 KiB to it; `reachable` says what the dial shows.
async fn echo_via_relay(relay: &Relay, b: &Client, dst: PeerId, reachable: &str) {
    b.connect(&relay.tcp_addr()).await.unwrap();
    b.dial_via(&relay.tcp_addr(), dst)
        .await
        .unwrap_or_else(|e| panic!("{reachable}: {e}"));
    b.echo(dst, 64 * 1024, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{reachable}: echo: {e}"));
}

/// Two new clients, `b` in a circuit to `a` through the relay, which `b`
/// reaches over `via`.
async fn clients_in_circuit(relay: &Relay, via: &Multiaddr) -> (Client, Client) {
    let a = client().await;
    let b = client().await;
    circuit(relay, via, &a, &b).await;
    (a, b)
}

/// The relay's `circuit_closed` for the circuit from `b` to `a`.
fn circuit_closed(relay: &Relay, a: &Client, b: &Client) -> Value {
    relay
        .wait_for_event(
            "circuit_closed",
            is_circuit(b.peer_id(), a.peer_id()),
            EVENT_TIMEOUT,
        )
        .expect("the relay logs circuit_closed")
}

/// The Limit `b`'s outbound circuit came with (`None`: no Limit).
async fn outbound_limit(b: &Client) -> Option<CircuitLimit> {
    let (_, outbound) = b
        .wait_event(0, EVENT_TIMEOUT, |e| {
            matches!(e, ClientEvent::OutboundCircuit { .. })
        })
        .await
        .unwrap();
    match outbound {
        ClientEvent::OutboundCircuit { limit, .. } => limit,
        other => unreachable!("waited for an outbound circuit, got {other:?}"),
    }
}

#[test]
fn data_flows_both_ways_intact_through_a_circuit() {
    let relay = Relay::start(json!({ "mode": "relay" }));
    block_on(async {
        // b reaches the relay over WebSocket, a over TCP.
        let (a, b) = clients_in_circuit(&relay, &relay.ws_addr()).await;
        let b_conn = relay
            .wait_for_event("connection_opened", is_peer(b.peer_id()), EVENT_TIMEOUT)
            .unwrap();
        assert_eq!(field(&b_conn, "transport"), "websocket", "{b_conn}");
        assert_eq!(field(&b_conn, "direction"), "inbound", "{b_conn}");

        // Streams opened from both ends of the one relayed connection.
        let limit = Duration::from_secs(60);
        let (b_to_a, a_to_b) = futures::join!(
            b.echo(a.peer_id(), 4 * MIB, limit),
            a.echo(b.peer_id(), 4 * MIB, limit)
        );
        assert_eq!(b_to_a.expect("echo b -> a -> b").bytes, 4 * MIB);
        assert_eq!(a_to_b.expect("echo a -> b -> a").bytes, 4 * MIB);

        // Each direction carried both echoes: 8 MiB of payload plus framing.
        b.disconnect(a.peer_id());
        let closed = circuit_closed(&relay, &a, &b);
        for key in ["bytesSrcToDst", "bytesDstToSrc"] {
            let n = closed[key].as_u64().unwrap_or_default();
            assert!(
                (8 * MIB..9 * MIB).contains(&n),
                "{key} = {n}, expected 8 MiB of echoes plus framing: {closed}"
            );
        }
    });
}

#[test]
fn reservation_is_renewed_before_it_expires() {
    let relay = relay_with(json!({ "reservations": { "ttl": 5000 } }));
    block_on(async {
        let a = client().await;
        let b = client().await;
        let reserved_at = Instant::now();
        let reservation = a.reserve(&relay.tcp_addr()).await.expect("a reserves");
        assert_eq!(reservation.relay, relay.peer_id());
        assert_eq!(
            reservation.address.iter().last(),
            Some(Protocol::P2p(a.peer_id())),
            "{}",
            reservation.address
        );
        let created = relay
            .wait_for_event("reservation_created", is_peer(a.peer_id()), EVENT_TIMEOUT)
            .unwrap();
        assert_eq!(created["ttl"], 5, "{created}");

        // rust-libp2p renews at 3/4 of the remaining time: about 4 s in.
        relay
            .wait_for_event(
                "reservation_renewed",
                is_peer(a.peer_id()),
                Duration::from_secs(8),
            )
            .expect("the relay logs reservation_renewed for a");
        a.wait_event(0, EVENT_TIMEOUT, |e| {
            matches!(e, ClientEvent::ReservationAccepted { renewal: true, .. })
        })
        .await
        .expect("a sees its renewal accepted");

        // Past the first TTL, a is still reachable through the relay.
        let past_ttl = Duration::from_millis(6500);
        async_std::task::sleep(past_ttl.saturating_sub(reserved_at.elapsed())).await;
        echo_via_relay(&relay, &b, a.peer_id(), "a is reachable after one TTL").await;
        assert!(reserved_at.elapsed() > Duration::from_secs(5));
        let expired = relay.events_of("reservation_expired", is_peer(a.peer_id()));
        assert!(expired.is_empty(), "a's reservation expired: {expired:?}");
    });
}

#[test]
fn restart_keeps_the_peer_id() {
    let first = Relay::start(json!({ "mode": "relay" }));
    let peer = first.peer_id();
    let key = first.data_dir().join("identity.key");
    assert!(key.is_file(), "{} was not created", key.display());
    first
        .wait_for_event("identity_created", is_peer(peer), EVENT_TIMEOUT)
        .expect("the first start logs identity_created");
    let mut first = first;
    let stopped = first
        .stop(Signal::Term, Duration::from_secs(10))
        .expect("SIGTERM stops the relay");
    assert!(stopped.status.success(), "{:?}", stopped.status);

    let mut second =
        Relay::start_with(RelayOptions::new(json!({ "mode": "relay" })).dir(first.into_dir()));
    assert_eq!(
        second.peer_id(),
        peer,
        "the restarted relay has a new peer ID"
    );
    assert!(
        second.events_of("identity_created", |_| true).is_empty(),
        "the restart created a new identity"
    );
    // A noise handshake against the old peer ID succeeds only with the old key.
    block_on(async {
        let c = client().await;
        let connected = c.connect(&second.tcp_addr()).await.expect("connects");
        assert_eq!(connected, peer);
    });
    let stopped = second
        .stop(Signal::Int, Duration::from_secs(10))
        .expect("SIGINT stops the relay");
    assert!(stopped.status.success(), "{:?}", stopped.status);
}

#[test]
fn reservations_beyond_the_maximum_are_refused() {
    let relay = relay_with(json!({ "reservations": { "max": 2 } }));
    block_on(async {
        let a = client().await;
        let b = client().await;
        let c = client().await;
        a.reserve(&relay.tcp_addr())
            .await
            .expect("first reservation");
        b.reserve(&relay.tcp_addr())
            .await
            .expect("second reservation");
        let refusal = c
            .reserve_expect_denied(&relay.tcp_addr())
            .await
            .expect("the third reservation is refused");
        assert!(
            refusal.to_lowercase().contains("refused"),
            "expected RESERVATION_REFUSED, got {refusal}"
        );
        let denied = relay
            .wait_for_event("reservation_denied", is_peer(c.peer_id()), EVENT_TIMEOUT)
            .expect("the relay logs reservation_denied");
        assert_eq!(field(&denied, "reason"), "reservations_full", "{denied}");
        assert_eq!(relay.events_of("reservation_created", |_| true).len(), 2);

        // A freed slot is reusable: a leaves, c gets in.
        a.disconnect(relay.peer_id());
        relay
            .wait_for_event("reservation_closed", is_peer(a.peer_id()), EVENT_TIMEOUT)
            .expect("a's reservation ends with its connection");
        c.reserve(&relay.tcp_addr())
            .await
            .expect("c reserves the freed slot");
    });
}

#[test]
fn sigterm_with_connected_clients_drains_and_exits_zero() {
    let shutdown = Duration::from_millis(3000);
    let mut relay = Relay::start(json!({
        "mode": "relay",
        "shutdown": { "timeout": shutdown.as_millis() as u64 }
    }));
    block_on(async {
        let (a, b) = clients_in_circuit(&relay, &relay.tcp_addr()).await;
        b.echo(a.peer_id(), 256 * 1024, Duration::from_secs(10))
            .await
            .expect("the circuit works before the stop");
        let (a_from, b_from) = (a.seq().await.unwrap(), b.seq().await.unwrap());

        let stopped = relay
            .stop(Signal::Term, shutdown + Duration::from_secs(5))
            .expect("the relay exits after SIGTERM");
        assert!(stopped.status.success(), "exit status {:?}", stopped.status);
        assert!(
            stopped.elapsed < shutdown + Duration::from_millis(1500),
            "took {:?} with a shutdown timeout of {shutdown:?}",
            stopped.elapsed
        );

        let events = relay.events();
        let position = |kind: &str| events.iter().position(|e| e["event"] == kind);
        let stopping = position("relay_stopping").expect("relay_stopping logged");
        let stopped_at = position("relay_stopped").expect("relay_stopped logged");
        assert!(stopping < stopped_at);
        assert!(
            events[stopped_at].get("remaining").is_none(),
            "connections were still open at the timeout: {}",
            events[stopped_at]
        );
        let relay_peer = relay.peer_id();
        for (name, c, from) in [("a", &a, a_from), ("b", &b, b_from)] {
            c.wait_event(from, EVENT_TIMEOUT, move |e| {
                matches!(e, ClientEvent::ConnectionClosed { peer, .. } if *peer == relay_peer)
            })
            .await
            .unwrap_or_else(|e| panic!("{name} was not disconnected: {e}"));
        }
    });
}

/// The first stop signal starts a drain that could last the whole shutdown
/// timeout; a second one ends the process at once, with 130. Its handler
/// exits by itself, so this holds even while the runtime is busy.
#[test]
fn a_second_stop_signal_exits_at_once_with_130() {
    let mut relay = Relay::start(json!({
        "mode": "relay",
        "shutdown": { "timeout": 60_000 }
    }));
    block_on(async {
        let (_a, _b) = clients_in_circuit(&relay, &relay.tcp_addr()).await;
        relay.signal(Signal::Term);
        let stopped = relay
            .stop(Signal::Int, Duration::from_secs(5))
            .expect("the relay exits on the second signal");
        assert_eq!(
            stopped.status.code(),
            Some(130),
            "exit status {:?}",
            stopped.status
        );
        assert!(
            stopped.elapsed < Duration::from_secs(2),
            "took {:?}",
            stopped.elapsed
        );
    });
}

#[test]
fn shutdown_logs_the_circuits_reservations_and_connections_it_ends() {
    let mut relay = Relay::start(json!({ "mode": "relay" }));
    block_on(async {
        let (a, b) = clients_in_circuit(&relay, &relay.tcp_addr()).await;
        let stopped = relay
            .stop(Signal::Term, Duration::from_secs(10))
            .expect("the relay exits after SIGTERM");
        assert!(stopped.status.success(), "exit status {:?}", stopped.status);
        let log = || {
            relay
                .events()
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let closed = relay.events_of("circuit_closed", is_circuit(b.peer_id(), a.peer_id()));
        assert_eq!(
            closed.len(),
            1,
            "no circuit_closed for the open circuit:\n{}",
            log()
        );
        assert_eq!(field(&closed[0], "reason"), "shutdown", "{}", closed[0]);
        let ended = relay.events_of("reservation_closed", is_peer(a.peer_id()));
        assert_eq!(ended.len(), 1, "no reservation_closed for a:\n{}", log());
        for peer in [a.peer_id(), b.peer_id()] {
            let gone = relay.events_of("connection_closed", is_peer(peer));
            assert_eq!(gone.len(), 1, "no connection_closed for {peer}:\n{}", log());
        }
    });
}

#[test]
fn relay_keeps_answering_pings_of_a_peer_without_ping_service() {
    let relay = Relay::start(json!({ "mode": "relay" }));
    block_on(async {
        // Like a bot: no ping service, but its own pings to the relay every second.
        let bot = Client::start(ClientOptions {
            ping: false,
            serve: true,
        })
        .await
        .unwrap();
        bot.reserve(&relay.tcp_addr()).await.expect("bot reserves");
        let from = bot.seq().await.unwrap();

        // Its identify lists no ping service, so the relay never pings it back.
        let started = Instant::now();
        let mut rounds = 0;
        while started.elapsed() < Duration::from_secs(30) && rounds < 40 {
            let round_start = Instant::now();
            let rtt = bot
                .ping(relay.peer_id(), 1)
                .await
                .unwrap_or_else(|e| panic!("ping {rounds} after {:?}: {e}", started.elapsed()));
            assert!(rtt[0] < Duration::from_secs(2), "slow answer: {rtt:?}");
            rounds += 1;
            async_std::task::sleep(Duration::from_secs(1).saturating_sub(round_start.elapsed()))
                .await;
        }
        assert!(rounds >= 25, "only {rounds} pings in 30 s");

        assert!(bot.is_connected(relay.peer_id()).await.unwrap());
        let relay_peer = relay.peer_id();
        let lost: Vec<ClientEvent> = bot
            .events_since(from)
            .await
            .unwrap()
            .into_iter()
            .filter(
                |e| matches!(e, ClientEvent::ConnectionClosed { peer, .. } if *peer == relay_peer),
            )
            .collect();
        assert!(
            lost.is_empty(),
            "the bot lost its relay connection: {lost:?}"
        );
        for kind in [
            "connection_closed",
            "reservation_closed",
            "reservation_expired",
        ] {
            let found = relay.events_of(kind, is_peer(bot.peer_id()));
            assert!(found.is_empty(), "{kind} for the bot: {found:?}");
        }

        // Its reservation still works.
        let b = client().await;
        echo_via_relay(
            &relay,
            &b,
            bot.peer_id(),
            "the bot is still reachable through its reservation",
        )
        .await;
    });
}

#[test]
fn unlimited_circuit_carries_64_mib_uncut() {
    let relay = relay_with(json!({ "circuits": { "unlimited": true } }));
    block_on(async {
        let (a, b) = clients_in_circuit(&relay, &relay.tcp_addr()).await;
        let limit = outbound_limit(&b).await;
        assert!(
            limit.is_none(),
            "an unlimited relay must send no Limit: {limit:?}"
        );
        let done = b
            .echo(a.peer_id(), 64 * MIB, Duration::from_secs(120))
            .await
            .expect("64 MiB echo through an unlimited circuit");
        assert_eq!(done.bytes, 64 * MIB);
        let cut = relay.events_of("circuit_closed", |_| true);
        assert!(cut.is_empty(), "the circuit was closed: {cut:?}");
    });
}

#[test]
fn circuit_data_limit_cuts_a_transfer_over_it() {
    let relay = relay_with(json!({ "circuits": { "data": 2 * MIB } }));
    block_on(async {
        let (a, b) = clients_in_circuit(&relay, &relay.tcp_addr()).await;
        let Some(CircuitLimit { data, .. }) = outbound_limit(&b).await else {
            panic!("a data-limited relay must send a Limit");
        };
        assert_eq!(data, Some(2 * MIB));

        b.echo(a.peer_id(), 512 * 1024, Duration::from_secs(20))
            .await
            .expect("a transfer under the limit passes");
        let cut = b.echo(a.peer_id(), 4 * MIB, Duration::from_secs(20)).await;
        assert!(cut.is_err(), "4 MiB passed a 2 MiB limit: {cut:?}");

        let closed = circuit_closed(&relay, &a, &b);
        assert_eq!(field(&closed, "reason"), "data_limit", "{closed}");
        assert_eq!(closed["bytesSrcToDst"].as_u64(), Some(2 * MIB), "{closed}");
    });
}

/// Names of the async runtime's worker threads in `/proc/<pid>/task/*/comm`.
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the relay's task list")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with("async-std/runti"))
        .count()
}

#[test]
fn runtime_threads_sets_the_worker_count_and_the_relay_still_relays() {
    let relay = Relay::start(json!({ "mode": "relay", "runtime": { "threads": 1 } }));
    assert_eq!(worker_threads(relay.pid()), 1);
    block_on(async {
        let (a, b) = clients_in_circuit(&relay, &relay.tcp_addr()).await;
        let t = b
            .echo(a.peer_id(), 4 * MIB, Duration::from_secs(60))
            .await
            .expect("echo through a one-thread relay");
        assert_eq!(t.bytes, 4 * MIB);
    });
    let three = Relay::start(json!({ "mode": "relay", "runtime": { "threads": 3 } }));
    assert_eq!(worker_threads(three.pid()), 3);
    let started = three
        .wait_for_event("relay_started", |_| true, EVENT_TIMEOUT)
        .expect("relay_started");
    assert_eq!(started["runtimeThreads"].as_u64(), Some(3), "{started}");
}

/// By default one worker per CPU the relay may use, less the one its main
/// thread (the swarm) keeps busy, and never none.
#[test]
fn runtime_threads_default_leaves_a_cpu_to_the_swarm() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let want = cpus.saturating_sub(1).max(1);
    let relay = Relay::start(json!({ "mode": "relay" }));
    assert_eq!(worker_threads(relay.pid()), want, "{cpus} CPUs");
    let started = relay
        .wait_for_event("relay_started", |_| true, EVENT_TIMEOUT)
        .expect("relay_started");
    assert_eq!(
        started["runtimeThreads"].as_u64(),
        Some(want as u64),
        "{started}"
    );
}
