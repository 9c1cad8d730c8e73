//! Rate limits: the named policies of `rate_limits:` ([`RateLimiter`], one per policy) and
//! the limits on credential exchanges ([`exchange::ExchangeLimits`]). `request_filter`
//! asks [`RateLimiter::check`] about each request of a limited route and answers 429 with
//! `Retry-After` and the IETF `RateLimit` headers when refused.
//!
//! Each policy counts with GCRA ([`gcra`]) in a fixed-capacity table ([`table`]), or in
//! Redis ([`redis`]) so replicas share one limit, falling back to its own table while
//! Redis cannot answer. The tables and the Redis connection survive reloads that leave a
//! policy's key and store alone, so a rate change applies live without forgetting who
//! already spent what.

pub mod client;
pub mod exchange;
pub mod gcra;
mod redis;
pub mod table;

use std::{
    collections::hash_map::RandomState,
    hash::BuildHasher,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use self::client::client_address;
use self::{gcra::Gcra, redis::RedisCounter, table::Table};
use crate::{
    config::{Config, LimitStore, RateLimitHeaders, RateLimitKey, RateLimitPolicy},
    metrics,
};

/// What a request is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key<'a> {
    Client(IpAddr),
    User(i64),
    Route(&'a str),
}

impl Key<'_> {
    /// The key's text in Redis (shared by replicas, so it cannot be a keyed hash).
    fn redis_suffix(&self) -> String {
        match self {
            Key::Client(ip) => format!("client:{ip}"),
            Key::User(id) => format!("user:{id}"),
            Key::Route(route) => format!("route:{route}"),
        }
    }
}

/// One policy's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub policy: Arc<str>,
    pub allowed: bool,
    pub remaining: u32,
    pub reset: Duration,
    pub retry_after: Duration,
    pub burst: u32,
    pub window: Duration,
    /// Send the `RateLimit` headers even on an admitted request.
    pub always_headers: bool,
}

impl Verdict {
    fn new(limiter: &RateLimiter, decision: gcra::Decision) -> Self {
        Verdict {
            policy: limiter.policy.name.clone(),
            allowed: decision.allowed,
            remaining: decision.remaining,
            reset: decision.reset,
            retry_after: decision.retry_after,
            burst: limiter.gcra.burst(),
            window: limiter.gcra.window(),
            always_headers: limiter.policy.headers == RateLimitHeaders::Always,
        }
    }

    /// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-10): the quota `q` is the
    /// burst and the window `w` the time an exhausted key takes to be whole again.
    pub fn policy_header(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.policy,
            self.burst,
            whole_seconds(self.window)
        )
    }

    /// `RateLimit`: `r` requests remaining now; `t` seconds until the next request is
    /// admitted when none remain, else until the whole quota is back.
    pub fn limit_header(&self) -> String {
        let t = if self.allowed {
            self.reset
        } else {
            self.retry_after
        };
        format!(
            "\"{}\";r={};t={}",
            self.policy,
            self.remaining,
            whole_seconds(t)
        )
    }
}

/// Seconds rounded up, so a client that waits that long is served.
pub fn whole_seconds(d: Duration) -> u64 {
    u64::try_from(d.as_millis().div_ceil(1000)).unwrap_or(u64::MAX)
}

/// The state of one policy that outlives reloads.
struct Counts {
    table: Table,
    /// Keyed (random per process) so that nobody can aim keys at one bucket.
    hasher: RandomState,
    /// The zero of the table's TATs.
    origin: Instant,
    top: TopKeys,
}

/// One policy at run time.
pub struct RateLimiter {
    pub policy: RateLimitPolicy,
    gcra: Gcra,
    counts: Arc<Counts>,
    redis: Option<Arc<RedisCounter>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("policy", &self.policy.name)
            .field("gcra", &self.gcra)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter for `policy`, keeping `previous`'s counts when they still mean the same
    /// thing (same key, same store, same table size).
    pub fn new(policy: &RateLimitPolicy, previous: Option<&RateLimiter>) -> Self {
        let kept = previous.filter(|p| {
            p.policy.key == policy.key
                && p.policy.store == policy.store
                && p.policy.max_keys == policy.max_keys
        });
        let counts = kept.map_or_else(
            || {
                Arc::new(Counts {
                    table: Table::new(policy.max_keys),
                    hasher: RandomState::new(),
                    origin: Instant::now(),
                    top: TopKeys::default(),
                })
            },
            |p| p.counts.clone(),
        );
        let redis = match (&policy.store, kept) {
            (LimitStore::Memory, _) => None,
            (LimitStore::Redis { .. }, Some(p)) => p.redis.clone(),
            (
                LimitStore::Redis {
                    url,
                    timeout,
                    key_prefix,
                },
                None,
            ) => RedisCounter::new(url, *timeout, key_prefix, &policy.name).map(Arc::new),
        };
        // From 0, so that the first eviction is an increase (see `metrics::RouteSeries`).
        metrics::RATE_LIMIT_EVICTIONS.with_label_values(&[&*policy.name]);
        RateLimiter {
            gcra: Gcra::new(policy.rate.interval(), policy.burst),
            policy: policy.clone(),
            counts,
            redis,
        }
    }

