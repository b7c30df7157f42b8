//! The persistent columnar snapshot: the loaded columns of each entity kept in
//! one Arrow IPC file per entity beside the database (`crm.db` →
//! `crm.db-columns/deals.arrow`), so that a new process reads them from there
//! instead of scanning SQLite and interning every text cell again.
//!
//! It holds records, not results, and it is only a cache: a file is used only
//! when its footer names this database (a random id kept in `_kpi_meta`), the
//! entity's current `_kpi_data` generation and its largest rowid, the entity's
//! field definitions as the schema has them now, and the format version, and
//! when the checksum of the decoded columns matches. Anything else — missing,
//! stale, unknown version, truncated or altered — is ignored (with a debug
//! log) and rewritten by the next load from SQLite. A file is written to a
//! temporary name, fsynced and renamed: it is never modified in place, and a
//! crash while writing leaves at most a temporary file nobody reads.
//!
//! Layout: record batches of [`CHUNK`] rows; `_rowid` (Int64; left out when the
//! rowids are 1..=n and there is a column), then one column per loaded field
//! in name order: Int64 for integer, bool and time (ms) fields, or Int32 steps
//! with the field metadata `kpi.base` and `kpi.scale` (the in-memory scaled
//! form: `value = base + scale × step`), Float64 for
//! reals, Dictionary(UInt8, Utf8) or Dictionary(UInt32, Utf8) for text (the
//! in-memory codes of either width and the dictionary as they are, so opening
//! interns nothing). Nulls have a validity bitmap and keep the in-memory
//! sentinel in their slot.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use arrow_array::types::{UInt8Type, UInt32Type};
use arrow_array::{
    Array, ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, UInt8Array, UInt32Array,
};
use arrow_buffer::{Buffer, NullBuffer};
use arrow_ipc::Block;
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::{FileDecoder, read_footer_length};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field as ArrowField, Schema as ArrowSchema};
use rusqlite::{Connection, OptionalExtension};

use super::column::{
    Codes, Column, Dict, Ints, NARROW_NULL, NULL_CODE, NULL_INT, RawDict, Rowids, SCALED_NULL,
};
use crate::store::schema::{Entity, FieldType};

/// The layout version written in every footer; another one is ignored.
/// ("1" had four-byte codes for every text column and eight bytes for every integer;
/// "2" the checksum of one value a step; "3" the checksum of one dictionary value a step.)
const VERSION: &str = "4";
/// The `_kpi_meta` key of the database's random id.
const DATABASE_ID: &str = "columns_database_id";
const ROWID: &str = "_rowid";
/// The field metadata of a column of scaled integers: `value = base + scale × step`.
const BASE: &str = "kpi.base";
const SCALE: &str = "kpi.scale";
/// Setting this environment variable to `off` disables reading and writing snapshots.
pub const ENV: &str = "KPI_COLUMN_SNAPSHOT";

/// Row ids in rowid order, and the columns by field name.
pub(super) type Columns = (Rowids, HashMap<String, Arc<Column>>);

/// A valid snapshot read: its generation, row ids and columns.
pub(super) type Snap = (i64, Rowids, HashMap<String, Arc<Column>>);

/// What a snapshot of an entity must match to be used.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Tag {
    /// The database's id (see [`database_id`]).
    pub database: String,
    /// The entity's `_kpi_data` generation the columns were read at.
    pub generation: i64,
    /// The largest rowid (i64::MIN when the table is empty).
    pub max_rowid: i64,
    /// The entity's field names and types (see [`fingerprint`]).
    pub fields: String,
}

impl Tag {
    fn pairs(&self) -> [(&'static str, String); 5] {
        [
            ("kpi.snapshot", VERSION.to_string()),
            ("kpi.database", self.database.clone()),
            ("kpi.generation", self.generation.to_string()),
            ("kpi.max_rowid", self.max_rowid.to_string()),
            ("kpi.fields", self.fields.clone()),
        ]
    }
}

/// The directory of the snapshots of the database `conn` opened, unless it is
/// in memory or `KPI_COLUMN_SNAPSHOT=off`.
pub(super) fn dir_of(conn: &Connection) -> Option<PathBuf> {
    if std::env::var(ENV).is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
        return None;
    }
    let path = conn.path().filter(|p| !p.is_empty())?;
    let mut name = Path::new(path).file_name()?.to_os_string();
    name.push("-columns");
    Some(Path::new(path).with_file_name(name))
}

pub(super) fn file_of(dir: &Path, entity: &str) -> PathBuf {
    dir.join(format!("{entity}.arrow"))
}

/// The entity's field names and types, in schema order.
pub(super) fn fingerprint(ent: &Entity) -> String {
    let fields: Vec<String> = ent
        .fields
        .iter()
        .map(|f| format!("{}:{}", f.name, f.ty.name()))
        .collect();
    fields.join(",")
}

