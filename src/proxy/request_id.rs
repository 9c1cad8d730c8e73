//! `X-Request-Id`: kept when the client sent a sane one, generated otherwise. Generated ids
//! are a per-process random prefix and a counter: unique, cheap, no syscall per request.
//! The id is held as the header value it is sent as, built once per request (a generated
//! one is written as hex into a stack buffer, without `format!`) and cloned, a reference
//! count, into the upstream request, the answer and any problem response.

use std::{
    fmt,
    hash::{BuildHasher, RandomState},
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

const MAX_LEN: usize = 128;

static PREFIX: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one(std::process::id()));
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// One request's id.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// No id yet (before `request_filter` ran).
    pub fn none() -> Self {
        RequestId(HeaderValue::from_static(""))
    }

    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets in (checked, or generated as hex).
        self.0.to_str().unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The header value, shared with this id (no copy).
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The header's name, as a typed name (no parsing where it is inserted).
pub fn header_name() -> HeaderName {
    HeaderName::from_static(crate::headers::REQUEST_ID)
}

pub fn from_request(header: &RequestHeader) -> RequestId {
    match header.headers.get(crate::headers::REQUEST_ID) {
        Some(value) if is_acceptable(value.as_bytes()) => RequestId(value.clone()),
        _ => generate(),
    }
}

fn is_acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub fn generate() -> RequestId {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 32];
    for (i, word) in [*PREFIX, n].into_iter().enumerate() {
        for (j, byte) in id[i * 16..(i + 1) * 16].iter_mut().enumerate() {
            *byte = HEX[((word >> (60 - 4 * j)) & 0xf) as usize];
        }
    }
    // One allocation that clones share by reference count (a `Bytes` made from a `Vec`
    // would allocate again on its first clone). Hex digits are always a valid value.
    HeaderValue::from_maybe_shared(Bytes::from_owner(id))
        .map_or_else(|_| RequestId::none(), RequestId)
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
        assert_eq!(from_request(&header).as_str(), "abc-123_x.y:z");
        header.insert_header("x-request-id", "has space").unwrap();
        assert_eq!(from_request(&header).as_str().len(), 32);
        header
            .insert_header("x-request-id", "a".repeat(129))
            .unwrap();
        assert_eq!(from_request(&header).as_str().len(), 32);
    }

    #[test]
    fn generated_ids_are_unique_hex_of_prefix_and_counter() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        let expected_prefix = format!("{:016x}", *PREFIX);
        for id in [a.as_str(), b.as_str()] {
            assert_eq!(id.len(), 32);
            assert!(id.starts_with(&expected_prefix));
            assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
        }
        // The counter in hex, as `format!("{:016x}")` wrote it (other tests may take ids
        // in between).
        let counter = |id: &RequestId| u64::from_str_radix(&id.as_str()[16..], 16).unwrap();
        assert!(counter(&b) > counter(&a));
        assert_eq!(format!("{:016x}{:016x}", *PREFIX, counter(&a)), a.as_str());
    }
}
