//! The dashboard (SPEC 12's `/` and SPEC 19's pages): server-rendered HTML, no CDN, no build
//! step, readable without JavaScript.
//!
//! `/` shows one scorecard for one period: the teams ranked (level filter: leaf teams, regions,
//! all) with score, projected score, rank change and a trend, every KPI's value, target and
//! status per team, the editor of weights and targets (live preview, saved through the PUT
//! routes), the open alerts and the config error banner. `/teams/{id}` and `/owners/{id}` show
//! one subject with a chart of each KPI; `/kpis/{id}` explains one value with the records behind
//! it (`/kpis/{id}/records.csv`); `/alerts` and `/history` list alerts and versions. Every page
//! keeps the scorecard, period, as-of and language in its links. The script (`app.js`) submits
//! the pickers, reloads a page when /health reports a new version or data generation, and runs
//! the editor.
//!
//! This file holds the routes and the two layers every response passes ([`html_errors`],
//! [`server_timing`]); [`page`] is the frame every page shares; [`view`] and its sections
//! ([`ranking`], [`matrix`], [`edit`], [`alerts`]) render `/`; [`subject`], [`explain`] and
//! [`history`] the other pages; [`chart`] draws the SVG charts; [`layout`] the document, banner,
//! footer and error page; [`i18n`] holds both languages' words and [`html`] the escaping and
//! link helpers.

mod alerts;
mod chart;
mod edit;
mod explain;
mod history;
mod html;
mod i18n;
mod layout;
mod matrix;
mod page;
mod ranking;
mod subject;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

pub use html::esc;

use super::auth::TOKEN_COOKIE;
use super::cache::{self, cached_reports};
use super::error::{ApiError, ApiPath, ApiQuery};
use super::state::{AppState, blocking};
use crate::alerts::AlertView;
use crate::config::{Scorecard, Subjects};
use crate::engine::{Snapshot as Served, When, Who as EngineWho};
use crate::eval::report::Report;
use crate::period::PeriodId;
use html::url_encode;
use i18n::Lang;
use layout::empty_page;
use page::Page;
use view::{Level, View};

/// Periods in a trend and chart.
const TREND: usize = 8;
/// Quarters the period picker looks back over (those with data are offered).
const PICKER: u32 = 12;

/// The dashboard's pages besides `/`; merged into the router by `server::app`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/teams/{id}", get(team_page))
        .route("/owners/{id}", get(owner_page))
        .route("/kpis/{id}", get(kpi_page))
        .route("/kpis/{id}/records.csv", get(records_csv))
        .route("/alerts", get(alerts_page))
        .route("/history", get(history_page))
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub scorecard: Option<String>,
    pub period: Option<String>,
    pub as_of: Option<String>,
    pub lang: Option<String>,
    /// A read token to keep in a cookie (when KPI_READ_TOKEN is set).
    pub token: Option<String>,
    /// The ranking's level: all, leaves or regions.
    pub level: Option<String>,
    /// `/kpis/{id}`: whose value.
    pub team: Option<String>,
    pub owner: Option<String>,
    /// `/kpis/{id}`: which query's records.
    pub records: Option<usize>,
    /// `/alerts`: the filters.
    pub state: Option<String>,
    pub kind: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// What every page is rendered from: the served state, its health, the language, and the
/// scorecard and period shown (resolved and checked).
struct Shown {
    served: Arc<Served>,
    health: Arc<crate::server::state::Health>,
    lang: Lang,
    card: Option<Scorecard>,
    when: When,
    as_of: Option<String>,
}

impl Shown {
    /// Reads the common parameters; `subjects` picks the scorecard when the asked one scores
    /// the other kind (a person's page reached from a team scorecard).
    fn read(
        state: &AppState,
        q: &PageQuery,
        subjects: Option<Subjects>,
    ) -> Result<Shown, ApiError> {
        let served = state.served();
        let cfg = served.config.clone();
        let asked = match given(&q.scorecard) {
            Some(id) => Some(served.scorecard(id)?.clone()),
            None => None,
        };
        let card = match (asked, subjects) {
            (Some(c), Some(s)) if c.subjects != s => {
                cfg.scorecards.iter().find(|x| x.subjects == s).cloned()
            }
            (Some(c), _) => Some(c),
            (None, Some(s)) => cfg.scorecards.iter().find(|x| x.subjects == s).cloned(),
            (None, None) => cfg.scorecards.first().cloned(),
        };
        let when = cache::when(&served, given(&q.as_of), given(&q.period))?;
        Ok(Shown {
            health: state.health(),
            lang: Lang::from(q.lang.as_deref()),
            card,
            when,
            as_of: given(&q.as_of).map(str::to_string),
            served,
        })
    }

