//! Circuit breaker for one backend address: the state machine that decides whether a call may go out.
//!
//! The lowest layer of the gateway: it imports nothing else from the crate, so `config` can compile policies
//! into it and `upstream` can build pools over it. [`classify`] says what an attempt's ending means for the
//! upstream; this module decides what to do about it.
//!
//! The upstream pool owns one [`CircuitBreaker`] per backend. Peer selection calls [`CircuitBreaker::peek`] to
//! skip backends that would refuse, then [`CircuitBreaker::try_acquire`] for the chosen one; the [`Permit`] is
//! owned by an `upstream::Attempt` until the attempt concludes, when the classified [`CallOutcome`] goes back
//! through [`CircuitBreaker::record`] (one outcome per permit). A success is recorded when the response header
//! arrives; if the backend then breaks the body it had started, [`CircuitBreaker::revoke_success`] turns that
//! success into a failure (at most once, with the [`Receipt`] the success returned). Classifying a response (which
//! statuses are failures) is [`classify`]'s job; the state machine only decides. The admin page reads
//! [`CircuitBreaker::snapshot`].
//!
//! # States
//! Closed → Open when a trip condition holds (consecutive failures, failure rate or slow-call rate over a sliding
//! window). Open rejects until `open_until`; the first `try_acquire` at or after it moves to HalfOpen and takes the
//! first probe. HalfOpen admits `half_open_probes` probes; all of them succeeding closes the breaker, any failure
//! (or a slow probe, when slow-call tripping is on) opens it again for twice as long, capped at `max_open_for`.
//!
//! A probe holds its slot for at most the *probe lease* (the backend's connect + read timeouts): once every
//! outstanding probe has held its slot that long without an outcome, the next caller starts a fresh round of
//! probes (a HalfOpen → HalfOpen transition, "probe lease expired"), and the late outcomes of the expired probes
//! are ignored. A probe that never reports (its request stuck on something other than the backend) can therefore
//! never keep the breaker half-open and refusing.
//!
//! # Concurrency
//! The hot path takes no lock. The whole state machine lives in one `AtomicU64` (see [`Word`]): phase, episode
//! generation, and the half-open probe counters, so admitting a probe or counting its success is a single
//! compare-exchange that also proves the episode has not changed underneath. A transition is claimed by one
//! compare-exchange into a *transient* phase (`Opening`, `HalfOpening`, `Closing`) that only the winning thread may
//! leave: it writes the side fields (`open_until`, backoff, window reset), records the transition, calls the
//! listener, then publishes the final phase with one store. Nobody waits on it: while a transition is in flight,
//! callers are rejected (see [`HALF_OPEN_RETRY_AFTER`]) and outcomes are ignored as stale. Calling the listener
//! before publishing keeps listener calls strictly ordered, so a gauge it sets can never end up showing a state
//! older than the real one.

pub mod classify;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use arc_swap::{ArcSwap, ArcSwapOption};

/// `retry_after` given to calls rejected while half-open (all probe slots taken) or while a transition is being
/// published. Probes usually conclude within a request timeout, so a short constant beats guessing.
pub const HALF_OPEN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Upper bound applied to `half_open_probes` (the probe counters are 16-bit fields of the state word).
pub const MAX_HALF_OPEN_PROBES: u32 = COUNT_MASK as u32;

/// Number of buckets in the sliding window.
const WINDOW_BUCKETS: u64 = 10;
/// Narrowest bucket, whatever the configured window.
const MIN_BUCKET_WIDTH: Duration = Duration::from_millis(1);
/// Shortest open period, so that a zero `open_for` cannot make doubling a no-op.
const MIN_OPEN_FOR: Duration = Duration::from_millis(1);
/// Shortest probe lease, so that a zero lease cannot make every probe expire at once.
const MIN_PROBE_LEASE: Duration = Duration::from_millis(1);

/// Thresholds of a breaker. Validated by the config module; the breaker clamps odd values rather than panic.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// Trip after this many failures in a row (`>= 1`); `None` disables the condition.
    pub consecutive_failures: Option<u32>,
    /// Trip when failures / calls over the window reach this fraction (`(0, 1]`); `None` disables it.
    pub failure_rate: Option<f64>,
    /// Rates are only judged once the window holds at least this many calls (`>= 1`).
    pub minimum_calls: u32,
    /// Length of the sliding window the rates are computed over (`> 0`).
    pub window: Duration,
    /// A call is slow when it took strictly longer than this (`> 0`).
    pub slow_call_duration: Duration,
    /// Trip when slow calls / calls over the window reach this fraction (`(0, 1]`); `None` disables it, and also
    /// stops a slow probe from counting as a failed one.
    pub slow_call_rate: Option<f64>,
    /// First open period (`> 0`); doubled on each re-trip from half-open.
    pub open_for: Duration,
    /// Cap on the doubled open period (`>= open_for`).
    pub max_open_for: Duration,
    /// Probes admitted per half-open episode; this many successes close the breaker (`>= 1`).
    pub half_open_probes: u32,
}

/// Public state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow; outcomes feed the trip conditions.
    Closed,
    /// Every call is rejected until the open period ends.
    Open,
    /// A limited number of probe calls decide whether to close or open again.
    HalfOpen,
}

impl BreakerState {
    /// Stable name for logs, metrics and the admin page.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// Value for a state gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge_value(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }
}

