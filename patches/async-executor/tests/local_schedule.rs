//! PATCH: tasks woken or spawned by a running task go to its runner's local
//! queue. None may be lost or starve: not with one runner, not when the local
//! queue overflows into the global one, not with runners sleeping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use async_executor::Executor;
use futures_lite::future;

/// Runs `ex` on `threads` threads until `done` resolves.
fn run_on<T: Send + 'static>(
    ex: &Arc<Executor<'static>>,
    threads: usize,
    done: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let (stop, stopped) = async_channel::bounded::<()>(1);
    let runners: Vec<_> = (0..threads)
        .map(|_| {
            let ex = ex.clone();
            let stopped = stopped.clone();
            thread::spawn(move || future::block_on(ex.run(stopped.recv())))
        })
        .collect();
    let out = future::block_on(ex.spawn(done));
    drop(stop);
    for r in runners {
        let _ = r.join();
    }
    out
}

#[test]
fn ping_pong_between_tasks_completes_on_one_runner() {
    let ex = Arc::new(Executor::new());
    let (to_b, from_a) = async_channel::bounded::<u32>(1);
    let (to_a, from_b) = async_channel::bounded::<u32>(1);
    let b = ex.spawn(async move {
        while let Ok(n) = from_a.recv().await {
            if to_a.send(n + 1).await.is_err() {
                break;
            }
        }
    });
    let rounds = run_on(&ex, 1, async move {
        let mut n = 0;
        for _ in 0..20_000 {
            to_b.send(n).await.unwrap();
            n = from_b.recv().await.unwrap();
        }
        drop(to_b);
        b.await;
        n
    });
    assert_eq!(rounds, 20_000);
}

#[test]
fn spawning_past_the_local_queue_runs_every_task() {
    let ex = Arc::new(Executor::new());
    let ran = Arc::new(AtomicUsize::new(0));
    let ex2 = ex.clone();
    let ran2 = ran.clone();
    run_on(&ex, 2, async move {
        // 5,000 spawns from one task: 512 fit the local queue, the rest go
        // to the global one.
        let tasks: Vec<_> = (0..5_000)
            .map(|_| {
                let ran = ran2.clone();
                ex2.spawn(async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
    assert_eq!(ran.load(Ordering::SeqCst), 5_000);
}

#[test]
fn woken_tasks_all_finish_with_runners_coming_and_going_to_sleep() {
    let ex = Arc::new(Executor::new());
    let ex2 = ex.clone();
    let total = run_on(&ex, 4, async move {
        // 64 chains of tasks, each woken alternately by a running task and by
        // a plain thread (through a timer), so runners sleep and are woken.
        let chains: Vec<_> = (0..64)
            .map(|i| {
                ex2.spawn(async move {
                    let mut sum = 0u64;
                    for step in 0..200u64 {
                        if step % 50 == 0 {
                            async_io::Timer::after(Duration::from_millis(1 + i % 3)).await;
                        } else {
                            future::yield_now().await;
                        }
                        sum += step;
                    }
                    sum
                })
            })
            .collect();
        let mut total = 0;
        for c in chains {
            total += c.await;
        }
        total
    });
    assert_eq!(total, 64 * (0..200u64).sum::<u64>());
}
