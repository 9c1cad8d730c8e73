//! Every metric the gateway exports, declared once, in the gateway's own Prometheus
//! [`REGISTRY`] (not the process-wide default one), which the admin listener serves. Labels come from config ids (route, upstream, backend) and
//! bounded vocabularies (method, status, outcome, state) only: never a raw path, a client
//! address, a login or a token. Documented in `docs/metrics.md`.

use std::sync::{LazyLock, OnceLock};

use http::Method;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets for a proxy: fine below a millisecond, coarse past a second.
const LATENCY_BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The registry the admin listener renders. Metrics register here rather than in
/// `prometheus::default_registry()` so that embedding applications keep theirs separate.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<M: prometheus::core::Collector + Clone + 'static>(metric: M) -> M {
    // Registration fails only for a duplicate name, which these statics rule out; a
    // metric that somehow could not be registered still counts, it is just not exported.
    let _ = REGISTRY.register(Box::new(metric.clone()));
    metric
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    match IntCounterVec::new(Opts::new(name, help), labels) {
        Ok(metric) => register(metric),
        Err(e) => unreachable_metric(name, e),
    }
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    match IntGaugeVec::new(Opts::new(name, help), labels) {
        Ok(metric) => register(metric),
        Err(e) => unreachable_metric(name, e),
    }
}

#[allow(clippy::panic)]
fn unreachable_metric(name: &str, e: prometheus::Error) -> ! {
    // Only a malformed static name or label list gets here: a programming error caught by
    // the first test that touches the metric.
    panic!("metric {name} is malformed: {e}")
}

/// Removes every series of `vec` whose labels include all of `labels` (name, value),
/// whatever its other labels: a removed backend's attempts by outcome, its transitions.
pub fn remove_series<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    labels: &[(&str, &str)],
) {
    use prometheus::core::Collector;
    for family in vec.collect() {
        for metric in family.get_metric() {
            let pairs: std::collections::HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|pair| (pair.name(), pair.value()))
                .collect();
            if labels
                .iter()
                .all(|(name, value)| pairs.get(name) == Some(value))
            {
                let _ = vec.remove(&pairs);
            }
        }
    }
}

pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_requests_total",
        "Requests answered by the gateway, by route, method and status.",
        &["route", "method", "status"],
    )
});

pub static REQUEST_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "gateway_request_duration_seconds",
        "Time from request arrival to the end of the response, by route.",
    )
    .buckets(LATENCY_BUCKETS.to_vec());
    match HistogramVec::new(opts, &["route"]) {
        Ok(metric) => register(metric),
        Err(e) => unreachable_metric("gateway_request_duration_seconds", e),
    }
});

pub static UPSTREAM_ATTEMPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_upstream_attempts_total",
        "Attempts to call a backend, by outcome as the breaker saw it.",
        &["upstream", "backend", "outcome"],
    )
});

pub static BREAKER_STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "gateway_breaker_state",
        "Circuit breaker state per backend: 0 closed, 1 open, 2 half-open.",
        &["upstream", "backend"],
    )
});

pub static BREAKER_TRANSITIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_breaker_transitions_total",
        "Circuit breaker state changes per backend.",
        &["upstream", "backend", "from", "to"],
    )
});

pub static BREAKER_REJECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_breaker_rejections_total",
        "Requests answered 503 at once because no backend of the upstream was admitted.",
        &["upstream"],
    )
});

/// What clients did that the gateway cut short without asking any upstream to pay for it.
pub static CLIENT_ABORTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_client_aborts_total",
        "Requests ended by the client's behaviour, by route and reason: body_timeout, header_timeout, too_large, malformed, went_away.",
        &["route", "reason"],
    )
});

pub static TOKEN_CACHE: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_token_cache_total",
        "Token cache lookups for Basic credentials: hit, miss or negative_hit (a refusal remembered).",
        &["result"],
    )
});

pub static AUTH_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_auth_requests_total",
        "Credential exchanges at the token endpoint, by outcome: ok, rejected, unavailable, invalid_token, shed.",
        &["outcome"],
    )
});

pub static AUTH_DURATION: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    let opts = HistogramOpts::new(
        "gateway_auth_duration_seconds",
        "Duration of credential exchanges at the token endpoint.",
    )
    .buckets(LATENCY_BUCKETS.to_vec());
    match prometheus::Histogram::with_opts(opts) {
        Ok(metric) => register(metric),
        Err(e) => unreachable_metric("gateway_auth_duration_seconds", e),
    }
});

