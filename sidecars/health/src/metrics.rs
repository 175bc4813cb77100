//! `/metrics`: the relay's `stats` and `status` translated into the
//! Prometheus text exposition format (version 0.0.4), plus the sidecar's
//! own view of the relay (reachable or not, how long reading it takes) and
//! its own process.
//!
//! Names follow Prometheus conventions: everything the relay reports is
//! `bsv_p2p_*` (the guide's `bsv_p2p_reservations`, `bsv_p2p_connections`,
//! `bsv_p2p_errors_total` among them), the sidecar's own `bsv_p2p_health_*`;
//! base units (seconds, bytes) in the name; counters end in `_total`. Labels
//! only take values from closed or slowly growing vocabularies (denial
//! reasons, transports, error kinds, routes) — never peer ids. Each family
//! is written once, with its HELP and TYPE, by [`Exposition`]; README.md
//! lists every one.

use std::fmt::{Display, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bsv_p2p_proto::{StatsResult, StatusResult};

use crate::guard::Gate;
use crate::link::{Calls, Link};
use crate::process::Usage;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Error kinds the relay counts today, written even at zero so that
/// `rate(bsv_p2p_errors_total[5m])` has a series to work on from the start.
const KNOWN_ERROR_KINDS: &[&str] = &["incoming_connection", "listener", "outgoing_connection"];

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// The text being built, one family at a time.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let text = text
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{label}=\"{text}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: impl Display) {
        debug_assert!(name.ends_with("_total"), "{name}");
        self.family(name, Kind::Counter, help);
        self.sample(name, &[], value);
    }

    /// One family, one sample per value of `label`.
    fn labelled<'a, V: Display>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, V)>,
    ) {
        self.family(name, kind, help);
        for (text, value) in samples {
            self.sample(name, &[(label, text)], value);
        }
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Durations of requests to the relay, in fixed buckets from 100 µs to 5 s.
pub struct Histogram {
    /// Observations per bucket (not cumulative), the last one above every bound.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

const BOUNDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BOUNDS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut Exposition, name: &str, labels: &[(&str, &str)]) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = BOUNDS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            out.sample(&bucket, &with_le, cumulative);
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        out.sample(&format!("{name}_sum"), labels, sum);
        out.sample(&format!("{name}_count"), labels, cumulative);
    }
}

