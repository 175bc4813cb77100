//! `bsv-p2p-bench`: what a circuit through the relay costs, measured with
//! rust-libp2p peers on loopback. Peer A reserves on the relay, peer B dials A
//! through it, and each scenario pushes traffic over such circuits. Without
//! `--relay` it starts our relay binary (unlimited circuits); the relay
//! process's CPU time (ours, or `--relay-pid`'s) is charged to the bytes relayed.
//!
//! Each scenario is one async function returning one JSON object; adding a
//! scenario is adding a function and a row in [`SCENARIOS`].

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argh::FromArgs;
use bsv_p2p_tests::client::{timed, ClientEvent};
use bsv_p2p_tests::holder::{release_all, reserve_many, Holder};
use bsv_p2p_tests::probes::quantile;
use bsv_p2p_tests::report::{print, round};
use bsv_p2p_tests::{procfs, Client, ClientOptions, Relay, Signal};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use libp2p::{Multiaddr, PeerId};
use serde_json::{json, Map, Value};

const GIB: f64 = (1u64 << 30) as f64;
const MIB: u64 = 1 << 20;

/// Circuit relay benchmark: throughput and round trips through one relay.
#[derive(FromArgs)]
struct Args {
    /// relay to measure (multiaddr ending in /p2p/<id>); default: start bsv-p2p-relay on loopback
    #[argh(option)]
    relay: Option<Multiaddr>,
    /// process ID of the --relay process, to charge its CPU time and memory
    #[argh(option)]
    relay_pid: Option<u32>,
    /// bytes sent one way through a circuit (default 256 MiB)
    #[argh(option, default = "256 * MIB")]
    bytes: u64,
    /// ping round trips per path (default 1000)
    #[argh(option, default = "1000")]
    pings: usize,
    /// circuits run side by side in the concurrent scenario (default 8)
    #[argh(option, default = "8")]
    circuits: usize,
    /// peers that reserve in the reservation ramp (default 1000)
    #[argh(option, default = "1000")]
    peers: usize,
    /// seconds the reservation ramp then holds every reservation, to measure
    /// the relay's idle CPU (default 10; 0 skips it)
    #[argh(option, default = "10")]
    idle_secs: u64,
    /// control socket of the --relay (default: that of the relay the bench starts)
    #[argh(option)]
    socket: Option<std::path::PathBuf>,
    /// comma-separated scenarios to run (default: all of circuit_throughput,
    /// circuit_rtt, concurrent_circuits, reservation_ramp, control_events,
    /// control_status)
    #[argh(option)]
    scenarios: Option<String>,
    /// print one JSON object per scenario instead of readable lines
    #[argh(switch)]
    json: bool,
    /// start our relay with every access control and limit switched on and
    /// checked on each connection and request (none of them binding): the
    /// caps and rates per address with loopback not exempt, automatic
    /// bans, a 10,000-entry deny list, a circuit pace of 1 TiB/s
    #[argh(switch)]
    limits: bool,
}

/// The relay config of `--limits`: every check runs, none refuses the bench.
fn limits_config() -> Value {
    // Deny lists the size an operator may load, none of them the bench:
    // 5,000 networks in 10.0.0.0/8 and 5,000 peer ids.
    let mut deny: Vec<String> = (0..5000u32)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    deny.extend((0..5000).map(|_| PeerId::random().to_string()));
    json!({
        "mode": "relay",
        "relay": {
            "circuits": {
                "unlimited": true, "maxBytesPerSecond": 1u64 << 40,
                "maxPerIp": 1_000_000, "maxPerPrefix": 1_000_000
            },
            "reservations": { "max": 1_000_000, "maxPerIp": 1_000_000, "maxPerPrefix": 1_000_000 },
            "rateLimit": { "connectionsPerMinute": 1_000_000, "reservationsPerHour": 1_000_000 },
            "sources": { "exempt": [] },
            "blocklist": deny,
            "autoBan": { "enabled": true }
        },
        "connectionManager": {
            "maxConnections": 1_000_000, "maxPendingIncoming": 4096,
            "maxConnectionsPerIp": 1_000_000, "maxPendingIncomingPerIp": 4096
        }
    })
}

type Scenario = for<'a> fn(&'a Bench) -> BoxFuture<'a, Result<Map<String, Value>, String>>;