/// The entity's current generation (0 when it was never written).
pub(super) fn generation(conn: &Connection, entity: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT generation FROM _kpi_data WHERE entity = ?1")?
        .query_row([entity], |r| r.get(0))
        .optional()
        .map(|g| g.unwrap_or(0))
}

/// The largest rowid of the entity's table (i64::MIN when it is empty).
fn max_rowid(conn: &Connection, entity: &str) -> rusqlite::Result<i64> {
    let sql = format!("SELECT max(rowid) FROM \"{entity}\"");
    conn.prepare_cached(&sql)?
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .map(|m| m.unwrap_or(i64::MIN))
}

/// The database's random id, made and stored in `_kpi_meta` when `create`
/// and there is none yet. It tells this database from another one made at
/// the same path later (whose generations start again at 1).
pub(super) fn database_id(conn: &Connection, create: bool) -> rusqlite::Result<Option<String>> {
    let read = |conn: &Connection| {
        conn.query_row(
            "SELECT value FROM _kpi_meta WHERE key = ?1",
            [DATABASE_ID],
            |r| r.get::<_, String>(0),
        )
        .optional()
    };
    match read(conn) {
        Ok(Some(id)) => return Ok(Some(id)),
        Ok(None) => {}
        // No `_kpi_meta` table yet.
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => {}
        Err(e) => return Err(e),
    }
    if !create {
        return Ok(None);
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _kpi_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO _kpi_meta (key, value) VALUES (?1, lower(hex(randomblob(16))))",
        [DATABASE_ID],
    )?;
    read(conn)
}

/// The tag a snapshot of `ent` must carry to be used now (None when the
/// database has no id yet: no snapshot of it can be valid).
pub(super) fn current_tag(conn: &Connection, ent: &Entity) -> rusqlite::Result<Option<Tag>> {
    let Some(database) = database_id(conn, false)? else {
        return Ok(None);
    };
    Ok(Some(Tag {
        database,
        generation: generation(conn, &ent.name)?,
        max_rowid: max_rowid(conn, &ent.name)?,
        fields: fingerprint(ent),
    }))
}

/// The snapshot of `ent` in `dir` when it is valid for the database `conn`
/// opened as it is now (and the database has an id).
pub(super) fn load(conn: &Connection, dir: &Path, ent: &Entity) -> rusqlite::Result<Option<Snap>> {
    let started = std::time::Instant::now();
    let Some(tag) = current_tag(conn, ent)? else {
        return Ok(None);
    };
    let Some((rowids, columns)) = read(dir, ent, &tag) else {
        return Ok(None);
    };
    let fields: Vec<&String> = columns.keys().collect();
    tracing::debug!(entity = %ent.name, source = "snapshot", ?fields, rows = rowids.len(), ms = started.elapsed().as_millis() as u64, "loaded columns");
    Ok(Some((tag.generation, rowids, columns)))
}

/// The columns of the snapshot of `ent` in `dir`, when its tag is `want` and
/// it decodes and checks; None otherwise (a debug log says why).
pub(super) fn read(dir: &Path, ent: &Entity, want: &Tag) -> Option<Columns> {
    let path = file_of(dir, &ent.name);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::debug!(path = %path.display(), "column snapshot not readable: {e}");
            return None;
        }
    };
    match quietly(|| decode(file, ent, want)) {
        Ok(c) => Some(c),
        Err(why) => {
            tracing::debug!(path = %path.display(), "column snapshot not used: {why}");
            None
        }
    }
}

/// Runs `f` with a panic inside it turned into an error and not printed:
/// arrow's reader can panic on a damaged file (a buffer offset past the end)
/// instead of returning an error, and a damaged cache is no one's failure.
fn quietly<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    thread_local! {
        static QUIET: Cell<bool> = const { Cell::new(false) };
    }
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result.unwrap_or_else(|panic| {
        let why = (panic.downcast_ref::<String>().map(String::as_str))
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(format!("corrupt: the reader failed: {why}"))
    })
}

fn decode(file: File, ent: &Entity, want: &Tag) -> Result<Columns, String> {
    let file = Opened::new(file)?;
    let meta = file.metadata()?;
    let got = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
    if got("kpi.snapshot") != VERSION {
        return Err(format!("unknown version {:?}", got("kpi.snapshot")));
    }
    for (key, value) in want.pairs() {
        if got(key) != value {
            return Err(format!("stale: {key} is {:?}, now {value:?}", got(key)));
        }
    }
    let rows: usize = got("kpi.rows")
        .parse()
        .map_err(|_| "corrupt: no row count")?;
    let schema = file.schema()?;
    let mut parts = (schema.fields().iter())
        .map(|f| Part::new(f, ent, rows))
        .collect::<Result<Vec<_>, _>>()?;
    file.each_batch(schema.clone(), |batch| {
        for (part, array) in parts.iter_mut().zip(batch.columns()) {
            part.append(array)?;
        }
        Ok(())
    })?;
    let mut rowids = None;
    let mut columns = HashMap::new();
    for (field, part) in schema.fields().iter().zip(parts) {
        match part.finish(rows)? {
            Err(ids) => rowids = Some(ids),
            Ok(column) => {
                columns.insert(field.name().clone(), Arc::new(column));
            }
        }
    }
    let rowids = rowids.map_or(Rowids::Dense(rows), Rowids::from_vec);
    let columns = (rowids, columns);
    if got("kpi.checksum") != checksum(&columns.0, &columns.1).to_string() {
        return Err("corrupt: checksum mismatch".into());
    }
    Ok(columns)
}

