//! Conformance of our circuit relay v2 hop server to the libp2p spec
//! (`relay/circuit-v2.md`), proved against the real relay binary by bare
//! peers that write every hop and stop message themselves: each status code
//! provoked, the reservation's expiry, addresses and signed voucher, renewal,
//! the reservation's end with its connection, the `Limit` sent (or not), data
//! limits counted per direction to the byte, the duration limit, and every
//! refusal counted by reason in the control socket's `stats`.
//!
//! A refusal over a relayed connection (PERMISSION_DENIED) is not provoked
//! here: the relay runs no relay client transport, so no connection to it can
//! be relayed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_std::task::block_on;
use bsv_p2p_tests::client::timed;
use bsv_p2p_tests::hop::{
    self, frame, hop_type, payload, read_exactly, read_until_end, status_of, wait_reset, wire,
    HopMessage, Limit, RawOptions, RawPeer, Status, StopMessage,
};
use bsv_p2p_tests::relay::field;
use bsv_p2p_tests::Relay;
use futures::AsyncWriteExt;
use libp2p::core::SignedEnvelope;
use libp2p::identity::{Keypair, PublicKey};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Stream};
use serde_json::{json, Value};

const MIB: u64 = 1 << 20;
/// Bound on the relay logging what a test just caused.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on a bulk transfer of a few MiB over loopback.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30);

/// Announce addresses (TEST-NET-3) handed out in reservations.
const ANNOUNCE: [&str; 2] = ["/ip4/203.0.113.7/tcp/4001", "/ip4/203.0.113.7/tcp/4002/ws"];

fn start(relay: Value) -> Relay {
    Relay::start(json!({ "mode": "relay", "announce": ANNOUNCE, "relay": relay }))
}

/// A bare peer connected to the relay over TCP.
async fn peer(relay: &Relay, accept_stop: bool) -> RawPeer {
    let p = RawPeer::start(RawOptions { accept_stop }).expect("raw peer starts");
    p.connect(&relay.tcp_addr())
        .await
        .expect("raw peer connects to the relay");
    p
}

