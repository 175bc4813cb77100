//! Trace contexts, given to events as they are taken in. A circuit is one
//! span from `circuit_opened` to `circuit_closed`, a reservation one span
//! from `reservation_created` to `reservation_closed` or
//! `reservation_expired`; every event of a circuit or reservation carries
//! its span's ids, so a backend links the log records to the span. A
//! refusal is a span of its own.
//!
//! What is open is kept here and in the store (so a restarted sidecar
//! closes the spans it opened before), bounded: a sidecar that misses a
//! closing event (the relay was killed) must not keep its opening forever.

use std::collections::HashMap;

use bsv_p2p_proto::EventKind;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::record::{hex, Began, Context, Record, MAX_RENEWALS};

/// Open circuits and reservations remembered at most. The relay's own caps
/// are far lower (1,024 circuits, 4,096 reservations by default); what
/// exceeds this is an opening whose end was never seen.
pub const MAX_OPEN: usize = 65_536;

/// A span that has begun and not ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Open {
    pub trace_id: String,
    pub span_id: String,
    pub began: Began,
}

/// A change to what is open, for the store to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put(String, Open),
    Remove(String),
}

#[derive(Default)]
pub struct Tracker {
    open: HashMap<String, Open>,
    /// The highest relay sequence number seen: a lower one means the relay's
    /// journal started over, and with it the circuit numbering.
    last_seq: u64,
}

fn circuit_key(id: u64) -> String {
    format!("c/{id}")
}

fn reservation_key(peer: &str) -> String {
    format!("r/{peer}")
}

fn new_ids() -> (String, String) {
    let mut rng = rand::thread_rng();
    let mut trace = [0u8; 16];
    let mut span = [0u8; 8];
    // All-zero ids are invalid in OTLP; the odds are nil, but cheap to rule out.
    while trace == [0; 16] {
        rng.fill(&mut trace[..]);
    }
    while span == [0; 8] {
        rng.fill(&mut span[..]);
    }
    (hex(&trace), hex(&span))
}

