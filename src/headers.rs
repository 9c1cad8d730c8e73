//! The names of the headers the gateway itself sets or strips, said once, and the small
//! writers of what goes into them on every request (addresses, numbers) without
//! `core::fmt`. The proxy hooks (`upstream_request_filter`, `response_filter`, the cache's
//! answers and keys, problem responses) and the token exchange (`auth::exchange`) all write
//! them from here.

use std::net::IpAddr;

use http::HeaderName;

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
/// request goes upstream. Parsed names, since every proxied request looks them up.
pub const IDENTITY: [HeaderName; 2] = [
    HeaderName::from_static(USER_ID),
    HeaderName::from_static(USER_LOGIN),
];

/// [`FORWARDED_FOR`] parsed, for the look-ups every proxied request makes.
pub const FORWARDED_FOR_NAME: HeaderName = HeaderName::from_static(FORWARDED_FOR);

/// An address as `X-Forwarded-For` writes it. IPv4, every proxied request's usual case,
/// without `core::fmt`: a few dozen instructions instead of several hundred.
pub fn forwarded_address(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    let mut digits = [0; 20];
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        push_ascii(&mut text, decimal(u64::from(octet), &mut digits));
    }
    text
}

/// `n` in decimal, in `buf`. Header values and cache keys that every request writes use it
/// instead of `core::fmt`, whose machinery costs several hundred instructions a call.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[start..];
        }
    }
}

/// Appends ASCII bytes (as [`decimal`] writes them) to `text`.
pub fn push_ascii(text: &mut String, ascii: &[u8]) {
    text.extend(ascii.iter().map(|&byte| char::from(byte)));
}

/// The quota policy of a rate limit (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";

/// What remains of a rate limit's quota (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: &str = "ratelimit";

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::{decimal, forwarded_address};

    #[test]
    fn decimals_read_as_std_writes_them() {
        let mut buf = [0; 20];
        for n in [0, 7, 10, 99, 100, 65_535, 1_000_001, u64::MAX] {
            assert_eq!(decimal(n, &mut buf), n.to_string().as_bytes());
        }
    }

    #[test]
    fn forwarded_addresses_read_as_std_writes_them() {
        for a in [0u8, 1, 9, 10, 99, 100, 199, 200, 255] {
            for b in [0u8, 7, 42, 128, 255] {
                let ip = IpAddr::V4(Ipv4Addr::new(a, b, 255 - a, b / 3));
                assert_eq!(forwarded_address(ip), ip.to_string());
            }
        }
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        assert_eq!(forwarded_address(v6), "2001:db8::1");
    }
}