/// A peer that holds a reservation and takes circuits.
async fn reserved(relay: &Relay) -> RawPeer {
    let p = peer(relay, true).await;
    p.reserve_ok(relay.peer_id()).await.expect("reservation");
    p
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The relay's `stats`, each counter in `want` (named by its JSON pointer,
/// e.g. `/circuits/opened`) checked to have the value given.
fn expect_stats(relay: &Relay, want: &[(&str, u64)]) -> Value {
    let stats = relay.ctl(&["stats"]);
    for &(pointer, value) in want {
        let got = count(stats.pointer(pointer).unwrap_or(&Value::Null));
        assert_eq!(got, value, "{pointer}: {stats}");
    }
    stats
}

fn expect_status(reply: &HopMessage, want: Status, what: &str) {
    assert_eq!(
        reply.kind,
        Some(hop_type::STATUS),
        "{what}: the answer is not a STATUS: {reply:?}"
    );
    assert_eq!(status_of(reply), Some(want), "{what}: {reply:?}");
}

fn is_circuit(src: PeerId, dst: PeerId) -> impl Fn(&Value) -> bool {
    move |e| field(e, "src") == src.to_string() && field(e, "dst") == dst.to_string()
}

/// `src` asks the relay for a circuit to `dst` and is answered `want`.
async fn expect_connect(relay: &Relay, src: &RawPeer, dst: PeerId, want: Status, what: &str) {
    let (reply, _) = src
        .connect_via(relay.peer_id(), dst)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    expect_status(&reply, want, what);
}

/// Waits for the `circuit_closed` of `src` -> `dst` logged at `mark` or
/// later (0: at any time); checks its reason and, when given, the bytes it
/// carried each way (source to destination, back).
fn expect_closed(
    relay: &Relay,
    mark: usize,
    (src, dst): (&RawPeer, &RawPeer),
    reason: &str,
    bytes: Option<(u64, u64)>,
) -> Value {
    let closed = relay
        .wait_for_event_after(
            mark,
            "circuit_closed",
            is_circuit(src.peer_id(), dst.peer_id()),
            EVENT_TIMEOUT,
        )
        .expect("circuit_closed logged");
    assert_eq!(field(&closed, "reason"), reason, "{closed}");
    if let Some((forth, back)) = bytes {
        assert_eq!(closed["bytesSrcToDst"].as_u64(), Some(forth), "{closed}");
        assert_eq!(closed["bytesDstToSrc"].as_u64(), Some(back), "{closed}");
    }
    closed
}

/// A circuit opened byte for byte: `src` sends CONNECT, `dst` answers the
/// relay's stop stream with OK.
struct Circuit {
    connect_reply: HopMessage,
    stop_connect: StopMessage,
    src: Stream,
    dst: Stream,
}

async fn open_circuit(relay: &Relay, src: &RawPeer, dst: &RawPeer) -> Circuit {
    let (asked, answered) = futures::join!(
        src.connect_via(relay.peer_id(), dst.peer_id()),
        dst.answer_stop(Status::Ok)
    );
    let (connect_reply, src_stream) = asked.expect("CONNECT answered");
    expect_status(&connect_reply, Status::Ok, "CONNECT to a reserved peer");
    let (stop_connect, dst_stream) = answered.expect("the destination gets the stop stream");
    assert_eq!(
        stop_connect.kind,
        Some(hop::stop_type::CONNECT),
        "{stop_connect:?}"
    );
    let from = stop_connect
        .peer
        .as_ref()
        .and_then(|p| PeerId::from_bytes(&p.id).ok());
    assert_eq!(
        from,
        Some(src.peer_id()),
        "STOP names the source: {stop_connect:?}"
    );
    Circuit {
        connect_reply,
        stop_connect,
        src: src_stream,
        dst: dst_stream,
    }
}

/// `dst` takes the relay's next stop stream and reads its CONNECT, leaving
/// it unanswered: the stream, for the test to answer or hold.
async fn read_connect(dst: &RawPeer) -> Result<Stream, String> {
    let (_, mut stream) = dst.next_stop(EVENT_TIMEOUT).await?;
    hop::read_stop(&mut stream).await?;
    Ok(stream)
}

/// Both ends of `c` are reset by the relay: neither can write any more.
async fn expect_both_reset(c: &mut Circuit) {
    wait_reset(&mut c.src, EVENT_TIMEOUT)
        .await
        .expect("the source's stream is reset");
    wait_reset(&mut c.dst, EVENT_TIMEOUT)
        .await
        .expect("the destination's stream is reset");
}

/// Sends `data` on `from` while `to` reads it; the bytes `to` got.
async fn transfer(from: &mut Stream, to: &mut Stream, data: &[u8]) -> Result<Vec<u8>, String> {
    let send = async {
        timed(TRANSFER_TIMEOUT, "the send", async {
            from.write_all(data).await?;
            from.flush().await
        })
        .await?
        .map_err(|e| format!("send failed: {e}"))
    };
    let (sent, got) = futures::join!(send, read_exactly(to, data.len(), TRANSFER_TIMEOUT));
    sent?;
    got
}

#[test]
fn malformed_and_unexpected_requests_get_their_status_codes() {
    let relay = start(json!({}));
    block_on(async {
        let p = peer(&relay, false).await;
        let r = relay.peer_id();

        let mut oversized = vec![0u8; wire::MAX_MESSAGE + 1];
        oversized[0] = 0x08; // type = RESERVE, then padding
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("bytes that are no protobuf", frame(&[0xff; 12])),
            (
                "a field running past the end",
                frame(&[0x08, 0x00, 0x12, 0x40, 0x0a]),
            ),
            ("a message without its type", frame(&[0x28, 0x64])),
            ("an unknown type", frame(&[0x08, 0x07])),
            ("type with the wrong wire type", frame(&[0x0a, 0x01, 0x00])),
            (
                "CONNECT without a peer",
                frame(
                    &HopMessage {
                        kind: Some(hop_type::CONNECT),
                        ..Default::default()
                    }
                    .encode(),
                ),
            ),
            (
                "CONNECT to a peer ID that does not parse",
                frame(
                    &HopMessage {
                        kind: Some(hop_type::CONNECT),
                        peer: Some(wire::Peer {
                            id: b"not a peer id".to_vec(),
                            addrs: Vec::new(),
                        }),
                        ..Default::default()
                    }
                    .encode(),
                ),
            ),
            ("a frame over 4096 bytes", frame(&oversized)),
            ("a length prefix that is no varint", vec![0xff; 11]),
        ];
        let malformed = cases.len() as u64;
        for (what, bytes) in cases {
            let reply = p
                .send_raw(r, &bytes)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            expect_status(&reply, Status::MalformedMessage, what);
        }

        let status_as_request = HopMessage::status(Status::Ok);
        let reply = p.request(r, &status_as_request).await.expect("answer");
        expect_status(
            &reply,
            Status::UnexpectedMessage,
            "a STATUS sent as a request",
        );

        // Nothing of that hurt the connection: the peer still reserves.
        p.reserve_ok(r)
            .await
            .expect("a reservation after the bad requests");

        expect_stats(
            &relay,
            &[
                ("/denials/malformed_message", malformed),
                ("/denials/unexpected_message", 1),
            ],
        );
        let denied = relay.events_of("request_denied", |e| {
            field(e, "peerId") == p.peer_id().to_string()
        });
        assert!(
            denied
                .iter()
                .any(|e| field(e, "reason") == "unexpected_message"),
            "{denied:?}"
        );
    });
}

