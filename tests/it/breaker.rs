//! The circuit breaker seen from outside: real origins failing, slowing, hanging, dying and
//! recovering, with the gateway's answers, the origin's hit counts, `/metrics` and
//! `/admin/breakers` as evidence.

use std::{net::SocketAddr, time::Duration};

use serde_json::Value;
use tokio::{io::AsyncReadExt, task::JoinSet};

use crate::support::{
    Mode, TestGateway, TestUpstream, client, eventually, free_port, metric, process::http_process,
    raw::connect,
};

/// A breaker that trips on 3 failures in a row and reopens quickly, for tests.
const FAST_BREAKER: &str = "
breakers:
  fast:
    consecutive_failures: 3
    failure_rate: off
    window: 10s
    open_for: 300ms
    max_open_for: 1s
    half_open_probes: 2
";

/// A breaker that trips on 3 failures in a row and then stays open far longer than any
/// test runs: for tests that check what an open breaker does, so that no request they send
/// can become a half-open probe however slowly the loaded machine runs it.
const HELD_BREAKER: &str = "
breakers:
  held:
    consecutive_failures: 3
    failure_rate: off
    window: 10s
    open_for: 60s
    max_open_for: 60s
    half_open_probes: 2
";

/// Connect and read timeouts far above anything loopback needs on a loaded machine, for tests
/// whose backend answers at once and that count exact answers: a slow run must not turn the
/// backend's 500 into the gateway's 504, nor a late connect into a connect failure.
const PATIENT: &str = ", connect_timeout: 30s, read_timeout: 60s";

fn single(upstream: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "upstreams:\n  {upstream}: {{ backends: [\"{addr}\"], breaker: fast {extra} }}\n{FAST_BREAKER}routes:\n  - {{ path: /svc, upstream: {upstream}, auth: none }}\n"
    )
}

/// Like [`single`], with the [`HELD_BREAKER`]: once open, it stays open for the whole test.
fn single_held(upstream: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "upstreams:\n  {upstream}: {{ backends: [\"{addr}\"], breaker: held {extra} }}\n{HELD_BREAKER}routes:\n  - {{ path: /svc, upstream: {upstream}, auth: none }}\n"
    )
}

