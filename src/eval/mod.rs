//! Evaluating KPIs over teams × periods: one [`Evaluation`] per request.
//!
//! An evaluation owns two caches. Query shapes: the first time any formula
//! aggregates a (query, aggregate) shape, it is executed once for every team
//! and every period of the evaluation (see `query::exec`), so identical
//! queries of different KPIs, teams and periods share one pass. KPI values:
//! each (KPI, team, period) runs its formula at most once, and `kpi()` calls
//! reuse it; a call stack catches cycles that literal checks could not see.

pub mod check;
pub mod no_records;
pub mod report;
pub mod scoring;
pub mod tests_runner;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::config::{ConfigSnapshot, Kpi};
use crate::formula::{Host, Outcome};
use crate::period::{Calendar, Millis, PeriodId};
use crate::query::exec::{ShapeResult, execute};
use crate::query::{Agg, AggValue, Query};
use crate::store::columns::{ColumnStore, TeamTree};
use crate::store::{Schema, StoreError};

/// One KPI value for one team and period.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiValue {
    pub value: Option<f64>,
    pub error: Option<String>,
    /// The queries and KPI references the formula used, with their results.
    pub explanation: Vec<String>,
}

/// The state of one evaluation request.
pub struct Evaluation {
    pub config: Arc<ConfigSnapshot>,
    pub store: Arc<ColumnStore>,
    pub teams: Arc<TeamTree>,
    pub as_of: Millis,
    explain: bool,
    periods: RefCell<Vec<PeriodId>>,
    shapes: RefCell<HashMap<(Query, Agg), Arc<ShapeResult>>>,
    values: RefCell<HashMap<(usize, u32, PeriodId), KpiValue>>,
    stack: RefCell<Vec<(usize, u32, PeriodId)>>,
    traces: RefCell<Vec<Vec<String>>>,
}

impl Evaluation {
    /// `periods` are the periods the caller will ask for; queries are batched over them
    /// (and the period before each, which growth KPIs read).
    pub fn new(
        config: Arc<ConfigSnapshot>,
        store: Arc<ColumnStore>,
        as_of: Millis,
        periods: &[PeriodId],
        explain: bool,
    ) -> Result<Rc<Evaluation>, StoreError> {
        let teams = store.teams()?;
        let mut universe: Vec<PeriodId> = periods.iter().flat_map(|p| [p.prev(), *p]).collect();
        universe.sort();
        universe.dedup();
        Ok(Rc::new(Evaluation {
            config,
            store,
            teams,
            as_of,
            explain,
            periods: RefCell::new(universe),
            shapes: RefCell::new(HashMap::new()),
            values: RefCell::new(HashMap::new()),
            stack: RefCell::new(Vec::new()),
            traces: RefCell::new(Vec::new()),
        }))
    }

    pub fn calendar(&self) -> &Calendar {
        &self.config.settings.calendar
    }

    /// The value of KPI `kpi` (an index into the snapshot's KPIs) for `team` and `period`.
    pub fn value(self: &Rc<Self>, kpi: usize, team: u32, period: PeriodId) -> KpiValue {
        let key = (kpi, team, period);
        if let Some(v) = self.values.borrow().get(&key) {
            return v.clone();
        }
        if self.stack.borrow().contains(&key) {
            let names: Vec<String> = self
                .stack
                .borrow()
                .iter()
                .map(|(k, _, _)| self.config.kpis[*k].def.id.clone())
                .collect();
            return KpiValue {
                value: None,
                error: Some(format!(
                    "KPIs call each other in a cycle: {} → {}",
                    names.join(" → "),
                    self.config.kpis[kpi].def.id
                )),
                explanation: vec![],
            };
        }
        let result = self.run(kpi, team, period);
        self.values.borrow_mut().insert(key, result.clone());
        result
    }

    fn run(self: &Rc<Self>, kpi: usize, team: u32, period: PeriodId) -> KpiValue {
        let k: &Kpi = &self.config.kpis[kpi];
        self.stack.borrow_mut().push((kpi, team, period));
        self.traces.borrow_mut().push(Vec::new());
        let host: Rc<dyn Host> = Rc::new(Frame {
            eval: self.clone(),
            team,
            period,
        });
        let names = (
            self.teams.ids[team as usize].as_str(),
            self.teams.names[team as usize].as_str(),
        );
        let outcome = self
            .config
            .engine
            .run(&k.ast, &k.def.origin, host, names, &k.params);
        let explanation = self.traces.borrow_mut().pop().unwrap_or_default();
        self.stack.borrow_mut().pop();
        match outcome {
            // The formula still runs (so `kpi check` sees its errors); only its value is dropped.
            Outcome::Value(_) if no_records::reads_only_empty(&self.config, &self.store, kpi) => {
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
            Outcome::Error(e) => KpiValue {
                value: None,
                error: Some(format!("{}: {e}", k.def.id)),
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
    ) -> Result<Arc<ShapeResult>, StoreError> {
        let key = (query.clone(), agg.clone());
        if let Some(s) = self.shapes.borrow().get(&key)
            && s.periods().contains(&period)
        {
            return Ok(s.clone());
        }
        // A period outside the batch (rare: a formula reaching far back) joins it.
        let periods = {
            let mut ps = self.periods.borrow_mut();
            if !ps.contains(&period) {
                ps.push(period);
                ps.sort();
            }
            ps.clone()
        };
        // A server's store keeps shapes across evaluations (after an ingest only
        // the shapes that read the ingested entity are computed again). A kept
        // shape without this period is computed again over both period sets.
        let cal = self.calendar();
        let memo_key = format!("{cal:?}|{query:?}|{agg:?}");
        let result = self.store.memo(
            &memo_key,
            |s: &ShapeResult| s.periods().contains(&period),
            |old| {
                let mut all = periods.clone();
                if let Some(old) = old.filter(|o| o.periods().len() + all.len() <= 32) {
                    all.extend_from_slice(old.periods());
                    all.sort();
                    all.dedup();
                }
                execute(&self.store, query, agg, &all, cal)
            },
        )?;
        self.shapes.borrow_mut().insert(key, result.clone());
        Ok(result)
    }

    /// Number of distinct query shapes executed so far.
    pub fn shapes_executed(&self) -> usize {
        self.shapes.borrow().len()
    }
}

/// "This team, this period" inside an evaluation: what a running formula sees.
struct Frame {
    eval: Rc<Evaluation>,
    team: u32,
    period: PeriodId,
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

    fn aggregate(&self, query: &Query, agg: &Agg) -> Result<AggValue, String> {
        let shape = self
            .eval
            .shape(query, agg, self.period)
            .map_err(|e| e.to_string())?;
        let value = shape
            .get(self.team, self.period)
            .cloned()
            .unwrap_or(AggValue::NoRows);
        self.eval.trace(|| {
            let scope = if query.all_teams {
                "all teams".to_string()
            } else {
                self.eval.teams.ids[self.team as usize].clone()
            };
            format!("{query}{agg} [{scope}, {}] = {value}", self.period)
        });
        Ok(value)
    }

    fn kpi(&self, id: &str, period: PeriodId) -> Result<Option<f64>, String> {
        let idx = self
            .eval
            .config
            .kpi_index(id)
            .ok_or_else(|| self.eval.config.unknown_kpi(id))?;
        let v = self.eval.value(idx, self.team, period);
        if let Some(e) = v.error {
            return Err(e);
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