/// Every scenario, in the order they run.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("circuit_throughput", |b| circuit_throughput(b).boxed()),
    ("circuit_rtt", |b| circuit_rtt(b).boxed()),
    ("concurrent_circuits", |b| concurrent_circuits(b).boxed()),
    ("reservation_ramp", |b| reservation_ramp(b).boxed()),
    ("control_events", |b| control_events(b).boxed()),
    ("control_status", |b| control_status(b).boxed()),
];

/// What every scenario runs against.
struct Bench {
    relay_addr: Multiaddr,
    /// The relay process when the bench started it.
    relay: Option<Relay>,
    /// The process whose CPU time and memory are charged to the relay.
    relay_pid: Option<u32>,
    bytes: u64,
    pings: usize,
    circuits: usize,
    peers: usize,
    /// Seconds to hold the ramp's reservations while measuring idle CPU.
    idle_secs: u64,
    /// The relay's control socket, for the control_* scenarios.
    socket: Option<std::path::PathBuf>,
}

/// A circuit from `b` to `a` through the relay.
struct Pair {
    a: Client,
    b: Client,
    /// The relay's identify agent, e.g. `bsv-p2p-relay/0.1.0`.
    relay_agent: String,
    /// The `Limit` the relay put on the circuit, if any.
    limit: Option<String>,
}

impl Bench {
    async fn pair(&self) -> Result<Pair, String> {
        let a = Client::start(ClientOptions::default()).await?;
        let b = Client::start(ClientOptions::default()).await?;
        a.reserve(&self.relay_addr).await?;
        let relay_peer = b.connect(&self.relay_addr).await?;
        let from = b.seq().await?;
        b.dial_via(&self.relay_addr, a.peer_id()).await?;
        let (_, circuit) = b
            .wait_event(from, Duration::from_secs(10), |e| {
                matches!(e, ClientEvent::OutboundCircuit { .. })
            })
            .await?;
        let limit = match circuit {
            ClientEvent::OutboundCircuit { limit, .. } => limit.map(|l| format!("{l:?}")),
            _ => None,
        };
        let (_, identified) = b
            .wait_event(
                0,
                Duration::from_secs(10),
                move |e| matches!(e, ClientEvent::Identified { peer, .. } if *peer == relay_peer),
            )
            .await?;
        let relay_agent = match identified {
            ClientEvent::Identified { agent, .. } => agent,
            _ => String::new(),
        };
        Ok(Pair {
            a,
            b,
            relay_agent,
            limit,
        })
    }

    fn relay_cpu(&self) -> Option<f64> {
        self.relay_pid
            .and_then(procfs::usage)
            .map(|u| u.cpu_seconds)
    }

    fn relay_rss(&self) -> Option<u64> {
        self.relay_pid
            .and_then(procfs::usage)
            .map(|u| u.resident_bytes)
    }

    fn cpu_mark(&self) -> CpuMark {
        CpuMark {
            relay: self.relay_cpu(),
            own: own_cpu(),
        }
    }

    /// The relay's CPU seconds since `mark` (when it can be read).
    fn relay_cpu_since(&self, mark: CpuMark) -> Option<f64> {
        mark.relay.zip(self.relay_cpu()).map(|(a, b)| b - a)
    }

    /// `fields` followed by what moving `bytes` cost since `mark`: the
    /// relay's CPU seconds per GiB (of its `relay_cpu` seconds), the
    /// clients' (this process's) CPU seconds per GiB, the relay's RSS.
    fn with_costs(
        &self,
        fields: Value,
        mark: CpuMark,
        relay_cpu: Option<f64>,
        bytes: u64,
    ) -> Map<String, Value> {
        let gib = bytes as f64 / GIB;
        let mut out = object(fields);
        out.insert(
            "relay_cpu_s_per_gib".into(),
            json!(relay_cpu.map(|c| round(c / gib, 3))),
        );
        out.insert(
            "clients_cpu_s_per_gib".into(),
            json!(round((own_cpu() - mark.own) / gib, 3)),
        );
        out.insert("relay_rss_bytes".into(), json!(self.relay_rss()));
        out.insert("relay_peak_rss_bytes".into(), json!(self.relay_peak_rss()));
        // What the resident memory is made of: the heap and other private
        // memory, and the program's own pages (its code, mostly).
        out.insert(
            "relay_rss_anon_bytes".into(),
            json!(self.relay_status_bytes("RssAnon:")),
        );
        out.insert(
            "relay_rss_file_bytes".into(),
            json!(self.relay_status_bytes("RssFile:")),
        );
        out
    }

