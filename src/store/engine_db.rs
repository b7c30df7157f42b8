//! The connection the engine's own tables are read and written through,
//! SQLite or PostgreSQL (SPEC 20): a table family's module writes its SQL
//! once, with `?1`-style placeholders, and runs it through a [`Db`]; on
//! PostgreSQL the placeholders become `$1`. Only what the families need is
//! offered: statements with integer and text parameters, rows of integers
//! and texts (read by position), DDL per dialect, and a transaction.
//!
//! The PostgreSQL client is the synchronous one: like every PostgreSQL call
//! of the engine, a `Db` over it is only used on a blocking thread.

use std::cell::RefCell;
use std::path::Path;

use super::StoreError;
use super::pg;

/// A borrowed connection to the engine's database.
#[derive(Clone, Copy)]
pub enum Db<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a RefCell<postgres::Client>),
}

/// An owned connection to the engine's database (see [`Db`]).
pub enum EngineConn {
    Sqlite(rusqlite::Connection),
    Postgres(RefCell<postgres::Client>),
}

impl EngineConn {
    /// Opens `db`: a `postgres://` URL, or a SQLite file (created when missing).
    pub fn open(db: &Path) -> Result<EngineConn, StoreError> {
        match db.to_str().filter(|s| pg::is_url(s)) {
            Some(url) => Ok(EngineConn::Postgres(RefCell::new(pg::connect(url)?))),
            None => Ok(EngineConn::Sqlite(super::db::open(db)?)),
        }
    }

    pub fn db(&self) -> Db<'_> {
        match self {
            EngineConn::Sqlite(c) => Db::Sqlite(c),
            EngineConn::Postgres(c) => Db::Postgres(c),
        }
    }
}

impl<'a> From<&'a rusqlite::Connection> for Db<'a> {
    fn from(c: &'a rusqlite::Connection) -> Db<'a> {
        Db::Sqlite(c)
    }
}

/// What the engine's tables can be reached through: a [`Db`], an
/// [`EngineConn`], or a SQLite connection (or transaction) of a caller that
/// opened one itself.
pub trait AsDb {
    fn as_db(&self) -> Db<'_>;
}

impl<T: AsDb + ?Sized> AsDb for &T {
    fn as_db(&self) -> Db<'_> {
        (**self).as_db()
    }
}

impl<T: AsDb + ?Sized> AsDb for &mut T {
    fn as_db(&self) -> Db<'_> {
        (**self).as_db()
    }
}

impl AsDb for Db<'_> {
    fn as_db(&self) -> Db<'_> {
        *self
    }
}

impl AsDb for EngineConn {
    fn as_db(&self) -> Db<'_> {
        self.db()
    }
}

impl AsDb for rusqlite::Connection {
    fn as_db(&self) -> Db<'_> {
        Db::Sqlite(self)
    }
}

impl AsDb for rusqlite::Transaction<'_> {
    fn as_db(&self) -> Db<'_> {
        Db::Sqlite(self)
    }
}

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'p> {
    Int(i64),
    Text(&'p str),
    /// A text that may be absent.
    OptText(Option<&'p str>),
    /// An integer that may be absent.
    OptInt(Option<i64>),
    /// A number that may be absent.
    Real(Option<f64>),
}

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// One result row, read by position.
#[derive(Debug, Clone)]
pub struct Row(Vec<Cell>);

impl Row {
    pub fn int(&self, i: usize) -> i64 {
        match self.0.get(i) {
            Some(Cell::Int(v)) => *v,
            Some(Cell::Real(v)) => *v as i64,
            Some(Cell::Text(t)) => t.parse().unwrap_or(0),
            _ => 0,
        }
    }

    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Cell::Null) | None => None,
            _ => Some(self.int(i)),
        }
    }

    pub fn real(&self, i: usize) -> Option<f64> {
        match self.0.get(i) {
            Some(Cell::Real(v)) => Some(*v),
            Some(Cell::Int(v)) => Some(*v as f64),
            _ => None,
        }
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.0.get(i) {
            Some(Cell::Text(t)) => Some(t.clone()),
            Some(Cell::Int(v)) => Some(v.to_string()),
            Some(Cell::Real(v)) => Some(v.to_string()),
            _ => None,
        }
    }

    pub fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }
}

