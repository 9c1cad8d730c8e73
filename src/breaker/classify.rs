//! What an attempt's ending says about the upstream. A connect error, a timeout, a response
//! cut short or a configured failure status ([`StatusSet`], compiled from a breaker's
//! `failure_statuses`) is the upstream's fault; a client that went away, or any 4xx not
//! listed in `failure_statuses`, says nothing against it. The proxy hooks and the token
//! exchange classify here (through `upstream::Attempt`); the breaker decides what the
//! outcome means.
//!
//! A failed TLS handshake with a backend is a failure to connect, and one whose certificate
//! was refused (expired, another name, unknown issuer) is told apart from the others, so
//! the client's problem and the metrics can say so.
//!
//! One rule decides blame, and it is applied here only ([`error_failure`] and
//! [`status_failure`]): **an attempt counts against a backend only for what the backend did
//! after the gateway had the whole request for it**, and for connecting, which never waits
//! on the client. While a client is still sending its body (a route with
//! `request_buffering: off`), a backend that times out or gives up is waiting on that
//! client, and the attempt is cancelled, never a failure.

use std::fmt;

use pingora::{ErrorSource, ErrorType};

use super::FailureKind;

/// Whether `error` counts against the backend. `request_complete`: the gateway had received
/// the whole request (header and body) from the client when the error happened.
pub fn error_failure(error: &pingora::Error, request_complete: bool) -> Option<FailureKind> {
    let kind = failure_kind(error)?;
    let connecting = matches!(
        kind,
        FailureKind::ConnectFailed
            | FailureKind::ConnectTimeout
            | FailureKind::TlsVerification
            | FailureKind::TlsHandshake
    );
    (connecting || request_complete).then_some(kind)
}

/// Whether a response status counts against the backend (see [`error_failure`]).
pub fn status_failure(
    status: u16,
    failure_statuses: &StatusSet,
    request_complete: bool,
) -> Option<FailureKind> {
    (request_complete && failure_statuses.contains(status)).then_some(FailureKind::Status(status))
}

/// The failure an error from the proxy loop stands for, or `None` when the error lies on
/// the client's side (or inside the gateway). Says what happened, not yet whom to blame:
/// [`error_failure`] decides that.
pub fn failure_kind(error: &pingora::Error) -> Option<FailureKind> {
    match error.etype() {
        ErrorType::ConnectTimedout => return Some(FailureKind::ConnectTimeout),
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::BindError
        | ErrorType::SocketError => return Some(FailureKind::ConnectFailed),
        ErrorType::InvalidCert => return Some(FailureKind::TlsVerification),
        ErrorType::TLSHandshakeFailure | ErrorType::TLSWantX509Lookup
            if certificate_refused(error) =>
        {
            return Some(FailureKind::TlsVerification);
        }
        ErrorType::TLSHandshakeFailure | ErrorType::TLSWantX509Lookup => {
            return Some(FailureKind::TlsHandshake);
        }
        _ => {}
    }
    if *error.esource() != ErrorSource::Upstream {
        return None;
    }
    Some(match error.etype() {
        ErrorType::ReadTimedout => FailureKind::ReadTimeout,
        ErrorType::WriteTimedout => FailureKind::WriteTimeout,
        _ => FailureKind::ResponseIncomplete,
    })
}

/// Whether a TLS handshake failed because the backend's certificate was refused. rustls
/// says so only in its message (`invalid peer certificate: Expired`), which Pingora keeps
/// as the error's context; the handshake error type is the same for every cause.
fn certificate_refused(error: &pingora::Error) -> bool {
    error.to_string().contains("invalid peer certificate")
}

/// The set of HTTP statuses an upstream's breaker counts as failures.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StatusSet {
    bits: [u64; 10],
}

impl StatusSet {
    pub fn insert(&mut self, status: u16) {
        if let Some(word) = self.bits.get_mut(usize::from(status / 64)) {
            *word |= 1 << (status % 64);
        }
    }

