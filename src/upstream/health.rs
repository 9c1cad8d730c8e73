//! Active health checks: what the checks have concluded about one backend. The checker
//! (`crate::checker`, one background task per checked backend) probes it and hands each
//! result to [`Upstream::record_check`], which runs the state machine here and acts on its
//! verdict through the backend's breaker.
//!
//! Envoy's semantics, followed: `unhealthy_threshold` failed checks in a row eject the
//! backend (its breaker opens, reason "health check …", and selection skips it whatever the
//! breaker would say); `healthy_threshold` passed checks in a row bring it back (the breaker
//! closes). Passive and active signals combine: either can eject, and on an upstream with
//! checks, recovery always needs a check to pass: a breaker the traffic opened is not
//! half-opened by client requests but closed by the first check that passes after its open
//! period (Envoy's `successful_active_health_check_uneject_host`), so no client request is
//! risked on a backend before a check has seen it answer. A backend starts healthy (nginx's
//! default; Envoy can be told the same), so a start or a reload never refuses traffic while
//! the first checks run.
//!
//! Only the backend's checker writes this state (one task per backend), so plain atomics
//! suffice; readers (selection, the admin page) load them.
//!
//! [`Upstream::record_check`]: super::Upstream::record_check

use std::{
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::Instant,
};

use arc_swap::ArcSwapOption;

use crate::config::HealthCheckSpec;

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// A 2xx answer within the timeout.
    Pass,
    /// Any other status.
    Fail,
    /// No answer within the check's timeout.
    Timeout,
    /// Refused, reset, or not HTTP.
    Error,
}

impl CheckResult {
    pub const ALL: [CheckResult; 4] = [
        CheckResult::Pass,
        CheckResult::Fail,
        CheckResult::Timeout,
        CheckResult::Error,
    ];

    pub fn passed(self) -> bool {
        self == CheckResult::Pass
    }

    /// The `result` label of `gateway_health_checks_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Pass => "pass",
            CheckResult::Fail => "fail",
            CheckResult::Timeout => "timeout",
            CheckResult::Error => "error",
        }
    }
}

/// What a check result changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing.
    Unchanged,
    /// `failures` checks in a row failed: take the backend out of selection.
    Eject { failures: u32 },
    /// `passes` checks in a row passed after an ejection: bring it back.
    Restore { passes: u32 },
}

/// The last check, for the admin page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastCheck {
    pub result: CheckResult,
    pub at: Instant,
}

/// The checks' view of one backend, shared across reloads like its breaker.
#[derive(Debug, Default)]
pub struct Health {
    ejected: AtomicBool,
    passes: AtomicU32,
    failures: AtomicU32,
    last: ArcSwapOption<LastCheck>,
}

impl Health {
    /// Whether the checks have taken the backend out of selection.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::SeqCst)
    }

    /// Checks passed in a row, and failed in a row (one of them is 0).
    pub fn streaks(&self) -> (u32, u32) {
        (
            self.passes.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }

    pub fn last(&self) -> Option<LastCheck> {
        self.last.load_full().map(|l| *l)
    }

    /// Counts one check at `now` under `spec`'s thresholds.
    pub fn record(&self, result: CheckResult, spec: &HealthCheckSpec, now: Instant) -> Verdict {
        self.last
            .store(Some(std::sync::Arc::new(LastCheck { result, at: now })));
        if result.passed() {
            self.failures.store(0, Ordering::Relaxed);
            let passes = self
                .passes
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if self.is_ejected() && passes >= spec.healthy_threshold {
                self.ejected.store(false, Ordering::SeqCst);
                return Verdict::Restore { passes };
            }
        } else {
            self.passes.store(0, Ordering::Relaxed);
            let failures = self
                .failures
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if !self.is_ejected() && failures >= spec.unhealthy_threshold {
                self.ejected.store(true, Ordering::SeqCst);
                return Verdict::Eject { failures };
            }
        }
        Verdict::Unchanged
    }

    /// Forgets everything: the upstream no longer checks this backend.
    pub fn reset(&self) {
        self.ejected.store(false, Ordering::SeqCst);
        self.passes.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.last.store(None);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(healthy: u32, unhealthy: u32) -> HealthCheckSpec {
        HealthCheckSpec {
            path: "/healthz".to_owned(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
        }
    }

    #[test]
    fn ejects_after_unhealthy_threshold_failures_in_a_row_only() {
        let (h, s, now) = (Health::default(), spec(2, 3), Instant::now());
        assert_eq!(h.record(CheckResult::Fail, &s, now), Verdict::Unchanged);
        assert_eq!(h.record(CheckResult::Timeout, &s, now), Verdict::Unchanged);
        // A pass breaks the run.
        assert_eq!(h.record(CheckResult::Pass, &s, now), Verdict::Unchanged);
        assert!(!h.is_ejected());
        for _ in 0..2 {
            assert_eq!(h.record(CheckResult::Error, &s, now), Verdict::Unchanged);
        }
        assert_eq!(
            h.record(CheckResult::Fail, &s, now),
            Verdict::Eject { failures: 3 }
        );
        assert!(h.is_ejected());
        // Further failures eject nothing more.
        assert_eq!(h.record(CheckResult::Fail, &s, now), Verdict::Unchanged);
        assert_eq!(h.streaks(), (0, 4));
    }

    #[test]
    fn comes_back_after_healthy_threshold_passes_in_a_row() {
        let (h, s, t0) = (Health::default(), spec(2, 1), Instant::now());
        assert_eq!(
            h.record(CheckResult::Fail, &s, t0),
            Verdict::Eject { failures: 1 }
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(h.record(CheckResult::Pass, &s, t1), Verdict::Unchanged);
        assert_eq!(h.record(CheckResult::Fail, &s, t1), Verdict::Unchanged);
        assert_eq!(h.record(CheckResult::Pass, &s, t1), Verdict::Unchanged);
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(
            h.record(CheckResult::Pass, &s, t2),
            Verdict::Restore { passes: 2 }
        );
        assert!(!h.is_ejected());
        assert_eq!(
            h.last(),
            Some(LastCheck {
                result: CheckResult::Pass,
                at: t2
            })
        );
    }

    #[test]
    fn a_healthy_backend_passing_changes_nothing() {
        let (h, s, now) = (Health::default(), spec(1, 1), Instant::now());
        for _ in 0..5 {
            assert_eq!(h.record(CheckResult::Pass, &s, now), Verdict::Unchanged);
        }
        h.reset();
        assert_eq!(h.streaks(), (0, 0));
        assert_eq!(h.last(), None);
    }
}
