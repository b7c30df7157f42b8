//! Typed in-memory columns and the table of one entity.
//!
//! Nulls are sentinels: [`NULL_INT`] for integer, bool and time columns, NaN
//! for real columns (import refuses NaN and i64::MIN), [`NULL_CODE`] for text
//! (held as [`NARROW_NULL`] in a column of one-byte codes, see [`Codes`]).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock, RwLock};

use arrow_array::{Array, StringArray};
use arrow_buffer::{Buffer, OffsetBuffer};
use hashbrown::HashTable;

pub const NULL_INT: i64 = i64::MIN;
pub const NULL_CODE: u32 = u32::MAX;

/// Distinct text values of one column, each with a small integer code.
///
/// While values are added (a load from the database, a patch with a new value), they are one
/// after another in one string (one allocation, not one per value: the ids of
/// `stage_events.deal` are most of a million), with where each ends. Then they are an Arrow
/// string array: the string moved into it ([`Dict::freeze`]), or a snapshot's dictionary as
/// decoded (its buffers, not a copy), which a snapshot write and a copy of the dictionary share.
/// A new value turns the array back into a string (a copy).
///
/// The index from value to code is built on first use: a dictionary read from
/// a snapshot is used by code, and hashing its values up front (for example
/// every deal id of `stage_events.deal`) would cost what reading it saves.
#[derive(Default, Clone)]
pub struct Dict {
    values: Values,
    index: OnceLock<HashTable<u32>>,
}

#[derive(Clone)]
enum Values {
    Built { bytes: String, ends: Vec<u32> },
    Array(StringArray),
}

impl Default for Values {
    fn default() -> Values {
        Values::Built {
            bytes: String::new(),
            ends: Vec::new(),
        }
    }
}

