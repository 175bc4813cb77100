//! The data path: moving bytes between the two halves of a circuit.
//!
//! One task per circuit polls both directions itself: no channel and no lock
//! of ours between a read and the matching write, one fixed buffer per
//! direction allocated when the circuit opens, and backpressure for free (a
//! direction stops reading while its buffer waits for the other side to take
//! it). Each direction is counted and limited on its own, as the spec says.
//! An optional pace (bytes per second, each way) is a token bucket consulted
//! once per read, never per byte, and only when configured.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncWrite, FutureExt};
use futures_timer::Delay;

/// Bytes buffered per direction. Large enough that one read usually drains
/// what yamux holds for the stream, small enough that 1,000 circuits cost
/// 32 MiB at most.
pub const BUFFER: usize = 16 * 1024;

/// Live byte counts of a circuit, read by the control socket while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub src_to_dst: AtomicU64,
    pub dst_to_src: AtomicU64,
}

/// Why a circuit ended; its word on the control socket and in logs is
/// `proto::CircuitEnd`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// Both sides closed their writing half.
    Done,
    DataLimit,
    DurationLimit,
    /// One side reset or failed.
    Reset,
    /// The relay is stopping.
    Shutdown,
    /// The source's or the destination's connection to the relay closed.
    Disconnected,
    /// No byte moved either way for the idle timeout.
    Idle,
}

/// A direction's pace: a token bucket holding at most one second of bytes.
struct Pace {
    per_second: u64,
    tokens: u64,
    refilled: Instant,
    wait: Option<Delay>,
}

impl Pace {
    fn new(per_second: u64) -> Self {
        Self {
            per_second,
            tokens: per_second,
            refilled: Instant::now(),
            wait: None,
        }
    }

    /// Bytes that may be read now; 0 after arming a timer for when a
    /// useful amount (a tenth of a second's worth, or a buffer) is there.
    fn allowance(&mut self, cx: &mut Context<'_>) -> usize {
        if let Some(w) = &mut self.wait {
            if w.poll_unpin(cx).is_pending() {
                return 0;
            }
            self.wait = None;
        }
        let now = Instant::now();
        let earned = (now.saturating_duration_since(self.refilled).as_nanos()
            * u128::from(self.per_second)
            / 1_000_000_000) as u64;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(self.per_second);
            self.refilled = now;
        }
        if self.tokens > 0 {
            return usize::try_from(self.tokens).unwrap_or(usize::MAX);
        }
        let want = (self.per_second / 10).clamp(1, BUFFER as u64);
        let nanos = u128::from(want) * 1_000_000_000 / u128::from(self.per_second);
        let mut w = Delay::new(Duration::from_nanos(nanos.min(u64::MAX as u128) as u64));
        let _ = w.poll_unpin(cx);
        self.wait = Some(w);
        0
    }

    fn spend(&mut self, n: usize) {
        self.tokens = self.tokens.saturating_sub(n as u64);
    }
}

struct Direction {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// The reader reached EOF and the writer has been closed.
    finished: bool,
    read_eof: bool,
    /// Bytes still allowed through; `None`: no data limit.
    allowance: Option<u64>,
    pace: Option<Pace>,
}

enum Step {
    Progress,
    Blocked,
    Finished,
    LimitReached,
}

