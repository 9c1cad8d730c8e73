//! Concurrency limits per upstream (bulkheads), seen from outside: an origin that holds
//! every request until the test lets it go, so which requests are in flight, queued or
//! refused is decided by the gateway's counts, never by timing.

use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;

use crate::support::{Mode, TestGateway, TestUpstream, client, eventually, free_port, metric};

/// One upstream named `name` (metrics are per process: each test has its own name).
fn limited(name: &str, origin: &TestUpstream, limits: &str) -> String {
    format!(
        "upstreams:\n  {name}: {{ backends: [\"{}\"], breaker: strict, {limits} }}\nbreakers:\n  strict: {{ consecutive_failures: 1, failure_rate: off }}\nroutes:\n  - {{ path: /svc, upstream: {name}, auth: none }}\n",
        origin.addr
    )
}

/// Sends `n` concurrent GETs; each task returns (status, problem type, Retry-After).
fn burst(gateway: &TestGateway, n: usize) -> JoinSet<(u16, String, Option<String>)> {
    let http = client();
    let mut requests = JoinSet::new();
    for _ in 0..n {
        let (http, url) = (http.clone(), gateway.url("/svc"));
        requests.spawn(async move {
            let response = http.get(&url).send().await.unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let kind = body["type"].as_str().unwrap_or_default().to_owned();
            (status, kind, retry_after)
        });
    }
    requests
}

