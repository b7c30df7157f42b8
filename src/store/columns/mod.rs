//! The embedded record store: entities read from SQLite into typed in-memory
//! columns, and the team tree.
//!
//! Queries run over columns, not SQL: one pass over a column set answers a
//! query shape for every team and every period of an evaluation at once
//! (`query::exec`), and the same columns serve every shape of the same
//! entity. Columns are loaded on first use, only the fields a query needs, and
//! text is dictionary-encoded. After an upsert the ingested table is patched
//! (`patch`), not read again.

mod column;
mod load;
mod patch;
mod preload;
mod snapshot;
mod writes;

pub use column::{
    Code, Codes, Column, Dict, IntRead, Ints, NULL_CODE, NULL_INT, RowSlots, Rowids, Scaled, Table,
};
pub(crate) use column::{with_codes, with_ints};
pub use snapshot::ENV as SNAPSHOT_ENV;
pub use writes::{Foreground, foreground, wait_for_writes as wait_for_snapshot_writes};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;
use super::owners::Owners;
use super::schema::{Entity, OWNERS, OwnerLink, Schema, TEAMS};
use super::teams::TeamTree;
use load::load_columns;
use patch::patch;
use preload::Preload;

/// Lazily loaded columns of every entity, read from one database.
pub struct ColumnStore {
    /// Shared by the stores derived from this one (see [`ColumnStore::after_upsert`]).
    conn: Arc<Mutex<Connection>>,
    pub schema: Arc<Schema>,
    tables: Mutex<HashMap<String, Arc<Table>>>,
    teams: OnceLock<Arc<TeamTree>>,
    owners: OnceLock<Arc<Owners>>,
    /// Fields to read along with the first one asked for, by entity: one
    /// scan of a table instead of one per field.
    prefetch: HashMap<String, Vec<String>>,
    /// Counts tables read again because their rows changed underneath (another
    /// writer): results computed before a change are stale (see [`ColumnStore::epoch`]).
    epoch: Arc<AtomicU64>,
    /// Where the column snapshots of the database live (None: in memory, or turned off).
    snapshot: Option<PathBuf>,
    /// The snapshots being read ahead (see [`ColumnStore::prefetch`]).
    preload: Option<Arc<Preload>>,
}

