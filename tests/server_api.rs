//! Every route of the HTTP API end to end: shapes, auth, edits that keep the
//! rest of the file, previews, ingest, and the error codes of bad input.

use crate::util::server as server_common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_common::{ADMIN, Options, Server, summary};

const AS_OF: &str = "2026-07-15T00:00:00Z";

#[test]
fn health_and_definitions() {
    let s = Server::start();
    let h = s.health();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["config_version"], 1);
    assert!(h["loaded_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(h["errors"], json!([]));

    let kpis = s.json("/api/kpis");
    let list = kpis.as_array().unwrap();
    assert!(list.len() >= 35, "the standard library");
    let win = list.iter().find(|k| k["id"] == "win_rate").unwrap();
    assert_eq!(win["file"], "kpis/sales.toml");
    assert!(
        win["formula"]
            .as_str()
            .unwrap()
            .contains("records(\"deals\")")
    );
    assert_eq!(win["unit"], "ratio");
    let one = s.json("/api/kpis/lead_to_won");
    assert_eq!(one["script"], "stage_conversion.rhai");
    assert_eq!(one["formula_file"], "scripts/stage_conversion.rhai");
    assert!(one["targets"].is_object());
    let miss = s.get("/api/kpis/win_rat");
    miss.expect(404);
    assert!(
        miss.json["error"]
            .as_str()
            .unwrap()
            .contains("did you mean 'win_rate'")
    );

    let cards = s.json("/api/scorecards");
    let ids: Vec<&str> = cards
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sales", "service", "marketing", "sales_reps"]);
    assert!(cards[0]["weights"]["default"]["revenue"].is_number());

    assert_eq!(s.json("/api/alerts"), json!([]));
    assert_eq!(s.json("/api/alerts?state=firing"), json!([]));
    s.get("/api/alerts?state=open").expect(400);

    let history = s.json("/api/config/history");
    assert_eq!(history[0]["version"], 1);
    assert_eq!(history[0]["origin"], "file");
    assert!(history[0]["content_hash"].is_string());
    assert!(
        history[0]["files_changed"]
            .as_array()
            .unwrap()
            .contains(&json!("kpis/sales.toml"))
    );
}

#[test]
fn scorecards_have_the_cli_json_shape_and_values() {
    let s = Server::start();
    let api = s.json(&format!(
        "/api/scorecards/sales?period=2026-Q2&as_of={AS_OF}"
    ));
    assert_eq!(api["scorecard"], "sales");
    assert_eq!(api["period"], "2026-Q2");
    let team = &api["teams"][0];
    assert_eq!(team["rank"], 1);
    for key in ["kpi", "value", "target", "weight", "score", "status"] {
        assert!(team["kpis"][0].get(key).is_some(), "{key} in {team}");
    }
    // The same numbers as `kpi eval --format json` over the same root and database.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kpi"))
        .arg("--root")
        .arg(s.dir.path())
        .args([
            "eval",
            "--scorecard",
            "sales",
            "--period",
            "2026-Q2",
            "--as-of",
            AS_OF,
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(api, cli);

    // Without a period: the quarter that contains as_of.
    let default = s.json(&format!("/api/scorecards/sales?as_of={AS_OF}"));
    assert_eq!(default["period"], "2026-Q3");
    let now = s.json("/api/scorecards/service");
    assert!(now["period"].as_str().unwrap().contains("-Q"));

    s.get("/api/scorecards/sales?period=2026-Q5").expect(400);
    s.get("/api/scorecards/sales?as_of=yesterday").expect(400);
    let r = s.get("/api/scorecards/sale");
    r.expect(404);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("did you mean 'sales'")
    );
}

#[test]
fn values_one_at_a_time() {
    let s = Server::start();
    let v = s.json(&format!(
        "/api/values?kpi=win_rate&team=shanghai&period=2026-Q2&as_of={AS_OF}&explain=true"
    ));
    for key in [
        "kpi",
        "team",
        "period",
        "value",
        "target",
        "status",
        "explanation",
    ] {
        assert!(v.get(key).is_some(), "{key} in {v}");
    }
    assert_eq!(v["kpi"], "win_rate");
    assert!(v["value"].is_number());
    let lines = v["explanation"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().unwrap().contains("records(\"deals\")"))
    );
    let plain = s.json("/api/values?kpi=win_rate&team=shanghai&period=2026-Q2");
    assert_eq!(plain["value"], v["value"]);
    assert_eq!(plain["explanation"], Value::Null);

    s.get("/api/values?team=shanghai").expect(400);
    s.get("/api/values?kpi=win_rate").expect(400);
    s.get("/api/values?kpi=win_rate&team=shanghai&explain=maybe")
        .expect(400);
    s.get("/api/values?kpi=win_rate&team=shanghai&period=Q2")
        .expect(400);
    let r = s.get("/api/values?kpi=win_rate&team=shangai");
    r.expect(404);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("did you mean 'shanghai'")
    );
    s.get("/api/values?kpi=nope&team=shanghai").expect(404);
}

