//! The running relay: builds the swarm from the validated config, serves until
//! a stop signal, then drains. Everything the relay observes is logged here as
//! a named event, the same names the control socket's journal will carry.

use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, Multiaddr, PeerId, Swarm, SwarmBuilder};

use crate::behaviour::{yamux_config, Behaviour, BehaviourEvent};
use crate::config::Config;
use crate::{hop, identity};

/// How long a connection may sit with nothing to keep it open (no
/// reservation, circuit or gossip) before the relay closes it.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(config: Config) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&config.data_dir)
        .map_err(|e| {
            format!(
                "dataDir {}: cannot create the data directory: {e}",
                config.data_dir.display()
            )
        })?;
    let (key, origin) = identity::load_or_create(&config.identity_file)?;
    let peer_id = key.public().to_peer_id();
    if let identity::Origin::Created = origin {
        log::info!(event = "identity_created", peerId = peer_id.to_string().as_str(), path = config.identity_file.display().to_string().as_str(); "created a new relay identity; give bots this peer ID");
    }

    let behaviour = Behaviour::new(&key, &config)?;
    let mut swarm = SwarmBuilder::with_existing_identity(key)
        .with_async_std()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux_config,
        )
        .map_err(|e| format!("cannot set up TCP with noise: {e}"))?
        .with_websocket(noise::Config::new, yamux_config)
        .await
        .map_err(|e| format!("cannot set up WebSocket: {e}"))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| format!("cannot set up the relay: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();

    let mut listeners = Vec::new();
    for (i, addr) in config.listen.iter().enumerate() {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| format!("listen[{i}] {addr}: cannot listen: {e}"))?;
        listeners.push(id);
    }
    for addr in &config.announce {
        swarm.add_external_address(addr.clone());
    }

    log::info!(
        event = "relay_started",
        peerId = peer_id.to_string().as_str(),
        version = env!("CARGO_PKG_VERSION"),
        config = config.source.as_str(),
        dataDir = config.data_dir.display().to_string().as_str(),
        hop = config.relay.hop,
        maxReservations = config.relay.max_reservations as u64,
        ttl = config.relay.reservation_ttl.as_secs();
        "relay started with peer ID {peer_id}"
    );
    for addr in &config.announce {
        let full = with_peer(addr, peer_id);
        log::info!(event = "relay_address", address = full.to_string().as_str(); "bots reach this relay at {full}");
    }
    if config.announce.is_empty() {
        log::warn!(event = "no_announce_addresses"; "\"announce\" is empty: reservations carry this host's interface addresses; set \"announce\" to the public address bots dial");
    }

    let (stop_tx, mut stop_rx) = mpsc::unbounded::<()>();
    install_signal_handler(stop_tx)?;

    let unspecified_listen = config.listen.iter().any(is_unspecified);
    let mut serving = Serving {
        peer_id,
        ttl_secs: config.relay.reservation_ttl.as_secs(),
        announce_configured: !config.announce.is_empty(),
        unspecified_listen,
    };

    loop {
        futures::select! {
            event = swarm.select_next_some() => serving.on_event(&mut swarm, event),
            _ = stop_rx.next() => break,
        }
    }

    drain(&mut swarm, &mut serving, listeners, config.shutdown_timeout).await;
    Ok(())
}

/// The relay's view of what it is serving, for the log.
struct Serving {
    peer_id: PeerId,
    ttl_secs: u64,
    announce_configured: bool,
    unspecified_listen: bool,
}