/// Why an attempt counted as a failure of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The connection was refused or reset before it was established.
    ConnectFailed,
    /// The connection was not established in time.
    ConnectTimeout,
    /// The backend's TLS certificate failed verification (expired, for another name, from
    /// an untrusted issuer): a failure to connect.
    TlsVerification,
    /// The TLS handshake with the backend failed otherwise (no common protocol version or
    /// cipher, an alert, a plaintext server): a failure to connect.
    TlsHandshake,
    /// The upstream did not answer (or stalled) within the read timeout.
    ReadTimeout,
    /// The request could not be written within the write timeout.
    WriteTimeout,
    /// The response ended before it was complete.
    ResponseIncomplete,
    /// The upstream answered with a status the classifier counts as a failure.
    Status(u16),
}

impl FailureKind {
    /// One failure of each kind (any status stands for `Status`): every failure `outcome`
    /// of `gateway_upstream_attempts_total`, whose series are created at 0 with a backend.
    /// A new kind goes here too.
    pub const EACH: [FailureKind; 8] = [
        FailureKind::ConnectFailed,
        FailureKind::ConnectTimeout,
        FailureKind::TlsVerification,
        FailureKind::TlsHandshake,
        FailureKind::ReadTimeout,
        FailureKind::WriteTimeout,
        FailureKind::ResponseIncomplete,
        FailureKind::Status(500),
    ];

    /// Whether only a backend called over TLS can fail so.
    pub fn needs_tls(&self) -> bool {
        matches!(
            self,
            FailureKind::TlsVerification | FailureKind::TlsHandshake
        )
    }

    /// Stable name for logs and metric labels (statuses collapse into one label to keep cardinality bounded).
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::ConnectFailed => "connect_failed",
            FailureKind::ConnectTimeout => "connect_timeout",
            FailureKind::TlsVerification => "tls_verification",
            FailureKind::TlsHandshake => "tls_handshake",
            FailureKind::ReadTimeout => "read_timeout",
            FailureKind::WriteTimeout => "write_timeout",
            FailureKind::ResponseIncomplete => "response_incomplete",
            FailureKind::Status(_) => "failure_status",
        }
    }
}

/// What one admitted attempt amounted to, as classified by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The upstream did its job (this includes statuses the classifier does not call failures, such as 4xx).
    Success {
        /// Time the attempt took, judged against `slow_call_duration`.
        elapsed: Duration,
    },
    /// The upstream failed the attempt.
    Failure {
        /// How it failed.
        kind: FailureKind,
        /// Time the attempt took, judged against `slow_call_duration`.
        elapsed: Duration,
    },
    /// The attempt says nothing about the upstream (e.g. the client went away). Records nothing, but gives a
    /// half-open probe slot back.
    Cancelled,
}

/// Admission ticket returned by [`CircuitBreaker::try_acquire`]; hand it back to [`CircuitBreaker::record`].
///
/// Plain data. The gateway never holds one bare: `upstream::Attempt` owns it and settles it exactly once, on drop
/// at the latest. A probe permit that is never recorded holds its slot for the probe lease at most. It carries the
/// generation of the episode that issued it, so outcomes that arrive after the breaker moved on are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    generation: u32,
    probe: bool,
}

impl Permit {
    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// What [`CircuitBreaker::record`] returns for a success it counted: the right to revoke that success once, should
/// the call turn out to have failed after all (the backend broke off the response body it had started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    generation: u32,
    probe: bool,
    /// The run of failures the success ended; a revocation restores it, so a backend that always breaks its bodies
    /// still reaches `consecutive_failures`.
    run_before: u32,
}

/// A call the breaker refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// How long until a call may be admitted again (the caller rounds it up for `Retry-After`).
    pub retry_after: Duration,
    /// State that refused the call.
    pub state: BreakerState,
}

/// Why a transition happened.
#[derive(Debug, Clone, PartialEq)]
pub enum TransitionReason {
    /// Closed → Open: this many failures in a row.
    ConsecutiveFailures {
        /// Length of the run.
        count: u32,
    },
    /// Closed → Open: failure rate over the window.
    FailureRate {
        /// Failures / calls, in `[0, 1]`.
        rate: f64,
        /// Calls in the window.
        calls: u32,
    },
    /// Closed → Open: slow-call rate over the window.
    SlowCallRate {
        /// Slow calls / calls, in `[0, 1]`.
        rate: f64,
        /// Calls in the window.
        calls: u32,
    },
    /// Open → HalfOpen.
    OpenPeriodElapsed,
    /// HalfOpen → Open.
    ProbeFailed {
        /// How the probe failed; `None` for a probe that succeeded too slowly.
        kind: Option<FailureKind>,
    },
    /// HalfOpen → Closed.
    ProbesSucceeded {
        /// Probes that succeeded.
        probes: u32,
    },
    /// HalfOpen → HalfOpen: probes held their slots past the probe lease without an outcome; a fresh round of
    /// probes starts and their late outcomes are ignored.
    ProbeLeaseExpired {
        /// Probes whose slots were reclaimed.
        outstanding: u32,
    },
    /// Any → Open: active health checks failed this many times in a row ([`CircuitBreaker::force_open`]).
    HealthCheckFailed {
        /// Length of the run.
        checks: u32,
    },
    /// Open or HalfOpen → Closed: active health checks passed ([`CircuitBreaker::force_close`]).
    HealthCheckPassed {
        /// Passes in a row.
        checks: u32,
    },
    /// Open or HalfOpen → Closed: a reload removed the health check that had ejected the backend, and with it
    /// the only reason it was out ([`CircuitBreaker::force_close`]).
    HealthCheckRemoved,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::ConsecutiveFailures { count } => {
                write!(f, "{count} consecutive failure{}", plural(*count))
            }
            TransitionReason::FailureRate { rate, calls } => {
                write!(
                    f,
                    "failure rate {:.0}% over {calls} call{}",
                    rate * 100.0,
                    plural(*calls)
                )
            }
            TransitionReason::SlowCallRate { rate, calls } => {
                write!(
                    f,
                    "slow-call rate {:.0}% over {calls} call{}",
                    rate * 100.0,
                    plural(*calls)
                )
            }
            TransitionReason::OpenPeriodElapsed => f.write_str("open period elapsed"),
            TransitionReason::ProbeFailed { kind: Some(kind) } => {
                write!(f, "probe failed: {}", kind.as_str())
            }
            TransitionReason::ProbeFailed { kind: None } => f.write_str("probe failed: slow call"),
            TransitionReason::ProbesSucceeded { probes } => {
                write!(f, "{probes} probe{} succeeded", plural(*probes))
            }
            TransitionReason::ProbeLeaseExpired { outstanding } => write!(
                f,
                "{outstanding} probe{} held past the probe lease",
                plural(*outstanding)
            ),
            TransitionReason::HealthCheckFailed { checks } => {
                write!(
                    f,
                    "health check failed {checks} time{} in a row",
                    plural(*checks)
                )
            }
            TransitionReason::HealthCheckPassed { checks } => {
                write!(
                    f,
                    "health check passed {checks} time{} in a row",
                    plural(*checks)
                )
            }
            TransitionReason::HealthCheckRemoved => f.write_str("health check removed"),
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// One state change, as reported to the listener and kept for the admin page.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// State left.
    pub from: BreakerState,
    /// State entered.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// The injected `now` of the call that caused it.
    pub at: Instant,
    /// `at` on the wall clock (derived from the breaker's origin, so it follows the injected time).
    pub at_wall: SystemTime,
    /// The open period entered; `Some` exactly when `to` is Open.
    pub open_for: Option<Duration>,
}

