//! `upstreams:`: named pools of backend addresses, each guarded by a breaker policy from
//! `breakers:`. Backend names are resolved here, once, so the request path never waits on
//! DNS; an `https://` backend gets its TLS settings (SNI, verification, CA file read and
//! checked here) from the upstream's `tls` block.

use std::{
    collections::BTreeMap,
    net::{SocketAddr, ToSocketAddrs},
    sync::Arc,
};

use super::{
    Part, Problems,
    breakers::{Breakers, Compiled},
};
use crate::{
    config::{
        BackendSpec, BackendTls, ConcurrencyLimit, HealthCheckSpec, UpstreamSpec,
        file::{HealthCheckConfig, UpstreamConfig, UpstreamTlsConfig},
        units::Switch,
    },
    tls::CaCerts,
};

/// Upper bound of the health-check thresholds: a typo, not a threshold anyone means.
const MAX_HEALTH_THRESHOLD: i64 = 100;

/// Upper bound that catches a typo (an extra zero) rather than encodes a real limit.
const MAX_CONNECT_RETRIES: i64 = 16;
/// Upper bound of `max_in_flight` and `max_queued`: a typo, not a limit anyone means.
const MAX_CONCURRENCY: i64 = 1_000_000;

pub(super) fn compile(
    problems: &mut Problems<'_>,
    configs: &BTreeMap<String, UpstreamConfig>,
    breakers: &Breakers,
) -> Vec<UpstreamSpec> {
    if configs.is_empty() {
        problems.add("upstreams", "at least one upstream is required");
    }
    let mut upstreams = Vec::new();
    for (name, config) in configs {
        if !breakers.declared.contains(&config.breaker) {
            problems.add(
                format!("upstreams.{name}.breaker"),
                format!("unknown breaker {:?}", config.breaker),
            );
        }
        let breaker = breakers.compiled.get(&config.breaker).cloned();
        if let Some(spec) = upstream(problems, name, config, breaker) {
            upstreams.push(spec);
        }
    }
    upstreams
}

/// `breaker` is None when the policy it names is missing or invalid (already reported).
fn upstream(
    problems: &mut Problems<'_>,
    name: &str,
    config: &UpstreamConfig,
    breaker: Option<Compiled>,
) -> Option<UpstreamSpec> {
    let mut part = problems.part(format!("upstreams.{name}"));
    if config.backends.is_empty() {
        part.add("backends", "at least one backend is required");
    }
    let tls = TlsChoice::compile(&mut part, config.tls.as_ref());
    let mut backends: Vec<BackendSpec> = Vec::new();
    let mut any_https = false;
    for (index, text) in config.backends.iter().enumerate() {
        let item = format!("backends[{index}]");
        let Some((https, host_and_port)) = scheme(&mut part, &item, text) else {
            continue;
        };
        any_https |= https;
        let Some(addr) = resolve(&mut part, &item, host_and_port) else {
            continue;
        };
        if backends.iter().any(|b| b.addr == addr) {
            part.add(&item, format!("{text:?} is listed twice"));
            continue;
        }
        backends.push(BackendSpec {
            label: Arc::from(text.trim()),
            addr,
            tls: https.then(|| tls.for_backend(host_and_port)),
        });
    }
    if config.tls.is_some() && !any_https && !config.backends.is_empty() {
        part.add(
            "tls",
            "no backend is https://, and tls applies to https:// backends only",
        );
    }
    let connect_timeout = part.positive_duration("connect_timeout", config.connect_timeout.0);
    let read_timeout = part.positive_duration("read_timeout", config.read_timeout.0);
    let write_timeout = part.positive_duration("write_timeout", config.write_timeout.0);
    if !(0..=MAX_CONNECT_RETRIES).contains(&config.connect_retries) {
        part.add(
            "connect_retries",
            format!(
                "must be between 0 and {MAX_CONNECT_RETRIES}, got {}",
                config.connect_retries
            ),
        );
    }
    let limit = concurrency_limit(
        &mut part,
        config.max_in_flight,
        config.max_queued,
        config.queue_timeout.0,
    );
    let health_check = config
        .health_check
        .as_ref()
        .map(|check| health_check(&mut part, check));
    part.passed()?;
    let breaker = breaker?;
    Some(UpstreamSpec {
        name: Arc::from(name),
        backends,
        connect_timeout,
        read_timeout,
        write_timeout,
        idle_timeout: config.idle_timeout.0,
        breaker: Arc::from(config.breaker.as_str()),
        policy: breaker.policy,
        failure_statuses: breaker.failure_statuses,
        connect_retries: u32::try_from(config.connect_retries).unwrap_or(0),
        limit,
        health_check,
    })
}

