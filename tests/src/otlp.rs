//! Real OTLP/HTTP receivers for the log shipper's end-to-end tests, all from
//! the Python venv that `tests/otlp/install.sh` sets up:
//!
//! - [`OtlpReceiver`]: `tests/otlp/receiver.py`, which decodes with the
//!   opentelemetry-proto package and prints every log record and span with
//!   its resource and scope as one JSON line; or, with
//!   [`OtlpReceiver::start_oteltap`], the `oteltap` CLI (a Rust decoder of
//!   its own, which prints bare records: no resource, no scope). The record
//!   shapes are described on [`OtlpReceiver`].
//! - [`FaultyOtlp`]: `tests/otlp/faulty.py` in front of a receiver, switched
//!   by the test to answer 429 / 400 / partial success or to forward.
//! - [`Rotel`]: the `rotel` collector (its wheel ships the binary), an OTLP
//!   hop between a sender and a receiver.
//!
//! Each is started on 127.0.0.1 and killed by PID when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::child::wait_exit;
use crate::relay::workspace_dir;
use crate::scratch::ScratchDir;

/// How long a started receiver, faulty endpoint or collector gets to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`OtlpReceiver::stop`] waits after SIGTERM before killing.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `tests/otlp` in the workspace: the scripts and the venv.
pub fn otlp_dir() -> PathBuf {
    workspace_dir().join("tests").join("otlp")
}

/// `$env` if set, else `tests/otlp/.venv/bin/<name>`; panics with the
/// install command when it is missing.
fn venv_tool(env: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env}={} is not a file", path.display());
        return path;
    }
    let path = otlp_dir().join(".venv").join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing (or not readable by this user): run tests/otlp/install.sh (scripts/test does) to install oteltap, \
         rotel and opentelemetry-proto, or set {env}",
        path.display()
    );
    path
}

/// The venv's python, which runs receiver.py and faulty.py
/// (`$BSV_P2P_OTLP_PYTHON` overrides).
pub fn python() -> PathBuf {
    venv_tool("BSV_P2P_OTLP_PYTHON", "python")
}

/// The `oteltap` CLI (`$BSV_P2P_OTELTAP_BIN` overrides).
pub fn oteltap_bin() -> PathBuf {
    venv_tool("BSV_P2P_OTELTAP_BIN", "oteltap")
}

/// The rotel collector binary, linked into the venv by install.sh
/// (`$BSV_P2P_ROTEL_BIN` overrides).
pub fn rotel_bin() -> PathBuf {
    venv_tool("BSV_P2P_ROTEL_BIN", "rotel-agent")
}

