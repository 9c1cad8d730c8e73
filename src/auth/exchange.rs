//! The real token source: `GET /auth` at the users upstream with the client's Basic
//! credential, over Pingora's own connector (its pool, the upstream's timeouts), through
//! the users upstream's circuit breakers exactly like a proxied call. A 401 is the
//! client's mistake and a success for the breaker; a connect error, timeout or failure
//! status is the service's trouble and counts against it. Exchanges wait for a slot of their
//! own concurrency limit first (`auth.token_endpoint.max_in_flight`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::{
    connectors::http::Connector, http::RequestHeader, protocols::http::client::HttpSession,
};

use super::{FetchError, TokenSource};
use crate::{
    breaker::FailureKind,
    metrics,
    upstream::{
        Attempt, Refused, Upstream,
        bulkhead::{Limiter, SHED_RETRY_AFTER},
    },
};

/// A token is a few hundred bytes; anything much larger is not a token.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How long the client is told to wait when the service failed without an open breaker.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub struct UsersTokenSource {
    path: String,
    connector: Connector,
    /// Exchanges in flight at once, and the queue before them (`auth.token_endpoint`).
    limit: Arc<Limiter>,
}

impl UsersTokenSource {
    pub fn new(path: String, limit: Arc<Limiter>) -> Self {
        UsersTokenSource {
            path,
            connector: Connector::new(None),
            limit,
        }
    }
}

/// Why one attempt produced no answer. The attempt itself has already been settled with the
/// breaker, except for `Stale`, which the caller settles.
enum Broken {
    /// The connection could not be made: nothing was sent.
    Connect(FailureKind),
    /// A pooled connection failed before any answer: the service had probably closed it.
    Stale(Box<pingora::Error>),
    /// Sent, then failed (a failure of the service).
    Failed(FailureKind),
}

#[async_trait]
impl TokenSource for UsersTokenSource {
    async fn fetch(
        &self,
        users: &Arc<Upstream>,
        basic: &str,
        request_id: &str,
    ) -> Result<String, FetchError> {
        // Held for the whole exchange: a login flood waits (or is refused) here, and the
        // service never has more verifications at once than it can finish in time.
        let _slot = match self.limit.take().await {
            Ok(slot) => slot,
            Err(shed) => {
                metrics::UPSTREAM_SHED
                    .with_label_values(&[&*users.name, "token_exchange", shed.as_str()])
                    .inc();
                return Err(FetchError::Overloaded {
                    retry_after: SHED_RETRY_AFTER,
                });
            }
        };
        let mut tried = 0u64;
        let mut attempts = 0u32;
        let mut stale_retry_left = true;
        loop {
            let mut attempt = match users.attempt(tried, Instant::now()) {
                Ok(attempt) => attempt,
                Err(Refused::Unavailable(unavailable_now)) => {
                    users.count_rejection();
                    return Err(unavailable(
                        unavailable_now.retry_after,
                        "the users service's circuit breaker is open",
                    ));
                }
                Err(refused @ Refused::Overloaded(shed)) => {
                    metrics::UPSTREAM_SHED
                        .with_label_values(&[&*users.name, "upstream", shed.as_str()])
                        .inc();
                    return Err(FetchError::Overloaded {
                        retry_after: refused.retry_after(),
                    });
                }
            };
            tried |= 1 << attempt.backend_index();
            attempts += 1;
            let failure = match self.call(&mut attempt, basic, request_id).await {
                Ok((status, body)) => return interpret(status, body, users),
                Err(Broken::Connect(kind)) => {
                    if attempts <= users.connect_retries && users.has_untried(tried) {
                        continue;
                    }
                    return Err(unavailable(
                        RETRY_AFTER_FAILURE,
                        match kind {
                            FailureKind::TlsVerification => {
                                "the users service's TLS certificate failed verification"
                            }
                            FailureKind::TlsHandshake => {
                                "the TLS handshake with the users service failed"
                            }
                            _ => "the users service cannot be reached",
                        },
                    ));
                }
                Err(Broken::Stale(error)) => {
                    if stale_retry_left {
                        // No evidence against the service, and GET is safe to resend once
                        // on a fresh connection.
                        stale_retry_left = false;
                        attempt.cancel();
                        tried &= !(1 << attempt.backend_index());
                        attempts -= 1;
                        continue;
                    }
                    settle_error(&mut attempt, error)
                }
                Err(Broken::Failed(kind)) => kind,
            };
            return Err(unavailable(
                RETRY_AFTER_FAILURE,
                match failure {
                    FailureKind::ReadTimeout | FailureKind::WriteTimeout => {
                        "the users service did not answer in time"
                    }
                    _ => "the users service answered incompletely",
                },
            ));
        }
    }
}

