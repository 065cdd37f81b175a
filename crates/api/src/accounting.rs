//! Metering of model requests at the HTTP edge: admission against the project's request and
//! token budgets (429 when over), the `x-ratelimit-*` headers on every response to an
//! authenticated model request, the usage record of each request that reached a model, and
//! the settling of its token reservation with the real count.
//!
//! The [`rate_limit_headers`] layer gives each such request a [`MeterSlot`]; the handler
//! names the model's budget in it ([`MeterSlot::aim`]) once it knows the model, and
//! [`Accounting::admit`] leaves the budget's state after admission there. On the way out, the
//! layer writes the headers from that state, or from a look at the budget (nothing taken)
//! when the request was refused before admission (a bad parameter, an unknown model).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response};
use axum::middleware::Next;
use gateway_auth::VerifiedKey;
use gateway_core::ServicePlan;
use gateway_metering::journal::UsageJournal;
use gateway_metering::limit::bucket_key;
use gateway_metering::{
    BucketStatus, Granularity, LimitError, LimitPolicy, Outcome, Price, PriceSheet, Quota,
    RateLimiter, Requester, TokenCounts, UsageRecord, UsageStore,
};
use rust_decimal::Decimal;

use crate::error::ApiError;
use crate::registry::Notice;
use crate::state::AppState;

/// The response header with the cost of a whole answer, when enabled.
pub const COST_HEADER: &str = "x-request-cost";

/// Everything metering needs: prices, budgets, the limiter, the journal and the store.
#[derive(Debug)]
pub struct Accounting {
    /// Every plan's prices over time.
    pub prices: PriceSheet,
    /// How reports bill tokens.
    pub granularity: Granularity,
    /// Plan limits, overrides, burst and the weight of generated tokens.
    pub policy: Arc<LimitPolicy>,
    /// Where the budgets are kept.
    pub limiter: Arc<dyn RateLimiter>,
    /// Where usage records are made durable.
    pub journal: Arc<UsageJournal>,
    /// Where usage records end up, for reports.
    pub usage: Arc<dyn UsageStore>,
    /// Whether whole answers carry [`COST_HEADER`].
    pub cost_header: bool,
}

/// One project's budget on one model.
#[derive(Debug, Clone)]
pub struct Budget {
    key: String,
    quota: Quota,
}

/// What the header layer learns about one request from its handler.
#[derive(Debug, Clone, Default)]
pub struct MeterSlot(Arc<Mutex<SlotState>>);

#[derive(Debug, Default)]
struct SlotState {
    budget: Option<Budget>,
    status: Option<(BucketStatus, BucketStatus)>,
    cost: Option<Decimal>,
    notice: Option<Notice>,
}

impl MeterSlot {
    fn update(&self, change: impl FnOnce(&mut SlotState)) {
        change(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Names the budget the request counts against, once its model is known.
    pub fn aim(&self, budget: Budget) {
        self.update(|state| state.budget = Some(budget));
    }

    /// Names what the response must say about the model's lifecycle.
    pub fn tell(&self, notice: Option<Notice>) {
        self.update(|state| state.notice = notice);
    }

    /// The budget the request was aimed at.
    pub fn budget(&self) -> Option<Budget> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .budget
            .clone()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MeterSlot {
    type Rejection = std::convert::Infallible;

    /// The slot [`rate_limit_headers`] gave the request (a detached one if it gave none).
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().unwrap_or_default())
    }
}

impl Accounting {
    /// The budget of `project` on `model` of `plan`.
    pub fn budget(&self, project: uuid::Uuid, model: &str, plan: ServicePlan) -> Budget {
        Budget {
            key: bucket_key(project, model),
            quota: self.policy.quota(project, model, plan),
        }
    }

    /// What is left of `budget` now, without taking from it.
    pub async fn peek(&self, budget: &Budget) -> Result<(BucketStatus, BucketStatus), LimitError> {
        self.limiter.peek(&budget.key, budget.quota).await
    }

