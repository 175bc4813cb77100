//! OTLP over HTTP: log records to `/v1/logs`, spans to `/v1/traces`, as
//! protobuf (the default) or OTLP/JSON, optionally gzipped, through surf on
//! async-std. The messages are `opentelemetry-proto`'s generated types, so
//! the encoding is the OpenTelemetry project's own; records carry the
//! relay's timestamps and the trace ids given when they were taken in.
//!
//! Settings follow the OpenTelemetry exporter specification's variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, the per-signal `…_LOGS_…`/`…_TRACES_…`
//! ones before it, `…_HEADERS`, `…_TIMEOUT`, `…_PROTOCOL`,
//! `…_COMPRESSION`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`,
//! `OTEL_SDK_DISABLED`), with the sidecar's flags before them.
//!
//! Answers are read as the OTLP/HTTP specification says: 2xx taken (a
//! `partial_success` counts what was refused), 429, 502, 503 and 504 sent
//! again after `Retry-After` or the backoff, 400 rejected, 413 split. Any
//! other answer (401, 403, 404, 500 …) is a setup or server problem that an
//! operator fixes, so the batch is kept and sent again rather than lost.

mod logs;
mod traces;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::{AsyncReadExt, FutureExt};
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::Value;

use super::{Outcome, RelayIdentity, Sink};
use crate::record::Record;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BATCH: usize = 512;
/// The most of an answer's body read: a partial-success message or an error
/// text. A receiver cannot make the sidecar buffer more.
const MAX_ANSWER: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Logs => "logs",
            Signal::Traces => "traces",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Signal::Logs => "v1/logs",
            Signal::Traces => "v1/traces",
        }
    }

    fn env(self) -> &'static str {
        match self {
            Signal::Logs => "LOGS",
            Signal::Traces => "TRACES",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Protobuf,
    Json,
}

impl Protocol {
    pub fn parse(text: &str) -> Result<Protocol, String> {
        match text {
            "http/protobuf" => Ok(Protocol::Protobuf),
            "http/json" => Ok(Protocol::Json),
            "grpc" => {
                Err("grpc is not supported; use http/protobuf (a collector's port 4318)".into())
            }
            other => Err(format!(
                "expected http/protobuf or http/json, got {other:?}"
            )),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Protocol::Protobuf => "application/x-protobuf",
            Protocol::Json => "application/json",
        }
    }
}

/// What the resource says about the relay beside what is read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSettings {
    pub service_name: String,
    /// `deployment.environment.name`, when set.
    pub environment: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, in order.
    pub attributes: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub signal: Signal,
    pub url: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub gzip: bool,
    pub batch: usize,
    pub resource: ResourceSettings,
}

/// The sidecar's own flags for OTLP, each before its variable.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub endpoint: Option<String>,
    pub logs_endpoint: Option<String>,
    pub traces_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub timeout_ms: Option<String>,
    pub compression: Option<String>,
    /// `logs`, `traces` or both, comma-separated.
    pub signals: Option<String>,
    pub batch: Option<String>,
}

/// Decodes `%XX` escapes, as the OpenTelemetry specification's
/// `key=value,…` variables allow in values.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key=value,key=value`, values percent-decoded. `what` names the source
/// for errors.
pub fn key_values(text: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, item) in text.split(',').enumerate() {
        if item.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!(
                "{what}: item {} ({item:?}) is not key=value",
                i + 1
            ));
        };
        let key = percent_decode(k.trim());
        if key.is_empty() {
            return Err(format!("{what}: item {} has an empty key", i + 1));
        }
        out.push((key, percent_decode(v.trim())));
    }
    Ok(out)
}

