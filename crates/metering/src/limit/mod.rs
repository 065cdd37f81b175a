//! Rate limits per project and model: a request budget and a token budget, each a bucket that
//! holds a minute's worth of its rate plus a burst and refills continuously at the rate.
//!
//! An idle project may send a minute's worth plus the burst at once; under steady load it gets
//! the rate. Admission takes one request and the reserved tokens from both buckets, or from
//! neither; settling gives back what a request reserved beyond its real use (or takes the
//! excess: a bucket may go into debt, which delays later admissions). [`LocalLimiter`] keeps
//! the buckets in this process; [`RedisLimiter`] keeps them in Redis so that replicas share
//! them, and [`SharedLimiter`] wraps it with what happens while Redis cannot be reached. All use
//! the arithmetic of [`Bucket`].

mod local;
mod redis;
mod shared;

use std::time::Duration;

use async_trait::async_trait;

pub use local::LocalLimiter;
pub use redis::RedisLimiter;
pub use shared::{SharedLimiter, WhenUnavailable};

/// Milliseconds in the period every rate is given per.
pub const MINUTE_MS: f64 = 60_000.0;

/// One budget: so many units per minute, plus a burst an idle bucket holds on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Units (requests or tokens) per minute; the bucket refills at this rate.
    pub per_minute: u64,
    /// Units an idle bucket holds beyond a minute's worth.
    pub burst: u64,
}

impl Rate {
    /// Most units the bucket holds: a minute's worth plus the burst.
    pub fn capacity(self) -> u64 {
        self.per_minute.saturating_add(self.burst)
    }

    /// Milliseconds the bucket takes to regain `units`.
    fn millis_for(self, units: f64) -> f64 {
        if self.per_minute == 0 {
            f64::INFINITY
        } else {
            units * MINUTE_MS / self.per_minute as f64
        }
    }
}

/// The two budgets of one project and model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests per minute.
    pub requests: Rate,
    /// Tokens per minute.
    pub tokens: Rate,
}

/// A bucket's level at a time: what [`RedisLimiter`] stores and [`LocalLimiter`] keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Units in the bucket (negative while in debt).
    pub level: f64,
    /// When `level` was computed, in milliseconds of the limiter's clock.
    pub at_ms: f64,
}

impl Bucket {
    /// A full bucket of `rate` at `now_ms`.
    pub fn full(rate: Rate, now_ms: f64) -> Self {
        Self {
            level: rate.capacity() as f64,
            at_ms: now_ms,
        }
    }

    /// The bucket at `now_ms`, refilled for the time since it was last computed.
    pub fn refilled(self, rate: Rate, now_ms: f64) -> Self {
        let elapsed = (now_ms - self.at_ms).max(0.0);
        let gained = elapsed * rate.per_minute as f64 / MINUTE_MS;
        Self {
            level: (self.level + gained).min(rate.capacity() as f64),
            at_ms: now_ms.max(self.at_ms),
        }
    }

    /// What the headers say about the bucket.
    pub fn status(self, rate: Rate) -> BucketStatus {
        let missing = rate.capacity() as f64 - self.level;
        BucketStatus {
            limit: rate.per_minute,
            remaining: self.level.max(0.0).floor() as u64,
            reset: millis(rate.millis_for(missing.max(0.0))),
        }
    }

    /// How long until the bucket holds `units`; `None` if it never can.
    pub fn wait_for(self, rate: Rate, units: u64) -> Option<Duration> {
        if units > rate.capacity() {
            return None;
        }
        let missing = units as f64 - self.level;
        Some(millis(rate.millis_for(missing.max(0.0))))
    }
}

fn millis(ms: f64) -> Duration {
    if ms.is_finite() {
        Duration::from_millis(ms.ceil() as u64)
    } else {
        Duration::MAX
    }
}

/// What the `x-ratelimit-*` headers of one budget say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketStatus {
    /// The per-minute rate.
    pub limit: u64,
    /// Whole units left now.
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

/// The answer to an admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Whether the request was admitted (and its request and tokens taken).
    pub admitted: bool,
    /// The request budget after the admission.
    pub requests: BucketStatus,
    /// The token budget after the admission.
    pub tokens: BucketStatus,
    /// For a refused request, how long until it could be admitted; `None` if it never can
    /// (it reserves more tokens than the bucket holds).
    pub retry_after: Option<Duration>,
}

impl Admission {
    /// Decides on taking one request and `tokens` from the two buckets, already refilled to
    /// now; returns the buckets after and the answer. Shared by both limiters (the Redis
    /// script does the same arithmetic).
    pub fn decide(
        quota: Quota,
        requests: Bucket,
        tokens: Bucket,
        reserve: u64,
    ) -> (Bucket, Bucket, Self) {
        let admitted = requests.level >= 1.0 && tokens.level >= reserve as f64;
        let (requests, tokens) = if admitted {
            (
                Bucket {
                    level: requests.level - 1.0,
                    ..requests
                },
                Bucket {
                    level: tokens.level - reserve as f64,
                    ..tokens
                },
            )
        } else {
            (requests, tokens)
        };
        let retry_after = if admitted {
            None
        } else {
            match (
                requests.wait_for(quota.requests, 1),
                tokens.wait_for(quota.tokens, reserve),
            ) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            }
        };
        let answer = Self {
            admitted,
            requests: requests.status(quota.requests),
            tokens: tokens.status(quota.tokens),
            retry_after,
        };
        (requests, tokens, answer)
    }
}

