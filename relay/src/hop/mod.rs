//! Our circuit relay v2 server (hop side), per the libp2p spec
//! `relay/circuit-v2.md`.
//!
//! We own this instead of using rust-libp2p's relay behaviour because the
//! relay's whole job is here and that one falls short of it: it signs no
//! voucher, answers every refusal with one status code, sums both directions
//! against one data limit, always sends a `Limit` (so js bots mark every
//! relayed connection "limited" and open a new circuit per dial), counts no
//! bytes per circuit and has no hook for access control.
//!
//! The behaviour holds all state (the reservation table in `reservations.rs`,
//! the circuit table in `circuits.rs`, counters) and makes every decision synchronously in the swarm
//! task. Stream I/O runs in tasks it spawns: one short task per request to
//! read it, and one task per circuit that does the stop handshake and then
//! relays data (see `circuit.rs`). Tasks report back over one channel;
//! nothing on the data path touches the swarm.

pub mod circuit;
pub mod circuits;
pub mod gate;
pub mod handler;
pub mod reservations;
pub mod sources;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bsv_p2p_wire as wire;
use futures::channel::{mpsc, oneshot};
use futures::future::Shared;
use futures::{AsyncWriteExt, FutureExt, StreamExt};
use futures_timer::Delay;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, SignedEnvelope};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NotifyHandler, Stream, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

use circuit::{Counters, End, Splice};
use circuits::Circuits;

use crate::buckets::Buckets;
use crate::config::{CircuitLimits, HopConfig, RequestRate};
use gate::{Gate, Refusal};
use handler::{FromBehaviour, Handler, ToBehaviour};
use reservations::{Grant, Reservations};
use wire::{hop_type, stop_type, HopMessage, Limit, ReadError, Status, StopMessage};

/// How long a peer gets to send its request, and the destination its stop reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often running circuits are checked for idleness (only while there
/// are circuits and `relay.circuits.idleTimeout` is set).
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// The period of `relay.rateLimit.reservationsPerHour`.
const HOUR: Duration = Duration::from_secs(3600);
/// Peers and addresses whose reservation rate is tracked at once.
const MAX_RATE_KEYS: usize = 65_536;
/// How often refilled rate buckets are dropped (only while there are any).
const SWEEP: Duration = Duration::from_secs(10);

pub type CircuitId = u64;

/// What the relay did, for the log, the journal and the exporters.
#[derive(Debug)]
pub enum Event {
    ReservationCreated {
        peer: PeerId,
        renewed: bool,
        expires: u64,
    },
    ReservationDenied {
        peer: PeerId,
        refusal: Refusal,
    },
    /// The reservation ran out without a renewal.
    ReservationExpired {
        peer: PeerId,
    },
    /// The connection the reservation was made on closed.
    ReservationClosed {
        peer: PeerId,
    },
    CircuitOpened {
        id: CircuitId,
        src: PeerId,
        dst: PeerId,
        limits: CircuitLimits,
    },
    CircuitDenied {
        src: PeerId,
        dst: Option<PeerId>,
        refusal: Refusal,
    },
    CircuitClosed(ClosedCircuit),
    /// A request that was neither reserve nor connect.
    RequestDenied {
        peer: PeerId,
        refusal: Refusal,
    },
}

#[derive(Debug)]
pub struct ClosedCircuit {
    pub id: CircuitId,
    pub src: PeerId,
    pub dst: PeerId,
    pub bytes_src_to_dst: u64,
    pub bytes_dst_to_src: u64,
    pub duration: Duration,
    pub reason: End,
    pub limits: CircuitLimits,
}

/// Running totals since start.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub reservations_created: u64,
    pub reservations_renewed: u64,
    pub reservations_expired: u64,
    pub reservations_closed: u64,
    pub circuits_opened: u64,
    pub circuits_closed: u64,
    pub circuits_failed: u64,
    /// Bytes of circuits that have ended; live circuits add their counters.
    pub bytes_src_to_dst: u64,
    pub bytes_dst_to_src: u64,
    /// Every refusal by reason, and the same split by what was refused.
    pub denials: HashMap<Refusal, u64>,
    pub reservations_denied: HashMap<Refusal, u64>,
    pub circuits_denied: HashMap<Refusal, u64>,
    pub circuits_closed_by: HashMap<End, u64>,
}

