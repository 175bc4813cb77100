//! `bsv-p2p-bench-logship`: what the log shipper sustains and costs, with
//! our relay making real events and oteltap (a native OTLP/HTTP receiver)
//! taking them. Scenarios:
//!
//! - `throughput`: the relay's journal is filled with `--events` events
//!   first; then the shipper starts and ships them all as OTLP logs and
//!   traces through its durable buffer. Events per second from its start
//!   to the receiver holding the last one, and the shipper's CPU seconds.
//! - `latency`: the shipper attached and caught up, the relay makes
//!   `--latency-events` events as fast as one peer can; for each record the
//!   time from the relay's event time to the receiver printing it, p50/p99.
//! - `disk`: the receiver is down; bytes the buffer takes on disk per event
//!   buffered, with `--events` buffered.
//! - `circuit_attached`: one circuit's throughput with the shipper attached
//!   (subscribed, shipping) against no shipper, rounds alternating.
//!
//! One JSON object per scenario with `--json`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argh::FromArgs;
use bsv_p2p_tests::client::ClientEvent;
use bsv_p2p_tests::logship::{burst, Logship};
use bsv_p2p_tests::otlp::oteltap_bin;
use bsv_p2p_tests::probes::quantile;
use bsv_p2p_tests::prometheus::free_port;
use bsv_p2p_tests::report::{print, round};
use bsv_p2p_tests::{procfs, Client, ClientOptions, Relay, ScratchDir, Signal};
use serde_json::{json, Map, Value};

const MIB: u64 = 1 << 20;

/// Log shipper benchmark: events/s into OTLP, latency, disk per buffered event, cost to the relay.
#[derive(FromArgs)]
struct Args {
    /// events in the journal for throughput and disk (default 50000)
    #[argh(option, default = "50_000")]
    events: usize,
    /// events made for latency (default 5000)
    #[argh(option, default = "5000")]
    latency_events: usize,
    /// bytes per circuit transfer in circuit_attached (default 256 MiB)
    #[argh(option, default = "256 * MIB")]
    bytes: u64,
    /// rounds of each kind in circuit_attached (default 3)
    #[argh(option, default = "3")]
    rounds: usize,
    /// comma-separated scenarios (default: throughput,latency,disk,circuit_attached)
    #[argh(option)]
    scenarios: Option<String>,
    /// print one JSON object per scenario instead of readable lines
    #[argh(switch)]
    json: bool,
}

