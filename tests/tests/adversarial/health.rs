//! Attacks on the health bounds: the sidecar's HTTP port answers whoever
//! reaches it, so a slowloris (many connections, each trickling a request
//! that never ends, reopened as soon as it is closed) must neither take its
//! descriptors nor keep a quick client out, and the sidecar must go on
//! reading the relay. It runs here under a container's usual open-file
//! limit of 1,024, with its default bounds (256 connections, 5 s to send a
//! request).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bsv_p2p_tests::health::Health;
use bsv_p2p_tests::procfs;
use bsv_p2p_tests::Relay;
use serde_json::{json, Value};

/// Trickling connections kept open at once.
const ATTACKERS: usize = 1000;
/// Each sends one byte of its request this often.
const TRICKLE: Duration = Duration::from_millis(500);
/// How long the attack lasts once every connection is open.
const ATTACK: Duration = Duration::from_secs(15);
/// A quick client asks `/livez` and `/status` this often during the attack.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Each of its answers must be complete within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// The sidecar's soft limit on open files.
const OPEN_FILES: u64 = 1024;
/// Descriptors the sidecar may hold: its default cap of 256 connections and
/// 64 of its own, which its start-up check also reserves.
const FD_BOUND: u64 = 256 + 64;
/// How soon after the attack stops the sidecar is back to its idle count.
const RECOVERY: Duration = Duration::from_secs(10);

/// The start of a request that never ends: a header value that grows by a
/// byte every [`TRICKLE`].
const REQUEST: &[u8] = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";

/// What the trickling connections did.
#[derive(Debug, Default)]
struct Tally {
    opened: AtomicU64,
    /// Found closed by the sidecar (end of stream, reset) and opened again.
    closed: AtomicU64,
    connect_failures: AtomicU64,
}

/// [`ATTACKERS`] connections trickling a request on one thread.
struct Slowloris {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    thread: Option<JoinHandle<()>>,
}

impl Slowloris {
    fn start(port: u16) -> Slowloris {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let thread = {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::spawn(move || trickle(port, &stop, &tally))
        };
        Slowloris {
            stop,
            tally,
            thread: Some(thread),
        }
    }

    fn opened(&self) -> u64 {
        self.tally.opened.load(Ordering::Relaxed)
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One socket of the attack and how much of [`REQUEST`] it has sent.
struct Trickler {
    stream: TcpStream,
    sent: usize,
}

impl Trickler {
    fn open(addr: &SocketAddr) -> Option<Trickler> {
        let stream = TcpStream::connect_timeout(addr, Duration::from_millis(250)).ok()?;
        stream.set_nonblocking(true).ok()?;
        Some(Trickler { stream, sent: 0 })
    }

    /// Sends the next byte; false once the sidecar has closed the connection.
    fn step(&mut self) -> bool {
        match self.stream.read(&mut [0u8; 512]) {
            Ok(0) => return false,
            Err(e) if e.kind() != ErrorKind::WouldBlock => return false,
            _ => {}
        }
        let byte = REQUEST.get(self.sent).copied().unwrap_or(b'a');
        match self.stream.write(&[byte]) {
            Ok(1) => {
                self.sent += 1;
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            _ => false,
        }
    }
}

/// Keeps [`ATTACKERS`] connections open, each sending a byte every
/// [`TRICKLE`], in batches spread over the period so that reopening is
/// paced (at most 2,000 connections a second), until `stop`.
fn trickle(port: u16, stop: &AtomicBool, tally: &Tally) {
    const BATCHES: usize = 20;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut slots: Vec<Option<Trickler>> = (0..ATTACKERS).map(|_| None).collect();
    while !stop.load(Ordering::Relaxed) {
        for batch in slots.chunks_mut(ATTACKERS / BATCHES) {
            let until = Instant::now() + TRICKLE / BATCHES as u32;
            for slot in batch.iter_mut() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(t) = slot {
                    if t.step() {
                        continue;
                    }
                    tally.closed.fetch_add(1, Ordering::Relaxed);
                }
                *slot = Trickler::open(&addr);
                match slot {
                    Some(_) => tally.opened.fetch_add(1, Ordering::Relaxed),
                    None => tally.connect_failures.fetch_add(1, Ordering::Relaxed),
                };
            }
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
        }
    }
}

/// One quick client's request on its own connection: the status code and
/// body, and how long until the answer was complete; an error past `limit`.
fn ask(port: u16, path: &str, limit: Duration) -> Result<(u16, String, Duration), String> {
    let start = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    let left = limit
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read after {:?}: {e}", start.elapsed()))?;
    let took = start.elapsed();
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no complete answer: {raw:?}"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {head:?}"))?;
    Ok((code, body.to_string(), took))
}

