//! `/metrics`: the relay's `stats` and `status` as Prometheus metrics,
//! plus the sidecar's own view of the relay (reachable or not, how long
//! reading it takes) and its own process. Written through proto's
//! [`exposition`](bsv_p2p_proto::exposition) (the `prometheus-client`
//! encoder), as every sidecar's figures are: OpenMetrics to Prometheus,
//! the text format 0.0.4 to anyone else.
//!
//! Names follow Prometheus conventions: everything the relay reports is
//! `bsv_p2p_*` (the guide's `bsv_p2p_reservations`, `bsv_p2p_connections`,
//! `bsv_p2p_errors_total` among them), the sidecar's own `bsv_p2p_health_*`;
//! base units (seconds, bytes) in the name; counters end in `_total`. Labels
//! only take values from closed or slowly growing vocabularies (denial
//! reasons, transports, error kinds, routes) — never a bot's peer id. The
//! one peer id label is `peer_id` on the per-relay `bsv_p2p_federation_*`
//! families: its values are the relays the operator lists in the relay's
//! `federation.peers`, at most [`MAX_FEDERATED_RELAYS`]. README.md lists
//! every family.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bsv_p2p_proto::exposition::{Figures, MetricType, Source};
use bsv_p2p_proto::process::Usage;
use bsv_p2p_proto::{FederationPeer, FederationState, StatsResult, StatusResult};

use crate::config::MAX_FEDERATED_RELAYS;
use crate::guard::Gate;
use crate::link::Link;

/// Error kinds the relay counts today, written even at zero so that
/// `rate(bsv_p2p_errors_total[5m])` has a series to work on from the start.
const KNOWN_ERROR_KINDS: &[&str] = &["incoming_connection", "listener", "outgoing_connection"];

/// Everything the relay reports, when it could be read.
pub struct Relay {
    pub status: Arc<StatusResult>,
    pub stats: Arc<StatsResult>,
}

