//! The write side of the HTTP API: edits of KPIs, weights and targets (each
//! checked as a whole candidate configuration before anything is written),
//! record ingest and reload. Every route here needs an admin token, and
//! what it changes is recorded (history) or logged with the writer's name.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::Ordered;
use super::auth::AdminAccess;
use super::error::{ApiError, ApiPath, ApiQuery, Body, JsonBody};
use super::openapi::shapes;
use super::state::{AppState, Records, blocking};
use crate::config::edit::{self, Bound, TargetOf, TargetSpec};
use crate::config::targets::valid_period_key;
use crate::engine::Applied;
use crate::store::schema::is_identifier;

type Reply = Result<Json<Value>, ApiError>;

fn applied_json(path: &str, a: &Applied) -> Value {
    json!({
        "status": "ok",
        "file": path,
        "config_version": a.version,
        "changed": a.changed,
        "files_changed": a.files_changed,
    })
}

/// `PUT /api/kpis/{id}`: body = the TOML of that one KPI table.
#[utoipa::path(put, path = "/api/kpis/{id}", tag = "kpis", security(("bearer" = [])),
    params(("id" = String, Path, description = "KPI id (a new id adds a KPI)", example = "win_rate")),
    request_body(content = String, content_type = "text/plain",
        description = "The TOML of that one KPI table, e.g. `[kpi.win_rate]` …"),
    responses((status = 200, description = "Checked, written and applied", body = shapes::Applied)))]
pub async fn put_kpi(
    State(state): State<Arc<AppState>>,
    AdminAccess(actor): AdminAccess,
    ApiPath(id): ApiPath<String>,
    Body(body): Body,
) -> Reply {
    if !is_identifier(&id) {
        return Err(ApiError::bad_request(format!(
            "KPI id '{id}' must be a lowercase identifier (a-z, 0-9, _)"
        )));
    }
    let body = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    let (path, applied) = state
        .edit_config(actor, move |files| {
            let path = edit::kpi_file(files, &id);
            let text = files.get(&path).cloned().unwrap_or_default();
            let out = edit::put_kpi(&path, &text, &id, &body)?;
            Ok((path, out))
        })
        .await?;
    Ok(Json(applied_json(&path, &applied)))
}

/// `PUT /api/scorecards/{id}/weights/{key}`: body `{"kpi": weight, …}`.
#[utoipa::path(put, path = "/api/scorecards/{id}/weights/{key}", tag = "scorecards", security(("bearer" = [])),
    params(("id" = String, Path, description = "Scorecard id", example = "sales"),
        ("key" = String, Path, description = "default, Q1..Q4, 01..12 or a period id", example = "Q4", pattern = "^(default|Q[1-4]|0[1-9]|1[0-2]|[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?)$")),
    request_body(content = Ordered, description = "KPI → weight (0 to 1,000,000), in order"),
    responses((status = 200, description = "Checked, written and applied", body = shapes::Applied)))]
pub async fn put_weights(
    State(state): State<Arc<AppState>>,
    AdminAccess(actor): AdminAccess,
    ApiPath((card, key)): ApiPath<(String, String)>,
    JsonBody(weights): JsonBody<Ordered>,
) -> Reply {
    state.served().scorecard(&card)?;
    if !valid_period_key(&key) {
        return Err(ApiError::bad_request(format!(
            "bad weight set key '{key}': use default, Q1..Q4, 01..12 or a period id such as 2026-Q4"
        )));
    }
    let weights = weights.numbers("weight")?;
    if weights.is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty: expected {\"kpi\": weight, …}",
        ));
    }
    let (path, applied) = state
        .edit_config(actor, move |files| {
            let text = files
                .get(edit::SCORECARDS_FILE)
                .cloned()
                .unwrap_or_default();
            let out = edit::put_weights(&text, &card, &key, &weights)?;
            Ok((edit::SCORECARDS_FILE.to_string(), out))
        })
        .await?;
    Ok(Json(applied_json(&path, &applied)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetBody {
    #[serde(default)]
    pub team: Option<String>,
    /// A person's target instead of a team's (SPEC 14).
    #[serde(default)]
    pub owner: Option<String>,
    #[schema(
        example = "Q4",
        pattern = "^(default|Q[1-4]|0[1-9]|1[0-2]|[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?)$"
    )]
    pub key: String,
    #[schema(example = 0.3)]
    pub target: f64,
    /// Absent: kept as it is; null: removed (SPEC 17).
    #[serde(default, deserialize_with = "present")]
    pub threshold: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    pub stretch: Option<Option<f64>>,
}

/// A field that is present, null or not: Some(value).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// `PUT /api/targets/{kpi}`: body `{"team", "key", "target", "threshold"?, "stretch"?}`.
#[utoipa::path(put, path = "/api/targets/{kpi}", tag = "targets", security(("bearer" = [])),
    params(("kpi" = String, Path, description = "KPI id", example = "win_rate")), request_body = TargetBody,
    responses((status = 200, description = "Checked, written and applied", body = shapes::Applied)))]
