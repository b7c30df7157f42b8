//! Accumulators of one pass, per (period, slot), and their roll-up up the team tree.
//!
//! Numbers are (sum, count, min, max), so a parent never averages its children's means.
//! Distinct keys are a map key → row count, or, for a distinct count, the values or the keys seen
//! at least n times of a text field (whose dictionary codes are dense), bit sets per slot:
//! setting a bit per row, an OR of words per merge into the parent, a popcount to finish. Keys
//! seen at least n times take n planes of bits, plane j holding the keys seen more than j times
//! (a count kept in unary, saturating at n).

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use super::exec::{Input, RowValue};
use super::{Agg, AggValue, Item};
use crate::period::format_utc;
use crate::store::TeamTree;
use crate::store::columns::{Column, Dict};

#[derive(Clone, Copy)]
pub(super) struct Num {
    sum: f64,
    n: f64,
    min: f64,
    max: f64,
}

impl Num {
    const EMPTY: Num = Num {
        sum: 0.0,
        n: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    #[inline]
    pub(super) fn add(&mut self, x: f64) {
        self.sum += x;
        self.n += 1.0;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// One more row of a count, which reads `n` only.
    #[inline(always)]
    pub(super) fn count_one(&mut self) {
        self.n += 1.0;
    }

    fn merge(&mut self, o: &Num) {
        self.sum += o.sum;
        self.n += o.n;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }
}

/// Per (period, slot): numbers, or each distinct key with its row count.
pub(super) enum Accumulators {
    Num(Vec<Num>),
    Keys(Vec<HashMap<u64, f64>>),
    /// `planes` planes of `words` u64 words of bits per slot, one bit per dictionary code.
    Bits {
        words: usize,
        planes: usize,
        bits: Vec<u64>,
    },
}

/// The most planes of bits a count of keys seen at least n times takes (else key maps).
const MAX_PLANES: usize = 4;

/// The most memory the bit sets of one pass may take at least (else key maps are used) ...
const BITS_BUDGET: usize = 32 << 20;

/// ... and per add a pass would make into key maps (a row is added to every period it counts
/// for there, where bit sets add it to its first one only and spread them afterwards, see
/// [`Accumulators::spread`]): a pass whose sets are dense enough for its adds is faster over
/// bits. The distinct deals of stage_events per team and quarter at 9.2M deals: 114 MB of bits
/// for 38M rows, 2.2 s each over key maps, 0.3 s over bits; the distinct customers of the won
/// deals by the end of each quarter: 52 MB (two planes for "at least twice": 104 MB) for 9.2M
/// rows each added to 4.5 quarters on average, 2.2 s (1.4 s) over key maps. Sparse ones (a set
/// per person) stay on key maps, which were faster for them at 846k deals.
const BITS_PER_ADD: usize = 4;

impl Accumulators {
    /// The accumulators of `slots` slots of a pass that would make `adds` adds into key maps
    /// (see [`BITS_PER_ADD`]).
    pub(super) fn new(agg: &Agg, slots: usize, input: &Input, adds: usize) -> Accumulators {
        match (agg, bit_layout(agg, slots, input, adds)) {
            (_, Some((words, planes))) => Accumulators::bits(words, planes, slots),
            (
                Agg::CountDistinct(_)
                | Agg::Values(_)
                | Agg::CountDistinctAtLeast(..)
                | Agg::CountBy(_),
                None,
            ) => Accumulators::Keys(vec![HashMap::default(); slots]),
            _ => Accumulators::Num(vec![Num::EMPTY; slots]),
        }
    }

    /// The words per plane of the bit sets [`Accumulators::new`] would keep, if it keeps bits.
    pub(super) fn kept_bit_words(
        agg: &Agg,
        slots: usize,
        input: &Input,
        adds: usize,
    ) -> Option<usize> {
        bit_layout(agg, slots, input, adds).map(|(words, _)| words)
    }

    /// Empty bit sets of `planes` planes of `words` words for `slots` slots.
    fn bits(words: usize, planes: usize, slots: usize) -> Accumulators {
        Accumulators::Bits {
            words,
            planes,
            bits: vec![0; slots * words * planes],
        }
    }

    pub(super) fn add(&mut self, slot: usize, v: RowValue) {
        match (self, v) {
            (Accumulators::Num(a), RowValue::Number(x)) => a[slot].add(x),
            (Accumulators::Num(a), RowValue::Unit) => a[slot].add(0.0),
            (Accumulators::Keys(a), RowValue::Key(k)) => *a[slot].entry(k).or_insert(0.0) += 1.0,
            (
                Accumulators::Bits {
                    words,
                    planes,
                    bits,
                },
                RowValue::Key(k),
            ) => bump(bits, *words, *planes, slot, k),
            _ => {}
        }
    }

    /// Merges each period's accumulators into the next one's along `order`, slot by slot
    /// (`slots` a period), so that a row added to its first period counts in every later one.
    pub(super) fn spread(&mut self, order: &[usize], slots: usize) {
        for w in order.windows(2) {
            for s in 0..slots {
                let (from, to) = (w[0] * slots + s, w[1] * slots + s);
                match self {
                    Accumulators::Num(a) => {
                        let n = a[from];
                        a[to].merge(&n);
                    }
                    Accumulators::Keys(a) => {
                        let m = a[from].clone();
                        for (k, n) in m {
                            *a[to].entry(k).or_insert(0.0) += n;
                        }
                    }
                    Accumulators::Bits {
                        words,
                        planes,
                        bits,
                    } => {
                        let stride = *words * *planes;
                        let (into, from) = two_sets(bits, to * stride, from * stride, stride);
                        merge_planes(into, from, *words, *planes);
                    }
                }
            }
        }
    }

    /// Calls `f` with (slot, key) for every key of every slot, as accumulated (not rolled
    /// up), slot after slot; numbers have none.
    pub(super) fn each_key(&self, mut f: impl FnMut(usize, u64)) {
        match self {
            Accumulators::Num(_) => {}
            Accumulators::Keys(a) => {
                for (slot, m) in a.iter().enumerate() {
                    m.keys().for_each(|k| f(slot, *k));
                }
            }
            Accumulators::Bits {
                words,
                planes,
                bits,
            } => {
                for (slot, set) in bits.chunks(words * planes).enumerate() {
                    set_bits(&set[..*words]).for_each(|k| f(slot, k));
                }
            }
        }
    }

    /// The value of every (period, slot) of bit sets kept one a period over keys that each
    /// belong to the slot `slot_of[key]` (see [`finish_keyed`]); None when they are not bits.
    pub(super) fn finish_keyed(
        &self,
        agg: &Agg,
        kind: &ItemKind,
        slots: usize,
        slot_of: &[u32],
        mask: Option<&[u64]>,
    ) -> Option<Vec<AggValue>> {
        let Accumulators::Bits {
            words,
            planes,
            bits,
        } = self
        else {
            return None;
        };
        Some(finish_keyed(
            agg,
            kind,
            (*words, *planes, bits),
            slots,
            slot_of,
            mask,
        ))
    }

    /// The value of every (period, slot). With `tree`, each slot holds a team's own rows and its
    /// value is over its whole subtree: numbers are merged into the parent's children first
    /// (always in the same order, so sums come out to the bit); key maps are finished children
    /// first, then moved into the parent, the smaller map into the larger; bit sets are
    /// finished children first, then OR-ed into the parent's.
    /// With `mask` (bit sets laid out as these, see [`super::semi::Mask`]), a distinct count
    /// counts only the keys its slot's mask holds too.
    pub(super) fn finish(
        self,
        agg: &Agg,
        kind: &ItemKind,
        tree: Option<&TeamTree>,
        periods: usize,
        mask: Option<&[u64]>,
    ) -> Vec<AggValue> {
        match (self, tree) {
            (Accumulators::Num(mut a), Some(tree)) => {
                roll_up_num(&mut a, tree, periods);
                a.iter().map(|n| finish_num(agg, n)).collect()
            }
            (Accumulators::Num(a), None) => a.iter().map(|n| finish_num(agg, n)).collect(),
            (Accumulators::Keys(a), Some(tree)) => {
                roll_up_keys(a, tree, periods, |m| finish_keys(agg, m, kind))
            }
            (Accumulators::Keys(a), None) => a.iter().map(|m| finish_keys(agg, m, kind)).collect(),
            (
                Accumulators::Bits {
                    words,
                    planes,
                    mut bits,
                },
                Some(tree),
            ) => roll_up_bits(&mut bits, words, planes, tree, periods, |slot, s| {
                finish_bits(agg, s, kind, words, slot_mask(mask, slot, words))
            }),
            (
                Accumulators::Bits {
                    words,
                    planes,
                    bits,
                },
                None,
            ) => (bits.chunks(words * planes).enumerate())
                .map(|(slot, s)| finish_bits(agg, s, kind, words, slot_mask(mask, slot, words)))
                .collect(),
        }
    }
}

/// (words, planes) of the bit sets of a pass, when its keys are dense text codes and they fit.
fn bit_layout(agg: &Agg, slots: usize, input: &Input, adds: usize) -> Option<(usize, usize)> {
    let budget = BITS_BUDGET.max(adds.saturating_mul(BITS_PER_ADD));
    let planes = match agg {
        Agg::CountDistinct(_) | Agg::Values(_) => 1,
        Agg::CountDistinctAtLeast(_, n) => (*n as usize).max(1),
        _ => return None,
    };
    let words = bit_words(input)?;
    (planes <= MAX_PLANES && slots.saturating_mul(words * planes * 8) <= budget)
        .then_some((words, planes))
}

/// Words of a bit set over the key column's dictionary, when keys are dense text codes.
fn bit_words(input: &Input) -> Option<usize> {
    match input {
        Input::Key(c) => match &**c {
            Column::Text { dict, .. } => Some(dict.len().div_ceil(64).max(1)),
            _ => None,
        },
        _ => None,
    }
}

/// The keys whose bits are set, in increasing order.
fn set_bits(set: &[u64]) -> impl Iterator<Item = u64> + '_ {
    set.iter().enumerate().flat_map(|(i, w)| {
        let mut w = *w;
        std::iter::from_fn(move || {
            (w != 0).then(|| {
                let b = w.trailing_zeros();
                w &= w - 1;
                i as u64 * 64 + u64::from(b)
            })
        })
    })
}

/// Counts key `k` once more in `slot`: its bit is set in the first plane that lacks it.
#[inline(always)]
pub(super) fn bump(bits: &mut [u64], words: usize, planes: usize, slot: usize, k: u64) {
    let mut at = slot * words * planes + (k / 64) as usize;
    let mut carry = 1u64 << (k % 64);
    for _ in 0..planes {
        let had = bits[at] & carry;
        bits[at] |= carry;
        carry = had;
        if carry == 0 {
            break;
        }
        at += words;
    }
}

/// Adds the unary counts of `from` to those of `into` (each `planes` planes of `words` words),
/// saturating: a key is seen more than j times in the sum when it is seen more than i - 1 times
/// in one and more than j - i times in the other, for some i.
fn merge_planes(into: &mut [u64], from: &[u64], words: usize, planes: usize) {
    if planes == 1 {
        into.iter_mut().zip(from).for_each(|(a, b)| *a |= b);
        return;
    }
    for w in 0..words {
        let a: [u64; MAX_PLANES] =
            std::array::from_fn(|j| into.get(j * words + w).copied().unwrap_or(0));
        let b: [u64; MAX_PLANES] =
            std::array::from_fn(|j| from.get(j * words + w).copied().unwrap_or(0));
        for j in 0..planes {
            let mut r = a[j] | b[j];
            for i in 1..=j {
                r |= a[i - 1] & b[j - i];
            }
            into[j * words + w] = r;
        }
    }
}

/// The `len` words at `into` (to change) and at `from` (to read) of `bits`; the two do not overlap.
fn two_sets(bits: &mut [u64], into: usize, from: usize, len: usize) -> (&mut [u64], &[u64]) {
    if into < from {
        let (lo, hi) = bits.split_at_mut(from);
        (&mut lo[into..into + len], &hi[..len])
    } else {
        let (lo, hi) = bits.split_at_mut(into);
        (&mut hi[..len], &lo[from..from + len])
    }
}

/// Slot `slot`'s `words` words of `mask`.
fn slot_mask(mask: Option<&[u64]>, slot: usize, words: usize) -> Option<&[u64]> {
    mask.map(|m| &m[slot * words..(slot + 1) * words])
}

/// The value of one slot's planes (`words` words each): the keys of the last plane (those of
/// `mask` too, for a distinct count).
fn finish_bits(
    agg: &Agg,
    set: &[u64],
    kind: &ItemKind,
    words: usize,
    mask: Option<&[u64]>,
) -> AggValue {
    let last = &set[set.len() - words..];
    match (agg, mask) {
        (Agg::Values(_), _) => items(kind, set_bits(last).collect()),
        (_, Some(m)) => AggValue::Number(
            (last.iter().zip(m))
                .map(|(w, m)| (w & m).count_ones() as f64)
                .sum(),
        ),
        (_, None) => AggValue::Number(last.iter().map(|w| w.count_ones() as f64).sum()),
    }
}

/// The values `keys` as items, in the kind's order.
fn items(kind: &ItemKind, mut keys: Vec<u64>) -> AggValue {
    kind.sort(&mut keys);
    AggValue::Items(Arc::new(keys.into_iter().map(|k| kind.item(k)).collect()))
}

/// The value of every (period, slot) from bit sets kept one a period (`words` words a plane,
/// `planes` planes), over keys that each belong to one slot, `slot_of[key]` (u32::MAX: none):
/// each slot's keys of a period are taken out of that period's set (those of `mask`'s set of
/// the period too, for a distinct count), as if the slot had a set of its own.
fn finish_keyed(
    agg: &Agg,
    kind: &ItemKind,
    (words, planes, bits): (usize, usize, &[u64]),
    slots: usize,
    slot_of: &[u32],
    mask: Option<&[u64]>,
) -> Vec<AggValue> {
    let periods = bits.len() / (words * planes).max(1);
    let mut out = Vec::with_capacity(periods * slots);
    for p in 0..periods {
        let last = &bits[(p * planes + planes - 1) * words..][..words];
        let mask = mask.map(|m| &m[p * words..][..words]);
        let mut keys: Vec<Vec<u64>> = vec![Vec::new(); slots];
        for (i, &w) in last.iter().enumerate() {
            let w = w & mask.map_or(u64::MAX, |m| m[i]);
            for k in set_bits(&[w]).map(|b| i as u64 * 64 + b) {
                if let Some(s) = slot_of.get(k as usize).filter(|s| (**s as usize) < slots) {
                    keys[*s as usize].push(k);
                }
            }
        }
        out.extend(keys.into_iter().map(|keys| match agg {
            Agg::Values(_) => items(kind, keys),
            _ => AggValue::Number(keys.len() as f64),
        }));
    }
    out
}

/// Each team's value over its subtree, from bit sets of its own rows (see [`roll_up_sets`]).
fn roll_up_bits(
    bits: &mut [u64],
    words: usize,
    planes: usize,
    tree: &TeamTree,
    periods: usize,
    finish: impl Fn(usize, &[u64]) -> AggValue,
) -> Vec<AggValue> {
    let mut out: Vec<Option<AggValue>> = vec![None; periods * tree.len()];
    roll_up_sets(bits, words, planes, tree, periods, |slot, set| {
        out[slot] = Some(finish(slot, set));
    });
    let stride = words * planes;
    out.into_iter()
        .enumerate()
        .map(|(slot, v)| v.unwrap_or_else(|| finish(slot, &bits[slot * stride..][..stride])))
        .collect()
}

/// Merges the bit sets (`planes` planes of `words` words a slot, teams a period) of every team
/// into its parent's, in post-order, calling `visit(slot, set)` on each team's set once it holds
/// its whole subtree and before it is merged up. Teams no root reaches are not visited.
pub(super) fn roll_up_sets(
    bits: &mut [u64],
    words: usize,
    planes: usize,
    tree: &TeamTree,
    periods: usize,
    mut visit: impl FnMut(usize, &[u64]),
) {
    let teams = tree.len();
    let stride = words * planes;
    let order = tree.bottom_up();
    for p in 0..periods {
        let base = p * teams;
        for &t in &order {
            let child = base + t as usize;
            visit(child, &bits[child * stride..][..stride]);
            if let Some(parent) = tree.parent[t as usize] {
                let q = (base + parent as usize) * stride;
                let (into, from) = two_sets(bits, q, child * stride, stride);
                merge_planes(into, from, words, planes);
            }
        }
    }
}

/// Merges every team into its parent, children first, so each team ends up holding its whole
/// subtree.
fn roll_up_num(a: &mut [Num], tree: &TeamTree, periods: usize) {
    let teams = tree.len();
    let order = tree.bottom_up();
    for p in 0..periods {
        let base = p * teams;
        for &t in &order {
            if let Some(parent) = tree.parent[t as usize] {
                let c = a[base + t as usize];
                a[base + parent as usize].merge(&c);
            }
        }
    }
}

/// Each team's value over its subtree, from maps of its own rows: in post-order a team (its
/// children already merged in) is finished, then its map is merged into its parent's by moving
/// it, the smaller into the larger. Nothing is copied and every map is consumed.
fn roll_up_keys(
    mut a: Vec<HashMap<u64, f64>>,
    tree: &TeamTree,
    periods: usize,
    finish: impl Fn(&HashMap<u64, f64>) -> AggValue,
) -> Vec<AggValue> {
    let teams = tree.len();
    let order = tree.bottom_up();
    let mut out: Vec<Option<AggValue>> = vec![None; a.len()];
    for p in 0..periods {
        let base = p * teams;
        for &t in &order {
            let child = base + t as usize;
            out[child] = Some(finish(&a[child]));
            if let Some(parent) = tree.parent[t as usize] {
                let mut moved = std::mem::take(&mut a[child]);
                let target = &mut a[base + parent as usize];
                if target.len() < moved.len() {
                    std::mem::swap(target, &mut moved);
                }
                for (k, n) in moved {
                    *target.entry(k).or_insert(0.0) += n;
                }
            }
        }
    }
    // Teams no root reaches (a cycle in the tree) hold their own rows, as before.
    out.into_iter()
        .zip(&a)
        .map(|(v, m)| v.unwrap_or_else(|| finish(m)))
        .collect()
}

fn finish_num(agg: &Agg, n: &Num) -> AggValue {
    let mean_like = |v: f64| {
        if n.n == 0.0 {
            AggValue::NoRows
        } else {
            AggValue::Number(v)
        }
    };
    match agg {
        Agg::Count => AggValue::Number(n.n),
        Agg::Sum(_) => AggValue::Number(n.sum),
        Agg::Avg(_) => mean_like(n.sum / n.n),
        Agg::Min(_) => mean_like(n.min),
        Agg::Max(_) => mean_like(n.max),
        Agg::AvgSpan { unit, .. } => mean_like(n.sum / n.n / unit.millis()),
        _ => AggValue::NoRows,
    }
}

fn finish_keys(agg: &Agg, m: &HashMap<u64, f64>, kind: &ItemKind) -> AggValue {
    match agg {
        Agg::CountDistinct(_) => AggValue::Number(m.len() as f64),
        Agg::CountDistinctAtLeast(_, n) => {
            AggValue::Number(m.values().filter(|c| **c >= f64::from(*n)).count() as f64)
        }
        Agg::Values(_) => {
            let mut keys: Vec<u64> = m.keys().copied().collect();
            kind.sort(&mut keys);
            AggValue::Items(Arc::new(keys.into_iter().map(|k| kind.item(k)).collect()))
        }
        _ => {
            let mut pairs: Vec<(u64, f64)> = m.iter().map(|(k, c)| (*k, *c)).collect();
            pairs.sort_by(|a, b| kind.order(a.0, b.0));
            AggValue::Counts(Arc::new(
                pairs.into_iter().map(|(k, c)| (kind.item(k), c)).collect(),
            ))
        }
    }
}

/// How a distinct-value key turns back into a value a formula can use.
pub(super) enum ItemKind {
    Int,
    Bool,
    Time,
    Real,
    Text(Arc<Dict>),
}

impl ItemKind {
    fn item(&self, k: u64) -> Item {
        match self {
            ItemKind::Int => Item::Int(k as i64),
            ItemKind::Bool => Item::Bool(k != 0),
            ItemKind::Time => Item::Time(Arc::from(format_utc(k as i64))),
            ItemKind::Real => Item::Real(f64::from_bits(k)),
            ItemKind::Text(d) => Item::Text(Arc::from(d.get(k as u32))),
        }
    }

