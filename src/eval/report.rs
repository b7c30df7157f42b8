//! Scorecard and KPI reports: values, targets, statuses, scores and ranks for
//! a set of teams in one period, and their JSON shape (SPEC 11).

use std::rc::Rc;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use super::scoring::{Status, StatusInput, judge, score};
use super::{Evaluation, Subject};
use crate::config::scorecards::{DEFAULT_CAP, Subjects};
use crate::config::{Direction, Scorecard};
use crate::period::{PeriodId, format_utc};

/// One KPI of one team.
#[derive(Debug, Clone)]
pub struct KpiLine {
    pub kpi: String,
    pub value: Option<f64>,
    pub target: Option<f64>,
    pub weight: Option<f64>,
    pub score: Option<f64>,
    pub status: Status,
    pub projected: Option<f64>,
    /// SPEC 16, an open period's end-of-period view: a cumulative KPI's
    /// value ÷ elapsed once `at_risk_after` has elapsed (else none), any
    /// other KPI's value; None in a closed period.
    pub forecast: Option<f64>,
    /// The score of `forecast`, computed as the score is.
    pub projected_score: Option<f64>,
    pub error: Option<String>,
    pub explanation: Vec<String>,
}

/// One scored subject: a team, or a person (then `owner` is set and `team`
/// is the person's team).
#[derive(Debug, Clone)]
pub struct TeamLine {
    pub team: String,
    pub name: String,
    pub score: Option<f64>,
    pub rank: Option<u32>,
    pub kpis: Vec<KpiLine>,
    /// The person's id, for a person.
    pub owner: Option<String>,
    /// A person's rank among the people of the same team.
    pub rank_in_team: Option<u32>,
    /// In an open period: the score the projections would give (SPEC 16).
    pub projected_score: Option<f64>,
}

/// A scorecard (or a plain list of KPIs) for one period.
#[derive(Debug, Clone)]
pub struct Report {
    /// None for `--kpi` without a scorecard: no scores, ranks or weights.
    pub scorecard: Option<String>,
    pub period: PeriodId,
    pub as_of: i64,
    /// Who the lines are: teams or people.
    pub subjects: Subjects,
    /// Whether the period was still open at as-of (then lines carry projections).
    pub open: bool,
    pub teams: Vec<TeamLine>,
    /// Whether each KPI line carries its explanation (and error) when serialized.
    pub explain: bool,
    /// Set on a frozen assessment (SPEC 16): what froze it, and when.
    pub frozen: Option<FrozenMark>,
}

/// The stamp of a frozen assessment: when it was frozen and from what
/// configuration and data (SPEC 16).
#[derive(Debug, Clone, PartialEq)]
pub struct FrozenMark {
    pub frozen_at: i64,
    pub config_version: u64,
    pub content_hash: String,
    /// The sum of the database's record generations at the freeze.
    pub data_generation: i64,
}

/// Evaluates one KPI for one team and judges it.
pub fn kpi_line(
    eval: &Rc<Evaluation>,
    kpi: usize,
    team: u32,
    period: PeriodId,
    weight: Option<f64>,
    cap: f64,
) -> KpiLine {
    subject_line(eval, kpi, Subject::Team(team), period, weight, cap)
}

/// Evaluates one KPI for a team or a person and judges it against the
/// subject's target.
pub fn subject_line(
    eval: &Rc<Evaluation>,
    kpi: usize,
    subject: Subject,
    period: PeriodId,
    weight: Option<f64>,
    cap: f64,
) -> KpiLine {
    let cfg = &eval.config;
    let def = &cfg.kpis[kpi].def;
    let v = eval.value_of(kpi, subject, period);
    let target = match subject {
        Subject::Team(t) => cfg
            .targets
            .resolve(&def.id, &eval.teams.ids[t as usize], period),
        Subject::Owner(o) => cfg.targets.resolve_owner(
            &def.id,
            &eval.owners.ids[o as usize],
            period,
            def.cumulative,
        ),
    };
    let p = eval.calendar().period(period);
    let j = judge(&StatusInput {
        value: v.value,
        error: v.error.is_some(),
        target: target.as_ref(),
        direction: def.direction,
        cumulative: def.cumulative,
        period: &p,
        as_of: eval.as_of,
        at_risk_after: cfg.alerts.at_risk_after,
    });
    let score_of = |x: Option<f64>| match (x, &target) {
        (Some(x), Some(t)) => Some(round(score(x, t, def.direction, cap), 4)),
        _ => None,
    };
    let s = score_of(v.value);
    let forecast = if !p.is_open(eval.as_of) {
        None
    } else if def.cumulative {
        let elapsed = p.elapsed(eval.as_of);
        v.value
            .filter(|_| elapsed >= cfg.alerts.at_risk_after && elapsed > 0.0)
            .map(|x| x / elapsed)
    } else {
        v.value
    };
    KpiLine {
        forecast,
        projected_score: score_of(forecast),
        kpi: def.id.clone(),
        value: v.value,
        target: target.map(|t| t.target),
        weight,
        score: s,
        status: j.status,
        projected: j.projected,
        error: v.error.map(|e| e.to_string()),
        explanation: v.explanation,
    }
}

