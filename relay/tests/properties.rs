//! Property tests of the relay's two parsers of outside input: the circuit
//! relay v2 hop/stop messages, which any peer on the internet can send, and
//! the config file, which an operator writes by hand. Generated inputs reach
//! the corners that hand-picked examples miss (ten-byte varints, prefixes
//! cut mid-field, deep config keys holding the wrong type).
//!
//! Each property runs a few hundred cases by default so that `cargo test`
//! stays quick; `PROPTEST_CASES=1000000` runs any number of them (README.md,
//! "Tests").

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll};

use bsv_p2p_relay::config::{self, ConfigError, Overrides, RelayConfig};
use bsv_p2p_relay::hop::proto::{
    decode_voucher, encode_voucher, read_frame, write_frame, HopMessage, Limit, Peer, ReadError,
    Reservation, StopMessage, MAX_MESSAGE,
};
use futures::executor::block_on;
use futures::io::{AsyncRead, Cursor};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Map, Value};

/// `cases` unless PROPTEST_CASES asks for another number, so that a long
/// run needs no code change. Failures are not written to files: a failure
/// found worth keeping becomes a named test.
fn cases(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

// --- Allocation accounting -------------------------------------------------

/// Counts what this thread allocates, so that a property can bound the
/// memory a hostile message costs and not only check that it is refused.
struct Counting;

thread_local! {
    /// (largest single allocation, bytes allocated in total) on this thread.
    static ALLOCATED: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

fn note(size: usize) {
    // try_with: the allocator also runs while a thread's locals are torn down.
    let _ = ALLOCATED.try_with(|a| {
        let (largest, total) = a.get();
        a.set((largest.max(size), total.saturating_add(size)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns what it allocated: (largest single block, total).
fn allocations<T>(f: impl FnOnce() -> T) -> (T, (usize, usize)) {
    ALLOCATED.with(|a| a.set((0, 0)));
    let out = f();
    (out, ALLOCATED.with(Cell::get))
}

// --- Varints, the reference the decoder is held to -------------------------

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

/// `v` in exactly `len` bytes (at most 10): the minimal encoding padded with
/// continuation bytes of zeros, which protobuf readers must accept.
fn overlong_varint(v: u64, len: usize) -> Vec<u8> {
    let mut out = varint(v);
    if out.len() >= len {
        return out;
    }
    let last = out.len() - 1;
    out[last] |= 0x80;
    out.resize(len, 0x80);
    out[len - 1] = 0;
    out
}

/// A varint read the slow way, in 128 bits so that overflow shows:
/// None when the input ends first, Some(Err) when it runs past ten bytes.
fn reference_varint(bytes: &[u8]) -> Option<Result<(u128, usize), ()>> {
    let mut v: u128 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if i == 10 {
            return Some(Err(()));
        }
        v |= u128::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(Ok((v, i + 1)));
        }
    }
    if bytes.len() >= 10 {
        Some(Err(()))
    } else {
        None
    }
}

// --- Frames -----------------------------------------------------------------

/// Bytes with the shapes a frame reader must survive: random, a length
/// prefix (minimal, overlong, overflowing or unterminated) before a body
/// that may be short, exact or followed by more.
fn wire() -> impl Strategy<Value = Vec<u8>> {
    let prefix = prop_oneof![
        (0..=MAX_MESSAGE as u64 + 2).prop_map(varint),
        any::<u64>().prop_map(varint),
        ((0..=MAX_MESSAGE as u64), 1..=10usize).prop_map(|(v, n)| {
            let min = varint(v).len();
            overlong_varint(v, n.max(min))
        }),
        // Ten bytes whose last holds bits past 63.
        (any::<[u8; 9]>(), 2u8..=0x7f).prop_map(|(head, last)| {
            let mut b: Vec<u8> = head.iter().map(|x| x | 0x80).collect();
            b.push(last);
            b
        }),
        proptest::collection::vec(0x80u8..=0xff, 0..=12),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            prefix,
            proptest::collection::vec(any::<u8>(), 0..=MAX_MESSAGE + 16)
        )
            .prop_map(|(mut p, body)| {
                p.extend(body);
                p
            }),
    ]
}

/// A stream that hands out at most `chunk` bytes per read, the way a
/// network delivers a message in pieces.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.chunk).min(self.data.len() - self.pos);
        let start = self.pos;
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Whatever arrives, read_frame returns exactly the frame the prefix
    /// announces, refuses what is over the limit or not a 64-bit varint, and
    /// never allocates more than one frame's worth for it.
    #[test]
    fn read_frame_takes_exactly_the_announced_frame(bytes in wire(), chunk in 1usize..64) {
        let mut stream = Trickle { data: bytes.clone(), pos: 0, chunk };
        let (got, (largest, _)) = allocations(|| block_on(read_frame(&mut stream)));
        prop_assert!(largest <= MAX_MESSAGE, "allocated {largest} bytes at once");
        match (reference_varint(&bytes), got) {
            (None, Err(ReadError::Io(e))) => {
                prop_assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof)
            }
            (Some(Err(())), Err(ReadError::Malformed(_))) => {}
            (Some(Ok((len, _))), Err(ReadError::Malformed(_))) => {
                prop_assert!(len > MAX_MESSAGE as u128, "refused a {len}-byte frame")
            }
            (Some(Ok((len, used))), Err(ReadError::Io(e))) => {
                prop_assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
                prop_assert!(len <= MAX_MESSAGE as u128);
                prop_assert!(bytes.len() < used + len as usize);
            }
            (Some(Ok((len, used))), Ok(frame)) => {
                prop_assert_eq!(frame.len() as u128, len);
                prop_assert_eq!(&frame[..], &bytes[used..used + frame.len()]);
                // Byte-exact: relayed data after the message stays unread.
                prop_assert_eq!(stream.pos, used + frame.len());
            }
            (expected, got) => {
                prop_assert!(false, "reference {expected:?}, read_frame {got:?}")
            }
        }
    }

    /// What write_frame writes, read_frame reads back, frame after frame,
    /// leaving what follows on the stream.
    #[test]
    fn frames_round_trip(
        msgs in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..=MAX_MESSAGE), 1..4),
        rest in proptest::collection::vec(any::<u8>(), 0..16),
        chunk in 1usize..4096,
    ) {
        let mut wire = Cursor::new(Vec::new());
        for m in &msgs {
            block_on(write_frame(&mut wire, m)).unwrap();
        }
        let mut data = wire.into_inner();
        let framed = data.len();
        data.extend_from_slice(&rest);
        let mut stream = Trickle { data, pos: 0, chunk };
        for m in &msgs {
            prop_assert_eq!(&block_on(read_frame(&mut stream)).unwrap(), m);
        }
        prop_assert_eq!(stream.pos, framed);
    }
}

