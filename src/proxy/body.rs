//! The request body is the client's business until the gateway has all of it.
//! `request_filter` calls [`receive`] once the route is known and before anything else
//! costs an upstream: a declared `Content-Length` over the route's `max_body` is refused at
//! once (413); on a buffered route (`request_buffering: on`, the default) the whole body is
//! then read under one deadline (`server.client_body_timeout`) and the size limit, into
//! Pingora's retry buffer, which sends it upstream in one go when proxying starts (see
//! `docs/architecture.md`, "Request bodies"). So no breaker permit is taken, no token is
//! exchanged and no backend connection is made for a request that never arrives whole.
//! On a streaming route (`request_buffering: off`) [`Streamed`] counts the body as
//! `request_body_filter` passes it on, and [`abort_in_proxy`] says when an error that ended
//! the exchange was the client's doing.
//!
//! Everything here but [`receive`] is plain logic over a [`BodySource`], unit-tested
//! without sockets under tokio's paused clock.

use std::{future::Future, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, header::CONTENT_LENGTH};
use pingora::{Error, ErrorSource, ErrorType};
use pingora_proxy::Session;
use tokio::time::Instant;

use super::problem::Problem;
use crate::config::BodyPolicy;

// The reasons are the `reason` label of `gateway_client_aborts_total`, so the enum is
// declared with the metrics (which create each route's series at 0); what the client is
// answered is the proxy's business, here.
pub use crate::metrics::ClientAbort;

impl ClientAbort {
    /// The answer, when the client can still be given one. `max` is the route's limit.
    pub fn problem(self, max: u64) -> Option<Problem> {
        match self {
            ClientAbort::TooLarge => Some(Problem::payload_too_large(max)),
            ClientAbort::BodyTimeout => Some(Problem::request_timeout()),
            ClientAbort::Malformed => Some(Problem::bad_body()),
            ClientAbort::HeaderTimeout | ClientAbort::WentAway => None,
        }
    }
}

/// Where body chunks come from: the client's session, or a script in tests.
pub trait BodySource {
    /// The next chunk, `None` at the end of the body.
    fn next_chunk(&mut self) -> impl Future<Output = pingora::Result<Option<Bytes>>> + Send;
}

impl BodySource for Session {
    fn next_chunk(&mut self) -> impl Future<Output = pingora::Result<Option<Bytes>>> + Send {
        self.read_request_body()
    }
}

/// Applies the route's body policy to the request in `session`. `Ok(true)`: the gateway
/// has the whole request (a buffered body was read, or there is none); `Ok(false)`: the
/// body will stream. `Err`: the request ends here, with the client's abort.
pub async fn receive(
    session: &mut Session,
    policy: BodyPolicy,
    timeout: Duration,
) -> Result<bool, ClientAbort> {
    check_declared(session.req_header().headers.get(CONTENT_LENGTH), policy.max)?;
    if session.is_body_empty() {
        return Ok(true);
    }
    if !policy.buffered {
        // Each wait for the next piece of a streamed body is bounded; a stall ends as a
        // downstream read timeout, answered 408 (see `abort_in_proxy`).
        session.set_read_timeout(Some(timeout));
        return Ok(false);
    }
    // What is read from here on is kept in the retry buffer, which Pingora sends to the
    // upstream once the body is done. Its 64 KiB bound is why a buffered route's limit is
    // at most `BodyPolicy::MAX_BUFFERED` (checked when the config is compiled).
    session.enable_retry_buffering();
    read_whole(session, policy.max, Instant::now() + timeout).await?;
    if session.retry_buffer_truncated() {
        return Err(ClientAbort::TooLarge);
    }
    Ok(true)
}

/// How long the rest of a refused body is read and dropped after the 413, as nginx's
/// `lingering_close` does: a client still sending when the connection closes would get a
/// reset, which can destroy the 413 before it reads it.
pub const LINGER: Duration = Duration::from_secs(1);

/// Reads and drops what the client still sends of a refused body, for [`LINGER`] at most.
pub async fn linger(session: &mut Session) {
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(Some(_)) = session.read_request_body().await {}
    })
    .await;
}

/// Refuses a declared length over `max` before a byte of the body is read. A header that
/// is not a number is left to Pingora's body reader, which refuses it.
pub fn check_declared(content_length: Option<&HeaderValue>, max: u64) -> Result<(), ClientAbort> {
    let declared = content_length
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > max => Err(ClientAbort::TooLarge),
        _ => Ok(()),
    }
}

