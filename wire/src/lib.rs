//! The circuit relay v2 wire messages (libp2p specs, `relay/circuit-v2.md`):
//! `HopMessage`, `StopMessage` and the reservation voucher, each sent as one
//! protobuf message behind an unsigned-varint length prefix.
//!
//! Hand-written rather than generated: eight small messages do not justify a
//! code generator, and decoding them ourselves lets a malformed message be
//! told apart from an unexpected one, which the spec answers with different
//! status codes.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";
pub const STOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/stop";

/// Largest message accepted, as the other implementations do.
pub const MAX_MESSAGE: usize = 4096;

/// Signed-envelope domain and payload type (multicodec 0x0302) of vouchers.
pub const VOUCHER_DOMAIN: &str = "libp2p-relay-rsvp";
pub const VOUCHER_PAYLOAD_TYPE: [u8; 2] = [0x03, 0x02];

pub mod hop_type {
    pub const RESERVE: u64 = 0;
    pub const CONNECT: u64 = 1;
    pub const STATUS: u64 = 2;
}

pub mod stop_type {
    pub const CONNECT: u64 = 0;
    pub const STATUS: u64 = 1;
}

/// Status codes of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 100,
    ReservationRefused = 200,
    ResourceLimitExceeded = 201,
    PermissionDenied = 202,
    ConnectionFailed = 203,
    NoReservation = 204,
    MalformedMessage = 400,
    UnexpectedMessage = 401,
}

