//! Records as OTLP spans. A circuit is a span from `circuit_opened` to
//! `circuit_closed` (its start is the close time less the relay's measured
//! duration, so a sidecar that started mid-circuit still has it right), a
//! reservation a span from `reservation_created` to its close or expiry
//! with each renewal as a span event, and a refusal a span of no length
//! with the reason, status error. Other events make no span.

use std::sync::Arc;

use bsv_p2p_proto::EventKind;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::{attributes, int, kv, nanos, scope, string};
use crate::record::{unhex, Record};

/// The span a record ends, if it ends one.
pub fn span(record: &Record) -> Option<Span> {
    let ctx = record.ctx.as_ref()?;
    let end_ms = record.event.ts.unix_millis();
    use EventKind::*;
    let (name, error) = match &record.event.kind {
        CircuitClosed { .. } => ("circuit", None),
        ReservationClosed { .. } | ReservationExpired { .. } => ("reservation", None),
        ReservationDenied { reason, .. }
        | CircuitDenied { reason, .. }
        | RequestDenied { reason, .. } => (record.kind(), Some(reason.as_str().to_string())),
        PeerBanned { reason, .. } | AddressBanned { reason, .. } => {
            (record.kind(), Some(reason.clone()))
        }
        RateLimited { what, .. } | AddressRateLimited { what, .. } => {
            (record.kind(), Some(format!("{what} rate limited")))
        }
        _ => return None,
    };
    let mut span = Span {
        trace_id: unhex::<16>(&ctx.trace_id)?.to_vec(),
        span_id: unhex::<8>(&ctx.span_id)?.to_vec(),
        name: name.into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: nanos(end_ms),
        end_time_unix_nano: nanos(end_ms),
        attributes: attributes(record),
        flags: 1,
        ..Default::default()
    };
    if let Some(began) = &ctx.began {
        span.start_time_unix_nano = nanos(began.at_ms.min(end_ms));
        if !began.seen {
            span.attributes
                .push(kv("bsv_p2p.start_seen", super::any(&false.into())?));
        }
        span.events = began
            .renewals
            .iter()
            .map(|(at, expires)| Event {
                time_unix_nano: nanos(*at),
                name: "reservation_renewed".into(),
                attributes: vec![kv("bsv_p2p.expires_at", int(*expires))],
                ..Default::default()
            })
            .collect();
        span.dropped_events_count = u32::try_from(began.renewals_dropped).unwrap_or(u32::MAX);
    }
    if name == "circuit" || name == "reservation" {
        span.attributes.push(kv(
            "bsv_p2p.duration_ms",
            int(end_ms.saturating_sub(began_ms(record).unwrap_or(end_ms))),
        ));
    }
    span.status = Some(match error {
        Some(message) => Status {
            message,
            code: StatusCode::Error as i32,
        },
        None => Status {
            message: String::new(),
            code: StatusCode::Unset as i32,
        },
    });
    // A circuit's end reason is its own attribute already; say it once more
    // where tools look first.
    if let CircuitClosed { reason, .. } = &record.event.kind {
        span.attributes
            .push(kv("bsv_p2p.end_reason", string(reason.as_str())));
    }
    Some(span)
}

fn began_ms(record: &Record) -> Option<u64> {
    Some(record.ctx.as_ref()?.began.as_ref()?.at_ms)
}

/// The spans `batch` ends; None if it ends none.
pub fn request(batch: &[Arc<Record>], resource: Resource) -> Option<ExportTraceServiceRequest> {
    let spans: Vec<Span> = batch.iter().filter_map(|r| span(r)).collect();
    if spans.is_empty() {
        return None;
    }
    Some(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Began, Context};
    use bsv_p2p_proto::{CircuitEnd, DenialReason, Event, Timestamp};

    fn ctx(began: Option<Began>) -> Option<Context> {
        Some(Context {
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: "b7ad6b7169203331".into(),
            began,
        })
    }

    #[test]
    fn a_closed_circuit_is_a_span_with_its_figures() {
        let r = Record {
            event: Event {
                seq: 10,
                ts: Timestamp::from_unix_millis(5_000),
                kind: EventKind::CircuitClosed {
                    circuit_id: 2,
                    src: "s".into(),
                    dst: "d".into(),
                    bytes_src_to_dst: 100,
                    bytes_dst_to_src: 200,
                    duration_ms: 1_500,
                    reason: CircuitEnd::DataLimit,
                    limit_duration_ms: None,
                    limit_bytes: None,
                },
            },
            ctx: ctx(Some(Began {
                at_ms: 3_500,
                seen: false,
                renewals: vec![],
                renewals_dropped: 0,
            })),
        };
        let s = span(&r).unwrap();
        assert_eq!(s.name, "circuit");
        assert_eq!(s.start_time_unix_nano, 3_500_000_000);
        assert_eq!(s.end_time_unix_nano, 5_000_000_000);
        let keys: Vec<&str> = s.attributes.iter().map(|a| a.key.as_str()).collect();
        for k in [
            "bsv_p2p.src",
            "bsv_p2p.dst",
            "bsv_p2p.bytes_src_to_dst",
            "bsv_p2p.bytes_dst_to_src",
            "bsv_p2p.duration_ms",
            "bsv_p2p.end_reason",
            "bsv_p2p.start_seen",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn renewals_are_span_events_and_refusals_are_errors() {
        let r = Record {
            event: Event {
                seq: 10,
                ts: Timestamp::from_unix_millis(9_000),
                kind: EventKind::ReservationExpired {
                    peer_id: "p".into(),
                    reason: None,
                },
            },
            ctx: ctx(Some(Began {
                at_ms: 1_000,
                seen: true,
                renewals: vec![(2_000, 50), (3_000, 60)],
                renewals_dropped: 4,
            })),
        };
        let s = span(&r).unwrap();
        assert_eq!(s.events.len(), 2);
        assert_eq!(s.events[1].time_unix_nano, 3_000_000_000);
        assert_eq!(s.dropped_events_count, 4);

        let denied = Record {
            event: Event {
                seq: 11,
                ts: Timestamp::from_unix_millis(9_500),
                kind: EventKind::ReservationDenied {
                    peer_id: "p".into(),
                    reason: DenialReason::NoReservation,
                },
            },
            ctx: ctx(None),
        };
        let s = span(&denied).unwrap();
        assert_eq!(s.start_time_unix_nano, s.end_time_unix_nano);
        let status = s.status.unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "no_reservation");
    }

    #[test]
    fn events_that_end_nothing_make_no_request() {
        let r = Record {
            event: Event::new(
                1,
                EventKind::ConnectionOpened {
                    peer_id: "p".into(),
                    direction: bsv_p2p_proto::Direction::Inbound,
                    transport: bsv_p2p_proto::Transport::Tcp,
                    remote_addr: "/ip4/127.0.0.1/tcp/1".into(),
                },
            ),
            ctx: None,
        };
        assert!(request(&[Arc::new(r)], Resource::default()).is_none());
    }
}