/// Told about every transition, once, synchronously, by the thread that won it (the gateway logs it and updates
/// metrics). Keep it short: callers of this breaker are rejected until it returns.
pub trait TransitionListener: Send + Sync {
    /// Called once per transition, in transition order.
    fn on_transition(&self, transition: &Transition);
}

/// Point-in-time view for the admin page.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSnapshot {
    /// Current state.
    pub state: BreakerState,
    /// Calls in the current window.
    pub calls: u32,
    /// Failures in the current window.
    pub failures: u32,
    /// Slow calls (failed or not) in the current window.
    pub slow_calls: u32,
    /// failures / calls; 0 when there are no calls.
    pub failure_rate: f64,
    /// Current run of failures.
    pub consecutive_failures: u32,
    /// Time left before the breaker half-opens; `Some` while Open.
    pub until_half_open: Option<Duration>,
    /// Current (backed-off) open period.
    pub open_for: Duration,
    /// Most recent transition, if any.
    pub last_transition: Option<Transition>,
}

/// The circuit breaker of one backend. Shared by reference (`Arc`) across worker threads.
pub struct CircuitBreaker {
    /// The state machine: see [`Word`].
    word: AtomicU64,
    /// End of the open period, in nanoseconds since `origin`. Written only by the thread owning an `Opening`.
    open_until: AtomicU64,
    /// Current open period in nanoseconds (the backoff). Written only by transition owners.
    open_for: AtomicU64,
    /// Failed probes since the breaker last closed: the period is `open_for << reopens`
    /// under the policy in force at the re-trip, so a reloaded `open_for` governs at once.
    reopens: AtomicU32,
    /// Current run of failures while closed.
    consecutive: AtomicU32,
    /// Longest a probe may hold its slot without an outcome, in nanoseconds.
    probe_lease: AtomicU64,
    /// When the lease of the most recently admitted probe of the episode ends, in nanoseconds since `origin`.
    lease_until: AtomicU64,
    window: Window,
    policy: ArcSwap<BreakerPolicy>,
    last_transition: ArcSwapOption<Transition>,
    listener: Arc<dyn TransitionListener>,
    origin: Instant,
    /// Wall-clock time of `origin`, to stamp transitions consistently with the injected `now`.
    wall_origin: SystemTime,
}

impl CircuitBreaker {
    /// A closed breaker whose probes hold their slots for at most `probe_lease`. All times given later are measured
    /// from `origin` (earlier instants count as `origin`).
    pub fn new(
        policy: Arc<BreakerPolicy>,
        probe_lease: Duration,
        listener: Arc<dyn TransitionListener>,
        origin: Instant,
    ) -> Self {
        let limits = Limits::of(&policy);
        let real_now = Instant::now();
        let wall_now = SystemTime::now();
        let wall_origin = if real_now >= origin {
            wall_now.checked_sub(real_now.duration_since(origin))
        } else {
            wall_now.checked_add(origin.duration_since(real_now))
        }
        .unwrap_or(wall_now);
        CircuitBreaker {
            word: AtomicU64::new(Word::new(Phase::Closed, 0, 0, 0).0),
            open_until: AtomicU64::new(0),
            open_for: AtomicU64::new(limits.open_for),
            reopens: AtomicU32::new(0),
            consecutive: AtomicU32::new(0),
            probe_lease: AtomicU64::new(nanos(probe_lease.max(MIN_PROBE_LEASE))),
            lease_until: AtomicU64::new(0),
            window: Window::new(),
            policy: ArcSwap::new(policy),
            last_transition: ArcSwapOption::empty(),
            listener,
            origin,
            wall_origin,
        }
    }

