//! Upstream pools: each configured upstream is a list of backends, each guarded by its own
//! [`CircuitBreaker`]. `upstream_peer` and the token exchange ask [`Upstream::attempt`] for a
//! backend the breakers admit; the [`Attempt`] it returns owns the breaker permit and
//! settles it exactly once. Classifying what counts as a failure lives in
//! [`crate::breaker::classify`], deciding what a failure means in [`crate::breaker`]; this
//! module owns the pools, the peers, the attempts and the metrics around them.

mod attempt;
pub mod bulkhead;
pub mod health;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

pub use self::attempt::Attempt;
use self::bulkhead::{Bulkhead, SHED_RETRY_AFTER, Shed};
use self::health::{CheckResult, Health, Verdict};

use pingora::upstreams::peer::HttpPeer;
use prometheus::{IntCounter, IntGauge};
use tracing::{info, warn};

use crate::{
    breaker::{
        BreakerState, CircuitBreaker, FailureKind, Transition, TransitionListener,
        TransitionReason, classify::StatusSet,
    },
    config::{HealthCheckSpec, UpstreamSpec},
    events::{EventBus, TransitionEvent},
    metrics,
};

/// Most backends one upstream may list: requests track the ones they tried in a `u64`.
pub const MAX_BACKENDS: usize = 64;

/// One backend address and its breaker.
pub struct Backend {
    pub label: Arc<str>,
    pub addr: SocketAddr,
    /// Shared with the next config's backend of the same upstream and address, so a
    /// reload keeps what the breaker learnt.
    pub breaker: Arc<CircuitBreaker>,
    /// Attempts admitted to this backend and not yet dropped (shared across reloads like
    /// the breaker, since requests started under the old config still hold theirs).
    in_flight: Arc<AtomicUsize>,
    /// What the active health checks concluded (shared across reloads like the breaker).
    pub health: Arc<Health>,
    peer: HttpPeer,
    /// This backend's series of `gateway_upstream_attempts_total`, one per outcome it can
    /// end with, `success` first (see [`BackendSeries`]).
    attempts: Vec<(&'static str, IntCounter)>,
    /// Its series of `gateway_health_checks_total` by [`CheckResult::ALL`], when checked.
    checks: Option<[IntCounter; CheckResult::ALL.len()]>,
}

/// The outcomes an attempt ends with besides a failure (see [`FailureKind::EACH`]).
const SETTLED_OUTCOMES: [&str; 2] = ["success", "cancelled"];

impl Backend {
    /// Counts one attempt on this backend of `upstream` under its final `outcome`.
    fn count_attempt(&self, upstream: &str, outcome: &'static str) {
        match self.attempts.iter().find(|(o, _)| *o == outcome) {
            Some((_, counter)) => counter.inc(),
            None => metrics::UPSTREAM_ATTEMPTS
                .with_label_values(&[upstream, &*self.label, outcome])
                .inc(),
        }
    }

    /// Attempts on this backend now: admitted by [`Upstream::attempt`] and not yet dropped.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("label", &self.label)
            .field("breaker", &self.breaker)
            .finish()
    }
}

/// A named pool of backends.
#[derive(Debug)]
pub struct Upstream {
    pub name: Arc<str>,
    pub breaker_name: Arc<str>,
    pub backends: Vec<Backend>,
    pub failure_statuses: StatusSet,
    pub connect_retries: u32,
    /// `max_in_flight` per backend (the counters are the backends' `in_flight`) and the
    /// upstream's one wait queue; shared across reloads like the breakers.
    pub bulkhead: Arc<Bulkhead>,
    /// Active health checks of every backend, if configured (run by `crate::checker`).
    pub health_check: Option<HealthCheckSpec>,
    next: AtomicUsize,
    /// This upstream's series of `gateway_breaker_rejections_total`, made (at 0) with it,
    /// so a rejection costs no label lookup.
    rejections: IntCounter,
}

