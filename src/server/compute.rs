//! Evaluations behind the routes: scorecards over one or more periods, one
//! value, and previews of proposed weights and targets.
//!
//! An [`Evaluation`] is single-threaded (Rc), so everything here runs inside
//! `state::blocking`, one evaluation per request, over the `Served` pair the
//! request started with. Scorecard reports are cached per config version,
//! data generation, scorecard, periods and as-of ([`ReportKey`]).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::error::ApiError;
use super::state::{AppState, CachedReports, ReportKey, Served};
use crate::config::scorecards::DEFAULT_CAP;
use crate::config::targets::KpiTargets;
use crate::config::{ConfigSnapshot, Scorecard, Target};
use crate::diag::hint;
use crate::eval::Evaluation;
use crate::eval::report::{self, Report};
use crate::period::{Calendar, Grain, Millis, PeriodId, format_utc};

/// The instant and period a request asks about.
#[derive(Debug, Clone, Copy)]
pub struct When {
    /// The as_of given, or "now" rounded down to the minute: results for "now"
    /// are those of the current minute, so they can be cached.
    pub as_of: Millis,
    pub period: PeriodId,
}

/// "Now" is rounded down to this (ms): every request without an as_of in the
/// same minute asks the same question.
pub const NOW_BUCKET_MS: i64 = 60_000;

/// Reads `as_of` (default now, to the minute) and `period` (default: the quarter containing as_of).
pub fn when(cal: &Calendar, as_of: Option<&str>, period: Option<&str>) -> Result<When, ApiError> {
    let as_of_given = as_of.map(str::trim).filter(|s| !s.is_empty());
    let as_of = match as_of_given {
        Some(t) => cal
            .parse_time(t)
            .map_err(|e| ApiError::bad_request(format!("as_of: {e}")))?,
        None => {
            let now = super::state::now();
            now - now.rem_euclid(NOW_BUCKET_MS)
        }
    };
    let period = match period.map(str::trim).filter(|s| !s.is_empty()) {
        Some(p) => p
            .parse::<PeriodId>()
            .map_err(|e| ApiError::bad_request(format!("period: {e}")))?,
        None => cal.containing(Grain::Quarter, as_of),
    };
    Ok(When { as_of, period })
}

/// The scorecard `id`, or 404 with a hint.
pub fn find_scorecard<'c>(cfg: &'c ConfigSnapshot, id: &str) -> Result<&'c Scorecard, ApiError> {
    cfg.scorecard(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown scorecard '{id}'{}",
            hint(id, cfg.scorecards.iter().map(|s| s.id.as_str()))
        ))
    })
}

/// The KPI index of `id`, or 404 with a hint.
pub fn find_kpi(cfg: &ConfigSnapshot, id: &str) -> Result<usize, ApiError> {
    cfg.kpi_index(id)
        .ok_or_else(|| ApiError::not_found(cfg.unknown_kpi(id)))
}

/// The teams a scorecard scores, in tree order.
fn members(eval: &Evaluation, card: &Scorecard) -> Vec<u32> {
    let all = eval.teams.tree_order();
    match &card.teams {
        None => all,
        Some(list) => all
            .into_iter()
            .filter(|t| list.contains(&eval.teams.ids[*t as usize]))
            .collect(),
    }
}

/// The cache key of scorecard `card` for the `span` periods ending with `when.period`.
pub fn report_key(served: &Served, card: &str, when: When, span: u32) -> ReportKey {
    ReportKey {
        version: served.version,
        generation: served.data_generation,
        scorecard: card.to_string(),
        period: when.period,
        span,
        as_of: when.as_of,
    }
}

/// Reports of scorecard `card` for the `span` periods ending with `when.period`, oldest first.
pub fn scorecard_reports(
    state: &AppState,
    served: &Served,
    card: &str,
    when: When,
    span: u32,
) -> Result<Arc<Vec<Report>>, ApiError> {
    Ok(cached_reports(state, served, card, when, span)?
        .reports
        .clone())
}

/// The cache entry of a scorecard evaluation, evaluated on a miss. Blocking.
pub fn cached_reports(
    state: &AppState,
    served: &Served,
    card: &str,
    when: When,
    span: u32,
) -> Result<Arc<CachedReports>, ApiError> {
    let sc = find_scorecard(&served.config, card)?;
    let key = report_key(served, card, when, span);
    state.cache.get_or_fill(&key, || {
        let periods: Vec<PeriodId> = (0..span as i32)
            .rev()
            .map(|i| when.period.shift(-i))
            .collect();
        let eval = Evaluation::new(
            served.config.clone(),
            served.store.clone(),
            when.as_of,
            &periods,
            false,
        )?;
        let teams = members(&eval, sc);
        Ok::<_, ApiError>(
            periods
                .iter()
                .map(|p| report::scorecard(&eval, sc, *p, &teams))
                .collect(),
        )
    })
}

pub fn num(x: Option<f64>) -> Json {
    x.and_then(serde_json::Number::from_f64)
        .map_or(Json::Null, Json::Number)
}

