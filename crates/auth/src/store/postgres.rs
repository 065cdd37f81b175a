//! The store for several gateway replicas: PostgreSQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres};
use uuid::Uuid;

use super::rows::{
    labels_column, models_column, stored_role, AuditColumns, AuditRow, ExpiredRow, KeyRow,
    ManagementTokenRow, MembershipRow, ProjectRow,
};
use super::sql::{self, impl_store};
use super::{ProjectEvents, RemovalEvent, Store};
use crate::audit::{AuditEvent, AuditFilter, AuditRecord};
use crate::error::StoreError;
use crate::model::{
    KeyPatch, KeyRecord, ManagementTokenRecord, Membership, MembershipRemoval, Project,
    ProjectAccess, Role,
};
use crate::retention::{pseudonymize, PersonalDataRow, PseudonymKey};

/// Ignores the rows other migrators (gateway-metering's) leave in `_sqlx_migrations`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate::Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("migrations/postgres")
};

/// Transaction-scoped advisory lock taken before every audit append, so that events become
/// visible in sequence order (an identity value is drawn at insert, not at commit; without
/// the lock a reader paging by cursor could skip an event that commits late).
const LOCK_AUDIT: &str = "SELECT pg_advisory_xact_lock(7305298426)";

/// Transaction-scoped advisory lock taken by each pseudonymization batch, so that replicas
/// running the retention job at once take turns instead of waiting on each other's rows.
const LOCK_RETENTION: &str = "SELECT pg_advisory_xact_lock(7305298427)";

/// [`Store`] on a PostgreSQL database shared by every replica.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: Pool<Postgres>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://USER:PASSWORD@HOST:PORT/DB`; `?options=-c search_path=S`
    /// selects a schema) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for callers that add their own tables to the same database.
    pub fn pool(&self) -> &Pool<Postgres> {
        &self.pool
    }
}

impl_store!(
    PostgresStore,
    Postgres,
    begin_write = "BEGIN",
    lock_audit = Some(LOCK_AUDIT),
    lock_retention = Some(LOCK_RETENTION)
);
