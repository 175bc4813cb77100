//! The bounds that keep the HTTP port answering while strangers misbehave
//! (the threat model in DESIGN.md). The sidecar's own descriptors are few;
//! every other one belongs to an HTTP client, so without bounds a client
//! trickling bytes on many sockets takes them all, and then the control
//! socket cannot reconnect either. Here:
//!
//! - at most `max_connections` are open at once. When one more arrives, the
//!   connection that has waited longest without completing a request is
//!   closed to make room, so trickling clients push each other out while a
//!   quick client gets in and is answered ([`Gate`]);
//! - a request head must arrive within `request_timeout` of the connection
//!   (or, on a kept-alive one, of its first byte); a kept-alive connection
//!   with no new request, or owing a body the server drains, is closed after
//!   `idle_timeout`; a response the client stops reading is abandoned after
//!   `write_timeout` ([`Guarded`]).
//!
//! The phases are read off the I/O itself: HTTP/1.1 alternates reading a
//! request and writing its answer, so the first write ends the request and
//! the first read after writing ends the answer. Only "a complete request is
//! being answered" has to be said by the server ([`Exchange::answering`]),
//! since no I/O marks it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_io::Timer;
use futures::channel::oneshot;
use futures::future::{self, Either};
use futures::io::{AsyncRead, AsyncWrite};

/// The bounds, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

/// Why the sidecar, not the client, ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// Closed to make room at the cap, or refused at the cap because every
    /// open connection was being answered.
    Cap,
    /// No complete request within `request_timeout`.
    RequestTimeout,
    /// The client did not take the answer within `write_timeout`.
    WriteTimeout,
}

impl Shed {
    pub const ALL: [Shed; 3] = [Shed::Cap, Shed::RequestTimeout, Shed::WriteTimeout];

    pub fn as_str(self) -> &'static str {
        match self {
            Shed::Cap => "cap",
            Shed::RequestTimeout => "request_timeout",
            Shed::WriteTimeout => "write_timeout",
        }
    }
}

/// The open connections, at most `max_connections` of them.
pub struct Gate {
    limits: Limits,
    seats: Mutex<Seats>,
    shed: [AtomicU64; Shed::ALL.len()],
}

#[derive(Default)]
struct Seats {
    next: u64,
    taken: HashMap<u64, Seat>,
}

struct Seat {
    exchange: Exchange,
    /// Dropping it ends the connection's [`Ticket::watch`].
    _evict: oneshot::Sender<()>,
    /// Ends when the connection's [`Ticket`] is dropped, after its socket.
    released: oneshot::Receiver<()>,
}

/// What [`Gate::admit`] decided about a connection just accepted.
pub struct Admission {
    /// Its seat; `None`: refused, to be closed at once.
    pub ticket: Option<Ticket>,
    /// The connection closed to make room for it, until it lets go of its
    /// socket.
    pub evicted: Option<Closing>,
}

/// A connection closed to make room, still letting go of its socket.
pub struct Closing(oneshot::Receiver<()>);

impl Closing {
    /// Waits until the socket is closed: at once, unless the connection's
    /// task is slow to be scheduled. Bounded, so that a connection that
    /// never lets go cannot hold the door shut.
    pub async fn released(self) {
        let _ = async_std::future::timeout(Duration::from_secs(1), self.0).await;
    }
}

