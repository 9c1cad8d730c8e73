//! A stored response and its wire form in Redis. Only what a replay needs is kept: the
//! status, the content type and the body, plus the times that decide fresh and stale.
//! Never a request header, so never a credential.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A cached response. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub stored_at: u64,
    /// Served as a hit until then.
    pub fresh_until: u64,
    /// Served when the upstream fails until then (`fresh_until` + `stale_if_error`).
    pub stale_until: u64,
}

/// Format version byte, so that a change of layout reads as a miss, not as garbage.
const VERSION: u8 = 1;

impl CachedResponse {
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

    /// Bytes this entry costs in memory, roughly.
    pub fn weight(&self) -> u64 {
        (self.body.len() + self.content_type.as_ref().map_or(0, String::len) + 64) as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let content_type = self.content_type.as_deref().unwrap_or("").as_bytes();
        let mut out = BytesMut::with_capacity(32 + content_type.len() + self.body.len());
        out.put_u8(VERSION);
        out.put_u16(self.status);
        out.put_u64(self.stored_at);
        out.put_u64(self.fresh_until);
        out.put_u64(self.stale_until);
        out.put_u16(u16::try_from(content_type.len()).unwrap_or(0));
        if content_type.len() <= usize::from(u16::MAX) {
            out.put_slice(content_type);
        }
        out.put_slice(&self.body);
        out.to_vec()
    }

    /// `None` for anything that is not a well-formed entry of this version.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut input = bytes;
        if input.remaining() < 29 || input.get_u8() != VERSION {
            return None;
        }
        let status = input.get_u16();
        let stored_at = input.get_u64();
        let fresh_until = input.get_u64();
        let stale_until = input.get_u64();
        let type_len = usize::from(input.get_u16());
        if input.remaining() < type_len {
            return None;
        }
        let content_type = std::str::from_utf8(&input[..type_len]).ok()?.to_owned();
        input.advance(type_len);
        Some(CachedResponse {
            status,
            content_type: (!content_type.is_empty()).then_some(content_type),
            body: Bytes::copy_from_slice(input),
            stored_at,
            fresh_until,
            stale_until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let entry = CachedResponse {
            status: 200,
            content_type: Some("application/json".into()),
            body: Bytes::from_static(br#"{"id":1}"#),
            stored_at: 1,
            fresh_until: 2,
            stale_until: 3,
        };
        assert_eq!(CachedResponse::decode(&entry.encode()), Some(entry.clone()));
        let bare = CachedResponse {
            content_type: None,
            body: Bytes::new(),
            ..entry
        };
        assert_eq!(CachedResponse::decode(&bare.encode()), Some(bare));
        assert_eq!(CachedResponse::decode(b"nonsense"), None);
        assert_eq!(CachedResponse::decode(&[]), None);
    }
}
