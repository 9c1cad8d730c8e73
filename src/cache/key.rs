//! Cache keys. An entry's key is a SHA-256 over the route, the request path, the query
//! with its parameters sorted by name (repeated names in their order) and the user (for
//! `user` scope); the generation counter that invalidation bumps has its own key per route
//! path and owner, and an entry records the generation it was stored under. Only ids go
//! in: never a credential, a token or a header.

use aws_lc_rs::digest;

use crate::{config::CacheScope, headers};

/// Who an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Everyone,
    User(i64),
}

impl Owner {
    pub fn for_scope(scope: CacheScope, user: Option<i64>) -> Option<Owner> {
        match (scope, user) {
            (CacheScope::Shared, _) => Some(Owner::Everyone),
            (CacheScope::User, Some(id)) => Some(Owner::User(id)),
            // A user-scoped entry without a user has no owner: never cache it.
            (CacheScope::User, None) => None,
        }
    }
}

/// The generation counter of a route path for one owner. Built on every cache look-up, so
/// without `core::fmt` (a `format!` here was 2 % of a memory-cache hit).
pub fn generation_key(prefix: &str, route_path: &str, owner: Owner) -> String {
    // "g:", "|u" and an i64's 20 characters at most.
    let mut key = String::with_capacity(prefix.len() + route_path.len() + 24);
    key.push_str(prefix);
    key.push_str("g:");
    key.push_str(route_path);
    match owner {
        Owner::Everyone => key.push_str("|*"),
        Owner::User(id) => {
            key.push_str("|u");
            if id < 0 {
                key.push('-');
            }
            let mut digits = [0; 20];
            headers::push_ascii(&mut key, headers::decimal(id.unsigned_abs(), &mut digits));
        }
    }
    key
}

/// Query parameters sorted by name, so `b=2&a=1` and `a=1&b=2` share an entry; repeated
/// names keep their order (the sort is stable), because an upstream may answer
/// `id=2&id=1` differently from `id=1&id=2` (the travel services take the first value).
/// Names compare decoded (`%69d` is `id`), as the upstream reads them; the pairs stay
/// as sent.
pub fn normalize_query(query: Option<&str>) -> String {
    let mut pairs: Vec<(String, &str)> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| (decoded_name(pair), pair))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut normalized = String::with_capacity(query.map_or(0, str::len));
    for (i, (_, pair)) in pairs.iter().enumerate() {
        if i > 0 {
            normalized.push('&');
        }
        normalized.push_str(pair);
    }
    normalized
}

