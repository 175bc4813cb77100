//! A child process's JSON-lines output, read on a thread of its own and kept
//! in order, so a test can wait for the line it expects (the relay's log, a
//! bot's events and results).

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Every line read so far, parsed; lines that are not a JSON object appear as
/// `{"event":"unparsed","line":...}`.
#[derive(Default)]
pub struct JsonLines {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    lines: Vec<Value>,
    closed: bool,
}

/// Why [`JsonLines::wait_after`] found nothing.
#[derive(Debug)]
pub enum WaitError {
    /// The writer closed its end first.
    Closed,
    /// The timeout passed; the last few lines, one per line.
    Timeout { tail: String },
}

impl JsonLines {
    /// Reads `pipe` line by line on a new thread until it closes.
    pub fn spawn(pipe: impl Read + Send + 'static) -> (Arc<JsonLines>, JoinHandle<()>) {
        let lines = Arc::new(JsonLines::default());
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || lines.read(pipe))
        };
        (lines, reader)
    }

    fn read(&self, pipe: impl Read) {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let value = serde_json::from_str::<Value>(&line)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| serde_json::json!({ "event": "unparsed", "line": line }));
            self.state.lock().unwrap().lines.push(value);
            self.changed.notify_all();
        }
        self.state.lock().unwrap().closed = true;
        self.changed.notify_all();
    }

    /// A copy of every line so far.
    pub fn all(&self) -> Vec<Value> {
        self.state.lock().unwrap().lines.clone()
    }

    /// How many lines have been read: a mark to wait only for later lines.
    pub fn len(&self) -> usize {
        self.state.lock().unwrap().lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for a line at index `mark` or later that satisfies `pred`.
    pub fn wait_after(
        &self,
        mark: usize,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, WaitError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        let mut next = mark;
        loop {
            if let Some(found) = state.lines[next.min(state.lines.len())..]
                .iter()
                .find(|v| pred(v))
            {
                return Ok(found.clone());
            }
            next = state.lines.len();
            if state.closed {
                return Err(WaitError::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(WaitError::Timeout {
                    tail: tail(&state.lines, 8),
                });
            }
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
    }
}

fn tail(lines: &[Value], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
