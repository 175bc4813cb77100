//! What the buffer holds: the relay's event as it arrived, plus the trace
//! context the sidecar gave it when it took it in. Every destination renders
//! from this one record, so a circuit's log records and its span carry the
//! same ids whichever destination ships first, after any restart.

use bsv_p2p_proto::{Event, EventKind, Timestamp};
use serde::{Deserialize, Serialize};

/// The trace a record belongs to. Ids are lowercase hex, as OTLP/JSON and
/// W3C trace context write them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub trace_id: String,
    pub span_id: String,
    /// On the event that ends a span (`circuit_closed`,
    /// `reservation_closed`, `reservation_expired`): how the span began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub began: Option<Began>,
}

/// The beginning of a span, known when its end arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Began {
    /// Unix milliseconds, the relay's clock.
    pub at_ms: u64,
    /// False when the sidecar never saw the opening event (it started
    /// later): `at_ms` is then the earliest moment it knows of.
    pub seen: bool,
    /// A reservation's renewals, unix milliseconds with the new expiry (unix
    /// seconds), oldest first, at most [`MAX_RENEWALS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renewals: Vec<(u64, u64)>,
    /// Renewals beyond [`MAX_RENEWALS`], counted only.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub renewals_dropped: u64,
}

/// Renewals kept as span events per reservation. A reservation renewed
/// every 30 minutes for a week has 336; a span with more is unreadable
/// anyway, and the number bounds what one peer can make the sidecar hold.
pub const MAX_RENEWALS: usize = 64;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub event: Event,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Context>,
}

/// How loud an event is, in every destination's own terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl Record {
    pub fn kind(&self) -> &str {
        self.event.kind.name()
    }

    /// Refusals and losses are warnings, failures errors, the rest info:
    /// the same levels the relay's own log lines use.
    pub fn level(&self) -> Level {
        use EventKind::*;
        match &self.event.kind {
            Error { .. } => Level::Error,
            ReservationDenied { .. }
            | CircuitDenied { .. }
            | RequestDenied { .. }
            | PeerBanned { .. }
            | AddressBanned { .. }
            | RateLimited { .. }
            | AddressRateLimited { .. }
            | FederationPeerDown { .. }
            | Gap { .. } => Level::Warn,
            Unknown { kind, .. } if kind == DROPPED => Level::Warn,
            _ => Level::Info,
        }
    }

    /// The event's fields as one JSON object, without `seq`, `ts` and
    /// `kind` (those are the record's own).
    pub fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        if let EventKind::Unknown { fields, .. } = &self.event.kind {
            return fields.clone();
        }
        let mut object = match serde_json::to_value(&self.event.kind) {
            Ok(serde_json::Value::Object(object)) => object,
            _ => serde_json::Map::new(),
        };
        object.shift_remove("kind");
        object
    }

    /// One line of text for people: a syslog MSG, an OTLP log body.
    pub fn describe(&self) -> String {
        use EventKind::*;
        match &self.event.kind {
            ConnectionOpened {
                peer_id,
                direction,
                transport,
                remote_addr,
            } => format!(
                "connection opened with {peer_id} ({}, {}, {remote_addr})",
                direction.as_str(),
                transport.as_str()
            ),
            ConnectionClosed {
                peer_id,
                cause,
                duration_ms,
                ..
            } => match cause {
                Some(cause) => format!(
                    "connection with {peer_id} closed after {duration_ms} ms: {cause}"
                ),
                None => format!("connection with {peer_id} closed after {duration_ms} ms"),
            },
            ReservationCreated {
                peer_id,
                expires_at,
                ..
            } => format!("reservation created for {peer_id}, expires at {expires_at}"),
            ReservationRenewed {
                peer_id,
                expires_at,
                ..
            } => format!("reservation renewed for {peer_id}, expires at {expires_at}"),
            ReservationExpired { peer_id, .. } => format!("reservation of {peer_id} expired"),
            ReservationClosed { peer_id, reason } => format!(
                "reservation of {peer_id} closed: {}",
                reason.as_deref().unwrap_or("closed")
            ),
            ReservationDenied { peer_id, reason } => {
                format!("reservation refused to {peer_id}: {}", reason.as_str())
            }
            CircuitOpened {
                circuit_id,
                src,
                dst,
                ..
            } => format!("circuit {circuit_id} opened from {src} to {dst}"),
            CircuitClosed {
                circuit_id,
                bytes_src_to_dst,
                bytes_dst_to_src,
                duration_ms,
                reason,
                ..
            } => format!(
                "circuit {circuit_id} closed after {duration_ms} ms, {bytes_src_to_dst} bytes out and {bytes_dst_to_src} back: {}",
                reason.as_str()
            ),
            CircuitDenied { src, dst, reason } => match dst {
                Some(dst) => format!(
                    "circuit from {src} to {dst} refused: {}",
                    reason.as_str()
                ),
                None => format!("circuit from {src} refused: {}", reason.as_str()),
            },
            RequestDenied { peer_id, reason } => {
                format!("request from {peer_id} refused: {}", reason.as_str())
            }
            PeerBanned {
                peer_id,
                reason,
                until,
            } => format!("peer {peer_id} banned{}: {reason}", ban_end(until.as_ref())),
            AddressBanned {
                cidr,
                reason,
                until,
            } => format!("addresses {cidr} banned{}: {reason}", ban_end(until.as_ref())),
            RateLimited { peer_id, what } => format!("{what} of {peer_id} rate limited"),
            AddressRateLimited { address, what } => {
                format!("{what} from {address} rate limited")
            }
            FederationPeerUp {
                peer_id,
                remote_addr,
                down_ms,
            } => match down_ms {
                Some(ms) => format!(
                    "federated relay {peer_id} up again at {remote_addr} after {:.1} s down",
                    *ms as f64 / 1000.0
                ),
                None => format!("federated relay {peer_id} up at {remote_addr}"),
            },
            FederationPeerDown {
                peer_id,
                cause,
                up_ms,
            } => format!(
                "federated relay {peer_id} down ({cause}) after {:.1} s up",
                *up_ms as f64 / 1000.0
            ),
            ConfigReloaded {
                applied,
                restart_required,
            } => format!(
                "configuration reloaded: {} applied, {} need a restart",
                applied.len(),
                restart_required.len()
            ),
            Error {
                error_kind,
                message,
            } => format!("{error_kind}: {message}"),
            Gap { from, to, lost } => format!(
                "{lost} relay events lost (sequence numbers {from} to {to}): pruned from the relay's journal before they were read"
            ),
            Unknown { kind, fields } if kind == DROPPED => format!(
                "{} events dropped by the log shipper for this destination: its buffer was full",
                fields.get("lost").and_then(|v| v.as_u64()).unwrap_or(0)
            ),
            Unknown { kind, .. } => kind.clone(),
        }
    }
}

