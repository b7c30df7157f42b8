//! Answering one query shape for every team and every period in one pass.
//!
//! The pass reads the entity's columns once. Static filters (comparisons,
//! sets, nulls) are tested first; each surviving row is then placed in every
//! evaluated period whose time bounds it meets, and accumulated under its own
//! team only. Subtree totals are formed afterwards by merging each team's
//! accumulator into its ancestors': sums, counts, minima and maxima add up,
//! means are carried as (sum, count) and distinct values as sets, so a parent
//! never averages its children's averages.

use rustc_hash::FxHashSet as HashSet;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::acc::{Accumulators, ItemKind};
use super::block::{self, BLOCK, Block, keep_rows};
use super::semi::{self, Join, Mask, MaskFor, SemiJoin};
use super::time::TimeBounds;
use super::{Agg, AggValue, CmpOp, Filter, Query, QueryError, Scalar};
use crate::period::{Calendar, PeriodId};
use crate::store::columns::{
    Code, Column, ColumnStore, IntRead, NULL_CODE, NULL_INT, RowSlots, with_codes, with_ints,
};
use crate::store::schema::FieldType;
use crate::store::{Owners, TeamTree};
use crate::store::{RecordStore, Schema, StoreError};

/// The answer to one shape: a value per (team, period), plus one per period
/// for queries not limited to a team.
#[derive(Debug)]
pub struct ShapeResult {
    periods: Vec<PeriodId>,
    slots: usize,
    all_teams: bool,
    values: Vec<AggValue>,
}

impl ShapeResult {
    /// Values laid out period after period, `slots` (teams, people, or 1) each.
    pub fn new(
        periods: Vec<PeriodId>,
        slots: usize,
        all_teams: bool,
        values: Vec<AggValue>,
    ) -> ShapeResult {
        debug_assert_eq!(values.len(), periods.len() * slots);
        ShapeResult {
            periods,
            slots,
            all_teams,
            values,
        }
    }

    pub fn get(&self, team: u32, period: PeriodId) -> Option<&AggValue> {
        let p = self.periods.iter().position(|x| *x == period)?;
        let t = if self.all_teams { 0 } else { team as usize };
        (t < self.slots).then(|| &self.values[p * self.slots + t])
    }

    pub fn periods(&self) -> &[PeriodId] {
        &self.periods
    }
}

/// The embedded store answers a shape from its columns, in one pass.
impl RecordStore for ColumnStore {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn teams(&self) -> Result<Arc<TeamTree>, StoreError> {
        ColumnStore::teams(self)
    }

    fn owners(&self) -> Result<Arc<Owners>, StoreError> {
        ColumnStore::owners(self)
    }

    fn answer(
        &self,
        query: &Query,
        agg: &Agg,
        periods: &[PeriodId],
        cal: &Calendar,
    ) -> Result<ShapeResult, QueryError> {
        execute(self, query, agg, periods, cal)
    }

    fn records(
        &self,
        query: &Query,
        agg: &Agg,
        period: PeriodId,
        slot: u32,
        cal: &Calendar,
        limit: usize,
    ) -> Result<RecordPage, QueryError> {
        records(self, query, agg, period, slot, cal, limit)
    }

    fn holds_records(&self, entity: &str) -> Result<bool, StoreError> {
        Ok(!self.table(entity, &[])?.is_empty())
    }

    fn epoch(&self) -> u64 {
        ColumnStore::epoch(self)
    }

    fn warm(
        &self,
        fields: &BTreeMap<String, Vec<String>>,
        entity: Option<&str>,
    ) -> Result<(), StoreError> {
        ColumnStore::warm(self, fields, entity)
    }

    fn derive(
        &self,
        schema: Arc<Schema>,
        fields: &BTreeMap<String, Vec<String>>,
    ) -> Arc<dyn RecordStore> {
        Arc::new(ColumnStore::derive(self, schema, fields))
    }

    fn after_upsert(
        &self,
        entity: &str,
        ids: Option<&[String]>,
    ) -> Result<Arc<dyn RecordStore>, StoreError> {
        Ok(Arc::new(ColumnStore::after_upsert(self, entity, ids)?))
    }
}

/// Runs `query` + `agg` for every team and every period in `periods`.
pub fn execute(
    store: &ColumnStore,
    query: &Query,
    agg: &Agg,
    periods: &[PeriodId],
    cal: &Calendar,
) -> Result<ShapeResult, QueryError> {
    let started = std::time::Instant::now();
    let _foreground = crate::store::columns::foreground();
    let pass = accumulate(store, query, agg, periods, cal)?;
    let slots = pass.slots;
    let values = pass.finish(agg, periods.len());
    tracing::debug!(shape = %format_args!("{query}{agg}"), periods = periods.len(), us = started.elapsed().as_micros() as u64, "executed shape");
    Ok(ShapeResult {
        periods: periods.to_vec(),
        slots,
        all_teams: query.all_teams,
        values,
    })
}

/// One pass's accumulators per (period, slot), before the roll-up.
pub(super) struct Pass {
    pub(super) acc: Accumulators,
    pub(super) slots: usize,
    pub(super) kind: ItemKind,
    pub(super) tree: Arc<TeamTree>,
    /// Rows were accumulated under their own team only (else: under each slot they count for).
    own_team: bool,
    /// The keys a distinct count counts must be in too (a semi-join on the counted field).
    mask: Option<Mask>,
    /// Keyed by its slots' naming column: the distinct keys of a pass per person are the values
    /// of the very field that names each row's person (a deal of stage_events, whose owner the
    /// person is), so each key has one slot and one bit set a period holds every slot's keys
    /// (`slots` times less memory than a set per slot: 763 MB → 15 MB for the deals of
    /// stage_events per person over 13 quarters at 9.2M deals).
    pub(super) keyed: Option<Arc<RowSlots>>,
}