/// A dictionary's values as they are held, for a checksum of them.
pub enum RawDict<'a> {
    /// The values' bytes and where each ends.
    Built(&'a [u8], &'a [u32]),
    /// The values' bytes from `offsets[0]` on, and the offsets (one more than the values).
    Array(&'a [u8], &'a [i32]),
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
fn value<'a>(bytes: &'a str, ends: &[u32], code: u32) -> &'a str {
    let c = code as usize;
    &bytes[if c == 0 { 0 } else { ends[c - 1] as usize }..ends[c] as usize]
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

    /// The dictionary of a snapshot, its values coded in order (they are distinct and none
    /// is null).
    pub(super) fn read(values: StringArray) -> Dict {
        debug_assert_eq!(values.null_count(), 0);
        Dict {
            values: Values::Array(values),
            index: OnceLock::new(),
        }
    }

    pub fn len(&self) -> usize {
        match &self.values {
            Values::Built { ends, .. } => ends.len(),
            Values::Array(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `code` (a code of this dictionary).
    pub fn get(&self, code: u32) -> &str {
        match &self.values {
            Values::Built { bytes, ends } => value(bytes, ends, code),
            Values::Array(a) => a.value(code as usize),
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len() as u32).map(|c| self.get(c))
    }

    /// Holds the values as an Arrow array from now on (their bytes moved, not copied; the
    /// ends copied as offsets), so that writing them to a snapshot copies nothing and a copy of
    /// the dictionary shares them. A new value makes it a built one again (a copy).
    pub(super) fn freeze(&mut self) {
        let Values::Built { bytes, ends } = &mut self.values else {
            return;
        };
        let offsets = (std::iter::once(0).chain(ends.iter().copied()))
            .map(i32::try_from)
            .collect::<Result<Vec<i32>, _>>();
        let Ok(offsets) = offsets else {
            return; // over 2 GiB: an Arrow string array cannot hold it
        };
        let bytes = Buffer::from_vec(std::mem::take(bytes).into_bytes());
        match StringArray::try_new(OffsetBuffer::new(offsets.into()), bytes, None) {
            Ok(a) => self.values = Values::Array(a),
            Err(e) => unreachable!("a built dictionary is valid UTF-8 at its ends: {e}"),
        }
    }

    /// The values as an Arrow array (a snapshot's as it was read, without a copy).
    pub(super) fn to_array(&self) -> Result<StringArray, arrow_schema::ArrowError> {
        match &self.values {
            Values::Array(a) => Ok(a.clone()),
            Values::Built { bytes, ends } => {
                let offsets = (std::iter::once(0).chain(ends.iter().copied()))
                    .map(|e| i32::try_from(e).map_err(|_| too_long()))
                    .collect::<Result<Vec<i32>, _>>()?;
                StringArray::try_new(
                    OffsetBuffer::new(offsets.into()),
                    Buffer::from(bytes.as_bytes()),
                    None,
                )
            }
        }
    }

    pub(super) fn raw(&self) -> RawDict<'_> {
        match &self.values {
            Values::Built { bytes, ends } => RawDict::Built(bytes.as_bytes(), ends),
            Values::Array(a) => {
                let offsets = a.value_offsets();
                let start = offsets.first().map_or(0, |o| *o as usize);
                RawDict::Array(&a.value_data()[start..], offsets)
            }
        }
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

    /// The values as a string and ends, to add to (a read dictionary's are copied once).
    fn built(&mut self) -> (&mut String, &mut Vec<u32>) {
        if let Values::Array(a) = &self.values {
            let mut bytes = String::with_capacity(a.value_data().len());
            let mut ends = Vec::with_capacity(a.len());
            for v in a.iter().flatten() {
                bytes.push_str(v);
                ends.push(end_of(&bytes));
            }
            self.values = Values::Built { bytes, ends };
        }
        match &mut self.values {
            Values::Built { bytes, ends } => (bytes, ends),
            Values::Array(_) => unreachable!("made a built one above"),
        }
    }

    fn push(&mut self, s: &str) -> u32 {
        let code = u32::try_from(self.len()).expect("fewer than 2^32 distinct values");
        let (bytes, ends) = self.built();
        bytes.push_str(s);
        ends.push(end_of(bytes));
        code
    }

    pub(super) fn intern(&mut self, s: &str) -> u32 {
        if let Some(c) = self.code(s) {
            return c;
        }
        let code = self.push(s);
        let Values::Built { bytes, ends } = &self.values else {
            unreachable!("a push makes a built one")
        };
        (self.index.get_mut().expect("built by code()"))
            .insert_unique(hash(s), code, |&x| hash(value(bytes, ends, x)));
        code
    }
}

/// Where the values `bytes` end (as a dictionary's end: under 4 GiB).
fn end_of(bytes: &str) -> u32 {
    u32::try_from(bytes.len()).expect("a text column's distinct values take less than 4 GiB")
}

fn too_long() -> arrow_schema::ArrowError {
    arrow_schema::ArrowError::InvalidArgumentError(
        "a text column's distinct values take more than 2 GiB".into(),
    )
}

/// The null of a column of one-byte codes.
pub const NARROW_NULL: u8 = u8::MAX;

/// A code as a column holds it: one byte or four.
pub trait Code: Copy {
    /// The dictionary code ([`NULL_CODE`] for a null).
    fn code(self) -> u32;
}

impl Code for u8 {
    #[inline(always)]
    fn code(self) -> u32 {
        if self == NARROW_NULL {
            NULL_CODE
        } else {
            u32::from(self)
        }
    }
}

impl Code for u32 {
    #[inline(always)]
    fn code(self) -> u32 {
        self
    }
}

/// The dictionary codes of a text column's rows: one byte each while the
/// dictionary has fewer than 255 values (teams, owners, stages, channels:
/// most text columns of a CRM), four otherwise. A quarter of the memory, and
/// of the bytes a filter or a team lookup reads per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Codes {
    Narrow(Vec<u8>),
    Wide(Vec<u32>),
}

/// `$body` with `$c` bound to the codes of `$codes` as a slice of their own
/// width, so a loop over them is compiled once per width (`$c[r].code()`).
macro_rules! with_codes {
    ($codes:expr, |$c:ident| $body:expr) => {
        match $codes {
            $crate::store::columns::Codes::Narrow($c) => $body,
            $crate::store::columns::Codes::Wide($c) => $body,
        }
    };
}
pub(crate) use with_codes;

/// The codes, in one byte each when every one fits.
impl From<Vec<u32>> for Codes {
    fn from(codes: Vec<u32>) -> Codes {
        if codes.iter().all(|&c| fits(c)) {
            Codes::Narrow(codes.into_iter().map(narrow).collect())
        } else {
            Codes::Wide(codes)
        }
    }
}

impl Default for Codes {
    fn default() -> Codes {
        Codes::Narrow(Vec::new())
    }
}

impl Codes {
    pub fn len(&self) -> usize {
        with_codes!(self, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The code of `row` ([`NULL_CODE`] for a null).
    #[inline(always)]
    pub fn get(&self, row: usize) -> u32 {
        with_codes!(self, |c| c[row].code())
    }

    /// The last row's code.
    pub fn last(&self) -> Option<u32> {
        with_codes!(self, |c| c.last().map(|x| x.code()))
    }

    /// Every row's code in order.
    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<u32> {
        with_codes!(self, |c| c.iter().map(|x| x.code()).collect())
    }

    /// Sets row `row` to `code`, widening the codes when it needs four bytes.
    pub fn set(&mut self, row: usize, code: u32) {
        match self {
            Codes::Narrow(v) if fits(code) => v[row] = narrow(code),
            Codes::Narrow(_) => {
                self.widen();
                self.set(row, code);
            }
            Codes::Wide(v) => v[row] = code,
        }
    }

    /// Appends `code`, widening the codes when it needs four bytes.
    pub fn push(&mut self, code: u32) {
        match self {
            Codes::Narrow(v) if fits(code) => v.push(narrow(code)),
            Codes::Narrow(_) => {
                self.widen();
                self.push(code);
            }
            Codes::Wide(v) => v.push(code),
        }
    }

    /// A copy grown to `len` rows with nulls.
    pub fn extended(&self, len: usize) -> Codes {
        match self {
            Codes::Narrow(v) => Codes::Narrow(extended(v, len, NARROW_NULL)),
            Codes::Wide(v) => Codes::Wide(extended(v, len, NULL_CODE)),
        }
    }

    fn widen(&mut self) {
        if let Codes::Narrow(v) = self {
            *self = Codes::Wide(v.iter().map(|c| c.code()).collect());
        }
    }
}

/// Whether `code` has a one-byte form.
fn fits(code: u32) -> bool {
    code == NULL_CODE || code < u32::from(NARROW_NULL)
}

/// A one-byte code (the code is below [`NARROW_NULL`] or a null).
fn narrow(code: u32) -> u8 {
    if code == NULL_CODE {
        NARROW_NULL
    } else {
        debug_assert!(code < u32::from(NARROW_NULL));
        code as u8
    }
}

/// A copy of `v` grown to `len` with `fill`.
pub(super) fn extended<T: Copy>(v: &[T], len: usize, fill: T) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(v);
    out.resize(len, fill);
    out
}

/// The null of a column of scaled integers.
pub const SCALED_NULL: i32 = i32::MIN;

/// The values of an integer, bool or time column: eight bytes each, or four
/// when every value is `base + scale × n` for an `n` of 32 bits. Times of a
/// CRM are whole seconds (often whole days) in a few years, ratings and
/// flags are small: most integer columns take half the memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ints {
    Wide(Vec<i64>),
    Scaled {
        base: i64,
        scale: i64,
        /// [`SCALED_NULL`] for a null.
        steps: Vec<i32>,
    },
}

/// Reading a row of integers of one form ([`with_ints`]).
pub trait IntRead: Copy {
    /// The value of `row` (None for a null).
    fn at(self, row: usize) -> Option<i64>;
}

impl IntRead for &[i64] {
    #[inline(always)]
    fn at(self, row: usize) -> Option<i64> {
        let x = self[row];
        (x != NULL_INT).then_some(x)
    }
}

/// The rows of [`Ints::Scaled`], borrowed.
#[derive(Clone, Copy)]
pub struct Scaled<'a> {
    base: i64,
    scale: i64,
    steps: &'a [i32],
}

