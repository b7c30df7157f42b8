//! `.one_of(field, query, of)`: the semi-join's key index.
//!
//! The inner query is accumulated once, per (period, slot) of its own rows and not rolled up;
//! its keys (translated into keys of the outer column) are then indexed once: key → the
//! (slot, period) pairs it occurs in. An outer row looks its key up once, whatever the number of
//! periods and ancestors it is counted for, and a row whose key the inner query never saw is
//! dropped at once. Whether an inner slot counts for an outer one is the roll-up relation: a
//! team's set holds its whole subtree's keys.
//!
//! When the outer query counts the distinct values of the joined field itself (the deals that
//! reached "won" and had a lead in the period), the inner keys are kept instead as a [`Mask`]:
//! bit sets over the outer column's codes, laid out as the outer count's own, each slot's set
//! holding what its cover allows. The outer pass then runs as one without a join, and each
//! slot's count is the popcount of its set AND its mask: no key is looked up per row.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use super::acc::{Accumulators, ItemKind, roll_up_sets};
use super::exec::accumulate;
use super::{Agg, Filter, QueryError};
use crate::period::{Calendar, PeriodId};
use crate::store::TeamTree;
use crate::store::columns::{Column, ColumnStore};

/// One (inner slot, period index) a key occurs in.
pub(super) type Entry = (u32, u32);

pub(super) struct SemiJoin {
    col: Arc<Column>,
    index: Index,
    entries: Vec<Entry>,
    cover: Cover,
}

/// Outer key → its range (start, length) in `entries`.
enum Index {
    /// By text code: a dictionary's codes are dense.
    Dense(Vec<(u32, u32)>),
    Hash(HashMap<u64, (u32, u32)>),
}

/// The inner query's keys as bit sets over the outer column's codes, `words` words per
/// (period, outer slot), laid out as the accumulators of the outer distinct count.
pub(super) struct Mask {
    pub(super) bits: Vec<u64>,
}

/// The outer pass a [`Mask`] is built for: its slots, the words of its bit sets, and whether
/// its slots are teams (rolled up the tree).
#[derive(Clone, Copy)]
pub(super) struct MaskFor {
    pub(super) slots: usize,
    pub(super) words: usize,
    pub(super) teams: bool,
    /// Its slots are one a period, each key counted for its own slot (see `Pass::keyed`).
    pub(super) keyed: bool,
}

/// A compiled `one_of` filter.
pub(super) enum Join {
    Index(SemiJoin),
    Mask(Mask),
}

/// Which outer slots an inner slot's keys count for.
pub(super) enum Cover {
    /// A team's own rows count for the team and every ancestor.
    Subtree(Arc<TeamTree>),
    /// Only for the same slot (a person, or inner slots already counted per ancestor).
    Same,
    /// For every slot (an inner query over all teams).
    Every,
}

