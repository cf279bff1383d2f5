//! The subscriber's journey in a real browser: Debian's Chromium, headless,
//! driven over WebDriver (chromedriver) by fantoccini.
//!
//! A small site on a second loopback origin serves `docs/examples/signup.html`,
//! which carries the README's HTML form and its `fetch()` variant word for
//! word. The browser signs up through both, lands on the pending page (or the
//! list's `thanks_url`), reads nothing but what the real SMTP server
//! received, opens the confirmation link, presses the button, then leaves
//! through the unsubscribe link of an export row. The example webhook
//! receiver, `docs/examples/webhook-receiver.py`, hears of both, and
//! `/metrics` counts them. All of it in English and in German.
//!
//! Every listgate page the browser shows is checked in it: axe-core (from
//! npm, `tests/browser`) finds no serious or critical accessibility problem
//! at phone and desktop width (and, for three pages, in dark mode), nothing
//! scrolls sideways on a phone, the stylesheet loads under the page's
//! Content-Security-Policy, and pages reached by a button carry no referrer
//! (tokens are in URLs). Screenshots of each page at both widths go to
//! `artifacts/screenshots/` (or `$LISTGATE_SCREENSHOTS`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use listgate::config::{Language, ListConfig};
use serde_json::{Value, json};
use warp::{Filter, Reply as _};

use crate::helpers::{PATIENCE, TestApp, confirm_token, decode_qp, header, spawn_app_with};
use crate::tools::{Tool, require};

const WEBHOOK_SECRET: &str = "the site's webhook secret";

/// Window sizes the pages are checked and photographed at (CSS pixels).
const WIDTHS: [(&str, u32, u32); 2] = [("phone", 390, 844), ("desktop", 1280, 800)];

/// Chromium under chromedriver, in its own process group so that nothing
/// outlives the test.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    axe: String,
    screenshots: PathBuf,
}

