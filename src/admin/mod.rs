//! The admin listener: `GET /` (the live page, `page.html`), `GET /admin/events` (its
//! Server-Sent Events stream, `stream.rs`), `GET /admin/snapshot` (the document the page
//! draws, `snapshot.rs`), `GET /metrics` (Prometheus text), `GET /healthz`,
//! `GET /admin/breakers` (every upstream's backends with their breaker state),
//! `GET /admin/cache` (the response cache's store, and whether it is connected),
//! `GET /admin/limits` (admission control: calls in flight and waiting per backend, each
//! rate-limit policy with its store and its most limited keys, hashed),
//! `GET /admin/config` (the running config and the last reload) and `GET /openapi.yaml`
//! (the API contract). It runs as its own Pingora service, on its own port and thread, so
//! scrapes and the page never compete with proxied traffic.

mod access;
mod snapshot;
mod stream;

use std::{sync::Arc, time::Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::{StatusCode, header};
use pingora::{
    apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream},
    http::ResponseHeader,
    protocols::http::ServerSession,
    server::ShutdownWatch,
};
use serde::Serialize;

use self::stream::Live;
pub use self::{
    snapshot::{AuthReport, RouteStats, Snapshot},
    stream::Ticker,
};
use crate::{
    breaker::{BreakerSnapshot, Transition},
    drain::Drain,
    metrics,
    reload::Reloader,
    state::State,
    upstream::{Upstream, bulkhead::Bulkhead, health::Health},
};

/// The live page: one file, no external resources (an operator's closed network has no
/// internet), compiled in.
const PAGE: &str = include_str!("page.html");

pub struct Admin {
    live: Arc<Live>,
    drain: Arc<Drain>,
}

impl Admin {
    pub fn new(
        state: Arc<ArcSwap<State>>,
        reloader: Option<Arc<Reloader>>,
        drain: Arc<Drain>,
    ) -> Self {
        Admin {
            live: Arc::new(Live::new(state, reloader)),
            drain,
        }
    }

    /// The background service that computes the page's snapshot once a second and pushes
    /// it to the subscribers of `/admin/events`.
    pub fn ticker(&self) -> Ticker {
        Ticker(self.live.clone())
    }

    /// The response for a method and path; separate from the socket for unit tests.
    pub fn respond(
        &self,
        method: &http::Method,
        path: &str,
    ) -> (StatusCode, &'static str, Vec<u8>) {
        const JSON: &str = "application/json";
        if method != http::Method::GET && method != http::Method::HEAD {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                JSON,
                br#"{"error":"method not allowed"}"#.to_vec(),
            );
        }
        match path {
            "/" => (
                StatusCode::OK,
                "text/html; charset=utf-8",
                PAGE.as_bytes().to_vec(),
            ),
            "/admin/snapshot" => (StatusCode::OK, JSON, self.live.latest().to_vec()),
            "/metrics" => {
                let state = self.live.state.load();
                state.cache.report_usage();
                report_limit_gauges(&state);
                (
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    metrics::render(),
                )
            }
            "/admin/config" => match &self.live.reloader {
                Some(reloader) => (
                    StatusCode::OK,
                    JSON,
                    serde_json::to_vec_pretty(&*reloader.status()).unwrap_or_default(),
                ),
                None => (
                    StatusCode::NOT_FOUND,
                    JSON,
                    br#"{"error":"this gateway was not started from a config file"}"#.to_vec(),
                ),
            },
            "/openapi.yaml" => (
                StatusCode::OK,
                "application/yaml",
                include_str!("../../docs/openapi.yaml").as_bytes().to_vec(),
            ),
            // Not ready from SIGTERM on, while the proxy still serves (crate::drain).
            "/healthz" if self.drain.is_draining() => (
                StatusCode::SERVICE_UNAVAILABLE,
                JSON,
                br#"{"status":"draining"}"#.to_vec(),
            ),
            "/healthz" => (StatusCode::OK, JSON, br#"{"status":"ok"}"#.to_vec()),
            "/admin/breakers" => {
                let report = breakers_report(&self.live.state.load(), Instant::now());
                (
                    StatusCode::OK,
                    JSON,
                    serde_json::to_vec_pretty(&report).unwrap_or_default(),
                )
            }
            "/admin/cache" => {
                let report = cache_report(&self.live.state.load(), Instant::now());
                (
                    StatusCode::OK,
                    JSON,
                    serde_json::to_vec_pretty(&report).unwrap_or_default(),
                )
            }
            "/admin/limits" => {
                let report = limits_report(&self.live.state.load());
                (
                    StatusCode::OK,
                    JSON,
                    serde_json::to_vec_pretty(&report).unwrap_or_default(),
                )
            }
            _ => (
                StatusCode::NOT_FOUND,
                JSON,
                br#"{"error":"not found"}"#.to_vec(),
            ),
        }
    }
}

