//! Reading columns out of SQLite: one scan of a table for the fields asked for.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::column::{Codes, Column, Dict, Ints, NULL_CODE, NULL_INT, Rowids};
use crate::store::StoreError;
use crate::store::schema::{Entity, FieldType};

/// Columns read out of SQLite.
pub(super) struct Loaded {
    /// Row ids in rowid order.
    pub rowids: Rowids,
    /// The columns read, by field name.
    pub columns: HashMap<String, Arc<Column>>,
    /// The entity's `_kpi_data` generation, read in the same transaction.
    pub generation: i64,
}

/// Reads `fields` of every row of `entity` in rowid order, and the entity's
/// generation as of the same read.
pub(super) fn load_columns(
    conn: &Connection,
    entity: &Entity,
    fields: &[&str],
) -> Result<Loaded, StoreError> {
    let started = std::time::Instant::now();
    // One read transaction: the generation is the one the rows are at.
    let tx = if conn.is_autocommit() {
        Some(conn.unchecked_transaction()?)
    } else {
        None
    };
    let generation = super::snapshot::generation(conn, &entity.name)?;
    let (rowids, columns) = read_columns(conn, entity, fields)?;
    drop(tx);
    tracing::debug!(entity = %entity.name, source = "sqlite", ?fields, rows = rowids.len(), ms = started.elapsed().as_millis() as u64, "loaded columns");
    Ok(Loaded {
        rowids,
        columns,
        generation,
    })
}

fn read_columns(
    conn: &Connection,
    entity: &Entity,
    fields: &[&str],
) -> Result<super::snapshot::Columns, StoreError> {
    let mut types = Vec::with_capacity(fields.len());
    for f in fields {
        let field = entity.field(f).ok_or_else(|| entity.unknown_field(f))?;
        types.push(field.ty);
    }
    let select: Vec<String> = fields.iter().map(|f| format!("\"{f}\"")).collect();
    let sql = format!(
        "SELECT rowid{}{} FROM \"{}\" ORDER BY rowid",
        if select.is_empty() { "" } else { ", " },
        select.join(", "),
        entity.name
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut builders: Vec<Builder> = types.iter().map(|t| Builder::new(*t)).collect();
    let mut rowids = Rowids::Dense(0);
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        rowids.push(row.get::<_, i64>(0)?);
        for (i, b) in builders.iter_mut().enumerate() {
            b.push(row.get_ref(i + 1)?);
        }
    }
    let columns = fields
        .iter()
        .map(|f| f.to_string())
        .zip(builders.into_iter().map(|b| Arc::new(b.finish())))
        .collect();
    Ok((rowids, columns))
}

enum Builder {
    Int(Vec<i64>),
    Real(Vec<f64>),
    Text(Codes, Dict),
}

impl Builder {
    fn new(ty: FieldType) -> Builder {
        match ty {
            FieldType::Text => Builder::Text(Codes::default(), Dict::default()),
            FieldType::Real => Builder::Real(Vec::new()),
            FieldType::Integer | FieldType::Bool | FieldType::Time => Builder::Int(Vec::new()),
        }
    }

    fn push(&mut self, v: ValueRef<'_>) {
        match self {
            Builder::Int(col) => col.push(int_value(v)),
            Builder::Real(col) => col.push(real_value(v)),
            Builder::Text(codes, dict) => codes.push(match v {
                // Rows of one parent often come together (a deal's stage events): try the last value first.
                ValueRef::Text(t)
                    if codes
                        .last()
                        .is_some_and(|c| c != NULL_CODE && dict.get(c).as_bytes() == t) =>
                {
                    codes.last().expect("checked")
                }
                v => match text_value(v) {
                    Some(s) => dict.intern(&s),
                    None => NULL_CODE,
                },
            }),
        }
    }

    fn finish(self) -> Column {
        match self {
            Builder::Int(v) => Column::Int(Ints::from(v)),
            Builder::Real(v) => Column::Real(v),
            Builder::Text(codes, mut dict) => Column::Text {
                codes,
                dict: Arc::new({
                    dict.freeze();
                    dict
                }),
            },
        }
    }
}

/// An integer, bool or time cell ([`NULL_INT`] for NULL).
pub(super) fn int_value(v: ValueRef<'_>) -> i64 {
    match v {
        ValueRef::Integer(i) => i,
        ValueRef::Real(f) => f as i64,
        _ => NULL_INT,
    }
}

/// A real cell (NaN for NULL).
pub(super) fn real_value(v: ValueRef<'_>) -> f64 {
    match v {
        ValueRef::Integer(i) => i as f64,
        ValueRef::Real(f) => f,
        _ => f64::NAN,
    }
}

/// A text cell as text (None for NULL and blobs).
pub(super) fn text_value(v: ValueRef<'_>) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t)),
        ValueRef::Integer(i) => Some(i.to_string().into()),
        ValueRef::Real(f) => Some(f.to_string().into()),
        _ => None,
    }
}
