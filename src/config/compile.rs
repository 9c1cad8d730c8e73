//! Validation and compilation of the file shape into runtime types. All checks run, and
//! every problem is returned, each tied to the YAML path it is about.

use std::{
    collections::{BTreeMap, HashSet},
    net::{SocketAddr, ToSocketAddrs},
    sync::Arc,
    time::Duration,
};

use http::Method;

use super::{
    AdminSettings, AuthMode, AuthSettings, BackendSpec, CacheScope, Config, ConfigError,
    ResponseCacheSettings, RouteCachePolicy, RouteSpec, Secret, ServerSettings, StoreSettings,
    TokenCacheSettings, UpstreamSpec,
    file::{
        AuthConfig, BreakerConfig, CacheStoreConfig, CacheStoreKind, GatewayConfig, RouteConfig,
        UpstreamConfig,
    },
    source_map::SourceMap,
};
use crate::breaker::{BreakerPolicy, classify::StatusSet};

/// Upper bounds that catch typos (an extra zero) rather than encode real limits.
const MAX_THREADS: i64 = 1024;
const MAX_CONNECT_RETRIES: i64 = 16;
const MAX_PROBES: i64 = 10_000;

struct Problems<'a> {
    map: &'a SourceMap,
    errors: Vec<ConfigError>,
}

impl Problems<'_> {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        self.errors.push(ConfigError {
            line: self.map.line(&path),
            path,
            message: message.into(),
        });
    }
}

