//! [`RedisLimiter`] against a real Redis: the URL comes from `GATEWAY_TEST_REDIS_URL` (see
//! `scripts/redis.sh`). Without it each test is skipped with a message, except under `CI=true`,
//! where it fails. Each test keeps its keys under a random prefix of its own.
//!
//! The quotas refill at one unit per minute, so that refill during a test (a few seconds) stays
//! below one whole unit and the counts can be asserted exactly.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use gateway_metering::limit::{Quota, Rate, RateLimiter, RedisLimiter};
use uuid::Uuid;

/// Four requests (one per minute plus a burst of three), 10,000 tokens.
const QUOTA: Quota = Quota {
    requests: Rate {
        per_minute: 1,
        burst: 3,
    },
    tokens: Rate {
        per_minute: 1,
        burst: 9_999,
    },
};

/// Plenty of requests, 1,000 tokens.
const TOKENS: Quota = Quota {
    requests: Rate {
        per_minute: 1,
        burst: 99,
    },
    tokens: Rate {
        per_minute: 1,
        burst: 999,
    },
};

/// The test Redis, or `None` (the test is skipped) when it is not configured outside CI.
fn redis_url() -> Option<String> {
    let Ok(url) = std::env::var("GATEWAY_TEST_REDIS_URL") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but GATEWAY_TEST_REDIS_URL is unset: run scripts/redis.sh");
        }
        eprintln!("skipping: GATEWAY_TEST_REDIS_URL is unset (see scripts/redis.sh)");
        return None;
    };
    Some(url)
}

/// A key prefix no other test uses.
fn prefix() -> String {
    format!("gwtest:{}:", Uuid::new_v4().simple())
}

/// A limiter on the test Redis under a fresh prefix, or `None` when skipped.
async fn limiter() -> Option<RedisLimiter> {
    let url = redis_url()?;
    Some(RedisLimiter::connect(&url, prefix()).await.unwrap())
}

#[tokio::test]
async fn admits_the_capacity_then_refuses_with_a_retry_after() {
    let Some(limiter) = limiter().await else {
        return;
    };
    let mut requests = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..4 {
        let admission = limiter.admit("p/m", QUOTA, 10).await.unwrap();
        assert!(admission.admitted);
        assert_eq!(admission.retry_after, None);
        assert_eq!(admission.requests.limit, 1);
        requests.push(admission.requests.remaining);
        tokens.push(admission.tokens.remaining);
    }
    assert_eq!(requests, [3, 2, 1, 0], "one request per admission");
    assert_eq!(
        tokens,
        [9_990, 9_980, 9_970, 9_960],
        "the reserve each time"
    );
    let refused = limiter.admit("p/m", QUOTA, 10).await.unwrap();
    assert!(!refused.admitted);
    assert_eq!(refused.requests.remaining, 0);
    assert_eq!(refused.tokens.remaining, 9_960, "a refusal takes nothing");
    let retry = refused.retry_after.unwrap();
    assert!(
        retry > Duration::from_secs(50) && retry <= Duration::from_secs(60),
        "one request at one a minute: {retry:?}"
    );
}

#[tokio::test]
async fn peeking_takes_nothing() {
    let Some(limiter) = limiter().await else {
        return;
    };
    let (requests, tokens) = limiter.peek("p/m", QUOTA).await.unwrap();
    assert_eq!((requests.remaining, tokens.remaining), (4, 10_000));
    assert_eq!(requests.reset, Duration::ZERO, "an absent key is full");
    limiter.admit("p/m", QUOTA, 100).await.unwrap();
    for _ in 0..2 {
        let (requests, tokens) = limiter.peek("p/m", QUOTA).await.unwrap();
        assert_eq!((requests.remaining, tokens.remaining), (3, 9_900));
    }
}

#[tokio::test]
async fn settling_returns_what_was_not_used() {
    let Some(limiter) = limiter().await else {
        return;
    };
    let first = limiter.admit("k", TOKENS, 800).await.unwrap();
    assert_eq!(first.tokens.remaining, 200);
    assert!(!limiter.admit("k", TOKENS, 300).await.unwrap().admitted);
    limiter.settle("k", TOKENS, 800, 100).await.unwrap();
    let second = limiter.admit("k", TOKENS, 300).await.unwrap();
    assert!(second.admitted);
    assert_eq!(second.tokens.remaining, 600);
}

