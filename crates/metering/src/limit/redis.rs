//! [`RedisLimiter`]: the buckets of every gateway replica, shared in Redis.
//!
//! Each bucket key (project and model) is one Redis hash, `<prefix><key>`, with the fields
//! `rl` (level of the request bucket), `tl` (level of the token bucket) and `t` (when both
//! were computed, in milliseconds of the Redis clock). An absent hash means two full buckets.
//!
//! Replicas stay consistent because each operation is one Lua script, and Redis runs a script
//! atomically: it reads the hash, takes the time from Redis `TIME` (one clock for every
//! replica, never the gateway's own), refills both buckets, decides, writes the hash back and
//! sets its expiry to the time both buckets take to be full again, so an idle key vanishes
//! exactly when it would read as full anyway. No other command can interleave, so two
//! replicas admitting on one key at once take from the same buckets in some order, never
//! both from the same level. (Redis 7 replicates a script's writes, not the script, so reading
//! `TIME` inside one is allowed.)
//!
//! The admit script makes the admission decision and returns it with the (refilled) levels it
//! decided on, as exact decimal strings; the Rust side formats the answer with
//! [`Admission::decide`] on those levels, the same arithmetic the script ran, so the headers
//! and `retry_after` match [`super::LocalLimiter`]'s (and an answer that differed from the
//! script's would be reported as an error, not returned). The peek script refills and returns
//! the levels without writing; the settle script refills and adds the refund.

use std::fmt;

use ::redis::aio::ConnectionManager;
use ::redis::{Client, FromRedisValue, RedisError, Script, ScriptInvocation};
use async_trait::async_trait;

use super::{Admission, Bucket, BucketStatus, LimitError, Quota, RateLimiter};

/// Reads the hash and refills both buckets to now. Arguments: requests per minute, request
/// capacity, tokens per minute, token capacity; the operation's own arguments follow.
/// Defines `save()`, which writes the levels back and sets the expiry, and `fmt()`.
const PRELUDE: &str = r#"
local rpm, rcap = tonumber(ARGV[1]), tonumber(ARGV[2])
local tpm, tcap = tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local saved = redis.call('HMGET', KEYS[1], 'rl', 'tl', 't')
local rl, tl = rcap, tcap
if saved[3] then
  local at = tonumber(saved[3])
  now = math.max(now, at)
  rl = math.min(tonumber(saved[1]) + (now - at) * rpm / 60000, rcap)
  tl = math.min(tonumber(saved[2]) + (now - at) * tpm / 60000, tcap)
end

local function fmt(x)
  return string.format('%.17g', x)
end

-- Milliseconds until a bucket is full (infinite for a rate of zero).
local function to_full(level, per_minute, capacity)
  if level >= capacity then return 0 end
  if per_minute == 0 then return math.huge end
  return (capacity - level) * 60000 / per_minute
end

-- At most 30 days: a bucket that never refills (or is deep in debt) is forgotten then.
local function save()
  redis.call('HSET', KEYS[1], 'rl', fmt(rl), 'tl', fmt(tl), 't', fmt(now))
  local ttl = math.max(to_full(rl, rpm, rcap), to_full(tl, tpm, tcap))
  ttl = math.min(math.max(math.ceil(ttl), 1), 2592000000)
  redis.call('PEXPIRE', KEYS[1], fmt(ttl))
end
"#;

/// Takes one request and `ARGV[5]` tokens from both buckets, or nothing. Returns whether it
/// did, the levels before (refilled, as exact decimal strings) and the time.
const ADMIT: &str = r#"
local reserve = tonumber(ARGV[5])
local before_rl, before_tl = rl, tl
local admitted = rl >= 1 and tl >= reserve
if admitted then
  rl = rl - 1
  tl = tl - reserve
end
save()
return {admitted and 1 or 0, fmt(before_rl), fmt(before_tl), fmt(now)}
"#;

/// Returns the levels now (refilled, as exact decimal strings) and the time; writes nothing.
const PEEK: &str = r#"
return {fmt(rl), fmt(tl), fmt(now)}
"#;