/// No backend can take the request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    /// Until the earliest backend is expected to admit calls again.
    pub retry_after: Duration,
}

/// Why [`Upstream::attempt`] or [`Upstream::admit`] admitted no call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every backend's breaker refuses: the service is failing.
    Unavailable(Unavailable),
    /// Backends the breakers admit are all at `max_in_flight`, and the queue was full or
    /// the wait timed out: the service is busy, not broken.
    Overloaded(Shed),
}

impl Refused {
    /// How long the client is told to wait.
    pub fn retry_after(&self) -> Duration {
        match self {
            Refused::Unavailable(u) => u.retry_after,
            Refused::Overloaded(_) => SHED_RETRY_AFTER,
        }
    }
}

impl Upstream {
    /// Builds the pool. Backends that `previous` (the same upstream under the config being
    /// replaced) already had at the same address keep their breaker, under the new policy.
    /// A half-open probe holds its slot for at most the backend's connect and read timeouts:
    /// by then it has either been answered or failed, unless it is stuck on something other
    /// than the backend.
    /// Transitions of new breakers are published on `events`.
    pub fn new(
        spec: &UpstreamSpec,
        origin: Instant,
        previous: Option<&Upstream>,
        events: &Arc<EventBus>,
    ) -> Self {
        let probe_lease = spec.connect_timeout + spec.read_timeout;
        let backends = spec
            .backends
            .iter()
            .take(MAX_BACKENDS)
            .map(|b| {
                let mut peer = HttpPeer::new(
                    b.addr,
                    b.tls.is_some(),
                    b.tls.as_ref().map_or_else(String::new, |t| t.sni.clone()),
                );
                if let Some(tls) = &b.tls {
                    peer.options.verify_cert = tls.verify;
                    peer.options.verify_hostname = tls.verify;
                    peer.options.ca = tls.ca.as_ref().map(|ca| ca.for_pingora());
                }
                peer.options.connection_timeout = Some(spec.connect_timeout);
                peer.options.total_connection_timeout = Some(spec.connect_timeout);
                peer.options.read_timeout = Some(spec.read_timeout);
                peer.options.write_timeout = Some(spec.write_timeout);
                peer.options.idle_timeout = Some(spec.idle_timeout);
                let kept = previous
                    .and_then(|p| p.backends.iter().find(|old| old.addr == b.addr))
                    .map(|old| {
                        (
                            (old.label.clone(), old.breaker.clone()),
                            (old.in_flight.clone(), old.health.clone()),
                        )
                    });
                let (kept, counts) = kept.unzip();
                let (in_flight, health) = counts.unzip();
                // Kept even when the check is gone: `forget_checks` acts on that once the
                // reload is committed.
                let health: Arc<Health> = health.unwrap_or_default();
                let (label, breaker) = match kept {
                    Some((label, breaker)) => {
                        breaker.set_policy(spec.policy.clone());
                        breaker.set_probe_lease(probe_lease);
                        (label, breaker)
                    }
                    None => {
                        let gauge =
                            metrics::BREAKER_STATE.with_label_values(&[&*spec.name, &*b.label]);
                        gauge.set(BreakerState::Closed.gauge_value());
                        init_transition_series(&spec.name, &b.label);
                        let listener = Arc::new(TransitionLog {
                            upstream: spec.name.clone(),
                            backend: b.label.clone(),
                            gauge,
                            events: events.clone(),
                        });
                        let breaker =
                            CircuitBreaker::new(spec.policy.clone(), probe_lease, listener, origin);
                        (b.label.clone(), Arc::new(breaker))
                    }
                };
                let series = BackendSeries {
                    upstream: &spec.name,
                    backend: &label,
                    tls: b.tls.is_some(),
                    checked: spec.health_check.is_some(),
                };
                Backend {
                    attempts: series.attempts(),
                    checks: series.checks(),
                    label,
                    addr: b.addr,
                    breaker,
                    in_flight: in_flight.unwrap_or_default(),
                    health,
                    peer,
                }
            })
            .collect();
        let bulkhead = match previous {
            Some(p) => {
                p.bulkhead.set_limit(spec.limit);
                p.bulkhead.clone()
            }
            None => Arc::new(Bulkhead::new(spec.limit)),
        };
        bulkhead::init_shed_series(&spec.name, "upstream", spec.limit);
        Upstream {
            name: spec.name.clone(),
            breaker_name: spec.breaker.clone(),
            backends,
            failure_statuses: spec.failure_statuses.clone(),
            connect_retries: spec.connect_retries,
            bulkhead,
            health_check: spec.health_check.clone(),
            next: AtomicUsize::new(0),
            rejections: metrics::BREAKER_REJECTIONS.with_label_values(&[&*spec.name]),
        }
    }

