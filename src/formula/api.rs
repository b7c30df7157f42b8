//! The functions a formula can call (SPEC 5.1), registered on the Rhai engine.
//!
//! Query methods only build a [`Query`] (checking field names and value types
//! against the schema as they go); aggregates hand it to the current host.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::{HostError, host};
use crate::period::PeriodId;
use crate::query::{Agg, AggValue, CmpOp, Filter, Item, PeriodRef, Query, Scalar, SpanUnit};
use crate::store::{Entity, FieldType};

type Res<T> = Result<T, Box<EvalAltResult>>;

/// Thrown (as a runtime error value) to end a formula with "no data".
#[derive(Debug, Clone, Copy)]
pub struct NoData;

/// Thrown (as a runtime error value) for a mistake in the formula itself that
/// no data can fix: an unknown entity, field or KPI, a field of the wrong type.
#[derive(Debug, Clone)]
pub struct Mistake(pub String);

/// The error a formula sees for a [`Mistake`].
pub(crate) fn mistake(message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(Mistake(message.into())), rhai::Position::NONE).into()
}

/// A host error as a formula error.
fn host_error(e: HostError) -> Box<EvalAltResult> {
    match e {
        HostError::NoData => {
            EvalAltResult::ErrorRuntime(Dynamic::from(NoData), rhai::Position::NONE).into()
        }
        HostError::Mistake(m) => mistake(m),
        HostError::Failed(m) => m.into(),
    }
}

/// A period as a formula sees it. `rel` is its distance from the evaluated
/// period when it was reached from `period` by prev()/next(), which lets a
/// query that names it stay one shape across periods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriodVal {
    pub id: PeriodId,
    pub rel: Option<i32>,
    /// Only the first this many ms of the period count (SPEC 16); None: all of it.
    pub span: Option<i64>,
}

impl PeriodVal {
    /// The evaluated period (cut to its first `span` ms in a cut frame).
    pub fn current(id: PeriodId, span: Option<i64>) -> PeriodVal {
        PeriodVal {
            id,
            rel: Some(0),
            span,
        }
    }

    fn shifted(self, n: i32) -> PeriodVal {
        PeriodVal {
            id: self.id.shift(n),
            rel: self.rel.map(|r| r + n),
            span: None,
        }
    }

    /// `p.to_date()`: the period cut at as-of (the whole period once closed).
    fn to_date(self) -> Res<PeriodVal> {
        let h = host()?;
        let p = h.calendar().period(self.id);
        let span = (h.as_of() < p.end).then(|| (h.as_of() - p.start).max(0));
        Ok(PeriodVal { span, ..self })
    }

    /// `p.same_span()`: `p` cut at the time elapsed of the evaluated period
    /// (start + (as-of − P.start)); the whole of `p` once P is closed.
    fn same_span(self) -> Res<PeriodVal> {
        let h = host()?;
        let span = match h.cut() {
            Some(len) => Some(len),
            None => {
                let e = h.calendar().period(h.period());
                (h.as_of() < e.end).then(|| (h.as_of() - e.start).max(0))
            }
        };
        Ok(PeriodVal { span, ..self })
    }

    pub fn reference(self) -> PeriodRef {
        match self.rel {
            Some(r) => PeriodRef::Relative(r),
            None => PeriodRef::Absolute(self.id),
        }
    }
}

pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Query>("Query")
        .register_type_with_name::<PeriodVal>("Period");
    engine.register_fn("records", records);
    engine.register_fn("to_string", |q: &mut Query| q.to_string());
    register_filters(engine);
    register_aggregates(engine);
    register_period(engine);
    engine.register_fn("kpi", |id: &str| kpi(id, None));
    engine.register_fn("kpi", |id: &str, p: PeriodVal| kpi(id, Some(p)));
    engine.register_fn("kpi", |id: &str, p: &str| {
        let p = PeriodVal {
            id: parse_period(p)?,
            rel: None,
            span: None,
        };
        kpi(id, Some(p))
    });
    engine.register_fn("no_data", || -> Res<Dynamic> {
        Err(EvalAltResult::ErrorRuntime(Dynamic::from(NoData), rhai::Position::NONE).into())
    });
}

