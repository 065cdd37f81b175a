//! The extractors of the handlers, each rejecting with the error of its API: an OpenAI-shaped
//! [`ApiError`] on the model API, a [`ManagementError`] on the management API.
//!
//! - [`OpenAiJson`] and [`ManagementJson`], the JSON body. Unlike axum's `Json`, every rejection
//!   (malformed JSON, a wrong type, a missing field, a body over the limit) names the field at
//!   fault. The content type is not checked: the body is parsed as JSON whatever it says, as
//!   `curl -d` sends a form content type by default. On the model API a field the request
//!   type does not know is refused by name unless the operator chose to ignore them
//!   (`Limits::unknown_fields`); the management API ignores them. A body over [`PARSE_ON_WORKER_BYTES`] is
//!   parsed on the blocking pool: parsing megabytes takes milliseconds to seconds, which on the
//!   async worker would stall every other request (and the token streams of running chats).
//! - [`ApiKey`] and [`Caller`], what the authentication layer proved about the request.
//! - [`ManagedPath`], the ids in a management path; an id that is not a UUID is a 404.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use gateway_auth::{parse_id, Actor, AuthError, RequestContext, VerifiedKey};
use gateway_core::openai::{from_json_slice_with, UnknownFields};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{ApiError, ManagementError};
use crate::state::AppState;

/// A request body parsed as `T` with OpenAI-shaped rejections.
#[derive(Debug)]
pub struct OpenAiJson<T>(pub T);

/// The largest body parsed on the async worker itself (64 KiB: well under a millisecond).
pub const PARSE_ON_WORKER_BYTES: usize = 64 * 1024;

impl<T: DeserializeOwned + Send + 'static> FromRequest<std::sync::Arc<AppState>> for OpenAiJson<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &std::sync::Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        json_body(request, state, state.limits.unknown_fields)
            .await
            .map(Self)
    }
}

/// A management request body parsed as `T`, rejected with a [`ManagementError`].
#[derive(Debug)]
pub struct ManagementJson<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromRequest<std::sync::Arc<AppState>>
    for ManagementJson<T>
{
    type Rejection = ManagementError;

    async fn from_request(
        request: Request,
        state: &std::sync::Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            json_body(request, state, UnknownFields::Ignore).await?,
        ))
    }
}

/// Reads the body (within the configured limit) and parses it as `T` with fields `T` does not
/// know handled as `unknown` says, a large body on the blocking pool.
async fn json_body<T: DeserializeOwned + Send + 'static>(
    request: Request,
    state: &std::sync::Arc<AppState>,
    unknown: UnknownFields,
) -> Result<T, ApiError> {
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| body_error(&rejection, &state.limits))?;
    if bytes.len() <= PARSE_ON_WORKER_BYTES {
        return Ok(from_json_slice_with(&bytes, unknown)?);
    }
    tokio::task::spawn_blocking(move || from_json_slice_with(&bytes, unknown))
        .await
        .map_err(|_| ApiError::Internal("parsing the request body"))?
        .map_err(ApiError::from)
}

fn body_error(rejection: &BytesRejection, limits: &crate::Limits) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge {
            limit: limits.max_body_bytes,
        }
    } else if caused_by::<tower_http::timeout::TimeoutError>(rejection) {
        ApiError::BodyTimeout {
            seconds: limits.body_read_timeout_secs,
        }
    } else {
        ApiError::UnreadableBody
    }
}

/// Whether an error of type `E` is somewhere in `error`'s chain of causes.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<E>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// The verified model API key of a request on the model API.
#[derive(Debug, Clone)]
pub struct ApiKey(pub VerifiedKey);

impl<S: Send + Sync> FromRequestParts<S> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<VerifiedKey>()
            .cloned()
            .map(Self)
            .ok_or(ApiError::Auth(AuthError::InvalidKey))
    }
}

/// The authenticated principal of a management request and where the request came from.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal.
    pub actor: Actor,
    /// Request id and client address, for the audit log.
    pub ctx: RequestContext,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ManagementError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let actor = parts
            .extensions
            .get::<Actor>()
            .cloned()
            .ok_or(AuthError::Unauthenticated)?;
        let ctx = parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .unwrap_or_default();
        Ok(Self { actor, ctx })
    }
}

/// The ids in a management path: `{projectId}`, and where the route has them `{regionId}` and
/// `{tokenId}`. Ids that are not UUIDs are [`AuthError::NotFound`], like unknown ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedPath {
    /// The project.
    pub project_id: Uuid,
    /// The region (empty on routes without one).
    pub region: String,
    /// The token, on routes of one token.
    pub token_id: Option<Uuid>,
}

impl ManagedPath {
    /// The token id, or a 404 on a route without one.
    pub fn token(&self) -> Result<Uuid, AuthError> {
        self.token_id.ok_or(AuthError::NotFound)
    }

    fn from_params<'a>(
        params: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, AuthError> {
        let mut project_id = None;
        let mut region = String::new();
        let mut token_id = None;
        for (name, value) in params {
            match name {
                "projectId" => project_id = Some(parse_id(value)?),
                "regionId" => value.clone_into(&mut region),
                "tokenId" => token_id = Some(parse_id(value)?),
                _ => {}
            }
        }
        Ok(Self {
            project_id: project_id.ok_or(AuthError::NotFound)?,
            region,
            token_id,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ManagedPath {
    type Rejection = ManagementError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| AuthError::NotFound)?;
        Ok(Self::from_params(params.iter())?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn managed_paths_parse_their_ids() {
        let project = Uuid::new_v4();
        let token = Uuid::new_v4();
        let (p, t) = (project.to_string(), token.to_string());
        let params = [
            ("projectId", p.as_str()),
            ("regionId", "eu01"),
            ("tokenId", t.as_str()),
        ];
        let path = ManagedPath::from_params(params.into_iter()).unwrap();
        assert_eq!(path.project_id, project);
        assert_eq!(path.region, "eu01");
        assert_eq!(path.token().unwrap(), token);
    }

    #[test]
    fn ids_that_are_not_uuids_are_not_found() {
        let params = [("projectId", "abc"), ("regionId", "eu01")];
        assert!(matches!(
            ManagedPath::from_params(params.into_iter()),
            Err(AuthError::NotFound)
        ));
        let p = Uuid::new_v4().to_string();
        let params = [("projectId", p.as_str()), ("tokenId", "1")];
        assert!(matches!(
            ManagedPath::from_params(params.into_iter()),
            Err(AuthError::NotFound)
        ));
        let path = ManagedPath::from_params([("projectId", p.as_str())].into_iter()).unwrap();
        assert!(path.token().is_err());
    }
}