fn free_port() -> u16 {
    crate::prometheus::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `signal` to `child` by its PID.
fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("a PID fits pid_t");
    // SAFETY: kill(2) on the PID of a child we have not reaped yet.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// An HTTP answer whose body may be binary (a protobuf response).
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub code: u16,
    /// Header lines as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The first header called `name`, any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {:?}",
                self.code,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One HTTP/1.1 request with a body to 127.0.0.1:`port`, on its own
/// connection, read to the end (the servers here send Content-Length and
/// close). An error when the connection fails or closes without an answer.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpAnswer, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    if raw.is_empty() {
        return Err("the connection closed without an answer".into());
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(HttpAnswer {
        code,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

/// POSTs an OTLP/HTTP protobuf body to 127.0.0.1:`port` at `path`
/// (`/v1/logs`, `/v1/traces`); panics when no answer comes.
pub fn post_protobuf(port: u16, path: &str, body: &[u8]) -> HttpAnswer {
    http_request(
        port,
        "POST",
        path,
        &[("Content-Type", "application/x-protobuf")],
        body,
    )
    .unwrap_or_else(|e| panic!("POST {path} to 127.0.0.1:{port}: {e}"))
}

/// Which program an [`OtlpReceiver`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// tests/otlp/receiver.py: records with resource and scope.
    Full,
    /// The oteltap CLI: bare records, as oteltap prints them.
    Oteltap,
}

/// What the stdout and stderr readers of an [`OtlpReceiver`] collected,
/// across restarts.
#[derive(Default)]
struct Received {
    state: Mutex<ReceivedState>,
    changed: Condvar,
}

#[derive(Default)]
struct ReceivedState {
    /// Records in arrival order, each tagged with its "signal".
    records: Vec<Value>,
    /// Lines that are neither a record nor a ready line.
    other: Vec<String>,
    /// How many runs have said they listen (and on which port, last).
    ready_runs: u32,
    port: u16,
    /// How many runs have closed their stdout.
    closed_runs: u32,
    stderr: Vec<u8>,
}

impl Received {
    /// Reads one run's stdout until it closes.
    fn read_stdout(&self, pipe: impl Read, kind: Kind) {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let mut state = self.state.lock().unwrap();
            match (kind, serde_json::from_str::<Value>(line)) {
                (Kind::Full, Ok(v)) if v["signal"] == "ready" => {
                    state.ready_runs += 1;
                    state.port = v["port"]
                        .as_u64()
                        .and_then(|p| p.try_into().ok())
                        .unwrap_or(0);
                }
                (Kind::Full, Ok(v)) if v["signal"].is_string() => state.records.push(v),
                (Kind::Oteltap, Ok(Value::Object(mut record))) => {
                    let signal = if record.contains_key("startTimeUnixNano") {
                        "span"
                    } else if record.contains_key("observedTimeUnixNano")
                        || record.contains_key("severityNumber")
                    {
                        "log"
                    } else {
                        "metric"
                    };
                    record.insert("signal".into(), signal.into());
                    state.records.push(Value::Object(record));
                }
                (Kind::Oteltap, _) if line.starts_with("Listening for OTLP/HTTP") => {
                    state.ready_runs += 1;
                }
                _ => state.other.push(line.to_string()),
            }
            drop(state);
            self.changed.notify_all();
        }
        self.state.lock().unwrap().closed_runs += 1;
        self.changed.notify_all();
    }

    fn read_stderr(&self, mut pipe: impl Read) {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.state
                .lock()
                .unwrap()
                .stderr
                .extend_from_slice(&buf[..n]);
        }
    }
}

/// A running OTLP/HTTP receiver on 127.0.0.1, killed when dropped.
///
/// Records are JSON objects, each with `"signal"`: `"log"`, `"span"`,
/// `"metric"`, or `"error"` (a request the receiver rejected:
/// `{"signal":"error","path","status","error"}`).
///
/// From [`OtlpReceiver::start`] (tests/otlp/receiver.py; its module doc is
/// the full reference), a log record is
///
/// ```json
/// {"signal":"log","request":1,"path":"/v1/logs","contentType":"application/x-protobuf",
///  "contentEncoding":null,"headers":{"content-type":"application/x-protobuf",...},
///  "resource":{"service.name":"bsv-relay","host.id":7},"resourceDroppedAttributesCount":0,
///  "resourceSchemaUrl":"","scope":{"name":"logship","version":"0.1","attributes":{},
///  "droppedAttributesCount":0},"scopeSchemaUrl":"",
///  "timeUnixNano":1795991721138990858,"observedTimeUnixNano":1795991721138990859,
///  "severityNumber":9,"severityText":"INFO","body":"hello","attributes":{"peer":"12D3Koo","n":42},
///  "droppedAttributesCount":0,"flags":1,"traceId":"0102030405060708090a0b0c0d0e0f10",
///  "spanId":"a1a2a3a4a5a6a7a8","eventName":""}
/// ```
///
/// and a span has the same request, resource and scope fields plus
/// `traceId`, `spanId`, `parentSpanId` (lower-case hex, `""` when unset),
/// `traceState`, `flags`, `name`, `kind`, `startTimeUnixNano`,
/// `endTimeUnixNano` (integers, ns), `attributes`, `droppedAttributesCount`,
/// `events` (`[{"timeUnixNano","name","attributes","droppedAttributesCount"}]`),
/// `droppedEventsCount`, `links`, `droppedLinksCount` and
/// `status` (`{"code","message"}`). Attribute maps hold JSON values:
/// strings, integers, floats, booleans, `{"bytes":"<hex>"}`, lists, objects.
///
/// From [`OtlpReceiver::start_oteltap`], records are what oteltap prints,
/// tagged with `"signal"` here: the protobuf JSON mapping of the bare
/// LogRecord / Span (camelCase, hex ids, 64-bit integers as strings such as
/// `"timeUnixNano":"1795991666491796713"`, attributes as
/// `[{"key","value":{"stringValue"|"intValue"|...}}]`), with no resource,
/// scope or request fields. oteltap answers 400 to gzip and JSON bodies.
pub struct OtlpReceiver {
    kind: Kind,
    port: u16,
    child: Option<Child>,
    received: Arc<Received>,
    readers: Vec<JoinHandle<()>>,
    runs: u32,
}

