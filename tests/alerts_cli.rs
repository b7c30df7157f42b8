//! `kpi alerts [--as-of T] [--send]` end to end: the real binary against a
//! temp root and a webhook receiver on 127.0.0.1.

use crate::util::alerts as alerts_common;

use std::process::{Command, Stdio};

use alerts_common::{Answer, Receiver, Root, TARGETS, alerts_toml};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn kpi(root: &Root, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_kpi"))
        .arg("--root")
        .arg(root.path())
        .args(args)
        .env_remove("KPI_DB")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run kpi");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn ok(r: Run) -> String {
    assert_eq!(r.code, 0, "stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    r.stdout
}

#[test]
fn evaluates_prints_and_sends_once() {
    let rx = Receiver::start(&[Answer::Status(500)]);
    let root = Root::new(TARGETS, &alerts_toml(&rx.url, ""));
    let cfg = root.load();
    root.seed(&cfg);

    // --as-of without --send or --record is a dry run: printed, nothing written.
    for _ in 0..2 {
        let out = ok(kpi(&root, &["alerts", "--as-of", "2026-08-15T00:00:00Z"]));
        assert!(out.starts_with("dry run: nothing is written"), "{out}");
        assert!(out.contains("1 transition(s)"), "{out}");
        assert!(
            out.contains("at_risk:revenue:north:2026-Q3 -> firing"),
            "{out}"
        );
    }
    let conn = kpi_engine::store::db::open(&root.db_path()).unwrap();
    assert!(kpi_engine::alerts::list(&conn, None).unwrap().is_empty());
    drop(conn);

    // With --record: the alert is stored and printed, the notification waits.
    let out = ok(kpi(
        &root,
        &["alerts", "--as-of", "2026-08-15T00:00:00Z", "--record"],
    ));
    assert!(
        out.contains("2026-Q3 open (at_risk), 2026-Q2 closed last (missed); 1 transition(s)"),
        "{out}"
    );
    assert!(
        out.contains("at_risk:revenue:north:2026-Q3 -> firing"),
        "{out}"
    );
    assert!(out.contains("1 notification(s) pending"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("at_risk"))
        .unwrap_or_else(|| panic!("no alert row:\n{out}"));
    for cell in [
        "firing",
        "revenue",
        "north",
        "2026-Q3",
        "200.00",
        "(pace",
        "1,000",
        "ops: pending",
    ] {
        assert!(row.contains(cell), "{cell:?} in {row:?}");
    }
    assert!(rx.received().is_empty());

    // --send: the first POST gets a 500, the retry a second later is delivered.
    let out = ok(kpi(
        &root,
        &["alerts", "--as-of", "2026-08-15T00:00:00Z", "--send"],
    ));
    assert!(out.contains("0 transition(s)"), "{out}");
    assert!(
        out.contains("sent 2 POST(s): 1 delivered, 0 failed, 0 still pending"),
        "{out}"
    );
    assert!(out.contains("ops: delivered"), "{out}");
    let got = rx.bodies();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], got[1]);
    assert_eq!(got[0]["id"], "at_risk:revenue:north:2026-Q3");
    assert_eq!(got[0]["state"], "firing");

    // Q3 closed: at_risk resolved, missed fired, both delivered at once.
    let out = ok(kpi(
        &root,
        &["alerts", "--as-of", "2026-10-01 00:00:05", "--send"],
    ));
    assert!(out.contains("2 transition(s)"), "{out}");
    assert!(out.contains("2 delivered"), "{out}");
    let got = rx.bodies();
    assert_eq!(got.len(), 4);
    let tail: Vec<String> = got[2..]
        .iter()
        .map(|b| format!("{} {}", b["id"], b["state"]))
        .collect();
    assert_eq!(
        tail,
        [
            "\"at_risk:revenue:north:2026-Q3\" \"resolved\"",
            "\"missed:revenue:north:2026-Q3\" \"firing\""
        ]
    );
    assert_eq!(got[3]["fired_at"], "2026-10-01T00:00:05Z");

    // Once more: nothing changes, nothing is sent.
    let out = ok(kpi(
        &root,
        &["alerts", "--as-of", "2026-10-01 00:00:05", "--send"],
    ));
    assert!(out.contains("0 transition(s)"), "{out}");
    assert!(out.contains("sent 0 POST(s)"), "{out}");
    assert_eq!(rx.received().len(), 4);
}