impl Browser {
    /// Starts Chromium; `dark` makes pages see `prefers-color-scheme: dark`.
    async fn start(dark: bool) -> Browser {
        let axe_path = Tool::AxeCore.path();
        let axe = std::fs::read_to_string(&axe_path).unwrap_or_else(|e| panic!("{}: {e}", axe_path.display()));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = {
            use std::os::unix::process::CommandExt as _;
            Command::new(Tool::Chromedriver.path())
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start chromedriver")
        };
        let profile = tempfile::tempdir().unwrap();
        let mut options = json!({
            "binary": Tool::Chromium.path(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.path().display()),
                "--window-size=1280,800", "--lang=en",
            ],
        });
        if dark {
            options["args"].as_array_mut().unwrap().push(json!("--force-dark-mode"));
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), options);
        let start = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) if start.elapsed() > PATIENCE => panic!("chromedriver and Chromium did not start: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let screenshots = std::env::var_os("LISTGATE_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts/screenshots"));
        std::fs::create_dir_all(&screenshots).unwrap();
        Browser { client, driver, _profile: profile, axe, screenshots }
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// Runs `script` (a function body) in the page and returns its value.
    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).text().await.unwrap()
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        field.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}")).click().await.unwrap();
    }

    /// Submits the site's `fetch()` form with `email`, past the browser's own
    /// validation, and returns what the page says then.
    async fn submit_fetch_form(&self, email: &str) -> String {
        self.js("document.getElementById('js-form').noValidate = true; \
                 document.getElementById('js-email').value = ''; document.getElementById('js-result').textContent = '';")
            .await;
        self.fill("#js-email", email).await;
        self.click("#js-form button").await;
        let start = Instant::now();
        loop {
            let said = self.text("#js-result").await;
            if !said.is_empty() {
                return said;
            }
            assert!(start.elapsed() < PATIENCE, "the fetch() form got no answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page's URL is `url` (after a submit or redirect).
    async fn wait_for_url(&self, url: &str) {
        let start = Instant::now();
        while self.url().await != url {
            assert!(start.elapsed() < PATIENCE, "the browser stayed on {}, expected {url}", self.url().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the page shows `heading` as its `h1`.
    async fn wait_for_heading(&self, heading: &str) {
        let start = Instant::now();
        loop {
            let now = self.js("const h = document.querySelector('h1'); return h ? h.textContent : null;").await;
            if now.as_str() == Some(heading) {
                return;
            }
            assert!(start.elapsed() < PATIENCE, "the page at {} shows {now}, expected {heading:?}", self.url().await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks the listgate page on screen: its language, and that its
    /// stylesheet loaded under its Content-Security-Policy; then `check_screen`.
    async fn check_page(&self, name: &str, language: &str) {
        let facts = self
            .js("return [document.documentElement.lang, document.styleSheets.length, \
                 document.styleSheets.length ? document.styleSheets[0].cssRules.length : 0];")
            .await;
        assert_eq!(facts[0], language, "{name}: page language");
        assert_eq!(facts[1], 1, "{name}: one stylesheet");
        assert!(facts[2].as_u64() > Some(10), "{name}: the stylesheet loaded under the CSP: {facts}");
        self.check_screen(name, language).await;
    }

    /// At phone and desktop width: nothing scrolls sideways, axe-core finds
    /// no serious or critical problem, and a screenshot is saved as
    /// `LANGUAGE-NAME-DEVICE.png`.
    async fn check_screen(&self, name: &str, language: &str) {
        for (device, width, height) in WIDTHS {
            self.client.set_window_size(width, height).await.unwrap();
            let overflow =
                self.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;").await;
            assert!(overflow.as_i64() <= Some(0), "{name}: scrolls sideways by {overflow} px at {device} width");
            let problems = self.axe_problems().await;
            assert!(problems.is_empty(), "{name} at {device} width: axe-core found {:#}", Value::from(problems));
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(self.screenshots.join(format!("{language}-{name}-{device}.png")), png).unwrap();
        }
        self.client.set_window_size(WIDTHS[1].1, WIDTHS[1].2).await.unwrap();
    }

    /// axe-core's serious and critical violations of WCAG 2.2 A/AA and its best practices.
    async fn axe_problems(&self) -> Vec<Value> {
        let loaded = self.js(&format!("{}\nreturn typeof axe.run;", self.axe)).await;
        assert_eq!(loaded, "function", "axe-core loaded into the page");
        let script = "const done = arguments[arguments.length - 1];
            axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                    'wcag22aa', 'best-practice'] }, resultTypes: ['violations'] })
              .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map(n => n.target.join(' ')) }))),
                    e => done([{ id: 'axe-error', impact: 'critical', help: String(e) }]));";
        let violations = self.client.execute_async(script, vec![]).await.expect("axe.run");
        let violations = violations.as_array().expect("a list of violations").clone();
        violations.into_iter().filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical"))).collect()
    }

    /// `document.referrer` of the page on screen.
    async fn referrer(&self) -> Value {
        self.js("return document.referrer;").await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver started Chromium in its process group: end them all.
        let _ = Command::new("kill").args(["-s", "KILL", "--", &format!("-{}", self.driver.id())]).status();
        let _ = self.driver.wait();
    }
}

/// The other website: `/signup/LIST`, the example signup page pointed at a
/// list, a thanks page, a welcome page (for `confirmed_url`), and a page
/// that fails axe-core.
struct Site {
    origin: String,
    port: u16,
}

/// The first code block in `language` of the README's "The HTML form" section.
fn readme_snippet(language: &str) -> String {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("## The HTML form").expect("README has the form section")..];
    let fence = format!("```{language}\n");
    let start = section.find(&fence).expect("a snippet") + fence.len();
    let end = start + section[start..].find("```").expect("closing fence");
    section[start..end].to_string()
}

