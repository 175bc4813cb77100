//! Syslog, RFC 5424, over UDP (RFC 5426: one message per datagram), TCP
//! (RFC 6587 octet counting: `LEN SP MSG`) or a Unix datagram socket such as
//! `/dev/log` (one message per datagram). Each message keeps the event's own
//! time as TIMESTAMP, its kind as MSGID, a sentence as MSG, and every field
//! of the event as structured data under one SD-ID (`bsvp2p@32473` unless
//! set: an enterprise number of one's own belongs there).
//!
//! UDP and the Unix socket hand a datagram to the kernel and learn nothing
//! more; only TCP can hold a batch until the receiver is back. A TCP
//! receiver that stops reading holds up this destination only: a write that
//! makes no progress for [`WRITE_TIMEOUT`] drops the connection and the
//! batch is sent again on a new one.

use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_std::future::timeout;
use async_std::io::WriteExt;
use async_std::net::{TcpStream, UdpSocket};
use async_std::os::unix::net::UnixDatagram;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::Value;

use super::{Outcome, Sink};
use crate::record::{Level, Record};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The SD-ID's enterprise number: 32473 is the one RFC 5612 sets aside for
/// documentation. An operator with an enterprise number of their own sets it.
pub const DEFAULT_SD_ID: &str = "bsvp2p@32473";
pub const DEFAULT_APP_NAME: &str = "bsv-p2p-relay";
/// RFC 5426 asks receivers to take 2,048 octets; rsyslog takes 8,192 by
/// default. The relay's events are a few hundred.
pub const DEFAULT_MAX_BYTES: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Udp(String),
    Tcp(String),
    Unix(PathBuf),
}

impl Target {
    /// `udp://HOST:PORT`, `tcp://HOST:PORT` or `unix:///PATH`.
    pub fn parse(text: &str) -> Result<Target, String> {
        let hostport = |rest: &str, default_port: u16| -> Result<String, String> {
            if rest.is_empty() || rest.contains('/') {
                return Err(format!("expected HOST:PORT after the scheme, got {rest:?}"));
            }
            // `[::1]:514`, `host:514`, or a bare host with the default port.
            let has_port = match rest.rfind(':') {
                Some(i) => {
                    rest[i + 1..].parse::<u16>().is_ok()
                        && (!rest.starts_with('[') || rest[..i].ends_with(']'))
                }
                None => false,
            };
            Ok(if has_port {
                rest.to_string()
            } else {
                format!("{rest}:{default_port}")
            })
        };
        if let Some(rest) = text.strip_prefix("udp://") {
            Ok(Target::Udp(hostport(rest, 514)?))
        } else if let Some(rest) = text.strip_prefix("tcp://") {
            Ok(Target::Tcp(hostport(rest, 601)?))
        } else if let Some(rest) = text.strip_prefix("unix://") {
            if !rest.starts_with('/') {
                return Err(format!(
                    "expected an absolute path like unix:///dev/log, got {text:?}"
                ));
            }
            Ok(Target::Unix(PathBuf::from(rest)))
        } else {
            Err(format!(
                "expected udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH, got {text:?}"
            ))
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Udp(a) => write!(f, "udp://{a}"),
            Target::Tcp(a) => write!(f, "tcp://{a}"),
            Target::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub target: Target,
    /// 0 to 23; 3 is `daemon`.
    pub facility: u8,
    pub hostname: String,
    pub app_name: String,
    pub sd_id: String,
    pub max_bytes: usize,
}

/// Facility names as syslog.conf spells them.
pub fn facility(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "kern",
        "user",
        "mail",
        "daemon",
        "auth",
        "syslog",
        "lpr",
        "news",
        "uucp",
        "cron",
        "authpriv",
        "ftp",
        "ntp",
        "security",
        "console",
        "solaris-cron",
        "local0",
        "local1",
        "local2",
        "local3",
        "local4",
        "local5",
        "local6",
        "local7",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as u8)
}

/// Keeps the printable US-ASCII characters RFC 5424 allows in header
/// fields (`!` to `~`), at most `max` of them; `-` (NILVALUE) if none.
fn header_field(text: &str, max: usize) -> String {
    let kept: String = text
        .chars()
        .filter(|c| ('!'..='~').contains(c))
        .take(max)
        .collect();
    if kept.is_empty() {
        "-".into()
    } else {
        kept
    }
}

/// An SD-NAME: printable US-ASCII except `=`, space, `]` and `"`, 1 to 32.
fn sd_name(text: &str) -> String {
    let name: String = text
        .chars()
        .filter(|c| ('!'..='~').contains(c) && !matches!(c, '=' | ']' | '"'))
        .take(32)
        .collect();
    if name.is_empty() {
        "_".into()
    } else {
        name
    }
}

/// Writes a PARAM-VALUE with `"`, `\` and `]` escaped.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

fn param(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(&sd_name(name));
    out.push_str("=\"");
    escape_into(out, value);
    out.push('"');
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        Value::Array(_) | Value::Object(_) => Some(value.to_string()),
    }
}

