//! Prices a request and runs it past a budget with `gateway-metering` alone: `bill INPUT
//! OUTPUT [REQUESTS]` prices INPUT prompt and OUTPUT generated tokens on the Base plan at 0.45
//! and 0.65 EUR per million, shows what per-started-million billing makes of them, then admits
//! REQUESTS (default 5) such requests against a budget of 3 requests and 10,000 tokens a
//! minute with a 10 % burst, settling each with its real count. Prints one JSON object per
//! line.

use std::collections::HashMap;
use std::str::FromStr;

use gateway_core::ServicePlan;
use gateway_metering::{
    Granularity, LimitPolicy, LocalLimiter, PerMinute, Price, PriceSheet, RateLimiter, TokenCounts,
};
use rust_decimal::Decimal;
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bill INPUT_TOKENS OUTPUT_TOKENS [REQUESTS]";
    let input: u64 = args.next().ok_or(usage)?.parse()?;
    let output: u64 = args.next().ok_or(usage)?.parse()?;
    let requests: u64 = args.next().map_or(Ok(5), |text| text.parse())?;

    let sheet = PriceSheet::new(vec![Price {
        plan: ServicePlan::Base,
        effective_from: "2026-01-01T00:00:00Z".parse()?,
        currency: "EUR".to_owned(),
        input_per_million: Decimal::from_str("0.45")?,
        cached_input_per_million: Decimal::from_str("0.45")?,
        output_per_million: Decimal::from_str("0.65")?,
    }])?;
    let price = sheet
        .at(ServicePlan::Base, chrono::Utc::now())
        .ok_or("no price today")?;
    let counts = TokenCounts {
        input,
        cached_input: 0,
        output,
        exact: true,
    };
    let per_block = price
        .per_million()
        .charge(Granularity::PerStartedMillion, &counts);
    let priced = json!({
        "cost": price.cost(&counts).to_string(),
        "perStartedMillion": per_block.to_string(),
        "currency": price.currency,
    });
    println!("{priced}");

    let limits = PerMinute {
        requests: 3,
        tokens: 10_000,
    };
    let policy = LimitPolicy::new(HashMap::from([(ServicePlan::Base, limits)]), 10, 5);
    let project = uuid::Uuid::new_v4();
    let quota = policy.quota(project, "demo", ServicePlan::Base);
    let limiter = LocalLimiter::new();
    let weighted = policy.weighted_tokens(input, output);
    for request in 1..=requests {
        let admission = limiter.admit("demo", quota, weighted).await?;
        if admission.admitted {
            limiter.settle("demo", quota, weighted, weighted).await?;
        }
        let line = json!({
            "request": request,
            "admitted": admission.admitted,
            "remainingRequests": admission.requests.remaining,
            "remainingTokens": admission.tokens.remaining,
            "retryAfterMs": admission.retry_after.map(|wait| wait.as_millis() as u64),
        });
        println!("{line}");
    }
    Ok(())
}
