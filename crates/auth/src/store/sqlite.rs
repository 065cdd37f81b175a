//! The embedded default store: one SQLite file in WAL mode with a busy timeout.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};
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

/// How long a connection waits for another writer before failing with "database is locked".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Ignores the rows other migrators (gateway-metering's) leave in `_sqlx_migrations`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate::Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("migrations/sqlite")
};

/// [`Store`] on one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: Pool<Sqlite>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://PATH?mode=rwc`,
    /// `sqlite::memory:`), switches it to WAL and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(if in_memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // An in-memory database exists once per connection, so it gets exactly one, kept open.
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 8 })
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(1800))
            })
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for callers that add their own tables to the same file.
    pub fn pool(&self) -> &Pool<Sqlite> {
        &self.pool
    }
}

impl_store!(
    SqliteStore,
    Sqlite,
    begin_write = "BEGIN IMMEDIATE",
    lock_audit = None,
    lock_retention = None
);
