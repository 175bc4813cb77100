//! What the relay and bot fixtures share about their child process: its
//! stdout read as [`JsonLines`] and its stderr kept as text, each on a thread
//! of its own; waiting for an event with an error worded for the fixture; and
//! waiting, bounded, for the process to exit.

use std::io::Read;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::jsonlog::{JsonLines, WaitError};

/// How a fixture names itself when a wait finds nothing.
pub struct Wording<'a> {
    /// How its output ended early, e.g. "the relay closed its log".
    pub ended: &'a str,
    /// Put before a timeout's message, e.g. "bot <peer id>: " (or "").
    pub prefix: &'a str,
}

/// A child's JSON-lines stdout and its stderr.
pub struct ChildOutput {
    lines: Arc<JsonLines>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl ChildOutput {
    /// Takes the child's piped stdout and stderr and reads each on a new thread.
    pub fn capture(child: &mut Child) -> ChildOutput {
        let (lines, out_reader) = JsonLines::spawn(child.stdout.take().expect("piped stdout"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let err_reader = {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = err_pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        ChildOutput {
            lines,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// Every line so far, parsed.
    pub fn events(&self) -> Vec<Value> {
        self.lines.all()
    }

    /// Events of `kind` so far that satisfy `pred`.
    pub fn events_of(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == kind && pred(e))
            .collect()
    }

    /// Index of the next line, to wait only for what comes after it.
    pub fn mark(&self) -> usize {
        self.lines.len()
    }

    /// The child's stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits for an event of `kind` satisfying `pred` at index `mark` or
    /// later; a failure is worded with `wording`.
    pub fn wait_for_event(
        &self,
        mark: usize,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
        timeout: Duration,
        wording: Wording,
    ) -> Result<Value, String> {
        self.lines
            .wait_after(mark, |e| e["event"] == kind && pred(e), timeout)
            .map_err(|e| match e {
                WaitError::Closed => format!(
                    "{} before a matching {kind:?} event; stderr: {}",
                    wording.ended,
                    self.stderr()
                ),
                WaitError::Timeout { tail } => format!(
                    "{}no matching {kind:?} event within {timeout:?}; last events: {tail}",
                    wording.prefix
                ),
            })
    }

    /// Waits for the reader threads (once the child has exited).
    pub fn join(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// Polls `child` every `poll` until it exits (`Some`) or `timeout` passes
/// (`None`: it is still running).
pub fn wait_exit(
    child: &mut Child,
    timeout: Duration,
    poll: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait()? {
            Some(status) => return Ok(Some(status)),
            None if Instant::now() < deadline => std::thread::sleep(poll),
            None => return Ok(None),
        }
    }
}

/// A run of a program that ended by itself.
#[derive(Debug)]
pub struct Finished {
    /// The exit code; `None` when a signal ended the process.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` (stdin closed, stdout and stderr captured) until it
/// exits; kills it and fails after `timeout` (a program that keeps running
/// was expected to stop).
pub fn run_to_exit(
    mut command: std::process::Command,
    timeout: Duration,
) -> Result<Finished, String> {
    use std::process::Stdio;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let status = match wait_exit(&mut child, timeout, Duration::from_millis(10)) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            return Err(format!(
                "{program} was still running after {timeout:?}; killed it. stderr: {stderr}"
            ));
        }
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("cannot wait for {program}: {e}"));
        }
    };
    Ok(Finished {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}
