//! `bsv-p2p-bench-federation`: gossip across federated relays. It starts
//! `--relays` of our relays on loopback in a full mesh (`federation.peers`),
//! a publishing js bot on relay 1, `--bots` js bots on relay 1 (the local
//! baseline) and as many on the last relay, and has the publisher send
//! `--messages` announcements at `--rate` a second. For each message it
//! takes the publisher's clock when publishing began and each receiver's
//! when the message arrived (the bots share this host's clock), and prints:
//!
//! - propagation latency p50/p99/max to the bots on relay 1 and on the last
//!   relay (the difference is what the federation hop costs);
//! - messages delivered, lost and duplicated at each receiver;
//! - each relay's CPU per 1,000 messages (CPU time over the publishing
//!   phase, the bots' own work excluded) and its `messagesOut` /
//!   `messagesIn` to and from the other relays.
//!
//! One JSON object with `--json`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use argh::FromArgs;
use bsv_p2p_tests::fleet::Fleet;
use bsv_p2p_tests::relay::field;
use bsv_p2p_tests::report::{print, round};
use bsv_p2p_tests::{Bot, BotOptions};
use serde_json::{json, Map, Value};

const T: Duration = Duration::from_secs(60);
const TOPIC: &str = "/openclaw/announce/1.0.0";

