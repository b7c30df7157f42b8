//! Importing records: CSV (any one-byte delimiter), NDJSON or a JSON array
//! into one or more entities, upserted by `id`, in one transaction.
//!
//! Every row is checked against the schema; a bad row is reported as
//! `FILE:LINE: field 'amount': expected a real number, got "abc"` and, if any
//! row is bad, the transaction is rolled back: nothing of that import is
//! written. Rows are validated and written in one streaming pass, so a large
//! file is never held in memory.
//!
//! The parts: [`cells`] turns one cell into a typed value, [`readers`] turns a
//! file into rows, [`writer`] writes one entity's rows, [`teams`] checks the
//! team tree, [`progress`] shows a long import on a terminal. [`ingest`] is the
//! transaction that ties them together; a mapping (crate::mapping) feeds it
//! rows of several entities at once.

pub mod cells;
mod checks;
pub mod progress;
pub mod readers;
mod teams;
mod writer;

use std::io::Read;
use std::sync::mpsc::{self, SyncSender};

use rusqlite::Connection;

use super::schema::{Schema, TEAMS};
use super::{StoreError, Value};
use crate::period::Calendar;
pub use cells::RowReader;
use checks::Checks;
pub use readers::{JsonRows, Parsed, json_array, json_row};
use writer::Message;
pub(crate) use writer::SqlValue;

/// At most this many bad rows are listed; the rest are counted.
const MAX_REPORTED: usize = 100;

/// At most this many parameters in one multi-row upsert.
const BATCH_PARAMS: usize = 960;

/// Checked rows go to the writer thread this many at a time...
const ROWS_PER_MESSAGE: usize = 1024;

/// ...and at most this many messages wait for it (so a reader far ahead of
/// the writer holds a few thousand rows, not the file).
const QUEUED_MESSAGES: usize = 8;

/// After this many rows (then twice as many, and so on) an import checks
/// whether it is large enough to write without the secondary indexes.
const FIRST_CHECKPOINT: usize = 16_384;

/// The page cache of an importing connection (KiB): big enough that a large
/// import is not spilled to the WAL mid-transaction (256 MiB: stage_events at
/// 3.5M rows imported 11% faster than with 64 MiB).
const IMPORT_CACHE_KIB: i64 = 262_144;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// By extension: .csv, .tsv, .jsonl, .ndjson.
    pub fn from_path(path: &str) -> Option<Format> {
        let ext = path.rsplit('.').next()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" => Some(Format::Csv),
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

/// How one import went, for one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub entity: String,
    /// Records written: distinct ids (a repeated id is one record, its last row).
    pub written: usize,
    /// Rows whose id an earlier row of the same import already had.
    pub duplicates: usize,
    /// The ids written, in order, when there were at most [`MAX_LISTED_IDS`]
    /// (a server patches its columns with just these rows); None beyond.
    pub ids: Option<Vec<String>>,
}

impl ImportReport {
    /// `3 deals records` or `3 deals records (2 rows repeated an id: the last of each was kept)`.
    pub fn summary(&self) -> String {
        let mut s = format!("{} {} records", self.written, self.entity);
        if self.duplicates > 0 {
            s.push_str(&format!(
                " ({} row(s) repeated an id: the last of each was kept)",
                self.duplicates
            ));
        }
        s
    }
}

/// Up to this many written ids are listed in an [`ImportReport`].
pub const MAX_LISTED_IDS: usize = 100_000;

/// Collects bad rows, keeping the first [`MAX_REPORTED`] in full and
/// counting every one.
#[derive(Default)]
pub(crate) struct Errors {
    listed: Vec<String>,
    /// Bad rows (and problems of the file itself) in all.
    bad: usize,
}

impl Errors {
    /// One bad row (or one problem of the input) with its messages.
    pub(crate) fn row(&mut self, at: &str, messages: impl IntoIterator<Item = String>) {
        self.bad += 1;
        if self.bad <= MAX_REPORTED {
            self.listed
                .extend(messages.into_iter().map(|m| format!("{at}: {m}")));
        }
    }

