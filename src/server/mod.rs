//! The admin server, `kpi serve`: the HTTP API and dashboard of SPEC 12 over
//! a hot-reloaded configuration (SPEC 10).
//!
//! - [`state`] holds the [`Engine`](crate::engine::Engine) (what is served,
//!   and the only ways it changes: reload, API edit, ingest), the health of
//!   the last reload, and the alert scheduler.
//! - [`reload`] watches kpis/ and scripts/ and reloads after each burst;
//!   [`upkeep`] serves records other processes wrote, retries a reload that
//!   failed on the database, and releases settled configurations to alerts.
//! - [`periods`] closes, reopens and restates periods (SPEC 16), and runs
//!   the automatic close for [`upkeep`].
//! - [`api`] (reads) and [`admin`] (writes) are the routes; [`cache`] keeps
//!   the scorecard evaluations behind them; [`dashboard`] is the page at `/`.
//! - [`listen`] accepts connections: header and idle timeouts, a cap, graceful shutdown.
//! - [`auth`] and [`error`] are the edges: tokens, and JSON errors for every
//!   kind of bad input.
//!
//! Architecture Invariant: no lock is held across an await, except the
//! writer lock that queues changes; reads never wait for a reload or ingest.
//! Architecture Invariant: SQLite work and evaluations run on blocking threads.

pub mod admin;
pub mod api;
pub mod auth;
pub mod cache;
pub mod dashboard;
pub mod error;
pub mod history;
pub mod listen;
pub mod periods;
pub mod reload;
pub mod silences;
pub mod state;
pub mod upkeep;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tower_http::catch_panic::CatchPanicLayer;

pub use auth::Tokens;
use error::{ApiError, MAX_BODY_BYTES};
pub use state::{AppState, ServeOptions};

/// The routes of SPEC 12 over `state`.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/health", get(api::health))
        .route("/api/kpis", get(api::kpis))
        .route("/api/kpis/{id}", get(api::kpi).put(admin::put_kpi))
        .route("/api/scorecards", get(api::scorecards))
        .route("/api/scorecards/{id}", get(api::scorecard))
        .route(
            "/api/scorecards/{id}/weights/{key}",
            put(admin::put_weights),
        )
        .route("/api/targets/{kpi}", put(admin::put_target))
        .route("/api/preview", post(api::preview))
        .route("/api/values", get(api::values))
        .route("/api/alerts", get(api::alerts))
        .route("/api/records/{entity}", post(admin::post_records))
        .route("/api/reload", post(admin::reload))
        .route("/api/config/history", get(api::history))
        .merge(silences::routes())
        .merge(periods::routes())
        .merge(history::routes())
        // SPEC 19: the dashboard's pages, and HTML error pages for browsers.
        .merge(dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(dashboard::html_errors))
        .layer(axum::middleware::from_fn(dashboard::server_timing))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {method} {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

fn panicked(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = crate::diag::panic_message(&*payload);
    ApiError::internal(format!("a request panicked: {message}")).into_response()
}

/// Why `kpi serve` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Start(#[from] crate::engine::EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot watch kpis/ and scripts/: {0}")]
    Watch(#[from] notify::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Tokens(#[from] auth::TokenError),
}

/// Runs the server until SIGTERM or Ctrl-C, then finishes the requests in flight.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let tokens = Tokens::from_env()?;
    if tokens.writes_enabled() {
        tracing::info!("writers: {}", tokens.writer_names().join(", "));
    } else {
        tracing::warn!(
            "neither KPI_ADMIN_TOKEN nor KPI_ADMIN_TOKENS is set: every write is refused (403)"
        );
    }
    let o = opts.clone();
    let state = tokio::task::spawn_blocking(move || AppState::open(&o, tokens))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
    let state = Arc::new(state);
    let listener = tokio::net::TcpListener::bind(&opts.addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: opts.addr.clone(),
            source,
        })?;
    let watcher = reload::spawn(state.clone())?;
    let upkeep = upkeep::spawn(state.clone());
    let served_now = {
        let st = state.clone();
        move || {
            let s = st.alert_view();
            (s.config.clone(), s.records.clone())
        }
    };
    let _ = state.alerts.set(crate::alerts::Scheduler::spawn(
        state.engine.db_path().to_path_buf(),
        served_now,
    ));
    let addr = listener.local_addr()?;
    // The one line on stdout: scripts and tests read the address from it.
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "kpi serve: listening on http://{addr}");
        let _ = out.flush();
    }
    tracing::info!("listening on http://{addr}");
    listen::run(listener, app(state.clone()), opts.limits, shutdown_signal()).await?;
    watcher.abort();
    upkeep.abort();
    if let Some(scheduler) = state.alerts.get() {
        scheduler.stop();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}
