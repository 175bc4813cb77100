//! `bsv-p2p-nat-peer`: a rust-libp2p peer for the NAT lab (`tests/tests/nat_lab.rs`)
//! that upgrades relayed connections to direct ones by hole punching (DCUtR).
//!
//! It exists because the js bots cannot hole-punch TCP through a NAT: js-libp2p
//! dials from an ephemeral port, so the NAT never holds a mapping for the port
//! the bot listens on (see `tests/js/README.md`). rust-libp2p dials from its
//! listening port (port reuse), so the relay observes `<NAT address>/tcp/<listen
//! port>`, identify hands that back as an address candidate, and DCUtR's
//! simultaneous dials meet in both NATs' connection tracking.
//!
//! Started inside a network namespace (`ip netns exec`). Without `--dial` it
//! reserves on the relay and echoes what peers send; with `--dial PEER` it
//! reaches PEER through the relay, echoes `--bytes` over the relayed
//! connection, waits for the upgrade, closes the relayed connection and echoes
//! again over the direct one, then exits. One JSON line per event on stdout:
//! `started`, `listening`, `relay_identified`, `reserved`, `connection_open`
//! (`peer`, `addr`, `relayed`, `id`), `connection_close`, `echo` (`path`:
//! relayed|direct, `ok`, `bytes` or `error`), `upgrade` (`ok`, `id` or
//! `error`), `done` (dialer: `upgraded`, `relayed_echo`, `direct_echo`).
//!
//! Exit codes: 0 ran to the end (the dialer's outcome is in `done`), 1 could
//! not reach the relay, 2 bad arguments.

use std::future::Future;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Duration;

use argh::FromArgs;
use async_std::future::timeout;
use bsv_p2p_tests::probes::{self, ECHO};
use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{dcutr, identify, noise, relay, yamux, Multiaddr, PeerId, SwarmBuilder};
use serde_json::{json, Value};

/// Bound on reaching the relay, reserving, and each echo.
const STEP: Duration = Duration::from_secs(20);

/// A NAT lab peer: reserve and echo, or dial through the relay and hole-punch.
#[derive(FromArgs)]
struct Args {
    /// the relay's multiaddr, ending with /p2p/<relay peer id>
    #[argh(option)]
    relay: Multiaddr,
    /// TCP address to listen on (and dial from), e.g. /ip4/10.1.0.2/tcp/4011
    #[argh(option)]
    listen: Multiaddr,
    /// reach this peer through the relay, then hole-punch (else reserve and serve)
    #[argh(option)]
    dial: Option<PeerId>,
    /// bytes per echo (default 65536)
    #[argh(option, default = "65536")]
    bytes: u64,
    /// how long the dialer waits for the upgrade, in seconds (default 15)
    #[argh(option, default = "15")]
    upgrade_timeout: u64,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    relay_client: relay::client::Behaviour,
    identify: identify::Behaviour,
    dcutr: dcutr::Behaviour,
    stream: libp2p_stream::Behaviour,
}

fn emit(v: Value) {
    println!("{v}");
}

#[async_std::main]
async fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let Some(Protocol::P2p(relay_peer)) = args.relay.iter().last() else {
        eprintln!("--relay must end with /p2p/<relay peer id>");
        return ExitCode::from(2);
    };
    match run(args, relay_peer).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            emit(json!({ "event": "error", "error": e }));
            ExitCode::from(1)
        }
    }
}

/// An echo that finished: over which path, and how.
struct EchoDone {
    path: &'static str,
    result: Result<u64, String>,
}

/// The dialer's progress through relayed echo, upgrade, direct echo.
#[derive(Default)]
struct Attempt {
    relayed: Option<ConnectionId>,
    relayed_echo: Option<bool>,
    upgraded: Option<ConnectionId>,
    relayed_closed: bool,
    direct_echo: Option<bool>,
    upgrade_errors: Vec<String>,
}

