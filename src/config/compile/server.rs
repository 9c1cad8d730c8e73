//! `server:`: the proxy listener and its runtime.

use super::Problems;
use crate::config::{ServerSettings, file::ServerConfig};

/// Upper bound that catches a typo (an extra zero) rather than encodes a real limit.
const MAX_THREADS: i64 = 1024;

pub(super) fn compile(
    problems: &mut Problems<'_>,
    config: &ServerConfig,
) -> Option<ServerSettings> {
    let mut part = problems.part("server");
    let listen = part.listen_addr("listen", &config.listen);
    let threads = config.threads;
    if !(1..=MAX_THREADS).contains(&threads) {
        part.add(
            "threads",
            format!("must be between 1 and {MAX_THREADS}, got {threads}"),
        );
    }
    part.passed()?;
    Some(ServerSettings {
        listen: listen?,
        threads: usize::try_from(threads).unwrap_or(1),
        shutdown_delay: config.shutdown_delay.0,
        grace_period: config.grace_period.0,
        watch_interval: config.watch_interval.0,
    })
}
