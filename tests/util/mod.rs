//! Helpers of the end-to-end tests: a deployment root copied from the
//! standard library, the `kpi` binary (`cli`), a running `kpi serve`
//! (`server`), and the alert fixtures (`alerts`).
//!
//! Tests never read or write the repository's live `kpis/`: each copies the
//! standard library into a temporary root first. Targets and scorecard
//! weights are taken from `tests/fixtures/library/`, pinned, so that an
//! admin's edit of the live files (the README's own `PUT` examples) cannot
//! change what the tests expect; a KPI added to `kpis/custom.toml` is not
//! copied either.

pub mod alerts;
pub mod cli;
pub mod pg;
pub mod server;

use std::fs;
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pinned files of the standard library, under tests/fixtures/library/.
const PINNED: [&str; 2] = ["targets.toml", "scorecards.toml"];

/// Files of a live kpis/ that are an admin's, not the library's.
const LOCAL: [&str; 1] = ["custom.toml"];

/// Copies the standard library (kpis/ and scripts/) into `root`.
pub fn library(root: &Path) {
    let kpis = root.join("kpis");
    copy_dir(&repo().join("kpis"), &kpis);
    copy_dir(&repo().join("scripts"), &root.join("scripts"));
    for f in LOCAL {
        let _ = fs::remove_file(kpis.join(f));
    }
    for f in PINNED {
        let pinned = repo().join("tests/fixtures/library").join(f);
        fs::copy(&pinned, kpis.join(f)).unwrap_or_else(|e| panic!("{}: {e}", pinned.display()));
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}
