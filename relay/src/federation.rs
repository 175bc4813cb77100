//! Relays that peer with each other (`federation.peers`): the guide's
//! multi-region deployment, where a bot reserved on relay US hears the bots
//! reserved on relay EU.
//!
//! This behaviour only keeps the relays connected and says how they stand:
//! it dials each listed relay, redials with a jittered backoff after any
//! drop (`federation.redialMin` doubling to `redialMax`), keeps the
//! connection open, pings it every `federation.pingInterval` for the round
//! trip and closes it after two unanswered pings so a dead link is noticed
//! and redialled. The gossip itself crosses with gossipsub's own explicit
//! peering (see `Behaviour::new` in `behaviour.rs`): each federated relay is
//! an explicit peer of the others, so every new message on a topic it
//! subscribes to is sent to it once, and gossipsub's seen-cache drops the
//! copies that arrive over a second path. There is no forwarding of our own.
//!
//! Only listed peer ids are treated as relays: a connection from anyone else
//! gets a handler that does nothing, and a listed relay is held to the access
//! lists like anyone (a deny entry wins).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::io;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bsv_p2p_proto as proto;
use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use futures_timer::Delay;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{DeniedUpgrade, ReadyUpgrade};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::gossipsub::TopicHash;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedOutbound};
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId,
    DialError, FromSwarm, NetworkBehaviour, Stream, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::PeerId;

use crate::config::FederationConfig;

/// Pings unanswered in a row (each within one interval) before the
/// connection is closed as dead: with the default 5 s interval a silent
/// relay is reported down within 20 s.
const MAX_FAILURES: u32 = 2;
/// The longest `lastError` kept: a dial error lists every address tried.
const MAX_ERROR_LEN: usize = 512;
const PING_SIZE: usize = 32;

/// What the relay logs and publishes.
#[derive(Debug)]
pub enum Event {
    Up {
        peer: PeerId,
        remote: Multiaddr,
        /// How long it was down; `None` the first time.
        down: Option<Duration>,
    },
    Down {
        peer: PeerId,
        cause: String,
        up: Duration,
    },
    DialFailed {
        peer: PeerId,
        error: String,
        retry_in: Duration,
    },
}

struct Member {
    addrs: Vec<Multiaddr>,
    backoff: proto::Backoff,
    state: proto::FederationState,
    /// When the state began (wall clock for the control socket, monotonic
    /// for durations).
    since: SystemTime,
    since_instant: Instant,
    /// Open connections and their remote addresses.
    connections: Vec<(ConnectionId, Multiaddr)>,
    /// While waiting: when to dial.
    next_dial: Option<Instant>,
    ever_up: bool,
    /// Set when the relay closes a connection itself, for the down event.
    closing: Option<&'static str>,
    last_seen: Option<SystemTime>,
    rtt: Option<Duration>,
    ups: u64,
    dial_failures: u64,
    last_error: Option<String>,
    /// The topics it subscribes to (the explicit-peer rule sends only those).
    topics: HashSet<TopicHash>,
    messages_in: u64,
    messages_out: u64,
}

impl Member {
    fn set_state(&mut self, state: proto::FederationState) {
        self.state = state;
        self.since = SystemTime::now();
        self.since_instant = Instant::now();
    }
}

pub struct Behaviour {
    members: HashMap<PeerId, Member>,
    ping_interval: Duration,
    queue: VecDeque<ToSwarm<Event, Infallible>>,
    /// Wakes the behaviour when the earliest redial is due.
    timer: Option<Delay>,
    /// A redial was scheduled since the timer was set.
    dirty: bool,
}

impl Behaviour {
    /// Every listed relay but this one (a shared fleet file lists every
    /// relay, this one included); the dials start at once.
    pub fn new(config: &FederationConfig, local: PeerId) -> Self {
        let now = Instant::now();
        let members = config
            .peers
            .iter()
            .filter(|p| p.peer_id != local)
            .map(|p| {
                let member = Member {
                    addrs: p.addrs.clone(),
                    backoff: proto::Backoff::new(config.redial_min, config.redial_max),
                    state: proto::FederationState::Waiting,
                    since: SystemTime::now(),
                    since_instant: now,
                    connections: Vec::new(),
                    next_dial: Some(now),
                    ever_up: false,
                    closing: None,
                    last_seen: None,
                    rtt: None,
                    ups: 0,
                    dial_failures: 0,
                    last_error: None,
                    topics: HashSet::new(),
                    messages_in: 0,
                    messages_out: 0,
                };
                (p.peer_id, member)
            })
            .collect();
        Self {
            members,
            ping_interval: config.ping_interval,
            queue: VecDeque::new(),
            timer: None,
            dirty: true,
        }
    }

    pub fn peer_ids(&self) -> impl Iterator<Item = &PeerId> {
        self.members.keys()
    }