/// Checks a `health_check` block (keys under `health_check.` in `part`).
fn health_check(part: &mut Part<'_, '_>, check: &HealthCheckConfig) -> HealthCheckSpec {
    if !check.path.starts_with('/') || check.path.contains(char::is_whitespace) {
        part.add(
            "health_check.path",
            format!(
                "invalid path {:?}: must start with / and contain no spaces",
                check.path
            ),
        );
    }
    let interval = part.positive_duration("health_check.interval", check.interval.0);
    let timeout = part.positive_duration("health_check.timeout", check.timeout.0);
    let mut threshold = |key: &str, value: i64| {
        if !(1..=MAX_HEALTH_THRESHOLD).contains(&value) {
            part.add(
                &format!("health_check.{key}"),
                format!("must be between 1 and {MAX_HEALTH_THRESHOLD}, got {value}"),
            );
        }
        u32::try_from(value).unwrap_or(1)
    };
    let healthy_threshold = threshold("healthy_threshold", check.healthy_threshold);
    let unhealthy_threshold = threshold("unhealthy_threshold", check.unhealthy_threshold);
    HealthCheckSpec {
        path: check.path.clone(),
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
    }
}

/// Checks a bulkhead's keys (`max_in_flight`, `max_queued`, `queue_timeout` in `part`).
pub(super) fn concurrency_limit(
    part: &mut Part<'_, '_>,
    max_in_flight: Switch<i64>,
    max_queued: i64,
    queue_timeout: std::time::Duration,
) -> ConcurrencyLimit {
    let max_in_flight = max_in_flight.into_option();
    if let Some(n) = max_in_flight {
        if !(1..=MAX_CONCURRENCY).contains(&n) {
            part.add(
                "max_in_flight",
                format!("must be `off` or between 1 and {MAX_CONCURRENCY}, got {n}"),
            );
        }
    }
    if !(0..=MAX_CONCURRENCY).contains(&max_queued) {
        part.add(
            "max_queued",
            format!("must be between 0 and {MAX_CONCURRENCY}, got {max_queued}"),
        );
    }
    if max_queued > 0 && max_in_flight.is_none() {
        part.add(
            "max_queued",
            "a queue needs a limit to wait for: set max_in_flight too",
        );
    }
    if max_queued > 0 && queue_timeout.is_zero() {
        part.add(
            "queue_timeout",
            "must be greater than zero when max_queued is more than 0",
        );
    }
    ConcurrencyLimit {
        max_in_flight: max_in_flight.and_then(|n| usize::try_from(n).ok()),
        max_queued: usize::try_from(max_queued).unwrap_or(0),
        queue_timeout,
    }
}

/// The upstream's `tls` block, checked once and applied to each `https://` backend.
struct TlsChoice {
    sni: Option<String>,
    verify: bool,
    ca: Option<CaCerts>,
}

impl TlsChoice {
    fn compile(part: &mut Part<'_, '_>, config: Option<&UpstreamTlsConfig>) -> TlsChoice {
        let Some(config) = config else {
            return TlsChoice {
                sni: None,
                verify: true,
                ca: None,
            };
        };
        let sni = config.sni.as_deref().map(str::trim).map(str::to_owned);
        if let Some(sni) = &sni {
            if rustls_pki_types::ServerName::try_from(sni.as_str()).is_err() {
                part.add(
                    "tls.sni",
                    format!("{sni:?} is not a valid server name (a DNS name or an IP address)"),
                );
            }
        }
        let ca = config.ca_file.as_deref().and_then(|path| {
            CaCerts::load(std::path::Path::new(path.trim()))
                .map_err(|e| part.add("tls.ca_file", e))
                .ok()
        });
        TlsChoice {
            sni,
            verify: config.verify,
            ca,
        }
    }

    fn for_backend(&self, host_and_port: &str) -> BackendTls {
        let host = host_and_port
            .trim()
            .rsplit_once(':')
            .map_or(host_and_port, |(host, _)| host);
        // `[::1]:443` names the address `::1`.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        BackendTls {
            sni: self.sni.clone().unwrap_or_else(|| host.to_owned()),
            verify: self.verify,
            ca: self.ca.clone(),
        }
    }
}

/// Splits off the scheme: `https://` (true), `http://` or none (false).
fn scheme<'t>(part: &mut Part<'_, '_>, key: &str, text: &'t str) -> Option<(bool, &'t str)> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("https://") {
        return Some((true, rest.trim_end_matches('/')));
    }
    if let Some(rest) = text.strip_prefix("http://") {
        return Some((false, rest.trim_end_matches('/')));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        part.add(
            key,
            format!("unsupported scheme {scheme:?} in {text:?}; expected http:// or https://"),
        );
        return None;
    }
    Some((false, text))
}

/// A backend address: `ip:port`, or `host:port` resolved now (the first address).
fn resolve(part: &mut Part<'_, '_>, key: &str, text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let host_and_port = text
        .rsplit_once(':')
        .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    let Some((host, _)) = host_and_port else {
        part.add(
            key,
            format!("invalid backend address {text:?}; expected host:port"),
        );
        return None;
    };
    match text.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => Some(addr),
        Ok(None) => {
            part.add(key, format!("{host:?} resolves to no address"));
            None
        }
        Err(e) => {
            part.add(key, format!("cannot resolve {host:?}: {e}"));
            None
        }
    }
}
