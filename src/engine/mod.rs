//! The application layer: the one way in to the engine.
//!
//! An [`Engine`] owns a deployment root and its record store. Opening it
//! checks the configuration exactly as `kpi check` does, applies schema
//! additions to the database, and (when serving) records the configuration in
//! the history and reads the columns the formulas need. It hands out
//! immutable [`Snapshot`]s (configuration + records + version + data
//! generation) that answer typed requests, and it is the only thing that
//! changes what is served: [`Engine::reload`], [`Engine::edit`],
//! [`Engine::ingest`], [`Engine::write_demo`]. Changes run one at a time
//! (a writer lock); each builds the next snapshot completely, then swaps it
//! in, so a reader never waits and never sees half of a change.
//!
//! The command line, the server, `kpi test`, the dry run, the examples and the
//! tests are clients of this layer; none of them opens a database or builds a
//! column store itself.

pub mod error;
pub mod freeze;
pub mod history;
pub mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::Connection;

pub use error::{EngineError, Kind};
pub use freeze::{Closed, FrozenSet, How, Restatement};
pub use snapshot::{
    EvalRequest, Explained, PreviewReport, Proposal, Snapshot, ValueReport, When, Who,
};

use crate::config::write_set::{self, Changes};
use crate::config::{self, ConfigSnapshot};
use crate::demo::DemoOptions;
use crate::diag::Diagnostic;
use crate::eval::Records;
use crate::period::{Millis, format_utc};
use crate::store::columns::ColumnStore;
use crate::store::config_history::{self, FILE_ACTOR, HistoryEntry, NewVersion, Origin};
use crate::store::engine_db::{Db, EngineConn};
use crate::store::import::{ImportReport, Input, import};
use crate::store::pg::{self, PgStore};
use crate::store::{StoreError, db, demo_writer};

/// How an engine is opened.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub root: PathBuf,
    /// The SQLite database (created when missing), or a `postgres://` URL (SPEC 20).
    pub db: PathBuf,
    /// A long-running engine (`kpi serve`): every applied configuration is
    /// recorded in the history, and the columns the formulas read are loaded
    /// before a snapshot is handed out. A one-shot command (`kpi eval`) does
    /// neither.
    pub serving: bool,
}

/// The result of applying a configuration.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: u64,
    /// False when the candidate was identical to the served configuration.
    pub changed: bool,
    pub files_changed: Vec<String>,
}

/// What `kpi check` found: the checked configuration.
pub struct CheckSummary {
    pub config: Arc<ConfigSnapshot>,
}

pub struct Engine {
    root: PathBuf,
    db_path: PathBuf,
    /// The PostgreSQL database the records live in, when `--db` is a URL.
    pg: Option<String>,
    serving: bool,
    current: RwLock<Arc<Snapshot>>,
    /// One change at a time: reloads, edits, ingests, demo writes, refreshes.
    /// It guards what the engine knows of the database's record generations.
    writer: Mutex<Seen>,
    /// The connection whose `PRAGMA data_version` tells that another
    /// connection (another process: a cron `kpi import`) committed.
    watch: Mutex<Option<(Connection, i64)>>,
    /// On PostgreSQL, the connection the upkeep polls the generations and
    /// the config history through (kept: polled a few times a second).
    poll: Mutex<Option<EngineConn>>,
    /// A version another server recorded that does not check here: not
    /// tried again (see [`Engine::adopt_recorded_config`]).
    refused: Mutex<Option<u64>>,
}

/// The record generations (see [`db::bump_generation`]) the served records reflect.
#[derive(Debug, Default)]
struct Seen {
    generations: BTreeMap<String, i64>,
}

/// Why a reload did not apply.
#[derive(Debug)]
pub enum ReloadError {
    /// The files do not check: nothing changes until a later save fixes them.
    Config(Vec<Diagnostic>),
    /// The database refused for a reason that passes (it is locked by another
    /// process, the disk is full): the same files are tried again.
    Transient(EngineError),
}

impl ReloadError {
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            ReloadError::Config(d) => d.clone(),
            ReloadError::Transient(e) => vec![Diagnostic::file(
                "crm.db",
                format!("{e} (the configuration is applied again once the database answers)"),
            )],
        }
    }
}