impl Pass {
    /// Whether each team's accumulator holds its own rows only, its subtree still to be added.
    pub(super) fn rolls_up(&self) -> bool {
        self.own_team
    }

    /// The slots a period of the accumulators has: one when keyed.
    pub(super) fn acc_slots(&self) -> usize {
        if self.keyed.is_some() { 1 } else { self.slots }
    }

    /// `f(key, (slot, period))` of every key of every (period, slot), as accumulated.
    pub(super) fn each_key(&self, mut f: impl FnMut(u64, semi::Entry)) {
        let per = self.acc_slots();
        let slot_of = self.keyed.as_deref().map(|k| k.parts().1);
        self.acc.each_key(|i, k| {
            let slot = match slot_of {
                None => (i % per) as u32,
                Some(m) => match m.get(k as usize) {
                    Some(&s) if s != u32::MAX => s,
                    _ => return,
                },
            };
            f(k, (slot, (i / per) as u32));
        });
    }

    /// The value of every (period, slot), each team's over its whole subtree.
    fn finish(self, agg: &Agg, periods: usize) -> Vec<AggValue> {
        let mask = self.mask.as_ref().map(|m| &m.bits[..]);
        if let Some(k) = &self.keyed {
            let slot_of = k.parts().1;
            let keyed = (self.acc).finish_keyed(agg, &self.kind, self.slots, slot_of, mask);
            return keyed.expect("a pass is keyed only over bit sets");
        }
        let tree = self.own_team.then_some(&*self.tree);
        self.acc.finish(agg, &self.kind, tree, periods, mask)
    }
}

/// The pass itself: accumulators per (period, team slot), each row under its own team (rolled
/// up the tree by [`Pass::finish`]), or under every slot it counts for when a semi-join decides.
pub(super) fn accumulate(
    store: &ColumnStore,
    query: &Query,
    agg: &Agg,
    periods: &[PeriodId],
    cal: &Calendar,
) -> Result<Pass, QueryError> {
    accumulate_as(store, query, agg, periods, cal, true)
}

/// [`accumulate`], keyed by its slots' naming column when `may_key` and it can be (see
/// [`Pass::keyed`]): a distinct count, values or "at least n" per person of the field that
/// names the person, over bit sets, with no semi-join but one answered by a mask.
fn accumulate_as(
    store: &ColumnStore,
    query: &Query,
    agg: &Agg,
    periods: &[PeriodId],
    cal: &Calendar,
    may_key: bool,
) -> Result<Pass, QueryError> {
    let entity = store.schema.require(&query.entity)?;
    let table = store.table(&entity.name, &query.fields(agg))?;
    let tree = store.teams()?;
    // Each row's slot: its team (rolled up the tree afterwards), its person, or one for all.
    let by_owner = query.by_owner && !query.all_teams;
    let team_rows = row_slots(store, query, &table)?;
    let slot_parts = team_rows.as_deref().map(RowSlots::parts);
    let slots = match (query.all_teams, by_owner) {
        (true, _) => 1,
        (false, true) => store.owners()?.len(),
        (false, false) => tree.len(),
    };
    let col = |f: &str| {
        table
            .column(f)
            .ok_or_else(|| QueryError::Name(entity.unknown_field(f)))
    };
    let keyed = (team_rows.clone())
        .filter(|r| may_key && by_owner && key_column(agg, &table).is_some_and(|c| r.named_by(&c)));
    let acc_slots = if keyed.is_some() { 1 } else { slots };
    let slotting = Slotting {
        slots: acc_slots,
        periods: periods.len(),
        rows: table.len(),
        teams: !query.all_teams && !by_owner,
        keyed: keyed.is_some(),
    };
    let Compiled {
        statics,
        times,
        semis,
        mask,
        input,
    } = Compiled::new(store, query, agg, &col, periods, cal, Some(slotting))?;
    let adds = key_adds(table.len(), &times, periods.len());
    let mut acc = Accumulators::new(agg, periods.len() * acc_slots, &input, adds);
    if keyed.is_some() && (!semis.is_empty() || !matches!(acc, Accumulators::Bits { .. })) {
        return accumulate_as(store, query, agg, periods, cal, false);
    }
    debug_assert!(mask.is_none() || matches!(acc, Accumulators::Bits { .. }));
    let all_slot = [0u32];
    let mut hits: Vec<&[semi::Entry]> = Vec::with_capacity(semis.len());
    let mut periods_of: Vec<usize> = Vec::new();
    let mut rows = Block::default();
    let order = semis
        .is_empty()
        .then(|| block::cumulative(&acc, &input, &times))
        .flatten();
    for start in (0..table.len()).step_by(BLOCK) {
        rows.select(start..table.len().min(start + BLOCK), &statics, slot_parts);
        if keyed.is_some() {
            rows.slots.fill(0);
        }
        if semis.is_empty() {
            block::add_block(&mut acc, &rows, &input, &times, order, acc_slots);
            continue;
        }
        for (&row, &team) in rows.rows.iter().zip(&rows.slots) {
            let Some(v) = input.read(row) else { continue };
            // A semi-join's set differs per team, so each ancestor is decided here; a row whose
            // key no inner row has is done with.
            hits.clear();
            hits.extend(semis.iter().map_while(|s| s.hits(row)));
            if hits.len() < semis.len() {
                continue;
            }
            let own = [team];
            let targets = if query.all_teams {
                &all_slot[..]
            } else if by_owner {
                &own[..]
            } else {
                &tree.up[team as usize][..]
            };
            // Only the periods the first semi-join's key occurs in can pass.
            periods_of.clear();
            periods_of.extend(hits[0].iter().map(|e| e.1 as usize));
            periods_of.sort_unstable();
            periods_of.dedup();
            for &p in periods_of.iter().filter(|p| times.test(row, **p)) {
                for &t in targets {
                    if semis.iter().zip(&hits).all(|(s, h)| s.covers(h, t, p)) {
                        acc.add(p * slots + t as usize, v);
                    }
                }
            }
        }
    }
    if let Some(order) = order {
        acc.spread(order, acc_slots);
    }
    let kind = agg_output_kind(agg, entity, &col)?;
    Ok(Pass {
        acc,
        slots,
        kind,
        tree,
        own_team: !query.all_teams && !by_owner && semis.is_empty(),
        mask,
        keyed,
    })
}