/// A reservation as the control socket shows it.
#[derive(Debug, Clone)]
pub struct ReservationInfo {
    pub peer: PeerId,
    pub expires: u64,
    pub created: u64,
    pub renewals: u32,
}

/// A circuit as the control socket shows it.
#[derive(Debug, Clone)]
pub struct CircuitInfo {
    pub id: CircuitId,
    pub src: PeerId,
    pub dst: PeerId,
    pub bytes_src_to_dst: u64,
    pub bytes_dst_to_src: u64,
    pub opened: u64,
    pub age: Duration,
}

struct Conn {
    remote: Multiaddr,
    relayed: bool,
}

/// A peer's request allowance: a token bucket, refilled continuously. Kept
/// while the peer has a connection, so it cannot be reset by reconnecting
/// while another connection stays up.
struct Allowance {
    connections: usize,
    tokens: f64,
    refilled: Instant,
}

impl Allowance {
    fn take(&mut self, per_second: u32, burst: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(per_second)).min(f64::from(burst));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What spawned tasks report back.
enum Report {
    Request(Box<Request>),
    Established(CircuitId),
    StopRefused(CircuitId),
    Ended(CircuitId, End),
}

/// A hop request read off a stream, with the stream to answer on.
struct Request {
    peer: PeerId,
    conn: ConnectionId,
    stream: Stream,
    msg: Result<HopMessage, ReadError>,
}

type StopSignal = Shared<oneshot::Receiver<()>>;

pub struct Behaviour {
    local: PeerId,
    key: Keypair,
    config: HopConfig,
    gate: Box<dyn Gate>,
    external: Vec<Multiaddr>,
    connections: HashMap<ConnectionId, Conn>,
    reservations: Reservations,
    allowances: HashMap<PeerId, Allowance>,
    /// Wakes the behaviour for the next thing due by time: a reservation
    /// ending, an idle check of the circuits, a sweep of the rate buckets.
    /// Armed for `timer_at` only; with nothing due it stays unarmed, so an
    /// idle relay is not woken at all.
    expiry_timer: Delay,
    timer_at: Option<Instant>,
    last_idle_check: Instant,
    last_sweep: Instant,
    circuits: Circuits<Stream>,
    /// Reservations and circuits by remote address and network.
    sources: sources::Sources,
    /// The address each reservation counts against, by its connection
    /// (a connection holds at most one reservation).
    reserved_from: HashMap<ConnectionId, IpAddr>,
    /// New reservations per hour, per peer id and per address.
    reservation_rate_peer: Buckets<PeerId>,
    reservation_rate_ip: Buckets<IpAddr>,
    /// The addresses each circuit counts against.
    circuit_from: HashMap<CircuitId, (Option<IpAddr>, Option<IpAddr>)>,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports_rx: mpsc::UnboundedReceiver<Report>,
    queue: VecDeque<ToSwarm<Event, FromBehaviour>>,
    stats: Stats,
    stop_tx: Option<oneshot::Sender<()>>,
    stop: StopSignal,
}

impl Behaviour {
    pub fn new(key: Keypair, config: HopConfig, gate: Box<dyn Gate>) -> Self {
        let per_hour = config.reservations_per_hour;
        let (reports_tx, reports_rx) = mpsc::unbounded();
        let (stop_tx, stop_rx) = oneshot::channel();
        Self {
            local: key.public().to_peer_id(),
            key,
            config,
            gate,
            external: Vec::new(),
            connections: HashMap::new(),
            reservations: Reservations::default(),
            allowances: HashMap::new(),
            expiry_timer: Delay::new(Duration::ZERO),
            timer_at: None,
            last_idle_check: Instant::now(),
            last_sweep: Instant::now(),
            circuits: Circuits::default(),
            sources: sources::Sources::default(),
            reserved_from: HashMap::new(),
            reservation_rate_peer: Buckets::new(per_hour, HOUR, MAX_RATE_KEYS),
            reservation_rate_ip: Buckets::new(per_hour, HOUR, MAX_RATE_KEYS),
            circuit_from: HashMap::new(),
            reports_tx,
            reports_rx,
            queue: VecDeque::new(),
            stats: Stats::default(),
            stop_tx: Some(stop_tx),
            stop: stop_rx.shared(),
        }
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        for (_, c) in self.circuits.iter() {
            let (up, down) = c.bytes();
            s.bytes_src_to_dst += up;
            s.bytes_dst_to_src += down;
        }
        s
    }