    /// The tokens to reserve for a request with `prompt` prompt tokens that may generate
    /// `output` more: weighted like the settled count, at most what the bucket holds.
    pub fn reservation(&self, budget: &Budget, prompt: u64, output: u64) -> u64 {
        let weighted = self.policy.weighted_tokens(prompt, output);
        weighted.min(budget.quota.tokens.capacity())
    }

    /// Takes one request and `reserve` tokens from `budget`, or refuses with 429. The
    /// admission's state goes into `slot` either way.
    pub async fn admit(
        self: &Arc<Self>,
        slot: &MeterSlot,
        budget: Budget,
        requester: Requester,
        plan: ServicePlan,
        reserve: u64,
    ) -> Result<Ticket, ApiError> {
        let admission = self
            .limiter
            .admit(&budget.key, budget.quota, reserve)
            .await
            .map_err(|error| match error {
                LimitError::Unavailable => ApiError::LimitsUnavailable,
                LimitError::Store(_) => {
                    tracing::error!(%error, "rate limiter failed");
                    ApiError::Internal("the rate limiter")
                }
            })?;
        slot.update(|state| state.status = Some((admission.requests, admission.tokens)));
        if !admission.admitted {
            return Err(rate_limited(
                &requester.model,
                budget.quota,
                reserve,
                admission,
            ));
        }
        Ok(Ticket {
            accounting: Arc::clone(self),
            slot: slot.clone(),
            budget,
            requester: Some(requester),
            plan,
            reserved: reserve,
        })
    }

    /// The price of `plan` now, or a zero price in no currency (`XXX`) when the sheet has
    /// none (the configuration check prevents that for served plans).
    fn price_now(&self, plan: ServicePlan, now: chrono::DateTime<chrono::Utc>) -> Price {
        self.prices.at(plan, now).cloned().unwrap_or(Price {
            plan,
            effective_from: now,
            currency: "XXX".to_owned(),
            input_per_million: Decimal::ZERO,
            cached_input_per_million: Decimal::ZERO,
            output_per_million: Decimal::ZERO,
        })
    }

    fn settle_later(&self, budget: &Budget, reserved: u64, used: u64) {
        let limiter = Arc::clone(&self.limiter);
        let (key, quota) = (budget.key.clone(), budget.quota);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if let Err(error) = limiter.settle(&key, quota, reserved, used).await {
                tracing::warn!(%error, "could not settle a token reservation");
            }
        });
    }
}

/// The 429 of a refused admission, naming the budget that is short.
fn rate_limited(
    model: &str,
    quota: Quota,
    reserve: u64,
    admission: gateway_metering::Admission,
) -> ApiError {
    let (budget, limit, requested) = if admission.requests.remaining == 0 {
        ("requests", quota.requests.per_minute, 1)
    } else {
        ("tokens", quota.tokens.per_minute, reserve)
    };
    ApiError::RateLimited {
        model: model.to_owned(),
        budget,
        limit,
        requested,
        retry_after: admission.retry_after.unwrap_or(Duration::from_secs(60)),
    }
}

/// An admitted request: closing it writes its usage record and settles its reservation;
/// dropping it unclosed (no generation started) gives the whole reservation back.
#[derive(Debug)]
pub struct Ticket {
    accounting: Arc<Accounting>,
    slot: MeterSlot,
    budget: Budget,
    requester: Option<Requester>,
    plan: ServicePlan,
    reserved: u64,
}

impl Ticket {
    /// Records the request's usage (durably, before the caller sends the end of the answer)
    /// and settles the budget with the real count; returns the cost.
    pub fn close(mut self, counts: TokenCounts, outcome: Outcome) -> Decimal {
        let accounting = Arc::clone(&self.accounting);
        let Some(requester) = self.requester.take() else {
            return Decimal::ZERO;
        };
        let now = chrono::Utc::now();
        let price = accounting.price_now(self.plan, now);
        let record = UsageRecord::new(requester, now, &price, counts, outcome);
        if let Err(error) = accounting.journal.append(&record) {
            tracing::error!(%error, request_id = %record.request_id, "usage record not journaled");
        }
        let used = accounting
            .policy
            .weighted_tokens(counts.input, counts.output);
        accounting.settle_later(&self.budget, self.reserved, used);
        self.slot.update(|state| state.cost = Some(record.cost));
        record.cost
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.requester.is_some() {
            self.accounting.settle_later(&self.budget, self.reserved, 0);
        }
    }
}