/// The column of `table` whose distinct values `agg` counts or lists (loaded by the pass).
fn key_column(agg: &Agg, table: &crate::store::columns::Table) -> Option<Arc<Column>> {
    match agg {
        Agg::CountDistinct(f) | Agg::Values(f) | Agg::CountDistinctAtLeast(f, _) => table.column(f),
        _ => None,
    }
}

/// Each row's answer slot: its team (rolled up the tree afterwards), its person for a query by
/// owner (`u32::MAX`: none known), or None when the query is not limited to a team.
fn row_slots(
    store: &ColumnStore,
    query: &Query,
    table: &crate::store::columns::Table,
) -> Result<Option<Arc<RowSlots>>, QueryError> {
    Ok(if query.all_teams {
        None
    } else if query.by_owner {
        Some(store.owner_rows(table)?)
    } else {
        Some(store.team_rows(table)?)
    })
}

/// A query's filters and its aggregate's input, compiled against one table for `periods`.
struct Compiled {
    statics: Vec<StaticPred>,
    times: TimeBounds,
    semis: Vec<SemiJoin>,
    mask: Option<Mask>,
    input: Input,
}

/// How a pass slots its rows: `slots` slots in each of `periods` periods, over a table of `rows`
/// rows; teams or not.
#[derive(Clone, Copy)]
struct Slotting {
    slots: usize,
    periods: usize,
    rows: usize,
    teams: bool,
    /// The pass is keyed (see [`Pass::keyed`]): one slot a period.
    keyed: bool,
}

impl Compiled {
    fn new(
        store: &ColumnStore,
        query: &Query,
        agg: &Agg,
        col: &dyn Fn(&str) -> Result<Arc<Column>, QueryError>,
        periods: &[PeriodId],
        cal: &Calendar,
        slotting: Option<Slotting>,
    ) -> Result<Compiled, QueryError> {
        let statics = query
            .filters
            .iter()
            .filter_map(|f| StaticPred::compile(f, col).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let times = TimeBounds::compile(&query.filters, col, periods, cal)?;
        let input = Input::compile(agg, col)?;
        let mask_for = slotting.and_then(|s| mask_for(query, agg, &input, &times, s));
        let (mut semis, mut mask) = (Vec::new(), None);
        for f in &query.filters {
            match SemiJoin::compile(store, f, col, periods, cal, mask_for)? {
                Some(Join::Index(j)) => semis.push(j),
                Some(Join::Mask(m)) => mask = Some(m),
                None => {}
            }
        }
        Ok(Compiled {
            statics,
            times,
            semis,
            mask,
            input,
        })
    }
}

/// What a [`Mask`] is built for, when the query's one semi-join is on the field its distinct
/// count counts, over bit sets.
fn mask_for(
    query: &Query,
    agg: &Agg,
    input: &Input,
    times: &TimeBounds,
    s: Slotting,
) -> Option<MaskFor> {
    let Agg::CountDistinct(counted) = agg else {
        return None;
    };
    let mut joins = query.filters.iter().filter_map(|f| match f {
        Filter::InQuery { field, .. } => Some(field),
        _ => None,
    });
    let (Some(field), None) = (joins.next(), joins.next()) else {
        return None;
    };
    // Only over the bit sets the pass will keep (as Accumulators::new is asked, below).
    let adds = key_adds(s.rows, times, s.periods);
    let words = Accumulators::kept_bit_words(agg, s.periods * s.slots, input, adds)?;
    (field == counted).then_some(MaskFor {
        slots: s.slots,
        words,
        teams: s.teams,
        keyed: s.keyed,
    })
}

/// The adds a pass over `rows` rows would make into key maps: a row whose periods are a suffix
/// of the order (`before_end`, `before_start`) is added to each of them, to half of `periods` on
/// average; any other to about one.
fn key_adds(rows: usize, times: &TimeBounds, periods: usize) -> usize {
    match times.suffix() {
        Some(_) => rows.saturating_mul(periods.div_ceil(2)),
        None => rows,
    }
}

/// A filter that does not depend on the period.
pub(super) enum StaticPred {
    Int {
        col: Arc<Column>,
        test: Box<dyn Fn(i64) -> bool + Send + Sync>,
    },
    Real {
        col: Arc<Column>,
        test: Box<dyn Fn(f64) -> bool + Send + Sync>,
    },
    /// Text tests are decided once per distinct value.
    Text {
        col: Arc<Column>,
        pass: Vec<bool>,
        null: bool,
    },
    Null {
        col: Arc<Column>,
        is_null: bool,
    },
}

impl StaticPred {
    fn compile(
        f: &Filter,
        col: &dyn Fn(&str) -> Result<Arc<Column>, QueryError>,
    ) -> Result<Option<StaticPred>, QueryError> {
        let pred = match f {
            Filter::Cmp { field, op, value } => {
                Self::cmp(col(field)?, *op, std::slice::from_ref(value))
            }
            Filter::OneOf { field, values } => Self::cmp(col(field)?, CmpOp::Eq, values),
            Filter::Null { field, is_null } => StaticPred::Null {
                col: col(field)?,
                is_null: *is_null,
            },
            _ => return Ok(None),
        };
        Ok(Some(pred))
    }

