//! What the server serves, and the only ways it changes.
//!
//! The [`Engine`] owns what is served (an immutable snapshot of a checked
//! configuration and the records, swapped whole) and the one-writer rule.
//! Requests clone the `Arc<Snapshot>` under a lock held for nothing else, so a
//! request sees one configuration and one data state from start to end, and
//! never waits for a reload or an ingest. This module adds what only a server
//! has: the health of the last reload (for /health and the dashboard), the
//! tokens, the scorecard cache, and the alert scheduler poked after every change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use crate::diag::Diagnostic;
use crate::engine::{Applied, Engine, EngineError, EngineOptions, ReloadError, Snapshot};
use crate::period::format_utc;
use crate::store::config_history::HistoryEntry;
use crate::store::import::{ImportReport, Input};

use super::auth::Tokens;
use super::cache::ReportCache;
use super::error::ApiError;

/// How `kpi serve` was started.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub root: PathBuf,
    pub db: PathBuf,
    pub addr: String,
    /// Fill an empty database with the demo CRM first.
    pub demo: bool,
    /// Timeouts and the connection cap.
    pub limits: super::listen::Limits,
}

/// The outcome of the last reload attempt that failed, until one succeeds.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub errors: Vec<Diagnostic>,
    pub failed_at: Option<String>,
    /// The failure was the database's, not the files' (locked, disk full):
    /// [`upkeep`](super::upkeep) tries the reload again until it applies.
    pub transient: bool,
}

/// What the alert scheduler judges: the served snapshot once its
/// configuration has settled (see [`AppState::alert_view`]).
#[derive(Default)]
struct AlertView {
    settled: Option<Arc<Snapshot>>,
    /// A configuration reloaded from files at this instant, not settled yet.
    pending_since: Option<std::time::Instant>,
}

/// A configuration reloaded from files is handed to the alert scheduler only
/// after this long without another reload: an editor that truncates a file,
/// then writes it, must not make webhooks hear about the empty file.
pub const ALERT_SETTLE: std::time::Duration = std::time::Duration::from_millis(1500);

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
    pub engine: Arc<Engine>,
    pub tokens: Tokens,
    health: RwLock<Arc<Health>>,
    pub cache: ReportCache,
    /// The alert scheduler, started by `serve` once the state exists.
    pub alerts: std::sync::OnceLock<crate::alerts::Scheduler>,
    alert_view: std::sync::Mutex<AlertView>,
}

impl AppState {
    /// Opens the engine for serving (and writes the demo data when asked and
    /// the database is empty). Blocking.
    pub fn open(opts: &ServeOptions, tokens: Tokens) -> Result<AppState, EngineError> {
        let engine = Engine::open(&EngineOptions {
            root: opts.root.clone(),
            db: opts.db.clone(),
            serving: true,
        })?;
        if engine.on_postgres() {
            prepare_alert_tables(&engine)?;
        }
        if opts.demo {
            if engine.has_records()? {
                tracing::info!("the database already holds records; --demo left it as it is");
            } else {
                let demo = crate::demo::DemoOptions {
                    scale: crate::demo::DEFAULT_SCALE,
                    seed: crate::demo::DEFAULT_SEED,
                    until: crate::engine::now(),
                };
                let counts = engine.write_demo(&demo)?;
                let total: u64 = counts.iter().map(|(_, n)| n).sum();
                tracing::info!("wrote the demo CRM: {total} records");
            }
        }
        tracing::info!(
            "serving configuration version {}",
            engine.snapshot().version
        );
        crate::metrics::get().reloaded_ok();
        Ok(AppState {
            engine: Arc::new(engine),
            tokens,
            health: RwLock::new(Arc::new(Health::default())),
            cache: ReportCache::default(),
            alerts: std::sync::OnceLock::new(),
            alert_view: std::sync::Mutex::new(AlertView::default()),
        })
    }

    /// What requests see now.
    pub fn served(&self) -> Arc<Snapshot> {
        self.engine.snapshot()
    }