impl ColumnStore {
    pub fn new(conn: Connection, schema: Arc<Schema>) -> ColumnStore {
        ColumnStore {
            snapshot: snapshot::dir_of(&conn),
            preload: None,
            conn: Arc::new(Mutex::new(conn)),
            schema,
            tables: Mutex::new(HashMap::new()),
            teams: OnceLock::new(),
            owners: OnceLock::new(),
            prefetch: HashMap::new(),
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A store over a new in-memory database holding only `records`
    /// (entity, label for errors, rows as JSON objects): the scratch database
    /// of `kpi test` cases and of the dry run of `kpi check`.
    pub fn in_memory(
        schema: Arc<Schema>,
        cal: &crate::period::Calendar,
        records: &[(&str, &str, Vec<serde_json::Value>)],
    ) -> Result<ColumnStore, StoreError> {
        let mut conn = super::db::open_in_memory()?;
        super::db::migrate(&mut conn, &schema)?;
        for (entity, label, rows) in records {
            let input = super::import::Input::Json(rows.clone());
            super::import::import(&mut conn, &schema, cal, entity, label, input)?;
        }
        Ok(ColumnStore::new(conn, schema))
    }

    /// The entities whose tables are loaded (for tests).
    #[cfg(test)]
    pub(crate) fn loaded(&self) -> Vec<String> {
        let tables = self.tables.lock().expect("tables lock");
        tables.keys().cloned().collect()
    }

    /// Changes each time a loaded table had to be read again because its rows
    /// changed underneath; results computed under another epoch are stale.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Reads these fields of an entity in the same scan as its first use
    /// (fields the configuration's formulas name; unknown names are skipped),
    /// and starts reading the snapshots of these entities ahead on a thread.
    pub fn prefetch(
        mut self,
        fields: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> ColumnStore {
        self = self.with_prefetch(fields);
        let db = self
            .conn
            .lock()
            .expect("connection lock")
            .path()
            .map(PathBuf::from);
        if let (Some(db), Some(dir)) = (db, &self.snapshot) {
            let entities = fields.keys().cloned().collect();
            self.preload = Some(Preload::start(
                db,
                dir.clone(),
                self.schema.clone(),
                entities,
            ));
        }
        self
    }

    /// [`ColumnStore::prefetch`] without reading ahead (a derived store
    /// keeps the tables it was derived with).
    fn with_prefetch(mut self, fields: &std::collections::BTreeMap<String, Vec<String>>) -> Self {
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
        let ent = self.schema.require(entity)?;
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
        let table = match existing {
            None => self.read_first(&conn, ent, &missing)?,
            Some(t) => {
                let loaded = load_columns(&conn, ent, &missing)?;
                if t.rowids == loaded.rowids {
                    t.columns
                        .write()
                        .expect("columns lock")
                        .extend(loaded.columns);
                    if t.generation == Some(loaded.generation) {
                        // More columns of it often follow (a person's evaluation asks for the
                        // ids, then the owners): one write of the table, not one per column.
                        self.persist(&conn, ent, &t, writes::SETTLE);
                    }
                    return Ok(t);
                }
                // The rows changed underneath: start a fresh table with
                // every column the old one had.
                let mut all: Vec<String> = t
                    .columns
                    .read()
                    .expect("columns lock")
                    .keys()
                    .cloned()
                    .collect();
                all.extend(missing.iter().map(|s| s.to_string()));
                let names: Vec<&str> = all.iter().map(String::as_str).collect();
                self.epoch.fetch_add(1, Ordering::AcqRel);
                self.read_sqlite(&conn, ent, &names)?
            }
        };
        tables.insert(entity.to_string(), table.clone());
        Ok(table)
    }

    /// The first load of `ent`: its snapshot when it is valid (with the
    /// fields it lacks read from SQLite and the snapshot rewritten with
    /// them), else `fields` read from SQLite.
    fn read_first(
        &self,
        conn: &Connection,
        ent: &Entity,
        fields: &[&str],
    ) -> Result<Arc<Table>, StoreError> {
        let Some((generation, rowids, mut columns)) = self.read_snapshot(conn, ent)? else {
            return self.read_sqlite(conn, ent, fields);
        };
        let absent: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| !columns.contains_key(*f))
            .collect();
        if absent.is_empty() {
            return Ok(new_table(ent, rowids, columns, Some(generation)));
        }
        let more = load_columns(conn, ent, &absent)?;
        if more.generation != generation || more.rowids != rowids {
            // Written meanwhile: the snapshot is behind; read every field again.
            let mut all: Vec<&str> = columns.keys().map(String::as_str).collect();
            all.extend(&absent);
            return self.read_sqlite(conn, ent, &all);
        }
        columns.extend(more.columns);
        let table = new_table(ent, rowids, columns, Some(generation));
        self.persist(conn, ent, &table, writes::SETTLE);
        Ok(table)
    }

    /// `fields` of `ent` read from SQLite into a new table, written to the snapshot.
    fn read_sqlite(
        &self,
        conn: &Connection,
        ent: &Entity,
        fields: &[&str],
    ) -> Result<Arc<Table>, StoreError> {
        let loaded = load_columns(conn, ent, fields)?;
        let table = new_table(ent, loaded.rowids, loaded.columns, Some(loaded.generation));
        self.persist(conn, ent, &table, Duration::ZERO);
        Ok(table)
    }

    /// The valid snapshot of `ent`: its generation and columns (every one it
    /// holds), from the preload when it read it.
    fn read_snapshot(
        &self,
        conn: &Connection,
        ent: &Entity,
    ) -> Result<Option<snapshot::Snap>, StoreError> {
        let Some(dir) = &self.snapshot else {
            return Ok(None);
        };
        if let Some(preload) = &self.preload
            && let preload::Claim::Read(read) = preload.claim(&ent.name)
        {
            return Ok(read);
        }
        Ok(snapshot::load(conn, dir, ent)?)
    }

    /// Writes the snapshot of `table` on a thread after `delay` (when it has
    /// a known generation and the store has a snapshot directory): a load or
    /// an ingest does not wait for it. A failure is logged, never returned:
    /// the snapshot is a cache.
    fn persist(&self, conn: &Connection, ent: &Entity, table: &Arc<Table>, delay: Duration) {
        if let Some((dir, tag)) = self.snapshot_tag(conn, ent, table) {
            // The columns as they are now: a column added later may be of another generation.
            let columns = table.columns.read().expect("columns lock").clone();
            let request = writes::Request {
                dir,
                ent: ent.clone(),
                tag,
                table: table.clone(),
                columns,
            };
            writes::write_later(request, delay);
        }
    }

    /// Where and with which tag `table` is to be written, if it can be.
    fn snapshot_tag(
        &self,
        conn: &Connection,
        ent: &Entity,
        table: &Table,
    ) -> Option<(PathBuf, snapshot::Tag)> {
        let (dir, generation) = (self.snapshot.as_ref()?, table.generation?);
        let database = snapshot::database_id(conn, true)
            .inspect_err(
                |e| tracing::debug!(entity = %ent.name, "no column snapshot: the database id: {e}"),
            )
            .ok()??;
        let tag = snapshot::Tag {
            database,
            generation,
            max_rowid: table.rowids.last().unwrap_or(i64::MIN),
            fields: snapshot::fingerprint(ent),
        };
        Some((dir.clone(), tag))
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
        ColumnStore {
            conn: self.conn.clone(),
            schema,
            tables: Mutex::new(tables),
            teams: self.teams.clone(),
            owners: self.owners.clone(),
            prefetch: HashMap::new(),
            epoch: self.epoch.clone(),
            snapshot: self.snapshot.clone(),
            preload: None,
        }
        .with_prefetch(prefetch)
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
        let ent = self.schema.require(entity)?;
        let mut tables = self.tables.lock().expect("tables lock").clone();
        // Who owns a row depends on `owners` (and, through owner_via, on the
        // linked entity); those indexes are computed again.
        let owners = if entity == TEAMS || entity == OWNERS {
            OnceLock::new()
        } else {
            self.owners.clone()
        };
        for (name, t) in tables.iter_mut() {
            let via_this = matches!(
                self.schema.entity(name).and_then(|e| e.owner.as_ref()),
                Some(OwnerLink::Via { entity: linked, .. }) if linked == entity
            );
            if entity == OWNERS || via_this {
                *t = Arc::new(t.without_owner_rows());
            }
        }
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
                match patch(&conn, ent, &old, ids)? {
                    Some(mut t) => {
                        // The engine passes ids only when this upsert was the one
                        // write since its last look: if the old table was read at
                        // the generation before, the patched one is at this one.
                        let now = snapshot::generation(&conn, entity)?;
                        t.generation = old.generation.filter(|g| g + 1 == now).map(|_| now);
                        let t = Arc::new(t);
                        self.persist(&conn, ent, &t, writes::SETTLE);
                        tracing::debug!(
                            entity,
                            rows = ids.len(),
                            ms = started.elapsed().as_millis() as u64,
                            "patched columns"
                        );
                        tables.insert(entity.to_string(), t);
                    }
                    None => tracing::info!(
                        "the rows of {entity} changed underneath; its columns are read again"
                    ),
                }
            }
            self.teams.clone()
        };
        Ok(ColumnStore {
            conn: self.conn.clone(),
            schema: self.schema.clone(),
            tables: Mutex::new(tables),
            teams,
            owners,
            prefetch: self.prefetch.clone(),
            epoch: self.epoch.clone(),
            snapshot: self.snapshot.clone(),
            preload: None,
        })
    }