/// The OTLP destinations the flags and `env` ask for: none when no endpoint
/// is given. `resource` is completed from `OTEL_RESOURCE_ATTRIBUTES` and
/// `OTEL_SERVICE_NAME`.
pub fn resolve(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
    mut resource: ResourceSettings,
    service_name_flag: bool,
) -> Result<Vec<Settings>, String> {
    let env = |key: &str| env(key).filter(|v| !v.trim().is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(Vec::new());
    }
    if let Some(text) = env("OTEL_RESOURCE_ATTRIBUTES") {
        for (k, v) in key_values(&text, "OTEL_RESOURCE_ATTRIBUTES")? {
            match k.as_str() {
                "service.name" if !service_name_flag => resource.service_name = v,
                "deployment.environment.name" | "deployment.environment"
                    if resource.environment.is_none() =>
                {
                    resource.environment = Some(v)
                }
                _ => resource.attributes.push((k, v)),
            }
        }
    }
    // OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES.
    if !service_name_flag {
        if let Some(name) = env("OTEL_SERVICE_NAME") {
            resource.service_name = name;
        }
    }
    let signals = match &flags.signals {
        Some(text) => {
            let mut out = Vec::new();
            for s in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                out.push(match s {
                    "logs" => Signal::Logs,
                    "traces" => Signal::Traces,
                    other => {
                        return Err(format!(
                            "--otlp-signals: expected logs, traces or logs,traces, got {other:?}"
                        ))
                    }
                });
            }
            out
        }
        None => vec![Signal::Logs, Signal::Traces],
    };
    let mut out = Vec::new();
    for signal in signals {
        let specific = format!("OTEL_EXPORTER_OTLP_{}_", signal.env());
        // A flag, then the signal's variable, then the general one.
        let pick = |flag: &Option<String>, flag_name: &str, name: &str| {
            flag.clone()
                .map(|v| (v, flag_name.to_string()))
                .or_else(|| {
                    env(&format!("{specific}{name}")).map(|v| (v, format!("{specific}{name}")))
                })
                .or_else(|| {
                    env(&format!("OTEL_EXPORTER_OTLP_{name}"))
                        .map(|v| (v, format!("OTEL_EXPORTER_OTLP_{name}")))
                })
        };
        let own = match signal {
            Signal::Logs => (&flags.logs_endpoint, "--otlp-logs-endpoint"),
            Signal::Traces => (&flags.traces_endpoint, "--otlp-traces-endpoint"),
        };
        // A signal's own endpoint is used as given; the general one gets
        // the signal's path appended.
        let url = match own.0.clone().map(|v| (v, own.1.to_string())).or_else(|| {
            env(&format!("{specific}ENDPOINT")).map(|v| (v, format!("{specific}ENDPOINT")))
        }) {
            Some((url, source)) => check_url(&url, &source)?,
            None => match flags
                .endpoint
                .clone()
                .map(|v| (v, "--otlp-endpoint".to_string()))
                .or_else(|| {
                    env("OTEL_EXPORTER_OTLP_ENDPOINT")
                        .map(|v| (v, "OTEL_EXPORTER_OTLP_ENDPOINT".to_string()))
                }) {
                Some((base, source)) => {
                    let base = check_url(&base, &source)?;
                    format!("{}/{}", base.trim_end_matches('/'), signal.path())
                }
                None => continue,
            },
        };
        let protocol = match pick(&flags.protocol, "--otlp-protocol", "PROTOCOL") {
            Some((text, source)) => {
                Protocol::parse(text.trim()).map_err(|e| format!("{source}: {e}"))?
            }
            None => Protocol::Protobuf,
        };
        let timeout = match pick(&flags.timeout_ms, "--otlp-timeout", "TIMEOUT") {
            Some((text, source)) => match text.trim().parse::<u64>() {
                Ok(ms) if (1..=600_000).contains(&ms) => Duration::from_millis(ms),
                _ => {
                    return Err(format!(
                        "{source}: expected milliseconds from 1 to 600000, got {text:?}"
                    ))
                }
            },
            None => DEFAULT_TIMEOUT,
        };
        let gzip = match pick(&flags.compression, "--otlp-compression", "COMPRESSION") {
            Some((text, source)) => match text.trim() {
                "gzip" => true,
                "none" => false,
                other => return Err(format!("{source}: expected gzip or none, got {other:?}")),
            },
            None => false,
        };
        let headers = match pick(&None, "", "HEADERS") {
            Some((text, source)) => key_values(&text, &source)?,
            None => Vec::new(),
        };
        let batch = match &flags.batch {
            Some(text) => match text.trim().parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "--otlp-batch: expected records per request from 1 to 10000, got {text:?}"
                    ))
                }
            },
            None => DEFAULT_BATCH,
        };
        out.push(Settings {
            signal,
            url,
            protocol,
            headers,
            timeout,
            gzip,
            batch,
            resource: resource.clone(),
        });
    }
    Ok(out)
}

