//! The state every handler shares: the served models by id, the request limits, the metrics,
//! the key verifier and management service of `gateway-auth`, the metering, whether the server
//! is draining and since when the database has failed its write checks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gateway_auth::{KeyVerifier, Management, Store};

use crate::accounting::Accounting;
use crate::concurrency::{Fairness, ProjectConcurrency};
use crate::metrics::Metrics;
use crate::registry::ModelRegistry;

/// Limits applied to every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Time limit of one request, in seconds.
    pub request_timeout_secs: u64,
    /// Longest pause in a request body, in seconds, before the request is answered 408.
    pub body_read_timeout_secs: u64,
    /// Failed management authentications one client address may make per minute before its
    /// management requests get 429; 0: no limit.
    pub failed_authentications_per_minute: u64,
    /// What model API bodies with fields the API does not know get: a 400 naming the field
    /// (OpenAI's answer, the default), or nothing (for legacy clients).
    pub unknown_fields: gateway_core::openai::UnknownFields,
}

/// Everything the handlers share.
pub struct AppState {
    /// The served models.
    pub models: ModelRegistry,
    /// Request limits.
    pub limits: Limits,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Verifies model API keys on the model routes.
    pub verifier: KeyVerifier,
    /// The token management operations and the audit log.
    pub management: Management,
    /// Prices, budgets, usage records.
    pub accounting: Arc<Accounting>,
    /// Most choices per request and requests per project in flight.
    pub fairness: Fairness,
    /// The requests in flight per project.
    pub(crate) concurrency: ProjectConcurrency,
    /// Failed management authentications per source address, in the last minute.
    pub(crate) failed_authentications: gateway_metering::LocalLimiter,
    draining: AtomicBool,
    /// Since when the database's write checks have failed; `None` while it takes writes.
    database_unwritable_since: Mutex<Option<Instant>>,
    /// How long the server stays ready while the database takes no writes.
    database_outage_grace: Duration,
}

impl AppState {
    /// State for a server with these models and limits, keeping keys and the audit log in
    /// `store` and metering with `accounting`.
    pub fn new(
        models: ModelRegistry,
        limits: Limits,
        store: Arc<dyn Store>,
        accounting: Arc<Accounting>,
    ) -> Self {
        Self {
            models,
            limits,
            metrics: Metrics::default(),
            verifier: KeyVerifier::new(Arc::clone(&store)),
            management: Management::new(store),
            accounting,
            fairness: Fairness::default(),
            concurrency: ProjectConcurrency::new(
                Fairness::default().max_concurrent_requests_per_project,
            ),
            failed_authentications: gateway_metering::LocalLimiter::new(),
            draining: AtomicBool::new(false),
            database_unwritable_since: Mutex::new(None),
            database_outage_grace: Duration::ZERO,
        }
    }

    /// The same state riding out a database outage for `grace`: keys verified before it keep
    /// working that long, and `/readyz` fails only once it has lasted longer (the default is
    /// no grace). Usage records wait in the journal meanwhile.
    pub fn with_database_outage_grace(mut self, grace: Duration) -> Self {
        self.verifier = self.verifier.with_outage_grace(grace);
        self.database_outage_grace = grace;
        self
    }

    /// The same state with `fairness` instead of the default ([`Fairness::default`]).
    pub fn with_fairness(mut self, fairness: Fairness) -> Self {
        self.concurrency = ProjectConcurrency::new(fairness.max_concurrent_requests_per_project);
        self.fairness = fairness;
        self
    }

    /// Marks the server as shutting down: `/readyz` fails so load balancers stop sending work,
    /// while in-flight requests finish.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Records the result of the latest database write check; returns the previous result.
    pub fn set_database_writable(&self, writable: bool) -> bool {
        let mut since = self.unwritable_since();
        let was_writable = since.is_none();
        match (writable, was_writable) {
            (true, _) => *since = None,
            (false, true) => *since = Some(Instant::now()),
            (false, false) => {}
        }
        was_writable
    }

    /// Whether the database took the latest write check (`true` until one fails).
    pub fn is_database_writable(&self) -> bool {
        self.unwritable_since().is_none()
    }

    /// Whether the database takes writes or has failed its checks for no longer than the
    /// outage grace.
    pub fn is_database_outage_tolerable(&self) -> bool {
        self.unwritable_since()
            .is_none_or(|since| since.elapsed() <= self.database_outage_grace)
    }

    fn unwritable_since(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.database_unwritable_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
