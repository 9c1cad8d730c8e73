//! ResponseCache over the memory store, with injected time.

use http::HeaderValue;

use super::*;

fn cache() -> ResponseCache {
    ResponseCache::with_store(
        Arc::new(MemoryStore::new(1000, 1 << 20)),
        String::new(),
        1 << 16,
    )
}

fn policy(scope: CacheScope) -> RouteCachePolicy {
    RouteCachePolicy {
        ttl: Duration::from_secs(30),
        scope,
        stale_if_error: Duration::from_secs(600),
    }
}

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

fn response(body: &'static str, stored_at: u64, p: RouteCachePolicy) -> CachedResponse {
    CachedResponse::new(
        200,
        Some("application/json"),
        body.as_bytes(),
        stored_at,
        stored_at + p.ttl.as_millis() as u64,
        stored_at + (p.ttl + p.stale_if_error).as_millis() as u64,
    )
}

/// Far enough in the future that the memory store's wall-clock expiry keeps entries.
const T0: u64 = 4_000_000_000_000;

#[tokio::test]
async fn fresh_then_stale_then_gone() {
    let cache = cache();
    let p = policy(CacheScope::Shared);
    let mut key = cache
        .request_key("/path", p, "/path", Some("id=1"), Some(1))
        .unwrap();
    assert_eq!(cache.lookup(&mut key, at(T0)).await, Ok(Lookup::Miss));
    cache.store(&key, response("a", T0, p), None);
    assert!(matches!(
        cache.lookup(&mut key, at(T0 + 29_999)).await,
        Ok(Lookup::Fresh(_))
    ));
    assert!(matches!(
        cache.lookup(&mut key, at(T0 + 30_000)).await,
        Ok(Lookup::Stale(_))
    ));
    assert!(matches!(
        cache.lookup(&mut key, at(T0 + 629_999)).await,
        Ok(Lookup::Stale(_))
    ));
    assert_eq!(
        cache.lookup(&mut key, at(T0 + 630_000)).await,
        Ok(Lookup::Miss)
    );
}

#[tokio::test]
async fn user_scope_separates_users_and_shared_scope_does_not() {
    let cache = cache();
    let user = policy(CacheScope::User);
    let k1 = cache
        .request_key("/trip", user, "/trip", Some("id=5"), Some(1))
        .unwrap();
    let k2 = cache
        .request_key("/trip", user, "/trip", Some("id=5"), Some(2))
        .unwrap();
    assert_ne!(k1, k2);
    assert!(
        cache
            .request_key("/trip", user, "/trip", Some("id=5"), None)
            .is_none()
    );
    let shared = policy(CacheScope::Shared);
    let s1 = cache
        .request_key("/path", shared, "/path", Some("id=5"), Some(1))
        .unwrap();
    let s2 = cache
        .request_key("/path", shared, "/path", Some("id=5"), Some(2))
        .unwrap();
    assert_eq!(s1, s2);
}

#[tokio::test]
async fn a_write_invalidates_the_writers_entries_and_shared_ones_only() {
    let cache = cache();
    let user = policy(CacheScope::User);
    let shared = policy(CacheScope::Shared);
    let key = |path: &str, p, query, u| cache.request_key(path, p, path, query, u).unwrap();
    let mut mine = key("/trip", user, Some("id=5"), Some(1));
    let mut theirs = key("/trip", user, Some("id=5"), Some(2));
    let mut list = key("/trips", user, None, Some(1));
    let mut everyone = key("/trip", shared, None, None);
    let mut other_route = key("/path", shared, None, None);
    let keys = [
        &mut mine,
        &mut theirs,
        &mut list,
        &mut everyone,
        &mut other_route,
    ];
    for key in keys {
        assert_eq!(cache.lookup(key, at(T0)).await, Ok(Lookup::Miss));
        cache.store(key, response("x", T0, key.policy), None);
        assert!(matches!(
            cache.lookup(key, at(T0)).await,
            Ok(Lookup::Fresh(_))
        ));
    }

    cache
        .invalidate(&[Arc::from("/trip"), Arc::from("/trips")], Some(1))
        .await;

    // Gone for the writer and for everyone on the written paths; no stale answer either.
    for key in [&mut mine, &mut list, &mut everyone] {
        assert_eq!(cache.lookup(key, at(T0)).await, Ok(Lookup::Miss), "{key:?}");
    }
    // Another user's entries and other routes stay.
    for key in [&mut theirs, &mut other_route] {
        assert!(matches!(
            cache.lookup(key, at(T0)).await,
            Ok(Lookup::Fresh(_))
        ));
    }
    // Stored again after the write, an entry answers under the new generation.
    cache.store(&mine, response("y", T0, user), None);
    assert!(matches!(
        cache.lookup(&mut mine, at(T0)).await,
        Ok(Lookup::Fresh(entry)) if entry.body() == "y"
    ));
}