fn check_url(text: &str, source: &str) -> Result<String, String> {
    let text = text.trim();
    match url_scheme(text) {
        Some("http") | Some("https") if text.len() > "http://".len() => Ok(text.to_string()),
        _ => Err(format!(
            "{source}: expected an http:// or https:// URL like http://localhost:4318, got {text:?}"
        )),
    }
}

fn url_scheme(text: &str) -> Option<&str> {
    text.split_once("://").map(|(scheme, _)| scheme)
}

pub(crate) fn string(value: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(value.into())),
    }
}

pub(crate) fn int(value: u64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::IntValue(
            i64::try_from(value).unwrap_or(i64::MAX),
        )),
    }
}

pub(crate) fn kv(key: impl Into<String>, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

/// A JSON value as an OTLP value.
pub(crate) fn any(value: &Value) -> Option<AnyValue> {
    use any_value::Value as V;
    let v = match value {
        Value::Null => return None,
        Value::Bool(b) => V::BoolValue(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => V::IntValue(i),
            (None, Some(u), _) => V::IntValue(i64::try_from(u).unwrap_or(i64::MAX)),
            (_, _, Some(f)) => V::DoubleValue(f),
            _ => return None,
        },
        Value::String(s) => V::StringValue(s.clone()),
        Value::Array(items) => V::ArrayValue(ArrayValue {
            values: items.iter().filter_map(any).collect(),
        }),
        Value::Object(map) => V::KvlistValue(KeyValueList {
            values: map
                .iter()
                .filter_map(|(k, v)| Some(kv(k.clone(), any(v)?)))
                .collect(),
        }),
    };
    Some(AnyValue { value: Some(v) })
}

/// `peerId` → `peer_id`: attribute names in OpenTelemetry's style.
pub(crate) fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The event's fields as attributes `bsv_p2p.<field>`, with its sequence
/// number and kind.
pub(crate) fn attributes(record: &Record) -> Vec<KeyValue> {
    let fields = record.fields();
    let mut out = Vec::with_capacity(fields.len() + 2);
    out.push(kv("bsv_p2p.event", string(record.kind())));
    out.push(kv("bsv_p2p.seq", int(record.event.seq)));
    for (k, v) in &fields {
        if let Some(value) = any(v) {
            out.push(kv(format!("bsv_p2p.{}", snake(k)), value));
        }
    }
    out
}

pub(crate) fn nanos(ms: u64) -> u64 {
    ms.saturating_mul(1_000_000)
}

pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "bsv-p2p-logship".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

fn resource(settings: &ResourceSettings, relay: Option<&super::Relay>) -> Resource {
    let mut attributes = vec![kv("service.name", string(settings.service_name.clone()))];
    if let Some(relay) = relay {
        attributes.push(kv("service.instance.id", string(relay.peer_id.clone())));
        attributes.push(kv("service.version", string(relay.version.clone())));
    }
    if let Some(env) = &settings.environment {
        attributes.push(kv("deployment.environment.name", string(env.clone())));
    }
    for (k, v) in &settings.attributes {
        if !attributes.iter().any(|a| &a.key == k) {
            attributes.push(kv(k.clone(), string(v.clone())));
        }
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The `Retry-After` of an answer: seconds, or an HTTP date.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

pub struct Otlp {
    settings: Settings,
    relay: RelayIdentity,
    client: surf::Client,
}

/// The body of a request and what it holds.
struct Payload {
    bytes: Vec<u8>,
    items: usize,
}

impl Otlp {
    pub fn new(settings: Settings, relay: RelayIdentity) -> Result<Self, String> {
        let client: surf::Client = surf::Config::new()
            .set_timeout(Some(settings.timeout))
            .set_http_keep_alive(true)
            .set_tcp_no_delay(true)
            .try_into()
            .map_err(|e| format!("OTLP {}: cannot make an HTTP client: {e}", settings.url))?;
        Ok(Self {
            settings,
            relay,
            client,
        })
    }

    fn payload(&self, batch: &[Arc<Record>]) -> Option<Payload> {
        let relay = self.relay.read().map(|r| r.clone()).unwrap_or_default();
        let resource = resource(&self.settings.resource, relay.as_ref());
        let json = self.settings.protocol == Protocol::Json;
        let (bytes, items) = match self.settings.signal {
            Signal::Logs => {
                let request = logs::request(batch, resource);
                let items = request.resource_logs[0].scope_logs[0].log_records.len();
                (encode(&request, json), items)
            }
            Signal::Traces => {
                let request = traces::request(batch, resource)?;
                let items = request.resource_spans[0].scope_spans[0].spans.len();
                (encode(&request, json), items)
            }
        };
        Some(Payload { bytes, items })
    }

    async fn post(&self, payload: Payload) -> Outcome {
        let mut body = payload.bytes;
        let mut request = self
            .client
            .post(&self.settings.url)
            .header("Content-Type", self.settings.protocol.content_type());
        if self.settings.gzip {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            if encoder.write_all(&body).is_ok() {
                if let Ok(zipped) = encoder.finish() {
                    body = zipped;
                    request = request.header("Content-Encoding", "gzip");
                }
            }
        }
        for (k, v) in &self.settings.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let mut response = match request.body(surf::Body::from_bytes(body)).await {
            Ok(response) => response,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    why: format!("{}: {e}", self.settings.url),
                }
            }
        };
        let status = u16::from(response.status());
        let retry = response
            .header("Retry-After")
            .and_then(|v| retry_after(v.as_str(), SystemTime::now()));
        let json = response
            .content_type()
            .is_some_and(|m| m.essence() == "application/json");
        let mut answer = Vec::new();
        let _ = response
            .take_body()
            .into_reader()
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .await;
        let excerpt = || {
            let text = String::from_utf8_lossy(&answer[..answer.len().min(300)]).into_owned();
            format!("{}: HTTP {status} {}", self.settings.url, text.trim())
        };
        match status {
            200..=299 => Outcome::Accepted {
                refused: refused(self.settings.signal, &answer, json, payload.items),
            },
            429 | 502 | 503 | 504 => Outcome::Retry {
                after: retry,
                why: excerpt(),
            },
            400 => Outcome::Rejected { why: excerpt() },
            413 => Outcome::TooLarge { why: excerpt() },
            _ => Outcome::Retry {
                after: retry,
                why: excerpt(),
            },
        }
    }
}

fn encode<M: prost::Message + serde::Serialize>(message: &M, json: bool) -> Vec<u8> {
    if json {
        serde_json::to_vec(message).expect("OTLP messages serialize")
    } else {
        message.encode_to_vec()
    }
}

/// How many items a `partial_success` says were refused, at most `items`.
fn refused(signal: Signal, answer: &[u8], json: bool, items: usize) -> u64 {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use prost::Message;
    if answer.is_empty() {
        return 0;
    }
    let n = match signal {
        Signal::Logs => {
            let response: Option<ExportLogsServiceResponse> = if json {
                serde_json::from_slice(answer).ok()
            } else {
                ExportLogsServiceResponse::decode(answer).ok()
            };
            response
                .and_then(|r| r.partial_success)
                .map_or(0, |p| p.rejected_log_records)
        }
        Signal::Traces => {
            let response: Option<ExportTraceServiceResponse> = if json {
                serde_json::from_slice(answer).ok()
            } else {
                ExportTraceServiceResponse::decode(answer).ok()
            };
            response
                .and_then(|r| r.partial_success)
                .map_or(0, |p| p.rejected_spans)
        }
    };
    (n.max(0) as u64).min(items as u64)
}

impl Sink for Otlp {
    fn send<'a>(&'a mut self, batch: &'a [Arc<Record>]) -> BoxFuture<'a, Outcome> {
        async move {
            match self.payload(batch) {
                // Nothing in the batch for this signal (no span ended).
                None => Outcome::Accepted { refused: 0 },
                Some(payload) => self.post(payload).await,
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn base() -> ResourceSettings {
        ResourceSettings {
            service_name: "bsv-p2p-relay".into(),
            environment: None,
            attributes: Vec::new(),
        }
    }

    #[test]
    fn nothing_without_an_endpoint() {
        let out = resolve(&Flags::default(), &env(&[]), base(), false).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn the_general_endpoint_gets_each_signals_path() {
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example/custom",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=se%20cret, x-team = relay",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ]);
        let out = resolve(&Flags::default(), &vars, base(), false).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].url, "http://collector:4318/v1/logs");
        assert_eq!(out[1].url, "https://traces.example/custom");
        assert_eq!(
            out[0].headers,
            [
                ("api-key".to_string(), "se cret".to_string()),
                ("x-team".to_string(), "relay".to_string())
            ]
        );
        assert_eq!(out[0].timeout, Duration::from_millis(2500));
        assert_eq!(out[1].timeout, DEFAULT_TIMEOUT);
        assert_eq!(out[0].protocol, Protocol::Json);
        assert!(!out[0].gzip && out[1].gzip);
    }

    #[test]
    fn flags_come_before_variables_and_signals_can_be_chosen() {
        let flags = Flags {
            endpoint: Some("http://127.0.0.1:4318".into()),
            protocol: Some("http/protobuf".into()),
            signals: Some("traces".into()),
            ..Flags::default()
        };
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://elsewhere:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ]);
        let out = resolve(&flags, &vars, base(), false).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].signal, Signal::Traces);
        assert_eq!(out[0].url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(out[0].protocol, Protocol::Protobuf);
    }

    #[test]
    fn the_service_name_comes_from_otel_service_name_first() {
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,deployment.environment.name=prod,region=eu%2Dwest",
            ),
            ("OTEL_SERVICE_NAME", "from-name"),
        ]);
        let out = resolve(&Flags::default(), &vars, base(), false).unwrap();
        let r = &out[0].resource;
        assert_eq!(r.service_name, "from-name");
        assert_eq!(r.environment.as_deref(), Some("prod"));
        assert_eq!(
            r.attributes,
            [("region".to_string(), "eu-west".to_string())]
        );
        // The flag wins over both.
        let out = resolve(&Flags::default(), &vars, base(), true).unwrap();
        assert_eq!(out[0].resource.service_name, "bsv-p2p-relay");
    }

    #[test]
    fn bad_values_name_their_source() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
                ],
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: grpc is not supported",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
                ],
                "OTEL_EXPORTER_OTLP_TIMEOUT: expected milliseconds",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
                ],
                "OTEL_EXPORTER_OTLP_HEADERS: item 1",
            ),
            (
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                    ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
                ],
                "OTEL_EXPORTER_OTLP_COMPRESSION: expected gzip or none",
            ),
        ];
        for (vars, expected) in cases {
            let err = resolve(&Flags::default(), &env(vars), base(), false).unwrap_err();
            assert!(err.contains(expected), "{err} / {expected}");
        }
    }

    #[test]
    fn otel_sdk_disabled_turns_otlp_off() {
        let vars = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert!(resolve(&Flags::default(), &vars, base(), false)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn percent_decoding_leaves_stray_percents() {
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(snake("bytesSrcToDst"), "bytes_src_to_dst");
    }
}