/// A snapshot file opened for decoding: its footer read, each block (a dictionary or a
/// record batch) read when it is decoded. A dictionary's block is read into a buffer of its
/// own, which the decoded dictionary keeps as it is (no copy of its values); the record
/// batches are read one after another into one buffer, reused.
struct Opened {
    file: File,
    /// The footer's bytes.
    footer: Vec<u8>,
    /// Where the footer starts.
    footer_at: u64,
}

/// The trailer of an Arrow IPC file: the footer's length (4 bytes) and the magic.
const TRAILER: u64 = 10;

impl Opened {
    fn new(mut file: File) -> Result<Opened, String> {
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let trailer_at = len.checked_sub(TRAILER).ok_or("corrupt: truncated")?;
        let mut trailer = [0; TRAILER as usize];
        read_at(&mut file, trailer_at, &mut trailer)?;
        let footer_len = read_footer_length(trailer).map_err(|e| format!("corrupt: {e}"))?;
        let footer_at =
            (trailer_at.checked_sub(footer_len as u64)).ok_or("corrupt: footer length")?;
        let mut footer = vec![0; footer_len];
        read_at(&mut file, footer_at, &mut footer)?;
        Ok(Opened {
            file,
            footer,
            footer_at,
        })
    }

    fn footer(&self) -> Result<arrow_ipc::Footer<'_>, String> {
        arrow_ipc::root_as_footer(&self.footer).map_err(|e| format!("corrupt: footer: {e}"))
    }

    /// The footer's custom metadata (the tag, row count, checksum and version).
    fn metadata(&self) -> Result<HashMap<String, String>, String> {
        let mut meta = HashMap::new();
        for kv in self.footer()?.custom_metadata().into_iter().flatten() {
            let (Some(k), Some(v)) = (kv.key(), kv.value()) else {
                return Err("corrupt: footer metadata".into());
            };
            meta.insert(k.to_string(), v.to_string());
        }
        Ok(meta)
    }

    fn schema(&self) -> Result<Arc<ArrowSchema>, String> {
        let ipc = self.footer()?.schema().ok_or("corrupt: no schema")?;
        if !ipc.endianness().equals_to_target_endianness() {
            return Err("another byte order".into());
        }
        Ok(Arc::new(
            try_fb_to_schema(ipc).map_err(|e| format!("corrupt: {e}"))?,
        ))
    }

    /// `f` of every record batch in order, the dictionaries read first.
    fn each_batch(
        &self,
        schema: Arc<ArrowSchema>,
        mut f: impl FnMut(RecordBatch) -> Result<(), String>,
    ) -> Result<(), String> {
        let corrupt = |e: arrow_schema::ArrowError| format!("corrupt: {e}");
        let footer = self.footer()?;
        let (file, end) = (&self.file, self.footer_at);
        let mut decoder = FileDecoder::new(schema, footer.version());
        for block in footer.dictionaries().into_iter().flatten() {
            let bytes = read_block(file, end, block, Vec::new())?;
            (decoder.read_dictionary(block, &Buffer::from_vec(bytes))).map_err(corrupt)?;
        }
        let mut reused = Vec::new();
        for block in footer.recordBatches().ok_or("corrupt: no batches")? {
            let bytes = Buffer::from_vec(read_block(file, end, block, reused)?);
            if let Some(batch) = decoder.read_record_batch(block, &bytes).map_err(corrupt)? {
                f(batch)?;
            }
            // The batch is dropped: the buffer is this one's alone again.
            reused = bytes.into_vec().unwrap_or_default();
        }
        Ok(())
    }
}

/// Fills `buf` from `file` at `offset`.
fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> Result<(), String> {
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| e.to_string())?;
    file.read_exact(buf).map_err(|e| format!("corrupt: {e}"))
}

/// The bytes of `block` (a message and its body), read into `buf`, when they lie before the
/// footer at `end`.
fn read_block(
    mut file: &File,
    end: u64,
    block: &Block,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let at = u64::try_from(block.offset()).ok();
    let len = (i64::from(block.metaDataLength()).checked_add(block.bodyLength()))
        .and_then(|n| u64::try_from(n).ok());
    let (Some(at), Some(len)) = (at, len) else {
        return Err("corrupt: a block's offset".into());
    };
    if at.checked_add(len).is_none_or(|e| e > end) {
        return Err("corrupt: a block outside the file".into());
    }
    // Read into the buffer's spare room: no zeros written first.
    buf.clear();
    buf.reserve_exact(len as usize);
    file.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
    let read = file
        .take(len)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if read as u64 != len {
        return Err("corrupt: truncated".into());
    }
    Ok(buf)
}

