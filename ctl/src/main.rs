//! `bsv-p2p-ctl`: the operator's handle on a running relay, through its
//! control socket (status, counters, peers, reservations, circuits, events,
//! reload, snapshot, shutdown, and who may use it: `acl`, `ban`, `unban`),
//! plus `ping`, which checks any relay from the outside the way a bot would
//! reach it (the guide's "Test connection from another peer").
//!
//! Tables for people, `--json` for scripts. Exit codes: 0 ok; 1 the relay
//! (or the pinged peer) answered with a failure, or what was to be removed
//! from a list was not on it; 2 bad command line (or a subject on both
//! lists given to `acl remove` without `--list`); 3 no relay reachable at
//! the socket; 4 the relay speaks an incompatible protocol.

mod acl;
mod ping;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;
use bsv_p2p_proto as proto;
use futures::StreamExt;

const EXIT_FAILED: u8 = 1;
use proto::cli::EXIT_USAGE;
const EXIT_UNREACHABLE: u8 = 3;
const EXIT_INCOMPATIBLE: u8 = 4;

/// Control a running bsv-p2p-relay through its control socket.
#[derive(FromArgs)]
struct Args {
    /// control socket path (default: <data dir>/relay.sock)
    #[argh(option, short = 's')]
    socket: Option<PathBuf>,
    /// the relay's data directory (default: ~/.bsv-p2p/relay)
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// print JSON instead of tables
    #[argh(switch)]
    json: bool,
    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Status(Status),
    Stats(Stats),
    Peers(Peers),
    Reservations(Reservations),
    Circuits(Circuits),
    Events(Events),
    Reload(Reload),
    Snapshot(Snapshot),
    Shutdown(Shutdown),
    Acl(acl::Acl),
    Ban(acl::Ban),
    Unban(acl::Unban),
    Ping(ping::Ping),
}

/// peer ID, addresses, uptime, version and counts
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
struct Status {}

/// every counter and gauge the relay keeps
#[derive(FromArgs)]
#[argh(subcommand, name = "stats")]
struct Stats {}

/// connected peers and their connections
#[derive(FromArgs)]
#[argh(subcommand, name = "peers")]
struct Peers {}

/// reservations held, with their expiry
#[derive(FromArgs)]
#[argh(subcommand, name = "reservations")]
struct Reservations {}

/// open circuits with bytes each way and age
#[derive(FromArgs)]
#[argh(subcommand, name = "circuits")]
struct Circuits {}

/// print the relay's events (journal), optionally following new ones
#[derive(FromArgs)]
#[argh(subcommand, name = "events")]
struct Events {
    /// keep printing events as they happen (reconnects across relay restarts)
    #[argh(switch, short = 'f')]
    follow: bool,
    /// start at this sequence number (default: the journal's oldest, or now with --follow)
    #[argh(option)]
    from: Option<u64>,
    /// only these kinds, comma-separated (e.g. reservation_created,circuit_closed)
    #[argh(option)]
    kinds: Option<String>,
}

/// re-read the config file; prints what applied and what needs a restart
#[derive(FromArgs)]
#[argh(subcommand, name = "reload")]
struct Reload {}

/// write a consistent export of the relay's state to PATH
#[derive(FromArgs)]
#[argh(subcommand, name = "snapshot")]
struct Snapshot {
    /// where to write it (absolute, or relative to the current directory)
    #[argh(positional)]
    path: PathBuf,
}

/// stop the relay
#[derive(FromArgs)]
#[argh(subcommand, name = "shutdown")]
struct Shutdown {
    /// stop at once instead of draining circuits and connections
    #[argh(switch)]
    no_drain: bool,
    /// how long to drain, in milliseconds (default: the relay's shutdown.timeout)
    #[argh(option)]
    timeout: Option<u64>,
}

