//! A WebSocket frame header is a claim, not a budget: a stranger who
//! completes the HTTP upgrade and announces a 256 MiB frame must not make
//! the relay allocate it. With `websocket.maxMessageSize` (128 KiB by
//! default) such a frame ends the connection; 128 attackers (the default
//! pending-handshake cap) cost the relay at most a few MiB.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bsv_p2p_tests::attack::{rss, ControlLine, MIB};
use bsv_p2p_tests::Relay;
use libp2p::multiaddr::Protocol;
use serde_json::json;

/// Sockets that attack at once: the default `maxPendingIncoming`.
const ATTACKERS: usize = 128;
/// What all of them together may add to the relay's memory: each may cost
/// up to one 128 KiB message buffer plus its connection's state.
const GROWTH_BOUND: u64 = 48 * MIB;

fn ws_port(relay: &Relay) -> u16 {
    relay
        .ws_addr()
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("the WebSocket address has a TCP port")
}

/// Completes the upgrade and sends a masked binary frame header announcing
/// 268,435,455 bytes, then 16 bytes of it.
fn attack(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the WebSocket port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        s.read_exact(&mut byte).expect("the upgrade response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "upgrade refused: {}",
        String::from_utf8_lossy(&head)
    );
    let mut frame = vec![0x82, 0xFF];
    frame.extend_from_slice(&268_435_455u64.to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[0u8; 16]);
    // The relay may already have closed the socket; that is the fix working.
    let _ = s.write_all(&frame);
    s
}

#[test]
fn announced_websocket_frames_do_not_allocate_before_authentication() {
    let relay = Relay::start(json!({}));
    let port = ws_port(&relay);
    let before = rss(relay.pid());
    let mut held = Vec::new();
    let mut peak = before;
    for i in 0..ATTACKERS {
        held.push(attack(port));
        // Checked as it goes, so that a relay without the bound fails at
        // the first few sockets instead of taking the machine's memory.
        std::thread::sleep(Duration::from_millis(5));
        peak = peak.max(rss(relay.pid()));
        assert!(
            peak - before < GROWTH_BOUND,
            "after {} attacking sockets the relay grew from {} to {} MiB",
            i + 1,
            before / MIB,
            peak / MIB
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    peak = peak.max(rss(relay.pid()));
    eprintln!(
        "websocket attack: {ATTACKERS} sockets announcing 256 MiB frames; relay RSS {:.1} -> peak {:.1} MiB",
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64
    );
    assert!(peak - before < GROWTH_BOUND);

    // Every oversized frame ended its connection.
    let mut closed = 0;
    for mut s in held {
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
    }
    assert_eq!(
        closed, ATTACKERS,
        "connections with an oversized frame stay open"
    );

    let mut control = ControlLine::connect(&relay.socket(), Duration::from_secs(5)).unwrap();
    let (status, _) = control.call("status", json!({})).unwrap();
    assert_eq!(status["result"]["peerId"], relay.peer_id().to_string());
}
