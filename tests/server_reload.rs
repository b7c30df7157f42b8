//! Hot reload end to end: every way an editor saves a file changes what the
//! running server serves, and a broken save changes nothing but /health.

use crate::util::server as server_common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use serde_json::json;
use server_common::{Server, probe_kpi, summary};

const P: &str = "2026-Q1";

fn version(s: &Server) -> u64 {
    s.health()["config_version"].as_u64().unwrap()
}

#[test]
fn every_save_pattern_changes_the_served_values() {
    let s = Server::start();
    let probe = s.path("kpis/probe.toml");
    let mut took = Vec::new();

    // A new KPI file.
    fs::write(&probe, probe_kpi("probe", "1.0")).unwrap();
    took.push(s.wait_value("probe", "hq", P, json!(1.0)));

    // Write in place: same file, no truncation, same length.
    let mut f = OpenOptions::new().write(true).open(&probe).unwrap();
    f.write_all(probe_kpi("probe", "2.0").as_bytes()).unwrap();
    drop(f);
    took.push(s.wait_value("probe", "hq", P, json!(2.0)));

    // Truncate, then write a moment later (the empty file may be seen in between).
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&probe)
        .unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(30));
    f.write_all(probe_kpi("probe", "3.0").as_bytes()).unwrap();
    drop(f);
    took.push(s.wait_value("probe", "hq", P, json!(3.0)));

    // Vim: a swap file, the 4913 probe, a temporary file renamed over the original.
    fs::write(s.path("kpis/.probe.toml.swp"), "swap").unwrap();
    fs::write(s.path("kpis/4913"), "").unwrap();
    fs::remove_file(s.path("kpis/4913")).unwrap();
    let tmp = s.path("kpis/probe.toml.tmp");
    fs::write(&tmp, probe_kpi("probe", "4.0")).unwrap();
    fs::rename(&tmp, &probe).unwrap();
    took.push(s.wait_value("probe", "hq", P, json!(4.0)));
    fs::remove_file(s.path("kpis/.probe.toml.swp")).unwrap();

    // Delete, then create again.
    fs::remove_file(&probe).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    fs::write(&probe, probe_kpi("probe", "5.0")).unwrap();
    took.push(s.wait_value("probe", "hq", P, json!(5.0)));

    // A new script in a new sub-folder of scripts/ (watched recursively), then a KPI using it.
    fs::create_dir(s.path("scripts/extra")).unwrap();
    fs::write(s.path("scripts/extra/twice.rhai"), "params.x * 2.0\n").unwrap();
    fs::write(
        s.path("kpis/scripted.toml"),
        "[kpi.scripted]\nname = \"Scripted\"\nunit = \"count\"\ndirection = \"higher\"\nscript = \"extra/twice.rhai\"\nparams = { x = 21 }\n",
    )
    .unwrap();
    took.push(s.wait_value("scripted", "hq", P, json!(42.0)));

    // The script edited in place.
    fs::write(s.path("scripts/extra/twice.rhai"), "params.x * 3.0\n").unwrap();
    took.push(s.wait_value("scripted", "hq", P, json!(63.0)));

    // A deleted file: its KPI is gone.
    fs::remove_file(s.path("kpis/scripted.toml")).unwrap();
    s.wait_for("scripted to disappear", Duration::from_secs(5), || {
        s.get("/api/kpis/scripted").status == 404
    });

    // kpis/ replaced as a whole folder (a checkout, a deploy): the watch follows the new folder.
    let staged = s.path("kpis.new");
    fs::create_dir(&staged).unwrap();
    for e in fs::read_dir(s.path("kpis")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), staged.join(e.file_name())).unwrap();
        }
    }
    fs::write(staged.join("probe.toml"), probe_kpi("probe", "6.0")).unwrap();
    fs::rename(s.path("kpis"), s.path("kpis.old")).unwrap();
    fs::rename(&staged, s.path("kpis")).unwrap();
    took.push(s.wait_value("probe", "hq", P, json!(6.0)));
    fs::write(&probe, probe_kpi("probe", "7.0")).unwrap();
    took.push(s.wait_value("probe", "hq", P, json!(7.0)));

    // Every applied configuration is in the history, from the files.
    let history = s.json("/api/config/history");
    let rows = history.as_array().unwrap();
    assert!(rows.len() >= 10, "{history}");
    let versions: Vec<u64> = rows
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "{versions:?}"
    );
    let last = rows.last().unwrap();
    assert_eq!(last["origin"], "file");
    assert_eq!(last["files_changed"], json!(["kpis/probe.toml"]));
    assert_eq!(s.health()["status"], "ok");
    let (median, max) = summary(&took);
    eprintln!(
        "save → served: median {median} ms, max {max} ms over {} saves",
        took.len()
    );
}

