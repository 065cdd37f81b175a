//! The append-only audit log: what an event holds, its JSON (and NDJSON export), and paging
//! with `from` / `to` / `cursor`. The one change an event ever undergoes is the removal of its
//! personal data after the retention period ([`crate::retention`]).

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::AuthError;
use crate::model::{Actor, RequestContext};

/// Default number of events in one page.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size a caller may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// What was done (or attempted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum AuditAction {
    /// A model API key was created.
    #[serde(rename = "token.create")]
    TokenCreate,
    /// A key's name or description changed.
    #[serde(rename = "token.update")]
    TokenUpdate,
    /// A key was deleted (revoked).
    #[serde(rename = "token.delete")]
    TokenDelete,
    /// A key reached its expiry.
    #[serde(rename = "token.expire")]
    TokenExpire,
    /// Keys were read (recorded only when refused).
    #[serde(rename = "token.read")]
    TokenRead,
    /// The audit log was read (recorded only when refused).
    #[serde(rename = "audit.read")]
    AuditRead,
    /// The usage report was read (recorded only when refused).
    #[serde(rename = "usage.read")]
    UsageRead,
    /// A management request carried no valid credential.
    #[serde(rename = "management.authenticate")]
    Authenticate,
    /// The project was created.
    #[serde(rename = "project.create")]
    ProjectCreate,
    /// A principal was given a role on the project.
    #[serde(rename = "principal.add")]
    PrincipalAdd,
    /// A principal's role on the project was removed.
    #[serde(rename = "principal.remove")]
    PrincipalRemove,
    /// A management token was issued to a principal with a role on the project.
    #[serde(rename = "management_token.create")]
    ManagementTokenCreate,
    /// A management token of a principal with a role on the project was revoked.
    #[serde(rename = "management_token.revoke")]
    ManagementTokenRevoke,
}

impl AuditAction {
    /// The stored and wire name, e.g. `token.create`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenCreate => "token.create",
            Self::TokenUpdate => "token.update",
            Self::TokenDelete => "token.delete",
            Self::TokenExpire => "token.expire",
            Self::TokenRead => "token.read",
            Self::AuditRead => "audit.read",
            Self::UsageRead => "usage.read",
            Self::Authenticate => "management.authenticate",
            Self::ProjectCreate => "project.create",
            Self::PrincipalAdd => "principal.add",
            Self::PrincipalRemove => "principal.remove",
            Self::ManagementTokenCreate => "management_token.create",
            Self::ManagementTokenRevoke => "management_token.revoke",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::TokenCreate,
            Self::TokenUpdate,
            Self::TokenDelete,
            Self::TokenExpire,
            Self::TokenRead,
            Self::AuditRead,
            Self::UsageRead,
            Self::Authenticate,
            Self::ProjectCreate,
            Self::PrincipalAdd,
            Self::PrincipalRemove,
            Self::ManagementTokenCreate,
            Self::ManagementTokenRevoke,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// Whether the action took place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// It took place.
    Success,
    /// It was refused; `reason` says why.
    Failure,
}

impl AuditOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// One audit event as written (the store assigns its [`AuditEvent::sequence`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Event id.
    pub id: Uuid,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// The project it concerns.
    pub project_id: Uuid,
    /// Who acted; `None` for the system (expiry) or an unauthenticated caller.
    pub actor: Option<Actor>,
    /// What was done.
    pub action: AuditAction,
    /// Whether it took place.
    pub outcome: AuditOutcome,
    /// Why it was refused (`not_found`, `forbidden`, `invalid:<field>`, `unauthenticated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The token acted on: a model API key, or the management token of a `management_token.*`
    /// event.
    pub target_token_id: Option<Uuid>,
    /// Changed fields and their new values (never a secret).
    pub changes: Map<String, Value>,
    /// The request id.
    pub request_id: Option<String>,
    /// The client's IP address.
    #[schema(value_type = Option<String>, example = "192.0.2.7")]
    pub source_ip: Option<IpAddr>,
}