/// One column of the file as it is read, record batch by record batch.
enum Part {
    Rowids(Vec<i64>),
    Int(Vec<i64>),
    Scaled(i64, i64, Vec<i32>),
    Real(Vec<f64>),
    Text(Codes, Option<Arc<Dict>>),
}

impl Part {
    fn new(field: &ArrowField, ent: &Entity, rows: usize) -> Result<Part, String> {
        if field.name() == ROWID {
            return Ok(Part::Rowids(Vec::with_capacity(rows)));
        }
        let ty = (ent.field(field.name()))
            .ok_or_else(|| format!("stale: no field {}", field.name()))?
            .ty;
        Ok(match ty {
            FieldType::Integer | FieldType::Bool | FieldType::Time => {
                if *field.data_type() == DataType::Int32 {
                    let meta = |k: &str| field.metadata().get(k).and_then(|v| v.parse().ok());
                    let (Some(base), Some(scale)) = (meta(BASE), meta(SCALE)) else {
                        return Err(format!("corrupt: {} has no base and scale", field.name()));
                    };
                    if scale < 1 {
                        return Err(format!("corrupt: {} has scale {scale}", field.name()));
                    }
                    Part::Scaled(base, scale, Vec::with_capacity(rows))
                } else {
                    Part::Int(Vec::with_capacity(rows))
                }
            }
            FieldType::Real => Part::Real(Vec::with_capacity(rows)),
            FieldType::Text => match field.data_type() {
                DataType::Dictionary(key, _) if **key == DataType::UInt8 => {
                    Part::Text(Codes::Narrow(Vec::with_capacity(rows)), None)
                }
                _ => Part::Text(Codes::Wide(Vec::with_capacity(rows)), None),
            },
        })
    }

    fn append(&mut self, array: &ArrayRef) -> Result<(), String> {
        let wrong = || format!("corrupt: a column of type {}", array.data_type());
        match self {
            Part::Rowids(v) | Part::Int(v) => {
                let a = array
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .ok_or_else(wrong)?;
                v.extend_from_slice(a.values());
            }
            Part::Scaled(_, _, v) => {
                let a = array
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .ok_or_else(wrong)?;
                v.extend_from_slice(a.values());
            }
            Part::Real(v) => {
                let a = array
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or_else(wrong)?;
                v.extend_from_slice(a.values());
            }
            Part::Text(codes, dict) => {
                let any = array.as_any();
                let values = match codes {
                    Codes::Narrow(v) => {
                        let a =
                            (any.downcast_ref::<DictionaryArray<UInt8Type>>()).ok_or_else(wrong)?;
                        v.extend_from_slice(a.keys().values());
                        a.values()
                    }
                    Codes::Wide(v) => {
                        let a = (any.downcast_ref::<DictionaryArray<UInt32Type>>())
                            .ok_or_else(wrong)?;
                        v.extend_from_slice(a.keys().values());
                        a.values()
                    }
                };
                if dict.is_none() {
                    let values =
                        (values.as_any().downcast_ref::<StringArray>()).ok_or_else(wrong)?;
                    if values.null_count() > 0 {
                        return Err("corrupt: a null in a dictionary".into());
                    }
                    *dict = Some(Arc::new(Dict::read(values.clone())));
                }
            }
        }
        Ok(())
    }

    /// The column read (Err: the rowids), which must have `rows` rows.
    fn finish(self, rows: usize) -> Result<Result<Column, Vec<i64>>, String> {
        let (len, done) = match self {
            Part::Rowids(v) => (v.len(), Err(v)),
            Part::Int(v) => (v.len(), Ok(Column::Int(Ints::Wide(v)))),
            Part::Scaled(base, scale, steps) => (
                steps.len(),
                Ok(Column::Int(Ints::Scaled { base, scale, steps })),
            ),
            Part::Real(v) => (v.len(), Ok(Column::Real(v))),
            Part::Text(codes, dict) => (
                codes.len(),
                Ok(Column::Text {
                    codes,
                    dict: dict.unwrap_or_default(),
                }),
            ),
        };
        if len != rows {
            return Err(format!("corrupt: {len} rows, the footer says {rows}"));
        }
        Ok(done)
    }
}

