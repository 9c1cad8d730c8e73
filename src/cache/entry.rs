//! A stored response and its wire form in Redis. Only what a replay needs is kept: the
//! status, the content type and the body, plus the times that decide fresh and stale and
//! the generation it was stored under. Never a request header, so never a credential.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A cached response. Times are Unix milliseconds. The content type and the body share one
/// buffer (`data`: the type's bytes, then the body), so an entry costs one allocation
/// besides the store's own bookkeeping, and a clone is a reference count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    pub status: u16,
    /// Length of the content type at the start of `data` (0: none).
    type_len: u16,
    data: Bytes,
    pub stored_at: u64,
    /// Served as a hit until then.
    pub fresh_until: u64,
    /// Served when the upstream fails until then (`fresh_until` + `stale_if_error`).
    pub stale_until: u64,
    /// The generation counter's value it was stored under (set by `ResponseCache::store`):
    /// it answers only while its counter still holds that value.
    pub generation: u64,
}

/// Format version byte, so that a change of layout reads as a miss, not as garbage
/// (1: without the generation, when it was part of the key).
const VERSION: u8 = 2;

/// Bytes before the content type in the wire form.
const WIRE_HEADER: usize = 37;

impl CachedResponse {
    /// An entry holding a copy of `content_type` and `body` (a content type longer than
    /// 64 KiB is dropped; no real one is).
    pub fn new(
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
        stored_at: u64,
        fresh_until: u64,
        stale_until: u64,
    ) -> Self {
        let content_type = content_type
            .filter(|t| t.len() <= usize::from(u16::MAX))
            .unwrap_or("");
        let mut data = Collector::new(Some(content_type), body.len());
        data.push(body);
        data.finish(status, stored_at, fresh_until, stale_until)
    }

    pub fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until
    }

    pub fn is_usable_stale(&self, now_ms: u64) -> bool {
        now_ms < self.stale_until
    }

    /// Whole seconds since it was stored, for the `Age` header.
    pub fn age_secs(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.stored_at) / 1000
    }

    pub fn content_type(&self) -> Option<&str> {
        let bytes = &self.data[..usize::from(self.type_len)];
        // Written from a `&str` or checked on decode, so never invalid.
        (!bytes.is_empty())
            .then(|| std::str::from_utf8(bytes).ok())
            .flatten()
    }

    /// The content type as a header value sharing the entry's buffer (no copy).
    pub fn content_type_value(&self) -> Option<http::HeaderValue> {
        if self.type_len == 0 {
            return None;
        }
        http::HeaderValue::from_maybe_shared(self.data.slice(..usize::from(self.type_len))).ok()
    }

    /// The body, sharing the entry's buffer.
    pub fn body(&self) -> Bytes {
        self.data.slice(usize::from(self.type_len)..)
    }

    pub fn body_len(&self) -> usize {
        self.data.len() - usize::from(self.type_len)
    }

    /// Bytes this entry costs in memory, roughly.
    pub fn weight(&self) -> u64 {
        (self.data.len() + 64) as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(WIRE_HEADER + self.data.len());
        out.put_u8(VERSION);
        out.put_u64(self.generation);
        out.put_u16(self.status);
        out.put_u64(self.stored_at);
        out.put_u64(self.fresh_until);
        out.put_u64(self.stale_until);
        out.put_u16(self.type_len);
        out.put_slice(&self.data);
        out.to_vec()
    }

    /// `None` for anything that is not a well-formed entry of this version.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        Self::decode_owned(bytes.to_vec())
    }

    /// [`Self::decode`] of a buffer it takes over: the entry's content type and body stay
    /// in it (no copy).
    pub fn decode_owned(bytes: Vec<u8>) -> Option<Self> {
        let mut input = &bytes[..];
        if input.remaining() < WIRE_HEADER || input.get_u8() != VERSION {
            return None;
        }
        let generation = input.get_u64();
        let status = input.get_u16();
        let stored_at = input.get_u64();
        let fresh_until = input.get_u64();
        let stale_until = input.get_u64();
        let type_len = input.get_u16();
        if input.remaining() < usize::from(type_len) {
            return None;
        }
        std::str::from_utf8(&input[..usize::from(type_len)]).ok()?;
        Some(CachedResponse {
            status,
            type_len,
            data: Bytes::from(bytes).slice(WIRE_HEADER..),
            stored_at,
            fresh_until,
            stale_until,
            generation,
        })
    }
}

/// Builds an entry's buffer while its body streams in: the content type first, then the
/// chunks, in a buffer sized once when the length is declared.
#[derive(Debug)]
pub struct Collector {
    type_len: u16,
    data: BytesMut,
}

impl Collector {
    /// A content type over 64 KiB is dropped (no real one is).
    pub fn new(content_type: Option<&str>, expected_body: usize) -> Self {
        let content_type = content_type
            .filter(|t| t.len() <= usize::from(u16::MAX))
            .unwrap_or("");
        let mut data = BytesMut::with_capacity(content_type.len() + expected_body);
        data.put_slice(content_type.as_bytes());
        Collector {
            type_len: u16::try_from(content_type.len()).unwrap_or(0),
            data,
        }
    }

    pub fn body_len(&self) -> usize {
        self.data.len() - usize::from(self.type_len)
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.data.extend_from_slice(chunk);
    }

    pub fn finish(
        self,
        status: u16,
        stored_at: u64,
        fresh_until: u64,
        stale_until: u64,
    ) -> CachedResponse {
        // A buffer filled exactly becomes the entry as is; one that grew (no declared
        // length) is copied once to its size, so no spare capacity stays resident.
        let data = if self.data.capacity() == self.data.len() {
            self.data.freeze()
        } else {
            Bytes::copy_from_slice(&self.data)
        };
        CachedResponse {
            status,
            type_len: self.type_len,
            data,
            stored_at,
            fresh_until,
            stale_until,
            generation: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let mut entry = CachedResponse::new(200, Some("application/json"), br#"{"id":1}"#, 1, 2, 3);
        entry.generation = 7;
        assert_eq!(CachedResponse::decode(&entry.encode()), Some(entry.clone()));
        assert_eq!(entry.content_type(), Some("application/json"));
        assert_eq!(entry.body(), Bytes::from_static(br#"{"id":1}"#));
        let bare = CachedResponse::new(200, None, b"", 1, 2, 3);
        assert_eq!(CachedResponse::decode(&bare.encode()), Some(bare.clone()));
        assert_eq!((bare.content_type(), bare.body_len()), (None, 0));
        assert_eq!(CachedResponse::decode(b"nonsense"), None);
        assert_eq!(CachedResponse::decode(&[]), None);
    }

    #[test]
    fn collected_in_chunks_with_or_without_a_declared_length() {
        for expected in [0, 7, 100] {
            let mut collector = Collector::new(Some("text/plain"), expected);
            collector.push(b"abc");
            collector.push(b"defg");
            assert_eq!(collector.body_len(), 7);
            let entry = collector.finish(200, 1, 2, 3);
            assert_eq!(entry.content_type(), Some("text/plain"));
            assert_eq!(entry.body(), Bytes::from_static(b"abcdefg"));
            assert_eq!(entry.weight(), 10 + 7 + 64);
        }
    }
}