/// How long a ban lasts, as the end of a sentence.
fn ban_end(until: Option<&Timestamp>) -> String {
    match until {
        Some(until) => format!(" until {until}"),
        None => " until removed".into(),
    }
}

/// The kind of the record the sidecar sends in place of events it dropped
/// for a destination whose buffer was full.
pub const DROPPED: &str = "logship_dropped";

/// The record standing for `lost` events dropped before the one numbered
/// `next_seq`.
pub fn dropped(lost: u64, next_seq: u64) -> Record {
    let mut fields = serde_json::Map::new();
    fields.insert("lost".into(), lost.into());
    fields.insert("beforeSeq".into(), next_seq.into());
    Record {
        event: Event {
            seq: next_seq.saturating_sub(1),
            // Milliseconds, as every event time on the wire.
            ts: Timestamp::from_unix_millis(Timestamp::now().unix_millis()),
            kind: EventKind::Unknown {
                kind: DROPPED.into(),
                fields,
            },
        },
        ctx: None,
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// The bytes of lowercase or uppercase hex; None if it is not hex of
/// exactly `N` bytes.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, pair) in text.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bsv_p2p_proto::CircuitEnd;

    #[test]
    fn hex_roundtrips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex::<4>("0001ABff"), Some(bytes));
        assert_eq!(unhex::<4>("0001abf"), None);
        assert_eq!(unhex::<4>("0001abfg"), None);
    }

    #[test]
    fn fields_leave_out_the_envelope() {
        let record = Record {
            event: Event {
                seq: 7,
                ts: Timestamp::from_unix_millis(1_000),
                kind: EventKind::CircuitClosed {
                    circuit_id: 3,
                    src: "a".into(),
                    dst: "b".into(),
                    bytes_src_to_dst: 10,
                    bytes_dst_to_src: 20,
                    duration_ms: 5,
                    reason: CircuitEnd::Done,
                    limit_duration_ms: None,
                    limit_bytes: None,
                },
            },
            ctx: None,
        };
        let fields = record.fields();
        assert!(!fields.contains_key("seq") && !fields.contains_key("kind"));
        assert_eq!(fields["circuitId"], 3);
        assert_eq!(fields["bytesDstToSrc"], 20);
        assert!(record.describe().contains("circuit 3 closed after 5 ms"));
    }

    #[test]
    fn bans_and_address_limits_are_warnings_that_say_how_long() {
        let record = |kind| Record {
            event: Event::new(9, kind),
            ctx: None,
        };
        let ban = record(EventKind::AddressBanned {
            cidr: "203.0.113.0/24".into(),
            reason: "spam".into(),
            until: Some(Timestamp::from_unix_millis(1_738_325_400_000)),
        });
        assert_eq!(ban.level(), Level::Warn);
        assert_eq!(
            ban.describe(),
            "addresses 203.0.113.0/24 banned until 2025-01-31T12:10:00.000Z: spam"
        );
        let ban = record(EventKind::PeerBanned {
            peer_id: "12D3KooWA".into(),
            reason: "acl deny".into(),
            until: None,
        });
        assert_eq!(ban.level(), Level::Warn);
        assert_eq!(
            ban.describe(),
            "peer 12D3KooWA banned until removed: acl deny"
        );
        let limited = record(EventKind::AddressRateLimited {
            address: "203.0.113.7".into(),
            what: "connection".into(),
        });
        assert_eq!(limited.level(), Level::Warn);
        assert_eq!(
            limited.describe(),
            "connection from 203.0.113.7 rate limited"
        );
    }

    #[test]
    fn the_dropped_record_says_how_many() {
        let record = dropped(12, 40);
        assert_eq!(record.kind(), DROPPED);
        assert_eq!(record.level(), Level::Warn);
        assert_eq!(record.fields()["lost"], 12);
        assert!(record.describe().starts_with("12 events dropped"));
        let json = serde_json::to_string(&record).unwrap();
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
    }
}
