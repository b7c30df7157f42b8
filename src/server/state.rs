//! What the server serves, and the only ways it changes.
//!
//! [`Served`] is one immutable pair of a checked configuration and a column
//! store over the database, with its config version and data generation.
//! Requests clone the `Arc<Served>` under a lock held for nothing else, so a
//! request sees one configuration and one data state from start to end, and
//! never waits for a reload or an ingest: those build the next `Served`
//! completely, then swap it in.
//!
//! Every change goes through one writer at a time ([`AppState::writer`]): a
//! reload (the watcher or POST /api/reload), an API edit of a config file,
//! or an ingest of records. A candidate configuration is checked exactly as
//! `kpi check` does; an invalid one changes nothing served and its errors are
//! kept for /health and the dashboard until a later reload succeeds.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::config::{self, ConfigSnapshot};
use crate::diag::{Diagnostic, Diagnostics};
use crate::eval::report::Report;
use crate::period::{Millis, PeriodId, format_utc};
use crate::store::columns::ColumnStore;
use crate::store::history::{self, Origin};
use crate::store::import::{ImportReport, Input, import};
use crate::store::{StoreError, bulk, db};

use super::auth::Tokens;
use super::error::ApiError;

/// How `kpi serve` was started.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub root: PathBuf,
    pub db: PathBuf,
    pub addr: String,
    /// Fill an empty database with the demo CRM first.
    pub demo: bool,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}\nthe configuration has errors; the server was not started")]
    Config(Diagnostics),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

/// One configuration and one data state, served together.
pub struct Served {
    pub config: Arc<ConfigSnapshot>,
    /// The config history version of `config`.
    pub version: u64,
    /// When this configuration was applied (RFC 3339, UTC).
    pub loaded_at: String,
    pub content_hash: String,
    pub store: Arc<ColumnStore>,
    /// Counts ingests (and other store rebuilds) since start.
    pub data_generation: u64,
}

/// The outcome of the last reload attempt that failed, until one succeeds.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub errors: Vec<Diagnostic>,
    pub failed_at: Option<String>,
}

/// The result of applying a configuration.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: u64,
    /// False when the candidate was identical to the served configuration.
    pub changed: bool,
    pub files_changed: Vec<String>,
}

/// The records of one ingest, as the body brought them.
pub enum Records {
    /// A JSON array of objects.
    Json(crate::store::import::JsonRows),
    /// One JSON object a line.
    Ndjson(axum::body::Bytes),
    /// A foreign file read through kpis/mappings/NAME.toml (SPEC 15).
    Mapped {
        mapping: String,
        body: axum::body::Bytes,
    },
}

/// The server's shared state.
pub struct AppState {
    pub root: PathBuf,
    pub db_path: PathBuf,
    pub tokens: Tokens,
    served: RwLock<Arc<Served>>,
    health: RwLock<Arc<Health>>,
    /// One writer at a time: reloads, API edits and ingests queue here.
    writer: tokio::sync::Mutex<()>,
    pub cache: ReportCache,
    /// The alert scheduler, started by `serve` once the state exists.
    pub alerts: std::sync::OnceLock<crate::alerts::Scheduler>,
}

impl AppState {
    /// Loads and checks the configuration, prepares the database (and the demo
    /// data when asked), and records the configuration in the history. Blocking.
    pub fn open(opts: &ServeOptions, tokens: Tokens) -> Result<AppState, StartError> {
        let root = std::fs::canonicalize(&opts.root)
            .map_err(|e| StartError::Io(format!("--root {}: {e}", opts.root.display())))?;
        let cfg = crate::load_checked(&root).map_err(StartError::Config)?;
        let mut conn = db::open(&opts.db)?;
        db::migrate(&mut conn, &cfg.schema)?;
        if opts.demo {
            if bulk::has_records(&conn, &cfg.schema)? {
                tracing::info!("the database already holds records; --demo left it as it is");
            } else {
                let demo = crate::demo::DemoOptions {
                    scale: crate::demo::DEFAULT_SCALE,
                    seed: crate::demo::DEFAULT_SEED,
                    until: now(),
                };
                let counts =
                    bulk::write_demo(&mut conn, &cfg.schema, &cfg.settings.calendar, &demo)?;
                let total: u64 = counts.iter().map(|(_, n)| n).sum();
                tracing::info!("wrote the demo CRM: {total} records");
            }
        }
        let hash = cfg.content_hash();
        let hashes = history::file_hashes(&cfg.files);
        let last = history::last(&conn)?;
        let version = match last {
            Some(l) if l.content_hash == hash => l.version,
            last => {
                let before = last.map(|l| l.file_hashes).unwrap_or_default();
                let changed = history::changed_files(&before, &hashes);
                history::append(
                    &conn,
                    &format_utc(now()),
                    Origin::File,
                    &changed,
                    &hash,
                    &hashes,
                )?
            }
        };
        let store = column_store(&opts.db, &cfg)?;
        let served = Served {
            config: cfg,
            version,
            loaded_at: format_utc(now()),
            content_hash: hash,
            store,
            data_generation: 1,
        };
        tracing::info!("serving configuration version {version}");
        Ok(AppState {
            root,
            db_path: opts.db.clone(),
            tokens,
            served: RwLock::new(Arc::new(served)),
            health: RwLock::new(Arc::new(Health::default())),
            writer: tokio::sync::Mutex::new(()),
            cache: ReportCache::default(),
            alerts: std::sync::OnceLock::new(),
        })
    }

