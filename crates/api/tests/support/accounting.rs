//! The metering of the router tests and the scripted server: the real usage tables in the
//! test's SQLite file, a journal beside it, budgets in process, one dated price per plan.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use gateway_api::Accounting;
use gateway_core::ServicePlan;
use gateway_metering::journal::UsageJournal;
use gateway_metering::{Granularity, LimitPolicy, LocalLimiter, PerMinute, Price, PriceSheet};
use rust_decimal::Decimal;

/// Prices of the tests: 0.45 EUR per million input tokens (0.045 when taken from a prompt
/// cache) and 0.65 per million output tokens on every plan, since 2026-01-01.
pub fn test_prices() -> PriceSheet {
    let from = "2026-01-01T00:00:00Z".parse().unwrap_or_default();
    let prices = [ServicePlan::Base, ServicePlan::Plus, ServicePlan::Premium]
        .into_iter()
        .map(|plan| Price {
            plan,
            effective_from: from,
            currency: "EUR".to_owned(),
            input_per_million: Decimal::new(45, 2),
            cached_input_per_million: Decimal::new(45, 3),
            output_per_million: Decimal::new(65, 2),
        })
        .collect();
    PriceSheet::new(prices).unwrap_or_default()
}

/// Every plan with `limits`, a 10 % burst and generated tokens weighing 5.
pub fn test_policy(limits: PerMinute) -> LimitPolicy {
    let plans = [ServicePlan::Base, ServicePlan::Plus, ServicePlan::Premium]
        .into_iter()
        .map(|plan| (plan, limits))
        .collect::<HashMap<_, _>>();
    LimitPolicy::new(plans, 10, 5)
}

/// Metering on the database at `url`, journaling under `dir`.
pub async fn accounting(
    url: &str,
    dir: &Path,
    policy: LimitPolicy,
) -> Result<Arc<Accounting>, Box<dyn std::error::Error>> {
    let usage = gateway_metering::store::open(url).await?;
    let journal = UsageJournal::open(&dir.join("usage-journal"), Arc::clone(&usage)).await?;
    Ok(Arc::new(Accounting {
        prices: test_prices(),
        granularity: Granularity::Prorated,
        policy: Arc::new(policy),
        limiter: Arc::new(LocalLimiter::new()),
        journal: Arc::new(journal),
        usage,
        cost_header: true,
    }))
}

/// Generous limits, for tests about something else.
pub const GENEROUS: PerMinute = PerMinute {
    requests: 100_000,
    tokens: 100_000_000,
};
