//! Writing records into PostgreSQL: imports and the demo.
//!
//! An import is checked by the one import of the engine (`store::import`:
//! every cell, the team and owner checks, the team tree, repeated ids, the
//! same `FILE:LINE: field …` messages) run against a private staging SQLite
//! database that holds the database's teams and people. Only when every row
//! passed are the staged rows sent with COPY into a temporary table and
//! upserted by id, every entity of the import in one PostgreSQL transaction
//! that also bumps their record generations: all or nothing.

use std::io::Write;
use std::path::PathBuf;

use postgres::Client;
use rusqlite::types::ValueRef;

use super::sql;
use crate::store::StoreError;
use crate::store::schema::{Entity, FieldType, OWNERS, Schema, TEAMS};

/// A private SQLite database in the temp directory, removed when dropped.
pub struct Staging {
    pub conn: rusqlite::Connection,
    path: PathBuf,
}

impl Drop for Staging {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

/// A staging database with `schema`'s tables, holding the teams and people
/// of the PostgreSQL database (what the import checks its rows against).
pub fn stage(client: &mut Client, schema: &Schema) -> Result<Staging, StoreError> {
    stage_with(client, schema, &[])
}

/// [`stage`], with the records of the entities `also` copied down too (what
/// a mapping's lookups read).
pub fn stage_with(
    client: &mut Client,
    schema: &Schema,
    also: &[&str],
) -> Result<Staging, StoreError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("kpi-stage-{}-{n}.db", std::process::id()));
    let mut conn = crate::store::db::open(&path)?;
    let staging = {
        crate::store::db::migrate(&mut conn, schema)?;
        Staging { conn, path }
    };
    let mut names = vec![TEAMS, OWNERS];
    names.extend(also.iter().filter(|e| **e != TEAMS && **e != OWNERS));
    for name in names {
        if let Some(entity) = schema.entity(name) {
            copy_down(client, &staging.conn, entity)?;
        }
    }
    Ok(staging)
}

/// Copies every row of a (small) entity from PostgreSQL into the staging database.
fn copy_down(
    client: &mut Client,
    conn: &rusqlite::Connection,
    entity: &Entity,
) -> Result<(), StoreError> {
    let rows = client.query(&sql::select_all(entity), &[])?;
    let mut insert = conn.prepare(&sql::sqlite_insert(entity))?;
    for row in &rows {
        let values: Vec<rusqlite::types::Value> = entity
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| match f.ty {
                FieldType::Text => row.get::<_, Option<String>>(i).into(),
                FieldType::Real => row.get::<_, Option<f64>>(i).into(),
                _ => row.get::<_, Option<i64>>(i).into(),
            })
            .collect();
        insert.execute(rusqlite::params_from_iter(values))?;
    }
    Ok(())
}

/// Sends the staged rows of `entities` to PostgreSQL in one transaction
/// (with `replace`, each table is emptied first: the demo), bumping each
/// entity's record generation; `meta` is written in the same transaction.
pub fn publish(
    client: &mut Client,
    staging: &Staging,
    schema: &Schema,
    entities: &[&str],
    replace: bool,
    meta: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.batch_execute(sql::WRITE_LOCK)?;
    let mut bulk = Vec::new();
    for name in entities {
        let entity = schema.require(name)?;
        if replace {
            tx.batch_execute(&sql::truncate(entity))?;
        }
        tx.batch_execute(&sql::create_stage(entity))?;
        {
            let mut sink =
                std::io::BufWriter::with_capacity(1 << 16, tx.copy_in(&sql::copy_in(entity))?);
            let mut stmt = staging.conn.prepare(&sql::sqlite_select_all(entity))?;
            let mut rows = stmt.query([])?;
            let mut line = String::new();
            while let Some(row) = rows.next()? {
                line.clear();
                for (i, f) in entity.fields.iter().enumerate() {
                    if i > 0 {
                        line.push('\t');
                    }
                    copy_cell(&mut line, f.ty, row.get_ref(i)?);
                }
                line.push('\n');
                sink.write_all(line.as_bytes())
                    .map_err(|e| StoreError::Postgres(format!("COPY {name}: {e}")))?;
            }
            let writer = sink
                .into_inner()
                .map_err(|e| StoreError::Postgres(format!("COPY {name}: {e}")))?;
            writer.finish()?;
        }
        let written = tx.execute(&sql::upsert_staged(entity), &[])?;
        tx.execute(sql::BUMP_GENERATION, &[name])?;
        if replace || written >= ANALYZE_AFTER {
            bulk.push(entity);
        }
    }
    if let Some((key, value)) = meta {
        tx.execute(sql::SET_META, &[&key, &value])?;
    }
    tx.commit()?;
    // Fresh statistics for the planner: until autovacuum gets to a table just
    // filled, a shape over it can be planned as if it were empty (measured: a
    // scorecard over 92k new deals ran for minutes instead of milliseconds).
    for entity in bulk {
        client.batch_execute(&sql::analyze(entity))?;
    }
    Ok(())
}

/// Tables that took at least this many rows in one write are analyzed at once.
const ANALYZE_AFTER: u64 = 10_000;

/// One cell in COPY's text format (`\N` for NULL; times as UTC instants).
fn copy_cell(out: &mut String, ty: FieldType, v: ValueRef<'_>) {
    use std::fmt::Write as _;
    match (ty, v) {
        (_, ValueRef::Null) => out.push_str("\\N"),
        (FieldType::Time, ValueRef::Integer(ms)) => {
            match chrono::DateTime::from_timestamp_millis(ms) {
                Some(t) => {
                    let _ = write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S%.3f+00"));
                }
                None => out.push_str("\\N"),
            }
        }
        (FieldType::Bool, ValueRef::Integer(b)) => out.push(if b != 0 { 't' } else { 'f' }),
        (_, ValueRef::Integer(i)) => {
            let _ = write!(out, "{i}");
        }
        (_, ValueRef::Real(f)) => {
            let _ = write!(out, "{f:?}");
        }
        (_, ValueRef::Text(t) | ValueRef::Blob(t)) => {
            for c in String::from_utf8_lossy(t).chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}