/// Scores every subject of a scorecard (teams or people) for one period and ranks them.
pub fn scorecard(
    eval: &Rc<Evaluation>,
    card: &Scorecard,
    period: PeriodId,
    subjects: &[Subject],
) -> Report {
    let weights = card.weights_for(period).unwrap_or_default();
    let mut lines: Vec<TeamLine> = subjects
        .iter()
        .map(|&s| {
            let kpis: Vec<KpiLine> = weights
                .iter()
                .filter_map(|(k, w)| {
                    eval.config
                        .kpi_index(k)
                        .map(|i| subject_line(eval, i, s, period, Some(*w), card.cap))
                })
                .collect();
            let score = team_score(&kpis);
            let projected = team_score_of(&kpis, |k| k.projected_score);
            TeamLine {
                projected_score: projected,
                ..line(eval, s, kpis, score)
            }
        })
        .collect();
    rank(&mut lines);
    rank_in_team(&mut lines);
    Report {
        scorecard: Some(card.id.clone()),
        period,
        as_of: eval.as_of,
        subjects: card.subjects,
        open: eval.calendar().period(period).is_open(eval.as_of),
        teams: lines,
        explain: eval.explains(),
        frozen: None,
    }
}

/// KPIs without a scorecard, for teams or people.
pub fn kpis(
    eval: &Rc<Evaluation>,
    kpis: &[usize],
    period: PeriodId,
    subjects: &[Subject],
) -> Report {
    let lines = subjects
        .iter()
        .map(|&s| {
            let kpis = kpis
                .iter()
                // Without a scorecard there is no cap and no score.
                .map(|&k| KpiLine {
                    score: None,
                    ..subject_line(eval, k, s, period, None, DEFAULT_CAP)
                })
                .collect();
            line(eval, s, kpis, None)
        })
        .collect();
    let people = subjects.iter().any(|s| matches!(s, Subject::Owner(_)));
    Report {
        scorecard: None,
        period,
        as_of: eval.as_of,
        subjects: if people {
            Subjects::Owners
        } else {
            Subjects::Teams
        },
        open: eval.calendar().period(period).is_open(eval.as_of),
        teams: lines,
        explain: eval.explains(),
        frozen: None,
    }
}

/// The line of one subject, unranked.
fn line(eval: &Evaluation, s: Subject, kpis: Vec<KpiLine>, score: Option<f64>) -> TeamLine {
    let (team, name, owner) = match s {
        Subject::Team(t) => (
            eval.teams.ids[t as usize].clone(),
            eval.teams.names[t as usize].clone(),
            None,
        ),
        Subject::Owner(o) => (
            eval.owners
                .team_id(o, &eval.teams)
                .unwrap_or_default()
                .to_string(),
            eval.owners.names[o as usize].clone(),
            Some(eval.owners.ids[o as usize].clone()),
        ),
    };
    TeamLine {
        team,
        name,
        score,
        rank: None,
        kpis,
        owner,
        rank_in_team: None,
        projected_score: None,
    }
}

/// A person's rank among the people of the same team (only for people).
fn rank_in_team(lines: &mut [TeamLine]) {
    let mut by_team: std::collections::BTreeMap<String, Vec<(u32, usize)>> = Default::default();
    for (i, l) in lines.iter().enumerate() {
        if let (Some(_), Some(r)) = (&l.owner, l.rank) {
            by_team.entry(l.team.clone()).or_default().push((r, i));
        }
    }
    for members in by_team.values_mut() {
        members.sort();
        let mut prev: Option<(u32, u32)> = None;
        for (pos, &(r, i)) in members.iter().enumerate() {
            let within = match prev {
                Some((pr, pw)) if pr == r => pw,
                _ => pos as u32 + 1,
            };
            lines[i].rank_in_team = Some(within);
            prev = Some((r, within));
        }
    }
}