impl Source for Relay {
    fn write(&self, out: &mut Figures) -> fmt::Result {
        let (status, stats) = (&*self.status, &*self.stats);
        out.gauges(
            "bsv_p2p_relay_info",
            "Always 1; the relay's version as a label.",
            "version",
            [(status.version.as_str(), 1u64)],
        )?;
        out.gauge(
            "bsv_p2p_uptime_seconds",
            "Seconds since the relay started.",
            stats.uptime_secs,
        )?;

        let c = &stats.connections;
        out.gauge("bsv_p2p_connections", "Connections open now.", c.active)?;
        out.gauge(
            "bsv_p2p_peers",
            "Distinct peers connected now.",
            status.counts.peers,
        )?;
        out.gauges(
            "bsv_p2p_connections_by_direction",
            "Connections open now, by who dialled (inbound: the peer).",
            "direction",
            c.by_direction.iter().map(|(d, n)| {
                let d = match d {
                    bsv_p2p_proto::Direction::Inbound => "inbound",
                    bsv_p2p_proto::Direction::Outbound => "outbound",
                };
                (d, *n)
            }),
        )?;
        out.gauges(
            "bsv_p2p_connections_by_transport",
            "Connections open now, by transport.",
            "transport",
            c.by_transport.iter().map(|(t, n)| (t.as_str(), *n)),
        )?;
        out.counter(
            "bsv_p2p_connections_opened_total",
            "Connections opened since the relay started.",
            c.opened_total,
        )?;
        out.counter(
            "bsv_p2p_connections_closed_total",
            "Connections closed since the relay started.",
            c.closed_total,
        )?;

        let r = &stats.reservations;
        out.gauge(
            "bsv_p2p_reservations",
            "Relay reservations held now.",
            r.active,
        )?;
        out.gauge(
            "bsv_p2p_reservations_max",
            "The configured cap on reservations held at once (relay.reservations.max).",
            r.max,
        )?;
        out.counter(
            "bsv_p2p_reservations_created_total",
            "Reservations granted since the relay started (renewals not included).",
            r.created,
        )?;
        out.counter(
            "bsv_p2p_reservations_renewed_total",
            "Reservations renewed since the relay started.",
            r.renewed,
        )?;
        out.counter(
            "bsv_p2p_reservations_expired_total",
            "Reservations that ran out their TTL.",
            r.expired,
        )?;
        out.counter(
            "bsv_p2p_reservations_closed_total",
            "Reservations ended other than by expiry (the peer disconnected, was banned, ...).",
            r.closed,
        )?;
        out.counters(
            "bsv_p2p_reservations_denied_total",
            "Reservation requests refused, by reason.",
            "reason",
            r.denied.iter().map(|(k, n)| (k.as_str(), *n)),
        )?;

        let ci = &stats.circuits;
        out.gauge("bsv_p2p_circuits", "Circuits open now.", ci.active)?;
        out.gauge(
            "bsv_p2p_circuits_max",
            "The configured cap on circuits open at once (relay.circuits.max).",
            ci.max,
        )?;
        out.counter(
            "bsv_p2p_circuits_opened_total",
            "Circuits opened since the relay started.",
            ci.opened,
        )?;
        out.counter(
            "bsv_p2p_circuits_closed_total",
            "Circuits closed since the relay started.",
            ci.closed,
        )?;
        out.counters(
            "bsv_p2p_circuits_closed_by_reason_total",
            "Circuits closed, by why they ended (done, data_limit, duration_limit, reset, shutdown).",
            "reason",
            ci.closed_by_reason.iter().map(|(k, n)| (k.as_str(), *n)),
        )?;
        out.counters(
            "bsv_p2p_circuits_denied_total",
            "Circuit requests refused, by reason.",
            "reason",
            ci.denied.iter().map(|(k, n)| (k.as_str(), *n)),
        )?;
        out.counters(
            "bsv_p2p_relayed_bytes_total",
            "Bytes relayed through circuits, by direction (src_to_dst: from the dialling peer).",
            "direction",
            [
                ("src_to_dst", stats.bytes_relayed.src_to_dst),
                ("dst_to_src", stats.bytes_relayed.dst_to_src),
            ],
        )?;
        out.counters(
            "bsv_p2p_denials_total",
            "Reservation and circuit refusals together, by reason.",
            "reason",
            stats.denials.iter().map(|(k, n)| (k.as_str(), *n)),
        )?;
        let mut errors: Vec<(&str, u64)> = KNOWN_ERROR_KINDS
            .iter()
            .filter(|k| !stats.errors.contains_key(**k))
            .map(|k| (*k, 0))
            .collect();
        errors.extend(stats.errors.iter().map(|(k, n)| (k.as_str(), *n)));
        errors.sort_unstable();
        out.counters(
            "bsv_p2p_errors_total",
            "Failures that are not refusals (listener errors, failed handshakes, ...), by kind.",
            "kind",
            errors,
        )?;

        let p = &stats.process;
        out.gauge(
            "bsv_p2p_process_resident_memory_bytes",
            "Resident memory of the relay process.",
            p.rss_bytes,
        )?;
        out.counter(
            "bsv_p2p_process_cpu_seconds_total",
            "User and system CPU time of the relay process.",
            p.cpu_seconds,
        )?;
        out.gauge(
            "bsv_p2p_process_open_fds",
            "Open file descriptors of the relay process.",
            p.open_fds,
        )?;
        out.gauge(
            "bsv_p2p_process_threads",
            "Threads of the relay process.",
            p.threads,
        )?;
        out.gauge(
            "bsv_p2p_process_start_time_seconds",
            "Start time of the relay process, in Unix seconds.",
            p.start_time_secs,
        )?;
        out.counter(
            "bsv_p2p_events_total",
            "Events the relay has numbered in its journal (the newest sequence number).",
            stats.events.last_seq,
        )?;
        out.gauge(
            "bsv_p2p_journal_events",
            "Events the journal holds for subscribers to resume from.",
            stats.events.journal_len,
        )?;
        out.counter(
            "bsv_p2p_log_lines_dropped_total",
            "Log lines the relay dropped because its log reader did not keep up.",
            stats.log.lines_dropped,
        )?;
        federation(out, &stats.federation)
    }
}

/// Federation states, each written even at zero, so that
/// `bsv_p2p_federation_peers{state="connected"} == 0` has a series to test.
const FEDERATION_STATES: [FederationState; 3] = [
    FederationState::Connected,
    FederationState::Dialing,
    FederationState::Waiting,
];

