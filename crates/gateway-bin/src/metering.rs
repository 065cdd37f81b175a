//! The `[metering]` and `[limits]` sections of the configuration, and the metering they build
//! for `serve`: the price sheet, the limit policy with its overrides refreshed from the
//! database, the rate limiter (in process, or Redis for several replicas), and the usage
//! journal with its writer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use gateway_api::Accounting;
use gateway_core::ServicePlan;
use gateway_metering::journal::UsageJournal;
use gateway_metering::{
    Granularity, LimitPolicy, LocalLimiter, PerMinute, Price, PriceSheet, RateLimiter,
    SharedLimiter, UsageStore, WhenUnavailable,
};
use rust_decimal::Decimal;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::config::Config;

/// `[metering]`: prices, how they are billed, the cost header and the journal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringConfig {
    /// `prorated` (every token at its share, the default) or `per_started_million`.
    pub granularity: Granularity,
    /// Whether whole answers carry `x-request-cost`.
    pub cost_header: bool,
    /// Directory of the usage journal; default `usage-journal` in the data directory.
    pub journal_dir: Option<PathBuf>,
    /// Every plan's prices; the defaults when empty.
    pub prices: Vec<PriceConfig>,
}

impl Default for MeteringConfig {
    fn default() -> Self {
        Self {
            granularity: Granularity::Prorated,
            cost_header: false,
            journal_dir: None,
            prices: Vec::new(),
        }
    }
}

/// One `[[metering.prices]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// `base`, `plus` or `premium`.
    pub plan: ServicePlan,
    /// From when it applies: a UTC date (`2026-01-01`) or an RFC 3339 time.
    pub from: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Price of 1 million input tokens (a string such as `"0.45"` keeps it exact).
    pub input_per_million: Decimal,
    /// Price of 1 million input tokens that the backend took from its prompt cache; the
    /// input price when absent (no discount).
    #[serde(default)]
    pub cached_input_per_million: Option<Decimal>,
    /// Price of 1 million output tokens.
    pub output_per_million: Decimal,
}

/// The prices that apply when the configuration names none (EUR, from 2026-01-01).
const DEFAULT_PRICES: [(ServicePlan, i64, i64); 3] = [
    (ServicePlan::Base, 45, 65),
    (ServicePlan::Plus, 90, 130),
    (ServicePlan::Premium, 180, 260),
];

/// `[limits]`: the per-minute limits of each plan, the burst and the weight of generated
/// tokens, and where the budgets live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Percent of a minute's rate an idle budget holds on top.
    pub burst_percent: u64,
    /// How many tokens of the budget one generated token counts for.
    pub output_weight: u64,
    /// Redis URL of budgets shared by replicas; `GATEWAY_REDIS_URL` overrides it. Without
    /// it each process keeps its own.
    pub redis_url: Option<String>,
    /// Prefix of the gateway's Redis keys.
    pub redis_prefix: String,
    /// What admission does while Redis cannot be reached: `open` (each replica limits alone)
    /// or `closed` (requests refused with 503).
    pub redis_unavailable: WhenUnavailable,
    /// Limits of the Base plan.
    pub base: PlanLimitsConfig,
    /// Limits of the Plus plan.
    pub plus: PlanLimitsConfig,
    /// Limits of the Premium plan.
    pub premium: PlanLimitsConfig,
}

/// Requests and tokens per minute of a plan, for each project and model.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanLimitsConfig {
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Tokens per minute.
    pub tokens_per_minute: u64,
}

impl PlanLimitsConfig {
    const fn new(requests_per_minute: u64, tokens_per_minute: u64) -> Self {
        Self {
            requests_per_minute,
            tokens_per_minute,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            burst_percent: 10,
            output_weight: 5,
            redis_url: None,
            redis_prefix: "gateway:rl:".to_owned(),
            redis_unavailable: WhenUnavailable::Open,
            base: PlanLimitsConfig::new(600, 1_000_000),
            plus: PlanLimitsConfig::new(300, 600_000),
            premium: PlanLimitsConfig::new(120, 400_000),
        }
    }
}

