//! Importing records: CSV and NDJSON (or a JSON array from the API) into one
//! entity, upserted by `id`, in one transaction.
//!
//! Every row is checked against the schema; a bad row is reported as
//! `FILE:LINE: field 'amount': expected a real number, got "abc"` and, if any
//! row is bad, the transaction is rolled back: nothing of that import is
//! written. Rows are validated and written in one streaming pass, so a large
//! file is never held in memory.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use rusqlite::{Connection, Transaction, types::ToSqlOutput};

use super::schema::{Entity, Field, FieldType, Schema, TEAMS};
use super::{StoreError, Value};
use crate::diag::hint;
use crate::period::Calendar;

/// At most this many bad rows are listed; the rest are counted.
const MAX_REPORTED: usize = 100;

/// At most this many parameters in one multi-row upsert.
const BATCH_PARAMS: usize = 960;

/// After this many rows (then twice as many, and so on) an import checks
/// whether it is large enough to write without the secondary indexes.
const FIRST_CHECKPOINT: usize = 16_384;

/// The page cache of an importing connection (KiB): big enough that a large
/// import is not spilled to the WAL mid-transaction.
const IMPORT_CACHE_KIB: i64 = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// By extension: .csv, .jsonl, .ndjson.
    pub fn from_path(path: &str) -> Option<Format> {
        let ext = path.rsplit('.').next()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Ndjson),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            _ => None,
        }
    }
}

/// How one import went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub entity: String,
    pub written: usize,
    /// The ids written, in order, when there were at most [`MAX_LISTED_IDS`]
    /// (a server patches its columns with just these rows); None beyond.
    pub ids: Option<Vec<String>>,
}

/// Up to this many written ids are listed in an [`ImportReport`].
pub const MAX_LISTED_IDS: usize = 100_000;

/// Turns text and JSON input into typed values for one entity.
pub struct RowReader<'a> {
    pub entity: &'a Entity,
    pub cal: &'a Calendar,
}

impl RowReader<'_> {
    /// Reads one text cell (CSV). An empty cell is NULL.
    pub fn text_value(&self, field: &Field, raw: &str) -> Result<Value, String> {
        if raw.is_empty() {
            return self.null_value(field);
        }
        let got = || format!("got {raw:?}");
        match field.ty {
            FieldType::Text => self.text(field, raw),
            FieldType::Integer => match raw.trim().parse::<i64>() {
                Ok(i) if i != i64::MIN => Ok(Value::Int(i)),
                _ => Err(format!("expected an integer, {}", got())),
            },
            FieldType::Real => match raw.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Value::Real(f)),
                _ => Err(format!("expected a real number, {}", got())),
            },
            FieldType::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Value::Bool(true)),
                "false" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("expected true/false/1/0, {}", got())),
            },
            FieldType::Time => self.time(raw),
        }
    }

    /// Reads one JSON value (NDJSON, API bodies). `null` is NULL.
    pub fn json_value(&self, field: &Field, raw: &serde_json::Value) -> Result<Value, String> {
        use serde_json::Value as J;
        match (field.ty, raw) {
            (_, J::Null) => self.null_value(field),
            (FieldType::Text, J::String(s)) => self.text(field, s),
            (FieldType::Integer, J::Number(n)) if n.as_i64().is_some_and(|i| i != i64::MIN) => {
                Ok(Value::Int(n.as_i64().unwrap_or_default()))
            }
            (FieldType::Real, J::Number(n)) if n.as_f64().is_some() => {
                Ok(Value::Real(n.as_f64().unwrap_or_default()))
            }
            (FieldType::Bool, J::Bool(b)) => Ok(Value::Bool(*b)),
            (FieldType::Bool, J::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(Value::Bool(n.as_i64() == Some(1)))
            }
            (FieldType::Time, J::String(s)) => self.time(s),
            (ty, other) => Err(format!("expected {}, got {other}", expected(ty))),
        }
    }

    fn null_value(&self, field: &Field) -> Result<Value, String> {
        if field.optional {
            Ok(Value::Null)
        } else {
            Err("a value is required, got nothing".to_string())
        }
    }

    fn text(&self, field: &Field, s: &str) -> Result<Value, String> {
        match &field.values {
            Some(allowed) if !allowed.iter().any(|a| a == s) => {
                Err(format!("expected one of {}, got {s:?}", allowed.join(", ")))
            }
            _ => Ok(Value::Text(s.to_string())),
        }
    }

    fn time(&self, s: &str) -> Result<Value, String> {
        self.cal.parse_time(s.trim()).map(Value::Time).map_err(|_| {
            format!("expected a time (2026-03-31T23:30:00+08:00, YYYY-MM-DD HH:MM:SS or YYYY-MM-DD), got {s:?}")
        })
    }
}

