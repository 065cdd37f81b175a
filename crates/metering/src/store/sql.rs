//! The SQL both stores run, and [`impl_usage_store!`], which implements
//! [`super::UsageStore`] for a store type over its concrete `sqlx` pool. The statements use
//! `$n` placeholders, which SQLite and PostgreSQL both accept; the per-database differences
//! are the statement that opens a write transaction and how a key id is written as text.

use crate::report::GroupBy;

macro_rules! record_columns {
    () => {
        "id, time, project_id, key_id, model, plan, input_tokens, output_tokens, exact, \
         currency, input_price, output_price, cost, request_id, outcome, \
         cached_input_tokens, cached_input_price"
    };
}

/// The records of project `$1` from `$2` (inclusive) to `$3` (exclusive), either bound NULL
/// for "unbounded".
macro_rules! in_range {
    () => {
        " FROM usage_records WHERE project_id = $1 \
         AND ($2 IS NULL OR time >= $2) AND ($3 IS NULL OR time < $3)"
    };
}

/// The head of a multi-row insert of records; the rows follow as `VALUES (…), (…)`, then
/// [`INSERT_RECORDS_TAIL`].
pub(crate) const INSERT_RECORDS_HEAD: &str = concat!(
    "INSERT INTO usage_records (",
    record_columns!(),
    ", day, month) "
);
/// Records already stored (a flush repeated after a crash) are left as they are.
pub(crate) const INSERT_RECORDS_TAIL: &str = " ON CONFLICT (id) DO NOTHING";
/// Records per insert statement: 19 bound values each, within SQLite's 32,766 and
/// PostgreSQL's 65,535 parameters.
pub(crate) const RECORDS_PER_INSERT: usize = 500;
pub(crate) const SELECT_RECORDS: &str = concat!(
    "SELECT ",
    record_columns!(),
    in_range!(),
    " ORDER BY time, id"
);
pub(crate) const UPSERT_OVERRIDE: &str = "INSERT INTO limit_overrides \
     (project_id, model, requests_per_minute, tokens_per_minute, updated_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project_id, model) DO UPDATE SET \
     requests_per_minute = excluded.requests_per_minute, \
     tokens_per_minute = excluded.tokens_per_minute, updated_at = excluded.updated_at";
pub(crate) const SELECT_OVERRIDES: &str = "SELECT project_id, model, requests_per_minute, \
     tokens_per_minute, updated_at FROM limit_overrides ORDER BY project_id, model";

/// The sums of the records in range per group (the text `group`), plan, month, currency and
/// price. Tokens are summed in SQL; money never is.
pub(crate) fn usage_rows(group: &str) -> String {
    format!(
        "SELECT {group} AS grp, plan, month, currency, input_price, cached_input_price, \
         output_price, COUNT(*) AS requests, \
         CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, \
         CAST(SUM(cached_input_tokens) AS BIGINT) AS cached_input_tokens, \
         CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, \
         CAST(SUM(CASE WHEN exact THEN 0 ELSE 1 END) AS BIGINT) AS estimated_requests{} \
         GROUP BY grp, plan, month, currency, input_price, cached_input_price, output_price \
         ORDER BY grp, plan, month, currency, input_price, cached_input_price, output_price",
        in_range!()
    )
}

/// The expression of the group column: `key_text` is the database's key id as text.
pub(crate) fn group_column(group_by: GroupBy, key_text: &'static str) -> &'static str {
    match group_by {
        GroupBy::Model => "model",
        GroupBy::Day => "day",
        GroupBy::Key => key_text,
    }
}

/// Implements `UsageStore` for `$store` (a struct with a `pool: sqlx::Pool<$db>` field).
/// `begin_write` opens a write transaction; `key_text` is an SQL expression of `key_id` as
/// text (any form [`uuid::Uuid::parse_str`] reads).
macro_rules! impl_usage_store {
    ($store:ty, $db:ty, begin_write = $begin:expr, key_text = $key_text:expr) => {
        #[async_trait::async_trait]
        impl UsageStore for $store {
            async fn insert_records(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
                if records.is_empty() {
                    return Ok(0);
                }
                let mut tx = self.pool.begin_with($begin).await?;
                let mut new = 0;
                for chunk in records.chunks(sql::RECORDS_PER_INSERT) {
                    let rows = chunk
                        .iter()
                        .map(|record| Ok((record, RecordColumns::of(record)?)))
                        .collect::<Result<Vec<_>, StoreError>>()?;
                    let mut insert = sqlx::QueryBuilder::<$db>::new(sql::INSERT_RECORDS_HEAD);
                    insert.push_values(rows, |mut row, (record, columns)| {
                        row.push_bind(record.id)
                            .push_bind(record.time)
                            .push_bind(record.project_id)
                            .push_bind(record.key_id)
                            .push_bind(record.model.clone())
                            .push_bind(columns.plan)
                            .push_bind(columns.input_tokens)
                            .push_bind(columns.output_tokens)
                            .push_bind(record.exact)
                            .push_bind(record.currency.clone())
                            .push_bind(columns.input_price)
                            .push_bind(columns.output_price)
                            .push_bind(columns.cost)
                            .push_bind(record.request_id.clone())
                            .push_bind(record.outcome.as_str())
                            .push_bind(columns.cached_input_tokens)
                            .push_bind(columns.cached_input_price)
                            .push_bind(columns.day)
                            .push_bind(columns.month);
                    });
                    insert.push(sql::INSERT_RECORDS_TAIL);
                    new += insert.build().execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                Ok(new)
            }

            async fn records(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>, StoreError> {
                let rows: Vec<RecordRow> = sqlx::query_as(sql::SELECT_RECORDS)
                    .bind(query.project_id)
                    .bind(query.from)
                    .bind(query.to)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(UsageRecord::try_from).collect()
            }

            async fn usage_rows(
                &self,
                query: &UsageQuery,
                group_by: GroupBy,
            ) -> Result<Vec<UsageRow>, StoreError> {
                let statement = sql::usage_rows(sql::group_column(group_by, $key_text));
                let rows: Vec<SumRow> = sqlx::query_as(&statement)
                    .bind(query.project_id)
                    .bind(query.from)
                    .bind(query.to)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|row| row.into_usage_row(group_by))
                    .collect()
            }

            async fn set_limit_override(&self, limits: &LimitOverride) -> Result<(), StoreError> {
                let columns = OverrideColumns::of(limits)?;
                sqlx::query(sql::UPSERT_OVERRIDE)
                    .bind(limits.project_id)
                    .bind(columns.model)
                    .bind(columns.requests_per_minute)
                    .bind(columns.tokens_per_minute)
                    .bind(limits.updated_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn limit_overrides(&self) -> Result<Vec<LimitOverride>, StoreError> {
                let rows: Vec<OverrideRow> = sqlx::query_as(sql::SELECT_OVERRIDES)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(LimitOverride::try_from).collect()
            }
        }
    };
}

pub(crate) use impl_usage_store;
