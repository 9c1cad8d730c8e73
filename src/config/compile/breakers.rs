//! `breakers:`: named circuit-breaker policies, each compiled into a [`BreakerPolicy`] and
//! the [`StatusSet`] of upstream statuses it counts as failures. `default` is built in and
//! may be overridden.

use std::{collections::BTreeMap, sync::Arc};

use super::Problems;
use crate::{
    breaker::{BreakerPolicy, classify::StatusSet},
    config::file::BreakerConfig,
};

/// Upper bound that catches a typo (an extra zero) rather than encodes a real limit.
const MAX_PROBES: i64 = 10_000;

/// A compiled breaker: what trips it, and which statuses count as failures.
#[derive(Clone)]
pub(super) struct Compiled {
    pub policy: Arc<BreakerPolicy>,
    pub failure_statuses: StatusSet,
}

/// Every breaker the file declares, plus the built-in `default` unless the file overrides
/// it. A name is in `declared` even when its policy is invalid (already reported), so
/// upstreams naming it are not told it is unknown.
pub(super) struct Breakers {
    pub declared: Vec<String>,
    pub compiled: BTreeMap<String, Compiled>,
}

pub(super) fn compile(
    problems: &mut Problems<'_>,
    configs: &BTreeMap<String, BreakerConfig>,
) -> Breakers {
    let mut breakers = Breakers {
        declared: Vec::new(),
        compiled: BTreeMap::new(),
    };
    let builtin = BreakerConfig::default();
    let default = (!configs.contains_key("default")).then_some(("default", &builtin));
    let all = default
        .into_iter()
        .chain(configs.iter().map(|(name, config)| (name.as_str(), config)));
    for (name, config) in all {
        breakers.declared.push(name.to_owned());
        if let Some(compiled) = breaker(problems, name, config) {
            breakers.compiled.insert(name.to_owned(), compiled);
        }
    }
    breakers
}

fn breaker(problems: &mut Problems<'_>, name: &str, config: &BreakerConfig) -> Option<Compiled> {
    let mut part = problems.part(format!("breakers.{name}"));
    let consecutive_failures = config.consecutive_failures.into_option();
    if let Some(n) = consecutive_failures {
        if n < 1 || n > i64::from(u32::MAX) {
            part.add(
                "consecutive_failures",
                format!("must be at least 1 (or `off`), got {n}"),
            );
        }
    }
    let failure_rate = rate(
        &mut part,
        "failure_rate",
        config.failure_rate.into_option().map(|p| p.0),
    );
    let slow_call_rate = rate(
        &mut part,
        "slow_call_rate",
        config.slow_call_rate.into_option().map(|p| p.0),
    );
    if config.minimum_calls < 1 || config.minimum_calls > i64::from(u32::MAX) {
        part.add(
            "minimum_calls",
            format!("must be at least 1, got {}", config.minimum_calls),
        );
    }
    let window = part.positive_duration("window", config.window.0);
    let slow_call_duration =
        part.positive_duration("slow_call_duration", config.slow_call_duration.0);
    let open_for = part.positive_duration("open_for", config.open_for.0);
    let max_open_for = config.max_open_for.0;
    if max_open_for < open_for {
        part.add(
            "max_open_for",
            format!(
                "must be at least open_for ({}), got {}",
                config.open_for, config.max_open_for
            ),
        );
    }
    if !(1..=MAX_PROBES).contains(&config.half_open_probes) {
        part.add(
            "half_open_probes",
            format!(
                "must be between 1 and {MAX_PROBES}, got {}",
                config.half_open_probes
            ),
        );
    }
    let mut failure_statuses = StatusSet::default();
    for (index, status) in config.failure_statuses.iter().enumerate() {
        match u16::try_from(*status) {
            Ok(status @ 100..=599) => failure_statuses.insert(status),
            _ => part.add(
                &format!("failure_statuses[{index}]"),
                format!("{status} is not an HTTP status (100-599)"),
            ),
        }
    }
    if consecutive_failures.is_none() && failure_rate.is_none() && slow_call_rate.is_none() {
        part.add(
            "",
            "this breaker can never trip: consecutive_failures, failure_rate and slow_call_rate are all off",
        );
    }
    part.passed()?;
    let policy = BreakerPolicy {
        consecutive_failures: consecutive_failures.and_then(|n| u32::try_from(n).ok()),
        failure_rate,
        minimum_calls: u32::try_from(config.minimum_calls).unwrap_or(u32::MAX),
        window,
        slow_call_duration,
        slow_call_rate,
        open_for,
        max_open_for,
        half_open_probes: u32::try_from(config.half_open_probes).unwrap_or(1),
    };
    Some(Compiled {
        policy: Arc::new(policy),
        failure_statuses,
    })
}

/// A trip rate: `off`, or a share above 0% and at most 100%.
fn rate(part: &mut super::Part<'_, '_>, key: &str, value: Option<f64>) -> Option<f64> {
    if let Some(rate) = value {
        if !(rate > 0.0 && rate <= 1.0) {
            part.add(
                key,
                format!(
                    "must be above 0% and at most 100% (or `off`), got {}%",
                    rate * 100.0
                ),
            );
        }
    }
    value
}
