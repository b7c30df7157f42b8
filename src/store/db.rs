//! The SQLite database: opening it, and turning the schema into tables.
//!
//! Tables are plain SQLite tables named after their entity, one typed column
//! per field, with indexes on the team field and every time field. The schema
//! that built them is kept in `_kpi_fields`, so a later schema can be compared
//! with it: additions are applied, destructive changes are refused unless the
//! column or table holds no data.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;
use super::engine_db::{Db, Param};
use super::schema::{Entity, Field, FieldType, Schema};

/// Opens (creating if needed) the database with the settings every connection uses.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)
        .map_err(|e| StoreError::Open(path.display().to_string(), e.to_string()))?;
    configure(&conn)?;
    Ok(conn)
}

/// A private in-memory database, for formula tests.
pub fn open_in_memory() -> Result<Connection, StoreError> {
    let conn = Connection::open_in_memory()?;
    configure(&conn)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _kpi_fields (
            entity TEXT NOT NULL, field TEXT NOT NULL, type TEXT NOT NULL, optional INTEGER NOT NULL,
            PRIMARY KEY (entity, field));
         CREATE TABLE IF NOT EXISTS _kpi_data (
            entity TEXT PRIMARY KEY NOT NULL, generation INTEGER NOT NULL);",
    )?;
    Ok(())
}

/// Marks the records of `entity` as changed, in the writer's transaction:
/// every import and demo write bumps its entity's generation, so another
/// process serving the same database (`kpi serve`) sees that it must read
/// the entity again.
pub fn bump_generation(conn: &Connection, entity: &str) -> Result<(), StoreError> {
    bump_generation_in(&Db::Sqlite(conn), entity)
}

/// [`bump_generation`] on either database.
pub fn bump_generation_in(conn: &Db<'_>, entity: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO _kpi_data (entity, generation) VALUES (?1, 1)
         ON CONFLICT (entity) DO UPDATE SET generation = _kpi_data.generation + 1",
        &[Param::Text(entity)],
    )?;
    Ok(())
}

/// [`generations`] on either database.
pub fn generations_in(
    conn: &Db<'_>,
) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
    Ok(conn
        .rows("SELECT entity, generation FROM _kpi_data", &[])?
        .iter()
        .map(|r| (r.text(0), r.int(1)))
        .collect())
}

/// The generation of every entity that was ever written (see [`bump_generation`]).
pub fn generations(
    conn: &Connection,
) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT entity, generation FROM _kpi_data")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// SQLite's `PRAGMA data_version` of this connection: it changes when another
/// connection commits, so polling it is the cheap test for "did anything change".
pub fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "data_version", |r| r.get(0))?)
}

/// How many times, and how long each, a write waits for a database that
/// another process holds locked (each try waits the connection's busy timeout).
pub const LOCK_TRIES: u32 = 4;

