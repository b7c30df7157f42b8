//! The record store: schema, SQLite tables, import, and the in-memory column
//! store that queries run over.
//!
//! Evaluation sees a store only through [`RecordStore`]: the team tree and the
//! answer to one query shape for every team × period. The embedded store
//! ([`columns::ColumnStore`]) answers from in-memory columns; a store that
//! pushes shapes down to a database server is another implementation of the
//! same trait.

pub mod columns;
pub mod config_history;
pub mod db;
pub mod demo_writer;
pub mod engine_db;
pub mod frozen;
pub mod import;
pub mod owners;
pub mod pg;
pub mod schema;
pub mod teams;
pub mod value;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use owners::Owners;
pub use schema::{Entity, Field, FieldType, NameError, Schema};
pub use teams::TeamTree;
pub use value::Value;

use crate::period::{Calendar, PeriodId};
use crate::query::{Agg, Query, QueryError, RecordPage, ShapeResult};

/// What evaluation needs of a record store.
pub trait RecordStore: Send + Sync {
    /// The schema the store's tables follow.
    fn schema(&self) -> &Schema;
    /// The team tree.
    fn teams(&self) -> Result<Arc<TeamTree>, StoreError>;
    /// The people records belong to (none when the schema has no `owners`).
    fn owners(&self) -> Result<Arc<Owners>, StoreError>;
    /// `query` + `agg` for every team and every period of `periods`.
    fn answer(
        &self,
        query: &Query,
        agg: &Agg,
        periods: &[PeriodId],
        cal: &Calendar,
    ) -> Result<ShapeResult, QueryError>;
    /// The first `limit` records that `query` + `agg` counts for one team (its subtree) or
    /// person (`slot`, as in an answer) in `period`, and how many there are in all.
    #[allow(clippy::too_many_arguments)]
    fn records(
        &self,
        query: &Query,
        agg: &Agg,
        period: PeriodId,
        slot: u32,
        cal: &Calendar,
        limit: usize,
    ) -> Result<RecordPage, QueryError>;
    /// Whether `entity` holds any record at all.
    fn holds_records(&self, entity: &str) -> Result<bool, StoreError>;
    /// Changes when answers given before may be stale for a reason the engine
    /// did not cause (another writer changed the rows underneath).
    fn epoch(&self) -> u64;

    // Keeping the store in step with the changes the engine makes.

    /// Reads ahead what formulas will ask for (`fields` by entity; only
    /// `entity`'s when given), so that the first request does not pay for it.
    fn warm(
        &self,
        fields: &BTreeMap<String, Vec<String>>,
        entity: Option<&str>,
    ) -> Result<(), StoreError>;
    /// The store for a new schema over the same database, keeping what it can.
    fn derive(
        &self,
        schema: Arc<Schema>,
        fields: &BTreeMap<String, Vec<String>>,
    ) -> Arc<dyn RecordStore>;
    /// The store after records of `entity` (their ids, when few enough to
    /// list) were upserted into the database.
    fn after_upsert(
        &self,
        entity: &str,
        ids: Option<&[String]>,
    ) -> Result<Arc<dyn RecordStore>, StoreError>;
}

/// Errors of the record store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {0}: {1}")]
    Open(String, String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database error: {0}")]
    Postgres(String),
    #[error("schema change refused: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Schema(Vec<db::Refusal>),
    /// Bad rows: the first messages (at most 100 rows' worth) and the true count.
    #[error("{}\n{bad_rows} bad row(s)", messages.join("\n"))]
    Import {
        bad_rows: usize,
        messages: Vec<String>,
    },
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{label}: cannot read: {message}")]
    Read { label: String, message: String },
}
