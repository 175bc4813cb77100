//! What the sidecar runs with: the command line, then the environment
//! (`BSV_P2P_LOGSHIP_*`, and OpenTelemetry's own `OTEL_*` for OTLP), then
//! the defaults, resolved and checked in one place before anything starts.
//! A bad value is refused with the flag or variable it came from, what was
//! expected and what was found.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;
use log::LevelFilter;

use crate::ingest::Start;
use crate::sink::{otlp, syslog, Settings};

pub const DEFAULT_METRICS_BIND: &str = "127.0.0.1:4005";
/// About 1.1 KB of disk each as measured (see README): a million records
/// is about a gigabyte, hours of a busy relay's events.
pub const DEFAULT_BUFFER_RECORDS: u64 = 1_000_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
pub const DEFAULT_SERVICE_NAME: &str = "bsv-p2p-relay";
/// The state directory under `$HOME`.
pub const STATE_DIR_IN_HOME: &str = ".bsv-p2p/logship";

const ENV: &str = "BSV_P2P_LOGSHIP_";

/// Ships a bsv-p2p relay's events to stdout, OTLP/HTTP (logs and traces) and syslog, at least once.
#[derive(FromArgs, Default)]
pub struct Args {
    /// the relay's control socket (default <data dir>/relay.sock; env BSV_P2P_LOGSHIP_SOCKET)
    #[argh(option, short = 's')]
    pub socket: Option<PathBuf>,
    /// the relay's data directory, to find its socket (default ~/.bsv-p2p/relay; env BSV_P2P_LOGSHIP_DATA_DIR)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,
    /// where the buffer and cursors are kept (default ~/.bsv-p2p/logship; env BSV_P2P_LOGSHIP_STATE_DIR)
    #[argh(option)]
    pub state_dir: Option<PathBuf>,
    /// print events to standard output as JSON lines (env BSV_P2P_LOGSHIP_STDOUT=true)
    #[argh(switch)]
    pub stdout: bool,
    /// OTLP/HTTP base URL, /v1/logs and /v1/traces appended (env OTEL_EXPORTER_OTLP_ENDPOINT)
    #[argh(option)]
    pub otlp_endpoint: Option<String>,
    /// OTLP/HTTP logs URL, used as given (env OTEL_EXPORTER_OTLP_LOGS_ENDPOINT)
    #[argh(option)]
    pub otlp_logs_endpoint: Option<String>,
    /// OTLP/HTTP traces URL, used as given (env OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    #[argh(option)]
    pub otlp_traces_endpoint: Option<String>,
    /// http/protobuf (default) or http/json (env OTEL_EXPORTER_OTLP_PROTOCOL)
    #[argh(option)]
    pub otlp_protocol: Option<String>,
    /// OTLP request timeout in milliseconds (default 10000; env OTEL_EXPORTER_OTLP_TIMEOUT)
    #[argh(option)]
    pub otlp_timeout: Option<String>,
    /// gzip or none (default none; env OTEL_EXPORTER_OTLP_COMPRESSION)
    #[argh(option)]
    pub otlp_compression: Option<String>,
    /// which OTLP signals to send: logs, traces or logs,traces (default both; env BSV_P2P_LOGSHIP_OTLP_SIGNALS)
    #[argh(option)]
    pub otlp_signals: Option<String>,
    /// records per OTLP request at most (default 512; env BSV_P2P_LOGSHIP_OTLP_BATCH)
    #[argh(option)]
    pub otlp_batch: Option<String>,
    /// the resource's service.name (default bsv-p2p-relay; env OTEL_SERVICE_NAME)
    #[argh(option)]
    pub service_name: Option<String>,
    /// the resource's deployment.environment.name, e.g. production (env BSV_P2P_LOGSHIP_ENVIRONMENT)
    #[argh(option)]
    pub environment: Option<String>,
    /// a syslog receiver: udp://HOST:PORT, tcp://HOST:PORT or unix:///dev/log; repeat for several (env BSV_P2P_LOGSHIP_SYSLOG, comma-separated)
    #[argh(option)]
    pub syslog: Vec<String>,
    /// syslog facility: daemon (default), local0 … local7, user, … (env BSV_P2P_LOGSHIP_SYSLOG_FACILITY)
    #[argh(option)]
    pub syslog_facility: Option<String>,
    /// syslog HOSTNAME (default this host's name; env BSV_P2P_LOGSHIP_SYSLOG_HOSTNAME)
    #[argh(option)]
    pub syslog_hostname: Option<String>,
    /// syslog APP-NAME (default bsv-p2p-relay; env BSV_P2P_LOGSHIP_SYSLOG_APP_NAME)
    #[argh(option)]
    pub syslog_app_name: Option<String>,
    /// the structured data's SD-ID, name@enterprise-number (default bsvp2p@32473; env BSV_P2P_LOGSHIP_SYSLOG_SD_ID)
    #[argh(option)]
    pub syslog_sd_id: Option<String>,
    /// longest syslog message in bytes, 480 to 65000 (default 8192; env BSV_P2P_LOGSHIP_SYSLOG_MAX_BYTES)
    #[argh(option)]
    pub syslog_max_bytes: Option<String>,
    /// records the buffer holds at most; beyond, the oldest are dropped (default 1000000; env BSV_P2P_LOGSHIP_BUFFER_RECORDS)
    #[argh(option)]
    pub buffer_records: Option<String>,
    /// with no stored position: oldest (everything the relay's journal holds, default) or now (env BSV_P2P_LOGSHIP_START)
    #[argh(option)]
    pub start: Option<String>,
    /// address for /metrics and /health, or off (default 127.0.0.1:4005; env BSV_P2P_LOGSHIP_METRICS_BIND)
    #[argh(option)]
    pub metrics_bind: Option<String>,
    /// how long the relay gets to answer a control request, in milliseconds (default 5000; env BSV_P2P_LOGSHIP_TIMEOUT_MS)
    #[argh(option)]
    pub timeout: Option<String>,
    /// log level of the sidecar's own messages, on stderr: off, error, warn, info, debug or trace (default info; env BSV_P2P_LOGSHIP_LOG_LEVEL)
    #[argh(option)]
    pub log_level: Option<String>,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,
}

