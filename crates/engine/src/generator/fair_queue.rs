//! The queue in front of a chat model's scheduler, fair across tenants (projects). Jobs wait
//! in one lane per tenant, and the scheduler takes them round-robin over the lanes: a tenant
//! with one waiting job is served within one turn however many jobs another has queued. A
//! lane exists only while it holds jobs, so the map never outgrows the jobs waiting.
//!
//! The queue is bounded: a job is refused ([`EngineError::Overloaded`]) when the queue is
//! full, or when its tenant already holds its share ([`share`]): an eighth of the queue is
//! kept for tenants that have nothing waiting, the rest is split evenly among the tenants
//! waiting (counting its own lane), so one tenant's flood leaves room for the others. When the
//! queue is closed (the generator dropped, or the scheduler thread ended, also by a panic)
//! new jobs are refused ([`EngineError::WorkerStopped`]) and the scheduler serves what is
//! left, then stops.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::EngineError;

/// The most places one of `tenants` waiting tenants may hold in a queue of `capacity`: an
/// eighth of the queue (at least one place) stays free for a tenant that has nothing waiting,
/// the rest is split evenly (a tenant alone may fill seven eighths).
fn share(capacity: usize, tenants: usize) -> usize {
    let kept_for_newcomers = (capacity / 8).max(1);
    (capacity.saturating_sub(kept_for_newcomers) / tenants.max(1)).max(1)
}

/// Jobs waiting for the scheduler, one lane per tenant, taken round-robin.
pub(crate) struct FairQueue<J> {
    state: Mutex<Lanes<J>>,
    arrived: Condvar,
    capacity: usize,
}

/// The waiting jobs.
struct Lanes<J> {
    /// Each tenant's jobs in arrival order; only tenants with waiting jobs.
    lanes: HashMap<Arc<str>, VecDeque<J>>,
    /// The tenants with waiting jobs, the one whose turn it is first.
    turns: VecDeque<Arc<str>>,
    /// Jobs waiting in all lanes.
    len: usize,
    /// Whether new jobs are refused.
    closed: bool,
}