#[test]
fn circuit_to_oneself_is_permission_denied() {
    let relay = start(json!({}));
    block_on(async {
        let p = reserved(&relay).await;
        let (reply, _) = p
            .connect_via(relay.peer_id(), p.peer_id())
            .await
            .expect("answer");
        expect_status(&reply, Status::PermissionDenied, "CONNECT to oneself");

        expect_stats(
            &relay,
            &[
                ("/circuits/denied/self_circuit", 1),
                ("/denials/self_circuit", 1),
            ],
        );
        let denied = relay
            .wait_for_event(
                "circuit_denied",
                is_circuit(p.peer_id(), p.peer_id()),
                EVENT_TIMEOUT,
            )
            .expect("circuit_denied logged");
        assert_eq!(field(&denied, "status"), "permission_denied", "{denied}");
    });
}

#[test]
fn connect_to_a_peer_without_reservation_is_no_reservation() {
    let relay = start(json!({}));
    block_on(async {
        let src = peer(&relay, false).await;
        // Connected to the relay but holding no reservation.
        let bystander = peer(&relay, true).await;

        expect_connect(
            &relay,
            &src,
            PeerId::random(),
            Status::NoReservation,
            "CONNECT to an unknown peer",
        )
        .await;
        expect_connect(
            &relay,
            &src,
            bystander.peer_id(),
            Status::NoReservation,
            "CONNECT to a connected peer without reservation",
        )
        .await;
        let stop = bystander.next_stop(Duration::from_millis(300)).await;
        assert!(stop.is_err(), "the relay opened a stop stream anyway");

        expect_stats(
            &relay,
            &[
                ("/circuits/denied/no_reservation", 2),
                ("/circuits/opened", 0),
            ],
        );
    });
}

#[test]
fn reservations_over_the_total_or_per_peer_cap_are_refused() {
    let relay = start(json!({ "reservations": { "max": 2, "maxPerPeer": 1 } }));
    block_on(async {
        let r = relay.peer_id();
        // Two connections of one peer ID.
        let key = Keypair::generate_ed25519();
        let a1 = RawPeer::with_key(key.clone(), RawOptions { accept_stop: true }).unwrap();
        let a2 = RawPeer::with_key(key, RawOptions { accept_stop: true }).unwrap();
        assert_eq!(a1.peer_id(), a2.peer_id());
        a1.connect(&relay.tcp_addr()).await.unwrap();
        a2.connect(&relay.tcp_addr()).await.unwrap();

        a1.reserve_ok(r).await.expect("a's first reservation");
        let reply = a2.reserve(r).await.expect("answer");
        expect_status(
            &reply,
            Status::ReservationRefused,
            "a second reservation of one peer over maxPerPeer",
        );
        assert!(reply.reservation.is_none(), "{reply:?}");

        let b = reserved(&relay).await;
        let c = peer(&relay, true).await;
        let reply = c.reserve(r).await.expect("answer");
        expect_status(&reply, Status::ReservationRefused, "a reservation over max");

        // Renewals are never refused, even with every slot taken.
        a1.reserve_ok(r).await.expect("a renews at the cap");
        b.reserve_ok(r).await.expect("b renews at the cap");

        expect_stats(
            &relay,
            &[
                ("/reservations/active", 2),
                ("/reservations/created", 2),
                ("/reservations/renewed", 2),
                ("/reservations/denied/peer_reservations_full", 1),
                ("/reservations/denied/reservations_full", 1),
            ],
        );
        for (who, reason) in [
            (a2.peer_id(), "peer_reservations_full"),
            (c.peer_id(), "reservations_full"),
        ] {
            let denied = relay
                .wait_for_event(
                    "reservation_denied",
                    |e| field(e, "peerId") == who.to_string() && field(e, "reason") == reason,
                    EVENT_TIMEOUT,
                )
                .expect("reservation_denied logged");
            assert_eq!(field(&denied, "status"), "reservation_refused", "{denied}");
        }
    });
}

