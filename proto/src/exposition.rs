//! Figures in the Prometheus exposition formats, written through the
//! Prometheus project's Rust client (`prometheus-client`): its encoder
//! does the format (HELP and TYPE once per family, label escaping,
//! cumulative histogram buckets, float spelling), and every sidecar
//! exposes its figures the same way:
//!
//! ```
//! use bsv_p2p_proto::exposition::{Figures, Page, Source};
//!
//! struct Queue { waiting: u64, sent: u64 }
//!
//! impl Source for Queue {
//!     fn write(&self, out: &mut Figures) -> std::fmt::Result {
//!         out.gauge("logship_waiting_lines", "Lines waiting to be shipped.", self.waiting)?;
//!         out.counter("logship_sent_lines_total", "Lines shipped.", self.sent)
//!     }
//! }
//!
//! let mut page = Page::new();
//! page.add(Queue { waiting: 3, sent: 9 });
//! let (content_type, body) = page.render(None).unwrap();
//! assert_eq!(content_type, bsv_p2p_proto::exposition::TEXT);
//! assert!(body.contains("# TYPE logship_sent_lines_total counter\nlogship_sent_lines_total 9\n"));
//! ```
//!
//! Figures are read when a page is rendered ([`Source`]), since a sidecar's
//! figures mostly come from the relay at scrape time; what a sidecar counts
//! itself it keeps in atomics or a [`Histogram`] and reads the same way.
//!
//! Two formats, chosen by the scraper's `Accept` header as the official
//! client libraries do: OpenMetrics 1.0 (what the encoder writes, and what
//! Prometheus asks for) and the classic text format 0.0.4 for everyone else
//! (`curl`, `promtool check metrics`). The two differ, for what is written
//! here, only in the name a counter family is declared under
//! (`requests` in OpenMetrics, `requests_total` in 0.0.4; the samples are
//! `requests_total` in both) and in OpenMetrics' closing `# EOF`.

use std::fmt::{self, Write};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::metrics::MetricType;

use crate::process::Usage;

/// The content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic text format.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets for the round trip of a control request, 100 µs to 5 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A histogram of request round trips in seconds, in [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// One sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::Int(v as u64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(u64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

/// Something that writes figures each time a page is rendered.
pub trait Source: Send + Sync + 'static {
    fn write(&self, out: &mut Figures) -> fmt::Result;
}

/// The families being written, each once with its HELP and TYPE.
pub struct Figures<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Figures<'_> {
    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Into<Value>) -> fmt::Result {
        let metric = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        gauge(value.into(), metric)
    }

    /// A counter without labels; `name` is the sample's name, ending in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, value: impl Into<Value>) -> fmt::Result {
        let metric =
            self.encoder
                .encode_descriptor(family_of(name), help, None, MetricType::Counter)?;
        counter(value.into(), metric)
    }

    /// A gauge family: one sample per value of `label`.
    pub fn gauges<L: AsRef<str>, V: Into<Value>>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        self.labelled(name, help, MetricType::Gauge, label, samples)
    }

    /// A counter family: one sample per value of `label`.
    pub fn counters<L: AsRef<str>, V: Into<Value>>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        self.labelled(name, help, MetricType::Counter, label, samples)
    }

    fn labelled<L: AsRef<str>, V: Into<Value>>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        label: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) -> fmt::Result {
        let samples = samples
            .into_iter()
            .map(|(text, v)| (vec![(label, text)], v));
        self.family(name, help, kind, samples)
    }

    /// A gauge or counter family whose samples carry any labels.
    pub fn family<'l, L: AsRef<str>, V: Into<Value>>(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (Vec<(&'l str, L)>, V)>,
    ) -> fmt::Result {
        let counts = matches!(kind, MetricType::Counter);
        let family = if counts { family_of(name) } else { name };
        let mut metric = self.encoder.encode_descriptor(family, help, None, kind)?;
        for (labels, value) in samples {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_ref())).collect();
            let sample = metric.encode_family(&labels)?;
            if counts {
                counter(value.into(), sample)?;
            } else {
                gauge(value.into(), sample)?;
            }
        }
        Ok(())
    }

    /// A histogram family: one histogram per value of `label`.
    pub fn histograms<'h>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        histograms: impl IntoIterator<Item = (&'h str, &'h Histogram)>,
    ) -> fmt::Result {
        let mut metric = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (text, histogram) in histograms {
            let labels = [(label, text)];
            histogram.encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// The standard `process_*` families every Prometheus client library
    /// exports for its own process; `max_fds` is the open-file limit.
    pub fn process(&mut self, usage: &Usage, max_fds: Option<u64>) -> fmt::Result {
        self.counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            usage.cpu_seconds,
        )?;
        self.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            usage.resident_bytes,
        )?;
        self.gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            usage.virtual_bytes,
        )?;
        self.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            usage.open_fds,
        )?;
        if let Some(max) = max_fds {
            self.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        self.gauge(
            "process_threads",
            "Number of OS threads in the process.",
            usage.threads,
        )?;
        self.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            usage.start_time_secs,
        )
    }
}

fn gauge(value: Value, metric: prometheus_client::encoding::MetricEncoder) -> fmt::Result {
    match value {
        Value::Int(v) => ConstGauge::new(v).encode(metric),
        Value::Float(v) => ConstGauge::new(v).encode(metric),
    }
}

fn counter(value: Value, metric: prometheus_client::encoding::MetricEncoder) -> fmt::Result {
    match value {
        Value::Int(v) => ConstCounter::new(v).encode(metric),
        Value::Float(v) => ConstCounter::new(v).encode(metric),
    }
}

