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
//! Layout: one record batch; `_rowid` (Int64), then one column per loaded field
//! in name order: Int64 for integer, bool and time (ms) fields, Float64 for
//! reals, Dictionary(UInt32, Utf8) for text (the in-memory codes and
//! dictionary as they are, so opening interns nothing). Nulls have a validity
//! bitmap and keep the in-memory sentinel in their slot.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::types::UInt32Type;
use arrow_array::{
    Array, ArrayRef, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    UInt32Array,
};
use arrow_buffer::NullBuffer;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field as ArrowField, Schema as ArrowSchema};
use rusqlite::{Connection, OptionalExtension};

use super::column::{Column, Dict, NULL_CODE, NULL_INT};
use crate::store::schema::{Entity, FieldType};

/// The layout version written in every footer; another one is ignored.
const VERSION: &str = "1";
/// The `_kpi_meta` key of the database's random id.
const DATABASE_ID: &str = "columns_database_id";
const ROWID: &str = "_rowid";
/// Setting this environment variable to `off` disables reading and writing snapshots.
pub const ENV: &str = "KPI_COLUMN_SNAPSHOT";

/// Row ids in rowid order, and the columns by field name.
pub(super) type Columns = (Vec<i64>, HashMap<String, Arc<Column>>);

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

fn file_of(dir: &Path, entity: &str) -> PathBuf {
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
    match decode(file, ent, want) {
        Ok(c) => Some(c),
        Err(why) => {
            tracing::debug!(path = %path.display(), "column snapshot not used: {why}");
            None
        }
    }
}

fn decode(file: File, ent: &Entity, want: &Tag) -> Result<Columns, String> {
    let mut reader =
        FileReader::try_new(BufReader::new(file), None).map_err(|e| format!("corrupt: {e}"))?;
    let meta = reader.custom_metadata().clone();
    let got = |k: &str| meta.get(k).map(String::as_str).unwrap_or("");
    if got("kpi.snapshot") != VERSION {
        return Err(format!("unknown version {:?}", got("kpi.snapshot")));
    }
    for (key, value) in want.pairs() {
        if got(key) != value {
            return Err(format!("stale: {key} is {:?}, now {value:?}", got(key)));
        }
    }
    let batch = match (reader.next(), reader.next()) {
        (Some(b), None) => b.map_err(|e| format!("corrupt: {e}"))?,
        _ => return Err("corrupt: not one record batch".into()),
    };
    let columns = from_batch(&batch, ent)?;
    let sum = checksum(&columns.0, &columns.1);
    if got("kpi.checksum") != sum.to_string() {
        return Err("corrupt: checksum mismatch".into());
    }
    Ok(columns)
}

fn from_batch(batch: &RecordBatch, ent: &Entity) -> Result<Columns, String> {
    let mut rowids = None;
    let mut columns = HashMap::new();
    for (field, array) in batch.schema().fields().iter().zip(batch.columns()) {
        let name = field.name();
        if name == ROWID {
            rowids = Some(ints(array)?);
            continue;
        }
        let ty = ent
            .field(name)
            .ok_or_else(|| format!("stale: no field {name}"))?
            .ty;
        columns.insert(name.clone(), Arc::new(column(array, ty)?));
    }
    Ok((rowids.ok_or("corrupt: no rowids")?, columns))
}

fn column(array: &ArrayRef, ty: FieldType) -> Result<Column, String> {
    Ok(match ty {
        FieldType::Integer | FieldType::Bool | FieldType::Time => Column::Int(ints(array)?),
        FieldType::Real => Column::Real(
            array
                .as_any()
                .downcast_ref::<Float64Array>()
                .ok_or("corrupt: a real column is not Float64")?
                .values()
                .to_vec(),
        ),
        FieldType::Text => {
            let dict = array
                .as_any()
                .downcast_ref::<DictionaryArray<UInt32Type>>()
                .ok_or("corrupt: a text column is not a dictionary")?;
            let values = dict
                .values()
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or("corrupt: a dictionary is not Utf8")?;
            if values.null_count() > 0 {
                return Err("corrupt: a null in a dictionary".into());
            }
            Column::Text {
                codes: dict.keys().values().to_vec(),
                dict: Arc::new(Dict::from_values(values.iter().flatten().map(Arc::from))),
            }
        }
    })
}

fn ints(array: &ArrayRef) -> Result<Vec<i64>, String> {
    Ok(array
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or("corrupt: an integer column is not Int64")?
        .values()
        .to_vec())
}