async fn run(args: Args, relay_peer: PeerId) -> Result<(), String> {
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_async_std()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| format!("tcp transport: {e}"))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| format!("relay transport: {e}"))?
        .with_behaviour(|key, relay_client| Behaviour {
            relay_client,
            identify: identify::Behaviour::new(identify::Config::new(
                "/bsv-p2p-test/nat-peer/1.0.0".into(),
                key.public(),
            )),
            dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
            stream: libp2p_stream::Behaviour::new(),
        })
        .map_err(|e| format!("behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    emit(json!({ "event": "started", "peerId": swarm.local_peer_id().to_string() }));
    let mut control = swarm.behaviour().stream.new_control();
    let incoming = control
        .accept(ECHO)
        .map_err(|e| format!("echo protocol: {e}"))?;
    async_std::task::spawn(probes::serve_echo(incoming));

    // Listen first: port reuse binds later dials to the listening port, so
    // the relay connection already carries the NAT's mapping of that port.
    swarm
        .listen_on(args.listen.clone())
        .map_err(|e| format!("listen on {}: {e}", args.listen))?;
    let mut dialed_relay = false;

    // stdin EOF stops a serving peer (the test closes it, or dies).
    let (eof_tx, mut eof_rx) = mpsc::unbounded::<()>();
    std::thread::spawn(move || {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
        let _ = eof_tx.unbounded_send(());
    });

    let (echo_tx, mut echo_rx) = mpsc::unbounded::<EchoDone>();
    let spawn_echo = |path: &'static str, peer: PeerId, mut control: libp2p_stream::Control| {
        let tx = echo_tx.clone();
        let bytes = args.bytes;
        // Polled once here, so the stream is asked of a connection that
        // exists now: the relayed echo cannot wander onto a direct
        // connection made later.
        let mut opening = Box::pin(async move { control.open_stream(peer, ECHO).await });
        // That poll may already finish it (a refusal, say): its outcome is
        // kept, as a finished future must not be polled again.
        let first = opening
            .as_mut()
            .poll(&mut Context::from_waker(futures::task::noop_waker_ref()));
        async_std::task::spawn(async move {
            let result = timeout(STEP, async {
                let opened = match first {
                    Poll::Ready(opened) => opened,
                    Poll::Pending => opening.await,
                };
                let stream = opened.map_err(|e| format!("open echo stream: {e}"))?;
                probes::echo(stream, bytes).await.map(|t| t.bytes)
            })
            .await
            .unwrap_or_else(|_| Err(format!("echo timed out after {STEP:?}")));
            let _ = tx.unbounded_send(EchoDone { path, result });
        });
    };

    let relay_deadline = async_std::task::sleep(STEP).fuse();
    futures::pin_mut!(relay_deadline);
    let upgrade_deadline = futures::future::Fuse::terminated();
    futures::pin_mut!(upgrade_deadline);
    let mut identified = false;
    let mut attempt = Attempt::default();

    loop {
        futures::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    emit(json!({ "event": "listening", "addr": address.to_string() }));
                    if !dialed_relay {
                        dialed_relay = true;
                        swarm.dial(args.relay.clone()).map_err(|e| format!("dial {}: {e}", args.relay))?;
                    }
                }
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                    let addr = endpoint.get_remote_address();
                    emit(json!({
                        "event": "connection_open", "peer": peer_id.to_string(), "addr": addr.to_string(),
                        "relayed": endpoint.is_relayed(), "id": format!("{connection_id}"),
                        "direction": if endpoint.is_dialer() { "outbound" } else { "inbound" },
                    }));
                    if Some(peer_id) == args.dial && endpoint.is_relayed() && attempt.relayed.is_none() {
                        attempt.relayed = Some(connection_id);
                        spawn_echo("relayed", peer_id, control.clone());
                        upgrade_deadline.set(async_std::task::sleep(Duration::from_secs(args.upgrade_timeout)).fuse());
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, connection_id, cause, .. } => {
                    emit(json!({
                        "event": "connection_close", "peer": peer_id.to_string(), "id": format!("{connection_id}"),
                        "cause": cause.map(|c| c.to_string()),
                    }));
                    if peer_id == relay_peer && !identified {
                        return Err("the relay closed the connection before identify".to_string());
                    }
                    if Some(connection_id) == attempt.relayed {
                        attempt.relayed_closed = true;
                        if let (Some(peer), Some(_)) = (args.dial, attempt.upgraded) {
                            spawn_echo("direct", peer, control.clone());
                        }
                    }
                }
                SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                    emit(json!({ "event": "dial_error", "peer": peer_id.map(|p| p.to_string()), "error": error.to_string() }));
                    if peer_id == Some(relay_peer) && !identified {
                        return Err(format!("cannot dial the relay {}: {error}", args.relay));
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) if peer_id == relay_peer && !identified => {
                    identified = true;
                    emit(json!({ "event": "relay_identified", "observed": info.observed_addr.to_string() }));
                    match args.dial {
                        Some(peer) => {
                            let circuit = args.relay.clone().with(Protocol::P2pCircuit).with(Protocol::P2p(peer));
                            swarm.dial(circuit.clone()).map_err(|e| format!("dial {circuit}: {e}"))?;
                        }
                        None => {
                            let circuit = args.relay.clone().with(Protocol::P2pCircuit);
                            swarm.listen_on(circuit.clone()).map_err(|e| format!("listen on {circuit}: {e}"))?;
                        }
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted { .. })) => {
                    emit(json!({ "event": "reserved" }));
                }
                SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result })) => {
                    match result {
                        Ok(id) => {
                            emit(json!({ "event": "upgrade", "peer": remote_peer_id.to_string(), "ok": true, "id": format!("{id}") }));
                            if Some(remote_peer_id) == args.dial && attempt.upgraded.is_none() {
                                attempt.upgraded = Some(id);
                                if attempt.relayed_echo.is_some() {
                                    if let Some(r) = attempt.relayed { swarm.close_connection(r); }
                                }
                            }
                        }
                        Err(e) => {
                            emit(json!({ "event": "upgrade", "peer": remote_peer_id.to_string(), "ok": false, "error": e.to_string() }));
                            attempt.upgrade_errors.push(e.to_string());
                        }
                    }
                }
                _ => {}
            },
            done = echo_rx.select_next_some() => {
                let ok = done.result.is_ok();
                match &done.result {
                    Ok(bytes) => emit(json!({ "event": "echo", "path": done.path, "ok": true, "bytes": bytes })),
                    Err(e) => emit(json!({ "event": "echo", "path": done.path, "ok": false, "error": e })),
                }
                if done.path == "relayed" {
                    attempt.relayed_echo = Some(ok);
                    if attempt.upgraded.is_some() {
                        if let Some(r) = attempt.relayed { swarm.close_connection(r); }
                    }
                } else {
                    attempt.direct_echo = Some(ok);
                    break;
                }
            },
            _ = upgrade_deadline => {
                if attempt.upgraded.is_none() {
                    break;
                }
            },
            _ = relay_deadline => {
                if !identified {
                    return Err(format!("no identify from the relay {} within {STEP:?}", args.relay));
                }
            },
            _ = eof_rx.select_next_some() => break,
        }
    }
    if args.dial.is_some() {
        emit(json!({
            "event": "done",
            "upgraded": attempt.upgraded.is_some(),
            "relayed_echo": attempt.relayed_echo,
            "direct_echo": attempt.direct_echo,
            "relayed_closed": attempt.relayed_closed,
            "upgrade_errors": attempt.upgrade_errors,
        }));
    }
    Ok(())
}
