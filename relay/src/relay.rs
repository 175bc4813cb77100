//! The running relay: builds the swarm from the validated config, serves until
//! a stop signal, then drains. Everything the relay observes is logged here as
//! a named event, the same names the control socket's journal will carry.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::{FutureExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, Multiaddr, PeerId, Swarm, SwarmBuilder};

use bsv_p2p_proto as proto;

use crate::access::{self, Access, Entry, Notice, Subject};
use crate::behaviour::{websocket_transport, yamux_config, Behaviour, BehaviourEvent};
use crate::config::RelayConfig;
use crate::journal::Journal;
use crate::ledger::Ledger;
use crate::{control, data_dir, hop, identity, snapshot};

/// How long a connection may sit with nothing to keep it open (no
/// reservation, circuit or gossip) before the relay closes it.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(config: RelayConfig) -> Result<(), String> {
    if let Some(warning) = data_dir::prepare(&config.data_dir)? {
        log::warn!(event = "data_dir_permissions", path = config.data_dir.display().to_string().as_str(); "{warning}");
    }
    let (key, origin) = identity::load_or_create(&config.identity_file)?;
    let peer_id = key.public().to_peer_id();
    let identity = key
        .to_protobuf_encoding()
        .map_err(|e| format!("cannot encode the relay's identity: {e}"))?;
    if let identity::Origin::Created = origin {
        log::info!(event = "identity_created", peerId = peer_id.to_string().as_str(), path = config.identity_file.display().to_string().as_str(); "created a new relay identity; give bots this peer ID");
    }

    for warning in &config.warnings {
        log::warn!(event = "config_warning", config = config.source.as_str(); "{warning}");
    }
    let (store, stored, damaged) = access::store::Store::open(&config.data_dir.join("acl"))?;
    for warning in &damaged {
        log::warn!(event = "acl_store_damaged"; "{warning}");
    }
    let (access, mut notices) = Access::new(config.access.clone(), stored);
    if access.private() {
        log::info!(event = "relay_private", allowlisted = config.access.allow.len() as u64; "the relay is private: only allowlisted peers may reserve or open circuits");
    }

    let behaviour = Behaviour::new(&key, &config, access.clone())?;
    let transports = SwarmBuilder::with_existing_identity(key)
        .with_async_std()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux_config,
        )
        .map_err(|e| format!("cannot set up TCP with noise: {e}"))?
        .with_other_transport(|key| websocket_transport(key, config.websocket_max_message_size))
        .map_err(|e| format!("cannot set up WebSocket: {e}"))?;
    let swarm_config =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    // The relay dials only federated relays (and AutoNAT dial-backs to
    // observed IP addresses): the system resolver is read only when a
    // federated relay is named by DNS.
    let mut swarm = if config
        .federation
        .peers
        .iter()
        .any(|p| p.addrs.iter().any(is_dns))
    {
        transports
            .with_dns()
            .map_err(|e| {
                format!("federation.peers names relays by DNS, but the system resolver configuration (/etc/resolv.conf) cannot be read: {e}")
            })?
            .with_behaviour(|_| behaviour)
            .map_err(|e| format!("cannot set up the relay: {e}"))?
            .with_swarm_config(swarm_config)
            .build()
    } else {
        transports
            .with_behaviour(|_| behaviour)
            .map_err(|e| format!("cannot set up the relay: {e}"))?
            .with_swarm_config(swarm_config)
            .build()
    };

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
        hop = config.relay.enabled,
        maxReservations = config.relay.max_reservations as u64,
        ttl = config.relay.reservation_ttl.as_secs(),
        runtimeThreads = config.runtime_workers() as u64;
        "relay started with peer ID {peer_id}"
    );
    for addr in &config.announce {
        let full = with_peer(addr, peer_id);
        log::info!(event = "relay_address", address = full.to_string().as_str(); "bots reach this relay at {full}");
    }
    if config.announce.is_empty() {
        log::warn!(event = "no_announce_addresses"; "\"announce\" is empty: reservations carry this host's interface addresses; set \"announce\" to the public address bots dial");
    }

    let (mut stop_rx, mut hangups) = install_signal_handlers()?;

    let journal = Arc::new(Journal::open(
        &config.data_dir.join("journal"),
        config.journal_max_events,
        config.journal_max_bytes,
    )?);
    let feed = proto::Feed::new(journal.clone());
    let mut socket_config = proto::ServerConfig::new(
        config.control_socket.clone(),
        format!("bsv-p2p-relay/{}", env!("CARGO_PKG_VERSION")),
    );
    socket_config.max_clients = config.control_max_clients;
    socket_config.idle_timeout = config.control_idle_timeout;
    if let Some(uids) = &config.control_admin_uids {
        socket_config.admins.uids = uids.clone();
    }
    if let Some(gids) = &config.control_admin_gids {
        socket_config.admins.gids = gids.clone();
    }
    let (listener, mut commands) = proto::Listener::bind(socket_config, feed.clone())
        .await
        .map_err(|e| format!("control.socket: {e}"))?;
    let (socket_stop, socket_shutdown) = proto::Shutdown::new();
    let socket_task = async_std::task::spawn(listener.run(socket_shutdown));
    log::info!(event = "control_socket", path = config.control_socket.display().to_string().as_str(), nextSeq = journal.next_seq(); "control socket ready");

    let unspecified_listen = config.listen.iter().any(is_unspecified);
    let mut serving = Serving {
        peer_id,
        ttl_secs: config.relay.reservation_ttl.as_secs(),
        announce_configured: !config.announce.is_empty(),
        unspecified_listen,
        ledger: Ledger::default(),
        listen: Vec::new(),
        feed,
        journal,
        started: SystemTime::now(),
        identity,
        forbidden: snapshot::Forbidden {
            data_dir: config.data_dir.clone(),
            files: vec![config.identity_file.clone(), config.control_socket.clone()],
        },
        config: config.clone(),
        stop_requested: None,
        access,
        store,
        relay_addrs: RelayAddrs::default(),
    };

    loop {
        futures::select! {
            event = swarm.select_next_some() => serving.on_event(&mut swarm, event),
            command = commands.next() => match command {
                Some(command) => serving.on_command(&mut swarm, command),
                None => break,
            },
            notice = notices.next() => if let Some(n) = notice {
                serving.on_notice(&mut swarm, n);
            },
            _ = hangups.next() => {
                log::info!(event = "reload_requested", signal = "SIGHUP"; "reloading the config file on SIGHUP");
                serving.reload(&mut swarm);
            }
            _ = stop_rx.next() => break,
        }
        if serving.stop_requested.is_some() {
            break;
        }
    }

    let timeout = serving
        .stop_requested
        .unwrap_or(serving.config.shutdown_timeout);
    drain(&mut swarm, &mut serving, listeners, timeout).await;
    if let Err(e) = serving.journal.flush() {
        log::error!(event = "error", kind = "journal_flush", error = e.as_str(); "");
    }
    socket_stop.fire();
    let _ = async_std::future::timeout(Duration::from_secs(2), socket_task).await;
    Ok(())
}

