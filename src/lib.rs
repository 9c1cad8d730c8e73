//! A resilient, config-driven API gateway on Pingora.
//!
//! The module tree is the architecture: [`config`] turns `gateway.yaml` into runtime types,
//! [`router`] picks a route, [`auth`] turns credentials into a verified identity,
//! [`upstream`] owns backends, their circuit breakers, concurrency limits and health,
//! [`checker`] runs the active health checks, [`redis_link`] is the one connection handling
//! for Redis (the cache store and shared rate limits),
//! [`proxy`] is the thin `ProxyHttp` that wires them into Pingora's hooks, [`admin`] serves
//! metrics and breaker state, [`metrics`] declares every metric, [`telemetry`] sets up logging, and [`server`] assembles
//! it all for `main` and the tests. See `docs/architecture.md`.

pub mod admin;
pub mod auth;
pub mod breaker;
pub mod cache;
pub mod checker;
pub mod config;
pub mod drain;
pub mod events;
pub mod headers;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod redis_link;
pub mod reload;
pub mod router;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use config::Config;
pub use server::{GatewayServer, StartError};