// --- Messages ---------------------------------------------------------------

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

/// A u64 that is often at a varint's length boundaries.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (0u32..64).prop_map(|b| 1u64 << b),
        (1u32..64).prop_map(|b| (1u64 << b) - 1),
        Just(u64::MAX),
        0u64..300,
    ]
}

fn peer() -> impl Strategy<Value = Peer> {
    (bytes(40), proptest::collection::vec(bytes(32), 0..4))
        .prop_map(|(id, addrs)| Peer { id, addrs })
}

fn limit() -> impl Strategy<Value = Limit> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(number()),
    )
        .prop_map(|(duration, data)| Limit { duration, data })
}

fn reservation() -> impl Strategy<Value = Reservation> {
    (
        number(),
        proptest::collection::vec(bytes(32), 0..4),
        proptest::option::of(bytes(128)),
    )
        .prop_map(|(expire, addrs, voucher)| Reservation {
            expire,
            addrs,
            voucher,
        })
}

fn hop_message() -> impl Strategy<Value = HopMessage> {
    (
        number(),
        proptest::option::of(peer()),
        proptest::option::of(reservation()),
        proptest::option::of(limit()),
        proptest::option::of(number()),
    )
        .prop_map(|(kind, peer, reservation, limit, status)| HopMessage {
            kind: Some(kind),
            peer,
            reservation,
            limit,
            status,
        })
}

fn stop_message() -> impl Strategy<Value = StopMessage> {
    (
        number(),
        proptest::option::of(peer()),
        proptest::option::of(limit()),
        proptest::option::of(number()),
    )
        .prop_map(|(kind, peer, limit, status)| StopMessage {
            kind: Some(kind),
            peer,
            limit,
            status,
        })
}

