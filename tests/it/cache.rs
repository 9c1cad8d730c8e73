//! The response cache against the real travel services, each scenario run against both
//! stores: memory, and the real Redis on this machine.

use std::{sync::atomic::Ordering, time::Duration};

use base64::Engine as _;
use reqwest::{Response, StatusCode};
use travel::Service;

use crate::support::{
    TestGateway, TestTravel, client, metric,
    redis::{self as redis_support, PrefixGuard, RedisProcess},
};

#[derive(Clone, Copy, Debug)]
enum Store {
    Memory,
    Redis,
}

fn basic(login: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
    format!("Basic {encoded}")
}

struct Stack {
    travel: TestTravel,
    gateway: TestGateway,
    _prefix: Option<PrefixGuard>,
}

/// The store's config section, and the guard that cleans its keys up. `redis_url` names a
/// private Redis that the test hangs or kills; without it the scenario runs on the shared one.
async fn store_section(store: Store, redis_url: Option<String>) -> (String, Option<PrefixGuard>) {
    match store {
        Store::Memory => ("cache: { store: memory }\n".to_owned(), None),
        Store::Redis => {
            let guard = PrefixGuard::new("cache");
            let (url, timeout) = match redis_url {
                // A hung Redis is noticed by this deadline: the test is about it.
                Some(url) => (url, "200ms"),
                // Far above what the shared Redis takes on a loaded machine: a slow answer
                // would make the request go on uncached (BYPASS) where a scenario that is
                // about caching expects MISS or HIT.
                None => {
                    redis_support::require_shared().await;
                    (redis_support::SHARED_URL.to_owned(), "5s")
                }
            };
            (
                format!(
                    "cache: {{ store: redis, redis_url: \"{url}\", key_prefix: \"{}\", redis_timeout: {timeout} }}\n",
                    guard.prefix
                ),
                Some(guard),
            )
        }
    }
}

