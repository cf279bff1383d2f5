//! Wiring: from a [`Config`] to a running server with its outbox worker.
//!
//! `Application::build` does everything that can fail at start (bind, open
//! and migrate the database, load or create the key, render the mails) so a
//! bad setup fails before the first request; `run_until_stopped` serves until
//! the shutdown future resolves, then lets the outbox finish what it holds.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::http::{self, AppState, serve};
use crate::keys::{KeyRing, KeySource};
use crate::mail::outbox::{Outbox, RetryPolicy, Transport};
use crate::metrics::Metrics;
use crate::retention::{self, Cutoffs, PurgeReport};
use crate::store::{Database, Store};
use crate::subscriptions::Context;
use crate::webhooks::Webhooks;

/// A bound, ready-to-run listgate server.
pub struct Application {
    listener: TcpListener,
    /// `server.metrics_bind`'s listener, when configured.
    metrics_listener: Option<TcpListener>,
    state: Arc<AppState>,
    outbox: Arc<Outbox>,
    webhooks: Arc<Webhooks>,
    /// When the daily anchor runs (`proof.tsa_url`); tests shorten it.
    anchor_schedule: AnchorSchedule,
}

/// Loads the key ring as configured and tells the operator where it came from.
pub fn load_keys(config: &Config) -> Result<KeyRing, String> {
    let (keys, source) = KeyRing::load_or_create(config.secrets.key.as_deref(), &config.secrets.key_file)?;
    match source {
        KeySource::Generated => tracing::warn!(
            file = %config.secrets.key_file.display(),
            "no secret key found: generated a new one (mode 0600). Back it up: without it no link in any sent mail works"
        ),
        KeySource::File { warn_permissions: true } => tracing::warn!(
            file = %config.secrets.key_file.display(),
            "the key file is readable by other users; run: chmod 600 {}",
            config.secrets.key_file.display()
        ),
        KeySource::File { .. } | KeySource::Config => {}
    }
    Ok(keys)
}

