//! The response cache inside the hooks: looking up in `request_filter`, deciding what to
//! store in `upstream_response_filter`, collecting the body in `response_body_filter`,
//! and answering from an entry (fresh, or stale when the upstream fails).

use std::time::SystemTime;

use http::{HeaderName, HeaderValue, Method, header};
use pingora::http::ResponseHeader;
use pingora_proxy::Session;

use super::{RequestCtx, RequestId, problem, request_id};
use crate::{
    cache::{
        CachedResponse, Coalesced, Collector, LeaderGuard, Lookup, RequestKey, ResponseCache,
        unix_ms,
    },
    headers::X_CACHE,
    metrics::CacheResult,
};

/// How long a request waits for another request fetching the same key.
const COALESCE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The cache's part of a request's context.
#[derive(Debug)]
pub struct CacheState {
    /// `None` when the store could not be asked: the response passes uncached (BYPASS).
    pub key: Option<RequestKey>,
    /// `MISS` or `BYPASS`: what the `X-Cache` header says if the upstream answers.
    pub label: &'static str,
    /// An expired entry that may answer if the upstream fails.
    pub stale: Option<CachedResponse>,
    /// Held while this request fetches the key for others.
    pub leader: Option<LeaderGuard>,
    /// The content type and body being collected for storage.
    pub collected: Option<Collector>,
}

impl CacheState {
    pub fn usable_stale(&self, now: SystemTime) -> Option<CachedResponse> {
        self.stale
            .as_ref()
            .filter(|entry| entry.is_usable_stale(unix_ms(now)))
            .cloned()
    }
}

/// What the lookup decided.
pub enum Looked {
    /// A response was written from the cache.
    Answered,
    /// Go to the upstream (with `ctx.cache` set when the response may be stored).
    Proceed,
}

/// Looks the request up. Runs after authentication, so an unauthenticated request never
/// sees a cached body.
pub async fn look_up(session: &mut Session, ctx: &mut RequestCtx) -> pingora::Result<Looked> {
    // Uncached routes (most requests) leave before anything is cloned.
    let Some(policy) = ctx.route.as_ref().and_then(|route| route.cache) else {
        return Ok(Looked::Proceed);
    };
    let (Some(route), Some(state)) = (ctx.route.clone(), ctx.state.clone()) else {
        return Ok(Looked::Proceed);
    };
    let cache = &*state.cache;
    let header = session.req_header();
    if !crate::cache::is_cacheable_method(&header.method) {
        return Ok(Looked::Proceed);
    }
    let refresh = crate::cache::client_wants_fresh(&header.headers);
    let user = ctx.identity.as_ref().map(|identity| identity.user_id);
    let (path, query) = (header.uri.path(), header.uri.query());
    let key = cache.request_key(&route.path, policy, path, query, user);
    // The generation and the entry in one store operation; a refreshing request needs the
    // generation to store under and ignores the entry.
    let looked = match key {
        Some(mut key) => match cache.lookup(&mut key, SystemTime::now()).await {
            Ok(found) => Some((key, found)),
            Err(_) => None,
        },
        None => None,
    };
    let Some((mut key, found)) = looked else {
        // Not cacheable for this request, or the store cannot be asked: proxy uncached,
        // without an error.
        route.series.count_cache(CacheResult::Bypass);
        ctx.cache = Some(Box::new(CacheState {
            key: None,
            label: "BYPASS",
            stale: None,
            leader: None,
            collected: None,
        }));
        return Ok(Looked::Proceed);
    };
    let (mut stale, mut leader) = (None, None);
    if !refresh {
        match found {
            Lookup::Fresh(entry) => {
                route.series.count_cache(CacheResult::Hit);
                answer(session, &entry, "HIT", &ctx.request_id).await?;
                return Ok(Looked::Answered);
            }
            Lookup::Stale(entry) => stale = Some(entry),
            Lookup::Miss => {}
        }
        match cache.coalesce(&key, COALESCE_PATIENCE).await {
            Coalesced::Leader(guard) => leader = Some(guard),
            Coalesced::Waited => {
                if let Ok(Lookup::Fresh(entry)) = cache.lookup(&mut key, SystemTime::now()).await {
                    route.series.count_cache(CacheResult::Hit);
                    answer(session, &entry, "HIT", &ctx.request_id).await?;
                    return Ok(Looked::Answered);
                }
            }
        }
    }
    let (label, result) = if refresh {
        ("BYPASS", CacheResult::Bypass)
    } else {
        ("MISS", CacheResult::Miss)
    };
    route.series.count_cache(result);
    ctx.cache = Some(Box::new(CacheState {
        key: Some(key),
        label,
        stale,
        leader,
        collected: None,
    }));
    Ok(Looked::Proceed)
}

