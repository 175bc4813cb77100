//! A log reader that stops reading (a full pipe, a stalled journald, a
//! blocking container log driver) must not stop the relay: lines past the
//! queue are dropped and counted, `status` still answers, SIGTERM still
//! stops it, and once the reader is back a line says how many went missing.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bsv_p2p_tests::attack::ControlLine;
use bsv_p2p_tests::relay::relay_bin;
use bsv_p2p_tests::ScratchDir;
use serde_json::{json, Value};

/// The relay, its stdout a pipe this test does not read until it says so.
struct Silenced {
    child: Child,
    stdout: Option<ChildStdout>,
    dir: ScratchDir,
}

impl Silenced {
    fn start(config: Value) -> Silenced {
        let dir = ScratchDir::new("silenced");
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let mut child = Command::new(relay_bin())
            .arg("--config")
            .arg(dir.join("config.json"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--log-format", "json", "--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the relay");
        let stdout = child.stdout.take();
        let relay = Silenced { child, stdout, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while ControlLine::connect(&relay.socket(), Duration::from_secs(1)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the relay's control socket never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        relay
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.join("data").join("relay.sock")
    }
}

impl Drop for Silenced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_stopped_log_reader_never_stops_the_relay() {
    let mut relay = Silenced::start(json!({ "log": { "queueLines": 64 } }));

    // Each control client costs two debug lines; a few thousand fill the
    // 64 KiB pipe and the 64-line queue many times over.
    for _ in 0..3000 {
        drop(ControlLine::connect(&relay.socket(), Duration::from_secs(5)).unwrap());
    }
    let mut control = ControlLine::connect(&relay.socket(), Duration::from_secs(5))
        .expect("the control socket accepts with the log pipe full");
    let (status, took) = control.call("status", json!({})).expect("status answers");
    assert!(status["result"]["peerId"].is_string(), "{status}");
    assert!(took < Duration::from_secs(1), "status took {took:?}");
    let (stats, _) = control.call("stats", json!({})).unwrap();
    let dropped = stats["result"]["log"]["linesDropped"].as_u64().unwrap();
    eprintln!("log reader stopped: status answered in {took:?}; {dropped} lines dropped");
    assert!(dropped > 0, "{stats}");

    // The reader comes back: the relay says what it missed.
    let stdout = relay.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .find(|e| e["event"] == "log_lines_dropped")
    });
    // One more line after the drain, so the writer looks again.
    drop(ControlLine::connect(&relay.socket(), Duration::from_secs(5)).unwrap());
    let report = {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            reader.is_finished(),
            "no log_lines_dropped line after the reader came back"
        );
        reader.join().unwrap().expect("a log_lines_dropped line")
    };
    assert!(report["dropped"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["level"], "warn");

    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(relay.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = relay.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the relay");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_stops_a_relay_whose_log_reader_never_reads() {
    let mut relay = Silenced::start(json!({ "log": { "queueLines": 64 } }));
    for _ in 0..3000 {
        drop(ControlLine::connect(&relay.socket(), Duration::from_secs(5)).unwrap());
    }
    let started = Instant::now();
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(relay.child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = relay.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "SIGTERM did not stop a relay whose log pipe is full"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("stopped with a full log pipe in {:?}", started.elapsed());
    assert_eq!(status.code(), Some(0));
}