fn main() -> ExitCode {
    let args: Args = match proto::cli::parse_args("bsv-p2p-ctl") {
        Ok(args) => args,
        Err(code) => return code,
    };
    async_std::task::block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    if let Command::Ping(p) = &args.command {
        return ping::run(p, args.json).await;
    }
    let socket = match socket_path(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let options = proto::Options::new(format!("bsv-p2p-ctl/{}", env!("CARGO_PKG_VERSION")));
    let client = match proto::Client::connect_with(&socket, options).await {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let json = args.json;
    let result = match args.command {
        Command::Status(_) => client.status().await.map(|r| show(json, &r, table::status)),
        Command::Stats(_) => client.stats().await.map(|r| show(json, &r, table::stats)),
        Command::Peers(_) => client.peers().await.map(|r| show(json, &r, table::peers)),
        Command::Reservations(_) => client
            .reservations()
            .await
            .map(|r| show(json, &r, table::reservations)),
        Command::Circuits(_) => client
            .circuits()
            .await
            .map(|r| show(json, &r, table::circuits)),
        Command::Reload(_) => client
            .reload()
            .await
            .map(|r| show(json, &r, table::reload) && r.errors.is_empty()),
        Command::Snapshot(s) => {
            let path = if s.path.is_absolute() {
                s.path
            } else {
                std::env::current_dir().unwrap_or_default().join(s.path)
            };
            client
                .snapshot(path)
                .await
                .map(|r| show(json, &r, table::snapshot))
        }
        Command::Shutdown(s) => client
            .shutdown(proto::ShutdownParams {
                drain: !s.no_drain,
                timeout_ms: s.timeout,
            })
            .await
            .map(|r| show(json, &r, table::shutdown)),
        Command::Events(e) => return events(&client, e, json).await,
        Command::Acl(a) => return a.run(&client, json).await,
        Command::Ban(b) => return b.run(&client, json).await,
        Command::Unban(u) => return u.run(&client, json).await,
        Command::Ping(_) => unreachable!("handled above"),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILED),
        Err(e) => fail(&e),
    }
}

async fn events(client: &proto::Client, e: Events, json: bool) -> ExitCode {
    let kinds = e.kinds.map(|k| {
        k.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    // Without --follow, print what the journal holds and stop.
    let from = match (e.from, e.follow) {
        (Some(n), _) => Some(n),
        (None, false) => Some(1),
        (None, true) => None,
    };
    let end = if e.follow {
        None
    } else {
        match client.stats().await {
            Ok(s) => Some(s.events.last_seq),
            Err(err) => return fail(&err),
        }
    };
    if end == Some(0) {
        return ExitCode::SUCCESS;
    }
    let mut sub = match client.subscribe(from, kinds).await {
        Ok(s) => s,
        Err(err) => return fail(&err),
    };
    while let Some(item) = sub.next().await {
        match item {
            Ok(event) => {
                let seq = event.seq;
                if json {
                    println!("{}", serde_json::to_string(&event).unwrap_or_default());
                } else {
                    println!("{}", table::event(&event));
                }
                if end.is_some_and(|end| seq >= end) {
                    return ExitCode::SUCCESS;
                }
            }
            Err(err) if err.is_fatal() => return fail(&err),
            Err(err) => eprintln!("warning: {err} (reconnecting)"),
        }
    }
    ExitCode::SUCCESS
}

/// Prints a result as JSON or through its table; `true`: the command succeeded.
fn show<T: serde::Serialize>(json: bool, value: &T, table: impl Fn(&T) -> String) -> bool {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        print!("{}", table(value));
    }
    true
}

fn fail(e: &proto::Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(match e {
        proto::Error::NoSocket(_)
        | proto::Error::NotRunning(_)
        | proto::Error::PermissionDenied(_)
        | proto::Error::NotARelay { .. }
        | proto::Error::Disconnected(_) => EXIT_UNREACHABLE,
        proto::Error::VersionMismatch { .. } => EXIT_INCOMPATIBLE,
        _ => EXIT_FAILED,
    })
}

fn socket_path(args: &Args) -> Result<PathBuf, String> {
    if let Some(s) = &args.socket {
        return Ok(s.clone());
    }
    if let Some(d) = &args.data_dir {
        return Ok(d.join(proto::SOCKET_FILE));
    }
    let home =
        std::env::var_os("HOME").ok_or("no --socket or --data-dir given and $HOME is not set")?;
    Ok(proto::default_socket(home))
}
