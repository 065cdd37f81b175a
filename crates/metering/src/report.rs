//! Usage reports: what a project used and what it costs over a time range, per model, day or
//! key ([`GroupBy`]), and the billing lines of each plan, month and price under a
//! [`Granularity`]. The store sums tokens in SQL ([`UsageRow`]); money is summed here, in
//! [`Decimal`], exactly. A report renders as JSON (camelCase) or CSV ([`UsageReport::to_csv`]).

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use gateway_core::ServicePlan;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::price::{Granularity, TokenPrices};
use crate::record::TokenCounts;
use crate::store::{StoreError, UsageQuery, UsageStore};

/// What the groups of a report are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One group per model id.
    Model,
    /// One group per UTC day (`YYYY-MM-DD`).
    Day,
    /// One group per API key id.
    Key,
}

impl GroupBy {
    /// Every grouping, in the order error messages list them.
    const ALL: [Self; 3] = [Self::Model, Self::Day, Self::Key];

    /// The name used in queries and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Day => "day",
            Self::Key => "key",
        }
    }
}

/// A name that is not a [`GroupBy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown grouping {0:?}: use model, day or key")]
pub struct UnknownGroupBy(pub String);

impl FromStr for GroupBy {
    type Err = UnknownGroupBy;

    fn from_str(name: &str) -> Result<Self, UnknownGroupBy> {
        Self::ALL
            .into_iter()
            .find(|group_by| group_by.as_str() == name)
            .ok_or_else(|| UnknownGroupBy(name.to_owned()))
    }
}

/// The sums of the records of one group, plan, month, currency and price (one row of the
/// store's aggregate query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The group: a model id, a day (`YYYY-MM-DD`) or a key id, as [`GroupBy`] says.
    pub group: String,
    /// The plan the records were priced under.
    pub plan: ServicePlan,
    /// The UTC month of the records (`YYYY-MM`).
    pub month: String,
    /// The currency of the prices.
    pub currency: String,
    /// Price of 1 million input tokens.
    pub input_price: Decimal,
    /// Price of 1 million cached input tokens.
    pub cached_input_price: Decimal,
    /// Price of 1 million output tokens.
    pub output_price: Decimal,
    /// How many records.
    pub requests: u64,
    /// Their input tokens (the cached ones included).
    pub input_tokens: u64,
    /// Of their input tokens, those taken from a prompt cache.
    pub cached_input_tokens: u64,
    /// Their output tokens.
    pub output_tokens: u64,
    /// How many of them have estimated (not exact) counts.
    pub estimated_requests: u64,
}

impl UsageRow {
    /// The prices the row's records were billed at.
    pub fn prices(&self) -> TokenPrices {
        TokenPrices {
            input: self.input_price,
            cached_input: self.cached_input_price,
            output: self.output_price,
        }
    }

    /// The row's tokens, exact when none of its records was estimated.
    pub fn counts(&self) -> TokenCounts {
        TokenCounts {
            input: self.input_tokens,
            cached_input: self.cached_input_tokens,
            output: self.output_tokens,
            exact: self.estimated_requests == 0,
        }
    }
}

/// Usage and its exact (prorated) cost in one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyUsage {
    /// The currency of the cost.
    pub currency: String,
    /// Requests.
    pub requests: u64,
    /// Input tokens (the cached ones included).
    pub input_tokens: u64,
    /// Of the input tokens, those taken from a prompt cache.
    pub cached_input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Requests whose counts are estimated.
    pub estimated_requests: u64,
    /// Σ tokens × price per million / 10^6, exactly (cached input tokens at the cached
    /// input price).
    pub cost: Decimal,
}

impl CurrencyUsage {
    fn add_row(&mut self, row: &UsageRow) {
        self.requests += row.requests;
        self.input_tokens += row.input_tokens;
        self.cached_input_tokens += row.cached_input_tokens;
        self.output_tokens += row.output_tokens;
        self.estimated_requests += row.estimated_requests;
        self.cost += row.prices().charge(Granularity::Prorated, &row.counts());
    }

    fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.output_tokens += other.output_tokens;
        self.estimated_requests += other.estimated_requests;
        self.cost += other.cost;
    }
}

/// The usage of one group in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupUsage {
    /// The model id, day or key id.
    pub group: String,
    /// Its usage and cost.
    #[serde(flatten)]
    pub usage: CurrencyUsage,
}