pub async fn put_target(
    State(state): State<Arc<AppState>>,
    AdminAccess(actor): AdminAccess,
    ApiPath(kpi): ApiPath<String>,
    JsonBody(body): JsonBody<TargetBody>,
) -> Reply {
    let served = state.served();
    served.kpi(&kpi)?;
    if !valid_period_key(&body.key) {
        return Err(ApiError::bad_request(format!(
            "bad target key '{}': use default, Q1..Q4, 01..12 or a period id such as 2026-Q4",
            body.key
        )));
    }
    if body.team.is_some() && body.owner.is_some() {
        return Err(ApiError::bad_request(
            "give \"team\" or \"owner\", not both",
        ));
    }
    let (team, owner) = (body.team.clone(), body.owner.clone());
    blocking(move || {
        if let Some(t) = &team {
            served.team(t)?;
        }
        if let Some(o) = &owner {
            served.owner(o)?;
        }
        Ok(())
    })
    .await?;
    let spec = TargetSpec {
        target: body.target,
        threshold: Bound::from_field(body.threshold),
        stretch: Bound::from_field(body.stretch),
    };
    let (path, applied) = state
        .edit_config(actor, move |files| {
            let text = files.get(edit::TARGETS_FILE).cloned().unwrap_or_default();
            let of = match (&body.team, &body.owner) {
                (Some(t), _) => TargetOf::Team(t),
                (None, Some(o)) => TargetOf::Owner(o),
                (None, None) => TargetOf::All,
            };
            let out = edit::put_target(&text, &kpi, of, &body.key, &spec)?;
            Ok((edit::TARGETS_FILE.to_string(), out))
        })
        .await?;
    Ok(Json(applied_json(&path, &applied)))
}

/// `?mapping=NAME` of `POST /api/records/{entity}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// Read the body through kpis/mappings/NAME.toml (SPEC 15).
    mapping: Option<String>,
}

/// `POST /api/records/{entity}`: a JSON array or NDJSON (a UTF-8 BOM is
/// accepted), or with `?mapping=NAME` a foreign export read through
/// kpis/mappings/NAME.toml; all rows or none.
#[utoipa::path(post, path = "/api/records/{entity}", tag = "records", security(("bearer" = [])),
    params(("entity" = String, Path, description = "Entity of kpis/schema.toml", example = "teams"), RecordsQuery),
    request_body(description = "A JSON array of records, NDJSON, or with ?mapping= the CRM's own export; \
        records are upserted by id (sending the same rows twice changes nothing)",
        content((Vec<Object> = "application/json"), (String = "application/x-ndjson"), (String = "text/csv"))),
    responses((status = 200, description = "Every row was written (all or none)", body = shapes::Ingested)))]
pub async fn post_records(
    State(state): State<Arc<AppState>>,
    AdminAccess(actor): AdminAccess,
    ApiPath(entity): ApiPath<String>,
    ApiQuery(query): ApiQuery<RecordsQuery>,
    Body(body): Body,
) -> Reply {
    state
        .served()
        .config
        .schema
        .require(&entity)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let unmarked = body.slice(
        if body.starts_with(crate::store::import::readers::BOM) {
            3
        } else {
            0
        }..,
    );
    let records = match (
        query.mapping,
        unmarked.iter().find(|b| !b.is_ascii_whitespace()),
    ) {
        (_, None) => {
            return Err(ApiError::bad_request(
                "empty body: expected a JSON array or NDJSON",
            ));
        }
        (Some(mapping), Some(_)) => Records::Mapped { mapping, body },
        (None, Some(b'[')) => Records::Json(
            crate::store::import::json_array(&unmarked).map_err(ApiError::bad_request)?,
        ),
        (None, Some(_)) => Records::Ndjson(unmarked),
    };
    let (reports, generation) = state.ingest(entity, records, &actor).await?;
    let main = &reports[0];
    let mut reply = json!({
        "status": "ok",
        "entity": main.entity,
        "written": main.written,
        "duplicates": main.duplicates,
        "data_generation": generation,
    });
    if reports.len() > 1 {
        reply["entities"] = reports
            .iter()
            .map(|r| json!({"entity": r.entity, "written": r.written, "duplicates": r.duplicates}))
            .collect();
    }
    Ok(Json(reply))
}

/// `POST /api/reload`: reload kpis/ and scripts/ now.
#[utoipa::path(post, path = "/api/reload", tag = "config", security(("bearer" = [])),
    responses((status = 200, description = "The configuration now served", body = shapes::Applied)))]
pub async fn reload(State(state): State<Arc<AppState>>, AdminAccess(actor): AdminAccess) -> Reply {
    match state.reload(&actor).await {
        Ok(a) => Ok(Json(json!({
            "status": "ok",
            "config_version": a.version,
            "changed": a.changed,
            "files_changed": a.files_changed,
        }))),
        Err(errors) => Err(ApiError::invalid_config(
            format!(
                "the configuration has errors; still serving version {}",
                state.served().version
            ),
            &errors,
        )),
    }
}
