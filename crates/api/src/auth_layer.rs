//! Authentication as one layer in front of every route. The router is authenticated by
//! default: only the paths in [`PUBLIC_PATHS`], the catalog under [`PUBLIC_CATALOG`] and the
//! console's static files under `/console` need no credential, the management API under
//! `/v1/projects/` needs a management token, and everything else (the model API, unknown
//! paths included) needs a model API key. Both credentials come as `Authorization: Bearer …`.
//!
//! A verified key goes into the request's extensions as a [`VerifiedKey`]; an authenticated
//! principal as an [`Actor`] together with its [`RequestContext`]. Failures never say whether
//! the credential was missing, unknown, expired or revoked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Response};
use axum::middleware::Next;
use axum::response::IntoResponse;
use gateway_auth::{Actor, AuthError, RequestContext};
use gateway_metering::{Quota, Rate, RateLimiter};
use uuid::Uuid;

use crate::error::{ApiError, ManagementError};
use crate::middleware::REQUEST_ID_HEADER;
use crate::state::AppState;

/// Paths that answer without any credential (health, readiness, metrics, the announcements
/// of deprecations, the OpenAPI document).
pub const PUBLIC_PATHS: &[&str] = &[
    "/healthz",
    "/health",
    "/version",
    "/readyz",
    "/metrics",
    "/v1/announcements",
    "/openapi.json",
];

/// The prefix of the public catalog in the managed service's model API shape.
pub const PUBLIC_CATALOG: &str = "/v1/regions/";

/// The path prefix of the management API.
const MANAGEMENT_ROOT: &str = "/v1/projects";

/// The credential a path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// None: the path is on the public allow-list.
    None,
    /// A model API key (`sk-…`).
    ApiKey,
    /// A management token (`gmt-…`).
    ManagementToken,
}

/// Which credential `path` needs: public paths and the console none, the management API a
/// management token (and, when a browser sends a change, the gateway's own origin),
/// everything else a model API key.
pub fn credential_for(path: &str) -> Credential {
    let public = PUBLIC_PATHS.contains(&path)
        || path.starts_with(PUBLIC_CATALOG)
        || crate::console::is_console_path(path);
    if public {
        Credential::None
    } else if is_management_path(path) {
        Credential::ManagementToken
    } else {
        Credential::ApiKey
    }
}

/// Whether `path` is `/v1/projects` or below it: the management API.
pub(crate) fn is_management_path(path: &str) -> bool {
    path.strip_prefix(MANAGEMENT_ROOT)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The project id of a management path (`/v1/projects/{projectId}/…`), when it is a UUID.
pub fn project_in_path(path: &str) -> Option<Uuid> {
    let rest = path.strip_prefix(MANAGEMENT_ROOT)?.strip_prefix('/')?;
    rest.split('/').next()?.parse().ok()
}

/// The bearer credential of the `Authorization` header, if there is one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// Where a request came from, for the audit log: its request id and the client's address
/// (absent when the server was not started with connection info, e.g. in tests).
pub fn request_context(request: &Request) -> RequestContext {
    RequestContext {
        request_id: request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        source_ip: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip()),
    }
}

/// The layer: checks the credential the path needs and passes the request on with what it
/// proved in the extensions, or answers 401.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response<Body> {
    match credential_for(request.uri().path()) {
        Credential::None => next.run(request).await,
        Credential::ApiKey => {
            let presented = bearer(request.headers()).unwrap_or_default().to_owned();
            match state.verifier.verify(&presented).await {
                Ok(key) => {
                    request.extensions_mut().insert(key);
                    next.run(request).await
                }
                Err(error @ AuthError::Store(_)) => {
                    ApiError::KeysUnavailable(error).into_response()
                }
                Err(error) => ApiError::from(error).into_response(),
            }
        }
        Credential::ManagementToken => {
            if crate::console::is_cross_origin_write(&request) {
                return ManagementError::from(ApiError::CrossOrigin).into_response();
            }
            let ctx = request_context(&request);
            let source = failure_key(&ctx);
            if let Some(retry_after) = locked_out(&state, &source).await {
                let error = ApiError::TooManyFailedAuthentications { retry_after };
                return ManagementError::from(error).into_response();
            }
            let presented = bearer(request.headers()).map(str::to_owned);
            let project_id = project_in_path(request.uri().path());
            match authenticate_principal(&state, presented.as_deref(), project_id, &ctx).await {
                Ok(actor) => {
                    request.extensions_mut().insert(actor);
                    request.extensions_mut().insert(ctx);
                    next.run(request).await
                }
                Err(error) => {
                    if matches!(error, ApiError::Auth(AuthError::Unauthenticated)) {
                        count_failure(&state, &source).await;
                    }
                    ManagementError::from(error).into_response()
                }
            }
        }
    }
}

