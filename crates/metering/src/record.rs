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
    /// Input (prompt) tokens, as the backend counted them.
    pub input_tokens: u64,
    /// Output (generated) tokens; 0 for embeddings.
    pub output_tokens: u64,
    /// Whether the backend counted the tokens exactly (false: estimated).
    pub exact: bool,
    /// Currency of the prices and the cost.
    pub currency: String,
    /// Price of 1 million input tokens when the request ended.
    pub input_price: Decimal,
    /// Price of 1 million output tokens when the request ended.
    pub output_price: Decimal,
    /// `input_tokens × input_price / 10^6 + output_tokens × output_price / 10^6`, exactly.
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
    /// Input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Whether the counts are exact.
    pub exact: bool,
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
            output_tokens: counts.output,
            exact: counts.exact,
            currency: price.currency.clone(),
            input_price: price.input_per_million,
            output_price: price.output_per_million,
            cost: price.cost(counts.input, counts.output),
            request_id: requester.request_id,
            outcome,
        }
    }
}
