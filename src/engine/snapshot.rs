//! What the engine serves at one moment: a checked configuration and one
//! data state of the records, with their version and generation. A
//! [`Snapshot`] is immutable; it answers typed requests (scorecards, plain
//! KPIs, one value, a what-if preview) and resolves ids into one typed error.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;

use super::error::{EngineError, Kind};
use crate::config::scorecards::DEFAULT_CAP;
use crate::config::scorecards::Subjects;
use crate::config::targets::{KpiTargets, TargetRule};
use crate::config::{ConfigSnapshot, Scorecard, Target};
use crate::eval::report::{self, KpiLine, Report};
use crate::eval::{Asked, Evaluation, Records, Subject};
use crate::period::{Grain, Millis, PeriodId, parse_period_range};
use crate::store::Owners;
use crate::store::TeamTree;

/// The longest `--period` range evaluated at once (25 years of quarters).
pub const MAX_PERIODS: usize = 100;

/// One configuration and one data state, served together.
#[derive(Clone)]
pub struct Snapshot {
    pub config: Arc<ConfigSnapshot>,
    pub records: Records,
    /// The config history version of `config` (0 when not recorded).
    pub version: u64,
    /// When this configuration was applied (RFC 3339, UTC).
    pub loaded_at: String,
    pub content_hash: String,
    /// Counts the changes of the records since the engine was opened.
    pub data_generation: u64,
    /// The frozen assessments (SPEC 16), served instead of a live evaluation.
    pub frozen: Arc<super::freeze::FrozenSet>,
}

/// The instant and period a request asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct When {
    pub as_of: Millis,
    pub period: PeriodId,
}

/// Scorecards, or plain KPIs, over some periods.
#[derive(Debug, Clone, Default)]
pub struct EvalRequest {
    /// Scorecard ids; empty: every scorecard (unless `kpis` are given).
    pub scorecards: Vec<String>,
    /// Plain KPIs, without scores (instead of scorecards).
    pub kpis: Vec<String>,
    pub periods: Vec<PeriodId>,
    pub as_of: Millis,
    /// Show only this team (for people: the people of its subtree). Ranks stay
    /// those among all of a scorecard's subjects.
    pub team: Option<String>,
    /// Show only this person.
    pub owner: Option<String>,
    /// Plain KPIs for people instead of teams.
    pub owners: bool,
    /// Keep each value's queries and results (a frozen period is then evaluated live).
    pub explain: bool,
    /// Evaluate frozen periods afresh instead of serving their frozen result.
    pub live: bool,
}

/// What a preview proposes.
#[derive(Debug, Clone, Default)]
pub struct Proposal {
    /// The weight set to use for the period, whole.
    pub weights: Option<Vec<(String, f64)>>,
    /// KPI → a target for every team in the period.
    pub targets: Vec<(String, f64)>,
}

/// One value, judged (GET /api/values).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ValueReport {
    pub kpi: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub team: String,
    pub period: String,
    pub as_of: String,
    pub value: Option<f64>,
    pub target: Option<f64>,
    pub status: &'static str,
    pub projected: Option<f64>,
    pub explanation: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One value taken apart (the dashboard's explain page): the judged line, the target and the
/// rule of targets.toml it came from, and the queries asked with their answer slots.
#[derive(Debug, Clone)]
pub struct Explained {
    pub line: KpiLine,
    pub target: Option<Target>,
    pub rule: Option<TargetRule>,
    pub asked: Vec<Asked>,
}

/// A score and rank.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct Standing {
    pub score: Option<f64>,
    pub rank: Option<u32>,
}

/// One team in a preview.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PreviewTeam {
    pub team: String,
    pub name: String,
    pub current: Standing,
    pub proposed: Standing,
    /// Current rank minus proposed rank: positive, the team moves up.
    pub rank_change: Option<i64>,
}