    /// A problem given as one full message.
    pub(crate) fn push(&mut self, message: String) {
        self.bad += 1;
        if self.bad <= MAX_REPORTED {
            self.listed.push(message);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bad == 0
    }

    /// Adds the problems found after these (the team tree's, after the rows').
    fn extend(&mut self, later: Errors) {
        if self.bad < MAX_REPORTED {
            self.listed.extend(later.listed);
        }
        self.bad += later.bad;
    }

    fn into_error(mut self) -> StoreError {
        if self.bad > MAX_REPORTED {
            self.listed
                .push(format!("... and {} more bad rows", self.bad - MAX_REPORTED));
        }
        StoreError::Import {
            bad_rows: self.bad,
            messages: self.listed,
        }
    }
}

/// Where a row came from, for messages: `FILE:LINE` or, for an element of a
/// JSON array, `body:LINE: element N`.
#[derive(Debug, Clone, Copy)]
pub enum Pos {
    Line(u64),
    Element { line: u64, n: u64 },
}

impl Pos {
    pub fn at(self, label: &str) -> String {
        match self {
            Pos::Line(l) => format!("{label}:{l}"),
            Pos::Element { line, n } => format!("{label}:{line}: element {n}"),
        }
    }
}

/// The rows of one import, before they are typed.
pub enum Input<'a> {
    /// Comma-separated, with a header row.
    Csv(Box<dyn Read + 'a>),
    /// Separated by another one-byte delimiter (`;`, tab), with a header row.
    Delimited(Box<dyn Read + 'a>, u8),
    Ndjson(Box<dyn Read + 'a>),
    /// Already-parsed JSON objects (formula test cases), named `LABEL:N` by element number.
    Json(Vec<serde_json::Value>),
    /// A JSON array (an API body), with the line of each element.
    JsonArray(JsonRows),
}

/// One import's transaction: rows of the entities it was opened for go in
/// through [`Ingest::row`]; problems through [`Ingest::bad_row`]. Once one
/// problem is found nothing more is written (rows are still checked).
///
/// Rows are checked here, on the reading thread, and written by the
/// import's writer thread ([`writer`]), a [`ROWS_PER_MESSAGE`] at a time.
pub struct Ingest<'s> {
    checks: Vec<Checks<'s>>,
    /// Checked rows of each entity not sent yet, row after row.
    pending: Vec<Vec<Value>>,
    to_writer: SyncSender<Message>,
    errors: Errors,
}

impl Ingest<'_> {
    /// A checked row of the `k`th entity of the import; `at` names it in messages.
    pub fn row(
        &mut self,
        k: usize,
        at: &dyn Fn() -> String,
        values: Vec<Value>,
    ) -> Result<(), StoreError> {
        let dry = !self.errors.is_empty();
        if !self.checks[k].row(at, &values, &mut self.errors, dry) {
            return Ok(());
        }
        let width = values.len();
        self.pending[k].extend(values);
        if self.pending[k].len() >= ROWS_PER_MESSAGE * width {
            self.send(k)?;
        }
        Ok(())
    }

    /// Sends the pending rows of the `k`th entity to the writer (none: nothing).
    fn send(&mut self, k: usize) -> Result<(), StoreError> {
        if self.pending[k].is_empty() {
            return Ok(());
        }
        let room = self.pending[k].capacity();
        let rows = std::mem::replace(&mut self.pending[k], Vec::with_capacity(room));
        self.to_writer
            .send(Message::Rows(k, rows))
            .map_err(|_| writer_gone())
    }

    /// A bad row: every message is shown as `AT: message`.
    pub fn bad_row(&mut self, at: &str, messages: impl IntoIterator<Item = String>) {
        self.errors.row(at, messages);
    }

    /// A problem of the input itself, as one full message.
    pub fn problem(&mut self, message: String) {
        self.errors.push(message);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// After the last row: sends what is pending and the end, when no row was bad.
    fn end(&mut self, dry_run: bool) -> Result<(), StoreError> {
        if !self.errors.is_empty() {
            return Ok(());
        }
        for k in 0..self.pending.len() {
            self.send(k)?;
        }
        let team_lines = self
            .checks
            .iter_mut()
            .find(|c| c.entity.name == TEAMS)
            .map(|c| std::mem::take(&mut c.team_lines));
        self.to_writer
            .send(Message::End(writer::End {
                team_lines,
                commit: !dry_run,
            }))
            .map_err(|_| writer_gone())
    }
}

/// What a send to a writer that has stopped returns; the writer's own error
/// is what the import reports.
fn writer_gone() -> StoreError {
    StoreError::Read {
        label: "import".into(),
        message: "the writer stopped".into(),
    }
}

/// Opens one transaction for `entities`, lets `fill` put rows in, then
/// commits everything, or nothing if any row was bad (or `dry_run`).
/// Every entity's report is returned, in the order of `entities`.
/// `fill` runs on the caller's thread; the transaction on a writer thread.
pub fn ingest(
    conn: &mut Connection,
    schema: &Schema,
    entities: &[&str],
    dry_run: bool,
    fill: &mut dyn FnMut(&mut Ingest<'_>) -> Result<(), StoreError>,
) -> Result<Vec<ImportReport>, StoreError> {
    let resolved = entities
        .iter()
        .map(|e| schema.require(e).map_err(StoreError::from))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_kib: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", -IMPORT_CACHE_KIB)?;
    let result = std::thread::scope(|s| {
        let (to_writer, rows) = mpsc::sync_channel(QUEUED_MESSAGES);
        let (ready, known) = mpsc::channel();
        let writing = s.spawn(|| writer::run(&mut *conn, &resolved, rows, ready));
        let Ok(known) = known.recv() else {
            // The writer stopped before the first row: its error is the import's.
            return Err(joined(writing).err().unwrap_or_else(writer_gone));
        };
        let mut ing = Ingest {
            checks: resolved.iter().map(|e| Checks::new(e, &known)).collect(),
            pending: vec![Vec::new(); resolved.len()],
            to_writer,
            errors: Errors::default(),
        };
        let filled = fill(&mut ing).and_then(|()| ing.end(dry_run));
        let Ingest {
            checks,
            mut errors,
            to_writer,
            ..
        } = ing;
        drop(to_writer); // the writer stops here if it was not sent the end
        // The writer's error first: a send that failed in `fill` is only its echo.
        let tree = joined(writing)?;
        filled?;
        errors.extend(tree);
        if !errors.is_empty() {
            return Err(errors.into_error());
        }
        Ok(checks.into_iter().map(Checks::report).collect())
    });
    conn.pragma_update(None, "cache_size", cache_kib)?;
    result
}

/// What the writer thread returned (its panic goes on in this thread).
fn joined<T>(writing: std::thread::ScopedJoinHandle<'_, T>) -> T {
    writing
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Every (key, value) pair of two fields of an entity's records, as text
/// (a mapping's `lookup = { entity = … }`); rows whose key is NULL are left out.
pub fn key_values(
    conn: &Connection,
    entity: &super::Entity,
    key: &str,
    value: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    // Identifiers come from the checked schema, never from the caller's text.
    let (Some(k), Some(v)) = (entity.field(key), entity.field(value)) else {
        return Err(StoreError::Name(entity.unknown_field(
            if entity.field(key).is_none() {
                key
            } else {
                value
            },
        )));
    };
    let sql = format!(
        "SELECT \"{}\", \"{}\" FROM \"{}\" WHERE \"{}\" IS NOT NULL",
        k.name, v.name, entity.name, k.name
    );
    let text = |r: rusqlite::types::ValueRef<'_>| match r {
        rusqlite::types::ValueRef::Null => String::new(),
        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
        rusqlite::types::ValueRef::Real(f) => f.to_string(),
        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
            String::from_utf8_lossy(t).into_owned()
        }
    };
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| Ok((text(r.get_ref(0)?), text(r.get_ref(1)?))))?;
    Ok(rows.collect::<Result<_, _>>()?)
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
    let e = schema.require(entity).map_err(StoreError::from)?;
    let reader = RowReader { entity: e, cal };
    let mut input = Some(input);
    let mut reports = ingest(conn, schema, &[entity], false, &mut |ing| {
        let Some(input) = input.take() else {
            return Ok(());
        };
        readers::read(&reader, label, input, &mut |parsed| match parsed {
            Parsed::Row(pos, Ok(values)) => ing.row(0, &|| pos.at(label), values),
            Parsed::Row(pos, Err(messages)) => {
                ing.bad_row(&pos.at(label), messages);
                Ok(())
            }
            Parsed::Problem(m) => {
                ing.problem(m);
                Ok(())
            }
        })
    })?;
    Ok(reports.remove(0))
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

    /// `n` won deals of team north, ids `{prefix}0`.., amount 1, after a header.
    fn won_deals(prefix: &str, n: usize) -> String {
        let mut text = String::from("id,team,stage,amount\n");
        for i in 0..n {
            text.push_str(&format!("{prefix}{i},north,won,1\n"));
        }
        text
    }

    /// Imports `text` into deals as `big.csv`.
    fn big(
        conn: &mut Connection,
        schema: &Schema,
        cal: &Calendar,
        text: &str,
    ) -> Result<ImportReport, StoreError> {
        import(
            conn,
            schema,
            cal,
            "deals",
            "big.csv",
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

    #[test]
    fn a_column_named_twice_is_an_error() {
        let (mut conn, schema, cal) = setup();
        csv(&mut conn, &schema, &cal, "teams", "id,name\nnorth,North\n").unwrap();
        let err = csv(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "id,team,stage,amount,amount\nd1,north,won,1,2\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("in.csv:1: column 'amount' appears twice (columns 4 and 5)"),
            "{err}"
        );
        assert_eq!(count(&conn, "deals"), 0);
    }

    #[test]
    fn the_count_says_what_was_written_and_the_repeats() {
        let (mut conn, schema, cal) = setup();
        csv(&mut conn, &schema, &cal, "teams", "id,name\nnorth,North\n").unwrap();
        let r = csv(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "id,team,stage,amount\nd1,north,won,1\nd1,north,lost,2\nd2,north,won,3\n",
        )
        .unwrap();
        assert_eq!((r.written, r.duplicates), (2, 1));
        assert_eq!(
            r.summary(),
            "2 deals records (1 row(s) repeated an id: the last of each was kept)"
        );
        assert_eq!(count(&conn, "deals"), 2);
    }

    #[test]
    fn the_headline_counts_every_bad_row_beyond_the_listed_ones() {
        let (mut conn, schema, cal) = setup();
        csv(&mut conn, &schema, &cal, "teams", "id,name\nnorth,North\n").unwrap();
        let mut text = String::from("id,team,stage,amount\n");
        for i in 0..250 {
            text.push_str(&format!("d{i},north,won,x\n"));
        }
        let err = import(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "in.csv",
            Input::Csv(Box::new(text.as_bytes())),
        )
        .unwrap_err();
        let StoreError::Import { bad_rows, messages } = &err else {
            panic!("{err}")
        };
        assert_eq!(*bad_rows, 250);
        assert_eq!(messages.len(), 101, "100 listed and a last line");
        assert!(
            err.to_string()
                .ends_with("... and 150 more bad rows\n250 bad row(s)"),
            "{err}"
        );
    }

    #[test]
    fn semicolon_and_tab_delimiters_and_a_json_array_with_a_bom() {
        let (mut conn, schema, cal) = setup();
        let r = import(
            &mut conn,
            &schema,
            &cal,
            "teams",
            "t.csv",
            Input::Delimited(Box::new("id;name\nnorth;North\n".as_bytes()), b';'),
        )
        .unwrap();
        assert_eq!(r.written, 1);
        import(
            &mut conn,
            &schema,
            &cal,
            "teams",
            "t.tsv",
            Input::Delimited(Box::new("id\tname\nsouth\tSouth\n".as_bytes()), b'\t'),
        )
        .unwrap();
        assert_eq!(count(&conn, "teams"), 2);
        let body = "\u{feff}[\n{\"id\": \"d1\", \"team\": \"north\", \"stage\": \"won\", \"amount\": 1},\n{\"id\": \"d2\", \"team\": \"north\", \"stage\": \"won\", \"amount\": \"x\"}\n]";
        let rows = json_array(body.as_bytes()).unwrap();
        let err = import(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "body",
            Input::JsonArray(rows),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("body:3: element 2: field 'amount': expected a real number"),
            "{err}"
        );
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
    fn a_write_that_fails_midway_stops_the_reading_and_keeps_nothing() {
        let (mut conn, schema, cal) = setup();
        csv(&mut conn, &schema, &cal, "teams", "id,name\nnorth,North\n").unwrap();
        // The writer thread fails on row 20,000 of 40,000 (a trigger stands in for a
        // full disk): its error is the import's, and nothing of the import is kept.
        conn.execute_batch(
            "CREATE TRIGGER boom BEFORE INSERT ON deals WHEN NEW.id = 'd19999'
             BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;",
        )
        .unwrap();
        let err = big(&mut conn, &schema, &cal, &won_deals("d", 40_000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("disk full (test)"), "{err}");
        assert_eq!(count(&conn, "deals"), 0);
        assert_eq!(indexes(&conn), ["idx_deals_closed_at", "idx_deals_team"]);
        // The connection is usable again: the next import goes through.
        conn.execute_batch("DROP TRIGGER boom").unwrap();
        let r = csv(
            &mut conn,
            &schema,
            &cal,
            "deals",
            "id,team,stage,amount\nd1,north,won,5\n",
        );
        assert_eq!(r.unwrap().written, 1);
    }

    #[test]
    fn an_input_that_breaks_midway_keeps_nothing() {
        /// 30,000 good rows, then a read error.
        struct Breaks(Vec<u8>, usize);
        impl Read for Breaks {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.1 >= self.0.len() {
                    return Err(std::io::Error::other("connection reset (test)"));
                }
                let n = buf.len().min(self.0.len() - self.1);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let (mut conn, schema, cal) = setup();
        csv(&mut conn, &schema, &cal, "teams", "id,name\nnorth,North\n").unwrap();
        let text = won_deals("d", 30_000);
        let input = Input::Csv(Box::new(Breaks(text.into_bytes(), 0)));
        let err = import(&mut conn, &schema, &cal, "deals", "net.csv", input)
            .unwrap_err()
            .to_string();
        assert!(err.contains("connection reset (test)"), "{err}");
        assert_eq!(count(&conn, "deals"), 0);
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
        let r = big(&mut conn, &schema, &cal, &text).unwrap();
        // Written = records: 30,000 ids, 10,000 rows repeating one.
        assert_eq!((r.written, r.duplicates), (30_000, 10_000));
        assert_eq!(r.ids.as_ref().map(Vec::len), Some(30_000));
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
        let mut text = won_deals("n", 40_000);
        text.push_str("bad,north,won,abc\n");
        let err = big(&mut conn, &schema, &cal, &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("big.csv:40002: field 'amount'"), "{err}");
        assert_eq!(count(&conn, "deals"), 30_000);
        assert_eq!(indexes(&conn), before);
    }
}
