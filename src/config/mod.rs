//! Configuration: `gateway.yaml` is read ([`file`]), checked as a whole, and compiled into
//! the runtime types below. Every problem is collected and reported with its YAML path and
//! line, so `gateway check` shows all mistakes at once. The request path only ever sees the
//! compiled [`Config`]; it never parses a config string.

mod compile;
mod explain;
pub mod file;
mod read;
mod source_map;
mod units;

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use http::Method;

pub use explain::{explain_breaker, explain_limit, explain_limits, explain_upstream};
pub use file::{AuthMode, CacheScope, RateLimitHeaders, RateLimitKey};

use crate::{
    breaker::{BreakerPolicy, classify::StatusSet},
    tls::{CaCerts, ServerCert},
};

/// The compiled, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub upstreams: Vec<UpstreamSpec>,
    pub routes: Vec<RouteSpec>,
    pub auth: Option<AuthSettings>,
    pub cache: ResponseCacheSettings,
    /// Rate-limit policies, sorted by name; routes refer to them by index.
    pub rate_limits: Vec<RateLimitPolicy>,
    /// `auth.exchange_limits`, apart from [`AuthSettings`] so that changing a limit keeps
    /// the token cache.
    pub exchange_limits: Option<ExchangeLimitSettings>,
}

/// A compiled `rate_limits` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// The config id; the `policy` metric label.
    pub name: Arc<str>,
    pub key: RateLimitKey,
    /// As written, for explanations and headers.
    pub rate: RateSettings,
    pub burst: u32,
    pub headers: RateLimitHeaders,
    pub store: LimitStore,
    pub max_keys: u64,
}

/// `N` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSettings {
    pub count: u64,
    pub per: Duration,
}

impl RateSettings {
    /// Time one request costs: `per / count`.
    pub fn interval(&self) -> Duration {
        self.per / u32::try_from(self.count.max(1)).unwrap_or(u32::MAX)
    }
}

/// Where a policy counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitStore {
    Memory,
    Redis {
        /// May carry a password: never printed.
        url: Secret,
        timeout: Duration,
        key_prefix: String,
    },
}

/// The compiled `auth.exchange_limits` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeLimitSettings {
    pub max_in_flight_per_client: Option<u32>,
    pub failures_per_client: Option<RateSettings>,
    pub failures_per_login: Option<RateSettings>,
    pub max_keys: u64,
}

/// The compiled `cache` section: where cached responses live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseCacheSettings {
    pub store: StoreSettings,
    pub max_entries: u64,
    pub max_bytes: u64,
    pub max_entry_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    Memory,
    Redis {
        /// May carry a password: never printed.
        url: Secret,
        timeout: Duration,
        key_prefix: String,
    },
}

/// A route's compiled `cache` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteCachePolicy {
    pub ttl: Duration,
    pub scope: CacheScope,
    pub stale_if_error: Duration,
}

/// The compiled `auth` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    pub upstream: Arc<str>,
    pub path: String,
    pub secret: Secret,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub leeway: Duration,
    pub cache: TokenCacheSettings,
    /// The exchange's own bulkhead; changes apply in place (the token cache is kept).
    pub exchange_limit: ConcurrencyLimit,
}

impl AuthSettings {
    /// Whether `other` needs a new token provider (and so a new token cache): any change
    /// but the exchange's limits, which apply in place.
    pub fn same_provider(&self, other: &AuthSettings) -> bool {
        let mut same = other.clone();
        same.exchange_limit = self.exchange_limit;
        *self == same
    }
}

/// The compiled `auth.token_cache` block: how long exchanged tokens and refusals are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCacheSettings {
    /// 0 disables caching: every request exchanges its credential.
    pub capacity: u64,
    pub refresh_before_expiry: Duration,
    pub negative_ttl: Duration,
}