fn unauthorized() -> (StatusCode, &'static str, Vec<u8>) {
    (
        StatusCode::UNAUTHORIZED,
        "application/json",
        br#"{"error":"this admin listener needs its token: Authorization: Bearer <the value of admin.token_env>"}"#
            .to_vec(),
    )
}

/// Pingora's `ServeHttp` answers with a whole body; the event stream needs to write as
/// events come, so the admin app drives the session itself.
#[async_trait]
impl HttpServerApp for Admin {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(session.read_request().await, Ok(true)) {
            return None;
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let (method, path) = {
            let header = session.req_header();
            (header.method.clone(), header.uri.path().to_owned())
        };
        let state = self.live.state.load_full();
        let settings = &state.config.admin;
        let (allowed, has_token) = {
            let headers = &session.req_header().headers;
            (
                access::allowed(settings, &path, headers),
                access::has_token(settings, headers),
            )
        };
        let mut set_cookie = None;
        let (status, content_type, body) = if path == "/admin/session" {
            // The page trades the token for a cookie that EventSource will carry.
            session.set_keepalive(None);
            if method != http::Method::POST {
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "application/json",
                    br#"{"error":"POST with Authorization: Bearer <token>"}"#.to_vec(),
                )
            } else if has_token {
                set_cookie = access::session_cookie(settings);
                (StatusCode::NO_CONTENT, "application/json", Vec::new())
            } else {
                unauthorized()
            }
        } else if !allowed {
            unauthorized()
        } else if path == "/admin/events" && method == http::Method::GET {
            self.live.serve_events(session).await;
            return None;
        } else {
            self.respond(&method, &path)
        };
        let mut response = ResponseHeader::build(status, Some(5)).ok()?;
        if status == StatusCode::UNAUTHORIZED {
            response
                .insert_header(header::WWW_AUTHENTICATE, "Bearer realm=\"gateway admin\"")
                .ok()?;
        }
        if let Some(cookie) = set_cookie {
            response.insert_header(header::SET_COOKIE, cookie).ok()?;
        }
        response
            .insert_header(header::CONTENT_TYPE, content_type)
            .ok()?;
        response
            .insert_header(header::CONTENT_LENGTH, body.len())
            .ok()?;
        // The page and the JSON change every second; never serve them from a cache.
        response
            .insert_header(header::CACHE_CONTROL, "no-store")
            .ok()?;
        session
            .write_response_header(Box::new(response))
            .await
            .ok()?;
        if method != http::Method::HEAD && !body.is_empty() {
            session.write_response_body(body.into(), true).await.ok()?;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        let stream = session.finish().await.ok()??;
        Some(ReusedHttpStream::from_reusable_stream(stream, settings))
    }
}

#[derive(Serialize)]
pub struct BreakersReport {
    pub upstreams: Vec<UpstreamReport>,
}

#[derive(Serialize)]
pub struct UpstreamReport {
    pub name: String,
    pub breaker: String,
    /// The trip conditions the rates are judged against.
    pub thresholds: Option<Thresholds>,
    pub backends: Vec<BackendReport>,
}

#[derive(Serialize)]
pub struct Thresholds {
    pub consecutive_failures: Option<u32>,
    pub failure_rate: Option<f64>,
    pub slow_call_rate: Option<f64>,
    pub slow_call_seconds: f64,
    pub minimum_calls: u32,
    pub window_seconds: f64,
}

