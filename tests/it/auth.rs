//! Credentials to JWT at the gateway, against the real users service of the travel
//! backend: single-flight exchanges, refresh before expiry, remembered refusals, a users
//! service that dies and comes back, forged tokens, and secrets kept out of logs and
//! metrics.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::{
    Mode, TestGateway, TestUpstream, TestUsers, client, eventually, logs, metric, users::JWT_SECRET,
};

/// The users breaker of most tests: once open it stays open for longer than any test runs,
/// so that no request a test sends to an open breaker becomes a probe however slowly the
/// loaded machine runs it. Recovery is tested with [`QUICK_TO_REOPEN`].
const HELD_OPEN: &str = "open_for: 60s, max_open_for: 60s";
const QUICK_TO_REOPEN: &str = "open_for: 300ms, max_open_for: 1s";

/// Timeouts are far above what an Argon2id hash takes in a debug build on a loaded machine
/// (and what 200 connections at once take to be accepted there), and slow calls never trip
/// the breaker: these tests are about answers, not speed.
fn config(users: SocketAddr, paths: SocketAddr, token_cache: &str, open: &str) -> String {
    format!(
        "upstreams:
  users: {{ backends: [\"{users}\"], breaker: users, connect_timeout: 30s, read_timeout: 60s, write_timeout: 60s }}
  paths: {{ backends: [\"{paths}\"], connect_timeout: 30s, read_timeout: 60s }}
breakers:
  users: {{ consecutive_failures: 3, failure_rate: off, slow_call_rate: off, {open}, half_open_probes: 1 }}
auth:
  token_endpoint: {{ upstream: users, path: /auth }}
  token_cache: {{ {token_cache} }}
routes:
  - {{ path: /user, methods: [POST], upstream: users, auth: none }}
  - {{ path: /user, upstream: users }}
  - {{ path: /auth, upstream: users, auth: none }}
  - {{ path: /path, upstream: paths }}
"
    )
}

fn basic(login: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"));
    format!("Basic {encoded}")
}

struct Stack {
    users: TestUsers,
    paths: TestUpstream,
    gateway: TestGateway,
}

async fn stack(token_ttl: Duration, token_cache: &str) -> Stack {
    stack_with(token_ttl, token_cache, HELD_OPEN).await
}

async fn stack_with(token_ttl: Duration, token_cache: &str, open: &str) -> Stack {
    let users = TestUsers::start(token_ttl).await;
    let paths = TestUpstream::start(Mode::Echo).await;
    let gateway = TestGateway::start(&config(users.users(), paths.addr, token_cache, open)).await;
    Stack {
        users,
        paths,
        gateway,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The claims of a JWT, read without verifying (the test inspects what was forwarded).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_credentials_become_a_bearer_token_and_identity_headers() {
    let s = stack(Duration::from_secs(900), "capacity: 1000").await;
    let id = s.users.register("mint green", "a-long-password-1").await;
    let response = client()
        .get(s.gateway.url("/path?id=3"))
        .header("authorization", basic("mint green", "a-long-password-1"))
        .header("x-user-id", "1")
        .header("x-user-login", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: Value = response.json().await.unwrap();
    let forwarded = echo["headers"]["authorization"].as_str().unwrap();
    let token = forwarded.strip_prefix("Bearer ").unwrap();
    assert_eq!(claims(token)["id"], id);
    assert_eq!(echo["headers"]["x-user-id"], id.to_string());
    assert_eq!(echo["headers"]["x-user-login"], "mint green");
    assert_eq!(echo["query"], "id=3");

    // The same token, sent as Bearer by the client, is verified locally and forwarded.
    let calls = s.users.auth_calls();
    let response = client()
        .get(s.gateway.url("/path"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(s.users.auth_calls(), calls);

    // Routes with `auth: none` pass the client's header through untouched.
    let response = client()
        .get(s.gateway.url("/auth"))
        .header("authorization", basic("mint green", "a-long-password-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let raw_token = response.text().await.unwrap();
    assert_eq!(claims(&raw_token)["login"], "mint green");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_with_new_credentials_cause_one_exchange() {
    let s = stack(Duration::from_secs(900), "capacity: 1000").await;
    s.users.register("crowd", "crowd-password-1").await;
    let mut tasks = JoinSet::new();
    for _ in 0..200 {
        let url = s.gateway.url("/path?id=1");
        tasks.spawn(async move {
            client()
                .get(url)
                .header("authorization", basic("crowd", "crowd-password-1"))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(s.paths.hits(), 200);
    assert_eq!(s.users.auth_calls(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_refreshed_before_they_expire_and_never_forwarded_expired() {
    // Tokens live 3 s; the gateway refreshes them 2 s before `exp`.
    let s = stack(
        Duration::from_secs(3),
        "capacity: 1000, refresh_before_expiry: 2s",
    )
    .await;
    s.users.register("short", "short-lived-pass").await;
    let http = client();
    let mut tokens = std::collections::BTreeSet::new();
    // Watched for at least 3.5 s (past the first token's expiry) and until a refresh was
    // seen; how many requests fit in that time does not matter.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(3500) || tokens.len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the token was never refreshed"
        );
        let echo: Value = http
            .get(s.gateway.url("/path"))
            .header("authorization", basic("short", "short-lived-pass"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = echo["headers"]["authorization"]
            .as_str()
            .unwrap()
            .trim_start_matches("Bearer ")
            .to_owned();
        let exp = claims(&token)["exp"].as_u64().unwrap();
        assert!(exp > unix_now(), "an expired token was forwarded");
        tokens.insert(token);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tokens.len() >= 2, "the token was never refreshed");
    assert_eq!(s.users.auth_calls(), tokens.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_passwords_are_401_and_never_trip_the_users_breaker() {
    let s = stack(
        Duration::from_secs(900),
        "capacity: 1000, negative_ttl: 30s",
    )
    .await;
    s.users.register("victim", "the-right-password").await;
    let mut tasks = JoinSet::new();
    for worker in 0..8 {
        let url = s.gateway.url("/path");
        tasks.spawn(async move {
            let http = client();
            let mut statuses = Vec::new();
            for _ in 0..125 {
                let response = http
                    .get(&url)
                    .header(
                        "authorization",
                        basic("victim", &format!("wrong-{}", worker % 2)),
                    )
                    .send()
                    .await
                    .unwrap();
                assert!(
                    response.headers()["www-authenticate"]
                        .to_str()
                        .unwrap()
                        .contains("Basic realm=\"gateway\"")
                );
                statuses.push(response.status().as_u16());
            }
            statuses
        });
    }
    let mut count = 0;
    while let Some(statuses) = tasks.join_next().await {
        let statuses = statuses.unwrap();
        assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
        count += statuses.len();
    }
    assert_eq!(count, 1000);
    assert_eq!(s.paths.hits(), 0);
    // Two distinct wrong passwords, each refused once and then remembered.
    assert!(
        s.users.auth_calls() <= 4,
        "{} exchanges",
        s.users.auth_calls()
    );
    let breaker = s.gateway.breaker("users", s.users.users()).await;
    assert_eq!(breaker["state"], "closed");
    assert_eq!(breaker["failures"], 0);
    let text = s.gateway.metrics().await;
    assert!(
        metric(
            &text,
            "gateway_token_cache_total",
            &[("result", "negative_hit")]
        )
        .unwrap()
            >= 990.0
    );
}

const REGISTER_LATE: &str =
    "/user?first_name=Abc&last_name=Def&email=a@b.c&title=t&login=late&password=late-pass";

/// Kills the users service and sends five requests with new credentials: each must be a
/// 503 (never a 401), and the third failure opens the users breaker.
async fn kill_users_and_see_503s(s: &mut Stack, http: &reqwest::Client) {
    s.users.kill().await;
    for attempt in 0..5 {
        let response = http
            .get(s.gateway.url("/path"))
            .header(
                "authorization",
                basic("newcomer", &format!("password-{attempt}")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503, "attempt {attempt}");
        assert!(response.headers().contains_key("retry-after"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "/errors/service_unavailable");
    }
    assert_eq!(
        s.gateway.breaker("users", s.users.users()).await["state"],
        "open"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_users_service_is_503_not_401() {
    // The breaker is held open for 60 s, so the registration below meets it open however
    // slowly the machine runs; recovery is the next test's.
    let mut s = stack(Duration::from_secs(900), "capacity: 1000").await;
    s.users.register("steady", "steady-password").await;
    let http = client();
    let ok = |status: reqwest::StatusCode| assert_eq!(status, 200);
    ok(http
        .get(s.gateway.url("/path"))
        .header("authorization", basic("steady", "steady-password"))
        .send()
        .await
        .unwrap()
        .status());

    // New credentials need an exchange: the service is down, so 503, never 401.
    kill_users_and_see_503s(&mut s, &http).await;
    // Registration goes to the same upstream: refused at once while its breaker is open.
    let response = http
        .post(s.gateway.url(REGISTER_LATE))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("users"), "{body}");
    // Cached tokens keep working: the path service is fine.
    ok(http
        .get(s.gateway.url("/path"))
        .header("authorization", basic("steady", "steady-password"))
        .send()
        .await
        .unwrap()
        .status());
    let text = s.gateway.metrics().await;
    assert!(
        metric(
            &text,
            "gateway_breaker_rejections_total",
            &[("upstream", "users")]
        )
        .is_some_and(|n| n >= 1.0),
        "the registration was refused by the open breaker"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_service_back_from_the_dead_closes_its_breaker_and_serves_again() {
    // A short open period, so probes start soon after the service is back; the wait is a
    // poll with a generous deadline, not a bet on how fast the probes run.
    let mut s = stack_with(Duration::from_secs(900), "capacity: 1000", QUICK_TO_REOPEN).await;
    let http = client();
    kill_users_and_see_503s(&mut s, &http).await;

    s.users.restart().await;
    eventually(Duration::from_secs(60), || async {
        http.post(s.gateway.url(REGISTER_LATE))
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let response = http
        .get(s.gateway.url("/path"))
        .header("authorization", basic("late", "late-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        s.gateway.breaker("users", s.users.users()).await["state"],
        "closed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_tokens_are_401_and_reach_nothing() {
    let s = stack(Duration::from_secs(900), "capacity: 1000").await;
    let now = unix_now();
    let claims = json!({"sub": "1", "id": 1, "login": "admin", "iat": now, "exp": now + 600});
    let sign = |alg, key: &[u8], claims: &Value| {
        encode(&Header::new(alg), claims, &EncodingKey::from_secret(key)).unwrap()
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let good = sign(Algorithm::HS256, JWT_SECRET.as_bytes(), &claims);
    let mut altered: Vec<String> = good.split('.').map(str::to_owned).collect();
    altered[1] = b64.encode(
        json!({"sub": "2", "id": 2, "login": "root", "iat": now, "exp": now + 600}).to_string(),
    );
    let forged = [
        sign(
            Algorithm::HS256,
            b"another-key-another-key-another-key",
            &claims,
        ),
        format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(claims.to_string())
        ),
        altered.join("."),
        sign(
            Algorithm::HS256,
            JWT_SECRET.as_bytes(),
            &json!({"sub": "1", "id": 1, "login": "admin", "iat": now - 900, "exp": now - 60}),
        ),
        sign(Algorithm::HS512, JWT_SECRET.as_bytes(), &claims),
    ];
    for token in &forged {
        let response = client()
            .get(s.gateway.url("/path"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{token}");
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("Bearer")
        );
    }
    let missing = client().get(s.gateway.url("/path")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["www-authenticate"],
        r#"Basic realm="gateway", Bearer"#
    );
    assert_eq!(s.paths.hits(), 0);
    assert_eq!(s.users.auth_calls(), 0);
    // The genuine one passes.
    let response = client()
        .get(s.gateway.url("/path"))
        .header("authorization", format!("Bearer {good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_reach_logs_or_metrics() {
    let s = stack(Duration::from_secs(900), "capacity: 1000").await;
    let password = "Sup3r-Secret-Passw0rd";
    s.users.register("careful", password).await;
    let credential = basic("careful", password);
    let http = client();
    let mut token = String::new();
    for header in [credential.clone(), basic("careful", "Wr0ng-Secret-Guess")] {
        let response = http
            .get(s.gateway.url("/path?id=1"))
            .header("authorization", &header)
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let echo: Value = response.json().await.unwrap();
            token =
                echo["headers"]["authorization"].as_str().unwrap()["Bearer ".len()..].to_owned();
        }
    }
    assert!(!token.is_empty());
    let text = s.gateway.metrics().await;
    let logged = logs::captured();
    assert!(logged.contains("request"), "log capture is not working");
    for secret in [
        password,
        "Wr0ng-Secret-Guess",
        credential.trim_start_matches("Basic "),
        token.as_str(),
        JWT_SECRET,
    ] {
        assert!(!text.contains(secret), "{secret} in /metrics");
        if let Some(line) = logged.lines().find(|l| l.contains(secret)) {
            panic!("{secret} in the logs: {line}");
        }
    }
}
