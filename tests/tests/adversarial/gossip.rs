//! What a gossipsub peer can do to the relay with messages it writes by
//! hand on a `/meshsub/1.1.0` stream (control messages a well-behaved router
//! never sends): nothing it names is kept beyond the topics the relay joined,
//! nothing it asks for brings the relay down.

use std::time::Duration;

use async_std::task::block_on;
use bsv_p2p_tests::attack::{rss, MIB};
use bsv_p2p_tests::swarm::tcp_swarm;
use bsv_p2p_tests::Relay;
use futures::{AsyncWriteExt, FutureExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::StreamProtocol;
use serde_json::json;

use super::memory::{
    field, framed, held_neither_during_nor_after, varint, wait_gone, within_ten_percent,
};

const MESHSUB: StreamProtocol = StreamProtocol::new("/meshsub/1.1.0");

/// One gossipsub RPC, framed, with only `control` (a ControlMessage).
fn control_rpc(control: &[u8]) -> Vec<u8> {
    let mut rpc = Vec::new();
    field(3, control, &mut rpc);
    framed(&rpc)
}

/// One gossipsub RPC, framed, whose control part GRAFTs each of `topics`.
fn graft_rpc(topics: impl Iterator<Item = String>) -> Vec<u8> {
    let mut control = Vec::new();
    for topic in topics {
        let mut graft = Vec::new();
        field(1, topic.as_bytes(), &mut graft);
        field(3, &graft, &mut control);
    }
    control_rpc(&control)
}

/// A peer that speaks gossipsub's wire format by hand and sends `rpcs`; the
/// relay's RSS while it is still connected, `settle` after the last.
async fn flood_rpcs(
    relay: &Relay,
    rpcs: impl Iterator<Item = Vec<u8>>,
    settle: Duration,
) -> (libp2p::PeerId, u64) {
    use futures::channel::oneshot;

    let mut swarm = tcp_swarm(
        Keypair::generate_ed25519(),
        |_| libp2p_stream::Behaviour::new(),
        Duration::from_secs(60),
    )
    .unwrap();
    let peer = *swarm.local_peer_id();
    let mut control = swarm.behaviour().new_control();
    // The relay announces its topics on a stream of its own once ours is
    // up; a peer refusing it would have the relay stop reading ours.
    let incoming = control.accept(MESHSUB).unwrap();
    async_std::task::spawn(bsv_p2p_tests::probes::serve_sink(incoming));
    swarm.dial(relay.tcp_addr()).unwrap();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = async_std::task::spawn(async move {
        let mut stop = stop_rx.fuse();
        loop {
            futures::select! {
                _ = swarm.select_next_some() => {}
                _ = stop => return,
            }
        }
    });
    let mut stream = control.open_stream(relay.peer_id(), MESHSUB).await.unwrap();
    for rpc in rpcs {
        // The relay reads as fast as it handles: a write that completes was
        // taken in (up to one stream window).
        stream.write_all(&rpc).await.unwrap();
    }
    stream.flush().await.unwrap();
    async_std::task::sleep(settle).await;
    let during = rss(relay.pid());
    drop(stream);
    let _ = stop.send(());
    task.await;
    (peer, during)
}

/// GRAFTs for `topics` topics nobody joined, names of 500 bytes, 100 to an
/// RPC.
async fn flood_grafts(relay: &Relay, topics: usize, seed: u32) -> (libp2p::PeerId, u64) {
    let rpcs = (0..topics / 100).map(move |batch| {
        graft_rpc((0..100).map(move |t| format!("/graft/{seed}/{batch}/{t}/{}", "x".repeat(480))))
    });
    flood_rpcs(relay, rpcs, Duration::from_secs(2)).await
}

#[test]
fn grafts_for_topics_nobody_joined_are_not_kept() {
    let relay = Relay::start(json!({}));
    let (warm, _) = block_on(flood_grafts(&relay, 5_000, 0));
    wait_gone(&relay, warm);
    let before = rss(relay.pid());
    // 64,000 topic names, 32 MB of them.
    let (attacker, during) = block_on(flood_grafts(&relay, 64_000, 1));
    held_neither_during_nor_after(
        &relay,
        "64,000 topic GRAFTs",
        (before, during),
        attacker,
        8 * MIB,
    );
}

/// One gossipsub RPC, framed, whose control part is one IDONTWANT for `ids`.
fn idontwant_rpc(ids: &[Vec<u8>]) -> Vec<u8> {
    let mut idontwant = Vec::new();
    for id in ids {
        field(1, id, &mut idontwant);
    }
    let mut control = Vec::new();
    field(5, &idontwant, &mut control);
    control_rpc(&control)
}

#[test]
fn idontwants_with_huge_message_ids_are_not_kept() {
    let relay = Relay::start(json!({}));
    let flood = |count: u32, seed: u8| {
        (0..count).map(move |i| {
            let mut id = vec![seed; 100_000];
            id[..4].copy_from_slice(&i.to_be_bytes());
            idontwant_rpc(&[id])
        })
    };
    let (warm, _) = block_on(flood_rpcs(&relay, flood(100, 0), Duration::ZERO));
    wait_gone(&relay, warm);
    let before = rss(relay.pid());
    // 1,000 message ids of 100 kB, 100 MB of them.
    let (attacker, during) = block_on(flood_rpcs(&relay, flood(1000, 1), Duration::ZERO));
    held_neither_during_nor_after(
        &relay,
        "100 MB of IDONTWANT ids",
        (before, during),
        attacker,
        16 * MIB,
    );
}

/// One gossipsub RPC, framed, whose control part PRUNEs each of `topics`
/// asking for a backoff of `backoff` seconds.
fn prune_rpc(topics: impl Iterator<Item = String>, backoff: u64) -> Vec<u8> {
    let mut control = Vec::new();
    for topic in topics {
        let mut prune = Vec::new();
        field(1, topic.as_bytes(), &mut prune);
        varint(3 << 3, &mut prune);
        varint(backoff, &mut prune);
        field(4, &prune, &mut control);
    }
    control_rpc(&control)
}

#[test]
fn a_prune_asking_for_an_endless_backoff_is_survived() {
    let relay = Relay::start(json!({}));
    let topics = [
        "/openclaw/announce/1.0.0".to_string(),
        "/not/joined".to_string(),
    ];
    let (attacker, _) = block_on(flood_rpcs(
        &relay,
        std::iter::once(prune_rpc(topics.into_iter(), u64::MAX)),
        Duration::from_secs(1),
    ));
    wait_gone(&relay, attacker);
    let status = relay.ctl(&["status"]);
    assert!(status["peerId"].is_string(), "{status}");
}

#[test]
fn prunes_for_topics_nobody_joined_leave_nothing_behind() {
    let relay = Relay::start(json!({}));
    // 100 topics to an RPC, each PRUNE asking for a backoff of 50 minutes.
    let flood = |topics: usize, seed: u32| {
        (0..topics / 100).map(move |batch| {
            prune_rpc(
                (0..100).map(move |t| format!("/prune/{seed}/{batch}/{t}/{}", "x".repeat(480))),
                3000,
            )
        })
    };
    let (warm, _) = block_on(flood_rpcs(&relay, flood(5_000, 0), Duration::from_secs(1)));
    wait_gone(&relay, warm);
    let before = rss(relay.pid());
    let (attacker, _) = block_on(flood_rpcs(&relay, flood(64_000, 1), Duration::from_secs(2)));
    wait_gone(&relay, attacker);
    within_ten_percent("64,000 topic PRUNEs", before, rss(relay.pid()));
}
