//! Blocking work (small file writes, sled) off the swarm task, on a thread
//! that exists only while there is work: it starts when a job is queued to an
//! idle worker and ends when the queue is empty. Jobs run one at a time, in
//! the order they were queued. A relay whose journal and access list are
//! rarely written holds no thread for them, and so none of the stack and
//! allocator arena each idle thread keeps resident.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A job queued to a [`Worker`].
pub type Job = Box<dyn FnOnce() + Send>;

/// Why a job was not queued (it is dropped unrun).
pub enum Refused {
    /// The queue holds its maximum.
    Full,
    /// No thread could be started (the process's thread limit): the message.
    NoThread(String),
}

pub struct Worker {
    shared: Arc<Shared>,
}

struct Shared {
    name: &'static str,
    max_queued: usize,
    state: Mutex<State>,
    /// Signalled when the queue is empty and no job runs.
    idle: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// A thread is draining the queue.
    running: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Worker {
    /// A worker whose thread is named `name`, queueing at most `max_queued`
    /// jobs beyond the one running.
    pub fn new(name: &'static str, max_queued: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                name,
                max_queued: max_queued.max(1),
                state: Mutex::default(),
                idle: Condvar::new(),
            }),
        }
    }

    /// Queues `job`, starting the thread if none runs.
    pub fn run(&self, job: Job) -> Result<(), Refused> {
        let mut state = self.shared.lock();
        if state.queue.len() >= self.shared.max_queued {
            return Err(Refused::Full);
        }
        state.queue.push_back(job);
        if state.running {
            return Ok(());
        }
        let shared = self.shared.clone();
        let started = std::thread::Builder::new()
            .name(self.shared.name.into())
            .spawn(move || drain(&shared));
        match started {
            Ok(_) => {
                state.running = true;
                Ok(())
            }
            Err(e) => {
                state.queue.pop_back();
                Err(Refused::NoThread(format!(
                    "cannot start the {} thread: {e}",
                    self.shared.name
                )))
            }
        }
    }

    /// Waits until every job queued so far has run.
    pub fn wait_idle(&self) {
        let mut state = self.shared.lock();
        while state.running {
            state = self
                .shared
                .idle
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The thread: runs jobs until the queue is empty, then ends. A job that
/// panics is contained; the rest still run.
fn drain(shared: &Shared) {
    loop {
        let job = {
            let mut state = shared.lock();
            match state.queue.pop_front() {
                Some(job) => job,
                None => {
                    state.running = false;
                    shared.idle.notify_all();
                    return;
                }
            }
        };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            log::error!(event = "error", kind = "worker_panic", worker = shared.name; "a job of the {} thread panicked", shared.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn thread_named(name: &str) -> bool {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .any(|comm| comm.trim() == name)
    }

    /// Queues a job that runs until the returned sender sends, and waits
    /// until it runs.
    fn hold(worker: &Worker) -> mpsc::Sender<()> {
        let (gate_tx, gate) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        worker
            .run(Box::new(move || {
                started_tx.send(()).unwrap();
                gate.recv().unwrap();
            }))
            .unwrap_or_else(|_| panic!("queued"));
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        gate_tx
    }

    #[test]
    fn jobs_run_in_order_and_the_thread_ends_when_the_queue_is_empty() {
        let worker = Worker::new("worker-order", 64);
        let (tx, rx) = mpsc::channel();
        let gate_tx = hold(&worker);
        for i in 0..10 {
            let tx = tx.clone();
            worker
                .run(Box::new(move || tx.send(i).unwrap()))
                .unwrap_or_else(|_| panic!("queued"));
        }
        assert!(
            thread_named("worker-order"),
            "a thread runs while there is work"
        );
        gate_tx.send(()).unwrap();
        let got: Vec<i32> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        worker.wait_idle();
        // The thread has said it is done; give it a moment to be gone.
        let gone = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !thread_named("worker-order")
        });
        assert!(gone, "no thread is left once the queue is empty");
        // And a new job starts one again.
        let (tx, rx) = mpsc::channel();
        worker
            .run(Box::new(move || tx.send(()).unwrap()))
            .unwrap_or_else(|_| panic!("queued"));
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    #[test]
    fn a_full_queue_refuses() {
        let worker = Worker::new("worker-full", 2);
        let gate_tx = hold(&worker);
        // One runs; two more fit; the fourth is refused and never runs.
        let (ran_tx, ran) = mpsc::channel::<u32>();
        for i in 0..3 {
            let ran_tx = ran_tx.clone();
            let queued = worker.run(Box::new(move || ran_tx.send(i).unwrap()));
            assert_eq!(queued.is_ok(), i < 2, "job {i}");
            if i == 2 {
                assert!(matches!(queued, Err(Refused::Full)));
            }
        }
        gate_tx.send(()).unwrap();
        worker.wait_idle();
        drop(ran_tx);
        assert_eq!(ran.iter().collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn a_panicking_job_does_not_stop_the_next() {
        let worker = Worker::new("worker-panic", 8);
        let (tx, rx) = mpsc::channel();
        worker
            .run(Box::new(|| panic!("this job fails")))
            .unwrap_or_else(|_| panic!("queued"));
        worker
            .run(Box::new(move || tx.send(()).unwrap()))
            .unwrap_or_else(|_| panic!("queued"));
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        worker.wait_idle();
    }
}
