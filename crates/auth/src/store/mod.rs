//! Where projects, keys and the audit log live: the [`Store`] trait and its two
//! implementations, [`SqliteStore`] (embedded default: one file, WAL) and [`PostgresStore`]
//! (several gateway replicas). Both run the same SQL (`sql.rs`) and row mapping (`rows.rs`).
//!
//! Every write that changes a key also appends its audit event in the same transaction, so
//! the log is complete by construction.

mod postgres;
mod rows;
mod sql;
mod sqlite;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::audit::{AuditEvent, AuditFilter, AuditRecord};
use crate::error::StoreError;
use crate::model::{
    KeyPatch, KeyRecord, ManagementTokenRecord, Membership, MembershipRemoval, Project,
    ProjectAccess, Role,
};

/// The audit events of a change to a principal's management tokens, given the projects the
/// principal has a role in (read in the change's transaction): one per project.
pub type ProjectEvents<'a> = &'a (dyn Fn(&[Uuid]) -> Vec<AuditRecord> + Send + Sync);

/// The audit event of a removed role, given what the removal did (known only in its
/// transaction).
pub type RemovalEvent<'a> = &'a (dyn Fn(&MembershipRemoval) -> AuditRecord + Send + Sync);

/// Persistent state of this crate. Implementations must be safe to share between tasks and
/// between processes using the same database.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Inserts a project and its creation event.
    async fn insert_project(
        &self,
        project: &Project,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;

    /// The project with this id.
    async fn project(&self, id: Uuid) -> Result<Option<Project>, StoreError>;

    /// Creates or updates the principal (its e-mail) and sets its role on the project,
    /// appending `event`.
    async fn upsert_membership(
        &self,
        membership: &Membership,
        now: DateTime<Utc>,
        event: &AuditRecord,
    ) -> Result<(), StoreError>;

    /// The principal's role on the project, if any.
    async fn role(&self, project_id: Uuid, subject: &str) -> Result<Option<Role>, StoreError>;

    /// The projects the principal has a role on, with that role, by name.
    async fn projects_of(&self, subject: &str) -> Result<Vec<ProjectAccess>, StoreError>;

    /// Removes the principal's role on the project; when that was its last role, also deletes
    /// the principal and its management tokens. Appends the event `event` builds from what was
    /// done; `None` (and no event) if the principal had no role on the project.
    async fn remove_membership(
        &self,
        project_id: Uuid,
        subject: &str,
        event: RemovalEvent<'_>,
    ) -> Result<Option<MembershipRemoval>, StoreError>;

    /// The principal's e-mail, if the principal exists.
    async fn principal_email(&self, subject: &str) -> Result<Option<String>, StoreError>;

    /// Stores a management token (its digest only) and the events `events` builds.
    async fn insert_management_token(
        &self,
        token: &ManagementTokenRecord,
        events: ProjectEvents<'_>,
    ) -> Result<(), StoreError>;

    /// The management token with this public id.
    async fn management_token(
        &self,
        public_id: &str,
    ) -> Result<Option<ManagementTokenRecord>, StoreError>;

    /// The management token with this id.
    async fn management_token_by_id(
        &self,
        id: Uuid,
    ) -> Result<Option<ManagementTokenRecord>, StoreError>;

    /// The management tokens of one principal (of all without a subject), oldest first.
    async fn management_tokens(
        &self,
        subject: Option<&str>,
    ) -> Result<Vec<ManagementTokenRecord>, StoreError>;

    /// Deletes (revokes) the management token of `subject` with this id and appends the events
    /// `events` builds; `false` (and no event) if there is no such token.
    async fn delete_management_token(
        &self,
        id: Uuid,
        subject: &str,
        events: ProjectEvents<'_>,
    ) -> Result<bool, StoreError>;

    /// Stores a model API key (its digest only) and its creation event.
    async fn insert_key(&self, key: &KeyRecord, event: &AuditRecord) -> Result<(), StoreError>;

    /// The keys of a project in a region, oldest first.
    async fn keys(&self, project_id: Uuid, region: &str) -> Result<Vec<KeyRecord>, StoreError>;

    /// One key of a project in a region.
    async fn key(
        &self,
        project_id: Uuid,
        region: &str,
        id: Uuid,
    ) -> Result<Option<KeyRecord>, StoreError>;

    /// The key with this public id, whatever its project (for verification).
    async fn key_by_public_id(&self, public_id: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// Applies `patch` to the key and appends `event`; `None` (and no event) if there is no
    /// such key in that project and region, or if the patch changes the labels and the key's
    /// labels are no longer the patch's `expected` ones.
    async fn update_key(
        &self,
        project_id: Uuid,
        region: &str,
        id: Uuid,
        patch: &KeyPatch,
        event: &AuditRecord,
    ) -> Result<Option<KeyRecord>, StoreError>;

    /// Deletes the key and appends `event`; `false` (and no event) if there is no such key.
    async fn delete_key(
        &self,
        project_id: Uuid,
        region: &str,
        id: Uuid,
        event: &AuditRecord,
    ) -> Result<bool, StoreError>;

    /// Appends one `token.expire` event for every key that expired at or before `now` and has
    /// none yet; returns how many. Safe to run from several replicas at once.
    async fn record_expirations(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Appends one event.
    async fn append_audit(&self, event: &AuditRecord) -> Result<(), StoreError>;

    /// Events matching `filter`, in log order.
    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError>;

    /// Pseudonymizes the personal data of every event whose time is before `before` and that
    /// is not pseudonymized yet (see [`crate::retention`]), drawing the database's pseudonym
    /// key on first use; returns how many events it changed. Idempotent, and safe to run from
    /// several replicas at once: each event is pseudonymized exactly once.
    async fn pseudonymize_audit_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Whether the database takes a write now: opens a write transaction, runs a write that
    /// changes no row and rolls it back. Fails on a read-only or unreachable database and on
    /// one whose write lock stays taken past the busy timeout.
    async fn check_writable(&self) -> Result<(), StoreError>;
}

/// Opens the store a URL names: `sqlite://PATH?mode=rwc` (or `sqlite::memory:`) or
/// `postgres://…` / `postgresql://…`, and applies pending migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
