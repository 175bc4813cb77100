//! Small tools of the adversarial tests: a raw control-socket caller that
//! times each answer, and resident-memory readings of the relay.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The relay's resident memory now, in bytes.
pub fn rss(pid: u32) -> u64 {
    crate::procfs::usage(pid)
        .unwrap_or_else(|| panic!("process {pid} is gone"))
        .resident_bytes
}

pub const MIB: u64 = 1 << 20;

/// One control-socket connection spoken line by line, with every read and
/// write bounded by `timeout`.
pub struct ControlLine {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl ControlLine {
    /// Connects and reads the greeting.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<ControlLine, String> {
        let (line, greeting) = ControlLine::open(socket, timeout)?;
        if greeting["method"] != "hello" {
            return Err(format!("expected the greeting, got {greeting}"));
        }
        Ok(line)
    }

    /// Connects and reads the first line, whatever it is: the greeting, or
    /// the refusal of a client over the cap.
    pub fn open(socket: &Path, timeout: Duration) -> Result<(ControlLine, Value), String> {
        let stream = UnixStream::connect(socket)
            .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut line = ControlLine {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        };
        let first = line.read()?;
        Ok((line, first))
    }

    /// Writes `line` as it is (a request written by hand) and reads the
    /// next line.
    pub fn send(&mut self, line: &str) -> Result<Value, String> {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("cannot write: {e}"))?;
        self.read()
    }

    /// Calls `method`; its whole response and how long it took.
    pub fn call(&mut self, method: &str, params: Value) -> Result<(Value, Duration), String> {
        let id = self.next_id;
        self.next_id += 1;
        let started = Instant::now();
        let mut request =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        request.push('\n');
        self.writer
            .write_all(request.as_bytes())
            .map_err(|e| format!("{method}: cannot write: {e}"))?;
        loop {
            let response = self.read()?;
            if response["id"] == id {
                return Ok((response, started.elapsed()));
            }
        }
    }

    /// The next line the relay sends (an event notification, once subscribed).
    pub fn read(&mut self) -> Result<Value, String> {
        self.next_line()?
            .ok_or_else(|| "the relay closed the control connection".into())
    }

    /// The next line, or `None` once the relay has closed the connection.
    pub fn next_line(&mut self) -> Result<Option<Value>, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Ok(None),
            Ok(_) => serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| format!("{e}: {line}")),
            Err(e) => Err(format!("no answer: {e}")),
        }
    }
}
