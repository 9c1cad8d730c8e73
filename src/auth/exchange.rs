//! The real token source: `GET /auth` at the users upstream with the client's Basic
//! credential, over Pingora's own connector (its pool, the upstream's timeouts), through
//! the users upstream's circuit breakers exactly like a proxied call. A 401 is the
//! client's mistake and a success for the breaker; a connect error, timeout or failure
//! status is the service's trouble and counts against it.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::{
    connectors::http::Connector, http::RequestHeader, protocols::http::client::HttpSession,
    upstreams::peer::HttpPeer,
};

use super::{FetchError, TokenSource};
use crate::{
    breaker::{CallOutcome, FailureKind, classify},
    metrics,
    upstream::Upstream,
};

/// A token is a few hundred bytes; anything much larger is not a token.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How long the client is told to wait when the service failed without an open breaker.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub struct UsersTokenSource {
    path: String,
    connector: Connector,
}

impl UsersTokenSource {
    pub fn new(path: String) -> Self {
        UsersTokenSource {
            path,
            connector: Connector::new(None),
        }
    }
}

/// How one attempt ended.
enum Answer {
    Status {
        status: u16,
        body: Vec<u8>,
    },
    /// The connection could not be made: nothing was sent.
    ConnectFailed(Box<pingora::Error>),
    /// Sent, then failed; `reused` says whether a pooled connection was used.
    Broken {
        error: Box<pingora::Error>,
        reused: bool,
    },
}

#[async_trait]
impl TokenSource for UsersTokenSource {
    async fn fetch(
        &self,
        users: &Upstream,
        basic: &str,
        request_id: &str,
    ) -> Result<String, FetchError> {
        let mut tried = 0u64;
        let mut attempts = 0u32;
        let mut stale_retry_left = true;
        loop {
            let selected = match users.select(tried, Instant::now()) {
                Ok(selected) => selected,
                Err(unavailable_now) => {
                    metrics::BREAKER_REJECTIONS
                        .with_label_values(&[&*users.name])
                        .inc();
                    return Err(unavailable(
                        unavailable_now.retry_after,
                        "the users service's circuit breaker is open",
                    ));
                }
            };
            tried |= 1 << selected.backend;
            attempts += 1;
            let Some(peer) = users.peer(selected.backend) else {
                return Err(unavailable(RETRY_AFTER_FAILURE, "no such backend"));
            };
            let started = Instant::now();
            let answer = self.call(peer, basic, request_id).await;
            let elapsed = started.elapsed();
            match answer {
                Answer::Status { status, body } => {
                    let outcome = if users.failure_statuses.contains(status) {
                        CallOutcome::Failure {
                            kind: FailureKind::Status(status),
                            elapsed,
                        }
                    } else {
                        CallOutcome::Success { elapsed }
                    };
                    users.record(selected, outcome, Instant::now());
                    return interpret(status, body, users);
                }
                Answer::ConnectFailed(error) => {
                    let kind = classify::failure_kind(&error).unwrap_or(FailureKind::ConnectFailed);
                    users.record(
                        selected,
                        CallOutcome::Failure { kind, elapsed },
                        Instant::now(),
                    );
                    if attempts <= users.connect_retries && users.has_untried(tried) {
                        continue;
                    }
                    return Err(unavailable(
                        RETRY_AFTER_FAILURE,
                        "the users service cannot be reached",
                    ));
                }
                Answer::Broken { error, reused } => {
                    if reused && stale_retry_left {
                        // A pooled connection the service had closed: no evidence against
                        // it, and GET is safe to resend once on a fresh connection.
                        stale_retry_left = false;
                        users.record(selected, CallOutcome::Cancelled, Instant::now());
                        tried &= !(1 << selected.backend);
                        attempts -= 1;
                        continue;
                    }
                    let kind =
                        classify::failure_kind(&error).unwrap_or(FailureKind::ResponseIncomplete);
                    users.record(
                        selected,
                        CallOutcome::Failure { kind, elapsed },
                        Instant::now(),
                    );
                    return Err(unavailable(
                        RETRY_AFTER_FAILURE,
                        match kind {
                            FailureKind::ReadTimeout | FailureKind::WriteTimeout => {
                                "the users service did not answer in time"
                            }
                            _ => "the users service answered incompletely",
                        },
                    ));
                }
            }
        }
    }
}

impl UsersTokenSource {
    async fn call(&self, peer: &HttpPeer, basic: &str, request_id: &str) -> Answer {
        let (mut session, reused) = match self.connector.get_http_session(peer).await {
            Ok(connected) => connected,
            Err(error) => return Answer::ConnectFailed(error),
        };
        session.set_read_timeout(peer.options.read_timeout);
        session.set_write_timeout(peer.options.write_timeout);
        match exchange(&mut session, &self.path, basic, request_id).await {
            Ok((status, body)) => {
                self.connector
                    .release_http_session(session, peer, peer.options.idle_timeout)
                    .await;
                Answer::Status { status, body }
            }
            Err(error) => Answer::Broken { error, reused },
        }
    }
}

async fn exchange(
    session: &mut HttpSession,
    path: &str,
    basic: &str,
    request_id: &str,
) -> pingora::Result<(u16, Vec<u8>)> {
    let mut request = RequestHeader::build("GET", path.as_bytes(), Some(4))?;
    request.insert_header(http::header::HOST, "users")?;
    request.insert_header(http::header::AUTHORIZATION, format!("Basic {basic}"))?;
    request.insert_header(crate::headers::REQUEST_ID, request_id)?;
    request.insert_header(http::header::ACCEPT, "*/*")?;
    session.write_request_header(Box::new(request)).await?;
    session.finish_request_body().await?;
    session.read_response_header().await?;
    let status = session.response_header().map_or(0, |h| h.status.as_u16());
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
    Ok((status, body.to_vec()))
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