/// The relay's view of what it is serving: for the log, the journal and the
/// control socket.
struct Serving {
    peer_id: PeerId,
    ttl_secs: u64,
    announce_configured: bool,
    unspecified_listen: bool,
    ledger: Ledger,
    /// Addresses actually bound.
    listen: Vec<Multiaddr>,
    feed: proto::Feed,
    journal: Arc<Journal>,
    started: SystemTime,
    config: RelayConfig,
    /// The private key's encoding, for snapshots.
    identity: Vec<u8>,
    /// Where a snapshot may never be written.
    forbidden: snapshot::Forbidden,
    /// Set by the `shutdown` command: stop, draining for this long.
    stop_requested: Option<Duration>,
    /// The allow and deny lists and bans, shared with the behaviours.
    access: Access,
    /// Where `acl.add` entries are kept.
    store: access::store::Store,
    relay_addrs: RelayAddrs,
}

/// The relay's reservation addresses as text, for reservation events; made
/// again only when the external addresses change.
#[derive(Default)]
struct RelayAddrs {
    external: Vec<Multiaddr>,
    text: Vec<String>,
}

impl RelayAddrs {
    fn text(&mut self, hop: Option<&hop::Behaviour>) -> &[String] {
        let external = hop.map_or(&[][..], |h| h.external_addrs());
        if self.external != external {
            self.external = external.to_vec();
            self.text = hop
                .map(|h| h.relay_addrs().iter().map(Multiaddr::to_string).collect())
                .unwrap_or_default();
        }
        &self.text
    }
}

