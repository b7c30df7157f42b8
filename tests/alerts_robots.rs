//! SPEC 18 against fakes of the chat robots on 127.0.0.1: each vendor's
//! format and signature, their error answers as failed (retried, listed)
//! deliveries, digests, silences, inhibition, settling after downtime,
//! pruning, and lanes that never wait for each other (issue 15 item 3).

use crate::util::alerts as alerts_common;

use std::time::{Duration, Instant};

use alerts_common::robot::{Robot, Script, Vendor};
use alerts_common::{Answer, Receiver, Root, TARGETS, t, wall_clock};
use kpi_engine::alerts::outbox::DeliveryStatus;
use kpi_engine::alerts::{self, DeliveryOptions, outbox};

const HOUR: i64 = 3_600_000;
const MID_Q3: &str = "2026-08-15T00:00:00Z";

fn hook(name: &str, kind: &str, url: &str, extra: &str) -> String {
    format!("[[webhook]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\n{extra}\n")
}

/// Seeds the root, evaluates as of `as_of` and returns the connection.
fn evaluated(root: &Root, as_of: &str) -> (rusqlite::Connection, Vec<alerts::Transition>) {
    let cfg = root.load();
    root.seed(&cfg);
    let mut conn = root.open(&cfg);
    let ts = alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t(as_of)).unwrap();
    (conn, ts)
}

fn deliver(conn: &rusqlite::Connection, at: i64) -> alerts::DeliveryReport {
    alerts::deliver_due(conn, at, &DeliveryOptions::new(8)).unwrap()
}