    pub fn contains(&self, status: u16) -> bool {
        self.bits
            .get(usize::from(status / 64))
            .is_some_and(|word| word & (1 << (status % 64)) != 0)
    }

    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (100..600).filter(|s| self.contains(*s))
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::Error;

    fn upstream(etype: ErrorType) -> Box<Error> {
        let mut e = Error::new(etype);
        e.as_up();
        e
    }

    #[test]
    fn upstream_side_errors_are_failures() {
        assert_eq!(
            failure_kind(&upstream(ErrorType::ConnectRefused)),
            Some(FailureKind::ConnectFailed)
        );
        assert_eq!(
            failure_kind(&upstream(ErrorType::ConnectTimedout)),
            Some(FailureKind::ConnectTimeout)
        );
        assert_eq!(
            failure_kind(&upstream(ErrorType::ReadTimedout)),
            Some(FailureKind::ReadTimeout)
        );
        assert_eq!(
            failure_kind(&upstream(ErrorType::WriteTimedout)),
            Some(FailureKind::WriteTimeout)
        );
        assert_eq!(
            failure_kind(&upstream(ErrorType::ConnectionClosed)),
            Some(FailureKind::ResponseIncomplete)
        );
        assert_eq!(
            failure_kind(&upstream(ErrorType::InvalidHTTPHeader)),
            Some(FailureKind::ResponseIncomplete)
        );
    }

    #[test]
    fn tls_handshake_failures_are_connect_failures_and_a_refused_certificate_is_told_apart() {
        let refused = Error::explain(
            ErrorType::TLSHandshakeFailure,
            "TLS connect() failed: invalid peer certificate: Expired, SNI: backend.test",
        );
        assert_eq!(failure_kind(&refused), Some(FailureKind::TlsVerification));
        // Counted even while the client is still sending: connecting never waits on it.
        assert_eq!(
            error_failure(&refused, false),
            Some(FailureKind::TlsVerification)
        );
        // Pingora adds context on the way up; the cause is still found.
        let wrapped = refused.more_context("Peer: 127.0.0.1:1");
        assert_eq!(failure_kind(&wrapped), Some(FailureKind::TlsVerification));
        let alert = Error::explain(
            ErrorType::TLSHandshakeFailure,
            "TLS connect() failed: received fatal alert: HandshakeFailure, SNI: backend.test",
        );
        assert_eq!(
            error_failure(&alert, false),
            Some(FailureKind::TlsHandshake)
        );
    }

    #[test]
    fn client_side_errors_are_not() {
        let mut e = Error::new(ErrorType::ConnectionClosed);
        e.as_down();
        assert_eq!(failure_kind(&e), None);
        let mut e = Error::new(ErrorType::ReadTimedout);
        e.as_down();
        assert_eq!(failure_kind(&e), None);
        assert_eq!(failure_kind(&Error::new(ErrorType::InternalError)), None);
    }

    #[test]
    fn nothing_but_connecting_counts_while_the_client_is_still_sending() {
        for etype in [
            ErrorType::ReadTimedout,
            ErrorType::WriteTimedout,
            ErrorType::ConnectionClosed,
        ] {
            assert_eq!(error_failure(&upstream(etype.clone()), false), None);
            assert!(error_failure(&upstream(etype), true).is_some());
        }
        assert_eq!(
            error_failure(&upstream(ErrorType::ConnectRefused), false),
            Some(FailureKind::ConnectFailed)
        );
        assert_eq!(
            error_failure(&upstream(ErrorType::ConnectTimedout), false),
            Some(FailureKind::ConnectTimeout)
        );
    }

    #[test]
    fn a_failure_status_counts_only_for_a_whole_request() {
        let mut statuses = StatusSet::default();
        statuses.insert(503);
        assert_eq!(
            status_failure(503, &statuses, true),
            Some(FailureKind::Status(503))
        );
        assert_eq!(status_failure(503, &statuses, false), None);
        assert_eq!(status_failure(404, &statuses, true), None);
    }
}
