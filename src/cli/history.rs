//! `kpi history [VERSION]`, `kpi diff FROM TO` and `kpi rollback VERSION`:
//! the config history that `kpi serve` keeps in the database, without a server.

use std::path::Path;
use std::process::ExitCode;

use kpi_engine::engine::history::History;
use kpi_engine::engine::{Engine, EngineError, EngineOptions};
use kpi_engine::store::config_history::{self, HistoryEntry};

use super::commands::UserError;
use super::output::{out, outln};

/// More files than this changed in one version are counted, not listed.
const LISTED_FILES: usize = 3;

fn open(db: &Path) -> Result<History, UserError> {
    History::open(db).map_err(|e| UserError(e.to_string()))
}

fn version_error(e: EngineError) -> UserError {
    match e {
        EngineError::Rejected { message, .. } => UserError(message),
        other => UserError(format!("VERSION: {other}")),
    }
}

/// The list, or one version with its diff.
pub fn show(db: &Path, args: &super::args::HistoryArgs) -> Result<ExitCode, UserError> {
    let history = open(db)?;
    let Some(version) = args.version else {
        let rows = history
            .list(args.limit.max(1))
            .map_err(|e| UserError(e.to_string()))?;
        if rows.is_empty() {
            outln!("the history is empty: `kpi serve` records each configuration it applies");
        }
        print_list(&rows);
        return Ok(ExitCode::SUCCESS);
    };
    let d = history.version(version).map_err(version_error)?;
    let e = &d.entry;
    outln!(
        "version {}  applied {}  origin {}  actor {}  content {}",
        e.version,
        e.applied_at,
        e.origin,
        actor(e),
        e.content_hash
    );
    match (&d.diffs, d.previous) {
        (None, _) => outln!("(recorded before the history kept file contents: no diff)"),
        (Some(diffs), previous) => {
            match previous {
                Some(p) => outln!("against version {p}: {} file(s) differ", diffs.len()),
                None => outln!("the first version: every file is new"),
            }
            for f in diffs {
                out!("{}", f.diff);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The unified diff from one version's files to another's.
pub fn diff(db: &Path, from: u64, to: u64) -> Result<ExitCode, UserError> {
    let d = open(db)?.diff(from, to).map_err(version_error)?;
    if d.diffs.is_empty() {
        outln!("versions {from} and {to} have the same files");
    }
    for f in &d.diffs {
        out!("{}", f.diff);
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the files of `version` back as a new version by `cli:$USER`.
pub fn rollback(root: &Path, db: &Path, version: u64) -> Result<ExitCode, UserError> {
    open(db)?;
    let engine = Engine::open(&EngineOptions {
        root: root.to_path_buf(),
        db: db.to_path_buf(),
        serving: true,
    })
    .map_err(|e| {
        UserError(format!(
            "{e}\nthe deployment was not opened; nothing was written"
        ))
    })?;
    let applied = engine
        .rollback(version, &config_history::cli_actor())
        .map_err(|e| match e {
            EngineError::Rejected {
                message,
                diagnostics,
            } => UserError(
                diagnostics
                    .iter()
                    .map(ToString::to_string)
                    .chain([message])
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            other => version_error(other),
        })?;
    if applied.changed {
        outln!(
            "rolled back to the files of version {version}: version {} (changed: {})",
            applied.version,
            applied.files_changed.join(", ")
        );
    } else {
        outln!("the files of version {version} are the current ones; nothing changed");
    }
    Ok(ExitCode::SUCCESS)
}

fn actor(e: &HistoryEntry) -> &str {
    e.actor.as_deref().unwrap_or("-")
}

fn print_list(rows: &[HistoryEntry]) {
    let width = |f: &dyn Fn(&HistoryEntry) -> usize, title: &str| {
        rows.iter().map(f).chain([title.len()]).max().unwrap_or(0)
    };
    let wv = width(&|e| e.version.to_string().len(), "VERSION");
    let wt = width(&|e| e.applied_at.len(), "APPLIED AT");
    let wo = width(&|e| e.origin.len(), "ORIGIN");
    let wa = width(&|e| actor(e).len(), "ACTOR");
    outln!(
        "{:<wv$}  {:<wt$}  {:<wo$}  {:<wa$}  FILES CHANGED",
        "VERSION",
        "APPLIED AT",
        "ORIGIN",
        "ACTOR"
    );
    for e in rows {
        let files = if e.files_changed.len() > LISTED_FILES {
            format!("{} files", e.files_changed.len())
        } else {
            e.files_changed.join(", ")
        };
        outln!(
            "{:<wv$}  {:<wt$}  {:<wo$}  {:<wa$}  {files}",
            e.version,
            e.applied_at,
            e.origin,
            actor(e)
        );
    }
}
