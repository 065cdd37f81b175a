//! The audit log of a project: `GET /v1/projects/{projectId}/audit-log?from=&to=&cursor=&limit=`
//! answers one JSON page (`{"events": [...], "nextCursor"}`), oldest first;
//! `GET …/audit-log/export` (or the page route with `Accept: application/x-ndjson`) answers
//! every matching event as NDJSON, one JSON object per line, streamed a page at a time. Errors
//! are [`ManagementError`]s, as on every management route.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_auth::{write_ndjson, AuditExport, AuditQuery};
use serde::Deserialize;

use crate::error::{ApiError, ManagementError};
use crate::extract::{Caller, ManagedPath};
use crate::routes::{accepts, time};
use crate::state::AppState;

/// The media type of the export.
pub const NDJSON: &str = "application/x-ndjson";

/// The query string as sent; [`audit_query`] checks it.
#[derive(Debug, Default, Deserialize)]
pub struct RawAuditQuery {
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// Handles `GET …/audit-log`: one JSON page, or the NDJSON export when the client accepts
/// `application/x-ndjson`.
#[utoipa::path(
    get,
    path = "/v1/projects/{projectId}/audit-log",
    tag = "management",
    params(
        ("projectId" = Uuid, Path, description = "The project."),
        ("from" = Option<String>, Query,
         description = "Only events at or after this time: RFC 3339 or a UTC date."),
        ("to" = Option<String>, Query,
         description = "Only events before this time: RFC 3339 or a UTC date."),
        ("cursor" = Option<String>, Query,
         description = "The `nextCursor` of the previous page."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000,
         description = "Events per page, 1 to 1000 (default 100)."),
    ),
    responses(
        (status = 200, description = "One page of events, oldest first; with \
                                      `Accept: application/x-ndjson`, every matching event \
                                      as NDJSON (one JSON object per line).",
         content(
             (gateway_auth::AuditPage = "application/json"),
             (gateway_auth::AuditEvent = "application/x-ndjson"),
         )),
        crate::openapi::ManagementReadErrors,
    ),
    security(("management_token" = []))
)]
pub async fn audit_log(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
    headers: HeaderMap,
    query: Result<Query<RawAuditQuery>, QueryRejection>,
) -> Result<Response, ManagementError> {
    let query = checked_query(query)?;
    if accepts(&headers, NDJSON) {
        return export(&state, &caller, &path, &query).await;
    }
    let page = state
        .management
        .audit_page(&caller.actor, path.project_id, &query, &caller.ctx)
        .await?;
    Ok(Json(page).into_response())
}

/// Handles `GET …/audit-log/export`: every matching event as NDJSON.
#[utoipa::path(
    get,
    path = "/v1/projects/{projectId}/audit-log/export",
    tag = "management",
    params(
        ("projectId" = Uuid, Path, description = "The project."),
        ("from" = Option<String>, Query,
         description = "Only events at or after this time: RFC 3339 or a UTC date."),
        ("to" = Option<String>, Query,
         description = "Only events before this time: RFC 3339 or a UTC date."),
        ("cursor" = Option<String>, Query,
         description = "Continue after the page that returned this `nextCursor`."),
    ),
    responses(
        (status = 200, description = "Every matching event as NDJSON, one JSON object per \
                                      line, oldest first.",
         content_type = "application/x-ndjson", body = gateway_auth::AuditEvent),
        crate::openapi::ManagementReadErrors,
    ),
    security(("management_token" = []))
)]
pub async fn export_audit_log(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    path: ManagedPath,
    query: Result<Query<RawAuditQuery>, QueryRejection>,
) -> Result<Response, ManagementError> {
    let query = checked_query(query)?;
    export(&state, &caller, &path, &query).await
}