fn pg_err(e: postgres::Error) -> StoreError {
    StoreError::Postgres(pg::describe(&e))
}

/// `?1` → `$1`, outside quoted text.
fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        if c == '\'' {
            quoted = !quoted;
        }
        out.push(if c == '?' && !quoted { '$' } else { c });
    }
    out
}

impl Db<'_> {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Runs several statements: `sqlite`'s text on SQLite, `postgres`'s on PostgreSQL.
    pub fn batch(&self, sqlite: &str, postgres: &str) -> Result<(), StoreError> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sqlite)?),
            Db::Postgres(c) => c.borrow_mut().batch_execute(postgres).map_err(pg_err),
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                Ok(
                    stmt.execute(rusqlite::params_from_iter(params.iter().map(sqlite_param)))?
                        as u64,
                )
            }
            Db::Postgres(c) => {
                let owned = pg_params(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    owned.iter().map(|p| p.as_ref()).collect();
                c.borrow_mut()
                    .execute(dollar_placeholders(sql).as_str(), &refs)
                    .map_err(pg_err)
            }
        }
    }

    /// Every row a query returns.
    pub fn rows(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        match self {
            Db::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let n = stmt.column_count();
                let rows = stmt.query_map(
                    rusqlite::params_from_iter(params.iter().map(sqlite_param)),
                    |r| {
                        (0..n)
                            .map(|i| sqlite_cell(r, i))
                            .collect::<Result<Vec<_>, _>>()
                    },
                )?;
                Ok(rows.map(|r| r.map(Row)).collect::<Result<_, _>>()?)
            }
            Db::Postgres(c) => {
                let owned = pg_params(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    owned.iter().map(|p| p.as_ref()).collect();
                let rows = c
                    .borrow_mut()
                    .query(dollar_placeholders(sql).as_str(), &refs)
                    .map_err(pg_err)?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// The first row a query returns, if any.
    pub fn row(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// Runs `f` in one transaction: committed when it returns Ok, rolled back otherwise.
    pub fn in_transaction<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transaction(f, true)
    }

    /// Runs `f` in one transaction that is rolled back whatever it returns
    /// (a dry run: what `f` wrote is seen by `f` only).
    pub fn rolled_back<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.transaction(f, false)
    }

    fn transaction<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<T, E>,
        commit: bool,
    ) -> Result<T, E> {
        self.batch("BEGIN IMMEDIATE", "BEGIN")?;
        match f(self) {
            Ok(v) if commit => {
                if let Err(e) = self.batch("COMMIT", "COMMIT") {
                    let _ = self.batch("ROLLBACK", "ROLLBACK");
                    return Err(e.into());
                }
                Ok(v)
            }
            Ok(v) => {
                self.batch("ROLLBACK", "ROLLBACK")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.batch("ROLLBACK", "ROLLBACK");
                Err(e)
            }
        }
    }

    /// Runs DDL written for SQLite on either database: on PostgreSQL as
    /// [`postgres_ddl`] translates it.
    pub fn create(&self, sqlite: &str) -> Result<(), StoreError> {
        self.batch(sqlite, &postgres_ddl(sqlite))
    }

    /// Adds `column` (of SQL type `decl`) to one of the engine's tables made
    /// by an older version, when it lacks it (SQLite: PostgreSQL tables are
    /// always made whole).
    pub fn add_missing_column(
        &self,
        table: &str,
        column: &str,
        decl: &str,
    ) -> Result<(), StoreError> {
        if self.is_postgres() || self.has_column(table, column)? {
            return Ok(());
        }
        self.batch(
            &format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"),
            "",
        )
    }

    /// Whether one of the engine's SQLite tables has `column`.
    pub fn has_column(&self, table: &str, column: &str) -> Result<bool, StoreError> {
        Ok(self
            .row(
                "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
                &[Param::Text(table), Param::Text(column)],
            )?
            .is_some_and(|r| r.int(0) > 0))
    }

    /// Whether one of the engine's tables exists.
    pub fn has_table(&self, table: &str) -> Result<bool, StoreError> {
        let sql = if self.is_postgres() {
            "SELECT count(*) FROM pg_catalog.pg_tables
             WHERE tablename = ?1 AND schemaname = current_schema()"
        } else {
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1"
        };
        Ok(self
            .row(sql, &[Param::Text(table)])?
            .is_some_and(|r| r.int(0) > 0))
    }

    /// The file of a SQLite database (None in memory, and on PostgreSQL).
    pub fn path(&self) -> Option<std::path::PathBuf> {
        match self {
            Db::Sqlite(c) => c
                .path()
                .filter(|p| !p.is_empty())
                .map(std::path::PathBuf::from),
            Db::Postgres(_) => None,
        }
    }
}

