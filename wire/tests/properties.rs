//! Property tests of the circuit relay v2 hop/stop messages, vouchers and
//! framing, which any peer on the internet can send to the relay. Generated
//! inputs reach the corners that hand-picked examples miss (ten-byte
//! varints, prefixes cut mid-field, unknown fields of every wire type).
//!
//! Each property runs a few hundred cases by default so that `cargo test`
//! stays quick; `PROPTEST_CASES=1000000` runs any number of them (README.md,
//! "Tests").

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll};

use bsv_p2p_wire::{
    decode_voucher, encode_voucher, read_frame, write_frame, HopMessage, Limit, Peer, ReadError,
    Reservation, StopMessage, MAX_MESSAGE,
};
use futures::executor::block_on;
use futures::io::{AsyncRead, Cursor};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

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