impl IntRead for Scaled<'_> {
    #[inline(always)]
    fn at(self, row: usize) -> Option<i64> {
        let n = self.steps[row];
        (n != SCALED_NULL).then(|| self.base + i64::from(n) * self.scale)
    }
}

impl<'a> Scaled<'a> {
    pub fn base(self) -> i64 {
        self.base
    }

    pub fn scale(self) -> i64 {
        self.scale
    }

    /// Each row's step ([`SCALED_NULL`] for a null).
    pub fn steps(self) -> &'a [i32] {
        self.steps
    }

    /// The value of step `n` ([`NULL_INT`] for a null).
    #[inline(always)]
    pub fn value(self, n: i32) -> i64 {
        if n == SCALED_NULL {
            NULL_INT
        } else {
            self.base + i64::from(n) * self.scale
        }
    }
}

/// `$body` with `$v` bound to the rows of `$ints` as an [`IntRead`] of their
/// own form, so a loop over them is compiled once per form (`$v.at(r)`).
macro_rules! with_ints {
    ($ints:expr, |$v:ident| $body:expr) => {
        match $ints {
            $crate::store::columns::Ints::Wide(w) => {
                let $v = w.as_slice();
                $body
            }
            i @ $crate::store::columns::Ints::Scaled { .. } => {
                let $v = i.scaled();
                $body
            }
        }
    };
}
pub(crate) use with_ints;

