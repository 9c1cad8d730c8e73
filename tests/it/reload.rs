//! Live reload: edits of the watched config file apply without dropping a request or
//! forgetting what the breakers learnt; invalid edits never take effect.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::support::{Mode, TestGateway, TestUpstream, client, eventually, metric};

fn one_route(a: &TestUpstream, extra_backends: &str, breaker: &str, more_routes: &str) -> String {
    format!(
        "upstreams:\n  a: {{ backends: [\"{}\"{extra_backends}], breaker: b }}\n  other: {{ backends: [\"{}\"] }}\nbreakers:\n  b: {{ {breaker} }}\nroutes:\n  - {{ path: /svc, upstream: a, auth: none }}\n{more_routes}",
        a.addr, a.addr
    )
}

/// The status of a `GET path` through the gateway, on a fresh connection.
async fn status_of(gateway: &TestGateway, path: &str) -> u16 {
    client()
        .get(gateway.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits until the config running is the file whose SHA-256 is `hash`: a reload applied.
async fn until_running(gateway: &TestGateway, hash: &str) {
    eventually(Duration::from_secs(10), || async {
        gateway.admin_json("/admin/config").await["hash"] == hash
    })
    .await;
}

/// Waits until the last reload attempt was of the file whose SHA-256 is `hash`, applied or
/// rejected.
async fn until_tried(gateway: &TestGateway, hash: &str) {
    eventually(Duration::from_secs(10), || async {
        gateway.admin_json("/admin/config").await["last_reload"]["hash"] == hash
    })
    .await;
}

/// `gateway_config_reloads_total` of `result` in the scrape `text` (0 before any).
fn reloads(text: &str, result: &str) -> f64 {
    metric(text, "gateway_config_reloads_total", &[("result", result)]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_apply_under_load_without_failing_a_request() {
    let first = TestUpstream::start(Mode::Echo).await;
    let second = TestUpstream::start(Mode::Echo).await;
    let (gateway, file) =
        TestGateway::start_watching(&one_route(&first, "", "consecutive_failures: 5", "")).await;
    let initial = gateway.admin_json("/admin/config").await;

    // A steady load for the whole test, counted so that the test waits for requests on
    // both sides of the reload rather than for time to pass.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, sent, url) = (stop.clone(), sent.clone(), gateway.url("/svc"));
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let status = http
                    .get(&url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                statuses.push(status);
                sent.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        })
    };
    let at_least = |n: usize| {
        let sent = sent.clone();
        async move {
            eventually(Duration::from_secs(20), || {
                let sent = sent.clone();
                async move { sent.load(Ordering::SeqCst) >= n }
            })
            .await
        }
    };
    at_least(10).await;

    // A new threshold, a new route and a second backend, in one edit.
    let new_routes = "  - { path: /new, upstream: other, auth: none }\n";
    let hash = file.write(&one_route(
        &first,
        &format!(", \"{}\"", second.addr),
        "consecutive_failures: 9",
        new_routes,
    ));
    eventually(Duration::from_secs(10), || async {
        status_of(&gateway, "/new").await == 200
    })
    .await;
    let status = gateway.admin_json("/admin/config").await;
    assert_eq!(status["hash"], hash.as_str());
    assert_ne!(status["hash"], initial["hash"]);
    assert_eq!(status["last_reload"]["applied"], true);
    // The added backend takes its share.
    eventually(Duration::from_secs(10), || async { second.hits() > 0 }).await;
    let after_reload = sent.load(Ordering::SeqCst) + 10;
    at_least(after_reload).await;

    stop.store(true, Ordering::Relaxed);
    let statuses = load.await.unwrap();
    assert!(statuses.len() > 20, "too little load: {}", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a request failed during the reload: {statuses:?}"
    );
    let text = gateway.metrics().await;
    assert!(reloads(&text, "success") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_breaker_stays_open_across_a_reload_and_new_thresholds_govern() {
    let origin = TestUpstream::start(Mode::Status(500)).await;
    let breaker = |open: &str, failures: u32| {
        format!(
            "consecutive_failures: {failures}, failure_rate: off, open_for: {open}, max_open_for: 10s, half_open_probes: 1"
        )
    };
    let (gateway, file) =
        TestGateway::start_watching(&one_route(&origin, "", &breaker("2s", 2), "")).await;
    for _ in 0..2 {
        assert_eq!(status_of(&gateway, "/svc").await, 500);
    }
    assert_eq!(gateway.breaker("a", origin.addr).await["state"], "open");

    let hash = file.write(&one_route(&origin, "", &breaker("200ms", 4), ""));
    until_running(&gateway, &hash).await;
    // Still open: what it learnt survives, and so does the rest of its open period.
    let report = gateway.breaker("a", origin.addr).await;
    assert_eq!(report["state"], "open", "{report}");
    assert_eq!(status_of(&gateway, "/svc").await, 503);
    assert_eq!(origin.hits(), 2);

    // The old period runs out; the failing probe re-opens with the new period doubled.
    eventually(Duration::from_secs(10), || async {
        status_of(&gateway, "/svc").await;
        origin.hits() > 2
    })
    .await;
    let report = gateway.breaker("a", origin.addr).await;
    assert_eq!(report["state"], "open", "{report}");
    assert_eq!(report["open_for_seconds"], 0.4, "{report}");

    // Recovered, it closes; then the new threshold (4 in a row) decides when it opens.
    origin.set_mode(Mode::Echo);
    eventually(Duration::from_secs(10), || async {
        status_of(&gateway, "/svc").await == 200
            && gateway.breaker("a", origin.addr).await["state"] == "closed"
    })
    .await;
    origin.set_mode(Mode::Status(500));
    for _ in 0..3 {
        assert_eq!(status_of(&gateway, "/svc").await, 500);
    }
    assert_eq!(gateway.breaker("a", origin.addr).await["state"], "closed");
    assert_eq!(status_of(&gateway, "/svc").await, 500);
    assert_eq!(gateway.breaker("a", origin.addr).await["state"], "open");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_update_by_symlink_swap_applies_and_keeps_breaker_state() {
    let origin = TestUpstream::start(Mode::Status(500)).await;
    let breaker = "consecutive_failures: 2, failure_rate: off, open_for: 1m, half_open_probes: 1";
    let (gateway, volume) =
        TestGateway::start_watching_configmap(&one_route(&origin, "", breaker, "")).await;
    for _ in 0..2 {
        assert_eq!(status_of(&gateway, "/svc").await, 500);
    }
    assert_eq!(gateway.breaker("a", origin.addr).await["state"], "open");

    // The kubelet swaps the `..data` link; the watched path itself is never written.
    let new_route = "  - { path: /new, upstream: other, auth: none }\n";
    let hash = volume.update(&one_route(&origin, "", breaker, new_route));
    until_running(&gateway, &hash).await;
    assert_eq!(
        gateway.admin_json("/admin/config").await["last_reload"]["applied"],
        true
    );

    // The edit applies: the new route reaches the origin...
    assert_eq!(status_of(&gateway, "/new").await, 500);
    assert_eq!(origin.hits(), 3);
    // ...and the breaker kept what it learnt: still open, the origin spared.
    let report = gateway.breaker("a", origin.addr).await;
    assert_eq!(report["state"], "open", "{report}");
    assert_eq!(status_of(&gateway, "/svc").await, 503);
    assert_eq!(origin.hits(), 3);
}

/// Rejected edits that hold a Redis password (a wrong scheme, a URL that does not parse,
/// a URL where a map belongs): neither `/admin/config` nor the log ever shows it.
#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_redis_url_never_shows_its_password() {
    const PASSWORD: &str = "reload-s3cret-91x";
    let origin = TestUpstream::start(Mode::Echo).await;
    let good = one_route(&origin, "", "consecutive_failures: 5", "");
    let (gateway, file) = TestGateway::start_watching(&good).await;
    for (cache, expected) in [
        (
            format!("{{ store: redis, redis_url: \"http://:{PASSWORD}@cache.internal:6379/0\" }}"),
            "cache.redis_url: the value is not a Redis URL",
        ),
        (
            format!("{{ store: redis, redis_url: \"redis://:{PASSWORD}@cache.internal:x/0\" }}"),
            "cache.redis_url: the value is not a valid Redis URL",
        ),
        (
            format!("\"redis://:{PASSWORD}@cache.internal:6379/0\""),
            "redis://***@cache.internal:6379/0",
        ),
    ] {
        let hash = file.write(&format!("{good}cache: {cache}\n"));
        until_tried(&gateway, &hash).await;
        let status = gateway.admin_json("/admin/config").await;
        assert_eq!(status["last_reload"]["applied"], false);
        let report = status.to_string();
        assert!(report.contains(expected), "{expected} not in {report}");
        assert!(!report.contains(PASSWORD), "{report}");
    }
    let logged = crate::support::logs::captured();
    assert!(
        logged.contains("cache.redis_url"),
        "the rejections were not logged"
    );
    assert!(!logged.contains(PASSWORD), "a password reached the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_edits_never_take_effect_and_a_fix_does() {
    let origin = TestUpstream::start(Mode::Echo).await;
    let good = one_route(&origin, "", "consecutive_failures: 5", "");
    let (gateway, file) = TestGateway::start_watching(&good).await;
    let running = gateway.admin_json("/admin/config").await["hash"].clone();
    let text = gateway.metrics().await;
    let failures_before = reloads(&text, "failure");

    let broken = [
        (
            format!("{good}  - {{ path: /x, upstream: a\n"),
            "did not find expected",
        ),
        (
            format!("{good}  - {{ path: /x, upstream: orders, auth: none }}\n"),
            "routes[1].upstream: unknown upstream \"orders\"",
        ),
        (
            good.replace("breaker: b }", "breaker: b, timeout: 5s }"),
            "unknown field `timeout`",
        ),
    ];
    let mut rejected = 0.0;
    for (text, expected) in &broken {
        let hash = file.write(text);
        rejected += 1.0;
        until_tried(&gateway, &hash).await;
        let status = gateway.admin_json("/admin/config").await;
        assert_eq!(status["hash"], running, "an invalid file took effect");
        assert_eq!(status["last_reload"]["applied"], false);
        let errors: Vec<&str> = status["last_reload"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        let errors = errors.join("\n");
        assert!(errors.contains(expected), "{expected} not in {errors}");
        assert!(
            errors.contains("gateway.yaml:"),
            "no file and line in {errors}"
        );
        assert_eq!(status_of(&gateway, "/svc").await, 200);
        let text = gateway.metrics().await;
        assert_eq!(reloads(&text, "failure") - failures_before, rejected);
    }

    // A listener cannot move in place.
    let hash = {
        let moved = format!(
            "{}{good}",
            file.header().replace(
                "admin: { listen: \"127.0.0.1:",
                "admin: { listen: \"127.0.0.2:"
            )
        );
        file.write_raw(&moved);
        crate::support::gateway::sha256(moved.as_bytes())
    };
    until_tried(&gateway, &hash).await;
    let errors = gateway.admin_json("/admin/config").await["last_reload"]["errors"].to_string();
    assert!(errors.contains("needs a restart"), "{errors}");

    // Fixed: applied.
    let hash = file.write(&format!(
        "{good}  - {{ path: /x, upstream: a, auth: none }}\n"
    ));
    until_running(&gateway, &hash).await;
    assert_eq!(status_of(&gateway, "/x").await, 200);
    let text = gateway.metrics().await;
    assert!(
        metric(
            &text,
            "gateway_config_last_reload_success_timestamp_seconds",
            &[]
        )
        .unwrap()
            > 1.7e9
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_backend_leaves_no_metric_series_behind() {
    let origin = TestUpstream::start(Mode::Echo).await;
    // Nothing listens there: every call is a connect failure.
    let dead = format!("127.0.0.1:{}", crate::support::free_port());
    let config = |backend: &str| {
        format!(
            "upstreams:\n  a: {{ backends: [\"{backend}\"], breaker: b, connect_retries: 0 }}\nbreakers:\n  b: {{ consecutive_failures: 1 }}\nroutes:\n  - {{ path: /svc, upstream: a, auth: none }}\n"
        )
    };
    let (gateway, file) = TestGateway::start_watching(&config(&dead)).await;
    for _ in 0..2 {
        let _ = client().get(gateway.url("/svc")).send().await.unwrap();
    }
    let series = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&format!("backend=\"{dead}\"")))
            .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let before = series(&gateway.metrics().await);
    for name in [
        "gateway_breaker_state",
        "gateway_upstream_attempts_total",
        "gateway_breaker_transitions_total",
    ] {
        assert!(
            before.contains(name),
            "no {name} series for {dead}: {before:?}"
        );
    }

    let hash = file.write(&config(&origin.addr.to_string()));
    until_running(&gateway, &hash).await;
    let after = series(&gateway.metrics().await);
    assert!(
        after.is_empty(),
        "series of the removed backend remain: {after:?}"
    );
    assert_eq!(status_of(&gateway, "/svc").await, 200);
}
