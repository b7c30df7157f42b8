//! Hot reload: a notify watcher on kpis/ and scripts/ that turns every burst
//! of relevant file events into one reload of the whole configuration.
//!
//! The watcher watches *directories*, never files: editors save by writing in
//! place, by truncating then writing, by writing a temporary file and renaming
//! it over, or by deleting and re-creating, and a watch on the file itself
//! would be lost with its inode. kpis/ is watched flat (kpis/tests/ holds
//! formula tests, not configuration), kpis/templates/ (alert message
//! templates) and scripts/ recursively, and the root flat
//! so that a kpis/ or scripts/ folder replaced as a whole is noticed. After
//! every burst the watches are added again. No event is trusted to name what
//! changed: a burst only means "read everything again". Events of editor
//! swap and backup files are ignored so they do not cause reloads of their own.
//! A burst that leaves a configuration file empty (an editor's truncate, then
//! write) waits up to [`EMPTIED_GRACE`] more for the file to be written, so the
//! transient empty file is not served as a version of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::state::AppState;

/// A burst ends after this long without a relevant event.
pub const QUIET: Duration = Duration::from_millis(100);
/// A burst that never goes quiet is cut after this long.
pub const MAX_BURST: Duration = Duration::from_secs(1);

/// How long a burst that left a served file empty waits for it to be written.
pub const EMPTIED_GRACE: Duration = Duration::from_secs(1);

/// Is a file of kpis/ that the served configuration has with text now empty on disk?
fn emptied_file(state: &AppState, dirs: &Dirs) -> bool {
    let served = state.served();
    served.config.files.iter().any(|(rel, text)| {
        !text.trim().is_empty()
            && rel.starts_with("kpis/")
            && std::fs::metadata(dirs.root.join(rel)).is_ok_and(|m| m.len() == 0)
    })
}

/// The watched folders.
#[derive(Debug, Clone)]
struct Dirs {
    root: PathBuf,
    kpis: PathBuf,
    /// kpis/mappings/ (SPEC 15), watched flat like kpis/.
    mappings: PathBuf,
    templates: PathBuf,
    scripts: PathBuf,
}

/// Starts watching; reloads run on the returned task until the server stops.
pub fn spawn(state: Arc<AppState>) -> notify::Result<tokio::task::JoinHandle<()>> {
    let root = state.engine.root().to_path_buf();
    let dirs = Dirs {
        kpis: root.join("kpis"),
        mappings: root.join("kpis").join("mappings"),
        templates: root.join("kpis").join("templates"),
        scripts: root.join("scripts"),
        root,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        // The receiver is gone only when the server is shutting down.
        let _ = tx.send(event);
    })?;
    watch(&mut watcher, &dirs);
    Ok(tokio::spawn(run(state, watcher, dirs, rx)))
}

async fn run(
    state: Arc<AppState>,
    mut watcher: notify::RecommendedWatcher,
    dirs: Dirs,
    mut rx: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
) {
    while let Some(first) = rx.recv().await {
        if !relevant(&first, &dirs) {
            continue;
        }
        let started = Instant::now();
        let mut quiet_until = started + QUIET;
        let mut cut_at = started + MAX_BURST;
        let mut waited_for_emptied = false;
        loop {
            let deadline = quiet_until.min(cut_at);
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) if relevant(&e, &dirs) => quiet_until = Instant::now() + QUIET,
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(_) => {
                    // A file that held configuration and is now empty is most likely an
                    // editor's truncate-then-write in progress: give it a moment to be written.
                    if !waited_for_emptied && emptied_file(&state, &dirs) {
                        waited_for_emptied = true;
                        quiet_until = Instant::now() + EMPTIED_GRACE;
                        cut_at = quiet_until;
                        continue;
                    }
                    break;
                }
            }
        }
        watch(&mut watcher, &dirs);
        // Errors are logged and kept for /health by `reload` itself.
        let _ = state.reload(crate::store::config_history::FILE_ACTOR).await;
    }
}

