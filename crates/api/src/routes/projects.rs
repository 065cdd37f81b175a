//! What a principal may see of its projects, beyond the service's token API:
//! `GET /v1/projects` lists the projects the principal has a role on, with that role (the
//! console's project picker), and `GET /v1/projects/{projectId}/limits` shows the project's
//! rate-limit budgets on each served model now. Both answer in the management API's shape.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use gateway_auth::{Actor, ProjectAccess};
use gateway_core::ServicePlan;
use gateway_metering::BucketStatus;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ManagementError;
use crate::extract::{Caller, ManagedPath};
use crate::state::AppState;

/// The answer of `GET /v1/projects`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    /// Who is asking.
    pub principal: Actor,
    /// The projects the principal has a role on, by name.
    pub projects: Vec<ProjectAccess>,
}

/// One budget of a project on a model now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelLimits {
    /// The model id clients send.
    pub model: String,
    /// Its plan (`base`, `plus` or `premium`).
    #[schema(value_type = String, example = "base")]
    pub plan: ServicePlan,
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Tokens per minute (weighted as admissions count them).
    pub tokens_per_minute: u64,
    /// Whole requests the bucket holds now (up to a minute's worth plus the burst).
    pub requests_remaining: u64,
    /// Whole tokens the bucket holds now.
    pub tokens_remaining: u64,
    /// Milliseconds until the request bucket is full again.
    pub requests_reset_ms: u64,
    /// Milliseconds until the token bucket is full again.
    pub tokens_reset_ms: u64,
}

/// The answer of `GET /v1/projects/{projectId}/limits`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsView {
    /// The project.
    pub project_id: Uuid,
    /// Whether the rate limiter answered; when it did not, `limits` is empty.
    pub available: bool,
    /// One line per served model, by model id.
    pub limits: Vec<ModelLimits>,
}

/// Handles `GET /v1/projects`.
#[utoipa::path(
    get,
    path = "/v1/projects",
    tag = "management",
    responses(
        (status = 200, description = "The principal and the projects it has a role on.",
         body = ProjectList),
        (status = 401, description = "No valid management token.",
         body = crate::ManagementErrorBody),
    ),
    security(("management_token" = []))
)]
pub async fn list_projects(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<ProjectList>, ManagementError> {
    let projects = state.management.projects(&caller.actor).await?;
    Ok(Json(ProjectList {
        principal: caller.actor,
        projects,
    }))
}

/// Handles `GET /v1/projects/{projectId}/limits`. Any role on the project may read it (a
/// refusal is audited as `usage.read`, like the usage report).
#[utoipa::path(
    get,
    path = "/v1/projects/{projectId}/limits",
    tag = "management",
    params(("projectId" = Uuid, Path, description = "The project.")),
    responses(
        (status = 200, description = "The project's budgets on each served model now.",
         body = LimitsView),
        crate::openapi::ManagementReadErrors,
    ),
    security(("management_token" = []))
)]
pub async fn limits(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
) -> Result<Json<LimitsView>, ManagementError> {
    state
        .management
        .authorize_usage_read(&caller.actor, path.project_id, &caller.ctx)
        .await?;
    let accounting = &state.accounting;
    let mut limits = Vec::new();
    for (id, model) in state.models.iter() {
        let plan = model.entry.plan;
        let budget = accounting.budget(path.project_id, id, plan);
        match accounting.peek(&budget).await {
            Ok((requests, tokens)) => limits.push(model_limits(id, plan, requests, tokens)),
            Err(error) => {
                tracing::warn!(%error, "rate limiter unavailable for the limits view");
                return Ok(Json(LimitsView {
                    project_id: path.project_id,
                    available: false,
                    limits: Vec::new(),
                }));
            }
        }
    }
    Ok(Json(LimitsView {
        project_id: path.project_id,
        available: true,
        limits,
    }))
}

fn model_limits(
    model: &str,
    plan: ServicePlan,
    requests: BucketStatus,
    tokens: BucketStatus,
) -> ModelLimits {
    let millis = |status: BucketStatus| u64::try_from(status.reset.as_millis()).unwrap_or(u64::MAX);
    ModelLimits {
        model: model.to_owned(),
        plan,
        requests_per_minute: requests.limit,
        tokens_per_minute: tokens.limit,
        requests_remaining: requests.remaining,
        tokens_remaining: tokens.remaining,
        requests_reset_ms: millis(requests),
        tokens_reset_ms: millis(tokens),
    }
}
