//! `routes:`: the route table. Each route names its upstream (resolved here to an index
//! into the compiled upstreams), may carry a `cache` block, and may name the routes whose
//! cached entries its writes invalidate, and has a body policy (`max_body`, falling back
//! to `server.max_body`, and `request_buffering`). Across routes: a route that an earlier one
//! already answers entirely is unreachable, and names are unique.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use http::Method;

use super::Problems;
use crate::config::{
    AuthMode, BodyPolicy, CacheScope, RouteCachePolicy, RouteSpec,
    file::{RateLimitConfig, RouteCacheConfig, RouteConfig, ServerConfig, UpstreamConfig},
};

/// Redis keeps generation counters a day; an entry must never outlive them, or a counter
/// that expired and restarted could make an old entry current again.
const MAX_CACHE_LIFETIME: Duration = Duration::from_secs(24 * 3600);

pub(super) fn compile(
    problems: &mut Problems<'_>,
    configs: &[RouteConfig],
    upstreams: &BTreeMap<String, UpstreamConfig>,
    server: &ServerConfig,
    rate_limits: &BTreeMap<String, RateLimitConfig>,
) -> Vec<RouteSpec> {
    if configs.is_empty() {
        problems.add("routes", "at least one route is required");
    }
    let default_max_body = server.max_body.0;
    if default_max_body == 0 {
        problems.add("server.max_body", ZERO_BODY);
    }
    let inherits_too_much = |c: &RouteConfig| c.max_body.is_none() && c.request_buffering.0;
    if default_max_body > BodyPolicy::MAX_BUFFERED && configs.iter().any(inherits_too_much) {
        problems.add(
            "server.max_body",
            format!(
                "{default_max_body} bytes is more than a buffered body can be ({} bytes, Pingora's retry buffer); lower it, or give each route that needs more its own max_body with request_buffering: off",
                BodyPolicy::MAX_BUFFERED
            ),
        );
    }
    // Compiled routes with their index in the file, for messages about earlier ones.
    let mut routes: Vec<(usize, RouteSpec)> = Vec::new();
    for (index, config) in configs.iter().enumerate() {
        let upstream = upstreams.keys().position(|name| *name == config.upstream);
        if upstream.is_none() {
            problems.add(
                format!("routes[{index}].upstream"),
                format!("unknown upstream {:?}", config.upstream),
            );
        }
        let Some(mut route) = route(
            problems,
            index,
            config,
            upstream.unwrap_or_default(),
            default_max_body,
        ) else {
            continue;
        };
        route.rate_limit = rate_limit(problems, index, config, rate_limits);
        if let Some((earlier, _)) = routes.iter().find(|(_, r)| shadows(r, &route)) {
            problems.add(
                format!("routes[{index}]"),
                format!(
                    "unreachable: routes[{earlier}] already matches every request for {} {}",
                    route
                        .methods
                        .as_deref()
                        .map_or("any method".to_owned(), method_list),
                    route.path
                ),
            );
        }
        if routes.iter().any(|(_, r)| r.id == route.id) {
            problems.add(
                format!("routes[{index}].name"),
                format!("duplicate route name {:?}", route.id),
            );
        }
        routes.push((index, route));
    }
    for (index, config) in configs.iter().enumerate() {
        for (item, target) in config.invalidates.iter().enumerate() {
            if !configs.iter().any(|r| r.path.trim() == target.trim()) {
                problems.add(
                    format!("routes[{index}].invalidates[{item}]"),
                    format!("no route has the path {target:?}"),
                );
            }
        }
    }
    routes.into_iter().map(|(_, route)| route).collect()
}

