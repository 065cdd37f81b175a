//! Operational routes: liveness (`/healthz`), readiness (`/readyz`) and Prometheus metrics
//! (`/metrics`). They need no key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use crate::state::AppState;

/// Handles `GET /healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Handles `GET /readyz`: every model can take requests, the database took the latest write
/// check (run in the background, see [`AppState::set_database_writable`]) and the server is not
/// draining.
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let draining = state.is_draining();
    let models_ready = state.models.all_ready();
    let database_writable = state.is_database_writable();
    let status = if !draining && models_ready && database_writable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "draining": draining,
        "models_ready": models_ready,
        "database_writable": database_writable,
    });
    (status, Json(body))
}

/// Handles `GET /metrics`: the counters, and the figures each backend shows of its own.
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    for (id, model) in state.models.iter() {
        state
            .metrics
            .set_engine_figures(id, &model.backend.figures());
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