/// Writes the snapshot of `columns` (the rows `rowids`) of `ent` tagged `tag`:
/// to a temporary file, fsynced, then renamed over the old one.
pub(super) fn write(
    dir: &Path,
    ent: &Entity,
    tag: &Tag,
    rowids: &Rowids,
    columns: &HashMap<String, Arc<Column>>,
) -> Result<u64, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = file_of(dir, &ent.name);
    let temp = dir.join(format!(
        ".{}.arrow.{}-{}.tmp",
        ent.name,
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = write_file(&temp, tag, rowids, columns)
        .and_then(|bytes| {
            fs::rename(&temp, &path).map_err(|e| e.to_string())?;
            // The rename itself made durable; not every filesystem can sync a directory.
            let _ = File::open(dir).and_then(|d| d.sync_all());
            Ok(bytes)
        })
        .map_err(|e| format!("{}: {e}", path.display()));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    remove_stale_temps(dir, &ent.name);
    written
}

/// [`write`], logging how long it took or why it failed.
pub(super) fn write_logged(
    dir: &Path,
    ent: &Entity,
    tag: &Tag,
    rowids: &Rowids,
    columns: &HashMap<String, Arc<Column>>,
) {
    let started = std::time::Instant::now();
    match write(dir, ent, tag, rowids, columns) {
        Ok(bytes) => {
            tracing::debug!(entity = %ent.name, generation = tag.generation, bytes, ms = started.elapsed().as_millis() as u64, "wrote column snapshot")
        }
        Err(e) => tracing::debug!(entity = %ent.name, "column snapshot not written: {e}"),
    }
}

/// Removes temporary files of `entity` left by a process that stopped while
/// writing (older than an hour: a write under way takes seconds).
fn remove_stale_temps(dir: &Path, entity: &str) {
    let prefix = format!(".{entity}.arrow.");
    let hour = std::time::Duration::from_secs(3600);
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let old = (entry.metadata().and_then(|m| m.modified()))
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > hour));
        if name.starts_with(&prefix) && name.ends_with(".tmp") && old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn write_file(
    temp: &Path,
    tag: &Tag,
    rowids: &Rowids,
    columns: &HashMap<String, Arc<Column>>,
) -> Result<u64, String> {
    let err = |e: arrow_schema::ArrowError| e.to_string();
    let mut names: Vec<&String> = columns.keys().collect();
    names.sort_unstable();
    let cols: Vec<(&str, &Column, Option<ArrayRef>)> = (names.iter())
        .map(|n| Ok((n.as_str(), &*columns[*n], dictionary(&columns[*n])?)))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    // Rowids 1..=n are the row count alone (the footer's): 8 bytes a row less to write and read.
    let listed = !matches!(rowids, Rowids::Dense(_)) || cols.is_empty();
    let mut fields = Vec::new();
    if listed {
        fields.push(ArrowField::new(ROWID, DataType::Int64, false));
    }
    fields.extend(cols.iter().map(|(name, c, _)| field(name, c)));
    let schema = Arc::new(ArrowSchema::new(fields));
    let file = File::create(temp).map_err(|e| e.to_string())?;
    let out = BufWriter::with_capacity(1 << 20, file);
    let mut writer = FileWriter::try_new(out, &schema).map_err(err)?;
    for (key, value) in tag.pairs() {
        writer.write_metadata(key, value);
    }
    writer.write_metadata("kpi.rows", rowids.len().to_string());
    writer.write_metadata("kpi.checksum", checksum(rowids, columns).to_string());
    // Record batches of CHUNK rows: writing copies one chunk at a time, not the table.
    for start in (0..rowids.len().max(1)).step_by(CHUNK) {
        let rows = start..rowids.len().min(start + CHUNK);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(cols.len() + 1);
        if listed {
            arrays.push(Arc::new(Int64Array::from(rowids.to_vec(rows.clone()))));
        }
        for (_, c, dict) in &cols {
            arrays.push(to_array(c, rows.clone(), dict.as_ref()).map_err(err)?);
        }
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(err)?;
        writer.write(&batch).map_err(err)?;
    }
    writer.finish().map_err(err)?;
    let file = (writer.into_inner().map_err(err)?)
        .into_inner()
        .map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(file.metadata().map_err(|e| e.to_string())?.len())
}

/// Rows per record batch.
const CHUNK: usize = 1 << 17;

/// The field of `column` named `name`; a scaled one carries its base and scale.
fn field(name: &str, column: &Column) -> ArrowField {
    let f = ArrowField::new(name, data_type(column), true);
    match column {
        Column::Int(v @ Ints::Scaled { .. }) => {
            let v = v.scaled();
            f.with_metadata(HashMap::from([
                (BASE.to_string(), v.base().to_string()),
                (SCALE.to_string(), v.scale().to_string()),
            ]))
        }
        _ => f,
    }
}

fn data_type(column: &Column) -> DataType {
    match column {
        Column::Int(Ints::Wide(_)) => DataType::Int64,
        Column::Int(Ints::Scaled { .. }) => DataType::Int32,
        Column::Real(_) => DataType::Float64,
        Column::Text { codes, .. } => {
            let key = match codes {
                Codes::Narrow(_) => DataType::UInt8,
                Codes::Wide(_) => DataType::UInt32,
            };
            DataType::Dictionary(Box::new(key), Box::new(DataType::Utf8))
        }
    }
}

/// The dictionary of a text column as one array every record batch shares
/// (so the file holds it once).
fn dictionary(column: &Column) -> Result<Option<ArrayRef>, arrow_schema::ArrowError> {
    Ok(match column {
        Column::Text { dict, .. } => Some(Arc::new(dict.to_array()?)),
        _ => None,
    })
}

