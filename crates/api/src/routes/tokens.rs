//! The token management API, as the STACKIT model-serving API defines it:
//! `POST|GET /v1/projects/{projectId}/regions/{regionId}/tokens` and
//! `GET|PATCH|DELETE …/tokens/{tokenId}`. Single tokens come wrapped as `{"token": {...}}`,
//! lists as `{"tokens": [...]}`, a deletion answers `{"message": ...}`; creation, change and
//! deletion answer 202 as the service does, reads 200. Errors are [`ManagementError`]s. The
//! caller is the principal the authentication layer resolved from the management token; the
//! role checks and the audit events are `gateway-auth`'s.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use gateway_auth::labels::SELECTOR_PARAM;
use gateway_auth::{CreateToken, CreatedToken, Token, UpdateToken};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ManagementError};
use crate::extract::{Caller, ManagedPath, ManagementJson};
use crate::state::AppState;

/// One token: `{"token": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenEnvelope<T> {
    /// The token object (with its secret `content` right after creation).
    pub token: T,
}

/// The tokens of a project in a region: `{"tokens": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// The tokens, oldest first.
    pub tokens: Vec<Token>,
}

/// The answer to a deletion: `{"message": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    /// What happened.
    pub message: &'static str,
}

/// The query string of a listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The label selector: `label_selector`, as the service's SDKs send it (`labelSelector` is
    /// read too, so that a camelCase client is never silently left unfiltered).
    #[serde(alias = "labelSelector")]
    label_selector: Option<String>,
}

/// Handles `POST …/tokens`: 202 with the token and its secret `content`, shown this once.
#[utoipa::path(
    post,
    path = "/v1/projects/{projectId}/regions/{regionId}/tokens",
    tag = "management",
    params(
        ("projectId" = Uuid, Path, description = "The project."),
        ("regionId" = String, Path, description = "The region, e.g. `eu01`."),
    ),
    request_body = CreateToken,
    responses(
        (status = 202, description = "The new token with its secret `content`, shown this once.",
         body = TokenEnvelope<CreatedToken>),
        crate::openapi::ManagementWriteErrors,
    ),
    security(("management_token" = []))
)]
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
    ManagementJson(body): ManagementJson<CreateToken>,
) -> Result<(StatusCode, Json<TokenEnvelope<CreatedToken>>), ManagementError> {
    let token = state
        .management
        .create_token(
            &caller.actor,
            path.project_id,
            &path.region,
            body,
            &caller.ctx,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(TokenEnvelope { token })))
}

/// Handles `GET …/tokens?label_selector=…`.
#[utoipa::path(
    get,
    path = "/v1/projects/{projectId}/regions/{regionId}/tokens",
    tag = "management",
    params(
        ("projectId" = Uuid, Path, description = "The project."),
        ("regionId" = String, Path, description = "The region, e.g. `eu01`."),
        ListQuery,
    ),
    responses(
        (status = 200, description = "The tokens, oldest first.", body = TokenList),
        crate::openapi::ManagementReadErrors,
    ),
    security(("management_token" = []))
)]
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<TokenList>, ManagementError> {
    let Query(query) = query.map_err(|rejection| ApiError::InvalidParam {
        message: rejection.body_text(),
        param: SELECTOR_PARAM.to_owned(),
    })?;
    let tokens = state
        .management
        .list_tokens(
            &caller.actor,
            path.project_id,
            &path.region,
            query.label_selector.as_deref(),
            &caller.ctx,
        )
        .await?;
    Ok(Json(TokenList { tokens }))
}

/// Handles `GET …/tokens/{tokenId}`.
#[utoipa::path(
    get,
    path = "/v1/projects/{projectId}/regions/{regionId}/tokens/{tokenId}",
    tag = "management",
    params(
        ("projectId" = Uuid, Path, description = "The project."),
        ("regionId" = String, Path, description = "The region, e.g. `eu01`."),
        ("tokenId" = Uuid, Path, description = "The token."),
    ),
    responses(
        (status = 200, description = "The token.", body = TokenEnvelope<Token>),
        crate::openapi::ManagementReadErrors,
    ),
    security(("management_token" = []))
)]
pub async fn get_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
) -> Result<Json<TokenEnvelope<Token>>, ManagementError> {
    let token = state
        .management
        .get_token(
            &caller.actor,
            path.project_id,
            &path.region,
            path.token()?,
            &caller.ctx,
        )
        .await?;
    Ok(Json(TokenEnvelope { token }))
}

/// Handles `PATCH …/tokens/{tokenId}`: 202 after changing `name`, `description` and/or
/// `labels`; a body with any other field is refused with 400 naming it ([`UpdateToken`]).
#[utoipa::path(
    patch,
    summary = "Changes a token's `name`, `description` and/or `labels`.",
    description = "A body with any other field is refused with 400 naming it.",
    path = "/v1/projects/{projectId}/regions/{regionId}/tokens/{tokenId}",
    tag = "management",
    params(
        ("projectId" = Uuid, Path, description = "The project."),
        ("regionId" = String, Path, description = "The region, e.g. `eu01`."),
        ("tokenId" = Uuid, Path, description = "The token."),
    ),
    request_body = UpdateToken,
    responses(
        (status = 202, description = "The changed token.", body = TokenEnvelope<Token>),
        crate::openapi::ManagementWriteErrors,
    ),
    security(("management_token" = []))
)]
pub async fn update_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
    ManagementJson(body): ManagementJson<UpdateToken>,
) -> Result<(StatusCode, Json<TokenEnvelope<Token>>), ManagementError> {
    let token = state
        .management
        .update_token(
            &caller.actor,
            path.project_id,
            &path.region,
            path.token()?,
            body,
            &caller.ctx,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(TokenEnvelope { token })))
}

/// Handles `DELETE …/tokens/{tokenId}`: 202 once the token is revoked (verifiers notice within
/// their cache age, 500 ms by default).
#[utoipa::path(
    delete,
    path = "/v1/projects/{projectId}/regions/{regionId}/tokens/{tokenId}",
    tag = "management",
    params(
        ("projectId" = Uuid, Path, description = "The project."),
        ("regionId" = String, Path, description = "The region, e.g. `eu01`."),
        ("tokenId" = Uuid, Path, description = "The token."),
    ),
    responses(
        (status = 202, description = "The token is revoked.", body = Message),
        crate::openapi::ManagementWriteErrors,
    ),
    security(("management_token" = []))
)]
pub async fn delete_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
) -> Result<(StatusCode, Json<Message>), ManagementError> {
    state
        .management
        .delete_token(
            &caller.actor,
            path.project_id,
            &path.region,
            path.token()?,
            &caller.ctx,
        )
        .await?;
    let message = Message {
        message: "token deleted",
    };
    Ok((StatusCode::ACCEPTED, Json(message)))
}
