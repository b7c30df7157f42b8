//! The configuration history: one row per configuration applied by `kpi serve`
//! (version, time, origin, actor, files changed, content hash), in
//! `_kpi_config_history`, and the text of every file of every version.
//!
//! Each row keeps a hash of every file (so the files changed between two
//! versions are known even across a restart of the server) and, since
//! SPEC 17, a map from each path to the SHA-256 of its text. The texts live
//! once each in `_kpi_config_blobs`, keyed by that SHA-256: an edit of one
//! file adds one text, not the whole tree. Rows written before SPEC 17 have
//! no actor and no texts; they still list, and are the only versions whose
//! files cannot be shown, diffed or rolled back to.
//!
//! Opening an older table migrates it in place: the columns `actor` and
//! `files` are added (NULL on the old rows) and the blobs table is created.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::StoreError;
use super::engine_db::{Db, Param, Row};

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
    /// The files of an earlier version written back (POST /api/config/rollback).
    Rollback,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Api => "api",
            Origin::Reopen => "reopen",
            Origin::Rollback => "rollback",
        }
    }
}

/// The actor of a version read from disk that nobody named: an edit seen by
/// the watcher, or the files found at start-up.
pub const FILE_ACTOR: &str = "file";

/// The actor of a history row that a command run on this machine records
/// (not a server's request): `cli:` and the login name (`$USER`, else
/// `$LOGNAME`), or `cli` when neither is set. A token's name never holds a
/// `:`, so this cannot be mistaken for one.
pub fn cli_actor() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .map_or_else(|| "cli".to_string(), |user| format!("cli:{user}"))
}

/// One applied configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub version: u64,
    /// RFC 3339, UTC.
    pub applied_at: String,
    pub origin: String,
    /// Who applied it: a token's name, `file`, or None on a row written
    /// before actors were recorded.
    pub actor: Option<String>,
    /// Paths (relative to the root) added, removed or changed since the previous version.
    pub files_changed: Vec<String>,
    pub content_hash: String,
    /// Path → hash of its text.
    pub file_hashes: BTreeMap<String, String>,
    /// Path → SHA-256 of its text in `_kpi_config_blobs`; None on a row
    /// written before texts were kept.
    pub blobs: Option<BTreeMap<String, String>>,
}

/// A configuration to record: who applied it, how, and every file's text.
pub struct NewVersion<'a> {
    pub applied_at: &'a str,
    pub origin: Origin,
    pub actor: &'a str,
    pub files_changed: &'a [String],
    pub content_hash: &'a str,
    pub files: &'a BTreeMap<String, String>,
}

/// The history table as servers made it before SPEC 17 (no actor, no
/// texts): what [`ensure`] migrates, kept for the tests of that migration.
#[doc(hidden)]
pub const TABLE_BEFORE_SPEC_17: &str = "CREATE TABLE _kpi_config_history (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL,
    origin TEXT NOT NULL,
    files_changed TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    file_hashes TEXT NOT NULL);";

const COLUMNS: &str =
    "version, applied_at, origin, files_changed, content_hash, file_hashes, actor, files";

const TABLES: &str = "CREATE TABLE IF NOT EXISTS _kpi_config_history (
            version INTEGER PRIMARY KEY,
            applied_at TEXT NOT NULL,
            origin TEXT NOT NULL,
            files_changed TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            file_hashes TEXT NOT NULL,
            actor TEXT,
            files TEXT);
         CREATE TABLE IF NOT EXISTS _kpi_config_blobs (
            hash TEXT PRIMARY KEY,
            text TEXT NOT NULL);";

fn ensure(conn: &Db<'_>) -> Result<(), StoreError> {
    // On SQLite `version` is INTEGER, the rowid (as on tables made before).
    conn.create(TABLES)?;
    // A table of an older version lacks the SPEC 17 columns: add them.
    for column in ["actor", "files"] {
        conn.add_missing_column("_kpi_config_history", column, "TEXT")?;
    }
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

/// The key of a text in `_kpi_config_blobs`: its SHA-256, hex.
pub fn blob_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
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
pub fn last(conn: &Db<'_>) -> Result<Option<HistoryEntry>, StoreError> {
    ensure(conn)?;
    let sql = format!("SELECT {COLUMNS} FROM _kpi_config_history ORDER BY version DESC LIMIT 1");
    Ok(conn.row(&sql, &[])?.map(|r| entry(&r)))
}

/// The latest version and its content hash, if any (cheap: polled by
/// servers sharing a PostgreSQL database).
pub fn latest(conn: &Db<'_>) -> Result<Option<(u64, String)>, StoreError> {
    ensure(conn)?;
    Ok(conn
        .row(
            "SELECT version, content_hash FROM _kpi_config_history ORDER BY version DESC LIMIT 1",
            &[],
        )?
        .map(|r| (r.int(0) as u64, r.text(1))))
}

/// One version, if it was recorded.
pub fn get(conn: &Db<'_>, version: u64) -> Result<Option<HistoryEntry>, StoreError> {
    ensure(conn)?;
    let sql = format!("SELECT {COLUMNS} FROM _kpi_config_history WHERE version = ?1");
    Ok(conn
        .row(&sql, &[Param::Int(version as i64)])?
        .map(|r| entry(&r)))
}

/// The version recorded just before `version`, if any.
pub fn previous(conn: &Db<'_>, version: u64) -> Result<Option<HistoryEntry>, StoreError> {
    ensure(conn)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM _kpi_config_history WHERE version < ?1
         ORDER BY version DESC LIMIT 1"
    );
    Ok(conn
        .row(&sql, &[Param::Int(version as i64)])?
        .map(|r| entry(&r)))
}

