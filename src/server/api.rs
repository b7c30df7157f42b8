//! The read side of the HTTP API: health, definitions, scorecards, values,
//! previews, alerts and the config history (SPEC 12).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::auth::ReadAccess;
use super::cache::{self, cached_reports, cached_reports_of, report_key};
use super::error::{ApiError, ApiPath, ApiQuery, JsonBody};
use super::openapi::shapes;
use super::state::{AppState, blocking};
use crate::config::{Body, Kpi, Scorecard};
use crate::engine::{Proposal, Who};

type Reply = Result<Json<Value>, ApiError>;

/// `GET /health`
#[utoipa::path(get, path = "/health", tag = "meta", security((), ("bearer" = [])),
    responses((status = 200, description = "Serving; degraded when the last reload failed", body = shapes::Health)))]
pub async fn health(State(state): State<Arc<AppState>>, _: ReadAccess) -> Json<Value> {
    Json(health_json(&state))
}

pub fn health_json(state: &AppState) -> Value {
    let served = state.served();
    let health = state.health();
    json!({
        "status": if health.errors.is_empty() { "ok" } else { "degraded" },
        "config_version": served.version,
        "loaded_at": served.loaded_at,
        "errors": health.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "failed_at": health.failed_at,
        "data_generation": served.data_generation,
        "content_hash": served.content_hash,
    })
}

/// `GET /api/kpis`
#[utoipa::path(get, path = "/api/kpis", tag = "kpis", security((), ("bearer" = [])),
    responses((status = 200, description = "Every KPI definition", body = Vec<shapes::KpiDefinition>)))]
pub async fn kpis(State(state): State<Arc<AppState>>, _: ReadAccess) -> Json<Value> {
    let served = state.served();
    Json(Value::Array(
        served.config.kpis.iter().map(kpi_json).collect(),
    ))
}

/// `GET /api/kpis/{id}`: the definition, with its targets.
#[utoipa::path(get, path = "/api/kpis/{id}", tag = "kpis", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "KPI id", example = "win_rate")),
    responses((status = 200, description = "The definition, with its targets", body = shapes::KpiDefinition)))]
pub async fn kpi(
    State(state): State<Arc<AppState>>,
    _: ReadAccess,
    ApiPath(id): ApiPath<String>,
) -> Reply {
    let served = state.served();
    let cfg = &served.config;
    let k = &cfg.kpis[served.kpi(&id)?];
    let mut out = kpi_json(k);
    if let Some(t) = cfg.targets.kpis.get(&id) {
        let teams: Map<String, Value> = t
            .teams
            .iter()
            .map(|(team, m)| (team.clone(), json!(m)))
            .collect();
        let owners: Map<String, Value> = t
            .owners
            .iter()
            .map(|(owner, m)| (owner.clone(), json!(m)))
            .collect();
        out["targets"] = json!({
            "keys": t.by_key,
            "teams": teams,
            "owners": owners,
            "per_owner": t.per_owner,
        });
    } else {
        out["targets"] = Value::Null;
    }
    Ok(Json(out))
}

fn kpi_json(k: &Kpi) -> Value {
    let d = &k.def;
    let (script, params) = match &d.body {
        Body::Formula(_) => (Value::Null, Value::Null),
        Body::Script { path, params } => (json!(path), json!(params)),
    };
    json!({
        "id": d.id,
        "name": d.name,
        "labels": d.labels,
        "description": d.description,
        "unit": d.unit,
        "direction": d.direction,
        "cumulative": d.cumulative,
        "formula": k.text,
        "script": script,
        "params": params,
        "file": d.file,
        "line": d.line,
        "formula_file": d.origin.file,
        "depends_on": k.depends_on,
    })
}

/// `GET /api/scorecards`
#[utoipa::path(get, path = "/api/scorecards", tag = "scorecards", security((), ("bearer" = [])),
    responses((status = 200, description = "Every scorecard and its weight sets", body = Vec<shapes::ScorecardDefinition>)))]
pub async fn scorecards(State(state): State<Arc<AppState>>, _: ReadAccess) -> Json<Value> {
    let served = state.served();
    Json(Value::Array(
        served
            .config
            .scorecards
            .iter()
            .map(scorecard_json)
            .collect(),
    ))
}

