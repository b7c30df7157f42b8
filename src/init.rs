//! `kpi init [DIR]` (SPEC 15): a clean deployment from the standard library
//! embedded in the binary (see build.rs): every file of kpis/ and scripts/,
//! with targets.toml stripped of its demo teams (`[KPI.teams.ID]` tables),
//! and an empty database with the schema's tables.

use std::path::{Path, PathBuf};

mod library {
    include!(concat!(env!("OUT_DIR"), "/library.rs"));
}

/// Why a deployment could not be written.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already holds a deployment (kpis/ or crm.db): nothing was written")]
    Exists(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("the standard library does not load: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The standard library's files, as embedded at build time.
pub fn library() -> &'static [(&'static str, &'static str)] {
    library::FILES
}

/// targets.toml without any `[KPI.teams.ID]` table (the demo's team ids mean
/// nothing in a new deployment); comments and every other target are kept.
pub fn strip_team_targets(text: &str) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("targets.toml: {e}"))?;
    for (_, item) in doc.iter_mut() {
        if let Some(t) = item.as_table_like_mut() {
            t.remove("teams");
        }
    }
    Ok(doc.to_string())
}

/// Writes kpis/, scripts/ and an empty crm.db under `dir` (made if missing);
/// refuses a folder that already has kpis/ or crm.db. Returns the files written.
pub fn write_deployment(dir: &Path) -> Result<Vec<PathBuf>, InitError> {
    let shown = dir.display().to_string();
    if dir.join("kpis").exists() || dir.join("crm.db").exists() {
        return Err(InitError::Exists(shown));
    }
    let mut written = Vec::new();
    for (rel, text) in library() {
        if rel.starts_with("kpis/tests/") {
            // Formula tests of the library itself; a deployment writes its own.
            continue;
        }
        let text = if *rel == "kpis/targets.toml" {
            strip_team_targets(text).map_err(InitError::Config)?
        } else {
            text.to_string()
        };
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| InitError::Io(parent.display().to_string(), e))?;
        }
        std::fs::write(&path, text).map_err(|e| InitError::Io(path.display().to_string(), e))?;
        written.push(path);
    }
    let cfg = crate::load_checked(dir).map_err(|d| InitError::Config(d.to_string()))?;
    let db_path = dir.join("crm.db");
    let mut conn = crate::store::db::open(&db_path)?;
    crate::store::db::migrate(&mut conn, &cfg.schema)?;
    written.push(db_path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    #[test]
    fn team_targets_are_stripped_and_the_rest_kept() {
        let t = "# c\n[revenue]\ndefault = 1.0\n[revenue.teams.shanghai]\ndefault = 2.0\n[win_rate]\ndefault = 0.3\n";
        let out = super::strip_team_targets(t).unwrap();
        assert!(!out.contains("shanghai"), "{out}");
        assert!(
            out.contains("# c") && out.contains("[win_rate]") && out.contains("default = 1.0"),
            "{out}"
        );
    }

    #[test]
    fn the_library_is_embedded() {
        let files: Vec<&str> = super::library().iter().map(|(p, _)| *p).collect();
        assert!(files.contains(&"kpis/schema.toml"), "{files:?}");
        assert!(files.iter().any(|p| p.starts_with("scripts/")), "{files:?}");
    }
}
