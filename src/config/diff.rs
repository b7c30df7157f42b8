//! Differences between two versions of the configuration's files: which
//! files were added, removed or changed, each with a unified diff (the
//! `diff -u` / `git diff` format: `--- a/PATH`, `+++ b/PATH`, `@@` hunks
//! with three lines of context). Pure: texts in, typed differences out.

use std::collections::BTreeMap;

use similar::TextDiff;

/// How one file differs between two versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        }
    }
}

/// One file that differs, with its unified diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    pub path: String,
    pub change: Change,
    pub diff: String,
}

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// Every file that differs from `before` to `after`, by path.
pub fn diff_files(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<FileDiff> {
    let mut paths: Vec<&String> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (old, new) = (before.get(path), after.get(path));
            let change = match (old, new) {
                (None, Some(_)) => Change::Added,
                (Some(_), None) => Change::Removed,
                (Some(a), Some(b)) if a != b => Change::Changed,
                _ => return None,
            };
            Some(FileDiff {
                path: path.clone(),
                change,
                diff: unified(path, old.map(String::as_str), new.map(String::as_str)),
            })
        })
        .collect()
}

/// The unified diff of one file; a side that does not exist is `/dev/null`.
pub fn unified(path: &str, old: Option<&str>, new: Option<&str>) -> String {
    let a = old.map_or_else(|| "/dev/null".to_string(), |_| format!("a/{path}"));
    let b = new.map_or_else(|| "/dev/null".to_string(), |_| format!("b/{path}"));
    TextDiff::from_lines(old.unwrap_or(""), new.unwrap_or(""))
        .unified_diff()
        .context_radius(CONTEXT)
        .header(&a, &b)
        .to_string()
}

/// Path → text from pairs: the files of a version in unit tests.
#[cfg(test)]
pub(crate) fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_a_hunk_with_its_context() {
        let before = "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\nf = 6\ng = 7\nh = 8\n";
        let after = before.replace("e = 5", "e = 50");
        assert_eq!(
            unified("kpis/x.toml", Some(before), Some(&after)),
            "--- a/kpis/x.toml\n+++ b/kpis/x.toml\n@@ -2,7 +2,7 @@\n b = 2\n c = 3\n d = 4\n-e = 5\n+e = 50\n f = 6\n g = 7\n h = 8\n"
        );
    }

    #[test]
    fn added_and_removed_files_diff_against_dev_null() {
        assert_eq!(
            unified("scripts/new.rhai", None, Some("fn f() { 1 }\n")),
            "--- /dev/null\n+++ b/scripts/new.rhai\n@@ -0,0 +1 @@\n+fn f() { 1 }\n"
        );
        assert_eq!(
            unified("kpis/old.toml", Some("x = 1\ny = 2\n"), None),
            "--- a/kpis/old.toml\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-x = 1\n-y = 2\n"
        );
    }

    #[test]
    fn a_missing_final_newline_is_marked() {
        let d = unified("kpis/x.toml", Some("x = 1\n"), Some("x = 1"));
        assert!(d.contains("\\ No newline at end of file"), "{d}");
    }

    #[test]
    fn only_files_that_differ_are_listed_in_path_order() {
        let before = files(&[
            ("kpis/a.toml", "1\n"),
            ("kpis/b.toml", "2\n"),
            ("kpis/c.toml", "3\n"),
        ]);
        let after = files(&[
            ("kpis/a.toml", "1\n"),
            ("kpis/b.toml", "22\n"),
            ("kpis/d.toml", "4\n"),
        ]);
        let d = diff_files(&before, &after);
        let got: Vec<(&str, Change)> = d.iter().map(|f| (f.path.as_str(), f.change)).collect();
        assert_eq!(
            got,
            [
                ("kpis/b.toml", Change::Changed),
                ("kpis/c.toml", Change::Removed),
                ("kpis/d.toml", Change::Added),
            ]
        );
        assert!(diff_files(&after, &after).is_empty());
    }
}
