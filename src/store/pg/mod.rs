//! PostgreSQL as the record store (SPEC 20): `--db postgres://user:pass@host:port/db`.
//!
//! [`PgStore`] implements [`RecordStore`] by pushing every query shape down:
//! [`sql::compile`] turns (query, aggregate) into one statement that
//! PostgreSQL answers for all teams × periods at once, and only the grouped
//! answers (one row per team or person × period, or per distinct value for
//! `values`/`count_by`) come back. No table is read whole into the engine's
//! memory; the team tree and the people are the only records it holds. The
//! records behind one value (the dashboard's list and CSV) are one page of
//! rows under the same filters ([`sql::compile_records`]).
//!
//! The parts: [`sql`] holds every statement; `migrate` brings the database in
//! line with the schema (additions applied, destructive changes refused with
//! the SQLite store's messages, through the same `db::plan`); `stage` writes
//! imports and the demo (checked by the SQLite import itself in a private
//! staging database, then copied with COPY and upserted in one transaction).

pub mod lease;
pub mod migrate;
pub mod sql;
pub mod stage;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use postgres::{Client, NoTls};
use rustc_hash::FxHashMap as HashMap;

use super::schema::{OWNERS, TEAMS};
use super::{Owners, RecordStore, Schema, StoreError, TeamTree, Value};
use crate::period::{Calendar, PeriodId, format_utc};
use crate::query::{Agg, AggValue, Item, Query, QueryError, RecordPage, ShapeResult};

/// Whether `--db` names a PostgreSQL database rather than a SQLite file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// The URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A connection to the database at `url`, its bookkeeping tables made.
pub fn connect(url: &str) -> Result<Client, StoreError> {
    let mut client = open(url)?;
    client.batch_execute(sql::BOOKKEEPING)?;
    Ok(client)
}

/// A connection whose errors name the database (without its password).
fn open(url: &str) -> Result<Client, StoreError> {
    let mut client =
        Client::connect(url, NoTls).map_err(|e| StoreError::Open(redacted(url), describe(&e)))?;
    client.batch_execute(sql::QUIET)?;
    Ok(client)
}

/// A store over a new, private schema of the database at `url` holding only
/// `records` (entity, label for errors, rows as JSON objects): the scratch
/// database of a `kpi test` case on PostgreSQL. The schema is dropped with the store.
pub fn scratch(
    url: &str,
    schema: Arc<Schema>,
    cal: &Calendar,
    records: &[(&str, &str, Vec<serde_json::Value>)],
) -> Result<PgStore, StoreError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("kpi_scratch_{}_{n}", std::process::id());
    let mut client = open(url)?;
    client.batch_execute(&sql::create_scratch(&name))?;
    let mut store = PgStore::new(client, schema.clone());
    // From here on the store drops the schema, whatever fails.
    store.scratch = Some(name);
    {
        let mut client = store.client();
        client.batch_execute(sql::BOOKKEEPING)?;
        migrate::migrate(&mut client, &schema)?;
        let mut staging = stage::stage(&mut client, &schema)?;
        for (entity, label, rows) in records {
            let input = super::import::Input::Json(rows.clone());
            super::import::import(&mut staging.conn, &schema, cal, entity, label, input)?;
        }
        let entities: Vec<&str> = schema.entities.keys().map(String::as_str).collect();
        stage::publish(&mut client, &staging, &schema, &entities, false, None)?;
    }
    Ok(store)
}

/// The server's own message for a database error (postgres' Display says only "db error").
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{}: {d}", db.message()),
            None => db.message().to_string(),
        },
        None => match std::error::Error::source(e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(describe(&e))
    }
}

