//! Counting in Redis, so that N gateway replicas enforce one limit together (as Kong's
//! `redis` policy does). One Lua script per request does the whole GCRA step atomically
//! on Redis's own clock (`TIME`), so replicas with skewed clocks still agree. Every call
//! has a deadline; a failure or timeout makes the caller count locally, sets Redis aside
//! for a short backoff (so a dead Redis does not add its timeout to every request), and
//! shows in `gateway_rate_limit_store_available` and `gateway_rate_limit_fallback_total`.
//! (Connection handling follows `cache::redis`.)

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use redis::{
    Client, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tracing::{info, warn};

use super::{Key, gcra};
use crate::{config::Secret, metrics};

/// How long a failed Redis is left alone before a request tries it again.
const BACKOFF: Duration = Duration::from_secs(1);

/// GCRA in microseconds on Redis's clock, as `gcra::Gcra::decide` (a debt beyond the
/// limit is clamped to it). Returns `{admitted, debt}`: the debt the key carries after an
/// admission, or the debt that made the refusal. Numbers are formatted
/// with `%.0f` because Lua's default conversion would round them to 14 digits.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if tat > now + limit then
  tat = now + limit
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil(limit / 1000) + 1)
end
local next = tat + interval
if next - now > limit then
  return {0, string.format('%.0f', tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000) + 1)
return {1, string.format('%.0f', next - now)}
";

/// Redis could not decide (down, resting, slow, or a strange answer): count locally.
#[derive(Debug, Clone, Copy)]
pub struct StoreDown;

pub struct RedisCounter {
    inner: Arc<Inner>,
    script: Script,
}

struct Inner {
    client: Client,
    timeout: Duration,
    prefix: String,
    policy: Arc<str>,
    connection: ArcSwapOption<ConnectionManager>,
    connecting: AtomicBool,
    origin: Instant,
    /// Milliseconds since `origin` before which Redis is not tried.
    resting_until: AtomicU64,
}

impl RedisCounter {
    pub fn new(url: &Secret, timeout: Duration, prefix: &str, policy: &Arc<str>) -> Option<Self> {
        let client = url.expose_str().and_then(|url| Client::open(url).ok())?;
        metrics::RATE_LIMIT_STORE_AVAILABLE
            .with_label_values(&[&**policy])
            .set(0);
        Some(RedisCounter {
            inner: Arc::new(Inner {
                client,
                timeout,
                prefix: format!("{prefix}{policy}:"),
                policy: policy.clone(),
                connection: ArcSwapOption::empty(),
                connecting: AtomicBool::new(false),
                origin: Instant::now(),
                resting_until: AtomicU64::new(0),
            }),
            script: Script::new(SCRIPT),
        })
    }

    pub fn available(&self) -> bool {
        let inner = &self.inner;
        inner.connection.load().is_some()
            && inner.origin.elapsed().as_millis() as u64
                >= inner.resting_until.load(Ordering::Relaxed)
    }

    /// One GCRA step for `key` in Redis; `Err` when Redis cannot answer in time.
    pub async fn check(
        &self,
        key: &Key<'_>,
        gcra: &gcra::Gcra,
    ) -> Result<gcra::Decision, StoreDown> {
        let mut connection = self.connection()?;
        let interval = micros(gcra.interval()).max(1);
        let limit = interval.saturating_mul(u64::from(gcra.burst()));
        let redis_key = format!("{}{}", self.inner.prefix, key.redis_suffix());
        let mut invocation = self.script.key(redis_key);
        invocation.arg(interval).arg(limit);
        let call = invocation.invoke_async::<(i64, String)>(&mut connection);
        let (admitted, debt) = match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(self.failed(format!("Redis error: {error}"))),
            Err(_) => {
                return Err(self.failed(format!(
                    "Redis did not answer within {:?}",
                    self.inner.timeout
                )));
            }
        };
        let Ok(debt) = debt.parse::<u64>() else {
            return Err(self.failed(format!("unexpected answer from the script: {debt:?}")));
        };
        metrics::RATE_LIMIT_STORE_AVAILABLE
            .with_label_values(&[&*self.inner.policy])
            .set(1);
        Ok(if admitted == 1 {
            gcra::Decision {
                allowed: true,
                tat: 0,
                remaining: u32::try_from(limit.saturating_sub(debt) / interval).unwrap_or(u32::MAX),
                reset: Duration::from_micros(debt),
                retry_after: Duration::ZERO,
            }
        } else {
            gcra::Decision {
                allowed: false,
                tat: 0,
                remaining: 0,
                reset: Duration::from_micros(debt),
                retry_after: Duration::from_micros((debt + interval).saturating_sub(limit)),
            }
        })
    }

    /// A connection, or `Err` at once while Redis is resting or still connecting.
    fn connection(&self) -> Result<ConnectionManager, StoreDown> {
        let inner = &self.inner;
        let now = inner.origin.elapsed().as_millis() as u64;
        if now < inner.resting_until.load(Ordering::Relaxed) {
            return Err(StoreDown);
        }
        match inner.connection.load_full() {
            Some(connection) => Ok((*connection).clone()),
            None => {
                self.connect_in_background();
                Err(StoreDown)
            }
        }
    }

    /// Starts connecting now rather than on the first request.
    pub fn connect_in_background(&self) {
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
                        metrics::RATE_LIMIT_STORE_AVAILABLE
                            .with_label_values(&[&*inner.policy])
                            .set(1);
                        info!(policy = %inner.policy, "rate limit counting in Redis");
                        break;
                    }
                    Err(error) => {
                        warn!(policy = %inner.policy, %error, "rate limit cannot connect to Redis; counting locally");
                        tokio::time::sleep(BACKOFF).await;
                    }
                }
            }
            inner.connecting.store(false, Ordering::Release);
        });
    }

    fn failed(&self, error: String) -> StoreDown {
        metrics::RATE_LIMIT_STORE_AVAILABLE
            .with_label_values(&[&*self.inner.policy])
            .set(0);
        let rest_until = self.inner.origin.elapsed() + BACKOFF;
        self.inner
            .resting_until
            .store(rest_until.as_millis() as u64, Ordering::Relaxed);
        warn!(policy = %self.inner.policy, %error, "rate limit store unavailable; counting locally");
        StoreDown
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