impl Application {
    /// Binds `config.server.bind` and prepares everything; fails with one line.
    pub async fn build(config: Config, clock: SharedClock) -> Result<Application, String> {
        let listener = TcpListener::bind(config.server.bind)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.server.bind))?;
        Application::build_with_listener(config, clock, listener).await
    }

    /// As `build`, on a listener the caller bound (tests use port 0). The
    /// metrics listener, if configured, is bound here.
    pub async fn build_with_listener(
        config: Config,
        clock: SharedClock,
        listener: TcpListener,
    ) -> Result<Application, String> {
        let metrics_listener = match config.server.metrics_bind {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|e| format!("cannot listen on {address} (server.metrics_bind): {e}"))?,
            ),
            None => None,
        };
        let config = Arc::new(config);
        // Mail folder or CA file, key file and database are blocking I/O: off the async executor.
        let (transport, keys, store, ctx) = {
            let (config, now) = (config.clone(), clock.now());
            tokio::task::spawn_blocking(move || -> Result<_, String> {
                let transport = Transport::from_config(&config)?;
                let keys = Arc::new(load_keys(&config)?);
                let store = Store::open(&config.database).map_err(|e| match &config.database.url {
                    Some(_) => e.to_string(),
                    None => format!("cannot open database {}: {e}", config.database.path.display()),
                })?;
                let db = Database::open(&config.database)?;
                let ctx = Context::prepare(&*db, config.clone(), keys.clone(), now)?;
                Ok((transport, keys, store, ctx))
            })
            .await
            .map_err(|e| format!("start-up task failed: {e}"))??
        };

        let wake = Arc::new(Notify::new());
        let retry = RetryPolicy::from_config(&config);
        let metrics = Arc::new(Metrics::default());
        let outbox = Arc::new(
            Outbox::new(store.clone(), keys.clone(), clock.clone(), transport, retry, wake.clone(), metrics.clone())
                .with_ceiling(config.limits.mails_per_hour),
        );
        let webhook_wake = Arc::new(Notify::new());
        let webhooks =
            Arc::new(Webhooks::new(store.clone(), config.clone(), keys, clock.clone(), webhook_wake.clone()));
        let limits = crate::limits::SignupLimits::new(&config.limits);
        let state = Arc::new(AppState { ctx, store, clock, outbox_wake: wake, webhook_wake, limits, metrics });
        Ok(Application { listener, metrics_listener, state, outbox, webhooks, anchor_schedule: AnchorSchedule::DAILY })
    }

    /// Runs the daily anchor on `schedule` instead (tests: seconds, not days).
    pub fn with_anchor_schedule(mut self, schedule: AnchorSchedule) -> Application {
        self.anchor_schedule = schedule;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where `/metrics` is served, if `server.metrics_bind` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    /// Serves until `shutdown` resolves; then stops accepting, finishes
    /// in-flight requests and deliveries, and closes the database.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop_workers, workers_stopped) = watch::channel(false);
        let worker = tokio::spawn(self.outbox.clone().run(workers_stopped.clone()));
        let caller = tokio::spawn(self.webhooks.clone().run(workers_stopped.clone()));
        let purger = tokio::spawn(run_daily_purge(self.state.clone(), workers_stopped.clone()));
        let anchorer = self.state.ctx.config.proof.tsa_url.clone().map(|url| {
            let tsa = crate::anchor::Tsa::new(url);
            tokio::spawn(run_daily_anchor(self.state.clone(), tsa, self.anchor_schedule, workers_stopped.clone()))
        });
        let forgetter = tokio::spawn(forget_idle_limits(self.state.clone(), workers_stopped));
        let routes = http::routes(self.state.clone());
        tracing::info!(
            address = %self.local_addr(),
            base_url = %self.state.ctx.config.base(),
            lists = self.state.ctx.lists.len(),
            "listgate is serving"
        );
        let limits = serve::Limits::from_config(&self.state.ctx.config.server, serve::fd_limit());
        tracing::info!(
            max_connections = limits.max_connections,
            header_timeout = ?limits.header_timeout,
            idle_timeout = ?limits.idle_timeout,
            body_timeout = ?limits.body_timeout,
            "connection limits"
        );
        let (stop_metrics, metrics_stopped) = watch::channel(false);
        let metrics_server = self.metrics_listener.map(|listener| {
            tracing::info!(address = %listener.local_addr().expect("bound"), "serving /metrics");
            let routes = http::metrics_routes(self.state.clone());
            let mut stopped = metrics_stopped;
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            // One scraper, perhaps two: a handful of connections is plenty.
            let limits = serve::Limits { max_connections: serve::METRICS_CONNECTIONS, ..limits };
            tokio::spawn(serve::serve(listener, warp::service(routes), limits, stop))
        });
        serve::serve(self.listener, warp::service(routes), limits, shutdown).await;
        let _ = stop_metrics.send(true);
        if let Some(server) = metrics_server {
            let _ = server.await;
        }
        tracing::info!("shutting down: finishing mail deliveries in flight");
        let _ = stop_workers.send(true);
        let _ = worker.await;
        let _ = caller.await;
        let _ = purger.await;
        let _ = forgetter.await;
        if let Some(anchorer) = anchorer {
            let _ = anchorer.await;
        }
        let store = self.state.store.clone();
        drop(self.state);
        drop(self.outbox);
        drop(self.webhooks);
        tokio::task::spawn_blocking(move || store.close()).await.ok();
        tracing::info!("stopped");
    }
}

/// Every minute, drop rate-limit entries that have fully refilled, so a
/// flood of distinct IPs cannot grow memory without bound.
async fn forget_idle_limits(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => state.limits.forget_idle(),
            _ = shutdown.changed() => return,
        }
    }
}

