//! The records this crate keeps: projects, principals and their roles, API keys and
//! management tokens, and who is asking ([`Actor`], [`RequestContext`]).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::key::KeyDigest;
use crate::labels::Labels;

/// A project: the unit that owns keys, principals' roles and an audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Project id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A principal's role on a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Full control.
    Owner,
    /// May create, change and delete tokens.
    Member,
    /// May only read.
    Viewer,
}

impl Role {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

    /// Whether the role may create, change or delete tokens.
    pub fn can_write(self) -> bool {
        matches!(self, Self::Owner | Self::Member)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `owner`, `member`, `viewer`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; expected owner, member or viewer")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Self::Owner),
            "member" => Ok(Self::Member),
            "viewer" => Ok(Self::Viewer),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// A principal's role on one project, as the admin CLI prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    /// The project.
    pub project_id: Uuid,
    /// The principal's subject id.
    pub subject: String,
    /// The principal's e-mail.
    pub email: String,
    /// Its role on the project.
    pub role: Role,
}

/// A project a principal may see, with its role there: what `GET /v1/projects` lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectAccess {
    /// Project id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// The principal's role on it.
    #[schema(value_type = String, example = "owner")]
    pub role: Role,
    /// When the project was created.
    pub created_at: DateTime<Utc>,
}

/// An authenticated principal of the management API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// Subject id (stable identifier from the identity provider or the operator).
    pub subject: String,
    /// E-mail address.
    pub email: String,
}

impl Actor {
    /// The operator acting through `gateway admin …` commands.
    pub fn operator() -> Self {
        Self {
            subject: "gateway-admin".to_owned(),
            email: String::new(),
        }
    }
}

/// Where a management request came from, for the audit log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The request id (`x-request-id`).
    pub request_id: Option<String>,
    /// The client's IP address.
    pub source_ip: Option<IpAddr>,
}

/// A stored model API key (never its plaintext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// Token id.
    pub id: Uuid,
    /// Owning project.
    pub project_id: Uuid,
    /// Region it was created in.
    pub region: String,
    /// Public id part of the key, used to find the row.
    pub public_id: String,
    /// SHA-256 of the whole key.
    pub digest: KeyDigest,
    /// Display name.
    pub name: String,
    /// Optional description.
    pub description: Option<String>,
    /// Labels.
    pub labels: Labels,
    /// Models the key may use; `None` means all.
    pub allowed_models: Option<Vec<String>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Expiry; `None` means never.
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeyRecord {
    /// Whether the key is expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// Changes to a key's descriptive fields (`None` leaves a field as it is).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPatch {
    /// New name.
    pub name: Option<String>,
    /// New description; `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// New labels, computed from the key's current ones.
    pub labels: Option<LabelChange>,
    /// Time of the change.
    pub updated_at: DateTime<Utc>,
}

/// New labels and the labels they were computed from. A store applies the patch only while
/// the key still has `expected`, so two concurrent label patches never lose one another's
/// changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelChange {
    /// The labels the key had when `new` was computed.
    pub expected: Labels,
    /// The labels it gets.
    pub new: Labels,
}

/// A stored management token (never its plaintext), with its principal's e-mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagementTokenRecord {
    /// Token id.
    pub id: Uuid,
    /// Public id part, used to find the row.
    pub public_id: String,
    /// SHA-256 of the whole token.
    pub digest: KeyDigest,
    /// The principal it authenticates.
    pub subject: String,
    /// The principal's e-mail (read from the principal's row).
    pub email: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry; `None` means never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What [`crate::Store::remove_membership`] removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipRemoval {
    /// The role the principal had on the project.
    pub role: Role,
    /// Whether that was its last role, so that the principal (its e-mail) was deleted too.
    pub principal_deleted: bool,
    /// The management tokens deleted with the principal (empty unless it was deleted).
    pub revoked_management_tokens: Vec<Uuid>,
}