fn records(entity: &str) -> Res<Query> {
    let h = host()?;
    h.schema()
        .require(entity)
        .map_err(|e| mistake(e.to_string()))?;
    Ok(Query::new(entity))
}

/// Looks a field up in the query's entity, with a "did you mean" hint.
fn field_of(q: &Query, name: &str) -> Res<(Arc<str>, FieldType)> {
    let h = host()?;
    let entity: &Entity = h
        .schema()
        .require(&q.entity)
        .map_err(|e| mistake(e.to_string()))?;
    let f = entity
        .field(name)
        .ok_or_else(|| mistake(entity.unknown_field(name).to_string()))?;
    Ok((Arc::from(name), f.ty))
}

fn time_field(q: &Query, name: &str, method: &str) -> Res<Arc<str>> {
    let (f, ty) = field_of(q, name)?;
    if ty != FieldType::Time {
        return Err(mistake(format!(
            "{method}() needs a time field; {}.{name} is {ty}",
            q.entity
        )));
    }
    Ok(f)
}

/// Converts a formula value to the field's type for a comparison.
fn scalar(q: &Query, field: &str, ty: FieldType, v: &Dynamic) -> Res<Scalar> {
    let bad = || {
        mistake(format!(
            "{}.{field} is {ty}; cannot compare it with {} ({v})",
            q.entity,
            v.type_name()
        ))
    };
    Ok(match ty {
        FieldType::Text => Scalar::Text(Arc::from(v.clone().into_string().map_err(|_| bad())?)),
        FieldType::Integer => match (v.as_int(), v.as_float()) {
            (Ok(i), _) => Scalar::Int(i),
            (_, Ok(f)) if f.fract() == 0.0 => Scalar::Int(f as i64),
            _ => return Err(bad()),
        },
        FieldType::Real => match (v.as_int(), v.as_float()) {
            (Ok(i), _) => Scalar::real(i as f64),
            (_, Ok(f)) => Scalar::real(f),
            _ => return Err(bad()),
        },
        FieldType::Bool => Scalar::Int(i64::from(v.as_bool().map_err(|_| bad())?)),
        FieldType::Time => {
            let s = v.clone().into_string().map_err(|_| bad())?;
            let t = host()?
                .calendar()
                .parse_time(&s)
                .map_err(|e| mistake(e.to_string()))?;
            Scalar::Int(t)
        }
    })
}

fn compare(q: &mut Query, field: &str, op: CmpOp, v: Dynamic) -> Res<Query> {
    let (f, ty) = field_of(q, field)?;
    let value = scalar(q, field, ty, &v)?;
    Ok(q.with(Filter::Cmp {
        field: f,
        op,
        value,
    }))
}

