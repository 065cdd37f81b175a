//! Picks the server for each request: among the servers that passed their last health check,
//! whose circuit admits a request and that this request has not tried yet, the one with the
//! fewest requests in flight (ties go round the servers). A [`Lease`] counts the request as
//! outstanding until it is dropped and carries its outcome to the server's circuit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::circuit::Circuit;
use crate::settings::{Endpoint, Settings};

/// One upstream server and what the balancer knows of it.
#[derive(Debug)]
pub(crate) struct Server {
    endpoint: Endpoint,
    outstanding: AtomicUsize,
    healthy: AtomicBool,
    circuit: Mutex<Circuit>,
}

impl Server {
    /// The server's address, model name and key.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Records the outcome of a health check; true when it changed the server's health.
    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn circuit(&self) -> MutexGuard<'_, Circuit> {
        self.circuit.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counters of the balancer, shown on `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests sent to a server (each attempt).
    pub(crate) attempts: AtomicU64,
    /// Attempts that failed (transport errors, timeouts, 5xx, 429, refused credentials).
    pub(crate) failures: AtomicU64,
    /// Attempts on another server after a failure.
    pub(crate) retries: AtomicU64,
}

/// The servers of one model.
#[derive(Debug)]
pub(crate) struct Balancer {
    servers: Vec<Arc<Server>>,
    next: AtomicUsize,
    counters: Counters,
}

impl Balancer {
    /// Balances over `endpoints`, all healthy and closed at first.
    pub(crate) fn new(endpoints: Vec<Endpoint>, settings: &Settings) -> Self {
        let servers = endpoints
            .into_iter()
            .map(|endpoint| {
                Arc::new(Server {
                    endpoint,
                    outstanding: AtomicUsize::new(0),
                    healthy: AtomicBool::new(true),
                    circuit: Mutex::new(Circuit::new(settings.failures_to_open, settings.open_for)),
                })
            })
            .collect();
        Self {
            servers,
            next: AtomicUsize::new(0),
            counters: Counters::default(),
        }
    }

    /// The servers, in configuration order.
    pub(crate) fn servers(&self) -> &[Arc<Server>] {
        &self.servers
    }

    /// The balancer's counters.
    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The server for the next attempt of a request that already tried the servers at the
    /// indices in `tried`; `None` when no other server can take it now.
    pub(crate) fn pick(&self, tried: &[usize]) -> Option<Lease> {
        let count = self.servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut candidates: Vec<usize> = (0..count)
            .map(|offset| (start + offset) % count.max(1))
            .filter(|index| !tried.contains(index) && self.servers[*index].is_healthy())
            .collect();
        candidates.sort_by_key(|index| self.servers[*index].outstanding.load(Ordering::Relaxed));
        let index = candidates
            .into_iter()
            .find(|index| self.servers[*index].circuit().admits(now))?;
        let server = Arc::clone(&self.servers[index]);
        server.outstanding.fetch_add(1, Ordering::Relaxed);
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        if !tried.is_empty() {
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
        Some(Lease {
            server,
            index,
            settled: false,
        })
    }

    /// Servers that pass their health check and whose circuit is not open.
    pub(crate) fn available(&self) -> usize {
        let now = Instant::now();
        self.servers
            .iter()
            .filter(|server| server.is_healthy() && !server.circuit().is_open(now))
            .count()
    }

    /// Servers whose circuit is open now.
    pub(crate) fn open_circuits(&self) -> usize {
        let now = Instant::now();
        self.servers
            .iter()
            .filter(|server| server.circuit().is_open(now))
            .count()
    }
}

/// One attempt of a request on one server: outstanding until dropped.
#[derive(Debug)]
pub(crate) struct Lease {
    server: Arc<Server>,
    index: usize,
    settled: bool,
}

impl Lease {
    /// The index of the server, for [`Balancer::pick`]'s `tried`.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The server's address, model name and key.
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.server.endpoint
    }

    /// The server answered (also with a refusal of the client's request).
    pub(crate) fn succeeded(&mut self) {
        self.settled = true;
        self.server.circuit().succeeded();
    }

    /// The server failed this attempt; `counters` count it.
    pub(crate) fn failed(&mut self, counters: &Counters) {
        self.settled = true;
        counters.failures.fetch_add(1, Ordering::Relaxed);
        if self.server.circuit().failed(Instant::now()) {
            tracing::warn!(
                upstream = %self.server.endpoint.url(""),
                "upstream circuit opened after repeated failures"
            );
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.server.outstanding.fetch_sub(1, Ordering::Relaxed);
        if !self.settled {
            self.server.circuit().abandoned();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    fn balancer(servers: usize, failures_to_open: u32) -> Balancer {
        let endpoints = (0..servers)
            .map(|i| Endpoint::new(&format!("http://127.0.0.1:{}/v1", 9000 + i), "m", None))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let settings = Settings {
            failures_to_open,
            open_for: Duration::from_secs(60),
            ..Settings::default()
        };
        Balancer::new(endpoints, &settings)
    }

    #[test]
    fn the_server_with_the_fewest_requests_in_flight_is_picked() {
        let balancer = balancer(3, 5);
        let first = balancer.pick(&[]).unwrap();
        let second = balancer.pick(&[]).unwrap();
        let third = balancer.pick(&[]).unwrap();
        let mut used = [first.index(), second.index(), third.index()];
        used.sort_unstable();
        assert_eq!(
            used,
            [0, 1, 2],
            "each server takes one before any takes two"
        );
        let freed = second.index();
        drop(second);
        assert_eq!(balancer.pick(&[]).unwrap().index(), freed);
    }

    #[test]
    fn tried_unhealthy_and_open_servers_are_left_out() {
        let balancer = balancer(3, 1);
        balancer.servers()[0].set_healthy(false);
        let mut lease = balancer.pick(&[2]).unwrap();
        assert_eq!(lease.index(), 1);
        lease.failed(balancer.counters());
        drop(lease);
        assert_eq!(balancer.open_circuits(), 1);
        assert_eq!(balancer.available(), 1);
        assert!(
            balancer.pick(&[2]).is_none(),
            "0 is unhealthy, 1 open, 2 tried"
        );
        assert_eq!(balancer.pick(&[]).unwrap().index(), 2);
        assert_eq!(balancer.counters().retries.load(Ordering::Relaxed), 1);
    }
}