/// What opening a store found: the checked configuration and the state recorded for it.
struct Opened {
    cfg: Arc<ConfigSnapshot>,
    hash: String,
    version: u64,
    frozen: Arc<FrozenSet>,
    generations: BTreeMap<String, i64>,
}

impl Engine {
    /// Checks the configuration, opens the database and applies schema
    /// additions, and (when serving) records the configuration and warms the
    /// columns. Blocking.
    pub fn open(opts: &EngineOptions) -> Result<Engine, EngineError> {
        let root = std::fs::canonicalize(&opts.root)
            .map_err(|e| EngineError::Io(format!("--root {}: {e}", opts.root.display())))?;
        let cfg = crate::load_checked(&root).map_err(EngineError::Config)?;
        if let Some(url) = postgres_url(&opts.db) {
            return Engine::open_postgres(opts, root, cfg, url);
        }
        let mut conn = db::open(&opts.db)?;
        db::migrate(&mut conn, &cfg.schema)?;
        let hash = cfg.content_hash();
        let version = if opts.serving {
            record_start(&Db::Sqlite(&conn), &cfg, &hash)?
        } else {
            0
        };
        // Read before the columns are: a write committed in between is read again later.
        let generations = db::generations(&conn)?;
        let frozen = Arc::new(FrozenSet::load(&Db::Sqlite(&conn))?);
        let store = ColumnStore::new(conn, cfg.schema.clone()).prefetch(&cfg.fields_used);
        if opts.serving {
            store.warm(&cfg.fields_used, None)?;
            crate::config::edit::remove_stale_temp_files(&root);
        }
        let opened = Opened {
            cfg,
            hash,
            version,
            frozen,
            generations,
        };
        Ok(Engine::first(opts, root, None, Arc::new(store), opened))
    }

    /// [`Engine::open`] over PostgreSQL: the schema migrated there, every
    /// shape pushed down by a [`PgStore`].
    fn open_postgres(
        opts: &EngineOptions,
        root: PathBuf,
        cfg: Arc<ConfigSnapshot>,
        url: &str,
    ) -> Result<Engine, EngineError> {
        let mut client = pg::connect(url)?;
        // A refusal reads as on SQLite: "schema change refused: …".
        pg::migrate::migrate(&mut client, &cfg.schema)?;
        let generations = pg::generations(&mut client)?;
        let hash = cfg.content_hash();
        let client = std::cell::RefCell::new(client);
        let version = if opts.serving {
            // Under the write lock: servers starting together record one version, not two.
            Db::Postgres(&client).in_transaction(|db| {
                db.batch("", pg::sql::WRITE_LOCK)?;
                record_start(db, &cfg, &hash)
            })?
        } else {
            0
        };
        let frozen = Arc::new(FrozenSet::load(&Db::Postgres(&client))?);
        let store = PgStore::new(client.into_inner(), cfg.schema.clone());
        let opened = Opened {
            cfg,
            hash,
            version,
            frozen,
            generations,
        };
        Ok(Engine::first(
            opts,
            root,
            Some(url.to_string()),
            Arc::new(store),
            opened,
        ))
    }

    /// The engine over `store` serving its first snapshot (both stores open this way).
    fn first(
        opts: &EngineOptions,
        root: PathBuf,
        pg: Option<String>,
        store: Arc<dyn crate::store::RecordStore>,
        o: Opened,
    ) -> Engine {
        // A server answers a missed shape over every period a request could ask.
        let memo = match opts.serving {
            true => crate::eval::ShapeMemo::serving(),
            false => crate::eval::ShapeMemo::default(),
        };
        let snapshot = Snapshot {
            config: o.cfg,
            records: Records {
                store,
                memo: Arc::new(memo),
            },
            version: o.version,
            loaded_at: format_utc(now()),
            content_hash: o.hash,
            data_generation: 1,
            frozen: o.frozen,
        };
        Engine {
            root,
            db_path: opts.db.clone(),
            pg,
            serving: opts.serving,
            current: RwLock::new(Arc::new(snapshot)),
            writer: Mutex::new(Seen {
                generations: o.generations,
            }),
            watch: Mutex::new(None),
            poll: Mutex::new(None),
            refused: Mutex::new(None),
        }
    }

