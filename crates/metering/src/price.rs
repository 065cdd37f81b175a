//! Service plans' prices and what usage costs: a [`PriceSheet`] of dated prices per plan, the
//! prices of each kind of token ([`TokenPrices`]: input, input from a prompt cache, output) and
//! the two ways of billing tokens ([`Granularity`]). Money is [`Decimal`], exact.

use chrono::{DateTime, Utc};
use gateway_core::ServicePlan;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::record::TokenCounts;

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
    /// Price of 1 million input tokens that the backend took from its prompt cache.
    pub cached_input_per_million: Decimal,
    /// Price of 1 million output (generated) tokens.
    pub output_per_million: Decimal,
}

impl Price {
    /// The prices of each kind of token.
    pub fn per_million(&self) -> TokenPrices {
        TokenPrices {
            input: self.input_per_million,
            cached_input: self.cached_input_per_million,
            output: self.output_per_million,
        }
    }

    /// The exact cost of `counts` at this price.
    pub fn cost(&self, counts: &TokenCounts) -> Decimal {
        self.per_million().charge(Granularity::Prorated, counts)
    }
}

/// The prices of 1 million tokens of each kind a request is billed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenPrices {
    /// Input tokens the model computed.
    pub input: Decimal,
    /// Input tokens taken from the backend's prompt cache.
    pub cached_input: Decimal,
    /// Output tokens.
    pub output: Decimal,
}

impl TokenPrices {
    /// What `counts` cost under `granularity`: the input tokens not from the cache at the
    /// input price, the cached ones at the cached-input price and the output tokens at the
    /// output price, each kind charged on its own.
    pub fn charge(&self, granularity: Granularity, counts: &TokenCounts) -> Decimal {
        let (computed, cached) = counts.split_input();
        granularity.charge(computed, self.input)
            + granularity.charge(cached, self.cached_input)
            + granularity.charge(counts.output, self.output)
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
    /// and month (input, cached input and output counted separately).
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
    #[error("the {plan:?} {kind} price from {from} is negative")]
    Negative {
        /// Which of the plan's prices: `input`, `cached input` or `output`.
        kind: &'static str,
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
    /// A sheet of `prices`, checked: no negative price (input, cached input or output), one
    /// price per plan and date, ISO currency codes.
    pub fn new(mut prices: Vec<Price>) -> Result<Self, PriceError> {
        for price in &prices {
            let kinds = [
                ("input", price.input_per_million),
                ("cached input", price.cached_input_per_million),
                ("output", price.output_per_million),
            ];
            if let Some((kind, _)) = kinds
                .into_iter()
                .find(|(_, per_million)| per_million.is_sign_negative())
            {
                return Err(PriceError::Negative {
                    kind,
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

    /// A price whose cached input costs as much as other input.
    fn price(plan: ServicePlan, from: &str, input: &str, output: &str) -> Price {
        Price {
            plan,
            effective_from: from.parse().unwrap(),
            currency: "EUR".to_owned(),
            input_per_million: Decimal::from_str(input).unwrap(),
            cached_input_per_million: Decimal::from_str(input).unwrap(),
            output_per_million: Decimal::from_str(output).unwrap(),
        }
    }

    fn counts(input: u64, cached_input: u64, output: u64) -> TokenCounts {
        TokenCounts {
            input,
            cached_input,
            output,
            exact: true,
        }
    }

    #[test]
    fn cost_is_tokens_times_price_over_a_million_exactly() {
        let price = price(ServicePlan::Base, "2026-01-01T00:00:00Z", "0.45", "0.65");
        assert_eq!(price.cost(&counts(1, 0, 0)).to_string(), "0.00000045");
        assert_eq!(price.cost(&counts(27, 0, 8)).to_string(), "0.00001735");
        assert_eq!(
            price.cost(&counts(3_000_000, 0, 1)).to_string(),
            "1.35000065"
        );
        assert_eq!(
            price.cost(&counts(27, 20, 8)),
            price.cost(&counts(27, 0, 8)),
            "without a discount the cache changes nothing"
        );
    }

    #[test]
    fn cached_input_is_charged_at_its_own_price() {
        let price = Price {
            cached_input_per_million: Decimal::from_str("0.045").unwrap(),
            ..price(ServicePlan::Base, "2026-01-01T00:00:00Z", "0.45", "0.65")
        };
        // (1,000 − 600) × 0.45 + 600 × 0.045 + 10 × 0.65, per million.
        assert_eq!(price.cost(&counts(1_000, 600, 10)).to_string(), "0.0002135");
        assert_eq!(
            price.cost(&counts(3_000_000, 3_000_000, 0)).to_string(),
            "0.135"
        );
        // More cached than input (a backend's slip) counts as all input cached.
        assert_eq!(
            price.cost(&counts(100, 250, 0)),
            price.cost(&counts(100, 100, 0))
        );
        let blocks = price
            .per_million()
            .charge(Granularity::PerStartedMillion, &counts(1_000_001, 1, 1));
        // One started million of computed input, one of cached input, one of output.
        assert_eq!(blocks, Decimal::from_str("1.145").unwrap());
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
            Err(PriceError::Negative { kind: "input", .. })
        ));
        let cached = Price {
            cached_input_per_million: Decimal::from_str("-0.01").unwrap(),
            ..price(ServicePlan::Base, "2026-01-01T00:00:00Z", "1", "1")
        };
        let error = PriceSheet::new(vec![cached]).unwrap_err();
        assert!(
            matches!(
                error,
                PriceError::Negative {
                    kind: "cached input",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.to_string().contains("cached input price"), "{error}");
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
