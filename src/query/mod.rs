//! Queries over records: what a formula asks for, as a hashable shape.
//!
//! A formula builds a [`Query`] (`records("deals").eq("stage", "won")
//! .in_period("closed_at")`) and ends it with an [`Agg`] (`.sum("amount")`).
//! Time filters refer to the evaluated period *relatively* ([`PeriodRef`]),
//! so the same (query, aggregate) shape written once in a formula is the same
//! key for every team and every period, and [`exec`] answers it for all of
//! them in one pass over the entity's columns.

mod acc;
mod block;
pub mod exec;
mod rank;
mod semi;
mod time;

pub use exec::{RecordPage, ShapeResult};

use std::fmt;
use std::sync::Arc;

use crate::period::PeriodId;
use crate::store::{NameError, StoreError};

/// Why a query shape could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query names an entity or field the schema does not have.
    #[error(transparent)]
    Name(#[from] NameError),
    /// `one_of(field, query, of)` over fields of different types.
    #[error("one_of(\"{field}\", query, \"{of}\"): the two fields have different types")]
    JoinTypes { field: String, of: String },
    /// The records could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl QueryError {
    /// True when the query itself is wrong, whatever the records.
    pub fn is_mistake(&self) -> bool {
        !matches!(self, QueryError::Store(_))
    }
}

/// A constant a field is compared with, already converted to the field's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scalar {
    /// integer, bool (0/1) and time (ms) fields.
    Int(i64),
    /// A real, by its bits so shapes can be hashed.
    Real(u64),
    Text(Arc<str>),
}

impl Scalar {
    pub fn real(f: f64) -> Scalar {
        Scalar::Real(f.to_bits())
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Real(b) => write!(f, "{}", f64::from_bits(*b)),
            Scalar::Text(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
        }
    }

    pub fn holds<T: PartialOrd>(self, a: &T, b: &T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }
}

/// A period named relative to the evaluated one, or by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeriodRef {
    /// 0 = the evaluated period, -1 = the one before, ...
    Relative(i32),
    Absolute(PeriodId),
}

impl PeriodRef {
    pub fn resolve(self, evaluated: PeriodId) -> PeriodId {
        match self {
            PeriodRef::Relative(n) => evaluated.shift(n),
            PeriodRef::Absolute(id) => id,
        }
    }
}

impl fmt::Display for PeriodRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeriodRef::Relative(0) => f.write_str("P"),
            PeriodRef::Relative(n) => write!(f, "P{n:+}"),
            PeriodRef::Absolute(id) => write!(f, "{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Filter {
    Cmp {
        field: Arc<str>,
        op: CmpOp,
        value: Scalar,
    },
    OneOf {
        field: Arc<str>,
        values: Vec<Scalar>,
    },
    Null {
        field: Arc<str>,
        is_null: bool,
    },
    /// start <= field < end of the period.
    InPeriod {
        field: Arc<str>,
        period: PeriodRef,
        /// Only the first `cut` ms of the period (SPEC 16: `to_date()`, `same_span()`).
        cut: Option<i64>,
    },
    /// field < start of the evaluated period.
    BeforeStart {
        field: Arc<str>,
    },
    /// field < end of the evaluated period.
    BeforeEnd {
        field: Arc<str>,
    },
    /// field is one of the values of `of` in `query`, evaluated for the same
    /// team and period (a semi-join: `.one_of("deal", started, "deal")`).
    InQuery {
        field: Arc<str>,
        query: Box<Query>,
        of: Arc<str>,
    },
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Cmp { field, op, value } => write!(f, ".{}({field:?}, {value})", op.name()),
            Filter::OneOf { field, values } => {
                let shown: Vec<String> = values.iter().take(5).map(|v| v.to_string()).collect();
                let more = if values.len() > 5 {
                    format!(", … {} in all", values.len())
                } else {
                    String::new()
                };
                write!(f, ".one_of({field:?}, [{}{more}])", shown.join(", "))
            }
            Filter::Null {
                field,
                is_null: true,
            } => write!(f, ".is_null({field:?})"),
            Filter::Null {
                field,
                is_null: false,
            } => write!(f, ".not_null({field:?})"),
            Filter::InPeriod {
                field,
                period: PeriodRef::Relative(0),
                cut: None,
            } => write!(f, ".in_period({field:?})"),
            Filter::InPeriod {
                field,
                period,
                cut: None,
            } => write!(f, ".in_period({field:?}, {period})"),
            Filter::InPeriod {
                field,
                period,
                cut: Some(ms),
            } => write!(
                f,
                ".in_period({field:?}, {period} first {:.2} d)",
                *ms as f64 / 86_400_000.0
            ),
            Filter::BeforeStart { field } => write!(f, ".before_start({field:?})"),
            Filter::BeforeEnd { field } => write!(f, ".before_end({field:?})"),
            Filter::InQuery { field, query, of } => {
                write!(f, ".one_of({field:?}, {query}, {of:?})")
            }
        }
    }
}