impl OtlpReceiver {
    /// Starts tests/otlp/receiver.py on a free loopback port.
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::launch(Kind::Full, 0)
    }

    /// Starts the `oteltap` CLI on a free loopback port: a second, independent
    /// decoder, without resources or scopes in its records.
    pub fn start_oteltap() -> OtlpReceiver {
        OtlpReceiver::launch(Kind::Oteltap, free_port())
    }

    fn launch(kind: Kind, port: u16) -> OtlpReceiver {
        let mut receiver = OtlpReceiver {
            kind,
            port,
            child: None,
            received: Arc::default(),
            readers: Vec::new(),
            runs: 0,
        };
        receiver.spawn();
        receiver
    }

    /// Starts one run of the program on `self.port` (0: receiver.py picks)
    /// and waits until it listens.
    fn spawn(&mut self) {
        let mut command = match self.kind {
            Kind::Full => {
                let mut c = Command::new(python());
                c.arg(otlp_dir().join("receiver.py"));
                c
            }
            Kind::Oteltap => Command::new(oteltap_bin()),
        };
        command
            .args(["--port", &self.port.to_string()])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the OTLP receiver {command:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (received, kind) = (self.received.clone(), self.kind);
        self.readers.push(std::thread::spawn(move || {
            received.read_stdout(stdout, kind)
        }));
        let received = self.received.clone();
        self.readers
            .push(std::thread::spawn(move || received.read_stderr(stderr)));
        self.child = Some(child);
        self.runs += 1;

        let deadline = Instant::now() + START_TIMEOUT;
        let mut state = self.received.state.lock().unwrap();
        while state.ready_runs < self.runs {
            if state.closed_runs >= self.runs {
                panic!(
                    "the OTLP receiver ({:?}) exited before listening; stderr: {}",
                    self.kind,
                    String::from_utf8_lossy(&state.stderr)
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "the OTLP receiver ({:?}) did not listen within {START_TIMEOUT:?}; stderr: {}",
                    self.kind,
                    String::from_utf8_lossy(&state.stderr)
                );
            }
            state = self.received.changed.wait_timeout(state, left).unwrap().0;
        }
        if self.kind == Kind::Full {
            self.port = state.port;
        }
    }

    /// The base URL to export to, e.g. `http://127.0.0.1:43123` (the
    /// exporter appends `/v1/logs`, `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every record so far, all signals, in arrival order.
    pub fn records(&self) -> Vec<Value> {
        self.received.state.lock().unwrap().records.clone()
    }

    /// Records of one signal so far: "log", "span", "metric" or "error".
    pub fn records_of(&self, signal: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["signal"] == signal)
            .collect()
    }

    /// Log records so far.
    pub fn logs(&self) -> Vec<Value> {
        self.records_of("log")
    }

    /// Spans so far.
    pub fn spans(&self) -> Vec<Value> {
        self.records_of("span")
    }

    /// Requests the receiver rejected so far (bad body, path or type).
    pub fn errors(&self) -> Vec<Value> {
        self.records_of("error")
    }

    /// Waits until at least `n` records of `signal` have arrived and returns
    /// all of them; panics after `timeout` with what did arrive.
    pub fn wait_records(&self, signal: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut state = self.received.state.lock().unwrap();
        loop {
            let found: Vec<Value> = state
                .records
                .iter()
                .filter(|r| r["signal"] == signal)
                .cloned()
                .collect();
            if found.len() >= n {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let tail: Vec<String> = state
                    .records
                    .iter()
                    .rev()
                    .take(5)
                    .map(Value::to_string)
                    .collect();
                panic!(
                    "OTLP receiver: {} {signal} records within {timeout:?}, expected {n}; \
                     last records (newest first): {tail:#?}; stderr: {}",
                    found.len(),
                    String::from_utf8_lossy(&state.stderr)
                );
            }
            state = self.received.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// [`Self::wait_records`] for log records.
    pub fn wait_logs(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_records("log", n, timeout)
    }

    /// [`Self::wait_records`] for spans.
    pub fn wait_spans(&self, n: usize, timeout: Duration) -> Vec<Value> {
        self.wait_records("span", n, timeout)
    }

    /// Output lines that were neither records nor the ready line.
    pub fn other_lines(&self) -> Vec<String> {
        self.received.state.lock().unwrap().other.clone()
    }

    /// The receiver's stderr so far, all runs.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.received.state.lock().unwrap().stderr).into_owned()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the receiver (SIGTERM, then SIGKILL after 10 s), so that
    /// exports to it fail until [`Self::start_again`]. Records are kept.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the OTLP receiver is not running");
        signal(&child, libc::SIGTERM);
        let status = match wait_exit(&mut child, STOP_TIMEOUT, Duration::from_millis(20)) {
            Ok(Some(status)) => status,
            _ => {
                let _ = child.kill();
                child.wait().expect("reap the OTLP receiver")
            }
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// Starts the receiver again on the same port after [`Self::stop`]; the
    /// records of earlier runs stay (a new run counts `request` from 1).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the OTLP receiver is still running");
        self.spawn();
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `command` with stdout piped and waits for its first stdout line,
/// a JSON object; later stdout is read and dropped. Panics, naming `what`
/// and showing `log`, when it exits or says nothing within START_TIMEOUT.
fn spawn_with_ready_line(
    mut command: Command,
    what: &str,
    log: impl Fn() -> String,
) -> (Child, Value) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({command:?}): {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(Some(Ok(line))) => match serde_json::from_str::<Value>(&line) {
            Ok(v) if v.is_object() => (child, v),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{what} printed {line:?} instead of its ready line; log: {}",
                    log()
                )
            }
        },
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not say it listens within {START_TIMEOUT:?}; log: {}",
                log()
            )
        }
    }
}

