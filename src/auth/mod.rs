//! Authentication at the gateway: `request_filter` asks [`TokenProvider::authenticate`] who
//! the caller is. A Bearer token is verified locally; Basic credentials are exchanged for a
//! JWT at the users service (through that upstream's breaker, see [`exchange`]) and the
//! answer is cached under a keyed hash of the credential, never the credential itself.
//! Concurrent requests with the same credential share one exchange; a wrong password is
//! remembered briefly so a storm of them does not become a storm of password hashing.

mod credentials;
pub mod exchange;
pub mod jwt;

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use aws_lc_rs::hmac;
use moka::{
    Expiry,
    future::Cache,
    ops::compute::{CompResult, Op},
};
use prometheus::IntCounter;

pub use self::{
    credentials::{Credentials, CredentialsError},
    jwt::{Identity, JwtVerifier, TokenError},
};
use crate::{
    config::TokenCacheSettings,
    metrics,
    ratelimit::exchange::{ExchangeLimits, LimitReason, Permit},
    upstream::Upstream,
};

/// What the users service said about a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// It refused the credential (401): the client's mistake.
    #[error("the credential was refused")]
    Rejected,
    /// It could not be asked, or failed: the service's trouble.
    #[error("the users service is unavailable: {reason}")]
    Unavailable {
        retry_after: Duration,
        reason: String,
    },
    /// Not asked: the exchange's (or the users upstream's) concurrency limit was reached.
    #[error("too many credential exchanges at once")]
    Overloaded { retry_after: Duration },
}

/// Where tokens come from. The real source calls the users service over HTTP
/// ([`exchange::UsersTokenSource`]); unit tests substitute a counting fake.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// Exchanges a Basic credential (the base64 part) for a JWT at `users`, the token
    /// upstream of the config the request runs under.
    async fn fetch(
        &self,
        users: &Arc<Upstream>,
        basic: &str,
        request_id: &str,
    ) -> Result<String, FetchError>;
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("unreadable or unsupported Authorization header")]
    Malformed,
    #[error("the credentials were refused")]
    Rejected,
    #[error("invalid token: {0}")]
    InvalidToken(TokenError),
    #[error("{reason}")]
    Unavailable {
        retry_after: Duration,
        reason: String,
    },
    /// Too many exchanges at once: not asked, try again shortly.
    #[error("too many credential exchanges at once")]
    Overloaded { retry_after: Duration },
    /// An exchange limit refused the attempt before any exchange.
    #[error("too many credential attempts ({})", reason.as_str())]
    Limited {
        retry_after: Duration,
        reason: LimitReason,
    },
}

#[derive(Debug, Clone)]
enum Entry {
    Token {
        identity: Identity,
        /// Unix seconds after which the entry is refreshed rather than served.
        refresh_at: u64,
    },
    Rejected {
        until: SystemTime,
    },
}

/// A cache key: HMAC-SHA256 of the credential under a key made at start-up, so neither the
/// credential nor a plain hash of it (guessable offline) is ever stored.
type CredentialKey = [u8; 32];

/// The HMAC key when the OS cannot supply a random one (generation fails only then). It is
/// fixed and public, so the cache would hold plain hashes of credentials: worse than a
/// random key, still never the credential, and better than refusing to start. Logged.
const FALLBACK_HASH_KEY: &[u8] = b"gateway token cache: no OS randomness";

pub struct TokenProvider {
    /// Name of the service tokens come from, for messages.
    service: Arc<str>,
    verifier: JwtVerifier,
    source: Arc<dyn TokenSource>,
    settings: TokenCacheSettings,
    hash_key: hmac::Key,
    cache: Cache<CredentialKey, Entry>,
    series: Series,
}

/// The `outcome`s of `gateway_auth_requests_total` ([`TokenProvider::fetch`]'s).
const AUTH_OUTCOMES: [&str; 5] = ["ok", "rejected", "unavailable", "invalid_token", "shed"];

/// The provider's series of `gateway_token_cache_total` and `gateway_auth_requests_total`,
/// made at 0 with it: a counter series born at 1 reads as no increase to Prometheus's
/// `increase()` and `rate()`, hiding the first refusal or the first outage.
struct Series {
    hit: IntCounter,
    miss: IntCounter,
    negative_hit: IntCounter,
    /// By [`AUTH_OUTCOMES`].
    outcomes: [IntCounter; AUTH_OUTCOMES.len()],
}

