//! Verification of model API keys on the request path, with an in-memory cache.
//!
//! A cache entry (found or not found) lives at most [`KeyVerifier::max_age`] (default 500 ms),
//! so a key deleted through any replica sharing the database stops working everywhere within
//! that time. Expiry is checked against the clock on every call, so it takes effect at once.
//! A cached call costs one SHA-256 and a hash-map lookup under a read lock. An entry used in
//! the second half of its life is read again from the store in the background, so that a key
//! in steady use never waits for the store on the request path.
//!
//! While the store cannot be read (its database is down), a key found by a read less than
//! [`KeyVerifier::with_outage_grace`] ago (default: none) is still accepted. Every read is
//! bounded by [`STORE_TIMEOUT`]; once one has failed, such keys are accepted at once and read
//! again in the background, so requests do not queue behind an unreachable database, and the
//! first read that succeeds ends the outage. Keys never read are not accepted, and expiry
//! still holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::error::{AuthError, StoreError};
use crate::key::{CredentialKind, KeyDigest};
use crate::store::Store;

/// Default cache age: revocation is honoured within this time on every replica.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_millis(500);
/// Default number of cached keys.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// Longest wait for one read of a key from the store before it counts as failed.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// A verified key: what the request may do and whom to bill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedKey {
    /// The key's project.
    pub project_id: Uuid,
    /// The key (token) id.
    pub key_id: Uuid,
    /// Models the key may use; `None` means all.
    pub allowed_models: Option<Arc<[String]>>,
}

impl VerifiedKey {
    /// Whether the key may use `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }
}

#[derive(Clone)]
struct CachedKey {
    digest: KeyDigest,
    expires_at: Option<DateTime<Utc>>,
    verified: VerifiedKey,
}

#[derive(Clone)]
struct CacheEntry {
    fetched: Instant,
    key: Option<CachedKey>,
    /// Whether a background read of this key is under way.
    refreshing: bool,
}

/// What the cache holds for a key.
enum Cached {
    /// Nothing usable: the store must be read.
    Missing,
    /// An entry younger than the cache age (`key` is `None` for "not found"), and whether a
    /// background read is due.
    Fresh {
        key: Option<CachedKey>,
        refresh_due: bool,
    },
    /// A key found by a read older than the cache age but within the outage grace.
    InGrace(CachedKey),
}

/// The cached keys by public id, shared with background refreshes.
type Cache = Arc<RwLock<HashMap<String, CacheEntry>>>;

/// Resolves bearer keys to [`VerifiedKey`]s. Share one per process (it is `Send + Sync`).
#[derive(Debug)]
pub struct KeyVerifier {
    clock: Arc<dyn Clock>,
    outage_grace: Duration,
    /// The store, the cache and the cache's limits, shared with background reads.
    reader: Reader,
}

impl std::fmt::Debug for CacheEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheEntry")
    }
}