    /// Admits a call or says how long to wait. While open, the first call at or after the end of the open period
    /// moves the breaker to half-open and becomes its first probe.
    pub fn try_acquire(&self, now: Instant) -> Result<Permit, Rejected> {
        let mut word = self.load();
        loop {
            match word.phase() {
                Phase::Closed => {
                    return Ok(Permit {
                        generation: word.generation(),
                        probe: false,
                    });
                }
                Phase::Open => {
                    let now_ns = self.nanos(now);
                    let open_until = self.open_until.load(Ordering::Relaxed);
                    if now_ns < open_until {
                        return Err(Rejected {
                            retry_after: Duration::from_nanos(open_until - now_ns),
                            state: BreakerState::Open,
                        });
                    }
                    // Exactly one caller wins this exchange; it takes the first probe slot.
                    match self.claim(word, Phase::HalfOpening) {
                        Ok(claimed) => {
                            let generation = claimed.generation();
                            self.lease_until
                                .store(self.lease_end(now_ns), Ordering::Relaxed);
                            self.complete(
                                BreakerState::Open,
                                BreakerState::HalfOpen,
                                TransitionReason::OpenPeriodElapsed,
                                now,
                                None,
                                Word::new(Phase::HalfOpen, generation, 1, 0),
                            );
                            return Ok(Permit {
                                generation,
                                probe: true,
                            });
                        }
                        Err(actual) => word = actual,
                    }
                }
                Phase::HalfOpen => {
                    let probes = Limits::of(&self.policy.load()).probes;
                    let now_ns = self.nanos(now);
                    if word.issued() >= probes {
                        if !self.lease_expired(word, now_ns) {
                            return Err(self.rejection(Phase::HalfOpen));
                        }
                        match self.claim(word, Phase::HalfOpening) {
                            Ok(claimed) => return Ok(self.renew_probes(word, claimed, now)),
                            Err(actual) => {
                                word = actual;
                                continue;
                            }
                        }
                    }
                    // Extended before the slot is taken, so that a concurrent caller never sees this probe's slot
                    // taken under an older lease and reclaims it at once.
                    self.lease_until
                        .fetch_max(self.lease_end(now_ns), Ordering::Relaxed);
                    let next = word.with_counts(word.issued() + 1, word.succeeded());
                    match self.exchange(word, next) {
                        Ok(()) => {
                            return Ok(Permit {
                                generation: word.generation(),
                                probe: true,
                            });
                        }
                        Err(actual) => word = actual,
                    }
                }
                transient => return Err(self.rejection(transient)),
            }
        }
    }

    /// Reports how a call admitted by `permit` ended. Outcomes of permits from an earlier episode (the breaker
    /// has changed state since the permit was issued) are ignored: they describe a situation that a transition
    /// has already acted on, and must not, say, close a breaker that re-opened or count a pre-trip call
    /// towards the next closed period. A success counted in its own episode returns a [`Receipt`].
    pub fn record(&self, permit: Permit, outcome: CallOutcome, now: Instant) -> Option<Receipt> {
        let (failure, elapsed) = match outcome {
            CallOutcome::Success { elapsed } => (None, elapsed),
            CallOutcome::Failure { kind, elapsed } => (Some(kind), elapsed),
            CallOutcome::Cancelled => {
                self.release_probe(permit);
                return None;
            }
        };
        let word = self.load();
        if word.generation() != permit.generation {
            return None;
        }
        let limits = Limits::of(&self.policy.load());
        let slow = elapsed > limits.slow_call_duration;
        let run_before = match word.phase() {
            Phase::Closed if !permit.probe => self.record_closed(word, failure, slow, &limits, now),
            Phase::HalfOpen if permit.probe => {
                self.record_probe(word, failure, slow, &limits, now);
                0
            }
            // No permit is ever issued in the other phases, nor with a mismatched probe flag.
            _ => return None,
        };
        failure.is_none().then_some(Receipt {
            generation: permit.generation,
            probe: permit.probe,
            run_before,
        })
    }

    /// The call a success was recorded for failed after all: the backend broke off the response body it had
    /// started (`kind` says how). In the success's own episode, a closed breaker counts one more failure without
    /// counting another call (and restores the run of failures the success had ended), then applies its trip
    /// conditions; a half-open breaker treats it as a failed probe and opens again. Once the breaker has moved on
    /// (a later episode, say the one that success closed), the revocation is ignored like any stale outcome.
    pub fn revoke_success(&self, receipt: Receipt, kind: FailureKind, now: Instant) {
        let word = self.load();
        if word.generation() != receipt.generation {
            return;
        }
        let limits = Limits::of(&self.policy.load());
        match word.phase() {
            Phase::Closed if !receipt.probe => {
                let now_ns = self.nanos(now);
                self.window
                    .add_failure_to_counted_call(now_ns / limits.bucket_width);
                let added = receipt.run_before.saturating_add(1);
                let run = self
                    .consecutive
                    .fetch_add(added, Ordering::Relaxed)
                    .saturating_add(added);
                let reason = match limits.consecutive_failures {
                    Some(threshold) if run >= threshold => {
                        Some(TransitionReason::ConsecutiveFailures { count: run })
                    }
                    _ => self.rate_trip(now_ns, &limits),
                };
                if let Some(reason) = reason {
                    self.open(word, reason, &limits, now);
                }
            }
            Phase::HalfOpen if receipt.probe => self.open(
                word,
                TransitionReason::ProbeFailed { kind: Some(kind) },
                &limits,
                now,
            ),
            _ => {}
        }
    }

    /// Stored state (one atomic load; an elapsed open period shows as Open until a call arrives).
    pub fn state(&self) -> BreakerState {
        self.load().phase().public()
    }

