//! The shape of `gateway.yaml`, exactly as written by people. Every field's `///` doc is the
//! reference for that key (mirrored in `docs/configuration.md`). Nothing here is used on the
//! request path: `super::compile` turns it into runtime types once.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::units::{ByteSize, HumanDuration, OnOff, Percent, Rate, Switch};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The proxy listener and its runtime.
    #[serde(default)]
    pub server: ServerConfig,
    /// The admin listener (metrics, health, breaker state).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Named upstream services, each a pool of backend addresses.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Named circuit-breaker policies. `default` is built in and may be overridden.
    #[serde(default)]
    pub breakers: BTreeMap<String, BreakerConfig>,
    /// The response cache's store, shared by every route with a `cache` block.
    #[serde(default)]
    pub cache: CacheStoreConfig,
    /// Credential exchange (Basic -> JWT) for routes with `auth: required`.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// The route table; see `docs/configuration.md` for matching rules.
    pub routes: Vec<RouteConfig>,
    /// Named rate-limit policies, attached to routes by `routes[].rate_limit`. A policy
    /// named `default` applies to every route that names none. Default: none.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimitConfig>,
}

/// One rate-limit policy: who is counted, how fast, and where the counts live.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// What is counted: `client` (default: the client address, see
    /// `server.trusted_proxies`), `user` (the authenticated user id; unauthenticated
    /// requests are counted by address) or `route` (everyone together).
    #[serde(default)]
    pub key: RateLimitKey,
    /// Sustained rate, `N/period`: `100/s`, `20/m`, `5/10s`.
    pub rate: Rate,
    /// Requests a key may make at once after being idle. Default: the rate's `N`.
    #[serde(default)]
    pub burst: Option<i64>,
    /// `limited` (default): `RateLimit-Policy` and `RateLimit` headers on 429 answers
    /// only. `always`: on every response of the routes using the policy.
    #[serde(default)]
    pub headers: RateLimitHeaders,
    /// `memory` (default): counted in this process. `redis`: counted in Redis, shared by
    /// every replica; counted locally while Redis is unreachable.
    #[serde(default)]
    pub store: CacheStoreKind,
    /// Most keys the memory table holds (also the local fallback of `store: redis`);
    /// 17 bytes each. Default 100000.
    #[serde(default = "default_rate_limit_keys")]
    pub max_keys: i64,
    /// Redis server for `store: redis`. Default `redis://127.0.0.1:6379/0`.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Environment variable holding the Redis URL instead of `redis_url` (never printed).
    /// Default: none.
    #[serde(default)]
    pub redis_url_env: Option<String>,
    /// Longest a Redis decision may take before the request is counted locally. Default 50ms.
    #[serde(default = "default_redis_timeout")]
    pub redis_timeout: HumanDuration,
    /// Prefix of the policy's Redis keys. Default `gateway:ratelimit:`.
    #[serde(default = "default_rate_limit_prefix")]
    pub key_prefix: String,
}

/// What a rate-limit policy counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    #[default]
    Client,
    User,
    Route,
}

/// When the IETF `RateLimit` headers are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitHeaders {
    #[default]
    Limited,
    Always,
}

/// Limits on credential exchanges, per client address and per login.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeLimitsConfig {
    /// Exchanges one client address may have in flight at the users service; beyond,
    /// 429 at once. `off` disables. Default 4.
    #[serde(default = "default_exchange_in_flight")]
    pub max_in_flight_per_client: Switch<i64>,
    /// Refused credentials (401) one client address may cause, `N/period`; beyond, 429
    /// without asking the users service. `off` disables. Default 20/m.
    #[serde(default = "default_failures_per_client")]
    pub failures_per_client: Switch<Rate>,
    /// Refused credentials for one login, from any address (keyed by an HMAC of the
    /// login). `off` disables. Default 5/m.
    #[serde(default = "default_failures_per_login")]
    pub failures_per_login: Switch<Rate>,
    /// Most addresses and most logins tracked (17 bytes each). Default 100000.
    #[serde(default = "default_rate_limit_keys")]
    pub max_keys: i64,
}

impl Default for ExchangeLimitsConfig {
    fn default() -> Self {
        ExchangeLimitsConfig {
            max_in_flight_per_client: default_exchange_in_flight(),
            failures_per_client: default_failures_per_client(),
            failures_per_login: default_failures_per_login(),
            max_keys: default_rate_limit_keys(),
        }
    }
}