    /// Admits one call: round-robin over the backends not yet `tried` (a bit per index) whose
    /// breaker admits a call now and that have a slot under `max_in_flight`. Open backends
    /// are skipped; half-open ones hand out probe permits. The slot is taken before the
    /// breaker's permit, so a call refused for want of a slot never touches the breaker.
    /// The [`Attempt`] owns both until it is settled and dropped. Never waits.
    pub fn attempt(self: &Arc<Self>, tried: u64, now: Instant) -> Result<Attempt, Refused> {
        let count = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut retry_after: Option<Duration> = None;
        let mut full = false;
        let mut refused = |rejected: crate::breaker::Rejected| {
            retry_after =
                Some(retry_after.map_or(rejected.retry_after, |r| r.min(rejected.retry_after)));
        };
        for offset in 0..count {
            let index = (start + offset) % count;
            if tried & (1 << index) != 0 {
                continue;
            }
            let backend = &self.backends[index];
            if let Err(rejected) = backend.breaker.peek(now) {
                refused(rejected);
                continue;
            }
            if let Some(check) = &self.health_check {
                // With active checks, only a check brings a backend back: an ejected one is
                // skipped, and an open breaker is not half-opened by client requests.
                if backend.health.is_ejected() || backend.breaker.state() == BreakerState::Open {
                    refused(crate::breaker::Rejected {
                        retry_after: check.interval,
                        state: BreakerState::Open,
                    });
                    continue;
                }
            }
            if !self.bulkhead.try_take(&backend.in_flight) {
                full = true;
                continue;
            }
            match backend.breaker.try_acquire(now) {
                Ok(permit) => return Ok(Attempt::admit(self.clone(), index, permit, now)),
                Err(rejected) => {
                    self.bulkhead.release(&backend.in_flight);
                    refused(rejected);
                }
            }
        }
        if full {
            return Err(Refused::Overloaded(Shed::QueueFull));
        }
        Err(Refused::Unavailable(Unavailable {
            retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
        }))
    }

    /// Like [`Upstream::attempt`], but when the backends are only busy (at `max_in_flight`),
    /// waits in the upstream's queue for a slot, within `max_queued` and `queue_timeout`.
    /// A breaker refusal ends the wait at once.
    pub async fn admit(self: &Arc<Self>, tried: u64) -> Result<Attempt, Refused> {
        let admitted = self
            .bulkhead
            .admit(|| match self.attempt(tried, Instant::now()) {
                Err(Refused::Overloaded(_)) => None,
                other => Some(other),
            })
            .await;
        admitted.unwrap_or_else(|shed| Err(Refused::Overloaded(shed)))
    }