fn to_array(
    column: &Column,
    rows: std::ops::Range<usize>,
    dict: Option<&ArrayRef>,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    Ok(match (column, dict) {
        (Column::Int(Ints::Wide(v)), _) => {
            let v = &v[rows];
            Arc::new(Int64Array::new(
                v.to_vec().into(),
                nulls(v, |x| *x != NULL_INT),
            ))
        }
        (Column::Int(Ints::Scaled { steps, .. }), _) => {
            let v = &steps[rows];
            Arc::new(Int32Array::new(
                v.to_vec().into(),
                nulls(v, |x| *x != SCALED_NULL),
            ))
        }
        (Column::Real(v), _) => {
            let v = &v[rows];
            Arc::new(Float64Array::new(
                v.to_vec().into(),
                nulls(v, |x| !x.is_nan()),
            ))
        }
        (Column::Text { codes, .. }, Some(dict)) => match codes {
            Codes::Narrow(v) => {
                let c = &v[rows];
                let keys = UInt8Array::new(c.to_vec().into(), nulls(c, |c| *c != NARROW_NULL));
                Arc::new(DictionaryArray::<UInt8Type>::try_new(keys, dict.clone())?)
            }
            Codes::Wide(v) => {
                let c = &v[rows];
                let keys = UInt32Array::new(c.to_vec().into(), nulls(c, |c| *c != NULL_CODE));
                Arc::new(DictionaryArray::<UInt32Type>::try_new(keys, dict.clone())?)
            }
        },
        (Column::Text { .. }, None) => unreachable!("a text column has its dictionary"),
    })
}

/// The validity bitmap of `v`, when any value is null.
fn nulls<T>(v: &[T], valid: impl Fn(&T) -> bool) -> Option<NullBuffer> {
    v.iter()
        .any(|x| !valid(x))
        .then(|| NullBuffer::from_iter(v.iter().map(valid)))
}

/// A 64-bit checksum of the rows and every column (names, values, codes and
/// dictionary texts), as decoded, each in its in-memory form (which the file
/// keeps): what the file must give back.
fn checksum(rowids: &Rowids, columns: &HashMap<String, Arc<Column>>) -> u64 {
    let mut sum = Sum::default();
    match rowids {
        // 1..=n: the count says it (a listed one is never 1..=n).
        Rowids::Dense(n) => sum.words(&[*n as u64, u64::MAX], |x| x),
        Rowids::Listed(v) => sum.words(v, |r| r as u64),
    }
    let mut names: Vec<&String> = columns.keys().collect();
    names.sort_unstable();
    for name in names {
        sum.bytes(name.as_bytes());
        match &*columns[name] {
            Column::Int(Ints::Wide(v)) => sum.words(v, |x| x as u64),
            Column::Int(v @ Ints::Scaled { .. }) => {
                let v = v.scaled();
                sum.words(&[v.base(), v.scale()], |x| x as u64);
                sum.packed::<_, 2>(v.steps(), |n| u64::from(n as u32));
            }
            Column::Real(v) => sum.words(v, f64::to_bits),
            Column::Text { codes, dict } => {
                match codes {
                    Codes::Narrow(v) => sum.packed::<_, 8>(v, u64::from),
                    Codes::Wide(v) => sum.words(v, u64::from),
                }
                // The values' lengths, two to a word, and their bytes, eight to a word.
                let (bytes, len) = match dict.raw() {
                    RawDict::Built(bytes, ends) => {
                        let lens = ends
                            .iter()
                            .scan(0, |at, &e| Some(e - std::mem::replace(at, e)));
                        sum.lengths(lens);
                        (bytes, ends.last().map_or(0, |e| *e as usize))
                    }
                    RawDict::Array(bytes, offsets) => {
                        sum.lengths(offsets.windows(2).map(|w| (w[1] - w[0]) as u32));
                        let start = offsets.first().map_or(0, |o| *o as usize);
                        (bytes, offsets.last().map_or(0, |e| *e as usize - start))
                    }
                };
                sum.packed::<_, 8>(&bytes[..len], u64::from);
            }
        }
    }
    sum.finish()
}

/// Four independent multiply-rotate lanes (each step a bijection of the
/// state, so any single changed word changes the result), combined at the
/// end; a column feeds them four words at a time, so the multiplications
/// overlap.
#[derive(Default)]
struct Sum {
    lanes: [u64; 4],
    n: u64,
}

impl Sum {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn step(h: u64, w: u64) -> u64 {
        (h.rotate_left(23) ^ w).wrapping_mul(Self::K)
    }

    fn words<T: Copy>(&mut self, v: &[T], word: impl Fn(T) -> u64) {
        self.packed::<T, 1>(v, word);
    }

