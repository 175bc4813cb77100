//! The words the relay uses for what happened and why, shared by events,
//! `stats` counters and list results so that a label in Prometheus, a field
//! in a log line and a match arm in a sidecar are the same word.
//!
//! Lists that grow with the relay (transports, denial reasons, why a circuit
//! ended) are *open*: a value this version does not know decodes as
//! `Other(text)` instead of failing, so an older sidecar keeps working
//! against a newer relay.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this version does not know, kept as sent.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $text, )*
                    Self::Other(text) => text,
                }
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                match text {
                    $( $text => Self::$variant, )*
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self::from(String::deserialize(d)?.as_str()))
            }
        }
    };
}

/// Who dialled: the peer (`inbound`) or the relay (`outbound`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

open_enum! {
    /// The transport a connection runs over.
    Transport {
        Tcp = "tcp",
        Websocket = "websocket",
    }
}

open_enum! {
    /// Why a reservation or circuit request was refused. The first seven are
    /// the circuit relay v2 status codes, for refusals that have no finer
    /// reason; the rest are the relay's own finer reasons, each of which is
    /// sent to the peer as one of those seven statuses.
    DenialReason {
        PermissionDenied = "permission_denied",
        ReservationRefused = "reservation_refused",
        NoReservation = "no_reservation",
        ResourceLimitExceeded = "resource_limit_exceeded",
        ConnectionFailed = "connection_failed",
        MalformedMessage = "malformed_message",
        UnexpectedMessage = "unexpected_message",
        /// Reserve or connect arrived over a relayed connection.
        RelayedConnection = "relayed_connection",
        /// Refused by the access-control lists.
        AccessDenied = "access_denied",
        /// Refused by a rate limit.
        RateLimited = "rate_limited",
        /// Every reservation slot is taken.
        ReservationsFull = "reservations_full",
        /// The peer holds as many reservations as it may.
        PeerReservationsFull = "peer_reservations_full",
        /// Every circuit slot is taken.
        CircuitsFull = "circuits_full",
        /// Source or destination holds as many circuits as it may.
        PeerCircuitsFull = "peer_circuits_full",
        /// The remote address, or its network prefix, holds as many
        /// reservations as it may.
        SourceReservationsFull = "source_reservations_full",
        /// The address of an end of the circuit, or its network prefix,
        /// holds as many circuits as it may.
        SourceCircuitsFull = "source_circuits_full",
        /// The peer, or its address, made as many new reservations this
        /// hour as the relay allows.
        ReservationRate = "reservation_rate",
        /// The address opened as many connections this minute as the relay
        /// allows.
        ConnectionRate = "connection_rate",
        /// The address holds as many connections as it may.
        SourceConnectionsFull = "source_connections_full",
        /// The address holds as many handshakes in progress as it may.
        SourcePendingFull = "source_pending_full",
        /// A peer asked for a circuit to itself.
        SelfCircuit = "self_circuit",
        /// The peer, or its address, is banned for a while (automatically,
        /// for going over limits again and again).
        Banned = "banned",
        /// The relay is private (it has an allowlist) and the peer is not
        /// on it.
        NotAllowlisted = "not_allowlisted",
        /// The relay is stopping and takes no new reservations or circuits.
        ShuttingDown = "shutting_down",
    }
}

open_enum! {
    /// Why a circuit ended.
    CircuitEnd {
        /// Both sides closed their writing half.
        Done = "done",
        DataLimit = "data_limit",
        DurationLimit = "duration_limit",
        /// One side reset or failed.
        Reset = "reset",
        /// The relay is stopping.
        Shutdown = "shutdown",
        /// The source's or the destination's connection to the relay closed.
        Disconnected = "disconnected",
        /// No byte moved either way for the relay's idle timeout.
        Idle = "idle",
    }
}

open_enum! {
    /// What a control client may do. The relay gives each connection a role
    /// from the connecting process's uid and gid, and each method declares
    /// the role it needs ([`Method::ROLE`](crate::Method::ROLE)). Open, so
    /// that a later minor version may add a role between the two.
    Role {
        /// Reads only: status, counters, lists, the event stream. Cannot
        /// stop the relay, reload it, make it write a file or edit its ACL.
        ReadOnly = "read-only",
        /// Everything.
        Admin = "admin",
    }
}

impl Role {
    /// Whether a client of this role may call a method that needs `needed`.
    /// A role this version does not know only reads: unknown is never
    /// trusted with more.
    pub fn may_call(&self, needed: &Role) -> bool {
        *self == Role::Admin || *needed == Role::ReadOnly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_words_decode_to_their_variant() {
        let r: DenialReason = serde_json::from_str("\"no_reservation\"").unwrap();
        assert_eq!(r, DenialReason::NoReservation);
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"no_reservation\"");
    }

    #[test]
    fn unknown_words_survive_a_roundtrip() {
        let r: DenialReason = serde_json::from_str("\"moon_phase\"").unwrap();
        assert_eq!(r, DenialReason::Other("moon_phase".into()));
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"moon_phase\"");
        let t: Transport = serde_json::from_str("\"webrtc\"").unwrap();
        assert_eq!(t.as_str(), "webrtc");
    }

    #[test]
    fn only_admin_may_call_admin_methods() {
        assert!(Role::Admin.may_call(&Role::Admin) && Role::Admin.may_call(&Role::ReadOnly));
        assert!(Role::ReadOnly.may_call(&Role::ReadOnly));
        assert!(!Role::ReadOnly.may_call(&Role::Admin));
        let future: Role = serde_json::from_str("\"operator\"").unwrap();
        assert!(future.may_call(&Role::ReadOnly) && !future.may_call(&Role::Admin));
        assert_eq!(
            serde_json::to_string(&Role::ReadOnly).unwrap(),
            "\"read-only\""
        );
    }

    #[test]
    fn reasons_work_as_map_keys() {
        let mut m = std::collections::BTreeMap::new();
        m.insert(DenialReason::CircuitsFull, 3u64);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"circuits_full":3}"#);
        let back: std::collections::BTreeMap<DenialReason, u64> =
            serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
