//! One call to one backend, from admission to outcome. [`Upstream::attempt`] admits it (a
//! breaker permit, and one more call in flight on the backend); the [`Attempt`] owns the
//! permit until it is settled, and settles it exactly once by construction: the first of
//! [`Attempt::on_response_header`], [`Attempt::on_error`] or [`Attempt::cancel`] that sees
//! the call conclude does it, and `Drop` settles `Cancelled` if none did. The proxy hooks
//! (`upstream_peer` creates it, `upstream_response_filter`, `fail_to_connect` and
//! `error_while_proxy` settle it) and the token exchange use this one type.
//!
//! What the breaker learns, in every case:
//!
//! | how the call ends | breaker learns | when |
//! | --- | --- | --- |
//! | connect refused / timed out | failure (`connect_*`) | at once |
//! | timeout or broken connection before the response header, the gateway having had the whole request | failure | at once |
//! | the same while the client was still sending its body (streaming routes) | nothing (`cancelled`; a probe slot is given back) | at once |
//! | response header with a failure status (the whole request had arrived) | failure (`failure_status`) | at the header |
//! | response header with any other status | success, judged slow or not on the time to the header (from admission, or from the end of a body still streaming then) | at the header |
//! | ... then the backend breaks off the body (closes early, read timeout) | that success is revoked: a failure, the call not counted twice | when it breaks |
//! | ... then the client goes away or stops reading (client write timeout) | nothing more: the success stands | |
//! | the client goes away before the header, or the request ends any other way | nothing (`cancelled`) | when the attempt is dropped |
//!
//! The metric `gateway_upstream_attempts_total` counts each attempt once, with its final
//! outcome, when the attempt is dropped (the end of the request).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use pingora::upstreams::peer::HttpPeer;

use super::{Backend, Upstream};
use crate::breaker::{CallOutcome, FailureKind, Permit, Receipt, classify};

/// A call admitted to one backend of an upstream. Hold it for as long as the backend works
/// on the request (the whole response); drop it when done.
#[must_use = "an attempt settles as cancelled when dropped"]
pub struct Attempt {
    upstream: Arc<Upstream>,
    backend: usize,
    started: Instant,
    /// Where the breaker's clock starts: admission, or the end of a request body that was
    /// still streaming then (the backend cannot answer sooner; that time is the client's).
    clock: Instant,
    header_after: Option<Duration>,
    stage: Stage,
    /// The `outcome` label this attempt is counted under when dropped.
    outcome: &'static str,
}

enum Stage {
    /// Admitted; the breaker has heard nothing yet.
    Open(Permit),
    /// Settled as a success at the response header; the receipt lets a broken body revoke it.
    Answered(Option<Receipt>),
    /// Settled for good.
    Settled,
}

impl Attempt {
    /// Called by [`Upstream::attempt`] with the permit it took, the backend's in-flight slot
    /// already taken.
    pub(super) fn admit(
        upstream: Arc<Upstream>,
        backend: usize,
        permit: Permit,
        now: Instant,
    ) -> Self {
        Attempt {
            upstream,
            backend,
            started: now,
            clock: now,
            header_after: None,
            stage: Stage::Open(permit),
            outcome: "cancelled",
        }
    }

    /// The upstream this attempt belongs to.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Index of the backend in its upstream (bit `1 << index` in a request's `tried` set).
    pub fn backend_index(&self) -> usize {
        self.backend
    }

    pub fn backend(&self) -> Option<&Backend> {
        self.upstream.backends.get(self.backend)
    }