    /// Reads the columns of `fields` (by entity; only `only`'s when given)
    /// and the team tree. Columns already loaded are not read again.
    pub fn warm(
        &self,
        fields: &std::collections::BTreeMap<String, Vec<String>>,
        only: Option<&str>,
    ) -> Result<(), StoreError> {
        self.teams()?;
        for (entity, fields) in fields {
            if only.is_none_or(|e| e == entity) {
                let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
                let table = self.table(entity, &fields)?;
                self.team_rows(&table)?;
            }
        }
        Ok(())
    }

    /// Team index of every row of `table` (u32::MAX when its team is unknown).
    pub fn team_rows(&self, table: &Table) -> Result<Arc<RowSlots>, StoreError> {
        if let Some(t) = table.team_rows.get() {
            return Ok(t.clone());
        }
        let ent = self.schema.require(&table.entity)?;
        let tree = self.teams()?;
        let rows = match ent.team_column() {
            None => RowSlots::default(),
            Some(field) => self.indexes(table, field, |_, v| tree.index(v))?,
        };
        Ok(table.team_rows.get_or_init(|| Arc::new(rows)).clone())
    }

    /// The people of the `owners` entity, read once.
    pub fn owners(&self) -> Result<Arc<Owners>, StoreError> {
        if let Some(o) = self.owners.get() {
            return Ok(o.clone());
        }
        let tree = self.teams()?;
        let rows = match self.schema.entity(OWNERS) {
            None => Vec::new(),
            Some(ent) => {
                let fields: Vec<&str> = ["id", "name", "team", "active"]
                    .into_iter()
                    .filter(|f| ent.field(f).is_some())
                    .collect();
                let t = self.table(OWNERS, &fields)?;
                let (ids, names, teams, active) = (
                    t.column("id"),
                    t.column("name"),
                    t.column("team"),
                    t.column("active"),
                );
                (0..t.len())
                    .map(|r| {
                        let active = active
                            .as_deref()
                            .and_then(|c| c.number(r))
                            .map(|x| x != 0.0);
                        (
                            text(&ids, r).unwrap_or_default(),
                            text(&names, r).unwrap_or_default(),
                            text(&teams, r),
                            active,
                        )
                    })
                    .collect()
            }
        };
        let owners = Arc::new(Owners::new(rows, &tree));
        Ok(self.owners.get_or_init(|| owners).clone())
    }

