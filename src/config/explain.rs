//! `gateway check --explain`: what a breaker policy, an upstream's limits and each rate
//! limit mean in plain words, so the effect of an edit is visible before it is saved.

use crate::{
    breaker::BreakerPolicy,
    config::{
        ConcurrencyLimit, Config, ExchangeLimitSettings, LimitStore, RateLimitHeaders,
        RateLimitKey, RateLimitPolicy, RateSettings, UpstreamSpec,
    },
};

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn percent(rate: f64) -> String {
    let value = rate * 100.0;
    if value.fract() == 0.0 {
        format!("{value:.0}%")
    } else {
        format!("{value}%")
    }
}

/// One line per way the breaker trips, then how it recovers.
pub fn explain_breaker(policy: &BreakerPolicy) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(n) = policy.consecutive_failures {
        lines.push(format!("opens after {n} failures in a row"));
    }
    let window = duration(policy.window);
    let calls = policy.minimum_calls;
    if let Some(rate) = policy.failure_rate {
        let failures = (rate * f64::from(calls)).ceil();
        lines.push(format!(
            "opens when at least {} of the calls in the last {window} failed, once there are {calls} or more (e.g. {failures} of {calls})",
            percent(rate)
        ));
    }
    if let Some(rate) = policy.slow_call_rate {
        lines.push(format!(
            "opens when at least {} of the calls in the last {window} took longer than {} to answer, once there are {calls} or more",
            percent(rate),
            duration(policy.slow_call_duration)
        ));
    }
    lines.push(format!(
        "stays open {} at first, doubling after each failed probe up to {}",
        duration(policy.open_for),
        duration(policy.max_open_for)
    ));
    lines.push(format!(
        "then lets {} trial call{} through; closes when all succeed",
        policy.half_open_probes,
        if policy.half_open_probes == 1 {
            ""
        } else {
            "s"
        }
    ));
    lines
}

/// What a concurrency limit does, `who` being what it counts ("each backend", "the token
/// exchange"). Empty when there is no limit.
pub fn explain_limit(limit: &ConcurrencyLimit, who: &str) -> Vec<String> {
    let Some(max) = limit.max_in_flight else {
        return Vec::new();
    };
    let mut lines = vec![format!(
        "{who} takes at most {max} call{} at once",
        if max == 1 { "" } else { "s" }
    )];
    let refused = "answered 503 (type /errors/overloaded) with Retry-After: 1 at once, which is never a breaker failure";
    if limit.max_queued == 0 {
        lines.push(format!("a request beyond that is {refused} (no queue)"));
    } else {
        lines.push(format!(
            "then up to {} request{} wait at most {} for a free slot; beyond that (or after that wait) a request is {refused}",
            limit.max_queued,
            if limit.max_queued == 1 { "" } else { "s" },
            duration(limit.queue_timeout)
        ));
    }
    lines
}

fn rate(rate: &RateSettings) -> String {
    match rate.per.as_secs() {
        1 => format!("{} per second", rate.count),
        60 => format!("{} per minute", rate.count),
        3600 => format!("{} per hour", rate.count),
        _ => format!("{} per {}", rate.count, duration(rate.per)),
    }
}

/// Each rate limit of `config` as a heading and its lines: the policies, then the
/// credential-exchange limits.
pub fn explain_limits(config: &Config) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for (index, policy) in config.rate_limits.iter().enumerate() {
        let routes: Vec<&str> = config
            .routes
            .iter()
            .filter(|r| r.rate_limit == Some(index))
            .map(|r| &*r.id)
            .collect();
        let on = if routes.is_empty() {
            "no route".to_owned()
        } else {
            routes.join(", ")
        };
        out.push((
            format!("rate limit {} (on {on}):", policy.name),
            explain_rate_limit(policy),
        ));
    }
    if let Some(limits) = &config.exchange_limits {
        out.push((
            "credential exchanges (Basic credentials checked at the users service):".to_owned(),
            explain_exchange_limits(limits),
        ));
    }
    out
}

/// What one policy does.
pub fn explain_rate_limit(policy: &RateLimitPolicy) -> Vec<String> {
    let who = match policy.key {
        RateLimitKey::Client => {
            "each client address (X-Forwarded-For only from server.trusted_proxies)"
        }
        RateLimitKey::User => {
            "each authenticated user (unauthenticated requests by client address)"
        }
        RateLimitKey::Route => "each route, all clients together",
    };
    let mut lines = vec![
        format!(
            "admits {} for {who}, up to {} at once after a pause",
            rate(&policy.rate),
            policy.burst
        ),
        format!(
            "beyond that answers 429 with Retry-After (one request is admitted every {})",
            duration(policy.rate.interval())
        ),
    ];
    lines.push(match policy.headers {
        RateLimitHeaders::Limited => {
            "sends RateLimit-Policy and RateLimit headers on 429 answers".to_owned()
        }
        RateLimitHeaders::Always => {
            "sends RateLimit-Policy and RateLimit headers on every answer".to_owned()
        }
    });
    lines.push(match &policy.store {
        LimitStore::Memory => format!(
            "counts in this process, at most {} keys ({} KiB)",
            policy.max_keys,
            policy.max_keys * 17 / 1024
        ),
        LimitStore::Redis { .. } => format!(
            "counts in Redis, shared by every replica; while Redis cannot answer, counts in this process (at most {} keys)",
            policy.max_keys
        ),
    });
    lines
}

