//! Prometheus metrics for `GET /metrics`: what listgate did since it started,
//! how many mails wait in the outbox, and request latency per route.
//!
//! Why hand-written over atomics rather than `prometheus-client`: that crate
//! (0.25) writes only OpenMetrics text, which types a counter family without
//! its `_total` suffix and ends with `# EOF`. Served as the classic text
//! format 0.0.4, which the contract and most scrapers expect, that would be
//! a family with no samples beside samples of no family. The set here is small
//! and fixed (every label comes from a closed enum), so relaxed atomics and
//! one render function do the job, with no lock on the request path.
//!
//! Labels never carry a raw path, an address, an IP or a token: routes are a
//! fixed set, so a 404 on `/anything?token=…` counts as `other`.
//! Counters live in the process and start at zero again after a restart, as
//! Prometheus expects (`rate()` treats the drop as a reset).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::subscriptions::UnsubscribeMethod;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The routes requests are counted under: a fixed set, never the raw path.
/// `Route as usize` indexes [`Route::ALL`] and the per-route stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Subscribe,
    Confirm,
    Unsubscribe,
    /// The signup form (`/`, `/form`) and the stylesheet.
    Pages,
    Healthz,
    Metrics,
    /// Anything else (mostly 404s).
    Other,
}

impl Route {
    const ALL: [Route; 7] = [
        Route::Subscribe,
        Route::Confirm,
        Route::Unsubscribe,
        Route::Pages,
        Route::Healthz,
        Route::Metrics,
        Route::Other,
    ];

