//! The client's IP address, as recorded in the proof.
//!
//! It is the TCP peer. Only when the peer is in `trusted_proxies` is the one
//! header named by `server.trusted_proxy_header` read (`X-Forwarded-For`,
//! `Forwarded` or `X-Real-IP`), right to left, taking the first address that
//! is not itself a trusted proxy: everything left of it was written by the
//! client and can be forged. The other headers are never read: a proxy that
//! writes `Forwarded` and passes a client's `X-Forwarded-For` on unchanged
//! must not let the client choose the recorded address. Addresses are
//! recorded canonically (IPv4-mapped IPv6 as plain IPv4).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;
use warp::http::HeaderMap;

use crate::config::ProxyHeader;

/// Resolves the client address of a request; `header` is the one header
/// the proxies in `trusted` write.
pub fn resolve(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpNet], header: ProxyHeader) -> IpAddr {
    let peer = canonical(peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip()));
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain = forwarded_chain(headers, header);
    let mut nearest = peer;
    for hop in chain.iter().rev() {
        match hop {
            // Garbage in the chain: nothing left of it can be believed, so
            // the best we know is the trusted hop that received it.
            None => return nearest,
            Some(ip) if is_trusted(ip) => nearest = *ip,
            Some(ip) => return *ip,
        }
    }
    nearest
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`) becomes `192.0.2.1`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses proxies appended to `header`, left (client side) to right
/// (nearest); `None` where an entry does not parse. Several header lines
/// count as one list in their order (RFC 9110, section 5.3).
fn forwarded_chain(headers: &HeaderMap, header: ProxyHeader) -> Vec<Option<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all(header.name()) {
        // A value that is not text is garbage: one entry that does not parse.
        let Ok(text) = value.to_str() else {
            chain.push(None);
            continue;
        };
        for entry in text.split(',').map(str::trim) {
            match header {
                // X-Real-IP holds one address; a comma list is read like X-Forwarded-For.
                ProxyHeader::XForwardedFor | ProxyHeader::XRealIp => chain.push(parse_node(entry)),
                ProxyHeader::Forwarded => chain.extend(forwarded_for(entry)),
            }
        }
    }
    chain
}

/// The `for=` node of one `Forwarded` element; `None` for an element
/// without one, which says nothing about the client.
fn forwarded_for(element: &str) -> Option<Option<IpAddr>> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim().eq_ignore_ascii_case("for").then(|| parse_node(value.trim().trim_matches('"')))
    })
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sock) = text.parse::<SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).and_then(|t| t.parse().ok()).map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn peer(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 40000))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    use ProxyHeader::{Forwarded, XForwardedFor, XRealIp};

    #[test]
    fn forged_headers_from_untrusted_peers_are_ignored() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=198.51.100.1"),
            ("x-real-ip", "198.51.100.2"),
        ]);
        for header in [XForwardedFor, Forwarded, XRealIp] {
            assert_eq!(resolve(peer("192.0.2.10"), &h, &[], header), ip("192.0.2.10"));
            assert_eq!(resolve(peer("192.0.2.10"), &h, &nets(&["10.0.0.0/8"]), header), ip("192.0.2.10"));
        }
    }

    #[test]
    fn trusted_proxy_chains_yield_the_rightmost_untrusted_address() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client forged "1.1.1.1"; the outer proxy saw 203.0.113.7; an inner proxy 10.0.0.2.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(resolve(peer("127.0.0.1"), &h, &trusted, XForwardedFor), ip("203.0.113.7"));
        let h = headers(&[("forwarded", "for=1.1.1.1, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.2")]);
        assert_eq!(resolve(peer("127.0.0.1"), &h, &trusted, Forwarded), ip("2001:db8:cafe::17"));
        let h = headers(&[("x-real-ip", "198.51.100.4")]);
        assert_eq!(resolve(peer("127.0.0.1"), &h, &trusted, XRealIp), ip("198.51.100.4"));
    }

    #[test]
    fn only_the_configured_header_is_read_from_a_trusted_proxy() {
        let trusted = nets(&["127.0.0.1/32"]);
        // The proxy writes Forwarded and passes on the X-Forwarded-For and X-Real-IP the client forged.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-real-ip", "1.1.1.2"),
            ("forwarded", "for=203.0.113.7;proto=https"),
        ]);
        assert_eq!(resolve(peer("127.0.0.1"), &h, &trusted, Forwarded), ip("203.0.113.7"));
        // And the other way round: a forged Forwarded is not read when the proxy writes X-Forwarded-For.
        let h = headers(&[("forwarded", "for=1.1.1.1"), ("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(resolve(peer("127.0.0.1"), &h, &trusted, XForwardedFor), ip("203.0.113.7"));
        // The setting does not match the proxy: its own address is recorded, never a forged one.
        let h = headers(&[("forwarded", "for=203.0.113.7")]);
        assert_eq!(resolve(peer("127.0.0.1"), &h, &trusted, XForwardedFor), ip("127.0.0.1"));
    }

    #[test]
    fn garbage_and_missing_headers_fall_back_to_the_nearest_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        for header in [XForwardedFor, Forwarded, XRealIp] {
            assert_eq!(resolve(peer("10.0.0.1"), &HeaderMap::new(), &trusted, header), ip("10.0.0.1"));
        }
        let h = headers(&[("x-forwarded-for", "1.1.1.1, not-an-ip, 10.0.0.5")]);
        assert_eq!(resolve(peer("10.0.0.1"), &h, &trusted, XForwardedFor), ip("10.0.0.5"));
        let h = headers(&[("forwarded", "for=1.1.1.1, for=unknown, for=10.0.0.5")]);
        assert_eq!(resolve(peer("10.0.0.1"), &h, &trusted, Forwarded), ip("10.0.0.5"));
        let mut h = HeaderMap::new();
        h.append("x-real-ip", warp::http::HeaderValue::from_bytes(b"1.1.1.1\xff").unwrap());
        assert_eq!(resolve(peer("10.0.0.1"), &h, &trusted, XRealIp), ip("10.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_recorded_as_ipv4() {
        assert_eq!(resolve(peer("::ffff:192.0.2.33"), &HeaderMap::new(), &[], XForwardedFor), ip("192.0.2.33"));
    }
}