/// Answers from a stale entry if the request has a usable one; true when it did.
pub async fn answer_stale(session: &mut Session, ctx: &mut RequestCtx) -> bool {
    let Some(entry) = ctx
        .cache
        .as_ref()
        .and_then(|c| c.usable_stale(SystemTime::now()))
    else {
        return false;
    };
    if let Some(route) = &ctx.route {
        route.series.count_cache(CacheResult::Stale);
    }
    answer(session, &entry, "STALE", &ctx.request_id)
        .await
        .is_ok()
}

/// Writes a stored response with `X-Cache` and `Age`. The header is built without
/// Pingora's header-case map and from typed names, with the content type sharing the
/// entry's buffer and the fixed values static; the body is the entry's buffer itself.
pub async fn answer(
    session: &mut Session,
    entry: &CachedResponse,
    label: &'static str,
    request_id: &RequestId,
) -> pingora::Result<()> {
    let mut response = problem::uncased_response(entry.status, 6)?;
    let headers = &mut response.headers;
    if let Some(content_type) = entry.content_type_value() {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body_len()));
    headers.insert(
        HeaderName::from_static(X_CACHE),
        HeaderValue::from_static(label),
    );
    headers.insert(
        header::AGE,
        HeaderValue::from(entry.age_secs(unix_ms(SystemTime::now()))),
    );
    headers.insert(request_id::header_name(), request_id.header_value());
    session
        .write_response_header(Box::new(ResponseHeader::from(response)), false)
        .await?;
    let body = (session.req_header().method != Method::HEAD).then(|| entry.body());
    session.write_response_body(body, true).await?;
    Ok(())
}

/// Marks an upstream response and decides whether to collect its body for storage.
pub fn on_upstream_response(
    cache: &ResponseCache,
    state: &mut CacheState,
    method: &Method,
    response: &mut ResponseHeader,
) -> pingora::Result<()> {
    response.insert_header(X_CACHE, state.label)?;
    response.insert_header(header::AGE, "0")?;
    let status = response.status.as_u16();
    let declared_length = response
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let fits = declared_length.is_none_or(|length| length <= cache.max_entry_bytes());
    let Some(scope) = state.key.as_ref().map(|k| k.policy.scope) else {
        return Ok(());
    };
    if *method == Method::GET && fits && crate::cache::is_storable(status, &response.headers, scope)
    {
        let content_type = response
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        // `fits` bounds the declared length by `max_entry_bytes`.
        let expected = declared_length.map_or(0, |length| length as usize);
        state.collected = Some(Collector::new(content_type, expected));
    }
    Ok(())
}

/// Collects body chunks; stores the whole response at its end.
pub fn on_body(
    cache: &ResponseCache,
    state: &mut CacheState,
    body: Option<&bytes::Bytes>,
    end_of_stream: bool,
) {
    let Some(collected) = state.collected.as_mut() else {
        return;
    };
    if let Some(chunk) = body {
        if (collected.body_len() + chunk.len()) as u64 > cache.max_entry_bytes() {
            state.collected = None;
            return;
        }
        collected.push(chunk);
    }
    if !end_of_stream {
        return;
    }
    let (Some(collected), Some(key)) = (state.collected.take(), state.key.as_ref()) else {
        return;
    };
    let now = unix_ms(SystemTime::now());
    let policy = key.policy;
    let fresh_until = now + policy.ttl.as_millis() as u64;
    let stale_until = fresh_until + policy.stale_if_error.as_millis() as u64;
    let response = collected.finish(200, now, fresh_until, stale_until);
    cache.store(key, response, state.leader.take());
}
