//! `bsv-p2p-bench-health`: what the health sidecar costs and sustains with a
//! busy relay behind it. It starts our relay on loopback, has `--peers` lean
//! peers reserve and hold their reservations, starts `bsv-p2p-health` on the
//! relay's control socket, and then:
//!
//! - `status`, `metrics`: `--connections` keep-alive HTTP clients ask one
//!   endpoint as fast as it answers for `--secs`; requests per second,
//!   latency percentiles, and how many control requests reached the relay;
//! - `status_paced`: the same clients asking `/status` at `--rate` requests
//!   per second together, latency counted from when each request was due;
//! - `circuit_scraped`: one circuit's throughput with a real Prometheus
//!   scraping the sidecar every second, against the same circuit while
//!   that Prometheus is paused (SIGSTOP), rounds alternating.
//!
//! One JSON object per scenario with `--json`.

use std::process::{Child, ExitCode};
use std::time::{Duration, Instant};

use argh::FromArgs;
use async_std::io::BufReader;
use async_std::net::TcpStream;
use bsv_p2p_proto::SOCKET_FILE;
use bsv_p2p_tests::client::ClientEvent;
use bsv_p2p_tests::health::Health;
use bsv_p2p_tests::holder::{release_all, reserve_many};
use bsv_p2p_tests::probes::quantile;
use bsv_p2p_tests::report::{print, round};
use bsv_p2p_tests::{procfs, Client, ClientOptions, Relay, ScratchDir, Signal};
use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use serde_json::{json, Map, Value};

const MIB: u64 = 1 << 20;

/// Health sidecar benchmark: /status and /metrics under load, and the cost of scraping.
#[derive(FromArgs)]
struct Args {
    /// reservations held during the run (default 1000)
    #[argh(option, default = "1000")]
    peers: usize,
    /// seconds each load runs (default 10)
    #[argh(option, default = "10.0")]
    secs: f64,
    /// requests per second in status_paced (default 2000)
    #[argh(option, default = "2000.0")]
    rate: f64,
    /// concurrent keep-alive HTTP connections (default 32)
    #[argh(option, default = "32")]
    connections: usize,
    /// the sidecar's --max-age in milliseconds (default: the sidecar's own, 250)
    #[argh(option)]
    max_age: Option<u64>,
    /// bytes per circuit transfer in circuit_scraped (default 512 MiB, a few seconds each)
    #[argh(option, default = "512 * MIB")]
    bytes: u64,
    /// rounds of each kind in circuit_scraped (default 5)
    #[argh(option, default = "5")]
    rounds: usize,
    /// comma-separated scenarios (default: status,status_paced,metrics,circuit_scraped)
    #[argh(option)]
    scenarios: Option<String>,
    /// print one JSON object per scenario instead of readable lines
    #[argh(switch)]
    json: bool,
}

/// A child process of ours, killed when dropped.
struct Owned(Child);

impl Owned {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, signal);
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `port` answers `path` with 200.
async fn await_ok(port: u16, path: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(mut conn) = Conn::open(port).await {
            if let Ok((200, _)) = conn.get(path).await {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "127.0.0.1:{port}{path} did not answer 200 within {limit:?}"
            ));
        }
        async_std::task::sleep(Duration::from_millis(100)).await;
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    port: u16,
}

