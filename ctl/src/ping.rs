//! `bsv-p2p-ctl ping`: reaches any relay the way a bot does — over TCP or
//! WebSocket, with noise and yamux — and reports what it finds: identify
//! (agent, protocols, whether circuit relay v2 hop is offered, the address it
//! saw us at), the round-trip time of each ping, and with `--reserve` whether
//! a reservation is granted, with its expiry, addresses, limit and a checked
//! voucher. Works against any relay, not only ours.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use argh::FromArgs;
use bsv_p2p_wire as wire;
use futures::channel::mpsc;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::SignedEnvelope;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, SwarmBuilder};
use serde_json::json;

use crate::{EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE};

const PING: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");
const HOP: StreamProtocol = StreamProtocol::new(wire::HOP_PROTOCOL);
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// dial a relay (any libp2p relay) and report identify, ping RTTs and optionally a reservation
#[derive(FromArgs)]
#[argh(subcommand, name = "ping")]
pub struct Ping {
    /// the relay's multiaddr, e.g. /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...
    #[argh(positional)]
    addr: String,
    /// number of pings (default 4)
    #[argh(option, default = "4")]
    count: u32,
    /// also ask for a reservation and report it
    #[argh(switch)]
    reserve: bool,
}

#[derive(NetworkBehaviour)]
struct Probe {
    identify: identify::Behaviour,
    streams: libp2p_stream::Behaviour,
}

enum Seen {
    Connected(PeerId),
    Identified(Box<identify::Info>),
    Failed(String),
}

pub async fn run(args: &Ping, json: bool) -> ExitCode {
    let addr: Multiaddr = match args.addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {:?} is not a multiaddr: {e}", args.addr);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.count == 0 || args.count > 10_000 {
        eprintln!("error: --count must be 1 to 10000, got {}", args.count);
        return ExitCode::from(EXIT_USAGE);
    }
    match probe(addr, args, json).await {
        Ok(code) => code,
        Err((code, message)) => {
            if json {
                println!("{}", json!({ "ok": false, "error": message }));
            }
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

async fn probe(addr: Multiaddr, args: &Ping, json: bool) -> Result<ExitCode, (u8, String)> {
    let setup = |e: String| (EXIT_FAILED, e);
    let mut swarm = SwarmBuilder::with_new_identity()
        .with_async_std()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| setup(e.to_string()))?
        .with_dns()
        .map_err(|e| setup(e.to_string()))?
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await
        .map_err(|e| setup(e.to_string()))?
        .with_behaviour(|key| Probe {
            identify: identify::Behaviour::new(
                identify::Config::new("/ipfs/0.1.0".into(), key.public())
                    .with_agent_version(format!("bsv-p2p-ctl/{}", env!("CARGO_PKG_VERSION"))),
            ),
            streams: libp2p_stream::Behaviour::new(),
        })
        .map_err(|e| setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build();
    let mut control = swarm.behaviour().streams.new_control();
    swarm
        .dial(addr.clone())
        .map_err(|e| (EXIT_UNREACHABLE, format!("cannot dial {addr}: {e}")))?;

    // The swarm runs in its own task; we only need to hear what it sees.
    let (seen_tx, mut seen) = mpsc::unbounded();
    let driver = async_std::task::spawn(async move {
        loop {
            let seen = match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => Seen::Connected(peer_id),
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    Seen::Failed(error.to_string())
                }
                SwarmEvent::Behaviour(ProbeEvent::Identify(identify::Event::Received {
                    info,
                    ..
                })) => Seen::Identified(Box::new(info)),
                _ => continue,
            };
            if seen_tx.unbounded_send(seen).is_err() {
                return;
            }
        }
    });

    let peer = match next(&mut seen, "the connection").await? {
        Seen::Connected(p) => p,
        Seen::Failed(e) => {
            return Err((EXIT_UNREACHABLE, format!("cannot connect to {addr}: {e}")))
        }
        Seen::Identified(_) => return Err((EXIT_FAILED, "identify before connection".into())),
    };
    let info = loop {
        match next(&mut seen, "identify").await? {
            Seen::Identified(info) => break info,
            Seen::Failed(e) => return Err((EXIT_UNREACHABLE, e)),
            Seen::Connected(_) => continue,
        }
    };
    let protocols: Vec<String> = info.protocols.iter().map(ToString::to_string).collect();
    let hop_offered = protocols.iter().any(|p| p == wire::HOP_PROTOCOL);
    if json {
        println!(
            "{}",
            json!({"peerId": peer.to_string(), "agent": info.agent_version, "protocolVersion": info.protocol_version,
                   "protocols": protocols, "hop": hop_offered, "observedAddr": info.observed_addr.to_string(),
                   "listenAddrs": info.listen_addrs.iter().map(ToString::to_string).collect::<Vec<_>>()})
        );
    } else {
        println!("peer ID     {peer}");
        println!(
            "agent       {} ({})",
            info.agent_version, info.protocol_version
        );
        println!(
            "hop         {}",
            if hop_offered {
                "offered (circuit relay v2)"
            } else {
                "not offered"
            }
        );
        println!("observed    {}", info.observed_addr);
        for a in &info.listen_addrs {
            println!("address     {a}");
        }
        println!("protocols   {}", protocols.join(" "));
    }

    let mut stream = control
        .open_stream(peer, PING)
        .await
        .map_err(|e| (EXIT_FAILED, format!("ping refused: {e}")))?;
    let mut rtts = Vec::new();
    for seq in 1..=args.count {
        let payload: [u8; 32] = rand::random();
        let started = Instant::now();
        let exchange = async {
            stream.write_all(&payload).await?;
            stream.flush().await?;
            let mut back = [0u8; 32];
            stream.read_exact(&mut back).await?;
            Ok::<_, std::io::Error>(back == payload)
        };
        match async_std::future::timeout(STEP_TIMEOUT, exchange).await {
            Ok(Ok(true)) => {
                let rtt = started.elapsed();
                rtts.push(rtt);
                if json {
                    println!("{}", json!({"ping": seq, "rttUs": rtt.as_micros() as u64}));
                } else {
                    println!("ping {seq}    rtt {:.3} ms", rtt.as_secs_f64() * 1000.0);
                }
            }
            Ok(Ok(false)) => {
                return Err((EXIT_FAILED, format!("ping {seq}: the reply did not match")))
            }
            Ok(Err(e)) => return Err((EXIT_FAILED, format!("ping {seq}: {e}"))),
            Err(_) => return Err((EXIT_FAILED, format!("ping {seq}: no reply within 10 s"))),
        }
        if seq < args.count {
            async_std::task::sleep(Duration::from_millis(200)).await;
        }
    }

    let mut code = ExitCode::SUCCESS;
    if args.reserve {
        code = reserve(&mut control, peer, json).await?;
    }
    driver.cancel().await;
    Ok(code)
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>, what: &str) -> Result<Seen, (u8, String)> {
    async_std::future::timeout(STEP_TIMEOUT, seen.next())
        .await
        .map_err(|_| (EXIT_UNREACHABLE, format!("timed out waiting for {what}")))?
        .ok_or((EXIT_FAILED, "connection task ended".to_string()))
}

