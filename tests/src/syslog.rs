//! A real rsyslog (Debian package `rsyslog`) as the syslog receiver of the
//! log shipper's end-to-end tests: `rsyslogd -n` with a config of its own
//! in a scratch directory (no system config, no daemon, root or not),
//! listening with imudp and imtcp on free 127.0.0.1 ports and writing every
//! message it receives as one JSON line; plus a strict parser of RFC 5424
//! structured data to check what arrived.
//!
//! rsyslog 8.2302 as configured here, what the tests can rely on:
//! - The TCP listener takes RFC 6587 octet counting (`<len> <msg>`) and
//!   LF-terminated framing on the same connection; a message may hold LF
//!   inside an octet-counted frame.
//! - Control characters are kept as sent (the config turns off rsyslog's
//!   default of writing LF as `#012`); UTF-8 and a BOM before MSG are kept.
//! - `structuredData` is the STRUCTURED-DATA part exactly as sent, escapes
//!   included (`\"`, `\\`, `\]`), or `"-"`. rsyslog does not validate it
//!   (`[x a="unterminated]` passes): check it with
//!   [`parse_structured_data`].
//! - It does not enforce RFC 5424's field lengths (a 60-character APP-NAME
//!   or 40-character MSGID arrives whole).
//! - A NILVALUE timestamp (`-`) arrives as the time of receipt.
//! - A TIME-SECFRAC of more than 6 digits (RFC 5424 allows 6) is accepted
//!   but written back as garbage bytes in `timestamp`: exporters must send
//!   at most microseconds.
//! - A message longer than the maximum size (64 KiB here unless
//!   [`Rsyslog::start_with_max_message_size`]) is cut there; over TCP the
//!   rest of an octet-counted frame then arrives as a further message, with
//!   "received oversize message" in [`Rsyslog::log`]. A UDP datagram is
//!   cut silently, nothing logged.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::scratch::ScratchDir;

/// How long rsyslogd gets to take its probe messages on both listeners.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// MSGID of the fixture's own readiness probes, kept out of `messages`.
const PROBE_MSGID: &str = "bsv-p2p-probe";

/// rsyslog's default is 8 KiB; the tests' messages may be bigger.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// `$BSV_P2P_RSYSLOGD`, else Debian's `/usr/sbin/rsyslogd` (not on a
/// non-root PATH), else `rsyslogd` from PATH.
pub fn rsyslogd_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("BSV_P2P_RSYSLOGD") {
        return PathBuf::from(bin);
    }
    let debian = PathBuf::from("/usr/sbin/rsyslogd");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("rsyslogd")
    }
}

/// The config: one JSON line per message in `messages.jsonl`, probes in
/// `probes.jsonl`, rsyslog's own messages in `internal.log`.
fn config(dir: &ScratchDir, udp_port: u16, tcp_port: u16, max_message_size: usize) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    format!(
        r#"# Written by the tests' syslog fixture (tests/src/syslog.rs).
global(
  workDirectory="{work}"
  maxMessageSize="{max_message_size}"
  processInternalMessages="on"
  parser.escapeControlCharactersOnReceive="off"
)
module(load="imudp")
module(load="imtcp")

template(name="capture" type="list" option.jsonf="on") {{
  property(outname="raw" name="rawmsg" format="jsonf")
  property(outname="protocolVersion" name="protocol-version" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="facility" name="syslogfacility" format="jsonf")
  property(outname="severity" name="syslogseverity" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="appName" name="app-name" format="jsonf")
  property(outname="procId" name="procid" format="jsonf")
  property(outname="msgId" name="msgid" format="jsonf")
  property(outname="structuredData" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="input" name="inputname" format="jsonf")
  property(outname="fromIp" name="fromhost-ip" format="jsonf")
  property(outname="received" name="timegenerated" dateFormat="rfc3339" format="jsonf")
}}

ruleset(name="capture") {{
  if $msgid == "{PROBE_MSGID}" then {{
    action(type="omfile" file="{probes}" template="capture")
    stop
  }}
  action(type="omfile" file="{messages}" template="capture")
}}

input(type="imudp" address="127.0.0.1" port="{udp_port}" ruleset="capture")
input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="capture")

*.* action(type="omfile" file="{internal}")
"#,
        work = path("work"),
        probes = path("probes.jsonl"),
        messages = path("messages.jsonl"),
        internal = path("internal.log"),
    )
}

