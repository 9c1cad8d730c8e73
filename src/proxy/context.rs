//! Per-request state carried between hooks. Plain owned data: no locks, nothing shared.

use std::{sync::Arc, time::Instant};

use super::{
    body::{ClientAbort, Streamed},
    caching::CacheState,
    problem::Problem,
    request_id::RequestId,
};
use crate::{
    auth::Identity,
    ratelimit::Verdict,
    router::Route,
    state::State,
    upstream::{Attempt, Upstream},
};

/// Pingora moves the per-request future, which holds this, by value (twice a request, in
/// `process_new`), so what most requests never use is boxed: the cache's part, a problem
/// decided in `upstream_peer`, a rate-limit verdict kept for the headers.
#[derive(Debug)]
pub struct RequestCtx {
    pub started: Instant,
    pub request_id: RequestId,
    /// The config snapshot this request runs under, taken in `request_filter`.
    pub state: Option<Arc<State>>,
    pub route: Option<Arc<Route>>,
    /// Backends tried so far, one bit per backend index.
    pub tried: u64,
    pub attempts: u32,
    /// The call to a backend in progress; dropping it settles it (see `upstream::Attempt`).
    pub attempt: Option<Attempt>,
    /// The first attempt, admitted in `request_filter` (after any wait for a slot) and
    /// taken over by `upstream_peer`.
    pub admitted: Option<Attempt>,
    /// The gateway has the whole request (header and body) from the client. What a backend
    /// does before that is never held against it.
    pub request_complete: bool,
    /// A response decided in a hook that cannot write one (`upstream_peer`).
    pub problem: Option<Box<Problem>>,
    /// Who the caller is, once `request_filter` authenticated it.
    pub identity: Option<Identity>,
    /// Set on cacheable GETs that go to the upstream.
    pub cache: Option<Box<CacheState>>,
    /// The client's doing that ended the request, once known (counted in `logging`).
    pub client_abort: Option<ClientAbort>,
    /// A streamed body's size so far, for the current attempt.
    pub streamed: Streamed,
    /// The client's address as the limits see it (after `server.trusted_proxies`).
    pub client: Option<std::net::IpAddr>,
    /// An admitted request's rate-limit verdict, kept when its policy sends the
    /// `RateLimit` headers on every response.
    pub rate_limit: Option<Box<Verdict>>,
}

impl RequestCtx {
    pub fn new(started: Instant) -> Self {
        RequestCtx {
            started,
            request_id: RequestId::none(),
            state: None,
            route: None,
            tried: 0,
            attempts: 0,
            attempt: None,
            admitted: None,
            request_complete: false,
            problem: None,
            identity: None,
            cache: None,
            client_abort: None,
            streamed: Streamed::default(),
            client: None,
            rate_limit: None,
        }
    }

    pub fn upstream(&self) -> Option<Arc<Upstream>> {
        self.upstream_ref().cloned()
    }

    /// The route's upstream, borrowed (no reference count taken).
    pub fn upstream_ref(&self) -> Option<&Arc<Upstream>> {
        let state = self.state.as_ref()?;
        state.upstreams.get(self.route.as_ref()?.upstream)
    }
}
#[cfg(test)]
mod tests {
    /// Every byte here is moved twice a request with the request's future (888 bytes
    /// before the rarely used parts were boxed; docs/benchmarks.md). A new field that
    /// breaks this bound belongs in a box, or in one of the boxed parts.
    #[test]
    fn the_context_stays_small() {
        let size = std::mem::size_of::<super::RequestCtx>();
        assert!(size <= 400, "RequestCtx is {size} bytes");
    }
}
