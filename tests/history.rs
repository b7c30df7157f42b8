//! SPEC 17 end to end through the real `kpi serve` and real files: named
//! writers in the config history, file texts and diffs of a version, the diff
//! of any two versions, rollback (byte for byte, refused with nothing written
//! when the old version no longer checks), and tokens that never reach the log.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::server::{Options, Reply, Server, probe_kpi};

const ALICE: &str = "tok-alice-7f3a9c";
const BOB: &str = "tok-bob-91c2e4";
const SINGLE: &str = "tok-single-55e1d0";

fn writers() -> Options {
    Options {
        demo: false,
        env: vec![
            ("KPI_ADMIN_TOKENS", format!("alice:{ALICE},bob:{BOB}")),
            ("KPI_ADMIN_TOKEN", SINGLE.to_string()),
        ],
    }
}

/// The bytes of every file under kpis/ and scripts/, by path relative to the root.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    for d in ["kpis", "scripts"] {
        walk(root, &root.join(d), &mut out);
    }
    out
}

/// `kpi --root ROOT ARGS…` with `env`: exit code, stdout, stderr.
fn kpi(root: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .arg("--root")
        .arg(root)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn put(s: &Server, token: &str, path: &str, body: &str) -> Reply {
    let r = s.request("PUT", path, Some(token), &[], Some(body.as_bytes()));
    r.expect(200);
    r
}

/// `PUT /api/targets/win_rate` of the default key by the writer of `token`.
fn set_win_rate(s: &Server, token: &str, target: f64) -> Reply {
    put(
        s,
        token,
        "/api/targets/win_rate",
        &json!({"key": "default", "target": target}).to_string(),
    )
}

fn history(s: &Server) -> Vec<Value> {
    s.json("/api/config/history").as_array().unwrap().clone()
}

fn last(s: &Server) -> Value {
    history(s).last().unwrap().clone()
}

fn version(row: &Value) -> u64 {
    row["version"].as_u64().unwrap()
}

/// Waits until the newest history row is newer than `after`, has `actor` and changed `path`.
fn wait_for_row(s: &Server, after: u64, actor: &str, path: &str) -> Value {
    s.wait_for(
        &format!("a version by {actor} changing {path}"),
        Duration::from_secs(10),
        || {
            let l = last(s);
            version(&l) > after
                && l["actor"] == actor
                && l["files_changed"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(path))
        },
    );
    last(s)
}

/// Path → text of a version's `files`.
fn files_of(version: &Value) -> BTreeMap<String, String> {
    version["files"]
        .as_array()
        .unwrap_or_else(|| panic!("no files: {version}"))
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Applies a unified diff to `old` (what `patch` does), to check that a diff
/// says exactly the change that was made.
fn apply(old: &str, diff: &str) -> String {
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let mut out = String::new();
    let mut at = 0;
    let mut in_hunk = false;
    let mut last_kept = false;
    for line in diff.split_inclusive('\n') {
        if !in_hunk && (line.starts_with("---") || line.starts_with("+++")) {
            continue;
        }
        if let Some(head) = line.strip_prefix("@@ -") {
            in_hunk = true;
            let range = head.split(' ').next().unwrap();
            let (start, count) = match range.split_once(',') {
                Some((s, c)) => (s.parse::<usize>().unwrap(), c.parse::<usize>().unwrap()),
                None => (range.parse().unwrap(), 1),
            };
            let upto = if count == 0 { start } else { start - 1 };
            out.extend(old_lines[at..upto].iter().copied());
            at = upto;
        } else if let Some(t) = line.strip_prefix(' ') {
            out.push_str(t);
            at += 1;
            last_kept = true;
        } else if line.starts_with('-') {
            at += 1;
            last_kept = false;
        } else if let Some(t) = line.strip_prefix('+') {
            out.push_str(t);
            last_kept = true;
        } else if line.starts_with('\\') && last_kept {
            out.pop();
        }
    }
    out.extend(old_lines[at..].iter().copied());
    out
}

#[test]
fn two_writers_and_an_edit_on_disk_are_named_with_each_version_s_files_and_diff() {
    let s = Server::start_with(writers());
    assert_eq!(
        history(&s)[0]["actor"],
        "file",
        "the files found at start-up"
    );
    let before = s.read("kpis/targets.toml");
    let alice = set_win_rate(&s, ALICE, 0.31);
    let v_alice = alice.json["config_version"].as_u64().unwrap();
    let after = s.read("kpis/targets.toml");
    let on_disk = tree(s.dir.path());
    let bob = put(&s, BOB, "/api/kpis/probe", &probe_kpi("probe", "1.0"));
    let bob_file = bob.json["file"].as_str().unwrap().to_string();
    let v_bob = bob.json["config_version"].as_u64().unwrap();
    fs::write(s.path("kpis/disk.toml"), probe_kpi("disk", "2.0")).unwrap();
    wait_for_row(&s, v_bob, "file", "kpis/disk.toml");
    set_win_rate(&s, SINGLE, 0.32);

    let rows = history(&s);
    let tail = &rows[rows.len() - 4..];
    let who: Vec<(&str, &str)> = tail
        .iter()
        .map(|r| (r["actor"].as_str().unwrap(), r["origin"].as_str().unwrap()))
        .collect();
    assert_eq!(
        who,
        [
            ("alice", "api"),
            ("bob", "api"),
            ("file", "file"),
            ("admin", "api")
        ]
    );
    assert_eq!(tail[1]["files_changed"], json!([bob_file]));

    // Alice's version: every file as it was on disk then, and the diff of her edit.
    let v = s.json(&format!("/api/config/history/{v_alice}"));
    assert_eq!(
        (v["version"].as_u64(), v["actor"].as_str()),
        (Some(v_alice), Some("alice"))
    );
    assert_eq!(v["previous"], v_alice - 1);
    let files = files_of(&v);
    let config_files: BTreeMap<String, String> = on_disk
        .into_iter()
        .filter(|(p, _)| !p.starts_with("kpis/tests/"))
        .map(|(p, b)| (p, String::from_utf8(b).unwrap()))
        .collect();
    assert_eq!(
        files, config_files,
        "every file of the version, byte for byte"
    );
    assert_eq!(v["files_changed"], json!(["kpis/targets.toml"]));
    let diffs = v["diffs"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{v}");
    assert_eq!(diffs[0]["path"], "kpis/targets.toml");
    assert_eq!(diffs[0]["change"], "changed");
    let diff = diffs[0]["diff"].as_str().unwrap();
    assert!(
        diff.starts_with("--- a/kpis/targets.toml\n+++ b/kpis/targets.toml\n@@ "),
        "{diff}"
    );
    assert_ne!(before, after);
    assert_eq!(apply(&before, diff), after, "the diff is the edit:\n{diff}");
    let targets = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "kpis/targets.toml")
        .unwrap();
    assert_eq!(targets["diff"], diffs[0]["diff"]);
    let unchanged = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "kpis/schema.toml");
    assert_eq!(unchanged.unwrap()["diff"], Value::Null);

    // The first version diffs against nothing: every file is added.
    let first = s.json("/api/config/history/1");
    assert_eq!(first["previous"], Value::Null);
    let added = first["diffs"].as_array().unwrap();
    assert_eq!(added.len(), files_of(&first).len());
    assert!(added.iter().all(|d| d["change"] == "added"));
}

#[test]
fn any_two_versions_diff_and_a_rollback_restores_every_file_byte_for_byte() {
    let s = Server::start_with(writers());
    let original = tree(s.dir.path());
    set_win_rate(&s, ALICE, 0.31);
    let bob = put(&s, BOB, "/api/kpis/probe", &probe_kpi("probe", "1.0"));
    let bob_file = bob.json["file"].as_str().unwrap().to_string();
    let v_bob = bob.json["config_version"].as_u64().unwrap();
    fs::write(s.path("scripts/extra.rhai"), "fn extra() { 1 }\n").unwrap();
    let v_script = version(&wait_for_row(&s, v_bob, "file", "scripts/extra.rhai"));
    fs::write(s.path("kpis/disk.toml"), probe_kpi("disk", "2.0")).unwrap();
    let newest = version(&wait_for_row(&s, v_script, "file", "kpis/disk.toml"));
    assert!(newest >= 5, "{:?}", history(&s));

    // 1 → newest: every file that differs, each diff taking the old text to the new.
    let d = s.json(&format!("/api/config/diff?from=1&to={newest}"));
    let mut expected = vec![
        "kpis/disk.toml".to_string(),
        "kpis/targets.toml".to_string(),
        "scripts/extra.rhai".to_string(),
        bob_file.clone(),
    ];
    expected.sort();
    assert_eq!(d["files_changed"], json!(expected));
    let (old, new) = (
        files_of(&s.json("/api/config/history/1")),
        files_of(&s.json(&format!("/api/config/history/{newest}"))),
    );
    for f in d["diffs"].as_array().unwrap() {
        let path = f["path"].as_str().unwrap();
        let from = old.get(path).map_or("", String::as_str);
        assert_eq!(
            apply(from, f["diff"].as_str().unwrap()),
            new[path],
            "{path}"
        );
        let change = if old.contains_key(path) {
            "changed"
        } else {
            "added"
        };
        assert_eq!(f["change"], change, "{path}");
    }
    assert!(
        d["patch"]
            .as_str()
            .unwrap()
            .contains("+++ b/scripts/extra.rhai")
    );
    // Backwards, the added files are removed.
    let back = s.json(&format!("/api/config/diff?from={newest}&to=1"));
    let removed = back["diffs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "kpis/disk.toml");
    assert_eq!(removed.unwrap()["change"], "removed");
    // Two neighbours: only bob's file.
    assert_eq!(
        s.json("/api/config/diff?from=2&to=3")["files_changed"],
        json!([bob_file])
    );

    // Bob rolls back to the files found at start-up.
    let r = s.request("POST", "/api/config/rollback/1", Some(BOB), &[], None);
    r.expect(200);
    assert_eq!(r.json["config_version"], newest + 1);
    assert_eq!(r.json["changed"], true);
    assert_eq!(r.json["rolled_back_to"], 1);
    assert_eq!(
        tree(s.dir.path()),
        original,
        "every file as it was, the added ones gone"
    );
    let row = last(&s);
    assert_eq!(
        (
            row["version"].as_u64(),
            row["origin"].as_str(),
            row["actor"].as_str()
        ),
        (Some(newest + 1), Some("rollback"), Some("bob"))
    );
    let same = s.json(&format!("/api/config/diff?from=1&to={}", newest + 1));
    assert_eq!(same["diffs"], json!([]));
    assert_eq!(s.health()["config_version"], newest + 1);
    s.get("/api/kpis/probe").expect(404);
    s.get("/api/kpis/disk").expect(404);
    // Forward again to the newest version: a rollback goes to any version.
    s.request(
        "POST",
        &format!("/api/config/rollback/{newest}"),
        Some(ALICE),
        &[],
        None,
    )
    .expect(200);
    assert_eq!(s.read("scripts/extra.rhai"), "fn extra() { 1 }\n");
    assert_eq!(s.json("/api/kpis/disk")["id"], "disk");

    // The command line reads the same history from the database.
    let root = s.stop();
    let kpi = |args: &[&str]| kpi(root.path(), args, &[]);
    let (code, list, _) = kpi(&["history"]);
    assert_eq!(code, Some(0));
    let rollback_line = list
        .lines()
        .find(|l| l.starts_with(&format!("{} ", newest + 1)))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        rollback_line.contains("rollback") && rollback_line.contains("bob"),
        "{list}"
    );
    let (_, one, _) = kpi(&["history", &(newest + 1).to_string()]);
    assert!(one.contains("origin rollback  actor bob"), "{one}");
    let (_, patch, _) = kpi(&["diff", "1", &newest.to_string()]);
    assert_eq!(patch, d["patch"].as_str().unwrap());
    let (code, _, err) = kpi(&["diff", "1", "999"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown config version '999'"), "{err}");
}

#[test]
fn a_rollback_to_a_version_the_database_no_longer_takes_is_422_and_writes_nothing() {
    let s = Server::start_with(writers());
    // Version 2 adds an entity, and records are written into it.
    let mut schema = s.read("kpis/schema.toml");
    schema.push_str(
        "\n[entity.visits]\nteam_field = \"team\"\n[entity.visits.fields]\nid = \"text\"\nteam = \"text\"\nat = \"time\"\n",
    );
    fs::write(s.path("kpis/schema.toml"), schema).unwrap();
    let v2 = version(&wait_for_row(&s, 1, "file", "kpis/schema.toml"));
    let teams = br#"[{"id": "hq", "name": "HQ"}]"#;
    s.request("POST", "/api/records/teams", Some(ALICE), &[], Some(teams))
        .expect(200);
    let visits = br#"[{"id": "v1", "team": "hq", "at": "2026-01-05"}]"#;
    s.request(
        "POST",
        "/api/records/visits",
        Some(ALICE),
        &[],
        Some(visits),
    )
    .expect(200);

    // Version 1 has no visits: the database refuses to drop an entity holding records.
    let before = tree(s.dir.path());
    let r = s.request("POST", "/api/config/rollback/1", Some(BOB), &[], None);
    r.expect(422);
    assert!(
        r.json["error"].as_str().unwrap().contains("version 1"),
        "{}",
        r.text
    );
    assert!(r.text.contains("visits"), "{}", r.text);
    assert_eq!(tree(s.dir.path()), before, "no file changed");
    assert_eq!(last(&s)["version"], v2, "no version recorded");
    assert_eq!(s.health()["config_version"], v2);
    assert_eq!(s.health()["status"], "ok");
}

#[test]
fn history_routes_refuse_bad_versions_and_rollback_needs_an_admin_token() {
    let s = Server::start_with(writers());
    for path in ["/api/config/history/999", "/api/config/diff?from=1&to=999"] {
        let r = s.get(path);
        r.expect(404);
        assert!(
            r.json["error"].as_str().unwrap().contains("999"),
            "{}",
            r.text
        );
    }
    for path in [
        "/api/config/history/abc",
        "/api/config/history/-1",
        "/api/config/diff?from=1",
        "/api/config/diff?from=x&to=1",
        "/api/config/diff",
    ] {
        s.get(path).expect(400);
    }
    let rollback = |token: Option<&str>, v: &str| {
        s.request(
            "POST",
            &format!("/api/config/rollback/{v}"),
            token,
            &[],
            None,
        )
    };
    rollback(Some(BOB), "999").expect(404);
    rollback(Some(BOB), "one").expect(400);
    rollback(None, "1").expect(401);
    rollback(Some("tok-nobody"), "1").expect(401);
    assert_eq!(history(&s).len(), 1, "nothing was rolled back");

    let closed = Server::start_with(Options {
        demo: false,
        env: vec![],
    });
    let r = closed.request("POST", "/api/config/rollback/1", Some(BOB), &[], None);
    r.expect(403);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("KPI_ADMIN_TOKENS")
    );
}

#[test]
fn tokens_never_reach_the_log_or_an_answer() {
    let s = Server::start_with(Options {
        demo: false,
        env: vec![
            ("KPI_ADMIN_TOKENS", format!("alice:{ALICE},bob:{BOB}")),
            ("KPI_ADMIN_TOKEN", SINGLE.to_string()),
            ("RUST_LOG", "debug".to_string()),
        ],
    });
    let mut answers = String::new();
    for token in [ALICE, BOB, SINGLE, "tok-wrong-0000"] {
        let r = s.request(
            "PUT",
            "/api/targets/win_rate",
            Some(token),
            &[],
            Some(br#"{"key": "default", "target": 0.33}"#),
        );
        answers.push_str(&r.text);
        let r = s.request("POST", "/api/config/rollback/1", Some(token), &[], None);
        answers.push_str(&r.text);
        let r = s.request("POST", "/api/reload", Some(token), &[], None);
        answers.push_str(&r.text);
    }
    answers.push_str(&s.get("/api/config/history").text);
    answers.push_str(&s.get("/health").text);
    let log = s.log();
    assert!(log.contains("writers: admin, alice, bob"), "{log}");
    for token in [ALICE, BOB, SINGLE, "tok-wrong-0000"] {
        assert!(!log.contains(token), "the log holds a token:\n{log}");
        assert!(
            !answers.contains(token),
            "an answer holds a token:\n{answers}"
        );
    }
}

#[test]
fn a_malformed_token_variable_stops_the_start_naming_the_variable_not_the_token() {
    let root = crate::util::server::root();
    for (var, value, expected) in [
        (
            "KPI_ADMIN_TOKENS",
            "alice:tok-dup-1234,bob:tok-dup-1234",
            "KPI_ADMIN_TOKENS: entry 2 (bob) repeats the token of KPI_ADMIN_TOKENS entry 1 (alice)",
        ),
        (
            "KPI_ADMIN_TOKENS",
            "tok-dup-1234",
            "KPI_ADMIN_TOKENS: entry 1 is not NAME:TOKEN",
        ),
        ("KPI_ADMIN_TOKENS", "file:tok-dup-1234", "reserved"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kpi"))
            .arg("--root")
            .arg(root.path())
            .args(["serve", "--addr", "127.0.0.1:0"])
            .env_remove("KPI_ADMIN_TOKEN")
            .env_remove("KPI_READ_TOKEN")
            .env(var, value)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("tok-dup-1234"), "{stderr}");
        assert!(out.stdout.is_empty(), "it never listened");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("KPI_ADMIN_TOKENS") && help.contains("alice:TOKEN1,bob:TOKEN2"),
        "{help}"
    );
}

#[test]
fn a_history_of_an_older_server_is_migrated_in_place_and_its_rows_still_list() {
    // The table as servers before SPEC 17 made it, with one row and no file texts.
    let root = crate::util::server::root();
    let conn = rusqlite::Connection::open(root.path().join("crm.db")).unwrap();
    conn.execute_batch(kpi_engine::store::config_history::TABLE_BEFORE_SPEC_17)
        .unwrap();
    conn.execute(
        "INSERT INTO _kpi_config_history VALUES
            (1, '2026-11-01T00:00:00Z', 'api', '[\"kpis/targets.toml\"]', 'feedfacecafebeef',
             '{\"kpis/targets.toml\": \"0000000000000000\"}')",
        [],
    )
    .unwrap();
    drop(conn);
    let s = Server::start_in(root, writers());
    let rows = history(&s);
    assert_eq!(rows.len(), 2, "the old row and the start-up version");
    assert_eq!(rows[0]["actor"], Value::Null);
    assert_eq!(rows[0]["files_changed"], json!(["kpis/targets.toml"]));
    assert_eq!(rows[1]["actor"], "file");
    let old = s.json("/api/config/history/1");
    assert_eq!(
        (old["files"].clone(), old["diffs"].clone()),
        (Value::Null, Value::Null)
    );
    let new = s.json("/api/config/history/2");
    assert!(!files_of(&new).is_empty());
    assert_eq!(
        new["diffs"],
        Value::Null,
        "the version before has no texts to diff against"
    );
    let before = tree(s.dir.path());
    let r = s.request("POST", "/api/config/rollback/1", Some(ALICE), &[], None);
    r.expect(422);
    assert!(
        r.json["error"]
            .as_str()
            .unwrap()
            .contains("before the history kept file contents")
    );
    s.get("/api/config/diff?from=1&to=2").expect(422);
    assert_eq!(tree(s.dir.path()), before);
    // New versions record everything.
    set_win_rate(&s, BOB, 0.3);
    let third = s.json("/api/config/history/3");
    assert_eq!(third["actor"], "bob");
    assert_eq!(third["diffs"].as_array().unwrap().len(), 1);
}

#[test]
fn kpi_rollback_beside_a_running_server_is_one_version_by_the_user() {
    let s = Server::start_with(writers());
    let original = tree(s.dir.path());
    set_win_rate(&s, ALICE, 0.3);
    assert_ne!(tree(s.dir.path()), original);
    let (code, stdout, stderr) = kpi(s.dir.path(), &["rollback", "1"], &[("USER", "carol")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("rolled back to the files of version 1: version 3"),
        "{stdout}"
    );
    assert_eq!(tree(s.dir.path()), original);
    // The server sees the files on disk and serves them as version 3, recorded once.
    s.wait_for(
        "the server to serve version 3",
        Duration::from_secs(10),
        || s.health()["config_version"] == 3,
    );
    let rows = history(&s);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        (rows[2]["origin"].as_str(), rows[2]["actor"].as_str()),
        (Some("rollback"), Some("cli:carol"))
    );
    let (code, _, stderr) = kpi(s.dir.path(), &["rollback", "42"], &[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown config version '42'"), "{stderr}");
}
