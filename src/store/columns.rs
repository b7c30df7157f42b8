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
#[derive(Debug, Default)]
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
        dict: Dict,
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
    conn: Mutex<Connection>,
    pub schema: Arc<Schema>,
    tables: Mutex<HashMap<String, Arc<Table>>>,
    teams: OnceLock<Arc<TeamTree>>,
    /// Fields to read along with the first one asked for, by entity: one
    /// scan of a table instead of one per field.
    prefetch: HashMap<String, Vec<String>>,
}

impl ColumnStore {
    pub fn new(conn: Connection, schema: Arc<Schema>) -> ColumnStore {
        ColumnStore {
            conn: Mutex::new(conn),
            schema,
            tables: Mutex::new(HashMap::new()),
            teams: OnceLock::new(),
            prefetch: HashMap::new(),
        }
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
            Builder::Int(col) => col.push(match v {
                ValueRef::Integer(i) => i,
                ValueRef::Real(f) => f as i64,
                _ => NULL_INT,
            }),
            Builder::Real(col) => col.push(match v {
                ValueRef::Integer(i) => i as f64,
                ValueRef::Real(f) => f,
                _ => f64::NAN,
            }),
            Builder::Text(codes, dict) => codes.push(match v {
                // Rows of one parent often come together (a deal's stage events): try the last value first.
                ValueRef::Text(t)
                    if codes.last().is_some_and(|c| {
                        *c != NULL_CODE && dict.values[*c as usize].as_bytes() == t
                    }) =>
                {
                    *codes.last().expect("checked")
                }
                ValueRef::Text(t) => match std::str::from_utf8(t) {
                    Ok(s) => dict.intern(s),
                    Err(_) => dict.intern(&String::from_utf8_lossy(t)),
                },
                ValueRef::Integer(i) => dict.intern(&i.to_string()),
                ValueRef::Real(f) => dict.intern(&f.to_string()),
                _ => NULL_CODE,
            }),
        }
    }

    fn finish(self) -> Column {
        match self {
            Builder::Int(v) => Column::Int(v),
            Builder::Real(v) => Column::Real(v),
            Builder::Text(codes, dict) => Column::Text { codes, dict },
        }
    }
}
