//! `kpi history [VERSION]` and `kpi diff FROM TO`: the config history that
//! `kpi serve` keeps in the database, read without a server.

use std::path::Path;
use std::process::ExitCode;

use kpi_engine::engine::EngineError;
use kpi_engine::engine::history::History;
use kpi_engine::store::config_history::HistoryEntry;

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
