//! The embedded default store: the SQLite file `gateway-auth` uses (WAL, busy timeout), with
//! this crate's own tables.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};

use super::rows::{OverrideColumns, OverrideRow, RecordColumns, RecordRow, SumRow};
use super::sql::{self, impl_usage_store};
use super::{LimitOverride, StoreError, UsageQuery, UsageStore};
use crate::record::UsageRecord;
use crate::report::{GroupBy, UsageRow};

/// How long a connection waits for another writer before failing with "database is locked".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// This crate's migrations; they ignore the other migrators' rows in `_sqlx_migrations`.
static MIGRATOR: Migrator = Migrator {
    ignore_missing: true,
    ..sqlx::migrate!("migrations/sqlite")
};

/// [`UsageStore`] on one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteUsageStore {
    pool: Pool<Sqlite>,
}

impl SqliteUsageStore {
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
            .busy_timeout(BUSY_TIMEOUT);
        // An in-memory database exists once per connection, so it gets exactly one, kept open.
        let pool = SqlitePoolOptions::new()
            .max_connections(if in_memory { 1 } else { 8 })
            .idle_timeout((!in_memory).then_some(Duration::from_secs(600)))
            .max_lifetime((!in_memory).then_some(Duration::from_secs(1800)))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for callers that inspect or share the database.
    pub fn pool(&self) -> &Pool<Sqlite> {
        &self.pool
    }
}

impl_usage_store!(
    SqliteUsageStore,
    Sqlite,
    begin_write = "BEGIN IMMEDIATE",
    key_text = "lower(hex(key_id))"
);
