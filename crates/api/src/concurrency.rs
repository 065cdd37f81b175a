//! How much one project may ask of the models at once: the most choices (prompts × `n`) in
//! one chat or completion request (checked in [`crate::generation::validate::check_choices`])
//! and the most generation and embedding requests of one project in flight on this replica.
//!
//! A request takes a [`ConcurrencyPermit`] of its project before its budgets are charged and
//! the backend is called, and holds it until its answer (or stream) ends or is dropped. Over
//! the limit it is refused at once with 429 (`type: requests`, `code:
//! concurrency_limit_exceeded`, `Retry-After: 1`), as OpenAI answers a concurrency limit;
//! nothing waits. The count per project lives only while the project has requests in flight,
//! so the map never holds more projects than there are requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use uuid::Uuid;

use crate::error::ApiError;

/// What one project may ask of the models at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fairness {
    /// Most choices (prompts × `n`) in one chat or completion request.
    pub max_choices_per_request: usize,
    /// Most generation and embedding requests of one project in flight at once; 0: no limit.
    pub max_concurrent_requests_per_project: usize,
}

impl Default for Fairness {
    /// 128 choices per request, 64 requests of a project in flight.
    fn default() -> Self {
        Self {
            max_choices_per_request: 128,
            max_concurrent_requests_per_project: 64,
        }
    }
}

/// The requests in flight per project, and their limit.
#[derive(Debug)]
pub struct ProjectConcurrency {
    limit: usize,
    in_flight: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One request's place among its project's requests in flight; dropping it frees the place.
#[derive(Debug)]
pub struct ConcurrencyPermit {
    project: Uuid,
    in_flight: Option<Arc<Mutex<HashMap<Uuid, usize>>>>,
}

/// A request refused because its project has `limit` requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyLimited {
    /// The project's limit.
    pub limit: usize,
}

fn lock(map: &Mutex<HashMap<Uuid, usize>>) -> MutexGuard<'_, HashMap<Uuid, usize>> {
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ProjectConcurrency {
    /// At most `limit` requests of each project in flight; 0: no limit.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            in_flight: Arc::default(),
        }
    }

    /// A place for one more request of `project`, or the refusal when it has `limit` in
    /// flight.
    pub fn acquire(&self, project: Uuid) -> Result<ConcurrencyPermit, ConcurrencyLimited> {
        if self.limit == 0 {
            return Ok(ConcurrencyPermit {
                project,
                in_flight: None,
            });
        }
        let mut in_flight = lock(&self.in_flight);
        let count = in_flight.entry(project).or_insert(0);
        if *count >= self.limit {
            return Err(ConcurrencyLimited { limit: self.limit });
        }
        *count += 1;
        Ok(ConcurrencyPermit {
            project,
            in_flight: Some(Arc::clone(&self.in_flight)),
        })
    }

    /// Projects with requests in flight.
    #[cfg(test)]
    fn projects_in_flight(&self) -> usize {
        lock(&self.in_flight).len()
    }
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        let Some(map) = &self.in_flight else {
            return;
        };
        let mut in_flight = lock(map);
        if let Some(count) = in_flight.get_mut(&self.project) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(&self.project);
            }
        }
    }
}

impl From<ConcurrencyLimited> for ApiError {
    /// 429 with `Retry-After: 1` ([`ApiError::ConcurrencyLimited`]).
    fn from(refused: ConcurrencyLimited) -> Self {
        Self::ConcurrencyLimited {
            limit: refused.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_project_over_its_limit_is_refused_and_others_are_not() {
        let limits = ProjectConcurrency::new(2);
        let (busy, other) = (Uuid::new_v4(), Uuid::new_v4());
        let first = limits.acquire(busy).unwrap();
        let _second = limits.acquire(busy).unwrap();
        assert_eq!(
            limits.acquire(busy).unwrap_err(),
            ConcurrencyLimited { limit: 2 }
        );
        let _other = limits.acquire(other).unwrap();
        drop(first);
        assert!(limits.acquire(busy).is_ok());
    }

    #[test]
    fn idle_projects_leave_the_map() {
        let limits = ProjectConcurrency::new(4);
        let permits: Vec<_> = (0..100)
            .map(|_| limits.acquire(Uuid::new_v4()).unwrap())
            .collect();
        assert_eq!(limits.projects_in_flight(), 100);
        drop(permits);
        assert_eq!(limits.projects_in_flight(), 0);
    }

    #[test]
    fn zero_is_no_limit() {
        let limits = ProjectConcurrency::new(0);
        let project = Uuid::new_v4();
        let permits: Vec<_> = (0..1000).map(|_| limits.acquire(project)).collect();
        assert!(permits.iter().all(Result::is_ok));
        assert_eq!(limits.projects_in_flight(), 0);
    }
}