    fn order(&self, a: u64, b: u64) -> std::cmp::Ordering {
        match self {
            ItemKind::Int | ItemKind::Time | ItemKind::Bool => (a as i64).cmp(&(b as i64)),
            ItemKind::Real => f64::from_bits(a).total_cmp(&f64::from_bits(b)),
            ItemKind::Text(d) => d.get(a as u32).cmp(d.get(b as u32)),
        }
    }

    fn sort(&self, keys: &mut [u64]) {
        keys.sort_by(|a, b| self.order(*a, *b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// a_hq ─┬─ b_north ─┬─ d_north_a ── f_deep
    ///       │           └─ e_north_b
    ///       └─ c_south;     g_other (a second root)
    fn tree() -> TeamTree {
        let t = |id: &str, p: Option<&str>| (id.to_string(), id.to_string(), p.map(String::from));
        TeamTree::new(vec![
            t("a_hq", None),
            t("b_north", Some("a_hq")),
            t("c_south", Some("a_hq")),
            t("d_north_a", Some("b_north")),
            t("e_north_b", Some("b_north")),
            t("f_deep", Some("d_north_a")),
            t("g_other", None),
        ])
    }

    /// (team, period, key) rows: keys repeat within and across teams and periods (the odd rows'
    /// keys 4 times and more in the head team's periods).
    fn rows() -> Vec<(u32, usize, u64)> {
        (0..600u64)
            .map(|i| {
                let k = if i % 2 == 0 { (i * 13) % 97 } else { i % 11 };
                ((i % 7) as u32, (i % 3) as usize, k)
            })
            .collect()
    }

    /// Each (period, team)'s value computed directly from the rows of its subtree.
    fn direct(agg: &Agg, tree: &TeamTree, periods: usize) -> Vec<AggValue> {
        let mut out = Vec::new();
        for p in 0..periods {
            for t in 0..tree.len() as u32 {
                let mut counts: BTreeMap<u64, f64> = BTreeMap::new();
                for &(team, rp, k) in &rows() {
                    if rp == p && tree.up[team as usize].contains(&t) {
                        *counts.entry(k).or_default() += 1.0;
                    }
                }
                let m: HashMap<u64, f64> = counts.into_iter().collect();
                out.push(finish_keys(agg, &m, &ItemKind::Int));
            }
        }
        out
    }

    fn rolled(mut acc: Accumulators, agg: &Agg, tree: &TeamTree, periods: usize) -> Vec<AggValue> {
        for &(team, p, k) in &rows() {
            acc.add(p * tree.len() + team as usize, RowValue::Key(k));
        }
        acc.finish(agg, &ItemKind::Int, Some(tree), periods, None)
    }

    #[test]
    fn key_maps_and_bit_sets_roll_up_to_each_subtree_as_computed_directly() {
        let tree = tree();
        let slots = 3 * tree.len();
        let aggs = [
            Agg::CountDistinct("k".into()),
            Agg::Values("k".into()),
            Agg::CountBy("k".into()),
            Agg::CountDistinctAtLeast("k".into(), 2),
        ];
        for agg in &aggs {
            let keys = Accumulators::Keys(vec![HashMap::default(); slots]);
            assert_eq!(rolled(keys, agg, &tree, 3), direct(agg, &tree, 3), "{agg}");
        }
        let bit_aggs = [
            (&aggs[0], 1),
            (&aggs[1], 1),
            (&aggs[3], 2),
            (&Agg::CountDistinctAtLeast("k".into(), 3), 3),
            (&Agg::CountDistinctAtLeast("k".into(), 4), 4),
        ];
        for (agg, planes) in bit_aggs {
            let bits = Accumulators::bits(97usize.div_ceil(64), planes, slots);
            let hq = &direct(agg, &tree, 3)[0];
            assert!(
                *hq != AggValue::Number(0.0),
                "{agg}: the head team has such keys"
            );
            assert_eq!(
                rolled(bits, agg, &tree, 3),
                direct(agg, &tree, 3),
                "{agg} as bits"
            );
        }
    }

    #[test]
    fn sums_roll_up_in_a_fixed_order_and_means_are_over_rows() {
        let tree = tree();
        let mut acc = Accumulators::Num(vec![Num::EMPTY; tree.len()]);
        let values = [(5, 0.1), (3, 0.2), (1, 0.3), (5, 0.7), (2, 1.5), (6, 4.0)];
        for (team, x) in values {
            acc.add(team, RowValue::Number(x));
        }
        let sum = acc.finish(&Agg::Sum("x".into()), &ItemKind::Int, Some(&tree), 1, None);
        let hq = (values.iter().filter(|(t, _)| *t != 6)).fold(0.0, |a, (_, x)| a + x);
        assert!(matches!(sum[0], AggValue::Number(v) if (v - hq).abs() < 1e-12));
        assert_eq!(sum[6], AggValue::Number(4.0), "a second root keeps its own");
        assert_eq!(sum[4], AggValue::Number(0.0));
    }

    #[test]
    fn set_bits_yields_every_key_in_order() {
        let keys = [0u64, 1, 63, 64, 130, 191];
        let mut set = vec![0u64; 3];
        keys.iter()
            .for_each(|k| set[(k / 64) as usize] |= 1 << (k % 64));
        assert_eq!(set_bits(&set).collect::<Vec<_>>(), keys);
    }
}
