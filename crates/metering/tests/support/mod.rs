//! Test harness of the usage store suite: a fresh store per test on SQLite (a temporary file)
//! and, when `GATEWAY_TEST_POSTGRES_URL` is set, on PostgreSQL (a fresh schema per test), plus
//! builders of usage records.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::str::FromStr;
use std::sync::Arc;

use gateway_core::ServicePlan;
use gateway_metering::store::{PostgresUsageStore, SqliteUsageStore};
use gateway_metering::{
    Outcome, Price, Requester, TokenCounts, UsageQuery, UsageRecord, UsageStore,
};
use rust_decimal::Decimal;
use uuid::Uuid;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store under test and the means to reach its database directly.
pub struct TestDb {
    pub store: Arc<dyn UsageStore>,
    pub url: String,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
}

enum Raw {
    Sqlite(SqliteUsageStore),
    Postgres(PostgresUsageStore, String),
}

/// Opens a fresh store, or `None` when PostgreSQL is not configured (outside CI).
pub async fn setup(backend: Backend) -> Option<TestDb> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("gateway.db").display()
            );
            let store = SqliteUsageStore::open(&url).await.unwrap();
            Some(TestDb {
                store: Arc::new(store.clone()),
                url,
                raw: Raw::Sqlite(store),
                _dir: Some(dir),
            })
        }
        Backend::Postgres => {
            let Ok(base) = std::env::var("GATEWAY_TEST_POSTGRES_URL") else {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!(
                        "CI=true but GATEWAY_TEST_POSTGRES_URL is unset: run scripts/postgres.sh"
                    );
                }
                eprintln!("skipping: GATEWAY_TEST_POSTGRES_URL is unset (see scripts/postgres.sh)");
                return None;
            };
            let schema = format!("test_{}", Uuid::new_v4().simple());
            let admin = sqlx::PgPool::connect(&base).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
            let store = PostgresUsageStore::connect(&url).await.unwrap();
            Some(TestDb {
                store: Arc::new(store.clone()),
                url,
                raw: Raw::Postgres(store, schema),
                _dir: None,
            })
        }
    }
}

impl TestDb {
    /// A second, independent store on the same database (migrations run again).
    pub async fn reopen(&self) -> Arc<dyn UsageStore> {
        gateway_metering::store::open(&self.url).await.unwrap()
    }

    /// Records a migration this crate does not know in `_sqlx_migrations`, as another crate's
    /// migrator sharing the database would.
    pub async fn add_foreign_migration(&self, version: i64) {
        let sql = "INSERT INTO _sqlx_migrations \
                   (version, description, success, checksum, execution_time) \
                   VALUES ($1, 'another crate', TRUE, $2, 0)";
        let checksum = vec![0u8; 48];
        match &self.raw {
            Raw::Sqlite(s) => {
                let query = sqlx::query(sql).bind(version).bind(checksum);
                query.execute(s.pool()).await.unwrap();
            }
            Raw::Postgres(s, _) => {
                let query = sqlx::query(sql).bind(version).bind(checksum);
                query.execute(s.pool()).await.unwrap();
            }
        }
    }

    /// Drops the test's PostgreSQL schema.
    pub async fn finish(self) {
        if let Raw::Postgres(store, schema) = &self.raw {
            let sql = format!("DROP SCHEMA {schema} CASCADE");
            sqlx::query(&sql).execute(store.pool()).await.unwrap();
        }
    }
}

pub fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// A base-plan price in EUR, cached input at the input price.
pub fn price(input: &str, output: &str) -> Price {
    Price {
        plan: ServicePlan::Base,
        effective_from: "2026-01-01T00:00:00Z".parse().unwrap(),
        currency: "EUR".to_owned(),
        input_per_million: dec(input),
        cached_input_per_million: dec(input),
        output_per_million: dec(output),
    }
}

/// `price` with cached input at `cached_input`.
pub fn discounted(price: Price, cached_input: &str) -> Price {
    Price {
        cached_input_per_million: dec(cached_input),
        ..price
    }
}

/// A complete request of `project` with key `key` on `model` that ended at `time`, with
/// `tokens` (input, output; none cached) counted exactly, at `price`.
pub fn record(
    project: Uuid,
    key: Uuid,
    model: &str,
    time: &str,
    price: &Price,
    tokens: (u64, u64),
) -> UsageRecord {
    let (input, output) = tokens;
    cached_record(project, key, model, time, price, (input, 0, output))
}

/// [`record`] with `tokens` (input, of them cached, output).
pub fn cached_record(
    project: Uuid,
    key: Uuid,
    model: &str,
    time: &str,
    price: &Price,
    tokens: (u64, u64, u64),
) -> UsageRecord {
    let requester = Requester {
        project_id: project,
        key_id: key,
        model: model.to_owned(),
        request_id: format!("req-{}", Uuid::new_v4().simple()),
    };
    let (input, cached_input, output) = tokens;
    let counts = TokenCounts {
        input,
        cached_input,
        output,
        exact: true,
    };
    let time = time.parse().unwrap();
    UsageRecord::new(requester, time, price, counts, Outcome::Complete)
}

/// Every record of `project`.
pub fn everything(project: Uuid) -> UsageQuery {
    UsageQuery {
        project_id: project,
        from: None,
        to: None,
    }
}