#[test]
fn user_errors_exit_1() {
    let root = Root::new(TARGETS, "");
    let r = kpi(&root, &["alerts"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("no database"), "{}", r.stderr);

    let cfg = root.load();
    root.seed(&cfg);
    let r = kpi(&root, &["alerts", "--as-of", "soon"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("--as-of: bad time \"soon\""),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"));

    root.write("kpis/alerts.toml", "grain = \"week\"\n");
    let r = kpi(&root, &["alerts"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("kpis/alerts.toml:1"), "{}", r.stderr);
}

#[test]
fn kpi_check_finds_unknown_template_variables_with_file_line_col() {
    let root = Root::new(
        TARGETS,
        "[[webhook]]\nname = \"群\"\nkind = \"dingtalk\"\nurl = \"http://127.0.0.1:9/robot/send\"\ntemplate = \"templates/mine.md\"\n",
    );
    std::fs::create_dir_all(root.path().join("kpis/templates")).unwrap();
    root.write(
        "kpis/templates/mine.md",
        "{{#each alerts}}\n- {{team_name}}: {{valeu}}\n{{/each}}\n",
    );
    let r = kpi(&root, &["check"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("kpis/templates/mine.md:2:20: error: unknown template variable `valeu`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("did you mean 'value'"), "{}", r.stderr);

    root.write(
        "kpis/templates/mine.md",
        "{{#each alerts}}\n- {{team_name}}: {{value}}\n{{/each}}\n",
    );
    ok(kpi(&root, &["check"]));
    root.write(
        "kpis/alerts.toml",
        "[[webhook]]\nurl = \"http://127.0.0.1:9/\"\nkind = \"dingtalk\"\ntemplate = \"templates/none.md\"\n",
    );
    let r = kpi(&root, &["check"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("kpis/alerts.toml:4:12"), "{}", r.stderr);
    assert!(
        r.stderr.contains("kpis/templates/none.md not found"),
        "{}",
        r.stderr
    );
}

#[test]
fn filters_and_summary() {
    let root = Root::new(
        "[revenue]\n\"2026-Q3\" = 1000.0\n[deals_won]\n\"2026-Q3\" = 5.0\n",
        "",
    );
    let cfg = root.load();
    root.seed(&cfg);
    let at = "2026-08-15T00:00:00Z";
    let out = ok(kpi(&root, &["alerts", "--as-of", at, "--summary"]));
    assert!(out.contains("4 transition(s)"), "{out}");
    let row = |out: &str, team: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(team))
            .unwrap_or_else(|| panic!("no {team} row:\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row(&out, "north"), ["north", "2", "0", "2"]);
    assert_eq!(row(&out, "all teams")[2..], ["4", "0", "4"]);

    // --team takes the subtree; --kpi, --kind and --state narrow the list.
    let out = ok(kpi(
        &root,
        &["alerts", "--as-of", at, "--team", "hq", "--summary"],
    ));
    assert_eq!(row(&out, "all teams")[2..], ["4", "0", "4"]);
    let out = ok(kpi(
        &root,
        &["alerts", "--as-of", at, "--team", "south", "--summary"],
    ));
    assert_eq!(row(&out, "all teams")[2..], ["1", "0", "1"]);
    let out = ok(kpi(&root, &["alerts", "--as-of", at, "--kpi", "revenue"]));
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("at_risk")).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].contains("north"), "{out}");
    let out = ok(kpi(&root, &["alerts", "--as-of", at, "--kind", "missed"]));
    assert!(out.contains("no alerts in these periods"), "{out}");
    let out = ok(kpi(
        &root,
        &["alerts", "--as-of", at, "--state", "resolved"],
    ));
    assert!(out.contains("no alerts in these periods"), "{out}");

    let r = kpi(&root, &["alerts", "--team", "nrth"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("--team: unknown team 'nrth'"),
        "{}",
        r.stderr
    );
    let r = kpi(&root, &["alerts", "--kind", "late"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("kind: expected missed or at_risk"),
        "{}",
        r.stderr
    );
}