/// DDL of the engine's tables written for SQLite, as PostgreSQL's: 64-bit
/// integers, doubles, identity ids. The tables' texts use these type names
/// only in upper case, and their column names are lower case.
pub fn postgres_ddl(sqlite: &str) -> String {
    sqlite
        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
        .replace("REAL", "DOUBLE PRECISION")
}

fn sqlite_param(p: &Param<'_>) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match p {
        Param::Int(v) => Value::Integer(*v),
        Param::Text(t) => Value::Text((*t).to_string()),
        Param::OptText(Some(t)) => Value::Text((*t).to_string()),
        Param::OptText(None) | Param::OptInt(None) | Param::Real(None) => Value::Null,
        Param::OptInt(Some(v)) => Value::Integer(*v),
        Param::Real(Some(v)) => Value::Real(*v),
    }
}

fn sqlite_cell(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Cell> {
    use rusqlite::types::ValueRef;
    Ok(match r.get_ref(i)? {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(v) => Cell::Int(v),
        ValueRef::Real(v) => Cell::Real(v),
        ValueRef::Text(t) | ValueRef::Blob(t) => Cell::Text(String::from_utf8_lossy(t).into()),
    })
}

fn pg_params(params: &[Param<'_>]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
            match p {
                Param::Int(v) => Box::new(*v),
                Param::Text(t) => Box::new((*t).to_string()),
                Param::OptText(t) => Box::new(t.map(str::to_string)),
                Param::OptInt(v) => Box::new(*v),
                Param::Real(v) => Box::new(*v),
            }
        })
        .collect()
}

fn pg_row(r: &postgres::Row) -> Result<Row, StoreError> {
    use postgres::types::Type;
    let mut cells = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let t = col.type_();
        let cell = if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i).map(|v| v.map(Cell::Int))
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into())))
        } else if *t == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into())))
        } else if *t == Type::FLOAT8 {
            r.try_get::<_, Option<f64>>(i).map(|v| v.map(Cell::Real))
        } else if *t == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into())))
        } else {
            r.try_get::<_, Option<String>>(i).map(|v| v.map(Cell::Text))
        };
        cells.push(cell.map_err(pg_err)?.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_ddl_becomes_postgres_ddl() {
        assert_eq!(
            postgres_ddl(
                "id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, x REAL, t TEXT"
            ),
            "id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL, x DOUBLE PRECISION, t TEXT"
        );
    }

    #[test]
    fn a_missing_column_is_added_once() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let db = Db::from(&conn);
        db.create("CREATE TABLE t (a INTEGER)").unwrap();
        assert!(!db.has_column("t", "b").unwrap());
        db.add_missing_column("t", "b", "TEXT").unwrap();
        db.add_missing_column("t", "b", "TEXT").unwrap();
        assert!(db.has_column("t", "b").unwrap());
    }

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            dollar_placeholders("SELECT '?' , x FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?' , x FROM t WHERE a = $1 AND b = $12"
        );
    }

    #[test]
    fn a_sqlite_db_runs_statements_and_reads_rows() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let db = Db::from(&conn);
        db.batch("CREATE TABLE t (a INTEGER, b TEXT)", "").unwrap();
        let n = db
            .execute(
                "INSERT INTO t (a, b) VALUES (?1, ?2)",
                &[Param::Int(7), Param::OptText(None)],
            )
            .unwrap();
        assert_eq!(n, 1);
        let rows = db
            .rows("SELECT a, b FROM t WHERE a = ?1", &[Param::Int(7)])
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].int(0), 7);
        assert_eq!(rows[0].opt_text(1), None);
        let none = db
            .in_transaction(|db| db.row("SELECT a FROM t WHERE a = ?1", &[Param::Int(8)]))
            .unwrap();
        assert!(none.is_none());
    }
}
