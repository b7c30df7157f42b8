//! Evaluating KPIs over teams × periods: one [`Evaluation`] per request.
//!
//! An evaluation owns two caches. Query shapes: the first time any formula
//! aggregates a (query, aggregate) shape, it is executed once for every team
//! and every period of the evaluation (see `query::exec`), so identical
//! queries of different KPIs, teams and periods share one pass. KPI values:
//! each (KPI, team, period) runs its formula at most once, and `kpi()` calls
//! reuse it; a call stack catches cycles that literal checks could not see.

pub mod check;
pub mod formula_tests;
pub mod memo;
pub mod no_records;
mod prefetch;
pub mod report;
pub mod scoring;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::{ConfigSnapshot, Kpi};
use crate::formula::{FormulaError, Host, HostError, Names, Outcome};
use crate::period::{Calendar, Millis, PeriodId};
use crate::query::{Agg, AggValue, Query, QueryError, ShapeResult};
use crate::store::{Owners, RecordStore, Schema, StoreError, TeamTree};

pub use memo::ShapeMemo;

/// The records an evaluation reads: a store, and the memo of the shapes
/// answered from it (shared by the evaluations of one data state).
#[derive(Clone)]
pub struct Records {
    pub store: Arc<dyn RecordStore>,
    pub memo: Arc<ShapeMemo>,
}

impl Records {
    /// `store` with a memo of its own.
    pub fn new(store: Arc<dyn RecordStore>) -> Records {
        Records {
            store,
            memo: Arc::default(),
        }
    }
}

/// Why a KPI has no value for one team and period.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("{kpi}: {error}")]
    Formula { kpi: String, error: FormulaError },
    #[error("KPIs call each other in a cycle: {0}")]
    Cycle(String),
}

/// One KPI value for one team and period.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiValue {
    pub value: Option<f64>,
    pub error: Option<ValueError>,
    /// The queries and KPI references the formula used, with their results.
    pub explanation: Vec<String>,
}

/// Who a value is for: a team (its whole subtree) or one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Team(u32),
    Owner(u32),
}

/// One value: KPI, subject, period, and the ms of the period that count
/// (None: all of it; SPEC 16's `to_date()` and `same_span()`).
type ValueKey = (usize, Subject, PeriodId, Option<i64>);

/// The state of one evaluation request.
pub struct Evaluation {
    pub config: Arc<ConfigSnapshot>,
    pub records: Records,
    pub teams: Arc<TeamTree>,
    pub owners: Arc<Owners>,
    pub as_of: Millis,
    explain: bool,
    periods: RefCell<Vec<PeriodId>>,
    shapes: RefCell<HashMap<(Query, Agg), Arc<ShapeResult>>>,
    values: RefCell<HashMap<ValueKey, KpiValue>>,
    stack: RefCell<Vec<ValueKey>>,
    traces: RefCell<Vec<Vec<String>>>,
    /// With `explain`: every query asked, in order, with the period and answer slot it was
    /// asked for (what the records behind a value are read with).
    asked: RefCell<Vec<Asked>>,
    /// While probing ([`Evaluation::prefetch`]): the shapes the formulas ask, not answered.
    probe: RefCell<Option<Vec<(Query, Agg, PeriodId)>>>,
}

/// One query a formula asked while explaining: the shape, its period and its answer slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub query: Query,
    pub agg: Agg,
    pub period: PeriodId,
    pub slot: u32,
}

impl Evaluation {
    /// `periods` are the periods the caller will ask for; queries are batched over them
    /// (and the period before each, which growth KPIs read).
    pub fn new(
        config: Arc<ConfigSnapshot>,
        records: Records,
        as_of: Millis,
        periods: &[PeriodId],
        explain: bool,
    ) -> Result<Rc<Evaluation>, StoreError> {
        let teams = records.store.teams()?;
        let owners = records.store.owners()?;
        let mut universe: Vec<PeriodId> = periods.iter().flat_map(|p| [p.prev(), *p]).collect();
        universe.sort();
        universe.dedup();
        Ok(Rc::new(Evaluation {
            config,
            records,
            teams,
            owners,
            as_of,
            explain,
            periods: RefCell::new(universe),
            shapes: RefCell::new(HashMap::new()),
            values: RefCell::new(HashMap::new()),
            stack: RefCell::new(Vec::new()),
            traces: RefCell::new(Vec::new()),
            asked: RefCell::new(Vec::new()),
            probe: RefCell::new(None),
        }))
    }

    pub fn calendar(&self) -> &Calendar {
        &self.config.settings.calendar
    }

