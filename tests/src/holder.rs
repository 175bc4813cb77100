//! Lean reservation holders for the benchmarks: peers that run nothing but
//! TCP, noise, yamux and one hop stream, so that what the relay spends on
//! them is what a reservation costs.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use libp2p::{Multiaddr, PeerId};

use crate::hop::{read_hop, reserve_msg, status_of, write_msg, Status, HOP};

/// How long a peer waits to connect, open the hop stream and get its answer.
const RESERVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A peer holding a reservation on the relay until [`Holder::release`].
pub struct Holder {
    stop: futures::channel::oneshot::Sender<()>,
    task: async_std::task::JoinHandle<()>,
}

impl Holder {
    /// A new peer dials `addr`, sends RESERVE on a hop stream and checks
    /// the answer says OK; it then keeps the connection open.
    pub async fn reserve(addr: Multiaddr, relay_peer: PeerId) -> Result<Holder, String> {
        use futures::channel::oneshot;
        use libp2p::identity::Keypair;
        use libp2p::swarm::SwarmEvent;

        let mut swarm = crate::swarm::tcp_swarm(
            Keypair::generate_ed25519(),
            |_| libp2p_stream::Behaviour::new(),
            Duration::from_secs(3600),
        )?;
        let mut control = swarm.behaviour().new_control();
        swarm.dial(addr).map_err(|e| e.to_string())?;
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = async_std::task::spawn(async move {
            let mut stop = stop_rx.fuse();
            loop {
                futures::select! {
                    e = swarm.select_next_some() => if let SwarmEvent::ConnectionClosed { .. } = e { return; },
                    _ = stop => return,
                }
            }
        });
        // Bounded: if the connection closes first, the swarm task ends and
        // the stream request would wait for good.
        let exchange = async {
            let mut stream = control
                .open_stream(relay_peer, HOP)
                .await
                .map_err(|e| e.to_string())?;
            write_msg(&mut stream, &reserve_msg().encode()).await?;
            let reply = read_hop(&mut stream).await?;
            if status_of(&reply) != Some(Status::Ok) {
                return Err(format!("reservation refused: {reply:?}"));
            }
            Ok::<_, String>(())
        };
        match async_std::future::timeout(RESERVE_TIMEOUT, exchange).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                let _ = stop.send(());
                return Err(format!("no reservation answer within {RESERVE_TIMEOUT:?}"));
            }
        }
        Ok(Holder { stop, task })
    }

    /// Closes the peer's connection (the relay drops the reservation).
    pub async fn release(self) {
        let _ = self.stop.send(());
        self.task.await;
    }
}

/// `count` peers reserve on the relay at `relay_addr` (ending in
/// `/p2p/<relay>`), at most 64 at a time.
pub async fn reserve_many(relay_addr: &Multiaddr, count: usize) -> Result<Vec<Holder>, String> {
    const IN_FLIGHT: usize = 64;
    let relay_peer = match relay_addr.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(p)) => p,
        _ => return Err("the relay address must end in /p2p/<id>".into()),
    };
    let mut holders = Vec::with_capacity(count);
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut next = 0;
    while holders.len() < count {
        while next < count && pending.len() < IN_FLIGHT {
            pending.push(Holder::reserve(relay_addr.clone(), relay_peer));
            next += 1;
        }
        match pending.next().await {
            Some(Ok(holder)) => holders.push(holder),
            Some(Err(e)) => return Err(format!("after {} reservations: {e}", holders.len())),
            None => break,
        }
    }
    Ok(holders)
}

/// Every holder leaves, all at once.
pub async fn release_all(holders: Vec<Holder>) {
    futures::future::join_all(holders.into_iter().map(Holder::release)).await;
}
