//! The rate limits' part of `request_filter`: tell the client's address, ask the route's
//! policy, answer 429 when it refuses, and remember the verdict for `response_filter`
//! when the policy sends its headers on every response.

use std::{net::IpAddr, time::Instant};

use pingora::http::ResponseHeader;
use pingora_proxy::Session;

use super::{RequestCtx, problem::Problem};
use crate::{
    config::RateLimitKey,
    headers,
    ratelimit::{Key, client_address},
};

/// When in the request a policy is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before authentication: policies keyed by address or route, so a flood is refused
    /// before it costs a credential check.
    BeforeAuth,
    /// After: policies keyed by the authenticated user.
    AfterAuth,
}

/// The client's address as the limits see it (`server.trusted_proxies` applied).
pub fn client_ip(session: &Session, ctx: &RequestCtx) -> Option<IpAddr> {
    let peer = session.client_addr()?.as_inet()?.ip();
    let state = ctx.state.as_ref()?;
    if state.rate_limits.trusted_proxies.is_empty() {
        // No proxy is believed, so the header is not even looked up (every request asks).
        return Some(peer);
    }
    let forwarded = session
        .req_header()
        .headers
        .get_all(&headers::FORWARDED_FOR_NAME)
        .iter()
        .map(|v| v.as_bytes());
    Some(client_address(
        peer,
        forwarded,
        &state.rate_limits.trusted_proxies,
    ))
}

/// Asks the route's policy about this request if it belongs to `stage`; `Ok(true)` when
/// a 429 was written.
pub async fn check(
    session: &mut Session,
    ctx: &mut RequestCtx,
    stage: Stage,
) -> pingora::Result<bool> {
    // Routes without a policy leave before the state is cloned.
    let Some(policy) = ctx.route.as_ref().and_then(|route| route.rate_limit) else {
        return Ok(false);
    };
    let (Some(state), Some(route)) = (ctx.state.clone(), ctx.route.as_ref()) else {
        return Ok(false);
    };
    let Some(limiter) = state.rate_limits.policy(policy) else {
        return Ok(false);
    };
    let user = ctx.identity.as_ref().map(|i| i.user_id);
    let key = match (limiter.policy.key, stage, user) {
        (RateLimitKey::Route, Stage::BeforeAuth, _) => Key::Route(&route.id),
        (RateLimitKey::Client, Stage::BeforeAuth, _) => match ctx.client {
            Some(ip) => Key::Client(ip),
            None => return Ok(false),
        },
        (RateLimitKey::User, Stage::AfterAuth, Some(id)) => Key::User(id),
        // A user-keyed policy on a route without authentication counts addresses.
        (RateLimitKey::User, Stage::AfterAuth, None) => match ctx.client {
            Some(ip) => Key::Client(ip),
            None => return Ok(false),
        },
        _ => return Ok(false),
    };
    let verdict = limiter.check(key, Instant::now()).await;
    if verdict.allowed {
        if verdict.always_headers {
            ctx.rate_limit = Some(Box::new(verdict));
        }
        return Ok(false);
    }
    route.series.count_rate_limited(&verdict.policy);
    Problem::rate_limited(&verdict)
        .write(session, &ctx.request_id)
        .await?;
    Ok(true)
}

/// Adds the `RateLimit` headers of an admitted request whose policy sends them always.
pub fn add_headers(response: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    if let Some(verdict) = &ctx.rate_limit {
        for (name, value) in super::problem::rate_limit_headers(verdict) {
            response.insert_header(name, value)?;
        }
    }
    Ok(())
}
