//! The configuration history: one row per configuration applied by `kpi serve`
//! (version, time, origin, files changed, content hash), in `_kpi_config_history`.
//!
//! Each row also keeps a hash of every file, so the files changed between two
//! versions are known even across a restart of the server.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreError;

/// Where an applied configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from kpis/ and scripts/ (start-up, the watcher, POST /api/reload).
    File,
    /// Written by an API edit (PUT /api/kpis, weights, targets).
    Api,
    /// A frozen period was reopened (`kpi reopen`, SPEC 16): the same files,
    /// a new version, because what is served for that period changed.
    Reopen,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Api => "api",
            Origin::Reopen => "reopen",
        }
    }
}

/// One applied configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub version: u64,
    /// RFC 3339, UTC.
    pub applied_at: String,
    pub origin: String,
    /// Paths (relative to the root) added, removed or changed since the previous version.
    pub files_changed: Vec<String>,
    pub content_hash: String,
    /// Path → hash of its text.
    pub file_hashes: BTreeMap<String, String>,
}

fn ensure(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _kpi_config_history (
            version INTEGER PRIMARY KEY,
            applied_at TEXT NOT NULL,
            origin TEXT NOT NULL,
            files_changed TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            file_hashes TEXT NOT NULL);",
    )?;
    Ok(())
}

/// The hash of each file's text.
pub fn file_hashes(files: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(path, text)| {
            let one = BTreeMap::from([(path.clone(), text.clone())]);
            (path.clone(), crate::config::content_hash(&one))
        })
        .collect()
}

/// Paths whose hash differs between two versions (added and removed files included), sorted.
pub fn changed_files(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The latest applied configuration, if any.
pub fn last(conn: &Connection) -> Result<Option<HistoryEntry>, StoreError> {
    ensure(conn)?;
    Ok(conn
        .query_row(
            "SELECT version, applied_at, origin, files_changed, content_hash, file_hashes
             FROM _kpi_config_history ORDER BY version DESC LIMIT 1",
            [],
            row,
        )
        .optional()?)
}

/// Records a newly applied configuration; returns its version (the previous one + 1).
pub fn append(
    conn: &Connection,
    applied_at: &str,
    origin: Origin,
    files_changed: &[String],
    content_hash: &str,
    file_hashes: &BTreeMap<String, String>,
) -> Result<u64, StoreError> {
    ensure(conn)?;
    conn.execute(
        "INSERT INTO _kpi_config_history
            (version, applied_at, origin, files_changed, content_hash, file_hashes)
         VALUES ((SELECT COALESCE(MAX(version), 0) + 1 FROM _kpi_config_history), ?1, ?2, ?3, ?4, ?5)",
        params![
            applied_at,
            origin.as_str(),
            serde_json::to_string(files_changed).unwrap_or_default(),
            content_hash,
            serde_json::to_string(file_hashes).unwrap_or_default()
        ],
    )?;
    let version: i64 = conn.query_row("SELECT MAX(version) FROM _kpi_config_history", [], |r| {
        r.get(0)
    })?;
    Ok(version as u64)
}

/// Applied configurations, oldest first; at most `limit`, the newest ones.
pub fn list(conn: &Connection, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
    ensure(conn)?;
    let mut stmt = conn.prepare(
        "SELECT version, applied_at, origin, files_changed, content_hash, file_hashes
         FROM _kpi_config_history ORDER BY version DESC LIMIT ?1",
    )?;
    let mut rows = stmt
        .query_map([limit as i64], row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.reverse();
    Ok(rows)
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryEntry> {
    let files: String = r.get(3)?;
    let hashes: String = r.get(5)?;
    Ok(HistoryEntry {
        version: r.get::<_, i64>(0)? as u64,
        applied_at: r.get(1)?,
        origin: r.get(2)?,
        files_changed: serde_json::from_str(&files).unwrap_or_default(),
        content_hash: r.get(4)?,
        file_hashes: serde_json::from_str(&hashes).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_and_keep_file_hashes() {
        let conn = crate::store::db::open_in_memory().unwrap();
        assert_eq!(last(&conn).unwrap(), None);
        let a = BTreeMap::from([("kpis/a.toml".to_string(), "x = 1".to_string())]);
        let b = BTreeMap::from([
            ("kpis/a.toml".to_string(), "x = 2".to_string()),
            ("kpis/b.toml".to_string(), String::new()),
        ]);
        let (ha, hb) = (file_hashes(&a), file_hashes(&b));
        let all: Vec<String> = a.keys().cloned().collect();
        assert_eq!(
            append(&conn, "t1", Origin::File, &all, "h1", &ha).unwrap(),
            1
        );
        let changed = changed_files(&ha, &hb);
        assert_eq!(changed, ["kpis/a.toml", "kpis/b.toml"]);
        assert_eq!(
            append(&conn, "t2", Origin::Api, &changed, "h2", &hb).unwrap(),
            2
        );
        let l = last(&conn).unwrap().unwrap();
        assert_eq!((l.version, l.origin.as_str()), (2, "api"));
        assert_eq!(l.file_hashes, hb);
        let all = list(&conn, 10).unwrap();
        assert_eq!(all.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(list(&conn, 1).unwrap()[0].version, 2);
    }
}
