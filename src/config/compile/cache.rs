//! `cache:`: the response cache's store, shared by every route with a `cache` block (the
//! blocks themselves are checked with their routes, in `routes.rs`).

use super::Problems;
use crate::config::{
    ResponseCacheSettings, StoreSettings,
    file::{CacheStoreConfig, CacheStoreKind},
};

pub(super) fn compile(
    problems: &mut Problems<'_>,
    config: &CacheStoreConfig,
) -> Option<ResponseCacheSettings> {
    let mut part = problems.part("cache");
    let store = match config.store {
        CacheStoreKind::Memory => StoreSettings::Memory,
        CacheStoreKind::Redis => {
            if !(config.redis_url.starts_with("redis://")
                || config.redis_url.starts_with("rediss://"))
            {
                part.add(
                    "redis_url",
                    format!(
                        "invalid Redis URL {:?}; expected redis://host:port/db",
                        config.redis_url
                    ),
                );
            }
            StoreSettings::Redis {
                url: config.redis_url.clone(),
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