/// A limiter could not be asked (Redis unreachable, a script error).
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The shared store of the buckets failed.
    #[error("rate limit store: {0}")]
    Store(String),
    /// The shared buckets cannot be reached and the operator chose to refuse meanwhile.
    #[error("the rate limit store is unreachable and limits fail closed")]
    Unavailable,
}

/// Whether a limiter's buckets can be reached, and if not what admission does meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterState {
    /// The buckets answer (always so for buckets in process).
    Available,
    /// Unreachable; requests are admitted against this replica's own buckets.
    FailingOpen,
    /// Unreachable; requests that need a budget are refused.
    FailingClosed,
}

impl LimiterState {
    /// The state's name in `/readyz` and the logs: `available`, `failing_open`,
    /// `failing_closed`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::FailingOpen => "failing_open",
            Self::FailingClosed => "failing_closed",
        }
    }
}

/// Where the buckets live. The bucket key names the project and model (see [`bucket_key`]).
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// Takes one request and `reserve` tokens from the buckets of `key` if both hold enough.
    async fn admit(&self, key: &str, quota: Quota, reserve: u64) -> Result<Admission, LimitError>;

    /// The state of the buckets of `key` now, taking nothing (for the headers of a request
    /// refused before admission).
    async fn peek(
        &self,
        key: &str,
        quota: Quota,
    ) -> Result<(BucketStatus, BucketStatus), LimitError>;

    /// Settles an admitted request that reserved `reserved` tokens and used `used`: gives the
    /// difference back, or takes the excess.
    async fn settle(
        &self,
        key: &str,
        quota: Quota,
        reserved: u64,
        used: u64,
    ) -> Result<(), LimitError>;

    /// Whether the buckets can be reached now.
    fn state(&self) -> LimiterState {
        LimiterState::Available
    }
}

/// The bucket key of a project's budget on a model.
pub fn bucket_key(project: uuid::Uuid, model: &str) -> String {
    format!("{project}/{model}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: Quota = Quota {
        requests: Rate {
            per_minute: 60,
            burst: 5,
        },
        tokens: Rate {
            per_minute: 6_000,
            burst: 0,
        },
    };

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_capacity() {
        let rate = QUOTA.requests;
        let empty = Bucket {
            level: 0.0,
            at_ms: 0.0,
        };
        assert_eq!(empty.refilled(rate, 1_000.0).level, 1.0);
        assert_eq!(empty.refilled(rate, 30_000.0).level, 30.0);
        assert_eq!(empty.refilled(rate, 600_000.0).level, 65.0);
        assert_eq!(empty.refilled(rate, -5.0).level, 0.0);
    }

    #[test]
    fn admission_takes_from_both_buckets_or_from_neither() {
        let requests = Bucket::full(QUOTA.requests, 0.0);
        let tokens = Bucket {
            level: 100.0,
            at_ms: 0.0,
        };
        let (r, t, admitted) = Admission::decide(QUOTA, requests, tokens, 100);
        assert!(admitted.admitted);
        assert_eq!((r.level, t.level), (64.0, 0.0));
        assert_eq!(admitted.requests.remaining, 64);
        assert_eq!(admitted.tokens.remaining, 0);
        assert_eq!(admitted.tokens.reset, Duration::from_secs(60));
        let (r, t, refused) = Admission::decide(QUOTA, r, t, 1);
        assert!(!refused.admitted);
        assert_eq!((r.level, t.level), (64.0, 0.0));
        assert_eq!(refused.retry_after, Some(Duration::from_millis(10)));
    }

    #[test]
    fn a_reservation_over_the_capacity_never_fits() {
        let requests = Bucket::full(QUOTA.requests, 0.0);
        let tokens = Bucket::full(QUOTA.tokens, 0.0);
        let (_, _, refused) = Admission::decide(QUOTA, requests, tokens, 6_001);
        assert!(!refused.admitted);
        assert_eq!(refused.retry_after, None);
    }

    #[test]
    fn status_counts_whole_units_and_time_to_full() {
        let bucket = Bucket {
            level: 59.5,
            at_ms: 0.0,
        };
        let status = bucket.status(QUOTA.requests);
        assert_eq!(status.limit, 60);
        assert_eq!(status.remaining, 59);
        assert_eq!(status.reset, Duration::from_millis(5_500));
        let in_debt = Bucket {
            level: -3.0,
            at_ms: 0.0,
        };
        assert_eq!(in_debt.status(QUOTA.requests).remaining, 0);
    }
}
