// PATCH: the native `Delay` is a timer of async-io's reactor, the one the
// async-std runtime already drives, instead of an entry in this crate's own
// timer heap, which a helper thread of its own ("futures-timer") serves for
// the life of the process. The public API is unchanged: `new`, `reset`,
// `Future<Output = ()>`, `Debug`. A `Delay` that has fired stays ready until
// it is reset, as before (async-io's one-shot `Timer` is ready once).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A future representing the notification that an elapsed duration has
/// occurred.
///
/// This is created through the `Delay::new` method indicating when the future should fire.
/// Note that these futures are not intended for high resolution timers, but rather they will
/// likely fire some granularity after the exact instant that they're otherwise indicated to fire
/// at.
pub struct Delay {
    timer: async_io::Timer,
    fired: bool,
}

impl Delay {
    /// Creates a new future which will fire at `dur` time into the future.
    ///
    /// A duration too long to be represented never fires.
    #[inline]
    pub fn new(dur: Duration) -> Delay {
        Delay {
            timer: async_io::Timer::after(dur),
            fired: false,
        }
    }

    /// Resets this timeout to an new timeout which will fire at the time
    /// specified by `at`.
    #[inline]
    pub fn reset(&mut self, dur: Duration) {
        self.timer.set_after(dur);
        self.fired = false;
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.fired {
            return Poll::Ready(());
        }
        match Pin::new(&mut self.timer).poll(cx) {
            Poll::Ready(_) => {
                self.fired = true;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delay").field("fired", &self.fired).finish()
    }
}
