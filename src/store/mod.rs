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
    #[error("{}", .0.join("\n"))]
    Import(Vec<String>),
    #[error("{0}")]
    Other(String),
}