/// Lines without their indentation, to find a snippet inside a page.
fn trimmed_lines(text: &str) -> String {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

/// The site's signup page for `list`: `docs/examples/signup.html`, which
/// holds the README's two snippets, pointed at the app under test.
fn site_page(app_base: &str, list: &ListConfig) -> String {
    let page = include_str!("../../docs/examples/signup.html");
    for language in ["html", "js"] {
        let snippet = readme_snippet(language).replace("https://lists.example.com", "http://127.0.0.1:8080");
        assert!(
            trimmed_lines(page).contains(&trimmed_lines(&snippet)),
            "docs/examples/signup.html carries the README's {language} snippet:\n{snippet}"
        );
    }
    page.replace("http://127.0.0.1:8080", app_base)
        .replace("value=\"newsletter\"", &format!("value=\"{}\"", list.id))
        .replace("list: \"newsletter\"", &format!("list: \"{}\"", list.id))
        .replace("Yes, send me the newsletter. I can unsubscribe at any time.", &list.consent_text)
}

impl Site {
    /// Binds the site's port first: listgate's configuration needs its origin.
    async fn bind() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        (listener, origin)
    }

    fn serve(listener: tokio::net::TcpListener, origin: String, app: &TestApp) -> Site {
        let port = listener.local_addr().unwrap().port();
        let pages: Arc<Vec<(String, String)>> =
            Arc::new(app.config.lists.iter().map(|l| (l.id.clone(), site_page(&app.base, l))).collect());
        let signup = warp::get().and(warp::path!("signup" / String)).map(move |id: String| {
            match pages.iter().find(|(list, _)| *list == id) {
                Some((_, html)) => warp::reply::html(html.clone()).into_response(),
                None => warp::http::StatusCode::NOT_FOUND.into_response(),
            }
        });
        // Fails axe-core on purpose: a button without a name, an image without alt text.
        let inaccessible = warp::get().and(warp::path!("inaccessible.html")).map(|| {
            warp::reply::html(
                "<!DOCTYPE html><html lang=en><title>x</title><main><button></button><img src=a.png></main></html>",
            )
        });
        let thanks = warp::get()
            .and(warp::path!("thanks.html"))
            .map(|| warp::reply::html("<!DOCTYPE html><html lang=en><title>Thanks</title><h1>Thanks!</h1></html>"));
        let welcome = warp::get()
            .and(warp::path!("welcome.html"))
            .map(|| warp::reply::html("<!DOCTYPE html><html lang=en><title>Welcome</title><h1>Welcome!</h1></html>"));
        tokio::spawn(warp::serve(signup.or(thanks).or(welcome).or(inaccessible)).incoming(listener).run());
        Site { origin, port }
    }
}

/// The example receiver from the docs, `docs/examples/webhook-receiver.py`:
/// it prints each call whose signature verifies, and refuses others.
struct WebhookReceiver {
    url: String,
    child: Child,
    calls: Arc<Mutex<Vec<Value>>>,
}

