//! The store for several gateway replicas: the PostgreSQL database `gateway-auth` uses, with
//! this crate's own tables.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Pool, Postgres};

use super::rows::{OverrideColumns, OverrideRow, RecordColumns, RecordRow, SumRow};
use super::sql::{self, impl_usage_store};
use super::{LimitOverride, StoreError, UsageQuery, UsageStore};
use crate::record::UsageRecord;
use crate::report::{GroupBy, UsageRow};

/// This crate's migrations; they ignore the other migrators' rows in `_sqlx_migrations`.
static MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("migrations/postgres")
};

/// [`UsageStore`] on a PostgreSQL database shared by every replica.
#[derive(Clone, Debug)]
pub struct PostgresUsageStore {
    pool: Pool<Postgres>,
}

impl PostgresUsageStore {
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

    /// The connection pool, for callers that inspect or share the database.
    pub fn pool(&self) -> &Pool<Postgres> {
        &self.pool
    }
}

impl_usage_store!(
    PostgresUsageStore,
    Postgres,
    begin_write = "BEGIN",
    key_text = "CAST(key_id AS TEXT)"
);
