//! The writer of one entity inside an import's transaction: multi-row
//! upserts, the team check that needs the database, the id bookkeeping
//! (written, repeated ids) and dropping/remaking indexes for large imports.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, Transaction, types::ToSqlOutput};

use super::super::schema::{Entity, OWNERS, OwnerLink, TEAMS};
use super::super::{StoreError, Value};
use super::{BATCH_PARAMS, Errors, FIRST_CHECKPOINT, MAX_LISTED_IDS};
use crate::diag::hint;

/// A prepared upsert for one entity, with the checks that need the database
/// (the team must exist) and the bookkeeping of a teams import. Rows are
/// written [`Writer::per_batch`] at a time by one multi-row upsert (SQLite
/// applies its rows in order, so a repeated id still ends with its last row).
pub(super) struct Writer<'t> {
    /// The upsert of one row, and of `per_batch` rows.
    one: rusqlite::Statement<'t>,
    batch: rusqlite::Statement<'t>,
    per_batch: usize,
    /// Values of the rows not written yet, row after row.
    pending: Vec<Value>,
    pub(super) entity: &'t Entity,
    team_index: Option<usize>,
    known_teams: HashSet<String>,
    /// The field naming the record's person, and the people known, when the
    /// `owners` table holds any (CRMs often export deals before users: then
    /// no owner is checked).
    owner_check: Option<(usize, HashSet<String>)>,
    /// For a teams import: id → line, to report cycles and bad parents.
    pub(super) team_lines: HashMap<String, String>,
    /// Distinct ids written.
    written: usize,
    /// Every id written so far, to count the rows that repeat one.
    seen: rustc_hash::FxHashSet<Box<str>>,
    duplicates: usize,
    /// Rows written (counting repeats).
    rows: usize,
    /// The ids written, until there are more than [`MAX_LISTED_IDS`].
    ids: Option<Vec<String>>,
    /// About how many rows the table held before (its largest rowid).
    rows_before: i64,
    /// The count written at which to consider dropping the indexes again.
    next_checkpoint: usize,
    /// The team and time indexes were dropped, to be made again at the end.
    indexes_dropped: bool,
    tx: &'t Transaction<'t>,
}

impl<'t> Writer<'t> {
    pub(super) fn new(tx: &'t Transaction<'t>, entity: &'t Entity) -> Result<Self, StoreError> {
        let cols: Vec<String> = entity
            .fields
            .iter()
            .map(|f| format!("\"{}\"", f.name))
            .collect();
        let updates: Vec<String> = cols
            .iter()
            .skip(1)
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let row = format!("({})", vec!["?"; cols.len()].join(", "));
        let sql = |rows: usize| {
            format!(
                "INSERT INTO \"{}\" ({}) VALUES {} ON CONFLICT(\"id\") DO UPDATE SET {}",
                entity.name,
                cols.join(", "),
                vec![row.as_str(); rows].join(", "),
                if updates.is_empty() {
                    "\"id\" = excluded.\"id\"".to_string()
                } else {
                    updates.join(", ")
                }
            )
        };
        let per_batch = (BATCH_PARAMS / cols.len()).max(1);
        let one = tx.prepare(&sql(1))?;
        let batch = tx.prepare(&sql(per_batch))?;
        let team_index = entity
            .team_field
            .as_deref()
            .and_then(|t| entity.field_index(t));
        let known_teams = load_team_ids(tx)?;
        let owner_check = match &entity.owner {
            Some(OwnerLink::Field(f)) => match (entity.field_index(f), load_owner_ids(tx)?) {
                (Some(i), Some(ids)) if !ids.is_empty() => Some((i, ids)),
                _ => None,
            },
            _ => None,
        };
        let rows_before: i64 = tx.query_row(
            &format!("SELECT coalesce(max(rowid), 0) FROM \"{}\"", entity.name),
            [],
            |r| r.get(0),
        )?;
        Ok(Writer {
            one,
            batch,
            per_batch,
            pending: Vec::with_capacity(per_batch * cols.len()),
            entity,
            team_index,
            known_teams,
            owner_check,
            team_lines: HashMap::new(),
            written: 0,
            seen: Default::default(),
            duplicates: 0,
            rows: 0,
            ids: Some(Vec::new()),
            rows_before,
            next_checkpoint: FIRST_CHECKPOINT,
            indexes_dropped: false,
            tx,
        })
    }

