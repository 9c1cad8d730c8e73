//! `auth:`: where Basic credentials are exchanged for a token, how tokens are verified,
//! and how long exchanged tokens are cached.

use std::{collections::BTreeMap, sync::Arc};

use super::{Env, Problems, upstreams::concurrency_limit};
use crate::config::{
    AuthSettings, Secret, TokenCacheSettings,
    file::{AuthConfig, UpstreamConfig},
    units::Switch,
};

/// Time an Argon2id verification takes on one core of the users service (measured on the
/// travel service; see docs/security.md).
const VERIFICATION: std::time::Duration = std::time::Duration::from_millis(35);

/// Shortest HMAC secret accepted: 256 bits, as RFC 7518 requires for HS256.
const MIN_SECRET_BYTES: usize = 32;

pub(super) fn compile(
    problems: &mut Problems<'_>,
    config: &AuthConfig,
    upstreams: &BTreeMap<String, UpstreamConfig>,
    env: Env<'_>,
) -> Option<AuthSettings> {
    let mut part = problems.part("auth");
    let endpoint = &config.token_endpoint;
    if !upstreams.contains_key(&endpoint.upstream) {
        part.add(
            "token_endpoint.upstream",
            format!("unknown upstream {:?}", endpoint.upstream),
        );
    }
    if !endpoint.path.starts_with('/') || endpoint.path.contains(char::is_whitespace) {
        part.add(
            "token_endpoint.path",
            format!(
                "invalid path {:?}: must start with / and contain no spaces",
                endpoint.path
            ),
        );
    }
    let secret = match env(&config.jwt.secret_env) {
        None => {
            part.add(
                "jwt.secret_env",
                format!(
                    "the environment variable {} is not set",
                    config.jwt.secret_env
                ),
            );
            None
        }
        Some(value) if value.len() < MIN_SECRET_BYTES => {
            part.add(
                "jwt.secret_env",
                format!(
                    "the secret in {} is shorter than {MIN_SECRET_BYTES} bytes",
                    config.jwt.secret_env
                ),
            );
            None
        }
        Some(value) => Some(Secret::new(value.as_bytes())),
    };
    if config.jwt.algorithms.is_empty() {
        part.add("jwt.algorithms", "at least one algorithm is required");
    }
    let mut algorithms = Vec::new();
    for (index, name) in config.jwt.algorithms.iter().enumerate() {
        match name.trim().to_ascii_uppercase().as_str() {
            "HS256" => algorithms.push(jsonwebtoken::Algorithm::HS256),
            "HS384" => algorithms.push(jsonwebtoken::Algorithm::HS384),
            "HS512" => algorithms.push(jsonwebtoken::Algorithm::HS512),
            _ => part.add(
                &format!("jwt.algorithms[{index}]"),
                format!("unsupported algorithm {name:?}; expected HS256, HS384 or HS512"),
            ),
        }
    }
    let cache = &config.token_cache;
    if cache.capacity < 0 {
        part.add(
            "token_cache.capacity",
            format!("must be 0 (no cache) or more, got {}", cache.capacity),
        );
    }
    // By default, no more exchanges at once than the service can verify within half its
    // read timeout on a single core: none of them can then time out there.
    let derived = upstreams.get(&endpoint.upstream).map_or(1, |users| {
        let budget = users.read_timeout.0 / 2;
        i64::try_from(budget.as_nanos() / VERIFICATION.as_nanos())
            .unwrap_or(1)
            .max(1)
    });
    let max_in_flight = endpoint.max_in_flight.unwrap_or(Switch::On(derived));
    let max_queued = endpoint
        .max_queued
        .unwrap_or_else(|| max_in_flight.into_option().unwrap_or(0));
    let mut limit_part = part.problems.part("auth.token_endpoint");
    let exchange_limit = concurrency_limit(
        &mut limit_part,
        max_in_flight,
        max_queued,
        endpoint.queue_timeout.0,
    );
    part.passed()?;
    Some(AuthSettings {
        upstream: Arc::from(endpoint.upstream.as_str()),
        path: endpoint.path.clone(),
        secret: secret?,
        algorithms,
        leeway: config.jwt.leeway.0,
        cache: TokenCacheSettings {
            capacity: u64::try_from(cache.capacity).unwrap_or(0),
            refresh_before_expiry: cache.refresh_before_expiry.0,
            negative_ttl: cache.negative_ttl.0,
        },
        exchange_limit,
    })
}
