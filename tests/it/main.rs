//! The gateway's integration tests: one binary, real servers on loopback ephemeral ports.

// Test support code: a failed unwrap is a failed test, with the reason in the panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod auth;
mod breaker;
mod bulkhead;
mod cache;
mod cli;
mod client_limits;
mod config_fixtures;
mod exchange_limits;
mod health;
mod layers;
mod live;
mod metrics;
mod proxying;
mod rate_limit;
mod rate_limit_redis;
mod reload;
mod tls;
