//! [`LimitPolicy`]: which budgets a project has on a model — its plan's per-minute limits, or
//! the project's overrides stored by the operator — and how tokens count against them.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use gateway_core::ServicePlan;
use uuid::Uuid;

use crate::limit::{Quota, Rate};
use crate::store::{LimitOverride, UsageStore};

/// How often a replica reloads the overrides, so that a change reaches every replica within a
/// second.
pub const OVERRIDE_REFRESH: Duration = Duration::from_millis(500);

/// Requests and tokens per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMinute {
    /// Requests per minute.
    pub requests: u64,
    /// Tokens per minute (prompt tokens + weight × generated tokens).
    pub tokens: u64,
}

/// The limits of every plan, the burst on top, the weight of generated tokens and the
/// projects' overrides.
#[derive(Debug)]
pub struct LimitPolicy {
    plans: HashMap<ServicePlan, PerMinute>,
    /// Percent of a minute's rate an idle bucket holds on top.
    burst_percent: u64,
    /// How many tokens of the budget one generated token counts for.
    output_weight: u64,
    /// Per project: the override of each model, `""` for all its models.
    overrides: RwLock<HashMap<Uuid, HashMap<String, PerMinute>>>,
}

impl LimitPolicy {
    /// A policy with these plan limits burst and
    /// output weight, and no overrides yet.
    pub fn new(
        plans: HashMap<ServicePlan, PerMinute>,
        burst_percent: u64,
        output_weight: u64,
    ) -> Self {
        Self {
            plans,
            burst_percent,
            output_weight,
            overrides: RwLock::new(HashMap::new()),
        }
    }

    /// The budgets of `project` on `model` of `plan`: the project's override for the model,
    /// else its override for all models, else the plan's limits.
    pub fn quota(&self, project: Uuid, model: &str, plan: ServicePlan) -> Quota {
        let overrides = self
            .overrides
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let limits = overrides
            .get(&project)
            .and_then(|models| models.get(model).or_else(|| models.get("")))
            .copied()
            .unwrap_or_else(|| self.plan_limits(plan));
        Quota {
            requests: self.rate(limits.requests),
            tokens: self.rate(limits.tokens),
        }
    }

    fn plan_limits(&self, plan: ServicePlan) -> PerMinute {
        self.plans.get(&plan).copied().unwrap_or(PerMinute {
            requests: 0,
            tokens: 0,
        })
    }

    fn rate(&self, per_minute: u64) -> Rate {
        Rate {
            per_minute,
            burst: per_minute.saturating_mul(self.burst_percent) / 100,
        }
    }

    /// What a request that used `input` tokens and generated `output` counts against the
    /// token budget.
    pub fn weighted_tokens(&self, input: u64, output: u64) -> u64 {
        input.saturating_add(output.saturating_mul(self.output_weight))
    }

    /// Replaces the overrides with `overrides`.
    pub fn set_overrides(&self, overrides: Vec<LimitOverride>) {
        let mut table: HashMap<Uuid, HashMap<String, PerMinute>> = HashMap::new();
        for o in overrides {
            let limits = PerMinute {
                requests: o.requests_per_minute,
                tokens: o.tokens_per_minute,
            };
            let models = table.entry(o.project_id).or_default();
            models.insert(o.model.unwrap_or_default(), limits);
        }
        *self
            .overrides
            .write()
            .unwrap_or_else(PoisonError::into_inner) = table;
    }

    /// Reloads the overrides from `store` every [`OVERRIDE_REFRESH`] until dropped. While the
    /// store fails, the overrides last read stay in force (the failure and the recovery are
    /// logged once each).
    pub async fn refresh_from(self: Arc<Self>, store: Arc<dyn UsageStore>) {
        let mut interval = tokio::time::interval(OVERRIDE_REFRESH);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            interval.tick().await;
            match store.limit_overrides().await {
                Ok(overrides) => {
                    self.set_overrides(overrides);
                    if std::mem::take(&mut failing) {
                        tracing::info!("rate limit overrides read again");
                    }
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot reload rate limit overrides; keeping the last");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> LimitPolicy {
        let plans = HashMap::from([(
            ServicePlan::Base,
            PerMinute {
                requests: 100,
                tokens: 10_000,
            },
        )]);
        LimitPolicy::new(plans, 10, 5)
    }

    #[test]
    fn the_plan_limits_with_the_burst_on_top() {
        let quota = policy().quota(Uuid::nil(), "m", ServicePlan::Base);
        assert_eq!(quota.requests.capacity(), 110);
        assert_eq!(quota.tokens.per_minute, 10_000);
        assert_eq!(quota.tokens.burst, 1_000);
    }

    #[test]
    fn a_model_override_beats_a_project_override_beats_the_plan() {
        let policy = policy();
        let project = Uuid::new_v4();
        let set = |model: Option<&str>, requests| LimitOverride {
            project_id: project,
            model: model.map(str::to_owned),
            requests_per_minute: requests,
            tokens_per_minute: 1,
            updated_at: chrono::Utc::now(),
        };
        policy.set_overrides(vec![set(None, 7), set(Some("big"), 3)]);
        let quota = |model| policy.quota(project, model, ServicePlan::Base);
        assert_eq!(quota("big").requests.per_minute, 3);
        assert_eq!(quota("small").requests.per_minute, 7);
        let other = policy.quota(Uuid::new_v4(), "big", ServicePlan::Base);
        assert_eq!(other.requests.per_minute, 100);
    }

    #[test]
    fn generated_tokens_weigh_more() {
        assert_eq!(policy().weighted_tokens(27, 8), 67);
    }
}