/// What one plan's tokens at one price in one month are billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingLine {
    /// The plan.
    pub plan: ServicePlan,
    /// The UTC month (`YYYY-MM`).
    pub month: String,
    /// The currency.
    pub currency: String,
    /// Price of 1 million input tokens.
    pub input_price_per_million: Decimal,
    /// Price of 1 million cached input tokens.
    pub cached_input_price_per_million: Decimal,
    /// Price of 1 million output tokens.
    pub output_price_per_million: Decimal,
    /// Input tokens at these prices, the cached ones included.
    pub input_tokens: u64,
    /// Of the input tokens, those taken from a prompt cache: billed at the cached input
    /// price instead of the input price.
    pub cached_input_tokens: u64,
    /// Output tokens at this price.
    pub output_tokens: u64,
    /// The part of `amount` that is cached input: `granularity.charge(cached input tokens,
    /// cached input price)`.
    pub cached_input_amount: Decimal,
    /// `granularity.charge(input tokens − cached input tokens, input price) +
    /// cached_input_amount + granularity.charge(output tokens, output price)`.
    pub amount: Decimal,
}

/// A sum of money in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyAmount {
    /// The currency.
    pub currency: String,
    /// The sum.
    pub amount: Decimal,
}

/// What a project used over a time range, per group, and what it is billed.
///
/// `groups` and `total` carry the exact cost (every token at its share of the price per
/// million). `billing` has one line per plan, month, currency and price, over every record
/// whatever the grouping, charged under `granularity`: under [`Granularity::Prorated`] the
/// `billedTotal` equals the cost `total`; under [`Granularity::PerStartedMillion`] each started
/// million tokens of a plan, price and month (input, cached input and output apart) is charged
/// whole, so the billed total may exceed the cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// The project.
    pub project_id: Uuid,
    /// First instant covered, if bounded.
    pub from: Option<DateTime<Utc>>,
    /// First instant no longer covered, if bounded.
    pub to: Option<DateTime<Utc>>,
    /// What the groups are.
    pub group_by: GroupBy,
    /// How `billing` charges tokens.
    pub granularity: Granularity,
    /// One entry per group and currency, by group, then currency.
    pub groups: Vec<GroupUsage>,
    /// The sums of `groups` per currency.
    pub total: Vec<CurrencyUsage>,
    /// One line per month, plan, currency and price.
    pub billing: Vec<BillingLine>,
    /// The sums of `billing` per currency.
    pub billed_total: Vec<CurrencyAmount>,
}

/// The CSV columns of [`UsageReport::to_csv`].
/// `cached_input_tokens` comes last, so that readers of the earlier columns by position read on.
const CSV_HEADER: &str = "group,currency,requests,input_tokens,output_tokens,\
                          estimated_requests,cost,cached_input_tokens";

impl UsageReport {
    /// The report of `rows` (the store's sums for `query` grouped by `group_by`), billed under
    /// `granularity`.
    pub fn build(
        query: &UsageQuery,
        group_by: GroupBy,
        granularity: Granularity,
        rows: Vec<UsageRow>,
    ) -> Self {
        let groups = group_usage(&rows);
        let billing = billing_lines(&rows, granularity);
        Self {
            project_id: query.project_id,
            from: query.from,
            to: query.to,
            group_by,
            granularity,
            total: currency_totals(&groups),
            billed_total: billed_totals(&billing),
            groups,
            billing,
        }
    }

    /// The groups as CSV (RFC 4180: CRLF line ends, a field quoted when it holds a comma, a
    /// quote or a line break): a header, then one line per group and currency.
    pub fn to_csv(&self) -> String {
        let lines = self.groups.iter().map(|entry| {
            let usage = &entry.usage;
            format!(
                "{},{},{},{},{},{},{},{}",
                csv_field(&entry.group),
                csv_field(&usage.currency),
                usage.requests,
                usage.input_tokens,
                usage.output_tokens,
                usage.estimated_requests,
                usage.cost,
                usage.cached_input_tokens,
            )
        });
        std::iter::once(CSV_HEADER.to_owned())
            .chain(lines)
            .map(|line| line + "\r\n")
            .collect()
    }
}