    /// Counts one request of `key` at `now`.
    pub async fn check(&self, key: Key<'_>, now: Instant) -> Verdict {
        if let Some(redis) = &self.redis {
            match redis.check(&key, &self.gcra).await {
                Ok(decision) => return self.conclude(key, decision),
                Err(redis::StoreDown) => {
                    metrics::RATE_LIMIT_FALLBACK
                        .with_label_values(&[&*self.policy.name])
                        .inc();
                }
            }
        }
        let decision = self.check_local(key, now);
        self.conclude(key, decision)
    }

    fn check_local(&self, key: Key<'_>, now: Instant) -> gcra::Decision {
        let hash = self.counts.hasher.hash_one(key);
        let now_ns = nanos(now.saturating_duration_since(self.counts.origin));
        let gcra = self.gcra;
        let (decision, evicted) = self.counts.table.update(hash, now_ns, |tat| {
            let decision = gcra.decide(tat, now_ns);
            // Stored on refusal too: the TAT may have been clamped (see `Gcra::decide`).
            (Some(decision.tat), decision)
        });
        if evicted.is_some_and(|e| e.live) {
            metrics::RATE_LIMIT_EVICTIONS
                .with_label_values(&[&*self.policy.name])
                .inc();
        }
        decision
    }

    fn conclude(&self, key: Key<'_>, decision: gcra::Decision) -> Verdict {
        if !decision.allowed {
            self.counts.top.note(self.counts.hasher.hash_one(key));
        }
        Verdict::new(self, decision)
    }

