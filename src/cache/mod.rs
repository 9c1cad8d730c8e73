//! The response cache for GET: which responses may be stored, under which key, and when a
//! stored one answers (fresh hit, or stale while the upstream fails). `request_filter`
//! looks up after authentication; `upstream_response_filter` decides storability and
//! invalidates on writes; `response_body_filter` collects the body to store. Each route
//! path and owner has a generation counter, and an entry answers only under the generation
//! it was stored in, so invalidating a route for a user is one counter bump (O(1)) in
//! memory and in Redis alike. A lookup reads the counter and the entry together: one
//! operation, one round trip to Redis (`MGET`). Concurrent misses for one key make one
//! upstream request.

mod entry;
mod key;
mod memory;
mod redis;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use http::{HeaderMap, Method, header};
use tokio::sync::watch;

pub use self::{
    entry::{CachedResponse, Collector},
    key::{Owner, normalize_query},
    memory::{MemoryStore, unix_ms},
    redis::RedisStore,
};
use crate::redis_link::Health;
use crate::{
    config::{CacheScope, ResponseCacheSettings, RouteCachePolicy, StoreSettings},
    metrics,
};

/// A store operation failed; the request goes on uncached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Where entries and generation counters live.
#[async_trait]
pub trait Store: Send + Sync {
    fn label(&self) -> &'static str;
    /// The current value of the generation counter `generation_key` (0 or a fresh value
    /// when it has none) and the entry stored under `entry_key`, read in one operation.
    async fn current(
        &self,
        generation_key: &str,
        entry_key: &str,
    ) -> Result<(u64, Option<CachedResponse>), StoreError>;
    /// Moves each counter to a value it never had.
    async fn bump(&self, keys: &[String]) -> Result<(), StoreError>;
    /// Stores until the entry's `stale_until`.
    async fn put(&self, key: String, entry: CachedResponse) -> Result<(), StoreError>;
    /// Entries and bytes held, when the store can tell cheaply.
    fn usage(&self) -> Option<(u64, u64)>;
    /// Starts connecting in the background, if the store needs a connection.
    fn connect(&self) {}
    /// The state of the store's connection, for a store that has one.
    fn health(&self) -> Option<Health> {
        None
    }
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Fresh(CachedResponse),
    /// Expired, but may still answer if the upstream fails.
    Stale(CachedResponse),
    Miss,
}

/// The cache identity of one request, computed once in `request_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// Where the entry is stored: a digest of route, path, query and owner.
    pub key: String,
    /// The generation counter of the route path and owner.
    pub generation_key: String,
    /// The counter's value at the last lookup: a response fetched now is stored under it,
    /// and answers only while the counter still holds it.
    pub generation: u64,
    pub policy: RouteCachePolicy,
}

pub struct ResponseCache {
    store: Arc<dyn Store>,
    key_prefix: String,
    max_entry_bytes: u64,
    in_flight: moka::sync::Cache<String, Arc<watch::Sender<bool>>>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("store", &self.store.label())
            .finish_non_exhaustive()
    }
}

/// Whether this request leads the upstream fetch for its key or waited for another.
pub enum Coalesced {
    Leader(LeaderGuard),
    Waited,
}

/// Held by the request that fetches a key; waiters wake when it is dropped (after the
/// store write, or when the request ends without one).
pub struct LeaderGuard {
    in_flight: moka::sync::Cache<String, Arc<watch::Sender<bool>>>,
    key: String,
    done: Arc<watch::Sender<bool>>,
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        self.in_flight.invalidate(&self.key);
        let _ = self.done.send(true);
    }
}

impl std::fmt::Debug for LeaderGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaderGuard")
    }
}

impl ResponseCache {
    pub fn new(settings: &ResponseCacheSettings) -> Result<Self, StoreError> {
        let (store, key_prefix): (Arc<dyn Store>, String) = match &settings.store {
            StoreSettings::Memory => (
                Arc::new(MemoryStore::new(settings.max_entries, settings.max_bytes)),
                String::new(),
            ),
            StoreSettings::Redis {
                url,
                timeout,
                key_prefix,
            } => (
                Arc::new(RedisStore::new(
                    url.expose_str()
                        .ok_or_else(|| StoreError("the Redis URL is not UTF-8".to_owned()))?,
                    *timeout,
                )?),
                key_prefix.clone(),
            ),
        };
        Ok(Self::with_store(
            store,
            key_prefix,
            settings.max_entry_bytes,
        ))
    }

    pub fn with_store(store: Arc<dyn Store>, key_prefix: String, max_entry_bytes: u64) -> Self {
        ResponseCache {
            store,
            key_prefix,
            max_entry_bytes,
            in_flight: moka::sync::Cache::builder().max_capacity(100_000).build(),
        }
    }

    /// Starts connecting a remote store now rather than on the first request.
    pub fn connect(&self) {
        self.store.connect();
    }