fn scorecard_json(s: &Scorecard) -> Value {
    let weights: Map<String, Value> = s
        .weights
        .iter()
        .map(|(key, set)| {
            let set: Map<String, Value> = set.iter().map(|(k, w)| (k.clone(), json!(w))).collect();
            (key.clone(), Value::Object(set))
        })
        .collect();
    json!({
        "id": s.id,
        "name": s.name,
        "labels": s.labels,
        "teams": s.teams,
        "cap": s.cap,
        "weights": weights,
        "kpis": s.all_kpis(),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhenQuery {
    /// A period id: 2026-Q3, 2026-07, 2026 (default: the quarter of as_of).
    #[param(example = "2026-Q3", pattern = "^[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$")]
    pub period: Option<String>,
    /// The instant judged (RFC 3339 or YYYY-MM-DD; default: now).
    #[param(example = "2026-09-30")]
    pub as_of: Option<String>,
    /// `GET /api/scorecards/{id}` only: just this team, with its rank among all.
    pub team: Option<String>,
    /// `true`: a frozen period evaluated afresh (SPEC 16).
    #[param(pattern = "^(true|false|1|0)?$")]
    pub live: Option<String>,
}

/// A boolean query parameter: absent, empty, false or 0 is false; true or 1 is true.
pub fn flag(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v.map(str::trim) {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name}: expected true or false, got {other:?}"
        ))),
    }
}

/// `GET /api/scorecards/{id}?period=&as_of=`: the SPEC 11 JSON shape.
#[utoipa::path(get, path = "/api/scorecards/{id}", tag = "scorecards", security((), ("bearer" = [])),
    params(("id" = String, Path, description = "Scorecard id", example = "sales"), WhenQuery),
    responses((status = 200, description = "Scores and ranks (SPEC 11, 14)", body = crate::eval::report::Report)))]
pub async fn scorecard(
    State(state): State<Arc<AppState>>,
    _: ReadAccess,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WhenQuery>,
) -> Result<Response, ApiError> {
    let served = state.served();
    served.scorecard(&id)?;
    let when = cache::when(&served, q.as_of.as_deref(), q.period.as_deref())?;
    let live = flag("live", q.live.as_deref())?;
    // A cached response is sent as it was serialized, without a blocking task.
    let key = cache::ReportKey {
        live,
        ..report_key(&served, &id, when, 1)
    };
    let cached = match state.cache.get(&key) {
        Some(hit) => hit,
        None => {
            let st = state.clone();
            let served = served.clone();
            blocking(move || cached_reports_of(&st, &served, &id, when, 1, live)).await?
        }
    };
    let body = match q.team.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => cached.json(),
        Some(team) => {
            let team = team.to_string();
            let known = served.clone();
            let t = team.clone();
            blocking(move || Ok(known.team(&t)?)).await?;
            let mut report = cached
                .reports
                .last()
                .cloned()
                .ok_or_else(|| ApiError::internal("a scorecard evaluation gave no report"))?;
            report.teams.retain(|line| line.team == team);
            serde_json::to_vec(&report)
                .map_err(ApiError::internal)?
                .into()
        }
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ValueQuery {
    /// Required.
    #[param(example = "win_rate")]
    pub kpi: Option<String>,
    /// Required unless owner is given.
    #[param(example = "east")]
    pub team: Option<String>,
    /// A person instead of a team (SPEC 14).
    pub owner: Option<String>,
    #[param(example = "2026-Q3", pattern = "^[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$")]
    pub period: Option<String>,
    pub as_of: Option<String>,
    /// true or false.
    #[param(example = "true")]
    pub explain: Option<String>,
}

/// `GET /api/values?kpi=&team=&period=&as_of=&explain=true`
#[utoipa::path(get, path = "/api/values", tag = "values", security((), ("bearer" = [])), params(ValueQuery),
    responses((status = 200, description = "One value, judged", body = crate::engine::ValueReport)))]
pub async fn values(
    State(state): State<Arc<AppState>>,
    _: ReadAccess,
    ApiQuery(q): ApiQuery<ValueQuery>,
) -> Reply {
    let served = state.served();
    let required = |v: Option<String>, name: &str| {
        v.filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("missing query parameter `{name}`")))
    };
    let kpi = required(q.kpi, "kpi")?;
    let owner = q.owner.filter(|s| !s.trim().is_empty());
    let team = match owner {
        Some(_) => String::new(),
        None => required(q.team, "team")?,
    };
    let explain = flag("explain", q.explain.as_deref())?;
    served.kpi(&kpi)?;
    let when = cache::when(&served, q.as_of.as_deref(), q.period.as_deref())?;
    let out = blocking(move || {
        let who = match &owner {
            Some(o) => Who::Owner(o),
            None => Who::Team(&team),
        };
        Ok(served.value(&kpi, who, when, explain)?)
    })
    .await?;
    Ok(Json(json!(out)))
}

/// A JSON object whose key order is kept (weights are listed in the order given).
#[derive(Debug, Clone, Default)]
pub struct Ordered(pub Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// `{"name": number, …}` in the document (weights, targets).
impl utoipa::PartialSchema for Ordered {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        serde_json::from_value(json!({
            "type": "object",
            "additionalProperties": {"type": "number"},
        }))
        .expect("a JSON Schema")
    }
}

