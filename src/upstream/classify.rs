//! What an attempt's ending says about the upstream. A connect error, a timeout, a response
//! cut short or a configured failure status is the upstream's fault; a client that went
//! away, or any 4xx not listed in `failure_statuses`, says nothing against it.

use pingora::{ErrorSource, ErrorType};

use super::breaker::FailureKind;

/// The failure an error from the proxy loop stands for, or `None` when the error lies on
/// the client's side (or inside the gateway) and must not count against the upstream.
pub fn failure_kind(error: &pingora::Error) -> Option<FailureKind> {
    match error.etype() {
        ErrorType::ConnectTimedout => return Some(FailureKind::ConnectTimeout),
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::BindError
        | ErrorType::SocketError => return Some(FailureKind::ConnectFailed),
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
    fn client_side_errors_are_not() {
        let mut e = Error::new(ErrorType::ConnectionClosed);
        e.as_down();
        assert_eq!(failure_kind(&e), None);
        let mut e = Error::new(ErrorType::ReadTimedout);
        e.as_down();
        assert_eq!(failure_kind(&e), None);
        assert_eq!(failure_kind(&Error::new(ErrorType::InternalError)), None);
    }
}