/// Current and proposed scores side by side (POST /api/preview).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PreviewReport {
    pub scorecard: String,
    pub period: String,
    pub as_of: String,
    pub teams: Vec<PreviewTeam>,
    pub current: Report,
    pub proposed: Report,
}

impl Snapshot {
    /// Reads an instant (`as_of`, default `now`) and a period (default: the
    /// quarter that contains the instant).
    pub fn when(
        &self,
        as_of: Option<&str>,
        period: Option<&str>,
        now: Millis,
    ) -> Result<When, EngineError> {
        let as_of = self.instant(as_of, now)?;
        let period = match given(period) {
            Some(p) => p
                .parse::<PeriodId>()
                .map_err(|e| EngineError::bad_input("period", e))?,
            None => self.current_period(as_of)?,
        };
        Ok(When { as_of, period })
    }

    /// Reads an instant, default `now`.
    pub fn instant(&self, as_of: Option<&str>, now: Millis) -> Result<Millis, EngineError> {
        match given(as_of) {
            Some(t) => self
                .config
                .settings
                .calendar
                .parse_time(t)
                .map_err(|e| EngineError::bad_input("as_of", e)),
            None => Ok(now),
        }
    }

    /// A period id or a range (`2025-Q1..2026-Q4`), default the quarter of `as_of`.
    pub fn periods(&self, spec: Option<&str>, as_of: Millis) -> Result<Vec<PeriodId>, EngineError> {
        let Some(spec) = given(spec) else {
            return Ok(vec![self.current_period(as_of)?]);
        };
        let periods = parse_period_range(spec).map_err(|e| EngineError::bad_input("period", e))?;
        if periods.len() > MAX_PERIODS {
            return Err(EngineError::bad_input(
                "period",
                format!(
                    "{spec} has {} periods; at most {MAX_PERIODS} are evaluated at once",
                    periods.len()
                ),
            ));
        }
        Ok(periods)
    }

    /// The quarter that contains `as_of`, when it is one a period id can name.
    fn current_period(&self, as_of: Millis) -> Result<PeriodId, EngineError> {
        let p = self
            .config
            .settings
            .calendar
            .containing(Grain::Quarter, as_of);
        p.to_string()
            .parse::<PeriodId>()
            .map_err(|e| EngineError::bad_input("as_of", format!("{as_of} is out of range: {e}")))
    }

    pub fn scorecard(&self, id: &str) -> Result<&Scorecard, EngineError> {
        self.config.scorecard(id).ok_or_else(|| {
            let ids = self.config.scorecards.iter().map(|s| s.id.as_str());
            EngineError::unknown(Kind::Scorecard, id, ids)
        })
    }

    /// The index of KPI `id`.
    pub fn kpi(&self, id: &str) -> Result<usize, EngineError> {
        self.config.kpi_index(id).ok_or_else(|| {
            let ids = self.config.kpis.iter().map(|k| k.def.id.as_str());
            EngineError::unknown(Kind::Kpi, id, ids)
        })
    }

    pub fn teams(&self) -> Result<Arc<TeamTree>, EngineError> {
        Ok(self.records.store.teams()?)
    }

    /// The index of person `id`.
    pub fn owner(&self, id: &str) -> Result<u32, EngineError> {
        let owners = self.records.store.owners()?;
        owners.index(id).ok_or_else(|| {
            EngineError::unknown(Kind::Owner, id, owners.ids.iter().map(String::as_str))
        })
    }

    /// The index of team `id`.
    pub fn team(&self, id: &str) -> Result<u32, EngineError> {
        let tree = self.teams()?;
        tree.index(id).ok_or_else(|| {
            EngineError::unknown(Kind::Team, id, tree.ids.iter().map(String::as_str))
        })
    }