    pub fn reservation_count(&self) -> usize {
        self.reservations.len()
    }

    /// Circuits established or being set up.
    pub fn circuits_in_progress(&self) -> usize {
        self.circuits.len()
    }

    pub fn circuit_count(&self) -> usize {
        self.circuits.established()
    }

    pub fn reservations(&self) -> Vec<ReservationInfo> {
        self.reservations
            .all()
            .into_iter()
            .map(|(peer, s)| ReservationInfo {
                peer,
                expires: s.expires,
                created: s.created,
                renewals: s.renewals,
            })
            .collect()
    }

    /// Applies a reloaded `relay` section: every cap and limit holds for
    /// requests from now on; what is held already stays (a tightened cap
    /// refuses new requests, it does not drop anyone). Circuits running
    /// keep the limits they started with. When the prefix lengths change,
    /// the per-network counts are regrouped.
    pub fn set_config(&mut self, config: HopConfig) {
        let regroup = (config.sources.ipv4_prefix, config.sources.ipv6_prefix)
            != (
                self.config.sources.ipv4_prefix,
                self.config.sources.ipv6_prefix,
            );
        if config.reservations_per_hour != self.config.reservations_per_hour {
            self.reservation_rate_peer =
                Buckets::new(config.reservations_per_hour, HOUR, MAX_RATE_KEYS);
            self.reservation_rate_ip =
                Buckets::new(config.reservations_per_hour, HOUR, MAX_RATE_KEYS);
        }
        self.config = config;
        if regroup {
            let limits = self.config.sources.clone();
            let mut fresh = sources::Sources::default();
            for ip in self.reserved_from.values() {
                fresh.add_reservation(*ip, &limits);
            }
            for (a, b) in self.circuit_from.values() {
                fresh.add_circuit(*a, *b, &limits);
            }
            self.sources = fresh;
        }
    }

    /// Who holds a reservation or an end of a circuit, on which connection,
    /// from which address: for the relay to drop those no longer allowed.
    pub fn holders(&self) -> Vec<(PeerId, ConnectionId, Option<IpAddr>)> {
        let ip = |conn: &ConnectionId| {
            self.connections
                .get(conn)
                .and_then(|c| sources::ip_of(&c.remote))
        };
        let mut out: Vec<(PeerId, ConnectionId, Option<IpAddr>)> = self
            .reservations
            .all()
            .into_iter()
            .map(|(peer, slot)| (peer, slot.conn, ip(&slot.conn)))
            .collect();
        for (_, c) in self.circuits.iter() {
            out.push((c.src, c.src_conn, ip(&c.src_conn)));
            out.push((c.dst, c.dst_conn, ip(&c.dst_conn)));
        }
        out
    }

    pub fn config(&self) -> &HopConfig {
        &self.config
    }

    pub fn circuits(&self) -> Vec<CircuitInfo> {
        let mut out: Vec<CircuitInfo> = self
            .circuits
            .iter()
            .filter(|(_, c)| c.is_established())
            .map(|(id, c)| {
                let (up, down) = c.bytes();
                CircuitInfo {
                    id,
                    src: c.src,
                    dst: c.dst,
                    bytes_src_to_dst: up,
                    bytes_dst_to_src: down,
                    opened: c.opened,
                    age: c.opened_at.elapsed(),
                }
            })
            .collect();
        out.sort_by_key(|c| c.id);
        out
    }

    /// The confirmed external addresses [`Self::relay_addrs`] is made of.
    pub fn external_addrs(&self) -> &[Multiaddr] {
        &self.external
    }

    /// The addresses handed out in reservations.
    pub fn relay_addrs(&self) -> Vec<Multiaddr> {
        self.external
            .iter()
            .map(|a| {
                if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                    a.clone()
                } else {
                    a.clone().with(Protocol::P2p(self.local))
                }
            })
            .collect()
    }

    /// Ends every circuit (they report `shutdown`); used when the relay stops.
    pub fn stop_circuits(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
    }

