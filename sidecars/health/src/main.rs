//! `bsv-p2p-health`: the relay's health, readiness and Prometheus metrics
//! over HTTP, read only through the relay's control socket.
//!
//! The relay itself does no HTTP; this sidecar is what the operator guide's
//! `health-check.sh`, a load balancer and Prometheus talk to. It keeps one
//! control connection ([`link`]), serves the endpoints in [`routes`], and
//! keeps serving while the relay restarts, reporting it down until it is
//! back.
//!
//! Exit codes: 0 stopped by SIGINT or SIGTERM; 1 cannot serve (the address
//! is taken or not ours); 2 bad command line or environment.

mod config;
mod link;
mod metrics;
mod process;
mod routes;

use argh::FromArgs;
use std::process::ExitCode;
use std::time::Duration;

use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use futures::StreamExt;

use config::{Args, Config};
use link::Link;

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let rest: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    let args = match Args::from_args(&["bsv-p2p-health"], &rest) {
        Ok(args) => args,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprintln!(
                        "{}\nRun bsv-p2p-health --help for usage.",
                        early.output.trim_end()
                    );
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
    };
    if args.version {
        println!("bsv-p2p-health {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match Config::resolve(&args, |key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bsv-p2p-health: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    femme::with_level(config.log_level);
    if let Err(e) = ctrlc::set_handler(|| {
        log::info!("stopping");
        std::process::exit(0);
    }) {
        eprintln!("bsv-p2p-health: cannot handle SIGINT/SIGTERM: {e}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    match task::block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bsv-p2p-health: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let (link, keeper) = Link::new(config.socket.clone(), config.timeout, config.max_age);
    task::spawn(keeper.run());
    log::info!(
        "serving http://{bound} for the relay at {} (readings up to {} ms old)",
        config.socket.display(),
        config.max_age.as_millis()
    );
    let app = routes::app(routes::Sidecar::new(link));
    let mut incoming = listener.incoming();
    while let Some(stream) = incoming.next().await {
        match stream {
            Ok(stream) => {
                task::spawn(connection(app.clone(), stream));
            }
            // Out of descriptors, most likely: let connections close.
            Err(e) => {
                log::warn!("cannot accept an HTTP connection: {e}");
                task::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Err(format!("http://{bound} stopped accepting connections"))
}

/// One HTTP/1.1 connection, keep-alive, until the client closes it.
async fn connection(app: tide::Server<routes::State>, stream: TcpStream) {
    // A response is written in several pieces; without this, each waits for
    // the client's delayed ACK.
    let _ = stream.set_nodelay(true);
    let (local, peer) = (stream.local_addr().ok(), stream.peer_addr().ok());
    let served = async_h1::accept(stream, |mut req| async {
        req.set_local_addr(local);
        req.set_peer_addr(peer);
        app.respond(req).await
    })
    .await;
    if let Err(e) = served {
        log::debug!("HTTP connection from {peer:?} ended: {e}");
    }
}
