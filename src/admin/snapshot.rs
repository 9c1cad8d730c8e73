//! `/admin/snapshot`, the document the live page draws: the breakers (as
//! `/admin/breakers`), the recent transitions, per-route rates over the last
//! [`WINDOW`] (from the gateway's own metrics, sampled once per tick), the token cache and
//! the auth service, and the config in force (as `/admin/config`). Computed once per tick
//! by [`super::stream`]'s ticker and shared by every subscriber; the rates are plain
//! arithmetic over counter samples with the time injected, tested without sockets.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use prometheus::core::Collector;
use serde::Serialize;

use crate::{events::TransitionEvent, metrics, reload::ConfigStatus};

use super::UpstreamReport;

/// Rates are computed over the samples of this long ago.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Counters of one route at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteCounters {
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    /// `(upper bound in seconds, cumulative count)`, `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    pub cache_hits: u64,
    /// hit + miss + stale + bypass.
    pub cache_lookups: u64,
}

/// Every counter the page derives rates from, at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub routes: BTreeMap<String, RouteCounters>,
    /// `hit` and `negative_hit` (a remembered refusal is a hit too).
    pub token_hits: u64,
    pub token_lookups: u64,
}

fn label<'a>(metric: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

impl Sample {
    /// Reads the gateway's counters (the registry's, so process-wide).
    pub fn gather() -> Sample {
        let mut sample = Sample::default();
        sample.per_route(&*metrics::REQUESTS, |route, m| {
            let n = m.get_counter().get_value() as u64;
            route.requests += n;
            if label(m, "status").starts_with('5') {
                route.errors += n;
            }
        });
        sample.per_route(&*metrics::REQUEST_DURATION, |route, m| {
            let h = m.get_histogram();
            route.buckets = h
                .get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count()))
                .chain(std::iter::once((f64::INFINITY, h.get_sample_count())))
                .collect();
        });
        sample.per_route(&*metrics::CACHE_REQUESTS, |route, m| {
            let n = m.get_counter().get_value() as u64;
            route.cache_lookups += n;
            if label(m, "result") == "hit" {
                route.cache_hits += n;
            }
        });
        for m in metrics::TOKEN_CACHE
            .collect()
            .iter()
            .flat_map(|f| f.get_metric())
        {
            let n = m.get_counter().get_value() as u64;
            sample.token_lookups += n;
            if matches!(label(m, "result"), "hit" | "negative_hit") {
                sample.token_hits += n;
            }
        }
        sample
    }

    /// Hands every series of `family` to `add`, with the counters of the route its `route`
    /// label names.
    fn per_route(
        &mut self,
        family: &dyn Collector,
        mut add: impl FnMut(&mut RouteCounters, &prometheus::proto::Metric),
    ) {
        for m in family.collect().iter().flat_map(|f| f.get_metric()) {
            add(
                self.routes.entry(label(m, "route").to_owned()).or_default(),
                m,
            );
        }
    }
}

/// One route's traffic over the window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteStats {
    pub route: String,
    pub requests_per_second: f64,
    /// Share of answers with a 5xx status; `None` without requests.
    pub error_share: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Share of cache lookups answered fresh from the cache; `None` on an uncached route
    /// or without lookups.
    pub cache_hit_ratio: Option<f64>,
}

/// What the window says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowStats {
    pub seconds: f64,
    pub routes: Vec<RouteStats>,
    pub token_cache_hit_ratio: Option<f64>,
}

/// The samples of the last [`WINDOW`].
#[derive(Debug, Default)]
pub struct Rates {
    samples: VecDeque<(Instant, Sample)>,
}

impl Rates {
    /// Adds the sample taken at `now`, and returns the rates between the oldest sample of
    /// the window and this one, for `routes` (the routes of the config in force, in order).
    pub fn push(&mut self, now: Instant, sample: Sample, routes: &[String]) -> WindowStats {
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW)
        {
            self.samples.pop_front();
        }
        self.samples.push_back((now, sample));
        let (Some((first_at, first)), Some((last_at, last))) =
            (self.samples.front(), self.samples.back())
        else {
            return WindowStats::default();
        };
        let seconds = last_at.saturating_duration_since(*first_at).as_secs_f64();
        let empty = RouteCounters::default();
        let stats = routes
            .iter()
            .map(|route| {
                let now = last.routes.get(route).unwrap_or(&empty);
                let then = first.routes.get(route).unwrap_or(&empty);
                route_stats(route, then, now, seconds)
            })
            .collect();
        WindowStats {
            seconds,
            routes: stats,
            token_cache_hit_ratio: ratio(
                last.token_hits.saturating_sub(first.token_hits),
                last.token_lookups.saturating_sub(first.token_lookups),
            ),
        }
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn route_stats(route: &str, then: &RouteCounters, now: &RouteCounters, seconds: f64) -> RouteStats {
    let requests = now.requests.saturating_sub(then.requests);
    let buckets: Vec<(f64, u64)> = now
        .buckets
        .iter()
        .map(|&(le, count)| {
            let before = then
                .buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0, |(_, c)| *c);
            (le, count.saturating_sub(before))
        })
        .collect();
    RouteStats {
        route: route.to_owned(),
        requests_per_second: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        error_share: ratio(now.errors.saturating_sub(then.errors), requests),
        p50_ms: quantile(0.5, &buckets).map(|s| s * 1000.0),
        p99_ms: quantile(0.99, &buckets).map(|s| s * 1000.0),
        cache_hit_ratio: ratio(
            now.cache_hits.saturating_sub(then.cache_hits),
            now.cache_lookups.saturating_sub(then.cache_lookups),
        ),
    }
}

