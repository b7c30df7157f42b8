//! A query's time filters resolved to [lo, hi) bounds per evaluated period, and the periods a
//! row falls in, found without testing every period.
//!
//! Quarters of one evaluation do not overlap, so under `in_period` a row belongs to at most one of
//! them: the bounds are sorted by start once and each row's period is a binary search.
//! Under `before_end` (one common start, a different end per period) a row belongs to every
//! period ending after it: a suffix of the bounds sorted by end. Several such fields whose
//! bounds sort the periods alike (`before_end` of one, `before_start` of another) give the
//! suffix after the latest of their positions, and then a row's periods are all known from
//! where they begin ([`TimeBounds::first`]). Anything else (mixed grains) tests each period as
//! before.

use std::sync::Arc;

use super::rank::Rank;
use super::{Filter, QueryError};
use crate::period::{Calendar, PeriodId};
use crate::store::columns::{Column, NULL_INT};

/// [lo, hi) per evaluated period.
type Bounds = Vec<(i64, i64)>;

/// How one time filter bounds its field in a given period.
type BoundFn<'a> = Box<dyn Fn(PeriodId) -> (i64, i64) + 'a>;

/// The time filters of one query, compiled for the periods of one pass.
pub(super) struct TimeBounds {
    fields: Vec<(Arc<Column>, Bounds)>,
    periods: usize,
    /// The field whose bounds pick a row's candidate periods ...
    lead: usize,
    /// ... and per field, whether the lookup decides it (the others are tested on those).
    led: Vec<bool>,
    lookup: Lookup,
}

/// How the lead field's bounds give a row's candidate periods.
#[derive(Debug, PartialEq, Clone)]
enum Lookup {
    /// No time filter: every period.
    All,
    /// Bounds that do not overlap, sorted by start (empty ones left out): at most one period.
    Disjoint {
        starts: Rank,
        ends: Vec<i64>,
        index: Vec<usize>,
    },
    /// Per field of `parts` (field, its one start, its ends in the order of `index`): the
    /// periods after the latest position any of the row's values has in those ends.
    Ends {
        parts: Vec<(usize, i64, Rank)>,
        index: Vec<usize>,
    },
    /// Each period tested.
    Scan,
}

impl TimeBounds {
    pub(super) fn compile(
        filters: &[Filter],
        col: &dyn Fn(&str) -> Result<Arc<Column>, QueryError>,
        periods: &[PeriodId],
        cal: &Calendar,
    ) -> Result<TimeBounds, QueryError> {
        let mut by_field: Vec<(&str, Bounds)> = Vec::new();
        for f in filters {
            let (field, bound): (&str, BoundFn<'_>) = match f {
                Filter::InPeriod { field, period, cut } => (
                    field,
                    Box::new(move |p: PeriodId| {
                        let r = cal.period(period.resolve(p));
                        let end = cut.map_or(r.end, |len| r.end.min(r.start + len.max(0)));
                        (r.start, end)
                    }),
                ),
                Filter::BeforeStart { field } => (
                    field,
                    Box::new(|p: PeriodId| (i64::MIN + 1, cal.period(p).start)),
                ),
                Filter::BeforeEnd { field } => (
                    field,
                    Box::new(|p: PeriodId| (i64::MIN + 1, cal.period(p).end)),
                ),
                _ => continue,
            };
            let entry = match by_field.iter().position(|(n, _)| *n == field) {
                Some(i) => &mut by_field[i].1,
                None => {
                    by_field.push((field, vec![(i64::MIN + 1, i64::MAX); periods.len()]));
                    &mut by_field.last_mut().expect("just pushed").1
                }
            };
            for (i, p) in periods.iter().enumerate() {
                let (lo, hi) = bound(*p);
                entry[i] = (entry[i].0.max(lo), entry[i].1.min(hi));
            }
        }
        let fields: Vec<(Arc<Column>, Bounds)> = by_field
            .into_iter()
            .map(|(f, b)| Ok((col(f)?, b)))
            .collect::<Result<_, QueryError>>()?;
        Ok(TimeBounds::new(fields, periods.len()))
    }

