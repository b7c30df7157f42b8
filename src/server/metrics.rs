//! `GET /metrics` (SPEC 21) and the HTTP metrics of every request.
//!
//! The counters and histograms live in [`crate::metrics`]; a scrape first sets
//! the gauges of state kept elsewhere from their sources (the served version,
//! the health of the last reload, record counts, alerts, the outbox), then
//! renders the whole registry. [`track`] is the middleware that counts each
//! request under its route template (`/api/scorecards/{id}`, never the raw
//! path, so ids do not explode the label set).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::ReadAccess;
use super::error::ApiError;
use super::state::{AppState, blocking};
use crate::alerts::{AlertState, Kind};
use crate::metrics::Metrics;

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`
#[utoipa::path(get, path = "/metrics", tag = "meta", security((), ("bearer" = [])),
    responses((status = 200, description = "Prometheus text exposition (SPEC 21)",
        content_type = "text/plain", body = String)))]
pub async fn scrape(
    State(state): State<Arc<AppState>>,
    _: ReadAccess,
) -> Result<Response, ApiError> {
    let st = state.clone();
    let text = blocking(move || {
        let m = crate::metrics::get();
        observe(&st, m)?;
        Ok(m.render())
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response())
}

/// Sets the gauges whose truth lives in the engine and the database.
fn observe(state: &AppState, m: &Metrics) -> Result<(), ApiError> {
    let served = state.served();
    m.config_version.set(served.version as i64);
    m.reload_successful
        .set(i64::from(state.health().errors.is_empty()));
    m.records.reset();
    for (entity, n) in state.engine.record_counts()? {
        m.records.with_label_values(&[&entity]).set(n as f64);
    }
    let conn = state.engine.engine_conn()?;
    let alerts = crate::alerts::list(&conn, Some("all")).map_err(ApiError::internal)?;
    m.alerts.reset();
    for s in [AlertState::Firing, AlertState::Resolved] {
        for k in [Kind::AtRisk, Kind::Missed] {
            let n = alerts
                .iter()
                .filter(|a| a.alert.state == s && a.alert.kind == k)
                .count();
            m.alerts
                .with_label_values(&[s.as_str(), k.as_str()])
                .set(n as f64);
        }
    }
    m.outbox_pending.reset();
    for w in &served.config.alerts.webhooks {
        m.outbox_pending
            .with_label_values(&[webhook_label(&w.name)])
            .set(0.0);
    }
    let pending = crate::alerts::outbox::pending_by_webhook(&conn).map_err(ApiError::internal)?;
    for (webhook, n) in pending {
        m.outbox_pending
            .with_label_values(&[webhook_label(&webhook)])
            .set(n as f64);
    }
    Ok(())
}

/// A webhook without a name is "webhook", as in the delivery log.
fn webhook_label(name: &str) -> &str {
    if name.is_empty() { "webhook" } else { name }
}

/// Counts and times every request under its route template; requests no
/// route matched count as `unmatched`.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(req).await;
    let m = crate::metrics::get();
    m.http_request_seconds
        .observe(started.elapsed().as_secs_f64());
    m.http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}
