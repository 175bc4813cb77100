//! Records as OTLP log records: the event's time as both `time_unix_nano`
//! and `observed_time_unix_nano` (a record sent again is the same record),
//! its kind as `event_name`, a sentence as the body, every field as a
//! `bsv_p2p.*` attribute, and the circuit's or reservation's trace and span
//! ids.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::{attributes, nanos, scope, string};
use crate::record::{unhex, Level, Record};

pub fn record(record: &Record) -> LogRecord {
    let time = nanos(record.event.ts.unix_millis());
    let (number, text) = match record.level() {
        Level::Info => (SeverityNumber::Info, "INFO"),
        Level::Warn => (SeverityNumber::Warn, "WARN"),
        Level::Error => (SeverityNumber::Error, "ERROR"),
    };
    let mut out = LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: time,
        severity_number: number as i32,
        severity_text: text.into(),
        body: Some(string(record.describe())),
        attributes: attributes(record),
        event_name: record.kind().to_string(),
        ..Default::default()
    };
    if let Some(ctx) = &record.ctx {
        if let (Some(trace), Some(span)) = (unhex::<16>(&ctx.trace_id), unhex::<8>(&ctx.span_id)) {
            out.trace_id = trace.to_vec();
            out.span_id = span.to_vec();
            // W3C trace flags: sampled.
            out.flags = 1;
        }
    }
    out
}

pub fn request(batch: &[Arc<Record>], resource: Resource) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: batch.iter().map(|r| record(r)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Context;
    use bsv_p2p_proto::{Event, EventKind, Timestamp};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    #[test]
    fn a_record_keeps_its_time_and_trace() {
        let r = Record {
            event: Event {
                seq: 3,
                ts: Timestamp::from_unix_millis(1_700_000_000_123),
                kind: EventKind::CircuitOpened {
                    circuit_id: 8,
                    src: "a".into(),
                    dst: "b".into(),
                    limit_duration_ms: None,
                    limit_bytes: None,
                },
            },
            ctx: Some(Context {
                trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                span_id: "b7ad6b7169203331".into(),
                began: None,
            }),
        };
        let out = record(&r);
        assert_eq!(out.time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!(out.observed_time_unix_nano, out.time_unix_nano);
        assert_eq!(out.event_name, "circuit_opened");
        assert_eq!(out.trace_id[0], 0x0a);
        assert_eq!(out.span_id.len(), 8);
        let attr = |k: &str| {
            out.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(attr("bsv_p2p.circuit_id"), Some(Value::IntValue(8)));
        assert_eq!(attr("bsv_p2p.seq"), Some(Value::IntValue(3)));
        assert_eq!(attr("bsv_p2p.src"), Some(Value::StringValue("a".into())));
    }
}