#[tokio::test]
async fn refunds_stop_at_the_capacity() {
    let Some(limiter) = limiter().await else {
        return;
    };
    limiter.admit("k", TOKENS, 10).await.unwrap();
    limiter.settle("k", TOKENS, 10, 0).await.unwrap();
    limiter.settle("k", TOKENS, 10, 0).await.unwrap();
    let (_, tokens) = limiter.peek("k", TOKENS).await.unwrap();
    assert_eq!(tokens.remaining, 1_000);
    assert_eq!(tokens.reset, Duration::ZERO);
}

#[tokio::test]
async fn using_more_than_reserved_puts_the_bucket_in_debt() {
    let Some(limiter) = limiter().await else {
        return;
    };
    limiter.admit("k", TOKENS, 500).await.unwrap();
    limiter.settle("k", TOKENS, 500, 1_400).await.unwrap();
    let refused = limiter.admit("k", TOKENS, 1).await.unwrap();
    assert!(!refused.admitted);
    assert_eq!(refused.tokens.remaining, 0);
    let retry = refused.retry_after.unwrap();
    let debt_and_one = Duration::from_secs(401 * 60);
    assert!(
        retry <= debt_and_one && retry > debt_and_one - Duration::from_secs(10),
        "400 tokens of debt and one more at one a minute: {retry:?}"
    );
}

#[tokio::test]
async fn a_reservation_over_the_capacity_never_fits() {
    let Some(limiter) = limiter().await else {
        return;
    };
    let refused = limiter.admit("k", QUOTA, 10_001).await.unwrap();
    assert!(!refused.admitted);
    assert_eq!(refused.retry_after, None);
    let next = limiter.admit("k", QUOTA, 10_000).await.unwrap();
    assert!(next.admitted, "the refusal took nothing");
    assert_eq!((next.requests.remaining, next.tokens.remaining), (3, 0));
}

#[tokio::test]
async fn each_key_has_its_own_buckets() {
    let Some(limiter) = limiter().await else {
        return;
    };
    for _ in 0..4 {
        assert!(limiter.admit("p/a", QUOTA, 1).await.unwrap().admitted);
    }
    assert!(!limiter.admit("p/a", QUOTA, 1).await.unwrap().admitted);
    let other = limiter.admit("p/b", QUOTA, 1).await.unwrap();
    assert!(other.admitted);
    assert_eq!(other.requests.remaining, 3);
}

/// Two limiters with connections of their own (two replicas) and 64 tasks admitting on one
/// key at once: at most the capacity plus what refills meanwhile (`per_minute` times the
/// minutes elapsed) is admitted. At one request per minute and a test of under a minute, that
/// is exactly the capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_one_budget() {
    let Some(url) = redis_url() else {
        return;
    };
    let prefix = prefix();
    let replicas = [
        RedisLimiter::connect(&url, prefix.clone()).await.unwrap(),
        RedisLimiter::connect(&url, prefix).await.unwrap(),
    ];
    let quota = Quota {
        requests: Rate {
            per_minute: 1,
            burst: 19,
        },
        ..QUOTA
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let limiter = replicas[i % 2].clone();
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..4 {
                    if limiter.admit("shared", quota, 1).await.unwrap().admitted {
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(admitted, 20, "the capacity, once, across both replicas");
}

#[tokio::test]
async fn an_idle_key_expires_when_its_buckets_are_full_again() {
    let Some(url) = redis_url() else {
        return;
    };
    let prefix = prefix();
    let limiter = RedisLimiter::connect(&url, prefix.clone()).await.unwrap();
    let fast = Quota {
        requests: Rate {
            per_minute: 600,
            burst: 0,
        },
        tokens: Rate {
            per_minute: 60_000,
            burst: 0,
        },
    };
    limiter.admit("k", fast, 60).await.unwrap();
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let hash = format!("{prefix}k");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&hash)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        (1..=100).contains(&ttl),
        "one request back at 10 a second: {ttl} ms"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(&hash)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn a_bad_url_fails_without_naming_its_password() {
    let error = RedisLimiter::connect("redis://:hunter2@[::1", "p:")
        .await
        .unwrap_err();
    assert!(!error.to_string().contains("hunter2"), "{error}");
}