    fn page(
        &self,
        path: String,
        keep: Vec<(&'static str, String)>,
        periods: Vec<PeriodId>,
    ) -> Page<'_> {
        Page {
            served: &self.served,
            health: &self.health,
            lang: self.lang,
            card: self.card.as_ref(),
            period: Some(self.when.period),
            periods,
            as_of: self.as_of.clone(),
            path,
            keep,
        }
    }
}

/// The trend reports of the shown scorecard (the last [`TREND`] periods up to the shown one)
/// and the periods with data for the picker, each cached.
async fn reports(
    state: &Arc<AppState>,
    shown: &Shown,
) -> Result<(Vec<Report>, Vec<PeriodId>), ApiError> {
    let Some(card) = &shown.card else {
        return Ok((Vec::new(), Vec::new()));
    };
    let (st, sv, id, when) = (
        state.clone(),
        shown.served.clone(),
        card.id.clone(),
        shown.when,
    );
    blocking(move || {
        let trend = cached_reports(&st, &sv, &id, when, TREND as u32)?
            .reports
            .to_vec();
        Ok((trend, data_periods(&st, &sv, &id)?))
    })
    .await
}

/// The periods with data for the picker alone (a page without a trend).
async fn picker_periods(state: &Arc<AppState>, shown: &Shown) -> Result<Vec<PeriodId>, ApiError> {
    let Some(card) = &shown.card else {
        return Ok(Vec::new());
    };
    let (st, sv, id) = (state.clone(), shown.served.clone(), card.id.clone());
    blocking(move || data_periods(&st, &sv, &id)).await
}

/// The last [`PICKER`] quarters up to now that have data, newest first (blocking). Every page
/// asks the same question within a minute: one cached answer serves them all. A period where
/// every value is none or 0 (no deal, no ticket: nothing happened) has no data; finding one
/// value that is not stops the period's evaluation.
fn data_periods(state: &AppState, served: &Served, card: &str) -> Result<Vec<PeriodId>, ApiError> {
    let now = cache::when(served, None, None)?;
    let mut periods = cache::cached_periods_with_values(state, served, card, now, PICKER)?.to_vec();
    periods.sort_by(|a, b| b.cmp(a));
    Ok(periods)
}

/// `GET /?scorecard=&period=&as_of=&lang=&level=`
pub async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    if let Some(token) = &q.token {
        return remember_token(&state, token, &q);
    }
    state.tokens.check_read(&headers)?;
    let level = Level::parse(q.level.as_deref()).map_err(ApiError::bad_request)?;
    let shown = Shown::read(&state, &q, None)?;
    let Some(card) = shown.card.clone() else {
        return Ok(Html(empty_page(&shown.served, &shown.health, shown.lang)).into_response());
    };
    let (reports, periods) = reports(&state, &shown).await?;
    let tree = shown.served.teams()?;
    let alerts = firing_alerts(&state).await;
    let keep = if level == Level::All {
        vec![]
    } else {
        vec![("level", level.code().to_string())]
    };
    let view = View {
        page: shown.page("/".into(), keep, periods),
        alerts: &alerts,
        card: &card,
        reports: &reports,
        when: shown.when,
        lang: shown.lang,
        level,
        tree: &tree,
    };
    Ok(Html(view.render()).into_response())
}

/// `GET /teams/{id}?scorecard=&period=`
async fn team_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    subject_page(state, headers, id, q, Subjects::Teams).await
}

/// `GET /owners/{id}?scorecard=&period=`
async fn owner_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    subject_page(state, headers, id, q, Subjects::Owners).await
}