#[test]
fn each_robot_takes_a_signed_message_in_its_own_format() {
    let ding = Robot::start(Vendor::Dingtalk, Some("SECding"), vec![]);
    let feishu = Robot::start(Vendor::Feishu, Some("SECfeishu"), vec![]);
    let wecom = Robot::start(Vendor::Wecom, None, vec![]);
    let slack = Robot::start(Vendor::Slack, None, vec![]);
    let alerts_toml = [
        "dashboard_url = \"http://kpi.example.com:8080\"\n".to_string(),
        hook(
            "钉钉",
            "dingtalk",
            &ding.url,
            "secret = \"SECding\"\nmention = [\"13800000000\"]",
        ),
        hook("飞书", "feishu", &feishu.url, "secret = \"SECfeishu\""),
        hook(
            "企业微信",
            "wecom",
            &wecom.url,
            "mention = [\"13900000000\"]",
        ),
        hook("slack", "slack", &slack.url, ""),
    ]
    .concat();
    let root = Root::new(TARGETS, &alerts_toml);
    let (conn, ts) = evaluated(&root, MID_Q3);
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].notifications, 4);
    let r = deliver(&conn, wall_clock());
    assert_eq!(
        (r.delivered, r.failed, r.retrying),
        (4, 0, 0),
        "{:?}",
        r.errors
    );

    let d = &ding.accepted()[0];
    let text = d["markdown"]["text"].as_str().unwrap();
    for part in [
        "North",
        "营收",
        "有风险",
        "200.00",
        "1,000",
        "按当前进度",
        "@13800000000",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    assert!(
        text.contains("[在看板中查看](http://kpi.example.com:8080/?period=2026-Q3)"),
        "{text}"
    );
    assert_eq!(d["markdown"]["title"], "🟠 North · 营收有风险");
    assert_eq!(d["at"]["atMobiles"][0], "13800000000");
    assert!(ding.seen()[0].request.path.contains("&timestamp="));

    let f = &feishu.accepted()[0];
    assert_eq!(
        f["card"]["header"]["title"]["content"],
        "🟠 North · 营收有风险"
    );
    assert!(
        f["card"]["elements"][0]["content"]
            .as_str()
            .unwrap()
            .contains("**200.00**")
    );

    let w = &wecom.accepted()[0];
    assert_eq!(
        w["msgtype"], "text",
        "a phone number rings only in a text message"
    );
    assert_eq!(w["text"]["mentioned_mobile_list"][0], "13900000000");
    assert!(w["text"]["content"].as_str().unwrap().contains("North"));

    let s = &slack.accepted()[0];
    assert_eq!(s["text"], "🟠 North · 营收有风险");
    assert!(
        s["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("*200.00*")
    );
    let view = &alerts::list(&conn, None).unwrap()[0];
    assert_eq!(view.delivery, "delivered");
    assert_eq!(view.notifications.len(), 4);
}

#[test]
fn a_robots_error_answer_is_a_failed_delivery_retried_and_listed() {
    // DingTalk and Feishu answer HTTP 200 with an error code.
    let ding = Robot::start(
        Vendor::Dingtalk,
        Some("SECding"),
        vec![Script::Refuse(
            130101,
            "send too fast, exceed 20 times per minute",
        )],
    );
    let feishu = Robot::start(Vendor::Feishu, Some("SECright"), vec![]);
    let slack = Robot::start(Vendor::Slack, None, vec![Script::Refuse(404, "no_service")]);
    let root = Root::new(
        TARGETS,
        &[
            hook("ding", "dingtalk", &ding.url, "secret = \"SECding\""),
            hook("feishu", "feishu", &feishu.url, "secret = \"SECwrong\""),
            hook("slack", "slack", &slack.url, ""),
        ]
        .concat(),
    );
    let (conn, _) = evaluated(&root, MID_Q3);
    let now = wall_clock();
    let r = deliver(&conn, now);
    assert_eq!(
        (r.attempts, r.delivered, r.retrying),
        (3, 0, 3),
        "{:?}",
        r.errors
    );
    let view = &alerts::list(&conn, None).unwrap()[0];
    assert_eq!(view.delivery, "pending");
    let error = |name: &str| {
        view.notifications
            .iter()
            .find(|n| n.webhook == name)
            .and_then(|n| n.last_error.clone())
            .unwrap()
    };
    assert_eq!(
        error("ding"),
        "DingTalk error 130101: send too fast, exceed 20 times per minute"
    );
    assert!(
        error("feishu").starts_with("Feishu error 19021: sign match fail"),
        "{}",
        error("feishu")
    );
    assert_eq!(error("slack"), "HTTP 404: no_service");

    // The retry goes through where the robot takes it; a wrong secret keeps failing.
    let r = deliver(&conn, now + HOUR);
    assert_eq!((r.delivered, r.retrying), (2, 1), "{:?}", r.errors);
    assert_eq!(ding.accepted().len(), 1);
    assert_eq!(slack.accepted().len(), 1);
    assert_eq!(feishu.refused().len(), 2);
    assert!(feishu.accepted().is_empty());
}

#[test]
fn group_by_team_sends_one_digest_per_team_per_evaluation() {
    let rx = Receiver::start(&[]);
    let ding = Robot::start(Vendor::Dingtalk, None, vec![]);
    // Revenue and deals won both judged in Q3: north misses the pace of both,
    // south and hq only that of deals won.
    let targets = "[revenue]\n\"2026-Q3\" = 1000.0\n[deals_won]\n\"2026-Q3\" = 5.0\n";
    let root = Root::new(
        targets,
        &[
            hook("json", "json", &rx.url, "group_by = [\"team\"]"),
            hook("ding", "dingtalk", &ding.url, "group_by = [\"team\"]"),
        ]
        .concat(),
    );
    let (conn, ts) = evaluated(&root, MID_Q3);
    assert_eq!(ts.len(), 4, "{ts:#?}");
    deliver(&conn, wall_clock());
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 3, "one message per team: {bodies:#?}");
    let north = bodies
        .iter()
        .find(|b| b["group"]["team"] == "north")
        .unwrap();
    let kpis: Vec<&str> = north["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kpi"].as_str().unwrap())
        .collect();
    assert_eq!(kpis, ["deals_won", "revenue"]);
    assert_eq!(north["alerts"][0]["state"], "firing");
    let texts: Vec<String> = ding
        .wait_accepted(3, Duration::from_secs(5))
        .iter()
        .map(|b| b["markdown"]["text"].as_str().unwrap().to_string())
        .collect();
    let north = texts
        .iter()
        .find(|t| t.contains("### North：2 条"))
        .unwrap();
    assert!(
        north.contains("营收有风险") && north.contains("赢单数有风险"),
        "{north}"
    );
    // Every transition lists its message; the next evaluation sends nothing.
    assert!(
        alerts::list(&conn, None)
            .unwrap()
            .iter()
            .all(|a| a.delivery == "delivered")
    );
    let cfg = root.load();
    let mut conn = conn;
    let again = alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t(MID_Q3) + HOUR).unwrap();
    assert!(again.is_empty());
}