/// Σ weight × score ÷ Σ weight over the KPIs that have a score.
fn team_score(kpis: &[KpiLine]) -> Option<f64> {
    team_score_of(kpis, |k| k.score)
}

/// Σ weight × s ÷ Σ weight over the KPIs that have an `s`.
fn team_score_of(kpis: &[KpiLine], s: impl Fn(&KpiLine) -> Option<f64>) -> Option<f64> {
    let scored: Vec<(f64, f64)> = kpis
        .iter()
        .filter_map(|k| Some((k.weight?, s(k)?)))
        .collect();
    let total: f64 = scored.iter().map(|(w, _)| w).sum();
    (total > 0.0).then(|| round(scored.iter().map(|(w, s)| w * s).sum::<f64>() / total, 4))
}

impl TeamLine {
    /// The subject's id: the person's, or the team's.
    pub fn key(&self) -> &str {
        self.owner.as_deref().unwrap_or(&self.team)
    }
}

/// Best score first; equal scores share a rank; teams without a score come last, unranked.
fn rank(lines: &mut [TeamLine]) {
    lines.sort_by(|a, b| match (a.score, b.score) {
        (Some(x), Some(y)) => y.total_cmp(&x).then_with(|| a.key().cmp(b.key())),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.key().cmp(b.key()),
    });
    let mut prev: Option<(f64, u32)> = None;
    for (i, line) in lines.iter_mut().enumerate() {
        let Some(s) = line.score else { continue };
        let r = match prev {
            Some((ps, pr)) if ps == s => pr,
            _ => i as u32 + 1,
        };
        line.rank = Some(r);
        prev = Some((s, r));
    }
}

pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// The JSON shape of SPEC 11 and 14: `{"scorecard", "period", "as_of", "subjects", "teams":
/// [{"team", "score", "rank", "kpis": [{"kpi", "value", "target", "weight",
/// "score", "status"}]}]}`; without a scorecard no score, rank or weight; with
/// `explain` each KPI also has its `explanation` (and `error`); a frozen
/// assessment also has `frozen`, `frozen_at`, `config_version`, `content_hash`
/// and `data_generation` (SPEC 16).
impl Serialize for Report {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("scorecard", &self.scorecard)?;
        m.serialize_entry("period", &self.period.to_string())?;
        m.serialize_entry("as_of", &format_utc(self.as_of))?;
        m.serialize_entry("subjects", self.subjects.name())?;
        if let Some(f) = &self.frozen {
            m.serialize_entry("frozen", &true)?;
            m.serialize_entry("frozen_at", &format_utc(f.frozen_at))?;
            m.serialize_entry("config_version", &f.config_version)?;
            m.serialize_entry("content_hash", &f.content_hash)?;
            m.serialize_entry("data_generation", &f.data_generation)?;
        }
        let teams: Vec<TeamJson> = self.teams.iter().map(|t| TeamJson(self, t)).collect();
        m.serialize_entry(self.subjects.name(), &teams)?;
        m.end()
    }
}

struct TeamJson<'a>(&'a Report, &'a TeamLine);

impl Serialize for TeamJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (r, t) = (self.0, self.1);
        let mut m = s.serialize_map(None)?;
        if let Some(owner) = &t.owner {
            m.serialize_entry("owner", owner)?;
            m.serialize_entry("name", &t.name)?;
        }
        m.serialize_entry("team", &t.team)?;
        if r.scorecard.is_some() {
            m.serialize_entry("score", &t.score)?;
            m.serialize_entry("rank", &t.rank)?;
            if t.owner.is_some() {
                m.serialize_entry("rank_in_team", &t.rank_in_team)?;
            }
            if r.open {
                m.serialize_entry("projected_score", &t.projected_score)?;
            }
        }
        let kpis: Vec<KpiJson> = t.kpis.iter().map(|k| KpiJson(r, k)).collect();
        m.serialize_entry("kpis", &kpis)?;
        m.end()
    }
}

struct KpiJson<'a>(&'a Report, &'a KpiLine);