    pub fn health(&self) -> Arc<Health> {
        self.health
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_health(&self, h: Health) {
        let metrics = crate::metrics::get();
        if h.errors.is_empty() {
            metrics.reloaded_ok();
        } else {
            metrics.reload_successful.set(0);
        }
        *self.health.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(h);
    }

    /// What the alert scheduler evaluates: the served snapshot, except that
    /// a configuration reloaded from files is held back until it settled
    /// (meanwhile the last settled one, with its records, is judged).
    pub fn alert_view(&self) -> Arc<Snapshot> {
        let view = self.alert_view.lock().unwrap_or_else(|p| p.into_inner());
        match (&view.settled, view.pending_since) {
            (Some(s), Some(_)) => s.clone(),
            _ => self.served(),
        }
    }

    /// Alert conditions are evaluated again after every change.
    pub(super) fn changed(&self) {
        {
            let mut view = self.alert_view.lock().unwrap_or_else(|p| p.into_inner());
            if view.pending_since.is_some() {
                // Held: the settle check pokes once the configuration settled.
                return;
            }
            view.settled = None;
        }
        if let Some(scheduler) = self.alerts.get() {
            scheduler.poke();
        }
    }

    /// A reload from files changed the configuration: hold alert evaluation
    /// on the configuration judged so far until it settles.
    fn config_reloaded_from_files(&self, before: Arc<Snapshot>) {
        let mut view = self.alert_view.lock().unwrap_or_else(|p| p.into_inner());
        if view.pending_since.is_none() {
            view.settled = Some(before);
        }
        view.pending_since = Some(std::time::Instant::now());
    }

    /// Releases a held configuration to the alert scheduler once it has not
    /// changed for [`ALERT_SETTLE`] (called by [`upkeep`](super::upkeep)).
    pub fn settle_alerts(&self) {
        {
            let mut view = self.alert_view.lock().unwrap_or_else(|p| p.into_inner());
            match view.pending_since {
                Some(t) if t.elapsed() >= ALERT_SETTLE => {
                    view.pending_since = None;
                    view.settled = None;
                }
                _ => return,
            }
        }
        tracing::debug!("the reloaded configuration settled; evaluating alerts");
        if let Some(scheduler) = self.alerts.get() {
            scheduler.poke();
        }
    }

    /// Reloads kpis/ and scripts/ from disk as one candidate (the watcher and
    /// POST /api/reload), recorded with `actor`. A failure is kept for /health
    /// until a later success.
    pub async fn reload(self: &Arc<Self>, actor: &str) -> Result<Applied, Vec<Diagnostic>> {
        let was_degraded = !self.health().errors.is_empty();
        let engine = self.engine.clone();
        let before = self.served();
        let who = actor.to_string();
        let result = blocking(move || Ok(engine.reload(&who)))
            .await
            .unwrap_or_else(|e| {
                Err(ReloadError::Config(vec![Diagnostic::file(
                    "kpis",
                    e.to_string(),
                )]))
            });
        match result {
            Ok(a) => {
                if a.changed {
                    tracing::info!(
                        "applied configuration version {} (changed: {}; actor {actor})",
                        a.version,
                        a.files_changed.join(", ")
                    );
                    self.config_reloaded_from_files(before);
                } else if was_degraded {
                    tracing::info!(
                        "the configuration on disk checks again; serving version {}",
                        a.version
                    );
                }
                self.set_health(Health::default());
                Ok(a)
            }
            Err(e) => {
                let errors = e.diagnostics();
                for d in &errors {
                    tracing::error!("{d}");
                }
                tracing::error!(
                    "the configuration on disk could not be applied ({} error(s)); still serving version {}",
                    errors.len(),
                    self.served().version
                );
                self.set_health(Health {
                    errors: errors.clone(),
                    failed_at: Some(format_utc(crate::engine::now())),
                    transient: matches!(e, ReloadError::Transient(_)),
                });
                Err(errors)
            }
        }
    }

    /// An API edit of one file by `actor` (see [`Engine::edit`]).
    pub async fn edit_config<F>(
        self: &Arc<Self>,
        actor: String,
        edit: F,
    ) -> Result<(String, Applied), ApiError>
    where
        F: FnOnce(&BTreeMap<String, String>) -> Result<(String, String), EngineError>
            + Send
            + 'static,
    {
        let engine = self.engine.clone();
        let who = actor.clone();
        let (path, applied) = blocking(move || Ok(engine.edit(&who, edit)?)).await?;
        tracing::info!(
            "{path} edited through the API by {actor}: version {}",
            applied.version
        );
        self.config_changed_by_api(&applied);
        Ok((path, applied))
    }

    /// The files of an earlier version written back by `actor` (see [`Engine::rollback`]).
    pub async fn rollback(
        self: &Arc<Self>,
        version: u64,
        actor: String,
    ) -> Result<Applied, ApiError> {
        let engine = self.engine.clone();
        let who = actor.clone();
        let applied = blocking(move || Ok(engine.rollback(version, &who)?)).await?;
        tracing::info!(
            "rolled back to the files of version {version} by {actor}: version {} (changed: {})",
            applied.version,
            applied.files_changed.join(", ")
        );
        self.config_changed_by_api(&applied);
        Ok(applied)
    }

    /// After a deliberate change through the API (this server's, or another
    /// server's adopted by [`upkeep`](super::upkeep)): healthy, and alerts judged at once.
    pub(super) fn config_changed_by_api(&self, applied: &Applied) {
        self.set_health(Health::default());
        if applied.changed {
            // A deliberate, atomic change: judged at once, ending any hold.
            self.alert_view
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pending_since = None;
            self.changed();
        }
    }

    /// Imports records (all or nothing), then serves them.
    pub async fn ingest(
        self: &Arc<Self>,
        entity: String,
        records: Records,
        actor: &str,
    ) -> Result<(Vec<ImportReport>, u64), ApiError> {
        let engine = self.engine.clone();
        let (reports, generation) = blocking(move || {
            let input = match records {
                Records::Json(rows) => Input::JsonArray(rows),
                Records::Ndjson(bytes) => Input::Ndjson(Box::new(std::io::Cursor::new(bytes))),
                Records::Mapped { mapping, body } => {
                    let request = crate::mapping::Request::body(&entity, &mapping, body.to_vec());
                    let (done, generation) = engine.ingest_mapped(request)?;
                    return Ok((done.reports, generation));
                }
            };
            let (report, generation) = engine.ingest(&entity, "body", input)?;
            Ok((vec![report], generation))
        })
        .await?;
        for report in &reports {
            tracing::info!(
                "imported {} by {actor} (data generation {generation})",
                report.summary()
            );
        }
        self.changed();
        Ok((reports, generation))
    }

    /// The config history, oldest first (at most `limit` of the newest).
    pub async fn history(&self, limit: usize) -> Result<Vec<HistoryEntry>, ApiError> {
        let engine = self.engine.clone();
        blocking(move || Ok(engine.history(limit)?)).await
    }
}

/// Makes the alert, outbox and silence tables of a PostgreSQL database under
/// the alerts' lock, so that servers starting together on a new database do
/// not race to create them.
fn prepare_alert_tables(engine: &Engine) -> Result<(), EngineError> {
    use crate::alerts::AlertError;
    let conn = engine.engine_conn()?;
    conn.db()
        .in_transaction(|db| -> Result<(), AlertError> {
            db.batch("", crate::store::pg::sql::ALERTS_LOCK)?;
            crate::alerts::state::ensure_tables(db)
        })
        .map_err(|e| match e {
            AlertError::Store(s) => EngineError::from(s),
            other => EngineError::Io(other.to_string()),
        })
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
        Err(e) if e.is_panic() => Err(ApiError::internal(format!(
            "a request panicked: {}",
            crate::diag::panic_message(&*e.into_panic())
        ))),
        Err(e) => Err(ApiError::internal(e)),
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
}
