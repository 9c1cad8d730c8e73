//! The Pingora `ProxyHttp` implementation. Each hook is a short table of contents over the
//! plain types that hold the logic: [`Router`] picks the route in `request_filter`,
//! [`Upstream::attempt`] runs the breakers in `upstream_peer`, and the [`Attempt`] it
//! returns is settled exactly once: at the response header (`upstream_response_filter`), on
//! an error (`fail_to_connect`, `error_while_proxy`), or as cancelled when it is dropped.
//! Before any of that, [`body::receive`] has the request body (buffered routes) or its
//! limits set (streaming ones): what a client does with its body never reaches a breaker.
//!
//! [`Attempt`]: crate::upstream::Attempt

pub mod body;
mod caching;
mod context;
mod header_deadline;
mod limiting;
pub mod problem;
mod request_id;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::header;
use pingora::{
    Error, ErrorType, Result, http::RequestHeader, http::ResponseHeader, upstreams::peer::HttpPeer,
};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use tracing::{debug, warn};

pub use self::context::RequestCtx;
pub use self::header_deadline::HeaderDeadline;
use self::problem::Problem;
pub use self::request_id::RequestId;
use crate::state::State;
use crate::{
    auth::{AuthError, Identity},
    breaker::{FailureKind, classify},
    config::AuthMode,
    drain::Drain,
    headers::{self, REQUEST_ID},
    metrics,
    router::RouteError,
    upstream::{Refused, Upstream},
};

/// The gateway's `ProxyHttp`.
pub struct Gateway {
    state: Arc<ArcSwap<State>>,
    drain: Arc<Drain>,
}

impl Gateway {
    pub fn new(state: Arc<ArcSwap<State>>, drain: Arc<Drain>) -> Self {
        Gateway { state, drain }
    }