    /// Owner index of every row of `table` (u32::MAX when it names no known
    /// person, or its entity has no owner link).
    pub fn owner_rows(&self, table: &Table) -> Result<Arc<RowSlots>, StoreError> {
        if let Some(t) = table.owner_rows.get() {
            return Ok(t.clone());
        }
        let ent = self.schema.require(&table.entity)?;
        let owners = self.owners()?;
        let rows = match &ent.owner {
            None => RowSlots::default(),
            Some(OwnerLink::Field(f)) => self.indexes(table, f, |_, v| owners.index(v))?,
            Some(OwnerLink::Via { field, entity }) => {
                let linked = self.table(entity, &["id"])?;
                let linked_owner = self.owner_rows(&linked)?;
                let ids = linked.column("id");
                let Some(Column::Text { codes, dict }) = ids.as_deref() else {
                    return Ok(table.owner_rows.get_or_init(Default::default).clone());
                };
                // The owner of each id, by the id's dictionary code: no string is copied.
                let mut by_code = vec![u32::MAX; dict.len()];
                with_codes!(codes, |codes| {
                    for (r, c) in codes.iter().enumerate() {
                        let (c, owner) = (c.code(), linked_owner.get(r));
                        if c != NULL_CODE && owner != u32::MAX {
                            by_code[c as usize] = owner;
                        }
                    }
                });
                self.indexes(table, field, |code, v| {
                    // Records listed in their linked ids' order (stage events after their
                    // deals) hold each id at the same code in both dictionaries: one string
                    // comparison instead of hashing every id (1.7 s at 9.2M deals).
                    let same = (code < dict.len() as u32 && dict.get(code) == v).then_some(code);
                    (same.or_else(|| dict.code(v)))
                        .map(|c| by_code[c as usize])
                        .filter(|o| *o != u32::MAX)
                })?
            }
        };
        Ok(table.owner_rows.get_or_init(|| Arc::new(rows)).clone())
    }

    /// `index(code, value)` of the text column `field` of every row of `table`
    /// (u32::MAX for NULL and for values `index` does not know).
    fn indexes(
        &self,
        table: &Table,
        field: &str,
        index: impl Fn(u32, &str) -> Option<u32>,
    ) -> Result<RowSlots, StoreError> {
        let t = self.table(&table.entity, &[field])?;
        Ok(match t.column(field) {
            Some(col) => match &*col {
                Column::Text { dict, .. } => {
                    let map = (dict.iter().zip(0..))
                        .map(|(v, c)| index(c, v).unwrap_or(u32::MAX))
                        .collect();
                    RowSlots::new(col.clone(), map)
                }
                _ => RowSlots::default(),
            },
            None => RowSlots::default(),
        })
    }
}

/// The text of row `row` of a text column, if it has one.
fn text(c: &Option<Arc<Column>>, row: usize) -> Option<String> {
    match c.as_deref() {
        Some(Column::Text { codes, dict }) if codes.get(row) != NULL_CODE => {
            Some(dict.get(codes.get(row)).to_string())
        }
        _ => None,
    }
}