/// The family a counter sample belongs to: its name less `_total`, which
/// the encoder appends.
fn family_of(name: &str) -> &str {
    debug_assert!(
        name.ends_with("_total"),
        "counter {name} must end in _total"
    );
    name.strip_suffix("_total").unwrap_or(name)
}

/// One page of figures, rendered for one scrape.
#[derive(Default)]
pub struct Page {
    registry: Registry,
}

struct Collected<S>(S);

impl<S> fmt::Debug for Collected<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Collected")
    }
}

impl<S: Source> Collector for Collected<S> {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        self.0.write(&mut Figures { encoder })
    }
}

impl Page {
    pub fn new() -> Self {
        Self::default()
    }

    /// Figures written in the order added.
    pub fn add(&mut self, source: impl Source) {
        self.registry
            .register_collector(Box::new(Collected(source)));
    }

    /// The content type and the page, in the format `accept` (the scrape's
    /// `Accept` header) asks for: OpenMetrics when it names it, else the
    /// text format 0.0.4. An error is a [`Source`]'s own, passed on so that
    /// the scrape fails instead of the process.
    pub fn render(&self, accept: Option<&str>) -> Result<(&'static str, String), fmt::Error> {
        let mut page = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut page, &self.registry)?;
        Ok(
            if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
                (OPENMETRICS, page)
            } else {
                (TEXT, classic(&page))
            },
        )
    }
}

/// OpenMetrics text as the text format 0.0.4: counter families declared
/// under their samples' `_total` name, no `# UNIT` (not written here
/// anyway) and no `# EOF`.
fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 1024);
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(help) = help.take() {
                let text = help.split_once(' ').map_or("", |(_, text)| text);
                let _ = writeln!(out, "# HELP {name}{suffix} {text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
        } else if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The accept loop of a sidecar's small figures server: at most `max`
/// connections at once (more are closed at once), each closed after
/// `deadline` whatever it is doing, so no client can hold the server.
/// `serve` answers one connection (an HTTP codec). Returns only when the
/// listener fails, with what happened.
pub async fn accept_bounded<F, Fut>(
    listener: async_std::net::TcpListener,
    max: usize,
    deadline: std::time::Duration,
    serve: F,
) -> String
where
    F: Fn(async_std::net::TcpStream) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use futures::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let bound = listener
        .local_addr()
        .map_or_else(|e| e.to_string(), |a| a.to_string());
    let open = std::sync::Arc::new(AtomicUsize::new(0));
    let mut incoming = listener.incoming();
    while let Some(stream) = incoming.next().await {
        let Ok(stream) = stream else {
            // Out of descriptors, for one: wait rather than spin.
            async_std::task::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        if open.fetch_add(1, Ordering::SeqCst) >= max {
            open.fetch_sub(1, Ordering::SeqCst);
            continue; // dropped: refused
        }
        let (serve, open) = (serve.clone(), open.clone());
        async_std::task::spawn(async move {
            let _ = stream.set_nodelay(true);
            let _ = async_std::future::timeout(deadline, serve(stream)).await;
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
    format!("http://{bound} stopped accepting connections")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample;

    impl Source for Sample {
        fn write(&self, out: &mut Figures) -> fmt::Result {
            out.gauge("x_up", "Up.", true)?;
            out.counter("x_requests_total", "Requests.", 7u64)?;
            out.counters(
                "x_errors_total",
                "Errors by kind.",
                "kind",
                [("listener", 4u64), ("journal_\"write\"\n", 1)],
            )?;
            let h = latency_histogram();
            h.observe(0.00005);
            h.observe(0.003);
            h.observe(10.0);
            out.histograms("x_seconds", "Round trips.", "method", [("status", &h)])
        }
    }

    fn render(accept: Option<&str>) -> (&'static str, String) {
        let mut page = Page::new();
        page.add(Sample);
        page.render(accept).unwrap()
    }

    #[test]
    fn a_source_that_fails_fails_the_page_not_the_process() {
        struct Broken;
        impl Source for Broken {
            fn write(&self, out: &mut Figures) -> fmt::Result {
                out.gauge("fine", "Written first.", 1u64)?;
                Err(fmt::Error)
            }
        }
        let mut page = Page::new();
        page.add(Broken);
        assert!(page.render(None).is_err());
    }

    #[test]
    fn the_classic_format_declares_counters_under_their_total_name() {
        let (kind, text) = render(None);
        assert_eq!(kind, TEXT);
        assert!(text.contains("# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\nx_requests_total 7\n"), "{text}");
        assert!(
            text.contains("# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn openmetrics_is_the_encoders_own_output() {
        let (kind, text) = render(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        ));
        assert_eq!(kind, OPENMETRICS);
        assert!(
            text.contains("# TYPE x_requests counter\nx_requests_total 7\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let (_, text) = render(None);
        assert!(
            text.contains("x_errors_total{kind=\"listener\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("x_errors_total{kind=\"journal_\\\"write\\\"\\n\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let (_, text) = render(None);
        let bucket = |le: &str, n: u64| {
            let line = format!("x_seconds_bucket{{le=\"{le}\",method=\"status\"}} {n}\n");
            assert!(text.contains(&line), "{line} in {text}");
        };
        bucket("0.0001", 1);
        bucket("0.005", 2);
        bucket("5.0", 2);
        bucket("+Inf", 3);
        assert!(
            text.contains("x_seconds_count{method=\"status\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_sum{method=\"status\"} 10.00305"),
            "{text}"
        );
    }

    #[test]
    fn process_figures_use_the_standard_names() {
        struct Own;
        impl Source for Own {
            fn write(&self, out: &mut Figures) -> fmt::Result {
                out.process(&crate::process::own().unwrap(), Some(1024))
            }
        }
        let mut page = Page::new();
        page.add(Own);
        let (_, text) = page.render(None).unwrap();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_threads",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}: {text}");
        }
    }
}
