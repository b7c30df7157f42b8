//! Alerts and the records behind a value on PostgreSQL (SPEC 20): `kpi alerts`
//! judges, stores and lists exactly what it does on SQLite, a dry run writes
//! nothing there either, and the dashboard's records list and CSV give the
//! embedded store's records.

use crate::util::cli::Root;
use crate::util::pg;
use crate::util::server::{ADMIN, Options, Server, root};

const UNTIL: &str = "2026-06-30";

/// The rows of one of the engine's tables (0 when it was never made).
fn count(url: &str, table: &str) -> i64 {
    let mut client = pg::client(url);
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .unwrap()
        .get(0);
    if !exists {
        return 0;
    }
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

#[test]
fn kpi_alerts_judges_stores_and_lists_the_same_on_both_stores() {
    let url = pg::database();
    let root = Root::demo();
    root.kpi(&["--db", &url, "demo", "--until", UNTIL]).ok();
    let on_pg = |args: &[&str]| {
        let mut all = vec!["--db", url.as_str()];
        all.extend(args);
        root.kpi(&all).ok()
    };
    let dry = ["alerts", "--as-of", "2026-06-15T00:00:00+08:00"];
    let embedded = root.kpi(&dry).ok();
    assert!(embedded.starts_with("dry run"), "{embedded}");
    assert_eq!(on_pg(&dry), embedded);
    assert_eq!(count(&url, "_kpi_alerts"), 0, "a dry run writes nothing");

    let record = ["alerts", "--as-of", "2026-06-15T00:00:00+08:00", "--record"];
    let embedded = root.kpi(&record).ok();
    let stored = on_pg(&record);
    assert_eq!(stored, embedded);
    let n = count(&url, "_kpi_alerts");
    assert!(n > 0, "the demo misses targets: {stored}");
    assert!(stored.contains(&format!("; {n} transition(s)")), "{stored}");
    // Evaluating the same again changes nothing, on both.
    let again = on_pg(&record);
    assert!(again.contains("; 0 transition(s)"), "{again}");
    assert_eq!(root.kpi(&record).ok(), again);
    assert_eq!(count(&url, "_kpi_alerts"), n);
    for list in [
        vec![
            "alerts",
            "--as-of",
            "2026-06-15T00:00:00+08:00",
            "--state",
            "firing",
        ],
        vec![
            "alerts",
            "--as-of",
            "2026-06-15T00:00:00+08:00",
            "--summary",
        ],
        vec![
            "alerts",
            "--as-of",
            "2026-06-15T00:00:00+08:00",
            "--team",
            "north",
        ],
    ] {
        assert_eq!(on_pg(&list), root.kpi(&list).ok(), "{list:?}");
    }
}

/// A root with the demo written up to [`UNTIL`] into `db` (the root's SQLite file when None).
fn demo_root(db: Option<&str>) -> tempfile::TempDir {
    let dir = root();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kpi"));
    cmd.arg("--root").arg(dir.path()).env_remove("KPI_DB");
    if let Some(url) = db {
        cmd.args(["--db", url]);
    }
    let out = cmd.args(["demo", "--until", UNTIL]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// The CSV's header, then its rows sorted (PostgreSQL lists them by id, SQLite by rowid).
fn sorted(csv: &str) -> Vec<String> {
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    lines[1..].sort();
    lines
}

#[test]
fn the_records_behind_a_value_are_the_embedded_stores_on_postgres() {
    let url = pg::database();
    let opts = |db: Option<&str>| Options {
        demo: false,
        env: [("KPI_ADMIN_TOKEN", ADMIN.to_string())]
            .into_iter()
            .chain(db.map(|u| ("KPI_DB", u.to_string())))
            .collect(),
    };
    let embedded = Server::start_in(demo_root(None), opts(None));
    let pushed = Server::start_in(demo_root(Some(&url)), opts(Some(&url)));
    let person = embedded.json("/api/scorecards/sales_reps?period=2026-Q2")["owners"][0]["owner"]
        .as_str()
        .unwrap()
        .to_string();
    let owner = format!("owner={person}");
    let mut compared = 0;
    for (kpi, who, query) in [
        ("revenue", "team=beijing", 0),
        ("revenue", "team=hq", 0),
        ("deals_won", "team=north", 0),
        ("deals_won", owner.as_str(), 0),
        ("win_rate", "team=east", 0),
        ("win_rate", "team=east", 1),
        ("avg_deal_size", "team=hq", 0),
        ("sales_cycle_days", "team=south", 0),
        ("lead_to_won", "team=hq", 0),
        ("lead_to_won", "team=hq", 1),
    ] {
        let path = format!("/kpis/{kpi}/records.csv?{who}&period=2026-Q2&records={query}");
        let a = embedded.get(&path);
        a.expect(200);
        let b = pushed.get(&path);
        b.expect(200);
        let (a, b) = (sorted(&a.text), sorted(&b.text));
        assert!(a.len() > 1, "{path}: records behind it");
        assert_eq!(a, b, "{path}");
        compared += a.len() - 1;
        // The explain page lists them too (the first page of them).
        let page = pushed.get(&format!("/kpis/{kpi}?{who}&period=2026-Q2&records={query}"));
        page.expect(200);
        assert!(page.text.contains("class=\"records\""), "{path}");
        assert!(!page.text.contains("not available"), "{path}");
    }
    assert!(compared > 100, "compared {compared} records");
}