pub(super) fn compile(
    shape: GatewayConfig,
    map: &SourceMap,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut problems = Problems {
        map,
        errors: Vec::new(),
    };

    let listen = socket_addr(&mut problems, "server.listen", &shape.server.listen);
    let threads = shape.server.threads;
    if !(1..=MAX_THREADS).contains(&threads) {
        problems.add(
            "server.threads",
            format!("must be between 1 and {MAX_THREADS}, got {threads}"),
        );
    }
    let admin_listen = socket_addr(&mut problems, "admin.listen", &shape.admin.listen);
    if let (Some(a), Some(b)) = (listen, admin_listen) {
        if a.port() == b.port()
            && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        {
            problems.add(
                "admin.listen",
                format!("{b} collides with server.listen {a}"),
            );
        }
    }

    let mut policies: BTreeMap<String, (Arc<BreakerPolicy>, StatusSet)> = BTreeMap::new();
    if !shape.breakers.contains_key("default") {
        let builtin = BreakerConfig::default();
        if let Some(compiled) = breaker(&mut problems, "breakers.default", &builtin) {
            policies.insert("default".to_owned(), compiled);
        }
    }
    for (name, config) in &shape.breakers {
        if let Some(compiled) = breaker(&mut problems, &format!("breakers.{name}"), config) {
            policies.insert(name.clone(), compiled);
        }
    }

    if shape.upstreams.is_empty() {
        problems.add("upstreams", "at least one upstream is required");
    }
    let mut upstreams = Vec::new();
    for (name, config) in &shape.upstreams {
        let path = format!("upstreams.{name}");
        let declared = shape.breakers.contains_key(&config.breaker) || config.breaker == "default";
        if !declared {
            problems.add(
                format!("{path}.breaker"),
                format!("unknown breaker {:?}", config.breaker),
            );
        }
        let policy = policies.get(&config.breaker).cloned();
        if let Some(spec) = upstream(&mut problems, &path, name, config, policy) {
            upstreams.push(spec);
        }
    }

    if shape.routes.is_empty() {
        problems.add("routes", "at least one route is required");
    }
    let mut routes: Vec<RouteSpec> = Vec::new();
    for (index, config) in shape.routes.iter().enumerate() {
        let path = format!("routes[{index}]");
        let upstream = shape
            .upstreams
            .keys()
            .position(|name| *name == config.upstream);
        if upstream.is_none() {
            problems.add(
                format!("{path}.upstream"),
                format!("unknown upstream {:?}", config.upstream),
            );
        }
        let route = route(&mut problems, &path, config, upstream.unwrap_or_default());
        if let Some(route) = route {
            if let Some(earlier) = routes.iter().position(|r| shadows(r, &route)) {
                problems.add(
                    path.clone(),
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
            routes.push(route);
        }
    }
    let auth = shape
        .auth
        .as_ref()
        .and_then(|config| auth(&mut problems, config, &shape.upstreams, env));
    if shape.auth.is_none() {
        for (index, route) in routes.iter().enumerate() {
            if route.auth == AuthMode::Required {
                problems.add(
                    format!("routes[{index}].auth"),
                    "this route requires authentication but there is no `auth` section; add one or set `auth: none`",
                );
            }
        }
    }
    let cache = cache_settings(&mut problems, &shape.cache);
    for (index, config) in shape.routes.iter().enumerate() {
        for (item, target) in config.invalidates.iter().enumerate() {
            if !shape.routes.iter().any(|r| r.path.trim() == target.trim()) {
                problems.add(
                    format!("routes[{index}].invalidates[{item}]"),
                    format!("no route has the path {target:?}"),
                );
            }
        }
    }
    let mut ids = HashSet::new();
    for (index, route) in routes.iter().enumerate() {
        if !ids.insert(route.id.clone()) {
            problems.add(
                format!("routes[{index}].name"),
                format!("duplicate route name {:?}", route.id),
            );
        }
    }

    if !problems.errors.is_empty() {
        return Err(problems.errors);
    }
    let (Some(listen), Some(admin_listen), Some(cache)) = (listen, admin_listen, cache) else {
        return Err(problems.errors);
    };
    Ok(Config {
        server: ServerSettings {
            listen,
            threads: usize::try_from(threads).unwrap_or(1),
            grace_period: shape.server.grace_period.0,
            watch_interval: shape.server.watch_interval.0,
        },
        admin: AdminSettings {
            listen: admin_listen,
        },
        upstreams,
        routes,
        auth,
        cache,
    })
}

/// Redis keeps generation counters a day; an entry must never outlive them, or a counter
/// that expired and restarted could make an old entry current again.
const MAX_CACHE_LIFETIME: Duration = Duration::from_secs(24 * 3600);

fn cache_settings(
    problems: &mut Problems<'_>,
    config: &CacheStoreConfig,
) -> Option<ResponseCacheSettings> {
    let before = problems.errors.len();
    let store = match config.store {
        CacheStoreKind::Memory => StoreSettings::Memory,
        CacheStoreKind::Redis => {
            if !(config.redis_url.starts_with("redis://")
                || config.redis_url.starts_with("rediss://"))
            {
                problems.add(
                    "cache.redis_url",
                    format!(
                        "invalid Redis URL {:?}; expected redis://host:port/db",
                        config.redis_url
                    ),
                );
            }
            if config.redis_timeout.0.is_zero() {
                problems.add("cache.redis_timeout", "must be greater than zero");
            }
            StoreSettings::Redis {
                url: config.redis_url.clone(),
                timeout: config.redis_timeout.0,
                key_prefix: config.key_prefix.clone(),
            }
        }
    };
    if config.max_entries < 1 {
        problems.add(
            "cache.max_entries",
            format!("must be at least 1, got {}", config.max_entries),
        );
    }
    if config.max_bytes.0 == 0 {
        problems.add("cache.max_bytes", "must be greater than zero");
    }
    if config.max_entry_bytes.0 == 0 || config.max_entry_bytes.0 > config.max_bytes.0 {
        problems.add(
            "cache.max_entry_bytes",
            "must be greater than zero and at most cache.max_bytes",
        );
    }
    if problems.errors.len() > before {
        return None;
    }
    Some(ResponseCacheSettings {
        store,
        max_entries: u64::try_from(config.max_entries).unwrap_or(1),
        max_bytes: config.max_bytes.0,
        max_entry_bytes: config.max_entry_bytes.0,
    })
}

fn route_cache(
    problems: &mut Problems<'_>,
    path: &str,
    config: &RouteConfig,
    methods: Option<&[Method]>,
) -> Option<RouteCachePolicy> {
    let cache = config.cache.as_ref()?;
    let before = problems.errors.len();
    if cache.ttl.0.is_zero() {
        problems.add(format!("{path}.cache.ttl"), "must be greater than zero");
    }
    if cache.ttl.0 + cache.stale_if_error.0 > MAX_CACHE_LIFETIME {
        problems.add(
            format!("{path}.cache"),
            "ttl + stale_if_error must not exceed 24h",
        );
    }
    if let Some(methods) = methods {
        if !methods
            .iter()
            .any(|m| *m == Method::GET || *m == Method::HEAD)
        {
            problems.add(
                format!("{path}.cache"),
                "only GET and HEAD responses are cached, and this route accepts neither",
            );
        }
    }
    if cache.scope == CacheScope::User && config.auth == AuthMode::None {
        problems.add(
            format!("{path}.cache.scope"),
            "scope `user` needs an authenticated route; use `shared` or `auth: required`",
        );
    }
    if problems.errors.len() > before {
        return None;
    }
    Some(RouteCachePolicy {
        ttl: cache.ttl.0,
        scope: cache.scope,
        stale_if_error: cache.stale_if_error.0,
    })
}

/// Shortest HMAC secret accepted: 256 bits, as RFC 7518 requires for HS256.
const MIN_SECRET_BYTES: usize = 32;

fn auth(
    problems: &mut Problems<'_>,
    config: &AuthConfig,
    upstreams: &BTreeMap<String, UpstreamConfig>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<AuthSettings> {
    let before = problems.errors.len();
    let endpoint = &config.token_endpoint;
    if !upstreams.contains_key(&endpoint.upstream) {
        problems.add(
            "auth.token_endpoint.upstream",
            format!("unknown upstream {:?}", endpoint.upstream),
        );
    }
    if !endpoint.path.starts_with('/') || endpoint.path.contains(char::is_whitespace) {
        problems.add(
            "auth.token_endpoint.path",
            format!(
                "invalid path {:?}: must start with / and contain no spaces",
                endpoint.path
            ),
        );
    }
    let secret = match env(&config.jwt.secret_env) {
        None => {
            problems.add(
                "auth.jwt.secret_env",
                format!(
                    "the environment variable {} is not set",
                    config.jwt.secret_env
                ),
            );
            None
        }
        Some(value) if value.len() < MIN_SECRET_BYTES => {
            problems.add(
                "auth.jwt.secret_env",
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
        problems.add("auth.jwt.algorithms", "at least one algorithm is required");
    }
    let mut algorithms = Vec::new();
    for (index, name) in config.jwt.algorithms.iter().enumerate() {
        match name.trim().to_ascii_uppercase().as_str() {
            "HS256" => algorithms.push(jsonwebtoken::Algorithm::HS256),
            "HS384" => algorithms.push(jsonwebtoken::Algorithm::HS384),
            "HS512" => algorithms.push(jsonwebtoken::Algorithm::HS512),
            _ => problems.add(
                format!("auth.jwt.algorithms[{index}]"),
                format!("unsupported algorithm {name:?}; expected HS256, HS384 or HS512"),
            ),
        }
    }
    let cache = &config.token_cache;
    if cache.capacity < 0 {
        problems.add(
            "auth.token_cache.capacity",
            format!("must be 0 (no cache) or more, got {}", cache.capacity),
        );
    }
    if problems.errors.len() > before {
        return None;
    }
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
    })
}

fn socket_addr(problems: &mut Problems<'_>, path: &str, text: &str) -> Option<SocketAddr> {
    match text.trim().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.add(
                path,
                format!("invalid listen address {text:?}; expected ip:port such as 0.0.0.0:8888"),
            );
            None
        }
    }
}

fn positive_duration(problems: &mut Problems<'_>, path: String, value: Duration) -> Duration {
    if value.is_zero() {
        problems.add(path, "must be greater than zero");
    }
    value
}

fn breaker(
    problems: &mut Problems<'_>,
    path: &str,
    config: &BreakerConfig,
) -> Option<(Arc<BreakerPolicy>, StatusSet)> {
    let before = problems.errors.len();
    let consecutive_failures = config.consecutive_failures.into_option();
    if let Some(n) = consecutive_failures {
        if n < 1 || n > i64::from(u32::MAX) {
            problems.add(
                format!("{path}.consecutive_failures"),
                format!("must be at least 1 (or `off`), got {n}"),
            );
        }
    }
    let rate = |problems: &mut Problems<'_>, key: &str, value: Option<f64>| {
        if let Some(rate) = value {
            if !(rate > 0.0 && rate <= 1.0) {
                problems.add(
                    format!("{path}.{key}"),
                    format!(
                        "must be above 0% and at most 100% (or `off`), got {}%",
                        rate * 100.0
                    ),
                );
            }
        }
        value
    };
    let failure_rate = rate(
        problems,
        "failure_rate",
        config.failure_rate.into_option().map(|p| p.0),
    );
    let slow_call_rate = rate(
        problems,
        "slow_call_rate",
        config.slow_call_rate.into_option().map(|p| p.0),
    );
    if config.minimum_calls < 1 || config.minimum_calls > i64::from(u32::MAX) {
        problems.add(
            format!("{path}.minimum_calls"),
            format!("must be at least 1, got {}", config.minimum_calls),
        );
    }
    let window = positive_duration(problems, format!("{path}.window"), config.window.0);
    let slow_call_duration = positive_duration(
        problems,
        format!("{path}.slow_call_duration"),
        config.slow_call_duration.0,
    );
    let open_for = positive_duration(problems, format!("{path}.open_for"), config.open_for.0);
    let max_open_for = config.max_open_for.0;
    if max_open_for < open_for {
        problems.add(
            format!("{path}.max_open_for"),
            format!(
                "must be at least open_for ({}), got {}",
                config.open_for, config.max_open_for
            ),
        );
    }
    if !(1..=MAX_PROBES).contains(&config.half_open_probes) {
        problems.add(
            format!("{path}.half_open_probes"),
            format!(
                "must be between 1 and {MAX_PROBES}, got {}",
                config.half_open_probes
            ),
        );
    }
    let mut statuses = StatusSet::default();
    for (index, status) in config.failure_statuses.iter().enumerate() {
        match u16::try_from(*status) {
            Ok(status @ 100..=599) => statuses.insert(status),
            _ => problems.add(
                format!("{path}.failure_statuses[{index}]"),
                format!("{status} is not an HTTP status (100-599)"),
            ),
        }
    }
    if consecutive_failures.is_none() && failure_rate.is_none() && slow_call_rate.is_none() {
        problems.add(
            path,
            "this breaker can never trip: consecutive_failures, failure_rate and slow_call_rate are all off",
        );
    }
    if problems.errors.len() > before {
        return None;
    }
    let policy = BreakerPolicy {
        consecutive_failures: consecutive_failures.and_then(|n| u32::try_from(n).ok()),
        failure_rate,
        minimum_calls: u32::try_from(config.minimum_calls).unwrap_or(u32::MAX),
        window,
        slow_call_duration,
        slow_call_rate,
        open_for,
        max_open_for,
        half_open_probes: u32::try_from(config.half_open_probes).unwrap_or(1),
    };
    Some((Arc::new(policy), statuses))
}

