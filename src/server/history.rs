//! The config history routes of SPEC 17 beyond the list (`GET
//! /api/config/history`, in [`api`](super::api)):
//!
//! - `GET /api/config/history/{version}`: the version with every file's
//!   text and a unified diff of each file against the version before;
//! - `GET /api/config/diff?from=&to=`: the files that differ between any two
//!   versions, each with its unified diff;
//! - `POST /api/config/rollback/{version}` (admin): that version's files
//!   written back, all or nothing, checked like any edit, recorded as a new
//!   version with origin `rollback` and the writer as its actor.
//!
//! Self-contained: [`routes`] is merged into the router as one piece.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminAccess, ReadAccess};
use super::error::{ApiError, ApiPath, ApiQuery};
use super::openapi::shapes;
use super::state::{AppState, blocking};
use crate::config::diff::FileDiff;
use crate::engine::history::VersionDetail;

type Reply = Result<Json<Value>, ApiError>;

/// The history routes, each with its operation of the API document.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(version))
        .routes(routes!(diff))
        .routes(routes!(rollback))
}

/// A version number of a path; anything else is a 400 that says so.
fn version_number(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "bad version '{text}': a config version is a whole number, as in GET /api/config/history"
        ))
    })
}

/// `GET /api/config/history/{version}`.
#[utoipa::path(get, path = "/api/config/history/{version}", tag = "config", security((), ("bearer" = [])),
    params(("version" = String, Path, description = "A config version (GET /api/config/history)", example = "1", pattern = "^[0-9]+$")),
    responses((status = 200, description = "The version with every file's text and its diff against the version before", body = shapes::VersionDetail)))]
async fn version(
    State(state): State<Arc<AppState>>,
    _: ReadAccess,
    ApiPath(version): ApiPath<String>,
) -> Reply {
    let version = version_number(&version)?;
    let engine = state.engine.clone();
    let detail = blocking(move || Ok(engine.config_history()?.version(version)?)).await?;
    Ok(Json(version_json(&detail)))
}

/// The JSON of one version: the row of the list, the version before, every
/// file with its text and its diff (null when unchanged), and every
/// difference (removed files too).
pub fn version_json(d: &VersionDetail) -> Value {
    let e = &d.entry;
    let files = d.files.as_ref().map(|files| {
        files
            .iter()
            .map(|(path, content)| {
                let diff = d
                    .diffs
                    .iter()
                    .flatten()
                    .find(|f| &f.path == path)
                    .map(|f| f.diff.as_str());
                json!({"path": path, "content": content, "diff": diff})
            })
            .collect::<Vec<_>>()
    });
    json!({
        "version": e.version,
        "applied_at": e.applied_at,
        "origin": e.origin,
        "actor": e.actor,
        "files_changed": e.files_changed,
        "content_hash": e.content_hash,
        "previous": d.previous,
        "files": files,
        "diffs": d.diffs.as_deref().map(diffs_json),
    })
}

fn diffs_json(diffs: &[FileDiff]) -> Vec<Value> {
    diffs
        .iter()
        .map(|f| json!({"path": f.path, "change": f.change.as_str(), "diff": f.diff}))
        .collect()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    /// A config version.
    #[param(example = "1", pattern = "^[0-9]+$")]
    from: String,
    /// Another config version (either may be the older).
    #[param(example = "1", pattern = "^[0-9]+$")]
    to: String,
}

/// `GET /api/config/diff?from=&to=`: `from` → `to` (either may be the older).
#[utoipa::path(get, path = "/api/config/diff", tag = "config", security((), ("bearer" = [])), params(DiffQuery),
    responses((status = 200, description = "The files that differ, each with its unified diff, and one patch", body = shapes::ConfigDiff)))]
async fn diff(
    State(state): State<Arc<AppState>>,
    _: ReadAccess,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> Reply {
    let (from, to) = (version_number(&q.from)?, version_number(&q.to)?);
    let engine = state.engine.clone();
    let d = blocking(move || Ok(engine.config_history()?.diff(from, to)?)).await?;
    let patch: String = d.diffs.iter().map(|f| f.diff.as_str()).collect();
    Ok(Json(json!({
        "from": d.from,
        "to": d.to,
        "files_changed": d.diffs.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        "diffs": diffs_json(&d.diffs),
        "patch": patch,
    })))
}

/// `POST /api/config/rollback/{version}` (admin).
#[utoipa::path(post, path = "/api/config/rollback/{version}", tag = "config", security(("bearer" = [])),
    params(("version" = String, Path, description = "A config version (GET /api/config/history)", example = "1", pattern = "^[0-9]+$")),
    responses((status = 200, description = "The version's files written back, as a new version with origin rollback", body = shapes::RolledBack)))]
async fn rollback(
    State(state): State<Arc<AppState>>,
    AdminAccess(actor): AdminAccess,
    ApiPath(version): ApiPath<String>,
) -> Reply {
    let target = version_number(&version)?;
    let applied = state.rollback(target, actor).await?;
    Ok(Json(json!({
        "status": "ok",
        "rolled_back_to": target,
        "config_version": applied.version,
        "changed": applied.changed,
        "files_changed": applied.files_changed,
    })))
}
