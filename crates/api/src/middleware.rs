//! Cross-cutting request handling as layers: request ids, tracing spans without bodies,
//! metrics, the request time limit, bounds on how a body arrives, and the masking of server
//! errors down to the request id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Response};
use axum::middleware::Next;
use futures::StreamExt;
use tower_http::timeout::TimeoutBody;

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

/// Bounds how a body may arrive: a declared `Content-Length` over the limit is answered 413
/// before a byte of it is kept (the body is read and dropped, see [`discard_body`]), and a body that pauses longer than the configured time fails
/// its reading (answered 408), so that a slow or short body cannot hold a request open.
pub async fn body_limits(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    let limit = state.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let pause = Duration::from_secs(state.limits.body_read_timeout_secs);
    if let Some(length) = declared.filter(|length| *length > limit as u64) {
        let surface = Surface::of_path(request.uri().path());
        let mut response = ApiError::PayloadTooLarge { limit }.respond(surface);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        if length <= MAX_DISCARDED_BODY_BYTES {
            tokio::spawn(discard_body(request.into_body(), pause));
        }
        return response;
    }
    let request = request.map(|body| Body::new(TimeoutBody::new(pause, body)));
    next.run(request).await
}

/// Largest refused body that is still read and thrown away so that its sender sees the 413;
/// the connection of a larger one is closed as soon as the answer is written.
pub const MAX_DISCARDED_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// Reads a refused body to its end and drops it, giving up after `deadline`. A client that
/// writes its whole body before reading the answer (most do) would otherwise have its
/// connection reset under it and never see the 413.
async fn discard_body(body: Body, deadline: Duration) {
    let mut chunks = body.into_data_stream();
    let drain = async { while let Some(Ok(_)) = chunks.next().await {} };
    let _ = tokio::time::timeout(deadline, drain).await;
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

/// Longest request id a client may choose; a longer one is replaced by one of ours.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Drops a client's request id that is longer than [`MAX_REQUEST_ID_LEN`] or holds anything
/// but printable ASCII, so that ids stored in the audit log and written to the log stay small
/// and plain; [`MakeRequestId`] then gives the request one of ours.
pub async fn bounded_request_id(mut request: Request, next: Next) -> Response<Body> {
    let acceptable = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .is_none_or(|value| is_acceptable_request_id(value.as_bytes()));
    if !acceptable {
        request.headers_mut().remove(REQUEST_ID_HEADER);
    }
    next.run(request).await
}

fn is_acceptable_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(u8::is_ascii_graphic)
}

/// Makes the id of a request that came without an acceptable one: `req_<uuid>`.
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