/// A running `rsyslogd -n`, killed by PID when dropped.
///
/// [`Rsyslog::messages`] gives one JSON object per message received,
/// all values strings:
///
/// ```json
/// {"raw":"<165>1 2026-11-29T22:00:00.123456Z relay-host bsv-relay 4242 ID47 [ex@32473 a=\"q\\\"uote\"] hi",
///  "protocolVersion":"1","pri":"165","facility":"20","severity":"5",
///  "timestamp":"2026-11-29T22:00:00.123456Z","hostname":"relay-host","appName":"bsv-relay",
///  "procId":"4242","msgId":"ID47","structuredData":"[ex@32473 a=\"q\\\"uote\"]","msg":"hi",
///  "input":"imudp","fromIp":"127.0.0.1","received":"2026-11-29T22:36:21.438546+00:00"}
/// ```
///
/// `raw` is the message as received (after TCP framing), `input` is
/// `imudp` or `imtcp`, `protocolVersion` is `"1"` for RFC 5424 and `"0"`
/// when rsyslog fell back to its RFC 3164 parser. A line that is not JSON
/// appears as `{"unparsed": line}`.
pub struct Rsyslog {
    child: Child,
    udp_port: u16,
    tcp_port: u16,
    dir: ScratchDir,
}

impl Rsyslog {
    /// Starts rsyslogd with the default maximum message size (64 KiB).
    pub fn start() -> Rsyslog {
        Rsyslog::start_with_max_message_size(DEFAULT_MAX_MESSAGE_SIZE)
    }

    /// Starts rsyslogd with `maxMessageSize` = `bytes`; waits until a probe
    /// message has arrived over UDP and over TCP.
    pub fn start_with_max_message_size(bytes: usize) -> Rsyslog {
        let dir = ScratchDir::new("rsyslog");
        std::fs::create_dir(dir.join("work")).expect("create rsyslog's work directory");
        let udp_port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free loopback UDP port: {e}"));
        let tcp_port = crate::prometheus::free_port().unwrap_or_else(|e| panic!("{e}"));
        let conf = dir.join("rsyslog.conf");
        std::fs::write(&conf, config(&dir, udp_port, tcp_port, bytes)).expect("write rsyslog.conf");
        let log = std::fs::File::create(dir.join("rsyslogd.log")).expect("create rsyslogd.log");
        let mut command = Command::new(rsyslogd_bin());
        command
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("rsyslogd.log"))
            .stderr(log);
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); it is the Debian package rsyslog, which scripts/test installs",
                rsyslogd_bin().display()
            )
        });
        let mut rsyslog = Rsyslog {
            child,
            udp_port,
            tcp_port,
            dir,
        };
        rsyslog.await_probes();
        rsyslog
    }

    /// Sends probes over UDP and TCP until one of each is in probes.jsonl.
    fn await_probes(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        let probe = format!("<14>1 - fixture rsyslog - {PROBE_MSGID} - probe");
        let mut tcp_sent = false;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rsyslogd exited with {status}: {}", self.log());
            }
            let probes = read_json_lines(&self.dir.join("probes.jsonl"));
            let has = |input: &str| probes.iter().any(|p| p["input"] == input);
            if has("imudp") && has("imtcp") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not take probes on UDP {} and TCP {} within {START_TIMEOUT:?} \
                 (got {probes:?}): {}",
                self.udp_addr(),
                self.tcp_addr(),
                self.log()
            );
            if !has("imudp") {
                let _ = udp.send_to(probe.as_bytes(), self.udp_addr());
            }
            if !tcp_sent {
                tcp_sent = send_tcp_octet_counted(self.tcp_addr(), &[probe.as_bytes()]).is_ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where its UDP listener is.
    pub fn udp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.udp_port))
    }

    /// Where its TCP listener is (octet counting or LF framing).
    pub fn tcp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tcp_port))
    }

    /// Every message written so far (probes excluded), in the order
    /// rsyslog wrote them.
    pub fn messages(&self) -> Vec<Value> {
        read_json_lines(&self.dir.join("messages.jsonl"))
    }

    /// Waits until at least `n` messages have been written and returns them
    /// all; panics after `timeout` with those that were.
    pub fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() >= deadline {
                panic!(
                    "rsyslog: {} messages within {timeout:?}, expected {n}: {messages:#?}; log: {}",
                    messages.len(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What rsyslogd printed and its own messages (errors, "oversize").
    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "rsyslogd output: {}\ninternal.log: {}",
            read("rsyslogd.log"),
            read("internal.log")
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of a JSON-lines file written by rsyslog; bytes that are not
/// UTF-8 become U+FFFD, lines that are not JSON `{"unparsed": line}`.
fn read_json_lines(path: &std::path::Path) -> Vec<Value> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|_| serde_json::json!({ "unparsed": l }))
        })
        .collect()
}

