//! The usage store suite: every test runs on SQLite always and on PostgreSQL when
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
    records::inserting_a_record_twice_keeps_one,
    records::a_flush_of_thousands_of_records_is_stored_whole,
    records::ranges_include_from_and_exclude_to,
    records::prices_round_trip_exactly,
    records::migrations_ignore_other_migrators,
    records::cached_input_tokens_and_their_price_round_trip,
    reports::rows_group_by_model_day_and_key,
    reports::a_price_change_splits_rows_and_billing_lines,
    reports::cached_input_is_summed_and_billed_at_its_price,
    overrides::overrides_are_set_replaced_and_listed,
);

#[tokio::test]
async fn unknown_url_schemes_are_refused() {
    let error = gateway_metering::store::open("mysql://localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        gateway_metering::StoreError::UnsupportedUrl
    ));
}
