//! The config history as the engine offers it (SPEC 17): one version with
//! every file's text and its diff against the version before, the diff of
//! any two versions, and the rollback that writes a version's files back.
//!
//! A rollback is an edit like any other: the version's files become the
//! candidate configuration, checked exactly as `kpi check` and an API edit
//! check it (today's database too: a schema change it would refuse is
//! refused), and only then written, all or nothing
//! ([`write_set`](crate::config::write_set)), and recorded as a new version
//! with origin `rollback`. Files of the configuration that exist now but not
//! in that version are removed, so the served files are the version's, byte
//! for byte.
//!
//! Servers sharing a PostgreSQL database adopt each other's changes the
//! same way: the history's last version, recorded by another server, is
//! written under this server's root and served under that version
//! ([`Engine::adopt_recorded_config`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::{Applied, Engine, EngineError, Kind};
use crate::config::diff::{FileDiff, diff_files};
use crate::config::write_set::Changes;
use crate::store::config_history::{self, HistoryEntry, Origin};
use crate::store::engine_db::EngineConn;

/// One version of the configuration with its files.
#[derive(Debug, Clone)]
pub struct VersionDetail {
    pub entry: HistoryEntry,
    /// The version before it, if any.
    pub previous: Option<u64>,
    /// Path → text; None for a version recorded before texts were kept.
    pub files: Option<BTreeMap<String, String>>,
    /// The files that differ from the previous version (every file is added
    /// for the first version); None when either side's texts are unknown.
    pub diffs: Option<Vec<FileDiff>>,
}

/// The differences between two versions.
#[derive(Debug, Clone)]
pub struct VersionDiff {
    pub from: u64,
    pub to: u64,
    pub diffs: Vec<FileDiff>,
}

/// The config history of a database: what `kpi serve` serves at
/// `/api/config/history*`, and what `kpi history` and `kpi diff` read
/// without opening an engine.
pub struct History {
    conn: EngineConn,
}

impl History {
    /// The history of the database at `db` (a SQLite file, which must
    /// exist, or a PostgreSQL URL).
    pub fn open(db: &Path) -> Result<History, EngineError> {
        if super::postgres_url(db).is_none() && !db.exists() {
            return Err(EngineError::Io(format!(
                "no database at {}: the config history is kept by `kpi serve` (or pass --db)",
                db.display()
            )));
        }
        Ok(History {
            conn: EngineConn::open(db)?,
        })
    }

    /// Applied versions, oldest first; at most `limit`, the newest ones.
    pub fn list(&self, limit: usize) -> Result<Vec<HistoryEntry>, EngineError> {
        Ok(config_history::list(&self.conn.db(), limit)?)
    }

    /// One version with its files and its diff against the version before.
    pub fn version(&self, version: u64) -> Result<VersionDetail, EngineError> {
        let entry = self.recorded(version)?;
        let files = config_history::contents(&self.conn.db(), &entry)?;
        let previous = config_history::previous(&self.conn.db(), version)?;
        let before = match &previous {
            Some(p) => config_history::contents(&self.conn.db(), p)?,
            None => Some(BTreeMap::new()),
        };
        let diffs = match (&before, &files) {
            (Some(b), Some(f)) => Some(diff_files(b, f)),
            _ => None,
        };
        Ok(VersionDetail {
            entry,
            previous: previous.map(|p| p.version),
            files,
            diffs,
        })
    }

    /// The files that differ from version `from` to version `to`.
    pub fn diff(&self, from: u64, to: u64) -> Result<VersionDiff, EngineError> {
        let a = self.files_of(from)?;
        let b = self.files_of(to)?;
        Ok(VersionDiff {
            from,
            to,
            diffs: diff_files(&a, &b),
        })
    }

    fn recorded(&self, version: u64) -> Result<HistoryEntry, EngineError> {
        config_history::get(&self.conn.db(), version)?.ok_or_else(|| {
            let last = config_history::last(&self.conn.db()).ok().flatten();
            EngineError::Unknown {
                kind: Kind::Version,
                id: version.to_string(),
                hint: match last {
                    Some(l) => format!(" (the history holds versions 1 to {})", l.version),
                    None => " (the history is empty)".to_string(),
                },
            }
        })
    }

    /// Every file's text of a recorded version.
    fn files_of(&self, version: u64) -> Result<BTreeMap<String, String>, EngineError> {
        let entry = self.recorded(version)?;
        config_history::contents(&self.conn.db(), &entry)?.ok_or_else(|| {
            EngineError::rejected(
                format!(
                    "version {version} was recorded before the history kept file contents: its files are not known"
                ),
                Vec::new(),
            )
        })
    }
}