impl SemiJoin {
    /// The join of `f` (None: `f` is no `one_of`); as a [`Mask`] when `mask` asks for one and
    /// the inner slots line up with the outer ones.
    pub(super) fn compile(
        store: &ColumnStore,
        f: &Filter,
        col: &dyn Fn(&str) -> Result<Arc<Column>, QueryError>,
        periods: &[PeriodId],
        cal: &Calendar,
        mask: Option<MaskFor>,
    ) -> Result<Option<Join>, QueryError> {
        let Filter::InQuery { field, query, of } = f else {
            return Ok(None);
        };
        let outer = col(field)?;
        let agg = Agg::Values(of.clone());
        let mut pass = accumulate(store, query, &agg, periods, cal)?;
        let cover = match (query.all_teams, pass.rolls_up()) {
            (true, _) => Cover::Every,
            (false, true) => Cover::Subtree(pass.tree.clone()),
            (false, false) => Cover::Same,
        };
        let inner = store.table(&query.entity, &[&**of])?.column(of);
        let same_column = inner.is_some_and(|c| Arc::ptr_eq(&c, &outer));
        let translate: Box<dyn Fn(u64) -> Option<u64>> = if same_column {
            Box::new(Some)
        } else {
            key_translation(&outer, &pass.kind, field, of)?
        };
        let inner_slots = pass.acc_slots();
        // A keyed mask holds one set a period: it stands for each slot's only when the inner
        // pass is keyed by the same column (each key in the same slot on both sides).
        let mask = mask.filter(|m| m.keyed == pass.keyed.is_some() && (!m.keyed || same_column));
        if let Some(m) = mask.and_then(|m| {
            Mask::build(
                &mut pass.acc,
                inner_slots,
                &cover,
                same_column,
                &*translate,
                m,
                periods.len(),
            )
        }) {
            return Ok(Some(Join::Mask(m)));
        }
        let pairs = |f: &mut dyn FnMut(u64, Entry)| {
            pass.each_key(|k, e| {
                if let Some(k) = translate(k) {
                    f(k, e);
                }
            })
        };
        let started = std::time::Instant::now();
        let join = match &*outer {
            Column::Text { dict, .. } => {
                let codes = dict.len();
                SemiJoin::dense(outer.clone(), codes, pairs, cover)
            }
            _ => {
                let mut triples: Vec<(u64, Entry)> = Vec::new();
                pairs(&mut |k, e| triples.push((k, e)));
                SemiJoin::index(outer.clone(), triples, cover)
            }
        };
        tracing::debug!(
            inner = %format_args!("{query}"),
            pairs = join.entries.len(),
            index_us = started.elapsed().as_micros() as u64,
            "indexed a semi-join"
        );
        Ok(Some(Join::Index(join)))
    }

    /// The index of a text column (`codes` dictionary codes), built straight from the inner
    /// pass: `pairs` walks its (outer key, entry) pairs, which are distinct, once to count them
    /// per code and once to place them. No list of pairs is grown or sorted.
    fn dense(
        col: Arc<Column>,
        codes: usize,
        pairs: impl Fn(&mut dyn FnMut(u64, Entry)),
        cover: Cover,
    ) -> SemiJoin {
        let mut index: Vec<(u32, u32)> = vec![(0, 0); codes];
        pairs(&mut |k, _| {
            if let Some(r) = index.get_mut(k as usize) {
                r.1 += 1;
            }
        });
        let mut start = 0u32;
        for r in &mut index {
            let n = r.1;
            *r = (start, 0);
            start += n;
        }
        let mut entries: Vec<Entry> = vec![(0, 0); start as usize];
        pairs(&mut |k, e| {
            if let Some(r) = index.get_mut(k as usize) {
                entries[(r.0 + r.1) as usize] = e;
                r.1 += 1;
            }
        });
        SemiJoin {
            col,
            index: Index::Dense(index),
            entries,
            cover,
        }
    }

    /// The index of (outer key, entry) pairs, in any order.
    pub(super) fn index(
        col: Arc<Column>,
        mut triples: Vec<(u64, Entry)>,
        cover: Cover,
    ) -> SemiJoin {
        triples.sort_unstable();
        triples.dedup();
        let mut index = match &*col {
            Column::Text { dict, .. } => Index::Dense(vec![(0, 0); dict.len()]),
            _ => Index::Hash(HashMap::default()),
        };
        let mut start = 0;
        while start < triples.len() {
            let key = triples[start].0;
            let len = triples[start..].iter().take_while(|t| t.0 == key).count();
            let range = (start as u32, len as u32);
            match &mut index {
                Index::Dense(v) => v[key as usize] = range,
                Index::Hash(m) => {
                    m.insert(key, range);
                }
            }
            start += len;
        }
        SemiJoin {
            col,
            index,
            entries: triples.into_iter().map(|t| t.1).collect(),
            cover,
        }
    }

    /// Where the key of `row` occurs in the inner query; None: nowhere (the row never passes).
    pub(super) fn hits(&self, row: usize) -> Option<&[Entry]> {
        let k = self.col.key(row)?;
        let (start, len) = match &self.index {
            Index::Dense(v) => *v.get(k as usize)?,
            Index::Hash(m) => *m.get(&k)?,
        };
        (len > 0).then(|| &self.entries[start as usize..(start + len) as usize])
    }