async fn status_of(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

/// Sends requests until the breaker of `backend` reports `state`.
async fn drive_until(gateway: &TestGateway, upstream: &str, backend: SocketAddr, state: &str) {
    let http = client();
    let url = gateway.url("/svc");
    eventually(Duration::from_secs(60), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let _ = http.get(&url).send().await;
            gateway.breaker(upstream, backend).await["state"] == state
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_upstream_trips_and_then_gets_no_traffic() {
    // Held open for 60 s: the 20 requests below are all refused however slowly they run.
    // Half-open and closing again are proven by the tests after this one.
    let origin = TestUpstream::start(Mode::Status(500)).await;
    let gateway = TestGateway::start(&single_held("tripping", origin.addr, PATIENT)).await;
    let http = client();
    // The usual cycle is exported from 0 before anything happens, so that Prometheus's
    // increase() sees the first opening (a series born at 1 reads as no increase).
    let text = gateway.metrics().await;
    let backend = origin.addr.to_string();
    for (from, to) in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("half_open", "open"),
    ] {
        let labels = [
            ("upstream", "tripping"),
            ("backend", backend.as_str()),
            ("from", from),
            ("to", to),
        ];
        assert_eq!(
            metric(&text, "gateway_breaker_transitions_total", &labels),
            Some(0.0),
            "{from} -> {to}"
        );
    }

    for _ in 0..3 {
        assert_eq!(status_of(&http, &gateway.url("/svc")).await, 500);
    }
    assert_eq!(origin.hits(), 3);

    for _ in 0..20 {
        let response = http.get(gateway.url("/svc")).send().await.unwrap();
        assert_eq!(response.status(), 503);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (1..=60).contains(&retry_after),
            "the rest of the 60s open period, rounded up: {retry_after}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], 503);
        assert_eq!(body["type"], "/errors/service_unavailable");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("tripping"), "{detail}");
        assert!(
            !detail.contains("127.0.0.1"),
            "internal address leaked: {detail}"
        );
    }
    assert_eq!(origin.hits(), 3, "an open breaker sends nothing upstream");

    // The same story in /admin/breakers and /metrics.
    let report = gateway.breaker("tripping", origin.addr).await;
    assert_eq!(report["state"], "open");
    assert_eq!(report["failures"], 3);
    assert_eq!(report["calls"], 3);
    assert_eq!(report["last_transition"]["from"], "closed");
    assert_eq!(report["last_transition"]["to"], "open");
    assert!(
        report["last_transition"]["reason"]
            .as_str()
            .unwrap()
            .contains("3 consecutive failures"),
        "{report}"
    );
    let text = gateway.metrics().await;
    let labels = [("upstream", "tripping"), ("backend", backend.as_str())];
    assert_eq!(metric(&text, "gateway_breaker_state", &labels), Some(1.0));
    assert_eq!(
        metric(
            &text,
            "gateway_breaker_transitions_total",
            &[labels[0], labels[1], ("from", "closed"), ("to", "open")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "gateway_upstream_attempts_total",
            &[labels[0], labels[1], ("outcome", "failure_status")]
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            "gateway_breaker_rejections_total",
            &[("upstream", "tripping")]
        ),
        Some(20.0)
    );
    assert_eq!(
        metric(
            &text,
            "gateway_requests_total",
            &[("route", "/svc"), ("status", "503")]
        )
        .map(|v| v >= 20.0),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_upstream_trips_on_connect_failures() {
    let mut origin = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&single("killed", origin.addr, "")).await;
    let http = client();
    assert_eq!(status_of(&http, &gateway.url("/svc")).await, 200);

    origin.stop().await;
    for _ in 0..3 {
        let response = http.get(gateway.url("/svc")).send().await.unwrap();
        assert_eq!(response.status(), 502);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    // Asked of the admin API, not by a request: the 300ms open period may be over by the
    // next request on a loaded machine, which would then be a probe (and a 502).
    let report = gateway.breaker("killed", origin.addr).await;
    assert_eq!(report["state"], "open");
    assert!(
        report["last_transition"]["reason"]
            .as_str()
            .unwrap()
            .contains("3 consecutive failures"),
        "{report}"
    );

    // Back up: after the open period a probe gets through and success closes it again.
    origin.restart().await;
    drive_until(&gateway, "killed", origin.addr, "closed").await;
    assert_eq!(status_of(&http, &gateway.url("/svc")).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_close_on_success_and_reopen_with_doubled_period_on_failure() {
    let origin = TestUpstream::start(Mode::Status(503)).await;
    let gateway = TestGateway::start(&single("probed", origin.addr, "")).await;
    let http = client();
    for _ in 0..3 {
        status_of(&http, &gateway.url("/svc")).await;
    }
    assert_eq!(
        gateway.breaker("probed", origin.addr).await["state"],
        "open"
    );

    // A failing probe re-opens the breaker with the period doubled (300ms -> 600ms).
    let hits_while_open = origin.hits();
    eventually(Duration::from_secs(60), || async {
        status_of(&http, &gateway.url("/svc")).await == 503 && origin.hits() > hits_while_open
    })
    .await;
    let report = gateway.breaker("probed", origin.addr).await;
    assert_eq!(report["state"], "open");
    assert_eq!(report["open_for_seconds"], 0.6);
    assert!(
        report["last_transition"]["reason"]
            .as_str()
            .unwrap()
            .contains("probe failed"),
        "{report}"
    );
    assert_eq!(
        origin.hits(),
        hits_while_open + 1,
        "one probe, not a stampede"
    );

    // The next probes succeed: two of them close it, and the backoff resets.
    origin.set_mode(Mode::Echo);
    drive_until(&gateway, "probed", origin.addr, "closed").await;
    let report = gateway.breaker("probed", origin.addr).await;
    assert_eq!(report["open_for_seconds"], 0.3);
    assert!(
        report["last_transition"]["reason"]
            .as_str()
            .unwrap()
            .contains("2 probes succeeded"),
        "{report}"
    );
    let text = gateway.metrics().await;
    let backend = origin.addr.to_string();
    for (from, to, count) in [
        ("closed", "open", 1.0),
        ("open", "half_open", 2.0),
        ("half_open", "open", 1.0),
        ("half_open", "closed", 1.0),
    ] {
        assert_eq!(
            metric(
                &text,
                "gateway_breaker_transitions_total",
                &[("backend", backend.as_str()), ("from", from), ("to", to)]
            ),
            Some(count),
            "{from} -> {to}"
        );
    }
    assert_eq!(
        metric(
            &text,
            "gateway_breaker_state",
            &[("backend", backend.as_str())]
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_errors_never_open_the_breaker() {
    // The original system's bug: invalid registrations tripped its breaker.
    let origin = TestUpstream::start(Mode::QueryStatus).await;
    let gateway = TestGateway::start(&single("clienterrors", origin.addr, "")).await;
    let mut tasks = JoinSet::new();
    for worker in 0..8 {
        let (http, url) = (client(), gateway.url("/svc"));
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..125 {
                let status = [400, 401, 404, 409][(worker + i) % 4];
                let response = http
                    .post(format!("{url}?status={status}"))
                    .body("bad")
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status().as_u16());
            }
            statuses
        });
    }
    let mut answered = 0;
    while let Some(result) = tasks.join_next().await {
        let statuses = result.unwrap();
        assert!(
            statuses.iter().all(|s| [400, 401, 404, 409].contains(s)),
            "{statuses:?}"
        );
        answered += statuses.len();
    }
    assert_eq!(answered, 1000);
    assert_eq!(origin.hits(), 1000);
    let report = gateway.breaker("clienterrors", origin.addr).await;
    assert_eq!(report["state"], "closed");
    assert_eq!(report["failures"], 0);
    assert!(report["last_transition"].is_null(), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_trips_on_slow_calls() {
    let origin = TestUpstream::start(Mode::Delay(Duration::from_millis(120))).await;
    let config = format!(
        "upstreams:\n  slow: {{ backends: [\"{}\"], breaker: slow }}\nbreakers:\n  slow: {{ consecutive_failures: off, failure_rate: off, minimum_calls: 4, slow_call_duration: 50ms, slow_call_rate: 100%, open_for: 60s, max_open_for: 60s }}\nroutes:\n  - {{ path: /svc, upstream: slow, auth: none }}\n",
        origin.addr
    );
    let gateway = TestGateway::start(&config).await;
    let http = client();
    for _ in 0..4 {
        assert_eq!(
            status_of(&http, &gateway.url("/svc")).await,
            200,
            "slow is not failed"
        );
    }
    assert_eq!(status_of(&http, &gateway.url("/svc")).await, 503);
    let report = gateway.breaker("slow", origin.addr).await;
    assert_eq!(report["state"], "open");
    assert_eq!(report["slow_calls"], 4);
    assert!(
        report["last_transition"]["reason"]
            .as_str()
            .unwrap()
            .contains("slow"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hung_upstream_trips_on_read_timeouts() {
    let origin = TestUpstream::start(Mode::Hang).await;
    let gateway =
        TestGateway::start(&single_held("hung", origin.addr, ", read_timeout: 200ms")).await;
    let http = client();
    for _ in 0..3 {
        let response = http.get(gateway.url("/svc")).send().await.unwrap();
        assert_eq!(response.status(), 504);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "/errors/gateway_timeout");
    }
    assert_eq!(status_of(&http, &gateway.url("/svc")).await, 503);
    let text = gateway.metrics().await;
    let backend = origin.addr.to_string();
    assert_eq!(
        metric(
            &text,
            "gateway_upstream_attempts_total",
            &[("backend", backend.as_str()), ("outcome", "read_timeout")]
        ),
        Some(3.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_body_after_200_counts_as_failure() {
    let origin = TestUpstream::start(Mode::Truncate).await;
    let gateway = TestGateway::start(&single_held("truncating", origin.addr, PATIENT)).await;
    let http = client();
    for _ in 0..3 {
        // The 200 header is already on its way; the body is cut short.
        let response = http.get(gateway.url("/svc")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.bytes().await.is_err(),
            "the client must see the cut"
        );
    }
    assert_eq!(status_of(&http, &gateway.url("/svc")).await, 503);
    let text = gateway.metrics().await;
    let backend = origin.addr.to_string();
    assert_eq!(
        metric(
            &text,
            "gateway_upstream_attempts_total",
            &[
                ("backend", backend.as_str()),
                ("outcome", "response_incomplete")
            ]
        ),
        Some(3.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_dead_backend_of_two_costs_no_request() {
    let alive = TestUpstream::start(Mode::Echo).await;
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = format!(
        "upstreams:\n  pair: {{ backends: [\"{dead}\", \"{}\"], breaker: fast }}\n{FAST_BREAKER}routes:\n  - {{ path: /svc, upstream: pair, auth: none }}\n",
        alive.addr
    );
    let gateway = TestGateway::start(&config).await;
    let http = client();
    for _ in 0..40 {
        assert_eq!(status_of(&http, &gateway.url("/svc")).await, 200);
    }
    assert_eq!(alive.hits(), 40);
    assert_eq!(gateway.breaker("pair", dead).await["state"], "open");
    assert_eq!(gateway.breaker("pair", alive.addr).await["state"], "closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_is_never_sent_twice() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let config = format!(
        "upstreams:\n  writes: {{ backends: [\"{}\"], breaker: fast, connect_retries: 3 }}\n{FAST_BREAKER}routes:\n  - {{ path: /svc, upstream: writes, auth: none }}\n",
        origin.addr
    );
    let gateway = TestGateway::start(&config).await;
    // A pooling client, so the gateway's second POST rides a reused upstream connection:
    // the case where Pingora would retry an idempotent request.
    let http = reqwest::Client::new();
    let first = http
        .post(gateway.url("/svc"))
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);

    origin.set_mode(Mode::Drop);
    let second = http
        .post(gateway.url("/svc"))
        .body("a=2")
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 502);
    assert_eq!(origin.hits(), 2, "the dropped POST must not be resent");

    let third = client()
        .post(gateway.url("/svc"))
        .body("a=3")
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 502);
    assert_eq!(origin.hits(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn half_open_probes_taken_by_clients_that_never_read_still_close_the_breaker() {
    let origin = TestUpstream::start(Mode::Status(500)).await;
    let gateway = TestGateway::start(&single("silent", origin.addr, "")).await;
    let http = client();
    for _ in 0..3 {
        http.get(gateway.url("/svc")).send().await.unwrap();
    }
    assert_eq!(
        gateway.breaker("silent", origin.addr).await["state"],
        "open"
    );

    // The backend recovers with a large answer; clients ask for it and never read a byte.
    origin.set_mode(Mode::Large(16 * 1024 * 1024));
    let hits_before = origin.hits();
    let mut silent = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        silent.push(connect(gateway.addr, "GET /svc HTTP/1.1\r\nHost: gw\r\n\r\n").await);
        if gateway.breaker("silent", origin.addr).await["state"] == "closed" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the breaker stayed half-open behind clients that never read"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Only silent clients were sent: their probes closed the breaker.
    assert!(origin.hits() - hits_before >= 2);
    // Others are served in full while the silent clients still hold their responses.
    let response = http.get(gateway.url("/svc")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), 16 * 1024 * 1024);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_hanging_up_mid_body_costs_the_backend_nothing() {
    let origin = TestUpstream::start(Mode::Large(4 * 1024 * 1024)).await;
    let gateway = TestGateway::start(&single("hangup", origin.addr, "")).await;
    for _ in 0..5 {
        let mut stream = connect(gateway.addr, "GET /svc HTTP/1.1\r\nHost: gw\r\n\r\n").await;
        let mut first = [0u8; 4096];
        assert!(stream.read(&mut first).await.unwrap() > 0);
        assert!(first.starts_with(b"HTTP/1.1 200"));
        drop(stream);
    }
    let backend = origin.addr.to_string();
    eventually(Duration::from_secs(60), || async {
        let text = gateway.metrics().await;
        metric(
            &text,
            "gateway_upstream_attempts_total",
            &[("backend", backend.as_str()), ("outcome", "success")],
        ) == Some(5.0)
    })
    .await;
    let report = gateway.breaker("hangup", origin.addr).await;
    assert_eq!(report["state"], "closed");
    assert!(report["last_transition"].is_null(), "{report}");
    assert_eq!(report["failures"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_hung_by_sigstop_with_whole_requests_still_trips() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let (process, backend) = http_process(origin.addr).await;
    let gateway = TestGateway::start(&single("stopped", backend, ", read_timeout: 300ms")).await;
    let http = client();
    // The process serves (asked directly, so that the gateway holds no pooled connection
    // to it that could go stale under the test's feet).
    let direct = http
        .post(format!("http://{backend}/svc"))
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    let post = || http.post(gateway.url("/svc")).body("a=1&b=2").send();

    process.signal("-STOP");
    for _ in 0..3 {
        let response = post().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 504, "{body}");
        assert_eq!(body["type"], "/errors/gateway_timeout");
    }
    // Asked of the admin API, not by a request: the 300ms open period may be over by the
    // next request on a loaded machine, which would then be a probe (and a 504).
    let report = gateway.breaker("stopped", backend).await;
    assert_eq!(report["state"], "open");
    assert!(
        report["last_transition"]["reason"]
            .as_str()
            .unwrap()
            .contains("3 consecutive failures"),
        "{report}"
    );

    // Continued, it answers again, and the probes close the breaker.
    process.signal("-CONT");
    eventually(Duration::from_secs(60), || async {
        let _ = post().await;
        gateway.breaker("stopped", backend).await["state"] == "closed"
    })
    .await;
    assert_eq!(post().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_open_probe_held_by_a_stalled_streaming_body_is_given_back_and_others_close_the_breaker()
 {
    let origin = TestUpstream::start(Mode::Status(500)).await;
    let config = format!(
        "upstreams:
  held: {{ backends: [\"{origin}\"], breaker: one_probe, read_timeout: 500ms }}
breakers:
  one_probe: {{ consecutive_failures: 2, failure_rate: off, open_for: 300ms, max_open_for: 1s, half_open_probes: 1 }}
routes:
  - {{ path: /svc, upstream: held, auth: none, request_buffering: off }}
",
        origin = origin.addr
    );
    let gateway = TestGateway::start(&config).await;
    let http = client();
    let post = || http.post(gateway.url("/svc")).body("a=1").send();
    for _ in 0..2 {
        assert_eq!(post().await.unwrap().status(), 500);
    }
    assert_eq!(gateway.breaker("held", origin.addr).await["state"], "open");
    origin.set_mode(Mode::Echo);

    // Once the open period is over, a client takes the one probe slot and stalls its body.
    eventually(Duration::from_secs(60), || async {
        gateway.breaker("held", origin.addr).await["seconds_until_half_open"] == 0.0
    })
    .await;
    let mut stalled = connect(
        gateway.addr,
        "POST /svc HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\npartial",
    )
    .await;
    eventually(Duration::from_secs(60), || async {
        gateway.breaker("held", origin.addr).await["state"] == "half_open"
    })
    .await;

    // The backend waits for the rest of that body until its read timeout: the client's
    // doing, so the probe is cancelled and its slot given back (well within the probe
    // lease, 1s + 500ms); the next whole request probes and closes the breaker.
    eventually(Duration::from_secs(60), || async {
        post().await.unwrap().status() == 200
    })
    .await;
    let report = gateway.breaker("held", origin.addr).await;
    assert_eq!(report["state"], "closed", "{report}");
    assert!(
        report["last_transition"]["reason"]
            .as_str()
            .unwrap()
            .contains("probe"),
        "{report}"
    );
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stalled.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let backend = origin.addr.to_string();
    let text = gateway.metrics().await;
    assert_eq!(
        metric(
            &text,
            "gateway_upstream_attempts_total",
            &[("backend", backend.as_str()), ("outcome", "cancelled")]
        ),
        Some(1.0)
    );
}