fn register_filters(engine: &mut Engine) {
    let ops = [
        ("eq", CmpOp::Eq),
        ("ne", CmpOp::Ne),
        ("lt", CmpOp::Lt),
        ("le", CmpOp::Le),
        ("gt", CmpOp::Gt),
        ("ge", CmpOp::Ge),
    ];
    for (name, op) in ops {
        engine.register_fn(name, move |q: &mut Query, f: &str, v: Dynamic| {
            compare(q, f, op, v)
        });
    }
    engine.register_fn(
        "one_of",
        |q: &mut Query, f: &str, sub: Query, of: &str| -> Res<Query> {
            let (field, ty) = field_of(q, f)?;
            let (of_field, of_ty) = field_of(&sub, of)?;
            if ty != of_ty {
                return Err(mistake(format!(
                    "one_of: {}.{f} is {ty} but {}.{of} is {of_ty}",
                    q.entity, sub.entity
                )));
            }
            Ok(q.with(Filter::InQuery {
                field,
                query: Box::new(sub),
                of: of_field,
            }))
        },
    );
    engine.register_fn(
        "one_of",
        |q: &mut Query, f: &str, values: Array| -> Res<Query> {
            let (field, ty) = field_of(q, f)?;
            let values = values
                .iter()
                .map(|v| scalar(q, f, ty, v))
                .collect::<Res<Vec<_>>>()?;
            Ok(q.with(Filter::OneOf { field, values }))
        },
    );
    engine.register_fn("is_null", |q: &mut Query, f: &str| -> Res<Query> {
        Ok(q.with(Filter::Null {
            field: field_of(q, f)?.0,
            is_null: true,
        }))
    });
    engine.register_fn("not_null", |q: &mut Query, f: &str| -> Res<Query> {
        Ok(q.with(Filter::Null {
            field: field_of(q, f)?.0,
            is_null: false,
        }))
    });
    engine.register_fn("in_period", |q: &mut Query, f: &str| -> Res<Query> {
        Ok(q.with(Filter::InPeriod {
            field: time_field(q, f, "in_period")?,
            period: PeriodRef::Relative(0),
            cut: host()?.cut(),
        }))
    });
    engine.register_fn(
        "in_period",
        |q: &mut Query, f: &str, p: PeriodVal| -> Res<Query> {
            Ok(q.with(Filter::InPeriod {
                field: time_field(q, f, "in_period")?,
                period: p.reference(),
                cut: p.span,
            }))
        },
    );
    engine.register_fn(
        "in_period",
        |q: &mut Query, f: &str, p: &str| -> Res<Query> {
            let period = PeriodRef::Absolute(parse_period(p)?);
            Ok(q.with(Filter::InPeriod {
                field: time_field(q, f, "in_period")?,
                period,
                cut: None,
            }))
        },
    );
    engine.register_fn("before_start", |q: &mut Query, f: &str| -> Res<Query> {
        Ok(q.with(Filter::BeforeStart {
            field: time_field(q, f, "before_start")?,
        }))
    });
    engine.register_fn("before_end", |q: &mut Query, f: &str| -> Res<Query> {
        Ok(q.with(Filter::BeforeEnd {
            field: time_field(q, f, "before_end")?,
        }))
    });
    engine.register_fn("all_teams", |q: &mut Query| {
        let mut q = q.clone();
        q.all_teams = true;
        q
    });
}

fn number_field(q: &Query, f: &str, method: &str) -> Res<Arc<str>> {
    let (field, ty) = field_of(q, f)?;
    if !matches!(ty, FieldType::Integer | FieldType::Real | FieldType::Bool) {
        return Err(mistake(format!(
            "{method}() needs a number field; {}.{f} is {ty}",
            q.entity
        )));
    }
    Ok(field)
}

fn aggregate(q: &Query, agg: Agg) -> Res<Dynamic> {
    let value = host()?.aggregate(q, &agg).map_err(host_error)?;
    Ok(to_dynamic(value))
}

fn to_dynamic(v: AggValue) -> Dynamic {
    match v {
        AggValue::Number(n) => Dynamic::from_float(n),
        AggValue::NoRows => Dynamic::UNIT,
        AggValue::Items(items) => items.iter().map(item_dynamic).collect::<Array>().into(),
        AggValue::Counts(pairs) => {
            let map: Map = pairs
                .iter()
                .map(|(k, c)| (k.to_string().into(), Dynamic::from_float(*c)))
                .collect();
            map.into()
        }
    }
}

fn item_dynamic(i: &Item) -> Dynamic {
    match i {
        Item::Int(x) => Dynamic::from_int(*x),
        Item::Real(x) => Dynamic::from_float(*x),
        Item::Bool(b) => Dynamic::from_bool(*b),
        Item::Text(s) | Item::Time(s) => s.to_string().into(),
    }
}