/// Every file's text of a version (path → text), or None when the row was
/// written before texts were kept.
pub fn contents(
    conn: &Db<'_>,
    entry: &HistoryEntry,
) -> Result<Option<BTreeMap<String, String>>, StoreError> {
    let Some(blobs) = &entry.blobs else {
        return Ok(None);
    };
    ensure(conn)?;
    let mut out = BTreeMap::new();
    for (path, hash) in blobs {
        let text = conn.row(
            "SELECT text FROM _kpi_config_blobs WHERE hash = ?1",
            &[Param::Text(hash)],
        )?;
        match text {
            Some(t) => {
                out.insert(path.clone(), t.text(0));
            }
            // A blob removed by hand: the version's files are not all known.
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// How many times an append is tried when other processes keep taking the
/// next version first.
const APPEND_ATTEMPTS: usize = 100;

/// Records a newly applied configuration, its texts stored once each;
/// returns its version (the previous one + 1).
///
/// Safe when several processes append at once (servers sharing a database,
/// a `kpi rollback` beside them): the version is computed inside the INSERT
/// (on SQLite the statement holds the write lock from its start), and one
/// that another PostgreSQL transaction took first (it committed while this
/// INSERT waited on the key) is tried again with the next.
pub fn append(conn: &Db<'_>, new: &NewVersion<'_>) -> Result<u64, StoreError> {
    ensure(conn)?;
    let mut blobs = BTreeMap::new();
    for (path, text) in new.files {
        let hash = blob_hash(text);
        conn.execute(
            "INSERT INTO _kpi_config_blobs (hash, text) VALUES (?1, ?2)
             ON CONFLICT (hash) DO NOTHING",
            &[Param::Text(&hash), Param::Text(text)],
        )?;
        blobs.insert(path.clone(), hash);
    }
    let files_changed = serde_json::to_string(new.files_changed).unwrap_or_default();
    let hashes = serde_json::to_string(&file_hashes(new.files)).unwrap_or_default();
    let blobs = serde_json::to_string(&blobs).unwrap_or_default();
    for _ in 0..APPEND_ATTEMPTS {
        let row = conn.row(
            "INSERT INTO _kpi_config_history
                (version, applied_at, origin, files_changed, content_hash, file_hashes, actor, files)
             VALUES ((SELECT COALESCE(MAX(version), 0) + 1 FROM _kpi_config_history),
                     ?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (version) DO NOTHING
             RETURNING version",
            &[
                Param::Text(new.applied_at),
                Param::Text(new.origin.as_str()),
                Param::Text(&files_changed),
                Param::Text(new.content_hash),
                Param::Text(&hashes),
                Param::Text(new.actor),
                Param::Text(&blobs),
            ],
        )?;
        if let Some(r) = row {
            return Ok(r.int(0) as u64);
        }
    }
    Err(StoreError::Postgres(format!(
        "cannot record a configuration version in _kpi_config_history: other processes took the next version {APPEND_ATTEMPTS} times in a row"
    )))
}

/// Applied configurations, oldest first; at most `limit`, the newest ones.
pub fn list(conn: &Db<'_>, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
    ensure(conn)?;
    let sql = format!("SELECT {COLUMNS} FROM _kpi_config_history ORDER BY version DESC LIMIT ?1");
    let mut rows: Vec<HistoryEntry> = conn
        .rows(&sql, &[Param::Int(limit as i64)])?
        .iter()
        .map(entry)
        .collect();
    rows.reverse();
    Ok(rows)
}

fn entry(r: &Row) -> HistoryEntry {
    HistoryEntry {
        version: r.int(0) as u64,
        applied_at: r.text(1),
        origin: r.text(2),
        files_changed: serde_json::from_str(&r.text(3)).unwrap_or_default(),
        content_hash: r.text(4),
        file_hashes: serde_json::from_str(&r.text(5)).unwrap_or_default(),
        actor: r.opt_text(6),
        blobs: r.opt_text(7).and_then(|b| serde_json::from_str(&b).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diff::files;

    fn record(conn: &Db<'_>, origin: Origin, actor: &str, f: &BTreeMap<String, String>) -> u64 {
        let before = last(conn)
            .unwrap()
            .map(|l| l.file_hashes)
            .unwrap_or_default();
        let changed = changed_files(&before, &file_hashes(f));
        let hash = crate::config::content_hash(f);
        let new = NewVersion {
            applied_at: "2026-12-02T00:00:00Z",
            origin,
            actor,
            files_changed: &changed,
            content_hash: &hash,
            files: f,
        };
        append(conn, &new).unwrap()
    }

    #[test]
    fn versions_count_up_and_keep_actors_hashes_and_texts() {
        let conn = crate::store::db::open_in_memory().unwrap();
        let db = Db::from(&conn);
        assert_eq!(last(&db).unwrap(), None);
        let a = files(&[("kpis/a.toml", "x = 1")]);
        let b = files(&[("kpis/a.toml", "x = 2"), ("kpis/b.toml", "")]);
        assert_eq!(record(&db, Origin::File, FILE_ACTOR, &a), 1);
        assert_eq!(record(&db, Origin::Api, "alice", &b), 2);
        let l = last(&db).unwrap().unwrap();
        assert_eq!((l.version, l.origin.as_str()), (2, "api"));
        assert_eq!(l.actor.as_deref(), Some("alice"));
        assert_eq!(l.files_changed, ["kpis/a.toml", "kpis/b.toml"]);
        assert_eq!(l.file_hashes, file_hashes(&b));
        assert_eq!(contents(&db, &l).unwrap(), Some(b));
        let one = get(&db, 1).unwrap().unwrap();
        assert_eq!(contents(&db, &one).unwrap(), Some(a));
        assert_eq!(previous(&db, 2).unwrap().unwrap().version, 1);
        assert_eq!(previous(&db, 1).unwrap(), None);
        assert_eq!(get(&db, 3).unwrap(), None);
        let all = list(&db, 10).unwrap();
        assert_eq!(all.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(list(&db, 1).unwrap()[0].version, 2);
    }

    #[test]
    fn processes_appending_at_once_get_one_version_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        drop(crate::store::db::open(&path).unwrap());
        let appenders: Vec<_> = (0..3)
            .map(|who| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let conn = crate::store::db::open(&path).unwrap();
                    let db = Db::from(&conn);
                    (0..15)
                        .map(|i| {
                            let f = files(&[("kpis/a.toml", &format!("x = {who}{i}"))]);
                            record(&db, Origin::Api, "race", &f)
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        let mut got: Vec<u64> = appenders
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (1..=45).collect::<Vec<u64>>());
    }

    #[test]
    fn a_text_is_stored_once_however_many_versions_hold_it() {
        let conn = crate::store::db::open_in_memory().unwrap();
        let db = Db::from(&conn);
        let big = "y = 1\n".repeat(1000);
        for i in 0..5 {
            let f = files(&[
                ("kpis/big.toml", &big),
                ("kpis/small.toml", &format!("n = {i}")),
            ]);
            record(&db, Origin::Api, "bob", &f);
        }
        let blobs: i64 = conn
            .query_row("SELECT COUNT(*) FROM _kpi_config_blobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(blobs, 6, "one big text and five small ones");
    }

    #[test]
    fn a_table_of_an_older_version_gains_the_new_columns_and_its_rows_still_list() {
        let conn = crate::store::db::open_in_memory().unwrap();
        let db = Db::from(&conn);
        conn.execute_batch(TABLE_BEFORE_SPEC_17).unwrap();
        conn.execute(
            "INSERT INTO _kpi_config_history VALUES
                (1, '2026-11-01T00:00:00Z', 'file', '[\"kpis/a.toml\"]', 'h1', '{\"kpis/a.toml\":\"f1\"}')",
            [],
        )
        .unwrap();
        let old = list(&db, 10).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(
            (old[0].actor.as_deref(), old[0].blobs.as_ref()),
            (None, None)
        );
        assert_eq!(old[0].files_changed, ["kpis/a.toml"]);
        assert_eq!(contents(&db, &old[0]).unwrap(), None);
        let f = files(&[("kpis/a.toml", "x = 3")]);
        assert_eq!(record(&db, Origin::File, FILE_ACTOR, &f), 2);
        let new = get(&db, 2).unwrap().unwrap();
        assert_eq!(new.actor.as_deref(), Some("file"));
        assert_eq!(contents(&db, &new).unwrap(), Some(f));
        // Migrating twice is a no-op.
        assert_eq!(list(&db, 10).unwrap().len(), 2);
    }
}