    /// The relay's high-water mark of resident memory (VmHWM), since it
    /// started.
    fn relay_peak_rss(&self) -> Option<u64> {
        self.relay_status_bytes("VmHWM:")
    }

    /// A memory figure of the relay's `/proc/<pid>/status` (in kB there),
    /// in bytes.
    fn relay_status_bytes(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.relay_pid?)).ok()?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix(field))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kib * 1024)
    }
}

/// CPU seconds used so far by the relay (when it can be read) and by this
/// process, the clients.
#[derive(Clone, Copy)]
struct CpuMark {
    relay: Option<f64>,
    own: f64,
}

/// A `json!({...})` as the map it is.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not a JSON object: {other}"),
    }
}

fn own_cpu() -> f64 {
    procfs::usage(std::process::id()).map_or(0.0, |u| u.cpu_seconds)
}

fn relay_name(agent: &str) -> &str {
    agent.split('/').next().unwrap_or(agent)
}

/// Bytes one way through one circuit, as fast as it goes.
async fn circuit_throughput(bench: &Bench) -> Result<Map<String, Value>, String> {
    let pair = bench.pair().await?;
    let to = pair.a.peer_id();
    pair.b.sink(to, MIB, Duration::from_secs(30)).await?;
    let mark = bench.cpu_mark();
    let done = pair
        .b
        .sink(to, bench.bytes, transfer_limit(bench.bytes))
        .await?;
    let relay_cpu = bench.relay_cpu_since(mark);
    let fields = json!({
        "relay": relay_name(&pair.relay_agent),
        "relay_agent": pair.relay_agent,
        "circuit_limit": pair.limit,
        "bytes": done.bytes,
        "secs": round(done.elapsed.as_secs_f64(), 3),
        "mb_per_s": round(done.mb_per_s(), 1),
        "relay_cpu_s": relay_cpu.map(|c| round(c, 3)),
    });
    Ok(bench.with_costs(fields, mark, relay_cpu, done.bytes))
}

/// 32-byte ping round trips on one stream: through the circuit to A, and
/// straight to the relay over B's own connection.
async fn circuit_rtt(bench: &Bench) -> Result<Map<String, Value>, String> {
    let pair = bench.pair().await?;
    // Measure after b's own ping service has pinged a once: rust-libp2p's
    // ping handler on a keeps one inbound stream per connection, so b's
    // periodic ping arriving during the measurement would cut the measuring
    // stream. The next periodic ping is 15 s away.
    let a_peer = pair.a.peer_id();
    pair.b
        .wait_event(
            0,
            Duration::from_secs(10),
            move |e| matches!(e, ClientEvent::Pinged { peer } if *peer == a_peer),
        )
        .await?;
    let relay_peer = bsv_p2p_tests::client::peer_of(&bench.relay_addr)
        .ok_or("the relay address has no /p2p/<peer>")?;
    let through = rtts(&pair.b, pair.a.peer_id(), bench.pings).await?;
    let direct = rtts(&pair.b, relay_peer, bench.pings).await?;
    let us = |d: Duration| d.as_micros() as u64;
    Ok(object(json!({
        "relay": relay_name(&pair.relay_agent),
        "rounds": bench.pings,
        "p50_us": us(quantile(&through, 0.5)),
        "p99_us": us(quantile(&through, 0.99)),
        "max_us": us(quantile(&through, 1.0)),
        "direct_p50_us": us(quantile(&direct, 0.5)),
        "direct_p99_us": us(quantile(&direct, 0.99)),
        "direct_max_us": us(quantile(&direct, 1.0)),
    })))
}

/// Ping round trips to `peer` after a short warm-up on the same stream.
async fn rtts(from: &Client, peer: PeerId, rounds: usize) -> Result<Vec<Duration>, String> {
    let warm = 20;
    let all = from.ping(peer, warm + rounds).await?;
    Ok(all[warm..].to_vec())
}

