//! Limits on credential exchanges (Basic → JWT at the users service), the most expensive
//! thing a client can ask of the gateway (an Argon2id verification each):
//!
//! - **in flight per client address**: a burst of a thousand concurrent guesses from one
//!   address is cut at once, before any has failed (Pingora's `pingora-limits` `Inflight`,
//!   a count-min sketch in fixed memory);
//! - **failures per client address**: refused credentials per interval (GCRA on failures
//!   only: a success costs nothing);
//! - **failures per login**: the same for one login from anywhere, keyed by an HMAC of the
//!   login under a key made at start-up, so the login itself is never held.
//!
//! Beyond any of them the request is answered 429 without an exchange. Each address has
//! its own counts, so one address's flood never queues another's login.

use std::{
    collections::hash_map::RandomState,
    hash::BuildHasher,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use aws_lc_rs::hmac;
use base64::Engine;
use pingora_limits::inflight::{Guard, Inflight};

use super::{gcra::Gcra, table::Table};
use crate::{config::ExchangeLimitSettings, metrics};

/// Why an exchange was refused; also the `reason` label of
/// `gateway_exchange_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    InFlight,
    ClientFailures,
    LoginFailures,
}

impl LimitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitReason::InFlight => "in_flight",
            LimitReason::ClientFailures => "client_failures",
            LimitReason::LoginFailures => "login_failures",
        }
    }
}

/// A refused exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub reason: LimitReason,
    pub retry_after: Duration,
}

/// A failure limit: a GCRA on failures, in a fixed table.
struct FailureLimit {
    gcra: Gcra,
    table: Arc<Table>,
}

impl FailureLimit {
    fn new(settings: crate::config::RateSettings, table: Arc<Table>) -> Self {
        FailureLimit {
            gcra: Gcra::new(
                settings.interval(),
                u32::try_from(settings.count).unwrap_or(u32::MAX),
            ),
            table,
        }
    }

    /// `Some(wait)` when the key has no failure left to spend.
    fn exhausted(&self, hash: u64, now: u64) -> Option<Duration> {
        let decision = self.gcra.decide(self.table.get(hash), now);
        (!decision.allowed).then_some(decision.retry_after)
    }

    fn charge(&self, hash: u64, now: u64) {
        let gcra = self.gcra;
        self.table
            .update(hash, now, |tat| (Some(gcra.charge(tat, now)), ()));
    }
}

pub struct ExchangeLimits {
    settings: ExchangeLimitSettings,
    in_flight: Arc<Inflight>,
    per_client: Option<FailureLimit>,
    per_login: Option<FailureLimit>,
    /// The tables, kept for the next config.
    client_table: Arc<Table>,
    login_table: Arc<Table>,
    hasher: RandomState,
    login_key: Arc<hmac::Key>,
    origin: Instant,
}

impl std::fmt::Debug for ExchangeLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeLimits")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The HMAC key when the OS gives no randomness (see `auth::FALLBACK_HASH_KEY`).
const FALLBACK_LOGIN_KEY: &[u8] = b"gateway exchange limits: no OS randomness";

impl ExchangeLimits {
    /// Limits with `settings`, keeping `previous`'s counts (and in-flight exchanges).
    pub fn new(settings: ExchangeLimitSettings, previous: Option<&ExchangeLimits>) -> Self {
        let same_size = previous.filter(|p| p.settings.max_keys == settings.max_keys);
        let client_table = same_size.map_or_else(
            || Arc::new(Table::new(settings.max_keys)),
            |p| p.client_table.clone(),
        );
        let login_table = same_size.map_or_else(
            || Arc::new(Table::new(settings.max_keys)),
            |p| p.login_table.clone(),
        );
        let login_key = previous.map_or_else(
            || {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                Arc::new(
                    hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
                        tracing::warn!(
                            "the OS gave no randomness: logins are keyed under a fixed key"
                        );
                        hmac::Key::new(hmac::HMAC_SHA256, FALLBACK_LOGIN_KEY)
                    }),
                )
            },
            |p| p.login_key.clone(),
        );
        // Each configured limit's refusals from 0, so that the first is an increase.
        let configured = [
            (
                settings.max_in_flight_per_client.is_some(),
                LimitReason::InFlight,
            ),
            (
                settings.failures_per_client.is_some(),
                LimitReason::ClientFailures,
            ),
            (
                settings.failures_per_login.is_some(),
                LimitReason::LoginFailures,
            ),
        ];
        for (_, reason) in configured.iter().filter(|(on, _)| *on) {
            metrics::EXCHANGE_LIMITED.with_label_values(&[reason.as_str()]);
        }
        ExchangeLimits {
            in_flight: previous.map_or_else(|| Arc::new(Inflight::new()), |p| p.in_flight.clone()),
            per_client: settings
                .failures_per_client
                .map(|r| FailureLimit::new(r, client_table.clone())),
            per_login: settings
                .failures_per_login
                .map(|r| FailureLimit::new(r, login_table.clone())),
            client_table,
            login_table,
            hasher: previous.map_or_else(RandomState::new, |p| p.hasher.clone()),
            login_key,
            origin: previous.map_or_else(Instant::now, |p| p.origin),
            settings,
        }
    }

    /// Admits one exchange of `basic` (the base64 part of a Basic credential) from
    /// `client` at `now`, or says why not. The permit counts the exchange in flight until
    /// dropped; [`Permit::refused`] records a refused credential.
    pub fn admit(&self, client: IpAddr, basic: &str, now: Instant) -> Result<Permit<'_>, Refused> {
        let now = nanos(now.saturating_duration_since(self.origin));
        let client_hash = self.hasher.hash_one(client);
        let login_hash = self.login_hash(basic);
        let refuse = |reason: LimitReason, retry_after: Duration| {
            metrics::EXCHANGE_LIMITED
                .with_label_values(&[reason.as_str()])
                .inc();
            Err(Refused {
                reason,
                retry_after,
            })
        };
        if let Some(wait) = self
            .per_client
            .as_ref()
            .and_then(|l| l.exhausted(client_hash, now))
        {
            return refuse(LimitReason::ClientFailures, wait);
        }
        if let (Some(limit), Some(hash)) = (&self.per_login, login_hash) {
            if let Some(wait) = limit.exhausted(hash, now) {
                return refuse(LimitReason::LoginFailures, wait);
            }
        }
        let guard = match self.settings.max_in_flight_per_client {
            None => None,
            Some(max) => {
                let (guard, count) = self.in_flight.incr(client_hash, 1);
                if count > isize::try_from(max).unwrap_or(isize::MAX) {
                    // Dropping the guard takes the count back.
                    drop(guard);
                    // An exchange takes tens of milliseconds: a second is a fair wait.
                    return refuse(LimitReason::InFlight, Duration::from_secs(1));
                }
                Some(guard)
            }
        };
        Ok(Permit {
            limits: self,
            client_hash,
            login_hash,
            _guard: guard,
        })
    }

    /// HMAC of the login (the part before `:` of the decoded credential); `None` when the
    /// credential is not readable Basic (the users service refuses it anyway).
    fn login_hash(&self, basic: &str) -> Option<u64> {
        self.per_login.as_ref()?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .ok()?;
        let login = decoded.split(|b| *b == b':').next()?;
        let tag = hmac::sign(&self.login_key, login);
        let mut first = [0u8; 8];
        first.copy_from_slice(tag.as_ref().get(..8)?);
        Some(u64::from_le_bytes(first))
    }

    fn now(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.origin))
    }
}