async fn subject_page(
    state: Arc<AppState>,
    headers: HeaderMap,
    id: String,
    q: PageQuery,
    subjects: Subjects,
) -> Result<Response, ApiError> {
    state.tokens.check_read(&headers)?;
    let shown = Shown::read(&state, &q, Some(subjects))?;
    let (path, who) = match subjects {
        Subjects::Teams => {
            shown.served.team(&id)?;
            (
                format!("/teams/{}", url_encode(&id)),
                subject::Who::Team(&id),
            )
        }
        Subjects::Owners => {
            shown.served.owner(&id)?;
            (
                format!("/owners/{}", url_encode(&id)),
                subject::Who::Owner(&id),
            )
        }
    };
    let Some(card) = shown.card.clone() else {
        return Err(ApiError::not_found(format!(
            "no scorecard scores {}",
            subjects.name()
        )));
    };
    let (reports, periods) = reports(&state, &shown).await?;
    let tree = shown.served.teams()?;
    let owners = shown
        .served
        .records
        .store
        .owners()
        .map_err(ApiError::from)?;
    let page = subject::SubjectPage {
        page: shown.page(path, vec![], periods),
        card: &card,
        reports: &reports,
        who,
        tree: &tree,
        owners: &owners,
    };
    Ok(Html(page.render()).into_response())
}

/// One value a `/kpis/{id}` request names, explained, with what the page says around it.
struct AskedValue {
    explained: crate::engine::Explained,
    /// `("team", id)` or `("owner", id)`.
    param: (&'static str, String),
    /// The team's or person's name.
    name: String,
    /// The scorecard's weight of the KPI and the sum of its weights.
    weight: Option<(f64, f64)>,
    cap: f64,
}

/// The value a `/kpis/{id}` request names, explained (blocking).
fn explained(shown: &Shown, kpi: &str, q: &PageQuery) -> Result<AskedValue, ApiError> {
    let served = &shown.served;
    let (param, who) = match (given(&q.owner), given(&q.team)) {
        (Some(o), _) => (("owner", o.to_string()), EngineWho::Owner(o)),
        (None, Some(t)) => (("team", t.to_string()), EngineWho::Team(t)),
        (None, None) => {
            return Err(ApiError::bad_request(
                "missing query parameter `team` (or `owner`)",
            ));
        }
    };
    let name = match who {
        EngineWho::Team(t) => {
            let tree = served.teams()?;
            tree.names[served.team(t)? as usize].clone()
        }
        EngineWho::Owner(o) => {
            let owners = served.records.store.owners().map_err(ApiError::from)?;
            owners.names[served.owner(o)? as usize].clone()
        }
    };
    let card = shown.card.as_ref();
    let weights = card.and_then(|c| c.weights_for(shown.when.period));
    let weight = weights.and_then(|w| {
        let total: f64 = w.iter().map(|(_, x)| x).sum();
        w.iter().find(|(k, _)| k == kpi).map(|(_, x)| (*x, total))
    });
    let cap = card.map_or(crate::config::scorecards::DEFAULT_CAP, |c| c.cap);
    let explained = served.explain(kpi, who, shown.when, weight.map(|w| w.0), cap)?;
    Ok(AskedValue {
        explained,
        param,
        name,
        weight,
        cap,
    })
}

/// `GET /kpis/{id}?team=|owner=&period=&scorecard=&records=`
async fn kpi_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    state.tokens.check_read(&headers)?;
    let shown = Shown::read(&state, &q, None)?;
    shown.served.kpi(&id)?;
    let periods = picker_periods(&state, &shown).await?;
    let html = blocking(move || {
        let AskedValue {
            explained: e,
            param,
            name,
            weight,
            cap,
        } = explained(&shown, &id, &q)?;
        let chosen = q.records.unwrap_or(0);
        let records = match e.asked.get(chosen) {
            Some(a) => Some((
                chosen,
                shown.served.records_behind(a, explain::RECORDS_SHOWN)?,
            )),
            None => None,
        };
        let kpi = &shown.served.config.kpis[shown.served.kpi(&id)?];
        let path = format!("/kpis/{}", url_encode(&id));
        let page = explain::ExplainPage {
            page: shown.page(path, vec![param.clone()], periods),
            kpi,
            subject_name: name,
            subject_param: param,
            explained: &e,
            weight,
            cap,
            records,
        };
        Ok(page.render())
    })
    .await?;
    Ok(Html(html).into_response())
}

