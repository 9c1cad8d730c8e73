//! `server:`: the proxy listener and its runtime, and the TLS listener with its
//! certificate (read and checked here, so a bad pair is a config error with a line).

use std::path::PathBuf;

use super::{Part, Problems};
use crate::{
    config::{ServerSettings, ServerTls, file::ServerConfig, file::ServerTlsConfig},
    tls::{CertError, ServerCert},
};

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
    let tls = config.tls.as_ref().map(|tls| compile_tls(&mut part, tls));
    let client_header_timeout =
        part.positive_duration("client_header_timeout", config.client_header_timeout.0);
    let client_body_timeout =
        part.positive_duration("client_body_timeout", config.client_body_timeout.0);
    let client_write_timeout =
        part.positive_duration("client_write_timeout", config.client_write_timeout.0);
    part.passed()?;
    Some(ServerSettings {
        listen: listen?,
        threads: usize::try_from(threads).unwrap_or(1),
        work_stealing: config.work_stealing,
        shutdown_delay: config.shutdown_delay.0,
        grace_period: config.grace_period.0,
        watch_interval: config.watch_interval.0,
        tls: match tls {
            Some(tls) => Some(tls?),
            None => None,
        },
        client_header_timeout,
        client_body_timeout,
        client_write_timeout,
        // Filled in by `rate_limits::trusted_proxies`, which reports their problems.
        trusted_proxies: Vec::new(),
    })
}

fn compile_tls(part: &mut Part<'_, '_>, config: &ServerTlsConfig) -> Option<ServerTls> {
    let listen = part.listen_addr("tls.listen", &config.listen);
    let certificate = file_path(part, "tls.certificate", &config.certificate);
    let key = file_path(part, "tls.key", &config.key);
    let (certificate, key) = (certificate?, key?);
    let loaded = match ServerCert::load(&certificate, &key) {
        Ok(loaded) => loaded,
        Err(error @ CertError::Certificate(_)) => {
            part.add("tls.certificate", error.to_string());
            return None;
        }
        Err(error) => {
            part.add("tls.key", error.to_string());
            return None;
        }
    };
    Some(ServerTls {
        listen: listen?,
        certificate,
        key,
        http2: config.http2,
        loaded,
    })
}

fn file_path(part: &mut Part<'_, '_>, key: &str, text: &str) -> Option<PathBuf> {
    let text = text.trim();
    if text.is_empty() {
        part.add(key, "must name a PEM file");
        return None;
    }
    Some(PathBuf::from(text))
}