impl UsersTokenSource {
    /// One exchange over one attempt, which it settles: at the response header, or on the
    /// error that ends it (a broken body after the header revokes the header's success).
    async fn call(
        &self,
        attempt: &mut Attempt,
        basic: &str,
        request_id: &str,
    ) -> Result<(u16, Vec<u8>), Broken> {
        let Some(peer) = attempt.peer().cloned() else {
            return Err(Broken::Failed(FailureKind::ConnectFailed));
        };
        let (mut session, reused) = match self.connector.get_http_session(&peer).await {
            Ok(connected) => connected,
            Err(error) => return Err(Broken::Connect(settle_error(attempt, error))),
        };
        session.set_read_timeout(peer.options.read_timeout);
        session.set_write_timeout(peer.options.write_timeout);
        let status = match send(&mut session, &self.path, basic, request_id).await {
            Ok(status) => status,
            Err(error) if reused => return Err(Broken::Stale(error)),
            Err(error) => return Err(Broken::Failed(settle_error(attempt, error))),
        };
        // The token request has no body: the service always had all of it.
        attempt.on_response_header(status, true, Instant::now());
        match read_body(&mut session).await {
            Ok(body) => {
                self.connector
                    .release_http_session(session, &peer, peer.options.idle_timeout)
                    .await;
                Ok((status, body))
            }
            Err(error) => Err(Broken::Failed(settle_error(attempt, error))),
        }
    }
}

/// Settles `attempt` with an error of the service's side of the exchange.
fn settle_error(attempt: &mut Attempt, error: Box<pingora::Error>) -> FailureKind {
    let error = error.into_up();
    attempt
        .on_error(&error, true, Instant::now())
        .unwrap_or(FailureKind::ResponseIncomplete)
}

/// Sends the token request and reads the response header; returns its status.
async fn send(
    session: &mut HttpSession,
    path: &str,
    basic: &str,
    request_id: &str,
) -> pingora::Result<u16> {
    let mut request = RequestHeader::build("GET", path.as_bytes(), Some(4))?;
    request.insert_header(http::header::HOST, "users")?;
    request.insert_header(http::header::AUTHORIZATION, format!("Basic {basic}"))?;
    request.insert_header(crate::headers::REQUEST_ID, request_id)?;
    request.insert_header(http::header::ACCEPT, "*/*")?;
    session.write_request_header(Box::new(request)).await?;
    session.finish_request_body().await?;
    session.read_response_header().await?;
    Ok(session.response_header().map_or(0, |h| h.status.as_u16()))
}

async fn read_body(session: &mut HttpSession) -> pingora::Result<Vec<u8>> {
    let mut body = BytesMut::new();
    while let Some(chunk) = session.read_response_body().await? {
        if body.len() + chunk.len() > MAX_TOKEN_BYTES {
            return pingora::Error::e_explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "token response too large",
            );
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.to_vec())
}

fn interpret(status: u16, body: Vec<u8>, users: &Upstream) -> Result<String, FetchError> {
    match status {
        200 => String::from_utf8(body)
            .map(|token| token.trim().trim_matches('"').to_owned())
            .map_err(|_| {
                unavailable(
                    RETRY_AFTER_FAILURE,
                    "the users service answered a token that is not text",
                )
            }),
        status if users.failure_statuses.contains(status) => Err(unavailable(
            RETRY_AFTER_FAILURE,
            format!("the users service failed (status {status})"),
        )),
        // Any other client error means the credential is not acceptable (401 wrong
        // password, 400 unreadable credential, ...): the client's mistake, not the service's.
        status @ 400..=499 if status != 408 && status != 429 => Err(FetchError::Rejected),
        status => Err(unavailable(
            RETRY_AFTER_FAILURE,
            format!("the users service answered the token request with status {status}"),
        )),
    }
}

fn unavailable(retry_after: Duration, reason: impl Into<String>) -> FetchError {
    FetchError::Unavailable {
        retry_after,
        reason: reason.into(),
    }
}