impl Serving {
    fn on_event(&mut self, swarm: &mut Swarm<Behaviour>, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = with_peer(&address, self.peer_id);
                log::info!(event = "listening", address = full.to_string().as_str(); "listening on {full}");
                // Without announce addresses, the addresses the relay binds are
                // what reservations carry; loopback ones only when bound on purpose.
                if !self.announce_configured && (!self.unspecified_listen || !is_loopback(&address))
                {
                    swarm.add_external_address(address.clone());
                    log::info!(event = "relay_address", address = full.to_string().as_str(); "bots reach this relay at {full}");
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                log::warn!(event = "listen_address_expired", address = address.to_string().as_str(); "");
                if !self.announce_configured {
                    swarm.remove_external_address(&address);
                }
            }
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                let addrs: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
                match reason {
                    Ok(()) => {
                        log::info!(event = "listener_closed", addresses = addrs.join(" ").as_str(); "")
                    }
                    Err(e) => {
                        log::error!(event = "listener_closed", addresses = addrs.join(" ").as_str(), error = e.to_string().as_str(); "listener failed")
                    }
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                log::error!(event = "error", kind = "listener", error = error.to_string().as_str(); "");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                let (direction, addr) = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => ("outbound", address),
                    ConnectedPoint::Listener { send_back_addr, .. } => ("inbound", send_back_addr),
                };
                log::info!(
                    event = "connection_opened",
                    peerId = peer_id.to_string().as_str(),
                    direction = direction,
                    transport = transport_of(addr),
                    address = addr.to_string().as_str(),
                    connections = u64::from(num_established.get());
                    ""
                );
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                cause,
                ..
            } => {
                let cause = cause
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "closed".into());
                log::info!(
                    event = "connection_closed",
                    peerId = peer_id.to_string().as_str(),
                    transport = transport_of(endpoint.get_remote_address()),
                    remaining = u64::from(num_established),
                    cause = cause.as_str();
                    ""
                );
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                log::debug!(event = "error", kind = "incoming_connection", address = send_back_addr.to_string().as_str(), error = error.to_string().as_str(); "");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Hop(e)) => self.on_hop_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => {
                log::info!(event = "connection_unresponsive", peerId = e.peer.to_string().as_str(); "peer stopped answering pings; closing its connection");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => {
                log::debug!(event = "peer_identified", peerId = peer_id.to_string().as_str(), agent = info.agent_version.as_str(); "");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(
                libp2p::gossipsub::Event::Subscribed { peer_id, topic },
            )) => {
                log::debug!(event = "gossip_subscribed", peerId = peer_id.to_string().as_str(), topic = topic.as_str(); "");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(
                libp2p::gossipsub::Event::SlowPeer {
                    peer_id,
                    failed_messages,
                },
            )) => {
                log::warn!(event = "gossip_slow_peer", peerId = peer_id.to_string().as_str(), dropped = failed_messages.total() as u64; "");
            }
            _ => {}
        }
    }

    fn on_hop_event(&mut self, event: hop::Event) {
        use hop::Event::*;
        match event {
            ReservationCreated {
                peer,
                renewed,
                expires,
            } => {
                let kind = if renewed {
                    "reservation_renewed"
                } else {
                    "reservation_created"
                };
                log::info!(event = kind, peerId = peer.to_string().as_str(), ttl = self.ttl_secs, expires = expires; "");
            }
            ReservationDenied { peer, refusal } => {
                log::info!(event = "reservation_denied", peerId = peer.to_string().as_str(), reason = refusal.as_str(), status = refusal.status().as_str(); "");
            }
            ReservationEnded { peer, reason } => {
                let kind = if reason == "expired" {
                    "reservation_expired"
                } else {
                    "reservation_closed"
                };
                log::info!(event = kind, peerId = peer.to_string().as_str(), reason = reason; "");
            }
            CircuitOpened { id, src, dst } => {
                log::info!(event = "circuit_opened", circuitId = id, src = src.to_string().as_str(), dst = dst.to_string().as_str(); "");
            }
            CircuitDenied { src, dst, refusal } => {
                let dst = dst.map(|d| d.to_string()).unwrap_or_default();
                log::info!(event = "circuit_denied", src = src.to_string().as_str(), dst = dst.as_str(), reason = refusal.as_str(), status = refusal.status().as_str(); "");
            }
            CircuitClosed(c) => {
                log::info!(
                    event = "circuit_closed",
                    circuitId = c.id,
                    src = c.src.to_string().as_str(),
                    dst = c.dst.to_string().as_str(),
                    bytesSrcToDst = c.bytes_src_to_dst,
                    bytesDstToSrc = c.bytes_dst_to_src,
                    durationMs = c.duration.as_millis() as u64,
                    reason = c.reason;
                    ""
                );
            }
            RequestDenied { peer, refusal } => {
                log::info!(event = "request_denied", peerId = peer.to_string().as_str(), reason = refusal.as_str(), status = refusal.status().as_str(); "");
            }
        }
    }
}