/// Reads the whole body from `source`: the total must stay within `max` bytes and the
/// last byte arrive before `deadline` (a trickle is cut like a stall). Returns its length.
pub async fn read_whole<S: BodySource>(
    source: &mut S,
    max: u64,
    deadline: Instant,
) -> Result<u64, ClientAbort> {
    let mut total: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout_at(deadline, source.next_chunk()).await {
            Err(_elapsed) => return Err(ClientAbort::BodyTimeout),
            Ok(Err(error)) => {
                tracing::debug!(%error, "reading the request body failed");
                return Err(read_error(&error));
            }
            Ok(Ok(None)) => return Ok(total),
            Ok(Ok(Some(chunk))) => chunk,
        };
        total = total.saturating_add(chunk.len() as u64);
        if total > max {
            return Err(ClientAbort::TooLarge);
        }
    }
}

/// A streamed body's running size (`request_buffering: off`), fed by `request_body_filter`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Streamed {
    received: u64,
}

impl Streamed {
    /// Counts a chunk; past `max` the request must end with 413.
    pub fn on_chunk(&mut self, len: usize, max: u64) -> Result<(), ClientAbort> {
        self.received = self.received.saturating_add(len as u64);
        if self.received > max {
            return Err(ClientAbort::TooLarge);
        }
        Ok(())
    }
}

/// What reading the client's body failed on.
pub fn read_error(error: &Error) -> ClientAbort {
    match error.etype() {
        ErrorType::ReadTimedout => ClientAbort::BodyTimeout,
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => {
            ClientAbort::WentAway
        }
        // Pingora's name for a Content-Length body that ended early: the client hung up.
        ErrorType::Custom(name) if *name == "PrematureBodyEnd" => ClientAbort::WentAway,
        _ => ClientAbort::Malformed,
    }
}

