//! [`SharedLimiter`]: the buckets every replica shares in Redis, and what admission does while
//! Redis cannot be reached.
//!
//! Every call to Redis is bounded by [`CALL_TIMEOUT`]. After a failed call (or a failed
//! connection, also at start: a replica starts while Redis is down) the limiter does not ask
//! Redis again for [`RETRY_AFTER`], so requests never queue behind an unreachable server; the
//! first call after that probes it. Meanwhile admission follows [`WhenUnavailable`]: `Open`
//! admits against this replica's own buckets (each replica enforces the whole limit alone,
//! so a fleet of N admits up to N times it), `Closed` refuses with
//! [`LimitError::Unavailable`]. [`SharedLimiter::state`] says which holds now, for readiness
//! and metrics; each change is logged once.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    Admission, BucketStatus, LimitError, LimiterState, LocalLimiter, Quota, RateLimiter,
    RedisLimiter,
};

/// Longest wait for one Redis call (or connection) before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// How long after a failure Redis is left alone before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What admission does while the shared buckets cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenUnavailable {
    /// Admit against this replica's own buckets.
    Open,
    /// Refuse every request that needs a budget.
    Closed,
}

/// Rate limits in Redis with a failure policy. Share one per process.
#[derive(Debug)]
pub struct SharedLimiter {
    url: String,
    prefix: String,
    when_unavailable: WhenUnavailable,
    redis: RwLock<Option<RedisLimiter>>,
    connecting: tokio::sync::Mutex<()>,
    /// When the latest call failed; `None` while Redis answers.
    failed_at: Mutex<Option<Instant>>,
    fallback: LocalLimiter,
}

impl SharedLimiter {
    /// A limiter on the Redis at `url` with keys under `prefix`. It connects now if it can,
    /// and otherwise starts unavailable and connects on a later call; only a URL that is not
    /// a Redis URL fails.
    pub async fn start(
        url: &str,
        prefix: &str,
        when_unavailable: WhenUnavailable,
    ) -> Result<Self, LimitError> {
        redis::Client::open(url).map_err(|error| LimitError::Store(error.to_string()))?;
        let limiter = Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            when_unavailable,
            redis: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            failed_at: Mutex::new(None),
            fallback: LocalLimiter::new(),
        };
        if limiter.connection().await.is_some() {
            tracing::info!("rate limits shared through Redis");
        }
        Ok(limiter)
    }

    /// Whether the shared buckets answered the latest call, and if not what admission does.
    pub fn state(&self) -> LimiterState {
        match (self.failed_at().is_some(), self.when_unavailable) {
            (false, _) => LimiterState::Available,
            (true, WhenUnavailable::Open) => LimiterState::FailingOpen,
            (true, WhenUnavailable::Closed) => LimiterState::FailingClosed,
        }
    }

    fn failed_at(&self) -> Option<Instant> {
        *self.failure()
    }

    /// When the latest call failed, locked.
    fn failure(&self) -> MutexGuard<'_, Option<Instant>> {
        self.failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The Redis connection, unless a call failed less than [`RETRY_AFTER`] ago or another
    /// task is connecting right now; connects when there is none yet. After a failure, the
    /// first call past [`RETRY_AFTER`] probes Redis alone: it moves the failure's time on, so
    /// calls meanwhile do not wait for Redis too.
    async fn connection(&self) -> Option<RedisLimiter> {
        {
            let mut failed_at = self.failure();
            if let Some(at) = *failed_at {
                if at.elapsed() < RETRY_AFTER {
                    return None;
                }
                *failed_at = Some(Instant::now());
            }
        }
        if let Some(redis) = self.connected() {
            return Some(redis);
        }
        let _connecting = self.connecting.try_lock().ok()?;
        if let Some(redis) = self.connected() {
            return Some(redis);
        }
        let redis = self
            .bounded(RedisLimiter::connect(&self.url, self.prefix.clone()))
            .await?;
        *self.redis.write().unwrap_or_else(PoisonError::into_inner) = Some(redis.clone());
        Some(redis)
    }

    fn connected(&self) -> Option<RedisLimiter> {
        self.redis
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `call` on Redis within [`CALL_TIMEOUT`]; `None` when Redis is left alone for now
    /// or the call failed (recorded).
    async fn call<T, F, Fut>(&self, call: F) -> Option<T>
    where
        F: FnOnce(RedisLimiter) -> Fut,
        Fut: Future<Output = Result<T, LimitError>>,
    {
        let redis = self.connection().await?;
        let value = self.bounded(call(redis)).await?;
        self.record_success();
        Some(value)
    }

    /// Awaits `operation` for at most [`CALL_TIMEOUT`]; a failure or timeout is recorded and
    /// gives `None`.
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, LimitError>>,
    ) -> Option<T> {
        match tokio::time::timeout(CALL_TIMEOUT, operation).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                self.record_failure(&error.to_string());
                None
            }
            Err(_) => {
                self.record_failure("no answer within the call timeout");
                None
            }
        }
    }

    fn record_failure(&self, error: &str) {
        let mut failed_at = self.failure();
        if failed_at.is_none() {
            match self.when_unavailable {
                WhenUnavailable::Open => tracing::error!(
                    %error,
                    "rate limit Redis unreachable: failing open, each replica limits alone"
                ),
                WhenUnavailable::Closed => tracing::error!(
                    %error,
                    "rate limit Redis unreachable: failing closed, requests refused"
                ),
            }
        }
        *failed_at = Some(Instant::now());
    }

    fn record_success(&self) {
        let mut failed_at = self.failure();
        if failed_at.take().is_some() {
            tracing::info!("rate limit Redis reachable again: limits shared");
        }
    }

    /// The fallback while Redis is unavailable: this replica's buckets when failing open.
    fn fallback(&self) -> Result<&LocalLimiter, LimitError> {
        match self.when_unavailable {
            WhenUnavailable::Open => Ok(&self.fallback),
            WhenUnavailable::Closed => Err(LimitError::Unavailable),
        }
    }
}