    /// An evaluation of this snapshot as of `as_of`, batched over `periods`.
    pub fn evaluation(
        &self,
        as_of: Millis,
        periods: &[PeriodId],
        explain: bool,
    ) -> Result<Rc<Evaluation>, EngineError> {
        Ok(Evaluation::new(
            self.config.clone(),
            self.records.clone(),
            as_of,
            periods,
            explain,
        )?)
    }

    /// Scorecard reports (each period × each scorecard, in that order) or
    /// plain KPI reports (one per period).
    pub fn evaluate(&self, req: &EvalRequest) -> Result<Vec<Report>, EngineError> {
        let _timer = crate::metrics::get().evaluation_seconds.start_timer();
        let team = req.team.as_deref().map(|t| self.team(t)).transpose()?;
        let owner = req.owner.as_deref().map(|o| self.owner(o)).transpose()?;
        let tree = self.teams()?;
        // What is shown of the ranked lines (ranks stay those among all).
        let shown = |l: &report::TeamLine| {
            let in_team = team.is_none_or(|t| match &l.owner {
                None => l.team == tree.ids[t as usize],
                Some(_) => tree
                    .index(&l.team)
                    .is_some_and(|lt| tree.up[lt as usize].contains(&t)),
            });
            let is_owner = req
                .owner
                .as_deref()
                .is_none_or(|o| l.owner.as_deref() == Some(o));
            in_team && is_owner
        };
        if !req.kpis.is_empty() {
            if !req.scorecards.is_empty() {
                return Err(EngineError::bad_input(
                    "kpi",
                    "use a scorecard or KPIs, not both",
                ));
            }
            let ids = req
                .kpis
                .iter()
                .map(|k| self.kpi(k))
                .collect::<Result<Vec<_>, _>>()?;
            let eval = self.evaluation(req.as_of, &req.periods, req.explain)?;
            let subjects: Vec<Subject> = match (owner, req.owners, team) {
                (Some(o), _, _) => vec![Subject::Owner(o)],
                (None, true, _) => people(&eval.teams, &eval.owners, None, false),
                (None, false, Some(t)) => vec![Subject::Team(t)],
                (None, false, None) => teams(&eval.teams, None),
            };
            eval.prefetch(&ids, &subjects, &req.periods);
            return Ok(req
                .periods
                .iter()
                .map(|p| {
                    let mut r = report::kpis(&eval, &ids, *p, &subjects);
                    r.teams.retain(|l| shown(l));
                    r
                })
                .collect());
        }
        let cards: Vec<&Scorecard> = if req.scorecards.is_empty() {
            self.config.scorecards.iter().collect()
        } else {
            req.scorecards
                .iter()
                .map(|id| self.scorecard(id))
                .collect::<Result<_, _>>()?
        };
        // Frozen periods are served as they were frozen (SPEC 16); only the
        // others are evaluated.
        let mut frozen: Vec<Option<Report>> = req
            .periods
            .iter()
            .flat_map(|p| cards.iter().map(|c| self.frozen_report(&c.id, *p, req)))
            .collect();
        let live: Vec<PeriodId> = req
            .periods
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                frozen[i * cards.len()..(i + 1) * cards.len()]
                    .iter()
                    .any(Option::is_none)
            })
            .map(|(_, p)| *p)
            .collect();
        let eval = match live.is_empty() {
            true => None,
            false => Some(self.evaluation(req.as_of, &live, req.explain)?),
        };
        if let Some(eval) = &eval {
            eval.prefetch_scorecards(&cards, &live);
        }
        let mut out = Vec::with_capacity(req.periods.len() * cards.len());
        for (i, p) in req.periods.iter().enumerate() {
            for (j, card) in cards.iter().enumerate() {
                let mut r = match (frozen[i * cards.len() + j].take(), &eval) {
                    (Some(r), _) => r,
                    (None, Some(eval)) => report::scorecard(eval, card, *p, &members(eval, card)),
                    (None, None) => unreachable!("a period with a live report is evaluated"),
                };
                r.teams.retain(|l| shown(l));
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The periods of `periods` in which some subject of scorecard `card` has a KPI value
    /// that is a number other than 0, as of `as_of` (a frozen period: in its frozen report):
    /// what the scorecard's reports of those periods would show, but each period stops at its
    /// first such value instead of scoring every subject.
    pub fn periods_with_values(
        &self,
        card: &str,
        periods: &[PeriodId],
        as_of: Millis,
    ) -> Result<Vec<PeriodId>, EngineError> {
        let card = self.scorecard(card)?;
        let req = EvalRequest {
            scorecards: vec![card.id.clone()],
            periods: periods.to_vec(),
            as_of,
            ..EvalRequest::default()
        };
        let has = |x: Option<f64>| x.is_some_and(|v| v.is_finite() && v != 0.0);
        let eval = self.evaluation(as_of, periods, false)?;
        let subjects = members(&eval, card);
        let live = |p: PeriodId| {
            let kpis: Vec<usize> = (card.weights_for(p).unwrap_or_default().iter())
                .filter_map(|(k, _)| self.config.kpi_index(k))
                .collect();
            subjects
                .iter()
                .any(|&s| kpis.iter().any(|&k| has(eval.value_of(k, s, p).value)))
        };
        Ok(periods
            .iter()
            .copied()
            .filter(|&p| match self.frozen_report(&card.id, p, &req) {
                Some(r) => r.teams.iter().any(|l| l.kpis.iter().any(|k| has(k.value))),
                None => live(p),
            })
            .collect())
    }

    /// One value of KPI `kpi` for a team or a person.
    pub fn value(
        &self,
        kpi: &str,
        who: Who<'_>,
        when: When,
        explain: bool,
    ) -> Result<ValueReport, EngineError> {
        let _timer = crate::metrics::get().evaluation_seconds.start_timer();
        let idx = self.kpi(kpi)?;
        let subject = self.subject(who)?;
        let eval = self.evaluation(when.as_of, &[when.period], explain)?;
        let line: KpiLine =
            report::subject_line(&eval, idx, subject, when.period, None, DEFAULT_CAP);
        let (owner, team) = match subject {
            Subject::Team(t) => (None, eval.teams.ids[t as usize].clone()),
            Subject::Owner(o) => (
                Some(eval.owners.ids[o as usize].clone()),
                eval.owners
                    .team_id(o, &eval.teams)
                    .unwrap_or_default()
                    .to_string(),
            ),
        };
        Ok(ValueReport {
            kpi: kpi.to_string(),
            owner,
            team,
            period: when.period.to_string(),
            as_of: crate::period::format_utc(when.as_of),
            value: line.value,
            target: line.target,
            status: line.status.name(),
            projected: line.projected,
            explanation: explain.then_some(line.explanation),
            error: line.error,
        })
    }

    /// One value of KPI `kpi` explained: its line scored with `weight` and `cap` (a
    /// scorecard's), the target rule that applied, and the queries behind it.
    pub fn explain(
        &self,
        kpi: &str,
        who: Who<'_>,
        when: When,
        weight: Option<f64>,
        cap: f64,
    ) -> Result<Explained, EngineError> {
        let idx = self.kpi(kpi)?;
        let subject = self.subject(who)?;
        let eval = self.evaluation(when.as_of, &[when.period], true)?;
        let line = report::subject_line(&eval, idx, subject, when.period, weight, cap);
        let def = &self.config.kpis[idx].def;
        let targets = &self.config.targets;
        let resolved = match subject {
            Subject::Team(t) => targets.resolve_rule(kpi, &eval.teams.ids[t as usize], when.period),
            Subject::Owner(o) => targets.resolve_owner_rule(
                kpi,
                &eval.owners.ids[o as usize],
                when.period,
                def.cumulative,
            ),
        };
        let (target, rule) = resolved.map_or((None, None), |(t, r)| (Some(t), Some(r)));
        Ok(Explained {
            line,
            target,
            rule,
            asked: eval.asked(),
        })
    }

    /// The first `limit` records one asked query counts, and how many it counts in all.
    pub fn records_behind(
        &self,
        asked: &Asked,
        limit: usize,
    ) -> Result<crate::query::RecordPage, EngineError> {
        self.records
            .store
            .records(
                &asked.query,
                &asked.agg,
                asked.period,
                asked.slot,
                &self.config.settings.calendar,
                limit,
            )
            .map_err(|e| EngineError::bad_input("records", e.to_string()))
    }

    fn subject(&self, who: Who<'_>) -> Result<Subject, EngineError> {
        Ok(match who {
            Who::Team(t) => Subject::Team(self.team(t)?),
            Who::Owner(o) => Subject::Owner(self.owner(o)?),
        })
    }

    /// Scores of `card` for `when` under `proposal`, beside `current` (this
    /// snapshot's report of the same scorecard and period); nothing is written.
    pub fn preview(
        &self,
        card: &str,
        when: When,
        proposal: &Proposal,
        current: &Report,
    ) -> Result<PreviewReport, EngineError> {
        self.scorecard(card)?;
        let names = proposal
            .weights
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .chain(proposal.targets.iter().map(|(k, _)| k));
        let unknown: Vec<String> = names
            .filter_map(|k| self.kpi(k).err().map(|e| e.to_string()))
            .collect();
        if !unknown.is_empty() {
            return Err(EngineError::Rejected {
                message: "the proposal names unknown KPIs".into(),
                diagnostics: unknown
                    .into_iter()
                    .map(|m| crate::diag::Diagnostic::file("proposal", m))
                    .collect(),
            });
        }
        self.check_proposal(proposal)?;
        let candidate = Snapshot {
            config: Arc::new(self.proposed_config(card, when.period, proposal)?),
            records: self.records.clone(),
            version: self.version,
            loaded_at: self.loaded_at.clone(),
            content_hash: String::new(),
            data_generation: self.data_generation,
            frozen: self.frozen.clone(),
        };
        let eval = candidate.evaluation(when.as_of, &[when.period], false)?;
        let sc = candidate.scorecard(card)?;
        let proposed = report::scorecard(&eval, sc, when.period, &members(&eval, sc));
        let before: BTreeMap<&str, Standing> = current
            .teams
            .iter()
            .map(|t| {
                let s = Standing {
                    score: t.score,
                    rank: t.rank,
                };
                (t.key(), s)
            })
            .collect();
        let teams = proposed
            .teams
            .iter()
            .map(|t| {
                let current = before.get(t.key()).copied().unwrap_or_default();
                PreviewTeam {
                    team: t.team.clone(),
                    name: t.name.clone(),
                    current,
                    proposed: Standing {
                        score: t.score,
                        rank: t.rank,
                    },
                    rank_change: match (current.rank, t.rank) {
                        (Some(a), Some(b)) => Some(i64::from(a) - i64::from(b)),
                        _ => None,
                    },
                }
            })
            .collect();
        Ok(PreviewReport {
            scorecard: card.to_string(),
            period: when.period.to_string(),
            as_of: crate::period::format_utc(when.as_of),
            teams,
            current: current.clone(),
            proposed,
        })
    }

    /// The checks the PUT routes make of the same weights and targets (a
    /// weight's range, a target's range and scoreability): a preview never
    /// shows what could not be saved.
    fn check_proposal(&self, proposal: &Proposal) -> Result<(), EngineError> {
        let mut errors = Vec::new();
        if let Some(weights) = &proposal.weights {
            for (kpi, w) in weights {
                if let Err(m) = crate::config::scorecards::check_weight(*w) {
                    errors.push(format!("weight of {kpi} {m}"));
                }
            }
            if weights.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
                errors.push("the weight set sums to 0".to_string());
            }
        }
        for (kpi, target) in &proposal.targets {
            let Some(i) = self.config.kpi_index(kpi) else {
                continue;
            };
            let t = Target {
                target: *target,
                threshold: None,
                stretch: None,
            };
            if let Err(m) =
                crate::config::targets::check_target(&t, self.config.kpis[i].def.direction)
            {
                errors.push(format!("target of {kpi}: {m}"));
            }
        }
        if errors.is_empty() {
            return Ok(());
        }
        Err(EngineError::rejected(
            "the proposal does not check (a PUT of it would be refused)",
            errors
                .into_iter()
                .map(|m| crate::diag::Diagnostic::file("proposal", m))
                .collect(),
        ))
    }

    /// A copy of the configuration with the proposal made in memory; the
    /// served one is never touched.
    fn proposed_config(
        &self,
        card: &str,
        period: PeriodId,
        proposal: &Proposal,
    ) -> Result<ConfigSnapshot, EngineError> {
        let cfg = &self.config;
        let mut candidate =
            crate::config::from_files(&cfg.root, cfg.files.clone()).map_err(EngineError::Config)?;
        if let Some(w) = &proposal.weights {
            let sc = candidate
                .scorecards
                .iter_mut()
                .find(|s| s.id == card)
                .ok_or_else(|| {
                    EngineError::unknown(Kind::Scorecard, card, std::iter::empty::<&str>())
                })?;
            let key = period.to_string();
            sc.weights.retain(|(k, _)| *k != key);
            sc.weights.insert(0, (key, w.clone()));
        }
        for (kpi, target) in &proposal.targets {
            let by_key = BTreeMap::from([(
                "default".to_string(),
                Target {
                    target: *target,
                    threshold: None,
                    stretch: None,
                },
            )]);
            candidate.targets.kpis.insert(
                kpi.clone(),
                KpiTargets {
                    // The proposal is every subject's target: teams' and people's.
                    per_owner: by_key.clone(),
                    by_key,
                    ..KpiTargets::default()
                },
            );
        }
        Ok(candidate)
    }
}