/// Reads the sums `query` covers from `store` and builds their report.
pub async fn usage_report(
    store: &dyn UsageStore,
    query: &UsageQuery,
    group_by: GroupBy,
    granularity: Granularity,
) -> Result<UsageReport, StoreError> {
    let rows = store.usage_rows(query, group_by).await?;
    Ok(UsageReport::build(query, group_by, granularity, rows))
}

/// One entry per (group, currency), sorted by both.
fn group_usage(rows: &[UsageRow]) -> Vec<GroupUsage> {
    let mut sums: BTreeMap<(&str, &str), CurrencyUsage> = BTreeMap::new();
    for row in rows {
        sums.entry((&row.group, &row.currency))
            .or_insert_with(|| CurrencyUsage {
                currency: row.currency.clone(),
                ..CurrencyUsage::default()
            })
            .add_row(row);
    }
    sums.into_iter()
        .map(|((group, _), usage)| GroupUsage {
            group: group.to_owned(),
            usage,
        })
        .collect()
}

/// The sums of `groups` per currency, sorted by currency.
fn currency_totals(groups: &[GroupUsage]) -> Vec<CurrencyUsage> {
    let mut totals: BTreeMap<&str, CurrencyUsage> = BTreeMap::new();
    for entry in groups {
        let usage = &entry.usage;
        totals
            .entry(&usage.currency)
            .or_insert_with(|| CurrencyUsage {
                currency: usage.currency.clone(),
                ..CurrencyUsage::default()
            })
            .add(usage);
    }
    totals.into_values().collect()
}

/// What identifies a billing line, in the order lines are listed (plans by ascending size).
type BillingKey<'a> = (&'a str, u8, &'a str, TokenPrices);

/// One line per month, plan, currency and prices over every row, charged under `granularity`.
fn billing_lines(rows: &[UsageRow], granularity: Granularity) -> Vec<BillingLine> {
    let mut tokens: BTreeMap<BillingKey, (ServicePlan, TokenCounts)> = BTreeMap::new();
    for row in rows {
        let key = (
            row.month.as_str(),
            row.plan as u8,
            row.currency.as_str(),
            row.prices(),
        );
        tokens
            .entry(key)
            .and_modify(|(_, counts)| *counts = counts.plus(row.counts()))
            .or_insert((row.plan, row.counts()));
    }
    tokens
        .into_iter()
        .map(
            |((month, _, currency, prices), (plan, counts))| BillingLine {
                plan,
                month: month.to_owned(),
                currency: currency.to_owned(),
                input_price_per_million: prices.input,
                cached_input_price_per_million: prices.cached_input,
                output_price_per_million: prices.output,
                input_tokens: counts.input,
                cached_input_tokens: counts.cached_input,
                output_tokens: counts.output,
                cached_input_amount: granularity
                    .charge(counts.split_input().1, prices.cached_input),
                amount: prices.charge(granularity, &counts),
            },
        )
        .collect()
}

/// The sums of `billing` per currency, sorted by currency.
fn billed_totals(billing: &[BillingLine]) -> Vec<CurrencyAmount> {
    let mut totals: BTreeMap<&str, Decimal> = BTreeMap::new();
    for line in billing {
        *totals.entry(&line.currency).or_default() += line.amount;
    }
    totals
        .into_iter()
        .map(|(currency, amount)| CurrencyAmount {
            currency: currency.to_owned(),
            amount,
        })
        .collect()
}

