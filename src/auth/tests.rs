//! TokenProvider without sockets: a counting source and an injected clock.

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn token(id: i64, exp: u64) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": id.to_string(), "id": id, "login": format!("user{id}"), "iat": exp - 900, "exp": exp}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// Answers like the users service would, counting calls; `password` is the only good one.
struct FakeUsers {
    calls: AtomicUsize,
    answer: Mutex<Result<String, FetchError>>,
    delay: Duration,
}

impl FakeUsers {
    fn new(answer: Result<String, FetchError>) -> Arc<Self> {
        Arc::new(FakeUsers {
            calls: AtomicUsize::new(0),
            answer: Mutex::new(answer),
            delay: Duration::from_millis(20),
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn answer(&self, answer: Result<String, FetchError>) {
        *self.answer.lock().unwrap() = answer;
    }
}

#[async_trait]
impl TokenSource for FakeUsers {
    async fn fetch(
        &self,
        _users: &Arc<Upstream>,
        _basic: &str,
        _request_id: &str,
    ) -> Result<String, FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.answer.lock().unwrap().clone()
    }
}

fn provider(source: Arc<FakeUsers>, capacity: u64) -> TokenProvider {
    TokenProvider::new(
        Arc::from("users"),
        JwtVerifier::new(SECRET, &[Algorithm::HS256], Duration::from_secs(0)),
        source,
        TokenCacheSettings {
            capacity,
            refresh_before_expiry: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
        },
    )
}

const BASIC: &[u8] = b"Basic dXNlcjE6cGFzc3dvcmQ=";

/// A users upstream for the calls; the fake source never contacts it.
fn token_upstream() -> Arc<Upstream> {
    let config = crate::config::Config::parse(
        "upstreams:\n  users: { backends: [127.0.0.1:1] }\nroutes:\n  - { path: /, upstream: users, auth: none }\n",
    )
    .unwrap();
    Arc::new(Upstream::new(
        &config.upstreams[0],
        Instant::now(),
        None,
        &Default::default(),
    ))
}

#[tokio::test]
async fn a_cached_token_is_served_until_its_refresh_time() {
    let users = FakeUsers::new(Ok(token(1, T0 + 900)));
    let provider = provider(users.clone(), 100);
    let first = provider
        .authenticate(Some(BASIC), at(T0), "r", &token_upstream(), None)
        .await
        .unwrap();
    assert_eq!(first.user_id, 1);
    for s in [1, 100, 869] {
        provider
            .authenticate(Some(BASIC), at(T0 + s), "r", &token_upstream(), None)
            .await
            .unwrap();
    }
    assert_eq!(users.calls(), 1);

    // 30 s before exp the entry is refreshed, never served stale.
    users.answer(Ok(token(1, T0 + 1800)));
    let refreshed = provider
        .authenticate(Some(BASIC), at(T0 + 870), "r", &token_upstream(), None)
        .await
        .unwrap();
    assert_eq!(users.calls(), 2);
    assert_eq!(refreshed.expires_at, T0 + 1800);
    assert_ne!(refreshed.token, first.token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_share_one_exchange() {
    let users = FakeUsers::new(Ok(token(1, T0 + 900)));
    let provider = Arc::new(provider(users.clone(), 100));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let provider = provider.clone();
        tasks.spawn(async move {
            provider
                .authenticate(Some(BASIC), at(T0), "r", &token_upstream(), None)
                .await
        });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap().user_id, 1);
    }
    assert_eq!(users.calls(), 1);
}

#[tokio::test]
async fn refusals_are_remembered_for_the_negative_ttl() {
    let users = FakeUsers::new(Err(FetchError::Rejected));
    let provider = provider(users.clone(), 100);
    for s in [0, 1, 4] {
        assert_eq!(
            provider
                .authenticate(Some(BASIC), at(T0 + s), "r", &token_upstream(), None)
                .await,
            Err(AuthError::Rejected)
        );
    }
    assert_eq!(users.calls(), 1);
    assert_eq!(
        provider
            .authenticate(Some(BASIC), at(T0 + 5), "r", &token_upstream(), None)
            .await,
        Err(AuthError::Rejected)
    );
    assert_eq!(users.calls(), 2);
}

#[tokio::test]
async fn unavailability_is_not_cached() {
    let users = FakeUsers::new(Err(FetchError::Unavailable {
        retry_after: Duration::from_secs(3),
        reason: "down".into(),
    }));
    let provider = provider(users.clone(), 100);
    let error = provider
        .authenticate(Some(BASIC), at(T0), "r", &token_upstream(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, AuthError::Unavailable { retry_after, .. } if retry_after == Duration::from_secs(3))
    );
    users.answer(Ok(token(1, T0 + 900)));
    assert!(
        provider
            .authenticate(Some(BASIC), at(T0), "r", &token_upstream(), None)
            .await
            .is_ok()
    );
    assert_eq!(users.calls(), 2);
}

#[tokio::test]
async fn a_token_that_does_not_verify_is_the_services_fault() {
    let users = FakeUsers::new(Ok("garbage".into()));
    let provider = provider(users, 100);
    let error = provider
        .authenticate(Some(BASIC), at(T0), "r", &token_upstream(), None)
        .await
        .unwrap_err();
    assert!(matches!(error, AuthError::Unavailable { .. }), "{error:?}");
}

#[tokio::test]
async fn capacity_zero_exchanges_every_time() {
    let users = FakeUsers::new(Ok(token(1, T0 + 900)));
    let provider = provider(users.clone(), 0);
    for _ in 0..3 {
        provider
            .authenticate(Some(BASIC), at(T0), "r", &token_upstream(), None)
            .await
            .unwrap();
    }
    assert_eq!(users.calls(), 3);
}

#[tokio::test]
async fn a_bearer_token_is_refused_before_its_nbf() {
    let users = FakeUsers::new(Err(FetchError::Rejected));
    let provider = provider(users.clone(), 100);
    let early = encode(
        &Header::new(Algorithm::HS256),
        &json!({"id": 9, "login": "user9", "nbf": T0 + 60, "exp": T0 + 900}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let header = format!("Bearer {early}");
    assert_eq!(
        provider
            .authenticate(
                Some(header.as_bytes()),
                at(T0),
                "r",
                &token_upstream(),
                None
            )
            .await,
        Err(AuthError::InvalidToken(TokenError::NotYetValid))
    );
    let identity = provider
        .authenticate(
            Some(header.as_bytes()),
            at(T0 + 60),
            "r",
            &token_upstream(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(identity.user_id, 9);
    assert_eq!(users.calls(), 0, "a Bearer token is never exchanged");
}

#[tokio::test]
async fn bearer_tokens_are_verified_locally() {
    let users = FakeUsers::new(Err(FetchError::Rejected));
    let provider = provider(users.clone(), 100);
    let header = format!("Bearer {}", token(9, T0 + 60));
    let identity = provider
        .authenticate(
            Some(header.as_bytes()),
            at(T0),
            "r",
            &token_upstream(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(identity.user_id, 9);
    let expired = provider
        .authenticate(
            Some(header.as_bytes()),
            at(T0 + 60),
            "r",
            &token_upstream(),
            None,
        )
        .await;
    assert_eq!(expired, Err(AuthError::InvalidToken(TokenError::Expired)));
    assert_eq!(
        provider
            .authenticate(None, at(T0), "r", &token_upstream(), None)
            .await,
        Err(AuthError::Missing)
    );
    assert_eq!(
        provider
            .authenticate(Some(b"Digest x"), at(T0), "r", &token_upstream(), None)
            .await,
        Err(AuthError::Malformed)
    );
    assert_eq!(users.calls(), 0);
}

#[tokio::test]
async fn cache_keys_do_not_contain_the_credential() {
    let users = FakeUsers::new(Ok(token(1, T0 + 900)));
    let provider = provider(users, 100);
    let key = provider.key_of("dXNlcjE6cGFzc3dvcmQ=");
    assert!(
        !key.windows(4)
            .any(|w| b"dXNlcjE6cGFzc3dvcmQ=".windows(4).any(|c| c == w))
    );
    // Keyed: another provider (another process) derives another key for the same input.
    let other = super::tests::provider(FakeUsers::new(Err(FetchError::Rejected)), 1);
    assert_ne!(other.key_of("dXNlcjE6cGFzc3dvcmQ="), key);
}