    /// The value of KPI `kpi` (an index into the snapshot's KPIs) for `team` and `period`.
    pub fn value(self: &Rc<Self>, kpi: usize, team: u32, period: PeriodId) -> KpiValue {
        self.value_of(kpi, Subject::Team(team), period)
    }

    /// The value of KPI `kpi` for a team or a person in `period`.
    pub fn value_of(self: &Rc<Self>, kpi: usize, subject: Subject, period: PeriodId) -> KpiValue {
        self.value_cut(kpi, subject, period, None)
    }

    /// The value of KPI `kpi` over the first `cut` ms of `period` (all of it when None).
    pub fn value_cut(
        self: &Rc<Self>,
        kpi: usize,
        subject: Subject,
        period: PeriodId,
        cut: Option<i64>,
    ) -> KpiValue {
        let key = (kpi, subject, period, cut);
        if let Some(v) = self.values.borrow().get(&key) {
            return v.clone();
        }
        if self.stack.borrow().contains(&key) {
            let names: Vec<String> = self
                .stack
                .borrow()
                .iter()
                .map(|(k, _, _, _)| self.config.kpis[*k].def.id.clone())
                .collect();
            return KpiValue {
                value: None,
                error: Some(ValueError::Cycle(format!(
                    "{} → {}",
                    names.join(" → "),
                    self.config.kpis[kpi].def.id
                ))),
                explanation: vec![],
            };
        }
        let result = self.run(key);
        // A probe's value is made of placeholders: never kept.
        if self.probe.borrow().is_none() {
            self.values.borrow_mut().insert(key, result.clone());
        }
        result
    }

    fn run(self: &Rc<Self>, key: ValueKey) -> KpiValue {
        let (kpi, subject, period, cut) = key;
        let k: &Kpi = &self.config.kpis[kpi];
        self.stack.borrow_mut().push(key);
        self.traces.borrow_mut().push(Vec::new());
        let host: Rc<dyn Host> = Rc::new(Frame {
            eval: self.clone(),
            subject,
            period,
            cut,
        });
        let team_of = |t: u32| {
            (
                self.teams.ids[t as usize].as_str(),
                self.teams.names[t as usize].as_str(),
            )
        };
        let names = match subject {
            Subject::Team(t) => Names {
                team: team_of(t),
                owner: None,
            },
            Subject::Owner(o) => {
                let team = self.owners.team[o as usize].map_or(("", ""), team_of);
                Names {
                    team,
                    owner: Some((
                        self.owners.ids[o as usize].as_str(),
                        self.owners.names[o as usize].as_str(),
                        team.0,
                    )),
                }
            }
        };
        let outcome = self
            .config
            .engine
            .run(&k.ast, &k.def.origin, host, names, &k.params);
        let explanation = self.traces.borrow_mut().pop().unwrap_or_default();
        self.stack.borrow_mut().pop();
        match outcome {
            // The formula still runs (so `kpi check` sees its errors); only its value is dropped.
            // A probe's value is dropped anyway, and asking whether a table is empty would load
            // it: the probe's time would go on loading, not on finding the shapes to answer.
            Outcome::Value(_)
                if self.probe.borrow().is_none()
                    && no_records::reads_only_empty(&self.config, &*self.records.store, kpi) =>
            {
                let mut explanation = explanation;
                explanation.push("every entity it reads holds no records: no data".into());
                KpiValue {
                    value: None,
                    error: None,
                    explanation,
                }
            }
            Outcome::Value(v) => KpiValue {
                value: Some(v),
                error: None,
                explanation,
            },
            Outcome::NoData => KpiValue {
                value: None,
                error: None,
                explanation,
            },
            Outcome::Error(error) => KpiValue {
                value: None,
                error: Some(ValueError::Formula {
                    kpi: k.def.id.clone(),
                    error,
                }),
                explanation,
            },
        }
    }

    fn trace(&self, line: impl FnOnce() -> String) {
        if self.explain
            && let Some(t) = self.traces.borrow_mut().last_mut()
        {
            t.push(line());
        }
    }

    fn shape(
        &self,
        query: &Query,
        agg: &Agg,
        period: PeriodId,
    ) -> Result<Arc<ShapeResult>, QueryError> {
        let key = (query.clone(), agg.clone());
        if let Some(s) = self.shapes.borrow().get(&key)
            && s.periods().contains(&period)
        {
            return Ok(s.clone());
        }
        // A cut query (a period to date) is asked for the open period and the one before it
        // (`same_span()`): answering it over the whole batch would scan every row once per
        // period for nothing. Each period's answer is the same whatever the batch.
        let periods = if query.is_cut() {
            vec![period.prev(), period]
        } else {
            // A period outside the batch (rare: a formula reaching far back) joins it.
            let mut ps = self.periods.borrow_mut();
            if !ps.contains(&period) {
                ps.push(period);
                ps.sort();
            }
            ps.clone()
        };
        let result = self.records.memo.answer(
            &*self.records.store,
            self.calendar(),
            query,
            agg,
            &periods,
            period,
        )?;
        self.shapes.borrow_mut().insert(key, result.clone());
        Ok(result)
    }

