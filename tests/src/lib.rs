//! Harness for the end-to-end tests and the benchmark: the real relay binary
//! as a fixture ([`relay::Relay`]), rust-libp2p client peers driven from tests
//! ([`client::Client`]), the byte probes pushed through circuits
//! ([`probes`]), and process resource readings ([`procfs`]).

pub mod client;
pub mod hop;
pub mod probes;
pub mod procfs;
pub mod relay;
pub mod scratch;

pub use client::{Client, ClientEvent, ClientOptions, Reservation};
pub use relay::{Relay, RelayOptions, Signal};
pub use scratch::ScratchDir;
