//! Counting in Redis, so that N gateway replicas enforce one limit together (as Kong's
//! `redis` policy does). One Lua script per request does the whole GCRA step atomically
//! on Redis's own clock (`TIME`), so replicas with skewed clocks still agree. The
//! connection is a [`RedisLink`], the same as the cache store's: every call has the
//! policy's deadline; a failure or timeout makes the caller count locally, and any failure
//! but an error reply drops the connection, so until a new one answers (tried every 250 ms
//! in the background) every request counts locally at once, spending no deadline. It shows
//! in `gateway_rate_limit_store_available`, `gateway_rate_limit_store_errors_total` and
//! `gateway_rate_limit_fallback_total`.

use std::{sync::Arc, time::Duration};

use redis::Script;
use tracing::warn;

use super::{Key, gcra};
use crate::{
    config::Secret,
    metrics,
    redis_link::{RedisConnector, RedisLink, Signals},
};

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

/// Redis could not decide (down, reconnecting, slow, or a strange answer): count locally.
#[derive(Debug, Clone, Copy)]
pub struct StoreDown;

pub struct RedisCounter {
    link: RedisLink,
    script: Script,
    /// `key_prefix` and the policy's name.
    prefix: String,
    policy: Arc<str>,
}

impl RedisCounter {
    /// `None` if the URL does not open (it was checked at config load).
    pub fn new(url: &Secret, timeout: Duration, prefix: &str, policy: &Arc<str>) -> Option<Self> {
        let connector = url
            .expose_str()
            .and_then(|url| RedisConnector::new(url).ok())?;
        // From 0 (the link does its errors): the first local decision is an increase.
        metrics::RATE_LIMIT_FALLBACK.with_label_values(&[&**policy]);
        let signals = Signals {
            what: "rate limit store",
            meanwhile: "counting locally",
            name: policy.clone(),
            available: &metrics::RATE_LIMIT_STORE_AVAILABLE,
            errors: &metrics::RATE_LIMIT_STORE_ERRORS,
        };
        Some(RedisCounter {
            link: RedisLink::new(connector, signals, timeout),
            script: Script::new(SCRIPT),
            prefix: format!("{prefix}{policy}:"),
            policy: policy.clone(),
        })
    }

    /// Whether Redis has a connection that answers (false: counting locally).
    pub fn available(&self) -> bool {
        self.link.health().up
    }

    /// One GCRA step for `key` in Redis; `Err` when Redis cannot answer in time.
    pub async fn check(
        &self,
        key: &Key<'_>,
        gcra: &gcra::Gcra,
    ) -> Result<gcra::Decision, StoreDown> {
        let interval = micros(gcra.interval()).max(1);
        let limit = interval.saturating_mul(u64::from(gcra.burst()));
        let redis_key = format!("{}{}", self.prefix, key.redis_suffix());
        let script = &self.script;
        let answer = self
            .link
            .run(|mut connection| async move {
                let mut invocation = script.key(redis_key);
                invocation.arg(interval).arg(limit);
                invocation
                    .invoke_async::<(i64, String)>(&mut connection)
                    .await
            })
            .await;
        // The link counts and logs its failures.
        let (admitted, debt) = answer.map_err(|_| StoreDown)?;
        let Ok(debt) = debt.parse::<u64>() else {
            warn!(policy = %self.policy, answer = ?debt, "unexpected answer from the rate limit script; counting locally");
            return Err(StoreDown);
        };
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

    /// Starts connecting now rather than on the first request.
    pub fn connect_in_background(&self) {
        self.link.start();
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
