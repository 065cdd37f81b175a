//! Token metering of the gateway: what usage costs, what was used, and how much may be used.
//!
//! - [`price`]: each service plan's dated prices per million input, cached input and output
//!   tokens, the exact cost of a request ([`rust_decimal::Decimal`], never a float) and the
//!   billing granularity (prorated, or per started million).
//! - [`record`]: the [`UsageRecord`] of one request (counts, ids, prices; never text).
//! - [`journal`]: the write-ahead file that makes a record durable before the client gets the
//!   end of its answer, and the writer that moves records into the [`UsageStore`].
//! - [`store`] and [`report`]: usage records and per-project limit overrides in SQLite or
//!   PostgreSQL; usage reports per model, day or key, as JSON or CSV.
//! - [`limit`] and [`policy`]: request and token budgets per project and model (the plan's
//!   limits or the project's overrides), kept in process or in Redis.

pub mod journal;
pub mod limit;
pub mod policy;
pub mod price;
pub mod record;
pub mod report;
pub mod store;

pub use limit::{
    Admission, BucketStatus, LimitError, LimiterState, LocalLimiter, Quota, Rate, RateLimiter,
    RedisLimiter, SharedLimiter, WhenUnavailable,
};
pub use policy::{LimitPolicy, PerMinute};
pub use price::{Granularity, Price, PriceError, PriceSheet, TokenPrices};
pub use record::{Outcome, Requester, TokenCounts, UsageRecord};
pub use store::{LimitOverride, StoreError, UsageQuery, UsageStore};
