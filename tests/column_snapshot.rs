//! The column snapshot beside the database (`crm.db-columns/`), end to end:
//! the real `kpi` reads it in a second process and prints exactly what it
//! prints without it, after an import, a corrupted file and an ingest into
//! `kpi serve` too.

use std::time::{Duration, Instant};

use crate::util::cli::{Output, Root};
use crate::util::server::{Options, Server};

const OFF: (&str, &str) = ("KPI_COLUMN_SNAPSHOT", "off");
const DEBUG: (&str, &str) = ("RUST_LOG", "kpi_engine::store=debug");

/// `kpi eval` of every scorecard over six quarters, as JSON.
fn eval(root: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kpi"))
        .arg("--root")
        .arg(root)
        .args([
            "eval",
            "--period",
            "2025-Q1..2026-Q2",
            "--as-of",
            "2026-06-30",
        ])
        .args(["--format", "json", "--live"])
        .env_remove("KPI_DB")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run kpi");
    let out = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert_eq!(out.code, 0, "{}", out.stderr);
    out
}

/// Where the columns of `entity` came from in a logged run: "snapshot",
/// "sqlite" or both (loads of no rows, such as the check's dry run over an
/// empty in-memory database, are left out).
fn sources(out: &Output, entity: &str) -> Vec<String> {
    let key = format!("loaded columns entity={entity} source=\"");
    let found: std::collections::BTreeSet<String> = out
        .stderr
        .lines()
        .filter(|l| !l.contains(" rows=0 "))
        .filter_map(|l| l.split_once(&key))
        .map(|(_, rest)| rest.split('"').next().unwrap().to_string())
        .collect();
    found.into_iter().collect()
}

#[test]
fn a_second_eval_reads_the_snapshot_and_prints_the_same() {
    let root = Root::demo();
    let plain = eval(root.path(), &[OFF, DEBUG]);
    let dir = root.path().join("crm.db-columns");
    assert!(!dir.exists(), "KPI_COLUMN_SNAPSHOT=off writes none");
    assert_eq!(sources(&plain, "deals"), ["sqlite"]);

    let first = eval(root.path(), &[DEBUG]);
    assert_eq!(sources(&first, "deals"), ["sqlite"]);
    assert!(dir.join("deals.arrow").exists());
    assert!(dir.join("stage_events.arrow").exists());
    let second = eval(root.path(), &[DEBUG]);
    assert_eq!(sources(&second, "deals"), ["snapshot"]);
    assert_eq!(sources(&second, "stage_events"), ["snapshot"]);
    assert!(
        !second.stderr.contains("wrote column snapshot"),
        "nothing to write again:\n{}",
        second.stderr
    );
    assert_eq!(first.stdout, plain.stdout);
    assert_eq!(second.stdout, plain.stdout);

    // A damaged file is not used, and the next load writes it again.
    let file = dir.join("deals.arrow");
    let mut bytes = std::fs::read(&file).unwrap();
    // 64 KiB from the middle on: past any validity bitmap (bytes no decoded column depends on).
    let middle = bytes.len() / 2;
    let end = (middle + 65_536).min(bytes.len());
    bytes[middle..end].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&file, &bytes).unwrap();
    let damaged = eval(root.path(), &[DEBUG]);
    assert_eq!(sources(&damaged, "deals"), ["sqlite"], "{}", damaged.stderr);
    assert!(damaged.stderr.contains("column snapshot not used"));
    assert_eq!(damaged.stdout, plain.stdout);
    assert_eq!(sources(&eval(root.path(), &[DEBUG]), "deals"), ["snapshot"]);

    // Deleting the directory changes nothing either.
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(eval(root.path(), &[]).stdout, plain.stdout);
}

#[test]
fn an_import_makes_the_snapshot_stale() {
    let root = Root::demo();
    let before = eval(root.path(), &[]);
    root.write(
        "more.csv",
        "id,team,stage,amount,created_at,closed_at\n\
         snap-1,shanghai,won,123456,2026-04-02,2026-05-03 10:00:00\n",
    );
    root.kpi(&["import", "deals", "more.csv"]).ok();
    let after = eval(root.path(), &[DEBUG]);
    assert_eq!(sources(&after, "deals"), ["sqlite"], "{}", after.stderr);
    assert_eq!(sources(&after, "stage_events"), ["snapshot"]);
    assert_ne!(after.stdout, before.stdout, "the import changed a value");
    assert_eq!(after.stdout, eval(root.path(), &[OFF]).stdout);
}

#[test]
fn after_an_ingest_into_serve_the_snapshot_holds_the_new_record() {
    let mut opts = Options::default();
    opts.env
        .push(("RUST_LOG", "kpi_engine::store=debug".into()));
    let s = Server::start_with(opts);
    let body = r#"[{"id": "snap-2", "team": "shanghai", "stage": "won", "amount": 7654.0,
        "created_at": "2026-04-02", "closed_at": "2026-05-03 10:00:00"}]"#;
    s.admin("POST", "/api/records/deals", body).expect(200);
    // The patched table is written on a thread of its own after the reply,
    // tagged with the generation the ingest gave the deals.
    let db = rusqlite::Connection::open(s.path("crm.db")).unwrap();
    let generation: i64 = db
        .query_row(
            "SELECT generation FROM _kpi_data WHERE entity = 'deals'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let line = format!("wrote column snapshot entity=deals generation={generation} ");
    let t = Instant::now();
    while !s.log().contains(&line) {
        assert!(t.elapsed() < Duration::from_secs(60), "{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = s.log();
    assert!(log.contains("patched columns entity=\"deals\""), "{log}");
    let dir = s.stop();
    let read = eval(dir.path(), &[DEBUG]);
    // The patched table's columns from the file (fields only `kpi eval` asks for,
    // such as the deals' owners, from SQLite).
    assert!(
        sources(&read, "deals").contains(&"snapshot".to_string()),
        "{}",
        read.stderr
    );
    // Without the new record the snapshot's revenue of shanghai would differ.
    assert_eq!(read.stdout, eval(dir.path(), &[OFF]).stdout);
}