    /// A large import (at least half as many rows as the table had) writes
    /// faster without the team and time indexes: they are dropped inside the
    /// transaction and made again, sorted once, by [`Writer::finish`] (a failed
    /// import rolls the drop back with everything else).
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.next_checkpoint = self.next_checkpoint.saturating_mul(2);
        if !self.indexes_dropped && self.rows as i64 * 2 >= self.rows_before {
            super::super::db::drop_indexes(self.tx, self.entity)?;
            self.indexes_dropped = true;
        }
        Ok(())
    }

    /// Writes the rows not written yet, one at a time.
    fn flush(&mut self) -> Result<(), StoreError> {
        let width = self.entity.fields.len();
        for row in self.pending.chunks(width) {
            self.one
                .execute(rusqlite::params_from_iter(row.iter().map(SqlValue)))?;
        }
        self.pending.clear();
        Ok(())
    }

    /// Writes what is pending and makes the indexes again if they were dropped.
    pub(super) fn finish(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        if self.indexes_dropped {
            let started = std::time::Instant::now();
            super::super::db::create_indexes(self.tx, self.entity)?;
            self.indexes_dropped = false;
            tracing::debug!(entity = %self.entity.name, ms = started.elapsed().as_millis() as u64, "made the indexes again");
        }
        Ok(())
    }

    /// Checks what only the database knows, then writes (unless `dry`).
    /// `at` names the row in messages.
    pub(super) fn row(
        &mut self,
        at: &dyn Fn() -> String,
        values: Vec<Value>,
        errors: &mut Errors,
        dry: bool,
    ) -> Result<(), StoreError> {
        if let Some(i) = self.team_index
            && let Value::Text(team) = &values[i]
            && !self.known_teams.contains(team)
        {
            let h = hint(team, self.known_teams.iter().map(String::as_str));
            errors.push(format!(
                "{}: field '{}': unknown team {team:?}{h} (import teams first)",
                at(),
                self.entity.fields[i].name
            ));
            return Ok(());
        }
        if let Some((i, owners)) = &self.owner_check
            && let Value::Text(owner) = &values[*i]
            && !owners.contains(owner)
        {
            let h = hint(owner, owners.iter().map(String::as_str));
            errors.push(format!(
                "{}: field '{}': unknown owner {owner:?}{h} (import owners first, or leave it empty)",
                at(),
                self.entity.fields[*i].name
            ));
            return Ok(());
        }
        if self.entity.name == TEAMS
            && let Value::Text(id) = &values[0]
        {
            self.team_lines.insert(id.clone(), at());
        }
        if dry {
            return Ok(());
        }
        let first = match &values[0] {
            Value::Text(id) => {
                !self.seen.contains(id.as_str()) && self.seen.insert(id.as_str().into())
            }
            _ => true,
        };
        if !first {
            self.duplicates += 1;
        } else {
            self.written += 1;
            if let Some(ids) = &mut self.ids {
                match &values[0] {
                    Value::Text(id) if ids.len() < MAX_LISTED_IDS => ids.push(id.clone()),
                    _ => self.ids = None,
                }
            }
        }
        self.pending.extend(values);
        self.rows += 1;
        if self.pending.len() == self.per_batch * self.entity.fields.len() {
            self.batch.execute(rusqlite::params_from_iter(
                self.pending.iter().map(SqlValue),
            ))?;
            self.pending.clear();
        }
        if self.rows >= self.next_checkpoint {
            self.checkpoint()?;
        }
        Ok(())
    }
}

impl Writer<'_> {
    /// What was written.
    pub(super) fn report(mut self) -> super::ImportReport {
        super::ImportReport {
            entity: self.entity.name.clone(),
            written: self.written,
            duplicates: self.duplicates,
            ids: self.ids.take(),
        }
    }
}

pub(crate) struct SqlValue<'a>(pub(crate) &'a Value);

impl rusqlite::ToSql for SqlValue<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::ValueRef;
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Null => ValueRef::Null,
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Int(i) | Value::Time(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
        }))
    }
}

/// The ids of the `owners` table; None when the schema has no such table.
fn load_owner_ids(conn: &Connection) -> Result<Option<HashSet<String>>, StoreError> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [OWNERS],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    let mut stmt = conn.prepare(&format!("SELECT id FROM \"{OWNERS}\""))?;
    let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(Some(ids.collect::<Result<_, _>>()?))
}

fn load_team_ids(conn: &Connection) -> Result<HashSet<String>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT id FROM \"{TEAMS}\""))?;
    let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}