/// Everything the relay reports, when it could be read.
pub fn relay(out: &mut Exposition, status: &StatusResult, stats: &StatsResult) {
    out.labelled(
        "bsv_p2p_relay_info",
        Kind::Gauge,
        "Always 1; the relay's version as a label.",
        "version",
        [(status.version.as_str(), 1)],
    );
    out.gauge(
        "bsv_p2p_uptime_seconds",
        "Seconds since the relay started.",
        stats.uptime_secs,
    );

    let c = &stats.connections;
    out.gauge("bsv_p2p_connections", "Connections open now.", c.active);
    out.gauge(
        "bsv_p2p_peers",
        "Distinct peers connected now.",
        status.counts.peers,
    );
    out.labelled(
        "bsv_p2p_connections_by_direction",
        Kind::Gauge,
        "Connections open now, by who dialled (inbound: the peer).",
        "direction",
        c.by_direction.iter().map(|(d, n)| {
            let d = match d {
                bsv_p2p_proto::Direction::Inbound => "inbound",
                bsv_p2p_proto::Direction::Outbound => "outbound",
            };
            (d, *n)
        }),
    );
    out.labelled(
        "bsv_p2p_connections_by_transport",
        Kind::Gauge,
        "Connections open now, by transport.",
        "transport",
        c.by_transport.iter().map(|(t, n)| (t.as_str(), *n)),
    );
    out.counter(
        "bsv_p2p_connections_opened_total",
        "Connections opened since the relay started.",
        c.opened_total,
    );
    out.counter(
        "bsv_p2p_connections_closed_total",
        "Connections closed since the relay started.",
        c.closed_total,
    );

    let r = &stats.reservations;
    out.gauge(
        "bsv_p2p_reservations",
        "Relay reservations held now.",
        r.active,
    );
    out.gauge(
        "bsv_p2p_reservations_max",
        "The configured cap on reservations held at once (relay.reservations.max).",
        r.max,
    );
    out.counter(
        "bsv_p2p_reservations_created_total",
        "Reservations granted since the relay started (renewals not included).",
        r.created,
    );
    out.counter(
        "bsv_p2p_reservations_renewed_total",
        "Reservations renewed since the relay started.",
        r.renewed,
    );
    out.counter(
        "bsv_p2p_reservations_expired_total",
        "Reservations that ran out their TTL.",
        r.expired,
    );
    out.counter(
        "bsv_p2p_reservations_closed_total",
        "Reservations ended other than by expiry (the peer disconnected, was banned, ...).",
        r.closed,
    );
    out.labelled(
        "bsv_p2p_reservations_denied_total",
        Kind::Counter,
        "Reservation requests refused, by reason.",
        "reason",
        r.denied.iter().map(|(k, n)| (k.as_str(), *n)),
    );

    let ci = &stats.circuits;
    out.gauge("bsv_p2p_circuits", "Circuits open now.", ci.active);
    out.gauge(
        "bsv_p2p_circuits_max",
        "The configured cap on circuits open at once (relay.circuits.max).",
        ci.max,
    );
    out.counter(
        "bsv_p2p_circuits_opened_total",
        "Circuits opened since the relay started.",
        ci.opened,
    );
    out.counter(
        "bsv_p2p_circuits_closed_total",
        "Circuits closed since the relay started.",
        ci.closed,
    );
    out.labelled(
        "bsv_p2p_circuits_closed_by_reason_total",
        Kind::Counter,
        "Circuits closed, by why they ended (done, data_limit, duration_limit, reset, shutdown).",
        "reason",
        ci.closed_by_reason.iter().map(|(k, n)| (k.as_str(), *n)),
    );
    out.labelled(
        "bsv_p2p_circuits_denied_total",
        Kind::Counter,
        "Circuit requests refused, by reason.",
        "reason",
        ci.denied.iter().map(|(k, n)| (k.as_str(), *n)),
    );
    out.labelled(
        "bsv_p2p_relayed_bytes_total",
        Kind::Counter,
        "Bytes relayed through circuits, by direction (src_to_dst: from the dialling peer).",
        "direction",
        [
            ("src_to_dst", stats.bytes_relayed.src_to_dst),
            ("dst_to_src", stats.bytes_relayed.dst_to_src),
        ],
    );
    out.labelled(
        "bsv_p2p_denials_total",
        Kind::Counter,
        "Reservation and circuit refusals together, by reason.",
        "reason",
        stats.denials.iter().map(|(k, n)| (k.as_str(), *n)),
    );
    let mut errors: Vec<(&str, u64)> = KNOWN_ERROR_KINDS
        .iter()
        .filter(|k| !stats.errors.contains_key(**k))
        .map(|k| (*k, 0))
        .collect();
    errors.extend(stats.errors.iter().map(|(k, n)| (k.as_str(), *n)));
    errors.sort_unstable();
    out.labelled(
        "bsv_p2p_errors_total",
        Kind::Counter,
        "Failures that are not refusals (listener errors, failed handshakes, ...), by kind.",
        "kind",
        errors,
    );

    let p = &stats.process;
    out.gauge(
        "bsv_p2p_process_resident_memory_bytes",
        "Resident memory of the relay process.",
        p.rss_bytes,
    );
    out.counter(
        "bsv_p2p_process_cpu_seconds_total",
        "User and system CPU time of the relay process.",
        p.cpu_seconds,
    );
    out.gauge(
        "bsv_p2p_process_open_fds",
        "Open file descriptors of the relay process.",
        p.open_fds,
    );
    out.gauge(
        "bsv_p2p_process_threads",
        "Threads of the relay process.",
        p.threads,
    );
    out.gauge(
        "bsv_p2p_process_start_time_seconds",
        "Start time of the relay process, in Unix seconds.",
        p.start_time_secs,
    );
    out.counter(
        "bsv_p2p_events_total",
        "Events the relay has numbered in its journal (the newest sequence number).",
        stats.events.last_seq,
    );
    out.gauge(
        "bsv_p2p_journal_events",
        "Events the journal holds for subscribers to resume from.",
        stats.events.journal_len,
    );
    out.counter(
        "bsv_p2p_log_lines_dropped_total",
        "Log lines the relay dropped because its log reader did not keep up.",
        stats.log.lines_dropped,
    );
}

/// What the sidecar itself knows, written whether or not the relay answered.
pub struct Own<'a> {
    pub relay_up: bool,
    pub scrape_duration: Duration,
    pub scrape_errors: u64,
    pub link: &'a Link,
    /// Responses served, by route and status code.
    pub http: Vec<(&'static str, u16, u64)>,
    pub gate: &'a Gate,
    pub process: Option<Usage>,
}

