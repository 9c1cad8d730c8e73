//! Rate limits over real sockets: clients on distinct loopback addresses (127.0.0.2,
//! 127.0.0.3, ...) against a real gateway and a real origin.

use std::{net::IpAddr, time::Duration};

use crate::support::{Mode, TestGateway, TestUpstream, eventually, metric};

/// A client whose connections come from `ip` (a loopback address other than 127.0.0.1).
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

fn config(origin: &TestUpstream, policies: &str) -> String {
    format!(
        "upstreams:\n  echo: {{ backends: [\"{}\"] }}\nrate_limits:\n{policies}routes:\n  - {{ path: /limited, upstream: echo, auth: none, rate_limit: per_client }}\n  - {{ path: /counted, upstream: echo, auth: none, rate_limit: shown }}\n  - {{ path: /free, upstream: echo, auth: none }}\n",
        origin.addr
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_limit_gets_429_with_headers_and_others_are_unaffected() {
    let origin = TestUpstream::start(Mode::Echo).await;
    // Two per second, two at once: one request every 500 ms once the burst is spent.
    let gateway = TestGateway::start(&config(
        &origin,
        "  per_client: { key: client, rate: 2/s, burst: 2 }\n  shown: { rate: 100/s, headers: always }\n",
    ))
    .await;
    let first = client_from("127.0.0.2");
    let second = client_from("127.0.0.3");
    let url = gateway.url("/limited");

    for _ in 0..2 {
        assert_eq!(first.get(&url).send().await.unwrap().status(), 200);
    }
    let limited = first.get(&url).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after"), Some("1"));
    assert_eq!(
        header(&limited, "ratelimit-policy"),
        Some("\"per_client\";q=2;w=1")
    );
    assert_eq!(
        header(&limited, "ratelimit"),
        Some("\"per_client\";r=0;t=1")
    );
    assert_eq!(
        header(&limited, "content-type"),
        Some("application/problem+json")
    );
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["type"], "/errors/rate_limited");
    assert_eq!(body["status"], 429);
    let hits = origin.hits();

    // Another address at the same moment: its own quota.
    let other = second.get(&url).send().await.unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(
        header(&other, "ratelimit"),
        None,
        "headers only when limited"
    );
    // A route without a policy is never limited.
    assert_eq!(
        first
            .get(gateway.url("/free"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A policy with `headers: always` describes every answer.
    let shown = first.get(gateway.url("/counted")).send().await.unwrap();
    assert_eq!(shown.status(), 200);
    assert_eq!(
        header(&shown, "ratelimit-policy"),
        Some("\"shown\";q=100;w=1")
    );
    assert_eq!(header(&shown, "ratelimit"), Some("\"shown\";r=99;t=1"));

    // After the wait the first client is served again.
    eventually(Duration::from_secs(5), || async {
        first.get(&url).send().await.unwrap().status() == 200
    })
    .await;
    let metrics = gateway.metrics().await;
    assert!(
        metric(
            &metrics,
            "gateway_rate_limited_total",
            &[("route", "/limited"), ("policy", "per_client")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        origin.hits(),
        hits + 4,
        "a refused request never reaches the origin"
    );

    // The admin page lists the policy and the limited key, hashed.
    let report = gateway.admin_json("/admin/limits").await;
    let policy = report["rate_limits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "per_client")
        .unwrap()
        .clone();
    assert_eq!(policy["key"], "client");
    let top = policy["top_limited"].as_array().unwrap();
    assert!(!top.is_empty(), "{report}");
    assert!(!report.to_string().contains("127.0.0.2"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_policy_applies_to_routes_that_name_none() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let body = format!(
        "upstreams:\n  echo: {{ backends: [\"{}\"] }}\nrate_limits:\n  default: {{ rate: 1/m }}\nroutes:\n  - {{ path: /a, upstream: echo, auth: none }}\n  - {{ path: /b, upstream: echo, auth: none, rate_limit: off }}\n",
        origin.addr
    );
    let gateway = TestGateway::start(&body).await;
    let http = client_from("127.0.0.4");
    assert_eq!(
        http.get(gateway.url("/a")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http.get(gateway.url("/a")).send().await.unwrap().status(),
        429
    );
    assert_eq!(
        http.get(gateway.url("/b")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http.get(gateway.url("/b")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_counts_only_from_a_trusted_proxy() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let routes = format!(
        "upstreams:\n  echo: {{ backends: [\"{}\"] }}\nrate_limits:\n  default: {{ rate: 1/m }}\nroutes:\n  - {{ path: /a, upstream: echo, auth: none }}\n",
        origin.addr
    );
    let trusting = TestGateway::start_with_server("trusted_proxies: [127.0.0.5/32]", &routes).await;
    let proxy = client_from("127.0.0.5");
    let stranger = client_from("127.0.0.6");
    let send = |http: &reqwest::Client, forwarded: &str| {
        http.get(trusting.url("/a"))
            .header("x-forwarded-for", forwarded)
            .send()
    };
    // Through the trusted proxy, two different clients each get their own quota.
    assert_eq!(send(&proxy, "203.0.113.1").await.unwrap().status(), 200);
    assert_eq!(send(&proxy, "203.0.113.2").await.unwrap().status(), 200);
    assert_eq!(send(&proxy, "203.0.113.1").await.unwrap().status(), 429);
    // An untrusted peer cannot pose as someone else: it is counted by its own address.
    assert_eq!(send(&stranger, "203.0.113.3").await.unwrap().status(), 200);
    assert_eq!(send(&stranger, "203.0.113.4").await.unwrap().status(), 429);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_changes_a_rate_live_and_keeps_the_other_counts() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let body = |changed_rate: &str| {
        format!(
            "upstreams:\n  echo: {{ backends: [\"{}\"] }}\nrate_limits:\n  changed: {{ rate: {changed_rate}, burst: 1 }}\n  kept: {{ rate: 1/m }}\nroutes:\n  - {{ path: /changed, upstream: echo, auth: none, rate_limit: changed }}\n  - {{ path: /kept, upstream: echo, auth: none, rate_limit: kept }}\n",
            origin.addr
        )
    };
    let (gateway, file) = TestGateway::start_watching(&body("1/m")).await;
    let http = client_from("127.0.0.7");
    for path in ["/changed", "/kept"] {
        assert_eq!(
            http.get(gateway.url(path)).send().await.unwrap().status(),
            200
        );
        assert_eq!(
            http.get(gateway.url(path)).send().await.unwrap().status(),
            429
        );
    }

    // One an hour: applies at once, and the spent key is not given a fresh burst (its
    // debt carries over: it may come back when the old rate said, within the minute).
    file.write(&body("1/h"));
    eventually(Duration::from_secs(10), || async {
        let refused = http.get(gateway.url("/changed")).send().await.unwrap();
        assert_eq!(refused.status(), 429, "a reload reset the count");
        header(&refused, "ratelimit-policy") == Some("\"changed\";q=1;w=3600")
    })
    .await;
    let refused = http.get(gateway.url("/changed")).send().await.unwrap();
    let retry_after: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // Ten per second: the spent key refills at the new rate, within a tenth of a second
    // rather than the minute the old rate would have taken.
    file.write(&body("10/s"));
    eventually(Duration::from_secs(10), || async {
        http.get(gateway.url("/changed"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    // The unchanged policy forgot nothing.
    let kept = http.get(gateway.url("/kept")).send().await.unwrap();
    assert_eq!(kept.status(), 429);
    assert_eq!(header(&kept, "ratelimit-policy"), Some("\"kept\";q=1;w=60"));
}
