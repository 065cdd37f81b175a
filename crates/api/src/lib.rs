//! The gateway's HTTP frontend: the OpenAI-compatible routes on axum (hyper), the token
//! management and audit-log routes, the layers every request passes (request id, tracing,
//! metrics, error masking, time limit, body limit, authentication), and a server loop that
//! drains in-flight requests on shutdown; and the web console at `/console`, which works
//! through the same management and catalog routes.
//!
//! It serves any [`gateway_backend::Backend`] and depends on no engine: build an
//! [`AppState`] from a [`ModelRegistry`] (model id → backend), request [`Limits`] and a
//! `gateway_auth` key store, then [`serve`] the [`router`] on a listener. Chat and completions
//! share one pipeline (check at the edge, generate, merge the choices, meter the usage the
//! backend reports, answer whole or as server-sent events). The `scripted_server` example
//! serves the router over backends written outside the engine.

mod accounting;
mod auth_layer;
mod concurrency;
mod console;
mod error;
mod extract;
mod generation;
mod metrics;
mod middleware;
mod openapi;
mod registry;
mod routes;
mod server;
mod sse;
mod state;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::{get, patch, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::error::Surface;

pub use accounting::{go_duration, Accounting, COST_HEADER};
pub use auth_layer::PUBLIC_PATHS;
pub use concurrency::Fairness;
pub use console::{CONSOLE_PATH, CONTENT_SECURITY_POLICY};
pub use error::{ApiError, ManagementError, ManagementErrorBody};
pub use extract::PARSE_ON_WORKER_BYTES;
pub use metrics::Metrics;
pub use middleware::REQUEST_ID_HEADER;
pub use openapi::ApiDoc;
pub use registry::{http_date, ModelRegistry, Notice, Resolved, ServedModel, RETIRED_HEADER};
pub use server::{serve, ConnectionLimits};
pub use state::{AppState, Limits};

/// The path of a project's tokens in a region.
const TOKENS: &str = "/v1/projects/{projectId}/regions/{regionId}/tokens";
/// The path of one token.
const TOKEN: &str = "/v1/projects/{projectId}/regions/{regionId}/tokens/{tokenId}";

/// The complete router of the gateway over `state`. Every route but [`PUBLIC_PATHS`] needs a
/// credential: the management routes a management token, all others a model API key.
pub fn router(state: Arc<AppState>) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    Router::new()
        .route(
            "/v1/embeddings",
            post(routes::embeddings::create_embeddings),
        )
        .route(
            "/v1/chat/completions",
            post(routes::chat::create_chat_completion),
        )
        .route(
            "/v1/completions",
            post(routes::completions::create_completion),
        )
        .route("/v1/responses", post(routes::responses::create_response))
        .route("/v1/tokenize", post(routes::tokenize::tokenize))
        .route("/v1/detokenize", post(routes::tokenize::detokenize))
        .route("/tokenize", post(routes::tokenize::tokenize_at_root))
        .route("/detokenize", post(routes::tokenize::detokenize_at_root))
        .route("/v1/models", get(routes::models::list_models))
        .route("/v1/models/{model}", get(routes::models::get_model))
        .route(
            TOKENS,
            post(routes::tokens::create_token).get(routes::tokens::list_tokens),
        )
        .route(
            TOKEN,
            get(routes::tokens::get_token)
                .merge(patch(routes::tokens::update_token))
                .delete(routes::tokens::delete_token),
        )
        .route(
            "/v1/projects/{projectId}/audit-log",
            get(routes::audit::audit_log),
        )
        .route("/v1/projects", get(routes::projects::list_projects))
        .route(
            "/v1/projects/{projectId}/limits",
            get(routes::projects::limits),
        )
        .route("/v1/projects/{projectId}/usage", get(routes::usage::usage))
        .route(
            "/v1/projects/{projectId}/audit-log/export",
            get(routes::audit::export_audit_log),
        )
        .route(
            "/v1/regions/{regionId}/models",
            get(routes::catalog::list_models),
        )
        .route(
            "/v1/regions/{regionId}/chat/models/{modelId}",
            get(routes::catalog::get_chat_model),
        )
        .route(
            "/v1/regions/{regionId}/embedding/models/{modelId}",
            get(routes::catalog::get_embedding_model),
        )
        .route("/v1/announcements", get(routes::catalog::announcements))
        .route("/healthz", get(routes::health::healthz))
        .route("/health", get(routes::health::health))
        .route("/version", get(routes::health::version))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route(CONSOLE_PATH, get(console::page))
        .route("/console/", get(console::page_with_slash))
        .route("/console/assets/{file}", get(console::asset))
        .route("/console/assets/views/{file}", get(console::view_asset))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(middleware::bounded_request_id))
                .layer(SetRequestIdLayer::new(
                    request_id.clone(),
                    middleware::MakeRequestId,
                ))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(middleware::request_span)
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&state),
                    middleware::observe,
                ))
                .layer(axum::middleware::from_fn(middleware::mask_server_errors))
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&state),
                    middleware::time_limit,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&state),
                    middleware::body_limits,
                ))
                .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&state),
                    auth_layer::authenticate,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&state),
                    accounting::rate_limit_headers,
                )),
        )
        .with_state(state)
}

async fn route_not_found(uri: Uri) -> Response {
    let path = uri.path();
    let error = ApiError::RouteNotFound {
        path: path.to_owned(),
    };
    error.respond(Surface::of_path(path))
}

async fn method_not_allowed(uri: Uri) -> Response {
    ApiError::MethodNotAllowed.respond(Surface::of_path(uri.path()))
}