    fn limit(&self) -> Option<Limit> {
        let duration = self
            .config
            .circuit_limits
            .duration
            .map(|d| u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX));
        let data = self.config.circuit_limits.data;
        (duration.is_some() || data.is_some()).then_some(Limit { duration, data })
    }

    fn deny(&mut self, stream: Stream, refusal: Refusal) {
        let msg = HopMessage::status(refusal.status()).encode();
        async_std::task::spawn(answer_and_close(stream, msg));
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        stream: Stream,
        msg: Result<HopMessage, ReadError>,
    ) {
        if msg.is_ok() && !self.allow_request(&peer) {
            let refusal = Refusal::RateLimited;
            if let Some(c) = self.connections.get(&conn) {
                let remote = c.remote.clone();
                self.gate.refused(&peer, &remote, refusal);
            }
            self.deny(stream, refusal);
            match msg.as_ref().ok().and_then(|m| m.kind) {
                Some(hop_type::RESERVE) => self.emit(Event::ReservationDenied { peer, refusal }),
                Some(hop_type::CONNECT) => {
                    let dst = msg
                        .as_ref()
                        .ok()
                        .and_then(|m| m.peer.as_ref())
                        .and_then(|p| PeerId::from_bytes(&p.id).ok());
                    self.emit(Event::CircuitDenied {
                        src: peer,
                        dst,
                        refusal,
                    })
                }
                _ => self.emit(Event::RequestDenied { peer, refusal }),
            }
            return;
        }
        let msg = match msg {
            Ok(m) => m,
            Err(ReadError::Malformed(_)) => {
                self.deny(stream, Refusal::Malformed);
                self.emit(Event::RequestDenied {
                    peer,
                    refusal: Refusal::Malformed,
                });
                return;
            }
            // The peer went away or never sent its request: nobody to answer.
            Err(ReadError::Io(_)) => return,
        };
        match msg.kind {
            Some(hop_type::RESERVE) => self.reserve(peer, conn, stream),
            Some(hop_type::CONNECT) => self.connect(peer, conn, stream, msg),
            Some(hop_type::STATUS) => {
                self.deny(stream, Refusal::Unexpected);
                self.emit(Event::RequestDenied {
                    peer,
                    refusal: Refusal::Unexpected,
                });
            }
            _ => {
                self.deny(stream, Refusal::Malformed);
                self.emit(Event::RequestDenied {
                    peer,
                    refusal: Refusal::Malformed,
                });
            }
        }
    }

    fn reserve(&mut self, peer: PeerId, conn: ConnectionId, stream: Stream) {
        let Some(c) = self.connections.get(&conn) else {
            return;
        };
        let remote = c.remote.clone();
        let decision = if c.relayed {
            Err(Refusal::RelayedConnection)
        } else {
            self.gate.reserve(&peer, &remote)
        };
        // A trusted peer's reservation counts against no address.
        let trusted = decision.is_ok() && self.gate.trusted(&peer, &remote);
        let source = sources::ip_of(&remote).filter(|_| !trusted);
        let held = self.reservations.held_by(&peer);
        let renewal = self.reservations.holds(&peer, conn);
        let now = Instant::now();
        let gated = decision.is_ok();
        let decision = decision.and_then(|()| {
            if renewal {
                return Ok(());
            }
            // Every new attempt takes from both allowances, refused or not.
            let by_peer = trusted || self.reservation_rate_peer.take(&peer, now);
            let by_ip = source.is_none_or(|ip| {
                sources::exempt(ip, &self.config.sources) || self.reservation_rate_ip.take(&ip, now)
            });
            if !(by_peer && by_ip) {
                return Err(Refusal::ReservationRate);
            }
            if self.reservations.len() >= self.config.max_reservations {
                return Err(Refusal::ReservationsFull);
            }
            if held >= self.config.max_reservations_per_peer {
                return Err(Refusal::PeerReservationsFull);
            }
            if let Some(ip) = source {
                self.sources.admit_reservation(ip, &self.config.sources)?;
            }
            Ok(())
        });
        if let Err(refusal) = decision {
            if gated {
                self.gate.refused(&peer, &remote, refusal);
            }
            self.deny(stream, refusal);
            self.emit(Event::ReservationDenied { peer, refusal });
            return;
        }

        let (grant, expires) = self.reservations.grant(
            peer,
            conn,
            self.config.reservation_ttl,
            Instant::now(),
            unix_now(),
        );
        match grant {
            Grant::Renewed => self.stats.reservations_renewed += 1,
            Grant::Created => {
                self.stats.reservations_created += 1;
                if let Some(ip) = source {
                    self.sources.add_reservation(ip, &self.config.sources);
                    self.reserved_from.insert(conn, ip);
                }
                self.queue.push_back(ToSwarm::NotifyHandler {
                    peer_id: peer,
                    handler: NotifyHandler::One(conn),
                    event: FromBehaviour::Reserved(true),
                });
            }
        }

        let addrs: Vec<Vec<u8>> = self.relay_addrs().iter().map(|a| a.to_vec()).collect();
        let voucher = wire::encode_voucher(&self.local.to_bytes(), &peer.to_bytes(), expires);
        let voucher = SignedEnvelope::new(
            &self.key,
            wire::VOUCHER_DOMAIN.to_string(),
            wire::VOUCHER_PAYLOAD_TYPE.to_vec(),
            voucher,
        )
        .ok()
        .map(SignedEnvelope::into_protobuf_encoding);
        let reply = HopMessage {
            kind: Some(hop_type::STATUS),
            reservation: Some(wire::Reservation {
                expire: expires,
                addrs,
                voucher,
            }),
            limit: self.limit(),
            status: Some(Status::Ok as u64),
            peer: None,
        }
        .encode();
        async_std::task::spawn(answer_and_close(stream, reply));
        self.emit(Event::ReservationCreated {
            peer,
            renewed: renewal,
            expires,
        });
    }

    fn connect(&mut self, src: PeerId, src_conn: ConnectionId, stream: Stream, msg: HopMessage) {
        let Some(c) = self.connections.get(&src_conn) else {
            return;
        };
        let dst = msg
            .peer
            .as_ref()
            .and_then(|p| PeerId::from_bytes(&p.id).ok());
        let remote = c.remote.clone();
        let decision = if c.relayed {
            Err(Refusal::RelayedConnection)
        } else {
            match dst {
                None => Err(Refusal::Malformed),
                Some(dst) if dst == src => Err(Refusal::SelfCircuit),
                Some(dst) => self.gate.connect(&src, &remote, &dst),
            }
        };
        let gated = decision.is_ok();
        let decision = decision.and_then(|()| {
            let dst = dst.expect("checked above");
            let slot = self
                .reservations
                .latest(&dst)
                .ok_or(Refusal::NoReservation)?;
            self.circuits.admit(
                &src,
                &dst,
                self.config.max_circuits,
                self.config.max_circuits_per_peer,
            )?;
            // Trusted ends count against no address.
            let end = |peer: &PeerId, remote: &Multiaddr| {
                sources::ip_of(remote).filter(|_| !self.gate.trusted(peer, remote))
            };
            let ends = (
                end(&src, &remote),
                self.connections
                    .get(&slot.conn)
                    .and_then(|d| end(&dst, &d.remote)),
            );
            self.sources
                .admit_circuit(ends.0, ends.1, &self.config.sources)?;
            Ok((slot.conn, ends))
        });
        let (dst_conn, ends) = match decision {
            Ok(v) => v,
            Err(refusal) => {
                if gated {
                    self.gate.refused(&src, &remote, refusal);
                }
                self.deny(stream, refusal);
                self.emit(Event::CircuitDenied { src, dst, refusal });
                return;
            }
        };
        let dst = dst.expect("checked above");

        let id = self
            .circuits
            .open((src, src_conn), (dst, dst_conn), stream, unix_now());
        self.sources
            .add_circuit(ends.0, ends.1, &self.config.sources);
        self.circuit_from.insert(id, ends);
        self.queue.push_back(ToSwarm::NotifyHandler {
            peer_id: dst,
            handler: NotifyHandler::One(dst_conn),
            event: FromBehaviour::OpenStop(id),
        });
    }

    /// The destination accepted a stop stream: run the circuit.
    fn on_stop_stream(&mut self, id: CircuitId, stop: Stream) {
        let (disconnect_tx, disconnect_rx) = oneshot::channel::<End>();
        let limits = self.config.circuit_limits.clone();
        let Some((src_stream, c)) = self.circuits.start(id, disconnect_tx, limits) else {
            return; // the source left meanwhile; dropping `stop` resets it
        };
        let src = c.src;
        let counters = c.counters.clone();
        let limit = self.limit();
        let CircuitLimits {
            data,
            duration,
            bytes_per_second: pace,
        } = self.config.circuit_limits;
        async_std::task::spawn(run_circuit(
            CircuitTask {
                id,
                src,
                src_stream,
                stop,
                limit,
                data,
                duration,
                pace,
                counters,
                stop_signal: futures::future::select(
                    self.stop.clone().map(|_| End::Shutdown),
                    disconnect_rx.map(|r| r.unwrap_or(End::Disconnected)),
                )
                .map(|either| either.factor_first().0)
                .boxed(),
            },
            self.reports_tx.clone(),
        ));
    }

    /// Takes one request from the peer's allowance.
    fn allow_request(&mut self, peer: &PeerId) -> bool {
        let RequestRate { per_second, burst } = self.config.request_rate;
        self.allowances
            .get_mut(peer)
            .is_none_or(|a| a.take(per_second, burst, Instant::now()))
    }

    /// A circuit that never carried bytes ends: its source, if still
    /// waiting, is told CONNECTION_FAILED (a circuit task that took the
    /// source's stream answers it itself).
    fn fail(&mut self, id: CircuitId) {
        let Some((c, waiting)) = self.release_circuit(id) else {
            return;
        };
        if let Some(stream) = waiting {
            self.deny(stream, Refusal::ConnectionFailed);
        }
        self.stats.circuits_failed += 1;
        self.emit(Event::CircuitDenied {
            src: c.src,
            dst: Some(c.dst),
            refusal: Refusal::ConnectionFailed,
        });
    }

    fn on_report(&mut self, report: Report) {
        match report {
            Report::Request(r) => {
                let Request {
                    peer,
                    conn,
                    stream,
                    msg,
                } = *r;
                self.on_request(peer, conn, stream, msg)
            }
            Report::Established(id) => {
                if let Some((src, dst, limits)) = self.circuits.establish(id) {
                    self.stats.circuits_opened += 1;
                    self.emit(Event::CircuitOpened {
                        id,
                        src,
                        dst,
                        limits,
                    });
                }
            }
            Report::StopRefused(id) => self.fail(id),
            Report::Ended(id, end) => {
                if let Some((c, _)) = self.release_circuit(id) {
                    let (up, down) = c.bytes();
                    self.stats.bytes_src_to_dst += up;
                    self.stats.bytes_dst_to_src += down;
                    if c.is_established() {
                        self.stats.circuits_closed += 1;
                    }
                    self.emit(Event::CircuitClosed(ClosedCircuit {
                        id,
                        src: c.src,
                        dst: c.dst,
                        bytes_src_to_dst: up,
                        bytes_dst_to_src: down,
                        duration: c.opened_at.elapsed(),
                        reason: end,
                        limits: c.limits,
                    }));
                }
            }
        }
    }

    /// Removes a circuit from the table and from its sources' counts.
    fn release_circuit(
        &mut self,
        id: CircuitId,
    ) -> Option<(circuits::Circuit<Stream>, Option<Stream>)> {
        let released = self.circuits.release(id)?;
        if let Some((a, b)) = self.circuit_from.remove(&id) {
            self.sources.remove_circuit(a, b, &self.config.sources);
        }
        Some(released)
    }

    /// A reservation ended: its source gets the slot back.
    fn reservation_gone(&mut self, conn: ConnectionId) {
        if let Some(ip) = self.reserved_from.remove(&conn) {
            self.sources.remove_reservation(ip, &self.config.sources);
        }
    }

    /// The next time something is due, if anything is.
    fn next_due(&self) -> Option<Instant> {
        let idle_check = (self.config.circuit_idle_timeout.is_some() && self.circuits.len() > 0)
            .then(|| self.last_idle_check + IDLE_CHECK);
        let sweep = self.next_sweep();
        [self.reservations.next_deadline(), idle_check, sweep]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the rate buckets are next swept: once one may be full again,
    /// and at most every [`SWEEP`].
    fn next_sweep(&self) -> Option<Instant> {
        let full = [
            self.reservation_rate_peer.next_full(),
            self.reservation_rate_ip.next_full(),
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some(full.max(self.last_sweep + SWEEP))
    }

    fn expire(&mut self) {
        let now = Instant::now();
        if self.next_sweep().is_some_and(|at| now >= at) {
            self.last_sweep = now;
            self.reservation_rate_peer.sweep(now);
            self.reservation_rate_ip.sweep(now);
        }
        if let Some(timeout) = self.config.circuit_idle_timeout {
            if now >= self.last_idle_check + IDLE_CHECK {
                self.last_idle_check = now;
                // Told to end; each reports `Ended` with the idle reason.
                let _ = self.circuits.end_idle(now, timeout);
            }
        }
        for (peer, conn) in self.reservations.expire(now) {
            self.reservation_gone(conn);
            self.stats.reservations_expired += 1;
            self.queue.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(conn),
                event: FromBehaviour::Reserved(false),
            });
            self.emit(Event::ReservationExpired { peer });
        }
    }

    fn on_connection_closed(&mut self, peer: PeerId, conn: ConnectionId) {
        self.connections.remove(&conn);
        if let Some(a) = self.allowances.get_mut(&peer) {
            a.connections -= 1;
            if a.connections == 0 {
                self.allowances.remove(&peer);
            }
        }
        if self.reservations.close(peer, conn) {
            self.reservation_gone(conn);
            self.stats.reservations_closed += 1;
            self.emit(Event::ReservationClosed { peer });
        }
        for id in self.circuits.waiting_on(conn) {
            self.fail(id);
        }
        self.circuits.disconnect(conn);
    }

    fn emit(&mut self, event: Event) {
        let s = &mut self.stats;
        match &event {
            Event::ReservationDenied { refusal, .. } => {
                *s.denials.entry(*refusal).or_default() += 1;
                *s.reservations_denied.entry(*refusal).or_default() += 1;
            }
            Event::CircuitDenied { refusal, .. } => {
                *s.denials.entry(*refusal).or_default() += 1;
                *s.circuits_denied.entry(*refusal).or_default() += 1;
            }
            Event::RequestDenied { refusal, .. } => {
                *s.denials.entry(*refusal).or_default() += 1;
            }
            Event::CircuitClosed(c) => *s.circuits_closed_by.entry(c.reason).or_default() += 1,
            _ => {}
        }
        self.queue.push_back(ToSwarm::GenerateEvent(event));
    }
}