impl Gate {
    pub fn new(limits: Limits) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            seats: Mutex::new(Seats::default()),
            shed: Default::default(),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Seats a connection just accepted. At the cap, first closes the
    /// connection that has waited longest for a complete request, or
    /// refuses the newcomer when every open connection is being answered
    /// (which the relay's `--timeout` and `write_timeout` keep short).
    pub fn admit(self: &Arc<Self>, peer: Option<SocketAddr>) -> Admission {
        let now = Instant::now();
        let mut seats = lock(&self.seats);
        let mut evicted = None;
        if seats.taken.len() >= self.limits.max_connections {
            self.count(Shed::Cap);
            let longest = seats
                .taken
                .iter()
                .filter_map(|(id, seat)| seat.exchange.waiting_since().map(|since| (since, *id)))
                .min();
            let Some((since, id)) = longest else {
                log::debug!(
                    "refusing the HTTP connection from {}: all {} open connections are being answered",
                    Peer(peer),
                    seats.taken.len()
                );
                return Admission {
                    ticket: None,
                    evicted: None,
                };
            };
            if let Some(seat) = seats.taken.remove(&id) {
                log::debug!(
                    "closing the HTTP connection from {} to make room: no complete request in {} ms",
                    Peer(seat.exchange.0.peer),
                    now.saturating_duration_since(since).as_millis()
                );
                evicted = Some(Closing(seat.released));
            }
        }
        let id = seats.next;
        seats.next += 1;
        let exchange = Exchange(Arc::new(Inner {
            peer,
            state: Mutex::new(State {
                phase: Phase::Request,
                waiting_since: now,
                deadline: now + self.limits.request_timeout,
                timer: Timer::never(),
                armed: None,
                expired: None,
            }),
        }));
        let (evict, on_evict) = oneshot::channel();
        let (on_release, released) = oneshot::channel();
        seats.taken.insert(
            id,
            Seat {
                exchange: exchange.clone(),
                _evict: evict,
                released,
            },
        );
        Admission {
            ticket: Some(Ticket {
                gate: self.clone(),
                id,
                exchange,
                evicted: on_evict,
                _released: on_release,
            }),
            evicted,
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        lock(&self.seats).taken.len()
    }

    /// Connections shed since the start, by why.
    pub fn shed(&self) -> [(Shed, u64); Shed::ALL.len()] {
        Shed::ALL.map(|why| (why, self.shed[why as usize].load(Ordering::Relaxed)))
    }

    fn count(&self, why: Shed) {
        self.shed[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// One seat at the [`Gate`], given up when dropped.
pub struct Ticket {
    gate: Arc<Gate>,
    id: u64,
    exchange: Exchange,
    evicted: oneshot::Receiver<()>,
    _released: oneshot::Sender<()>,
}

impl Ticket {
    /// What the server tells about the request under way.
    pub fn exchange(&self) -> Exchange {
        self.exchange.clone()
    }

    /// `io` with this connection's deadlines.
    pub fn guard<S>(&self, io: S) -> Guarded<S> {
        Guarded {
            io,
            gate: self.gate.clone(),
            exchange: self.exchange.clone(),
        }
    }

    /// Runs the connection's `work` until it ends, or drops it (and with it
    /// the socket, before the ticket) when the connection is closed to make
    /// room: `None`.
    pub async fn watch<T>(mut self, work: impl Future<Output = T>) -> Option<T> {
        let work = std::pin::pin!(work);
        match future::select(work, &mut self.evicted).await {
            Either::Left((done, _)) => Some(done),
            Either::Right(_) => None,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.gate.seats).taken.remove(&self.id);
    }
}

/// Where one connection is in its current request.
#[derive(Clone)]
pub struct Exchange(Arc<Inner>);

struct Inner {
    peer: Option<SocketAddr>,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request head, or bytes after an answer (a body being
    /// drained, the next head).
    Request,
    /// Kept alive after an answer, nothing read since.
    Idle,
    /// The head is in and the answer is being worked out: reads keep the
    /// request's deadline, and the connection is not closed to make room.
    Answering,
    /// Writing the answer.
    Writing,
}

struct State {
    phase: Phase,
    /// Accepted, or last answered: the wait a client must end with a request.
    waiting_since: Instant,
    deadline: Instant,
    timer: Timer,
    /// The deadline `timer` is set to.
    armed: Option<Instant>,
    /// The phase whose deadline passed, once it has.
    expired: Option<Phase>,
}

impl Exchange {
    /// The request head is complete and is being answered.
    pub fn answering(&self) {
        let mut state = self.lock();
        if state.phase == Phase::Request {
            state.phase = Phase::Answering;
        }
    }

    /// Since when the connection has waited for a complete request; `None`
    /// while one is being answered.
    fn waiting_since(&self) -> Option<Instant> {
        let state = self.lock();
        matches!(state.phase, Phase::Request | Phase::Idle).then_some(state.waiting_since)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.0.state)
    }
}

impl State {
    fn enter(&mut self, phase: Phase, deadline: Instant) {
        self.phase = phase;
        self.deadline = deadline;
    }

    /// The phase whose deadline has passed, counted and logged the first
    /// time it is seen.
    fn expired(&mut self, now: Instant, gate: &Gate, peer: Option<SocketAddr>) -> Option<Phase> {
        if self.expired.is_none() && now >= self.deadline {
            self.expired = Some(self.phase);
            let limits = gate.limits;
            match self.phase {
                Phase::Idle => log::debug!(
                    "closing the HTTP connection from {}: idle for {} ms",
                    Peer(peer),
                    limits.idle_timeout.as_millis()
                ),
                Phase::Request | Phase::Answering => {
                    gate.count(Shed::RequestTimeout);
                    log::debug!(
                        "closing the HTTP connection from {}: no complete request within {} ms",
                        Peer(peer),
                        limits.request_timeout.as_millis()
                    );
                }
                Phase::Writing => {
                    gate.count(Shed::WriteTimeout);
                    log::debug!(
                        "closing the HTTP connection from {}: the answer not taken within {} ms",
                        Peer(peer),
                        limits.write_timeout.as_millis()
                    );
                }
            }
        }
        self.expired
    }

    /// I/O is pending: wake the task at the deadline too.
    fn wait<T>(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        if self.armed != Some(self.deadline) {
            self.timer.set_at(self.deadline);
            self.armed = Some(self.deadline);
        }
        if Pin::new(&mut self.timer).poll(cx).is_ready() {
            // Passed since the check: the next poll sheds the connection.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

/// An I/O stream that fails (or, idle, ends) once the deadline of the
/// connection's phase has passed. Clones share the deadlines, as the HTTP
/// codec reads and writes through clones.
#[derive(Clone)]
pub struct Guarded<S> {
    io: S,
    gate: Arc<Gate>,
    exchange: Exchange,
}

impl<S> Guarded<S> {
    fn timed_out(&self, phase: Phase) -> io::Error {
        let what = match phase {
            Phase::Writing => "the answer was not taken in time",
            _ => "no complete request in time",
        };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let now = Instant::now();
        let limits = this.gate.limits;
        let mut state = this.exchange.lock();
        if state.phase == Phase::Writing {
            state.enter(Phase::Idle, now + limits.idle_timeout);
            state.waiting_since = now;
        }
        match state.expired(now, &this.gate, this.exchange.0.peer) {
            Some(Phase::Idle) => return Poll::Ready(Ok(0)),
            Some(phase) => return Poll::Ready(Err(this.timed_out(phase))),
            None => {}
        }
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => state.wait(cx),
            Poll::Ready(Ok(n)) => {
                if n > 0 && state.phase == Phase::Idle {
                    state.enter(Phase::Request, now + limits.request_timeout);
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// A write or flush: the answer has begun, and must be taken by the
    /// write deadline.
    fn poll_answer<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let now = Instant::now();
        let mut state = self.exchange.lock();
        if state.phase != Phase::Writing {
            state.enter(Phase::Writing, now + self.gate.limits.write_timeout);
        }
        if let Some(phase) = state.expired(now, &self.gate, self.exchange.0.peer) {
            return Poll::Ready(Err(self.timed_out(phase)));
        }
        match op(Pin::new(&mut self.io), cx) {
            Poll::Pending => state.wait(cx),
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_answer(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_answer(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_close(cx)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A peer address for the log, which may be unknown.
struct Peer(Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("an unknown address"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_std::task::block_on;
    use futures::{AsyncReadExt, AsyncWriteExt};
    use std::collections::VecDeque;

    fn limits(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            request_timeout: Duration::from_millis(150),
            idle_timeout: Duration::from_millis(400),
            write_timeout: Duration::from_millis(150),
        }
    }

    /// A client that sends `chunks`, one every `gap`, then nothing, and
    /// takes written bytes only when `reads` is set.
    struct Client {
        chunks: VecDeque<&'static [u8]>,
        gap: Duration,
        next: Option<Timer>,
        reads: bool,
    }

    impl Client {
        fn new(chunks: &[&'static [u8]], gap: Duration, reads: bool) -> Client {
            Client {
                chunks: chunks.iter().copied().collect(),
                gap,
                next: None,
                reads,
            }
        }
    }

    impl AsyncRead for Client {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.chunks.is_empty() {
                return Poll::Pending;
            }
            let gap = this.gap;
            let timer = this.next.get_or_insert_with(|| Timer::after(gap));
            if Pin::new(timer).poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.next = None;
            let chunk = this.chunks.pop_front().unwrap_or_default();
            buf[..chunk.len()].copy_from_slice(chunk);
            Poll::Ready(Ok(chunk.len()))
        }
    }

    impl AsyncWrite for Client {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.reads {
                Poll::Ready(Ok(buf.len()))
            } else {
                Poll::Pending
            }
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn shed(gate: &Gate, why: Shed) -> u64 {
        gate.shed()[why as usize].1
    }

    #[test]
    fn a_request_trickled_past_its_deadline_is_cut_and_counted() {
        let gate = Gate::new(limits(4));
        let ticket = seat(&gate);
        let mut io = ticket.guard(Client::new(
            &[&b"G"[..]; 100],
            Duration::from_millis(20),
            true,
        ));
        let start = Instant::now();
        let mut buf = [0u8; 16];
        let error = block_on(async {
            loop {
                if let Err(e) = io.read(&mut buf).await {
                    return e;
                }
            }
        });
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(1),
            "{took:?}"
        );
        assert_eq!(shed(&gate, Shed::RequestTimeout), 1);
    }

    #[test]
    fn an_answer_the_client_does_not_take_is_abandoned() {
        let gate = Gate::new(limits(4));
        let ticket = seat(&gate);
        let mut io = ticket.guard(Client::new(&[], Duration::ZERO, false));
        ticket.exchange().answering();
        let start = Instant::now();
        let error = block_on(io.write_all(b"HTTP/1.1 200 OK\r\n")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(shed(&gate, Shed::WriteTimeout), 1);
        assert_eq!(shed(&gate, Shed::RequestTimeout), 0);
    }

    #[test]
    fn a_quiet_kept_alive_connection_ends_cleanly_after_the_idle_timeout() {
        let gate = Gate::new(limits(4));
        let ticket = seat(&gate);
        let mut io = ticket.guard(Client::new(&[], Duration::ZERO, true));
        block_on(io.write_all(b"HTTP/1.1 200 OK\r\n\r\n")).unwrap();
        let start = Instant::now();
        assert_eq!(block_on(io.read(&mut [0u8; 16])).unwrap(), 0);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(gate.shed().iter().map(|(_, n)| n).sum::<u64>(), 0);
    }

    #[test]
    fn the_first_byte_of_a_kept_alive_request_starts_its_deadline() {
        let gate = Gate::new(limits(4));
        let ticket = seat(&gate);
        let mut io = ticket.guard(Client::new(&[&b"G"[..]], Duration::from_millis(50), true));
        block_on(io.write_all(b"HTTP/1.1 200 OK\r\n\r\n")).unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 16];
        assert_eq!(block_on(io.read(&mut buf)).unwrap(), 1);
        let error = block_on(io.read(&mut buf)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let took = start.elapsed();
        // 50 ms to the byte, then the request deadline, not the idle one.
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(400),
            "{took:?}"
        );
        assert_eq!(shed(&gate, Shed::RequestTimeout), 1);
    }

    fn seat(gate: &Arc<Gate>) -> Ticket {
        gate.admit(None).ticket.expect("a seat")
    }

    /// Whether the connection has been closed to make room.
    fn closed(ticket: &mut Ticket) -> bool {
        ticket.evicted.try_recv().is_err()
    }

    #[test]
    fn at_the_cap_the_longest_waiter_is_closed_to_make_room() {
        let gate = Gate::new(limits(2));
        let mut first = seat(&gate);
        let mut second = seat(&gate);
        let admission = gate.admit(None);
        let mut third = admission.ticket.unwrap();
        let evicted = admission.evicted.expect("one closed to make room");
        assert_eq!(gate.open(), 2);
        assert_eq!(shed(&gate, Shed::Cap), 1);
        assert!(closed(&mut first));
        assert!(!closed(&mut second) && !closed(&mut third));
        assert_eq!(block_on(first.watch(future::pending::<()>())), None);
        let start = Instant::now();
        block_on(evicted.released());
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "released once dropped"
        );
        assert_eq!(block_on(second.watch(future::ready(()))), Some(()));
        drop(third);
        assert_eq!(gate.open(), 0);
    }

    #[test]
    fn connections_being_answered_are_not_closed_to_make_room() {
        let gate = Gate::new(limits(2));
        let mut answered = seat(&gate);
        answered.exchange().answering();
        let mut waiting = seat(&gate);
        let newcomer = seat(&gate);
        assert!(closed(&mut waiting) && !closed(&mut answered));
        drop(waiting);
        newcomer.exchange().answering();
        assert!(
            gate.admit(None).ticket.is_none(),
            "refused: both are answering"
        );
        assert_eq!(shed(&gate, Shed::Cap), 2);
        drop(answered);
        assert!(gate.admit(None).ticket.is_some());
    }

    #[test]
    fn a_finished_connection_gives_up_its_seat() {
        let gate = Gate::new(limits(1));
        drop(seat(&gate));
        let _again = seat(&gate);
        assert_eq!(gate.open(), 1);
        assert_eq!(shed(&gate, Shed::Cap), 0);
    }
}