    /// Whether the inner query of `slot` in period `period` holds the key whose entries are `hits`.
    pub(super) fn covers(&self, hits: &[Entry], slot: u32, period: usize) -> bool {
        let period = period as u32;
        hits.iter().any(|&(s, p)| {
            p == period
                && match &self.cover {
                    Cover::Subtree(tree) => tree.up[s as usize].contains(&slot),
                    Cover::Same => s == slot,
                    Cover::Every => true,
                }
        })
    }

    /// Whether the inner query of `slot` in period `period` holds the key of `row`.
    pub(super) fn contains(&self, slot: u32, period: usize, row: usize) -> bool {
        self.hits(row).is_some_and(|h| self.covers(h, slot, period))
    }
}

impl Mask {
    /// The mask of an inner pass (`acc`, `inner` slots) for the outer pass `to`, over `periods`
    /// periods; None when the inner slots do not line up with the outer ones. Over the outer
    /// column itself (`same_column`), the inner bit sets are taken as they are.
    fn build(
        acc: &mut Accumulators,
        inner: usize,
        cover: &Cover,
        same_column: bool,
        translate: &dyn Fn(u64) -> Option<u64>,
        to: MaskFor,
        periods: usize,
    ) -> Option<Mask> {
        let (slots, words) = (to.slots, to.words);
        match cover {
            Cover::Subtree(tree) if to.teams && inner == slots && tree.len() == slots => {}
            Cover::Same if inner == slots => {}
            Cover::Every => {}
            _ => return None,
        }
        let set = |slot: usize| slot * words..(slot + 1) * words;
        let mut bits = match acc {
            Accumulators::Bits {
                words: w,
                planes: 1,
                bits,
            } if same_column && *w == words && !matches!(cover, Cover::Every) => {
                std::mem::take(bits)
            }
            acc => {
                let mut bits = vec![0u64; periods * slots * words];
                acc.each_key(|i, k| {
                    let Some(k) = translate(k).filter(|k| (*k as usize) < words * 64) else {
                        return;
                    };
                    let (s, p) = (i % inner, i / inner);
                    let s = if matches!(cover, Cover::Every) { 0 } else { s };
                    bits[set(p * slots + s).start + (k / 64) as usize] |= 1 << (k % 64);
                });
                bits
            }
        };
        match cover {
            // Each team's set gains its subtree's.
            Cover::Subtree(tree) => roll_up_sets(&mut bits, words, 1, tree, periods, |_, _| {}),
            Cover::Every => {
                for p in 0..periods {
                    for s in 1..slots {
                        bits.copy_within(set(p * slots), set(p * slots + s).start);
                    }
                }
            }
            Cover::Same => {}
        }
        Some(Mask { bits })
    }
}