fn register_aggregates(engine: &mut Engine) {
    engine.register_fn("count", |q: &mut Query| aggregate(q, Agg::Count));
    engine.register_fn("sum", |q: &mut Query, f: &str| {
        aggregate(q, Agg::Sum(number_field(q, f, "sum")?))
    });
    engine.register_fn("avg", |q: &mut Query, f: &str| {
        aggregate(q, Agg::Avg(number_field(q, f, "avg")?))
    });
    engine.register_fn("min", |q: &mut Query, f: &str| {
        aggregate(q, Agg::Min(number_field(q, f, "min")?))
    });
    engine.register_fn("max", |q: &mut Query, f: &str| {
        aggregate(q, Agg::Max(number_field(q, f, "max")?))
    });
    engine.register_fn("count_distinct", |q: &mut Query, f: &str| {
        aggregate(q, Agg::CountDistinct(field_of(q, f)?.0))
    });
    engine.register_fn("values", |q: &mut Query, f: &str| {
        aggregate(q, Agg::Values(field_of(q, f)?.0))
    });
    engine.register_fn(
        "count_distinct_at_least",
        |q: &mut Query, f: &str, n: i64| -> Res<Dynamic> {
            let n =
                u32::try_from(n).map_err(|_| "count_distinct_at_least needs a count from 0 up")?;
            aggregate(q, Agg::CountDistinctAtLeast(field_of(q, f)?.0, n))
        },
    );
    engine.register_fn("count_by", |q: &mut Query, f: &str| {
        aggregate(q, Agg::CountBy(field_of(q, f)?.0))
    });
    engine.register_fn("avg_hours", |q: &mut Query, a: &str, b: &str| {
        span(q, a, b, SpanUnit::Hours, "avg_hours")
    });
    engine.register_fn("avg_days", |q: &mut Query, a: &str, b: &str| {
        span(q, a, b, SpanUnit::Days, "avg_days")
    });
}

fn span(q: &Query, from: &str, to: &str, unit: SpanUnit, method: &str) -> Res<Dynamic> {
    let agg = Agg::AvgSpan {
        from: time_field(q, from, method)?,
        to: time_field(q, to, method)?,
        unit,
    };
    aggregate(q, agg)
}

fn parse_period(s: &str) -> Res<PeriodId> {
    s.parse::<PeriodId>().map_err(|e| mistake(e.to_string()))
}

fn register_period(engine: &mut Engine) {
    engine.register_get("id", |p: &mut PeriodVal| p.id.to_string());
    engine.register_get("start", |p: &mut PeriodVal| -> Res<String> {
        let h = host()?;
        Ok(h.calendar().format_local(h.calendar().period(p.id).start))
    });
    engine.register_get("end", |p: &mut PeriodVal| -> Res<String> {
        let h = host()?;
        Ok(h.calendar().format_local(h.calendar().period(p.id).end))
    });
    engine.register_get("elapsed", |p: &mut PeriodVal| -> Res<f64> {
        let h = host()?;
        Ok(h.calendar().period(p.id).elapsed(h.as_of()))
    });
    engine.register_fn("prev", |p: &mut PeriodVal| p.shifted(-1));
    engine.register_fn("to_date", |p: &mut PeriodVal| p.to_date());
    engine.register_fn("same_span", |p: &mut PeriodVal| p.same_span());
    engine.register_fn("next", |p: &mut PeriodVal| p.shifted(1));
    engine.register_fn("to_string", |p: &mut PeriodVal| p.id.to_string());
    engine.register_fn("period", |id: &str| -> Res<PeriodVal> {
        Ok(PeriodVal {
            id: parse_period(id)?,
            rel: None,
            span: None,
        })
    });
}

fn kpi(id: &str, period: Option<PeriodVal>) -> Res<Dynamic> {
    let h = host()?;
    let (p, cut) = match period {
        Some(p) => (p.id, p.span),
        None => (h.period(), h.cut()),
    };
    match h.kpi(id, p, cut).map_err(host_error)? {
        Some(v) => Ok(Dynamic::from_float(v)),
        None => Ok(Dynamic::UNIT),
    }
}