/// First purge a minute after start (not at once: a restart loop must not
/// turn into a purge loop), then every 24 hours.
const FIRST_PURGE_AFTER: Duration = Duration::from_secs(60);
const PURGE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The server's own daily purge. Batches go through the store writer like
/// any request, so signups interleave with them instead of waiting. With
/// several nodes on PostgreSQL, one node at a time runs it
/// (`Store::on_one_node`); the others skip that day's run.
async fn run_daily_purge(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let mut delay = FIRST_PURGE_AFTER;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        delay = PURGE_EVERY;
        let started = std::time::Instant::now();
        let purge = purge_once(&state.store, &state.ctx.config.retention, state.clock.now(), &shutdown);
        match state.store.on_one_node(|| purge).await {
            Ok(None) => tracing::info!("daily purge skipped: another node is running it"),
            Ok(Some(report)) => tracing::info!(
                erased = report.total(),
                declines_removed = report.declines_removed,
                held = report.held,
                seconds = started.elapsed().as_secs_f64(),
                "daily purge done"
            ),
            Err(e) => tracing::error!(error = %e, "daily purge failed; retrying tomorrow"),
        }
        log_chain_head(&state).await;
    }
}

/// Walks the proof chain and logs its head, once a day after the purge, so
/// the operator's log archive keeps copies of it outside the database:
/// `listgate verify --head "N HEX"` shows later that the chain still
/// extends each one. Walking (not reading the count and the last link apart)
/// keeps the two consistent while the server appends, and checks the chain.
async fn log_chain_head(state: &AppState) {
    match walk_chain(&state.store, state.ctx.keys.clone()).await {
        Ok(report) => match report.first_break {
            None => {
                tracing::info!(head = %report.head(), "proof chain verified; its head, for `listgate verify --head`")
            }
            Some(b) => tracing::error!(
                event = b.event_id,
                reason = b.reason,
                "proof chain BROKEN: an event does not verify; run `listgate verify`"
            ),
        },
        Err(e) => tracing::warn!(error = %e, "cannot read the proof chain's head; trying again tomorrow"),
    }
}

/// When the server anchors the chain's head at `proof.tsa_url`: first
/// `first` after start, then every `every`; a failed run is tried again
/// after each of `retries` in turn, then left to the next day.
#[derive(Debug, Clone, Copy)]
pub struct AnchorSchedule {
    pub first: Duration,
    pub every: Duration,
    pub retries: &'static [Duration],
}

impl AnchorSchedule {
    /// Two minutes after start (after the first purge and head log), then
    /// daily; retries after 1, 5, 15 and 40 minutes: a TSA down for an hour
    /// costs that day's anchor, not the next one's.
    pub const DAILY: AnchorSchedule = AnchorSchedule {
        first: Duration::from_secs(120),
        every: PURGE_EVERY,
        retries: &[
            Duration::from_secs(60),
            Duration::from_secs(5 * 60),
            Duration::from_secs(15 * 60),
            Duration::from_secs(40 * 60),
        ],
    };
}

/// Waits `delay`; false when shutdown came first.
async fn wait_or_stop(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = shutdown.changed() => false,
    }
}

/// The server's daily anchor, on its own task: the chain's head, if it
/// changed since the newest anchor, is stamped by the TSA
/// (`anchor::anchor_if_changed`). Reads on a reader, one small write
/// through the writer, and the TSA's answer awaited with no transaction
/// open: signups never wait for it. A failure is logged at warn, counted in
/// `/metrics` (`listgate_anchor_failures_total`) and retried on
/// `schedule.retries`. On PostgreSQL one node at a time anchors.
async fn run_daily_anchor(
    state: Arc<AppState>,
    tsa: crate::anchor::Tsa,
    schedule: AnchorSchedule,
    mut shutdown: watch::Receiver<bool>,
) {
    // The gauge survives a restart: it starts at the newest stored anchor.
    if let Ok(Some(newest)) = state.store.read(|db| db.latest_anchor()).await {
        state.metrics.anchor_succeeded(newest.requested_at.to_offset_date_time().unix_timestamp());
    }
    let mut delay = schedule.first;
    loop {
        if !wait_or_stop(delay, &mut shutdown).await {
            return;
        }
        let started = tokio::time::Instant::now();
        for attempt in 0..=schedule.retries.len() {
            // Shutdown does not wait for a slow TSA (up to its 30 s timeout).
            let result = tokio::select! {
                result = anchor_on_one_node(&state, &tsa) => result,
                _ = shutdown.changed() => return,
            };
            if !matches!(result, Err(AnchorFailure { retry: true })) {
                break;
            }
            let Some(wait) = schedule.retries.get(attempt) else {
                tracing::warn!(attempts = attempt + 1, "anchoring failed every time; trying again at the next run");
                break;
            };
            tracing::warn!(attempt = attempt + 1, retry_in = ?wait, "anchoring failed; trying again");
            if !wait_or_stop(*wait, &mut shutdown).await {
                return;
            }
        }
        delay = schedule.every.saturating_sub(started.elapsed());
    }
}