/// Adds `ARGV[5]` tokens (negative: takes them) to the token bucket, up to its capacity.
const SETTLE: &str = r#"
tl = math.min(tl + tonumber(ARGV[5]), tcap)
save()
"#;

/// What the admit script returns: admitted, request level, token level, time (ms).
type AdmitReply = (bool, f64, f64, f64);

/// What the peek script returns: request level, token level, time (ms).
type PeekReply = (f64, f64, f64);

/// Rate limits shared by every gateway process that talks to one Redis. Cloning is cheap and
/// shares the connection.
#[derive(Clone)]
pub struct RedisLimiter {
    connection: ConnectionManager,
    prefix: String,
    admit: Script,
    peek: Script,
    settle: Script,
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port/db`) and keeps the
    /// buckets of key `k` in the hash `<prefix>k` (for instance `gw:rl:` as `prefix`). The
    /// connection reconnects by itself when Redis goes away; operations fail meanwhile.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, LimitError> {
        let client = Client::open(url).map_err(store_error)?;
        let connection = client.get_connection_manager().await.map_err(store_error)?;
        Ok(Self {
            connection,
            prefix: prefix.into(),
            admit: Script::new(&[PRELUDE, ADMIT].concat()),
            peek: Script::new(&[PRELUDE, PEEK].concat()),
            settle: Script::new(&[PRELUDE, SETTLE].concat()),
        })
    }

    /// An invocation of `script` on the hash of `key` with the quota's arguments.
    fn invocation<'a>(&self, script: &'a Script, key: &str, quota: Quota) -> ScriptInvocation<'a> {
        let mut invocation = script.key(format!("{}{key}", self.prefix));
        invocation
            .arg(quota.requests.per_minute)
            .arg(quota.requests.capacity())
            .arg(quota.tokens.per_minute)
            .arg(quota.tokens.capacity());
        invocation
    }

    /// Runs `invocation` (loading its script first if Redis does not have it yet).
    async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, LimitError> {
        invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(store_error)
    }
}

/// A Redis failure as a limiter error. Redis errors name neither the URL's password nor the
/// keys, so the message is safe to log.
fn store_error(error: RedisError) -> LimitError {
    LimitError::Store(error.to_string())
}

/// The two buckets at the levels a script returned.
fn buckets(requests: f64, tokens: f64, at_ms: f64) -> (Bucket, Bucket) {
    (
        Bucket {
            level: requests,
            at_ms,
        },
        Bucket {
            level: tokens,
            at_ms,
        },
    )
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn admit(&self, key: &str, quota: Quota, reserve: u64) -> Result<Admission, LimitError> {
        let mut invocation = self.invocation(&self.admit, key, quota);
        invocation.arg(reserve);
        let (admitted, requests, tokens, at_ms): AdmitReply = self.run(&invocation).await?;
        let (requests, tokens) = buckets(requests, tokens, at_ms);
        let (_, _, answer) = Admission::decide(quota, requests, tokens, reserve);
        if answer.admitted != admitted {
            return Err(LimitError::Store(
                "the admit script and Admission::decide disagree".to_owned(),
            ));
        }
        Ok(answer)
    }

    async fn peek(
        &self,
        key: &str,
        quota: Quota,
    ) -> Result<(BucketStatus, BucketStatus), LimitError> {
        let invocation = self.invocation(&self.peek, key, quota);
        let (requests, tokens, at_ms): PeekReply = self.run(&invocation).await?;
        let (requests, tokens) = buckets(requests, tokens, at_ms);
        Ok((requests.status(quota.requests), tokens.status(quota.tokens)))
    }

    async fn settle(
        &self,
        key: &str,
        quota: Quota,
        reserved: u64,
        used: u64,
    ) -> Result<(), LimitError> {
        let mut invocation = self.invocation(&self.settle, key, quota);
        invocation.arg(reserved as f64 - used as f64);
        self.run(&invocation).await
    }
}
