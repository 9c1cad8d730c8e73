//! The one way the gateway talks to Redis: a [`Link`], one connection replaced as soon as
//! it stops answering. Its users are the response cache's Redis store (`cache::redis`) and
//! the rate-limit policies that count in Redis (`ratelimit::redis`); each names itself and
//! its metrics with [`Signals`]. [`RedisConnector`] opens the real connections; the
//! connector is a trait, so the reconnect logic has unit tests without sockets, in paused
//! time.
//!
//! Why not redis-rs's `ConnectionManager`: it reconnects only after errors it classifies as
//! a dropped connection (a response timeout, what a hung Redis gives, is not one), and its
//! reconnect retries with a backoff of 1 s, then 60 s or more, while every request waits on
//! that reconnect until its own deadline. Here the rule does not depend on the error: any
//! failure except an error *reply* (which proves the server answered) discards the
//! connection; while there is none, operations fail at once (the caller goes on without
//! Redis: uncached, or counting locally) and one background task tries again every
//! [`RETRY_EVERY`] until a connection answers (or the link is dropped, say replaced by a
//! reload: the task holds it only weakly).

use std::{
    fmt::Display,
    future::Future,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use arc_swap::{ArcSwap, ArcSwapOption};
use prometheus::{IntCounterVec, IntGaugeVec};
use redis::{AsyncConnectionConfig, Client, aio::MultiplexedConnection};
use tracing::{debug, info, warn};

/// How often a lost store is tried again. Connecting to a dead host on a LAN costs one
/// refused SYN, so trying often is cheap, and it bounds how long the gateway goes without
/// Redis (uncached, counting locally) after Redis is back.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);
/// The shortest time a connection attempt (connect and one round trip) is given.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How to open a connection to the store.
pub trait Connector: Send + Sync + 'static {
    type Connection: Clone + Send + Sync + 'static;
    type Error: Display + Send;
    /// Opens a connection and proves it answers (one round trip).
    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;
    /// Whether this error of an operation is the server's answer (an error reply), which
    /// proves the connection works. Every other error discards the connection.
    fn is_reply(error: &Self::Error) -> bool;
}

/// Why an operation did not run or did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection (the store is down or being reconnected): not tried.
    Down,
    /// No answer within the deadline.
    Timeout,
    /// The connection broke (or any other error but a reply).
    Broken,
    /// The store answered with an error; the connection stays.
    Reply,
}

impl Failure {
    pub const ALL: [Failure; 4] = [
        Failure::Down,
        Failure::Timeout,
        Failure::Broken,
        Failure::Reply,
    ];

    /// The `kind` label of the user's errors counter (`gateway_cache_store_errors_total`,
    /// `gateway_rate_limit_store_errors_total`).
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Down => "down",
            Failure::Timeout => "timeout",
            Failure::Broken => "broken",
            Failure::Reply => "reply",
        }
    }
}

/// What the admin page shows about the store's connection.
#[derive(Debug, Clone)]
pub struct Health {
    pub up: bool,
    /// When the store last went up or down.
    pub since: Instant,
    pub since_wall: SystemTime,
    /// The error that took it down, or the last failed attempt to reconnect.
    pub last_error: Option<String>,
    /// Failed connection attempts since it went down.
    pub failed_attempts: u64,
}

/// Who uses a link, for its logs and metrics.
pub struct Signals {
    /// What the logs call the store: "cache store", "rate limit store".
    pub what: &'static str,
    /// What the user does while the store is down: "serving uncached", "counting locally".
    pub meanwhile: &'static str,
    /// The first label value of both metrics, and the `store` field of the logs: the cache
    /// store's kind, a policy's name.
    pub name: Arc<str>,
    /// 1 while connected, 0 otherwise; labelled `[name]`.
    pub available: &'static IntGaugeVec,
    /// Failed operations; labelled `[name, kind]` (see [`Failure::as_str`]).
    pub errors: &'static IntCounterVec,
}

pub struct Link<K: Connector> {
    shared: Arc<Shared<K>>,
}

