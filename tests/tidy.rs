//! Tidy checks: the invariants of ARCHITECTURE.md that a grep can keep.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::repo;

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The code of a file before its unit tests, without comment lines.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let before_tests = text.split("#[cfg(test)]").next().unwrap_or_default();
    before_tests
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn relative(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap().display().to_string()
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let missing: Vec<String> = ["src", "tests", "examples", "benches"]
        .iter()
        .flat_map(|d| rust_files(&repo().join(d)))
        .filter(|p| !fs::read_to_string(p).unwrap().starts_with("//!"))
        .map(|p| relative(&p))
        .collect();
    assert!(missing.is_empty(), "files without a //! doc: {missing:?}");
}

#[test]
fn sql_text_is_written_only_in_the_store_and_for_the_engines_own_tables() {
    // store/ builds SQL over records; alerts/ keeps its own tables (constant SQL).
    let allowed = ["src/store/", "src/alerts/"];
    let keywords = [
        "\"SELECT ",
        "\"INSERT ",
        "\"UPDATE ",
        "\"DELETE ",
        "\"CREATE ",
    ];
    let offenders: Vec<String> = rust_files(&repo().join("src"))
        .into_iter()
        .filter(|p| !allowed.iter().any(|a| relative(p).starts_with(a)))
        .filter(|p| {
            let c = code(p).to_uppercase();
            keywords.iter().any(|k| c.contains(k))
        })
        .map(|p| relative(&p))
        .collect();
    assert!(offenders.is_empty(), "SQL outside store/: {offenders:?}");
}

#[test]
fn the_engine_knows_no_crm_entity_by_name() {
    // Only the demo generator writes CRM records; everything else reads the schema.
    let names = [
        "\"deals\"",
        "\"customers\"",
        "\"tickets\"",
        "\"stage_events\"",
        "\"surveys\"",
        "\"campaigns\"",
    ];
    let offenders: Vec<String> = rust_files(&repo().join("src"))
        .into_iter()
        .filter(|p| !relative(p).starts_with("src/demo"))
        .filter(|p| {
            let c = code(p);
            names.iter().any(|n| c.contains(n))
        })
        .map(|p| relative(&p))
        .collect();
    assert!(
        offenders.is_empty(),
        "CRM names in the engine: {offenders:?}"
    );
}