    /// `op` against any of `values` (one value for a comparison; many for
    /// one_of, which is `Eq` and tested through a set, as lists can be long).
    fn cmp(column: Arc<Column>, op: CmpOp, values: &[Scalar]) -> StaticPred {
        let ints = || {
            values.iter().filter_map(|v| {
                if let Scalar::Int(i) = v {
                    Some(*i)
                } else {
                    None
                }
            })
        };
        let texts = || {
            values.iter().filter_map(|v| {
                if let Scalar::Text(s) = v {
                    Some(&**s)
                } else {
                    None
                }
            })
        };
        match &*column {
            Column::Int(_) if op == CmpOp::Eq => {
                let set: HashSet<i64> = ints().collect();
                StaticPred::Int {
                    col: column,
                    test: Box::new(move |x| set.contains(&x)),
                }
            }
            Column::Int(_) => {
                let vs: Vec<i64> = ints().collect();
                StaticPred::Int {
                    col: column,
                    test: Box::new(move |x| vs.iter().any(|v| op.holds(&x, v))),
                }
            }
            Column::Real(_) => {
                let vs: Vec<f64> = values
                    .iter()
                    .filter_map(|v| match v {
                        Scalar::Real(b) => Some(f64::from_bits(*b)),
                        Scalar::Int(i) => Some(*i as f64),
                        Scalar::Text(_) => None,
                    })
                    .collect();
                StaticPred::Real {
                    col: column,
                    test: Box::new(move |x| vs.iter().any(|v| op.holds(&x, v))),
                }
            }
            Column::Text { dict, .. } => {
                let pass = if op == CmpOp::Eq {
                    let mut pass = vec![false; dict.len()];
                    texts()
                        .filter_map(|v| dict.code(v))
                        .for_each(|c| pass[c as usize] = true);
                    pass
                } else {
                    let vs: Vec<&str> = texts().collect();
                    dict.iter()
                        .map(|d| vs.iter().any(|v| op.holds(&d, v)))
                        .collect()
                };
                StaticPred::Text {
                    col: column.clone(),
                    pass,
                    null: false,
                }
            }
        }
    }

    /// Keeps the rows of `rows` that pass, in order: one loop per filter, its kind matched once.
    pub(super) fn keep(&self, rows: &mut Vec<usize>) {
        match self {
            StaticPred::Int { col, test } => match &**col {
                Column::Int(v) => with_ints!(v, |v| keep_rows(rows, |r| v.at(r).is_some_and(test))),
                _ => rows.clear(),
            },
            StaticPred::Real { col, test } => match &**col {
                Column::Real(v) => keep_rows(rows, |r| !v[r].is_nan() && test(v[r])),
                _ => rows.clear(),
            },
            StaticPred::Text { col, pass, null } => match &**col {
                Column::Text { codes, .. } => with_codes!(codes, |c| keep_rows(rows, |r| {
                    pass.get(c[r].code() as usize).copied().unwrap_or(*null)
                })),
                _ => rows.clear(),
            },
            StaticPred::Null { col, is_null } => match &**col {
                Column::Int(v) => {
                    with_ints!(v, |v| keep_rows(rows, |r| v.at(r).is_none() == *is_null))
                }
                Column::Real(v) => keep_rows(rows, |r| v[r].is_nan() == *is_null),
                Column::Text { codes, .. } => with_codes!(codes, |c| {
                    keep_rows(rows, |r| (c[r].code() == NULL_CODE) == *is_null)
                }),
            },
        }
    }

    fn test(&self, row: usize) -> bool {
        match self {
            StaticPred::Int { col, test } => match &**col {
                Column::Int(v) => Some(v.get(row)).is_some_and(|x| x != NULL_INT && test(x)),
                _ => false,
            },
            StaticPred::Real { col, test } => match &**col {
                Column::Real(v) => !v[row].is_nan() && test(v[row]),
                _ => false,
            },
            StaticPred::Text { col, pass, null } => match &**col {
                Column::Text { codes, .. } => {
                    pass.get(codes.get(row) as usize).copied().unwrap_or(*null)
                }
                _ => false,
            },
            StaticPred::Null { col, is_null } => col.is_null(row) == *is_null,
        }
    }
}

/// What an aggregate reads from each row.
pub(super) enum Input {
    None,
    Number(Arc<Column>),
    Span(Arc<Column>, Arc<Column>),
    Key(Arc<Column>),
}

#[derive(Clone, Copy)]
pub(super) enum RowValue {
    Unit,
    Number(f64),
    Key(u64),
}

impl Input {
    fn compile(
        agg: &Agg,
        col: &dyn Fn(&str) -> Result<Arc<Column>, QueryError>,
    ) -> Result<Input, QueryError> {
        Ok(match agg {
            Agg::Count => Input::None,
            Agg::Sum(f) | Agg::Avg(f) | Agg::Min(f) | Agg::Max(f) => Input::Number(col(f)?),
            Agg::AvgSpan { from, to, .. } => Input::Span(col(from)?, col(to)?),
            Agg::CountDistinct(f)
            | Agg::Values(f)
            | Agg::CountBy(f)
            | Agg::CountDistinctAtLeast(f, _) => Input::Key(col(f)?),
        })
    }