/// `breaker` is None when the policy it names is missing or invalid (already reported).
fn upstream(
    problems: &mut Problems<'_>,
    path: &str,
    name: &str,
    config: &UpstreamConfig,
    breaker: Option<(Arc<BreakerPolicy>, StatusSet)>,
) -> Option<UpstreamSpec> {
    let before = problems.errors.len();
    if config.backends.is_empty() {
        problems.add(
            format!("{path}.backends"),
            "at least one backend is required",
        );
    }
    let mut backends: Vec<BackendSpec> = Vec::new();
    for (index, text) in config.backends.iter().enumerate() {
        let item = format!("{path}.backends[{index}]");
        let Some(addr) = resolve(problems, &item, text) else {
            continue;
        };
        if backends.iter().any(|b| b.addr == addr) {
            problems.add(item, format!("{text:?} is listed twice"));
            continue;
        }
        backends.push(BackendSpec {
            label: Arc::from(text.trim()),
            addr,
        });
    }
    let connect_timeout = positive_duration(
        problems,
        format!("{path}.connect_timeout"),
        config.connect_timeout.0,
    );
    let read_timeout = positive_duration(
        problems,
        format!("{path}.read_timeout"),
        config.read_timeout.0,
    );
    let write_timeout = positive_duration(
        problems,
        format!("{path}.write_timeout"),
        config.write_timeout.0,
    );
    let idle_timeout = config.idle_timeout.0;
    if !(0..=MAX_CONNECT_RETRIES).contains(&config.connect_retries) {
        problems.add(
            format!("{path}.connect_retries"),
            format!(
                "must be between 0 and {MAX_CONNECT_RETRIES}, got {}",
                config.connect_retries
            ),
        );
    }
    if problems.errors.len() > before {
        return None;
    }
    let (policy, failure_statuses) = breaker?;
    Some(UpstreamSpec {
        name: Arc::from(name),
        backends,
        connect_timeout,
        read_timeout,
        write_timeout,
        idle_timeout,
        breaker: Arc::from(config.breaker.as_str()),
        policy,
        failure_statuses,
        connect_retries: u32::try_from(config.connect_retries).unwrap_or(0),
    })
}