/// The record generation of every entity ever written.
pub fn generations(client: &mut Client) -> Result<BTreeMap<String, i64>, StoreError> {
    Ok(client
        .query(sql::GENERATIONS, &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// A value of the engine's `_kpi_meta` table.
pub fn meta(client: &mut Client, key: &str) -> Result<Option<String>, StoreError> {
    Ok(client.query_opt(sql::GET_META, &[&key])?.map(|r| r.get(0)))
}

/// Whether any entity of `schema` holds a record.
pub fn has_records(client: &mut Client, schema: &Schema) -> Result<bool, StoreError> {
    for e in schema.entities.values() {
        if client.query_one(&sql::has_rows(e), &[])?.get::<_, bool>(0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// How many records each entity of `schema` holds (for `kpi_records`).
pub fn record_counts(
    client: &mut Client,
    schema: &Schema,
) -> Result<Vec<(String, u64)>, StoreError> {
    let mut out = Vec::with_capacity(schema.entities.len());
    for e in schema.entities.values() {
        let n: i64 = client.query_one(&sql::count_rows(e), &[])?.get(0);
        out.push((e.name.clone(), n.max(0) as u64));
    }
    Ok(out)
}

/// The record store over a PostgreSQL database: every shape pushed down.
pub struct PgStore {
    schema: Arc<Schema>,
    client: Arc<Mutex<Client>>,
    teams: OnceLock<Arc<TeamTree>>,
    owners: OnceLock<Arc<Owners>>,
    /// The private schema of a scratch store, dropped with it.
    scratch: Option<String>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(name) = &self.scratch {
            let _ = self.client().batch_execute(&sql::drop_scratch(name));
        }
    }
}

impl PgStore {
    pub fn new(client: Client, schema: Arc<Schema>) -> PgStore {
        PgStore::over(Arc::new(Mutex::new(client)), schema)
    }

    fn over(client: Arc<Mutex<Client>>, schema: Arc<Schema>) -> PgStore {
        PgStore {
            schema,
            client,
            teams: OnceLock::new(),
            owners: OnceLock::new(),
            scratch: None,
        }
    }

    fn client(&self) -> std::sync::MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_teams(&self) -> Result<TeamTree, StoreError> {
        let ent = self.schema.require(TEAMS)?;
        let rows = self.client().query(&sql::select_teams(ent), &[])?;
        Ok(TeamTree::new(
            rows.iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get::<_, Option<String>>(1).unwrap_or_default(),
                        r.get(2),
                    )
                })
                .collect(),
        ))
    }

    fn read_owners(&self, tree: &TeamTree) -> Result<Owners, StoreError> {
        let Some(ent) = self.schema.entity(OWNERS) else {
            return Ok(Owners::new(Vec::new(), tree));
        };
        let rows = self.client().query(&sql::select_owners(ent), &[])?;
        Ok(Owners::new(
            rows.iter()
                .map(|r| {
                    (
                        r.get(0),
                        r.get::<_, Option<String>>(1).unwrap_or_default(),
                        r.get(2),
                        r.get(3),
                    )
                })
                .collect(),
            tree,
        ))
    }

    /// Runs a compiled shape and collects its rows into values per (period, slot).
    fn run(
        &self,
        query: &Query,
        agg: &Agg,
        periods: &[PeriodId],
        cal: &Calendar,
    ) -> Result<ShapeResult, QueryError> {
        let started = std::time::Instant::now();
        let tree = RecordStore::teams(self)?;
        let owners = RecordStore::owners(self)?;
        let cx = sql::Context {
            schema: &self.schema,
            periods,
            cal,
            tree: &tree,
            owners: &owners,
        };
        let (stmt, output) = sql::compile(&cx, query, agg)?;
        let rows = self
            .client()
            .query(&stmt.text, &stmt.refs())
            .map_err(StoreError::from)?;
        let slots = if query.all_teams {
            1
        } else if query.by_owner {
            owners.len()
        } else {
            tree.len()
        };
        let mut values = vec![empty(agg); periods.len() * slots];
        let at =
            |r: &postgres::Row| r.get::<_, i32>(0) as usize * slots + r.get::<_, i32>(1) as usize;
        match output {
            sql::Output::Num => {
                for r in &rows {
                    let (n, sum, min, max): (f64, f64, f64, f64) =
                        (r.get(2), r.get(3), r.get(4), r.get(5));
                    values[at(r)] = finish_num(agg, n, sum, min, max);
                }
            }
            sql::Output::Count => {
                for r in &rows {
                    values[at(r)] = AggValue::Number(r.get(2));
                }
            }
            sql::Output::Keys(kind) => {
                let ty = agg
                    .fields()
                    .first()
                    .and_then(|f| self.schema.entity(&query.entity)?.field(f))
                    .map(|f| f.ty);
                let mut groups: HashMap<usize, Vec<(Raw, f64)>> = HashMap::default();
                for r in &rows {
                    groups
                        .entry(at(r))
                        .or_default()
                        .push((Raw::read(r, kind), r.get(3)));
                }
                for (slot, mut pairs) in groups {
                    pairs.sort_by(|a, b| a.0.order(&b.0));
                    let items = pairs.into_iter().map(|(k, n)| (k.item(ty), n));
                    values[slot] = match agg {
                        Agg::Values(_) => AggValue::Items(Arc::new(items.map(|p| p.0).collect())),
                        _ => AggValue::Counts(Arc::new(items.collect())),
                    };
                }
            }
        }
        tracing::debug!(shape = %format_args!("{query}{agg}"), periods = periods.len(), rows = rows.len(), us = started.elapsed().as_micros() as u64, "pushed down shape");
        Ok(ShapeResult::new(
            periods.to_vec(),
            slots,
            query.all_teams,
            values,
        ))
    }
}

/// Whose records, in which period: a slot of an answer.
struct PagePlace {
    period: PeriodId,
    slot: u32,
}

impl PgStore {
    /// The records behind one value (see [`sql::compile_records`]).
    fn page(
        &self,
        query: &Query,
        agg: &Agg,
        at: PagePlace,
        cal: &Calendar,
        limit: usize,
    ) -> Result<RecordPage, QueryError> {
        let PagePlace { period, slot } = at;
        let entity = self.schema.require(&query.entity)?;
        let names = crate::query::exec::page_fields(entity, query, agg);
        let fields: Vec<&crate::store::Field> =
            names.iter().filter_map(|f| entity.field(f)).collect();
        let tree = RecordStore::teams(self)?;
        let owners = RecordStore::owners(self)?;
        let periods = [period];
        let cx = sql::Context {
            schema: &self.schema,
            periods: &periods,
            cal,
            tree: &tree,
            owners: &owners,
        };
        let stmt = sql::compile_records(&cx, query, agg, slot, &fields, limit)?;
        let rows = self
            .client()
            .query(&stmt.text, &stmt.refs())
            .map_err(StoreError::from)?;
        let total = rows
            .first()
            .map_or(0, |r| r.get::<_, i64>(fields.len()).max(0) as usize);
        Ok(RecordPage {
            entity: entity.name.clone(),
            fields: names.iter().map(|f| f.to_string()).collect(),
            rows: rows
                .iter()
                .take(limit)
                .map(|r| {
                    fields
                        .iter()
                        .enumerate()
                        .map(|(i, f)| cell(r, i, f.ty))
                        .collect()
                })
                .collect(),
            total,
        })
    }
}

/// One cell of a records page, by the field's type.
fn cell(r: &postgres::Row, i: usize, ty: crate::store::FieldType) -> Value {
    use crate::store::FieldType;
    let int = || r.get::<_, Option<i64>>(i);
    let v = match ty {
        FieldType::Text => r.get::<_, Option<String>>(i).map(Value::Text),
        FieldType::Integer => int().map(Value::Int),
        FieldType::Time => int().map(Value::Time),
        FieldType::Bool => int().map(|v| Value::Bool(v != 0)),
        FieldType::Real => r.get::<_, Option<f64>>(i).map(Value::Real),
    };
    v.unwrap_or(Value::Null)
}

/// The value of a (team, period) no row reached.
fn empty(agg: &Agg) -> AggValue {
    match agg {
        Agg::Count | Agg::Sum(_) | Agg::CountDistinct(_) | Agg::CountDistinctAtLeast(..) => {
            AggValue::Number(0.0)
        }
        Agg::Values(_) => AggValue::Items(Arc::new(Vec::new())),
        Agg::CountBy(_) => AggValue::Counts(Arc::new(Vec::new())),
        Agg::Avg(_) | Agg::Min(_) | Agg::Max(_) | Agg::AvgSpan { .. } => AggValue::NoRows,
    }
}

fn finish_num(agg: &Agg, n: f64, sum: f64, min: f64, max: f64) -> AggValue {
    let mean_like = |v: f64| {
        if n == 0.0 {
            AggValue::NoRows
        } else {
            AggValue::Number(v)
        }
    };
    match agg {
        Agg::Count => AggValue::Number(n),
        Agg::Sum(_) => AggValue::Number(sum),
        Agg::Avg(_) => mean_like(sum / n),
        Agg::Min(_) => mean_like(min),
        Agg::Max(_) => mean_like(max),
        Agg::AvgSpan { unit, .. } => mean_like(sum / n / unit.millis()),
        _ => AggValue::NoRows,
    }
}

/// A distinct value as it comes back, ordered as the embedded store orders
/// keys: numbers (times as ms) by value, text by bytes.
enum Raw {
    Text(String),
    Int(i64),
    Real(f64),
}

impl Raw {
    fn read(r: &postgres::Row, kind: sql::KeyKind) -> Raw {
        match kind {
            sql::KeyKind::Text => Raw::Text(r.get(2)),
            sql::KeyKind::Int => Raw::Int(r.get(2)),
            sql::KeyKind::Real => Raw::Real(r.get(2)),
        }
    }

    fn order(&self, other: &Raw) -> std::cmp::Ordering {
        match (self, other) {
            (Raw::Text(a), Raw::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Raw::Int(a), Raw::Int(b)) => a.cmp(b),
            (Raw::Real(a), Raw::Real(b)) => a.total_cmp(b),
            _ => std::cmp::Ordering::Equal,
        }
    }

    /// The value a formula sees, by the field's type.
    fn item(self, ty: Option<crate::store::FieldType>) -> Item {
        use crate::store::FieldType;
        match self {
            Raw::Text(s) => Item::Text(Arc::from(s)),
            Raw::Real(f) => Item::Real(f),
            Raw::Int(v) => match ty {
                Some(FieldType::Bool) => Item::Bool(v != 0),
                Some(FieldType::Time) => Item::Time(Arc::from(format_utc(v))),
                _ => Item::Int(v),
            },
        }
    }
}

impl RecordStore for PgStore {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn teams(&self) -> Result<Arc<TeamTree>, StoreError> {
        if let Some(t) = self.teams.get() {
            return Ok(t.clone());
        }
        let tree = Arc::new(self.read_teams()?);
        Ok(self.teams.get_or_init(|| tree).clone())
    }

    fn owners(&self) -> Result<Arc<Owners>, StoreError> {
        if let Some(o) = self.owners.get() {
            return Ok(o.clone());
        }
        let tree = RecordStore::teams(self)?;
        let owners = Arc::new(self.read_owners(&tree)?);
        Ok(self.owners.get_or_init(|| owners).clone())
    }

    fn answer(
        &self,
        query: &Query,
        agg: &Agg,
        periods: &[PeriodId],
        cal: &Calendar,
    ) -> Result<ShapeResult, QueryError> {
        self.run(query, agg, periods, cal)
    }

    fn records(
        &self,
        query: &Query,
        agg: &Agg,
        period: PeriodId,
        slot: u32,
        cal: &Calendar,
        limit: usize,
    ) -> Result<RecordPage, QueryError> {
        self.page(query, agg, PagePlace { period, slot }, cal, limit)
    }

    fn holds_records(&self, entity: &str) -> Result<bool, StoreError> {
        let ent = self.schema.require(entity)?;
        Ok(self.client().query_one(&sql::has_rows(ent), &[])?.get(0))
    }

    fn epoch(&self) -> u64 {
        // Every change makes a new store (after_upsert); answers never go stale underneath.
        0
    }

    fn warm(
        &self,
        _fields: &BTreeMap<String, Vec<String>>,
        _entity: Option<&str>,
    ) -> Result<(), StoreError> {
        // Nothing is read ahead but the tree and the people every shape binds.
        RecordStore::owners(self)?;
        Ok(())
    }

    fn derive(
        &self,
        schema: Arc<Schema>,
        _fields: &BTreeMap<String, Vec<String>>,
    ) -> Arc<dyn RecordStore> {
        Arc::new(PgStore::over(self.client.clone(), schema))
    }

    fn after_upsert(
        &self,
        entity: &str,
        _ids: Option<&[String]>,
    ) -> Result<Arc<dyn RecordStore>, StoreError> {
        let next = PgStore::over(self.client.clone(), self.schema.clone());
        if entity != TEAMS && entity != OWNERS {
            if let Some(t) = self.teams.get() {
                let _ = next.teams.set(t.clone());
            }
            if let Some(o) = self.owners.get() {
                let _ = next.owners.set(o.clone());
            }
        }
        Ok(Arc::new(next))
    }
}