/// Writes the snapshot of `columns` (the rows `rowids`) of `ent` tagged `tag`:
/// to a temporary file, fsynced, then renamed over the old one.
pub(super) fn write(
    dir: &Path,
    ent: &Entity,
    tag: &Tag,
    rowids: &[i64],
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
    written
}

fn write_file(
    temp: &Path,
    tag: &Tag,
    rowids: &[i64],
    columns: &HashMap<String, Arc<Column>>,
) -> Result<u64, String> {
    let batch = to_batch(rowids, columns).map_err(|e| e.to_string())?;
    let file = File::create(temp).map_err(|e| e.to_string())?;
    let out = BufWriter::with_capacity(1 << 20, file);
    let mut writer = FileWriter::try_new(out, &batch.schema()).map_err(|e| e.to_string())?;
    for (key, value) in tag.pairs() {
        writer.write_metadata(key, value);
    }
    writer.write_metadata("kpi.checksum", checksum(rowids, columns).to_string());
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    let file = writer
        .into_inner()
        .map_err(|e| e.to_string())?
        .into_inner()
        .map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    Ok(file.metadata().map_err(|e| e.to_string())?.len())
}

fn to_batch(
    rowids: &[i64],
    columns: &HashMap<String, Arc<Column>>,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut names: Vec<&String> = columns.keys().collect();
    names.sort_unstable();
    let mut fields = vec![ArrowField::new(ROWID, DataType::Int64, false)];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(rowids.to_vec()))];
    for name in names {
        let array = to_array(&columns[name])?;
        fields.push(ArrowField::new(
            name.as_str(),
            array.data_type().clone(),
            true,
        ));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays)
}

fn to_array(column: &Column) -> Result<ArrayRef, arrow_schema::ArrowError> {
    Ok(match column {
        Column::Int(v) => Arc::new(Int64Array::new(
            v.clone().into(),
            nulls(v, |x| *x != NULL_INT),
        )),
        Column::Real(v) => Arc::new(Float64Array::new(
            v.clone().into(),
            nulls(v, |x| !x.is_nan()),
        )),
        Column::Text { codes, dict } => {
            let keys = UInt32Array::new(codes.clone().into(), nulls(codes, |c| *c != NULL_CODE));
            let values = StringArray::from_iter_values(dict.values.iter().map(|s| &**s));
            Arc::new(DictionaryArray::<UInt32Type>::try_new(
                keys,
                Arc::new(values),
            )?)
        }
    })
}

/// The validity bitmap of `v`, when any value is null.
fn nulls<T>(v: &[T], valid: impl Fn(&T) -> bool) -> Option<NullBuffer> {
    v.iter()
        .any(|x| !valid(x))
        .then(|| NullBuffer::from_iter(v.iter().map(valid)))
}

/// A 64-bit checksum of the rows and every column (names, values, codes and
/// dictionary texts), as decoded: what the file must give back.
fn checksum(rowids: &[i64], columns: &HashMap<String, Arc<Column>>) -> u64 {
    let mut sum = Sum::default();
    sum.words(rowids.iter().map(|r| *r as u64));
    let mut names: Vec<&String> = columns.keys().collect();
    names.sort_unstable();
    for name in names {
        sum.bytes(name.as_bytes());
        match &*columns[name] {
            Column::Int(v) => sum.words(v.iter().map(|x| *x as u64)),
            Column::Real(v) => sum.words(v.iter().map(|x| x.to_bits())),
            Column::Text { codes, dict } => {
                sum.words(codes.iter().map(|c| u64::from(*c)));
                for s in &dict.values {
                    sum.bytes(s.as_bytes());
                }
            }
        }
    }
    sum.finish()
}

/// Four independent multiply-rotate lanes (each step a bijection of the
/// state, so any single changed word changes the result), combined at the end.
#[derive(Default)]
struct Sum {
    lanes: [u64; 4],
    n: usize,
}

impl Sum {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    fn words(&mut self, words: impl Iterator<Item = u64>) {
        for w in words {
            let lane = &mut self.lanes[self.n & 3];
            *lane = (lane.rotate_left(23) ^ w).wrapping_mul(Self::K);
            self.n += 1;
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.words(std::iter::once(b.len() as u64));
        self.words(b.chunks(8).map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        }));
    }

    fn finish(&self) -> u64 {
        self.lanes
            .iter()
            .fold(self.n as u64, |h, l| (h.rotate_left(23) ^ l).wrapping_mul(Self::K))
    }
}