struct Shared<K: Connector> {
    connector: K,
    signals: Signals,
    deadline: Duration,
    connect_timeout: Duration,
    current: ArcSwapOption<Connected<K::Connection>>,
    /// Numbers each connection, so a failure discards only the connection it happened on.
    serial: AtomicU64,
    /// Set while a task is trying to connect; cleared by the task (or its drop).
    reconnecting: AtomicBool,
    health: ArcSwap<Health>,
}

struct Connected<C> {
    serial: u64,
    connection: C,
}

impl<K: Connector> Link<K> {
    /// `deadline` bounds every operation. Nothing connects until [`Link::start`] or the
    /// first operation.
    pub fn new(connector: K, signals: Signals, deadline: Duration) -> Self {
        signals
            .available
            .with_label_values(&[&*signals.name])
            .set(0);
        // Every kind of error from 0, so that the first of each is an increase.
        for failure in Failure::ALL {
            signals
                .errors
                .with_label_values(&[&*signals.name, failure.as_str()]);
        }
        Link {
            shared: Arc::new(Shared {
                connector,
                signals,
                deadline,
                connect_timeout: deadline.max(MIN_CONNECT_TIMEOUT),
                current: ArcSwapOption::empty(),
                serial: AtomicU64::new(0),
                reconnecting: AtomicBool::new(false),
                health: ArcSwap::from_pointee(Health {
                    up: false,
                    since: Instant::now(),
                    since_wall: SystemTime::now(),
                    last_error: Some("not connected yet".to_owned()),
                    failed_attempts: 0,
                }),
            }),
        }
    }

    /// Starts connecting in the background (on the current Tokio runtime), if not connected.
    pub fn start(&self) {
        self.shared.ensure_reconnecting();
    }

    pub fn health(&self) -> Health {
        (**self.shared.health.load()).clone()
    }

    /// Runs one operation on the current connection under the deadline. Without a
    /// connection it fails at once; a failure other than an error reply discards the
    /// connection and starts reconnecting.
    pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T, (Failure, String)>
    where
        F: FnOnce(K::Connection) -> Fut,
        Fut: Future<Output = Result<T, K::Error>>,
    {
        let shared = &self.shared;
        let Some(connected) = shared.current.load_full() else {
            shared.ensure_reconnecting();
            shared.count(Failure::Down);
            return Err((Failure::Down, "not connected".to_owned()));
        };
        let outcome =
            tokio::time::timeout(shared.deadline, operation(connected.connection.clone())).await;
        let (failure, message) = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) if K::is_reply(&error) => (Failure::Reply, error.to_string()),
            Ok(Err(error)) => (Failure::Broken, error.to_string()),
            Err(_) => (
                Failure::Timeout,
                format!("no answer within {:?}", shared.deadline),
            ),
        };
        shared.count(failure);
        if failure == Failure::Reply {
            let signals = &shared.signals;
            debug!(store = %signals.name, error = %message, "{} answered with an error", signals.what);
        } else {
            shared.discard(connected.serial, &message);
        }
        Err((failure, message))
    }
}

impl<K: Connector> Shared<K> {
    fn count(&self, failure: Failure) {
        self.signals
            .errors
            .with_label_values(&[&*self.signals.name, failure.as_str()])
            .inc();
    }

    /// Drops the connection `serial` (if it is still the current one) and reconnects.
    fn discard(self: &Arc<Self>, serial: u64, error: &str) {
        let current = self.current.load();
        if current.as_ref().is_some_and(|c| c.serial == serial) {
            let previous = self.current.compare_and_swap(&*current, None);
            if previous.as_ref().is_some_and(|c| c.serial == serial) {
                self.set_down(error);
                let signals = &self.signals;
                warn!(
                    store = %signals.name, %error,
                    "{} lost; {} while it reconnects", signals.what, signals.meanwhile
                );
            }
        }
        self.ensure_reconnecting();
    }

    fn set_down(&self, error: &str) {
        self.gauge().set(0);
        self.health.store(Arc::new(Health {
            up: false,
            since: Instant::now(),
            since_wall: SystemTime::now(),
            last_error: Some(error.to_owned()),
            failed_attempts: 0,
        }));
    }

