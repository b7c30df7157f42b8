//! Patching a loaded table after an upsert: the upserted rows are read back
//! by id and copied into new columns, so an ingest does not read the whole
//! table again.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::column::{Column, NULL_CODE, Table, extended};
use super::load::{int_value, real_value, text_value};
use crate::store::StoreError;
use crate::store::schema::Entity;

/// Rows read back by [`patch`]: rowid and the cells of the loaded columns.
type ReadBack = Vec<(i64, Vec<rusqlite::types::Value>)>;

/// At most this many ids in one `IN (…)` list.
const IDS_PER_QUERY: usize = 500;

/// `old` with the rows of `ids` read again (updates in place, inserts
/// appended), as a new table; the columns of `old` are not touched. None when
/// a row's rowid is neither one of the table's nor past its last.
pub(super) fn patch(
    conn: &Connection,
    ent: &Entity,
    old: &Table,
    ids: &[String],
) -> Result<Option<Table>, StoreError> {
    let columns: Vec<(String, Arc<Column>)> = old
        .columns
        .read()
        .expect("columns lock")
        .iter()
        .map(|(k, c)| (k.clone(), c.clone()))
        .collect();
    let select: String = columns
        .iter()
        .map(|(name, _)| format!(", \"{name}\""))
        .collect();
    let mut rows: ReadBack = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "SELECT rowid{select} FROM \"{}\" WHERE \"id\" IN ({})",
            ent.name,
            marks.join(", ")
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut q = stmt.query(rusqlite::params_from_iter(chunk))?;
        while let Some(r) = q.next()? {
            let cells = (1..=columns.len())
                .map(|i| r.get::<_, rusqlite::types::Value>(i))
                .collect::<Result<Vec<_>, _>>()?;
            rows.push((r.get(0)?, cells));
        }
    }
    rows.sort_by_key(|r| r.0);
    rows.dedup_by_key(|r| r.0);
    // Where each row goes: its old position, or appended.
    let mut rowids = old.rowids.clone();
    let mut at = Vec::with_capacity(rows.len());
    for (rowid, _) in &rows {
        match old.rowids.position(*rowid) {
            Ok(p) => at.push(p),
            Err(_) if rowids.last().is_none_or(|last| *rowid > last) => {
                at.push(rowids.len());
                rowids.push(*rowid);
            }
            Err(_) => return Ok(None),
        }
    }
    let len = rowids.len();
    let cell = |i: usize| {
        at.iter()
            .zip(&rows)
            .map(move |(pos, (_, cells))| (*pos, ValueRef::from(&cells[i])))
    };
    let grows = len > old.rowids.len();
    let mut patched: HashMap<String, Arc<Column>> = HashMap::with_capacity(columns.len());
    for (i, (name, col)) in columns.iter().enumerate() {
        if !grows && cell(i).all(|(p, x)| unchanged(col, p, x)) {
            // A record sent again as it was: the column is shared, not copied.
            patched.insert(name.clone(), col.clone());
            continue;
        }
        let new = match &**col {
            Column::Int(v) => {
                let mut v = v.extended(len);
                cell(i).for_each(|(p, x)| v.set(p, int_value(x)));
                Column::Int(v)
            }
            Column::Real(v) => {
                let mut v = extended(v, len, f64::NAN);
                cell(i).for_each(|(p, x)| v[p] = real_value(x));
                Column::Real(v)
            }
            Column::Text { codes, dict } => {
                let mut codes = codes.extended(len);
                let mut dict = dict.clone();
                for (p, x) in cell(i) {
                    let code = match text_value(x) {
                        None => NULL_CODE,
                        Some(s) => match dict.code(&s) {
                            Some(c) => c,
                            None => Arc::make_mut(&mut dict).intern(&s),
                        },
                    };
                    codes.set(p, code);
                }
                if let Some(d) = Arc::get_mut(&mut dict) {
                    d.freeze(); // the copy made for a new value
                }
                Column::Text { codes, dict }
            }
        };
        patched.insert(name.clone(), Arc::new(new));
    }
    // The team index, when the old one was computed: shared if the team column is.
    let team_rows = OnceLock::new();
    let same_teams = ent.team_column().is_some_and(|f| {
        let (new, was) = (patched.get(f), columns.iter().find(|(n, _)| n == f));
        new.zip(was)
            .is_some_and(|(new, (_, was))| Arc::ptr_eq(new, was))
    });
    if let Some(old_rows) = old.team_rows.get().filter(|_| same_teams) {
        let _ = team_rows.set(old_rows.clone());
    }
    Ok(Some(Table {
        entity: old.entity.clone(),
        rowids,
        columns: RwLock::new(patched),
        team_rows,
        owner_rows: OnceLock::new(),
        generation: None,
    }))
}

/// Whether row `p` of `col` already holds `x`.
fn unchanged(col: &Column, p: usize, x: ValueRef<'_>) -> bool {
    match col {
        Column::Int(v) => v.get(p) == int_value(x),
        Column::Real(v) => v[p].to_bits() == real_value(x).to_bits(),
        Column::Text { codes, dict } => match (codes.get(p), text_value(x)) {
            (NULL_CODE, None) => true,
            (NULL_CODE, Some(_)) | (_, None) => false,
            (c, Some(s)) => dict.get(c) == s,
        },
    }
}