pub static CACHE_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_cache_requests_total",
        "GET/HEAD requests on cached routes, by how the cache answered: hit, miss, stale, bypass.",
        &["route", "result"],
    )
});

pub static CACHE_STORE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_cache_store_errors_total",
        "Cache store operations that did not succeed (the request went on uncached), by kind: down (not tried, no connection), timeout, broken (connection failed), reply (the store answered with an error).",
        &["store", "kind"],
    )
});

pub static CACHE_STORE_AVAILABLE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "gateway_cache_store_available",
        "1 while the cache store answers, 0 while it is down or being reconnected.",
        &["store"],
    )
});

pub static CACHE_ENTRIES: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    match prometheus::IntGauge::new(
        "gateway_cache_entries",
        "Entries held by the memory cache store.",
    ) {
        Ok(metric) => register(metric),
        Err(e) => unreachable_metric("gateway_cache_entries", e),
    }
});

pub static CACHE_BYTES: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    match prometheus::IntGauge::new(
        "gateway_cache_bytes",
        "Bytes held by the memory cache store.",
    ) {
        Ok(metric) => register(metric),
        Err(e) => unreachable_metric("gateway_cache_bytes", e),
    }
});

pub static CONFIG_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_config_reloads_total",
        "Config reload attempts, by result: success or failure.",
        &["result"],
    )
});

pub static TLS_CERTIFICATE_RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_tls_certificate_reloads_total",
        "Changed TLS listener certificate or key files seen, by result: success (served from the next handshake) or failure (the previous pair keeps serving).",
        &["result"],
    )
});

pub static TLS_CERTIFICATE_EXPIRY: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    match prometheus::IntGauge::new(
        "gateway_tls_certificate_expiry_timestamp_seconds",
        "Unix time at which the certificate the TLS listener serves expires (its notAfter).",
    ) {
        Ok(metric) => register(metric),
        Err(e) => unreachable_metric("gateway_tls_certificate_expiry_timestamp_seconds", e),
    }
});

pub static CONFIG_LAST_SUCCESS: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    match prometheus::Gauge::new(
        "gateway_config_last_reload_success_timestamp_seconds",
        "Unix time at which the running config was loaded (start-up or the last successful reload).",
    ) {
        Ok(metric) => register(metric),
        Err(e) => unreachable_metric("gateway_config_last_reload_success_timestamp_seconds", e),
    }
});

/// Prometheus's own convention (`prometheus_config_last_reload_successful`): unlike the
/// counters, it stays 0 from a rejected reload until one succeeds, however many reloads
/// succeeded before the rejected one, so an alert on it means "the file on disk is not
/// what runs" (and would not start the gateway).
pub static CONFIG_LAST_RELOAD_SUCCESSFUL: LazyLock<prometheus::IntGauge> = LazyLock::new(|| {
    match prometheus::IntGauge::new(
        "gateway_config_last_reload_successful",
        "1 while the last config load (start-up, file change or SIGHUP) was applied, 0 after a rejected one until a reload succeeds.",
    ) {
        Ok(metric) => {
            // Nothing rejected yet (a gateway given its config in memory never reloads).
            metric.set(1);
            register(metric)
        }
        Err(e) => unreachable_metric("gateway_config_last_reload_successful", e),
    }
});

// Concurrency limits (bulkheads) and health checks: upstream/bulkhead.rs, upstream/health.rs.

pub static UPSTREAM_SHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_upstream_shed_total",
        "Requests refused with 503 because a concurrency limit was reached, by upstream, limit (upstream or token_exchange) and reason (queue_full or queue_timeout).",
        &["upstream", "limit", "reason"],
    )
});

pub static UPSTREAM_IN_FLIGHT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "gateway_upstream_in_flight",
        "Calls in flight on each backend (what max_in_flight limits), read at scrape time.",
        &["upstream", "backend"],
    )
});

pub static UPSTREAM_QUEUED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "gateway_upstream_queued",
        "Requests waiting for a free slot, by upstream and limit (upstream or token_exchange), read at scrape time.",
        &["upstream", "limit"],
    )
});

pub static HEALTH_CHECKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_health_checks_total",
        "Active health checks, by upstream, backend and result: pass, fail, timeout, error.",
        &["upstream", "backend", "result"],
    )
});

pub static RATE_LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_rate_limited_total",
        "Requests answered 429 by a rate-limit policy, by route and policy.",
        &["route", "policy"],
    )
});

