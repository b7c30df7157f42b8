//! Operating faults end to end (issue 15): another process writing the
//! database while `kpi serve` runs, a locked database during edits and
//! reloads, out-of-range weights and targets, an editor's truncate-then-write
//! save with webhooks listening, a schema made stricter over NULLs, slow and
//! idle connections, a formula that takes too long, symlinks and stale
//! temporary files, and the messages of the edge cases.

use crate::util::alerts::Receiver;
use crate::util::cli::Root;
use crate::util::server::{ADMIN, Options, Server, probe_kpi, root};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const P: &str = "2026-Q1";

/// `kpi --root DIR ARGS…` as another process beside the server.
fn kpi(s: &Server, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .arg("--root")
        .arg(s.dir.path())
        .args(args)
        .current_dir(s.dir.path())
        .env_remove("KPI_DB")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kpi {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Holds the database's write lock from this process for `hold`, like a
/// long transaction of another program.
fn lock_database(path: std::path::PathBuf, hold: Duration) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        tx.send(()).unwrap();
        std::thread::sleep(hold);
        conn.execute_batch("ROLLBACK").unwrap();
    });
    rx.recv().unwrap();
    handle
}

/// Sends raw bytes and reads the answer until the server closes the connection.
fn raw(s: &Server, data: &[u8]) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", s.port())).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(data);
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    String::from_utf8_lossy(&got).to_string()
}

fn body_json(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {answer}"))
}