#[derive(Serialize)]
pub struct BackendReport {
    pub backend: String,
    pub state: &'static str,
    pub calls: u32,
    pub failures: u32,
    pub slow_calls: u32,
    pub failure_rate: f64,
    /// slow_calls / calls; 0 when there are no calls.
    pub slow_call_rate: f64,
    pub consecutive_failures: u32,
    /// Calls admitted to the backend and not yet over.
    pub in_flight: usize,
    pub seconds_until_half_open: Option<f64>,
    pub open_for_seconds: f64,
    pub last_transition: Option<TransitionReport>,
    /// `null` unless the upstream has active health checks.
    pub health: Option<HealthReport>,
}

/// What the active health checks concluded about a backend.
#[derive(Serialize)]
pub struct HealthReport {
    /// Out of selection until `healthy_threshold` checks pass in a row.
    pub ejected: bool,
    pub consecutive_passes: u32,
    pub consecutive_failures: u32,
    /// `pass`, `fail`, `timeout` or `error`; `null` before the first check.
    pub last_result: Option<&'static str>,
    pub last_check_seconds_ago: Option<f64>,
}

#[derive(Serialize)]
pub struct TransitionReport {
    pub from: &'static str,
    pub to: &'static str,
    pub reason: String,
    pub at: String,
    pub seconds_ago: f64,
}

#[derive(Serialize)]
pub struct CacheReport {
    pub store: &'static str,
    /// Whether the store can be used now (always true for the memory store).
    pub up: bool,
    /// Since when it has been up or down (a remote store only).
    pub since: Option<String>,
    pub for_seconds: Option<f64>,
    /// What took it down, or the last failed attempt to reconnect.
    pub last_error: Option<String>,
    pub failed_attempts: u64,
}

pub fn cache_report(state: &State, now: Instant) -> CacheReport {
    let store = state.cache.store_label();
    match state.cache.store_health() {
        None => CacheReport {
            store,
            up: true,
            since: None,
            for_seconds: None,
            last_error: None,
            failed_attempts: 0,
        },
        Some(health) => CacheReport {
            store,
            up: health.up,
            since: Some(humantime::format_rfc3339_millis(health.since_wall).to_string()),
            for_seconds: Some(now.saturating_duration_since(health.since).as_secs_f64()),
            last_error: health.last_error,
            failed_attempts: health.failed_attempts,
        },
    }
}