/// Reads one hop request off a new stream, within [`REQUEST_TIMEOUT`], and
/// hands it to the behaviour with the stream to answer on.
async fn read_request(
    peer: PeerId,
    conn: ConnectionId,
    mut stream: Stream,
    reports: mpsc::UnboundedSender<Report>,
) {
    let msg = match async_std::future::timeout(REQUEST_TIMEOUT, wire::read_frame(&mut stream)).await
    {
        Ok(Ok(bytes)) => HopMessage::decode(&bytes).map_err(|e| ReadError::Malformed(e.0)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ReadError::Io(std::io::ErrorKind::TimedOut.into())),
    };
    let _ = reports.unbounded_send(Report::Request(Box::new(Request {
        peer,
        conn,
        stream,
        msg,
    })));
}

/// What one circuit's task needs once the destination took the stop stream.
struct CircuitTask {
    id: CircuitId,
    src: PeerId,
    src_stream: Stream,
    stop: Stream,
    limit: Option<Limit>,
    data: Option<u64>,
    duration: Option<Duration>,
    /// Bytes per second each way; `None`: no pace.
    pace: Option<u64>,
    counters: Arc<Counters>,
    /// Fires when the relay stops or a side's connection closes.
    stop_signal: futures::future::BoxFuture<'static, End>,
}