#[test]
fn circuits_over_the_total_or_per_peer_cap_are_resource_limit_exceeded() {
    let relay = start(json!({ "circuits": { "max": 2, "maxPerPeer": 1 } }));
    block_on(async {
        let d1 = reserved(&relay).await;
        let d2 = reserved(&relay).await;
        let d3 = reserved(&relay).await;
        let s1 = peer(&relay, false).await;
        let s2 = peer(&relay, false).await;
        let s3 = peer(&relay, false).await;

        let first = open_circuit(&relay, &s1, &d1).await;
        // s1 is in one circuit already: the source's cap.
        expect_connect(
            &relay,
            &s1,
            d2.peer_id(),
            Status::ResourceLimitExceeded,
            "source over maxPerPeer",
        )
        .await;
        // d1 is in one circuit already: the destination's cap.
        expect_connect(
            &relay,
            &s2,
            d1.peer_id(),
            Status::ResourceLimitExceeded,
            "destination over maxPerPeer",
        )
        .await;
        let _second = open_circuit(&relay, &s2, &d2).await;
        // Two circuits open: the total cap.
        expect_connect(
            &relay,
            &s3,
            d3.peer_id(),
            Status::ResourceLimitExceeded,
            "circuit over max",
        )
        .await;

        expect_stats(
            &relay,
            &[
                ("/circuits/denied/peer_circuits_full", 2),
                ("/circuits/denied/circuits_full", 1),
                ("/circuits/active", 2),
            ],
        );

        // A circuit that ends frees its slots.
        let mark = relay.mark();
        drop(first);
        relay
            .wait_for_event_after(
                mark,
                "circuit_closed",
                is_circuit(s1.peer_id(), d1.peer_id()),
                EVENT_TIMEOUT,
            )
            .expect("the dropped circuit closes");
        let _third = open_circuit(&relay, &s3, &d1).await;
    });
}

#[test]
fn destinations_that_cannot_take_the_circuit_are_connection_failed() {
    let relay = start(json!({}));
    block_on(async {
        let r = relay.peer_id();
        let src = peer(&relay, false).await;

        // Reserved, but does not speak the stop protocol.
        let mute = peer(&relay, false).await;
        mute.reserve_ok(r).await.unwrap();
        expect_connect(
            &relay,
            &src,
            mute.peer_id(),
            Status::ConnectionFailed,
            "destination without stop protocol",
        )
        .await;

        // Takes the stop stream and refuses the circuit.
        let refuser = reserved(&relay).await;
        let (asked, answered) = futures::join!(
            src.connect_via(r, refuser.peer_id()),
            refuser.answer_stop(Status::ResourceLimitExceeded)
        );
        answered.expect("the refuser gets the stop stream");
        expect_status(
            &asked.unwrap().0,
            Status::ConnectionFailed,
            "destination refusing the stop",
        );

        // Takes the stop stream, then leaves without answering.
        let leaver = reserved(&relay).await;
        let (asked, left) = futures::join!(src.connect_via(r, leaver.peer_id()), async {
            let _stream = read_connect(&leaver).await?;
            leaver.disconnect(r).await
        });
        left.expect("the leaver reads CONNECT and disconnects");
        expect_status(
            &asked.unwrap().0,
            Status::ConnectionFailed,
            "destination gone before answering",
        );

        // Answers with something that is no stop message.
        let babbler = reserved(&relay).await;
        let (asked, babbled) = futures::join!(src.connect_via(r, babbler.peer_id()), async {
            let mut stream = read_connect(&babbler).await?;
            hop::write_msg(&mut stream, &[0xff; 8]).await
        });
        babbled.expect("the babbler answers garbage");
        expect_status(
            &asked.unwrap().0,
            Status::ConnectionFailed,
            "destination answering garbage",
        );

        expect_stats(
            &relay,
            &[
                ("/circuits/denied/connection_failed", 4),
                ("/circuits/opened", 0),
                ("/circuits/active", 0),
            ],
        );
    });
}