impl Conn {
    async fn open(port: u16) -> Result<Conn, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            reader: BufReader::new(stream.clone()),
            writer: stream,
            port,
        })
    }

    /// Status code and body.
    async fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        );
        self.writer
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        let code = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = 0;
        loop {
            line.clear();
            self.reader
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().map_err(|_| format!("bad {header:?}"))?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(format!("unexpected {header:?}"));
                }
            }
        }
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        Ok((code, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// What the benchmark runs against.
struct Bench {
    relay: Relay,
    health: Health,
    args: Args,
}

impl Bench {
    /// A series of the sidecar's own /metrics.
    async fn sidecar_metric(&self, series: &str) -> Result<f64, String> {
        let mut conn = Conn::open(self.health.port).await?;
        let (_, body) = conn.get("/metrics").await?;
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .ok_or_else(|| format!("{series} not in /metrics"))
    }

    async fn control_requests(&self) -> Result<f64, String> {
        let mut total = 0.0;
        for method in ["status", "stats"] {
            total += self
                .sidecar_metric(&format!(
                    "bsv_p2p_health_relay_request_duration_seconds_count{{method=\"{method}\"}}"
                ))
                .await?;
        }
        Ok(total)
    }

    fn cpu(&self, pid: u32) -> f64 {
        procfs::usage(pid).map_or(0.0, |u| u.cpu_seconds)
    }

    /// `--connections` clients asking `path` for `secs`: back to back, or
    /// together at `rate` requests per second, each request timed from when
    /// it was due (so a stall counts against every request it delays).
    async fn load(
        &self,
        path: &str,
        secs: f64,
        rate: Option<f64>,
    ) -> Result<Map<String, Value>, String> {
        let relay_calls = self.control_requests().await?;
        let (sidecar_cpu, relay_cpu) = (self.cpu(self.health.pid()), self.cpu(self.relay.pid()));
        let started = Instant::now();
        let until = started + Duration::from_secs_f64(secs);
        let clients = (0..self.args.connections).map(|_| {
            let port = self.health.port;
            let path = path.to_string();
            let every = rate.map(|r| Duration::from_secs_f64(self.args.connections as f64 / r));
            async_std::task::spawn(async move {
                let mut conn = Conn::open(port).await?;
                let mut took = Vec::new();
                let mut errors = 0u64;
                let mut bytes = 0usize;
                let mut due = Instant::now();
                while due < until {
                    let sent = match every {
                        Some(every) => {
                            let wait = due.saturating_duration_since(Instant::now());
                            async_std::task::sleep(wait).await;
                            let sent = due;
                            due += every;
                            sent
                        }
                        None => {
                            due = Instant::now();
                            due
                        }
                    };
                    let (code, body) = conn.get(&path).await?;
                    took.push(sent.elapsed());
                    bytes = body.len();
                    if code != 200 {
                        errors += 1;
                    }
                }
                Ok::<_, String>((took, errors, bytes))
            })
        });
        let results = futures::future::join_all(clients).await;
        let elapsed = started.elapsed().as_secs_f64();
        let sidecar_cpu = self.cpu(self.health.pid()) - sidecar_cpu;
        let relay_cpu = self.cpu(self.relay.pid()) - relay_cpu;
        let relay_calls = self.control_requests().await? - relay_calls - 2.0;
        let mut took = Vec::new();
        let mut errors = 0;
        let mut body_bytes = 0;
        for r in results {
            let (t, e, b) = r?;
            took.extend(t);
            errors += e;
            body_bytes = body_bytes.max(b);
        }
        let us = |q: f64| quantile(&took, q).as_micros() as u64;
        Ok(json!({
            "path": path,
            "target_req_per_s": rate,
            "reservations": self.args.peers,
            "connections": self.args.connections,
            "secs": round(elapsed, 2),
            "requests": took.len(),
            "errors": errors,
            "req_per_s": round(took.len() as f64 / elapsed, 1),
            "p50_us": us(0.5),
            "p99_us": us(0.99),
            "max_us": us(1.0),
            "body_bytes": body_bytes,
            "control_requests_per_s": round(relay_calls.max(0.0) / elapsed, 1),
            "sidecar_cpu_s_per_s": round(sidecar_cpu / elapsed, 3),
            "relay_cpu_s_per_s": round(relay_cpu / elapsed, 3),
        })
        .as_object()
        .cloned()
        .expect("object"))
    }
}

async fn status(bench: &Bench) -> Result<Map<String, Value>, String> {
    bench.load("/status", 1.0, None).await?;
    let mut out = bench.load("/status", bench.args.secs, None).await?;
    let mut conn = Conn::open(bench.health.port).await?;
    let (_, body) = conn.get("/status").await?;
    let seen: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    out.insert("reported_reservations".into(), seen["reservations"].clone());
    Ok(out)
}

/// `/status` at `--rate` requests per second: the latency an operator's
/// load balancer and health checks see at that load.
async fn status_paced(bench: &Bench) -> Result<Map<String, Value>, String> {
    bench
        .load("/status", bench.args.secs, Some(bench.args.rate))
        .await
}

async fn metrics(bench: &Bench) -> Result<Map<String, Value>, String> {
    bench.load("/metrics", 1.0, None).await?;
    bench.load("/metrics", bench.args.secs, None).await
}

/// A circuit's throughput, Prometheus scraping every second or paused.
async fn circuit_scraped(bench: &Bench) -> Result<Map<String, Value>, String> {
    let dir = ScratchDir::new("bench-prometheus");
    let (child, port) = bsv_p2p_tests::prometheus::spawn(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
             scrape_configs:\n  - job_name: bsv-p2p-health\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            bench.health.port
        ),
    )?;
    let prometheus = Owned(child);
    await_ok(port, "/-/ready", Duration::from_secs(30)).await?;

    let a = Client::start(ClientOptions::default()).await?;
    let b = Client::start(ClientOptions::default()).await?;
    let relay_addr = bench.relay.tcp_addr();
    a.reserve(&relay_addr).await?;
    b.connect(&relay_addr).await?;
    let from = b.seq().await?;
    b.dial_via(&relay_addr, a.peer_id()).await?;
    b.wait_event(from, Duration::from_secs(10), |e| {
        matches!(e, ClientEvent::OutboundCircuit { .. })
    })
    .await?;
    let limit = Duration::from_secs(60 + bench.args.bytes / 10_000_000);
    b.sink(a.peer_id(), 4 * MIB, limit).await?;

    let scrapes_before = bench
        .sidecar_metric("bsv_p2p_health_http_requests_total{route=\"/metrics\",code=\"200\"}")
        .await
        .unwrap_or(0.0);
    let (mut scraped, mut paused) = (Vec::new(), Vec::new());
    for _ in 0..bench.args.rounds.max(1) {
        for scraping in [true, false] {
            prometheus.signal(if scraping {
                libc::SIGCONT
            } else {
                libc::SIGSTOP
            });
            async_std::task::sleep(Duration::from_millis(1500)).await;
            let done = b.sink(a.peer_id(), bench.args.bytes, limit).await?;
            if scraping {
                scraped.push(done.mb_per_s());
            } else {
                paused.push(done.mb_per_s());
            }
        }
    }
    prometheus.signal(libc::SIGCONT);
    let scrapes = bench
        .sidecar_metric("bsv_p2p_health_http_requests_total{route=\"/metrics\",code=\"200\"}")
        .await?
        - scrapes_before;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, p) = (median(&mut scraped), median(&mut paused));
    drop(prometheus);
    Ok(json!({
        "bytes": bench.args.bytes,
        "rounds": bench.args.rounds,
        "scrape_interval_s": 1,
        "scrapes": scrapes,
        "scraped_mb_per_s": round(s, 1),
        "unscraped_mb_per_s": round(p, 1),
        "scraped_over_unscraped": round(s / p, 3),
        "scraped_runs_mb_per_s": scraped.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
        "unscraped_runs_mb_per_s": paused.iter().map(|x| round(*x, 1)).collect::<Vec<_>>(),
    })
    .as_object()
    .cloned()
    .expect("object"))
}

