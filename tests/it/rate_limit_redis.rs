//! `store: redis`: two gateway processes count one limit together in the real Redis, and
//! each counts on its own while Redis is gone, saying so in its own metrics.

use std::time::Duration;

use crate::{
    rate_limit::client_from,
    support::{
        Mode, TestUpstream, eventually, metric,
        process::GatewayProcess,
        redis::{self as redis_support, PrefixGuard, RedisProcess},
    },
};

/// `policy` names the policy (and so its metric series).
fn config(origin: &TestUpstream, policy: &str, url: &str, prefix: &str) -> String {
    format!(
        "upstreams:\n  echo: {{ backends: [\"{}\"] }}\nrate_limits:\n  {policy}: {{ rate: 3/m, store: redis, redis_url: \"{url}\", key_prefix: \"{prefix}\", redis_timeout: 200ms }}\nroutes:\n  - {{ path: /limited, upstream: echo, auth: none, rate_limit: {policy} }}\n",
        origin.addr
    )
}

/// An echo origin and two gateway processes in front of it, counting under `prefix` on the
/// Redis at `url`, each connected to it.
async fn two_gateways(
    policy: &str,
    url: &str,
    prefix: &str,
) -> (TestUpstream, [GatewayProcess; 2]) {
    let origin = TestUpstream::start(Mode::Echo).await;
    let a = GatewayProcess::start(&config(&origin, policy, url, prefix)).await;
    let b = GatewayProcess::start(&config(&origin, policy, url, prefix)).await;
    for gateway in [&a, &b] {
        eventually(Duration::from_secs(10), || async {
            redis_available(gateway).await == Some(true)
        })
        .await;
    }
    (origin, [a, b])
}

async fn redis_available(gateway: &GatewayProcess) -> Option<bool> {
    gateway.admin_json("/admin/limits").await["rate_limits"][0]["redis_available"].as_bool()
}

async fn status(http: &reqwest::Client, gateway: &GatewayProcess) -> u16 {
    http.get(gateway.url("/limited"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_enforce_one_limit_through_redis() {
    redis_support::require_shared().await;
    let guard = PrefixGuard::new("ratelimit");
    let (_origin, [a, b]) =
        two_gateways("one_limit", redis_support::SHARED_URL, &guard.prefix).await;

    // Three a minute for one address, wherever its requests land.
    let http = client_from("127.0.0.8");
    assert_eq!(status(&http, &a).await, 200);
    assert_eq!(status(&http, &b).await, 200);
    assert_eq!(status(&http, &a).await, 200);
    let refused = http.get(b.url("/limited")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(status(&http, &a).await, 429);
    // Another address has its own three.
    assert_eq!(status(&client_from("127.0.0.9"), &b).await, 200);
    let keys = redis_support::keys(redis_support::SHARED_URL, &guard.prefix).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    for gateway in [&a, &b] {
        let metrics = gateway.metrics().await;
        assert_eq!(
            metric(
                &metrics,
                "gateway_rate_limit_fallback_total",
                &[("policy", "one_limit")]
            ),
            Some(0.0),
            "never counted locally: {metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_redis_each_gateway_counts_alone_and_says_so() {
    let mut redis = RedisProcess::start().await;
    let prefix = redis_support::unique_prefix("ratelimit");
    let (_origin, [a, b]) = two_gateways("fallback", &redis.url(), &prefix).await;
    let http = client_from("127.0.0.10");
    for _ in 0..3 {
        assert_eq!(status(&http, &a).await, 200);
    }
    assert_eq!(status(&http, &b).await, 429, "shared while Redis is up");

    redis.kill();
    // Each gateway now admits the address its own burst of three, and no more.
    let fresh = client_from("127.0.0.11");
    for gateway in [&a, &b] {
        for _ in 0..3 {
            assert_eq!(status(&fresh, gateway).await, 200);
        }
        assert_eq!(status(&fresh, gateway).await, 429);
    }
    // Each process says so: Redis unavailable, and its own requests (three admitted, one
    // refused, and no more) counted locally.
    for gateway in [&a, &b] {
        let metrics = gateway.metrics().await;
        let policy = [("policy", "fallback")];
        assert_eq!(
            metric(&metrics, "gateway_rate_limit_store_available", &policy),
            Some(0.0),
            "{metrics}"
        );
        assert_eq!(
            metric(&metrics, "gateway_rate_limit_fallback_total", &policy),
            Some(4.0),
            "{metrics}"
        );
        let errors = ["down", "broken", "timeout", "reply"]
            .into_iter()
            .filter_map(|kind| {
                let labels = [("policy", "fallback"), ("kind", kind)];
                metric(&metrics, "gateway_rate_limit_store_errors_total", &labels)
            })
            .sum::<f64>();
        assert_eq!(
            errors, 4.0,
            "each local decision is a failed Redis call: {metrics}"
        );
        assert_eq!(redis_available(gateway).await, Some(false));
    }

    // Redis back: shared counting resumes by itself.
    redis.restart().await;
    let later = client_from("127.0.0.12");
    eventually(Duration::from_secs(15), || async {
        let _ = status(&later, &a).await;
        redis_available(&a).await == Some(true)
    })
    .await;
}