/// An admitted exchange.
pub struct Permit<'a> {
    limits: &'a ExchangeLimits,
    client_hash: u64,
    login_hash: Option<u64>,
    _guard: Option<Guard>,
}

impl Permit<'_> {
    /// The users service refused the credential: one failure for the address and the login.
    pub fn refused(&self, now: Instant) {
        let now = self.limits.now(now);
        if let Some(limit) = &self.limits.per_client {
            limit.charge(self.client_hash, now);
        }
        if let (Some(limit), Some(hash)) = (&self.limits.per_login, self.login_hash) {
            limit.charge(hash, now);
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateSettings;

    fn limits() -> ExchangeLimits {
        ExchangeLimits::new(
            ExchangeLimitSettings {
                max_in_flight_per_client: Some(2),
                failures_per_client: Some(RateSettings {
                    count: 3,
                    per: Duration::from_secs(60),
                }),
                failures_per_login: Some(RateSettings {
                    count: 2,
                    per: Duration::from_secs(60),
                }),
                max_keys: 1000,
            },
            None,
        )
    }

    fn basic(login: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{login}:{password}"))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn in_flight_exchanges_are_capped_per_address() {
        let limits = limits();
        let now = Instant::now();
        let first = limits.admit(ip(2), &basic("a", "1"), now).unwrap();
        let _second = limits.admit(ip(2), &basic("b", "1"), now).unwrap();
        let third = limits.admit(ip(2), &basic("c", "1"), now);
        assert_eq!(third.err().map(|r| r.reason), Some(LimitReason::InFlight));
        assert!(
            limits.admit(ip(3), &basic("d", "1"), now).is_ok(),
            "another address is not affected"
        );
        drop(first);
        assert!(limits.admit(ip(2), &basic("e", "1"), now).is_ok());
    }

    #[test]
    fn refused_credentials_run_out_per_address_and_per_login() {
        let limits = limits();
        let now = Instant::now();
        for login in ["a", "b", "c"] {
            limits
                .admit(ip(2), &basic(login, "x"), now)
                .unwrap()
                .refused(now);
        }
        let refused = limits.admit(ip(2), &basic("d", "x"), now).err().unwrap();
        assert_eq!(refused.reason, LimitReason::ClientFailures);
        assert_eq!(refused.retry_after, Duration::from_secs(20));
        // One login guessed from two addresses.
        limits
            .admit(ip(4), &basic("victim", "x"), now)
            .unwrap()
            .refused(now);
        limits
            .admit(ip(5), &basic("victim", "y"), now)
            .unwrap()
            .refused(now);
        let refused = limits
            .admit(ip(6), &basic("victim", "z"), now)
            .err()
            .unwrap();
        assert_eq!(refused.reason, LimitReason::LoginFailures);
        // Time heals.
        let later = now + Duration::from_secs(30);
        assert!(limits.admit(ip(6), &basic("victim", "z"), later).is_ok());
        assert!(limits.admit(ip(2), &basic("d", "x"), later).is_ok());
    }

    #[test]
    fn successes_cost_nothing() {
        let limits = limits();
        let now = Instant::now();
        for _ in 0..100 {
            drop(limits.admit(ip(2), &basic("a", "right"), now).unwrap());
        }
    }
}
