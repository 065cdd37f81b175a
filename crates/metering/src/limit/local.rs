//! [`LocalLimiter`]: the buckets of one gateway process, in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use super::{Admission, Bucket, BucketStatus, LimitError, Quota, RateLimiter};

/// Buckets kept before the full ones are dropped (a full bucket is the same as none).
const PRUNE_ABOVE: usize = 4_096;

/// Least time between two prunings, so that many busy keys do not make every call scan them.
const PRUNE_EVERY_MS: f64 = 1_000.0;

/// Rate limits of one process. Buckets start full and are dropped again once full, so memory
/// follows the busy keys only.
#[derive(Debug)]
pub struct LocalLimiter {
    started: Instant,
    state: Mutex<State>,
}

/// The buckets by key and when they may next be pruned.
#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    next_prune_ms: f64,
}

/// The two buckets of a key, and when both will be full again.
#[derive(Debug, Clone, Copy)]
struct Entry {
    requests: Bucket,
    tokens: Bucket,
    full_at_ms: f64,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }
}

impl LocalLimiter {
    /// A limiter with no buckets yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn now_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1_000.0
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `change` on the refilled buckets of `key` and keeps what it returns.
    fn with_buckets<T>(
        &self,
        key: &str,
        quota: Quota,
        change: impl FnOnce(Bucket, Bucket) -> (Bucket, Bucket, T),
    ) -> T {
        let now = self.now_ms();
        let mut state = self.state();
        let (requests, tokens) = refilled(&state.entries, key, quota, now);
        let (requests, tokens, answer) = change(requests, tokens);
        let until_full = requests
            .status(quota.requests)
            .reset
            .max(tokens.status(quota.tokens).reset);
        let entry = Entry {
            requests,
            tokens,
            full_at_ms: now + until_full.as_secs_f64() * 1_000.0,
        };
        match state.entries.get_mut(key) {
            Some(kept) => *kept = entry,
            None => {
                state.prune(now);
                state.entries.insert(key.to_owned(), entry);
            }
        }
        answer
    }
}

impl State {
    /// Drops the buckets that are full again, at most once per [`PRUNE_EVERY_MS`] and only
    /// while more than [`PRUNE_ABOVE`] are kept.
    fn prune(&mut self, now: f64) {
        if self.entries.len() < PRUNE_ABOVE || now < self.next_prune_ms {
            return;
        }
        self.entries.retain(|_, entry| entry.full_at_ms > now);
        self.next_prune_ms = now + PRUNE_EVERY_MS;
    }
}

/// The buckets of `key` refilled to `now`; full ones when the key has none.
fn refilled(
    entries: &HashMap<String, Entry>,
    key: &str,
    quota: Quota,
    now: f64,
) -> (Bucket, Bucket) {
    match entries.get(key) {
        Some(entry) => (
            entry.requests.refilled(quota.requests, now),
            entry.tokens.refilled(quota.tokens, now),
        ),
        None => (
            Bucket::full(quota.requests, now),
            Bucket::full(quota.tokens, now),
        ),
    }
}

#[async_trait]
impl RateLimiter for LocalLimiter {
    async fn admit(&self, key: &str, quota: Quota, reserve: u64) -> Result<Admission, LimitError> {
        Ok(self.with_buckets(key, quota, |requests, tokens| {
            Admission::decide(quota, requests, tokens, reserve)
        }))
    }

    async fn peek(
        &self,
        key: &str,
        quota: Quota,
    ) -> Result<(BucketStatus, BucketStatus), LimitError> {
        let now = self.now_ms();
        let (requests, tokens) = refilled(&self.state().entries, key, quota, now);
        Ok((requests.status(quota.requests), tokens.status(quota.tokens)))
    }

    async fn settle(
        &self,
        key: &str,
        quota: Quota,
        reserved: u64,
        used: u64,
    ) -> Result<(), LimitError> {
        let refund = reserved as f64 - used as f64;
        self.with_buckets(key, quota, |requests, tokens| {
            let level = (tokens.level + refund).min(quota.tokens.capacity() as f64);
            (requests, Bucket { level, ..tokens }, ())
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::limit::Rate;

    const QUOTA: Quota = Quota {
        requests: Rate {
            per_minute: 3,
            burst: 1,
        },
        tokens: Rate {
            per_minute: 1_000,
            burst: 0,
        },
    };

    #[tokio::test]
    async fn admits_a_minute_and_the_burst_then_refuses() {
        let limiter = LocalLimiter::new();
        let mut remaining = Vec::new();
        for _ in 0..4 {
            let admission = limiter.admit("p/m", QUOTA, 10).await.unwrap();
            assert!(admission.admitted);
            remaining.push(admission.requests.remaining);
        }
        assert_eq!(remaining, [3, 2, 1, 0]);
        let refused = limiter.admit("p/m", QUOTA, 10).await.unwrap();
        assert!(!refused.admitted);
        assert!(refused.retry_after.unwrap().as_secs() <= 20);
        let other = limiter.admit("p/other", QUOTA, 10).await.unwrap();
        assert!(other.admitted, "each key has its own buckets");
    }

    #[tokio::test]
    async fn settling_returns_what_was_not_used() {
        let limiter = LocalLimiter::new();
        let first = limiter.admit("k", QUOTA, 800).await.unwrap();
        assert_eq!(first.tokens.remaining, 200);
        assert!(!limiter.admit("k", QUOTA, 300).await.unwrap().admitted);
        limiter.settle("k", QUOTA, 800, 100).await.unwrap();
        let second = limiter.admit("k", QUOTA, 300).await.unwrap();
        assert!(second.admitted);
        assert!((600..=601).contains(&second.tokens.remaining));
    }

    #[tokio::test]
    async fn using_more_than_reserved_puts_the_bucket_in_debt() {
        let limiter = LocalLimiter::new();
        limiter.admit("k", QUOTA, 500).await.unwrap();
        limiter.settle("k", QUOTA, 500, 1_400).await.unwrap();
        let refused = limiter.admit("k", QUOTA, 1).await.unwrap();
        assert!(!refused.admitted);
        assert_eq!(refused.tokens.remaining, 0);
    }
}

#[cfg(test)]
mod pruning {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::limit::Rate;

    #[test]
    fn only_full_buckets_are_dropped_at_most_once_a_second() {
        let quota = Quota {
            requests: Rate {
                per_minute: 60,
                burst: 0,
            },
            tokens: Rate {
                per_minute: 60,
                burst: 0,
            },
        };
        let mut state = State::default();
        for index in 0..PRUNE_ABOVE {
            let requests = Bucket::full(quota.requests, 0.0);
            let full_at_ms = if index == 0 { 5_000.0 } else { 0.0 };
            let entry = Entry {
                requests,
                tokens: requests,
                full_at_ms,
            };
            state.entries.insert(index.to_string(), entry);
        }
        state.prune(1_000.0);
        assert_eq!(state.entries.len(), 1, "the bucket still refilling stays");
        assert!(state.entries.contains_key("0"));
        let full = Entry {
            full_at_ms: 0.0,
            ..state.entries["0"]
        };
        for index in 1..PRUNE_ABOVE {
            state.entries.insert(index.to_string(), full);
        }
        state.prune(1_500.0);
        assert_eq!(
            state.entries.len(),
            PRUNE_ABOVE,
            "not again within a second"
        );
        state.prune(2_000.0);
        assert_eq!(state.entries.len(), 1);
    }
}