impl Tracker {
    /// Starts from what the store kept.
    pub fn restore(open: impl IntoIterator<Item = (String, Open)>, last_seq: u64) -> Self {
        Self {
            open: open.into_iter().collect(),
            last_seq,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Gives `record` its context; pushes what changed in `changes`.
    pub fn enrich(&mut self, record: &mut Record, changes: &mut Vec<Change>) {
        let event = &record.event;
        if event.seq < self.last_seq && !matches!(event.kind, EventKind::Gap { .. }) {
            // The relay's journal was reset: its circuit numbers start over.
            for key in self.open.keys().filter(|k| k.starts_with("c/")) {
                changes.push(Change::Remove(key.clone()));
            }
            self.open.retain(|k, _| !k.starts_with("c/"));
        }
        self.last_seq = event.seq;
        let at_ms = event.ts.unix_millis();
        use EventKind::*;
        record.ctx = match &event.kind {
            CircuitOpened { circuit_id, .. } => {
                Some(self.begin(circuit_key(*circuit_id), at_ms, changes))
            }
            CircuitClosed {
                circuit_id,
                duration_ms,
                ..
            } => {
                let start = at_ms.saturating_sub(*duration_ms);
                let mut ctx = self.end(circuit_key(*circuit_id), start, changes);
                if let Some(began) = ctx.began.as_mut() {
                    // The duration is the relay's own measure of the span.
                    began.at_ms = start;
                }
                Some(ctx)
            }
            ReservationCreated { peer_id, .. } => {
                Some(self.begin(reservation_key(peer_id), at_ms, changes))
            }
            ReservationRenewed {
                peer_id,
                expires_at,
                ..
            } => {
                let key = reservation_key(peer_id);
                if !self.open.contains_key(&key) {
                    // Begun before this sidecar was there.
                    self.begin(key.clone(), at_ms, changes);
                    if let Some(open) = self.open.get_mut(&key) {
                        open.began.seen = false;
                    }
                }
                let open = self.open.get_mut(&key).expect("just made sure");
                if open.began.renewals.len() < MAX_RENEWALS {
                    open.began.renewals.push((at_ms, *expires_at));
                } else {
                    open.began.renewals_dropped += 1;
                }
                changes.push(Change::Put(key, open.clone()));
                Some(Context {
                    trace_id: open.trace_id.clone(),
                    span_id: open.span_id.clone(),
                    began: None,
                })
            }
            ReservationExpired { peer_id, .. } | ReservationClosed { peer_id, .. } => {
                Some(self.end(reservation_key(peer_id), at_ms, changes))
            }
            ReservationDenied { .. }
            | CircuitDenied { .. }
            | RequestDenied { .. }
            | PeerBanned { .. }
            | AddressBanned { .. }
            | RateLimited { .. }
            | AddressRateLimited { .. } => {
                let (trace_id, span_id) = new_ids();
                Some(Context {
                    trace_id,
                    span_id,
                    began: None,
                })
            }
            _ => None,
        };
    }

    fn begin(&mut self, key: String, at_ms: u64, changes: &mut Vec<Change>) -> Context {
        if self.open.len() >= MAX_OPEN && !self.open.contains_key(&key) {
            self.evict_oldest(changes);
        }
        let (trace_id, span_id) = new_ids();
        let open = Open {
            trace_id: trace_id.clone(),
            span_id: span_id.clone(),
            began: Began {
                at_ms,
                seen: true,
                renewals: Vec::new(),
                renewals_dropped: 0,
            },
        };
        self.open.insert(key.clone(), open.clone());
        changes.push(Change::Put(key, open));
        Context {
            trace_id,
            span_id,
            began: None,
        }
    }

    /// The context of the span `key` ends, with how it began; a span whose
    /// opening was not seen begins at `unseen_start`.
    fn end(&mut self, key: String, unseen_start: u64, changes: &mut Vec<Change>) -> Context {
        match self.open.remove(&key) {
            Some(open) => {
                changes.push(Change::Remove(key));
                Context {
                    trace_id: open.trace_id,
                    span_id: open.span_id,
                    began: Some(open.began),
                }
            }
            None => {
                let (trace_id, span_id) = new_ids();
                Context {
                    trace_id,
                    span_id,
                    began: Some(Began {
                        at_ms: unseen_start,
                        seen: false,
                        renewals: Vec::new(),
                        renewals_dropped: 0,
                    }),
                }
            }
        }
    }

    fn evict_oldest(&mut self, changes: &mut Vec<Change>) {
        if let Some(key) = self
            .open
            .iter()
            .min_by_key(|(_, open)| open.began.at_ms)
            .map(|(key, _)| key.clone())
        {
            self.open.remove(&key);
            changes.push(Change::Remove(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bsv_p2p_proto::{CircuitEnd, Event, Timestamp};

    fn record(seq: u64, ms: u64, kind: EventKind) -> Record {
        Record {
            event: Event {
                seq,
                ts: Timestamp::from_unix_millis(ms),
                kind,
            },
            ctx: None,
        }
    }

    fn opened(seq: u64, ms: u64, id: u64) -> Record {
        record(
            seq,
            ms,
            EventKind::CircuitOpened {
                circuit_id: id,
                src: "s".into(),
                dst: "d".into(),
                limit_duration_ms: None,
                limit_bytes: None,
            },
        )
    }

    fn closed(seq: u64, ms: u64, id: u64, duration_ms: u64) -> Record {
        record(
            seq,
            ms,
            EventKind::CircuitClosed {
                circuit_id: id,
                src: "s".into(),
                dst: "d".into(),
                bytes_src_to_dst: 1,
                bytes_dst_to_src: 2,
                duration_ms,
                reason: CircuitEnd::Done,
                limit_duration_ms: None,
                limit_bytes: None,
            },
        )
    }

    #[test]
    fn a_circuit_is_one_span_from_open_to_close() {
        let mut tracker = Tracker::default();
        let mut changes = Vec::new();
        let mut open = opened(1, 1_000, 5);
        tracker.enrich(&mut open, &mut changes);
        let mut close = closed(2, 4_000, 5, 3_000);
        tracker.enrich(&mut close, &mut changes);
        let (o, c) = (open.ctx.unwrap(), close.ctx.unwrap());
        assert_eq!((&o.trace_id, &o.span_id), (&c.trace_id, &c.span_id));
        let began = c.began.unwrap();
        assert_eq!(began.at_ms, 1_000);
        assert!(began.seen);
        assert_eq!(tracker.len(), 0);
        assert_eq!(changes.len(), 2);
    }

    #[test]
    fn a_close_without_its_open_begins_at_its_duration() {
        let mut tracker = Tracker::default();
        let mut close = closed(9, 10_000, 5, 2_500);
        tracker.enrich(&mut close, &mut Vec::new());
        let began = close.ctx.unwrap().began.unwrap();
        assert_eq!(began.at_ms, 7_500);
        assert!(!began.seen);
    }

    #[test]
    fn renewals_become_span_events_and_are_bounded() {
        let mut tracker = Tracker::default();
        let mut changes = Vec::new();
        let peer = "p".to_string();
        let mut created = record(
            1,
            100,
            EventKind::ReservationCreated {
                peer_id: peer.clone(),
                expires_at: 10,
                addrs: vec![],
            },
        );
        tracker.enrich(&mut created, &mut changes);
        for i in 0..(MAX_RENEWALS as u64 + 3) {
            let mut renewed = record(
                2 + i,
                200 + i,
                EventKind::ReservationRenewed {
                    peer_id: peer.clone(),
                    expires_at: 20 + i,
                    addrs: vec![],
                },
            );
            tracker.enrich(&mut renewed, &mut changes);
            assert_eq!(
                renewed.ctx.unwrap().span_id,
                created.ctx.as_ref().unwrap().span_id
            );
        }
        let mut expired = record(
            100,
            900,
            EventKind::ReservationExpired {
                peer_id: peer,
                reason: None,
            },
        );
        tracker.enrich(&mut expired, &mut changes);
        let began = expired.ctx.unwrap().began.unwrap();
        assert_eq!(began.at_ms, 100);
        assert_eq!(began.renewals.len(), MAX_RENEWALS);
        assert_eq!(began.renewals[0], (200, 20));
        assert_eq!(began.renewals_dropped, 3);
    }

    #[test]
    fn a_journal_reset_forgets_open_circuits() {
        let mut tracker = Tracker::default();
        let mut changes = Vec::new();
        let mut open = opened(50, 1_000, 1);
        tracker.enrich(&mut open, &mut changes);
        // The relay started over: circuit 1 is another circuit now.
        let mut close = closed(3, 2_000, 1, 10);
        tracker.enrich(&mut close, &mut changes);
        assert_ne!(open.ctx.unwrap().span_id, close.ctx.unwrap().span_id);
    }

    #[test]
    fn open_spans_are_bounded() {
        let mut tracker = Tracker::default();
        let mut changes = Vec::new();
        for id in 0..(MAX_OPEN as u64 + 10) {
            let mut open = opened(id + 1, id, id);
            tracker.enrich(&mut open, &mut changes);
        }
        assert_eq!(tracker.len(), MAX_OPEN);
        // The oldest went first.
        let mut close = closed(MAX_OPEN as u64 + 20, 1_000_000, 0, 1);
        tracker.enrich(&mut close, &mut changes);
        assert!(!close.ctx.unwrap().began.unwrap().seen);
    }
}