/// What the credential-exchange limits do.
pub fn explain_exchange_limits(limits: &ExchangeLimitSettings) -> Vec<String> {
    let mut lines = Vec::new();
    match limits.max_in_flight_per_client {
        Some(n) => lines.push(format!(
            "at most {n} in progress per client address; more at once are answered 429 without a check"
        )),
        None => lines.push("no cap on checks in progress per client address".to_owned()),
    }
    if let Some(r) = &limits.failures_per_client {
        lines.push(format!(
            "after {} refused credentials from one address, 429 without a check, then 1 more every {}",
            r.count,
            duration(r.interval())
        ));
    }
    if let Some(r) = &limits.failures_per_login {
        lines.push(format!(
            "after {} refused credentials for one login (from any address), 429 for that login, then 1 more every {}",
            r.count,
            duration(r.interval())
        ));
    }
    lines
}

/// What the limits and checks of one upstream do; empty when it has none.
pub fn explain_upstream(upstream: &UpstreamSpec) -> Vec<String> {
    let mut lines = explain_limit(&upstream.limit, "each backend");
    if let Some(check) = &upstream.health_check {
        lines.push(format!(
            "checks GET {} on each backend every {} (timeout {}): {} failure{} in a row take a backend out of selection (its breaker opens, reason \"health check\"), {} pass{} in a row bring it back",
            check.path,
            duration(check.interval),
            duration(check.timeout),
            check.unhealthy_threshold,
            if check.unhealthy_threshold == 1 { "" } else { "s" },
            check.healthy_threshold,
            if check.healthy_threshold == 1 { "" } else { "es" },
        ));
        lines.push(
            "a breaker opened by failing traffic is closed by the first check that passes after its open period, never by a client request".to_owned(),
        );
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn explains_rate_limits_and_exchange_limits() {
        let config = Config::parse_with_env(
            "upstreams:\n  a: { backends: [127.0.0.1:1] }\nrate_limits:\n  default: { rate: 10/s, burst: 20 }\nauth:\n  token_endpoint: { upstream: a }\nroutes:\n  - { path: /, upstream: a, auth: none }\n",
            &|_| Some("s".repeat(32)),
        )
        .unwrap();
        let limits = explain_limits(&config);
        assert_eq!(limits[0].0, "rate limit default (on /):");
        assert!(
            limits[0].1[0].starts_with("admits 10 per second for each client address"),
            "{:?}",
            limits[0].1
        );
        assert!(limits[0].1[0].ends_with("up to 20 at once after a pause"));
        assert!(limits[0].1[1].contains("every 100ms"), "{:?}", limits[0].1);
        assert_eq!(
            limits[1].1,
            [
                "at most 4 in progress per client address; more at once are answered 429 without a check",
                "after 20 refused credentials from one address, 429 without a check, then 1 more every 3s",
                "after 5 refused credentials for one login (from any address), 429 for that login, then 1 more every 12s",
            ]
        );
    }

    #[test]
    fn explains_the_default_policy() {
        let config = Config::parse("upstreams:\n  a: { backends: [127.0.0.1:1] }\nroutes:\n  - { path: /, upstream: a, auth: none }\n").unwrap();
        let lines = explain_breaker(&config.upstreams[0].policy);
        assert_eq!(lines[0], "opens after 5 failures in a row");
        assert!(
            lines[1].contains(
                "50% of the calls in the last 30s failed, once there are 10 or more (e.g. 5 of 10)"
            ),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("took longer than 2s"), "{}", lines[2]);
        assert_eq!(
            lines[3],
            "stays open 10s at first, doubling after each failed probe up to 5m"
        );
        assert_eq!(
            lines[4],
            "then lets 3 trial calls through; closes when all succeed"
        );
    }

    #[test]
    fn explains_a_limit_and_its_queue() {
        let config = Config::parse("upstreams:\n  a: { backends: [127.0.0.1:1], max_in_flight: 4, max_queued: 8, queue_timeout: 2s }\n  b: { backends: [127.0.0.1:2], max_in_flight: 1 }\n  c: { backends: [127.0.0.1:3] }\nroutes:\n  - { path: /, upstream: a, auth: none }\n").unwrap();
        let a = explain_upstream(&config.upstreams[0]);
        assert_eq!(a[0], "each backend takes at most 4 calls at once");
        assert!(
            a[1].starts_with("then up to 8 requests wait at most 2s for a free slot"),
            "{}",
            a[1]
        );
        let b = explain_upstream(&config.upstreams[1]);
        assert!(b[1].ends_with("(no queue)"), "{}", b[1]);
        assert!(explain_upstream(&config.upstreams[2]).is_empty());
        let checked = Config::parse("upstreams:\n  a: { backends: [127.0.0.1:1], health_check: { path: /up } }\nroutes:\n  - { path: /, upstream: a, auth: none }\n").unwrap();
        let lines = explain_upstream(&checked.upstreams[0]);
        assert!(
            lines[0].starts_with(
                "checks GET /up on each backend every 5s (timeout 1s): 3 failures in a row"
            ),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].ends_with("2 passes in a row bring it back"),
            "{}",
            lines[0]
        );
    }
}
