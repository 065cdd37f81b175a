//! `gateway serve`: reads the configuration, opens the database, builds each model's backend
//! (`backends.rs`), and runs the HTTP server until SIGTERM or Ctrl-C, then drains in-flight
//! requests. Background tasks write the audit events of keys that expired, move usage records
//! from the journal into the database, reload the projects' rate limit overrides, remove
//! personal data past its retention period (`retention.rs`) and check that the database takes
//! writes (for `/readyz`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gateway_api::{AppState, ConnectionLimits, Limits, ModelRegistry, ServedModel};
use gateway_auth::{Management, Store};

use crate::backends::BackendFactory;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::metering::Metering;

/// How often expired keys are looked for, to write their `token.expire` audit events.
const EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Runs the server with the configuration that `args` and the environment select, on an
/// async runtime of `runtime.async_threads` workers.
pub fn main(args: &ServeArgs) -> anyhow::Result<()> {
    let config = effective_config(args)?;
    let workers = config.runtime.async_threads();
    tracing::info!(
        async_threads = workers,
        intra_threads = config.runtime.intra_threads(),
        "threads"
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(run(config))
}

/// Runs the server with `config`.
async fn run(config: Config) -> anyhow::Result<()> {
    let store = crate::store::open(&config).await?;
    tracing::info!("database opened");
    let write_check = config.database.write_check()?;
    let sweeper = tokio::spawn(sweep_expired_keys(Management::new(Arc::clone(&store))));
    let retention = crate::retention::start(Arc::clone(&store), &config)?;
    let fairness = config.server.fairness()?;
    let models = load_models(&config).await?;
    let limits = Limits {
        max_body_bytes: config.server.max_body_bytes,
        request_timeout_secs: config.server.request_timeout_secs,
        body_read_timeout_secs: config.server.body_read_timeout_secs,
        failed_authentications_per_minute: config
            .server
            .failed_management_authentications_per_minute,
        unknown_fields: config.server.unknown_request_fields,
    };
    let connections = ConnectionLimits {
        header_read_timeout: Duration::from_secs(config.server.header_read_timeout_secs),
        max_connections: config.server.max_connections,
    };
    let plans: Vec<_> = models.iter().map(|(_, model)| model.entry.plan).collect();
    let metering = Metering::start(&config, &plans).await?;
    let state = Arc::new(
        AppState::new(
            models,
            limits,
            Arc::clone(&store),
            Arc::clone(&metering.accounting),
        )
        .with_fairness(fairness)
        .with_database_outage_grace(Duration::from_secs(config.database.outage_grace_secs)),
    );
    let checker = tokio::spawn(check_database_writes(
        store,
        Arc::clone(&state),
        write_check,
    ));
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "listening on http://{address}");
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let drain_delay = Duration::from_secs(config.server.drain_delay_secs);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let draining = Arc::clone(&state);
    let shutdown = async move {
        shutdown_signal().await;
        draining.start_draining();
        if !drain_delay.is_zero() {
            tracing::info!(
                seconds = drain_delay.as_secs(),
                "shutting down: not ready, still serving while load balancers notice"
            );
            tokio::time::sleep(drain_delay).await;
        }
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
    };
    let server = gateway_api::serve(listener, gateway_api::router(state), connections, shutdown);
    tokio::select! {
        result = server => result.context("server failed")?,
        () = grace_expired(stop_rx, grace) => {
            tracing::warn!(seconds = grace.as_secs(), "grace period over, stopping with requests in flight");
        }
    }
    sweeper.abort();
    retention.abort();
    checker.abort();
    metering.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// Writes the audit events of expired keys every [`EXPIRY_SWEEP_INTERVAL`].
async fn sweep_expired_keys(management: Management) {
    let mut interval = tokio::time::interval(EXPIRY_SWEEP_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match management.sweep_expired().await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "recorded key expirations"),
            Err(error) => tracing::warn!(%error, "could not record key expirations"),
        }
    }
}

/// Checks every `interval` that the database takes a write and records the result for
/// `/readyz`. A check still waiting after `timeout` (on a lock, an unreachable server) counts
/// as failed at once and is awaited to its end, so that checks never pile up.
async fn check_database_writes(
    store: Arc<dyn Store>,
    state: Arc<AppState>,
    (interval, timeout): (Duration, Duration),
) {
    let mut interval = tokio::time::interval(interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let check = store.check_writable();
        tokio::pin!(check);
        let result = match tokio::time::timeout(timeout, &mut check).await {
            Ok(result) => result,
            Err(_) => {
                let waited = format!("no write within {} s", timeout.as_secs());
                record_writable(&state, Some(waited));
                check.await
            }
        };
        record_writable(&state, result.err().map(|error| error.to_string()));
    }
}

/// Records the result of a write check (`failure`: why it failed) and logs each change.
fn record_writable(state: &AppState, failure: Option<String>) {
    let was_writable = state.set_database_writable(failure.is_none());
    match failure {
        Some(error) if was_writable => {
            tracing::error!(
                %error,
                "the database takes no writes: usage records wait in the journal, not ready once \
                 the outage grace is over"
            );
        }
        None if !was_writable => tracing::info!("the database takes writes again"),
        _ => {}
    }
}

/// The configuration file (or defaults) with the environment and command-line overrides.
fn effective_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = Config::load_with_env(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    Ok(config)
}

/// Builds every configured model's backend, under the id clients send, after checking the
/// whole catalog; a model retired at start keeps only its catalog entry. The catalog shows
/// the context length as served (`max_context`), which the backend's card reports.
async fn load_models(config: &Config) -> anyhow::Result<ModelRegistry> {
    let now = chrono::Utc::now();
    let planned = crate::catalog::plan_models(config, now)?;
    let mut registry = ModelRegistry::default();
    let mut factory = BackendFactory::new(config);
    for model in planned {
        let id = model.entry.id.clone();
        if model.retired {
            tracing::info!(model = %id, "model retired: its requests go to its successor");
            registry.insert_retired(model.entry);
            continue;
        }
        let backend = factory.build(model.config).await?;
        let mut entry = model.entry;
        entry.context_length = backend.card().context_length;
        let kind = model.config.kind;
        tracing::info!(model = %id, ?kind, plan = ?entry.plan, "model loaded");
        registry.insert(id, ServedModel::new(backend, entry, now.timestamp()));
    }
    Ok(registry)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Resolves `grace` after shutdown began; never before.
async fn grace_expired(mut stop: tokio::sync::watch::Receiver<bool>, grace: Duration) {
    if stop.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(grace).await;
}