/// A team or a person, by id.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    Team(&'a str),
    Owner(&'a str),
}

/// Who a scorecard scores: its teams in tree order, or its people.
pub fn members(eval: &Evaluation, card: &Scorecard) -> Vec<Subject> {
    match card.subjects {
        Subjects::Teams => teams(&eval.teams, card.teams.as_deref()),
        Subjects::Owners => people(&eval.teams, &eval.owners, card.teams.as_deref(), true),
    }
}

/// Teams in tree order: those listed, or every team.
fn teams(tree: &TeamTree, listed: Option<&[String]>) -> Vec<Subject> {
    tree.tree_order()
        .into_iter()
        .filter(|t| listed.is_none_or(|l| l.contains(&tree.ids[*t as usize])))
        .map(Subject::Team)
        .collect()
}

/// People by team (in tree order), then id: those whose team lies in the
/// subtree of a listed team (every person when none is), active ones only
/// when asked.
fn people(
    tree: &TeamTree,
    owners: &Owners,
    listed: Option<&[String]>,
    active_only: bool,
) -> Vec<Subject> {
    let position: std::collections::HashMap<u32, usize> = tree
        .tree_order()
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i))
        .collect();
    let in_listed = |o: usize| match (listed, owners.team[o]) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(l), Some(t)) => tree.up[t as usize]
            .iter()
            .any(|a| l.contains(&tree.ids[*a as usize])),
    };
    let mut out: Vec<u32> = (0..owners.len())
        .filter(|&o| in_listed(o) && (!active_only || owners.active[o]))
        .map(|o| o as u32)
        .collect();
    out.sort_by_key(|&o| {
        let team = owners.team[o as usize].and_then(|t| position.get(&t).copied());
        (team.unwrap_or(usize::MAX), o)
    });
    out.into_iter().map(Subject::Owner).collect()
}

/// A parameter that was given and is not blank.
fn given(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}