    fn new(fields: Vec<(Arc<Column>, Bounds)>, periods: usize) -> TimeBounds {
        let looked: Vec<Lookup> = fields
            .iter()
            .map(|(c, b)| match **c {
                Column::Int(_) => Lookup::of(b),
                _ => Lookup::Scan,
            })
            .collect();
        let rank = |l: &Lookup| match l {
            Lookup::Disjoint { .. } => 0,
            Lookup::Ends { .. } => 1,
            _ => 2,
        };
        let best = (0..looked.len()).min_by_key(|i| rank(&looked[*i]));
        let mut led = vec![false; fields.len()];
        let lead = best.unwrap_or(0);
        let lookup = match best {
            None => Lookup::All,
            Some(i) => {
                led[i] = true;
                let mut lookup = looked[i].clone();
                // Other fields whose ends sort the periods alike join the suffix.
                if let Lookup::Ends { parts, index } = &mut lookup {
                    parts[0].0 = i;
                    for (j, other) in looked.iter().enumerate() {
                        if let Lookup::Ends {
                            parts: p,
                            index: same,
                        } = other
                            && j != i
                            && same == index
                        {
                            parts.push((j, p[0].1, p[0].2.clone()));
                            led[j] = true;
                        }
                    }
                }
                lookup
            }
        };
        TimeBounds {
            fields,
            periods,
            lead,
            led,
            lookup,
        }
    }

    /// The order of the periods in which every row's periods are a suffix, when the time filters
    /// are `before_end` and `before_start` only (so the lookup decides every field).
    pub(super) fn suffix(&self) -> Option<&[usize]> {
        match &self.lookup {
            Lookup::Ends { index, .. } if self.led.iter().all(|l| *l) => Some(index),
            _ => None,
        }
    }

    /// Where in the order of [`Self::suffix`] the periods of `row` begin (None: it is in none);
    /// only under an `Ends` lookup.
    #[inline(always)]
    pub(super) fn first(&self, row: usize) -> Option<usize> {
        let Lookup::Ends { parts, index } = &self.lookup else {
            return None;
        };
        let mut first = 0;
        for (field, lo, ends) in parts {
            let v = match &*self.fields[*field].0 {
                Column::Int(v) => v.get(row),
                _ => return None,
            };
            if v == NULL_INT || v < *lo {
                return None;
            }
            first = first.max(ends.of(v));
        }
        (first < index.len()).then_some(first)
    }

    /// Whether `row` meets every time filter in period `period`.
    pub(super) fn test(&self, row: usize, period: usize) -> bool {
        self.fields
            .iter()
            .all(|(col, bounds)| within(col, bounds[period], row))
    }

    /// Calls `f` with each period `row` meets every time filter in (in no particular order).
    #[inline(always)]
    pub(super) fn each(&self, row: usize, mut f: impl FnMut(usize)) {
        let rest = |p: usize| {
            (self.fields.iter().zip(&self.led))
                .all(|((col, bounds), led)| *led || within(col, bounds[p], row))
        };
        let value = || match &*self.fields[self.lead].0 {
            Column::Int(v) => Some(v.get(row)).filter(|x| *x != NULL_INT),
            _ => None,
        };
        match &self.lookup {
            Lookup::All => (0..self.periods).for_each(f),
            Lookup::Scan => (0..self.periods).filter(|p| self.test(row, *p)).for_each(f),
            Lookup::Disjoint {
                starts,
                ends,
                index,
            } => {
                let Some(v) = value() else { return };
                let k = starts.of(v);
                if k > 0 && v < ends[k - 1] && rest(index[k - 1]) {
                    f(index[k - 1]);
                }
            }
            Lookup::Ends { index, .. } => {
                let Some(first) = self.first(row) else { return };
                index[first..]
                    .iter()
                    .copied()
                    .filter(|p| rest(*p))
                    .for_each(f);
            }
        }
    }
}

impl Lookup {
    /// The fastest lookup the bounds of one field allow.
    fn of(bounds: &Bounds) -> Lookup {
        let mut live: Vec<usize> = (0..bounds.len())
            .filter(|p| bounds[*p].0 < bounds[*p].1)
            .collect();
        live.sort_by_key(|p| bounds[*p]);
        let disjoint = live.windows(2).all(|w| bounds[w[0]].1 <= bounds[w[1]].0);
        if disjoint {
            return Lookup::Disjoint {
                starts: Rank::new(live.iter().map(|p| bounds[*p].0).collect()),
                ends: live.iter().map(|p| bounds[*p].1).collect(),
                index: live,
            };
        }
        let lo = bounds.first().map_or(0, |b| b.0);
        if bounds.iter().all(|b| b.0 == lo) {
            live.sort_by_key(|p| bounds[*p].1);
            return Lookup::Ends {
                parts: vec![(
                    0,
                    lo,
                    Rank::new(live.iter().map(|p| bounds[*p].1).collect()),
                )],
                index: live,
            };
        }
        Lookup::Scan
    }
}