    pub fn store_label(&self) -> &'static str {
        self.store.label()
    }

    /// The state of a remote store's connection (`None` for the memory store).
    pub fn store_health(&self) -> Option<Health> {
        self.store.health()
    }

    pub fn max_entry_bytes(&self) -> u64 {
        self.max_entry_bytes
    }

    /// Publishes the store's size in the gauges (called before a scrape).
    pub fn report_usage(&self) {
        if let Some((entries, bytes)) = self.store.usage() {
            metrics::CACHE_ENTRIES.set(i64::try_from(entries).unwrap_or(i64::MAX));
            metrics::CACHE_BYTES.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// The key of a GET on a cached route, or `None` when it must not be cached (a user
    /// route without a user).
    pub fn request_key(
        &self,
        route_path: &str,
        policy: RouteCachePolicy,
        path: &str,
        query: Option<&str>,
        user: Option<i64>,
    ) -> Option<RequestKey> {
        let owner = Owner::for_scope(policy.scope, user)?;
        Some(RequestKey {
            key: key::entry_key(&self.key_prefix, route_path, path, query, owner),
            generation_key: key::generation_key(&self.key_prefix, route_path, owner),
            generation: 0,
            policy,
        })
    }

    /// Looks `key` up: the current generation (kept in `key`, for storing) and the entry,
    /// which answers only if it was stored under that generation. `Err` when the store
    /// cannot be asked: the request goes on uncached.
    pub async fn lookup(
        &self,
        key: &mut RequestKey,
        now: SystemTime,
    ) -> Result<Lookup, StoreError> {
        let (generation, entry) = self.store.current(&key.generation_key, &key.key).await?;
        key.generation = generation;
        let now = unix_ms(now);
        Ok(match entry {
            Some(entry) if entry.generation != generation => Lookup::Miss,
            Some(entry) if entry.is_fresh(now) => Lookup::Fresh(entry),
            Some(entry) if entry.is_usable_stale(now) => Lookup::Stale(entry),
            _ => Lookup::Miss,
        })
    }

    /// Becomes the leader for `key`, or waits (at most `patience`) for the current leader.
    pub async fn coalesce(&self, key: &RequestKey, patience: Duration) -> Coalesced {
        let (done, _) = watch::channel(false);
        let done = Arc::new(done);
        let entry = self
            .in_flight
            .entry_by_ref(&key.key)
            .or_insert_with(|| done.clone());
        if entry.is_fresh() {
            return Coalesced::Leader(LeaderGuard {
                in_flight: self.in_flight.clone(),
                key: key.key.clone(),
                done,
            });
        }
        let mut finished = entry.into_value().subscribe();
        let _ = tokio::time::timeout(patience, finished.wait_for(|done| *done)).await;
        Coalesced::Waited
    }

    /// Stores a response; the leader guard (if any) is released once it is written. Called
    /// from a synchronous body filter: a store that can write at once (memory) does so
    /// before this returns, so the next request already hits; a remote one finishes in a
    /// spawned task.
    pub fn store(&self, key: &RequestKey, response: CachedResponse, leader: Option<LeaderGuard>) {
        let store = self.store.clone();
        let entry_key = key.key.clone();
        let mut entry = response;
        entry.generation = key.generation;
        let mut write = Box::pin(async move {
            // Errors are counted by the store; the response already went out.
            let _ = store.put(entry_key, entry).await;
            drop(leader);
        });
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        if write.as_mut().poll(&mut context).is_pending() {
            tokio::spawn(write);
        }
    }

    /// After a successful write: every entry of these route paths for `user`, and their
    /// shared entries, become unreachable.
    pub async fn invalidate(&self, route_paths: &[Arc<str>], user: Option<i64>) {
        let mut keys = Vec::with_capacity(route_paths.len() * 2);
        for path in route_paths {
            keys.push(key::generation_key(&self.key_prefix, path, Owner::Everyone));
            if let Some(id) = user {
                keys.push(key::generation_key(&self.key_prefix, path, Owner::User(id)));
            }
        }
        let _ = self.store.bump(&keys).await;
    }
}

/// Whether a method's response may be served from or stored in the cache.
pub fn is_cacheable_method(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

/// Whether the client asked to skip stored responses (`Cache-Control: no-cache`, or the
/// legacy `Pragma: no-cache`).
pub fn client_wants_fresh(headers: &HeaderMap) -> bool {
    let directive = |name| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
            })
        })
    };
    directive(header::CACHE_CONTROL) || directive(header::PRAGMA)
}

/// Whether an upstream response may be stored under `scope`: a 200 without `Set-Cookie`,
/// without `no-store`, and `private` only when the entry belongs to one user.
pub fn is_storable(status: u16, headers: &HeaderMap, scope: CacheScope) -> bool {
    if status != 200 || headers.contains_key(header::SET_COOKIE) {
        return false;
    }
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
            let name = directive.split('=').next().unwrap_or("");
            match name {
                "no-store" => return false,
                "private" if scope == CacheScope::Shared => return false,
                _ => {}
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
