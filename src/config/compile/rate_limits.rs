//! `rate_limits:` (the named policies), `auth.exchange_limits` and
//! `server.trusted_proxies`: everything that decides how much one client may ask for.
//! A route's `rate_limit` is resolved in `routes.rs`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use super::{Env, Problems};
use crate::config::{
    ExchangeLimitSettings, LimitStore, RateLimitPolicy, RateSettings, Secret,
    file::{CacheStoreKind, ExchangeLimitsConfig, RateLimitConfig},
    units::Rate,
};

/// The name of the policy that applies to routes that name none.
pub const DEFAULT_POLICY: &str = "default";
/// The word that turns a route's limit off.
pub const OFF: &str = "off";
/// More keys than this is a typo (17 bytes each: 100M keys is 1.7 GB).
const MAX_KEYS: i64 = 100_000_000;
/// Shortest interval between two requests of one key: finer rates are not limits.
const MIN_INTERVAL: Duration = Duration::from_micros(1);

pub(super) fn compile(
    problems: &mut Problems<'_>,
    configs: &BTreeMap<String, RateLimitConfig>,
    env: Env<'_>,
) -> Vec<RateLimitPolicy> {
    configs
        .iter()
        .filter_map(|(name, config)| policy(problems, name, config, env))
        .collect()
}

fn policy(
    problems: &mut Problems<'_>,
    name: &str,
    config: &RateLimitConfig,
    env: Env<'_>,
) -> Option<RateLimitPolicy> {
    let mut part = problems.part(format!("rate_limits.{name}"));
    if name == OFF {
        part.add("", "`off` is reserved for turning a route's limit off");
    }
    let rate = rate(&mut part, "rate", config.rate);
    let burst = match config.burst {
        None => rate.map(|r| u32::try_from(r.count).unwrap_or(u32::MAX)),
        Some(burst) if (1..=i64::from(u32::MAX)).contains(&burst) => u32::try_from(burst).ok(),
        Some(burst) => {
            part.add("burst", format!("must be at least 1, got {burst}"));
            None
        }
    };
    let max_keys = keys(&mut part, "max_keys", config.max_keys);
    let store = match config.store {
        CacheStoreKind::Memory => Some(LimitStore::Memory),
        CacheStoreKind::Redis => {
            let url = match (&config.redis_url, &config.redis_url_env) {
                (Some(_), Some(_)) => {
                    part.add("redis_url_env", "give redis_url or redis_url_env, not both");
                    None
                }
                (Some(url), None) => Some(url.clone()),
                (None, Some(variable)) => {
                    let url = env(variable);
                    if url.is_none() {
                        part.add(
                            "redis_url_env",
                            format!("the environment variable {variable} is not set"),
                        );
                    }
                    url
                }
                (None, None) => Some("redis://127.0.0.1:6379/0".to_owned()),
            };
            if let Some(url) = &url {
                if redis::Client::open(url.as_str()).is_err() {
                    // The URL may hold a password: never echo it.
                    part.add("redis_url", "not a valid Redis URL (redis://host:port/db)");
                }
            }
            let timeout = part.positive_duration("redis_timeout", config.redis_timeout.0);
            url.map(|url| LimitStore::Redis {
                url: Secret::new(url.as_bytes()),
                timeout,
                key_prefix: config.key_prefix.clone(),
            })
        }
    };
    part.passed()?;
    Some(RateLimitPolicy {
        name: Arc::from(name),
        key: config.key,
        rate: rate?,
        burst: burst?,
        headers: config.headers,
        store: store?,
        max_keys: max_keys?,
    })
}

pub(super) fn exchange(
    problems: &mut Problems<'_>,
    config: &ExchangeLimitsConfig,
) -> Option<ExchangeLimitSettings> {
    let mut part = problems.part("auth.exchange_limits");
    let in_flight = match config.max_in_flight_per_client {
        crate::config::units::Switch::Off => None,
        crate::config::units::Switch::On(n) => {
            if !(1..=i64::from(u32::MAX)).contains(&n) {
                part.add(
                    "max_in_flight_per_client",
                    format!("must be at least 1 (or `off`), got {n}"),
                );
            }
            u32::try_from(n).ok()
        }
    };
    let per_client = config
        .failures_per_client
        .into_option()
        .map(|r| rate(&mut part, "failures_per_client", r));
    let per_login = config
        .failures_per_login
        .into_option()
        .map(|r| rate(&mut part, "failures_per_login", r));
    let max_keys = keys(&mut part, "max_keys", config.max_keys);
    part.passed()?;
    Some(ExchangeLimitSettings {
        max_in_flight_per_client: in_flight,
        failures_per_client: per_client.flatten(),
        failures_per_login: per_login.flatten(),
        max_keys: max_keys?,
    })
}

pub(super) fn trusted_proxies(
    problems: &mut Problems<'_>,
    entries: &[String],
) -> Vec<ipnet::IpNet> {
    let mut nets = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let text = entry.trim();
        let parsed = text.parse::<ipnet::IpNet>().ok().or_else(|| {
            text.parse::<std::net::IpAddr>()
                .ok()
                .map(ipnet::IpNet::from)
        });
        match parsed {
            Some(net) => nets.push(net.trunc()),
            None => problems.add(
                format!("server.trusted_proxies[{index}]"),
                format!("invalid address or CIDR {text:?}; write it like 10.0.0.0/8 or 192.0.2.7"),
            ),
        }
    }
    nets
}

fn rate(part: &mut super::Part<'_, '_>, key: &str, rate: Rate) -> Option<RateSettings> {
    let settings = RateSettings {
        count: rate.count,
        per: rate.per,
    };
    if rate.count == 0 || rate.count > u64::from(u32::MAX) || rate.per.is_zero() {
        part.add(
            key,
            format!("{rate} is not a rate: the count and the period must be above zero"),
        );
        return None;
    }
    if settings.interval() < MIN_INTERVAL {
        part.add(
            key,
            format!("{rate} is more than a million per second: that is no limit"),
        );
        return None;
    }
    Some(settings)
}

fn keys(part: &mut super::Part<'_, '_>, key: &str, value: i64) -> Option<u64> {
    if !(1..=MAX_KEYS).contains(&value) {
        part.add(
            key,
            format!("must be between 1 and {MAX_KEYS}, got {value}"),
        );
        return None;
    }
    u64::try_from(value).ok()
}