#[derive(Debug, Clone)]
pub struct LogshipConfig {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub destinations: Vec<Settings>,
    pub max_records: u64,
    pub start: Start,
    pub metrics_bind: Option<SocketAddr>,
    pub timeout: Duration,
    pub log_level: LevelFilter,
}

fn home_dir(env: &dyn Fn(&str) -> Option<String>, what: &str) -> Result<PathBuf, String> {
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| format!("$HOME is not set: pass {what}"))
}

fn parse_number<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    text: &str,
    source: &str,
    what: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    match text.trim().parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!(
            "{source}: expected {what} from {min} to {max}, got {text:?}"
        )),
    }
}

impl LogshipConfig {
    /// Flags first, then `env` (a lookup, so tests need not touch the
    /// process environment), then defaults.
    pub fn resolve(
        args: &Args,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LogshipConfig, String> {
        let var = |name: &str| env(&format!("{ENV}{name}")).filter(|v| !v.trim().is_empty());
        let pick = |flag: &Option<String>, flag_name: &str, name: &str| match flag {
            Some(v) => Some((v.clone(), flag_name.to_string())),
            None => var(name).map(|v| (v, format!("{ENV}{name}"))),
        };

        let socket = match (&args.socket, var("SOCKET")) {
            (Some(path), _) => path.clone(),
            (None, Some(path)) => PathBuf::from(path),
            _ => {
                let dir = match (&args.data_dir, var("DATA_DIR")) {
                    (Some(dir), _) => dir.clone(),
                    (None, Some(dir)) => PathBuf::from(dir),
                    _ => home_dir(env, "--socket or --data-dir")?
                        .join(bsv_p2p_proto::DATA_DIR_IN_HOME),
                };
                dir.join(bsv_p2p_proto::SOCKET_FILE)
            }
        };
        let state_dir = match (&args.state_dir, var("STATE_DIR")) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => PathBuf::from(dir),
            _ => home_dir(env, "--state-dir")?.join(STATE_DIR_IN_HOME),
        };

        let mut destinations = Vec::new();
        let stdout = args.stdout
            || match var("STDOUT") {
                Some(v) => match v.trim() {
                    "1" | "true" | "yes" => true,
                    "0" | "false" | "no" => false,
                    other => {
                        return Err(format!(
                            "{ENV}STDOUT: expected true or false, got {other:?}"
                        ))
                    }
                },
                None => false,
            };
        if stdout {
            destinations.push(Settings::Stdout);
        }

        let service_name_flag = args.service_name.is_some();
        let resource = otlp::ResourceSettings {
            service_name: args
                .service_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.into()),
            environment: pick(&args.environment, "--environment", "ENVIRONMENT").map(|(v, _)| v),
            attributes: Vec::new(),
        };
        let flags = otlp::Flags {
            endpoint: args.otlp_endpoint.clone(),
            logs_endpoint: args.otlp_logs_endpoint.clone(),
            traces_endpoint: args.otlp_traces_endpoint.clone(),
            protocol: args.otlp_protocol.clone(),
            timeout_ms: args.otlp_timeout.clone(),
            compression: args.otlp_compression.clone(),
            signals: pick(&args.otlp_signals, "--otlp-signals", "OTLP_SIGNALS").map(|(v, _)| v),
            batch: pick(&args.otlp_batch, "--otlp-batch", "OTLP_BATCH").map(|(v, _)| v),
        };
        for s in otlp::resolve(&flags, env, resource, service_name_flag)? {
            destinations.push(Settings::Otlp(s));
        }