    /// Authenticates a request on a route that requires it; on failure the problem to send.
    async fn authenticate(
        &self,
        session: &Session,
        ctx: &RequestCtx,
    ) -> std::result::Result<Identity, Problem> {
        let state = ctx
            .state
            .as_ref()
            .ok_or_else(|| Problem::from_status(500))?;
        let (Some(provider), Some(users)) = (&state.auth, state.token_upstream()) else {
            return Err(Problem::from_status(500));
        };
        let authorization = session
            .req_header()
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let limits = state.rate_limits.exchange.as_deref().zip(ctx.client);
        let result = provider
            .authenticate(
                authorization.as_deref(),
                SystemTime::now(),
                ctx.request_id.as_str(),
                users,
                limits,
            )
            .await;
        result.map_err(|error| match error {
            AuthError::Missing => {
                Problem::unauthorized("credentials are required: Basic or Bearer")
            }
            AuthError::Malformed => {
                Problem::unauthorized("the Authorization header is not Basic or Bearer credentials")
            }
            AuthError::Rejected => Problem::unauthorized("the credentials were refused"),
            AuthError::InvalidToken(_) => {
                Problem::unauthorized("the bearer token is invalid or expired")
            }
            AuthError::Limited {
                retry_after,
                reason,
            } => Problem::too_many_attempts(reason, retry_after),
            AuthError::Unavailable {
                retry_after,
                reason,
            } => {
                warn!(request_id = %ctx.request_id, %reason, "credential exchange failed");
                Problem::auth_unavailable(provider.service(), retry_after)
            }
            AuthError::Overloaded { retry_after } => {
                Problem::overloaded(provider.service(), retry_after)
            }
        })
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(Instant::now())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.drain.is_draining() {
            // `Connection: close` on the answer: keep-alive clients reconnect, to another
            // replica, before this one closes its listener.
            session.set_keepalive(None);
        }
        let state = self.state.load_full();
        ctx.request_id = request_id::from_request(session.req_header());
        let header = session.req_header();
        let route = match state.router.route(&header.method, header.uri.path()) {
            Ok(route) => route,
            Err(error) => {
                let problem = match error {
                    RouteError::UnsafePath(reason) => Problem::bad_path(reason),
                    RouteError::NotFound => Problem::not_found(),
                    RouteError::MethodNotAllowed { allow } => Problem::method_not_allowed(allow),
                };
                problem.write(session, &ctx.request_id).await?;
                return Ok(true);
            }
        };
        ctx.route = Some(route.clone());
        let upstream = state.upstreams.get(route.upstream).cloned();
        let (auth, body_policy) = (route.auth, route.body);
        let server = &state.config.server;
        let (body_timeout, write_timeout) =
            (server.client_body_timeout, server.client_write_timeout);
        ctx.state = Some(state);
        // A response nobody reads ends after this long without progress, freeing its
        // upstream connection and in-flight count (its breaker outcome is settled already).
        session.set_write_timeout(Some(write_timeout));
        // Before the body is read: a client over its limit sends nothing more upstream-bound.
        ctx.client = limiting::client_ip(session, ctx);
        if limiting::check(session, ctx, limiting::Stage::BeforeAuth).await? {
            return Ok(true);
        }
        // Before credentials are exchanged or a permit taken: a request that never arrives
        // whole costs no upstream anything.
        match body::receive(session, body_policy, body_timeout).await {
            Ok(complete) => ctx.request_complete = complete,
            Err(abort) => return end_for_client(session, ctx, abort).await,
        }
        if auth == AuthMode::Required {
            match self.authenticate(session, ctx).await {
                Ok(identity) => ctx.identity = Some(identity),
                Err(problem) => {
                    problem.write(session, &ctx.request_id).await?;
                    return Ok(true);
                }
            }
        }
        if limiting::check(session, ctx, limiting::Stage::AfterAuth).await? {
            return Ok(true);
        }
        let Some(upstream) = upstream else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "route names no upstream",
            ));
        };
        if let caching::Looked::Answered = caching::look_up(session, ctx).await? {
            return Ok(true);
        }
        // The first attempt is admitted here rather than in upstream_peer: a refusal is an
        // early response, which keeps the client's connection alive (an upstream_peer error
        // closes it), and a request waiting for a slot of a busy upstream waits before
        // anything is sent.
        match upstream.admit(0).await {
            Ok(attempt) => ctx.admitted = Some(attempt),
            Err(refused) => {
                if caching::answer_stale(session, ctx).await {
                    return Ok(true);
                }
                refusal(&upstream, refused)
                    .write(session, &ctx.request_id)
                    .await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let admitted = match ctx.admitted.take() {
            Some(attempt) => Ok(attempt),
            None => {
                // A retry: the previous attempt, settled, gives its slot back first.
                drop(ctx.attempt.take());
                let upstream = ctx.upstream_ref().ok_or_else(no_route)?;
                upstream.attempt(ctx.tried, Instant::now())
            }
        };
        match admitted {
            Ok(attempt) => {
                // A retry resends the body from the start.
                ctx.streamed = body::Streamed::default();
                ctx.tried |= 1 << attempt.backend_index();
                ctx.attempts += 1;
                let peer = attempt.peer().cloned().ok_or_else(no_route)?;
                ctx.attempt = Some(attempt);
                Ok(Box::new(peer))
            }
            Err(refused) => {
                let upstream = ctx.upstream_ref().ok_or_else(no_route)?;
                ctx.problem = Some(Box::new(refusal(upstream, refused)));
                Err(Error::explain(
                    ErrorType::HTTPStatus(503),
                    "no backend admitted by its circuit breaker or concurrency limit",
                ))
            }
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        for name in &headers::IDENTITY {
            // Almost no request carries one: a look-up in one map is cheaper than a removal
            // from both of Pingora's (values and name case).
            if upstream_request.headers.contains_key(name) {
                upstream_request.remove_header(name);
            }
        }
        upstream_request.insert_header(REQUEST_ID, ctx.request_id.header_value())?;
        if let Some(identity) = &ctx.identity {
            upstream_request
                .insert_header(header::AUTHORIZATION, format!("Bearer {}", identity.token))?;
            upstream_request.insert_header(headers::USER_ID, identity.user_id.to_string())?;
            upstream_request.insert_header(headers::USER_LOGIN, header_safe(&identity.login))?;
        }
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            let forwarded = match upstream_request.headers.get(&headers::FORWARDED_FOR_NAME) {
                Some(prior) => format!("{}, {}", prior.to_str().unwrap_or_default(), client.ip()),
                None => headers::forwarded_address(client.ip()),
            };
            upstream_request.insert_header(headers::FORWARDED_FOR, forwarded)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        // Settled at the header, before the client can see the answer and send its next
        // request to a breaker that has not learnt yet; a success here frees a half-open
        // probe's slot however slowly the client then reads the body.
        let request_complete = ctx.request_complete;
        let failed = ctx.attempt.as_mut().is_some_and(|attempt| {
            attempt
                .on_response_header(status, request_complete, Instant::now())
                .is_some()
        });
        let method = session.req_header().method.clone();
        let Some(cache) = ctx.state.as_ref().map(|s| s.cache.clone()) else {
            return Ok(());
        };
        if let Some(cache_state) = ctx.cache.as_mut() {
            if failed && cache_state.usable_stale(SystemTime::now()).is_some() {
                // Abandon this response; fail_to_proxy answers from the stale entry.
                return Error::e_explain(
                    ErrorType::HTTPStatus(status),
                    "upstream failed; answering from the stale cache entry",
                );
            }
            caching::on_upstream_response(&cache, cache_state, &method, upstream_response)?;
        }
        if !crate::cache::is_cacheable_method(&method) && (200..300).contains(&status) {
            if let Some(route) = &ctx.route {
                // Before the client sees the answer, so its next read cannot be stale.
                let user = ctx.identity.as_ref().map(|i| i.user_id);
                cache.invalidate(&route.invalidates, user).await;
            }
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(route), Some(chunk)) = (&ctx.route, body.as_ref()) {
            // A buffered body was measured whole in request_filter; a streamed one is
            // measured here, as it goes by.
            if !route.body.buffered {
                if let Err(abort) = ctx.streamed.on_chunk(chunk.len(), route.body.max) {
                    ctx.client_abort = Some(abort);
                    return Error::e_explain(
                        ErrorType::HTTPStatus(413),
                        "streamed request body larger than max_body",
                    );
                }
            }
        }
        if end_of_stream {
            ctx.request_complete = true;
            if ctx.route.as_ref().is_some_and(|r| !r.body.buffered) {
                if let Some(attempt) = ctx.attempt.as_mut() {
                    attempt.request_complete_at(Instant::now());
                }
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(cache_state) = ctx.cache.as_mut() {
            if let Some(state) = &ctx.state {
                caching::on_body(&state.cache, cache_state, body.as_ref(), end_of_stream);
            }
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        response.insert_header(REQUEST_ID, ctx.request_id.header_value())?;
        limiting::add_headers(response, ctx)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(attempt) = ctx.attempt.as_mut() {
            attempt.on_error(&e, ctx.request_complete, Instant::now());
        }
        // Nothing reached the backend, so any method may go to another one.
        let retry = ctx
            .upstream()
            .is_some_and(|u| ctx.attempts <= u.connect_retries && u.has_untried(ctx.tried));
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        // Pingora 0.9's own policy: never resend what may have reached the upstream unless
        // the method is idempotent and the body is still buffered.
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        if let Some(mut attempt) = ctx.attempt.take() {
            if e.retry() && classify::failure_kind(&e).is_some() {
                // A pooled connection the backend had already closed: retried on a fresh
                // connection to the same backend, and no evidence against it.
                ctx.tried &= !(1 << attempt.backend_index());
                attempt.cancel();
            } else {
                attempt.on_error(&e, ctx.request_complete, Instant::now());
                ctx.attempt = Some(attempt);
            }
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        if let Some(written) = session.response_written() {
            // Headers already went out (e.g. a body cut short): nothing more can be said.
            return FailToProxy {
                error_code: written.status.as_u16(),
                can_reuse_downstream: false,
            };
        }
        if let Some(abort) = ctx
            .client_abort
            .or_else(|| body::abort_in_proxy(e, ctx.request_complete))
        {
            ctx.client_abort = Some(abort);
            let max = ctx.route.as_ref().map_or(0, |r| r.body.max);
            let mut error_code = 0;
            if let Some(problem) = abort.problem(max) {
                error_code = problem.status;
                if let Err(write_error) = problem.write(session, &ctx.request_id).await {
                    debug!(request_id = %ctx.request_id, error = %write_error, "could not send the error response");
                }
            }
            return FailToProxy {
                error_code,
                can_reuse_downstream: false,
            };
        }
        if *e.esource() != pingora::ErrorSource::Downstream
            && caching::answer_stale(session, ctx).await
        {
            return FailToProxy {
                error_code: 200,
                can_reuse_downstream: false,
            };
        }
        let upstream_name = ctx.upstream().map(|u| u.name.clone());
        let problem = ctx.problem.take().map(|p| *p).or_else(|| match e.etype() {
            ErrorType::HTTPStatus(code) => Some(Problem::from_status(*code)),
            _ => match (classify::failure_kind(e), upstream_name) {
                (Some(FailureKind::ConnectTimeout | FailureKind::ReadTimeout), Some(name)) => {
                    Some(Problem::gateway_timeout(&name))
                }
                (Some(FailureKind::TlsVerification), Some(name)) => {
                    Some(Problem::bad_gateway_tls(&name, true))
                }
                (Some(FailureKind::TlsHandshake), Some(name)) => {
                    Some(Problem::bad_gateway_tls(&name, false))
                }
                (Some(_), Some(name)) => Some(Problem::bad_gateway(&name)),
                _ if *e.esource() == pingora::ErrorSource::Downstream => None,
                _ => Some(Problem::from_status(500)),
            },
        });
        let Some(problem) = problem else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        if let Err(write_error) = problem.write(session, &ctx.request_id).await {
            debug!(request_id = %ctx.request_id, error = %write_error, "could not send the error response");
        }
        FailToProxy {
            error_code: problem.status,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // `logging` writes one structured line per failed request instead.
        true
    }

    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        // Never the query string: the original API carries passwords in it.
        let header = session.req_header();
        format!("{} {}", header.method, header.uri.path())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        // Dropping the attempt settles it as cancelled if nothing else did (the client went
        // away before the answer) and counts its outcome.
        drop(ctx.attempt.take());
        drop(ctx.admitted.take());
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let header = session.req_header();
        let route = ctx.route.as_ref().map_or(metrics::UNMATCHED, |r| &*r.id);
        let elapsed = ctx.started.elapsed();
        let abort = ctx
            .client_abort
            .or_else(|| e.and_then(|e| body::abort_in_proxy(e, ctx.request_complete)));
        match (abort, &ctx.route) {
            (Some(abort), Some(route)) => route.series.count_abort(abort),
            (Some(abort), None) => metrics::CLIENT_ABORTS
                .with_label_values(&[route, abort.as_str()])
                .inc(),
            (None, _) => {}
        }
        let seconds = elapsed.as_secs_f64();
        match &ctx.route {
            Some(route) => route.series.count_request(&header.method, status, seconds),
            None => {
                metrics::REQUESTS
                    .with_label_values(&[
                        route,
                        metrics::method_label(&header.method),
                        metrics::status_label(status),
                    ])
                    .inc();
                metrics::REQUEST_DURATION
                    .with_label_values(&[route])
                    .observe(seconds);
            }
        }
        let upstream = ctx.upstream_ref().map(|u| &*u.name);
        match e {
            Some(error) if classify::failure_kind(error).is_some() => warn!(
                request_id = %ctx.request_id, route, upstream, status,
                elapsed_ms = elapsed.as_millis() as u64, error = %error,
                "upstream call failed"
            ),
            _ => debug!(
                request_id = %ctx.request_id, method = %header.method, path = header.uri.path(),
                route, upstream, status, elapsed_ms = elapsed.as_millis() as u64,
                "request"
            ),
        }
    }
}

/// Header values must be visible ASCII; anything else (a login with non-ASCII letters)
/// is percent-encoded.
fn header_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Ends a request the client spoiled (see [`body::ClientAbort`]): answered when an answer
/// can still reach it, and never on this connection again, whose request body is unread.
async fn end_for_client(
    session: &mut Session,
    ctx: &mut RequestCtx,
    abort: body::ClientAbort,
) -> Result<bool> {
    ctx.client_abort = Some(abort);
    debug!(request_id = %ctx.request_id, reason = abort.as_str(), "request ended by its client");
    session.set_keepalive(None);
    let max = ctx.route.as_ref().map_or(0, |r| r.body.max);
    if let Some(problem) = abort.problem(max) {
        problem.write(session, &ctx.request_id).await?;
        if abort == body::ClientAbort::TooLarge {
            body::linger(session).await;
        }
    }
    Ok(true)
}

fn no_route() -> Box<Error> {
    Error::explain(ErrorType::InternalError, "request has no upstream")
}

/// The answer to a request no backend was admitted for, counted.
fn refusal(upstream: &Upstream, refused: Refused) -> Problem {
    match refused {
        Refused::Unavailable(unavailable) => {
            upstream.count_rejection();
            Problem::breaker_open(&upstream.name, unavailable.retry_after)
        }
        Refused::Overloaded(shed) => {
            metrics::UPSTREAM_SHED
                .with_label_values(&[&*upstream.name, "upstream", shed.as_str()])
                .inc();
            Problem::overloaded(&upstream.name, refused.retry_after())
        }
    }
}
