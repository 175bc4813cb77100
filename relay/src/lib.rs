//! The relay as a library, so that the binary `bsv-p2p-relay` stays a thin
//! shell over it. Public are only the modules something outside the crate
//! uses:
//!
//! - `config`, `data_dir`, `identity`, `logging` and `relay`: `main.rs`
//!   reads the command line and config, opens the data directory, loads the
//!   key, sets up logging and runs the relay with them;
//! - `config` also for `tests/properties.rs`, which feeds the config parser
//!   generated documents.
//!
//! The rest is the relay's inside. The circuit relay v2 wire format the
//! operator tool and the end-to-end tests speak is its own crate,
//! `bsv-p2p-wire`.

pub mod access;
mod admission;
mod autonat;
mod behaviour;
mod buckets;
pub mod config;
mod control;
pub mod data_dir;
pub(crate) mod federation;
pub(crate) mod hop;
pub mod identity;
mod journal;
mod ledger;
mod limits;
pub mod logging;
mod ping;
pub mod relay;
mod snapshot;
mod worker;
