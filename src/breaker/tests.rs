//! The breaker's state machine, transition by transition, with time injected.

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
fn call(breaker: &CircuitBreaker, outcome: CallOutcome, now: Instant) -> Result<Permit, Rejected> {
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

#[test]
fn health_checks_force_open_from_any_state_and_force_close_afresh() {
    let (b, rec, t0) = breaker(policy());
    calls(&b, fail(), 3, t0);
    assert!(b.force_open(TransitionReason::HealthCheckFailed { checks: 3 }, t0));
    assert_eq!(b.state(), BreakerState::Open);
    assert!(b.try_acquire(t0 + SEC).is_err());
    let opened = rec.all().pop().unwrap();
    assert_eq!(
        opened.reason.to_string(),
        "health check failed 3 times in a row"
    );
    assert_eq!(opened.open_for, Some(Duration::from_secs(10)));
    // An open breaker is reopened with the new reason; a closed one is not closed again.
    assert!(b.force_open(TransitionReason::HealthCheckFailed { checks: 4 }, t0 + SEC));
    let t1 = t0 + 2 * SEC;
    assert!(b.force_close(TransitionReason::HealthCheckPassed { checks: 2 }, t1));
    assert!(!b.force_close(TransitionReason::HealthCheckPassed { checks: 3 }, t1));
    assert_eq!(b.state(), BreakerState::Closed);
    let snapshot = b.snapshot(t1);
    assert_eq!((snapshot.calls, snapshot.consecutive_failures), (0, 0));
    assert_eq!(
        rec.steps()
            .into_iter()
            .map(|(f, t, _)| (f, t))
            .collect::<Vec<_>>(),
        [
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::Open, BreakerState::Open),
            (BreakerState::Open, BreakerState::Closed),
        ]
    );
    // From half-open too.
    trip(&b, t1);
    let permit = b.try_acquire(t1 + 10 * SEC).unwrap();
    assert!(permit.is_probe());
    assert!(b.force_open(
        TransitionReason::HealthCheckFailed { checks: 1 },
        t1 + 10 * SEC
    ));
    b.record(permit, ok(), t1 + 10 * SEC);
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "the probe's late success is stale"
    );
}
