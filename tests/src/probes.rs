//! The byte-level probes the tests push through the relay: an echo protocol
//! (everything sent comes back, checked byte for byte), a sink (one-way bulk
//! data, answered with the count received) and `/ipfs/ping/1.0.0` round trips.
//! Payloads follow a position-dependent pattern so that a lost, duplicated or
//! reordered chunk is caught, not just a short count.

use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Stream, StreamProtocol};

pub const ECHO: StreamProtocol = StreamProtocol::new("/bsv-p2p-test/echo/1.0.0");
pub const SINK: StreamProtocol = StreamProtocol::new("/bsv-p2p-test/sink/1.0.0");
pub const PING: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");

/// Size of one ping payload, fixed by the ping protocol.
pub const PING_SIZE: usize = 32;
/// Write and read size of bulk transfers.
const CHUNK: usize = 64 * 1024;

/// A finished transfer.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Transfer {
    /// Megabytes (10^6 bytes) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The payload byte at `offset` of a transfer.
pub fn pattern_byte(offset: u64) -> u8 {
    (offset.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ offset as u8
}

fn fill(buf: &mut [u8], offset: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(offset + i as u64);
    }
}

fn first_mismatch(buf: &[u8], offset: u64) -> Option<u64> {
    buf.iter()
        .enumerate()
        .find(|(i, b)| **b != pattern_byte(offset + *i as u64))
        .map(|(i, _)| offset + i as u64)
}

/// Serves echo streams until `incoming` ends: each stream gets back every byte
/// it sends, and its write half is closed once its read half ends.
pub async fn serve_echo(mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((_, stream)) = incoming.next().await {
        async_std::task::spawn(async move {
            let (reader, mut writer) = stream.split();
            let reader = futures::io::BufReader::with_capacity(CHUNK, reader);
            if futures::io::copy_buf(reader, &mut writer).await.is_ok() {
                let _ = writer.close().await;
            }
        });
    }
}

/// Serves sink streams until `incoming` ends: reads to the end, then answers
/// with the number of bytes read (u64, big endian).
pub async fn serve_sink(mut incoming: libp2p_stream::IncomingStreams) {
    while let Some((_, mut stream)) = incoming.next().await {
        async_std::task::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => total += n as u64,
                    Err(_) => return,
                }
            }
            if stream.write_all(&total.to_be_bytes()).await.is_ok() {
                let _ = stream.close().await;
            }
        });
    }
}

/// Sends `bytes` of the pattern on an echo stream while reading them back, and
/// checks every byte and the end of the stream.
pub async fn echo(stream: Stream, bytes: u64) -> Result<Transfer, String> {
    let started = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let send = async move {
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while sent < bytes {
            let n = (bytes - sent).min(CHUNK as u64) as usize;
            fill(&mut buf[..n], sent);
            writer
                .write_all(&buf[..n])
                .await
                .map_err(|e| format!("echo: write failed after {sent} of {bytes} bytes: {e}"))?;
            sent += n as u64;
        }
        writer
            .close()
            .await
            .map_err(|e| format!("echo: closing the write half failed: {e}"))
    };
    let receive = async move {
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < bytes {
            let want = (bytes - got).min(CHUNK as u64) as usize;
            let n = reader
                .read(&mut buf[..want])
                .await
                .map_err(|e| format!("echo: read failed after {got} of {bytes} bytes: {e}"))?;
            if n == 0 {
                return Err(format!("echo: stream ended after {got} of {bytes} bytes"));
            }
            if let Some(at) = first_mismatch(&buf[..n], got) {
                return Err(format!("echo: byte {at} came back altered"));
            }
            got += n as u64;
        }
        match reader.read(&mut buf).await {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("echo: {n} bytes more than were sent came back")),
            Err(e) => Err(format!("echo: reading the end of the stream failed: {e}")),
        }
    };
    futures::try_join!(send, receive)?;
    Ok(Transfer {
        bytes,
        elapsed: started.elapsed(),
    })
}

/// Sends `bytes` on a sink stream and waits for the count the far end read.
pub async fn sink(mut stream: Stream, bytes: u64) -> Result<Transfer, String> {
    let started = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    fill(&mut buf, 0);
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(CHUNK as u64) as usize;
        stream
            .write_all(&buf[..n])
            .await
            .map_err(|e| format!("sink: write failed after {sent} of {bytes} bytes: {e}"))?;
        sent += n as u64;
    }
    stream
        .close()
        .await
        .map_err(|e| format!("sink: closing the write half failed: {e}"))?;
    let mut count = [0u8; 8];
    stream
        .read_exact(&mut count)
        .await
        .map_err(|e| format!("sink: no byte count came back: {e}"))?;
    let received = u64::from_be_bytes(count);
    if received != bytes {
        return Err(format!(
            "sink: sent {bytes} bytes, the far end read {received}"
        ));
    }
    Ok(Transfer {
        bytes,
        elapsed: started.elapsed(),
    })
}

/// `rounds` pings on one stream; returns each round trip time.
pub async fn ping(stream: &mut Stream, rounds: usize) -> Result<Vec<Duration>, String> {
    let mut rtts = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let payload: [u8; PING_SIZE] = rand::random();
        let started = Instant::now();
        stream
            .write_all(&payload)
            .await
            .map_err(|e| format!("ping {round}: write failed: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("ping {round}: flush failed: {e}"))?;
        let mut back = [0u8; PING_SIZE];
        stream
            .read_exact(&mut back)
            .await
            .map_err(|e| format!("ping {round}: no answer: {e}"))?;
        if back != payload {
            return Err(format!("ping {round}: the answer differs from the payload"));
        }
        rtts.push(started.elapsed());
    }
    Ok(rtts)
}

/// The `q`-quantile (0..=1) of `samples`, by nearest rank.
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_catches_shifted_chunks() {
        let mut a = vec![0u8; 4096];
        fill(&mut a, 0);
        assert_eq!(first_mismatch(&a, 0), None);
        assert!(first_mismatch(&a[1..], 0).is_some());
        assert!(first_mismatch(&a, CHUNK as u64).is_some());
    }

    #[test]
    fn quantile_by_nearest_rank() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(quantile(&s, 0.5), Duration::from_micros(50));
        assert_eq!(quantile(&s, 0.99), Duration::from_micros(99));
        assert_eq!(quantile(&s, 1.0), Duration::from_micros(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