/// Fields no version of the spec has used, in every wire type the decoder
/// must skip: varint, fixed64, length-delimited and fixed32.
fn unknown_fields() -> impl Strategy<Value = Vec<u8>> {
    let field =
        (6u64..1 << 20, 0..4usize, number(), bytes(16)).prop_map(|(n, wt, v, b)| match wt {
            0 => [varint(n << 3), varint(v)].concat(),
            1 => [varint(n << 3 | 1), v.to_le_bytes().to_vec()].concat(),
            2 => [varint(n << 3 | 2), varint(b.len() as u64), b].concat(),
            _ => [varint(n << 3 | 5), (v as u32).to_le_bytes().to_vec()].concat(),
        });
    proptest::collection::vec(field, 0..4).prop_map(|f| f.concat())
}

/// Messages as a peer could send them: random bytes, a valid message, or a
/// valid message cut short or followed by random bytes.
fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        bytes(256),
        hop_message().prop_map(|m| m.encode()),
        (hop_message(), any::<prop::sample::Index>()).prop_map(|(m, i)| {
            let e = m.encode();
            e[..i.index(e.len() + 1)].to_vec()
        }),
        (stop_message(), bytes(32)).prop_map(|(m, tail)| [m.encode(), tail].concat()),
    ]
}

/// What decoding a hostile message may cost: a few dozen bytes of memory
/// per byte received (a 2-byte empty address becomes a 24-byte `Vec`, in a
/// `Vec` that doubles as it grows), never more.
fn decode_budget(input: usize) -> usize {
    64 * input + 512
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn hop_messages_round_trip(m in hop_message()) {
        prop_assert_eq!(HopMessage::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn stop_messages_round_trip(m in stop_message()) {
        prop_assert_eq!(StopMessage::decode(&m.encode()), Ok(m));
    }

    /// A decoder that accepts something must accept it as the message it
    /// re-encodes to: no bytes silently reinterpreted, at a bounded cost.
    #[test]
    fn any_bytes_decode_to_a_stable_message_or_an_error(buf in message_bytes()) {
        let (hop, (_, total)) = allocations(|| HopMessage::decode(&buf));
        prop_assert!(total <= decode_budget(buf.len()), "{total} bytes for {}", buf.len());
        if let Ok(m) = hop {
            prop_assert_eq!(HopMessage::decode(&m.encode()), Ok(m));
        }
        let (stop, (_, total)) = allocations(|| StopMessage::decode(&buf));
        prop_assert!(total <= decode_budget(buf.len()), "{total} bytes for {}", buf.len());
        if let Ok(m) = stop {
            prop_assert_eq!(StopMessage::decode(&m.encode()), Ok(m));
        }
    }

    /// A message cut anywhere is refused, or (cut between top-level fields)
    /// decodes to exactly the fields before the cut.
    #[test]
    fn truncated_messages_are_refused_or_decoded_as_what_arrived(
        m in hop_message(), s in stop_message()
    ) {
        let hop = m.encode();
        for cut in 0..hop.len() {
            if let Ok(short) = HopMessage::decode(&hop[..cut]) {
                prop_assert_eq!(short.encode(), hop[..cut].to_vec());
            }
        }
        let stop = s.encode();
        for cut in 0..stop.len() {
            if let Ok(short) = StopMessage::decode(&stop[..cut]) {
                prop_assert_eq!(short.encode(), stop[..cut].to_vec());
            }
        }
    }

    /// A later version's fields, anywhere in the message, are skipped.
    #[test]
    fn unknown_fields_change_nothing(
        m in hop_message(), s in stop_message(), before in unknown_fields(), after in unknown_fields()
    ) {
        let hop = [before.clone(), m.encode(), after.clone()].concat();
        prop_assert_eq!(HopMessage::decode(&hop), Ok(m));
        let stop = [before, s.encode(), after].concat();
        prop_assert_eq!(StopMessage::decode(&stop), Ok(s));
    }

    /// Padded (non-minimal) varints of up to ten bytes read as their value,
    /// as protobuf requires; an eleventh byte, or a tenth byte with bits
    /// past 63, is refused rather than wrapped around.
    #[test]
    fn varints_of_every_length_read_as_their_value(v in number(), len in 1usize..=12, top in 2u8..=0xff) {
        let min = varint(v).len();
        let padded = len.clamp(min, 10);
        let msg = [vec![0x08], overlong_varint(v, padded)].concat();
        prop_assert_eq!(HopMessage::decode(&msg).map(|m| m.kind), Ok(Some(v)));
        let mut frame = overlong_varint(v % (MAX_MESSAGE as u64 + 1), padded);
        let body_len = v % (MAX_MESSAGE as u64 + 1);
        frame.resize(frame.len() + body_len as usize, 7);
        let read = block_on(read_frame(&mut Cursor::new(frame)));
        prop_assert_eq!(read.map(|f| f.len() as u64).ok(), Some(body_len));

        let mut over = vec![0x08];
        over.extend([0x80u8 | (v as u8); 9]);
        over.push(top);
        prop_assert!(HopMessage::decode(&over).is_err());
        over.truncate(10);
        over.push(0x80 | top);
        over.push(0x00);
        prop_assert!(HopMessage::decode(&over).is_err());
        let framed = block_on(read_frame(&mut Cursor::new(over[1..].to_vec())));
        prop_assert!(matches!(framed, Err(ReadError::Malformed(_))), "{:?}", framed);
    }

    #[test]
    fn vouchers_round_trip(relay in bytes(64), peer in bytes(64), expiration in number()) {
        let payload = encode_voucher(&relay, &peer, expiration);
        prop_assert_eq!(decode_voucher(&payload), Ok((relay, peer, expiration)));
    }

    #[test]
    fn any_voucher_bytes_decode_or_fail_cleanly(buf in message_bytes()) {
        let (got, (_, total)) = allocations(|| decode_voucher(&buf));
        prop_assert!(total <= decode_budget(buf.len()));
        if let Ok((relay, peer, exp)) = got {
            prop_assert_eq!(decode_voucher(&encode_voucher(&relay, &peer, exp)), Ok((relay, peer, exp)));
        }
    }
}

// --- Config -----------------------------------------------------------------

/// Every numeric key: its path, the accepted range, and where its value
/// lands in `Config` (in the file's unit), if it lands anywhere.
type Extract = fn(&RelayConfig) -> Option<u64>;

const NUMERIC: &[(&str, u64, u64, Option<Extract>)] = &[
    ("relay.advertise.ttl", 1_000, 86_400_000, None),
    (
        "relay.reservations.max",
        1,
        1_000_000,
        Some(|c| Some(c.relay.max_reservations as u64)),
    ),
    (
        "relay.reservations.maxPerPeer",
        1,
        64,
        Some(|c| Some(c.relay.max_reservations_per_peer as u64)),
    ),
    (
        "relay.reservations.ttl",
        1_000,
        604_800_000,
        Some(|c| Some(c.relay.reservation_ttl.as_millis() as u64)),
    ),
    (
        "relay.circuits.max",
        1,
        1_000_000,
        Some(|c| Some(c.relay.max_circuits as u64)),
    ),
    (
        "relay.circuits.maxPerPeer",
        1,
        65_536,
        Some(|c| Some(c.relay.max_circuits_per_peer as u64)),
    ),
    (
        "relay.circuits.duration",
        0,
        u32::MAX as u64 * 1000,
        Some(|c| {
            Some(
                c.relay
                    .circuit_limits
                    .duration
                    .map_or(0, |d| d.as_millis() as u64),
            )
        }),
    ),
    (
        "relay.circuits.data",
        0,
        u64::MAX,
        Some(|c| Some(c.relay.circuit_limits.data.unwrap_or(0))),
    ),
    (
        "connectionManager.maxConnections",
        1,
        1_000_000,
        Some(|c| Some(u64::from(c.max_connections))),
    ),
    ("connectionManager.minConnections", 0, 1_000_000, None),
    (
        "connectionManager.maxConnectionsPerPeer",
        1,
        1024,
        Some(|c| Some(u64::from(c.max_connections_per_peer))),
    ),
    (
        "connectionManager.maxPendingIncoming",
        1,
        100_000,
        Some(|c| Some(u64::from(c.max_pending_incoming))),
    ),
    (
        "gossipSub.maxMessageSize",
        1024,
        16 << 20,
        Some(|c| c.gossip.as_ref().map(|g| g.max_message_size as u64)),
    ),
    (
        "shutdown.timeout",
        0,
        600_000,
        Some(|c| Some(c.shutdown_timeout.as_millis() as u64)),
    ),
    (
        "control.maxClients",
        1,
        1024,
        Some(|c| Some(c.control_max_clients as u64)),
    ),
    (
        "runtime.threads",
        0,
        1024,
        Some(|c| Some(c.runtime_threads as u64)),
    ),
    (
        "journal.maxEvents",
        100,
        100_000_000,
        Some(|c| Some(c.journal_max_events)),
    ),
    (
        "journal.maxBytes",
        1 << 20,
        64 << 30,
        Some(|c| Some(c.journal_max_bytes)),
    ),
];

const BOOLEAN: &[&str] = &[
    "relay.enabled",
    "relay.hop.enabled",
    "relay.hop.active",
    "relay.advertise.enabled",
    "relay.circuits.unlimited",
    "gossipSub.enabled",
    "autonat.enabled",
];

const STRING: &[(&str, &[&str])] = &[
    ("mode", &["relay", "client"]),
    ("dataDir", &["/var/lib/bsv-p2p", "~/relay", "~", ""]),
    (
        "identityFile",
        &["/var/lib/bsv-p2p/id.key", "~/id.key", " "],
    ),
    ("log.format", &["auto", "json", "pretty", "JSON"]),
    (
        "log.level",
        &[
            "off", "error", "warn", "info", "debug", "trace", "INFO", "verbose",
        ],
    ),
    (
        "control.socket",
        &["/run/bsv-p2p/relay.sock", "~/r.sock", ""],
    ),
];

const LISTS: &[&str] = &["listen", "announce", "gossipSub.topics"];

/// Values of every JSON type, including the nearly right ones.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Numbers around and inside `min..=max`, or not numbers at all.
fn numeric_value(min: u64, max: u64) -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => (min..=max).prop_map(|n| json!(n)),
        2 => prop::sample::select(vec![min.wrapping_sub(1), min, max, max.wrapping_add(1), 0, u64::MAX])
            .prop_map(|n| json!(n)),
        1 => (-1000i64..0).prop_map(|n| json!(n)),
        1 => Just(json!(1.5)),
        1 => Just(json!("1h")),
        1 => any_json(),
    ]
}