pub fn breakers_report(state: &State, now: Instant) -> BreakersReport {
    BreakersReport {
        upstreams: state
            .upstreams
            .iter()
            .map(|upstream| UpstreamReport {
                name: upstream.name.to_string(),
                breaker: upstream.breaker_name.to_string(),
                thresholds: thresholds(upstream),
                backends: upstream
                    .backends
                    .iter()
                    .map(|b| {
                        let mut report =
                            backend_report(&b.label, &b.breaker.snapshot(now), b.in_flight(), now);
                        if upstream.health_check.is_some() {
                            report.health = Some(health_report(&b.health, now));
                        }
                        report
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Every backend of an upstream runs under the upstream's one policy.
fn thresholds(upstream: &Upstream) -> Option<Thresholds> {
    let policy = upstream.backends.first()?.breaker.policy();
    Some(Thresholds {
        consecutive_failures: policy.consecutive_failures,
        failure_rate: policy.failure_rate,
        slow_call_rate: policy.slow_call_rate,
        slow_call_seconds: policy.slow_call_duration.as_secs_f64(),
        minimum_calls: policy.minimum_calls,
        window_seconds: policy.window.as_secs_f64(),
    })
}

fn backend_report(
    label: &str,
    s: &BreakerSnapshot,
    in_flight: usize,
    now: Instant,
) -> BackendReport {
    BackendReport {
        backend: label.to_owned(),
        state: s.state.as_str(),
        calls: s.calls,
        failures: s.failures,
        slow_calls: s.slow_calls,
        failure_rate: s.failure_rate,
        slow_call_rate: if s.calls == 0 {
            0.0
        } else {
            f64::from(s.slow_calls) / f64::from(s.calls)
        },
        consecutive_failures: s.consecutive_failures,
        in_flight,
        seconds_until_half_open: s.until_half_open.map(|d| d.as_secs_f64()),
        open_for_seconds: s.open_for.as_secs_f64(),
        last_transition: s
            .last_transition
            .as_ref()
            .map(|t| transition_report(t, now)),
        health: None,
    }
}

fn health_report(health: &Health, now: Instant) -> HealthReport {
    let (consecutive_passes, consecutive_failures) = health.streaks();
    let last = health.last();
    HealthReport {
        ejected: health.is_ejected(),
        consecutive_passes,
        consecutive_failures,
        last_result: last.map(|l| l.result.as_str()),
        last_check_seconds_ago: last.map(|l| now.saturating_duration_since(l.at).as_secs_f64()),
    }
}

fn transition_report(t: &Transition, now: Instant) -> TransitionReport {
    TransitionReport {
        from: t.from.as_str(),
        to: t.to.as_str(),
        reason: t.reason.to_string(),
        at: humantime::format_rfc3339_millis(t.at_wall).to_string(),
        seconds_ago: now.saturating_duration_since(t.at).as_secs_f64(),
    }
}

/// `/admin/limits`: every limit in force and how full it is now.
#[derive(Serialize)]
pub struct LimitsReport {
    pub upstreams: Vec<UpstreamLimitsReport>,
    /// `null` without an `auth` section.
    pub token_exchange: Option<ExchangeLimitsReport>,
    /// Each rate-limit policy, its store and its most limited keys (hashed).
    pub rate_limits: Vec<crate::ratelimit::PolicyReport>,
}

#[derive(Serialize)]
pub struct ExchangeLimitsReport {
    pub upstream: String,
    #[serde(flatten)]
    pub limit: ConcurrencyReport,
    pub in_flight: usize,
}

#[derive(Serialize)]
pub struct UpstreamLimitsReport {
    pub name: String,
    #[serde(flatten)]
    pub limit: ConcurrencyReport,
    pub backends: Vec<BackendLimitsReport>,
}

/// A bulkhead's limits and its queue now.
#[derive(Serialize)]
pub struct ConcurrencyReport {
    /// `null`: no limit.
    pub max_in_flight: Option<usize>,
    pub max_queued: usize,
    pub queue_timeout_seconds: f64,
    pub queued: usize,
}

#[derive(Serialize)]
pub struct BackendLimitsReport {
    pub backend: String,
    pub in_flight: usize,
}

fn concurrency_report(bulkhead: &Bulkhead) -> ConcurrencyReport {
    let limit = bulkhead.limit();
    ConcurrencyReport {
        max_in_flight: limit.max_in_flight,
        max_queued: limit.max_queued,
        queue_timeout_seconds: limit.queue_timeout.as_secs_f64(),
        queued: bulkhead.queued(),
    }
}

pub fn limits_report(state: &State) -> LimitsReport {
    LimitsReport {
        upstreams: state
            .upstreams
            .iter()
            .map(|upstream| UpstreamLimitsReport {
                name: upstream.name.to_string(),
                limit: concurrency_report(&upstream.bulkhead),
                backends: upstream
                    .backends
                    .iter()
                    .map(|b| BackendLimitsReport {
                        backend: b.label.to_string(),
                        in_flight: b.in_flight(),
                    })
                    .collect(),
            })
            .collect(),
        token_exchange: state.config.auth.as_ref().map(|auth| ExchangeLimitsReport {
            upstream: auth.upstream.to_string(),
            limit: concurrency_report(state.exchange_limit.bulkhead()),
            in_flight: state.exchange_limit.in_flight(),
        }),
        rate_limits: state
            .rate_limits
            .policies
            .iter()
            .map(|limiter| limiter.report())
            .collect(),
    }
}

/// The in-flight and queued gauges are read from the counters at scrape time: nothing to
/// update on the request path.
fn report_limit_gauges(state: &State) {
    for upstream in &state.upstreams {
        for backend in &upstream.backends {
            metrics::UPSTREAM_IN_FLIGHT
                .with_label_values(&[&*upstream.name, &*backend.label])
                .set(i64::try_from(backend.in_flight()).unwrap_or(i64::MAX));
        }
        metrics::UPSTREAM_QUEUED
            .with_label_values(&[&*upstream.name, "upstream"])
            .set(i64::try_from(upstream.bulkhead.queued()).unwrap_or(i64::MAX));
    }
    if let Some(auth) = &state.config.auth {
        let queued = state.exchange_limit.bulkhead().queued();
        metrics::UPSTREAM_QUEUED
            .with_label_values(&[&*auth.upstream, "token_exchange"])
            .set(i64::try_from(queued).unwrap_or(i64::MAX));
    }
}