/// Gives every request with a model API key a [`MeterSlot`] and writes the `x-ratelimit-*`
/// headers (and the cost header, when enabled, and the model's lifecycle notice) on its
/// response.
pub async fn rate_limit_headers(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response<Body> {
    let Some(key) = request.extensions().get::<VerifiedKey>().cloned() else {
        return next.run(request).await;
    };
    let slot = MeterSlot::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    let accounting = &state.accounting;
    let (budget, status, cost, notice) = {
        let mut slot = slot.0.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut *slot;
        (
            slot.budget.take(),
            slot.status.take(),
            slot.cost.take(),
            slot.notice.take(),
        )
    };
    if let Some(notice) = notice {
        notice.write(response.headers_mut());
    }
    let status = match status {
        Some(status) => Some(status),
        None => {
            let budget = budget.unwrap_or_else(|| project_budget(accounting, &key));
            look_at(accounting, &budget).await
        }
    };
    if let Some((requests, tokens)) = status {
        write_rate_headers(response.headers_mut(), "requests", requests);
        write_rate_headers(response.headers_mut(), "tokens", tokens);
    }
    if let Some(cost) = cost.filter(|_| accounting.cost_header) {
        if let Ok(value) = HeaderValue::from_str(&cost.to_string()) {
            response.headers_mut().insert(COST_HEADER, value);
        }
    }
    response
}

/// The budget shown on a response whose model is unknown: the project's, under the plan of
/// the smallest models.
fn project_budget(accounting: &Accounting, key: &VerifiedKey) -> Budget {
    accounting.budget(key.project_id, "", ServicePlan::Base)
}

async fn look_at(accounting: &Accounting, budget: &Budget) -> Option<(BucketStatus, BucketStatus)> {
    match accounting.peek(budget).await {
        Ok(status) => Some(status),
        Err(error) => {
            tracing::warn!(%error, "rate limiter unavailable for the headers");
            None
        }
    }
}

/// Writes `x-ratelimit-limit-…`, `x-ratelimit-remaining-…` and `x-ratelimit-reset-…`.
fn write_rate_headers(headers: &mut HeaderMap, budget: &str, status: BucketStatus) {
    let values = [
        ("limit", status.limit.to_string()),
        ("remaining", status.remaining.to_string()),
        ("reset", go_duration(status.reset)),
    ];
    for (what, value) in values {
        let name = HeaderName::try_from(format!("x-ratelimit-{what}-{budget}"));
        if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(&value)) {
            headers.insert(name, value);
        }
    }
}

/// A duration as the rate-limit headers write it (Go's format): `12ms`, `1s`, `1.5s`,
/// `6m0s`, `1h0m0s`.
pub fn go_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1_000 {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs();
    let fraction = duration.subsec_millis();
    let tail = if fraction == 0 {
        format!("{}s", seconds % 60)
    } else {
        let text = format!("{}.{fraction:03}", seconds % 60);
        format!("{}s", text.trim_end_matches('0'))
    };
    match (seconds / 3600, (seconds / 60) % 60) {
        (0, 0) => tail,
        (0, minutes) => format!("{minutes}m{tail}"),
        (hours, minutes) => format!("{hours}h{minutes}m{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_go_writes_them() {
        let cases = [
            (Duration::from_millis(0), "0ms"),
            (Duration::from_millis(12), "12ms"),
            (Duration::from_millis(999), "999ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_millis(59_250), "59.25s"),
            (Duration::from_secs(360), "6m0s"),
            (Duration::from_millis(61_005), "1m1.005s"),
            (Duration::from_secs(3_600), "1h0m0s"),
        ];
        for (duration, text) in cases {
            assert_eq!(go_duration(duration), text);
        }
    }
}