async fn limits_of(gateway: &TestGateway, upstream: &str) -> Value {
    let report = gateway.admin_json("/admin/limits").await;
    report["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == upstream)
        .unwrap_or_else(|| panic!("no upstream {upstream} in {report}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn four_in_flight_and_four_queued_of_twenty_the_other_twelve_refused_at_once() {
    let origin = TestUpstream::start(Mode::Hold(200)).await;
    let gateway = TestGateway::start(&limited(
        "twenty",
        &origin,
        "max_in_flight: 4, max_queued: 4, queue_timeout: 60s",
    ))
    .await;

    let mut requests = burst(&gateway, 20);
    // While the origin holds the first four, the twelve beyond the queue are answered.
    let mut refused = Vec::new();
    while refused.len() < 12 {
        let answer = requests.join_next().await.unwrap().unwrap();
        refused.push(answer);
    }
    eventually(Duration::from_secs(30), || async { origin.active() == 4 }).await;
    assert_eq!(origin.hits(), 4, "only max_in_flight reached the origin");
    for (status, kind, retry_after) in &refused {
        assert_eq!(*status, 503);
        assert_eq!(kind, "/errors/overloaded");
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    let limits = limits_of(&gateway, "twenty").await;
    assert_eq!(limits["queued"], 4, "{limits}");
    assert_eq!(limits["backends"][0]["in_flight"], 4, "{limits}");
    let text = gateway.metrics().await;
    let labels = [("upstream", "twenty"), ("reason", "queue_full")];
    assert_eq!(
        metric(&text, "gateway_upstream_shed_total", &labels),
        Some(12.0)
    );
    assert_eq!(
        metric(&text, "gateway_upstream_queued", &[("upstream", "twenty")]),
        Some(4.0)
    );
    assert_eq!(
        metric(
            &text,
            "gateway_upstream_in_flight",
            &[("upstream", "twenty")]
        ),
        Some(4.0)
    );

    // Let everything go: the four in flight and the four queued are answered by the origin.
    origin.release(8);
    let mut answered = 0;
    while let Some(answer) = requests.join_next().await {
        let (status, _, _) = answer.unwrap();
        assert_eq!(status, 200);
        answered += 1;
    }
    assert_eq!(answered, 8);
    assert_eq!(origin.hits(), 8);
    assert_eq!(origin.peak(), 4, "never more than max_in_flight at once");

    // Shedding is no failure: the breaker (which trips on one failure) never moved.
    let breaker = gateway.breaker("twenty", origin.addr).await;
    assert_eq!(breaker["state"], "closed", "{breaker}");
    assert_eq!(breaker["last_transition"], Value::Null, "{breaker}");
    assert_eq!(breaker["failures"], 0, "{breaker}");
    eventually(Duration::from_secs(30), || async {
        limits_of(&gateway, "twenty").await["backends"][0]["in_flight"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_request_gives_up_after_queue_timeout_with_503() {
    let origin = TestUpstream::start(Mode::Hold(200)).await;
    let gateway = TestGateway::start(&limited(
        "timing_out",
        &origin,
        "max_in_flight: 1, max_queued: 1, queue_timeout: 200ms",
    ))
    .await;
    let mut first = burst(&gateway, 1);
    eventually(Duration::from_secs(30), || async { origin.active() == 1 }).await;
    let (status, kind, retry_after) = burst(&gateway, 1).join_next().await.unwrap().unwrap();
    assert_eq!((status, kind.as_str()), (503, "/errors/overloaded"));
    assert_eq!(retry_after.as_deref(), Some("1"));
    let text = gateway.metrics().await;
    let labels = [("upstream", "timing_out"), ("reason", "queue_timeout")];
    assert_eq!(
        metric(&text, "gateway_upstream_shed_total", &labels),
        Some(1.0)
    );
    origin.release(1);
    assert_eq!(first.join_next().await.unwrap().unwrap().0, 200);
    assert_eq!(origin.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_changes_max_in_flight_live_and_keeps_counts_and_breakers() {
    let origin = TestUpstream::start(Mode::Hold(200)).await;
    let dead = format!("127.0.0.1:{}", free_port());
    let body = |max: usize| {
        format!(
            "upstreams:\n  svc: {{ backends: [\"{}\"], breaker: strict, max_in_flight: {max} }}\n  dead: {{ backends: [\"{dead}\"], breaker: strict }}\nbreakers:\n  strict: {{ consecutive_failures: 1, failure_rate: off, open_for: 1h, max_open_for: 1h }}\nroutes:\n  - {{ path: /svc, upstream: svc, auth: none }}\n  - {{ path: /dead, upstream: dead, auth: none }}\n",
            origin.addr
        )
    };
    let (gateway, file) = TestGateway::start_watching(&body(1)).await;
    let http = client();
    assert_eq!(
        http.get(gateway.url("/dead"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    let tripped = gateway.breaker("dead", dead.parse().unwrap()).await;
    assert_eq!(tripped["state"], "open", "{tripped}");

    let mut held = burst(&gateway, 1);
    eventually(Duration::from_secs(30), || async { origin.active() == 1 }).await;
    let (status, kind, _) = burst(&gateway, 1).join_next().await.unwrap().unwrap();
    assert_eq!((status, kind.as_str()), (503, "/errors/overloaded"));

    file.write(&body(2));
    eventually(Duration::from_secs(10), || async {
        limits_of(&gateway, "svc").await["max_in_flight"] == 2
    })
    .await;
    // The call admitted before the reload still counts under the new limit: one more fits,
    // the next does not.
    let mut second = burst(&gateway, 1);
    eventually(Duration::from_secs(30), || async { origin.active() == 2 }).await;
    let (status, kind, _) = burst(&gateway, 1).join_next().await.unwrap().unwrap();
    assert_eq!((status, kind.as_str()), (503, "/errors/overloaded"));
    assert_eq!(origin.hits(), 2);

    // The breaker tripped before the reload is still open, from the same transition.
    let after = gateway.breaker("dead", dead.parse().unwrap()).await;
    assert_eq!(after["state"], "open", "{after}");
    for field in ["at", "reason"] {
        assert_eq!(
            after["last_transition"][field],
            tripped["last_transition"][field]
        );
    }

    origin.release(2);
    assert_eq!(second.join_next().await.unwrap().unwrap().0, 200);
    assert_eq!(held.join_next().await.unwrap().unwrap().0, 200);
}

/// `n` concurrent requests on an authenticated route, each with credentials never seen
/// before (so each needs an exchange); each task returns (status, problem type).
fn fresh_logins(gateway: &TestGateway, n: usize) -> JoinSet<(u16, String)> {
    use base64::Engine as _;
    let http = client();
    let mut requests = JoinSet::new();
    for i in 0..n {
        let (http, url) = (http.clone(), gateway.url("/svc"));
        let credential =
            base64::engine::general_purpose::STANDARD.encode(format!("login{i}:password{i}"));
        requests.spawn(async move {
            let response = http
                .get(&url)
                .header("authorization", format!("Basic {credential}"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["type"].as_str().unwrap_or_default().to_owned())
        });
    }
    requests
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_logins_never_exceed_the_exchange_limit_at_the_users_service() {
    // A users service that holds every /auth call until the test lets it go, then refuses
    // the credential: it counts how many it had at once.
    // All ten logins come from one address: its own cap (auth.exchange_limits, tested in
    // exchange_limits.rs) is off so that the exchange's global limit is what answers.
    let users = TestUpstream::start(Mode::Hold(401)).await;
    let svc = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&format!(
        "upstreams:\n  exchange_users: {{ backends: [\"{}\"] }}\n  exchange_svc: {{ backends: [\"{}\"] }}\nauth:\n  token_endpoint: {{ upstream: exchange_users, path: /auth, max_in_flight: 3, max_queued: 3, queue_timeout: 60s }}\n  exchange_limits: {{ max_in_flight_per_client: off }}\nroutes:\n  - {{ path: /svc, upstream: exchange_svc }}\n",
        users.addr, svc.addr
    ))
    .await;

    let mut logins = fresh_logins(&gateway, 10);
    // Three at the service, three waiting at the gateway, four refused at once.
    let mut refused = 0;
    while refused < 4 {
        let (status, kind) = logins.join_next().await.unwrap().unwrap();
        assert_eq!((status, kind.as_str()), (503, "/errors/overloaded"));
        refused += 1;
    }
    eventually(Duration::from_secs(30), || async { users.active() == 3 }).await;
    assert_eq!(users.hits(), 3, "no more /auth calls than the limit");
    let text = gateway.metrics().await;
    let labels = [("upstream", "exchange_users"), ("limit", "token_exchange")];
    assert_eq!(
        metric(&text, "gateway_upstream_shed_total", &labels),
        Some(4.0)
    );
    let report = gateway.admin_json("/admin/limits").await;
    assert_eq!(report["token_exchange"]["in_flight"], 3, "{report}");
    assert_eq!(report["token_exchange"]["queued"], 3, "{report}");

    users.release(6);
    while let Some(answer) = logins.join_next().await {
        assert_eq!(answer.unwrap().0, 401);
    }
    assert_eq!(users.hits(), 6);
    assert_eq!(users.peak(), 3, "never more than max_in_flight at once");
    assert_eq!(svc.hits(), 0);
    // A refused credential or a shed exchange is no failure of the users service.
    let breaker = gateway.breaker("exchange_users", users.addr).await;
    assert_eq!(breaker["state"], "closed", "{breaker}");
    assert_eq!(breaker["failures"], 0, "{breaker}");
}