#[test]
fn writes_are_refused_without_an_admin_token() {
    let s = Server::start_with(Options {
        demo: true,
        env: vec![],
    });
    let r = s.request("POST", "/api/reload", Some("anything"), &[], Some(b""));
    r.expect(403);
    s.request("PUT", "/api/targets/win_rate", None, &[], Some(b"{}"))
        .expect(403);
    s.get("/api/kpis").expect(200);
}

#[test]
fn writes_need_the_right_bearer_token() {
    let s = Server::start();
    let body = br#"{"key": "default", "target": 0.3}"#;
    let none = s.request("PUT", "/api/targets/win_rate", None, &[], Some(body));
    none.expect(401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    s.request(
        "PUT",
        "/api/targets/win_rate",
        Some("wrong"),
        &[],
        Some(body),
    )
    .expect(401);
    s.request(
        "PUT",
        "/api/targets/win_rate",
        None,
        &[("Authorization", &format!("Basic {ADMIN}"))],
        Some(body),
    )
    .expect(401);
    for (m, p) in [
        ("PUT", "/api/kpis/win_rate"),
        ("PUT", "/api/scorecards/sales/weights/default"),
        ("POST", "/api/records/deals"),
        ("POST", "/api/reload"),
    ] {
        s.request(m, p, None, &[], Some(b"{}")).expect(401);
    }
    s.request("PUT", "/api/targets/win_rate", Some(ADMIN), &[], Some(body))
        .expect(200);
}

#[test]
fn a_read_token_closes_reads() {
    let s = Server::start_with(Options {
        demo: true,
        env: vec![
            ("KPI_ADMIN_TOKEN", ADMIN.into()),
            ("KPI_READ_TOKEN", "reader".into()),
        ],
    });
    s.get("/api/kpis").expect(401);
    s.get("/health").expect(401);
    s.get("/").expect(401);
    s.request("GET", "/api/kpis", Some("nope"), &[], None)
        .expect(401);
    s.request("GET", "/api/kpis", Some("reader"), &[], None)
        .expect(200);
    s.request("GET", "/api/kpis", Some(ADMIN), &[], None)
        .expect(200);
    // The dashboard keeps the token in a cookie.
    let r = s.get("/?token=reader&lang=zh");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/?lang=zh"));
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = s.request("GET", "/?lang=zh", None, &[("Cookie", &cookie)], None);
    page.expect(200);
    assert!(page.text.contains("<html lang=\"zh-CN\">"));
    s.get("/?token=bad").expect(401);
    // A read token does not allow writes.
    s.request("POST", "/api/reload", Some("reader"), &[], Some(b""))
        .expect(401);
}

#[test]
fn put_kpi_changes_one_table_and_keeps_the_rest_of_the_file() {
    let s = Server::start();
    let before = s.read("kpis/sales.toml");
    let start = before.find("[kpi.win_rate]").unwrap();
    let end = start + before[start..].find("\n# ").unwrap();
    let body = "[kpi.win_rate]\nname = \"Win rate\"\nlabels = { zh = \"赢单率\" }\ndescription = \"Won deals only.\"\nunit = \"ratio\"\ndirection = \"higher\"\nformula = '''\nlet won = records(\"deals\").eq(\"stage\", \"won\").in_period(\"closed_at\").count();\nwon / (won + 1.0)\n'''\n";
    let old = s.value("win_rate", "shanghai", "2026-Q2");
    let r = s.admin("PUT", "/api/kpis/win_rate", body);
    r.expect(200);
    assert_eq!(r.json["file"], "kpis/sales.toml");
    assert_eq!(r.json["config_version"], 2);
    let after = s.read("kpis/sales.toml");
    assert_eq!(
        &after[..start],
        &before[..start],
        "everything before is untouched"
    );
    let tail = &before[end..];
    assert!(after.ends_with(tail), "everything after is untouched");
    assert!(after.contains("won / (won + 1.0)"));
    // Applied before the answer: the new value is served at once.
    let new = s.value("win_rate", "shanghai", "2026-Q2");
    assert_ne!(new, old);
    let history = s.json("/api/config/history");
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["origin"], "api");
    assert_eq!(last["files_changed"], json!(["kpis/sales.toml"]));
    // The watcher sees the written file, but it is the same configuration: no new version.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(s.health()["config_version"], 2);

    // Without the header, only some keys: the left-out ones go.
    let short =
        "name = \"Win rate\"\nunit = \"ratio\"\ndirection = \"higher\"\nformula = \"0.5\"\n";
    s.admin("PUT", "/api/kpis/win_rate", short).expect(200);
    assert_eq!(s.value("win_rate", "shanghai", "2026-Q2"), json!(0.5));
    assert!(!s.read("kpis/sales.toml").contains("Won deals only."));

    // A candidate that does not check: 422 with file:line:col, nothing written.
    let current = s.read("kpis/sales.toml");
    let bad = "name = \"Win rate\"\nunit = \"ratio\"\ndirection = \"higher\"\nformula = 'records(\"deals\").sum(\"amout\")'\n";
    let r = s.admin("PUT", "/api/kpis/win_rate", bad);
    r.expect(422);
    let details = r.json["details"].to_string();
    assert!(details.contains("did you mean 'amount'"), "{details}");
    assert!(details.contains("kpis/sales.toml:"), "{details}");
    assert_eq!(s.read("kpis/sales.toml"), current);
    let r = s.admin(
        "PUT",
        "/api/kpis/win_rate",
        "name = \"x\"\nunit = \"percent\"\n",
    );
    r.expect(422);
    assert_eq!(s.read("kpis/sales.toml"), current);
    s.admin("PUT", "/api/kpis/win_rate", "formula = '''")
        .expect(400);
    s.admin("PUT", "/api/kpis/win_rate", "").expect(400);
    s.admin("PUT", "/api/kpis/win_rate", "[kpi.revenue]\nname = \"x\"\n")
        .expect(400);
    s.admin("PUT", "/api/kpis/Bad-Id", short).expect(400);
    assert_eq!(s.read("kpis/sales.toml"), current);
    assert_eq!(
        s.health()["status"],
        "ok",
        "a refused edit does not degrade"
    );
}