#[inline(always)]
fn within(col: &Column, (lo, hi): (i64, i64), row: usize) -> bool {
    match col {
        Column::Int(v) => {
            let x = v.get(row);
            x != NULL_INT && x >= lo && x < hi
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds_of(col: Vec<i64>, fields: Vec<Bounds>) -> TimeBounds {
        let col = Arc::new(Column::Int(col.into()));
        let periods = fields.first().map_or(3, Vec::len);
        TimeBounds::new(
            fields.into_iter().map(|b| (col.clone(), b)).collect(),
            periods,
        )
    }

    /// What `each` yields for every row, sorted, against the plain test of every period.
    fn agree(t: &TimeBounds, rows: usize) {
        for row in 0..rows {
            let mut fast = Vec::new();
            t.each(row, |p| fast.push(p));
            fast.sort_unstable();
            let slow: Vec<usize> = (0..t.periods).filter(|p| t.test(row, *p)).collect();
            assert_eq!(fast, slow, "row {row}");
        }
    }

    const VALUES: [i64; 9] = [NULL_INT, -5, 0, 9, 10, 19, 20, 29, 30];

    #[test]
    fn quarters_are_found_by_binary_search_and_agree_with_testing_each() {
        // Given out of order, with an empty (cut to nothing) period among them.
        let t = bounds_of(
            VALUES.to_vec(),
            vec![vec![(20, 30), (0, 10), (10, 10), (10, 20)]],
        );
        assert!(matches!(t.lookup, Lookup::Disjoint { .. }));
        agree(&t, VALUES.len());
    }

    #[test]
    fn before_end_yields_every_period_ending_after_the_row() {
        let lo = i64::MIN + 1;
        let t = bounds_of(VALUES.to_vec(), vec![vec![(lo, 30), (lo, 10), (lo, 20)]]);
        assert!(matches!(t.lookup, Lookup::Ends { .. }));
        agree(&t, VALUES.len());
    }

    #[test]
    fn before_end_of_one_field_and_before_start_of_another_are_one_suffix() {
        let lo = i64::MIN + 1;
        // Periods [20, 30), [0, 10), [10, 20), given out of order; created vs closed.
        let created = Arc::new(Column::Int(
            vec![NULL_INT, -5, 0, 9, 10, 19, 25, 5, 29].into(),
        ));
        let closed = Arc::new(Column::Int(
            vec![0, NULL_INT, 5, 25, 10, 9, 0, 19, 30].into(),
        ));
        let t = TimeBounds::new(
            vec![
                (created, vec![(lo, 30), (lo, 10), (lo, 20)]),
                (closed, vec![(lo, 20), (lo, 0), (lo, 10)]),
            ],
            3,
        );
        let order = t.suffix().expect("one suffix of both fields").to_vec();
        assert_eq!(order, [1, 2, 0]);
        agree(&t, 9);
        for row in 0..9 {
            let mut each = Vec::new();
            t.each(row, |p| each.push(p));
            let from_first = t.first(row).map_or(vec![], |k| order[k..].to_vec());
            assert_eq!(each, from_first, "row {row}");
        }
        assert_eq!(t.first(8), None, "closed at 30: after every start");
    }

    #[test]
    fn overlapping_bounds_and_a_second_field_fall_back_or_are_tested_on_the_candidates() {
        let t = bounds_of(VALUES.to_vec(), vec![vec![(0, 20), (10, 30), (-10, 5)]]);
        assert_eq!(t.lookup, Lookup::Scan);
        agree(&t, VALUES.len());
        let lo = i64::MIN + 1;
        let t = bounds_of(
            VALUES.to_vec(),
            vec![
                vec![(lo, 30), (lo, 10), (lo, 20)],
                vec![(0, 10), (10, 20), (20, 30)],
            ],
        );
        assert!(
            t.suffix().is_none(),
            "in_period leads; before_end is tested"
        );
        agree(&t, VALUES.len());
        let none = bounds_of(VALUES.to_vec(), vec![]);
        assert_eq!(none.lookup, Lookup::All);
        agree(&none, VALUES.len());
    }
}
