//! Credentials: reading `Authorization` (Basic on `/auth`, Bearer elsewhere), tokens and
//! password hashes. Handlers call [`bearer`] first; `GET /auth` calls [`basic`].

pub mod jwt;
pub mod password;

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::problem::{Instance, Problem, detail};
pub use jwt::{Identity, Jwt};
pub use password::Passwords;

/// Challenge sent with 401 on `/auth`.
pub const BASIC_CHALLENGE: &str = "Basic realm=\"travel\"";
/// Challenge sent with 401 everywhere else.
pub const BEARER_CHALLENGE: &str = "Bearer";

/// Split `Authorization` into (scheme, credentials); `None` if absent or not text.
fn authorization(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    Some((scheme, rest.trim()))
}

/// The token of a `Bearer` credential (scheme case-insensitive, RFC 9110 §11.1).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    match authorization(headers) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Some(token)
        }
        _ => None,
    }
}

/// Authenticate the caller by a Bearer token; 401 with `WWW-Authenticate: Bearer` otherwise.
pub fn bearer(headers: &HeaderMap, jwt: &Jwt, instance: Instance) -> Result<Identity, Problem> {
    let Some(token) = bearer_token(headers) else {
        return Err(Problem::unauthorized(
            detail::WRONG_SCHEME,
            instance,
            BEARER_CHALLENGE,
        ));
    };
    jwt.verify(token).map_err(|e| {
        tracing::debug!(error = %e, "token refused");
        Problem::unauthorized(detail::FAILED_TOKEN, instance, BEARER_CHALLENGE)
    })
}

/// Login and password of a `Basic` credential (scheme case-insensitive); `None` if absent,
/// another scheme, bad base64, not UTF-8, or without a `:`.
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let (scheme, encoded) = authorization(headers)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    // RFC 7617: the user-id cannot contain a colon, the password can.
    let (login, password) = decoded.split_once(':')?;
    Some((login.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn basic_parses_case_insensitive_scheme_and_colon_in_password() {
        let enc = STANDARD.encode("mint green:pa:ss");
        assert_eq!(
            basic(&headers(&format!("bAsIc {enc}"))),
            Some(("mint green".into(), "pa:ss".into()))
        );
    }

    #[test]
    fn basic_rejects_garbage() {
        assert_eq!(basic(&headers("Basic !!!")), None);
        assert_eq!(
            basic(&headers(&format!("Basic {}", STANDARD.encode("nocolon")))),
            None
        );
        assert_eq!(basic(&headers("Bearer abc")), None);
        assert_eq!(basic(&HeaderMap::new()), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(&headers("bearer a.b.c")), Some("a.b.c"));
        assert_eq!(bearer_token(&headers("BEARER a.b.c")), Some("a.b.c"));
        assert_eq!(bearer_token(&headers("Token a.b.c")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
    }
}
