//! The dashboard at `/`: one server-rendered page, no CDN, no build step.
//!
//! It shows one scorecard for one period: the teams ranked with their score,
//! rank change and a trend of the last eight periods (inline SVG), every KPI's
//! value, target and status per team (missed red, at risk amber), the open
//! alerts and, while the files on disk do not check, the config error banner.
//! `?lang=zh` uses the Chinese labels of KPIs and scorecards. The page's
//! script (`dashboard/app.js`) submits the pickers on change and reloads the
//! page when /health reports a new config version or data generation.
//!
//! This file is the route; [`view`] and its sections ([`ranking`], [`matrix`], [`alerts`])
//! render the page, [`layout`] the frame around it, [`i18n`] holds both languages' words and
//! [`html`] the escaping helpers.

mod alerts;
mod html;
mod i18n;
mod layout;
mod matrix;
mod ranking;
mod view;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

pub use html::esc;

use super::auth::TOKEN_COOKIE;
use super::cache::{self, cached_reports};
use super::error::{ApiError, ApiQuery};
use super::state::{AppState, blocking};
use crate::alerts::AlertView;
use html::url_encode;
use i18n::Lang;
use layout::empty_page;
use view::View;

/// Periods in the trend.
const TREND: u32 = 8;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub scorecard: Option<String>,
    pub period: Option<String>,
    pub as_of: Option<String>,
    pub lang: Option<String>,
    /// A read token to keep in a cookie (when KPI_READ_TOKEN is set).
    pub token: Option<String>,
}

/// `GET /?scorecard=&period=&as_of=&lang=`
pub async fn page(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    if let Some(token) = &q.token {
        return remember_token(&state, token, &q);
    }
    state.tokens.check_read(&headers)?;
    let served = state.served();
    let health = state.health();
    let lang = Lang::from(q.lang.as_deref());
    let cfg = served.config.clone();
    let Some(card) = (match q.scorecard.as_deref().filter(|s| !s.is_empty()) {
        Some(id) => Some(served.scorecard(id)?.clone()),
        None => cfg.scorecards.first().cloned(),
    }) else {
        return Ok(Html(empty_page(&served, &health, lang)).into_response());
    };
    let when = cache::when(&served, q.as_of.as_deref(), q.period.as_deref())?;
    let st = state.clone();
    let sv = served.clone();
    let id = card.id.clone();
    let reports =
        blocking(move || Ok(cached_reports(&st, &sv, &id, when, TREND)?.reports.clone())).await?;
    let alerts = firing_alerts(&state).await;
    let view = View {
        alerts: &alerts,
        served: &served,
        health: &health,
        card: &card,
        reports: &reports,
        when,
        lang,
        as_of_param: q.as_of.filter(|s| !s.trim().is_empty()),
    };
    Ok(Html(view.render()).into_response())
}

/// The firing alerts, newest state changes first; none when they cannot be read, so that the
/// page still renders.
async fn firing_alerts(state: &AppState) -> Vec<AlertView> {
    let engine = state.engine.clone();
    blocking(move || {
        let conn = engine.connection()?;
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