/// One value: `{"kpi", "team", "period", "value", "target", "status", "explanation"}`.
pub fn value(
    served: &Served,
    kpi: &str,
    team: &str,
    when: When,
    explain: bool,
) -> Result<Json, ApiError> {
    let cfg = &served.config;
    let idx = find_kpi(cfg, kpi)?;
    let eval = Evaluation::new(
        cfg.clone(),
        served.store.clone(),
        when.as_of,
        &[when.period],
        explain,
    )?;
    let t = team_index(&eval, team)?;
    let line = report::kpi_line(&eval, idx, t, when.period, None, DEFAULT_CAP);
    let mut out = json!({
        "kpi": kpi,
        "team": team,
        "period": when.period.to_string(),
        "as_of": format_utc(when.as_of),
        "value": num(line.value),
        "target": num(line.target),
        "status": line.status.name(),
        "projected": num(line.projected),
        "explanation": if explain { json!(line.explanation) } else { Json::Null },
    });
    if let Some(e) = line.error {
        out["error"] = json!(e);
    }
    Ok(out)
}

/// The index of team `id`, or 404 with a hint.
pub fn team_index(eval: &Rc<Evaluation>, id: &str) -> Result<u32, ApiError> {
    eval.teams.index(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown team '{id}'{}",
            hint(id, eval.teams.ids.iter().map(String::as_str))
        ))
    })
}

/// Known team ids (for checking an API edit's team).
pub fn team_ids(served: &Served) -> Result<Vec<String>, ApiError> {
    Ok(served.store.teams()?.ids.clone())
}

/// What a preview proposes.
#[derive(Debug, Clone, Default)]
pub struct Proposal {
    /// The weight set to use for the period, whole.
    pub weights: Option<Vec<(String, f64)>>,
    /// KPI → a target for every team in the period.
    pub targets: Vec<(String, f64)>,
}

/// Current and proposed scores of a scorecard side by side; nothing is written.
pub fn preview(
    state: &AppState,
    served: &Served,
    card: &str,
    when: When,
    proposal: &Proposal,
) -> Result<Json, ApiError> {
    let cfg = &served.config;
    find_scorecard(cfg, card)?;
    let names = proposal
        .weights
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .chain(proposal.targets.iter().map(|(k, _)| k));
    let unknown: Vec<String> = names
        .filter(|k| cfg.kpi_index(k).is_none())
        .map(|k| cfg.unknown_kpi(k))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Unprocessable {
            message: "the proposal names unknown KPIs".into(),
            details: unknown,
        });
    }
    let current = scorecard_reports(state, served, card, when, 1)?;
    let current = &current[0];

    // The proposal is a copy of the served configuration with the changes made
    // in memory; the served one is never touched.
    let mut candidate = crate::config::from_files(&cfg.root, cfg.files.clone())
        .map_err(|e| ApiError::internal(format!("rebuilding the configuration: {e}")))?;
    if let Some(w) = &proposal.weights {
        let sc = candidate
            .scorecards
            .iter_mut()
            .find(|s| s.id == card)
            .ok_or_else(|| ApiError::internal("scorecard vanished"))?;
        let key = when.period.to_string();
        sc.weights.retain(|(k, _)| *k != key);
        sc.weights.insert(0, (key, w.clone()));
    }
    for (kpi, target) in &proposal.targets {
        candidate.targets.kpis.insert(
            kpi.clone(),
            KpiTargets {
                by_key: BTreeMap::from([(
                    "default".to_string(),
                    Target {
                        target: *target,
                        threshold: None,
                        stretch: None,
                    },
                )]),
                teams: BTreeMap::new(),
            },
        );
    }
    let candidate = Arc::new(candidate);
    let eval = Evaluation::new(
        candidate.clone(),
        served.store.clone(),
        when.as_of,
        &[when.period],
        false,
    )?;
    let sc = find_scorecard(&candidate, card)?;
    let proposed = report::scorecard(&eval, sc, when.period, &members(&eval, sc));

    let before: BTreeMap<&str, (Option<f64>, Option<u32>)> = current
        .teams
        .iter()
        .map(|t| (t.team.as_str(), (t.score, t.rank)))
        .collect();
    let teams: Vec<Json> = proposed
        .teams
        .iter()
        .map(|t| {
            let (score, rank) = before.get(t.team.as_str()).copied().unwrap_or_default();
            let change = match (rank, t.rank) {
                (Some(a), Some(b)) => json!(i64::from(a) - i64::from(b)),
                _ => Json::Null,
            };
            json!({
                "team": t.team,
                "name": t.name,
                "current": { "score": num(score), "rank": rank },
                "proposed": { "score": num(t.score), "rank": t.rank },
                "rank_change": change,
            })
        })
        .collect();
    Ok(json!({
        "scorecard": card,
        "period": when.period.to_string(),
        "as_of": format_utc(when.as_of),
        "teams": teams,
        "current": current.to_json(),
        "proposed": proposed.to_json(),
    }))
}