#[test]
fn reservation_carries_expiry_addresses_and_a_voucher_signed_by_the_relay() {
    let ttl = 600u64;
    let relay = start(json!({ "reservations": { "ttl": ttl * 1000 } }));
    block_on(async {
        let p = peer(&relay, true).await;
        let before = unix_now();
        let reply = p.reserve_ok(relay.peer_id()).await.unwrap();
        let after = unix_now();
        let rsvp = reply.reservation.clone().expect("OK carries a reservation");

        assert!(
            (before + ttl..=after + ttl).contains(&rsvp.expire),
            "expire {} is not now + {ttl} s ({before}..{after})",
            rsvp.expire
        );

        let addrs: Vec<Multiaddr> = rsvp
            .addrs
            .iter()
            .map(|a| Multiaddr::try_from(a.clone()).expect("addrs are binary multiaddrs"))
            .collect();
        let want: Vec<Multiaddr> = ANNOUNCE
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .unwrap()
                    .with(Protocol::P2p(relay.peer_id()))
            })
            .collect();
        assert_eq!(addrs, want, "the announce addresses with /p2p/<relay>");

        // The default circuit limits come with the reservation.
        assert_eq!(
            reply.limit,
            Some(Limit {
                duration: Some(3600),
                data: Some(1 << 30)
            })
        );

        let voucher = rsvp.voucher.expect("a voucher");
        let envelope = SignedEnvelope::from_protobuf_encoding(&voucher).expect("a signed envelope");
        let (body, key) = envelope
            .payload_and_signing_key(wire::VOUCHER_DOMAIN.to_string(), &[0x03, 0x02])
            .expect("domain libp2p-relay-rsvp, payload type 0x0302, valid signature");
        assert_eq!(
            key.to_peer_id(),
            relay.peer_id(),
            "signed by the relay's key"
        );
        let (v_relay, v_peer, v_exp) = wire::decode_voucher(body).expect("voucher payload");
        assert_eq!(PeerId::from_bytes(&v_relay).unwrap(), relay.peer_id());
        assert_eq!(PeerId::from_bytes(&v_peer).unwrap(), p.peer_id());
        assert_eq!(
            v_exp, rsvp.expire,
            "the voucher expires with the reservation"
        );
        assert!(
            envelope.verify(wire::VOUCHER_DOMAIN.to_string()),
            "the signature verifies"
        );

        // Independently of libp2p's envelope type: the relay's public key (in
        // its peer ID) verifies the signature over the spec's signing buffer.
        let relay_key = PublicKey::try_decode_protobuf(relay.peer_id().as_ref().digest())
            .expect("an ed25519 peer ID embeds its public key");
        let fields = envelope_fields(&voucher);
        assert_eq!(fields.public_key, relay_key.encode_protobuf());
        assert_eq!(fields.payload_type, [0x03, 0x02]);
        let mut signed = Vec::new();
        for part in [
            wire::VOUCHER_DOMAIN.as_bytes(),
            &fields.payload_type[..],
            &fields.payload[..],
        ] {
            signed.extend(frame(part));
        }
        assert!(
            relay_key.verify(&signed, &fields.signature),
            "signature by the relay"
        );
        let mut tampered = signed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(
            !relay_key.verify(&tampered, &fields.signature),
            "a changed payload fails"
        );
        let other = Keypair::generate_ed25519().public();
        assert!(
            !other.verify(&signed, &fields.signature),
            "another key fails"
        );
    });
}

/// The fields of a signed envelope (RFC 0002), decoded by hand.
struct EnvelopeFields {
    public_key: Vec<u8>,
    payload_type: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn envelope_fields(mut buf: &[u8]) -> EnvelopeFields {
    fn varint(buf: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for i in 0..10 {
            let b = buf[0];
            *buf = &buf[1..];
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return v;
            }
        }
        panic!("varint too long");
    }
    let mut f = EnvelopeFields {
        public_key: Vec::new(),
        payload_type: Vec::new(),
        payload: Vec::new(),
        signature: Vec::new(),
    };
    while !buf.is_empty() {
        let key = varint(&mut buf);
        assert_eq!(key & 7, 2, "envelope fields are all bytes");
        let len = varint(&mut buf) as usize;
        let (value, rest) = buf.split_at(len);
        buf = rest;
        match key >> 3 {
            1 => f.public_key = value.to_vec(),
            2 => f.payload_type = value.to_vec(),
            3 => f.payload = value.to_vec(),
            5 => f.signature = value.to_vec(),
            n => panic!("unexpected envelope field {n}"),
        }
    }
    f
}

#[test]
fn renewal_keeps_the_address_and_is_idempotent() {
    let relay = start(json!({ "reservations": { "max": 1, "ttl": 600_000 } }));
    block_on(async {
        let r = relay.peer_id();
        let a = peer(&relay, true).await;
        let first = a.reserve_ok(r).await.unwrap();
        let first = first.reservation.unwrap();
        for round in 1..=3 {
            let again = a
                .reserve_ok(r)
                .await
                .unwrap_or_else(|e| panic!("renewal {round}: {e}"));
            let again = again.reservation.unwrap();
            assert_eq!(
                again.addrs, first.addrs,
                "renewal {round} changed the addresses"
            );
            assert!(
                again.expire >= first.expire,
                "renewal {round} shortened the reservation"
            );
            assert!(
                again.expire <= unix_now() + 600,
                "renewal {round}: {}",
                again.expire
            );
            assert!(again.voucher.is_some());
        }

        // Still one reservation, and a is still reachable by it.
        expect_stats(
            &relay,
            &[
                ("/reservations/active", 1),
                ("/reservations/created", 1),
                ("/reservations/renewed", 3),
            ],
        );
        let created = relay.events_of("reservation_created", |_| true);
        assert_eq!(created.len(), 1, "{created:?}");
        let src = peer(&relay, false).await;
        let mut c = open_circuit(&relay, &src, &a).await;
        let got = transfer(&mut c.src, &mut c.dst, b"after three renewals").await;
        assert_eq!(got.unwrap(), b"after three renewals");
    });
}

