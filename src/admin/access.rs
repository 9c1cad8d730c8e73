//! Who may use the admin listener. With `admin.token_env` set, every request but the page
//! itself (which holds no data) and `admin.open_paths` must prove the token: either
//! `Authorization: Bearer <token>` (scripts, Prometheus) or the session cookie the page gets
//! from `POST /admin/session` with that header (a browser's `EventSource` cannot send
//! headers, and a token in the URL would end up in histories and proxy logs). Comparisons
//! are in constant time; the token is never logged, echoed, or put in the cookie (the
//! cookie holds an HMAC of a fixed label under the token).

use aws_lc_rs::{constant_time, digest, hmac};
use http::{HeaderMap, header};

use crate::config::AdminSettings;

/// The page's session cookie.
pub const COOKIE: &str = "gateway_admin";

/// Whether the request may have `path`.
pub fn allowed(settings: &AdminSettings, path: &str, headers: &HeaderMap) -> bool {
    let Some(token) = &settings.token else {
        return true;
    };
    if path == "/" || settings.open_paths.contains(&path) {
        return true;
    }
    let token = token.expose();
    bearer(headers).is_some_and(|presented| same(presented.as_bytes(), token))
        || cookie(headers)
            .is_some_and(|presented| same(presented.as_bytes(), session_value(token).as_bytes()))
}

/// Whether the request carries the token itself (what `POST /admin/session` requires).
pub fn has_token(settings: &AdminSettings, headers: &HeaderMap) -> bool {
    match &settings.token {
        None => true,
        Some(token) => bearer(headers).is_some_and(|p| same(p.as_bytes(), token.expose())),
    }
}

/// The `Set-Cookie` value for a browser that proved the token.
pub fn session_cookie(settings: &AdminSettings) -> Option<String> {
    let token = settings.token.as_ref()?;
    Some(format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        session_value(token.expose())
    ))
}

fn session_value(token: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, token);
    hmac::sign(&key, b"gateway admin session v1")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Equal in constant time, whatever the lengths (digests are compared, not the inputs).
fn same(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (
        digest::digest(&digest::SHA256, a),
        digest::digest(&digest::SHA256, b),
    );
    constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const TOKEN: &str = "0123456789abcdef-token";

    fn settings(token: Option<&str>) -> AdminSettings {
        AdminSettings {
            listen: "0.0.0.0:9091".parse().unwrap(),
            token: token.map(|t| Secret::new(t.as_bytes())),
            open_paths: vec!["/healthz"],
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn without_a_token_everything_is_open() {
        assert!(allowed(&settings(None), "/admin/config", &HeaderMap::new()));
    }

    #[test]
    fn with_a_token_data_needs_it_and_the_page_and_open_paths_do_not() {
        let s = settings(Some(TOKEN));
        assert!(!allowed(&s, "/admin/config", &HeaderMap::new()));
        assert!(!allowed(&s, "/metrics", &HeaderMap::new()));
        assert!(allowed(&s, "/healthz", &HeaderMap::new()));
        assert!(allowed(&s, "/", &HeaderMap::new()));
        let good = headers(&[(header::AUTHORIZATION, &format!("Bearer {TOKEN}"))]);
        assert!(allowed(&s, "/admin/events", &good));
        let bad = headers(&[(header::AUTHORIZATION, "Bearer 0123456789abcdef-tokeN")]);
        assert!(!allowed(&s, "/admin/events", &bad));
        let basic = headers(&[(header::AUTHORIZATION, &format!("Basic {TOKEN}"))]);
        assert!(!allowed(&s, "/admin/events", &basic));
    }

    #[test]
    fn the_session_cookie_opens_the_stream_and_does_not_hold_the_token() {
        let s = settings(Some(TOKEN));
        let set_cookie = session_cookie(&s).unwrap();
        assert!(!set_cookie.contains(TOKEN));
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
        let pair = set_cookie.split(';').next().unwrap();
        let with = headers(&[(header::COOKIE, &format!("theme=dark; {pair}"))]);
        assert!(allowed(&s, "/admin/events", &with));
        let forged = headers(&[(header::COOKIE, &format!("{COOKIE}={TOKEN}"))]);
        assert!(!allowed(&s, "/admin/events", &forged));
        // The cookie is not the token: it cannot open a session itself.
        assert!(!has_token(&s, &with));
    }
}
