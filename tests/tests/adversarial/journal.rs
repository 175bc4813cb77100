//! The journal's numbering across crashes: a subscriber resuming with
//! `fromSeq` must never be handed a number it already saw for another event,
//! whenever the relay was killed, and a journal that cannot be opened must
//! not keep the relay from starting.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::task::block_on;
use bsv_p2p_tests::attack::ControlLine;
use bsv_p2p_tests::hop::{RawOptions, RawPeer};
use bsv_p2p_tests::{Relay, RelayOptions, ScratchDir, Signal};
use rand::Rng;
use serde_json::{json, Value};

/// Peers that connect, reserve and leave in a loop: four events a round.
fn load(relay: &Relay, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let addr = relay.tcp_addr();
    let relay_peer = relay.peer_id();
    std::thread::spawn(move || {
        block_on(async {
            while !stop.load(Ordering::Relaxed) {
                let Ok(peer) = RawPeer::start(RawOptions { accept_stop: false }) else {
                    return;
                };
                if peer.connect(&addr).await.is_err() {
                    return;
                }
                let _ = peer.reserve(relay_peer).await;
                let _ = peer.disconnect(relay_peer).await;
            }
        })
    })
}

/// Subscribes from `from` and records every event until the connection
/// ends (the relay was killed) or `stop` is set.
fn follow(
    socket: std::path::PathBuf,
    from: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Value>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let Ok(mut c) = ControlLine::connect(&socket, Duration::from_millis(300)) else {
            return seen;
        };
        if c.call("subscribe", json!({ "fromSeq": from })).is_err() {
            return seen;
        }
        while !stop.load(Ordering::Relaxed) {
            match c.read() {
                Ok(line) if line["method"] == "event" => seen.push(line["params"].clone()),
                Ok(_) => {}
                Err(e) if e.contains("closed") => break,
                Err(_) => {}
            }
        }
        seen
    })
}

/// Records what each number meant; panics on a number given twice.
fn record(meanings: &mut BTreeMap<u64, Value>, event: Value) {
    if event["kind"] == "gap" {
        return;
    }
    let seq = event["seq"].as_u64().expect("seq");
    if let Some(earlier) = meanings.get(&seq) {
        assert_eq!(
            earlier, &event,
            "sequence number {seq} was handed out twice"
        );
    }
    meanings.insert(seq, event);
}

#[test]
fn sigkill_at_random_moments_never_reuses_a_sequence_number() {
    let mut rng = rand::thread_rng();
    let mut dir = Some(ScratchDir::new("journal-kill"));
    let mut meanings = BTreeMap::new();
    let mut next = 1;
    let mut gaps = 0;
    for round in 0..20 {
        let relay = Relay::start_with(RelayOptions::new(json!({})).dir(dir.take().unwrap()));
        let stop = Arc::new(AtomicBool::new(false));
        let follower = follow(relay.socket(), next, stop.clone());
        let loader = load(&relay, stop.clone());
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..1500)));
        let mut relay = relay;
        relay.stop(Signal::Kill, Duration::from_secs(5)).unwrap();
        stop.store(true, Ordering::Relaxed);
        let _ = loader.join();
        let seen = follower.join().unwrap();
        gaps += seen.iter().filter(|e| e["kind"] == "gap").count();
        for event in seen {
            let to = if event["kind"] == "gap" {
                event["to"].as_u64()
            } else {
                event["seq"].as_u64()
            };
            next = next.max(to.unwrap_or(0) + 1);
            record(&mut meanings, event);
        }
        eprintln!(
            "round {round}: {} events seen so far, resuming at {next}",
            meanings.len()
        );
        dir = Some(relay.into_dir());
    }
    assert!(
        meanings.len() > 200,
        "too little load: {} events",
        meanings.len()
    );

    // What the journal holds after all that agrees with what was seen live.
    let relay = Relay::start_with(RelayOptions::new(json!({})).dir(dir.take().unwrap()));
    let mut c = ControlLine::connect(&relay.socket(), Duration::from_secs(5)).unwrap();
    c.call("subscribe", json!({ "fromSeq": 1 })).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut held = 0;
    let live_next = relay.ctl(&["stats"])["events"]["lastSeq"].as_u64().unwrap();
    loop {
        let event = c.read().unwrap();
        if event["method"] != "event" {
            continue;
        }
        let event = event["params"].clone();
        let last = event["seq"].as_u64().unwrap_or(0);
        if event["kind"] != "gap" {
            held += 1;
            record(&mut meanings, event);
        }
        if last >= live_next || Instant::now() > deadline {
            break;
        }
    }
    eprintln!(
        "20 kills: {} distinct events seen live, {gaps} gaps reported on resume, {held} held by the journal, none numbered twice",
        meanings.len()
    );
}

#[test]
fn a_journal_that_cannot_be_opened_is_moved_aside_and_the_relay_starts() {
    let mut relay = Relay::start(json!({}));
    block_on(async {
        let peer = RawPeer::start(RawOptions { accept_stop: false }).unwrap();
        peer.connect(&relay.tcp_addr()).await.unwrap();
        peer.reserve_ok(relay.peer_id()).await.unwrap();
    });
    let before = relay.ctl(&["stats"])["events"]["lastSeq"].as_u64().unwrap();
    assert!(before > 0, "events before the damage");
    relay.stop(Signal::Term, Duration::from_secs(10)).unwrap();
    let dir = relay.into_dir();
    let journal = dir.join("data").join("journal");
    for entry in std::fs::read_dir(&journal).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::write(entry.path(), vec![0xA5; 4096]).unwrap();
        }
    }

    let relay = Relay::start_with(RelayOptions::new(json!({})).dir(dir));
    let moved = relay
        .wait_for_event("journal_moved_aside", |_| true, Duration::from_secs(5))
        .expect("an error line names the journal moved aside");
    assert_eq!(moved["level"], "error");
    let aside = moved["movedTo"].as_str().unwrap();
    assert!(
        std::path::Path::new(aside).is_dir(),
        "{aside} kept for inspection"
    );

    // A subscriber resuming where it was is told of the gap.
    let mut c = ControlLine::connect(&relay.socket(), Duration::from_secs(5)).unwrap();
    c.call("subscribe", json!({ "fromSeq": before })).unwrap();
    let first = c.read().unwrap();
    assert_eq!(first["params"]["kind"], "gap", "{first}");
    // New events number on past everything the lost journal held.
    block_on(async {
        let peer = RawPeer::start(RawOptions { accept_stop: false }).unwrap();
        peer.connect(&relay.tcp_addr()).await.unwrap();
        peer.reserve_ok(relay.peer_id()).await.unwrap();
    });
    let next = c.read().unwrap();
    assert_eq!(next["params"]["kind"], "connection_opened", "{next}");
    assert!(next["params"]["seq"].as_u64().unwrap() > before, "{next}");
}