/// The services behind the gateway, with timeouts far above what a debug build takes on a
/// loaded machine: these scenarios are about what is cached, not about speed (a dead service
/// refuses connections at once).
async fn stack(store: Store, path_ttl: &str, redis_url: Option<String>) -> Stack {
    let travel = TestTravel::start_services(&Service::ALL, Duration::from_secs(900)).await;
    let (section, guard) = store_section(store, redis_url).await;
    let patient = "connect_timeout: 30s, read_timeout: 60s";
    let config = format!(
        "{section}upstreams:
  users: {{ backends: [\"{users}\"], {patient} }}
  paths: {{ backends: [\"{paths}\"], breaker: quick, {patient} }}
  trips: {{ backends: [\"{trips}\"], {patient} }}
  parties: {{ backends: [\"{parties}\"], {patient} }}
breakers:
  quick: {{ consecutive_failures: 2, failure_rate: off, open_for: 30s, max_open_for: 1m }}
auth:
  token_endpoint: {{ upstream: users }}
routes:
  - {{ path: /user, methods: [POST], upstream: users, auth: none }}
  - {{ path: /user, upstream: users, cache: {{ ttl: 30s, scope: user }} }}
  - {{ path: /path, upstream: paths, cache: {{ ttl: {path_ttl}, scope: shared, stale_if_error: 10m }} }}
  - {{ path: /trip, upstream: trips, cache: {{ ttl: 30s, scope: user }}, invalidates: [/trips] }}
  - {{ path: /trips, upstream: trips, cache: {{ ttl: 30s, scope: user }} }}
  - {{ path: /party, upstream: parties, invalidates: [/trip, /trips, /parties] }}
  - {{ path: /parties, upstream: parties, cache: {{ ttl: 30s, scope: user }} }}
",
        users = travel.addr(Service::Users),
        paths = travel.addr(Service::Paths),
        trips = travel.addr(Service::Trips),
        parties = travel.addr(Service::Parties),
    );
    let gateway = TestGateway::start(&config).await;
    Stack {
        travel,
        gateway,
        _prefix: guard,
    }
}

impl Stack {
    async fn get(&self, path: &str, who: (&str, &str)) -> Response {
        client()
            .get(self.gateway.url(path))
            .header("authorization", basic(who.0, who.1))
            .send()
            .await
            .unwrap()
    }

    async fn send(&self, method: reqwest::Method, path: &str, who: (&str, &str)) -> Response {
        client()
            .request(method, self.gateway.url(path))
            .header("authorization", basic(who.0, who.1))
            .send()
            .await
            .unwrap()
    }

    /// GETs until the response says `X-Cache: label` (stores may write in the background),
    /// failing after a bounded wait (long: it returns as soon as the label is seen).
    async fn get_until(
        &self,
        path: &str,
        who: (&str, &str),
        label: &str,
    ) -> (StatusCode, String, Option<u64>) {
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let response = self.get(path, who).await;
            let status = response.status();
            let seen = x_cache(&response);
            let age = response
                .headers()
                .get("age")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let body = response.text().await.unwrap();
            if seen == label {
                return (status, body, age);
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{path}: never X-Cache {label}; last {status} {seen:?} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn x_cache(response: &Response) -> String {
    response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

const ADA: (&str, &str) = ("ada", "ada-password-1");
const BOB: (&str, &str) = ("bob", "bob-password-1");

async fn create_path(s: &Stack) -> i64 {
    let response = s
        .send(
            reqwest::Method::POST,
            "/path?startpoint=63%20Sunfield%20Way&endpoint=4%20Pawling%20Point",
            ADA,
        )
        .await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap().trim().parse().unwrap()
}

async fn users_see_their_own_data_and_shared_routes_share(store: Store) {
    let s = stack(store, "60s", None).await;
    s.travel.register(ADA.0, ADA.1).await;
    s.travel.register(BOB.0, BOB.1).await;
    let path_id = create_path(&s).await;
    let trip = s
        .send(
            reqwest::Method::POST,
            &format!(
                "/trip?id_path={path_id}&name=Ada%27s&start_time=9:00%20AM&fin_time=5:00%20PM"
            ),
            ADA,
        )
        .await;
    assert_eq!(trip.status(), 200);
    let trip_id: i64 = trip.text().await.unwrap().trim().parse().unwrap();

    // User scope: each caller has an entry of their own.
    let (_, ada_trips, _) = s.get_until("/trips", ADA, "HIT").await;
    let bob = s.get("/trips", BOB).await;
    assert_eq!(x_cache(&bob), "MISS");
    let bob_trips = bob.text().await.unwrap();
    assert_ne!(ada_trips, bob_trips);
    assert!(ada_trips.contains("Ada's"));
    assert!(!bob_trips.contains("Ada's"));
    let (_, again, _) = s.get_until("/trips", BOB, "HIT").await;
    assert_eq!(again, bob_trips);
    // Bob never gets Ada's cached trip: he is not a member.
    s.get_until(&format!("/trip?id={trip_id}"), ADA, "HIT")
        .await;
    assert_eq!(
        s.get(&format!("/trip?id={trip_id}"), BOB).await.status(),
        403
    );

    // Shared scope: Ada's miss fills the entry Bob hits.
    let first = s.get(&format!("/path?id={path_id}"), ADA).await;
    assert_eq!(x_cache(&first), "MISS");
    let (status, body, _) = s
        .get_until(&format!("/path?id={path_id}"), BOB, "HIT")
        .await;
    assert_eq!(status, 200);
    assert!(body.contains("Sunfield"));
}

async fn ttl_expiry_with_x_cache_and_age(store: Store) {
    let s = stack(store, "2s", None).await;
    s.travel.register(ADA.0, ADA.1).await;
    let path_id = create_path(&s).await;
    let url = format!("/path?id={path_id}");
    // (A Redis store may still be connecting for the very first requests: BYPASS.)
    let (_, _, age) = s.get_until(&url, ADA, "MISS").await;
    assert_eq!(age, Some(0));
    let (_, _, age) = s.get_until(&url, ADA, "HIT").await;
    assert!(age.unwrap() <= 2);
    // Query parameter order does not matter.
    s.get_until(&format!("/path?x=1&id={path_id}"), ADA, "HIT")
        .await;
    assert_eq!(
        x_cache(&s.get(&format!("/path?id={path_id}&x=1"), ADA).await),
        "HIT"
    );
    // After the TTL the next request goes upstream again.
    s.get_until(&url, ADA, "MISS").await;
    // Cache-Control: no-cache skips the lookup.
    let fresh = client()
        .get(s.gateway.url(&url))
        .header("authorization", basic(ADA.0, ADA.1))
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(x_cache(&fresh), "BYPASS");
}

async fn writes_show_up_in_the_next_read(store: Store) {
    let s = stack(store, "60s", None).await;
    s.travel.register(ADA.0, ADA.1).await;
    s.travel.register(BOB.0, BOB.1).await;
    let path_id = create_path(&s).await;
    let trip: i64 = s
        .send(
            reqwest::Method::POST,
            &format!("/trip?id_path={path_id}&name=Before&start_time=1&fin_time=2"),
            ADA,
        )
        .await
        .text()
        .await
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let url = format!("/trip?id={trip}");
    let (_, before, _) = s.get_until(&url, ADA, "HIT").await;
    assert!(before.contains("Before"));
    let put = s
        .send(
            reqwest::Method::PUT,
            &format!("/trip?id={trip}&id_path={path_id}&name=After&start_time=1&fin_time=2"),
            ADA,
        )
        .await;
    assert_eq!(put.status(), 200);
    let after = s.get(&url, ADA).await;
    assert_eq!(x_cache(&after), "MISS");
    assert!(after.text().await.unwrap().contains("After"));

    // Bob's cached trip list learns about his join at once.
    let (_, empty, _) = s.get_until("/trips", BOB, "HIT").await;
    assert!(!empty.contains("After"));
    let join = s
        .send(
            reqwest::Method::POST,
            &format!("/party/join?id_trip={trip}"),
            BOB,
        )
        .await;
    assert_eq!(join.status(), 200);
    let listed = s.get("/trips", BOB).await;
    assert_eq!(x_cache(&listed), "MISS");
    assert!(listed.text().await.unwrap().contains("After"));
}

async fn stale_when_the_upstream_dies_and_503_without_an_entry(store: Store) {
    let mut s = stack(store, "1s", None).await;
    s.travel.register(ADA.0, ADA.1).await;
    let cached = create_path(&s).await;
    let uncached = create_path(&s).await;
    let url = format!("/path?id={cached}");
    let (_, original, _) = s.get_until(&url, ADA, "HIT").await;

    s.travel.kill_service(Service::Paths).await;
    // Once the entry expires, failed upstream calls are answered from it.
    let (status, stale, _) = s.get_until(&url, ADA, "STALE").await;
    assert_eq!(status, 200);
    assert_eq!(stale, original);
    // Two failures open the breaker; stale answers go on, uncached requests get 503.
    s.get_until(&url, ADA, "STALE").await;
    let report = s
        .gateway
        .breaker("paths", s.travel.addr(Service::Paths))
        .await;
    assert_eq!(report["state"], "open", "{report}");
    let refused = s.get(&format!("/path?id={uncached}"), ADA).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let (status, body, _) = s.get_until(&url, ADA, "STALE").await;
    assert_eq!((status, body), (StatusCode::OK, original));
}

async fn cached_bodies_need_valid_credentials(store: Store) {
    let s = stack(store, "60s", None).await;
    s.travel.register(ADA.0, ADA.1).await;
    let path_id = create_path(&s).await;
    let url = format!("/path?id={path_id}");
    s.get_until(&url, ADA, "HIT").await;
    let none = client().get(s.gateway.url(&url)).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert!(!none.text().await.unwrap().contains("Sunfield"));
    let wrong = s.get(&url, (ADA.0, "wrong-password")).await;
    assert_eq!(wrong.status(), 401);
    assert!(!wrong.text().await.unwrap().contains("Sunfield"));
    let forged = client()
        .get(s.gateway.url(&url))
        .header("authorization", "Bearer eyJhbGciOiJub25lIn0.eyJpZCI6MX0.")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

macro_rules! both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $scenario() { super::$scenario(super::Store::Memory).await; })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $scenario() { super::$scenario(super::Store::Redis).await; })*
        }
    };
}

both_stores!(
    users_see_their_own_data_and_shared_routes_share,
    ttl_expiry_with_x_cache_and_age,
    writes_show_up_in_the_next_read,
    stale_when_the_upstream_dies_and_503_without_an_entry,
    cached_bodies_need_valid_credentials,
);

/// Calls of each command Redis has served, from `INFO commandstats`.
async fn command_calls(url: &str) -> std::collections::BTreeMap<String, u64> {
    let mut connection = redis_support::connection(url).await;
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_hit_is_one_round_trip() {
    let redis = RedisProcess::start().await;
    let s = stack(Store::Redis, "60s", Some(redis.url())).await;
    s.travel.register(ADA.0, ADA.1).await;
    let path_id = create_path(&s).await;
    let url = format!("/path?id={path_id}");
    s.get_until(&url, ADA, "HIT").await;

    let before = command_calls(&redis.url()).await;
    for _ in 0..5 {
        let response = s.get(&url, ADA).await;
        assert_eq!(response.headers()["x-cache"], "HIT");
    }
    let after = command_calls(&redis.url()).await;
    // The generation counter and the entry in one MGET per hit, and nothing else (the
    // INFO that reads these counts aside).
    let served: Vec<(String, u64)> = after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .map(|(name, calls)| (name.clone(), calls - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, calls)| *calls > 0)
        .collect();
    assert_eq!(served, vec![("mget".to_owned(), 5)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dying_redis_never_fails_a_request_and_caching_resumes() {
    let mut redis = RedisProcess::start().await;
    let s = stack(Store::Redis, "60s", Some(redis.url())).await;
    s.travel.register(ADA.0, ADA.1).await;
    let path_id = create_path(&s).await;
    let url = format!("/path?id={path_id}");
    s.get_until(&url, ADA, "HIT").await;

    // Keys hold ids and hashes, never a credential, a token or a password.
    let keys = redis_support::keys(&redis.url(), "").await;
    assert!(!keys.is_empty());
    let credential = basic(ADA.0, ADA.1);
    for key in &keys {
        // Digests are hex, and "ada" is hex too: about one SHA-256 digest in 70 contains it.
        // What must not hold a secret is the rest of the key.
        let outside_digests = without_hex_runs(key);
        for secret in [
            ADA.0,
            ADA.1,
            credential.trim_start_matches("Basic "),
            "Bearer",
            "eyJ",
        ] {
            assert!(!outside_digests.contains(secret), "{key} contains {secret}");
        }
    }

    redis.kill();
    for _ in 0..20 {
        let response = s.get(&url, ADA).await;
        assert_eq!(
            response.status(),
            200,
            "a dead cache must not fail requests"
        );
        assert!(response.text().await.unwrap().contains("Sunfield"));
    }
    let text = s.gateway.metrics().await;
    assert!(
        metric(
            &text,
            "gateway_cache_store_errors_total",
            &[("store", "redis")]
        )
        .unwrap_or(0.0)
            > 0.0
    );
    // This gateway's own view (`gateway_cache_store_available` is one gauge for every
    // gateway of this test process, and other tests' Redis stores set it meanwhile).
    let report = s.gateway.admin_json("/admin/cache").await;
    assert_eq!(report["up"], false, "{report}");

    redis.restart().await;
    s.get_until(&url, ADA, "HIT").await;
    let report = s.gateway.admin_json("/admin/cache").await;
    assert_eq!(report["up"], true, "{report}");
}

/// The services take the first value of a repeated parameter, so `?id=A&id=B` and
/// `?id=B&id=A` are different requests: one must never be answered from the other's
/// entry (one client could plant a wrong answer for everyone).
#[tokio::test(flavor = "multi_thread")]
async fn repeated_parameters_in_another_order_never_share_an_entry() {
    let s = stack(Store::Memory, "60s", None).await;
    s.travel.register(ADA.0, ADA.1).await;
    let (a, b) = (create_path(&s).await, create_path(&s).await);
    let (_, path_a, _) = s.get_until(&format!("/path?id={a}"), ADA, "MISS").await;
    let (_, path_b, _) = s.get_until(&format!("/path?id={b}"), ADA, "MISS").await;
    assert_ne!(path_a, path_b);

    let a_first = format!("/path?id={a}&id={b}");
    let (_, body, _) = s.get_until(&a_first, ADA, "HIT").await;
    assert_eq!(body, path_a);
    for b_first in [
        format!("/path?id={b}&id={a}"),
        format!("/path?%69d={b}&id={a}"),
    ] {
        let response = s.get(&b_first, ADA).await;
        assert_eq!(x_cache(&response), "MISS", "{b_first}");
        assert_eq!(response.text().await.unwrap(), path_b, "{b_first}");
    }
    // Other names still move freely around the repeated ones.
    let (_, body, _) = s
        .get_until(&format!("/path?x=1&id={a}&id={b}"), ADA, "HIT")
        .await;
    assert_eq!(body, path_a);
    let response = s.get(&format!("/path?id={a}&x=1&id={b}"), ADA).await;
    assert_eq!(x_cache(&response), "HIT");
    assert_eq!(response.text().await.unwrap(), path_a);
}

/// Issue #11's sequence: Redis hung (SIGSTOP) for 3 s, resumed, killed 1.5 s later and
/// restarted on the same port 3 s after that. Every request is answered correctly
/// throughout, and a HIT comes again within 2 s of Redis accepting connections. (The
/// pauses are the scenario; nothing waits on them for synchronisation.)
#[tokio::test(flavor = "multi_thread")]
async fn redis_hung_then_killed_then_restarted_is_used_again_within_two_seconds() {
    use std::sync::{Arc, atomic::AtomicBool};
    let mut redis = RedisProcess::start().await;
    let s = Arc::new(stack(Store::Redis, "60s", Some(redis.url())).await);
    s.travel.register(ADA.0, ADA.1).await;
    let path_id = create_path(&s).await;
    let url = format!("/path?id={path_id}");
    s.get_until(&url, ADA, "HIT").await;
    assert_eq!(s.gateway.admin_json("/admin/cache").await["up"], true);

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (s, stop, url) = (s.clone(), stop.clone(), url.clone());
        async move {
            let mut answered = 0;
            while !stop.load(Ordering::SeqCst) {
                let response = s.get(&url, ADA).await;
                let status = response.status();
                let label = x_cache(&response);
                let body = response.text().await.unwrap();
                assert_eq!(status, 200, "{label} {body}");
                assert!(body.contains("Sunfield"), "{label} {body}");
                answered += 1;
            }
            answered
        }
    });
    let down =
        |s: Arc<Stack>| async move { s.gateway.admin_json("/admin/cache").await["up"] == false };

    redis.signal("STOP");
    crate::support::eventually(Duration::from_secs(30), || down(s.clone())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.signal("CONT");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(down(s.clone()).await);
    redis.start_again().await;
    let accepting = tokio::time::Instant::now();

    loop {
        let response = s.get(&url, ADA).await;
        let label = x_cache(&response);
        assert_eq!(response.status(), 200);
        if label == "HIT" {
            break;
        }
        assert!(
            accepting.elapsed() < Duration::from_secs(2),
            "no HIT within 2 s of Redis accepting connections; last {label}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    assert!(load.await.unwrap() > 0);

    let text = s.gateway.metrics().await;
    let store = |kind| {
        metric(
            &text,
            "gateway_cache_store_errors_total",
            &[("store", "redis"), ("kind", kind)],
        )
        .unwrap_or(0.0)
    };
    assert!(store("timeout") > 0.0, "{text}");
    assert!(store("down") > 0.0, "{text}");
    assert_eq!(
        metric(
            &text,
            "gateway_cache_store_available",
            &[("store", "redis")]
        ),
        Some(1.0)
    );
    let report = s.gateway.admin_json("/admin/cache").await;
    assert_eq!(report["store"], "redis", "{report}");
    assert_eq!(report["up"], true, "{report}");
    assert_eq!(report["last_error"], serde_json::Value::Null, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_cache_reports_the_memory_store_as_always_up() {
    let gateway = TestGateway::start(
        "upstreams:\n  origin: { backends: [\"127.0.0.1:9\"] }\nroutes:\n  - { path: /shared, upstream: origin, auth: none, cache: { ttl: 60s, scope: shared } }\n",
    )
    .await;
    assert_eq!(
        gateway.admin_json("/admin/cache").await,
        serde_json::json!({
            "store": "memory",
            "up": true,
            "since": null,
            "for_seconds": null,
            "last_error": null,
            "failed_attempts": 0
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_make_one_upstream_request_and_head_is_served_from_get() {
    use crate::support::{Mode, TestUpstream};
    let origin = TestUpstream::start(Mode::Delay(Duration::from_millis(300))).await;
    let config = format!(
        "upstreams:\n  origin: {{ backends: [\"{}\"] }}\nroutes:\n  - {{ path: /shared, upstream: origin, auth: none, cache: {{ ttl: 60s, scope: shared }} }}\n",
        origin.addr
    );
    let gateway = TestGateway::start(&config).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let url = gateway.url("/shared?q=1");
        tasks.spawn(async move {
            let response = client().get(url).send().await.unwrap();
            (response.status(), x_cache(&response))
        });
    }
    let mut labels = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (status, label) = result.unwrap();
        assert_eq!(status, 200);
        labels.push(label);
    }
    assert_eq!(origin.hits(), 1, "{labels:?}");
    assert_eq!(
        labels.iter().filter(|l| *l == "MISS").count(),
        1,
        "{labels:?}"
    );

    let head = client()
        .head(gateway.url("/shared?q=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(x_cache(&head), "HIT");
    assert_eq!(origin.hits(), 1);
}

/// `key` with every run of 16 or more hex digits (a digest) replaced by `#`.
fn without_hex_runs(key: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in key.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() >= 16 { "#" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}