    /// With `explain`: the distinct queries asked so far, in the order first asked.
    pub fn asked(&self) -> Vec<Asked> {
        self.asked.borrow().clone()
    }

    /// Whether values keep their explanation.
    pub fn explains(&self) -> bool {
        self.explain
    }

    /// Number of distinct query shapes executed so far.
    pub fn shapes_executed(&self) -> usize {
        self.shapes.borrow().len()
    }
}

/// "This team (or person), this period" inside an evaluation: what a running formula sees.
struct Frame {
    eval: Rc<Evaluation>,
    subject: Subject,
    period: PeriodId,
    /// Only the first this many ms of `period` count (a cut period's frame).
    cut: Option<i64>,
}

impl Frame {
    /// The query as this subject asks it, and its slot in a shape's answer;
    /// None when it has no answer for a person (an entity whose records name
    /// no person).
    fn subject_query(&self, query: &Query) -> Option<(Query, u32)> {
        match self.subject {
            Subject::Team(t) => Some((query.clone(), t)),
            Subject::Owner(_) if query.all_teams => Some((query.clone(), 0)),
            Subject::Owner(o) => {
                let schema = &self.eval.config.schema;
                let linked = query
                    .read_entities()
                    .iter()
                    .all(|e| schema.entity(e).is_some_and(|e| e.owner.is_some()));
                linked.then(|| (query.per_owner(), o))
            }
        }
    }

    fn subject_id(&self) -> &str {
        match self.subject {
            Subject::Team(t) => &self.eval.teams.ids[t as usize],
            Subject::Owner(o) => &self.eval.owners.ids[o as usize],
        }
    }
}

impl Host for Frame {
    fn calendar(&self) -> &Calendar {
        self.eval.calendar()
    }

    fn schema(&self) -> &Schema {
        &self.eval.config.schema
    }

    fn period(&self) -> PeriodId {
        self.period
    }

    fn as_of(&self) -> i64 {
        self.eval.as_of
    }

    fn aggregate(&self, query: &Query, agg: &Agg) -> Result<AggValue, HostError> {
        let Some((query, slot)) = self.subject_query(query) else {
            self.eval
                .trace(|| format!("{query}{agg} [{}]: no person's records", self.subject_id()));
            return Err(HostError::NoData);
        };
        let query = &query;
        if let Some(asked) = self.eval.probe.borrow_mut().as_mut() {
            // A formula asking shapes in a loop is left to be answered as it asks.
            if asked.len() >= prefetch::PROBE_LIMIT {
                return Err(HostError::NoData);
            }
            asked.push((query.clone(), agg.clone(), self.period));
            return Ok(prefetch::placeholder(agg));
        }
        let shape = self
            .eval
            .shape(query, agg, self.period)
            .map_err(|e| match e.is_mistake() {
                true => HostError::Mistake(e.to_string()),
                false => HostError::Failed(e.to_string()),
            })?;
        let value = shape
            .get(slot, self.period)
            .cloned()
            .unwrap_or(AggValue::NoRows);
        if self.eval.explain {
            let asked = Asked {
                query: query.clone(),
                agg: agg.clone(),
                period: self.period,
                slot,
            };
            let mut list = self.eval.asked.borrow_mut();
            if !list.contains(&asked) {
                list.push(asked);
            }
        }
        self.eval.trace(|| {
            let scope = if query.all_teams {
                "all teams".to_string()
            } else {
                self.subject_id().to_string()
            };
            format!("{query}{agg} [{scope}, {}] = {value}", self.period)
        });
        Ok(value)
    }

    fn cut(&self) -> Option<i64> {
        self.cut
    }

    fn kpi(&self, id: &str, period: PeriodId, cut: Option<i64>) -> Result<Option<f64>, HostError> {
        let idx = self
            .eval
            .config
            .kpi_index(id)
            .ok_or_else(|| HostError::Mistake(self.eval.config.unknown_kpi(id)))?;
        let v = self.eval.value_cut(idx, self.subject, period, cut);
        if let Some(e) = v.error {
            return Err(HostError::Failed(e.to_string()));
        }
        self.eval.trace(|| {
            format!(
                "kpi({id:?}) [{period}] = {}",
                v.value.map_or("no data".to_string(), |x| x.to_string())
            )
        });
        Ok(v.value)
    }
}
