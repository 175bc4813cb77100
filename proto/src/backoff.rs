//! The wait between reconnect attempts: from a first delay, doubling up to
//! a cap, each wait jittered into the upper half of its delay so that
//! clients cut off together (a relay restart) do not come back together.
//! The event stream of [`crate::Client::subscribe`] and the health
//! sidecar's kept connection both use it.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    /// The delay the next wait is drawn from.
    next: Duration,
}

impl Backoff {
    /// Waits from `first`, doubling, never above `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first.min(max),
        }
    }

    /// The wait before the next attempt: between half the current delay
    /// and all of it. The delay after it is doubled, up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(self.max);
        let half = delay / 2;
        half + half.mul_f64(rand::thread_rng().gen::<f64>())
    }

    /// Back to the first delay, after an attempt succeeded.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_cap_each_in_the_upper_half_of_its_delay() {
        let mut b = Backoff::new(100 * MS, 2000 * MS);
        for delay in [100, 200, 400, 800, 1600, 2000, 2000, 2000] {
            let wait = b.next_wait();
            assert!(
                wait >= delay * MS / 2 && wait <= delay * MS,
                "{wait:?} for a delay of {delay} ms"
            );
        }
    }

    #[test]
    fn reset_starts_over_from_the_first_delay() {
        let mut b = Backoff::new(100 * MS, 5000 * MS);
        for _ in 0..10 {
            b.next_wait();
        }
        b.reset();
        assert!(b.next_wait() <= 100 * MS);
        assert!(b.next_wait() <= 200 * MS);
    }

    #[test]
    fn waits_are_spread_so_that_clients_do_not_return_together() {
        let waits: std::collections::BTreeSet<Duration> = (0..20)
            .map(|_| Backoff::new(1000 * MS, 1000 * MS).next_wait())
            .collect();
        assert!(waits.len() > 1, "{waits:?}");
    }
}
