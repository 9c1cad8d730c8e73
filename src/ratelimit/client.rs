//! Who the client is, for limits keyed by address: the peer address, unless the peer is a
//! trusted proxy (`server.trusted_proxies`), in which case `X-Forwarded-For` is read from
//! the right, skipping trusted hops, and the first untrusted address is the client (as
//! nginx's `real_ip_recursive on` does). A client cannot spoof its way past a limit: an
//! `X-Forwarded-For` from an untrusted peer is ignored, and so is anything to the left of
//! the first address a trusted proxy did not add.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client address of a request from `peer` carrying these `X-Forwarded-For` values.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Several header lines form one list, in order; read it from the right.
    for line in forwarded_for.rev() {
        let Ok(text) = std::str::from_utf8(line) else {
            return client;
        };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !is_trusted(&ip) {
                return client;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, maybe with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    entry
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|addr| addr.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn client(peer: &str, xff: &[&str], trusted: &[&str]) -> IpAddr {
        client_address(ip(peer), xff.iter().map(|h| h.as_bytes()), &nets(trusted))
    }

    #[test]
    fn the_peer_unless_it_is_a_trusted_proxy() {
        assert_eq!(client("203.0.113.9", &["1.2.3.4"], &[]), ip("203.0.113.9"));
        assert_eq!(
            client("203.0.113.9", &["1.2.3.4"], &["10.0.0.0/8"]),
            ip("203.0.113.9"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client("10.0.0.5", &["1.2.3.4"], &["10.0.0.0/8"]),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right_and_spoofed_entries_ignored() {
        assert_eq!(
            client("10.0.0.5", &["6.6.6.6, 1.2.3.4, 10.0.0.7"], &["10.0.0.0/8"]),
            ip("1.2.3.4")
        );
        assert_eq!(
            client(
                "10.0.0.5",
                &["6.6.6.6", "1.2.3.4:5555, 10.0.0.7"],
                &["10.0.0.0/8"]
            ),
            ip("1.2.3.4"),
            "several lines are one list; ports are dropped"
        );
        assert_eq!(
            client("10.0.0.5", &["garbage, 10.0.0.7"], &["10.0.0.0/8"]),
            ip("10.0.0.7"),
            "an unreadable entry stops the walk at the last trusted hop"
        );
        assert_eq!(client("10.0.0.5", &[], &["10.0.0.0/8"]), ip("10.0.0.5"));
        assert_eq!(
            client("::1", &["[2001:db8::1]:443"], &["::1/128"]),
            ip("2001:db8::1")
        );
    }
}
