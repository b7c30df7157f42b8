//! Typed in-memory columns and the table of one entity.
//!
//! Nulls are sentinels: [`NULL_INT`] for integer, bool and time columns, NaN
//! for real columns (import refuses NaN and i64::MIN), [`NULL_CODE`] for text.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock, RwLock};

use hashbrown::HashTable;

pub const NULL_INT: i64 = i64::MIN;
pub const NULL_CODE: u32 = u32::MAX;

/// Distinct text values of one column, each with a small integer code: the
/// values one after another in one string (one allocation, not one per value:
/// the ids of `stage_events.deal` are most of a million), and where each ends.
///
/// The index from value to code is built on first use: a dictionary read from
/// a snapshot is used by code, and hashing its values up front (for example
/// every deal id of `stage_events.deal`) would cost what reading it saves.
#[derive(Default, Clone)]
pub struct Dict {
    bytes: String,
    ends: Vec<usize>,
    index: OnceLock<HashTable<u32>>,
}

impl std::fmt::Debug for Dict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

fn hash(s: &str) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(s)
}

/// Value `code` of the values `bytes` ending at `ends`.
fn value<'a>(bytes: &'a str, ends: &[usize], code: u32) -> &'a str {
    let c = code as usize;
    &bytes[if c == 0 { 0 } else { ends[c - 1] }..ends[c]]
}

impl Dict {
    /// A dictionary of these values, coded in order (the values are distinct).
    pub fn from_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Dict {
        let mut d = Dict::default();
        for v in values {
            d.push(v);
        }
        d
    }