    /// What the admin page shows of this policy.
    pub fn report(&self) -> PolicyReport {
        PolicyReport {
            name: self.policy.name.to_string(),
            key: match self.policy.key {
                RateLimitKey::Client => "client",
                RateLimitKey::User => "user",
                RateLimitKey::Route => "route",
            },
            rate: format!(
                "{}/{}",
                self.policy.rate.count,
                humantime::format_duration(self.policy.rate.per)
            ),
            burst: self.policy.burst,
            store: if self.redis.is_some() {
                "redis"
            } else {
                "memory"
            },
            redis_available: self.redis.as_ref().map(|r| r.available()),
            max_keys: self.counts.table.capacity(),
            memory_bytes: self.counts.table.bytes(),
            top_limited: self.counts.top.snapshot(),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Every policy of one config, and the credential-exchange limits.
#[derive(Debug)]
pub struct RateLimits {
    /// In `Config::rate_limits` order: a route's `rate_limit` index is an index here.
    pub policies: Vec<RateLimiter>,
    pub exchange: Option<Arc<exchange::ExchangeLimits>>,
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

impl RateLimits {
    pub fn new(config: &Config, previous: Option<&RateLimits>) -> Self {
        let policies = config
            .rate_limits
            .iter()
            .map(|policy| {
                let before =
                    previous.and_then(|p| p.policies.iter().find(|l| l.policy.name == policy.name));
                RateLimiter::new(policy, before)
            })
            .collect();
        let exchange = config.exchange_limits.map(|settings| {
            let before = previous.and_then(|p| p.exchange.as_deref());
            Arc::new(exchange::ExchangeLimits::new(settings, before))
        });
        RateLimits {
            policies,
            exchange,
            trusted_proxies: Arc::from(config.server.trusted_proxies.as_slice()),
        }
    }

    pub fn policy(&self, index: usize) -> Option<&RateLimiter> {
        self.policies.get(index)
    }

    /// Connects the policies that count in Redis now, so that the first requests need not
    /// be counted locally while they connect (needs a Tokio runtime).
    pub fn connect(&self) {
        for redis in self.policies.iter().filter_map(|p| p.redis.as_ref()) {
            redis.connect_in_background();
        }
    }
}

/// Most keys listed as the most limited per policy.
const TOP_KEYS: usize = 10;

/// The keys refused most often (approximately: space-saving counts, updated only when a
/// lock is free, so a flood of refusals never queues on it).
#[derive(Default)]
struct TopKeys {
    entries: Mutex<Vec<(u64, u64)>>,
}

impl TopKeys {
    fn note(&self, hash: u64) {
        let Ok(mut entries) = self.entries.try_lock() else {
            return;
        };
        if let Some(entry) = entries.iter_mut().find(|(h, _)| *h == hash) {
            entry.1 += 1;
        } else if entries.len() < TOP_KEYS {
            entries.push((hash, 1));
        } else if let Some(smallest) = entries.iter_mut().min_by_key(|(_, n)| *n) {
            // Space-saving: the newcomer inherits the smallest count, an upper bound of its own.
            *smallest = (hash, smallest.1 + 1);
        }
    }

    fn snapshot(&self) -> Vec<LimitedKey> {
        let mut entries = self.entries.lock().map(|e| e.clone()).unwrap_or_default();
        entries.sort_by_key(|e| std::cmp::Reverse(e.1));
        entries
            .into_iter()
            .map(|(hash, limited)| LimitedKey {
                key: format!("{hash:016x}"),
                limited,
            })
            .collect()
    }
}

/// One policy on `/admin/limits`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyReport {
    pub name: String,
    pub key: &'static str,
    pub rate: String,
    pub burst: u32,
    pub store: &'static str,
    /// For `store: redis`: whether Redis answers (false: counting locally).
    pub redis_available: Option<bool>,
    pub max_keys: usize,
    pub memory_bytes: usize,
    /// Keys refused most often, as keyed hashes (never an address or a user id).
    pub top_limited: Vec<LimitedKey>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LimitedKey {
    pub key: String,
    pub limited: u64,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{RateLimitHeaders, RateSettings};

    fn policy(count: u64, per: Duration, burst: u32) -> RateLimitPolicy {
        RateLimitPolicy {
            name: Arc::from("p"),
            key: RateLimitKey::Client,
            rate: RateSettings { count, per },
            burst,
            headers: RateLimitHeaders::Limited,
            store: LimitStore::Memory,
            max_keys: 1000,
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn keys_are_counted_apart_and_headers_follow_the_draft() {
        let limiter = RateLimiter::new(&policy(2, Duration::from_secs(10), 2), None);
        let now = Instant::now();
        let a = Key::Client("127.0.0.2".parse().unwrap());
        let b = Key::Client("127.0.0.3".parse().unwrap());
        block_on(async {
            assert!(limiter.check(a, now).await.allowed);
            assert!(limiter.check(a, now).await.allowed);
            let refused = limiter.check(a, now).await;
            assert!(!refused.allowed);
            assert_eq!(refused.retry_after, Duration::from_secs(5));
            assert_eq!(refused.policy_header(), "\"p\";q=2;w=10");
            assert_eq!(refused.limit_header(), "\"p\";r=0;t=5");
            let other = limiter.check(b, now).await;
            assert!(other.allowed);
            assert_eq!(other.limit_header(), "\"p\";r=1;t=5");
            assert!(limiter.check(a, now + Duration::from_secs(5)).await.allowed);
        });
        let report = limiter.report();
        assert_eq!(report.top_limited.len(), 1);
        assert_eq!(report.top_limited[0].limited, 1);
        // The key is shown hashed (16 hex digits), never as the address. (A check for "127"
        // failed once: a random hash contains those three digits about once in 300 runs.)
        let shown = &report.top_limited[0].key;
        assert!(
            shown.len() == 16 && shown.bytes().all(|b| b.is_ascii_hexdigit()),
            "{shown}"
        );
        assert!(!shown.contains("127.0.0.2"), "{shown}");
    }

    #[test]
    fn a_rate_change_keeps_the_counts() {
        let before = RateLimiter::new(&policy(1, Duration::from_secs(60), 1), None);
        let now = Instant::now();
        let a = Key::Client("127.0.0.2".parse().unwrap());
        block_on(async {
            assert!(before.check(a, now).await.allowed);
            assert!(!before.check(a, now).await.allowed);
            // Twice the burst: the debt already spent still counts.
            let after = RateLimiter::new(&policy(1, Duration::from_secs(60), 2), Some(&before));
            assert!(after.check(a, now).await.allowed);
            assert!(!after.check(a, now).await.allowed);
            // A different key kind starts afresh.
            let mut by_route = policy(1, Duration::from_secs(60), 1);
            by_route.key = RateLimitKey::Route;
            let fresh = RateLimiter::new(&by_route, Some(&after));
            assert!(fresh.check(a, now).await.allowed);
        });
    }
}
