//! Cross-cutting request handling as layers: request ids, tracing spans without bodies,
//! metrics, the request time limit, and the masking of server errors down to the request id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Response};
use axum::middleware::Next;

use crate::error::{ApiError, MaskedServerError, Surface};
use crate::state::AppState;

/// The header that carries the request id, echoed when the client sends one.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Counts the request and its latency under its route template.
pub async fn observe(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state
        .metrics
        .observe_request(&route, &method, status, started.elapsed().as_secs_f64());
    response
}

/// Answers 504 when the handler takes longer than the configured limit.
pub async fn time_limit(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    let seconds = state.limits.request_timeout_secs;
    let surface = Surface::of_path(request.uri().path());
    match tokio::time::timeout(Duration::from_secs(seconds), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout { seconds }.respond(surface),
    }
}

/// Replaces the body of a masked server error with one that names only the request id, in the
/// shape of the request's API.
pub async fn mask_server_errors(request: Request, next: Next) -> Response<Body> {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("unknown")
        .to_owned();
    let response = next.run(request).await;
    let Some(masked) = response.extensions().get::<MaskedServerError>().copied() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    let json = masked.body(&request_id).unwrap_or_default();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json))
}

/// Keeps an incoming request id when it is printable and short, else makes a new one.
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeRequestId;

impl tower_http::request_id::MakeRequestId for MakeRequestId {
    fn make_request_id<B>(
        &mut self,
        _request: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let id = format!("req_{}", uuid::Uuid::new_v4().simple());
        HeaderValue::from_str(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}

/// The tracing span of a request: method, path and request id, never the body.
pub fn request_span(request: &axum::http::Request<Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    )
}
