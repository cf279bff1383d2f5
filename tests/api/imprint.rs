//! Issue 17's legal notices, as a subscriber and a court see them: who
//! sends (the list's `imprint`) and the privacy notice (`privacy_url`) in the
//! mail, on the form and on every page; when and where the signup was made,
//! stated in the mail and kept as proof (show, the proof document, export).

use std::sync::Arc;

use listgate::clock::ManualClock;
use listgate::config::{Config, Language};
use time::macros::datetime;

use crate::helpers::{TestApp, confirm_token, decode_qp, sha256_hex, spawn_app_on_clock};
use crate::store::Value;

const IMPRINT: &str = "Example GmbH\n  Street 1, 12345 Berlin  \n\nHRB 99999 (Amtsgericht Charlottenburg)";
const PRIVACY: &str = "https://www.example.com/privacy";

fn with_notices(c: &mut Config, language: Language, zone: &str) {
    let list = &mut c.lists[0];
    list.language = language;
    list.imprint = Some(IMPRINT.into());
    list.privacy_url = Some(PRIVACY.parse().unwrap());
    list.time_zone = listgate::clock::Zone::parse(zone).unwrap();
    c.limits.form_min_age = "0s".parse().unwrap();
}

/// The imprint's lines (trimmed, blank ones left out) and the privacy link
/// on a page of the list.
fn assert_page_has_notices(html: &str, what: &str, privacy_label: &str) {
    assert!(
        html.contains("Example GmbH<br>Street 1, 12345 Berlin<br>HRB 99999 (Amtsgericht Charlottenburg)"),
        "{what}: no imprint in\n{html}"
    );
    assert!(html.contains(&format!("<a href=\"{PRIVACY}\">{privacy_label}</a>")), "{what}: no privacy link in\n{html}");
}

async fn text(response: reqwest::Response) -> String {
    response.text().await.unwrap()
}

