//! The writing side of an import, on a thread of its own while the caller's
//! thread reads and checks the next rows: it holds the transaction, writes
//! each entity's rows by multi-row upserts, drops and remakes the indexes of
//! a large import, checks the team tree, and commits or rolls back.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use rusqlite::{Connection, Transaction, types::ToSqlOutput};

use super::super::schema::Entity;
use super::super::{StoreError, Value};
use super::checks::{self, Known};
use super::{BATCH_PARAMS, Errors, FIRST_CHECKPOINT, teams};

/// What the reading thread sends.
pub(super) enum Message {
    /// Checked rows of the `k`th entity, row after row.
    Rows(usize, Vec<Value>),
    /// Every row was sent and none was bad.
    End(End),
}

pub(super) struct End {
    /// A teams import's id → line, for the team tree check.
    pub(super) team_lines: Option<HashMap<String, String>>,
    /// Commit (false for a dry run: everything is checked, nothing kept).
    pub(super) commit: bool,
}

/// Runs one import's transaction: tells `ready` what the database knows,
/// writes what `rows` brings, and at [`Message::End`] finishes, checks the
/// team tree and commits. Returns the team tree's problems (then nothing is
/// committed). If the reader hangs up before the end, nothing is written.
pub(super) fn run(
    conn: &mut Connection,
    entities: &[&Entity],
    rows: Receiver<Message>,
    ready: Sender<Known>,
) -> Result<Errors, StoreError> {
    // IMMEDIATE: the write lock is taken (waiting on busy_timeout) before the first
    // read, so a write committed meanwhile by another connection (the alert
    // scheduler) cannot fail the upgrade from read to write with SQLITE_BUSY.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let started = Instant::now();
    if ready.send(checks::known(&tx)?).is_err() {
        return Ok(Errors::default());
    }
    let mut writers = entities
        .iter()
        .map(|e| Writer::new(&tx, e))
        .collect::<Result<Vec<_>, _>>()?;
    let end = loop {
        match rows.recv() {
            Ok(Message::Rows(k, values)) => writers[k].rows(values)?,
            Ok(Message::End(end)) => break end,
            Err(_) => return Ok(Errors::default()),
        }
    };
    for w in &mut writers {
        w.finish()?;
    }
    let mut errors = Errors::default();
    if let Some(lines) = &end.team_lines {
        teams::check_team_tree(&tx, lines, &mut errors)?;
    }
    if !errors.is_empty() || !end.commit {
        return Ok(errors);
    }
    let written_in = started.elapsed();
    // Another process serving this database sees the change by these counters.
    for w in &writers {
        super::super::db::bump_generation(&tx, &w.entity.name)?;
    }
    let counts: Vec<(String, usize)> = writers
        .into_iter()
        .map(|w| (w.entity.name.clone(), w.rows))
        .collect();
    tx.commit()?;
    for (entity, rows) in counts {
        tracing::debug!(%entity, rows, write_ms = written_in.as_millis() as u64, commit_ms = (started.elapsed() - written_in).as_millis() as u64, "imported");
    }
    Ok(errors)
}

/// A prepared upsert for one entity. Rows are written [`Writer::per_batch`]
/// at a time by one multi-row upsert (SQLite applies its rows in order, so a
/// repeated id still ends with its last row).
struct Writer<'t> {
    /// The upsert of one row, and of `per_batch` rows.
    one: rusqlite::Statement<'t>,
    batch: rusqlite::Statement<'t>,
    per_batch: usize,
    /// Values of the rows not written yet, row after row.
    pending: Vec<Value>,
    entity: &'t Entity,
    /// Rows written (counting repeats).
    rows: usize,
    /// About how many rows the table held before (its largest rowid).
    rows_before: i64,
    /// The count written at which to consider dropping the indexes again.
    next_checkpoint: usize,
    /// The team and time indexes were dropped, to be made again at the end.
    indexes_dropped: bool,
    tx: &'t Transaction<'t>,
}

impl<'t> Writer<'t> {
    fn new(tx: &'t Transaction<'t>, entity: &'t Entity) -> Result<Self, StoreError> {
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
        let rows_before: i64 = tx.query_row(
            &format!("SELECT coalesce(max(rowid), 0) FROM \"{}\"", entity.name),
            [],
            |r| r.get(0),
        )?;
        Ok(Writer {
            one: tx.prepare(&sql(1))?,
            batch: tx.prepare(&sql(per_batch))?,
            per_batch,
            pending: Vec::with_capacity(per_batch * cols.len()),
            entity,
            rows: 0,
            rows_before,
            next_checkpoint: FIRST_CHECKPOINT,
            indexes_dropped: false,
            tx,
        })
    }

    /// Writes `values` (whole rows, row after row), a batch at a time; the
    /// rows short of a batch wait for the next call or [`Writer::finish`].
    fn rows(&mut self, values: Vec<Value>) -> Result<(), StoreError> {
        let width = self.entity.fields.len();
        let batch = self.per_batch * width;
        let mut values = values.into_iter();
        while values.len() > 0 {
            let room = batch - self.pending.len();
            self.pending.extend(values.by_ref().take(room));
            if self.pending.len() < batch {
                break;
            }
            self.batch.execute(rusqlite::params_from_iter(
                self.pending.iter().map(SqlValue),
            ))?;
            self.pending.clear();
            self.rows += self.per_batch;
            if self.rows >= self.next_checkpoint {
                self.checkpoint()?;
            }
        }
        Ok(())
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

    /// Writes what is pending, one row at a time, and makes the indexes
    /// again if they were dropped.
    fn finish(&mut self) -> Result<(), StoreError> {
        let width = self.entity.fields.len();
        for row in self.pending.chunks(width) {
            self.one
                .execute(rusqlite::params_from_iter(row.iter().map(SqlValue)))?;
            self.rows += 1;
        }
        self.pending.clear();
        if self.indexes_dropped {
            let started = Instant::now();
            super::super::db::create_indexes(self.tx, self.entity)?;
            self.indexes_dropped = false;
            tracing::debug!(entity = %self.entity.name, ms = started.elapsed().as_millis() as u64, "made the indexes again");
        }
        Ok(())
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
