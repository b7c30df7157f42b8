//! The record store: schema, SQLite tables, import, and the in-memory column
//! snapshot that queries run over.

pub mod bulk;
pub mod columns;
pub mod db;
pub mod history;
pub mod import;
pub mod schema;
pub mod value;

pub use schema::{Entity, Field, FieldType, Schema};
pub use value::Value;

/// Errors of the record store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {0}: {1}")]
    Open(String, String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("schema change refused: {}", .0.join("; "))]
    Schema(Vec<String>),
    /// Bad rows: the first messages (at most 100 rows' worth) and the true count.
    #[error("{}\n{bad_rows} bad row(s)", messages.join("\n"))]
    Import {
        bad_rows: usize,
        messages: Vec<String>,
    },
    #[error("{0}")]
    Other(String),
}