/// Signs up through the form with the headers a browser sends, returns the
/// mail as received, decoded.
async fn sign_up_from(app: &TestApp, email: &str, origin: Option<&str>, referer: Option<&str>) -> (Vec<u8>, String) {
    let before = app.smtp().messages().len();
    let mut request = app.client.post(app.url("/subscribe")).form(&[("email", email)]);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    if let Some(referer) = referer {
        request = request.header("Referer", referer);
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
    let mail = app.smtp().wait_for_messages(before + 1).await.remove(before);
    let decoded = decode_qp(&mail);
    (mail, decoded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_english_list_names_its_sender_privacy_notice_and_the_signup_s_time_and_page_in_mail_pages_and_proof() {
    let clock = Arc::new(ManualClock::new(datetime!(2026-12-01 10:40:07.250 UTC)));
    let app = spawn_app_on_clock("ok", clock.clone(), |c| with_notices(c, Language::En, "UTC")).await;

    // The form carries the privacy link beside the consent text and both notices at its foot.
    let form = text(app.get("/form").await).await;
    assert_page_has_notices(&form, "form", "Privacy notice");
    assert!(form.contains(&format!("I can unsubscribe at any time. <a href=\"{PRIVACY}\">Privacy notice</a></p>")));

    let page = "https://www.example.com/blog/newsletter";
    let referer = format!("{page}?utm_source=mail&email=anna%40example.org#signup");
    let (mail, decoded) =
        sign_up_from(&app, "Anna+News@BÜCHER.example", Some("https://www.example.com"), Some(&referer)).await;
    let said = "The signup was made on 1 December 2026 at 10:40:07 (UTC), on the page https://www.example.com/blog/newsletter.";
    let (text_part, html_part) = decoded.split_once("Content-Type: text/html").expect("two parts");
    assert!(text_part.contains(said), "when and where, in the text part:\n{text_part}");
    assert!(html_part.contains(said), "and in the HTML part:\n{html_part}");
    assert!(
        text_part.contains(
            "Privacy notice: https://www.example.com/privacy\r\n\r\n-- \r\nNewsletter\r\nExample GmbH\r\nStreet 1, 12345 Berlin\r\nHRB 99999 (Amtsgericht Charlottenburg)"
        ),
        "imprint and privacy notice in the text part:\n{text_part}"
    );
    assert!(html_part.contains(&format!("<a href=\"{PRIVACY}\" style=\"color:#1a5fb4\">Privacy notice</a>")));
    assert!(html_part.contains("Newsletter<br>Example GmbH<br>Street 1, 12345 Berlin<br>HRB 99999"));
    assert!(!decoded.contains("utm_source") && !decoded.contains("#signup"), "no query or fragment is ever kept");

    // Stored once, by hash, and referenced from the subscription.
    let db = app.db();
    let stored: String = db.value("SELECT page FROM form_pages", &[]);
    assert_eq!(stored, page);
    let by_hash: String = db.value("SELECT form_page_sha256 FROM subscriptions", &[]);
    assert_eq!(by_hash, sha256_hex(page.as_bytes()));
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", 1).await;
    let recorded: String = db.value("SELECT message_sha256 FROM outbox", &[]);
    assert_eq!(recorded, sha256_hex(&mail), "the hash of the mail as the SMTP server received it");

    // Every page the link leads to carries both notices.
    let token = confirm_token(&mail);
    assert_page_has_notices(
        &text(app.get(&format!("/confirm?token={token}")).await).await,
        "confirm",
        "Privacy notice",
    );
    let confirmed = text(app.post_form("/confirm", &[("token", &token)]).await).await;
    assert_page_has_notices(&confirmed, "confirmed", "Privacy notice");
    let id: i64 = db.value("SELECT id FROM subscriptions", &[]);
    let unsubscribe = listgate::subscriptions::unsubscribe_url(&app.config, &app.keys(), id, "newsletter");
    let path = unsubscribe.strip_prefix(&app.base).unwrap();
    assert_page_has_notices(&text(app.get(path).await).await, "unsubscribe", "Privacy notice");
    let gone = text(app.client.post(app.url(path)).send().await.unwrap()).await;
    assert_page_has_notices(&gone, "unsubscribed", "Privacy notice");
    let error = text(app.post_form("/confirm", &[("token", &format!("{token}x"))]).await).await;
    assert!(!error.contains("Example GmbH"), "an unreadable token names no list");

    // The proof: show, the proof document (the mail rebuilt byte for byte), the export.
    let show = app.cli(&["show", "anna+news@bücher.example"]);
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains(&format!("  form page:     {page} (as the browser named it)")), "{shown}");
    let dir = tempfile::tempdir().unwrap();
    let proof = app.cli(&["show", "Anna+News@xn--bcher-kva.example", "--proof", "--dir", dir.path().to_str().unwrap()]);
    assert!(proof.status.success(), "{}", String::from_utf8_lossy(&proof.stderr));
    let document = std::fs::read_to_string(dir.path().join(format!("proof-newsletter-{id}.html"))).unwrap();
    assert!(document.contains(&format!("<tr><th>Form page</th><td>{page} ")), "{document}");
    assert!(document.contains("<span class=\"ok\">matches</span>"), "the mail rebuilds byte for byte");
    assert!(!document.contains("does not match"));
    let export = app.cli(&["export", "--status", "all"]);
    let csv = String::from_utf8_lossy(&export.stdout);
    let header = csv.lines().next().unwrap();
    assert!(header.ends_with(",evidence,imported_at,form_page"), "{header}");
    assert!(csv.lines().nth(1).unwrap().ends_with(&format!(",double-opt-in,,{page}")), "{csv}");
    let json = app.cli(&["export", "--status", "all", "--format", "jsonl"]);
    let row: serde_json::Value = serde_json::from_slice(json.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(row["form_page"], page);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_german_list_states_the_time_in_its_zone_and_its_own_form_or_no_page_and_carries_imprint_and_privacy_link() {
    // Summer time in Berlin: UTC+2.
    let clock = Arc::new(ManualClock::new(datetime!(2026-07-15 22:05:09 UTC)));
    let app = spawn_app_on_clock("ok", clock.clone(), |c| with_notices(c, Language::De, "Europe/Berlin")).await;

    // listgate's own form page sends no Referer (no-referrer); its form token says where it was.
    let form = text(app.get("/form").await).await;
    assert_page_has_notices(&form, "Formular", "Datenschutzerklärung");
    let start = form.find("name=\"form_token\" value=\"").unwrap() + "name=\"form_token\" value=\"".len();
    let form_token = form[start..].split('"').next().unwrap().to_string();
    let response = app
        .client
        .post(app.url("/subscribe"))
        .header("Origin", "null")
        .form(&[("email", "Joerg.M@Example.DE"), ("form_token", &form_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pending = text(response).await;
    assert_page_has_notices(&pending, "Eingangsseite", "Datenschutzerklärung");
    let mail = app.smtp().wait_for_messages(1).await.remove(0);
    let decoded = decode_qp(&mail);
    let said = format!(
        "Die Anmeldung erfolgte am 16. Juli 2026 um 00:05:09 Uhr (Europe/Berlin, UTC+02:00), auf der Seite {}/form.",
        app.base
    );
    assert_eq!(decoded.matches(&said).count(), 2, "in both parts:\n{decoded}");
    assert!(decoded.contains("Datenschutzerklärung: https://www.example.com/privacy"), "{decoded}");
    assert!(decoded.contains(&format!("<a href=\"{PRIVACY}\" style=\"color:#1a5fb4\">Datenschutzerklärung</a>")));
    assert!(decoded.contains("Example GmbH\r\nStreet 1, 12345 Berlin\r\nHRB 99999"), "{decoded}");

    // A JSON call naming no page: the mail says so instead of guessing.
    clock.advance(time::Duration::hours(6));
    let response = app
        .client
        .post(app.url("/subscribe"))
        .json(&serde_json::json!({"email": "zweite@example.de"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let second = decode_qp(&app.smtp().wait_for_messages(2).await[1]);
    assert!(
        second.contains(
            "Die Anmeldung erfolgte am 16. Juli 2026 um 06:05:09 Uhr (Europe/Berlin, UTC+02:00), über ein Anmeldeformular, dessen Seite der Browser nicht genannt hat."
        ),
        "{second}"
    );
    let db = app.db();
    let pages: i64 = db.value("SELECT count(*) FROM form_pages", &[]);
    let without: i64 = db.value("SELECT count(*) FROM subscriptions WHERE form_page_sha256 IS NULL", &[]);
    assert_eq!((pages, without), (1, 1));

    // The proof event of the signup names the page by its hash: the chain covers it.
    let detail: String = db.value(
        "SELECT detail FROM proof_events WHERE kind = 'signup' AND subscription_id = ?1",
        &[Value::from(db.value::<i64>("SELECT min(id) FROM subscriptions", &[]))],
    );
    let detail: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["form_page"], sha256_hex(format!("{}/form", app.base).as_bytes()));
    let verify = app.cli(&["verify"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    // A resend states the repeated request's own time and page.
    clock.advance(time::Duration::hours(1));
    let (_, resent) = sign_up_from(&app, "joerg.m@example.de", None, Some("https://shop.example.de/kasse?x=1")).await;
    assert!(
        resent.contains("um 07:05:09 Uhr (Europe/Berlin, UTC+02:00), auf der Seite https://shop.example.de/kasse."),
        "{resent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_receipt_names_controller_purpose_notice_times_state_and_the_chain_head() {
    let clock = Arc::new(ManualClock::new(datetime!(2026-12-01 09:00:00 UTC)));
    let app = spawn_app_on_clock("ok", clock.clone(), |c| {
        with_notices(c, Language::De, "Europe/Berlin");
        c.lists[0].consent_text = "Ja, schickt mir den Rundbrief. Abbestellen geht jederzeit.".into();
    })
    .await;
    let (mail, _) = sign_up_from(&app, "Erika@Example.de", Some("https://www.example.com"), None).await;
    app.wait_for_value("SELECT count(*) FROM outbox WHERE state = 'sent'", 1).await;
    clock.advance(time::Duration::minutes(3));
    assert_eq!(app.post_form("/confirm", &[("token", &confirm_token(&mail))]).await.status(), 200);

    // The operator's CLI reads the same configuration file as the server.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("listgate.toml");
    std::fs::write(
        &file,
        format!(
            "[[lists]]\nid = \"newsletter\"\nname = \"Rundbrief\"\nlanguage = \"de\"\nconsent_text = \"{}\"\nimprint = \"\"\"\n{IMPRINT}\n\"\"\"\nprivacy_url = \"{PRIVACY}\"\n",
            app.config.lists[0].consent_text
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| app.cli(&[&["--config", file.to_str().unwrap()], args].concat());
    let output = cli(&["show", "erika@example.de", "--receipt"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let receipts: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let r = &receipts[0];
    assert_eq!(receipts.as_array().unwrap().len(), 1);
    assert_eq!(r["version"], "KI-CR-v1.1.0");
    assert_eq!(r["piiPrincipalId"], "Erika@Example.de", "as entered");
    assert_eq!(r["piiControllers"][0]["piiController"], "Example GmbH");
    assert_eq!(r["piiControllers"][0]["address"], "Street 1, 12345 Berlin, HRB 99999 (Amtsgericht Charlottenburg)");
    assert_eq!(r["policyUrl"], PRIVACY);
    assert_eq!(r["language"], "de");
    let purpose = &r["services"][0]["purposes"][0];
    assert_eq!(purpose["purpose"], "Ja, schickt mir den Rundbrief. Abbestellen geht jederzeit.");
    assert_eq!(purpose["consentType"], "EXPLICIT");
    assert_eq!(
        r["notice"]["sha256"],
        sha256_hex("Ja, schickt mir den Rundbrief. Abbestellen geht jederzeit.".as_bytes())
    );
    assert_eq!(r["state"], "given");
    assert_eq!(r["consentTimestamp"], datetime!(2026-12-01 09:03:00 UTC).unix_timestamp());
    assert_eq!(r["events"]["signed_up"]["at"], "2026-12-01T09:00:00.000Z");
    assert_eq!(r["events"]["signed_up"]["ip"], "127.0.0.1");
    assert_eq!(r["events"]["signed_up"]["form_page"], "https://www.example.com");
    assert_eq!(r["events"]["confirmed"]["at"], "2026-12-01T09:03:00.000Z");
    assert!(r["events"]["withdrawn"].is_null());

    // The head the receipt names is the one verify prints.
    let verify = String::from_utf8(app.cli(&["verify"]).stdout).unwrap();
    let head = verify.lines().find_map(|l| l.strip_prefix("head: ")).expect("verify prints the head").to_string();
    let named =
        format!("{} {}", r["proof"]["chain_head"]["events"], r["proof"]["chain_head"]["link"].as_str().unwrap());
    assert_eq!(named, head);
    let events = r["proof"]["events"].as_array().unwrap().len();
    assert_eq!(events, 3, "signup, mail sent, confirm: {r}");

    // Withdrawn after an unsubscribe; an unknown address is an error.
    let id: i64 = app.db().value("SELECT id FROM subscriptions", &[]);
    assert_eq!(app.one_click(id).await.status(), 200);
    let output = cli(&["show", "erika@example.de", "--receipt"]);
    let receipts: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(receipts[0]["state"], "withdrawn");
    assert_eq!(receipts[0]["events"]["withdrawn"]["method"], "one-click");
    let nobody = app.cli(&["show", "nobody@example.de", "--receipt"]);
    assert_eq!(nobody.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("nothing stored for nobody@example.de"));
    let both = app.cli(&["show", "erika@example.de", "--receipt", "--proof"]);
    assert_eq!(both.status.code(), Some(2), "--receipt and --proof are two different answers");
}
