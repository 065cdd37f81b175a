//! The bounded queue in front of a model's worker thread: requests are handed over without
//! waiting (a full queue is [`EngineError::Overloaded`], the client retries), and the thread's
//! liveness is the backend's health — it turns unavailable when the thread ends, also by a
//! panic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gateway_backend::Health;
use tokio::sync::mpsc;

use crate::EngineError;

/// The sending side of a worker thread's queue.
pub(crate) struct JobQueue<J> {
    jobs: mpsc::Sender<J>,
    alive: Arc<AtomicBool>,
    thread: String,
}

/// Marks the worker stopped when its thread ends, however it ends.
struct StoppedOnDrop(Arc<AtomicBool>);

impl Drop for StoppedOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl<J: Send + 'static> JobQueue<J> {
    /// Starts `work` on a thread named `thread`, reading a queue of `capacity` jobs (at least
    /// one) until every sender is gone.
    pub(crate) fn start(
        thread: String,
        capacity: usize,
        work: impl FnOnce(mpsc::Receiver<J>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (jobs, receiver) = mpsc::channel(capacity.max(1));
        let alive = Arc::new(AtomicBool::new(true));
        let stopped = StoppedOnDrop(Arc::clone(&alive));
        std::thread::Builder::new()
            .name(thread.clone())
            .spawn(move || {
                let _stopped = stopped;
                work(receiver);
            })?;
        Ok(Self {
            jobs,
            alive,
            thread,
        })
    }

    /// Hands `job` to the worker without waiting.
    pub(crate) fn submit(&self, job: J) -> Result<(), EngineError> {
        self.jobs.try_send(job).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => EngineError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => EngineError::WorkerStopped,
        })
    }

    /// Ready while the worker thread runs.
    pub(crate) fn health(&self) -> Health {
        if self.alive.load(Ordering::SeqCst) {
            Health::Ready
        } else {
            Health::Unavailable(format!("the worker thread {} has stopped", self.thread))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn wait_until_stopped(queue: &JobQueue<u32>) {
        for _ in 0..200 {
            if queue.health() != Health::Ready {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the worker never stopped");
    }

    #[test]
    fn a_full_queue_is_overloaded_and_an_ended_worker_unavailable() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let queue = JobQueue::start(
            "test-worker".into(),
            1,
            move |mut jobs: mpsc::Receiver<u32>| {
                let _ = wait.recv();
                let _ = jobs.blocking_recv();
            },
        )
        .unwrap();
        assert_eq!(queue.health(), Health::Ready);
        queue.submit(1).unwrap();
        assert!(matches!(queue.submit(2), Err(EngineError::Overloaded)));
        release.send(()).unwrap();
        wait_until_stopped(&queue);
        assert!(matches!(queue.submit(3), Err(EngineError::WorkerStopped)));
    }

    #[test]
    fn a_panicking_worker_turns_unavailable() {
        let queue = JobQueue::start("test-panic".into(), 4, |mut jobs: mpsc::Receiver<u32>| {
            if jobs.blocking_recv().is_some() {
                panic!("worker failure");
            }
        })
        .unwrap();
        queue.submit(7).unwrap();
        wait_until_stopped(&queue);
        assert!(
            matches!(queue.health(), Health::Unavailable(reason) if reason.contains("test-panic"))
        );
    }
}