/// Begins an IMMEDIATE transaction (the write lock taken at once), waiting the
/// busy timeout and trying again up to [`LOCK_TRIES`] times while another
/// process holds the lock.
pub fn begin_write(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    let mut tries = 0;
    loop {
        tries += 1;
        // Checked without a borrow that outlives the loop iteration.
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => break,
            Err(e) if is_locked(&e) && tries < LOCK_TRIES => {
                tracing::warn!(
                    "the database is locked by another process; waiting (try {tries} of {LOCK_TRIES})"
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    conn.execute_batch("ROLLBACK")?;
    // The lock was free a moment ago; take it for real (waiting the busy timeout again).
    Ok(conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
}

/// Is this error another connection holding the database locked?
pub fn is_locked(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// One change that brings the database in line with the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    CreateEntity(String),
    AddField(String, String),
    DropField(String, String),
    RetypeField(String, String),
    /// A field made optional, or required (it holds no NULL): only the record of it changes.
    SetOptional(String, String),
    DropEntity(String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::CreateEntity(e) => write!(f, "create entity {e}"),
            Change::AddField(e, x) => write!(f, "add field {e}.{x}"),
            Change::DropField(e, x) => write!(f, "drop empty field {e}.{x}"),
            Change::RetypeField(e, x) => write!(f, "retype empty field {e}.{x}"),
            Change::SetOptional(e, x) => write!(f, "change whether {e}.{x} is optional"),
            Change::DropEntity(e) => write!(f, "drop empty entity {e}"),
        }
    }
}

/// A schema change refused because of the data the database holds: the
/// entity (and field) it concerns, so the refusal can point into schema.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub entity: String,
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A field as the database recorded it when it made the column.
#[derive(Debug, Clone)]
pub struct StoredField {
    pub entity: String,
    pub field: String,
    pub ty: String,
    pub optional: bool,
}

/// What [`plan`] asks of a database: the fields it recorded and whether they
/// hold data. SQLite answers here; PostgreSQL in `store::pg::migrate`.
pub trait SchemaProbe {
    fn stored_fields(&self) -> Result<Vec<StoredField>, StoreError>;
    fn has_rows(&self, entity: &str) -> Result<bool, StoreError>;
    fn field_has_nulls(&self, entity: &str, field: &str) -> Result<bool, StoreError>;
    fn field_has_data(&self, entity: &str, field: &str) -> Result<bool, StoreError>;
}

impl SchemaProbe for Connection {
    fn stored_fields(&self) -> Result<Vec<StoredField>, StoreError> {
        stored_fields(self)
    }
    fn has_rows(&self, entity: &str) -> Result<bool, StoreError> {
        has_rows(self, entity)
    }
    fn field_has_nulls(&self, entity: &str, field: &str) -> Result<bool, StoreError> {
        field_has_nulls(self, entity, field)
    }
    fn field_has_data(&self, entity: &str, field: &str) -> Result<bool, StoreError> {
        field_has_data(self, entity, field)
    }
}

fn stored_fields(conn: &Connection) -> Result<Vec<StoredField>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT entity, field, type, optional FROM _kpi_fields ORDER BY rowid")?;
    let rows = stmt.query_map([], |r| {
        Ok(StoredField {
            entity: r.get(0)?,
            field: r.get(1)?,
            ty: r.get(2)?,
            optional: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn has_rows(conn: &Connection, entity: &str) -> Result<bool, StoreError> {
    let sql = format!("SELECT 1 FROM \"{entity}\" LIMIT 1");
    Ok(conn.query_row(&sql, [], |_| Ok(())).optional()?.is_some())
}

fn field_has_nulls(conn: &Connection, entity: &str, field: &str) -> Result<bool, StoreError> {
    let sql = format!("SELECT 1 FROM \"{entity}\" WHERE \"{field}\" IS NULL LIMIT 1");
    Ok(conn.query_row(&sql, [], |_| Ok(())).optional()?.is_some())
}

fn field_has_data(conn: &Connection, entity: &str, field: &str) -> Result<bool, StoreError> {
    let sql = format!("SELECT 1 FROM \"{entity}\" WHERE \"{field}\" IS NOT NULL LIMIT 1");
    Ok(conn.query_row(&sql, [], |_| Ok(())).optional()?.is_some())
}

/// Compares the schema with the database. Refusals (a destructive change to
/// data that exists) are returned as errors; nothing is changed.
pub fn plan(conn: &dyn SchemaProbe, schema: &Schema) -> Result<Vec<Change>, StoreError> {
    let stored = conn.stored_fields()?;
    let mut changes = Vec::new();
    let mut refusals = Vec::new();
    let known_entities: Vec<&str> = stored.iter().map(|s| s.entity.as_str()).collect();
    for entity in schema.entities.values() {
        if !known_entities.contains(&entity.name.as_str()) {
            changes.push(Change::CreateEntity(entity.name.clone()));
            continue;
        }
        for field in &entity.fields {
            let old = stored
                .iter()
                .find(|s| s.entity == entity.name && s.field == field.name);
            match old {
                None => changes.push(Change::AddField(entity.name.clone(), field.name.clone())),
                Some(old) if old.ty != field.ty.name() => {
                    if conn.field_has_data(&entity.name, &field.name)? {
                        refusals.push(Refusal {
                            entity: entity.name.clone(),
                            field: Some(field.name.clone()),
                            message: format!(
                                "{}.{} holds data of type {}; retyping it to {} is refused",
                                entity.name, field.name, old.ty, field.ty
                            ),
                        });
                    } else {
                        changes.push(Change::RetypeField(entity.name.clone(), field.name.clone()));
                    }
                }
                Some(old) if old.optional && !field.optional => {
                    if conn.field_has_nulls(&entity.name, &field.name)?
                        && conn.has_rows(&entity.name)?
                    {
                        refusals.push(Refusal {
                            entity: entity.name.clone(),
                            field: Some(field.name.clone()),
                            message: format!(
                                "{}.{} holds empty (NULL) values; making it required is refused (fill them first, or keep the field optional with '?')",
                                entity.name, field.name
                            ),
                        });
                    } else {
                        changes.push(Change::SetOptional(entity.name.clone(), field.name.clone()));
                    }
                }
                Some(old) if !old.optional && field.optional => {
                    changes.push(Change::SetOptional(entity.name.clone(), field.name.clone()));
                }
                Some(_) => {}
            }
        }
    }
    for old in &stored {
        match schema.entity(&old.entity) {
            None => {
                if conn.has_rows(&old.entity)? {
                    refusals.push(Refusal {
                        entity: old.entity.clone(),
                        field: None,
                        message: format!(
                            "entity '{}' holds records; removing it from the schema is refused",
                            old.entity
                        ),
                    });
                } else if !changes.contains(&Change::DropEntity(old.entity.clone())) {
                    changes.push(Change::DropEntity(old.entity.clone()));
                }
            }
            Some(e) if e.field(&old.field).is_none() => {
                if conn.field_has_data(&old.entity, &old.field)? {
                    refusals.push(Refusal {
                        entity: old.entity.clone(),
                        field: None,
                        message: format!(
                            "{}.{} holds data; removing the field is refused",
                            old.entity, old.field
                        ),
                    });
                } else {
                    changes.push(Change::DropField(old.entity.clone(), old.field.clone()));
                }
            }
            Some(_) => {}
        }
    }
    if refusals.is_empty() {
        Ok(changes)
    } else {
        Err(StoreError::Schema(refusals))
    }
}

/// Brings the database in line with the schema, in one transaction.
pub fn migrate(conn: &mut Connection, schema: &Schema) -> Result<Vec<Change>, StoreError> {
    // IMMEDIATE: plan() reads before writing; see `import`.
    let tx = begin_write(conn)?;
    let changes = migrate_in(&tx, schema)?;
    tx.commit()?;
    Ok(changes)
}

/// [`migrate`] inside a write transaction the caller commits.
pub fn migrate_in(tx: &Connection, schema: &Schema) -> Result<Vec<Change>, StoreError> {
    let changes = plan(tx, schema)?;
    for change in &changes {
        apply(tx, schema, change)?;
    }
    for entity in schema.entities.values() {
        create_indexes(tx, entity)?;
    }
    Ok(changes)
}

fn apply(conn: &Connection, schema: &Schema, change: &Change) -> Result<(), StoreError> {
    match change {
        Change::CreateEntity(e) => {
            create_entity(conn, schema.entity(e).expect("planned from schema"))
        }
        Change::AddField(e, f) => add_field(
            conn,
            e,
            schema.entity(e).and_then(|x| x.field(f)).expect("planned"),
        ),
        Change::RetypeField(e, f) => {
            drop_field(conn, e, f)?;
            add_field(
                conn,
                e,
                schema.entity(e).and_then(|x| x.field(f)).expect("planned"),
            )
        }
        Change::DropField(e, f) => drop_field(conn, e, f),
        Change::SetOptional(e, f) => record_field(
            conn,
            e,
            schema.entity(e).and_then(|x| x.field(f)).expect("planned"),
        ),
        Change::DropEntity(e) => {
            conn.execute_batch(&format!("DROP TABLE IF EXISTS \"{e}\";"))?;
            conn.execute("DELETE FROM _kpi_fields WHERE entity = ?1", params![e])?;
            Ok(())
        }
    }
}

fn create_entity(conn: &Connection, entity: &Entity) -> Result<(), StoreError> {
    let columns: Vec<String> = entity
        .fields
        .iter()
        .map(|f| match f.name.as_str() {
            "id" => "\"id\" TEXT PRIMARY KEY NOT NULL".to_string(),
            _ => format!("\"{}\" {}", f.name, f.ty.sql_type()),
        })
        .collect();
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS \"{}\" ({});",
        entity.name,
        columns.join(", ")
    ))?;
    for f in &entity.fields {
        record_field(conn, &entity.name, f)?;
    }
    Ok(())
}

fn add_field(conn: &Connection, entity: &str, field: &Field) -> Result<(), StoreError> {
    conn.execute_batch(&format!(
        "ALTER TABLE \"{entity}\" ADD COLUMN \"{}\" {};",
        field.name,
        field.ty.sql_type()
    ))?;
    record_field(conn, entity, field)
}

fn drop_field(conn: &Connection, entity: &str, field: &str) -> Result<(), StoreError> {
    conn.execute_batch(&format!("DROP INDEX IF EXISTS \"idx_{entity}_{field}\";"))?;
    conn.execute_batch(&format!(
        "ALTER TABLE \"{entity}\" DROP COLUMN \"{field}\";"
    ))?;
    conn.execute(
        "DELETE FROM _kpi_fields WHERE entity = ?1 AND field = ?2",
        params![entity, field],
    )?;
    Ok(())
}

fn record_field(conn: &Connection, entity: &str, field: &Field) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO _kpi_fields (entity, field, type, optional) VALUES (?1, ?2, ?3, ?4)",
        params![entity, field.name, field.ty.name(), field.optional],
    )?;
    Ok(())
}

/// The fields with an index of their own: the team field and every time field.
fn indexed_fields(entity: &Entity) -> impl Iterator<Item = &Field> {
    entity.fields.iter().filter(|f| {
        f.ty == FieldType::Time || Some(f.name.as_str()) == entity.team_field.as_deref()
    })
}

/// Drops the team and time indexes of `entity` (a large import makes them again at its end).
pub(crate) fn drop_indexes(conn: &Connection, entity: &Entity) -> Result<(), StoreError> {
    for f in indexed_fields(entity) {
        conn.execute_batch(&format!(
            "DROP INDEX IF EXISTS \"idx_{e}_{f}\";",
            e = entity.name,
            f = f.name
        ))?;
    }
    Ok(())
}

pub(crate) fn create_indexes(conn: &Connection, entity: &Entity) -> Result<(), StoreError> {
    for f in indexed_fields(entity) {
        conn.execute_batch(&format!(
            "CREATE INDEX IF NOT EXISTS \"idx_{e}_{f}\" ON \"{e}\" (\"{f}\");",
            e = entity.name,
            f = f.name
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_doc::Source;

    fn schema(extra: &str) -> Schema {
        let text = format!(
            "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n[entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\namount = \"real\"\n{extra}"
        );
        Schema::from_source(&Source::new("schema.toml", text)).unwrap()
    }

    #[test]
    fn creates_then_adds_fields() {
        let mut conn = open_in_memory().unwrap();
        let first = migrate(&mut conn, &schema("")).unwrap();
        assert!(first.contains(&Change::CreateEntity("deals".into())));
        let second = migrate(&mut conn, &schema("closed_at = \"time?\"\n")).unwrap();
        assert_eq!(
            second,
            vec![Change::AddField("deals".into(), "closed_at".into())]
        );
        conn.execute(
            "INSERT INTO deals (id, team, amount, closed_at) VALUES ('d', 't', 1.0, 5)",
            [],
        )
        .unwrap();
        assert!(
            migrate(&mut conn, &schema("closed_at = \"time?\"\n"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn refuses_destructive_changes_to_data_and_changes_nothing() {
        let mut conn = open_in_memory().unwrap();
        migrate(&mut conn, &schema("note = \"text?\"\n")).unwrap();
        conn.execute(
            "INSERT INTO deals (id, team, amount) VALUES ('d', 't', 1.0)",
            [],
        )
        .unwrap();
        // `note` is empty: dropping it is fine. `amount` holds data: retyping is refused.
        let text = "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n[entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\namount = \"text\"\n";
        let s = Schema::from_source(&Source::new("schema.toml", text)).unwrap();
        let err = migrate(&mut conn, &s).unwrap_err().to_string();
        assert!(err.contains("deals.amount holds data"), "{err}");
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM _kpi_fields WHERE entity='deals' AND field='note'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "nothing changed");
    }
}
