//! The face-recognition and style service: a REST API under `/v1` (OpenAPI document at
//! `/v1/openapi.json`), a web page at `/`, galleries and jobs in a folder (one worker) or in
//! PostgreSQL (many workers following each other's changes).
//!
//! Layers: [`api`] (HTTP: extractors, JSON, status codes) calls [`engine`] (model work on
//! rayon's pool) and [`store`] (files or PostgreSQL); [`live`] keeps each served gallery's
//! search index in memory; [`jobs`] runs queued style transfers under a lease.

pub mod api;
pub mod auth;
pub mod engine;
pub mod error;
pub mod jobs;
pub mod live;
pub mod metrics;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use engine::Engine;
use store::Store;

/// How a server runs.
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// This worker's name (jobs record who holds them).
    pub worker: String,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The longest a request may take before a 503.
    pub request_timeout: Duration,
    /// How long a claimed job stays this worker's without a heartbeat.
    pub job_lease: Duration,
    /// How many jobs this worker runs at once (0: it serves requests only).
    pub job_slots: usize,
}

/// Everything a request handler can reach.
pub struct AppState {
    /// The settings.
    pub config: Config,
    /// The models.
    pub engine: Engine,
    /// Where data lives.
    pub store: Store,
    /// Galleries in memory.
    pub live: live::LiveGalleries,
    /// Request counts and latencies.
    pub metrics: metrics::Metrics,
    /// Wakes the job runner when a job is queued here or announced by another worker.
    pub job_wakeup: tokio::sync::Notify,
}

/// Shared state.
pub type State = Arc<AppState>;

impl AppState {
    /// A server's state.
    pub fn new(config: Config, engine: Engine, store: Store) -> State {
        Arc::new(AppState {
            config,
            engine,
            store,
            live: live::LiveGalleries::default(),
            metrics: metrics::Metrics::default(),
            job_wakeup: tokio::sync::Notify::new(),
        })
    }
}

/// Serves until the process is stopped (Ctrl-C or SIGTERM end it gracefully: requests in
/// flight finish; a running job is left to its lease, so another worker takes it over).
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(state: State) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
    let addr = listener.local_addr()?;
    error::log(&format!(
        "worker {} serving http://{addr}/ (store: {}, API under /v1, OpenAPI at /v1/openapi.json)",
        state.config.worker,
        state.store.kind()
    ));
    if let Store::Postgres(pg) = &state.store {
        live::follow(state.clone(), pg.listen());
    }
    for _ in 0..state.config.job_slots {
        tokio::spawn(jobs::run(state.clone()));
    }
    let app = api::router(state.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    error::log("stopping: finishing the requests in flight");
}
