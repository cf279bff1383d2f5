//! The recorded IP: the TCP peer, proxies' headers only when trusted.

use crate::helpers::spawn_app_with;

async fn signup_ip(trusted: &[&str], headers: &[(&str, &str)]) -> String {
    let trusted: Vec<ipnet::IpNet> = trusted.iter().map(|n| n.parse().unwrap()).collect();
    let app = spawn_app_with("ok", |c| c.server.trusted_proxies = trusted).await;
    let mut request = app.client.post(app.url("/subscribe")).form(&[("email", "ip@example.org")]);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    app.db().query_row("SELECT signup_ip FROM subscriptions", [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_x_forwarded_for_from_an_untrusted_peer_is_ignored() {
    assert_eq!(signup_ip(&[], &[("x-forwarded-for", "203.0.113.9")]).await, "127.0.0.1");
    assert_eq!(signup_ip(&["10.0.0.0/8"], &[("forwarded", "for=203.0.113.9")]).await, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_passes_on_the_client_address() {
    assert_eq!(signup_ip(&["127.0.0.1/32"], &[("x-forwarded-for", "198.51.100.1, 203.0.113.9")]).await, "203.0.113.9");
    assert_eq!(signup_ip(&["127.0.0.0/8"], &[("forwarded", "for=\"[2001:db8::7]:1234\"")]).await, "2001:db8::7");
}
