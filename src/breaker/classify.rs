//! What an attempt's ending says about the upstream. A connect error, a timeout, a response
//! cut short or a configured failure status ([`StatusSet`], compiled from a breaker's
//! `failure_statuses`) is the upstream's fault; a client that went away, or any 4xx not
//! listed in `failure_statuses`, says nothing against it. The proxy hooks and the token
//! exchange classify here; the breaker decides what the outcome means.

use std::fmt;

use pingora::{ErrorSource, ErrorType};

use super::FailureKind;

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