async fn run(args: Args) -> Result<bool, String> {
    let wanted: Vec<String> = args
        .scenarios
        .as_deref()
        .unwrap_or("status,status_paced,metrics,circuit_scraped")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = wanted
        .iter()
        .find(|s| !["status", "status_paced", "metrics", "circuit_scraped"].contains(&s.as_str()))
    {
        return Err(format!(
            "unknown scenario {bad:?}; known: status, status_paced, metrics, circuit_scraped"
        ));
    }

    let relay = Relay::start(json!({
        "mode": "relay",
        "relay": {
            "circuits": { "unlimited": true },
            "reservations": { "max": 1_000_000 }
        },
        "connectionManager": { "maxConnections": 1_000_000, "maxPendingIncoming": 4096 }
    }));
    let relay_addr = relay.tcp_addr();
    let holders = reserve_many(&relay_addr, args.peers).await?;

    let health = Health::start_with_max_age(&relay.data_dir().join(SOCKET_FILE), args.max_age);
    await_ok(health.port, "/health", Duration::from_secs(15)).await?;

    let as_json = args.json;
    let mut bench = Bench {
        relay,
        health,
        args,
    };
    let mut ok = true;
    for name in wanted {
        let outcome = match name.as_str() {
            "status" => status(&bench).await,
            "status_paced" => status_paced(&bench).await,
            "metrics" => metrics(&bench).await,
            _ => circuit_scraped(&bench).await,
        };
        match outcome {
            Ok(fields) => print(&name, fields, as_json),
            Err(e) => {
                eprintln!("error: {name}: {e}");
                ok = false;
            }
        }
    }
    release_all(holders).await;
    drop(bench.health);
    if let Err(e) = bench.relay.stop(Signal::Term, Duration::from_secs(15)) {
        eprintln!("error: stopping the relay: {e}");
        ok = false;
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    match async_std::task::block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