    /// What `kpi check` checks: the configuration, and that an existing
    /// database can take its schema without a refused change. Nothing is written.
    pub fn check(root: &Path, db_path: &Path) -> Result<CheckSummary, EngineError> {
        let cfg = crate::load_checked(root).map_err(EngineError::Config)?;
        if let Some(url) = postgres_url(db_path) {
            pg::migrate::plan(&mut pg::connect(url)?, &cfg.schema).map_err(|e| {
                EngineError::rejected(
                    "the schema does not fit the database",
                    schema_diagnostics(&cfg.files, e),
                )
            })?;
        } else if db_path.exists() {
            db::plan(&db::open(db_path)?, &cfg.schema).map_err(|e| {
                EngineError::rejected(
                    "the schema does not fit the database",
                    schema_diagnostics(&cfg.files, e),
                )
            })?;
        }
        Ok(CheckSummary { config: cfg })
    }

    /// The snapshot served now. The lock is held only to clone the Arc.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Whether the records live in PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.pg.is_some()
    }

    /// A connection to the engine's SQLite database, for the embedded
    /// store's own work (records, the demo); refused on PostgreSQL, where
    /// [`Engine::engine_conn`] reaches the engine's tables.
    pub fn connection(&self) -> Result<Connection, StoreError> {
        if let Some(url) = &self.pg {
            return Err(StoreError::Open(
                pg::redacted(url),
                "a SQLite connection was asked of a PostgreSQL database".into(),
            ));
        }
        db::open(&self.db_path)
    }

    /// A connection to the engine's own tables (config history, frozen
    /// assessments, alerts, outbox, silences), SQLite or PostgreSQL.
    pub fn engine_conn(&self) -> Result<EngineConn, StoreError> {
        EngineConn::open(&self.db_path)
    }

    /// Runs `f` in one write transaction over the engine's own tables
    /// (SQLite: the write lock waited for, see [`db::begin_write`];
    /// PostgreSQL: BEGIN … COMMIT); rolled back when `f` fails.
    pub(crate) fn write_engine_tables<T>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        match self.engine_conn()? {
            EngineConn::Sqlite(mut conn) => {
                let tx = db::begin_write(&mut conn)?;
                let v = f(&Db::Sqlite(&tx))?;
                tx.commit().map_err(StoreError::from)?;
                Ok(v)
            }
            EngineConn::Postgres(client) => {
                let db = Db::Postgres(&client);
                db.batch("", "BEGIN")?;
                let v = f(&db);
                db.batch("", if v.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
                v
            }
        }
    }

    /// A new connection to the engine's PostgreSQL database.
    fn pg_client(&self) -> Result<Option<postgres::Client>, StoreError> {
        self.pg.as_deref().map(pg::connect).transpose()
    }

    fn swap(&self, next: Snapshot) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
    }

    /// Serves new records with the served configuration; returns the new data generation.
    fn swap_records(
        &self,
        served: &Snapshot,
        store: Arc<dyn crate::store::RecordStore>,
        memo: crate::eval::memo::ShapeMemo,
    ) -> u64 {
        let generation = served.data_generation + 1;
        self.swap(Snapshot {
            config: served.config.clone(),
            records: Records {
                store,
                memo: Arc::new(memo),
            },
            version: served.version,
            loaded_at: served.loaded_at.clone(),
            content_hash: served.content_hash.clone(),
            data_generation: generation,
            frozen: served.frozen.clone(),
        });
        generation
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads kpis/ and scripts/ from disk as one candidate, checks it, and
    /// applies it if it checks; `actor` is recorded in the history (`file`
    /// for the watcher, a token's name for POST /api/reload). Blocking.
    pub fn reload(&self, actor: &str) -> Result<Applied, ReloadError> {
        let _writer = self.write_lock();
        let cfg = crate::load_checked(&self.root).map_err(|d| ReloadError::Config(d.0))?;
        self.apply(cfg, Origin::File, actor, None)
            .map_err(|e| match e {
                EngineError::Rejected { diagnostics, .. } => ReloadError::Config(diagnostics),
                other => ReloadError::Transient(other),
            })
    }

    /// An edit of one file: `edit` gets the files on disk and returns the one
    /// file it changes (path relative to the root, new text). The edited
    /// candidate is checked in memory; only if it passes is the file written
    /// (atomically) and the configuration applied, recorded with `actor`. Blocking.
    pub fn edit<F>(&self, actor: &str, edit: F) -> Result<(String, Applied), EngineError>
    where
        F: FnOnce(&BTreeMap<String, String>) -> Result<(String, String), EngineError>,
    {
        let _writer = self.write_lock();
        let mut files = config::read_files(&self.root)
            .map_err(|d| EngineError::rejected("the configuration on disk cannot be read", d))?;
        let (path, text) = edit(&files)?;
        files.insert(path.clone(), text.clone());
        let rejected = |d: Vec<Diagnostic>| {
            EngineError::rejected(
                "the edited configuration does not check; nothing was written",
                d,
            )
        };
        let candidate = config::from_files(&self.root, files).map_err(|d| rejected(d.0))?;
        let candidate = crate::check_snapshot(Arc::new(candidate)).map_err(rejected)?;
        let changes = Changes::from([(path.clone(), Some(text))]);
        let applied = self.apply(candidate, Origin::Api, actor, Some(&changes))?;
        Ok((path, applied))
    }

    /// Applies a checked candidate: schema additions and a history row (with
    /// `origin`, `actor` and every file's text) in one write transaction, the
    /// changed files (when `changes` are given; all or nothing, see
    /// [`write_set`]) written while that transaction holds the lock, the
    /// commit, then the swap. So an edit applies completely or changes no
    /// file: a locked database is waited for and tried again
    /// ([`db::begin_write`]), and a commit that fails puts the files back.
    /// The caller holds the writer lock.
    fn apply(
        &self,
        cfg: Arc<ConfigSnapshot>,
        origin: Origin,
        actor: &str,
        changes: Option<&Changes>,
    ) -> Result<Applied, EngineError> {
        let served = self.snapshot();
        let hash = cfg.content_hash();
        if hash == served.content_hash {
            if let Some(changes) = changes {
                let _ = self.write_files(changes)?;
            }
            return Ok(Applied {
                version: served.version,
                changed: false,
                files_changed: Vec::new(),
            });
        }
        let files_changed = config_history::changed_files(
            &config_history::file_hashes(&served.config.files),
            &config_history::file_hashes(&cfg.files),
        );
        let applied_at = format_utc(now());
        let new = NewVersion {
            applied_at: &applied_at,
            origin,
            actor,
            files_changed: &files_changed,
            content_hash: &hash,
            files: &cfg.files,
        };
        let version = match &self.pg {
            Some(url) => self.apply_on_postgres(url, &served, &cfg, &new, changes)?,
            None => self.apply_on_sqlite(&served, &cfg, &new, changes)?,
        };
        let records = match self.records_for(&served, &cfg) {
            Ok(r) => r,
            Err(e) => {
                // The change is committed: serve it, reading the columns on first use.
                tracing::warn!("cannot read the columns ahead for version {version}: {e}");
                Records {
                    store: served
                        .records
                        .store
                        .derive(cfg.schema.clone(), &cfg.fields_used),
                    memo: Arc::new(served.records.memo.after_change(|_| true)),
                }
            }
        };
        self.swap(Snapshot {
            config: cfg,
            records,
            version,
            loaded_at: applied_at,
            content_hash: hash,
            data_generation: served.data_generation,
            frozen: served.frozen.clone(),
        });
        Ok(Applied {
            version,
            changed: true,
            files_changed,
        })
    }

    /// [`Engine::apply`]'s writes to SQLite: schema additions, the history
    /// row and the files, committed together. Returns the version served.
    fn apply_on_sqlite(
        &self,
        served: &Snapshot,
        cfg: &ConfigSnapshot,
        new: &NewVersion<'_>,
        changes: Option<&Changes>,
    ) -> Result<u64, EngineError> {
        let mut conn = db::open(&self.db_path)?;
        let tx = db::begin_write(&mut conn)?;
        // What `kpi check` also asks of an existing database: no refused schema change.
        db::migrate_in(&tx, &cfg.schema).map_err(|e| schema_rejected(&cfg.files, e))?;
        let version = self.record_version(&Db::Sqlite(&tx), served, new)?;
        let written = changes.map(|c| self.write_files(c)).transpose()?;
        if let Err(e) = tx.commit() {
            if let Some(w) = written {
                w.undo();
            }
            return Err(StoreError::from(e).into());
        }
        Ok(version)
    }

    /// [`Engine::apply`]'s writes to PostgreSQL: schema additions (in their
    /// own transaction: they only add), then the files, then the history row
    /// in one transaction; a history row that fails puts the files back.
    fn apply_on_postgres(
        &self,
        url: &str,
        served: &Snapshot,
        cfg: &ConfigSnapshot,
        new: &NewVersion<'_>,
        changes: Option<&Changes>,
    ) -> Result<u64, EngineError> {
        let mut client = pg::connect(url)?;
        pg::migrate::migrate(&mut client, &cfg.schema)
            .map_err(|e| schema_rejected(&cfg.files, e))?;
        let client = std::cell::RefCell::new(client);
        let written = changes.map(|c| self.write_files(c)).transpose()?;
        let recorded = Db::Postgres(&client).in_transaction(|db| {
            self.record_version(db, served, new).map_err(|e| match e {
                EngineError::Store(s) => s,
                other => StoreError::Postgres(other.to_string()),
            })
        });
        match recorded {
            Ok(v) => Ok(v),
            Err(e) => {
                if let Some(w) = written {
                    w.undo();
                }
                Err(e.into())
            }
        }
    }

    /// The version of a configuration being applied: the next one, recorded
    /// in the history when serving.
    fn record_version(
        &self,
        db: &Db<'_>,
        served: &Snapshot,
        new: &NewVersion<'_>,
    ) -> Result<u64, EngineError> {
        if !self.serving {
            return Ok(served.version + 1);
        }
        Ok(match config_history::last(db)? {
            // Another process recorded these very files (`kpi rollback` while
            // this server runs): serve its version rather than record them twice.
            Some(l) if l.content_hash == new.content_hash && l.version > served.version => {
                l.version
            }
            _ => config_history::append(db, new)?,
        })
    }

    fn write_files(&self, changes: &Changes) -> Result<write_set::Written, EngineError> {
        write_set::write_all(&self.root, changes)
            .map_err(|e| EngineError::from_io(format!("cannot write {}", e.path), &e.source))
    }

    /// The records to serve with a new configuration. They did not change:
    /// the columns read so far are kept (those of an entity whose schema
    /// changed are read again), only fields the new formulas name that were
    /// never read are read now, and the shape answers of unchanged entities
    /// are kept.
    fn records_for(&self, served: &Snapshot, cfg: &ConfigSnapshot) -> Result<Records, StoreError> {
        let old = &served.config;
        if old.schema == cfg.schema && old.fields_used == cfg.fields_used {
            return Ok(served.records.clone());
        }
        let store = served
            .records
            .store
            .derive(cfg.schema.clone(), &cfg.fields_used);
        if self.serving {
            store.warm(&cfg.fields_used, None)?;
        }
        let memo = served.records.memo.after_change(|e| {
            old.schema.entity(e).is_none() || old.schema.entity(e) != cfg.schema.entity(e)
        });
        Ok(Records {
            store,
            memo: Arc::new(memo),
        })
    }

    /// Imports records of `entity` (all or nothing), then serves them: only
    /// the ingested table is read again (patched), and only the shape answers
    /// that read it are computed again. Returns the new data generation.
    pub fn ingest(
        &self,
        entity: &str,
        label: &str,
        input: Input<'_>,
    ) -> Result<(ImportReport, u64), EngineError> {
        let mut seen = self.write_lock();
        let served = self.snapshot();
        let cfg = &served.config;
        if let Some(mut client) = self.pg_client()? {
            let mut staging = pg::stage::stage(&mut client, &cfg.schema)?;
            let report = import(
                &mut staging.conn,
                &cfg.schema,
                &cfg.settings.calendar,
                entity,
                label,
                input,
            )?;
            pg::stage::publish(&mut client, &staging, &cfg.schema, &[entity], false, None)?;
            let generation = self.serve_published(&served, &mut seen, &mut client, &[entity])?;
            return Ok((report, generation));
        }
        let mut conn = db::open(&self.db_path)?;
        let report = import(
            &mut conn,
            &cfg.schema,
            &cfg.settings.calendar,
            entity,
            label,
            input,
        )?;
        let generation =
            self.serve_ingested(&served, &mut seen, &conn, std::slice::from_ref(&report))?;
        Ok((report, generation))
    }

    /// Imports a foreign file through a mapping (SPEC 15), every entity it
    /// writes in one transaction, then serves the records; with `dry_run`
    /// nothing is written and the generation stays.
    pub fn ingest_mapped(
        &self,
        request: crate::mapping::Request<'_>,
    ) -> Result<(crate::mapping::MappedImport, u64), EngineError> {
        let mut seen = self.write_lock();
        let served = self.snapshot();
        let dry_run = request.dry_run;
        if let Some(mut client) = self.pg_client()? {
            let cfg = &served.config;
            // The mapped rows are checked (and the lookups read) in a staging database.
            let lookups: Vec<&str> = cfg
                .mappings
                .get(&request.mapping)
                .map(|m| m.lookups.values().filter_map(|l| l.entity()).collect())
                .unwrap_or_default();
            let mut staging = pg::stage::stage_with(&mut client, &cfg.schema, &lookups)?;
            let done = crate::mapping::import_with_mapping(&mut staging.conn, cfg, request)?;
            if dry_run {
                return Ok((done, served.data_generation));
            }
            let entities: Vec<&str> = done.reports.iter().map(|r| r.entity.as_str()).collect();
            pg::stage::publish(&mut client, &staging, &cfg.schema, &entities, false, None)?;
            let generation = self.serve_published(&served, &mut seen, &mut client, &entities)?;
            return Ok((done, generation));
        }
        let mut conn = db::open(&self.db_path)?;
        let done = crate::mapping::import_with_mapping(&mut conn, &served.config, request)?;
        let generation = if dry_run {
            served.data_generation
        } else {
            self.serve_ingested(&served, &mut seen, &conn, &done.reports)?
        };
        Ok((done, generation))
    }

    /// Serves the records after imports into `served`'s store: each ingested
    /// table is patched (or read again whole when another process wrote the
    /// entity too: its generation moved by more than this import), and the
    /// shape answers that read one are dropped. The caller holds the writer lock.
    fn serve_ingested(
        &self,
        served: &Snapshot,
        seen: &mut Seen,
        conn: &Connection,
        reports: &[ImportReport],
    ) -> Result<u64, EngineError> {
        let cfg = &served.config;
        let now = db::generations(conn)?;
        let mut store = served.records.store.clone();
        for report in reports {
            let generation_now = now.get(&report.entity).copied().unwrap_or(0);
            let known = seen.generations.get(&report.entity).copied().unwrap_or(0);
            let ids = if generation_now == known + 1 {
                report.ids.as_deref()
            } else {
                None
            };
            seen.generations
                .insert(report.entity.clone(), generation_now);
            store = store.after_upsert(&report.entity, ids)?;
            if self.serving {
                store.warm(&cfg.fields_used, Some(&report.entity))?;
            }
        }
        let changed: Vec<&str> = reports.iter().map(|r| r.entity.as_str()).collect();
        let memo = served.records.memo.after_change(|e| changed.contains(&e));
        Ok(self.swap_records(served, store, memo))
    }

    /// Serves the records after a write to PostgreSQL: a new store over the
    /// same connection (the tree read again when teams or people changed),
    /// and the shape answers that read a written entity dropped.
    fn serve_published(
        &self,
        served: &Snapshot,
        seen: &mut Seen,
        client: &mut postgres::Client,
        entities: &[&str],
    ) -> Result<u64, EngineError> {
        seen.generations = pg::generations(client)?;
        let mut store = served.records.store.clone();
        for e in entities {
            store = store.after_upsert(e, None)?;
        }
        let teams = entities.contains(&crate::store::schema::TEAMS);
        let memo = served
            .records
            .memo
            .after_change(|e| teams || entities.contains(&e));
        Ok(self.swap_records(served, store, memo))
    }

    /// Serves what another process wrote to the database meanwhile (a cron
    /// `kpi import` while `kpi serve` runs). Cheap when nothing changed: one
    /// `PRAGMA data_version` on a connection kept for it. When another
    /// connection committed, the record generations tell which entities were
    /// written; those are read again (teams: the tree too) and the shape
    /// answers that read them are dropped. Returns the entities read again
    /// and the new data generation, or None. On PostgreSQL the generations
    /// themselves are polled (another server's or a cron's writes). Blocking.
    pub fn refresh(&self) -> Result<Option<(Vec<String>, u64)>, EngineError> {
        // PostgreSQL has no data_version: the generations are polled (one small SELECT).
        if self.pg.is_none() && !self.another_connection_committed()? {
            return Ok(None);
        }
        let frozen_moved = self
            .generations()?
            .get(crate::store::frozen::GENERATION_KEY)
            .copied()
            .unwrap_or(0)
            != self.snapshot().frozen.db_generation;
        if frozen_moved {
            // Another process closed or reopened a period.
            self.reload_frozen()?;
            self.adopt_recorded_version()?;
        }
        let mut seen = self.write_lock();
        let generations = self.generations()?;
        let served = self.snapshot();
        let cfg = &served.config;
        let changed: Vec<String> = generations
            .iter()
            .filter(|(e, g)| seen.generations.get(*e) != Some(*g) && cfg.schema.entity(e).is_some())
            .map(|(e, _)| e.clone())
            .collect();
        if changed.is_empty() {
            seen.generations = generations;
            return Ok(None);
        }
        let mut store = served.records.store.clone();
        for entity in &changed {
            store = store.after_upsert(entity, None)?;
        }
        if self.serving {
            store.warm(&cfg.fields_used, None)?;
        }
        let teams = changed.iter().any(|e| e == crate::store::schema::TEAMS);
        let memo = served
            .records
            .memo
            .after_change(|e| teams || changed.iter().any(|c| c == e));
        let generation = self.swap_records(&served, store, memo);
        seen.generations = generations;
        Ok(Some((changed, generation)))
    }

    /// Whether another connection committed to the SQLite database since
    /// the last call: one `PRAGMA data_version` on a connection kept for it.
    fn another_connection_committed(&self) -> Result<bool, EngineError> {
        let mut watch = self.watch.lock().unwrap_or_else(|p| p.into_inner());
        if watch.is_none() {
            let conn = db::open(&self.db_path)?;
            *watch = Some((conn, i64::MIN));
        }
        let (conn, last) = watch.as_mut().expect("just opened");
        let version = db::data_version(conn)?;
        if version == *last {
            return Ok(false);
        }
        *last = version;
        Ok(true)
    }

    /// The record generations of the database (see [`db::bump_generation`]).
    fn generations(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        if self.pg.is_some() {
            return self.polled(db::generations_in);
        }
        db::generations_in(&self.engine_conn()?.db())
    }

    /// Runs `f` on the kept polling connection (PostgreSQL), opened again
    /// after an error.
    fn polled<T>(&self, f: impl FnOnce(&Db<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut slot = self.poll.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(self.engine_conn()?);
        }
        let result = f(&slot.as_ref().expect("just opened").db());
        if result.is_err() {
            *slot = None;
        }
        result
    }

    /// Whether the database holds records (of any entity).
    pub fn has_records(&self) -> Result<bool, StoreError> {
        if let Some(mut client) = self.pg_client()? {
            return pg::has_records(&mut client, &self.snapshot().config.schema);
        }
        demo_writer::has_records(&self.connection()?, &self.snapshot().config.schema)
    }

    /// How many records each entity holds (for `kpi_records`).
    pub fn record_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        if let Some(mut client) = self.pg_client()? {
            return pg::record_counts(&mut client, &self.snapshot().config.schema);
        }
        demo_writer::record_counts(&self.connection()?, &self.snapshot().config.schema)
    }

    /// Whether the database's records were written by `kpi demo`.
    pub fn made_by_demo(&self) -> Result<bool, StoreError> {
        if let Some(mut client) = self.pg_client()? {
            return Ok(pg::meta(&mut client, "demo")?.is_some());
        }
        Ok(demo_writer::meta(&self.connection()?, "demo")?.is_some())
    }

    /// Replaces every record with the demo CRM, then serves it. Returns the
    /// records written per entity.
    pub fn write_demo(&self, opts: &DemoOptions) -> Result<Vec<(&'static str, u64)>, EngineError> {
        let mut seen = self.write_lock();
        let served = self.snapshot();
        let cfg = &served.config;
        if let Some(mut client) = self.pg_client()? {
            let mut staging = pg::stage::stage(&mut client, &cfg.schema)?;
            let counts = demo_writer::write_demo(
                &mut staging.conn,
                &cfg.schema,
                &cfg.settings.calendar,
                opts,
            )?;
            let entities: Vec<&str> = cfg.schema.entities.keys().map(String::as_str).collect();
            let stamp = format!("scale={} seed={}", opts.scale, opts.seed);
            pg::stage::publish(
                &mut client,
                &staging,
                &cfg.schema,
                &entities,
                true,
                Some(("demo", &stamp)),
            )?;
            self.serve_published(&served, &mut seen, &mut client, &entities)?;
            return Ok(counts);
        }
        let mut conn = self.connection()?;
        let counts = demo_writer::write_demo(&mut conn, &cfg.schema, &cfg.settings.calendar, opts)?;
        for entity in cfg.schema.entities.keys() {
            db::bump_generation(&conn, entity)?;
        }
        seen.generations = db::generations(&conn)?;
        let store =
            ColumnStore::new(self.connection()?, cfg.schema.clone()).prefetch(&cfg.fields_used);
        if self.serving {
            store.warm(&cfg.fields_used, None)?;
        }
        self.swap(Snapshot {
            config: cfg.clone(),
            records: Records {
                store: Arc::new(store),
                // Every answer read the old records; the memo keeps only its window setting.
                memo: Arc::new(served.records.memo.after_change(|_| true)),
            },
            version: served.version,
            loaded_at: served.loaded_at.clone(),
            content_hash: served.content_hash.clone(),
            data_generation: served.data_generation + 1,
            frozen: served.frozen.clone(),
        });
        Ok(counts)
    }

    /// The config history, oldest first (at most `limit` of the newest).
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        config_history::list(&self.engine_conn()?.db(), limit)
    }
}