impl Serialize for KpiJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (r, k) = (self.0, self.1);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("kpi", &k.kpi)?;
        m.serialize_entry("value", &k.value)?;
        m.serialize_entry("target", &k.target)?;
        if r.scorecard.is_some() {
            m.serialize_entry("weight", &k.weight)?;
            m.serialize_entry("score", &k.score)?;
        }
        m.serialize_entry("status", k.status.name())?;
        if r.open {
            m.serialize_entry("projected", &k.forecast)?;
            if r.scorecard.is_some() {
                m.serialize_entry("projected_score", &k.projected_score)?;
            }
        }
        if r.explain {
            m.serialize_entry("explanation", &k.explanation)?;
            if let Some(e) = &k.error {
                m.serialize_entry("error", e)?;
            }
        }
        m.end()
    }
}

/// The JSON Schema of [`Report`]'s serialization above, for the API document (SPEC 21).
/// A team report has `teams`, a people report `owners`; fields may be added, never removed.
impl utoipa::PartialSchema for Report {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let num = serde_json::json!({"type": ["number", "null"]});
        let kpi = serde_json::json!({
            "type": "object",
            "required": ["kpi", "value", "target", "status"],
            "properties": {
                "kpi": {"type": "string"}, "value": num, "target": num, "weight": num,
                "score": num, "projected": num, "projected_score": num,
                "status": {"type": "string", "enum": ["met", "missed", "on_track", "at_risk",
                    "no_target", "no_data", "error"]},
                "explanation": {"type": ["array", "null"], "items": {"type": "string"}},
                "error": {"type": ["string", "null"]},
            },
        });
        let rank = serde_json::json!({"type": ["integer", "null"], "minimum": 1});
        let line = serde_json::json!({
            "type": "object",
            "required": ["team", "kpis"],
            "properties": {
                "team": {"type": "string"}, "owner": {"type": "string"}, "name": {"type": "string"},
                "score": num, "projected_score": num, "rank": rank, "rank_in_team": rank,
                "kpis": {"type": "array", "items": kpi},
            },
        });
        let lines = serde_json::json!({"type": "array", "items": line});
        let schema = serde_json::json!({
            "type": "object",
            "description": "The scorecard JSON of SPEC 11 (teams) and SPEC 14 (owners).",
            "required": ["scorecard", "period", "as_of", "subjects"],
            "properties": {
                "scorecard": {"type": ["string", "null"]},
                "period": {"type": "string", "examples": ["2026-Q3"]},
                "as_of": {"type": "string", "format": "date-time"},
                "subjects": {"type": "string", "enum": ["teams", "owners"]},
                "teams": lines, "owners": lines,
            },
        });
        serde_json::from_value(schema).expect("the Report schema is a JSON Schema")
    }
}

impl utoipa::ToSchema for Report {}

/// Direction marker for people: ↑ higher is better, ↓ lower, ◎ closest to target.
pub fn direction_mark(d: Direction) -> &'static str {
    match d {
        Direction::Higher => "↑",
        Direction::Lower => "↓",
        Direction::Target => "◎",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(team: &str, score: Option<f64>) -> TeamLine {
        TeamLine {
            team: team.into(),
            name: team.into(),
            score,
            rank: None,
            kpis: vec![],
            owner: None,
            rank_in_team: None,
            projected_score: None,
        }
    }

    #[test]
    fn ranks_best_first_with_shared_ranks_and_unscored_last() {
        let mut l = vec![
            line("a", Some(80.0)),
            line("b", None),
            line("c", Some(95.0)),
            line("d", Some(80.0)),
        ];
        rank(&mut l);
        let got: Vec<(&str, Option<u32>)> = l.iter().map(|t| (t.team.as_str(), t.rank)).collect();
        assert_eq!(
            got,
            [("c", Some(1)), ("a", Some(2)), ("d", Some(2)), ("b", None)]
        );
    }

    #[test]
    fn team_score_skips_kpis_without_a_score() {
        let k = |w, s| KpiLine {
            kpi: "x".into(),
            value: None,
            target: None,
            weight: Some(w),
            score: s,
            status: Status::Met,
            projected: None,
            forecast: None,
            projected_score: None,
            error: None,
            explanation: vec![],
        };
        assert_eq!(
            team_score(&[k(25.0, Some(100.0)), k(15.0, Some(60.0)), k(10.0, None)]),
            Some(85.0)
        );
        assert_eq!(team_score(&[k(10.0, None)]), None);
    }
}
