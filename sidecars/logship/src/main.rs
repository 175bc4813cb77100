//! `bsv-p2p-logship`: the relay's events, shipped at least once to any of
//! standard output (JSON lines), OTLP/HTTP logs and traces, and syslog.
//!
//! It reads the relay only through the control socket's resumable event
//! stream ([`ingest`]), keeps every event in an on-disk buffer with one
//! cursor per destination ([`store`]), and runs one [`shipper`] per
//! destination, so a slow or dead destination holds back nobody else and
//! never the relay. Destinations are in [`sink`], one file each.
//!
//! Its own messages go to standard error, so that standard output carries
//! only events. Exit codes: 0 stopped by SIGINT or SIGTERM; 1 cannot run
//! (the state directory or the metrics address is unusable); 2 bad command
//! line or environment.

mod config;
mod ingest;
mod metrics;
mod record;
mod shipper;
mod sink;
mod store;
mod tracker;

use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use async_std::channel;
use async_std::task;
use bsv_p2p_proto::cli::EXIT_USAGE;

use config::{Args, LogshipConfig};
use ingest::{Ingest, IngestFigures};
use shipper::{Figures, Shipper};
use sink::Relay;
use store::Store;

const EXIT_RUNTIME: u8 = 1;

/// The sidecar's own log lines, on standard error.
static LOG: bsv_p2p_proto::cli::StderrLog = bsv_p2p_proto::cli::StderrLog {
    target: "bsv_p2p_logship",
};

fn main() -> ExitCode {
    let args: Args = match bsv_p2p_proto::cli::parse_args("bsv-p2p-logship") {
        Ok(args) => args,
        Err(code) => return code,
    };
    if args.version {
        println!("bsv-p2p-logship {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match LogshipConfig::resolve(&args, &|key| std::env::var(key).ok()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bsv-p2p-logship: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    bsv_p2p_proto::cli::log_to_stderr(&LOG, config.log_level);
    match task::block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bsv-p2p-logship: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn run(config: LogshipConfig) -> Result<(), String> {
    let dir = config.state_dir.clone();
    let store = Arc::new(task::spawn_blocking(move || Store::open(&dir)).await?);
    let (stop_tx, stop_rx) = channel::bounded::<()>(1);
    ctrlc::set_handler(move || {
        let _ = stop_tx.try_send(());
    })
    .map_err(|e| format!("cannot handle SIGINT/SIGTERM: {e}"))?;

    let known = {
        let store = store.clone();
        task::spawn_blocking(move || store.relay_identity())
            .await
            .map_err(|e| format!("cannot read the buffer: {e}"))?
    };
    let relay = Arc::new(RwLock::new(
        known.map(|(peer_id, version)| Relay { peer_id, version }),
    ));
    let (next_index, first_index) = {
        let store = store.clone();
        task::spawn_blocking(move || {
            Ok::<_, sled::Error>((store.next_index()?, store.first_index()?))
        })
        .await
        .map_err(|e| format!("cannot read the buffer: {e}"))?
    };

    let mut wakers = Vec::new();
    let mut all_figures = Vec::new();
    for settings in &config.destinations {
        let name = settings.name();
        let stored = {
            let (store, name) = (store.clone(), name.clone());
            task::spawn_blocking(move || store.cursor(&name))
                .await
                .map_err(|e| format!("cannot read the buffer: {e}"))?
        };
        // A destination new to this buffer starts with what it still holds.
        let (cursor, last_seq) = stored.unwrap_or((first_index, 0));
        let figures = Arc::new(Figures::new(name.clone(), cursor.max(first_index)));
        figures
            .last_seq
            .store(last_seq, std::sync::atomic::Ordering::Relaxed);
        let sink = settings
            .build(relay.clone())
            .map_err(|e| format!("{name}: {e}"))?;
        let (wake, woken) = channel::bounded(1);
        task::spawn(
            Shipper {
                sink,
                store: store.clone(),
                figures: figures.clone(),
                batch: settings.batch(),
                wake: woken,
            }
            .run(),
        );
        log::info!("shipping to {name}");
        wakers.push((figures.clone(), wake));
        all_figures.push(figures);
    }

    let ingest_figures = Arc::new(IngestFigures::default());
    ingest_figures
        .next_index
        .store(next_index, std::sync::atomic::Ordering::Relaxed);
    if let Some(bind) = config.metrics_bind {
        let state = metrics::State {
            ingest: ingest_figures.clone(),
            destinations: all_figures,
            store: store.clone(),
            max_records: config.max_records,
        };
        // Bound before anything is read, so a taken address stops the start.
        let listener = async_std::net::TcpListener::bind(bind)
            .await
            .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
        task::spawn(async move {
            if let Err(e) = metrics::serve(listener, state).await {
                log::error!("{e}");
            }
        });
    }
    task::spawn(
        Ingest {
            socket: config.socket.clone(),
            store: store.clone(),
            relay,
            destinations: wakers,
            figures: ingest_figures,
            max_records: config.max_records,
            start: config.start,
            timeout: config.timeout,
        }
        .run(),
    );

    let _ = stop_rx.recv().await;
    log::info!("stopping");
    let _ = task::spawn_blocking(move || store.flush()).await;
    Ok(())
}
