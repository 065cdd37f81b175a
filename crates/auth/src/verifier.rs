//! Verification of model API keys on the request path, with an in-memory cache.
//!
//! A cache entry (found or not found) lives at most [`KeyVerifier::max_age`] (default 500 ms),
//! so a key deleted through any replica sharing the database stops working everywhere within
//! that time. Expiry is checked against the clock on every call, so it takes effect at once.
//! A cached call costs one SHA-256 and a hash-map lookup under a read lock. An entry used in
//! the second half of its life is read again from the store in the background, so that a key
//! in steady use never waits for the store on the request path.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::error::AuthError;
use crate::key::{CredentialKind, KeyDigest};
use crate::store::Store;

/// Default cache age: revocation is honoured within this time on every replica.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_millis(500);
/// Default number of cached keys.
pub const DEFAULT_CAPACITY: usize = 100_000;

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

/// The cached keys by public id, shared with background refreshes.
type Cache = Arc<RwLock<HashMap<String, CacheEntry>>>;

/// Resolves bearer keys to [`VerifiedKey`]s. Share one per process (it is `Send + Sync`).
#[derive(Debug)]
pub struct KeyVerifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    max_age: Duration,
    capacity: usize,
    cache: Cache,
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
            store,
            clock: Arc::new(SystemClock),
            max_age: DEFAULT_MAX_AGE,
            capacity: DEFAULT_CAPACITY,
            cache: Arc::default(),
        }
    }

    /// Uses `clock` for expiry checks.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the cache age, i.e. how late a revocation may be noticed (zero disables caching).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Sets how many keys are cached at most.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The cache age.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Checks a presented key (the bearer token without `Bearer `). Every failure is
    /// [`AuthError::InvalidKey`], except a store failure on a cache miss.
    pub async fn verify(&self, presented: &str) -> Result<VerifiedKey, AuthError> {
        let public_id = CredentialKind::ApiKey
            .public_id(presented)
            .ok_or(AuthError::InvalidKey)?;
        let digest = KeyDigest::of(presented);
        let cached = {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            cache
                .get(public_id)
                .filter(|entry| entry.fetched.elapsed() < self.max_age)
                .map(|entry| {
                    let due = !entry.refreshing && entry.fetched.elapsed() >= self.max_age / 2;
                    (entry.key.clone(), due)
                })
        };
        let key = match cached {
            Some((key, refresh_due)) => {
                if refresh_due {
                    self.refresh_in_background(public_id);
                }
                key
            }
            None => self.fetch(public_id).await?,
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
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    async fn fetch(&self, public_id: &str) -> Result<Option<CachedKey>, AuthError> {
        load(self.store.as_ref(), &self.cache, self.limits(), public_id).await
    }

    fn limits(&self) -> (Duration, usize) {
        (self.max_age, self.capacity)
    }

    /// Reads `public_id` again on a task of its own (when a Tokio runtime runs), unless a read
    /// is already under way; a failed read leaves the entry to expire.
    fn refresh_in_background(&self, public_id: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            match cache.get_mut(public_id) {
                Some(entry) if !entry.refreshing => entry.refreshing = true,
                _ => return,
            }
        }
        let (store, cache, limits) = (
            Arc::clone(&self.store),
            Arc::clone(&self.cache),
            self.limits(),
        );
        let public_id = public_id.to_owned();
        runtime.spawn(async move {
            if load(store.as_ref(), &cache, limits, &public_id)
                .await
                .is_err()
            {
                let mut cache = cache.write().unwrap_or_else(PoisonError::into_inner);
                if let Some(entry) = cache.get_mut(&public_id) {
                    entry.refreshing = false;
                }
            }
        });
    }
}

/// Reads the key `public_id` from `store` and caches what was found (also "not found") with
/// the time the read began, within `(max_age, capacity)`.
async fn load(
    store: &dyn Store,
    cache: &RwLock<HashMap<String, CacheEntry>>,
    (max_age, capacity): (Duration, usize),
    public_id: &str,
) -> Result<Option<CachedKey>, AuthError> {
    let fetched = Instant::now();
    let key = store
        .key_by_public_id(public_id)
        .await?
        .map(|record| CachedKey {
            digest: record.digest,
            expires_at: record.expires_at,
            verified: VerifiedKey {
                project_id: record.project_id,
                key_id: record.id,
                allowed_models: record.allowed_models.map(Arc::from),
            },
        });
    if max_age > Duration::ZERO && capacity > 0 {
        let mut cache = cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= capacity {
            cache.retain(|_, entry| entry.fetched.elapsed() < max_age);
            if cache.len() >= capacity {
                cache.clear();
            }
        }
        let entry = CacheEntry {
            fetched,
            key: key.clone(),
            refreshing: false,
        };
        cache.insert(public_id.to_owned(), entry);
    }
    Ok(key)
}
