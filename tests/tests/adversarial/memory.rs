//! Memory a peer can make the relay keep: every per-peer structure has a
//! bound, and what a peer made the relay hold is gone once it leaves. Each
//! attack runs once to warm the allocator, then again in earnest; the relay's
//! resident memory after the attacker left must be within 10% of before.

use std::time::Duration;

use async_std::task::block_on;
use bsv_p2p_tests::attack::{rss, MIB};
use bsv_p2p_tests::hop::{self, RawOptions, RawPeer, Status};
use bsv_p2p_tests::swarm::tcp_swarm;
use bsv_p2p_tests::{Client, ClientOptions, Relay};
use futures::{AsyncWriteExt, FutureExt, StreamExt};
use libp2p::identity::Keypair;
use libp2p::{gossipsub, StreamProtocol};
use serde_json::{json, Value};

const IDENTIFY_PUSH: StreamProtocol = StreamProtocol::new("/ipfs/id/push/1.0.0");

/// Streams opened at once by an attacker.
const IN_FLIGHT: usize = 32;

pub(super) fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A protobuf length-delimited field.
pub(super) fn field(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(number << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A message behind its unsigned-varint length, as identify frames it.
pub(super) fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(msg.len() as u64, &mut out);
    out.extend_from_slice(msg);
    out
}

/// An identify push carrying only an observed address (field 4) that is
/// new each time: loopback addresses that differ in host and port.
fn identify_push(i: u32) -> Vec<u8> {
    let addr: libp2p::Multiaddr = format!(
        "/ip4/127.{}.{}.{}/tcp/{}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff,
        1024 + i % 60000
    )
    .parse()
    .unwrap();
    let mut msg = Vec::new();
    field(4, &addr.to_vec(), &mut msg);
    framed(&msg)
}

pub(super) fn within_ten_percent(what: &str, before: u64, after: u64) {
    eprintln!(
        "{what}: relay RSS {:.2} MiB before, {:.2} MiB after the attacker left",
        before as f64 / MIB as f64,
        after as f64 / MIB as f64
    );
    assert!(
        after <= before + before / 10,
        "{what}: RSS grew from {before} to {after} bytes and stayed"
    );
}

/// Waits until the relay has let go of the attacker's connection.
pub(super) fn wait_gone(relay: &Relay, peer: libp2p::PeerId) {
    for _ in 0..100 {
        let peers = relay.ctl(&["peers"]);
        let listed = peers["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["peerId"] == peer.to_string()));
        if !listed {
            std::thread::sleep(Duration::from_millis(300));
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the relay still lists {peer}");
}

async fn push_identify(relay: &Relay, from: u32, count: u32) -> libp2p::PeerId {
    let client = Client::start(ClientOptions::default()).await.unwrap();
    let relay_peer = client.connect(&relay.tcp_addr()).await.unwrap();
    let mut delivered = 0u32;
    // In chunks, reconnecting if the relay dropped the connection (on two
    // busy cores a ping may go unanswered): the attack is the pushes.
    for chunk in (from..from + count).step_by(1000) {
        if !client.is_connected(relay_peer).await.unwrap() {
            client.connect(&relay.tcp_addr()).await.unwrap();
        }
        // The relay merges a push into what identify told it first.
        async_std::task::sleep(Duration::from_millis(100)).await;
        delivered += futures::stream::iter(chunk..(chunk + 1000).min(from + count))
            .map(|i| {
                let client = &client;
                async move {
                    let mut s = client.open_stream(relay_peer, IDENTIFY_PUSH).await.ok()?;
                    s.write_all(&identify_push(i)).await.ok()?;
                    s.close().await.ok()
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .filter_map(|pushed| async move { pushed })
            .count()
            .await as u32;
    }
    assert!(
        delivered >= count - count / 10,
        "only {delivered} of {count} identify pushes went through"
    );
    let peer = client.peer_id();
    client.disconnect(relay_peer);
    peer
}

#[test]
fn identify_pushes_with_new_observed_addresses_leave_nothing_behind() {
    let relay = Relay::start(json!({}));
    let warm = block_on(push_identify(&relay, 0, 5_000));
    wait_gone(&relay, warm);
    let before = rss(relay.pid());
    let attacker = block_on(push_identify(&relay, 5_000, 50_000));
    wait_gone(&relay, attacker);
    within_ten_percent("50,000 identify pushes", before, rss(relay.pid()));
}

async fn renew(relay: &Relay, times: usize) -> libp2p::PeerId {
    let peer = RawPeer::start(RawOptions { accept_stop: false }).unwrap();
    peer.connect(&relay.tcp_addr()).await.unwrap();
    let relay_peer = relay.peer_id();
    futures::stream::iter(0..times)
        .for_each_concurrent(IN_FLIGHT, |_| {
            let peer = &peer;
            async move {
                peer.reserve_ok(relay_peer).await.unwrap();
            }
        })
        .await;
    let id = peer.peer_id();
    peer.disconnect(relay_peer).await.unwrap();
    id
}

#[test]
fn a_renewal_loop_keeps_one_reservation_and_nothing_more() {
    // The request rate is not what this test attacks: lift it. Each renewal
    // is also an event: a small journal keeps its storage engine's page
    // cache (bounded on its own, at 8 MiB) out of the figure.
    let relay = Relay::start(json!({
        "relay": { "requests": { "perSecond": 100000, "burst": 100000 } },
        "journal": { "maxEvents": 1000, "maxBytes": 1048576 }
    }));
    let warm = block_on(renew(&relay, 5_000));
    wait_gone(&relay, warm);
    let before = rss(relay.pid());
    let attacker = block_on(renew(&relay, 50_000));
    wait_gone(&relay, attacker);
    let stats = relay.ctl(&["stats"]);
    assert_eq!(stats["reservations"]["active"], 0, "{stats}");
    assert!(stats["reservations"]["renewed"].as_u64().unwrap() >= 54_000);
    within_ten_percent("50,000 renewals", before, rss(relay.pid()));
}

#[test]
fn requests_faster_than_the_rate_are_refused_with_resource_limit_exceeded() {
    let relay = Relay::start(json!({
        "relay": { "requests": { "perSecond": 5, "burst": 10 } }
    }));
    let statuses: Vec<Option<Status>> = block_on(async {
        let peer = RawPeer::start(RawOptions { accept_stop: false }).unwrap();
        peer.connect(&relay.tcp_addr()).await.unwrap();
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(hop::status_of(
                &peer.reserve(relay.peer_id()).await.unwrap(),
            ));
        }
        // The allowance refills: a patient peer is served again.
        async_std::task::sleep(Duration::from_millis(1200)).await;
        out.push(hop::status_of(
            &peer.reserve(relay.peer_id()).await.unwrap(),
        ));
        out
    });
    let ok = statuses.iter().filter(|s| **s == Some(Status::Ok)).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == Some(Status::ResourceLimitExceeded))
        .count();
    eprintln!("40 quick reservations at 5/s, burst 10: {ok} accepted, {limited} refused");
    assert!((10..=14).contains(&ok.saturating_sub(1)), "{statuses:?}");
    assert_eq!(ok + limited, statuses.len(), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&Some(Status::Ok)));
    let stats: Value = relay.ctl(&["stats"]);
    let counted = stats["reservations"]["denied"]["rate_limited"].as_u64();
    assert_eq!(counted, Some(limited as u64), "{stats}");
}

/// Runs `swarm` for `for_ms` milliseconds.
async fn drive(swarm: &mut libp2p::Swarm<gossipsub::Behaviour>, for_ms: u64) {
    let deadline = async_std::task::sleep(Duration::from_millis(for_ms)).fuse();
    futures::pin_mut!(deadline);
    loop {
        futures::select! {
            _ = swarm.select_next_some() => {}
            _ = deadline => return,
        }
    }
}

/// A gossipsub peer that subscribes to `topics` topics no bot uses, names of
/// 500 bytes, sent as its router sends them; the relay's RSS while it is
/// still connected.
async fn flood_topics(relay: &Relay, topics: usize, seed: u32) -> (libp2p::PeerId, u64) {
    let mut swarm = tcp_swarm(
        Keypair::generate_ed25519(),
        |key| {
            gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::ConfigBuilder::default()
                    .max_transmit_size(4 << 20)
                    .build()
                    .unwrap(),
            )
            .unwrap()
        },
        Duration::from_secs(60),
    )
    .unwrap();
    let peer = *swarm.local_peer_id();
    swarm.dial(relay.tcp_addr()).unwrap();
    while !swarm.is_connected(&relay.peer_id()) {
        drive(&mut swarm, 50).await;
    }
    // A batch at a time, so the router's own send queue never overflows.
    for batch in 0..topics / 500 {
        for t in 0..500 {
            let name = format!("/flood/{seed}/{batch}/{t}/{}", "x".repeat(480));
            swarm
                .behaviour_mut()
                .subscribe(&gossipsub::IdentTopic::new(name))
                .unwrap();
        }
        drive(&mut swarm, 20).await;
    }
    drive(&mut swarm, 1000).await;
    let during = rss(relay.pid());
    drop(swarm);
    (peer, during)
}

#[test]
fn subscriptions_to_unconfigured_topics_are_not_kept() {
    let relay = Relay::start(json!({}));
    let (warm, _) = block_on(flood_topics(&relay, 5_000, 0));
    wait_gone(&relay, warm);
    let before = rss(relay.pid());
    // 64,000 topic names, 32 MB of them.
    let (attacker, during) = block_on(flood_topics(&relay, 64_000, 1));
    held_neither_during_nor_after(
        &relay,
        "64,000 topic subscriptions",
        (before, during),
        attacker,
        8 * MIB,
    );
}

/// What an attacker made the relay hold: RSS `during` its attack less than
/// `slack` over `before`, and within 10% of it once the attacker has left.
pub(super) fn held_neither_during_nor_after(
    relay: &Relay,
    what: &str,
    (before, during): (u64, u64),
    attacker: libp2p::PeerId,
    slack: u64,
) {
    eprintln!(
        "{what}: relay RSS {:.2} MiB before, {:.2} MiB while the attacker is connected",
        before as f64 / MIB as f64,
        during as f64 / MIB as f64
    );
    assert!(
        during < before + slack,
        "{what}: the relay holds them, RSS {before} -> {during} bytes"
    );
    wait_gone(relay, attacker);
    within_ten_percent(what, before, rss(relay.pid()));
}
