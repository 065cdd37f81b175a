//! The gateway's HTTP frontend: the OpenAI-compatible routes on axum (hyper), the layers every
//! request passes (request id, tracing, metrics, body limit, time limit, error masking), and a
//! server loop that drains in-flight requests on shutdown.

mod error;
mod extract;
mod metrics;
mod middleware;
mod routes;
mod state;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use axum::http::Uri;
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use error::ApiError;
pub use metrics::Metrics;
pub use middleware::REQUEST_ID_HEADER;
pub use state::{AppState, Limits, ModelRegistry, ServedModel};

/// The complete router of the gateway over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    Router::new()
        .route(
            "/v1/embeddings",
            post(routes::embeddings::create_embeddings),
        )
        .route("/v1/models", get(routes::models::list_models))
        .route("/v1/models/{model}", get(routes::models::get_model))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
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
                .layer(DefaultBodyLimit::max(state.limits.max_body_bytes)),
        )
        .with_state(state)
}

async fn route_not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting connections and
/// waits for in-flight requests to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