impl Status {
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            100 => Self::Ok,
            200 => Self::ReservationRefused,
            201 => Self::ResourceLimitExceeded,
            202 => Self::PermissionDenied,
            203 => Self::ConnectionFailed,
            204 => Self::NoReservation,
            400 => Self::MalformedMessage,
            401 => Self::UnexpectedMessage,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ReservationRefused => "reservation_refused",
            Self::ResourceLimitExceeded => "resource_limit_exceeded",
            Self::PermissionDenied => "permission_denied",
            Self::ConnectionFailed => "connection_failed",
            Self::NoReservation => "no_reservation",
            Self::MalformedMessage => "malformed_message",
            Self::UnexpectedMessage => "unexpected_message",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peer {
    pub id: Vec<u8>,
    pub addrs: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reservation {
    pub expire: u64,
    pub addrs: Vec<Vec<u8>>,
    pub voucher: Option<Vec<u8>>,
}

/// Circuit limits. `None` (or 0) means no limit in that dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limit {
    pub duration: Option<u32>,
    pub data: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HopMessage {
    /// Raw type: unknown values are kept to be answered as malformed.
    pub kind: Option<u64>,
    pub peer: Option<Peer>,
    pub reservation: Option<Reservation>,
    pub limit: Option<Limit>,
    pub status: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StopMessage {
    pub kind: Option<u64>,
    pub peer: Option<Peer>,
    pub limit: Option<Limit>,
    pub status: Option<u64>,
}

impl HopMessage {
    pub fn status(status: Status) -> Self {
        Self {
            kind: Some(hop_type::STATUS),
            status: Some(status as u64),
            ..Default::default()
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        if let Some(k) = self.kind {
            put_varint_field(&mut out, 1, k);
        }
        if let Some(p) = &self.peer {
            put_bytes_field(&mut out, 2, &p.encode());
        }
        if let Some(r) = &self.reservation {
            put_bytes_field(&mut out, 3, &r.encode());
        }
        if let Some(l) = &self.limit {
            put_bytes_field(&mut out, 4, &l.encode());
        }
        if let Some(s) = self.status {
            put_varint_field(&mut out, 5, s);
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for field in Fields::new(buf) {
            match field? {
                (1, Value::Varint(v)) => m.kind = Some(v),
                (2, Value::Bytes(b)) => m.peer = Some(Peer::decode(b)?),
                (3, Value::Bytes(b)) => m.reservation = Some(Reservation::decode(b)?),
                (4, Value::Bytes(b)) => m.limit = Some(Limit::decode(b)?),
                (5, Value::Varint(v)) => m.status = Some(v),
                (1..=5, _) => return Err(DecodeError("field with the wrong wire type")),
                _ => {}
            }
        }
        if m.kind.is_none() {
            return Err(DecodeError("missing required field type"));
        }
        Ok(m)
    }
}

impl StopMessage {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        if let Some(k) = self.kind {
            put_varint_field(&mut out, 1, k);
        }
        if let Some(p) = &self.peer {
            put_bytes_field(&mut out, 2, &p.encode());
        }
        if let Some(l) = &self.limit {
            put_bytes_field(&mut out, 3, &l.encode());
        }
        if let Some(s) = self.status {
            put_varint_field(&mut out, 4, s);
        }
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut m = Self::default();
        for field in Fields::new(buf) {
            match field? {
                (1, Value::Varint(v)) => m.kind = Some(v),
                (2, Value::Bytes(b)) => m.peer = Some(Peer::decode(b)?),
                (3, Value::Bytes(b)) => m.limit = Some(Limit::decode(b)?),
                (4, Value::Varint(v)) => m.status = Some(v),
                (1..=4, _) => return Err(DecodeError("field with the wrong wire type")),
                _ => {}
            }
        }
        if m.kind.is_none() {
            return Err(DecodeError("missing required field type"));
        }
        Ok(m)
    }
}

impl Peer {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        put_bytes_field(&mut out, 1, &self.id);
        for a in &self.addrs {
            put_bytes_field(&mut out, 2, a);
        }
        out
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut id = None;
        let mut addrs = Vec::new();
        for field in Fields::new(buf) {
            match field? {
                (1, Value::Bytes(b)) => id = Some(b.to_vec()),
                (2, Value::Bytes(b)) => addrs.push(b.to_vec()),
                (1 | 2, _) => return Err(DecodeError("peer field with the wrong wire type")),
                _ => {}
            }
        }
        Ok(Self {
            id: id.ok_or(DecodeError("peer without id"))?,
            addrs,
        })
    }
}

impl Reservation {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        put_varint_field(&mut out, 1, self.expire);
        for a in &self.addrs {
            put_bytes_field(&mut out, 2, a);
        }
        if let Some(v) = &self.voucher {
            put_bytes_field(&mut out, 3, v);
        }
        out
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Self::default();
        for field in Fields::new(buf) {
            match field? {
                (1, Value::Varint(v)) => r.expire = v,
                (2, Value::Bytes(b)) => r.addrs.push(b.to_vec()),
                (3, Value::Bytes(b)) => r.voucher = Some(b.to_vec()),
                (1..=3, _) => {
                    return Err(DecodeError("reservation field with the wrong wire type"))
                }
                _ => {}
            }
        }
        Ok(r)
    }
}

impl Limit {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        if let Some(d) = self.duration {
            put_varint_field(&mut out, 1, u64::from(d));
        }
        if let Some(d) = self.data {
            put_varint_field(&mut out, 2, d);
        }
        out
    }

    fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut l = Self::default();
        for field in Fields::new(buf) {
            match field? {
                (1, Value::Varint(v)) => {
                    l.duration =
                        Some(u32::try_from(v).map_err(|_| DecodeError("limit duration over u32"))?)
                }
                (2, Value::Varint(v)) => l.data = Some(v),
                (1 | 2, _) => return Err(DecodeError("limit field with the wrong wire type")),
                _ => {}
            }
        }
        Ok(l)
    }
}

/// The payload of a voucher envelope.
pub fn encode_voucher(relay: &[u8], peer: &[u8], expiration: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    put_bytes_field(&mut out, 1, relay);
    put_bytes_field(&mut out, 2, peer);
    put_varint_field(&mut out, 3, expiration);
    out
}

/// Decodes a voucher payload into (relay, peer, expiration).
pub fn decode_voucher(buf: &[u8]) -> Result<(Vec<u8>, Vec<u8>, u64), DecodeError> {
    let (mut relay, mut peer, mut exp) = (None, None, None);
    for field in Fields::new(buf) {
        match field? {
            (1, Value::Bytes(b)) => relay = Some(b.to_vec()),
            (2, Value::Bytes(b)) => peer = Some(b.to_vec()),
            (3, Value::Varint(v)) => exp = Some(v),
            _ => {}
        }
    }
    Ok((
        relay.ok_or(DecodeError("voucher without relay"))?,
        peer.ok_or(DecodeError("voucher without peer"))?,
        exp.ok_or(DecodeError("voucher without expiration"))?,
    ))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Why a framed read failed: the peer sent garbage, or the stream failed.
#[derive(Debug)]
pub enum ReadError {
    Malformed(&'static str),
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(m) => write!(f, "malformed message: {m}"),
            Self::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Reads one length-prefixed message. Reads byte-exact, so whatever follows
/// the message on the stream (relayed data) stays unread.
pub async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, ReadError> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.map_err(ReadError::Io)?;
        if i == 9 && b[0] > 1 {
            // The tenth byte holds bit 63 alone; more would wrap the length
            // around to a small number and frame the stream wrongly.
            return Err(ReadError::Malformed("length prefix overflows 64 bits"));
        }
        len |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            if len as usize > MAX_MESSAGE {
                return Err(ReadError::Malformed("message over 4096 bytes"));
            }
            let mut buf = vec![0u8; len as usize];
            s.read_exact(&mut buf).await.map_err(ReadError::Io)?;
            return Ok(buf);
        }
    }
    Err(ReadError::Malformed("length prefix is not a varint"))
}