impl Engine {
    /// The engine's config history.
    pub fn config_history(&self) -> Result<History, EngineError> {
        Ok(History {
            conn: self.engine_conn()?,
        })
    }

    /// Writes the files of `version` back and applies them as a new version
    /// (origin `rollback`, `actor`). Refused with nothing written when the
    /// version is unknown, its texts were never kept, or its configuration
    /// no longer checks. Blocking.
    pub fn rollback(&self, version: u64, actor: &str) -> Result<Applied, EngineError> {
        let _writer = self.write_lock();
        self.write_version(version, Origin::Rollback, actor)
    }

    /// Serves the configuration another server sharing the PostgreSQL
    /// database recorded last (an API edit or a rollback through it; SPEC
    /// 20): its files are written under this server's root (those that
    /// differ), checked here as any edit is, and served under that version,
    /// without a new history row. None when the history's last version is
    /// the one served, on SQLite, or when not serving. A version that does
    /// not check here is refused once and not tried again. Blocking.
    pub fn adopt_recorded_config(&self) -> Result<Option<Applied>, EngineError> {
        if !self.on_postgres() || !self.serving {
            return Ok(None);
        }
        let Some((version, hash)) = self.polled(config_history::latest)? else {
            return Ok(None);
        };
        let served = self.snapshot();
        let refused = *self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if version <= served.version || hash == served.content_hash || refused == Some(version) {
            return Ok(None);
        }
        let _writer = self.write_lock();
        if self.snapshot().version >= version {
            // Applied meanwhile (by this server's own change).
            return Ok(None);
        }
        match self.write_version(version, Origin::File, config_history::FILE_ACTOR) {
            Ok(applied) => Ok(Some(applied)),
            Err(e) => {
                if matches!(e, EngineError::Rejected { .. }) {
                    *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(version);
                }
                Err(e)
            }
        }
    }

    /// Writes the files of a recorded version under the root (all or
    /// nothing) and applies them; the caller holds the writer lock.
    fn write_version(
        &self,
        version: u64,
        origin: Origin,
        actor: &str,
    ) -> Result<Applied, EngineError> {
        let files = self.config_history()?.files_of(version)?;
        if let Some(bad) = files.keys().find(|p| !inside_config(p)) {
            return Err(EngineError::rejected(
                format!(
                    "version {version} names a file outside kpis/ and scripts/ ({bad}); nothing was written"
                ),
                Vec::new(),
            ));
        }
        let on_disk = crate::config::read_files(&self.root)
            .unwrap_or_else(|_| self.snapshot().config.files.clone());
        let mut changes: Changes = on_disk
            .keys()
            .filter(|p| !files.contains_key(*p))
            .map(|p| (p.clone(), None))
            .collect();
        for (path, text) in &files {
            if on_disk.get(path) != Some(text) {
                changes.insert(path.clone(), Some(text.clone()));
            }
        }
        let rejected = |d| {
            EngineError::rejected(
                format!("version {version} does not check any more; nothing was written"),
                d,
            )
        };
        let candidate = crate::config::from_files(&self.root, files).map_err(|d| rejected(d.0))?;
        let candidate = crate::check_snapshot(std::sync::Arc::new(candidate)).map_err(rejected)?;
        self.apply(candidate, origin, actor, Some(&changes))
            .map_err(|e| match e {
                EngineError::Rejected { diagnostics, .. } => rejected(diagnostics),
                other => other,
            })
    }
}

/// Whether a path of the history lies under kpis/ or scripts/ of the root
/// (relative, no `..`): a rollback writes nowhere else, whatever the database says.
fn inside_config(path: &str) -> bool {
    use std::path::Component;
    let p = Path::new(path);
    let mut parts = p.components();
    matches!(parts.next(), Some(Component::Normal(top)) if top == "kpis" || top == "scripts")
        && parts.all(|c| matches!(c, Component::Normal(_)))
        && p.components().count() > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_writes_only_under_kpis_and_scripts() {
        for ok in [
            "kpis/targets.toml",
            "kpis/mappings/a.toml",
            "scripts/lib/x.rhai",
        ] {
            assert!(inside_config(ok), "{ok}");
        }
        for bad in [
            "kpis",
            "/etc/passwd",
            "../kpis/a.toml",
            "kpis/../../x",
            "crm.db",
            "other/a.toml",
        ] {
            assert!(!inside_config(bad), "{bad}");
        }
    }
}
