//! Standard output, one JSON object per line in the operator guide's log
//! format: `timestamp` (the event's own time), `level`, `event`, `peerId`,
//! … then the event's other fields, `seq`, and the trace ids when the event
//! belongs to a circuit or reservation. A container runtime or journald
//! takes it from there.

use std::io::Write;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{Map, Value};

use super::{Outcome, Sink};
use crate::record::Record;

pub struct Stdout;

impl Stdout {
    pub fn new() -> Self {
        Stdout
    }
}

/// One record as a line, newline included.
pub fn line(record: &Record) -> String {
    let mut object = Map::new();
    object.insert("timestamp".into(), record.event.ts.to_string().into());
    object.insert("level".into(), record.level().as_str().into());
    object.insert("event".into(), record.kind().into());
    let fields = record.fields();
    if let Some(peer) = fields.get("peerId") {
        object.insert("peerId".into(), peer.clone());
    }
    // The guide's `ttl`: seconds the reservation has left.
    if let Some(expires) = fields.get("expiresAt").and_then(Value::as_u64) {
        let now = record.event.ts.unix_millis() / 1000;
        object.insert("ttl".into(), expires.saturating_sub(now).into());
    }
    for (k, v) in fields {
        object.entry(k).or_insert(v);
    }
    object.insert("seq".into(), record.event.seq.into());
    if let Some(ctx) = &record.ctx {
        object.insert("traceId".into(), ctx.trace_id.clone().into());
        object.insert("spanId".into(), ctx.span_id.clone().into());
    }
    let mut line = Value::Object(object).to_string();
    line.push('\n');
    line
}

impl Sink for Stdout {
    fn send<'a>(&'a mut self, batch: &'a [Arc<Record>]) -> BoxFuture<'a, Outcome> {
        let text: String = batch.iter().map(|r| line(r)).collect();
        // Writing may block on a full pipe: only this destination waits.
        async_std::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => Outcome::Accepted { refused: 0 },
                Err(e) => Outcome::Retry {
                    after: None,
                    why: format!("cannot write to standard output: {e}"),
                },
            }
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Context;
    use bsv_p2p_proto::{Event, EventKind, Timestamp};

    #[test]
    fn lines_follow_the_guides_format() {
        let record = Record {
            event: Event {
                seq: 42,
                ts: Timestamp::from_unix_millis(1_771_527_600_000),
                kind: EventKind::ReservationCreated {
                    peer_id: "12D3KooWpeer".into(),
                    expires_at: 1_771_527_600 + 3600,
                    addrs: vec!["/ip4/1.2.3.4/tcp/4001".into()],
                },
            },
            ctx: Some(Context {
                trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                span_id: "b7ad6b7169203331".into(),
                began: None,
            }),
        };
        let line = line(&record);
        assert!(line.ends_with('\n'));
        assert!(
            line.starts_with(
                r#"{"timestamp":"2026-02-19T19:00:00.000Z","level":"info","event":"reservation_created","peerId":"12D3KooWpeer","ttl":3600,"#
            ),
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["addrs"][0], "/ip4/1.2.3.4/tcp/4001");
        assert_eq!(v["traceId"], "0af7651916cd43dd8448eb211c80319c");
    }
}
