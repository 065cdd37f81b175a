//! Service plans' prices and what usage costs: a [`PriceSheet`] of dated prices per plan, and
//! the two ways of billing tokens ([`Granularity`]). Money is [`Decimal`], exact.

use chrono::{DateTime, Utc};
use gateway_core::ServicePlan;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Tokens that one price is given per.
pub const TOKENS_PER_PRICE_UNIT: u64 = 1_000_000;

/// The prices of one plan from a date on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// The plan priced.
    pub plan: ServicePlan,
    /// From when the price applies (inclusive); it applies until the plan's next price.
    pub effective_from: DateTime<Utc>,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// Price of 1 million input (prompt) tokens.
    pub input_per_million: Decimal,
    /// Price of 1 million output (generated) tokens.
    pub output_per_million: Decimal,
}

impl Price {
    /// The exact cost of `input` and `output` tokens at this price.
    pub fn cost(&self, input: u64, output: u64) -> Decimal {
        prorated(input, self.input_per_million) + prorated(output, self.output_per_million)
    }
}

/// `tokens` × `per_million` / 1,000,000, exactly.
pub fn prorated(tokens: u64, per_million: Decimal) -> Decimal {
    (Decimal::from(tokens) * per_million / Decimal::from(TOKENS_PER_PRICE_UNIT)).normalize()
}

/// `per_million` for every started block of 1 million tokens.
pub fn per_started_block(tokens: u64, per_million: Decimal) -> Decimal {
    Decimal::from(tokens.div_ceil(TOKENS_PER_PRICE_UNIT)) * per_million
}

/// How a plan's monthly tokens are billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// Every token at its exact share of the price per million.
    #[default]
    Prorated,
    /// The price per million for every started block of 1 million tokens, per plan, price
    /// and month (input and output counted separately).
    PerStartedMillion,
}

impl Granularity {
    /// What `tokens` cost at `per_million` under this granularity.
    pub fn charge(self, tokens: u64, per_million: Decimal) -> Decimal {
        match self {
            Self::Prorated => prorated(tokens, per_million),
            Self::PerStartedMillion => per_started_block(tokens, per_million),
        }
    }
}

/// A price sheet is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// A price is negative.
    #[error("the {plan:?} price from {from} is negative")]
    Negative {
        /// Its plan.
        plan: ServicePlan,
        /// Its date.
        from: DateTime<Utc>,
    },
    /// Two prices of a plan start at the same time.
    #[error("the {plan:?} plan has two prices from {from}")]
    Duplicate {
        /// Their plan.
        plan: ServicePlan,
        /// Their date.
        from: DateTime<Utc>,
    },
    /// A currency is not three upper-case letters.
    #[error("currency {0:?} is not an ISO 4217 code")]
    Currency(String),
}

/// Every plan's prices over time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceSheet {
    /// Sorted by plan, then date.
    prices: Vec<Price>,
}

impl PriceSheet {
    /// A sheet of `prices`, checked: no negative price, one price per plan and date, ISO
    /// currency codes.
    pub fn new(mut prices: Vec<Price>) -> Result<Self, PriceError> {
        for price in &prices {
            if price.input_per_million.is_sign_negative()
                || price.output_per_million.is_sign_negative()
            {
                return Err(PriceError::Negative {
                    plan: price.plan,
                    from: price.effective_from,
                });
            }
            let code = price.currency.as_bytes();
            if code.len() != 3 || !code.iter().all(u8::is_ascii_uppercase) {
                return Err(PriceError::Currency(price.currency.clone()));
            }
        }
        prices.sort_by_key(|price| (plan_rank(price.plan), price.effective_from));
        if let Some(pair) = prices.windows(2).find(|pair| {
            pair[0].plan == pair[1].plan && pair[0].effective_from == pair[1].effective_from
        }) {
            return Err(PriceError::Duplicate {
                plan: pair[0].plan,
                from: pair[0].effective_from,
            });
        }
        Ok(Self { prices })
    }