/// Multiaddrs as operators write them, right and wrong.
fn multiaddr_text() -> impl Strategy<Value = String> {
    let host = prop::sample::select(vec![
        "/ip4/0.0.0.0",
        "/ip4/203.0.113.7",
        "/ip6/::",
        "/dns/relay.example.org",
        "/dns4/a.b",
        "/dns6/x",
        "/ip4/YOUR_PUBLIC_IP",
        "/dns/relay.yourdomain.com",
        "/ip4/999.1.1.1",
        "/unix/tmp",
        "",
    ]);
    let port = prop_oneof![
        Just("/tcp/4001".to_string()),
        (0u32..70_000).prop_map(|p| format!("/tcp/{p}")),
        Just("/udp/4001".into())
    ];
    let tail = prop::sample::select(vec![
        "",
        "/ws",
        "/wss",
        "/tls/ws",
        "/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
        "/p2p-circuit",
        "/quic-v1",
        "/ws/ws",
        "/certhash/uEiA",
        "/ip6zone/x",
    ]);
    prop_oneof![
        8 => (host, port, tail).prop_map(|(h, p, t)| format!("{h}{p}{t}")),
        1 => "(/[a-z0-9-]{0,8}){0,6}",
        1 => ".{0,24}",
    ]
}

fn list_value(key: &'static str) -> BoxedStrategy<Value> {
    let item: BoxedStrategy<Value> = if key == "gossipSub.topics" {
        prop_oneof![
            4 => "/openclaw/[a-z]{1,8}/1\\.0\\.0".prop_map(Value::String),
            1 => Just(json!("/openclaw/announce/1.0.0")),
            1 => Just(json!(" ")),
            1 => Just(Value::String("t".repeat(513))),
            1 => any_json(),
        ]
        .boxed()
    } else {
        prop_oneof![5 => multiaddr_text().prop_map(Value::String), 1 => any_json()].boxed()
    };
    prop_oneof![
        6 => proptest::collection::vec(item, 0..4).prop_map(Value::Array),
        1 => any_json(),
    ]
    .boxed()
}

