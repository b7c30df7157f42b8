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
pub mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::Connection;

pub use error::{EngineError, Kind};
pub use snapshot::{EvalRequest, PreviewReport, Proposal, Snapshot, ValueReport, When, Who};

use crate::config::{self, ConfigSnapshot};
use crate::demo::DemoOptions;
use crate::diag::Diagnostic;
use crate::eval::Records;
use crate::period::{Millis, format_utc};
use crate::store::columns::ColumnStore;
use crate::store::history::{self, HistoryEntry, Origin};
use crate::store::import::{ImportReport, Input, import};
use crate::store::{StoreError, bulk, db};

/// How an engine is opened.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub root: PathBuf,
    /// The SQLite database (created when missing).
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
    serving: bool,
    current: RwLock<Arc<Snapshot>>,
    /// One change at a time: reloads, edits, ingests, demo writes.
    writer: Mutex<()>,
}

impl Engine {
    /// Checks the configuration, opens the database and applies schema
    /// additions, and (when serving) records the configuration and warms the
    /// columns. Blocking.
    pub fn open(opts: &EngineOptions) -> Result<Engine, EngineError> {
        let root = std::fs::canonicalize(&opts.root)
            .map_err(|e| EngineError::Io(format!("--root {}: {e}", opts.root.display())))?;
        let cfg = crate::load_checked(&root).map_err(EngineError::Config)?;
        let mut conn = db::open(&opts.db)?;
        db::migrate(&mut conn, &cfg.schema)?;
        let hash = cfg.content_hash();
        let version = if opts.serving {
            record_start(&conn, &cfg, &hash)?
        } else {
            0
        };
        let store = ColumnStore::new(conn, cfg.schema.clone()).prefetch(&cfg.fields_used);
        if opts.serving {
            store.warm(&cfg.fields_used, None)?;
        }
        let snapshot = Snapshot {
            config: cfg,
            records: Records::new(Arc::new(store)),
            version,
            loaded_at: format_utc(now()),
            content_hash: hash,
            data_generation: 1,
        };
        Ok(Engine {
            root,
            db_path: opts.db.clone(),
            serving: opts.serving,
            current: RwLock::new(Arc::new(snapshot)),
            writer: Mutex::new(()),
        })
    }