async fn reserve(
    control: &mut libp2p_stream::Control,
    relay: PeerId,
    json: bool,
) -> Result<ExitCode, (u8, String)> {
    let mut stream = control.open_stream(relay, HOP).await.map_err(|e| {
        (
            EXIT_FAILED,
            format!("reservation: hop protocol refused: {e}"),
        )
    })?;
    let request = wire::HopMessage {
        kind: Some(wire::hop_type::RESERVE),
        ..Default::default()
    }
    .encode();
    let reply = async {
        wire::write_frame(&mut stream, &request)
            .await
            .map_err(|e| e.to_string())?;
        let bytes = wire::read_frame(&mut stream)
            .await
            .map_err(|e| e.to_string())?;
        wire::HopMessage::decode(&bytes).map_err(|e| e.to_string())
    };
    let reply = async_std::future::timeout(STEP_TIMEOUT, reply)
        .await
        .map_err(|_| (EXIT_FAILED, "reservation: no reply within 10 s".to_string()))?
        .map_err(|e| (EXIT_FAILED, format!("reservation: {e}")))?;
    let status = reply.status.and_then(wire::Status::from_code);
    if status != Some(wire::Status::Ok) {
        let name = status.map_or_else(
            || format!("{:?}", reply.status),
            |s| s.as_str().to_uppercase(),
        );
        if json {
            println!("{}", json!({"reservation": false, "status": name}));
        } else {
            println!("reservation REFUSED: {name}");
        }
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let r = reply.reservation.unwrap_or_default();
    let addrs: Vec<String> = r
        .addrs
        .iter()
        .map(|a| {
            Multiaddr::try_from(a.clone()).map_or_else(|_| "<unreadable>".into(), |m| m.to_string())
        })
        .collect();
    let voucher = match &r.voucher {
        None => "absent".to_string(),
        Some(v) => check_voucher(v, relay, r.expire),
    };
    let limit = reply
        .limit
        .map(|l| json!({"durationSecs": l.duration, "dataBytes": l.data}));
    if json {
        println!(
            "{}",
            json!({"reservation": true, "expire": r.expire, "addrs": addrs, "voucher": voucher, "limit": limit})
        );
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        println!(
            "reservation granted, expires at {} (in {} s)",
            r.expire,
            r.expire.saturating_sub(now)
        );
        for a in &addrs {
            let relayed = a
                .parse::<Multiaddr>()
                .is_ok_and(|m| m.iter().any(|p| matches!(p, Protocol::P2p(_))));
            println!(
                "  relay address {a}{}",
                if relayed { "" } else { " (no /p2p)" }
            );
        }
        println!("  voucher {voucher}");
        match reply.limit {
            None => println!("  limit none (circuits are unlimited)"),
            Some(l) => println!(
                "  limit {} s, {} bytes per direction",
                l.duration.map_or("no time cap".into(), |d| d.to_string()),
                l.data.map_or("no data cap".into(), |d| d.to_string())
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// "valid" when the envelope is signed by the relay for this reservation.
fn check_voucher(bytes: &[u8], relay: PeerId, expire: u64) -> String {
    let Ok(envelope) = SignedEnvelope::from_protobuf_encoding(bytes) else {
        return "unreadable envelope".into();
    };
    let Ok((payload, key)) = envelope.payload_and_signing_key(
        wire::VOUCHER_DOMAIN.to_string(),
        &wire::VOUCHER_PAYLOAD_TYPE,
    ) else {
        return "bad signature or wrong domain".into();
    };
    if key.to_peer_id() != relay {
        return "signed by another key".into();
    }
    match wire::decode_voucher(payload) {
        Ok((r, _, exp)) if r == relay.to_bytes() && exp == expire => {
            "valid (signed by the relay)".into()
        }
        Ok(_) => "signed, but for another relay or expiry".into(),
        Err(e) => format!("unreadable payload: {e}"),
    }
}
