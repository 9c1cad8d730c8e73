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
    /// Stable name for logs and metric labels (statuses collapse into one label to keep cardinality bounded).
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureKind::ConnectFailed => "connect_failed",
            FailureKind::ConnectTimeout => "connect_timeout",
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
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Transition>>);

    impl TransitionListener for Recorder {
        fn on_transition(&self, transition: &Transition) {
            self.0.lock().unwrap().push(transition.clone());
        }
    }

    impl Recorder {
        fn all(&self) -> Vec<Transition> {
            self.0.lock().unwrap().clone()
        }

        fn steps(&self) -> Vec<(BreakerState, BreakerState, TransitionReason)> {
            self.all()
                .into_iter()
                .map(|t| (t.from, t.to, t.reason))
                .collect()
        }
    }

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: Some(5),
            failure_rate: None,
            minimum_calls: 10,
            window: Duration::from_secs(10),
            slow_call_duration: SEC,
            slow_call_rate: None,
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(60),
            half_open_probes: 3,
        }
    }

    fn breaker(policy: BreakerPolicy) -> (CircuitBreaker, Arc<Recorder>, Instant) {
        let recorder = Arc::new(Recorder::default());
        let origin = Instant::now();
        let breaker = CircuitBreaker::new(Arc::new(policy), LEASE, recorder.clone(), origin);
        (breaker, recorder, origin)
    }

    /// The probe lease of the test breakers (a backend's connect + read timeouts).
    const LEASE: Duration = Duration::from_secs(6);

    fn ok() -> CallOutcome {
        CallOutcome::Success { elapsed: 10 * MS }
    }

    fn slow_ok() -> CallOutcome {
        CallOutcome::Success { elapsed: 2 * SEC }
    }

    fn fail() -> CallOutcome {
        CallOutcome::Failure {
            kind: FailureKind::ConnectFailed,
            elapsed: 10 * MS,
        }
    }

    /// Acquires and records in one go.
    fn call(
        breaker: &CircuitBreaker,
        outcome: CallOutcome,
        now: Instant,
    ) -> Result<Permit, Rejected> {
        let permit = breaker.try_acquire(now)?;
        breaker.record(permit, outcome, now);
        Ok(permit)
    }

    fn calls(breaker: &CircuitBreaker, outcome: CallOutcome, n: usize, now: Instant) {
        for _ in 0..n {
            call(breaker, outcome, now).unwrap();
        }
    }

    /// Trips a default-policy breaker at `now` with five failures.
    fn trip(breaker: &CircuitBreaker, now: Instant) {
        calls(breaker, fail(), 5, now);
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn consecutive_failures_trip() {
        let (b, rec, t0) = breaker(policy());
        calls(&b, fail(), 4, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        call(&b, fail(), t0).unwrap();
        assert_eq!(b.state(), BreakerState::Open);
        let all = rec.all();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].reason,
            TransitionReason::ConsecutiveFailures { count: 5 }
        );
        assert_eq!(all[0].open_for, Some(Duration::from_secs(10)));
        assert_eq!(all[0].at, t0);
    }

    #[test]
    fn any_success_resets_the_run() {
        let (b, _, t0) = breaker(policy());
        calls(&b, fail(), 4, t0);
        call(&b, slow_ok(), t0).unwrap();
        calls(&b, fail(), 4, t0);
        call(&b, ok(), t0).unwrap();
        calls(&b, fail(), 4, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.snapshot(t0).consecutive_failures, 4);
        call(&b, fail(), t0).unwrap();
        assert_eq!(b.state(), BreakerState::Open);
    }

    fn rate_policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: None,
            failure_rate: Some(0.5),
            ..policy()
        }
    }

    #[test]
    fn failure_rate_trips_only_from_minimum_calls() {
        let (b, rec, t0) = breaker(rate_policy());
        // 100% failures, but only 9 calls.
        calls(&b, fail(), 9, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        call(&b, ok(), t0).unwrap();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            rec.steps()[0].2,
            TransitionReason::FailureRate {
                rate: 0.9,
                calls: 10
            }
        );
    }

    #[test]
    fn failure_rate_trips_at_exactly_the_threshold() {
        let (b, rec, t0) = breaker(rate_policy());
        calls(&b, ok(), 6, t0);
        calls(&b, fail(), 4, t0);
        assert_eq!(b.state(), BreakerState::Closed, "40% < 50%");
        call(&b, fail(), t0).unwrap();
        assert_eq!(b.state(), BreakerState::Closed, "5/11 < 50%");
        call(&b, fail(), t0).unwrap();
        assert_eq!(b.state(), BreakerState::Open, "6/12 = 50%");
        assert_eq!(
            rec.steps()[0].2,
            TransitionReason::FailureRate {
                rate: 0.5,
                calls: 12
            }
        );
    }

    #[test]
    fn slow_call_rate_trips() {
        let p = BreakerPolicy {
            consecutive_failures: None,
            slow_call_rate: Some(0.5),
            minimum_calls: 4,
            ..policy()
        };
        let (b, rec, t0) = breaker(p);
        // Exactly slow_call_duration is not slow.
        calls(&b, CallOutcome::Success { elapsed: SEC }, 4, t0);
        calls(&b, slow_ok(), 3, t0);
        assert_eq!(b.state(), BreakerState::Closed, "3/7 slow");
        // A slow failure counts as slow too.
        let slow_fail = CallOutcome::Failure {
            kind: FailureKind::Status(503),
            elapsed: 3 * SEC,
        };
        call(&b, slow_fail, t0).unwrap();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            rec.steps()[0].2,
            TransitionReason::SlowCallRate {
                rate: 0.5,
                calls: 8
            }
        );
    }

    #[test]
    fn old_calls_slide_out_of_the_window() {
        let (b, _, t0) = breaker(rate_policy());
        calls(&b, fail(), 9, t0);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.snapshot(later).calls, 0);
        call(&b, fail(), later).unwrap();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.snapshot(later).calls, 1);

        // Part of the window slides out: 4 failures at +11s, 6 successes at +16s, then failures at +22s.
        let (b, _, t0) = breaker(rate_policy());
        calls(&b, fail(), 4, t0 + Duration::from_secs(11));
        calls(&b, ok(), 6, t0 + Duration::from_secs(16));
        assert_eq!(b.snapshot(t0 + Duration::from_secs(16)).calls, 10);
        assert_eq!(b.state(), BreakerState::Closed, "4/10");
        let t = t0 + Duration::from_secs(22);
        assert_eq!(b.snapshot(t).calls, 6, "the +11s bucket is out");
        calls(&b, fail(), 5, t);
        assert_eq!(b.state(), BreakerState::Closed, "5/11");
        call(&b, fail(), t).unwrap();
        assert_eq!(b.state(), BreakerState::Open, "6/12");
    }

    #[test]
    fn non_failure_outcomes_never_trip() {
        let p = BreakerPolicy {
            failure_rate: Some(0.01),
            slow_call_rate: Some(0.5),
            minimum_calls: 1,
            consecutive_failures: Some(1),
            ..policy()
        };
        let (b, rec, t0) = breaker(p);
        // What a 404 becomes once the classifier has said it is not a failure.
        calls(&b, ok(), 1000, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(rec.all().is_empty());
        let snap = b.snapshot(t0);
        assert_eq!((snap.calls, snap.failures, snap.slow_calls), (1000, 0, 0));
    }

    #[test]
    fn open_rejects_until_open_until() {
        let (b, _, t0) = breaker(policy());
        trip(&b, t0);
        let open = BreakerState::Open;
        assert_eq!(
            b.try_acquire(t0),
            Err(Rejected {
                retry_after: 10 * SEC,
                state: open
            })
        );
        let t = t0 + Duration::from_millis(9_999);
        assert_eq!(
            b.try_acquire(t),
            Err(Rejected {
                retry_after: MS,
                state: open
            })
        );
        assert_eq!(
            b.peek(t),
            Err(Rejected {
                retry_after: MS,
                state: open
            })
        );
        let almost = t0 + 10 * SEC - Duration::from_nanos(1);
        assert_eq!(
            b.try_acquire(almost).unwrap_err().retry_after,
            Duration::from_nanos(1)
        );
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn half_opens_lazily_at_exactly_open_until() {
        let (b, rec, t0) = breaker(policy());
        trip(&b, t0);
        let at = t0 + 10 * SEC;
        // Time passing alone changes nothing.
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.snapshot(at).until_half_open, Some(Duration::ZERO));
        let permit = b.try_acquire(at).unwrap();
        assert!(permit.is_probe());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let last = rec.all().pop().unwrap();
        assert_eq!(
            (last.from, last.to),
            (BreakerState::Open, BreakerState::HalfOpen)
        );
        assert_eq!(last.reason, TransitionReason::OpenPeriodElapsed);
        assert_eq!(last.open_for, None);
        assert_eq!(last.at, at);
    }

    #[test]
    fn half_open_admits_exactly_n_probes() {
        let (b, _, t0) = breaker(policy());
        trip(&b, t0);
        let at = t0 + 10 * SEC;
        for _ in 0..3 {
            assert!(b.try_acquire(at).unwrap().is_probe());
        }
        let rejected = Rejected {
            retry_after: HALF_OPEN_RETRY_AFTER,
            state: BreakerState::HalfOpen,
        };
        assert_eq!(b.try_acquire(at), Err(rejected));
        assert_eq!(b.try_acquire(at + 5 * SEC), Err(rejected));
        assert_eq!(b.peek(at), Err(rejected));
    }

    /// Trips, then moves to half-open and returns the three probe permits.
    fn half_open(b: &CircuitBreaker, at: Instant) -> [Permit; 3] {
        [(); 3].map(|()| b.try_acquire(at).unwrap())
    }

    #[test]
    fn probes_succeeding_close_and_reset_everything() {
        let (b, rec, t0) = breaker(BreakerPolicy {
            failure_rate: Some(0.9),
            ..policy()
        });
        calls(&b, ok(), 20, t0);
        trip(&b, t0);
        // One failed probe first, so that there is a backoff to reset.
        let t1 = t0 + 10 * SEC;
        call(&b, fail(), t1).unwrap();
        assert_eq!(b.snapshot(t1).open_for, 20 * SEC);
        let t2 = t1 + 20 * SEC;
        let probes = half_open(&b, t2);
        b.record(probes[0], ok(), t2);
        b.record(probes[1], ok(), t2);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.record(probes[2], slow_ok(), t2); // slow but slow-call tripping is off: a success
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(
            rec.steps().last().unwrap().2,
            TransitionReason::ProbesSucceeded { probes: 3 }
        );
        let snap = b.snapshot(t2);
        assert_eq!(
            (snap.calls, snap.failures, snap.consecutive_failures),
            (0, 0, 0)
        );
        assert_eq!(snap.open_for, 10 * SEC);
        assert_eq!(snap.until_half_open, None);
        // Next trip starts from the base period again.
        trip(&b, t2);
        assert_eq!(rec.all().last().unwrap().open_for, Some(10 * SEC));
        assert_eq!(b.try_acquire(t2).unwrap_err().retry_after, 10 * SEC);
    }

    #[test]
    fn failed_probe_reopens_with_doubled_capped_period() {
        let p = BreakerPolicy {
            max_open_for: Duration::from_secs(25),
            ..policy()
        };
        let (b, rec, t0) = breaker(p);
        trip(&b, t0);
        let mut t = t0;
        for expected in [20, 25, 25] {
            t += b.try_acquire(t).unwrap_err().retry_after;
            let probe = b.try_acquire(t).unwrap();
            let kind = FailureKind::ReadTimeout;
            b.record(probe, CallOutcome::Failure { kind, elapsed: MS }, t);
            assert_eq!(b.state(), BreakerState::Open);
            let last = rec.all().pop().unwrap();
            assert_eq!(
                last.reason,
                TransitionReason::ProbeFailed { kind: Some(kind) }
            );
            assert_eq!(last.open_for, Some(Duration::from_secs(expected)));
            assert_eq!(
                b.try_acquire(t).unwrap_err().retry_after,
                Duration::from_secs(expected)
            );
            assert_eq!(b.snapshot(t).open_for, Duration::from_secs(expected));
        }
    }

    #[test]
    fn probes_that_never_report_free_their_slots_when_the_lease_ends() {
        let (b, rec, t0) = breaker(policy());
        trip(&b, t0);
        let t = t0 + 10 * SEC;
        let stuck = half_open(&b, t);
        // Within the lease the slots stay taken, and peek agrees.
        let before = t + LEASE - Duration::from_nanos(1);
        assert_eq!(
            b.try_acquire(before).unwrap_err().state,
            BreakerState::HalfOpen
        );
        assert!(b.peek(before).is_err());
        // At the end of the lease the next caller starts a fresh round and takes its first slot.
        let after = t + LEASE;
        assert!(b.peek(after).is_ok());
        let fresh = b.try_acquire(after).unwrap();
        assert!(fresh.is_probe());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let last = rec.all().pop().unwrap();
        assert_eq!(
            (last.from, last.to, last.reason),
            (
                BreakerState::HalfOpen,
                BreakerState::HalfOpen,
                TransitionReason::ProbeLeaseExpired { outstanding: 3 }
            )
        );
        // The expired probes' late outcomes are ignored: a late failure does not reopen.
        b.record(stuck[0], fail(), after);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let others = [b.try_acquire(after).unwrap(), b.try_acquire(after).unwrap()];
        assert!(b.try_acquire(after).is_err());
        for p in [fresh, others[0], others[1]] {
            b.record(p, ok(), after);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn the_lease_runs_from_the_latest_probe_and_keeps_earlier_successes() {
        let (b, rec, t0) = breaker(policy());
        trip(&b, t0);
        let t = t0 + 10 * SEC;
        let first = b.try_acquire(t).unwrap();
        b.record(first, ok(), t);
        let _stuck = b.try_acquire(t).unwrap();
        let late = t + 2 * SEC;
        let _also_stuck = b.try_acquire(late).unwrap();
        // The first probe's lease has run out, the latest one's has not.
        assert!(b.try_acquire(t + LEASE).is_err());
        let renewed = late + LEASE;
        let fresh = b.try_acquire(renewed).unwrap();
        assert_eq!(
            rec.all().pop().unwrap().reason,
            TransitionReason::ProbeLeaseExpired { outstanding: 2 }
        );
        // The success counted before the expiry still counts: two more close the breaker.
        b.record(fresh, ok(), renewed);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let last = b.try_acquire(renewed).unwrap();
        assert!(b.try_acquire(renewed).is_err(), "3 slots: 1 kept, 2 new");
        b.record(last, ok(), renewed);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_probe_lease_change_applies_to_later_probes() {
        let (b, _, t0) = breaker(policy());
        trip(&b, t0);
        b.set_probe_lease(SEC);
        assert_eq!(b.probe_lease(), SEC);
        let t = t0 + 10 * SEC;
        half_open(&b, t);
        assert!(b.try_acquire(t + SEC).is_ok());
    }

    #[test]
    fn a_revoked_success_counts_as_the_failure_it_was() {
        let (b, rec, t0) = breaker(policy());
        // A backend that answers every header and then breaks every body trips on consecutive failures, even
        // though each header's success ended the run for a moment.
        for n in 1..=5 {
            let permit = b.try_acquire(t0).unwrap();
            let receipt = b.record(permit, ok(), t0).unwrap();
            assert_eq!(b.snapshot(t0).consecutive_failures, 0);
            b.revoke_success(receipt, FailureKind::ResponseIncomplete, t0);
            if n < 5 {
                assert_eq!(b.snapshot(t0).consecutive_failures, n);
            }
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            rec.all()[0].reason,
            TransitionReason::ConsecutiveFailures { count: 5 }
        );
        let snap = b.snapshot(t0);
        assert_eq!((snap.calls, snap.failures), (5, 5), "no call counted twice");
    }

    #[test]
    fn a_failure_or_a_cancel_gives_no_receipt() {
        let (b, _, t0) = breaker(policy());
        let permit = b.try_acquire(t0).unwrap();
        assert_eq!(b.record(permit, fail(), t0), None);
        let permit = b.try_acquire(t0).unwrap();
        assert_eq!(b.record(permit, CallOutcome::Cancelled, t0), None);
    }

    #[test]
    fn a_revoked_probe_success_reopens() {
        let (b, rec, t0) = breaker(policy());
        trip(&b, t0);
        let t = t0 + 10 * SEC;
        let probes = half_open(&b, t);
        let receipt = b.record(probes[0], ok(), t).unwrap();
        b.revoke_success(receipt, FailureKind::ReadTimeout, t);
        assert_eq!(b.state(), BreakerState::Open);
        let last = rec.all().pop().unwrap();
        assert_eq!(
            last.reason,
            TransitionReason::ProbeFailed {
                kind: Some(FailureKind::ReadTimeout)
            }
        );
        assert_eq!(last.open_for, Some(20 * SEC));
    }

    #[test]
    fn a_revocation_after_the_breaker_moved_on_is_ignored() {
        let (b, rec, t0) = breaker(BreakerPolicy {
            half_open_probes: 1,
            ..policy()
        });
        trip(&b, t0);
        let t = t0 + 10 * SEC;
        let probe = b.try_acquire(t).unwrap();
        // The probe's header closes the breaker; its body breaks afterwards.
        let receipt = b.record(probe, ok(), t).unwrap();
        assert_eq!(b.state(), BreakerState::Closed);
        b.revoke_success(receipt, FailureKind::ResponseIncomplete, t);
        assert_eq!(b.state(), BreakerState::Closed);
        let snap = b.snapshot(t);
        assert_eq!((snap.failures, snap.consecutive_failures), (0, 0));
        assert_eq!(rec.all().len(), 3);
    }

    #[test]
    fn slow_probe_reopens_when_slow_calls_trip() {
        let (b, rec, t0) = breaker(BreakerPolicy {
            slow_call_rate: Some(0.5),
            ..policy()
        });
        trip(&b, t0);
        let t = t0 + 10 * SEC;
        let probes = half_open(&b, t);
        b.record(probes[0], ok(), t);
        b.record(probes[1], slow_ok(), t);
        assert_eq!(b.state(), BreakerState::Open);
        let last = rec.all().pop().unwrap();
        assert_eq!(last.reason, TransitionReason::ProbeFailed { kind: None });
        assert_eq!(last.open_for, Some(20 * SEC));
        // The last probe concludes after the episode ended: ignored.
        b.record(probes[2], ok(), t);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn cancelled_frees_a_probe_slot_and_records_nothing() {
        let (b, _, t0) = breaker(policy());
        let permit = b.try_acquire(t0).unwrap();
        b.record(permit, CallOutcome::Cancelled, t0);
        assert_eq!(b.snapshot(t0).calls, 0);
        trip(&b, t0);
        let t = t0 + 10 * SEC;
        let probes = half_open(&b, t);
        assert!(b.try_acquire(t).is_err());
        b.record(probes[1], CallOutcome::Cancelled, t);
        let again = b.try_acquire(t).unwrap();
        assert!(b.try_acquire(t).is_err());
        // A non-probe permit cannot free a slot.
        b.record(permit, CallOutcome::Cancelled, t);
        assert!(b.try_acquire(t).is_err());
        for p in [probes[0], probes[2], again] {
            b.record(p, ok(), t);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn stale_permits_are_ignored() {
        let (b, rec, t0) = breaker(policy());
        let early = b.try_acquire(t0).unwrap();
        trip(&b, t0);
        b.record(early, fail(), t0);
        let t = t0 + 10 * SEC;
        let probes = half_open(&b, t);
        // A call admitted while closed finishes during half-open: it must not fail the episode.
        b.record(early, fail(), t);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        for p in probes {
            b.record(p, ok(), t);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // Nor count towards the new closed period, nor may an old probe.
        b.record(early, fail(), t);
        b.record(probes[0], fail(), t);
        let snap = b.snapshot(t);
        assert_eq!((snap.calls, snap.consecutive_failures), (0, 0));
        assert_eq!(rec.all().len(), 3);
    }

    #[test]
    fn set_policy_keeps_open_until_and_governs_later_transitions() {
        let (b, rec, t0) = breaker(policy());
        trip(&b, t0);
        let new = BreakerPolicy {
            consecutive_failures: Some(2),
            open_for: SEC,
            max_open_for: 2 * SEC,
            half_open_probes: 1,
            ..policy()
        };
        b.set_policy(Arc::new(new.clone()));
        assert_eq!(*b.policy(), new);
        assert_eq!(b.state(), BreakerState::Open);
        let t = t0 + 5 * SEC;
        assert_eq!(b.try_acquire(t).unwrap_err().retry_after, 5 * SEC);
        let t = t0 + 10 * SEC;
        call(&b, ok(), t).unwrap();
        assert_eq!(b.state(), BreakerState::Closed, "one probe is enough now");
        calls(&b, fail(), 2, t);
        assert_eq!(b.state(), BreakerState::Open);
        let last = rec.all().pop().unwrap();
        assert_eq!(
            last.reason,
            TransitionReason::ConsecutiveFailures { count: 2 }
        );
        assert_eq!(last.open_for, Some(SEC));
    }

    #[test]
    fn a_re_trip_after_set_policy_doubles_the_new_open_period() {
        let (b, _, t0) = breaker(policy());
        trip(&b, t0);
        b.set_policy(Arc::new(BreakerPolicy {
            open_for: SEC,
            max_open_for: 60 * SEC,
            half_open_probes: 1,
            ..policy()
        }));
        // The old 10 s period still runs; its failing probe re-opens for 2 x the new 1 s.
        let t = t0 + 10 * SEC;
        call(&b, fail(), t).unwrap();
        assert_eq!(b.snapshot(t).open_for, 2 * SEC);
        let t = t + 2 * SEC;
        call(&b, fail(), t).unwrap();
        assert_eq!(b.snapshot(t).open_for, 4 * SEC);
    }

    #[test]
    fn set_policy_clears_the_window_only_when_its_length_changes() {
        let (b, _, t0) = breaker(policy());
        calls(&b, ok(), 3, t0);
        b.set_policy(Arc::new(BreakerPolicy {
            minimum_calls: 1,
            ..policy()
        }));
        assert_eq!(b.snapshot(t0).calls, 3);
        b.set_policy(Arc::new(BreakerPolicy {
            window: 20 * SEC,
            ..policy()
        }));
        assert_eq!(b.snapshot(t0).calls, 0);
    }

    #[test]
    fn listener_sees_every_transition_once() {
        let (b, rec, t0) = breaker(policy());
        trip(&b, t0);
        let t1 = t0 + 10 * SEC;
        let kind = FailureKind::Status(502);
        call(&b, CallOutcome::Failure { kind, elapsed: MS }, t1).unwrap();
        let t2 = t1 + 20 * SEC;
        calls(&b, ok(), 3, t2);
        use BreakerState::{Closed, HalfOpen, Open};
        use TransitionReason as R;
        let expected = vec![
            (
                Closed,
                Open,
                R::ConsecutiveFailures { count: 5 },
                Some(10 * SEC),
                t0,
            ),
            (Open, HalfOpen, R::OpenPeriodElapsed, None, t1),
            (
                HalfOpen,
                Open,
                R::ProbeFailed { kind: Some(kind) },
                Some(20 * SEC),
                t1,
            ),
            (Open, HalfOpen, R::OpenPeriodElapsed, None, t2),
            (HalfOpen, Closed, R::ProbesSucceeded { probes: 3 }, None, t2),
        ];
        let all = rec.all();
        let seen: Vec<_> = all
            .iter()
            .map(|t| (t.from, t.to, t.reason.clone(), t.open_for, t.at))
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(b.snapshot(t2).last_transition.as_ref(), all.last());
        assert_eq!(
            all[1].at_wall.duration_since(all[0].at_wall).unwrap(),
            10 * SEC
        );
    }

    #[test]
    fn snapshot_numbers() {
        let (b, _, t0) = breaker(BreakerPolicy {
            consecutive_failures: None,
            ..policy()
        });
        let fresh = b.snapshot(t0);
        assert_eq!(fresh.state, BreakerState::Closed);
        assert_eq!((fresh.calls, fresh.failure_rate), (0, 0.0));
        assert_eq!(fresh.last_transition, None);
        calls(&b, ok(), 2, t0);
        call(&b, slow_ok(), t0).unwrap();
        call(
            &b,
            CallOutcome::Failure {
                kind: FailureKind::ReadTimeout,
                elapsed: 5 * SEC,
            },
            t0,
        )
        .unwrap();
        call(&b, fail(), t0 + SEC).unwrap();
        let snap = b.snapshot(t0 + SEC);
        assert_eq!((snap.calls, snap.failures, snap.slow_calls), (5, 2, 2));
        assert_eq!(snap.failure_rate, 0.4);
        assert_eq!(snap.consecutive_failures, 2);
        assert_eq!(snap.until_half_open, None);
        assert_eq!(snap.open_for, 10 * SEC);

        let (b, _, t0) = breaker(policy());
        trip(&b, t0);
        let snap = b.snapshot(t0 + 3 * SEC);
        assert_eq!(snap.state, BreakerState::Open);
        assert_eq!(snap.until_half_open, Some(7 * SEC));
        assert_eq!((snap.calls, snap.failures, snap.failure_rate), (5, 5, 1.0));
        assert_eq!(snap.consecutive_failures, 5);
    }

    #[test]
    fn peek_changes_nothing() {
        let (b, rec, t0) = breaker(policy());
        assert_eq!(b.peek(t0), Ok(()));
        trip(&b, t0);
        let t = t0 + 10 * SEC;
        assert_eq!(b.peek(t), Ok(()));
        assert_eq!(b.state(), BreakerState::Open, "peek does not half-open");
        let first = b.try_acquire(t).unwrap();
        for _ in 0..100 {
            assert_eq!(b.peek(t), Ok(()));
        }
        b.try_acquire(t).unwrap();
        b.try_acquire(t).unwrap();
        assert_eq!(b.peek(t).unwrap_err().state, BreakerState::HalfOpen);
        b.record(first, CallOutcome::Cancelled, t);
        assert_eq!(b.peek(t), Ok(()));
        assert_eq!(rec.all().len(), 2);
    }

    #[test]
    fn odd_policies_do_not_panic() {
        let odd = BreakerPolicy {
            consecutive_failures: Some(0),
            failure_rate: Some(f64::NAN),
            minimum_calls: 0,
            window: Duration::ZERO,
            slow_call_duration: Duration::ZERO,
            slow_call_rate: Some(7.0),
            open_for: Duration::ZERO,
            max_open_for: Duration::ZERO,
            half_open_probes: 0,
        };
        let (b, _, t0) = breaker(odd);
        // Earlier than the origin counts as the origin.
        let before = t0.checked_sub(SEC).unwrap_or(t0);
        call(&b, fail(), before).unwrap();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.snapshot(before).open_for, MS);
        let t = t0 + MS;
        assert!(b.try_acquire(t).unwrap().is_probe());
        assert!(b.try_acquire(t).is_err(), "half_open_probes 0 means 1");
        let big = BreakerPolicy {
            window: Duration::MAX,
            open_for: Duration::MAX,
            max_open_for: Duration::MAX,
            half_open_probes: u32::MAX,
            minimum_calls: u32::MAX,
            ..policy()
        };
        let (b, _, t0) = breaker(big);
        trip(&b, t0);
        let t = t0 + 1000 * SEC;
        assert_eq!(b.peek(t).unwrap_err().state, BreakerState::Open);
    }

    #[test]
    fn names_and_texts() {
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
        assert_eq!(BreakerState::Open.gauge_value(), 1);
        assert_eq!(FailureKind::Status(500).as_str(), "failure_status");
        let texts = [
            (
                TransitionReason::ConsecutiveFailures { count: 5 },
                "5 consecutive failures",
            ),
            (
                TransitionReason::FailureRate {
                    rate: 0.6,
                    calls: 10,
                },
                "failure rate 60% over 10 calls",
            ),
            (
                TransitionReason::SlowCallRate {
                    rate: 1.0,
                    calls: 1,
                },
                "slow-call rate 100% over 1 call",
            ),
            (TransitionReason::OpenPeriodElapsed, "open period elapsed"),
            (
                TransitionReason::ProbeFailed {
                    kind: Some(FailureKind::ReadTimeout),
                },
                "probe failed: read_timeout",
            ),
            (
                TransitionReason::ProbeFailed { kind: None },
                "probe failed: slow call",
            ),
            (
                TransitionReason::ProbesSucceeded { probes: 3 },
                "3 probes succeeded",
            ),
        ];
        for (reason, text) in texts {
            assert_eq!(reason.to_string(), text);
        }
        let (b, _, _) = breaker(policy());
        assert!(format!("{b:?}").starts_with("CircuitBreaker { state: Closed"));
    }

    #[test]
    fn word_fields_do_not_overlap() {
        let w = Word::new(Phase::Closing, u32::MAX, 0xFFFF, 0xFFFF);
        assert_eq!(w.phase(), Phase::Closing);
        assert_eq!(w.generation(), (1 << 29) - 1);
        assert_eq!((w.issued(), w.succeeded()), (0xFFFF, 0xFFFF));
        let w = Word::new(Phase::HalfOpen, 7, 2, 1).with_counts(3, 0);
        assert_eq!(
            (w.phase(), w.generation(), w.issued(), w.succeeded()),
            (Phase::HalfOpen, 7, 3, 0)
        );
    }

    const THREADS: usize = 4;
    const PER_THREAD: usize = 10_000;

    #[test]
    fn concurrent_successes_make_no_transition() {
        let (b, rec, t0) = breaker(BreakerPolicy {
            failure_rate: Some(0.1),
            ..policy()
        });
        // Warm the bucket so no recycling races the threads (that loss is tolerated by design).
        call(&b, ok(), t0).unwrap();
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| calls(&b, ok(), PER_THREAD, t0));
            }
        });
        assert!(rec.all().is_empty());
        let snap = b.snapshot(t0);
        assert_eq!(snap.state, BreakerState::Closed);
        assert_eq!(snap.calls as usize, THREADS * PER_THREAD + 1);
        assert_eq!(snap.failures, 0);
    }

    #[test]
    fn concurrent_failures_trip_exactly_once() {
        let (b, rec, t0) = breaker(BreakerPolicy {
            failure_rate: Some(0.5),
            ..policy()
        });
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..PER_THREAD {
                        if let Ok(permit) = b.try_acquire(t0) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            b.record(permit, fail(), t0);
                        }
                    }
                });
            }
        });
        assert_eq!(rec.steps().len(), 1);
        assert_eq!(
            (rec.steps()[0].0, rec.steps()[0].1),
            (BreakerState::Closed, BreakerState::Open)
        );
        assert_eq!(b.state(), BreakerState::Open);
        // Only calls admitted before the trip could get through; at least the five that tripped it.
        let admitted = admitted.load(Ordering::Relaxed);
        assert!((5..THREADS * PER_THREAD).contains(&admitted), "{admitted}");
        assert_eq!(b.try_acquire(t0).unwrap_err().retry_after, 10 * SEC);
    }

    #[test]
    fn concurrent_probes_respect_the_limit_and_close_once() {
        let (b, rec, t0) = breaker(policy());
        trip(&b, t0);
        let t = t0 + 10 * SEC;
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for _ in 0..1_000 {
                        if let Ok(permit) = b.try_acquire(t) {
                            admitted.fetch_add(1, Ordering::Relaxed);
                            b.record(permit, ok(), t);
                        }
                    }
                });
            }
        });
        // Three probes close it; after that, closed calls flow. Transitions happened once each.
        use BreakerState::{Closed, HalfOpen, Open};
        let steps: Vec<_> = rec.steps().into_iter().map(|(f, to, _)| (f, to)).collect();
        assert_eq!(
            steps,
            vec![(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
        );
        assert_eq!(b.state(), Closed);
        let admitted = admitted.load(Ordering::Relaxed);
        let snap = b.snapshot(t);
        // Every admitted call after the three probes was a closed call, counted in the fresh window (calls
        // recorded while the window was being cleared could be lost, hence <=).
        assert!(
            snap.calls as usize <= admitted - 3 && admitted > 3,
            "{admitted} {}",
            snap.calls
        );
    }
}
