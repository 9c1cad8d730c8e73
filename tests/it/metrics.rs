//! The metrics a fresh gateway exports before its first request: every counter series whose
//! labels the config tells is there at 0, so Prometheus' `increase()` sees its first event.
//! The gateways of this binary share one registry, so the config's names are this test's
//! own (`zero-…`), and series without a route, upstream or policy label are only required
//! to exist (another test may have counted them).

use crate::support::{
    Mode, TestGateway, TestUpstream, metric,
    redis::{self as redis_support, PrefixGuard, SHARED_URL},
};

const FAILURES: [&str; 6] = [
    "connect_failed",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "response_incomplete",
    "failure_status",
];

fn config(svc: &str, users: &str, prefix: &str) -> String {
    format!(
        "upstreams:
  zero-users: {{ backends: [\"{users}\"] }}
  zero-svc: {{ backends: [\"{svc}\"], max_in_flight: 2, health_check: {{ path: /healthz, interval: 1h }} }}
  zero-tls: {{ backends: [\"https://127.0.0.1:1\"] }}
auth:
  token_endpoint: {{ upstream: zero-users, max_in_flight: 2 }}
rate_limits:
  zero-memory: {{ rate: 10/m }}
  zero-redis: {{ rate: 10/m, store: redis, redis_url: \"{SHARED_URL}\", key_prefix: \"{prefix}\", redis_timeout: 1s }}
routes:
  - {{ name: zero-cached, path: /zero-cached, upstream: zero-svc, auth: none, cache: {{ ttl: 30s, scope: shared }} }}
  - {{ name: zero-limited, path: /zero-limited, upstream: zero-svc, auth: none, rate_limit: zero-memory }}
  - {{ name: zero-shared, path: /zero-shared, upstream: zero-tls, rate_limit: zero-redis }}
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_gateway_exports_the_series_its_config_tells_at_zero() {
    redis_support::require_shared().await;
    let svc = TestUpstream::start(Mode::Echo).await;
    let users = TestUpstream::start(Mode::Echo).await;
    let guard = PrefixGuard::new("zero");
    let gateway = TestGateway::start(&config(
        &svc.addr.to_string(),
        &users.addr.to_string(),
        &guard.prefix,
    ))
    .await;
    let text = gateway.metrics().await;
    let zero = |name: &str, labels: &[(&str, &str)]| {
        assert_eq!(
            metric(&text, name, labels),
            Some(0.0),
            "{name} {labels:?} at 0 before any request"
        );
    };
    let absent = |name: &str, labels: &[(&str, &str)], why: &str| {
        assert_eq!(
            metric(&text, name, labels),
            None,
            "{name} {labels:?}: {why}"
        );
    };
    let present = |name: &str, labels: &[(&str, &str)]| {
        assert!(
            metric(&text, name, labels).is_some(),
            "{name} {labels:?} exported"
        );
    };

    // Per route.
    for route in ["zero-cached", "zero-limited", "zero-shared"] {
        zero(
            "gateway_request_duration_seconds_count",
            &[("route", route)],
        );
        for reason in ["too_large", "body_timeout", "malformed", "went_away"] {
            zero(
                "gateway_client_aborts_total",
                &[("route", route), ("reason", reason)],
            );
        }
        // Its status only a request tells.
        absent(
            "gateway_requests_total",
            &[("route", route)],
            "no request yet",
        );
    }
    for reason in ["header_timeout", "went_away"] {
        present(
            "gateway_client_aborts_total",
            &[("route", "unmatched"), ("reason", reason)],
        );
    }
    for result in ["hit", "miss", "stale", "bypass"] {
        zero(
            "gateway_cache_requests_total",
            &[("route", "zero-cached"), ("result", result)],
        );
    }
    absent(
        "gateway_cache_requests_total",
        &[("route", "zero-limited")],
        "an uncached route has no cache series",
    );
    zero(
        "gateway_rate_limited_total",
        &[("route", "zero-limited"), ("policy", "zero-memory")],
    );
    zero(
        "gateway_rate_limited_total",
        &[("route", "zero-shared"), ("policy", "zero-redis")],
    );

    // Per upstream and backend.
    let svc_label = svc.addr.to_string();
    let on_svc = |outcome| [("backend", svc_label.as_str()), ("outcome", outcome)];
    for outcome in ["success", "cancelled"].into_iter().chain(FAILURES) {
        zero("gateway_upstream_attempts_total", &on_svc(outcome));
        zero(
            "gateway_upstream_attempts_total",
            &[("upstream", "zero-tls"), ("outcome", outcome)],
        );
    }
    for outcome in ["tls_verification", "tls_handshake"] {
        zero(
            "gateway_upstream_attempts_total",
            &[("upstream", "zero-tls"), ("outcome", outcome)],
        );
        absent(
            "gateway_upstream_attempts_total",
            &on_svc(outcome),
            "a plain backend has no TLS failures",
        );
    }
    for upstream in ["zero-svc", "zero-tls", "zero-users"] {
        zero(
            "gateway_breaker_rejections_total",
            &[("upstream", upstream)],
        );
    }
    // The first check runs at start (and passes); the other results stay at 0.
    present(
        "gateway_health_checks_total",
        &[("upstream", "zero-svc"), ("result", "pass")],
    );
    for result in ["fail", "timeout", "error"] {
        zero(
            "gateway_health_checks_total",
            &[("upstream", "zero-svc"), ("result", result)],
        );
    }
    for (upstream, limit) in [("zero-svc", "upstream"), ("zero-users", "token_exchange")] {
        for reason in ["queue_full", "queue_timeout"] {
            zero(
                "gateway_upstream_shed_total",
                &[("upstream", upstream), ("limit", limit), ("reason", reason)],
            );
        }
    }
    absent(
        "gateway_upstream_shed_total",
        &[("upstream", "zero-tls")],
        "an upstream without max_in_flight sheds nothing",
    );

    // Auth and the rate-limit policies.
    for result in ["hit", "miss", "negative_hit"] {
        present("gateway_token_cache_total", &[("result", result)]);
    }
    for outcome in ["ok", "rejected", "unavailable", "invalid_token", "shed"] {
        present("gateway_auth_requests_total", &[("outcome", outcome)]);
    }
    for reason in ["in_flight", "client_failures", "login_failures"] {
        present("gateway_exchange_limited_total", &[("reason", reason)]);
    }
    for policy in ["zero-memory", "zero-redis"] {
        zero("gateway_rate_limit_evictions_total", &[("policy", policy)]);
    }
    zero(
        "gateway_rate_limit_fallback_total",
        &[("policy", "zero-redis")],
    );
    for kind in ["down", "timeout", "broken", "reply"] {
        zero(
            "gateway_rate_limit_store_errors_total",
            &[("policy", "zero-redis"), ("kind", kind)],
        );
    }
    absent(
        "gateway_rate_limit_fallback_total",
        &[("policy", "zero-memory")],
        "a memory policy never falls back",
    );

    // The first event is an increase from 0.
    let response = reqwest::get(gateway.url("/zero-cached")).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = gateway.metrics().await;
    let cache = |result| {
        metric(
            &text,
            "gateway_cache_requests_total",
            &[("route", "zero-cached"), ("result", result)],
        )
    };
    assert_eq!((cache("miss"), cache("hit")), (Some(1.0), Some(0.0)));
}