impl AuditRecord {
    /// A successful action by `actor` (or the system when `None`).
    pub fn success(
        time: DateTime<Utc>,
        project_id: Uuid,
        actor: Option<&Actor>,
        action: AuditAction,
        ctx: &RequestContext,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            time,
            project_id,
            actor: actor.cloned(),
            action,
            outcome: AuditOutcome::Success,
            reason: None,
            target_token_id: None,
            changes: Map::new(),
            request_id: ctx.request_id.clone(),
            source_ip: ctx.source_ip,
        }
    }

    /// A refused action; the reason is derived from `error`.
    pub fn failure(
        time: DateTime<Utc>,
        project_id: Uuid,
        actor: Option<&Actor>,
        action: AuditAction,
        ctx: &RequestContext,
        error: &AuthError,
    ) -> Self {
        let reason = match error {
            AuthError::InvalidKey | AuthError::Unauthenticated => "unauthenticated".to_owned(),
            AuthError::NotFound => "not_found".to_owned(),
            AuthError::Forbidden => "forbidden".to_owned(),
            AuthError::Validation { field, .. } => format!("invalid:{field}"),
            AuthError::Conflict(_) => "conflict".to_owned(),
            AuthError::Store(_) => "internal".to_owned(),
        };
        Self {
            outcome: AuditOutcome::Failure,
            reason: Some(reason),
            ..Self::success(time, project_id, actor, action, ctx)
        }
    }

    /// Sets the target token.
    pub fn target(mut self, token_id: Uuid) -> Self {
        self.target_token_id = Some(token_id);
        self
    }

    /// Records a changed field and its new value.
    pub fn change(mut self, field: &str, value: impl Serialize) -> Self {
        self.changes.insert(
            field.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }
}

/// A stored audit event: its position in the log plus what was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Position in the log; increases with every event.
    pub sequence: i64,
    /// The event.
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// Query of `GET /v1/projects/{projectId}/audit-log?from=&to=&cursor=&limit=`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditQuery {
    /// Only events at or after this time.
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    /// Only events before this time.
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    /// Continue after the page that returned this `nextCursor`.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size (1 ..= 1000, default 100).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One page of the audit log, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// The events.
    pub events: Vec<AuditEvent>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A checked audit query as the store runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditFilter {
    /// The project.
    pub project_id: Uuid,
    /// Only events at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only events with a larger sequence number.
    pub after_sequence: i64,
    /// Most events to return.
    pub limit: i64,
}

impl AuditQuery {
    /// Checks the query; errors name the field (`cursor`, `limit`, `to`).
    pub(crate) fn to_filter(&self, project_id: Uuid) -> Result<AuditFilter, AuthError> {
        let after_sequence = match self.cursor.as_deref() {
            None | Some("") => 0,
            Some(cursor) => cursor
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| AuthError::validation("cursor", "not a cursor of this log"))?,
        };
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if limit == 0 || limit > MAX_PAGE_SIZE {
            return Err(AuthError::validation(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if to < from {
                return Err(AuthError::validation("to", "must not be before from"));
            }
        }
        Ok(AuditFilter {
            project_id,
            from: self.from,
            to: self.to,
            after_sequence,
            limit: i64::from(limit),
        })
    }
}

/// Writes `events` as NDJSON: one JSON object per line.
pub fn write_ndjson<W: std::io::Write>(events: &[AuditEvent], mut out: W) -> std::io::Result<()> {
    for event in events {
        serde_json::to_writer(&mut out, event)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The `token.expire` event the system writes when a key's expiry has passed.
pub(crate) fn expiry_event(
    now: DateTime<Utc>,
    project_id: Uuid,
    token_id: Uuid,
    valid_until: Option<DateTime<Utc>>,
) -> AuditRecord {
    let ctx = RequestContext::default();
    AuditRecord::success(now, project_id, None, AuditAction::TokenExpire, &ctx)
        .target(token_id)
        .change("state", crate::wire::TokenState::Inactive)
        .change("validUntil", valid_until)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn actions_parse_their_wire_names() {
        for name in [
            "principal.remove",
            "management_token.create",
            "management_token.revoke",
        ] {
            let action = AuditAction::parse(name).unwrap();
            assert_eq!(action.as_str(), name);
            assert_eq!(serde_json::to_value(action).unwrap(), name);
        }
    }
}
