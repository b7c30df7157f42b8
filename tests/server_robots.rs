//! SPEC 18 end to end through the real `kpi serve`: fake DingTalk, Feishu,
//! WeCom and Slack robots on 127.0.0.1 get signed messages in their
//! formats, a digest per team, a robot's error answer shows in GET
//! /api/alerts, silences are kept through the API, and a `kill -9` in the
//! middle of a POST still delivers every message after a restart.

use crate::util::alerts as alerts_common;
use crate::util::server as server_common;

use std::time::Duration;

use alerts_common::robot::{Robot, Script, Vendor};
use serde_json::Value;
use server_common::{Options, Server, root};

/// A root with a KPI that is always 0 against a target of 1 (missed in the
/// closed quarter, at risk in the open one) and this alerts.toml.
fn probe_root(alerts_toml: &str) -> tempfile::TempDir {
    let dir = root();
    std::fs::write(
        dir.path().join("kpis/probe.toml"),
        "[kpi.probe]\nname = \"Probe\"\nlabels = { zh = \"探针\" }\nunit = \"count\"\ndirection = \"higher\"\nformula = \"0.0\"\n",
    )
    .unwrap();
    let mut targets = std::fs::read_to_string(dir.path().join("kpis/targets.toml")).unwrap();
    targets.push_str("\n[probe]\ndefault = 1.0\n");
    std::fs::write(dir.path().join("kpis/targets.toml"), targets).unwrap();
    std::fs::write(
        dir.path().join("kpis/alerts.toml"),
        format!("evaluate_every = \"1h\"\nat_risk_after = 0.0\n{alerts_toml}"),
    )
    .unwrap();
    dir
}

fn hook(name: &str, kind: &str, url: &str, extra: &str) -> String {
    format!(
        "[[webhook]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\nkpis = [\"probe\"]\nteams = [\"east\"]\n{extra}\n"
    )
}

fn ours(server: &Server) -> Vec<Value> {
    server
        .json("/api/alerts")
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kpi"] == "probe" && a["team"] == "east")
        .cloned()
        .collect()
}

#[test]
fn the_server_sends_each_robot_its_format_and_lists_their_errors() {
    let ding = Robot::start(Vendor::Dingtalk, Some("SECding"), vec![]);
    let feishu = Robot::start(Vendor::Feishu, Some("SECfeishu"), vec![]);
    let wecom = Robot::start(Vendor::Wecom, None, vec![]);
    let slack = Robot::start(Vendor::Slack, None, vec![]);
    let wrong = Robot::start(Vendor::Dingtalk, Some("SECright"), vec![]);
    let toml = [
        hook(
            "华东销售群",
            "dingtalk",
            &ding.url,
            "secret = \"SECding\"\ngroup_by = [\"team\"]\nmention = [\"13800000000\"]",
        ),
        hook("飞书", "feishu", &feishu.url, "secret = \"SECfeishu\""),
        hook("企业微信", "wecom", &wecom.url, ""),
        hook("slack", "slack", &slack.url, ""),
        hook(
            "错误的密钥",
            "dingtalk",
            &wrong.url,
            "secret = \"SECwrong\"",
        ),
    ]
    .concat();
    let server = Server::start_in(probe_root(&toml), Options::default());

    // One digest for east (its missed and at_risk), one message each elsewhere.
    let digest = ding.wait_accepted(1, Duration::from_secs(30));
    let text = digest[0]["markdown"]["text"].as_str().unwrap();
    assert!(text.contains("2 条 KPI 告警变化"), "{text}");
    assert!(
        text.contains("探针未达标") && text.contains("探针有风险"),
        "{text}"
    );
    assert!(text.ends_with("@13800000000"), "{text}");
    assert_eq!(feishu.wait_accepted(2, Duration::from_secs(10)).len(), 2);
    assert_eq!(wecom.wait_accepted(2, Duration::from_secs(10)).len(), 2);
    assert_eq!(slack.wait_accepted(2, Duration::from_secs(10)).len(), 2);

    // A robot's refusal (HTTP 200, errcode 310000) is a failed try, listed;
    // that robot's next message waits behind it, in order.
    server.wait_for(
        "the refusal in /api/alerts",
        Duration::from_secs(10),
        || {
            ours(&server).iter().any(|a| {
                a["notifications"].as_array().unwrap().iter().any(|n| {
                    n["webhook"] == "错误的密钥"
                        && n["status"] == "pending"
                        && n["last_error"] == "DingTalk error 310000: sign not match"
                })
            })
        },
    );
    assert!(wrong.accepted().is_empty());
    let alerts = ours(&server);
    assert_eq!(alerts.len(), 2);
    for a in &alerts {
        assert_eq!(a["delivery"], "pending", "{a}");
        for n in a["notifications"].as_array().unwrap() {
            assert!(n.get("secret").is_none(), "secrets are never listed: {n}");
            assert!(n["kind"].is_string(), "{n}");
            if n["webhook"] != "错误的密钥" {
                assert_eq!(n["status"], "delivered", "{n}");
            }
        }
    }

    // A reload that changes nothing sends nothing more.
    server.admin("POST", "/api/reload", "").expect(200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ding.accepted().len(), 1);
    assert_eq!(feishu.accepted().len(), 2);
    // The demo fires hundreds of alerts at start: one summary line, not one per alert.
    let log = server.log();
    assert!(!log.contains("Some("), "logs are sentences:\n{log}");
    let summaries = log.lines().filter(|l| l.contains("at risk and")).count();
    assert_eq!(summaries, 1, "{log}");
    assert!(
        log.lines().filter(|l| l.contains(" INFO ")).count() < 20,
        "{log}"
    );
}