/// `GET /kpis/{id}/records.csv?team=|owner=&period=&records=`: the records behind a value.
async fn records_csv(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    state.tokens.check_read(&headers)?;
    let shown = Shown::read(&state, &q, None)?;
    shown.served.kpi(&id)?;
    let name = format!("{id}-{}.csv", shown.when.period);
    let csv = blocking(move || {
        let e = explained(&shown, &id, &q)?.explained;
        let chosen = q.records.unwrap_or(0);
        let a = e
            .asked
            .get(chosen)
            .ok_or_else(|| ApiError::not_found(format!("the value asked no query #{chosen}")))?;
        let page = shown.served.records_behind(a, explain::RECORDS_CSV)?;
        let cal = &shown.served.config.settings.calendar;
        Ok(explain::records_csv(&page, &|ms| cal.format_local(ms)))
    })
    .await?;
    let mut response = csv.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        name.replace('"', "")
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `GET /alerts?state=&kind=&team=`
async fn alerts_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    state.tokens.check_read(&headers)?;
    let filter =
        alerts::AlertFilter::parse(q.state.as_deref(), q.kind.as_deref(), q.team.as_deref())
            .map_err(ApiError::bad_request)?;
    let shown = Shown::read(
        &state,
        &PageQuery {
            lang: q.lang.clone(),
            ..PageQuery::default()
        },
        None,
    )?;
    if let Some(t) = &filter.team {
        shown.served.team(t)?;
    }
    let engine = state.engine.clone();
    let st = filter.state.clone();
    let list = blocking(move || {
        let conn = engine.engine_conn()?;
        crate::alerts::list(&conn, Some(&st)).map_err(ApiError::internal)
    })
    .await?;
    let tree = shown.served.teams()?;
    let mut page = shown.page("/alerts".into(), vec![], vec![]);
    page.card = None;
    page.period = None;
    Ok(Html(alerts::alerts_page(&page, &tree, &list, &filter)).into_response())
}

/// `GET /history`
async fn history_page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    state.tokens.check_read(&headers)?;
    let shown = Shown::read(
        &state,
        &PageQuery {
            lang: q.lang.clone(),
            ..PageQuery::default()
        },
        None,
    )?;
    let entries = state.history(1000).await?;
    let engine = state.engine.clone();
    let newest: Vec<u64> = entries
        .iter()
        .rev()
        .take(history::DIFFS_SHOWN)
        .map(|e| e.version)
        .collect();
    let diffs = blocking(move || {
        let h = engine.config_history()?;
        let mut out = std::collections::BTreeMap::new();
        for v in newest {
            if let Some(d) = h.version(v)?.diffs {
                out.insert(v, d);
            }
        }
        Ok(out)
    })
    .await?;
    let mut page = shown.page("/history".into(), vec![], vec![]);
    page.card = None;
    page.period = None;
    Ok(Html(history::history_page(&page, &entries, &diffs)).into_response())
}

/// Adds `Server-Timing: app;dur=…` (ms) to every response: how long the server took, without
/// the network (what the server benchmark reports for each page).
pub async fn server_timing(req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(req).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

/// Errors of the dashboard's pages as an HTML page for browsers (a request whose Accept
/// names text/html), with the same status; API routes and other clients keep the JSON.
pub async fn html_errors(req: Request, next: Next) -> Response {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let path = req.uri().path().to_string();
    let api = path.starts_with("/api/") || path == "/health";
    let lang = Lang::from(
        req.uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang="))),
    );
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !wants_html || api || !is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let message = v["error"].as_str().unwrap_or("error").to_string();
    let details: Vec<String> = v["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut out = (
        status,
        Html(layout::error_page(
            lang,
            status.as_u16(),
            &message,
            &details,
        )),
    )
        .into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// The firing alerts, newest state changes first; none when they cannot be read, so that the
/// page still renders.
async fn firing_alerts(state: &AppState) -> Vec<AlertView> {
    let engine = state.engine.clone();
    blocking(move || {
        let conn = engine.engine_conn()?;
        crate::alerts::list(&conn, Some("firing")).map_err(ApiError::internal)
    })
    .await
    .unwrap_or_default()
}

/// `/?token=…`: keep a valid read token in an HttpOnly cookie and drop it from the URL.
fn remember_token(state: &AppState, token: &str, q: &PageQuery) -> Result<Response, ApiError> {
    if !state.tokens.can_read(Some(token)) {
        return Err(ApiError::Unauthorized("wrong read token".into()));
    }
    let mut params = Vec::new();
    for (k, v) in [
        ("scorecard", &q.scorecard),
        ("period", &q.period),
        ("as_of", &q.as_of),
        ("lang", &q.lang),
    ] {
        if let Some(v) = v {
            params.push(format!("{k}={}", url_encode(v)));
        }
    }
    let location = if params.is_empty() {
        "/".to_string()
    } else {
        format!("/?{}", params.join("&"))
    };
    let cookie = format!(
        "{TOKEN_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        url_encode(token)
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).unwrap_or(HeaderValue::from_static("/")),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    Ok(response)
}
