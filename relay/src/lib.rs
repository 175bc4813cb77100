//! The relay as a library: the binary `bsv-p2p-relay` is a thin shell over
//! it, and the end-to-end tests use its wire types to speak the hop protocol
//! byte for byte.

pub mod autonat;
pub mod behaviour;
pub mod config;
pub mod control;
pub mod data_dir;
pub mod hop;
pub mod identity;
pub mod journal;
pub mod ledger;
pub mod logging;
pub mod ping;
pub mod relay;
pub mod snapshot;