    /// Spawns the reconnect task unless one runs or a connection exists. Outside a Tokio
    /// runtime it does nothing: the next operation (always on a runtime) asks again.
    fn ensure_reconnecting(self: &Arc<Self>) {
        if self.current.load().is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        // Moved into the task, so the flag is cleared however the task ends (a runtime
        // shut down under it, or before it ever ran, included): a dead task never blocks
        // the next reconnect.
        let flag = ClearOnDrop(Arc::downgrade(self));
        runtime.spawn(async move {
            Self::reconnect(&flag.0).await;
            drop(flag);
        });
    }

    /// Tries until a connection answers, or until the store is dropped (a reload replaced
    /// it): the task holds the store only during an attempt, so a replaced store's task
    /// ends instead of connecting to a server nobody uses.
    async fn reconnect(store: &Weak<Self>) {
        loop {
            let Some(shared) = store.upgrade() else {
                return;
            };
            if shared.attempt().await {
                return;
            }
            drop(shared);
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// One connection attempt (connect and a round trip, bounded); whether it succeeded.
    async fn attempt(&self) -> bool {
        {
            let attempt =
                tokio::time::timeout(self.connect_timeout, self.connector.connect()).await;
            let error = match attempt {
                Ok(Ok(connection)) => {
                    let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
                    self.current
                        .store(Some(Arc::new(Connected { serial, connection })));
                    self.set_up();
                    return true;
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {:?}", self.connect_timeout),
            };
            let health = self.health.load();
            let (store, what) = (&self.signals.name, self.signals.what);
            if health.failed_attempts == 0 {
                warn!(%store, %error, "cannot connect to the {what}; retrying");
            } else {
                debug!(%store, %error, "cannot connect to the {what}; retrying");
            }
            self.health.store(Arc::new(Health {
                last_error: Some(error),
                failed_attempts: health.failed_attempts + 1,
                ..(**health).clone()
            }));
            false
        }
    }

    fn gauge(&self) -> prometheus::IntGauge {
        self.signals
            .available
            .with_label_values(&[&*self.signals.name])
    }

    fn set_up(&self) {
        self.gauge().set(1);
        self.health.store(Arc::new(Health {
            up: true,
            since: Instant::now(),
            since_wall: SystemTime::now(),
            last_error: None,
            failed_attempts: 0,
        }));
        info!(store = %self.signals.name, "{} connected", self.signals.what);
    }
}

/// Clears the `reconnecting` flag when dropped. (A connection lost between the task's
/// success and this drop finds the flag still set and spawns nothing; the next operation,
/// finding no connection, starts a reconnect.)
struct ClearOnDrop<K: Connector>(Weak<Shared<K>>);

impl<K: Connector> Drop for ClearOnDrop<K> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.upgrade() {
            shared.reconnecting.store(false, Ordering::Release);
        }
    }
}

/// Opens a multiplexed Redis connection and PINGs it.
pub struct RedisConnector {
    client: Client,
    config: AsyncConnectionConfig,
}

impl RedisConnector {
    /// `url` was checked at config load; redis-rs's URL errors are fixed phrases ("Missing
    /// hostname"), never the URL (which may hold a password).
    pub fn new(url: &str) -> Result<Self, redis::RedisError> {
        Ok(RedisConnector {
            client: Client::open(url)?,
            // The Link's own deadline bounds every operation and connection attempt; the
            // connection needs none of its own.
            config: AsyncConnectionConfig::new(),
        })
    }
}

impl Connector for RedisConnector {
    type Connection = MultiplexedConnection;
    type Error = redis::RedisError;

    async fn connect(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await?;
        Ok(connection)
    }

    fn is_reply(error: &redis::RedisError) -> bool {
        // Only errors Redis sent carry a code (ERR, WRONGTYPE, OOM, LOADING, NOSCRIPT, ...).
        error.code().is_some()
    }
}

/// A link to Redis.
pub type RedisLink = Link<RedisConnector>;

#[cfg(test)]
mod tests;