    /// `v`, `N` values to a word (`raw` of each in `64 / N` bits of it; a short last word
    /// padded with zeros), four words at a time: one-byte codes take an eighth of the steps.
    fn packed<T: Copy, const N: usize>(&mut self, v: &[T], raw: impl Fn(T) -> u64) {
        let word =
            |c: &[T]| (c.iter().enumerate()).fold(0u64, |w, (i, x)| w | raw(*x) << (i * (64 / N)));
        let mut chunks = v.chunks_exact(4 * N);
        let [mut a, mut b, mut c, mut d] = self.lanes;
        for w in &mut chunks {
            a = Self::step(a, word(&w[..N]));
            b = Self::step(b, word(&w[N..2 * N]));
            c = Self::step(c, word(&w[2 * N..3 * N]));
            d = Self::step(d, word(&w[3 * N..]));
        }
        for w in chunks.remainder().chunks(N) {
            a = Self::step(a, word(w));
        }
        self.lanes = [a, b, c, d];
        self.n += v.len() as u64;
    }

    /// `lens`, two to a word, four words at a time.
    fn lengths(&mut self, lens: impl Iterator<Item = u32>) {
        let (mut lanes, mut word, mut n) = (self.lanes, 0u64, 0u64);
        for l in lens {
            word |= u64::from(l) << (n % 2 * 32);
            if n % 2 == 1 {
                let lane = (n / 2 % 4) as usize;
                lanes[lane] = Self::step(lanes[lane], std::mem::take(&mut word));
            }
            n += 1;
        }
        if n % 2 == 1 {
            let lane = (n / 2 % 4) as usize;
            lanes[lane] = Self::step(lanes[lane], word);
        }
        self.lanes = lanes;
        self.n += n;
    }