#[test]
fn put_kpi_adds_new_kpis_to_custom_toml() {
    let s = Server::start();
    let body = "name = \"Big deals\"\nunit = \"count\"\ndirection = \"higher\"\ncumulative = true\nformula = 'records(\"deals\").eq(\"stage\", \"won\").gt(\"amount\", 100000.0).in_period(\"closed_at\").count()'\n";
    let r = s.admin("PUT", "/api/kpis/big_deals", body);
    r.expect(200);
    assert_eq!(r.json["file"], "kpis/custom.toml");
    let text = s.read("kpis/custom.toml");
    assert!(text.starts_with("# KPIs added through the admin API"));
    assert!(text.contains("[kpi.big_deals]"));
    assert_eq!(s.json("/api/kpis/big_deals")["file"], "kpis/custom.toml");
    assert!(s.value("big_deals", "hq", "2026-Q2").is_number());
    // A second one goes into the same file, after the first.
    let r = s.admin(
        "PUT",
        "/api/kpis/tiny",
        "name = \"Tiny\"\nunit = \"count\"\ndirection = \"lower\"\nformula = \"1.0\"\n",
    );
    r.expect(200);
    let text2 = s.read("kpis/custom.toml");
    assert!(text2.starts_with(&text));
}

#[test]
fn put_weights_edits_one_weight_set() {
    let s = Server::start();
    let before = s.read("kpis/scorecards.toml");
    let r = s.admin(
        "PUT",
        "/api/scorecards/sales/weights/2026-Q2",
        r#"{"win_rate": 30, "revenue": 70}"#,
    );
    r.expect(200);
    assert_eq!(r.json["file"], "kpis/scorecards.toml");
    let after = s.read("kpis/scorecards.toml");
    let start = before.find("[scorecard.service]").unwrap();
    assert!(
        after.ends_with(&before[start..]),
        "the other scorecards are untouched"
    );
    assert!(after.contains("\"2026-Q2\" = { win_rate = 30, revenue = 70 }"));
    let card = s.json(&format!(
        "/api/scorecards/sales?period=2026-Q2&as_of={AS_OF}"
    ));
    let kpis: Vec<&str> = card["teams"][0]["kpis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kpi"].as_str().unwrap())
        .collect();
    assert_eq!(kpis, ["win_rate", "revenue"]);
    // Replacing an existing set keeps its trailing comment.
    s.admin(
        "PUT",
        "/api/scorecards/sales/weights/Q4",
        r#"{"revenue": 1}"#,
    )
    .expect(200);
    let text = s.read("kpis/scorecards.toml");
    let q4 = text
        .lines()
        .find(|l| l.starts_with("\"Q4\" = { revenue = 1 }"))
        .unwrap();
    assert_eq!(q4, "\"Q4\" = { revenue = 1 }");

    s.admin(
        "PUT",
        "/api/scorecards/sale/weights/default",
        r#"{"revenue": 1}"#,
    )
    .expect(404);
    s.admin(
        "PUT",
        "/api/scorecards/sales/weights/Q5",
        r#"{"revenue": 1}"#,
    )
    .expect(400);
    s.admin(
        "PUT",
        "/api/scorecards/sales/weights/default",
        r#"{"revenue": "a lot"}"#,
    )
    .expect(400);
    s.admin("PUT", "/api/scorecards/sales/weights/default", r#"[1, 2]"#)
        .expect(400);
    s.admin("PUT", "/api/scorecards/sales/weights/default", "{")
        .expect(400);
    let r = s.admin(
        "PUT",
        "/api/scorecards/sales/weights/default",
        r#"{"revenu": 1}"#,
    );
    r.expect(422);
    assert!(
        r.json["details"]
            .to_string()
            .contains("did you mean 'revenue'")
    );
}

