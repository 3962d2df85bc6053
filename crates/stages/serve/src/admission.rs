//! The inference pool and the bounded queue in front of it: at most `workers` images are
//! analysed at once, at most `queue` requests wait for one, and any more are turned away at
//! once (503 with `Retry-After`) rather than piling up until every client times out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// A worker of the pool, held for as long as an image is analysed.
pub type Worker = OwnedSemaphorePermit;

/// The pool of workers and its queue.
#[derive(Debug)]
pub struct Pool {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    workers: usize,
    queue: usize,
    depth: Gauge,
}

/// Every worker is busy and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// The queue's length.
    pub queue: usize,
    /// The pool's size.
    pub workers: usize,
}

/// Counts a request while it waits; uncounts it however the wait ends (served, timed out,
/// client gone).
struct Waiting<'a>(&'a Pool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let n = self.0.waiting.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0.depth.set(n as i64);
    }
}

impl Pool {
    /// A pool of `workers` (at least one) with room for `queue` waiting requests; `depth`
    /// reports how many wait.
    pub fn new(workers: usize, queue: usize, depth: Gauge) -> Self {
        let workers = workers.max(1);
        Self {
            permits: Arc::new(Semaphore::new(workers)),
            waiting: AtomicUsize::new(0),
            workers,
            queue,
            depth,
        }
    }

    /// The pool's size.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// A worker: at once when one is free, after waiting in the queue when there is room, else
    /// [`Full`].
    pub async fn admit(&self) -> Result<Worker, Full> {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(worker) => return Ok(worker),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {}
        }
        let full = Full {
            queue: self.queue,
            workers: self.workers,
        };
        let joined = self.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.queue).then_some(n + 1)
        });
        let Ok(before) = joined else {
            return Err(full);
        };
        self.depth.set(before as i64 + 1);
        let _waiting = Waiting(self);
        Arc::clone(&self.permits).acquire_owned().await.map_err(|_| full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_turns_requests_away_and_frees_as_workers_finish() {
        let pool = Arc::new(Pool::new(1, 1, Gauge::default()));
        let first = pool.admit().await.expect("a free worker");
        let waiter = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.admit().await.map(drop) })
        };
        tokio::task::yield_now().await;
        assert_eq!(pool.depth.get(), 1, "one waits");
        assert_eq!(
            pool.admit().await.map(drop),
            Err(Full { queue: 1, workers: 1 }),
            "no room left"
        );
        drop(first);
        assert_eq!(waiter.await.expect("joined"), Ok(()), "the waiter got the worker");
        assert_eq!(pool.depth.get(), 0);
        assert!(pool.admit().await.is_ok(), "free again");
    }
}
