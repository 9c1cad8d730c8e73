//! The `travel` binary's whole-stack commands, run as real child processes: `travel up` (the
//! four services and the gateway in one process) on a fresh temp directory with ephemeral
//! ports, and `travel seed` against it.

// Test support code is not inside #[test] functions, so clippy's allow-unwrap-in-tests does
// not reach it; a panic is exactly what a failing test set-up should do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod seed;
mod up;