/// Federation benchmark: gossip latency across relays and the relays' CPU per message.
#[derive(FromArgs)]
struct Args {
    /// relays in the full mesh (default 3)
    #[argh(option, default = "3")]
    relays: usize,
    /// receiving bots on relay 1 and on the last relay, each (default 2)
    #[argh(option, default = "2")]
    bots: usize,
    /// messages published (default 1000)
    #[argh(option, default = "1000")]
    messages: usize,
    /// messages a second (default 100)
    #[argh(option, default = "100.0")]
    rate: f64,
    /// one JSON object instead of a readable line
    #[argh(switch)]
    json: bool,
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    if args.relays < 2 || args.bots == 0 || args.messages == 0 || args.rate <= 0.0 {
        eprintln!("bsv-p2p-bench-federation: --relays must be 2 or more, --bots, --messages and --rate above 0");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(fields) => {
            print("federation_gossip", fields, args.json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bsv-p2p-bench-federation: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bot_on(fleet: &Fleet, i: usize) -> Bot {
    let bot = Bot::start(BotOptions::new(fleet.relay(i).tcp_addr()));
    bot.wait_reserved(T);
    bot
}

fn run(args: &Args) -> Result<Map<String, Value>, String> {
    let fleet = Fleet::start(args.relays, json!({}));
    for i in 0..fleet.len() {
        fleet.wait_meshed(i, T);
    }
    let last = fleet.len() - 1;
    let mut publisher = bot_on(&fleet, 0);
    let local: Vec<Bot> = (0..args.bots).map(|_| bot_on(&fleet, 0)).collect();
    let remote: Vec<Bot> = (0..args.bots).map(|_| bot_on(&fleet, last)).collect();

    // Until every receiver hears the publisher: the meshes are formed.
    let deadline = Instant::now() + T;
    let receivers: Vec<&Bot> = local.iter().chain(&remote).collect();
    let mut n = 0;
    loop {
        n += 1;
        let text = format!("warm-up {n}");
        let marks: Vec<usize> = receivers.iter().map(|b| b.mark()).collect();
        publisher.command(json!({ "cmd": "publish", "topic": TOPIC, "data": text }), T)?;
        std::thread::sleep(Duration::from_millis(500));
        let all = receivers.iter().zip(&marks).all(|(b, m)| {
            b.events()[*m..]
                .iter()
                .any(|e| e["event"] == "gossip" && field(e, "data") == text)
        });
        if all {
            break;
        }
        if Instant::now() > deadline {
            return Err("the bots never all heard the publisher".into());
        }
    }

    let marks: Vec<usize> = receivers.iter().map(|b| b.mark()).collect();
    let cpu_before: Vec<f64> = (0..fleet.len()).map(|i| cpu(&fleet, i)).collect();
    let views_before: Vec<Vec<Value>> = (0..fleet.len()).map(|i| fleet.federation(i)).collect();
    let mut published: HashMap<String, u64> = HashMap::new();
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let started = Instant::now();
    for k in 0..args.messages {
        let due = started + interval * k as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let text = format!("bench {k}");
        let r = publisher.command(json!({ "cmd": "publish", "topic": TOPIC, "data": text }), T)?;
        if r["ok"] != json!(true) {
            return Err(format!("publish failed: {r}"));
        }
        let at = r["atUs"].as_u64().ok_or("publish gave no atUs")?;
        published.insert(text, at);
    }
    let publishing = started.elapsed();
    // Everything in, or 10 s after the last message.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let done = receivers
            .iter()
            .zip(&marks)
            .all(|(b, m)| arrivals(b, *m).len() >= args.messages);
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let cpu_after: Vec<f64> = (0..fleet.len()).map(|i| cpu(&fleet, i)).collect();
    let views_after: Vec<Vec<Value>> = (0..fleet.len()).map(|i| fleet.federation(i)).collect();

    let mut fields = Map::new();
    fields.insert("relays".into(), json!(fleet.len()));
    fields.insert("messages".into(), json!(args.messages));
    fields.insert(
        "publish_rate".into(),
        json!(round(args.messages as f64 / publishing.as_secs_f64(), 1)),
    );
    for (name, group, offset) in [
        ("relay_1", &local, 0),
        (&*format!("relay_{}", last + 1), &remote, local.len()),
    ] {
        let mut latencies = Vec::new();
        let (mut lost, mut duplicates) = (0, 0);
        for (k, bot) in group.iter().enumerate() {
            let got = arrivals(bot, marks[offset + k]);
            for (text, at) in &published {
                match got.get(text).map(Vec::as_slice) {
                    None | Some([]) => lost += 1,
                    Some([first, rest @ ..]) => {
                        duplicates += rest.len();
                        latencies.push(first.saturating_sub(*at));
                    }
                }
            }
        }
        latencies.sort_unstable();
        let q = |p: f64| {
            latencies
                .get(
                    ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len().max(1))
                        - 1,
                )
                .map(|us| round(*us as f64 / 1000.0, 2))
        };
        fields.insert(
            format!("latency_ms_to_bots_on_{name}"),
            json!({ "p50": q(0.5), "p99": q(0.99), "max": q(1.0) }),
        );
        fields.insert(format!("lost_at_{name}"), json!(lost));
        fields.insert(format!("duplicates_at_{name}"), json!(duplicates));
    }
    let mut per_relay = Vec::new();
    for i in 0..fleet.len() {
        let sum = |views: &[Value], key: &str| -> u64 {
            views.iter().map(|v| v[key].as_u64().unwrap_or(0)).sum()
        };
        let out = sum(&views_after[i], "messagesOut") - sum(&views_before[i], "messagesOut");
        let inn = sum(&views_after[i], "messagesIn") - sum(&views_before[i], "messagesIn");
        per_relay.push(json!({
            "relay": i + 1,
            "cpu_ms_per_1000_messages": round((cpu_after[i] - cpu_before[i]) * 1000.0 * 1000.0 / args.messages as f64, 1),
            "federation_messages_out": out,
            "federation_messages_in": inn,
            "rss_bytes": fleet.relay(i).usage().map(|u| u.resident_bytes),
        }));
    }
    fields.insert("relays_cost".into(), Value::Array(per_relay));
    for bot in std::iter::once(publisher).chain(local).chain(remote) {
        let _ = bot.stop(Duration::from_secs(10));
    }
    Ok(fields)
}

fn cpu(fleet: &Fleet, i: usize) -> f64 {
    fleet.relay(i).usage().map_or(0.0, |u| u.cpu_seconds)
}

/// The arrival times (µs) of each `bench` message at `bot` after `mark`.
fn arrivals(bot: &Bot, mark: usize) -> HashMap<String, Vec<u64>> {
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    for e in &bot.events()[mark..] {
        if e["event"] == "gossip" && field(e, "data").starts_with("bench ") {
            if let Some(at) = e["atUs"].as_u64() {
                out.entry(field(e, "data").to_string())
                    .or_default()
                    .push(at);
            }
        }
    }
    out
}
