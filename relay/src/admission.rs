//! Which incoming connections the relay takes at all, by the address they
//! come from, before any handshake work: at most
//! `connectionManager.maxPendingIncomingPerIp` handshakes in progress and
//! `connectionManager.maxConnectionsPerIp` connections open per address,
//! and at most `relay.rateLimit.connectionsPerMinute` new connections per
//! address (a token bucket). Without these, one host with fresh keys fills
//! `maxConnections`, and silent sockets reopened every few seconds keep the
//! pending-handshake cap full for everyone.
//!
//! Before all of that, the access lists: an address on a deny list, or
//! banned, is refused at once, and a peer on one as soon as its handshake
//! says who it is. Allowlisted networks are not held to the caps. Each
//! refusal by a cap or a rate counts toward an automatic ban of the address.
//!
//! A refused connection is closed by the swarm as soon as it is accepted
//! (pending) or upgraded (established); each refusal is counted by reason.
//! The maps hold only addresses with connections, pending handshakes or a
//! bucket not yet refilled.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures_timer::Delay;
use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use crate::access::{Access, Limited};
use crate::buckets::Buckets;
use crate::hop::gate::Refusal;
use crate::hop::sources::ip_of;

/// How often refilled buckets are dropped.
const SWEEP: Duration = Duration::from_secs(10);
/// Addresses whose connection rate is tracked at once.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Left alone (`relay.sources.exempt`).
    pub exempt: Vec<crate::hop::sources::Cidr>,
    pub max_per_ip: usize,
    pub max_pending_per_ip: usize,
    /// 0: no rate limit.
    pub connections_per_minute: u32,
    /// The relays of `federation.peers`, not held to the caps: by peer id
    /// once the handshake names it, and before that by the addresses their
    /// configured multiaddrs give.
    pub federated: HashSet<PeerId>,
    pub federated_ips: HashSet<IpAddr>,
}

impl AdmissionConfig {
    pub fn of(c: &crate::config::RelayConfig, local: PeerId) -> Self {
        let peers = c.federation.peers.iter().filter(|p| p.peer_id != local);
        AdmissionConfig {
            federated: peers.clone().map(|p| p.peer_id).collect(),
            federated_ips: peers
                .flat_map(|p| p.addrs.iter().filter_map(ip_of))
                .map(canonical)
                .collect(),
            exempt: c.relay.sources.exempt.clone(),
            max_per_ip: c.max_connections_per_ip,
            max_pending_per_ip: c.max_pending_incoming_per_ip,
            connections_per_minute: c.connections_per_minute,
        }
    }
}

/// Why a connection was not taken; its word is `proto::DenialReason`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// On a deny list (by address or peer id).
    AccessDenied,
    /// Banned for a while for going over limits.
    Banned,
    ConnectionRate,
    SourceConnectionsFull,
    SourcePendingFull,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::AccessDenied => "this peer or address is on the relay's deny list",
            Refused::Banned => "this address is banned for a while for going over limits",
            Refused::ConnectionRate => "too many new connections from this address",
            Refused::SourceConnectionsFull => "too many connections from this address",
            Refused::SourcePendingFull => "too many handshakes in progress from this address",
        })
    }
}

impl std::error::Error for Refused {}

pub struct Admission {
    config: AdmissionConfig,
    access: Access,
    rate: Buckets<IpAddr>,
    pending: HashMap<ConnectionId, IpAddr>,
    pending_by_ip: HashMap<IpAddr, usize>,
    open: HashMap<ConnectionId, IpAddr>,
    open_by_ip: HashMap<IpAddr, usize>,
    denied: HashMap<Refused, u64>,
    sweep: Delay,
}

fn add(map: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    *map.entry(ip).or_default() += 1;
}