impl Direction {
    fn new(limit: Option<u64>) -> Self {
        Self {
            buf: vec![0u8; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            finished: false,
            read_eof: false,
            allowance: limit,
            pace: None,
        }
    }

    /// Moves what it can from `r` to `w`; `Blocked` means both sides are pending.
    fn poll_step<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        w: &mut W,
        counter: &AtomicU64,
    ) -> io::Result<Step>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.finished {
            return Ok(Step::Finished);
        }
        if self.start < self.end {
            return match Pin::new(w).poll_write(cx, &self.buf[self.start..self.end]) {
                Poll::Ready(Ok(0)) => Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.start += n;
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                    Ok(Step::Progress)
                }
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => Ok(Step::Blocked),
            };
        }
        if self.read_eof {
            return match Pin::new(w).poll_close(cx) {
                Poll::Ready(_) => {
                    self.finished = true;
                    Ok(Step::Finished)
                }
                Poll::Pending => Ok(Step::Blocked),
            };
        }
        if self.allowance == Some(0) {
            // Exactly the limit has passed, which is allowed: only a byte
            // beyond it ends the circuit (it is dropped, never forwarded).
            // Until then the other direction keeps its own allowance, and an
            // end of stream here still closes this direction cleanly.
            return match Pin::new(r).poll_read(cx, &mut self.buf[..1]) {
                Poll::Ready(Ok(0)) => {
                    self.read_eof = true;
                    Ok(Step::Progress)
                }
                Poll::Ready(Ok(_)) => Ok(Step::LimitReached),
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => Ok(Step::Blocked),
            };
        }
        let mut room = match self.allowance {
            Some(a) => (a as usize).min(self.buf.len()),
            None => self.buf.len(),
        };
        if let Some(p) = &mut self.pace {
            room = room.min(p.allowance(cx));
            if room == 0 {
                return Ok(Step::Blocked);
            }
        }
        match Pin::new(r).poll_read(cx, &mut self.buf[..room]) {
            Poll::Ready(Ok(0)) => {
                self.read_eof = true;
                Ok(Step::Progress)
            }
            Poll::Ready(Ok(n)) => {
                self.start = 0;
                self.end = n;
                if let Some(p) = &mut self.pace {
                    p.spend(n);
                }
                if let Some(a) = &mut self.allowance {
                    *a -= n as u64;
                }
                Ok(Step::Progress)
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(Step::Blocked),
        }
    }
}

/// Relays between `src` and `dst` until both sides finish, a byte arrives
/// past a direction's data limit, the duration is up, either side fails, or
/// `stop` resolves (with the reason it gives). Dropping the streams afterwards
/// resets whatever is still open.
pub struct Splice<S, D, X> {
    src: S,
    dst: D,
    forward: Direction,
    backward: Direction,
    counters: Arc<Counters>,
    deadline: Option<Delay>,
    stop: X,
}

impl<S, D, X> Splice<S, D, X> {
    pub fn new(
        src: S,
        dst: D,
        data_limit: Option<u64>,
        duration: Option<Duration>,
        counters: Arc<Counters>,
        stop: X,
    ) -> Self {
        Self {
            src,
            dst,
            forward: Direction::new(data_limit),
            backward: Direction::new(data_limit),
            counters,
            deadline: duration.map(Delay::new),
            stop,
        }
    }

    /// At most `per_second` bytes a second each way (`None`: no pace).
    pub fn paced(mut self, per_second: Option<u64>) -> Self {
        self.forward.pace = per_second.map(Pace::new);
        self.backward.pace = per_second.map(Pace::new);
        self
    }
}