/// The name of a `name=value` pair as a form decoder (`form_urlencoded`) reads it: `+` is
/// a space, `%XX` a byte (a malformed escape stays as it is), invalid UTF-8 replaced, so
/// names the upstream cannot tell apart sort as one name.
fn decoded_name(pair: &str) -> String {
    let name = pair.split('=').next().unwrap_or("").as_bytes();
    let mut decoded = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let byte = match name[i] {
            b'+' => b' ',
            b'%' => match (
                name.get(i + 1).and_then(|h| (*h as char).to_digit(16)),
                name.get(i + 2).and_then(|l| (*l as char).to_digit(16)),
            ) {
                (Some(high), Some(low)) => {
                    i += 2;
                    // Two hex digits: at most 0xff.
                    u8::try_from(high * 16 + low).unwrap_or(b'%')
                }
                _ => b'%',
            },
            other => other,
        };
        decoded.push(byte);
        i += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

pub fn entry_key(
    prefix: &str,
    route_path: &str,
    path: &str,
    query: Option<&str>,
    owner: Owner,
) -> String {
    let user;
    let owner = match owner {
        Owner::Everyone => "*",
        Owner::User(id) => {
            user = format!("u{id}");
            user.as_str()
        }
    };
    // A query of one parameter is its own normal form: no sorting, no copy.
    let normalized;
    let query = match query {
        Some(q) if !q.contains('&') => q,
        _ => {
            normalized = normalize_query(query);
            normalized.as_str()
        }
    };
    // Each part prefixed by its length, all in one buffer hashed in one call (one digest
    // update per part cost more than the hashing itself).
    let parts = [route_path, "GET", path, query, owner];
    let mut input = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        input.extend_from_slice(&(part.len() as u64).to_le_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    let digest = digest::digest(&digest::SHA256, &input);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(prefix.len() + 66);
    key.push_str(prefix);
    key.push_str("c:");
    for byte in digest.as_ref() {
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_keys_read_as_before() {
        for id in [0, 1, 9, 10, 42, 1000, -7, i64::MAX, i64::MIN] {
            assert_eq!(
                generation_key("p:", "/trip", Owner::User(id)),
                format!("p:g:/trip|u{id}")
            );
        }
        assert_eq!(
            generation_key("bench:", "/path", Owner::Everyone),
            "bench:g:/path|*"
        );
    }

    #[test]
    fn query_order_does_not_matter_but_values_do() {
        let k = |q| entry_key("p:", "/path", "/path", Some(q), Owner::Everyone);
        assert_eq!(k("id=1&x=2"), k("x=2&id=1"));
        assert_eq!(k("id=1&&x=2"), k("x=2&id=1"));
        assert_ne!(k("id=1"), k("id=2"));
    }

    #[test]
    fn repeated_names_keep_their_order() {
        let k = |q| entry_key("p:", "/path", "/path", Some(q), Owner::Everyone);
        // The services answer with the first value: these are different requests.
        assert_ne!(k("id=2&id=1"), k("id=1&id=2"));
        assert_ne!(k("id=1&%69d=2"), k("%69d=2&id=1"));
        assert_ne!(k("a+b=1&a%20b=2"), k("a%20b=2&a+b=1"));
        assert_ne!(k("%FF=1&%FE=2"), k("%FE=2&%FF=1"));
        // Other names around them still move freely.
        assert_eq!(k("x=9&id=2&id=1"), k("id=2&x=9&id=1"));
        assert_eq!(
            normalize_query(Some("z=0&id=2&a=5&%69d=1&id")),
            "a=5&id=2&%69d=1&id&z=0"
        );
        // Malformed escapes are names like any other.
        assert_eq!(normalize_query(Some("%zz=1&%4=2&%=3")), "%=3&%4=2&%zz=1");
    }

    #[test]
    fn a_single_parameter_is_its_own_normal_form() {
        for query in ["id=1", "", "%69d=2", "a+b=1"] {
            assert_eq!(normalize_query(Some(query)), query);
        }
        // Hashed as before: each part's length, then its bytes, in one digest.
        let mut context = digest::Context::new(&digest::SHA256);
        for part in ["/path", "GET", "/path", "id=1", "u7"] {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part.as_bytes());
        }
        let hex: String = context
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            entry_key("p:", "/path", "/path", Some("id=1"), Owner::User(7)),
            format!("p:c:{hex}")
        );
    }

    #[test]
    fn owners_and_paths_separate_entries() {
        let base = entry_key("p:", "/trip", "/trip", Some("id=5"), Owner::User(1));
        assert_ne!(
            base,
            entry_key("p:", "/trip", "/trip", Some("id=5"), Owner::User(2))
        );
        assert_ne!(
            base,
            entry_key("p:", "/trip", "/trip", Some("id=5"), Owner::Everyone)
        );
        assert_ne!(
            base,
            entry_key("p:", "/trip", "/trips", Some("id=5"), Owner::User(1))
        );
        assert!(base.starts_with("p:c:"));
        assert_eq!(base.len(), "p:c:".len() + 64);
    }

    #[test]
    fn user_scope_needs_a_user() {
        assert_eq!(Owner::for_scope(CacheScope::User, None), None);
        assert_eq!(
            Owner::for_scope(CacheScope::User, Some(3)),
            Some(Owner::User(3))
        );
        assert_eq!(
            Owner::for_scope(CacheScope::Shared, Some(3)),
            Some(Owner::Everyone)
        );
        assert_eq!(
            generation_key("p:", "/trip", Owner::User(3)),
            "p:g:/trip|u3"
        );
    }
}
