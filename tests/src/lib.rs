//! Harness for the end-to-end tests and the benchmark: the real relay binary
//! as a fixture ([`relay::Relay`]), rust-libp2p client peers driven from tests
//! ([`client::Client`]), the byte probes pushed through circuits
//! ([`probes`]), the health sidecar ([`health::Health`]) and process resource
//! readings ([`procfs`], proto's one `/proc` reader).

pub mod attack;
pub mod backup;
pub mod bot;
pub mod child;
pub mod client;
pub mod ctl;
pub mod fleet;
pub mod health;
pub mod holder;
pub mod hop;
pub mod jsonlog;
pub mod logship;
pub mod natlab;
pub mod otlp;
pub mod probes;
pub use bsv_p2p_proto::process as procfs;
pub mod prometheus;
pub mod relay;
pub mod report;
pub mod s3;
pub mod scenario;
pub mod scratch;
pub mod sqlite_writer;
pub mod sshd;
pub mod swarm;
pub mod syslog;

pub use bot::{Bot, BotOptions};
pub use client::{Client, ClientEvent, ClientOptions, Reservation};
pub use relay::{Relay, RelayOptions, Signal};
pub use scratch::ScratchDir;