#[test]
fn reservation_ends_when_the_peer_disconnects() {
    let relay = start(json!({}));
    block_on(async {
        let r = relay.peer_id();
        let a = reserved(&relay).await;
        let src = peer(&relay, false).await;
        // Reachable while connected.
        let c = open_circuit(&relay, &src, &a).await;
        drop(c);

        let mark = relay.mark();
        a.disconnect(r).await.unwrap();
        relay
            .wait_for_event_after(
                mark,
                "reservation_closed",
                |e| field(e, "peerId") == a.peer_id().to_string(),
                EVENT_TIMEOUT,
            )
            .expect("reservation_closed logged");
        expect_connect(
            &relay,
            &src,
            a.peer_id(),
            Status::NoReservation,
            "CONNECT after the peer left",
        )
        .await;

        expect_stats(
            &relay,
            &[
                ("/reservations/active", 0),
                ("/reservations/closed", 1),
                ("/circuits/denied/no_reservation", 1),
            ],
        );
    });
}

#[test]
fn stop_and_connect_status_carry_the_configured_limit() {
    let relay = start(json!({ "circuits": { "duration": 120_000, "data": 2 * MIB } }));
    block_on(async {
        let want = Some(Limit {
            duration: Some(120),
            data: Some(2 * MIB),
        });
        let d = peer(&relay, true).await;
        let rsvp = d.reserve_ok(relay.peer_id()).await.unwrap();
        assert_eq!(rsvp.limit, want, "reservation");
        let src = peer(&relay, false).await;
        let c = open_circuit(&relay, &src, &d).await;
        assert_eq!(c.stop_connect.limit, want, "STOP CONNECT");
        assert_eq!(c.connect_reply.limit, want, "CONNECT STATUS");
    });
}

#[test]
fn unlimited_circuits_send_no_limit_anywhere() {
    let relay = start(json!({ "circuits": { "unlimited": true } }));
    block_on(async {
        let d = peer(&relay, true).await;
        let rsvp = d.reserve_ok(relay.peer_id()).await.unwrap();
        assert_eq!(rsvp.limit, None, "reservation");
        let src = peer(&relay, false).await;
        let mut c = open_circuit(&relay, &src, &d).await;
        assert_eq!(c.stop_connect.limit, None, "STOP CONNECT");
        assert_eq!(c.connect_reply.limit, None, "CONNECT STATUS");
        let data = payload(3 * MIB as usize, 7);
        let got = transfer(&mut c.src, &mut c.dst, &data).await.unwrap();
        assert!(got == data, "3 MiB arrive intact");
        let got = transfer(&mut c.dst, &mut c.src, &data).await.unwrap();
        assert!(got == data, "3 MiB arrive intact back");
    });
}

#[test]
fn data_limit_counts_each_direction_on_its_own_to_the_byte() {
    let limit = MIB as usize;
    let relay = start(json!({ "circuits": { "data": limit } }));
    block_on(async {
        let d = reserved(&relay).await;
        let src = peer(&relay, false).await;

        // Exactly the limit one way, then exactly the limit the other way.
        let mut c = open_circuit(&relay, &src, &d).await;
        assert_eq!(c.connect_reply.limit.and_then(|l| l.data), Some(MIB));
        let forth = payload(limit, 1);
        let got = transfer(&mut c.src, &mut c.dst, &forth)
            .await
            .expect("exactly `data` bytes pass from source to destination");
        assert!(got == forth, "source -> destination bytes changed");
        let back = payload(limit, 2);
        let got = transfer(&mut c.dst, &mut c.src, &back)
            .await
            .expect("exactly `data` bytes pass back, counted apart from the other way");
        assert!(got == back, "destination -> source bytes changed");

        // One byte more is one too many: the circuit ends and the byte never arrives.
        c.src.write_all(b"!").await.unwrap();
        c.src.flush().await.unwrap();
        let (extra, _) = read_until_end(&mut c.dst, EVENT_TIMEOUT)
            .await
            .expect("the destination's stream ends");
        assert_eq!(extra, 0, "bytes over the limit reached the destination");
        read_until_end(&mut c.src, EVENT_TIMEOUT)
            .await
            .expect("the source's stream ends");
        // Reset, not half-closed: neither end can write any more.
        expect_both_reset(&mut c).await;
        expect_closed(&relay, 0, (&src, &d), "data_limit", Some((MIB, MIB)));

        // The other direction alone: `data` + 1 bytes from the destination.
        let mark = relay.mark();
        let mut c = open_circuit(&relay, &src, &d).await;
        let over = payload(limit + 1, 3);
        let ((), got) = futures::join!(
            async {
                // The relay may cut the stream while the last bytes are on their way.
                let _ = c.dst.write_all(&over).await;
                let _ = c.dst.flush().await;
            },
            read_exactly(&mut c.src, limit, TRANSFER_TIMEOUT)
        );
        let got = got.expect("the first `data` bytes arrive");
        assert!(
            got[..] == over[..limit],
            "destination -> source bytes changed"
        );
        let (extra, _) = read_until_end(&mut c.src, EVENT_TIMEOUT)
            .await
            .expect("the source's stream ends");
        assert_eq!(extra, 0, "bytes over the limit reached the source");
        expect_both_reset(&mut c).await;
        expect_closed(&relay, mark, (&src, &d), "data_limit", Some((0, MIB)));

        expect_stats(
            &relay,
            &[
                ("/circuits/closedByReason/data_limit", 2),
                ("/bytesRelayed/srcToDst", MIB),
                ("/bytesRelayed/dstToSrc", 2 * MIB),
            ],
        );
    });
}