    /// Whether a call would be admitted now, without consuming a probe slot or changing state (for choosing among
    /// backends); the rejection otherwise.
    pub fn peek(&self, now: Instant) -> Result<(), Rejected> {
        let word = self.load();
        match word.phase() {
            Phase::Closed => Ok(()),
            Phase::Open => {
                let now_ns = self.nanos(now);
                let open_until = self.open_until.load(Ordering::Relaxed);
                if now_ns < open_until {
                    Err(Rejected {
                        retry_after: Duration::from_nanos(open_until - now_ns),
                        state: BreakerState::Open,
                    })
                } else {
                    Ok(())
                }
            }
            Phase::HalfOpen => {
                if word.issued() < Limits::of(&self.policy.load()).probes
                    || self.lease_expired(word, self.nanos(now))
                {
                    Ok(())
                } else {
                    Err(self.rejection(Phase::HalfOpen))
                }
            }
            transient => Err(self.rejection(transient)),
        }
    }

    /// Numbers for the admin page. The window counts are approximate under concurrent recording.
    pub fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        let word = self.load();
        let limits = Limits::of(&self.policy.load());
        let now_ns = self.nanos(now);
        let counts = self.window.sum(now_ns / limits.bucket_width);
        let failure_rate = if counts.calls == 0 {
            0.0
        } else {
            (f64::from(counts.failures) / f64::from(counts.calls)).min(1.0)
        };
        let until_half_open = match word.phase() {
            Phase::Open => Some(Duration::from_nanos(
                self.open_until
                    .load(Ordering::Relaxed)
                    .saturating_sub(now_ns),
            )),
            Phase::Opening => Some(Duration::from_nanos(self.open_for.load(Ordering::Relaxed))),
            _ => None,
        };
        let open_for = match word.phase() {
            // The backoff was reset on closing; report what the next trip would use under the current policy.
            Phase::Closed => limits.open_for,
            _ => self.open_for.load(Ordering::Relaxed),
        };
        BreakerSnapshot {
            state: word.phase().public(),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            failure_rate,
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            until_half_open,
            open_for: Duration::from_nanos(open_for),
            last_transition: self.last_transition.load_full().map(|t| (*t).clone()),
        }
    }

    /// Opens the breaker on an outside verdict (failed active health checks), from whatever state it is in, for
    /// the policy's `open_for`; an open breaker is reopened with the new reason. Returns whether it did (a
    /// transition another thread is publishing at the same moment wins; the caller tries again at its next
    /// verdict).
    pub fn force_open(&self, reason: TransitionReason, now: Instant) -> bool {
        let limits = Limits::of(&self.policy.load());
        let word = self.load();
        match word.phase() {
            Phase::Closed | Phase::HalfOpen | Phase::Open => {
                let generation = word.generation();
                self.open(word, reason, &limits, now);
                let after = self.load();
                after.phase() == Phase::Open && after.generation() != generation
            }
            _ => false,
        }
    }

    /// Closes an open or half-open breaker on an outside verdict (active health checks passed): the window,
    /// the run of failures and the backoff start afresh, as after probes that succeeded. Returns whether it did.
    pub fn force_close(&self, reason: TransitionReason, now: Instant) -> bool {
        let word = self.load();
        if !matches!(word.phase(), Phase::Open | Phase::HalfOpen) {
            return false;
        }
        let Ok(claimed) = self.claim(word, Phase::Closing) else {
            return false;
        };
        let limits = Limits::of(&self.policy.load());
        self.window.clear();
        self.consecutive.store(0, Ordering::Relaxed);
        self.open_for.store(limits.open_for, Ordering::Relaxed);
        self.reopens.store(0, Ordering::Relaxed);
        self.complete(
            word.phase().public(),
            BreakerState::Closed,
            reason,
            now,
            None,
            Word::new(Phase::Closed, claimed.generation(), 0, 0),
        );
        true
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<BreakerPolicy> {
        self.policy.load_full()
    }

    /// Replaces the policy without touching the state: new thresholds apply from the next recorded outcome, an
    /// open breaker keeps its `open_until`, and a half-open one its probe counts. A new window length clears the
    /// window (its buckets were cut for the old length).
    pub fn set_policy(&self, policy: Arc<BreakerPolicy>) {
        let window = policy.window;
        let old = self.policy.swap(policy);
        if old.window != window {
            self.window.clear();
        }
    }

    /// Replaces the probe lease; probes admitted from now on hold their slots for at most `lease`.
    pub fn set_probe_lease(&self, lease: Duration) {
        self.probe_lease
            .store(nanos(lease.max(MIN_PROBE_LEASE)), Ordering::Relaxed);
    }

    /// The probe lease in force.
    pub fn probe_lease(&self) -> Duration {
        Duration::from_nanos(self.probe_lease.load(Ordering::Relaxed))
    }

    fn load(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    fn lease_end(&self, now_ns: u64) -> u64 {
        now_ns.saturating_add(self.probe_lease.load(Ordering::Relaxed))
    }

    /// Whether every probe slot taken in this half-open episode is held by a probe whose lease has run out.
    fn lease_expired(&self, word: Word, now_ns: u64) -> bool {
        word.issued() > word.succeeded() && now_ns >= self.lease_until.load(Ordering::Relaxed)
    }

    /// Finishes a claimed HalfOpen → HalfOpen transition: the slots of the expired probes are reclaimed (their
    /// late outcomes belong to the old generation and are ignored), the successes already counted stay, and the
    /// caller takes the first slot of the new round.
    fn renew_probes(&self, previous: Word, claimed: Word, now: Instant) -> Permit {
        let generation = claimed.generation();
        let succeeded = previous.succeeded();
        self.lease_until
            .store(self.lease_end(self.nanos(now)), Ordering::Relaxed);
        self.complete(
            BreakerState::HalfOpen,
            BreakerState::HalfOpen,
            TransitionReason::ProbeLeaseExpired {
                outstanding: previous.issued() - succeeded,
            },
            now,
            None,
            Word::new(Phase::HalfOpen, generation, succeeded + 1, succeeded),
        );
        Permit {
            generation,
            probe: true,
        }
    }

    fn nanos(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.origin))
    }

    fn exchange(&self, current: Word, new: Word) -> Result<(), Word> {
        self.word
            .compare_exchange(current.0, new.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Word)
    }

    /// Claims the transition out of `from` into the transient phase `via`, opening a new generation. On success
    /// the caller owns the word until [`Self::complete`] publishes the final one.
    fn claim(&self, from: Word, via: Phase) -> Result<Word, Word> {
        let claimed = Word::new(via, from.generation().wrapping_add(1), 0, 0);
        self.exchange(from, claimed).map(|()| claimed)
    }

    /// Finishes a claimed transition: records it, tells the listener, publishes `publish`. The publish happens even
    /// if the listener panics, so a faulty listener cannot wedge the breaker in a transient phase.
    fn complete(
        &self,
        from: BreakerState,
        to: BreakerState,
        reason: TransitionReason,
        now: Instant,
        open_for: Option<Duration>,
        publish: Word,
    ) {
        let transition = Transition {
            from,
            to,
            reason,
            at: now,
            at_wall: self.wall_time(now),
            open_for,
        };
        self.last_transition
            .store(Some(Arc::new(transition.clone())));
        let _publish = PublishOnDrop {
            word: &self.word,
            value: publish.0,
        };
        self.listener.on_transition(&transition);
    }

    fn wall_time(&self, now: Instant) -> SystemTime {
        if now >= self.origin {
            self.wall_origin
                .checked_add(now.duration_since(self.origin))
        } else {
            self.wall_origin
                .checked_sub(self.origin.duration_since(now))
        }
        .unwrap_or(self.wall_origin)
    }

    fn rejection(&self, phase: Phase) -> Rejected {
        match phase {
            // The open period is being written; the one in force is the best estimate of the wait.
            Phase::Opening | Phase::Open => Rejected {
                retry_after: Duration::from_nanos(self.open_for.load(Ordering::Relaxed)),
                state: BreakerState::Open,
            },
            // Probe slots full, or a transition out of (or into) half-open is being published.
            _ => Rejected {
                retry_after: HALF_OPEN_RETRY_AFTER,
                state: BreakerState::HalfOpen,
            },
        }
    }

    /// Counts a closed-state outcome; returns the run of failures a success ended (0 after a failure).
    fn record_closed(
        &self,
        word: Word,
        failure: Option<FailureKind>,
        slow: bool,
        limits: &Limits,
        now: Instant,
    ) -> u32 {
        let now_ns = self.nanos(now);
        self.window
            .add(now_ns / limits.bucket_width, failure.is_some(), slow);
        let (run, ended) = if failure.is_some() {
            let run = self
                .consecutive
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            (run, 0)
        } else {
            // Any success, slow or not, ends the run.
            (0, self.consecutive.swap(0, Ordering::Relaxed))
        };
        let reason = match limits.consecutive_failures {
            Some(threshold) if failure.is_some() && run >= threshold => {
                Some(TransitionReason::ConsecutiveFailures { count: run })
            }
            _ => self.rate_trip(now_ns, limits),
        };
        if let Some(reason) = reason {
            self.open(word, reason, limits, now);
        }
        ended
    }

    /// The first rate condition that holds over the window, if any.
    fn rate_trip(&self, now_ns: u64, limits: &Limits) -> Option<TransitionReason> {
        if limits.failure_rate.is_none() && limits.slow_call_rate.is_none() {
            return None;
        }
        let counts = self.window.sum(now_ns / limits.bucket_width);
        if counts.calls < limits.minimum_calls || counts.calls == 0 {
            return None;
        }
        let calls = f64::from(counts.calls);
        let failure_rate = f64::from(counts.failures) / calls;
        let slow_rate = f64::from(counts.slow) / calls;
        if limits
            .failure_rate
            .is_some_and(|threshold| failure_rate >= threshold)
        {
            return Some(TransitionReason::FailureRate {
                rate: failure_rate.min(1.0),
                calls: counts.calls,
            });
        }
        if limits
            .slow_call_rate
            .is_some_and(|threshold| slow_rate >= threshold)
        {
            return Some(TransitionReason::SlowCallRate {
                rate: slow_rate.min(1.0),
                calls: counts.calls,
            });
        }
        None
    }

    fn record_probe(
        &self,
        mut word: Word,
        failure: Option<FailureKind>,
        slow: bool,
        limits: &Limits,
        now: Instant,
    ) {
        let generation = word.generation();
        let failed = match failure {
            Some(kind) => Some(TransitionReason::ProbeFailed { kind: Some(kind) }),
            None if slow && limits.slow_call_rate.is_some() => {
                Some(TransitionReason::ProbeFailed { kind: None })
            }
            None => None,
        };
        if let Some(reason) = failed {
            self.open(word, reason, limits, now);
            return;
        }
        // The word also changes when other probes are admitted or counted: retry while the episode lasts.
        while word.phase() == Phase::HalfOpen && word.generation() == generation {
            let succeeded = word.succeeded() + 1;
            if succeeded >= limits.probes {
                match self.claim(word, Phase::Closing) {
                    Ok(claimed) => {
                        self.window.clear();
                        self.consecutive.store(0, Ordering::Relaxed);
                        self.open_for.store(limits.open_for, Ordering::Relaxed);
                        self.reopens.store(0, Ordering::Relaxed);
                        self.complete(
                            BreakerState::HalfOpen,
                            BreakerState::Closed,
                            TransitionReason::ProbesSucceeded { probes: succeeded },
                            now,
                            None,
                            Word::new(Phase::Closed, claimed.generation(), 0, 0),
                        );
                        return;
                    }
                    Err(actual) => word = actual,
                }
            } else {
                match self.exchange(word, word.with_counts(word.issued(), succeeded)) {
                    Ok(()) => return,
                    Err(actual) => word = actual,
                }
            }
        }
    }

    /// Opens the breaker from `from` (Closed or HalfOpen) unless another thread changed the episode first.
    fn open(&self, mut from: Word, reason: TransitionReason, limits: &Limits, now: Instant) {
        let generation = from.generation();
        let claimed = loop {
            match self.claim(from, Phase::Opening) {
                Ok(claimed) => break claimed,
                // Half-open: a concurrent probe admission or success changed the counters; try again.
                Err(actual)
                    if actual.generation() == generation && actual.phase() == from.phase() =>
                {
                    from = actual;
                }
                Err(_) => return,
            }
        };
        let reopens = match from.phase() {
            Phase::HalfOpen => self.reopens.load(Ordering::Relaxed).saturating_add(1),
            _ => 0,
        };
        self.reopens.store(reopens, Ordering::Relaxed);
        let doubling = 1u64.checked_shl(reopens).unwrap_or(u64::MAX);
        let period = limits
            .open_for
            .saturating_mul(doubling)
            .clamp(limits.open_for, limits.max_open_for);
        self.open_for.store(period, Ordering::Relaxed);
        self.open_until
            .store(self.nanos(now).saturating_add(period), Ordering::Relaxed);
        self.complete(
            from.phase().public(),
            BreakerState::Open,
            reason,
            now,
            Some(Duration::from_nanos(period)),
            Word::new(Phase::Open, claimed.generation(), 0, 0),
        );
    }

    /// A cancelled probe gives its slot back (only within its own episode).
    fn release_probe(&self, permit: Permit) {
        if !permit.probe {
            return;
        }
        let mut word = self.load();
        while word.phase() == Phase::HalfOpen
            && word.generation() == permit.generation
            && word.issued() > word.succeeded()
        {
            match self.exchange(word, word.with_counts(word.issued() - 1, word.succeeded())) {
                Ok(()) => return,
                Err(actual) => word = actual,
            }
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.load();
        f.debug_struct("CircuitBreaker")
            .field("state", &word.phase().public())
            .field("generation", &word.generation())
            .field(
                "consecutive_failures",
                &self.consecutive.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

/// Stores the final word of a transition when dropped (normally or while unwinding from the listener).
struct PublishOnDrop<'a> {
    word: &'a AtomicU64,
    value: u64,
}

impl Drop for PublishOnDrop<'_> {
    fn drop(&mut self) {
        // Release: the side fields written by the transition owner are visible to whoever sees this word.
        self.word.store(self.value, Ordering::Release);
    }
}

/// Phase stored in the state word. The transient phases are owned by the thread that claimed the transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
    /// Closed/HalfOpen → Open in progress; reads as Open.
    Opening = 3,
    /// Open → HalfOpen in progress; reads as HalfOpen.
    HalfOpening = 4,
    /// HalfOpen → Closed in progress; reads as HalfOpen (callers are still refused).
    Closing = 5,
}

