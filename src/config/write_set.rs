//! Several configuration files changed as one: written, replaced or removed
//! all together or not at all (a rollback writes back every file of a version).
//!
//! First every new text is written to its temporary file and synced
//! ([`edit::stage`](super::edit::stage)): a full disk or a refused folder
//! fails here, before any served file changed. Then the temporary files are
//! renamed over their files and the removed files are removed, in path
//! order; should one of those steps fail, the files already changed get
//! their old text back. [`Written::undo`] does the same later (the caller's
//! database commit failed). What no program can promise is a crash between
//! two renames: then some files are new and some old, and the next reload
//! reports the mix like any other edit on disk.

use std::collections::BTreeMap;
use std::path::Path;

use super::edit::{self, Staged};

/// A file's new text, or None to remove it; path relative to the root.
pub type Changes = BTreeMap<String, Option<String>>;

/// A write set that took place, with what it replaced.
#[must_use = "undo it when the change it belongs to fails"]
pub struct Written {
    root: std::path::PathBuf,
    /// Path → its text before (None: it did not exist).
    before: Vec<(String, Option<String>)>,
}

/// Why a write set did not take place; nothing of it stays on disk.
#[derive(Debug)]
pub struct WriteError {
    pub path: String,
    pub source: std::io::Error,
}

/// Applies `changes` under `root`, all or nothing.
pub fn write_all(root: &Path, changes: &Changes) -> Result<Written, WriteError> {
    let fail = |path: &str| {
        let path = path.to_string();
        move |source| WriteError { path, source }
    };
    let mut staged: Vec<(&str, Option<Staged>)> = Vec::with_capacity(changes.len());
    for (path, text) in changes {
        let file = root.join(path);
        let s = match text {
            Some(text) => {
                if let Some(dir) = file.parent() {
                    std::fs::create_dir_all(dir).map_err(fail(path))?;
                }
                Some(edit::stage(&file, text).map_err(fail(path))?)
            }
            None => None,
        };
        staged.push((path, s));
    }
    let mut written = Written {
        root: root.to_path_buf(),
        before: Vec::new(),
    };
    for (path, s) in staged {
        let file = root.join(path);
        let before = std::fs::read_to_string(&file).ok();
        let result = match s {
            Some(s) => s.commit(),
            None if before.is_none() => Ok(()),
            None => std::fs::remove_file(&file),
        };
        if let Err(source) = result {
            written.undo();
            return Err(WriteError {
                path: path.to_string(),
                source,
            });
        }
        written.before.push((path.to_string(), before));
    }
    Ok(written)
}

impl Written {
    /// Puts back every file this write set changed.
    pub fn undo(self) {
        for (path, before) in self.before.iter().rev() {
            let file = self.root.join(path);
            let _ = match before {
                Some(text) => edit::write_atomic(&file, text),
                None => std::fs::remove_file(&file),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for dir in ["kpis", "scripts", "scripts/lib"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for e in entries.flatten().filter(|e| e.path().is_file()) {
                let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
                out.insert(rel, std::fs::read_to_string(e.path()).unwrap());
            }
        }
        out
    }

    fn root_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (p, t) in files {
            let f = dir.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, t).unwrap();
        }
        dir
    }

    #[test]
    fn writes_replaces_and_removes_in_one_go_and_undo_puts_everything_back() {
        let dir = root_with(&[("kpis/a.toml", "a"), ("kpis/b.toml", "b")]);
        let before = tree(dir.path());
        let changes = Changes::from([
            ("kpis/a.toml".into(), Some("a2".into())),
            ("kpis/b.toml".into(), None),
            ("scripts/lib/new.rhai".into(), Some("fn f() { 1 }".into())),
        ]);
        let w = write_all(dir.path(), &changes).unwrap();
        let after = tree(dir.path());
        assert_eq!(after.get("kpis/a.toml").map(String::as_str), Some("a2"));
        assert!(!after.contains_key("kpis/b.toml"));
        assert_eq!(
            after.get("scripts/lib/new.rhai").map(String::as_str),
            Some("fn f() { 1 }")
        );
        w.undo();
        assert_eq!(tree(dir.path()), before);
    }

    fn temp_files(root: &Path) -> usize {
        std::fs::read_dir(root.join("kpis"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count()
    }

    #[test]
    fn a_file_that_cannot_be_staged_or_renamed_changes_nothing() {
        let dir = root_with(&[("kpis/a.toml", "a"), ("kpis/z.toml", "z")]);
        std::fs::create_dir_all(dir.path().join("kpis/m.toml")).unwrap();
        let before = tree(dir.path());
        // Staging fails: the folder of the new file is a file.
        let staging = Changes::from([
            ("kpis/a.toml".into(), Some("a2".into())),
            ("kpis/z.toml/x.toml".into(), Some("x".into())),
        ]);
        let e = write_all(dir.path(), &staging).err().unwrap();
        assert_eq!(e.path, "kpis/z.toml/x.toml");
        assert_eq!(tree(dir.path()), before);
        // Renaming fails after a.toml was replaced: a folder stands where the file goes.
        let renaming = Changes::from([
            ("kpis/a.toml".into(), Some("a2".into())),
            ("kpis/m.toml".into(), Some("m".into())),
            ("kpis/z.toml".into(), None),
        ]);
        let e = write_all(dir.path(), &renaming).err().unwrap();
        assert_eq!(e.path, "kpis/m.toml");
        assert_eq!(tree(dir.path()), before, "a.toml has its old text back");
        assert_eq!(temp_files(dir.path()), 0, "temporary files are removed");
    }
}