fn expected(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Text => "a string",
        FieldType::Integer => "an integer",
        FieldType::Real => "a real number",
        FieldType::Bool => "true/false/1/0",
        FieldType::Time => "a time string",
    }
}

/// Collects bad rows, keeping the first few in full.
#[derive(Default)]
struct Errors {
    listed: Vec<String>,
    more: usize,
}

impl Errors {
    fn push(&mut self, message: String) {
        if self.listed.len() < MAX_REPORTED {
            self.listed.push(message);
        } else {
            self.more += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    fn into_error(mut self) -> StoreError {
        if self.more > 0 {
            self.listed
                .push(format!("... and {} more bad rows", self.more));
        }
        StoreError::Import(self.listed)
    }
}

/// A prepared upsert for one entity, with the checks that need the database
/// (the team must exist) and the bookkeeping of a teams import. Rows are
/// written [`Writer::per_batch`] at a time by one multi-row upsert (SQLite
/// applies its rows in order, so a repeated id still ends with its last row).
struct Writer<'t> {
    /// The upsert of one row, and of `per_batch` rows.
    one: rusqlite::Statement<'t>,
    batch: rusqlite::Statement<'t>,
    per_batch: usize,
    /// Values of the rows not written yet, row after row.
    pending: Vec<Value>,
    entity: &'t Entity,
    team_index: Option<usize>,
    known_teams: HashSet<String>,
    /// For a teams import: id → line, to report cycles and bad parents.
    team_lines: HashMap<String, String>,
    written: usize,
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
        let one = tx.prepare(&sql(1))?;
        let batch = tx.prepare(&sql(per_batch))?;
        let team_index = entity
            .team_field
            .as_deref()
            .and_then(|t| entity.field_index(t));
        let known_teams = load_team_ids(tx)?;
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
            team_lines: HashMap::new(),
            written: 0,
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
        if !self.indexes_dropped && self.written as i64 * 2 >= self.rows_before {
            super::db::drop_indexes(self.tx, self.entity)?;
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
    fn finish(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        if self.indexes_dropped {
            let started = std::time::Instant::now();
            super::db::create_indexes(self.tx, self.entity)?;
            self.indexes_dropped = false;
            tracing::debug!(entity = %self.entity.name, ms = started.elapsed().as_millis() as u64, "made the indexes again");
        }
        Ok(())
    }

    /// Checks what only the database knows, then writes (unless `dry`).
    /// `at` names the row in messages.
    fn row(
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
        if self.entity.name == TEAMS
            && let Value::Text(id) = &values[0]
        {
            self.team_lines.insert(id.clone(), at());
        }
        if dry {
            return Ok(());
        }
        if let Some(ids) = &mut self.ids {
            match &values[0] {
                Value::Text(id) if ids.len() < MAX_LISTED_IDS => ids.push(id.clone()),
                _ => self.ids = None,
            }
        }
        self.pending.extend(values);
        self.written += 1;
        if self.pending.len() == self.per_batch * self.entity.fields.len() {
            self.batch.execute(rusqlite::params_from_iter(
                self.pending.iter().map(SqlValue),
            ))?;
            self.pending.clear();
        }
        if self.written >= self.next_checkpoint {
            self.checkpoint()?;
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

fn load_team_ids(conn: &Connection) -> Result<HashSet<String>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT id FROM \"{TEAMS}\""))?;
    let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

/// The rows of one import, before they are typed.
pub enum Input<'a> {
    Csv(Box<dyn Read + 'a>),
    Ndjson(Box<dyn Read + 'a>),
    /// Already-parsed JSON objects (an API body that was a JSON array).
    Json(Vec<serde_json::Value>),
}

/// Imports into `entity`: validates every row and writes all or nothing.
/// `label` names the input in messages (a file path, or "body").
pub fn import(
    conn: &mut Connection,
    schema: &Schema,
    cal: &Calendar,
    entity: &str,
    label: &str,
    input: Input<'_>,
) -> Result<ImportReport, StoreError> {
    let entity = schema.require(entity)?;
    let reader = RowReader { entity, cal };
    // IMMEDIATE: the write lock is taken (waiting on busy_timeout) before the first
    // read, so a write committed meanwhile by another connection (the alert
    // scheduler) cannot fail the upgrade from read to write with SQLITE_BUSY.
    let cache_kib: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", -IMPORT_CACHE_KIB)?;
    let result = import_in(conn, &reader, label, input);
    conn.pragma_update(None, "cache_size", cache_kib)?;
    let (written, ids) = result?;
    Ok(ImportReport {
        entity: entity.name.clone(),
        written,
        ids,
    })
}

/// The transaction of [`import`]: the count and ids written.
fn import_in(
    conn: &mut Connection,
    reader: &RowReader<'_>,
    label: &str,
    input: Input<'_>,
) -> Result<(usize, Option<Vec<String>>), StoreError> {
    let entity = reader.entity;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut errors = Errors::default();
    let started = std::time::Instant::now();
    let (written, ids) = {
        let mut writer = Writer::new(&tx, entity)?;
        let mut sink = |line: u64, row: Result<Vec<Value>, Vec<String>>, errors: &mut Errors| {
            let at = || format!("{label}:{line}");
            match row {
                Ok(values) => {
                    let dry = !errors.is_empty();
                    writer.row(&at, values, errors, dry)
                }
                Err(messages) => {
                    let at = at();
                    messages
                        .into_iter()
                        .for_each(|m| errors.push(format!("{at}: {m}")));
                    Ok(())
                }
            }
        };
        match input {
            Input::Csv(r) => {
                let mut failed = Ok(());
                read_csv(reader, label, r, &mut |p| {
                    match p {
                        Parsed::Row(line, row) => failed = sink(line, row, &mut errors),
                        Parsed::Error(m) => errors.push(m),
                    }
                    failed.is_ok()
                });
                failed?
            }
            Input::Ndjson(r) => read_ndjson(reader, label, r, &mut errors, &mut sink)?,
            Input::Json(rows) => {
                for (i, row) in rows.iter().enumerate() {
                    sink(i as u64 + 1, json_row(reader, row), &mut errors)?;
                }
            }
        }
        if errors.is_empty() {
            writer.finish()?;
        }
        if entity.name == TEAMS && errors.is_empty() {
            check_team_tree(&tx, &writer.team_lines, &mut errors)?;
        }
        (writer.written, writer.ids.take())
    };
    if !errors.is_empty() {
        return Err(errors.into_error());
    }
    let written_in = started.elapsed();
    super::db::bump_generation(&tx, &entity.name)?;
    tx.commit()?;
    tracing::debug!(entity = %entity.name, rows = written, write_ms = written_in.as_millis() as u64, commit_ms = (started.elapsed() - written_in).as_millis() as u64, "imported");
    Ok((written, ids))
}

/// Takes each row with its line number.
type Sink<'s> =
    dyn FnMut(u64, Result<Vec<Value>, Vec<String>>, &mut Errors) -> Result<(), StoreError> + 's;

/// What the CSV reader passes on, in input order.
enum Parsed {
    /// A row's line and its values or problems.
    Row(u64, Result<Vec<Value>, Vec<String>>),
    /// A problem of the file itself (header, unreadable row).
    Error(String),
}

/// Reads and checks every row; `out` returns false to stop early.
fn read_csv(
    reader: &RowReader<'_>,
    label: &str,
    input: Box<dyn Read + '_>,
    out: &mut dyn FnMut(Parsed) -> bool,
) {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let header = match csv.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            out(Parsed::Error(format!(
                "{label}:1: cannot read the header row: {e}"
            )));
            return;
        }
    };
    let columns = match csv_columns(reader.entity, &header) {
        Ok(c) => c,
        Err(messages) => {
            for m in messages {
                out(Parsed::Error(format!("{label}:1: {m}")));
            }
            return;
        }
    };
    let mut record = csv::ByteRecord::new();
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                out(Parsed::Error(format!(
                    "{label}:{line}: cannot read the row: {e}"
                )));
                break;
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let row = if record.len() != header.len() {
            Err(vec![format!(
                "expected {} cells, got {}",
                header.len(),
                record.len()
            )])
        } else {
            csv_row(reader, &columns, &record)
        };
        if !out(Parsed::Row(line, row)) {
            break;
        }
    }
}

/// Maps header cells to field positions; unknown or missing columns are errors.
fn csv_columns(
    entity: &Entity,
    header: &csv::ByteRecord,
) -> Result<Vec<Option<usize>>, Vec<String>> {
    let mut messages = Vec::new();
    let mut by_field: Vec<Option<usize>> = vec![None; entity.fields.len()];
    for (col, name) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(name);
        let name = name.trim();
        match entity.field_index(name) {
            Some(i) => by_field[i] = Some(col),
            None => messages.push(format!(
                "unknown column '{name}': {}",
                entity.unknown_field(name)
            )),
        }
    }
    for (i, f) in entity.fields.iter().enumerate() {
        if by_field[i].is_none() && !f.optional {
            messages.push(format!(
                "missing column '{}' (a required field of {})",
                f.name, entity.name
            ));
        }
    }
    if messages.is_empty() {
        Ok(by_field)
    } else {
        Err(messages)
    }
}