/// Key material: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    pub fn new(bytes: &[u8]) -> Self {
        Secret(Arc::from(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, when it is (a URL with a password, say).
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub threads: usize,
    /// Pingora's `work_stealing`: one shared runtime, or one runtime per worker thread.
    pub work_stealing: bool,
    pub shutdown_delay: Duration,
    pub grace_period: Duration,
    pub watch_interval: Duration,
    /// The client's deadline for a request header (see `proxy::header_deadline`).
    pub client_header_timeout: Duration,
    /// A buffered body's deadline; a streamed body's longest wait per read.
    pub client_body_timeout: Duration,
    /// Longest wait for the client to accept each write of a response.
    pub client_write_timeout: Duration,
    pub tls: Option<ServerTls>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The compiled `server.tls`: the TLS listener and the certificate it starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub listen: SocketAddr,
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub http2: bool,
    /// The pair as read when the config was compiled (the listener's first certificate).
    pub loaded: ServerCert,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// The bearer token every admin request but the page and `open_paths` needs; `None`:
    /// no authentication (a loopback listener, or `open: true`).
    pub token: Option<Secret>,
    /// Paths answered without the token (a subset of [`ADMIN_OPENABLE_PATHS`]).
    pub open_paths: Vec<&'static str>,
}

/// The admin paths `admin.open_paths` may list.
pub const ADMIN_OPENABLE_PATHS: [&str; 2] = ["/healthz", "/metrics"];

impl AdminSettings {
    /// Reachable from other machines and without a token: `gateway check` warns.
    pub fn is_open_beyond_loopback(&self) -> bool {
        self.token.is_none() && !self.listen.ip().is_loopback()
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// The config id; also the `upstream` metric label.
    pub name: Arc<str>,
    pub backends: Vec<BackendSpec>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub breaker: Arc<str>,
    pub policy: Arc<BreakerPolicy>,
    pub failure_statuses: StatusSet,
    pub connect_retries: u32,
    /// The bulkhead: calls each backend has at once, and the queue in front of them.
    pub limit: ConcurrencyLimit,
    /// Active health checks of every backend, if configured.
    pub health_check: Option<HealthCheckSpec>,
}

/// A compiled `health_check` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// A bulkhead's limits: how many calls at once, and the bounded wait for a free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyLimit {
    /// `None`: no limit (and no queue).
    pub max_in_flight: Option<usize>,
    /// Requests that may wait for a slot; more are refused at once.
    pub max_queued: usize,
    /// Longest wait in the queue.
    pub queue_timeout: Duration,
}

impl ConcurrencyLimit {
    /// No limit at all.
    pub const UNLIMITED: ConcurrencyLimit = ConcurrencyLimit {
        max_in_flight: None,
        max_queued: 0,
        queue_timeout: Duration::ZERO,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// The address as written in the file; the `backend` metric label.
    pub label: Arc<str>,
    /// Resolved once, at load.
    pub addr: SocketAddr,
    /// Present for an `https://` backend.
    pub tls: Option<BackendTls>,
}

/// How the gateway speaks TLS to one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// Sent as SNI and the name verified against the certificate.
    pub sni: String,
    /// `false`: any certificate is accepted (`tls.verify: false`).
    pub verify: bool,
    /// Trust anchors instead of the system's roots (`tls.ca_file`).
    pub ca: Option<CaCerts>,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Stable name for metrics and logs: `name` from the file, or the path and methods.
    pub id: Arc<str>,
    pub path: String,
    pub methods: Option<Vec<Method>>,
    /// Index into [`Config::upstreams`].
    pub upstream: usize,
    pub auth: AuthMode,
    pub cache: Option<RouteCachePolicy>,
    /// Route paths whose cache entries a successful write on this route invalidates
    /// (this route's own path first).
    pub invalidates: Vec<Arc<str>>,
    pub body: BodyPolicy,
    /// Index into [`Config::rate_limits`] of the policy counting this route.
    pub rate_limit: Option<usize>,
}

/// What a route accepts as a request body, and how it reaches the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPolicy {
    /// Largest body accepted, in bytes; larger ones get 413.
    pub max: u64,
    /// Read whole before the upstream is called (`request_buffering: on`), or streamed.
    pub buffered: bool,
}

impl BodyPolicy {
    /// The most a buffered body can be: Pingora 0.9's retry buffer (`BODY_BUF_LIMIT`),
    /// which is what sends a body read early on to the upstream. Past it the buffer is
    /// dropped and the upstream would never get the body.
    pub const MAX_BUFFERED: u64 = 64 * 1024;
}

/// One problem in the file, located by YAML path and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors.len();
        writeln!(
            f,
            "{}: {count} problem{}",
            self.file,
            if count == 1 { "" } else { "s" }
        )?;
        for error in &self.errors {
            writeln!(f, "  {}:{error}", self.file)?;
        }
        Ok(())
    }
}

impl Config {
    /// Read, validate and compile a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Config::load_with_env(path, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], with the environment given as a lookup function.
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            file: file.clone(),
            errors: vec![ConfigError {
                path: String::new(),
                line: None,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Config::parse_with_env(&text, env).map_err(|errors| ConfigErrors { file, errors })
    }

    /// Validate and compile config text, reading secrets from the process environment.
    pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        Config::parse_with_env(text, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::parse`], with the environment given as a lookup function.
    pub fn parse_with_env(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let map = source_map::SourceMap::parse(text);
        let mut shape = read::read(text, &map);
        let Some(config) = shape.config.take() else {
            return Err(shape.errors);
        };
        let compiled = compile::compile(config, &map, env);
        if shape.errors.is_empty() {
            return compiled;
        }
        // The shape's problems first; then those of the rest of the file that are not mere
        // consequences of a value taken out.
        let mut errors = shape.errors.clone();
        if let Err(more) = compiled {
            errors.extend(more.into_iter().filter(|e| !shape.explains(e)));
        }
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        Err(errors)
    }

    /// Find an upstream by its config id.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamSpec> {
        self.upstreams.iter().find(|u| &*u.name == name)
    }
}

/// Replaces the user information of every URL in a message (`redis://:pw@host/0` →
/// `redis://***@host/0`): the only secret a config file can hold is a Redis password, and
/// no config error may print it, whatever check echoed the value.
pub(crate) fn redact_userinfo(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        // Up to the last `@` of the value (quoting or a space ends it): a password with
        // an unescaped `/` or `@` is still hidden whole.
        let end = tail
            .find(|c: char| "\"'`".contains(c) || c.is_whitespace())
            .unwrap_or(tail.len());
        let (redacted, kept) = match tail[..end].rfind('@') {
            Some(at) => ("***", at),
            None => ("", 0),
        };
        out.push_str(redacted);
        rest = &tail[kept..];
    }
    out.push_str(rest);
    out
}