/// A new table of `ent` (indexes to be computed).
fn new_table(
    ent: &Entity,
    rowids: Rowids,
    columns: HashMap<String, Arc<Column>>,
    generation: Option<i64>,
) -> Arc<Table> {
    Arc::new(Table {
        entity: ent.name.clone(),
        rowids,
        columns: RwLock::new(columns),
        team_rows: OnceLock::new(),
        owner_rows: OnceLock::new(),
        generation,
    })
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
                        Column::Int(v) => v.get(r).to_string(),
                        Column::Real(v) => v[r].to_string(),
                        Column::Text { codes, .. } if codes.get(r) == NULL_CODE => "∅".into(),
                        Column::Text { codes, dict } => dict.get(codes.get(r)).to_string(),
                    })
                    .collect();
                format!(
                    "{} {} team#{}",
                    t.rowids.to_vec(r..r + 1)[0],
                    cells.join(","),
                    teams.get(r)
                )
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

    /// One-byte codes and scaled times widen when an upsert brings the 255th owner and a time
    /// that is not a whole second; the patched columns still read like a fresh load.
    #[test]
    fn an_upsert_widens_narrow_columns_when_it_must() {
        let (_dir, path, schema) = three_deals();
        let first = store(&path, &schema);
        let form = |s: &ColumnStore, f: &str| match &*s
            .table("deals", &FIELDS)
            .unwrap()
            .column(f)
            .unwrap()
        {
            Column::Text { codes, .. } => matches!(codes, Codes::Narrow(_)),
            Column::Int(v) => matches!(v, Ints::Scaled { .. }),
            Column::Real(_) => false,
        };
        assert!(form(&first, "owner") && form(&first, "closed_at"));
        let mut rows = String::from(
            "id,team,stage,owner,amount,closed_at
",
        );
        for i in 0..300 {
            rows += &format!(
                "n{i},north,won,owner-{i},1,2026-01-02
"
            );
        }
        rows += "d1,north,won,ann,10,2026-01-02T03:04:05.678Z
";
        let ids = csv(&path, &schema, "deals", &rows);
        let next = first.after_upsert("deals", Some(&ids)).unwrap();
        assert!(
            !form(&next, "owner") && !form(&next, "closed_at"),
            "both widened"
        );
        assert_eq!(
            dump(&next, "deals", &FIELDS),
            dump(&store(&path, &schema), "deals", &FIELDS)
        );
    }

    #[test]
    fn a_record_owned_through_another_belongs_to_that_ones_owner() {
        let text = "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n\
            [entity.owners]\nteam_field = \"team\"\n\
            [entity.owners.fields]\nname = \"text\"\nteam = \"text\"\n\
            [entity.deals]\nteam_field = \"team\"\nowner_field = \"owner\"\n\
            [entity.deals.fields]\nteam = \"text\"\nowner = \"text?\"\n\
            [entity.stage_events]\nteam_field = \"team\"\n\
            owner_via = { field = \"deal\", entity = \"deals\" }\n\
            [entity.stage_events.fields]\nteam = \"text\"\ndeal = \"text?\"\n";
        let schema = Arc::new(Schema::from_source(&Source::new("schema.toml", text)).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        db::migrate(&mut db::open(&path).unwrap(), &schema).unwrap();
        csv(&path, &schema, "teams", "id,name,parent\nhq,HQ,\n");
        csv(
            &path,
            &schema,
            "owners",
            "id,name,team\nann,Ann,hq\nbob,Bob,hq\n",
        );
        // d2 has no owner; no deal d9.
        let deals = "id,team,owner\nd1,hq,ann\nd2,hq,\nd3,hq,bob\n";
        csv(&path, &schema, "deals", deals);
        let events = "id,team,deal\ne1,hq,d1\ne2,hq,d3\ne3,hq,d2\ne4,hq,d9\ne5,hq,\n\
            e6,hq,d1\n";
        csv(&path, &schema, "stage_events", events);
        let store = ColumnStore::new(db::open(&path).unwrap(), schema);
        let owners = store.owners().unwrap();
        let (ann, bob) = (owners.index("ann").unwrap(), owners.index("bob").unwrap());
        let t = store.table("stage_events", &["id"]).unwrap();
        let rows = store.owner_rows(&t).unwrap();
        let got: Vec<u32> = (0..t.len()).map(|r| rows.get(r)).collect();
        let none = u32::MAX;
        assert_eq!(got, [ann, bob, none, none, none, ann]);
    }

    #[test]
    fn a_teams_upsert_reads_the_tree_again() {
        let (_dir, path, schema) = three_deals();
        let first = store(&path, &schema);
        let before = dump(&first, "deals", &FIELDS);
        // "east" sorts first: every team index moves.
        let ids = csv(&path, &schema, "teams", "id,name,parent\neast,East,hq\n");
        let next = first.after_upsert("teams", Some(&ids)).unwrap();
        assert_eq!(next.teams().unwrap().len(), 3);
        assert_eq!(
            dump(&next, "deals", &FIELDS),
            dump(&store(&path, &schema), "deals", &FIELDS)
        );
        assert_ne!(dump(&next, "deals", &FIELDS), before);
    }

    /// A database of two teams and three deals, and its path.
    fn three_deals() -> (tempfile::TempDir, std::path::PathBuf, Arc<Schema>) {
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
            "id,team,stage,owner,amount,closed_at\nd1,north,won,ann,10,2026-01-02\n\
             d2,hq,lost,,20,\nd3,north,won,bob,30,2026-02-03\n",
        );
        (dir, path, schema)
    }

    #[test]
    fn an_upsert_shares_the_columns_it_leaves_as_they_were() {
        let (_dir, path, schema) = three_deals();
        let before = store(&path, &schema);
        dump(&before, "deals", &FIELDS);
        let old = before.table("deals", &FIELDS).unwrap();
        let shared = |t: &Table| -> Vec<bool> {
            (FIELDS.iter())
                .map(|f| Arc::ptr_eq(&t.column(f).unwrap(), &old.column(f).unwrap()))
                .collect()
        };
        // d2 sent again as it is: nothing is copied, not even the team index.
        let same = "id,team,stage,owner,amount,closed_at\nd2,hq,lost,,20,\n";
        let ids = csv(&path, &schema, "deals", same);
        let again = before.after_upsert("deals", Some(&ids)).unwrap();
        let t = again.table("deals", &FIELDS).unwrap();
        assert_eq!(shared(&t), [true; 5]);
        assert!(Arc::ptr_eq(
            &again.team_rows(&t).unwrap(),
            &before.team_rows(&old).unwrap()
        ));
        // Only its amount changes: only that column is new.
        let ids = csv(&path, &schema, "deals", &same.replace(",20,", ",21,"));
        let changed = before.after_upsert("deals", Some(&ids)).unwrap();
        let t = changed.table("deals", &FIELDS).unwrap();
        assert_eq!(shared(&t), [true, true, true, false, true]);
        assert_eq!(
            dump(&changed, "deals", &FIELDS),
            dump(&store(&path, &schema), "deals", &FIELDS)
        );
    }

    fn store(path: &std::path::Path, schema: &Arc<Schema>) -> ColumnStore {
        ColumnStore::new(db::open(path).unwrap(), schema.clone())
    }

    /// Rewrites the snapshot of deals, valid for the database as it is now,
    /// with every amount doubled: what a store reads shows whether it used it.
    fn doctor_snapshot(path: &std::path::Path, schema: &Arc<Schema>) {
        writes::wait_for_writes();
        let conn = db::open(path).unwrap();
        let ent = schema.entity("deals").unwrap();
        let tag = snapshot::current_tag(&conn, ent)
            .unwrap()
            .expect("a database id");
        let dir = snapshot::dir_of(&conn).unwrap();
        let (rowids, mut cols) = snapshot::read(&dir, ent, &tag).expect("a valid snapshot");
        let Column::Real(v) = &*cols["amount"] else {
            panic!()
        };
        let doubled = Column::Real(v.iter().map(|x| x * 2.0).collect());
        cols.insert("amount".into(), Arc::new(doubled));
        snapshot::write(&dir, ent, &tag, &rowids, &cols).unwrap();
    }

    fn amounts(store: &ColumnStore) -> Vec<String> {
        let t = store.table("deals", &["amount"]).unwrap();
        let Column::Real(v) = &*t.column("amount").unwrap() else {
            panic!()
        };
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_new_store_reads_the_snapshot_the_first_one_wrote() {
        let (_dir, path, schema) = three_deals();
        let first = dump(&store(&path, &schema), "deals", &FIELDS);
        writes::wait_for_writes();
        assert!(path.with_file_name("crm.db-columns/deals.arrow").exists());
        // The same rows, columns, dictionaries and team index from the file.
        assert_eq!(dump(&store(&path, &schema), "deals", &FIELDS), first);
        doctor_snapshot(&path, &schema);
        assert_eq!(amounts(&store(&path, &schema)), ["20", "40", "60"]);
    }

    #[test]
    fn columns_added_one_after_another_end_up_in_the_snapshot_together() {
        let (_dir, path, schema) = three_deals();
        let s = store(&path, &schema);
        s.table("deals", &["team"]).unwrap();
        writes::wait_for_writes();
        // Each added column waits for the next before the table is written again.
        s.table("deals", &["stage"]).unwrap();
        s.table("deals", &["amount"]).unwrap();
        writes::wait_for_writes();
        let conn = db::open(&path).unwrap();
        let ent = schema.entity("deals").unwrap();
        let tag = snapshot::current_tag(&conn, ent).unwrap().unwrap();
        let dir = snapshot::dir_of(&conn).unwrap();
        let (_, cols) = snapshot::read(&dir, ent, &tag).expect("a valid snapshot");
        let mut names: Vec<&str> = cols.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["amount", "stage", "team"]);
    }

    #[test]
    fn a_snapshot_of_another_generation_is_not_used_and_is_written_again() {
        let (_dir, path, schema) = three_deals();
        amounts(&store(&path, &schema));
        doctor_snapshot(&path, &schema);
        csv(
            &path,
            &schema,
            "deals",
            "id,team,stage,amount\nd4,hq,won,5\n",
        );
        assert_eq!(amounts(&store(&path, &schema)), ["10", "20", "30", "5"]);
        // Written again at the new generation: the next store reads that one.
        doctor_snapshot(&path, &schema);
        assert_eq!(amounts(&store(&path, &schema)), ["20", "40", "60", "10"]);
    }

    #[test]
    fn a_snapshot_of_another_schema_is_not_used() {
        let (dir, path, schema) = three_deals();
        amounts(&store(&path, &schema));
        doctor_snapshot(&path, &schema);
        let text = "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n\
            [entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\n\
            stage = \"text\"\nowner = \"text?\"\namount = \"real\"\nclosed_at = \"time?\"\n\
            note = \"text?\"\n";
        let wider = Arc::new(Schema::from_source(&Source::new("schema.toml", text)).unwrap());
        db::migrate(&mut db::open(&path).unwrap(), &wider).unwrap();
        assert_eq!(amounts(&store(&path, &wider)), ["10", "20", "30"]);
        drop(dir);
    }

    #[test]
    fn a_snapshot_of_another_database_at_the_same_path_is_not_used() {
        let (_dir, path, schema) = three_deals();
        amounts(&store(&path, &schema));
        doctor_snapshot(&path, &schema);
        // A new database with the same records and generations in its place.
        let (_other_dir, other, _) = three_deals();
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
        std::fs::copy(&other, &path).unwrap();
        assert_eq!(amounts(&store(&path, &schema)), ["10", "20", "30"]);
    }

    #[test]
    fn a_damaged_snapshot_is_not_used_and_is_written_again() {
        let (_dir, path, schema) = three_deals();
        let first = dump(&store(&path, &schema), "deals", &FIELDS);
        writes::wait_for_writes();
        let file = path.with_file_name("crm.db-columns/deals.arrow");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.truncate(bytes.len() - 3);
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(dump(&store(&path, &schema), "deals", &FIELDS), first);
        doctor_snapshot(&path, &schema);
        assert_eq!(amounts(&store(&path, &schema)), ["20", "40", "60"]);
    }

    #[test]
    fn an_upsert_writes_the_patched_table_at_its_generation() {
        let (_dir, path, schema) = three_deals();
        let before = store(&path, &schema);
        dump(&before, "deals", &FIELDS);
        let ids = csv(
            &path,
            &schema,
            "deals",
            "id,team,stage,amount\nd2,north,won,25\n",
        );
        let after = before.after_upsert("deals", Some(&ids)).unwrap();
        let want = dump(&after, "deals", &FIELDS);
        // Written on a thread: wait until a new store reads it.
        let started = std::time::Instant::now();
        loop {
            let conn = db::open(&path).unwrap();
            let ent = schema.entity("deals").unwrap();
            let tag = snapshot::current_tag(&conn, ent).unwrap().unwrap();
            if snapshot::read(&snapshot::dir_of(&conn).unwrap(), ent, &tag).is_some() {
                break;
            }
            assert!(
                started.elapsed().as_secs() < 30,
                "the patched table was not written"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(dump(&store(&path, &schema), "deals", &FIELDS), want);
        doctor_snapshot(&path, &schema);
        assert_eq!(amounts(&store(&path, &schema)), ["20", "50", "60"]);
    }
}
