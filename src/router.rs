//! The compiled route table. `request_filter` asks it which route serves a request; a route's
//! path matches itself and everything below it by whole segments, the longest match wins, and
//! among routes with the same path the first whose methods accept the request wins. Query
//! strings never take part.

use std::{collections::HashMap, sync::Arc};

use http::Method;

use crate::{
    config::{AuthMode, BodyPolicy, Config, RouteCachePolicy},
    metrics::{self, RouteSeries},
};

/// A route as the request path needs it.
#[derive(Debug)]
pub struct Route {
    pub id: Arc<str>,
    /// The route's configured path (its cache namespace).
    pub path: Arc<str>,
    pub upstream: usize,
    pub auth: AuthMode,
    pub cache: Option<RouteCachePolicy>,
    /// Route paths a successful write here invalidates, its own first.
    pub invalidates: Arc<[Arc<str>]>,
    /// The largest body accepted, and whether it is read whole before the upstream call.
    pub body: BodyPolicy,
    /// Index of the route's rate-limit policy in `State::rate_limits`.
    pub rate_limit: Option<usize>,
    /// Its series of the per-request metrics, made (at 0) with the route.
    pub series: RouteSeries,
    methods: Option<Arc<[Method]>>,
}

impl Route {
    fn accepts(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }
}

/// Why no route serves a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The path could escape a route prefix once decoded by the upstream.
    UnsafePath(&'static str),
    NotFound,
    /// Some route has the path, none has the method.
    MethodNotAllowed {
        allow: Vec<Method>,
    },
}

#[derive(Debug, Default)]
pub struct Router {
    /// Routes behind an `Arc`, so a request's context holds one with one reference count.
    by_prefix: HashMap<String, Vec<Arc<Route>>>,
}

impl Router {
    /// The routes of `config` (its rate-limit policies name the routes' series).
    pub fn new(config: &Config) -> Self {
        metrics::init_unmatched_series();
        let mut by_prefix: HashMap<String, Vec<Arc<Route>>> = HashMap::new();
        for spec in &config.routes {
            let policy = spec
                .rate_limit
                .and_then(|index| config.rate_limits.get(index))
                .map(|policy| &policy.name);
            by_prefix
                .entry(spec.path.clone())
                .or_default()
                .push(Arc::new(Route {
                    id: spec.id.clone(),
                    path: Arc::from(spec.path.as_str()),
                    upstream: spec.upstream,
                    auth: spec.auth,
                    cache: spec.cache,
                    invalidates: Arc::from(spec.invalidates.as_slice()),
                    body: spec.body,
                    rate_limit: spec.rate_limit,
                    series: RouteSeries::new(spec.id.clone(), spec.cache.is_some(), policy),
                    methods: spec.methods.as_deref().map(Arc::from),
                }));
        }
        Router { by_prefix }
    }

    /// The route for `method` and `path` (the path without its query).
    pub fn route(&self, method: &Method, path: &str) -> Result<&Arc<Route>, RouteError> {
        check_path(path).map_err(RouteError::UnsafePath)?;
        let mut allow: Vec<Method> = Vec::new();
        for prefix in prefixes(path) {
            let Some(candidates) = self.by_prefix.get(prefix) else {
                continue;
            };
            if let Some(route) = candidates.iter().find(|r| r.accepts(method)) {
                return Ok(route);
            }
            if allow.is_empty() {
                for route in candidates {
                    for m in route.methods.iter().flat_map(|m| m.iter()) {
                        if !allow.contains(m) {
                            allow.push(m.clone());
                        }
                    }
                }
            }
        }
        if allow.is_empty() {
            Err(RouteError::NotFound)
        } else {
            Err(RouteError::MethodNotAllowed { allow })
        }
    }
}

/// `/a/b/c`, `/a/b`, `/a`, `/`: longest first, cut at segment boundaries only.
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    let mut end = Some(path.len());
    std::iter::from_fn(move || {
        let current = end?;
        let prefix = if current == 0 { "/" } else { &path[..current] };
        end = if prefix == "/" {
            None
        } else {
            Some(path[..current].rfind('/').unwrap_or(0))
        };
        Some(prefix)
    })
}

/// Rejects paths whose meaning may change once an upstream decodes or normalises them:
/// dot segments (also percent-encoded), encoded slashes and backslashes, and raw
/// backslashes, which some servers treat as separators.
fn check_path(path: &str) -> Result<(), &'static str> {
    if !path.starts_with('/') {
        return Err("the path must start with /");
    }
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Err("backslashes are not allowed in paths"),
            b'%' => {
                let escape = bytes.get(i + 1..i + 3).unwrap_or_default();
                if escape.eq_ignore_ascii_case(b"2f") || escape.eq_ignore_ascii_case(b"5c") {
                    return Err("encoded slashes are not allowed in paths");
                }
                if escape.eq_ignore_ascii_case(b"00") {
                    return Err("encoded NUL is not allowed in paths");
                }
            }
            _ => {}
        }
    }
    if path.split('/').any(is_dot_segment) {
        return Err("dot segments are not allowed in paths");
    }
    Ok(())
}

