//! `bsv-p2p-relay`: the circuit relay v2 server of the BSV P2P bot network.
//!
//! This file turns the command line and config into a running relay and maps
//! every way of stopping to a documented exit code; the swarm and its event
//! loop live in the library (`relay.rs`).

use bsv_p2p_relay::{config, data_dir, identity, logging, relay};

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

/// Exit codes, documented in README.md.
const EXIT_RUNTIME: u8 = 1;
use bsv_p2p_proto::cli::EXIT_USAGE;

/// How long the last log lines get to reach the log reader at exit.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Circuit relay v2 server for the BSV P2P bot network.
#[derive(FromArgs)]
struct Args {
    /// config file (the operator guide's JSON format); without it the embedded default serves
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,
    /// data directory (identity key, control socket, journal); overrides "dataDir"
    #[argh(option)]
    data_dir: Option<PathBuf>,
    /// address to listen on, repeatable; replaces "listen"
    #[argh(option)]
    listen: Vec<String>,
    /// address bots should dial, repeatable; replaces "announce"
    #[argh(option)]
    announce: Vec<String>,
    /// log format: auto (pretty on a terminal, JSON otherwise), json or pretty
    #[argh(option)]
    log_format: Option<String>,
    /// log level: off, error, warn, info, debug or trace
    #[argh(option)]
    log_level: Option<String>,
    /// validate the configuration, print the relay's peer ID and exit
    #[argh(switch)]
    check: bool,
    /// print the embedded default configuration and exit
    #[argh(switch)]
    print_default_config: bool,
    /// print the version and exit
    #[argh(switch, short = 'V')]
    version: bool,
}

fn main() -> ExitCode {
    let args: Args = match bsv_p2p_proto::cli::parse_args("bsv-p2p-relay") {
        Ok(args) => args,
        Err(code) => return code,
    };

    if args.version {
        println!("bsv-p2p-relay {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if args.print_default_config {
        print!("{}", config::EMBEDDED_DEFAULT);
        return ExitCode::SUCCESS;
    }

    let overrides = config::Overrides {
        listen: args.listen,
        announce: args.announce,
        data_dir: args.data_dir,
        log_format: args.log_format,
        log_level: args.log_level,
    };
    let config = match config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    if args.check {
        match data_dir::prepare(&config.data_dir) {
            Ok(Some(warning)) => eprintln!("warning: {warning}"),
            Ok(None) => {}
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
        return match identity::load_or_create(&config.identity_file) {
            Ok((key, _)) => {
                println!(
                    "{}: configuration is valid; peer ID {}",
                    config.source,
                    key.public().to_peer_id()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        };
    }

    logging::init(&config.log_format, config.log_level, config.log_queue_lines);
    // Read once, when the runtime first starts (the block_on below);
    // nothing has touched it before this point.
    std::env::set_var(
        "ASYNC_STD_THREAD_COUNT",
        config.runtime_workers().to_string(),
    );
    // On the heap: moved by value through block_on's frames, the swarm
    // loop's future left about 330 KiB of the main thread's stack resident.
    let outcome = async_std::task::block_on(Box::pin(relay::run(config)));
    if let Err(e) = &outcome {
        log::error!(event = "relay_failed"; "{e}");
        eprintln!("error: {e}");
    }
    // Bounded: a log reader that stopped reading must not keep the relay
    // from exiting.
    logging::flush(LOG_FLUSH_TIMEOUT);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_RUNTIME),
    }
}
