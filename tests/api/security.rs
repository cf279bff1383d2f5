//! Attacks on the public form and links, one test each: the answer, and
//! what the database and the SMTP server saw. SECURITY.md lists them.

use std::sync::Arc;
use std::time::Duration;

use listgate::clock::ManualClock;
use listgate::config::MailCeiling;
use listgate::token::{self, Purpose};

use crate::helpers::{TestApp, header, spawn_app, spawn_app_on_clock, spawn_app_with, spawn_app_without_smtp};
use crate::store::{TestDb, TestStore, Value, off_runtime};

fn form_token(html: &str) -> String {
    let start =
        html.find("name=\"form_token\" value=\"").expect("form has a token") + "name=\"form_token\" value=\"".len();
    html[start..].split('"').next().unwrap().to_string()
}

async fn quiet_for_a_moment() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn count(app: &TestApp, sql: &str) -> i64 {
    app.db().value(sql, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_flood_from_one_ip_gets_429_with_retry_after_before_anything_is_stored() {
    let app = spawn_app_with("ok", |c| c.limits.signups_per_ip = "3/1h".parse().unwrap()).await;
    for i in 0..3 {
        assert_eq!(app.subscribe(&format!("flood{i}@example.org")).await.status(), 200);
    }
    let refused = app.subscribe("flood3@example.org").await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=1200).contains(&retry_after), "{retry_after}");
    assert!(refused.text().await.unwrap().contains("Too many requests"));
    let json = app
        .client
        .post(app.url("/subscribe"))
        .json(&serde_json::json!({"email": "flood4@example.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 429);
    assert_eq!(json.json::<serde_json::Value>().await.unwrap()["error"], "too_many_requests");
    app.smtp().wait_for_messages(3).await;
    quiet_for_a_moment().await;
    assert_eq!(app.smtp().messages().len(), 3);
    assert_eq!(app.row_counts()[0], 3);
    assert_eq!(count(&app, "SELECT sum(requests) FROM daily_stats"), 3, "refused requests reach no database write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_walking_through_an_ipv6_48_or_an_ipv4_24_runs_into_the_networks_limit() {
    let app = spawn_app_without_smtp(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.limits.signups_per_ip = "1/1h".parse().unwrap();
    })
    .await;
    let signup_from = |ip: String, i: usize| {
        let request = app.client.post(app.url("/subscribe")).header("x-forwarded-for", ip);
        request.form(&[("email", format!("walker{i}@example.org"))]).send()
    };
    // A fresh /56 (and so a fresh /64) each time, all in one /48.
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(signup_from(format!("2001:db8:1:{:x}::1", i << 8), i).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [[200; 16].as_slice(), &[429; 4]].concat(), "16 × signups_per_ip per /48");
    assert_eq!(signup_from("2001:db8:2::1".into(), 20).await.unwrap().status(), 200, "another /48");
    // Address by address through one IPv4 /24.
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(signup_from(format!("198.51.100.{i}"), 30 + i).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429], "4 × signups_per_ip per /24");
    assert_eq!(app.row_counts()[0], 21, "refused requests store nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_inbox_bombed_from_many_ips_and_lists_gets_at_most_the_daily_cap() {
    let app = spawn_app_with("ok", |c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.limits.signups_per_ip = "2/1h".parse().unwrap();
        c.mail.resend_interval = "0s".parse().unwrap();
        let mut second = c.lists[0].clone();
        second.id = "second".into();
        c.lists.push(second);
    })
    .await;
    // Twelve client IPs in different networks, alternating lists: the per-IP limits never bite.
    for i in 0..12 {
        let list = if i % 2 == 0 { "newsletter" } else { "second" };
        let response = app
            .client
            .post(app.url("/subscribe"))
            .header("x-forwarded-for", format!("198.18.{i}.1"))
            .form(&[("email", "victim@example.org"), ("list", list)])
            .send()
            .await
            .unwrap();
        let expected = if i < 10 { 200 } else { 429 };
        assert_eq!(response.status(), expected, "request {i}: the per-address limit (10/h) holds across IPs");
    }
    app.smtp().wait_for_messages(3).await;
    quiet_for_a_moment().await;
    assert_eq!(app.smtp().messages().len(), 3, "mails_per_address_per_day, over all lists and IPs");
    assert_eq!(app.row_counts()[0], 2, "one pending signup per list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_gmail_dots_do_not_multiply_the_daily_cap_of_one_inbox() {
    let app = spawn_app().await;
    let one_inbox = ["victim+1@example.org", "victim+2@example.org", "Victim+news@Example.org", "victim@example.org"];
    let another = ["v.i.c.t.i.m@gmail.com", "victim@googlemail.com", "vic.tim+1@gmail.com", "victim+2@gmail.com"];
    for address in one_inbox.iter().chain(&another) {
        assert_eq!(app.subscribe(address).await.status(), 200, "{address}: answered like any signup");
    }
    app.smtp().wait_for_messages(6).await;
    quiet_for_a_moment().await;
    let mails = app.smtp().messages();
    assert_eq!(mails.len(), 6, "mails_per_address_per_day (3) per inbox, however it is spelt");
    let to_example = mails.iter().filter(|m| header(m, "To").is_some_and(|to| to.contains("@example.org"))).count();
    assert_eq!(to_example, 3, "and 3 to the Gmail inbox");
    assert_eq!(app.row_counts()[0], 8, "every signup is stored; only its mail waits for the cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_gmail_dots_share_one_per_address_request_limit() {
    let app = spawn_app_without_smtp(|c| c.limits.signups_per_address = "3/1h".parse().unwrap()).await;
    for address in ["victim+1@example.org", "Victim+2@Example.org", "victim@example.org"] {
        assert_eq!(app.subscribe(address).await.status(), 200, "{address}");
    }
    let refused = app.subscribe("victim+3@example.org").await;
    assert_eq!(refused.status(), 429, "a fourth spelling of one inbox is a fourth request to it");
    assert!(refused.headers().contains_key("retry-after"));
    for address in ["v.ictim@gmail.com", "victim@googlemail.com", "vic.tim+x@gmail.com"] {
        assert_eq!(app.subscribe(address).await.status(), 200, "{address}");
    }
    assert_eq!(app.subscribe("VICTIM@gmail.com").await.status(), 429, "Gmail's dots and googlemail.com fold");
    assert_eq!(app.subscribe("victim2@example.org").await.status(), 200, "another inbox has a limit of its own");
    assert_eq!(app.row_counts()[0], 7, "every address is stored as given; refused requests store nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_did_not_sign_up_blocks_every_spelling_of_the_inbox() {
    let app = spawn_app().await;
    for address in ["victim+news@example.org", "v.ictim@gmail.com"] {
        let (_, token) = app.signup_and_get_token(address).await;
        let declined = app.post_form("/confirm", &[("token", &token), ("action", "decline")]).await;
        assert_eq!(declined.status(), 200, "{address}");
    }
    let spellings = [
        "victim@example.org",
        "Victim+other@example.org",
        "victim@gmail.com",
        "vic.tim@googlemail.com",
        "victim+x@gmail.com",
    ];
    for spelling in spellings {
        assert_eq!(app.subscribe(spelling).await.status(), 200, "{spelling}: the same answer as ever");
        assert_eq!(app.row_counts()[..2], [0, 0], "{spelling}: nothing stored, no mail queued");
    }
    // A decline stored before declines keyed on the inbox was hashed on the
    // exact address: it still blocks that address until it expires.
    let exact = hex::encode(ring::hmac::sign(&app.keys().current().address, b"old+tag@example.org"));
    app.db().execute(
        "INSERT INTO declined_addresses (address_hash, until) VALUES (?1, '2999-01-01T00:00:00.000Z')",
        &[Value::from(&exact)],
    );
    assert_eq!(app.subscribe("Old+Tag@example.org").await.status(), 200);
    assert_eq!(app.row_counts()[0], 0, "the old block holds for its address");
    assert_eq!(app.subscribe("old@example.org").await.status(), 200);
    assert_eq!(app.row_counts()[0], 1, "and, hashed on the exact address, for it alone");
    app.smtp().wait_for_messages(3).await;
    quiet_for_a_moment().await;
    assert_eq!(app.smtp().messages().len(), 3, "two before the declines, one to old@");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_mails_per_hour_confirmation_mails_wait_in_the_outbox_and_go_out_as_the_hour_moves_on() {
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let app = spawn_app_on_clock("ok", clock.clone(), |c| {
        c.limits.mails_per_hour = MailCeiling::PerHour(2.try_into().unwrap());
    })
    .await;
    let answers: Vec<u16> = {
        let mut answers = Vec::new();
        for i in 0..5 {
            answers.push(app.subscribe(&format!("reader{i}@example.org")).await.status().as_u16());
        }
        answers
    };
    assert_eq!(answers, [200; 5], "every signup is answered as ever");
    assert_eq!(app.row_counts()[..2], [5, 5], "every signup is stored with its mail queued");
    app.smtp().wait_for_messages(2).await;
    let waiting = "SELECT count(*) FROM outbox WHERE state = 'queued'";
    app.wait_for_value(waiting, 3).await;
    let ceiling_reached = "listgate_mail_ceiling_reached_total 1";
    let start = std::time::Instant::now();
    while !app.get_metrics().await.text().await.unwrap().lines().any(|l| l == ceiling_reached) {
        assert!(start.elapsed() < Duration::from_secs(20), "the metric did not move");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    quiet_for_a_moment().await;
    assert_eq!(app.smtp().messages().len(), 2, "mails_per_hour");
    assert_eq!(count(&app, "SELECT count(*) FROM outbox WHERE state = 'failed' OR last_error IS NOT NULL"), 0);

    // An hour later two more go out, oldest first; another hour, the last.
    clock.advance(time::Duration::hours(1));
    app.smtp().wait_for_messages(4).await;
    app.wait_for_value(waiting, 1).await;
    quiet_for_a_moment().await;
    assert_eq!(app.smtp().messages().len(), 4);
    clock.advance(time::Duration::hours(1));
    let mails = app.smtp().wait_for_messages(5).await;
    app.wait_for_value(waiting, 0).await;
    // Oldest first; the two of one hour may arrive in either order.
    let mut to: Vec<String> = mails.iter().map(|m| header(m, "To").unwrap()).collect();
    to[..2].sort();
    to[2..4].sort();
    let expected: Vec<String> = (0..5).map(|i| format!("reader{i}@example.org")).collect();
    assert!(to.iter().zip(&expected).all(|(to, e)| to.contains(e.as_str())), "in the order queued: {to:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_posting_the_form_too_fast_or_with_a_forged_or_stale_token_is_dropped_silently() {
    let app = spawn_app_with("ok", |c| c.limits.form_min_age = "1s".parse().unwrap()).await;
    let human_answer = |r: reqwest::Response| async move { (r.status(), r.text().await.unwrap()) };
    let page = app.get("/form?list=newsletter").await.text().await.unwrap();
    let fresh = form_token(&page);

    let too_fast =
        human_answer(app.post_form("/subscribe", &[("email", "fast@example.org"), ("form_token", &fresh)]).await).await;
    let forged =
        human_answer(app.post_form("/subscribe", &[("email", "forged@example.org"), ("form_token", "AQ.AQ")]).await)
            .await;
    let stale_token = token::sign_form(
        &app.keys(),
        "newsletter",
        time::OffsetDateTime::now_utc() - time::Duration::hours(5),
        app.config.limits.form_max_age,
    );
    let stale = human_answer(
        app.post_form("/subscribe", &[("email", "stale@example.org"), ("form_token", &stale_token)]).await,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let human =
        human_answer(app.post_form("/subscribe", &[("email", "human@example.org"), ("form_token", &fresh)]).await)
            .await;

    assert_eq!(too_fast, human, "bots get exactly the human answer");
    assert_eq!(forged, human);
    assert_eq!(stale, human);
    app.smtp().wait_for_messages(1).await;
    quiet_for_a_moment().await;
    assert_eq!(app.smtp().messages().len(), 1);
    let stored = app.stored_emails();
    assert_eq!(stored, vec!["human@example.org".to_string()]);
    assert_eq!(count(&app, "SELECT sum(bots) FROM daily_stats"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_requires_a_form_token_drops_posts_without_one() {
    let app = spawn_app_with("ok", |c| {
        c.lists[0].require_form_token = true;
        c.limits.form_min_age = "1s".parse().unwrap();
    })
    .await;
    let without = app.subscribe("script@example.org").await;
    assert_eq!(without.status(), 200);
    let token = form_token(&app.get("/").await.text().await.unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        app.post_form("/subscribe", &[("email", "person@example.org"), ("form_token", &token)]).await.status(),
        200
    );
    app.smtp().wait_for_messages(1).await;
    quiet_for_a_moment().await;
    assert_eq!(app.smtp().messages().len(), 1);
    assert_eq!(app.row_counts()[0], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_pending_confirmed_and_unsubscribed_addresses_are_indistinguishable() {
    let app = spawn_app().await;
    app.confirmed_subscriber("confirmed@example.org", None).await;
    let left = app.confirmed_subscriber("left@example.org", None).await;
    assert_eq!(app.one_click(left).await.status(), 200);
    app.signup_and_get_token("pending@example.org").await;
    let requests_before = count(&app, "SELECT sum(requests) FROM daily_stats");

    let mut answers = Vec::new();
    for email in ["new@example.org", "pending@example.org", "confirmed@example.org", "left@example.org"] {
        let r = app.subscribe(email).await;
        let mut headers: Vec<String> =
            r.headers().iter().filter(|(k, _)| *k != "date").map(|(k, v)| format!("{k}: {v:?}")).collect();
        headers.sort();
        answers.push((r.status(), headers, r.bytes().await.unwrap()));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "identical status, headers and body");
    // Every one of them committed a write, so each answer waited for the same kind of commit.
    assert_eq!(count(&app, "SELECT sum(requests) FROM daily_stats") - requests_before, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_scanners_using_head_and_get_on_every_link_change_nothing() {
    let app = spawn_app().await;
    let (id, confirm) = app.signup_and_get_token("scanned@example.org").await;
    let unsubscribe = token::sign(&app.keys(), Purpose::Unsubscribe, app.subject(id), "newsletter", None);
    let before = app.row_counts();
    for _ in 0..5 {
        for path in [format!("/confirm?token={confirm}"), format!("/unsubscribe?token={unsubscribe}")] {
            assert_eq!(app.client.head(app.url(&path)).send().await.unwrap().status(), 200);
            assert_eq!(app.get(&path).await.status(), 200);
        }
    }
    assert_eq!(app.row_counts(), before);
    assert_eq!(count(&app, "SELECT count(*) FROM subscriptions WHERE status = 'pending'"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_wrong_list_tokens_fail_safely() {
    let app = spawn_app_with("ok", |c| {
        let mut second = c.lists[0].clone();
        second.id = "second".into();
        c.lists.push(second);
    })
    .await;
    let before = app.smtp().messages().len();
    assert_eq!(
        app.post_form("/subscribe", &[("email", "replay@example.org"), ("list", "newsletter")]).await.status(),
        200
    );
    let token = crate::helpers::confirm_token(&app.smtp().wait_for_messages(before + 1).await[before]);
    let id: i64 = count(&app, "SELECT max(id) FROM subscriptions");
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'queued'", 0).await;
    // A genuine token for the same id but the other list: nothing happens.
    let wrong_list = token::sign(
        &app.keys(),
        Purpose::Confirm,
        app.subject(id),
        "second",
        Some(time::OffsetDateTime::now_utc() + time::Duration::days(1)),
    );
    assert_eq!(app.post_form("/confirm", &[("token", &wrong_list)]).await.status(), 410);
    assert_eq!(count(&app, "SELECT count(*) FROM subscriptions WHERE status = 'confirmed'"), 0);
    // Replaying a used confirm token is harmless: one confirmation, one event.
    for _ in 0..3 {
        assert_eq!(app.post_form("/confirm", &[("token", &token)]).await.status(), 200);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM proof_events WHERE kind = 'confirm'"), 1);
    // Replaying one-click unsubscribes: one unsubscribe event.
    let unsubscribe = token::sign(&app.keys(), Purpose::Unsubscribe, app.subject(id), "newsletter", None);
    for _ in 0..3 {
        let r = app.one_click_with(&unsubscribe).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(count(&app, "SELECT count(*) FROM proof_events WHERE kind = 'unsubscribe'"), 1);
    // A re-encoded token (standard base64 alphabet with padding) is a different, invalid token.
    let (payload, tag) = unsubscribe.split_once('.').unwrap();
    let reencoded = format!("{payload}=.{}", tag.replace('-', "+").replace('_', "/"));
    if reencoded != unsubscribe {
        let r = app
            .client
            .post(app.url(&format!("/unsubscribe?token={}", urlencode(&reencoded))))
            .body("")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idn_address_is_delivered_in_ascii_and_kept_as_entered() {
    let app = spawn_app().await;
    assert_eq!(app.subscribe("joerg@Bücher.de").await.status(), 200);
    let mails = app.smtp().wait_for_messages(1).await;
    assert_eq!(crate::helpers::header(&mails[0], "To").as_deref(), Some("joerg@xn--bcher-kva.de"));
    let envelope = std::fs::read_to_string(app.smtp().folder.path().join("00001.json")).unwrap();
    assert!(envelope.contains("joerg@xn--bcher-kva.de"));
    let (email, key): (String, String) = app.db().value("SELECT email, email_key FROM subscriptions", &[]);
    assert_eq!((email.as_str(), key.as_str()), ("joerg@Bücher.de", "joerg@xn--bcher-kva.de"));
    // The ASCII spelling is the same person: no second subscription.
    assert_eq!(app.subscribe("JOERG@xn--bcher-kva.de").await.status(), 200);
    assert_eq!(app.row_counts()[0], 1);
    // Non-ASCII local parts are refused with a clear error.
    let r = app.subscribe("jörg@example.org").await;
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_the_lists_allowed_origins() {
    let app = spawn_app_without_smtp(|c| c.lists[0].allowed_origins = vec!["https://www.example.com".into()]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/subscribe"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://www.example.com").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://www.example.com");
    assert!(allowed.headers()["access-control-allow-headers"].to_str().unwrap().contains("content-type"));
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(denied.headers().get("access-control-allow-origin").is_none());

    let post = |origin: &'static str, email: &'static str| {
        app.client
            .post(app.url("/subscribe"))
            .header("origin", origin)
            .json(&serde_json::json!({"email": email}))
            .send()
    };
    let ok = post("https://www.example.com", "cors@example.org").await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://www.example.com");
    let other = post("https://evil.example", "cors2@example.org").await.unwrap();
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "the browser hides the answer from other origins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_input_is_escaped_on_pages_and_in_mails() {
    let app = spawn_app().await;
    let page = app.get("/confirm?token=%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert_eq!(page.status(), 400);
    assert!(!page.text().await.unwrap().contains("<script>"));
    assert_eq!(
        app.post_form("/subscribe", &[("email", "markup@example.org"), ("name", "<b onclick=x>Eve</b>")])
            .await
            .status(),
        200
    );
    let mails = app.smtp().wait_for_messages(1).await;
    let decoded = crate::helpers::decode_qp(&mails[0]);
    let html_part = decoded.split("Content-Type: text/html").nth(1).unwrap();
    assert!(html_part.contains("Hello,"), "{html_part}");
    assert!(!decoded.contains("onclick") && !decoded.contains("Eve"), "the name is not in the mail at all");
}

/// A bot types an advert as the name and someone else's address: the mail,
/// signed with the operator's domain, must carry none of its text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_typed_into_the_form_never_reaches_the_confirmation_mail_in_either_language() {
    let app = spawn_app_with("ok", |c| {
        let mut german = c.lists[0].clone();
        german.id = "de".into();
        german.language = listgate::config::Language::De;
        c.lists.push(german);
    })
    .await;
    let advert = "Cheap pills at spam-shop.example";
    for (list, email) in [("newsletter", "victim.en@example.org"), ("de", "victim.de@example.org")] {
        let form = [("email", email), ("list", list), ("name", advert)];
        assert_eq!(app.post_form("/subscribe", &form).await.status(), 200);
    }
    let mails = app.smtp().wait_for_messages(2).await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", 2).await;
    let db = app.db();
    // The outbox delivers a batch's mails at once: they arrive in either order.
    let mut recipients: Vec<String> = mails.iter().map(|m| header(m, "To").unwrap()).collect();
    recipients.sort();
    assert_eq!(recipients, ["victim.de@example.org", "victim.en@example.org"], "To is the bare address");
    for mail in &mails {
        let raw = String::from_utf8_lossy(mail);
        let decoded = crate::helpers::decode_qp(mail);
        for word in ["Cheap", "pills", "spam-shop"] {
            assert!(!raw.contains(word) && !decoded.contains(word), "{word} is in the mail:\n{decoded}");
        }
        let to = header(mail, "To").unwrap();
        let greeting = if to == "victim.de@example.org" { "Hallo," } else { "Hello," };
        assert!(decoded.contains(greeting), "{decoded}");

        let id: i64 = db
            .rows("SELECT id FROM outbox WHERE message_sha256 = ?1", &[crate::helpers::sha256_hex(mail).into()])
            .pop()
            .expect("the recorded hash is the hash of the bytes received");
        let rebuilt = db.store(|store| listgate::mail::rebuild(store, id).unwrap().unwrap());
        assert_eq!(&rebuilt, mail, "the mail still rebuilds byte for byte");
    }
    let names: i64 = db.value("SELECT count(*) FROM subscriptions WHERE name = ?1", &[advert.into()]);
    assert_eq!(names, 2, "the name is still stored: it is the subscriber's data");
}

/// What a listgate that still greeted by name left behind: a sent mail (its
/// hash recorded) and a queued one, both with the name on their outbox rows
/// and a format-1 rendering (`tests/fixtures/mail-format1-with-name.json`,
/// made by that listgate). The sent one must still rebuild to its recorded
/// hash; the queued one goes out without the name, and rebuilds too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mails_from_before_the_name_was_dropped_still_rebuild_and_queued_ones_go_out_without_it() {
    let old: serde_json::Value = serde_json::from_str(include_str!("../fixtures/mail-format1-with-name.json")).unwrap();
    let text = |key: &str| old[key].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new(dir.path());
    let mut database = listgate::config::DatabaseConfig::default();
    store.configure(&mut database);
    off_runtime(|| listgate::store::Store::open(&database).unwrap().close());
    let db = TestDb::open(&database);
    let at = "2026-11-22T07:24:59.000Z";
    db.execute("INSERT INTO consent_texts (sha256, text, first_seen) VALUES ('c0', 'Yes.', ?1)", &[at.into()]);
    db.execute("INSERT INTO mail_renderings (sha256, format, sender, from_header, reply_to, subject, text_body, html_body, first_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", &[Value::from(text("rendering_sha256")), Value::from(old["format"].as_i64()), Value::from(text("sender")), Value::from(text("from_header")), Value::from(old["reply_to"].as_str()), Value::from(text("subject")), Value::from(text("text_body")), Value::from(text("html_body")), at.into()]);
    let name = text("to_name");
    for (email, state, sha) in [
        ("sent.before@example.org", "sent", Some(text("message_sha256"))),
        ("queued.before@example.org", "queued", None),
    ] {
        db.execute(
            "INSERT INTO subscriptions (list_id, email, email_key, name, status, consent_sha256, signup_at, signup_ip)
             VALUES ('newsletter', ?1, ?1, ?2, 'pending', 'c0', ?3, '192.0.2.1')",
            &[email.into(), Value::from(&name), at.into()],
        );
        let to_email = if state == "sent" { text("to_email") } else { email.to_string() };
        db.execute(
            "INSERT INTO outbox (subscription_id, rendering_sha256, to_email, to_name, link, message_id, date_header,
                                 state, created_at, next_attempt_at, message_sha256)
             VALUES ((SELECT max(id) FROM subscriptions), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
            &[
                Value::from(text("rendering_sha256")),
                to_email.into(),
                Value::from(&name),
                Value::from(text("link")),
                Value::from(text("message_id")),
                Value::from(text("date_header")),
                state.into(),
                at.into(),
                sha.into(),
            ],
        );
    }
    drop(db);

    let app = spawn_app_with("ok", |c| store.configure(&mut c.database)).await;
    let mails = app.smtp().wait_for_messages(1).await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'queued'", 0).await;
    let db = app.db();
    let rebuilt = |id: i64| db.store(|store| listgate::mail::rebuild(store, id).unwrap().unwrap());
    assert_eq!(crate::helpers::sha256_hex(&rebuilt(1)), text("message_sha256"), "the old proof still verifies");
    assert!(crate::helpers::decode_qp(&rebuilt(1)).contains("Hallo Anna Müller <script>,"), "as it was sent");

    let raw = String::from_utf8_lossy(&mails[0]);
    let decoded = crate::helpers::decode_qp(&mails[0]);
    assert!(!raw.contains("Anna") && !decoded.contains("Anna") && !decoded.contains("script"), "{decoded}");
    assert_eq!(header(&mails[0], "To").as_deref(), Some("queued.before@example.org"));
    assert!(decoded.contains("Hallo,"), "{decoded}");
    assert_eq!(rebuilt(2), mails[0], "the queued mail rebuilds as it went out");
    let recorded: String = db.value("SELECT message_sha256 FROM outbox WHERE id = 2", &[]);
    assert_eq!(recorded, crate::helpers::sha256_hex(&mails[0]));
}

/// SECURITY.md promises a test per attack; every test it names must exist.
#[test]
fn security_md_names_only_tests_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("SECURITY.md")).unwrap();
    fn read_rust_files(dir: &std::path::Path, into: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                read_rust_files(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let mut sources = String::new();
    read_rust_files(&root.join("src"), &mut sources);
    read_rust_files(&root.join("tests/api"), &mut sources);
    let named: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.contains("::")
                && !s.ends_with('*')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        })
        .collect();
    assert!(named.len() > 25, "found only {} test names", named.len());
    for name in named {
        let function = name.rsplit("::").next().unwrap();
        assert!(sources.contains(&format!("fn {function}(")), "SECURITY.md names {name}, which does not exist");
    }
}