/// Maps a key of the inner column to the key of the same value in the outer column.
fn key_translation<'a>(
    outer: &'a Column,
    inner: &'a ItemKind,
    field: &str,
    of: &str,
) -> Result<Box<dyn Fn(u64) -> Option<u64> + 'a>, QueryError> {
    Ok(match (outer, inner) {
        (Column::Text { dict, .. }, ItemKind::Text(values)) => {
            Box::new(move |k| dict.code(values.get(k as u32)).map(u64::from))
        }
        (Column::Int(_), ItemKind::Int | ItemKind::Bool | ItemKind::Time)
        | (Column::Real(_), ItemKind::Real) => Box::new(Some),
        _ => {
            return Err(QueryError::JoinTypes {
                field: field.to_string(),
                of: of.to_string(),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hq(0) ─ north(1) ─ team(3); hq ─ south(2)
    fn tree() -> Arc<TeamTree> {
        let t = |id: &str, parent: Option<&str>| {
            (id.to_string(), id.to_string(), parent.map(String::from))
        };
        Arc::new(TeamTree::new(vec![
            t("a_hq", None),
            t("b_north", Some("a_hq")),
            t("c_south", Some("a_hq")),
            t("d_team", Some("b_north")),
        ]))
    }

    #[test]
    fn a_key_counts_for_its_slot_and_the_ancestors_the_cover_allows() {
        // Rows' keys: 7, 8, 9 (null-free Int column); 7 in d_team's set of period 1, 8 in c_south's
        // of period 0, 9 nowhere.
        let col = Arc::new(Column::Int(vec![7, 8, 9].into()));
        let triples = vec![(8, (2, 0)), (7, (3, 1)), (7, (3, 1))];
        let j = SemiJoin::index(col.clone(), triples.clone(), Cover::Subtree(tree()));
        assert_eq!(j.hits(0), Some(&[(3, 1)][..]), "duplicates are kept once");
        assert!(j.hits(2).is_none());
        for slot in [3, 1, 0] {
            assert!(j.contains(slot, 1, 0), "slot {slot}");
        }
        assert!(!j.contains(2, 1, 0), "a sibling's set does not hold it");
        assert!(!j.contains(3, 0, 0), "nor another period's");
        assert!(j.contains(0, 0, 1) && j.contains(2, 0, 1) && !j.contains(1, 0, 1));
        let same = SemiJoin::index(col.clone(), triples.clone(), Cover::Same);
        assert!(same.contains(3, 1, 0) && !same.contains(1, 1, 0));
        let every = SemiJoin::index(col, triples, Cover::Every);
        assert!(every.contains(1, 1, 0) && !every.contains(1, 0, 0));
    }

    #[test]
    fn text_keys_are_indexed_by_code() {
        let dict = crate::store::columns::Dict::from_values(["x", "y", "z"]);
        let col = Arc::new(Column::Text {
            codes: vec![2, 0, crate::store::columns::NULL_CODE, 1].into(),
            dict: Arc::new(dict),
        });
        // In any order, a pair repeated: each key's entries come back sorted, once each.
        let pairs = vec![(2, (1, 0)), (1, (3, 2)), (2, (0, 1)), (2, (1, 0))];
        let j = SemiJoin::index(col, pairs, Cover::Same);
        assert!(matches!(j.index, Index::Dense(_)));
        assert_eq!(j.hits(0), Some(&[(0, 1), (1, 0)][..]));
        assert_eq!(j.hits(3), Some(&[(3, 2)][..]));
        assert!(j.hits(1).is_none(), "code 0 is in no inner set");
        assert!(j.hits(2).is_none(), "a null never joins");
        assert!(j.contains(3, 2, 3) && !j.contains(3, 1, 3));
    }

    #[test]
    fn the_dense_index_holds_what_the_sorted_one_holds() {
        let dict = crate::store::columns::Dict::from_values(["x", "y", "z", "w"]);
        let col = Arc::new(Column::Text {
            codes: vec![2, 0, crate::store::columns::NULL_CODE, 1, 3, 2].into(),
            dict: Arc::new(dict),
        });
        // Distinct pairs, as a pass gives them; code 9 is past the dictionary and dropped.
        let pairs = [
            (2, (1, 0)),
            (1, (3, 2)),
            (2, (0, 1)),
            (0, (2, 2)),
            (9, (0, 0)),
        ];
        let walk = |f: &mut dyn FnMut(u64, Entry)| pairs.iter().for_each(|&(k, e)| f(k, e));
        let dense = SemiJoin::dense(col.clone(), 4, walk, Cover::Subtree(tree()));
        let known: Vec<_> = pairs.iter().copied().filter(|p| p.0 < 4).collect();
        let sorted = SemiJoin::index(col, known, Cover::Subtree(tree()));
        let set = |h: Option<&[Entry]>| {
            let mut v = h.map(<[Entry]>::to_vec).unwrap_or_default();
            v.sort_unstable();
            v
        };
        for row in 0..6 {
            assert_eq!(set(dense.hits(row)), set(sorted.hits(row)), "row {row}");
            for (slot, period) in [(0, 0), (0, 1), (1, 0), (3, 2), (2, 2), (1, 2)] {
                assert_eq!(
                    dense.contains(slot, period, row),
                    sorted.contains(slot, period, row),
                    "row {row}, slot {slot}, period {period}"
                );
            }
        }
        assert_eq!(set(dense.hits(0)), vec![(0, 1), (1, 0)]);
        assert!(dense.hits(4).is_none(), "code 3 is in no inner set");
    }
}