/// The relays this relay federates with. The two totals are always written
/// (0 without federation, or from a relay older than control protocol 1.5,
/// which reports none); the per-relay families have one sample per listed
/// relay, so none then.
fn federation(out: &mut Figures, peers: &[FederationPeer]) -> fmt::Result {
    out.gauge(
        "bsv_p2p_federation_peers_configured",
        "Relays this relay federates with (its federation.peers, itself excluded); 0 when none are configured.",
        peers.len(),
    )?;
    out.gauges(
        "bsv_p2p_federation_peers",
        "Federated relays by where this relay stands with each (connected, dialing, waiting to redial); all 0 when none are configured.",
        "state",
        FEDERATION_STATES.iter().map(|state| {
            let n = peers.iter().filter(|p| p.state == *state).count();
            (state.as_str(), n)
        }),
    )?;

    // The relay caps federation.peers at 64; the sidecar holds its label
    // values to that whatever it is sent.
    let mut listed: Vec<&FederationPeer> = peers.iter().collect();
    listed.sort_unstable_by(|a, b| a.peer_id.cmp(&b.peer_id));
    listed.dedup_by(|a, b| a.peer_id == b.peer_id);
    listed.truncate(MAX_FEDERATED_RELAYS);
    let connected = |p: &FederationPeer| p.state == FederationState::Connected;
    out.gauges(
        "bsv_p2p_federation_peer_up",
        "1 while this relay has a connection open to the federated relay, else 0 (dialing or waiting to redial).",
        "peer_id",
        listed
            .iter()
            .map(|p| (p.peer_id.as_str(), connected(p))),
    )?;
    out.gauges(
        "bsv_p2p_federation_peer_rtt_seconds",
        "Round trip of the last ping to the federated relay; absent while it is not connected and before its first ping.",
        "peer_id",
        listed.iter().filter(|p| connected(p)).filter_map(|p| {
            p.rtt_micros
                .map(|us| (p.peer_id.as_str(), us as f64 / 1e6))
        }),
    )?;
    out.family(
        "bsv_p2p_federation_messages_total",
        "Gossip messages exchanged with the federated relay, by direction (in: first received from it; out: forwarded to it).",
        MetricType::Counter,
        listed.iter().flat_map(|p| {
            [("in", p.messages_in), ("out", p.messages_out)].map(|(direction, n)| {
                (
                    vec![("peer_id", p.peer_id.as_str()), ("direction", direction)],
                    n,
                )
            })
        }),
    )?;
    out.counters(
        "bsv_p2p_federation_peer_connects_total",
        "Times the federated relay came up (a first connection after none) since the relay started.",
        "peer_id",
        listed.iter().map(|p| (p.peer_id.as_str(), p.ups)),
    )?;
    out.counters(
        "bsv_p2p_federation_dial_failures_total",
        "Dials of the federated relay that failed since the relay started.",
        "peer_id",
        listed.iter().map(|p| (p.peer_id.as_str(), p.dial_failures)),
    )
}