impl Serving {
    fn publish(&self, kind: proto::EventKind) {
        if let Err(e) = self.feed.publish(kind) {
            log::error!(event = "error", kind = "journal", error = e.as_str(); "event not journaled");
        }
    }

    fn context(&self) -> control::Context<'_> {
        control::Context {
            peer_id: self.peer_id,
            started: self.started,
            config: &self.config,
            ledger: &self.ledger,
            listen: &self.listen,
            journal: &self.journal,
        }
    }

    fn on_command(&mut self, swarm: &mut Swarm<Behaviour>, command: proto::Command) {
        use proto::Command::*;
        match command {
            Status(r) => r.ok(control::status(swarm, &self.context())),
            Stats(r) => r.ok(control::stats(swarm, &self.context())),
            Peers(r) => r.ok(control::peers(swarm, &self.context())),
            Reservations(r) => r.ok(control::reservations(swarm)),
            Circuits(r) => r.ok(control::circuits(swarm)),
            Snapshot(p, r) => {
                let identity = p
                    .include_identity
                    .unwrap_or(true)
                    .then_some(&self.identity[..]);
                match control::snapshot_document(swarm, &self.context(), identity) {
                    Ok(doc) => {
                        async_std::task::spawn(write_snapshot(
                            p.path,
                            doc,
                            self.forbidden.clone(),
                            r,
                        ));
                    }
                    Err(e) => r.err(proto::RpcError::new(
                        proto::jsonrpc::code::OPERATION_FAILED,
                        e,
                    )),
                }
            }
            Reload(r) => r.ok(self.reload(swarm)),
            Shutdown(p, r) => {
                let timeout = if p.drain {
                    p.timeout_ms
                        .map_or(self.config.shutdown_timeout, Duration::from_millis)
                } else {
                    Duration::ZERO
                };
                log::info!(event = "shutdown_requested", drain = p.drain, timeoutMs = timeout.as_millis() as u64; "shutdown requested over the control socket");
                self.stop_requested = Some(timeout);
                r.ok(proto::ShutdownResult {
                    draining: p.drain,
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            AclList(r) => r.ok(proto::AclListResult {
                entries: self.access.entries().iter().map(Entry::to_proto).collect(),
                private: self.access.private(),
            }),
            AclAdd(p, r) => self.acl_add(swarm, p, r),
            AclRemove(p, r) => self.acl_remove(swarm, p, r),
        }
    }

    /// Adds an entry, applies it at once (a deny closes the subject's
    /// connections; an allow may make the relay private, dropping the
    /// reservations and circuits of everyone not allowed), and answers once
    /// it is stored.
    fn acl_add(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        p: proto::AclAddParams,
        reply: proto::Reply<proto::AclAddResult>,
    ) {
        let subject = match acl_subject(p.peer_id.as_deref(), p.cidr.as_deref()) {
            Ok(s) => s,
            Err(e) => return reply.err(e),
        };
        let now = SystemTime::now();
        let entry = Entry {
            subject,
            list: p.list,
            note: p.note,
            added_at: now,
            expires_at: p.for_ms.map(|ms| now + Duration::from_millis(ms)),
            origin: proto::AclOrigin::Control,
        };
        let added = match self.access.add(entry.clone()) {
            Ok(a) => a,
            Err(e) => {
                return reply.err(proto::RpcError::new(
                    proto::jsonrpc::code::OPERATION_FAILED,
                    e,
                ))
            }
        };
        let disconnected = self.enforce(swarm);
        let until = entry.expires_at.map(proto::Timestamp);
        let note = entry.note.clone().unwrap_or_else(|| "acl deny".into());
        log::info!(event = "acl_added", list = entry.list.as_str(), subject = subject.to_string().as_str(), disconnected = disconnected, until = until.map(|t| t.to_string()).unwrap_or_default().as_str(); "");
        if entry.list == proto::AccessList::Deny {
            self.publish(match subject {
                Subject::Peer(peer) => proto::EventKind::PeerBanned {
                    peer_id: peer.to_string(),
                    reason: note,
                    until,
                },
                Subject::Net(cidr) => proto::EventKind::AddressBanned {
                    cidr: cidr.to_string(),
                    reason: note,
                    until,
                },
            });
        }
        let result = proto::AclAddResult {
            added,
            entry: entry.to_proto(),
            disconnected,
        };
        self.store.put(entry, move |stored| match stored {
            Ok(()) => reply.ok(result),
            Err(e) => reply.err(proto::RpcError::new(
                proto::jsonrpc::code::OPERATION_FAILED,
                format!("{e}: the entry is in force until the relay restarts, but not kept"),
            )),
        });
    }

    fn acl_remove(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        p: proto::AclRemoveParams,
        reply: proto::Reply<proto::AclRemoveResult>,
    ) {
        let subject = match acl_subject(p.peer_id.as_deref(), p.cidr.as_deref()) {
            Ok(s) => s,
            Err(e) => return reply.err(e),
        };
        let removed = self.access.remove(p.list, subject);
        if !removed {
            return reply.ok(proto::AclRemoveResult { removed });
        }
        // Removing the last allow entry opens the relay; removing one of
        // several may drop who only it allowed.
        let disconnected = self.enforce(swarm);
        log::info!(event = "acl_removed", list = p.list.as_str(), subject = subject.to_string().as_str(), disconnected = disconnected; "");
        self.store
            .remove(p.list, subject, move |stored| match stored {
                Ok(()) => reply.ok(proto::AclRemoveResult { removed }),
                Err(e) => reply.err(proto::RpcError::new(
                    proto::jsonrpc::code::OPERATION_FAILED,
                    format!(
                        "{e}: the entry is lifted until the relay restarts, but comes back then"
                    ),
                )),
            });
    }

    /// Applies the lists to what is open: closes every connection of a peer
    /// or address now denied, and every connection holding a reservation or
    /// a circuit end of a peer no longer allowed to (a private relay).
    /// Returns how many connections it closed.
    fn enforce(&mut self, swarm: &mut Swarm<Behaviour>) -> u64 {
        let mut close: Vec<libp2p::swarm::ConnectionId> = self
            .ledger
            .connections()
            .filter(|(_, c)| self.access.check_peer(&c.peer, ip_of(&c.remote)).is_err())
            .map(|(id, _)| id)
            .collect();
        if let Some(hop) = swarm.behaviour().hop.as_ref() {
            for (peer, conn, ip) in hop.holders() {
                if self.access.check_hop(&peer, ip).is_err() && !close.contains(&conn) {
                    close.push(conn);
                }
            }
        }
        let mut closed = 0;
        for id in close {
            if swarm.close_connection(id) {
                closed += 1;
            }
        }
        closed
    }

    fn on_notice(&mut self, swarm: &mut Swarm<Behaviour>, notice: Notice) {
        match notice {
            Notice::AutoBanned { entry, refusals } => {
                let closed = self.enforce(swarm);
                let until = entry.expires_at.map(proto::Timestamp);
                log::warn!(event = "address_banned", address = entry.subject.to_string().as_str(), refusals = u64::from(refusals), until = until.map(|t| t.to_string()).unwrap_or_default().as_str(), disconnected = closed; "address banned for going over the limits again and again");
                self.publish(proto::EventKind::AddressBanned {
                    cidr: entry.subject.to_string(),
                    reason: entry.note.unwrap_or_default(),
                    until,
                });
            }
            Notice::Limited(access::Limited::Peer(peer, what)) => {
                log::info!(event = "rate_limited", peerId = peer.to_string().as_str(), what = what; "");
                self.publish(proto::EventKind::RateLimited {
                    peer_id: peer.to_string(),
                    what: what.into(),
                });
            }
            Notice::Limited(access::Limited::Address(ip, what)) => {
                log::info!(event = "address_rate_limited", address = ip.to_string().as_str(), what = what; "");
                self.publish(proto::EventKind::AddressRateLimited {
                    address: ip.to_string(),
                    what: what.into(),
                });
            }
            Notice::Expired(entry) => {
                log::info!(event = "ban_ended", subject = entry.subject.to_string().as_str(); "");
                let subject = entry.subject.to_string();
                self.store.remove(entry.list, entry.subject, move |r| {
                    if let Err(e) = r {
                        log::warn!(event = "error", kind = "acl_store", subject = subject.as_str(), error = e.as_str(); "an ended ban could not be deleted; it is ignored when read back");
                    }
                });
            }
        }
    }

    /// Re-reads the config file: the log level applies at once; every other
    /// changed key is reported as needing a restart, and nothing changes if
    /// the file is now invalid.
    fn reload(&mut self, swarm: &mut Swarm<Behaviour>) -> proto::ReloadResult {
        let mut result = proto::ReloadResult {
            applied: Vec::new(),
            restart_required: Vec::new(),
            errors: Vec::new(),
        };
        let path = (self.config.source != crate::config::EMBEDDED_SOURCE)
            .then(|| PathBuf::from(&self.config.source));
        let new = match crate::config::load(path.as_deref(), &self.config.overrides) {
            Ok(c) => c,
            Err(e) => {
                result.errors.push(e.to_string());
                log::warn!(event = "config_reload_failed", error = e.to_string().as_str(); "config not reloaded");
                return result;
            }
        };
        if new.log_level != self.config.log_level {
            log::set_max_level(new.log_level);
            self.config.log_level = new.log_level;
            result.applied.push("log.level".into());
        }
        if new.shutdown_timeout != self.config.shutdown_timeout {
            self.config.shutdown_timeout = new.shutdown_timeout;
            result.applied.push("shutdown.timeout".into());
        }
        // Caps per address apply to connections from now on.
        let (old, fresh) = (
            crate::admission::AdmissionConfig::of(&self.config, self.peer_id),
            crate::admission::AdmissionConfig::of(&new, self.peer_id),
        );
        if old != fresh {
            swarm.behaviour_mut().admission.set_config(fresh.clone());
            for (key, changed) in [
                (
                    "connectionManager.maxConnectionsPerIp",
                    old.max_per_ip != fresh.max_per_ip,
                ),
                (
                    "connectionManager.maxPendingIncomingPerIp",
                    old.max_pending_per_ip != fresh.max_pending_per_ip,
                ),
                (
                    "relay.rateLimit.connectionsPerMinute",
                    old.connections_per_minute != fresh.connections_per_minute,
                ),
            ] {
                if changed {
                    result.applied.push(key.into());
                }
            }
            self.config.max_connections_per_ip = new.max_connections_per_ip;
            self.config.max_pending_incoming_per_ip = new.max_pending_incoming_per_ip;
            self.config.connections_per_minute = new.connections_per_minute;
        }
        for warning in &new.warnings {
            log::warn!(event = "config_warning", config = new.source.as_str(); "{warning}");
        }
        // The lists apply at once, to who is connected too.
        if new.access != self.config.access {
            for (key, changed) in [
                (
                    "relay.allowlist",
                    new.access.allow != self.config.access.allow,
                ),
                (
                    "relay.blocklist",
                    new.access.deny != self.config.access.deny,
                ),
                (
                    "relay.autoBan",
                    new.access.auto_ban != self.config.access.auto_ban,
                ),
            ] {
                if changed {
                    result.applied.push(key.into());
                }
            }
            self.access.set_config(new.access.clone());
            self.config.access = new.access.clone();
            let closed = self.enforce(swarm);
            if closed > 0 {
                log::info!(event = "acl_enforced", disconnected = closed; "closed connections the reloaded lists refuse");
            }
        }
        // The relay's caps, limits and timeouts apply to requests from now
        // on; switching the hop service on or off needs a restart.
        if new.relay != self.config.relay && new.relay.enabled == self.config.relay.enabled {
            if let Some(hop) = swarm.behaviour_mut().hop.as_mut() {
                hop.set_config(new.relay.clone());
            }
            self.config.relay = new.relay.clone();
            result.applied.push("relay".into());
        }
        result.restart_required = crate::config::differences(&self.config, &new)
            .into_iter()
            .map(str::to_string)
            .collect();
        log::info!(event = "config_reloaded", applied = result.applied.join(",").as_str(), restartRequired = result.restart_required.join(",").as_str(); "");
        self.publish(proto::EventKind::ConfigReloaded {
            applied: result.applied.clone(),
            restart_required: result.restart_required.clone(),
        });
        result
    }

    fn on_event(&mut self, swarm: &mut Swarm<Behaviour>, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = with_peer(&address, self.peer_id);
                self.listen.push(address.clone());
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
                self.listen.retain(|a| *a != address);
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
                self.ledger.error("listener");
                log::error!(event = "error", kind = "listener", error = error.to_string().as_str(); "");
                self.publish(proto::EventKind::Error {
                    error_kind: "listener".into(),
                    message: error.to_string(),
                });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let c = self.ledger.opened(connection_id, peer_id, &endpoint);
                log::info!(
                    event = "connection_opened",
                    peerId = &*c.peer_name,
                    direction = c.direction.as_str(),
                    transport = proto::Transport::from(c.transport).as_str(),
                    address = c.remote.to_string().as_str(),
                    connections = u64::from(num_established.get());
                    ""
                );
                let kind = control::connection_opened(c);
                self.publish(kind);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                cause,
                ..
            } => {
                let cause = cause.map(|c| c.to_string());
                log::info!(
                    event = "connection_closed",
                    peerId = &*self.ledger.name(&peer_id),
                    transport = transport_of(endpoint.get_remote_address()),
                    remaining = u64::from(num_established),
                    cause = cause.as_deref().unwrap_or("closed");
                    ""
                );
                if let Some(c) = self.ledger.closed(connection_id, num_established) {
                    self.publish(control::connection_closed(&c, cause));
                }
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                self.ledger.error("incoming_connection");
                log::debug!(event = "error", kind = "incoming_connection", address = send_back_addr.to_string().as_str(), error = error.to_string().as_str(); "");
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                self.ledger.error("outgoing_connection");
                log::debug!(event = "error", kind = "outgoing_connection", error = error.to_string().as_str(); "");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Hop(e)) => {
                let addrs = self.relay_addrs.text(swarm.behaviour().hop.as_ref());
                let kind = control::hop_event(&e, addrs, &self.ledger);
                self.publish(kind);
                self.on_hop_event(e)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => {
                log::info!(event = "connection_unresponsive", peerId = e.peer.to_string().as_str(); "peer stopped answering pings; closing its connection");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => {
                log::debug!(event = "peer_identified", peerId = peer_id.to_string().as_str(), agent = info.agent_version.as_str(); "");
                self.ledger.identified(peer_id, info.agent_version);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(
                libp2p::gossipsub::Event::Subscribed { peer_id, topic },
            )) => {
                log::debug!(event = "gossip_subscribed", peerId = peer_id.to_string().as_str(), topic = topic.as_str(); "");
                swarm
                    .behaviour_mut()
                    .federation
                    .on_subscription(&peer_id, &topic, true);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(
                libp2p::gossipsub::Event::Unsubscribed { peer_id, topic },
            )) => {
                swarm
                    .behaviour_mut()
                    .federation
                    .on_subscription(&peer_id, &topic, false);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(
                libp2p::gossipsub::Event::Message {
                    propagation_source,
                    message,
                    ..
                },
            )) => {
                swarm.behaviour_mut().federation.on_message(
                    &propagation_source,
                    message.source.as_ref(),
                    &message.topic,
                );
            }
            SwarmEvent::Behaviour(BehaviourEvent::Federation(e)) => self.on_federation_event(e),
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

    fn on_federation_event(&mut self, event: crate::federation::Event) {
        use crate::federation::Event::*;
        match event {
            Up { peer, remote, down } => {
                let down_ms = down.map(|d| d.as_millis() as u64);
                log::info!(event = "federation_peer_up", peerId = peer.to_string().as_str(), address = remote.to_string().as_str(), downMs = down_ms.unwrap_or(0); "federated relay connected");
                self.publish(proto::EventKind::FederationPeerUp {
                    peer_id: peer.to_string(),
                    remote_addr: remote.to_string(),
                    down_ms,
                });
            }
            Down { peer, cause, up } => {
                log::warn!(event = "federation_peer_down", peerId = peer.to_string().as_str(), cause = cause.as_str(), upMs = up.as_millis() as u64; "federated relay lost; redialling");
                self.publish(proto::EventKind::FederationPeerDown {
                    peer_id: peer.to_string(),
                    cause,
                    up_ms: up.as_millis() as u64,
                });
            }
            DialFailed {
                peer,
                error,
                retry_in,
            } => {
                log::info!(event = "federation_dial_failed", peerId = peer.to_string().as_str(), error = error.as_str(), retryInMs = retry_in.as_millis() as u64; "");
            }
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
                log::info!(event = kind, peerId = &*self.ledger.name(&peer), ttl = self.ttl_secs, expires = expires; "");
            }
            ReservationDenied { peer, refusal } => {
                let reason = proto::DenialReason::from(refusal);
                log::info!(event = "reservation_denied", peerId = &*self.ledger.name(&peer), reason = reason.as_str(), status = refusal.status().as_str(); "");
            }
            ReservationExpired { peer } => {
                log::info!(event = "reservation_expired", peerId = &*self.ledger.name(&peer), reason = "expired"; "");
            }
            ReservationClosed { peer } => {
                log::info!(event = "reservation_closed", peerId = &*self.ledger.name(&peer), reason = "disconnected"; "");
            }
            CircuitOpened { id, src, dst, .. } => {
                log::info!(event = "circuit_opened", circuitId = id, src = &*self.ledger.name(&src), dst = &*self.ledger.name(&dst); "");
            }
            CircuitDenied { src, dst, refusal } => {
                let dst = dst.map(|d| d.to_string()).unwrap_or_default();
                let reason = proto::DenialReason::from(refusal);
                log::info!(event = "circuit_denied", src = src.to_string().as_str(), dst = dst.as_str(), reason = reason.as_str(), status = refusal.status().as_str(); "");
            }
            CircuitClosed(c) => {
                log::info!(
                    event = "circuit_closed",
                    circuitId = c.id,
                    src = &*self.ledger.name(&c.src),
                    dst = &*self.ledger.name(&c.dst),
                    bytesSrcToDst = c.bytes_src_to_dst,
                    bytesDstToSrc = c.bytes_dst_to_src,
                    durationMs = c.duration.as_millis() as u64,
                    reason = proto::CircuitEnd::from(c.reason).as_str();
                    ""
                );
            }
            RequestDenied { peer, refusal } => {
                let reason = proto::DenialReason::from(refusal);
                log::info!(event = "request_denied", peerId = peer.to_string().as_str(), reason = reason.as_str(), status = refusal.status().as_str(); "");
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

/// Writes a snapshot on a blocking thread and answers the client when done.
async fn write_snapshot(
    path: PathBuf,
    doc: control::SnapshotDocument,
    forbidden: snapshot::Forbidden,
    reply: proto::Reply<proto::SnapshotResult>,
) {
    let written =
        async_std::task::spawn_blocking(move || control::write_snapshot(&path, doc, &forbidden))
            .await;
    match written {
        Ok(result) => {
            log::info!(event = "snapshot_taken", path = result.path.display().to_string().as_str(), bytes = result.bytes, seq = result.seq; "");
            reply.ok(result)
        }
        Err(e) => {
            log::warn!(event = "snapshot_failed", error = e.as_str(); "");
            reply.err(proto::RpcError::new(
                proto::jsonrpc::code::OPERATION_FAILED,
                e,
            ))
        }
    }
}

/// SIGINT/SIGTERM start a graceful stop (a second one exits at once);
/// SIGHUP reloads the config file, like the `reload` command. Returns the
/// stop and the reload requests.
///
/// The handlers only write a byte to a socket pair, which the runtime's
/// reactor reads: no thread waits for signals. The second stop needs no
/// reader at all: its handler exits the process itself, so it works even
/// if the runtime were stuck.
fn install_signal_handlers() -> Result<(SignalPipe, SignalPipe), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::{flag, low_level::pipe};
    let err = |e: std::io::Error| format!("cannot install the signal handlers: {e}");
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop_read, stop_write) = std::os::unix::net::UnixStream::pair().map_err(err)?;
    let (hup_read, hup_write) = std::os::unix::net::UnixStream::pair().map_err(err)?;
    for w in [&stop_write, &hup_write] {
        w.set_nonblocking(true).map_err(err)?;
    }
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it runs before the flag is set: the first
        // stop finds it unset, every later one exits.
        flag::register_conditional_shutdown(signal, 130, stopping.clone()).map_err(err)?;
        flag::register(signal, stopping.clone()).map_err(err)?;
        pipe::register(signal, stop_write.try_clone().map_err(err)?).map_err(err)?;
    }
    pipe::register(SIGHUP, hup_write).map_err(err)?;
    Ok((
        SignalPipe::new(stop_read, "stop")?,
        SignalPipe::new(hup_read, "reload")?,
    ))
}

/// The reading end of a signal's socket pair: one item per wake-up, however
/// many signals arrived since. A read error is logged and the stream then
/// waits forever: it never ends, so it never reads as a stop.
struct SignalPipe {
    read: async_std::os::unix::net::UnixStream,
    what: &'static str,
    broken: bool,
}

impl SignalPipe {
    fn new(read: std::os::unix::net::UnixStream, what: &'static str) -> Result<Self, String> {
        read.set_nonblocking(true)
            .map_err(|e| format!("cannot install the signal handlers: {e}"))?;
        Ok(Self {
            read: read.into(),
            what,
            broken: false,
        })
    }
}

impl futures::Stream for SignalPipe {
    type Item = ();

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<()>> {
        use futures::AsyncRead;
        use std::task::Poll;
        if self.broken {
            return Poll::Pending;
        }
        let mut buf = [0u8; 64];
        match std::pin::Pin::new(&mut self.read).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(n)) if n > 0 => Poll::Ready(Some(())),
            Poll::Ready(result) => {
                let why = match result {
                    Ok(_) => "its socket closed".to_string(),
                    Err(e) => e.to_string(),
                };
                log::error!(event = "error", kind = "signals", signal = self.what, error = why.as_str(); "signals asking to {} can no longer be read", self.what);
                self.broken = true;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl futures::stream::FusedStream for SignalPipe {
    fn is_terminated(&self) -> bool {
        false
    }
}

/// The subject of an `acl.*` call: a network or a peer id, checked here
/// (the contract crate has no libp2p).
fn acl_subject(peer_id: Option<&str>, cidr: Option<&str>) -> Result<Subject, proto::RpcError> {
    let bad = |field: &str, e: String| {
        proto::RpcError::new(
            proto::jsonrpc::code::INVALID_PARAMS,
            format!("{field}: {e}"),
        )
    };
    match (peer_id, cidr) {
        (Some(p), _) => p
            .trim()
            .parse::<PeerId>()
            .map(Subject::Peer)
            .map_err(|e| bad("peerId", format!("{p:?} is not a peer id: {e}"))),
        (None, Some(c)) => crate::hop::sources::Cidr::parse(c)
            .map(|c| Subject::Net(c.network()))
            .map_err(|e| bad("cidr", e)),
        (None, None) => Err(bad("peerId", "missing".into())),
    }
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

fn is_dns(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| {
        matches!(
            p,
            Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_)
        )
    })
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