    /// The row's input, or None when the row does not take part (a NULL).
    pub(super) fn read(&self, row: usize) -> Option<RowValue> {
        match self {
            Input::None => Some(RowValue::Unit),
            Input::Number(c) => c.number(row).map(RowValue::Number),
            Input::Span(a, b) => match (a.number(row), b.number(row)) {
                (Some(x), Some(y)) => Some(RowValue::Number(y - x)),
                _ => None,
            },
            Input::Key(c) => c.key(row).map(RowValue::Key),
        }
    }
}

fn agg_output_kind(
    agg: &Agg,
    entity: &crate::store::Entity,
    col: &dyn Fn(&str) -> Result<Arc<Column>, QueryError>,
) -> Result<ItemKind, QueryError> {
    let (Agg::Values(f) | Agg::CountBy(f)) = agg else {
        return Ok(ItemKind::Int);
    };
    let ty = entity
        .field(f)
        .map(|x| x.ty)
        .ok_or_else(|| entity.unknown_field(f))?;
    Ok(match ty {
        FieldType::Integer => ItemKind::Int,
        FieldType::Bool => ItemKind::Bool,
        FieldType::Time => ItemKind::Time,
        FieldType::Real => ItemKind::Real,
        FieldType::Text => match &*col(f)? {
            Column::Text { dict, .. } => ItemKind::Text(dict.clone()),
            _ => ItemKind::Text(Arc::default()),
        },
    })
}

/// The records behind one answer: the first rows of a query for one slot and period.
#[derive(Debug, Clone, Default)]
pub struct RecordPage {
    pub entity: String,
    /// `id`, the team and owner fields, then the fields the query reads.
    pub fields: Vec<String>,
    pub rows: Vec<Vec<crate::store::Value>>,
    /// How many records match in all (the page holds at most the limit asked for).
    pub total: usize,
}

/// The fields a [`RecordPage`] shows, in order: `id`, the team and owner
/// fields, then the fields the query reads (each once; both stores show these).
pub fn page_fields<'e>(
    entity: &'e crate::store::Entity,
    query: &'e Query,
    agg: &'e Agg,
) -> Vec<&'e str> {
    let mut fields: Vec<&str> = vec!["id"];
    fields.extend(entity.team_field.as_deref());
    if let Some(crate::store::schema::OwnerLink::Field(f)) = &entity.owner {
        fields.push(f);
    }
    fields.extend(query.fields(agg));
    let mut seen = HashSet::default();
    fields.retain(|f| entity.field(f).is_some() && seen.insert(*f));
    fields
}