/// What the sidecar itself knows, written whether or not the relay answered.
pub struct Own {
    pub relay_up: bool,
    pub scrape_duration: Duration,
    pub scrape_errors: u64,
    pub link: Arc<Link>,
    /// Responses served, by route and status code.
    pub http: Vec<(&'static str, u16, u64)>,
    pub gate: Arc<Gate>,
    /// The sidecar's process and its open-file limit.
    pub process: Option<(Usage, Option<u64>)>,
}

impl Source for Own {
    fn write(&self, out: &mut Figures) -> fmt::Result {
        out.gauge(
            "bsv_p2p_relay_up",
            "1 when the relay answered through its control socket for this scrape, 0 when it could not be read.",
            self.relay_up,
        )?;
        out.gauge(
            "bsv_p2p_health_scrape_duration_seconds",
            "How long this scrape took to read the relay (0 when a recent enough reading was shared).",
            self.scrape_duration.as_secs_f64(),
        )?;
        out.counter(
            "bsv_p2p_health_scrape_errors_total",
            "Scrapes of /metrics that could not read the relay.",
            self.scrape_errors,
        )?;
        out.counter(
            "bsv_p2p_health_relay_outages_total",
            "Times the relay went from reachable to unreachable.",
            self.link.outages(),
        )?;
        let calls = [
            ("stats", self.link.stats_calls()),
            ("status", self.link.status_calls()),
        ];
        out.counters(
            "bsv_p2p_health_relay_request_errors_total",
            "Requests to the relay's control socket that failed, by method.",
            "method",
            calls
                .iter()
                .map(|(m, c)| (*m, c.errors.load(Ordering::Relaxed))),
        )?;
        out.histograms(
            "bsv_p2p_health_relay_request_duration_seconds",
            "Time the relay took to answer control requests, by method.",
            "method",
            calls.iter().map(|(m, c)| (*m, &c.duration)),
        )?;
        out.family(
            "bsv_p2p_health_http_requests_total",
            "HTTP responses served by the sidecar, by route and status code.",
            MetricType::Counter,
            self.http.iter().map(|(route, code, n)| {
                (
                    vec![("route", route.to_string()), ("code", code.to_string())],
                    *n,
                )
            }),
        )?;
        out.gauge(
            "bsv_p2p_health_http_connections",
            "HTTP connections open now.",
            self.gate.open(),
        )?;
        out.gauge(
            "bsv_p2p_health_http_connections_max",
            "The cap on HTTP connections open at once (--max-connections).",
            self.gate.limits().max_connections,
        )?;
        out.counters(
            "bsv_p2p_health_http_connections_shed_total",
            "HTTP connections the sidecar closed or refused, by why (cap: to make room at the cap; request_timeout, write_timeout).",
            "reason",
            self.gate.shed().map(|(why, n)| (why.as_str(), n)),
        )?;
        if let Some((usage, max_fds)) = &self.process {
            out.process(usage, *max_fds)?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bsv_p2p_proto::exposition::Page;
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
            federation: Vec::new(),
        }
    }

    /// A federated relay in `state`, with its counters set from `n`.
    pub(crate) fn federated(id: &str, state: FederationState, n: u64) -> FederationPeer {
        FederationPeer {
            peer_id: id.into(),
            addrs: vec![format!("/ip4/198.51.100.9/tcp/4001/p2p/{id}")],
            state,
            since: Timestamp::from_unix_millis(1_738_324_800_000),
            remote_addr: None,
            last_seen: None,
            rtt_micros: None,
            next_dial_at: None,
            ups: n,
            dial_failures: n * 2,
            last_error: None,
            messages_in: n * 10,
            messages_out: n * 10 + 1,
        }
    }

    fn render(stats: StatsResult) -> String {
        let mut page = Page::new();
        page.add(Relay {
            status: Arc::new(status()),
            stats: Arc::new(stats),
        });
        page.render(None).unwrap().1
    }