/// `msg` behind its unsigned-varint length prefix, as [`write_frame`] sends it.
pub fn encode_frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 3);
    put_varint(&mut out, msg.len() as u64);
    out.extend_from_slice(msg);
    out
}

/// Writes one length-prefixed message and flushes it.
pub async fn write_frame<S: AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) -> io::Result<()> {
    s.write_all(&encode_frame(msg)).await?;
    s.flush().await
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates the fields of one protobuf message.
struct Fields<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, failed: false }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(DecodeError("truncated varint"))?;
            self.buf = rest;
            if i == 9 && b > 1 {
                // Bits past 63 would be dropped, decoding another number.
                return Err(DecodeError("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError("truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), DecodeError> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| DecodeError("length overflow"))?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return Err(DecodeError("unsupported wire type")),
        };
        Ok((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let r = self.field();
        self.failed = r.is_err();
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_message_roundtrips_with_every_field() {
        let m = HopMessage {
            kind: Some(hop_type::STATUS),
            peer: Some(Peer {
                id: vec![1, 2, 3],
                addrs: vec![vec![4, 5]],
            }),
            reservation: Some(Reservation {
                expire: 1_700_000_000,
                addrs: vec![vec![6]],
                voucher: Some(vec![7, 8]),
            }),
            limit: Some(Limit {
                duration: Some(120),
                data: Some(1 << 17),
            }),
            status: Some(Status::Ok as u64),
        };
        assert_eq!(HopMessage::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn absent_limit_fields_stay_absent() {
        let m = HopMessage {
            kind: Some(hop_type::STATUS),
            limit: Some(Limit {
                duration: None,
                data: Some(5),
            }),
            ..Default::default()
        };
        let back = HopMessage::decode(&m.encode()).unwrap();
        assert_eq!(back.limit.unwrap().duration, None);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bad in [
            &[0xff_u8; 12][..],
            &[0x0a, 0x05, 0x01][..],
            &[0x12, 0x02, 0x0a, 0x05][..],
            &[][..],
        ] {
            assert!(HopMessage::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let mut buf = HopMessage::status(Status::Ok).encode();
        put_varint_field(&mut buf, 15, 9);
        put_bytes_field(&mut buf, 16, b"future");
        assert_eq!(
            HopMessage::decode(&buf).unwrap(),
            HopMessage::status(Status::Ok)
        );
    }

    #[test]
    fn frames_over_the_limit_are_refused() {
        let mut wire = Vec::new();
        put_varint(&mut wire, 5000);
        wire.extend(std::iter::repeat_n(0, 5000));
        let r = futures::executor::block_on(read_frame(&mut futures::io::Cursor::new(wire)));
        assert!(matches!(r, Err(ReadError::Malformed(_))));
    }

    /// 2^64 + 5 in ten bytes used to wrap to 5 and read a 5-byte frame.
    #[test]
    fn a_length_prefix_over_64_bits_is_refused_not_wrapped() {
        let mut wire = vec![0x85, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02];
        wire.extend_from_slice(b"hello");
        let r = futures::executor::block_on(read_frame(&mut futures::io::Cursor::new(wire)));
        assert!(matches!(r, Err(ReadError::Malformed(_))), "{r:?}");
    }

    /// A type of 2^64 + 2 used to decode as STATUS (2).
    #[test]
    fn a_varint_over_64_bits_is_refused_not_wrapped() {
        let mut buf = vec![
            0x08, 0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02,
        ];
        assert_eq!(
            HopMessage::decode(&buf),
            Err(DecodeError("varint overflows 64 bits"))
        );
        // u64::MAX itself still fits: nine bytes of 7 bits and bit 63.
        buf[1..].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(HopMessage::decode(&buf).unwrap().kind, Some(u64::MAX));
    }
}
