//! One signal every server task listens to, like mini-redis's `Shutdown`:
//! the accept loop stops accepting, each client's tasks say goodbye and
//! close. Made from a channel that never carries a message: closing it (or
//! dropping the [`Trigger`]) wakes every waiting [`Shutdown`] at once, and
//! one that starts waiting later returns at once.

use std::future::Future;
use std::pin::pin;

use async_std::channel::{bounded, Receiver, Sender};
use futures::future::{select, Either};

/// Fires the shutdown. Dropping it fires it too, so a relay that exits
/// without calling [`Trigger::fire`] still stops its server.
#[derive(Debug)]
pub struct Trigger(Sender<()>);

/// Waits for the shutdown. Cheap to clone: one per task.
#[derive(Debug, Clone)]
pub struct Shutdown(Receiver<()>);

impl Shutdown {
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = bounded(1);
        (Trigger(tx), Shutdown(rx))
    }

    pub fn is_fired(&self) -> bool {
        self.0.is_closed()
    }

    /// Returns once the shutdown fired.
    pub async fn wait(&self) {
        // Nothing is ever sent: this returns only when the channel closes.
        let _ = self.0.recv().await;
    }

    /// Runs `work` to completion, or returns `None` if the shutdown fires
    /// first (dropping `work`).
    pub async fn race<F: Future>(&self, work: F) -> Option<F::Output> {
        match select(pin!(work), pin!(self.wait())).await {
            Either::Left((output, _)) => Some(output),
            Either::Right(_) => None,
        }
    }
}

impl Trigger {
    pub fn fire(&self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[async_std::test]
    async fn firing_wakes_every_waiter_even_late_ones() {
        let (trigger, shutdown) = Shutdown::new();
        let early = async_std::task::spawn({
            let s = shutdown.clone();
            async move { s.wait().await }
        });
        assert!(!shutdown.is_fired());
        trigger.fire();
        async_std::future::timeout(Duration::from_secs(5), early)
            .await
            .unwrap();
        shutdown.wait().await;
        assert!(shutdown.is_fired());
    }

    #[async_std::test]
    async fn race_returns_the_work_or_none() {
        let (trigger, shutdown) = Shutdown::new();
        assert_eq!(shutdown.race(async { 7 }).await, Some(7));
        trigger.fire();
        assert_eq!(shutdown.race(futures::future::pending::<()>()).await, None);
    }

    #[async_std::test]
    async fn dropping_the_trigger_fires() {
        let (trigger, shutdown) = Shutdown::new();
        drop(trigger);
        async_std::future::timeout(Duration::from_secs(5), shutdown.wait())
            .await
            .unwrap();
    }
}