#[test]
fn duration_limit_resets_the_circuit_after_its_duration_not_before() {
    let duration = Duration::from_secs(2);
    let relay = start(json!({ "circuits": { "duration": duration.as_millis() as u64 } }));
    block_on(async {
        let d = reserved(&relay).await;
        let src = peer(&relay, false).await;
        let c = open_circuit(&relay, &src, &d).await;
        let opened = Instant::now();
        assert_eq!(c.connect_reply.limit.and_then(|l| l.duration), Some(2));
        let Circuit {
            src: mut s, dst: t, ..
        } = c;

        // The destination echoes; the source sends one byte every 100 ms.
        let echo = async_std::task::spawn(async move {
            let (r, mut w) = futures::AsyncReadExt::split(t);
            let _ = futures::io::copy(r, &mut w).await;
        });
        let mut last_ok = None;
        let mut ended = None;
        for i in 0..60u8 {
            let round = async {
                s.write_all(&[i]).await.map_err(|e| e.to_string())?;
                s.flush().await.map_err(|e| e.to_string())?;
                let b = read_exactly(&mut s, 1, Duration::from_secs(2)).await?;
                if b[0] == i {
                    Ok(())
                } else {
                    Err(format!("echoed {} for {i}", b[0]))
                }
            };
            match round.await {
                Ok(()) => last_ok = Some(opened.elapsed()),
                Err(e) => {
                    ended = Some((opened.elapsed(), e));
                    break;
                }
            }
            async_std::task::sleep(Duration::from_millis(100)).await;
        }
        let last_ok = last_ok.expect("round trips before the limit");
        let (ended_at, how) = ended.expect("the circuit ended");
        assert!(
            last_ok >= duration - Duration::from_millis(400),
            "the circuit stopped carrying data after {last_ok:?}, before its {duration:?} ({how})"
        );
        assert!(
            ended_at >= duration - Duration::from_millis(100),
            "the circuit ended after {ended_at:?}, before its {duration:?}: {how}"
        );
        assert!(
            ended_at < duration + Duration::from_millis(1500),
            "the circuit outlived its {duration:?}: ended after {ended_at:?}"
        );
        wait_reset(&mut s, EVENT_TIMEOUT)
            .await
            .expect("the source's stream is reset");
        echo.await;

        let closed = expect_closed(&relay, 0, (&src, &d), "duration_limit", None);
        let ms = closed["durationMs"].as_u64().unwrap_or_default();
        assert!(
            (2000..3000).contains(&ms),
            "durationMs {ms} for a 2 s limit: {closed}"
        );
        expect_stats(&relay, &[("/circuits/closedByReason/duration_limit", 1)]);
    });
}

#[test]
fn reservation_expires_after_its_ttl() {
    let relay = start(json!({ "reservations": { "ttl": 1000 } }));
    block_on(async {
        let r = relay.peer_id();
        let a = peer(&relay, true).await;
        let before = unix_now();
        let reply = a.reserve_ok(r).await.unwrap();
        let expire = reply.reservation.unwrap().expire;
        assert!(
            (before + 1..=unix_now() + 1).contains(&expire),
            "expire {expire} for a 1 s ttl at {before}"
        );
        relay
            .wait_for_event(
                "reservation_expired",
                |e| field(e, "peerId") == a.peer_id().to_string(),
                Duration::from_secs(5),
            )
            .expect("reservation_expired logged");
        let src = peer(&relay, false).await;
        expect_connect(
            &relay,
            &src,
            a.peer_id(),
            Status::NoReservation,
            "CONNECT after the reservation expired",
        )
        .await;
        expect_stats(
            &relay,
            &[("/reservations/expired", 1), ("/reservations/active", 0)],
        );
        // A fresh reservation on the same connection is a new one.
        a.reserve_ok(r).await.expect("reserves again");
    });
}