/// `--circuits` pairs, each sending its share of `--bytes` at the same time.
async fn concurrent_circuits(bench: &Bench) -> Result<Map<String, Value>, String> {
    let n = bench.circuits.max(1);
    let mut pairs = Vec::with_capacity(n);
    for _ in 0..n {
        pairs.push(bench.pair().await?);
    }
    let share = bench.bytes / n as u64;
    let mark = bench.cpu_mark();
    let started = Instant::now();
    let sends = pairs
        .iter()
        .map(|p| p.b.sink(p.a.peer_id(), share, transfer_limit(bench.bytes)));
    let results = futures::future::join_all(sends).await;
    let secs = started.elapsed().as_secs_f64();
    let relay_cpu = bench.relay_cpu_since(mark);
    let mut slowest = 0.0f64;
    for r in results {
        slowest = slowest.max(r?.elapsed.as_secs_f64());
    }
    let total = share * n as u64;
    let fields = json!({
        "relay": relay_name(&pairs[0].relay_agent),
        "circuits": n,
        "bytes": total,
        "secs": round(secs, 3),
        "mb_per_s": round(total as f64 / 1e6 / secs.max(1e-9), 1),
        "slowest_circuit_secs": round(slowest, 3),
    });
    Ok(bench.with_costs(fields, mark, relay_cpu, total))
}

/// Generous bound for a transfer: 10 MB/s at worst, and a minute at least.
/// `peers` lean peers (TCP, noise, yamux and one hop stream each, as a bot's
/// reservation costs the relay) reserve and hold their reservations; reports
/// reservations per second, relay CPU per reservation and relay memory per
/// reserved peer (RSS growth over the ramp, read from /proc).
/// Peers that reserve and keep their reservations: the rate, and what each
/// costs the relay in CPU and memory.
async fn reservation_ramp(bench: &Bench) -> Result<Map<String, Value>, String> {
    // Settle, then take the baseline.
    async_std::task::sleep(Duration::from_millis(500)).await;
    let rss0 = bench.relay_rss();
    let cpu0 = bench.relay_cpu();
    let own0 = own_cpu();
    let started = Instant::now();
    let holders = reserve_many(&bench.relay_addr, bench.peers).await?;
    let secs = started.elapsed().as_secs_f64();
    // The clients share the host's cores with the relay: what a relay
    // makes them spend (its identify, pings, streams it opens) slows the
    // ramp as much as its own CPU does.
    let own1 = own_cpu();
    async_std::task::sleep(Duration::from_millis(500)).await;
    let rss1 = bench.relay_rss();
    let cpu1 = bench.relay_cpu();
    let mut out = Map::new();
    out.insert("peers".into(), json!(bench.peers));
    out.insert("secs".into(), json!(round(secs, 3)));
    out.insert(
        "reservations_per_s".into(),
        json!(round(bench.peers as f64 / secs, 1)),
    );
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        out.insert(
            "relay_cpu_ms_per_reservation".into(),
            json!(round((b - a) * 1000.0 / bench.peers as f64, 3)),
        );
    }
    out.insert(
        "clients_cpu_ms_per_reservation".into(),
        json!(round((own1 - own0) * 1000.0 / bench.peers as f64, 3)),
    );
    if let (Some(a), Some(b)) = (rss0, rss1) {
        out.insert("relay_rss_bytes".into(), json!(b));
        out.insert(
            "relay_rss_kib_per_peer".into(),
            json!(round(
                b.saturating_sub(a) as f64 / 1024.0 / bench.peers as f64,
                2
            )),
        );
    }
    // Every reservation held, nothing else happening: what the relay
    // spends on keeping them (timers, keep-alives, pings). Read from the
    // scheduler's nanosecond clock: over a few seconds a nearly idle relay
    // spends less than one 10 ms tick, which would read as 0.
    if bench.idle_secs > 0 {
        let nanos = || bench.relay_pid.and_then(procfs::cpu_nanos);
        let a = nanos();
        async_std::task::sleep(Duration::from_secs(bench.idle_secs)).await;
        if let (Some(a), Some(b)) = (a, nanos()) {
            out.insert(
                "relay_idle_cores".into(),
                json!(round(
                    b.saturating_sub(a) as f64 / 1e9 / bench.idle_secs as f64,
                    5
                )),
            );
        }
    }
    release_all(holders).await;
    Ok(out)
}

fn control_client_err(e: bsv_p2p_proto::Error) -> String {
    format!("control socket: {e}")
}

impl Bench {
    fn socket(&self) -> Result<&std::path::Path, String> {
        self.socket.as_deref().ok_or_else(|| {
            "this scenario needs the relay's control socket: give --socket (or no --relay)".into()
        })
    }
}

