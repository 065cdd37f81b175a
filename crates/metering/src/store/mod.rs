//! Where usage records and per-project limit overrides live: the [`UsageStore`] trait and its
//! two implementations on the database `gateway-auth` uses ([`SqliteUsageStore`],
//! [`PostgresUsageStore`]), each with its own tables and migrations. Both run the same SQL
//! (`sql.rs`) and row mapping (`rows.rs`).
//!
//! Both databases hold `gateway-auth`'s tables too, and its migrations' rows share
//! `_sqlx_migrations` with this crate's: each migrator ignores versions it does not know, and
//! this crate's versions (from `20261201000001` on) are chosen apart from auth's.

mod postgres;
mod rows;
mod sql;
mod sqlite;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use postgres::PostgresUsageStore;
pub use sqlite::SqliteUsageStore;

use crate::record::UsageRecord;
use crate::report::{GroupBy, UsageRow};

/// A store of usage records failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value cannot be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A count does not fit the database's 64-bit signed integer column (named).
    #[error("{0} does not fit a 64-bit signed integer")]
    OutOfRange(&'static str),
    /// The URL names no database this store supports.
    #[error("unsupported database URL (use sqlite:… or postgres://…)")]
    UnsupportedUrl,
}

/// A project's limits on one model (or all its models), overriding its plan's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOverride {
    /// The project.
    pub project_id: Uuid,
    /// The model, or `None` for every model of the project without its own override (stored
    /// as the model `''`, so `Some("")` reads back as `None`).
    pub model: Option<String>,
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Tokens per minute.
    pub tokens_per_minute: u64,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// Which records a report covers: one project, from (inclusive) and to (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// The project.
    pub project_id: Uuid,
    /// First instant covered.
    pub from: Option<DateTime<Utc>>,
    /// First instant no longer covered.
    pub to: Option<DateTime<Utc>>,
}

/// Persistent usage records and limit overrides. Safe to share between tasks and between
/// processes on the same database.
#[async_trait]
pub trait UsageStore: Send + Sync + fmt::Debug {
    /// Writes `records` in one transaction; a record whose id is already stored is skipped.
    /// Returns how many were new.
    async fn insert_records(&self, records: &[UsageRecord]) -> Result<u64, StoreError>;

    /// The records `query` covers, oldest first (for tests and exports).
    async fn records(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>, StoreError>;

    /// The sums of the records `query` covers, per group of `group_by` and per price.
    async fn usage_rows(
        &self,
        query: &UsageQuery,
        group_by: GroupBy,
    ) -> Result<Vec<UsageRow>, StoreError>;

    /// Sets (replaces) the override of a project, or of a project on one model.
    async fn set_limit_override(&self, limits: &LimitOverride) -> Result<(), StoreError>;

    /// Every override, for the limiters' cache.
    async fn limit_overrides(&self) -> Result<Vec<LimitOverride>, StoreError>;
}

/// Opens the usage store a URL names: `sqlite://PATH?mode=rwc` (or `sqlite::memory:`) or
/// `postgres://…` / `postgresql://…`, as `gateway-auth`'s store does, and applies pending
/// migrations.
pub async fn open(url: &str) -> Result<Arc<dyn UsageStore>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteUsageStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresUsageStore::connect(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