pub static RATE_LIMIT_FALLBACK: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_rate_limit_fallback_total",
        "Decisions of a `store: redis` policy made locally because Redis could not answer.",
        &["policy"],
    )
});

pub static RATE_LIMIT_STORE_AVAILABLE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge_vec(
        "gateway_rate_limit_store_available",
        "For a `store: redis` policy: 1 while Redis answers, 0 while counting locally.",
        &["policy"],
    )
});

pub static RATE_LIMIT_STORE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_rate_limit_store_errors_total",
        "Redis calls of a `store: redis` policy that did not succeed (the request was counted locally), by kind: down (not tried, no connection), timeout, broken (connection failed), reply (Redis answered with an error).",
        &["policy", "kind"],
    )
});

pub static RATE_LIMIT_EVICTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_rate_limit_evictions_total",
        "Keys pushed out of a policy's full table while still carrying debt (the table is too small for the keys seen).",
        &["policy"],
    )
});

pub static EXCHANGE_LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "gateway_exchange_limited_total",
        "Credential exchanges refused with 429 before reaching the users service, by reason: in_flight, client_failures, login_failures.",
        &["reason"],
    )
});

/// One route's series of the per-request metrics, resolved in their families when the
/// route is compiled and kept, so a request costs no label lookup (hashing every label
/// value). Every series whose labels the config already tells is created then, at 0: a
/// counter series born at 1 reads as no increase to Prometheus's `increase()` and
/// `rate()`, which would hide the first event (the first 413 of a route, its first cache
/// hit). Only `gateway_requests_total`, whose `status` only a request tells, is created
/// at its first count.
pub struct RouteSeries {
    route: std::sync::Arc<str>,
    duration: Histogram,
    /// `gateway_requests_total` by method (see [`method_label`]), then the first
    /// [`STATUS_SLOTS`] statuses seen with it; rarer ones are looked up each time.
    requests: [[OnceLock<(u16, IntCounter)>; STATUS_SLOTS]; METHODS],
    /// `gateway_cache_requests_total` by [`CacheResult`], on a cached route.
    cache: Option<[IntCounter; CacheResult::ALL.len()]>,
    /// `gateway_client_aborts_total` by [`ClientAbort::ON_ROUTE`].
    aborts: [IntCounter; ClientAbort::ON_ROUTE.len()],
    /// `gateway_rate_limited_total` under the route's policy (its name), if it has one.
    rate_limited: Option<(std::sync::Arc<str>, IntCounter)>,
}

/// Statuses kept per method and route: a route answers with few distinct ones.
const STATUS_SLOTS: usize = 8;
/// The label values [`method_label`] can return.
const METHODS: usize = 10;

/// How the cache answered a request (`gateway_cache_requests_total`'s `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    Stale,
    Bypass,
}

impl CacheResult {
    /// Every result, in discriminant order.
    pub const ALL: [CacheResult; 4] = [
        CacheResult::Hit,
        CacheResult::Miss,
        CacheResult::Stale,
        CacheResult::Bypass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Stale => "stale",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// Why the gateway ended a request because of what its client did: the `reason` label of
/// `gateway_client_aborts_total`. None of these is ever charged to a breaker. (What the
/// client is answered, `problem`, is the proxy's, in `proxy/body.rs`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAbort {
    /// The body, declared or as received, is larger than the route's `max_body`: 413.
    TooLarge,
    /// The body did not arrive in time (`client_body_timeout`): 408.
    BodyTimeout,
    /// The header did not arrive in time (`client_header_timeout`): the connection closes.
    HeaderTimeout,
    /// The body's framing is broken (a bad chunk): 400.
    Malformed,
    /// The client closed its connection before the request or its answer went through, or
    /// stopped reading the answer (`client_write_timeout`).
    WentAway,
}

impl ClientAbort {
    /// The reasons a routed request can end with: all but `HeaderTimeout`, as without a
    /// header no route is known (it counts as `unmatched`).
    pub const ON_ROUTE: [ClientAbort; 4] = [
        ClientAbort::TooLarge,
        ClientAbort::BodyTimeout,
        ClientAbort::Malformed,
        ClientAbort::WentAway,
    ];

    /// The reasons of requests no route took: a header that never came, a client gone
    /// before its 404/405 went out.
    pub const UNMATCHED: [ClientAbort; 2] = [ClientAbort::HeaderTimeout, ClientAbort::WentAway];

