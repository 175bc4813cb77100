//! `connectionManager`'s caps: connections in total, per peer, and
//! handshakes in progress. The relays of `federation.peers` are never
//! refused by them (their connections still count toward the total, so the
//! bots' share shrinks by at most one connection per federated relay).
//!
//! The caps of libp2p's connection-limits crate, written here so that a
//! federated relay can pass and so that the per-peer map forgets a peer when
//! its last connection closes (a stranger minting peer ids would otherwise
//! leave an entry per id behind).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_established: u32,
    pub max_established_per_peer: u32,
    pub max_pending_incoming: u32,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Established(u32),
    PerPeer(u32),
    PendingIncoming(u32),
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exceeded::Established(n) => write!(f, "connectionManager.maxConnections ({n}) reached"),
            Exceeded::PerPeer(n) => write!(
                f,
                "connectionManager.maxConnectionsPerPeer ({n}) reached for this peer"
            ),
            Exceeded::PendingIncoming(n) => write!(
                f,
                "connectionManager.maxPendingIncoming ({n}) handshakes in progress"
            ),
        }
    }
}

impl std::error::Error for Exceeded {}

pub struct Limits {
    caps: Caps,
    /// Federated relays: never refused.
    exempt: HashSet<PeerId>,
    pending_incoming: HashSet<ConnectionId>,
    established: HashSet<ConnectionId>,
    /// Open connections per peer; a peer without any has no entry.
    per_peer: HashMap<PeerId, u32>,
}

impl Limits {
    pub fn new(caps: Caps, exempt: impl IntoIterator<Item = PeerId>) -> Self {
        Self {
            caps,
            exempt: exempt.into_iter().collect(),
            pending_incoming: HashSet::new(),
            established: HashSet::new(),
            per_peer: HashMap::new(),
        }
    }

    fn closed(&mut self, id: ConnectionId, peer: PeerId) {
        if !self.established.remove(&id) {
            return;
        }
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    fn check_established(&self, peer: &PeerId) -> Result<(), ConnectionDenied> {
        if self.exempt.contains(peer) {
            return Ok(());
        }
        if self.per_peer.get(peer).copied().unwrap_or(0) >= self.caps.max_established_per_peer {
            return Err(ConnectionDenied::new(Exceeded::PerPeer(
                self.caps.max_established_per_peer,
            )));
        }
        if self.established.len() >= self.caps.max_established as usize {
            return Err(ConnectionDenied::new(Exceeded::Established(
                self.caps.max_established,
            )));
        }
        Ok(())
    }
}

impl NetworkBehaviour for Limits {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if self.pending_incoming.len() >= self.caps.max_pending_incoming as usize {
            return Err(ConnectionDenied::new(Exceeded::PendingIncoming(
                self.caps.max_pending_incoming,
            )));
        }
        self.pending_incoming.insert(id);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.pending_incoming.remove(&id);
        self.check_established(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check_established(&peer)?;
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                if let ConnectedPoint::Listener { .. } = e.endpoint {
                    self.pending_incoming.remove(&e.connection_id);
                }
                if self.established.insert(e.connection_id) {
                    *self.per_peer.entry(e.peer_id).or_default() += 1;
                }
            }
            FromSwarm::ConnectionClosed(e) => self.closed(e.connection_id, e.peer_id),
            FromSwarm::ListenFailure(e) => {
                self.pending_incoming.remove(&e.connection_id);
            }
            _ => {}
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

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::core::Endpoint;
    use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished};

    fn open(l: &mut Limits, id: usize, peer: PeerId) -> Result<(), ConnectionDenied> {
        let id = ConnectionId::new_unchecked(id);
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        l.handle_established_inbound_connection(id, peer, &a, &a)?;
        let endpoint = ConnectedPoint::Listener {
            local_addr: a.clone(),
            send_back_addr: a,
        };
        l.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
            peer_id: peer,
            connection_id: id,
            endpoint: &endpoint,
            failed_addresses: &[],
            other_established: 0,
        }));
        Ok(())
    }

    fn close(l: &mut Limits, id: usize, peer: PeerId) {
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let endpoint = ConnectedPoint::Dialer {
            address: a,
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        };
        l.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: peer,
            connection_id: ConnectionId::new_unchecked(id),
            endpoint: &endpoint,
            cause: None,
            remaining_established: 0,
        }));
    }

    #[test]
    fn caps_refuse_strangers_but_never_a_federated_relay() {
        let relay = PeerId::random();
        let caps = Caps {
            max_established: 2,
            max_established_per_peer: 1,
            max_pending_incoming: 4,
        };
        let mut l = Limits::new(caps, [relay]);
        let bot = PeerId::random();
        open(&mut l, 1, bot).unwrap();
        assert!(open(&mut l, 2, bot).is_err(), "per peer");
        open(&mut l, 3, PeerId::random()).unwrap();
        assert!(open(&mut l, 4, PeerId::random()).is_err(), "total");
        open(&mut l, 5, relay).unwrap();
        open(&mut l, 6, relay).unwrap();
    }

    #[test]
    fn a_peer_is_forgotten_with_its_last_connection() {
        let caps = Caps {
            max_established: 100_000,
            max_established_per_peer: 8,
            max_pending_incoming: 4,
        };
        let mut l = Limits::new(caps, []);
        for i in 0..10_000 {
            let peer = PeerId::random();
            open(&mut l, i, peer).unwrap();
            close(&mut l, i, peer);
        }
        assert!(l.per_peer.is_empty() && l.established.is_empty());
    }
}