/// The budget of failed management authentications of one address: `per_minute`, and as many
/// at once after a quiet minute.
fn failure_quota(per_minute: u64) -> Quota {
    let rate = Rate {
        per_minute,
        burst: 0,
    };
    Quota {
        requests: rate,
        tokens: rate,
    }
}

/// The address whose failures count together (one bucket for requests without one).
fn failure_key(ctx: &RequestContext) -> String {
    ctx.source_ip
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// How long `source` must wait, when it has spent its failed authentications (never, when
/// they are not limited). Beyond them its management requests get 429 before any credential
/// is checked or audit event written, so that guessing tokens is slow and cannot fill the
/// audit log.
async fn locked_out(state: &AppState, source: &str) -> Option<Duration> {
    let per_minute = state.limits.failed_authentications_per_minute;
    if per_minute == 0 {
        return None;
    }
    let quota = failure_quota(per_minute);
    let (failures, _) = state
        .failed_authentications
        .peek(source, quota)
        .await
        .ok()?;
    (failures.remaining == 0).then(|| Duration::from_millis(60_000 / per_minute))
}

/// Takes one failed authentication from `source`'s budget.
async fn count_failure(state: &AppState, source: &str) {
    let per_minute = state.limits.failed_authentications_per_minute;
    if per_minute == 0 {
        return;
    }
    let quota = failure_quota(per_minute);
    if let Err(error) = state.failed_authentications.admit(source, quota, 0).await {
        tracing::warn!(%error, "could not count a failed management authentication");
    }
}

/// Resolves the management token; a refusal on a project path is written to that project's
/// audit log.
async fn authenticate_principal(
    state: &AppState,
    presented: Option<&str>,
    project_id: Option<Uuid>,
    ctx: &RequestContext,
) -> Result<Actor, ApiError> {
    let result = match presented {
        Some(token) => state.management.authenticate_management_token(token).await,
        None => Err(AuthError::Unauthenticated),
    };
    match result {
        Ok(actor) => Ok(actor),
        Err(AuthError::Unauthenticated) => {
            if let Some(project_id) = project_id {
                if let Err(error) = state
                    .management
                    .record_unauthenticated(project_id, ctx)
                    .await
                {
                    tracing::warn!(%error, "could not audit an unauthenticated management request");
                }
            }
            Err(ApiError::Auth(AuthError::Unauthenticated))
        }
        Err(other) => Err(ApiError::Auth(other)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_the_allow_list_is_public() {
        assert_eq!(credential_for("/healthz"), Credential::None);
        assert_eq!(credential_for("/readyz"), Credential::None);
        assert_eq!(credential_for("/metrics"), Credential::None);
        assert_eq!(credential_for("/healthz/"), Credential::ApiKey);
        assert_eq!(credential_for("/v1/embeddings"), Credential::ApiKey);
        assert_eq!(credential_for("/v1/models/x"), Credential::ApiKey);
        assert_eq!(credential_for("/v1/nothing-here"), Credential::ApiKey);
        assert_eq!(credential_for("/"), Credential::ApiKey);
    }

    #[test]
    fn management_paths_need_a_management_token() {
        assert_eq!(credential_for("/v1/projects"), Credential::ManagementToken);
        assert_eq!(
            credential_for("/v1/projects/x/regions/eu01/tokens"),
            Credential::ManagementToken
        );
        assert_eq!(credential_for("/v1/projectsx"), Credential::ApiKey);
    }

    #[test]
    fn the_project_id_is_read_from_the_path() {
        let id = Uuid::new_v4();
        assert_eq!(
            project_in_path(&format!("/v1/projects/{id}/audit-log")),
            Some(id)
        );
        assert_eq!(project_in_path(&format!("/v1/projects/{id}")), Some(id));
        assert_eq!(project_in_path("/v1/projects/not-a-uuid/audit-log"), None);
        assert_eq!(project_in_path("/v1/projects"), None);
        assert_eq!(project_in_path(&format!("/v1/other/{id}")), None);
    }

    #[test]
    fn bearer_credentials_are_parsed() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-a-b"),
        );
        assert_eq!(bearer(&headers), Some("sk-a-b"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  sk-a-b "),
        );
        assert_eq!(bearer(&headers), Some("sk-a-b"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }
}