async fn export(
    state: &AppState,
    caller: &Caller,
    path: &ManagedPath,
    query: &AuditQuery,
) -> Result<Response, ManagementError> {
    let export = state
        .management
        .export_audit(&caller.actor, path.project_id, query, &caller.ctx)
        .await?;
    let body = Body::from_stream(futures::stream::unfold(export, ndjson_page));
    Ok(([(header::CONTENT_TYPE, NDJSON)], body).into_response())
}

/// The next page of `export` as NDJSON. An error after the answer has started can only end
/// the body early, which the client sees as a truncated transfer.
async fn ndjson_page(
    mut export: AuditExport,
) -> Option<(Result<Vec<u8>, std::io::Error>, AuditExport)> {
    let page = match export.next_page().await {
        Ok(page) => page?,
        Err(error) => {
            tracing::error!(%error, "the audit export stopped midway");
            return Some((Err(std::io::Error::other("audit export failed")), export));
        }
    };
    let mut lines = Vec::new();
    let written = write_ndjson(&page, &mut lines).map(|()| lines);
    Some((written, export))
}

fn checked_query(
    query: Result<Query<RawAuditQuery>, QueryRejection>,
) -> Result<AuditQuery, ApiError> {
    let Query(raw) = query.map_err(|rejection| ApiError::InvalidParam {
        message: rejection.body_text(),
        param: "query".to_owned(),
    })?;
    audit_query(raw)
}

/// Checks the query string: `from`/`to` are times (see [`time`]), `limit` a number; errors name the
/// parameter. The cursor and the limit's range are checked by `gateway-auth`.
pub fn audit_query(raw: RawAuditQuery) -> Result<AuditQuery, ApiError> {
    Ok(AuditQuery {
        from: raw.from.as_deref().map(|t| time("from", t)).transpose()?,
        to: raw.to.as_deref().map(|t| time("to", t)).transpose()?,
        cursor: raw.cursor,
        limit: raw
            .limit
            .as_deref()
            .map(|text| {
                text.parse::<u32>().map_err(|_| ApiError::InvalidParam {
                    message: "limit must be a whole number between 1 and 1000".to_owned(),
                    param: "limit".to_owned(),
                })
            })
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use axum::http::HeaderValue;

    fn raw(from: Option<&str>, to: Option<&str>, limit: Option<&str>) -> RawAuditQuery {
        RawAuditQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            cursor: Some("7".to_owned()),
            limit: limit.map(str::to_owned),
        }
    }

    fn param(result: Result<AuditQuery, ApiError>) -> String {
        match result {
            Err(ApiError::InvalidParam { param, .. }) => param,
            other => panic!("expected an invalid parameter, got {other:?}"),
        }
    }

    #[test]
    fn a_full_query_parses() {
        let query = audit_query(raw(
            Some("2026-05-20T00:00:00Z"),
            Some("2026-05-21T02:00:00+02:00"),
            Some("50"),
        ))
        .unwrap();
        assert_eq!(
            query.from.unwrap().to_rfc3339(),
            "2026-05-20T00:00:00+00:00"
        );
        assert_eq!(query.to.unwrap().to_rfc3339(), "2026-05-21T00:00:00+00:00");
        assert_eq!(query.limit, Some(50));
        assert_eq!(query.cursor.as_deref(), Some("7"));
        assert_eq!(
            audit_query(RawAuditQuery::default()).unwrap(),
            AuditQuery::default()
        );
    }

    #[test]
    fn errors_name_the_parameter() {
        assert_eq!(
            param(audit_query(raw(Some("yesterday"), None, None))),
            "from"
        );
        assert_eq!(
            param(audit_query(raw(None, Some("2026-13-01"), None))),
            "to"
        );
        assert_eq!(param(audit_query(raw(None, None, Some("-1")))), "limit");
    }

    #[test]
    fn ndjson_is_chosen_by_the_accept_header() {
        let mut headers = HeaderMap::new();
        assert!(!accepts(&headers, NDJSON));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!accepts(&headers, NDJSON));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/x-ndjson"),
        );
        assert!(accepts(&headers, NDJSON));
    }
}
