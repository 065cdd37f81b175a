//! [`UsageRecord`]: what one request that reached a model used and cost. It holds counts, ids
//! and prices only: never a prompt, a completion or an address.

use chrono::{DateTime, Utc};
use gateway_core::ServicePlan;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::price::Price;

/// How a request that reached a model ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The client received the whole answer.
    Complete,
    /// The client went away before the end; billed for what was generated.
    Cancelled,
    /// The model failed after it started.
    Failed,
}

impl Outcome {
    /// The name stored and reported.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    /// The outcome a stored name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Complete, Self::Cancelled, Self::Failed]
            .into_iter()
            .find(|outcome| outcome.as_str() == name)
    }
}

/// The usage of one request that reached a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Unique id; writing the same record twice keeps one.
    pub id: Uuid,
    /// When the request ended.
    pub time: DateTime<Utc>,
    /// The project billed.
    pub project_id: Uuid,
    /// The API key that made the request.
    pub key_id: Uuid,
    /// The model id the client sent.
    pub model: String,
    /// The model's service plan.
    pub plan: ServicePlan,
    /// Input (prompt) tokens, as the backend counted them (the cached ones included).
    pub input_tokens: u64,
    /// Of the input tokens, those the backend took from its prompt cache (at most
    /// `input_tokens`); 0 in records written before caching was metered.
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Output (generated) tokens; 0 for embeddings.
    pub output_tokens: u64,
    /// Whether the backend counted the tokens exactly (false: estimated).
    pub exact: bool,
    /// Currency of the prices and the cost.
    pub currency: String,
    /// Price of 1 million input tokens when the request ended.
    pub input_price: Decimal,
    /// Price of 1 million cached input tokens when the request ended (a journal line written
    /// before caching was metered is read with its input price).
    pub cached_input_price: Decimal,
    /// Price of 1 million output tokens when the request ended.
    pub output_price: Decimal,
    /// `(input_tokens − cached_input_tokens) × input_price / 10^6 + cached_input_tokens ×
    /// cached_input_price / 10^6 + output_tokens × output_price / 10^6`, exactly.
    pub cost: Decimal,
    /// The request id the client was given.
    pub request_id: String,
    /// How the request ended.
    pub outcome: Outcome,
}

/// Who made a request and on what, for its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// The project billed.
    pub project_id: Uuid,
    /// The key used.
    pub key_id: Uuid,
    /// The model id the client sent.
    pub model: String,
    /// The request id the client was given.
    pub request_id: String,
}

/// The counts of a request, as its backend reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCounts {
    /// Input tokens (the cached ones included).
    pub input: u64,
    /// Of the input tokens, those the backend took from its prompt cache.
    pub cached_input: u64,
    /// Output tokens.
    pub output: u64,
    /// Whether the counts are exact.
    pub exact: bool,
}

impl TokenCounts {
    /// The input tokens the model computed and those it took from its cache, which are at
    /// most all of them.
    pub fn split_input(&self) -> (u64, u64) {
        let cached = self.cached_input.min(self.input);
        (self.input - cached, cached)
    }

    /// The counts of two requests (or parts) together; exact when both are.
    pub fn plus(self, other: Self) -> Self {
        Self {
            input: self.input + other.input,
            cached_input: self.cached_input + other.cached_input,
            output: self.output + other.output,
            exact: self.exact && other.exact,
        }
    }
}

impl UsageRecord {
    /// The record of a request by `requester` that ended at `time` with `counts`, priced at
    /// `price`.
    pub fn new(
        requester: Requester,
        time: DateTime<Utc>,
        price: &Price,
        counts: TokenCounts,
        outcome: Outcome,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            time,
            project_id: requester.project_id,
            key_id: requester.key_id,
            model: requester.model,
            plan: price.plan,
            input_tokens: counts.input,
            cached_input_tokens: counts.split_input().1,
            output_tokens: counts.output,
            exact: counts.exact,
            currency: price.currency.clone(),
            input_price: price.input_per_million,
            cached_input_price: price.cached_input_per_million,
            output_price: price.output_per_million,
            cost: price.cost(&counts),
            request_id: requester.request_id,
            outcome,
        }
    }
}
