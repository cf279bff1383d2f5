//! The client's IP address, as recorded in the proof.
//!
//! It is the TCP peer. Only when the peer is in `trusted_proxies` are
//! `X-Forwarded-For` (preferred) or `Forwarded` read, right to left, taking
//! the first address that is not itself a trusted proxy: everything left of
//! it was written by the client and can be forged. Addresses are recorded
//! canonically (IPv4-mapped IPv6 as plain IPv4).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;
use warp::http::HeaderMap;

/// Resolves the client address of a request.
pub fn resolve(peer: Option<SocketAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip()));
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
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

/// The addresses proxies appended, left (client side) to right (nearest);
/// `None` where an entry does not parse.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
    if !xff.is_empty() {
        return xff
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
            .map(|entry| parse_node(entry.trim()))
            .collect();
    }
    headers
        .get_all("forwarded")
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("for=\u{0}").split(','))
        .filter_map(|element| {
            // Elements without a `for=` pair say nothing about the client.
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.trim().eq_ignore_ascii_case("for").then(|| parse_node(value.trim().trim_matches('"')))
            })
        })
        .collect()
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

    #[test]
    fn forged_headers_from_untrusted_peers_are_ignored() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7"), ("forwarded", "for=198.51.100.1")]);
        assert_eq!(resolve(peer("192.0.2.10"), &h, &[]), "192.0.2.10".parse::<IpAddr>().unwrap());
        assert_eq!(resolve(peer("192.0.2.10"), &h, &nets(&["10.0.0.0/8"])), "192.0.2.10".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_proxy_chains_yield_the_rightmost_untrusted_address() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        // The client forged "1.1.1.1"; the outer proxy saw 203.0.113.7; an inner proxy 10.0.0.2.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(resolve(peer("127.0.0.1"), &h, &trusted), "203.0.113.7".parse::<IpAddr>().unwrap());
        let h = headers(&[("forwarded", "for=1.1.1.1, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.2")]);
        assert_eq!(resolve(peer("127.0.0.1"), &h, &trusted), "2001:db8:cafe::17".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_and_missing_headers_fall_back_to_the_nearest_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(resolve(peer("10.0.0.1"), &HeaderMap::new(), &trusted), "10.0.0.1".parse::<IpAddr>().unwrap());
        let h = headers(&[("x-forwarded-for", "1.1.1.1, not-an-ip, 10.0.0.5")]);
        assert_eq!(resolve(peer("10.0.0.1"), &h, &trusted), "10.0.0.5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv4_mapped_ipv6_is_recorded_as_ipv4() {
        assert_eq!(resolve(peer("::ffff:192.0.2.33"), &HeaderMap::new(), &[]), "192.0.2.33".parse::<IpAddr>().unwrap());
    }
}
