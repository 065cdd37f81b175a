//! The token management API, shaped like the STACKIT model-serving API:
//! `POST|GET /v1/projects/{projectId}/regions/{regionId}/tokens` and
//! `GET|PATCH|DELETE …/tokens/{tokenId}`. Single tokens come wrapped as `{"token": {...}}`,
//! lists as `{"tokens": [...]}`, a deletion answers `{"message": ...}`. The caller is the
//! principal the authentication layer resolved from the management token; the role checks
//! and the audit events are `gateway-auth`'s.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gateway_auth::{CreateToken, CreatedToken, Token, UpdateToken};
use serde::Serialize;

use crate::error::ApiError;
use crate::extract::{Caller, ManagedPath, OpenAiJson};
use crate::state::AppState;

/// One token: `{"token": {...}}`.
#[derive(Debug, Serialize)]
pub struct TokenEnvelope<T> {
    /// The token object (with its secret `content` right after creation).
    pub token: T,
}

/// The tokens of a project in a region: `{"tokens": [...]}`.
#[derive(Debug, Serialize)]
pub struct TokenList {
    /// The tokens, oldest first.
    pub tokens: Vec<Token>,
}

/// The answer to a deletion: `{"message": ...}`.
#[derive(Debug, Serialize)]
pub struct Message {
    /// What happened.
    pub message: &'static str,
}

/// Handles `POST …/tokens`: 201 with the token and its secret `content`, shown this once.
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
    OpenAiJson(body): OpenAiJson<CreateToken>,
) -> Result<(StatusCode, Json<TokenEnvelope<CreatedToken>>), ApiError> {
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
    Ok((StatusCode::CREATED, Json(TokenEnvelope { token })))
}

/// Handles `GET …/tokens`.
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state
        .management
        .list_tokens(&caller.actor, path.project_id, &path.region, &caller.ctx)
        .await?;
    Ok(Json(TokenList { tokens }))
}

/// Handles `GET …/tokens/{tokenId}`.
pub async fn get_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
) -> Result<Json<TokenEnvelope<Token>>, ApiError> {
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

/// Handles `PATCH …/tokens/{tokenId}`: changes `name` and/or `description`.
pub async fn update_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
    OpenAiJson(body): OpenAiJson<UpdateToken>,
) -> Result<Json<TokenEnvelope<Token>>, ApiError> {
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
    Ok(Json(TokenEnvelope { token }))
}

/// Handles `DELETE …/tokens/{tokenId}`: revokes the token at once (verifiers notice within
/// their cache age, 500 ms by default).
pub async fn delete_token(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
) -> Result<Json<Message>, ApiError> {
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
    Ok(Json(Message {
        message: "token deleted",
    }))
}
