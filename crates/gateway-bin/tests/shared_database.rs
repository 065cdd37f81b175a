//! `gateway-auth`'s store and `gateway-metering`'s usage store share one database, as the
//! gateway wires them (one `database_url`): each crate's migrator must accept the other's rows
//! in `_sqlx_migrations`, whichever opens the database first, and open it again afterwards.
//!
//! Each test opens the stores in one order on a fresh database (first, second, first again),
//! then creates a project and a key with [`Management`], records the key's usage with the
//! metering store, and reads both back through stores opened once more. On SQLite the
//! database is a temporary file; on PostgreSQL a fresh schema of `GATEWAY_TEST_POSTGRES_URL`
//! (see `scripts/postgres.sh`). Without that variable the PostgreSQL tests are skipped with a
//! message, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gateway_auth::{CreateToken, KeyVerifier, Management};
use gateway_core::ServicePlan;
use gateway_metering::{Outcome, Price, Requester, TokenCounts, UsageQuery, UsageRecord};
use rust_decimal::Decimal;
use uuid::Uuid;

/// Which store opens the fresh database first.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// `gateway-auth`, then `gateway-metering`, then `gateway-auth` again.
    AuthFirst,
    /// `gateway-metering`, then `gateway-auth`, then `gateway-metering` again.
    MeteringFirst,
}

/// A fresh database and what removes it.
enum Database {
    /// A SQLite file in a temporary directory (removed with it).
    Sqlite(tempfile::TempDir),
    /// A PostgreSQL schema, dropped at the end.
    Postgres {
        /// The server's URL (without the schema).
        base: String,
        /// The schema's name.
        schema: String,
    },
}

impl Database {
    /// A fresh SQLite file and its URL.
    fn sqlite() -> (Self, String) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("gateway.db").display()
        );
        (Self::Sqlite(dir), url)
    }

    /// A fresh PostgreSQL schema and a URL whose connections use it, or `None` when
    /// `GATEWAY_TEST_POSTGRES_URL` is unset (outside CI).
    async fn postgres() -> Option<(Self, String)> {
        let Ok(base) = std::env::var("GATEWAY_TEST_POSTGRES_URL") else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but GATEWAY_TEST_POSTGRES_URL is unset: run scripts/postgres.sh");
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
        Some((Self::Postgres { base, schema }, url))
    }

    /// Removes the SQLite directory or drops the PostgreSQL schema.
    async fn finish(self) {
        match self {
            Self::Sqlite(dir) => dir.close().unwrap(),
            Self::Postgres { base, schema } => {
                let admin = sqlx::PgPool::connect(&base).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
            }
        }
    }
}

/// Opens both stores on `url` in `order`, then uses and reads back both.
async fn share(url: &str, order: Order) {
    let (auth, usage) = match order {
        Order::AuthFirst => {
            gateway_auth::store::open(url).await.unwrap();
            let usage = gateway_metering::store::open(url).await.unwrap();
            (gateway_auth::store::open(url).await.unwrap(), usage)
        }
        Order::MeteringFirst => {
            gateway_metering::store::open(url).await.unwrap();
            let auth = gateway_auth::store::open(url).await.unwrap();
            (auth, gateway_metering::store::open(url).await.unwrap())
        }
    };

    let management = Management::new(auth);
    let project = management.create_project("shared").await.unwrap();
    let request = CreateToken {
        name: "shared".to_owned(),
        ..CreateToken::default()
    };
    let created = management
        .create_key(project.id, "eu01", request)
        .await
        .unwrap();
    let verified = KeyVerifier::new(management.store().clone())
        .verify(created.content.expose())
        .await
        .unwrap();
    assert_eq!(verified.project_id, project.id);
    assert_eq!(verified.key_id, created.token.id);

    let price = Price {
        plan: ServicePlan::Base,
        effective_from: "2026-01-01T00:00:00Z".parse().unwrap(),
        currency: "EUR".to_owned(),
        input_per_million: Decimal::new(45, 2),
        cached_input_per_million: Decimal::new(45, 3),
        output_per_million: Decimal::new(65, 2),
    };
    let requester = Requester {
        project_id: verified.project_id,
        key_id: verified.key_id,
        model: "m".to_owned(),
        request_id: "req-1".to_owned(),
    };
    let counts = TokenCounts {
        input: 27,
        cached_input: 20,
        output: 8,
        exact: true,
    };
    let time = "2026-12-01T10:00:00Z".parse().unwrap();
    let record = UsageRecord::new(requester, time, &price, counts, Outcome::Complete);
    let inserted = usage
        .insert_records(std::slice::from_ref(&record))
        .await
        .unwrap();
    assert_eq!(inserted, 1);

    let auth = gateway_auth::store::open(url).await.unwrap();
    let usage = gateway_metering::store::open(url).await.unwrap();
    let stored = auth.project(project.id).await.unwrap().unwrap();
    assert_eq!((stored.id, stored.name.as_str()), (project.id, "shared"));
    let keys = auth.keys(project.id, "eu01").await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, created.token.id);
    let query = UsageQuery {
        project_id: project.id,
        from: None,
        to: None,
    };
    assert_eq!(usage.records(&query).await.unwrap(), [record]);
}

#[tokio::test]
async fn sqlite_auth_first() {
    let (db, url) = Database::sqlite();
    share(&url, Order::AuthFirst).await;
    db.finish().await;
}

#[tokio::test]
async fn sqlite_metering_first() {
    let (db, url) = Database::sqlite();
    share(&url, Order::MeteringFirst).await;
    db.finish().await;
}

#[tokio::test]
async fn postgres_auth_first() {
    let Some((db, url)) = Database::postgres().await else {
        return;
    };
    share(&url, Order::AuthFirst).await;
    db.finish().await;
}

#[tokio::test]
async fn postgres_metering_first() {
    let Some((db, url)) = Database::postgres().await else {
        return;
    };
    share(&url, Order::MeteringFirst).await;
    db.finish().await;
}
