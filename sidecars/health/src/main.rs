//! `bsv-p2p-health`: the relay's health, readiness and Prometheus metrics
//! over HTTP, read only through the relay's control socket.
//!
//! The relay itself does no HTTP; this sidecar is what the operator guide's
//! `health-check.sh`, a load balancer and Prometheus talk to. It keeps one
//! control connection ([`link`]), serves the endpoints in [`routes`] to a
//! bounded number of HTTP connections, each held to deadlines ([`guard`]),
//! and keeps serving while the relay restarts, reporting it down until it
//! is back.
//!
//! Exit codes: 0 stopped by SIGINT or SIGTERM; 1 cannot serve (the address
//! is taken or not ours); 2 bad command line or environment.

mod config;
mod guard;
mod link;
mod metrics;
mod routes;

use std::process::ExitCode;
use std::time::Duration;

use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use futures::StreamExt;

use config::{Args, HealthConfig};
use guard::{Gate, Ticket};
use link::Link;

const EXIT_RUNTIME: u8 = 1;
use bsv_p2p_proto::cli::EXIT_USAGE;

fn main() -> ExitCode {
    let args: Args = match bsv_p2p_proto::cli::parse_args("bsv-p2p-health") {
        Ok(args) => args,
        Err(code) => return code,
    };
    if args.version {
        println!("bsv-p2p-health {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match HealthConfig::resolve(
        &args,
        |key| std::env::var(key).ok(),
        bsv_p2p_proto::process::open_file_limit(),
    ) {
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

async fn serve(config: HealthConfig) -> Result<(), String> {
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let (link, keeper) = Link::new(config.socket.clone(), config.timeout, config.max_age);
    task::spawn(keeper.run());
    log::info!(
        "serving http://{bound} for the relay at {} (readings up to {} ms old, up to {} connections)",
        config.socket.display(),
        config.max_age.as_millis(),
        config.limits.max_connections
    );
    if config.federation_quorum > 0 {
        log::info!(
            "/readyz requires {} federated relays connected (--federation-quorum)",
            config.federation_quorum
        );
    }
    let gate = Gate::new(config.limits);
    let app = routes::app(routes::Sidecar::new(
        link,
        gate.clone(),
        config.federation_quorum,
    ));
    let mut incoming = listener.incoming();
    while let Some(stream) = incoming.next().await {
        match stream {
            Ok(stream) => {
                let admission = gate.admit(stream.peer_addr().ok());
                // Without a ticket the stream is dropped: refused.
                if let Some(ticket) = admission.ticket {
                    task::spawn(connection(app.clone(), stream, ticket));
                }
                // The next connection waits in the kernel's backlog, not in
                // a descriptor, until the one closed to make room is gone.
                if let Some(evicted) = admission.evicted {
                    evicted.released().await;
                }
            }
            // Out of descriptors, which the cap should prevent: let connections close.
            Err(e) => {
                log::warn!("cannot accept an HTTP connection: {e}");
                task::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Err(format!("http://{bound} stopped accepting connections"))
}

/// One HTTP/1.1 connection, keep-alive, until the client closes it, a
/// deadline passes, or it is closed to make room.
async fn connection(app: tide::Server<routes::State>, stream: TcpStream, ticket: Ticket) {
    // A response is written in several pieces; without this, each waits for
    // the client's delayed ACK.
    let _ = stream.set_nodelay(true);
    let (local, peer) = (stream.local_addr().ok(), stream.peer_addr().ok());
    let exchange = ticket.exchange();
    let served = async_h1::accept(ticket.guard(stream), |mut req| async {
        exchange.answering();
        req.set_local_addr(local);
        req.set_peer_addr(peer);
        app.respond(req).await
    });
    if let Some(Err(e)) = ticket.watch(served).await {
        log::debug!("HTTP connection from {peer:?} ended: {e}");
    }
}