        let targets: Vec<(String, String)> = if !args.syslog.is_empty() {
            args.syslog
                .iter()
                .map(|t| (t.clone(), "--syslog".to_string()))
                .collect()
        } else {
            var("SYSLOG")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(|t| (t.to_string(), format!("{ENV}SYSLOG")))
                        .collect()
                })
                .unwrap_or_default()
        };
        if !targets.is_empty() {
            let facility = match pick(&args.syslog_facility, "--syslog-facility", "SYSLOG_FACILITY")
            {
                Some((text, source)) => syslog::facility(text.trim()).ok_or_else(|| {
                    format!("{source}: expected a facility like daemon, user or local0 … local7, got {text:?}")
                })?,
                None => 3,
            };
            let hostname = pick(
                &args.syslog_hostname,
                "--syslog-hostname",
                "SYSLOG_HOSTNAME",
            )
            .map(|(v, _)| v)
            .unwrap_or_else(hostname);
            let app_name = pick(
                &args.syslog_app_name,
                "--syslog-app-name",
                "SYSLOG_APP_NAME",
            )
            .map(|(v, _)| v)
            .unwrap_or_else(|| syslog::DEFAULT_APP_NAME.into());
            let sd_id = match pick(&args.syslog_sd_id, "--syslog-sd-id", "SYSLOG_SD_ID") {
                Some((text, source)) => check_sd_id(&text).map_err(|e| format!("{source}: {e}"))?,
                None => syslog::DEFAULT_SD_ID.into(),
            };
            let max_bytes = match pick(
                &args.syslog_max_bytes,
                "--syslog-max-bytes",
                "SYSLOG_MAX_BYTES",
            ) {
                Some((text, source)) => {
                    parse_number(&text, &source, "bytes", 480usize, 65_000usize)?
                }
                None => syslog::DEFAULT_MAX_BYTES,
            };
            for (text, source) in targets {
                let target =
                    syslog::Target::parse(text.trim()).map_err(|e| format!("{source}: {e}"))?;
                let settings = Settings::Syslog(syslog::Settings {
                    target,
                    facility,
                    hostname: hostname.clone(),
                    app_name: app_name.clone(),
                    sd_id: sd_id.clone(),
                    max_bytes,
                });
                if destinations.contains(&settings) {
                    return Err(format!("{source}: {text} is given twice"));
                }
                destinations.push(settings);
            }
        }
        if destinations.is_empty() {
            return Err(
                "no destination: pass --stdout, --otlp-endpoint URL (or set OTEL_EXPORTER_OTLP_ENDPOINT) or --syslog URL"
                    .into(),
            );
        }

        let max_records = match pick(&args.buffer_records, "--buffer-records", "BUFFER_RECORDS") {
            Some((text, source)) => {
                parse_number(&text, &source, "records", 1_000u64, 1_000_000_000u64)?
            }
            None => DEFAULT_BUFFER_RECORDS,
        };
        let start = match pick(&args.start, "--start", "START") {
            Some((text, source)) => match text.trim() {
                "oldest" => Start::Oldest,
                "now" => Start::Now,
                other => return Err(format!("{source}: expected oldest or now, got {other:?}")),
            },
            None => Start::Oldest,
        };
        let metrics_bind = match pick(&args.metrics_bind, "--metrics-bind", "METRICS_BIND") {
            Some((text, _)) if text.trim() == "off" => None,
            Some((text, source)) => Some(text.trim().parse().map_err(|_| {
                format!(
                    "{source}: expected an IP address and port like {DEFAULT_METRICS_BIND}, or off, got {text:?}"
                )
            })?),
            None => Some(DEFAULT_METRICS_BIND.parse().expect("the default parses")),
        };
        let timeout = match pick(&args.timeout, "--timeout", "TIMEOUT_MS") {
            Some((text, source)) => Duration::from_millis(parse_number(
                &text,
                &source,
                "milliseconds",
                100u64,
                60_000u64,
            )?),
            None => Duration::from_millis(DEFAULT_TIMEOUT_MS),
        };
        let log_level = match pick(&args.log_level, "--log-level", "LOG_LEVEL") {
            Some((text, source)) => text.trim().parse().map_err(|_| {
                format!("{source}: expected off, error, warn, info, debug or trace, got {text:?}")
            })?,
            None => LevelFilter::Info,
        };
        Ok(LogshipConfig {
            socket,
            state_dir,
            destinations,
            max_records,
            start,
            metrics_bind,
            timeout,
            log_level,
        })
    }
}