/// `Debug` by hand: `redis_url` may hold a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheStoreConfig {
    /// `memory` (default) or `redis`.
    #[serde(default)]
    pub store: CacheStoreKind,
    /// Redis server for `store: redis`. Default `redis://127.0.0.1:6379/0`.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Environment variable holding the Redis server's URL instead of `redis_url`, for a
    /// URL with a password (it then stays out of the file; it is never printed). Default:
    /// none.
    #[serde(default)]
    pub redis_url_env: Option<String>,
    /// Longest a single Redis operation may take before the request goes on uncached.
    /// Default 50ms.
    #[serde(default = "default_redis_timeout")]
    pub redis_timeout: HumanDuration,
    /// Prefix of every Redis key the gateway writes. Default `gateway:`.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Most entries the memory store holds. Default 100000.
    #[serde(default = "default_max_entries")]
    pub max_entries: i64,
    /// Most body bytes the memory store holds. Default 64MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Larger responses are passed through uncached. Default 1MiB.
    #[serde(default = "default_max_entry_bytes")]
    pub max_entry_bytes: ByteSize,
}

impl std::fmt::Debug for CacheStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheStoreConfig")
            .field("store", &self.store)
            .field("redis_url", &self.redis_url.as_ref().map(|_| "***"))
            .field("redis_url_env", &self.redis_url_env)
            .field("redis_timeout", &self.redis_timeout)
            .field("key_prefix", &self.key_prefix)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("max_entry_bytes", &self.max_entry_bytes)
            .finish()
    }
}