fn csv_row(
    reader: &RowReader<'_>,
    columns: &[Option<usize>],
    record: &csv::ByteRecord,
) -> Result<Vec<Value>, Vec<String>> {
    let mut values = Vec::with_capacity(columns.len());
    let mut messages = Vec::new();
    for (field, col) in reader.entity.fields.iter().zip(columns) {
        let raw = col.and_then(|c| record.get(c)).unwrap_or_default();
        let value = std::str::from_utf8(raw)
            .map_err(|_| "the value is not valid UTF-8".to_string())
            .and_then(|s| reader.text_value(field, s));
        match value {
            Ok(v) => values.push(v),
            Err(m) => messages.push(format!("field '{}': {m}", field.name)),
        }
    }
    if messages.is_empty() {
        Ok(values)
    } else {
        Err(messages)
    }
}

fn read_ndjson(
    reader: &RowReader<'_>,
    label: &str,
    mut input: Box<dyn Read + '_>,
    errors: &mut Errors,
    sink: &mut Sink<'_>,
) -> Result<(), StoreError> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| StoreError::Read {
            label: label.to_string(),
            message: e.to_string(),
        })?;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => json_row(reader, &v),
            Err(e) => Err(vec![format!("invalid JSON: {e}")]),
        };
        sink(i as u64 + 1, row, errors)?;
    }
    Ok(())
}