impl Phase {
    fn public(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open | Phase::Opening => BreakerState::Open,
            Phase::HalfOpen | Phase::HalfOpening | Phase::Closing => BreakerState::HalfOpen,
        }
    }
}

const PHASE_MASK: u64 = 0b111;
const ISSUED_SHIFT: u32 = 3;
const SUCCEEDED_SHIFT: u32 = 19;
const GENERATION_SHIFT: u32 = 35;
const COUNT_MASK: u64 = 0xFFFF;
const GENERATION_MASK: u64 = (1 << (64 - GENERATION_SHIFT)) - 1;

/// The state word: `| generation: 29 | probes succeeded: 16 | probes issued: 16 | phase: 3 |` (high to low).
///
/// The generation is bumped by every claimed transition and identifies the episode a permit belongs to. It wraps
/// after 2^29 transitions; a permit would have to stay unrecorded across all of them to be mistaken for a current
/// one. The probe counters are meaningful only in HalfOpen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn new(phase: Phase, generation: u32, issued: u32, succeeded: u32) -> Self {
        Word(
            (u64::from(generation) & GENERATION_MASK) << GENERATION_SHIFT
                | (u64::from(succeeded) & COUNT_MASK) << SUCCEEDED_SHIFT
                | (u64::from(issued) & COUNT_MASK) << ISSUED_SHIFT
                | phase as u64,
        )
    }

    fn phase(self) -> Phase {
        match self.0 & PHASE_MASK {
            0 => Phase::Closed,
            1 => Phase::Open,
            2 => Phase::HalfOpen,
            3 => Phase::Opening,
            4 => Phase::HalfOpening,
            _ => Phase::Closing,
        }
    }

    fn generation(self) -> u32 {
        // Lossless: the mask keeps 29 bits.
        ((self.0 >> GENERATION_SHIFT) & GENERATION_MASK) as u32
    }

    fn issued(self) -> u32 {
        ((self.0 >> ISSUED_SHIFT) & COUNT_MASK) as u32
    }

    fn succeeded(self) -> u32 {
        ((self.0 >> SUCCEEDED_SHIFT) & COUNT_MASK) as u32
    }

    fn with_counts(self, issued: u32, succeeded: u32) -> Self {
        Word::new(self.phase(), self.generation(), issued, succeeded)
    }
}

