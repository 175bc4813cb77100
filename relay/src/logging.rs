//! Log output. Every record the relay writes names an `event` (such as
//! `reservation_created`) and carries its fields as key-values, so the same
//! call site gives a readable line on a terminal and a JSON object in
//! production whose fields follow the operator guide:
//! `{"timestamp","level","event","peerId","ttl",...}`.
//!
//! Lines are formatted where they are logged and written by a thread of their
//! own through a bounded queue. The swarm task logs, and a log reader that
//! stops reading (a full pipe, a stalled journald, a blocking Docker log
//! driver) must never stop the relay: when the queue is full the line is
//! dropped and counted, and once the writer catches up it says how many went
//! missing in a `log_lines_dropped` line. A closed stdout drops lines too.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use log::kv::{self, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};

use crate::config::LogFormat;

/// Lines dropped because the queue was full, since start.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Dropped lines not yet reported in a `log_lines_dropped` line.
static UNREPORTED: AtomicU64 = AtomicU64::new(0);
/// Messages in the queue: the writer reports drops once it reaches zero.
static QUEUED: AtomicUsize = AtomicUsize::new(0);
/// Messages the queue holds at most (`log.queueLines`).
static CAPACITY: AtomicUsize = AtomicUsize::new(1);
static QUEUE: OnceLock<Sender<Message>> = OnceLock::new();

enum Message {
    Line(String),
    /// Answered once every line queued before it is written.
    Flush(SyncSender<()>),
}

/// Lines dropped since start because the log reader did not keep up.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Installs the logger for the whole process, with a queue of `capacity`
/// lines in front of stdout.
pub fn init(format: &LogFormat, level: LevelFilter, capacity: usize) {
    let pretty = match format {
        LogFormat::Pretty => true,
        LogFormat::Json => false,
        LogFormat::Auto => std::io::stdout().is_terminal(),
    };
    // Unbounded as a channel (its slots come in small blocks as lines
    // queue, and go as they are written), bounded by `QUEUED`: a bounded
    // channel of 8,192 slots kept a quarter of a MiB resident for good.
    let (tx, rx) = mpsc::channel();
    if QUEUE.set(tx).is_err() {
        return;
    }
    CAPACITY.store(capacity.max(1), Ordering::Relaxed);
    let writer = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(rx, pretty));
    if writer.is_ok() && log::set_boxed_logger(Box::new(Logger { pretty })).is_ok() {
        log::set_max_level(level);
    }
}

/// Queues `message` unless the queue holds `CAPACITY` messages already.
fn enqueue(queue: &Sender<Message>, message: Message) -> Result<(), TrySendError<Message>> {
    if QUEUED.fetch_add(1, Ordering::Relaxed) >= CAPACITY.load(Ordering::Relaxed) {
        QUEUED.fetch_sub(1, Ordering::Relaxed);
        return Err(TrySendError::Full(message));
    }
    queue.send(message).map_err(|e| {
        QUEUED.fetch_sub(1, Ordering::Relaxed);
        TrySendError::Disconnected(e.0)
    })
}

/// Waits until every line logged so far is written, for at most `timeout`:
/// called before the process exits, which must not hang on a stuck reader.
pub fn flush(timeout: Duration) {
    let Some(queue) = QUEUE.get() else { return };
    let deadline = Instant::now() + timeout;
    let (done, written) = mpsc::sync_channel(1);
    let mut message = Message::Flush(done);
    loop {
        match enqueue(queue, message) {
            Ok(()) => break,
            Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                message = m;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(TrySendError::Full(_)) => return,
        }
    }
    let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
}

fn write_lines(rx: Receiver<Message>, pretty: bool) {
    let mut out = std::io::stdout().lock();
    // After a write error (stdout closed) lines are dropped: the relay must
    // keep relaying without its log.
    let mut broken = false;
    while let Ok(message) = rx.recv() {
        QUEUED.fetch_sub(1, Ordering::Relaxed);
        match message {
            Message::Line(line) => {
                broken = broken || out.write_all(line.as_bytes()).is_err();
            }
            Message::Flush(done) => {
                let _ = out.flush();
                let _ = done.try_send(());
            }
        }
        if QUEUED.load(Ordering::Relaxed) == 0 {
            let missed = UNREPORTED.swap(0, Ordering::Relaxed);
            if missed > 0 {
                let mut fields = serde_json::Map::new();
                fields.insert("dropped".into(), missed.into());
                fields.insert("droppedTotal".into(), dropped().into());
                let line = format_line(
                    pretty,
                    log::Level::Warn,
                    SystemTime::now(),
                    "log_lines_dropped",
                    fields,
                    "the log reader fell behind; lines were dropped",
                );
                broken = broken || out.write_all(line.as_bytes()).is_err();
            }
        }
    }
}