    /// The backend's peer, with the upstream's timeouts.
    pub fn peer(&self) -> Option<&HttpPeer> {
        self.upstream.peer(self.backend)
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Time from admission to the response header, once it arrived.
    pub fn header_after(&self) -> Option<Duration> {
        self.header_after
    }

    /// The backend had the whole request only at `at` (a streamed body ended after
    /// admission): the duration the breaker judges (slow or not) is counted from then, so
    /// a client that uploads slowly cannot make a backend's calls look slow.
    pub fn request_complete_at(&mut self, at: Instant) {
        self.clock = self.clock.max(at);
    }

    /// Whether the breaker admitted this call as a half-open probe (and it is still open).
    pub fn is_probe(&self) -> bool {
        matches!(&self.stage, Stage::Open(permit) if permit.is_probe())
    }

    /// Whether the breaker has heard this attempt's outcome.
    pub fn is_settled(&self) -> bool {
        !matches!(self.stage, Stage::Open(_))
    }

    /// The response header arrived: a failure status settles a failure, any other a success
    /// (slow or not by the time to the header). `request_complete`: whether the gateway had
    /// the whole request. Returns the failure, if it counted as one.
    pub fn on_response_header(
        &mut self,
        status: u16,
        request_complete: bool,
        now: Instant,
    ) -> Option<FailureKind> {
        let Stage::Open(permit) = self.stage else {
            return None;
        };
        self.header_after = Some(now.saturating_duration_since(self.started));
        let elapsed = now.saturating_duration_since(self.clock);
        let failure =
            classify::status_failure(status, &self.upstream.failure_statuses, request_complete);
        match failure {
            Some(kind) => self.settle(permit, CallOutcome::Failure { kind, elapsed }, now),
            None => {
                let receipt = self.record(permit, CallOutcome::Success { elapsed }, now);
                self.stage = Stage::Answered(receipt);
                self.outcome = "success";
            }
        }
        failure
    }

    /// The exchange failed with `error`. Before the response header: a failure if the
    /// classifier blames the backend, else cancelled. After it: a body the backend broke
    /// revokes the success; one the client broke changes nothing. Returns the failure, if
    /// it counted as one.
    pub fn on_error(
        &mut self,
        error: &pingora::Error,
        request_complete: bool,
        now: Instant,
    ) -> Option<FailureKind> {
        let failure = classify::error_failure(error, request_complete);
        match (&self.stage, failure) {
            (Stage::Open(permit), Some(kind)) => {
                let elapsed = now.saturating_duration_since(self.clock);
                let permit = *permit;
                self.settle(permit, CallOutcome::Failure { kind, elapsed }, now);
            }
            (Stage::Open(_), None) => self.cancel(),
            (Stage::Answered(receipt), Some(kind)) => {
                if let (Some(receipt), Some(backend)) = (receipt, self.backend()) {
                    backend.breaker.revoke_success(*receipt, kind, now);
                }
                self.stage = Stage::Settled;
                self.outcome = kind.as_str();
            }
            (Stage::Answered(_) | Stage::Settled, _) => {}
        }
        failure
    }

    /// Settles as cancelled if the breaker has heard nothing yet: the attempt says nothing
    /// about the backend (for instance a pooled connection the backend had closed, retried).
    pub fn cancel(&mut self) {
        if let Stage::Open(permit) = self.stage {
            self.settle(permit, CallOutcome::Cancelled, Instant::now());
        }
    }

    fn settle(&mut self, permit: Permit, outcome: CallOutcome, now: Instant) {
        self.record(permit, outcome, now);
        self.stage = Stage::Settled;
        self.outcome = match outcome {
            CallOutcome::Success { .. } => "success",
            CallOutcome::Failure { kind, .. } => kind.as_str(),
            CallOutcome::Cancelled => "cancelled",
        };
    }

    fn record(&self, permit: Permit, outcome: CallOutcome, now: Instant) -> Option<Receipt> {
        self.backend()
            .and_then(|backend| backend.breaker.record(permit, outcome, now))
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.cancel();
        if let Some(backend) = self.upstream.backends.get(self.backend) {
            self.upstream.bulkhead.release(&backend.in_flight);
            backend.count_attempt(&self.upstream.name, self.outcome);
        }
    }
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("upstream", &self.upstream.name)
            .field("backend", &self.backend)
            .field("settled", &self.is_settled())
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use pingora::{Error, ErrorType};

    use super::*;
    use crate::breaker::BreakerState;

    /// One backend whose breaker trips after 2 failures in a row and half-opens with 1 probe.
    fn upstream() -> Arc<Upstream> {
        let config = crate::config::Config::parse(
            "upstreams:\n  svc: { backends: [127.0.0.1:1], breaker: quick, connect_timeout: 1s, read_timeout: 2s }\nbreakers:\n  quick: { consecutive_failures: 2, failure_rate: off, open_for: 10s, half_open_probes: 1 }\nroutes:\n  - { path: /, upstream: svc, auth: none }\n",
        )
        .unwrap();
        Arc::new(Upstream::new(
            &config.upstreams[0],
            Instant::now(),
            None,
            &Default::default(),
        ))
    }

    fn upstream_error(etype: ErrorType) -> Box<Error> {
        Error::new(etype).into_up()
    }

    fn client_gone() -> Box<Error> {
        Error::new(ErrorType::ConnectionClosed).into_down()
    }

    fn state(u: &Upstream) -> BreakerState {
        u.backends[0].breaker.state()
    }

    fn failures(u: &Upstream, now: Instant) -> (u32, u32) {
        let snap = u.backends[0].breaker.snapshot(now);
        (snap.calls, snap.failures)
    }

    #[test]
    fn a_dropped_attempt_is_cancelled_and_in_flight_counts_it_until_then() {
        let u = upstream();
        let now = Instant::now();
        let attempt = u.attempt(0, now).unwrap();
        assert_eq!(u.backends[0].in_flight(), 1);
        assert!(!attempt.is_settled());
        drop(attempt);
        assert_eq!(u.backends[0].in_flight(), 0);
        assert_eq!(failures(&u, now), (0, 0), "cancelled records nothing");
    }

    #[test]
    fn success_is_recorded_at_the_header_and_the_attempt_stays_in_flight() {
        let u = upstream();
        let t0 = Instant::now();
        let mut attempt = u.attempt(0, t0).unwrap();
        let t1 = t0 + Duration::from_millis(30);
        assert_eq!(attempt.on_response_header(200, true, t1), None);
        assert!(attempt.is_settled());
        assert_eq!(attempt.header_after(), Some(Duration::from_millis(30)));
        assert_eq!(failures(&u, t1), (1, 0));
        assert_eq!(u.backends[0].in_flight(), 1, "the body is still flowing");
        // The client going away afterwards changes nothing.
        assert_eq!(attempt.on_error(&client_gone(), true, t1), None);
        drop(attempt);
        assert_eq!(failures(&u, t1), (1, 0));
        assert_eq!(u.backends[0].in_flight(), 0);
    }

    #[test]
    fn a_body_the_backend_breaks_revokes_the_success_once() {
        let u = upstream();
        let now = Instant::now();
        for _ in 0..2 {
            let mut attempt = u.attempt(0, now).unwrap();
            attempt.on_response_header(200, true, now);
            let broken = upstream_error(ErrorType::ConnectionClosed);
            assert_eq!(
                attempt.on_error(&broken, true, now),
                Some(FailureKind::ResponseIncomplete)
            );
            // A second error (Pingora may report the same break twice) is not a second failure.
            attempt.on_error(&broken, true, now);
        }
        assert_eq!(failures(&u, now), (2, 2));
        assert_eq!(state(&u), BreakerState::Open);
    }

    #[test]
    fn a_slow_upload_does_not_make_the_backend_slow() {
        // slow_call_duration is 2s (the default); the client streams its body for 5s.
        let u = upstream();
        let t0 = Instant::now();
        let mut attempt = u.attempt(0, t0).unwrap();
        let uploaded = t0 + Duration::from_secs(5);
        attempt.request_complete_at(uploaded);
        attempt.on_response_header(200, true, uploaded + Duration::from_millis(10));
        assert_eq!(attempt.header_after(), Some(Duration::from_millis(5010)));
        let snap = u.backends[0].breaker.snapshot(uploaded);
        assert_eq!((snap.calls, snap.slow_calls), (1, 0));
        // A backend slow after it had the whole request is still slow.
        let mut attempt = u.attempt(0, t0).unwrap();
        attempt.request_complete_at(t0 + Duration::from_millis(1));
        attempt.on_response_header(200, true, t0 + Duration::from_secs(3));
        let snap = u.backends[0].breaker.snapshot(t0 + Duration::from_secs(3));
        assert_eq!((snap.calls, snap.slow_calls), (2, 1));
    }

    #[test]
    fn a_failure_status_is_settled_at_the_header() {
        let u = upstream();
        let now = Instant::now();
        let mut attempt = u.attempt(0, now).unwrap();
        assert_eq!(
            attempt.on_response_header(503, true, now),
            Some(FailureKind::Status(503))
        );
        // Nothing later can count the same call again.
        attempt.on_error(&upstream_error(ErrorType::ReadTimedout), true, now);
        drop(attempt);
        assert_eq!(failures(&u, now), (1, 1));
    }

    #[test]
    fn what_the_backend_did_before_it_had_the_whole_request_never_counts() {
        let u = upstream();
        let now = Instant::now();
        for _ in 0..3 {
            let mut attempt = u.attempt(0, now).unwrap();
            let timeout = upstream_error(ErrorType::ReadTimedout);
            assert_eq!(attempt.on_error(&timeout, false, now), None);
            assert!(attempt.is_settled());
        }
        let mut attempt = u.attempt(0, now).unwrap();
        assert_eq!(attempt.on_response_header(503, false, now), None);
        drop(attempt);
        assert_eq!(failures(&u, now), (1, 0));
        assert_eq!(state(&u), BreakerState::Closed);
        // Connecting never waits on the client: a refused connection counts regardless.
        let mut attempt = u.attempt(0, now).unwrap();
        let refused = upstream_error(ErrorType::ConnectRefused);
        assert_eq!(
            attempt.on_error(&refused, false, now),
            Some(FailureKind::ConnectFailed)
        );
    }

    #[test]
    fn a_probe_that_is_answered_frees_the_breaker_however_long_the_body_takes() {
        let u = upstream();
        let t0 = Instant::now();
        for _ in 0..2 {
            let mut attempt = u.attempt(0, t0).unwrap();
            attempt.on_error(&upstream_error(ErrorType::ConnectRefused), true, t0);
        }
        assert_eq!(state(&u), BreakerState::Open);
        let t = t0 + Duration::from_secs(10);
        let mut probe = u.attempt(0, t).unwrap();
        assert!(probe.is_probe());
        assert!(u.attempt(0, t).is_err(), "one probe slot");
        probe.on_response_header(200, true, t);
        // Closed while the probe's client has not read a byte of the body yet.
        assert_eq!(state(&u), BreakerState::Closed);
        assert!(u.attempt(0, t).is_ok());
        drop(probe);
    }

    #[test]
    fn a_dropped_probe_gives_its_slot_back_and_a_stuck_one_holds_it_for_the_lease_only() {
        let u = upstream();
        let t0 = Instant::now();
        for _ in 0..2 {
            let mut attempt = u.attempt(0, t0).unwrap();
            attempt.on_error(&upstream_error(ErrorType::ConnectRefused), true, t0);
        }
        let t = t0 + Duration::from_secs(10);
        let probe = u.attempt(0, t).unwrap();
        drop(probe);
        let stuck = u.attempt(0, t).unwrap();
        assert!(stuck.is_probe());
        // The lease is the upstream's connect + read timeouts: 1s + 2s.
        assert!(u.attempt(0, t + Duration::from_millis(2999)).is_err());
        let mut fresh = u.attempt(0, t + Duration::from_secs(3)).unwrap();
        assert!(fresh.is_probe());
        fresh.on_response_header(200, true, t + Duration::from_secs(3));
        assert_eq!(state(&u), BreakerState::Closed);
        drop(stuck);
    }
}
