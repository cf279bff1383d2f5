//! The recorded IP: the TCP peer, proxies' headers only when trusted, and
//! then only the one header `server.trusted_proxy_header` names.

use listgate::config::{Config, ProxyHeader};

use crate::helpers::spawn_app_without_smtp;

/// The signup IP recorded for a signup sent with `headers`, by a server
/// that trusts `trusted` and reads `header` from them.
async fn signup_ip(trusted: &[&str], header: ProxyHeader, headers: &[(&str, &str)]) -> String {
    let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|n| n.parse().unwrap()).collect();
    let app = spawn_app_without_smtp(|c: &mut Config| {
        c.server.trusted_proxies = trusted;
        c.server.trusted_proxy_header = header;
    })
    .await;
    let mut request = app.client.post(app.url("/subscribe")).form(&[("email", "ip@example.org")]);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    app.db().value("SELECT signup_ip FROM subscriptions", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let xff = ProxyHeader::XForwardedFor;
    assert_eq!(signup_ip(&[], xff, &[("x-forwarded-for", "203.0.113.9")]).await, "127.0.0.1");
    assert_eq!(signup_ip(&["10.0.0.0/8"], xff, &[("forwarded", "for=203.0.113.9")]).await, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_passes_on_the_client_address() {
    let (xff, forwarded) = (ProxyHeader::XForwardedFor, ProxyHeader::Forwarded);
    let chain = [("x-forwarded-for", "198.51.100.1, 203.0.113.9")];
    assert_eq!(signup_ip(&["127.0.0.1/32"], xff, &chain).await, "203.0.113.9");
    let rfc7239 = [("forwarded", "for=\"[2001:db8::7]:1234\"")];
    assert_eq!(signup_ip(&["127.0.0.0/8"], forwarded, &rfc7239).await, "2001:db8::7");
    let real_ip = [("x-real-ip", "198.51.100.23")];
    assert_eq!(signup_ip(&["127.0.0.0/8"], ProxyHeader::XRealIp, &real_ip).await, "198.51.100.23");
}

/// A proxy that writes `Forwarded` and passes the client's own headers on:
/// the client's `X-Forwarded-For` must not choose the recorded address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_x_forwarded_for_is_ignored_when_the_proxy_header_is_forwarded() {
    let through_proxy = [("x-forwarded-for", "192.0.2.66"), ("forwarded", "for=203.0.113.9;proto=https")];
    assert_eq!(signup_ip(&["127.0.0.1/32"], ProxyHeader::Forwarded, &through_proxy).await, "203.0.113.9");
    // The default, X-Forwarded-For, ignores a Forwarded header the client sends itself.
    let forged = [("forwarded", "for=192.0.2.66"), ("x-forwarded-for", "203.0.113.9")];
    assert_eq!(
        signup_ip(&["127.0.0.1/32"], Config::default().server.trusted_proxy_header, &forged).await,
        "203.0.113.9"
    );
}