    pub fn as_str(self) -> &'static str {
        match self {
            ClientAbort::TooLarge => "too_large",
            ClientAbort::BodyTimeout => "body_timeout",
            ClientAbort::HeaderTimeout => "header_timeout",
            ClientAbort::Malformed => "malformed",
            ClientAbort::WentAway => "went_away",
        }
    }
}

/// The `route` label of requests no route took.
pub const UNMATCHED: &str = "unmatched";

/// Creates the `unmatched` series of `gateway_client_aborts_total` at 0 (see
/// [`RouteSeries`]); run with every route table, it changes nothing after the first.
pub fn init_unmatched_series() {
    for reason in ClientAbort::UNMATCHED {
        CLIENT_ABORTS.with_label_values(&[UNMATCHED, reason.as_str()]);
    }
}

impl RouteSeries {
    /// The series of route `route`: its cache results if it is `cached`, its refusals by
    /// `rate_limit` (the policy's name) if it has one.
    pub fn new(
        route: std::sync::Arc<str>,
        cached: bool,
        rate_limit: Option<&std::sync::Arc<str>>,
    ) -> Self {
        let cache = cached.then(|| {
            CacheResult::ALL
                .map(|result| CACHE_REQUESTS.with_label_values(&[&*route, result.as_str()]))
        });
        let aborts = ClientAbort::ON_ROUTE
            .map(|reason| CLIENT_ABORTS.with_label_values(&[&*route, reason.as_str()]));
        let rate_limited = rate_limit.map(|policy| {
            (
                policy.clone(),
                RATE_LIMITED.with_label_values(&[&*route, &**policy]),
            )
        });
        RouteSeries {
            duration: REQUEST_DURATION.with_label_values(&[&*route]),
            route,
            requests: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            cache,
            aborts,
            rate_limited,
        }
    }

    /// Counts one answered request and its duration.
    pub fn count_request(&self, method: &Method, status: u16, seconds: f64) {
        self.duration.observe(seconds);
        let lookup = || {
            REQUESTS.with_label_values(&[&*self.route, method_label(method), status_label(status)])
        };
        for slot in &self.requests[method_index(method)] {
            // An empty slot takes this status; two threads filling one slot at once both
            // end with the winner's, and the loser goes on to the next slot.
            let (held, counter) = slot.get_or_init(|| (status, lookup()));
            if *held == status {
                counter.inc();
                return;
            }
        }
        lookup().inc();
    }

    pub fn count_cache(&self, result: CacheResult) {
        match &self.cache {
            Some(series) => series[result as usize].inc(),
            // Not a cached route when compiled: nothing asks the cache for it.
            None => CACHE_REQUESTS
                .with_label_values(&[&*self.route, result.as_str()])
                .inc(),
        }
    }

    pub fn count_abort(&self, reason: ClientAbort) {
        match ClientAbort::ON_ROUTE.iter().position(|r| *r == reason) {
            Some(index) => self.aborts[index].inc(),
            None => CLIENT_ABORTS
                .with_label_values(&[&*self.route, reason.as_str()])
                .inc(),
        }
    }

    /// Counts one request refused by `policy`, the route's rate-limit policy.
    pub fn count_rate_limited(&self, policy: &str) {
        match &self.rate_limited {
            Some((name, counter)) if **name == *policy => counter.inc(),
            _ => RATE_LIMITED
                .with_label_values(&[&*self.route, policy])
                .inc(),
        }
    }
}

impl std::fmt::Debug for RouteSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSeries")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

/// The index of [`method_label`]'s value.
fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// Methods outside the standard set share one label value, keeping cardinality bounded.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Status codes as label values without allocating.
pub fn status_label(status: u16) -> &'static str {
    static LABELS: LazyLock<Vec<String>> =
        LazyLock::new(|| (0..600).map(|s| s.to_string()).collect());
    LABELS
        .get(usize::from(status))
        .map_or("other", String::as_str)
}