    /// A dictionary of the values `bytes` ending at `ends` (each at most
    /// `bytes.len()`, in order, on character boundaries; the values are distinct).
    pub(super) fn from_parts(bytes: String, ends: Vec<usize>) -> Option<Dict> {
        let mut start = 0;
        for &end in &ends {
            if end < start || !bytes.is_char_boundary(end) {
                return None;
            }
            start = end;
        }
        Some(Dict {
            bytes,
            ends,
            index: OnceLock::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The value of `code` (a code of this dictionary).
    pub fn get(&self, code: u32) -> &str {
        value(&self.bytes, &self.ends, code)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.ends.len() as u32).map(|c| self.get(c))
    }

    pub fn code(&self, s: &str) -> Option<u32> {
        self.index().find(hash(s), |&c| self.get(c) == s).copied()
    }

    fn index(&self) -> &HashTable<u32> {
        self.index.get_or_init(|| {
            let mut t = HashTable::with_capacity(self.len());
            for c in 0..self.len() as u32 {
                t.insert_unique(hash(self.get(c)), c, |&x| hash(self.get(x)));
            }
            t
        })
    }

    fn push(&mut self, s: &str) -> u32 {
        let code = u32::try_from(self.ends.len()).expect("fewer than 2^32 distinct values");
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
        code
    }

    pub(super) fn intern(&mut self, s: &str) -> u32 {
        if let Some(c) = self.code(s) {
            return c;
        }
        let code = self.push(s);
        let (bytes, ends) = (&self.bytes, &self.ends);
        (self.index.get_mut().expect("built by code()"))
            .insert_unique(hash(s), code, |&x| hash(value(bytes, ends, x)));
        code
    }
}

#[derive(Debug)]
pub enum Column {
    /// integer, bool (0/1) and time (ms) fields.
    Int(Vec<i64>),
    Real(Vec<f64>),
    Text {
        codes: Vec<u32>,
        /// Shared with the columns patched from this one (copied on the first new value).
        dict: Arc<Dict>,
    },
}

impl Column {
    pub fn is_null(&self, row: usize) -> bool {
        match self {
            Column::Int(v) => v[row] == NULL_INT,
            Column::Real(v) => v[row].is_nan(),
            Column::Text { codes, .. } => codes[row] == NULL_CODE,
        }
    }

    /// The numeric value of a row, for sums and means.
    pub fn number(&self, row: usize) -> Option<f64> {
        match self {
            Column::Int(v) => (v[row] != NULL_INT).then(|| v[row] as f64),
            Column::Real(v) => (!v[row].is_nan()).then_some(v[row]),
            Column::Text { .. } => None,
        }
    }

    /// A key that identifies the row's value exactly (for distinct counts).
    pub fn key(&self, row: usize) -> Option<u64> {
        match self {
            Column::Int(v) => (v[row] != NULL_INT).then_some(v[row] as u64),
            Column::Real(v) => (!v[row].is_nan()).then_some(v[row].to_bits()),
            Column::Text { codes, .. } => {
                (codes[row] != NULL_CODE).then_some(u64::from(codes[row]))
            }
        }
    }
}

/// The rowids of a table's rows, ascending. A table imported into an empty
/// one has the rowids 1..=n: those are held as the count alone (8 bytes a row
/// less, 64 MB at 8M rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rowids {
    /// 1..=n.
    Dense(usize),
    /// Any other ascending rowids (never 1..=n, so equal rowids compare equal).
    Listed(Vec<i64>),
}

/// Rows per slice that [`Rowids::each_slice`] gives (a multiple of four).
const SLICE: usize = 4096;

impl Rowids {
    pub fn from_vec(v: Vec<i64>) -> Rowids {
        let dense = v.iter().zip(1..).all(|(r, i)| *r == i);
        if dense {
            Rowids::Dense(v.len())
        } else {
            Rowids::Listed(v)
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Rowids::Dense(n) => *n,
            Rowids::Listed(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn last(&self) -> Option<i64> {
        match self {
            Rowids::Dense(0) => None,
            Rowids::Dense(n) => Some(*n as i64),
            Rowids::Listed(v) => v.last().copied(),
        }
    }

    /// The row holding `rowid` (Err: where it would go).
    pub fn position(&self, rowid: i64) -> Result<usize, usize> {
        match self {
            Rowids::Dense(n) if (1..=*n as i64).contains(&rowid) => Ok(rowid as usize - 1),
            Rowids::Dense(n) => Err(if rowid < 1 { 0 } else { *n }),
            Rowids::Listed(v) => v.binary_search(&rowid),
        }
    }

    /// The rowids of `rows`.
    pub fn to_vec(&self, rows: std::ops::Range<usize>) -> Vec<i64> {
        match self {
            Rowids::Dense(_) => (rows.start as i64 + 1..rows.end as i64 + 1).collect(),
            Rowids::Listed(v) => v[rows].to_vec(),
        }
    }

    /// Appends `rowid` (greater than the last).
    pub fn push(&mut self, rowid: i64) {
        match self {
            Rowids::Dense(n) if rowid == *n as i64 + 1 => *n += 1,
            Rowids::Dense(n) => *self = Rowids::Listed((1..=*n as i64).chain([rowid]).collect()),
            Rowids::Listed(v) => v.push(rowid),
        }
    }

    /// `f` of every rowid in order, a slice at a time (each slice but the
    /// last a multiple of four long).
    pub fn each_slice(&self, mut f: impl FnMut(&[i64])) {
        match self {
            Rowids::Listed(v) => f(v),
            Rowids::Dense(n) => {
                for start in (0..*n).step_by(SLICE) {
                    f(&self.to_vec(start..(start + SLICE).min(*n)));
                }
            }
        }
    }
}

/// Each row's slot in a pass (its team's index in the tree, or its person's),
/// by the code of the text column that names it: `map[code]`, u32::MAX for
/// none. Held per distinct value rather than per row: the column's codes are
/// in memory anyway (4 bytes a row less for each index, 32 MB at 8M rows).
#[derive(Debug, Default)]
pub struct RowSlots {
    /// The naming column (None: no row has a slot).
    codes: Option<Arc<Column>>,
    map: Vec<u32>,
}

impl RowSlots {
    /// The slots of the rows of the text column `codes`, `map` by its codes.
    pub(super) fn new(codes: Arc<Column>, map: Vec<u32>) -> RowSlots {
        RowSlots {
            codes: Some(codes),
            map,
        }
    }

    /// The rows' codes and the slot of each code (no codes: no row has a slot).
    pub fn parts(&self) -> (&[u32], &[u32]) {
        match self.codes.as_deref() {
            Some(Column::Text { codes, .. }) => (codes, &self.map),
            _ => (&[], &[]),
        }
    }

    /// The slot of `row` (u32::MAX: none).
    pub fn get(&self, row: usize) -> u32 {
        let (codes, map) = self.parts();
        RowSlots::of(codes, map, row)
    }

    /// The slot of `row` given [`RowSlots::parts`] (a pass takes the parts once, not per row).
    #[inline]
    pub fn of(codes: &[u32], map: &[u32], row: usize) -> u32 {
        match codes.get(row) {
            Some(&c) if c != NULL_CODE => map.get(c as usize).copied().unwrap_or(u32::MAX),
            _ => u32::MAX,
        }
    }
}

/// Rows of one entity in rowid order, with the columns loaded so far.
#[derive(Debug)]
pub struct Table {
    pub entity: String,
    pub(super) rowids: Rowids,
    pub(super) columns: RwLock<HashMap<String, Arc<Column>>>,
    /// Team tree index of each row (u32::MAX: no known team).
    pub(super) team_rows: OnceLock<Arc<RowSlots>>,
    /// Owner index of each row (u32::MAX: no known owner).
    pub(super) owner_rows: OnceLock<Arc<RowSlots>>,
    /// The entity's `_kpi_data` generation every loaded column reflects, when
    /// known (None after a load or patch that cannot tell): what a snapshot
    /// of the table is tagged with.
    pub(super) generation: Option<i64>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.rowids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rowids.is_empty()
    }

    /// The same rows and columns, with the team index to be computed again.
    pub(super) fn without_team_rows(&self) -> Table {
        Table {
            entity: self.entity.clone(),
            rowids: self.rowids.clone(),
            columns: RwLock::new(self.columns.read().expect("columns lock").clone()),
            team_rows: OnceLock::new(),
            owner_rows: OnceLock::new(),
            generation: self.generation,
        }
    }

    /// The same rows and columns, with the owner index to be computed again.
    pub(super) fn without_owner_rows(&self) -> Table {
        Table {
            entity: self.entity.clone(),
            rowids: self.rowids.clone(),
            columns: RwLock::new(self.columns.read().expect("columns lock").clone()),
            team_rows: self.team_rows.clone(),
            owner_rows: OnceLock::new(),
            generation: self.generation,
        }
    }

    pub fn column(&self, field: &str) -> Option<Arc<Column>> {
        self.columns
            .read()
            .expect("columns lock")
            .get(field)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rowids_one_to_n_are_a_count_and_anything_else_a_list() {
        let dense = Rowids::from_vec(vec![1, 2, 3]);
        assert_eq!(dense, Rowids::Dense(3));
        assert_eq!((dense.len(), dense.last()), (3, Some(3)));
        assert_eq!(dense.position(2), Ok(1));
        assert_eq!((dense.position(0), dense.position(9)), (Err(0), Err(3)));
        assert_eq!(dense.to_vec(1..3), [2, 3]);
        assert_eq!(Rowids::from_vec(vec![]), Rowids::Dense(0));
        assert_eq!(Rowids::Dense(0).last(), None);

        let listed = Rowids::from_vec(vec![1, 4, 9]);
        assert_eq!(listed, Rowids::Listed(vec![1, 4, 9]));
        assert_eq!((listed.position(4), listed.position(5)), (Ok(1), Err(2)));

        // Appending keeps the form a fresh read would give.
        let mut grown = dense.clone();
        grown.push(4);
        assert_eq!(grown, Rowids::Dense(4));
        grown.push(7);
        assert_eq!(grown, Rowids::from_vec(vec![1, 2, 3, 4, 7]));
    }

    #[test]
    fn a_dictionary_is_its_values_in_one_string() {
        let mut d = Dict::from_values(["北京", "", "x"]);
        assert_eq!(d.iter().collect::<Vec<_>>(), ["北京", "", "x"]);
        assert_eq!(
            (d.code("x"), d.code(""), d.code("y")),
            (Some(2), Some(1), None)
        );
        assert_eq!((d.intern("y"), d.intern("北京")), (3, 0));
        assert_eq!((d.len(), d.get(3)), (4, "y"));
        let parts = |ends: Vec<usize>| Dict::from_parts("北京x".into(), ends).map(|d| d.len());
        assert_eq!(parts(vec![6, 7]), Some(2));
        assert_eq!(parts(vec![7, 6]), None, "offsets going back");
        assert_eq!(parts(vec![2, 7]), None, "inside a character");
        assert_eq!(parts(vec![9]), None, "past the end");
    }

    #[test]
    fn rowids_come_in_slices_of_a_multiple_of_four() {
        let n = SLICE * 2 + 3;
        let mut seen = Vec::new();
        let mut lens = Vec::new();
        Rowids::Dense(n).each_slice(|s| {
            lens.push(s.len());
            seen.extend_from_slice(s);
        });
        assert_eq!(lens, [SLICE, SLICE, 3]);
        assert_eq!(seen, (1..=n as i64).collect::<Vec<_>>());
    }
}
