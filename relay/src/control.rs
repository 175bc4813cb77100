//! The relay's side of the control socket: answers the commands the socket
//! server (in `bsv-p2p-proto`) hands to the swarm loop, and turns what the
//! relay observes into journal events. Every answer is built from state the
//! swarm loop already keeps, so answering never waits on the network.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime};

use bsv_p2p_proto as proto;
use libp2p::{Multiaddr, PeerId, Swarm};
use proto::{CircuitEnd, DenialReason, EventKind, Timestamp, Transport};
use sha2::{Digest, Sha256};

use crate::behaviour::Behaviour;
use crate::config::RelayConfig;
use crate::hop::{self, circuit::End, gate::Refusal};
use crate::journal::Journal;
use crate::ledger::{self, Ledger};
use crate::snapshot;
use proto::process;

/// What the swarm loop knows beyond the swarm itself.
pub struct Context<'a> {
    pub peer_id: PeerId,
    pub started: SystemTime,
    pub config: &'a RelayConfig,
    pub ledger: &'a Ledger,
    pub listen: &'a [Multiaddr],
    pub journal: &'a Journal,
}

impl Context<'_> {
    fn uptime(&self) -> u64 {
        self.started.elapsed().map_or(0, |d| d.as_secs())
    }
}

pub fn status(swarm: &Swarm<Behaviour>, cx: &Context) -> proto::StatusResult {
    let hop = swarm.behaviour().hop.as_ref();
    proto::StatusResult {
        peer_id: cx.peer_id.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: cx.uptime(),
        started_at: Timestamp(cx.started),
        listen_addrs: cx.listen.iter().map(ToString::to_string).collect(),
        announce_addrs: cx.config.announce.iter().map(ToString::to_string).collect(),
        relay_addrs: hop.map_or_else(Vec::new, |h| {
            h.relay_addrs().iter().map(ToString::to_string).collect()
        }),
        counts: proto::Counts {
            connections: cx.ledger.count() as u64,
            peers: cx.ledger.peer_count() as u64,
            reservations: hop.map_or(0, |h| h.reservation_count()) as u64,
            circuits: hop.map_or(0, |h| h.circuit_count()) as u64,
        },
        federation: swarm.behaviour().federation.peers(),
    }
}

