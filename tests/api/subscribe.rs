//! `POST /subscribe`: forms, JSON, identical answers, and bad input that changes nothing.

use crate::helpers::{spawn_app, spawn_app_with, spawn_app_without_smtp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_signup_from_fetch_gets_202_pending() {
    let app = spawn_app().await;
    let response =
        app.post_json("/subscribe", &serde_json::json!({"email": "json@example.org", "list": "newsletter"})).await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), serde_json::json!({"status": "pending"}));
    app.smtp().wait_for_messages(1).await;
    assert_eq!(app.row_counts()[0], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_with_accept_json_gets_json_too() {
    let app = spawn_app_without_smtp(|_| {}).await;
    let response = app
        .client
        .post(app.url("/subscribe"))
        .header("accept", "application/json")
        .form(&[("email", "accept@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answer_is_the_same_for_new_pending_and_confirmed_addresses() {
    let app = spawn_app().await;
    let answer = |r: reqwest::Response| async move {
        let status = r.status();
        let mut headers: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(k, _)| *k != "date")
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        headers.sort();
        (status, headers, r.bytes().await.unwrap())
    };
    let new = answer(app.subscribe("same@example.org").await).await;
    let pending = answer(app.subscribe("same@example.org").await).await;
    let mails = app.smtp().wait_for_messages(1).await;
    let token = crate::helpers::confirm_token(&mails[0]);
    assert_eq!(app.post_form("/confirm", &[("token", &token)]).await.status(), 200);
    let confirmed = answer(app.subscribe("SAME@example.org").await).await;
    assert_eq!(new, pending);
    assert_eq!(new, confirmed);
    // The confirmed address got no second mail, and the pending repeat none within resend_interval.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.smtp().messages().len(), 1);
    assert_eq!(app.row_counts()[1], 1, "one outbox row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_signup_while_pending_resends_after_the_interval_up_to_the_daily_cap() {
    let app = spawn_app_with("ok", |c| {
        c.mail.resend_interval = "0s".parse().unwrap();
        c.limits.mails_per_address_per_day = 2;
    })
    .await;
    for _ in 0..4 {
        assert_eq!(app.subscribe("again@example.org").await.status(), 200);
    }
    app.smtp().wait_for_messages(2).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.smtp().messages().len(), 2, "capped at mails_per_address_per_day");
    let tokens: Vec<String> = app.smtp().messages().iter().map(|m| crate::helpers::confirm_token(m)).collect();
    // Either link confirms the one subscription.
    assert_eq!(app.post_form("/confirm", &[("token", &tokens[0])]).await.status(), 200);
    assert_eq!(app.post_form("/confirm", &[("token", &tokens[1])]).await.status(), 200);
    assert_eq!(app.row_counts()[0], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thanks_url_gets_a_303_to_the_configured_page_only() {
    let app =
        spawn_app_without_smtp(|c| c.lists[0].thanks_url = Some("https://www.example.org/thanks".parse().unwrap()))
            .await;
    let response = app
        .post_form(
            "/subscribe",
            &[
                ("email", "thanks@example.org"),
                ("thanks_url", "https://evil.example/"),
                ("redirect", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "https://www.example.org/thanks");
    // JSON callers still get 202.
    let json = app.post_json("/subscribe", &serde_json::json!({"email": "thanks2@example.org"})).await;
    assert_eq!(json.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_400_and_stores_nothing() {
    let app = spawn_app_without_smtp(|_| {}).await;
    let long_email = format!("{}@example.org", "a".repeat(250));
    let long_name = "n".repeat(101);
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "Please enter your email address."),
        (vec![("email", "")], "Please enter your email address."),
        (vec![("email", "not-an-address")], "This does not look like an email address."),
        (vec![("email", "a@b")], "This does not look like an email address."),
        (vec![("email", "x@example.org\r\nBcc: victim@example.org")], "This does not look like an email address."),
        (vec![("email", &long_email)], "too long"),
        (vec![("email", "ok@example.org"), ("name", &long_name)], "The name is too long"),
        (
            vec![("email", "ok@example.org"), ("name", "Eve\r\nBcc: victim@example.org")],
            "characters that are not allowed",
        ),
        (vec![("email", "ok@example.org"), ("name", "Eve\u{0}")], "characters that are not allowed"),
    ];
    for (form, message) in cases {
        let response = app.post_form("/subscribe", &form).await;
        assert_eq!(response.status(), 400, "{form:?}");
        assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
        let body = response.text().await.unwrap();
        assert!(body.contains(message), "{form:?}: {body}");
    }
    let response = app.post_json("/subscribe", &serde_json::json!({"email": "nope"})).await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!((body["error"].as_str(), body["field"].as_str()), (Some("invalid_input"), Some("email")));
    for raw in ["{", "[]", "{\"email\": 5}", "null"] {
        let response = app
            .client
            .post(app.url("/subscribe"))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{raw}");
    }
    // No outbox row: no mail was or will be sent.
    assert_eq!(app.row_counts(), [0, 0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_also_when_chunked() {
    let app = spawn_app_without_smtp(|_| {}).await;
    let big = format!("email=x%40example.org&name={}", "a".repeat(20_000));
    let response = app
        .client
        .post(app.url("/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // Without Content-Length (chunked), the limit still holds.
    let stream = futures_util::stream::iter(
        big.into_bytes().chunks(1000).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let response = app
        .client
        .post(app.url("/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(app.row_counts(), [0, 0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_lists_and_unreadable_bodies_are_refused() {
    let app = spawn_app_without_smtp(|_| {}).await;
    let response = app.post_form("/subscribe", &[("email", "x@example.org"), ("list", "other")]).await;
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("There is no such list here."));
    let response = app
        .client
        .post(app.url("/subscribe"))
        .header("content-type", "text/plain")
        .body("email=x@example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = app
        .client
        .post(app.url("/subscribe"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(app.row_counts(), [0, 0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_several_lists_the_list_field_is_required() {
    let app = spawn_app_with("ok", |c| {
        let mut second = c.lists[0].clone();
        second.id = "events".into();
        second.language = listgate::config::Language::De;
        c.lists.push(second);
    })
    .await;
    let response = app.subscribe("x@example.org").await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("Please say which list"));
    let response = app.post_form("/subscribe", &[("email", "x@example.org"), ("list", "events")]).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("bitte sehen Sie in Ihr Postfach"));
    let mails = app.smtp().wait_for_messages(1).await;
    let text = crate::helpers::decode_qp(&mails[0]);
    assert!(text.contains("Bitte bestätigen Sie die Anmeldung"), "German mail for a German list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filled_honeypot_gets_the_same_answer_but_nothing_is_stored_or_sent() {
    let app = spawn_app().await;
    let human = app.post_form("/subscribe", &[("email", "human@example.org"), ("website", "")]).await;
    let bot = app.post_form("/subscribe", &[("email", "bot@example.org"), ("website", "http://spam.example")]).await;
    assert_eq!(human.status(), bot.status());
    assert_eq!(human.text().await.unwrap(), bot.text().await.unwrap());
    app.smtp().wait_for_messages(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.smtp().messages().len(), 1);
    let emails = app.stored_emails();
    assert_eq!(emails, vec!["human@example.org".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_the_security_headers() {
    let app = spawn_app_without_smtp(|_| {}).await;
    for path in ["/", "/form?list=newsletter", "/confirm?token=x", "/unsubscribe", "/nowhere"] {
        let response = app.get(path).await;
        let h = response.headers();
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{path}: {csp}");
    }
    assert_eq!(app.get("/nowhere").await.status(), 404);
    assert_eq!(app.get("/healthz").await.status(), 200);
    let form = app.get("/").await.text().await.unwrap();
    assert!(form.contains(&format!("action=\"{}/subscribe\"", app.base)) && form.contains("name=\"website\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_concurrent_signups_is_all_committed_and_all_mailed_once() {
    let app = spawn_app().await;
    let requests = (0..100).map(|i| {
        let (client, url) = (app.client.clone(), app.url("/subscribe"));
        async move {
            let email = format!("burst{i}@example.org");
            client.post(url).form(&[("email", email.as_str())]).send().await.unwrap().status()
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // Every answered request is already committed.
    assert_eq!(app.row_counts()[..2], [100, 100]);
    let mails = app.smtp().wait_for_messages(100).await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", 100).await;
    let mut recipients: Vec<String> = mails.iter().map(|m| crate::helpers::header(m, "To").unwrap()).collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 100, "each address got exactly one mail");
    let report = app.db().store(|store| listgate::proof::verify_chain(store, &app.keys()).unwrap());
    assert_eq!((report.events, report.first_break), (200, None));
    let signups: i64 = app.db().value("SELECT sum(signups) FROM daily_stats", &[]);
    assert_eq!(signups, 100);
}