fn route(
    problems: &mut Problems<'_>,
    index: usize,
    config: &RouteConfig,
    upstream: usize,
    default_max_body: u64,
) -> Option<RouteSpec> {
    let path = format!("routes[{index}]");
    let mut part = problems.part(path.clone());
    let buffered = config.request_buffering.0;
    if let Some(max) = config.max_body.map(|size| size.0) {
        if max == 0 {
            part.add("max_body", ZERO_BODY);
        } else if buffered && max > BodyPolicy::MAX_BUFFERED {
            part.add(
                "max_body",
                format!(
                    "{max} bytes is more than a buffered body can be ({} bytes, Pingora's retry buffer); set request_buffering: off to stream larger bodies",
                    BodyPolicy::MAX_BUFFERED
                ),
            );
        }
    }
    let prefix = config.path.trim();
    if let Err(reason) = check_route_path(prefix) {
        part.add("path", format!("invalid path {prefix:?}: {reason}"));
    }
    let methods = config.methods.as_ref().map(|names| {
        if names.is_empty() {
            part.add(
                "methods",
                "an empty list matches nothing; omit the key to allow every method",
            );
        }
        let mut methods: Vec<Method> = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let upper = name.trim().to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(method) if !methods.contains(&method) => methods.push(method),
                Ok(_) => part.add(
                    &format!("methods[{index}]"),
                    format!("{name:?} is listed twice"),
                ),
                Err(_) => part.add(
                    &format!("methods[{index}]"),
                    format!("invalid method {name:?}"),
                ),
            }
        }
        methods
    });
    part.passed()?;
    // The cache block is judged against the route's methods, so only once they are valid.
    let cache = match &config.cache {
        None => None,
        Some(cache) => {
            let part = problems.part(format!("{path}.cache"));
            Some(route_cache(part, cache, config.auth, methods.as_deref())?)
        }
    };
    let id = match (&config.name, &methods) {
        (Some(name), _) => name.clone(),
        (None, Some(methods)) => format!("{} {prefix}", method_list(methods)),
        (None, None) => prefix.to_owned(),
    };
    let mut invalidates: Vec<Arc<str>> = vec![Arc::from(prefix)];
    for target in &config.invalidates {
        if !invalidates.iter().any(|p| &**p == target.trim()) {
            invalidates.push(Arc::from(target.trim()));
        }
    }
    Some(RouteSpec {
        id: Arc::from(id),
        path: prefix.to_owned(),
        methods,
        upstream,
        auth: config.auth,
        cache,
        invalidates,
        body: BodyPolicy {
            max: config.max_body.map_or(default_max_body, |size| size.0),
            buffered,
        },
        rate_limit: None,
    })
}

const ZERO_BODY: &str = "must be at least 1 byte (nginx's 0 for \"unlimited\" is not supported: write the size a route needs)";

/// The route's policy: the one it names, none for `off`, else `default` if defined.
/// Policies compile in name order, so a name's index among the keys is its index among
/// the compiled policies.
fn rate_limit(
    problems: &mut Problems<'_>,
    index: usize,
    config: &RouteConfig,
    policies: &BTreeMap<String, RateLimitConfig>,
) -> Option<usize> {
    use super::rate_limits::{DEFAULT_POLICY, OFF};
    let position = |name: &str| policies.keys().position(|n| n == name);
    match config.rate_limit.as_deref().map(str::trim) {
        None => position(DEFAULT_POLICY),
        Some(OFF) => None,
        Some(name) => {
            let found = position(name);
            if found.is_none() {
                problems.add(
                    format!("routes[{index}].rate_limit"),
                    format!("unknown rate-limit policy {name:?} (or `off`)"),
                );
            }
            found
        }
    }
}

/// A route's `cache` block.
fn route_cache(
    mut part: super::Part<'_, '_>,
    cache: &RouteCacheConfig,
    auth: AuthMode,
    methods: Option<&[Method]>,
) -> Option<RouteCachePolicy> {
    let ttl = part.positive_duration("ttl", cache.ttl.0);
    if ttl + cache.stale_if_error.0 > MAX_CACHE_LIFETIME {
        part.add("", "ttl + stale_if_error must not exceed 24h");
    }
    let serves_reads = |methods: &[Method]| {
        methods
            .iter()
            .any(|m| *m == Method::GET || *m == Method::HEAD)
    };
    if methods.is_some_and(|methods| !serves_reads(methods)) {
        part.add(
            "",
            "only GET and HEAD responses are cached, and this route accepts neither",
        );
    }
    if cache.scope == CacheScope::User && auth == AuthMode::None {
        part.add(
            "scope",
            "scope `user` needs an authenticated route; use `shared` or `auth: required`",
        );
    }
    part.passed()?;
    Some(RouteCachePolicy {
        ttl,
        scope: cache.scope,
        stale_if_error: cache.stale_if_error.0,
    })
}

fn method_list(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn check_route_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("must start with /");
    }
    if path.len() > 1 && path.ends_with('/') {
        return Err("must not end with / (prefixes match by whole segments)");
    }
    if path.contains(['?', '#', '%', '\\'])
        || path.chars().any(|c| c.is_ascii_control() || c == ' ')
    {
        return Err("must be a plain path without query, fragment, escapes or spaces");
    }
    if path
        .split('/')
        .skip(1)
        .any(|s| s.is_empty() && path != "/" || s == "." || s == "..")
    {
        return Err("must not contain empty, . or .. segments");
    }
    Ok(())
}

/// `earlier` takes every request `later` could match: same path and a superset of methods.
fn shadows(earlier: &RouteSpec, later: &RouteSpec) -> bool {
    if earlier.path != later.path {
        return false;
    }
    match (&earlier.methods, &later.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
    }
}