pub fn stats(swarm: &Swarm<Behaviour>, cx: &Context) -> proto::StatsResult {
    let hop = swarm.behaviour().hop.as_ref();
    let s = hop.map(|h| h.stats()).unwrap_or_default();
    let mut by_direction = BTreeMap::new();
    let mut by_transport = BTreeMap::new();
    for ((d, t), n) in cx.ledger.count_by() {
        *by_direction.entry(d).or_default() += n;
        *by_transport.entry(Transport::from(t)).or_default() += n;
    }
    let usage = process::own().unwrap_or_default();
    let connection_denials: BTreeMap<DenialReason, u64> = swarm
        .behaviour()
        .admission
        .denied()
        .iter()
        .map(|(k, v)| (DenialReason::from(*k), *v))
        .collect();
    proto::StatsResult {
        uptime_secs: cx.uptime(),
        connections: proto::ConnectionStats {
            active: cx.ledger.count() as u64,
            by_direction,
            by_transport,
            opened_total: cx.ledger.opened_total,
            closed_total: cx.ledger.closed_total,
            denied: connection_denials.clone(),
        },
        reservations: proto::ReservationStats {
            active: hop.map_or(0, |h| h.reservation_count()) as u64,
            max: cx.config.relay.max_reservations as u64,
            created: s.reservations_created,
            renewed: s.reservations_renewed,
            denied: reasons(&s.reservations_denied),
            expired: s.reservations_expired,
            closed: s.reservations_closed,
        },
        circuits: proto::CircuitStats {
            active: hop.map_or(0, |h| h.circuit_count()) as u64,
            max: cx.config.relay.max_circuits as u64,
            opened: s.circuits_opened,
            closed: s.circuits_closed,
            closed_by_reason: s
                .circuits_closed_by
                .iter()
                .map(|(k, v)| (CircuitEnd::from(*k), *v))
                .collect(),
            denied: reasons(&s.circuits_denied),
        },
        bytes_relayed: proto::BytesRelayed {
            src_to_dst: s.bytes_src_to_dst,
            dst_to_src: s.bytes_dst_to_src,
        },
        denials: {
            let mut all = reasons(&s.denials);
            for (k, v) in &connection_denials {
                *all.entry(k.clone()).or_default() += v;
            }
            all
        },
        errors: cx
            .ledger
            .errors
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        process: proto::ProcessStats {
            rss_bytes: usage.resident_bytes,
            cpu_seconds: usage.cpu_seconds,
            open_fds: usage.open_fds,
            threads: usage.threads,
            start_time_secs: cx
                .started
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
        events: proto::EventStats {
            last_seq: cx.journal.next_seq().saturating_sub(1),
            journal_len: cx.journal.len(),
        },
        log: proto::LogStats {
            lines_dropped: crate::logging::dropped(),
        },
        federation: swarm.behaviour().federation.peers(),
    }
}

pub fn peers(swarm: &Swarm<Behaviour>, cx: &Context) -> proto::PeersResult {
    let reserved: std::collections::HashSet<PeerId> = swarm
        .behaviour()
        .hop
        .as_ref()
        .map(|h| h.reservations().into_iter().map(|r| r.peer).collect())
        .unwrap_or_default();
    proto::PeersResult {
        peers: cx
            .ledger
            .by_peer()
            .into_iter()
            .map(|(peer, conns)| proto::Peer {
                peer_id: peer.to_string(),
                connections: conns
                    .into_iter()
                    .map(|c| proto::PeerConnection {
                        direction: c.direction,
                        transport: Transport::from(c.transport),
                        remote_addr: c.remote.to_string(),
                        opened_at: Timestamp::from_unix_millis(c.opened_unix_ms),
                    })
                    .collect(),
                reserved: reserved.contains(&peer),
                agent_version: cx.ledger.agent(&peer).map(str::to_string),
            })
            .collect(),
    }
}

pub fn reservations(swarm: &Swarm<Behaviour>) -> proto::ReservationsResult {
    let Some(hop) = swarm.behaviour().hop.as_ref() else {
        return proto::ReservationsResult {
            reservations: Vec::new(),
        };
    };
    let addrs: Vec<String> = hop.relay_addrs().iter().map(ToString::to_string).collect();
    proto::ReservationsResult {
        reservations: hop
            .reservations()
            .into_iter()
            .map(|r| proto::Reservation {
                addrs: addrs
                    .iter()
                    .map(|a| format!("{a}/p2p-circuit/p2p/{}", r.peer))
                    .collect(),
                peer_id: r.peer.to_string(),
                expires_at: r.expires,
                created_at: Timestamp::from_unix_millis(r.created * 1000),
                renewals: u64::from(r.renewals),
            })
            .collect(),
    }
}

pub fn circuits(swarm: &Swarm<Behaviour>) -> proto::CircuitsResult {
    let Some(hop) = swarm.behaviour().hop.as_ref() else {
        return proto::CircuitsResult {
            circuits: Vec::new(),
        };
    };
    let limit = proto::CircuitLimit {
        duration_secs: hop.config().circuit_limits.duration.map(|d| d.as_secs()),
        data_bytes: hop.config().circuit_limits.data,
    };
    proto::CircuitsResult {
        circuits: hop
            .circuits()
            .into_iter()
            .map(|c| proto::Circuit {
                id: c.id,
                src: c.src.to_string(),
                dst: c.dst.to_string(),
                bytes_src_to_dst: c.bytes_src_to_dst,
                bytes_dst_to_src: c.bytes_dst_to_src,
                opened_at: Timestamp::from_unix_millis(c.opened * 1000),
                age_secs: c.age.as_secs(),
                limit,
            })
            .collect(),
    }
}

/// A consistent export of the relay's persistent state, built in memory on
/// the swarm task: its identity (unless left out; a restored relay keeps its
/// peer ID with it), where the journal stands, its configuration source and
/// its reservations. Writing it is [`write_snapshot`]'s job, off that task.
pub fn snapshot_document(
    swarm: &Swarm<Behaviour>,
    cx: &Context,
    identity: Option<&[u8]>,
) -> Result<SnapshotDocument, String> {
    let seq = cx.journal.next_seq().saturating_sub(1);
    let taken_at = Timestamp::now();
    let mut doc = serde_json::json!({
        "format": "bsv-p2p-relay-snapshot/1",
        "peerId": cx.peer_id.to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "takenAt": taken_at,
        "config": cx.config.source,
        "journal": { "firstSeq": cx.journal.first_seq(), "lastSeq": seq },
        "reservations": reservations(swarm).reservations,
    });
    if let Some(key) = identity {
        doc["identityKey"] = hex(key).into();
    }
    let bytes =
        serde_json::to_vec_pretty(&doc).map_err(|e| format!("cannot encode the snapshot: {e}"))?;
    Ok(SnapshotDocument {
        bytes,
        seq,
        taken_at,
    })
}

pub struct SnapshotDocument {
    bytes: Vec<u8>,
    seq: u64,
    taken_at: Timestamp,
}

/// Writes a snapshot document to `path` (see `snapshot.rs` for what is
/// refused); blocking file work, for a blocking thread.
pub fn write_snapshot(
    path: &Path,
    doc: SnapshotDocument,
    forbidden: &snapshot::Forbidden,
) -> Result<proto::SnapshotResult, String> {
    snapshot::write(path, &doc.bytes, forbidden)?;
    Ok(proto::SnapshotResult {
        path: path.to_path_buf(),
        bytes: doc.bytes.len() as u64,
        sha256: hex(&Sha256::digest(&doc.bytes)),
        seq: doc.seq,
        taken_at: doc.taken_at,
    })
}

/// The journal event for a hop event.
///
/// `relay_addrs` are the relay's own addresses as text, each ending with
/// its `/p2p/` part; peer IDs are named by the ledger.
pub fn hop_event(e: &hop::Event, relay_addrs: &[String], ledger: &Ledger) -> EventKind {
    use hop::Event::*;
    match e {
        ReservationCreated {
            peer,
            renewed,
            expires,
        } => {
            let name = ledger.name(peer);
            let addrs = relay_addrs
                .iter()
                .map(|a| format!("{a}/p2p-circuit/p2p/{name}"))
                .collect();
            if *renewed {
                EventKind::ReservationRenewed {
                    peer_id: name.into_owned(),
                    expires_at: *expires,
                    addrs,
                }
            } else {
                EventKind::ReservationCreated {
                    peer_id: name.into_owned(),
                    expires_at: *expires,
                    addrs,
                }
            }
        }
        ReservationDenied { peer, refusal } => EventKind::ReservationDenied {
            peer_id: ledger.name(peer).into_owned(),
            reason: DenialReason::from(*refusal),
        },
        ReservationExpired { peer } => EventKind::ReservationExpired {
            peer_id: ledger.name(peer).into_owned(),
            reason: Some("expired".to_string()),
        },
        ReservationClosed { peer } => EventKind::ReservationClosed {
            peer_id: ledger.name(peer).into_owned(),
            reason: Some("disconnected".to_string()),
        },
        CircuitOpened {
            id,
            src,
            dst,
            limits,
        } => EventKind::CircuitOpened {
            circuit_id: *id,
            src: ledger.name(src).into_owned(),
            dst: ledger.name(dst).into_owned(),
            limit_duration_ms: limits.duration.map(millis),
            limit_bytes: limits.data,
        },
        CircuitDenied { src, dst, refusal } => EventKind::CircuitDenied {
            src: ledger.name(src).into_owned(),
            dst: dst.map(|d| ledger.name(&d).into_owned()),
            reason: DenialReason::from(*refusal),
        },
        CircuitClosed(c) => EventKind::CircuitClosed {
            circuit_id: c.id,
            src: ledger.name(&c.src).into_owned(),
            dst: ledger.name(&c.dst).into_owned(),
            bytes_src_to_dst: c.bytes_src_to_dst,
            bytes_dst_to_src: c.bytes_dst_to_src,
            duration_ms: millis(c.duration),
            reason: CircuitEnd::from(c.reason),
            limit_duration_ms: c.limits.duration.map(millis),
            limit_bytes: c.limits.data,
        },
        RequestDenied { peer, refusal } => EventKind::RequestDenied {
            peer_id: ledger.name(peer).into_owned(),
            reason: DenialReason::from(*refusal),
        },
    }
}

pub fn connection_opened(c: &ledger::Connection) -> EventKind {
    EventKind::ConnectionOpened {
        peer_id: c.peer_name.to_string(),
        direction: c.direction,
        transport: Transport::from(c.transport),
        remote_addr: c.remote.to_string(),
    }
}

pub fn connection_closed(c: &ledger::Connection, cause: Option<String>) -> EventKind {
    EventKind::ConnectionClosed {
        peer_id: c.peer_name.to_string(),
        transport: Transport::from(c.transport),
        cause,
        duration_ms: millis(c.opened_at.elapsed()),
    }
}

fn reasons(m: &HashMap<Refusal, u64>) -> BTreeMap<DenialReason, u64> {
    m.iter()
        .map(|(k, v)| (DenialReason::from(*k), *v))
        .collect()
}

impl From<ledger::Transport> for Transport {
    fn from(t: ledger::Transport) -> Self {
        match t {
            ledger::Transport::Tcp => Self::Tcp,
            ledger::Transport::Websocket => Self::Websocket,
        }
    }
}

/// The contract's word for each refusal: a match, so that a new refusal
/// does not compile until it has one.
impl From<Refusal> for DenialReason {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::RelayedConnection => Self::RelayedConnection,
            Refusal::AccessDenied => Self::AccessDenied,
            Refusal::NotAllowlisted => Self::NotAllowlisted,
            Refusal::Banned => Self::Banned,
            Refusal::RateLimited => Self::RateLimited,
            Refusal::ReservationRate => Self::ReservationRate,
            Refusal::ReservationsFull => Self::ReservationsFull,
            Refusal::PeerReservationsFull => Self::PeerReservationsFull,
            Refusal::CircuitsFull => Self::CircuitsFull,
            Refusal::PeerCircuitsFull => Self::PeerCircuitsFull,
            Refusal::SourceReservationsFull => Self::SourceReservationsFull,
            Refusal::SourceCircuitsFull => Self::SourceCircuitsFull,
            Refusal::NoReservation => Self::NoReservation,
            Refusal::SelfCircuit => Self::SelfCircuit,
            Refusal::ConnectionFailed => Self::ConnectionFailed,
            Refusal::Malformed => Self::MalformedMessage,
            Refusal::Unexpected => Self::UnexpectedMessage,
        }
    }
}

/// The contract's word for a connection not taken.
impl From<crate::admission::Refused> for DenialReason {
    fn from(r: crate::admission::Refused) -> Self {
        use crate::admission::Refused;
        match r {
            Refused::ConnectionRate => Self::ConnectionRate,
            Refused::AccessDenied => Self::AccessDenied,
            Refused::Banned => Self::Banned,
            Refused::SourceConnectionsFull => Self::SourceConnectionsFull,
            Refused::SourcePendingFull => Self::SourcePendingFull,
        }
    }
}

/// The contract's word for why a circuit ended.
impl From<End> for CircuitEnd {
    fn from(e: End) -> Self {
        match e {
            End::Done => Self::Done,
            End::DataLimit => Self::DataLimit,
            End::DurationLimit => Self::DurationLimit,
            End::Reset => Self::Reset,
            End::Shutdown => Self::Shutdown,
            End::Disconnected => Self::Disconnected,
            End::Idle => Self::Idle,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