impl ToSchema for Ordered {}

impl Ordered {
    /// Every value as a finite number ≥ 0 (`what` names them in errors).
    pub fn numbers(&self, what: &str) -> Result<Vec<(String, f64)>, ApiError> {
        self.0
            .iter()
            .map(|(k, v)| match v.as_f64() {
                Some(x) if x.is_finite() && x >= 0.0 => Ok((k.clone(), x)),
                _ => Err(ApiError::bad_request(format!(
                    "{what} of '{k}' must be a number ≥ 0, got {v}"
                ))),
            })
            .collect()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewBody {
    #[schema(example = "sales")]
    pub scorecard: String,
    #[schema(example = "2026-Q4", pattern = "^[0-9]{4}(-Q[1-4]|-(0[1-9]|1[0-2]))?$")]
    pub period: Option<String>,
    pub as_of: Option<String>,
    pub weights: Option<Ordered>,
    pub targets: Option<Ordered>,
}

/// `POST /api/preview`: current and proposed scores side by side; nothing is written.
#[utoipa::path(post, path = "/api/preview", tag = "scorecards", security((), ("bearer" = [])), request_body = PreviewBody,
    responses((status = 200, description = "Current and proposed scores side by side", body = crate::engine::PreviewReport)))]
pub async fn preview(
    State(state): State<Arc<AppState>>,
    _: ReadAccess,
    JsonBody(body): JsonBody<PreviewBody>,
) -> Reply {
    let served = state.served();
    served.scorecard(&body.scorecard)?;
    let when = cache::when(&served, body.as_of.as_deref(), body.period.as_deref())?;
    let weights = body
        .weights
        .as_ref()
        .map(|w| w.numbers("weight"))
        .transpose()?;
    if weights
        .as_ref()
        .is_some_and(|w| w.iter().all(|(_, x)| *x == 0.0))
    {
        return Err(ApiError::bad_request(
            "weights: at least one weight must be above 0",
        ));
    }
    let targets = match &body.targets {
        None => Vec::new(),
        Some(t) => {
            t.0.iter()
                .map(|(k, v)| match v.as_f64() {
                    Some(x) if x.is_finite() => Ok((k.clone(), x)),
                    _ => Err(ApiError::bad_request(format!(
                        "target of '{k}' must be a number, got {v}"
                    ))),
                })
                .collect::<Result<_, _>>()?
        }
    };
    let proposal = Proposal { weights, targets };
    let st = state.clone();
    let card = body.scorecard;
    let out = blocking(move || {
        let current = cached_reports(&st, &served, &card, when, 1)?;
        Ok(served.preview(&card, when, &proposal, &current.reports[0])?)
    })
    .await?;
    Ok(Json(json!(out)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// firing (default), resolved or all.
    #[param(pattern = "^(firing|resolved|all)$")]
    pub state: Option<String>,
}

/// `GET /api/alerts?state=firing|resolved|all`: alerts with their delivery status.
#[utoipa::path(get, path = "/api/alerts", tag = "alerts", security((), ("bearer" = [])), params(AlertsQuery),
    responses((status = 200, description = "Alerts with their delivery status", body = Vec<crate::alerts::AlertView>)))]
pub async fn alerts(
    State(state): State<Arc<AppState>>,
    _: ReadAccess,
    ApiQuery(q): ApiQuery<AlertsQuery>,
) -> Reply {
    // Checked here so a bad value is a 400 before any database work.
    let filter = q.state.clone();
    crate::alerts::StateFilter::parse(filter.as_deref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let engine = state.engine.clone();
    let list = blocking(move || {
        let conn = engine.engine_conn()?;
        crate::alerts::list(&conn, filter.as_deref()).map_err(ApiError::internal)
    })
    .await?;
    Ok(Json(
        serde_json::to_value(list).map_err(ApiError::internal)?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub limit: Option<usize>,
}

/// `GET /api/config/history?limit=`: applied versions, oldest first.
#[utoipa::path(get, path = "/api/config/history", tag = "config", security((), ("bearer" = [])), params(HistoryQuery),
    responses((status = 200, description = "Applied versions, oldest first", body = Vec<shapes::HistoryEntry>)))]
pub async fn history(
    State(state): State<Arc<AppState>>,
    _: ReadAccess,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Reply {
    let rows = state.history(q.limit.unwrap_or(1000).max(1)).await?;
    Ok(Json(Value::Array(
        rows.into_iter()
            .map(|r| {
                json!({
                    "version": r.version,
                    "applied_at": r.applied_at,
                    "origin": r.origin,
                    "actor": r.actor,
                    "files_changed": r.files_changed,
                    "content_hash": r.content_hash,
                })
            })
            .collect(),
    )))
}