/// The text exposition of every gateway metric.
pub fn render() -> Vec<u8> {
    // Touch the lazies so that a scrape before the first request still lists every family.
    LazyLock::force(&REQUESTS);
    LazyLock::force(&REQUEST_DURATION);
    LazyLock::force(&UPSTREAM_ATTEMPTS);
    LazyLock::force(&BREAKER_STATE);
    LazyLock::force(&BREAKER_TRANSITIONS);
    LazyLock::force(&BREAKER_REJECTIONS);
    LazyLock::force(&CLIENT_ABORTS);
    LazyLock::force(&TOKEN_CACHE);
    LazyLock::force(&AUTH_REQUESTS);
    LazyLock::force(&AUTH_DURATION);
    LazyLock::force(&CACHE_REQUESTS);
    LazyLock::force(&CACHE_STORE_ERRORS);
    LazyLock::force(&CACHE_STORE_AVAILABLE);
    LazyLock::force(&CACHE_ENTRIES);
    LazyLock::force(&CACHE_BYTES);
    LazyLock::force(&CONFIG_RELOADS);
    LazyLock::force(&CONFIG_LAST_SUCCESS);
    LazyLock::force(&CONFIG_LAST_RELOAD_SUCCESSFUL);
    LazyLock::force(&UPSTREAM_SHED);
    LazyLock::force(&UPSTREAM_IN_FLIGHT);
    LazyLock::force(&UPSTREAM_QUEUED);
    LazyLock::force(&HEALTH_CHECKS);
    LazyLock::force(&TLS_CERTIFICATE_RELOADS);
    LazyLock::force(&RATE_LIMITED);
    LazyLock::force(&RATE_LIMIT_FALLBACK);
    LazyLock::force(&RATE_LIMIT_STORE_AVAILABLE);
    LazyLock::force(&RATE_LIMIT_STORE_ERRORS);
    LazyLock::force(&RATE_LIMIT_EVICTIONS);
    LazyLock::force(&EXCHANGE_LIMITED);
    let mut buffer = Vec::new();
    // Encoding into a Vec cannot fail for well-formed families.
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut buffer);
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_series_count_where_label_lookups_would() {
        let route = "series-test-route";
        let policy: std::sync::Arc<str> = std::sync::Arc::from("series-test-policy");
        let series = RouteSeries::new(std::sync::Arc::from(route), true, Some(&policy));
        let cache = |result| CACHE_REQUESTS.with_label_values(&[route, result]).get();
        let abort = |reason| CLIENT_ABORTS.with_label_values(&[route, reason]).get();
        let family_has = |family: &IntCounterVec, labels: &[&str]| {
            use prometheus::core::Collector;
            family
                .collect()
                .iter()
                .flat_map(|f| f.get_metric())
                .any(|m| {
                    labels
                        .iter()
                        .all(|v| m.get_label().iter().any(|l| l.value() == *v))
                })
        };
        // Before anything is counted, the series the route's config tells exist at 0.
        for result in ["hit", "miss", "stale", "bypass"] {
            assert!(family_has(&CACHE_REQUESTS, &[route, result]), "{result}");
        }
        for reason in ["too_large", "body_timeout", "malformed", "went_away"] {
            assert!(family_has(&CLIENT_ABORTS, &[route, reason]), "{reason}");
        }
        assert!(family_has(&RATE_LIMITED, &[route, "series-test-policy"]));
        assert!(!family_has(&CLIENT_ABORTS, &[route, "header_timeout"]));
        assert!(!family_has(&REQUESTS, &[route]));
        let value =
            |method: &str, status: &str| REQUESTS.with_label_values(&[route, method, status]).get();
        // More distinct statuses than slots: the rarer ones are still counted.
        for status in 200..212u16 {
            for _ in 0..2 {
                series.count_request(&Method::GET, status, 0.001);
            }
        }
        series.count_request(&Method::POST, 201, 0.001);
        for status in 200..212u16 {
            assert_eq!(value("GET", status_label(status)), 2, "status {status}");
        }
        assert_eq!(value("POST", "201"), 1);
        let histogram = REQUEST_DURATION.with_label_values(&[route]);
        assert_eq!(histogram.get_sample_count(), 25);
        series.count_cache(CacheResult::Hit);
        series.count_cache(CacheResult::Hit);
        series.count_cache(CacheResult::Stale);
        assert_eq!((cache("hit"), cache("stale"), cache("miss")), (2, 1, 0));
        series.count_abort(ClientAbort::TooLarge);
        series.count_abort(ClientAbort::HeaderTimeout);
        assert_eq!((abort("too_large"), abort("header_timeout")), (1, 1));
        series.count_rate_limited("series-test-policy");
        series.count_rate_limited("another-policy");
        let limited = |policy| RATE_LIMITED.with_label_values(&[route, policy]).get();
        assert_eq!(
            (limited("series-test-policy"), limited("another-policy")),
            (1, 1)
        );
    }
}