impl Default for CacheStoreConfig {
    fn default() -> Self {
        CacheStoreConfig {
            store: CacheStoreKind::default(),
            redis_url: None,
            redis_url_env: None,
            redis_timeout: default_redis_timeout(),
            key_prefix: default_key_prefix(),
            max_entries: default_max_entries(),
            max_bytes: default_max_bytes(),
            max_entry_bytes: default_max_entry_bytes(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStoreKind {
    #[default]
    Memory,
    Redis,
}

/// A route's caching policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheConfig {
    /// How long a stored response is served as fresh.
    pub ttl: HumanDuration,
    /// `user` (default): one entry per authenticated user. `shared`: one entry for everyone
    /// allowed to call the route.
    #[serde(default)]
    pub scope: CacheScope,
    /// How long after expiry an entry may still answer when the upstream fails or its
    /// breaker is open. Default 0s (never).
    #[serde(default = "default_stale_if_error")]
    pub stale_if_error: HumanDuration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheScope {
    #[default]
    User,
    Shared,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Where Basic credentials are exchanged for a token.
    pub token_endpoint: TokenEndpointConfig,
    /// How tokens are verified.
    #[serde(default)]
    pub jwt: JwtConfig,
    /// The cache of exchanged tokens.
    #[serde(default)]
    pub token_cache: TokenCacheConfig,
    /// Limits on exchanges per client address and per login.
    #[serde(default)]
    pub exchange_limits: ExchangeLimitsConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEndpointConfig {
    /// The upstream (and so the breaker) the exchange goes through.
    pub upstream: String,
    /// Path of the exchange, called with GET and the client's Basic credential. Default `/auth`.
    #[serde(default = "default_token_path")]
    pub path: String,
    /// Most exchanges in flight at once (`off`: no limit of their own). Default: what the
    /// users service can verify within half its `read_timeout` on one core at ~35 ms per
    /// Argon2id verification (`read_timeout / 70ms`: 71 for 5s).
    #[serde(default)]
    pub max_in_flight: Option<Switch<i64>>,
    /// Exchanges that may wait for a slot; more are answered 503 at once. Default: as many
    /// as `max_in_flight`.
    #[serde(default)]
    pub max_queued: Option<i64>,
    /// Longest an exchange waits for a slot. Default 1s.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Environment variable holding the HMAC secret (at least 32 bytes). Default `JWT_SECRET`.
    #[serde(default = "default_secret_env")]
    pub secret_env: String,
    /// Accepted algorithms: HS256, HS384, HS512. Default [HS256].
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated when checking `exp` and `nbf`. Default 5s.
    #[serde(default = "default_leeway")]
    pub leeway: HumanDuration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            secret_env: default_secret_env(),
            algorithms: default_algorithms(),
            leeway: default_leeway(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCacheConfig {
    /// Most credentials cached at once; 0 disables the cache. Default 100000.
    #[serde(default = "default_token_capacity")]
    pub capacity: i64,
    /// A cached token is exchanged again this long before its `exp`. Default 30s.
    #[serde(default = "default_refresh_before_expiry")]
    pub refresh_before_expiry: HumanDuration,
    /// How long a refused credential is answered 401 without asking again. Default 5s.
    #[serde(default = "default_negative_ttl")]
    pub negative_ttl: HumanDuration,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        TokenCacheConfig {
            capacity: default_token_capacity(),
            refresh_before_expiry: default_refresh_before_expiry(),
            negative_ttl: default_negative_ttl(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the proxy listens on. Default `0.0.0.0:8888`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Worker threads of the proxy service. Default 2.
    #[serde(default = "default_threads")]
    pub threads: i64,
    /// Whether the worker threads share one work-stealing runtime (`true`) or each run
    /// its own, keeping a connection on the thread that accepted it (`false`: less
    /// cross-thread bookkeeping per request, no rebalancing of busy connections).
    /// Default true.
    #[serde(default = "default_true")]
    pub work_stealing: bool,
    /// On SIGTERM, how long the gateway keeps accepting and serving new requests, with
    /// the admin `/healthz` answering 503 "draining", before it closes its listeners (time
    /// for a load balancer to stop sending it traffic). Default 0s.
    #[serde(default = "default_shutdown_delay")]
    pub shutdown_delay: HumanDuration,
    /// On SIGTERM, after `shutdown_delay`, how long in-flight requests get to finish.
    /// Default 5s.
    #[serde(default = "default_grace_period")]
    pub grace_period: HumanDuration,
    /// How often the config file is checked for changes; `0s` disables watching (SIGHUP
    /// still reloads). Default 1s.
    #[serde(default = "default_watch_interval")]
    pub watch_interval: HumanDuration,
    /// Largest request body a route accepts unless it sets its own `max_body`; larger ones
    /// get 413. At most 64KiB while the route buffers (Pingora's retry buffer). Default 64KiB.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Longest a client may take to send a request's header, from the first byte (from
    /// the connection's start for its first request); then the connection is closed.
    /// Default 10s.
    #[serde(default = "default_client_timeout")]
    pub client_header_timeout: HumanDuration,
    /// Longest a client may take to send a buffered request body whole (on a streaming
    /// route: the longest wait for each piece of it); then 408. Default 10s.
    #[serde(default = "default_client_timeout")]
    pub client_body_timeout: HumanDuration,
    /// Longest wait for a client to accept each write of a response; then the response is
    /// abandoned and the connection closed. Default 60s.
    #[serde(default = "default_client_write_timeout")]
    pub client_write_timeout: HumanDuration,
    /// A TLS listener beside `listen` (HTTPS, with HTTP/2 by ALPN). Default: none.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// Proxies (CIDRs such as `10.0.0.0/8`, or single addresses) whose `X-Forwarded-For`
    /// is believed when telling the client's address. Default: none (the peer address).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// `server.tls`: the TLS listener. The certificate and key files are watched like the
/// config file (every `server.watch_interval`, and on SIGHUP): a renewed pair is served
/// from the next handshake on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// Address the TLS listener binds. Default `0.0.0.0:8443`.
    #[serde(default = "default_tls_listen")]
    pub listen: String,
    /// PEM file with the certificate chain, the server's certificate first.
    pub certificate: String,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// Offer HTTP/2 by ALPN (`h2`, then `http/1.1`); `false` offers HTTP/1.1 only.
    /// Default true.
    #[serde(default = "default_true")]
    pub http2: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            threads: default_threads(),
            work_stealing: true,
            shutdown_delay: default_shutdown_delay(),
            grace_period: default_grace_period(),
            watch_interval: default_watch_interval(),
            tls: None,
            max_body: default_max_body(),
            client_header_timeout: default_client_timeout(),
            client_body_timeout: default_client_timeout(),
            client_write_timeout: default_client_write_timeout(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener. Default `127.0.0.1:9091`.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Name of the environment variable holding the admin bearer token (at least 16
    /// bytes). When set, every admin request but the page itself and `open_paths` needs
    /// `Authorization: Bearer <token>` (or the page's session cookie). Required when
    /// `listen` is not a loopback address, unless `open: true`. Default: none.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Serve a non-loopback admin listener without a token, on purpose (`gateway check`
    /// warns). Default `false`.
    #[serde(default)]
    pub open: bool,
    /// Paths answered without the token, for probes and scrapers: any of `/healthz` and
    /// `/metrics`. Default `[/healthz]`.
    #[serde(default = "default_admin_open_paths")]
    pub open_paths: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            token_env: None,
            open: false,
            open_paths: default_admin_open_paths(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `host:port` (or `http://host:port`) of each backend, `https://host:port` for one
    /// reached over TLS; names are resolved once, at load.
    pub backends: Vec<String>,
    /// Time allowed to establish a TCP connection. Default 1s.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Longest wait for each read from the backend (headers or a body chunk). Default 5s.
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
    /// Longest wait for each write to the backend. Default 5s.
    #[serde(default = "default_read_timeout")]
    pub write_timeout: HumanDuration,
    /// How long an idle pooled connection is kept. Default 60s.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Name of the breaker policy guarding each backend. Default `default`.
    #[serde(default = "default_breaker")]
    pub breaker: String,
    /// How many other backends a request may try after a connection failure. Default 1.
    #[serde(default = "default_connect_retries")]
    pub connect_retries: i64,
    /// Most calls each backend of this upstream has at once (a bulkhead); `off` for no
    /// limit. Default off.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: Switch<i64>,
    /// Requests that may wait for a free slot when every backend is at `max_in_flight`;
    /// beyond that a request is answered 503 at once. Default 0.
    #[serde(default)]
    pub max_queued: i64,
    /// Longest a request waits in that queue before it is answered 503. Default 1s.
    #[serde(default = "default_queue_timeout")]
    pub queue_timeout: HumanDuration,
    /// Active health checks of every backend. Default: none.
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    /// How the `https://` backends are verified. Default: against the system's roots,
    /// for the backend's host name.
    #[serde(default)]
    pub tls: Option<UpstreamTlsConfig>,
}

/// An HTTP probe sent to each backend of an upstream in the background.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// Path probed with GET; a 2xx answer passes. Default `/healthz`.
    #[serde(default = "default_health_path")]
    pub path: String,
    /// Time between the end of one check and the start of the next. Default 5s.
    #[serde(default = "default_health_interval")]
    pub interval: HumanDuration,
    /// A check without a complete answer within this fails. Default 1s.
    #[serde(default = "default_health_timeout")]
    pub timeout: HumanDuration,
    /// Checks that must pass in a row to bring an ejected backend back. Default 2.
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: i64,
    /// Checks that must fail in a row to eject a backend. Default 3.
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: i64,
}

/// `upstreams.<name>.tls`: verification of the upstream's `https://` backends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM file of the CA certificates to trust instead of the system's roots. Default:
    /// none (the system's roots).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Name sent as SNI and checked against the certificate. Default: each backend's host
    /// as written (a name, or an IP address checked against the certificate's IP SANs).
    #[serde(default)]
    pub sni: Option<String>,
    /// Verify the certificate (chain, dates, name). `false` accepts any certificate: for
    /// tests only. Default true.
    #[serde(default = "default_true")]
    pub verify: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Trip after this many failures in a row; `off` disables. Default 5.
    #[serde(default = "default_consecutive_failures")]
    pub consecutive_failures: Switch<i64>,
    /// Trip when this share of the window's calls failed; `off` disables. Default 50%.
    #[serde(default = "default_failure_rate")]
    pub failure_rate: Switch<Percent>,
    /// Rates are judged only once the window holds this many calls. Default 10.
    #[serde(default = "default_minimum_calls")]
    pub minimum_calls: i64,
    /// Length of the sliding window the rates are computed over. Default 30s.
    #[serde(default = "default_window")]
    pub window: HumanDuration,
    /// A call slower than this (to the response header) is slow. Default 2s.
    #[serde(default = "default_slow_call_duration")]
    pub slow_call_duration: HumanDuration,
    /// Trip when this share of the window's calls was slow; `off` disables. Default 100%.
    #[serde(default = "default_slow_call_rate")]
    pub slow_call_rate: Switch<Percent>,
    /// First open period. Default 10s.
    #[serde(default = "default_open_for")]
    pub open_for: HumanDuration,
    /// The open period doubles on each re-trip from half-open, up to this. Default 5m.
    #[serde(default = "default_max_open_for")]
    pub max_open_for: HumanDuration,
    /// Trial calls admitted when half-open; all must succeed to close. Default 3.
    #[serde(default = "default_half_open_probes")]
    pub half_open_probes: i64,
    /// Upstream statuses that count as failures. Default [500, 502, 503, 504].
    #[serde(default = "default_failure_statuses")]
    pub failure_statuses: Vec<i64>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            consecutive_failures: default_consecutive_failures(),
            failure_rate: default_failure_rate(),
            minimum_calls: default_minimum_calls(),
            window: default_window(),
            slow_call_duration: default_slow_call_duration(),
            slow_call_rate: default_slow_call_rate(),
            open_for: default_open_for(),
            max_open_for: default_max_open_for(),
            half_open_probes: default_half_open_probes(),
            failure_statuses: default_failure_statuses(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in metrics and logs. Default: the path, prefixed by the methods when they
    /// are filtered (`POST /user`).
    #[serde(default)]
    pub name: Option<String>,
    /// Path prefix, matched by whole segments (`/user` matches `/user/search`, not `/users`).
    pub path: String,
    /// Methods this route accepts; absent means all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Name of the upstream that serves it.
    pub upstream: String,
    /// Cache GET/HEAD responses of this route.
    #[serde(default)]
    pub cache: Option<RouteCacheConfig>,
    /// Paths of other routes whose cached entries a successful write here invalidates.
    #[serde(default)]
    pub invalidates: Vec<String>,
    /// `required` (default): the caller must authenticate (Basic, exchanged for a JWT, or
    /// Bearer) and the upstream receives `Authorization: Bearer` and `X-User-*`.
    /// `none`: the request passes through untouched.
    #[serde(default)]
    pub auth: AuthMode,
    /// Largest request body this route accepts. Default: `server.max_body`.
    #[serde(default)]
    pub max_body: Option<ByteSize>,
    /// `on` (default): the gateway reads the whole body before it calls the upstream.
    /// `off`: the body streams to the upstream as it arrives (large uploads).
    #[serde(default = "default_request_buffering")]
    pub request_buffering: OnOff,
    /// Name of the `rate_limits` policy counting this route's requests, or `off`.
    /// Default: the policy named `default` if there is one, else none.
    #[serde(default)]
    pub rate_limit: Option<String>,
}

/// Whether a route needs credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    #[default]
    Required,
    None,
}

fn default_redis_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(50))
}
fn default_rate_limit_keys() -> i64 {
    100_000
}
fn default_rate_limit_prefix() -> String {
    "gateway:ratelimit:".to_owned()
}
fn default_exchange_in_flight() -> Switch<i64> {
    Switch::On(4)
}
fn default_failures_per_client() -> Switch<Rate> {
    Switch::On(Rate {
        count: 20,
        per: std::time::Duration::from_secs(60),
    })
}
fn default_failures_per_login() -> Switch<Rate> {
    Switch::On(Rate {
        count: 5,
        per: std::time::Duration::from_secs(60),
    })
}
fn default_key_prefix() -> String {
    "gateway:".to_owned()
}
fn default_max_entries() -> i64 {
    100_000
}
fn default_max_bytes() -> ByteSize {
    ByteSize(64 * 1024 * 1024)
}
fn default_max_entry_bytes() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn default_stale_if_error() -> HumanDuration {
    HumanDuration(std::time::Duration::ZERO)
}
fn default_token_path() -> String {
    "/auth".to_owned()
}
fn default_secret_env() -> String {
    "JWT_SECRET".to_owned()
}
fn default_algorithms() -> Vec<String> {
    vec!["HS256".to_owned()]
}
fn default_leeway() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn default_token_capacity() -> i64 {
    100_000
}
fn default_refresh_before_expiry() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn default_negative_ttl() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn default_listen() -> String {
    "0.0.0.0:8888".to_owned()
}
fn default_threads() -> i64 {
    2
}
fn default_shutdown_delay() -> HumanDuration {
    HumanDuration(std::time::Duration::ZERO)
}
fn default_grace_period() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn default_watch_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}
fn default_max_body() -> ByteSize {
    ByteSize(64 * 1024)
}
fn default_client_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}
fn default_client_write_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}
fn default_request_buffering() -> OnOff {
    OnOff(true)
}
fn default_tls_listen() -> String {
    "0.0.0.0:8443".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_admin_listen() -> String {
    "127.0.0.1:9091".to_owned()
}
fn default_admin_open_paths() -> Vec<String> {
    vec!["/healthz".to_owned()]
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}
fn default_read_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}
fn default_breaker() -> String {
    "default".to_owned()
}
fn default_connect_retries() -> i64 {
    1
}
fn default_health_path() -> String {
    "/healthz".to_owned()
}
fn default_health_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}
fn default_health_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}
fn default_healthy_threshold() -> i64 {
    2
}
fn default_unhealthy_threshold() -> i64 {
    3
}
fn default_max_in_flight() -> Switch<i64> {
    Switch::Off
}
fn default_queue_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}
fn default_consecutive_failures() -> Switch<i64> {
    Switch::On(5)
}
fn default_failure_rate() -> Switch<Percent> {
    Switch::On(Percent(0.5))
}
fn default_minimum_calls() -> i64 {
    10
}
fn default_window() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}
fn default_slow_call_duration() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(2))
}
fn default_slow_call_rate() -> Switch<Percent> {
    Switch::On(Percent(1.0))
}
fn default_open_for() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}
fn default_max_open_for() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}
fn default_half_open_probes() -> i64 {
    3
}
fn default_failure_statuses() -> Vec<i64> {
    vec![500, 502, 503, 504]
}