impl KeyVerifier {
    /// A verifier on `store` with the system clock and default cache settings.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            clock: Arc::new(SystemClock),
            outage_grace: Duration::ZERO,
            reader: Reader {
                store,
                cache: Arc::default(),
                max_age: DEFAULT_MAX_AGE,
                capacity: DEFAULT_CAPACITY,
                failing: Arc::default(),
            },
        }
    }

    /// Accepts a key found by a read up to `grace` ago while the store cannot be read.
    pub fn with_outage_grace(mut self, grace: Duration) -> Self {
        self.outage_grace = grace;
        self
    }

    /// Uses `clock` for expiry checks.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the cache age, i.e. how late a revocation may be noticed (zero disables caching).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.reader.max_age = max_age;
        self
    }

    /// Sets how many keys are cached at most.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.reader.capacity = capacity;
        self
    }

    /// The cache age.
    pub fn max_age(&self) -> Duration {
        self.reader.max_age
    }

    /// Checks a presented key (the bearer token without `Bearer `). Every failure is
    /// [`AuthError::InvalidKey`], except a store failure on a cache miss.
    pub async fn verify(&self, presented: &str) -> Result<VerifiedKey, AuthError> {
        let public_id = CredentialKind::ApiKey
            .public_id(presented)
            .ok_or(AuthError::InvalidKey)?;
        let digest = KeyDigest::of(presented);
        let key = match self.cached(public_id) {
            Cached::Fresh { key, refresh_due } => {
                if refresh_due {
                    self.refresh_in_background(public_id);
                }
                key
            }
            Cached::InGrace(key) if self.reader.failing.load(Ordering::Relaxed) => {
                self.refresh_in_background(public_id);
                Some(key)
            }
            Cached::InGrace(key) => self.reader.read(public_id).await.unwrap_or(Some(key)),
            Cached::Missing => self.reader.read(public_id).await?,
        };
        match key {
            Some(key)
                if key.digest.ct_eq(&digest)
                    && key.expires_at.is_none_or(|t| t > self.clock.now()) =>
            {
                Ok(key.verified)
            }
            _ => Err(AuthError::InvalidKey),
        }
    }

    /// Drops every cached entry.
    pub fn clear_cache(&self) {
        self.reader
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// What the cache holds for `public_id`.
    fn cached(&self, public_id: &str) -> Cached {
        let cache = self
            .reader
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = cache.get(public_id) else {
            return Cached::Missing;
        };
        let age = entry.fetched.elapsed();
        if age < self.reader.max_age {
            Cached::Fresh {
                key: entry.key.clone(),
                refresh_due: !entry.refreshing && age >= self.reader.max_age / 2,
            }
        } else if age < self.reader.max_age + self.outage_grace {
            entry.key.clone().map_or(Cached::Missing, Cached::InGrace)
        } else {
            Cached::Missing
        }
    }

    /// Reads `public_id` again on a task of its own (when a Tokio runtime runs), unless a read
    /// is already under way; a failed read leaves the entry as it was.
    fn refresh_in_background(&self, public_id: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut cache = self
                .reader
                .cache
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            match cache.get_mut(public_id) {
                Some(entry) if !entry.refreshing => entry.refreshing = true,
                _ => return,
            }
        }
        let reader = self.reader.clone();
        let public_id = public_id.to_owned();
        runtime.spawn(async move {
            if reader.read(&public_id).await.is_err() {
                let mut cache = reader.cache.write().unwrap_or_else(PoisonError::into_inner);
                if let Some(entry) = cache.get_mut(&public_id) {
                    entry.refreshing = false;
                }
            }
        });
    }
}

/// What a read of a key needs: the store, the cache it fills and where it records whether the
/// store answered. Its clones share all of it.
#[derive(Clone, Debug)]
struct Reader {
    store: Arc<dyn Store>,
    cache: Cache,
    max_age: Duration,
    capacity: usize,
    /// Whether the latest read of the store failed.
    failing: Arc<AtomicBool>,
}

impl Reader {
    /// Reads the key `public_id` within [`STORE_TIMEOUT`], records whether the store answered,
    /// and caches what was found (also "not found") with the time the read began.
    async fn read(&self, public_id: &str) -> Result<Option<CachedKey>, AuthError> {
        let fetched = Instant::now();
        let read = self.store.key_by_public_id(public_id);
        let record = match tokio::time::timeout(STORE_TIMEOUT, read).await {
            Ok(Ok(record)) => record,
            Ok(Err(error)) => return Err(self.failed(error.into())),
            Err(_) => {
                let timed_out = StoreError::Database(sqlx::Error::PoolTimedOut);
                return Err(self.failed(AuthError::Store(timed_out)));
            }
        };
        self.failing.store(false, Ordering::Relaxed);
        let key = record.map(|record| CachedKey {
            digest: record.digest,
            expires_at: record.expires_at,
            verified: VerifiedKey {
                project_id: record.project_id,
                key_id: record.id,
                allowed_models: record.allowed_models.map(Arc::from),
            },
        });
        self.remember(public_id, fetched, key.clone());
        Ok(key)
    }

    fn failed(&self, error: AuthError) -> AuthError {
        self.failing.store(true, Ordering::Relaxed);
        error
    }

    fn remember(&self, public_id: &str, fetched: Instant, key: Option<CachedKey>) {
        if self.max_age.is_zero() || self.capacity == 0 {
            return;
        }
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.capacity {
            cache.retain(|_, entry| entry.fetched.elapsed() < self.max_age);
            if cache.len() >= self.capacity {
                cache.clear();
            }
        }
        let entry = CacheEntry {
            fetched,
            key,
            refreshing: false,
        };
        cache.insert(public_id.to_owned(), entry);
    }
}