/// Prometheus's `histogram_quantile`: linear interpolation inside the bucket the rank
/// falls in; the highest finite bound when it falls in `+Inf`. `None` without
/// observations.
pub fn quantile(q: f64, buckets: &[(f64, u64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(le, count) in buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = (count - lower.1) as f64;
            if in_bucket == 0.0 {
                return Some(le);
            }
            return Some(lower.0 + (le - lower.0) * (rank - lower.1 as f64) / in_bucket);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

/// The auth service as the page shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuthReport {
    /// The upstream token exchanges go through.
    pub upstream: String,
    /// `up` (a backend's breaker is closed), `probing` (none closed, one half-open) or
    /// `down` (every breaker open).
    pub state: &'static str,
    pub token_cache_hit_ratio: Option<f64>,
}

/// The document of `/admin/snapshot` and of the stream's `snapshot` events.
#[derive(Serialize)]
pub struct Snapshot {
    /// RFC 3339, when it was computed.
    pub at: String,
    pub upstreams: Vec<UpstreamReport>,
    /// The last transitions, newest first.
    pub transitions: Vec<TransitionEvent>,
    /// Seconds the route rates cover (up to 10; less just after start).
    pub window_seconds: f64,
    pub routes: Vec<RouteStats>,
    pub auth: Option<AuthReport>,
    /// As `/admin/config`; absent when the gateway was not started from a file.
    pub config: Option<ConfigStatus>,
}

/// `up`, `probing` or `down` for an upstream's backend states.
pub fn service_state<'a>(states: impl IntoIterator<Item = &'a str>) -> &'static str {
    let mut probing = false;
    for state in states {
        match state {
            "closed" => return "up",
            "half_open" => probing = true,
            _ => {}
        }
    }
    if probing { "probing" } else { "down" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(requests: u64, errors: u64, buckets: &[(f64, u64)]) -> RouteCounters {
        RouteCounters {
            requests,
            errors,
            buckets: buckets.to_vec(),
            cache_hits: 0,
            cache_lookups: 0,
        }
    }

    fn sample(route: &str, c: RouteCounters) -> Sample {
        Sample {
            routes: BTreeMap::from([(route.to_owned(), c)]),
            ..Sample::default()
        }
    }

    #[test]
    fn gather_reads_each_route_from_every_family() {
        let route = "snapshot-gather-route";
        let series = metrics::RouteSeries::new(std::sync::Arc::from(route), true, None);
        series.count_request(&http::Method::GET, 200, 0.001);
        series.count_request(&http::Method::GET, 503, 0.001);
        series.count_cache(metrics::CacheResult::Hit);
        series.count_cache(metrics::CacheResult::Miss);
        let sample = Sample::gather();
        let counters = &sample.routes[route];
        assert_eq!((counters.requests, counters.errors), (2, 1));
        assert_eq!(counters.buckets.last(), Some(&(f64::INFINITY, 2)));
        assert_eq!((counters.cache_hits, counters.cache_lookups), (1, 2));
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let buckets = [(0.1, 50), (0.2, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(0.5, &buckets), Some(0.1));
        let p75 = quantile(0.75, &buckets).unwrap();
        assert!((p75 - 0.15).abs() < 1e-9, "{p75}");
        assert_eq!(quantile(0.5, &[(0.1, 0), (f64::INFINITY, 0)]), None);
        // Beyond the last finite bound: that bound, as Prometheus does.
        assert_eq!(quantile(0.99, &[(0.1, 1), (f64::INFINITY, 10)]), Some(0.1));
    }

    #[test]
    fn rates_cover_the_window_and_forget_older_samples() {
        let t0 = Instant::now();
        let routes = vec!["r".to_owned()];
        let mut rates = Rates::default();
        let first = rates.push(t0, sample("r", counters(0, 0, &[])), &routes);
        assert_eq!(first.routes[0].requests_per_second, 0.0);
        assert_eq!(first.routes[0].error_share, None);

        let b = [(0.01, 90), (0.1, 100), (f64::INFINITY, 100)];
        let later = rates.push(
            t0 + Duration::from_secs(5),
            sample("r", counters(100, 25, &b)),
            &routes,
        );
        assert_eq!(later.seconds, 5.0);
        assert_eq!(later.routes[0].requests_per_second, 20.0);
        assert_eq!(later.routes[0].error_share, Some(0.25));
        assert!(later.routes[0].p99_ms.unwrap() > 10.0);

        // 20 s on, the first two samples have left the window: nothing happened since.
        let quiet = rates.push(
            t0 + Duration::from_secs(20),
            sample("r", counters(100, 25, &b)),
            &routes,
        );
        assert_eq!(quiet.routes[0].requests_per_second, 0.0);
        assert_eq!(quiet.routes[0].p50_ms, None);
    }

    #[test]
    fn a_route_without_traffic_is_listed_with_zeroes() {
        let mut rates = Rates::default();
        let stats = rates.push(Instant::now(), Sample::default(), &["idle".to_owned()]);
        assert_eq!(stats.routes[0].route, "idle");
        assert_eq!(stats.routes[0].cache_hit_ratio, None);
        assert_eq!(stats.token_cache_hit_ratio, None);
    }

    #[test]
    fn the_service_is_up_while_any_backend_is_closed() {
        assert_eq!(service_state(["open", "closed"]), "up");
        assert_eq!(service_state(["open", "half_open"]), "probing");
        assert_eq!(service_state(["open"]), "down");
    }
}