/// One log record as oteltap printed it, with when it was read.
struct Seen {
    seq: u64,
    event_ns: u64,
    arrived_ns: u64,
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// oteltap on a free port; its log records read as they are printed.
struct Tap {
    child: Child,
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Tap {
    fn start() -> Result<Tap, String> {
        let port = free_port()?;
        let mut child = Command::new(oteltap_bin())
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start oteltap: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let arrived_ns = unix_ns(SystemTime::now());
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let number = |v: &Value| v.as_str().and_then(|s| s.parse().ok()).or(v.as_u64());
                let Some(event_ns) = number(&v["timeUnixNano"]) else {
                    continue; // a span
                };
                let seq = v["attributes"].as_array().and_then(|a| {
                    a.iter()
                        .find(|kv| kv["key"] == "bsv_p2p.seq")
                        .and_then(|kv| number(&kv["value"]["intValue"]))
                });
                if let Some(seq) = seq {
                    into.lock().unwrap().push(Seen {
                        seq,
                        event_ns,
                        arrived_ns,
                    });
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("oteltap did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Tap { child, port, seen })
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until records of relay events up to `last` are all in.
    fn wait_for(&self, first: u64, last: u64, limit: Duration) -> Result<Instant, String> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let mut have: Vec<u64> = seen.iter().map(|s| s.seq).collect();
                have.sort_unstable();
                have.dedup();
                let n = have.iter().filter(|s| (first..=last).contains(*s)).count() as u64;
                if n == last + 1 - first {
                    return Ok(Instant::now());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "oteltap holds {n} of events {first}..={last} after {limit:?}"
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn journal_config(events: usize) -> Value {
    json!({
        "mode": "relay",
        "relay": {
            "circuits": { "unlimited": true },
            "requests": { "perSecond": 100000, "burst": 1000000 }
        },
        "journal": { "maxEvents": (events * 2).max(100_000) }
    })
}

fn last_seq(relay: &Relay) -> Result<u64, String> {
    let stats = relay.ctl(&["stats"]);
    stats["events"]["lastSeq"]
        .as_u64()
        .ok_or_else(|| format!("stats has no events.lastSeq: {stats}"))
}

fn cpu_seconds(pid: u32) -> f64 {
    procfs::usage(pid).map_or(0.0, |u| u.cpu_seconds)
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

fn throughput(relay: &Relay, args: &Args) -> Result<Map<String, Value>, String> {
    let first = last_seq(relay)? + 1;
    async_std::task::block_on(burst(relay, args.events));
    let last = last_seq(relay)?;
    let tap = Tap::start()?;
    let (relay_cpu, tap_cpu) = (cpu_seconds(relay.pid()), cpu_seconds(tap.child.id()));
    let started = Instant::now();
    let logship = Logship::start(
        &relay.socket(),
        &["--otlp-endpoint", &tap.endpoint(), "--otlp-batch", "2048"],
    );
    let done = tap.wait_for(first, last, Duration::from_secs(600))?;
    let secs = done.duration_since(started).as_secs_f64();
    let cpu = cpu_seconds(logship.pid());
    let relay_cpu = cpu_seconds(relay.pid()) - relay_cpu;
    let tap_cpu = cpu_seconds(tap.child.id()) - tap_cpu;
    let rss = procfs::usage(logship.pid()).map_or(0, |u| u.resident_bytes);
    let events = last + 1 - first;
    Ok(object(json!({
        "events": events,
        "secs": round(secs, 2),
        "events_per_s": round(events as f64 / secs, 0),
        "logship_cpu_s": round(cpu, 2),
        "logship_cpu_us_per_event": round(cpu * 1e6 / events as f64, 1),
        // What one core of the shipper's alone would carry.
        "logship_events_per_cpu_s": round(events as f64 / cpu, 0),
        "relay_cpu_s": round(relay_cpu, 2),
        "receiver_cpu_s": round(tap_cpu, 2),
        "cores_busy": round((cpu + relay_cpu + tap_cpu) / secs, 2),
        "logship_rss_mib": round(rss as f64 / MIB as f64, 1),
        "signals": "logs,traces",
        "otlp_records_received": tap.count(),
    })))
}

fn latency(relay: &Relay, args: &Args) -> Result<Map<String, Value>, String> {
    let tap = Tap::start()?;
    let logship = Logship::start(
        &relay.socket(),
        &["--otlp-endpoint", &tap.endpoint(), "--start", "now"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let first = last_seq(relay)? + 1;
    let made = Instant::now();
    async_std::task::block_on(burst(relay, args.latency_events));
    let made = made.elapsed().as_secs_f64();
    let last = last_seq(relay)?;
    tap.wait_for(first, last, Duration::from_secs(120))?;
    let seen = tap.seen.lock().unwrap();
    let lat: Vec<Duration> = seen
        .iter()
        .filter(|s| (first..=last).contains(&s.seq))
        .map(|s| Duration::from_nanos(s.arrived_ns.saturating_sub(s.event_ns)))
        .collect();
    drop(logship);
    let ms = |d: Duration| round(d.as_secs_f64() * 1000.0, 1);
    Ok(object(json!({
        "events": lat.len(),
        "made_per_s": round(lat.len() as f64 / made, 0),
        "p50_ms": ms(quantile(&lat, 0.5)),
        "p99_ms": ms(quantile(&lat, 0.99)),
        "max_ms": ms(quantile(&lat, 1.0)),
    })))
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                total += dir_bytes(&entry.path());
            } else {
                use std::os::unix::fs::MetadataExt;
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

fn disk(relay: &Relay, args: &Args) -> Result<Map<String, Value>, String> {
    let have = last_seq(relay)?;
    if (have as usize) < args.events {
        async_std::task::block_on(burst(relay, args.events - have as usize));
    }
    let last = last_seq(relay)?;
    // Nobody listens there: every record stays in the buffer.
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    let state = ScratchDir::new("bench-logship-disk");
    let logship = Logship::start_in(
        state,
        &relay.socket(),
        &["--otlp-endpoint", &dead, "--otlp-signals", "logs"],
    );
    logship.wait_metric(
        "bsv_p2p_logship_last_event_seq",
        Duration::from_secs(300),
        |v| v >= last as f64,
    );
    // Let sled write out what it holds.
    std::thread::sleep(Duration::from_secs(2));
    let records = logship
        .metric("bsv_p2p_logship_buffer_records")
        .unwrap_or(0.0);
    let sled = logship
        .metric("bsv_p2p_logship_buffer_disk_bytes")
        .unwrap_or(0.0);
    let (_, state) = logship.stop();
    let on_disk = dir_bytes(state.path()) as f64;
    Ok(object(json!({
        "records": records,
        "disk_bytes": on_disk,
        "disk_bytes_per_event": round(on_disk / records.max(1.0), 0),
        "sled_size_on_disk_per_event": round(sled / records.max(1.0), 0),
    })))
}

fn circuit_attached(relay: &Relay, args: &Args) -> Result<Map<String, Value>, String> {
    async_std::task::block_on(async {
        let a = Client::start(ClientOptions::default()).await?;
        let b = Client::start(ClientOptions::default()).await?;
        let relay_addr = relay.tcp_addr();
        a.reserve(&relay_addr).await?;
        b.connect(&relay_addr).await?;
        let from = b.seq().await?;
        b.dial_via(&relay_addr, a.peer_id()).await?;
        b.wait_event(from, Duration::from_secs(10), |e| {
            matches!(e, ClientEvent::OutboundCircuit { .. })
        })
        .await?;
        let limit = Duration::from_secs(60 + args.bytes / 10_000_000);
        b.sink(a.peer_id(), 4 * MIB, limit).await?;
        let tap = Tap::start()?;
        let (mut attached, mut alone) = (Vec::new(), Vec::new());
        let (mut cpu_attached, mut cpu_alone) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds.max(1) {
            for with in [true, false] {
                // From now: the journal's earlier events are not this scenario's.
                let logship = with.then(|| {
                    Logship::start(
                        &relay.socket(),
                        &["--otlp-endpoint", &tap.endpoint(), "--start", "now"],
                    )
                });
                async_std::task::sleep(Duration::from_millis(500)).await;
                let cpu = cpu_seconds(relay.pid());
                let done = b.sink(a.peer_id(), args.bytes, limit).await?;
                let cpu = cpu_seconds(relay.pid()) - cpu;
                let gib = args.bytes as f64 / (1u64 << 30) as f64;
                if with {
                    attached.push(done.mb_per_s());
                    cpu_attached.push(cpu / gib);
                } else {
                    alone.push(done.mb_per_s());
                    cpu_alone.push(cpu / gib);
                }
                drop(logship);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (w, o) = (median(&mut attached), median(&mut alone));
        Ok(object(json!({
            "bytes": args.bytes,
            "rounds": args.rounds,
            "attached_mb_per_s": round(w, 1),
            "alone_mb_per_s": round(o, 1),
            "attached_over_alone": round(w / o, 3),
            "relay_cpu_s_per_gib_attached": round(median(&mut cpu_attached), 2),
            "relay_cpu_s_per_gib_alone": round(median(&mut cpu_alone), 2),
            "attached_runs_mb_per_s": attached.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
            "alone_runs_mb_per_s": alone.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
        })))
    })
}

fn run(args: Args) -> Result<bool, String> {
    const KNOWN: [&str; 4] = ["throughput", "latency", "disk", "circuit_attached"];
    let wanted: Vec<String> = args
        .scenarios
        .as_deref()
        .unwrap_or("throughput,latency,disk,circuit_attached")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = wanted.iter().find(|s| !KNOWN.contains(&s.as_str())) {
        return Err(format!(
            "unknown scenario {bad:?}; known: {}",
            KNOWN.join(", ")
        ));
    }
    let mut relay = Relay::start(journal_config(args.events));
    let mut ok = true;
    for name in wanted {
        let outcome = match name.as_str() {
            "throughput" => throughput(&relay, &args),
            "latency" => latency(&relay, &args),
            "disk" => disk(&relay, &args),
            _ => circuit_attached(&relay, &args),
        };
        match outcome {
            Ok(fields) => print(&name, fields, args.json),
            Err(e) => {
                eprintln!("error: {name}: {e}");
                ok = false;
            }
        }
    }
    if let Err(e) = relay.stop(Signal::Term, Duration::from_secs(15)) {
        eprintln!("error: stopping the relay: {e}");
        ok = false;
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