/// Backend addresses are resolved here, once, so the request path never blocks on DNS.
fn resolve(problems: &mut Problems<'_>, path: &str, text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        problems.add(
            path,
            format!("invalid backend address {text:?}; expected host:port"),
        );
        return None;
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        problems.add(
            path,
            format!("invalid backend address {text:?}; expected host:port"),
        );
        return None;
    }
    match text.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => Some(addr),
        Ok(None) => {
            problems.add(path, format!("{host:?} resolves to no address"));
            None
        }
        Err(e) => {
            problems.add(path, format!("cannot resolve {host:?}: {e}"));
            None
        }
    }
}

fn route(
    problems: &mut Problems<'_>,
    path: &str,
    config: &RouteConfig,
    upstream: usize,
) -> Option<RouteSpec> {
    let before = problems.errors.len();
    let prefix = config.path.trim();
    if let Err(reason) = check_route_path(prefix) {
        problems.add(
            format!("{path}.path"),
            format!("invalid path {prefix:?}: {reason}"),
        );
    }
    let methods = config.methods.as_ref().map(|names| {
        if names.is_empty() {
            problems.add(
                format!("{path}.methods"),
                "an empty list matches nothing; omit the key to allow every method",
            );
        }
        let mut methods: Vec<Method> = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let upper = name.trim().to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(method) if !methods.contains(&method) => methods.push(method),
                Ok(_) => problems.add(
                    format!("{path}.methods[{index}]"),
                    format!("{name:?} is listed twice"),
                ),
                Err(_) => problems.add(
                    format!("{path}.methods[{index}]"),
                    format!("invalid method {name:?}"),
                ),
            }
        }
        methods
    });
    if problems.errors.len() > before {
        return None;
    }
    let id = match (&config.name, &methods) {
        (Some(name), _) => name.clone(),
        (None, Some(methods)) => format!("{} {prefix}", method_list(methods)),
        (None, None) => prefix.to_owned(),
    };
    let cache = route_cache(problems, path, config, methods.as_deref());
    if problems.errors.len() > before {
        return None;
    }
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