    /// The price of `plan` at `time`: its latest price that started at or before then.
    pub fn at(&self, plan: ServicePlan, time: DateTime<Utc>) -> Option<&Price> {
        self.prices
            .iter()
            .rev()
            .find(|price| price.plan == plan && price.effective_from <= time)
    }

    /// Every price, by plan and date.
    pub fn prices(&self) -> &[Price] {
        &self.prices
    }
}

fn plan_rank(plan: ServicePlan) -> u8 {
    match plan {
        ServicePlan::Base => 0,
        ServicePlan::Plus => 1,
        ServicePlan::Premium => 2,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::str::FromStr;

    use super::*;

    fn price(plan: ServicePlan, from: &str, input: &str, output: &str) -> Price {
        Price {
            plan,
            effective_from: from.parse().unwrap(),
            currency: "EUR".to_owned(),
            input_per_million: Decimal::from_str(input).unwrap(),
            output_per_million: Decimal::from_str(output).unwrap(),
        }
    }

    #[test]
    fn cost_is_tokens_times_price_over_a_million_exactly() {
        let price = price(ServicePlan::Base, "2026-01-01T00:00:00Z", "0.45", "0.65");
        assert_eq!(price.cost(1, 0).to_string(), "0.00000045");
        assert_eq!(price.cost(27, 8).to_string(), "0.00001735");
        assert_eq!(price.cost(3_000_000, 1).to_string(), "1.35000065");
    }

    #[test]
    fn the_price_at_a_time_is_the_latest_that_started() {
        let sheet = PriceSheet::new(vec![
            price(ServicePlan::Base, "2026-12-01T00:00:00Z", "0.50", "0.70"),
            price(ServicePlan::Base, "2026-01-01T00:00:00Z", "0.45", "0.65"),
            price(ServicePlan::Plus, "2026-01-01T00:00:00Z", "1", "2"),
        ])
        .unwrap();
        let at = |plan, time: &str| sheet.at(plan, time.parse().unwrap()).cloned();
        let november = at(ServicePlan::Base, "2026-11-30T23:59:59Z").unwrap();
        assert_eq!(november.input_per_million.to_string(), "0.45");
        let december = at(ServicePlan::Base, "2026-12-01T00:00:00Z").unwrap();
        assert_eq!(december.input_per_million.to_string(), "0.50");
        assert!(at(ServicePlan::Base, "2025-12-31T00:00:00Z").is_none());
        assert!(at(ServicePlan::Premium, "2026-12-31T00:00:00Z").is_none());
    }

    #[test]
    fn bad_sheets_are_refused() {
        let negative = price(ServicePlan::Base, "2026-01-01T00:00:00Z", "-1", "0");
        assert!(matches!(
            PriceSheet::new(vec![negative]),
            Err(PriceError::Negative { .. })
        ));
        let twice = price(ServicePlan::Base, "2026-01-01T00:00:00Z", "1", "1");
        assert!(matches!(
            PriceSheet::new(vec![twice.clone(), twice.clone()]),
            Err(PriceError::Duplicate { .. })
        ));
        let euro = Price {
            currency: "euro".to_owned(),
            ..twice
        };
        assert!(matches!(
            PriceSheet::new(vec![euro]),
            Err(PriceError::Currency(_))
        ));
    }

    #[test]
    fn per_started_block_rounds_each_million_up() {
        let per_million = Decimal::from_str("0.45").unwrap();
        let blocks = Granularity::PerStartedMillion;
        assert_eq!(blocks.charge(0, per_million), Decimal::ZERO);
        assert_eq!(blocks.charge(1, per_million).to_string(), "0.45");
        assert_eq!(blocks.charge(1_000_000, per_million).to_string(), "0.45");
        assert_eq!(blocks.charge(1_000_001, per_million).to_string(), "0.90");
        let exact = Granularity::Prorated;
        assert_eq!(
            exact.charge(1_000_001, per_million).to_string(),
            "0.45000045"
        );
    }
}
