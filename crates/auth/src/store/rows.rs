//! Row types shared by both stores (`sqlx::FromRow` is generic over the database) and their
//! conversion to and from the crate's records.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::{AuditAction, AuditEvent, AuditOutcome, AuditRecord};
use crate::error::StoreError;
use crate::key::KeyDigest;
use crate::labels::Labels;
use crate::model::{Actor, KeyRecord, ManagementTokenRecord, Project, ProjectAccess, Role};

#[derive(sqlx::FromRow)]
pub(crate) struct ProjectRow {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
}

impl From<ProjectRow> for Project {
    fn from(row: ProjectRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
        }
    }
}

/// A role as `memberships.role` stores it, or [`StoreError::Corrupt`] for an unknown one.
pub(crate) fn stored_role(text: &str) -> Result<Role, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt("memberships.role".to_owned()))
}

/// A project with the role a principal has on it.
#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    role: String,
}

impl TryFrom<MembershipRow> for ProjectAccess {
    type Error = StoreError;

    fn try_from(row: MembershipRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            name: row.name,
            role: stored_role(&row.role)?,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: Uuid,
    project_id: Uuid,
    region: String,
    public_id: String,
    digest: Vec<u8>,
    name: String,
    description: Option<String>,
    allowed_models: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    labels: String,
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self, StoreError> {
        let allowed_models = row
            .allowed_models
            .map(|text| serde_json::from_str::<Vec<String>>(&text))
            .transpose()
            .map_err(|_| StoreError::Corrupt("api_keys.allowed_models".to_owned()))?;
        let labels = serde_json::from_str::<Labels>(&row.labels)
            .map_err(|_| StoreError::Corrupt("api_keys.labels".to_owned()))?;
        Ok(Self {
            id: row.id,
            project_id: row.project_id,
            region: row.region,
            public_id: row.public_id,
            digest: digest(&row.digest, "api_keys.digest")?,
            name: row.name,
            description: row.description,
            labels,
            allowed_models,
            created_at: row.created_at,
            updated_at: row.updated_at,
            expires_at: row.expires_at,
        })
    }
}

/// `allowed_models` as stored: a JSON array, or NULL for "all models".
pub(crate) fn models_column(key: &KeyRecord) -> Option<String> {
    key.allowed_models
        .as_ref()
        .map(|models| serde_json::Value::from(models.clone()).to_string())
}

/// `labels` as stored: a JSON object, keys sorted (so equal labels are equal text).
pub(crate) fn labels_column(labels: &Labels) -> String {
    serde_json::Value::from_iter(labels.clone()).to_string()
}

#[derive(sqlx::FromRow)]
pub(crate) struct ManagementTokenRow {
    id: Uuid,
    public_id: String,
    digest: Vec<u8>,
    subject: String,
    email: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<ManagementTokenRow> for ManagementTokenRecord {
    type Error = StoreError;

    fn try_from(row: ManagementTokenRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            public_id: row.public_id,
            digest: digest(&row.digest, "management_tokens.digest")?,
            subject: row.subject,
            email: row.email,
            created_at: row.created_at,
            expires_at: row.expires_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ExpiredRow {
    pub id: Uuid,
    pub project_id: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    seq: i64,
    id: Uuid,
    time: DateTime<Utc>,
    project_id: Uuid,
    actor_subject: Option<String>,
    actor_email: Option<String>,
    action: String,
    outcome: String,
    reason: Option<String>,
    target_token_id: Option<Uuid>,
    changes: String,
    request_id: Option<String>,
    source_ip: Option<String>,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        let corrupt = |column: &str| StoreError::Corrupt(format!("audit_events.{column}"));
        let outcome = match row.outcome.as_str() {
            "success" => AuditOutcome::Success,
            "failure" => AuditOutcome::Failure,
            _ => return Err(corrupt("outcome")),
        };
        let actor = row.actor_subject.map(|subject| Actor {
            subject,
            email: row.actor_email.unwrap_or_default(),
        });
        let source_ip = row
            .source_ip
            .map(|ip| ip.parse::<IpAddr>())
            .transpose()
            .map_err(|_| corrupt("source_ip"))?;
        Ok(Self {
            sequence: row.seq,
            record: AuditRecord {
                id: row.id,
                time: row.time,
                project_id: row.project_id,
                actor,
                action: AuditAction::parse(&row.action).ok_or_else(|| corrupt("action"))?,
                outcome,
                reason: row.reason,
                target_token_id: row.target_token_id,
                changes: serde_json::from_str(&row.changes).map_err(|_| corrupt("changes"))?,
                request_id: row.request_id,
                source_ip,
            },
        })
    }
}

/// The text columns of an audit record, as bound by the insert statement.
pub(crate) struct AuditColumns {
    pub actor_subject: Option<String>,
    pub actor_email: Option<String>,
    pub changes: String,
    pub source_ip: Option<String>,
}

impl AuditColumns {
    pub(crate) fn of(event: &AuditRecord) -> Self {
        Self {
            actor_subject: event.actor.as_ref().map(|a| a.subject.clone()),
            actor_email: event.actor.as_ref().map(|a| a.email.clone()),
            changes: serde_json::Value::Object(event.changes.clone()).to_string(),
            source_ip: event.source_ip.map(|ip| ip.to_string()),
        }
    }
}

fn digest(bytes: &[u8], column: &str) -> Result<KeyDigest, StoreError> {
    KeyDigest::from_slice(bytes).ok_or_else(|| StoreError::Corrupt(column.to_owned()))
}