fn string_value(samples: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(samples).prop_map(|s| json!(s)),
        1 => "/[a-z/]{0,120}".prop_map(Value::String),
        1 => any_json(),
    ]
}

/// Sets `path` (dotted) in `doc`, making the objects on the way; a path
/// through a non-object is left out, as it cannot be written.
fn set(doc: &mut Map<String, Value>, path: &str, value: Value) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    match rest {
        None => {
            doc.insert(head.to_string(), value);
        }
        Some(rest) => {
            let child = doc
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(child) = child {
                set(child, rest, value);
            }
        }
    }
}

/// Config documents built from the real key names, each key present or not,
/// with values of the right type most of the time, plus the odd misspelt or
/// unknown key, so that generation reaches every check in the parser.
fn config_doc() -> impl Strategy<Value = Value> {
    let mut entries: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for &(path, min, max, _) in NUMERIC {
        entries.push(
            proptest::option::weighted(
                0.25,
                numeric_value(min, max).prop_map(move |v| (path.to_string(), v)),
            )
            .boxed(),
        );
    }
    for &path in BOOLEAN {
        let value = prop_oneof![4 => any::<bool>().prop_map(Value::Bool), 1 => any_json()];
        entries.push(
            proptest::option::weighted(0.3, value.prop_map(move |v| (path.to_string(), v))).boxed(),
        );
    }
    for &(path, samples) in STRING {
        entries.push(
            proptest::option::weighted(
                0.3,
                string_value(samples).prop_map(move |v| (path.to_string(), v)),
            )
            .boxed(),
        );
    }
    for &path in LISTS {
        entries.push(
            proptest::option::weighted(
                0.4,
                list_value(path).prop_map(move |v| (path.to_string(), v)),
            )
            .boxed(),
        );
    }
    let section = prop::sample::select(vec![
        "",
        "relay.",
        "relay.circuits.",
        "relay.reservations.",
        "connectionManager.",
        "gossipSub.",
        "log.",
    ]);
    let stray =
        (section, "[a-zA-Z]{1,16}", any_json()).prop_map(|(s, k, v)| (format!("{s}{k}"), v));
    entries.push(proptest::option::weighted(0.1, stray).boxed());
    entries.prop_map(|entries| {
        let mut doc = Map::new();
        for (path, value) in entries.into_iter().flatten() {
            set(&mut doc, &path, value);
        }
        Value::Object(doc)
    })
}