    /// What requests see now. The lock is held only to clone the Arc.
    pub fn served(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn health(&self) -> Arc<Health> {
        self.health
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serves `next`; alert conditions are evaluated again against it.
    fn swap(&self, next: Served) {
        *self.served.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        if let Some(scheduler) = self.alerts.get() {
            scheduler.poke();
        }
    }

    fn set_health(&self, h: Health) {
        *self.health.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(h);
    }

    /// Reloads kpis/ and scripts/ from disk as one candidate (the watcher and
    /// POST /api/reload). A failure is kept for /health until a later success.
    pub async fn reload(self: &Arc<Self>) -> Result<Applied, Vec<Diagnostic>> {
        let _writer = self.writer.lock().await;
        let was_degraded = !self.health().errors.is_empty();
        let state = self.clone();
        let result = blocking(move || {
            Ok(crate::load_checked(&state.root)
                .map_err(|d| d.0)
                .and_then(|cfg| state.apply(cfg, Origin::File)))
        })
        .await
        .unwrap_or_else(|e| Err(vec![Diagnostic::file("kpis", e.to_string())]));
        match &result {
            Ok(a) if a.changed => tracing::info!(
                "applied configuration version {} (changed: {})",
                a.version,
                a.files_changed.join(", ")
            ),
            Ok(a) => {
                if was_degraded {
                    tracing::info!(
                        "the configuration on disk checks again; serving version {}",
                        a.version
                    );
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    "the configuration on disk has {} error(s); still serving version {}",
                    errors.len(),
                    self.served().version
                );
                self.set_health(Health {
                    errors: errors.clone(),
                    failed_at: Some(format_utc(now())),
                });
            }
        }
        result
    }

    /// An API edit: `edit` gets the files on disk and returns the one file it
    /// changes (path relative to the root, new text). The edited candidate is
    /// checked in memory; only if it passes is the file written (atomically)
    /// and the configuration applied with origin "api".
    pub async fn edit_config<F>(self: &Arc<Self>, edit: F) -> Result<(String, Applied), ApiError>
    where
        F: FnOnce(&BTreeMap<String, String>) -> Result<(String, String), ApiError> + Send + 'static,
    {
        let _writer = self.writer.lock().await;
        let state = self.clone();
        blocking(move || {
            let mut files = config::read_files(&state.root).map_err(|d| {
                ApiError::invalid_config("the configuration on disk cannot be read", &d)
            })?;
            let (path, text) = edit(&files)?;
            files.insert(path.clone(), text.clone());
            let rejected = |d: &[Diagnostic]| {
                ApiError::invalid_config(
                    "the edited configuration does not check; nothing was written",
                    d,
                )
            };
            let candidate = config::from_files(&state.root, files).map_err(|d| rejected(&d.0))?;
            let candidate = crate::check_snapshot(Arc::new(candidate)).map_err(|d| rejected(&d))?;
            // What `kpi check` also asks of an existing database: no refused schema change.
            db::plan(&db::open(&state.db_path)?, &candidate.schema)
                .map_err(|e| rejected(&[Diagnostic::file("kpis/schema.toml", e.to_string())]))?;
            super::edit::write_atomic(&state.root.join(&path), &text)
                .map_err(|e| ApiError::internal(format!("cannot write {path}: {e}")))?;
            let applied = state.apply(candidate, Origin::Api).map_err(|d| {
                ApiError::invalid_config(
                    format!("{path} was written but the configuration could not be applied"),
                    &d,
                )
            })?;
            tracing::info!("{path} edited through the API: version {}", applied.version);
            Ok((path, applied))
        })
        .await
    }

    /// Applies a checked candidate: schema additions, a history row, then the swap.
    /// Blocking; the caller holds the writer lock.
    fn apply(&self, cfg: Arc<ConfigSnapshot>, origin: Origin) -> Result<Applied, Vec<Diagnostic>> {
        let served = self.served();
        let hash = cfg.content_hash();
        if hash == served.content_hash {
            self.set_health(Health::default());
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
        let version = history::append(
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
        })?;
        // The records did not change: the columns read so far are kept (those of
        // an entity whose schema changed are read again), and only fields the
        // new formulas name that were never read are read now.
        let store =
            if served.config.schema == cfg.schema && served.config.fields_used == cfg.fields_used {
                served.store.clone()
            } else {
                let store = Arc::new(served.store.derive(cfg.schema.clone(), &cfg.fields_used));
                warm(&store, &cfg, None).map_err(db_error)?;
                store
            };
        self.swap(Served {
            config: cfg,
            version,
            loaded_at: applied_at,
            content_hash: hash,
            store,
            data_generation: served.data_generation,
        });
        self.set_health(Health::default());
        Ok(Applied {
            version,
            changed: true,
            files_changed,
        })
    }

    /// Imports records (all or nothing), then serves a fresh column store over them.
    pub async fn ingest(
        self: &Arc<Self>,
        entity: String,
        records: Records,
    ) -> Result<(Vec<ImportReport>, u64), ApiError> {
        let _writer = self.writer.lock().await;
        let state = self.clone();
        blocking(move || {
            let served = state.served();
            let cfg = &served.config;
            let mut conn = db::open(&state.db_path)?;
            let input = match records {
                Records::Json(rows) => Input::JsonArray(rows),
                Records::Ndjson(bytes) => Input::Ndjson(Box::new(std::io::Cursor::new(bytes))),
                Records::Mapped { mapping, body } => {
                    let done = crate::mapping::import_with_mapping(
                        &mut conn,
                        cfg,
                        crate::mapping::Request::body(&entity, &mapping, body.to_vec()),
                    )?;
                    return state.after_ingest(&served, done.reports);
                }
            };
            let report = import(
                &mut conn,
                &cfg.schema,
                &cfg.settings.calendar,
                &entity,
                "body",
                input,
            )?;
            state.after_ingest(&served, vec![report])
        })
        .await
    }

    /// Serves a fresh column store after an import: only what the import
    /// touched is read again.
    fn after_ingest(
        &self,
        served: &Served,
        reports: Vec<ImportReport>,
    ) -> Result<(Vec<ImportReport>, u64), ApiError> {
        {
            let cfg = &served.config;
            let mut store = served.store.clone();
            for report in &reports {
                // The ingested rows, patched into a copy of the entity's columns;
                // every other table is kept.
                store = Arc::new(store.after_upsert(&report.entity, report.ids.as_deref())?);
                warm(&store, cfg, Some(&report.entity))?;
            }
            let generation = served.data_generation + 1;
            self.swap(Served {
                config: cfg.clone(),
                version: served.version,
                loaded_at: served.loaded_at.clone(),
                content_hash: served.content_hash.clone(),
                store,
                data_generation: generation,
            });
            for report in &reports {
                tracing::info!(
                    "imported {} (data generation {generation})",
                    report.summary()
                );
            }
            Ok((reports, generation))
        }
    }

    /// The config history, oldest first (at most `limit` of the newest).
    pub async fn history(&self, limit: usize) -> Result<Vec<history::HistoryEntry>, ApiError> {
        let db_path = self.db_path.clone();
        blocking(move || Ok(history::list(&db::open(&db_path)?, limit)?)).await
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// A fresh column store over its own connection, warmed, keeping query
/// results across requests and changes (what a change did not touch is not
/// computed again).
fn column_store(db_path: &Path, cfg: &ConfigSnapshot) -> Result<Arc<ColumnStore>, StoreError> {
    let store = ColumnStore::new(db::open(db_path)?, cfg.schema.clone())
        .prefetch(&cfg.fields_used)
        .memoized();
    warm(&store, cfg, None)?;
    Ok(Arc::new(store))
}

/// Reads the fields the configuration's formulas name before the store is
/// swapped in, so requests do not pay for it: every entity's (`only` = None),
/// or one entity's. Columns already loaded are not read again.
fn warm(store: &ColumnStore, cfg: &ConfigSnapshot, only: Option<&str>) -> Result<(), StoreError> {
    store.teams()?;
    for (entity, fields) in &cfg.fields_used {
        if only.is_none_or(|e| e == entity) {
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            let table = store.table(entity, &fields)?;
            store.team_rows(&table)?;
        }
    }
    Ok(())
}

/// Runs blocking work (SQLite, evaluation) off the async threads. A panic in
/// it becomes a 500 for this request only.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(ApiError::internal(format!("a request panicked: {message}")))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// The current time, in UTC milliseconds.
pub fn now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// What a cached scorecard evaluation is for. The config version and data
/// generation are part of the key, so a reload or an ingest is never served
/// stale; "now" (no as_of in the request) is bucketed to the minute by
/// [`compute::when`](super::compute::when), so it does not defeat the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportKey {
    pub version: u64,
    pub generation: u64,
    pub scorecard: String,
    pub period: PeriodId,
    /// How many periods, ending with `period`.
    pub span: u32,
    pub as_of: i64,
}

/// One evaluated scorecard, and its JSON response made once.
pub struct CachedReports {
    pub reports: Arc<Vec<Report>>,
    json: OnceLock<axum::body::Bytes>,
}

impl CachedReports {
    /// The serialized JSON of the last report (what GET /api/scorecards/{id} returns).
    pub fn json(&self) -> axum::body::Bytes {
        self.json
            .get_or_init(|| {
                let last = self.reports.last().map(Report::to_json);
                serde_json::to_vec(&last.unwrap_or_default())
                    .unwrap_or_default()
                    .into()
            })
            .clone()
    }
}

/// A cache entry: filled once; concurrent requests for the same key wait for
/// the one evaluation instead of running their own.
#[derive(Default)]
struct Slot {
    filling: Mutex<()>,
    value: OnceLock<Arc<CachedReports>>,
}

/// Evaluated scorecards, shared by the API and the dashboard.
#[derive(Default)]
pub struct ReportCache {
    map: RwLock<HashMap<ReportKey, Arc<Slot>>>,
}

/// Entries kept before the cache starts over.
const CACHE_ENTRIES: usize = 64;

impl ReportCache {
    /// The entry of `key` if it is filled.
    pub fn get(&self, key: &ReportKey) -> Option<Arc<CachedReports>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .and_then(|slot| slot.value.get().cloned())
    }

    /// The entry of `key`, filled by `fill` unless it is already (or, in
    /// another thread, being) filled. Blocking. An error is not kept.
    pub fn get_or_fill<E>(
        &self,
        key: &ReportKey,
        fill: impl FnOnce() -> Result<Vec<Report>, E>,
    ) -> Result<Arc<CachedReports>, E> {
        let slot = {
            let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
            match map.get(key) {
                Some(slot) => slot.clone(),
                None => {
                    // Entries of older versions and generations are never asked for again.
                    map.retain(|k, _| k.version >= key.version && k.generation >= key.generation);
                    if map.len() >= CACHE_ENTRIES {
                        map.clear();
                    }
                    map.entry(key.clone()).or_default().clone()
                }
            }
        };
        let _filling = slot.filling.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = slot.value.get() {
            return Ok(v.clone());
        }
        let reports = Arc::new(fill()?);
        Ok(slot
            .value
            .get_or_init(|| {
                Arc::new(CachedReports {
                    reports,
                    json: OnceLock::new(),
                })
            })
            .clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_blocking_work_is_a_500_for_that_request_only() {
        let r: Result<(), ApiError> = blocking(|| panic!("boom")).await;
        let e = r.unwrap_err();
        assert_eq!(e.status(), 500);
        assert!(matches!(&e, ApiError::Internal(m) if m.contains("boom")));
        assert_eq!(blocking(|| Ok(7)).await.unwrap(), 7);
    }

    #[test]
    fn concurrent_misses_of_one_report_evaluate_it_once() {
        let cache = Arc::new(ReportCache::default());
        let key = ReportKey {
            version: 1,
            generation: 1,
            scorecard: "sales".into(),
            period: "2026-Q3".parse().unwrap(),
            span: 1,
            as_of: 0,
        };
        let fills = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, key, fills) = (cache.clone(), key.clone(), fills.clone());
                std::thread::spawn(move || {
                    cache
                        .get_or_fill(&key, || {
                            fills.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok::<_, ()>(Vec::new())
                        })
                        .unwrap()
                        .json()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(&t.join().unwrap()[..], b"null");
        }
        assert_eq!(fills.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(cache.get(&key).is_some());
        // An error is not kept: the next ask evaluates again.
        let other = ReportKey { span: 2, ..key };
        assert!(cache.get_or_fill(&other, || Err("boom")).is_err());
        assert!(cache.get(&other).is_none());
    }
}