    fn bytes(&mut self, b: &[u8]) {
        let mut h = Self::step(self.lanes[0], b.len() as u64);
        for c in b.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            h = Self::step(h, u64::from_le_bytes(w));
        }
        self.lanes[0] = h;
        self.n += 1;
    }

    fn finish(&self) -> u64 {
        (self.lanes.iter()).fold(self.n, |h, l| Self::step(h, *l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::toml_doc::Source;
    use crate::store::schema::Schema;
    use arrow_ipc::reader::FileReader;

    fn entity() -> Entity {
        let text = "[entity.teams.fields]\nname = \"text\"\nparent = \"text?\"\n\
            [entity.deals]\nteam_field = \"team\"\n[entity.deals.fields]\nteam = \"text\"\n\
            stage = \"text?\"\namount = \"real?\"\nclosed_at = \"time?\"\nwon = \"bool?\"\n\
            seats = \"integer?\"\n";
        let schema = Schema::from_source(&Source::new("schema.toml", text)).unwrap();
        schema.entity("deals").unwrap().clone()
    }

    fn tag() -> Tag {
        Tag {
            database: "db1".into(),
            generation: 7,
            max_rowid: 9,
            fields: fingerprint(&entity()),
        }
    }

    /// Every column type, with nulls, a dictionary with a value no row uses,
    /// and a text column of nulls only.
    fn columns() -> Columns {
        let dict = |v: &[&str]| Arc::new(Dict::from_values(v.iter().copied()));
        let cols: [(&str, Column); 7] = [
            (
                "id",
                Column::Text {
                    codes: vec![0, 1, 2].into(),
                    dict: dict(&["a", "b", "c"]),
                },
            ),
            (
                "team",
                Column::Text {
                    codes: vec![1, NULL_CODE, 1].into(),
                    dict: dict(&["x", "北京", "y"]),
                },
            ),
            (
                "stage",
                Column::Text {
                    codes: vec![NULL_CODE; 3].into(),
                    dict: dict(&[]),
                },
            ),
            ("amount", Column::Real(vec![1.5, f64::NAN, -0.0])),
            (
                "closed_at",
                Column::Int(vec![NULL_INT, 1_700_000_000_000, -5].into()),
            ),
            ("won", Column::Int(vec![1, 0, NULL_INT].into())),
            ("seats", Column::Int(vec![i64::MAX, 0, 3].into())),
        ];
        let cols = cols
            .into_iter()
            .map(|(k, c)| (k.to_string(), Arc::new(c)))
            .collect();
        (Rowids::Listed(vec![1, 4, 9]), cols)
    }

    /// Every cell as text (reals by their bits), for comparing column sets.
    fn dump((rowids, cols): &Columns) -> Vec<String> {
        let mut out = vec![format!("{rowids:?}")];
        let mut names: Vec<&String> = cols.keys().collect();
        names.sort();
        for n in names {
            out.push(match &*cols[n] {
                Column::Int(v) => format!("{n} int {v:?}"),
                Column::Real(v) => format!(
                    "{n} real {:?}",
                    v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                ),
                Column::Text { codes, dict } => format!("{n} text {codes:?} {dict:?}"),
            });
        }
        out
    }

    fn written() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (rowids, cols) = columns();
        write(dir.path(), &entity(), &tag(), &rowids, &cols).unwrap();
        let file = file_of(dir.path(), "deals");
        (dir, file)
    }

    #[test]
    fn every_column_type_comes_back_as_written() {
        let (dir, _) = written();
        let read = read(dir.path(), &entity(), &tag()).expect("valid");
        assert_eq!(dump(&read), dump(&columns()));
        // The dictionary keeps its codes and its index works after the read.
        let Column::Text { dict, .. } = &*read.1["team"] else {
            panic!()
        };
        assert_eq!(dict.code("北京"), Some(1));
        assert_eq!(dict.code("z"), None);
        // Nothing but the file itself is left in the directory.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["deals.arrow"]);
    }

    #[test]
    fn a_table_of_several_record_batches_comes_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let n = 2 * CHUNK + 5;
        let names: Vec<String> = (0..n / 3).map(|i| format!("deal-{i}")).collect();
        let dict = Arc::new(Dict::from_values(names.iter().map(String::as_str)));
        let codes = (0..n)
            .map(|i| {
                if i % 7 == 0 {
                    NULL_CODE
                } else {
                    (i / 3) as u32
                }
            })
            .collect::<Vec<u32>>()
            .into();
        let mut cols = HashMap::new();
        cols.insert("team".to_string(), Arc::new(Column::Text { codes, dict }));
        let times = (0..n as i64)
            .map(|i| if i % 5 == 0 { NULL_INT } else { i * 1000 })
            .collect::<Vec<i64>>()
            .into();
        cols.insert("closed_at".to_string(), Arc::new(Column::Int(times)));
        let rowids = Rowids::Dense(n);
        let tag = Tag {
            max_rowid: n as i64,
            ..tag()
        };
        write(dir.path(), &entity(), &tag, &rowids, &cols).unwrap();
        let read = read(dir.path(), &entity(), &tag).expect("valid");
        assert_eq!(dump(&read), dump(&(rowids.clone(), cols)));
        let file = File::open(file_of(dir.path(), "deals")).unwrap();
        let schema = FileReader::try_new(file, None).unwrap().schema();
        assert!(
            schema.field_with_name(ROWID).is_err(),
            "rowids 1..=n are the count alone"
        );

        // With no column to carry the row count, the rowids are written.
        let empty = HashMap::new();
        write(dir.path(), &entity(), &tag, &rowids, &empty).unwrap();
        let read = super::read(dir.path(), &entity(), &tag).expect("valid");
        assert_eq!(dump(&read), dump(&(Rowids::Dense(n), empty)));
    }

    #[test]
    fn another_generation_database_rowid_or_definition_is_not_used() {
        let (dir, _) = written();
        let other = [
            Tag {
                generation: 8,
                ..tag()
            },
            Tag {
                database: "db2".into(),
                ..tag()
            },
            Tag {
                max_rowid: 10,
                ..tag()
            },
            Tag {
                fields: "id:text,team:text,stage:integer".into(),
                ..tag()
            },
        ];
        for want in other {
            assert!(read(dir.path(), &entity(), &want).is_none(), "{want:?}");
        }
        assert!(read(dir.path(), &entity(), &tag()).is_some());
    }

    #[test]
    fn a_damaged_or_truncated_file_is_not_used() {
        let (dir, file) = written();
        let good = fs::read(&file).unwrap();
        // Any single byte of the body, the footer or the schema flipped.
        let mut used = Vec::new();
        for at in (0..good.len()).step_by(7) {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            fs::write(&file, &bad).unwrap();
            if let Some(c) = read(dir.path(), &entity(), &tag()) {
                // A flip in padding or in bytes nobody reads may go unnoticed; the columns may not change.
                if dump(&c) != dump(&columns()) {
                    used.push(at);
                }
            }
        }
        assert!(used.is_empty(), "damaged columns used at {used:?}");
        fs::write(&file, &good[..good.len() - 20]).unwrap();
        assert!(read(dir.path(), &entity(), &tag()).is_none());
        fs::write(&file, b"").unwrap();
        assert!(read(dir.path(), &entity(), &tag()).is_none());
    }

    #[test]
    fn an_unknown_version_is_not_used() {
        let (dir, file) = written();
        // The same file with the version in its footer changed (to the first layout's).
        let mut reader = FileReader::try_new(File::open(&file).unwrap(), None).unwrap();
        let meta = reader.custom_metadata().clone();
        let batch = reader.next().unwrap().unwrap();
        let mut w = FileWriter::try_new(File::create(&file).unwrap(), &batch.schema()).unwrap();
        for (k, v) in meta {
            w.write_metadata(k.clone(), if k == "kpi.snapshot" { "1".into() } else { v });
        }
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        assert!(read(dir.path(), &entity(), &tag()).is_none());
    }

    #[test]
    fn the_database_id_is_made_once() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(database_id(&conn, false).unwrap(), None);
        let id = database_id(&conn, true).unwrap().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(database_id(&conn, true).unwrap(), Some(id.clone()));
        assert_eq!(database_id(&conn, false).unwrap(), Some(id));
        let other = Connection::open_in_memory().unwrap();
        assert_ne!(
            database_id(&other, true).unwrap(),
            database_id(&conn, false).unwrap()
        );
    }
}
