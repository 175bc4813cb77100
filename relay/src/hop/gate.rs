//! The one place where the relay decides whether a peer may reserve or open a
//! circuit, before any capacity check. Access control lists and rate limits
//! plug in here by implementing [`Gate`]; the relay consults it for both
//! reserve and connect and reports every refusal with its reason.

use bsv_p2p_wire::Status;
use libp2p::{Multiaddr, PeerId};

/// Why a request was refused: the status sent to the peer and the reason
/// counted and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Reserve or connect arrived over a relayed connection.
    RelayedConnection,
    /// The peer, or its address, is on a deny list.
    AccessDenied,
    /// The relay is private and the peer is not on its allowlist.
    NotAllowlisted,
    /// The address is banned for a while for going over limits.
    Banned,
    /// Refused by a rate limit.
    RateLimited,
    /// The peer, or its address, made as many new reservations this hour
    /// as `relay.rateLimit.reservationsPerHour` allows.
    ReservationRate,
    /// All reservation slots are taken.
    ReservationsFull,
    /// The peer holds as many reservations as it may.
    PeerReservationsFull,
    /// The remote address, or its network, holds as many reservations as it may.
    SourceReservationsFull,
    /// All circuit slots are taken.
    CircuitsFull,
    /// Source or destination holds as many circuits as it may.
    PeerCircuitsFull,
    /// The address of an end, or its network, holds as many circuits as it may.
    SourceCircuitsFull,
    /// The destination holds no reservation.
    NoReservation,
    /// A peer asked for a circuit to itself.
    SelfCircuit,
    /// The destination could not be reached or refused the stop stream.
    ConnectionFailed,
    Malformed,
    Unexpected,
}

impl Refusal {
    /// The status code the spec gives for this refusal.
    pub fn status(self) -> Status {
        match self {
            Self::RelayedConnection
            | Self::SelfCircuit
            | Self::AccessDenied
            | Self::NotAllowlisted
            | Self::Banned => Status::PermissionDenied,
            Self::ReservationsFull | Self::PeerReservationsFull | Self::SourceReservationsFull => {
                Status::ReservationRefused
            }
            Self::RateLimited
            | Self::ReservationRate
            | Self::CircuitsFull
            | Self::PeerCircuitsFull
            | Self::SourceCircuitsFull => Status::ResourceLimitExceeded,
            Self::NoReservation => Status::NoReservation,
            Self::ConnectionFailed => Status::ConnectionFailed,
            Self::Malformed => Status::MalformedMessage,
            Self::Unexpected => Status::UnexpectedMessage,
        }
    }
}

/// Policy consulted for every reserve and connect request.
pub trait Gate: Send + 'static {
    fn reserve(&mut self, peer: &PeerId, remote: &Multiaddr) -> Result<(), Refusal>;
    fn connect(
        &mut self,
        src: &PeerId,
        src_remote: &Multiaddr,
        dst: &PeerId,
    ) -> Result<(), Refusal>;
    /// Trusted peers (a private relay's allowlist) are not held to the caps
    /// and rates per address, nor to the reservation rate.
    fn trusted(&self, _peer: &PeerId, _remote: &Multiaddr) -> bool {
        false
    }
    /// Told of every refusal after the gate let a request through (by a
    /// cap or a rate), to count it against the source.
    fn refused(&mut self, _peer: &PeerId, _remote: &Multiaddr, _refusal: Refusal) {}
}