/// `.` or `..`, each dot possibly written `%2e` / `%2E`. No allocation: this runs for every
/// segment of every request.
fn is_dot_segment(segment: &str) -> bool {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3
            && rest[0] == b'%'
            && rest[1] == b'2'
            && rest[2].eq_ignore_ascii_case(&b'e')
        {
            rest = &rest[3..];
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots == 1 || dots == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(yaml_routes: &str) -> Router {
        let text = format!(
            "upstreams:\n  users: {{ backends: [127.0.0.1:1] }}\n  paths: {{ backends: [127.0.0.1:2] }}\nauth:\n  token_endpoint: {{ upstream: users }}\nroutes:\n{yaml_routes}"
        );
        let secret = |_: &str| Some("0123456789abcdef0123456789abcdef".to_owned());
        Router::new(&Config::parse_with_env(&text, &secret).unwrap())
    }

    fn id(router: &Router, method: Method, path: &str) -> Result<String, RouteError> {
        router.route(&method, path).map(|r| r.id.to_string())
    }

    #[test]
    fn matches_by_whole_segments() {
        let r = router("  - { path: /user, upstream: users, auth: none }\n");
        assert_eq!(id(&r, Method::GET, "/user").unwrap(), "/user");
        assert_eq!(id(&r, Method::GET, "/user/search").unwrap(), "/user");
        assert_eq!(id(&r, Method::GET, "/users"), Err(RouteError::NotFound));
        assert_eq!(id(&r, Method::GET, "/"), Err(RouteError::NotFound));
        assert_eq!(id(&r, Method::GET, "/use"), Err(RouteError::NotFound));
    }

    #[test]
    fn longest_prefix_wins() {
        let r = router(
            "  - { path: /, upstream: paths, name: root }\n  - { path: /user, upstream: users, auth: none }\n  - { path: /user/search, upstream: paths }\n",
        );
        assert_eq!(
            id(&r, Method::GET, "/user/search/x").unwrap(),
            "/user/search"
        );
        assert_eq!(id(&r, Method::GET, "/user/x").unwrap(), "/user");
        assert_eq!(id(&r, Method::GET, "/users").unwrap(), "root");
        assert_eq!(id(&r, Method::GET, "/").unwrap(), "root");
    }

    #[test]
    fn methods_filter_and_first_match_wins() {
        let r = router(
            "  - { path: /user, methods: [POST], upstream: users, auth: none }\n  - { path: /user, upstream: users }\n",
        );
        assert_eq!(id(&r, Method::POST, "/user").unwrap(), "POST /user");
        let get = r.route(&Method::GET, "/user").unwrap();
        assert_eq!(&*get.id, "/user");
        assert_eq!(get.auth, AuthMode::Required);
        assert_eq!(
            r.route(&Method::POST, "/user").unwrap().auth,
            AuthMode::None
        );
    }

    #[test]
    fn a_path_without_the_method_is_405_with_allow() {
        let r = router("  - { path: /user, methods: [post, PUT], upstream: users, auth: none }\n");
        assert_eq!(
            id(&r, Method::GET, "/user/1"),
            Err(RouteError::MethodNotAllowed {
                allow: vec![Method::POST, Method::PUT]
            })
        );
    }

    #[test]
    fn unsafe_paths_are_rejected() {
        let r = router("  - { path: /user, upstream: users, auth: none }\n");
        for path in [
            "/user/../admin",
            "/user/%2e%2E/admin",
            "/user/.",
            "/user%2Fx",
            "/user/%2fx",
            "/user/%5cx",
            "/user\\x",
            "/user/%00",
            "user",
        ] {
            assert!(
                matches!(r.route(&Method::GET, path), Err(RouteError::UnsafePath(_))),
                "{path}"
            );
        }
        assert!(r.route(&Method::GET, "/user/a..b").is_ok());
        assert!(r.route(&Method::GET, "/user/%20x").is_ok());
    }

    #[test]
    fn dot_segments_in_every_spelling() {
        for dots in [".", "..", "%2e", "%2E%2e", ".%2E", "%2e."] {
            assert!(is_dot_segment(dots), "{dots}");
        }
        for other in ["", "...", "a.", ".a", "%2f", "%2", "%2e%2e%2e", "x..y"] {
            assert!(!is_dot_segment(other), "{other}");
        }
    }

    #[test]
    fn prefixes_walk_segment_boundaries() {
        assert_eq!(
            prefixes("/a/bc/d").collect::<Vec<_>>(),
            ["/a/bc/d", "/a/bc", "/a", "/"]
        );
        assert_eq!(prefixes("/").collect::<Vec<_>>(), ["/"]);
    }
}