#[async_trait]
impl RateLimiter for SharedLimiter {
    async fn admit(&self, key: &str, quota: Quota, reserve: u64) -> Result<Admission, LimitError> {
        let shared = self
            .call(|redis| async move { redis.admit(key, quota, reserve).await })
            .await;
        match shared {
            Some(admission) => Ok(admission),
            None => self.fallback()?.admit(key, quota, reserve).await,
        }
    }

    async fn peek(
        &self,
        key: &str,
        quota: Quota,
    ) -> Result<(BucketStatus, BucketStatus), LimitError> {
        let shared = self
            .call(|redis| async move { redis.peek(key, quota).await })
            .await;
        match shared {
            Some(status) => Ok(status),
            None => self.fallback()?.peek(key, quota).await,
        }
    }

    async fn settle(
        &self,
        key: &str,
        quota: Quota,
        reserved: u64,
        used: u64,
    ) -> Result<(), LimitError> {
        let shared = self
            .call(|redis| async move { redis.settle(key, quota, reserved, used).await })
            .await;
        match shared {
            Some(()) => Ok(()),
            None => self.fallback()?.settle(key, quota, reserved, used).await,
        }
    }

    fn state(&self) -> LimiterState {
        SharedLimiter::state(self)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::limit::Rate;

    /// A Redis URL nothing listens on (port 1 on loopback refuses at once).
    const UNREACHABLE: &str = "redis://127.0.0.1:1/";

    fn quota(per_minute: u64) -> Quota {
        let rate = Rate {
            per_minute,
            burst: 0,
        };
        Quota {
            requests: rate,
            tokens: Rate {
                per_minute: 1_000,
                burst: 0,
            },
        }
    }

    #[tokio::test]
    async fn failing_open_limits_with_the_replicas_own_buckets() {
        let limiter = SharedLimiter::start(UNREACHABLE, "t:", WhenUnavailable::Open)
            .await
            .unwrap();
        assert_eq!(limiter.state(), LimiterState::FailingOpen);
        let first = limiter.admit("p/m", quota(2), 1).await.unwrap();
        let second = limiter.admit("p/m", quota(2), 1).await.unwrap();
        let third = limiter.admit("p/m", quota(2), 1).await.unwrap();
        assert!(first.admitted && second.admitted);
        assert!(!third.admitted, "the local buckets still limit");
        limiter.settle("p/m", quota(2), 1, 1).await.unwrap();
        limiter.peek("p/m", quota(2)).await.unwrap();
    }

    #[tokio::test]
    async fn failing_closed_refuses() {
        let limiter = SharedLimiter::start(UNREACHABLE, "t:", WhenUnavailable::Closed)
            .await
            .unwrap();
        assert_eq!(limiter.state(), LimiterState::FailingClosed);
        let refused = limiter.admit("p/m", quota(2), 1).await;
        assert!(matches!(refused, Err(LimitError::Unavailable)));
        assert!(matches!(
            limiter.peek("p/m", quota(2)).await,
            Err(LimitError::Unavailable)
        ));
    }

    #[tokio::test]
    async fn redis_is_left_alone_after_a_failure_and_probed_later() {
        let limiter = SharedLimiter::start(UNREACHABLE, "t:", WhenUnavailable::Open)
            .await
            .unwrap();
        let failed = limiter.failed_at().unwrap();
        limiter.admit("p/m", quota(5), 1).await.unwrap();
        assert_eq!(
            limiter.failed_at(),
            Some(failed),
            "not tried within RETRY_AFTER"
        );
        *limiter.failed_at.lock().unwrap() = Some(Instant::now() - RETRY_AFTER);
        limiter.admit("p/m", quota(5), 1).await.unwrap();
        assert!(
            limiter.failed_at().unwrap().elapsed() < RETRY_AFTER,
            "probed again, and failed again"
        );
    }

    #[tokio::test]
    async fn a_url_that_is_not_redis_is_refused_at_start() {
        let refused =
            SharedLimiter::start("http://127.0.0.1:1/", "t:", WhenUnavailable::Open).await;
        assert!(matches!(refused, Err(LimitError::Store(_))));
    }

    #[test]
    fn the_policy_reads_from_configuration_words() {
        let open: WhenUnavailable = serde_json::from_str("\"open\"").unwrap();
        let closed: WhenUnavailable = serde_json::from_str("\"closed\"").unwrap();
        assert_eq!(
            (open, closed),
            (WhenUnavailable::Open, WhenUnavailable::Closed)
        );
    }
}