    /// The route a request path belongs to, matching `http::routes` exactly.
    fn of_path(path: &str) -> Route {
        match path {
            "/subscribe" => Route::Subscribe,
            "/confirm" => Route::Confirm,
            "/unsubscribe" => Route::Unsubscribe,
            "/" | "/form" | "/style.css" => Route::Pages,
            "/healthz" => Route::Healthz,
            "/metrics" => Route::Metrics,
            _ => Route::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Route::Subscribe => "subscribe",
            Route::Confirm => "confirm",
            Route::Unsubscribe => "unsubscribe",
            Route::Pages => "pages",
            Route::Healthz => "healthz",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

/// Which limit refused a signup with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    PerIp,
    PerAddress,
}

/// What an outbox delivery attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    /// A permanent failure, or temporary ones past `mail.give_up_after`.
    Failed,
    /// A temporary failure; the mail is tried again later.
    Retried,
}

const STATUS_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Upper bounds of the latency buckets, in microseconds, and as written in `le`.
const BUCKETS: [(u64, &str); 13] = [
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (1_000_000, "1"),
    (2_500_000, "2.5"),
    (5_000_000, "5"),
    (10_000_000, "10"),
];

/// One route's latency histogram and its answers per status class.
#[derive(Default)]
struct RouteStats {
    /// Requests per bucket (not cumulative; the last slot is above every bound).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    by_status: [AtomicU64; STATUS_CLASSES.len()],
}

/// Every counter listgate keeps. One per process, shared through `Arc`.
#[derive(Default)]
pub struct Metrics {
    signups: AtomicU64,
    confirmations: AtomicU64,
    unsubscribes_one_click: AtomicU64,
    unsubscribes_page: AtomicU64,
    bots_dropped: AtomicU64,
    rate_limited_ip: AtomicU64,
    rate_limited_address: AtomicU64,
    mails_sent: AtomicU64,
    mails_failed: AtomicU64,
    mails_retried: AtomicU64,
    mail_ceiling_reached: AtomicU64,
    anchor_failures: AtomicU64,
    /// Unix seconds of the last anchoring that left the head stamped; 0: never.
    anchor_success_unix: AtomicU64,
    routes: [RouteStats; Route::ALL.len()],
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Metrics {
    /// A new pending subscription (not a repeated signup of a known address).
    pub fn signup(&self) {
        inc(&self.signups);
    }

    /// A pending subscription became confirmed (not a repeated click).
    pub fn confirmation(&self) {
        inc(&self.confirmations);
    }

    /// A subscription ended (not a repeated unsubscribe).
    pub fn unsubscribe(&self, method: UnsubscribeMethod) {
        match method {
            UnsubscribeMethod::OneClick => inc(&self.unsubscribes_one_click),
            UnsubscribeMethod::Page => inc(&self.unsubscribes_page),
            // The operator's unsubscribes run in the CLI's process, never in the server's.
            UnsubscribeMethod::Admin => {}
        }
    }

    /// A signup answered as usual but dropped: honeypot or form token.
    pub fn bot_dropped(&self) {
        inc(&self.bots_dropped);
    }

    /// A signup refused with 429.
    pub fn rate_limited(&self, limit: Limit) {
        inc(match limit {
            Limit::PerIp => &self.rate_limited_ip,
            Limit::PerAddress => &self.rate_limited_address,
        });
    }

    /// The recorded outcome of one delivery attempt.
    pub fn mail(&self, outcome: MailOutcome) {
        inc(match outcome {
            MailOutcome::Sent => &self.mails_sent,
            MailOutcome::Failed => &self.mails_failed,
            MailOutcome::Retried => &self.mails_retried,
        });
    }

    /// Confirmation mails began to wait for `limits.mails_per_hour`.
    pub fn mail_ceiling_reached(&self) {
        inc(&self.mail_ceiling_reached);
    }

    /// An anchoring attempt failed (TSA unreachable or answering wrongly,
    /// a broken chain, the database).
    pub fn anchor_failed(&self) {
        inc(&self.anchor_failures);
    }

    /// The chain's head is stamped by an anchor (just now, or already) as
    /// of `unix_seconds`.
    pub fn anchor_succeeded(&self, unix_seconds: i64) {
        self.anchor_success_unix.fetch_max(u64::try_from(unix_seconds).unwrap_or(0), Ordering::Relaxed);
    }

    /// One answered request: its route (from the path), status and latency.
    pub fn request(&self, path: &str, status: u16, elapsed: Duration) {
        let route = &self.routes[Route::of_path(path) as usize];
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKETS.iter().position(|(bound, _)| micros <= *bound).unwrap_or(BUCKETS.len());
        inc(&route.buckets[bucket]);
        route.sum_micros.fetch_add(micros, Ordering::Relaxed);
        // Warp answers nothing below 200 here; anything odd counts with its neighbour.
        let class = usize::from(status.clamp(200, 599) / 100 - 2);
        inc(&route.by_status[class]);
    }

    /// The exposition text; `queued` is the outbox's length, or `None`
    /// when the database could not say (the gauge is then left out).
    pub fn render(&self, queued: Option<u64>) -> String {
        let mut out = String::with_capacity(8192);
        let counter = |out: &mut String, name: &str, help: &str, samples: &[(&str, u64)]| {
            family(out, name, "counter", help);
            for (labels, value) in samples {
                sample(out, name, labels, *value);
            }
        };
        counter(&mut out, "listgate_signups_total", "New pending subscriptions.", &[("", get(&self.signups))]);
        counter(
            &mut out,
            "listgate_confirmations_total",
            "Pending subscriptions confirmed.",
            &[("", get(&self.confirmations))],
        );
        counter(
            &mut out,
            "listgate_unsubscribes_total",
            "Subscriptions ended, by how.",
            &[
                ("method=\"one-click\"", get(&self.unsubscribes_one_click)),
                ("method=\"page\"", get(&self.unsubscribes_page)),
            ],
        );
        counter(
            &mut out,
            "listgate_bot_signups_dropped_total",
            "Signups answered as usual but dropped as a bot's (honeypot or form token).",
            &[("", get(&self.bots_dropped))],
        );
        counter(
            &mut out,
            "listgate_rate_limited_total",
            "Signups refused with 429, by the limit that refused them.",
            &[("limit=\"ip\"", get(&self.rate_limited_ip)), ("limit=\"address\"", get(&self.rate_limited_address))],
        );
        counter(
            &mut out,
            "listgate_mails_sent_total",
            "Confirmation mails the mail server (or the mail folder) took.",
            &[("", get(&self.mails_sent))],
        );
        counter(
            &mut out,
            "listgate_mails_failed_total",
            "Confirmation mails given up: permanent failures, or temporary ones past mail.give_up_after.",
            &[("", get(&self.mails_failed))],
        );
        counter(
            &mut out,
            "listgate_mails_retried_total",
            "Delivery attempts that failed temporarily and will be retried.",
            &[("", get(&self.mails_retried))],
        );
        counter(
            &mut out,
            "listgate_mail_ceiling_reached_total",
            "Times confirmation mails began to wait in the outbox because limits.mails_per_hour was reached.",
            &[("", get(&self.mail_ceiling_reached))],
        );
        counter(
            &mut out,
            "listgate_anchor_failures_total",
            "Attempts to timestamp the proof chain's head at proof.tsa_url that failed (retried with backoff).",
            &[("", get(&self.anchor_failures))],
        );
        let anchored = get(&self.anchor_success_unix);
        if anchored > 0 {
            let name = "listgate_anchor_last_success_timestamp_seconds";
            family(
                &mut out,
                name,
                "gauge",
                "When the daily anchoring last left the chain's head stamped, Unix seconds.",
            );
            sample(&mut out, name, "", anchored);
        }
        if let Some(queued) = queued {
            family(&mut out, "listgate_mails_queued", "gauge", "Mails in the outbox waiting for delivery.");
            sample(&mut out, "listgate_mails_queued", "", queued);
        }
        self.render_requests(&mut out);
        out
    }

    fn render_requests(&self, out: &mut String) {
        let name = "listgate_http_requests_total";
        family(out, name, "counter", "HTTP requests answered, by route and status class.");
        for (route, stats) in Route::ALL.iter().zip(&self.routes) {
            for (class, count) in STATUS_CLASSES.iter().zip(&stats.by_status) {
                sample(out, name, &format!("route=\"{}\",status=\"{class}\"", route.label()), get(count));
            }
        }
        let name = "listgate_http_request_duration_seconds";
        family(out, name, "histogram", "Time from request to response headers, by route.");
        for (route, stats) in Route::ALL.iter().zip(&self.routes) {
            let label = route.label();
            let mut cumulative = 0;
            for ((_, le), count) in BUCKETS.iter().zip(&stats.buckets) {
                cumulative += get(count);
                sample(out, &format!("{name}_bucket"), &format!("route=\"{label}\",le=\"{le}\""), cumulative);
            }
            cumulative += get(&stats.buckets[BUCKETS.len()]);
            sample(out, &format!("{name}_bucket"), &format!("route=\"{label}\",le=\"+Inf\""), cumulative);
            let sum = get(&stats.sum_micros) as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{route=\"{label}\"}} {sum}");
            sample(out, &format!("{name}_count"), &format!("route=\"{label}\""), cumulative);
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: u64) {
    let _ =
        if labels.is_empty() { writeln!(out, "{name} {value}") } else { writeln!(out, "{name}{{{labels}}} {value}") };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_fixed_set_and_never_the_path() {
        assert!(Route::ALL.iter().enumerate().all(|(i, r)| *r as usize == i));
        assert_eq!(Route::of_path("/subscribe"), Route::Subscribe);
        assert_eq!(Route::of_path("/style.css"), Route::Pages);
        assert_eq!(Route::of_path("/confirm/abc.def"), Route::Other);
        let m = Metrics::default();
        m.request("/unsubscribe/SECRET-TOKEN", 404, Duration::from_millis(3));
        let text = m.render(None);
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("listgate_http_requests_total{route=\"other\",status=\"4xx\"} 1"), "{text}");
        assert!(!text.contains("listgate_mails_queued"), "no gauge without a count");
        assert!(text.contains("listgate_anchor_failures_total 0"), "{text}");
        assert!(!text.contains("listgate_anchor_last_success"), "no gauge before an anchor");
        m.anchor_failed();
        m.anchor_succeeded(1_764_583_489);
        m.anchor_succeeded(1_764_500_000);
        let text = m.render(None);
        assert!(text.contains("listgate_anchor_failures_total 1"), "{text}");
        assert!(text.contains("listgate_anchor_last_success_timestamp_seconds 1764583489"), "the newest stays: {text}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_the_count() {
        let m = Metrics::default();
        m.request("/healthz", 200, Duration::from_micros(1_000));
        m.request("/healthz", 200, Duration::from_millis(30));
        m.request("/healthz", 503, Duration::from_secs(60));
        let text = m.render(Some(4));
        let line = |needle: &str| text.lines().find(|l| l.starts_with(needle)).unwrap_or_else(|| panic!("{needle}"));
        let b = "listgate_http_request_duration_seconds_bucket{route=\"healthz\"";
        assert!(line(&format!("{b},le=\"0.001\"}}")).ends_with(" 1"), "le is inclusive");
        assert!(line(&format!("{b},le=\"0.025\"}}")).ends_with(" 1"));
        assert!(line(&format!("{b},le=\"0.05\"}}")).ends_with(" 2"));
        assert!(line(&format!("{b},le=\"10\"}}")).ends_with(" 2"));
        assert!(line(&format!("{b},le=\"+Inf\"}}")).ends_with(" 3"));
        assert!(line("listgate_http_request_duration_seconds_count{route=\"healthz\"}").ends_with(" 3"));
        assert_eq!(
            line("listgate_http_request_duration_seconds_sum{route=\"healthz\"}").split(' ').nth(1),
            Some("60.031")
        );
        assert!(line("listgate_http_requests_total{route=\"healthz\",status=\"5xx\"}").ends_with(" 1"));
        assert_eq!(line("listgate_mails_queued"), "listgate_mails_queued 4");
    }
}