#[test]
fn put_target_edits_targets_toml() {
    let s = Server::start();
    let before = s.read("kpis/targets.toml");
    let r = s.admin(
        "PUT",
        "/api/targets/win_rate",
        r#"{"team": "shanghai", "key": "2026-Q2", "target": 0.9}"#,
    );
    r.expect(200);
    assert_eq!(r.json["file"], "kpis/targets.toml");
    let v = s.json("/api/values?kpi=win_rate&team=shanghai&period=2026-Q2");
    assert_eq!(v["target"], 0.9);
    let after = s.read("kpis/targets.toml");
    let diff: Vec<&str> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .collect();
    assert!(
        diff.iter()
            .all(|l| l.contains("0.9") || l.contains("teams.shanghai")),
        "only the new target was added: {diff:?}"
    );
    // For every team, with a threshold and a stretch.
    s.admin(
        "PUT",
        "/api/targets/win_rate",
        r#"{"team": null, "key": "default", "target": 0.4, "threshold": 0.3, "stretch": 0.5}"#,
    )
    .expect(200);
    assert!(
        s.read("kpis/targets.toml")
            .contains("default = { target = 0.4, threshold = 0.3, stretch = 0.5 }")
    );

    s.admin(
        "PUT",
        "/api/targets/win_rat",
        r#"{"key": "default", "target": 1}"#,
    )
    .expect(404);
    let r = s.admin(
        "PUT",
        "/api/targets/win_rate",
        r#"{"team": "shangai", "key": "default", "target": 1}"#,
    );
    r.expect(404);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("did you mean 'shanghai'")
    );
    s.admin(
        "PUT",
        "/api/targets/win_rate",
        r#"{"key": "someday", "target": 1}"#,
    )
    .expect(400);
    s.admin("PUT", "/api/targets/win_rate", r#"{"key": "default"}"#)
        .expect(400);
    s.admin(
        "PUT",
        "/api/targets/win_rate",
        r#"{"key": "default", "target": "high"}"#,
    )
    .expect(400);
    s.admin(
        "PUT",
        "/api/targets/win_rate",
        r#"{"key": "default", "target": 1, "colour": "red"}"#,
    )
    .expect(400);
    // A `lower` KPI with a target of 0 and no threshold does not check.
    let current = s.read("kpis/targets.toml");
    let r = s.admin(
        "PUT",
        "/api/targets/cac",
        r#"{"key": "default", "target": 0}"#,
    );
    r.expect(422);
    assert!(r.json["details"].to_string().contains("kpis/targets.toml:"));
    assert_eq!(s.read("kpis/targets.toml"), current);
}

