//! High availability: js-libp2p 3.x bots (`tests/js/bot.mjs`) that list
//! several relays, each relay the real binary in its own process with its
//! own data directory, all on loopback. A bot holds its reservation on one
//! relay (one `/p2p-circuit` listen address, one slot); when that relay is
//! killed, or hangs, the bot reserves on another it is connected to and is
//! reached through it; a relay restarted on its identity, data directory and
//! port takes a returning bot back at once, with no refusal.
//!
//! Each test prints its figures on stderr in one line starting `failover:`.
//! These tests fail (they are not skipped) when Node 22 or js-libp2p is
//! missing: `tests/js/install.sh` installs them.

use std::time::{Duration, Instant, SystemTime};

use bsv_p2p_tests::bot::event_time;
use bsv_p2p_tests::relay::field;
use bsv_p2p_tests::{Bot, BotOptions, Relay, RelayOptions, Signal};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde_json::{json, Value};

const MIB: u64 = 1024 * 1024;
/// Reservations, circuits and connections appear within this.
const T: Duration = Duration::from_secs(60);
/// A killed relay's sockets are closed by the kernel, so the bot sees its
/// connection end at once and reserves on a relay it is already connected
/// to: tens of milliseconds here. The bound leaves room for a busy two-core
/// machine (a stalled event loop, a slow identify) without hiding a bot that
/// waits for a timer.
const KILLED_BOUND: Duration = Duration::from_secs(5);
/// A hung relay (SIGSTOP: its sockets stay open, nothing answers) is left
/// when the connection monitor's ping fails: the next ping (every 10 s, the
/// daemon's interval) plus the ping's timeout (5 s at least), so at most
/// about 15 s, and 30 s with room for a busy machine.
const HUNG_BOUND: Duration = Duration::from_secs(30);
/// A returning bot that dials a restarted relay is reserved on it within this.
const RETURN_BOUND: Duration = Duration::from_secs(5);
/// libp2p redials a keep-alive peer 5 times, 1 s apart doubling (31 s in
/// all, plus each failed dial), then gives up on it.
const RECONNECT_WINDOW: Duration = Duration::from_secs(60);

/// The address that reaches `peer` through the relay at `relay`.
fn via(relay: &Multiaddr, peer: &str) -> String {
    format!("{relay}/p2p-circuit/p2p/{peer}")
}

fn is_peer(peer: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| field(e, "peerId") == peer
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// A relay with the embedded defaults, TCP only on loopback; `port` 0 picks
/// a free one.
fn relay_on(port: u16, dir: Option<bsv_p2p_tests::ScratchDir>) -> Relay {
    let mut options = RelayOptions::new(json!({ "mode": "relay" }));
    options.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}")];
    options.dir = dir;
    Relay::start_with(options)
}

fn tcp_port(addr: &Multiaddr) -> u16 {
    addr.iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP address")
}

/// Kills `relay` (SIGKILL: no goodbye, the kernel closes its sockets) and
/// starts it again on the same data directory (so the same identity) and
/// port; returns the new process and when it was listening again.
fn kill_and_restart(relay: Relay) -> (Relay, SystemTime) {
    let id = relay.peer_id();
    let port = tcp_port(&relay.tcp_addr());
    let dir = relay.into_dir();
    let restarted = relay_on(port, Some(dir));
    let listening = SystemTime::now();
    assert_eq!(
        restarted.peer_id(),
        id,
        "the restarted relay has a new peer id"
    );
    assert_eq!(
        tcp_port(&restarted.tcp_addr()),
        port,
        "the restarted relay moved"
    );
    (restarted, listening)
}

/// From `from` to when `event` happened by the bot's clock (0 if before).
fn after(from: SystemTime, event: &Value) -> Duration {
    let at = event_time(event).unwrap_or_else(|| panic!("no `at` in {event}"));
    at.duration_since(from).unwrap_or_default()
}

/// Echoes 1 MiB from `from` to `to` through `relay`; its round trip.
fn echo_through(from: &mut Bot, relay: &Relay, to: &Bot, seed: u64) -> Duration {
    let addr = via(&relay.tcp_addr(), to.peer_id());
    let started = Instant::now();
    let r = from.ok(
        json!({ "cmd": "echo", "addr": addr, "bytes": MIB, "seed": seed }),
        T,
    );
    assert_eq!(r["received"], json!(MIB), "{r}");
    started.elapsed()
}

/// A bot reserved on `relay` alone (the one that reaches the others).
fn bot_on(relay: &Relay) -> Bot {
    let bot = Bot::start(BotOptions::new(relay.tcp_addr()));
    bot.wait_relay_reserved(0, &relay.peer_id().to_string(), T)
        .unwrap_or_else(|e| panic!("no reservation on the relay: {e}"));
    bot
}

