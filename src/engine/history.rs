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

use std::collections::BTreeMap;

use super::{Applied, Engine, EngineError, Kind};
use crate::config::diff::{FileDiff, diff_files};
use crate::config::write_set::Changes;
use crate::store::config_history::{self, HistoryEntry, Origin};

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

impl Engine {
    /// One version with its files and its diff against the version before.
    pub fn history_version(&self, version: u64) -> Result<VersionDetail, EngineError> {
        let conn = self.connection()?;
        let entry = self.recorded(&conn, version)?;
        let files = config_history::contents(&conn, &entry)?;
        let previous = config_history::previous(&conn, version)?;
        let before = match &previous {
            Some(p) => config_history::contents(&conn, p)?,
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
    pub fn history_diff(&self, from: u64, to: u64) -> Result<VersionDiff, EngineError> {
        let conn = self.connection()?;
        let a = self.files_of(&conn, from)?;
        let b = self.files_of(&conn, to)?;
        Ok(VersionDiff {
            from,
            to,
            diffs: diff_files(&a, &b),
        })
    }

    /// Writes the files of `version` back and applies them as a new version
    /// (origin `rollback`, `actor`). Refused with nothing written when the
    /// version is unknown, its texts were never kept, or its configuration
    /// no longer checks. Blocking.
    pub fn rollback(&self, version: u64, actor: &str) -> Result<Applied, EngineError> {
        let _writer = self.write_lock();
        let files = self.files_of(&self.connection()?, version)?;
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
        self.apply(candidate, Origin::Rollback, actor, Some(&changes))
            .map_err(|e| match e {
                EngineError::Rejected { diagnostics, .. } => rejected(diagnostics),
                other => other,
            })
    }

    fn recorded(
        &self,
        conn: &rusqlite::Connection,
        version: u64,
    ) -> Result<HistoryEntry, EngineError> {
        config_history::get(conn, version)?.ok_or_else(|| {
            let last = config_history::last(conn).ok().flatten();
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
    fn files_of(
        &self,
        conn: &rusqlite::Connection,
        version: u64,
    ) -> Result<BTreeMap<String, String>, EngineError> {
        let entry = self.recorded(conn, version)?;
        config_history::contents(conn, &entry)?.ok_or_else(|| {
            EngineError::rejected(
                format!(
                    "version {version} was recorded before the history kept file contents: its files are not known"
                ),
                Vec::new(),
            )
        })
    }
}