impl LimitsConfig {
    fn policy(&self) -> LimitPolicy {
        let plans = [
            (ServicePlan::Base, self.base),
            (ServicePlan::Plus, self.plus),
            (ServicePlan::Premium, self.premium),
        ]
        .into_iter()
        .map(|(plan, limits)| {
            let per_minute = PerMinute {
                requests: limits.requests_per_minute,
                tokens: limits.tokens_per_minute,
            };
            (plan, per_minute)
        })
        .collect::<HashMap<_, _>>();
        LimitPolicy::new(plans, self.burst_percent, self.output_weight)
    }
}

/// The price sheet the configuration names (or the defaults).
pub fn price_sheet(config: &MeteringConfig) -> anyhow::Result<PriceSheet> {
    let prices = if config.prices.is_empty() {
        default_prices()
    } else {
        config
            .prices
            .iter()
            .map(configured_price)
            .collect::<anyhow::Result<_>>()?
    };
    PriceSheet::new(prices).context("invalid [[metering.prices]]")
}

fn configured_price(price: &PriceConfig) -> anyhow::Result<Price> {
    Ok(Price {
        plan: price.plan,
        effective_from: parse_time(&price.from).context("invalid price date")?,
        currency: price.currency.clone(),
        input_per_million: price.input_per_million,
        cached_input_per_million: price
            .cached_input_per_million
            .unwrap_or(price.input_per_million),
        output_per_million: price.output_per_million,
    })
}

fn default_prices() -> Vec<Price> {
    let from = NaiveDate::from_ymd_opt(2026, 1, 1)
        .and_then(gateway_core::time::midnight)
        .unwrap_or_default();
    DEFAULT_PRICES
        .into_iter()
        .map(|(plan, input_cents, output_cents)| Price {
            plan,
            effective_from: from,
            currency: "EUR".to_owned(),
            input_per_million: Decimal::new(input_cents, 2),
            cached_input_per_million: Decimal::new(input_cents, 2),
            output_per_million: Decimal::new(output_cents, 2),
        })
        .collect()
}

/// A time given as a UTC date (`2026-01-01`, its midnight) or an RFC 3339 time.
pub fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    gateway_core::time::parse_instant(text)
        .with_context(|| format!("{text:?} is neither a date (2026-01-01) nor RFC 3339"))
}

/// The running metering of `serve` and its background tasks.
pub struct Metering {
    /// What the API uses.
    pub accounting: Arc<Accounting>,
    tasks: Vec<JoinHandle<()>>,
}

impl Metering {
    /// Opens the usage store and journal (replaying what a killed process left), loads the
    /// overrides, connects the limiter and starts the journal writer and override refresher.
    pub async fn start(config: &Config, served_plans: &[ServicePlan]) -> anyhow::Result<Self> {
        let prices = price_sheet(&config.metering)?;
        let now = Utc::now();
        if let Some(plan) = served_plans
            .iter()
            .find(|plan| prices.at(**plan, now).is_none())
        {
            anyhow::bail!("no price for the {plan:?} plan today: add one to [[metering.prices]]");
        }
        let usage = gateway_metering::store::open(&config.database_url())
            .await
            .context("cannot open the usage tables")?;
        let journal_dir = config.metering.journal_dir.clone().map_or_else(
            || config.server.data_dir.join("usage-journal"),
            |dir| config.in_data_dir(&dir),
        );
        let journal = Arc::new(
            UsageJournal::open(&journal_dir, Arc::clone(&usage))
                .await
                .context("cannot open the usage journal")?,
        );
        let policy = Arc::new(config.limits.policy());
        policy.set_overrides(usage.limit_overrides().await?);
        let limiter = limiter(config).await?;
        let tasks = vec![
            tokio::spawn(Arc::clone(&journal).run_writer()),
            tokio::spawn(Arc::clone(&policy).refresh_from(Arc::clone(&usage))),
        ];
        let accounting = Arc::new(Accounting {
            prices,
            granularity: config.metering.granularity,
            policy,
            limiter,
            journal,
            usage,
            cost_header: config.metering.cost_header,
        });
        Ok(Self { accounting, tasks })
    }

    /// Stops the background tasks and moves the last journaled records into the store.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(error) = self.accounting.journal.flush().await {
            tracing::warn!(%error, "usage records stay journaled until the next start");
        }
    }
}

