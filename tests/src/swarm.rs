//! The one libp2p stack the tests' own peers dial the relay with: TCP
//! (without Nagle's delay), noise and yamux on async-std.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Swarm, SwarmBuilder};

/// Puts TCP, noise and yamux on a fresh `SwarmBuilder` (after
/// `with_new_identity` or `with_existing_identity`); a transport error as
/// `"tcp transport: …"`. A macro, as the builder's later phases cannot be
/// named in a function's signature: the client adds more transports after it.
#[macro_export]
macro_rules! with_tcp_noise_yamux {
    ($builder:expr) => {
        $builder
            .with_async_std()
            .with_tcp(
                ::libp2p::tcp::Config::default().nodelay(true),
                ::libp2p::noise::Config::new,
                ::libp2p::yamux::Config::default,
            )
            .map_err(|e| format!("tcp transport: {e}"))
    };
}

/// A swarm with `key`'s identity on TCP, noise and yamux, running the
/// behaviour `behaviour` builds; connections idle up to `idle` are kept.
pub fn tcp_swarm<B: NetworkBehaviour>(
    key: Keypair,
    behaviour: impl FnOnce(&Keypair) -> B,
    idle: Duration,
) -> Result<Swarm<B>, String> {
    Ok(
        with_tcp_noise_yamux!(SwarmBuilder::with_existing_identity(key))?
            .with_behaviour(behaviour)
            .map_err(|e| format!("behaviour: {e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    )
}