/// What an error that ended a proxied exchange says about the client, if anything.
/// `request_complete`: the gateway had the whole request when it happened. A timeout on
/// either side while the body was still arriving is the client's (the backend was waiting
/// on it); any failure on the client's connection is the client's.
pub fn abort_in_proxy(error: &Error, request_complete: bool) -> Option<ClientAbort> {
    let timeout = matches!(
        error.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    );
    match error.esource() {
        ErrorSource::Downstream if !request_complete => Some(read_error(error)),
        ErrorSource::Downstream => Some(ClientAbort::WentAway),
        ErrorSource::Upstream if timeout && !request_complete => Some(ClientAbort::BodyTimeout),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A client as a script: each step waits, then yields a chunk, the end, or an error.
    struct Script(VecDeque<(Duration, Step)>);

    enum Step {
        Chunk(usize),
        End,
        Fail(ErrorType),
    }

    impl Script {
        fn new(steps: impl IntoIterator<Item = (u64, Step)>) -> Self {
            Script(
                steps
                    .into_iter()
                    .map(|(ms, step)| (Duration::from_millis(ms), step))
                    .collect(),
            )
        }
    }

    impl BodySource for Script {
        fn next_chunk(&mut self) -> impl Future<Output = pingora::Result<Option<Bytes>>> + Send {
            let next = self.0.pop_front();
            async move {
                let Some((wait, step)) = next else {
                    // A client that sends nothing more and never closes.
                    std::future::pending::<()>().await;
                    return Ok(None);
                };
                tokio::time::sleep(wait).await;
                match step {
                    Step::Chunk(len) => Ok(Some(Bytes::from(vec![b'x'; len]))),
                    Step::End => Ok(None),
                    Step::Fail(etype) => Err(Error::new(etype).into_down()),
                }
            }
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn a_whole_body_within_limit_and_deadline_is_read() {
        let mut client = Script::new([
            (10, Step::Chunk(1000)),
            (10, Step::Chunk(24)),
            (10, Step::End),
        ]);
        let deadline = Instant::now() + SECOND;
        assert_eq!(read_whole(&mut client, 1024, deadline).await, Ok(1024));
    }

    #[tokio::test(start_paused = true)]
    async fn one_byte_over_the_limit_is_too_large_however_it_arrives() {
        let max = BodyPolicy::MAX_BUFFERED;
        let big = usize::try_from(max).unwrap();
        let mut one_chunk = Script::new([(0, Step::Chunk(big + 1)), (0, Step::End)]);
        let deadline = Instant::now() + SECOND;
        assert_eq!(
            read_whole(&mut one_chunk, max, deadline).await,
            Err(ClientAbort::TooLarge)
        );
        // Refused as soon as the total passes the limit, without waiting for the rest.
        let mut growing = Script::new([(0, Step::Chunk(big)), (0, Step::Chunk(1))]);
        assert_eq!(
            read_whole(&mut growing, max, deadline).await,
            Err(ClientAbort::TooLarge)
        );
        let mut exact = Script::new([(0, Step::Chunk(big)), (0, Step::End)]);
        assert_eq!(read_whole(&mut exact, max, deadline).await, Ok(max));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out_at_the_deadline() {
        let mut stalled = Script::new([(0, Step::Chunk(10))]);
        let start = Instant::now();
        assert_eq!(
            read_whole(&mut stalled, 100, start + SECOND).await,
            Err(ClientAbort::BodyTimeout)
        );
        assert_eq!(Instant::now() - start, SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_that_never_stalls_is_cut_at_the_deadline_too() {
        // One byte every 100ms: no single wait is long, the whole is.
        let mut trickle = Script::new((0..100).map(|_| (100, Step::Chunk(1))));
        let start = Instant::now();
        assert_eq!(
            read_whole(&mut trickle, 1000, start + SECOND).await,
            Err(ClientAbort::BodyTimeout)
        );
        assert!(Instant::now() - start <= SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn read_failures_say_what_the_client_did() {
        let deadline = Instant::now() + SECOND;
        for (etype, abort) in [
            (ErrorType::ConnectionClosed, ClientAbort::WentAway),
            (ErrorType::Custom("PrematureBodyEnd"), ClientAbort::WentAway),
            (ErrorType::ReadTimedout, ClientAbort::BodyTimeout),
            (ErrorType::Custom("InvalidChunk"), ClientAbort::Malformed),
        ] {
            let mut client = Script::new([(0, Step::Chunk(1)), (0, Step::Fail(etype))]);
            assert_eq!(read_whole(&mut client, 100, deadline).await, Err(abort));
        }
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let value = |text: &'static str| HeaderValue::from_static(text);
        assert_eq!(
            check_declared(Some(&value("65537")), 65536),
            Err(ClientAbort::TooLarge)
        );
        assert_eq!(check_declared(Some(&value("65536")), 65536), Ok(()));
        assert_eq!(check_declared(None, 65536), Ok(()));
        // Pingora refuses a malformed length itself.
        assert_eq!(check_declared(Some(&value("lots")), 65536), Ok(()));
    }

    #[test]
    fn a_streamed_body_is_counted_across_chunks() {
        let mut streamed = Streamed::default();
        assert_eq!(streamed.on_chunk(600, 1000), Ok(()));
        assert_eq!(streamed.on_chunk(400, 1000), Ok(()));
        assert_eq!(streamed.on_chunk(1, 1000), Err(ClientAbort::TooLarge));
    }

    #[test]
    fn timeouts_while_the_body_is_still_arriving_are_the_clients() {
        let up = |etype| Error::new(etype).into_up();
        let down = |etype| Error::new(etype).into_down();
        assert_eq!(
            abort_in_proxy(&up(ErrorType::ReadTimedout), false),
            Some(ClientAbort::BodyTimeout)
        );
        assert_eq!(abort_in_proxy(&up(ErrorType::ReadTimedout), true), None);
        assert_eq!(abort_in_proxy(&up(ErrorType::ConnectRefused), false), None);
        assert_eq!(
            abort_in_proxy(&down(ErrorType::ReadTimedout), false),
            Some(ClientAbort::BodyTimeout)
        );
        assert_eq!(
            abort_in_proxy(&down(ErrorType::WriteTimedout), true),
            Some(ClientAbort::WentAway)
        );
    }

    #[test]
    fn only_aborts_a_client_can_still_hear_get_an_answer() {
        assert_eq!(
            ClientAbort::TooLarge.problem(10).map(|p| p.status),
            Some(413)
        );
        assert_eq!(
            ClientAbort::BodyTimeout.problem(10).map(|p| p.status),
            Some(408)
        );
        assert_eq!(
            ClientAbort::Malformed.problem(10).map(|p| p.status),
            Some(400)
        );
        assert!(ClientAbort::WentAway.problem(10).is_none());
        assert!(ClientAbort::HeaderTimeout.problem(10).is_none());
    }
}