    /// The family's samples, in order.
    fn samples<'t>(text: &'t str, family: &str) -> Vec<&'t str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
            })
            .collect()
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
        let mut page = Page::new();
        page.add(Relay {
            status: Arc::new(status()),
            stats: Arc::new(stats),
        });
        let (content_type, text) = page.render(None).unwrap();
        assert_eq!(content_type, bsv_p2p_proto::exposition::TEXT);
        text
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
    fn each_federated_relay_has_its_series_and_the_states_are_counted() {
        let mut up = federated("12D3KooWFedA", FederationState::Connected, 3);
        up.rtt_micros = Some(81_500);
        up.remote_addr = Some("/ip4/198.51.100.9/tcp/4001".into());
        // A relay that is not connected keeps the last RTT it measured;
        // it is not reported as if it were current.
        let mut waiting = federated("12D3KooWFedB", FederationState::Waiting, 0);
        waiting.rtt_micros = Some(120_000);
        waiting.dial_failures = 7;
        let stats = StatsResult {
            federation: vec![waiting, up],
            ..StatsResult::default()
        };
        let text = render(stats);
        let expect = |family: &str, lines: &[&str]| {
            assert_eq!(samples(&text, family), lines, "{family} in\n{text}");
        };
        expect(
            "bsv_p2p_federation_peers_configured",
            &["bsv_p2p_federation_peers_configured 2"],
        );
        expect(
            "bsv_p2p_federation_peers",
            &[
                "bsv_p2p_federation_peers{state=\"connected\"} 1",
                "bsv_p2p_federation_peers{state=\"dialing\"} 0",
                "bsv_p2p_federation_peers{state=\"waiting\"} 1",
            ],
        );
        expect(
            "bsv_p2p_federation_peer_up",
            &[
                "bsv_p2p_federation_peer_up{peer_id=\"12D3KooWFedA\"} 1",
                "bsv_p2p_federation_peer_up{peer_id=\"12D3KooWFedB\"} 0",
            ],
        );
        expect(
            "bsv_p2p_federation_peer_rtt_seconds",
            &["bsv_p2p_federation_peer_rtt_seconds{peer_id=\"12D3KooWFedA\"} 0.0815"],
        );
        expect(
            "bsv_p2p_federation_messages_total",
            &[
                "bsv_p2p_federation_messages_total{peer_id=\"12D3KooWFedA\",direction=\"in\"} 30",
                "bsv_p2p_federation_messages_total{peer_id=\"12D3KooWFedA\",direction=\"out\"} 31",
                "bsv_p2p_federation_messages_total{peer_id=\"12D3KooWFedB\",direction=\"in\"} 0",
                "bsv_p2p_federation_messages_total{peer_id=\"12D3KooWFedB\",direction=\"out\"} 1",
            ],
        );
        expect(
            "bsv_p2p_federation_peer_connects_total",
            &[
                "bsv_p2p_federation_peer_connects_total{peer_id=\"12D3KooWFedA\"} 3",
                "bsv_p2p_federation_peer_connects_total{peer_id=\"12D3KooWFedB\"} 0",
            ],
        );
        expect(
            "bsv_p2p_federation_dial_failures_total",
            &[
                "bsv_p2p_federation_dial_failures_total{peer_id=\"12D3KooWFedA\"} 6",
                "bsv_p2p_federation_dial_failures_total{peer_id=\"12D3KooWFedB\"} 7",
            ],
        );
        assert!(text.contains("# TYPE bsv_p2p_federation_messages_total counter\n"));
        assert!(text.contains("# TYPE bsv_p2p_federation_peer_up gauge\n"));
    }

    #[test]
    fn without_federation_zero_is_configured_and_no_relay_is_named() {
        let text = render(StatsResult::default());
        assert_eq!(
            samples(&text, "bsv_p2p_federation_peers_configured"),
            ["bsv_p2p_federation_peers_configured 0"]
        );
        assert_eq!(
            samples(&text, "bsv_p2p_federation_peers"),
            [
                "bsv_p2p_federation_peers{state=\"connected\"} 0",
                "bsv_p2p_federation_peers{state=\"dialing\"} 0",
                "bsv_p2p_federation_peers{state=\"waiting\"} 0",
            ]
        );
        for family in [
            "bsv_p2p_federation_peer_up",
            "bsv_p2p_federation_peer_rtt_seconds",
            "bsv_p2p_federation_messages_total",
            "bsv_p2p_federation_peer_connects_total",
            "bsv_p2p_federation_dial_failures_total",
        ] {
            assert!(samples(&text, family).is_empty(), "{family} in\n{text}");
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        }
        assert!(!text.contains("peer_id"), "{text}");
    }

    #[test]
    fn the_peer_id_label_holds_at_most_64_relays() {
        let federation = (0..70)
            .map(|i| federated(&format!("12D3KooWFed{i:02}"), FederationState::Dialing, 1))
            .collect();
        let text = render(StatsResult {
            federation,
            ..StatsResult::default()
        });
        assert_eq!(samples(&text, "bsv_p2p_federation_peer_up").len(), 64);
        assert_eq!(
            samples(&text, "bsv_p2p_federation_messages_total").len(),
            128
        );
        assert!(text.contains("\nbsv_p2p_federation_peers_configured 70\n"));
        assert!(text.contains("bsv_p2p_federation_peers{state=\"dialing\"} 70\n"));
        assert!(text.contains("{peer_id=\"12D3KooWFed63\"}"));
        assert!(!text.contains("{peer_id=\"12D3KooWFed64\"}"));
    }
}
