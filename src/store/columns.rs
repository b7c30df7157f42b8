//! The column snapshot: entities read from SQLite into typed in-memory columns.
//!
//! Queries run over columns, not SQL: one pass over a column set answers a
//! query shape for every team and every period of an evaluation at once, and
//! the same columns serve every shape of the same entity. Columns are loaded on
//! first use, only the fields a query needs, and text is dictionary-encoded.
//!
//! Nulls are sentinels: [`NULL_INT`] for integer, bool and time columns, NaN
//! for real columns (import refuses NaN and i64::MIN), [`NULL_CODE`] for text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::StoreError;
use super::schema::{Entity, FieldType, Schema, TEAMS};

pub const NULL_INT: i64 = i64::MIN;
pub const NULL_CODE: u32 = u32::MAX;

/// Distinct text values of one column, each with a small integer code.
#[derive(Debug, Default, Clone)]
pub struct Dict {
    pub values: Vec<Arc<str>>,
    index: rustc_hash::FxHashMap<Arc<str>, u32>,
}

impl Dict {
    pub fn code(&self, s: &str) -> Option<u32> {
        self.index.get(s).copied()
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(c) = self.index.get(s) {
            return *c;
        }
        let code = self.values.len() as u32;
        let v: Arc<str> = Arc::from(s);
        self.values.push(v.clone());
        self.index.insert(v, code);
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

/// Rows of one entity in rowid order, with the columns loaded so far.
#[derive(Debug)]
pub struct Table {
    pub entity: String,
    rowids: Vec<i64>,
    columns: RwLock<HashMap<String, Arc<Column>>>,
    /// Team tree index of each row (u32::MAX: no known team).
    team_rows: OnceLock<Arc<Vec<u32>>>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.rowids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rowids.is_empty()
    }

    /// The same rows and columns, with the team index to be computed again.
    fn without_team_rows(&self) -> Table {
        Table {
            entity: self.entity.clone(),
            rowids: self.rowids.clone(),
            columns: RwLock::new(self.columns.read().expect("columns lock").clone()),
            team_rows: OnceLock::new(),
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

/// The teams as a tree of small integer indexes.
#[derive(Debug, Default)]
pub struct TeamTree {
    pub ids: Vec<String>,
    pub names: Vec<String>,
    pub parent: Vec<Option<u32>>,
    /// For each team: itself and its ancestors, nearest first.
    pub up: Vec<Vec<u32>>,
    index: HashMap<String, u32>,
}

impl TeamTree {
    pub fn new(rows: Vec<(String, String, Option<String>)>) -> TeamTree {
        let mut rows = rows;
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let index: HashMap<String, u32> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (r.0.clone(), i as u32))
            .collect();
        let parent: Vec<Option<u32>> = rows
            .iter()
            .map(|r| r.2.as_ref().and_then(|p| index.get(p).copied()))
            .collect();
        let up = (0..rows.len())
            .map(|t| ancestry(&parent, t as u32))
            .collect();
        TeamTree {
            ids: rows.iter().map(|r| r.0.clone()).collect(),
            names: rows.into_iter().map(|r| r.1).collect(),
            parent,
            up,
            index,
        }
    }

    pub fn index(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Depth-first order from the roots, for display.
    pub fn tree_order(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len());
        let roots = (0..self.len() as u32).filter(|t| self.parent[*t as usize].is_none());
        for r in roots {
            self.walk(r, &mut out);
        }
        out
    }

    /// Every team reachable from a root, each after all of its descendants.
    pub fn bottom_up(&self) -> Vec<u32> {
        let mut order = self.tree_order();
        order.reverse();
        order
    }

    fn walk(&self, t: u32, out: &mut Vec<u32>) {
        if out.contains(&t) {
            return;
        }
        out.push(t);
        for c in (0..self.len() as u32).filter(|c| self.parent[*c as usize] == Some(t)) {
            self.walk(c, out);
        }
    }
}

/// Self then ancestors; stops at a repeated team, so a cycle written behind
/// the engine's back cannot loop forever.
fn ancestry(parent: &[Option<u32>], t: u32) -> Vec<u32> {
    let mut chain = vec![t];
    let mut cur = t;
    while let Some(p) = parent[cur as usize] {
        if chain.contains(&p) {
            break;
        }
        chain.push(p);
        cur = p;
    }
    chain
}

/// Lazily loaded columns of every entity, read from one database.
pub struct ColumnStore {
    /// Shared by the stores derived from this one (see [`ColumnStore::after_upsert`]).
    conn: Arc<Mutex<Connection>>,
    pub schema: Arc<Schema>,
    tables: Mutex<HashMap<String, Arc<Table>>>,
    teams: OnceLock<Arc<TeamTree>>,
    /// Fields to read along with the first one asked for, by entity: one
    /// scan of a table instead of one per field.
    prefetch: HashMap<String, Vec<String>>,
    /// Results computed from the tables, kept across evaluations (see [`ColumnStore::memo`]).
    memo: Mutex<HashMap<String, Arc<MemoSlot>>>,
    /// Whether `memo` keeps anything (off unless [`ColumnStore::memoized`]).
    memoize: bool,
}

impl ColumnStore {
    pub fn new(conn: Connection, schema: Arc<Schema>) -> ColumnStore {
        ColumnStore {
            conn: Arc::new(Mutex::new(conn)),
            schema,
            tables: Mutex::new(HashMap::new()),
            teams: OnceLock::new(),
            prefetch: HashMap::new(),
            memo: Mutex::new(HashMap::new()),
            memoize: false,
        }
    }

    /// Keeps the results of [`ColumnStore::memo`] across evaluations (a
    /// server's store: every request and the alert scheduler share them).
    /// Without it each evaluation computes its own, as a one-off `kpi eval` does.
    pub fn memoized(mut self) -> ColumnStore {
        self.memoize = true;
        self
    }

    /// Reads these fields of an entity in the same scan as its first use
    /// (fields the configuration's formulas name; unknown names are skipped).
    pub fn prefetch(
        mut self,
        fields: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> ColumnStore {
        self.prefetch = fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        self
    }

    /// The fields of a first load: those asked for, the team column, the prefetch list.
    fn first_load<'a>(&'a self, ent: &'a Entity, fields: &[&'a str]) -> Vec<&'a str> {
        let mut all: Vec<&str> = fields.to_vec();
        all.extend(ent.team_column());
        all.extend(
            self.prefetch
                .get(&ent.name)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .filter(|f| ent.field(f).is_some()),
        );
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The team tree, read once.
    pub fn teams(&self) -> Result<Arc<TeamTree>, StoreError> {
        record_read(TEAMS);
        if let Some(t) = self.teams.get() {
            return Ok(t.clone());
        }
        let table = self.table(TEAMS, &["id", "name", "parent"])?;
        let (ids, names, parents) = (
            table.column("id"),
            table.column("name"),
            table.column("parent"),
        );
        let text = |c: &Option<Arc<Column>>, row: usize| -> Option<String> {
            match c.as_deref() {
                Some(Column::Text { codes, dict }) if codes[row] != NULL_CODE => {
                    Some(dict.values[codes[row] as usize].to_string())
                }
                _ => None,
            }
        };
        let rows = (0..table.len())
            .map(|r| {
                (
                    text(&ids, r).unwrap_or_default(),
                    text(&names, r).unwrap_or_default(),
                    text(&parents, r),
                )
            })
            .collect();
        let tree = Arc::new(TeamTree::new(rows));
        Ok(self.teams.get_or_init(|| tree).clone())
    }

    /// The table of `entity` with at least `fields` loaded.
    pub fn table(&self, entity: &str, fields: &[&str]) -> Result<Arc<Table>, StoreError> {
        let ent = self.schema.require(entity).map_err(StoreError::Other)?;
        record_read(entity);
        let mut tables = self.tables.lock().expect("tables lock");
        let existing = tables.get(entity).cloned();
        let missing: Vec<&str> = match &existing {
            Some(t) => fields
                .iter()
                .copied()
                .filter(|f| t.column(f).is_none())
                .collect(),
            None => self.first_load(ent, fields),
        };
        if missing.is_empty()
            && let Some(t) = existing
        {
            return Ok(t);
        }
        let conn = self.conn.lock().expect("connection lock");
        let (rowids, loaded) = load_columns(&conn, ent, &missing)?;
        let table = match existing {
            Some(t) if t.rowids == rowids => {
                t.columns.write().expect("columns lock").extend(loaded);
                t
            }
            // First load, or the rows changed underneath: start a fresh table
            // with every column the old one had.
            old => {
                let old_rows_changed = old.is_some();
                let mut all: Vec<String> = old
                    .map(|t| {
                        t.columns
                            .read()
                            .expect("columns lock")
                            .keys()
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                let (rowids, loaded) = if all.is_empty() {
                    (rowids, loaded)
                } else {
                    all.extend(missing.iter().map(|s| s.to_string()));
                    let names: Vec<&str> = all.iter().map(String::as_str).collect();
                    load_columns(&conn, ent, &names)?
                };
                if old_rows_changed {
                    self.forget(|read| read.iter().any(|e| e == entity));
                }
                let t = Arc::new(Table {
                    entity: entity.to_string(),
                    rowids,
                    columns: RwLock::new(loaded),
                    team_rows: OnceLock::new(),
                });
                tables.insert(entity.to_string(), t.clone());
                t
            }
        };
        Ok(table)
    }

    /// A store for `schema` over the same database and connection, reading
    /// `prefetch` with first loads. Every loaded table whose entity is defined
    /// the same way is kept, and the team tree too: a reload of the
    /// configuration reads no records again.
    pub fn derive(
        &self,
        schema: Arc<Schema>,
        prefetch: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> ColumnStore {
        let tables: HashMap<String, Arc<Table>> = self
            .tables
            .lock()
            .expect("tables lock")
            .iter()
            .filter(|(name, _)| {
                schema.entity(name).is_some() && schema.entity(name) == self.schema.entity(name)
            })
            .map(|(name, t)| (name.clone(), t.clone()))
            .collect();
        let memo =
            self.memo_without(|read| read.iter().any(|e| !tables.contains_key(e) && e != TEAMS));
        ColumnStore {
            conn: self.conn.clone(),
            schema,
            tables: Mutex::new(tables),
            teams: self.teams.clone(),
            prefetch: HashMap::new(),
            memo: Mutex::new(memo),
            memoize: self.memoize,
        }
        .prefetch(prefetch)
    }

    /// The store to serve after records of `entity` were upserted into this
    /// store's database (their ids in `ids`, or None when there were too many
    /// to list). Every other entity's loaded table is kept as it is. The
    /// entity's table is patched rather than read again: the upserted rows are
    /// read back by id, an update keeps its rowid (its row is replaced in a
    /// copy of each loaded column) and an insert has a rowid past the last one
    /// (its row is appended); text dictionaries get codes for new values. If
    /// the rows do not line up (something else wrote to the table) or `ids`
    /// is None, the table is dropped and read again on first use. Records of
    /// `teams` change the tree: it is read again and so is every table's team
    /// index, while their columns are kept.
    pub fn after_upsert(
        &self,
        entity: &str,
        ids: Option<&[String]>,
    ) -> Result<ColumnStore, StoreError> {
        let ent = self.schema.require(entity).map_err(StoreError::Other)?;
        let mut tables = self.tables.lock().expect("tables lock").clone();
        let teams = if entity == TEAMS {
            tables.remove(TEAMS);
            for t in tables.values_mut() {
                *t = Arc::new(t.without_team_rows());
            }
            OnceLock::new()
        } else {
            if let Some(old) = tables.remove(entity)
                && let Some(ids) = ids
            {
                let started = std::time::Instant::now();
                let conn = self.conn.lock().expect("connection lock");
                match patch(&conn, ent, &old, self.teams.get().map(|t| &**t), ids)? {
                    Some(t) => {
                        tracing::debug!(
                            entity,
                            rows = ids.len(),
                            ms = started.elapsed().as_millis() as u64,
                            "patched columns"
                        );
                        tables.insert(entity.to_string(), Arc::new(t));
                    }
                    None => tracing::info!(
                        "the rows of {entity} changed underneath; its columns are read again"
                    ),
                }
            }
            self.teams.clone()
        };
        // Results computed from the entity (or, for teams, from the tree) are dropped.
        let memo = self.memo_without(|read| read.iter().any(|e| e == entity));
        Ok(ColumnStore {
            conn: self.conn.clone(),
            schema: self.schema.clone(),
            tables: Mutex::new(tables),
            teams,
            prefetch: self.prefetch.clone(),
            memo: Mutex::new(memo),
            memoize: self.memoize,
        })
    }

    /// A result computed from this store's tables, kept across evaluations
    /// when the store is [memoized](ColumnStore::memoized) (else simply
    /// `compute(None)`): the value under `key` if there is one and `usable`
    /// accepts it, else `compute(previous value)`, kept in its place. Concurrent callers of the
    /// same key wait for one computation. The entities the computation read
    /// (through [`ColumnStore::table`] and [`ColumnStore::teams`]) are noted, so the
    /// store derived after an upsert keeps only the results it did not read.
    /// `key` must name everything the result depends on besides the tables.
    pub fn memo<V: std::any::Any + Send + Sync>(
        &self,
        key: &str,
        usable: impl Fn(&V) -> bool,
        compute: impl FnOnce(Option<&V>) -> Result<V, StoreError>,
    ) -> Result<Arc<V>, StoreError> {
        if !self.memoize {
            return Ok(Arc::new(compute(None)?));
        }
        let slot = {
            let mut memo = self.memo.lock().expect("memo lock");
            if let Some(slot) = memo.get(key) {
                slot.clone()
            } else {
                if memo.len() >= MEMO_ENTRIES {
                    memo.clear();
                }
                memo.entry(key.to_string()).or_default().clone()
            }
        };
        let _filling = slot.filling.lock().unwrap_or_else(|p| p.into_inner());
        let previous = slot
            .value
            .lock()
            .expect("memo slot")
            .as_ref()
            .and_then(|m| m.value.clone().downcast::<V>().ok());
        if let Some(v) = &previous
            && usable(v)
        {
            return Ok(v.clone());
        }
        let outer = READS.with(|r| r.borrow_mut().replace(Vec::new()));
        let result = compute(previous.as_deref());
        let read = READS.with(|r| std::mem::replace(&mut *r.borrow_mut(), outer));
        let value = Arc::new(result?);
        let mut read = read.unwrap_or_default();
        read.sort();
        read.dedup();
        READS.with(|r| {
            if let Some(outer) = r.borrow_mut().as_mut() {
                outer.extend(read.iter().cloned());
            }
        });
        *slot.value.lock().expect("memo slot") = Some(Memoized {
            value: value.clone(),
            read,
        });
        Ok(value)
    }

    /// The filled memo entries, less those `drop` picks by the entities they read.
    fn memo_without(&self, drop: impl Fn(&[String]) -> bool) -> HashMap<String, Arc<MemoSlot>> {
        let memo = self.memo.lock().expect("memo lock");
        memo.iter()
            .filter_map(|(k, slot)| {
                let v = slot.value.lock().expect("memo slot");
                let m = v.as_ref().filter(|m| !drop(&m.read))?;
                Some((k.clone(), Arc::new(MemoSlot::filled(m.clone()))))
            })
            .collect()
    }

    /// Drops the memo entries `drop` picks by the entities they read.
    fn forget(&self, drop: impl Fn(&[String]) -> bool) {
        let kept = self.memo_without(drop);
        *self.memo.lock().expect("memo lock") = kept;
    }

    /// Team index of every row of `table` (u32::MAX when its team is unknown).
    pub fn team_rows(&self, table: &Table) -> Result<Arc<Vec<u32>>, StoreError> {
        if let Some(t) = table.team_rows.get() {
            return Ok(t.clone());
        }
        let ent = self
            .schema
            .require(&table.entity)
            .map_err(StoreError::Other)?;
        let tree = self.teams()?;
        let rows = match ent.team_column() {
            None => vec![u32::MAX; table.len()],
            Some(field) => {
                let t = self.table(&table.entity, &[field])?;
                match t.column(field).as_deref() {
                    Some(Column::Text { codes, dict }) => {
                        let map: Vec<u32> = dict
                            .values
                            .iter()
                            .map(|v| tree.index(v).unwrap_or(u32::MAX))
                            .collect();
                        codes
                            .iter()
                            .map(|c| {
                                if *c == NULL_CODE {
                                    u32::MAX
                                } else {
                                    map[*c as usize]
                                }
                            })
                            .collect()
                    }
                    _ => vec![u32::MAX; table.len()],
                }
            }
        };
        Ok(table.team_rows.get_or_init(|| Arc::new(rows)).clone())
    }
}

/// Memo entries kept before the memo starts over.
const MEMO_ENTRIES: usize = 4096;

/// A memoized result and the entities read to compute it.
#[derive(Clone)]
struct Memoized {
    value: Arc<dyn std::any::Any + Send + Sync>,
    read: Vec<String>,
}

/// One memo entry: filled by one computation at a time.
#[derive(Default)]
struct MemoSlot {
    filling: Mutex<()>,
    value: Mutex<Option<Memoized>>,
}

impl MemoSlot {
    fn filled(m: Memoized) -> MemoSlot {
        MemoSlot {
            filling: Mutex::new(()),
            value: Mutex::new(Some(m)),
        }
    }
}

thread_local! {
    /// The entities read by the memo computation running on this thread.
    static READS: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Notes that the running memo computation (if any) reads `entity`.
fn record_read(entity: &str) {
    READS.with(|r| {
        if let Some(read) = r.borrow_mut().as_mut()
            && !read.iter().any(|e| e == entity)
        {
            read.push(entity.to_string());
        }
    });
}

/// Rows read back by [`patch`]: rowid and the cells of the loaded columns.
type ReadBack = Vec<(i64, Vec<rusqlite::types::Value>)>;

/// At most this many ids in one `IN (…)` list.
const IDS_PER_QUERY: usize = 500;

/// `old` with the rows of `ids` read again (updates in place, inserts
/// appended), as a new table; the columns of `old` are not touched. None when
/// a row's rowid is neither one of the table's nor past its last.
fn patch(
    conn: &Connection,
    ent: &Entity,
    old: &Table,
    tree: Option<&TeamTree>,
    ids: &[String],
) -> Result<Option<Table>, StoreError> {
    let columns: Vec<(String, Arc<Column>)> = old
        .columns
        .read()
        .expect("columns lock")
        .iter()
        .map(|(k, c)| (k.clone(), c.clone()))
        .collect();
    let select: String = columns
        .iter()
        .map(|(name, _)| format!(", \"{name}\""))
        .collect();
    let mut rows: ReadBack = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "SELECT rowid{select} FROM \"{}\" WHERE \"id\" IN ({})",
            ent.name,
            marks.join(", ")
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut q = stmt.query(rusqlite::params_from_iter(chunk))?;
        while let Some(r) = q.next()? {
            let cells = (1..=columns.len())
                .map(|i| r.get::<_, rusqlite::types::Value>(i))
                .collect::<Result<Vec<_>, _>>()?;
            rows.push((r.get(0)?, cells));
        }
    }
    rows.sort_by_key(|r| r.0);
    rows.dedup_by_key(|r| r.0);
    // Where each row goes: its old position, or appended.
    let mut rowids = Vec::with_capacity(old.rowids.len() + rows.len());
    rowids.extend_from_slice(&old.rowids);
    let mut at = Vec::with_capacity(rows.len());
    for (rowid, _) in &rows {
        match old.rowids.binary_search(rowid) {
            Ok(p) => at.push(p),
            Err(_) if rowids.last().is_none_or(|last| rowid > last) => {
                at.push(rowids.len());
                rowids.push(*rowid);
            }
            Err(_) => return Ok(None),
        }
    }
    let len = rowids.len();
    let cell = |i: usize| {
        at.iter()
            .zip(&rows)
            .map(move |(pos, (_, cells))| (*pos, ValueRef::from(&cells[i])))
    };
    let mut patched: HashMap<String, Arc<Column>> = HashMap::with_capacity(columns.len());
    for (i, (name, col)) in columns.iter().enumerate() {
        let new = match &**col {
            Column::Int(v) => {
                let mut v = extended(v, len, NULL_INT);
                cell(i).for_each(|(p, x)| v[p] = int_value(x));
                Column::Int(v)
            }
            Column::Real(v) => {
                let mut v = extended(v, len, f64::NAN);
                cell(i).for_each(|(p, x)| v[p] = real_value(x));
                Column::Real(v)
            }
            Column::Text { codes, dict } => {
                let mut codes = extended(codes, len, NULL_CODE);
                let mut dict = dict.clone();
                for (p, x) in cell(i) {
                    codes[p] = match text_value(x) {
                        None => NULL_CODE,
                        Some(s) => match dict.code(&s) {
                            Some(c) => c,
                            None => Arc::make_mut(&mut dict).intern(&s),
                        },
                    };
                }
                Column::Text { codes, dict }
            }
        };
        patched.insert(name.clone(), Arc::new(new));
    }
    // The team index of the patched rows, when the old one was computed.
    let team_rows = OnceLock::new();
    if let (Some(old_rows), Some(tree), Some(field)) =
        (old.team_rows.get(), tree, ent.team_column())
        && let Some(Column::Text { codes, dict }) = patched.get(field).map(|c| &**c)
    {
        let mut t = extended(old_rows, len, u32::MAX);
        for &p in &at {
            t[p] = match codes[p] {
                NULL_CODE => u32::MAX,
                c => tree.index(&dict.values[c as usize]).unwrap_or(u32::MAX),
            };
        }
        let _ = team_rows.set(Arc::new(t));
    }
    Ok(Some(Table {
        entity: old.entity.clone(),
        rowids,
        columns: RwLock::new(patched),
        team_rows,
    }))
}

/// A copy of `v` grown to `len` with `fill`.
fn extended<T: Copy>(v: &[T], len: usize, fill: T) -> Vec<T> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(v);
    out.resize(len, fill);
    out
}

/// Row ids, and the columns read, by field name.
type Loaded = (Vec<i64>, HashMap<String, Arc<Column>>);

/// Reads `fields` of every row of `entity` in rowid order.
fn load_columns(conn: &Connection, entity: &Entity, fields: &[&str]) -> Result<Loaded, StoreError> {
    let started = std::time::Instant::now();
    let loaded = read_columns(conn, entity, fields)?;
    tracing::debug!(entity = %entity.name, ?fields, rows = loaded.0.len(), ms = started.elapsed().as_millis() as u64, "loaded columns");
    Ok(loaded)
}

fn read_columns(conn: &Connection, entity: &Entity, fields: &[&str]) -> Result<Loaded, StoreError> {
    let mut types = Vec::with_capacity(fields.len());
    for f in fields {
        let field = entity
            .field(f)
            .ok_or_else(|| StoreError::Other(entity.unknown_field(f)))?;
        types.push(field.ty);
    }
    let select: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
    let sql = format!(
        "SELECT rowid{}{} FROM \"{}\" ORDER BY rowid",
        if select.is_empty() { "" } else { ", " },
        select.join(", "),
        entity.name
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut builders: Vec<Builder> = types.iter().map(|t| Builder::new(*t)).collect();
    let mut rowids = Vec::new();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        rowids.push(row.get::<_, i64>(0)?);
        for (i, b) in builders.iter_mut().enumerate() {
            b.push(row.get_ref(i + 1)?);
        }
    }
    let columns = fields
        .iter()
        .map(|f| f.to_string())
        .zip(builders.into_iter().map(|b| Arc::new(b.finish())))
        .collect();
    Ok((rowids, columns))
}

enum Builder {
    Int(Vec<i64>),
    Real(Vec<f64>),
    Text(Vec<u32>, Dict),
}

impl Builder {
    fn new(ty: FieldType) -> Builder {
        match ty {
            FieldType::Text => Builder::Text(Vec::new(), Dict::default()),
            FieldType::Real => Builder::Real(Vec::new()),
            FieldType::Integer | FieldType::Bool | FieldType::Time => Builder::Int(Vec::new()),
        }
    }

    fn push(&mut self, v: ValueRef<'_>) {
        match self {
            Builder::Int(col) => col.push(int_value(v)),
            Builder::Real(col) => col.push(real_value(v)),
            Builder::Text(codes, dict) => codes.push(match v {
                // Rows of one parent often come together (a deal's stage events): try the last value first.
                ValueRef::Text(t)
                    if codes.last().is_some_and(|c| {
                        *c != NULL_CODE && dict.values[*c as usize].as_bytes() == t
                    }) =>
                {
                    *codes.last().expect("checked")
                }
                v => match text_value(v) {
                    Some(s) => dict.intern(&s),
                    None => NULL_CODE,
                },
            }),
        }
    }

    fn finish(self) -> Column {
        match self {
            Builder::Int(v) => Column::Int(v),
            Builder::Real(v) => Column::Real(v),
            Builder::Text(codes, dict) => Column::Text {
                codes,
                dict: Arc::new(dict),
            },
        }
    }
}

/// An integer, bool or time cell ([`NULL_INT`] for NULL).
fn int_value(v: ValueRef<'_>) -> i64 {
    match v {
        ValueRef::Integer(i) => i,
        ValueRef::Real(f) => f as i64,
        _ => NULL_INT,
    }
}

/// A real cell (NaN for NULL).
fn real_value(v: ValueRef<'_>) -> f64 {
    match v {
        ValueRef::Integer(i) => i as f64,
        ValueRef::Real(f) => f,
        _ => f64::NAN,
    }
}

/// A text cell as text (None for NULL and blobs).
fn text_value(v: ValueRef<'_>) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t)),
        ValueRef::Integer(i) => Some(i.to_string().into()),
        ValueRef::Real(f) => Some(f.to_string().into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_doc::Source;
    use crate::period::Calendar;
    use crate::store::db;
    use crate::store::import::{Input, import};

    const FIELDS: [&str; 5] = ["team", "stage", "owner", "amount", "closed_at"];

    fn schema() -> Arc<Schema> {
        let text = "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n\
            [entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\n\
            stage = { type = \"text\", values = [\"won\", \"lost\"] }\nowner = \"text?\"\n\
            amount = \"real\"\nclosed_at = \"time?\"\n";
        Arc::new(Schema::from_source(&Source::new("schema.toml", text)).unwrap())
    }

    fn csv(path: &std::path::Path, schema: &Schema, entity: &str, text: &str) -> Vec<String> {
        let mut conn = db::open(path).unwrap();
        let cal = Calendar::new("UTC", 1).unwrap();
        let input = Input::Csv(Box::new(std::io::Cursor::new(text.as_bytes().to_vec())));
        let r = import(&mut conn, schema, &cal, entity, "in.csv", input).unwrap();
        r.ids.unwrap()
    }

    /// Every loaded cell of a table as text, plus the team index, row by row.
    fn dump(store: &ColumnStore, entity: &str, fields: &[&str]) -> Vec<String> {
        let t = store.table(entity, fields).unwrap();
        let teams = store.team_rows(&t).unwrap();
        (0..t.len())
            .map(|r| {
                let cells: Vec<String> = fields
                    .iter()
                    .map(|f| match &*t.column(f).unwrap() {
                        Column::Int(v) => v[r].to_string(),
                        Column::Real(v) => v[r].to_string(),
                        Column::Text { codes, dict } if codes[r] == NULL_CODE => "∅".into(),
                        Column::Text { codes, dict } => dict.values[codes[r] as usize].to_string(),
                    })
                    .collect();
                format!("{} {} team#{}", t.rowids[r], cells.join(","), teams[r])
            })
            .collect()
    }

    #[test]
    fn an_upsert_patches_the_columns_like_a_fresh_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        let schema = schema();
        db::migrate(&mut db::open(&path).unwrap(), &schema).unwrap();
        csv(
            &path,
            &schema,
            "teams",
            "id,name,parent\nhq,HQ,\nnorth,North,hq\nsouth,South,hq\n",
        );
        csv(
            &path,
            &schema,
            "deals",
            "id,team,stage,owner,amount,closed_at\nd1,north,won,ann,10,2026-01-02\n\
             d2,north,lost,,20,\nd3,south,won,bob,30,2026-02-03\n",
        );
        let store = ColumnStore::new(db::open(&path).unwrap(), schema.clone());
        let before = dump(&store, "deals", &FIELDS);
        let customers_like = store.table("teams", &["id", "name", "parent"]).unwrap();

        // d2 changes team, stage, owner (a new value) and amount; d4 is new.
        let ids = csv(
            &path,
            &schema,
            "deals",
            "id,team,stage,owner,amount,closed_at\nd2,south,won,cy,25,2026-03-01\n\
             d4,hq,lost,,40,\n",
        );
        assert_eq!(ids, ["d2", "d4"]);
        let next = store.after_upsert("deals", Some(&ids)).unwrap();
        let patched = dump(&next, "deals", &FIELDS);
        let fresh = dump(
            &ColumnStore::new(db::open(&path).unwrap(), schema.clone()),
            "deals",
            &FIELDS,
        );
        assert_eq!(patched, fresh);
        assert_eq!(patched.len(), 4);
        assert_ne!(patched, before);
        // The old store still serves the rows it had; other tables are shared.
        assert_eq!(dump(&store, "deals", &FIELDS), before);
        let teams = next.table("teams", &["id", "name", "parent"]).unwrap();
        assert!(Arc::ptr_eq(&teams, &customers_like));
        // A column read for the first time after the patch lines up with it.
        let created = next.table("deals", &["id"]).unwrap();
        assert_eq!(created.len(), 4);
    }

    #[test]
    fn a_teams_upsert_reads_the_tree_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        let schema = schema();
        db::migrate(&mut db::open(&path).unwrap(), &schema).unwrap();
        csv(
            &path,
            &schema,
            "teams",
            "id,name,parent\nhq,HQ,\nnorth,North,hq\n",
        );
        csv(
            &path,
            &schema,
            "deals",
            "id,team,stage,amount\nd1,north,won,10\nd2,hq,lost,20\n",
        );
        let store = ColumnStore::new(db::open(&path).unwrap(), schema.clone());
        let before = dump(&store, "deals", &FIELDS);
        // "east" sorts first: every team index moves.
        let ids = csv(&path, &schema, "teams", "id,name,parent\neast,East,hq\n");
        let next = store.after_upsert("teams", Some(&ids)).unwrap();
        assert_eq!(next.teams().unwrap().len(), 3);
        let fresh = ColumnStore::new(db::open(&path).unwrap(), schema.clone());
        assert_eq!(
            dump(&next, "deals", &FIELDS),
            dump(&fresh, "deals", &FIELDS)
        );
        assert_ne!(dump(&next, "deals", &FIELDS), before);
    }

    #[test]
    fn memo_keeps_only_what_an_upsert_did_not_touch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        let schema = schema();
        db::migrate(&mut db::open(&path).unwrap(), &schema).unwrap();
        csv(&path, &schema, "teams", "id,name,parent\nhq,HQ,\n");
        csv(
            &path,
            &schema,
            "deals",
            "id,team,stage,amount\nd1,hq,won,10\n",
        );
        let store = ColumnStore::new(db::open(&path).unwrap(), schema.clone()).memoized();
        let rows = |s: &ColumnStore, e: &str| s.table(e, &["id"]).unwrap().len();
        let runs = std::cell::Cell::new(0);
        let count = |s: &ColumnStore, e: &str| {
            *s.memo(
                e,
                |_: &usize| true,
                |_| {
                    runs.set(runs.get() + 1);
                    Ok(rows(s, e))
                },
            )
            .unwrap()
        };
        assert_eq!((count(&store, "deals"), count(&store, "teams")), (1, 1));
        assert_eq!((count(&store, "deals"), count(&store, "teams")), (1, 1));
        assert_eq!(runs.get(), 2, "the second asks are answered by the memo");
        let ids = csv(
            &path,
            &schema,
            "deals",
            "id,team,stage,amount\nd2,hq,lost,5\n",
        );
        let next = store.after_upsert("deals", Some(&ids)).unwrap();
        assert_eq!((count(&next, "deals"), count(&next, "teams")), (2, 1));
        assert_eq!(
            runs.get(),
            3,
            "only the result that read deals is computed again"
        );
        assert_eq!(count(&store, "deals"), 1, "the old store keeps its own");
    }
}