/// A refused schema change as the rejection of the edit that asked for it.
fn schema_rejected(files: &BTreeMap<String, String>, e: StoreError) -> EngineError {
    match e {
        e @ StoreError::Schema(_) => EngineError::rejected(
            "the schema does not fit the database; nothing was written",
            schema_diagnostics(files, e),
        ),
        other => other.into(),
    }
}

/// A schema refusal as diagnostics pointing at the entity or field in kpis/schema.toml.
fn schema_diagnostics(files: &BTreeMap<String, String>, e: StoreError) -> Vec<Diagnostic> {
    const FILE: &str = "kpis/schema.toml";
    let StoreError::Schema(refusals) = e else {
        return vec![Diagnostic::file(FILE, e.to_string())];
    };
    let src =
        crate::config::toml_doc::Source::new(FILE, files.get(FILE).cloned().unwrap_or_default());
    let doc = src.parse().ok();
    refusals
        .iter()
        .map(|r| {
            let entity = doc
                .as_ref()
                .and_then(|d| d.get("entity"))
                .and_then(|n| n.as_table())
                .and_then(|t| t.iter().find(|(k, _)| k.name == r.entity));
            let field = entity.and_then(|(_, n)| {
                let f = r.field.as_deref()?;
                n.get("fields")?
                    .as_table()?
                    .iter()
                    .find(|(k, _)| k.name == f)
            });
            match field.or(entity) {
                Some((key, _)) => src.error_at(&key.span, r.message.clone()),
                None => Diagnostic::file(FILE, r.message.clone()),
            }
        })
        .collect()
}

/// Records the configuration an engine starts with, unless the history's
/// last version is the same. Returns its version.
fn record_start(conn: &Db<'_>, cfg: &ConfigSnapshot, hash: &str) -> Result<u64, StoreError> {
    let hashes = config_history::file_hashes(&cfg.files);
    match config_history::last(conn)? {
        Some(l) if l.content_hash == hash => Ok(l.version),
        last => {
            let before = last.map(|l| l.file_hashes).unwrap_or_default();
            let changed = config_history::changed_files(&before, &hashes);
            config_history::append(
                conn,
                &NewVersion {
                    applied_at: &format_utc(now()),
                    origin: Origin::File,
                    actor: FILE_ACTOR,
                    files_changed: &changed,
                    content_hash: hash,
                    files: &cfg.files,
                },
            )
        }
    }
}

/// The URL when `--db` names a PostgreSQL database.
pub fn postgres_url(db: &Path) -> Option<&str> {
    db.to_str().filter(|s| pg::is_url(s))
}

/// The current time, in UTC milliseconds.
pub fn now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}