    /// Acts on one active health check of backend `index` at `now`: counts it, and ejects
    /// (opens the breaker, reason "health check …") or restores (closes it) as the state
    /// machine decides. A breaker the traffic opened is closed by the first check that
    /// passes after its open period. Returns the verdict.
    pub fn record_check(&self, index: usize, result: CheckResult, now: Instant) -> Verdict {
        let (Some(spec), Some(backend)) = (&self.health_check, self.backends.get(index)) else {
            return Verdict::Unchanged;
        };
        match &backend.checks {
            Some(series) => series[result as usize].inc(),
            // Not reached (a checked upstream's backends have theirs); counted all the same.
            None => metrics::HEALTH_CHECKS
                .with_label_values(&[&*self.name, &*backend.label, result.as_str()])
                .inc(),
        }
        let verdict = backend.health.record(result, spec, now);
        let breaker = &backend.breaker;
        match verdict {
            Verdict::Eject { failures } => {
                breaker.force_open(
                    TransitionReason::HealthCheckFailed { checks: failures },
                    now,
                );
            }
            Verdict::Restore { passes } => {
                breaker.force_close(TransitionReason::HealthCheckPassed { checks: passes }, now);
            }
            Verdict::Unchanged => {
                let ejected = backend.health.is_ejected();
                if ejected && breaker.state() == BreakerState::Closed {
                    // Ejected, but the breaker was closed under it (a reload that added the
                    // check to an ejected backend's upstream, a lost race): open it again.
                    let (_, failures) = backend.health.streaks();
                    breaker.force_open(
                        TransitionReason::HealthCheckFailed { checks: failures },
                        now,
                    );
                } else if !ejected
                    && result.passed()
                    && breaker.state() == BreakerState::Open
                    && breaker.peek(now).is_ok()
                {
                    let (passes, _) = backend.health.streaks();
                    breaker
                        .force_close(TransitionReason::HealthCheckPassed { checks: passes }, now);
                }
            }
        }
        verdict
    }

    /// Run when this pool replaces the previous one (a reload, once nothing can fail it):
    /// on an upstream without `health_check`, what earlier checks concluded no longer
    /// applies. A backend the checks had ejected is back in selection at once (its breaker
    /// closes, reason "health check removed"): the check was the only reason it was out,
    /// and the check is gone (Envoy likewise forgets a host's failed-active-check flag with
    /// its health checker). If it still fails traffic, its breaker opens again as usual.
    pub fn forget_checks(&self, now: Instant) {
        if self.health_check.is_some() {
            return;
        }
        for backend in &self.backends {
            let ejected = backend.health.is_ejected();
            backend.health.reset();
            if ejected {
                backend
                    .breaker
                    .force_close(TransitionReason::HealthCheckRemoved, now);
            }
        }
    }

    /// Counts a request refused because no breaker admitted it.
    pub fn count_rejection(&self) {
        self.rejections.inc();
    }

    /// Whether a backend other than those `tried` exists at all.
    pub fn has_untried(&self, tried: u64) -> bool {
        (0..self.backends.len()).any(|i| tried & (1 << i) == 0)
    }

    /// Forgets the metric series of backends that `next` no longer has.
    pub fn retire_removed(&self, next: Option<&Upstream>) {
        for backend in &self.backends {
            let kept = next.is_some_and(|n| n.backends.iter().any(|b| b.addr == backend.addr));
            if !kept {
                let _ = metrics::BREAKER_STATE.remove_label_values(&[&*self.name, &*backend.label]);
                let _ = metrics::UPSTREAM_IN_FLIGHT
                    .remove_label_values(&[&*self.name, &*backend.label]);
                for result in CheckResult::ALL {
                    let _ = metrics::HEALTH_CHECKS.remove_label_values(&[
                        &*self.name,
                        &*backend.label,
                        result.as_str(),
                    ]);
                }
                let series = [("upstream", &*self.name), ("backend", &*backend.label)];
                metrics::remove_series(&metrics::UPSTREAM_ATTEMPTS, &series);
                metrics::remove_series(&metrics::BREAKER_TRANSITIONS, &series);
            }
        }
        if next.is_none() {
            let _ = metrics::UPSTREAM_QUEUED.remove_label_values(&[&*self.name, "upstream"]);
            let _ = metrics::BREAKER_REJECTIONS.remove_label_values(&[&*self.name]);
            metrics::remove_series(
                &metrics::UPSTREAM_SHED,
                &[("upstream", &*self.name), ("limit", "upstream")],
            );
        }
    }