fn sub(map: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = map.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Admission {
    pub fn new(config: AdmissionConfig, access: Access) -> Self {
        Admission {
            access,
            rate: Buckets::new(
                config.connections_per_minute,
                Duration::from_secs(60),
                MAX_TRACKED,
            ),
            config,
            pending: HashMap::new(),
            pending_by_ip: HashMap::new(),
            open: HashMap::new(),
            open_by_ip: HashMap::new(),
            denied: HashMap::new(),
            sweep: Delay::new(SWEEP),
        }
    }

    /// Applies reloaded caps; counts and buckets stay.
    pub fn set_config(&mut self, config: AdmissionConfig) {
        if config.connections_per_minute != self.config.connections_per_minute {
            self.rate = Buckets::new(
                config.connections_per_minute,
                Duration::from_secs(60),
                MAX_TRACKED,
            );
        }
        self.config = config;
    }

    /// Refusals since start, by reason.
    pub fn denied(&self) -> &HashMap<Refused, u64> {
        &self.denied
    }

    fn refuse(&mut self, why: Refused) -> ConnectionDenied {
        *self.denied.entry(why).or_default() += 1;
        ConnectionDenied::new(why)
    }

    /// A refusal by a cap or a rate: counted toward a ban of `ip`.
    fn limit(&mut self, why: Refused, ip: IpAddr) -> ConnectionDenied {
        if why == Refused::ConnectionRate {
            self.access.limited(Limited::Address(ip, "connection"));
        }
        self.access.strike(ip);
        self.refuse(why)
    }

    fn listed(&mut self, refusal: Refusal) -> ConnectionDenied {
        self.refuse(if refusal == Refusal::Banned {
            Refused::Banned
        } else {
            Refused::AccessDenied
        })
    }

    /// Not held to the caps: `relay.sources.exempt`, allowlisted networks
    /// and federated relays' addresses.
    fn free(&self, ip: IpAddr) -> bool {
        self.config.federated_ips.contains(&ip)
            || self.config.exempt.iter().any(|c| c.contains(ip))
            || self.access.allowed(None, Some(ip))
    }

    fn settle(&mut self, id: ConnectionId) {
        if let Some(ip) = self.pending.remove(&id) {
            sub(&mut self.pending_by_ip, ip);
        }
    }
}

impl NetworkBehaviour for Admission {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote).map(canonical) else {
            return Ok(());
        };
        if let Err(r) = self.access.check_address(ip) {
            return Err(self.listed(r));
        }
        if self.free(ip) {
            return Ok(());
        }
        if self.pending_by_ip.get(&ip).copied().unwrap_or(0) >= self.config.max_pending_per_ip {
            return Err(self.limit(Refused::SourcePendingFull, ip));
        }
        if !self.rate.take(&ip, Instant::now()) {
            return Err(self.limit(Refused::ConnectionRate, ip));
        }
        self.pending.insert(id, ip);
        add(&mut self.pending_by_ip, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.settle(id);
        let ip = ip_of(remote).map(canonical);
        if let Err(r) = self.access.check_peer(&peer, ip) {
            return Err(self.listed(r));
        }
        if let Some(ip) = ip.filter(|ip| !self.free(*ip) && !self.config.federated.contains(&peer))
        {
            if self.open_by_ip.get(&ip).copied().unwrap_or(0) >= self.config.max_per_ip {
                return Err(self.limit(Refused::SourceConnectionsFull, ip));
            }
            self.open.insert(id, ip);
            add(&mut self.open_by_ip, ip);
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // The relay dials only to check a peer's reachability (AutoNAT);
        // never one it refuses.
        if let Err(r) = self.access.check_peer(&peer, ip_of(addr).map(canonical)) {
            return Err(self.listed(r));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        let id = match event {
            FromSwarm::ListenFailure(e) => e.connection_id,
            FromSwarm::ConnectionClosed(e) => e.connection_id,
            _ => return,
        };
        self.settle(id);
        if let Some(ip) = self.open.remove(&id) {
            sub(&mut self.open_by_ip, ip);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if self.sweep.poll_unpin(cx).is_ready() {
            self.rate.sweep(Instant::now());
            self.access.sweep();
            self.sweep.reset(SWEEP);
            let _ = self.sweep.poll_unpin(cx);
        }
        Poll::Pending
    }
}
