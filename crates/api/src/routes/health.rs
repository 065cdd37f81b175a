//! Operational routes: liveness (`/healthz`), readiness (`/readyz`) and Prometheus metrics
//! (`/metrics`). They need no key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use gateway_metering::LimiterState;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The media type of the metrics.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The answer of `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// The answer of `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// Whether the server is shutting down.
    draining: bool,
    /// Whether every model's worker runs.
    models_ready: bool,
    /// Whether the database took the latest write check. While it does not, the server stays
    /// ready for the configured outage grace, serving keys it verified before and keeping
    /// usage records in its journal.
    database_writable: bool,
    /// Whether the rate limits' store answers: `available`, `failing_open` (each replica
    /// limits alone) or `failing_closed` (requests refused; not ready).
    rate_limiter: &'static str,
    /// Usage records in this replica's journal that are not in the database yet.
    usage_records_pending: u64,
}

/// Handles `GET /healthz`: the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process runs.", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Handles `GET /health`: [`healthz`] at the path vLLM's clients probe.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process runs (as `/healthz`).", body = Health))
)]
pub async fn health() -> Json<Health> {
    healthz().await
}

/// The answer of `GET /version`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Version {
    /// The gateway's version.
    version: &'static str,
}

/// Handles `GET /version` (as vLLM serves it): the gateway's version.
#[utoipa::path(
    get,
    path = "/version",
    tag = "operations",
    responses((status = 200, description = "The gateway's version.", body = Version))
)]
pub async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Handles `GET /readyz`: every model can take requests, the database took the latest write
/// check (run in the background, see [`AppState::set_database_writable`]) or has failed them
/// for no longer than the outage grace, the rate limits do not fail closed, and the server is
/// not draining.
#[utoipa::path(
    get,
    path = "/readyz",
    summary = "Readiness: every model's worker runs, the database takes writes (or has not for \
               less than the outage grace), the rate limits are not failing closed and the \
               server is not draining.",
    description = "The database's write check runs in the background; the answer is its \
                   latest result.",
    tag = "operations",
    responses(
        (status = 200, description = "Ready for requests.", body = Readiness),
        (status = 503, description = "Not ready: the body says why.", body = Readiness),
    )
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let draining = state.is_draining();
    let models_ready = state.models.all_ready();
    let database_writable = state.is_database_writable();
    let limiter = state.accounting.limiter.state();
    let ready = !draining
        && models_ready
        && state.is_database_outage_tolerable()
        && limiter != LimiterState::FailingClosed;
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        draining,
        models_ready,
        database_writable,
        rate_limiter: limiter.name(),
        usage_records_pending: state.accounting.journal.pending(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Handles `GET /metrics`: the counters, and the figures each backend shows of its own.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The metrics in the OpenMetrics text format.",
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
         body = String),
    )
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    for (id, model) in state.models.iter() {
        state
            .metrics
            .set_engine_figures(id, &model.backend.figures());
    }
    state.metrics.set_dependencies(
        state.is_database_writable(),
        state.accounting.limiter.state(),
        state.accounting.journal.pending(),
    );
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        state.metrics.render(),
    )
}