async fn limiter(config: &Config) -> anyhow::Result<Arc<dyn RateLimiter>> {
    let url = std::env::var("GATEWAY_REDIS_URL")
        .ok()
        .or_else(|| config.limits.redis_url.clone());
    let Some(url) = url else {
        return Ok(Arc::new(LocalLimiter::new()));
    };
    let limits = &config.limits;
    let shared = SharedLimiter::start(&url, &limits.redis_prefix, limits.redis_unavailable)
        .await
        .context("invalid rate limit Redis URL")?;
    Ok(Arc::new(shared))
}

/// The usage store for the admin commands.
pub async fn usage_store(config: &Config) -> anyhow::Result<Arc<dyn UsageStore>> {
    gateway_metering::store::open(&config.database_url())
        .await
        .context("cannot open the usage tables")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_default_prices_cover_every_plan() {
        let sheet = price_sheet(&MeteringConfig::default()).unwrap();
        let now = Utc::now();
        for plan in [ServicePlan::Base, ServicePlan::Plus, ServicePlan::Premium] {
            assert_eq!(sheet.at(plan, now).unwrap().currency, "EUR");
        }
    }

    #[test]
    fn configured_prices_are_exact_and_dated() {
        let config: MeteringConfig = toml::from_str(
            r#"
            granularity = "per_started_million"
            [[prices]]
            plan = "base"
            from = "2026-01-01"
            currency = "EUR"
            input_per_million = "0.45"
            output_per_million = "0.65"
            [[prices]]
            plan = "base"
            from = "2026-12-01T00:00:00Z"
            currency = "EUR"
            input_per_million = "0.5"
            output_per_million = "0.7"
            "#,
        )
        .unwrap();
        assert_eq!(config.granularity, Granularity::PerStartedMillion);
        let sheet = price_sheet(&config).unwrap();
        let november = sheet.at(ServicePlan::Base, "2026-11-30T12:00:00Z".parse().unwrap());
        assert_eq!(november.unwrap().input_per_million.to_string(), "0.45");
        assert!(sheet
            .at(ServicePlan::Plus, "2026-11-30T12:00:00Z".parse().unwrap())
            .is_none());
    }

    /// The sheet of one Base price from 2026-01-01 with `extra` lines in its table.
    fn one_price(extra: &str) -> anyhow::Result<PriceSheet> {
        let config: MeteringConfig = toml::from_str(&format!(
            r#"
            [[prices]]
            plan = "base"
            from = "2026-01-01"
            currency = "EUR"
            input_per_million = "0.45"
            output_per_million = "0.65"
            {extra}
            "#
        ))?;
        price_sheet(&config)
    }

    #[test]
    fn the_cached_input_price_is_the_input_price_unless_configured() {
        let at = |sheet: PriceSheet| {
            let price = sheet.at(ServicePlan::Base, "2026-06-01T00:00:00Z".parse().unwrap());
            price.unwrap().cached_input_per_million.to_string()
        };
        assert_eq!(at(one_price("").unwrap()), "0.45");
        assert_eq!(
            at(one_price(r#"cached_input_per_million = "0.045""#).unwrap()),
            "0.045"
        );
        let default = price_sheet(&MeteringConfig::default()).unwrap();
        for price in default.prices() {
            assert_eq!(price.cached_input_per_million, price.input_per_million);
        }
    }

    #[test]
    fn a_negative_cached_input_price_is_refused() {
        let error = one_price(r#"cached_input_per_million = "-0.01""#).unwrap_err();
        let negative = error.downcast_ref::<gateway_metering::PriceError>();
        assert!(
            matches!(
                negative,
                Some(gateway_metering::PriceError::Negative {
                    kind: "cached input",
                    ..
                })
            ),
            "{error:#}"
        );
        assert!(
            format!("{error:#}").contains("cached input price"),
            "{error:#}"
        );
        let typo = one_price(r#"cached_per_million = "0.1""#).unwrap_err();
        assert!(typo.to_string().contains("cached_per_million"), "{typo:#}");
    }

    #[test]
    fn a_bad_date_is_named() {
        let error = parse_time("1st of May").unwrap_err();
        assert!(error.to_string().contains("1st of May"));
    }
}