#[test]
fn silences_hold_notifications_back_while_alerts_still_change_state() {
    let rx = Receiver::start(&[]);
    let toml = format!(
        "{}[[silence]]\nteams = [\"north\"]\nfrom = \"2026-08-01\"\nuntil = \"2026-08-31\"\ncomment = \"盘点\"\n",
        hook("json", "json", &rx.url, "")
    );
    let root = Root::new(TARGETS, &toml);
    let (conn, ts) = evaluated(&root, MID_Q3);
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].notifications, 0);
    let muted = ts[0].muted.clone().unwrap();
    assert!(
        muted.starts_with("silence alerts.toml:") && muted.ends_with("(盘点)"),
        "{muted}"
    );
    deliver(&conn, wall_clock());
    assert!(rx.received().is_empty());
    let view = &alerts::list(&conn, Some("firing")).unwrap()[0];
    assert_eq!(view.delivery, "silenced");

    // A weekly silence from the database: 2026-10-03 is a Saturday.
    kpi_engine::alerts::silence::add(
        &(&conn).into(),
        &kpi_engine::alerts::silence::build(
            &kpi_engine::period::Calendar::utc(),
            &kpi_engine::alerts::silence::SilenceSpec {
                weekly: Some(kpi_engine::alerts::silence::Weekly {
                    days: vec!["sat".into()],
                }),
                ..Default::default()
            },
            String::new(),
        )
        .unwrap(),
        wall_clock(),
    )
    .unwrap();
    let cfg = root.load();
    let mut conn = conn;
    let ts =
        alerts::evaluate(&cfg, &mut conn, root.store(&cfg), t("2026-10-03T00:00:00Z")).unwrap();
    assert_eq!(ts.len(), 2, "at_risk resolved, missed fired");
    assert!(
        ts.iter().all(|t| t.muted.as_deref() == Some("silence 1")),
        "{ts:#?}"
    );
    deliver(&conn, wall_clock());
    assert!(rx.received().is_empty());
}