/// tests/otlp/faulty.py on a free loopback port, in front of `upstream`:
/// forwards each OTLP request there until told otherwise with
/// [`FaultyOtlp::set_mode`]. Killed when dropped.
pub struct FaultyOtlp {
    child: Child,
    port: u16,
    dir: ScratchDir,
}

impl FaultyOtlp {
    /// Starts it forwarding to `upstream`, a base URL such as
    /// [`OtlpReceiver::endpoint`].
    pub fn start(upstream: &str) -> FaultyOtlp {
        let dir = ScratchDir::new("faulty-otlp");
        let log_path = dir.join("faulty.log");
        let log = std::fs::File::create(&log_path).expect("create faulty.log");
        let mut command = Command::new(python());
        command
            .arg(otlp_dir().join("faulty.py"))
            .args(["--port", "0", "--upstream", upstream])
            .env("PYTHONUNBUFFERED", "1")
            .stderr(log);
        let (child, ready) = spawn_with_ready_line(command, "faulty.py", || {
            std::fs::read_to_string(&log_path).unwrap_or_default()
        });
        let port = ready["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("faulty.py's ready line has no port: {ready}"));
        FaultyOtlp { child, port, dir }
    }

    /// The base URL to export to instead of the upstream's.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets how it answers the requests that follow, e.g.
    /// `json!({"status": 429, "retryAfter": "2"})`, `json!({"status": 400})`,
    /// `json!({"status": "partial", "rejected": 3})`,
    /// `json!({"status": "drop"})` (close without answering) or
    /// `json!({"status": "forward"})`; optional `"delay": seconds` before
    /// each answer, `"times": n` to go back to forwarding after n requests.
    /// Panics when faulty.py refuses the mode.
    pub fn set_mode(&self, mode: Value) {
        let answer = http_request(
            self.port,
            "POST",
            "/_mode",
            &[("Content-Type", "application/json")],
            mode.to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("faulty.py /_mode: {e}"));
        assert_eq!(
            answer.code,
            200,
            "faulty.py refused mode {mode}: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }

    /// Back to forwarding, with the request record emptied.
    pub fn reset(&self) {
        let answer = http_request(self.port, "POST", "/_reset", &[], b"")
            .unwrap_or_else(|e| panic!("faulty.py /_reset: {e}"));
        assert_eq!(answer.code, 200, "faulty.py /_reset: {answer:?}");
    }

    /// Every OTLP request so far, oldest first: `{"n","t","unixTime","path",
    /// "contentType","contentEncoding","bytes","mode","status","retryAfter",
    /// "upstreamError"}`. `t` is CLOCK_MONOTONIC seconds at arrival, so
    /// differences are retry intervals; `status` is what it answered (0
    /// for a dropped connection).
    pub fn requests(&self) -> Vec<Value> {
        let answer = http_request(self.port, "GET", "/_requests", &[], b"")
            .unwrap_or_else(|e| panic!("faulty.py /_requests: {e}"));
        match answer.json() {
            Value::Array(requests) => requests,
            other => panic!("faulty.py /_requests is not a list: {other}"),
        }
    }

    /// Waits until at least `n` requests have been answered; panics after
    /// `timeout` with those that were.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            if Instant::now() >= deadline {
                panic!(
                    "faulty.py: {} requests within {timeout:?}, expected {n}: {requests:#?}",
                    requests.len()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its stderr (tracebacks, if any).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("faulty.log")).unwrap_or_default()
    }
}

impl Drop for FaultyOtlp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rotel collector from the rotel wheel, receiving OTLP/HTTP on a free
/// loopback port (its gRPC receiver on another) and exporting OTLP/HTTP to
/// an upstream base URL. It always gzips what it exports (this version
/// ignores `--otlp-exporter-compression none`), so the upstream must accept
/// gzip: [`OtlpReceiver::start`] does, oteltap does not. Batches for up to
/// 200 ms. Killed when dropped.
pub struct Rotel {
    child: Child,
    port: u16,
    dir: ScratchDir,
}

impl Rotel {
    /// Starts rotel exporting to `upstream` (e.g. [`OtlpReceiver::endpoint`];
    /// rotel appends `/v1/logs`, `/v1/traces`) and waits until its HTTP
    /// receiver accepts connections.
    pub fn start(upstream: &str) -> Rotel {
        let dir = ScratchDir::new("rotel");
        let (port, grpc_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.join("rotel.out")).expect("create rotel.out");
        let mut command = Command::new(rotel_bin());
        command
            .arg("start")
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{port}")])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--exporter", "otlp", "--otlp-exporter-protocol", "http"])
            .args(["--otlp-exporter-endpoint", upstream])
            .arg("--pid-file")
            .arg(dir.join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.join("rotel.log"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("rotel.out"))
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rotel ({command:?}): {e}"));
        let mut rotel = Rotel { child, port, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = rotel.child.try_wait() {
                panic!("rotel exited with {status}: {}", rotel.log());
            }
            assert!(
                Instant::now() < deadline,
                "rotel did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}: {}",
                rotel.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        rotel
    }

    /// The base URL of its OTLP/HTTP receiver.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What rotel printed (it logs export failures there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rotel.out")).unwrap_or_default()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
