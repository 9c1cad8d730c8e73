//! Integration tests of the travel services over real HTTP, each scenario run against SQLite
//! and against the local PostgreSQL (a fresh database per test, dropped afterwards).

// Test support code is not inside #[test] functions, so clippy's allow-unwrap-in-tests does
// not reach it; a panic is exactly what a failing test set-up should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod authz;
mod hostile;
mod parties;
mod paths;
mod resilience;
mod routing;
mod seed;
mod storage;
mod trips;
mod users;