#[test]
fn preview_compares_scores_and_writes_nothing() {
    let s = Server::start();
    let files = ["kpis/scorecards.toml", "kpis/targets.toml"].map(|f| s.read(f));
    let body = json!({
        "scorecard": "sales", "period": "2026-Q2", "as_of": AS_OF,
        "weights": {"revenue": 50, "win_rate": 50},
        "targets": {"win_rate": 0.2}
    });
    let r = s.request(
        "POST",
        "/api/preview",
        None,
        &[],
        Some(body.to_string().as_bytes()),
    );
    r.expect(200);
    let teams = r.json["teams"].as_array().unwrap();
    assert!(teams.len() >= 6);
    for t in teams {
        assert!(t["current"]["rank"].is_number() && t["proposed"]["rank"].is_number());
        let change =
            t["current"]["rank"].as_i64().unwrap() - t["proposed"]["rank"].as_i64().unwrap();
        assert_eq!(t["rank_change"], change);
    }
    let current = s.json(&format!(
        "/api/scorecards/sales?period=2026-Q2&as_of={AS_OF}"
    ));
    assert_eq!(r.json["current"], current);
    let proposed_kpis = r.json["proposed"]["teams"][0]["kpis"].as_array().unwrap();
    assert_eq!(proposed_kpis.len(), 2);
    let win = proposed_kpis
        .iter()
        .find(|k| k["kpi"] == "win_rate")
        .unwrap();
    assert_eq!(win["target"], 0.2);
    assert_eq!(
        ["kpis/scorecards.toml", "kpis/targets.toml"].map(|f| s.read(f)),
        files
    );
    assert_eq!(s.health()["config_version"], 1);

    let post = |b: Value| {
        s.request(
            "POST",
            "/api/preview",
            None,
            &[],
            Some(b.to_string().as_bytes()),
        )
    };
    post(json!({"scorecard": "sale"})).expect(404);
    post(json!({"scorecard": "sales", "period": "2026-Q9"})).expect(400);
    post(json!({"scorecard": "sales", "weights": {"revenu": 1}})).expect(422);
    post(json!({"scorecard": "sales", "weights": {"revenue": -1}})).expect(400);
    post(json!({"scorecard": "sales", "bogus": 1})).expect(400);
    post(json!({})).expect(400);
    s.request("POST", "/api/preview", None, &[], Some(b"not json"))
        .expect(400);
}