/// Asserts that `relay` refused `bot` nothing: no reservation or request
/// denied, no rate limit or ban on it or on its address.
fn refused_nothing(relay: &Relay, bot: &Bot) {
    for kind in [
        "reservation_denied",
        "request_denied",
        "rate_limited",
        "peer_banned",
    ] {
        let denied = relay.events_of(kind, is_peer(bot.peer_id()));
        assert!(denied.is_empty(), "the relay refused the bot: {denied:?}");
    }
    for kind in ["address_rate_limited", "address_banned"] {
        let denied = relay.events_of(kind, |_| true);
        assert!(denied.is_empty(), "the relay refused loopback: {denied:?}");
    }
}

/// Starts a bot listing every relay in `relays`, holding `slots`
/// reservations, and waits until it is connected to all of them and
/// reserved on `slots` of them; returns it with the relays it reserved on.
fn bot_on_all(relays: &[&Relay], slots: u32) -> (Bot, Vec<String>) {
    let mut options = BotOptions::relays(relays.iter().map(|r| r.tcp_addr()).collect());
    options.reservations = slots;
    let bot = Bot::start(options);
    for relay in relays {
        let id = relay.peer_id().to_string();
        bot.wait_for("relay_connected", |e| field(e, "peer") == id, T)
            .expect("the bot connects to every relay it lists");
    }
    let deadline = Instant::now() + T;
    while bot.reserved_relays().len() < slots as usize {
        assert!(
            Instant::now() < deadline,
            "the bot holds {:?}, not {slots} reservations: {:?}",
            bot.reserved_relays(),
            bot.events()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Time for a relay identified later to be offered the slot (and turned
    // down by the library: it has enough).
    std::thread::sleep(Duration::from_secs(2));
    let held = bot.reserved_relays();
    assert_eq!(held.len(), slots as usize, "{held:?}: {:?}", bot.events());
    for relay in relays {
        let id = relay.peer_id().to_string();
        let created = relay.events_of("reservation_created", is_peer(bot.peer_id()));
        assert_eq!(
            created.len(),
            usize::from(held.contains(&id)),
            "relay {id} logged {created:?}; the bot holds {held:?}"
        );
    }
    (bot, held)
}

/// Splits `relays` into the one whose peer id is `id` and the others.
fn pick(relays: Vec<Relay>, id: &str) -> (Relay, Vec<Relay>) {
    let (mut one, others): (Vec<Relay>, Vec<Relay>) = relays
        .into_iter()
        .partition(|r| r.peer_id().to_string() == id);
    (
        one.pop().expect("the bot reserved on one of its relays"),
        others,
    )
}

#[test]
fn a_bot_on_two_relays_moves_to_the_other_when_its_relay_is_killed_and_is_reached_there() {
    let relays = vec![relay_on(0, None), relay_on(0, None)];
    let (a, held) = bot_on_all(&relays.iter().collect::<Vec<_>>(), 1);
    // The library's default: one reservation (one `/p2p-circuit`), on the
    // relay identified first; the other is a connected spare.
    let (mut holder, mut others) = pick(relays, &held[0]);
    let spare = others.pop().expect("two relays");
    let spare_id = spare.peer_id().to_string();
    let holder_id = holder.peer_id().to_string();
    let mut b = bot_on(&spare);

    let mark = a.mark();
    let killed = SystemTime::now();
    holder
        .stop(Signal::Kill, Duration::from_secs(10))
        .expect("the relay dies");
    let lost = a
        .wait_for_after(
            mark,
            "relay_reservation_lost",
            |e| field(e, "relay") == holder_id,
            T,
        )
        .expect("the bot sees its reservation go");
    let moved = a
        .wait_relay_reserved(mark, &spare_id, T)
        .expect("the bot reserves on the other relay");
    let (lost_after, moved_after) = (after(killed, &lost), after(killed, &moved));
    spare
        .wait_for_event("reservation_created", is_peer(a.peer_id()), T)
        .expect("the other relay logs the reservation");
    refused_nothing(&spare, &a);

    // Reachable again: B, reserved on the survivor, reaches A through it.
    let echo = echo_through(&mut b, &spare, &a, 1);
    let reachable = killed.elapsed().unwrap_or_default();
    assert_eq!(a.reserved_relays(), vec![spare_id.clone()]);
    eprintln!(
        "failover: killed relay (SIGKILL): reservation lost after {} ms, reserved on the other \
         relay after {} ms (bound {} ms), 1 MiB echo through it {} ms, reached {} ms after the kill",
        ms(lost_after),
        ms(moved_after),
        ms(KILLED_BOUND),
        ms(echo),
        ms(reachable)
    );
    assert!(
        moved_after < KILLED_BOUND,
        "failover took {moved_after:?}: {:?}",
        a.events()
    );
    for bot in [a, b] {
        let status = bot.stop(Duration::from_secs(20)).expect("the bot stops");
        assert!(status.success(), "bot exit: {status}");
    }
}

#[test]
fn a_bot_whose_relay_hangs_moves_to_the_other_when_its_ping_fails() {
    let relays = vec![relay_on(0, None), relay_on(0, None)];
    let (a, held) = bot_on_all(&relays.iter().collect::<Vec<_>>(), 1);
    let (holder, mut others) = pick(relays, &held[0]);
    let spare = others.pop().expect("two relays");
    let spare_id = spare.peer_id().to_string();
    let mut b = bot_on(&spare);

    // SIGSTOP: the process is frozen, the kernel keeps its sockets open and
    // acknowledges what the bot sends, as a hung relay or a host gone
    // silent behind a NAT that still answers. Only the ping tells.
    let mark = a.mark();
    let pid = libc::pid_t::try_from(holder.pid()).expect("pid fits pid_t");
    let stopped = SystemTime::now();
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    let moved = a.wait_relay_reserved(mark, &spare_id, T);
    // SAFETY: as above; the relay is then killed on drop.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    let moved = moved.expect("the bot reserves on the other relay");
    let moved_after = after(stopped, &moved);
    let echo = echo_through(&mut b, &spare, &a, 2);
    eprintln!(
        "failover: hung relay (SIGSTOP, 10 s connection monitor): reserved on the other relay \
         after {} ms (bound {} ms), 1 MiB echo through it {} ms",
        ms(moved_after),
        ms(HUNG_BOUND),
        ms(echo)
    );
    assert!(moved_after < HUNG_BOUND, "failover took {moved_after:?}");
    drop(holder);
    for bot in [a, b] {
        let status = bot.stop(Duration::from_secs(20)).expect("the bot stops");
        assert!(status.success(), "bot exit: {status}");
    }
}

#[test]
fn a_killed_relay_restarted_on_its_identity_and_port_takes_the_bot_back_at_once() {
    let relays = vec![relay_on(0, None), relay_on(0, None)];
    let (a, held) = bot_on_all(&relays.iter().collect::<Vec<_>>(), 1);
    let (first, mut others) = pick(relays, &held[0]);
    let second = others.pop().expect("two relays");
    let (first_id, second_id) = (first.peer_id().to_string(), second.peer_id().to_string());

    // The first relay dies: the bot moves to the second.
    let mark = a.mark();
    let killed = SystemTime::now();
    let port = tcp_port(&first.tcp_addr());
    let dir = first.into_dir();
    let moved = a
        .wait_relay_reserved(mark, &second_id, T)
        .expect("the bot moves to the second relay");
    let moved_after = after(killed, &moved);
    // libp2p redials the lost relay (tagged keep-alive) for 31 s, then
    // gives up on it.
    let gave_up = a
        .wait_for_after(
            mark,
            "reconnect_failed",
            |e| field(e, "peer") == first_id,
            RECONNECT_WINDOW,
        )
        .expect("libp2p gives up redialling the relay");
    let gave_up_after = after(killed, &gave_up);

    // Back on its identity, data and port: the bot, reserved elsewhere,
    // does not dial it.
    let first = relay_on(port, Some(dir));
    assert_eq!(first.peer_id().to_string(), first_id, "a new identity");
    let quiet = Duration::from_secs(5);
    std::thread::sleep(quiet);
    let redialled = a.events()[mark..]
        .iter()
        .any(|e| e["event"] == "connection_open" && field(e, "peer") == first_id);
    assert!(!redialled, "libp2p redialled a relay it had given up on");

    // The second relay dies: the bot, needing a relay, finds the first in
    // its peer store, dials it and is accepted at once.
    let mark = a.mark();
    let killed_second = SystemTime::now();
    drop(second.into_dir());
    let returned = a
        .wait_relay_reserved(mark, &first_id, T)
        .expect("the bot goes back to the restarted relay");
    let returned_after = after(killed_second, &returned);
    first
        .wait_for_event("reservation_created", is_peer(a.peer_id()), T)
        .expect("the restarted relay logs the reservation");
    refused_nothing(&first, &a);
    let mut c = bot_on(&first);
    let echo = echo_through(&mut c, &first, &a, 3);
    eprintln!(
        "failover: restart on the same identity and port: moved to the second relay after {} ms, \
         libp2p gave up redialling the first after {} ms and did not dial it in {} ms after its \
         restart; second relay killed: back on the first after {} ms (bound {} ms), no refusal, \
         1 MiB echo through it {} ms",
        ms(moved_after),
        ms(gave_up_after),
        ms(quiet),
        ms(returned_after),
        ms(RETURN_BOUND),
        ms(echo)
    );
    assert!(moved_after < KILLED_BOUND, "failover took {moved_after:?}");
    assert!(
        returned_after < RETURN_BOUND,
        "the return took {returned_after:?}"
    );
    for bot in [a, c] {
        let status = bot.stop(Duration::from_secs(20)).expect("the bot stops");
        assert!(status.success(), "bot exit: {status}");
    }
}

#[test]
fn a_bot_with_two_slots_keeps_one_and_retakes_the_other_when_its_relay_returns() {
    let relays = vec![relay_on(0, None), relay_on(0, None)];
    let (mut a, held) = bot_on_all(&relays.iter().collect::<Vec<_>>(), 2);
    assert_eq!(held.len(), 2, "{held:?}");
    let mut relays = relays.into_iter();
    let (first, second) = (relays.next().expect("two"), relays.next().expect("two"));
    let (first_id, second_id) = (first.peer_id().to_string(), second.peer_id().to_string());
    let mut b = bot_on(&second);

    // The first relay dies: the reservation on the second stays, and the bot
    // is reachable through it all along.
    let mark = a.mark();
    let killed = SystemTime::now();
    let (first, listening) = kill_and_restart(first);
    a.wait_for_after(
        mark,
        "relay_reservation_lost",
        |e| field(e, "relay") == first_id,
        T,
    )
    .expect("the bot sees its reservation on the killed relay go");
    let echo = echo_through(&mut b, &second, &a, 4);
    // Restarted within libp2p's redial window: the bot comes back by
    // itself and, with a slot free, reserves there again.
    let retaken = a
        .wait_relay_reserved(mark, &first_id, RECONNECT_WINDOW)
        .expect("the bot reserves again on the restarted relay by itself");
    let retaken_after = after(listening, &retaken);
    refused_nothing(&first, &a);

    // Killed again and left down past the redial window: libp2p gives up
    // on it and does not dial it again when it is back.
    let mark = a.mark();
    let killed_again = SystemTime::now();
    let port = tcp_port(&first.tcp_addr());
    let dir = first.into_dir();
    let gave_up = a
        .wait_for_after(
            mark,
            "reconnect_failed",
            |e| field(e, "peer") == first_id,
            RECONNECT_WINDOW,
        )
        .expect("libp2p gives up redialling the relay");
    let gave_up_after = after(killed_again, &gave_up);
    let first = relay_on(port, Some(dir));
    let quiet = Duration::from_secs(5);
    std::thread::sleep(quiet);
    let redialled = a.events()[mark..]
        .iter()
        .any(|e| e["event"] == "connection_open" && field(e, "peer") == first_id);
    assert!(!redialled, "libp2p redialled a relay it had given up on");
    // A bot that dials it again (as the daemon does with its list) is
    // reserved at once.
    let dial_sent = SystemTime::now();
    a.ok(
        json!({ "cmd": "dial", "addr": first.tcp_addr().to_string(), "relay": true }),
        T,
    );
    let again = a
        .wait_relay_reserved(mark, &first_id, RETURN_BOUND + T)
        .expect("the dialled relay reserves");
    let again_after = after(dial_sent, &again);
    refused_nothing(&first, &a);
    assert_eq!(a.reserved_relays().len(), 2, "{:?}", a.events());
    assert!(
        !a.events()
            .iter()
            .any(|e| e["event"] == "relay_reservation_lost" && field(e, "relay") == second_id),
        "the reservation on the second relay was lost"
    );
    eprintln!(
        "failover: two slots: killed relay's reservation lost, the other kept (1 MiB echo through \
         it {} ms), restarted {} ms after the kill and retaken by the bot {} ms after that; killed \
         again, libp2p gave up redialling after {} ms, did not redial it in {} ms after its \
         restart, a dial reserved at once: {} ms (bound {} ms)",
        ms(echo),
        ms(listening.duration_since(killed).unwrap_or_default()),
        ms(retaken_after),
        ms(gave_up_after),
        ms(quiet),
        ms(again_after),
        ms(RETURN_BOUND)
    );
    assert!(
        again_after < RETURN_BOUND,
        "the return took {again_after:?}"
    );
    for bot in [a, b] {
        let status = bot.stop(Duration::from_secs(20)).expect("the bot stops");
        assert!(status.success(), "bot exit: {status}");
    }
}
