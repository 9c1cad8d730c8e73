//! The Redis store, shared by several gateway replicas. Every operation has a deadline of
//! tens of milliseconds; a failure or a timeout makes the request go on uncached (never an
//! error to the client), counts in `gateway_cache_store_errors_total`, and sets the store
//! aside for a short backoff so a dead Redis does not add its timeout to every request.
//! Connecting (and reconnecting) happens in the background; caching resumes by itself.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use redis::{
    AsyncCommands, Client,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tracing::{info, warn};

use super::{CachedResponse, Store, StoreError};
use crate::metrics;

/// How long a failed Redis is left alone before the next request tries it again.
const BACKOFF: Duration = Duration::from_secs(1);
/// Generation counters outlive every entry (validation caps ttl + stale at 24 h).
const GENERATION_TTL_SECS: i64 = 2 * 24 * 3600;

pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    timeout: Duration,
    connection: ArcSwapOption<ConnectionManager>,
    connecting: AtomicBool,
    origin: Instant,
    /// Milliseconds since `origin` before which Redis is not tried.
    resting_until: AtomicU64,
}

impl RedisStore {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client =
            Client::open(url).map_err(|e| StoreError(format!("invalid Redis URL: {e}")))?;
        metrics::CACHE_STORE_AVAILABLE
            .with_label_values(&["redis"])
            .set(0);
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                timeout,
                connection: ArcSwapOption::empty(),
                connecting: AtomicBool::new(false),
                origin: Instant::now(),
                resting_until: AtomicU64::new(0),
            }),
        })
    }

    /// A connection, or an error right away while Redis is down or still connecting.
    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let inner = &self.inner;
        let now = inner.origin.elapsed().as_millis() as u64;
        if now < inner.resting_until.load(Ordering::Relaxed) {
            return Err(StoreError("Redis is resting after a failure".into()));
        }
        match inner.connection.load_full() {
            Some(connection) => Ok((*connection).clone()),
            None => {
                self.connect_in_background();
                Err(StoreError("Redis is not connected yet".into()))
            }
        }
    }

    fn connect_in_background(&self) {
        if self.inner.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(inner.timeout.max(Duration::from_millis(500)))
                .set_response_timeout(inner.timeout)
                .set_number_of_retries(2);
            loop {
                match ConnectionManager::new_with_config(inner.client.clone(), config.clone()).await
                {
                    Ok(connection) => {
                        inner.connection.store(Some(Arc::new(connection)));
                        metrics::CACHE_STORE_AVAILABLE
                            .with_label_values(&["redis"])
                            .set(1);
                        info!("cache store connected to Redis");
                        break;
                    }
                    Err(error) => {
                        warn!(%error, "cache store cannot connect to Redis; retrying");
                        tokio::time::sleep(BACKOFF).await;
                    }
                }
            }
            inner.connecting.store(false, Ordering::Release);
        });
    }

    /// Runs one operation under the deadline; failures put Redis to rest briefly.
    async fn run<T, F>(&self, operation: F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let outcome = tokio::time::timeout(self.inner.timeout, operation).await;
        let error = match outcome {
            Ok(Ok(value)) => {
                metrics::CACHE_STORE_AVAILABLE
                    .with_label_values(&["redis"])
                    .set(1);
                return Ok(value);
            }
            Ok(Err(error)) => format!("Redis error: {error}"),
            Err(_) => format!("Redis did not answer within {:?}", self.inner.timeout),
        };
        metrics::CACHE_STORE_ERRORS
            .with_label_values(&["redis"])
            .inc();
        metrics::CACHE_STORE_AVAILABLE
            .with_label_values(&["redis"])
            .set(0);
        let rest_until = self.inner.origin.elapsed() + BACKOFF;
        self.inner
            .resting_until
            .store(rest_until.as_millis() as u64, Ordering::Relaxed);
        warn!(%error, "cache store unavailable; serving uncached");
        Err(StoreError(error))
    }
}

#[async_trait]
impl Store for RedisStore {
    fn label(&self) -> &'static str {
        "redis"
    }

    async fn generation(&self, key: &str) -> Result<u64, StoreError> {
        let mut connection = self.connection()?;
        let value: Option<u64> = self.run(connection.get(key)).await?;
        Ok(value.unwrap_or(0))
    }

    async fn bump(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.incr(key, 1)
                .ignore()
                .expire(key, GENERATION_TTL_SECS)
                .ignore();
        }
        self.run(pipe.query_async::<()>(&mut connection)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Arc<CachedResponse>>, StoreError> {
        let mut connection = self.connection()?;
        let bytes: Option<Vec<u8>> = self.run(connection.get(key)).await?;
        Ok(bytes
            .as_deref()
            .and_then(CachedResponse::decode)
            .map(Arc::new))
    }

    async fn put(&self, key: String, entry: Arc<CachedResponse>) -> Result<(), StoreError> {
        let mut connection = self.connection()?;
        let now = super::memory::unix_ms(std::time::SystemTime::now());
        let ttl_ms = entry.stale_until.saturating_sub(now).max(1);
        self.run(connection.pset_ex::<_, _, ()>(key, entry.encode(), ttl_ms))
            .await
    }

    fn usage(&self) -> Option<(u64, u64)> {
        None
    }

    fn connect(&self) {
        self.connect_in_background();
    }
}
