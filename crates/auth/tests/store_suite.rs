//! The shared store suite: every test runs on SQLite always and on PostgreSQL when
//! `GATEWAY_TEST_POSTGRES_URL` is set (with `CI=true` an unset variable fails the PostgreSQL
//! variants instead of skipping them). Start a server with `scripts/postgres.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

mod suite;

macro_rules! suite {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = crate::support::setup(crate::support::Backend::Sqlite).await.unwrap();
                    crate::suite::$module::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let backend = crate::support::Backend::Postgres;
                    if let Some(db) = crate::support::setup(backend).await {
                        crate::suite::$module::$name(&db).await;
                        db.finish().await;
                    }
                }
            )*
        }
    };
}

suite!(
    tokens::crud,
    tokens::keys_in_use_are_read_again_ahead_and_revocation_still_holds,
    tokens::expiry_makes_tokens_inactive,
    tokens::ttl_and_validation,
    tokens::never_expiring_tokens_have_the_zero_time,
    tokens::labels_round_trip_and_select,
    tokens::concurrent_label_patches_keep_every_change,
    access::isolation_across_projects,
    access::roles_and_credentials,
    access::secrets_are_never_stored,
    audit::audit_records_every_action,
    audit::audit_paging,
    principals::management_tokens_are_listed_and_revoked_at_once,
    principals::removed_principals_lose_access,
    replicas::parallel_creates_and_deletes,
    replicas::revocation_reaches_other_replicas,
    replicas::verified_keys_outlive_a_database_outage_within_the_grace,
    replicas::without_a_grace_an_outage_fails_verification,
    retention::retention_pseudonymizes_exactly_the_old_events,
    retention::retention_on_replicas_at_once,
    retention::the_log_accepts_no_other_change,
);