/// A policy with odd values clamped into range, in the units the hot path uses.
struct Limits {
    consecutive_failures: Option<u32>,
    failure_rate: Option<f64>,
    slow_call_rate: Option<f64>,
    minimum_calls: u32,
    /// Nanoseconds, at least 1 ms.
    bucket_width: u64,
    slow_call_duration: Duration,
    /// Nanoseconds, at least 1 ms.
    open_for: u64,
    /// Nanoseconds, at least `open_for`.
    max_open_for: u64,
    /// In `1..=MAX_HALF_OPEN_PROBES`.
    probes: u32,
}

impl Limits {
    fn of(policy: &BreakerPolicy) -> Self {
        let open_for = nanos(policy.open_for.max(MIN_OPEN_FOR));
        Limits {
            consecutive_failures: policy.consecutive_failures.map(|n| n.max(1)),
            failure_rate: rate(policy.failure_rate),
            slow_call_rate: rate(policy.slow_call_rate),
            minimum_calls: policy.minimum_calls.max(1),
            bucket_width: nanos((policy.window / WINDOW_BUCKETS as u32).max(MIN_BUCKET_WIDTH)),
            slow_call_duration: policy.slow_call_duration,
            open_for,
            max_open_for: nanos(policy.max_open_for).max(open_for),
            probes: policy.half_open_probes.clamp(1, MAX_HALF_OPEN_PROBES),
        }
    }
}