#[test]
fn inhibit_children_lists_the_children_inside_the_parents_notification() {
    let rx = Receiver::start(&[]);
    let ding = Robot::start(Vendor::Dingtalk, None, vec![]);
    let root = Root::new(
        "[revenue]\n\"2026-Q3\" = 5000.0\n",
        &format!(
            "inhibit_children = true\n{}{}",
            hook("json", "json", &rx.url, ""),
            hook("ding", "dingtalk", &ding.url, "")
        ),
    );
    // Q3 closed: hq (2200), north (200) and south (2000) all missed 5000.
    let (conn, ts) = evaluated(&root, "2026-10-01T00:00:05Z");
    assert_eq!(ts.len(), 3);
    deliver(&conn, wall_clock());
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    assert_eq!(bodies[0]["team"], "hq");
    let children: Vec<&str> = bodies[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["team"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["north", "south"]);
    let text = ding.wait_accepted(1, Duration::from_secs(5))[0]["markdown"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("下级团队同样未达标：North 200.00、South 2,000"),
        "{text}"
    );
    let north = alerts::list(&conn, None)
        .unwrap()
        .into_iter()
        .find(|a| a.alert.team == "north")
        .unwrap();
    assert_eq!(north.delivery, "inhibited");
    assert_eq!(
        north.muted.as_deref(),
        Some("inhibited by missed:revenue:hq:2026-Q3")
    );
}

#[test]
fn a_start_after_downtime_settles_closed_periods_before_anything_new() {
    let rx = Receiver::start(&[]);
    let targets = "[revenue]\n\"2026-Q3\" = 1000.0\n\"2027-Q1\" = 1000.0\n";
    let root = Root::new(
        targets,
        &format!(
            "at_risk_after = 0.25\n{}",
            hook("json", "json", &rx.url, "")
        ),
    );
    let (conn, ts) = evaluated(&root, MID_Q3);
    assert_eq!(ts.len(), 1);
    deliver(&conn, wall_clock());
    // Down until mid 2027-Q1: Q3 and Q4 closed meanwhile.
    let cfg = root.load();
    let mut conn = conn;
    let applied =
        alerts::evaluate_applied(&cfg, &mut conn, root.store(&cfg), t("2027-02-15T00:00:00Z"))
            .unwrap();
    assert_eq!(applied.settled.len(), 1);
    assert_eq!(applied.settled[0].to_string(), "2026-Q3");
    let ids: Vec<String> = applied
        .transitions
        .iter()
        .map(|t| format!("{} {}", t.payload.id, t.payload.state.as_str()))
        .collect();
    assert_eq!(
        &ids[..2],
        [
            "at_risk:revenue:north:2026-Q3 resolved",
            "missed:revenue:north:2026-Q3 firing"
        ]
    );
    deliver(&conn, wall_clock());
    let sent: Vec<String> = rx.bodies()[1..]
        .iter()
        .map(|b| {
            format!(
                "{} {}",
                b["id"].as_str().unwrap(),
                b["state"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(sent[..2], ids[..2], "settled first, then the rest");
}

#[test]
fn delivered_notifications_older_than_keep_delivered_are_pruned() {
    let rx = Receiver::start(&[]);
    let root = Root::new(
        TARGETS,
        &format!(
            "keep_delivered = \"1d\"\n{}",
            hook("j", "json", &rx.url, "")
        ),
    );
    let (conn, _) = evaluated(&root, MID_Q3);
    assert_eq!(
        outbox::prune(&conn, wall_clock()).unwrap(),
        0,
        "pending is never pruned"
    );
    deliver(&conn, wall_clock());
    assert_eq!(outbox::prune(&conn, wall_clock() - 86_400_000).unwrap(), 0);
    assert_eq!(outbox::prune(&conn, wall_clock() + 1).unwrap(), 1);
    assert!(outbox::all(&conn).unwrap().is_empty());
    let view = &alerts::list(&conn, None).unwrap()[0];
    assert!(view.notifications.is_empty());
    assert_eq!(
        root.load().alerts.keep_delivered,
        Duration::from_secs(86_400)
    );
}

/// Issue 15 item 3: deliveries used to be sequential, so every POST to a
/// hanging receiver (interleaved with a healthy one's) cost the healthy one
/// a whole timeout (run against e7bc073, before the fix, this test failed:
/// "the healthy webhook waited 12.3 s"). Now each webhook is a lane of its own.
#[test]
fn a_hanging_webhook_never_delays_another() {
    let slow = Receiver::start(&[Answer::Hang; 8]);
    let fast = Receiver::start(&[]);
    let targets = "[revenue]\n\"2026-Q3\" = 1000.0\n[deals_won]\n\"2026-Q3\" = 5.0\n";
    let root = Root::new(
        targets,
        &[
            hook("slow", "json", &slow.url, ""),
            hook("fast", "json", &fast.url, ""),
        ]
        .concat(),
    );
    let (_conn, ts) = evaluated(&root, MID_Q3);
    assert_eq!(ts.len(), 4);
    let opts = DeliveryOptions {
        timeout: Duration::from_secs(3),
        ..DeliveryOptions::new(8)
    };
    let started = Instant::now();
    let worker = alerts::Worker::spawn(root.db_path(), opts);
    while fast.received().len() < 4 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    assert_eq!(fast.received().len(), 4);
    assert!(
        took < Duration::from_millis(2500),
        "the healthy webhook waited {took:?} behind the hanging one"
    );
    // The hanging lane tried once and waits for its retry, in order.
    assert_eq!(slow.received().len(), 1);
    worker.stop();
    let conn = kpi_engine::store::db::open(&root.db_path()).unwrap();
    let by_status = |hook: &str, s: DeliveryStatus| {
        outbox::all(&conn)
            .unwrap()
            .iter()
            .filter(|n| n.webhook == hook && n.status == s)
            .count()
    };
    assert_eq!(by_status("fast", DeliveryStatus::Delivered), 4);
    assert_eq!(by_status("slow", DeliveryStatus::Pending), 4);
    let slow_error = outbox::all(&conn)
        .unwrap()
        .into_iter()
        .find(|n| n.webhook == "slow" && n.attempts == 1)
        .and_then(|n| n.last_error)
        .unwrap();
    assert!(slow_error.contains("timeout"), "{slow_error}");
}
