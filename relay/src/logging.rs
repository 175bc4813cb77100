//! Log output. Every record the relay writes names an `event` (such as
//! `reservation_created`) and carries its fields as key-values, so the same
//! call site gives a readable line on a terminal (femme's pretty printer) and a
//! JSON object in production whose fields follow the operator guide:
//! `{"timestamp","level","event","peerId","ttl",...}`.
//!
//! The JSON writer is our own rather than femme's ndjson one: femme writes
//! numeric levels and epoch milliseconds, and panics when stdout goes away,
//! while a relay whose log pipe closes must keep relaying.

use std::io::{IsTerminal, Write};

use log::kv::{self, VisitSource};
use log::{LevelFilter, Log, Metadata, Record};

use crate::config::LogFormat;

/// Installs the logger for the whole process.
pub fn init(format: &LogFormat, level: LevelFilter) {
    let pretty = match format {
        LogFormat::Pretty => true,
        LogFormat::Json => false,
        LogFormat::Auto => std::io::stdout().is_terminal(),
    };
    if pretty {
        femme::with_level(level);
    } else if log::set_boxed_logger(Box::new(JsonLogger)).is_ok() {
        log::set_max_level(level);
    }
}

struct JsonLogger;

impl Log for JsonLogger {
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
        let line = json_line(
            record,
            humantime::format_rfc3339_millis(std::time::SystemTime::now()),
        );
        // A closed or full log pipe must not take the relay down: drop the line.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

fn json_line(record: &Record<'_>, timestamp: impl std::fmt::Display) -> String {
    let mut fields = serde_json::Map::new();
    fields.insert("timestamp".into(), timestamp.to_string().into());
    fields.insert(
        "level".into(),
        record.level().as_str().to_ascii_lowercase().into(),
    );
    fields.insert("event".into(), "log".into());
    let mut collect = Fields(&mut fields);
    let _ = record.key_values().visit(&mut collect);
    let message = record.args().to_string();
    if !message.is_empty() {
        fields.insert("message".into(), message.into());
    }
    let mut line = serde_json::Value::Object(fields).to_string();
    line.push('\n');
    line
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
        let logger = JsonLogger;
        assert!(!logger.enabled(&meta("sled::pagecache::iobuf", log::Level::Debug)));
        assert!(logger.enabled(&meta("sled::pagecache::iobuf", log::Level::Warn)));
        assert!(logger.enabled(&meta("bsv_p2p_relay::relay", log::Level::Debug)));
    }

    #[test]
    fn json_line_has_the_guides_fields() {
        let peer = "12D3KooWExample";
        let kvs: [(&str, kv::Value); 3] = [
            ("event", kv::Value::from("reservation_created")),
            ("peerId", kv::Value::from(peer)),
            ("ttl", kv::Value::from(3600u64)),
        ];
        let record = Record::builder()
            .level(log::Level::Info)
            .args(format_args!("reservation created"))
            .key_values(&kvs)
            .build();
        let line = json_line(&record, "2026-02-19T19:00:00.000Z");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["timestamp"], "2026-02-19T19:00:00.000Z");
        assert_eq!(v["level"], "info");
        assert_eq!(v["event"], "reservation_created");
        assert_eq!(v["peerId"], peer);
        assert_eq!(v["ttl"], 3600);
        assert!(line.ends_with('\n'));
    }
}