/// One JSON object → typed values. Missing keys are NULL; unknown keys are errors.
pub fn json_row(
    reader: &RowReader<'_>,
    row: &serde_json::Value,
) -> Result<Vec<Value>, Vec<String>> {
    let Some(obj) = row.as_object() else {
        return Err(vec![format!("expected a JSON object, got {}", short(row))]);
    };
    let mut messages: Vec<String> = obj
        .keys()
        .filter(|k| reader.entity.field(k).is_none())
        .map(|k| format!("unknown field '{k}': {}", reader.entity.unknown_field(k)))
        .collect();
    let mut values = Vec::with_capacity(reader.entity.fields.len());
    for field in &reader.entity.fields {
        match reader.json_value(
            field,
            obj.get(&field.name).unwrap_or(&serde_json::Value::Null),
        ) {
            Ok(v) => values.push(v),
            Err(m) => messages.push(format!("field '{}': {m}", field.name)),
        }
    }
    if messages.is_empty() {
        Ok(values)
    } else {
        Err(messages)
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// After a teams import: every parent is a known team and the tree has no cycle.
fn check_team_tree(
    tx: &Transaction<'_>,
    lines: &HashMap<String, String>,
    errors: &mut Errors,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare(&format!("SELECT id, parent FROM \"{TEAMS}\""))?;
    let parents: HashMap<String, Option<String>> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut ids: Vec<&String> = lines.keys().collect();
    ids.sort();
    for id in ids {
        let at = &lines[id];
        if let Some(Some(p)) = parents.get(id)
            && !parents.contains_key(p)
        {
            let h = hint(p, parents.keys().map(String::as_str));
            errors.push(format!("{at}: field 'parent': unknown team {p:?}{h}"));
            continue;
        }
        if in_cycle(&parents, id) {
            errors.push(format!(
                "{at}: field 'parent': team {id:?} is its own ancestor (the teams form a cycle)"
            ));
        }
    }
    Ok(())
}

fn in_cycle(parents: &HashMap<String, Option<String>>, start: &str) -> bool {
    let mut seen = HashSet::new();
    let mut cur = start;
    while let Some(Some(p)) = parents.get(cur) {
        if p == start || !seen.insert(p.as_str()) {
            return true;
        }
        cur = p;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_doc::Source;
    use crate::store::db;

    fn setup() -> (Connection, Schema, Calendar) {
        let text = "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n\
            [entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\n\
            stage = { type = \"text\", values = [\"won\", \"lost\"] }\namount = \"real\"\nclosed_at = \"time?\"\nhot = \"bool?\"\n";
        let schema = Schema::from_source(&Source::new("schema.toml", text)).unwrap();
        let mut conn = db::open_in_memory().unwrap();
        db::migrate(&mut conn, &schema).unwrap();
        let cal = Calendar::new("Asia/Shanghai", 1).unwrap();
        (conn, schema, cal)
    }

    fn csv(
        conn: &mut Connection,
        schema: &Schema,
        cal: &Calendar,
        entity: &str,
        text: &'static str,
    ) -> Result<ImportReport, StoreError> {
        import(
            conn,
            schema,
            cal,
            entity,
            "in.csv",
            Input::Csv(Box::new(text.as_bytes())),
        )
    }

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn imports_upserts_and_stores_utc_millis() {
        let (mut conn, schema, cal) = setup();
        csv(
            &mut conn,
            &schema,
            &cal,
            "teams",
            "id,name,parent\nhq,总部,\nnorth,North,hq\n",
        )
        .unwrap();
        let r = csv(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "id,team,stage,amount,closed_at\nd1,north,won,10.5,2026-04-01\n",
        )
        .unwrap();
        assert_eq!(r.written, 1);
        csv(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "id,team,stage,amount,closed_at\nd1,north,lost,11,2026-04-01 08:00:00\n",
        )
        .unwrap();
        let (stage, at): (String, i64) = conn
            .query_row("SELECT stage, closed_at FROM deals", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(stage, "lost");
        // 2026-04-01 08:00 in Shanghai is 00:00 UTC.
        assert_eq!(at, 1_775_001_600_000);
        assert_eq!(count(&conn, "deals"), 1);
    }

    #[test]
    fn reports_every_bad_row_and_writes_nothing() {
        let (mut conn, schema, cal) = setup();
        csv(&mut conn, &schema, &cal, "teams", "id,name\nnorth,North\n").unwrap();
        let err = csv(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "id,team,stage,amount,hot\nd1,north,won,10,1\nd2,north,won,abc,1\nd3,south,maybe,1,yes\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("in.csv:3: field 'amount': expected a real number, got \"abc\""),
            "{err}"
        );
        assert!(
            err.contains("in.csv:4: field 'stage': expected one of won, lost, got \"maybe\""),
            "{err}"
        );
        assert!(
            err.contains("in.csv:4: field 'hot': expected true/false/1/0, got \"yes\""),
            "{err}"
        );
        assert_eq!(count(&conn, "deals"), 0, "nothing written");
        let err = csv(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "id,team,stage,amount\nd9,south,won,1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("in.csv:2: field 'team': unknown team \"south\""),
            "{err}"
        );
    }

    #[test]
    fn refuses_unknown_and_missing_columns() {
        let (mut conn, schema, cal) = setup();
        let err = csv(&mut conn, &schema, &cal, "deals", "id,team,amout\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("in.csv:1: unknown column 'amout': deals has no field 'amout'; did you mean 'amount'?"), "{err}");
        assert!(err.contains("missing column 'stage'"), "{err}");
    }

    #[test]
    fn ndjson_and_team_cycles() {
        let (mut conn, schema, cal) = setup();
        let text =
            "{\"id\":\"a\",\"name\":\"A\"}\n\n{\"id\":\"b\",\"name\":\"B\",\"parent\":\"a\"}\n";
        import(
            &mut conn,
            &schema,
            &cal,
            "teams",
            "t.ndjson",
            Input::Ndjson(Box::new(text.as_bytes())),
        )
        .unwrap();
        let cyc = "{\"id\":\"a\",\"name\":\"A\",\"parent\":\"b\"}\n";
        let err = import(
            &mut conn,
            &schema,
            &cal,
            "teams",
            "t.ndjson",
            Input::Ndjson(Box::new(cyc.as_bytes())),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t.ndjson:1: field 'parent'") && err.contains("cycle"),
            "{err}"
        );
        let bad = "{\"id\":\"c\",\"name\":1}\nnot json\n";
        let err = import(
            &mut conn,
            &schema,
            &cal,
            "teams",
            "t.ndjson",
            Input::Ndjson(Box::new(bad.as_bytes())),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("t.ndjson:1: field 'name': expected a string, got 1"),
            "{err}"
        );
        assert!(err.contains("t.ndjson:2: invalid JSON"), "{err}");
        assert_eq!(count(&conn, "teams"), 2);
    }

    fn indexes(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deals' AND name LIKE 'idx_%' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_large_import_batches_rows_and_keeps_the_last_of_a_repeated_id() {
        let (mut conn, schema, cal) = setup();
        csv(&mut conn, &schema, &cal, "teams", "id,name\nnorth,North\n").unwrap();
        let before = indexes(&conn);
        assert_eq!(before, ["idx_deals_closed_at", "idx_deals_team"]);
        // 40,000 rows over 30,000 ids: past the point where the indexes are
        // dropped and made again; ids 0..10,000 come twice, the second wins.
        let mut text = String::from("id,team,stage,amount,closed_at\n");
        for i in 0..40_000 {
            let stage = if i < 30_000 { "lost" } else { "won" };
            text.push_str(&format!("d{},north,{stage},{i},2026-01-02\n", i % 30_000));
        }
        let r = import(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "big.csv",
            Input::Csv(Box::new(text.as_bytes())),
        )
        .unwrap();
        assert_eq!(r.written, 40_000);
        assert_eq!(r.ids.as_ref().map(Vec::len), Some(40_000));
        assert_eq!(count(&conn, "deals"), 30_000);
        let (won, sum): (i64, f64) = conn
            .query_row(
                "SELECT count(*), sum(amount) FROM deals WHERE stage = 'won'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(won, 10_000);
        assert_eq!(sum, (30_000..40_000).map(f64::from).sum::<f64>());
        assert_eq!(indexes(&conn), before, "the indexes are made again");

        // A bad last row: nothing written, the indexes as they were.
        let mut text = String::from("id,team,stage,amount\n");
        for i in 0..40_000 {
            text.push_str(&format!("n{i},north,won,1\n"));
        }
        text.push_str("bad,north,won,abc\n");
        let err = import(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "big.csv",
            Input::Csv(Box::new(text.as_bytes())),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("big.csv:40002: field 'amount'"), "{err}");
        assert_eq!(count(&conn, "deals"), 30_000);
        assert_eq!(indexes(&conn), before);
    }
}