    /// What `kpi check` checks: the configuration, and that an existing
    /// database can take its schema without a refused change. Nothing is written.
    pub fn check(root: &Path, db_path: &Path) -> Result<CheckSummary, EngineError> {
        let cfg = crate::load_checked(root).map_err(EngineError::Config)?;
        if db_path.exists() {
            db::plan(&db::open(db_path)?, &cfg.schema).map_err(|e| {
                EngineError::rejected(
                    "the schema does not fit the database",
                    vec![Diagnostic::file("kpis/schema.toml", e.to_string())],
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

    /// A connection to the engine's database, for its own tables (alerts).
    pub fn connection(&self) -> Result<Connection, StoreError> {
        db::open(&self.db_path)
    }

    fn swap(&self, next: Snapshot) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads kpis/ and scripts/ from disk as one candidate, checks it, and
    /// applies it if it checks. Blocking.
    pub fn reload(&self) -> Result<Applied, Vec<Diagnostic>> {
        let _writer = self.write_lock();
        let cfg = crate::load_checked(&self.root).map_err(|d| d.0)?;
        self.apply(cfg, Origin::File)
    }

    /// An edit of one file: `edit` gets the files on disk and returns the one
    /// file it changes (path relative to the root, new text). The edited
    /// candidate is checked in memory; only if it passes is the file written
    /// (atomically) and the configuration applied. Blocking.
    pub fn edit<F>(&self, edit: F) -> Result<(String, Applied), EngineError>
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
        // What `kpi check` also asks of an existing database: no refused schema change.
        db::plan(&db::open(&self.db_path)?, &candidate.schema)
            .map_err(|e| rejected(vec![Diagnostic::file("kpis/schema.toml", e.to_string())]))?;
        config::edit::write_atomic(&self.root.join(&path), &text)
            .map_err(|e| EngineError::Io(format!("cannot write {path}: {e}")))?;
        let applied = self.apply(candidate, Origin::Api).map_err(|d| {
            EngineError::rejected(
                format!("{path} was written but the configuration could not be applied"),
                d,
            )
        })?;
        Ok((path, applied))
    }

    /// Applies a checked candidate: schema additions, a history row, then the
    /// swap. The caller holds the writer lock.
    fn apply(&self, cfg: Arc<ConfigSnapshot>, origin: Origin) -> Result<Applied, Vec<Diagnostic>> {
        let served = self.snapshot();
        let hash = cfg.content_hash();
        if hash == served.content_hash {
            return Ok(Applied {
                version: served.version,
                changed: false,
                files_changed: Vec::new(),
            });
        }
        let db_error = |e: StoreError| vec![Diagnostic::file("kpis/schema.toml", e.to_string())];
        let mut conn = db::open(&self.db_path).map_err(db_error)?;
        db::migrate(&mut conn, &cfg.schema).map_err(db_error)?;
        let files_changed = history::changed_files(
            &history::file_hashes(&served.config.files),
            &history::file_hashes(&cfg.files),
        );
        let applied_at = format_utc(now());
        let version = if self.serving {
            history::append(
                &conn,
                &applied_at,
                origin,
                &files_changed,
                &hash,
                &history::file_hashes(&cfg.files),
            )
            .map_err(|e| {
                vec![Diagnostic::file(
                    self.db_path.display().to_string(),
                    format!("cannot record the config history: {e}"),
                )]
            })?
        } else {
            served.version + 1
        };
        let records = self.records_for(&served, &cfg).map_err(db_error)?;
        self.swap(Snapshot {
            config: cfg,
            records,
            version,
            loaded_at: applied_at,
            content_hash: hash,
            data_generation: served.data_generation,
        });
        Ok(Applied {
            version,
            changed: true,
            files_changed,
        })
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
        let _writer = self.write_lock();
        let served = self.snapshot();
        let cfg = &served.config;
        let mut conn = db::open(&self.db_path)?;
        let report = import(
            &mut conn,
            &cfg.schema,
            &cfg.settings.calendar,
            entity,
            label,
            input,
        )?;
        let generation = self.serve_ingested(&served, std::slice::from_ref(&report))?;
        Ok((report, generation))
    }

    /// Imports a foreign file through a mapping (SPEC 15), every entity it
    /// writes in one transaction, then serves the records; with `dry_run`
    /// nothing is written and the generation stays.
    pub fn ingest_mapped(
        &self,
        request: crate::mapping::Request<'_>,
    ) -> Result<(crate::mapping::MappedImport, u64), EngineError> {
        let _writer = self.write_lock();
        let served = self.snapshot();
        let dry_run = request.dry_run;
        let mut conn = db::open(&self.db_path)?;
        let done = crate::mapping::import_with_mapping(&mut conn, &served.config, request)?;
        let generation = if dry_run {
            served.data_generation
        } else {
            self.serve_ingested(&served, &done.reports)?
        };
        Ok((done, generation))
    }

    /// Serves the records after imports into `served`'s store: each ingested
    /// table is patched, and the shape answers that read one are dropped.
    /// The caller holds the writer lock.
    fn serve_ingested(
        &self,
        served: &Snapshot,
        reports: &[ImportReport],
    ) -> Result<u64, EngineError> {
        let cfg = &served.config;
        let mut store = served.records.store.clone();
        for report in reports {
            store = store.after_upsert(&report.entity, report.ids.as_deref())?;
            if self.serving {
                store.warm(&cfg.fields_used, Some(&report.entity))?;
            }
        }
        let changed: Vec<&str> = reports.iter().map(|r| r.entity.as_str()).collect();
        let memo = served.records.memo.after_change(|e| changed.contains(&e));
        let generation = served.data_generation + 1;
        self.swap(Snapshot {
            config: cfg.clone(),
            records: Records {
                store,
                memo: Arc::new(memo),
            },
            version: served.version,
            loaded_at: served.loaded_at.clone(),
            content_hash: served.content_hash.clone(),
            data_generation: generation,
        });
        Ok(generation)
    }

    /// Whether the database holds records (of any entity).
    pub fn has_records(&self) -> Result<bool, StoreError> {
        bulk::has_records(&self.connection()?, &self.snapshot().config.schema)
    }

    /// Whether the database's records were written by `kpi demo`.
    pub fn made_by_demo(&self) -> Result<bool, StoreError> {
        Ok(bulk::meta(&self.connection()?, "demo")?.is_some())
    }

    /// Replaces every record with the demo CRM, then serves it. Returns the
    /// records written per entity.
    pub fn write_demo(&self, opts: &DemoOptions) -> Result<Vec<(&'static str, u64)>, EngineError> {
        let _writer = self.write_lock();
        let served = self.snapshot();
        let cfg = &served.config;
        let mut conn = self.connection()?;
        let counts = bulk::write_demo(&mut conn, &cfg.schema, &cfg.settings.calendar, opts)?;
        let store =
            ColumnStore::new(self.connection()?, cfg.schema.clone()).prefetch(&cfg.fields_used);
        if self.serving {
            store.warm(&cfg.fields_used, None)?;
        }
        self.swap(Snapshot {
            config: cfg.clone(),
            records: Records::new(Arc::new(store)),
            version: served.version,
            loaded_at: served.loaded_at.clone(),
            content_hash: served.content_hash.clone(),
            data_generation: served.data_generation + 1,
        });
        Ok(counts)
    }

    /// The config history, oldest first (at most `limit` of the newest).
    pub fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        history::list(&self.connection()?, limit)
    }
}

/// Records the configuration an engine starts with, unless the history's
/// last version is the same. Returns its version.
fn record_start(conn: &Connection, cfg: &ConfigSnapshot, hash: &str) -> Result<u64, StoreError> {
    let hashes = history::file_hashes(&cfg.files);
    match history::last(conn)? {
        Some(l) if l.content_hash == hash => Ok(l.version),
        last => {
            let before = last.map(|l| l.file_hashes).unwrap_or_default();
            let changed = history::changed_files(&before, &hashes);
            history::append(
                conn,
                &format_utc(now()),
                Origin::File,
                &changed,
                hash,
                &hashes,
            )
        }
    }
}

/// The current time, in UTC milliseconds.
pub fn now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}