#[test]
fn a_broken_save_keeps_the_old_values_and_degrades_health_until_fixed() {
    let s = Server::start();
    let probe = s.path("kpis/probe.toml");
    fs::write(&probe, probe_kpi("probe", "1.0")).unwrap();
    s.wait_value("probe", "hq", P, json!(1.0));
    let v = version(&s);

    // Broken TOML.
    fs::write(&probe, "[kpi.probe\nname = \"x\"\n").unwrap();
    s.wait_for("degraded", Duration::from_secs(5), || {
        s.health()["status"] == "degraded"
    });
    let h = s.health();
    assert_eq!(h["config_version"], v, "nothing new was applied");
    let errors = h["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("kpis/probe.toml:1:")),
        "errors name file:line:col: {h}"
    );
    assert_eq!(
        s.value("probe", "hq", P),
        json!(1.0),
        "the old value is still served"
    );
    let page = s.get("/").text;
    assert!(
        page.contains("class=\"banner\""),
        "the dashboard shows the banner"
    );
    assert!(page.contains("kpis/probe.toml:1:"));
    assert!(
        s.log().contains("kpis/probe.toml:1:"),
        "the log names the error"
    );

    // A Rhai syntax error is just as harmless.
    fs::write(&probe, probe_kpi("probe", "1.0 +")).unwrap();
    s.wait_for("the Rhai error", Duration::from_secs(5), || {
        s.health()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("kpis/probe.toml:6:"))
    });
    assert_eq!(s.value("probe", "hq", P), json!(1.0));

    // The fix recovers.
    fs::write(&probe, probe_kpi("probe", "8.0")).unwrap();
    s.wait_value("probe", "hq", P, json!(8.0));
    let h = s.health();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["errors"], json!([]));
    assert_eq!(h["config_version"], v + 1);
    assert!(!s.get("/").text.contains("class=\"banner\""));
}

#[test]
fn reverting_a_broken_save_recovers_without_a_new_version() {
    let s = Server::start();
    let v = version(&s);
    let path = s.path("kpis/sales.toml");
    let original = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{original}\n[kpi.broken]\n")).unwrap();
    s.wait_for("degraded", Duration::from_secs(5), || {
        s.health()["status"] == "degraded"
    });
    fs::write(&path, &original).unwrap();
    s.wait_for("ok again", Duration::from_secs(5), || {
        s.health()["status"] == "ok"
    });
    assert_eq!(
        version(&s),
        v,
        "the same configuration is not a new version"
    );
}

#[test]
fn editor_droppings_do_not_reload() {
    let s = Server::start();
    let v = version(&s);
    for name in [
        "kpis/.sales.toml.swp",
        "kpis/sales.toml~",
        "kpis/.#sales.toml",
        "kpis/4913",
        "kpis/notes.txt",
        "kpis/tests/new_case.toml",
    ] {
        fs::write(s.path(name), "not toml [").unwrap();
    }
    std::thread::sleep(Duration::from_millis(600));
    let h = s.health();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["config_version"], v);
    assert_eq!(s.json("/api/config/history").as_array().unwrap().len(), 1);
}

#[test]
fn schema_additions_are_applied_to_the_database_on_reload() {
    let s = Server::start();
    let v = version(&s);
    let schema = s.path("kpis/schema.toml");
    let text = fs::read_to_string(&schema).unwrap();
    let edited = text.replacen(
        "[entity.deals.fields]\n",
        "[entity.deals.fields]\nnote = \"text?\"\n",
        1,
    );
    assert_ne!(text, edited, "the schema has [entity.deals.fields]");
    fs::write(&schema, edited).unwrap();
    s.wait_for("the new schema", Duration::from_secs(5), || {
        version(&s) == v + 1
    });
    let body = r#"[{"id": "n1", "team": "shanghai", "stage": "won", "amount": 1.0, "created_at": "2026-01-02", "closed_at": "2026-01-03", "note": "new field"}]"#;
    s.admin("POST", "/api/records/deals", body).expect(200);
    let history = s.json("/api/config/history");
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["files_changed"],
        json!(["kpis/schema.toml"])
    );
}

#[test]
fn a_restart_keeps_the_history_and_the_version() {
    let s = Server::start();
    fs::write(s.path("kpis/probe.toml"), probe_kpi("probe", "1.0")).unwrap();
    s.wait_value("probe", "hq", P, json!(1.0));
    let v = version(&s);
    let dir = s.stop();
    let s = Server::start_in(dir, server_common::Options::default());
    assert_eq!(version(&s), v, "same files, same version after a restart");
    fs::write(s.path("kpis/probe.toml"), probe_kpi("probe", "2.0")).unwrap();
    s.wait_value("probe", "hq", P, json!(2.0));
    assert_eq!(version(&s), v + 1);
}

#[test]
fn a_refused_schema_change_keeps_serving_the_old_configuration() {
    let s = Server::start();
    // The shipped mappings name customers.owner: without them the TOML alone checks.
    let v0 = version(&s);
    fs::remove_dir_all(s.path("kpis/mappings")).unwrap();
    s.wait_for("the mappings are gone", Duration::from_secs(5), || {
        version(&s) > v0
    });
    let v = version(&s);
    let schema = s.path("kpis/schema.toml");
    let text = fs::read_to_string(&schema).unwrap();
    // customers.owner holds data and no formula reads it: removing it (and the owner link
    // through it) is refused by the database (the TOML alone checks).
    let edited = text.replacen("owner_field = \"owner\"\n", "", 1).replacen(
        "owner      = \"text?\"\n",
        "",
        1,
    );
    assert_ne!(edited, text, "schema.toml lists customers.owner");
    fs::write(&schema, edited).unwrap();
    s.wait_for("degraded", Duration::from_secs(5), || {
        s.health()["status"] == "degraded"
    });
    let h = s.health();
    assert!(h["errors"].to_string().contains("refused"), "{h}");
    assert_eq!(h["config_version"], v);
    fs::write(&schema, text).unwrap();
    s.wait_for("ok", Duration::from_secs(5), || {
        s.health()["status"] == "ok"
    });
}