#[test]
fn ingested_records_are_served_at_once() {
    let s = Server::start();
    let revenue = |p: &str| s.value("revenue", "shanghai", p).as_f64().unwrap();
    let mut took = Vec::new();
    for i in 0..8 {
        let before = revenue("2025-Q2");
        let body = json!([{
            "id": format!("api-{i}"), "team": "shanghai", "stage": "won", "amount": 1000.0,
            "created_at": "2025-04-02", "closed_at": "2025-05-03 10:00:00"
        }]);
        let t = Instant::now();
        let r = s.admin("POST", "/api/records/deals", &body.to_string());
        r.expect(200);
        assert_eq!(r.json["written"], 1);
        let after = revenue("2025-Q2");
        took.push(t.elapsed());
        assert_eq!(
            after,
            before + 1000.0,
            "served in the first read after the POST"
        );
    }
    // NDJSON; the parent team counts the record too.
    let hq = s.value("revenue", "hq", "2025-Q3").as_f64().unwrap();
    let nd = "{\"id\": \"nd-1\", \"team\": \"hangzhou\", \"stage\": \"won\", \"amount\": 5.0, \"created_at\": \"2025-07-01\", \"closed_at\": \"2025-07-02\"}\n\
              {\"id\": \"nd-2\", \"team\": \"beijing\", \"stage\": \"won\", \"amount\": 7.0, \"created_at\": \"2025-07-01\", \"closed_at\": \"2025-07-02\"}\n";
    s.admin("POST", "/api/records/deals", nd).expect(200);
    assert_eq!(
        s.value("revenue", "hq", "2025-Q3").as_f64().unwrap(),
        hq + 12.0
    );
    // Upsert by id: the same id again replaces the record.
    let again = json!([{"id": "api-0", "team": "shanghai", "stage": "lost", "amount": 1000.0, "created_at": "2025-04-02", "closed_at": "2025-05-03"}]);
    let before = revenue("2025-Q2");
    s.admin("POST", "/api/records/deals", &again.to_string())
        .expect(200);
    assert_eq!(revenue("2025-Q2"), before - 1000.0);

    // Bad rows: 422 listing each one, nothing written.
    let bad = json!([
        {"id": "b1", "team": "shanghai", "stage": "won", "amount": "abc", "created_at": "2025-04-02"},
        {"id": "b2", "team": "atlantis", "stage": "won", "amount": 1.0, "created_at": "2025-04-02"},
        {"id": "b3", "team": "shanghai", "stage": "won", "amount": 1.0, "created_at": "2025-04-02"}
    ]);
    let before = s.health()["data_generation"].clone();
    let r = s.admin("POST", "/api/records/deals", &bad.to_string());
    r.expect(422);
    let details: Vec<String> = r.json["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("body:1: element 1: field 'amount'")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("body:1: element 2:") && d.contains("atlantis")),
        "{details:?}"
    );
    assert_eq!(details.len(), 2);
    assert_eq!(s.health()["data_generation"], before);
    assert_eq!(
        s.get("/api/values?kpi=revenue&team=shanghai&period=2025-Q2")
            .json["value"],
        json!(revenue("2025-Q2"))
    );

    s.admin("POST", "/api/records/dealz", "[]").expect(404);
    s.admin("POST", "/api/records/deals", "[{").expect(400);
    s.admin("POST", "/api/records/deals", "   ").expect(400);
    let r = s.admin("POST", "/api/records/deals", "{\"id\": 1\n");
    r.expect(422);
    let (median, max) = summary(&took);
    eprintln!("ingest → served (POST + first read): median {median} ms, max {max} ms");
}

#[test]
fn bodies_over_ten_mib_are_refused() {
    let s = Server::start();
    let big = 10 * 1024 * 1024 + 1;
    let head = format!(
        "POST /api/records/deals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {big}\r\n\r\n"
    );
    assert_eq!(s.raw_status(&head, b"["), 413);
    // Chunked, without a length: refused once the limit is passed.
    let chunk = vec![b' '; 1024 * 1024];
    let mut body = Vec::new();
    for _ in 0..11 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "PUT /api/kpis/win_rate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    assert_eq!(s.raw_status(&head, &body), 413);
    // Still serving.
    s.health();
}

#[test]
fn reload_route_and_malformed_requests() {
    let s = Server::start();
    let r = s.admin("POST", "/api/reload", "");
    r.expect(200);
    assert_eq!(r.json["changed"], false);
    assert_eq!(r.json["config_version"], 1);

    s.get("/api/nothing").expect(404);
    s.get("/api/kpis/%FF").expect(400);
    s.request("DELETE", "/api/kpis/win_rate", Some(ADMIN), &[], None)
        .expect(405);
    s.get("/api/config/history?limit=many").expect(400);
    s.get("/api/values?kpi=win_rate&team=shanghai&as_of=2026-02-30")
        .expect(400);

    // A broken file on disk: /api/reload reports it (and so does /health).
    let path = s.path("kpis/marketing.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("direction = \"higher\"", "direction = \"upwards\""),
    )
    .unwrap();
    let r = s.admin("POST", "/api/reload", "");
    r.expect(422);
    assert!(
        r.json["details"]
            .to_string()
            .contains("kpis/marketing.toml:")
    );
    assert_eq!(s.health()["status"], "degraded");
    // An API edit of another file is refused while the files on disk do not check.
    let r = s.admin(
        "PUT",
        "/api/targets/win_rate",
        r#"{"key": "default", "target": 0.3}"#,
    );
    r.expect(422);
    std::fs::write(&path, text).unwrap();
    s.wait_for("ok", Duration::from_secs(5), || {
        s.health()["status"] == "ok"
    });
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let mut s = Server::start();
    s.health();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = s.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "exit status after SIGTERM");
}