/// Raises this process's soft open-file limit so that it can hold the
/// attack's sockets, within its hard limit.
fn allow_open_files(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= wanted,
        "this test holds {ATTACKERS} sockets and needs an open-file limit of {wanted}; \
         the hard limit is {}",
        limit.rlim_max
    );
}

#[test]
fn the_sidecar_keeps_its_fds_and_answers_quick_clients_through_a_slowloris_of_1000() {
    allow_open_files(ATTACKERS as u64 + 512);
    let relay = Relay::start(json!({ "mode": "relay" }));
    let peer_id = relay.peer_id().to_string();
    let health = Health::start_with_open_files(&relay.data_dir().join("relay.sock"), OPEN_FILES);
    let pid = health.pid();
    let fds = || {
        procfs::open_fds(pid).unwrap_or_else(|| panic!("bsv-p2p-health exited: {}", health.log()))
    };
    let idle_fds = fds();

    let attack = Slowloris::start(health.port);
    let ramp = Instant::now();
    while attack.opened() < ATTACKERS as u64 && ramp.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ramp = ramp.elapsed();

    let mut most_fds = 0;
    let mut slowest = [Duration::ZERO; 2];
    let mut failures = Vec::new();
    let mut probes = 0;
    let start = Instant::now();
    let mut next_probe = start;
    while start.elapsed() < ATTACK {
        most_fds = most_fds.max(fds());
        if Instant::now() >= next_probe {
            next_probe += PROBE_EVERY;
            probes += 1;
            for (i, path) in ["/livez", "/status"].into_iter().enumerate() {
                let at = start.elapsed();
                match ask(health.port, path, ANSWER_WITHIN * 2) {
                    Ok((code, body, took)) => {
                        slowest[i] = slowest[i].max(took);
                        let relay_read = path != "/status"
                            || serde_json::from_str::<Value>(&body)
                                .is_ok_and(|v| v["peerId"] == peer_id.as_str());
                        if code != 200 || took > ANSWER_WITHIN || !relay_read {
                            failures.push(format!("{path} at {at:?}: {code} in {took:?}: {body}"));
                        }
                    }
                    Err(e) => {
                        slowest[i] = slowest[i].max(ANSWER_WITHIN * 2);
                        failures.push(format!("{path} at {at:?}: {e}"));
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tally = (
        attack.tally.opened.load(Ordering::Relaxed),
        attack.tally.closed.load(Ordering::Relaxed),
        attack.tally.connect_failures.load(Ordering::Relaxed),
    );
    drop(attack);

    let recovered = Instant::now();
    let mut settled_fds = fds();
    while settled_fds > idle_fds + 8 && recovered.elapsed() < RECOVERY {
        std::thread::sleep(Duration::from_millis(100));
        settled_fds = fds();
    }
    let shed = health
        .metrics()
        .into_iter()
        .filter(|(name, _)| name.starts_with("bsv_p2p_health_http_connections_shed_total"))
        .collect::<Vec<_>>();
    let shed_at_cap = shed
        .iter()
        .find(|(name, _)| name.contains("reason=\"cap\""))
        .map_or(0.0, |(_, n)| *n);

    eprintln!(
        "health slowloris: {ATTACKERS} connections open after {ramp:?}; over {ATTACK:?} the \
         attacker opened {}, found {} closed, failed {} connects; sidecar fds idle {idle_fds}, \
         at most {most_fds} (bound {FD_BOUND}, limit {OPEN_FILES}), {settled_fds} after; \
         {probes} probes, slowest /livez {:?}, /status {:?} (bound {ANSWER_WITHIN:?}); shed {shed:?}",
        tally.0, tally.1, tally.2, slowest[0], slowest[1]
    );
    assert!(
        most_fds < FD_BOUND,
        "the sidecar held {most_fds} descriptors during the attack (bound {FD_BOUND})"
    );
    assert!(
        failures.is_empty(),
        "a quick client was not answered within {ANSWER_WITHIN:?}:\n{}",
        failures.join("\n")
    );
    assert!(probes >= 10, "only {probes} probes during the attack");
    assert!(
        settled_fds <= idle_fds + 8,
        "{settled_fds} descriptors {RECOVERY:?} after the attack, {idle_fds} before it"
    );
    assert!(
        shed_at_cap > 0.0,
        "the connections closed at the cap are counted: {shed:?}"
    );
    assert_eq!(
        ask(health.port, "/status", ANSWER_WITHIN).map(|(code, _, _)| code),
        Ok(200)
    );
}