/// `text` as one CSV field: quoted, inner quotes doubled, when it needs to be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn row(group: &str, month: &str, prices: (&str, &str), tokens: (u64, u64)) -> UsageRow {
        UsageRow {
            group: group.to_owned(),
            plan: ServicePlan::Base,
            month: month.to_owned(),
            currency: "EUR".to_owned(),
            input_price: dec(prices.0),
            cached_input_price: dec(prices.0),
            output_price: dec(prices.1),
            requests: 2,
            input_tokens: tokens.0,
            cached_input_tokens: 0,
            output_tokens: tokens.1,
            estimated_requests: 1,
        }
    }

    fn query() -> UsageQuery {
        UsageQuery {
            project_id: Uuid::nil(),
            from: Some("2026-11-01T00:00:00Z".parse().unwrap()),
            to: None,
        }
    }

    fn build(granularity: Granularity, rows: Vec<UsageRow>) -> UsageReport {
        UsageReport::build(&query(), GroupBy::Model, granularity, rows)
    }

    #[test]
    fn group_by_names_parse_and_print() {
        for group_by in GroupBy::ALL {
            assert_eq!(group_by.as_str().parse::<GroupBy>(), Ok(group_by));
        }
        let error = "week".parse::<GroupBy>().unwrap_err().to_string();
        assert!(error.contains("model, day or key"), "{error}");
    }

    #[test]
    fn rows_of_a_group_sum_up_with_their_exact_cost() {
        let report = build(
            Granularity::Prorated,
            vec![
                row("b-model", "2026-11", ("0.45", "0.65"), (27, 8)),
                row("a-model", "2026-11", ("0.45", "0.65"), (1, 0)),
                row("b-model", "2026-12", ("0.50", "0.70"), (3, 1)),
            ],
        );
        let names: Vec<&str> = report.groups.iter().map(|g| g.group.as_str()).collect();
        assert_eq!(names, ["a-model", "b-model"]);
        let b = &report.groups[1].usage;
        assert_eq!((b.requests, b.input_tokens, b.output_tokens), (4, 30, 9));
        assert_eq!(b.estimated_requests, 2);
        // 27 × 0.45 + 8 × 0.65 + 3 × 0.50 + 1 × 0.70, per million.
        assert_eq!(b.cost, dec("0.00001735") + dec("0.0000022"));
        assert_eq!(report.total.len(), 1);
        assert_eq!(report.total[0].cost, b.cost + dec("0.00000045"));
        assert_eq!(report.total[0].requests, 6);
    }

    #[test]
    fn a_price_change_gives_a_billing_line_per_price() {
        let report = build(
            Granularity::Prorated,
            vec![
                row("a", "2026-12", ("0.45", "0.65"), (1_000_000, 0)),
                row("b", "2026-12", ("0.45", "0.65"), (1_000_000, 2_000_000)),
                row("a", "2026-12", ("0.50", "0.70"), (2_000_000, 1_000_000)),
            ],
        );
        let lines: Vec<_> = report
            .billing
            .iter()
            .map(|l| {
                let prices = (l.input_price_per_million, l.output_price_per_million);
                (prices, l.input_tokens, l.output_tokens, l.amount)
            })
            .collect();
        assert_eq!(
            lines,
            [
                ((dec("0.45"), dec("0.65")), 2_000_000, 2_000_000, dec("2.2")),
                ((dec("0.50"), dec("0.70")), 2_000_000, 1_000_000, dec("1.7")),
            ]
        );
        assert_eq!(report.billed_total[0].amount, dec("3.9"));
        assert_eq!(report.billed_total[0].amount, report.total[0].cost);
    }

    #[test]
    fn billing_lines_cover_every_row_whatever_the_grouping() {
        let rows = vec![
            row("2026-11-30", "2026-11", ("0.45", "0.65"), (600_000, 0)),
            row("2026-11-29", "2026-11", ("0.45", "0.65"), (400_001, 0)),
        ];
        let report = UsageReport::build(&query(), GroupBy::Day, Granularity::Prorated, rows);
        assert_eq!(report.groups.len(), 2);
        assert_eq!(report.billing.len(), 1);
        assert_eq!(report.billing[0].input_tokens, 1_000_001);
    }

    #[test]
    fn per_started_million_charges_every_started_million_whole() {
        let rows = vec![
            row("a", "2026-11", ("0.45", "0.65"), (500_000, 1)),
            row("b", "2026-11", ("0.45", "0.65"), (500_001, 0)),
        ];
        let report = build(Granularity::PerStartedMillion, rows.clone());
        assert_eq!(report.billing.len(), 1);
        assert_eq!(report.billing[0].amount, dec("0.90") + dec("0.65"));
        assert_eq!(report.billed_total[0].amount, dec("1.55"));
        assert_eq!(report.total[0].cost, dec("0.45000045") + dec("0.00000065"));
        let prorated = build(Granularity::Prorated, rows);
        assert_eq!(prorated.billed_total[0].amount, prorated.total[0].cost);
    }

    #[test]
    fn currencies_and_plans_are_kept_apart() {
        let mut usd = row("a", "2026-11", ("1", "1"), (1_000_000, 0));
        usd.currency = "USD".to_owned();
        let mut plus = row("a", "2026-11", ("1", "1"), (1_000_000, 0));
        plus.plan = ServicePlan::Plus;
        let report = build(
            Granularity::Prorated,
            vec![usd, plus, row("a", "2026-11", ("1", "1"), (1_000_000, 0))],
        );
        let groups: Vec<_> = report
            .groups
            .iter()
            .map(|g| (g.usage.currency.as_str(), g.usage.cost))
            .collect();
        assert_eq!(groups, [("EUR", dec("2")), ("USD", dec("1"))]);
        let plans: Vec<_> = report
            .billing
            .iter()
            .map(|l| (l.plan, &*l.currency))
            .collect();
        assert_eq!(
            plans,
            [
                (ServicePlan::Base, "EUR"),
                (ServicePlan::Base, "USD"),
                (ServicePlan::Plus, "EUR")
            ]
        );
        assert_eq!(report.billed_total.len(), 2);
    }

    #[test]
    fn json_is_camel_case_with_decimal_strings() {
        let report = build(
            Granularity::PerStartedMillion,
            vec![row("a", "2026-11", ("0.45", "0.65"), (1, 0))],
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["projectId"], Uuid::nil().to_string());
        assert_eq!(json["from"], "2026-11-01T00:00:00Z");
        assert_eq!(json["to"], serde_json::Value::Null);
        assert_eq!(json["groupBy"], "model");
        assert_eq!(json["granularity"], "per_started_million");
        let group = &json["groups"][0];
        assert_eq!(group["group"], "a");
        assert_eq!(group["inputTokens"], 1);
        assert_eq!(group["estimatedRequests"], 1);
        assert_eq!(group["cost"], "0.00000045");
        assert_eq!(json["billing"][0]["inputPricePerMillion"], "0.45");
        assert_eq!(json["billing"][0]["plan"], "base");
        assert_eq!(json["billedTotal"][0]["amount"], "0.45");
        assert!(json["total"][0].get("group").is_none());
    }

    #[test]
    fn csv_quotes_fields_that_need_it() {
        let report = build(
            Granularity::Prorated,
            vec![
                row("plain", "2026-11", ("0.45", "0.65"), (1, 0)),
                row("a,\"b\"", "2026-11", ("0.45", "0.65"), (0, 1)),
                row("two\nlines", "2026-11", ("0.45", "0.65"), (0, 0)),
            ],
        );
        assert_eq!(
            report.to_csv(),
            "group,currency,requests,input_tokens,output_tokens,estimated_requests,cost,\
             cached_input_tokens\r\n\
             \"a,\"\"b\"\"\",EUR,2,0,1,1,0.00000065,0\r\n\
             plain,EUR,2,1,0,1,0.00000045,0\r\n\
             \"two\nlines\",EUR,2,0,0,1,0,0\r\n"
        );
    }

    #[test]
    fn cached_input_is_billed_on_its_own_at_its_price() {
        let mut cached = row("a", "2026-11", ("0.45", "0.65"), (1_500_000, 10));
        cached.cached_input_price = dec("0.045");
        cached.cached_input_tokens = 1_000_001;
        let rows = vec![cached.clone(), cached];
        let report = build(Granularity::Prorated, rows.clone());
        let group = &report.groups[0].usage;
        assert_eq!(group.input_tokens, 3_000_000);
        assert_eq!(group.cached_input_tokens, 2_000_002);
        // 999,998 × 0.45 + 2,000,002 × 0.045 + 20 × 0.65, per million.
        assert_eq!(group.cost, dec("0.54001219"));
        let line = &report.billing[0];
        assert_eq!(line.cached_input_price_per_million, dec("0.045"));
        assert_eq!(line.cached_input_tokens, 2_000_002);
        assert_eq!(line.cached_input_amount, dec("0.09000009"));
        assert_eq!(line.amount, group.cost);

        let blocks = build(Granularity::PerStartedMillion, rows);
        let line = &blocks.billing[0];
        // Started millions: 1 of computed input, 3 of cached input, 1 of output.
        assert_eq!(line.cached_input_amount, dec("0.135"));
        assert_eq!(line.amount, dec("0.45") + dec("0.135") + dec("0.65"));
        let json = serde_json::to_value(&blocks).unwrap();
        assert_eq!(json["billing"][0]["cachedInputPricePerMillion"], "0.045");
        assert_eq!(json["billing"][0]["cachedInputTokens"], 2_000_002);
        assert_eq!(json["billing"][0]["cachedInputAmount"], "0.135");
        assert_eq!(json["groups"][0]["cachedInputTokens"], 2_000_002);
    }
}
