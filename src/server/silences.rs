//! The silences routes of SPEC 18: `GET /api/silences` lists the silences
//! of alerts.toml and of the database, `POST /api/silences` (admin) adds one
//! to the database, `DELETE /api/silences/{id}` (admin) removes it.
//!
//! Self-contained: [`routes`] is merged into the router as one piece.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminAccess, ReadAccess};
use super::error::{ApiError, ApiPath, JsonBody};
use super::state::{AppState, blocking};
use crate::alerts::silence::{self, SilenceSpec, SilenceView};
use crate::diag::hint;

type Reply = Result<Json<Value>, ApiError>;

/// The silences routes, to merge into the server's router (and its API document).
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(remove))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `GET /api/silences`: every silence, those of alerts.toml first.
#[utoipa::path(get, path = "/api/silences", tag = "alerts", security((), ("bearer" = [])),
    responses((status = 200, description = "Every silence, those of alerts.toml first", body = Vec<SilenceView>)))]
async fn list(State(state): State<Arc<AppState>>, _: ReadAccess) -> Reply {
    let served = state.served();
    let engine = state.engine.clone();
    let views = blocking(move || {
        let conn = engine.engine_conn()?;
        let stored = silence::stored(&conn.db()).map_err(ApiError::internal)?;
        let cal = &served.config.settings.calendar;
        let t = now();
        Ok(served
            .config
            .alerts
            .silences
            .iter()
            .chain(&stored)
            .map(|s| SilenceView::new(s, t, cal))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(
        serde_json::to_value(views).map_err(ApiError::internal)?,
    ))
}

/// `POST /api/silences` (admin): `{kpis?, teams?, from?, until, weekly?, comment?}`.
#[utoipa::path(post, path = "/api/silences", tag = "alerts", security(("bearer" = [])),
    request_body = SilenceSpec,
    responses((status = 200, description = "The silence added", body = SilenceView)))]
async fn add(
    State(state): State<Arc<AppState>>,
    AdminAccess(actor): AdminAccess,
    JsonBody(spec): JsonBody<SilenceSpec>,
) -> Reply {
    let served = state.served();
    let cfg = &served.config;
    for k in spec.kpis.iter().flatten() {
        if cfg.kpi(k).is_none() {
            let ids = cfg.kpis.iter().map(|k| k.def.id.as_str());
            return Err(ApiError::bad_request(format!(
                "kpis: unknown KPI '{k}'{}",
                hint(k, ids)
            )));
        }
    }
    let teams = served.records.store.teams().map_err(ApiError::internal)?;
    for t in spec.teams.iter().flatten() {
        if teams.index(t).is_none() {
            let ids = teams.ids.iter().map(String::as_str);
            return Err(ApiError::bad_request(format!(
                "teams: unknown team '{t}'{}",
                hint(t, ids)
            )));
        }
    }
    let spec = SilenceSpec {
        from: spec
            .from
            .clone()
            .or_else(|| Some(crate::period::format_utc(now()))),
        ..spec
    };
    let built = silence::Silence {
        created_by: Some(actor.clone()),
        ..silence::build(&cfg.settings.calendar, &spec, String::new())
            .map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    let engine = state.engine.clone();
    let served2 = served.clone();
    let view = blocking(move || {
        let conn = engine.engine_conn()?;
        let s = silence::add(&conn.db(), &built, now()).map_err(ApiError::internal)?;
        Ok(SilenceView::new(
            &s,
            now(),
            &served2.config.settings.calendar,
        ))
    })
    .await?;
    tracing::info!("silence {} added by {actor}", view.id);
    Ok(Json(
        serde_json::to_value(view).map_err(ApiError::internal)?,
    ))
}

/// `DELETE /api/silences/{id}` (admin): removes a silence of the database.
#[utoipa::path(delete, path = "/api/silences/{id}", tag = "alerts", security(("bearer" = [])),
    params(("id" = String, Path, description = "Silence id (those of the database are numbers)")),
    responses((status = 200, description = "Removed", body = crate::server::openapi::shapes::Removed)))]
async fn remove(
    State(state): State<Arc<AppState>>,
    AdminAccess(actor): AdminAccess,
    ApiPath(id): ApiPath<String>,
) -> Reply {
    let Ok(n) = id.parse::<i64>() else {
        let in_file = state
            .served()
            .config
            .alerts
            .silences
            .iter()
            .any(|s| s.id == id);
        return Err(if in_file {
            ApiError::bad_request(format!(
                "silence {id} is written in kpis/alerts.toml: remove it there"
            ))
        } else {
            ApiError::not_found(format!("no silence {id}"))
        });
    };
    let engine = state.engine.clone();
    let removed = blocking(move || {
        let conn = engine.engine_conn()?;
        silence::remove(&conn.db(), n).map_err(ApiError::internal)
    })
    .await?;
    if removed {
        tracing::info!("silence {id} removed by {actor}");
        Ok(Json(json!({"status": "ok", "removed": id})))
    } else {
        Err(ApiError::not_found(format!("no silence {id}")))
    }
}