/// Stops listening, ends every circuit, closes every connection and waits
/// (bounded by `shutdown.timeout`) for all of it to finish, logging each
/// circuit, reservation and connection it ends like any other.
async fn drain(
    swarm: &mut Swarm<Behaviour>,
    serving: &mut Serving,
    listeners: Vec<libp2p::core::transport::ListenerId>,
    timeout: Duration,
) {
    let started = Instant::now();
    let connections = |swarm: &Swarm<Behaviour>| {
        u64::from(swarm.network_info().connection_counters().num_connections())
    };
    let circuits = |swarm: &Swarm<Behaviour>| {
        swarm
            .behaviour()
            .hop
            .as_ref()
            .map_or(0, |h| h.circuits_in_progress())
    };
    log::info!(event = "relay_stopping", connections = connections(swarm), circuits = circuits(swarm) as u64, timeoutMs = timeout.as_millis() as u64; "stopping: closing listeners, circuits and connections");
    for id in listeners {
        swarm.remove_listener(id);
    }
    if let Some(hop) = swarm.behaviour_mut().hop.as_mut() {
        hop.stop_circuits();
    }
    let deadline = futures_timer::Delay::new(timeout).fuse();
    futures::pin_mut!(deadline);
    // Circuits first, so they end as `shutdown` rather than as a reset when
    // their connections go.
    let mut disconnected = false;
    loop {
        if circuits(swarm) == 0 && !disconnected {
            let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
            for peer in peers {
                let _ = swarm.disconnect_peer_id(peer);
            }
            disconnected = true;
        }
        if disconnected && connections(swarm) == 0 {
            break;
        }
        futures::select! {
            event = swarm.select_next_some() => serving.on_event(swarm, event),
            _ = deadline => {
                log::warn!(event = "relay_stopped", remaining = connections(swarm), circuits = circuits(swarm) as u64; "shutdown timeout reached with connections still closing");
                return;
            }
        }
    }
    // Behaviours queue their last events (reservations ended by the
    // disconnects) as connections close; hand those out before stopping.
    while let Some(event) = swarm.select_next_some().now_or_never() {
        serving.on_event(swarm, event);
    }
    log::info!(event = "relay_stopped", elapsedMs = started.elapsed().as_millis() as u64; "all connections closed");
}

/// SIGINT/SIGTERM start a graceful stop; a second one exits at once.
fn install_signal_handler(stop: mpsc::UnboundedSender<()>) -> Result<(), String> {
    static SIGNALS: AtomicUsize = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = stop.unbounded_send(());
        } else {
            std::process::exit(130);
        }
    })
    .map_err(|e| format!("cannot install the signal handler: {e}"))
}

fn with_peer(addr: &Multiaddr, peer: PeerId) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.clone()
    } else {
        addr.clone().with(Protocol::P2p(peer))
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    ip_of(addr).is_some_and(|ip| ip.is_unspecified())
}

fn is_loopback(addr: &Multiaddr) -> bool {
    ip_of(addr).is_some_and(|ip| ip.is_loopback())
}

fn transport_of(addr: &Multiaddr) -> &'static str {
    if addr
        .iter()
        .any(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_)))
    {
        "websocket"
    } else {
        "tcp"
    }
}
