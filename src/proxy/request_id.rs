//! `X-Request-Id`: kept when the client sent a sane one, generated otherwise. Generated ids
//! are a per-process random prefix and a counter: unique, cheap, no syscall per request.

use std::{
    hash::{BuildHasher, RandomState},
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
};

use pingora::http::RequestHeader;

const MAX_LEN: usize = 128;

static PREFIX: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(std::process::id()));
static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn from_request(header: &RequestHeader) -> String {
    header
        .headers
        .get(crate::headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_acceptable(v))
        .map_or_else(generate, str::to_owned)
}

fn is_acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub fn generate() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}{n:016x}", *PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        let mut header = RequestHeader::build("GET", b"/", None).unwrap();
        header
            .insert_header("x-request-id", "abc-123_x.y:z")
            .unwrap();
        assert_eq!(from_request(&header), "abc-123_x.y:z");
        header.insert_header("x-request-id", "has space").unwrap();
        assert_eq!(from_request(&header).len(), 32);
        header
            .insert_header("x-request-id", "a".repeat(129))
            .unwrap();
        assert_eq!(from_request(&header).len(), 32);
    }

    #[test]
    fn generated_ids_are_unique() {
        assert_ne!(generate(), generate());
    }
}
