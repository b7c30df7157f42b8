//! The pass's rows a block at a time: the rows of a block that the static filters keep, each
//! with its answer slot, and the typed loops that add their values.
//!
//! A row-at-a-time loop paid, for every row, a call per filter, a match on the aggregate's
//! input and one on the accumulators, and a value passed through memory. Here each filter is one
//! tight loop over the block's surviving rows (most rows of a `stage = "won"` pass stop at the
//! first), and the adding loop is compiled once per (accumulator, input column) kind, so a
//! row's value stays in a register from its column to its accumulator.

use super::acc::{Accumulators, bump};
use super::exec::{Input, StaticPred};
use super::time::TimeBounds;
use crate::store::columns::{
    Code, Codes, Column, IntRead, NULL_CODE, RowSlots, with_codes, with_ints,
};

/// Rows per block: the row and slot lists stay in the first-level cache.
pub(super) const BLOCK: usize = 2048;

/// The rows of one block that passed every static filter so far, and each one's slot.
#[derive(Default)]
pub(super) struct Block {
    pub(super) rows: Vec<usize>,
    pub(super) slots: Vec<u32>,
}

impl Block {
    /// The rows of `range` that every filter of `statics` keeps and that have a slot (with
    /// `slots`, the naming column's codes and the slot per code; without, all share slot 0).
    pub(super) fn select(
        &mut self,
        range: std::ops::Range<usize>,
        statics: &[StaticPred],
        slots: Option<(&Codes, &[u32])>,
    ) {
        self.rows.clear();
        self.rows.extend(range);
        for p in statics {
            p.keep(&mut self.rows);
        }
        self.slots.clear();
        self.slots.resize(self.rows.len(), 0);
        let Some((codes, map)) = slots else { return };
        with_codes!(codes, |c| self.slot_rows(c, map));
    }

    /// Each row's slot by the naming column's codes `codes`, keeping the rows that have one.
    fn slot_rows<C: Code>(&mut self, codes: &[C], map: &[u32]) {
        let mut n = 0;
        for i in 0..self.rows.len() {
            let row = self.rows[i];
            let slot = RowSlots::of(codes, map, row);
            self.rows[n] = row;
            self.slots[n] = slot;
            n += usize::from(slot != u32::MAX);
        }
        self.rows.truncate(n);
        self.slots.truncate(n);
    }
}

/// Keeps the rows `keep` holds for, in order, without a branch per row.
#[inline(always)]
pub(super) fn keep_rows(rows: &mut Vec<usize>, keep: impl Fn(usize) -> bool) {
    let mut n = 0;
    for i in 0..rows.len() {
        let row = rows[i];
        rows[n] = row;
        n += usize::from(keep(row));
    }
    rows.truncate(n);
}

/// The order of the periods along which a pass may add each row to its first period only and
/// spread the accumulators afterwards ([`Accumulators::spread`]): when every row's periods are a
/// suffix of that order (`before_end`, `before_start`) and merging is exact (counts and bit
/// sets; a sum merged would add its terms in another order).
pub(super) fn cumulative<'a>(
    acc: &Accumulators,
    input: &Input,
    times: &'a TimeBounds,
) -> Option<&'a [usize]> {
    let exact = match acc {
        Accumulators::Bits { .. } => true,
        Accumulators::Num(_) => matches!(input, Input::None),
        Accumulators::Keys(_) => false,
    };
    times.suffix().filter(|_| exact)
}

/// Adds every row of `block` that has an input value to its slot in each period `times` puts it
/// in (`slots` slots a period); with `order` (see [`cumulative`]), in the first of them only.
pub(super) fn add_block(
    acc: &mut Accumulators,
    block: &Block,
    input: &Input,
    times: &TimeBounds,
    order: Option<&[usize]>,
    slots: usize,
) {
    let times = Periods { times, order };
    match (acc, input) {
        // A count reads only `n` (see acc::finish_num): one add a row, not four.
        (Accumulators::Num(a), Input::None) => {
            add_each(block, times, slots, |_| Some(()), |i, ()| a[i].count_one())
        }
        (Accumulators::Num(a), Input::Number(c)) => match &**c {
            Column::Int(v) => with_ints!(v, |v| {
                each_num(block, times, slots, a, |r| v.at(r).map(|x| x as f64))
            }),
            Column::Real(v) => {
                each_num(block, times, slots, a, |r| (!v[r].is_nan()).then_some(v[r]))
            }
            Column::Text { .. } => {}
        },
        (Accumulators::Num(a), Input::Span(from, to)) => each_num(block, times, slots, a, |r| {
            Some(to.number(r)? - from.number(r)?)
        }),
        (Accumulators::Keys(a), Input::Key(c)) => {
            add_each(
                block,
                times,
                slots,
                |r| c.key(r),
                |i, k| {
                    *a[i].entry(k).or_insert(0.0) += 1.0;
                },
            );
        }
        (
            Accumulators::Bits {
                words,
                planes,
                bits,
            },
            Input::Key(c),
        ) => {
            let (words, planes) = (*words, *planes);
            let mut set = |i: usize, k: u64| bump(bits, words, planes, i, k);
            match &**c {
                Column::Text { codes, .. } => with_codes!(codes, |codes| {
                    add_each(
                        block,
                        times,
                        slots,
                        |r| {
                            let c = codes[r].code();
                            (c != NULL_CODE).then_some(u64::from(c))
                        },
                        &mut set,
                    )
                }),
                _ => add_each(block, times, slots, |r| c.key(r), &mut set),
            }
        }
        _ => {}
    }
}

/// Where a row is added: each period `times` puts it in, or the first of them along `order`.
#[derive(Clone, Copy)]
struct Periods<'a> {
    times: &'a TimeBounds,
    order: Option<&'a [usize]>,
}

/// [`add_each`] into number accumulators.
#[inline(always)]
fn each_num(
    block: &Block,
    times: Periods<'_>,
    slots: usize,
    a: &mut [super::acc::Num],
    read: impl Fn(usize) -> Option<f64>,
) {
    add_each(block, times, slots, read, |i, x| a[i].add(x));
}

/// The adding loop, compiled for each reader and accumulator it is given.
#[inline(always)]
fn add_each<V: Copy>(
    block: &Block,
    times: Periods<'_>,
    slots: usize,
    read: impl Fn(usize) -> Option<V>,
    mut add: impl FnMut(usize, V),
) {
    let rows = block.rows.iter().zip(&block.slots);
    match times.order {
        Some(order) => {
            for (&row, &slot) in rows {
                let Some(v) = read(row) else { continue };
                if let Some(k) = times.times.first(row) {
                    add(order[k] * slots + slot as usize, v);
                }
            }
        }
        None => {
            for (&row, &slot) in rows {
                let Some(v) = read(row) else { continue };
                times.times.each(row, |p| add(p * slots + slot as usize, v));
            }
        }
    }
}