/// The first `limit` records (in rowid order) that `query` + `agg` counts for `slot` (a team,
/// whose subtree is read, or a person when the query is by owner) in `period`, and how many
/// there are. The same filters as [`execute`], read row by row for one slot.
pub fn records(
    store: &ColumnStore,
    query: &Query,
    agg: &Agg,
    period: PeriodId,
    slot: u32,
    cal: &Calendar,
    limit: usize,
) -> Result<RecordPage, QueryError> {
    let entity = store.schema.require(&query.entity)?;
    let fields = page_fields(entity, query, agg);
    let table = store.table(&entity.name, &fields)?;
    let tree = store.teams()?;
    let by_owner = query.by_owner && !query.all_teams;
    let slots = row_slots(store, query, &table)?;
    let col = |f: &str| {
        table
            .column(f)
            .ok_or_else(|| QueryError::Name(entity.unknown_field(f)))
    };
    let periods = [period];
    // Rows are read one by one: every join is indexed.
    let Compiled {
        statics,
        times,
        semis,
        input,
        ..
    } = Compiled::new(store, query, agg, &col, &periods, cal, None)?;
    let columns: Vec<(Arc<Column>, FieldType)> = fields
        .iter()
        .map(|f| Ok((col(f)?, entity.field(f).map_or(FieldType::Text, |x| x.ty))))
        .collect::<Result<_, QueryError>>()?;
    let mut page = RecordPage {
        entity: entity.name.clone(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        ..RecordPage::default()
    };
    for row in 0..table.len() {
        let in_slot = match &slots {
            None => true,
            Some(s) if s.get(row) == u32::MAX => false,
            Some(s) if by_owner => s.get(row) == slot,
            Some(s) => tree.up[s.get(row) as usize].contains(&slot),
        };
        if !in_slot
            || !statics.iter().all(|p| p.test(row))
            || !times.test(row, 0)
            || !semis.iter().all(|s| s.contains(slot, 0, row))
            || input.read(row).is_none()
        {
            continue;
        }
        page.total += 1;
        if page.rows.len() < limit {
            page.rows
                .push(columns.iter().map(|(c, ty)| cell(c, *ty, row)).collect());
        }
    }
    Ok(page)
}

/// One cell of a column as a typed value.
fn cell(col: &Column, ty: FieldType, row: usize) -> crate::store::Value {
    use crate::store::Value;
    if col.is_null(row) {
        return Value::Null;
    }
    match col {
        Column::Int(v) => match ty {
            FieldType::Time => Value::Time(v.get(row)),
            FieldType::Bool => Value::Bool(v.get(row) != 0),
            _ => Value::Int(v.get(row)),
        },
        Column::Real(v) => Value::Real(v[row]),
        Column::Text { codes, dict } => Value::Text(dict.get(codes.get(row)).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_doc::Source;
    use crate::query::Item;
    use crate::store::{Schema, db};

    /// hq ─┬─ north: deals d1 (won 100, Q1), d2 (won 50, Q2, customer c1), d3 (lost, Q1, customer c1)
    ///     └─ south: deal d4 (won 30, Q1, customer c1), d5 (won, no closed_at)
    fn store() -> ColumnStore {
        store_with(
            "INSERT INTO deals VALUES ('d1','north','won',100.0,NULL,1767225600000),
               ('d2','north','won',50.0,'c1',1775001600000),
               ('d3','north','lost',70.0,'c1',1767312000000),
               ('d4','south','won',30.0,'c1',1767398400000),
               ('d5','south','won',99.0,NULL,NULL);",
        )
    }

    /// The teams hq, north and south, and the deals `insert` writes.
    fn store_with(insert: &str) -> ColumnStore {
        let schema = Schema::from_source(&Source::new(
            "schema.toml",
            "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n[entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\nstage = \"text\"\namount = \"real\"\ncustomer = \"text?\"\nclosed_at = \"time?\"\n",
        ))
        .unwrap();
        let mut conn = db::open_in_memory().unwrap();
        db::migrate(&mut conn, &schema).unwrap();
        conn.execute_batch(
            &format!("INSERT INTO teams VALUES ('hq','HQ',NULL),('north','N','hq'),('south','S','hq'); {insert}"),
        )
        .unwrap();
        ColumnStore::new(conn, Arc::new(schema))
    }

    /// The quarters named, in the order given.
    fn quarters(names: &[&str]) -> Vec<PeriodId> {
        names.iter().map(|p| p.parse().unwrap()).collect()
    }

    fn q(filters: Vec<Filter>) -> Query {
        Query {
            entity: Arc::from("deals"),
            filters,
            all_teams: false,
            by_owner: false,
        }
    }

    fn won() -> Filter {
        Filter::Cmp {
            field: Arc::from("stage"),
            op: CmpOp::Eq,
            value: Scalar::Text(Arc::from("won")),
        }
    }

    fn in_p() -> Filter {
        Filter::InPeriod {
            field: Arc::from("closed_at"),
            period: crate::query::PeriodRef::Relative(0),
            cut: None,
        }
    }

    #[test]
    fn one_pass_answers_every_team_and_period_with_subtree_roll_up() {
        let s = store();
        let tree = s.teams().unwrap();
        let (q1, q2): (PeriodId, PeriodId) =
            ("2026-Q1".parse().unwrap(), "2026-Q2".parse().unwrap());
        let r = execute(
            &s,
            &q(vec![won(), in_p()]),
            &Agg::Sum(Arc::from("amount")),
            &[q1, q2],
            &Calendar::utc(),
        )
        .unwrap();
        let at = |t: &str, p| r.get(tree.index(t).unwrap(), p).cloned();
        assert_eq!(at("north", q1), Some(AggValue::Number(100.0)));
        assert_eq!(at("south", q1), Some(AggValue::Number(30.0)));
        assert_eq!(at("hq", q1), Some(AggValue::Number(130.0)));
        assert_eq!(at("hq", q2), Some(AggValue::Number(50.0)));
        let avg = execute(
            &s,
            &q(vec![won(), in_p()]),
            &Agg::Avg(Arc::from("amount")),
            &[q1, q2],
            &Calendar::utc(),
        )
        .unwrap();
        // hq's mean is over its rows (100, 30), not the mean of its children's means.
        assert_eq!(
            avg.get(tree.index("hq").unwrap(), q1),
            Some(&AggValue::Number(65.0))
        );
        assert_eq!(
            avg.get(tree.index("south").unwrap(), q2),
            Some(&AggValue::NoRows)
        );
    }

    #[test]
    fn distinct_values_roll_up_as_sets_and_nulls_are_left_out() {
        let s = store();
        let tree = s.teams().unwrap();
        let p: PeriodId = "2026-Q1".parse().unwrap();
        let before_end = Filter::BeforeEnd {
            field: Arc::from("closed_at"),
        };
        let r = execute(
            &s,
            &q(vec![before_end.clone()]),
            &Agg::CountDistinct(Arc::from("customer")),
            &[p],
            &Calendar::utc(),
        )
        .unwrap();
        assert_eq!(
            r.get(tree.index("north").unwrap(), p),
            Some(&AggValue::Number(1.0))
        );
        assert_eq!(
            r.get(tree.index("hq").unwrap(), p),
            Some(&AggValue::Number(1.0)),
            "c1 counted once across children"
        );
        let by = execute(
            &s,
            &q(vec![won()]),
            &Agg::CountBy(Arc::from("customer")),
            &[p],
            &Calendar::utc(),
        )
        .unwrap();
        let AggValue::Counts(c) = by.get(tree.index("hq").unwrap(), p).unwrap() else {
            panic!()
        };
        assert_eq!(c.as_slice(), &[(Item::Text(Arc::from("c1")), 2.0)]);
    }

    #[test]
    fn all_teams_and_null_comparisons() {
        let s = store();
        let p: PeriodId = "2026-Q1".parse().unwrap();
        let mut all = q(vec![won()]);
        all.all_teams = true;
        let r = execute(&s, &all, &Agg::Count, &[p], &Calendar::utc()).unwrap();
        assert_eq!(
            r.get(7, p),
            Some(&AggValue::Number(4.0)),
            "any team index reads the one all-teams slot"
        );
        // A NULL never compares: ne("customer", "c1") leaves out the rows without a customer.
        let ne = Filter::Cmp {
            field: Arc::from("customer"),
            op: CmpOp::Ne,
            value: Scalar::Text(Arc::from("c1")),
        };
        let r = execute(&s, &q(vec![ne]), &Agg::Count, &[p], &Calendar::utc()).unwrap();
        assert_eq!(r.get(0, p), Some(&AggValue::Number(0.0)));
    }

    /// A distinct count of the field a semi-join joins on is the popcount of its bit sets AND the
    /// inner keys' (a mask, no per-row lookup): per team and quarter it equals the number of the
    /// distinct values the same query lists through the key index, for teams and for all.
    #[test]
    fn a_distinct_count_of_the_joined_field_equals_the_values_the_index_lets_through() {
        let n = BLOCK + 500;
        let y = 1767225600000i64; // 2026-01-01
        let values: Vec<String> = (0..n)
            .map(|i| {
                let team = ["north", "south", "hq", "nowhere"][i % 4];
                let stage = if i % 3 == 0 { "lost" } else { "won" };
                let c = if i % 17 == 0 {
                    "NULL".into()
                } else {
                    format!("'c{}'", i % 211)
                };
                let at = y + (i as i64 * 7_654_321) % (366 * 86_400_000);
                format!("('d{i}','{team}','{stage}',1.0,{c},{at})")
            })
            .collect();
        let s = store_with(&format!("INSERT INTO deals VALUES {};", values.join(",")));
        let tree = s.teams().unwrap();
        let periods = quarters(&["2026-Q2", "2026-Q1", "2026-Q3", "2026-Q4"]);
        let cal = Calendar::utc();
        let lost = Filter::Cmp {
            field: Arc::from("stage"),
            op: CmpOp::Eq,
            value: Scalar::Text(Arc::from("lost")),
        };
        for all_teams in [false, true] {
            let inner = Query {
                all_teams,
                ..q(vec![lost.clone(), in_p()])
            };
            let join = Filter::InQuery {
                field: Arc::from("customer"),
                query: Box::new(inner),
                of: Arc::from("customer"),
            };
            let before_end = Filter::BeforeEnd {
                field: Arc::from("closed_at"),
            };
            let outer = Query {
                all_teams,
                ..q(vec![won(), before_end, join])
            };
            let count = execute(
                &s,
                &outer,
                &Agg::CountDistinct(Arc::from("customer")),
                &periods,
                &cal,
            )
            .unwrap();
            let listed = execute(
                &s,
                &outer,
                &Agg::Values(Arc::from("customer")),
                &periods,
                &cal,
            )
            .unwrap();
            let slots: Vec<u32> = if all_teams {
                vec![0]
            } else {
                (0..tree.len() as u32).collect()
            };
            let mut some = 0;
            for slot in slots {
                for &p in &periods {
                    let Some(AggValue::Items(items)) = listed.get(slot, p) else {
                        panic!("values of slot {slot} in {p}")
                    };
                    some += items.len();
                    let want = AggValue::Number(items.len() as f64);
                    assert_eq!(
                        count.get(slot, p),
                        Some(&want),
                        "slot {slot}, {p}, all {all_teams}"
                    );
                }
            }
            assert!(some > 0, "the join lets some customers through");
        }
    }

    /// A mask is asked for only when the pass keeps bit sets for all its periods: people over
    /// many periods, whose sets would not fit, keep the key index (a mask would be ignored).
    #[test]
    fn a_mask_is_asked_for_only_over_bit_sets_that_fit_every_period() {
        let values: Vec<String> = (0..300_000).map(|i| format!("d{i}")).collect();
        let dict = crate::store::columns::Dict::from_values(values.iter().map(String::as_str));
        let col = Arc::new(Column::Text {
            codes: vec![0; 10].into(),
            dict: Arc::new(dict),
        });
        let join = Filter::InQuery {
            field: Arc::from("deal"),
            query: Box::new(q(vec![])),
            of: Arc::from("deal"),
        };
        let query = q(vec![join]);
        let agg = Agg::CountDistinct(Arc::from("deal"));
        let input = Input::Key(col);
        let at = |slots, periods| Slotting {
            slots,
            periods,
            rows: 10,
            teams: false,
            keyed: false,
        };
        let no_time = |_: &str| -> Result<Arc<Column>, QueryError> { unreachable!() };
        let times = TimeBounds::compile(&query.filters, &no_time, &[], &Calendar::utc()).unwrap();
        // 4,688 words (37.5 KB) a set: 200 sets fit the 32 MB of bits, 200 x 13 do not.
        let one = mask_for(&query, &agg, &input, &times, at(200, 1)).expect("fits");
        assert_eq!(one.words, 300_000usize.div_ceil(64));
        assert!(mask_for(&query, &agg, &input, &times, at(200, 13)).is_none());
        let other = Agg::CountDistinct(Arc::from("other"));
        assert!(
            mask_for(&query, &other, &input, &times, at(200, 1)).is_none(),
            "not the joined field"
        );
    }

    /// A row under `before_end` would be added to every period from its own on over key maps,
    /// so such a pass takes bit sets four times the size an `in_period` one of the same rows may
    /// (the distinct customers of the won deals to date, per team and quarter, at 9.2M deals).
    #[test]
    fn a_pass_to_date_takes_bit_sets_as_large_as_the_adds_it_saves() {
        let s = store();
        let table = s.table("deals", &["closed_at", "customer"]).unwrap();
        let col = |f: &str| Ok(table.column(f).expect("loaded"));
        let periods = quarters(&["2025-Q1", "2025-Q2", "2025-Q3", "2025-Q4"]);
        let periods: Vec<PeriodId> = (0..8).map(|i| periods[0].shift(i)).collect();
        let cal = Calendar::utc();
        let before_end = [Filter::BeforeEnd {
            field: Arc::from("closed_at"),
        }];
        let to_date = TimeBounds::compile(&before_end, &col, &periods, &cal).unwrap();
        let in_period = TimeBounds::compile(&[in_p()], &col, &periods, &cal).unwrap();
        let rows = 9_000_000;
        assert_eq!(key_adds(rows, &to_date, 8), 4 * rows);
        assert_eq!(key_adds(rows, &in_period, 8), rows);
        // 4.6M customers: 72k words a set, 90 sets (10 teams x 9 quarters) = 52 MB.
        let values: Vec<String> = (0..4_600_000).map(|i| format!("c{i}")).collect();
        let dict = crate::store::columns::Dict::from_values(values.iter().map(String::as_str));
        let customers = Input::Key(Arc::new(Column::Text {
            codes: vec![0; 10].into(),
            dict: Arc::new(dict),
        }));
        let agg = Agg::CountDistinct(Arc::from("customer"));
        let bits = |adds| {
            matches!(
                Accumulators::new(&agg, 90, &customers, adds),
                Accumulators::Bits { .. }
            )
        };
        assert!(bits(key_adds(rows, &to_date, 9)));
        assert!(!bits(key_adds(rows, &in_period, 9)));
    }

    /// Under `before_end` a count or a distinct count adds each row to its first period only and
    /// spreads the accumulators along the periods afterwards: every (team, quarter), asked out
    /// of order, equals the rows counted directly, roll-up included.
    #[test]
    fn counts_before_the_end_spread_along_the_periods_equal_the_rows_counted() {
        let n = BLOCK + 300;
        let y = 1767225600000i64; // 2026-01-01
        let row = |i: usize| {
            let team = ["north", "south", "nowhere"][i % 3];
            let stage = if i.is_multiple_of(5) { "lost" } else { "won" };
            let customer = (!i.is_multiple_of(13)).then(|| format!("c{}", i % 37));
            let closed =
                (!i.is_multiple_of(11)).then(|| y - 40 * 86_400_000 + i as i64 * 12_345_678);
            (team, stage, customer, closed)
        };
        let values: Vec<String> = (0..n)
            .map(|i| {
                let (t, s, c, at) = row(i);
                let c = c.map_or("NULL".into(), |c| format!("'{c}'"));
                let at = at.map_or("NULL".into(), |a| a.to_string());
                format!("('d{i}','{t}','{s}',1.0,{c},{at})")
            })
            .collect();
        let s = store_with(&format!("INSERT INTO deals VALUES {};", values.join(",")));
        let tree = s.teams().unwrap();
        let periods = quarters(&["2026-Q3", "2026-Q1", "2026-Q4", "2026-Q2"]);
        let cal = Calendar::utc();
        let before_end = Filter::BeforeEnd {
            field: Arc::from("closed_at"),
        };
        let customer = || Arc::from("customer");
        for agg in [
            Agg::Count,
            Agg::CountDistinct(customer()),
            Agg::CountDistinctAtLeast(customer(), 2),
            Agg::CountDistinctAtLeast(customer(), 3),
        ] {
            let r = execute(
                &s,
                &q(vec![won(), before_end.clone()]),
                &agg,
                &periods,
                &cal,
            )
            .unwrap();
            for team in ["north", "south", "hq"] {
                for &p in &periods {
                    let end = cal.period(p).end;
                    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                    let mut rows = 0;
                    for (t, st, c, at) in (0..n).map(row) {
                        let here = t == team || (team == "hq" && t != "nowhere");
                        if here && st == "won" && at.is_some_and(|a| a < end) {
                            rows += 1;
                            if let Some(c) = c {
                                *counts.entry(c).or_default() += 1;
                            }
                        }
                    }
                    let at_least = |k: usize| counts.values().filter(|n| **n >= k).count();
                    let want = match &agg {
                        Agg::Count => rows,
                        Agg::CountDistinct(_) => counts.len(),
                        Agg::CountDistinctAtLeast(_, k) => at_least(*k as usize),
                        _ => unreachable!(),
                    };
                    let got = r.get(tree.index(team).unwrap(), p);
                    assert_eq!(
                        got,
                        Some(&AggValue::Number(want as f64)),
                        "{agg} {team} {p}"
                    );
                }
            }
        }
    }

    /// Rows over several blocks, each kind of filter, a team the tree does not know and NULLs:
    /// every (team, quarter) equals the sum taken row by row.
    #[test]
    fn a_pass_over_many_blocks_equals_the_rows_taken_one_by_one() {
        let n = 2 * BLOCK + 77;
        let q1 = 1767225600000i64; // 2026-01-01
        let row = |i: usize| {
            let team = ["north", "south", "nowhere"][i % 3];
            let stage = if i.is_multiple_of(4) { "lost" } else { "won" };
            let amount = if i.is_multiple_of(7) {
                "NULL".to_string()
            } else {
                format!("{i}.5")
            };
            let closed = if i.is_multiple_of(11) {
                "NULL".to_string()
            } else {
                (q1 + i as i64 * 3_600_000 * 2).to_string()
            };
            (team, stage, amount, closed)
        };
        let values: Vec<String> = (0..n)
            .map(|i| {
                let (t, s, a, c) = row(i);
                format!("('d{i}','{t}','{s}',{a},NULL,{c})")
            })
            .collect();
        let s = store_with(&format!("INSERT INTO deals VALUES {};", values.join(",")));
        let tree = s.teams().unwrap();
        let periods: Vec<PeriodId> = ["2026-Q1", "2026-Q2"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let r = execute(
            &s,
            &q(vec![won(), in_p()]),
            &Agg::Sum(Arc::from("amount")),
            &periods,
            &Calendar::utc(),
        )
        .unwrap();
        let cal = Calendar::utc();
        for team in ["north", "south"] {
            for &p in &periods {
                let b = cal.period(p);
                let want: f64 = (0..n)
                    .map(row)
                    .filter(|(t, s, a, c)| {
                        *t == team
                            && *s == "won"
                            && a != "NULL"
                            && c != "NULL"
                            && (b.start..b.end).contains(&c.parse::<i64>().unwrap())
                    })
                    .map(|(_, _, a, _)| a.parse::<f64>().unwrap())
                    .sum();
                let got = r.get(tree.index(team).unwrap(), p);
                let want = if want == 0.0 {
                    AggValue::NoRows
                } else {
                    AggValue::Number(want)
                };
                assert_eq!(got, Some(&want), "{team} {p}");
            }
        }
    }
}
