//! Steps several tests share: the relay log filters and a circuit between
//! two rust-libp2p clients.

use std::time::Duration;

use libp2p::PeerId;
use serde_json::Value;

use crate::client::ClientEvent;
use crate::relay::field;
use crate::{Client, Relay};

/// Bound on the relay logging what a test just caused.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Relay log lines about `peer`.
pub fn is_peer(peer: PeerId) -> impl Fn(&Value) -> bool {
    move |e| field(e, "peerId") == peer.to_string()
}

/// Relay log lines about the circuit from `src` to `dst`.
pub fn is_circuit(src: PeerId, dst: PeerId) -> impl Fn(&Value) -> bool {
    move |e| field(e, "src") == src.to_string() && field(e, "dst") == dst.to_string()
}

/// `a` reserves on the relay, `b` connects to the relay over `via` and dials
/// `a` through it; returns once both ends see the circuit.
pub async fn circuit(relay: &Relay, via: &libp2p::Multiaddr, a: &Client, b: &Client) {
    a.reserve(&relay.tcp_addr()).await.expect("a reserves");
    b.connect(via).await.expect("b connects to the relay");
    let from = a.seq().await.unwrap();
    b.dial_via(via, a.peer_id())
        .await
        .expect("b dials a through the relay");
    let src = b.peer_id();
    a.wait_event(
        from,
        EVENT_TIMEOUT,
        move |e| matches!(e, ClientEvent::InboundCircuit { src: s, .. } if *s == src),
    )
    .await
    .expect("a accepts the circuit from b");
    // The circuit is reported before the connection over it is upgraded.
    a.wait_event(from, EVENT_TIMEOUT, move |e| {
        matches!(e, ClientEvent::ConnectionEstablished { peer, relayed: true, .. } if *peer == src)
    })
    .await
    .expect("a holds a relayed connection from b");
    relay
        .wait_for_event(
            "circuit_opened",
            is_circuit(b.peer_id(), a.peer_id()),
            EVENT_TIMEOUT,
        )
        .expect("the relay logs circuit_opened");
}