/// One record as an RFC 5424 message, without transport framing, at most
/// `max_bytes` long (the MSG is cut first; structured data only if it
/// alone is too long).
pub fn message(record: &Record, s: &Settings) -> String {
    let severity = match record.level() {
        Level::Info => 6,
        Level::Warn => 4,
        Level::Error => 3,
    };
    let pri = u32::from(s.facility) * 8 + severity;
    let mut head = String::with_capacity(512);
    let _ = write!(
        head,
        "<{pri}>1 {} {} {} - {} ",
        record.event.ts,
        header_field(&s.hostname, 255),
        header_field(&s.app_name, 48),
        header_field(record.kind(), 32),
    );
    let mut sd = String::with_capacity(256);
    sd.push('[');
    sd.push_str(&s.sd_id);
    param(&mut sd, "seq", &record.event.seq.to_string());
    for (name, value) in record.fields() {
        match &value {
            // A list is the same parameter repeated, as RFC 5424 allows.
            Value::Array(items) => {
                for item in items {
                    if let Some(text) = scalar(item) {
                        param(&mut sd, &name, &text);
                    }
                }
            }
            _ => {
                if let Some(text) = scalar(&value) {
                    param(&mut sd, &name, &text);
                }
            }
        }
    }
    if let Some(ctx) = &record.ctx {
        param(&mut sd, "traceId", &ctx.trace_id);
        param(&mut sd, "spanId", &ctx.span_id);
    }
    sd.push(']');
    let body = record.describe();
    let mut out = head;
    if out.len() + sd.len() + 1 > s.max_bytes {
        out.push('-');
    } else {
        out.push_str(&sd);
    }
    out.push(' ');
    let room = s.max_bytes.saturating_sub(out.len());
    if body.len() <= room {
        out.push_str(&body);
    } else {
        let mut cut = room;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&body[..cut]);
    }
    out
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Unix(UnixDatagram),
}

pub struct Syslog {
    settings: Settings,
    conn: Option<Conn>,
}

impl Syslog {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            conn: None,
        }
    }

    async fn connect(&self) -> std::io::Result<Conn> {
        Ok(match &self.settings.target {
            Target::Udp(addr) => {
                let resolved = async_std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
                    .await?
                    .next()
                    .ok_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing")))?;
                let local = if resolved.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local).await?;
                socket.connect(resolved).await?;
                Conn::Udp(socket)
            }
            Target::Tcp(addr) => {
                let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(addr.as_str()))
                    .await
                    .map_err(|_| std::io::Error::other("connect timed out"))??;
                let _ = stream.set_nodelay(true);
                Conn::Tcp(stream)
            }
            Target::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.connect(path).await?;
                Conn::Unix(socket)
            }
        })
    }

    async fn deliver(&mut self, batch: &[Arc<Record>]) -> std::io::Result<()> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let settings = &self.settings;
        let conn = self.conn.as_mut().expect("connected above");
        match conn {
            Conn::Tcp(stream) => {
                let mut frames = Vec::with_capacity(batch.len() * 300);
                for record in batch {
                    let msg = message(record, settings);
                    frames.extend_from_slice(format!("{} ", msg.len()).as_bytes());
                    frames.extend_from_slice(msg.as_bytes());
                }
                timeout(WRITE_TIMEOUT, async {
                    stream.write_all(&frames).await?;
                    stream.flush().await
                })
                .await
                .map_err(|_| {
                    std::io::Error::other(format!(
                        "the receiver took nothing for {} s",
                        WRITE_TIMEOUT.as_secs()
                    ))
                })?
            }
            Conn::Udp(socket) => {
                for record in batch {
                    socket.send(message(record, settings).as_bytes()).await?;
                }
                Ok(())
            }
            Conn::Unix(socket) => {
                for record in batch {
                    timeout(
                        WRITE_TIMEOUT,
                        socket.send(message(record, settings).as_bytes()),
                    )
                    .await
                    .map_err(|_| std::io::Error::other("the socket's queue stayed full"))??;
                }
                Ok(())
            }
        }
    }
}