/// Events delivered to one subscriber while `--peers` peers reserve and
/// leave: live (as they happen) and replayed from the journal (a subscriber
/// catching up after a restart) while another churn runs. Every event must
/// arrive, in order.
async fn control_events(bench: &Bench) -> Result<Map<String, Value>, String> {
    use bsv_p2p_proto::Client as Control;

    let control = Control::connect(bench.socket()?)
        .await
        .map_err(control_client_err)?;
    let first = control
        .stats()
        .await
        .map_err(control_client_err)?
        .events
        .last_seq
        + 1;
    let mut live = control
        .subscribe(Some(first), None)
        .await
        .map_err(control_client_err)?;
    let churn_started = Instant::now();
    let (target_tx, target_rx) = futures::channel::oneshot::channel::<u64>();
    let reader = async_std::task::spawn(async move {
        let mut expected = first;
        let mut resumes = 0u64;
        let mut target = None;
        let mut target_rx = target_rx.fuse();
        loop {
            futures::select! {
                t = target_rx => target = t.ok(),
                item = live.next().fuse() => match item {
                    // After a resume the last event seen may come again.
                    Some(Ok(event)) if event.seq < expected => {}
                    Some(Ok(event)) => {
                        if event.seq != expected {
                            return Err(format!("live: expected seq {expected}, got {}", event.seq));
                        }
                        expected += 1;
                    }
                    Some(Err(e)) if e.is_fatal() => return Err(format!("live subscription: {e}")),
                    // Cut off for falling behind, or the connection dropped:
                    // the subscription resumes after the last seq it saw.
                    Some(Err(_)) => resumes += 1,
                    None => return Err("live subscription ended".into()),
                },
            }
            if target.is_some_and(|t| expected > t) {
                return Ok((Instant::now(), resumes));
            }
        }
    });
    let holders = reserve_many(&bench.relay_addr, bench.peers).await?;
    release_all(holders).await;
    // The relay journals the last closes a moment after the peers leave.
    async_std::task::sleep(Duration::from_millis(300)).await;
    let last = control
        .stats()
        .await
        .map_err(control_client_err)?
        .events
        .last_seq;
    let _ = target_tx.send(last);
    let (live_done, live_resumes) =
        timed(Duration::from_secs(60), "the live subscriber", reader).await??;
    let live_events = last + 1 - first;
    let live_secs = live_done.duration_since(churn_started).as_secs_f64();

    // Replay everything the first churn produced, three times, while peers
    // keep reserving and leaving at a steady CHURN_PER_S.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = paced_churn(bench, CHURN_PER_S, stop.clone());
    let replays = async {
        let mut rates = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let mut sub = control
                .subscribe(Some(first), None)
                .await
                .map_err(control_client_err)?;
            let mut expected = first;
            while expected <= last {
                let next = timed(Duration::from_secs(30), "a replayed event", sub.next()).await?;
                match next {
                    Some(Ok(event)) if event.seq == expected => expected += 1,
                    Some(Ok(event)) => {
                        return Err(format!(
                            "replay: expected seq {expected}, got {}",
                            event.seq
                        ))
                    }
                    Some(Err(e)) => return Err(format!("replay: {e}")),
                    None => return Err("replay subscription ended".into()),
                }
            }
            rates.push(live_events as f64 / started.elapsed().as_secs_f64());
        }
        stop.store(true, Ordering::Relaxed);
        Ok::<_, String>(rates)
    };
    let (churned, rates) = futures::join!(churn, replays);
    stop.store(true, Ordering::Relaxed);
    let mut rates = rates?;
    let (churned, churn_secs) = churned?;
    rates.sort_by(f64::total_cmp);

    let mut out = Map::new();
    out.insert("peers".into(), json!(bench.peers));
    out.insert("events".into(), json!(live_events));
    out.insert(
        "live_events_per_s".into(),
        json!(round(live_events as f64 / live_secs, 0)),
    );
    out.insert("replay_events_per_s".into(), json!(round(rates[1], 0)));
    out.insert(
        "churn_reservations_per_s".into(),
        json!(round(churned as f64 / churn_secs.max(1e-9), 1)),
    );
    out.insert("live_resumes".into(), json!(live_resumes));
    out.insert("lost".into(), json!(0));
    Ok(out)
}

/// Reservations per second made (and ended) beside the replay.
const CHURN_PER_S: f64 = 200.0;