    pub fn peer(&self, backend: usize) -> Option<&HttpPeer> {
        self.backends.get(backend).map(|b| &b.peer)
    }
}

/// What a backend's series are made of. They are created at 0 when the backend is
/// compiled, for every label value the config already tells, for the reason given at
/// [`init_transition_series`]; a backend kept by a reload finds its series as they were.
struct BackendSeries<'a> {
    upstream: &'a str,
    backend: &'a str,
    /// Called over TLS: the TLS failures are possible.
    tls: bool,
    /// Its upstream has active health checks.
    checked: bool,
}

impl BackendSeries<'_> {
    fn attempts(&self) -> Vec<(&'static str, IntCounter)> {
        let failures = FailureKind::EACH
            .iter()
            .filter(|kind| self.tls || !kind.needs_tls())
            .map(FailureKind::as_str);
        SETTLED_OUTCOMES
            .into_iter()
            .chain(failures)
            .map(|outcome| {
                let counter = metrics::UPSTREAM_ATTEMPTS.with_label_values(&[
                    self.upstream,
                    self.backend,
                    outcome,
                ]);
                (outcome, counter)
            })
            .collect()
    }

    fn checks(&self) -> Option<[IntCounter; CheckResult::ALL.len()]> {
        self.checked.then(|| {
            CheckResult::ALL.map(|result| {
                metrics::HEALTH_CHECKS.with_label_values(&[
                    self.upstream,
                    self.backend,
                    result.as_str(),
                ])
            })
        })
    }
}

/// The breaker's usual cycle, counted from 0 as soon as a backend appears: a counter
/// series born at 1 reads as no increase to Prometheus's `increase()` and `rate()`, which
/// would hide a backend's first opening from the dashboard and its first recovery from
/// the flapping alert. (Rarer edges, such as a health check closing an open breaker,
/// appear when they first happen.)
fn init_transition_series(upstream: &str, backend: &str) {
    use BreakerState::{Closed, HalfOpen, Open};
    for (from, to) in [
        (Closed, Open),
        (Open, HalfOpen),
        (HalfOpen, Closed),
        (HalfOpen, Open),
    ] {
        metrics::BREAKER_TRANSITIONS.with_label_values(&[
            upstream,
            backend,
            from.as_str(),
            to.as_str(),
        ]);
    }
}

/// Turns breaker transitions into a log line, metrics and an event.
struct TransitionLog {
    upstream: Arc<str>,
    backend: Arc<str>,
    gauge: IntGauge,
    events: Arc<EventBus>,
}

impl TransitionListener for TransitionLog {
    fn on_transition(&self, t: &Transition) {
        self.gauge.set(t.to.gauge_value());
        metrics::BREAKER_TRANSITIONS
            .with_label_values(&[
                &*self.upstream,
                &*self.backend,
                t.from.as_str(),
                t.to.as_str(),
            ])
            .inc();
        let open_for_ms = t.open_for.map(|d| d.as_millis() as u64);
        if t.to == BreakerState::Open {
            warn!(
                upstream = %self.upstream, backend = %self.backend,
                from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason, open_for_ms,
                "circuit breaker opened"
            );
        } else {
            info!(
                upstream = %self.upstream, backend = %self.backend,
                from = t.from.as_str(), to = t.to.as_str(), reason = %t.reason,
                "circuit breaker state changed"
            );
        }
        self.events.transition(TransitionEvent {
            upstream: self.upstream.to_string(),
            backend: self.backend.to_string(),
            from: t.from.as_str(),
            to: t.to.as_str(),
            reason: t.reason.to_string(),
            at: humantime::format_rfc3339_millis(t.at_wall).to_string(),
            open_for_seconds: t.open_for.map(|d| d.as_secs_f64()),
        });
    }
}