/// (Re-)adds the watches: a folder that was replaced is a new inode.
fn watch(w: &mut notify::RecommendedWatcher, dirs: &Dirs) {
    let targets = [
        (&dirs.root, RecursiveMode::NonRecursive),
        (&dirs.kpis, RecursiveMode::NonRecursive),
        (&dirs.mappings, RecursiveMode::NonRecursive),
        (&dirs.templates, RecursiveMode::Recursive),
        (&dirs.scripts, RecursiveMode::Recursive),
    ];
    for (dir, mode) in targets {
        let _ = w.unwatch(dir);
        if dir.is_dir()
            && let Err(e) = w.watch(dir, mode)
        {
            tracing::warn!("cannot watch {}: {e}", dir.display());
        }
    }
}

/// Does this event possibly change the configuration?
fn relevant(event: &notify::Result<notify::Event>, dirs: &Dirs) -> bool {
    let Ok(event) = event else {
        // An error (e.g. a queue overflow) may hide changes: reload to be safe.
        return true;
    };
    if let EventKind::Access(kind) = event.kind
        && !matches!(
            kind,
            notify::event::AccessKind::Close(notify::event::AccessMode::Write)
        )
    {
        return false;
    }
    event.paths.is_empty() || event.paths.iter().any(|p| relevant_path(p, dirs))
}

fn relevant_path(p: &Path, dirs: &Dirs) -> bool {
    if p == dirs.kpis || p == dirs.scripts {
        return true;
    }
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    if ignored_name(&name) {
        return false;
    }
    if p == dirs.mappings {
        return true;
    }
    if let Ok(rest) = p.strip_prefix(&dirs.mappings) {
        return rest.components().count() == 1 && name.ends_with(".toml");
    }
    if p.starts_with(&dirs.templates) {
        return p == dirs.templates || name.ends_with(".md") || name.ends_with(".txt");
    }
    if let Ok(rest) = p.strip_prefix(&dirs.kpis) {
        // Only kpis/*.toml: not kpis/tests/, not other files.
        return rest.components().count() == 1 && name.ends_with(".toml");
    }
    if let Ok(rest) = p.strip_prefix(&dirs.scripts) {
        let hidden = rest
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
        // A path without an extension may be a folder of scripts.
        return !hidden && (name.ends_with(".rhai") || !name.contains('.'));
    }
    false
}

/// Editor swap, backup and temporary files (vim, emacs, and our own temp files).
fn ignored_name(name: &str) -> bool {
    name.is_empty()
        || name.starts_with('.')
        || name.starts_with('#')
        || name.ends_with('~')
        || name == "4913"
        || [".swp", ".swx", ".swo", ".tmp", ".bak", ".orig"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> Dirs {
        Dirs {
            root: "/r".into(),
            kpis: "/r/kpis".into(),
            mappings: "/r/kpis/mappings".into(),
            templates: "/r/kpis/templates".into(),
            scripts: "/r/scripts".into(),
        }
    }

    #[test]
    fn config_files_count_and_editor_droppings_do_not() {
        let d = dirs();
        let yes = [
            "/r/kpis/sales.toml",
            "/r/kpis/mappings/salesforce_opportunity.toml",
            "/r/kpis",
            "/r/scripts",
            "/r/scripts/x.rhai",
            "/r/scripts/lib/y.rhai",
            "/r/scripts/lib",
            "/r/kpis/templates/alert_zh.md",
        ];
        for p in yes {
            assert!(relevant_path(Path::new(p), &d), "{p}");
        }
        let no = [
            "/r/kpis/.sales.toml.swp",
            "/r/kpis/sales.toml~",
            "/r/kpis/.#sales.toml",
            "/r/kpis/4913",
            "/r/kpis/#sales.toml#",
            "/r/kpis/sales.toml.tmp",
            "/r/kpis/.sales.toml.123-0.tmp",
            "/r/kpis/tests/sales.toml",
            "/r/kpis/notes.txt",
            "/r/crm.db-wal",
            "/r/scripts/.x.rhai.swp",
            "/r/scripts/notes.md",
            "/r/kpis/templates/.alert_zh.md.swp",
        ];
        for p in no {
            assert!(!relevant_path(Path::new(p), &d), "{p}");
        }
    }
}