/// A query over one entity, before it is aggregated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    pub entity: Arc<str>,
    pub filters: Vec<Filter>,
    /// `.all_teams()`: not limited to the evaluated team's subtree.
    pub all_teams: bool,
    /// Answered per person (each owner's own records) instead of per team subtree.
    pub by_owner: bool,
}

impl Query {
    pub fn new(entity: &str) -> Query {
        Query {
            entity: Arc::from(entity),
            filters: Vec::new(),
            all_teams: false,
            by_owner: false,
        }
    }

    /// The same query answered per person, semi-joins included.
    pub fn per_owner(&self) -> Query {
        let mut q = self.clone();
        q.by_owner = true;
        for f in &mut q.filters {
            if let Filter::InQuery { query, .. } = f {
                **query = query.per_owner();
            }
        }
        q
    }

    /// Whether it counts only the first part of a period (SPEC 16's `to_date()`, `same_span()`),
    /// semi-joins included: a question of one as-of, asked for the periods around it.
    pub fn is_cut(&self) -> bool {
        self.filters.iter().any(|f| match f {
            Filter::InPeriod { cut, .. } => cut.is_some(),
            Filter::InQuery { query, .. } => query.is_cut(),
            _ => false,
        })
    }

    /// Every entity this query reads, semi-joins included.
    pub fn read_entities(&self) -> Vec<&str> {
        let mut out = vec![&*self.entity];
        for f in &self.filters {
            if let Filter::InQuery { query, .. } = f {
                out.extend(query.read_entities());
            }
        }
        out
    }

    pub fn with(&self, filter: Filter) -> Query {
        let mut q = self.clone();
        q.filters.push(filter);
        q
    }

