//! A project's usage report: `GET /v1/projects/{projectId}/usage?from=&to=&groupBy=` answers
//! tokens and cost per model, day or key and in total, with the billing lines of each plan,
//! month and price, as JSON, or the groups as CSV when the client accepts `text/csv`. Any
//! role on the project may read it; anyone else gets 404, as for its tokens.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_metering::report::{usage_report, GroupBy};
use gateway_metering::UsageQuery;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{ApiError, ManagementError};
use crate::extract::{Caller, ManagedPath};
use crate::routes::{accepts, time};
use crate::state::AppState;

/// The media type of the CSV report.
pub const CSV: &str = "text/csv";

/// The query string as sent; [`usage_query`] checks it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct RawUsageQuery {
    /// The first instant covered (inclusive): an RFC 3339 time or a UTC date (its midnight).
    #[param(example = "2026-11-01")]
    from: Option<String>,
    /// The end of the time covered (exclusive): an RFC 3339 time or a UTC date.
    #[param(example = "2026-12-01T00:00:00Z")]
    to: Option<String>,
    /// How the groups are formed: `model` (the default), `day` (UTC) or `key` (the API key id).
    #[param(example = "model")]
    group_by: Option<String>,
}

/// Handles `GET /v1/projects/{projectId}/usage`.
#[utoipa::path(
    get,
    path = "/v1/projects/{projectId}/usage",
    tag = "management",
    params(
        ("projectId" = Uuid, Path, description = "The project."),
        RawUsageQuery,
    ),
    responses(
        (status = 200, description = "The usage report: `projectId`, `from`, `to`, `groupBy`, \
                                      `granularity`, `groups`, `total`, `billing` and \
                                      `billedTotal` as JSON, or the groups as CSV with \
                                      `Accept: text/csv`.",
         content(
             (Object = "application/json"),
             (String = "text/csv"),
         )),
        crate::openapi::ManagementReadErrors,
    ),
    security(("management_token" = []))
)]
pub async fn usage(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
    headers: HeaderMap,
    query: Result<Query<RawUsageQuery>, QueryRejection>,
) -> Result<Response, ManagementError> {
    state
        .management
        .authorize_usage_read(&caller.actor, path.project_id, &caller.ctx)
        .await?;
    let Query(raw) = query.map_err(|rejection| ApiError::InvalidParam {
        message: rejection.body_text(),
        param: "query".to_owned(),
    })?;
    let (query, group_by) = usage_query(path.project_id, raw)?;
    let accounting = &state.accounting;
    if let Err(error) = accounting.journal.flush().await {
        tracing::warn!(%error, "usage report without the records still journaled");
    }
    let report = usage_report(
        accounting.usage.as_ref(),
        &query,
        group_by,
        accounting.granularity,
    )
    .await
    .map_err(|error| {
        tracing::error!(%error, "usage report failed");
        ApiError::Internal("the usage store")
    })?;
    if accepts(&headers, CSV) {
        return Ok(([(header::CONTENT_TYPE, CSV)], report.to_csv()).into_response());
    }
    Ok(Json(report).into_response())
}

/// Checks the query string: `from`/`to` are times or dates, `groupBy` is `model` (the
/// default), `day` or `key`; errors name the parameter.
pub fn usage_query(
    project_id: Uuid,
    raw: RawUsageQuery,
) -> Result<(UsageQuery, GroupBy), ApiError> {
    let group_by = match raw.group_by.as_deref() {
        None => GroupBy::Model,
        Some(name) => name
            .parse()
            .map_err(
                |error: gateway_metering::report::UnknownGroupBy| ApiError::InvalidParam {
                    message: error.to_string(),
                    param: "groupBy".to_owned(),
                },
            )?,
    };
    let query = UsageQuery {
        project_id,
        from: raw.from.as_deref().map(|t| time("from", t)).transpose()?,
        to: raw.to.as_deref().map(|t| time("to", t)).transpose()?,
    };
    Ok((query, group_by))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn raw(from: Option<&str>, group_by: Option<&str>) -> RawUsageQuery {
        RawUsageQuery {
            from: from.map(str::to_owned),
            to: None,
            group_by: group_by.map(str::to_owned),
        }
    }

    #[test]
    fn dates_times_and_groupings_are_checked() {
        let project = Uuid::new_v4();
        let (query, group_by) = usage_query(project, raw(Some("2026-11-01"), None)).unwrap();
        assert_eq!(group_by, GroupBy::Model);
        assert_eq!(
            query.from.unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        let (_, group_by) = usage_query(project, raw(None, Some("day"))).unwrap();
        assert_eq!(group_by, GroupBy::Day);
        let Err(ApiError::InvalidParam { param, .. }) =
            usage_query(project, raw(None, Some("week")))
        else {
            unreachable!("week is no grouping")
        };
        assert_eq!(param, "groupBy");
        let Err(ApiError::InvalidParam { param, .. }) = usage_query(project, raw(Some("x"), None))
        else {
            unreachable!("x is no time")
        };
        assert_eq!(param, "from");
    }
}