#[test]
fn silences_are_kept_in_the_database_through_the_api() {
    let dir = probe_root(
        "[[silence]]\nteams = [\"west\"]\nweekly = { days = [\"sat\", \"sun\"] }\ncomment = \"周末\"\n",
    );
    let mut server = Server::start_in(dir, Options::default());
    let listed = server.json("/api/silences");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["source"], "file");
    assert_eq!(listed[0]["weekly"], serde_json::json!(["sat", "sun"]));

    let body = r#"{"kpis": ["probe"], "teams": ["east"], "from": "2026-01-01", "until": "2099-12-31", "comment": "春节"}"#;
    server
        .request("POST", "/api/silences", None, &[], Some(body.as_bytes()))
        .expect(401);
    let made = server.admin("POST", "/api/silences", body);
    made.expect(200);
    let id = made.json["id"].as_str().unwrap().to_string();
    assert_eq!(made.json["source"], "api");
    assert_eq!(made.json["active"], true);
    assert_eq!(
        made.json["until"], "2099-12-31T16:00:00Z",
        "until a date covers that day (Asia/Shanghai)"
    );
    server
        .admin(
            "POST",
            "/api/silences",
            r#"{"teams": ["eest"], "until": "2099-01-01"}"#,
        )
        .expect(400);
    server
        .admin(
            "POST",
            "/api/silences",
            r#"{"from": "2026-03-01", "until": "2026-02-01"}"#,
        )
        .expect(400);
    server
        .admin("POST", "/api/silences", r#"{"comment": "forever"}"#)
        .expect(400);

    // Kept in the database: still there after a restart.
    let dir = server.stop();
    server = Server::start_in(dir, Options::default());
    let listed = server.json("/api/silences");
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(listed[1]["comment"], "春节");
    let file_id = listed[0]["id"].as_str().unwrap().to_string();
    server
        .admin("DELETE", &format!("/api/silences/{file_id}"), "")
        .expect(400);
    server
        .admin("DELETE", &format!("/api/silences/{id}"), "")
        .expect(200);
    server
        .admin("DELETE", &format!("/api/silences/{id}"), "")
        .expect(404);
    assert_eq!(server.json("/api/silences").as_array().unwrap().len(), 1);
}

#[test]
fn a_kill_9_in_the_middle_of_a_post_still_delivers_every_message() {
    let robot = Robot::start(Vendor::Feishu, Some("SECf"), vec![Script::Hang]);
    let toml = hook("飞书", "feishu", &robot.url, "secret = \"SECf\"");
    let server = Server::start_in(probe_root(&toml), Options::default());
    server.wait_for("the first POST", Duration::from_secs(30), || {
        !robot.seen().is_empty()
    });
    // SIGKILL while the robot holds the first POST unanswered.
    let dir = server.stop();
    assert!(robot.accepted().is_empty());
    let server = Server::start_in(dir, Options::default());
    let got = robot.wait_accepted(2, Duration::from_secs(30));
    let mut ids: Vec<String> = got
        .iter()
        .map(|b| {
            b["card"]["elements"][0]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "the missed and the at_risk message: {got:#?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        robot.accepted().len(),
        2,
        "nothing is sent twice once taken"
    );
    server.wait_for("delivered", Duration::from_secs(5), || {
        ours(&server).iter().all(|a| a["delivery"] == "delivered")
    });
}

#[test]
fn a_template_edit_is_hot_reloaded_and_a_bad_one_is_refused() {
    let robot = Robot::start(Vendor::Slack, None, vec![]);
    let dir = probe_root(&hook(
        "slack",
        "slack",
        &robot.url,
        "template = \"templates/mine.md\"",
    ));
    std::fs::create_dir_all(dir.path().join("kpis/templates")).unwrap();
    std::fs::write(
        dir.path().join("kpis/templates/mine.md"),
        "{{team_name}}: {{kpi_name}} {{value}}\n",
    )
    .unwrap();
    let server = Server::start_in(dir, Options::default());
    let got = robot.wait_accepted(2, Duration::from_secs(30));
    assert!(
        got[0]["text"].as_str().unwrap().contains(": Probe 0"),
        "{got:?}"
    );
    let version = server.health()["config_version"].clone();
    std::fs::write(server.path("kpis/templates/mine.md"), "{{team_nam}}\n").unwrap();
    server.wait_for(
        "the bad template in /health",
        Duration::from_secs(10),
        || {
            server.health()["errors"]
                .to_string()
                .contains("kpis/templates/mine.md:1:3")
        },
    );
    std::fs::write(server.path("kpis/templates/mine.md"), "{{team_name}} ok\n").unwrap();
    server.wait_for("a new version", Duration::from_secs(10), || {
        let h = server.health();
        h["config_version"] != version && h["status"] == "ok"
    });
}
