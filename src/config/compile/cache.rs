//! `cache:`: the response cache's store, shared by every route with a `cache` block (the
//! blocks themselves are checked with their routes, in `routes.rs`).

use super::{Env, Part, Problems};
use crate::config::{
    ResponseCacheSettings, Secret, StoreSettings,
    file::{CacheStoreConfig, CacheStoreKind},
};

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";

pub(super) fn compile(
    problems: &mut Problems<'_>,
    config: &CacheStoreConfig,
    env: Env<'_>,
) -> Option<ResponseCacheSettings> {
    let mut part = problems.part("cache");
    let store = match config.store {
        CacheStoreKind::Memory => StoreSettings::Memory,
        CacheStoreKind::Redis => {
            let url = redis_url(&mut part, config, env);
            StoreSettings::Redis {
                url: Secret::new(url.as_bytes()),
                timeout: part.positive_duration("redis_timeout", config.redis_timeout.0),
                key_prefix: config.key_prefix.clone(),
            }
        }
    };
    if config.max_entries < 1 {
        part.add(
            "max_entries",
            format!("must be at least 1, got {}", config.max_entries),
        );
    }
    if config.max_bytes.0 == 0 {
        part.add("max_bytes", "must be greater than zero");
    }
    if config.max_entry_bytes.0 == 0 || config.max_entry_bytes.0 > config.max_bytes.0 {
        part.add(
            "max_entry_bytes",
            "must be greater than zero and at most cache.max_bytes",
        );
    }
    part.passed()?;
    Some(ResponseCacheSettings {
        store,
        max_entries: u64::try_from(config.max_entries).unwrap_or(1),
        max_bytes: config.max_bytes.0,
        max_entry_bytes: config.max_entry_bytes.0,
    })
}

/// The Redis URL, from the file or from the environment. It may hold a password, so no
/// message ever shows it.
fn redis_url(part: &mut Part<'_, '_>, config: &CacheStoreConfig, env: Env<'_>) -> String {
    let (key, url) = match (&config.redis_url, &config.redis_url_env) {
        (Some(_), Some(_)) => {
            part.add(
                "redis_url_env",
                "set either cache.redis_url or cache.redis_url_env, not both",
            );
            return String::new();
        }
        (_, Some(name)) => match env(name) {
            Some(url) => ("redis_url_env", url),
            None => {
                part.add(
                    "redis_url_env",
                    format!("the environment variable {name} is not set"),
                );
                return String::new();
            }
        },
        (Some(url), None) => ("redis_url", url.clone()),
        (None, None) => ("redis_url", DEFAULT_REDIS_URL.to_owned()),
    };
    let value = match &config.redis_url_env {
        Some(name) => format!("the value of {name}"),
        None => "the value".to_owned(),
    };
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        part.add(
            key,
            format!(
                "{value} is not a Redis URL; expected the scheme redis:// or rediss://, as in redis://host:6379/0"
            ),
        );
    } else if let Err(error) = redis::Client::open(url.as_str()) {
        part.add(
            key,
            format!("{value} is not a valid Redis URL ({})", describe(&error)),
        );
    }
    url
}

/// What is wrong with a URL, never a part of it: redis-rs's fixed phrase ("Missing
/// hostname", "Invalid database number"), without the kind and the detail some errors
/// append (`<phrase>- <kind>`, `<phrase> - <kind>: <detail>`).
fn describe(error: &redis::RedisError) -> String {
    let text = error.to_string();
    match text.split_once("- ") {
        Some((phrase, _)) => phrase.trim_end().to_owned(),
        None => text,
    }
}