struct Logger {
    pretty: bool,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // The journal's storage engine narrates its page cache at debug
        // level; an operator debugging the relay wants the relay's events.
        if metadata.target().starts_with("sled") {
            return metadata.level() <= log::Level::Warn;
        }
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Some(queue) = QUEUE.get() else { return };
        let line = record_line(self.pretty, record, SystemTime::now());
        match enqueue(queue, Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
                UNREPORTED.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn flush(&self) {
        flush(Duration::from_secs(1));
    }
}

fn record_line(pretty: bool, record: &Record<'_>, time: SystemTime) -> String {
    if !pretty {
        return json_line(record, time);
    }
    let mut fields = serde_json::Map::new();
    let _ = record.key_values().visit(&mut Fields(&mut fields));
    let event = match fields.shift_remove("event") {
        Some(serde_json::Value::String(e)) => e,
        _ => "log".to_string(),
    };
    format_line(
        pretty,
        record.level(),
        time,
        &event,
        fields,
        &record.args().to_string(),
    )
}

/// One line, newline included: a JSON object, or for a person at a terminal
/// `time LEVEL event key=value … message`.
fn format_line(
    pretty: bool,
    level: log::Level,
    time: SystemTime,
    event: &str,
    fields: serde_json::Map<String, serde_json::Value>,
    message: &str,
) -> String {
    let timestamp = humantime::format_rfc3339_millis(time).to_string();
    let mut line = if pretty {
        let mut line = format!("{timestamp} {:<5} {event}", level.as_str());
        for (k, v) in &fields {
            match v {
                serde_json::Value::String(s) => line.push_str(&format!(" {k}={s}")),
                other => line.push_str(&format!(" {k}={other}")),
            }
        }
        if !message.is_empty() {
            line.push_str("  ");
            line.push_str(message);
        }
        line
    } else {
        let mut object = serde_json::Map::with_capacity(fields.len() + 4);
        object.insert("timestamp".into(), timestamp.into());
        object.insert("level".into(), level.as_str().to_ascii_lowercase().into());
        object.insert("event".into(), event.into());
        object.extend(fields);
        if !message.is_empty() {
            object.insert("message".into(), message.into());
        }
        serde_json::Value::Object(object).to_string()
    };
    line.push('\n');
    line
}

/// A record's JSON line, written straight from its key-values: the line
/// [`format_line`] makes, without a map of owned keys and values in
/// between (this runs on the swarm task for every line).
fn json_line(record: &Record<'_>, time: SystemTime) -> String {
    let mut event = None;
    let _ = record.key_values().visit(&mut FindEvent(&mut event));
    let mut out = Vec::with_capacity(320);
    let _ = write!(
        out,
        "{{\"timestamp\":\"{}\",\"level\":\"{}\",\"event\":",
        humantime::format_rfc3339_millis(time),
        level_word(record.level())
    );
    json_str(&mut out, event.as_deref().unwrap_or("log"));
    let _ = record.key_values().visit(&mut JsonFields(&mut out));
    let message = record.args();
    match message.as_str() {
        Some("") => {}
        Some(text) => message_field(&mut out, text),
        None => {
            let text = message.to_string();
            if !text.is_empty() {
                message_field(&mut out, &text);
            }
        }
    }
    out.extend_from_slice(b"}\n");
    // Only JSON's own output went in, which is UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn level_word(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warn",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

fn message_field(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b",\"message\":");
    json_str(out, text);
}

fn json_str(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(out, text);
}

/// The `event` key's text, if it is text.
struct FindEvent<'a>(&'a mut Option<String>);

impl<'kvs> VisitSource<'kvs> for FindEvent<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        if key.as_str() == "event" && value_kind(&value).is_none() {
            *self.0 = Some(match value.to_borrowed_str() {
                Some(text) => text.to_string(),
                None => value.to_string(),
            });
        }
        Ok(())
    }
}

/// A key-value's JSON when it is not text: what `serde_json::Value` would
/// make of it.
fn value_kind(value: &kv::Value<'_>) -> Option<serde_json::Value> {
    if let Some(b) = value.to_bool() {
        Some(b.into())
    } else if let Some(n) = value.to_u64() {
        Some(n.into())
    } else if let Some(n) = value.to_i64() {
        Some(n.into())
    } else {
        value.to_f64().map(Into::into)
    }
}