/// A response fetched before a write and stored after it never answers.
#[tokio::test]
async fn an_entry_stored_under_an_older_generation_is_a_miss() {
    let cache = cache();
    let p = policy(CacheScope::Shared);
    let mut key = cache.request_key("/path", p, "/path", None, None).unwrap();
    assert_eq!(cache.lookup(&mut key, at(T0)).await, Ok(Lookup::Miss));
    cache.invalidate(&[Arc::from("/path")], None).await;
    cache.store(&key, response("before the write", T0, p), None);
    assert_eq!(cache.lookup(&mut key, at(T0)).await, Ok(Lookup::Miss));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_per_key_and_waiters_wake_when_it_stores() {
    let cache = Arc::new(cache());
    let p = policy(CacheScope::Shared);
    let mut key = cache.request_key("/path", p, "/path", None, None).unwrap();
    assert_eq!(cache.lookup(&mut key, at(T0)).await, Ok(Lookup::Miss));
    let Coalesced::Leader(guard) = cache.coalesce(&key, Duration::from_secs(5)).await else {
        panic!("the first request must lead");
    };
    let waiter = {
        let (cache, mut key) = (cache.clone(), key.clone());
        tokio::spawn(async move {
            let waited = matches!(
                cache.coalesce(&key, Duration::from_secs(5)).await,
                Coalesced::Waited
            );
            (waited, cache.lookup(&mut key, at(T0 + 1)).await)
        })
    };
    // Store only once the waiter is really waiting on this leader.
    while guard.done.receiver_count() == 0 {
        tokio::task::yield_now().await;
    }
    cache.store(&key, response("leader's", T0, p), Some(guard));
    let (waited, found) = waiter.await.unwrap();
    assert!(waited);
    assert!(matches!(found, Ok(Lookup::Fresh(entry)) if entry.body() == "leader's"));
    // Once the leader is done, the next miss leads again.
    assert!(matches!(
        cache.coalesce(&key, Duration::from_secs(5)).await,
        Coalesced::Leader(_)
    ));
}

#[test]
fn storability_follows_status_cookies_and_cache_control() {
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    };
    assert!(is_storable(200, &headers(&[]), CacheScope::Shared));
    assert!(!is_storable(404, &headers(&[]), CacheScope::Shared));
    assert!(!is_storable(500, &headers(&[]), CacheScope::User));
    assert!(!is_storable(
        200,
        &headers(&[("set-cookie", "a=b")]),
        CacheScope::User
    ));
    assert!(!is_storable(
        200,
        &headers(&[("cache-control", "max-age=5, no-store")]),
        CacheScope::User
    ));
    assert!(!is_storable(
        200,
        &headers(&[("cache-control", "private")]),
        CacheScope::Shared
    ));
    assert!(is_storable(
        200,
        &headers(&[("cache-control", "private")]),
        CacheScope::User
    ));
    assert!(client_wants_fresh(&headers(&[(
        "cache-control",
        "max-age=0, No-Cache"
    )])));
    assert!(client_wants_fresh(&headers(&[("pragma", "no-cache")])));
    assert!(!client_wants_fresh(&headers(&[(
        "cache-control",
        "max-age=0"
    )])));
}
