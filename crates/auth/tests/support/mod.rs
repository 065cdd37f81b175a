//! Test harness of the store suite: a fresh store per test on SQLite (a temporary file) and,
//! when `GATEWAY_TEST_POSTGRES_URL` is set, on PostgreSQL (a fresh schema per test), plus
//! helpers that scan every column of every table for a string.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::Arc;

use gateway_auth::{
    Actor, Clock, CreateToken, Management, ManualClock, PostgresStore, RequestContext, Role,
    SqliteStore, Store,
};
use sqlx::Row;
use uuid::Uuid;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store under test and the means to inspect its database.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    pub url: String,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
}

/// The connections of a [`TestDb::closable_replica`].
pub enum ClosablePool {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl ClosablePool {
    /// Closes every connection: each later operation of the store fails.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.pool().close().await,
            Self::Postgres(store) => store.pool().close().await,
        }
    }
}

enum Raw {
    Sqlite(SqliteStore),
    Postgres(PostgresStore, String),
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
            let store = SqliteStore::open(&url).await.unwrap();
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
            let store = PostgresStore::connect(&url).await.unwrap();
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
    /// A second, independent store on the same database (another "replica").
    pub async fn replica(&self) -> Arc<dyn Store> {
        gateway_auth::store::open(&self.url).await.unwrap()
    }

    /// A second store on the same database whose connections the test can close, as if its
    /// database had gone away.
    pub async fn closable_replica(&self) -> (Arc<dyn Store>, ClosablePool) {
        match &self.raw {
            Raw::Sqlite(_) => {
                let store = SqliteStore::open(&self.url).await.unwrap();
                (Arc::new(store.clone()), ClosablePool::Sqlite(store))
            }
            Raw::Postgres(..) => {
                let store = PostgresStore::connect(&self.url).await.unwrap();
                (Arc::new(store.clone()), ClosablePool::Postgres(store))
            }
        }
    }

    /// Every row and column of every table, as text (blobs as lowercase hex).
    pub async fn dump(&self) -> Vec<(String, String, String)> {
        let mut cells = Vec::new();
        match &self.raw {
            Raw::Sqlite(store) => {
                let pool = store.pool();
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(pool)
                    .await
                    .unwrap();
                let columns = sqlx::query(
                    "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                     WHERE m.type = 'table'",
                )
                .fetch_all(pool)
                .await
                .unwrap();
                for col in columns {
                    let (table, column): (String, String) = (col.get(0), col.get(1));
                    let sql = format!(
                        "SELECT CASE WHEN typeof(\"{column}\") = 'blob' \
                         THEN lower(hex(\"{column}\")) \
                         ELSE CAST(\"{column}\" AS TEXT) END FROM \"{table}\""
                    );
                    for row in sqlx::query(&sql).fetch_all(pool).await.unwrap() {
                        let value: Option<String> = row.get(0);
                        cells.push((table.clone(), column.clone(), value.unwrap_or_default()));
                    }
                }
            }
            Raw::Postgres(store, schema) => {
                let pool = store.pool();
                let columns = sqlx::query(
                    "SELECT table_name::text, column_name::text FROM information_schema.columns \
                     WHERE table_schema = $1",
                )
                .bind(schema)
                .fetch_all(pool)
                .await
                .unwrap();
                for col in columns {
                    let (table, column): (String, String) = (col.get(0), col.get(1));
                    let sql = format!("SELECT CAST(\"{column}\" AS TEXT) FROM \"{table}\"");
                    for row in sqlx::query(&sql).fetch_all(pool).await.unwrap() {
                        let value: Option<String> = row.get(0);
                        cells.push((table.clone(), column.clone(), value.unwrap_or_default()));
                    }
                }
            }
        }
        cells
    }

    /// The raw bytes of the SQLite file and its WAL (empty for PostgreSQL).
    pub fn file_bytes(&self) -> Vec<u8> {
        let Some(dir) = &self._dir else {
            return Vec::new();
        };
        let mut bytes = Vec::new();
        for name in ["gateway.db", "gateway.db-wal", "gateway.db-shm"] {
            bytes.extend(std::fs::read(dir.path().join(name)).unwrap_or_default());
        }
        bytes
    }

    /// Tries to change an audit event behind the store's back; returns whether it worked.
    pub async fn tamper_with_audit(&self) -> bool {
        self.execute("UPDATE audit_events SET action = 'token.read'")
            .await
    }

    /// Runs one statement behind the store's back; returns whether it worked.
    pub async fn execute(&self, sql: &str) -> bool {
        match &self.raw {
            Raw::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.is_ok(),
            Raw::Postgres(s, _) => sqlx::query(sql).execute(s.pool()).await.is_ok(),
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

/// A project with an owner, a member, a viewer; their actors; and a management service.
pub struct Fixture {
    pub management: Management,
    pub clock: Arc<ManualClock>,
    pub project: Uuid,
    pub owner: Actor,
    pub member: Actor,
    pub viewer: Actor,
}

pub const REGION: &str = "eu01";

pub fn ctx(request_id: &str) -> RequestContext {
    RequestContext {
        request_id: Some(request_id.to_owned()),
        source_ip: Some("192.0.2.7".parse().unwrap()),
    }
}

pub fn create(name: &str, ttl: Option<&str>) -> CreateToken {
    CreateToken {
        name: name.to_owned(),
        description: Some(format!("{name} description")),
        ttl_duration: ttl.map(str::to_owned),
        labels: None,
        allowed_models: None,
    }
}

impl Fixture {
    pub async fn new(store: Arc<dyn Store>, project_name: &str) -> Self {
        let clock = Arc::new(ManualClock::new("2026-05-20T10:00:00Z".parse().unwrap()));
        let management = Management::with_clock(store, clock.clone() as Arc<dyn Clock>);
        let project = management.create_project(project_name).await.unwrap().id;
        let mut actors = Vec::new();
        for role in [Role::Owner, Role::Member, Role::Viewer] {
            let subject = format!("{project_name}-{role}");
            let email = format!("{subject}@example.com");
            management
                .add_principal(project, &subject, &email, role)
                .await
                .unwrap();
            let token = management
                .create_management_token(&subject, None)
                .await
                .unwrap();
            let actor = management
                .authenticate_management_token(token.content.expose())
                .await
                .unwrap();
            assert_eq!(actor.email, email);
            actors.push(actor);
        }
        let viewer = actors.pop().unwrap();
        let member = actors.pop().unwrap();
        let owner = actors.pop().unwrap();
        Self {
            management,
            clock,
            project,
            owner,
            member,
            viewer,
        }
    }
}