/// Writes `,"key":value` for every key but `event`.
struct JsonFields<'a>(&'a mut Vec<u8>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        if key.as_str() == "event" {
            return Ok(());
        }
        self.0.push(b',');
        json_str(self.0, key.as_str());
        self.0.push(b':');
        match value_kind(&value) {
            Some(v) => {
                let _ = serde_json::to_writer(&mut *self.0, &v);
            }
            None => match value.to_borrowed_str() {
                Some(text) => json_str(self.0, text),
                None => json_str(self.0, &value.to_string()),
            },
        }
        Ok(())
    }
}

struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let v = if let Some(b) = value.to_bool() {
            b.into()
        } else if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(f) = value.to_f64() {
            f.into()
        } else {
            value.to_string().into()
        };
        self.0.insert(key.as_str().to_string(), v);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_engine_chatter_is_kept_below_warn() {
        log::set_max_level(LevelFilter::Debug);
        let meta = |target, level| {
            log::MetadataBuilder::new()
                .target(target)
                .level(level)
                .build()
        };
        let logger = Logger { pretty: false };
        assert!(!logger.enabled(&meta("sled::pagecache::iobuf", log::Level::Debug)));
        assert!(logger.enabled(&meta("sled::pagecache::iobuf", log::Level::Warn)));
        assert!(logger.enabled(&meta("bsv_p2p_relay::relay", log::Level::Debug)));
    }

    fn sample(pretty: bool) -> String {
        let kvs: [(&str, kv::Value); 3] = [
            ("event", kv::Value::from("reservation_created")),
            ("peerId", kv::Value::from("12D3KooWExample")),
            ("ttl", kv::Value::from(3600u64)),
        ];
        let record = Record::builder()
            .level(log::Level::Info)
            .args(format_args!("reservation created"))
            .key_values(&kvs)
            .build();
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_771_527_600);
        record_line(pretty, &record, time)
    }

    #[test]
    fn json_line_has_the_guides_fields() {
        let line = sample(false);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["timestamp"], "2026-02-19T19:00:00.000Z");
        assert_eq!(v["level"], "info");
        assert_eq!(v["event"], "reservation_created");
        assert_eq!(v["peerId"], "12D3KooWExample");
        assert_eq!(v["ttl"], 3600);
        assert_eq!(v["message"], "reservation created");
        assert!(line.ends_with('\n'));
    }

    /// The line as a map of owned values made it: what `json_line` must
    /// write byte for byte.
    fn via_map(record: &Record<'_>, time: SystemTime) -> String {
        let mut fields = serde_json::Map::new();
        let _ = record.key_values().visit(&mut Fields(&mut fields));
        let event = match fields.shift_remove("event") {
            Some(serde_json::Value::String(e)) => e,
            _ => "log".to_string(),
        };
        let message = record.args().to_string();
        format_line(false, record.level(), time, &event, fields, &message)
    }

    #[test]
    fn json_lines_are_written_as_the_map_wrote_them() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_771_527_600_123);
        let display = std::net::Ipv4Addr::new(10, 0, 0, 1);
        let kvs: [(&str, kv::Value); 9] = [
            (
                "peerId",
                kv::Value::from("quote \" backslash \\ newline \n tab \t bell \u{7} é ✓"),
            ),
            ("event", kv::Value::from("circuit_closed")),
            ("bytes", kv::Value::from(u64::MAX)),
            ("delta", kv::Value::from(-42i64)),
            ("ratio", kv::Value::from(1.5f64)),
            ("nan", kv::Value::from(f64::NAN)),
            ("ok", kv::Value::from(true)),
            ("address", kv::Value::from_display(&display)),
            ("empty", kv::Value::from("")),
        ];
        let numeric_event: [(&str, kv::Value); 2] = [
            ("event", kv::Value::from(7u64)),
            ("what", kv::Value::from("x")),
        ];
        let no_event: [(&str, kv::Value); 1] = [("what", kv::Value::from("y"))];
        let sets: [&[(&str, kv::Value)]; 4] = [&kvs, &numeric_event, &no_event, &[]];
        for (i, kvs) in sets.into_iter().enumerate() {
            for level in [log::Level::Error, log::Level::Info, log::Level::Trace] {
                let message = format!("message {i} with \"quotes\"");
                for args in [
                    format_args!(""),
                    format_args!("static text"),
                    format_args!("{message}"),
                ] {
                    let record = Record::builder()
                        .level(level)
                        .args(args)
                        .key_values(&kvs)
                        .build();
                    let line = json_line(&record, time);
                    assert_eq!(line, via_map(&record, time));
                    serde_json::from_str::<serde_json::Value>(&line).unwrap();
                }
            }
        }
    }

    #[test]
    fn pretty_line_reads_left_to_right() {
        assert_eq!(
            sample(true),
            "2026-02-19T19:00:00.000Z INFO  reservation_created peerId=12D3KooWExample ttl=3600  reservation created\n"
        );
    }
}