/// Peers that reserve and leave at `rate` per second until `stop`; how many
/// did, and over how long.
async fn paced_churn(
    bench: &Bench,
    rate: f64,
    stop: Arc<AtomicBool>,
) -> Result<(usize, f64), String> {
    let relay_peer = match bench.relay_addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => return Err("the relay address must end in /p2p/<id>".into()),
    };
    let started = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut launched = 0usize;
    let mut done = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let due = (started.elapsed().as_secs_f64() * rate) as usize;
        while launched < due && pending.len() < 64 {
            let addr = bench.relay_addr.clone();
            pending.push(async move {
                let holder = timed(
                    Duration::from_secs(20),
                    "a churn reservation",
                    Holder::reserve(addr, relay_peer),
                )
                .await??;
                holder.release().await;
                Ok::<_, String>(())
            });
            launched += 1;
        }
        futures::select! {
            r = pending.select_next_some() => { r?; done += 1; }
            _ = async_std::task::sleep(Duration::from_millis(5)).fuse() => {}
        }
    }
    while let Some(r) = pending.next().await {
        r?;
        done += 1;
    }
    Ok((done, started.elapsed().as_secs_f64()))
}

/// `status` round trips over one control connection while `--peers`
/// reservations are held: p50 and p99.
async fn control_status(bench: &Bench) -> Result<Map<String, Value>, String> {
    use bsv_p2p_proto::Client as Control;

    const CALLS: usize = 5000;
    let holders = reserve_many(&bench.relay_addr, bench.peers).await?;
    let control = Control::connect(bench.socket()?)
        .await
        .map_err(control_client_err)?;
    let mut samples = Vec::with_capacity(CALLS);
    let started = Instant::now();
    for _ in 0..CALLS {
        let t = Instant::now();
        let status = control.status().await.map_err(control_client_err)?;
        samples.push(t.elapsed());
        if status.counts.reservations < bench.peers as u64 {
            return Err(format!(
                "status counts {} reservations, {} are held",
                status.counts.reservations, bench.peers
            ));
        }
    }
    let secs = started.elapsed().as_secs_f64();
    release_all(holders).await;
    let us = |q| quantile(&samples, q).as_micros() as u64;
    let mut out = Map::new();
    out.insert("reservations".into(), json!(bench.peers));
    out.insert("calls".into(), json!(CALLS));
    out.insert("calls_per_s".into(), json!(round(CALLS as f64 / secs, 0)));
    out.insert("p50_us".into(), json!(us(0.5)));
    out.insert("p99_us".into(), json!(us(0.99)));
    out.insert("max_us".into(), json!(us(1.0)));
    Ok(out)
}

fn transfer_limit(bytes: u64) -> Duration {
    Duration::from_secs(60 + bytes / 10_000_000)
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let selected: Vec<&(&str, Scenario)> = match &args.scenarios {
        None => SCENARIOS.iter().collect(),
        Some(list) => {
            let mut out = Vec::new();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match SCENARIOS.iter().find(|(n, _)| *n == name) {
                    Some(s) => out.push(s),
                    None => {
                        let known: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
                        eprintln!(
                            "error: unknown scenario {name:?}; known: {}",
                            known.join(", ")
                        );
                        return ExitCode::from(2);
                    }
                }
            }
            out
        }
    };

    let relay = match &args.relay {
        Some(_) => None,
        None if args.limits => Some(Relay::start(limits_config())),
        None => Some(Relay::start(json!({
            "mode": "relay",
            "relay": {
                "circuits": { "unlimited": true },
                "reservations": { "max": 1_000_000 }
            },
            "connectionManager": { "maxConnections": 1_000_000, "maxPendingIncoming": 4096 }
        }))),
    };
    let relay_addr = match (&args.relay, &relay) {
        (Some(addr), _) => addr.clone(),
        (None, Some(r)) => r.tcp_addr(),
        (None, None) => unreachable!("started above"),
    };
    let relay_pid = relay.as_ref().map(Relay::pid).or(args.relay_pid);
    let socket = args
        .socket
        .clone()
        .or_else(|| relay.as_ref().map(Relay::socket));
    let mut bench = Bench {
        relay_addr,
        relay,
        relay_pid,
        bytes: args.bytes,
        pings: args.pings,
        circuits: args.circuits,
        peers: args.peers,
        idle_secs: args.idle_secs,
        socket,
    };

    let mut failed = false;
    for (name, scenario) in selected {
        let outcome = async_std::task::block_on(timed(
            transfer_limit(bench.bytes) * 2,
            name,
            scenario(&bench),
        ));
        match outcome.and_then(|r| r) {
            Ok(fields) => print(name, fields, args.json),
            Err(e) => {
                eprintln!("error: {name}: {e}");
                failed = true;
            }
        }
    }

    if let Some(relay) = bench.relay.as_mut() {
        if let Err(e) = relay.stop(Signal::Term, Duration::from_secs(15)) {
            eprintln!("error: stopping the relay: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