    /// A federated relay's (un)subscription, as gossipsub reports it.
    pub fn on_subscription(&mut self, peer: &PeerId, topic: &TopicHash, subscribed: bool) {
        if let Some(m) = self.members.get_mut(peer) {
            if subscribed {
                m.topics.insert(topic.clone());
            } else {
                m.topics.remove(topic);
            }
        }
    }

    /// A gossip message new to this relay: counted in for the relay it came
    /// from, and out for every connected relay gossipsub's explicit-peer
    /// rule sends it to (subscribed to the topic, neither where it came from
    /// nor its author).
    pub fn on_message(&mut self, from: &PeerId, author: Option<&PeerId>, topic: &TopicHash) {
        if self.members.is_empty() {
            return;
        }
        for (peer, m) in self.members.iter_mut() {
            if peer == from {
                m.messages_in += 1;
            } else if Some(peer) != author
                && m.state == proto::FederationState::Connected
                && m.topics.contains(topic)
            {
                m.messages_out += 1;
            }
        }
    }

    /// Each federated relay as the control socket shows it, by peer id.
    pub fn peers(&self) -> Vec<proto::FederationPeer> {
        let now = Instant::now();
        let mut out: Vec<proto::FederationPeer> = self
            .members
            .iter()
            .map(|(peer, m)| proto::FederationPeer {
                peer_id: peer.to_string(),
                addrs: m
                    .addrs
                    .iter()
                    .map(|a| a.clone().with(Protocol::P2p(*peer)).to_string())
                    .collect(),
                state: m.state,
                since: proto::Timestamp(m.since),
                remote_addr: m.connections.first().map(|(_, a)| a.to_string()),
                last_seen: m.last_seen.map(proto::Timestamp),
                rtt_micros: m.rtt.map(|d| d.as_micros() as u64),
                next_dial_at: m
                    .next_dial
                    .filter(|_| m.state == proto::FederationState::Waiting)
                    .map(|at| {
                        proto::Timestamp(SystemTime::now() + at.saturating_duration_since(now))
                    }),
                ups: m.ups,
                dial_failures: m.dial_failures,
                last_error: m.last_error.clone(),
                messages_in: m.messages_in,
                messages_out: m.messages_out,
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    fn handler_for(&self, peer: &PeerId) -> Handler {
        Handler(
            self.members
                .contains_key(peer)
                .then(|| Box::new(Pinger::new(self.ping_interval))),
        )
    }

    fn established(&mut self, peer: PeerId, id: ConnectionId, remote: Multiaddr) {
        let Some(m) = self.members.get_mut(&peer) else {
            return;
        };
        m.connections.push((id, remote.clone()));
        m.last_seen = Some(SystemTime::now());
        if m.connections.len() > 1 {
            return;
        }
        let down = m.ever_up.then(|| m.since_instant.elapsed());
        m.ever_up = true;
        m.ups += 1;
        m.next_dial = None;
        m.last_error = None;
        m.backoff.reset();
        m.set_state(proto::FederationState::Connected);
        self.queue
            .push_back(ToSwarm::GenerateEvent(Event::Up { peer, remote, down }));
    }

    fn closed(&mut self, peer: PeerId, id: ConnectionId, cause: Option<String>) {
        let Some(m) = self.members.get_mut(&peer) else {
            return;
        };
        let before = m.connections.len();
        m.connections.retain(|(c, _)| *c != id);
        if before == 0 || !m.connections.is_empty() {
            return;
        }
        let cause = m
            .closing
            .take()
            .map(str::to_string)
            .or(cause)
            .unwrap_or_else(|| "closed".into());
        let up = m.since_instant.elapsed();
        m.last_error = Some(truncate(cause.clone()));
        m.next_dial = Some(Instant::now() + m.backoff.next_wait());
        m.set_state(proto::FederationState::Waiting);
        self.dirty = true;
        self.queue
            .push_back(ToSwarm::GenerateEvent(Event::Down { peer, cause, up }));
    }

    fn dial_failed(&mut self, peer: PeerId, error: &DialError) {
        let Some(m) = self.members.get_mut(&peer) else {
            return;
        };
        // Another dial of the same relay (gossipsub's, or an inbound one
        // being upgraded) is under way: its outcome settles the state.
        if matches!(error, DialError::DialPeerConditionFalse(_)) || !m.connections.is_empty() {
            return;
        }
        let wait = m.backoff.next_wait();
        m.dial_failures += 1;
        let error = truncate(error.to_string());
        m.last_error = Some(error.clone());
        m.next_dial = Some(Instant::now() + wait);
        if m.state != proto::FederationState::Waiting {
            m.set_state(proto::FederationState::Waiting);
        }
        self.dirty = true;
        self.queue
            .push_back(ToSwarm::GenerateEvent(Event::DialFailed {
                peer,
                error,
                retry_in: wait,
            }));
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// What a connection handler tells the behaviour.
#[derive(Debug)]
pub enum Report {
    Rtt(Duration),
    Unresponsive,
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        // Any dial of a listed relay (also gossipsub's own redial of an
        // explicit peer, which carries no address) uses the configured ones.
        Ok(peer
            .and_then(|p| self.members.get(&p))
            .map(|m| m.addrs.clone())
            .unwrap_or_default())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler_for(&peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler_for(&peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.established(
                    e.peer_id,
                    e.connection_id,
                    e.endpoint.get_remote_address().clone(),
                );
            }
            FromSwarm::ConnectionClosed(e) => {
                self.closed(e.peer_id, e.connection_id, e.cause.map(|c| c.to_string()));
            }
            FromSwarm::DialFailure(e) => {
                if let Some(peer) = e.peer_id {
                    self.dial_failed(peer, e.error);
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        report: THandlerOutEvent<Self>,
    ) {
        let Some(m) = self.members.get_mut(&peer) else {
            return;
        };
        match report {
            Report::Rtt(rtt) => {
                m.rtt = Some(rtt);
                m.last_seen = Some(SystemTime::now());
            }
            Report::Unresponsive => {
                m.closing = Some("unresponsive");
                self.queue.push_back(ToSwarm::CloseConnection {
                    peer_id: peer,
                    connection: CloseConnection::One(connection),
                });
            }
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Poll::Ready(event);
            }
            // Dials and the timer are worked out again only when a redial
            // was scheduled or fell due: this poll runs after every swarm
            // event and must cost nothing otherwise.
            if self.dirty {
                self.dirty = false;
                self.schedule();
                continue;
            }
            let due = self
                .timer
                .as_mut()
                .is_some_and(|t| t.poll_unpin(cx).is_ready());
            if !due {
                return Poll::Pending;
            }
            self.timer = None;
            self.dirty = true;
        }
    }
}

impl Behaviour {
    /// Dials every relay whose redial is due and sets the timer for the
    /// next one.
    fn schedule(&mut self) {
        let now = Instant::now();
        let mut earliest: Option<Instant> = None;
        for (peer, m) in self.members.iter_mut() {
            let Some(at) = m.next_dial else { continue };
            if !m.connections.is_empty() {
                m.next_dial = None;
            } else if at <= now {
                m.next_dial = None;
                m.set_state(proto::FederationState::Dialing);
                self.queue.push_back(ToSwarm::Dial {
                    opts: DialOpts::peer_id(*peer)
                        .addresses(m.addrs.clone())
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build(),
                });
            } else {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        self.timer = earliest.map(|at| Delay::new(at.saturating_duration_since(now)));
    }
}

/// The handler of every connection: inert (one pointer) unless the peer is
/// a federated relay, whose connection it keeps open and pings.
pub struct Handler(Option<Box<Pinger>>);

enum Ping {
    /// Until the next ping; keeps the last stream for reuse.
    Idle(Option<Stream>),
    Opening,
    Pinging(BoxFuture<'static, io::Result<(Stream, Duration)>>),
    /// The relay has no ping service: no round trip, no liveness check.
    Unsupported,
}

pub struct Pinger {
    interval: Duration,
    timer: Delay,
    ping: Ping,
    failures: u32,
    reported: bool,
    out: VecDeque<Report>,
}

impl Pinger {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            // The first ping at once: the round trip is known on connect.
            timer: Delay::new(Duration::ZERO),
            ping: Ping::Idle(None),
            failures: 0,
            reported: false,
            out: VecDeque::new(),
        }
    }

    fn failed(&mut self) {
        self.failures += 1;
        self.ping = Ping::Idle(None);
        self.timer.reset(self.interval);
        if self.failures >= MAX_FAILURES && !self.reported {
            self.reported = true;
            self.out.push_back(Report::Unresponsive);
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<ReadyUpgrade<libp2p::StreamProtocol>, (), Report>> {
        loop {
            if let Some(r) = self.out.pop_front() {
                return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(r));
            }
            match std::mem::replace(&mut self.ping, Ping::Opening) {
                Ping::Idle(stream) => {
                    if self.timer.poll_unpin(cx).is_pending() {
                        self.ping = Ping::Idle(stream);
                        return Poll::Pending;
                    }
                    match stream {
                        Some(s) => self.ping = Ping::Pinging(ping(s, self.interval).boxed()),
                        None => {
                            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                                protocol: SubstreamProtocol::new(
                                    ReadyUpgrade::new(crate::ping::PROTOCOL),
                                    (),
                                )
                                .with_timeout(self.interval),
                            })
                        }
                    }
                }
                Ping::Opening => return Poll::Pending,
                Ping::Pinging(mut fut) => match fut.poll_unpin(cx) {
                    Poll::Pending => {
                        self.ping = Ping::Pinging(fut);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok((stream, rtt))) => {
                        self.failures = 0;
                        self.ping = Ping::Idle(Some(stream));
                        self.timer.reset(self.interval);
                        self.out.push_back(Report::Rtt(rtt));
                    }
                    Poll::Ready(Err(_)) => self.failed(),
                },
                Ping::Unsupported => {
                    self.ping = Ping::Unsupported;
                    return Poll::Pending;
                }
            }
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Report;
    type InboundProtocol = DeniedUpgrade;
    type OutboundProtocol = ReadyUpgrade<libp2p::StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(DeniedUpgrade, ())
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    /// A federated relay's connection stays open with nothing else on it.
    fn connection_keep_alive(&self) -> bool {
        self.0.is_some()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        match self.0.as_mut() {
            Some(p) => p.poll(cx),
            None => Poll::Pending,
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        let Some(p) = self.0.as_mut() else {
            return;
        };
        match event {
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                p.ping = Ping::Pinging(ping(stream, p.interval).boxed());
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => match error {
                libp2p::swarm::StreamUpgradeError::NegotiationFailed => p.ping = Ping::Unsupported,
                _ => p.failed(),
            },
            _ => {}
        }
    }
}

/// One ping: 32 random bytes out, the same back within `timeout`; the
/// stream and the round trip.
async fn ping(mut stream: Stream, timeout: Duration) -> io::Result<(Stream, Duration)> {
    let payload: [u8; PING_SIZE] = rand::random();
    let started = Instant::now();
    let exchange = async {
        stream.write_all(&payload).await?;
        stream.flush().await?;
        let mut back = [0u8; PING_SIZE];
        stream.read_exact(&mut back).await?;
        if back == payload {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidData, "ping mismatch"))
        }
    };
    async_std::future::timeout(timeout, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "ping timed out"))??;
    let rtt = started.elapsed();
    Ok((stream, rtt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FederatedRelay;

    fn config(peers: &[PeerId]) -> FederationConfig {
        FederationConfig {
            peers: peers
                .iter()
                .map(|p| FederatedRelay {
                    peer_id: *p,
                    addrs: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()],
                })
                .collect(),
            redial_min: Duration::from_millis(100),
            redial_max: Duration::from_millis(1000),
            ping_interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_local_relay_is_never_its_own_member() {
        let (me, other) = (PeerId::random(), PeerId::random());
        let b = Behaviour::new(&config(&[me, other]), me);
        assert!(!b.members.contains_key(&me));
        assert!(b.members.contains_key(&other));
    }

    #[test]
    fn messages_count_in_from_the_source_and_out_to_subscribed_connected_relays() {
        let (a, b, c, bot) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        let mut fed = Behaviour::new(&config(&[a, b, c]), PeerId::random());
        let topic = TopicHash::from_raw("t");
        for (p, id) in [(a, 1), (b, 2)] {
            fed.established(p, ConnectionId::new_unchecked(id), Multiaddr::empty());
            fed.on_subscription(&p, &topic, true);
        }
        // c is subscribed but not connected: nothing goes to it.
        fed.on_subscription(&c, &topic, true);
        fed.on_message(&a, Some(&bot), &topic);
        // Written by b itself, arriving from a bot: not sent back to b.
        fed.on_message(&bot, Some(&b), &topic);
        let peers: HashMap<String, (u64, u64)> = fed
            .peers()
            .into_iter()
            .map(|p| (p.peer_id, (p.messages_in, p.messages_out)))
            .collect();
        assert_eq!(peers[&a.to_string()], (1, 1));
        assert_eq!(peers[&b.to_string()], (0, 1));
        assert_eq!(peers[&c.to_string()], (0, 0));
    }

    #[test]
    fn up_once_per_first_connection_and_down_when_the_last_closes() {
        let a = PeerId::random();
        let mut fed = Behaviour::new(&config(&[a]), PeerId::random());
        let (c1, c2) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        fed.established(a, c1, Multiaddr::empty());
        fed.established(a, c2, Multiaddr::empty());
        fed.closed(a, c1, None);
        fed.closed(a, c2, Some("reset".into()));
        let events: Vec<String> = fed
            .queue
            .drain(..)
            .filter_map(|e| match e {
                ToSwarm::GenerateEvent(Event::Up { down, .. }) => Some(format!("up {down:?}")),
                ToSwarm::GenerateEvent(Event::Down { cause, .. }) => Some(format!("down {cause}")),
                _ => None,
            })
            .collect();
        assert_eq!(events, ["up None", "down reset"]);
        let p = &fed.peers()[0];
        assert_eq!(p.state, proto::FederationState::Waiting);
        assert!(p.next_dial_at.is_some());
        assert_eq!(p.ups, 1);
    }
}