// Item 1: a running server sees what another process imported.
#[test]
fn records_imported_by_another_process_are_served_within_two_seconds() {
    let s = Server::start();
    let before = number(&s.value("revenue", "shanghai", P));
    std::fs::write(
        s.path("late.csv"),
        "id,team,stage,amount,created_at,closed_at\nlate-1,shanghai,won,1234567,2026-01-05,2026-02-10\n",
    )
    .unwrap();
    let started = Instant::now();
    kpi(&s, &["import", "deals", "late.csv"]);
    let seen = s.wait_for("the imported deal", Duration::from_secs(2), || {
        (number(&s.value("revenue", "shanghai", P)) - (before + 1234567.0)).abs() < 1e-6
    });
    eprintln!(
        "an import by another process was served {} ms after it committed (import took {} ms)",
        seen.as_millis(),
        (started.elapsed() - seen).as_millis()
    );
    // The team tree too: a new team imported by another process is known.
    assert_eq!(
        s.get(&format!("/api/values?kpi=revenue&team=pudong&period={P}"))
            .status,
        404
    );
    std::fs::write(
        s.path("teams.csv"),
        "id,name,parent\npudong,Pudong,shanghai\n",
    )
    .unwrap();
    kpi(&s, &["import", "teams", "teams.csv"]);
    s.wait_for("the imported team", Duration::from_secs(2), || {
        s.get(&format!("/api/values?kpi=revenue&team=pudong&period={P}"))
            .status
            == 200
    });
    // And the scorecard read after both (the cache follows the data generation).
    let card = s.json(&format!("/api/scorecards/sales?period={P}"));
    assert!(
        card["teams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["team"] == "pudong")
    );
}

// Item 2: a PUT while another process holds the database waits, then applies.
#[test]
fn a_put_while_the_database_is_locked_waits_and_applies_completely() {
    let s = Server::start();
    let before = s.read("kpis/scorecards.toml");
    let lock = lock_database(s.path("crm.db"), Duration::from_secs(7));
    let r = s.admin(
        "PUT",
        "/api/scorecards/sales/weights/Q4",
        r#"{"revenue": 40, "win_rate": 30, "new_customers": 30}"#,
    );
    lock.join().unwrap();
    r.expect(200);
    let after = s.read("kpis/scorecards.toml");
    assert_ne!(before, after);
    assert!(after.contains("revenue = 40"), "{after}");
    assert_eq!(s.health()["status"], "ok", "{}", s.health());
    assert_eq!(s.health()["config_version"], r.json["config_version"]);
}

// Item 2: a watcher reload during a lock is applied once the lock is gone; never left degraded.
#[test]
fn a_reload_during_a_lock_is_applied_once_the_lock_clears() {
    let s = Server::start();
    let lock = lock_database(s.path("crm.db"), Duration::from_secs(7));
    std::fs::write(s.path("kpis/probe.toml"), probe_kpi("probe", "7.0")).unwrap();
    lock.join().unwrap();
    s.wait_for("the probe KPI", Duration::from_secs(25), || {
        s.value("probe", "hq", P) == json!(7.0)
    });
    s.wait_for("health ok", Duration::from_secs(5), || {
        s.health()["status"] == "ok"
    });
}

// Item 4: weights, targets and caps in finite, sensible ranges; preview checks like PUT.
#[test]
fn huge_weights_and_targets_are_refused_and_preview_checks_like_put() {
    let s = Server::start();
    let cards = s.read("kpis/scorecards.toml");
    let targets = s.read("kpis/targets.toml");
    let r = s.admin(
        "PUT",
        "/api/scorecards/sales/weights/Q4",
        r#"{"revenue": 1e308, "win_rate": 1e308, "new_customers": 1}"#,
    );
    r.expect(422);
    assert!(r.text.contains("weight of revenue"), "{}", r.text);
    let r = s.admin(
        "PUT",
        "/api/targets/revenue",
        r#"{"team": null, "key": "Q4", "target": 1e300}"#,
    );
    r.expect(422);
    assert_eq!(s.read("kpis/scorecards.toml"), cards);
    assert_eq!(s.read("kpis/targets.toml"), targets);
    // The preview refuses what a PUT refuses.
    let put = s.admin(
        "PUT",
        "/api/targets/revenue",
        r#"{"team": null, "key": "Q4", "target": -1}"#,
    );
    put.expect(422);
    let preview = s.admin(
        "POST",
        "/api/preview",
        &format!(r#"{{"scorecard": "sales", "period": "{P}", "targets": {{"revenue": -1}}}}"#),
    );
    preview.expect(422);
    assert!(preview.text.contains("target > 0"), "{}", preview.text);
    let preview = s.admin(
        "POST",
        "/api/preview",
        &format!(r#"{{"scorecard": "sales", "period": "{P}", "weights": {{"revenue": 1e308}}}}"#),
    );
    preview.expect(422);
    // A file with an infinite cap does not check.
    let root = Root::new();
    let text = root.read("kpis/scorecards.toml");
    root.write(
        "kpis/scorecards.toml",
        &text.replacen("cap = 1.2", "cap = 1e308", 1),
    );
    let err = root.kpi(&["check"]).fails(1);
    assert!(err.contains("cap must be from 1.0 to 10"), "{err}");
}

// Item 5: a truncate-then-write save reaches no webhook.
#[test]
fn a_truncate_then_write_save_sends_no_notification() {
    let hook = Receiver::start(&[]);
    let dir = root();
    std::fs::write(
        dir.path().join("kpis/probe.toml"),
        "[kpi.probe]\nname = \"Probe\"\nunit = \"count\"\ndirection = \"higher\"\nformula = \"0.0\"\n",
    )
    .unwrap();
    let targets_path = dir.path().join("kpis/targets.toml");
    let mut targets = std::fs::read_to_string(&targets_path).unwrap();
    targets.push_str("\n[probe]\ndefault = 1.0\n");
    std::fs::write(&targets_path, &targets).unwrap();
    std::fs::write(
        dir.path().join("kpis/alerts.toml"),
        format!("evaluate_every = \"1h\"\n[[webhook]]\nname = \"t\"\nurl = \"{}\"\nkpis = [\"probe\"]\nteams = [\"east\"]\n", hook.url),
    )
    .unwrap();
    let s = Server::start_in(dir, Options::default());
    s.wait_for("the first notification", Duration::from_secs(15), || {
        !hook.received().is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let settled = hook.received().len();
    let version = s.health()["config_version"].as_u64().unwrap();
    // An editor empties the file, then writes it 0.4 s later.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&targets_path)
        .unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    f.write_all(targets.as_bytes()).unwrap();
    drop(f);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        hook.received().len(),
        settled,
        "the transient empty targets.toml reached the webhook: {:?}",
        hook.received()
            .iter()
            .map(|r| r.body.clone())
            .collect::<Vec<_>>()
    );
    // The empty file was never a version of its own: the save ended where it began.
    assert_eq!(s.health()["config_version"].as_u64().unwrap(), version);
    assert_eq!(s.health()["status"], "ok");
}

// Item 7 (and 11: a schema refusal has a line and column).
#[test]
fn making_an_optional_field_required_over_nulls_is_refused_with_its_position() {
    let root = Root::demo();
    let schema = root.read("kpis/schema.toml");
    let line = schema
        .lines()
        .position(|l| l.starts_with("closed_at  = \"time?\""))
        .unwrap()
        + 1;
    root.write(
        "kpis/schema.toml",
        &schema.replacen("closed_at  = \"time?\"", "closed_at  = \"time\"", 1),
    );
    let err = root.kpi(&["check"]).fails(1);
    assert!(
        err.contains(&format!("kpis/schema.toml:{line}:1:")) && err.contains("NULL"),
        "{err}"
    );
}

// Item 8: slow and idle connections are closed; the number of connections is capped.
#[test]
fn slow_and_idle_connections_are_closed_and_connections_are_capped() {
    let s = Server::start_with(Options {
        demo: false,
        env: vec![
            ("KPI_ADMIN_TOKEN", ADMIN.to_string()),
            ("KPI_HEADER_TIMEOUT", "1s".to_string()),
            ("KPI_MAX_CONNECTIONS", "6".to_string()),
        ],
    });
    // The cap: six open connections, the seventh is answered 503 in JSON.
    let held: Vec<TcpStream> = (0..6)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port())).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let refused = raw(&s, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(body_json(&refused)["error"].is_string());
    drop(held);
    // Slowloris: a request head that never ends is cut after the header timeout.
    let started = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", s.port())).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    // Closed (EOF or reset) well before the client's own 5 s read timeout.
    let _ = slow.read(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a slow request head was not cut: {:?}",
        started.elapsed()
    );
    // An idle keep-alive connection is closed too.
    let mut idle = TcpStream::connect(("127.0.0.1", s.port())).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let started = Instant::now();
    loop {
        match idle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "the idle connection stayed open: {e} after {:?}",
                started.elapsed()
            ),
        }
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() < Duration::from_secs(4));
    // The server still answers.
    s.get("/health").expect(200);
}

// Item 9: a formula that takes too long fails alone, with a clear error.
#[test]
fn a_formula_over_its_time_budget_fails_alone() {
    let root = Root::demo();
    let settings = root.read("kpis/settings.toml");
    root.write(
        "kpis/settings.toml",
        &format!("{settings}\nformula_time_budget = \"1s\"\n"),
    );
    root.write(
        "kpis/slow.toml",
        "[kpi.slow]\nname = \"Slow\"\nunit = \"count\"\ndirection = \"higher\"\nformula = '''\nlet s = 0.0;\nfor i in 0..200000 { s += records(\"deals\").gt(\"amount\", i.to_float()).count(); }\ns\n'''\n",
    );
    let started = Instant::now();
    let out = root.kpi(&[
        "eval",
        "--kpi",
        "slow,revenue",
        "--period",
        P,
        "--team",
        "east",
        "--format",
        "json",
        "--explain",
    ]);
    let took = started.elapsed();
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert!(all.contains("time budget of 1s"), "{all}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let east = &report["teams"][0];
    let line = |k: &str| {
        east["kpis"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kpi"] == k)
            .unwrap()
            .clone()
    };
    assert_eq!(line("slow")["status"], "error");
    assert!(line("revenue")["value"].is_number());
    eprintln!(
        "a 1 s budget stopped the slow formula; the command took {} ms",
        took.as_millis()
    );
}

// Item 10: files outside the root, literal imports out of scripts/.
#[test]
fn files_resolving_outside_the_root_and_imports_out_of_scripts_are_refused_by_check() {
    let root = Root::new();
    std::os::unix::fs::symlink("/etc/passwd", root.path().join("scripts/evil.rhai")).unwrap();
    let err = root.kpi(&["check"]).fails(1);
    assert!(
        err.contains("scripts/evil.rhai") && err.contains("outside the deployment root"),
        "{err}"
    );
    let root = Root::new();
    root.write(
        "kpis/evil.toml",
        "[kpi.evil]\nname = \"Evil\"\nunit = \"count\"\ndirection = \"higher\"\nformula = '''\nimport \"../../etc/passwd\" as p;\n1.0\n'''\n",
    );
    let err = root.kpi(&["check"]).fails(1);
    assert!(
        err.contains("kpis/evil.toml:6:") && err.contains("cannot import \"../../etc/passwd\""),
        "{err}"
    );
}

// Item 10: a PUT writes through a symlinked file; stale temporary files are removed at start.
#[test]
fn a_put_writes_through_a_symlink_and_stale_temp_files_are_removed() {
    let dir = root();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::rename(
        dir.path().join("kpis/targets.toml"),
        shared.join("targets.toml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../shared/targets.toml",
        dir.path().join("kpis/targets.toml"),
    )
    .unwrap();
    let stale = dir.path().join("kpis/.custom.toml.4194300-0.tmp");
    std::fs::write(&stale, "half a file").unwrap();
    let s = Server::start_in(dir, Options::default());
    assert!(!stale.exists(), "the stale temporary file is still there");
    s.admin(
        "PUT",
        "/api/targets/revenue",
        r#"{"team": null, "key": "Q3", "target": 123456}"#,
    )
    .expect(200);
    let link = s.path("kpis/targets.toml");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(s.read("shared/targets.toml").contains("123456"));
}

// Item 11: messages.
#[test]
fn edge_answers_are_json_and_say_what_happened() {
    let s = Server::start();
    // 414 and 431 from the HTTP layer have the JSON error shape.
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let answer = raw(&s, long.as_bytes());
    assert!(
        answer.starts_with("HTTP/1.1 414"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert!(body_json(&answer)["details"].is_array());
    let mut many = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..300 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw(&s, many.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(body_json(&answer)["error"].is_string());
    // team= on a scorecard: that team, with its rank among all.
    let all = s.json(&format!("/api/scorecards/sales?period={P}"));
    let one = s.json(&format!("/api/scorecards/sales?period={P}&team=shanghai"));
    let teams = one["teams"].as_array().unwrap();
    assert_eq!(teams.len(), 1);
    let full = all["teams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["team"] == "shanghai")
        .unwrap();
    assert_eq!(teams[0]["rank"], full["rank"]);
    s.get(&format!("/api/scorecards/sales?period={P}&team=nope"))
        .expect(404);
    // An as-of whose quarter has no period id is a 400 naming as_of.
    let r = s.get("/api/scorecards/sales?as_of=9999-12-31T23:59:59Z");
    r.expect(400);
    assert!(r.text.contains("as_of"), "{}", r.text);
    s.get("/api/values?kpi=revenue&team=hq&as_of=9999-12-31T23:59:59Z")
        .expect(400);
    // /health never shows the root's absolute path.
    let root = s.dir.path().to_string_lossy().to_string();
    std::fs::rename(s.path("kpis"), s.path("kpis.away")).unwrap();
    s.wait_for("degraded", Duration::from_secs(5), || {
        s.health()["status"] == "degraded"
    });
    let health = s.get("/health").text;
    assert!(!health.contains(&root), "{health}");
    std::fs::rename(s.path("kpis.away"), s.path("kpis")).unwrap();
    s.wait_for("ok again", Duration::from_secs(5), || {
        s.health()["status"] == "ok"
    });
}