/// A rate threshold clamped into `(0, 1]`; NaN disables the condition.
fn rate(threshold: Option<f64>) -> Option<f64> {
    threshold
        .filter(|r| !r.is_nan())
        .map(|r| r.clamp(f64::MIN_POSITIVE, 1.0))
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Bucket tag of a bucket that holds nothing.
const EMPTY: u64 = u64::MAX;

/// One slice of the sliding window, tagged with the epoch (time / bucket width) it counts.
struct Bucket {
    epoch: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
    slow: AtomicU32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    calls: u32,
    failures: u32,
    slow: u32,
}

/// Sliding window as a ring of [`WINDOW_BUCKETS`] buckets; epoch `e` lives in bucket `e % WINDOW_BUCKETS`.
///
/// Lock-free and deliberately approximate: the thread that moves a bucket to a new epoch (compare-exchange on the
/// tag) then zeroes its counters, so an increment by another thread that already saw the new tag in between is
/// lost, and a reader may briefly see the new tag with old counts. Only a handful of samples at a bucket
/// boundary are affected, which does not matter for rate thresholds over a whole window.
struct Window {
    buckets: [Bucket; WINDOW_BUCKETS as usize],
}

impl Window {
    fn new() -> Self {
        Window {
            buckets: std::array::from_fn(|_| Bucket {
                epoch: AtomicU64::new(EMPTY),
                calls: AtomicU32::new(0),
                failures: AtomicU32::new(0),
                slow: AtomicU32::new(0),
            }),
        }
    }

    fn bucket(&self, epoch: u64) -> &Bucket {
        // In range: the index is below WINDOW_BUCKETS.
        &self.buckets[(epoch % WINDOW_BUCKETS) as usize]
    }

    fn add(&self, epoch: u64, failed: bool, slow: bool) {
        let bucket = self.current(epoch);
        let Some(bucket) = bucket else {
            return;
        };
        bucket.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            bucket.failures.fetch_add(1, Ordering::Relaxed);
        }
        if slow {
            bucket.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A failure found out after its call was counted (possibly in an earlier bucket): the failure is counted now,
    /// the call is not counted twice. Rates read `failures / calls`, clamped to 1.
    fn add_failure_to_counted_call(&self, epoch: u64) {
        if let Some(bucket) = self.current(epoch) {
            bucket.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The bucket for `epoch`, recycled to it if it held an older one; `None` when it already holds a later one.
    fn current(&self, epoch: u64) -> Option<&Bucket> {
        let bucket = self.bucket(epoch);
        let mut tag = bucket.epoch.load(Ordering::Acquire);
        while tag != epoch {
            if tag != EMPTY && tag > epoch {
                // Recycled for a later epoch by a thread with a fresher `now`: this sample is already too old.
                return None;
            }
            match bucket
                .epoch
                .compare_exchange(tag, epoch, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    bucket.calls.store(0, Ordering::Relaxed);
                    bucket.failures.store(0, Ordering::Relaxed);
                    bucket.slow.store(0, Ordering::Relaxed);
                    break;
                }
                Err(actual) => tag = actual,
            }
        }
        Some(bucket)
    }

    /// Totals over the buckets whose epoch lies in `(epoch - WINDOW_BUCKETS, epoch]`.
    fn sum(&self, epoch: u64) -> Counts {
        let mut counts = Counts::default();
        for bucket in &self.buckets {
            let tag = bucket.epoch.load(Ordering::Acquire);
            if tag == EMPTY || tag > epoch || epoch - tag >= WINDOW_BUCKETS {
                continue;
            }
            counts.calls = counts
                .calls
                .saturating_add(bucket.calls.load(Ordering::Relaxed));
            counts.failures = counts
                .failures
                .saturating_add(bucket.failures.load(Ordering::Relaxed));
            counts.slow = counts
                .slow
                .saturating_add(bucket.slow.load(Ordering::Relaxed));
        }
        counts
    }

    fn clear(&self) {
        for bucket in &self.buckets {
            bucket.epoch.store(EMPTY, Ordering::Release);
            bucket.calls.store(0, Ordering::Relaxed);
            bucket.failures.store(0, Ordering::Relaxed);
            bucket.slow.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