/// One circuit from the stop handshake to its end: asks the destination,
/// answers the source, relays both ways within the limits, and reports each
/// step to the behaviour.
async fn run_circuit(task: CircuitTask, reports: mpsc::UnboundedSender<Report>) {
    let CircuitTask {
        id,
        src,
        mut src_stream,
        mut stop,
        limit,
        data,
        duration,
        pace,
        counters,
        stop_signal,
    } = task;
    let accepted =
        async_std::future::timeout(REQUEST_TIMEOUT, stop_handshake(&mut stop, src, limit))
            .await
            .unwrap_or(false);
    if !accepted {
        let msg = HopMessage::status(Status::ConnectionFailed).encode();
        answer_and_close(src_stream, msg).await;
        let _ = reports.unbounded_send(Report::StopRefused(id));
        return;
    }
    let ok = HopMessage {
        kind: Some(hop_type::STATUS),
        limit,
        status: Some(Status::Ok as u64),
        ..Default::default()
    }
    .encode();
    if wire::write_frame(&mut src_stream, &ok).await.is_err() {
        let _ = reports.unbounded_send(Report::Ended(id, End::Reset));
        return;
    }
    let _ = reports.unbounded_send(Report::Established(id));
    let end = Splice::new(src_stream, stop, data, duration, counters, stop_signal)
        .paced(pace)
        .await;
    let _ = reports.unbounded_send(Report::Ended(id, end));
}