/// Sends `message` as one UDP datagram to `addr`.
pub fn send_udp(addr: SocketAddr, message: &[u8]) -> std::io::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let sent = socket.send_to(message, addr)?;
    if sent != message.len() {
        return Err(std::io::Error::other(format!(
            "sent {sent} of {} bytes",
            message.len()
        )));
    }
    Ok(())
}

/// Sends `messages` on one new TCP connection to `addr`, each framed with
/// RFC 6587 octet counting (`<byte length> <message>`), in one write.
pub fn send_tcp_octet_counted(addr: SocketAddr, messages: &[&[u8]]) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    let mut framed = Vec::new();
    for m in messages {
        framed.extend_from_slice(format!("{} ", m.len()).as_bytes());
        framed.extend_from_slice(m);
    }
    stream.write_all(&framed)?;
    stream.flush()
}

/// One SD-ELEMENT of RFC 5424 structured data, values unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement {
    pub id: String,
    pub params: Vec<(String, String)>,
}

/// Parses RFC 5424 STRUCTURED-DATA strictly: `-` is no elements; else one
/// or more `[SD-ID *(SP PARAM-NAME="PARAM-VALUE")]` with no space between
/// elements, names of 1 to 32 printable ASCII characters other than `=`,
/// space, `]` and `"`, and in values `"`, `\` and `]` escaped with `\` (a
/// `\` before any other character stays, as the RFC says). Errors name the
/// character offset.
pub fn parse_structured_data(sd: &str) -> Result<Vec<SdElement>, String> {
    if sd == "-" {
        return Ok(Vec::new());
    }
    let chars: Vec<char> = sd.chars().collect();
    let mut at = 0;
    let mut elements = Vec::new();
    let name = |at: &mut usize, what: &str| -> Result<String, String> {
        let start = *at;
        while *at < chars.len()
            && chars[*at].is_ascii_graphic()
            && !matches!(chars[*at], '=' | ']' | '"')
        {
            *at += 1;
        }
        let len = *at - start;
        if len == 0 || len > 32 {
            return Err(format!("{what} of {len} characters at {start} in {sd:?}"));
        }
        Ok(chars[start..*at].iter().collect())
    };
    while at < chars.len() {
        if chars[at] != '[' {
            return Err(format!("expected '[' at {at} in {sd:?}"));
        }
        at += 1;
        let id = name(&mut at, "SD-ID")?;
        let mut params = Vec::new();
        loop {
            match chars.get(at) {
                Some(']') => {
                    at += 1;
                    break;
                }
                Some(' ') => at += 1,
                other => {
                    return Err(format!(
                        "expected ' ' or ']' at {at}, found {other:?} in {sd:?}"
                    ))
                }
            }
            let param = name(&mut at, "PARAM-NAME")?;
            if chars.get(at) != Some(&'=') || chars.get(at + 1) != Some(&'"') {
                return Err(format!("expected '=\"' after {param:?} at {at} in {sd:?}"));
            }
            at += 2;
            let mut value = String::new();
            loop {
                match chars.get(at) {
                    None => return Err(format!("unterminated value of {param:?} in {sd:?}")),
                    Some('"') => {
                        at += 1;
                        break;
                    }
                    Some(']') => return Err(format!("unescaped ']' at {at} in {sd:?}")),
                    Some('\\') => match chars.get(at + 1) {
                        Some(c @ ('"' | '\\' | ']')) => {
                            value.push(*c);
                            at += 2;
                        }
                        _ => {
                            value.push('\\');
                            at += 1;
                        }
                    },
                    Some(c) => {
                        value.push(*c);
                        at += 1;
                    }
                }
            }
            params.push((param, value));
        }
        elements.push(SdElement { id, params });
    }
    if elements.is_empty() {
        return Err("empty structured data (use \"-\")".into());
    }
    Ok(elements)
}
