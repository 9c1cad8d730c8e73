//! Active health checks seen from outside: two real origins behind one upstream, one of
//! which starts failing its `/healthz` (and its requests); the request counts at the
//! origins, the clients' answers and `/admin/breakers` are the evidence. Reloads: the
//! probes a backend receives show how many checkers run, and removing a check brings
//! back the backend it had ejected.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    Mode, TestGateway, TestUpstream, client, eventually, gateway::ConfigFile, metric,
};

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
        Some(0.0),
        "no client request was risked on it as a probe"
    );
}

/// Writes `body` to the watched file and waits until the gateway runs it.
async fn reload(gateway: &TestGateway, file: &ConfigFile, body: &str) {
    let hash = file.write(body);
    eventually(Duration::from_secs(10), || async {
        gateway.admin_json("/admin/config").await["hash"] == hash.as_str()
    })
    .await;
}

/// Waits until `origin` has received `n` more health probes.
async fn probes(origin: &TestUpstream, n: usize) {
    let seen = origin.health_hits();
    eventually(Duration::from_secs(10), || async {
        origin.health_hits() >= seen + n
    })
    .await;
}

/// Waits until `origin` has gone `quiet` without a health probe.
async fn no_probes_for(origin: &TestUpstream, quiet: Duration) {
    eventually(Duration::from_secs(10), || async {
        let before = origin.health_hits();
        tokio::time::sleep(quiet).await;
        origin.health_hits() == before
    })
    .await;
}

/// One checker per backend, whatever the reloads: a checker sleeps `interval` between the
/// answer to one probe and the next probe, so with one checker no two probes reach the
/// backend less than `interval` apart, and a window of `w` holds at most `w / interval + 1`
/// of them. Two checkers break both bounds: they probe about twice as often, so some
/// probes are about half an interval apart (a probe here takes milliseconds, not 300 ms).
#[tokio::test(flavor = "multi_thread")]
async fn reloads_never_duplicate_a_checker_and_a_removed_upstreams_checker_stops() {
    let kept = TestUpstream::start(Mode::Echo).await;
    let gone = TestUpstream::start(Mode::Echo).await;
    // `check` of the kept upstream (none: no check), whether the other upstream exists, and
    // an extra route (an edit that leaves every check alone).
    let body = |check: Option<&str>, with_gone: bool, extra_route: bool| {
        let check = check.map_or_else(String::new, |interval| {
            format!(", health_check: {{ interval: {interval}, timeout: 1s }}")
        });
        let mut text = format!(
            "upstreams:\n  kept: {{ backends: [\"{}\"]{check} }}\n",
            kept.addr
        );
        if with_gone {
            text += &format!(
                "  gone: {{ backends: [\"{}\"], health_check: {{ interval: 50ms, timeout: 1s }} }}\n",
                gone.addr
            );
        }
        text += "routes:\n  - { path: /svc, upstream: kept, auth: none }\n";
        if with_gone {
            text += "  - { path: /gone, upstream: gone, auth: none }\n";
        }
        if extra_route {
            text += "  - { path: /also, upstream: kept, auth: none }\n";
        }
        text
    };
    let (gateway, file) = TestGateway::start_watching(&body(Some("100ms"), true, false)).await;
    probes(&kept, 2).await;
    probes(&gone, 2).await;

    // A shorter interval, then an edit that leaves the checks alone, then the check
    // removed and added back with another interval: each seen by the checkers (probes
    // after each) before the next.
    reload(&gateway, &file, &body(Some("50ms"), true, false)).await;
    probes(&kept, 3).await;
    reload(&gateway, &file, &body(Some("50ms"), true, true)).await;
    probes(&kept, 3).await;
    reload(&gateway, &file, &body(None, true, true)).await;
    // Unchecked: the probes stop (within a reconcile and a probe).
    no_probes_for(&kept, Duration::from_millis(500)).await;
    reload(&gateway, &file, &body(Some("300ms"), true, true)).await;
    probes(&kept, 2).await;
    // Back to the first shape, and the other upstream removed.
    reload(&gateway, &file, &body(Some("300ms"), false, false)).await;

    // From the second probe after the last reload, every probe is under the 300 ms
    // interval (the one before may end a sleep of an earlier interval).
    probes(&kept, 2).await;
    let start = Instant::now();
    let gone_at_start = gone.health_hits();
    let window = Duration::from_secs(3);
    eventually(Duration::from_secs(10), || async {
        start.elapsed() >= window
    })
    .await;
    let times: Vec<Instant> = kept
        .health_times()
        .into_iter()
        .filter(|t| *t >= start && *t <= start + window)
        .collect();
    let interval = Duration::from_millis(300);
    let most = (window.as_millis() / interval.as_millis()) as usize + 1;
    assert!(
        (3..=most).contains(&times.len()),
        "{} probes in {window:?}: one checker sends 3 to {most}",
        times.len()
    );
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= interval - Duration::from_millis(1),
            "two probes {gap:?} apart: more than one checker"
        );
    }
    assert_eq!(
        gone.health_hits(),
        gone_at_start,
        "the removed upstream's backend is still probed"
    );
}

/// A backend out of rotation only because its health check failed comes back when a
/// reload removes the check: the reason it was out is gone. (Its breaker is held open for
/// an hour, so only the removal can bring it back within the test.)
#[tokio::test(flavor = "multi_thread")]
async fn removing_the_check_that_ejected_a_backend_brings_it_back() {
    let a = TestUpstream::start(Mode::Echo).await;
    let b = TestUpstream::start(Mode::Echo).await;
    let body = |check: &str| {
        format!(
            "upstreams:\n  svc: {{ backends: [\"{}\", \"{}\"], breaker: held{check} }}\nbreakers:\n  held: {{ open_for: 1h, max_open_for: 1h }}\nroutes:\n  - {{ path: /svc, upstream: svc, auth: none }}\n",
            a.addr, b.addr
        )
    };
    let checked = ", health_check: { interval: 20ms, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 1 }";
    let (gateway, file) = TestGateway::start_watching(&body(checked)).await;
    // A answers requests well but fails its health check: ejected.
    a.set_health(503);
    eventually(Duration::from_secs(10), || async {
        let breaker = gateway.breaker("svc", a.addr).await;
        breaker["state"] == "open" && reason(&breaker).contains("health check")
    })
    .await;
    all_ok(&gateway, 4).await;
    assert_eq!(a.hits(), 0, "ejected: no client request reached it");

    reload(&gateway, &file, &body("")).await;
    let breaker = gateway.breaker("svc", a.addr).await;
    assert_eq!(breaker["state"], "closed", "{breaker}");
    assert_eq!(reason(&breaker), "health check removed", "{breaker}");
    assert_eq!(breaker["health"], Value::Null, "{breaker}");
    all_ok(&gateway, 4).await;
    assert_eq!(a.hits(), 2, "back in rotation: half of the requests");

    // No probe was risked on it: it went from open to closed directly, and stays so (a
    // probe started before the reload cannot eject it again).
    let text = gateway.metrics().await;
    let backend = a.addr.to_string();
    let probed = [
        ("upstream", "svc"),
        ("backend", backend.as_str()),
        ("from", "open"),
        ("to", "half_open"),
    ];
    // The series exists from 0 (so that increase() sees the first transition); it must stay 0.
    assert_eq!(
        metric(&text, "gateway_breaker_transitions_total", &probed).unwrap_or(0.0),
        0.0
    );
    no_probes_for(&a, Duration::from_millis(200)).await;
    all_ok(&gateway, 2).await;
    assert_eq!(gateway.breaker("svc", a.addr).await["state"], "closed");
}