/// The value at an error's path (`a.b[2].c`), if the document has one there.
fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let mut here = doc;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        here = here.get(key)?;
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            here = here.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(here)
}

fn parse(text: &str) -> Result<RelayConfig, ConfigError> {
    config::parse("relay-config.json", text, &Overrides::default())
}

/// What every config the parser accepts must satisfy, whatever it was given.
fn check_invariants(c: &RelayConfig) -> Result<(), TestCaseError> {
    prop_assert!(!c.listen.is_empty());
    prop_assert!(c.max_connections >= 1);
    prop_assert!(c.relay.max_circuits_per_peer <= c.relay.max_circuits);
    let limits = &c.relay.circuit_limits;
    if let Some(d) = limits.duration {
        prop_assert!(d.as_millis() >= 1000 && d.as_secs() <= u64::from(u32::MAX));
    }
    if let Some(data) = limits.data {
        prop_assert!(data >= 1 << 20);
    }
    if let Some(g) = &c.gossip {
        prop_assert!(g.topics.len() <= 256);
        for (i, t) in g.topics.iter().enumerate() {
            prop_assert!(!t.trim().is_empty() && t.len() <= 512);
            prop_assert!(!g.topics[..i].contains(t));
        }
    }
    prop_assert!(c.control_socket.as_os_str().len() <= 100);
    prop_assert!(!c.data_dir.as_os_str().is_empty());
    Ok(())
}