/// `name@number`: the name an SD-NAME, the number digits and dots.
fn check_sd_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    let ok = match text.split_once('@') {
        Some((name, number)) => {
            !name.is_empty()
                && text.len() <= 32
                && name
                    .chars()
                    .all(|c| ('!'..='~').contains(&c) && !matches!(c, '=' | ']' | '"' | '@'))
                && !number.is_empty()
                && number.chars().all(|c| c.is_ascii_digit() || c == '.')
        }
        None => false,
    };
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "expected name@enterprise-number like bsvp2p@32473, at most 32 characters, got {text:?}"
        ))
    }
}

/// This host's name, for syslog's HOSTNAME.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
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

    #[test]
    fn needs_a_destination() {
        let err = LogshipConfig::resolve(&Args::default(), &env(&[("HOME", "/h")])).unwrap_err();
        assert!(err.starts_with("no destination"), "{err}");
    }

    #[test]
    fn defaults_and_every_destination() {
        let args = Args {
            stdout: true,
            syslog: vec!["udp://127.0.0.1:5514".into(), "tcp://127.0.0.1:5514".into()],
            ..Args::default()
        };
        let c = LogshipConfig::resolve(
            &args,
            &env(&[
                ("HOME", "/h"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ]),
        )
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/h/.bsv-p2p/relay/relay.sock"));
        assert_eq!(c.state_dir, PathBuf::from("/h/.bsv-p2p/logship"));
        let names: Vec<String> = c.destinations.iter().map(Settings::name).collect();
        assert_eq!(
            names,
            [
                "stdout",
                "otlp-logs",
                "otlp-traces",
                "syslog udp://127.0.0.1:5514",
                "syslog tcp://127.0.0.1:5514"
            ]
        );
        assert_eq!(c.max_records, DEFAULT_BUFFER_RECORDS);
        assert_eq!(c.start, Start::Oldest);
        assert_eq!(c.metrics_bind, Some(DEFAULT_METRICS_BIND.parse().unwrap()));
    }

    #[test]
    fn the_environment_configures_what_flags_do() {
        let c = LogshipConfig::resolve(
            &Args::default(),
            &env(&[
                ("BSV_P2P_LOGSHIP_SOCKET", "/run/relay.sock"),
                ("BSV_P2P_LOGSHIP_STATE_DIR", "/var/lib/logship"),
                ("BSV_P2P_LOGSHIP_SYSLOG", "unix:///dev/log, tcp://h:601"),
                ("BSV_P2P_LOGSHIP_SYSLOG_FACILITY", "local3"),
                ("BSV_P2P_LOGSHIP_BUFFER_RECORDS", "5000"),
                ("BSV_P2P_LOGSHIP_START", "now"),
                ("BSV_P2P_LOGSHIP_METRICS_BIND", "off"),
            ]),
        )
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/run/relay.sock"));
        assert_eq!(c.destinations.len(), 2);
        match &c.destinations[0] {
            Settings::Syslog(s) => assert_eq!(s.facility, 19),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.max_records, 5000);
        assert_eq!(c.start, Start::Now);
        assert_eq!(c.metrics_bind, None);
    }

    #[test]
    fn bad_values_name_their_source() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("BSV_P2P_LOGSHIP_STDOUT", "maybe")],
                "BSV_P2P_LOGSHIP_STDOUT",
            ),
            (
                &[("BSV_P2P_LOGSHIP_SYSLOG", "syslog://h")],
                "BSV_P2P_LOGSHIP_SYSLOG: expected udp://",
            ),
            (
                &[
                    ("BSV_P2P_LOGSHIP_SYSLOG", "udp://h"),
                    ("BSV_P2P_LOGSHIP_SYSLOG_FACILITY", "local9"),
                ],
                "BSV_P2P_LOGSHIP_SYSLOG_FACILITY",
            ),
            (
                &[
                    ("BSV_P2P_LOGSHIP_SYSLOG", "udp://h"),
                    ("BSV_P2P_LOGSHIP_SYSLOG_SD_ID", "nonumber"),
                ],
                "BSV_P2P_LOGSHIP_SYSLOG_SD_ID: expected name@enterprise-number",
            ),
            (
                &[
                    ("BSV_P2P_LOGSHIP_STDOUT", "true"),
                    ("BSV_P2P_LOGSHIP_BUFFER_RECORDS", "10"),
                ],
                "BSV_P2P_LOGSHIP_BUFFER_RECORDS: expected records from 1000",
            ),
            (
                &[
                    ("BSV_P2P_LOGSHIP_STDOUT", "true"),
                    ("BSV_P2P_LOGSHIP_METRICS_BIND", "localhost"),
                ],
                "BSV_P2P_LOGSHIP_METRICS_BIND",
            ),
            (
                &[
                    ("BSV_P2P_LOGSHIP_STDOUT", "true"),
                    ("BSV_P2P_LOGSHIP_START", "newest"),
                ],
                "BSV_P2P_LOGSHIP_START: expected oldest or now",
            ),
        ];
        for (vars, expected) in cases {
            let mut all = vec![("HOME", "/h")];
            all.extend_from_slice(vars);
            let err = LogshipConfig::resolve(&Args::default(), &env(&all)).unwrap_err();
            assert!(err.contains(expected), "{err} / {expected}");
        }
    }
}
