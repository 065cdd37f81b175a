//! The state every handler shares: the served models by id, the request limits, the metrics,
//! the key verifier and management service of `gateway-auth`, the metering, and whether the
//! server is draining.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gateway_auth::{KeyVerifier, Management, Store, VerifiedKey};
use gateway_backend::{Backend, Health};
use gateway_core::ServicePlan;

use crate::accounting::Accounting;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Limits applied to every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Time limit of one request, in seconds.
    pub request_timeout_secs: u64,
    /// Longest pause in a request body, in seconds, before the request is answered 408.
    pub body_read_timeout_secs: u64,
}

/// One model the gateway serves.
#[derive(Clone)]
pub struct ServedModel {
    /// What runs the model.
    pub backend: Arc<dyn Backend>,
    /// The service plan it is billed and limited under.
    pub plan: ServicePlan,
    /// When the gateway started serving it (Unix seconds), shown as `created`.
    pub created: i64,
}

impl ServedModel {
    /// `backend` served under `plan` since `created` (Unix seconds).
    pub fn new(backend: Arc<dyn Backend>, plan: ServicePlan, created: i64) -> Self {
        Self {
            backend,
            plan,
            created,
        }
    }

    /// `backend` under the plan its card names, served since now.
    pub fn from_card(backend: Arc<dyn Backend>) -> Self {
        let plan = backend.card().plan;
        Self::new(backend, plan, chrono::Utc::now().timestamp())
    }
}

/// The served models, by the id clients send.
#[derive(Clone, Default)]
pub struct ModelRegistry {
    models: BTreeMap<String, ServedModel>,
}

impl ModelRegistry {
    /// Serves `model` under `id`, replacing any model of the same id.
    pub fn insert(&mut self, id: impl Into<String>, model: ServedModel) {
        self.models.insert(id.into(), model);
    }

    /// The model with this id, or a 404 naming it.
    pub fn get(&self, id: &str) -> Result<&ServedModel, ApiError> {
        self.models.get(id).ok_or_else(|| ApiError::ModelNotFound {
            model: id.to_owned(),
        })
    }

    /// The model with this id if `key` may use it. A model the key may not use gets the same
    /// 404 as an unknown one, so a restricted key does not learn which models exist.
    pub fn permitted(&self, id: &str, key: &VerifiedKey) -> Result<&ServedModel, ApiError> {
        if key.allows_model(id) {
            self.get(id)
        } else {
            Err(ApiError::ModelNotFound {
                model: id.to_owned(),
            })
        }
    }

    /// Every served model with its id, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ServedModel)> {
        self.models.iter().map(|(id, model)| (id.as_str(), model))
    }

    /// Whether every model can take requests.
    pub fn all_ready(&self) -> bool {
        self.models
            .values()
            .all(|model| model.backend.health() == Health::Ready)
    }
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
    draining: AtomicBool,
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
            draining: AtomicBool::new(false),
        }
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
}