/// A small `relay.circuits.max` with `maxPerPeer` left at its default (64)
/// used to be blamed on `relay.circuits.maxPerPeer`, a key not in the file.
#[test]
fn a_small_circuit_cap_is_blamed_on_the_key_in_the_file() {
    let e = parse(r#"{"relay":{"circuits":{"max":10}}}"#).unwrap_err();
    assert_eq!(e.path, "relay.circuits.max");
    assert!(e.message.contains("maxPerPeer (64 by default)"), "{e}");
    let e = parse(r#"{"relay":{"circuits":{"max":10,"maxPerPeer":20}}}"#).unwrap_err();
    assert_eq!(e.path, "relay.circuits.maxPerPeer");
}

/// A long `dataDir` makes the default control socket path too long; that
/// used to be blamed on `control.socket`, a key not in the file.
#[test]
fn a_long_data_dir_is_blamed_for_its_socket_path() {
    let dir = format!("/{}", "d".repeat(100));
    let e = parse(&json!({ "dataDir": dir }).to_string()).unwrap_err();
    assert_eq!(e.path, "dataDir");
    assert!(e.message.contains("set control.socket"), "{e}");
    let doc = json!({ "dataDir": dir, "control": { "socket": format!("{dir}/r.sock") } });
    assert_eq!(parse(&doc.to_string()).unwrap_err().path, "control.socket");
}

/// A key written twice is refused at that key, not as a whole document.
#[test]
fn a_duplicate_key_is_refused_at_its_path() {
    let e = parse(r#"{"relay":{"enabled":true,"enabled":false}}"#).unwrap_err();
    assert!(e.path.starts_with("relay"), "{e}");
    assert!(e.message.contains("enabled"), "{e}");
}

proptest! {
    #![proptest_config(cases(1000))]

    /// Any document built from the real keys: accepted configs hold every
    /// invariant and carry the numbers as written; refused ones name a path
    /// that exists in the document.
    #[test]
    fn config_documents_are_refused_at_a_path_or_accepted_as_written(doc in config_doc()) {
        let text = serde_json::to_string_pretty(&doc).unwrap();
        match parse(&text) {
            Ok(c) => {
                check_invariants(&c)?;
                for &(path, min, max, extract) in NUMERIC {
                    let Some(v) = lookup(&doc, path) else { continue };
                    // A key of a switched-off section (gossip) is not read.
                    let got = match extract {
                        Some(extract) => match extract(&c) {
                            Some(got) => Some(got),
                            None => continue,
                        },
                        None => None,
                    };
                    let v = v.as_u64();
                    prop_assert!(v.is_some_and(|v| (min..=max).contains(&v)), "{path} = {v:?} accepted");
                    if got.is_some() {
                        prop_assert_eq!(got, v, "{}", path);
                    }
                }
                if let Some(Value::Array(listen)) = lookup(&doc, "listen") {
                    prop_assert_eq!(c.listen.len(), listen.len());
                }
            }
            Err(e) => {
                prop_assert_eq!(&e.source, "relay-config.json");
                prop_assert!(!e.message.is_empty());
                prop_assert!(!e.path.is_empty(), "no path: {}", e);
                prop_assert!(lookup(&doc, &e.path).is_some(), "{} is not in the document", e);
            }
        }
    }

    /// Text that is not a config at all, or a config damaged by an edit, is
    /// refused with a message, never a panic; only a document that is not a
    /// JSON object is refused without a key path.
    #[test]
    fn config_text_of_any_shape_is_refused_cleanly(
        doc in config_doc(),
        noise in ".{0,64}",
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..4, "[{}\\[\\]\",:0-9a-z \n]{0,3}"), 0..4),
        pick in 0..3u8,
    ) {
        let mut text = serde_json::to_string_pretty(&doc).unwrap();
        for (at, delete, insert) in edits {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let mut end = (i + delete).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(i..end, &insert);
        }
        let text = match pick {
            0 => text,
            1 => noise,
            _ => format!("{text}{noise}"),
        };
        if let Err(e) = parse(&text) {
            prop_assert!(!e.message.is_empty());
            if e.path.is_empty() {
                let object = serde_json::from_str::<Value>(&text).map(|v| v.is_object()).unwrap_or(false);
                prop_assert!(!object, "a JSON object refused without a path: {}", e);
            }
        }
    }
}
