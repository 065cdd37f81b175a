//! Row types shared by both stores (`sqlx::FromRow` is generic over the database) and their
//! conversion to and from the crate's types: plans and outcomes as their names, decimals as
//! exact text, counts as `BIGINT` (checked both ways), "every model" as `''`.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use gateway_core::ServicePlan;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::{LimitOverride, StoreError};
use crate::record::{Outcome, UsageRecord};
use crate::report::{GroupBy, UsageRow};

/// The `model` of an override that applies to every model of its project.
const EVERY_MODEL: &str = "";

/// The columns of a usage record that are not bound as they are.
pub(crate) struct RecordColumns {
    pub plan: &'static str,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub input_price: String,
    pub cached_input_price: String,
    pub output_price: String,
    pub cost: String,
    pub day: String,
    pub month: String,
}

impl RecordColumns {
    pub(crate) fn of(record: &UsageRecord) -> Result<Self, StoreError> {
        Ok(Self {
            plan: plan_name(record.plan),
            input_tokens: to_i64(record.input_tokens, "usage_records.input_tokens")?,
            cached_input_tokens: to_i64(
                record.cached_input_tokens,
                "usage_records.cached_input_tokens",
            )?,
            output_tokens: to_i64(record.output_tokens, "usage_records.output_tokens")?,
            input_price: record.input_price.to_string(),
            cached_input_price: record.cached_input_price.to_string(),
            output_price: record.output_price.to_string(),
            cost: record.cost.to_string(),
            day: record.time.format("%Y-%m-%d").to_string(),
            month: record.time.format("%Y-%m").to_string(),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RecordRow {
    id: Uuid,
    time: DateTime<Utc>,
    project_id: Uuid,
    key_id: Uuid,
    model: String,
    plan: String,
    input_tokens: i64,
    output_tokens: i64,
    exact: bool,
    currency: String,
    input_price: String,
    output_price: String,
    cost: String,
    request_id: String,
    outcome: String,
    cached_input_tokens: i64,
    cached_input_price: String,
}

impl TryFrom<RecordRow> for UsageRecord {
    type Error = StoreError;

    fn try_from(row: RecordRow) -> Result<Self, StoreError> {
        let outcome =
            Outcome::parse(&row.outcome).ok_or_else(|| corrupt("usage_records.outcome"))?;
        Ok(Self {
            id: row.id,
            time: row.time,
            project_id: row.project_id,
            key_id: row.key_id,
            model: row.model,
            plan: parse_plan(&row.plan)?,
            input_tokens: to_u64(row.input_tokens, "usage_records.input_tokens")?,
            cached_input_tokens: to_u64(
                row.cached_input_tokens,
                "usage_records.cached_input_tokens",
            )?,
            output_tokens: to_u64(row.output_tokens, "usage_records.output_tokens")?,
            exact: row.exact,
            currency: row.currency,
            input_price: decimal(&row.input_price, "usage_records.input_price")?,
            cached_input_price: decimal(
                &row.cached_input_price,
                "usage_records.cached_input_price",
            )?,
            output_price: decimal(&row.output_price, "usage_records.output_price")?,
            cost: decimal(&row.cost, "usage_records.cost")?,
            request_id: row.request_id,
            outcome,
        })
    }
}

/// One row of the aggregate query: the group as text, then the sums.
#[derive(sqlx::FromRow)]
pub(crate) struct SumRow {
    grp: String,
    plan: String,
    month: String,
    currency: String,
    input_price: String,
    cached_input_price: String,
    output_price: String,
    requests: i64,
    input_tokens: i64,
    cached_input_tokens: i64,
    output_tokens: i64,
    estimated_requests: i64,
}

impl SumRow {
    /// The report row; a key group is written as a hyphenated UUID whatever the database.
    pub(crate) fn into_usage_row(self, group_by: GroupBy) -> Result<UsageRow, StoreError> {
        let group = match group_by {
            GroupBy::Key => Uuid::parse_str(&self.grp)
                .map_err(|_| corrupt("usage_records.key_id"))?
                .to_string(),
            GroupBy::Model | GroupBy::Day => self.grp,
        };
        Ok(UsageRow {
            group,
            plan: parse_plan(&self.plan)?,
            month: self.month,
            currency: self.currency,
            input_price: decimal(&self.input_price, "usage_records.input_price")?,
            cached_input_price: decimal(
                &self.cached_input_price,
                "usage_records.cached_input_price",
            )?,
            output_price: decimal(&self.output_price, "usage_records.output_price")?,
            requests: to_u64(self.requests, "usage_records.id")?,
            input_tokens: to_u64(self.input_tokens, "usage_records.input_tokens")?,
            cached_input_tokens: to_u64(
                self.cached_input_tokens,
                "usage_records.cached_input_tokens",
            )?,
            output_tokens: to_u64(self.output_tokens, "usage_records.output_tokens")?,
            estimated_requests: to_u64(self.estimated_requests, "usage_records.exact")?,
        })
    }
}

/// The columns of a limit override that are not bound as they are.
pub(crate) struct OverrideColumns {
    pub model: String,
    pub requests_per_minute: i64,
    pub tokens_per_minute: i64,
}

impl OverrideColumns {
    pub(crate) fn of(limits: &LimitOverride) -> Result<Self, StoreError> {
        Ok(Self {
            model: limits.model.as_deref().unwrap_or(EVERY_MODEL).to_owned(),
            requests_per_minute: to_i64(
                limits.requests_per_minute,
                "limit_overrides.requests_per_minute",
            )?,
            tokens_per_minute: to_i64(
                limits.tokens_per_minute,
                "limit_overrides.tokens_per_minute",
            )?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OverrideRow {
    project_id: Uuid,
    model: String,
    requests_per_minute: i64,
    tokens_per_minute: i64,
    updated_at: DateTime<Utc>,
}

impl TryFrom<OverrideRow> for LimitOverride {
    type Error = StoreError;

    fn try_from(row: OverrideRow) -> Result<Self, StoreError> {
        Ok(Self {
            project_id: row.project_id,
            model: Some(row.model).filter(|model| model != EVERY_MODEL),
            requests_per_minute: to_u64(
                row.requests_per_minute,
                "limit_overrides.requests_per_minute",
            )?,
            tokens_per_minute: to_u64(row.tokens_per_minute, "limit_overrides.tokens_per_minute")?,
            updated_at: row.updated_at,
        })
    }
}

/// The stored name of a plan (as it is serialized).
fn plan_name(plan: ServicePlan) -> &'static str {
    match plan {
        ServicePlan::Base => "base",
        ServicePlan::Plus => "plus",
        ServicePlan::Premium => "premium",
    }
}

fn parse_plan(name: &str) -> Result<ServicePlan, StoreError> {
    [ServicePlan::Base, ServicePlan::Plus, ServicePlan::Premium]
        .into_iter()
        .find(|plan| plan_name(*plan) == name)
        .ok_or_else(|| corrupt("usage_records.plan"))
}

fn to_i64(value: u64, column: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(column))
}

fn to_u64(value: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(column))
}

fn decimal(text: &str, column: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str(text).map_err(|_| corrupt(column))
}

/// `column` (`table.column`) holds a value that cannot be read back.
fn corrupt(column: &str) -> StoreError {
    StoreError::Corrupt(column.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn plans_are_stored_by_their_serialized_name() {
        for plan in [ServicePlan::Base, ServicePlan::Plus, ServicePlan::Premium] {
            let json = serde_json::to_value(plan).unwrap();
            assert_eq!(json, plan_name(plan));
            assert_eq!(parse_plan(plan_name(plan)).unwrap(), plan);
        }
        assert!(matches!(parse_plan("gold"), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn counts_beyond_bigint_are_refused() {
        assert!(matches!(
            to_i64(u64::MAX, "usage_records.input_tokens"),
            Err(StoreError::OutOfRange(_))
        ));
        assert!(matches!(
            to_u64(-1, "usage_records.input_tokens"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
