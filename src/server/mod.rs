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
pub mod metrics;
pub mod openapi;
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
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::Tokens;
use error::{ApiError, MAX_BODY_BYTES};
pub use state::{AppState, ServeOptions};

/// Every route of the API document: `/health`, `/metrics` and `/api/*`.
///
/// One `.routes(routes!(handler, …))` per path (the handlers of one path's
/// methods together), each handler annotated with `#[utoipa::path]`: this
/// registers the route and adds its operation to `GET /api/openapi.json` at
/// once. A module with several routes returns an `OpenApiRouter` of its own
/// and is merged (see `silences::routes`). HTML pages are not part of the
/// document: they go on the plain router of [`app`].
pub fn api_routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(api::health))
        .routes(routes!(metrics::scrape))
        .routes(routes!(openapi::openapi))
        .routes(routes!(api::kpis))
        .routes(routes!(api::kpi, admin::put_kpi))
        .routes(routes!(api::scorecards))
        .routes(routes!(api::scorecard))
        .routes(routes!(admin::put_weights))
        .routes(routes!(admin::put_target))
        .routes(routes!(api::preview))
        .routes(routes!(api::values))
        .routes(routes!(api::alerts))
        .routes(routes!(admin::post_records))
        .routes(routes!(admin::reload))
        .routes(routes!(api::history))
        .merge(silences::routes())
        .merge(periods::routes())
        .merge(history::routes())
}

/// The routes of SPEC 12 over `state`: the API and the dashboard's pages.
pub fn app(state: Arc<AppState>) -> Router {
    let (api, _document) = api_routes().split_for_parts();
    Router::new()
        .route("/", get(dashboard::page))
        .merge(api)
        // SPEC 19: the dashboard's pages, and HTML error pages for browsers.
        .merge(dashboard::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(dashboard::html_errors))
        .layer(axum::middleware::from_fn(dashboard::server_timing))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(metrics::track))
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