impl<S, D, X> Future for Splice<S, D, X>
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: AsyncRead + AsyncWrite + Unpin,
    X: Future<Output = End> + Unpin,
{
    type Output = End;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = &mut *self;
        if let Poll::Ready(end) = this.stop.poll_unpin(cx) {
            return Poll::Ready(end);
        }
        if let Some(d) = &mut this.deadline {
            if d.poll_unpin(cx).is_ready() {
                return Poll::Ready(End::DurationLimit);
            }
        }
        // Bounded so one busy circuit cannot starve the other tasks of its thread.
        for _ in 0..64 {
            let f =
                this.forward
                    .poll_step(cx, &mut this.src, &mut this.dst, &this.counters.src_to_dst);
            let b = this.backward.poll_step(
                cx,
                &mut this.dst,
                &mut this.src,
                &this.counters.dst_to_src,
            );
            match (f, b) {
                (Err(_), _) | (_, Err(_)) => return Poll::Ready(End::Reset),
                (Ok(Step::LimitReached), _) | (_, Ok(Step::LimitReached)) => {
                    return Poll::Ready(End::DataLimit)
                }
                (Ok(Step::Finished), Ok(Step::Finished)) => return Poll::Ready(End::Done),
                (Ok(Step::Progress), _) | (_, Ok(Step::Progress)) => continue,
                _ => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    /// An in-memory stream: reads from `input`, collects what is written.
    struct Mem {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
        closed: bool,
    }

    impl Mem {
        fn new(data: Vec<u8>) -> Self {
            Self {
                input: Cursor::new(data),
                output: Vec::new(),
                closed: false,
            }
        }
    }

    impl AsyncRead for Mem {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.input).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Mem {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            // Accept in small pieces to exercise partial writes.
            let n = buf.len().min(1000);
            self.output.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.closed = true;
            Poll::Ready(Ok(()))
        }
    }

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    type MemSplice = Splice<Mem, Mem, futures::future::Pending<End>>;

    /// Relays `up` bytes from the source and `down` from the destination
    /// under a per-direction data limit, to the end; the splice keeps both
    /// sides' output and the counters.
    fn relay(up: usize, down: usize, limit: Option<u64>) -> (End, MemSplice, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let mut splice = Splice::new(
            Mem::new(data(up, 1)),
            Mem::new(data(down, 2)),
            limit,
            None,
            counters.clone(),
            futures::future::pending::<End>(),
        );
        let end = futures::executor::block_on(&mut splice);
        (end, splice, counters)
    }

    fn counted(c: &Counters) -> (u64, u64) {
        (
            c.src_to_dst.load(Ordering::Relaxed),
            c.dst_to_src.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn both_directions_arrive_intact_and_are_counted_apart() {
        let (end, splice, counters) = relay(100_000, 70_000, None);
        assert_eq!(end, End::Done);
        assert_eq!(splice.dst.output, data(100_000, 1));
        assert_eq!(splice.src.output, data(70_000, 2));
        assert!(splice.src.closed && splice.dst.closed);
        assert_eq!(counted(&counters), (100_000, 70_000));
    }

    #[test]
    fn data_limit_passes_exactly_the_limit_per_direction() {
        let (end, splice, counters) = relay(50_000, 10_000, Some(20_000));
        assert_eq!(end, End::DataLimit);
        assert_eq!(splice.dst.output, data(50_000, 1)[..20_000]);
        assert!(counted(&counters).1 <= 10_000);
    }

    #[test]
    fn exactly_the_limit_each_way_is_not_over_it() {
        let (end, splice, counters) = relay(20_000, 20_000, Some(20_000));
        assert_eq!(end, End::Done);
        assert_eq!(splice.dst.output, data(20_000, 1));
        assert_eq!(splice.src.output, data(20_000, 2));
        assert_eq!(counted(&counters), (20_000, 20_000));
    }

    /// A stream whose reads stay ready: the pace alone decides.
    #[test]
    fn a_paced_circuit_moves_at_its_pace_each_way() {
        let counters = Arc::new(Counters::default());
        let mut splice = Splice::new(
            Mem::new(data(60_000, 1)),
            Mem::new(data(30_000, 2)),
            None,
            None,
            counters.clone(),
            futures::future::pending::<End>(),
        )
        .paced(Some(100_000));
        let started = Instant::now();
        let end = futures::executor::block_on(&mut splice);
        let took = started.elapsed();
        assert_eq!(end, End::Done);
        assert_eq!(splice.dst.output, data(60_000, 1));
        assert_eq!(splice.src.output, data(30_000, 2));
        // Within the first second's allowance: no waiting, both intact.
        assert!(took < Duration::from_secs(2), "{took:?}");
        let mut slow = Splice::new(
            Mem::new(data(25_000, 1)),
            Mem::new(Vec::new()),
            None,
            None,
            Arc::new(Counters::default()),
            futures::future::pending::<End>(),
        )
        .paced(Some(10_000));
        let started = Instant::now();
        assert_eq!(futures::executor::block_on(&mut slow), End::Done);
        let took = started.elapsed();
        // 10,000 at once, then 15,000 more at 10,000 a second.
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
            "{took:?}"
        );
        assert_eq!(slow.dst.output, data(25_000, 1));
    }

    #[test]
    fn one_byte_over_the_limit_ends_the_circuit_without_passing() {
        let (end, splice, counters) = relay(20_000, 20_001, Some(20_000));
        assert_eq!(end, End::DataLimit);
        assert_eq!(splice.src.output, data(20_000, 2));
        assert_eq!(counted(&counters).1, 20_000);
    }
}
