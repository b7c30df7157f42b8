//! Alert conditions: which (kind, KPI, team, period) holds right now.
//!
//! For every KPI that has targets and every team of the tree, over the two
//! watched periods of the alert grain, a value is judged exactly as a report
//! judges it ([`kpi_line`], SPEC 7): `at_risk` holds when the open period is
//! at risk (only after `at_risk_after` of it has passed; cumulative KPIs on
//! their pace projection), `missed` when the period that closed last missed
//! its target. Nothing here touches the alert state.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::config::{ConfigSnapshot, Direction};
use crate::eval::Evaluation;
use crate::eval::report::kpi_line;
use crate::eval::scoring::Status;
use crate::period::{Millis, PeriodId};

use super::Kind;

/// The two periods of the alert grain that alerts watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchedPeriods {
    /// The period that contains as-of (`at_risk`).
    pub open: PeriodId,
    /// The one before it, the period that closed last (`missed`).
    pub closed: PeriodId,
}

impl WatchedPeriods {
    pub fn contains(&self, period: &str) -> bool {
        period == self.open.to_string() || period == self.closed.to_string()
    }
}

pub fn watched_periods(config: &ConfigSnapshot, as_of: Millis) -> WatchedPeriods {
    let open = config
        .settings
        .calendar
        .containing(config.alerts.grain, as_of);
    WatchedPeriods {
        open,
        closed: open.prev(),
    }
}

/// What one alert is about. Its `id` is also the payload's `id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertKey {
    pub kind: Kind,
    pub kpi: String,
    pub team: String,
    pub period: String,
}

impl AlertKey {
    /// "missed:win_rate:north:2026-Q3": stable for the alert across transitions.
    pub fn id(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.kind.as_str(),
            self.kpi,
            self.team,
            self.period
        )
    }
}

/// Whether a condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Holds,
    Clear,
    /// The value could not be computed (a formula error): the alert keeps its
    /// state rather than flapping on a transient failure.
    Unknown,
}

/// One judged condition, with the numbers a notification carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub kpi_name: String,
    pub value: Option<f64>,
    pub target: Option<f64>,
    pub projected: Option<f64>,
    pub direction: Direction,
    pub verdict: Verdict,
}

/// Judges every condition over `periods`. Each (KPI, team, period) with a
/// target yields two entries, one per kind, so an `at_risk` alert of a
/// period that has just closed is found clear (and resolved) with its final
/// numbers.
pub fn judge_all(eval: &Rc<Evaluation>, periods: &[PeriodId]) -> BTreeMap<AlertKey, Condition> {
    let cfg = &eval.config;
    let mut out = BTreeMap::new();
    for kpi_id in cfg.targets.kpis.keys() {
        let Some(idx) = cfg.kpi_index(kpi_id) else {
            continue;
        };
        let def = &cfg.kpis[idx].def;
        for team in 0..eval.teams.len() as u32 {
            let team_id = &eval.teams.ids[team as usize];
            for &period in periods {
                if cfg.targets.resolve(kpi_id, team_id, period).is_none() {
                    continue;
                }
                let line = kpi_line(eval, idx, team, period, None, 1.0);
                for (kind, status) in [
                    (Kind::AtRisk, Status::AtRisk),
                    (Kind::Missed, Status::Missed),
                ] {
                    let verdict = match line.status {
                        Status::Error => Verdict::Unknown,
                        s if s == status => Verdict::Holds,
                        _ => Verdict::Clear,
                    };
                    let key = AlertKey {
                        kind,
                        kpi: kpi_id.clone(),
                        team: team_id.clone(),
                        period: period.to_string(),
                    };
                    out.insert(
                        key,
                        Condition {
                            kpi_name: def.name.clone(),
                            value: line.value,
                            target: line.target,
                            projected: line.projected,
                            direction: def.direction,
                            verdict,
                        },
                    );
                }
            }
        }
    }
    out
}