/// The values, in four bytes each when they allow it.
impl From<Vec<i64>> for Ints {
    fn from(v: Vec<i64>) -> Ints {
        let mut valid = v.iter().copied().filter(|x| *x != NULL_INT);
        let Some(first) = valid.next() else {
            return Ints::Scaled {
                base: 0,
                scale: 1,
                steps: vec![SCALED_NULL; v.len()],
            };
        };
        let (mut lo, mut hi, mut step) = (first, first, 0u64);
        for x in valid {
            (lo, hi) = (lo.min(x), hi.max(x));
            step = gcd(step, x.abs_diff(first));
        }
        let scale = i64::try_from(step.max(1)).unwrap_or(1);
        let fits = hi.abs_diff(lo) / scale.unsigned_abs() < i32::MAX as u64;
        if !fits {
            return Ints::Wide(v);
        }
        let steps = v
            .iter()
            .map(|&x| match x {
                NULL_INT => SCALED_NULL,
                x => ((x - lo) / scale) as i32,
            })
            .collect();
        Ints::Scaled {
            base: lo,
            scale,
            steps,
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Ints {
    pub fn len(&self) -> usize {
        match self {
            Ints::Wide(v) => v.len(),
            Ints::Scaled { steps, .. } => steps.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `row` ([`NULL_INT`] for a null).
    #[inline(always)]
    pub fn get(&self, row: usize) -> i64 {
        with_ints!(self, |v| v.at(row).unwrap_or(NULL_INT))
    }

    /// Every row's value in order.
    pub fn to_vec(&self) -> Vec<i64> {
        with_ints!(self, |v| (0..self.len())
            .map(|r| v.at(r).unwrap_or(NULL_INT))
            .collect())
    }

    /// The rows of a scaled column, borrowed (a wide one: none).
    pub fn scaled(&self) -> Scaled<'_> {
        match self {
            Ints::Scaled { base, scale, steps } => Scaled {
                base: *base,
                scale: *scale,
                steps,
            },
            Ints::Wide(_) => Scaled {
                base: 0,
                scale: 1,
                steps: &[],
            },
        }
    }

    /// Sets row `row` to `x`, widening the values when it is not a step of the scale.
    pub fn set(&mut self, row: usize, x: i64) {
        match self {
            Ints::Wide(v) => v[row] = x,
            Ints::Scaled { base, scale, steps } => match step_of(*base, *scale, x) {
                Some(n) => steps[row] = n,
                None => {
                    *self = Ints::Wide(self.to_vec());
                    self.set(row, x);
                }
            },
        }
    }

    /// A copy grown to `len` rows with nulls.
    pub fn extended(&self, len: usize) -> Ints {
        match self {
            Ints::Wide(v) => Ints::Wide(extended(v, len, NULL_INT)),
            Ints::Scaled { base, scale, steps } => Ints::Scaled {
                base: *base,
                scale: *scale,
                steps: extended(steps, len, SCALED_NULL),
            },
        }
    }
}

/// The step `n` with `x = base + scale × n` (a null: [`SCALED_NULL`]), when there is one of 32 bits.
fn step_of(base: i64, scale: i64, x: i64) -> Option<i32> {
    if x == NULL_INT {
        return Some(SCALED_NULL);
    }
    let d = x.checked_sub(base)?;
    let n = i32::try_from(d / scale).ok()?;
    (d % scale == 0 && n != SCALED_NULL).then_some(n)
}

#[derive(Debug)]
pub enum Column {
    /// integer, bool (0/1) and time (ms) fields.
    Int(Ints),
    Real(Vec<f64>),
    Text {
        codes: Codes,
        /// Shared with the columns patched from this one (copied on the first new value).
        dict: Arc<Dict>,
    },
}

impl Column {
    pub fn is_null(&self, row: usize) -> bool {
        match self {
            Column::Int(v) => v.get(row) == NULL_INT,
            Column::Real(v) => v[row].is_nan(),
            Column::Text { codes, .. } => codes.get(row) == NULL_CODE,
        }
    }

    /// The numeric value of a row, for sums and means.
    pub fn number(&self, row: usize) -> Option<f64> {
        match self {
            Column::Int(v) => with_ints!(v, |v| v.at(row).map(|x| x as f64)),
            Column::Real(v) => (!v[row].is_nan()).then_some(v[row]),
            Column::Text { .. } => None,
        }
    }

    /// A key that identifies the row's value exactly (for distinct counts).
    pub fn key(&self, row: usize) -> Option<u64> {
        match self {
            Column::Int(v) => with_ints!(v, |v| v.at(row).map(|x| x as u64)),
            Column::Real(v) => (!v[row].is_nan()).then_some(v[row].to_bits()),
            Column::Text { codes, .. } => {
                let c = codes.get(row);
                (c != NULL_CODE).then_some(u64::from(c))
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
    pub fn parts(&self) -> (&Codes, &[u32]) {
        static NONE: Codes = Codes::Narrow(Vec::new());
        match self.codes.as_deref() {
            Some(Column::Text { codes, .. }) => (codes, &self.map),
            _ => (&NONE, &[]),
        }
    }

    /// Whether the rows' slots are by the codes of `col` itself.
    pub fn named_by(&self, col: &Arc<Column>) -> bool {
        self.codes.as_ref().is_some_and(|c| Arc::ptr_eq(c, col))
    }

    /// The slot of `row` (u32::MAX: none).
    pub fn get(&self, row: usize) -> u32 {
        let (codes, map) = self.parts();
        with_codes!(codes, |c| RowSlots::of(c, map, row))
    }

    /// The slot of `row` given [`RowSlots::parts`] (a pass takes the parts once, not per row).
    #[inline(always)]
    pub fn of<C: Code>(codes: &[C], map: &[u32], row: usize) -> u32 {
        match codes.get(row) {
            Some(&c) => map.get(c.code() as usize).copied().unwrap_or(u32::MAX),
            None => u32::MAX,
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
    }

    #[test]
    fn a_dictionary_read_from_a_snapshot_is_used_as_it_is_until_a_new_value() {
        // A slice of a larger array: its offsets do not start at 0.
        let array = StringArray::from(vec!["-", "北京", "", "x"]).slice(1, 3);
        let mut d = Dict::read(array);
        assert_eq!(d.iter().collect::<Vec<_>>(), ["北京", "", "x"]);
        assert!(
            matches!(d.raw(), RawDict::Array(b, o) if b == "北京x".as_bytes() && o == [1, 7, 7, 8])
        );
        assert_eq!((d.code("x"), d.intern("北京")), (Some(2), 0));
        assert!(
            matches!(d.raw(), RawDict::Array(..)),
            "no new value, no copy"
        );
        assert_eq!(d.intern("y"), 3);
        assert!(
            matches!(d.raw(), RawDict::Built(b, e) if b == "北京xy".as_bytes() && e == [6, 6, 7, 8])
        );
        assert_eq!(
            (d.code("北京"), d.code("y"), d.len()),
            (Some(0), Some(3), 4)
        );
        let back = d.to_array().unwrap();
        assert_eq!(
            back.iter().flatten().collect::<Vec<_>>(),
            ["北京", "", "x", "y"]
        );
        d.freeze();
        let RawDict::Array(bytes, offsets) = d.raw() else {
            panic!("a frozen dictionary is an array")
        };
        assert_eq!(
            (bytes, offsets),
            ("北京xy".as_bytes(), &[0, 6, 6, 7, 8][..])
        );
        let written = d.to_array().unwrap();
        assert_eq!(
            written.value_data().as_ptr(),
            bytes.as_ptr(),
            "written without a copy"
        );
        assert_eq!((d.code("y"), d.intern("z"), d.get(4)), (Some(3), 4, "z"));
    }

    #[test]
    fn codes_take_one_byte_until_a_code_needs_four() {
        let mut c = Codes::from(vec![0, NULL_CODE, 254]);
        assert!(matches!(c, Codes::Narrow(_)));
        assert_eq!(c.to_vec(), [0, NULL_CODE, 254]);
        assert_eq!((c.get(1), c.last(), c.len()), (NULL_CODE, Some(254), 3));
        c.push(NULL_CODE);
        c.set(0, 7);
        assert!(matches!(c, Codes::Narrow(_)), "nulls and small codes fit");

        // Code 255 is the narrow null, so it (and anything larger) widens the codes.
        let mut pushed = c.clone();
        pushed.push(255);
        assert!(matches!(pushed, Codes::Wide(_)));
        assert_eq!(pushed.to_vec(), [7, NULL_CODE, 254, NULL_CODE, 255]);
        let mut set = c.extended(6);
        set.set(5, 70_000);
        assert!(matches!(set, Codes::Wide(_)));
        assert_eq!(
            set.to_vec(),
            [7, NULL_CODE, 254, NULL_CODE, NULL_CODE, 70_000]
        );
        assert_eq!(
            set.extended(7).get(6),
            NULL_CODE,
            "wide codes grow with nulls too"
        );

        assert!(matches!(Codes::from(vec![1, 300]), Codes::Wide(_)));
        let mut empty = Codes::default();
        assert!(empty.is_empty() && empty.last().is_none());
        empty.push(3);
        assert_eq!(empty, Codes::Narrow(vec![3]));
    }

    #[test]
    fn integers_take_four_bytes_when_they_are_steps_of_a_scale() {
        let day = 86_400_000;
        let times = vec![NULL_INT, 1_767_225_600_000, 1_767_225_600_000 + 3 * day];
        let mut t = Ints::from(times.clone());
        assert_eq!(
            t,
            Ints::Scaled {
                base: 1_767_225_600_000,
                scale: 3 * day,
                steps: vec![SCALED_NULL, 0, 1],
            }
        );
        assert_eq!((t.to_vec(), t.len()), (times, 3));
        let t2 = t.extended(4);
        assert_eq!(t2.get(3), NULL_INT);
        t.set(0, 1_767_225_600_000 - 6 * day);
        assert_eq!(
            t.get(0),
            1_767_225_600_000 - 6 * day,
            "a step below the base"
        );
        assert!(matches!(t, Ints::Scaled { .. }));
        t.set(1, 1_767_225_600_001);
        assert!(matches!(t, Ints::Wide(_)), "not a step: widened");
        assert_eq!(
            t.to_vec(),
            [
                1_767_225_600_000 - 6 * day,
                1_767_225_600_001,
                1_767_225_600_000 + 3 * day
            ]
        );

        // Too far apart for 32 bits of steps, or at the ends of i64: eight bytes.
        assert!(matches!(
            Ints::from(vec![0, 1, i64::from(i32::MAX) + 1]),
            Ints::Wide(_)
        ));
        assert!(matches!(Ints::from(vec![i64::MAX, 0, 3]), Ints::Wide(_)));
        let mut flags = Ints::from(vec![1, 0, NULL_INT]);
        assert!(matches!(flags, Ints::Scaled { scale: 1, .. }));
        flags.set(2, i64::MAX);
        assert_eq!(
            flags.to_vec(),
            [1, 0, i64::MAX],
            "a step out of range widens"
        );
        let mut nulls = Ints::from(vec![NULL_INT; 2]);
        assert_eq!(nulls.to_vec(), [NULL_INT, NULL_INT]);
        nulls.set(1, -42);
        assert_eq!(nulls.to_vec(), [NULL_INT, -42]);
        let same = Ints::from(vec![5, 5]);
        assert_eq!(same.to_vec(), [5, 5]);
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