/// Writes the last message of a hop exchange and closes the stream with a
/// FIN, within [`REQUEST_TIMEOUT`]. Dropping the stream instead would put a
/// reset right behind the message, and a peer that handles the reset first
/// loses the answer.
async fn answer_and_close(mut stream: Stream, msg: Vec<u8>) {
    let _ = async_std::future::timeout(REQUEST_TIMEOUT, async {
        wire::write_frame(&mut stream, &msg).await?;
        stream.close().await
    })
    .await;
}

/// Sends CONNECT on the stop stream and waits for the destination's OK.
async fn stop_handshake(stop: &mut Stream, src: PeerId, limit: Option<Limit>) -> bool {
    let msg = StopMessage {
        kind: Some(stop_type::CONNECT),
        peer: Some(wire::Peer {
            id: src.to_bytes(),
            addrs: Vec::new(),
        }),
        limit,
        status: None,
    }
    .encode();
    if wire::write_frame(stop, &msg).await.is_err() {
        return false;
    }
    match wire::read_frame(stop)
        .await
        .map(|b| StopMessage::decode(&b))
    {
        Ok(Ok(reply)) => {
            reply.kind == Some(stop_type::STATUS) && reply.status == Some(Status::Ok as u64)
        }
        _ => false,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::default())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::default())
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                let remote = e.endpoint.get_remote_address().clone();
                let relayed = remote.iter().any(|p| matches!(p, Protocol::P2pCircuit));
                self.connections
                    .insert(e.connection_id, Conn { remote, relayed });
                let burst = f64::from(self.config.request_rate.burst);
                self.allowances
                    .entry(e.peer_id)
                    .or_insert_with(|| Allowance {
                        connections: 0,
                        tokens: burst,
                        refilled: Instant::now(),
                    })
                    .connections += 1;
            }
            FromSwarm::ConnectionClosed(e) => self.on_connection_closed(e.peer_id, e.connection_id),
            FromSwarm::ExternalAddrConfirmed(e) if !self.external.contains(e.addr) => {
                self.external.push(e.addr.clone());
            }
            FromSwarm::ExternalAddrExpired(e) => self.external.retain(|a| a != e.addr),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        conn: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            ToBehaviour::HopStream(stream) => {
                async_std::task::spawn(read_request(peer, conn, stream, self.reports_tx.clone()));
            }
            ToBehaviour::StopStream(id, stream) => self.on_stop_stream(id, stream),
            ToBehaviour::StopFailed(id, error) => {
                log::debug!(event = "stop_failed", circuitId = id, peerId = peer.to_string().as_str(), error = error.as_str(); "");
                self.fail(id)
            }
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Poll::Ready(e);
            }
            if let Poll::Ready(Some(report)) = self.reports_rx.poll_next_unpin(cx) {
                self.on_report(report);
                continue;
            }
            let due = self.next_due();
            if due != self.timer_at {
                if let Some(at) = due {
                    self.expiry_timer
                        .reset(at.saturating_duration_since(Instant::now()));
                }
                self.timer_at = due;
            }
            if self.timer_at.is_some() && self.expiry_timer.poll_unpin(cx).is_ready() {
                self.timer_at = None;
                self.expire();
                continue;
            }
            return Poll::Pending;
        }
    }
}