impl WebhookReceiver {
    fn start() -> WebhookReceiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/webhook-receiver.py");
        let mut child = Command::new(Tool::Python3.path())
            .arg(script)
            .args(["--secret", WEBHOOK_SECRET, "--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the example webhook receiver");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let first = lines.next().expect("the receiver says where it listens").unwrap();
        let url = first.strip_prefix("listening on ").expect("listening on URL").to_string();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let heard = calls.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                heard.lock().unwrap().push(serde_json::from_str(&line).expect("one JSON call per line"));
            }
        });
        WebhookReceiver { url, child, calls }
    }

    /// Waits for the verified webhook call announcing `event` for `email`.
    async fn wait_for_call(&self, event: &str, email: &str) -> Value {
        let start = Instant::now();
        loop {
            let found = self.calls.lock().unwrap().iter().find(|c| c["event"] == event && c["email"] == email).cloned();
            if let Some(call) = found {
                return call;
            }
            assert!(start.elapsed() < PATIENCE, "no {event} webhook for {email}: {:?}", self.calls.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn list(id: &str, name: &str, language: Language, consent_text: &str, site: &str, webhook: &str) -> ListConfig {
    let mut list = listgate::config::Config::load_from(None, Vec::new()).unwrap().lists.remove(0);
    list.id = id.into();
    list.name = name.into();
    list.language = language;
    list.consent_text = consent_text.into();
    list.allowed_origins = vec![site.into()];
    list.webhook_url = Some(webhook.parse().unwrap());
    list.webhook_secret = Some(WEBHOOK_SECRET.into());
    list.imprint = Some("Example GmbH\nStreet 1, 12345 Berlin\nHRB 99999 B".into());
    list.privacy_url = Some(format!("{site}/privacy.html").parse().unwrap());
    list
}

/// What the pages say, in each language.
struct Words {
    language: &'static str,
    pending: &'static str,
    invalid_email: &'static str,
    confirm: &'static str,
    confirmed: &'static str,
    declined: &'static str,
    already_subscribed: &'static str,
    no_longer_subscribed: &'static str,
    expired: &'static str,
    unsubscribe: &'static str,
    unsubscribed: &'static str,
}

/// Waits for the confirmation mail to `email` and returns its link.
async fn confirmation_link(app: &TestApp, email: &str) -> String {
    let start = Instant::now();
    loop {
        let mail = app.smtp().messages().into_iter().find(|m| header(m, "To").is_some_and(|to| to.contains(email)));
        if let Some(mail) = mail {
            let link = format!("{}/confirm?token={}", app.base, confirm_token(&mail));
            assert!(decode_qp(&mail).contains(&link), "the mail links to the public base URL");
            return link;
        }
        assert!(start.elapsed() < PATIENCE, "no confirmation mail to {email}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status_of(app: &TestApp, email: &str) -> Option<(String, Option<String>, Option<String>)> {
    app.db()
        .rows("SELECT status, confirmed_ip, unsubscribe_method FROM subscriptions WHERE email = ?1", &[email.into()])
        .pop()
}

/// Signs up on the site with the plain form and with `fetch()`, confirms the
/// first, declines the second, then unsubscribes the first from its export row.
async fn journey(browser: &Browser, app: &TestApp, site: &Site, receiver: &WebhookReceiver, list: &str, words: &Words) {
    let language = words.language;
    let (person, stranger) = (format!("erika.{list}@example.org"), format!("fetch.{list}@example.org"));
    let signup_page = format!("{}/signup/{list}", site.origin);

    // 1. The plain HTML form on the other site, then listgate's pending page.
    browser.goto(&signup_page).await;
    browser.check_screen("site", language).await;
    browser.fill("#nl-email", &person).await;
    browser.fill("#nl-name", "Erika Mustermann").await;
    browser.click("form[action$='/subscribe'] button[type=submit]").await;
    browser.wait_for_url(&app.url("/subscribe")).await;
    browser.wait_for_heading(words.pending).await;
    browser.check_page("pending", language).await;

    // 2. The fetch() form: the site reads listgate's JSON answer (CORS), errors
    // included, in the list's language.
    browser.goto(&signup_page).await;
    assert_eq!(browser.submit_fetch_form("not an address").await, words.invalid_email);
    assert_eq!(browser.submit_fetch_form(&stranger).await, "Almost done: please check your inbox.");
    assert_eq!(browser.url().await, signup_page, "the fetch() form stays on the site");
    // Both name the site's page as the browser sent it (the page allows its path).
    for email in [&person, &stranger] {
        let page: String = app.db().value(
            "SELECT p.page FROM subscriptions s JOIN form_pages p ON p.sha256 = s.form_page_sha256 WHERE s.email = ?1",
            &[crate::store::Value::from(email.as_str())],
        );
        assert_eq!(page, signup_page, "{email}");
    }

    // 3. The link from the mail the SMTP server received; the button confirms.
    browser.goto(&confirmation_link(app, &person).await).await;
    browser.wait_for_heading(words.confirm).await;
    assert_eq!(status_of(app, &person).unwrap().0, "pending", "opening the link changes nothing");
    browser.check_page("confirm", language).await;
    browser.click("button[value=confirm]").await;
    browser.wait_for_heading(words.confirmed).await;
    assert_eq!(browser.referrer().await, "", "no referrer leaves the page whose URL holds the token");
    browser.check_page("confirmed", language).await;
    assert_eq!(status_of(app, &person).unwrap(), ("confirmed".into(), Some("127.0.0.1".into()), None));
    let call = receiver.wait_for_call("confirmed", &person).await;
    assert_eq!((call["list"].as_str(), call["name"].as_str()), (Some(list), Some("Erika Mustermann")));

    // "I did not sign up" on a confirmed address changes nothing and says so.
    browser.goto(&confirmation_link(app, &person).await).await;
    browser.click("button[value=decline]").await;
    browser.wait_for_heading(words.already_subscribed).await;
    browser.check_page("already-subscribed", language).await;
    assert_eq!(status_of(app, &person).unwrap().0, "confirmed");

    // The fetch() signup's owner never asked: "I did not sign up" erases it.
    browser.goto(&confirmation_link(app, &stranger).await).await;
    browser.wait_for_heading(words.confirm).await;
    browser.click("button[value=decline]").await;
    browser.wait_for_heading(words.declined).await;
    browser.check_page("declined", language).await;
    assert_eq!(status_of(app, &stranger), None, "the declined signup is erased");

    // 4. The unsubscribe link from the export row, as a newsletter carries it.
    let export = app.cli(&["export", "--format", "jsonl"]);
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let row: Value = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .find(|r: &Value| r["email"] == person.as_str())
        .expect("the subscriber is exported");
    browser.goto(row["unsubscribe_url"].as_str().unwrap()).await;
    browser.wait_for_heading(words.unsubscribe).await;
    browser.check_page("unsubscribe", language).await;
    browser.click("main form button").await;
    browser.wait_for_heading(words.unsubscribed).await;
    assert_eq!(browser.referrer().await, "", "no referrer leaves the page whose URL holds the token");
    browser.check_page("unsubscribed", language).await;
    let (status, _, method) = status_of(app, &person).unwrap();
    assert_eq!((status.as_str(), method.as_deref()), ("unsubscribed", Some("page")));
    assert_eq!(receiver.wait_for_call("unsubscribed", &person).await["method"], "page");

    // "I did not sign up" after the unsubscribe erases nothing and says so.
    browser.goto(&confirmation_link(app, &person).await).await;
    browser.click("button[value=decline]").await;
    browser.wait_for_heading(words.no_longer_subscribed).await;
    browser.check_page("no-longer-subscribed", language).await;
    assert_eq!(status_of(app, &person).unwrap().0, "unsubscribed", "the proof stays");

    // An expired confirmation link offers to sign up again, on listgate's own form page.
    let id: i64 = app.db().value("SELECT id FROM subscriptions WHERE email = ?1", &[person.as_str().into()]);
    let expiry = Some(time::OffsetDateTime::now_utc() - time::Duration::seconds(1));
    let expired = listgate::token::sign(&app.keys(), listgate::token::Purpose::Confirm, app.subject(id), list, expiry);
    browser.goto(&app.url(&format!("/confirm?token={expired}"))).await;
    browser.wait_for_heading(words.expired).await;
    browser.check_page("expired-link", language).await;
    browser.click("main a").await;
    browser.wait_for_url(&app.url(&format!("/form?list={list}"))).await;
    browser.check_page("form", language).await;
    browser.js("document.querySelector('main form').noValidate = true;").await;
    browser.fill("#email", "not an address").await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_url(&app.url("/subscribe")).await;
    browser.check_page("invalid-input", language).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_up_on_another_site_confirms_and_unsubscribes_in_english_and_german() {
    require(&[Tool::Chromium, Tool::Chromedriver, Tool::AxeCore, Tool::Aiosmtpd, Tool::Python3]);
    let (listener, origin) = Site::bind().await;
    let receiver = WebhookReceiver::start();
    let hook = receiver.url.as_str();
    let app = spawn_app_with("ok", |c| {
        c.lists = vec![
            list(
                "newsletter",
                "Newsletter",
                Language::En,
                "Yes, send me the newsletter. I can unsubscribe at any time.",
                &origin,
                hook,
            ),
            list(
                "rundbrief",
                "Rundbrief",
                Language::De,
                "Ja, schicken Sie mir den Rundbrief. Ich kann mich jederzeit abmelden.",
                &origin,
                hook,
            ),
            list("events", "Events", Language::En, "Yes, tell me about events.", &origin, hook),
        ];
        c.lists[2].thanks_url = Some(format!("{origin}/thanks.html").parse().unwrap());
    })
    .await;
    let site = Site::serve(listener, origin, &app);
    let browser = Browser::start(false).await;

    // The accessibility check can fail.
    browser.goto(&format!("{}/inaccessible.html", site.origin)).await;
    let problems: Vec<Value> = browser.axe_problems().await;
    let ids: Vec<&str> = problems.iter().filter_map(|p| p["id"].as_str()).collect();
    assert_eq!(ids, ["button-name", "image-alt"], "axe-core finds the broken page's problems");

    let english = Words {
        language: "en",
        pending: "Almost done: please check your inbox",
        invalid_email: "This does not look like an email address.",
        confirm: "Confirm subscription",
        confirmed: "Thank you, you are subscribed",
        declined: "Thank you, the signup is deleted",
        already_subscribed: "This address is already subscribed",
        no_longer_subscribed: "This address is no longer subscribed",
        expired: "Link expired",
        unsubscribe: "Unsubscribe from \"Newsletter\"?",
        unsubscribed: "You are unsubscribed",
    };
    journey(&browser, &app, &site, &receiver, "newsletter", &english).await;
    let german = Words {
        language: "de",
        pending: "Fast geschafft: bitte sehen Sie in Ihr Postfach",
        invalid_email: "Das sieht nicht nach einer E-Mail-Adresse aus.",
        confirm: "Anmeldung bestätigen",
        confirmed: "Danke, Sie sind angemeldet",
        declined: "Danke, die Anmeldung ist gelöscht",
        already_subscribed: "Diese Adresse ist bereits angemeldet",
        no_longer_subscribed: "Diese Adresse ist nicht mehr angemeldet",
        expired: "Link abgelaufen",
        unsubscribe: "Von „Rundbrief“ abmelden?",
        unsubscribed: "Sie sind abgemeldet",
    };
    journey(&browser, &app, &site, &receiver, "rundbrief", &german).await;

    // A list with a thanks_url sends the browser back to the site.
    browser.goto(&format!("{}/signup/events", site.origin)).await;
    browser.fill("#nl-email", "thanks@example.org").await;
    browser.click("form[action$='/subscribe'] button[type=submit]").await;
    browser.wait_for_url(&format!("{}/thanks.html", site.origin)).await;
    assert_eq!(status_of(&app, "thanks@example.org").unwrap().0, "pending");

    // A page on an origin no list allows cannot sign up with fetch(): the
    // browser's preflight is refused and nothing is stored.
    browser.goto(&format!("http://localhost:{}/signup/newsletter", site.port)).await;
    assert_eq!(
        browser.submit_fetch_form("elsewhere@example.org").await,
        "The signup did not reach the list server (TypeError)."
    );
    assert_eq!(status_of(&app, "elsewhere@example.org"), None);

    // The receiver refuses a call that is not signed with the list's secret.
    let forged = app
        .client
        .post(&receiver.url)
        .header(
            "X-Listgate-Signature",
            format!("t={},v1={}", std::time::UNIX_EPOCH.elapsed().unwrap().as_secs(), "0".repeat(64)),
        )
        .body(r#"{"event":"unsubscribed","email":"erika.newsletter@example.org"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // A tampered link and an unknown path get a clear page too.
    browser.goto(&app.url("/confirm?token=AAAA.BBBB")).await;
    browser.check_page("tampered-link", "en").await;
    browser.goto(&app.url("/no-such-page")).await;
    browser.check_page("not-found", "en").await;

    // The pages' dark colours pass axe-core's contrast check too.
    browser.client.clone().close().await.expect("Chromium quits");
    drop(browser);
    let dark = Browser::start(true).await;
    dark.goto(&app.url("/form?list=newsletter")).await;
    assert_eq!(dark.js("return matchMedia('(prefers-color-scheme: dark)').matches;").await, true);
    dark.check_page("form-dark", "en").await;
    let id: i64 = app.db().value("SELECT max(id) FROM subscriptions", &[]);
    let token = listgate::token::sign(&app.keys(), listgate::token::Purpose::Confirm, app.subject(id), "events", None);
    dark.goto(&app.url(&format!("/confirm?token={token}"))).await;
    dark.wait_for_heading("Confirm subscription").await;
    dark.check_page("confirm-dark", "en").await;
    dark.goto(&app.url("/confirm?token=AAAA.BBBB")).await;
    dark.check_page("tampered-link-dark", "en").await;
    dark.client.clone().close().await.expect("Chromium quits");

    // Prometheus sees what happened.
    let metrics = app.get_metrics().await.text().await.unwrap();
    for line in
        ["listgate_signups_total 5", "listgate_confirmations_total 2", "listgate_unsubscribes_total{method=\"page\"} 2"]
    {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

/// Chromium applies the page's CSP `form-action` to the 303 a form's POST
/// answers with: listgate's own form page and its confirm page must let the
/// browser go on to a `thanks_url` and a `confirmed_url` on the site's origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_posting_listgates_own_forms_is_redirected_to_the_sites_thanks_and_confirmed_pages() {
    require(&[Tool::Chromium, Tool::Chromedriver, Tool::AxeCore, Tool::Aiosmtpd]);
    let (listener, origin) = Site::bind().await;
    let app = spawn_app_with("ok", |c| {
        // The browser submits at once; a young form token would make the signup a bot's.
        c.limits.form_min_age = "0s".parse().unwrap();
        c.lists[0].thanks_url = Some(format!("{origin}/thanks.html").parse().unwrap());
        // Another origin (the same site under its other name): each redirect origin counts on its own.
        let other_origin = origin.replace("127.0.0.1", "localhost");
        c.lists[0].confirmed_url = Some(format!("{other_origin}/welcome.html").parse().unwrap());
    })
    .await;
    let site = Site::serve(listener, origin, &app);
    let browser = Browser::start(false).await;
    let email = "offsite@example.org";

    browser.goto(&app.url("/form?list=newsletter")).await;
    browser.fill("#email", email).await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_url(&format!("{}/thanks.html", site.origin)).await;
    browser.wait_for_heading("Thanks!").await;
    assert_eq!(status_of(&app, email).unwrap().0, "pending");

    browser.goto(&confirmation_link(&app, email).await).await;
    browser.wait_for_heading("Confirm subscription").await;
    browser.click("button[value=confirm]").await;
    browser.wait_for_url(&format!("http://localhost:{}/welcome.html", site.port)).await;
    browser.wait_for_heading("Welcome!").await;
    assert_eq!(status_of(&app, email).unwrap().0, "confirmed");
    browser.client.clone().close().await.expect("Chromium quits");
}