/// A failed anchoring run; `retry` when trying again may help.
struct AnchorFailure {
    retry: bool,
}

/// One anchoring run, logged and counted.
async fn anchor_on_one_node(state: &AppState, tsa: &crate::anchor::Tsa) -> Result<(), AnchorFailure> {
    use crate::anchor::{AnchorError, Anchoring};
    let (store, keys, clock) = (&state.store, state.ctx.keys.clone(), &state.clock);
    let run = || async { Ok(crate::anchor::anchor_if_changed(store, keys, tsa, clock).await) };
    let outcome = match store.on_one_node_with(crate::store::postgres::ANCHOR_LOCK, run).await {
        Ok(None) => {
            tracing::info!("daily anchor skipped: another node is running it");
            return Ok(());
        }
        Ok(Some(outcome)) => outcome,
        Err(e) => Err(AnchorError::Store(e)),
    };
    let now = state.clock.now().unix_timestamp();
    match outcome {
        Ok(Anchoring::Anchored { head, gen_time, serial }) => {
            state.metrics.anchor_succeeded(now);
            tracing::info!(%head, tsa = %tsa.url(), %gen_time, serial, "proof chain head anchored");
            Ok(())
        }
        Ok(Anchoring::Unchanged(head)) => {
            state.metrics.anchor_succeeded(now);
            tracing::info!(%head, "proof chain head unchanged since its last anchor");
            Ok(())
        }
        Ok(Anchoring::EmptyChain) => Ok(()),
        Err(e @ AnchorError::Broken(_)) => {
            state.metrics.anchor_failed();
            tracing::error!(error = %e, "not anchoring: run `listgate verify`");
            Err(AnchorFailure { retry: false })
        }
        Err(e) => {
            state.metrics.anchor_failed();
            tracing::warn!(tsa = %tsa.url(), error = %e, "cannot anchor the proof chain's head");
            Err(AnchorFailure { retry: true })
        }
    }
}

/// The whole chain walked on a reader, as the daily log line reports it.
pub async fn walk_chain(
    store: &Store,
    keys: Arc<crate::keys::KeyRing>,
) -> Result<crate::proof::ChainReport, crate::store::StoreError> {
    store.read(move |c| crate::proof::verify_chain(c, &keys)).await
}

/// One purge through the writer, batch by batch; stops early on shutdown.
pub async fn purge_once(
    store: &Store,
    retention: &crate::config::RetentionConfig,
    now: time::OffsetDateTime,
    shutdown: &watch::Receiver<bool>,
) -> Result<PurgeReport, crate::store::StoreError> {
    let cutoffs = Cutoffs::at(retention, now);
    let mut report = PurgeReport::default();
    loop {
        let batch = store
            .write(move |c| retention::purge_batch(c, &cutoffs, retention::BATCH, retention::SERVER_BATCH_BUDGET))
            .await?;
        report.merge(batch.report);
        if !batch.more || *shutdown.borrow() {
            break;
        }
    }
    // The last write of the purge truncates the WAL after it, so what the
    // batches erased leaves the files too (`Store::write_erasing`).
    (report.declines_removed, report.held) = store
        .write_erasing(move |c| Ok((retention::forget_expired_blocks(c, &cutoffs)?, retention::held(c, &cutoffs)?)))
        .await?;
    Ok(report)
}