impl<J> FairQueue<J> {
    /// An open, empty queue of at most `capacity` jobs (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(Lanes {
                lanes: HashMap::new(),
                turns: VecDeque::new(),
                len: 0,
                closed: false,
            }),
            arrived: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lanes<J>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` of `tenant` at the end of its lane, or refuses it: the queue is full or
    /// closed, or the tenant holds its share already.
    pub(crate) fn push(&self, tenant: &Arc<str>, job: J) -> Result<(), EngineError> {
        let mut state = self.lock();
        if state.closed {
            return Err(EngineError::WorkerStopped);
        }
        let held = state.lanes.get(tenant).map_or(0, VecDeque::len);
        let tenants = state.turns.len() + usize::from(held == 0);
        let share = share(self.capacity, tenants);
        if state.len >= self.capacity || held >= share {
            return Err(EngineError::Overloaded);
        }
        if held == 0 {
            state.turns.push_back(Arc::clone(tenant));
        }
        state
            .lanes
            .entry(Arc::clone(tenant))
            .or_default()
            .push_back(job);
        state.len += 1;
        drop(state);
        self.arrived.notify_one();
        Ok(())
    }

    /// Takes the first job of the tenant whose turn it is when `take` accepts it, and passes
    /// the turn on; when `take` refuses it, the job and the turn stay (it is first next time,
    /// so a job that waits for room is never overtaken for good).
    pub(crate) fn take_if(&self, take: impl FnOnce(&J) -> bool) -> Option<J> {
        let mut state = self.lock();
        let tenant = state.turns.front().cloned()?;
        let lane = state.lanes.get_mut(&tenant)?;
        if !take(lane.front()?) {
            return None;
        }
        let job = lane.pop_front()?;
        let emptied = lane.is_empty();
        state.turns.pop_front();
        if emptied {
            state.lanes.remove(&tenant);
        } else {
            state.turns.push_back(tenant);
        }
        state.len -= 1;
        Some(job)
    }

    /// Blocks until a job waits (`true`) or the queue is closed and empty (`false`).
    pub(crate) fn wait(&self) -> bool {
        let mut state = self.lock();
        while state.len == 0 {
            if state.closed {
                return false;
            }
            state = self
                .arrived
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        true
    }

    /// Refuses new jobs from now on and wakes the scheduler.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }

    /// Closes the queue and drops every waiting job, so that their clients learn at once that
    /// they will not be served (the scheduler has stopped).
    fn abandon(&self) {
        let lanes = {
            let mut state = self.lock();
            state.closed = true;
            state.turns.clear();
            state.len = 0;
            std::mem::take(&mut state.lanes)
        };
        drop(lanes);
        self.arrived.notify_all();
    }

    /// Whether new jobs are refused.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Jobs waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len
    }
}

/// Closes a queue and drops its waiting jobs when dropped: the scheduler thread holds one, so
/// a thread that ends (also by a panic) refuses new jobs at once, and the streams of the jobs
/// it left end.
pub(crate) struct CloseOnDrop<J>(pub(crate) Arc<FairQueue<J>>);

impl<J> Drop for CloseOnDrop<J> {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn tenant(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    fn drain(queue: &FairQueue<(char, usize)>) -> Vec<(char, usize)> {
        std::iter::from_fn(|| queue.take_if(|_| true)).collect()
    }

    #[test]
    fn a_single_job_is_taken_within_one_turn_of_a_thousand_waiting() {
        let queue = FairQueue::new(4096);
        let (flood, single) = (tenant("flood"), tenant("single"));
        for i in 0..1000 {
            queue.push(&flood, ('f', i)).unwrap();
        }
        queue.push(&single, ('s', 0)).unwrap();
        let order = drain(&queue);
        assert_eq!(order.len(), 1001);
        assert_eq!(&order[..3], &[('f', 0), ('s', 0), ('f', 1)]);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn tenants_take_turns_and_each_lane_keeps_its_order() {
        let queue = FairQueue::new(64);
        let (a, b, c) = (tenant("a"), tenant("b"), tenant("c"));
        for i in 0..3 {
            queue.push(&a, ('a', i)).unwrap();
        }
        queue.push(&b, ('b', 0)).unwrap();
        queue.push(&c, ('c', 0)).unwrap();
        queue.push(&b, ('b', 1)).unwrap();
        let order = drain(&queue);
        let expected = [('a', 0), ('b', 0), ('c', 0), ('a', 1), ('b', 1), ('a', 2)];
        assert_eq!(order, expected);
    }

    #[test]
    fn a_refused_job_keeps_its_turn() {
        let queue = FairQueue::new(8);
        let (a, b) = (tenant("a"), tenant("b"));
        queue.push(&a, ('a', 0)).unwrap();
        queue.push(&b, ('b', 0)).unwrap();
        assert_eq!(queue.take_if(|_| false), None);
        assert_eq!(queue.take_if(|_| true), Some(('a', 0)));
        assert_eq!(queue.take_if(|_| true), Some(('b', 0)));
        assert_eq!(queue.take_if(|_| true), None);
    }

    #[test]
    fn one_tenant_cannot_take_the_places_of_the_others() {
        let queue = FairQueue::new(16);
        let (flood, other, third) = (tenant("flood"), tenant("other"), tenant("third"));
        let pushed = (0..16)
            .take_while(|&i| queue.push(&flood, ('f', i)).is_ok())
            .count();
        // Alone, a tenant fills seven eighths: two places stay free for the others.
        assert_eq!(pushed, 14);
        assert!(matches!(
            queue.push(&flood, ('f', 99)),
            Err(EngineError::Overloaded)
        ));
        queue.push(&other, ('o', 0)).unwrap();
        queue.push(&third, ('t', 0)).unwrap();
        assert_eq!(queue.len(), 16);
        // and round-robin serves them right after the flood's first job
        let order: Vec<char> = (0..3)
            .filter_map(|_| queue.take_if(|_| true).map(|(t, _)| t))
            .collect();
        assert_eq!(order, ['f', 'o', 't']);
    }

    #[test]
    fn the_share_keeps_an_eighth_free_and_splits_the_rest() {
        assert_eq!(share(16, 1), 14);
        assert_eq!(share(16, 2), 7);
        assert_eq!(share(1024, 4), 224);
        assert_eq!(share(1, 1), 1);
    }

    #[test]
    fn a_closed_queue_refuses_jobs_and_stops_waiting_once_empty() {
        let queue = Arc::new(FairQueue::new(4));
        let a = tenant("a");
        queue.push(&a, ('a', 0)).unwrap();
        queue.close();
        assert!(queue.is_closed());
        assert!(matches!(
            queue.push(&a, ('a', 1)),
            Err(EngineError::WorkerStopped)
        ));
        assert!(queue.wait());
        assert_eq!(queue.take_if(|_| true), Some(('a', 0)));
        assert!(!queue.wait());
    }

    #[test]
    fn a_stopped_scheduler_drops_the_jobs_it_left() {
        let queue = Arc::new(FairQueue::new(4));
        queue.push(&tenant("a"), ('a', 0)).unwrap();
        drop(CloseOnDrop(Arc::clone(&queue)));
        assert!(queue.is_closed());
        assert_eq!(queue.len(), 0);
        assert!(!queue.wait());
    }

    #[test]
    fn a_waiting_scheduler_wakes_for_a_new_job() {
        let queue = Arc::new(FairQueue::new(4));
        let waiter = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || queue.wait())
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        queue.push(&tenant("a"), ('a', 0)).unwrap();
        assert!(waiter.join().unwrap());
    }
}
