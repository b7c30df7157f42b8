//! Closed assessments end to end (SPEC 16): closing a quarter (by hand, and
//! by the server once its end + close_after passed), frozen results that no
//! edit or import changes, `?live=true` / `--live`, restatements, reopening,
//! the refusals, restarts, and a freeze that fails half way.
//!
//! The clock is the real one: the periods are computed from now, as the
//! demo's are (`kpi serve --demo` writes the eight quarters up to now), and
//! the automatic close is steered by `close_after` in settings.toml.

use std::collections::BTreeSet;
use std::time::Duration;

use kpi_engine::period::{Calendar, Grain, PeriodId};
use serde_json::{Value, json};

use crate::util::cli::Root;
use crate::util::server::{ADMIN, Options, Server, root};

const DAY: i64 = 86_400_000;

fn calendar() -> Calendar {
    Calendar::new("Asia/Shanghai", 1).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The quarter that closed last with the default grace (end + 5d ≤ now).
fn last_closed() -> PeriodId {
    calendar()
        .containing(Grain::Quarter, now() - 5 * DAY)
        .prev()
}

/// The quarter keys of a period's recurring weight and target sets ("Q2").
fn recurring(p: PeriodId) -> String {
    p.recurring_key().unwrap()
}

/// The frozen periods the server lists.
fn frozen_periods(s: &Server) -> Vec<String> {
    s.json("/api/periods")["frozen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["period"].as_str().unwrap().to_string())
        .collect()
}

/// (scorecard, subject, KPI) of every line whose value, target, status or
/// score differs between two evaluations of the same scorecards.
fn differing(frozen: &[Value], live: &[Value]) -> BTreeSet<(String, String, String)> {
    let lines = |reports: &[Value]| {
        let mut out = std::collections::BTreeMap::new();
        for r in reports {
            let card = r["scorecard"].as_str().unwrap().to_string();
            let subjects = r["teams"].as_array().or(r["owners"].as_array()).unwrap();
            for t in subjects {
                let who = t["owner"].as_str().or(t["team"].as_str()).unwrap();
                for k in t["kpis"].as_array().unwrap() {
                    let side = json!([k["value"], k["target"], k["status"], k["score"]]);
                    out.insert(
                        (
                            card.clone(),
                            who.to_string(),
                            k["kpi"].as_str().unwrap().to_string(),
                        ),
                        side,
                    );
                }
            }
        }
        out
    };
    let (a, b) = (lines(frozen), lines(live));
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// The (scorecard, subject, KPI) of a restatement's changes.
fn restated(r: &Value) -> BTreeSet<(String, String, String)> {
    r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["scorecard"].as_str().unwrap().to_string(),
                c["subject"].as_str().unwrap().to_string(),
                c["kpi"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Reports without their as-of (two live evaluations differ only in it).
fn without_as_of(mut reports: Vec<Value>) -> Vec<Value> {
    for r in &mut reports {
        r.as_object_mut().unwrap().remove("as_of");
    }
    reports
}

/// Every scorecard of `p` from `kpi eval`, frozen or with `--live`.
fn eval_all(root: &Root, p: &str, live: bool) -> Vec<Value> {
    let mut args = vec!["eval", "--period", p, "--format", "json"];
    if live {
        args.push("--live");
    }
    let out = root.kpi(&args).json();
    out.as_array().unwrap().clone()
}

#[test]
fn a_closed_quarter_holds_through_edits_and_live_shows_them() {
    let s = Server::start();
    let p = last_closed().prev();
    let card = format!("/api/scorecards/sales?period={p}");
    let before = s.json(&card);
    assert!(before.get("frozen").is_none(), "{p} is not frozen yet");

    let closed = s.admin("POST", &format!("/api/periods/{p}/close"), "");
    closed.expect(200);
    assert_eq!(closed.json["period"], p.to_string());
    assert_eq!(closed.json["how"], "close");
    assert!(
        closed.json["values"].as_u64().unwrap() > 100,
        "{}",
        closed.text
    );
    let frozen = s.get(&card);
    frozen.expect(200);
    let frozen_team = s.get(&format!("{card}&team=beijing")).text;
    assert_eq!(frozen.json["frozen"], true);
    assert_eq!(frozen.json["config_version"], s.health()["config_version"]);
    assert!(frozen.json["frozen_at"].as_str().unwrap().ends_with('Z'));
    // What was frozen is what was served at the close.
    assert_eq!(frozen.json["teams"], before["teams"]);

    // A recurring weight set and target of the quarter, and a KPI formula.
    let key = recurring(p);
    s.admin(
        "PUT",
        &format!("/api/scorecards/sales/weights/{key}"),
        r#"{"revenue": 50, "win_rate": 50}"#,
    )
    .expect(200);
    s.admin(
        "PUT",
        "/api/targets/win_rate",
        &json!({"team": null, "key": key, "target": 0.9}).to_string(),
    )
    .expect(200);
    let kpi = "name = \"Deals won\"\nunit = \"count\"\ndirection = \"higher\"\ncumulative = true\nformula = 'records(\"deals\").eq(\"stage\", \"won\").in_period(\"closed_at\").count() * 2.0'\n";
    s.admin("PUT", "/api/kpis/deals_won", kpi).expect(200);

    assert_eq!(
        s.get(&card).text,
        frozen.text,
        "the frozen result is unchanged"
    );
    assert_eq!(s.get(&format!("{card}&team=beijing")).text, frozen_team);
    let live = s.json(&format!("{card}&live=true"));
    assert!(live.get("frozen").is_none());
    let weights: Vec<&str> = live["teams"][0]["kpis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kpi"].as_str().unwrap())
        .collect();
    assert_eq!(
        weights,
        ["revenue", "win_rate"],
        "live uses the new weight set"
    );
    // An unfrozen period of the same quarter key is live: it changes.
    let year_ago = s.json(&format!("/api/scorecards/sales?period={}", p.shift(-4)));
    assert_eq!(year_ago["teams"][0]["kpis"].as_array().unwrap().len(), 2);

    // The restatement lists exactly the values that differ: win_rate's target.
    let r = s.json(&format!("/api/periods/{p}/restatement"));
    let all_frozen: Vec<Value> = ["sales", "service", "marketing", "sales_reps"]
        .iter()
        .map(|c| s.json(&format!("/api/scorecards/{c}?period={p}")))
        .collect();
    let all_live: Vec<Value> = ["sales", "service", "marketing", "sales_reps"]
        .iter()
        .map(|c| s.json(&format!("/api/scorecards/{c}?period={p}&live=true")))
        .collect();
    let expected = differing(&all_frozen, &all_live);
    assert!(!expected.is_empty());
    assert_eq!(restated(&r), expected);
    let win = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["scorecard"] == "sales" && c["kpi"] == "win_rate")
        .unwrap();
    assert_eq!(win["live"]["target"], 0.9, "{win}");
    assert_ne!(win["frozen"]["target"], 0.9, "{win}");
}

#[test]
fn a_backdated_deal_is_restated_exactly_and_unfrozen_periods_take_it() {
    let root = Root::demo();
    let out = root.kpi(&["close", "2026-Q1"]).ok();
    assert!(out.contains("froze 2026-Q1"), "{out}");
    let frozen = eval_all(&root, "2026-Q1", false);
    assert!(frozen.iter().all(|r| r["frozen"] == true));
    let east = root
        .kpi(&[
            "eval",
            "--scorecard",
            "sales",
            "--period",
            "2026-Q1",
            "--team",
            "east",
            "--format",
            "json",
        ])
        .json();
    assert_eq!(east["frozen"], true);
    assert_eq!(east["teams"].as_array().unwrap().len(), 1);
    let next_before = root.scorecard_json("sales", "2026-Q2", "2026-06-30T00:00:00Z", &[]);
    assert_eq!(
        root.kpi(&["restatement", "2026-Q1", "--format", "json"])
            .json()["changes"],
        json!([]),
        "nothing changed yet"
    );

    // A deal won in February, imported in the next quarter.
    root.write(
        "late.csv",
        "id,team,owner,customer,stage,amount,created_at,closed_at,campaign\nlate-1,shanghai,,,won,5000000,2026-01-20,2026-02-15,\n",
    );
    root.kpi(&["import", "deals", "late.csv"]).ok();

    assert_eq!(
        eval_all(&root, "2026-Q1", false),
        frozen,
        "the frozen result is unchanged"
    );
    let live = eval_all(&root, "2026-Q1", true);
    let r = root
        .kpi(&["restatement", "2026-Q1", "--format", "json"])
        .json();
    let expected = differing(&frozen, &live);
    assert_eq!(restated(&r), expected);
    // Only shanghai and its ancestors read the deal.
    let subjects: BTreeSet<&str> = expected.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        BTreeSet::from(["east", "hq", "shanghai"]),
        "{r:#}"
    );
    assert!(expected.contains(&("sales".into(), "shanghai".into(), "revenue".into())));
    let revenue = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["scorecard"] == "sales" && c["subject"] == "shanghai" && c["kpi"] == "revenue")
        .unwrap();
    let delta =
        revenue["live"]["value"].as_f64().unwrap() - revenue["frozen"]["value"].as_f64().unwrap();
    assert!((delta - 5_000_000.0).abs() < 1e-6, "{revenue}");
    let table = root.kpi(&["restatement", "2026-Q1"]).ok();
    assert!(
        table.contains(&format!("{} value(s) differ", expected.len())),
        "{table}"
    );
    assert!(
        table.contains("shanghai") && table.contains("revenue"),
        "{table}"
    );

    // 2026-Q2 is not frozen: its growth over Q1 sees the deal.
    let next = root.scorecard_json("sales", "2026-Q2", "2026-06-30T00:00:00Z", &[]);
    let growth = |r: &Value| crate::util::cli::value(r, "shanghai", "revenue_growth");
    assert_ne!(growth(&next), growth(&next_before));

    // Reopened: the live result is served, and the history has it.
    let out = root.kpi(&["reopen", "2026-Q1"]).ok();
    assert!(out.contains("reopened 2026-Q1"), "{out}");
    assert_eq!(
        without_as_of(eval_all(&root, "2026-Q1", false)),
        without_as_of(live)
    );
    let err = root.kpi(&["restatement", "2026-Q1"]).fails(1);
    assert!(err.contains("unknown frozen period '2026-Q1'"), "{err}");
    let conn = kpi_engine::store::db::open(&root.path().join("crm.db")).unwrap();
    let history = kpi_engine::store::config_history::list(&(&conn).into(), 10).unwrap();
    assert_eq!(history.last().unwrap().origin, "reopen");
}

#[test]
fn closing_needs_an_admin_and_force_for_a_running_period() {
    let root = Root::demo();
    let running = calendar().containing(Grain::Quarter, now()).to_string();
    let err = root.kpi(&["close", &running]).fails(1);
    assert!(
        err.contains("still running") && err.contains("--force"),
        "{err}"
    );
    assert!(err.contains("nothing was frozen"), "{err}");
    let out = root.kpi(&["close", &running, "--force"]).ok();
    assert!(out.contains("(force)"), "{out}");
    let err = root.kpi(&["close", &running]).fails(1);
    assert!(err.contains("frozen already"), "{err}");
    let err = root.kpi(&["close", "2026-03"]).fails(1);
    assert!(err.contains("freeze_grains"), "{err}");
    let err = root.kpi(&["close", "2026-Q5"]).fails(1);
    assert!(err.starts_with("PERIOD:"), "{err}");
    let err = root.kpi(&["reopen", "2025-Q1"]).fails(1);
    assert!(err.contains("unknown frozen period"), "{err}");

    let no_admin = Server::start_with(Options {
        env: vec![],
        ..Options::default()
    });
    let p = last_closed().prev();
    let r = no_admin.request("POST", &format!("/api/periods/{p}/close"), None, &[], None);
    r.expect(403);
    no_admin
        .request(
            "POST",
            &format!("/api/periods/{p}/reopen"),
            Some(ADMIN),
            &[],
            None,
        )
        .expect(403);
    drop(no_admin);

    let s = Server::start();
    s.request("POST", &format!("/api/periods/{p}/close"), None, &[], None)
        .expect(401);
    let running = calendar().containing(Grain::Quarter, now());
    let r = s.admin("POST", &format!("/api/periods/{running}/close"), "");
    r.expect(422);
    assert!(
        r.json["error"].as_str().unwrap().contains("?force=true"),
        "{}",
        r.text
    );
    s.admin("POST", "/api/periods/2026-Q9/close", "")
        .expect(400);
    s.admin("POST", &format!("/api/periods/{p}/reopen"), "")
        .expect(404);
    let r = s.admin(
        "POST",
        &format!("/api/periods/{running}/close?force=true"),
        "",
    );
    r.expect(200);
    assert_eq!(r.json["how"], "force");
    let card = s.json(&format!("/api/scorecards/sales?period={running}"));
    assert_eq!(card["frozen"], true);
    // A forced close froze an open period: its projections are frozen with it.
    assert!(card["teams"][0].get("projected_score").is_some(), "{card}");
}

#[test]
fn a_frozen_result_survives_a_restart_and_a_reopen_is_in_the_history() {
    let s = Server::start();
    let q = last_closed();
    // The server closes the quarter that closed last on its own.
    s.wait_for(
        "the last closed quarter frozen",
        Duration::from_secs(30),
        || frozen_periods(&s).contains(&q.to_string()),
    );
    let card = format!("/api/scorecards/sales_reps?period={q}");
    let frozen = s.get(&card).text;
    let page = s.get(&format!("/?scorecard=sales&period={q}"));
    page.expect(200);
    let dir = s.stop();

    let s = Server::start_in(dir, Options::default());
    assert_eq!(
        s.get(&card).text,
        frozen,
        "byte for byte after a kill -9 and a restart"
    );
    let versions = s.health()["config_version"].as_u64().unwrap();

    let r = s.admin("POST", &format!("/api/periods/{q}/reopen"), "");
    r.expect(200);
    assert_eq!(r.json["config_version"], versions + 1);
    let history = s.json("/api/config/history");
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["origin"], "reopen");
    assert_eq!(last["actor"], "admin");
    assert_eq!(last["version"], versions + 1);
    assert_eq!(s.health()["config_version"], versions + 1);
    let live = s.json(&card);
    assert!(live.get("frozen").is_none(), "{live}");
    let periods = s.json("/api/periods");
    assert_eq!(periods["reopened"][0]["period"], q.to_string());
    assert!(!frozen_periods(&s).contains(&q.to_string()));

    // Closed again by hand, from another process: the server serves it.
    let out = s.dir.path().to_path_buf();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kpi"))
        .arg("--root")
        .arg(&out)
        .args(["close", &q.to_string()])
        .env_remove("KPI_DB")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    s.wait_for("the CLI's close served", Duration::from_secs(10), || {
        s.json(&card).get("frozen").is_some()
    });
    assert!(
        s.json("/api/periods")["reopened"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn the_server_closes_a_quarter_once_its_end_and_close_after_passed() {
    let dir = root();
    let q = calendar().containing(Grain::Quarter, now()).prev();
    let end = calendar().period(q).end;
    // A grace longer than the time since q ended: q is not closed yet.
    let days = (now() - end) / DAY + 2;
    let settings = dir.path().join("kpis/settings.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    let grace = |g: &str| text.replace("close_after = \"5d\"", &format!("close_after = \"{g}\""));
    assert_ne!(grace("1d"), text, "settings.toml sets close_after");
    std::fs::write(&settings, grace(&format!("{days}d"))).unwrap();
    let s = Server::start_in(dir, Options::default());
    s.wait_for("the quarter before frozen", Duration::from_secs(30), || {
        frozen_periods(&s) == [q.prev().to_string()]
    });
    let listed = s.json("/api/periods");
    assert_eq!(listed["frozen"][0]["how"], "auto");
    assert_eq!(listed["close_after_seconds"], days * 86_400);
    assert!(
        s.json(&format!("/api/scorecards/sales?period={q}"))
            .get("frozen")
            .is_none()
    );

    // The grace shortened on disk: q's end + close_after has passed now.
    std::fs::write(&settings, grace("0d")).unwrap();
    s.wait_for("q frozen automatically", Duration::from_secs(30), || {
        frozen_periods(&s).contains(&q.to_string())
    });
    let card = s.json(&format!("/api/scorecards/sales?period={q}"));
    assert_eq!(card["frozen"], true);
    assert_eq!(frozen_periods(&s), [q.prev().to_string(), q.to_string()]);
}

#[test]
fn a_freeze_that_fails_half_way_leaves_the_period_unfrozen() {
    let root = Root::demo();
    let before = eval_all(&root, "2026-Q1", false);
    let db = root.path().join("crm.db");
    // The 200th KPI line fails to write, as a full disk would.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER fail BEFORE INSERT ON _kpi_frozen_values
         WHEN (SELECT count(*) FROM _kpi_frozen_values) >= 200
         BEGIN SELECT RAISE(ABORT, 'disk I/O error (test)'); END;",
    )
    .unwrap();
    let err = root.kpi(&["close", "2026-Q1"]).fails(1);
    assert!(err.contains("nothing was frozen"), "{err}");
    conn.execute_batch("DROP TRIGGER fail").unwrap();
    for table in [
        "_kpi_frozen",
        "_kpi_frozen_cards",
        "_kpi_frozen_subjects",
        "_kpi_frozen_values",
    ] {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table} holds rows of a failed freeze");
    }
    assert_eq!(
        without_as_of(eval_all(&root, "2026-Q1", false)),
        without_as_of(before),
        "still live"
    );
    root.kpi(&["close", "2026-Q1"]).ok();
    assert!(
        eval_all(&root, "2026-Q1", false)
            .iter()
            .all(|r| r["frozen"] == true)
    );
}

/// A close evaluates without holding the engine's write path: a deal sent while a slow close
/// of its quarter is evaluating is applied before the close ends (the old close held every
/// ingest until it had written). The close freezes what was served when it began; the deal came
/// after it, so the live value has it and the restatement lists it.
#[test]
fn an_ingest_during_a_close_is_not_held_up_and_comes_after_it() {
    let s = Server::start();
    let p = last_closed().prev();
    // deals_won spins before it counts: every value of it, for every team and person, takes a while.
    let slow = "name = \"Deals won\"\nunit = \"count\"\ndirection = \"higher\"\ncumulative = true\n\
        formula = 'let i = 0; while i < 30000 { i += 1; } records(\"deals\").eq(\"stage\", \"won\").in_period(\"closed_at\").count()'\n";
    s.admin("PUT", "/api/kpis/deals_won", slow).expect(200);
    let before = s
        .value("deals_won", "beijing", &p.to_string())
        .as_f64()
        .unwrap();
    let day = chrono::DateTime::from_timestamp_millis(calendar().period(p).start + 10 * DAY)
        .unwrap()
        .format("%Y-%m-%d");
    let deal = format!(
        r#"[{{"id": "during-close", "team": "beijing", "stage": "won", "amount": 10.0,
        "created_at": "{day}", "closed_at": "{day}"}}]"#
    );
    let closed = std::sync::atomic::AtomicBool::new(false);
    let reply = std::thread::scope(|scope| {
        let close = scope.spawn(|| {
            let r = s.admin("POST", &format!("/api/periods/{p}/close"), "");
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        std::thread::sleep(Duration::from_millis(300));
        s.admin("POST", "/api/records/deals", &deal).expect(200);
        assert!(
            !closed.load(std::sync::atomic::Ordering::SeqCst),
            "the ingest waited for the close"
        );
        close.join().unwrap()
    });
    reply.expect(200);
    let won = |live: &str| {
        let card = s.json(&format!(
            "/api/scorecards/sales?period={p}&team=beijing{live}"
        ));
        let line = card["teams"][0]["kpis"].as_array().unwrap().iter();
        let line = line
            .clone()
            .find(|k| k["kpi"] == "deals_won")
            .unwrap()
            .clone();
        (card["frozen"].clone(), line["value"].as_f64().unwrap())
    };
    assert_eq!(
        won(""),
        (json!(true), before),
        "frozen as served when the close began"
    );
    assert_eq!(won("&live=true").1, before + 1.0);
    let restated = restated(&s.json(&format!("/api/periods/{p}/restatement")));
    assert!(
        restated.contains(&("sales".into(), "beijing".into(), "deals_won".into())),
        "{restated:?}"
    );
}
