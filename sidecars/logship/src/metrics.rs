//! The sidecar's own figures at `/metrics` (Prometheus, through proto's
//! [`exposition`](bsv_p2p_proto::exposition) like every sidecar), and
//! `/health`: 200 while the relay is read and every destination takes what
//! it is sent, 503 with the reasons otherwise.
//!
//! The server is small and bounded: at most [`MAX_CONNECTIONS`] connections,
//! each closed after [`CONNECTION_DEADLINE`] whatever it is doing.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_std::net::TcpListener;
use bsv_p2p_proto::exposition::{Figures, Page, Source};

use crate::ingest::IngestFigures;
use crate::shipper;
use crate::store::Store;

pub const MAX_CONNECTIONS: usize = 32;
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct State {
    pub ingest: Arc<IngestFigures>,
    pub destinations: Vec<Arc<shipper::Figures>>,
    pub store: Arc<Store>,
    pub max_records: u64,
}

struct Figured(State);

impl Source for Figured {
    fn write(&self, out: &mut Figures) -> fmt::Result {
        let s = &self.0;
        let i = &s.ingest;
        let next = i.next_index.load(Ordering::Relaxed);
        let last_seq = i.last_seq.load(Ordering::Relaxed);
        out.gauge(
            "bsv_p2p_logship_relay_connected",
            "1 while the relay's event stream is being read.",
            i.connected.load(Ordering::Relaxed),
        )?;
        out.counter(
            "bsv_p2p_logship_events_received_total",
            "Relay events taken into the buffer since start.",
            i.received.load(Ordering::Relaxed),
        )?;
        out.counter(
            "bsv_p2p_logship_relay_events_lost_total",
            "Events the relay's journal pruned before they were read (its gap events).",
            i.relay_lost.load(Ordering::Relaxed),
        )?;
        out.gauge(
            "bsv_p2p_logship_last_event_seq",
            "The relay sequence number of the newest event taken in.",
            last_seq,
        )?;
        out.gauge(
            "bsv_p2p_logship_buffer_records",
            "Records in the on-disk buffer.",
            i.buffered.load(Ordering::Relaxed),
        )?;
        out.gauge(
            "bsv_p2p_logship_buffer_records_max",
            "The buffer's bound in records (--buffer-records).",
            s.max_records,
        )?;
        out.gauge(
            "bsv_p2p_logship_buffer_disk_bytes",
            "Bytes the buffer's files take on disk.",
            s.store.size_on_disk(),
        )?;
        out.counter(
            "bsv_p2p_logship_buffer_write_errors_total",
            "Writes to the buffer that failed and were tried again.",
            i.store_errors.load(Ordering::Relaxed),
        )?;
        let d = &s.destinations;
        let name = |f: &Arc<shipper::Figures>| f.name.clone();
        out.gauges(
            "bsv_p2p_logship_destination_up",
            "1 if the destination took the last batch sent to it (or nothing was sent yet).",
            "destination",
            d.iter().map(|f| (name(f), f.up.load(Ordering::Relaxed))),
        )?;
        out.gauges(
            "bsv_p2p_logship_buffered_records",
            "Records in the buffer the destination has not accepted yet.",
            "destination",
            d.iter().map(|f| {
                (
                    name(f),
                    next.saturating_sub(f.cursor.load(Ordering::Relaxed)),
                )
            }),
        )?;
        out.gauges(
            "bsv_p2p_logship_lag_events",
            "Relay events taken in and not yet accepted by the destination (by sequence number).",
            "destination",
            d.iter().map(|f| {
                let done = f.last_seq.load(Ordering::Relaxed);
                let waiting = next > f.cursor.load(Ordering::Relaxed);
                (
                    name(f),
                    if waiting {
                        last_seq.saturating_sub(done)
                    } else {
                        0
                    },
                )
            }),
        )?;
        out.counters(
            "bsv_p2p_logship_delivered_total",
            "Records the destination accepted.",
            "destination",
            d.iter()
                .map(|f| (name(f), f.delivered.load(Ordering::Relaxed))),
        )?;
        out.counters(
            "bsv_p2p_logship_retried_total",
            "Deliveries that failed for now and were tried again (down, 429, 502, 503, 504, timeouts).",
            "destination",
            d.iter().map(|f| (name(f), f.retried.load(Ordering::Relaxed))),
        )?;
        out.counters(
            "bsv_p2p_logship_rejected_total",
            "Records the destination refused for good (400, 413 for one record, partial success) and that are not sent again.",
            "destination",
            d.iter().map(|f| (name(f), f.rejected.load(Ordering::Relaxed))),
        )?;
        out.counters(
            "bsv_p2p_logship_dropped_total",
            "Records dropped unsent because the buffer was full.",
            "destination",
            d.iter()
                .map(|f| (name(f), f.dropped.load(Ordering::Relaxed))),
        )?;
        out.gauges(
            "bsv_p2p_logship_last_success_timestamp_seconds",
            "Unix time the destination last accepted a batch; 0 if never since start.",
            "destination",
            d.iter().map(|f| {
                (
                    name(f),
                    f.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0,
                )
            }),
        )?;
        if let Some(usage) = bsv_p2p_proto::process::own() {
            out.process(&usage, bsv_p2p_proto::process::open_file_limit())?;
        }
        Ok(())
    }
}

/// Why the sidecar is not healthy, if it is not.
fn problems(state: &State) -> Vec<String> {
    let mut out = Vec::new();
    if !state.ingest.connected.load(Ordering::Relaxed) {
        out.push("the relay's event stream is not being read".to_string());
    }
    for f in &state.destinations {
        if !f.up.load(Ordering::Relaxed) {
            out.push(format!("{} is not accepting records", f.name));
        }
    }
    out
}

pub async fn serve(listener: TcpListener, state: State) -> Result<(), String> {
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    log::info!("serving http://{bound}/metrics and /health");
    let mut app = tide::with_state(state);
    app.at("/metrics")
        .get(|req: tide::Request<State>| async move {
            let mut page = Page::new();
            page.add(Figured(req.state().clone()));
            let accept = req.header("Accept").map(|v| v.as_str().to_string());
            Ok(match page.render(accept.as_deref()) {
                Ok((content_type, body)) => tide::Response::builder(200)
                    .content_type(content_type)
                    .body(body)
                    .build(),
                Err(_) => tide::Response::builder(500)
                    .body("the figures could not be written\n")
                    .build(),
            })
        });
    app.at("/health")
        .get(|req: tide::Request<State>| async move {
            let problems = problems(req.state());
            let body = serde_json::json!({
                "status": if problems.is_empty() { "ok" } else { "degraded" },
                "problems": problems,
            });
            Ok(
                tide::Response::builder(if problems.is_empty() { 200 } else { 503 })
                    .content_type(tide::http::mime::JSON)
                    .body(body.to_string())
                    .build(),
            )
        });
    let serve = move |stream| {
        let app = app.clone();
        async move {
            let _ = async_h1::accept(stream, |req| async { app.respond(req).await }).await;
        }
    };
    Err(bsv_p2p_proto::exposition::accept_bounded(
        listener,
        MAX_CONNECTIONS,
        CONNECTION_DEADLINE,
        serve,
    )
    .await)
}