    /// The entities an answer to this query depends on: those it reads,
    /// `teams` (the tree it is rolled up by), and for a per-person answer
    /// `owners` and the entities that records reach their owner through.
    pub fn entities(&self, schema: &crate::store::Schema) -> Vec<String> {
        use crate::store::schema::{OWNERS, OwnerLink, TEAMS};
        let read = self.read_entities();
        let mut out: Vec<String> = read.iter().map(|e| e.to_string()).collect();
        out.push(TEAMS.to_string());
        if self.by_owner {
            out.push(OWNERS.to_string());
            for e in read.iter().filter_map(|e| schema.entity(e)) {
                if let Some(OwnerLink::Via { entity, .. }) = &e.owner {
                    out.push(entity.clone());
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every field the query and its aggregate read.
    pub fn fields<'a>(&'a self, agg: &'a Agg) -> Vec<&'a str> {
        let mut out: Vec<&str> = self
            .filters
            .iter()
            .map(|f| match f {
                Filter::Cmp { field, .. }
                | Filter::OneOf { field, .. }
                | Filter::Null { field, .. }
                | Filter::InPeriod { field, .. }
                | Filter::BeforeStart { field }
                | Filter::BeforeEnd { field }
                | Filter::InQuery { field, .. } => &**field,
            })
            .collect();
        out.extend(agg.fields());
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "records({:?})", self.entity)?;
        for filter in &self.filters {
            write!(f, "{filter}")?;
        }
        if self.all_teams {
            f.write_str(".all_teams()")?;
        }
        Ok(())
    }
}

/// Units of a mean duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanUnit {
    Hours,
    Days,
}

impl SpanUnit {
    pub fn millis(self) -> f64 {
        match self {
            SpanUnit::Hours => 3_600_000.0,
            SpanUnit::Days => 86_400_000.0,
        }
    }
}

/// How the rows of a query are reduced to a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Agg {
    Count,
    Sum(Arc<str>),
    CountDistinct(Arc<str>),
    Avg(Arc<str>),
    Min(Arc<str>),
    Max(Arc<str>),
    AvgSpan {
        from: Arc<str>,
        to: Arc<str>,
        unit: SpanUnit,
    },
    Values(Arc<str>),
    CountBy(Arc<str>),
    /// Distinct values of the field that occur in at least `n` rows.
    CountDistinctAtLeast(Arc<str>, u32),
}

impl Agg {
    pub fn fields(&self) -> Vec<&str> {
        match self {
            Agg::Count => vec![],
            Agg::Sum(f)
            | Agg::CountDistinct(f)
            | Agg::Avg(f)
            | Agg::Min(f)
            | Agg::Max(f)
            | Agg::Values(f)
            | Agg::CountBy(f)
            | Agg::CountDistinctAtLeast(f, _) => vec![f],
            Agg::AvgSpan { from, to, .. } => vec![from, to],
        }
    }
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Agg::Count => f.write_str(".count()"),
            Agg::Sum(x) => write!(f, ".sum({x:?})"),
            Agg::CountDistinct(x) => write!(f, ".count_distinct({x:?})"),
            Agg::Avg(x) => write!(f, ".avg({x:?})"),
            Agg::Min(x) => write!(f, ".min({x:?})"),
            Agg::Max(x) => write!(f, ".max({x:?})"),
            Agg::AvgSpan {
                from,
                to,
                unit: SpanUnit::Hours,
            } => write!(f, ".avg_hours({from:?}, {to:?})"),
            Agg::AvgSpan {
                from,
                to,
                unit: SpanUnit::Days,
            } => write!(f, ".avg_days({from:?}, {to:?})"),
            Agg::Values(x) => write!(f, ".values({x:?})"),
            Agg::CountBy(x) => write!(f, ".count_by({x:?})"),
            Agg::CountDistinctAtLeast(x, n) => write!(f, ".count_distinct_at_least({x:?}, {n})"),
        }
    }
}

/// A value of a field as a formula sees it (from `.values()` / `.count_by()`).
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Int(i64),
    Real(f64),
    Text(Arc<str>),
    Bool(bool),
    /// A time, already formatted as RFC 3339 UTC.
    Time(Arc<str>),
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Int(i) => write!(f, "{i}"),
            Item::Real(r) => write!(f, "{r}"),
            Item::Text(s) | Item::Time(s) => f.write_str(s),
            Item::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The result of one aggregate for one team and period.
#[derive(Debug, Clone, PartialEq)]
pub enum AggValue {
    Number(f64),
    /// A mean, min or max over no rows.
    NoRows,
    Items(Arc<Vec<Item>>),
    Counts(Arc<Vec<(Item, f64)>>),
}

impl fmt::Display for AggValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggValue::Number(n) => write!(f, "{n}"),
            AggValue::NoRows => f.write_str("() (no rows)"),
            AggValue::Items(items) => write!(f, "[{} values]", items.len()),
            AggValue::Counts(c) => write!(f, "#{{{} keys}}", c.len()),
        }
    }
}