#[test]
fn a_circuit_closed_by_both_ends_reports_its_bytes_each_way() {
    let relay = start(json!({}));
    block_on(async {
        let d = reserved(&relay).await;
        let src = peer(&relay, false).await;
        let mut c = open_circuit(&relay, &src, &d).await;
        let forth = payload(100_000, 4);
        let back = payload(70_000, 5);
        let got = transfer(&mut c.src, &mut c.dst, &forth).await.unwrap();
        assert!(got == forth);
        let got = transfer(&mut c.dst, &mut c.src, &back).await.unwrap();
        assert!(got == back);

        // The live circuit is listed with its counts.
        let listed = relay.ctl(&["circuits"]);
        let entry = listed
            .get("circuits")
            .unwrap_or(&listed)
            .as_array()
            .and_then(|list| {
                list.iter()
                    .find(|c| field(c, "src") == src.peer_id().to_string())
            })
            .unwrap_or_else(|| panic!("bsv-p2p-ctl circuits does not list the circuit: {listed}"));
        assert_eq!(field(entry, "dst"), d.peer_id().to_string(), "{entry}");
        assert_eq!(entry["bytesSrcToDst"].as_u64(), Some(100_000), "{entry}");
        assert_eq!(entry["bytesDstToSrc"].as_u64(), Some(70_000), "{entry}");
        assert_eq!(
            entry["limit"],
            json!({ "durationSecs": 3600, "dataBytes": 1u64 << 30 }),
            "{entry}"
        );

        // A half-close travels through the relay; the other way still works.
        c.src.close().await.unwrap();
        let (extra, _) = read_until_end(&mut c.dst, EVENT_TIMEOUT).await.unwrap();
        assert_eq!(extra, 0);
        let tail = payload(1000, 6);
        let got = transfer(&mut c.dst, &mut c.src, &tail)
            .await
            .expect("the destination still sends after the source's half-close");
        assert!(got == tail);
        c.dst.close().await.unwrap();
        let (extra, _) = read_until_end(&mut c.src, EVENT_TIMEOUT).await.unwrap();
        assert_eq!(extra, 0);

        expect_closed(&relay, 0, (&src, &d), "done", Some((100_000, 71_000)));
        expect_stats(
            &relay,
            &[
                ("/circuits/closedByReason/done", 1),
                ("/circuits/opened", 1),
                ("/circuits/closed", 1),
                ("/bytesRelayed/srcToDst", 100_000),
                ("/bytesRelayed/dstToSrc", 71_000),
            ],
        );
    });
}

#[test]
fn silent_peers_are_given_up_on_after_the_request_timeout() {
    // The relay's bound on waiting for a request or a stop answer.
    let timeout = Duration::from_secs(10);
    let relay = start(json!({}));
    block_on(async {
        let r = relay.peer_id();
        let src = peer(&relay, false).await;
        let sleeper = reserved(&relay).await;
        let idle = peer(&relay, false).await;
        let started = Instant::now();

        // A destination that takes the stop stream and never answers: the
        // source gets CONNECTION_FAILED once the relay stops waiting.
        let stalled = async {
            let (asked, held) = futures::join!(
                src.connect_via(r, sleeper.peer_id()),
                read_connect(&sleeper)
            );
            let _held = held.expect("the sleeper reads CONNECT");
            let (reply, _) = asked.expect("CONNECT answered");
            (reply, started.elapsed())
        };
        // A hop stream on which nothing is ever sent is closed, unanswered.
        let silent = async {
            let mut stream = idle.open_hop(r).await.expect("hop stream");
            let ended = read_until_end(&mut stream, timeout + Duration::from_secs(5)).await;
            (ended, started.elapsed())
        };
        let ((reply, answered_at), (ended, closed_at)) = futures::join!(stalled, silent);

        expect_status(
            &reply,
            Status::ConnectionFailed,
            "destination that never answers",
        );
        assert!(
            answered_at >= timeout - Duration::from_millis(500),
            "the relay gave up on the stop answer after only {answered_at:?}"
        );
        let (bytes, _) = ended.expect("the silent hop stream is closed");
        assert_eq!(bytes, 0, "the relay answered a request never sent");
        assert!(
            closed_at >= timeout - Duration::from_millis(500),
            "the relay closed the silent stream after only {closed_at:?}"
        );

        expect_stats(
            &relay,
            &[
                ("/circuits/denied/connection_failed", 1),
                ("/circuits/active", 0),
            ],
        );
    });
}
