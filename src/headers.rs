//! The names of the headers the gateway itself sets or strips, said once. The proxy hooks
//! (`upstream_request_filter`, `response_filter`, the cache's answers, problem responses)
//! and the token exchange (`auth::exchange`) all write them from here.

/// Correlates a request across the gateway, the upstream and the token exchange: kept when
/// the client sent a sane one, generated otherwise, and returned on every response.
pub const REQUEST_ID: &str = "x-request-id";

/// The client chain, appended to before a request goes upstream.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// `HIT`, `MISS`, `STALE`, ... on responses of cached routes.
pub const X_CACHE: &str = "x-cache";

/// The verified user's id, set from the token's claims for authenticated requests.
pub const USER_ID: &str = "x-user-id";

/// The verified user's login, set from the token's claims for authenticated requests.
pub const USER_LOGIN: &str = "x-user-login";

/// Identity headers only the gateway may set; a client's copies are dropped before the
/// request goes upstream.
pub const IDENTITY: [&str; 2] = [USER_ID, USER_LOGIN];

/// The quota policy of a rate limit (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";

/// What remains of a rate limit's quota (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: &str = "ratelimit";
