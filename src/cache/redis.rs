//! The Redis store, shared by several gateway replicas. Every operation has a deadline of
//! tens of milliseconds; a failure or a timeout makes the request go on uncached (never an
//! error to the client) and counts in `gateway_cache_store_errors_total`. The connection
//! is a [`RedisLink`]: one multiplexed connection, discarded on any failure but an error
//! reply and reopened in the background, so caching resumes by itself within
//! [`RETRY_EVERY`](crate::redis_link::RETRY_EVERY) of Redis answering again.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use redis::{AsyncCommands, aio::MultiplexedConnection};

use super::{CachedResponse, Store, StoreError};
use crate::{
    metrics,
    redis_link::{Health, RedisConnector, RedisLink, Signals},
};

/// Generation counters outlive every entry (validation caps ttl + stale at 24 h).
const GENERATION_TTL_SECS: i64 = 2 * 24 * 3600;

pub struct RedisStore {
    link: RedisLink,
}

impl RedisStore {
    /// `url` was checked at config load; an error here never repeats it (it may hold a
    /// password).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let connector =
            RedisConnector::new(url).map_err(|e| StoreError(format!("invalid Redis URL: {e}")))?;
        let signals = Signals {
            what: "cache store",
            meanwhile: "serving uncached",
            name: Arc::from("redis"),
            available: &metrics::CACHE_STORE_AVAILABLE,
            errors: &metrics::CACHE_STORE_ERRORS,
        };
        Ok(RedisStore {
            link: RedisLink::new(connector, signals, timeout),
        })
    }

    async fn run<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.link
            .run(operation)
            .await
            .map_err(|(failure, message)| {
                StoreError(format!("Redis {}: {message}", failure.as_str()))
            })
    }
}

#[async_trait]
impl Store for RedisStore {
    fn label(&self) -> &'static str {
        "redis"
    }

    async fn current(
        &self,
        generation_key: &str,
        entry_key: &str,
    ) -> Result<(u64, Option<CachedResponse>), StoreError> {
        // One round trip: the counter and the entry in one MGET.
        let (generation, entry): (Option<u64>, Option<Vec<u8>>) = self
            .run(|mut c| async move {
                redis::cmd("MGET")
                    .arg(generation_key)
                    .arg(entry_key)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok((
            generation.unwrap_or(0),
            entry.and_then(CachedResponse::decode_owned),
        ))
    }

    async fn bump(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.incr(key, 1)
                .ignore()
                .expire(key, GENERATION_TTL_SECS)
                .ignore();
        }
        self.run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
            .await
    }

    async fn put(&self, key: String, entry: CachedResponse) -> Result<(), StoreError> {
        let now = super::memory::unix_ms(std::time::SystemTime::now());
        let ttl_ms = entry.stale_until.saturating_sub(now).max(1);
        let bytes = entry.encode();
        self.run(|mut c| async move { c.pset_ex::<_, _, ()>(key, bytes, ttl_ms).await })
            .await
    }

    fn usage(&self) -> Option<(u64, u64)> {
        None
    }

    fn connect(&self) {
        self.link.start();
    }

    fn health(&self) -> Option<Health> {
        Some(self.link.health())
    }
}
