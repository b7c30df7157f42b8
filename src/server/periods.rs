//! Closed assessments over HTTP (SPEC 16): the frozen periods, closing and
//! reopening one (admin), its restatement, and the automatic close the
//! upkeep runs (see `engine::freeze` for the rules).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::flag;
use super::auth::{AdminAccess, ReadAccess};
use super::error::{ApiError, ApiPath, ApiQuery};
use super::openapi::shapes;
use super::state::{AppState, blocking};
use crate::engine::{EngineError, How};
use crate::period::{PeriodId, format_utc};

type Reply = Result<Json<Value>, ApiError>;

/// The routes of this module, each with its operation of the API document.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(close))
        .routes(routes!(reopen))
        .routes(routes!(restatement))
}

fn period(id: &str) -> Result<PeriodId, ApiError> {
    id.trim()
        .parse()
        .map_err(|e| EngineError::bad_input("period", e).into())
}

/// `GET /api/periods`: the frozen periods and those reopened by hand.
#[utoipa::path(get, path = "/api/periods", tag = "periods", security((), ("bearer" = [])),
    responses((status = 200, description = "The closing settings, the frozen periods and those reopened by hand", body = shapes::Periods)))]
async fn list(State(state): State<Arc<AppState>>, _: ReadAccess) -> Json<Value> {
    let served = state.served();
    let frozen: Vec<Value> = served
        .frozen
        .periods
        .values()
        .map(|f| {
            json!({
                "period": f.period.to_string(),
                "frozen_at": format_utc(f.mark.frozen_at),
                "as_of": format_utc(f.as_of),
                "config_version": f.mark.config_version,
                "content_hash": f.mark.content_hash,
                "data_generation": f.mark.data_generation,
                "how": f.how,
                "scorecards": f.reports.iter().filter_map(|r| r.scorecard.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let reopened: Vec<Value> = served
        .frozen
        .reopened
        .iter()
        .map(|(p, at)| json!({"period": p.to_string(), "reopened_at": format_utc(*at)}))
        .collect();
    let s = &served.config.settings;
    Json(json!({
        "close_after_seconds": s.close_after.as_secs(),
        "freeze_grains": s.freeze_grains.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "frozen": frozen,
        "reopened": reopened,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CloseQuery {
    /// `true`: close a period that has not ended yet.
    #[param(pattern = "^(true|false|1|0)?$")]
    force: Option<String>,
}

/// `POST /api/periods/{id}/close?force=true`: freezes the period now.
#[utoipa::path(post, path = "/api/periods/{id}/close", tag = "periods", security(("bearer" = [])),
    params(("id" = String, Path, description = "Period id of a frozen grain", example = "2026-Q3", pattern = "^[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$"), CloseQuery),
    responses((status = 200, description = "What was frozen", body = crate::engine::Closed)))]
async fn close(
    State(state): State<Arc<AppState>>,
    _: AdminAccess,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<CloseQuery>,
) -> Reply {
    let p = period(&id)?;
    let force = flag("force", q.force.as_deref())?;
    let engine = state.engine.clone();
    let closed =
        blocking(move || Ok(engine.close(p, force, How::Close, crate::engine::now())?)).await?;
    tracing::info!(
        "froze {} ({}) through the API: {} values in {} ms",
        closed.period,
        closed.how,
        closed.values,
        closed.millis
    );
    let mut out = json!(closed);
    out["status"] = json!("ok");
    Ok(Json(out))
}

/// `POST /api/periods/{id}/reopen`: drops the freeze (recorded in the config history).
#[utoipa::path(post, path = "/api/periods/{id}/reopen", tag = "periods", security(("bearer" = [])),
    params(("id" = String, Path, description = "A frozen period", example = "2026-Q3", pattern = "^[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$")),
    responses((status = 200, description = "Live again; the config history version that records it", body = shapes::Reopened)))]
async fn reopen(
    State(state): State<Arc<AppState>>,
    AdminAccess(actor): AdminAccess,
    ApiPath(id): ApiPath<String>,
) -> Reply {
    let p = period(&id)?;
    let engine = state.engine.clone();
    let by = actor.clone();
    let version = blocking(move || Ok(engine.reopen(p, &by)?)).await?;
    tracing::info!("{actor} reopened {p} through the API: config version {version}");
    Ok(Json(json!({
        "status": "ok",
        "period": p.to_string(),
        "config_version": version,
    })))
}

/// `GET /api/periods/{id}/restatement`: every value whose live result differs from the frozen one.
#[utoipa::path(get, path = "/api/periods/{id}/restatement", tag = "periods", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "A frozen period", example = "2026-Q3", pattern = "^[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$")),
    responses((status = 200, description = "Every value whose live result differs from the frozen one, with both", body = crate::engine::Restatement)))]
async fn restatement(
    State(state): State<Arc<AppState>>,
    _: ReadAccess,
    ApiPath(id): ApiPath<String>,
) -> Reply {
    let p = period(&id)?;
    let served = state.served();
    served.frozen_period(p)?;
    let r = blocking(move || Ok(served.restatement(p, crate::engine::now())?)).await?;
    Ok(Json(json!(r)))
}

/// After a failed automatic close, or one that found no records to assess,
/// the next try waits this long.
const RETRY_CLOSE: Duration = Duration::from_secs(60);

/// The automatic close, one upkeep tick: freezes what is due (cheap when
/// nothing is). `wait_from` holds the instant of the last try that did not close.
pub async fn auto_close(state: &Arc<AppState>, wait_from: &mut Option<Instant>) {
    let now = crate::engine::now();
    if wait_from.is_some_and(|t| t.elapsed() < RETRY_CLOSE) || !state.engine.closing_due(now) {
        return;
    }
    let engine = state.engine.clone();
    match blocking(move || Ok(engine.auto_close(now)?)).await {
        Ok(None) => {
            tracing::info!("a period is due to close, but the database holds no records yet");
            *wait_from = Some(Instant::now());
        }
        Ok(Some(closed)) => {
            *wait_from = None;
            for c in closed {
                tracing::info!(
                    "closed {} automatically (its end + close_after passed): {} values frozen in {} ms",
                    c.period,
                    c.values,
                    c.millis
                );
            }
        }
        Err(e) => {
            *wait_from = Some(Instant::now());
            tracing::warn!("cannot close a period automatically (tried again in a minute): {e}");
        }
    }
}
