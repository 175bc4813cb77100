//! The relay's books on connections: what is open now (by direction and
//! transport) and running totals, kept by the swarm loop from swarm events so
//! that `status`, `stats` and `peers` answer without touching the network.
//! Reservations and circuits are counted by the hop behaviour itself.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bsv_p2p_proto::Direction;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

/// The transport of a connection; its word on the control socket and in
/// logs is `proto::Transport`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Tcp,
    Websocket,
}

impl Transport {
    pub fn of(addr: &Multiaddr) -> Self {
        if addr
            .iter()
            .any(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_)))
        {
            Self::Websocket
        } else {
            Self::Tcp
        }
    }
}

#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: PeerId,
    /// The peer ID's text, shared with the peer's entry: base58 is encoded
    /// once per connected peer, not for each log line and event.
    pub peer_name: Arc<str>,
    pub direction: Direction,
    pub transport: Transport,
    pub remote: Multiaddr,
    pub opened_at: Instant,
    pub opened_unix_ms: u64,
}

#[derive(Debug, Default)]
pub struct Ledger {
    open: HashMap<ConnectionId, Connection>,
    pub opened_total: u64,
    pub closed_total: u64,
    /// Failures that are not refusals: listener errors, failed handshakes, …
    pub errors: BTreeMap<&'static str, u64>,
    /// Each connected peer: at most one entry per open connection.
    peers: HashMap<PeerId, Peer>,
}

#[derive(Debug)]
struct Peer {
    name: Arc<str>,
    /// The agent version learned through identify.
    agent: Option<String>,
}

impl Ledger {
    pub fn opened(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        endpoint: &ConnectedPoint,
    ) -> &Connection {
        let (direction, remote) = match endpoint {
            ConnectedPoint::Dialer { address, .. } => (Direction::Outbound, address.clone()),
            ConnectedPoint::Listener { send_back_addr, .. } => {
                (Direction::Inbound, send_back_addr.clone())
            }
        };
        self.opened_total += 1;
        let name = self
            .peers
            .entry(peer)
            .or_insert_with(|| Peer {
                name: peer.to_string().into(),
                agent: None,
            })
            .name
            .clone();
        self.open.entry(id).or_insert(Connection {
            peer,
            peer_name: name,
            direction,
            transport: Transport::of(endpoint.get_remote_address()),
            remote,
            opened_at: Instant::now(),
            opened_unix_ms: unix_ms(),
        })
    }

    pub fn closed(&mut self, id: ConnectionId, remaining: u32) -> Option<Connection> {
        let c = self.open.remove(&id)?;
        self.closed_total += 1;
        if remaining == 0 {
            self.peers.remove(&c.peer);
        }
        Some(c)
    }

    pub fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }

    pub fn identified(&mut self, peer: PeerId, agent: String) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.agent = Some(agent);
        }
    }

    pub fn agent(&self, peer: &PeerId) -> Option<&str> {
        self.peers.get(peer)?.agent.as_deref()
    }

    /// A peer ID's text: kept while the peer is connected, encoded otherwise.
    pub fn name(&self, peer: &PeerId) -> Cow<'_, str> {
        match self.peers.get(peer) {
            Some(p) => Cow::Borrowed(&p.name),
            None => Cow::Owned(peer.to_string()),
        }
    }

    /// Every open connection.
    pub fn connections(&self) -> impl Iterator<Item = (ConnectionId, &Connection)> {
        self.open.iter().map(|(id, c)| (*id, c))
    }

    pub fn count(&self) -> usize {
        self.open.len()
    }

    pub fn count_by(&self) -> BTreeMap<(Direction, Transport), u64> {
        let mut m = BTreeMap::new();
        for c in self.open.values() {
            *m.entry((c.direction, c.transport)).or_default() += 1;
        }
        m
    }

    /// Open connections grouped by peer, peers in a stable order.
    pub fn by_peer(&self) -> BTreeMap<PeerId, Vec<&Connection>> {
        let mut m: BTreeMap<PeerId, Vec<&Connection>> = BTreeMap::new();
        for c in self.open.values() {
            m.entry(c.peer).or_default().push(c);
        }
        for v in m.values_mut() {
            v.sort_by_key(|c| c.opened_at);
        }
        m
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(port: u16) -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            send_back_addr: format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap(),
        }
    }

    #[test]
    fn a_peer_is_named_and_counted_while_any_of_its_connections_is_open() {
        let mut ledger = Ledger::default();
        let peer = PeerId::random();
        let text = peer.to_string();
        let (a, b) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        assert_eq!(
            ledger.opened(a, peer, &listener(5001)).peer_name.as_ref(),
            text
        );
        assert_eq!(
            ledger.opened(b, peer, &listener(5002)).peer_name.as_ref(),
            text
        );
        assert_eq!(ledger.peer_count(), 1);
        assert!(matches!(ledger.name(&peer), Cow::Borrowed(t) if t == text));
        ledger.identified(peer, "bot/1.0".into());
        assert_eq!(ledger.agent(&peer), Some("bot/1.0"));

        ledger.closed(a, 1).unwrap();
        assert_eq!(ledger.peer_count(), 1);
        assert_eq!(ledger.agent(&peer), Some("bot/1.0"));
        ledger.closed(b, 0).unwrap();
        assert_eq!(ledger.peer_count(), 0);
        assert_eq!(ledger.agent(&peer), None);
        // Gone from the books, still named right.
        assert!(matches!(ledger.name(&peer), Cow::Owned(t) if t == text));
        // Identify arriving after the last close keeps nothing.
        ledger.identified(peer, "late/1.0".into());
        assert_eq!(ledger.agent(&peer), None);
        assert_eq!(ledger.peer_count(), 0);
    }
}