pub fn own(out: &mut Exposition, own: &Own) {
    out.gauge(
        "bsv_p2p_relay_up",
        "1 when the relay answered through its control socket for this scrape, 0 when it could not be read.",
        u8::from(own.relay_up),
    );
    out.gauge(
        "bsv_p2p_health_scrape_duration_seconds",
        "How long this scrape took to read the relay (0 when a recent enough reading was shared).",
        own.scrape_duration.as_secs_f64(),
    );
    out.counter(
        "bsv_p2p_health_scrape_errors_total",
        "Scrapes of /metrics that could not read the relay.",
        own.scrape_errors,
    );
    out.counter(
        "bsv_p2p_health_relay_outages_total",
        "Times the relay went from reachable to unreachable.",
        own.link.outages(),
    );
    let calls: [(&str, &Calls); 2] = [
        ("stats", own.link.stats_calls()),
        ("status", own.link.status_calls()),
    ];
    out.labelled(
        "bsv_p2p_health_relay_request_errors_total",
        Kind::Counter,
        "Requests to the relay's control socket that failed, by method.",
        "method",
        calls
            .iter()
            .map(|(m, c)| (*m, c.errors.load(Ordering::Relaxed))),
    );
    let name = "bsv_p2p_health_relay_request_duration_seconds";
    out.family(
        name,
        Kind::Histogram,
        "Time the relay took to answer control requests, by method.",
    );
    for (method, c) in calls {
        c.duration.write(out, name, &[("method", method)]);
    }
    out.family(
        "bsv_p2p_health_http_requests_total",
        Kind::Counter,
        "HTTP responses served by the sidecar, by route and status code.",
    );
    for (route, code, n) in &own.http {
        out.sample(
            "bsv_p2p_health_http_requests_total",
            &[("route", route), ("code", &code.to_string())],
            n,
        );
    }
    out.gauge(
        "bsv_p2p_health_http_connections",
        "HTTP connections open now.",
        own.gate.open(),
    );
    out.gauge(
        "bsv_p2p_health_http_connections_max",
        "The cap on HTTP connections open at once (--max-connections).",
        own.gate.limits().max_connections,
    );
    out.labelled(
        "bsv_p2p_health_http_connections_shed_total",
        Kind::Counter,
        "HTTP connections the sidecar closed or refused, by why (cap: to make room at the cap; request_timeout, write_timeout).",
        "reason",
        own.gate.shed().map(|(why, n)| (why.as_str(), n)),
    );

    if let Some(p) = own.process {
        out.counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            p.cpu_seconds,
        );
        out.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes,
        );
        out.gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        );
        out.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds,
        );
        if let Some(max) = p.max_fds {
            out.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            );
        }
        out.gauge(
            "process_threads",
            "Number of OS threads in the process.",
            p.threads,
        );
        out.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_secs,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bsv_p2p_proto::{Counts, DenialReason, Timestamp};
    use std::collections::BTreeSet;

    fn status() -> StatusResult {
        StatusResult {
            peer_id: "12D3KooWRelay".into(),
            version: "0.1.0".into(),
            uptime_secs: 60,
            started_at: Timestamp::from_unix_millis(1_738_324_800_000),
            listen_addrs: vec![],
            announce_addrs: vec![],
            relay_addrs: vec![],
            counts: Counts {
                connections: 3,
                peers: 2,
                reservations: 1,
                circuits: 0,
            },
        }
    }

    fn rendered() -> String {
        let mut stats = StatsResult::default();
        stats.connections.active = 3;
        stats.reservations.active = 1;
        stats
            .reservations
            .denied
            .insert(DenialReason::ReservationsFull, 2);
        stats.errors.insert("listener".into(), 4);
        stats.errors.insert("journal_\"write\"".into(), 1);
        let mut out = Exposition::default();
        relay(&mut out, &status(), &stats);
        out.finish()
    }

    #[test]
    fn every_family_has_help_and_type_and_counters_end_in_total() {
        let text = rendered();
        let mut typed = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(typed.insert(name.to_string()), "{name} typed twice");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                assert!(
                    text.contains(&format!("# HELP {name} ")),
                    "{name} has no HELP"
                );
            }
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(typed.contains(name), "{name} has no TYPE");
        }
    }

    #[test]
    fn the_guides_names_carry_the_relays_numbers() {
        let text = rendered();
        assert!(text.contains("\nbsv_p2p_connections 3\n"), "{text}");
        assert!(text.contains("\nbsv_p2p_reservations 1\n"), "{text}");
        assert!(
            text.contains("bsv_p2p_reservations_denied_total{reason=\"reservations_full\"} 2"),
            "{text}"
        );
        assert!(text.contains("bsv_p2p_errors_total{kind=\"listener\"} 4"));
        // Known kinds are written at zero; label values are escaped.
        assert!(text.contains("bsv_p2p_errors_total{kind=\"incoming_connection\"} 0"));
        assert!(text.contains("bsv_p2p_errors_total{kind=\"journal_\\\"write\\\"\"} 1"));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(10));
        let mut out = Exposition::default();
        h.write(&mut out, "x_seconds", &[("method", "status")]);
        let text = out.finish();
        assert!(text.contains("x_seconds_bucket{method=\"status\",le=\"0.0001\"} 1\n"));
        assert!(text.contains("x_seconds_bucket{method=\"status\",le=\"0.005\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{method=\"status\",le=\"5\"} 2\n"));
        assert!(text.contains("x_seconds_bucket{method=\"status\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("x_seconds_count{method=\"status\"} 3\n"));
        assert!(text.contains("x_seconds_sum{method=\"status\"} 10.00305\n"));
    }
}
