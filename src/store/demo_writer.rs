//! Bulk writing of generated records (the demo CRM) in one transaction, with
//! one prepared statement per entity.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction};

use super::schema::Schema;
use super::{StoreError, Value};
use crate::demo::RecordSink;

/// Writes named records into a transaction; `commit` makes them visible.
pub struct BulkWriter<'c> {
    tx: Transaction<'c>,
    schema: &'c Schema,
    /// entity → (field names in schema order, SQL)
    plans: HashMap<String, (Vec<String>, String)>,
    row: Vec<Value>,
}

impl<'c> BulkWriter<'c> {
    pub fn new(conn: &'c mut Connection, schema: &'c Schema) -> Result<Self, StoreError> {
        Ok(BulkWriter {
            tx: conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
            schema,
            plans: HashMap::new(),
            row: Vec::new(),
        })
    }

    /// Deletes every record of every entity (the demo replaces what it made before).
    pub fn clear_all(&mut self) -> Result<(), StoreError> {
        for e in self.schema.entities.keys() {
            self.tx.execute_batch(&format!("DELETE FROM \"{e}\";"))?;
        }
        Ok(())
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        ensure_meta(&self.tx)?;
        self.tx.execute(
            "INSERT OR REPLACE INTO _kpi_meta (key, value) VALUES (?1, ?2)",
            [key, value],
        )?;
        Ok(())
    }

    pub fn commit(self) -> Result<(), StoreError> {
        self.tx.commit()?;
        Ok(())
    }
}

/// Replaces every record with the demo CRM, in one transaction (what `kpi demo` and
/// `kpi serve --demo` write). Returns the count written per entity.
pub fn write_demo(
    conn: &mut Connection,
    schema: &Schema,
    cal: &crate::period::Calendar,
    opts: &crate::demo::DemoOptions,
) -> Result<Vec<(&'static str, u64)>, StoreError> {
    let mut writer = BulkWriter::new(conn, schema)?;
    writer.clear_all()?;
    let counts = crate::demo::generate(opts, cal, &mut writer)?;
    writer.set_meta("demo", &format!("scale={} seed={}", opts.scale, opts.seed))?;
    writer.commit()?;
    Ok(counts)
}

fn ensure_meta(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _kpi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )?;
    Ok(())
}

/// A value of the `_kpi_meta` table.
pub fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    ensure_meta(conn)?;
    Ok(conn
        .query_row("SELECT value FROM _kpi_meta WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Does any entity table hold a record?
pub fn has_records(conn: &Connection, schema: &Schema) -> Result<bool, StoreError> {
    for e in schema.entities.keys() {
        let found = conn
            .query_row(&format!("SELECT 1 FROM \"{e}\" LIMIT 1"), [], |_| Ok(()))
            .optional()?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// How many records each entity of the schema holds (a missing table holds none).
pub fn record_counts(conn: &Connection, schema: &Schema) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out = Vec::with_capacity(schema.entities.len());
    for e in schema.entities.keys() {
        let n: Option<i64> = conn
            .query_row(&format!("SELECT count(*) FROM \"{e}\""), [], |r| r.get(0))
            .optional()
            .or_else(|err| match err {
                rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("no such table") => {
                    Ok(None)
                }
                other => Err(other),
            })?;
        out.push((e.clone(), n.unwrap_or(0).max(0) as u64));
    }
    Ok(out)
}

impl RecordSink for BulkWriter<'_> {
    type Error = StoreError;

    fn write(&mut self, entity: &str, record: &[(&str, Value)]) -> Result<(), StoreError> {
        if !self.plans.contains_key(entity) {
            let ent = self.schema.require(entity)?;
            let names: Vec<String> = ent.fields.iter().map(|f| f.name.clone()).collect();
            let cols: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "INSERT OR REPLACE INTO \"{entity}\" ({}) VALUES ({})",
                cols.join(", "),
                marks.join(", ")
            );
            self.plans.insert(entity.to_string(), (names, sql));
        }
        let (names, sql) = &self.plans[entity];
        self.row.clear();
        self.row.resize(names.len(), Value::Null);
        for (name, value) in record {
            let i = names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| self.schema.entities[entity].unknown_field(name))?;
            self.row[i] = value.clone();
        }
        let mut stmt = self.tx.prepare_cached(sql)?;
        stmt.execute(rusqlite::params_from_iter(
            self.row.iter().map(super::import::SqlValue),
        ))?;
        Ok(())
    }
}