impl Series {
    fn new() -> Self {
        let cache = |result| metrics::TOKEN_CACHE.with_label_values(&[result]);
        Series {
            hit: cache("hit"),
            miss: cache("miss"),
            negative_hit: cache("negative_hit"),
            outcomes: AUTH_OUTCOMES
                .map(|outcome| metrics::AUTH_REQUESTS.with_label_values(&[outcome])),
        }
    }

    fn count_outcome(&self, outcome: &str) {
        match AUTH_OUTCOMES.iter().position(|o| *o == outcome) {
            Some(index) => self.outcomes[index].inc(),
            None => metrics::AUTH_REQUESTS.with_label_values(&[outcome]).inc(),
        }
    }
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("settings", &self.settings)
            .field("entries", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

/// Evicts entries at their own deadline (tokens at `exp`, refusals after `negative_ttl`),
/// measured from insertion. Freshness itself is judged with the injected clock on read.
struct EntryExpiry;

impl Expiry<CredentialKey, Entry> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &CredentialKey,
        entry: &Entry,
        _created: Instant,
    ) -> Option<Duration> {
        let deadline = match entry {
            Entry::Token { identity, .. } => {
                SystemTime::UNIX_EPOCH + Duration::from_secs(identity.expires_at)
            }
            Entry::Rejected { until } => *until,
        };
        Some(
            deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }
}

impl TokenProvider {
    pub fn new(
        service: Arc<str>,
        verifier: JwtVerifier,
        source: Arc<dyn TokenSource>,
        settings: TokenCacheSettings,
    ) -> Self {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let hash_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            tracing::warn!(
                "the OS gave no randomness: the token cache keys credentials under a fixed key"
            );
            hmac::Key::new(hmac::HMAC_SHA256, FALLBACK_HASH_KEY)
        });
        TokenProvider {
            service,
            verifier,
            source,
            settings,
            hash_key,
            cache: Cache::builder()
                .max_capacity(settings.capacity)
                .expire_after(EntryExpiry)
                .build(),
            series: Series::new(),
        }
    }

    /// Who sent this `Authorization` header, as of `now`.
    /// `users` is the token upstream of the request's config (its breakers guard the
    /// exchange); `limits`, the exchange limits and the client's address, are asked before
    /// any exchange (a cached answer needs no exchange and is never limited).
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        now: SystemTime,
        request_id: &str,
        users: &Arc<Upstream>,
        limits: Option<(&ExchangeLimits, IpAddr)>,
    ) -> Result<Identity, AuthError> {
        match credentials::parse(authorization) {
            Err(CredentialsError::Missing) => Err(AuthError::Missing),
            Err(CredentialsError::Malformed | CredentialsError::UnsupportedScheme) => {
                Err(AuthError::Malformed)
            }
            Ok(Credentials::Bearer(token)) => self
                .verifier
                .verify(token, now)
                .map_err(AuthError::InvalidToken),
            Ok(Credentials::Basic(basic)) => {
                self.exchange(basic, now, request_id, users, limits).await
            }
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    /// Number of cached credentials (tokens and refusals).
    pub fn cached_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    async fn exchange(
        &self,
        basic: &str,
        now: SystemTime,
        request_id: &str,
        users: &Arc<Upstream>,
        limits: Option<(&ExchangeLimits, IpAddr)>,
    ) -> Result<Identity, AuthError> {
        if self.settings.capacity == 0 {
            let permit = admit(limits, basic)?;
            self.series.miss.inc();
            let entry = self.fetch(basic, now, request_id, users).await;
            if let (Some(permit), Ok(Entry::Rejected { .. })) = (&permit, &entry) {
                permit.refused(Instant::now());
            }
            return entry.and_then(into_identity);
        }
        let key = self.key_of(basic);
        if let Some(entry) = self.cache.get(&key).await {
            if let Some(result) = self.serve(&entry, now) {
                return result;
            }
        }

        // Concurrent callers for one key run this one at a time: the first fetches, the
        // rest find its fresh entry and are served from it.
        let mut outcome: Option<Result<Identity, AuthError>> = None;
        let computed = self
            .cache
            .entry(key)
            .and_compute_with(|existing| {
                let fresh = existing.as_ref().and_then(|e| self.serve(e.value(), now));
                let outcome = &mut outcome;
                async move {
                    if let Some(result) = fresh {
                        *outcome = Some(result);
                        return Op::Nop;
                    }
                    // Only the caller that exchanges holds a permit (not those waiting for
                    // it), for as long as the exchange lasts: what the in-flight cap counts.
                    let permit = match admit(limits, basic) {
                        Ok(permit) => permit,
                        Err(refused) => {
                            *outcome = Some(Err(refused));
                            return Op::Nop;
                        }
                    };
                    self.series.miss.inc();
                    match self.fetch(basic, now, request_id, users).await {
                        Ok(entry) => {
                            if let (Some(permit), Entry::Rejected { .. }) = (&permit, &entry) {
                                permit.refused(Instant::now());
                            }
                            Op::Put(entry)
                        }
                        Err(error) => {
                            *outcome = Some(Err(error));
                            Op::Remove
                        }
                    }
                }
            })
            .await;
        if let Some(result) = outcome {
            return result;
        }
        match computed {
            CompResult::Inserted(entry) | CompResult::ReplacedWith(entry) => {
                into_identity(entry.into_value())
            }
            _ => Err(AuthError::Unavailable {
                retry_after: Duration::from_secs(1),
                reason: "token cache update lost".to_owned(),
            }),
        }
    }

    /// Serves a cached entry if it is still fresh at `now`, counting the hit.
    fn serve(&self, entry: &Entry, now: SystemTime) -> Option<Result<Identity, AuthError>> {
        match entry {
            Entry::Token {
                identity,
                refresh_at,
            } if unix(now) < *refresh_at => {
                self.series.hit.inc();
                Some(Ok(identity.clone()))
            }
            Entry::Rejected { until } if now < *until => {
                self.series.negative_hit.inc();
                Some(Err(AuthError::Rejected))
            }
            _ => None,
        }
    }

    /// One exchange at the source, turned into a cache entry: a verified token, or a
    /// refusal to remember. Unavailability is not cached.
    async fn fetch(
        &self,
        basic: &str,
        now: SystemTime,
        request_id: &str,
        users: &Arc<Upstream>,
    ) -> Result<Entry, AuthError> {
        let started = Instant::now();
        let result = self.source.fetch(users, basic, request_id).await;
        metrics::AUTH_DURATION.observe(started.elapsed().as_secs_f64());
        let (outcome, entry) = match result {
            Ok(token) => match self.verifier.verify(token.trim(), now) {
                Ok(identity) => {
                    let refresh_at = identity
                        .expires_at
                        .saturating_sub(self.settings.refresh_before_expiry.as_secs());
                    (
                        "ok",
                        Ok(Entry::Token {
                            identity,
                            refresh_at,
                        }),
                    )
                }
                Err(error) => (
                    "invalid_token",
                    Err(AuthError::Unavailable {
                        retry_after: Duration::from_secs(1),
                        reason: format!(
                            "the users service issued a token that does not verify ({error})"
                        ),
                    }),
                ),
            },
            Err(FetchError::Rejected) => (
                "rejected",
                Ok(Entry::Rejected {
                    until: now + self.settings.negative_ttl,
                }),
            ),
            Err(FetchError::Unavailable {
                retry_after,
                reason,
            }) => (
                "unavailable",
                Err(AuthError::Unavailable {
                    retry_after,
                    reason,
                }),
            ),
            Err(FetchError::Overloaded { retry_after }) => {
                ("shed", Err(AuthError::Overloaded { retry_after }))
            }
        };
        self.series.count_outcome(outcome);
        entry
    }

    fn key_of(&self, basic: &str) -> CredentialKey {
        let tag = hmac::sign(&self.hash_key, basic.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(&tag.as_ref()[..32]);
        key
    }
}

/// Asks the exchange limits, if any, for one exchange.
fn admit<'l>(
    limits: Option<(&'l ExchangeLimits, IpAddr)>,
    basic: &str,
) -> Result<Option<Permit<'l>>, AuthError> {
    let Some((limits, client)) = limits else {
        return Ok(None);
    };
    limits
        .admit(client, basic, Instant::now())
        .map(Some)
        .map_err(|refused| AuthError::Limited {
            retry_after: refused.retry_after,
            reason: refused.reason,
        })
}

fn into_identity(entry: Entry) -> Result<Identity, AuthError> {
    match entry {
        Entry::Token { identity, .. } => Ok(identity),
        Entry::Rejected { .. } => Err(AuthError::Rejected),
    }
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[cfg(test)]
mod tests;
