//! Active health checks seen from outside: two real origins behind one upstream, one of
//! which starts failing its `/healthz` (and its requests); the request counts at the
//! origins, the clients' answers and `/admin/breakers` are the evidence.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;

use crate::support::{Mode, TestGateway, TestUpstream, client, eventually, metric};

fn checked(name: &str, a: SocketAddr, b: SocketAddr) -> String {
    format!(
        "upstreams:\n  {name}: {{ backends: [\"{a}\", \"{b}\"], health_check: {{ path: /healthz, interval: 20ms, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2 }} }}\nroutes:\n  - {{ path: /svc, upstream: {name}, auth: none }}\n"
    )
}

/// Sends `n` requests one after the other; every one must be answered 200.
async fn all_ok(gateway: &TestGateway, n: usize) {
    let http = client();
    for _ in 0..n {
        let response = http.get(gateway.url("/svc")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
}

fn reason(breaker: &Value) -> String {
    breaker["last_transition"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_failing_its_checks_is_out_of_rotation_before_any_request_and_back_after() {
    let a = TestUpstream::start(Mode::Echo).await;
    let b = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&checked("checked", a.addr, b.addr)).await;
    eventually(Duration::from_secs(10), || async {
        a.health_hits() >= 2 && b.health_hits() >= 2
    })
    .await;
    // Both healthy: round-robin reaches both.
    all_ok(&gateway, 4).await;
    assert_eq!((a.hits(), b.hits()), (2, 2));

    // A breaks: its health endpoint and its answers. The checks eject it before any
    // client request is sent.
    a.set_mode(Mode::Status(500));
    a.set_health(503);
    eventually(Duration::from_secs(10), || async {
        let breaker = gateway.breaker("checked", a.addr).await;
        breaker["state"] == "open" && reason(&breaker).contains("health check")
    })
    .await;
    let breaker = gateway.breaker("checked", a.addr).await;
    assert_eq!(
        reason(&breaker),
        "health check failed 2 times in a row",
        "{breaker}"
    );
    assert_eq!(breaker["health"]["ejected"], true, "{breaker}");
    all_ok(&gateway, 10).await;
    assert_eq!(a.hits(), 2, "no client request reached the ejected backend");
    assert_eq!(b.hits(), 12);

    // A recovers. It comes back only once its checks pass, and then serves clients.
    a.set_mode(Mode::Echo);
    a.set_health(200);
    eventually(Duration::from_secs(10), || async {
        gateway.breaker("checked", a.addr).await["state"] == "closed"
    })
    .await;
    let breaker = gateway.breaker("checked", a.addr).await;
    assert_eq!(
        reason(&breaker),
        "health check passed 2 times in a row",
        "{breaker}"
    );
    all_ok(&gateway, 4).await;
    assert_eq!(a.hits(), 4, "back in rotation");

    let text = gateway.metrics().await;
    let failed = [("upstream", "checked"), ("result", "fail")];
    assert!(metric(&text, "gateway_health_checks_total", &failed).unwrap() >= 2.0);
    let passed = [("upstream", "checked"), ("result", "pass")];
    assert!(metric(&text, "gateway_health_checks_total", &passed).unwrap() >= 4.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breaker_opened_by_traffic_waits_for_a_check_not_for_a_client_probe() {
    let a = TestUpstream::start(Mode::Status(500)).await;
    let b = TestUpstream::start(Mode::Echo).await;
    let body = format!(
        "upstreams:\n  passive: {{ backends: [\"{}\", \"{}\"], breaker: quick, connect_retries: 0, health_check: {{ interval: 20ms, healthy_threshold: 1, unhealthy_threshold: 100 }} }}\nbreakers:\n  quick: {{ consecutive_failures: 1, failure_rate: off, open_for: 50ms, max_open_for: 50ms }}\nroutes:\n  - {{ path: /svc, upstream: passive, auth: none }}\n",
        a.addr, b.addr
    );
    let gateway = TestGateway::start(&body).await;
    // A's /healthz passes but its answers fail: traffic opens its breaker.
    let http = client();
    eventually(Duration::from_secs(10), || async {
        let _ = http.get(gateway.url("/svc")).send().await;
        gateway.breaker("passive", a.addr).await["state"] == "open"
    })
    .await;
    // Past the open period, clients keep coming but do not half-open it: the next passing
    // check closes it.
    eventually(Duration::from_secs(10), || async {
        let breaker = gateway.breaker("passive", a.addr).await;
        if breaker["state"] == "closed" {
            return true;
        }
        let _ = http.get(gateway.url("/svc")).send().await;
        false
    })
    .await;
    let breaker = gateway.breaker("passive", a.addr).await;
    assert!(
        reason(&breaker).starts_with("health check passed"),
        "{breaker}"
    );
    let text = gateway.metrics().await;
    let probed = [
        ("upstream", "passive"),
        ("from", "open"),
        ("to", "half_open"),
    ];
    assert_eq!(
        metric(&text, "gateway_breaker_transitions_total", &probed),
        None,
        "no client request was risked on it as a probe"
    );
}