impl Sink for Syslog {
    fn send<'a>(&'a mut self, batch: &'a [Arc<Record>]) -> BoxFuture<'a, Outcome> {
        async move {
            match self.deliver(batch).await {
                Ok(()) => Outcome::Accepted { refused: 0 },
                Err(e) => {
                    self.conn = None;
                    Outcome::Retry {
                        after: None,
                        why: format!("{}: {e}", self.settings.target),
                    }
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Context;
    use bsv_p2p_proto::{DenialReason, Event, EventKind, Timestamp};

    fn settings() -> Settings {
        Settings {
            target: Target::Udp("127.0.0.1:514".into()),
            facility: 3,
            hostname: "relay-1".into(),
            app_name: DEFAULT_APP_NAME.into(),
            sd_id: DEFAULT_SD_ID.into(),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    #[test]
    fn targets_parse_with_default_ports() {
        assert_eq!(
            Target::parse("udp://h").unwrap(),
            Target::Udp("h:514".into())
        );
        assert_eq!(
            Target::parse("tcp://h:6514").unwrap(),
            Target::Tcp("h:6514".into())
        );
        assert_eq!(
            Target::parse("tcp://[::1]:9").unwrap(),
            Target::Tcp("[::1]:9".into())
        );
        assert_eq!(
            Target::parse("tcp://[::1]").unwrap(),
            Target::Tcp("[::1]:601".into())
        );
        assert_eq!(
            Target::parse("unix:///dev/log").unwrap(),
            Target::Unix("/dev/log".into())
        );
        for bad in ["syslog://h", "udp://", "unix://dev/log", "h:514"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(facility("local7"), Some(23));
        assert_eq!(facility("daemon"), Some(3));
        assert_eq!(facility("nope"), None);
    }

    #[test]
    fn a_message_keeps_the_event_time_and_escapes_structured_data() {
        let record = Record {
            event: Event {
                seq: 9,
                ts: Timestamp::from_unix_millis(1_771_527_600_250),
                kind: EventKind::CircuitDenied {
                    src: "we\"ird]\\peer".into(),
                    dst: None,
                    reason: DenialReason::NoReservation,
                },
            },
            ctx: Some(Context {
                trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
                span_id: "b7ad6b7169203331".into(),
                began: None,
            }),
        };
        let msg = message(&record, &settings());
        assert_eq!(
            msg,
            "<28>1 2026-02-19T19:00:00.250Z relay-1 bsv-p2p-relay - circuit_denied \
             [bsvp2p@32473 seq=\"9\" src=\"we\\\"ird\\]\\\\peer\" reason=\"no_reservation\" \
             traceId=\"0af7651916cd43dd8448eb211c80319c\" spanId=\"b7ad6b7169203331\"] \
             circuit from we\"ird]\\peer refused: no_reservation"
        );
    }

    #[test]
    fn lists_repeat_the_parameter_and_long_messages_are_cut() {
        let record = Record {
            event: Event {
                seq: 1,
                ts: Timestamp::from_unix_millis(0),
                kind: EventKind::ReservationCreated {
                    peer_id: "p".into(),
                    expires_at: 5,
                    addrs: vec!["/a".into(), "/b".into()],
                },
            },
            ctx: None,
        };
        let msg = message(&record, &settings());
        assert!(msg.contains(" addrs=\"/a\" addrs=\"/b\""), "{msg}");
        let mut small = settings();
        small.max_bytes = 160;
        let cut = message(&record, &small);
        assert_eq!(cut.len(), 160);
        assert!(cut.contains("[bsvp2p@32473 seq=\"1\""), "{cut}");
        assert!(cut.ends_with("] reservation cre"), "{cut}");
        small.max_bytes = 100;
        let cut = message(&record, &small);
        assert!(
            cut.len() <= 100 && cut.contains(" reservation_created - "),
            "{cut}"
        );
    }

    #[test]
    fn header_fields_keep_printable_ascii_only() {
        assert_eq!(header_field("relay 1\n", 255), "relay1");
        assert_eq!(header_field("", 255), "-");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
        assert_eq!(sd_name("a=b c]d\"e"), "abcde");
    }
}
