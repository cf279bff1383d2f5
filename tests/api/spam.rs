//! The confirmation mail, as the SMTP server received it, scored by
//! SpamAssassin (Debian's `spamassassin`, local rules only: no network
//! tests, no Bayes). It must score low and trip no rule about its form:
//! missing or malformed headers, bad MIME, HTML without text, odd dates.

use std::io::Write;
use std::process::{Command, Stdio};

use listgate::config::Language;

use crate::helpers::spawn_app_with;
use crate::tools::{Tool, require};

/// Rule names that would mean the mail is built wrong (not merely that it is
/// a short, link-carrying mail, which it is).
const FORM_RULES: [&str; 9] = [
    "MISSING_",
    "MIME_",
    "HTML_ONLY",
    "HTML_MIME_NO_HTML_TAG",
    "INVALID_DATE",
    "DATE_IN_",
    "FROM_",
    "MSGID_",
    "TO_NO_BRKTS",
];

/// `(score, rules)` from SpamAssassin's `X-Spam-Status` header.
fn spamassassin(message: &[u8]) -> (f64, Vec<String>) {
    let mut child = Command::new(Tool::Spamassassin.path())
        .args(["--local", "--test-mode", "--cf=use_bayes 0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run spamassassin");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // The header is folded over several lines: unfold it.
    let start = text.find("X-Spam-Status:").unwrap_or_else(|| panic!("no X-Spam-Status in:\n{text}"));
    let mut status = String::new();
    for (i, line) in text[start..].lines().enumerate() {
        if i > 0 && !line.starts_with([' ', '\t']) {
            break;
        }
        status.push_str(line.trim());
        status.push(' ');
    }
    let score = status.split("score=").nth(1).and_then(|s| s.split_whitespace().next()).unwrap();
    let rules = status.split("tests=").nth(1).map_or("", |s| s.split_whitespace().next().unwrap_or(""));
    let rules = rules.split(',').filter(|r| !r.is_empty() && *r != "none").map(str::to_string).collect();
    (score.parse().unwrap_or_else(|_| panic!("score in {status}")), rules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confirmation_mail_scores_low_with_spamassassin_in_english_and_german() {
    require(&[Tool::Spamassassin, Tool::Aiosmtpd]);
    for language in [Language::En, Language::De] {
        let app = spawn_app_with("ok", |c| {
            c.mail.from = "Example News <news@example.org>".into();
            c.lists[0].language = language;
        })
        .await;
        assert_eq!(app.subscribe("reader@example.net").await.status(), 200);
        let mail = app.smtp().wait_for_messages(1).await.remove(0);
        let (score, rules) = spamassassin(&mail);
        eprintln!("SpamAssassin, {language:?}: score {score}, rules {rules:?}");
        assert!(score < 2.0, "{language:?}: score {score}, rules {rules:?}");
        let form: Vec<_> = rules.iter().filter(|r| FORM_RULES.iter().any(|f| r.starts_with(f))).collect();
        assert!(form.is_empty(), "{language:?}: rules about the mail's form: {form:?} (all: {rules:?})");

        // The check can fail: the same mail without its Date trips the rule for that.
        let text = String::from_utf8(mail).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let head: Vec<&str> = head.split("\r\n").filter(|l| !l.starts_with("Date:")).collect();
        let broken = format!("{}\r\n\r\n{body}", head.join("\r\n"));
        let (_, rules) = spamassassin(broken.as_bytes());
        assert!(rules.iter().any(|r| r == "MISSING_DATE"), "{rules:?}");
    }
}
